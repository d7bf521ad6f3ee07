//! What changes between two policies, claim by claim, for an operator to read
//! before applying (`assay-verifier policy diff N@A N@B`).
//!
//! Each line names the claim's key as the policy file spells it
//! (`pcrs.sha256.7`, `measured_boot.kernel_cmdlines`,
//! `ima.allowlist."/usr/bin/bash"`, …) and what changed: a value replaced
//! (`before → after`), set members added (`+`) or removed (`-`), or a claim
//! or section that starts or stops being judged. Lines come in a stable order
//! (sections in file order, keys sorted), so two diffs of the same pair are
//! the same text. Metadata (`name`, `version`, `description`) is reported
//! too, but does not change what a node must show.

use std::collections::BTreeSet;
use std::fmt;

use super::Policy;

/// One difference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The claim, as the policy file names it.
    pub key: String,
    pub what: What,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum What {
    /// A value replaced.
    Changed { before: String, after: String },
    /// A member added to an allowed set (or a required one).
    Added(String),
    /// A member removed.
    Removed(String),
    /// Judged in the second policy, not in the first.
    NowJudged,
    /// Judged in the first policy, not in the second.
    NoLongerJudged,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.what {
            What::Changed { before, after } => write!(f, "{}: {before} → {after}", self.key),
            What::Added(v) => write!(f, "{}: + {v}", self.key),
            What::Removed(v) => write!(f, "{}: - {v}", self.key),
            What::NowJudged => write!(f, "{}: now judged", self.key),
            What::NoLongerJudged => write!(f, "{}: no longer judged", self.key),
        }
    }
}

/// Whether the change only concerns metadata (what a node must show is the same).
pub fn is_metadata(c: &Change) -> bool {
    matches!(
        c.key.as_str(),
        "name" | "version" | "description" | "schema"
    )
}

/// Every difference from `a` to `b`.
pub fn diff(a: &Policy, b: &Policy) -> Vec<Change> {
    let mut d = Diff::default();
    d.value("name", Some(&a.name), Some(&b.name));
    d.value("version", a.version.as_ref(), b.version.as_ref());
    d.value(
        "description",
        a.description.as_ref(),
        b.description.as_ref(),
    );
    d.value("schema", Some(&a.schema), Some(&b.schema));
    // Golden PCR values: one key per index.
    let indices: BTreeSet<u32> = a
        .sha256_pcrs
        .keys()
        .chain(b.sha256_pcrs.keys())
        .copied()
        .collect();
    for i in indices {
        d.value(
            &format!("pcrs.sha256.{i}"),
            a.sha256_pcrs.get(&i).map(hex::encode).as_ref(),
            b.sha256_pcrs.get(&i).map(hex::encode).as_ref(),
        );
    }
    d.measured_boot(a.measured_boot.as_ref(), b.measured_boot.as_ref());
    d.ima(a.ima.as_ref(), b.ima.as_ref());
    d.containers(a.containers.as_ref(), b.containers.as_ref());
    d.0
}

#[derive(Default)]
struct Diff(Vec<Change>);

fn sha(b: &[u8; 32]) -> String {
    format!("sha256:{}", hex::encode(b))
}

/// A pattern as the policy file wrote it (without the anchoring added at compile time).
fn source(p: &super::measured_boot::Pattern) -> String {
    let s = p.as_str();
    s.strip_prefix("^(?:")
        .and_then(|s| s.strip_suffix(")$"))
        .unwrap_or(s)
        .to_string()
}

fn quoted(s: &String) -> String {
    format!("{s:?}")
}

impl Diff {
    fn push(&mut self, key: &str, what: What) {
        self.0.push(Change {
            key: key.to_string(),
            what,
        });
    }

    /// A single value (None: not set).
    fn value<T: fmt::Display + PartialEq>(&mut self, key: &str, a: Option<&T>, b: Option<&T>) {
        let show = |v: Option<&T>| v.map_or_else(|| "(not set)".to_string(), |v| v.to_string());
        if a != b {
            self.push(
                key,
                What::Changed {
                    before: show(a),
                    after: show(b),
                },
            );
        }
    }

    /// A set of members (both judged).
    fn members<T: Ord>(
        &mut self,
        key: &str,
        a: &BTreeSet<T>,
        b: &BTreeSet<T>,
        show: impl Fn(&T) -> String,
    ) {
        for v in a.difference(b) {
            self.push(key, What::Removed(show(v)));
        }
        for v in b.difference(a) {
            self.push(key, What::Added(show(v)));
        }
    }

