//! `[measured_boot]`: claims on the UEFI firmware event log.
//!
//! Every key is optional; a key that is absent is not judged. Digests are
//! `"sha256:<64 hex>"` (or bare 64 hex digits). See `policies/README.md`.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use super::PolicyError;
use crate::eventlog::uefi::event_type_from_name;

/// PCRs replayed from the UEFI log when the policy does not say: the firmware and
/// boot-loader PCRs of the PC Client profile.
pub const DEFAULT_PCRS: [u32; 8] = [0, 1, 2, 3, 4, 5, 6, 7];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMeasuredBoot {
    #[serde(default)]
    pcrs: Option<Vec<u32>>,
    #[serde(default)]
    secure_boot: Option<bool>,
    #[serde(default)]
    pk: Option<Vec<String>>,
    #[serde(default)]
    kek: Option<Vec<String>>,
    #[serde(default)]
    db: Option<Vec<String>>,
    #[serde(default)]
    dbx_required: Option<Vec<String>>,
    #[serde(default)]
    crtm_versions: Option<Vec<String>>,
    #[serde(default)]
    firmware_blobs: Option<Vec<String>>,
    #[serde(default)]
    boot_applications: Option<Vec<String>>,
    #[serde(default)]
    kernel_cmdlines: Option<Vec<String>>,
    #[serde(default)]
    kernel_cmdline_patterns: Option<Vec<String>>,
    #[serde(default)]
    after_separator: Option<BTreeMap<String, Vec<String>>>,
    #[serde(default)]
    allow_error_separators: Option<bool>,
}

/// An anchored regular expression from a policy, compared by its source text.
#[derive(Debug, Clone)]
pub struct Pattern(regex::Regex);

impl Pattern {
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    pub fn is_match(&self, text: &str) -> bool {
        self.0.is_match(text)
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}
impl Eq for Pattern {}

/// Compiles a policy pattern, anchored at both ends (a pattern matches a whole
/// command line or path, never a part of it by accident). Size-limited, and the
/// `regex` crate matches in linear time, so a policy cannot make matching hang.
pub(super) fn compile_pattern(source: &str) -> Result<Pattern, String> {
    regex::RegexBuilder::new(&format!("^(?:{source})$"))
        .size_limit(1 << 20)
        .build()
        .map(Pattern)
        .map_err(|e| format!("pattern `{source}` is not a valid regular expression: {e}"))
}

/// Validated `[measured_boot]` claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeasuredBootRules {
    /// PCRs whose replayed value must equal the quoted one (sha256 bank).
    pub pcrs: Vec<u32>,
    /// `SecureBoot` must be enabled (`true`) or disabled (`false`).
    pub secure_boot: Option<bool>,
    /// Allowed platform key certificates (SHA-256 of the DER).
    pub pk: Option<BTreeSet<[u8; 32]>>,
    /// Allowed KEK certificates.
    pub kek: Option<BTreeSet<[u8; 32]>>,
    /// Allowed db entries: certificate fingerprints or SHA-256 image hashes.
    pub db: Option<BTreeSet<[u8; 32]>>,
    /// Entries dbx must contain (revocations that must be applied).
    pub dbx_required: BTreeSet<[u8; 32]>,
    /// Allowed `EV_S_CRTM_VERSION` strings.
    pub crtm_versions: Option<BTreeSet<String>>,
    /// Allowed firmware blob digests (`EV_EFI_PLATFORM_FIRMWARE_BLOB(2)`, sha256 bank).
    pub firmware_blobs: Option<BTreeSet<[u8; 32]>>,
    /// Allowed boot applications (`EV_EFI_BOOT_SERVICES_APPLICATION` in PCR 4, sha256).
    pub boot_applications: Option<BTreeSet<[u8; 32]>>,
    /// Allowed kernel command lines, exactly.
    pub kernel_cmdlines: Option<BTreeSet<String>>,
    /// Allowed kernel command lines, as anchored regular expressions.
    pub kernel_cmdline_patterns: Vec<Pattern>,
    /// Per PCR, the event types allowed after that PCR's separator. When set,
    /// any other event after a separator in PCRs 0-7 fails.
    pub after_separator: Option<BTreeMap<u32, BTreeSet<u32>>>,
    /// Accept error separators (firmware reporting a measurement failure).
    pub allow_error_separators: bool,
}

impl MeasuredBootRules {
    /// True when the policy judges kernel command lines at all.
    pub fn judges_cmdline(&self) -> bool {
        self.kernel_cmdlines.is_some() || !self.kernel_cmdline_patterns.is_empty()
    }
}

