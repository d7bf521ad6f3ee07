//! EK certificate validation on arbitrary DER, against the swtpm local CA that
//! signed the seed certificate (so mutated real certificates reach the chain checks).
#![no_main]

use std::sync::OnceLock;

use assay_core::ek::{validate_ek_certificate, TrustAnchors};
use libfuzzer_sys::fuzz_target;

// 2026-11-22: inside the seed certificates' validity.
const NOW: i64 = 1_795_305_600;

fn anchors() -> &'static TrustAnchors {
    static A: OnceLock<TrustAnchors> = OnceLock::new();
    A.get_or_init(|| {
        let mut a = TrustAnchors::new();
        a.add_roots_pem(include_bytes!("../anchors/root.pem")).unwrap();
        a.add_intermediates_pem(include_bytes!("../anchors/issuer.pem")).unwrap();
        a
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(cert) = validate_ek_certificate(data, anchors(), NOW) {
        // Whatever validates chains to the configured root through the intermediate.
        assert_eq!(cert.chain.len(), 2);
    }
});
