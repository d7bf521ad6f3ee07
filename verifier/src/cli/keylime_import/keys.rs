//! `verification-keys`: the keys Keylime checks `ima-sig` file signatures
//! with. The field is JSON held in a string, an `ImaKeyring`
//! (`keylime/ima/file_signatures.py`): `{"pubkeys": [base64 DER
//! SubjectPublicKeyInfo, …], "keyids": [keyidv2, …]}` (and an optional
//! `"meta": {"version": N}`), checked against `IMA_KEYRING_JSON_SCHEMA` by
//! `validate_runtime_policy`. Each key the verifier's IMA keyring takes (RSA
//! 2048-4096, ECDSA P-256/P-384) becomes a PEM public key; the others are
//! left out, each with a warning.

use base64::Engine as _;
use serde_json::Value;

/// The keys, as PEM, and what changes meaning.
#[derive(Debug, Default)]
pub(super) struct Keys {
    pub pems: Vec<String>,
    pub warnings: Vec<String>,
}

const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_EC: &str = "1.2.840.10045.2.1";

/// Converts the `verification-keys` string; the error says why Keylime
/// refuses it (or would fail on it at every attestation).
pub(super) fn convert(text: &str) -> Result<Keys, String> {
    let mut keys = Keys::default();
    if text.is_empty() {
        return Ok(keys);
    }
    let v: Value = serde_json::from_str(text)
        .map_err(|e| format!("not JSON ({e}); Keylime's validate_runtime_policy refuses it"))?;
    let Value::Object(obj) = &v else {
        return Err(format!(
            "the JSON it holds is {}, not an object with `pubkeys` and `keyids` \
             (Keylime's validate_runtime_policy refuses it)",
            match v {
                Value::String(_) => "a string (encoded twice?)",
                Value::Array(_) => "an array",
                _ => "not an object",
            }
        ));
    };
    let list = |key: &str| match obj.get(key) {
        Some(Value::Array(a)) => Ok(a),
        Some(_) => Err(format!("`{key}` is not an array (IMA_KEYRING_JSON_SCHEMA)")),
        None => Err(format!(
            "`{key}` is missing (IMA_KEYRING_JSON_SCHEMA requires keyids and pubkeys)"
        )),
    };
    let pubkeys = list("pubkeys")?;
    let keyids = list("keyids")?
        .iter()
        .enumerate()
        .map(|(i, k)| {
            k.as_u64()
                .or_else(|| {
                    k.as_f64()
                        .filter(|f| f.fract() == 0.0 && *f >= 0.0)
                        .map(|f| f as u64)
                })
                .ok_or_else(|| {
                    format!("`keyids[{i}]` is {k}, not an integer (IMA_KEYRING_JSON_SCHEMA)")
                })
        })
        .collect::<Result<Vec<u64>, String>>()?;
    if let Some(meta) = obj.get("meta") {
        let ok = meta
            .get("version")
            .and_then(Value::as_u64)
            .is_some_and(|v| v >= 1);
        if !ok {
            return Err(
                "`meta` needs an integer `version` of at least 1 (IMA_KEYRING_JSON_SCHEMA)".into(),
            );
        }
    }
    for (i, k) in pubkeys.iter().enumerate() {
        let Value::String(b64) = k else {
            return Err(format!(
                "`pubkeys[{i}]` is not a string (IMA_KEYRING_JSON_SCHEMA)"
            ));
        };
        let compact: String = b64.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(compact.as_bytes())
            .map_err(|e| {
                format!(
                    "`pubkeys[{i}]` is not base64 ({e}): Keylime fails on it at every attestation"
                )
            })?;
        let own_id = match key_id(&der) {
            Ok(id) => id,
            Err(why) => {
                keys.warnings.push(format!(
                    "verification-keys: pubkeys[{i}] is skipped: {why}; Keylime skips it too"
                ));
                continue;
            }
        };
        if let Some(why) = assay_refuses(&der) {
            keys.warnings.push(format!(
                "verification-keys: pubkeys[{i}] is left out: Assay's IMA keyring does not take \
                 it ({why}); Keylime verifies ima-sig signatures with it, so a file only it signs \
                 passes Keylime and must be allowlisted for Assay"
            ));
            continue;
        }
        // Keylime files the key under the given keyid (0 or none: its own).
        let given = keyids.get(i).copied().filter(|id| *id != 0);
        if let (Some(given), Some(own)) = (given, own_id) {
            if u64::from(own) != given {
                keys.warnings.push(format!(
                    "verification-keys: pubkeys[{i}] is listed with keyid {given:#010x}, but its \
                     own keyid is {own:#010x}: Keylime looks it up by the listed one, so \
                     signatures naming the key's own keyid fail there"
                ));
            }
        }
        keys.pems.push(pem(&der));
    }
    Ok(keys)
}

/// Why the verifier's IMA keyring would not take this key, if it would not
/// (it takes RSA 2048-4096 and ECDSA P-256/P-384 keys).
fn assay_refuses(der: &[u8]) -> Option<String> {
    assay_core::ima_signature::Keyring::new()
        .add_public_key_der(der)
        .err()
        .map(|e| e.to_string())
}

/// Checks an RSA or EC SubjectPublicKeyInfo; its keyidv2 (the last four bytes
/// of the SHA-1 of the PKCS#1 key or the uncompressed point), when known.
fn key_id(der: &[u8]) -> Result<Option<u32>, String> {
    use x509_parser::prelude::FromDer as _;
    let (rest, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(der)
        .map_err(|e| format!("not a DER SubjectPublicKeyInfo ({e})"))?;
    if !rest.is_empty() {
        return Err(format!("{} bytes after the key", rest.len()));
    }
    let oid = spki.algorithm.algorithm.to_id_string();
    if oid != OID_RSA && oid != OID_EC {
        return Err(format!("algorithm {oid} is neither RSA nor EC"));
    }
    let key = &spki.subject_public_key.data;
    if oid == OID_EC && key.first() != Some(&0x04) {
        return Ok(None); // a compressed point: Keylime hashes it uncompressed
    }
    let digest = assay_core::tpm::public::HashAlg::Sha1.digest(key);
    Ok(digest
        .get(16..20)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(u32::from_be_bytes))
}

/// A `PUBLIC KEY` PEM block, 64 base64 characters a line.
fn pem(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN PUBLIC KEY-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str("-----END PUBLIC KEY-----\n");
    out
}
