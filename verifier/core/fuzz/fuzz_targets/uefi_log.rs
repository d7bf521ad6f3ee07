//! TCG PC Client UEFI event logs: parsing never panics or allocates past its
//! limits; what parses re-encodes to a log that parses to the same events;
//! replay, data checks, event decoding and fact extraction never panic.

#![no_main]

use assay_core::eventlog::uefi::{self, Limits};
use assay_core::eventlog::{efi, facts};
use assay_core::tpm::public::HashAlg;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_log_bytes: 1 << 20,
        max_events: 4096,
        max_event_data: 256 << 10,
    };
    let Ok(log) = uefi::parse(data, &limits) else {
        return;
    };
    let again = uefi::parse(&uefi::encode(&log), &limits)
        .expect("the encoding of a parsed log parses");
    assert_eq!(again.events, log.events);
    let replay = uefi::replay(&log);
    for pcr in 0..24 {
        let quoted = replay
            .pcr(HashAlg::Sha256, pcr)
            .map(<[u8]>::to_vec)
            .unwrap_or_default();
        let _ = uefi::first_event_past_quoted(&log, HashAlg::Sha256, pcr, &quoted);
    }
    for e in &log.events {
        let _ = uefi::check_event_data(e);
        let _ = efi::decode(e.event_type, &e.data);
    }
    for name in ["SecureBoot", "PK", "KEK", "db", "dbx"] {
        if let Some((_, v)) = facts::config_variable(&log, name) {
            let _ = facts::signature_entries(&v.value);
        }
    }
    let _ = facts::kernel_cmdlines(&log);
    let _ = facts::crtm_versions(&log);
    let _ = facts::after_separator(&log);
});
