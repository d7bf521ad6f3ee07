//! Policies: what a node must show to be trusted.
//!
//! A policy is a TOML file (schema documented in `policies/README.md`):
//!
//! ```toml
//! schema = 1
//! name = "web-fleet"
//! version = "2026-11-22.1"
//!
//! [pcrs.sha256]                 # golden PCR values (optional with schema 1)
//! 7 = "…64 hex digits…"
//!
//! [measured_boot]               # claims on the UEFI event log (see measured_boot.rs)
//! secure_boot = true
//! boot_applications = ["sha256:…"]
//!
//! [ima]                         # claims on the IMA log (see ima.rs)
//! excludes = ["^/tmp/"]
//! [ima.allowlist]
//! "/usr/bin/bash" = ["sha256:…"]
//! ```
//!
//! Schema 0 (PCR values only) is still read. The PCR selection the node is asked
//! to quote is the union of the golden PCRs, the measured-boot PCRs and the IMA
//! PCR. The policy digest is the SHA-256 of the file's exact bytes, so an auditor
//! can recompute it with `sha256sum`.

pub mod containers;
pub mod diff;
pub mod ima;
pub mod measured_boot;
pub mod reference;

use std::collections::BTreeMap;

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Highest PCR index a policy may name (PC Client TPMs have 24 PCRs).
pub const MAX_PCR_INDEX: u32 = 23;
/// Largest policy file accepted, in bytes. IMA allowlists are big (about 130
/// bytes a file: 100,000 files is 13 MB), so the cap is 32 MiB.
pub const MAX_POLICY_BYTES: usize = 32 << 20;
/// The newest schema version this build understands (0 is still read).
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{source_name}: policy is {len} bytes, more than the {max}-byte limit")]
    TooLarge {
        source_name: String,
        len: usize,
        max: usize,
    },
    #[error("{source_name}: {message}")]
    Syntax {
        source_name: String,
        message: String,
    },
    #[error("{source_name}: line {line}: {reason}")]
    Invalid {
        source_name: String,
        line: usize,
        reason: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    schema: u32,
    name: String,
    #[serde(default)]
    description: Option<String>,
    /// Free-form version of the policy's content (e.g. a date), shown in verdicts.
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    pcrs: RawPcrs,
    #[serde(default)]
    measured_boot: Option<measured_boot::RawMeasuredBoot>,
    #[serde(default)]
    ima: Option<ima::RawIma>,
    #[serde(default)]
    containers: Option<containers::RawContainers>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPcrs {
    #[serde(default)]
    sha256: BTreeMap<String, String>,
}

/// A parsed, validated policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub name: String,
    pub description: Option<String>,
    pub version: Option<String>,
    pub schema: u32,
    sha256_pcrs: BTreeMap<u32, [u8; 32]>,
    measured_boot: Option<measured_boot::MeasuredBootRules>,
    ima: Option<ima::ImaRules>,
    containers: Option<containers::ContainerRules>,
    digest: [u8; 32],
}

