//! IMA log throughput: parse + replay into the SHA-256 bank of ima-ng logs of
//! 10,000 and 100,000 entries, ascii and binary. The SHA-256 bank recomputes
//! every entry's template data and hashes it (and replay checks every SHA-1
//! template hash), so this is the verifier's whole per-log cost.
//!
//! `cargo bench -p assay-core --bench ima -- --warm-up-time 1 --measurement-time 3`

use assay_core::eventlog::ima::{
    entry_extend, extend_value, parse, replay, to_binary, FileMeasurement, ImaEntry, ImaLog,
    Limits, Template, Value,
};
use assay_core::tpm::public::HashAlg;
/// As in the `assay-verifier` binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const DIRS: &[&str] = &[
    "/usr/bin",
    "/usr/sbin",
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/systemd",
    "/usr/lib/modules/6.8.0-51-generic/kernel/drivers/net/ethernet/intel/e1000e",
    "/usr/libexec/containerd",
    "/opt/app/node_modules/.bin",
];
const STEMS: &[&str] = &[
    "libssl.so.3",
    "systemd-journald",
    "containerd-shim-runc-v2",
    "e1000e.ko.zst",
    "python3.12",
    "kubelet",
    "ld-linux-x86-64.so.2",
];

/// A boot_aggregate and `n - 1` file measurements, with valid template hashes.
fn log_of(n: usize) -> ImaLog {
    let entries = (0..n)
        .map(|i| {
            let path = if i == 0 {
                "boot_aggregate".to_string()
            } else {
                format!("{}/{}-{i}", DIRS[i % DIRS.len()], STEMS[i % STEMS.len()])
            };
            let template = Template::ImaNg(FileMeasurement {
                hash_alg: "sha256".into(),
                digest: HashAlg::Sha256.digest(&i.to_le_bytes()),
                path,
                signature: None,
            });
            let mut e = ImaEntry {
                index: i,
                pcr: 10,
                template_hash: Vec::new(),
                template,
            };
            e.template_hash = HashAlg::Sha1.digest(&e.template_data().unwrap());
            e
        })
        .collect();
    ImaLog {
        template_hash_alg: HashAlg::Sha1,
        entries,
    }
}

/// A policy whose `[ima]` allowlist names every file of `log` (its
/// boot_aggregate is not one the quote's PCRs give: not recomputed).
fn allowlist_policy(log: &ImaLog) -> String {
    let mut text = String::from(
        "schema = 1\nname = \"bench\"\n[ima]\nboot_aggregate = false\n[ima.allowlist]\n",
    );
    for e in &log.entries {
        let f = e.file().unwrap();
        text.push_str(&format!(
            "{:?} = [\"sha256:{}\"]\n",
            f.path,
            hex::encode(&f.digest)
        ));
    }
    text
}

fn to_ascii(log: &ImaLog) -> Vec<u8> {
    let mut out = String::new();
    for e in &log.entries {
        let f = e.file().unwrap();
        out.push_str(&format!(
            "{:2} {} ima-ng {}:{} {}\n",
            e.pcr,
            hex::encode(&e.template_hash),
            f.hash_alg,
            hex::encode(&f.digest),
            f.path
        ));
    }
    out.into_bytes()
}

fn parse_and_replay(c: &mut Criterion) {
    let limits = Limits::default();
    let mut group = c.benchmark_group("ima_parse_replay_sha256");
    for n in [10_000usize, 100_000] {
        let log = log_of(n);
        let ascii = to_ascii(&log);
        let binary = to_binary(&log).unwrap();
        // Sanity: both forms parse back to the log, and replay finds nothing wrong.
        assert_eq!(parse(&ascii, &limits).unwrap(), log);
        assert_eq!(parse(&binary, &limits).unwrap(), log);
        let r = replay(&log, HashAlg::Sha256).unwrap();
        assert!(r.mismatched.is_empty() && r.violations.is_empty());
        println!(
            "ima {n} entries: ascii {} bytes, binary {} bytes",
            ascii.len(),
            binary.len()
        );
        group.throughput(Throughput::Elements(n as u64));
        if n >= 100_000 {
            group.sample_size(10);
        }
        for (form, bytes) in [("ascii", &ascii), ("binary", &binary)] {
            group.bench_with_input(BenchmarkId::new(form, n), bytes, |b, bytes| {
                b.iter(|| {
                    let log = parse(black_box(bytes), &limits).unwrap();
                    replay(&log, HashAlg::Sha256).unwrap()
                })
            });
        }
    }
    group.finish();
}

/// Parse + replay into the sha256 bank as the verifier does it (what
/// `[ima]` costs before judgement): each entry's extend value, streamed from
/// its template data, with no per-entry allocation; the logged SHA-1
/// template hashes are not recomputed (the sha256 bank, extended with the
/// data's own sha256, proves the data). `replay` above also checks them.
fn verifier_replay(c: &mut Criterion) {
    let limits = Limits::default();
    let mut group = c.benchmark_group("ima_parse_replay_sha256_verifier");
    for n in [10_000usize, 100_000] {
        let log = log_of(n);
        let ascii = to_ascii(&log);
        let binary = to_binary(&log).unwrap();
        group.throughput(Throughput::Elements(n as u64));
        if n >= 100_000 {
            group.sample_size(10);
        }
        for (form, bytes) in [("ascii", &ascii), ("binary", &binary)] {
            group.bench_with_input(BenchmarkId::new(form, n), bytes, |b, bytes| {
                b.iter(|| {
                    let log = parse(black_box(bytes), &limits).unwrap();
                    let mut pcr = Value::zero(HashAlg::Sha256);
                    for e in &log.entries {
                        let (v, _) = entry_extend(e, HashAlg::Sha256).unwrap();
                        extend_value(HashAlg::Sha256, &mut pcr, &v);
                    }
                    pcr
                })
            });
        }
    }
    group.finish();
}

