//! The binary log (`binary_runtime_measurements`), read with the bounded
//! [`Reader`]; its integers are little-endian.

use super::template::{check_file_digest, check_name, le32};
use super::{
    check_log_size, check_pcr, check_template_name, At, BufferMeasurement, FileMeasurement,
    ImaEntry, ImaError, ImaLog, Limits, OtherFields, OtherTemplate, Template, MAX_ALG_NAME,
    MAX_FILE_DIGEST, MAX_IMA_TEMPLATE_NAME, MAX_TEMPLATE_NAME,
};
use crate::reader::Reader;
use crate::tpm::public::HashAlg;

/// Size of the legacy `ima` template's `d` field (SHA-1; it has no length).
const IMA_TEMPLATE_DIGEST: usize = 20;

/// Parses a binary log whose template hashes are `template_hash_alg` digests:
/// SHA-1 for `binary_runtime_measurements`, the bank's algorithm for
/// `binary_runtime_measurements_<bank>` (Linux 6.10+).
pub fn parse_binary(
    bytes: &[u8],
    template_hash_alg: HashAlg,
    limits: &Limits,
) -> Result<ImaLog, ImaError> {
    check_log_size(bytes, limits)?;
    let mut r = Reader::new(bytes);
    // Records of a usual log are ~70 bytes or more: reserving for one per 64
    // bytes avoids regrowing (and moving) the entries; bounded by the log's
    // size, the entry limit and 65,536 (beyond, it grows).
    let mut entries = Vec::with_capacity((bytes.len() / 64).min(limits.max_entries).min(1 << 16));
    while r.left() > 0 {
        let index = entries.len();
        let at = At::Record {
            index,
            offset: bytes.len() - r.left(),
        };
        if index >= limits.max_entries {
            return Err(ImaError::TooManyEntries {
                at,
                max: limits.max_entries,
            });
        }
        entries.push(read_record(&mut r, index, at, template_hash_alg, limits)?);
    }
    Ok(ImaLog {
        template_hash_alg,
        entries,
    })
}

/// A u32 in host (little-endian) order.
fn u32_le(r: &mut Reader<'_>, at: At, what: &'static str) -> Result<u32, ImaError> {
    let bytes = r.take(4, what).map_err(|e| ImaError::from_wire(at, e))?;
    let array =
        <[u8; 4]>::try_from(bytes).map_err(|_| ImaError::malformed(at, what, "not 4 bytes"))?;
    Ok(u32::from_le_bytes(array))
}

/// A u32 length, refused above `max` before anything is taken, then its bytes.
fn sized<'a>(
    r: &mut Reader<'a>,
    max: usize,
    at: At,
    what: &'static str,
) -> Result<&'a [u8], ImaError> {
    let len = u32_le(r, at, what)?;
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    if len > max {
        return Err(ImaError::TooLarge {
            at,
            field: what,
            len,
            max,
        });
    }
    r.take(len, what).map_err(|e| ImaError::from_wire(at, e))
}

fn read_record(
    r: &mut Reader<'_>,
    index: usize,
    at: At,
    template_hash_alg: HashAlg,
    limits: &Limits,
) -> Result<ImaEntry, ImaError> {
    let pcr = check_pcr(u32_le(r, at, "pcr")?, at)?;
    let template_hash = r
        .take(template_hash_alg.digest_len(), "template hash")
        .map_err(|e| ImaError::from_wire(at, e))?
        .to_vec();
    let violation = template_hash.iter().all(|b| *b == 0);
    let name = sized(r, MAX_TEMPLATE_NAME, at, "template name")?;
    let name = check_template_name(name, at)?;
    let template = if name == "ima" {
        // No template-data length; `d` has no length, `n` is u32 + name without NUL.
        let digest = r
            .take(IMA_TEMPLATE_DIGEST, "ima template digest (d)")
            .map_err(|e| ImaError::from_wire(at, e))?
            .to_vec();
        let max = MAX_IMA_TEMPLATE_NAME.min(limits.max_name);
        let path = check_name(
            sized(r, max, at, "ima template name (n)")?,
            max,
            "ima template name (n)",
            at,
        )?;
        Template::Ima(FileMeasurement {
            hash_alg: "sha1".to_string(),
            digest,
            path,
            signature: None,
        })
    } else {
        let data = sized(r, limits.max_template_data, at, "template data")?;
        decode_template_data(name, data, violation, at, limits)?
    };
    Ok(ImaEntry {
        index,
        pcr,
        template_hash,
        template,
    })
}

