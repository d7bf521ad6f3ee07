//! The PostgreSQL backend: the state several verifier replicas share.
//!
//! - Single-use objects (nonces, tokens, enrollments) are consumed by one
//!   conditional `UPDATE … WHERE NOT used` / `DELETE … RETURNING`: whichever
//!   replica gets there first wins, every other sees it used.
//! - History is one global chain: an append locks the head row
//!   (`history_head … FOR UPDATE`), inserts the chained records and moves the
//!   head, so records from every replica get one gap-free sequence. The lock
//!   is held until the commit has flushed the WAL; verdicts are therefore
//!   written many to a transaction (group commit, `queue.rs`).
//! - Every call returns after its transaction committed (durable with the
//!   server's `synchronous_commit`, on by default); issuing and using a nonce
//!   commit without waiting for the flush (see the contract on `Storage`).
//!
//! The storage traits are blocking (the service calls them from blocking
//! threads, like sled). This backend runs tokio-postgres connections on a
//! small runtime of its own and waits for each call; it never blocks that
//! runtime, so it may be called from any thread.
//!
//! Connections are a Unix socket (`host=/run/postgresql`), loopback, or TLS
//! (rustls, the server's certificate and host name verified; `config.rs` says
//! when): plaintext to another machine only with an explicit `sslmode=disable`.
//!
//! Files: `config.rs` (connection settings), `schema.rs` (migrations),
//! `rows.rs` (statements and row decoders), one per storage concern
//! (`nodes.rs`, `single_use.rs`, `history.rs`, `evidence.rs`, `policies.rs`), `writes.rs`
//! (what a verdict writes in a transaction) and `queue.rs` (group commit).

mod config;
mod evidence;
mod history;
mod nodes;
mod policies;
mod queue;
mod rows;
mod schema;
mod single_use;
mod writes;

pub use self::config::{PgConfig, PgTls, DEFAULT_PG_POOL_SIZE};

use std::future::Future;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

use self::queue::VerdictQueue;
use self::rows::{exec, rows};
use super::StoreError;

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
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match &config.tls {
            PgTls::Off => {
                if let Some(host) = self::config::remote_host(&pg_config) {
                    tracing::warn!(
                        %host,
                        "storage.url: sslmode=disable, so the connection to PostgreSQL on another machine is plaintext"
                    );
                }
                Manager::from_config(pg_config, NoTls, manager_config)
            }
            PgTls::Verified { roots } => {
                let tls = crate::http::tls_client_config(roots, None, "storage.ca_file")
                    .map_err(StoreError::Postgres)?;
                // Never fall back to plaintext (libpq's `prefer`).
                pg_config.ssl_mode(tokio_postgres::config::SslMode::Require);
                Manager::from_config(
                    pg_config,
                    tokio_postgres_rustls::MakeRustlsConnect::new(tls),
                    manager_config,
                )
            }
        };
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
}
