//! Each `[measured_boot]` check, and the attack it stops, on a real log (GCE
//! Ubuntu 21.04, tpm2-tools' corpus) with a quote made to match its replay.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use crate::eventlog::uefi::{self, encode, hash, Event, EventLog, Limits};
use crate::policy::Policy;
use crate::tpm::public::HashAlg;
use crate::verify::testutil::{shared_rsa_ak, Scenario};
use crate::verify::QuoteOutcome;

const GCE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/data/eventlogs/tpm2-tools/event-gce-ubuntu-2104-log.bin"
);
const PCRS: &str = "pcrs = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 14]";
const PK: &str = "sha256:d1d217acf60ba4e4a890210322d006d673c0b82de9d65ad7f2d55897635429e2";
const KEK: &str = "sha256:a1117f516a32cefcba3f2d1ace10a87972fd6bbe8fe0d0b996e09e65d802a503";
const SHIM: &str = "sha256:d99c93fcb042dbe52707bbde371c75fcf081dd5b0c88a195d44cc57536f6f521";
const GRUB: &str = "sha256:b0a836fec2faf4a9bea0e1a5f1945bc86ddc03ac98ce0ae172ed9b1e536d7595";
const CMDLINE: &str = "/boot/vmlinuz-5.11.0-1008-gcp root=PARTUUID=bf817bdf-6a3a-4221-8edb-2c1ca7c5537f ro scsi_mod.use_blk_mq=Y ima_hash=sha256 console=ttyS0 panic=-1";

fn gce() -> EventLog {
    uefi::parse(&std::fs::read(GCE).unwrap(), &Limits::default()).unwrap()
}

