//! Golden-value policy parsing on arbitrary text.
#![no_main]

use assay_core::policy::Policy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(p) = Policy::parse("fuzz.toml", text) {
        // A policy that parses has a stable digest and a selection matching its PCRs.
        assert_eq!(p.digest(), Policy::parse("fuzz.toml", text).unwrap().digest());
        assert_eq!(p.pcr_selection().len(), p.sha256_pcrs().len());
    }
});
