//! The PostgreSQL backend: the state several verifier replicas share.
//!
//! - Single-use objects (nonces, tokens, enrollments) are consumed by one
//!   conditional `UPDATE … WHERE NOT used` / `DELETE … RETURNING`: whichever
//!   replica gets there first wins, every other sees it used.
//! - History is one global chain: an append locks the head row
//!   (`history_head … FOR UPDATE`), inserts the chained records and moves the
//!   head, so records from every replica get one gap-free sequence. The lock
//!   is held until the commit has flushed the WAL; verdicts are therefore
//!   written many to a transaction (group commit, [`VerdictQueue`]).
//! - Every call returns after its transaction committed (durable with the
//!   server's `synchronous_commit`, on by default); issuing and using a nonce
//!   commit without waiting for the flush (see the trait).
//!
//! The [`Storage`] trait is blocking (the service calls it from blocking
//! threads, like sled). This backend runs tokio-postgres connections on a
//! small runtime of its own and waits for each call; it never blocks that
//! runtime, so it may be called from any thread.
//!
//! Connections are plain TCP or a Unix socket (`host=/run/postgresql`):
//! TLS to the database is not implemented; keep PostgreSQL on loopback, a
//! Unix socket or a private network.

use std::future::Future;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

use super::{
    from_json, to_json, token_key, ClockInfo, Consumed, HistoryQuery, HistoryRecord, Logs,
    NodeRecord, NonceRecord, PendingEnrollment, Quarantine, RevokeOne, Storage, StoreError,
    StoredEvidence, TokenRecord, VerdictWrite,
};
use crate::audit::{Checkpoint, Found};
use sha2::{Digest, Sha256};

/// Schema migrations, applied in order at start-up (`assay_schema` says which ran).
const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("../../migrations/0001_init.sql")),
    (2, include_str!("../../migrations/0002_history_head.sql")),
    (
        3,
        include_str!("../../migrations/0003_drop_last_evidence.sql"),
    ),
];

/// Advisory lock keys (transaction scoped).
const LOCK_MIGRATE: i64 = 0x6173_7361_7901;
const LOCK_EVIDENCE: i64 = 0x6173_7361_7903;

/// Connection settings (`[storage]` in the config file).
#[derive(Debug, Clone)]
pub struct PgConfig {
    /// libpq-style `key=value` pairs or a `postgresql://` URL.
    pub url: String,
    /// A file holding the password (kept out of the config file), if any.
    pub password_file: Option<std::path::PathBuf>,
    /// Connections in the pool.
    pub pool_size: usize,
}

pub struct PgStore {
    pool: Pool,
    /// Verdicts waiting to be written, many to a transaction.
    verdicts: VerdictQueue,
    /// Drives the connections. `Option` so `Drop` can shut it down without
    /// blocking (dropping a runtime blocks, which an async caller forbids).
    rt: Option<tokio::runtime::Runtime>,
}

impl Drop for PgStore {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

fn pg(e: tokio_postgres::Error) -> StoreError {
    let msg = match e.as_db_error() {
        Some(db) => format!("{} ({}): {}", db.severity(), db.code().code(), db.message()),
        None => {
            let mut s = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(c) = src {
                s.push_str(": ");
                s.push_str(&c.to_string());
                src = c.source();
            }
            s
        }
    };
    StoreError::Postgres(msg)
}

fn pool_err(e: deadpool_postgres::PoolError) -> StoreError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => pg(e),
        other => StoreError::Postgres(format!("connection pool: {other}")),
    }
}

fn i64_of(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl PgStore {
    /// Connects, checks the server answers, and applies pending migrations.
    pub fn open(config: &PgConfig) -> Result<Self, StoreError> {
        let mut pg_config: tokio_postgres::Config = config
            .url
            .parse()
            .map_err(|e| StoreError::Postgres(format!("storage.url: {e}")))?;
        if let Some(p) = &config.password_file {
            let pw = std::fs::read(p).map_err(|e| {
                StoreError::Postgres(format!("storage.password_file {}: {e}", p.display()))
            })?;
            let pw = pw.strip_suffix(b"\n").unwrap_or(&pw);
            pg_config.password(pw);
        }
        if pg_config.get_connect_timeout().is_none() {
            pg_config.connect_timeout(Duration::from_secs(10));
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("assay-postgres")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Postgres(format!("starting the connection runtime: {e}")))?;
        let manager = Manager::from_config(
            pg_config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(config.pool_size.max(1))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(30)))
            .create_timeout(Some(Duration::from_secs(10)))
            .build()
            .map_err(|e| StoreError::Postgres(format!("connection pool: {e}")))?;
        let store = Self {
            pool,
            verdicts: VerdictQueue::default(),
            rt: Some(rt),
        };
        store.run(store.migrate())?;
        Ok(store)
    }

    /// Runs `f` to completion on the calling thread, with the connection
    /// runtime as the context (connections and timers live there).
    fn run<T>(&self, f: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
        let _context = self.rt.as_ref().map(|rt| rt.enter());
        futures_executor::block_on(f)
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(pool_err)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(pg)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_MIGRATE])
            .await
            .map_err(pg)?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS assay_schema (
                 version integer PRIMARY KEY,
                 applied_unix bigint NOT NULL)",
        )
        .await
        .map_err(pg)?;
        let current: i32 = tx
            .query_one("SELECT coalesce(max(version), 0) FROM assay_schema", &[])
            .await
            .map_err(pg)?
            .get(0);
        let newest = MIGRATIONS.last().map_or(0, |m| m.0);
        if current > newest {
            return Err(StoreError::Postgres(format!(
                "the database schema is version {current}, newer than this verifier knows \
                 ({newest}): upgrade the verifier"
            )));
        }
        for (version, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
            tx.batch_execute(sql)
                .await
                .map_err(|e| StoreError::Postgres(format!("migration {version}: {}", pg(e))))?;
            tx.execute(
                "INSERT INTO assay_schema (version, applied_unix) \
                 VALUES ($1, extract(epoch FROM now())::bigint)",
                &[version],
            )
            .await
            .map_err(pg)?;
        }
        tx.commit().await.map_err(pg)
    }

    /// [`rows`] on a pooled connection.
    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        rows(&self.client().await?, sql, params).await
    }

    /// The first row `sql` returns, read by `read`; `None` when it returns none.
    fn first<T>(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        read: impl FnOnce(&Row) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        self.run(async { self.query(sql, params).await?.first().map(read).transpose() })
    }

    /// [`exec`] on a pooled connection.
    async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, StoreError> {
        exec(&self.client().await?, sql, params).await
    }

    /// The first seq whose record time is ≥ `t` (`i64::MAX` if none).
    async fn first_seq_at_or_after(&self, t: i64) -> Result<i64, StoreError> {
        let rows = self
            .query(
                "SELECT seq FROM history WHERE time_unix >= $1 ORDER BY time_unix, seq LIMIT 1",
                &[&t],
            )
            .await?;
        Ok(rows.first().map_or(i64::MAX, |r| r.get(0)))
    }

    /// The last seq whose record time is ≤ `t` (0 if none).
    async fn last_seq_at_or_before(&self, t: i64) -> Result<i64, StoreError> {
        let rows = self
            .query(
                "SELECT seq FROM history WHERE time_unix <= $1 \
                 ORDER BY time_unix DESC, seq DESC LIMIT 1",
                &[&t],
            )
            .await?;
        Ok(rows.first().map_or(0, |r| r.get(0)))
    }

    fn history_rows(rows: &[Row]) -> Result<Vec<HistoryRecord>, StoreError> {
        rows.iter().map(history_row).collect()
    }
}

