//! `[ima]` claims: replay the IMA log against the quoted IMA PCR, then judge
//! every measured file the quote covers against the allowlist.
//!
//! The kernel keeps measuring after the quote, so the log a node sends may run
//! past the quoted state. The verifier looks for the prefix of the log whose
//! replay equals the quoted PCR; entries after it are not covered by this quote
//! and are not judged (the next attestation covers them). If no prefix matches,
//! the log is not the one the TPM measured and nothing in it is judged.
//!
//! # Incremental attestation
//!
//! A log grows for as long as the node runs, so judging it whole at every
//! attestation costs more with every hour of uptime. The verifier keeps, per
//! node, an [`ImaState`]: the boot it belongs to (the quote's resetCount and
//! restartCount, and the log's first template hash — the boot_aggregate
//! entry), how many entries were verified, the IMA PCR's value after them and
//! the digest of the rules they were judged under. The challenge asks the node
//! for the entries from there on; the node sends them with
//! `ima_first_entry`; the verifier replays them from the kept value to the
//! quoted one and judges only them. The kept value was proven by an earlier
//! quote, so a new entry changed, dropped or reordered, or entries of another
//! boot, do not reach the quoted PCR and fail as in a whole-log replay.
//!
//! The state moves only as far as the judgement passed: up to just before the
//! first entry that failed, so a disallowed file fails every attestation until
//! the policy allows it or the node reboots. It is dropped when the log does
//! not replay, so the next attestation judges the whole log again. A whole
//! log is always accepted and judged from entry 0; the `eventlog.ima.range`
//! claim says which entries were judged, and when the whole log was, why.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::eventlog::ima::{self, ImaEntry, ImaLog, Value};
use crate::policy::ima::ImaRules;
use crate::tpm::attest::ClockInfo;
use crate::tpm::public::HashAlg;
use crate::verdict::Claim;

/// Most failing entries listed one claim each; the rest are counted in one claim.
const MAX_LISTED: usize = 32;

/// How far a node's IMA log was verified in its current boot: what the
/// verifier keeps between attestations to judge only new entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImaState {
    /// The boot: `TPMS_CLOCK_INFO.resetCount` and `restartCount` of the quote
    /// that proved `pcr_value`.
    pub reset_count: u32,
    pub restart_count: u32,
    /// Hex template hash of the log's first entry (boot_aggregate).
    pub first_template_hash: String,
    /// Entries verified: the next one to judge has this index.
    pub entries: u64,
    /// The IMA PCR (sha256 bank) and its hex value after those entries.
    pub pcr: u32,
    pub pcr_value: String,
    /// Hex [`ImaRules::digest`] of the rules the entries were judged under.
    pub rules_digest: String,
}

/// What an attestation's IMA judgement does to the node's kept [`ImaState`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ImaProgress {
    /// Nothing was learnt (no IMA judgement, no log, a log that did not parse).
    #[default]
    Unchanged,
    /// Keep this state.
    Set(ImaState),
    /// Drop the state: the next attestation judges the whole log.
    Clear,
}

/// Why a kept state does not continue into this quote, if it does not.
fn continues(kept: &ImaState, rules: &ImaRules, clock: ClockInfo) -> Result<(), String> {
    if kept.rules_digest != hex::encode(rules.digest()) || kept.pcr != rules.pcr {
        return Err(format!(
            "the policy's IMA rules changed since entry {} was verified",
            kept.entries
        ));
    }
    if kept.reset_count != clock.reset_count || kept.restart_count != clock.restart_count {
        return Err(format!(
            "the TPM was reset or restarted since entry {} was verified (resetCount {}, restartCount {} then; {}, {} now): another boot",
            kept.entries, kept.reset_count, kept.restart_count, clock.reset_count, clock.restart_count
        ));
    }
    Ok(())
}

