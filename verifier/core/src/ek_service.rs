//! The web services TPM vendors publish EK certificates at, for TPMs that
//! hold none in NV (AMD fTPM, Intel PTT): the path an EK maps to and the
//! certificate in a service's answer. Pure functions; the attestor does the
//! HTTPS request (`assay-attestor`'s `ekfetch`), and the verifier validates
//! what was fetched like any EK certificate.
//!
//! - Intel (`https://ekop.intel.com/ekcertservice/`): base64url (with
//!   padding, percent-escaped) of SHA-256(modulus ‖ 01 00 01) for an RSA EK,
//!   SHA-256(x ‖ y) for ECC; the answer is JSON with the DER certificate,
//!   base64url, under `certificate`.
//! - AMD (`https://ftpm.amd.com/pki/aia/`): hex of the first 16 bytes of
//!   SHA-256(00 00 22 22 ‖ u32be(exponent) ‖ modulus), or of
//!   SHA-256(00 00 44 44 ‖ x ‖ y) for ECC; the answer is the DER certificate.
//!
//! These are the constructions tpm2-tools' tpm2_getekcertificate uses.

use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::tpm::public::{parse_tpm2b_public, PublicKey};

/// Largest answer accepted (an EK certificate is 1–2 KiB; Intel's JSON wraps one).
pub const MAX_ANSWER: usize = 64 * 1024;

/// A vendor certificate service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vendor {
    Intel,
    Amd,
}

impl Vendor {
    /// From TPM_PT_MANUFACTURER (the TCG vendor id, four ASCII bytes).
    pub fn from_manufacturer(id: u32) -> Option<Self> {
        match &id.to_be_bytes() {
            b"INTC" => Some(Vendor::Intel),
            b"AMD\0" | b"AMD " => Some(Vendor::Amd),
            _ => None,
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "intel" => Some(Vendor::Intel),
            "amd" => Some(Vendor::Amd),
            _ => None,
        }
    }

    pub fn default_base_url(self) -> &'static str {
        match self {
            Vendor::Intel => "https://ekop.intel.com/ekcertservice/",
            Vendor::Amd => "https://ftpm.amd.com/pki/aia/",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Vendor::Intel => "Intel",
            Vendor::Amd => "AMD",
        }
    }
}

/// The path under the service's base URL that names this EK (`ek_public`: TPM2B_PUBLIC).
pub fn ek_path(vendor: Vendor, ek_public: &[u8]) -> Result<String, String> {
    let ek = parse_tpm2b_public(ek_public).map_err(|e| format!("EK public area: {e}"))?;
    let mut h = Sha256::new();
    match (&ek.key, vendor) {
        (PublicKey::Rsa { modulus, exponent }, Vendor::Intel) => {
            if *exponent != 0 && *exponent != 65_537 {
                return Err(format!(
                    "Intel's service knows only exponent 65537, not {exponent}"
                ));
            }
            h.update(modulus);
            h.update([0x01, 0x00, 0x01]);
        }
        (PublicKey::Rsa { modulus, exponent }, Vendor::Amd) => {
            let e = if *exponent == 0 { 65_537 } else { *exponent };
            h.update([0x00, 0x00, 0x22, 0x22]);
            h.update(e.to_be_bytes());
            h.update(modulus);
        }
        (PublicKey::Ecc { x, y, .. }, v) => {
            if v == Vendor::Amd {
                h.update([0x00, 0x00, 0x44, 0x44]);
            }
            h.update(x);
            h.update(y);
        }
    }
    let digest = h.finalize();
    Ok(match vendor {
        Vendor::Intel => base64::engine::general_purpose::URL_SAFE
            .encode(digest)
            .replace('=', "%3D"),
        Vendor::Amd => hex::encode(digest.get(..16).unwrap_or_default()),
    })
}

