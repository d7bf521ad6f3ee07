-- Version 2. The chain head in one row: appends lock it (SELECT … FOR UPDATE) instead
-- of re-reading and re-hashing the last record under an advisory lock.
-- seq 0 / hash '' is the empty chain. Derived data: `audit verify` reads
-- the history itself; a head left behind by a deleted tail makes the next
-- record leave a gap that audit verify reports.
CREATE TABLE history_head (
    id        boolean PRIMARY KEY DEFAULT true CHECK (id),
    seq       bigint NOT NULL,
    hash      text   NOT NULL,
    time_unix bigint NOT NULL
);

INSERT INTO history_head (seq, hash, time_unix)
SELECT coalesce(max(seq), 0), '', coalesce(max(time_unix), -9223372036854775808) FROM history;

UPDATE history_head h
SET hash = encode(sha256(convert_to(r.record, 'UTF8')), 'hex')
FROM history r
WHERE r.seq = h.seq;

-- Evidence size is summed when retention asks (no counter row for every
-- verdict to lock): each entry's own quote + signature bytes, logs once.
ALTER TABLE evidence ADD COLUMN own_bytes bigint NOT NULL DEFAULT 0;
UPDATE evidence
SET own_bytes = (length(rec::json->>'attest') + length(rec::json->>'signature')) / 2;
DROP TABLE counters;
