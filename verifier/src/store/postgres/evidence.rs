//! The evidence behind each verdict (logs content-addressed, reference
//! counted) and the policy texts, in PostgreSQL.

use sha2::{Digest, Sha256};

use super::rows::{exec, json_text, rows};
use super::{i64_of, pg, PgStore};
use crate::store::{from_json, EvidenceStore, Logs, StoreError, StoredEvidence};

/// Advisory lock key (transaction scoped): one pruner at a time.
const LOCK_EVIDENCE: i64 = 0x6173_7361_7903;

impl EvidenceStore for PgStore {
    fn put_policy(&self, digest_hex: &str, text: &str) -> Result<(), StoreError> {
        self.run(async {
            self.execute(
                "INSERT INTO policies (digest, text) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&digest_hex, &text],
            )
            .await
            .map(drop)
        })
    }

    fn current_policy(&self) -> Result<Option<String>, StoreError> {
        self.first(
            "SELECT value FROM settings WHERE key = 'current_policy'",
            &[],
            |r| Ok(r.get(0)),
        )
    }

    fn set_current_policy(&self, digest_hex: &str) -> Result<(), StoreError> {
        self.run(async {
            self.execute(
                "INSERT INTO settings (key, value) VALUES ('current_policy', $1) \
                 ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                &[&digest_hex],
            )
            .await
            .map(drop)
        })
    }

    fn policy_text(&self, digest_hex: &str) -> Result<Option<String>, StoreError> {
        self.first(
            "SELECT text FROM policies WHERE digest = $1",
            &[&digest_hex],
            |r| Ok(r.get(0)),
        )
    }

    fn put_evidence(
        &self,
        seq: u64,
        ev: StoredEvidence,
        logs: Logs<&[u8]>,
    ) -> Result<(), StoreError> {
        self.run(async {
            let mut c = self.client().await?;
            let tx = c.transaction().await.map_err(pg)?;
            put_evidence_in(&tx, seq, ev, logs).await?;
            tx.commit().await.map_err(pg)
        })
    }

    fn evidence(&self, seq: u64) -> Result<Option<(StoredEvidence, Logs)>, StoreError> {
        self.run(async {
            let rows = self
                .query("SELECT rec FROM evidence WHERE seq = $1", &[&i64_of(seq)])
                .await?;
            let Some(row) = rows.first() else {
                return Ok(None);
            };
            let ev: StoredEvidence = from_json(
                "evidence",
                &seq.to_be_bytes(),
                row.get::<_, &str>(0).as_bytes(),
            )?;
            let mut logs = Logs::default();
            for (slot, d) in [
                (&mut logs.uefi, &ev.uefi_log),
                (&mut logs.ima, &ev.ima_log),
                (&mut logs.cel, &ev.cel_log),
            ] {
                let Some(d) = d else { continue };
                let key = hex::decode(d).unwrap_or_default();
                let rows = self
                    .query("SELECT data FROM blobs WHERE digest = $1", &[&key])
                    .await?;
                *slot = rows.first().map(|r| r.get(0));
            }
            Ok(Some((ev, logs)))
        })
    }

