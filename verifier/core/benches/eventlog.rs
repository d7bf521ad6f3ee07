//! UEFI event log cost in the verifier: parse, replay, and `verify_quote` with
//! a real log (GCE Ubuntu 21.04, 112 events, 33 KB) under a policy using every
//! `[measured_boot]` rule, beside the same quote without a log.
//!
//! `cargo bench -p assay-core --bench eventlog -- --warm-up-time 1 --measurement-time 3`

use assay_core::eventlog::uefi::{self, Limits};
use assay_core::policy::Policy;
use assay_core::tpm::public::HashAlg;
use assay_core::verify::testutil::{
    replayed_pcrs, shared_rsa_ak, Scenario, GCE_MEASURED_BOOT_RULES as RULES,
};
use criterion::{black_box, criterion_group, criterion_main, Criterion};

const GCE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/data/eventlogs/tpm2-tools/event-gce-ubuntu-2104-log.bin"
);

fn bench(c: &mut Criterion) {
    let bytes = std::fs::read(GCE).unwrap();
    let log = uefi::parse(&bytes, &Limits::default()).unwrap();
    let policy = Policy::parse(
        "bench.toml",
        &format!("schema = 1\nname = \"bench\"\n[measured_boot]\n{RULES}"),
    )
    .unwrap();
    let quoted = replayed_pcrs(&bytes, &policy.pcr_selection());
    let with_log = Scenario::with(shared_rsa_ak(), quoted.clone(), policy);
    // Baseline: the same quote under golden PCR values only.
    let mut golden = String::from("schema = 1\nname = \"bench\"\n[pcrs.sha256]\n");
    for (i, v) in &quoted {
        golden.push_str(&format!("{i} = \"{}\"\n", hex::encode(v)));
    }
    let plain = Scenario::with(
        shared_rsa_ak(),
        quoted,
        Policy::parse("bench.toml", &golden).unwrap(),
    );
    let o = with_log.verify_with_logs(Some(&bytes), None);
    assert!(o.verdict.passed, "{:#?}", o.verdict);
    assert!(plain.verify_with_logs(None, None).verdict.passed);

    let mut group = c.benchmark_group("uefi_eventlog");
    group.bench_function("parse_112_events", |b| {
        b.iter(|| uefi::parse(black_box(&bytes), &Limits::default()).unwrap())
    });
    group.bench_function("replay_112_events", |b| {
        b.iter(|| uefi::replay(black_box(&log)))
    });
    group.finish();
    let plain_sig = plain.signed();
    let log_sig = with_log.signed();
    let mut group = c.benchmark_group("verify_quote_measured_boot");
    group.bench_function("quote_and_golden_pcrs", |b| {
        b.iter(|| plain.verify_signed_with_logs(&plain_sig.0, &plain_sig.1, None, None))
    });
    group.bench_function("quote_and_uefi_log_all_rules", |b| {
        b.iter(|| {
            with_log.verify_signed_with_logs(&log_sig.0, &log_sig.1, Some(black_box(&bytes)), None)
        })
    });
    group.finish();
}

/// A container measurement log of 1,000 records (runtime files, images and
/// starts) parsed, replayed and judged under a `[containers]` policy listing
/// every image, beside the same quote under golden PCR values only.
/// A CEL log of `n` records (an image, a container start of it, a runtime
/// config file, in turn): its bytes, the PCR 13 it replays to, and the
/// `allowed_images` entries naming every image.
fn cel_log(n: u32) -> (Vec<u8>, Vec<u8>, Vec<String>) {
    use assay_core::eventlog::cel::{self, CelLog, Measurement, Record};
    let mut ms = Vec::new();
    let mut allowed = Vec::new();
    for i in 0..n {
        let digest = format!("sha256:{:064x}", i / 3 + 1);
        ms.push(match i % 3 {
            0 => {
                allowed.push(format!("{digest:?}"));
                Measurement::Image {
                    reference: format!("registry.example.com/team/app:{i}"),
                    manifest_digest: digest,
                    config_digest: None,
                }
            }
            1 => Measurement::ContainerStart {
                container_id: format!("c-{i}"),
                image_digest: Some(digest),
                image_reference: None,
            },
            _ => Measurement::RuntimeConfig {
                path: format!("/etc/containerd/conf.d/{i}.toml"),
                sha256: [7; 32],
            },
        });
    }
    let log = CelLog {
        records: ms
            .iter()
            .enumerate()
            .map(|(i, m)| Record::new(i as u64, 13, m))
            .collect(),
    };
    let bytes = cel::encode(&log);
    let pcr13 = cel::replay(&log.records, HashAlg::Sha256, |_| vec![0; 32])
        .remove(&13)
        .unwrap();
    (bytes, pcr13, allowed)
}

