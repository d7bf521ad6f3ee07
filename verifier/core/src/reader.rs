//! A bounded reader over peer-supplied bytes, after rustls' `codec::Reader`.
//!
//! Every read is checked against what is left; every length prefix is checked
//! against a caller-given maximum before anything is taken or allocated. Peer
//! input can only produce a [`WireError`], never a panic.

/// What was wrong with a wire structure, and which field it was about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("{what}: needs {needed} more bytes, only {left} left (truncated)")]
    MissingData {
        what: &'static str,
        needed: usize,
        left: usize,
    },
    #[error("{what}: length {len} exceeds the maximum of {max}")]
    TooLarge {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{what}: {len} unexpected trailing bytes")]
    TrailingData { what: &'static str, len: usize },
    #[error("{what}: unsupported value {value:#x}")]
    Unsupported { what: &'static str, value: u32 },
    #[error("{what}: {reason}")]
    Invalid { what: &'static str, reason: String },
}

/// A cursor over a byte slice that never reads past its end.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    /// Bytes not yet read.
    pub fn left(&self) -> usize {
        self.rest.len()
    }

    /// Takes exactly `n` bytes, or fails with [`WireError::MissingData`].
    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], WireError> {
        if n > self.rest.len() {
            return Err(WireError::MissingData {
                what,
                needed: n,
                left: self.rest.len(),
            });
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], WireError> {
        let bytes = self.take(N, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    pub fn u8(&mut self, what: &'static str) -> Result<u8, WireError> {
        Ok(u8::from_be_bytes(self.array(what)?))
    }

    pub fn u16(&mut self, what: &'static str) -> Result<u16, WireError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    pub fn u32(&mut self, what: &'static str) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    pub fn u64(&mut self, what: &'static str) -> Result<u64, WireError> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    /// Little-endian u16 (UEFI and event-log structures are little-endian).
    pub fn u16_le(&mut self, what: &'static str) -> Result<u16, WireError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    /// Little-endian u32.
    pub fn u32_le(&mut self, what: &'static str) -> Result<u32, WireError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    /// Little-endian u64.
    pub fn u64_le(&mut self, what: &'static str) -> Result<u64, WireError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// The bytes not yet read, without consuming them.
    pub fn peek_rest(&self) -> &'a [u8] {
        self.rest
    }

    /// A TPM2B: a big-endian u16 size, then that many bytes. A size above `max`
    /// is [`WireError::TooLarge`] (checked before the bytes are taken).
    pub fn tpm2b(&mut self, max: usize, what: &'static str) -> Result<&'a [u8], WireError> {
        let len = usize::from(self.u16(what)?);
        if len > max {
            return Err(WireError::TooLarge { what, len, max });
        }
        self.take(len, what)
    }

    /// A sub-reader over the next TPM2B region (u16 size, bounded by `max`).
    pub fn sub_tpm2b(&mut self, max: usize, what: &'static str) -> Result<Reader<'a>, WireError> {
        Ok(Reader::new(self.tpm2b(max, what)?))
    }

    /// Fails with [`WireError::TrailingData`] if anything is left.
    pub fn expect_empty(&self, what: &'static str) -> Result<(), WireError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(WireError::TrailingData {
                what,
                len: self.rest.len(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn reads_big_endian_integers_in_order() {
        let bytes = [1, 0, 2, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 4];
        let mut r = Reader::new(&bytes);
        assert_eq!(r.u8("a").unwrap(), 1);
        assert_eq!(r.u16("b").unwrap(), 2);
        assert_eq!(r.u32("c").unwrap(), 3);
        assert_eq!(r.u64("d").unwrap(), 4);
        assert_eq!(r.left(), 0);
        r.expect_empty("end").unwrap();
    }

    #[test]
    fn take_past_the_end_is_missing_data_and_consumes_nothing() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(
            r.take(4, "x"),
            Err(WireError::MissingData {
                what: "x",
                needed: 4,
                left: 3
            })
        );
        assert_eq!(r.left(), 3);
        assert_eq!(r.take(3, "x").unwrap(), &[1, 2, 3]);
        assert_eq!(
            r.u8("y"),
            Err(WireError::MissingData {
                what: "y",
                needed: 1,
                left: 0
            })
        );
        assert!(Reader::new(&[]).take(usize::MAX, "huge").is_err());
    }

    #[test]
    fn tpm2b_checks_the_maximum_before_the_length() {
        let mut r = Reader::new(&[0, 2, 9, 8, 7]);
        assert_eq!(r.tpm2b(2, "b").unwrap(), &[9, 8]);
        assert_eq!(
            r.expect_empty("tail"),
            Err(WireError::TrailingData {
                what: "tail",
                len: 1
            })
        );
        let mut r = Reader::new(&[0xff, 0xff]);
        assert_eq!(
            r.tpm2b(64, "big"),
            Err(WireError::TooLarge {
                what: "big",
                len: 0xffff,
                max: 64
            })
        );
        let mut r = Reader::new(&[0, 5, 1]);
        assert_eq!(
            r.tpm2b(64, "short"),
            Err(WireError::MissingData {
                what: "short",
                needed: 5,
                left: 1
            })
        );
        let mut r = Reader::new(&[0, 1, 7, 0xaa]);
        let mut sub = r.sub_tpm2b(4, "sub").unwrap();
        assert_eq!(sub.u8("in").unwrap(), 7);
        sub.expect_empty("sub").unwrap();
        assert_eq!(r.u8("after").unwrap(), 0xaa);
    }

    #[test]
    fn errors_name_the_field() {
        let e = Reader::new(&[]).u32("TPMS_ATTEST.magic").unwrap_err();
        assert_eq!(
            e.to_string(),
            "TPMS_ATTEST.magic: needs 4 more bytes, only 0 left (truncated)"
        );
    }
}
