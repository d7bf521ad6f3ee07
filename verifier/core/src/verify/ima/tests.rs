//! Each `[ima]` check and the attack it stops, on IMA logs built here (ima-ng
//! entries whose template hashes are computed as the kernel does) and sent in
//! the kernel's binary format, with a quote made to match.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use sha1::Digest as _;

use crate::eventlog::ima::{to_binary, FileMeasurement, ImaEntry, ImaLog, Template};
use crate::eventlog::uefi::extend;
use crate::policy::Policy;
use crate::tpm::public::HashAlg;
use crate::verify::testutil::{shared_rsa_ak, Scenario};
use crate::verify::QuoteOutcome;

fn file(index: usize, path: &str, content: &[u8]) -> ImaEntry {
    let template = Template::ImaNg(FileMeasurement {
        hash_alg: "sha256".into(),
        digest: sha2::Sha256::digest(content).to_vec(),
        path: path.into(),
        signature: None,
    });
    let mut e = ImaEntry {
        index,
        pcr: 10,
        template_hash: vec![],
        template,
    };
    e.template_hash = sha1::Sha1::digest(e.template_data().unwrap()).to_vec();
    e
}

fn log(files: &[(&str, &[u8])]) -> ImaLog {
    ImaLog {
        template_hash_alg: HashAlg::Sha1,
        entries: files
            .iter()
            .enumerate()
            .map(|(i, (p, c))| file(i, p, c))
            .collect(),
    }
}

fn pcr10(log: &ImaLog, first: usize) -> Vec<u8> {
    let mut v = vec![0u8; 32];
    for e in log.entries.iter().take(first) {
        v = extend(
            HashAlg::Sha256,
            &v,
            &e.extend_digest(HashAlg::Sha256).unwrap(),
        );
    }
    v
}

fn digest(content: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(content)))
}

const FILES: [(&str, &[u8]); 3] = [
    ("/usr/bin/bash", b"bash"),
    ("/usr/lib/libc.so.6", b"libc"),
    ("/tmp/scratch", b"scratch"),
];

fn allowlist() -> String {
    format!(
        "boot_aggregate = false\nexcludes = ['/tmp/.*']\n[ima.allowlist]\n\"/usr/bin/bash\" = [{:?}]\n\"/usr/lib/libc.so.6\" = [{:?}, {:?}]\n",
        digest(b"bash"),
        digest(b"libc-old"),
        digest(b"libc")
    )
}

/// Verifies `sent` against a quote of the first `covered` entries of `measured`.
fn judge(measured: &ImaLog, covered: usize, sent: &ImaLog, rules: &str) -> QuoteOutcome {
    let p = Policy::parse(
        "t.toml",
        &format!("schema = 1\nname = \"t\"\n[ima]\n{rules}"),
    )
    .unwrap();
    let s = Scenario::with(shared_rsa_ak(), vec![(10, pcr10(measured, covered))], p);
    s.verify_with_logs(None, Some(&to_binary(sent).unwrap()))
}

fn failed(o: &QuoteOutcome) -> Vec<(String, String, String)> {
    o.verdict
        .failed()
        .map(|c| (c.id.clone(), c.actual.clone(), c.location.clone()))
        .collect()
}

#[test]
fn allowed_files_pass_and_excluded_ones_are_not_judged() {
    let l = log(&FILES);
    let o = judge(&l, 3, &l, &allowlist());
    assert!(o.verdict.passed, "{:#?}", failed(&o));
}

#[test]
fn an_unlisted_file_or_a_changed_one_fails_and_is_named() {
    let mut files = FILES.to_vec();
    files.push(("/usr/bin/nc", b"netcat"));
    files[0].1 = b"bash-trojaned";
    let l = log(&files);
    let f = failed(&judge(&l, 4, &l, &allowlist()));
    assert_eq!(f.len(), 2, "{f:#?}");
    assert!(
        f[0].1.starts_with("/usr/bin/bash") && f[0].2.contains("#0"),
        "{f:#?}"
    );
    assert!(
        f[1].1.starts_with("/usr/bin/nc") && f[1].2.contains("#3"),
        "{f:#?}"
    );
    assert!(f.iter().all(|(id, _, _)| id == "ima.file"), "{f:#?}");
}

