//! `[ima]`: claims on the IMA runtime measurement log.
//!
//! Every measured file must be in the allowlist with one of its allowed digests,
//! unless its path matches an exclude pattern. See `policies/README.md`.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use super::measured_boot::{compile_pattern, Pattern};
use super::PolicyError;

/// The name of IMA's first entry, the digest of the boot PCRs; an allowlist may
/// pin it like a file.
pub const BOOT_AGGREGATE: &str = "boot_aggregate";

/// The PCR IMA extends by default.
pub const DEFAULT_IMA_PCR: u32 = 10;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIma {
    #[serde(default)]
    pcr: Option<u32>,
    #[serde(default)]
    allowlist: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    excludes: Vec<String>,
}

/// A file digest as the policy lists it: algorithm name and bytes.
pub type FileDigest = (String, Vec<u8>);

/// Validated `[ima]` claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImaRules {
    pub pcr: u32,
    /// Path → allowed digests (`("sha256", bytes)`).
    pub allowlist: BTreeMap<String, BTreeSet<FileDigest>>,
    /// Paths matching any of these are not judged.
    pub excludes: Vec<Pattern>,
    /// SHA-256 over everything above (see [`ImaRules::digest`]).
    digest: [u8; 32],
}

impl ImaRules {
    /// SHA-256 over a canonical encoding of these rules: an incremental IMA
    /// state judged under other rules is not continued (the node's whole log
    /// is judged again under the new ones).
    pub fn digest(&self) -> &[u8; 32] {
        &self.digest
    }

    fn compute_digest(&mut self) {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        let field = |h: &mut Sha256, b: &[u8]| {
            h.update((b.len() as u64).to_be_bytes());
            h.update(b);
        };
        h.update(b"assay.ima-rules.v1\0");
        h.update(self.pcr.to_be_bytes());
        h.update((self.allowlist.len() as u64).to_be_bytes());
        for (path, set) in &self.allowlist {
            field(&mut h, path.as_bytes());
            h.update((set.len() as u64).to_be_bytes());
            for (alg, d) in set {
                field(&mut h, alg.as_bytes());
                field(&mut h, d);
            }
        }
        h.update((self.excludes.len() as u64).to_be_bytes());
        for p in &self.excludes {
            field(&mut h, p.as_str().as_bytes());
        }
        self.digest = h.finalize().into();
    }

    /// True if `path` is excluded from judgement.
    pub fn excluded(&self, path: &str) -> bool {
        self.excludes.iter().any(|p| p.is_match(path))
    }
}

const ALGS: &[(&str, usize)] = &[("sha1", 20), ("sha256", 32), ("sha384", 48), ("sha512", 64)];

/// `"sha256:<hex>"`, `"sha1:<hex>"`, …; bare hex is taken by its length.
fn parse_file_digest(text: &str) -> Option<FileDigest> {
    let (alg, hex_part) = match text.split_once(':') {
        Some((alg, h)) => (Some(alg), h),
        None => (None, text),
    };
    let bytes = hex::decode(hex_part.trim()).ok()?;
    let alg = match alg {
        Some(a) => {
            ALGS.iter()
                .find(|(n, len)| *n == a && *len == bytes.len())?
                .0
        }
        None => ALGS.iter().find(|(_, len)| *len == bytes.len())?.0,
    };
    Some((alg.to_string(), bytes))
}

impl RawIma {
    pub(super) fn validate(
        self,
        invalid: &dyn Fn(&str, String) -> PolicyError,
    ) -> Result<ImaRules, PolicyError> {
        let pcr = self.pcr.unwrap_or(DEFAULT_IMA_PCR);
        if pcr > super::MAX_PCR_INDEX {
            return Err(invalid(
                "pcr",
                format!("ima.pcr {pcr} is above {}", super::MAX_PCR_INDEX),
            ));
        }
        let mut allowlist = BTreeMap::new();
        for (path, digests) in self.allowlist {
            if !path.starts_with('/') && path != BOOT_AGGREGATE {
                return Err(invalid(
                    &path,
                    format!(
                        "ima.allowlist: `{path}` is not an absolute path (or `{BOOT_AGGREGATE}`)"
                    ),
                ));
            }
            let set = digests
                .iter()
                .map(|d| {
                    parse_file_digest(d).ok_or_else(|| {
                        invalid(d, format!("ima.allowlist.\"{path}\": `{d}` is not a digest like \"sha256:<64 hex>\""))
                    })
                })
                .collect::<Result<BTreeSet<_>, _>>()?;
            allowlist.insert(path, set);
        }
        let excludes = self
            .excludes
            .iter()
            .map(|p| {
                compile_pattern(p).map_err(|reason| invalid(p, format!("ima.excludes: {reason}")))
            })
            .collect::<Result<_, _>>()?;
        let mut rules = ImaRules {
            pcr,
            allowlist,
            excludes,
            digest: [0; 32],
        };
        rules.compute_digest();
        Ok(rules)
    }
}
