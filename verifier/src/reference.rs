//! Reference policy sections written from a known-good node's logs. They read
//! the logs with the same fact extraction the verifier judges with
//! (`assay_core::eventlog::facts`), so a generated policy passes the evidence it
//! came from, and only that.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use assay_core::eventlog::efi::EV_SEPARATOR;
use assay_core::eventlog::facts;
use assay_core::eventlog::ima::ImaLog;
use assay_core::eventlog::uefi::{self, check_event_data, DataCheck, Event, EventLog};
use assay_core::tpm::public::HashAlg;

use anyhow::{bail, Context as _};
use assay_core::eventlog::ima;

fn sha256_of(e: &Event) -> Option<String> {
    e.digest(HashAlg::Sha256)
        .map(|d| format!("sha256:{}", hex::encode(d)))
}

fn list<I: IntoIterator<Item = String>>(items: I) -> String {
    let items: Vec<String> = items
        .into_iter()
        .map(|s| format!("  {},\n", toml_str(&s)))
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

/// `[measured_boot]` for this log: everything it shows, as the verifier reads it.
/// Facts from events whose data does not match their digest are left out, with
/// a comment saying so.
pub fn measured_boot_section(log: &EventLog) -> String {
    let mut out = String::from("\n[measured_boot]\n");
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
    // Every PCR the log extends, except 10 (IMA) and 11 and 15-23, which
    // systemd and user space go on extending after boot without this log.
    let pcrs: BTreeSet<u32> = log
        .events
        .iter()
        .filter(|e| !e.is_no_action() && matches!(e.pcr, 0..=9 | 12..=14))
        .map(|e| e.pcr)
        .collect();
    let pcrs: Vec<String> = pcrs.iter().map(u32::to_string).collect();
    let _ = writeln!(
        out,
        "# PCRs this log extends (10, 11 and 15-23 are extended after boot outside it)\npcrs = [{}]",
        pcrs.join(", ")
    );

    if let Some((e, v)) = facts::config_variable(log, "SecureBoot") {
        if proven(e, "secure_boot", &mut notes) {
            if let Some(on) = facts::secure_boot_state(&v.value) {
                let _ = writeln!(out, "secure_boot = {on}");
            }
        }
    }
    for (key, var) in [
        ("pk", "PK"),
        ("kek", "KEK"),
        ("db", "db"),
        ("dbx_required", "dbx"),
    ] {
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
        out.push_str(&format!("{key} = [\n"));
        for (fp, what) in entries {
            if seen.insert(fp) {
                let _ = writeln!(
                    out,
                    "  \"sha256:{}\",  # {}",
                    hex::encode(fp),
                    what.replace('\n', " ")
                );
            }
        }
        out.push_str("]\n");
    }

    let crtm: BTreeSet<String> = facts::crtm_versions(log)
        .into_iter()
        .filter(|(e, _)| proven(e, "crtm_versions", &mut notes))
        .filter_map(|(_, v)| v.ok())
        .collect();
    if !crtm.is_empty() {
        let _ = writeln!(out, "crtm_versions = {}", list(crtm));
    }
    let blobs: BTreeSet<String> = log
        .events
        .iter()
        .filter(|e| facts::is_firmware_blob(e))
        .filter_map(sha256_of)
        .collect();
    if !blobs.is_empty() {
        let _ = writeln!(out, "firmware_blobs = {}", list(blobs));
    }
    let mut apps = String::new();
    let mut seen = BTreeSet::new();
    for e in log.events.iter().filter(|e| facts::is_boot_application(e)) {
        if let Some(d) = sha256_of(e) {
            if seen.insert(d.clone()) {
                let path = facts::image_path(e).unwrap_or_else(|| "no device path".to_string());
                let _ = writeln!(apps, "  {},  # {}", toml_str(&d), path.replace('\n', " "));
            }
        }
    }
    if !apps.is_empty() {
        let _ = write!(out, "boot_applications = [\n{apps}]\n");
    }
    let cmdlines: BTreeSet<String> = facts::kernel_cmdlines(log)
        .into_iter()
        .filter(|(e, _)| proven(e, "kernel_cmdlines", &mut notes))
        .map(|(_, c)| c)
        .collect();
    if !cmdlines.is_empty() {
        let _ = writeln!(out, "kernel_cmdlines = {}", list(cmdlines));
    }
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
    out.push_str("\n[measured_boot.after_separator]\n");
    for pcr in log
        .events
        .iter()
        .filter(|e| e.event_type == EV_SEPARATOR && e.pcr <= 7)
        .map(|e| e.pcr)
        .collect::<BTreeSet<u32>>()
    {
        let types = after.remove(&pcr).unwrap_or_default();
        let types: Vec<String> = types.iter().map(|t| toml_str(t)).collect();
        let _ = writeln!(out, "\"{pcr}\" = [{}]", types.join(", "));
    }
    if !notes.is_empty() {
        out.push_str("# Notes from generation:\n");
        for n in notes {
            let _ = writeln!(out, "# - {}", n.replace('\n', " "));
        }
    }
    out
}

/// `[ima]` for this log: every measured file with the digests it was measured
/// with. Violations and entries whose template hash does not match are left out
/// with a comment.
pub fn ima_section(log: &ImaLog) -> String {
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
    let pcr = log.entries.first().map_or(10, |e| e.pcr);
    let mut out = format!("\n[ima]\npcr = {pcr}\nexcludes = []\n\n[ima.allowlist]\n");
    for (path, digests) in files {
        let digests: Vec<String> = digests.iter().map(|d| toml_str(d)).collect();
        let _ = writeln!(out, "{} = [{}]", toml_str(&path), digests.join(", "));
    }
    for n in notes {
        let _ = writeln!(out, "# {n}");
    }
    out
}

/// `[containers]` for this log: every measured runtime file with its digest and
/// every measured image by manifest digest. Records whose content is not proven
/// by their digest are left out with a comment.
pub fn containers_section(log: &assay_core::eventlog::cel::CelLog) -> String {
    use assay_core::eventlog::cel::Measurement;
    let pcr = log
        .records
        .first()
        .map_or(assay_core::eventlog::cel::DEFAULT_CEL_PCR, |r| r.pcr);
    let mut runtime: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut images: BTreeMap<String, String> = BTreeMap::new();
    let mut notes = Vec::new();
    for r in &log.records {
        if !r.content_proven() {
            notes.push(format!(
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
                runtime
                    .entry(path)
                    .or_default()
                    .insert(format!("sha256:{}", hex::encode(sha256)));
            }
            Ok(Measurement::Image {
                reference,
                manifest_digest,
                ..
            }) => {
                images.entry(manifest_digest).or_insert(reference);
            }
            Ok(Measurement::ContainerStart { .. }) => {}
            Err(e) => notes.push(format!("record #{}: {e}; not used", r.recnum)),
        }
    }
    let mut out = format!("\n[containers]\npcr = {pcr}\nallowed_images = [\n");
    for (digest, reference) in &images {
        let _ = writeln!(
            out,
            "  {},  # {}",
            toml_str(digest),
            reference.replace('\n', " ")
        );
    }
    out.push_str("]\n\n[containers.runtime]\n");
    for (path, digests) in &runtime {
        let digests: Vec<String> = digests.iter().map(|d| toml_str(d)).collect();
        let _ = writeln!(out, "{} = [{}]", toml_str(path), digests.join(", "));
    }
    for n in notes {
        let _ = writeln!(out, "# {n}");
    }
    out
}

/// A reference policy from a known-good node's evidence: its UEFI log (Secure
/// Boot state, PK/KEK/db, required dbx, CRTM, firmware blobs, boot applications,
/// kernel command lines, events after the separators) and its IMA log (every
/// measured file with its digest) and its container measurement log (runtime
/// files and images). Review it before use: it allows exactly what this node
/// booted and ran.
pub fn generate_policy(
    name: &str,
    uefi_log: Option<&[u8]>,
    ima_log: Option<&[u8]>,
    cel_log: Option<&[u8]>,
    pcrs: &[(u32, Vec<u8>)],
) -> anyhow::Result<String> {
    let mut out = format!(
        "# Reference policy generated by `assay-verifier policy generate` from a known-good\n\
         # node's evidence. It allows exactly what that node booted: review it, then widen\n\
         # lists (e.g. more boot applications or kernel command lines) as the fleet needs.\n\
         schema = 1\nname = {}\nversion = \"1\"\n",
        toml_str(name)
    );
    if uefi_log.is_none() && ima_log.is_none() && cel_log.is_none() {
        out.push_str("\n[pcrs.sha256]\n");
        for (i, v) in pcrs {
            out.push_str(&format!("{i} = \"{}\"\n", hex::encode(v)));
        }
        return Ok(out);
    }
    if let Some(bytes) = uefi_log {
        let log = uefi::parse(bytes, &uefi::Limits::default()).context("UEFI event log")?;
        // A reference must be self-consistent: the log must replay to the PCR
        // values the node reported with its quote.
        let replay = uefi::replay(&log);
        // (Only the PCRs a generated policy replays: see `reference`.)
        for (i, quoted) in pcrs.iter().filter(|(i, _)| matches!(i, 0..=9 | 12..=14)) {
            if let Some(replayed) = replay.pcr(HashAlg::Sha256, *i) {
                if replayed != quoted.as_slice() {
                    bail!(
                        "the UEFI log replays PCR {i} to {}, but the evidence reports {}: \
                         the log is not the one this TPM measured; no reference policy from it",
                        hex::encode(replayed),
                        hex::encode(quoted)
                    );
                }
            }
        }
        out.push_str(&measured_boot_section(&log));
    }
    if let Some(bytes) = ima_log {
        let log = ima::parse(bytes, &ima::Limits::default()).context("IMA log")?;
        out.push_str(&ima_section(&log));
    }
    if let Some(bytes) = cel_log {
        let log = assay_core::eventlog::cel::parse(bytes, &Default::default())
            .context("container measurement log")?;
        out.push_str(&containers_section(&log));
    }
    Ok(out)
}

/// A TOML basic string.
pub fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}