#[test]
fn entries_after_the_quote_are_not_judged_yet() {
    // The kernel measured /usr/bin/nc after the quote: the log runs ahead.
    let mut files = FILES.to_vec();
    files.push(("/usr/bin/nc", b"netcat"));
    let l = log(&files);
    let o = judge(&l, 3, &l, &allowlist());
    assert!(o.verdict.passed, "{:#?}", failed(&o));
    let replay = o
        .verdict
        .claims
        .iter()
        .find(|c| c.id == "eventlog.ima.replay.10")
        .unwrap();
    assert!(replay.actual.contains("first 3 of 4"), "{replay:?}");
}

#[test]
fn a_log_hiding_a_measurement_does_not_replay_and_nothing_in_it_is_judged() {
    let mut files = FILES.to_vec();
    files.insert(1, ("/usr/bin/nc", b"netcat"));
    let measured = log(&files);
    // The node drops the nc entry from the log it sends.
    let mut sent = measured.clone();
    sent.entries.remove(1);
    let f = failed(&judge(&measured, 4, &sent, &allowlist()));
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(f[0].0, "eventlog.ima.replay.10");
    assert!(
        f[0].1.contains("changed, removed, reordered or added"),
        "{f:#?}"
    );
}

#[test]
fn a_renamed_entry_under_the_measured_template_hash_fails() {
    // The logged template hash stays; the path now claims an allowed file. The
    // sha256 bank is extended with the SHA-256 of the template data (Linux 5.8+),
    // which the verifier recomputes from the data sent: the log no longer replays.
    let mut files = FILES.to_vec();
    files.push(("/usr/bin/nc", b"bash"));
    let measured = log(&files);
    let mut sent = measured.clone();
    if let Template::ImaNg(f) = &mut sent.entries[3].template {
        f.path = "/usr/bin/bash".into();
    }
    let f = failed(&judge(&measured, 4, &sent, &allowlist()));
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(f[0].0, "eventlog.ima.replay.10");
    // A logged SHA-1 template hash that disagrees with the data is not what
    // the sha256 bank was extended with: the bank is extended with the
    // data's own sha256, which the replay proves, so the entry's content is
    // what the TPM measured and it is judged as such.
    let mut l = log(&FILES);
    l.entries[1].template_hash[0] ^= 1;
    let o = judge(&l, 3, &l, &allowlist());
    assert!(o.verdict.passed, "{:#?}", failed(&o));
    // A log of sha256 template hashes (binary_runtime_measurements_sha256)
    // extends the bank with the logged hash: one its data does not hash to
    // is named, though the PCR replays.
    let mut l = log(&FILES);
    for e in &mut l.entries {
        e.template_hash = sha2::Sha256::digest(e.template_data().unwrap()).to_vec();
    }
    l.template_hash_alg = HashAlg::Sha256;
    l.entries[1].template_hash[0] ^= 1;
    let ascii: String = l
        .entries
        .iter()
        .map(|e| {
            let f = e.file().unwrap();
            format!(
                "10 {} ima-ng {}:{} {}\n",
                hex::encode(&e.template_hash),
                f.hash_alg,
                hex::encode(&f.digest),
                f.path
            )
        })
        .collect();
    let p = rules_policy(&allowlist());
    let s = Scenario::with(shared_rsa_ak(), vec![(10, pcr10(&l, 3))], p);
    let f = failed(&s.verify_with_logs(None, Some(ascii.as_bytes())));
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(f[0].0, "ima.file");
    assert!(
        f[0].1.contains("not what was measured") && f[0].2.contains("#1"),
        "{f:#?}"
    );
}

