//! EK certificate validation: the first link of the chain of trust.
//!
//! A TPM manufacturer certifies each TPM's endorsement key (EK) with an X.509
//! certificate (TCG EK Credential Profile 2.x) stored in the TPM's NV index.
//! The verifier trusts a TPM only if that certificate chains, through
//! configured intermediates, to a configured root, and every certificate on
//! the path is within its validity period at the time given by the caller.
//!
//! What is checked, and why:
//! - each signature on the path (`BadSignature`: a forged or altered certificate);
//! - issuer/subject linkage ending at a configured root (`UntrustedIssuer`: a
//!   self-made CA, e.g. a software TPM's local CA nobody configured);
//! - validity of every certificate on the path (`Expired` / `NotYetValid`);
//! - issuing certificates are CAs allowed to sign certificates, within their
//!   path length (`NotACa`: a leaf certificate used to mint more EK certificates);
//! - the EK certificate itself is an end-entity certificate whose key usage, if
//!   present, allows key encipherment (RSA) or key agreement (ECC)
//!   (`WrongKeyUsage`);
//! - unknown *critical* extensions are refused (RFC 5280 §4.2) (`Malformed`);
//!   a critical subjectAltName naming the TPM (directoryName with the TCG
//!   manufacturer, model and version attributes, as Google's vTPM EKs carry)
//!   is understood and accepted, and an empty subject is accepted (the EK
//!   Credential Profile allows it: the identity is in the subjectAltName) —
//!   both tested on real certificates in `tests/tests/ek_certs.rs`;
//! - a serial whose DER INTEGER is negative or zero (RFC 5280 §4.1.2.2 asks
//!   for a positive one; some vendors issued such EK certificates) is
//!   accepted: the serial is an identifier here, kept as its DER bytes
//!   (`serial_hex`), and CRLs match it byte for byte (tested with an openssl-made
//!   certificate in `tests/tests/ek_certs.rs`);
//! - paths are at most [`MAX_CHAIN_DEPTH`] certificates above the EK
//!   (`ChainTooLong`), and inputs are size-bounded.
//!
//! - revocation: a certificate on the path whose issuer has a configured CRL
//!   is refused when its serial is listed (`Revoked`), and refused too when
//!   that CRL is past its nextUpdate (`CrlExpired`: fail closed, an operator
//!   who configures a CRL must keep it fresh). CRLs are accepted only signed by
//!   a configured CA allowed to sign CRLs ([`TrustAnchors::add_crl`]);
//!   issuers without a configured CRL are not checked.

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;
use x509_parser::pem::Pem;
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;

/// Largest certificate accepted (EK certificates are 1–2 KiB; NV indices hold at most a few KiB).
pub const MAX_CERT_LEN: usize = 16 * 1024;
/// Certificates above the EK certificate on a path: intermediates plus the root.
pub const MAX_CHAIN_DEPTH: usize = 6;
/// Largest PEM file of trust anchors accepted.
pub const MAX_PEM_LEN: usize = 4 * 1024 * 1024;
/// Largest CRL accepted (DER, or PEM before decoding).
pub const MAX_CRL_LEN: usize = 16 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EkError {
    #[error("malformed certificate: {0}")]
    Malformed(String),
    #[error("issuer `{issuer}` is not a configured EK root or intermediate CA")]
    UntrustedIssuer { issuer: String },
    #[error("certificate `{subject}` expired at unix time {not_after}")]
    Expired { subject: String, not_after: i64 },
    #[error("certificate `{subject}` is not valid before unix time {not_before}")]
    NotYetValid { subject: String, not_before: i64 },
    #[error("signature on certificate `{subject}` does not verify with the key of `{issuer}`")]
    BadSignature { subject: String, issuer: String },
    #[error("EK certificate key usage does not permit {0}")]
    WrongKeyUsage(String),
    #[error("certificate `{0}` is not a CA permitted to issue certificates (basicConstraints / keyUsage / pathLen)")]
    NotACa(String),
    #[error("certificate chain is longer than {MAX_CHAIN_DEPTH} certificates, or loops")]
    ChainTooLong,
    #[error("certificate `{subject}` (serial {serial}) is revoked by the CRL of `{issuer}`")]
    Revoked {
        subject: String,
        serial: String,
        issuer: String,
    },
    #[error("the CRL of `{issuer}` expired at unix time {next_update} (its nextUpdate): certificates it covers are refused until a fresh CRL is configured")]
    CrlExpired { issuer: String, next_update: i64 },
    #[error("CRL refused: {0}")]
    BadCrl(String),
}

/// The public key in an EK certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EkPublicKey {
    /// Big-endian modulus without leading zeros, and public exponent.
    Rsa { modulus: Vec<u8>, exponent: u32 },
    /// Named-curve OID (dotted) and the SEC1 point.
    Ecc { curve_oid: String, point: Vec<u8> },
}

/// A validated EK certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EkCertificate {
    pub subject: String,
    pub issuer: String,
    pub serial_hex: String,
    pub not_after_unix: i64,
    pub public_key: EkPublicKey,
    /// Subjects of the issuing certificates, from the EK's issuer up to the root.
    pub chain: Vec<String>,
}

