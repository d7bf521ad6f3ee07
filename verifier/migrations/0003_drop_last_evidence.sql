-- Version 3. Each node's last authentic AttestRequest (logs included: tens of
-- kilobytes per attestation with a UEFI log, megabytes with IMA) is no longer
-- rewritten by every verdict: `policy generate --node` reads the evidence
-- kept with the node's newest authentic verdict, whose logs are stored once
-- by digest.
DROP TABLE IF EXISTS last_evidence;
