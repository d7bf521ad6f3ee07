//! The container measurement log: TCG Canonical Event Log (CEL) records in the
//! TLV encoding (TCG IWG CEL v1, §5), one record per measurement.
//!
//! Every TLV is `type: u8`, `length: u32` (big-endian), `value`. A record is,
//! in this order:
//! - `RECNUM` (type 0): u64 big-endian, 0 for the first record, then +1;
//! - `PCR` (type 1): the PCR index, 1 byte;
//! - `DIGESTS` (type 3): nested TLVs whose type is the `TPM_ALG_ID` (sha1 4,
//!   sha256 11, sha384 12, sha512 13) and whose value is the digest;
//! - a content TLV. Assay writes [`CONTENT_ASSAY`]; other content types are
//!   kept (and judged as unknown by policy).
//!
//! The digest extended into the PCR is the hash of the whole content TLV
//! (type, length and value), as go-tpm-tools does for its container launch
//! events, so a record's content is proven by its digest ([`Record::content_proven`]).
//!
//! Assay's content value is itself TLVs: `KIND` first, then the kind's fields
//! (see [`Measurement`]).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::reader::{Reader, WireError};
use crate::tpm::public::HashAlg;

/// `RECNUM` field type.
pub const TLV_RECNUM: u8 = 0;
/// `PCR` field type.
pub const TLV_PCR: u8 = 1;
/// `NV_INDEX` field type (not written or accepted by Assay).
pub const TLV_NV_INDEX: u8 = 2;
/// `DIGESTS` field type.
pub const TLV_DIGESTS: u8 = 3;
/// Assay's content type, from the range the CEL spec leaves to implementers
/// (go-tpm-tools uses 80 for its launch events; we use 0xA5).
pub const CONTENT_ASSAY: u8 = 0xA5;

/// The PCR container measurements go to unless configured otherwise (the
/// precedent go-tpm-tools set for container launch events).
pub const DEFAULT_CEL_PCR: u32 = 13;

// Assay content fields.
const F_KIND: u8 = 0;
const F_PATH: u8 = 1;
const F_SHA256: u8 = 2;
const F_REFERENCE: u8 = 3;
const F_MANIFEST_DIGEST: u8 = 4;
const F_CONFIG_DIGEST: u8 = 5;
const F_CONTAINER_ID: u8 = 6;
const F_IMAGE_DIGEST: u8 = 7;

const KIND_RUNTIME_BINARY: u8 = 1;
const KIND_RUNTIME_CONFIG: u8 = 2;
const KIND_IMAGE: u8 = 3;
const KIND_CONTAINER_START: u8 = 4;

/// Longest text field (a path, an image reference, an id).
pub const MAX_FIELD: usize = 4096;

/// Caps on what a log may make the verifier hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_log_bytes: usize,
    pub max_records: usize,
    /// Largest content TLV value.
    pub max_content: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_log_bytes: 16 << 20,
            max_records: 100_000,
            max_content: 64 << 10,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CelError {
    #[error("the CEL log is {len} bytes, over the {max}-byte limit")]
    TooLarge { len: usize, max: usize },
    #[error("the CEL log has more than {max} records")]
    TooManyRecords { max: usize },
    #[error("record {recnum} (byte offset {offset}): {source}")]
    Wire {
        recnum: u64,
        offset: usize,
        source: WireError,
    },
    #[error("record {recnum} (byte offset {offset}): {reason}")]
    Invalid {
        recnum: u64,
        offset: usize,
        reason: String,
    },
}

/// What one Assay record measured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Measurement {
    /// A container runtime executable (containerd, runc, …).
    RuntimeBinary {
        path: String,
        #[serde(serialize_with = "super::ser_hex")]
        sha256: [u8; 32],
    },
    /// A container runtime configuration file.
    RuntimeConfig {
        path: String,
        #[serde(serialize_with = "super::ser_hex")]
        sha256: [u8; 32],
    },
    /// An image the runtime holds: its reference, manifest digest and (when
    /// known) config digest, digests as `sha256:<64 hex>`.
    Image {
        reference: String,
        manifest_digest: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        config_digest: Option<String>,
    },
    /// A container started from the image with manifest digest `image_digest`
    /// (`None`: a container without an image, e.g. `ctr run --rootfs`).
    ContainerStart {
        container_id: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        image_digest: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        image_reference: Option<String>,
    },
}

/// One digest of a record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordDigest {
    pub alg_id: u16,
    #[serde(serialize_with = "super::ser_hex")]
    pub digest: Vec<u8>,
}