fn policy(rules: &str) -> Policy {
    let text = format!("schema = 1\nname = \"t\"\n[measured_boot]\n{PCRS}\n{rules}\n");
    Policy::parse("t.toml", &text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// The sha256 values the log replays to, for the policy's PCRs: what an honest
/// TPM that measured this boot would quote.
fn quoted_for(log: &EventLog, p: &Policy) -> Vec<(u32, Vec<u8>)> {
    crate::verify::testutil::replayed_pcrs_of(log, &p.pcr_selection())
}

/// Verifies `sent` (the log the node sends) against a quote of `measured`
/// (the log the TPM really saw).
fn judge(measured: &EventLog, sent: &EventLog, rules: &str) -> QuoteOutcome {
    let p = policy(rules);
    let s = Scenario::with(shared_rsa_ak(), quoted_for(measured, &p), p);
    s.verify_with_logs(Some(&encode(sent)), None)
}

fn failed(o: &QuoteOutcome) -> Vec<(String, String, String)> {
    o.verdict
        .failed()
        .map(|c| (c.id.clone(), c.actual.clone(), c.location.clone()))
        .collect()
}

fn assert_only_fails(o: &QuoteOutcome, id: &str) -> Vec<(String, String, String)> {
    let f = failed(o);
    assert!(!f.is_empty(), "expected {id} to fail; everything passed");
    assert!(
        f.iter().all(|(i, _, _)| i == id),
        "expected only {id}: {f:#?}"
    );
    f
}

fn event_mut(log: &mut EventLog, num: u32) -> &mut Event {
    log.events.iter_mut().find(|e| e.num == num).unwrap()
}

/// Re-measures an event: its digests become the hashes of its (new) data, as a
/// TPM that really saw this data would have been extended.
fn remeasure(e: &mut Event) {
    for d in &mut e.digests {
        if let Some(bank) = HashAlg::from_tpm(d.alg_id) {
            d.digest = hash(bank, &e.data);
        }
    }
}

const FULL: &str = r#"
secure_boot = false
pk = ["PK"]
kek = ["KEK"]
crtm_versions = ["GCE Virtual Firmware v1"]
boot_applications = ["SHIM", "GRUB"]
kernel_cmdlines = ["CMDLINE"]
[measured_boot.after_separator]
"4" = ["EV_EFI_BOOT_SERVICES_APPLICATION"]
"5" = ["EV_EFI_GPT_EVENT", "EV_EFI_ACTION"]
"7" = ["EV_EFI_VARIABLE_AUTHORITY"]
"#;

fn full() -> String {
    FULL.replace("\"PK\"", &format!("{PK:?}"))
        .replace("\"KEK\"", &format!("{KEK:?}"))
        .replace("\"SHIM\"", &format!("{SHIM:?}"))
        .replace("\"GRUB\"", &format!("{GRUB:?}"))
        .replace("\"CMDLINE\"", &format!("{CMDLINE:?}"))
}

#[test]
fn the_real_log_passes_every_rule_that_describes_it() {
    let log = gce();
    let o = judge(&log, &log, &full());
    assert!(o.verdict.passed, "{:#?}", failed(&o));
    let ids: Vec<&str> = o.verdict.claims.iter().map(|c| c.id.as_str()).collect();
    for id in [
        "eventlog.uefi.replay.0",
        "eventlog.uefi.replay.14",
        "measured_boot.separators",
        "measured_boot.secure_boot",
        "measured_boot.pk",
        "measured_boot.kek",
        "measured_boot.crtm_version",
        "measured_boot.boot_application",
        "measured_boot.kernel_cmdline",
        "measured_boot.after_separator",
    ] {
        assert!(ids.contains(&id), "{id} missing from {ids:?}");
    }
}

#[test]
fn no_log_or_an_unparsable_one_fails() {
    let p = policy("");
    let s = Scenario::with(shared_rsa_ak(), quoted_for(&gce(), &p), p);
    let o = s.verify_with_logs(None, None);
    assert_only_fails(&o, "eventlog.uefi.present");
    let bytes = encode(&gce());
    let o = s.verify_with_logs(Some(&bytes[..bytes.len() - 3]), None);
    let f = assert_only_fails(&o, "eventlog.uefi.format");
    assert!(f[0].1.contains("truncated"), "{f:#?}");
}

#[test]
fn a_sha1_only_log_cannot_vouch_for_sha256_pcrs() {
    let sha1 = uefi::parse(
        &std::fs::read(GCE.replace(
            "tpm2-tools/event-gce-ubuntu-2104-log.bin",
            "go-attestation/option_rom_eventlog",
        ))
        .unwrap(),
        &Limits::default(),
    )
    .unwrap();
    let p = policy("");
    let s = Scenario::with(shared_rsa_ak(), quoted_for(&gce(), &p), p);
    let o = s.verify_with_logs(Some(&encode(&sha1)), None);
    let f = assert_only_fails(&o, "eventlog.uefi.format");
    assert!(f[0].1.contains("banks"), "{f:#?}");
}

#[test]
fn a_log_from_another_boot_does_not_replay_and_its_facts_are_not_used() {
    // The node sends a log claiming Secure Boot is on; the TPM measured it off.
    let measured = gce();
    let mut forged = gce();
    let sb = event_mut(&mut forged, 3);
    *sb.data.last_mut().unwrap() = 1;
    remeasure(sb);
    let o = judge(&measured, &forged, "secure_boot = true");
    let f = failed(&o);
    assert!(
        f.iter().any(|(id, _, _)| id == "eventlog.uefi.replay.7"),
        "{f:#?}"
    );
    let sb_claim = f
        .iter()
        .find(|(id, _, _)| id == "measured_boot.secure_boot")
        .unwrap();
    assert!(
        sb_claim.1.contains("PCR 7, which did not replay"),
        "{sb_claim:?}"
    );
}

#[test]
fn edited_data_under_the_measured_digest_is_not_believed() {
    // The digest stays (so PCR 7 replays), the data now says Secure Boot is on.
    let measured = gce();
    let mut forged = gce();
    *event_mut(&mut forged, 3).data.last_mut().unwrap() = 1;
    let o = judge(&measured, &forged, "secure_boot = true");
    let f = assert_only_fails(&o, "measured_boot.secure_boot");
    assert!(f[0].1.contains("not the hash of its data"), "{f:#?}");
    // Same for the kernel command line: `ro` → `rw`, digest kept.
    let mut forged = gce();
    let e = forged
        .events
        .iter_mut()
        .find(|e| e.data.starts_with(b"kernel_cmdline: "))
        .unwrap();
    let at = e.data.windows(4).position(|w| w == b" ro ").unwrap();
    e.data[at + 2] = b'w';
    let o = judge(
        &measured,
        &forged,
        &format!("kernel_cmdline_patterns = ['.* rw .*', {CMDLINE:?}]"),
    );
    let f = assert_only_fails(&o, "measured_boot.kernel_cmdline");
    assert!(f[0].1.contains("not the hash of its data"), "{f:#?}");
}

#[test]
fn secure_boot_state_must_be_the_required_one() {
    let log = gce();
    let f = assert_only_fails(
        &judge(&log, &log, "secure_boot = true"),
        "measured_boot.secure_boot",
    );
    assert_eq!(f[0].1, "SecureBoot disabled");
    assert!(f[0].2.contains("UEFI event #3"), "{f:#?}");
    // A node that really booted with it on passes.
    let mut on = gce();
    let sb = event_mut(&mut on, 3);
    *sb.data.last_mut().unwrap() = 1;
    remeasure(sb);
    assert!(judge(&on, &on, "secure_boot = true").verdict.passed);
}

#[test]
fn key_databases_must_hold_only_allowed_keys() {
    let log = gce();
    let other = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    let f = assert_only_fails(
        &judge(&log, &log, &format!("pk = [{other:?}]")),
        "measured_boot.pk",
    );
    assert!(
        f[0].1.contains(&PK[7..]) && f[0].1.contains("CN=newpk"),
        "{f:#?}"
    );
    let f = assert_only_fails(
        &judge(&log, &log, &format!("kek = [{PK:?}]")),
        "measured_boot.kek",
    );
    assert!(
        f[0].1.contains("Microsoft Corporation KEK CA 2011"),
        "{f:#?}"
    );
    // dbx here is empty: a required revocation is missing.
    let f = assert_only_fails(
        &judge(&log, &log, &format!("dbx_required = [{other:?}]")),
        "measured_boot.dbx",
    );
    assert!(
        f[0].1.contains("missing") && f[0].1.contains(&other[7..]),
        "{f:#?}"
    );
}

#[test]
fn crtm_version_boot_applications_and_cmdline_must_be_allowed() {
    let log = gce();
    let f = assert_only_fails(
        &judge(&log, &log, "crtm_versions = [\"GCE Virtual Firmware v2\"]"),
        "measured_boot.crtm_version",
    );
    assert_eq!(f[0].1, "GCE Virtual Firmware v1");
    // Only shim allowed: grub (event #27) is named.
    let f = assert_only_fails(
        &judge(&log, &log, &format!("boot_applications = [{SHIM:?}]")),
        "measured_boot.boot_application",
    );
    assert_eq!(f.len(), 1, "{f:#?}");
    assert!(
        f[0].1.contains(&GRUB[7..]) && f[0].1.contains("grubx64.efi"),
        "{f:#?}"
    );
    assert!(f[0].2.contains("#27"), "{f:#?}");
    let f = assert_only_fails(
        &judge(&log, &log, "kernel_cmdline_patterns = ['.* rw .*']"),
        "measured_boot.kernel_cmdline",
    );
    assert!(f[0].1.contains("root=PARTUUID"), "{f:#?}");
    // No firmware blobs in this log: a rule requiring allowed ones cannot pass vacuously.
    let f = assert_only_fails(
        &judge(&log, &log, &format!("firmware_blobs = [{SHIM:?}]")),
        "measured_boot.firmware_blob",
    );
    assert!(f[0].1.contains("0 events"), "{f:#?}");
}

#[test]
fn unexpected_events_after_a_separator_are_named() {
    let log = gce();
    let f = assert_only_fails(
        &judge(&log, &log, "[measured_boot.after_separator]\n\"4\" = []\n\"5\" = [\"EV_EFI_GPT_EVENT\", \"EV_EFI_ACTION\"]\n\"7\" = [\"EV_EFI_VARIABLE_AUTHORITY\"]"),
        "measured_boot.after_separator",
    );
    assert_eq!(f.len(), 2, "{f:#?}");
    assert!(f[0].2.contains("#23") && f[1].2.contains("#27"), "{f:#?}");
}

#[test]
fn error_separators_fail_unless_allowed() {
    let mut log = gce();
    let sep = log
        .events
        .iter_mut()
        .find(|e| e.event_type == crate::eventlog::efi::EV_SEPARATOR)
        .unwrap();
    sep.data = vec![1, 0, 0, 0];
    remeasure(sep);
    let f = assert_only_fails(&judge(&log, &log, ""), "measured_boot.separators");
    assert!(f[0].1.contains("error separator"), "{f:#?}");
    assert!(
        judge(&log, &log, "allow_error_separators = true")
            .verdict
            .passed
    );
}

#[test]
fn a_policy_cannot_judge_facts_from_pcrs_it_does_not_replay() {
    let text = "schema = 1\nname = \"t\"\n[measured_boot]\npcrs = [0, 4]\nsecure_boot = true\n";
    let e = Policy::parse("t.toml", text).unwrap_err().to_string();
    assert!(e.contains("secure_boot judges events in PCR [7]"), "{e}");
    let text = "schema = 1\nname = \"t\"\n[measured_boot]\nkernel_cmdlines = [\"x\"]\n";
    let e = Policy::parse("t.toml", text).unwrap_err().to_string();
    assert!(e.contains("kernel_cmdlines"), "{e}");
}

/// The measured-boot cache gives the judgement a fresh evaluation would, and
/// only for the same log, policy and quoted PCRs: a node cannot borrow a
/// cached pass with another log, or with PCRs the log does not replay to.
#[test]
fn cached_judgements_are_fresh_judgements_keyed_by_everything_they_depend_on() {
    use crate::verify::MeasuredBootCache;
    let log = gce();
    let rules = format!("pk = [\"{PK}\"]\nkek = [\"{KEK}\"]\nsecure_boot = false");
    let p = policy(&rules);
    let honest = Scenario::with(shared_rsa_ak(), quoted_for(&log, &p), p.clone());
    let bytes = encode(&log);
    let (attest, sig) = honest.signed();
    let cache = MeasuredBootCache::new(8);
    let run = |s: &Scenario, log: &[u8], cache: Option<&MeasuredBootCache>| {
        let (attest, sig) = s.signed();
        s.verify_signed_cached(&attest, &sig, Some(log), None, None, cache)
    };
    let fresh = honest.verify_signed_cached(&attest, &sig, Some(&bytes), None, None, None);
    assert!(fresh.verdict.passed, "{:#?}", fresh.verdict);
    let miss = run(&honest, &bytes, Some(&cache));
    let hit = run(&honest, &bytes, Some(&cache));
    assert_eq!(cache.stats(), (1, 1), "one miss, then one hit");
    assert_eq!(miss.verdict.claims, fresh.verdict.claims);
    assert_eq!(hit.verdict.claims, fresh.verdict.claims);

    // Another log under the same quote: judged afresh (and it fails).
    let mut other = gce();
    event_mut(&mut other, 20).data.push(0);
    let other = encode(&other);
    let with_cache = run(&honest, &other, Some(&cache));
    let without = run(&honest, &other, None);
    assert!(!with_cache.verdict.passed);
    assert_eq!(with_cache.verdict.claims, without.verdict.claims);

    // The cached log with a quote of other PCR values: judged afresh (fails).
    let mut pcrs = quoted_for(&log, &p);
    pcrs.iter_mut().find(|(i, _)| *i == 4).unwrap().1 = vec![0x44; 32];
    let liar = Scenario::with(shared_rsa_ak(), pcrs, p.clone());
    let with_cache = run(&liar, &bytes, Some(&cache));
    assert!(!with_cache.verdict.passed);
    assert_eq!(
        with_cache.verdict.claims,
        run(&liar, &bytes, None).verdict.claims
    );

    // Another policy: its own entry.
    let stricter = policy(&format!("{rules}\ncrtm_versions = [\"another firmware\"]"));
    let s = Scenario::with(shared_rsa_ak(), quoted_for(&log, &stricter), stricter);
    assert!(!run(&s, &bytes, Some(&cache)).verdict.passed);
    assert_eq!(cache.stats().0, 1, "no hit but the honest repeat");
}