fn history_row(row: &Row) -> Result<HistoryRecord, StoreError> {
    let seq: i64 = row.get("seq");
    let json: &str = row.get("record");
    from_json("history", &seq.to_be_bytes(), json.as_bytes())
}

fn token_row(row: &Row) -> TokenRecord {
    TokenRecord {
        node_id: row.get("node_id"),
        ak_name: row.get("ak_name"),
        issued_unix: row.get("issued_unix"),
        expires_unix: row.get("expires_unix"),
        used: row.get("used"),
        revoked: row.get("revoked"),
    }
}

const TOKEN_COLUMNS: &str = "node_id, ak_name, issued_unix, expires_unix, used, revoked";

fn node_row(row: &Row) -> Result<NodeRecord, StoreError> {
    let node_id: String = row.get("node_id");
    let last_clock = match row.get::<_, Option<&str>>("last_clock") {
        Some(j) => Some(from_json("nodes", node_id.as_bytes(), j.as_bytes())?),
        None => None,
    };
    Ok(NodeRecord {
        ek_cert_sha256: row.get("ek_cert_sha256"),
        ek_public: row.get("ek_public"),
        ak_public: row.get("ak_public"),
        ak_name: row.get("ak_name"),
        activated_unix: row.get("activated_unix"),
        last_pass_unix: row.get("last_pass_unix"),
        last_clock,
        node_id,
    })
}

fn json_text<T: serde::Serialize>(v: &T) -> String {
    String::from_utf8(to_json(v)).unwrap_or_default()
}

fn checkpoint_rows(rows: &[Row]) -> Result<Vec<Checkpoint>, StoreError> {
    rows.iter()
        .map(|r| {
            let seq: i64 = r.get("seq");
            let j: &str = r.get("rec");
            from_json("checkpoints", &seq.to_be_bytes(), j.as_bytes())
        })
        .collect()
}

impl Storage for PgStore {
    fn node(&self, node_id: &str) -> Result<Option<NodeRecord>, StoreError> {
        self.first(
            "SELECT * FROM nodes WHERE node_id = $1",
            &[&node_id],
            node_row,
        )
    }

    fn put_node(&self, node: &NodeRecord) -> Result<(), StoreError> {
        let clock = node.last_clock.as_ref().map(json_text);
        self.run(async {
            self.execute(
                "INSERT INTO nodes (node_id, ek_cert_sha256, ek_public, ak_public, ak_name, \
                 activated_unix, last_clock, last_pass_unix) VALUES ($1,$2,$3,$4,$5,$6,$7,$8) \
                 ON CONFLICT (node_id) DO UPDATE SET ek_cert_sha256 = EXCLUDED.ek_cert_sha256, \
                 ek_public = EXCLUDED.ek_public, ak_public = EXCLUDED.ak_public, \
                 ak_name = EXCLUDED.ak_name, activated_unix = EXCLUDED.activated_unix, \
                 last_clock = EXCLUDED.last_clock, last_pass_unix = EXCLUDED.last_pass_unix",
                &[
                    &node.node_id,
                    &node.ek_cert_sha256,
                    &node.ek_public,
                    &node.ak_public,
                    &node.ak_name,
                    &node.activated_unix,
                    &clock,
                    &node.last_pass_unix,
                ],
            )
            .await
            .map(drop)
        })
    }

    fn remove_node(&self, node_id: &str) -> Result<bool, StoreError> {
        self.run(async {
            let mut c = self.client().await?;
            let tx = c.transaction().await.map_err(pg)?;
            let n = tx
                .execute("DELETE FROM nodes WHERE node_id = $1", &[&node_id])
                .await
                .map_err(pg)?;
            tx.commit().await.map_err(pg)?;
            Ok(n > 0)
        })
    }

    fn set_last_pass(&self, node_id: &str, now_unix: i64) -> Result<(), StoreError> {
        self.run(async {
            self.execute(
                "UPDATE nodes SET last_pass_unix = $2 WHERE node_id = $1",
                &[&node_id, &now_unix],
            )
            .await
            .map(drop)
        })
    }

