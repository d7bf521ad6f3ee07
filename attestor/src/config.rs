//! The attestor's configuration: defaults < TOML file < environment (`ASSAY_…`)
//! < flags, validated at start-up with errors that name the key.

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub const DEFAULT_TCTI: &str = "device:/dev/tpmrm0";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/assay-attestor";
pub use assay_core::eventlog::cel::DEFAULT_CEL_PCR;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub tcti: Option<String>,
    pub ek: Option<String>,
    pub fetch_ek_certificate: Option<bool>,
    pub ek_cert_service: Option<String>,
    pub ek_cert_service_url: Option<String>,
    pub ek_cert_service_ca: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    pub verifier: Option<String>,
    pub ca: Option<PathBuf>,
    pub node_id: Option<String>,
    pub retries: Option<u32>,
    pub uefi_log: Option<PathBuf>,
    pub ima_log: Option<PathBuf>,
    pub max_uefi_log_bytes: Option<u64>,
    pub max_ima_log_bytes: Option<u64>,
    pub cel_log: Option<PathBuf>,
    pub cel_pcr: Option<u32>,
    pub runtime_files: Option<Vec<PathBuf>>,
    pub containerd_socket: Option<PathBuf>,
    pub containerd_namespaces: Option<Vec<String>>,
    pub attest_interval_secs: Option<u64>,
    /// The agent's Prometheus `/metrics` listener (absent: none).
    pub metrics_listen: Option<std::net::SocketAddr>,
}

/// Values from flags/environment; `None` means "not given".
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub tcti: Option<String>,
    pub ek: Option<String>,
    pub fetch_ek_certificate: bool,
    pub ek_cert_service: Option<String>,
    pub ek_cert_service_url: Option<String>,
    pub ek_cert_service_ca: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    pub verifier: Option<String>,
    pub ca: Option<PathBuf>,
    pub node_id: Option<String>,
    /// Act as `node_id` although the state dir holds another node id.
    pub rename: bool,
    pub retries: Option<u32>,
    pub uefi_log: Option<PathBuf>,
    pub ima_log: Option<PathBuf>,
    pub cel_log: Option<PathBuf>,
    pub cel_pcr: Option<u32>,
    pub containerd_socket: Option<PathBuf>,
    pub attest_interval_secs: Option<u64>,
    pub metrics_listen: Option<std::net::SocketAddr>,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub tcti: String,
    /// Which EK to use when the state dir has none yet (`auto`: the first with a certificate in NV).
    pub ek: crate::tpm::EkChoice,
    /// Fetch the EK certificate from the TPM vendor's service when NV has none
    /// (`Some`: on, with these settings; off by default).
    pub ek_fetch: Option<crate::ekfetch::FetchSettings>,
    pub state_dir: PathBuf,
    pub verifier: String,
    pub ca: PathBuf,
    pub node_id: String,
    /// Tries beyond the first while the verifier is unreachable, the connection
    /// fails mid-exchange or the verifier is busy (`flow::with_retries`).
    pub retries: u32,
    /// The UEFI firmware event log to send when the policy asks for it.
    pub uefi_log: PathBuf,
    /// The IMA log to send when the policy asks for it.
    pub ima_log: PathBuf,
    pub max_uefi_log_bytes: u64,
    pub max_ima_log_bytes: u64,
    /// The container measurement log this attestor writes (and sends).
    pub cel_log: PathBuf,
    /// The PCR container measurements are extended into.
    pub cel_pcr: u32,
    /// Container runtime binaries and configs measured before attesting (absent
    /// files are skipped).
    pub runtime_files: Vec<PathBuf>,
    /// containerd's gRPC socket (the agent watches images and containers there).
    pub containerd_socket: PathBuf,
    /// containerd namespaces watched.
    pub containerd_namespaces: Vec<String>,
    /// The agent re-attests at least this often.
    pub attest_interval_secs: u64,
    /// Where the agent serves its Prometheus metrics (None: it does not).
    pub metrics_listen: Option<std::net::SocketAddr>,
}

/// Runtime files measured unless configured: the usual container runtimes,
/// where Debian installs them, and containerd's config.
pub const DEFAULT_RUNTIME_FILES: &[&str] = &[
    "/usr/bin/containerd",
    "/usr/bin/containerd-shim-runc-v2",
    "/usr/sbin/runc",
    "/usr/bin/runc",
    "/usr/bin/crun",
    "/usr/sbin/dockerd",
    "/usr/bin/dockerd",
    "/usr/bin/kubelet",
    "/etc/containerd/config.toml",
];

impl Config {
    /// Configuration for commands that talk to a verifier (`verifier` and `ca` required).
    pub fn load(file: Option<&Path>, o: Overrides) -> Result<Self, String> {
        Self::load_inner(file, o, true)
    }

    /// Configuration for offline commands (`collect`): `verifier` and `ca` may be absent.
    pub fn load_offline(file: Option<&Path>, o: Overrides) -> Result<Self, String> {
        Self::load_inner(file, o, false)
    }