#[test]
fn violations_fail_unless_their_path_is_excluded() {
    let mut l = log(&FILES);
    l.entries[1].template_hash = vec![0; 20];
    let f = failed(&judge(&l, 3, &l, &allowlist()));
    assert_eq!(f.len(), 1, "{f:#?}");
    assert!(
        f[0].1.contains("violation") && f[0].1.starts_with("/usr/lib/libc.so.6"),
        "{f:#?}"
    );
    let mut l = log(&FILES);
    l.entries[2].template_hash = vec![0; 20];
    assert!(judge(&l, 3, &l, &allowlist()).verdict.passed);
}

#[test]
fn a_missing_or_unquoted_log_fails() {
    let p = Policy::parse(
        "t.toml",
        &format!("schema = 1\nname = \"t\"\n[ima]\n{}", allowlist()),
    )
    .unwrap();
    let s = Scenario::with(shared_rsa_ak(), vec![(10, vec![0; 32])], p.clone());
    let f = failed(&s.verify_with_logs(None, None));
    assert_eq!(f[0].0, "eventlog.ima.present");
    let f = failed(&s.verify_with_logs(None, Some(b"10 zz ima-ng\n")));
    assert_eq!(f[0].0, "eventlog.ima.format");
}

// --- Incremental attestation -------------------------------------------------

use crate::verify::{ImaProgress, ImaState};

fn rules_policy(rules: &str) -> Policy {
    Policy::parse(
        "t.toml",
        &format!("schema = 1\nname = \"t\"\n[ima]\n{rules}"),
    )
    .unwrap()
}

/// A quote over the first `covered` entries of `measured`, judging the
/// entries of `sent` from `first` on against `kept`.
fn judge_from(
    measured: &ImaLog,
    covered: usize,
    sent: &ImaLog,
    first: usize,
    kept: Option<&ImaState>,
    rules: &str,
) -> QuoteOutcome {
    let s = Scenario::with(
        shared_rsa_ak(),
        vec![(10, pcr10(measured, covered))],
        rules_policy(rules),
    );
    let chunk = ImaLog {
        template_hash_alg: sent.template_hash_alg,
        entries: sent.entries[first..].to_vec(),
    };
    s.verify_ima_from(&to_binary(&chunk).unwrap(), first as u64, kept)
}

fn state(o: &QuoteOutcome) -> ImaState {
    match &o.ima {
        ImaProgress::Set(s) => s.clone(),
        other => panic!("no state kept: {other:?}; {:#?}", failed(o)),
    }
}

fn range(o: &QuoteOutcome) -> String {
    o.verdict
        .claims
        .iter()
        .find(|c| c.id == "eventlog.ima.range")
        .map(|c| c.actual.clone())
        .unwrap_or_default()
}

fn grown(extra: &[(&'static str, &'static [u8])]) -> ImaLog {
    let mut files = FILES.to_vec();
    files.extend_from_slice(extra);
    log(&files)
}

#[test]
fn a_growing_log_is_judged_incrementally_from_the_kept_state() {
    let first = log(&FILES);
    let o = judge_from(&first, 3, &first, 0, None, &allowlist());
    assert!(o.verdict.passed, "{:#?}", failed(&o));
    assert!(
        range(&o).contains("entries 0–2 judged: the whole log, because no state is kept"),
        "{}",
        range(&o)
    );
    let kept = state(&o);
    assert_eq!(kept.entries, 3);
    assert_eq!(kept.pcr_value, hex::encode(pcr10(&first, 3)));
    assert_eq!(
        kept.first_template_hash,
        hex::encode(&first.entries[0].template_hash)
    );

    // Two more files measured; only they are sent and judged.
    let later = grown(&[("/usr/bin/bash", b"bash"), ("/tmp/x", b"x")]);
    let o = judge_from(&later, 5, &later, 3, Some(&kept), &allowlist());
    assert!(o.verdict.passed, "{:#?}", failed(&o));
    assert!(
        range(&o).contains("entries 3–4 judged, continuing from the state kept at entry 3"),
        "{}",
        range(&o)
    );
    let next = state(&o);
    assert_eq!(next.entries, 5);
    assert_eq!(next.pcr_value, hex::encode(pcr10(&later, 5)));
    assert_eq!(next.first_template_hash, kept.first_template_hash);

    // Nothing new: the kept state still reaches the quote.
    let o = judge_from(&later, 5, &later, 5, Some(&next), &allowlist());
    assert!(o.verdict.passed, "{:#?}", failed(&o));
    assert!(
        range(&o).contains("no new entries since entry 5"),
        "{}",
        range(&o)
    );
    assert_eq!(state(&o), next);
}

