//! Container measurement logs (TCG CEL TLV): parsing never panics or allocates
//! past its limits; what parses re-encodes byte for byte; decoding every
//! record's content and replaying never panic; a decoded measurement
//! re-encodes to the content it came from.

#![no_main]

use assay_core::eventlog::cel::{self, Limits};
use assay_core::tpm::public::HashAlg;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(log) = cel::parse(data, &Limits::default()) else {
        return;
    };
    assert_eq!(cel::encode(&log), data, "re-encodes byte for byte");
    for r in &log.records {
        let _ = r.content_proven();
        if let Ok(m) = r.measurement() {
            let again = cel::decode_measurement(&cel::encode_measurement(&m));
            assert_eq!(again.as_ref(), Ok(&m));
        }
    }
    let _ = cel::replay(&log.records, HashAlg::Sha256, |_| vec![0; 32]);
});
