-- One EK holds one node id: enrollment looks a node up by its EK certificate.
CREATE INDEX IF NOT EXISTS nodes_by_ek ON nodes (ek_cert_sha256);
