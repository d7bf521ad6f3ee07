//! `policy import-keylime FILE`: a Keylime runtime policy (JSON, Keylime
//! 7.14) as an Assay policy with an `[ima]` section.
//!
//! | Keylime | Assay |
//! | --- | --- |
//! | `digests` (path → bare hex) | `[ima.allowlist]` (`sha1:`/`sha256:`/`sha384:`/`sha512:` by length); `boot_aggregate` per `--boot-aggregate` |
//! | `excludes` (Python `re`, `re.match`) | `excludes`, rewritten with the same meaning (`pyregex.rs`) |
//! | `keyrings`, `ima-buf` (name → digests) | `[ima.buffers]` |
//! | `verification-keys` (JSON text) | `[ima.keyrings.keylime] keys` (PEM) |
//! | `meta`, `release` | `description`, `version` |
//! | `ima.ignored_keyrings`, `ima.log_hash_alg` | warnings (no equivalent) |
//! | `ima.dm_policy` | refused unless null |
//!
//! [`convert`] is a pure function of the bytes: it refuses what Keylime's
//! schema refuses and what Assay cannot say with the same meaning, and lists,
//! as warnings, every place where the meaning changes.

mod input;
mod keys;
mod pyregex;
mod render;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::fmt;
use std::path::PathBuf;

use anyhow::Context as _;

use super::output::out;

/// Largest runtime policy read, in bytes.
pub const MAX_INPUT_BYTES: usize = 1 << 30;

#[derive(clap::Args)]
pub struct ImportArgs {
    /// The Keylime runtime policy: JSON as Keylime 7.14 stores it, or a DSSE
    /// envelope holding one (its signature is not checked).
    file: PathBuf,
    /// Write the Assay policy to this file [default: standard output].
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// The policy's `name` [default: the file's name without its extension].
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// How the IMA log's `boot_aggregate` entry is judged: `recompute` writes
    /// `boot_aggregate = true` (the digest of the quoted PCRs 0-9, as Keylime
    /// computes it from a measured-boot log); `allowlist` writes
    /// `boot_aggregate = false` and Keylime's listed values (Keylime without a
    /// measured-boot log); `omit` writes the listed values and no key (for
    /// verifiers older than the key; newer ones then also recompute it).
    #[arg(long, value_enum, value_name = "MODE", default_value_t = BootAggregate::Recompute)]
    boot_aggregate: BootAggregate,
}

/// `--boot-aggregate`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BootAggregate {
    Recompute,
    Allowlist,
    Omit,
}

/// What [`convert`] is told besides the bytes.
pub struct Options<'a> {
    /// The policy's `name`.
    pub name: &'a str,
    /// The input's file name, for the description.
    pub source: &'a str,
    pub boot_aggregate: BootAggregate,
}

/// An imported policy.
#[derive(Debug)]
pub struct Converted {
    /// The Assay policy file.
    pub toml: String,
    /// Where the meaning changes, for a person to read.
    pub warnings: Vec<String>,
    pub paths: usize,
    pub digests: usize,
    pub excludes: usize,
    pub buffers: usize,
    pub keys: usize,
    /// Keys the policy uses that verifiers read only from the `[ima]`
    /// extension on (`boot_aggregate`, `[ima.buffers]`, `[ima.keyrings]`).
    pub extension_keys: Vec<&'static str>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("the runtime policy is {len} bytes, more than the {max}-byte limit")]
    TooLarge { len: usize, max: usize },
    #[error("not a Keylime runtime policy: {0}")]
    Json(String),
    #[error("DSSE envelope: {0}")]
    Envelope(String),
    #[error("Keylime's RUNTIME_POLICY_SCHEMA refuses it: {0}")]
    Schema(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("`{at}`: {reason}")]
    Digest { at: String, reason: String },
    #[error("excludes[{index}] {pattern:?}: {reason}")]
    Exclude {
        index: usize,
        pattern: String,
        reason: String,
    },
    #[error("verification-keys: {0}")]
    Keys(String),
}

/// Converts a Keylime runtime policy into an Assay policy file.
pub fn convert(json: &[u8], opts: &Options) -> Result<Converted, ImportError> {
    convert_capped(json, opts, MAX_INPUT_BYTES)
}

