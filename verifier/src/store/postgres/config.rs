//! Connection settings (`[storage]` with `backend = "postgres"`).

use std::path::PathBuf;

use crate::setting::InvalidKey;

/// Connections per verifier when `pool_size` is not set.
pub const DEFAULT_PG_POOL_SIZE: usize = 16;

/// Connection settings (`[storage]` in the config file).
#[derive(Debug, Clone)]
pub struct PgConfig {
    /// libpq-style `key=value` pairs or a `postgresql://` URL.
    pub url: String,
    /// A file holding the password (kept out of the config file), if any.
    pub password_file: Option<PathBuf>,
    /// Connections in the pool.
    pub pool_size: usize,
}

impl PgConfig {
    /// The `[storage]` keys of the PostgreSQL backend, checked.
    pub fn from_section(
        url: Option<String>,
        password_file: Option<PathBuf>,
        pool_size: Option<usize>,
    ) -> Result<Self, InvalidKey> {
        let url = url.ok_or_else(|| {
            InvalidKey::new(
                "storage.url",
                "backend = \"postgres\" needs a url, e.g. \"host=/run/postgresql dbname=assay user=assay\"",
            )
        })?;
        url.parse::<tokio_postgres::Config>()
            .map_err(|e| InvalidKey::new("storage.url", e.to_string()))?;
        let pool_size = pool_size.unwrap_or(DEFAULT_PG_POOL_SIZE);
        if !(1..=1024).contains(&pool_size) {
            return Err(InvalidKey::new("storage.pool_size", "between 1 and 1024"));
        }
        Ok(PgConfig {
            url,
            password_file,
            pool_size,
        })
    }
}