/// One CEL record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Record {
    pub recnum: u64,
    pub pcr: u32,
    pub digests: Vec<RecordDigest>,
    pub content_type: u8,
    #[serde(serialize_with = "super::ser_hex")]
    pub content: Vec<u8>,
    /// Byte offset of the record in the log.
    #[serde(skip)]
    pub offset: usize,
}

impl Record {
    /// A record measuring `m` into `pcr`, with a sha256 digest.
    pub fn new(recnum: u64, pcr: u32, m: &Measurement) -> Self {
        let content = encode_measurement(m);
        let mut r = Self {
            recnum,
            pcr,
            digests: Vec::new(),
            content_type: CONTENT_ASSAY,
            content,
            offset: 0,
        };
        r.digests.push(RecordDigest {
            alg_id: HashAlg::Sha256.to_tpm(),
            digest: r.content_digest(HashAlg::Sha256),
        });
        r
    }

    /// The content TLV (type, length, value): what the digests are taken over.
    pub fn content_tlv(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(5 + self.content.len());
        put_tlv(&mut out, self.content_type, &self.content);
        out
    }

    /// The hash of the content TLV in `bank`.
    pub fn content_digest(&self, bank: HashAlg) -> Vec<u8> {
        bank.digest(&self.content_tlv())
    }

    /// The record's digest in `bank`, if it carries one.
    pub fn digest(&self, bank: HashAlg) -> Option<&[u8]> {
        self.digests
            .iter()
            .find(|d| d.alg_id == bank.to_tpm())
            .map(|d| d.digest.as_slice())
    }

    /// True when every digest this build can compute is the hash of the content
    /// TLV: the content is what was extended.
    pub fn content_proven(&self) -> bool {
        let tlv = self.content_tlv();
        !self.digests.is_empty()
            && self.digests.iter().all(|d| {
                HashAlg::from_tpm(d.alg_id).is_none_or(|bank| bank.digest(&tlv) == d.digest)
            })
    }

    /// The decoded measurement of an Assay record.
    pub fn measurement(&self) -> Result<Measurement, String> {
        if self.content_type != CONTENT_ASSAY {
            return Err(format!(
                "content type {:#04x} is not Assay's",
                self.content_type
            ));
        }
        decode_measurement(&self.content)
    }
}

/// A parsed log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CelLog {
    pub records: Vec<Record>,
}