#[test]
fn a_new_entry_dropped_or_changed_does_not_replay_from_the_kept_state_and_the_state_is_dropped() {
    let first = log(&FILES);
    let kept = state(&judge_from(&first, 3, &first, 0, None, &allowlist()));
    let measured = grown(&[("/usr/bin/nc", b"netcat"), ("/usr/bin/bash", b"bash")]);
    // The node hides the netcat entry.
    let mut sent = measured.clone();
    sent.entries.remove(3);
    let o = judge_from(&measured, 5, &sent, 3, Some(&kept), &allowlist());
    let f = failed(&o);
    assert_eq!(f[0].0, "eventlog.ima.replay.10", "{f:#?}");
    assert!(
        f[0].1.contains("replayed from the value kept at entry 3"),
        "{f:#?}"
    );
    assert_eq!(o.ima, ImaProgress::Clear);
    // The node renames it to an allowed file.
    let mut sent = measured.clone();
    if let Template::ImaNg(f) = &mut sent.entries[3].template {
        f.path = "/usr/bin/bash".into();
    }
    let o = judge_from(&measured, 5, &sent, 3, Some(&kept), &allowlist());
    assert_eq!(failed(&o)[0].0, "eventlog.ima.replay.10");
    assert_eq!(o.ima, ImaProgress::Clear);
}

#[test]
fn an_edited_old_entry_is_caught_when_the_whole_log_is_judged() {
    // Entries already judged are never sent again incrementally; a whole log
    // (which a node may send at any time, and must after a state is dropped)
    // is replayed from zero, so an edit of an old entry does not replay.
    let measured = grown(&[("/usr/bin/bash", b"bash")]);
    let mut sent = measured.clone();
    if let Template::ImaNg(f) = &mut sent.entries[0].template {
        f.digest = sha2::Sha256::digest(b"bash-trojaned").to_vec();
    }
    let kept = state(&judge_from(&measured, 3, &measured, 0, None, &allowlist()));
    let o = judge_from(&measured, 4, &sent, 0, Some(&kept), &allowlist());
    assert_eq!(
        failed(&o)[0].0,
        "eventlog.ima.replay.10",
        "{:#?}",
        failed(&o)
    );
    assert_eq!(o.ima, ImaProgress::Clear);
}

#[test]
fn entries_of_another_boot_or_the_wrong_range_are_refused_and_the_state_dropped() {
    let first = log(&FILES);
    let kept = state(&judge_from(&first, 3, &first, 0, None, &allowlist()));
    let later = grown(&[("/usr/bin/bash", b"bash")]);
    // The TPM was reset since (the quote's resetCount differs).
    let mut other_boot = kept.clone();
    other_boot.reset_count = kept.reset_count.wrapping_add(1);
    let o = judge_from(&later, 4, &later, 3, Some(&other_boot), &allowlist());
    let f = failed(&o);
    assert_eq!(f[0].0, "eventlog.ima.range", "{f:#?}");
    assert!(
        f[0].1.contains("reset or restarted") && f[0].1.contains("whole log is needed"),
        "{f:#?}"
    );
    assert_eq!(o.ima, ImaProgress::Clear);
    // The node sends from another entry than the kept one.
    let o = judge_from(&later, 4, &later, 2, Some(&kept), &allowlist());
    let f = failed(&o);
    assert!(f[0].1.contains("the state kept is at entry 3"), "{f:#?}");
    // No state kept at all.
    let o = judge_from(&later, 4, &later, 3, None, &allowlist());
    assert!(
        failed(&o)[0].1.contains("no state is kept"),
        "{:#?}",
        failed(&o)
    );
    // A whole log after a reset is judged from 0, saying why.
    let o = judge_from(&later, 4, &later, 0, Some(&other_boot), &allowlist());
    assert!(o.verdict.passed, "{:#?}", failed(&o));
    assert!(range(&o).contains("another boot"), "{}", range(&o));
    assert_eq!(state(&o).entries, 4);
    // A whole log whose boot_aggregate (first entry) is not the kept one.
    let mut other_first = kept.clone();
    other_first.first_template_hash = "00".repeat(20);
    let o = judge_from(&later, 4, &later, 0, Some(&other_first), &allowlist());
    assert!(
        range(&o).contains("first entry (boot_aggregate) is not the one kept"),
        "{}",
        range(&o)
    );
}

