//! Reference policies written from known-good nodes' evidence (`assay-verifier
//! policy generate`). The sections read the logs with the same fact extraction
//! the verifier judges with ([`crate::eventlog::facts`]), so a generated policy
//! passes the evidence it came from, and only that.
//!
//! [`generate`] writes one node's reference; [`generate_many`] writes one
//! policy that passes each of several nodes' evidence ("samples"):
//!
//! - A claim the schema can widen takes the union of the samples' values:
//!   allowed PK/KEK/db entries, CRTM versions, firmware blobs, boot
//!   applications and kernel command lines (when every sample's own reference
//!   judges the claim), the replayed PCRs, the events allowed after each
//!   separator, every IMA path's digests, container runtime files' digests and
//!   allowed images.
//! - `dbx_required` takes the entries every sample's dbx holds.
//! - A claim that holds one value (Secure Boot state, a golden PCR value,
//!   `ima.pcr`, `containers.pcr`), or a list claim that some samples' own
//!   reference does not make (the fact is missing or unproven in their log, so
//!   the claim would fail them), is left out when the samples differ: never is
//!   one sample's value picked.
//!
//! Every value on which the samples differ is reported as a [`Difference`],
//! with what the policy does about it ([`Outcome`]). Samples must carry the
//! same kinds of log (all a UEFI log or none, and so on): the kinds are not
//! mixed in one policy ([`ReferenceError::MixedLogs`]); golden `[pcrs.sha256]`
//! values are written only when no sample has any log.
//!
//! Pure like the rest of the core: log bytes and PCR values in, policy text out.

mod merge;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::eventlog::cel::{self, CelError, CelLog, Measurement};
use crate::eventlog::event_type::EV_SEPARATOR;
use crate::eventlog::facts;
use crate::eventlog::ima::{ImaError, ImaLog};
use crate::eventlog::uefi::{self, check_event_data, DataCheck, Event, EventLog, EventLogError};
use crate::tpm::public::HashAlg;

pub use merge::{DiffValue, Difference, Outcome};

/// Most samples [`generate_many`] merges into one policy.
pub const MAX_SAMPLES: usize = 10_000;

/// Why no reference policy was written.
///
/// The parse variants name the log; the parse error itself is the
/// [`source`](std::error::Error::source), so `{:#}` through `anyhow` reads
/// "UEFI event log: event 3 (byte offset 120): …". From [`generate_many`], an
/// error in one sample's evidence is a [`ReferenceError::Sample`] naming it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("UEFI event log")]
    UefiLog(#[source] EventLogError),
    #[error("IMA log")]
    ImaLog(#[source] ImaError),
    #[error("container measurement log")]
    CelLog(#[source] CelError),
    /// The UEFI log is not the one this TPM measured.
    #[error(
        "the UEFI log replays PCR {pcr} to {}, but the evidence reports {}: \
         the log is not the one this TPM measured; no reference policy from it",
        hex::encode(.replayed),
        hex::encode(.reported)
    )]
    ReplayMismatch {
        pcr: u32,
        replayed: Vec<u8>,
        reported: Vec<u8>,
    },
    /// Other samples' UEFI logs extend `pcr`, so the merged policy replays it,
    /// but this sample's log does not, and its evidence reports a value other
    /// than the one a PCR nothing extended holds.
    #[error(
        "other samples' UEFI logs extend PCR {pcr}, so a policy for all of them replays it, \
         but this sample's log does not extend it and its evidence reports {} instead of \
         the initial value {}: something was measured into PCR {pcr} outside the log; \
         no policy passes it together with the others",
        hex::encode(.reported),
        hex::encode(.initial)
    )]
    UnloggedPcr {
        pcr: u32,
        initial: Vec<u8>,
        reported: Vec<u8>,
    },
    /// An error in one sample's evidence ([`generate_many`]).
    #[error("sample {label}")]
    Sample {
        label: String,
        #[source]
        error: Box<ReferenceError>,
    },
    #[error("no evidence samples: a reference policy needs at least one")]
    NoSamples,
    #[error("{count} evidence samples: at most {max} are merged into one policy")]
    TooManySamples { count: usize, max: usize },
    /// Some samples carry a kind of log and others do not: a policy judging
    /// it fails the samples without it, and one leaving it out would not judge
    /// the others' logs.
    #[error(
        "the samples differ in the logs they carry: {log} in {} but not in {}; \
         generate one policy per kind of node",
        merge::label_list(.with),
        merge::label_list(.without)
    )]
    MixedLogs {
        log: &'static str,
        with: Vec<String>,
        without: Vec<String>,
    },
    /// The samples differ on every claim a policy could make from them, so a
    /// policy passing all of them would judge nothing.
    #[error(
        "the samples agree on no claim ({} differences): a policy passing all of them \
         would judge nothing",
        .differences.len()
    )]
    NothingInCommon { differences: Vec<Difference> },
}