/// Where the judgement starts.
enum Start<'a> {
    /// The whole log, from entry 0.
    Whole,
    /// After the kept state.
    After(&'a ImaState),
}

pub(super) fn claims(
    rules: &ImaRules,
    log: Option<&[u8]>,
    first_entry: u64,
    kept: Option<&ImaState>,
    quoted: &[(u32, Vec<u8>)],
    clock: ClockInfo,
) -> (Vec<Claim>, ImaProgress) {
    let present = "an IMA runtime measurement log (ascii or binary)";
    let Some(bytes) = log else {
        return (
            vec![Claim::new(
                "eventlog.ima.present",
                false,
                present,
                "no IMA log in the evidence",
                "evidence",
            )],
            ImaProgress::Unchanged,
        );
    };
    let range_id = "eventlog.ima.range";
    let range_expected = "the entries after the state kept for this boot, or the whole log";
    let start = if first_entry == 0 {
        Start::Whole
    } else {
        let refused = match kept {
            None => Some(format!(
                "entries from {first_entry} on, but no state is kept for this node: its whole log is needed"
            )),
            Some(k) => match continues(k, rules, clock) {
                Err(why) => Some(format!(
                    "entries from {first_entry} on, but {why}: its whole log is needed"
                )),
                Ok(()) if k.entries != first_entry => Some(format!(
                    "entries from {first_entry} on, but the state kept is at entry {}: its whole log is needed",
                    k.entries
                )),
                Ok(()) => None,
            },
        };
        match (refused, kept) {
            (None, Some(k)) => Start::After(k),
            (why, _) => {
                let why = why.unwrap_or_default();
                return (
                    vec![Claim::new(range_id, false, range_expected, why, "IMA log")],
                    ImaProgress::Clear,
                );
            }
        }
    };
    let mut log = match ima::parse(bytes, &ima::Limits::default()) {
        Ok(log) => log,
        Err(e) => {
            return (
                vec![Claim::new(
                    "eventlog.ima.format",
                    false,
                    present,
                    e.to_string(),
                    "IMA log",
                )],
                ImaProgress::Unchanged,
            )
        }
    };
    let offset = usize::try_from(first_entry).unwrap_or(usize::MAX);
    if offset > 0 {
        for e in &mut log.entries {
            e.index = e.index.saturating_add(offset);
        }
    }
    let pcr = rules.pcr;
    let location = format!("PCR sha256:{pcr}");
    let id = format!("eventlog.ima.replay.{pcr}");
    let quoted_pcrs = quoted;
    let Some(quoted) = quoted.iter().find(|(i, _)| *i == pcr).map(|(_, v)| v) else {
        return (
            vec![Claim::new(
                id,
                false,
                "the IMA PCR in the quote",
                "not quoted",
                location,
            )],
            ImaProgress::Unchanged,
        );
    };
    let from_value = match start {
        Start::Whole => vec![0u8; 32],
        Start::After(k) => match hex::decode(&k.pcr_value) {
            Ok(v) if v.len() == 32 => v,
            _ => {
                return (
                    vec![Claim::new(
                        range_id,
                        false,
                        range_expected,
                        "the kept state's PCR value is not a sha256 value: its whole log is needed",
                        "IMA log",
                    )],
                    ImaProgress::Clear,
                )
            }
        },
    };
    let sent = log.entries.iter().filter(|e| e.pcr == pcr).count();
    let (covered, mismatched) = match covered_prefix(&log, pcr, &from_value, quoted) {
        Ok(n) => n,
        Err(why) => {
            let why = match start {
                Start::Whole => why,
                Start::After(k) => {
                    format!("{why}, replayed from the value kept at entry {}", k.entries)
                }
            };
            return (
                vec![Claim::new(id, false, hex::encode(quoted), why, location)],
                ImaProgress::Clear,
            );
        }
    };
    let entries: Vec<&ImaEntry> = log
        .entries
        .iter()
        .filter(|e| e.pcr == pcr)
        .take(covered)
        .collect();
    let replayed = match start {
        Start::Whole => format!("the first {covered} of {sent} entries replay to it"),
        Start::After(k) => format!(
            "{covered} of the {sent} entries sent (from entry {}), replayed from the value kept at entry {}, reach it",
            first_entry, k.entries
        ),
    };
    let mut out = vec![Claim::new(
        id,
        true,
        hex::encode(quoted),
        replayed,
        location,
    )];
    // The boot_aggregate (the log's first entry) is judged with the whole log.
    let aggregate = match (&start, entries.first()) {
        (Start::Whole, Some(first)) if rules.boot_aggregate => {
            Some(boot_aggregate_claim(first, quoted_pcrs))
        }
        _ => None,
    };
    let aggregate_failed = aggregate.as_ref().is_some_and(|c| !c.passed);
    out.extend(aggregate);
    let (files, mut first_bad) = file_claims(rules, &entries, &mismatched);
    if aggregate_failed {
        first_bad = Some(0);
    }

    // How far the state moves: past every covered entry, or up to the first
    // that failed.
    let from_index = match start {
        Start::Whole => 0,
        Start::After(k) => k.entries,
    };
    let end = match (first_bad, entries.last()) {
        (Some(bad), _) => bad as u64,
        (None, Some(last)) => last.index as u64 + 1,
        (None, None) => from_index,
    };
    let first_template_hash = match start {
        Start::Whole => log
            .entries
            .first()
            .map(|e| hex::encode(&e.template_hash))
            .unwrap_or_default(),
        Start::After(k) => k.first_template_hash.clone(),
    };
    let value = match first_bad {
        None if !entries.is_empty() => Some(quoted.clone()),
        None => Some(from_value.clone()),
        Some(bad) => value_before(&entries, bad, &from_value),
    };
    let progress = match value {
        Some(v) if end > 0 => ImaProgress::Set(ImaState {
            reset_count: clock.reset_count,
            restart_count: clock.restart_count,
            first_template_hash: first_template_hash.clone(),
            entries: end,
            pcr,
            pcr_value: hex::encode(v),
            rules_digest: hex::encode(rules.digest()),
        }),
        _ => ImaProgress::Clear,
    };

    let mut range = String::new();
    match entries.last() {
        Some(last) => {
            let _ = write!(range, "entries {from_index}–{} judged", last.index);
        }
        None => {
            let _ = write!(range, "no new entries since entry {from_index}");
        }
    }
    match start {
        Start::After(k) => {
            let _ = write!(
                range,
                ", continuing from the state kept at entry {} (resetCount {}, restartCount {})",
                k.entries, k.reset_count, k.restart_count
            );
        }
        Start::Whole => {
            let why = match kept {
                None => "no state is kept for this node".to_string(),
                Some(k) => match continues(k, rules, clock) {
                    Err(why) => why,
                    Ok(()) if first_template_hash != k.first_template_hash => format!(
                        "the log's first entry (boot_aggregate) is not the one kept with entry {}: another boot",
                        k.entries
                    ),
                    Ok(()) => "the node sent its whole log".to_string(),
                },
            };
            let _ = write!(range, ": the whole log, because {why}");
        }
    }
    if let Some(bad) = first_bad {
        let _ = write!(
            range,
            "; entry {bad} failed, the next attestation judges from it again"
        );
    }
    out.insert(
        0,
        Claim::new(range_id, true, range_expected, range, "IMA log"),
    );
    out.extend(files);
    (out, progress)
}

