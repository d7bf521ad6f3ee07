-- Attestations in a node's name whose quote signature, AK or nonce did not
-- verify: counters (count, first and last time, busiest source addresses,
-- JSON), one row per node id, never verdicts.
CREATE TABLE IF NOT EXISTS unauthenticated_attempts (
    node_id text PRIMARY KEY,
    rec     text NOT NULL
);
