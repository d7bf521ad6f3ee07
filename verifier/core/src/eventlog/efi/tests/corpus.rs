//! Every event of every corpus log: decodes, and digests agree with
//! `data_is_digested` and `ipl_measured_bytes`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use super::*;

#[test]
fn every_event_of_every_corpus_log_decodes() {
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    for name in LOGS {
        for ev in log(name) {
            let data = decode(ev.event_type, &ev.data).unwrap_or_else(|e| {
                panic!(
                    "{name} event {} ({}): {e}",
                    ev.num,
                    event_type_name(ev.event_type)
                )
            });
            *counts.entry(event_type_name(ev.event_type)).or_default() += 1;
            // What we decode serializes, and device paths always render.
            serde_json::to_string(&data).unwrap();
            if let EventData::ImageLoad(i) = &data {
                assert!(
                    i.device_path.text.is_some(),
                    "{name} event {}: {:?}",
                    ev.num,
                    i.device_path.error
                );
            }
        }
    }
    // The corpus covers every decoder but the *2 and handoff-2 forms.
    for t in [
        "EV_EFI_VARIABLE_DRIVER_CONFIG",
        "EV_EFI_VARIABLE_BOOT",
        "EV_EFI_VARIABLE_AUTHORITY",
        "EV_EFI_BOOT_SERVICES_APPLICATION",
        "EV_EFI_BOOT_SERVICES_DRIVER",
        "EV_EFI_GPT_EVENT",
        "EV_EFI_PLATFORM_FIRMWARE_BLOB",
        "EV_EFI_HANDOFF_TABLES",
        "EV_S_CRTM_VERSION",
        "EV_S_CRTM_CONTENTS",
        "EV_POST_CODE",
        "EV_EFI_ACTION",
        "EV_SEPARATOR",
        "EV_EVENT_TAG",
        "EV_IPL",
        "EV_NO_ACTION",
    ] {
        assert!(counts.get(t).is_some_and(|&n| n > 0), "{t}: {counts:?}");
    }
}

/// Older shims log their vendor certificate as the `Shim` authority without the
/// owner GUID and with a digest over something else (the bug go-attestation
/// works around with `ErrSigMissingGUID`).
const KNOWN_BAD_DIGESTS: &[(&str, usize)] = &[
    ("go-attestation/sb_cert_eventlog", 12),
    ("go-attestation/sb_cert_eventlog", 14),
    ("tpm2-tools/event-postcode.bin", 40),
    ("tpm2-tools/event-postcode.bin", 54),
];

#[test]
fn data_is_digested_holds_across_the_corpus() {
    let mut checked = 0;
    for name in LOGS {
        for ev in log(name) {
            if !data_is_digested(ev.event_type) || KNOWN_BAD_DIGESTS.contains(&(*name, ev.num)) {
                continue;
            }
            let full = digest_matches(&ev, &ev.data);
            let var_only = ev.event_type == EV_EFI_VARIABLE_BOOT
                && variable_data_only(&ev.data).is_some_and(|d| digest_matches(&ev, d));
            assert!(
                full || var_only,
                "{name} event {} ({})",
                ev.num,
                event_type_name(ev.event_type)
            );
            checked += 1;
        }
    }
    assert!(checked > 250, "{checked}");
    // And the known-bad ones really are the shim authority form.
    let sb = log("go-attestation/sb_cert_eventlog");
    let shim = variable(&sb[12]);
    assert_eq!(shim.name, "Shim");
    assert!(matches!(
        shim.value,
        VariableValue::Authority(Authority::Certificate { .. })
    ));
    assert!(!digest_matches(&sb[12], &sb[12].data));
}

#[test]
fn types_not_digested_really_are_not() {
    // For each type we call not digested, at least one corpus event proves the
    // digest is not the hash of the data.
    for t in [
        EV_POST_CODE,
        EV_S_CRTM_CONTENTS,
        EV_PLATFORM_CONFIG_FLAGS,
        EV_EVENT_TAG,
        EV_IPL,
        EV_EFI_BOOT_SERVICES_APPLICATION,
        EV_EFI_BOOT_SERVICES_DRIVER,
        EV_EFI_PLATFORM_FIRMWARE_BLOB,
        EV_EFI_HANDOFF_TABLES,
        EV_CPU_MICROCODE,
        EV_NONHOST_INFO,
    ] {
        assert!(!data_is_digested(t));
        let counter = LOGS
            .iter()
            .flat_map(|n| log(n))
            .find(|ev| ev.event_type == t && !digest_matches(ev, &ev.data));
        assert!(counter.is_some(), "{}", event_type_name(t));
    }
}

#[test]
fn ipl_measured_bytes_match_the_digests() {
    let (mut grub, mut utf16) = (0, 0);
    for name in LOGS {
        for ev in log(name).iter().filter(|e| e.event_type == EV_IPL) {
            if let Some(measured) = ipl_measured_bytes(&ev.data) {
                assert!(digest_matches(ev, measured), "{name} event {}", ev.num);
                if measured.len() == ev.data.len() {
                    utf16 += 1;
                } else {
                    grub += 1;
                }
            }
        }
    }
    assert!(grub > 100 && utf16 >= 2, "{grub} {utf16}");
}