    fn load_inner(file: Option<&Path>, o: Overrides, online: bool) -> Result<Self, String> {
        let f = match file {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| format!("reading config file {}: {e}", p.display()))?;
                toml::from_str::<FileConfig>(&text)
                    .map_err(|e| format!("config file {}: {e}", p.display()))?
            }
            None => FileConfig::default(),
        };
        let verifier =
            match o.verifier.or(f.verifier) {
                Some(v) => v,
                None if !online => String::new(),
                None => return Err(
                    "config key `verifier`: no verifier URL given (--verifier https://HOST:7443)"
                        .into(),
                ),
            };
        if online && !verifier.starts_with("https://") {
            return Err(format!("config key `verifier`: `{verifier}` must be an https:// URL (the verifier only speaks TLS)"));
        }
        let ca = match o.ca.or(f.ca) {
            Some(ca) => ca,
            None if !online => PathBuf::new(),
            None => return Err("config key `ca`: no CA certificate for the verifier given (--ca FILE, the verifier's tls/ca.pem)".into()),
        };
        let state_dir = o
            .state_dir
            .or(f.state_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));
        let node_id = crate::enrollment::resolve_node_id(
            o.node_id.or(f.node_id),
            &state_dir,
            o.rename,
            hostname,
        )?;
        let ek = match o.ek.or(f.ek) {
            Some(s) => s.parse().map_err(|e| format!("config key `ek`: {e}"))?,
            None => crate::tpm::EkChoice::Auto,
        };
        let vendor = match o.ek_cert_service.or(f.ek_cert_service) {
            None => None,
            Some(s) if s == "auto" => None,
            Some(s) => Some(crate::ekfetch::Vendor::parse(&s).ok_or_else(|| {
                format!("config key `ek_cert_service`: `{s}`: give auto, intel or amd")
            })?),
        };
        let base_url = o.ek_cert_service_url.or(f.ek_cert_service_url);
        if let Some(u) = &base_url {
            if !u.starts_with("https://") {
                return Err(format!(
                    "config key `ek_cert_service_url`: `{u}` must be an https:// URL"
                ));
            }
        }
        let ek_fetch =
            (o.fetch_ek_certificate || f.fetch_ek_certificate.unwrap_or(false)).then(|| {
                crate::ekfetch::FetchSettings {
                    vendor,
                    base_url,
                    ca: o.ek_cert_service_ca.or(f.ek_cert_service_ca),
                }
            });
        Ok(Self {
            tcti: o.tcti.or(f.tcti).unwrap_or_else(|| DEFAULT_TCTI.into()),
            ek,
            ek_fetch,
            state_dir,
            verifier,
            ca,
            node_id,
            retries: o.retries.or(f.retries).unwrap_or(5).min(100),
            uefi_log: o
                .uefi_log
                .or(f.uefi_log)
                .unwrap_or_else(|| PathBuf::from(crate::logs::DEFAULT_UEFI_LOG)),
            ima_log: o
                .ima_log
                .or(f.ima_log)
                .unwrap_or_else(|| PathBuf::from(crate::logs::DEFAULT_IMA_LOG)),
            max_uefi_log_bytes: f
                .max_uefi_log_bytes
                .unwrap_or(crate::logs::DEFAULT_MAX_UEFI_LOG_BYTES),
            max_ima_log_bytes: f
                .max_ima_log_bytes
                .unwrap_or(crate::logs::DEFAULT_MAX_IMA_LOG_BYTES),
            cel_log: o
                .cel_log
                .or(f.cel_log)
                .unwrap_or_else(|| PathBuf::from(crate::measure::DEFAULT_CEL_LOG)),
            cel_pcr: match o.cel_pcr.or(f.cel_pcr).unwrap_or(DEFAULT_CEL_PCR) {
                p if p <= 23 => p,
                p => return Err(format!("config key `cel_pcr`: PCR {p} is above 23")),
            },
            runtime_files: f
                .runtime_files
                .unwrap_or_else(|| DEFAULT_RUNTIME_FILES.iter().map(PathBuf::from).collect()),
            containerd_socket: o
                .containerd_socket
                .or(f.containerd_socket)
                .unwrap_or_else(|| PathBuf::from(crate::containerd::DEFAULT_SOCKET)),
            containerd_namespaces: f.containerd_namespaces.unwrap_or_else(|| {
                crate::containerd::DEFAULT_NAMESPACES
                    .iter()
                    .map(|s| s.to_string())
                    .collect()
            }),
            attest_interval_secs: o
                .attest_interval_secs
                .or(f.attest_interval_secs)
                .unwrap_or(300),
            metrics_listen: o.metrics_listen.or(f.metrics_listen),
        })
    }
}

fn hostname() -> Option<String> {
    let h = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let h = h.trim();
    (!h.is_empty()).then(|| h.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_and_errors() {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            f.path(),
            "verifier = \"https://v:7443\"\nca = \"/ca.pem\"\ntcti = \"swtpm:port=1\"\n",
        )
        .unwrap();
        let c = Config::load(
            Some(f.path()),
            Overrides {
                tcti: Some("device:/dev/tpm0".into()),
                node_id: Some("n".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(c.tcti, "device:/dev/tpm0");
        assert_eq!(c.verifier, "https://v:7443");
        assert_eq!(c.state_dir, PathBuf::from(DEFAULT_STATE_DIR));
        let e = Config::load(
            None,
            Overrides {
                verifier: Some("http://v".into()),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(e.contains("`verifier`") && e.contains("https"), "{e}");
        let e = Config::load(
            None,
            Overrides {
                verifier: Some("https://v".into()),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(e.contains("`ca`"), "{e}");
    }
}
