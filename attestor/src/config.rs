//! The attestor's configuration: defaults < TOML file < environment (`ASSAY_…`)
//! < flags, validated at start-up with errors that name the key.

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub const DEFAULT_TCTI: &str = "device:/dev/tpmrm0";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/assay-attestor";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub tcti: Option<String>,
    pub state_dir: Option<PathBuf>,
    pub verifier: Option<String>,
    pub ca: Option<PathBuf>,
    pub node_id: Option<String>,
    pub retries: Option<u32>,
}

/// Values from flags/environment; `None` means "not given".
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub tcti: Option<String>,
    pub state_dir: Option<PathBuf>,
    pub verifier: Option<String>,
    pub ca: Option<PathBuf>,
    pub node_id: Option<String>,
    pub retries: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub tcti: String,
    pub state_dir: PathBuf,
    pub verifier: String,
    pub ca: PathBuf,
    pub node_id: String,
    /// Connection attempts beyond the first while the verifier is unreachable.
    pub retries: u32,
}

impl Config {
    pub fn load(file: Option<&Path>, o: Overrides) -> Result<Self, String> {
        let f = match file {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| format!("reading config file {}: {e}", p.display()))?;
                toml::from_str::<FileConfig>(&text)
                    .map_err(|e| format!("config file {}: {e}", p.display()))?
            }
            None => FileConfig::default(),
        };
        let verifier = o
            .verifier
            .or(f.verifier)
            .ok_or("config key `verifier`: no verifier URL given (--verifier https://HOST:7443)")?;
        if !verifier.starts_with("https://") {
            return Err(format!("config key `verifier`: `{verifier}` must be an https:// URL (the verifier only speaks TLS)"));
        }
        let ca = o.ca.or(f.ca).ok_or("config key `ca`: no CA certificate for the verifier given (--ca FILE, the verifier's tls/ca.pem)")?;
        let node_id = match o.node_id.or(f.node_id) {
            Some(n) => n,
            None => hostname()
                .ok_or("config key `node_id`: not given and the host name could not be read")?,
        };
        Ok(Self {
            tcti: o.tcti.or(f.tcti).unwrap_or_else(|| DEFAULT_TCTI.into()),
            state_dir: o
                .state_dir
                .or(f.state_dir)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)),
            verifier,
            ca,
            node_id,
            retries: o.retries.or(f.retries).unwrap_or(5).min(100),
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