/// Configured EK roots and intermediates (DER). Roots end a path; intermediates
/// may only appear on a path that ends at a root.
#[derive(Debug, Clone, Default)]
pub struct TrustAnchors {
    roots: Vec<Vec<u8>>,
    intermediates: Vec<Vec<u8>>,
    /// Revoked serials by the issuer's DER-encoded name, from verified CRLs.
    crls: std::collections::HashMap<Vec<u8>, IssuerCrl>,
}

/// One issuer's CRL, reduced to what the check needs.
#[derive(Debug, Clone)]
struct IssuerCrl {
    issuer: String,
    this_update: i64,
    next_update: Option<i64>,
    /// Serial numbers (big-endian magnitude, no leading zeros).
    serials: std::collections::HashSet<Vec<u8>>,
}

/// What [`TrustAnchors::add_crl`] loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlInfo {
    pub issuer: String,
    pub revoked: usize,
    pub this_update: i64,
    pub next_update: Option<i64>,
}

fn serial_key(raw: &[u8]) -> Vec<u8> {
    let n = raw.iter().take_while(|b| **b == 0).count();
    raw.get(n..).unwrap_or_default().to_vec()
}

impl TrustAnchors {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds every certificate in a PEM file as a root. Returns how many were added.
    pub fn add_roots_pem(&mut self, pem: &[u8]) -> Result<usize, EkError> {
        let certs = parse_pem_certs(pem)?;
        let n = certs.len();
        self.roots.extend(certs);
        Ok(n)
    }

    /// Adds every certificate in a PEM file as an intermediate. Returns how many were added.
    pub fn add_intermediates_pem(&mut self, pem: &[u8]) -> Result<usize, EkError> {
        let certs = parse_pem_certs(pem)?;
        let n = certs.len();
        self.intermediates.extend(certs);
        Ok(n)
    }

    /// Adds one DER root.
    pub fn add_root_der(&mut self, der: &[u8]) -> Result<(), EkError> {
        parse_der(der)?;
        self.roots.push(der.to_vec());
        Ok(())
    }

    /// Adds one DER intermediate.
    pub fn add_intermediate_der(&mut self, der: &[u8]) -> Result<(), EkError> {
        parse_der(der)?;
        self.intermediates.push(der.to_vec());
        Ok(())
    }

    /// Adds a CRL (DER or PEM). It must be signed by a configured root or
    /// intermediate whose key usage, if given, allows CRL signing; of two
    /// CRLs of one issuer the newer (thisUpdate) is kept. Add CRLs after the
    /// CA certificates.
    pub fn add_crl(&mut self, bytes: &[u8]) -> Result<CrlInfo, EkError> {
        use x509_parser::revocation_list::CertificateRevocationList;
        if bytes.len() > MAX_CRL_LEN {
            return Err(EkError::BadCrl(format!(
                "{} bytes (limit {MAX_CRL_LEN})",
                bytes.len()
            )));
        }
        let der = if bytes.starts_with(b"-----BEGIN") {
            let block = Pem::iter_from_buffer(bytes)
                .next()
                .ok_or_else(|| EkError::BadCrl("empty PEM".into()))?
                .map_err(|e| EkError::BadCrl(format!("PEM: {e}")))?;
            if block.label != "X509 CRL" {
                return Err(EkError::BadCrl(format!(
                    "PEM block `{}`, expected `X509 CRL`",
                    block.label
                )));
            }
            block.contents
        } else {
            bytes.to_vec()
        };
        let (rest, crl) = CertificateRevocationList::from_der(&der)
            .map_err(|e| EkError::BadCrl(e.to_string()))?;
        if !rest.is_empty() {
            return Err(EkError::BadCrl(format!(
                "{} bytes after the CRL",
                rest.len()
            )));
        }
        refuse_unknown_critical(crl.extensions(), EkError::BadCrl)?;
        let issuer = crl.issuer().to_string();
        let issuer_raw = crl.issuer().as_raw();
        let mut found_issuer = false;
        let mut signer = None;
        for d in self.roots.iter().chain(&self.intermediates) {
            let Ok(ca) = parse_der(d) else { continue };
            if ca.subject().as_raw() != issuer_raw {
                continue;
            }
            found_issuer = true;
            let may_sign_crls = ca
                .key_usage()
                .map_err(|e| EkError::Malformed(e.to_string()))?
                .is_none_or(|ku| ku.value.crl_sign());
            if may_sign_crls && crl.verify_signature(ca.public_key()).is_ok() {
                signer = Some(());
                break;
            }
        }
        if signer.is_none() {
            return Err(EkError::BadCrl(if found_issuer {
                format!("its signature does not verify with a configured `{issuer}` allowed to sign CRLs (keyUsage cRLSign)")
            } else {
                format!("its issuer `{issuer}` is not a configured EK root or intermediate CA")
            }));
        }
        let serials: std::collections::HashSet<Vec<u8>> = crl
            .iter_revoked_certificates()
            .map(|r| serial_key(r.raw_serial()))
            .collect();
        let entry = IssuerCrl {
            issuer: issuer.clone(),
            this_update: crl.last_update().timestamp(),
            next_update: crl.next_update().map(|t| t.timestamp()),
            serials,
        };
        let info = CrlInfo {
            issuer,
            revoked: entry.serials.len(),
            this_update: entry.this_update,
            next_update: entry.next_update,
        };
        let keep = self
            .crls
            .get(issuer_raw)
            .is_none_or(|old| old.this_update <= entry.this_update);
        if keep {
            self.crls.insert(issuer_raw.to_vec(), entry);
        }
        Ok(info)
    }

