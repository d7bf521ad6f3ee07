//! The dispatcher: names, every decoder reachable, malformed data is an error.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use super::*;

#[test]
fn event_type_names_match_tpm2_eventlog() {
    for (t, name) in [
        (EV_NO_ACTION, "EV_NO_ACTION"),
        (EV_S_CRTM_VERSION, "EV_S_CRTM_VERSION"),
        (
            EV_EFI_VARIABLE_DRIVER_CONFIG,
            "EV_EFI_VARIABLE_DRIVER_CONFIG",
        ),
        (EV_EFI_VARIABLE_BOOT, "EV_EFI_VARIABLE_BOOT"),
        (EV_EFI_VARIABLE_BOOT2, "EV_EFI_VARIABLE_BOOT2"),
        (
            EV_EFI_BOOT_SERVICES_APPLICATION,
            "EV_EFI_BOOT_SERVICES_APPLICATION",
        ),
        (EV_EFI_HANDOFF_TABLES2, "EV_EFI_HANDOFF_TABLES2"),
        (EV_EFI_VARIABLE_AUTHORITY, "EV_EFI_VARIABLE_AUTHORITY"),
        (EV_EFI_SPDM_FIRMWARE_CONFIG, "EV_EFI_SPDM_FIRMWARE_CONFIG"),
        (0x13, "Unknown event type"),
        (0x8000_00ff, "Unknown event type"),
    ] {
        assert_eq!(event_type_name(t), name);
    }
}

#[test]
fn dispatch_covers_every_decoder() {
    let blob2 = [&[2u8, b'f', b'v'][..], &[0; 16]].concat();
    let mut tables2 = vec![0u8];
    tables2.extend(0u64.to_le_bytes());
    let cases: &[(u32, &[u8], &str)] = &[
        (EV_EFI_PLATFORM_FIRMWARE_BLOB2, &blob2, "firmware_blob"),
        (EV_EFI_HANDOFF_TABLES2, &tables2, "handoff_tables"),
        (EV_ACTION, b"Calling INT 19h", "action"),
        (
            EV_OMIT_BOOT_DEVICE_EVENTS,
            b"BOOT ATTEMPTS OMITTED",
            "action",
        ),
        (
            EV_S_CRTM_CONTENTS,
            b"Boot Guard Measured S-CRTM\0",
            "crtm_contents",
        ),
        (EV_IPL, &[0xff, 0x00, 0x01], "raw"),
        (EV_NO_ACTION, b"Spec ID Event03\0", "raw"),
        (EV_EFI_SPDM_FIRMWARE_BLOB, &[1, 2, 3], "raw"),
        (0x1234, &[], "raw"),
    ];
    for (t, data, kind) in cases {
        let d = decode(*t, data).unwrap_or_else(|e| panic!("{}: {e}", event_type_name(*t)));
        assert_eq!(
            serde_json::to_value(&d).unwrap()["kind"],
            *kind,
            "{}",
            event_type_name(*t)
        );
    }
    // Malformed data for a structured type is an error, never a panic.
    for t in [
        EV_EFI_VARIABLE_BOOT2,
        EV_EFI_VARIABLE_AUTHORITY,
        EV_EFI_RUNTIME_SERVICES_DRIVER,
        EV_EFI_GPT_EVENT,
        EV_EFI_PLATFORM_FIRMWARE_BLOB,
        EV_EFI_HANDOFF_TABLES,
        EV_EVENT_TAG,
        EV_POST_CODE,
    ] {
        assert!(decode(t, &[0xff; 3]).is_err(), "{}", event_type_name(t));
    }
    assert!(decode(EV_EFI_ACTION, &[0xff]).is_err());
    assert!(decode(EV_NO_ACTION, b"StartupLocality\0").is_err());
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
    #[test]
    fn decode_never_panics(event_type in proptest::sample::select(vec![
        EV_POST_CODE, EV_NO_ACTION, EV_SEPARATOR, EV_ACTION, EV_EVENT_TAG, EV_S_CRTM_CONTENTS,
        EV_S_CRTM_VERSION, EV_IPL, EV_EFI_VARIABLE_DRIVER_CONFIG, EV_EFI_VARIABLE_BOOT,
        EV_EFI_BOOT_SERVICES_APPLICATION, EV_EFI_GPT_EVENT, EV_EFI_ACTION,
        EV_EFI_PLATFORM_FIRMWARE_BLOB, EV_EFI_HANDOFF_TABLES, EV_EFI_PLATFORM_FIRMWARE_BLOB2,
        EV_EFI_HANDOFF_TABLES2, EV_EFI_VARIABLE_AUTHORITY,
    ]), data in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
        let _ = decode(event_type, &data);
        let _ = devicepath::to_text(&data);
    }
}
