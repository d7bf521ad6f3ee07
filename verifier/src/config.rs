//! The verifier's configuration: one typed struct, from defaults < TOML file <
//! environment (`ASSAY_…`) < command-line flags, validated at start-up with
//! errors that name the key. Each section is defined, and checked, by the
//! module that owns it: `[tls]` in `tls`, `[trust]` in `trust`, `[join]` in
//! `join`, `[evidence]` and `[storage]` in `store`, `[webhook]` in `webhook`,
//! `[limits]` in `limits`, `[metrics]` in `metrics`, `[web]` in `web`;
//! this file holds the top-level keys and puts the sections together.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::setting::{secs, InvalidKey};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error(transparent)]
    Invalid(#[from] InvalidKey),
}

/// The file form: every key optional, unknown keys refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub policy: Option<PathBuf>,
    /// Apply only policies signed by one of `policy_signing_keys` (default false).
    pub require_signed_policies: Option<bool>,
    /// minisign public key files of the operators who sign policies.
    #[serde(default)]
    pub policy_signing_keys: Vec<PathBuf>,
    #[serde(default)]
    pub tls: crate::tls::FileTls,
    #[serde(default)]
    pub trust: crate::trust::FileTrust,
    pub nonce_ttl_secs: Option<u64>,
    pub token_ttl_secs: Option<u64>,
    pub enrollment_ttl_secs: Option<u64>,
    #[serde(default)]
    pub enrollment: FileEnrollment,
    #[serde(default)]
    pub join: crate::join::FileJoin,
    /// A node that does not pass again within this many seconds is stale (0: off).
    pub stale_after_secs: Option<u64>,
    /// How often the history head is signed into a checkpoint (default 60).
    pub checkpoint_interval_secs: Option<u64>,
    #[serde(default)]
    pub evidence: crate::store::FileEvidence,
    #[serde(default)]
    pub webhook: crate::webhook::FileWebhook,
    #[serde(default)]
    pub storage: crate::store::FileStorage,
    #[serde(default)]
    pub limits: crate::limits::FileLimits,
    #[serde(default)]
    pub metrics: crate::metrics::FileMetrics,
    #[serde(default)]
    pub web: crate::web::FileWeb,
    /// Serve gRPC server reflection (default true): clients such as grpcurl
    /// list and call the API without the .proto file.
    pub reflection: Option<bool>,
}

/// `[enrollment]`: who may enroll.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEnrollment {
    pub mode: Option<EnrollmentMode>,
}

/// Who may enroll (`[enrollment] mode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum EnrollmentMode {
    /// Any TPM whose EK certificate chains to a configured root, under any
    /// node id not held by another EK (first come, first served). The
    /// default, so that existing set-ups keep enrolling.
    #[default]
    Open,
    /// Only EKs an operator registered (`assay-verifier node add | import`),
    /// each under its registered node id. Recommended for production.
    Inventory,
}

impl EnrollmentMode {
    pub fn as_str(self) -> &'static str {
        match self {
            EnrollmentMode::Open => "open",
            EnrollmentMode::Inventory => "inventory",
        }
    }
}

