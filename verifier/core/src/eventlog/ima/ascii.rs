//! The ascii log (`ascii_runtime_measurements`): `PCR template-hash
//! template-name field…` per line, each field preceded by one space.

use super::template::{check_file_digest, check_name, template_data_len};
use super::{
    check_log_size, check_pcr, check_template_name, shown, At, BufferMeasurement, FileMeasurement,
    ImaEntry, ImaError, ImaLog, Limits, OtherFields, OtherTemplate, Template, MAX_ALG_NAME,
    MAX_FILE_DIGEST, MAX_IMA_TEMPLATE_NAME,
};
use crate::tpm::public::HashAlg;

/// Parses an ascii log. Lines end in `\n` (the last one may lack it); the
/// template-hash length says which algorithm the log's template hashes use
/// (40 hex digits: SHA-1, 64: SHA-256, …) and must be the same on every line.
pub fn parse_ascii(bytes: &[u8], limits: &Limits) -> Result<ImaLog, ImaError> {
    check_log_size(bytes, limits)?;
    let mut log = ImaLog {
        template_hash_alg: HashAlg::Sha1,
        // Lines are at least ~90 bytes (pcr, 40-hex template hash, name,
        // algorithm and digest): reserved up to 65,536 entries, then it grows.
        entries: Vec::with_capacity((bytes.len() / 96).min(limits.max_entries).min(1 << 16)),
    };
    if bytes.is_empty() {
        return Ok(log);
    }
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let mut alg = None;
    for (index, line) in body.split(|b| *b == b'\n').enumerate() {
        let at = At::Line(index + 1);
        if index >= limits.max_entries {
            return Err(ImaError::TooManyEntries {
                at,
                max: limits.max_entries,
            });
        }
        log.entries
            .push(parse_line(line, index, at, &mut alg, limits)?);
    }
    log.template_hash_alg = alg.unwrap_or(HashAlg::Sha1);
    Ok(log)
}

/// Splits at the first space: the field before it and the rest after it.
fn field<'a>(s: &'a [u8], at: At, what: &'static str) -> Result<(&'a [u8], &'a [u8]), ImaError> {
    let missing = || ImaError::malformed(at, what, "missing (too few fields)");
    let i = s.iter().position(|b| *b == b' ').ok_or_else(missing)?;
    let (head, tail) = s.split_at_checked(i).ok_or_else(missing)?;
    Ok((head, tail.get(1..).unwrap_or_default()))
}

/// Splits at the last space; without one, all of `s` and an empty last field.
fn last_field(s: &[u8]) -> (&[u8], &[u8]) {
    match s.iter().rposition(|b| *b == b' ') {
        Some(i) => match s.split_at_checked(i) {
            Some((head, tail)) => (head, tail.get(1..).unwrap_or_default()),
            None => (s, &[]),
        },
        None => (s, &[]),
    }
}

/// Hex text decoded, refusing more than `max` bytes before decoding.
fn hex_bytes(text: &[u8], max: usize, at: At, what: &'static str) -> Result<Vec<u8>, ImaError> {
    if text.len() / 2 > max {
        return Err(ImaError::TooLarge {
            at,
            field: what,
            len: text.len() / 2,
            max,
        });
    }
    decode_hex(text)
        .ok_or_else(|| ImaError::malformed(at, what, format!("{} is not hex", shown(text))))
}

/// A byte's value as a hex digit, or 0xff (decoding pairs with this was
/// several times faster than the `hex` crate's iterator, a third of an ascii
/// log's parse).
fn hex_value(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        b'A'..=b'F' => b - b'A' + 10,
        _ => 0xff,
    }
}

/// Hex text (either case) decoded; None if it is not.
fn decode_hex(text: &[u8]) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() / 2);
    for pair in text.chunks_exact(2) {
        let (hi, lo) = match pair {
            [h, l] => (hex_value(*h), hex_value(*l)),
            _ => return None,
        };
        if (hi | lo) & 0xf0 != 0 {
            return None;
        }
        out.push(hi << 4 | lo);
    }
    Some(out)
}

fn template_hash_alg(hex_len: usize) -> Option<HashAlg> {
    [
        HashAlg::Sha1,
        HashAlg::Sha256,
        HashAlg::Sha384,
        HashAlg::Sha512,
    ]
    .into_iter()
    .find(|a| a.digest_len() * 2 == hex_len)
}

fn parse_line(
    line: &[u8],
    index: usize,
    at: At,
    log_alg: &mut Option<HashAlg>,
    limits: &Limits,
) -> Result<ImaEntry, ImaError> {
    // The kernel prints the PCR as `%2d`: single digits get a leading space.
    let mut line = line;
    while let Some(rest) = line.strip_prefix(b" ") {
        line = rest;
    }
    if line.is_empty() {
        return Err(ImaError::malformed(at, "line", "empty line"));
    }
    let (pcr, rest) = field(line, at, "pcr")?;
    let (hash, rest) = field(rest, at, "template hash")?;
    let (name, rest) = field(rest, at, "template name")?;

    let pcr = std::str::from_utf8(pcr)
        .ok()
        .filter(|p| !p.is_empty() && p.len() <= 9 && p.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|p| p.parse::<u32>().ok())
        .ok_or_else(|| {
            ImaError::malformed(at, "pcr", format!("{} is not a PCR number", shown(pcr)))
        })?;
    let pcr = check_pcr(pcr, at)?;

    let alg = template_hash_alg(hash.len()).ok_or_else(|| {
        ImaError::malformed(
            at,
            "template hash",
            format!(
                "{} hex digits; expected 40, 64, 96 or 128 (SHA-1, SHA-256, SHA-384, SHA-512)",
                hash.len()
            ),
        )
    })?;
    match log_alg {
        Some(first) if *first != alg => {
            return Err(ImaError::malformed(
                at,
                "template hash",
                format!("a {alg} digest, but earlier lines have {first} template hashes"),
            ))
        }
        _ => *log_alg = Some(alg),
    }
    let template_hash = hex_bytes(hash, alg.digest_len(), at, "template hash")?;
    let violation = template_hash.iter().all(|b| *b == 0);

    let name = check_template_name(name, at)?;
    let template = parse_fields(name, rest, violation, at, limits)?;
    if template_data_len(&template).is_some_and(|len| len > limits.max_template_data) {
        return Err(ImaError::TooLarge {
            at,
            field: "template data",
            len: template_data_len(&template).unwrap_or_default(),
            max: limits.max_template_data,
        });
    }
    Ok(ImaEntry {
        index,
        pcr,
        template_hash,
        template,
    })
}

