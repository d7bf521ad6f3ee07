//! `UEFI_VARIABLE_DATA`, the data of `EV_EFI_VARIABLE_DRIVER_CONFIG`,
//! `EV_EFI_VARIABLE_BOOT`, `EV_EFI_VARIABLE_BOOT2` and
//! `EV_EFI_VARIABLE_AUTHORITY` (PFP §10.4.1), and what the well-known variables
//! mean.
//!
//! ```text
//! UEFI_VARIABLE_DATA { EFI_GUID VariableName;         // the vendor GUID
//!                      UINT64 UnicodeNameLength;      // in CHAR16, no NUL
//!                      UINT64 VariableDataLength;
//!                      CHAR16 UnicodeName[UnicodeNameLength];
//!                      INT8   VariableData[VariableDataLength] }
//! EFI_LOAD_OPTION    { UINT32 Attributes; UINT16 FilePathListLength;
//!                      CHAR16 Description[];          // NUL-terminated
//!                      EFI_DEVICE_PATH_PROTOCOL FilePathList[FilePathListLength bytes];
//!                      UINT8 OptionalData[] }          // UEFI 2.10 §3.1.3
//! ```

use serde::Serialize;

use super::devicepath::DevicePath;
use super::siglist::{
    parse_signature_data, parse_signature_lists, Certificate, SignatureEntry, SignatureList,
};
use super::wire::{is_printable, read_char16z, ser_hex, utf16_lossy, Cursor, Guid};
use super::EfiError;

/// `EFI_GLOBAL_VARIABLE`: SecureBoot, PK, KEK, BootOrder, Boot####, ...
pub const EFI_GLOBAL_VARIABLE: Guid = Guid::new(
    0x8be4_df61,
    0x93ca,
    0x11d2,
    [0xaa, 0x0d, 0x00, 0xe0, 0x98, 0x03, 0x2b, 0x8c],
);
/// `EFI_IMAGE_SECURITY_DATABASE_GUID`: db, dbx, dbt, dbr.
pub const EFI_IMAGE_SECURITY_DATABASE_GUID: Guid = Guid::new(
    0xd719_b2cb,
    0x3d3a,
    0x4596,
    [0xa3, 0xbc, 0xda, 0xd0, 0x0e, 0x67, 0x65, 0x6f],
);
/// shim's `SHIM_LOCK_GUID`: MokList, MokListX, SbatLevel, and its authorities.
pub const SHIM_LOCK_GUID: Guid = Guid::new(
    0x605d_ab50,
    0xe046,
    0x4300,
    [0xab, 0xb6, 0x3d, 0xd8, 0x10, 0xdd, 0x8b, 0x23],
);

/// Longest variable name accepted, in CHAR16.
pub const MAX_NAME_CHARS: usize = 1024;
/// Largest variable data accepted.
pub const MAX_VARIABLE_DATA: usize = 4 << 20;
/// Longest load option description accepted, in CHAR16.
pub const MAX_DESCRIPTION_CHARS: usize = 4096;
/// `LOAD_OPTION_ACTIVE`.
pub const LOAD_OPTION_ACTIVE: u32 = 0x1;

/// A decoded `UEFI_VARIABLE_DATA`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VariableData {
    /// The vendor GUID (the spec calls this field `VariableName`).
    pub vendor_guid: Guid,
    /// `UnicodeName`; unpaired surrogates appear as U+FFFD.
    pub name: String,
    /// `VariableData`.
    #[serde(serialize_with = "ser_hex")]
    pub data: Vec<u8>,
    /// What the data means, for the variables we know.
    pub value: VariableValue,
    /// Bytes after `VariableData`. Not in the spec, but older shims log 6 of
    /// them after their `Shim` authority; kept so policy can see them (the
    /// digest, where it is of the data, covers them).
    #[serde(serialize_with = "ser_hex", skip_serializing_if = "Vec::is_empty")]
    pub trailing: Vec<u8>,
}

/// The meaning of a well-known variable's data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum VariableValue {
    /// `SecureBoot`: one byte, 1 = enabled. An absent variable is logged with no
    /// data, which reads as disabled.
    SecureBoot { enabled: bool },
    /// PK, KEK, db, dbx, dbt, dbr, MokList, MokListX.
    SignatureLists { lists: Vec<SignatureList> },
    /// `BootOrder`: the `Boot####` numbers in order.
    BootOrder { order: Vec<u16> },
    /// `Boot####`, `Driver####`, `SysPrep####`, `PlatformRecovery####`.
    LoadOption(LoadOption),
    /// The data of an `EV_EFI_VARIABLE_AUTHORITY` event.
    Authority(Authority),
    /// A variable we do not interpret (see `data`).
    Other,
}

