//! `[measured_boot]` claims: replay the UEFI event log against the quoted PCRs,
//! then judge the events of the PCRs that replayed correctly.
//!
//! Trust flows in one direction: the quote proves the PCR values; a matching
//! replay proves the digests of that PCR's events; a digest that is the hash of
//! the event data (variables, separators, IPL strings…) proves the data. A claim
//! that needs an event whose PCR did not replay, or whose data is not proven,
//! fails and names the event, whatever the event says.

use std::collections::{BTreeMap, BTreeSet};

use crate::eventlog::efi::{self, EventData, Separator, VariableData, EV_SEPARATOR};
use crate::eventlog::facts;
use crate::eventlog::uefi::{self, check_event_data, event_type_name, DataCheck, Event, EventLog};
use crate::policy::measured_boot::MeasuredBootRules;
use crate::tpm::public::HashAlg;
use crate::verdict::Claim;

/// Most failing events listed one by one per rule; the rest are counted.
const MAX_LISTED: usize = 32;

/// The log, parsed and replayed, with what each event may be trusted for.
struct Judged<'a> {
    log: &'a EventLog,
    /// PCRs whose replay equals the quoted value.
    trusted_pcrs: BTreeSet<u32>,
}

impl Judged<'_> {
    /// Why the event's digest cannot be relied on, if it cannot.
    fn digest_untrusted(&self, e: &Event) -> Option<String> {
        (!self.trusted_pcrs.contains(&e.pcr)).then(|| {
            format!(
                "event #{} is in PCR {}, which {}",
                e.num,
                e.pcr,
                "did not replay to the quoted value (or is not replayed by this policy)"
            )
        })
    }

    /// Why the event's data cannot be relied on, if it cannot.
    fn data_untrusted(&self, e: &Event) -> Option<String> {
        if let Some(why) = self.digest_untrusted(e) {
            return Some(why);
        }
        match check_event_data(e) {
            DataCheck::Verified => None,
            DataCheck::Mismatch { bank } => Some(format!(
                "event #{}'s {bank} digest is not the hash of its data: the data is not what was measured",
                e.num
            )),
            DataCheck::NotDigestOfData => Some(format!(
                "event #{} ({}) is not measured as the hash of its data",
                e.num,
                type_name(e.event_type)
            )),
        }
    }
}

fn type_name(t: u32) -> String {
    event_type_name(t).map_or_else(|| format!("event type {t:#x}"), str::to_string)
}

fn loc(e: &Event) -> String {
    format!(
        "UEFI event #{} (PCR {}, {})",
        e.num,
        e.pcr,
        type_name(e.event_type)
    )
}

/// Every `[measured_boot]` claim for this evidence: `parsed` is the UEFI log
/// parsed (and its sha256 bank replayed) once for every rule set that reads
/// it, `quoted` the sha256 PCR values the quote proved.
pub(super) fn claims_parsed(
    rules: &MeasuredBootRules,
    parsed: Option<&super::ParsedUefi>,
    quoted: &[(u32, Vec<u8>)],
) -> Vec<Claim> {
    let mut out = Vec::new();
    let present = "a UEFI event log (TCG PC Client, crypto-agile or SHA-1)";
    let Some(parsed) = parsed else {
        out.push(Claim::new(
            "eventlog.uefi.present",
            false,
            present,
            "no UEFI event log in the evidence",
            "evidence",
        ));
        return out;
    };
    let (log, replay) = match &parsed.0 {
        Ok((log, replay)) => (log, replay),
        Err(e) => {
            out.push(Claim::new(
                "eventlog.uefi.format",
                false,
                present,
                e.to_string(),
                "UEFI event log",
            ));
            return out;
        }
    };
    if !log.banks().contains(&HashAlg::Sha256.to_tpm()) {
        out.push(Claim::new(
            "eventlog.uefi.format",
            false,
            "a log with a sha256 bank (the quote covers sha256 PCRs)",
            format!("banks {:?} only", log.banks()),
            "UEFI event log, Spec ID event",
        ));
        return out;
    }
    let mut trusted_pcrs = BTreeSet::new();
    for pcr in &rules.pcrs {
        let claim = replay_claim(log, replay, *pcr, quoted);
        if claim.passed {
            trusted_pcrs.insert(*pcr);
        }
        out.push(claim);
    }
    let j = Judged { log, trusted_pcrs };
    separator_claims(rules, &j, &mut out);
    if let Some(expected) = rules.secure_boot {
        out.push(secure_boot_claim(expected, &j));
    }
    for (name, allowed) in [("PK", &rules.pk), ("KEK", &rules.kek), ("db", &rules.db)] {
        if let Some(allowed) = allowed {
            out.push(signature_db_claim(name, allowed, &j));
        }
    }
    if !rules.dbx_required.is_empty() {
        out.push(dbx_claim(&rules.dbx_required, &j));
    }
    if let Some(allowed) = &rules.crtm_versions {
        out.extend(crtm_claims(allowed, &j));
    }
    if let Some(allowed) = &rules.firmware_blobs {
        out.extend(digest_rule(
            "measured_boot.firmware_blob",
            "an allowed firmware blob digest",
            allowed,
            &j,
            facts::is_firmware_blob,
        ));
    }
    if let Some(allowed) = &rules.boot_applications {
        out.extend(digest_rule(
            "measured_boot.boot_application",
            "an allowed boot application (PCR 4 Authenticode digest)",
            allowed,
            &j,
            facts::is_boot_application,
        ));
    }
    if rules.judges_cmdline() {
        out.extend(cmdline_claims(rules, &j));
    }
    if let Some(allowed) = &rules.after_separator {
        out.extend(after_separator_claims(allowed, &j));
    }
    out
}

