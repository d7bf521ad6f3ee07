//! Loading EK trust anchors from arbitrary PEM text.
#![no_main]

use assay_core::ek::TrustAnchors;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut a = TrustAnchors::new();
    if let Ok(n) = a.add_roots_pem(data) {
        assert!(n > 0);
        assert_eq!(a.roots_len(), n);
    }
});