    pub fn crls_len(&self) -> usize {
        self.crls.len()
    }

    /// Whether `cert` is revoked by its issuer's CRL, if one is configured.
    fn check_revocation(&self, cert: &X509Certificate<'_>, now_unix: i64) -> Result<(), EkError> {
        let Some(crl) = self.crls.get(cert.issuer().as_raw()) else {
            return Ok(());
        };
        if let Some(next) = crl.next_update.filter(|n| *n < now_unix) {
            return Err(EkError::CrlExpired {
                issuer: crl.issuer.clone(),
                next_update: next,
            });
        }
        if crl.serials.contains(&serial_key(cert.raw_serial())) {
            return Err(EkError::Revoked {
                subject: cert.subject().to_string(),
                serial: cert.raw_serial_as_string().replace(':', ""),
                issuer: crl.issuer.clone(),
            });
        }
        Ok(())
    }

    pub fn roots_len(&self) -> usize {
        self.roots.len()
    }

    pub fn intermediates_len(&self) -> usize {
        self.intermediates.len()
    }
}

/// The DER of every CERTIFICATE block in `pem` (at least one, each parsed).
pub(crate) fn parse_pem_certs(pem: &[u8]) -> Result<Vec<Vec<u8>>, EkError> {
    if pem.len() > MAX_PEM_LEN {
        return Err(EkError::Malformed(format!(
            "PEM file larger than {MAX_PEM_LEN} bytes"
        )));
    }
    let mut out = Vec::new();
    for block in Pem::iter_from_buffer(pem) {
        let block = block.map_err(|e| EkError::Malformed(format!("PEM: {e}")))?;
        if block.label != "CERTIFICATE" {
            continue;
        }
        parse_der(&block.contents)?;
        out.push(block.contents);
    }
    if out.is_empty() {
        return Err(EkError::Malformed(
            "no CERTIFICATE block in PEM input".into(),
        ));
    }
    Ok(out)
}

/// RFC 5280 §4.2: an extension marked critical that is not understood
/// refuses the whole object.
fn refuse_unknown_critical(
    exts: &[x509_parser::extensions::X509Extension<'_>],
    err: fn(String) -> EkError,
) -> Result<(), EkError> {
    match exts.iter().find(|e| {
        e.critical
            && matches!(
                e.parsed_extension(),
                ParsedExtension::UnsupportedExtension { .. }
            )
    }) {
        Some(e) => Err(err(format!("unsupported critical extension {}", e.oid))),
        None => Ok(()),
    }
}

fn parse_der(der: &[u8]) -> Result<X509Certificate<'_>, EkError> {
    if der.len() > MAX_CERT_LEN {
        return Err(EkError::Malformed(format!(
            "certificate is {} bytes (limit {MAX_CERT_LEN})",
            der.len()
        )));
    }
    let (rest, cert) =
        X509Certificate::from_der(der).map_err(|e| EkError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(EkError::Malformed(format!(
            "{} bytes after the certificate",
            rest.len()
        )));
    }
    refuse_unknown_critical(cert.extensions(), EkError::Malformed)?;
    for ext in cert.extensions() {
        if let ParsedExtension::ParseError { error } = ext.parsed_extension() {
            return Err(EkError::Malformed(format!(
                "extension {}: {error}",
                ext.oid
            )));
        }
    }
    Ok(cert)
}

fn check_time(cert: &X509Certificate<'_>, now_unix: i64) -> Result<(), EkError> {
    let v = cert.validity();
    if now_unix < v.not_before.timestamp() {
        return Err(EkError::NotYetValid {
            subject: cert.subject().to_string(),
            not_before: v.not_before.timestamp(),
        });
    }
    if now_unix > v.not_after.timestamp() {
        return Err(EkError::Expired {
            subject: cert.subject().to_string(),
            not_after: v.not_after.timestamp(),
        });
    }
    Ok(())
}

/// `issuer` may sign certificates, with `below` CA certificates between it and the EK.
fn check_ca(issuer: &X509Certificate<'_>, below: u32, is_root: bool) -> Result<(), EkError> {
    let not_ca = || EkError::NotACa(issuer.subject().to_string());
    let bc = issuer
        .basic_constraints()
        .map_err(|e| EkError::Malformed(e.to_string()))?;
    match bc {
        Some(bc) => {
            if !bc.value.ca {
                return Err(not_ca());
            }
            if let Some(max) = bc.value.path_len_constraint {
                if below > max {
                    return Err(not_ca());
                }
            }
        }
        // A configured root without basicConstraints (X.509 v1) is accepted because the
        // operator placed it there; an intermediate must say it is a CA.
        None if is_root => {}
        None => return Err(not_ca()),
    }
    if let Some(ku) = issuer
        .key_usage()
        .map_err(|e| EkError::Malformed(e.to_string()))?
    {
        if !ku.value.key_cert_sign() {
            return Err(not_ca());
        }
    }
    Ok(())
}

/// The subject public key of a DER certificate, without judging the
/// certificate otherwise (for a node checking that a certificate it fetched
/// is for its own EK; the verifier validates it in full).
pub fn certificate_public_key(der: &[u8]) -> Result<EkPublicKey, EkError> {
    ek_public_key(&parse_der(der)?)
}