/// A decoded `EFI_LOAD_OPTION`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoadOption {
    pub attributes: u32,
    /// `LOAD_OPTION_ACTIVE` is set.
    pub active: bool,
    pub description: String,
    /// `FilePathList`: bytes and text (`text: None` if its nodes are broken).
    pub device_path: DevicePath,
    #[serde(serialize_with = "ser_hex")]
    pub optional_data: Vec<u8>,
}

/// What an `EV_EFI_VARIABLE_AUTHORITY` event says authorized an image
/// (PFP §10.4.1; UEFI 2.10 §32.4.1). Decoded best-effort, never an error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "form", rename_all = "snake_case")]
pub enum Authority {
    /// The usual form: one `EFI_SIGNATURE_DATA` (owner GUID + certificate, or
    /// owner + SHA-256 digest for an image allowed by hash).
    Signature { entry: SignatureEntry },
    /// A bare DER certificate without owner GUID (older shims log their
    /// built-in vendor certificate as the `Shim` variable this way).
    Certificate { certificate: Certificate },
    /// Text, such as shim's `SbatLevel` (`sbat,1,2023012900\nshim,2\n...`).
    Text { text: String },
    /// Anything else (e.g. shim's one-byte `MokListTrusted`): see `data`.
    Other,
}

/// The parts of a sound `UEFI_VARIABLE_DATA`.
struct Parts<'a> {
    vendor_guid: Guid,
    name: &'a [u8],
    data: &'a [u8],
    trailing: &'a [u8],
}

fn split(data: &[u8]) -> Result<Parts<'_>, EfiError> {
    let mut cur = Cursor::new(data, "UEFI_VARIABLE_DATA");
    let vendor_guid = cur.guid("VariableName")?;
    let name_chars = cur.u64("UnicodeNameLength")?;
    let data_len = cur.u64("VariableDataLength")?;
    if name_chars > MAX_NAME_CHARS as u64 {
        return Err(cur.too_large("UnicodeNameLength", name_chars, MAX_NAME_CHARS as u64));
    }
    // name_chars <= MAX_NAME_CHARS, so doubling cannot overflow.
    let name = cur.take_len(name_chars * 2, MAX_NAME_CHARS * 2, "UnicodeName")?;
    let data = cur.take_len(data_len, MAX_VARIABLE_DATA, "VariableData")?;
    Ok(Parts {
        vendor_guid,
        name,
        data,
        trailing: cur.rest(),
    })
}

/// The `VariableData` part of a sound `UEFI_VARIABLE_DATA`: what EDK2-derived
/// firmware hashes for `EV_EFI_VARIABLE_BOOT` instead of the whole structure.
/// (Bytes after it, if any, are not part of it.)
pub fn variable_data_only(data: &[u8]) -> Option<&[u8]> {
    split(data).ok().map(|p| p.data)
}

/// Decodes a `UEFI_VARIABLE_DATA` and interprets the well-known variables.
/// With `authority` (for `EV_EFI_VARIABLE_AUTHORITY`) the data is read as an
/// [`Authority`], best-effort; otherwise a well-known variable whose data is
/// malformed is an error naming the variable.
/// The variable's name only, without decoding its value (cheap: the
/// callers looking for one variable skip the others' signature lists).
pub fn name_of(data: &[u8]) -> Option<String> {
    split(data).ok().map(|parts| utf16_lossy(parts.name))
}

pub fn decode(data: &[u8], authority: bool) -> Result<VariableData, EfiError> {
    let parts = split(data)?;
    let name = utf16_lossy(parts.name);
    let value = if authority {
        VariableValue::Authority(decode_authority(&parts.vendor_guid, &name, parts.data))
    } else {
        interpret(&parts.vendor_guid, &name, parts.data)
            .map_err(|e| e.within(format!("variable {name} ({})", parts.vendor_guid)))?
    };
    Ok(VariableData {
        vendor_guid: parts.vendor_guid,
        name,
        data: parts.data.to_vec(),
        value,
        trailing: parts.trailing.to_vec(),
    })
}

fn is_load_option_name(name: &str) -> bool {
    ["Boot", "Driver", "SysPrep", "PlatformRecovery"]
        .iter()
        .any(|prefix| {
            name.strip_prefix(prefix)
                .is_some_and(|n| n.len() == 4 && n.bytes().all(|b| b.is_ascii_hexdigit()))
        })
}