#[test]
fn a_state_judged_under_other_ima_rules_is_not_continued() {
    let first = log(&FILES);
    let kept = state(&judge_from(&first, 3, &first, 0, None, &allowlist()));
    let tighter = format!("{}\"/usr/bin/nc\" = [{:?}]\n", allowlist(), digest(b"nc"));
    let later = grown(&[("/usr/bin/bash", b"bash")]);
    let o = judge_from(&later, 4, &later, 3, Some(&kept), &tighter);
    let f = failed(&o);
    assert!(f[0].1.contains("IMA rules changed"), "{f:#?}");
    let o = judge_from(&later, 4, &later, 0, Some(&kept), &tighter);
    assert!(o.verdict.passed);
    assert!(range(&o).contains("IMA rules changed"), "{}", range(&o));
    assert_ne!(state(&o).rules_digest, kept.rules_digest);
}

#[test]
fn a_disallowed_file_keeps_failing_until_allowed_the_state_stops_before_it() {
    let first = log(&FILES);
    let kept = state(&judge_from(&first, 3, &first, 0, None, &allowlist()));
    let later = grown(&[("/usr/bin/nc", b"netcat"), ("/usr/bin/bash", b"bash")]);
    let o = judge_from(&later, 5, &later, 3, Some(&kept), &allowlist());
    assert!(!o.verdict.passed);
    assert!(failed(&o).iter().any(|f| f.1.starts_with("/usr/bin/nc")));
    let stopped = state(&o);
    assert_eq!(
        stopped.entries, 3,
        "the state stops before the failing entry"
    );
    assert_eq!(stopped.pcr_value, hex::encode(pcr10(&later, 3)));
    assert!(range(&o).contains("entry 3 failed"), "{}", range(&o));
    // The next attestation sends from 3 again and fails again.
    let o = judge_from(&later, 5, &later, 3, Some(&stopped), &allowlist());
    assert!(!o.verdict.passed);
    // A whole log failing at entry 1 keeps entries 0..1.
    let mut files = FILES.to_vec();
    files[1].1 = b"libc-trojaned";
    let l = log(&files);
    let o = judge_from(&l, 3, &l, 0, None, &allowlist());
    assert_eq!(state(&o).entries, 1);
    // Failing at entry 0: nothing to keep.
    let mut files = FILES.to_vec();
    files[0].1 = b"bash-trojaned";
    let l = log(&files);
    assert_eq!(
        judge_from(&l, 3, &l, 0, None, &allowlist()).ima,
        ImaProgress::Clear
    );
}

#[test]
fn the_first_entry_is_part_of_the_evidence_digest() {
    let l = grown(&[("/usr/bin/bash", b"bash")]);
    let kept = state(&judge_from(&l, 3, &l, 0, None, &allowlist()));
    let a = judge_from(&l, 4, &l, 3, Some(&kept), &allowlist());
    let s = Scenario::with(
        shared_rsa_ak(),
        vec![(10, pcr10(&l, 4))],
        rules_policy(&allowlist()),
    );
    let chunk = ImaLog {
        template_hash_alg: l.template_hash_alg,
        entries: l.entries[3..].to_vec(),
    };
    let b = s.verify_ima_from(&to_binary(&chunk).unwrap(), 0, None);
    assert_ne!(a.verdict.evidence_digest, b.verdict.evidence_digest);
}

// --- boot_aggregate ------------------------------------------------------------