/// [`convert`] with another input cap.
fn convert_capped(json: &[u8], opts: &Options, max: usize) -> Result<Converted, ImportError> {
    if json.len() > max {
        return Err(ImportError::TooLarge {
            len: json.len(),
            max,
        });
    }
    let mut scratch = Vec::new();
    let policy = input::parse(json, &mut scratch)?;
    let mut warnings = general_warnings(&policy);
    let mut allow = allowlist(policy.digests, &mut warnings)?;
    let boot_at = allow
        .binary_search_by(|(p, _)| p.as_ref().cmp(ima_boot_aggregate()))
        .ok();
    let listed = boot_at
        .and_then(|i| allow.get(i))
        .map(|(_, d)| d.as_slice());
    let boot = boot_aggregate(opts.boot_aggregate, listed, &mut warnings);
    if let (Some(i), false) = (boot_at, boot.keep_listed) {
        allow.remove(i);
    }
    let excludes = excludes(&policy.excludes, &mut warnings)?;
    let buffers = buffers(
        policy.keyrings,
        policy.ima_buf,
        &policy.ignored_keyrings,
        &mut warnings,
    )?;
    let keys = keys::convert(&policy.verification_keys).map_err(ImportError::Keys)?;
    warnings.extend(keys.warnings);
    let mut extension_keys = Vec::new();
    if boot.key.is_some() {
        extension_keys.push("boot_aggregate");
    }
    if !buffers.is_empty() {
        extension_keys.push("[ima.buffers]");
    }
    if !keys.pems.is_empty() {
        extension_keys.push("[ima.keyrings]");
    }
    let header = render::Header {
        name: opts.name,
        source: opts.source,
        meta_version: policy.meta_version,
        generator: policy.generator,
        timestamp: policy.timestamp.as_deref(),
        release: policy.release,
    };
    let toml = render::policy(
        &header,
        boot.key,
        &excludes,
        &allow,
        &buffers,
        &keys.pems,
        json.len(),
    );
    Ok(Converted {
        toml,
        warnings,
        paths: allow.len(),
        digests: allow.iter().map(|(_, d)| d.len()).sum(),
        excludes: excludes.len(),
        buffers: buffers.len(),
        keys: keys.pems.len(),
        extension_keys,
    })
}

fn ima_boot_aggregate() -> &'static str {
    assay_core::policy::ima::BOOT_AGGREGATE
}

/// Warnings about the policy as a whole.
fn general_warnings(p: &input::RuntimePolicy) -> Vec<String> {
    let mut w = Vec::new();
    if p.from_envelope {
        w.push(
            "the policy was unwrapped from a DSSE envelope whose signature was not checked: \
             check it with Keylime first, and sign the Assay policy (`policy sign`)"
                .into(),
        );
    }
    if !p.unknown_keys.is_empty() {
        w.push(format!(
            "top-level keys {:?} are not Keylime 7.14 runtime-policy keys: ignored, as Keylime ignores them",
            p.unknown_keys
        ));
    }
    if !p.repeated_keys.is_empty() {
        w.push(format!(
            "top-level keys {:?} are given more than once: the last of each is used, as Python's json does",
            p.repeated_keys
        ));
    }
    if p.meta_version != 1 {
        w.push(format!(
            "meta.version is {}: Keylime 7.14 writes and reads version 1, which this import follows",
            p.meta_version
        ));
    }
    if p.log_hash_alg != "sha1" {
        w.push(format!(
            "ima.log_hash_alg is {}: Keylime checks every entry's template hash with it; Assay \
             takes the template-hash algorithm from the log itself, so a log whose template \
             hashes use another algorithm fails in Keylime and can pass in Assay",
            p.log_hash_alg
        ));
    }
    w
}

/// `digests` → `[ima.allowlist]`: sorted by path, the last of a repeated path
/// kept (as Python's json does), relative paths dropped.
fn allowlist<'a>(
    mut digests: input::Digests<'a>,
    warnings: &mut Vec<String>,
) -> Result<Rows<'a>, ImportError> {
    sort_keep_last(&mut digests, "digests", warnings);
    let mut out = Vec::with_capacity(digests.len());
    let mut relative = Vec::new();
    for (path, list) in digests {
        let path = path.0;
        if !path.starts_with('/') && path != ima_boot_aggregate() {
            relative.push(path.into_owned());
            continue;
        }
        let list = assay_digests(list, "digests", &path)?;
        out.push((path, list));
    }
    if out.iter().any(|(p, _)| p != ima_boot_aggregate()) {
        warnings.push(
            "Keylime compares a measurement's digest with the listed hex alone; Assay compares \
             algorithm and digest (the algorithm given by the length: 40 hex sha1, 64 sha256, 96 \
             sha384, 128 sha512): a file measured with another algorithm of that length (sm3, \
             sha3-256, streebog, …) and the same hex passes Keylime and fails Assay"
                .into(),
        );
    }
    if !relative.is_empty() {
        warnings.push(format!(
            "digests: {} names are not absolute paths and are left out ({}): Assay's allowlist \
             holds absolute paths and boot_aggregate only, so such a measurement, which Keylime \
             accepts, fails in Assay unless excluded",
            relative.len(),
            examples(&relative)
        ));
    }
    Ok(out)
}

