//! `[containers]` claims: replay the container measurement log (CEL) into its
//! PCR, starting from what the UEFI log put there at boot, find the prefix the
//! quote covers, then judge each covered record whose content its digest proves.
//!
//! As with IMA, the attestor keeps measuring after the quote: records past the
//! quoted state are not judged now (the next attestation covers them). A log
//! no prefix of which reaches the quoted value is not the one the TPM measured,
//! and nothing in it is judged.

use std::collections::BTreeSet;

use crate::eventlog::cel::{self, Measurement, Record};
use crate::eventlog::uefi;
use crate::policy::containers::ContainerRules;
use crate::tpm::public::HashAlg;
use crate::verdict::Claim;

/// Most failing records listed one claim each; the rest are counted.
const MAX_LISTED: usize = 32;

/// `[containers]` claims; `boot` is the UEFI log's sha256 replay (what the
/// firmware put into the CEL's PCR before the runtime), if there is a log.
pub(super) fn claims_parsed(
    rules: &ContainerRules,
    cel_log: Option<&[u8]>,
    boot: Option<&uefi::Replay>,
    quoted: &[(u32, Vec<u8>)],
) -> Vec<Claim> {
    let present = "a container measurement log (TCG CEL TLV)";
    let Some(bytes) = cel_log else {
        return vec![Claim::new(
            "eventlog.cel.present",
            false,
            present,
            "no container measurement log in the evidence",
            "evidence",
        )];
    };
    let log = match cel::parse(bytes, &cel::Limits::default()) {
        Ok(log) => log,
        Err(e) => {
            return vec![Claim::new(
                "eventlog.cel.format",
                false,
                present,
                e.to_string(),
                "CEL log",
            )]
        }
    };
    let pcr = rules.pcr;
    let id = format!("eventlog.cel.replay.{pcr}");
    let location = format!("PCR sha256:{pcr}");
    if let Some(r) = log.records.iter().find(|r| r.pcr != pcr) {
        return vec![Claim::new(
            "eventlog.cel.format",
            false,
            format!("every record in PCR {pcr}"),
            format!("record {} is for PCR {}", r.recnum, r.pcr),
            loc(r),
        )];
    }
    let Some(quoted) = quoted.iter().find(|(i, _)| *i == pcr).map(|(_, v)| v) else {
        return vec![Claim::new(
            id,
            false,
            "the CEL PCR in the quote",
            "not quoted",
            location,
        )];
    };
    let initial = boot_value(boot, pcr);
    let covered = match covered_prefix(&log.records, &initial, quoted) {
        Ok(n) => n,
        Err(why) => return vec![Claim::new(id, false, hex::encode(quoted), why, location)],
    };
    let records = log.records.get(..covered).unwrap_or_default();
    let mut out = vec![Claim::new(
        id,
        true,
        hex::encode(quoted),
        format!(
            "the first {covered} of {} records replay to it",
            log.records.len()
        ),
        location,
    )];
    let mut judged: Vec<(&Record, Measurement)> = Vec::new();
    let mut bad = Vec::new();
    for r in records {
        if !r.content_proven() {
            bad.push(Claim::new(
                "containers.record",
                false,
                "record content = what its digest measured",
                "the content is not what was measured (digest is not the hash of the content TLV)",
                loc(r),
            ));
            continue;
        }
        match r.measurement() {
            Ok(m) => judged.push((r, m)),
            Err(why) => bad.push(Claim::new(
                "containers.record",
                false,
                "an Assay measurement",
                why,
                loc(r),
            )),
        }
    }
    out.extend(truncate(bad));
    if let Some(table) = &rules.runtime {
        out.extend(runtime_claims(table, &judged));
    }
    out.extend(image_claims(rules, &judged));
    out.extend(start_claims(rules, &judged));
    out
}

fn loc(r: &Record) -> String {
    format!("CEL record #{}", r.recnum)
}

/// What the UEFI log put into `pcr` at boot (systemd, for one, measures into
/// PCR 13), or the reset value.
fn boot_value(boot: Option<&uefi::Replay>, pcr: u32) -> Vec<u8> {
    let bank = HashAlg::Sha256;
    boot.and_then(|replay| replay.pcr(bank, pcr).map(<[u8]>::to_vec))
        .unwrap_or_else(|| vec![0; bank.digest_len()])
}

fn covered_prefix(records: &[Record], initial: &[u8], quoted: &[u8]) -> Result<usize, String> {
    let bank = HashAlg::Sha256;
    let mut value = initial.to_vec();
    if value == quoted {
        return Ok(0);
    }
    for (n, r) in records.iter().enumerate() {
        let d = r
            .digest(bank)
            .ok_or_else(|| format!("record {} carries no sha256 digest", r.recnum))?;
        value = uefi::extend(bank, &value, d);
        if value == quoted {
            return Ok(n + 1);
        }
    }
    let mut why = format!(
        "no prefix of the log's {} records replays to the quoted value (full replay {})",
        records.len(),
        hex::encode(&value)
    );
    match records.iter().find(|r| !r.content_proven()) {
        Some(r) => why.push_str(&format!(
            "; record {}'s digest is not the hash of its content",
            r.recnum
        )),
        None => why.push_str(": a record was changed, removed or added"),
    }
    Err(why)
}