    fn nodes_passed_before(&self, cutoff_unix: i64) -> Result<Vec<(String, i64)>, StoreError> {
        self.run(async {
            let rows = self
                .query(
                    "SELECT node_id, last_pass_unix FROM nodes WHERE last_pass_unix < $1 \
                     ORDER BY node_id",
                    &[&cutoff_unix],
                )
                .await?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }

    fn set_last_clock(&self, node_id: &str, clock: ClockInfo) -> Result<(), StoreError> {
        let clock = json_text(&clock);
        self.run(async {
            self.execute(
                "UPDATE nodes SET last_clock = $2 WHERE node_id = $1",
                &[&node_id, &clock],
            )
            .await
            .map(drop)
        })
    }

    fn put_enrollment(&self, id: &str, e: &PendingEnrollment) -> Result<(), StoreError> {
        let rec = json_text(e);
        self.run(async {
            self.execute(
                "INSERT INTO enrollments (id, expires_unix, rec) VALUES ($1, $2, $3) \
                 ON CONFLICT (id) DO UPDATE SET expires_unix = EXCLUDED.expires_unix, \
                 rec = EXCLUDED.rec",
                &[&id, &e.expires_unix, &rec],
            )
            .await
            .map(drop)
        })
    }

    fn take_enrollment(&self, id: &str) -> Result<Option<PendingEnrollment>, StoreError> {
        self.first(
            "DELETE FROM enrollments WHERE id = $1 RETURNING rec",
            &[&id],
            |r| from_json("enrollments", id.as_bytes(), r.get::<_, &str>(0).as_bytes()),
        )
    }

    fn put_nonce(&self, nonce: &[u8], rec: &NonceRecord) -> Result<(), StoreError> {
        self.run(async {
            // Visible to every replica at commit, without waiting for the WAL
            // flush (see the trait): issuing a challenge costs no fsync.
            rows_async_commit(
                &self.client().await?,
                "INSERT INTO nonces (nonce, node_id, expires_unix, used) VALUES ($1,$2,$3,$4) \
                 ON CONFLICT (nonce) DO UPDATE SET node_id = EXCLUDED.node_id, \
                 expires_unix = EXCLUDED.expires_unix, used = EXCLUDED.used",
                &[&nonce, &rec.node_id, &rec.expires_unix, &rec.used],
            )
            .await
            .map(drop)
        })
    }

    fn consume_nonce(&self, nonce: &[u8]) -> Result<Consumed<NonceRecord>, StoreError> {
        self.run(async {
            let row = |r: &Row, used| NonceRecord {
                node_id: r.get(0),
                expires_unix: r.get(1),
                used,
            };
            // Durable with the verdict recorded after it (see the trait): its
            // synchronous commit flushes the WAL past this one.
            let rows = rows_async_commit(
                &self.client().await?,
                "UPDATE nonces SET used = true WHERE nonce = $1 AND NOT used \
                 RETURNING node_id, expires_unix",
                &[&nonce],
            )
            .await?;
            if let Some(r) = rows.first() {
                return Ok(Consumed::Fresh(row(r, false)));
            }
            let rows = self
                .query(
                    "SELECT node_id, expires_unix FROM nonces WHERE nonce = $1",
                    &[&nonce],
                )
                .await?;
            Ok(match rows.first() {
                Some(r) => Consumed::AlreadyUsed(row(r, true)),
                None => Consumed::Unknown,
            })
        })
    }

    fn purge_expired(&self, cutoff_unix: i64) -> Result<usize, StoreError> {
        self.run(async {
            let mut c = self.client().await?;
            let tx = c.transaction().await.map_err(pg)?;
            let mut n = 0;
            for table in ["nonces", "enrollments", "tokens"] {
                n += tx
                    .execute(
                        &format!("DELETE FROM {table} WHERE expires_unix < $1"),
                        &[&cutoff_unix],
                    )
                    .await
                    .map_err(pg)?;
            }
            tx.commit().await.map_err(pg)?;
            Ok(usize::try_from(n).unwrap_or(usize::MAX))
        })
    }

    fn put_token(&self, token: &str, rec: &TokenRecord) -> Result<(), StoreError> {
        self.run(async {
            let c = self.client().await?;
            put_token_in(&c, token, rec).await
        })
    }

    fn revoke_node_tokens(&self, node_id: &str) -> Result<usize, StoreError> {
        self.run(async {
            let n = self
                .execute(
                    "UPDATE tokens SET used = true, revoked = true \
                     WHERE node_id = $1 AND NOT used",
                    &[&node_id],
                )
                .await?;
            Ok(usize::try_from(n).unwrap_or(usize::MAX))
        })
    }

    fn tokens(
        &self,
        node_id: Option<&str>,
        unused_only: bool,
        now_unix: i64,
        limit: usize,
    ) -> Result<Vec<(String, TokenRecord)>, StoreError> {
        let limit = i64_of(limit as u64);
        self.run(async {
            let rows = self
                .query(
                    &format!(
                        "SELECT id, {TOKEN_COLUMNS} FROM tokens \
                         WHERE ($1::text IS NULL OR node_id = $1) \
                         AND (NOT $2 OR (NOT used AND NOT revoked AND expires_unix > $3)) \
                         ORDER BY expires_unix DESC, id LIMIT $4"
                    ),
                    &[&node_id, &unused_only, &now_unix, &limit],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| (hex::encode(r.get::<_, &[u8]>("id")), token_row(r)))
                .collect())
        })
    }

    fn revoke_token(&self, id_prefix: &str) -> Result<RevokeOne, StoreError> {
        let prefix = id_prefix.to_ascii_lowercase();
        self.run(async {
            let rows = self
                .query(
                    "SELECT id FROM tokens WHERE starts_with(encode(id, 'hex'), $1)",
                    &[&prefix],
                )
                .await?;
            let id: Vec<u8> = match rows.len() {
                0 => return Ok(RevokeOne::NotFound),
                1 => rows[0].get(0),
                n => return Ok(RevokeOne::Ambiguous(n)),
            };
            let rows = self
                .query(
                    &format!(
                        "UPDATE tokens SET used = true, revoked = true WHERE id = $1 \
                         AND NOT used RETURNING {TOKEN_COLUMNS}"
                    ),
                    &[&id],
                )
                .await?;
            if let Some(r) = rows.first() {
                return Ok(RevokeOne::Revoked(token_row(r)));
            }
            let rows = self
                .query(
                    &format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = $1"),
                    &[&id],
                )
                .await?;
            Ok(rows
                .first()
                .map_or(RevokeOne::NotFound, |r| RevokeOne::Spent(token_row(r))))
        })
    }

    fn set_quarantine(&self, node_id: &str, q: Option<&Quarantine>) -> Result<(), StoreError> {
        self.run(async {
            match q {
                Some(q) => {
                    self.execute(
                        "INSERT INTO quarantined (node_id, since_unix, applied) VALUES ($1,$2,$3) \
                         ON CONFLICT (node_id) DO UPDATE SET since_unix = EXCLUDED.since_unix, \
                         applied = EXCLUDED.applied",
                        &[&node_id, &q.since_unix, &q.applied],
                    )
                    .await
                }
                None => {
                    self.execute("DELETE FROM quarantined WHERE node_id = $1", &[&node_id])
                        .await
                }
            }
            .map(drop)
        })
    }

    fn quarantine(&self, node_id: &str) -> Result<Option<Quarantine>, StoreError> {
        self.first(
            "SELECT since_unix, applied FROM quarantined WHERE node_id = $1",
            &[&node_id],
            |r| {
                Ok(Quarantine {
                    since_unix: r.get(0),
                    applied: r.get(1),
                })
            },
        )
    }

    fn unapplied_quarantines(&self) -> Result<Vec<String>, StoreError> {
        self.run(async {
            let rows = self
                .query(
                    "SELECT node_id FROM quarantined WHERE NOT applied ORDER BY node_id",
                    &[],
                )
                .await?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }

    fn consume_token(&self, token: &str) -> Result<Consumed<TokenRecord>, StoreError> {
        let id = token_key(token).to_vec();
        self.run(async {
            let rows = self
                .query(
                    &format!(
                        "UPDATE tokens SET used = true WHERE id = $1 AND NOT used \
                         RETURNING {TOKEN_COLUMNS}"
                    ),
                    &[&id],
                )
                .await?;
            if let Some(r) = rows.first() {
                let mut rec = token_row(r);
                rec.used = false; // as it was
                return Ok(Consumed::Fresh(rec));
            }
            let rows = self
                .query(
                    &format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = $1"),
                    &[&id],
                )
                .await?;
            Ok(rows
                .first()
                .map_or(Consumed::Unknown, |r| Consumed::AlreadyUsed(token_row(r))))
        })
    }

    fn append_history_batch(
        &self,
        recs: Vec<HistoryRecord>,
    ) -> Result<Vec<HistoryRecord>, StoreError> {
        if recs.is_empty() {
            return Ok(recs);
        }
        self.run(async {
            let mut c = self.client().await?;
            let tx = c.transaction().await.map_err(pg)?;
            let recs = append_in(&tx, recs).await?;
            tx.commit().await.map_err(pg)?;
            Ok(recs)
        })
    }

    fn record_verdict(&self, w: VerdictWrite<'_>) -> Result<HistoryRecord, StoreError> {
        self.verdicts.write(OwnedVerdict::from(w), |batch| {
            self.run(write_verdicts(&self.pool, batch))
        })
    }

    fn query_history(&self, q: &HistoryQuery) -> Result<(Vec<HistoryRecord>, u64), StoreError> {
        if q.limit == 0 {
            return Ok((Vec::new(), 0));
        }
        // Only the filters given, so the planner can use the node and time indexes.
        let mut sql = String::from("SELECT seq, record FROM history WHERE true");
        let mut params: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
        fn add(
            sql: &mut String,
            params: &mut Vec<Box<dyn ToSql + Sync + Send>>,
            cond: &str,
            p: Option<Box<dyn ToSql + Sync + Send>>,
        ) {
            if let Some(p) = p {
                params.push(p);
            }
            sql.push_str(&cond.replace('?', &format!("${}", params.len())));
        }
        let (s, p) = (&mut sql, &mut params);
        if let Some(n) = &q.node_id {
            add(s, p, " AND node_id = ?", Some(Box::new(n.clone())));
        }
        // Record times never decrease along the chain, so a time range is a
        // range of sequence numbers: found in the time index, then scanned
        // in the primary key (or the node index) newest first.
        if let Some(t) = q.from_unix {
            let lo = self.run(self.first_seq_at_or_after(t))?;
            add(s, p, " AND seq >= ?", Some(Box::new(lo)));
        }
        if let Some(t) = q.to_unix {
            let hi = self.run(self.last_seq_at_or_before(t))?;
            add(s, p, " AND seq <= ?", Some(Box::new(hi)));
        }
        if let Some(b) = q.before_seq {
            add(s, p, " AND seq < ?", Some(Box::new(i64_of(b))));
        }
        match q.verdict.as_deref() {
            None => {}
            Some("pass") => add(s, p, " AND kind = '' AND passed", None),
            Some("fail") => add(s, p, " AND kind = '' AND NOT passed", None),
            Some("verdict") => add(s, p, " AND kind = ''", None),
            Some(kind) => add(s, p, " AND kind = ?", Some(Box::new(kind.to_string()))),
        }
        if let Some(d) = &q.policy_digest {
            add(
                s,
                p,
                " AND starts_with(policy_digest, ?)",
                Some(Box::new(d.clone())),
            );
        }
        if let Some(c) = &q.failed_claim {
            add(
                s,
                p,
                " AND ? = ANY(failed_claims)",
                Some(Box::new(c.clone())),
            );
        }
        let limit = i64_of(q.limit as u64).saturating_add(1);
        add(s, p, " ORDER BY seq DESC LIMIT ?", Some(Box::new(limit)));
        let refs: Vec<&(dyn ToSql + Sync)> = params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect();
        let rows = self.run(self.query(&sql, &refs))?;
        let mut out = Self::history_rows(&rows)?;
        // The columns are an index; the record is what the chain covers.
        out.retain(|r| q.matches(r));
        let more = out.len() > q.limit;
        out.truncate(q.limit);
        let next = if more {
            out.last().map_or(0, |r| r.seq)
        } else {
            0
        };
        Ok((out, next))
    }

    fn fleet_at(&self, at: i64) -> Result<Vec<(String, Option<HistoryRecord>)>, StoreError> {
        self.run(async {
            // Distinct node ids by skipping through the (node_id, seq) index,
            // then each node's last verdict or stale mark at or before `at`
            // (up to the last seq at `at`: record times never decrease).
            let hi = self.last_seq_at_or_before(at).await?;
            let rows = self
                .query(
                    "WITH RECURSIVE n(node_id) AS ( \
                       (SELECT node_id FROM history WHERE node_id > '' ORDER BY node_id LIMIT 1) \
                       UNION ALL \
                       SELECT (SELECT h.node_id FROM history h WHERE h.node_id > n.node_id \
                               ORDER BY h.node_id LIMIT 1) \
                       FROM n WHERE n.node_id IS NOT NULL) \
                     SELECT n.node_id, r.seq, r.record FROM n LEFT JOIN LATERAL ( \
                       SELECT seq, record FROM history h WHERE h.node_id = n.node_id \
                       AND h.seq <= $1 AND h.kind IN ('', 'stale') \
                       ORDER BY h.seq DESC LIMIT 1) r ON true \
                     WHERE n.node_id IS NOT NULL",
                    &[&hi],
                )
                .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                let node: String = r.get("node_id");
                let rec = match r.get::<_, Option<i64>>("seq") {
                    Some(_) => Some(history_row(r)?),
                    None => None,
                };
                out.push((node, rec));
            }
            out.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(out)
        })
    }

    fn history_record(&self, seq: u64) -> Result<Option<HistoryRecord>, StoreError> {
        self.first(
            "SELECT seq, record FROM history WHERE seq = $1",
            &[&i64_of(seq)],
            history_row,
        )
    }

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
        logs: [Option<&[u8]>; 3],
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
            let mut logs: Logs = [None, None, None];
            for (i, d) in [&ev.uefi_log, &ev.ima_log, &ev.cel_log].iter().enumerate() {
                let Some(d) = d else { continue };
                let key = hex::decode(d).unwrap_or_default();
                let rows = self
                    .query("SELECT data FROM blobs WHERE digest = $1", &[&key])
                    .await?;
                logs[i] = rows.first().map(|r| r.get(0));
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

    fn checkpoints_between(&self, lo: u64, hi: u64) -> Result<Vec<Checkpoint>, StoreError> {
        self.run(async {
            let rows = self
                .query(
                    "SELECT seq, rec FROM checkpoints WHERE seq BETWEEN $1 AND $2 ORDER BY seq",
                    &[&i64_of(lo), &i64_of(hi)],
                )
                .await?;
            checkpoint_rows(&rows)
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

    fn history_head(&self) -> Result<Option<HistoryRecord>, StoreError> {
        self.first(
            "SELECT seq, record FROM history ORDER BY seq DESC LIMIT 1",
            &[],
            history_row,
        )
    }

    fn history_found(&self, from_seq: u64, limit: usize) -> Result<Vec<Found>, StoreError> {
        self.run(async {
            let rows = self
                .query(
                    "SELECT seq, record FROM history WHERE seq >= $1 ORDER BY seq LIMIT $2",
                    &[&i64_of(from_seq), &i64_of(limit as u64)],
                )
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(Found {
                        key_seq: u64::try_from(r.get::<_, i64>("seq")).unwrap_or(0),
                        record: history_row(r)?,
                    })
                })
                .collect()
        })
    }

    fn history_between(
        &self,
        from_unix: i64,
        to_unix: i64,
        limit: usize,
    ) -> Result<Vec<HistoryRecord>, StoreError> {
        self.run(async {
            let rows = self
                .query(
                    "SELECT seq, record FROM history WHERE time_unix >= $1 AND time_unix <= $2 \
                     ORDER BY seq LIMIT $3",
                    &[&from_unix, &to_unix, &i64_of(limit as u64)],
                )
                .await?;
            Self::history_rows(&rows)
        })
    }

    fn add_checkpoint(&self, c: &Checkpoint) -> Result<(), StoreError> {
        // Two replicas may sign the same head: the first signature stays.
        self.run(async {
            self.execute(
                "INSERT INTO checkpoints (seq, rec) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&i64_of(c.seq), &json_text(c)],
            )
            .await
            .map(drop)
        })
    }

    fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        self.run(async {
            let rows = self
                .query("SELECT seq, rec FROM checkpoints ORDER BY seq", &[])
                .await?;
            checkpoint_rows(&rows)
        })
    }

    fn last_checkpoint(&self) -> Result<Option<Checkpoint>, StoreError> {
        self.run(async {
            let rows = self
                .query(
                    "SELECT seq, rec FROM checkpoints ORDER BY seq DESC LIMIT 1",
                    &[],
                )
                .await?;
            Ok(checkpoint_rows(&rows)?.pop())
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

/// A [`VerdictWrite`] that owns its logs and token, so that whichever
/// caller writes a batch can write the others' verdicts too.
struct OwnedVerdict {
    record: HistoryRecord,
    evidence: Option<StoredEvidence>,
    logs: [Option<Vec<u8>>; 3],
    clock: Option<String>,
    passed_at: Option<i64>,
    token: Option<(String, TokenRecord)>,
}

impl From<VerdictWrite<'_>> for OwnedVerdict {
    fn from(w: VerdictWrite<'_>) -> Self {
        OwnedVerdict {
            record: w.record,
            evidence: w.evidence,
            logs: w.logs.map(|l| l.map(<[u8]>::to_vec)),
            clock: w.clock.as_ref().map(json_text),
            passed_at: w.passed_at,
            token: w.token.map(|(t, r)| (t.to_string(), r)),
        }
    }
}

/// Group commit for verdicts. The chain head's row lock is held until the
/// append's commit has flushed the WAL, so one verdict per transaction would
/// run the whole service at one WAL flush per attestation. Instead a caller
/// that finds no batch being written writes every verdict waiting (its own
/// among them) in one transaction, and each caller returns once the
/// transaction holding its verdict committed.
#[derive(Default)]
struct VerdictQueue {
    state: std::sync::Mutex<QueueState>,
    done: std::sync::Condvar,
}

#[derive(Default)]
struct QueueState {
    next_ticket: u64,
    waiting: Vec<(u64, OwnedVerdict)>,
    written: std::collections::HashMap<u64, Result<HistoryRecord, StoreError>>,
    writing: bool,
}

/// Most verdicts in one transaction.
const MAX_BATCH: usize = 64;

impl VerdictQueue {
    fn write(
        &self,
        v: OwnedVerdict,
        write_batch: impl Fn(&[OwnedVerdict]) -> Result<Vec<HistoryRecord>, StoreError>,
    ) -> Result<HistoryRecord, StoreError> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let ticket = st.next_ticket;
        st.next_ticket += 1;
        st.waiting.push((ticket, v));
        loop {
            if let Some(r) = st.written.remove(&ticket) {
                return r;
            }
            if st.writing {
                st = self.done.wait(st).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            // Nobody is writing and ours is not written: it is waiting. Write
            // the oldest waiting verdicts (ours among the first MAX_BATCH
            // whenever it was queued before them).
            st.writing = true;
            let n = st.waiting.len().min(MAX_BATCH);
            let batch: Vec<(u64, OwnedVerdict)> = st.waiting.drain(..n).collect();
            drop(st);
            let mut written = Written {
                queue: self,
                tickets: batch.iter().map(|(t, _)| *t).collect(),
                results: Vec::new(),
            };
            written.results = write_each_on_failure(batch, &write_batch);
            drop(written);
            st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// A batch being written. Dropped (also if its writer unwinds), it
/// publishes every ticket's result — an error for any it has none for —
/// and clears the `writing` mark under one lock, then wakes the waiters.
struct Written<'a> {
    queue: &'a VerdictQueue,
    tickets: Vec<u64>,
    results: Vec<(u64, Result<HistoryRecord, StoreError>)>,
}

impl Drop for Written<'_> {
    fn drop(&mut self) {
        let mut st = self.queue.state.lock().unwrap_or_else(|p| p.into_inner());
        st.written.extend(self.results.drain(..));
        for t in &self.tickets {
            st.written.entry(*t).or_insert_with(|| {
                Err(StoreError::Postgres(
                    "the transaction writing this verdict was abandoned".into(),
                ))
            });
        }
        st.writing = false;
        self.queue.done.notify_all();
    }
}

/// Writes a batch in one transaction; if that fails, each verdict in a
/// transaction of its own, so one bad write fails only its own caller.
fn write_each_on_failure(
    batch: Vec<(u64, OwnedVerdict)>,
    write_batch: &impl Fn(&[OwnedVerdict]) -> Result<Vec<HistoryRecord>, StoreError>,
) -> Vec<(u64, Result<HistoryRecord, StoreError>)> {
    let (tickets, verdicts): (Vec<u64>, Vec<OwnedVerdict>) = batch.into_iter().unzip();
    let one = |v: &OwnedVerdict| {
        write_batch(std::slice::from_ref(v)).and_then(|recs| {
            recs.into_iter()
                .next()
                .ok_or_else(|| StoreError::Postgres("a verdict written without its record".into()))
        })
    };
    if verdicts.len() > 1 {
        // Committed: never written again (a ticket without a record, which
        // append_in does not leave, gets an error from `Written`).
        if let Ok(recs) = write_batch(&verdicts) {
            return tickets.into_iter().zip(recs.into_iter().map(Ok)).collect();
        }
    }
    tickets.into_iter().zip(verdicts.iter().map(one)).collect()
}

/// Writes verdicts in one transaction, in order: the nodes' rows and the
/// tokens (pipelined), the records appended to the chain under its head's
/// lock, their evidence; then the commit. Their records, in order.
async fn write_verdicts(
    pool: &Pool,
    batch: &[OwnedVerdict],
) -> Result<Vec<HistoryRecord>, StoreError> {
    let mut c = pool.get().await.map_err(pool_err)?;
    let tx = c.transaction().await.map_err(pg)?;
    // Per node, what the last of its verdicts in the batch leaves (as
    // transactions one after the other would): one row each.
    let mut nodes: std::collections::BTreeMap<&str, (Option<&String>, Option<i64>)> =
        Default::default();
    for v in batch {
        let id = v.record.node_id.as_str();
        if v.clock.is_some() || v.passed_at.is_some() {
            let e = nodes.entry(id).or_default();
            e.0 = v.clock.as_ref().or(e.0);
            e.1 = v.passed_at.or(e.1);
        }
    }
    let node_rows = async {
        if nodes.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = nodes.keys().copied().collect();
        let clocks: Vec<Option<&String>> = nodes.values().map(|v| v.0).collect();
        let passes: Vec<Option<i64>> = nodes.values().map(|v| v.1).collect();
        exec(
            &tx,
            "UPDATE nodes SET last_clock = coalesce(u.c, nodes.last_clock), \
             last_pass_unix = coalesce(u.p, nodes.last_pass_unix) \
             FROM unnest($1::text[], $2::text[], $3::bigint[]) AS u(n, c, p) \
             WHERE nodes.node_id = u.n",
            &[&ids, &clocks, &passes],
        )
        .await
        .map(drop)
    };
    let token_rows = futures_util::future::try_join_all(
        batch
            .iter()
            .filter_map(|v| v.token.as_ref())
            .map(|(token, t)| put_token_in(&tx, token, t)),
    );
    tokio::try_join!(node_rows, token_rows)?;
    let recs = append_in(&tx, batch.iter().map(|v| v.record.clone()).collect()).await?;
    futures_util::future::try_join_all(batch.iter().zip(&recs).filter_map(|(v, rec)| {
        let ev = v.evidence.clone()?;
        let logs = v.logs.each_ref().map(|l| l.as_deref());
        Some(put_evidence_in(&tx, rec.seq, ev, logs))
    }))
    .await?;
    tx.commit().await.map_err(pg)?;
    Ok(recs)
}

/// Appends `recs` to the global chain inside `tx` (which then holds the
/// history lock until it ends).
async fn append_in(
    tx: &deadpool_postgres::Transaction<'_>,
    mut recs: Vec<HistoryRecord>,
) -> Result<Vec<HistoryRecord>, StoreError> {
    // The head row's lock serializes appends across replicas until commit.
    let st = tx
        .prepare_cached("SELECT seq, hash, time_unix FROM history_head FOR UPDATE")
        .await
        .map_err(pg)?;
    let head = tx.query_one(&st, &[]).await.map_err(pg)?;
    let (mut seq, mut hash, mut time): (i64, String, i64) = (head.get(0), head.get(1), head.get(2));
    let n = recs.len();
    let (mut seqs, mut nodes, mut times, mut kinds) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut passed, mut policies, mut failed, mut json) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for rec in &mut recs {
        seq += 1;
        rec.seq = u64::try_from(seq).unwrap_or(0);
        rec.prev_hash = std::mem::take(&mut hash);
        // As on sled: record times never go backwards.
        rec.time_unix = rec.time_unix.max(time);
        time = rec.time_unix;
        seqs.push(seq);
        nodes.push(rec.node_id.clone());
        times.push(rec.time_unix);
        kinds.push(rec.kind.clone());
        passed.push(rec.passed);
        policies.push(rec.policy_digest.clone());
        // Postgres arrays of arrays must be rectangular: failed claims go
        // as one tab-separated string each, split on insert.
        failed.push(
            rec.claims
                .iter()
                .filter(|c| !c.passed)
                .map(|c| c.id.replace('\t', " "))
                .collect::<Vec<_>>()
                .join("\t"),
        );
        let j = json_text(rec);
        hash = hex::encode(Sha256::digest(j.as_bytes()));
        json.push(j);
    }
    let insert = tx
        .prepare_cached(
            "INSERT INTO history (seq, node_id, time_unix, kind, passed, policy_digest, \
             failed_claims, record) \
             SELECT s, n, t, k, p, d, \
                    CASE WHEN f = '' THEN '{}'::text[] ELSE string_to_array(f, E'\\t') END, r \
             FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], \
                         $5::boolean[], $6::text[], $7::text[], $8::text[]) \
                  AS u(s, n, t, k, p, d, f, r)",
        )
        .await
        .map_err(pg)?;
    let advance = tx
        .prepare_cached("UPDATE history_head SET seq = $1, hash = $2, time_unix = $3")
        .await
        .map_err(pg)?;
    // Pipelined: both go out before either answer comes back.
    let rows: [&(dyn ToSql + Sync); 8] = [
        &seqs, &nodes, &times, &kinds, &passed, &policies, &failed, &json,
    ];
    let head: [&(dyn ToSql + Sync); 3] = [&seq, &hash, &time];
    tokio::try_join!(tx.execute(&insert, &rows), tx.execute(&advance, &head)).map_err(pg)?;
    Ok(recs)
}

/// Keeps the evidence behind record `seq` inside `tx`; logs stored once by digest.
async fn put_evidence_in(
    tx: &deadpool_postgres::Transaction<'_>,
    seq: u64,
    mut ev: StoredEvidence,
    logs: [Option<&[u8]>; 3],
) -> Result<(), StoreError> {
    let mut size = ev.attest.len() as u64 / 2 + ev.signature.len() as u64 / 2;
    let mut names = [None, None, None];
    for (i, log) in logs.iter().enumerate() {
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
                &[&digest, bytes],
            )
            .await?
            .first()
            .is_some_and(|r| r.get::<_, bool>(0));
            if inserted {
                size += bytes.len() as u64;
            }
        }
        names[i] = Some(hex::encode(&digest));
    }
    [ev.uefi_log, ev.ima_log, ev.cel_log] = names;
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

async fn put_token_in(
    c: &impl deadpool_postgres::GenericClient,
    token: &str,
    rec: &TokenRecord,
) -> Result<(), StoreError> {
    let id = token_key(token).to_vec();
    exec(
        c,
        "INSERT INTO tokens (id, node_id, ak_name, issued_unix, expires_unix, used, \
         revoked) VALUES ($1,$2,$3,$4,$5,$6,$7) ON CONFLICT (id) DO UPDATE SET \
         node_id = EXCLUDED.node_id, ak_name = EXCLUDED.ak_name, \
         issued_unix = EXCLUDED.issued_unix, expires_unix = EXCLUDED.expires_unix, \
         used = EXCLUDED.used, revoked = EXCLUDED.revoked",
        &[
            &id,
            &rec.node_id,
            &rec.ak_name,
            &rec.issued_unix,
            &rec.expires_unix,
            &rec.used,
            &rec.revoked,
        ],
    )
    .await?;
    Ok(())
}

/// Runs a statement prepared once per connection (parse and plan once).
async fn exec(
    c: &impl deadpool_postgres::GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64, StoreError> {
    let st = c.prepare_cached(sql).await.map_err(pg)?;
    c.execute(&st, params).await.map_err(pg)
}

/// `sql` alone in a transaction that commits without waiting for its WAL
/// flush (`synchronous_commit = off`), in one round trip: BEGIN, the
/// statement (prepared once per connection) and COMMIT are pipelined. A
/// later synchronous commit on any connection flushes it too (the WAL is one
/// sequence).
async fn rows_async_commit(
    c: &deadpool_postgres::Object,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, StoreError> {
    // Prepared before the pipeline: a statement prepared inside it would run
    // after the COMMIT.
    let st = c.prepare_cached(sql).await.map_err(pg)?;
    // All three are sent at the first poll, in order, and all three answers
    // read: a failed statement's COMMIT ends its transaction as a rollback.
    let (begin, rows, commit) = tokio::join!(
        c.batch_execute("BEGIN; SET LOCAL synchronous_commit = off"),
        c.query(&st, params),
        c.batch_execute("COMMIT"),
    );
    begin.map_err(pg)?;
    let rows = rows.map_err(pg)?;
    commit.map_err(pg)?;
    Ok(rows)
}

/// A query prepared once per connection.
async fn rows(
    c: &impl deadpool_postgres::GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, StoreError> {
    let st = c.prepare_cached(sql).await.map_err(pg)?;
    c.query(&st, params).await.map_err(pg)
}

#[cfg(test)]
mod tests {
    //! The group-commit queue's hand-over logic, apart from PostgreSQL (the
    //! storage suite runs it against a real server).
    use super::*;

    fn verdict(node: &str) -> OwnedVerdict {
        OwnedVerdict {
            record: HistoryRecord {
                seq: 0,
                node_id: node.into(),
                time_unix: 0,
                passed: true,
                claims: Vec::new(),
                policy_name: String::new(),
                policy_digest: String::new(),
                evidence_digest: String::new(),
                prev_hash: String::new(),
                kind: String::new(),
            },
            evidence: None,
            logs: [None, None, None],
            clock: None,
            passed_at: None,
            token: None,
        }
    }

    /// 16 threads × 25 verdicts; the writer refuses any batch holding a
    /// "bad" node (so batches holding one are retried verdict by verdict)
    /// and numbers the rest in order, as the chain would.
    #[test]
    fn every_caller_gets_its_own_result_and_a_refusal_stays_its_own() {
        let q = VerdictQueue::default();
        let seq = std::sync::atomic::AtomicU64::new(0);
        let batches = std::sync::Mutex::new(Vec::new());
        let write = |b: &[OwnedVerdict]| {
            batches.lock().unwrap().push(b.len());
            // A transaction takes a while: the others queue meanwhile.
            std::thread::sleep(std::time::Duration::from_millis(1));
            if b.iter().any(|v| v.record.node_id.starts_with("bad")) {
                return Err(StoreError::Postgres("refused".into()));
            }
            Ok(b.iter()
                .map(|v| HistoryRecord {
                    seq: seq.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1,
                    ..v.record.clone()
                })
                .collect())
        };
        let results = std::sync::Mutex::new(Vec::new());
        std::thread::scope(|sc| {
            for t in 0..16 {
                let (q, write, results) = (&q, &write, &results);
                sc.spawn(move || {
                    for i in 0..25 {
                        let node = if t == 3 && i % 5 == 0 {
                            format!("bad-{i}")
                        } else {
                            format!("t{t}-{i}")
                        };
                        let r = q.write(verdict(&node), write);
                        results.lock().unwrap().push((node, r));
                    }
                });
            }
        });
        let results = results.into_inner().unwrap();
        let mut seqs = Vec::new();
        for (node, r) in &results {
            match r {
                Ok(rec) => {
                    assert_eq!(&rec.node_id, node);
                    seqs.push(rec.seq);
                }
                Err(_) => assert!(node.starts_with("bad"), "{node} refused"),
            }
        }
        assert_eq!(results.iter().filter(|r| r.1.is_err()).count(), 5);
        seqs.sort_unstable();
        seqs.dedup();
        assert_eq!(seqs.len(), 395, "one seq per written verdict");
        let b = batches.into_inner().unwrap();
        assert!(b.iter().all(|n| (1..=MAX_BATCH).contains(n)));
        assert!(
            b.iter().any(|n| *n > 1),
            "some verdicts shared a batch: {b:?}"
        );
    }

    /// A writer that unwinds fails its batch's callers; the queue goes on.
    #[test]
    fn a_writer_that_panics_fails_its_batch_and_the_queue_goes_on() {
        let q = VerdictQueue::default();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            q.write(
                verdict("a"),
                |_: &[OwnedVerdict]| -> Result<Vec<HistoryRecord>, StoreError> {
                    panic!("writer died")
                },
            )
        }));
        assert!(r.is_err(), "the panic reaches the writing caller");
        let rec = q
            .write(verdict("b"), |b: &[OwnedVerdict]| {
                Ok(b.iter().map(|v| v.record.clone()).collect())
            })
            .unwrap();
        assert_eq!(rec.node_id, "b");
    }
}
