//! Small event-data forms: strings (`EV_ACTION`, `EV_EFI_ACTION`, `EV_IPL`,
//! `EV_S_CRTM_VERSION`, `EV_POST_CODE`), `EV_SEPARATOR`, `EV_EVENT_TAG` and the
//! `StartupLocality` `EV_NO_ACTION` event (PFP §10.4.1, §10.4.3-§10.4.5).

use serde::Serialize;

use super::firmware::{decode_blob, decode_blob2, FirmwareBlob};
use super::wire::{is_printable, ser_hex, utf16_strict, Cursor, Guid};
use super::EfiError;

/// Most tagged events accepted in one `EV_EVENT_TAG`.
pub const MAX_TAGGED_EVENTS: usize = 1024;
/// Largest `taggedEventDataSize` accepted.
pub const MAX_TAGGED_EVENT_DATA: usize = 1 << 20;
const STARTUP_LOCALITY: &[u8; 16] = b"StartupLocality\0";

/// How a text event was encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TextEncoding {
    Ascii,
    Utf8,
    Utf16le,
}

/// Text from event data, with how it was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Text {
    /// The string without its terminating NUL.
    pub text: String,
    pub encoding: TextEncoding,
    /// Whether the data ended with a NUL (one byte, or one CHAR16 for UTF-16).
    pub nul_terminated: bool,
}

/// `EV_SEPARATOR` data (PFP §3.3.2 "Error Conditions" and §10.4.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "value", rename_all = "snake_case")]
pub enum Separator {
    /// `00 00 00 00`: the normal pre-OS to OS-present boundary.
    Normal,
    /// `01 00 00 00`: the firmware met an error (its digest is of 0x00000001).
    Error,
    /// `ff ff ff ff`: the separator value of older TCG specs (EFI Platform 1.2x,
    /// conventional BIOS); tcglog-parser reads it as a normal separator, other
    /// tools as an error, so policy decides.
    AllOnes,
    /// Anything else. With the spec's error form the digest is of 0x00000001 and
    /// the data is implementation-defined error information.
    Other {
        #[serde(serialize_with = "ser_hex")]
        data: Vec<u8>,
    },
}

/// One `TCG_PCClientTaggedEvent` { u32 taggedEventID; u32 taggedEventDataSize; data }.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaggedEvent {
    pub id: u32,
    #[serde(serialize_with = "ser_hex")]
    pub data: Vec<u8>,
}

/// `EV_S_CRTM_VERSION` data: normally a NUL-terminated UTF-16 string, on some
/// platforms a GUID.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "form", rename_all = "snake_case")]
pub enum CrtmVersion {
    Text {
        text: String,
    },
    Guid {
        guid: Guid,
    },
    Raw {
        #[serde(serialize_with = "ser_hex")]
        data: Vec<u8>,
    },
}

impl std::fmt::Display for CrtmVersion {
    /// The text, the GUID, or the data in hex.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CrtmVersion::Text { text } => f.write_str(text),
            CrtmVersion::Guid { guid } => write!(f, "{guid}"),
            CrtmVersion::Raw { data } => f.write_str(&hex::encode(data)),
        }
    }
}

/// `EV_POST_CODE` / `EV_S_CRTM_CONTENTS` data: a label ("POST CODE", "ACPI DATA",
/// "SMM CODE", ...) or where the code was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "form", content = "value", rename_all = "snake_case")]
pub enum PostCode {
    Text(Text),
    Blob(FirmwareBlob),
}

fn ascii(data: &[u8]) -> Option<Text> {
    let (body, nul_terminated) = match data.split_last() {
        Some((0, body)) => (body, true),
        _ => (data, false),
    };
    // One pass: printable ASCII (no NUL, no control characters but tab and
    // newlines) is UTF-8 already.
    let printable = |b: &u8| matches!(b, 0x20..=0x7e | b'\t' | b'\n' | b'\r');
    if !body.iter().all(printable) {
        return None;
    }
    let text = std::str::from_utf8(body).ok()?;
    Some(Text {
        text: text.to_string(),
        encoding: TextEncoding::Ascii,
        nul_terminated,
    })
}

/// Reads event data as text when it is text: ASCII or UTF-8 (one trailing NUL
/// allowed), else UTF-16LE ending in a NUL CHAR16 (systemd-boot, S-CRTM
/// versions). No interior NULs, no control characters but tab and newlines.
pub fn decode_text(data: &[u8]) -> Option<Text> {
    if data.is_empty() {
        return None;
    }
    if let Some(text) = ascii(data) {
        return Some(text);
    }
    let (body, nul_terminated) = match data.split_last() {
        Some((0, body)) => (body, true),
        _ => (data, false),
    };
    if let Ok(text) = std::str::from_utf8(body) {
        if !text.contains('\0') && is_printable(text) {
            return Some(Text {
                text: text.to_string(),
                encoding: TextEncoding::Utf8,
                nul_terminated,
            });
        }
    }
    utf16z(data).map(|text| Text {
        text,
        encoding: TextEncoding::Utf16le,
        nul_terminated: true,
    })
}