impl Policy {
    /// Parses and validates a policy. `source_name` (usually the file path) is
    /// used in error messages, which carry the line of the offending entry.
    pub fn parse(source_name: &str, text: &str) -> Result<Self, PolicyError> {
        let src = || source_name.to_string();
        if text.len() > MAX_POLICY_BYTES {
            return Err(PolicyError::TooLarge {
                source_name: src(),
                len: text.len(),
                max: MAX_POLICY_BYTES,
            });
        }
        let raw: RawPolicy = toml::from_str(text).map_err(|e| PolicyError::Syntax {
            source_name: src(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let invalid = |needle: &str, reason: String| PolicyError::Invalid {
            source_name: src(),
            line: line_of(text, needle),
            reason,
        };
        if raw.schema > SCHEMA_VERSION {
            return Err(invalid(
                "schema",
                format!("schema {} is not supported by this verifier (it reads schemas 0 to {SCHEMA_VERSION})", raw.schema),
            ));
        }
        if raw.name.trim().is_empty() {
            return Err(invalid("name", "`name` must not be empty".into()));
        }
        let mut sha256_pcrs = BTreeMap::new();
        for (key, value) in &raw.pcrs.sha256 {
            let index: u32 = key.parse().map_err(|_| {
                invalid(
                    &format!("{key} ="),
                    format!("PCR index `{key}` is not a number from 0 to {MAX_PCR_INDEX}"),
                )
            })?;
            if index > MAX_PCR_INDEX {
                return Err(invalid(
                    &format!("{key} ="),
                    format!("PCR index {index} is above {MAX_PCR_INDEX}"),
                ));
            }
            let bytes = hex::decode(value.trim()).ok().and_then(|b| <[u8; 32]>::try_from(b).ok()).ok_or_else(|| {
                invalid(value, format!("PCR {index}: value must be 64 hex digits (a SHA-256 digest), got `{value}`"))
            })?;
            if sha256_pcrs.insert(index, bytes).is_some() {
                return Err(invalid(
                    &format!("{key} ="),
                    format!("PCR {index} is listed twice"),
                ));
            }
        }
        if raw.schema == 0
            && (raw.measured_boot.is_some() || raw.ima.is_some() || raw.containers.is_some())
        {
            return Err(invalid(
                "schema",
                "[measured_boot], [ima] and [containers] need `schema = 1`".into(),
            ));
        }
        let measured_boot = raw
            .measured_boot
            .map(|r| r.validate(&|needle, reason| invalid(needle, reason)))
            .transpose()?;
        let ima = raw
            .ima
            .map(|r| r.validate(&|needle, reason| invalid(needle, reason)))
            .transpose()?;
        let containers = raw
            .containers
            .map(|r| r.validate(&|needle, reason| invalid(needle, reason)))
            .transpose()?;
        if sha256_pcrs.is_empty()
            && measured_boot.is_none()
            && ima.is_none()
            && containers.is_none()
        {
            return Err(invalid(
                "[pcrs",
                "the policy requires nothing; list PCR values under [pcrs.sha256], or add [measured_boot], [ima] or [containers] claims".into(),
            ));
        }
        Ok(Self {
            name: raw.name,
            description: raw.description,
            version: raw.version,
            schema: raw.schema,
            sha256_pcrs,
            measured_boot,
            ima,
            containers,
            digest: Sha256::digest(text.as_bytes()).into(),
        })
    }

    /// SHA-256 of the policy file's bytes.
    pub fn digest(&self) -> [u8; 32] {
        self.digest
    }

    /// Hex form of [`Policy::digest`].
    pub fn digest_hex(&self) -> String {
        hex::encode(self.digest)
    }

    /// Required sha256-bank PCR values, by index.
    pub fn sha256_pcrs(&self) -> &BTreeMap<u32, [u8; 32]> {
        &self.sha256_pcrs
    }

    /// Claims on the UEFI event log, if the policy makes any.
    pub fn measured_boot(&self) -> Option<&measured_boot::MeasuredBootRules> {
        self.measured_boot.as_ref()
    }

    /// Claims on the IMA log, if the policy makes any.
    pub fn ima(&self) -> Option<&ima::ImaRules> {
        self.ima.as_ref()
    }

    /// Claims on the container measurement log, if the policy makes any.
    pub fn containers(&self) -> Option<&containers::ContainerRules> {
        self.containers.as_ref()
    }

    /// The PCR indices (sha256 bank) the node must quote, ascending: golden PCRs,
    /// the PCRs the UEFI log is replayed into, the IMA PCR and the CEL PCR.
    pub fn pcr_selection(&self) -> Vec<u32> {
        let mut set: std::collections::BTreeSet<u32> = self.sha256_pcrs.keys().copied().collect();
        if let Some(mb) = &self.measured_boot {
            set.extend(mb.pcrs.iter().copied());
        }
        if let Some(ima) = &self.ima {
            set.insert(ima.pcr);
            if ima.boot_aggregate {
                set.extend(ima::BOOT_AGGREGATE_PCRS);
            }
        }
        if let Some(c) = &self.containers {
            set.insert(c.pcr);
        }
        set.into_iter().collect()
    }
}

/// 1-based line of the first occurrence of `needle`, or 1 if it is not found.
pub(crate) fn line_of(text: &str, needle: &str) -> usize {
    text.find(needle)
        .map(|pos| text[..pos].matches('\n').count() + 1)
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ZERO: &str = "0000000000000000000000000000000000000000000000000000000000000000";

    fn good() -> String {
        format!(
            "schema = 0\nname = \"t\"\n[pcrs.sha256]\n0 = \"{ZERO}\"\n13 = \"{}\"\n",
            "ab".repeat(32)
        )
    }

    #[test]
    fn parses_and_digests_the_exact_bytes() {
        let text = good();
        let p = Policy::parse("p.toml", &text).unwrap();
        assert_eq!(p.pcr_selection(), vec![0, 13]);
        assert_eq!(p.sha256_pcrs()[&13], [0xab; 32]);
        assert_eq!(
            p.digest(),
            <[u8; 32]>::from(Sha256::digest(text.as_bytes()))
        );
        let other = Policy::parse("p.toml", &format!("{text}\n# comment\n")).unwrap();
        assert_ne!(
            p.digest(),
            other.digest(),
            "any byte change changes the digest"
        );
    }

    #[test]
    fn bad_hex_is_reported_with_its_line() {
        let text = "schema = 0\nname = \"t\"\n[pcrs.sha256]\n0 = \"zz\"\n";
        let e = Policy::parse("p.toml", text).unwrap_err().to_string();
        assert!(e.starts_with("p.toml: line 4:"), "{e}");
        assert!(e.contains("64 hex digits"), "{e}");
    }

    #[test]
    fn out_of_range_and_non_numeric_indices_are_refused() {
        let e = Policy::parse(
            "p",
            &format!("schema = 0\nname = \"t\"\n[pcrs.sha256]\n24 = \"{ZERO}\"\n"),
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("line 4") && e.to_string().contains("above 23"),
            "{e}"
        );
        let e = Policy::parse(
            "p",
            &format!("schema = 0\nname = \"t\"\n[pcrs.sha256]\nx = \"{ZERO}\"\n"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("not a number"), "{e}");
    }

    #[test]
    fn unknown_keys_schema_and_empty_policies_are_refused() {
        let e = Policy::parse("p", "schema = 0\nname = \"t\"\nbogus = 1\n").unwrap_err();
        assert!(matches!(e, PolicyError::Syntax { .. }), "{e}");
        assert!(e.to_string().contains("line 3"), "{e}");
        let e = Policy::parse(
            "p",
            &format!("schema = 9\nname = \"t\"\n[pcrs.sha256]\n0 = \"{ZERO}\"\n"),
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("line 1") && e.to_string().contains("schema 9"),
            "{e}"
        );
        let e = Policy::parse("p", "schema = 0\nname = \"t\"\n").unwrap_err();
        assert!(e.to_string().contains("requires nothing"), "{e}");
    }

    #[test]
    fn malformed_and_oversized_input_is_an_error_not_a_panic() {
        for text in [
            "",
            "[",
            "schema = \"0\"",
            "\u{0}\u{1}",
            "schema = 0\nname = \"t\"\n[pcrs.sha256]\n0 = 5\n",
        ] {
            assert!(Policy::parse("p", text).is_err(), "{text:?}");
        }
        let big = "#".repeat(MAX_POLICY_BYTES + 1);
        assert!(matches!(
            Policy::parse("p", &big),
            Err(PolicyError::TooLarge { .. })
        ));
    }
}
