//! The little-endian building blocks of UEFI event data: a bounded cursor,
//! `EFI_GUID`, CHAR16 strings and the hex serializers.
//!
//! [`Cursor`] follows `crate::reader::Reader` (rustls' `codec::Reader`): every
//! read is checked against what is left, every length field against a maximum
//! before anything is taken, and each error names the structure and the field.

use std::fmt;

use serde::Serialize;

use super::EfiError;

/// A cursor over one structure's bytes that never reads past its end.
#[derive(Debug, Clone)]
pub(crate) struct Cursor<'a> {
    rest: &'a [u8],
    structure: &'static str,
}

impl<'a> Cursor<'a> {
    /// A cursor over `bytes`, whose errors name `structure`.
    pub(crate) fn new(bytes: &'a [u8], structure: &'static str) -> Self {
        Self {
            rest: bytes,
            structure,
        }
    }

    /// Bytes not yet read.
    pub(crate) fn left(&self) -> usize {
        self.rest.len()
    }

    /// Takes exactly `n` bytes, or fails with [`EfiError::Truncated`].
    pub(crate) fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], EfiError> {
        if n > self.rest.len() {
            return Err(EfiError::Truncated {
                structure: self.structure,
                field,
                needed: n as u64,
                left: self.rest.len(),
            });
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    /// Takes `len` bytes where `len` came off the wire: checked against `max`
    /// ([`EfiError::TooLarge`]) and then against what is left.
    pub(crate) fn take_len(
        &mut self,
        len: u64,
        max: usize,
        field: &'static str,
    ) -> Result<&'a [u8], EfiError> {
        let n = self.check_len(len, max, field)?;
        self.take(n, field)
    }

    /// Checks a length from the wire against `max` and what is left, without
    /// taking anything.
    pub(crate) fn check_len(
        &self,
        len: u64,
        max: usize,
        field: &'static str,
    ) -> Result<usize, EfiError> {
        let n = usize::try_from(len)
            .ok()
            .filter(|&n| n <= max)
            .ok_or(EfiError::TooLarge {
                structure: self.structure,
                field,
                value: len,
                max: max as u64,
            })?;
        if n > self.rest.len() {
            return Err(EfiError::Truncated {
                structure: self.structure,
                field,
                needed: len,
                left: self.rest.len(),
            });
        }
        Ok(n)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], EfiError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, EfiError> {
        Ok(u8::from_le_bytes(self.array(field)?))
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, EfiError> {
        Ok(u16::from_le_bytes(self.array(field)?))
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, EfiError> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }

    pub(crate) fn u64(&mut self, field: &'static str) -> Result<u64, EfiError> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }

    pub(crate) fn guid(&mut self, field: &'static str) -> Result<Guid, EfiError> {
        Ok(Guid(self.array(field)?))
    }

    /// Takes everything that is left.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.rest)
    }

    /// Fails with [`EfiError::TrailingData`] if anything is left.
    pub(crate) fn finish(&self) -> Result<(), EfiError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(EfiError::TrailingData {
                structure: self.structure,
                len: self.rest.len(),
            })
        }
    }

    /// An [`EfiError::TooLarge`] about `field` of this cursor's structure.
    pub(crate) fn too_large(&self, field: &'static str, value: u64, max: u64) -> EfiError {
        EfiError::TooLarge {
            structure: self.structure,
            field,
            value,
            max,
        }
    }

    /// An [`EfiError::Invalid`] about `field` of this cursor's structure.
    pub(crate) fn invalid(&self, field: &'static str, reason: impl Into<String>) -> EfiError {
        EfiError::Invalid {
            structure: self.structure,
            field,
            reason: reason.into(),
        }
    }
}