/// Sorts by name, keeping the last entry of each name (stable sort), in place.
fn sort_keep_last(entries: &mut input::Digests, what: &str, warnings: &mut Vec<String>) {
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let before = entries.len();
    // After a stable sort, the last of equal names is the last given: the one
    // kept takes its value.
    entries.dedup_by(|later, kept| {
        let same = later.0 == kept.0;
        if same {
            std::mem::swap(later, kept);
        }
        same
    });
    if entries.len() < before {
        warnings.push(format!(
            "{what}: {} names are given more than once; the last of each is used, as Python's json does",
            before - entries.len()
        ));
    }
}

/// A digest as Assay writes it, `alg:hex`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AssayDigest<'a> {
    alg: &'static str,
    hex: Cow<'a, str>,
}

impl fmt::Display for AssayDigest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.alg, self.hex)
    }
}

/// Name → digests, sorted by name, borrowed from the input where it can be.
type Rows<'a> = Vec<(Cow<'a, str>, Vec<AssayDigest<'a>>)>;

/// Keylime's bare hex as Assay's `alg:hex`, duplicates dropped.
fn assay_digests<'a>(
    list: Vec<input::Text<'a>>,
    what: &str,
    name: &str,
) -> Result<Vec<AssayDigest<'a>>, ImportError> {
    let mut out: Vec<AssayDigest<'a>> = Vec::with_capacity(list.len());
    for (i, d) in list.into_iter().enumerate() {
        let alg = match d.0.len() {
            40 => "sha1",
            64 => "sha256",
            96 => "sha384",
            128 => "sha512",
            n => {
                let n = if d.0.ends_with('\n') {
                    "a final newline".to_string()
                } else {
                    format!("{n} hex digits")
                };
                return Err(ImportError::Digest {
                    at: format!("{what}.{name:?}[{i}]"),
                    reason: format!(
                        "{:?} has {n}: no digest has that length (sha1 40, sha256 64, sha384 96, \
                         sha512 128). Keylime accepts it, but no measurement can match it; fix or \
                         remove it",
                        d.0
                    ),
                });
            }
        };
        let digest = AssayDigest { alg, hex: d.0 };
        if !out.contains(&digest) {
            out.push(digest);
        }
    }
    Ok(out)
}

/// What `--boot-aggregate` writes.
struct Boot {
    /// `boot_aggregate = …` under `[ima]`, if written.
    key: Option<bool>,
    /// Whether Keylime's listed values stay in the allowlist.
    keep_listed: bool,
}