/// Whether `log`'s first entry is a boot_aggregate recomputed from `pcrs`
/// (quoted sha256 values), as `ima.boot_aggregate` judges it; why not.
pub(crate) fn boot_aggregate_check(log: &ImaLog, pcrs: &[(u32, Vec<u8>)]) -> Result<(), String> {
    let first = log.entries.first().ok_or("the log is empty")?;
    let c = boot_aggregate_claim(first, pcrs);
    if c.passed {
        Ok(())
    } else {
        Err(format!("expected {}, the log has {}", c.expected, c.actual))
    }
}

/// `ima.boot_aggregate`: the log's first entry is the kernel's boot_aggregate,
/// the hash of the boot PCRs in the bank it names (`ima_calc_boot_aggregate`:
/// PCRs 0-7 in SHA-1, 0-9 in any other bank, hashed one after the other),
/// recomputed from the quoted sha256 bank.
fn boot_aggregate_claim(first: &ImaEntry, quoted: &[(u32, Vec<u8>)]) -> Claim {
    let id = "ima.boot_aggregate";
    let location = format!("IMA entry #{} ({})", first.index, first.template.name());
    let fail = |expected: String, actual: String| {
        Claim::new(id, false, expected, actual, location.clone())
    };
    let named = first.path() == Some(crate::policy::ima::BOOT_AGGREGATE);
    let file = match first.file() {
        Some(f) if named && first.index == 0 => f,
        _ => {
            return fail(
                "the log's first entry is boot_aggregate".into(),
                format!(
                    "entry #{} is {} ({})",
                    first.index,
                    first.path().unwrap_or("?"),
                    first.template.name()
                ),
            )
        }
    };
    if file.hash_alg != "sha256" {
        return fail(
            "a sha256 boot_aggregate (the quote covers the sha256 bank)".into(),
            format!(
                "a {} boot_aggregate: the kernel used its {} bank, which the quote does not cover                  (boot with ima_hash=sha256 on a TPM with a sha256 bank, or set `ima.boot_aggregate = false`)",
                file.hash_alg, file.hash_alg
            ),
        );
    }
    let mut h = <sha2::Sha256 as sha2::Digest>::new();
    for pcr in crate::policy::ima::BOOT_AGGREGATE_PCRS {
        match quoted.iter().find(|(i, _)| *i == pcr) {
            Some((_, v)) => sha2::Digest::update(&mut h, v),
            None => {
                return fail(
                    "boot_aggregate = sha256 of the quoted PCRs 0-9".into(),
                    format!("PCR {pcr} is not quoted"),
                )
            }
        }
    }
    let expected = sha2::Digest::finalize(h).to_vec();
    Claim::new(
        id,
        expected == file.digest,
        format!(
            "sha256:{} (sha256 of the quoted PCRs 0-9)",
            hex::encode(&expected)
        ),
        format!("sha256:{}", hex::encode(&file.digest)),
        location,
    )
}

