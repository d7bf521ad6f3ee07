//! Firmware blobs and handoff tables (PFP §10.4.1; structures in §10 "Event
//! Logging"). Their digests cover the firmware volume or the tables, not this
//! data: it only says where they were.
//!
//! ```text
//! UEFI_PLATFORM_FIRMWARE_BLOB  { UINT64 BlobBase; UINT64 BlobLength }
//! UEFI_PLATFORM_FIRMWARE_BLOB2 { UINT8 BlobDescriptionSize; UINT8 BlobDescription[];
//!                                UINT64 BlobBase; UINT64 BlobLength }
//! UEFI_HANDOFF_TABLE_POINTERS  { UINT64 NumberOfTables; EFI_CONFIGURATION_TABLE TableEntry[] }
//! UEFI_HANDOFF_TABLE_POINTERS2 { UINT8 TableDescriptionSize; UINT8 TableDescription[];
//!                                UINT64 NumberOfTables; EFI_CONFIGURATION_TABLE TableEntry[] }
//! EFI_CONFIGURATION_TABLE      { EFI_GUID VendorGuid; VOID *VendorTable }   // 64-bit pointer
//! ```

use serde::Serialize;

use super::wire::{Cursor, Guid};
use super::EfiError;

/// Most configuration tables accepted in one handoff event.
pub const MAX_TABLES: u64 = 1024;
const TABLE_ENTRY_LEN: u64 = 16 + 8;

/// Where a firmware blob was (`EV_EFI_PLATFORM_FIRMWARE_BLOB(2)`, or an
/// `EV_POST_CODE` / `EV_S_CRTM_CONTENTS` that logs a blob).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FirmwareBlob {
    /// `BlobDescription` of the BLOB2 form (invalid UTF-8 shown as U+FFFD).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub base: u64,
    pub length: u64,
}

/// The configuration tables handed to the OS (`EV_EFI_HANDOFF_TABLES(2)`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HandoffTables {
    /// `TableDescription` of the TABLES2 form.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub tables: Vec<ConfigurationTable>,
}

/// One `EFI_CONFIGURATION_TABLE`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigurationTable {
    pub vendor_guid: Guid,
    pub vendor_table: u64,
    /// "ACPI 2.0", "SMBIOS 3.0", ... for the well-known GUIDs (UEFI 2.10 §4.6).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'static str>,
}

const KNOWN_TABLES: &[(Guid, &str)] = &[
    (
        Guid::new(
            0x8868_e871,
            0xe4f1,
            0x11d3,
            [0xbc, 0x22, 0x00, 0x80, 0xc7, 0x3c, 0x88, 0x81],
        ),
        "ACPI 2.0",
    ),
    (
        Guid::new(
            0xeb9d_2d30,
            0x2d88,
            0x11d3,
            [0x9a, 0x16, 0x00, 0x90, 0x27, 0x3f, 0xc1, 0x4d],
        ),
        "ACPI 1.0",
    ),
    (
        Guid::new(
            0xeb9d_2d31,
            0x2d88,
            0x11d3,
            [0x9a, 0x16, 0x00, 0x90, 0x27, 0x3f, 0xc1, 0x4d],
        ),
        "SMBIOS",
    ),
    (
        Guid::new(
            0xf2fd_1544,
            0x9794,
            0x4a2c,
            [0x99, 0x2e, 0xe5, 0xbb, 0xcf, 0x20, 0xe3, 0x94],
        ),
        "SMBIOS 3.0",
    ),
];

/// Decodes a `UEFI_PLATFORM_FIRMWARE_BLOB` (exactly 16 bytes).
pub fn decode_blob(data: &[u8]) -> Result<FirmwareBlob, EfiError> {
    let mut cur = Cursor::new(data, "UEFI_PLATFORM_FIRMWARE_BLOB");
    let base = cur.u64("BlobBase")?;
    let length = cur.u64("BlobLength")?;
    cur.finish()?;
    Ok(FirmwareBlob {
        description: None,
        base,
        length,
    })
}

/// Decodes a `UEFI_PLATFORM_FIRMWARE_BLOB2`.
pub fn decode_blob2(data: &[u8]) -> Result<FirmwareBlob, EfiError> {
    let mut cur = Cursor::new(data, "UEFI_PLATFORM_FIRMWARE_BLOB2");
    let size = cur.u8("BlobDescriptionSize")?;
    let description = cur.take(usize::from(size), "BlobDescription")?;
    let base = cur.u64("BlobBase")?;
    let length = cur.u64("BlobLength")?;
    cur.finish()?;
    Ok(FirmwareBlob {
        description: Some(String::from_utf8_lossy(description).into_owned()),
        base,
        length,
    })
}

/// Decodes a `UEFI_HANDOFF_TABLE_POINTERS`.
pub fn decode_handoff_tables(data: &[u8]) -> Result<HandoffTables, EfiError> {
    let mut cur = Cursor::new(data, "UEFI_HANDOFF_TABLE_POINTERS");
    read_tables(&mut cur, None)
}

/// Decodes a `UEFI_HANDOFF_TABLE_POINTERS2`.
pub fn decode_handoff_tables2(data: &[u8]) -> Result<HandoffTables, EfiError> {
    let mut cur = Cursor::new(data, "UEFI_HANDOFF_TABLE_POINTERS2");
    let size = cur.u8("TableDescriptionSize")?;
    let description = cur.take(usize::from(size), "TableDescription")?;
    read_tables(
        &mut cur,
        Some(String::from_utf8_lossy(description).into_owned()),
    )
}

