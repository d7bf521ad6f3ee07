//! Commands that open the verifier's store themselves (for sled, with the
//! verifier stopped): which store, and opening it.

use std::path::{Path, PathBuf};

use assay_verifier::config::DEFAULT_DATA_DIR;
use assay_verifier::store::{self, Storage};
use clap::Args;

/// The store an offline command reads: sled in the data directory, or the
/// PostgreSQL database the replicas share.
#[derive(Args, Clone)]
pub struct StoreArgs {
    /// The verifier's data directory; sled lives in `<DIR>/db` (stop the
    /// verifier first: sled is single-process) [default: /var/lib/assay-verifier]
    #[arg(long, env = "ASSAY_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// A PostgreSQL store instead of sled, in `[storage] url` form
    /// (`host=/run/postgresql dbname=assay` or `postgresql://…`) [default: sled]
    #[arg(long, env = "ASSAY_POSTGRES_URL", value_name = "URL")]
    pub postgres: Option<String>,
    /// PEM CA certificates the PostgreSQL server's certificate must chain to
    /// (TLS, as `[storage] ca_file`)
    #[arg(
        long,
        env = "ASSAY_POSTGRES_CA",
        value_name = "FILE",
        requires = "postgres"
    )]
    pub postgres_ca: Option<PathBuf>,
}

impl StoreArgs {
    /// Whether a store was named at all.
    pub fn given(&self) -> bool {
        self.data_dir.is_some() || self.postgres.is_some()
    }

    pub fn dir(&self) -> &Path {
        self.data_dir
            .as_deref()
            .unwrap_or(Path::new(DEFAULT_DATA_DIR))
    }

    /// Opens the chosen store.
    pub fn open(&self) -> anyhow::Result<Box<dyn Storage>> {
        let config = match &self.postgres {
            Some(url) => store::StorageConfig::Postgres(store::PgConfig::from_section(
                Some(url.clone()),
                None,
                Some(2),
                self.postgres_ca.clone(),
            )?),
            None => store::StorageConfig::Sled,
        };
        Ok(store::open(&config, self.dir())?)
    }

    /// Where the store is, for messages.
    pub fn describe(&self) -> String {
        match &self.postgres {
            Some(_) => "the PostgreSQL store".into(),
            None => format!("data directory {}", self.dir().display()),
        }
    }
}