/// One node's evidence, for [`generate_many`]: its logs and the sha256 PCR
/// values it reported, and a label naming it in differences and errors (a
/// bundle's path, a node id and record).
#[derive(Debug, Clone, Copy)]
pub struct Sample<'a> {
    pub label: &'a str,
    pub uefi_log: Option<&'a [u8]>,
    pub ima_log: Option<&'a [u8]>,
    pub cel_log: Option<&'a [u8]>,
    pub pcrs: &'a [(u32, Vec<u8>)],
}

/// A policy from [`generate_many`] and the values on which its samples differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    pub text: String,
    /// In policy file order; empty when the samples agree on every claim
    /// (the text is then [`generate`]'s for any one of them, but for notes
    /// that only some samples' logs give, which name those samples).
    pub differences: Vec<Difference>,
}

/// Whether a generated policy judges this PCR from the UEFI log: every PCR the
/// log extends except 10 (IMA) and 11 and 15-23, which systemd and user space
/// go on extending after boot without this log.
fn replayed_by_reference(pcr: u32) -> bool {
    matches!(pcr, 0..=9 | 12..=14)
}

/// A whole reference policy named `name`: `[measured_boot]`, `[ima]` and
/// `[containers]` for the logs given, or — with no log at all — golden
/// `[pcrs.sha256]` values from `pcrs` (the sha256 bank the node quoted).
///
/// A reference must be self-consistent: the UEFI log must replay to the values
/// in `pcrs` for every PCR the policy judges from it (0-9 and 12-14), or this
/// refuses with [`ReferenceError::ReplayMismatch`].
pub fn generate(
    name: &str,
    uefi_log: Option<&[u8]>,
    ima_log: Option<&[u8]>,
    cel_log: Option<&[u8]>,
    pcrs: &[(u32, Vec<u8>)],
) -> Result<String, ReferenceError> {
    let sample = Sample {
        label: "",
        uefi_log,
        ima_log,
        cel_log,
        pcrs,
    };
    match generate_many(name, &[sample]) {
        Ok(g) => Ok(g.text),
        Err(ReferenceError::Sample { error, .. }) => Err(*error),
        Err(e) => Err(e),
    }
}