/// An `EFI_GUID`, kept in its wire layout (UEFI spec §2.3.1 and Appendix A:
/// `Data1` u32, `Data2` u16, `Data3` u16 little-endian, then 8 bytes in order).
///
/// Displays and serializes in the canonical `8-4-4-4-12` lowercase form
/// (`8be4df61-93ca-11d2-aa0d-00e098032b8c`), as `tpm2_eventlog`, EDK2 and
/// `efivar` print it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    /// The GUID written as `{data1, data2, data3, {data4}}` in UEFI headers.
    pub const fn new(data1: u32, data2: u16, data3: u16, data4: [u8; 8]) -> Self {
        let [a0, a1, a2, a3] = data1.to_le_bytes();
        let [b0, b1] = data2.to_le_bytes();
        let [c0, c1] = data3.to_le_bytes();
        let [d0, d1, d2, d3, d4, d5, d6, d7] = data4;
        Self([
            a0, a1, a2, a3, b0, b1, c0, c1, d0, d1, d2, d3, d4, d5, d6, d7,
        ])
    }

    /// Parses the canonical text form (either case); `None` if it is not one.
    pub fn parse(text: &str) -> Option<Self> {
        if !text.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit()) {
            return None;
        }
        let groups: Vec<&str> = text.split('-').collect();
        let [g1, g2, g3, g4, g5] = groups.as_slice() else {
            return None;
        };
        if [g1.len(), g2.len(), g3.len(), g4.len(), g5.len()] != [8, 4, 4, 4, 12] {
            return None;
        }
        let data1 = u32::from_str_radix(g1, 16).ok()?;
        let data2 = u16::from_str_radix(g2, 16).ok()?;
        let data3 = u16::from_str_radix(g3, 16).ok()?;
        let tail = hex::decode(format!("{g4}{g5}")).ok()?;
        let data4: [u8; 8] = tail.try_into().ok()?;
        Some(Self::new(data1, data2, data3, data4))
    }

    /// The 16 bytes as they appear in event data.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a0, a1, a2, a3, b0, b1, c0, c1, d0, d1, d2, d3, d4, d5, d6, d7] = self.0;
        write!(
            f,
            "{:08x}-{:04x}-{:04x}-{d0:02x}{d1:02x}-{d2:02x}{d3:02x}{d4:02x}{d5:02x}{d6:02x}{d7:02x}",
            u32::from_le_bytes([a0, a1, a2, a3]),
            u16::from_le_bytes([b0, b1]),
            u16::from_le_bytes([c0, c1]),
        )
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Guid({self})")
    }
}

impl Serialize for Guid {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Serializes bytes (a `Vec<u8>` or a digest array) as lowercase hex.
pub(crate) fn ser_hex<T: AsRef<[u8]>, S: serde::Serializer>(
    bytes: &T,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(bytes.as_ref()))
}

/// The little-endian u16 code units of `bytes` (a trailing odd byte is ignored).
pub(crate) fn code_units(bytes: &[u8]) -> impl Iterator<Item = u16> + '_ {
    bytes
        .chunks_exact(2)
        .map(|pair| u16::from_le_bytes(<[u8; 2]>::try_from(pair).unwrap_or_default()))
}

/// Decodes UTF-16LE code units; unpaired surrogates become U+FFFD (the one
/// visible sign that the original was not valid UTF-16). Odd lengths are the
/// caller's to reject.
pub(crate) fn utf16_lossy(bytes: &[u8]) -> String {
    char::decode_utf16(code_units(bytes))
        .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect()
}

/// Decodes UTF-16LE strictly: `None` on an odd length or unpaired surrogate.
pub(crate) fn utf16_strict(bytes: &[u8]) -> Option<String> {
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    char::decode_utf16(code_units(bytes))
        .collect::<Result<String, _>>()
        .ok()
}

/// Reads a NUL-terminated CHAR16 string: returns the text (NUL excluded) and
/// consumes the terminator. Fails if no terminator comes within `max_chars`.
pub(crate) fn read_char16z(
    cur: &mut Cursor<'_>,
    max_chars: usize,
    field: &'static str,
) -> Result<String, EfiError> {
    let mut units: Vec<u16> = Vec::new();
    loop {
        let unit = cur.u16(field)?;
        if unit == 0 {
            break;
        }
        if units.len() >= max_chars {
            return Err(cur.invalid(
                field,
                format!("no NUL terminator within {max_chars} characters"),
            ));
        }
        units.push(unit);
    }
    Ok(char::decode_utf16(units.iter().copied())
        .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect())
}