/// A NUL-terminated UTF-16LE string with nothing after the NUL.
fn utf16z(data: &[u8]) -> Option<String> {
    let body = data.strip_suffix(&[0, 0])?;
    let text = utf16_strict(body)?;
    (!text.contains('\0') && is_printable(&text)).then_some(text)
}

/// `EV_ACTION` / `EV_EFI_ACTION` / `EV_OMIT_BOOT_DEVICE_EVENTS`: an ASCII string,
/// not NUL-terminated by the spec (a trailing NUL is tolerated and reported).
pub fn decode_action(data: &[u8]) -> Result<Text, EfiError> {
    ascii(data).ok_or_else(|| EfiError::Invalid {
        structure: "action string",
        field: "Event",
        reason: "not printable ASCII".to_string(),
    })
}

/// `EV_SEPARATOR`; never fails (see [`Separator::Other`]).
pub fn decode_separator(data: &[u8]) -> Separator {
    match data {
        [0, 0, 0, 0] => Separator::Normal,
        [1, 0, 0, 0] => Separator::Error,
        [0xff, 0xff, 0xff, 0xff] => Separator::AllOnes,
        _ => Separator::Other {
            data: data.to_vec(),
        },
    }
}

/// `EV_EVENT_TAG`: one or more `TCG_PCClientTaggedEvent`s filling the data.
pub fn decode_tagged_events(data: &[u8]) -> Result<Vec<TaggedEvent>, EfiError> {
    let mut cur = Cursor::new(data, "TCG_PCClientTaggedEvent");
    let mut events = Vec::new();
    loop {
        if events.len() >= MAX_TAGGED_EVENTS {
            return Err(cur.too_large(
                "events",
                (MAX_TAGGED_EVENTS as u64).saturating_add(1),
                MAX_TAGGED_EVENTS as u64,
            ));
        }
        let id = cur.u32("taggedEventID")?;
        let size = cur.u32("taggedEventDataSize")?;
        let data = cur.take_len(u64::from(size), MAX_TAGGED_EVENT_DATA, "taggedEventData")?;
        events.push(TaggedEvent {
            id,
            data: data.to_vec(),
        });
        if cur.left() == 0 {
            return Ok(events);
        }
    }
}

/// `EV_S_CRTM_VERSION`; never fails: text, else a 16-byte GUID, else raw.
pub fn decode_crtm_version(data: &[u8]) -> CrtmVersion {
    if let Some(text) = utf16z(data) {
        return CrtmVersion::Text { text };
    }
    if let Ok(bytes) = <[u8; 16]>::try_from(data) {
        return CrtmVersion::Guid { guid: Guid(bytes) };
    }
    CrtmVersion::Raw {
        data: data.to_vec(),
    }
}

/// `EV_POST_CODE` / `EV_S_CRTM_CONTENTS`: an ASCII label, else a
/// `UEFI_PLATFORM_FIRMWARE_BLOB` (16 bytes) or `_BLOB2`.
pub fn decode_post_code(data: &[u8]) -> Result<PostCode, EfiError> {
    if let Some(text) = ascii(data).filter(|t| !t.text.is_empty()) {
        return Ok(PostCode::Text(text));
    }
    if data.len() == 16 {
        return decode_blob(data).map(PostCode::Blob);
    }
    decode_blob2(data)
        .map(PostCode::Blob)
        .map_err(|e| e.within("neither an ASCII label nor a UEFI_PLATFORM_FIRMWARE_BLOB(2)"))
}

/// The locality of a `StartupLocality` `EV_NO_ACTION` event (PFP §10.4.5.3:
/// `"StartupLocality\0"` then one byte); `None` for other `EV_NO_ACTION` data.
pub fn decode_startup_locality(data: &[u8]) -> Result<Option<u8>, EfiError> {
    let Some(rest) = data.strip_prefix(STARTUP_LOCALITY.as_slice()) else {
        return Ok(None);
    };
    match rest {
        [locality] => Ok(Some(*locality)),
        _ => Err(EfiError::Invalid {
            structure: "TCG_EfiStartupLocalityEvent",
            field: "StartupLocality",
            reason: format!("{} bytes after the signature, expected 1", rest.len()),
        }),
    }
}

const GRUB_PREFIXES: &[&[u8]] = &[b"grub_cmd: ", b"kernel_cmdline: ", b"module_cmdline: "];

