-- Named policies: each version of each name (JSON: digest, time, subject,
-- reason, signature, status), and which node group uses which name. Every
-- change first locks the one row of policy_epoch and moves it, so changes
-- are serialized across replicas (none lost) and replicas polling the epoch
-- see that something changed.
CREATE TABLE IF NOT EXISTS policy_versions (
    name    text   NOT NULL,
    version bigint NOT NULL,
    rec     text   NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE TABLE IF NOT EXISTS policy_groups (
    group_name text PRIMARY KEY,
    policy     text NOT NULL
);
CREATE TABLE IF NOT EXISTS policy_epoch (
    id    integer PRIMARY KEY CHECK (id = 1),
    epoch bigint  NOT NULL
);
INSERT INTO policy_epoch (id, epoch) VALUES (1, 0) ON CONFLICT DO NOTHING;
