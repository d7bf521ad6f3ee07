//! `UEFI_GPT_DATA`, the data of `EV_EFI_GPT_EVENT` (PFP §10.4.1; the digest is
//! of this data). Layouts from UEFI 2.10 §5.3.2 (GPT header) and §5.3.3
//! (partition entries).
//!
//! ```text
//! UEFI_GPT_DATA { EFI_PARTITION_TABLE_HEADER UEFIPartitionHeader;   // 92 bytes
//!                 UINT64 NumberOfPartitions;
//!                 EFI_PARTITION_ENTRY Partitions[NumberOfPartitions] }  // SizeOfPartitionEntry each
//! ```
//!
//! Firmware logs only the non-empty entries. A 32-bit firmware would log
//! `NumberOfPartitions` as a 4-byte `UINTN`; such logs fail here rather than
//! being misread.

use serde::Serialize;

use super::wire::{Cursor, Guid};
use super::EfiError;

/// `"EFI PART"`.
pub const GPT_SIGNATURE: &[u8; 8] = b"EFI PART";
/// Most partitions accepted (GPTs usually reserve 128 entries).
pub const MAX_PARTITIONS: u64 = 4096;
/// Largest `SizeOfPartitionEntry` accepted.
pub const MAX_ENTRY_SIZE: u32 = 4096;
const HEADER_LEN: u32 = 92;
const ENTRY_LEN: u32 = 128;
const NAME_BYTES: usize = 72;

/// A decoded `UEFI_GPT_DATA`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GptData {
    pub header: GptHeader,
    pub partitions: Vec<GptPartition>,
}

/// `EFI_PARTITION_TABLE_HEADER` (without its signature, which is checked).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GptHeader {
    pub revision: u32,
    pub header_size: u32,
    pub header_crc32: u32,
    pub my_lba: u64,
    pub alternate_lba: u64,
    pub first_usable_lba: u64,
    pub last_usable_lba: u64,
    pub disk_guid: Guid,
    pub partition_entry_lba: u64,
    pub number_of_partition_entries: u32,
    pub size_of_partition_entry: u32,
    pub partition_entry_array_crc32: u32,
}

/// `EFI_PARTITION_ENTRY`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GptPartition {
    pub partition_type_guid: Guid,
    pub unique_partition_guid: Guid,
    pub starting_lba: u64,
    pub ending_lba: u64,
    pub attributes: u64,
    /// `PartitionName` up to its first NUL (unpaired surrogates shown as U+FFFD).
    pub name: String,
}

/// Decodes `UEFI_GPT_DATA`: checks the signature, the header size (92 up to
/// [`MAX_ENTRY_SIZE`]), the entry size (128 × 2^n, UEFI §5.3.2) and that the
/// partitions fill the rest exactly.
pub fn decode(data: &[u8]) -> Result<GptData, EfiError> {
    let mut cur = Cursor::new(data, "EFI_PARTITION_TABLE_HEADER");
    let signature = cur.take(GPT_SIGNATURE.len(), "Signature")?;
    if signature != GPT_SIGNATURE {
        return Err(cur.invalid(
            "Signature",
            format!("{} is not \"EFI PART\"", hex::encode(signature)),
        ));
    }
    let revision = cur.u32("Revision")?;
    let header_size = cur.u32("HeaderSize")?;
    let header_crc32 = cur.u32("HeaderCRC32")?;
    let _reserved = cur.u32("Reserved")?;
    let header = GptHeader {
        revision,
        header_size,
        header_crc32,
        my_lba: cur.u64("MyLBA")?,
        alternate_lba: cur.u64("AlternateLBA")?,
        first_usable_lba: cur.u64("FirstUsableLBA")?,
        last_usable_lba: cur.u64("LastUsableLBA")?,
        disk_guid: cur.guid("DiskGUID")?,
        partition_entry_lba: cur.u64("PartitionEntryLBA")?,
        number_of_partition_entries: cur.u32("NumberOfPartitionEntries")?,
        size_of_partition_entry: cur.u32("SizeOfPartitionEntry")?,
        partition_entry_array_crc32: cur.u32("PartitionEntryArrayCRC32")?,
    };
    if !(HEADER_LEN..=MAX_ENTRY_SIZE).contains(&header_size) {
        return Err(cur.invalid(
            "HeaderSize",
            format!("{header_size} is not between {HEADER_LEN} and {MAX_ENTRY_SIZE}"),
        ));
    }
    let entry_size = header.size_of_partition_entry;
    if entry_size < ENTRY_LEN || !entry_size.is_power_of_two() || entry_size > MAX_ENTRY_SIZE {
        return Err(cur.invalid(
            "SizeOfPartitionEntry",
            format!("{entry_size} is not 128 × 2^n (at most {MAX_ENTRY_SIZE})"),
        ));
    }
    let mut cur = Cursor::new(cur.rest(), "UEFI_GPT_DATA");
    let count = cur.u64("NumberOfPartitions")?;
    if count > MAX_PARTITIONS {
        return Err(cur.too_large("NumberOfPartitions", count, MAX_PARTITIONS));
    }
    // Both factors are bounded, so this cannot overflow.
    cur.check_len(count * u64::from(entry_size), usize::MAX, "Partitions")?;
    let mut partitions = Vec::new();
    for _ in 0..count {
        let entry = cur.take(entry_size as usize, "Partitions")?;
        partitions.push(read_entry(entry)?);
    }
    cur.finish()?;
    Ok(GptData { header, partitions })
}