/// PCRs 0-9 as some boot left them, PCR 10 from `log`, and the sha256
/// boot_aggregate over 0-9.
fn boot_pcrs(log: &ImaLog) -> Vec<(u32, Vec<u8>)> {
    let mut pcrs: Vec<(u32, Vec<u8>)> = (0..=9u32)
        .map(|i| (i, sha2::Sha256::digest(format!("boot pcr {i}")).to_vec()))
        .collect();
    pcrs.push((10, pcr10(log, log.entries.len())));
    pcrs
}

fn aggregate_of(pcrs: &[(u32, Vec<u8>)]) -> Vec<u8> {
    let mut h = sha2::Sha256::new();
    for (_, v) in pcrs.iter().filter(|(i, _)| *i <= 9) {
        h.update(v);
    }
    h.finalize().to_vec()
}

/// A log whose first entry is a boot_aggregate with `digest` (and `alg`).
fn with_aggregate(alg: &str, digest: Vec<u8>) -> ImaLog {
    let mut l = log(&[("boot_aggregate", b""), FILES[0], FILES[1]]);
    if let Template::ImaNg(f) = &mut l.entries[0].template {
        f.hash_alg = alg.into();
        f.digest = digest;
    }
    l.entries[0].template_hash = sha1::Sha1::digest(l.entries[0].template_data().unwrap()).to_vec();
    l
}

fn judge_aggregate(l: &ImaLog, pcrs: Vec<(u32, Vec<u8>)>) -> QuoteOutcome {
    let rules = allowlist().replace("boot_aggregate = false\n", "");
    let s = Scenario::with(shared_rsa_ak(), pcrs, rules_policy(&rules));
    s.verify_with_logs(None, Some(&to_binary(l).unwrap()))
}

#[test]
fn the_boot_aggregate_is_recomputed_from_the_quoted_pcrs_0_to_9() {
    let probe = with_aggregate("sha256", vec![0; 32]);
    let aggregate = aggregate_of(&boot_pcrs(&probe));
    let good = with_aggregate("sha256", aggregate);
    let o = judge_aggregate(&good, boot_pcrs(&good));
    assert!(o.verdict.passed, "{:#?}", failed(&o));
    let c = o
        .verdict
        .claims
        .iter()
        .find(|c| c.id == "ima.boot_aggregate")
        .unwrap();
    assert!(c.passed && c.expected.contains("PCRs 0-9"), "{c:?}");
    // The policy quotes PCRs 0-9 for it.
    assert_eq!(
        rules_policy("").pcr_selection(),
        vec![0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    );

    // A boot_aggregate of another boot (other firmware, kernel or command
    // line in PCRs 0-9) fails, and the state is not kept.
    let mut other_pcrs = boot_pcrs(&good);
    other_pcrs[8].1[0] ^= 1;
    let o = judge_aggregate(&good, other_pcrs);
    let f = failed(&o);
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(f[0].0, "ima.boot_aggregate");
    assert_eq!(o.ima, ImaProgress::Clear);
}

#[test]
fn a_boot_aggregate_the_sha256_quote_cannot_recompute_or_a_missing_one_fails() {
    let sha1 = with_aggregate("sha1", vec![7; 20]);
    let f = failed(&judge_aggregate(&sha1, boot_pcrs(&sha1)));
    assert!(
        f.iter().any(|(id, actual, _)| id == "ima.boot_aggregate"
            && actual.contains("sha1 boot_aggregate")
            && actual.contains("ima.boot_aggregate = false")),
        "{f:#?}"
    );
    // No boot_aggregate first: a log that starts mid-way is not a whole log.
    let headless = log(&FILES);
    let f = failed(&judge_aggregate(&headless, boot_pcrs(&headless)));
    assert!(
        f.iter().any(|(id, actual, _)| id == "ima.boot_aggregate"
            && actual.contains("entry #0 is /usr/bin/bash")),
        "{f:#?}"
    );
}

// --- IMA signatures (fixtures signed by evmctl: tests/data/ima-sig) -------------

const SIG_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/ima-sig");

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{SIG_DIR}/{name}")).unwrap()
}