fn interpret(guid: &Guid, name: &str, data: &[u8]) -> Result<VariableValue, EfiError> {
    let global = *guid == EFI_GLOBAL_VARIABLE;
    let security_db = *guid == EFI_IMAGE_SECURITY_DATABASE_GUID;
    let shim = *guid == SHIM_LOCK_GUID;
    Ok(match name {
        "SecureBoot" if global => VariableValue::SecureBoot {
            enabled: match data {
                [] | [0] => false,
                [1] => true,
                _ => {
                    return Err(EfiError::Invalid {
                        structure: "SecureBoot",
                        field: "VariableData",
                        reason: format!("{} is not one byte 0 or 1", hex::encode(data)),
                    })
                }
            },
        },
        "PK" | "KEK" if global => signature_lists(data)?,
        "db" | "dbx" | "dbt" | "dbr" if security_db => signature_lists(data)?,
        "MokList" | "MokListX" if shim => signature_lists(data)?,
        "BootOrder" if global => VariableValue::BootOrder {
            order: boot_order(data)?,
        },
        n if global && is_load_option_name(n) => {
            VariableValue::LoadOption(decode_load_option(data)?)
        }
        _ => VariableValue::Other,
    })
}

fn signature_lists(data: &[u8]) -> Result<VariableValue, EfiError> {
    Ok(VariableValue::SignatureLists {
        lists: parse_signature_lists(data)?,
    })
}

fn boot_order(data: &[u8]) -> Result<Vec<u16>, EfiError> {
    if !data.len().is_multiple_of(2) {
        return Err(EfiError::Invalid {
            structure: "BootOrder",
            field: "VariableData",
            reason: format!("{} bytes is not a whole number of UINT16", data.len()),
        });
    }
    Ok(super::wire::code_units(data).collect())
}

/// Decodes an `EFI_LOAD_OPTION` (UEFI 2.10 §3.1.3).
pub fn decode_load_option(data: &[u8]) -> Result<LoadOption, EfiError> {
    let mut cur = Cursor::new(data, "EFI_LOAD_OPTION");
    let attributes = cur.u32("Attributes")?;
    let path_len = cur.u16("FilePathListLength")?;
    let description = read_char16z(&mut cur, MAX_DESCRIPTION_CHARS, "Description")?;
    let path = cur.take(usize::from(path_len), "FilePathList")?;
    Ok(LoadOption {
        attributes,
        active: attributes & LOAD_OPTION_ACTIVE != 0,
        description,
        device_path: DevicePath::from_bytes(path),
        optional_data: cur.rest().to_vec(),
    })
}

