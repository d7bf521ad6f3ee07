//! TPMS_ATTEST (quote) parsing on arbitrary bytes; what parses re-encodes to the same bytes.
#![no_main]

use assay_core::tpm::attest::{encode_quote_attest, parse_quote_attest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(attest) = parse_quote_attest(data) {
        // Canonical form: only sizeofSelect may be encoded differently.
        let again = parse_quote_attest(&encode_quote_attest(&attest)).expect("re-encoded attest parses");
        assert_eq!(again, attest);
    }
});