fn replay_claim(
    log: &EventLog,
    replay: &uefi::Replay,
    pcr: u32,
    quoted: &[(u32, Vec<u8>)],
) -> Claim {
    let id = format!("eventlog.uefi.replay.{pcr}");
    let location = format!("PCR sha256:{pcr}");
    let Some(quoted) = quoted.iter().find(|(i, _)| *i == pcr).map(|(_, v)| v) else {
        return Claim::new(id, false, "the PCR in the quote", "not quoted", location);
    };
    let replayed = replay.pcr(HashAlg::Sha256, pcr).map_or_else(
        || uefi::initial_pcr_value(HashAlg::Sha256, pcr, log.startup_locality),
        <[u8]>::to_vec,
    );
    if replayed == *quoted {
        return Claim::new(
            id,
            true,
            hex::encode(quoted),
            hex::encode(&replayed),
            location,
        );
    }
    let events: Vec<&Event> = log
        .events
        .iter()
        .filter(|e| e.pcr == pcr && !e.is_no_action())
        .collect();
    let mut why = format!(
        "log replays to {} over {} events",
        hex::encode(&replayed),
        events.len()
    );
    if let Some(num) = uefi::first_event_past_quoted(log, HashAlg::Sha256, pcr, quoted) {
        why.push_str(&format!(
            "; the quoted value is the log's state before event #{num}: events from #{num} on were not measured into the TPM"
        ));
    } else if let Some(e) = events
        .iter()
        .find(|e| matches!(check_event_data(e), DataCheck::Mismatch { .. }))
    {
        why.push_str(&format!(
            "; event #{} ({}) carries a digest that is not the hash of its data",
            e.num,
            type_name(e.event_type)
        ));
    } else if events.iter().any(|e| e.digest(HashAlg::Sha256).is_none()) {
        why.push_str("; some events carry no sha256 digest");
    } else {
        why.push_str("; an event was changed, removed, reordered or added (no prefix of the log reaches the quoted value)");
    }
    Claim::new(id, false, hex::encode(quoted), why, location)
}

fn separator_claims(rules: &MeasuredBootRules, j: &Judged<'_>, out: &mut Vec<Claim>) {
    let mut bad = Vec::new();
    for e in j.log.events.iter().filter(|e| e.event_type == EV_SEPARATOR) {
        match efi::decode(e.event_type, &e.data) {
            Ok(EventData::Separator(Separator::Normal)) => {}
            Ok(EventData::Separator(Separator::Error | Separator::AllOnes))
                if rules.allow_error_separators => {}
            Ok(EventData::Separator(Separator::Error)) => bad.push(format!(
                "{}: error separator (the firmware reports a measurement failure)",
                loc(e)
            )),
            Ok(EventData::Separator(Separator::AllOnes)) => bad.push(format!(
                "{}: 0xffffffff separator (older TCG specs' value, read by some tools as an error)",
                loc(e)
            )),
            other => bad.push(format!("{}: malformed separator ({other:?})", loc(e))),
        }
    }
    let n = bad.len();
    out.push(Claim::new(
        "measured_boot.separators",
        bad.is_empty(),
        "normal separators only",
        if bad.is_empty() {
            "all separators normal".to_string()
        } else {
            listed(bad)
        },
        if n == 0 {
            "UEFI event log".to_string()
        } else {
            format!("{n} separator events")
        },
    ));
}

/// The last `EV_EFI_VARIABLE_DRIVER_CONFIG` event in PCR 7 for `name`, if its
/// data is proven.
fn config_variable<'a>(j: &'a Judged<'_>, name: &str) -> Result<(&'a Event, VariableData), String> {
    let (e, v) = facts::config_variable(j.log, name)
        .ok_or_else(|| format!("no {name} variable measured in PCR 7"))?;
    if let Some(why) = j.data_untrusted(e) {
        return Err(why);
    }
    Ok((e, v))
}

