//! IMA runtime measurement logs (ascii or binary): parsing never panics, what
//! parses replays into the SHA-1 and SHA-256 banks without panicking, and the
//! binary encoding of what parses reads back to the same log (byte for byte
//! when the input was binary).

#![no_main]

use assay_core::eventlog::ima::{self, Limits};
use assay_core::tpm::public::HashAlg;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    if let Ok(log) = ima::parse(data, &limits) {
        let _ = ima::replay(&log, HashAlg::Sha1);
        let _ = ima::replay(&log, HashAlg::Sha256);
        if let Ok(bin) = ima::to_binary(&log) {
            let again = ima::parse_binary(&bin, log.template_hash_alg, &limits)
                .expect("the binary encoding of a parsed log parses");
            assert_eq!(again, log);
        }
    }
    // Per-bank binary logs (`binary_runtime_measurements_sha256`).
    if let Ok(log) = ima::parse_binary(data, HashAlg::Sha256, &limits) {
        let _ = ima::replay(&log, HashAlg::Sha1);
        let _ = ima::replay(&log, HashAlg::Sha384);
        assert_eq!(ima::to_binary(&log).ok().as_deref(), Some(data));
    }
});