/// The bytes an `EV_IPL` event's digest covers, when they can be derived from
/// its data:
/// - GRUB (`grub_cmd: `, `kernel_cmdline: `, `module_cmdline: ` + text + NUL):
///   the text without the prefix and the NUL;
/// - a NUL-terminated UTF-16LE string (systemd-stub's kernel command line in
///   PCR 12, systemd-boot's load options in PCR 8): the whole data.
///
/// `None` otherwise: GRUB's file events (PCR 9) and shim's `MokList` events
/// (PCR 14) carry a name while the digest covers the file or variable.
pub fn ipl_measured_bytes(data: &[u8]) -> Option<&[u8]> {
    for prefix in GRUB_PREFIXES {
        if let Some(rest) = data.strip_prefix(*prefix) {
            return rest.strip_suffix(&[0]);
        }
    }
    utf16z(data).map(|_| data)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
    use super::*;

    fn utf16(s: &str) -> Vec<u8> {
        s.encode_utf16().flat_map(u16::to_le_bytes).collect()
    }

    #[test]
    fn text_in_each_encoding() {
        let grub = decode_text(b"grub_cmd: set pager=1\0").unwrap();
        assert_eq!(grub.text, "grub_cmd: set pager=1");
        assert_eq!(grub.encoding, TextEncoding::Ascii);
        assert!(grub.nul_terminated);
        let utf8 = decode_text("linux /vmlinuz root=LABEL=rüt".as_bytes()).unwrap();
        assert_eq!(utf8.encoding, TextEncoding::Utf8);
        assert!(!utf8.nul_terminated);
        let mut sd = utf16(" console=ttyS0 efi=debug \0");
        let t = decode_text(&sd).unwrap();
        assert_eq!(t.text, " console=ttyS0 efi=debug ");
        assert_eq!(t.encoding, TextEncoding::Utf16le);
        // Not text: binary, interior NULs, control characters, odd UTF-16,
        // unpaired surrogates, UTF-16 without a NUL.
        assert_eq!(decode_text(&[]), None);
        assert_eq!(decode_text(&[0xde, 0xad, 0xbe, 0xef]), None);
        assert_eq!(decode_text(b"a\0b\0c"), None);
        assert_eq!(decode_text(b"bell\x07"), None);
        sd.insert(0, b'x');
        assert_eq!(decode_text(&sd), None, "odd length UTF-16");
        assert_eq!(decode_text(&[0x00, 0xd8, 0x41, 0x00, 0, 0]), None);
        assert_eq!(decode_text(&utf16("abc")), None);
        // A lone NUL is an empty ASCII string; a NUL CHAR16 an empty UTF-16 one.
        assert_eq!(decode_text(&[0]).unwrap().encoding, TextEncoding::Ascii);
        let empty16 = decode_text(&[0, 0]).unwrap();
        assert_eq!(
            (empty16.text.as_str(), empty16.encoding),
            ("", TextEncoding::Utf16le)
        );
    }

    #[test]
    fn actions() {
        let a = decode_action(b"Calling EFI Application from Boot Option").unwrap();
        assert_eq!(a.text, "Calling EFI Application from Boot Option");
        assert!(!a.nul_terminated);
        assert!(
            decode_action(b"Exit Boot Services Invocation\0")
                .unwrap()
                .nul_terminated
        );
        assert!(decode_action(b"").unwrap().text.is_empty());
        for bad in [&b"caf\xc3\xa9"[..], b"\x01\x02", b"a\0b", b"\0\0"] {
            let e = decode_action(bad).unwrap_err();
            assert!(e.to_string().contains("not printable ASCII"), "{bad:?}");
        }
    }

    #[test]
    fn separators() {
        assert_eq!(decode_separator(&[0; 4]), Separator::Normal);
        assert_eq!(decode_separator(&[1, 0, 0, 0]), Separator::Error);
        assert_eq!(decode_separator(&[0xff; 4]), Separator::AllOnes);
        assert_eq!(
            decode_separator(&[0; 3]),
            Separator::Other { data: vec![0; 3] }
        );
        assert_eq!(
            decode_separator(&[0; 5]),
            Separator::Other { data: vec![0; 5] }
        );
        assert_eq!(
            decode_separator(b"boom"),
            Separator::Other {
                data: b"boom".to_vec()
            }
        );
        assert_eq!(
            serde_json::to_string(&Separator::Normal).unwrap(),
            r#"{"value":"normal"}"#
        );
    }

    #[test]
    fn tagged_events() {
        // systemd-stub's initrd event (tpm2-tools event-sd-boot-fedora37.bin, event 25).
        let data = hex::decode("ec223b8f0d0000004c696e757820696e6974726400").unwrap();
        let t = decode_tagged_events(&data).unwrap();
        assert_eq!(
            t,
            vec![TaggedEvent {
                id: 0x8f3b_22ec,
                data: b"Linux initrd\0".to_vec()
            }]
        );
        let mut two = data.clone();
        two.extend([1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(decode_tagged_events(&two).unwrap().len(), 2);
        for len in 0..data.len() {
            assert!(decode_tagged_events(&data[..len]).is_err(), "{len}");
        }
        let mut huge = vec![0; 4];
        huge.extend(u32::MAX.to_le_bytes());
        assert!(matches!(
            decode_tagged_events(&huge),
            Err(EfiError::TooLarge { .. })
        ));
        let many: Vec<u8> = std::iter::repeat_n([0u8; 8], MAX_TAGGED_EVENTS + 1)
            .flatten()
            .collect();
        assert!(matches!(
            decode_tagged_events(&many),
            Err(EfiError::TooLarge {
                field: "events",
                ..
            })
        ));
    }

    #[test]
    fn crtm_versions() {
        // keylime binary_bios_measurements-secureboot event 1.
        let v = hex::decode(
            "650064006b0032002d00320030003200340030003500320034002d0037002e0065006c0039000000",
        )
        .unwrap();
        assert_eq!(
            decode_crtm_version(&v),
            CrtmVersion::Text {
                text: "edk2-20240524-7.el9".into()
            }
        );
        // go-attestation sb_cert_eventlog event 1: an empty string.
        assert_eq!(
            decode_crtm_version(&[0, 0]),
            CrtmVersion::Text {
                text: String::new()
            }
        );
        // go-attestation crypto_agile_eventlog event 2: a GUID.
        let g = hex::decode("1efb6b540c1d5540a4ad4ef4bf17b83a").unwrap();
        assert_eq!(
            decode_crtm_version(&g),
            CrtmVersion::Guid {
                guid: Guid::parse("546bfb1e-1d0c-4055-a4ad-4ef4bf17b83a").unwrap()
            }
        );
        assert_eq!(
            decode_crtm_version(&[1, 2, 3]),
            CrtmVersion::Raw {
                data: vec![1, 2, 3]
            }
        );
        assert_eq!(
            decode_crtm_version(&[0x41, 0, 0]),
            CrtmVersion::Raw {
                data: vec![0x41, 0, 0]
            }
        );
    }

    #[test]
    fn post_codes() {
        assert_eq!(
            decode_post_code(b"ACPI DATA").unwrap(),
            PostCode::Text(Text {
                text: "ACPI DATA".into(),
                encoding: TextEncoding::Ascii,
                nul_terminated: false
            })
        );
        let blob = hex::decode("00000000000000ff0000200000000000").unwrap();
        assert_eq!(
            decode_post_code(&blob).unwrap(),
            PostCode::Blob(FirmwareBlob {
                description: None,
                base: 0xff00_0000_0000_0000,
                length: 0x20_0000
            })
        );
        let mut blob2 = vec![3, b'S', b'M', b'M'];
        blob2.extend([0; 16]);
        assert!(matches!(
            decode_post_code(&blob2).unwrap(),
            PostCode::Blob(FirmwareBlob {
                description: Some(_),
                ..
            })
        ));
        let err = decode_post_code(&[0xff; 7]).unwrap_err().to_string();
        assert!(err.starts_with("neither an ASCII label"), "{err}");
        assert!(decode_post_code(&[]).is_err());
    }

    #[test]
    fn startup_locality() {
        let mut data = STARTUP_LOCALITY.to_vec();
        data.push(3);
        assert_eq!(decode_startup_locality(&data).unwrap(), Some(3));
        assert_eq!(decode_startup_locality(b"Spec ID Event03\0").unwrap(), None);
        data.push(0);
        assert!(decode_startup_locality(&data).is_err());
        assert!(decode_startup_locality(STARTUP_LOCALITY).is_err());
    }

    #[test]
    fn ipl_measured_bytes_follow_each_boot_loader() {
        assert_eq!(
            ipl_measured_bytes(b"grub_cmd: set pager=1\0"),
            Some(&b"set pager=1"[..])
        );
        assert_eq!(
            ipl_measured_bytes(b"kernel_cmdline: ro quiet\0"),
            Some(&b"ro quiet"[..])
        );
        assert_eq!(ipl_measured_bytes(b"grub_cmd: no nul"), None);
        let sd = utf16(" console=ttyS0 \0");
        assert_eq!(ipl_measured_bytes(&sd), Some(sd.as_slice()));
        assert_eq!(
            ipl_measured_bytes(b"(hd0,gpt1)/EFI/redhat/grub.cfg\0"),
            None
        );
        assert_eq!(ipl_measured_bytes(b"MokList\0"), None);
    }
}
