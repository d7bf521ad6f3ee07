//! `TPMS_ATTEST` for quotes (TPM 2.0 Part 2, 10.12.12): the structure the AK signs.

use serde::{Deserialize, Serialize};

use crate::reader::{Reader, WireError};
use crate::tpm::pcr::PcrSelection;
use crate::tpm::public::MAX_DIGEST_SIZE;

/// `TPM_GENERATED_VALUE`: only the TPM itself puts this in a structure it signs.
pub const TPM_GENERATED_VALUE: u32 = 0xff54_4347;
/// `TPM_ST_ATTEST_QUOTE`.
pub const TPM_ST_ATTEST_QUOTE: u16 = 0x8018;
/// Largest `TPM2B_NAME` (hash algorithm + SHA-512 digest).
pub const MAX_NAME_SIZE: usize = 2 + 64;
/// Largest `TPM2B_DATA` (extraData, the nonce).
pub const MAX_EXTRA_DATA_SIZE: usize = 64;

/// `TPMS_CLOCK_INFO`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockInfo {
    /// Milliseconds the TPM has been powered, across resets (persisted periodically).
    pub clock: u64,
    /// TPM resets (reboots) since the TPM was manufactured/cleared.
    pub reset_count: u32,
    /// TPM restarts (hibernate/resume) since the last reset.
    pub restart_count: u32,
    /// False if the clock may have gone backwards since it was last persisted.
    pub safe: bool,
}

/// `TPMS_QUOTE_INFO`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuoteInfo {
    pub pcr_select: PcrSelection,
    pub pcr_digest: Vec<u8>,
}