fn ek_public_key(cert: &X509Certificate<'_>) -> Result<EkPublicKey, EkError> {
    let spki = cert.public_key();
    match spki
        .parsed()
        .map_err(|e| EkError::Malformed(format!("EK public key: {e}")))?
    {
        PublicKey::RSA(rsa) => {
            let modulus = strip_leading_zeros(rsa.modulus).to_vec();
            let e = strip_leading_zeros(rsa.exponent);
            if e.is_empty() || e.len() > 4 || modulus.is_empty() {
                return Err(EkError::Malformed(
                    "EK RSA key has an invalid modulus or exponent".into(),
                ));
            }
            let exponent = e.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b));
            Ok(EkPublicKey::Rsa { modulus, exponent })
        }
        PublicKey::EC(point) => {
            let curve_oid = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string())
                .ok_or_else(|| EkError::Malformed("EK ECC key without a named curve".into()))?;
            Ok(EkPublicKey::Ecc {
                curve_oid,
                point: point.data().to_vec(),
            })
        }
        _ => Err(EkError::Malformed(format!(
            "EK key algorithm {} is neither RSA nor ECC",
            spki.algorithm.algorithm
        ))),
    }
}

fn strip_leading_zeros(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|x| **x == 0).count();
    b.get(n..).unwrap_or_default()
}

/// Validates an EK certificate (DER) against `anchors` at time `now_unix`.
pub fn validate_ek_certificate(
    der: &[u8],
    anchors: &TrustAnchors,
    now_unix: i64,
) -> Result<EkCertificate, EkError> {
    validate_ek_certificate_with_chain(der, &[], anchors, now_unix)
}

/// Most untrusted chain certificates a node may send.
pub const MAX_SENT_CHAIN: usize = 8;

/// [`validate_ek_certificate`], with CA certificates the node sent (read from
/// its TPM's EK chain NV range) as extra intermediates. They are untrusted:
/// like configured intermediates they count only on a path that ends at a
/// configured root (a root among them is just another intermediate), and each
/// is held to the same signature, validity, CA and revocation checks.
pub fn validate_ek_certificate_with_chain(
    der: &[u8],
    sent_chain: &[Vec<u8>],
    anchors: &TrustAnchors,
    now_unix: i64,
) -> Result<EkCertificate, EkError> {
    if sent_chain.len() > MAX_SENT_CHAIN {
        return Err(EkError::Malformed(format!(
            "{} chain certificates sent; at most {MAX_SENT_CHAIN}",
            sent_chain.len()
        )));
    }
    let leaf = parse_der(der)?;
    check_time(&leaf, now_unix)?;
    if leaf
        .basic_constraints()
        .map_err(|e| EkError::Malformed(e.to_string()))?
        .is_some_and(|bc| bc.value.ca)
    {
        return Err(EkError::WrongKeyUsage(
            "use as an EK: it is a CA certificate".into(),
        ));
    }
    let public_key = ek_public_key(&leaf)?;
    if let Some(ku) = leaf
        .key_usage()
        .map_err(|e| EkError::Malformed(e.to_string()))?
    {
        let ok = match public_key {
            EkPublicKey::Rsa { .. } => ku.value.key_encipherment(),
            EkPublicKey::Ecc { .. } => ku.value.key_agreement(),
        };
        if !ok {
            return Err(EkError::WrongKeyUsage(format!(
                "key encipherment / agreement (it allows: {})",
                ku.value
            )));
        }
    }

    let roots: Vec<X509Certificate<'_>> = anchors
        .roots
        .iter()
        .filter_map(|d| parse_der(d).ok())
        .collect();
    let mut inters: Vec<X509Certificate<'_>> = anchors
        .intermediates
        .iter()
        .filter_map(|d| parse_der(d).ok())
        .collect();
    for (i, d) in sent_chain.iter().enumerate() {
        let c = parse_der(d)
            .map_err(|e| EkError::Malformed(format!("chain certificate {}: {e}", i + 1)))?;
        inters.push(c);
    }

    let mut chain = Vec::new();
    let mut current: &X509Certificate<'_> = &leaf;
    let mut used: Vec<*const X509Certificate<'_>> = Vec::new();
    for depth in 0..MAX_CHAIN_DEPTH {
        let wanted = current.issuer();
        let mut bad_sig = false;
        // Roots first: the shortest path wins.
        let found = roots
            .iter()
            .map(|c| (c, true))
            .chain(inters.iter().map(|c| (c, false)))
            .filter(|(c, _)| c.subject() == wanted && !used.contains(&(*c as *const _)))
            .find(|(c, _)| {
                let ok = current.verify_signature(Some(c.public_key())).is_ok();
                bad_sig |= !ok;
                ok
            });
        let Some((issuer, is_root)) = found else {
            if bad_sig {
                return Err(EkError::BadSignature {
                    subject: current.subject().to_string(),
                    issuer: wanted.to_string(),
                });
            }
            return Err(EkError::UntrustedIssuer {
                issuer: wanted.to_string(),
            });
        };
        check_time(issuer, now_unix)?;
        check_ca(issuer, depth as u32, is_root)?;
        anchors.check_revocation(current, now_unix)?;
        chain.push(issuer.subject().to_string());
        if is_root {
            return Ok(EkCertificate {
                subject: leaf.subject().to_string(),
                issuer: leaf.issuer().to_string(),
                serial_hex: leaf.raw_serial_as_string().replace(':', ""),
                not_after_unix: leaf.validity().not_after.timestamp(),
                public_key,
                chain,
            });
        }
        used.push(issuer as *const _);
        current = issuer;
    }
    Err(EkError::ChainTooLong)
}

