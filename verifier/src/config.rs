//! The verifier's configuration: one typed struct, from defaults < TOML file <
//! environment (`ASSAY_…`) < command-line flags, validated at start-up with
//! errors that name the key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config key `{key}`: {reason}")]
    Invalid { key: &'static str, reason: String },
}

/// The file form: every key optional, unknown keys refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub policy: Option<PathBuf>,
    #[serde(default)]
    pub tls: FileTls,
    #[serde(default)]
    pub trust: FileTrust,
    pub nonce_ttl_secs: Option<u64>,
    pub token_ttl_secs: Option<u64>,
    pub enrollment_ttl_secs: Option<u64>,
    #[serde(default)]
    pub join: FileJoin,
    /// A node that does not pass again within this many seconds is stale (0: off).
    pub stale_after_secs: Option<u64>,
    /// How often the history head is signed into a checkpoint (default 60).
    pub checkpoint_interval_secs: Option<u64>,
    #[serde(default)]
    pub evidence: FileEvidence,
    #[serde(default)]
    pub webhook: FileWebhook,
    #[serde(default)]
    pub storage: FileStorage,
}

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

/// `[webhook]`: where isolation and restore notifications go.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileWebhook {
    pub url: Option<String>,
    /// PEM roots for an https URL (default: /etc/ssl/certs/ca-certificates.crt).
    pub ca: Option<PathBuf>,
}

