-- The EK certificate a node enrolled with (hex DER; empty for an EK enrolled
-- without one, or before this was kept): each attestation checks it against
-- the configured EK CRLs.
ALTER TABLE nodes ADD COLUMN IF NOT EXISTS ek_certificate text NOT NULL DEFAULT '';
-- The CA certificates the node sent from its TPM's EK chain NV range: hex
-- DER, comma separated (empty: none).
ALTER TABLE nodes ADD COLUMN IF NOT EXISTS ek_chain text NOT NULL DEFAULT '';
