//! Several samples' facts merged into one policy's ([`super::generate_many`]).
//!
//! Each sample's logs are read into the facts its own reference would write
//! ([`BootFacts`], [`ImaFacts`], [`CelFacts`]), folded into per-claim tallies
//! (which samples make the claim, which have each value), then written out
//! through the same writers as one sample's. A tally of one sample is that
//! sample's facts, so one sample gives [`super::generate`]'s text.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use super::{
    boot_facts, cel_facts, header, ima_facts_quoted, render_boot, render_cel, render_ima,
    replayed_by_reference, BootFacts, CelFacts, Generated, ImaFacts, ReferenceError, Sample,
    SIGNATURE_DBS,
};
use crate::eventlog::{cel, ima, uefi};
use crate::tpm::public::HashAlg;

/// One value on which the samples differ, and the samples that have it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffValue {
    /// The value as the policy file spells it (`sha256:<hex>`, a command
    /// line, a PCR value's hex, `true`, an event type name…). `None`: the
    /// samples make no such claim: their own reference would not (the fact is
    /// not in their log, or not proven there), or they did not report the PCR.
    pub value: Option<String>,
    /// The labels of the samples with this value, in sample order.
    pub samples: Vec<Arc<str>>,
}

/// What the merged policy does with a claim on which the samples differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It lists every sample's values: any of them is allowed (for
    /// `measured_boot.pcrs`: every one is replayed).
    Union,
    /// It requires only the values every sample has (`dbx_required`).
    Intersection,
    /// It leaves the claim out: not judged.
    NotJudged,
}

/// A claim on which the samples differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// The claim as the policy file names it, as `policy diff` does:
    /// `pcrs.sha256.7`, `measured_boot.kernel_cmdlines`,
    /// `measured_boot.after_separator.4`, `ima.allowlist."/usr/bin/bash"`,
    /// `containers.runtime."/usr/bin/runc"`, …
    pub key: String,
    /// The values not every sample has, in the order first seen: each value of
    /// a single-valued claim; each member of a list that some sample lacks;
    /// and `value: None` for the samples that make no such claim.
    pub values: Vec<DiffValue>,
    pub outcome: Outcome,
}

/// Most values, labels and comments shown on one line.
const MAX_SHOWN_VALUES: usize = 16;
const MAX_SHOWN_LABELS: usize = 8;
const MAX_COMMENTS: usize = 4;

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Outcome::Union => "the policy lists them all",
            Outcome::Intersection => "the policy requires only those every sample has",
            Outcome::NotJudged => "not judged: samples differ",
        })
    }
}

/// `pcrs.sha256.7: 2 values — aaaaaaaa… (node-a, node-b), bbbbbbbb… (node-c);
/// not judged: samples differ`: digests shortened, other text quoted, at most
/// 16 values and 8 labels each.
impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.values.len();
        write!(
            f,
            "{}: {n} value{} — ",
            self.key,
            if n == 1 { "" } else { "s" }
        )?;
        for (i, v) in self.values.iter().take(MAX_SHOWN_VALUES).enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(
                f,
                "{} ({})",
                show_value(v.value.as_deref()),
                label_list(&v.samples)
            )?;
        }
        if n > MAX_SHOWN_VALUES {
            write!(f, ", and {} more", n - MAX_SHOWN_VALUES)?;
        }
        write!(f, "; {}", self.outcome)
    }
}

/// A value for a person: digests shortened to 8 hex digits, words as they
/// are, anything else quoted (and cut at 60 characters).
fn show_value(v: Option<&str>) -> String {
    let Some(v) = v else {
        return "(none)".to_string();
    };
    let (alg, digits) = match v.split_once(':') {
        Some((a, h)) if !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric()) => {
            (Some(a), h)
        }
        _ => (None, v),
    };
    if digits.len() > 16 && digits.chars().all(|c| c.is_ascii_hexdigit()) {
        let short = digits.get(..8).unwrap_or(digits);
        return match alg {
            Some(a) => format!("{a}:{short}…"),
            None => format!("{short}…"),
        };
    }
    if !v.is_empty()
        && v.len() <= 64
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./".contains(c))
    {
        return v.to_string();
    }
    let mut s: String = v.chars().take(60).collect();
    if v.chars().nth(60).is_some() {
        s.push('…');
    }
    format!("{s:?}")
}

