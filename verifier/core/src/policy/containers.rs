//! `[containers]`: claims on the container measurement log (CEL).
//!
//! - `runtime`: path → allowed SHA-256 digests of runtime binaries and configs;
//!   when present, every measured runtime file must be listed with its digest.
//! - `allowed_images` (manifest digests) and `allowed_repositories` (exact
//!   repositories, or prefixes ending in `/`): when either is present, an image
//!   passes if its digest is allowed **or** its repository is.
//! - `denied_images`: manifest or config digests that fail wherever they appear
//!   (deny wins over allow).
//! - `require_measured_starts` (default true): every container start must name
//!   an image measured earlier in the log.
//!
//! See `policies/README.md`.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use super::measured_boot::parse_sha256;
use super::PolicyError;
use crate::eventlog::cel::{is_oci_sha256, DEFAULT_CEL_PCR};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawContainers {
    #[serde(default)]
    pcr: Option<u32>,
    #[serde(default)]
    runtime: Option<BTreeMap<String, Vec<String>>>,
    #[serde(default)]
    allowed_images: Option<Vec<String>>,
    #[serde(default)]
    allowed_repositories: Option<Vec<String>>,
    #[serde(default)]
    denied_images: Vec<String>,
    #[serde(default)]
    require_measured_starts: Option<bool>,
}

/// Validated `[containers]` claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRules {
    /// The PCR the container measurement log is extended into.
    pub pcr: u32,
    /// Runtime file path → allowed SHA-256 digests; `None`: not judged.
    pub runtime: Option<BTreeMap<String, BTreeSet<[u8; 32]>>>,
    /// Allowed image manifest digests (`sha256:<hex>`).
    pub allowed_images: Option<BTreeSet<String>>,
    /// Allowed repositories: exact names, or prefixes ending in `/`.
    pub allowed_repositories: Option<Vec<String>>,
    /// Denied manifest or config digests.
    pub denied_images: BTreeSet<String>,
    pub require_measured_starts: bool,
}

/// The repository of an image reference: the reference without its digest
/// (`@sha256:…`) and tag (`:tag` after the last `/`).
pub fn repository(reference: &str) -> &str {
    let no_digest = reference.split('@').next().unwrap_or(reference);
    let last_slash = no_digest.rfind('/').map_or(0, |i| i + 1);
    match no_digest.get(last_slash..).and_then(|tail| tail.rfind(':')) {
        Some(colon) => no_digest.get(..last_slash + colon).unwrap_or(no_digest),
        None => no_digest,
    }
}

impl ContainerRules {
    /// Whether the rules judge images at all (beyond denials).
    pub fn judges_images(&self) -> bool {
        self.allowed_images.is_some() || self.allowed_repositories.is_some()
    }

    /// Whether an image with this reference and manifest digest is allowed
    /// (denials are checked separately).
    pub fn image_allowed(&self, reference: &str, manifest_digest: &str) -> bool {
        let by_digest = self
            .allowed_images
            .as_ref()
            .is_some_and(|s| s.contains(manifest_digest));
        let repo = repository(reference);
        let by_repo = self.allowed_repositories.as_ref().is_some_and(|list| {
            list.iter().any(|a| {
                if a.ends_with('/') {
                    repo.starts_with(a.as_str())
                } else {
                    repo == a
                }
            })
        });
        by_digest || by_repo
    }
}

fn oci_digests(
    key: &str,
    values: Vec<String>,
    invalid: &dyn Fn(&str, String) -> PolicyError,
) -> Result<BTreeSet<String>, PolicyError> {
    values
        .into_iter()
        .map(|v| {
            if is_oci_sha256(&v) {
                Ok(v)
            } else {
                Err(invalid(
                    &v,
                    format!("containers.{key}: `{v}` is not an image digest (\"sha256:\" and 64 lowercase hex)"),
                ))
            }
        })
        .collect()
}

impl RawContainers {
    pub(super) fn validate(
        self,
        invalid: &dyn Fn(&str, String) -> PolicyError,
    ) -> Result<ContainerRules, PolicyError> {
        let pcr = self.pcr.unwrap_or(DEFAULT_CEL_PCR);
        if pcr > super::MAX_PCR_INDEX {
            return Err(invalid(
                "pcr",
                format!("containers.pcr {pcr} is above {}", super::MAX_PCR_INDEX),
            ));
        }
        let runtime = self
            .runtime
            .map(|table| {
                table
                    .into_iter()
                    .map(|(path, digests)| {
                        if !path.starts_with('/') {
                            return Err(invalid(&path, format!("containers.runtime: `{path}` is not an absolute path")));
                        }
                        let set = digests
                            .iter()
                            .map(|d| {
                                parse_sha256(d).ok_or_else(|| {
                                    invalid(d, format!("containers.runtime.\"{path}\": `{d}` is not a SHA-256 digest (\"sha256:\" and 64 hex)"))
                                })
                            })
                            .collect::<Result<BTreeSet<_>, _>>()?;
                        Ok((path, set))
                    })
                    .collect::<Result<BTreeMap<_, _>, _>>()
            })
            .transpose()?;
        let allowed_repositories = self
            .allowed_repositories
            .map(|list| {
                list.into_iter()
                    .map(|r| {
                        if r.is_empty() || r.contains(char::is_whitespace) || r.contains('@') {
                            Err(invalid(&r, format!("containers.allowed_repositories: `{r}` is not a repository name or a prefix ending in `/`")))
                        } else {
                            Ok(r)
                        }
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        Ok(ContainerRules {
            pcr,
            runtime,
            allowed_images: self
                .allowed_images
                .map(|v| oci_digests("allowed_images", v, invalid))
                .transpose()?,
            allowed_repositories,
            denied_images: oci_digests("denied_images", self.denied_images, invalid)?,
            require_measured_starts: self.require_measured_starts.unwrap_or(true),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn repository_strips_tag_and_digest_but_not_a_registry_port() {
        assert_eq!(
            repository("docker.io/library/busybox:1.36"),
            "docker.io/library/busybox"
        );
        assert_eq!(
            repository("registry.example.com:5000/team/app@sha256:abcd"),
            "registry.example.com:5000/team/app"
        );
        assert_eq!(
            repository("registry.example.com:5000/team/app"),
            "registry.example.com:5000/team/app"
        );
        assert_eq!(repository("busybox"), "busybox");
    }
}