/// `[join]`: which orchestrator nodes join, and how to reach it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileJoin {
    /// `token` (default) or `swarm`.
    pub orchestrator: Option<String>,
    #[serde(default)]
    pub swarm: FileSwarm,
    #[serde(default)]
    pub kubernetes: FileKubernetes,
    /// Node groups with their own orchestrator (first match wins).
    #[serde(default)]
    pub groups: Vec<FileGroup>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileGroup {
    pub name: String,
    /// Regular expression over node ids, anchored at both ends.
    pub nodes: String,
    /// `token`, `swarm` or `kubeadm` (settings from `[join.swarm]`/`[join.kubernetes]`).
    pub orchestrator: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileKubernetes {
    /// `https://host:port` of the API server.
    pub api_server: Option<String>,
    /// The cluster CA certificate (PEM), e.g. /etc/kubernetes/pki/ca.crt.
    pub ca: Option<PathBuf>,
    /// Bearer token file (a ServiceAccount token).
    pub token_file: Option<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// `host:port` for `kubeadm join` (default: the API server's).
    pub join_endpoint: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSwarm {
    /// The manager's Engine API: `unix:///var/run/docker.sock` (default) or a path.
    pub docker_host: Option<String>,
    /// `host:port` nodes join at; default: the manager's own swarm address.
    pub manager_addr: Option<String>,
    /// How long a handed-out worker token lives before it is rotated (default 120).
    pub token_window_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTls {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// CA of the client certificates that carry roles (operator, auditor,
    /// orchestrator, node); default `<data_dir>/tls/clients-ca.pem`.
    pub client_ca: Option<PathBuf>,
    /// Leave every RPC open to any TLS client (no roles). Off by default.
    #[serde(default)]
    pub no_client_auth: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTrust {
    /// PEM files holding trusted EK root CA certificates.
    #[serde(default)]
    pub ek_roots: Vec<PathBuf>,
    /// PEM files holding intermediate CA certificates used to build EK chains.
    #[serde(default)]
    pub ek_intermediates: Vec<PathBuf>,
}

/// Values given on the command line or in the environment (clap fills these).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub policy: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub client_ca: Option<PathBuf>,
    pub ek_roots: Vec<PathBuf>,
    pub ek_intermediates: Vec<PathBuf>,
    pub nonce_ttl_secs: Option<u64>,
    pub token_ttl_secs: Option<u64>,
}

/// The validated configuration the service runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub policy: PathBuf,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    /// None: `tls.no_client_auth`, every RPC open (see `roles`).
    pub client_ca: Option<PathBuf>,
    pub ek_roots: Vec<PathBuf>,
    pub ek_intermediates: Vec<PathBuf>,
    pub nonce_ttl: Duration,
    pub token_ttl: Duration,
    pub enrollment_ttl: Duration,
    pub join: JoinConfig,
    /// Node groups that join another orchestrator than `join`.
    pub join_groups: Vec<JoinGroup>,
    /// None: staleness is not tracked.
    pub stale_after: Option<Duration>,
    pub checkpoint_interval: Duration,
    pub evidence: EvidenceRetention,
    pub webhook: Option<crate::webhook::WebhookConfig>,
    pub storage: crate::store::StorageConfig,
}

pub const DEFAULT_STALE_AFTER_SECS: u64 = 900;
pub const DEFAULT_CHECKPOINT_INTERVAL_SECS: u64 = 60;
pub const DEFAULT_EVIDENCE_DAYS: u64 = 30;
pub const DEFAULT_EVIDENCE_MIB: u64 = 1024;

/// A node group and the orchestrator its nodes join.
#[derive(Debug, Clone)]
pub struct JoinGroup {
    pub name: String,
    /// The `nodes` pattern as written (compiled and checked at load).
    pub nodes: String,
    pub join: JoinConfig,
}

/// The orchestrator nodes join.
#[derive(Debug, Clone)]
pub enum JoinConfig {
    /// The signed JWS only.
    Token,
    Swarm(crate::join::swarm::SwarmConfig),
    Kubernetes(crate::join::kubernetes::KubernetesConfig),
}

pub const DEFAULT_DOCKER_SOCKET: &str = "/var/run/docker.sock";
pub const DEFAULT_SWARM_TOKEN_WINDOW_SECS: u64 = 120;

fn join_groups(f: &FileJoin) -> Result<Vec<JoinGroup>, ConfigError> {
    let mut out: Vec<JoinGroup> = Vec::new();
    for g in &f.groups {
        if g.name.is_empty() || out.iter().any(|o| o.name == g.name) {
            return Err(ConfigError::Invalid {
                key: "join.groups.name",
                reason: format!("`{}`: every group needs a distinct, non-empty name", g.name),
            });
        }
        crate::join::groups::node_pattern(&g.nodes).map_err(|e| ConfigError::Invalid {
            key: "join.groups.nodes",
            reason: format!("group `{}`: {e}", g.name),
        })?;
        out.push(JoinGroup {
            name: g.name.clone(),
            nodes: g.nodes.clone(),
            join: join_config(Some(&g.orchestrator), f)?,
        });
    }
    Ok(out)
}

fn join_config(kind: Option<&str>, f: &FileJoin) -> Result<JoinConfig, ConfigError> {
    match kind.unwrap_or("token") {
        "token" => Ok(JoinConfig::Token),
        "swarm" => {
            let host = f
                .swarm
                .docker_host
                .clone()
                .unwrap_or_else(|| DEFAULT_DOCKER_SOCKET.to_string());
            let socket = match host.strip_prefix("unix://") {
                Some(p) => PathBuf::from(p),
                None if host.starts_with('/') => PathBuf::from(&host),
                None => {
                    return Err(ConfigError::Invalid {
                        key: "join.swarm.docker_host",
                        reason: format!(
                            "`{host}`: only the manager's Unix socket is supported \
                             (`unix:///var/run/docker.sock`); an unauthenticated TCP Docker API \
                             is root on the manager"
                        ),
                    })
                }
            };
            if let Some(a) = &f.swarm.manager_addr {
                if a.rsplit_once(':')
                    .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
                {
                    return Err(ConfigError::Invalid {
                        key: "join.swarm.manager_addr",
                        reason: format!("`{a}` is not host:port"),
                    });
                }
            }
            Ok(JoinConfig::Swarm(crate::join::swarm::SwarmConfig {
                socket,
                manager_addr: f.swarm.manager_addr.clone(),
                token_window: secs(
                    "join.swarm.token_window_secs",
                    f.swarm.token_window_secs,
                    DEFAULT_SWARM_TOKEN_WINDOW_SECS,
                )?,
            }))
        }
        "kubeadm" => {
            let k = &f.kubernetes;
            let api_server = k.api_server.clone().ok_or(ConfigError::Invalid {
                key: "join.kubernetes.api_server",
                reason: "required for `kubeadm` (https://host:6443)".into(),
            })?;
            let ca = k.ca.clone().ok_or(ConfigError::Invalid {
                key: "join.kubernetes.ca",
                reason: "required for `kubeadm`: the cluster CA (/etc/kubernetes/pki/ca.crt)"
                    .into(),
            })?;
            if let Some(a) = &k.join_endpoint {
                if a.rsplit_once(':')
                    .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
                {
                    return Err(ConfigError::Invalid {
                        key: "join.kubernetes.join_endpoint",
                        reason: format!("`{a}` is not host:port"),
                    });
                }
            }
            Ok(JoinConfig::Kubernetes(
                crate::join::kubernetes::KubernetesConfig {
                    api_server,
                    ca,
                    token_file: k.token_file.clone(),
                    client_cert: k.client_cert.clone(),
                    client_key: k.client_key.clone(),
                    join_endpoint: k.join_endpoint.clone(),
                },
            ))
        }
        other => Err(ConfigError::Invalid {
            key: "join.orchestrator",
            reason: format!("`{other}`: expected `token`, `swarm` or `kubeadm`"),
        }),
    }
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:7443";
pub const DEFAULT_DATA_DIR: &str = "/var/lib/assay-verifier";
pub const DEFAULT_NONCE_TTL_SECS: u64 = 60;
pub const DEFAULT_TOKEN_TTL_SECS: u64 = 600;
pub const DEFAULT_ENROLLMENT_TTL_SECS: u64 = 300;

impl Config {
    /// Merges defaults < file (if any) < overrides, then validates.
    pub fn load(file: Option<&Path>, o: Overrides) -> Result<Self, ConfigError> {
        let f = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                toml::from_str::<FileConfig>(&text).map_err(|e| ConfigError::Parse {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                })?
            }
            None => FileConfig::default(),
        };
        let data_dir = o
            .data_dir
            .or(f.data_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let listen = match o.listen.or(f.listen) {
            Some(l) => l,
            None => DEFAULT_LISTEN.parse().map_err(|e| ConfigError::Invalid {
                key: "listen",
                reason: format!("{e}"),
            })?,
        };
        let pick_list =
            |flag: Vec<PathBuf>, file: Vec<PathBuf>| if flag.is_empty() { file } else { flag };
        let cfg = Config {
            listen,
            policy: o.policy.or(f.policy).ok_or(ConfigError::Invalid {
                key: "policy",
                reason:
                    "no policy file given; set `policy = \"FILE\"` or pass --policy (see policies/)"
                        .into(),
            })?,
            tls_cert: o
                .tls_cert
                .or(f.tls.cert)
                .unwrap_or_else(|| data_dir.join("tls/server.pem")),
            tls_key: o
                .tls_key
                .or(f.tls.key)
                .unwrap_or_else(|| data_dir.join("tls/server.key")),
            client_ca: match (f.tls.no_client_auth, o.client_ca.or(f.tls.client_ca)) {
                (true, Some(_)) => {
                    return Err(ConfigError::Invalid {
                        key: "tls.no_client_auth",
                        reason: "set together with tls.client_ca: choose one".into(),
                    })
                }
                (true, None) => None,
                (false, Some(p)) => Some(p),
                (false, None) => Some(data_dir.join("tls/clients-ca.pem")),
            },
            ek_roots: pick_list(o.ek_roots, f.trust.ek_roots),
            ek_intermediates: pick_list(o.ek_intermediates, f.trust.ek_intermediates),
            nonce_ttl: secs(
                "nonce_ttl_secs",
                o.nonce_ttl_secs.or(f.nonce_ttl_secs),
                DEFAULT_NONCE_TTL_SECS,
            )?,
            token_ttl: secs(
                "token_ttl_secs",
                o.token_ttl_secs.or(f.token_ttl_secs),
                DEFAULT_TOKEN_TTL_SECS,
            )?,
            enrollment_ttl: secs(
                "enrollment_ttl_secs",
                f.enrollment_ttl_secs,
                DEFAULT_ENROLLMENT_TTL_SECS,
            )?,
            join: join_config(f.join.orchestrator.as_deref(), &f.join)?,
            join_groups: join_groups(&f.join)?,
            evidence: EvidenceRetention {
                keep: match f.evidence.retention_days.unwrap_or(DEFAULT_EVIDENCE_DAYS) {
                    0 => None,
                    d if d > 36_500 => {
                        return Err(ConfigError::Invalid {
                            key: "evidence.retention_days",
                            reason: format!("{d}: at most 36500"),
                        })
                    }
                    d => Some(Duration::from_secs(d * 86_400)),
                },
                max_bytes: f
                    .evidence
                    .max_mib
                    .unwrap_or(DEFAULT_EVIDENCE_MIB)
                    .saturating_mul(1 << 20),
                max_records: f
                    .evidence
                    .max_records
                    .map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX)),
            },
            checkpoint_interval: secs(
                "checkpoint_interval_secs",
                f.checkpoint_interval_secs,
                DEFAULT_CHECKPOINT_INTERVAL_SECS,
            )?,
            stale_after: match f.stale_after_secs {
                Some(0) => None,
                v => Some(secs("stale_after_secs", v, DEFAULT_STALE_AFTER_SECS)?),
            },
            storage: storage_config(f.storage)?,
            webhook: f.webhook.url.map(|url| crate::webhook::WebhookConfig {
                url,
                ca: f.webhook.ca,
            }),
            data_dir,
        };
        if cfg.ek_roots.is_empty() {
            return Err(ConfigError::Invalid {
                key: "trust.ek_roots",
                reason: "no EK root CA configured: no TPM could enroll. Add the PEM file of your TPM vendor's EK CA \
                         (for swtpm: /var/lib/swtpm-localca/swtpm-localca-rootca-cert.pem)"
                    .into(),
            });
        }
        Ok(cfg)
    }
}

