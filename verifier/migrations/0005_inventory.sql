-- Registered nodes (inventory enrollment mode): the node id an EK may enroll
-- under. `ek_sha256` is the SHA-256 of the EK certificate or, for a TPM
-- without one, of its public area; one EK holds one node id.
CREATE TABLE IF NOT EXISTS inventory (
    node_id   text PRIMARY KEY,
    ek_sha256 text NOT NULL UNIQUE,
    rec       text NOT NULL            -- JSON InventoryEntry
);