/// One policy named `name` that passes each sample's evidence (see the module
/// documentation for how values are merged), with the values on which the
/// samples differ. One sample gives [`generate`]'s policy; so do samples whose
/// evidence is the same. Between 1 and [`MAX_SAMPLES`] samples, all carrying
/// the same kinds of log.
///
/// Each sample must be self-consistent as [`generate`] requires, and its log
/// must also explain the PCRs only other samples' logs extend (they hold their
/// initial value), or this refuses with [`ReferenceError::UnloggedPcr`]. A
/// PCR a sample does not report is not checked (the node quotes it when judged).
pub fn generate_many(name: &str, samples: &[Sample<'_>]) -> Result<Generated, ReferenceError> {
    if samples.is_empty() {
        return Err(ReferenceError::NoSamples);
    }
    if samples.len() > MAX_SAMPLES {
        return Err(ReferenceError::TooManySamples {
            count: samples.len(),
            max: MAX_SAMPLES,
        });
    }
    type Has = fn(&Sample<'_>) -> bool;
    let kinds: [(&'static str, Has); 3] = [
        ("a UEFI event log", |s| s.uefi_log.is_some()),
        ("an IMA log", |s| s.ima_log.is_some()),
        ("a container measurement log", |s| s.cel_log.is_some()),
    ];
    for (log, has) in kinds {
        let (with, without): (Vec<&Sample<'_>>, Vec<&Sample<'_>>) =
            samples.iter().partition(|s| has(s));
        if !with.is_empty() && !without.is_empty() {
            let labels = |v: Vec<&Sample<'_>>| v.iter().map(|s| s.label.to_string()).collect();
            return Err(ReferenceError::MixedLogs {
                log,
                with: labels(with),
                without: labels(without),
            });
        }
    }
    merge::merge(name, samples)
}

/// The policy's opening lines, down to `version`.
fn header(name: &str, merged_from: Option<usize>) -> String {
    let about = match merged_from {
        None => "# Reference policy generated by `assay-verifier policy generate` from a known-good\n\
                 # node's evidence. It allows exactly what that node booted: review it, then widen\n\
                 # lists (e.g. more boot applications or kernel command lines) as the fleet needs.\n"
            .to_string(),
        Some(n) => format!(
            "# Reference policy generated by `assay-verifier policy generate` from {n} known-good\n\
             # nodes' evidence. Where a claim lists values it allows any of theirs; claims on\n\
             # which they differ and that cannot list several values are left out (see the\n\
             # notes). Review it, then widen lists as the fleet needs.\n"
        ),
    };
    format!(
        "{about}schema = 1\nname = {}\nversion = \"1\"\n",
        toml_str(name)
    )
}

/// `s` as a TOML string value (quoted and escaped as `toml` writes it).
pub fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// `s` fit for a TOML comment: one line, no control characters (a log's text
/// must not end the comment and write policy lines of its own).
fn comment(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() && c != '\t' { ' ' } else { c })
        .collect()
}

fn sha256_of(e: &Event) -> Option<String> {
    e.digest(HashAlg::Sha256)
        .map(|d| format!("sha256:{}", hex::encode(d)))
}

fn list<'s, I: IntoIterator<Item = &'s String>>(items: I) -> String {
    let items: Vec<String> = items
        .into_iter()
        .map(|s| format!("  {},\n", toml_str(s)))
        .collect();
    if items.is_empty() {
        "[]".to_string()
    } else {
        format!("[\n{}]", items.concat())
    }
}

fn event_name(e: &Event) -> String {
    uefi::event_type_name(e.event_type)
        .map_or_else(|| format!("{:#x}", e.event_type), str::to_string)
}

/// The signature database keys of `[measured_boot]` and the variables they
/// judge, in the order they are written.
const SIGNATURE_DBS: [(&str, &str); 4] = [
    ("pk", "PK"),
    ("kek", "KEK"),
    ("db", "db"),
    ("dbx_required", "dbx"),
];

/// What a UEFI log shows, as `[measured_boot]` writes it down.
#[derive(Debug, Default)]
struct BootFacts {
    /// The PCRs the log extends that a reference replays.
    pcrs: BTreeSet<u32>,
    secure_boot: Option<bool>,
    /// [`SIGNATURE_DBS`]' entries: (`sha256:<hex>`, what it is), once each,
    /// in log order; `None` when the key is not written.
    signature_dbs: [Option<Vec<(String, String)>>; 4],
    crtm_versions: BTreeSet<String>,
    firmware_blobs: BTreeSet<String>,
    /// (`sha256:<hex>`, device path), once each, in log order.
    boot_applications: Vec<(String, String)>,
    kernel_cmdlines: BTreeSet<String>,
    /// Each PCR 0-7 with a separator: the event types after it.
    after_separator: BTreeMap<u32, BTreeSet<String>>,
    notes: Vec<String>,
}

fn boot_facts(log: &EventLog) -> BootFacts {
    let mut f = BootFacts::default();
    let mut notes = Vec::new();
    let proven = |e: &Event, what: &str, notes: &mut Vec<String>| -> bool {
        match check_event_data(e) {
            DataCheck::Verified => true,
            DataCheck::Mismatch { bank } => {
                notes.push(format!(
                    "{what}: event #{} ({}) data does not match its {bank} digest; not used",
                    e.num,
                    event_name(e)
                ));
                false
            }
            DataCheck::NotDigestOfData => {
                notes.push(format!(
                    "{what}: event #{} ({}) is not a digest of its data; not used",
                    e.num,
                    event_name(e)
                ));
                false
            }
        }
    };
    f.pcrs = log
        .events
        .iter()
        .filter(|e| !e.is_no_action() && replayed_by_reference(e.pcr))
        .map(|e| e.pcr)
        .collect();

    if let Some((e, v)) = facts::config_variable(log, "SecureBoot") {
        if proven(e, "secure_boot", &mut notes) {
            f.secure_boot = facts::secure_boot_state(&v.value);
        }
    }
    for ((key, var), out) in SIGNATURE_DBS.iter().zip(f.signature_dbs.iter_mut()) {
        let Some((e, v)) = facts::config_variable(log, var) else {
            continue;
        };
        if !proven(e, key, &mut notes) {
            continue;
        }
        let Some(entries) = facts::signature_entries(&v.value) else {
            continue;
        };
        if entries.is_empty() {
            // An empty PK/KEK/db cannot be allowed by a list (the claim needs entries).
            notes.push(format!("{key}: {var} is empty on this node"));
            continue;
        }
        let mut seen = BTreeSet::new();
        *out = Some(
            entries
                .into_iter()
                .filter(|(fp, _)| seen.insert(*fp))
                .map(|(fp, what)| (format!("sha256:{}", hex::encode(fp)), what))
                .collect(),
        );
    }

    f.crtm_versions = facts::crtm_versions(log)
        .into_iter()
        .filter(|(e, _)| proven(e, "crtm_versions", &mut notes))
        .filter_map(|(_, v)| v.ok())
        .collect();
    f.firmware_blobs = log
        .events
        .iter()
        .filter(|e| facts::is_firmware_blob(e))
        .filter_map(sha256_of)
        .collect();
    let mut seen = BTreeSet::new();
    for e in log.events.iter().filter(|e| facts::is_boot_application(e)) {
        if let Some(d) = sha256_of(e) {
            if seen.insert(d.clone()) {
                let path = facts::image_path(e).unwrap_or_else(|| "no device path".to_string());
                f.boot_applications.push((d, path));
            }
        }
    }
    f.kernel_cmdlines = facts::kernel_cmdlines(log)
        .into_iter()
        .filter(|(e, _)| proven(e, "kernel_cmdlines", &mut notes))
        .map(|(_, c)| c)
        .collect();
    let errors = log
        .events
        .iter()
        .filter(|e| e.event_type == EV_SEPARATOR && e.data != [0, 0, 0, 0])
        .count();
    if errors > 0 {
        notes.push(format!(
            "allow_error_separators: this node logged {errors} non-zero separator(s); set it to true only if that is expected"
        ));
    }
    let mut after: BTreeMap<u32, BTreeSet<String>> = BTreeMap::new();
    for (e, _) in facts::after_separator(log) {
        after.entry(e.pcr).or_default().insert(event_name(e));
    }
    for pcr in log
        .events
        .iter()
        .filter(|e| e.event_type == EV_SEPARATOR && e.pcr <= 7)
        .map(|e| e.pcr)
        .collect::<BTreeSet<u32>>()
    {
        let types = after.remove(&pcr).unwrap_or_default();
        f.after_separator.insert(pcr, types);
    }
    f.notes = notes;
    f
}

/// `[measured_boot]` as [`BootFacts`] say; `merged`: they are several logs'.
fn render_boot(f: &BootFacts, merged: bool) -> String {
    let mut out = String::from("\n[measured_boot]\n");
    let pcrs: Vec<String> = f.pcrs.iter().map(u32::to_string).collect();
    let _ = writeln!(
        out,
        "# PCRs {} (10, 11 and 15-23 are extended after boot outside it)\npcrs = [{}]",
        if merged {
            "these logs extend"
        } else {
            "this log extends"
        },
        pcrs.join(", ")
    );
    if let Some(on) = f.secure_boot {
        let _ = writeln!(out, "secure_boot = {on}");
    }
    for ((key, _), entries) in SIGNATURE_DBS.iter().zip(&f.signature_dbs) {
        let Some(entries) = entries else {
            continue;
        };
        let _ = writeln!(out, "{key} = [");
        for (fp, what) in entries {
            let _ = writeln!(out, "  {},  # {}", toml_str(fp), comment(what));
        }
        out.push_str("]\n");
    }
    if !f.crtm_versions.is_empty() {
        let _ = writeln!(out, "crtm_versions = {}", list(&f.crtm_versions));
    }
    if !f.firmware_blobs.is_empty() {
        let _ = writeln!(out, "firmware_blobs = {}", list(&f.firmware_blobs));
    }
    if !f.boot_applications.is_empty() {
        out.push_str("boot_applications = [\n");
        for (d, path) in &f.boot_applications {
            let _ = writeln!(out, "  {},  # {}", toml_str(d), comment(path));
        }
        out.push_str("]\n");
    }
    if !f.kernel_cmdlines.is_empty() {
        let _ = writeln!(out, "kernel_cmdlines = {}", list(&f.kernel_cmdlines));
    }
    out.push_str("\n[measured_boot.after_separator]\n");
    for (pcr, types) in &f.after_separator {
        let types: Vec<String> = types.iter().map(|t| toml_str(t)).collect();
        let _ = writeln!(out, "\"{pcr}\" = [{}]", types.join(", "));
    }
    if !f.notes.is_empty() {
        out.push_str("# Notes from generation:\n");
        for n in &f.notes {
            let _ = writeln!(out, "# - {}", comment(n));
        }
    }
    out
}

/// `[measured_boot]` for this log: everything it shows, as the verifier reads it.
/// Facts from events whose data does not match their digest are left out, with
/// a comment saying so.
pub fn measured_boot_section(log: &EventLog) -> String {
    render_boot(&boot_facts(log), false)
}

/// What an IMA log shows, as `[ima]` writes it down.
#[derive(Debug, Default)]
struct ImaFacts {
    pcr: u32,
    /// Path → the digests it was measured with (`alg:<hex>`).
    files: BTreeMap<String, BTreeSet<String>>,
    notes: Vec<String>,
    /// Why the boot_aggregate cannot be recomputed from the quoted PCRs
    /// (then it is pinned in the allowlist instead); None: it can.
    aggregate_problem: Option<String>,
}

/// [`ima_facts`], with whether the log's boot_aggregate recomputes from the
/// sample's quoted PCRs.
fn ima_facts_quoted(log: &ImaLog, pcrs: &[(u32, Vec<u8>)]) -> ImaFacts {
    let mut f = ima_facts(log);
    f.aggregate_problem = crate::verify::boot_aggregate_check(log, pcrs).err();
    f
}

fn ima_facts(log: &ImaLog) -> ImaFacts {
    let mut files: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut notes = Vec::new();
    for e in &log.entries {
        if e.is_violation() {
            let path = e.file().map_or("(no path)", |f| f.path.as_str());
            notes.push(format!(
                "entry #{} is a violation ({path}); not allowed",
                e.index
            ));
            continue;
        }
        if e.template_hash_matches() == Some(false) {
            notes.push(format!(
                "entry #{}'s template hash does not match its data; not used",
                e.index
            ));
            continue;
        }
        if let Some(f) = e.file() {
            if !matches!(f.hash_alg.as_str(), "sha1" | "sha256" | "sha384" | "sha512") {
                notes.push(format!(
                    "entry #{} ({}) is measured with {}, which policies cannot name; not allowed",
                    e.index, f.path, f.hash_alg
                ));
                continue;
            }
            files.entry(f.path.clone()).or_default().insert(format!(
                "{}:{}",
                f.hash_alg,
                hex::encode(&f.digest)
            ));
        }
    }
    ImaFacts {
        pcr: log.entries.first().map_or(10, |e| e.pcr),
        files,
        notes,
        aggregate_problem: Some("no quoted PCR values were given".into()),
    }
}

fn render_ima(f: &ImaFacts) -> String {
    let mut out = format!("\n[ima]\npcr = {}\nexcludes = []\n", f.pcr);
    match &f.aggregate_problem {
        None => out.push_str(
            "# boot_aggregate is recomputed from the quoted PCRs 0-9 at every attestation\nboot_aggregate = true\n",
        ),
        Some(why) => {
            let _ = writeln!(
                out,
                "# boot_aggregate is pinned in the allowlist, not recomputed: {}\nboot_aggregate = false",
                comment(why)
            );
        }
    }
    out.push_str("\n[ima.allowlist]\n");
    for (path, digests) in &f.files {
        if path == crate::policy::ima::BOOT_AGGREGATE && f.aggregate_problem.is_none() {
            continue;
        }
        let digests: Vec<String> = digests.iter().map(|d| toml_str(d)).collect();
        let _ = writeln!(out, "{} = [{}]", toml_str(path), digests.join(", "));
    }
    for n in &f.notes {
        let _ = writeln!(out, "# {}", comment(n));
    }
    out
}

/// `[ima]` for this log: every measured file with the digests it was measured
/// with. Violations and entries whose template hash does not match are left out
/// with a comment.
pub fn ima_section(log: &ImaLog) -> String {
    render_ima(&ima_facts(log))
}

/// What a container measurement log shows, as `[containers]` writes it down.
#[derive(Debug, Default)]
struct CelFacts {
    pcr: u32,
    /// Runtime file path → its digests (`sha256:<hex>`).
    runtime: BTreeMap<String, BTreeSet<String>>,
    /// Manifest digest → the image reference it was measured under (the first).
    images: BTreeMap<String, String>,
    notes: Vec<String>,
}

fn cel_facts(log: &CelLog) -> CelFacts {
    let mut f = CelFacts {
        pcr: log.records.first().map_or(cel::DEFAULT_CEL_PCR, |r| r.pcr),
        ..CelFacts::default()
    };
    for r in &log.records {
        if !r.content_proven() {
            f.notes.push(format!(
                "record #{}: content does not match its digest; not used",
                r.recnum
            ));
            continue;
        }
        match r.measurement() {
            Ok(
                Measurement::RuntimeBinary { path, sha256 }
                | Measurement::RuntimeConfig { path, sha256 },
            ) => {
                f.runtime
                    .entry(path)
                    .or_default()
                    .insert(format!("sha256:{}", hex::encode(sha256)));
            }
            Ok(Measurement::Image {
                reference,
                manifest_digest,
                ..
            }) => {
                f.images.entry(manifest_digest).or_insert(reference);
            }
            Ok(Measurement::ContainerStart { .. }) => {}
            Err(e) => f.notes.push(format!("record #{}: {e}; not used", r.recnum)),
        }
    }
    f
}

fn render_cel(f: &CelFacts) -> String {
    let mut out = format!("\n[containers]\npcr = {}\nallowed_images = [\n", f.pcr);
    for (digest, reference) in &f.images {
        let _ = writeln!(out, "  {},  # {}", toml_str(digest), comment(reference));
    }
    out.push_str("]\n\n[containers.runtime]\n");
    for (path, digests) in &f.runtime {
        let digests: Vec<String> = digests.iter().map(|d| toml_str(d)).collect();
        let _ = writeln!(out, "{} = [{}]", toml_str(path), digests.join(", "));
    }
    for n in &f.notes {
        let _ = writeln!(out, "# {}", comment(n));
    }
    out
}

/// `[containers]` for this log: every measured runtime file with its digest and
/// every measured image by manifest digest. Records whose content is not proven
/// by their digest are left out with a comment.
pub fn containers_section(log: &CelLog) -> String {
    render_cel(&cel_facts(log))
}

#[cfg(test)]
mod tests;