/// A parsed `TPMS_ATTEST` of type quote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attest {
    pub qualified_signer: Vec<u8>,
    pub extra_data: Vec<u8>,
    pub clock_info: ClockInfo,
    pub firmware_version: u64,
    pub quote: QuoteInfo,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttestError {
    #[error("TPMS_ATTEST is malformed: {0}")]
    Wire(#[from] WireError),
    #[error("TPMS_ATTEST.magic is {magic:#010x}, not TPM_GENERATED_VALUE (0xff544347): not produced by a TPM")]
    NotTpmGenerated { magic: u32 },
    #[error("TPMS_ATTEST.type is {st:#06x}, not TPM_ST_ATTEST_QUOTE (0x8018)")]
    NotAQuote { st: u16 },
}

/// Parses a quote's `TPMS_ATTEST`; nothing may follow it.
pub fn parse_quote_attest(bytes: &[u8]) -> Result<Attest, AttestError> {
    let mut r = Reader::new(bytes);
    let magic = r.u32("TPMS_ATTEST.magic")?;
    if magic != TPM_GENERATED_VALUE {
        return Err(AttestError::NotTpmGenerated { magic });
    }
    let st = r.u16("TPMS_ATTEST.type")?;
    if st != TPM_ST_ATTEST_QUOTE {
        return Err(AttestError::NotAQuote { st });
    }
    let qualified_signer = r
        .tpm2b(MAX_NAME_SIZE, "TPMS_ATTEST.qualifiedSigner")?
        .to_vec();
    let extra_data = r
        .tpm2b(MAX_EXTRA_DATA_SIZE, "TPMS_ATTEST.extraData")?
        .to_vec();
    let clock = r.u64("TPMS_CLOCK_INFO.clock")?;
    let reset_count = r.u32("TPMS_CLOCK_INFO.resetCount")?;
    let restart_count = r.u32("TPMS_CLOCK_INFO.restartCount")?;
    let safe = match r.u8("TPMS_CLOCK_INFO.safe")? {
        0 => false,
        1 => true,
        other => {
            return Err(AttestError::Wire(WireError::Invalid {
                what: "TPMS_CLOCK_INFO.safe",
                reason: format!("{other} is not a TPMI_YES_NO (0 or 1)"),
            }))
        }
    };
    let firmware_version = r.u64("TPMS_ATTEST.firmwareVersion")?;
    let pcr_select = PcrSelection::read(&mut r)?;
    let pcr_digest = r
        .tpm2b(MAX_DIGEST_SIZE, "TPMS_QUOTE_INFO.pcrDigest")?
        .to_vec();
    r.expect_empty("TPMS_ATTEST")?;
    Ok(Attest {
        qualified_signer,
        extra_data,
        clock_info: ClockInfo {
            clock,
            reset_count,
            restart_count,
            safe,
        },
        firmware_version,
        quote: QuoteInfo {
            pcr_select,
            pcr_digest,
        },
    })
}

/// Encodes a quote `TPMS_ATTEST` (the inverse of [`parse_quote_attest`]), for
/// tests, fixtures and software TPMs.
pub fn encode_quote_attest(a: &Attest) -> Vec<u8> {
    fn tpm2b(out: &mut Vec<u8>, b: &[u8]) {
        out.extend(u16::try_from(b.len()).unwrap_or(u16::MAX).to_be_bytes());
        out.extend(b);
    }
    let mut out = TPM_GENERATED_VALUE.to_be_bytes().to_vec();
    out.extend(TPM_ST_ATTEST_QUOTE.to_be_bytes());
    tpm2b(&mut out, &a.qualified_signer);
    tpm2b(&mut out, &a.extra_data);
    out.extend(a.clock_info.clock.to_be_bytes());
    out.extend(a.clock_info.reset_count.to_be_bytes());
    out.extend(a.clock_info.restart_count.to_be_bytes());
    out.push(u8::from(a.clock_info.safe));
    out.extend(a.firmware_version.to_be_bytes());
    out.extend(a.quote.pcr_select.to_bytes());
    tpm2b(&mut out, &a.quote.pcr_digest);
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn sample() -> Attest {
        Attest {
            qualified_signer: [&[0u8, 0x0b][..], &[0x11; 32]].concat(),
            extra_data: vec![0xab; 32],
            clock_info: ClockInfo {
                clock: 123_456,
                reset_count: 3,
                restart_count: 1,
                safe: true,
            },
            firmware_version: 0x2019_1023_0016_3900,
            quote: QuoteInfo {
                pcr_select: PcrSelection::sha256_only(&[0, 1, 2, 13]),
                pcr_digest: vec![0x5a; 32],
            },
        }
    }

    #[test]
    fn round_trips_a_quote() {
        let a = sample();
        let bytes = encode_quote_attest(&a);
        assert_eq!(parse_quote_attest(&bytes).unwrap(), a);
    }

    #[test]
    fn truncation_at_every_length_is_a_typed_error() {
        let bytes = encode_quote_attest(&sample());
        for n in 0..bytes.len() {
            assert!(
                matches!(
                    parse_quote_attest(&bytes[..n]),
                    Err(AttestError::Wire(WireError::MissingData { .. }))
                ),
                "{n}"
            );
        }
    }

    #[test]
    fn wrong_magic_and_type_are_named() {
        let mut bytes = encode_quote_attest(&sample());
        bytes[0] = 0;
        assert_eq!(
            parse_quote_attest(&bytes),
            Err(AttestError::NotTpmGenerated { magic: 0x0054_4347 })
        );
        let mut bytes = encode_quote_attest(&sample());
        bytes[4..6].copy_from_slice(&0x8017u16.to_be_bytes()); // TPM_ST_ATTEST_CERTIFY
        assert_eq!(
            parse_quote_attest(&bytes),
            Err(AttestError::NotAQuote { st: 0x8017 })
        );
    }

    #[test]
    fn oversized_fields_trailing_data_and_bad_booleans_are_refused() {
        let mut a = sample();
        a.extra_data = vec![0; 65];
        assert!(matches!(
            parse_quote_attest(&encode_quote_attest(&a)),
            Err(AttestError::Wire(WireError::TooLarge {
                what: "TPMS_ATTEST.extraData",
                len: 65,
                max: 64
            }))
        ));
        let mut a = sample();
        a.qualified_signer = vec![0; 67];
        assert!(matches!(
            parse_quote_attest(&encode_quote_attest(&a)),
            Err(AttestError::Wire(WireError::TooLarge { .. }))
        ));
        let mut bytes = encode_quote_attest(&sample());
        bytes.push(0);
        assert_eq!(
            parse_quote_attest(&bytes),
            Err(AttestError::Wire(WireError::TrailingData {
                what: "TPMS_ATTEST",
                len: 1
            }))
        );
        let mut bytes = encode_quote_attest(&sample());
        let safe_at = 4 + 2 + 2 + 34 + 2 + 32 + 8 + 4 + 4;
        assert_eq!(bytes[safe_at], 1);
        bytes[safe_at] = 2;
        assert!(matches!(
            parse_quote_attest(&bytes),
            Err(AttestError::Wire(WireError::Invalid { .. }))
        ));
    }
}