/// True for text a person can read in a log: no control characters other than
/// tab, newline and carriage return.
pub(crate) fn is_printable(text: &str) -> bool {
    text.chars()
        .all(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r'))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
    use super::*;

    #[test]
    fn guid_uses_the_uefi_mixed_endian_layout() {
        // EFI_GLOBAL_VARIABLE as it appears in every SecureBoot event.
        let wire = hex::decode("61dfe48bca93d211aa0d00e098032b8c").unwrap();
        let g = Guid(wire.clone().try_into().unwrap());
        assert_eq!(g.to_string(), "8be4df61-93ca-11d2-aa0d-00e098032b8c");
        assert_eq!(
            g,
            Guid::new(
                0x8be4_df61,
                0x93ca,
                0x11d2,
                [0xaa, 0x0d, 0x00, 0xe0, 0x98, 0x03, 0x2b, 0x8c]
            )
        );
        assert_eq!(Guid::parse("8BE4DF61-93CA-11D2-AA0D-00E098032B8C"), Some(g));
        assert_eq!(
            serde_json::to_string(&g).unwrap(),
            "\"8be4df61-93ca-11d2-aa0d-00e098032b8c\""
        );
        assert_eq!(g.as_bytes().as_slice(), wire.as_slice());
    }

    #[test]
    fn guid_parse_rejects_malformed_text() {
        for bad in [
            "",
            "8be4df61-93ca-11d2-aa0d",
            "8be4df61-93ca-11d2-aa0d-00e098032b8",
            "8be4df61-93ca-11d2-aa0d-00e098032b8c-00",
            "8be4df6g-93ca-11d2-aa0d-00e098032b8c",
            "+be4df61-93ca-11d2-aa0d-00e098032b8c",
            "8be4df61-+3ca-11d2-aa0d-00e098032b8c",
        ] {
            assert_eq!(Guid::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn cursor_reads_little_endian_and_names_the_field() {
        let bytes = [1, 2, 0, 3, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0];
        let mut c = Cursor::new(&bytes, "S");
        assert_eq!(c.u8("a").unwrap(), 1);
        assert_eq!(c.u16("b").unwrap(), 2);
        assert_eq!(c.u32("c").unwrap(), 3);
        assert_eq!(c.u64("d").unwrap(), 4);
        assert!(c.finish().is_ok());
        assert_eq!(
            c.u8("e").unwrap_err(),
            EfiError::Truncated {
                structure: "S",
                field: "e",
                needed: 1,
                left: 0
            }
        );
    }

    #[test]
    fn take_len_checks_the_maximum_before_what_is_left() {
        let bytes = [0u8; 8];
        let mut c = Cursor::new(&bytes, "S");
        assert!(matches!(
            c.take_len(u64::MAX, 1 << 20, "len"),
            Err(EfiError::TooLarge {
                value: u64::MAX,
                ..
            })
        ));
        assert!(matches!(
            c.take_len(9, 16, "len"),
            Err(EfiError::Truncated {
                needed: 9,
                left: 8,
                ..
            })
        ));
        assert_eq!(c.take_len(8, 8, "len").unwrap().len(), 8);
        assert!(matches!(c.take(1, "x"), Err(EfiError::Truncated { .. })));
    }

    #[test]
    fn char16_strings() {
        let mut bytes: Vec<u8> = "Boot".encode_utf16().flat_map(u16::to_le_bytes).collect();
        bytes.extend([0, 0, 0xaa]);
        let mut c = Cursor::new(&bytes, "S");
        assert_eq!(read_char16z(&mut c, 16, "name").unwrap(), "Boot");
        assert_eq!(c.left(), 1);
        // No terminator, or too long.
        let mut c = Cursor::new(&bytes[..8], "S");
        assert!(matches!(
            read_char16z(&mut c, 16, "name"),
            Err(EfiError::Truncated { .. })
        ));
        let mut c = Cursor::new(&bytes, "S");
        assert!(matches!(
            read_char16z(&mut c, 3, "name"),
            Err(EfiError::Invalid { .. })
        ));
        // Unpaired surrogate: replaced, visibly.
        assert_eq!(utf16_lossy(&[0x00, 0xd8, b'a', 0]), "\u{fffd}a");
        assert_eq!(utf16_strict(&[0x00, 0xd8, b'a', 0]), None);
        assert_eq!(utf16_strict(&[b'a', 0, b'b']), None);
        assert_eq!(utf16_strict(&[b'a', 0, b'b', 0]).as_deref(), Some("ab"));
    }
}
