//! A configuration key's problem, as reported by whichever module owns the
//! key's section, and the checks several sections share.

use std::time::Duration;

/// A config key whose value is refused, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("config key `{key}`: {reason}")]
pub struct InvalidKey {
    pub key: &'static str,
    pub reason: String,
}

impl InvalidKey {
    pub fn new(key: &'static str, reason: impl Into<String>) -> Self {
        InvalidKey {
            key,
            reason: reason.into(),
        }
    }
}

/// Seconds between 1 and 86400, `default` when unset.
pub fn secs(key: &'static str, v: Option<u64>, default: u64) -> Result<Duration, InvalidKey> {
    let v = v.unwrap_or(default);
    if v == 0 || v > 86_400 {
        return Err(InvalidKey::new(
            key,
            format!("{v} is out of range (1 to 86400 seconds)"),
        ));
    }
    Ok(Duration::from_secs(v))
}

/// `host:port`, as `kubeadm join` and `docker swarm join` take it.
pub fn host_port(key: &'static str, a: &str) -> Result<(), InvalidKey> {
    if a.rsplit_once(':')
        .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
    {
        return Err(InvalidKey::new(key, format!("`{a}` is not host:port")));
    }
    Ok(())
}
