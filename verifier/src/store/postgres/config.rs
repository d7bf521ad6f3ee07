//! Connection settings (`[storage]` with `backend = "postgres"`).

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