/// Values given on the command line or in the environment: they override
/// the config file (`assay-verifier serve` flattens these into its flags).
#[derive(Debug, Default, Clone, clap::Args)]
pub struct Overrides {
    /// Address to serve the gRPC API on [default: 127.0.0.1:7443]
    #[arg(long, env = "ASSAY_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Where the store (sled), the token key and the TLS files live
    /// [default: /var/lib/assay-verifier]
    #[arg(long, env = "ASSAY_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The golden-value policy file: the `default` policy's first version when
    /// the store holds none (required then, here or as `policy` in the
    /// config); afterwards policies change with `assay-verifier policy apply`.
    #[arg(long, env = "ASSAY_POLICY", value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// The server's TLS certificate (PEM) [default: <DATA_DIR>/tls/server.pem]
    #[arg(long, env = "ASSAY_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// Its private key [default: <DATA_DIR>/tls/server.key]
    #[arg(long, env = "ASSAY_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// CA of role-carrying client certificates [default: <DATA_DIR>/tls/clients-ca.pem]
    #[arg(long, env = "ASSAY_CLIENT_CA", value_name = "FILE")]
    pub client_ca: Option<PathBuf>,
    /// PEM file of trusted EK root CAs (repeatable; at least one, here or as
    /// `trust.ek_roots`).
    #[arg(
        long = "ek-root",
        env = "ASSAY_EK_ROOTS",
        value_delimiter = ',',
        value_name = "FILE"
    )]
    pub ek_roots: Vec<PathBuf>,
    /// PEM file of EK intermediate CAs (repeatable) [default: none]
    #[arg(
        long = "ek-intermediate",
        env = "ASSAY_EK_INTERMEDIATES",
        value_delimiter = ',',
        value_name = "FILE"
    )]
    pub ek_intermediates: Vec<PathBuf>,
    /// CRL file of an EK CA, DER or PEM (repeatable); reloaded when it changes
    /// [default: none]
    #[arg(
        long = "ek-crl",
        env = "ASSAY_EK_CRLS",
        value_delimiter = ',',
        value_name = "FILE"
    )]
    pub ek_crls: Vec<PathBuf>,
    /// How long an issued nonce may be used, in seconds [default: 60]
    #[arg(long, env = "ASSAY_NONCE_TTL_SECS", value_name = "SECS")]
    pub nonce_ttl_secs: Option<u64>,
    /// How long a join token lives, in seconds [default: 600]
    #[arg(long, env = "ASSAY_TOKEN_TTL_SECS", value_name = "SECS")]
    pub token_ttl_secs: Option<u64>,
    /// Who may enroll: `open` (any TPM with a trusted EK certificate) or
    /// `inventory` (only registered EKs; recommended) [default: open]
    #[arg(long, env = "ASSAY_ENROLLMENT_MODE", value_name = "MODE")]
    pub enrollment_mode: Option<EnrollmentMode>,
}

/// The validated configuration the service runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// The policy file that becomes the `default` policy's first version when
    /// the store has none (required then; see `service::policies`).
    pub policy: Option<PathBuf>,
    pub require_signed_policies: bool,
    pub policy_signing_keys: Vec<PathBuf>,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    /// None: `tls.no_client_auth`, every RPC open (see `roles`).
    pub client_ca: Option<PathBuf>,
    pub ek_roots: Vec<PathBuf>,
    pub ek_intermediates: Vec<PathBuf>,
    pub ek_crls: Vec<PathBuf>,
    pub nonce_ttl: Duration,
    pub token_ttl: Duration,
    pub enrollment_ttl: Duration,
    pub enrollment_mode: EnrollmentMode,
    pub join: crate::join::JoinConfig,
    /// Node groups that join another orchestrator than `join`.
    pub join_groups: Vec<crate::join::JoinGroup>,
    /// None: staleness is not tracked.
    pub stale_after: Option<Duration>,
    pub checkpoint_interval: Duration,
    pub evidence: crate::store::EvidenceRetention,
    pub webhook: Option<crate::webhook::WebhookConfig>,
    pub storage: crate::store::StorageConfig,
    pub limits: crate::limits::Limits,
    /// None: no metrics listener.
    pub metrics: Option<crate::metrics::MetricsConfig>,
    pub reflection: bool,
    /// None: no fleet page (`[web]`).
    pub web: Option<crate::web::WebConfig>,
}

