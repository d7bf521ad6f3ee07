//! Event types of the TCG PC Client firmware event log (PFP §10.4.1, "Events"
//! table): the `EV_*` numbers and their spec names, listed once.
//!
//! [`uefi`](super::uefi) (the log parser) and [`efi`](super::efi) (the
//! event-data decoders) both take their constants from here and re-export them,
//! so `uefi::event_type_name` and `efi::EV_SEPARATOR` keep working.

/// Defines one `pub const` per event type and [`EVENT_TYPES`] from the same
/// list, so a number and its name cannot drift apart.
macro_rules! event_types {
    ($($name:ident = $num:expr,)*) => {
        $(pub const $name: u32 = $num;)*

        /// Event type numbers and the names `tpm2_eventlog` prints for them
        /// (TCG PC Client PFP §10.4.1, Table 9), in numeric order.
        pub const EVENT_TYPES: &[(u32, &str)] = &[$(($name, stringify!($name)),)*];
    };
}

event_types! {
    EV_PREBOOT_CERT = 0x0,
    EV_POST_CODE = 0x1,
    EV_UNUSED = 0x2,
    EV_NO_ACTION = 0x3,
    EV_SEPARATOR = 0x4,
    EV_ACTION = 0x5,
    EV_EVENT_TAG = 0x6,
    EV_S_CRTM_CONTENTS = 0x7,
    EV_S_CRTM_VERSION = 0x8,
    EV_CPU_MICROCODE = 0x9,
    EV_PLATFORM_CONFIG_FLAGS = 0xa,
    EV_TABLE_OF_DEVICES = 0xb,
    EV_COMPACT_HASH = 0xc,
    EV_IPL = 0xd,
    EV_IPL_PARTITION_DATA = 0xe,
    EV_NONHOST_CODE = 0xf,
    EV_NONHOST_CONFIG = 0x10,
    EV_NONHOST_INFO = 0x11,
    EV_OMIT_BOOT_DEVICE_EVENTS = 0x12,
    EV_EFI_EVENT_BASE = 0x8000_0000,
    EV_EFI_VARIABLE_DRIVER_CONFIG = 0x8000_0001,
    EV_EFI_VARIABLE_BOOT = 0x8000_0002,
    EV_EFI_BOOT_SERVICES_APPLICATION = 0x8000_0003,
    EV_EFI_BOOT_SERVICES_DRIVER = 0x8000_0004,
    EV_EFI_RUNTIME_SERVICES_DRIVER = 0x8000_0005,
    EV_EFI_GPT_EVENT = 0x8000_0006,
    EV_EFI_ACTION = 0x8000_0007,
    EV_EFI_PLATFORM_FIRMWARE_BLOB = 0x8000_0008,
    EV_EFI_HANDOFF_TABLES = 0x8000_0009,
    EV_EFI_PLATFORM_FIRMWARE_BLOB2 = 0x8000_000a,
    EV_EFI_HANDOFF_TABLES2 = 0x8000_000b,
    EV_EFI_VARIABLE_BOOT2 = 0x8000_000c,
    EV_EFI_HCRTM_EVENT = 0x8000_0010,
    EV_EFI_VARIABLE_AUTHORITY = 0x8000_00e0,
    EV_EFI_SPDM_FIRMWARE_BLOB = 0x8000_00e1,
    EV_EFI_SPDM_FIRMWARE_CONFIG = 0x8000_00e2,
}

/// The spec name of an event type, or `None` for unassigned numbers.
pub fn event_type_name(event_type: u32) -> Option<&'static str> {
    EVENT_TYPES
        .iter()
        .find(|(n, _)| *n == event_type)
        .map(|(_, name)| *name)
}

/// The event type a spec name stands for (`EV_SEPARATOR` → 4).
pub fn event_type_from_name(name: &str) -> Option<u32> {
    EVENT_TYPES
        .iter()
        .find(|(_, n)| *n == name)
        .map(|(num, _)| *num)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_round_trip() {
        assert_eq!(EVENT_TYPES.len(), 36);
        for (num, name) in EVENT_TYPES {
            assert_eq!(event_type_name(*num), Some(*name));
            assert_eq!(event_type_from_name(name), Some(*num));
        }
        assert!(EVENT_TYPES.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(event_type_name(EV_SEPARATOR), Some("EV_SEPARATOR"));
        assert_eq!(
            event_type_from_name("EV_EFI_VARIABLE_BOOT2"),
            Some(EV_EFI_VARIABLE_BOOT2)
        );
        assert_eq!(event_type_name(0x13), None);
        assert_eq!(event_type_from_name("EV_NOPE"), None);
    }

    /// The paths callers outside this module use keep working.
    #[test]
    fn uefi_and_efi_re_export_the_table() {
        use crate::eventlog::{efi, uefi};
        assert_eq!(efi::EV_SEPARATOR, EV_SEPARATOR);
        assert_eq!(uefi::EVENT_TYPES, EVENT_TYPES);
        assert_eq!(uefi::event_type_name(EV_IPL), Some("EV_IPL"));
        assert_eq!(uefi::event_type_from_name("EV_IPL"), Some(EV_IPL));
        assert_eq!(efi::event_type_from_name("EV_IPL"), Some(EV_IPL));
        assert_eq!(efi::event_type_name(EV_IPL), "EV_IPL");
        assert_eq!(efi::event_type_name(0x13), "Unknown event type");
    }
}