    /// An optional allowed set (None: not judged).
    fn allowed<T: Ord>(
        &mut self,
        key: &str,
        a: Option<&BTreeSet<T>>,
        b: Option<&BTreeSet<T>>,
        show: impl Fn(&T) -> String,
    ) {
        match (a, b) {
            (None, None) => {}
            (Some(_), None) => self.push(key, What::NoLongerJudged),
            (None, Some(b)) => {
                self.push(key, What::NowJudged);
                self.members(key, &BTreeSet::new(), b, show);
            }
            (Some(a), Some(b)) => self.members(key, a, b, show),
        }
    }

    /// A section: judged in one, not the other, or compared field by field.
    fn section<T>(
        &mut self,
        key: &str,
        a: Option<&T>,
        b: Option<&T>,
        fields: impl FnOnce(&mut Self, &T, &T),
    ) {
        match (a, b) {
            (None, None) => {}
            (Some(_), None) => self.push(key, What::NoLongerJudged),
            (None, Some(_)) => self.push(key, What::NowJudged),
            (Some(a), Some(b)) => fields(self, a, b),
        }
    }

    fn measured_boot(
        &mut self,
        a: Option<&super::measured_boot::MeasuredBootRules>,
        b: Option<&super::measured_boot::MeasuredBootRules>,
    ) {
        self.section("measured_boot", a, b, |d, a, b| {
            let pcrs = |v: &[u32]| format!("{v:?}");
            d.value(
                "measured_boot.pcrs",
                Some(&pcrs(&a.pcrs)),
                Some(&pcrs(&b.pcrs)),
            );
            d.value(
                "measured_boot.secure_boot",
                a.secure_boot.as_ref(),
                b.secure_boot.as_ref(),
            );
            d.allowed("measured_boot.pk", a.pk.as_ref(), b.pk.as_ref(), sha);
            d.allowed("measured_boot.kek", a.kek.as_ref(), b.kek.as_ref(), sha);
            d.allowed("measured_boot.db", a.db.as_ref(), b.db.as_ref(), sha);
            d.members(
                "measured_boot.dbx_required",
                &a.dbx_required,
                &b.dbx_required,
                sha,
            );
            d.allowed(
                "measured_boot.crtm_versions",
                a.crtm_versions.as_ref(),
                b.crtm_versions.as_ref(),
                quoted,
            );
            d.allowed(
                "measured_boot.firmware_blobs",
                a.firmware_blobs.as_ref(),
                b.firmware_blobs.as_ref(),
                sha,
            );
            d.allowed(
                "measured_boot.boot_applications",
                a.boot_applications.as_ref(),
                b.boot_applications.as_ref(),
                sha,
            );
            d.allowed(
                "measured_boot.kernel_cmdlines",
                a.kernel_cmdlines.as_ref(),
                b.kernel_cmdlines.as_ref(),
                quoted,
            );
            let patterns = |p: &[super::measured_boot::Pattern]| -> BTreeSet<String> {
                p.iter().map(source).collect()
            };
            d.members(
                "measured_boot.kernel_cmdline_patterns",
                &patterns(&a.kernel_cmdline_patterns),
                &patterns(&b.kernel_cmdline_patterns),
                quoted,
            );
            match (&a.after_separator, &b.after_separator) {
                (None, None) => {}
                (Some(_), None) => d.push("measured_boot.after_separator", What::NoLongerJudged),
                (None, Some(_)) => d.push("measured_boot.after_separator", What::NowJudged),
                (Some(x), Some(y)) => {
                    let pcrs: BTreeSet<u32> = x.keys().chain(y.keys()).copied().collect();
                    let empty = BTreeSet::new();
                    for p in pcrs {
                        d.members(
                            &format!("measured_boot.after_separator.{p}"),
                            x.get(&p).unwrap_or(&empty),
                            y.get(&p).unwrap_or(&empty),
                            |t| format!("{t:#x}"),
                        );
                    }
                }
            }
            d.value(
                "measured_boot.allow_error_separators",
                Some(&a.allow_error_separators),
                Some(&b.allow_error_separators),
            );
        });
    }