/// Best-effort reading of an authority event's data; never fails.
fn decode_authority(guid: &Guid, name: &str, data: &[u8]) -> Authority {
    if *guid == SHIM_LOCK_GUID && name == "SbatLevel" {
        if let Some(text) = std::str::from_utf8(data)
            .ok()
            .map(|t| t.trim_end_matches('\0'))
            .filter(|t| !t.is_empty() && is_printable(t))
        {
            return Authority::Text {
                text: text.to_string(),
            };
        }
    }
    if let Some(entry) = parse_signature_data(data) {
        return Authority::Signature { entry };
    }
    if let Some(certificate) = Certificate::strict(data) {
        return Authority::Certificate { certificate };
    }
    Authority::Other
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
    use super::*;
    use crate::eventlog::efi::siglist::tests::{list, test_cert_der, OWNER};
    use crate::eventlog::efi::siglist::{SignatureValue, EFI_CERT_SHA256_GUID, EFI_CERT_X509_GUID};

    fn utf16(s: &str) -> Vec<u8> {
        s.encode_utf16().flat_map(u16::to_le_bytes).collect()
    }

    pub(crate) fn var(guid: Guid, name: &str, data: &[u8]) -> Vec<u8> {
        let mut out = guid.0.to_vec();
        out.extend((name.encode_utf16().count() as u64).to_le_bytes());
        out.extend((data.len() as u64).to_le_bytes());
        out.extend(utf16(name));
        out.extend(data);
        out
    }

    #[test]
    fn secure_boot() {
        // tpm2-tools event-uefivar.bin event 1, as tpm2_eventlog prints it:
        // VariableName 8be4df61-..., UnicodeName SecureBoot, VariableData "01".
        let v = decode(&var(EFI_GLOBAL_VARIABLE, "SecureBoot", &[1]), false).unwrap();
        assert_eq!(v.name, "SecureBoot");
        assert_eq!(
            v.vendor_guid.to_string(),
            "8be4df61-93ca-11d2-aa0d-00e098032b8c"
        );
        assert_eq!(v.value, VariableValue::SecureBoot { enabled: true });
        for (data, enabled) in [(&[][..], false), (&[0][..], false)] {
            let v = decode(&var(EFI_GLOBAL_VARIABLE, "SecureBoot", data), false).unwrap();
            assert_eq!(v.value, VariableValue::SecureBoot { enabled });
        }
        for bad in [&[2][..], &[1, 0][..]] {
            let e = decode(&var(EFI_GLOBAL_VARIABLE, "SecureBoot", bad), false).unwrap_err();
            assert!(
                e.to_string().starts_with("variable SecureBoot (8be4df61-"),
                "{e}"
            );
        }
        // Same name, another vendor: not interpreted.
        let other = decode(&var(SHIM_LOCK_GUID, "SecureBoot", &[7]), false).unwrap();
        assert_eq!(other.value, VariableValue::Other);
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(
            json["value"],
            serde_json::json!({"type": "secure_boot", "enabled": true})
        );
        assert_eq!(json["data"], "01");
    }

    #[test]
    fn signature_databases() {
        let der = test_cert_der("PK");
        let pk = list(EFI_CERT_X509_GUID, &[], 16 + der.len() as u32, &[&der]);
        let v = decode(&var(EFI_GLOBAL_VARIABLE, "PK", &pk), false).unwrap();
        let VariableValue::SignatureLists { lists } = &v.value else {
            panic!("{v:?}")
        };
        assert!(matches!(
            lists[0].signatures[0].value,
            SignatureValue::X509(_)
        ));
        let dbx = list(EFI_CERT_SHA256_GUID, &[], 48, &[&[1; 32]]);
        let v = decode(&var(EFI_IMAGE_SECURITY_DATABASE_GUID, "dbx", &dbx), false).unwrap();
        assert!(matches!(v.value, VariableValue::SignatureLists { .. }));
        let empty = decode(&var(EFI_IMAGE_SECURITY_DATABASE_GUID, "db", &[]), false).unwrap();
        assert_eq!(empty.value, VariableValue::SignatureLists { lists: vec![] });
        let e = decode(
            &var(EFI_IMAGE_SECURITY_DATABASE_GUID, "db", &dbx[..40]),
            false,
        )
        .unwrap_err();
        assert!(
            e.to_string().starts_with(
                "variable db (d719b2cb-3d3a-4596-a3bc-dad00e67656f): signature list 0:"
            ),
            "{e}"
        );
    }

    #[test]
    fn boot_order_and_load_options() {
        // keylime binary_bios_measurements-secureboot, events 15 and 18.
        let order = decode(
            &var(
                EFI_GLOBAL_VARIABLE,
                "BootOrder",
                &hex::decode("010002000000").unwrap(),
            ),
            false,
        )
        .unwrap();
        assert_eq!(
            order.value,
            VariableValue::BootOrder {
                order: vec![1, 2, 0]
            }
        );
        assert!(decode(&var(EFI_GLOBAL_VARIABLE, "BootOrder", &[1, 0, 2]), false).is_err());
        let boot0000 = hex::decode(
            "090100002c0055006900410070007000000004071400c9bdb87cebf8344faaea3ee4af6516a1\
             0406140021aa2c4614760345836e8ab6f46623317fff0400",
        )
        .unwrap();
        let v = decode(&var(EFI_GLOBAL_VARIABLE, "Boot0000", &boot0000), false).unwrap();
        let VariableValue::LoadOption(opt) = &v.value else {
            panic!("{v:?}")
        };
        assert_eq!(opt.attributes, 0x109);
        assert!(opt.active);
        assert_eq!(opt.description, "UiApp");
        assert_eq!(
            opt.device_path.text.as_deref(),
            Some("Fv(7cb8bdc9-f8eb-4f34-aaea-3ee4af6516a1)/FvFile(462caa21-7614-4503-836e-8ab6f4662331)")
        );
        assert!(opt.optional_data.is_empty());
        assert!(is_load_option_name("Driver00aF") && is_load_option_name("PlatformRecovery0000"));
        assert!(
            !is_load_option_name("Boot000")
                && !is_load_option_name("BootNext")
                && !is_load_option_name("Boot00001")
        );
    }

    #[test]
    fn malformed_load_options_fail() {
        let mut opt = 1u32.to_le_bytes().to_vec();
        opt.extend(4u16.to_le_bytes());
        opt.extend(utf16("Linux\0"));
        opt.extend(hex::decode("7fff0400").unwrap());
        opt.extend([0xaa; 4]);
        let good = decode_load_option(&opt).unwrap();
        assert_eq!(good.device_path.text.as_deref(), Some(""));
        assert_eq!(good.optional_data, vec![0xaa; 4]);
        // Every prefix that cuts the description or the file path list fails.
        for len in 0..4 + 2 + 12 + 4 {
            assert!(decode_load_option(&opt[..len]).is_err(), "{len}");
        }
        // A broken file path keeps its bytes without text.
        let mut broken = 1u32.to_le_bytes().to_vec();
        broken.extend(4u16.to_le_bytes());
        broken.extend([0, 0]);
        broken.extend([4, 4, 2, 0]);
        let b = decode_load_option(&broken).unwrap();
        assert_eq!(
            (b.device_path.bytes.len(), b.device_path.text.clone()),
            (4, None)
        );
    }

    #[test]
    fn authority_forms() {
        let der = test_cert_der("vendor_db");
        let mut sig = OWNER.0.to_vec();
        sig.extend(&der);
        let a = decode(&var(EFI_IMAGE_SECURITY_DATABASE_GUID, "db", &sig), true).unwrap();
        let VariableValue::Authority(Authority::Signature { entry }) = &a.value else {
            panic!("{a:?}")
        };
        assert_eq!(entry.owner, OWNER);
        let shim = decode(&var(SHIM_LOCK_GUID, "Shim", &der), true).unwrap();
        assert!(matches!(
            shim.value,
            VariableValue::Authority(Authority::Certificate { .. })
        ));
        let sbat = b"sbat,1,2023012900\nshim,2\ngrub,3\n";
        let s = decode(&var(SHIM_LOCK_GUID, "SbatLevel", sbat), true).unwrap();
        let text = String::from_utf8(sbat.to_vec()).unwrap();
        assert_eq!(s.value, VariableValue::Authority(Authority::Text { text }));
        let m = decode(&var(SHIM_LOCK_GUID, "MokListTrusted", &[1]), true).unwrap();
        assert_eq!(m.value, VariableValue::Authority(Authority::Other));
        // Authority data is never an error, even for a well-known name.
        let odd = decode(&var(EFI_GLOBAL_VARIABLE, "SecureBoot", &[9, 9]), true).unwrap();
        assert_eq!(odd.value, VariableValue::Authority(Authority::Other));
    }

    #[test]
    fn malformed_variable_data_fails() {
        let good = var(EFI_GLOBAL_VARIABLE, "SecureBoot", &[1]);
        for len in 0..good.len() {
            assert!(decode(&good[..len], false).is_err(), "{len}");
            assert!(variable_data_only(&good[..len]).is_none(), "{len}");
        }
        let mut long = good.clone();
        long.extend([0xee, 0xff]);
        assert_eq!(decode(&long, false).unwrap().trailing, vec![0xee, 0xff]);
        assert_eq!(variable_data_only(&long), Some(&[1][..]));
        assert_eq!(variable_data_only(&good), Some(&[1][..]));
        assert!(decode(&good, false).unwrap().trailing.is_empty());
        let mut huge_name = good.clone();
        huge_name[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            decode(&huge_name, true),
            Err(EfiError::TooLarge {
                field: "UnicodeNameLength",
                ..
            })
        ));
        let mut huge_data = good.clone();
        huge_data[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            decode(&huge_data, true),
            Err(EfiError::TooLarge {
                field: "VariableData",
                ..
            })
        ));
        let mut past_end = good.clone();
        past_end[24..32].copy_from_slice(&2u64.to_le_bytes());
        assert!(matches!(
            decode(&past_end, true),
            Err(EfiError::Truncated {
                field: "VariableData",
                ..
            })
        ));
        // Unpaired surrogate in the name: kept, visibly replaced.
        let mut odd = EFI_GLOBAL_VARIABLE.0.to_vec();
        odd.extend(1u64.to_le_bytes());
        odd.extend(0u64.to_le_bytes());
        odd.extend([0x00, 0xd8]);
        assert_eq!(decode(&odd, false).unwrap().name, "\u{fffd}");
    }
}