/// The certificate in a service's answer: Intel's JSON, or DER (AMD), or PEM.
pub fn certificate_of_answer(vendor: Vendor, body: &[u8]) -> Result<Vec<u8>, String> {
    if body.len() > MAX_ANSWER {
        return Err(format!(
            "the answer is {} bytes (at most {MAX_ANSWER})",
            body.len()
        ));
    }
    if vendor == Vendor::Intel && body.first() == Some(&b'{') {
        #[derive(serde::Deserialize)]
        struct Answer {
            certificate: String,
        }
        let a: Answer = serde_json::from_slice(body)
            .map_err(|e| format!("not the JSON Intel's service sends: {e}"))?;
        let b64 = a.certificate.replace("%3D", "=").replace("%3d", "=");
        return base64::engine::general_purpose::URL_SAFE
            .decode(b64.trim())
            .or_else(|_| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(b64.trim().trim_end_matches('='))
            })
            .map_err(|e| format!("`certificate` is not base64url: {e}"));
    }
    if body.first() == Some(&0x30) {
        return Ok(body.to_vec());
    }
    if body.starts_with(b"-----BEGIN CERTIFICATE-----") {
        let mut certs = crate::ek::parse_pem_certs(body).map_err(|e| e.to_string())?;
        return Ok(certs.swap_remove(0));
    }
    Err(format!(
        "the answer ({} bytes) is neither a DER nor a PEM certificate",
        body.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vendors_come_from_the_tcg_vendor_id() {
        assert_eq!(
            Vendor::from_manufacturer(u32::from_be_bytes(*b"INTC")),
            Some(Vendor::Intel)
        );
        assert_eq!(
            Vendor::from_manufacturer(u32::from_be_bytes(*b"AMD\0")),
            Some(Vendor::Amd)
        );
        assert_eq!(
            Vendor::from_manufacturer(u32::from_be_bytes(*b"IBM ")),
            None
        );
    }

    #[test]
    fn answers_are_parsed_or_refused() {
        let der = vec![0x30, 0x03, 0x02, 0x01, 0x05];
        let b64 = base64::engine::general_purpose::URL_SAFE.encode(&der);
        let json = format!(
            "{{\"pubhash\":\"x\",\"certificate\":\"{}\"}}",
            b64.replace('=', "%3D")
        );
        assert_eq!(
            certificate_of_answer(Vendor::Intel, json.as_bytes()).unwrap(),
            der
        );
        assert_eq!(certificate_of_answer(Vendor::Amd, &der).unwrap(), der);
        assert!(certificate_of_answer(Vendor::Intel, b"{\"certificate\": 5}").is_err());
        assert!(certificate_of_answer(Vendor::Intel, b"{").is_err());
        assert!(certificate_of_answer(Vendor::Amd, b"<html>not found</html>").is_err());
        assert!(certificate_of_answer(Vendor::Amd, b"").is_err());
        // Oversized, and truncated JSON.
        let mut big = vec![0x30u8, 0x82];
        big.resize(MAX_ANSWER + 1, 0);
        assert!(certificate_of_answer(Vendor::Amd, &big)
            .unwrap_err()
            .contains("at most"));
        assert!(certificate_of_answer(Vendor::Intel, &json.as_bytes()[..json.len() / 2]).is_err());
        assert!(certificate_of_answer(Vendor::Intel, b"{\"certificate\":\"!!!\"}").is_err());
    }

    #[test]
    fn paths_follow_the_vendors_constructions() {
        use crate::verify::testutil::{rsa_ek_public_bytes, rsa_key};
        let key = rsa_key(2048, 3).to_public_key();
        let ek = rsa_ek_public_bytes(&key);
        let n = rsa::traits::PublicKeyParts::n(&key).to_bytes_be();
        // Intel: base64url of SHA-256(n || 01 00 01), '=' escaped.
        let mut h = Sha256::new();
        h.update(&n);
        h.update([1, 0, 1]);
        let want = base64::engine::general_purpose::URL_SAFE.encode(h.finalize());
        assert_eq!(
            ek_path(Vendor::Intel, &ek).unwrap(),
            want.replace('=', "%3D")
        );
        assert!(ek_path(Vendor::Intel, &ek).unwrap().ends_with("%3D"));
        // AMD: hex of the first 16 bytes of SHA-256(00 00 22 22 || 00 01 00 01 || n).
        let mut h = Sha256::new();
        h.update([0, 0, 0x22, 0x22, 0, 1, 0, 1]);
        h.update(&n);
        assert_eq!(
            ek_path(Vendor::Amd, &ek).unwrap(),
            hex::encode(&h.finalize()[..16])
        );
        // A malformed public area is an error.
        assert!(ek_path(Vendor::Intel, &ek[..10]).is_err());
        assert!(ek_path(Vendor::Amd, &[]).is_err());
    }
}