fn boot_aggregate(
    mode: BootAggregate,
    listed: Option<&[AssayDigest]>,
    warnings: &mut Vec<String>,
) -> Boot {
    let none_listed = "the policy lists no boot_aggregate digest: the IMA log's first entry \
                       (boot_aggregate) fails unless an exclude matches it, as in Keylime \
                       without a measured-boot log";
    match mode {
        BootAggregate::Recompute => {
            if let Some(values) = listed {
                warnings.push(format!(
                    "digests.boot_aggregate lists {}: with `boot_aggregate = true` Assay accepts \
                     only the digest of the quoted PCRs 0-9, where Keylime accepts a listed \
                     value; --boot-aggregate allowlist keeps the listed values instead",
                    values
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            Boot {
                key: Some(true),
                keep_listed: false,
            }
        }
        BootAggregate::Allowlist => {
            if listed.is_none() {
                warnings.push(none_listed.into());
            }
            Boot {
                key: Some(false),
                keep_listed: true,
            }
        }
        BootAggregate::Omit => {
            warnings.push(format!(
                "--boot-aggregate omit: no `boot_aggregate` key is written; a verifier that reads \
                 it defaults to true, recomputing the entry from the quoted PCRs 0-9 and \
                 requiring the listed values too{}",
                if listed.is_none() {
                    format!("; an older one judges it by the allowlist alone, and {none_listed}")
                } else {
                    String::new()
                }
            ));
            Boot {
                key: None,
                keep_listed: true,
            }
        }
    }
}

/// An exclude: Keylime's pattern and its Assay form.
struct Exclude {
    keylime: String,
    assay: String,
}

/// `excludes` rewritten, each compiled as the verifier compiles it.
fn excludes(patterns: &[String], warnings: &mut Vec<String>) -> Result<Vec<Exclude>, ImportError> {
    let mut out = Vec::with_capacity(patterns.len());
    let mut names: Vec<(String, usize)> = Vec::new();
    let mut boundary = Vec::new();
    let mut caseless = Vec::new();
    for (index, pattern) in patterns.iter().enumerate() {
        let refuse = |reason: String| ImportError::Exclude {
            index,
            pattern: pattern.clone(),
            reason,
        };
        let t = pyregex::translate(pattern).map_err(refuse)?;
        for name in &t.group_names {
            if let Some((_, first)) = names.iter().find(|(n, _)| n == name) {
                return Err(refuse(format!(
                    "group name {name:?} is also used by excludes[{first}]: Keylime joins the \
                     excludes into one Python regex, which refuses a name twice, so Keylime \
                     would ignore every exclude"
                )));
            }
            names.push((name.clone(), index));
        }
        // As assay_core::policy compiles it: anchored, size-limited.
        let re = regex::RegexBuilder::new(&format!("^(?:{})$", t.regex))
            .size_limit(1 << 20)
            .build()
            .map_err(|e| {
                refuse(format!(
                    "its Assay form `{}` does not compile with the regex crate: {e}",
                    t.regex
                ))
            })?;
        if re.is_match("") && re.is_match("/assay/import/probe") {
            warnings.push(format!(
                "excludes[{index}] {pattern:?} matches an empty prefix: Keylime (re.match) then \
                 excludes every path, and so does its Assay form"
            ));
        }
        if t.word_boundary {
            boundary.push(index);
        }
        if t.case_insensitive {
            caseless.push(index);
        }
        out.push(Exclude {
            keylime: pattern.clone(),
            assay: t.regex,
        });
    }
    if !boundary.is_empty() {
        warnings.push(format!(
            "excludes {boundary:?} use \\b or \\B: word boundaries agree with Python on ASCII, \
             and may differ next to non-ASCII marks and numerals"
        ));
    }
    if !caseless.is_empty() {
        warnings.push(format!(
            "excludes {caseless:?} ignore case: Python and the regex crate fold case alike on \
             ASCII, and differently for a few non-ASCII letters (such as U+0130)"
        ));
    }
    Ok(out)
}

/// `keyrings` and `ima-buf` → `[ima.buffers]` (name → `alg:hex`), merged
/// in one pass over both sorted lists.
fn buffers<'a>(
    mut keyrings: input::Digests<'a>,
    mut ima_buf: input::Digests<'a>,
    ignored: &[String],
    warnings: &mut Vec<String>,
) -> Result<Rows<'a>, ImportError> {
    use std::cmp::Ordering;
    sort_keep_last(&mut keyrings, "keyrings", warnings);
    sort_keep_last(&mut ima_buf, "ima-buf", warnings);
    warnings.push(
        "ima-buf entries: Keylime fails one whose name keyrings (for a key) or ima-buf (for \
         anything else) does not list, unless excluded; Assay judges only the names \
         [ima.buffers] lists and passes the others"
            .into(),
    );
    if !keyrings.is_empty() {
        warnings.push(
            "keyrings: Keylime also trusts a key measured into a listed keyring to verify later \
             ima-sig signatures; Assay trusts only the keys under [ima.keyrings]"
                .into(),
        );
    }
    let all = ignored.iter().any(|k| k == "*");
    let judged_anyway: Vec<String> = keyrings
        .iter()
        .map(|(n, _)| n.0.to_string())
        .filter(|n| all || ignored.contains(n))
        .collect();
    if !judged_anyway.is_empty() {
        warnings.push(format!(
            "ima.ignored_keyrings {ignored:?}: Keylime accepts any key measured into keyrings \
             {}, which the policy also lists; Assay judges them by the listed digests",
            examples(&judged_anyway)
        ));
    }
    let mut out: Rows<'a> = Vec::with_capacity(keyrings.len() + ima_buf.len());
    let mut both = Vec::new();
    let mut k = keyrings.into_iter().peekable();
    let mut b = ima_buf.into_iter().peekable();
    loop {
        let order = match (k.peek(), b.peek()) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some(x), Some(y)) => x.0.cmp(&y.0),
        };
        let row = match order {
            Ordering::Less => k.next().map(|(n, d)| (n, d, "keyrings")),
            Ordering::Greater => b.next().map(|(n, d)| (n, d, "ima-buf")),
            Ordering::Equal => match (k.next(), b.next()) {
                (Some((n, mut d)), Some((_, more))) => {
                    both.push(n.0.to_string());
                    d.extend(more);
                    Some((n, d, "keyrings and ima-buf"))
                }
                _ => None,
            },
        };
        let Some((name, list, what)) = row else { break };
        let list = assay_digests(list, what, &name.0)?;
        out.push((name.0, list));
    }
    if !both.is_empty() {
        warnings.push(format!(
            "{} names are in both keyrings and ima-buf ({}): Keylime judges a key buffer by \
             keyrings and any other buffer by ima-buf; Assay allows either list's digests",
            both.len(),
            examples(&both)
        ));
    }
    Ok(out)
}