    fn prune_evidence(
        &self,
        before_unix: i64,
        max_count: usize,
        max_bytes: u64,
    ) -> Result<usize, StoreError> {
        self.run(async {
            let mut c = self.client().await?;
            let tx = c.transaction().await.map_err(pg)?;
            // One pruner at a time across replicas (reference counts).
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_EVIDENCE])
                .await
                .map_err(pg)?;
            let count: i64 = tx
                .query_one("SELECT count(*) FROM evidence", &[])
                .await
                .map_err(pg)?
                .get(0);
            let mut count = usize::try_from(count).unwrap_or(0);
            let mut bytes = evidence_bytes(&tx).await?;
            let mut removed = 0;
            let mut after = 0i64;
            'pages: loop {
                let rows = tx
                    .query(
                        "SELECT seq, rec FROM evidence WHERE seq > $1 ORDER BY seq LIMIT 1000",
                        &[&after],
                    )
                    .await
                    .map_err(pg)?;
                if rows.is_empty() {
                    break;
                }
                for row in &rows {
                    let seq: i64 = row.get(0);
                    after = seq;
                    let ev: StoredEvidence = from_json(
                        "evidence",
                        &seq.to_be_bytes(),
                        row.get::<_, &str>(1).as_bytes(),
                    )?;
                    if ev.time_unix >= before_unix && count <= max_count && bytes <= max_bytes {
                        break 'pages;
                    }
                    let mut freed = ev.attest.len() as u64 / 2 + ev.signature.len() as u64 / 2;
                    for d in [&ev.uefi_log, &ev.ima_log, &ev.cel_log]
                        .into_iter()
                        .flatten()
                    {
                        let key = hex::decode(d).unwrap_or_default();
                        let gone = tx
                            .query(
                                "DELETE FROM blobs WHERE digest = $1 AND refs <= 1 \
                                 RETURNING length(data)",
                                &[&key],
                            )
                            .await
                            .map_err(pg)?;
                        match gone.first() {
                            Some(r) => freed += u64::try_from(r.get::<_, i32>(0)).unwrap_or(0),
                            None => {
                                tx.execute(
                                    "UPDATE blobs SET refs = refs - 1 WHERE digest = $1",
                                    &[&key],
                                )
                                .await
                                .map_err(pg)?;
                            }
                        }
                    }
                    tx.execute("DELETE FROM evidence WHERE seq = $1", &[&seq])
                        .await
                        .map_err(pg)?;
                    bytes = bytes.saturating_sub(freed);
                    count -= 1;
                    removed += 1;
                }
            }
            tx.commit().await.map_err(pg)?;
            Ok(removed)
        })
    }

    fn evidence_usage(&self) -> Result<(u64, usize), StoreError> {
        self.run(async {
            let c = self.client().await?;
            let bytes = evidence_bytes(&c).await?;
            let n: i64 = c
                .query_one("SELECT count(*) FROM evidence", &[])
                .await
                .map_err(pg)?
                .get(0);
            Ok((bytes, usize::try_from(n).unwrap_or(0)))
        })
    }
}

/// Bytes of evidence kept: each entry's own quote and signature, and each
/// log once. Summed when asked (retention runs now and then), so no counter
/// row every verdict would have to lock.
async fn evidence_bytes(c: &impl deadpool_postgres::GenericClient) -> Result<u64, StoreError> {
    let found = rows(
        c,
        "SELECT (SELECT coalesce(sum(own_bytes), 0) FROM evidence)::bigint \
              + (SELECT coalesce(sum(length(data)), 0) FROM blobs)::bigint",
        &[],
    )
    .await?;
    Ok(found.first().map_or(0, |r| r.get::<_, i64>(0)).max(0) as u64)
}

/// Keeps the evidence behind record `seq` inside `tx`; logs stored once by digest.
pub(super) async fn put_evidence_in(
    tx: &deadpool_postgres::Transaction<'_>,
    seq: u64,
    mut ev: StoredEvidence,
    logs: Logs<&[u8]>,
) -> Result<(), StoreError> {
    let mut size = ev.attest.len() as u64 / 2 + ev.signature.len() as u64 / 2;
    let mut names: Logs<String> = Logs::default();
    for (slot, log) in [
        (&mut names.uefi, logs.uefi),
        (&mut names.ima, logs.ima),
        (&mut names.cel, logs.cel),
    ] {
        let Some(bytes) = log else { continue };
        let digest: [u8; 32] = Sha256::digest(bytes).into();
        let digest = digest.to_vec();
        // Send the log only when the server does not have it yet.
        let bumped = exec(
            tx,
            "UPDATE blobs SET refs = refs + 1 WHERE digest = $1",
            &[&digest],
        )
        .await?;
        if bumped == 0 {
            let inserted = rows(
                tx,
                "INSERT INTO blobs (digest, data, refs) VALUES ($1, $2, 1) \
                 ON CONFLICT (digest) DO UPDATE SET refs = blobs.refs + 1 \
                 RETURNING (xmax = 0)",
                &[&digest, &bytes],
            )
            .await?
            .first()
            .is_some_and(|r| r.get::<_, bool>(0));
            if inserted {
                size += bytes.len() as u64;
            }
        }
        *slot = Some(hex::encode(&digest));
    }
    (ev.uefi_log, ev.ima_log, ev.cel_log) = (names.uefi, names.ima, names.cel);
    ev.bytes = size;
    let own = i64_of(ev.attest.len() as u64 / 2 + ev.signature.len() as u64 / 2);
    exec(
        tx,
        "INSERT INTO evidence (seq, time_unix, own_bytes, rec) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (seq) DO UPDATE SET time_unix = EXCLUDED.time_unix, \
         own_bytes = EXCLUDED.own_bytes, rec = EXCLUDED.rec",
        &[&i64_of(seq), &ev.time_unix, &own, &json_text(&ev)],
    )
    .await?;
    Ok(())
}