/// `"sha256:<hex>"` or bare 64 hex digits.
pub(super) fn parse_sha256(text: &str) -> Option<[u8; 32]> {
    let hex_part = text.trim().strip_prefix("sha256:").unwrap_or(text.trim());
    hex::decode(hex_part).ok()?.try_into().ok()
}

type Invalid<'a> = &'a dyn Fn(&str, String) -> PolicyError;

pub(super) fn digest_set(
    key: &str,
    values: Option<Vec<String>>,
    invalid: Invalid<'_>,
) -> Result<Option<BTreeSet<[u8; 32]>>, PolicyError> {
    values
        .map(|list| {
            list.iter()
                .map(|v| {
                    parse_sha256(v).ok_or_else(|| {
                        invalid(
                            v,
                            format!("{key}: `{v}` is not a SHA-256 digest (\"sha256:\" and 64 hex digits)"),
                        )
                    })
                })
                .collect()
        })
        .transpose()
}

impl RawMeasuredBoot {
    pub(super) fn validate(self, invalid: Invalid<'_>) -> Result<MeasuredBootRules, PolicyError> {
        let pcrs = self.pcrs.unwrap_or_else(|| DEFAULT_PCRS.to_vec());
        if let Some(p) = pcrs.iter().find(|p| **p > super::MAX_PCR_INDEX) {
            return Err(invalid(
                "pcrs",
                format!(
                    "measured_boot.pcrs: PCR {p} is above {}",
                    super::MAX_PCR_INDEX
                ),
            ));
        }
        let mut after_separator = None;
        if let Some(map) = self.after_separator {
            let mut out = BTreeMap::new();
            for (key, names) in map {
                let pcr: u32 = key.parse().ok().filter(|p| *p <= 7).ok_or_else(|| {
                    invalid(
                        "after_separator",
                        format!("after_separator: `{key}` is not a PCR from 0 to 7"),
                    )
                })?;
                let mut types = BTreeSet::new();
                for name in names {
                    let t = event_type_from_name(&name).ok_or_else(|| {
                        invalid(&name, format!("after_separator.{key}: `{name}` is not a TCG event type name (e.g. EV_EFI_BOOT_SERVICES_APPLICATION)"))
                    })?;
                    types.insert(t);
                }
                out.insert(pcr, types);
            }
            after_separator = Some(out);
        }
        let kernel_cmdline_patterns: Vec<Pattern> = self
            .kernel_cmdline_patterns
            .unwrap_or_default()
            .iter()
            .map(|p| {
                compile_pattern(p)
                    .map_err(|reason| invalid(p, format!("kernel_cmdline_patterns: {reason}")))
            })
            .collect::<Result<_, _>>()?;
        // Facts are only trusted from PCRs that replay: a rule on events in PCRs
        // the policy does not replay could never pass, so say so at load time.
        let needs = |key: &str, set: bool, wanted: &[u32]| -> Result<(), PolicyError> {
            if set && !wanted.iter().any(|p| pcrs.contains(p)) {
                return Err(invalid(
                    key,
                    format!("{key} judges events in PCR {wanted:?}, but measured_boot.pcrs {pcrs:?} does not replay any of them"),
                ));
            }
            Ok(())
        };
        needs("secure_boot", self.secure_boot.is_some(), &[7])?;
        for (key, v) in [
            ("pk", &self.pk),
            ("kek", &self.kek),
            ("db", &self.db),
            ("dbx_required", &self.dbx_required),
        ] {
            needs(key, v.is_some(), &[7])?;
        }
        needs("crtm_versions", self.crtm_versions.is_some(), &[0])?;
        needs("boot_applications", self.boot_applications.is_some(), &[4])?;
        needs(
            "kernel_cmdlines",
            self.kernel_cmdlines.is_some() || !kernel_cmdline_patterns.is_empty(),
            &[8, 12],
        )?;
        Ok(MeasuredBootRules {
            pcrs,
            secure_boot: self.secure_boot,
            pk: digest_set("pk", self.pk, invalid)?,
            kek: digest_set("kek", self.kek, invalid)?,
            db: digest_set("db", self.db, invalid)?,
            dbx_required: digest_set("dbx_required", self.dbx_required, invalid)?
                .unwrap_or_default(),
            crtm_versions: self.crtm_versions.map(|v| v.into_iter().collect()),
            firmware_blobs: digest_set("firmware_blobs", self.firmware_blobs, invalid)?,
            boot_applications: digest_set("boot_applications", self.boot_applications, invalid)?,
            kernel_cmdlines: self.kernel_cmdlines.map(|v| v.into_iter().collect()),
            kernel_cmdline_patterns,
            after_separator,
            allow_error_separators: self.allow_error_separators.unwrap_or(false),
        })
    }
}
