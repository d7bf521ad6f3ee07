//! Each `[containers]` check and the attack it stops, on CEL logs built here
//! with a quote made to match the PCR a TPM would hold.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use crate::eventlog::cel::{encode, CelLog, Measurement, Record};
use crate::eventlog::uefi;
use crate::policy::Policy;
use crate::tpm::public::HashAlg;
use crate::verify::testutil::{shared_rsa_ak, Scenario};
use crate::verify::QuoteOutcome;

const BUSYBOX: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const EVIL: &str = "sha256:6666666666666666666666666666666666666666666666666666666666666666";

fn containerd() -> Measurement {
    Measurement::RuntimeBinary {
        path: "/usr/bin/containerd".into(),
        sha256: [7; 32],
    }
}

fn image(reference: &str, digest: &str) -> Measurement {
    Measurement::Image {
        reference: reference.into(),
        manifest_digest: digest.into(),
        config_digest: None,
    }
}

fn start(id: &str, digest: &str) -> Measurement {
    Measurement::ContainerStart {
        container_id: id.into(),
        image_digest: Some(digest.into()),
        image_reference: None,
    }
}

fn log(ms: &[Measurement]) -> CelLog {
    CelLog {
        records: ms
            .iter()
            .enumerate()
            .map(|(i, m)| Record::new(i as u64, 13, m))
            .collect(),
    }
}

fn pcr13(log: &CelLog, covered: usize, initial: Vec<u8>) -> Vec<u8> {
    log.records.iter().take(covered).fold(initial, |v, r| {
        uefi::extend(HashAlg::Sha256, &v, r.digest(HashAlg::Sha256).unwrap())
    })
}

const RULES: &str = r#"
allowed_images = ["sha256:1111111111111111111111111111111111111111111111111111111111111111"]
[containers.runtime]
"/usr/bin/containerd" = ["sha256:0707070707070707070707070707070707070707070707070707070707070707"]
"#;