pub const DEFAULT_STALE_AFTER_SECS: u64 = 900;
pub const DEFAULT_CHECKPOINT_INTERVAL_SECS: u64 = 60;
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
            None => DEFAULT_LISTEN
                .parse()
                .map_err(|e| InvalidKey::new("listen", format!("{e}")))?,
        };
        let pick_list =
            |flag: Vec<PathBuf>, file: Vec<PathBuf>| if flag.is_empty() { file } else { flag };
        let cfg = Config {
            listen,
            policy: o.policy.or(f.policy),
            require_signed_policies: f.require_signed_policies.unwrap_or(false),
            policy_signing_keys: f.policy_signing_keys,
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
                    return Err(InvalidKey::new(
                        "tls.no_client_auth",
                        "set together with tls.client_ca: choose one",
                    )
                    .into())
                }
                (true, None) => None,
                (false, Some(p)) => Some(p),
                (false, None) => Some(data_dir.join("tls/clients-ca.pem")),
            },
            ek_roots: pick_list(o.ek_roots, f.trust.ek_roots),
            ek_intermediates: pick_list(o.ek_intermediates, f.trust.ek_intermediates),
            ek_crls: pick_list(o.ek_crls, f.trust.ek_crls),
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
            enrollment_mode: o.enrollment_mode.or(f.enrollment.mode).unwrap_or_default(),
            join: f.join.default_join()?,
            join_groups: f.join.groups()?,
            evidence: f.evidence.validate()?,
            checkpoint_interval: secs(
                "checkpoint_interval_secs",
                f.checkpoint_interval_secs,
                DEFAULT_CHECKPOINT_INTERVAL_SECS,
            )?,
            stale_after: match f.stale_after_secs {
                Some(0) => None,
                v => Some(secs("stale_after_secs", v, DEFAULT_STALE_AFTER_SECS)?),
            },
            storage: f.storage.validate()?,
            limits: f.limits.validate()?,
            metrics: f.metrics.validate()?,
            web: f.web.validate()?,
            reflection: f.reflection.unwrap_or(true),
            webhook: f.webhook.validate(),
            data_dir,
        };
        if cfg.require_signed_policies && cfg.policy_signing_keys.is_empty() {
            return Err(InvalidKey::new(
                "require_signed_policies",
                "set without policy_signing_keys: no policy could be applied. List the \
                 operators' minisign public key files in `policy_signing_keys`",
            )
            .into());
        }
        // In inventory mode a fleet of TPMs without EK certificates, each
        // registered by its EK's public area, needs no EK root.
        if cfg.ek_roots.is_empty() && cfg.enrollment_mode == EnrollmentMode::Open {
            return Err(InvalidKey::new(
                "trust.ek_roots",
                "no EK root CA configured: no TPM could enroll. Add the PEM file of your TPM vendor's EK CA \
                 (for swtpm: /var/lib/swtpm-localca/swtpm-localca-rootca-cert.pem)",
            )
            .into());
        }
        Ok(cfg)
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
        assert_eq!(c.policy, Some(PathBuf::from("/p.toml")));
        assert_eq!(c.ek_roots, vec![PathBuf::from("/r.pem")]);
        assert_eq!(
            c.tls_cert,
            PathBuf::from(DEFAULT_DATA_DIR).join("tls/server.pem")
        );
    }

    #[test]
    fn enrollment_mode_is_open_unless_set_and_inventory_needs_no_ek_root() {
        let f = write("policy = \"/p.toml\"\n[trust]\nek_roots = [\"/r.pem\"]\n");
        let c = Config::load(Some(f.path()), Overrides::default()).unwrap();
        assert_eq!(c.enrollment_mode, EnrollmentMode::Open);
        let f = write("policy = \"/p.toml\"\n[enrollment]\nmode = \"inventory\"\n");
        let c = Config::load(Some(f.path()), Overrides::default()).unwrap();
        assert_eq!(c.enrollment_mode, EnrollmentMode::Inventory);
        let c = Config::load(
            Some(f.path()),
            Overrides {
                enrollment_mode: Some(EnrollmentMode::Open),
                ..Default::default()
            },
        );
        assert!(c.unwrap_err().to_string().contains("trust.ek_roots"));
        let f = write("policy = \"/p.toml\"\n[enrollment]\nmode = \"closed\"\n");
        let e = Config::load(Some(f.path()), Overrides::default()).unwrap_err();
        assert!(e.to_string().contains("closed"), "{e}");
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
        // No policy file is needed once the store holds one (checked at start).
        let e = Config::load(None, Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("trust.ek_roots"), "{e}");
        let f = write("policy = \"/p.toml\"\nrequire_signed_policies = true\n[trust]\nek_roots = [\"/r.pem\"]\n");
        let e = Config::load(Some(f.path()), Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("require_signed_policies") && e.contains("policy_signing_keys"),
            "{e}"
        );
        let f = write(
            "require_signed_policies = true\npolicy_signing_keys = [\"/k.pub\"]\n[trust]\nek_roots = [\"/r.pem\"]\n",
        );
        let c = Config::load(Some(f.path()), Overrides::default()).unwrap();
        assert!(c.require_signed_policies && c.policy.is_none());
        assert_eq!(c.policy_signing_keys, [PathBuf::from("/k.pub")]);
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
                assert_eq!(p.pool_size, crate::store::DEFAULT_PG_POOL_SIZE);
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
        assert!(matches!(c.join, crate::join::JoinConfig::Token));
        let f = write(&format!(
            "{base}[join]\norchestrator = \"swarm\"\n[join.swarm]\ndocker_host = \"unix:///x/d.sock\"\n"
        ));
        match Config::load(Some(f.path()), Overrides::default())
            .unwrap()
            .join
        {
            crate::join::JoinConfig::Swarm(s) => {
                assert_eq!(s.socket, PathBuf::from("/x/d.sock"));
                assert_eq!(
                    s.token_window,
                    Duration::from_secs(crate::join::DEFAULT_SWARM_TOKEN_WINDOW_SECS)
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