/// An ima-sig entry for `files/hello.txt` with the signature evmctl made
/// with `key` (`sha256`).
fn signed_entry(index: usize, path: &str, key: &str, tamper: bool) -> ImaEntry {
    let content = fixture("files/hello.txt");
    let mut sig = fixture(&format!("files/hello.txt.{key}-sha256.sig"));
    if tamper {
        let last = sig.len() - 1;
        sig[last] ^= 1;
    }
    let mut e = ImaEntry {
        index,
        pcr: 10,
        template_hash: vec![],
        template: Template::ImaSig(FileMeasurement {
            hash_alg: "sha256".into(),
            digest: sha2::Sha256::digest(&content).to_vec(),
            path: path.into(),
            signature: Some(sig),
        }),
    };
    e.template_hash = sha1::Sha1::digest(e.template_data().unwrap()).to_vec();
    e
}

fn keyring_toml(name: &str, certs: &[&str]) -> String {
    let keys: Vec<String> = certs
        .iter()
        .map(|c| {
            format!(
                "'''{}'''",
                String::from_utf8(fixture(&format!("{c}.cert.pem"))).unwrap()
            )
        })
        .collect();
    format!("[ima.keyrings.{name}]\nkeys = [{}]\n", keys.join(", "))
}

fn judge_signed(entries: Vec<ImaEntry>, rules: &str) -> QuoteOutcome {
    let l = ImaLog {
        template_hash_alg: HashAlg::Sha1,
        entries,
    };
    judge(&l, l.entries.len(), &l, rules)
}

#[test]
fn a_file_signed_by_a_policy_key_passes_without_the_allowlist() {
    for key in ["rsa2048", "p256"] {
        let rules = format!(
            "boot_aggregate = false\n{}",
            keyring_toml("vendor", &["rsa2048", "p256"])
        );
        let o = judge_signed(vec![signed_entry(0, "/usr/bin/hello", key, false)], &rules);
        assert!(o.verdict.passed, "{key}: {:#?}", failed(&o));
    }
}

#[test]
fn a_wrong_or_missing_key_or_a_broken_signature_fails() {
    let only_p256 = format!(
        "boot_aggregate = false\n{}",
        keyring_toml("vendor", &["p256"])
    );
    // Signed with a key the policy does not have: the allowlist decides, and
    // this file is not in it.
    let f = failed(&judge_signed(
        vec![signed_entry(0, "/usr/bin/hello", "rsa2048", false)],
        &only_p256,
    ));
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(f[0].0, "ima.file");
    // Under require_signature the unknown key itself fails, naming its id.
    let required = format!("{only_p256}[[ima.require_signature]]\npaths = ['/usr/bin/.*']\n");
    let f = failed(&judge_signed(
        vec![signed_entry(0, "/usr/bin/hello", "rsa2048", false)],
        &required,
    ));
    assert_eq!(f[0].0, "ima.signature", "{f:#?}");
    assert!(f[0].1.contains("142c9217"), "{f:#?}");
    // A broken signature by a policy key fails, allowlisted or not.
    let allowlisted = format!(
        "{only_p256}[ima.allowlist]\n\"/usr/bin/hello\" = [\"sha256:{}\"]\n",
        hex::encode(sha2::Sha256::digest(fixture("files/hello.txt")))
    );
    let f = failed(&judge_signed(
        vec![signed_entry(0, "/usr/bin/hello", "p256", true)],
        &allowlisted,
    ));
    assert_eq!(f[0].0, "ima.signature", "{f:#?}");
    // The impostor certificate has rsa2048's key id but another key.
    let impostor = format!(
        "boot_aggregate = false\n{}[[ima.require_signature]]\npaths = ['/usr/bin/.*']\n",
        keyring_toml("vendor", &["impostor"])
    );
    let f = failed(&judge_signed(
        vec![signed_entry(0, "/usr/bin/hello", "rsa2048", false)],
        &impostor,
    ));
    assert_eq!(f[0].0, "ima.signature", "{f:#?}");
    assert!(
        f[0].1.contains("does not verify") || f[0].1.contains("bad"),
        "{f:#?}"
    );
}

