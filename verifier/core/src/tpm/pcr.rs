//! `TPML_PCR_SELECTION` (TPM 2.0 Part 2, 10.9.7) and the PCR composite digest.

use crate::reader::{Reader, WireError};
use crate::tpm::public::HashAlg;

/// Most banks a selection may name (`HASH_COUNT` is at most a handful in practice).
pub const MAX_PCR_BANKS: u32 = 16;
/// Largest `sizeofSelect` accepted: 8 bytes, 64 PCRs (PC Client TPMs use 3).
pub const MAX_SIZEOF_SELECT: usize = 8;

/// A PCR selection: for each bank (raw `TPMI_ALG_HASH`, so that unknown banks
/// still parse), the selected PCR indices in ascending order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PcrSelection {
    pub banks: Vec<(u16, Vec<u32>)>,
}

impl PcrSelection {
    /// One sha256 bank with `indices` (sorted and de-duplicated).
    pub fn sha256_only(indices: &[u32]) -> Self {
        let mut v = indices.to_vec();
        v.sort_unstable();
        v.dedup();
        Self {
            banks: vec![(HashAlg::Sha256.to_tpm(), v)],
        }
    }

    /// The indices selected in `alg`'s bank(s), ascending, without duplicates.
    pub fn indices(&self, alg: HashAlg) -> Vec<u32> {
        let mut v: Vec<u32> = self
            .banks
            .iter()
            .filter(|(a, _)| *a == alg.to_tpm())
            .flat_map(|(_, i)| i.iter().copied())
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Reads a `TPML_PCR_SELECTION` from `r`.
    pub fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let count = r.u32("TPML_PCR_SELECTION.count")?;
        if count > MAX_PCR_BANKS {
            return Err(WireError::TooLarge {
                what: "TPML_PCR_SELECTION.count",
                len: usize::try_from(count).unwrap_or(usize::MAX),
                max: MAX_PCR_BANKS as usize,
            });
        }
        let mut banks = Vec::new();
        for _ in 0..count {
            let alg = r.u16("TPMS_PCR_SELECTION.hash")?;
            let size = usize::from(r.u8("TPMS_PCR_SELECTION.sizeofSelect")?);
            if size > MAX_SIZEOF_SELECT {
                return Err(WireError::TooLarge {
                    what: "TPMS_PCR_SELECTION.sizeofSelect",
                    len: size,
                    max: MAX_SIZEOF_SELECT,
                });
            }
            let bitmap = r.take(size, "TPMS_PCR_SELECTION.pcrSelect")?;
            let mut indices = Vec::new();
            for (byte_index, byte) in (0u32..).zip(bitmap) {
                for bit in 0..8 {
                    if byte & (1 << bit) != 0 {
                        indices.push(byte_index * 8 + bit);
                    }
                }
            }
            banks.push((alg, indices));
        }
        Ok(Self { banks })
    }

    /// Encodes as a `TPML_PCR_SELECTION` (sizeofSelect 3, or more if an index needs it).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = u32::try_from(self.banks.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes()
            .to_vec();
        for (alg, indices) in &self.banks {
            let needed = indices.iter().max().map_or(0, |m| m / 8 + 1);
            let size = usize::try_from(needed.clamp(3, 255)).unwrap_or(255);
            let mut bitmap = vec![0u8; size];
            for i in indices {
                if let Some(b) = usize::try_from(i / 8)
                    .ok()
                    .and_then(|byte| bitmap.get_mut(byte))
                {
                    *b |= 1 << (i % 8);
                }
            }
            out.extend(alg.to_be_bytes());
            out.push(u8::try_from(size).unwrap_or(u8::MAX));
            out.extend(bitmap);
        }
        out
    }
}

/// Parses a `TPML_PCR_SELECTION` filling all of `bytes`.
pub fn parse_pcr_selection(bytes: &[u8]) -> Result<PcrSelection, WireError> {
    let mut r = Reader::new(bytes);
    let s = PcrSelection::read(&mut r)?;
    r.expect_empty("TPML_PCR_SELECTION")?;
    Ok(s)
}

/// The quote's `pcrDigest`: H(value_0 || value_1 || …) in selection order.
pub fn pcr_digest(hash: HashAlg, values_in_selection_order: &[&[u8]]) -> Vec<u8> {
    hash.digest(&values_in_selection_order.concat())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use sha2::Digest;

    #[test]
    fn round_trips_a_pc_client_selection() {
        let s = PcrSelection::sha256_only(&[13, 0, 2, 1, 2]);
        assert_eq!(s.banks, vec![(0x000b, vec![0, 1, 2, 13])]);
        let bytes = s.to_bytes();
        assert_eq!(bytes, [0, 0, 0, 1, 0, 0x0b, 3, 0b0000_0111, 0b0010_0000, 0]);
        assert_eq!(parse_pcr_selection(&bytes).unwrap(), s);
        assert_eq!(s.indices(HashAlg::Sha256), vec![0, 1, 2, 13]);
        assert!(s.indices(HashAlg::Sha1).is_empty());
    }

    #[test]
    fn several_banks_and_unknown_banks_parse() {
        let s = PcrSelection {
            banks: vec![(0x0004, vec![7]), (0x0012, vec![0, 23]), (0x000b, vec![])],
        };
        assert_eq!(parse_pcr_selection(&s.to_bytes()).unwrap(), s);
    }

    #[test]
    fn truncation_at_every_length_is_a_typed_error() {
        let bytes = PcrSelection {
            banks: vec![(4, vec![1]), (11, vec![2, 9])],
        }
        .to_bytes();
        for n in 0..bytes.len() {
            assert!(
                matches!(
                    parse_pcr_selection(&bytes[..n]),
                    Err(WireError::MissingData { .. })
                ),
                "prefix {n}"
            );
        }
    }

    #[test]
    fn oversized_counts_and_bitmaps_are_refused_before_reading() {
        assert!(matches!(
            parse_pcr_selection(&[0xff, 0xff, 0xff, 0xff]),
            Err(WireError::TooLarge {
                what: "TPML_PCR_SELECTION.count",
                ..
            })
        ));
        assert!(matches!(
            parse_pcr_selection(&[0, 0, 0, 1, 0, 0x0b, 9]),
            Err(WireError::TooLarge {
                what: "TPMS_PCR_SELECTION.sizeofSelect",
                len: 9,
                max: 8
            })
        ));
        assert!(matches!(
            parse_pcr_selection(&[0, 0, 0, 0, 1]),
            Err(WireError::TrailingData {
                what: "TPML_PCR_SELECTION",
                len: 1
            })
        ));
    }

    #[test]
    fn digest_is_hash_of_concatenation() {
        let a = [1u8; 32];
        let b = [2u8; 32];
        let mut cat = a.to_vec();
        cat.extend(b);
        assert_eq!(
            pcr_digest(HashAlg::Sha256, &[&a, &b]),
            sha2::Sha256::digest(&cat).to_vec()
        );
    }
}