fn secure_boot_claim(expected: bool, j: &Judged<'_>) -> Claim {
    let want = if expected {
        "SecureBoot enabled"
    } else {
        "SecureBoot disabled"
    };
    match config_variable(j, "SecureBoot") {
        Ok((e, v)) => {
            let (ok, actual) = match facts::secure_boot_state(&v.value) {
                Some(on) => (
                    on == expected,
                    if on {
                        "SecureBoot enabled"
                    } else {
                        "SecureBoot disabled"
                    }
                    .to_string(),
                ),
                None => (false, format!("unexpected SecureBoot data {:?}", v.value)),
            };
            Claim::new("measured_boot.secure_boot", ok, want, actual, loc(e))
        }
        Err(why) => Claim::new("measured_boot.secure_boot", false, want, why, "PCR 7"),
    }
}

fn signature_db_claim(name: &str, allowed: &BTreeSet<[u8; 32]>, j: &Judged<'_>) -> Claim {
    let id = format!("measured_boot.{}", name.to_lowercase());
    let expected = format!("every {name} entry among the {} allowed", allowed.len());
    match config_variable(j, name) {
        Ok((e, v)) => {
            let Some(entries) = facts::signature_entries(&v.value) else {
                return Claim::new(id, false, expected, "not an EFI signature list", loc(e));
            };
            let bad: Vec<String> = entries
                .iter()
                .filter(|(fp, _)| !allowed.contains(fp))
                .map(|(fp, d)| format!("sha256:{} ({d})", hex::encode(fp)))
                .collect();
            let actual = if bad.is_empty() {
                format!("{} entries, all allowed", entries.len())
            } else {
                format!("not allowed: {}", listed(bad.clone()))
            };
            Claim::new(
                id,
                bad.is_empty() && !entries.is_empty(),
                expected,
                actual,
                loc(e),
            )
        }
        Err(why) => Claim::new(id, false, expected, why, "PCR 7"),
    }
}

fn dbx_claim(required: &BTreeSet<[u8; 32]>, j: &Judged<'_>) -> Claim {
    let expected = format!("dbx contains the {} required revocations", required.len());
    match config_variable(j, "dbx") {
        Ok((e, v)) => {
            let have: BTreeSet<[u8; 32]> = facts::signature_entries(&v.value)
                .unwrap_or_default()
                .into_iter()
                .map(|(fp, _)| fp)
                .collect();
            let missing: Vec<String> = required
                .iter()
                .filter(|r| !have.contains(*r))
                .map(|r| format!("sha256:{}", hex::encode(r)))
                .collect();
            let actual = if missing.is_empty() {
                format!("all present among {} dbx entries", have.len())
            } else {
                format!("missing: {}", listed(missing.clone()))
            };
            Claim::new(
                "measured_boot.dbx",
                missing.is_empty(),
                expected,
                actual,
                loc(e),
            )
        }
        Err(why) => Claim::new("measured_boot.dbx", false, expected, why, "PCR 7"),
    }
}

fn crtm_claims(allowed: &BTreeSet<String>, j: &Judged<'_>) -> Vec<Claim> {
    let expected = format!("a CRTM version among {allowed:?}");
    let mut out = Vec::new();
    for (e, version) in facts::crtm_versions(j.log) {
        let actual = match j.data_untrusted(e) {
            Some(why) => Err(why),
            None => version,
        };
        let ok = actual.as_ref().is_ok_and(|v| allowed.contains(v));
        out.push(Claim::new(
            "measured_boot.crtm_version",
            ok,
            expected.clone(),
            actual.unwrap_or_else(|e| e),
            loc(e),
        ));
    }
    if out.is_empty() {
        out.push(Claim::new(
            "measured_boot.crtm_version",
            false,
            expected,
            "no EV_S_CRTM_VERSION event",
            "PCR 0",
        ));
    }
    out
}