fn scenario(rules: &str, quoted: Vec<u8>) -> Scenario {
    let p = Policy::parse(
        "t.toml",
        &format!("schema = 1\nname = \"t\"\n[containers]\n{rules}"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    Scenario::with(shared_rsa_ak(), vec![(13, quoted)], p)
}

/// Verifies `sent` against a quote of the first `covered` records of `measured`.
fn judge(measured: &CelLog, covered: usize, sent: &CelLog, rules: &str) -> QuoteOutcome {
    scenario(rules, pcr13(measured, covered, vec![0; 32])).verify_with_all_logs(
        None,
        None,
        Some(&encode(sent)),
    )
}

fn failed(o: &QuoteOutcome) -> Vec<(String, String, String)> {
    o.verdict
        .failed()
        .map(|c| (c.id.clone(), c.actual.clone(), c.location.clone()))
        .collect()
}

fn only(o: &QuoteOutcome, id: &str) -> Vec<(String, String, String)> {
    let f = failed(o);
    assert!(
        !f.is_empty() && f.iter().all(|(i, _, _)| i == id),
        "expected only {id}: {f:#?}"
    );
    f
}

fn good() -> CelLog {
    log(&[
        containerd(),
        image("docker.io/library/busybox:1.36", BUSYBOX),
        start("web", BUSYBOX),
    ])
}

#[test]
fn measured_allowed_runtime_images_and_starts_pass() {
    let l = good();
    let o = judge(&l, 3, &l, RULES);
    assert!(o.verdict.passed, "{:#?}", failed(&o));
    let ids: Vec<&str> = o.verdict.claims.iter().map(|c| c.id.as_str()).collect();
    for id in [
        "eventlog.cel.replay.13",
        "containers.runtime",
        "containers.image",
        "containers.start",
    ] {
        assert!(ids.contains(&id), "{id} in {ids:?}");
    }
}

#[test]
fn a_modified_runtime_binary_is_named() {
    let l = log(&[
        Measurement::RuntimeBinary {
            path: "/usr/bin/containerd".into(),
            sha256: [9; 32],
        },
        image("docker.io/library/busybox:1.36", BUSYBOX),
    ]);
    let f = only(&judge(&l, 2, &l, RULES), "containers.runtime");
    assert!(
        f[0].1.contains("/usr/bin/containerd sha256:0909") && f[0].2 == "CEL record #0",
        "{f:#?}"
    );
    // A runtime file the policy does not list at all.
    let l = log(&[Measurement::RuntimeConfig {
        path: "/etc/containerd/config.toml".into(),
        sha256: [1; 32],
    }]);
    let f = only(&judge(&l, 1, &l, RULES), "containers.runtime");
    assert!(f[0].1.starts_with("/etc/containerd/config.toml"), "{f:#?}");
}

#[test]
fn images_not_allowed_or_denied_are_named_and_deny_wins() {
    let l = log(&[image("docker.io/library/nginx:1", EVIL)]);
    let f = only(&judge(&l, 1, &l, RULES), "containers.image");
    assert!(
        f[0].1.contains(EVIL) && f[0].1.contains("not allowed"),
        "{f:#?}"
    );
    // Allowed by repository prefix...
    let repo = "allowed_repositories = [\"registry.example.com/team/\"]";
    let l = log(&[image("registry.example.com/team/app:2", EVIL)]);
    assert!(judge(&l, 1, &l, repo).verdict.passed);
    // ...but a denied digest fails even there.
    let f = only(
        &judge(&l, 1, &l, &format!("{repo}\ndenied_images = [{EVIL:?}]")),
        "containers.image",
    );
    assert!(f[0].1.contains("is denied"), "{f:#?}");
    // An exact repository does not admit a longer one.
    let l = log(&[image("registry.example.com/team/app-evil:2", EVIL)]);
    let f = only(
        &judge(
            &l,
            1,
            &l,
            "allowed_repositories = [\"registry.example.com/team/app\"]",
        ),
        "containers.image",
    );
    assert!(f[0].1.contains("app-evil"), "{f:#?}");
}

#[test]
fn a_container_from_an_unmeasured_or_disallowed_image_fails() {
    let l = log(&[containerd(), start("sneaky", EVIL)]);
    let f = only(&judge(&l, 2, &l, RULES), "containers.start");
    assert!(
        f[0].1.contains("not measured before it started") && f[0].2 == "CEL record #1",
        "{f:#?}"
    );
    // Started before its image was measured: still unmeasured at that point.
    let l = log(&[
        containerd(),
        start("early", BUSYBOX),
        image("docker.io/library/busybox:1.36", BUSYBOX),
    ]);
    only(&judge(&l, 3, &l, RULES), "containers.start");
    // Measured but not allowed: the image and the start both fail.
    let l = log(&[
        containerd(),
        image("docker.io/library/nginx:1", EVIL),
        start("web", EVIL),
    ]);
    let ids: Vec<String> = failed(&judge(&l, 3, &l, RULES))
        .into_iter()
        .map(|f| f.0)
        .collect();
    assert_eq!(ids, ["containers.image", "containers.start"]);
    // A container without an image (a bare root filesystem) is unmeasured.
    let l = log(&[
        containerd(),
        Measurement::ContainerStart {
            container_id: "bare".into(),
            image_digest: None,
            image_reference: None,
        },
    ]);
    let f = only(&judge(&l, 2, &l, RULES), "containers.start");
    assert!(f[0].1.contains("without an image"), "{f:#?}");
    // With require_measured_starts = false, an unmeasured start is accepted.
    let l = log(&[containerd(), start("legacy", EVIL)]);
    assert!(
        judge(
            &l,
            2,
            &l,
            &format!("require_measured_starts = false\n{RULES}")
        )
        .verdict
        .passed
    );
}

#[test]
fn edited_content_under_a_kept_digest_is_not_believed() {
    // The node rewrites the image record to an allowed digest, keeping the digest
    // that was extended: the replay holds, the content is not what was measured.
    let measured = log(&[containerd(), image("docker.io/library/nginx:1", EVIL)]);
    let mut sent = measured.clone();
    sent.records[1].content =
        crate::eventlog::cel::encode_measurement(&image("docker.io/library/busybox:1.36", BUSYBOX));
    let f = only(&judge(&measured, 2, &sent, RULES), "containers.record");
    assert!(
        f[0].1.contains("not what was measured") && f[0].2 == "CEL record #1",
        "{f:#?}"
    );
}

#[test]
fn forged_truncated_or_dropped_records_do_not_replay() {
    let measured = log(&[
        containerd(),
        image("docker.io/library/nginx:1", EVIL),
        start("web", EVIL),
    ]);
    // Forged: the record re-measured as an allowed image (digest recomputed).
    let mut forged = measured.clone();
    forged.records[1] = Record::new(1, 13, &image("docker.io/library/busybox:1.36", BUSYBOX));
    let f = only(
        &judge(&measured, 3, &forged, RULES),
        "eventlog.cel.replay.13",
    );
    assert!(f[0].1.contains("changed, removed or added"), "{f:#?}");
    // Truncated: the last records left out although the quote covers them.
    let mut cut = measured.clone();
    cut.records.truncate(1);
    only(&judge(&measured, 3, &cut, RULES), "eventlog.cel.replay.13");
    // A middle record dropped: named by record number.
    let mut dropped = measured.clone();
    dropped.records.remove(1);
    let f = only(&judge(&measured, 3, &dropped, RULES), "eventlog.cel.format");
    assert!(
        f[0].1.contains("record number 2 where 1 was expected"),
        "{f:#?}"
    );
}

#[test]
fn records_after_the_quote_wait_for_the_next_attestation() {
    let l = log(&[
        containerd(),
        image("docker.io/library/busybox:1.36", BUSYBOX),
        image("docker.io/library/nginx:1", EVIL),
    ]);
    let o = judge(&l, 2, &l, RULES);
    assert!(o.verdict.passed, "{:#?}", failed(&o));
    let replay = o
        .verdict
        .claims
        .iter()
        .find(|c| c.id == "eventlog.cel.replay.13")
        .unwrap();
    assert!(replay.actual.contains("first 2 of 3"), "{replay:?}");
    // The next quote covers it: FAIL naming it.
    let f = only(&judge(&l, 3, &l, RULES), "containers.image");
    assert!(f[0].2 == "CEL record #2", "{f:#?}");
}

#[test]
fn boot_time_events_in_the_same_pcr_are_replayed_first() {
    // A UEFI log with an event in PCR 13 (systemd measures system extensions there).
    let gce = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/data/eventlogs/tpm2-tools/event-gce-ubuntu-2104-log.bin"
    ))
    .unwrap();
    let mut boot = uefi::parse(&gce, &uefi::Limits::default()).unwrap();
    let mut e = boot
        .events
        .iter()
        .find(|e| e.event_type == 0x8000_0007)
        .unwrap()
        .clone();
    e.pcr = 13;
    e.num = boot.events.len() as u32;
    boot.events.push(e);
    let boot_bytes = uefi::encode(&boot);
    let at_boot = uefi::replay(&boot)
        .pcr(HashAlg::Sha256, 13)
        .unwrap()
        .to_vec();
    let l = good();
    let s = scenario(RULES, pcr13(&l, 3, at_boot));
    let o = s.verify_with_all_logs(Some(&boot_bytes), None, Some(&encode(&l)));
    assert!(
        o.verdict
            .failed()
            .all(|c| !c.id.starts_with("eventlog.cel") && !c.id.starts_with("containers")),
        "{:#?}",
        failed(&o)
    );
    // Without the boot log, the CEL log alone does not reach the quoted value.
    let o = s.verify_with_all_logs(None, None, Some(&encode(&l)));
    only(&o, "eventlog.cel.replay.13");
}

#[test]
fn a_missing_log_or_unquoted_pcr_fails() {
    let s = scenario(RULES, vec![0; 32]);
    let f = only(
        &s.verify_with_all_logs(None, None, None),
        "eventlog.cel.present",
    );
    assert!(f[0].1.contains("no container measurement log"));
    let f = only(
        &s.verify_with_all_logs(None, None, Some(b"\x09junk")),
        "eventlog.cel.format",
    );
    assert!(f[0].1.contains("record 0"), "{f:#?}");
    // An empty measurement history is a valid state: PCR 13 still at reset.
    let o = s.verify_with_all_logs(None, None, Some(b""));
    assert!(o.verdict.passed, "{:#?}", failed(&o));
    let p = Policy::parse(
        "t.toml",
        &format!("schema = 1\nname = \"t\"\n[containers]\n{RULES}"),
    )
    .unwrap();
    assert_eq!(p.pcr_selection(), vec![13]);
}
