//! IMA file signatures (`security.ima`, the `sig` field of `ima-sig`) on
//! arbitrary bytes: parsing, verification against a fixed keyring of the
//! RSA / P-256 / P-384 fixture certificates (must fail cleanly, never panic),
//! and the keyring's PEM and DER loaders.
#![no_main]

use std::sync::OnceLock;

use assay_core::ima_signature::{verify, ImaSignature, Keyring, SignatureError};
use libfuzzer_sys::fuzz_target;

fn keyring() -> &'static Keyring {
    static KEYS: OnceLock<Keyring> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut k = Keyring::new();
        for der in [
            &include_bytes!("../../tests/data/ima-sig/rsa2048.der")[..],
            &include_bytes!("../../tests/data/ima-sig/p256.der")[..],
            &include_bytes!("../../tests/data/ima-sig/p384.der")[..],
        ] {
            k.add_certificate_der(der).expect("fixture certificate");
        }
        k
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(sig) = ImaSignature::parse(data) {
        assert_eq!(
            sig.to_bytes(),
            data,
            "a parsed signature re-encodes to its bytes"
        );
        let digest = vec![0x5a; sig.hash_algo.digest_len()];
        assert!(
            matches!(
                verify(keyring(), sig.hash_algo.name(), &digest, data),
                Err(SignatureError::UnknownKey { .. } | SignatureError::BadSignature { .. })
            ),
            "a fuzzer forged a signature"
        );
    }
    for (alg, len) in [("sha1", 20), ("sha256", 32), ("sha512", 64)] {
        assert!(verify(keyring(), alg, &vec![0; len], data).is_err());
    }
    if let Ok(k) = Keyring::from_pem(data) {
        assert!(!k.is_empty() && k.len() <= assay_core::ima_signature::MAX_KEYS);
    }
    let _ = Keyring::new().add_der(data);
});
