//! Quote verification throughput: parse + signature check per AK kind, and the whole
//! `verify_quote` (signature, format, nonce, selection, digest, clock, 4-PCR policy).
//!
//! `cargo bench -p assay-core --bench core -- --warm-up-time 1 --measurement-time 3`

use assay_core::tpm::attest::{parse_quote_attest, ClockInfo};
use assay_core::tpm::public::parse_tpm2b_public;
use assay_core::tpm::signature::{parse_tpmt_signature, verify_signature};
use assay_core::verify::testutil::{self, Scenario, TestAk};
use assay_core::verify::{verify_quote, QuoteCheck, QuoteEvidence};
use criterion::{black_box, criterion_group, criterion_main, Criterion};

fn parse_and_verify(c: &mut Criterion) {
    let aks: [(&str, &TestAk); 3] = [
        ("rsa2048_rsassa", testutil::shared_rsa_ak()),
        ("rsa2048_rsapss", testutil::shared_rsapss_ak()),
        ("ecdsa_p256", testutil::shared_p256_ak()),
    ];
    let mut group = c.benchmark_group("parse_and_verify_quote_signature");
    for (label, ak) in aks {
        let scenario = Scenario::new(ak);
        let public = ak.public_bytes();
        let (attest, sig) = scenario.signed();
        group.bench_function(label, |b| {
            b.iter(|| {
                let ak = parse_tpm2b_public(black_box(&public)).unwrap();
                let sig = parse_tpmt_signature(black_box(&sig)).unwrap();
                verify_signature(&ak, black_box(&attest), &sig).unwrap();
                parse_quote_attest(black_box(&attest)).unwrap()
            })
        });
    }
    group.finish();
}

fn whole_verify_quote(c: &mut Criterion) {
    let mut group = c.benchmark_group("verify_quote_4_pcr_policy");
    for (label, ak) in [
        ("rsa2048_rsassa", testutil::shared_rsa_ak()),
        ("ecdsa_p256", testutil::shared_p256_ak()),
    ] {
        let scenario = Scenario::new(ak);
        let public = ak.public();
        let (attest, signature) = scenario.signed();
        let previous = ClockInfo {
            clock: 1,
            reset_count: 5,
            restart_count: 2,
            safe: true,
        };
        let check = QuoteCheck {
            ak: &public,
            expected_nonce: &scenario.nonce,
            previous_clock: Some(previous),
            policy: &scenario.policy,
            cache: None,
            ima_state: None,
        };
        let evidence = QuoteEvidence {
            attest: &attest,
            signature: &signature,
            pcrs_sha256: &scenario.pcrs,
            ..Default::default()
        };
        assert!(verify_quote(&check, &evidence).verdict.passed);
        group.bench_function(label, |b| {
            b.iter(|| verify_quote(black_box(&check), black_box(&evidence)))
        });
    }
    group.finish();
}

criterion_group!(benches, parse_and_verify, whole_verify_quote);
criterion_main!(benches);
