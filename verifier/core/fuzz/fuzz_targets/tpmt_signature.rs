//! TPMT_SIGNATURE parsing on arbitrary bytes, and verification of whatever parses
//! against an RSA and a P-256 AK (must fail cleanly, never panic).
#![no_main]

use std::sync::OnceLock;

use assay_core::tpm::public::TpmPublic;
use assay_core::tpm::signature::{parse_tpmt_signature, verify_signature};
use assay_core::verify::testutil;
use libfuzzer_sys::fuzz_target;

fn keys() -> &'static [TpmPublic; 2] {
    static KEYS: OnceLock<[TpmPublic; 2]> = OnceLock::new();
    KEYS.get_or_init(|| [testutil::shared_rsa_ak().public(), testutil::shared_p256_ak().public()])
}

fuzz_target!(|data: &[u8]| {
    if let Ok(sig) = parse_tpmt_signature(data) {
        assert_eq!(sig.to_bytes(), data, "a parsed signature re-encodes to its bytes");
        for key in keys() {
            assert!(verify_signature(key, b"fuzz", &sig).is_err(), "a fuzzer forged a signature");
        }
    }
});