fn secs(key: &'static str, v: Option<u64>, default: u64) -> Result<Duration, ConfigError> {
    let v = v.unwrap_or(default);
    if v == 0 || v > 86_400 {
        return Err(ConfigError::Invalid {
            key,
            reason: format!("{v} is out of range (1 to 86400 seconds)"),
        });
    }
    Ok(Duration::from_secs(v))
}

pub const DEFAULT_PG_POOL_SIZE: usize = 16;

fn storage_config(f: FileStorage) -> Result<crate::store::StorageConfig, ConfigError> {
    let invalid = |key, reason: &str| ConfigError::Invalid {
        key,
        reason: reason.into(),
    };
    match f.backend.as_deref().unwrap_or("sled") {
        "sled" => {
            if f.url.is_some() || f.password_file.is_some() || f.pool_size.is_some() {
                return Err(invalid(
                    "storage.url",
                    "url, password_file and pool_size are for backend = \"postgres\"",
                ));
            }
            Ok(crate::store::StorageConfig::Sled)
        }
        "postgres" | "postgresql" => {
            let url = f.url.ok_or_else(|| {
                invalid(
                    "storage.url",
                    "backend = \"postgres\" needs a url, e.g. \"host=/run/postgresql dbname=assay user=assay\"",
                )
            })?;
            url.parse::<tokio_postgres::Config>()
                .map_err(|e| invalid("storage.url", &e.to_string()))?;
            let pool_size = f.pool_size.unwrap_or(DEFAULT_PG_POOL_SIZE);
            if !(1..=1024).contains(&pool_size) {
                return Err(invalid("storage.pool_size", "between 1 and 1024"));
            }
            Ok(crate::store::StorageConfig::Postgres(
                crate::store::PgConfig {
                    url,
                    password_file: f.password_file,
                    pool_size,
                },
            ))
        }
        other => Err(invalid(
            "storage.backend",
            &format!("`{other}`: expected `sled` or `postgres`"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    #[test]
    fn flags_override_file_which_overrides_defaults() {
        let f =
            write("policy = \"/p.toml\"\nnonce_ttl_secs = 30\n[trust]\nek_roots = [\"/r.pem\"]\n");
        let c = Config::load(
            Some(f.path()),
            Overrides {
                nonce_ttl_secs: Some(5),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(c.nonce_ttl, Duration::from_secs(5));
        assert_eq!(c.token_ttl, Duration::from_secs(DEFAULT_TOKEN_TTL_SECS));
        assert_eq!(c.policy, PathBuf::from("/p.toml"));
        assert_eq!(c.ek_roots, vec![PathBuf::from("/r.pem")]);
        assert_eq!(
            c.tls_cert,
            PathBuf::from(DEFAULT_DATA_DIR).join("tls/server.pem")
        );
    }

    #[test]
    fn errors_name_the_key() {
        let f = write("policy = \"/p.toml\"\n");
        let e = Config::load(Some(f.path()), Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("trust.ek_roots"), "{e}");
        let f =
            write("policy = \"/p.toml\"\ntoken_ttl_secs = 0\n[trust]\nek_roots = [\"/r.pem\"]\n");
        let e = Config::load(Some(f.path()), Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("token_ttl_secs"), "{e}");
        let f = write("polcy = 1\n");
        let e = Config::load(Some(f.path()), Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field") && e.contains("polcy"), "{e}");
        let e = Config::load(None, Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("`policy`"), "{e}");
    }

    #[test]
    fn storage_section_chooses_the_backend_and_names_bad_keys() {
        let base = "policy = \"/p.toml\"\n[trust]\nek_roots = [\"/r.pem\"]\n";
        let load = |extra: &str| {
            Config::load(
                Some(write(&format!("{base}{extra}")).path()),
                Overrides::default(),
            )
        };
        assert!(matches!(
            load("").unwrap().storage,
            crate::store::StorageConfig::Sled
        ));
        match load(
            "[storage]\nbackend = \"postgres\"\nurl = \"host=/run/postgresql dbname=assay\"\n",
        )
        .unwrap()
        .storage
        {
            crate::store::StorageConfig::Postgres(p) => {
                assert_eq!(p.pool_size, DEFAULT_PG_POOL_SIZE);
                assert!(p.url.contains("dbname=assay"));
            }
            other => panic!("{other:?}"),
        }
        for (extra, key) in [
            ("[storage]\nbackend = \"postgres\"\n", "storage.url"),
            ("[storage]\nbackend = \"mysql\"\n", "storage.backend"),
            ("[storage]\nurl = \"host=x\"\n", "storage.url"),
            (
                "[storage]\nbackend = \"postgres\"\nurl = \"host=x\"\npool_size = 0\n",
                "storage.pool_size",
            ),
            (
                "[storage]\nbackend = \"postgres\"\nurl = \"postgresql://h:notaport/db\"\n",
                "storage.url",
            ),
        ] {
            let e = load(extra).unwrap_err().to_string();
            assert!(e.contains(key), "{extra}: {e}");
        }
    }

    #[test]
    fn join_section_is_validated() {
        let base = "policy = \"/p.toml\"\n[trust]\nek_roots = [\"/r.pem\"]\n";
        let c = Config::load(Some(write(base).path()), Overrides::default()).unwrap();
        assert!(matches!(c.join, JoinConfig::Token));
        let f = write(&format!(
            "{base}[join]\norchestrator = \"swarm\"\n[join.swarm]\ndocker_host = \"unix:///x/d.sock\"\n"
        ));
        match Config::load(Some(f.path()), Overrides::default())
            .unwrap()
            .join
        {
            JoinConfig::Swarm(s) => {
                assert_eq!(s.socket, PathBuf::from("/x/d.sock"));
                assert_eq!(
                    s.token_window,
                    Duration::from_secs(DEFAULT_SWARM_TOKEN_WINDOW_SECS)
                );
            }
            other => panic!("{other:?}"),
        }
        for (extra, key) in [
            ("[join]\norchestrator = \"nomad\"\n", "join.orchestrator"),
            (
                "[join]\norchestrator = \"swarm\"\n[join.swarm]\ndocker_host = \"tcp://m:2375\"\n",
                "join.swarm.docker_host",
            ),
            (
                "[join]\norchestrator = \"swarm\"\n[join.swarm]\nmanager_addr = \"m\"\n",
                "join.swarm.manager_addr",
            ),
            (
                "[join]\norchestrator = \"swarm\"\n[join.swarm]\ntoken_window_secs = 0\n",
                "join.swarm.token_window_secs",
            ),
            (
                "[join]\norchestrator = \"kubeadm\"\n[join.kubernetes]\nca = \"/x\"\n",
                "join.kubernetes.api_server",
            ),
            (
                "[join]\norchestrator = \"kubeadm\"\n[join.kubernetes]\napi_server = \"https://k:6443\"\n",
                "join.kubernetes.ca",
            ),
            (
                "[join]\norchestrator = \"kubeadm\"\n[join.kubernetes]\napi_server = \"https://k:6443\"\nca = \"/x\"\njoin_endpoint = \"k\"\n",
                "join.kubernetes.join_endpoint",
            ),
            (
                "[join]\norchestrator = \"kubeadm\"\n[join.kubernetes]\nkubeconfig = \"/x\"\n",
                "kubeconfig",
            ),
            (
                "[[join.groups]]\nname = \"g\"\nnodes = \"(\"\norchestrator = \"token\"\n",
                "join.groups.nodes",
            ),
            (
                "[[join.groups]]\nname = \"g\"\nnodes = \"a\"\norchestrator = \"token\"\n[[join.groups]]\nname = \"g\"\nnodes = \"b\"\norchestrator = \"token\"\n",
                "join.groups.name",
            ),
            (
                "[[join.groups]]\nname = \"g\"\nnodes = \"a\"\norchestrator = \"kubeadm\"\n",
                "join.kubernetes.api_server",
            ),
            (
                "[[join.groups]]\nname = \"g\"\nnodes = \"a\"\n",
                "orchestrator",
            ),
        ] {
            let e = Config::load(
                Some(write(&format!("{base}{extra}")).path()),
                Overrides::default(),
            )
            .unwrap_err()
            .to_string();
            assert!(e.contains(key), "{extra}: {e}");
        }
    }
}