/// How many of the log's entries for `pcr` take `from` to `quoted`, and
/// which of them were extended with a logged template hash their data does
/// not hash to (a log whose template hashes are sha256 digests). With the
/// usual SHA-1 template hashes the sha256 bank is extended with the data's
/// own hash, which the replay proves: the logged SHA-1 is not checked.
fn covered_prefix(
    log: &ImaLog,
    pcr: u32,
    from: &[u8],
    quoted: &[u8],
) -> Result<(usize, Vec<usize>), String> {
    let bank = HashAlg::Sha256;
    let mut value = Value::from_slice(from);
    let quoted = Value::from_slice(quoted);
    let mut mismatched = Vec::new();
    if value == quoted {
        return Ok((0, mismatched));
    }
    let mut n = 0usize;
    for entry in log.entries.iter().filter(|e| e.pcr == pcr) {
        let (digest, matched) = ima::entry_extend(entry, bank)
            .map_err(|e| format!("entry {} cannot be replayed in sha256: {e}", entry.index))?;
        if matched == Some(false) {
            mismatched.push(entry.index);
        }
        ima::extend_value(bank, &mut value, &digest);
        n += 1;
        if value == quoted {
            return Ok((n, mismatched));
        }
    }
    Err(format!(
        "no prefix of the log's {n} entries replays to the quoted value (full replay {}): an entry was changed, removed, reordered or added",
        hex::encode(value.as_slice())
    ))
}