/// `alg:hexdigest`.
fn digest_ng(text: &[u8], violation: bool, at: At) -> Result<(String, Vec<u8>), ImaError> {
    let colon = text.iter().position(|b| *b == b':').ok_or_else(|| {
        ImaError::malformed(at, "d-ng", format!("{} is not alg:hexdigest", shown(text)))
    })?;
    let (alg, hex_part) = text
        .split_at_checked(colon)
        .ok_or_else(|| ImaError::malformed(at, "d-ng", "not alg:hexdigest"))?;
    let hex_part = hex_part.get(1..).unwrap_or_default();
    if alg.len() > MAX_ALG_NAME {
        return Err(ImaError::TooLarge {
            at,
            field: "d-ng algorithm",
            len: alg.len(),
            max: MAX_ALG_NAME,
        });
    }
    let digest = hex_bytes(hex_part, MAX_FILE_DIGEST, at, "d-ng digest")?;
    let alg = check_file_digest(alg, &digest, violation, at)?;
    Ok((alg, digest))
}

fn parse_fields(
    name: String,
    rest: &[u8],
    violation: bool,
    at: At,
    limits: &Limits,
) -> Result<Template, ImaError> {
    Ok(match name.as_str() {
        "ima" => {
            let (digest, path) = field(rest, at, "ima template name (n)")?;
            if digest.len() != 40 {
                return Err(ImaError::malformed(
                    at,
                    "ima template digest (d)",
                    format!("{} hex digits; expected 40 (SHA-1)", digest.len()),
                ));
            }
            let max = MAX_IMA_TEMPLATE_NAME.min(limits.max_name);
            Template::Ima(FileMeasurement {
                hash_alg: "sha1".to_string(),
                digest: hex_bytes(digest, 20, at, "ima template digest (d)")?,
                path: check_name(path, max, "ima template name (n)", at)?,
                signature: None,
            })
        }
        "ima-ng" => {
            // The name is the last field: the rest of the line, spaces and all.
            let (digest, path) = field(rest, at, "n-ng")?;
            let (hash_alg, digest) = digest_ng(digest, violation, at)?;
            Template::ImaNg(FileMeasurement {
                hash_alg,
                digest,
                path: check_name(path, limits.max_name, "n-ng", at)?,
                signature: None,
            })
        }
        "ima-sig" | "ima-buf" => {
            // The last field is hex (maybe empty, after the kernel's space);
            // the name is what lies between.
            let (digest, tail) = field(rest, at, "n-ng")?;
            let (hash_alg, digest) = digest_ng(digest, violation, at)?;
            let (path, last) = last_field(tail);
            let path = check_name(path, limits.max_name, "n-ng", at)?;
            if name == "ima-sig" {
                let sig = hex_bytes(last, limits.max_signature, at, "sig")?;
                Template::ImaSig(FileMeasurement {
                    hash_alg,
                    digest,
                    path,
                    signature: (!sig.is_empty()).then_some(sig),
                })
            } else {
                Template::ImaBuf(BufferMeasurement {
                    hash_alg,
                    digest,
                    name: path,
                    buf: hex_bytes(last, limits.max_template_data, at, "buf")?,
                })
            }
        }
        _ => {
            if rest.len() > limits.max_template_data {
                return Err(ImaError::TooLarge {
                    at,
                    field: "template fields",
                    len: rest.len(),
                    max: limits.max_template_data,
                });
            }
            let fields = std::str::from_utf8(rest)
                .map_err(|_| ImaError::malformed(at, "template fields", "not UTF-8"))?;
            Template::Other(OtherTemplate {
                name,
                fields: OtherFields::Ascii(fields.to_string()),
            })
        }
    })
}

#[cfg(test)]
mod hex_tests {
    #[test]
    fn decodes_hex_of_either_case_and_refuses_anything_else() {
        assert_eq!(super::decode_hex(b"00fFa9"), Some(vec![0x00, 0xff, 0xa9]));
        assert_eq!(super::decode_hex(b""), Some(vec![]));
        for bad in [&b"0"[..], b"0g", b"g0", b" 0", b"0\n", b"\xff\xff", b"+1"] {
            assert_eq!(super::decode_hex(bad), None, "{bad:?}");
        }
        for b in 0..=255u8 {
            for c in [b'0', b'f'] {
                let pair = [b, c];
                assert_eq!(super::decode_hex(&pair), hex::decode(pair).ok(), "{pair:?}");
            }
        }
    }
}