fn read_tables(
    cur: &mut Cursor<'_>,
    description: Option<String>,
) -> Result<HandoffTables, EfiError> {
    let count = cur.u64("NumberOfTables")?;
    if count > MAX_TABLES {
        return Err(cur.too_large("NumberOfTables", count, MAX_TABLES));
    }
    // count <= MAX_TABLES, so this cannot overflow.
    cur.check_len(count * TABLE_ENTRY_LEN, usize::MAX, "TableEntry")?;
    let mut tables = Vec::new();
    for _ in 0..count {
        let vendor_guid = cur.guid("VendorGuid")?;
        let vendor_table = cur.u64("VendorTable")?;
        let name = KNOWN_TABLES
            .iter()
            .find(|(g, _)| *g == vendor_guid)
            .map(|(_, n)| *n);
        tables.push(ConfigurationTable {
            vendor_guid,
            vendor_table,
            name,
        });
    }
    cur.finish()?;
    Ok(HandoffTables {
        description,
        tables,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
    use super::*;

    fn blob2(description: &[u8]) -> Vec<u8> {
        let mut out = vec![description.len() as u8];
        out.extend(description);
        out.extend(0x82_0000u64.to_le_bytes());
        out.extend(0xe_0000u64.to_le_bytes());
        out
    }

    #[test]
    fn blobs() {
        // keylime binary_bios_measurements-secureboot event 2 (tpm2_eventlog:
        // BlobBase: 0x820000, BlobLength: 0xe0000).
        let one = hex::decode("000082000000000000000e0000000000").unwrap();
        assert_eq!(
            decode_blob(&one).unwrap(),
            FirmwareBlob {
                description: None,
                base: 0x82_0000,
                length: 0xe_0000
            }
        );
        let two = decode_blob2(&blob2(b"fvMain")).unwrap();
        assert_eq!(two.description.as_deref(), Some("fvMain"));
        assert_eq!((two.base, two.length), (0x82_0000, 0xe_0000));
        assert_eq!(
            decode_blob2(&blob2(b"")).unwrap().description.as_deref(),
            Some("")
        );
        assert_eq!(
            decode_blob2(&blob2(b"\xff"))
                .unwrap()
                .description
                .as_deref(),
            Some("\u{fffd}")
        );
    }

    #[test]
    fn malformed_blobs_fail() {
        let one = [0u8; 16];
        for len in 0..16 {
            assert!(decode_blob(&one[..len]).is_err(), "{len}");
        }
        assert!(matches!(
            decode_blob(&[0u8; 17]),
            Err(EfiError::TrailingData { .. })
        ));
        let two = blob2(b"fvMain");
        for len in 0..two.len() {
            assert!(decode_blob2(&two[..len]).is_err(), "{len}");
        }
        let mut long = two.clone();
        long.push(0);
        assert!(matches!(
            decode_blob2(&long),
            Err(EfiError::TrailingData { .. })
        ));
        // A description size that runs past the end.
        let mut bad = two;
        bad[0] = 0xff;
        assert!(matches!(
            decode_blob2(&bad),
            Err(EfiError::Truncated {
                field: "BlobDescription",
                ..
            })
        ));
    }

    fn tables(count: u64, entries: usize) -> Vec<u8> {
        let mut out = count.to_le_bytes().to_vec();
        for i in 0..entries {
            out.extend(KNOWN_TABLES[i % KNOWN_TABLES.len()].0 .0);
            out.extend((0x7fb0_0000u64 + i as u64).to_le_bytes());
        }
        out
    }

    #[test]
    fn handoff_tables() {
        let t = decode_handoff_tables(&tables(2, 2)).unwrap();
        assert_eq!(t.description, None);
        assert_eq!(t.tables.len(), 2);
        assert_eq!(t.tables[0].name, Some("ACPI 2.0"));
        assert_eq!(t.tables[1].vendor_table, 0x7fb0_0001);
        let mut two = vec![8];
        two.extend(b"SMBIOS3\0");
        two.extend(tables(1, 1));
        let t2 = decode_handoff_tables2(&two).unwrap();
        assert_eq!(t2.description.as_deref(), Some("SMBIOS3\0"));
        assert_eq!(t2.tables.len(), 1);
        let json = serde_json::to_value(&t).unwrap();
        assert_eq!(
            json["tables"][0]["vendor_guid"],
            "8868e871-e4f1-11d3-bc22-0080c73c8881"
        );
        assert!(decode_handoff_tables(&tables(0, 0))
            .unwrap()
            .tables
            .is_empty());
    }

    #[test]
    fn malformed_handoff_tables_fail() {
        let good = tables(2, 2);
        for len in 0..good.len() {
            assert!(decode_handoff_tables(&good[..len]).is_err(), "{len}");
        }
        assert!(matches!(
            decode_handoff_tables(&tables(3, 2)),
            Err(EfiError::Truncated { .. })
        ));
        assert!(matches!(
            decode_handoff_tables(&tables(1, 2)),
            Err(EfiError::TrailingData { .. })
        ));
        assert!(matches!(
            decode_handoff_tables(&tables(u64::MAX, 1)),
            Err(EfiError::TooLarge {
                field: "NumberOfTables",
                ..
            })
        ));
        assert!(decode_handoff_tables2(&[5, b'a']).is_err());
    }
}