#[test]
fn require_signature_refuses_an_unsigned_file_even_if_allowlisted_and_names_its_keyrings() {
    let rules = format!(
        "boot_aggregate = false\n{}{}[[ima.require_signature]]\npaths = ['/usr/bin/.*']\nkeyrings = ['distro']\n[ima.allowlist]\n\"/usr/bin/bash\" = [{:?}]\n",
        keyring_toml("distro", &["rsa2048"]),
        keyring_toml("vendor", &["p256"]),
        digest(b"bash")
    );
    let l = log(&[("/usr/bin/bash", b"bash")]);
    let f = failed(&judge(&l, 1, &l, &rules));
    assert_eq!(f[0].0, "ima.signature", "{f:#?}");
    assert!(f[0].1.contains("no IMA signature"), "{f:#?}");
    // Signed by the other keyring's key: not the one the rule names.
    let f = failed(&judge_signed(
        vec![signed_entry(0, "/usr/bin/hello", "p256", false)],
        &rules,
    ));
    assert_eq!(f[0].0, "ima.signature", "{f:#?}");
    // By the rule's keyring: passes.
    let o = judge_signed(
        vec![signed_entry(0, "/usr/bin/hello", "rsa2048", false)],
        &rules,
    );
    assert!(o.verdict.passed, "{:#?}", failed(&o));
    // Outside the rule's paths, the allowlist still decides.
    let o = judge_signed(
        vec![signed_entry(0, "/opt/hello", "rsa2048", false)],
        &rules,
    );
    assert!(o.verdict.passed, "{:#?}", failed(&o));
    // A rule naming an unknown keyring, or a bad key, is refused at load.
    let bad = "[[ima.require_signature]]\npaths = ['/x']\nkeyrings = ['nope']\n";
    assert!(Policy::parse("t.toml", &format!("schema = 1\nname = \"t\"\n[ima]\n{bad}")).is_err());
    let bad = "[ima.keyrings.k]\nkeys = ['-----BEGIN CERTIFICATE-----\\nAAAA\\n-----END CERTIFICATE-----\\n']\n";
    assert!(Policy::parse("t.toml", &format!("schema = 1\nname = \"t\"\n[ima]\n{bad}")).is_err());
}

#[test]
fn listed_ima_buf_entries_are_judged_by_digest() {
    use crate::eventlog::ima::BufferMeasurement;
    let buf_entry = |buf: &[u8], digest: Vec<u8>| {
        let mut e = ImaEntry {
            index: 0,
            pcr: 10,
            template_hash: vec![],
            template: Template::ImaBuf(BufferMeasurement {
                hash_alg: "sha256".into(),
                digest,
                name: "kexec-cmdline".into(),
                buf: buf.to_vec(),
            }),
        };
        e.template_hash = sha1::Sha1::digest(e.template_data().unwrap()).to_vec();
        e
    };
    let cmdline = b"root=/dev/vda ro";
    let rules = format!(
        "boot_aggregate = false\n[ima.buffers]\n\"kexec-cmdline\" = [{:?}]\n",
        digest(cmdline)
    );
    let ok = buf_entry(cmdline, sha2::Sha256::digest(cmdline).to_vec());
    assert!(judge_signed(vec![ok], &rules).verdict.passed);
    let other = b"root=/dev/vda ro init=/bin/sh";
    let f = failed(&judge_signed(
        vec![buf_entry(other, sha2::Sha256::digest(other).to_vec())],
        &rules,
    ));
    assert_eq!(f[0].0, "ima.buffer", "{f:#?}");
    // A buffer that does not hash to its logged digest.
    let f = failed(&judge_signed(
        vec![buf_entry(other, sha2::Sha256::digest(cmdline).to_vec())],
        &rules,
    ));
    assert!(f[0].1.contains("does not hash"), "{f:#?}");
    // Unlisted buffers are not judged.
    assert!(
        judge_signed(
            vec![buf_entry(other, sha2::Sha256::digest(other).to_vec())],
            "boot_aggregate = false\n"
        )
        .verdict
        .passed
    );
}