/// One attestation's core time (`verify_quote`: RSA quote, `[ima]` replay and
/// allowlist judgement of every file) on a node whose log holds `n` entries:
/// judged whole, and incrementally (the last 100 entries sent, replayed from
/// the state kept at `n - 100`).
fn incremental(c: &mut Criterion) {
    use assay_core::policy::Policy;
    use assay_core::verify::testutil::{shared_rsa_ak, Scenario};
    use assay_core::verify::{ImaProgress, ImaState};
    const NEW: usize = 100;
    let mut group = c.benchmark_group("ima_attestation_core");
    for n in [1_000usize, 10_000, 100_000] {
        let log = log_of(n);
        let text = allowlist_policy(&log);
        let policy = Policy::parse("bench.toml", &text).unwrap();
        let mut pcr = Value::zero(HashAlg::Sha256);
        let mut kept_value = pcr;
        for (i, e) in log.entries.iter().enumerate() {
            if i == n - NEW {
                kept_value = pcr;
            }
            extend_value(
                HashAlg::Sha256,
                &mut pcr,
                &entry_extend(e, HashAlg::Sha256).unwrap().0,
            );
        }
        let s = Scenario::with(shared_rsa_ak(), vec![(10, pcr.as_slice().to_vec())], policy);
        let whole = to_binary(&log).unwrap();
        let tail = to_binary(&ImaLog {
            template_hash_alg: HashAlg::Sha1,
            entries: log.entries[n - NEW..].to_vec(),
        })
        .unwrap();
        // The state the whole judgement leaves, moved back to n - 100.
        let ImaProgress::Set(mut kept) = s.verify_ima_from(&whole, 0, None).ima else {
            panic!("the whole log does not pass")
        };
        kept.entries = (n - NEW) as u64;
        kept.pcr_value = hex::encode(kept_value.as_slice());
        let kept: ImaState = kept;
        let o = s.verify_ima_from(&tail, (n - NEW) as u64, Some(&kept));
        assert!(
            o.verdict.passed,
            "{:?}",
            o.verdict.failed().collect::<Vec<_>>()
        );
        if n >= 100_000 {
            group.sample_size(10);
        }
        let (attest, sig) = s.signed();
        group.bench_function(BenchmarkId::new("whole_log", n), |b| {
            b.iter(|| s.verify_signed_ima_from(&attest, &sig, black_box(&whole), 0, None))
        });
        group.bench_function(BenchmarkId::new("incremental_100_new", n), |b| {
            b.iter(|| {
                let first = (n - NEW) as u64;
                s.verify_signed_ima_from(&attest, &sig, black_box(&tail), first, Some(&kept))
            })
        });
    }
    group.finish();
}

/// `verify_quote` with a 10,000-entry binary IMA log and an allowlist naming
/// every file, beside the same quote without `[ima]`: the cost IMA adds.
fn verify_with_ima(c: &mut Criterion) {
    use assay_core::policy::Policy;
    use assay_core::verify::testutil::{shared_rsa_ak, Scenario};
    let log = log_of(10_000);
    let binary = to_binary(&log).unwrap();
    let mut pcr10 = vec![0u8; 32];
    for e in &log.entries {
        let d = e.extend_digest(HashAlg::Sha256).unwrap();
        pcr10 = HashAlg::Sha256.digest(&[pcr10.as_slice(), &d].concat());
    }
    let text = allowlist_policy(&log);
    let with_ima = Scenario::with(
        shared_rsa_ak(),
        vec![(10, pcr10.clone())],
        Policy::parse("bench.toml", &text).unwrap(),
    );
    let plain = Scenario::with(
        shared_rsa_ak(),
        vec![(10, pcr10.clone())],
        Policy::parse(
            "bench.toml",
            &format!(
                "schema = 1\nname = \"bench\"\n[pcrs.sha256]\n10 = \"{}\"\n",
                hex::encode(&pcr10)
            ),
        )
        .unwrap(),
    );
    assert!(
        with_ima
            .verify_with_logs(None, Some(&binary))
            .verdict
            .passed
    );
    assert!(plain.verify_with_logs(None, None).verdict.passed);
    let plain_sig = plain.signed();
    let ima_sig = with_ima.signed();
    let mut group = c.benchmark_group("verify_quote_ima");
    group.sample_size(20);
    group.bench_function("quote_and_golden_pcr10", |b| {
        b.iter(|| plain.verify_signed_with_logs(&plain_sig.0, &plain_sig.1, None, None))
    });
    group.bench_function("quote_and_ima_10k_allowlisted", |b| {
        b.iter(|| {
            with_ima.verify_signed_with_logs(&ima_sig.0, &ima_sig.1, None, Some(black_box(&binary)))
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    parse_and_replay,
    verifier_replay,
    verify_with_ima,
    incremental
);
criterion_main!(benches);
