//! Decoders for the event data of TCG PC Client firmware events, so that
//! policies can judge what was measured rather than opaque bytes.
//!
//! [`crate::eventlog::uefi`] splits a log into events (PCR, type, digests, data);
//! [`decode`] turns the data of one event into an [`EventData`], dispatching on
//! the event type. One module per event-data structure:
//!
//! | module | structures | event types |
//! | --- | --- | --- |
//! | [`variable`] | `UEFI_VARIABLE_DATA`, `EFI_LOAD_OPTION`, BootOrder, SecureBoot | `EV_EFI_VARIABLE_*` |
//! | [`siglist`] | `EFI_SIGNATURE_LIST`, `EFI_SIGNATURE_DATA`, X.509 | PK, KEK, db, dbx, MokList, authorities |
//! | [`devicepath`] | `EFI_DEVICE_PATH_PROTOCOL` and its text form | in image loads and load options |
//! | [`image`] | `UEFI_IMAGE_LOAD_EVENT` | `EV_EFI_BOOT_SERVICES_*`, `EV_EFI_RUNTIME_SERVICES_DRIVER` |
//! | [`firmware`] | `UEFI_PLATFORM_FIRMWARE_BLOB(2)`, `UEFI_HANDOFF_TABLE_POINTERS(2)` | blobs, handoff tables, `EV_POST_CODE` |
//! | [`gpt`] | `UEFI_GPT_DATA` | `EV_EFI_GPT_EVENT` |
//! | [`simple`] | strings, separators, tagged events, StartupLocality | `EV_ACTION`, `EV_SEPARATOR`, `EV_IPL`, ... |
//!
//! All structures are little-endian. Decoders never panic and allocate only in
//! proportion to the input they were given: every length is checked against
//! what is left and a fixed maximum first. A decoded value is only as trustworthy as the
//! event's digest makes it: see [`data_is_digested`].
//!
//! References: TCG PC Client Platform Firmware Profile (PFP) Specification
//! v1.05/v1.06 (§3.3.4 "PCR Usage", §10 "Event Logging" with §10.4.1 "Event
//! Types" and §10.4.5 "EV_NO_ACTION Event Types"), UEFI Specification 2.10
//! (§3.1.3 load options, §5.3 GPT, §10 device paths, §32.4.1 signature database).

pub mod devicepath;
pub mod firmware;
pub mod gpt;
pub mod image;
pub mod siglist;
pub mod simple;
pub mod variable;
mod wire;

#[cfg(test)]
mod tests;

use serde::Serialize;

pub use devicepath::DevicePath;
pub use firmware::{ConfigurationTable, FirmwareBlob, HandoffTables};
pub use gpt::{GptData, GptHeader, GptPartition};
pub use image::ImageLoadEvent;
pub use siglist::{Certificate, SignatureEntry, SignatureList, SignatureValue};
pub use simple::{
    ipl_measured_bytes, CrtmVersion, PostCode, Separator, TaggedEvent, Text, TextEncoding,
};
pub use variable::{variable_data_only, Authority, LoadOption, VariableData, VariableValue};
pub use wire::Guid;

/// What was wrong with an event-data structure, and which field it was about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EfiError {
    #[error("{structure}.{field}: needs {needed} bytes, only {left} left (truncated)")]
    Truncated {
        structure: &'static str,
        field: &'static str,
        needed: u64,
        left: usize,
    },
    #[error("{structure}.{field}: {value} exceeds the maximum of {max}")]
    TooLarge {
        structure: &'static str,
        field: &'static str,
        value: u64,
        max: u64,
    },
    #[error("{structure}: {len} unexpected trailing bytes")]
    TrailingData { structure: &'static str, len: usize },
    #[error("{structure}.{field}: {reason}")]
    Invalid {
        structure: &'static str,
        field: &'static str,
        reason: String,
    },
    /// An error inside a nested structure, with where it sits (e.g. which
    /// variable, which signature list).
    #[error("{context}: {error}")]
    Within {
        context: String,
        error: Box<EfiError>,
    },
}

impl EfiError {
    pub(crate) fn within(self, context: impl Into<String>) -> Self {
        EfiError::Within {
            context: context.into(),
            error: Box::new(self),
        }
    }
}