fn decode_template_data(
    name: String,
    data: &[u8],
    violation: bool,
    at: At,
    limits: &Limits,
) -> Result<Template, ImaError> {
    let mut r = Reader::new(data);
    let template = match name.as_str() {
        "ima-ng" | "ima-sig" | "ima-buf" => {
            let (hash_alg, digest) = digest_ng(&mut r, violation, at)?;
            let path = name_ng(&mut r, limits.max_name, at)?;
            match name.as_str() {
                "ima-ng" => Template::ImaNg(FileMeasurement {
                    hash_alg,
                    digest,
                    path,
                    signature: None,
                }),
                "ima-sig" => {
                    let sig = sized(&mut r, limits.max_signature, at, "sig")?;
                    Template::ImaSig(FileMeasurement {
                        hash_alg,
                        digest,
                        path,
                        signature: (!sig.is_empty()).then(|| sig.to_vec()),
                    })
                }
                _ => Template::ImaBuf(BufferMeasurement {
                    hash_alg,
                    digest,
                    name: path,
                    buf: sized(&mut r, limits.max_template_data, at, "buf")?.to_vec(),
                }),
            }
        }
        _ => {
            return Ok(Template::Other(OtherTemplate {
                name,
                fields: OtherFields::TemplateData(data.to_vec()),
            }))
        }
    };
    r.expect_empty("template data")
        .map_err(|e| ImaError::from_wire(at, e))?;
    Ok(template)
}

/// `d-ng`: algorithm name, `:`, NUL, raw digest.
fn digest_ng(r: &mut Reader<'_>, violation: bool, at: At) -> Result<(String, Vec<u8>), ImaError> {
    let field = sized(r, MAX_ALG_NAME + 2 + MAX_FILE_DIGEST, at, "d-ng")?;
    let colon = field
        .iter()
        .position(|b| *b == b':')
        .ok_or_else(|| ImaError::malformed(at, "d-ng", "no ':' after the algorithm name"))?;
    let (alg, rest) = field
        .split_at_checked(colon)
        .ok_or_else(|| ImaError::malformed(at, "d-ng", "no ':' after the algorithm name"))?;
    let digest = rest
        .strip_prefix(b":\0")
        .ok_or_else(|| ImaError::malformed(at, "d-ng", "the ':' is not followed by NUL"))?;
    let alg = check_file_digest(alg, digest, violation, at)?;
    Ok((alg, digest.to_vec()))
}

/// `n-ng`: name and NUL.
fn name_ng(r: &mut Reader<'_>, max_name: usize, at: At) -> Result<String, ImaError> {
    let field = sized(r, max_name.saturating_add(1), at, "n-ng")?;
    let name = field
        .strip_suffix(&[0])
        .ok_or_else(|| ImaError::malformed(at, "n-ng", "not NUL-terminated"))?;
    check_name(name, max_name, "n-ng", at)
}

/// Encodes a log as the kernel's binary log (template hashes as they are, so
/// they must be `log.template_hash_alg` digests). Fails only for undecoded
/// templates from an ascii log, whose template data is unknown.
pub fn to_binary(log: &ImaLog) -> Result<Vec<u8>, ImaError> {
    let mut out = Vec::new();
    for e in &log.entries {
        let name = e.template.name();
        out.extend_from_slice(&e.pcr.to_le_bytes());
        out.extend_from_slice(&e.template_hash);
        out.extend_from_slice(&le32(name.len()));
        out.extend_from_slice(name.as_bytes());
        if let Template::Ima(f) = &e.template {
            out.extend_from_slice(&f.digest);
            out.extend_from_slice(&le32(f.path.len()));
            out.extend_from_slice(f.path.as_bytes());
        } else {
            let data = e.template_data().ok_or_else(|| ImaError::NotRecomputable {
                index: e.index,
                template: name.to_string(),
            })?;
            out.extend_from_slice(&le32(data.len()));
            out.extend_from_slice(&data);
        }
    }
    Ok(out)
}