/// The PCR value after the covered entries before the one with log index `bad`.
fn value_before(entries: &[&ImaEntry], bad: usize, from: &[u8]) -> Option<Vec<u8>> {
    let bank = HashAlg::Sha256;
    let mut value = Value::from_slice(from);
    for e in entries.iter().take_while(|e| e.index < bad) {
        ima::extend_value(bank, &mut value, &ima::entry_extend(e, bank).ok()?.0);
    }
    Some(value.as_slice().to_vec())
}

/// The claims on the judged entries, and the log index of the first that failed.
fn file_claims(
    rules: &ImaRules,
    entries: &[&ImaEntry],
    mismatched: &[usize],
) -> (Vec<Claim>, Option<usize>) {
    let id = "ima.file";
    let mut bad = Vec::new();
    let mut first_bad = None;
    let mut judged = 0usize;
    for e in entries {
        let before = bad.len();
        let mismatch = mismatched.binary_search(&e.index).is_ok();
        judge_entry(rules, e, mismatch, &mut bad, &mut judged);
        if bad.len() > before && first_bad.is_none() {
            first_bad = Some(e.index);
        }
    }
    if bad.is_empty() {
        return (
            vec![Claim::new(
                id,
                true,
                "every measured file allowed",
                format!("{judged} files judged, all allowed"),
                "IMA log",
            )],
            None,
        );
    }
    if bad.len() > MAX_LISTED {
        let more = bad.len() - MAX_LISTED;
        bad.truncate(MAX_LISTED);
        bad.push(Claim::new(
            id,
            false,
            "every measured file allowed",
            format!("and {more} more entries not allowed"),
            "IMA log",
        ));
    }
    (bad, first_bad)
}

