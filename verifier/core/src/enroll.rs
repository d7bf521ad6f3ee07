//! Enrollment checks: the EK certificate chains to a trusted root, the EK public
//! area the node presents is the key in that certificate and a proper TCG EK,
//! and the AK is a restricted signing key the TPM made. What passes here may be
//! sent a credential (`tpm::credential::make_credential`); the AK is trusted only
//! once the node proves it recovered that credential.

use crate::ek::{
    validate_ek_certificate_with_chain, EkCertificate, EkError, EkPublicKey, TrustAnchors,
};
use crate::reader::WireError;
use crate::tpm::credential::{CredentialKey, EkKey};
use crate::tpm::public::{check_ak_attributes, parse_tpm2b_public, AkError, TpmPublic};

#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error("EK certificate refused: {0}")]
    EkCertificate(#[from] EkError),
    #[error("EK public area is malformed: {0}")]
    EkPublic(WireError),
    #[error("the EK public area is not the key in the EK certificate (a different TPM's EK, or a software key)")]
    EkMismatch,
    #[error("EK is not usable for credential activation: {0}")]
    EkUnsupported(String),
    #[error("AK public area is malformed: {0}")]
    AkPublic(WireError),
    #[error("AK refused: {0}")]
    Ak(#[from] AkError),
}

/// What enrollment established, ready for MakeCredential.
#[derive(Debug)]
pub struct CheckedEnrollment {
    /// None for an EK enrolled without a certificate: one the operator
    /// registered by the SHA-256 of its public area (inventory mode).
    pub ek_certificate: Option<EkCertificate>,
    /// The EK, ready for MakeCredential.
    pub ek_key: CredentialKey,
    pub ak: TpmPublic,
    pub ak_name: Vec<u8>,
}

/// Checks an enrollment request. `now_unix` is the time certificate validity is judged at.
pub fn check_enrollment(
    ek_cert_der: &[u8],
    ek_public: &[u8],
    ak_public: &[u8],
    anchors: &TrustAnchors,
    now_unix: i64,
) -> Result<CheckedEnrollment, EnrollError> {
    check_enrollment_with_chain(ek_cert_der, &[], ek_public, ak_public, anchors, now_unix)
}

/// [`check_enrollment`] with the CA certificates the node read from its
/// TPM's EK chain NV range, as untrusted intermediates.
pub fn check_enrollment_with_chain(
    ek_cert_der: &[u8],
    ek_chain: &[Vec<u8>],
    ek_public: &[u8],
    ak_public: &[u8],
    anchors: &TrustAnchors,
    now_unix: i64,
) -> Result<CheckedEnrollment, EnrollError> {
    let ek_certificate =
        validate_ek_certificate_with_chain(ek_cert_der, ek_chain, anchors, now_unix)?;
    check_keys(Some(ek_certificate), ek_public, ak_public)
}

/// Checks an enrollment request for an EK that has no certificate, which the
/// caller has found registered by the SHA-256 of `ek_public`: the
/// registration vouches for the EK, so only the keys are checked (the EK is a
/// proper TCG EK, the AK a restricted signing key).
pub fn check_registered_enrollment(
    ek_public: &[u8],
    ak_public: &[u8],
) -> Result<CheckedEnrollment, EnrollError> {
    check_keys(None, ek_public, ak_public)
}

/// Whether the DER certificate `der` is for the EK whose TPM2B_PUBLIC is
/// `ek_public` (the same RSA modulus and exponent, or curve and point).
/// Nothing else about the certificate is judged here.
pub fn certificate_matches_ek(der: &[u8], ek_public: &[u8]) -> Result<(), EnrollError> {
    let cert_key = crate::ek::certificate_public_key(der)?;
    let ek = parse_tpm2b_public(ek_public).map_err(EnrollError::EkPublic)?;
    let key =
        CredentialKey::from_public(&ek).map_err(|e| EnrollError::EkUnsupported(e.to_string()))?;
    if same_key(&key.key, &cert_key) {
        Ok(())
    } else {
        Err(EnrollError::EkMismatch)
    }
}

fn check_keys(
    ek_certificate: Option<EkCertificate>,
    ek_public: &[u8],
    ak_public: &[u8],
) -> Result<CheckedEnrollment, EnrollError> {
    let ek = parse_tpm2b_public(ek_public).map_err(EnrollError::EkPublic)?;
    let a = &ek.attributes;
    if !(a.fixed_tpm() && a.fixed_parent() && a.restricted() && a.decrypt()) || a.sign() {
        return Err(EnrollError::EkUnsupported(format!(
            "EK attributes {:#010x} are not those of a restricted storage key (fixedTPM, fixedParent, restricted, decrypt)",
            a.0
        )));
    }
    let ek_key =
        CredentialKey::from_public(&ek).map_err(|e| EnrollError::EkUnsupported(e.to_string()))?;
    if let Some(cert) = &ek_certificate {
        if !same_key(&ek_key.key, &cert.public_key) {
            return Err(EnrollError::EkMismatch);
        }
    }
    let ak = parse_tpm2b_public(ak_public).map_err(EnrollError::AkPublic)?;
    check_ak_attributes(&ak)?;
    let ak_name = ak.name();
    Ok(CheckedEnrollment {
        ek_certificate,
        ek_key,
        ak,
        ak_name,
    })
}

/// Named-curve OIDs of the EK curves.
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";

/// Whether the certificate's key is the TPM's EK (the same curve and point, or modulus and exponent).
fn same_key(tpm: &EkKey, cert: &EkPublicKey) -> bool {
    use rsa::traits::PublicKeyParts;
    match (tpm, cert) {
        (EkKey::Rsa(k), EkPublicKey::Rsa { modulus, exponent }) => {
            strip_zeros(&k.n().to_bytes_be()) == strip_zeros(modulus)
                && k.e() == &rsa::BigUint::from(*exponent)
        }
        (EkKey::P256(k), EkPublicKey::Ecc { curve_oid, point }) => {
            curve_oid == OID_P256
                && p256::PublicKey::from_sec1_bytes(point).ok().as_ref() == Some(k)
        }
        (EkKey::P384(k), EkPublicKey::Ecc { curve_oid, point }) => {
            curve_oid == OID_P384
                && p384::PublicKey::from_sec1_bytes(point).ok().as_ref() == Some(k)
        }
        _ => false,
    }
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|x| **x == 0).count();
    b.get(n..).unwrap_or_default()
}
