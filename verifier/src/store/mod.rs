//! Durable state behind one seam, [`Storage`] (its contract is written
//! there), with two backends: sled (embedded, the default; `sled/`) and
//! PostgreSQL (several verifier replicas; `postgres/`). Nodes, pending
//! enrollments, nonces, join tokens, the hash-chained verdict history with
//! its checkpoints, evidence and policies.
//!
//! A third backend is one folder implementing the four traits of
//! `storage.rs`, a variant in `config.rs` and an arm in [`open`].

mod config;
mod error;
mod postgres;
mod records;
mod sled;
mod storage;

pub use self::config::{
    EvidenceRetention, FileEvidence, FileStorage, StorageConfig, DEFAULT_EVIDENCE_DAYS,
    DEFAULT_EVIDENCE_MIB,
};
pub use self::error::StoreError;
pub use self::postgres::{PgConfig, PgStore, PgTls, DEFAULT_PG_POOL_SIZE};
pub(crate) use self::records::{
    applied_outcome, batch_conflicts, changed_versions, from_json, plan_apply,
    plan_inventory_batch, plan_retire, retired_outcome, to_json, token_key,
};
pub use self::records::{
    token_id, Applied, ApplyMode, AttemptSource, Checkpoint, Consumed, EkBinding, Found,
    HistoryQuery, HistoryRecord, InventoryAdded, InventoryConflicts, InventoryEntry, Logs, Moved,
    NewPolicyVersion, NodeRecord, NonceRecord, PendingEnrollment, PolicyStatus, PolicyVersion,
    Quarantine, Retired, RevokeOne, StoredEvidence, TokenRecord, UnauthenticatedAttempts,
    VerdictWrite, MAX_ATTEMPT_SOURCES, MAX_CONFLICTS_LISTED, MIN_TOKEN_ID_PREFIX,
};
pub use self::sled::SledStore;
pub use self::storage::{
    latest_authentic_evidence, EvidenceStore, HistoryStore, NodeStore, PolicyStore, SingleUseStore,
    Storage,
};

use std::path::Path;

/// Opens the configured backend (`data_dir` is where sled lives).
pub fn open(config: &StorageConfig, data_dir: &Path) -> Result<Box<dyn Storage>, StoreError> {
    Ok(match config {
        StorageConfig::Sled => Box::new(SledStore::open(&data_dir.join("db"))?),
        StorageConfig::Postgres(pg) => Box::new(PgStore::open(pg)?),
    })
}