fn cel(c: &mut Criterion) {
    use assay_core::eventlog::cel;
    let (bytes, pcr13, allowed) = cel_log(1000);
    let text = format!(
        "schema = 1\nname = \"bench\"\n[containers]\nallowed_images = [{}]\n",
        allowed.join(", ")
    );
    let with_cel = Scenario::with(
        shared_rsa_ak(),
        vec![(13, pcr13.clone())],
        Policy::parse("bench.toml", &text).unwrap(),
    );
    let plain = Scenario::with(
        shared_rsa_ak(),
        vec![(13, pcr13.clone())],
        Policy::parse(
            "bench.toml",
            &format!(
                "schema = 1\nname = \"bench\"\n[pcrs.sha256]\n13 = \"{}\"\n",
                hex::encode(&pcr13)
            ),
        )
        .unwrap(),
    );
    let o = with_cel.verify_with_all_logs(None, None, Some(&bytes));
    assert!(o.verdict.passed, "{:#?}", o.verdict);
    let (plain_sig, cel_sig) = (plain.signed(), with_cel.signed());
    let mut group = c.benchmark_group("cel_1000_records");
    group.bench_function("parse_and_replay", |b| {
        b.iter(|| {
            let log = cel::parse(black_box(&bytes), &cel::Limits::default()).unwrap();
            cel::replay(&log.records, HashAlg::Sha256, |_| vec![0; 32])
        })
    });
    group.bench_function("quote_and_golden_pcr13", |b| {
        b.iter(|| plain.verify_signed_with_logs(&plain_sig.0, &plain_sig.1, None, None))
    });
    group.bench_function("quote_and_cel_policy", |b| {
        b.iter(|| {
            with_cel.verify_signed_with_all_logs(
                &cel_sig.0,
                &cel_sig.1,
                None,
                None,
                Some(black_box(&bytes)),
            )
        })
    });
    group.finish();
}

/// The whole verification on realistic evidence, what one attestation of a
/// container host costs the verifier: an RSA-2048 quote over PCRs 0–9, 13,
/// 14; the real 112-event UEFI log under every `[measured_boot]` rule; a CEL
/// log of 60 records (20 images, 20 container starts, 20 runtime files) under
/// `[containers]`. Reported per verification, and as verifications/s/core.
fn full_attestation(c: &mut Criterion) {
    let uefi_bytes = std::fs::read(GCE).unwrap();
    let (cel_bytes, pcr13, allowed) = cel_log(60);
    let policy = Policy::parse(
        "bench.toml",
        &format!(
            "schema = 1\nname = \"fleet\"\n[measured_boot]\n{RULES}\n[containers]\nallowed_images = [{}]\n",
            allowed.join(", ")
        ),
    )
    .unwrap();
    let quoted: Vec<(u32, Vec<u8>)> = replayed_pcrs(&uefi_bytes, &policy.pcr_selection())
        .into_iter()
        .map(|(i, v)| (i, if i == 13 { pcr13.clone() } else { v }))
        .collect();
    let s = Scenario::with(shared_rsa_ak(), quoted, policy);
    let o = s.verify_with_all_logs(Some(&uefi_bytes), None, Some(&cel_bytes));
    assert!(o.verdict.passed, "{:#?}", o.verdict);
    let (attest, sig) = s.signed();
    let mut group = c.benchmark_group("full_attestation");
    // Warm: a fleet booted from one image sends the same UEFI log again;
    // the measured-boot judgement comes from the cache (key: SHA-256 over
    // policy, log and quoted PCRs — computed every time).
    let cache = assay_core::verify::MeasuredBootCache::new(1024);
    group.bench_function(
        "rsa2048_quote_uefi112_all_rules_cel60_containers_same_log_cached",
        |b| {
            b.iter(|| {
                s.verify_signed_cached(
                    &attest,
                    &sig,
                    Some(black_box(&uefi_bytes)),
                    None,
                    Some(black_box(&cel_bytes)),
                    Some(&cache),
                )
            })
        },
    );
    group.bench_function("rsa2048_quote_uefi112_all_rules_cel60_containers", |b| {
        b.iter(|| {
            s.verify_signed_with_all_logs(
                &attest,
                &sig,
                Some(black_box(&uefi_bytes)),
                None,
                Some(black_box(&cel_bytes)),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, bench, cel, full_attestation);
criterion_main!(benches);
