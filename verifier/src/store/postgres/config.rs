//! Connection settings (`[storage]` with `backend = "postgres"`), and how the
//! connection is protected.
//!
//! TLS is rustls with the server's certificate verified: it must chain to a
//! certificate of `storage.ca_file` (default: the system's CAs) and name the
//! host of `storage.url`. libpq's `sslmode` in the URL chooses:
//!
//! | `sslmode`            | `ca_file` | connection                                   |
//! |----------------------|-----------|----------------------------------------------|
//! | `require`            | any       | TLS, verified (against `ca_file` or the system's CAs) |
//! | none (or `prefer`)   | set       | TLS, verified against `ca_file`              |
//! | none (or `prefer`)   | unset     | plaintext if every host is a Unix socket or loopback; refused otherwise |
//! | `disable`            | unset     | plaintext (a warning for a remote host)      |
//! | `disable`            | set       | refused (contradiction)                      |
//!
//! `prefer` never means "try TLS, fall back to plaintext": anyone between the
//! verifier and the database could choose the fallback.

use std::net::IpAddr;
use std::path::PathBuf;

use tokio_postgres::config::{Host, SslMode};

use crate::setting::InvalidKey;

/// Connections per verifier when `pool_size` is not set.
pub const DEFAULT_PG_POOL_SIZE: usize = 16;
/// The system's CAs (Debian's ca-certificates), for `sslmode=require` without `ca_file`.
pub const SYSTEM_CA_FILE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Connection settings (`[storage]` in the config file).
#[derive(Debug, Clone)]
pub struct PgConfig {
    /// libpq-style `key=value` pairs or a `postgresql://` URL.
    pub url: String,
    /// A file holding the password (kept out of the config file), if any.
    pub password_file: Option<PathBuf>,
    /// Connections in the pool.
    pub pool_size: usize,
    /// How the connection is protected.
    pub tls: PgTls,
}

/// How the connection to PostgreSQL is protected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgTls {
    /// Plaintext: a Unix socket or loopback, or `sslmode=disable`.
    Off,
    /// TLS, required; the server's certificate must chain to a certificate in
    /// `roots` (PEM) and name the host connected to.
    Verified { roots: PathBuf },
}

impl PgConfig {
    /// The `[storage]` keys of the PostgreSQL backend, checked.
    pub fn from_section(
        url: Option<String>,
        password_file: Option<PathBuf>,
        pool_size: Option<usize>,
        ca_file: Option<PathBuf>,
    ) -> Result<Self, InvalidKey> {
        let url = url.ok_or_else(|| {
            InvalidKey::new(
                "storage.url",
                "backend = \"postgres\" needs a url, e.g. \"host=/run/postgresql dbname=assay user=assay\"",
            )
        })?;
        let parsed = url
            .parse::<tokio_postgres::Config>()
            .map_err(|e| InvalidKey::new("storage.url", e.to_string()))?;
        let pool_size = pool_size.unwrap_or(DEFAULT_PG_POOL_SIZE);
        if !(1..=1024).contains(&pool_size) {
            return Err(InvalidKey::new("storage.pool_size", "between 1 and 1024"));
        }
        Ok(PgConfig {
            tls: tls_of(&parsed, ca_file)?,
            url,
            password_file,
            pool_size,
        })
    }
}

/// Decides the connection's protection (the table in the module docs).
fn tls_of(url: &tokio_postgres::Config, ca_file: Option<PathBuf>) -> Result<PgTls, InvalidKey> {
    match (url.get_ssl_mode(), ca_file) {
        (SslMode::Disable, Some(_)) => Err(InvalidKey::new(
            "storage.ca_file",
            "set together with sslmode=disable in storage.url: choose TLS (remove sslmode=disable) or plaintext (remove ca_file)",
        )),
        (SslMode::Disable, None) => Ok(PgTls::Off),
        (SslMode::Require, ca) => Ok(PgTls::Verified {
            roots: ca.unwrap_or_else(|| PathBuf::from(SYSTEM_CA_FILE)),
        }),
        (_, Some(ca)) => Ok(PgTls::Verified { roots: ca }),
        (_, None) => match remote_host(url) {
            None => Ok(PgTls::Off),
            Some(host) => Err(InvalidKey::new(
                "storage.url",
                format!(
                    "host `{host}` is not on this machine, and the connection would be plaintext: \
                     set storage.ca_file (TLS; the server's certificate must chain to it), add \
                     sslmode=require (TLS; verified against the system's CAs), or add \
                     sslmode=disable to accept plaintext"
                ),
            )),
        },
    }
}

