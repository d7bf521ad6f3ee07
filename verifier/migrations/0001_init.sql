-- Assay verifier schema, version 1. Applied once, in order, by the verifier
-- at start-up (table assay_schema records what was applied), under an
-- advisory lock so replicas starting together do not race.
--
-- Times are Unix seconds. JSON columns hold exactly what the sled backend
-- stores; `history.record` is the canonical JSON the hash chain covers, and
-- the other history columns are an index derived from it at append.

CREATE TABLE nodes (
    node_id        text PRIMARY KEY,
    ek_cert_sha256 text   NOT NULL,
    ek_public      text   NOT NULL,
    ak_public      text   NOT NULL,
    ak_name        text   NOT NULL,
    activated_unix bigint NOT NULL,
    last_clock     text,            -- JSON ClockInfo of the last verified quote
    last_pass_unix bigint
);
CREATE INDEX nodes_last_pass ON nodes (last_pass_unix) WHERE last_pass_unix IS NOT NULL;

CREATE TABLE last_evidence (
    node_id  text PRIMARY KEY,
    evidence bytea NOT NULL         -- protobuf AttestRequest
);

CREATE TABLE enrollments (
    id           text PRIMARY KEY,
    expires_unix bigint NOT NULL,
    rec          text   NOT NULL    -- JSON PendingEnrollment
);

CREATE TABLE nonces (
    nonce        bytea PRIMARY KEY,
    node_id      text    NOT NULL,
    expires_unix bigint  NOT NULL,
    used         boolean NOT NULL
);
CREATE INDEX nonces_expires ON nonces (expires_unix);
CREATE INDEX enrollments_expires ON enrollments (expires_unix);

-- Keyed by SHA-256 of the token: the token itself is never stored.
CREATE TABLE tokens (
    id           bytea PRIMARY KEY,
    node_id      text    NOT NULL,
    ak_name      text    NOT NULL,
    issued_unix  bigint  NOT NULL,
    expires_unix bigint  NOT NULL,
    used         boolean NOT NULL,
    revoked      boolean NOT NULL
);
CREATE INDEX tokens_node ON tokens (node_id);
CREATE INDEX tokens_expires ON tokens (expires_unix);

CREATE TABLE quarantined (
    node_id    text PRIMARY KEY,
    since_unix bigint  NOT NULL,
    applied    boolean NOT NULL
);

-- One global chain: appends take an advisory lock, so every replica's
-- records are numbered and chained in one sequence.
CREATE TABLE history (
    seq           bigint PRIMARY KEY,
    node_id       text    NOT NULL,
    time_unix     bigint  NOT NULL,
    kind          text    NOT NULL,
    passed        boolean NOT NULL,
    policy_digest text    NOT NULL,
    failed_claims text[]  NOT NULL,
    record        text    NOT NULL
);
CREATE INDEX history_node ON history (node_id, seq);
CREATE INDEX history_time ON history (time_unix, seq);

CREATE TABLE checkpoints (
    seq bigint PRIMARY KEY,
    rec text NOT NULL               -- JSON signed checkpoint
);

CREATE TABLE policies (
    digest text PRIMARY KEY,
    text   text NOT NULL
);

CREATE TABLE evidence (
    seq       bigint PRIMARY KEY,
    time_unix bigint NOT NULL,
    rec       text   NOT NULL       -- JSON StoredEvidence; logs named by digest
);

-- Logs, content-addressed, with the number of evidence entries naming them.
CREATE TABLE blobs (
    digest bytea PRIMARY KEY,
    data   bytea  NOT NULL,
    refs   bigint NOT NULL
);

CREATE TABLE settings (
    key   text PRIMARY KEY,
    value text NOT NULL
);

CREATE TABLE counters (
    key   text PRIMARY KEY,
    value bigint NOT NULL
);
