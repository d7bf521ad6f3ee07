//! `UEFI_IMAGE_LOAD_EVENT`: the data of `EV_EFI_BOOT_SERVICES_APPLICATION`,
//! `EV_EFI_BOOT_SERVICES_DRIVER` and `EV_EFI_RUNTIME_SERVICES_DRIVER` events
//! (PFP §10.4.1; the digest is the PE/COFF image hash, not of this data).
//!
//! ```text
//! UEFI_IMAGE_LOAD_EVENT { UEFI_PHYSICAL_ADDRESS ImageLocationInMemory;  // u64
//!                         UINT64 ImageLengthInMemory; UINT64 ImageLinkTimeAddress;
//!                         UINT64 LengthOfDevicePath;
//!                         UEFI_DEVICE_PATH DevicePath[LengthOfDevicePath] }
//! ```

use serde::Serialize;

use super::devicepath::DevicePath;
use super::wire::{ser_hex, Cursor};
use super::EfiError;

/// Largest device path accepted.
pub const MAX_DEVICE_PATH: usize = 64 * 1024;

/// A decoded `UEFI_IMAGE_LOAD_EVENT`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageLoadEvent {
    pub image_location_in_memory: u64,
    pub image_length_in_memory: u64,
    pub image_link_time_address: u64,
    /// `LengthOfDevicePath` bytes, with their text when the nodes are sound.
    pub device_path: DevicePath,
    /// Bytes after the device path. Not in the spec, but logged by some shims
    /// (go-attestation's `sb_cert_eventlog` has `LengthOfDevicePath` 0 followed by
    /// 9 bytes); the data is not what the digest covers, so they are only kept.
    #[serde(serialize_with = "ser_hex", skip_serializing_if = "Vec::is_empty")]
    pub trailing: Vec<u8>,
}

/// Decodes a `UEFI_IMAGE_LOAD_EVENT`. Fails only if the fixed fields or the
/// announced device path are cut short (or the path is over [`MAX_DEVICE_PATH`]);
/// a device path with broken nodes is kept with `text: None`.
pub fn decode(data: &[u8]) -> Result<ImageLoadEvent, EfiError> {
    let mut cur = Cursor::new(data, "UEFI_IMAGE_LOAD_EVENT");
    let image_location_in_memory = cur.u64("ImageLocationInMemory")?;
    let image_length_in_memory = cur.u64("ImageLengthInMemory")?;
    let image_link_time_address = cur.u64("ImageLinkTimeAddress")?;
    let path_len = cur.u64("LengthOfDevicePath")?;
    let path = cur.take_len(path_len, MAX_DEVICE_PATH, "DevicePath")?;
    Ok(ImageLoadEvent {
        image_location_in_memory,
        image_length_in_memory,
        image_link_time_address,
        device_path: DevicePath::from_bytes(path),
        trailing: cur.rest().to_vec(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
    use super::*;

    fn event(path: &[u8], declared: u64) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend(0xbe5a_1018u64.to_le_bytes());
        out.extend(1_334_816u64.to_le_bytes());
        out.extend(0u64.to_le_bytes());
        out.extend(declared.to_le_bytes());
        out.extend(path);
        out
    }

    const FILE_PATH: &str = "04040e005c0045004600490000007fff0400";

    #[test]
    fn decodes_fields_and_path() {
        let path = hex::decode(FILE_PATH).unwrap();
        let ev = decode(&event(&path, path.len() as u64)).unwrap();
        assert_eq!(ev.image_location_in_memory, 0xbe5a_1018);
        assert_eq!(ev.image_length_in_memory, 1_334_816);
        assert_eq!(ev.image_link_time_address, 0);
        assert_eq!(ev.device_path.text.as_deref(), Some("\\EFI"));
        assert!(ev.trailing.is_empty());
        let json = serde_json::to_value(&ev).unwrap();
        assert_eq!(json["device_path"]["bytes"], FILE_PATH);
        assert!(json.get("trailing").is_none());
    }

    #[test]
    fn broken_path_is_kept_without_text() {
        let path = hex::decode("0404ff00").unwrap();
        let ev = decode(&event(&path, 4)).unwrap();
        assert_eq!(ev.device_path.bytes, path);
        assert_eq!(ev.device_path.text, None);
        assert!(ev
            .device_path
            .error
            .as_deref()
            .unwrap()
            .contains("truncated"));
    }

    #[test]
    fn trailing_bytes_are_kept() {
        // go-attestation sb_cert_eventlog event 11.
        let tail = hex::decode("0074110000781100af").unwrap();
        let ev = decode(&event(&tail, 0)).unwrap();
        assert_eq!(ev.device_path.bytes, Vec::<u8>::new());
        assert_eq!(ev.device_path.text.as_deref(), Some(""));
        assert_eq!(ev.trailing, tail);
    }

    #[test]
    fn malformed_events_fail() {
        let path = hex::decode(FILE_PATH).unwrap();
        let good = event(&path, path.len() as u64);
        for len in 0..good.len() {
            assert!(decode(&good[..len]).is_err(), "truncated at {len}");
        }
        assert!(matches!(
            decode(&event(&path, u64::MAX)),
            Err(EfiError::TooLarge {
                field: "DevicePath",
                ..
            })
        ));
        assert!(matches!(
            decode(&event(&path, path.len() as u64 + 1)),
            Err(EfiError::Truncated {
                field: "DevicePath",
                ..
            })
        ));
    }
}