// Event types (PFP §10.4.1, "Events" table), defined once in `event_type`.
// The glob brings the `EV_*` constants, `EVENT_TYPES` and `event_type_from_name`;
// this module's own `event_type_name` (below, never `None`) shadows the glob's.
pub use super::event_type::*;

/// The event type's name as `tpm2_eventlog` prints it (`"EV_EFI_VARIABLE_BOOT"`).
///
/// `tpm2_eventlog` (tpm2-tools 5.x) prints "Unknown event type" for types it
/// does not know, including `EV_EFI_EVENT_BASE` and the SPDM types; we name
/// those by the spec and keep "Unknown event type" for the rest.
pub fn event_type_name(event_type: u32) -> &'static str {
    super::event_type::event_type_name(event_type).unwrap_or("Unknown event type")
}

/// Whether the event's digest is the hash of its event data, so that the data
/// can be checked against the digest and then trusted (PFP §10.4.1, "Events"
/// table, and the per-PCR rules of §3.3.4).
///
/// `true`:
/// - `EV_SEPARATOR` (the 4-byte value; an error separator is the digest of
///   `0x00000001` with implementation-defined data, so it will not match — which
///   is the right outcome for an error),
/// - `EV_ACTION`, `EV_EFI_ACTION`, `EV_OMIT_BOOT_DEVICE_EVENTS` (the string),
/// - `EV_S_CRTM_VERSION`,
/// - `EV_EFI_VARIABLE_DRIVER_CONFIG`, `EV_EFI_VARIABLE_BOOT2`,
///   `EV_EFI_VARIABLE_AUTHORITY` (the whole `UEFI_VARIABLE_DATA`),
/// - `EV_EFI_VARIABLE_BOOT`: the spec says the whole `UEFI_VARIABLE_DATA`, but
///   EDK2-derived firmware hashes only `VariableData` (that is why PFP 1.05 added
///   `EV_EFI_VARIABLE_BOOT2`); accept either, see [`variable_data_only`],
/// - `EV_EFI_GPT_EVENT` (the `UEFI_GPT_DATA`).
///
/// `false` — the digest covers something the data only describes:
/// - images (`EV_EFI_BOOT_SERVICES_*`, `EV_EFI_RUNTIME_SERVICES_DRIVER`: the PE
///   image hash), firmware blobs, `EV_POST_CODE` and `EV_S_CRTM_CONTENTS` (the
///   code; the data is a label such as "POST CODE" or a base/length),
///   `EV_EFI_HANDOFF_TABLES(2)` (the tables, not the pointers),
///   `EV_PLATFORM_CONFIG_FLAGS` (OVMF logs "ACPI DATA" with the tables' digest),
///   `EV_CPU_MICROCODE`, `EV_EFI_HCRTM_EVENT`, `EV_EFI_SPDM_*`, `EV_NONHOST_*`,
///   `EV_COMPACT_HASH`, `EV_TABLE_OF_DEVICES`, `EV_IPL_PARTITION_DATA`;
/// - `EV_IPL`: boot loaders decide. GRUB hashes the command without its
///   `grub_cmd: ` prefix and NUL, systemd-stub the whole UTF-16 string, shim
///   (`MokList`) and GRUB file events hash content not in the log; see
///   [`ipl_measured_bytes`];
/// - `EV_EVENT_TAG`: meant to be digested, but systemd-stub logs its initrd
///   (tag 0x8F3B22EC) with the initrd's digest, so the data cannot be relied on;
/// - `EV_NO_ACTION` (never extended) and unknown types.
///
/// Checked against every log in `tests/data/eventlogs` (see the tests).
pub fn data_is_digested(event_type: u32) -> bool {
    matches!(
        event_type,
        EV_SEPARATOR
            | EV_ACTION
            | EV_EFI_ACTION
            | EV_OMIT_BOOT_DEVICE_EVENTS
            | EV_S_CRTM_VERSION
            | EV_EFI_VARIABLE_DRIVER_CONFIG
            | EV_EFI_VARIABLE_BOOT
            | EV_EFI_VARIABLE_BOOT2
            | EV_EFI_VARIABLE_AUTHORITY
            | EV_EFI_GPT_EVENT
    )
}

