//! The whole `verify_quote` on fuzzer-chosen evidence.
//!
//! Input: `mode` byte, u16 attest length, attest, one byte PCR count, that many
//! (index byte, 32-byte value) pairs, the rest is the signature. With `mode` bit 0
//! clear, the attest is signed by the test AK (P-256), so that the checks after the
//! signature are reached with arbitrary TPMS_ATTEST contents.
#![no_main]

use std::sync::OnceLock;

use assay_core::tpm::attest::ClockInfo;
use assay_core::tpm::public::TpmPublic;
use assay_core::verify::testutil::{self, Scenario};
use assay_core::verify::{verify_quote, QuoteCheck, QuoteEvidence};
use libfuzzer_sys::fuzz_target;
use rand::SeedableRng;

fn fixture() -> &'static (Scenario, TpmPublic) {
    static F: OnceLock<(Scenario, TpmPublic)> = OnceLock::new();
    F.get_or_init(|| {
        let s = Scenario::new(testutil::shared_p256_ak());
        let ak = s.ak.public();
        (s, ak)
    })
}

fn split(data: &[u8]) -> Option<(u8, &[u8], Vec<(u32, Vec<u8>)>, &[u8])> {
    let (&mode, rest) = data.split_first()?;
    let len = usize::from(u16::from_be_bytes([*rest.first()?, *rest.get(1)?]));
    let rest = rest.get(2..)?;
    let attest = rest.get(..len.min(rest.len()))?;
    let mut rest = rest.get(attest.len()..)?;
    let mut pcrs = Vec::new();
    if let Some((&count, tail)) = rest.split_first() {
        rest = tail;
        for _ in 0..count % 8 {
            let Some(chunk) = rest.get(..33) else { break };
            pcrs.push((u32::from(chunk[0]), chunk[1..].to_vec()));
            rest = &rest[33..];
        }
    }
    Some((mode, attest, pcrs, rest))
}

fuzz_target!(|data: &[u8]| {
    let Some((mode, attest, pcrs, sig)) = split(data) else { return };
    let (s, ak) = fixture();
    let signed;
    let signature = if mode & 1 == 0 {
        signed = s.ak.sign(&mut rand::rngs::StdRng::seed_from_u64(0), attest);
        &signed[..]
    } else {
        sig
    };
    let previous_clock =
        (mode & 2 != 0).then_some(ClockInfo { clock: 1 << 20, reset_count: 5, restart_count: 2, safe: true });
    // No measured-boot cache and no logs: this target fuzzes the quote itself
    // (the log parsers have their own targets).
    let check = QuoteCheck { ak, expected_nonce: &s.nonce, previous_clock, policy: &s.policy, cache: None, ima_state: None };
    let outcome =
        verify_quote(&check, &QuoteEvidence { attest, signature, pcrs_sha256: &pcrs, ..QuoteEvidence::default() });
    if mode & 1 != 0 {
        assert!(!outcome.verdict.passed, "a fuzzer forged a quote signature");
    }
    if outcome.verdict.passed {
        assert_eq!(outcome.verdict.claims.iter().filter(|c| c.id.starts_with("pcr.")).count(), 4);
    }
});
