//! `[ima]` claims: replay the IMA log against the quoted IMA PCR, then judge
//! every measured file the quote covers against the allowlist.
//!
//! The kernel keeps measuring after the quote, so the log a node sends may run
//! past the quoted state. The verifier looks for the prefix of the log whose
//! replay equals the quoted PCR; entries after it are not covered by this quote
//! and are not judged (the next attestation covers them). If no prefix matches,
//! the log is not the one the TPM measured and nothing in it is judged.

use crate::eventlog::ima::{self, ImaEntry, ImaLog};
use crate::eventlog::uefi::extend;
use crate::policy::ima::ImaRules;
use crate::tpm::public::HashAlg;
use crate::verdict::Claim;

/// Most failing entries listed one claim each; the rest are counted in one claim.
const MAX_LISTED: usize = 32;

pub(super) fn claims(
    rules: &ImaRules,
    log: Option<&[u8]>,
    quoted: &[(u32, Vec<u8>)],
) -> Vec<Claim> {
    let present = "an IMA runtime measurement log (ascii or binary)";
    let Some(bytes) = log else {
        return vec![Claim::new(
            "eventlog.ima.present",
            false,
            present,
            "no IMA log in the evidence",
            "evidence",
        )];
    };
    let log = match ima::parse(bytes, &ima::Limits::default()) {
        Ok(log) => log,
        Err(e) => {
            return vec![Claim::new(
                "eventlog.ima.format",
                false,
                present,
                e.to_string(),
                "IMA log",
            )]
        }
    };
    let pcr = rules.pcr;
    let location = format!("PCR sha256:{pcr}");
    let id = format!("eventlog.ima.replay.{pcr}");
    let Some(quoted) = quoted.iter().find(|(i, _)| *i == pcr).map(|(_, v)| v) else {
        return vec![Claim::new(
            id,
            false,
            "the IMA PCR in the quote",
            "not quoted",
            location,
        )];
    };
    let covered = match covered_prefix(&log, pcr, quoted) {
        Ok(n) => n,
        Err(why) => return vec![Claim::new(id, false, hex::encode(quoted), why, location)],
    };
    let entries: Vec<&ImaEntry> = log
        .entries
        .iter()
        .filter(|e| e.pcr == pcr)
        .take(covered)
        .collect();
    let mut out = vec![Claim::new(
        id,
        true,
        hex::encode(quoted),
        format!(
            "the first {covered} of {} entries replay to it",
            log.entries.iter().filter(|e| e.pcr == pcr).count()
        ),
        location,
    )];
    out.extend(file_claims(rules, &entries));
    out
}

/// How many of the log's entries for `pcr` the quoted value covers.
fn covered_prefix(log: &ImaLog, pcr: u32, quoted: &[u8]) -> Result<usize, String> {
    let bank = HashAlg::Sha256;
    let mut value = vec![0u8; bank.digest_len()];
    if value == quoted {
        return Ok(0);
    }
    let mut n = 0usize;
    for entry in log.entries.iter().filter(|e| e.pcr == pcr) {
        let digest = entry
            .extend_digest(bank)
            .map_err(|e| format!("entry {} cannot be replayed in sha256: {e}", entry.index))?;
        value = extend(bank, &value, &digest);
        n += 1;
        if value == quoted {
            return Ok(n);
        }
    }
    Err(format!(
        "no prefix of the log's {n} entries replays to the quoted value (full replay {}): an entry was changed, removed, reordered or added",
        hex::encode(&value)
    ))
}

fn file_claims(rules: &ImaRules, entries: &[&ImaEntry]) -> Vec<Claim> {
    let id = "ima.file";
    let mut bad = Vec::new();
    let mut judged = 0usize;
    for e in entries {
        let location = format!("IMA entry #{} ({})", e.index, e.template.name());
        if e.is_violation() {
            let path = e.path().unwrap_or("?");
            if !rules.excluded(path) {
                bad.push(Claim::new(
                    id,
                    false,
                    "no measurement violations",
                    format!("{path}: violation (file opened for write while measured, or ToMToU)"),
                    location,
                ));
            }
            continue;
        }
        if e.template_hash_matches() == Some(false) {
            bad.push(Claim::new(
                id,
                false,
                "template hash = SHA-1 of the template data",
                "the entry's data is not what was measured",
                location,
            ));
            continue;
        }
        let Some(file) = e.file() else { continue };
        if rules.excluded(&file.path) {
            continue;
        }
        judged += 1;
        let allowed = rules.allowlist.get(&file.path);
        // Sets hold one or two digests: scanning beats building an owned key.
        let ok = allowed.is_some_and(|set| {
            set.iter()
                .any(|(alg, d)| *alg == file.hash_alg && *d == file.digest)
        });
        if !ok {
            let expected = match allowed {
                Some(set) => format!(
                    "one of {}",
                    set.iter()
                        .map(|(a, d)| format!("{a}:{}", hex::encode(d)))
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
                location,
            ));
        }
    }
    if bad.is_empty() {
        return vec![Claim::new(
            id,
            true,
            "every measured file allowed",
            format!("{judged} files judged, all allowed"),
            "IMA log",
        )];
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
    bad
}

#[cfg(test)]
mod tests;
