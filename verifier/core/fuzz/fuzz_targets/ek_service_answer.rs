//! A vendor EK certificate service's answer and an EK public area on
//! arbitrary bytes: the answer parser (Intel's JSON, DER, PEM) and the path
//! construction never panic, and an answer over the bound is refused.
#![no_main]

use assay_core::ek_service::{certificate_of_answer, ek_path, Vendor, MAX_ANSWER};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for v in [Vendor::Intel, Vendor::Amd] {
        let r = certificate_of_answer(v, data);
        if data.len() > MAX_ANSWER {
            assert!(r.is_err());
        }
        let _ = ek_path(v, data);
    }
});
