//! The `[trust]` section: the EK certificate authorities a TPM's EK must
//! chain to, loaded into the core's trust anchors. The entry `builtin` in
//! `ek_roots` stands for the curated bundle of TPM vendor EK CAs shipped in
//! `verifier/ek-ca/` (embedded in the binary; sources in its MANIFEST): its
//! roots as roots, its intermediates as intermediates.

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
    /// CRL files (DER or PEM) of EK CAs, reloaded when they change.
    #[serde(default)]
    pub ek_crls: Vec<PathBuf>,
}

/// How often the CRL files are looked at for changes.
pub const CRL_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

/// The modification time and length of each CRL file: what a reload compares.
pub fn crl_stamps(crls: &[PathBuf]) -> Vec<Option<(std::time::SystemTime, u64)>> {
    crls.iter()
        .map(|p| {
            std::fs::metadata(p)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())))
        })
        .collect()
}

include!(concat!(env!("OUT_DIR"), "/ek_ca.rs"));

/// The `ek_roots` entry that names the built-in bundle.
pub const BUILTIN: &str = "builtin";

/// One certificate of the built-in bundle.
#[derive(Debug, Clone)]
pub struct BundledCa {
    pub file: &'static str,
    pub root: bool,
    pub der: Vec<u8>,
    pub subject: String,
    pub not_after_unix: i64,
}

/// The built-in bundle, parsed (each file holds one certificate).
pub fn builtin_bundle() -> anyhow::Result<Vec<BundledCa>> {
    BUILTIN_EK_CA
        .iter()
        .map(|(file, role, pem, _, _)| {
            let (_, p) = x509_parser::pem::parse_x509_pem(pem)
                .map_err(|e| anyhow::anyhow!("built-in EK CA {file}: {e}"))?;
            let (_, cert) = x509_parser::parse_x509_certificate(&p.contents)
                .map_err(|e| anyhow::anyhow!("built-in EK CA {file}: {e}"))?;
            Ok(BundledCa {
                file,
                root: role.starts_with("root"),
                subject: cert.subject().to_string(),
                not_after_unix: cert.validity().not_after.timestamp(),
                der: p.contents.clone(),
            })
        })
        .collect()
}

/// Reads every root and intermediate file into trust anchors; errors name
/// the key and the file.
pub fn load_anchors(
    roots: &[PathBuf],
    intermediates: &[PathBuf],
    crls: &[PathBuf],
) -> anyhow::Result<TrustAnchors> {
    let mut anchors = TrustAnchors::new();
    for p in roots {
        if p.as_os_str() == BUILTIN {
            let now = crate::clock::now_unix();
            for ca in builtin_bundle()? {
                if ca.not_after_unix < now {
                    tracing::warn!(file = ca.file, subject = %ca.subject, "built-in EK CA has expired; EK certificates it issued are refused");
                }
                if ca.root {
                    anchors.add_root_der(&ca.der)
                } else {
                    anchors.add_intermediate_der(&ca.der)
                }
                .with_context(|| format!("trust.ek_roots: built-in {}", ca.file))?;
            }
            continue;
        }
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
    for p in crls {
        let bytes = crate::files::read_capped(p, assay_core::ek::MAX_CRL_LEN as u64)
            .context("trust.ek_crls")?;
        let info = anchors
            .add_crl(&bytes)
            .with_context(|| format!("trust.ek_crls: {}", p.display()))?;
        tracing::info!(file = %p.display(), issuer = %info.issuer, revoked = info.revoked, next_update = ?info.next_update, "EK CRL loaded");
        if info
            .next_update
            .is_some_and(|n| n < crate::clock::now_unix())
        {
            tracing::warn!(file = %p.display(), issuer = %info.issuer, "EK CRL is past its nextUpdate: EK certificates under this CA are refused until it is renewed");
        }
    }
    Ok(anchors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};
    use x509_parser::prelude::*;

    /// Every bundled certificate parses, is a CA, agrees with its MANIFEST
    /// line (SHA-256 and not-after), every PEM file is listed, and the
    /// expired ones are reported.
    #[test]
    fn every_bundled_certificate_is_a_ca_its_manifest_describes() {
        let bundle = builtin_bundle().unwrap();
        assert_eq!(bundle.len(), BUILTIN_EK_CA.len());
        let now = crate::clock::now_unix();
        let mut expired = Vec::new();
        for (ca, (file, _, _, sha256, not_after)) in bundle.iter().zip(BUILTIN_EK_CA) {
            let (_, cert) = X509Certificate::from_der(&ca.der).unwrap();
            let bc = cert.basic_constraints().unwrap();
            assert!(bc.is_some_and(|b| b.value.ca), "{file} is not a CA");
            if let Some(ku) = cert.key_usage().unwrap() {
                assert!(ku.value.key_cert_sign(), "{file} may not sign certificates");
            }
            assert_eq!(hex::encode(Sha256::digest(&ca.der)), *sha256, "{file}");
            let na = ::time::OffsetDateTime::from_unix_timestamp(ca.not_after_unix).unwrap();
            let na = na
                .format(&::time::format_description::well_known::Rfc3339)
                .unwrap();
            assert_eq!(na, *not_after, "{file}: not-after");
            if ca.not_after_unix < now {
                expired.push(format!("{file} ({}, expired {not_after})", ca.subject));
            }
        }
        eprintln!("expired bundled EK CAs: {expired:?}");
        // Both ways: every PEM in the folder is in the MANIFEST.
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("ek-ca");
        for sub in ["roots", "intermediates"] {
            for f in std::fs::read_dir(dir.join(sub)).unwrap() {
                let name = format!("{sub}/{}", f.unwrap().file_name().to_string_lossy());
                assert!(
                    BUILTIN_EK_CA.iter().any(|(n, ..)| *n == name),
                    "{name} is not in ek-ca/MANIFEST"
                );
            }
        }
    }

    #[test]
    fn builtin_loads_the_bundle_beside_the_operators_files() {
        let a = load_anchors(&[PathBuf::from(BUILTIN)], &[], &[]).unwrap();
        let bundle = builtin_bundle().unwrap();
        let roots = bundle.iter().filter(|c| c.root).count();
        assert!(roots >= 10, "{roots}");
        assert_eq!(a.roots_len(), roots);
        assert_eq!(a.intermediates_len(), bundle.len() - roots);
        let e = load_anchors(&[PathBuf::from("/nonexistent/builtin")], &[], &[]).unwrap_err();
        assert!(format!("{e:#}").contains("/nonexistent/builtin"), "{e:#}");
    }
}
