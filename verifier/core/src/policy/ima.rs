//! `[ima]`: claims on the IMA runtime measurement log.
//!
//! Every measured file must be in the allowlist with one of its allowed digests,
//! or carry an IMA signature (`ima-sig`) by a key of one of the policy's
//! keyrings, unless its path matches an exclude pattern; files matching a
//! `require_signature` rule must be signed by a key of the rule's keyrings.
//! `ima-buf` entries whose name `buffers` lists must have one of its digests.
//! See `policies/README.md`.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

mod allowlist;

pub use allowlist::{Allowlist, AllowlistError, DigestAlg, Digests};

use super::measured_boot::{compile_pattern, Pattern};
use super::PolicyError;
use crate::ima_signature::Keyring;

/// The name of IMA's first entry, the digest of the boot PCRs; an allowlist may
/// pin it like a file.
pub const BOOT_AGGREGATE: &str = "boot_aggregate";

/// The PCRs the kernel's boot_aggregate covers in any bank but SHA-1
/// (`ima_calc_boot_aggregate`: 0-7, and 8-9 since Linux 5.8 except for SHA-1).
pub const BOOT_AGGREGATE_PCRS: std::ops::RangeInclusive<u32> = 0..=9;

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
    #[serde(default)]
    boot_aggregate: Option<bool>,
    #[serde(default)]
    keyrings: BTreeMap<String, RawKeyring>,
    #[serde(default)]
    require_signature: Vec<RawRequire>,
    #[serde(default)]
    buffers: BTreeMap<String, Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeyring {
    /// PEM X.509 certificates or public keys.
    keys: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequire {
    paths: Vec<String>,
    #[serde(default)]
    keyrings: Option<Vec<String>>,
}

/// The policy's keyrings: each by name, and all of them together.
#[derive(Debug, Clone, Default)]
pub struct Keyrings {
    /// Name → the PEM texts it was built from (what equality compares).
    texts: BTreeMap<String, Vec<String>>,
    /// Every key of every keyring.
    pub all: Keyring,
}

impl Keyrings {
    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }

    /// The keyring names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.texts.keys().map(String::as_str)
    }

    /// The PEM texts keyring `name` was built from.
    pub fn texts(&self, name: &str) -> Option<&[String]> {
        self.texts.get(name).map(Vec::as_slice)
    }
}

impl PartialEq for Keyrings {
    fn eq(&self, other: &Self) -> bool {
        self.texts == other.texts
    }
}
impl Eq for Keyrings {}

/// Files matching `paths` must carry a signature by a key of `keyrings`.
#[derive(Debug, Clone)]
pub struct SignatureRule {
    pub paths: Vec<Pattern>,
    /// The keyring names (all of the policy's when the rule names none).
    pub keyring_names: Vec<String>,
    /// Their keys together (derived from the names over the policy's
    /// [`Keyrings`], so equality compares the names).
    pub keyring: Keyring,
}

impl PartialEq for SignatureRule {
    fn eq(&self, other: &Self) -> bool {
        self.paths == other.paths && self.keyring_names == other.keyring_names
    }
}
impl Eq for SignatureRule {}

/// A file digest as the policy lists it: algorithm name and bytes.
pub type FileDigest = (String, Vec<u8>);