    fn ima(&mut self, a: Option<&super::ima::ImaRules>, b: Option<&super::ima::ImaRules>) {
        self.section("ima", a, b, |d, a, b| {
            d.value("ima.pcr", Some(&a.pcr), Some(&b.pcr));
            let paths: BTreeSet<&str> = a.allowlist.keys().chain(b.allowlist.keys()).collect();
            let show = |s: &String| s.clone();
            let set = |x: Option<super::ima::Digests<'_>>| -> BTreeSet<String> {
                x.map(|x| {
                    x.iter()
                        .map(|(alg, bytes)| format!("{}:{}", alg.name(), hex::encode(bytes)))
                        .collect()
                })
                .unwrap_or_default()
            };
            for p in paths {
                let key = format!("ima.allowlist.{p:?}");
                match (a.allowlist.get(p), b.allowlist.get(p)) {
                    (Some(_), None) => d.push(&key, What::NoLongerJudged),
                    (x, y) => d.members(&key, &set(x), &set(y), show),
                }
            }
            d.value(
                "ima.boot_aggregate",
                Some(&a.boot_aggregate),
                Some(&b.boot_aggregate),
            );
            let names = |r: &super::ima::ImaRules| -> BTreeSet<String> {
                r.keyrings.names().map(str::to_string).collect()
            };
            d.members("ima.keyrings", &names(a), &names(b), quoted);
            for n in names(a).intersection(&names(b)) {
                if a.keyrings.texts(n) != b.keyrings.texts(n) {
                    d.push(
                        &format!("ima.keyrings.{n}.keys"),
                        What::Changed {
                            before: format!("{} keys", a.keyrings.texts(n).map_or(0, <[_]>::len)),
                            after: format!("{} keys", b.keyrings.texts(n).map_or(0, <[_]>::len)),
                        },
                    );
                }
            }
            let rules = |r: &super::ima::ImaRules| -> BTreeSet<String> {
                r.require_signature
                    .iter()
                    .map(|s| {
                        format!(
                            "paths [{}] by keyrings [{}]",
                            s.paths.iter().map(source).collect::<Vec<_>>().join(", "),
                            s.keyring_names.join(", ")
                        )
                    })
                    .collect()
            };
            d.members("ima.require_signature", &rules(a), &rules(b), quoted);
            let bufs: BTreeSet<&String> = a.buffers.keys().chain(b.buffers.keys()).collect();
            let empty = BTreeSet::new();
            let show_buf =
                |(alg, bytes): &(String, Vec<u8>)| format!("{alg}:{}", hex::encode(bytes));
            for n in bufs {
                d.members(
                    &format!("ima.buffers.{n:?}"),
                    a.buffers.get(n).unwrap_or(&empty),
                    b.buffers.get(n).unwrap_or(&empty),
                    show_buf,
                );
            }
            let excl = |r: &super::ima::ImaRules| -> BTreeSet<String> {
                r.excludes.iter().map(source).collect()
            };
            d.members("ima.excludes", &excl(a), &excl(b), quoted);
        });
    }

    fn containers(
        &mut self,
        a: Option<&super::containers::ContainerRules>,
        b: Option<&super::containers::ContainerRules>,
    ) {
        self.section("containers", a, b, |d, a, b| {
            d.value("containers.pcr", Some(&a.pcr), Some(&b.pcr));
            match (&a.runtime, &b.runtime) {
                (None, None) => {}
                (Some(_), None) => d.push("containers.runtime", What::NoLongerJudged),
                (None, Some(_)) => d.push("containers.runtime", What::NowJudged),
                (Some(x), Some(y)) => {
                    let files: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
                    let empty = BTreeSet::new();
                    for f in files {
                        d.members(
                            &format!("containers.runtime.{f:?}"),
                            x.get(f).unwrap_or(&empty),
                            y.get(f).unwrap_or(&empty),
                            sha,
                        );
                    }
                }
            }
            d.allowed(
                "containers.allowed_images",
                a.allowed_images.as_ref(),
                b.allowed_images.as_ref(),
                String::clone,
            );
            let repos = |r: &Option<Vec<String>>| {
                r.as_ref()
                    .map(|v| v.iter().cloned().collect::<BTreeSet<_>>())
            };
            d.allowed(
                "containers.allowed_repositories",
                repos(&a.allowed_repositories).as_ref(),
                repos(&b.allowed_repositories).as_ref(),
                quoted,
            );
            d.members(
                "containers.denied_images",
                &a.denied_images,
                &b.denied_images,
                String::clone,
            );
            d.value(
                "containers.require_measured_starts",
                Some(&a.require_measured_starts),
                Some(&b.require_measured_starts),
            );
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "0000000000000000000000000000000000000000000000000000000000000000";
    const B: &str = "1111111111111111111111111111111111111111111111111111111111111111";
    const C: &str = "2222222222222222222222222222222222222222222222222222222222222222";

    fn p(text: &str) -> Policy {
        Policy::parse("test.toml", text).unwrap()
    }

    fn lines(a: &str, b: &str) -> Vec<String> {
        diff(&p(a), &p(b)).iter().map(|c| c.to_string()).collect()
    }

    #[test]
    fn ima_signature_rules_buffers_and_boot_aggregate_changes_are_listed() {
        let cert = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/ima-sig/rsa2048.cert.pem"
        ))
        .unwrap();
        let a = "schema = 1\nname = \"w\"\n[ima]\n".to_string();
        let b = format!(
            "schema = 1\nname = \"w\"\n[ima]\nboot_aggregate = false\n[ima.keyrings.distro]\nkeys = ['''{cert}''']\n\
             [[ima.require_signature]]\npaths = ['/usr/bin/.*']\n[ima.buffers]\n\"kexec-cmdline\" = [\"sha256:{A}\"]\n"
        );
        let lines: Vec<String> = diff(&p(&a), &p(&b)).iter().map(|c| c.to_string()).collect();
        for want in [
            "ima.boot_aggregate: true → false".to_string(),
            "ima.keyrings: + \"distro\"".to_string(),
            "ima.require_signature: + \"paths [/usr/bin/.*] by keyrings [distro]\"".to_string(),
            format!("ima.buffers.\"kexec-cmdline\": + sha256:{A}"),
        ] {
            assert!(lines.contains(&want), "{want:?} not in {lines:#?}");
        }
    }

    #[test]
    fn the_same_policy_has_no_difference_and_metadata_is_told_apart() {
        let t = format!("schema = 1\nname = \"web\"\n[pcrs.sha256]\n7 = \"{A}\"\n");
        assert!(diff(&p(&t), &p(&t)).is_empty());
        let renamed = t.replace("\"web\"", "\"web2\"");
        let d = diff(&p(&t), &p(&renamed));
        assert_eq!(d.len(), 1);
        assert!(is_metadata(&d[0]));
        assert_eq!(d[0].to_string(), "name: web → web2");
    }

    #[test]
    fn golden_pcrs_are_compared_index_by_index() {
        let a = format!("schema = 1\nname = \"w\"\n[pcrs.sha256]\n0 = \"{A}\"\n7 = \"{A}\"\n");
        let b = format!("schema = 1\nname = \"w\"\n[pcrs.sha256]\n7 = \"{B}\"\n9 = \"{C}\"\n");
        assert_eq!(
            lines(&a, &b),
            [
                format!("pcrs.sha256.0: {A} → (not set)"),
                format!("pcrs.sha256.7: {A} → {B}"),
                format!("pcrs.sha256.9: (not set) → {C}"),
            ]
        );
    }

    #[test]
    fn allowed_sets_say_what_was_added_and_removed_and_sections_coming_and_going() {
        let a = format!(
            "schema = 1\nname = \"w\"\n[measured_boot]\npcrs = [4, 7, 8]\nsecure_boot = true\n\
             boot_applications = [\"sha256:{A}\", \"sha256:{B}\"]\n\
             kernel_cmdlines = [\"console=ttyS0 root=/dev/vda1\"]\n\
             [ima]\npcr = 10\nexcludes = []\n[ima.allowlist]\n\"/usr/bin/bash\" = [\"sha256:{A}\"]\n"
        );
        let b = format!(
            "schema = 1\nname = \"w\"\n[measured_boot]\npcrs = [4, 7, 8]\nsecure_boot = true\n\
             boot_applications = [\"sha256:{B}\", \"sha256:{C}\"]\n\
             [ima]\npcr = 10\nexcludes = [\"/tmp/.*\"]\n[ima.allowlist]\n\"/usr/bin/bash\" = [\"sha256:{B}\"]\n\
             \"/usr/bin/ls\" = [\"sha256:{C}\"]\n\
             [containers]\npcr = 13\nallowed_images = [\"sha256:{A}\"]\n"
        );
        assert_eq!(
            lines(&a, &b),
            [
                format!("measured_boot.boot_applications: - sha256:{A}"),
                format!("measured_boot.boot_applications: + sha256:{C}"),
                "measured_boot.kernel_cmdlines: no longer judged".to_string(),
                format!("ima.allowlist.\"/usr/bin/bash\": - sha256:{A}"),
                format!("ima.allowlist.\"/usr/bin/bash\": + sha256:{B}"),
                format!("ima.allowlist.\"/usr/bin/ls\": + sha256:{C}"),
                "ima.excludes: + \"/tmp/.*\"".to_string(),
                "containers: now judged".to_string(),
            ]
        );
        // And back: every line reversed.
        let back = lines(&b, &a);
        assert!(
            back.contains(&format!("measured_boot.boot_applications: + sha256:{A}")),
            "{back:?}"
        );
        assert!(
            back.contains(&"containers: no longer judged".to_string()),
            "{back:?}"
        );
        assert!(
            back.contains(&"ima.allowlist.\"/usr/bin/ls\": no longer judged".to_string()),
            "{back:?}"
        );
        let now = lines(
            "schema = 1\nname = \"w\"\n[measured_boot]\npcrs = [4, 7, 8]\nsecure_boot = true\n",
            "schema = 1\nname = \"w\"\n[measured_boot]\npcrs = [4, 7, 8]\nsecure_boot = true\nkernel_cmdlines = [\"quiet\"]\n",
        );
        assert_eq!(
            now,
            [
                "measured_boot.kernel_cmdlines: now judged",
                "measured_boot.kernel_cmdlines: + \"quiet\""
            ]
        );
    }
}
