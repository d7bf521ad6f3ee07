//! The store's configuration sections: `[storage]` (which backend) and
//! `[evidence]` (how long the evidence behind each verdict is kept).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::PgConfig;
use crate::setting::InvalidKey;

/// `[storage]`: sled (default) or PostgreSQL.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileStorage {
    /// `sled` (default) or `postgres`.
    pub backend: Option<String>,
    /// PostgreSQL connection: libpq `key=value` pairs or a `postgresql://` URL.
    pub url: Option<String>,
    /// A file holding the PostgreSQL password (keeps it out of this file).
    pub password_file: Option<PathBuf>,
    /// Connections per verifier (default 16).
    pub pool_size: Option<usize>,
    /// PEM CA certificates the PostgreSQL server's certificate must chain
    /// to; setting it turns TLS on (see `PgTls`).
    pub ca_file: Option<PathBuf>,
}

/// Where the verifier keeps its state.
#[derive(Debug, Clone, Default)]
pub enum StorageConfig {
    /// sled in `<data_dir>/db`: one verifier, nothing to set up.
    #[default]
    Sled,
    /// PostgreSQL, shared by any number of verifier replicas.
    Postgres(PgConfig),
}

impl FileStorage {
    pub fn validate(self) -> Result<StorageConfig, InvalidKey> {
        match self.backend.as_deref().unwrap_or("sled") {
            "sled" => {
                if self.url.is_some()
                    || self.password_file.is_some()
                    || self.pool_size.is_some()
                    || self.ca_file.is_some()
                {
                    return Err(InvalidKey::new(
                        "storage.url",
                        "url, password_file, pool_size and ca_file are for backend = \"postgres\"",
                    ));
                }
                Ok(StorageConfig::Sled)
            }
            "postgres" | "postgresql" => Ok(StorageConfig::Postgres(PgConfig::from_section(
                self.url,
                self.password_file,
                self.pool_size,
                self.ca_file,
            )?)),
            other => Err(InvalidKey::new(
                "storage.backend",
                format!("`{other}`: expected `sled` or `postgres`"),
            )),
        }
    }
}

/// `[evidence]`: how long the evidence behind each verdict is kept.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEvidence {
    /// Days (default 30; 0: keep none).
    pub retention_days: Option<u64>,
    /// Total size in MiB, logs counted once (default 1024).
    pub max_mib: Option<u64>,
    /// Number of verdicts whose evidence is kept (default: no limit).
    pub max_records: Option<u64>,
}

/// What of the evidence is kept (oldest pruned first when any bound is exceeded).
#[derive(Debug, Clone)]
pub struct EvidenceRetention {
    /// None: evidence is not kept.
    pub keep: Option<Duration>,
    pub max_bytes: u64,
    pub max_records: usize,
}

pub const DEFAULT_EVIDENCE_DAYS: u64 = 30;
pub const DEFAULT_EVIDENCE_MIB: u64 = 1024;

impl FileEvidence {
    pub fn validate(&self) -> Result<EvidenceRetention, InvalidKey> {
        Ok(EvidenceRetention {
            keep: match self.retention_days.unwrap_or(DEFAULT_EVIDENCE_DAYS) {
                0 => None,
                d if d > 36_500 => {
                    return Err(InvalidKey::new(
                        "evidence.retention_days",
                        format!("{d}: at most 36500"),
                    ))
                }
                d => Some(Duration::from_secs(d * 86_400)),
            },
            max_bytes: self
                .max_mib
                .unwrap_or(DEFAULT_EVIDENCE_MIB)
                .saturating_mul(1 << 20),
            max_records: self
                .max_records
                .map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX)),
        })
    }
}