/// Validated `[ima]` claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImaRules {
    pub pcr: u32,
    /// Path → allowed digests.
    pub allowlist: Allowlist,
    /// Paths matching any of these are not judged.
    pub excludes: Vec<Pattern>,
    /// Recompute the log's first entry (boot_aggregate) from the quoted
    /// PCRs 0-9 and compare (default true; the quote then covers them).
    pub boot_aggregate: bool,
    /// Keys whose `ima-sig` signatures allow a file without the allowlist.
    pub keyrings: Keyrings,
    /// Paths that must be signed, first match wins.
    pub require_signature: Vec<SignatureRule>,
    /// `ima-buf` names judged → their allowed digests.
    pub buffers: BTreeMap<String, BTreeSet<FileDigest>>,
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
        h.update([u8::from(self.boot_aggregate)]);
        h.update((self.allowlist.len() as u64).to_be_bytes());
        for (path, set) in self.allowlist.iter() {
            field(&mut h, path.as_bytes());
            h.update((set.len() as u64).to_be_bytes());
            for (alg, d) in set.iter() {
                field(&mut h, alg.name().as_bytes());
                field(&mut h, d);
            }
        }
        h.update((self.excludes.len() as u64).to_be_bytes());
        for p in &self.excludes {
            field(&mut h, p.as_str().as_bytes());
        }
        h.update((self.keyrings.texts.len() as u64).to_be_bytes());
        for (name, keys) in &self.keyrings.texts {
            field(&mut h, name.as_bytes());
            h.update((keys.len() as u64).to_be_bytes());
            for k in keys {
                field(&mut h, k.as_bytes());
            }
        }
        h.update((self.require_signature.len() as u64).to_be_bytes());
        for r in &self.require_signature {
            h.update((r.paths.len() as u64).to_be_bytes());
            for p in &r.paths {
                field(&mut h, p.as_str().as_bytes());
            }
            h.update((r.keyring_names.len() as u64).to_be_bytes());
            for n in &r.keyring_names {
                field(&mut h, n.as_bytes());
            }
        }
        h.update((self.buffers.len() as u64).to_be_bytes());
        for (name, set) in &self.buffers {
            field(&mut h, name.as_bytes());
            h.update((set.len() as u64).to_be_bytes());
            for (alg, d) in set {
                field(&mut h, alg.as_bytes());
                field(&mut h, d);
            }
        }
        self.digest = h.finalize().into();
    }

    /// The first `require_signature` rule matching `path`.
    pub fn signature_rule(&self, path: &str) -> Option<&SignatureRule> {
        self.require_signature
            .iter()
            .find(|r| r.paths.iter().any(|p| p.is_match(path)))
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
        let mut allowlist = Allowlist::new();
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
                    parse_file_digest(d)
                        .and_then(|(alg, bytes)| Some((DigestAlg::from_name(&alg)?, bytes)))
                        .ok_or_else(|| {
                            invalid(d, format!("ima.allowlist.\"{path}\": `{d}` is not a digest like \"sha256:<64 hex>\""))
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            allowlist
                .insert(&path, set)
                .map_err(|e| invalid(&path, format!("ima.allowlist: {e}")))?;
        }
        let excludes = self
            .excludes
            .iter()
            .map(|p| {
                compile_pattern(p).map_err(|reason| invalid(p, format!("ima.excludes: {reason}")))
            })
            .collect::<Result<_, _>>()?;
        let mut keyrings = Keyrings::default();
        for (name, raw) in self.keyrings {
            for (i, pem) in raw.keys.iter().enumerate() {
                keyrings
                    .all
                    .add_pem(pem.as_bytes())
                    .map_err(|e| invalid(&name, format!("ima.keyrings.{name}.keys[{i}]: {e}")))?;
            }
            if raw.keys.is_empty() {
                return Err(invalid(&name, format!("ima.keyrings.{name}: no keys")));
            }
            keyrings.texts.insert(name, raw.keys);
        }
        let mut require_signature = Vec::new();
        for (i, r) in self.require_signature.into_iter().enumerate() {
            let what = format!("ima.require_signature[{i}]");
            if r.paths.is_empty() {
                return Err(invalid(&what, format!("{what}: no paths")));
            }
            let paths = r
                .paths
                .iter()
                .map(|p| {
                    compile_pattern(p)
                        .map_err(|reason| invalid(p, format!("{what}.paths: {reason}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let names: Vec<String> = match r.keyrings {
                Some(n) => n,
                None => keyrings.texts.keys().cloned().collect(),
            };
            if names.is_empty() {
                return Err(invalid(
                    &what,
                    format!("{what}: no keyring (define one under [ima.keyrings.NAME])"),
                ));
            }
            let mut keyring = Keyring::new();
            for n in &names {
                let Some(keys) = keyrings.texts.get(n) else {
                    return Err(invalid(
                        n,
                        format!("{what}.keyrings: `{n}` is not a keyring of this policy"),
                    ));
                };
                for pem in keys {
                    keyring
                        .add_pem(pem.as_bytes())
                        .map_err(|e| invalid(n, format!("ima.keyrings.{n}: {e}")))?;
                }
            }
            require_signature.push(SignatureRule {
                paths,
                keyring_names: names,
                keyring,
            });
        }
        let mut buffers = BTreeMap::new();
        for (name, digests) in self.buffers {
            let set = digests
                .iter()
                .map(|d| {
                    parse_file_digest(d).ok_or_else(|| {
                        invalid(d, format!("ima.buffers.\"{name}\": `{d}` is not a digest like \"sha256:<64 hex>\""))
                    })
                })
                .collect::<Result<BTreeSet<_>, _>>()?;
            buffers.insert(name, set);
        }
        let mut rules = ImaRules {
            pcr,
            allowlist,
            excludes,
            boot_aggregate: self.boot_aggregate.unwrap_or(true),
            keyrings,
            require_signature,
            buffers,
            digest: [0; 32],
        };
        rules.compute_digest();
        Ok(rules)
    }
}
