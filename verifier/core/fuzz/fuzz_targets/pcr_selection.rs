//! TPML_PCR_SELECTION parsing on arbitrary bytes.
#![no_main]

use assay_core::tpm::pcr::parse_pcr_selection;
use assay_core::tpm::public::HashAlg;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(sel) = parse_pcr_selection(data) {
        let idx = sel.indices(HashAlg::Sha256);
        assert!(idx.windows(2).all(|w| w[0] < w[1]));
        let _ = parse_pcr_selection(&sel.to_bytes()).expect("re-encoded selection parses");
    }
});