fn read_entry(entry: &[u8]) -> Result<GptPartition, EfiError> {
    let mut e = Cursor::new(entry, "EFI_PARTITION_ENTRY");
    let partition_type_guid = e.guid("PartitionTypeGUID")?;
    let unique_partition_guid = e.guid("UniquePartitionGUID")?;
    let starting_lba = e.u64("StartingLBA")?;
    let ending_lba = e.u64("EndingLBA")?;
    let attributes = e.u64("Attributes")?;
    let name_bytes = e.take(NAME_BYTES, "PartitionName")?;
    let units: Vec<u16> = super::wire::code_units(name_bytes)
        .take_while(|&u| u != 0)
        .collect();
    let name = char::decode_utf16(units)
        .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect();
    Ok(GptPartition {
        partition_type_guid,
        unique_partition_guid,
        starting_lba,
        ending_lba,
        attributes,
        name,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
    use super::*;

    const ESP: Guid = Guid::new(
        0xc12a_7328,
        0xf81f,
        0x11d2,
        [0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e, 0xc9, 0x3b],
    );

    fn header(entry_size: u32, header_size: u32) -> Vec<u8> {
        let mut h = GPT_SIGNATURE.to_vec();
        h.extend(0x0001_0000u32.to_le_bytes());
        h.extend(header_size.to_le_bytes());
        h.extend(0x0ee0_0c6cu32.to_le_bytes());
        h.extend(0u32.to_le_bytes());
        for lba in [1u64, 0x13f_ffff, 34, 0x13f_ffde] {
            h.extend(lba.to_le_bytes());
        }
        h.extend([0x11; 16]);
        h.extend(2u64.to_le_bytes());
        h.extend(128u32.to_le_bytes());
        h.extend(entry_size.to_le_bytes());
        h.extend(0xe23d_dea3u32.to_le_bytes());
        assert_eq!(h.len(), 92);
        h
    }

    fn entry(name: &str, size: usize) -> Vec<u8> {
        let mut e = ESP.0.to_vec();
        e.extend([0x22; 16]);
        e.extend(2048u64.to_le_bytes());
        e.extend(206_847u64.to_le_bytes());
        e.extend(0u64.to_le_bytes());
        let mut name: Vec<u8> = name.encode_utf16().flat_map(u16::to_le_bytes).collect();
        name.resize(72, 0);
        e.extend(name);
        e.resize(size, 0xee);
        e
    }

    fn gpt(count: u64, entries: &[Vec<u8>], entry_size: u32) -> Vec<u8> {
        let mut out = header(entry_size, 92);
        out.extend(count.to_le_bytes());
        for e in entries {
            out.extend(e);
        }
        out
    }

    #[test]
    fn decodes_header_and_partitions() {
        let data = gpt(2, &[entry("EFI System", 128), entry("root", 128)], 128);
        let g = decode(&data).unwrap();
        assert_eq!(g.header.revision, 0x0001_0000);
        assert_eq!(g.header.last_usable_lba, 0x13f_ffde);
        assert_eq!(g.header.disk_guid, Guid([0x11; 16]));
        assert_eq!(g.partitions.len(), 2);
        assert_eq!(g.partitions[0].name, "EFI System");
        assert_eq!(
            g.partitions[0].partition_type_guid.to_string(),
            "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"
        );
        assert_eq!(
            (g.partitions[1].starting_lba, g.partitions[1].ending_lba),
            (2048, 206_847)
        );
        // Larger entries: the extra bytes are skipped.
        let big = decode(&gpt(1, &[entry("x", 256)], 256)).unwrap();
        assert_eq!(big.partitions[0].name, "x");
        // A 36-character name has no NUL.
        let full = "abcdefghijklmnopqrstuvwxyz0123456789";
        assert_eq!(
            decode(&gpt(1, &[entry(full, 128)], 128))
                .unwrap()
                .partitions[0]
                .name,
            full
        );
        assert!(decode(&gpt(0, &[], 128)).unwrap().partitions.is_empty());
    }

    #[test]
    fn malformed_gpt_data_fails() {
        let good = gpt(2, &[entry("a", 128), entry("b", 128)], 128);
        for len in 0..good.len() {
            assert!(decode(&good[..len]).is_err(), "truncated at {len}");
        }
        let mut bad_sig = good.clone();
        bad_sig[0] = b'X';
        assert!(decode(&bad_sig)
            .unwrap_err()
            .to_string()
            .contains("not \"EFI PART\""));
        for size in [0, 91, 4097] {
            let mut h = header(128, size);
            h.extend(0u64.to_le_bytes());
            assert!(
                decode(&h).unwrap_err().to_string().contains("HeaderSize"),
                "{size}"
            );
        }
        for size in [0, 64, 127, 129, 192, 8192] {
            let mut h = header(size, 92);
            h.extend(0u64.to_le_bytes());
            assert!(
                decode(&h)
                    .unwrap_err()
                    .to_string()
                    .contains("SizeOfPartitionEntry"),
                "{size}"
            );
        }
        assert!(matches!(
            decode(&gpt(3, &[entry("a", 128), entry("b", 128)], 128)),
            Err(EfiError::Truncated { .. })
        ));
        assert!(matches!(
            decode(&gpt(1, &[entry("a", 128), entry("b", 128)], 128)),
            Err(EfiError::TrailingData { .. })
        ));
        assert!(matches!(
            decode(&gpt(u64::MAX, &[], 128)),
            Err(EfiError::TooLarge {
                field: "NumberOfPartitions",
                ..
            })
        ));
    }
}
