//! The `[trust]` section: the EK certificate authorities a TPM's EK must
//! chain to, loaded into the core's trust anchors.

use std::path::PathBuf;

use anyhow::Context as _;
use assay_core::ek::TrustAnchors;
use serde::Deserialize;

/// `[trust]`.
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

/// Reads every root and intermediate file into trust anchors; errors name
/// the key and the file.
pub fn load_anchors(roots: &[PathBuf], intermediates: &[PathBuf]) -> anyhow::Result<TrustAnchors> {
    let mut anchors = TrustAnchors::new();
    for p in roots {
        let pem =
            std::fs::read(p).with_context(|| format!("trust.ek_roots: reading {}", p.display()))?;
        anchors
            .add_roots_pem(&pem)
            .with_context(|| format!("trust.ek_roots: {}", p.display()))?;
    }
    for p in intermediates {
        let pem = std::fs::read(p)
            .with_context(|| format!("trust.ek_intermediates: reading {}", p.display()))?;
        anchors
            .add_intermediates_pem(&pem)
            .with_context(|| format!("trust.ek_intermediates: {}", p.display()))?;
    }
    Ok(anchors)
}