/// Judges one entry; a failure is pushed to `bad`.
fn judge_entry(
    rules: &ImaRules,
    e: &ImaEntry,
    mismatched: bool,
    bad: &mut Vec<Claim>,
    judged: &mut usize,
) {
    let id = "ima.file";
    let location = || format!("IMA entry #{} ({})", e.index, e.template.name());
    if e.is_violation() {
        let path = e.path().unwrap_or("?");
        if !rules.excluded(path) {
            bad.push(Claim::new(
                id,
                false,
                "no measurement violations",
                format!("{path}: violation (file opened for write while measured, or ToMToU)"),
                location(),
            ));
        }
        return;
    }
    if mismatched {
        bad.push(Claim::new(
            id,
            false,
            "template hash = sha256 of the template data",
            "the entry's data is not what was measured",
            location(),
        ));
        return;
    }
    let Some(file) = e.file() else {
        if let crate::eventlog::ima::Template::ImaBuf(b) = &e.template {
            judge_buffer(rules, e, b, bad);
        }
        return;
    };
    if rules.excluded(&file.path) {
        return;
    }
    // Judged by recomputation (`ima.boot_aggregate`), unless also pinned.
    if rules.boot_aggregate
        && e.index == 0
        && file.path == crate::policy::ima::BOOT_AGGREGATE
        && !rules.allowlist.contains_key(&file.path)
    {
        return;
    }
    *judged += 1;
    if let Some(verdict) = judge_signature(rules, e, file) {
        if let Err(c) = verdict {
            bad.push(c);
        }
        return;
    }
    let allowed = rules.allowlist.get(&file.path);
    let ok = allowed.is_some_and(|set| set.allows(&file.hash_alg, &file.digest));
    if !ok {
        let expected = match allowed {
            Some(set) => format!(
                "one of {}",
                set.iter()
                    .map(|(a, d)| format!("{}:{}", a.name(), hex::encode(d)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            None => "a path in the allowlist".to_string(),
        };
        bad.push(Claim::new(
            id,
            false,
            expected,
            format!(
                "{} {}:{}",
                file.path,
                file.hash_alg,
                hex::encode(&file.digest)
            ),
            location(),
        ));
    }
}

/// The `ima-sig` judgement of a file: `Some(Ok)` when a policy key signed it
/// (the allowlist is not needed), `Some(Err)` when it fails (a broken
/// signature, or one a `require_signature` rule does not accept), `None`
/// when the allowlist decides (no keyring, no signature, or a key the policy
/// does not have, outside `require_signature`).
fn judge_signature(
    rules: &ImaRules,
    e: &ImaEntry,
    file: &crate::eventlog::ima::FileMeasurement,
) -> Option<Result<(), Claim>> {
    use crate::ima_signature::{self, SignatureError};
    let required = rules.signature_rule(&file.path);
    let sig = file.signature.as_deref().filter(|s| !s.is_empty());
    let location = || format!("IMA entry #{} ({})", e.index, e.template.name());
    let names = |r: &crate::policy::ima::SignatureRule| r.keyring_names.join(", ");
    let fail = |expected: String, actual: String| {
        Some(Err(Claim::new(
            "ima.signature",
            false,
            expected,
            actual,
            location(),
        )))
    };
    let Some(sig) = sig.filter(|_| !rules.keyrings.is_empty()) else {
        return match required {
            Some(r) => fail(
                format!("{} signed by a key of keyring {}", file.path, names(r)),
                format!(
                    "{}: no IMA signature (template {})",
                    file.path,
                    e.template.name()
                ),
            ),
            None => None,
        };
    };
    let keyring = match required {
        Some(r) => &r.keyring,
        None => &rules.keyrings.all,
    };
    let expected = || match required {
        Some(r) => format!("{} signed by a key of keyring {}", file.path, names(r)),
        None => format!(
            "{} signed by a key of the policy's keyrings, or allowlisted",
            file.path
        ),
    };
    match ima_signature::verify(keyring, &file.hash_alg, &file.digest, sig) {
        Ok(_) => Some(Ok(())),
        Err(SignatureError::UnknownKey { key_id }) if required.is_none() => {
            // Another vendor's key: the allowlist decides.
            let _ = key_id;
            None
        }
        Err(err) => fail(expected(), format!("{}: {err}", file.path)),
    }
}

/// An `ima-buf` entry whose name `[ima.buffers]` lists: its buffer must hash
/// to its digest, and the digest must be listed.
fn judge_buffer(
    rules: &ImaRules,
    e: &ImaEntry,
    b: &crate::eventlog::ima::BufferMeasurement,
    bad: &mut Vec<Claim>,
) {
    let Some(allowed) = rules.buffers.get(&b.name) else {
        return;
    };
    if rules.excluded(&b.name) {
        return;
    }
    let location = format!("IMA entry #{} (ima-buf)", e.index);
    let alg = match b.hash_alg.as_str() {
        "sha1" => Some(HashAlg::Sha1),
        "sha256" => Some(HashAlg::Sha256),
        "sha384" => Some(HashAlg::Sha384),
        "sha512" => Some(HashAlg::Sha512),
        _ => None,
    };
    if alg.is_some_and(|a| a.digest(&b.buf) != b.digest) {
        bad.push(Claim::new(
            "ima.buffer",
            false,
            format!("{}: the buffer's {} is its digest", b.name, b.hash_alg),
            "the buffer does not hash to the logged digest",
            location,
        ));
        return;
    }
    if !allowed
        .iter()
        .any(|(a, d)| *a == b.hash_alg && *d == b.digest)
    {
        bad.push(Claim::new(
            "ima.buffer",
            false,
            format!(
                "{}: one of {}",
                b.name,
                allowed
                    .iter()
                    .map(|(a, d)| format!("{a}:{}", hex::encode(d)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            format!("{} {}:{}", b.name, b.hash_alg, hex::encode(&b.digest)),
            location,
        ));
    }
}

#[cfg(test)]
mod tests;
