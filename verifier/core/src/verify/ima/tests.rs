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
        "excludes = ['/tmp/.*']\n[ima.allowlist]\n\"/usr/bin/bash\" = [{:?}]\n\"/usr/lib/libc.so.6\" = [{:?}, {:?}]\n",
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
    // A logged template hash that disagrees with the data is named, even where
    // the sha256 bank (computed from the data) replays.
    let mut l = log(&FILES);
    l.entries[1].template_hash[0] ^= 1;
    let f = failed(&judge(&l, 3, &l, &allowlist()));
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