/// Whether an EK certificate accepted before (at enrollment) has been
/// revoked since: each certificate from the EK up through the configured
/// intermediates is checked against its issuer's CRL, as
/// [`validate_ek_certificate`] does, without judging validity periods again
/// (an enrolled node is not refused because its EK certificate aged).
pub fn check_ek_revocation(
    der: &[u8],
    sent_chain: &[Vec<u8>],
    anchors: &TrustAnchors,
    now_unix: i64,
) -> Result<(), EkError> {
    if anchors.crls.is_empty() {
        return Ok(());
    }
    let leaf = parse_der(der)?;
    let inters: Vec<X509Certificate<'_>> = anchors
        .intermediates
        .iter()
        .chain(sent_chain)
        .filter_map(|d| parse_der(d).ok())
        .collect();
    let mut current = &leaf;
    for _ in 0..=MAX_CHAIN_DEPTH {
        anchors.check_revocation(current, now_unix)?;
        let next = inters.iter().find(|c| {
            c.subject() == current.issuer()
                && !std::ptr::eq(*c, current)
                && current.verify_signature(Some(c.public_key())).is_ok()
        });
        match next {
            Some(n) => current = n,
            None => return Ok(()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::indexing_slicing,
        clippy::expect_used,
        clippy::panic
    )]
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair,
        KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PKCS_RSA_SHA256,
    };

    // 2026-11-22T00:00:00Z; the test certificates are valid 2025..2035.
    const NOW: i64 = 1_795_305_600;

    struct Ca {
        params: CertificateParams,
        key: KeyPair,
        cert: rcgen::Certificate,
    }

    fn params(cn: &str, ca: IsCa) -> CertificateParams {
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        p.distinguished_name = dn;
        p.not_before = rcgen::date_time_ymd(2025, 1, 1);
        p.not_after = rcgen::date_time_ymd(2035, 1, 1);
        if matches!(ca, IsCa::Ca(_)) {
            p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        }
        p.is_ca = ca;
        p
    }

    fn root(cn: &str) -> Ca {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let params = params(cn, IsCa::Ca(BasicConstraints::Unconstrained));
        let cert = params.clone().self_signed(&key).unwrap();
        Ca { params, key, cert }
    }

    fn sub(cn: &str, parent: &Ca, ca: IsCa) -> Ca {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let params = self::params(cn, ca);
        let cert = params
            .clone()
            .signed_by(&key, &parent.cert, &parent.key)
            .unwrap();
        Ca { params, key, cert }
    }

    /// An RSA EK certificate as TPM vendors issue them: end entity, keyEncipherment.
    fn ek_params() -> CertificateParams {
        let mut p = params("tpm-ek", IsCa::ExplicitNoCa);
        p.key_usages = vec![KeyUsagePurpose::KeyEncipherment];
        p
    }

    fn rsa_key() -> KeyPair {
        // rcgen cannot generate RSA keys; use the rsa crate and import as PKCS#8.
        use rand::SeedableRng;
        use rsa::pkcs8::EncodePrivateKey;
        let k = rsa::RsaPrivateKey::new(&mut rand::rngs::StdRng::seed_from_u64(1), 2048).unwrap();
        let der = k.to_pkcs8_der().unwrap();
        KeyPair::from_pkcs8_der_and_sign_algo(&der.as_bytes().into(), &PKCS_RSA_SHA256).unwrap()
    }

    fn ek_cert(params: CertificateParams, issuer: &Ca) -> Vec<u8> {
        params
            .signed_by(&rsa_key(), &issuer.cert, &issuer.key)
            .unwrap()
            .der()
            .to_vec()
    }

    fn anchors(roots: &[&Ca], inters: &[&Ca]) -> TrustAnchors {
        let mut a = TrustAnchors::new();
        for r in roots {
            a.add_roots_pem(r.cert.pem().as_bytes()).unwrap();
        }
        for i in inters {
            a.add_intermediates_pem(i.cert.pem().as_bytes()).unwrap();
        }
        a
    }

    #[test]
    fn accepts_ek_under_intermediate_under_root() {
        let r = root("Vendor Root");
        let i = sub(
            "Vendor EK CA",
            &r,
            IsCa::Ca(BasicConstraints::Constrained(0)),
        );
        let ek = ek_cert(ek_params(), &i);
        let c = validate_ek_certificate(&ek, &anchors(&[&r], &[&i]), NOW).unwrap();
        assert_eq!(c.subject, "CN=tpm-ek");
        assert_eq!(c.issuer, "CN=Vendor EK CA");
        assert_eq!(
            c.chain,
            vec!["CN=Vendor EK CA".to_string(), "CN=Vendor Root".to_string()]
        );
        match c.public_key {
            EkPublicKey::Rsa { modulus, exponent } => {
                assert_eq!(modulus.len(), 256);
                assert_eq!(exponent, 65537);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn refuses_unconfigured_issuer() {
        // Attack: a software TPM with its own local CA tries to enroll.
        let r = root("Vendor Root");
        let rogue = root("Rogue CA");
        let ek = ek_cert(ek_params(), &rogue);
        let e = validate_ek_certificate(&ek, &anchors(&[&r], &[]), NOW).unwrap_err();
        assert_eq!(
            e,
            EkError::UntrustedIssuer {
                issuer: "CN=Rogue CA".into()
            }
        );
    }

    #[test]
    fn refuses_intermediate_without_root() {
        // Intermediates alone are not trust anchors.
        let r = root("Vendor Root");
        let i = sub(
            "Vendor EK CA",
            &r,
            IsCa::Ca(BasicConstraints::Unconstrained),
        );
        let ek = ek_cert(ek_params(), &i);
        let e = validate_ek_certificate(&ek, &anchors(&[], &[&i]), NOW).unwrap_err();
        assert_eq!(
            e,
            EkError::UntrustedIssuer {
                issuer: "CN=Vendor Root".into()
            }
        );
    }

    #[test]
    fn refuses_same_name_different_key() {
        // Attack: a CA impersonating the vendor root's name with its own key.
        let r = root("Vendor Root");
        let fake = root("Vendor Root");
        let ek = ek_cert(ek_params(), &fake);
        let e = validate_ek_certificate(&ek, &anchors(&[&r], &[]), NOW).unwrap_err();
        assert!(matches!(e, EkError::BadSignature { .. }), "{e:?}");
    }

    #[test]
    fn refuses_tampered_certificate() {
        let r = root("Vendor Root");
        let mut ek = ek_cert(ek_params(), &r);
        // Flip a byte inside the RSA modulus (swap in another key): the signature no longer covers it.
        let pos = ek.len() / 2;
        ek[pos] ^= 0x01;
        let e = validate_ek_certificate(&ek, &anchors(&[&r], &[]), NOW).unwrap_err();
        assert!(
            matches!(e, EkError::BadSignature { .. } | EkError::Malformed(_)),
            "{e:?}"
        );
    }

    #[test]
    fn refuses_expired_and_not_yet_valid() {
        let r = root("Vendor Root");
        let ek = ek_cert(ek_params(), &r);
        let a = anchors(&[&r], &[]);
        assert!(matches!(
            validate_ek_certificate(&ek, &a, 2_200_000_000),
            Err(EkError::Expired { .. })
        ));
        assert!(matches!(
            validate_ek_certificate(&ek, &a, 1_600_000_000),
            Err(EkError::NotYetValid { .. })
        ));
    }

    #[test]
    fn refuses_expired_intermediate() {
        let r = root("Vendor Root");
        let mut p = params("Old EK CA", IsCa::Ca(BasicConstraints::Unconstrained));
        p.not_after = rcgen::date_time_ymd(2026, 1, 1);
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = p.clone().signed_by(&key, &r.cert, &r.key).unwrap();
        let i = Ca {
            params: p,
            key,
            cert,
        };
        let ek = ek_cert(ek_params(), &i);
        let e = validate_ek_certificate(&ek, &anchors(&[&r], &[&i]), NOW).unwrap_err();
        assert!(
            matches!(e, EkError::Expired { ref subject, .. } if subject == "CN=Old EK CA"),
            "{e:?}"
        );
    }

    #[test]
    fn refuses_leaf_used_as_issuer() {
        // Attack: an end-entity certificate (here another EK-like cert) signs an EK certificate.
        let r = root("Vendor Root");
        let leaf = sub("Not A CA", &r, IsCa::ExplicitNoCa);
        let ek = ek_cert(ek_params(), &leaf);
        let e = validate_ek_certificate(&ek, &anchors(&[&r], &[&leaf]), NOW).unwrap_err();
        assert_eq!(e, EkError::NotACa("CN=Not A CA".into()));
    }

    #[test]
    fn refuses_path_length_violation() {
        let r = root("Vendor Root");
        let i1 = sub("CA level 1", &r, IsCa::Ca(BasicConstraints::Constrained(0)));
        let i2 = sub(
            "CA level 2",
            &i1,
            IsCa::Ca(BasicConstraints::Constrained(0)),
        );
        let ek = ek_cert(ek_params(), &i2);
        let e = validate_ek_certificate(&ek, &anchors(&[&r], &[&i1, &i2]), NOW).unwrap_err();
        assert_eq!(e, EkError::NotACa("CN=CA level 1".into()));
    }

    #[test]
    fn refuses_ca_certificate_as_ek_and_wrong_key_usage() {
        let r = root("Vendor Root");
        let mut p = ek_params();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let e = validate_ek_certificate(&ek_cert(p, &r), &anchors(&[&r], &[]), NOW).unwrap_err();
        assert!(matches!(e, EkError::WrongKeyUsage(_)), "{e:?}");

        let mut p = ek_params();
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let e = validate_ek_certificate(&ek_cert(p, &r), &anchors(&[&r], &[]), NOW).unwrap_err();
        assert!(matches!(e, EkError::WrongKeyUsage(_)), "{e:?}");
    }

    #[test]
    fn refuses_too_long_chain() {
        let r = root("R");
        let mut cas = vec![sub("C0", &r, IsCa::Ca(BasicConstraints::Unconstrained))];
        for n in 1..=MAX_CHAIN_DEPTH {
            let c = sub(
                &format!("C{n}"),
                cas.last().unwrap(),
                IsCa::Ca(BasicConstraints::Unconstrained),
            );
            cas.push(c);
        }
        let ek = ek_cert(ek_params(), cas.last().unwrap());
        let refs: Vec<&Ca> = cas.iter().collect();
        let e = validate_ek_certificate(&ek, &anchors(&[&r], &refs), NOW).unwrap_err();
        assert_eq!(e, EkError::ChainTooLong);
    }

    #[test]
    fn refuses_truncated_oversized_and_garbage() {
        let r = root("Vendor Root");
        let ek = ek_cert(ek_params(), &r);
        let a = anchors(&[&r], &[]);
        for n in [0, 1, 10, ek.len() / 2, ek.len() - 1] {
            assert!(
                matches!(
                    validate_ek_certificate(&ek[..n], &a, NOW),
                    Err(EkError::Malformed(_))
                ),
                "len {n}"
            );
        }
        let mut trailing = ek.clone();
        trailing.push(0);
        assert!(matches!(
            validate_ek_certificate(&trailing, &a, NOW),
            Err(EkError::Malformed(_))
        ));
        let big = vec![0x30; MAX_CERT_LEN + 1];
        assert!(matches!(
            validate_ek_certificate(&big, &a, NOW),
            Err(EkError::Malformed(_))
        ));
        assert!(matches!(
            validate_ek_certificate(b"not a certificate", &a, NOW),
            Err(EkError::Malformed(_))
        ));
    }

    #[test]
    fn pem_loading_errors_are_clear() {
        let mut a = TrustAnchors::new();
        assert!(matches!(
            a.add_roots_pem(b"nothing here"),
            Err(EkError::Malformed(_))
        ));
        assert!(a
            .add_roots_pem(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
            .is_err());
        let r = root("R1");
        let r2 = root("R2");
        let both = format!("{}{}", r.cert.pem(), r2.cert.pem());
        assert_eq!(a.add_roots_pem(both.as_bytes()).unwrap(), 2);
        assert_eq!(a.roots_len(), 2);
        let _ = (&r.params, &r.key);
    }

    fn crl(issuer: &Ca, revoked: &[&[u8]], this: (i32, u8, u8), next: (i32, u8, u8)) -> Vec<u8> {
        let serials = revoked
            .iter()
            .map(|der| {
                let (_, c) = X509Certificate::from_der(der).unwrap();
                rcgen::RevokedCertParams {
                    serial_number: rcgen::SerialNumber::from_slice(c.raw_serial()),
                    revocation_time: rcgen::date_time_ymd(2026, 1, 1),
                    reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                    invalidity_date: None,
                }
            })
            .collect();
        rcgen::CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(this.0, this.1, this.2),
            next_update: rcgen::date_time_ymd(next.0, next.1, next.2),
            crl_number: rcgen::SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: serials,
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        }
        .signed_by(&issuer.cert, &issuer.key)
        .unwrap()
        .der()
        .to_vec()
    }

    const FRESH: ((i32, u8, u8), (i32, u8, u8)) = ((2026, 11, 1), (2027, 1, 1));

    #[test]
    fn a_revoked_ek_certificate_is_refused_and_its_neighbours_pass() {
        let r = root("Vendor Root");
        let i = sub(
            "Vendor EK CA",
            &r,
            IsCa::Ca(BasicConstraints::Constrained(0)),
        );
        // Same key (the test's one RSA key), distinct serials.
        let with_serial = |n: u64| {
            let mut p = ek_params();
            p.serial_number = Some(rcgen::SerialNumber::from(n));
            ek_cert(p, &i)
        };
        let bad = with_serial(0x80_01);
        let good = with_serial(0x80_02);
        let mut a = anchors(&[&r], &[&i]);
        let info = a.add_crl(&crl(&i, &[&bad], FRESH.0, FRESH.1)).unwrap();
        assert_eq!((info.issuer.as_str(), info.revoked), ("CN=Vendor EK CA", 1));
        let e = validate_ek_certificate(&bad, &a, NOW).unwrap_err();
        assert!(matches!(e, EkError::Revoked { .. }), "{e}");
        assert!(validate_ek_certificate(&good, &a, NOW).is_ok());
        assert!(matches!(
            check_ek_revocation(&bad, &[], &a, NOW),
            Err(EkError::Revoked { .. })
        ));
        assert!(check_ek_revocation(&good, &[], &a, NOW).is_ok());
        // PEM works alike.
        let pem = format!(
            "-----BEGIN X509 CRL-----\n{}\n-----END X509 CRL-----\n",
            base64_lines(&crl(&i, &[&bad], FRESH.0, FRESH.1))
        );
        let mut b = anchors(&[&r], &[&i]);
        b.add_crl(pem.as_bytes()).unwrap();
        assert!(validate_ek_certificate(&bad, &b, NOW).is_err());
    }

    fn base64_lines(der: &[u8]) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(der)
    }

    #[test]
    fn a_revoked_intermediate_refuses_every_ek_under_it() {
        let r = root("Vendor Root");
        let i = sub(
            "Vendor EK CA",
            &r,
            IsCa::Ca(BasicConstraints::Constrained(0)),
        );
        let ek = ek_cert(ek_params(), &i);
        let mut a = anchors(&[&r], &[&i]);
        a.add_crl(&crl(&r, &[i.cert.der()], FRESH.0, FRESH.1))
            .unwrap();
        let e = validate_ek_certificate(&ek, &a, NOW).unwrap_err();
        assert!(
            matches!(&e, EkError::Revoked { subject, .. } if subject == "CN=Vendor EK CA"),
            "{e}"
        );
        assert!(check_ek_revocation(&ek, &[], &a, NOW).is_err());
    }

    #[test]
    fn an_expired_crl_fails_closed_and_a_newer_one_replaces_it() {
        let r = root("Vendor Root");
        let i = sub(
            "Vendor EK CA",
            &r,
            IsCa::Ca(BasicConstraints::Constrained(0)),
        );
        let ek = ek_cert(ek_params(), &i);
        let mut a = anchors(&[&r], &[&i]);
        a.add_crl(&crl(&i, &[], (2026, 1, 1), (2026, 2, 1)))
            .unwrap();
        let e = validate_ek_certificate(&ek, &a, NOW).unwrap_err();
        assert!(matches!(e, EkError::CrlExpired { .. }), "{e}");
        a.add_crl(&crl(&i, &[], FRESH.0, FRESH.1)).unwrap();
        assert!(validate_ek_certificate(&ek, &a, NOW).is_ok());
        // An older CRL given later does not replace the newer one.
        a.add_crl(&crl(&i, &[&ek], (2025, 6, 1), (2027, 1, 1)))
            .unwrap();
        assert!(validate_ek_certificate(&ek, &a, NOW).is_ok());
        assert_eq!(a.crls_len(), 1);
    }

    #[test]
    fn a_crl_is_accepted_only_from_a_configured_ca_that_may_sign_crls() {
        let r = root("Vendor Root");
        let i = sub(
            "Vendor EK CA",
            &r,
            IsCa::Ca(BasicConstraints::Constrained(0)),
        );
        let ek = ek_cert(ek_params(), &i);
        // Unknown issuer.
        let other = root("Other Root");
        let mut a = anchors(&[&r], &[&i]);
        let e = a
            .add_crl(&crl(&other, &[&ek], FRESH.0, FRESH.1))
            .unwrap_err();
        assert!(e.to_string().contains("not a configured"), "{e}");
        // Same name, another key: a forged CRL.
        let forger = sub(
            "Vendor EK CA",
            &other,
            IsCa::Ca(BasicConstraints::Constrained(0)),
        );
        let e = a.add_crl(&crl(&forger, &[], FRESH.0, FRESH.1)).unwrap_err();
        assert!(e.to_string().contains("does not verify"), "{e}");
        // The configured CA's key usage does not include cRLSign, though the
        // same key and name signed the CRL (under another certificate).
        let signer = sub(
            "Cert-only CA",
            &r,
            IsCa::Ca(BasicConstraints::Constrained(0)),
        );
        let mut params = params("Cert-only CA", IsCa::Ca(BasicConstraints::Constrained(0)));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let configured = params.signed_by(&signer.key, &r.cert, &r.key).unwrap();
        let mut b = TrustAnchors::new();
        b.add_roots_pem(r.cert.pem().as_bytes()).unwrap();
        b.add_intermediates_pem(configured.pem().as_bytes())
            .unwrap();
        let e = b.add_crl(&crl(&signer, &[], FRESH.0, FRESH.1)).unwrap_err();
        assert!(e.to_string().contains("cRLSign"), "{e}");
        assert_eq!(b.crls_len(), 0);
        // Nothing was added by the refusals: the EK still validates.
        assert!(validate_ek_certificate(&ek, &a, NOW).is_ok());
    }

    #[test]
    fn truncated_oversized_and_garbage_crls_are_refused() {
        let r = root("Vendor Root");
        let good = crl(&r, &[], FRESH.0, FRESH.1);
        let mut a = anchors(&[&r], &[]);
        for bad in [
            &good[..good.len() / 2],
            &good[..1],
            &[][..],
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff][..],
        ] {
            assert!(matches!(a.add_crl(bad), Err(EkError::BadCrl(_))), "{bad:?}");
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(a.add_crl(&trailing).is_err());
        assert!(a.add_crl(&vec![0x30; MAX_CRL_LEN + 1]).is_err());
        assert!(a.add_crl(&good).is_ok());
    }

    #[test]
    fn a_sent_chain_is_only_ever_intermediates() {
        let r = root("Vendor Root");
        let i = sub(
            "Vendor EK CA",
            &r,
            IsCa::Ca(BasicConstraints::Constrained(0)),
        );
        let ek = ek_cert(ek_params(), &i);
        let roots_only = anchors(&[&r], &[]);
        assert!(validate_ek_certificate(&ek, &roots_only, NOW).is_err());
        let sent = vec![i.cert.der().to_vec()];
        assert!(validate_ek_certificate_with_chain(&ek, &sent, &roots_only, NOW).is_ok());
        // A whole chain sent, its root included, against other anchors: refused.
        let other = anchors(&[&root("Other Root")], &[]);
        let sent = vec![i.cert.der().to_vec(), r.cert.der().to_vec()];
        let e = validate_ek_certificate_with_chain(&ek, &sent, &other, NOW).unwrap_err();
        assert!(matches!(e, EkError::UntrustedIssuer { .. }), "{e}");
        // Bounded and well-formed.
        let many = vec![i.cert.der().to_vec(); MAX_SENT_CHAIN + 1];
        assert!(validate_ek_certificate_with_chain(&ek, &many, &roots_only, NOW).is_err());
        let junk = vec![vec![0x30, 0x03, 0x01]];
        let e = validate_ek_certificate_with_chain(&ek, &junk, &roots_only, NOW).unwrap_err();
        assert!(e.to_string().contains("chain certificate 1"), "{e}");
    }
}