/// A rule over event digests (sha256 bank): every matching event must carry an
/// allowed digest. One claim per offending event, or one passing claim.
fn digest_rule(
    id: &str,
    expected: &str,
    allowed: &BTreeSet<[u8; 32]>,
    j: &Judged<'_>,
    select: impl Fn(&Event) -> bool,
) -> Vec<Claim> {
    let mut bad = Vec::new();
    let mut seen = 0usize;
    for e in j.log.events.iter().filter(|e| select(e)) {
        seen += 1;
        let digest = e.digest(HashAlg::Sha256).unwrap_or_default();
        let actual = format!("sha256:{}{}", hex::encode(digest), describe_image(e));
        if let Some(why) = j.digest_untrusted(e) {
            bad.push(Claim::new(
                id,
                false,
                expected,
                format!("{actual}; {why}"),
                loc(e),
            ));
        } else if !<[u8; 32]>::try_from(digest).is_ok_and(|d| allowed.contains(&d)) {
            bad.push(Claim::new(id, false, expected, actual, loc(e)));
        }
    }
    if bad.is_empty() {
        return vec![Claim::new(
            id,
            seen > 0,
            expected,
            format!("{seen} events, all allowed"),
            "UEFI event log",
        )];
    }
    truncate_claims(bad)
}

/// Device-path text of an image load event, for people reading the verdict.
fn describe_image(e: &Event) -> String {
    facts::image_path(e)
        .map(|t| format!(" ({t})"))
        .unwrap_or_default()
}

/// Kernel command lines, each with why it cannot be relied on if it cannot.
fn kernel_cmdlines<'a>(j: &'a Judged<'_>) -> Vec<(&'a Event, Result<String, String>)> {
    facts::kernel_cmdlines(j.log)
        .into_iter()
        .map(|(e, cmdline)| match j.data_untrusted(e) {
            Some(why) => (e, Err(format!("{cmdline:?}; {why}"))),
            None => (e, Ok(cmdline)),
        })
        .collect()
}

fn cmdline_claims(rules: &MeasuredBootRules, j: &Judged<'_>) -> Vec<Claim> {
    let mut expected = Vec::new();
    if let Some(exact) = &rules.kernel_cmdlines {
        expected.push(format!("one of {exact:?}"));
    }
    for p in &rules.kernel_cmdline_patterns {
        expected.push(format!("matching /{}/", p.as_str()));
    }
    let expected = format!("a kernel command line {}", expected.join(" or "));
    let found = kernel_cmdlines(j);
    if found.is_empty() {
        return vec![Claim::new(
            "measured_boot.kernel_cmdline",
            false,
            expected,
            "no kernel command line measured (grub `kernel_cmdline:` or systemd-boot EV_IPL)",
            "PCRs 8, 12",
        )];
    }
    found
        .into_iter()
        .map(|(e, value)| {
            let ok = value.as_ref().is_ok_and(|c| {
                rules
                    .kernel_cmdlines
                    .as_ref()
                    .is_some_and(|s| s.contains(c))
                    || rules.kernel_cmdline_patterns.iter().any(|p| p.is_match(c))
            });
            let actual = match value {
                Ok(c) => format!("{c:?}"),
                Err(why) => why,
            };
            Claim::new(
                "measured_boot.kernel_cmdline",
                ok,
                expected.clone(),
                actual,
                loc(e),
            )
        })
        .collect()
}

fn after_separator_claims(allowed: &BTreeMap<u32, BTreeSet<u32>>, j: &Judged<'_>) -> Vec<Claim> {
    let id = "measured_boot.after_separator";
    let mut bad = Vec::new();
    for (e, _) in facts::after_separator(j.log) {
        let ok = allowed
            .get(&e.pcr)
            .is_some_and(|t| t.contains(&e.event_type));
        if !ok {
            let allowed_here: Vec<String> = allowed
                .get(&e.pcr)
                .map(|t| t.iter().map(|t| type_name(*t)).collect())
                .unwrap_or_default();
            bad.push(Claim::new(
                id,
                false,
                format!("after PCR {}'s separator only {allowed_here:?}", e.pcr),
                format!("unexpected {}", type_name(e.event_type)),
                loc(e),
            ));
        }
    }
    if bad.is_empty() {
        return vec![Claim::new(
            id,
            true,
            "only allowed events after the separators",
            "none unexpected",
            "PCRs 0-7",
        )];
    }
    truncate_claims(bad)
}

/// Keeps a verdict bounded: the first failures in full, then one claim counting the rest.
fn truncate_claims(mut bad: Vec<Claim>) -> Vec<Claim> {
    if bad.len() > MAX_LISTED {
        let more = bad.len() - MAX_LISTED;
        bad.truncate(MAX_LISTED);
        if let Some(last) = bad.last().cloned() {
            bad.push(Claim::new(
                last.id,
                false,
                last.expected,
                format!("and {more} more like these"),
                "UEFI event log",
            ));
        }
    }
    bad
}

fn listed(mut items: Vec<String>) -> String {
    let n = items.len();
    if n > MAX_LISTED {
        items.truncate(MAX_LISTED);
        items.push(format!("and {} more", n - MAX_LISTED));
    }
    items.join("; ")
}

#[cfg(test)]
mod tests;