fn put_tlv(out: &mut Vec<u8>, t: u8, value: &[u8]) {
    out.push(t);
    out.extend_from_slice(&u32::try_from(value.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(value);
}

/// Reads one TLV whose value may be at most `max` bytes (checked before it is taken).
fn tlv<'a>(
    r: &mut Reader<'a>,
    max: usize,
    what: &'static str,
) -> Result<(u8, &'a [u8]), WireError> {
    let t = r.u8(what)?;
    let len = usize::try_from(r.u32(what)?).unwrap_or(usize::MAX);
    if len > max {
        return Err(WireError::TooLarge { what, len, max });
    }
    Ok((t, r.take(len, what)?))
}

/// Encodes a record in CEL TLV.
pub fn encode_record(r: &Record) -> Vec<u8> {
    let mut out = Vec::new();
    put_tlv(&mut out, TLV_RECNUM, &r.recnum.to_be_bytes());
    put_tlv(&mut out, TLV_PCR, &[u8::try_from(r.pcr).unwrap_or(u8::MAX)]);
    let mut digests = Vec::new();
    for d in &r.digests {
        put_tlv(
            &mut digests,
            u8::try_from(d.alg_id).unwrap_or(u8::MAX),
            &d.digest,
        );
    }
    put_tlv(&mut out, TLV_DIGESTS, &digests);
    put_tlv(&mut out, r.content_type, &r.content);
    out
}

/// Encodes a whole log.
pub fn encode(log: &CelLog) -> Vec<u8> {
    log.records.iter().flat_map(encode_record).collect()
}

/// Parses a CEL TLV log. Records must be numbered 0, 1, 2, … in order (a
/// dropped or reordered record is named here, before any replay). An empty log
/// is valid: nothing has been measured since boot.
pub fn parse(bytes: &[u8], limits: &Limits) -> Result<CelLog, CelError> {
    if bytes.len() > limits.max_log_bytes {
        return Err(CelError::TooLarge {
            len: bytes.len(),
            max: limits.max_log_bytes,
        });
    }
    let mut r = Reader::new(bytes);
    let mut records = Vec::new();
    while r.left() > 0 {
        if records.len() >= limits.max_records {
            return Err(CelError::TooManyRecords {
                max: limits.max_records,
            });
        }
        let expected = u64::try_from(records.len()).unwrap_or(u64::MAX);
        records.push(read_record(&mut r, bytes.len(), expected, limits)?);
    }
    Ok(CelLog { records })
}

fn read_record(
    r: &mut Reader<'_>,
    total: usize,
    expected: u64,
    limits: &Limits,
) -> Result<Record, CelError> {
    let offset = total - r.left();
    let wire = |source| CelError::Wire {
        recnum: expected,
        offset,
        source,
    };
    let invalid = |reason: String| CelError::Invalid {
        recnum: expected,
        offset,
        reason,
    };
    let (t, v) = tlv(r, 8, "CEL.recnum").map_err(wire)?;
    let recnum = match (t, <[u8; 8]>::try_from(v)) {
        (TLV_RECNUM, Ok(b)) => u64::from_be_bytes(b),
        (TLV_RECNUM, Err(_)) => return Err(invalid(format!("RECNUM is {} bytes, not 8", v.len()))),
        _ => {
            return Err(invalid(format!(
                "expected a RECNUM field (type 0), found type {t}"
            )))
        }
    };
    if recnum != expected {
        return Err(invalid(format!(
            "record number {recnum} where {expected} was expected (a record was dropped, reordered or inserted)"
        )));
    }
    let (t, v) = tlv(r, 4, "CEL.pcr").map_err(wire)?;
    if t != TLV_PCR {
        return Err(invalid(format!(
            "expected a PCR field (type 1), found type {t}{}",
            if t == TLV_NV_INDEX {
                " (NV index records are not supported)"
            } else {
                ""
            }
        )));
    }
    let pcr = match v {
        [p] => u32::from(*p),
        _ => return Err(invalid(format!("PCR field is {} bytes, not 1", v.len()))),
    };
    if pcr > 23 {
        return Err(invalid(format!("PCR {pcr} is above 23")));
    }
    let (t, v) = tlv(r, 1024, "CEL.digests").map_err(wire)?;
    if t != TLV_DIGESTS {
        return Err(invalid(format!(
            "expected a DIGESTS field (type 3), found type {t}"
        )));
    }
    let mut digests = Vec::new();
    let mut dr = Reader::new(v);
    while dr.left() > 0 {
        let (alg, d) = tlv(&mut dr, 64, "CEL.digest").map_err(wire)?;
        let alg_id = u16::from(alg);
        if let Some(bank) = HashAlg::from_tpm(alg_id) {
            if d.len() != bank.digest_len() {
                return Err(invalid(format!(
                    "{bank:?} digest is {} bytes, not {}",
                    d.len(),
                    bank.digest_len()
                )));
            }
        }
        if digests.iter().any(|x: &RecordDigest| x.alg_id == alg_id) {
            return Err(invalid(format!(
                "digest algorithm {alg_id:#06x} listed twice"
            )));
        }
        digests.push(RecordDigest {
            alg_id,
            digest: d.to_vec(),
        });
    }
    if digests.is_empty() {
        return Err(invalid("no digests".into()));
    }
    let (content_type, content) = tlv(r, limits.max_content, "CEL.content").map_err(wire)?;
    if content_type <= TLV_DIGESTS {
        return Err(invalid(format!(
            "expected a content field, found field type {content_type}"
        )));
    }
    Ok(Record {
        recnum,
        pcr,
        digests,
        content_type,
        content: content.to_vec(),
        offset,
    })
}

/// The content value of an Assay record.
pub fn encode_measurement(m: &Measurement) -> Vec<u8> {
    let mut out = Vec::new();
    let text = |out: &mut Vec<u8>, t: u8, s: &str| put_tlv(out, t, s.as_bytes());
    match m {
        Measurement::RuntimeBinary { path, sha256 }
        | Measurement::RuntimeConfig { path, sha256 } => {
            let kind = if matches!(m, Measurement::RuntimeBinary { .. }) {
                KIND_RUNTIME_BINARY
            } else {
                KIND_RUNTIME_CONFIG
            };
            put_tlv(&mut out, F_KIND, &[kind]);
            text(&mut out, F_PATH, path);
            put_tlv(&mut out, F_SHA256, sha256);
        }
        Measurement::Image {
            reference,
            manifest_digest,
            config_digest,
        } => {
            put_tlv(&mut out, F_KIND, &[KIND_IMAGE]);
            text(&mut out, F_REFERENCE, reference);
            text(&mut out, F_MANIFEST_DIGEST, manifest_digest);
            if let Some(c) = config_digest {
                text(&mut out, F_CONFIG_DIGEST, c);
            }
        }
        Measurement::ContainerStart {
            container_id,
            image_digest,
            image_reference,
        } => {
            put_tlv(&mut out, F_KIND, &[KIND_CONTAINER_START]);
            text(&mut out, F_CONTAINER_ID, container_id);
            if let Some(d) = image_digest {
                text(&mut out, F_IMAGE_DIGEST, d);
            }
            if let Some(r) = image_reference {
                text(&mut out, F_REFERENCE, r);
            }
        }
    }
    out
}

/// True for `sha256:` followed by 64 lowercase hex digits (an OCI digest).
pub fn is_oci_sha256(s: &str) -> bool {
    s.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

/// Decodes an Assay content value: `KIND`, then each field of that kind once,
/// in any order; unknown or repeated fields are errors.
pub fn decode_measurement(content: &[u8]) -> Result<Measurement, String> {
    let mut r = Reader::new(content);
    let (t, kind) = tlv(&mut r, MAX_FIELD, "kind").map_err(|e| e.to_string())?;
    let kind = match (t, kind) {
        (F_KIND, [k]) => *k,
        _ => return Err("the content does not start with a KIND field".into()),
    };
    let mut fields: BTreeMap<u8, &[u8]> = BTreeMap::new();
    while r.left() > 0 {
        let (t, v) = tlv(&mut r, MAX_FIELD, "field").map_err(|e| e.to_string())?;
        if fields.insert(t, v).is_some() {
            return Err(format!("field {t} appears twice"));
        }
    }
    let allowed: &[u8] = match kind {
        KIND_RUNTIME_BINARY | KIND_RUNTIME_CONFIG => &[F_PATH, F_SHA256],
        KIND_IMAGE => &[F_REFERENCE, F_MANIFEST_DIGEST, F_CONFIG_DIGEST],
        KIND_CONTAINER_START => &[F_CONTAINER_ID, F_IMAGE_DIGEST, F_REFERENCE],
        other => return Err(format!("unknown measurement kind {other}")),
    };
    if let Some(t) = fields.keys().find(|t| !allowed.contains(t)) {
        return Err(format!(
            "field {t} does not belong to measurement kind {kind}"
        ));
    }
    let text = |t: u8, name: &str| -> Result<Option<String>, String> {
        fields
            .get(&t)
            .map(|v| {
                let s = std::str::from_utf8(v).map_err(|_| format!("{name} is not UTF-8"))?;
                if s.is_empty() || s.chars().any(char::is_control) {
                    return Err(format!("{name} is empty or holds control characters"));
                }
                Ok(s.to_string())
            })
            .transpose()
    };
    let need = |v: Option<String>, name: &str| v.ok_or_else(|| format!("{name} is missing"));
    let digest = |t: u8, name: &str| -> Result<Option<String>, String> {
        let v = text(t, name)?;
        match v {
            Some(d) if !is_oci_sha256(&d) => {
                Err(format!("{name} `{d}` is not sha256:<64 lowercase hex>"))
            }
            other => Ok(other),
        }
    };
    Ok(match kind {
        KIND_RUNTIME_BINARY | KIND_RUNTIME_CONFIG => {
            let path = need(text(F_PATH, "path")?, "path")?;
            let sha256 = fields
                .get(&F_SHA256)
                .and_then(|v| <[u8; 32]>::try_from(*v).ok())
                .ok_or("sha256 is missing or not 32 bytes")?;
            if kind == KIND_RUNTIME_BINARY {
                Measurement::RuntimeBinary { path, sha256 }
            } else {
                Measurement::RuntimeConfig { path, sha256 }
            }
        }
        KIND_IMAGE => Measurement::Image {
            reference: need(text(F_REFERENCE, "reference")?, "reference")?,
            manifest_digest: need(
                digest(F_MANIFEST_DIGEST, "manifest digest")?,
                "manifest digest",
            )?,
            config_digest: digest(F_CONFIG_DIGEST, "config digest")?,
        },
        _ => Measurement::ContainerStart {
            container_id: need(text(F_CONTAINER_ID, "container id")?, "container id")?,
            image_digest: digest(F_IMAGE_DIGEST, "image digest")?,
            image_reference: text(F_REFERENCE, "reference")?,
        },
    })
}

/// Folds the records' `bank` digests into their PCRs, starting from
/// `initial(pcr)`. Records without a digest in `bank` are skipped (and named by
/// the verifier, which requires sha256).
pub fn replay(
    records: &[Record],
    bank: HashAlg,
    initial: impl Fn(u32) -> Vec<u8>,
) -> BTreeMap<u32, Vec<u8>> {
    let mut pcrs: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
    for r in records {
        if let Some(d) = r.digest(bank) {
            let value = pcrs.entry(r.pcr).or_insert_with(|| initial(r.pcr));
            *value = super::uefi::extend(bank, value, d);
        }
    }
    pcrs
}

#[cfg(test)]
mod tests;