/// Labels for a person: the first 8, then how many more.
pub(super) fn label_list<S: AsRef<str>>(labels: &[S]) -> String {
    let mut s = labels
        .iter()
        .take(MAX_SHOWN_LABELS)
        .map(AsRef::as_ref)
        .collect::<Vec<&str>>()
        .join(", ");
    if labels.len() > MAX_SHOWN_LABELS {
        s.push_str(&format!(" and {} more", labels.len() - MAX_SHOWN_LABELS));
    }
    s
}

/// Sample indices, ascending, each once.
#[derive(Debug, Default)]
struct Holders(Vec<usize>);

impl Holders {
    fn add(&mut self, sample: usize) {
        if self.0.last() != Some(&sample) {
            self.0.push(sample);
        }
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

#[derive(Debug)]
struct Member {
    /// Order first seen.
    first: usize,
    /// Distinct comments (descriptions, device paths, image references).
    comments: Vec<String>,
    more_comments: bool,
    holders: Holders,
}

impl Member {
    fn comment(&self) -> String {
        let mut c = self.comments.join(" | ");
        if self.more_comments {
            c.push_str(" | …");
        }
        c
    }
}

/// One claim over the samples: which make it, which have each value.
#[derive(Debug)]
struct Claim<V> {
    present: Holders,
    values: BTreeMap<V, Member>,
}

impl<V> Default for Claim<V> {
    fn default() -> Self {
        Claim {
            present: Holders::default(),
            values: BTreeMap::new(),
        }
    }
}

impl<V: Ord> Claim<V> {
    /// `sample` makes this claim (possibly with no value: an empty list).
    fn mark(&mut self, sample: usize) {
        self.present.add(sample);
    }

    fn add(&mut self, sample: usize, value: V, comment: Option<&str>) {
        let first = self.values.len();
        let m = self.values.entry(value).or_insert_with(|| Member {
            first,
            comments: Vec::new(),
            more_comments: false,
            holders: Holders::default(),
        });
        m.holders.add(sample);
        if let Some(c) = comment {
            if !m.comments.iter().any(|x| x == c) {
                if m.comments.len() < MAX_COMMENTS {
                    m.comments.push(c.to_string());
                } else {
                    m.more_comments = true;
                }
            }
        }
    }

    /// Values in the order first seen (a single sample's: its log order).
    fn ordered(&self) -> Vec<(&V, &Member)> {
        let mut v: Vec<(&V, &Member)> = self.values.iter().collect();
        v.sort_by_key(|(_, m)| m.first);
        v
    }
}

/// Notes, keyed by text and occurrence within a sample (so one sample's
/// notes come out as it wrote them, repeats included).
type Notes = Claim<(String, usize)>;

fn add_notes(acc: &mut Notes, sample: usize, notes: Vec<String>) {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for n in notes {
        let k = seen.entry(n.clone()).or_default();
        let occurrence = *k;
        *k += 1;
        acc.add(sample, (n, occurrence), None);
    }
}

/// The samples' labels, and the differences found so far.
struct Ctx {
    labels: Vec<Arc<str>>,
    n: usize,
    differences: Vec<Difference>,
}

impl Ctx {
    fn names(&self, holders: &[usize]) -> Vec<Arc<str>> {
        holders
            .iter()
            .filter_map(|i| self.labels.get(*i).cloned())
            .collect()
    }

    /// The samples not in `present`.
    fn absent(&self, present: &Holders) -> Vec<usize> {
        let mut out = Vec::with_capacity(self.n.saturating_sub(present.len()));
        let mut next = present.0.iter().peekable();
        for i in 0..self.n {
            if next.peek() == Some(&&i) {
                next.next();
            } else {
                out.push(i);
            }
        }
        out
    }

    /// Records the claim's values not every sample has (and the samples that
    /// do not make it), if there are any.
    fn report<V: Ord + fmt::Display>(&mut self, key: &str, claim: &Claim<V>, outcome: Outcome) {
        let mut values: Vec<DiffValue> = claim
            .ordered()
            .into_iter()
            .filter(|(_, m)| m.holders.len() < self.n)
            .map(|(v, m)| DiffValue {
                value: Some(v.to_string()),
                samples: self.names(&m.holders.0),
            })
            .collect();
        if claim.present.len() < self.n {
            values.push(DiffValue {
                value: None,
                samples: self.names(&self.absent(&claim.present)),
            });
        }
        if !values.is_empty() {
            self.differences.push(Difference {
                key: key.to_string(),
                values,
                outcome,
            });
        }
    }

    /// A single-valued claim: its values when every sample has the same
    /// (one, unless a sample repeats itself), else `None`, reported and noted.
    fn single<V: Ord + Clone + fmt::Display>(
        &mut self,
        key: &str,
        claim: &Claim<V>,
        notes: &mut Vec<String>,
    ) -> Option<Vec<V>> {
        if claim.present.len() == 0 {
            return None;
        }
        if claim.present.len() == self.n && claim.values.values().all(|m| m.holders.len() == self.n)
        {
            return Some(
                claim
                    .ordered()
                    .into_iter()
                    .map(|(v, _)| v.clone())
                    .collect(),
            );
        }
        self.not_judged(key, claim, notes);
        None
    }

    /// A list claim the schema widens, made only when every sample's own
    /// reference makes it (the samples without it would fail it): the union
    /// with each value's comments, or `None`, reported and noted.
    fn union_if_all<V: Ord + Clone + fmt::Display>(
        &mut self,
        key: &str,
        claim: &Claim<V>,
        notes: &mut Vec<String>,
    ) -> Option<Vec<(V, String)>> {
        if claim.present.len() == 0 {
            return None;
        }
        if claim.present.len() < self.n {
            self.not_judged(key, claim, notes);
            return None;
        }
        self.report(key, claim, Outcome::Union);
        Some(
            claim
                .ordered()
                .into_iter()
                .map(|(v, m)| (v.clone(), m.comment()))
                .collect(),
        )
    }

    /// A list claim whose absence judges nothing (a path, a PCR's events): the union.
    fn union<V: Ord + Clone + fmt::Display>(&mut self, key: &str, claim: &Claim<V>) -> BTreeSet<V> {
        self.report(key, claim, Outcome::Union);
        claim.values.keys().cloned().collect()
    }

    /// A required list (`dbx_required`): the values every sample has, or
    /// `None` (reported and noted) when there are none.
    fn intersection(
        &mut self,
        key: &str,
        claim: &Claim<String>,
        notes: &mut Vec<String>,
    ) -> Option<Vec<(String, String)>> {
        if claim.present.len() == 0 {
            return None;
        }
        let required: Vec<(String, String)> = claim
            .ordered()
            .into_iter()
            .filter(|(_, m)| m.holders.len() == self.n)
            .map(|(v, m)| (v.clone(), m.comment()))
            .collect();
        if required.is_empty() {
            self.not_judged(key, claim, notes);
            return None;
        }
        self.report(key, claim, Outcome::Intersection);
        Some(required)
    }

    fn not_judged<V: Ord + fmt::Display>(
        &mut self,
        key: &str,
        claim: &Claim<V>,
        notes: &mut Vec<String>,
    ) {
        self.report(key, claim, Outcome::NotJudged);
        let short = key.split_once('.').map_or(key, |(_, k)| k);
        notes.push(format!("{short}: not judged: samples differ"));
    }

    /// Notes as written: a note not every sample has names the samples.
    fn notes(&self, acc: &Notes) -> Vec<String> {
        acc.ordered()
            .into_iter()
            .map(|((text, _), m)| {
                if m.holders.len() == self.n {
                    text.clone()
                } else {
                    format!("{text} (in {})", label_list(&self.names(&m.holders.0)))
                }
            })
            .collect()
    }
}

/// `[measured_boot]` over the samples.
#[derive(Default)]
struct BootAcc {
    pcrs: Claim<u32>,
    secure_boot: Claim<bool>,
    signature_dbs: [Claim<String>; 4],
    crtm_versions: Claim<String>,
    firmware_blobs: Claim<String>,
    boot_applications: Claim<String>,
    kernel_cmdlines: Claim<String>,
    after_separator: BTreeMap<u32, Claim<String>>,
    notes: Notes,
}

fn add_set(claim: &mut Claim<String>, sample: usize, values: BTreeSet<String>) {
    if !values.is_empty() {
        claim.mark(sample);
        for v in values {
            claim.add(sample, v, None);
        }
    }
}

fn add_commented(claim: &mut Claim<String>, sample: usize, values: Vec<(String, String)>) {
    claim.mark(sample);
    for (v, c) in values {
        claim.add(sample, v, Some(&c));
    }
}

impl BootAcc {
    fn add(&mut self, i: usize, f: BootFacts) {
        self.pcrs.mark(i);
        for p in f.pcrs {
            self.pcrs.add(i, p, None);
        }
        if let Some(on) = f.secure_boot {
            self.secure_boot.mark(i);
            self.secure_boot.add(i, on, None);
        }
        for (acc, entries) in self.signature_dbs.iter_mut().zip(f.signature_dbs) {
            if let Some(entries) = entries {
                add_commented(acc, i, entries);
            }
        }
        add_set(&mut self.crtm_versions, i, f.crtm_versions);
        add_set(&mut self.firmware_blobs, i, f.firmware_blobs);
        if !f.boot_applications.is_empty() {
            add_commented(&mut self.boot_applications, i, f.boot_applications);
        }
        add_set(&mut self.kernel_cmdlines, i, f.kernel_cmdlines);
        for (pcr, types) in f.after_separator {
            let acc = self.after_separator.entry(pcr).or_default();
            acc.mark(i);
            for t in types {
                acc.add(i, t, None);
            }
        }
        add_notes(&mut self.notes, i, f.notes);
    }

    fn finish(self, ctx: &mut Ctx) -> BootFacts {
        // Differences come in the order the section writes its keys.
        let mut notes = Vec::new();
        let pcrs = ctx.union("measured_boot.pcrs", &self.pcrs);
        let secure_boot = ctx
            .single("measured_boot.secure_boot", &self.secure_boot, &mut notes)
            .and_then(|v| v.first().copied());
        let mut signature_dbs: [Option<Vec<(String, String)>>; 4] = Default::default();
        for ((key, _), (acc, out)) in SIGNATURE_DBS
            .iter()
            .zip(self.signature_dbs.iter().zip(signature_dbs.iter_mut()))
        {
            let key = format!("measured_boot.{key}");
            *out = if key == "measured_boot.dbx_required" {
                ctx.intersection(&key, acc, &mut notes)
            } else {
                ctx.union_if_all(&key, acc, &mut notes)
            };
        }
        let set = |v: Option<Vec<(String, String)>>| -> BTreeSet<String> {
            v.unwrap_or_default().into_iter().map(|(v, _)| v).collect()
        };
        let crtm_versions = set(ctx.union_if_all(
            "measured_boot.crtm_versions",
            &self.crtm_versions,
            &mut notes,
        ));
        let firmware_blobs = set(ctx.union_if_all(
            "measured_boot.firmware_blobs",
            &self.firmware_blobs,
            &mut notes,
        ));
        let boot_applications = ctx
            .union_if_all(
                "measured_boot.boot_applications",
                &self.boot_applications,
                &mut notes,
            )
            .unwrap_or_default();
        let kernel_cmdlines = set(ctx.union_if_all(
            "measured_boot.kernel_cmdlines",
            &self.kernel_cmdlines,
            &mut notes,
        ));
        let after_separator = self
            .after_separator
            .iter()
            .map(|(pcr, acc)| {
                let key = format!("measured_boot.after_separator.{pcr}");
                (*pcr, ctx.union(&key, acc))
            })
            .collect();
        notes.extend(ctx.notes(&self.notes));
        BootFacts {
            pcrs,
            secure_boot,
            signature_dbs,
            crtm_versions,
            firmware_blobs,
            boot_applications,
            kernel_cmdlines,
            after_separator,
            notes,
        }
    }
}

/// `[ima]` over the samples.
#[derive(Default)]
struct ImaAcc {
    pcr: Claim<u32>,
    files: BTreeMap<String, Claim<String>>,
    notes: Notes,
    /// The first sample's reason its boot_aggregate does not recompute.
    aggregate_problem: Option<String>,
}

impl ImaAcc {
    fn add(&mut self, i: usize, f: ImaFacts) {
        self.pcr.mark(i);
        self.pcr.add(i, f.pcr, None);
        for (path, digests) in f.files {
            let acc = self.files.entry(path).or_default();
            acc.mark(i);
            for d in digests {
                acc.add(i, d, None);
            }
        }
        add_notes(&mut self.notes, i, f.notes);
        if self.aggregate_problem.is_none() {
            self.aggregate_problem = f.aggregate_problem;
        }
    }

    /// The section's facts, or `None` when the samples' IMA PCRs differ.
    fn finish(self, ctx: &mut Ctx) -> Option<ImaFacts> {
        let pcr = ctx
            .single("ima.pcr", &self.pcr, &mut Vec::new())?
            .first()
            .copied()?;
        let mut files = BTreeMap::new();
        for (path, acc) in self.files {
            let digests = ctx.union(&format!("ima.allowlist.{path:?}"), &acc);
            files.insert(path, digests);
        }
        Some(ImaFacts {
            pcr,
            files,
            notes: ctx.notes(&self.notes),
            aggregate_problem: self.aggregate_problem,
        })
    }
}

/// `[containers]` over the samples.
#[derive(Default)]
struct CelAcc {
    pcr: Claim<u32>,
    runtime: BTreeMap<String, Claim<String>>,
    images: Claim<String>,
    notes: Notes,
}

impl CelAcc {
    fn add(&mut self, i: usize, f: CelFacts) {
        self.pcr.mark(i);
        self.pcr.add(i, f.pcr, None);
        for (path, digests) in f.runtime {
            let acc = self.runtime.entry(path).or_default();
            acc.mark(i);
            for d in digests {
                acc.add(i, d, None);
            }
        }
        self.images.mark(i);
        for (digest, reference) in f.images {
            self.images.add(i, digest, Some(&reference));
        }
        add_notes(&mut self.notes, i, f.notes);
    }

    /// The section's facts, or `None` when the samples' CEL PCRs differ.
    fn finish(self, ctx: &mut Ctx) -> Option<CelFacts> {
        let pcr = ctx
            .single("containers.pcr", &self.pcr, &mut Vec::new())?
            .first()
            .copied()?;
        let mut runtime = BTreeMap::new();
        for (path, acc) in self.runtime {
            let digests = ctx.union(&format!("containers.runtime.{path:?}"), &acc);
            runtime.insert(path, digests);
        }
        ctx.report("containers.allowed_images", &self.images, Outcome::Union);
        let images = self
            .images
            .values
            .iter()
            .map(|(d, m)| (d.clone(), m.comment()))
            .collect();
        Some(CelFacts {
            pcr,
            runtime,
            images,
            notes: ctx.notes(&self.notes),
        })
    }
}

/// A sample whose evidence reports, for a PCR its UEFI log does not extend,
/// something other than the initial value: it fails a policy replaying that PCR.
struct Unlogged {
    sample: usize,
    pcr: u32,
    initial: Vec<u8>,
    reported: Vec<u8>,
}

pub(super) fn merge(name: &str, samples: &[Sample<'_>]) -> Result<Generated, ReferenceError> {
    let mut ctx = Ctx {
        labels: samples.iter().map(|s| Arc::from(s.label)).collect(),
        n: samples.len(),
        differences: Vec::new(),
    };
    if samples
        .iter()
        .all(|s| s.uefi_log.is_none() && s.ima_log.is_none() && s.cel_log.is_none())
    {
        return golden(name, samples, ctx);
    }
    let mut boot: Option<BootAcc> = None;
    let mut ima_acc: Option<ImaAcc> = None;
    let mut cel_acc: Option<CelAcc> = None;
    let mut unlogged = Vec::new();
    for (i, s) in samples.iter().enumerate() {
        let in_sample = |error| ReferenceError::Sample {
            label: s.label.to_string(),
            error: Box::new(error),
        };
        if let Some(bytes) = s.uefi_log {
            let log = uefi::parse(bytes, &uefi::Limits::default())
                .map_err(|e| in_sample(ReferenceError::UefiLog(e)))?;
            let replay = uefi::replay(&log);
            let facts = boot_facts(&log);
            for (pcr, quoted) in s.pcrs.iter().filter(|(p, _)| replayed_by_reference(*p)) {
                match replay.pcr(HashAlg::Sha256, *pcr) {
                    Some(replayed) if replayed != quoted.as_slice() => {
                        return Err(in_sample(ReferenceError::ReplayMismatch {
                            pcr: *pcr,
                            replayed: replayed.to_vec(),
                            reported: quoted.clone(),
                        }))
                    }
                    Some(_) => {}
                    // Not this log's: judged only if another sample's log extends it.
                    None if !facts.pcrs.contains(pcr) => {
                        let initial =
                            uefi::initial_pcr_value(HashAlg::Sha256, *pcr, log.startup_locality);
                        if initial != *quoted {
                            unlogged.push(Unlogged {
                                sample: i,
                                pcr: *pcr,
                                initial,
                                reported: quoted.clone(),
                            });
                        }
                    }
                    // A log without a sha256 bank: as for one sample, not checked.
                    None => {}
                }
            }
            boot.get_or_insert_with(BootAcc::default).add(i, facts);
        }
        if let Some(bytes) = s.ima_log {
            let log = ima::parse(bytes, &ima::Limits::default())
                .map_err(|e| in_sample(ReferenceError::ImaLog(e)))?;
            ima_acc
                .get_or_insert_with(ImaAcc::default)
                .add(i, ima_facts_quoted(&log, s.pcrs));
        }
        if let Some(bytes) = s.cel_log {
            let log = cel::parse(bytes, &cel::Limits::default())
                .map_err(|e| in_sample(ReferenceError::CelLog(e)))?;
            cel_acc
                .get_or_insert_with(CelAcc::default)
                .add(i, cel_facts(&log));
        }
    }
    if let Some(b) = &boot {
        if let Some(u) = unlogged
            .into_iter()
            .find(|u| b.pcrs.values.contains_key(&u.pcr))
        {
            return Err(ReferenceError::Sample {
                label: samples
                    .get(u.sample)
                    .map(|s| s.label.to_string())
                    .unwrap_or_default(),
                error: Box::new(ReferenceError::UnloggedPcr {
                    pcr: u.pcr,
                    initial: u.initial,
                    reported: u.reported,
                }),
            });
        }
    }

    let boot = boot.map(|b| b.finish(&mut ctx));
    let ima_out = ima_acc.map(|a| a.finish(&mut ctx));
    let cel_out = cel_acc.map(|a| a.finish(&mut ctx));
    let judges_something =
        boot.is_some() || matches!(ima_out, Some(Some(_))) || matches!(cel_out, Some(Some(_)));
    if !judges_something {
        return Err(ReferenceError::NothingInCommon {
            differences: ctx.differences,
        });
    }
    let merged = !ctx.differences.is_empty();
    let mut text = header(name, merged.then_some(ctx.n));
    if let Some(f) = &boot {
        text.push_str(&render_boot(f, merged));
    }
    match &ima_out {
        Some(Some(f)) => text.push_str(&render_ima(f)),
        Some(None) => text.push_str(
            "\n# [ima] is left out (not judged): the samples' IMA logs extend different PCRs\n",
        ),
        None => {}
    }
    match &cel_out {
        Some(Some(f)) => text.push_str(&render_cel(f)),
        Some(None) => text.push_str(
            "\n# [containers] is left out (not judged): the samples' container logs extend different PCRs\n",
        ),
        None => {}
    }
    Ok(Generated {
        text,
        differences: ctx.differences,
    })
}

/// Golden `[pcrs.sha256]` values: each PCR every sample reports with the same value.
fn golden(name: &str, samples: &[Sample<'_>], mut ctx: Ctx) -> Result<Generated, ReferenceError> {
    // Keyed by PCR and its occurrence within a sample, in the order first
    // seen: one sample's values come out as it listed them.
    let mut slots: Vec<((u32, usize), Claim<String>)> = Vec::new();
    let mut index: BTreeMap<(u32, usize), usize> = BTreeMap::new();
    for (i, s) in samples.iter().enumerate() {
        let mut seen: BTreeMap<u32, usize> = BTreeMap::new();
        for (pcr, value) in s.pcrs {
            let k = seen.entry(*pcr).or_default();
            let slot = (*pcr, *k);
            *k += 1;
            let at = *index.entry(slot).or_insert_with(|| {
                slots.push((slot, Claim::default()));
                slots.len() - 1
            });
            if let Some((_, claim)) = slots.get_mut(at) {
                claim.mark(i);
                claim.add(i, hex::encode(value), None);
            }
        }
    }
    let mut lines = String::new();
    let mut notes = Vec::new();
    let mut judged = 0;
    for ((pcr, _), claim) in &slots {
        let key = format!("pcrs.sha256.{pcr}");
        if let Some(values) = ctx.single(&key, claim, &mut Vec::new()) {
            judged += 1;
            for v in values {
                lines.push_str(&format!("{pcr} = \"{v}\"\n"));
            }
        } else {
            notes.push(format!("# PCR {pcr}: not judged: samples differ\n"));
        }
    }
    let merged = !ctx.differences.is_empty();
    if merged && judged == 0 {
        return Err(ReferenceError::NothingInCommon {
            differences: ctx.differences,
        });
    }
    let mut text = header(name, merged.then_some(ctx.n));
    text.push_str("\n[pcrs.sha256]\n");
    text.push_str(&lines);
    text.push_str(&notes.concat());
    Ok(Generated {
        text,
        differences: ctx.differences,
    })
}
