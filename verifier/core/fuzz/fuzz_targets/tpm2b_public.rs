//! TPM2B_PUBLIC parsing, name computation and AK checks on arbitrary bytes.
#![no_main]

use assay_core::tpm::public::{check_ak_attributes, parse_tpm2b_public};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(public) = parse_tpm2b_public(data) {
        let name = public.name();
        assert_eq!(name.len(), 2 + public.name_alg.digest_len());
        let _ = check_ak_attributes(&public);
        let _ = public.rsa_public_key();
        let _ = public.p256_public_key();
    }
});
