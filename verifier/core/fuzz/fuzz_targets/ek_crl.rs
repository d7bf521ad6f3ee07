//! CRL loading on arbitrary bytes (DER or PEM), against the swtpm local CA
//! the EK seed certificates chain to: parsing, the issuer lookup and the
//! signature check never panic, and whatever loads is counted once.
#![no_main]

use assay_core::ek::TrustAnchors;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut a = TrustAnchors::new();
    a.add_roots_pem(include_bytes!("../anchors/root.pem")).unwrap();
    a.add_intermediates_pem(include_bytes!("../anchors/issuer.pem")).unwrap();
    if a.add_crl(data).is_ok() {
        assert_eq!(a.crls_len(), 1);
    }
});