/// The first host of `url` that is neither a Unix socket nor loopback.
pub(super) fn remote_host(url: &tokio_postgres::Config) -> Option<String> {
    let loopback_ip = |ip: &IpAddr| ip.is_loopback();
    let mut hosts = url.get_hosts().iter().filter_map(|h| match h {
        Host::Unix(_) => None,
        Host::Tcp(name) => {
            let local = name.eq_ignore_ascii_case("localhost")
                || name
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<IpAddr>()
                    .is_ok_and(|ip| loopback_ip(&ip));
            (!local).then(|| name.clone())
        }
    });
    // A hostaddr, when given, is where the connection goes.
    if url.get_hostaddrs().is_empty() {
        hosts.next()
    } else {
        url.get_hostaddrs()
            .iter()
            .find(|ip| !loopback_ip(ip))
            .map(|ip| ip.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls(url: &str, ca: Option<&str>) -> Result<PgTls, String> {
        PgConfig::from_section(Some(url.into()), None, None, ca.map(PathBuf::from))
            .map(|c| c.tls)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn loopback_and_unix_sockets_default_to_plaintext() {
        for url in [
            "host=/run/postgresql dbname=assay",
            "host=127.0.0.1 dbname=assay",
            "host=localhost dbname=assay",
            "host=::1 dbname=assay",
            "postgresql://127.0.0.2:5433/assay",
            "host=/run/postgresql,127.0.0.1 dbname=assay",
        ] {
            assert_eq!(tls(url, None), Ok(PgTls::Off), "{url}");
        }
    }

    #[test]
    fn a_remote_host_without_tls_settings_is_refused_naming_the_choices() {
        for url in [
            "host=db.example.org dbname=assay",
            "host=10.0.0.5 dbname=assay",
            "postgresql://db.example.org/assay",
            "host=127.0.0.1,db.example.org dbname=assay",
            "host=localhost hostaddr=192.0.2.7 dbname=assay",
            "host=db.example.org sslmode=prefer dbname=assay",
        ] {
            let e = tls(url, None).unwrap_err();
            assert!(e.contains("storage.url"), "{e}");
            assert!(e.contains("is not on this machine"), "{e}");
            assert!(
                e.contains("storage.ca_file") && e.contains("sslmode=disable"),
                "{e}"
            );
        }
    }

    #[test]
    fn a_ca_file_or_sslmode_require_means_verified_tls() {
        assert_eq!(
            tls(
                "host=db.example.org dbname=assay",
                Some("/etc/assay/pg-ca.pem")
            ),
            Ok(PgTls::Verified {
                roots: "/etc/assay/pg-ca.pem".into()
            })
        );
        assert_eq!(
            tls("host=db.example.org sslmode=require dbname=assay", None),
            Ok(PgTls::Verified {
                roots: SYSTEM_CA_FILE.into()
            })
        );
        // TLS also on loopback when asked for.
        assert_eq!(
            tls("host=localhost dbname=assay", Some("/ca.pem")),
            Ok(PgTls::Verified {
                roots: "/ca.pem".into()
            })
        );
    }

    #[test]
    fn plaintext_to_a_remote_host_must_be_explicit_and_excludes_a_ca_file() {
        assert_eq!(
            tls("host=db.example.org sslmode=disable dbname=assay", None),
            Ok(PgTls::Off)
        );
        let e = tls("host=db.example.org sslmode=disable", Some("/ca.pem")).unwrap_err();
        assert!(e.contains("storage.ca_file"), "{e}");
    }
}