/// The first few of `items`, quoted.
fn examples(items: &[String]) -> String {
    let mut s: Vec<String> = items.iter().take(5).map(|i| format!("{i:?}")).collect();
    if items.len() > 5 {
        s.push(format!("and {} more", items.len() - 5));
    }
    s.join(", ")
}

/// The command: read, convert, write, and say what changed meaning.
pub fn run(args: ImportArgs) -> anyhow::Result<()> {
    let file = &args.file;
    let bytes = assay_verifier::files::read_capped(file, MAX_INPUT_BYTES as u64)
        .with_context(|| format!("Keylime runtime policy {}", file.display()))?;
    let source = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| file.display().to_string());
    let name = match &args.name {
        Some(n) if n.trim().is_empty() => {
            return Err(super::Exit::Usage("--name must not be empty".into()).into())
        }
        Some(n) => n.clone(),
        None => file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| "keylime-import".into()),
    };
    let converted = convert(
        &bytes,
        &Options {
            name: &name,
            source: &source,
            boot_aggregate: args.boot_aggregate,
        },
    )
    .with_context(|| format!("{}", file.display()))?;
    drop(bytes);
    for w in &converted.warnings {
        eprintln!("warning: {w}");
    }
    self_check(&converted, &source);
    match &args.out {
        Some(path) => {
            if std::fs::canonicalize(path).ok() == std::fs::canonicalize(file).ok() {
                return Err(super::Exit::Usage(format!(
                    "--out {} is the input file",
                    path.display()
                ))
                .into());
            }
            std::fs::write(path, &converted.toml)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        None => out!("{}", converted.toml),
    }
    eprintln!(
        "imported {} paths ({} digests), {} excludes, {} buffers, {} keys into policy `{name}`{}",
        converted.paths,
        converted.digests,
        converted.excludes,
        converted.buffers,
        converted.keys,
        args.out
            .as_ref()
            .map(|p| format!(" ({})", p.display()))
            .unwrap_or_default()
    );
    Ok(())
}

/// Parses the output as the verifier will, and says what it finds: the
/// policy is over the size limit, or uses keys this build does not read.
fn self_check(c: &Converted, source: &str) {
    let max = assay_core::policy::MAX_POLICY_BYTES;
    if c.toml.len() > max {
        eprintln!(
            "warning: the policy is {} bytes, over the verifier's {max}-byte policy limit: \
             `policy validate` and `policy apply` refuse it; split the allowlist or lean on excludes",
            c.toml.len()
        );
        return;
    }
    if let Err(e) = assay_core::policy::Policy::parse(source, &c.toml) {
        let e = e.to_string();
        let unread = ["`boot_aggregate`", "`buffers`", "`keyrings`"]
            .iter()
            .any(|k| e.contains(&format!("unknown field {k}")));
        if unread && !c.extension_keys.is_empty() {
            eprintln!(
                "warning: the policy uses {}, which this verifier does not read yet \
                 (`policy validate` refuses it until it does)",
                c.extension_keys.join(", ")
            );
        } else {
            eprintln!("warning: the imported policy does not validate: {e}");
        }
    }
}