/// The decoded data of one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum EventData {
    /// `EV_EFI_VARIABLE_DRIVER_CONFIG`, `_BOOT`, `_BOOT2`, `_AUTHORITY`.
    Variable(VariableData),
    /// `EV_EFI_BOOT_SERVICES_APPLICATION`, `_DRIVER`, `EV_EFI_RUNTIME_SERVICES_DRIVER`.
    ImageLoad(ImageLoadEvent),
    /// `EV_EFI_PLATFORM_FIRMWARE_BLOB` and `_BLOB2`.
    FirmwareBlob(FirmwareBlob),
    /// `EV_EFI_HANDOFF_TABLES` and `_TABLES2`.
    HandoffTables(HandoffTables),
    /// `EV_EFI_GPT_EVENT`.
    Gpt(GptData),
    /// `EV_S_CRTM_VERSION`.
    CrtmVersion(CrtmVersion),
    /// `EV_S_CRTM_CONTENTS`: a label or a firmware blob.
    CrtmContents(PostCode),
    /// `EV_POST_CODE`: a label or a firmware blob.
    PostCode(PostCode),
    /// `EV_ACTION`, `EV_EFI_ACTION`, `EV_OMIT_BOOT_DEVICE_EVENTS`: an ASCII string.
    Action(Text),
    /// `EV_SEPARATOR`.
    Separator(Separator),
    /// `EV_EVENT_TAG`: one or more `TCG_PCClientTaggedEvent`.
    TaggedEvents(Vec<TaggedEvent>),
    /// `EV_IPL` whose data is text (GRUB, systemd-boot, shim).
    Ipl(Text),
    /// `EV_NO_ACTION` `StartupLocality` event: the locality the TPM was started from.
    StartupLocality(u8),
    /// Not decoded (other types, binary `EV_IPL`, other `EV_NO_ACTION`): see the
    /// event's raw data.
    Raw,
}

/// Decodes the data of one event of type `event_type`.
///
/// Fails only when the data does not have the structure its type requires;
/// types without a decoder (and text-less `EV_IPL`) give [`EventData::Raw`].
pub fn decode(event_type: u32, data: &[u8]) -> Result<EventData, EfiError> {
    Ok(match event_type {
        EV_EFI_VARIABLE_DRIVER_CONFIG | EV_EFI_VARIABLE_BOOT | EV_EFI_VARIABLE_BOOT2 => {
            EventData::Variable(variable::decode(data, false)?)
        }
        EV_EFI_VARIABLE_AUTHORITY => EventData::Variable(variable::decode(data, true)?),
        EV_EFI_BOOT_SERVICES_APPLICATION
        | EV_EFI_BOOT_SERVICES_DRIVER
        | EV_EFI_RUNTIME_SERVICES_DRIVER => EventData::ImageLoad(image::decode(data)?),
        EV_EFI_PLATFORM_FIRMWARE_BLOB => EventData::FirmwareBlob(firmware::decode_blob(data)?),
        EV_EFI_PLATFORM_FIRMWARE_BLOB2 => EventData::FirmwareBlob(firmware::decode_blob2(data)?),
        EV_EFI_HANDOFF_TABLES => EventData::HandoffTables(firmware::decode_handoff_tables(data)?),
        EV_EFI_HANDOFF_TABLES2 => EventData::HandoffTables(firmware::decode_handoff_tables2(data)?),
        EV_EFI_GPT_EVENT => EventData::Gpt(gpt::decode(data)?),
        EV_S_CRTM_VERSION => EventData::CrtmVersion(simple::decode_crtm_version(data)),
        EV_S_CRTM_CONTENTS => EventData::CrtmContents(simple::decode_post_code(data)?),
        EV_POST_CODE => EventData::PostCode(simple::decode_post_code(data)?),
        EV_ACTION | EV_EFI_ACTION | EV_OMIT_BOOT_DEVICE_EVENTS => {
            EventData::Action(simple::decode_action(data)?)
        }
        EV_SEPARATOR => EventData::Separator(simple::decode_separator(data)),
        EV_EVENT_TAG => EventData::TaggedEvents(simple::decode_tagged_events(data)?),
        EV_IPL => simple::decode_text(data).map_or(EventData::Raw, EventData::Ipl),
        EV_NO_ACTION => simple::decode_startup_locality(data)?
            .map_or(EventData::Raw, EventData::StartupLocality),
        _ => EventData::Raw,
    })
}