fn runtime_claims(
    table: &std::collections::BTreeMap<String, BTreeSet<[u8; 32]>>,
    judged: &[(&Record, Measurement)],
) -> Vec<Claim> {
    let id = "containers.runtime";
    let mut bad = Vec::new();
    let mut seen = 0usize;
    for (r, m) in judged {
        let (Measurement::RuntimeBinary { path, sha256 }
        | Measurement::RuntimeConfig { path, sha256 }) = m
        else {
            continue;
        };
        seen += 1;
        let allowed = table.get(path);
        if !allowed.is_some_and(|s| s.contains(sha256)) {
            let expected = match allowed {
                Some(s) => format!(
                    "{path} with one of {}",
                    s.iter()
                        .map(|d| format!("sha256:{}", hex::encode(d)))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                None => "a runtime path in the policy".to_string(),
            };
            bad.push(Claim::new(
                id,
                false,
                expected,
                format!("{path} sha256:{}", hex::encode(sha256)),
                loc(r),
            ));
        }
    }
    if bad.is_empty() {
        return vec![Claim::new(
            id,
            true,
            "allowed runtime binaries and configs",
            format!("{seen} measured, all allowed"),
            "CEL log",
        )];
    }
    truncate(bad)
}

fn image_claims(rules: &ContainerRules, judged: &[(&Record, Measurement)]) -> Vec<Claim> {
    let id = "containers.image";
    let mut bad = Vec::new();
    let mut seen = 0usize;
    for (r, m) in judged {
        let Measurement::Image {
            reference,
            manifest_digest,
            config_digest,
        } = m
        else {
            continue;
        };
        seen += 1;
        let actual = format!("{reference} {manifest_digest}");
        if let Some(d) = [Some(manifest_digest), config_digest.as_ref()]
            .into_iter()
            .flatten()
            .find(|d| rules.denied_images.contains(*d))
        {
            bad.push(Claim::new(
                id,
                false,
                "no denied image",
                format!("{actual}: {d} is denied"),
                loc(r),
            ));
        } else if rules.judges_images() && !rules.image_allowed(reference, manifest_digest) {
            bad.push(Claim::new(
                id,
                false,
                "an allowed image digest or repository",
                format!("{actual}: not allowed"),
                loc(r),
            ));
        }
    }
    if bad.is_empty() {
        return vec![Claim::new(
            id,
            true,
            "allowed images only",
            format!("{seen} measured, none denied or disallowed"),
            "CEL log",
        )];
    }
    truncate(bad)
}

fn start_claims(rules: &ContainerRules, judged: &[(&Record, Measurement)]) -> Vec<Claim> {
    let id = "containers.start";
    let mut bad = Vec::new();
    let mut seen = 0usize;
    for (i, (r, m)) in judged.iter().enumerate() {
        let Measurement::ContainerStart {
            container_id,
            image_digest,
            ..
        } = m
        else {
            continue;
        };
        seen += 1;
        let Some(image_digest) = image_digest else {
            if rules.require_measured_starts {
                bad.push(Claim::new(
                    id,
                    false,
                    "containers start from measured, allowed images",
                    format!("container {container_id}: started without an image (a bare root filesystem)"),
                    loc(r),
                ));
            }
            continue;
        };
        let actual = format!("container {container_id} from {image_digest}");
        // The image record this start refers to, measured before it.
        let image = judged
            .get(..i)
            .unwrap_or_default()
            .iter()
            .rev()
            .find_map(|(_, m)| match m {
                Measurement::Image {
                    reference,
                    manifest_digest,
                    ..
                } if manifest_digest == image_digest => Some(reference),
                _ => None,
            });
        let why = if rules.denied_images.contains(image_digest) {
            Some("its image is denied".to_string())
        } else {
            match image {
                None if rules.require_measured_starts => {
                    Some("its image was not measured before it started".to_string())
                }
                Some(reference)
                    if rules.judges_images() && !rules.image_allowed(reference, image_digest) =>
                {
                    Some(format!("its image {reference} is not allowed"))
                }
                _ => None,
            }
        };
        if let Some(why) = why {
            bad.push(Claim::new(
                id,
                false,
                "containers start from measured, allowed images",
                format!("{actual}: {why}"),
                loc(r),
            ));
        }
    }
    if bad.is_empty() {
        return vec![Claim::new(
            id,
            true,
            "containers start from measured, allowed images",
            format!("{seen} starts, all from measured images"),
            "CEL log",
        )];
    }
    truncate(bad)
}

fn truncate(mut bad: Vec<Claim>) -> Vec<Claim> {
    if bad.len() > MAX_LISTED {
        let more = bad.len() - MAX_LISTED;
        bad.truncate(MAX_LISTED);
        if let Some(last) = bad.last().cloned() {
            bad.push(Claim::new(
                last.id,
                false,
                last.expected,
                format!("and {more} more like these"),
                "CEL log",
            ));
        }
    }
    bad
}

#[cfg(test)]
mod tests;
