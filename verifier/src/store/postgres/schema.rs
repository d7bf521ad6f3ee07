//! The schema: migrations in `verifier/migrations/`, applied in order at
//! start-up under an advisory lock (`assay_schema` says which ran).

use super::{pg, PgStore};
use crate::store::StoreError;

/// Schema migrations, applied in order at start-up (`assay_schema` says which ran).
const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("../../../migrations/0001_init.sql")),
    (2, include_str!("../../../migrations/0002_history_head.sql")),
    (
        3,
        include_str!("../../../migrations/0003_drop_last_evidence.sql"),
    ),
    (4, include_str!("../../../migrations/0004_nodes_by_ek.sql")),
    (5, include_str!("../../../migrations/0005_inventory.sql")),
    (
        6,
        include_str!("../../../migrations/0006_node_ek_certificate.sql"),
    ),
    (
        7,
        include_str!("../../../migrations/0007_unauthenticated_attempts.sql"),
    ),
    (
        8,
        include_str!("../../../migrations/0008_named_policies.sql"),
    ),
    (9, include_str!("../../../migrations/0009_ima_state.sql")),
];

/// Advisory lock keys (transaction scoped).
const LOCK_MIGRATE: i64 = 0x6173_7361_7901;

impl PgStore {
    pub(super) async fn migrate(&self) -> Result<(), StoreError> {
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
}
