//! The keys IMA signatures are checked against, and their key ids.

use std::fmt;

use rsa::traits::PublicKeyParts;
use sha1::Digest;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;
use x509_parser::pem::Pem;
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

use super::header::{HashAlgo, KeyId};

/// Most keys one keyring holds.
pub const MAX_KEYS: usize = 1024;
/// Largest DER certificate or public key accepted.
pub const MAX_DER_LEN: usize = 16 * 1024;
/// Largest PEM bundle accepted.
pub const MAX_PEM_LEN: usize = 4 * 1024 * 1024;
/// RSA modulus sizes accepted, in bits.
pub const RSA_BITS: std::ops::RangeInclusive<usize> = 2048..=4096;

const OID_RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";
const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";

/// Why a certificate or public key was not added to a [`Keyring`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyringError {
    #[error("IMA keyring: {what} is {len} bytes, more than the limit of {max}")]
    TooLarge {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("IMA keyring: it already holds {MAX_KEYS} keys, the most one keyring may hold")]
    TooManyKeys,
    #[error("IMA keyring: PEM: {0}")]
    Pem(String),
    #[error("IMA keyring: no CERTIFICATE or PUBLIC KEY block in the PEM input")]
    NoKeys,
    #[error("IMA keyring: PEM block {index} is `{label}`, not a CERTIFICATE or PUBLIC KEY")]
    UnexpectedPemBlock { index: usize, label: String },
    #[error("IMA keyring: PEM block {index} is a private key (`{label}`), which has no place in a verifier's keyring: give its certificate, or the output of `openssl pkey -pubout`")]
    PrivateKey { index: usize, label: String },
    #[error("IMA keyring: PEM block {index} ({label}): {error}")]
    InPemBlock {
        index: usize,
        label: String,
        error: Box<KeyringError>,
    },
    #[error("IMA keyring: malformed certificate: {0}")]
    MalformedCertificate(String),
    #[error("IMA keyring: malformed public key: {0}")]
    MalformedPublicKey(String),
    #[error("IMA keyring: neither a DER certificate ({certificate}) nor a DER SubjectPublicKeyInfo ({public_key})")]
    NotDer {
        certificate: String,
        public_key: String,
    },
    #[error("IMA keyring: {key}: {reason}; IMA keys must be RSA 2048–4096 or ECDSA P-256/P-384")]
    UnsupportedKey { key: String, reason: String },
    #[error("IMA keyring: certificate `{subject}`: its subjectKeyIdentifier is {len} bytes; the kernel matches a signature's 4-byte key id against its last 4 bytes, so it needs at least 4")]
    ShortSubjectKeyIdentifier { subject: String, len: usize },
}

/// The algorithm and size of a keyring key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    Rsa { bits: usize },
    EcdsaP256,
    EcdsaP384,
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyAlgorithm::Rsa { bits } => write!(f, "RSA-{bits}"),
            KeyAlgorithm::EcdsaP256 => f.write_str("ECDSA P-256"),
            KeyAlgorithm::EcdsaP384 => f.write_str("ECDSA P-384"),
        }
    }
}

/// Where a key's id came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyIdSource {
    /// The last 4 bytes of the certificate's subjectKeyIdentifier (what the kernel matches).
    SubjectKeyIdentifier,
    /// The last 4 bytes of the SHA-1 of the subjectPublicKey BIT STRING contents
    /// (ima-evm-utils' `calc_keyid_v2`): a bare public key, or a certificate without SKID.
    PublicKeySha1,
}

#[derive(Debug, Clone)]
enum Verifier {
    Rsa(rsa::RsaPublicKey),
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
}

/// One key of a [`Keyring`].
#[derive(Debug, Clone)]
pub struct Key {
    key_id: KeyId,
    key_id_source: KeyIdSource,
    description: String,
    algorithm: KeyAlgorithm,
    spki_sha256: [u8; 32],
    verifier: Verifier,
}

impl Key {
    /// The id signatures name this key by.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    pub fn key_id_source(&self) -> KeyIdSource {
        self.key_id_source
    }

    /// The certificate's subject, or `public key <key id>` for a bare key.
    pub fn description(&self) -> &str {
        &self.description
    }

    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    /// SHA-256 of the DER SubjectPublicKeyInfo: a collision-free name for the
    /// key (key ids are only 32 bits).
    pub fn spki_sha256(&self) -> [u8; 32] {
        self.spki_sha256
    }

    /// Whether `signature` is this key's signature over the prehashed
    /// `digest` (of `alg`): RSA PKCS#1 v1.5 with `alg`'s DigestInfo, or a DER
    /// ECDSA-Sig-Value.
    pub(super) fn verifies(&self, alg: HashAlgo, digest: &[u8], signature: &[u8]) -> bool {
        use p256::ecdsa::signature::hazmat::PrehashVerifier;
        match &self.verifier {
            Verifier::Rsa(k) => k.verify(pkcs1v15(alg), digest, signature).is_ok(),
            Verifier::P256(k) => p256::ecdsa::Signature::from_der(signature)
                .is_ok_and(|s| k.verify_prehash(&ecdsa_prehash(digest, 32), &s).is_ok()),
            Verifier::P384(k) => p384::ecdsa::Signature::from_der(signature)
                .is_ok_and(|s| k.verify_prehash(&ecdsa_prehash(digest, 48), &s).is_ok()),
        }
    }
}

fn pkcs1v15(alg: HashAlgo) -> rsa::Pkcs1v15Sign {
    match alg {
        HashAlgo::Sha1 => rsa::Pkcs1v15Sign::new::<sha1::Sha1>(),
        HashAlgo::Sha224 => rsa::Pkcs1v15Sign::new::<sha2::Sha224>(),
        HashAlgo::Sha256 => rsa::Pkcs1v15Sign::new::<sha2::Sha256>(),
        HashAlgo::Sha384 => rsa::Pkcs1v15Sign::new::<sha2::Sha384>(),
        HashAlgo::Sha512 => rsa::Pkcs1v15Sign::new::<sha2::Sha512>(),
    }
}

/// ECDSA takes the leftmost field-size bytes of a longer digest (the `ecdsa`
/// crate truncates); a shorter one is its integer value, i.e. left-padded
/// with zeros — as the kernel's `crypto/ecdsa.c` reads it (SHA-1 with P-384).
fn ecdsa_prehash(digest: &[u8], field_len: usize) -> Vec<u8> {
    let pad = field_len.saturating_sub(digest.len());
    let mut out = vec![0u8; pad];
    out.extend_from_slice(digest);
    out
}

/// The public keys IMA file signatures are verified with: what the kernel's
/// `.ima` keyring holds on the node, as configured by the operator.
///
/// Built from X.509 certificates and SubjectPublicKeyInfo public keys, DER or
/// PEM; RSA 2048–4096 and ECDSA P-256/P-384 only, at most [`MAX_KEYS`]. Each
/// key has a [`KeyId`]:
///
/// - a certificate with a subjectKeyIdentifier: its last 4 bytes. The kernel
///   looks a signature's key up by `request_asymmetric_key` ("id:%08x",
///   `security/integrity/digsig_asymmetric.c`), which matches the tail of the
///   key's ids, among them the SKID (`crypto/asymmetric_keys/x509_public_key.c`);
/// - otherwise (a bare public key, or a certificate without SKID): the last 4
///   bytes of the SHA-1 of the subjectPublicKey BIT STRING contents, which is
///   what ima-evm-utils' `calc_keyid_v2` computes, and what `openssl x509
///   -addext subjectKeyIdentifier=hash` (RFC 5280 §4.2.1.2 method 1) puts in
///   a SKID. The kernel itself finds no key by this id for a certificate
///   without SKID; ima-evm-utils' `ima_verify` does.
///
/// Certificates are not validated (no chain, time, key usage): the operator
/// decides what is trusted, as the builtin keys decide what the kernel's
/// `.ima` keyring accepts. Loading the same key twice keeps one copy.
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    keys: Vec<Key>,
}

impl Keyring {
    pub fn new() -> Self {
        Self::default()
    }

    /// A keyring of every key in a PEM bundle (see [`Keyring::add_pem`]).
    pub fn from_pem(pem: &[u8]) -> Result<Self, KeyringError> {
        let mut k = Self::new();
        k.add_pem(pem)?;
        Ok(k)
    }

    /// Adds every `CERTIFICATE` and `PUBLIC KEY` block of a PEM bundle, all
    /// or none: any other block (a private key above all), a block that does
    /// not parse, an unsupported key, or a bundle without keys is an error
    /// naming the block, and the keyring is left as it was. Returns how many
    /// blocks were read.
    pub fn add_pem(&mut self, pem: &[u8]) -> Result<usize, KeyringError> {
        if pem.len() > MAX_PEM_LEN {
            return Err(KeyringError::TooLarge {
                what: "the PEM input",
                len: pem.len(),
                max: MAX_PEM_LEN,
            });
        }
        let mut staged = self.clone();
        let mut blocks = 0;
        for (index, block) in Pem::iter_from_buffer(pem).enumerate() {
            let index = index + 1;
            let block = block.map_err(|e| KeyringError::Pem(format!("block {index}: {e}")))?;
            let added = match block.label.as_str() {
                "CERTIFICATE" => staged.add_certificate_der(&block.contents),
                "PUBLIC KEY" => staged.add_public_key_der(&block.contents),
                l if l.contains("PRIVATE KEY") => {
                    return Err(KeyringError::PrivateKey {
                        index,
                        label: block.label,
                    })
                }
                _ => {
                    return Err(KeyringError::UnexpectedPemBlock {
                        index,
                        label: block.label,
                    })
                }
            };
            added.map_err(|error| KeyringError::InPemBlock {
                index,
                label: block.label.clone(),
                error: Box::new(error),
            })?;
            blocks += 1;
        }
        if blocks == 0 {
            return Err(KeyringError::NoKeys);
        }
        *self = staged;
        Ok(blocks)
    }

    /// Adds a DER certificate or, failing that, a DER SubjectPublicKeyInfo.
    pub fn add_der(&mut self, der: &[u8]) -> Result<KeyId, KeyringError> {
        match self.add_certificate_der(der) {
            Err(KeyringError::MalformedCertificate(certificate)) => {
                match self.add_public_key_der(der) {
                    Err(KeyringError::MalformedPublicKey(public_key)) => {
                        Err(KeyringError::NotDer {
                            certificate,
                            public_key,
                        })
                    }
                    other => other,
                }
            }
            other => other,
        }
    }

    /// Adds the key of a DER X.509 certificate; its id is the last 4 bytes of
    /// its subjectKeyIdentifier, else of the SHA-1 of its public key.
    pub fn add_certificate_der(&mut self, der: &[u8]) -> Result<KeyId, KeyringError> {
        check_der_len(der)?;
        let (rest, cert) = X509Certificate::from_der(der)
            .map_err(|e| KeyringError::MalformedCertificate(e.to_string()))?;
        if !rest.is_empty() {
            return Err(KeyringError::MalformedCertificate(format!(
                "{} bytes after the certificate",
                rest.len()
            )));
        }
        let subject = cert.subject().to_string();
        let description = if subject.is_empty() {
            format!(
                "certificate with an empty subject, serial {}",
                cert.raw_serial_as_string()
            )
        } else {
            subject
        };
        let mut skid = None;
        for ext in cert.extensions() {
            match ext.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(id) => skid = Some(id.0),
                ParsedExtension::ParseError { error } => {
                    return Err(KeyringError::MalformedCertificate(format!(
                        "extension {}: {error}",
                        ext.oid
                    )))
                }
                _ => {}
            }
        }
        let key_id = match skid {
            Some(id) => Some(KeyId::from_tail(id).ok_or_else(|| {
                KeyringError::ShortSubjectKeyIdentifier {
                    subject: description.clone(),
                    len: id.len(),
                }
            })?),
            None => None,
        };
        self.insert(cert.public_key(), description, key_id)
    }

    /// Adds a DER SubjectPublicKeyInfo (`openssl pkey -pubout -outform DER`);
    /// its id is the last 4 bytes of the SHA-1 of the key.
    pub fn add_public_key_der(&mut self, der: &[u8]) -> Result<KeyId, KeyringError> {
        check_der_len(der)?;
        let (rest, spki) = SubjectPublicKeyInfo::from_der(der)
            .map_err(|e| KeyringError::MalformedPublicKey(e.to_string()))?;
        if !rest.is_empty() {
            return Err(KeyringError::MalformedPublicKey(format!(
                "{} bytes after the SubjectPublicKeyInfo",
                rest.len()
            )));
        }
        let id = public_key_sha1_id(&spki);
        self.insert(&spki, format!("public key {id}"), None)
    }

    fn insert(
        &mut self,
        spki: &SubjectPublicKeyInfo<'_>,
        description: String,
        skid: Option<KeyId>,
    ) -> Result<KeyId, KeyringError> {
        let (algorithm, verifier) = verifier(spki, &description)?;
        let (key_id, key_id_source) = match skid {
            Some(id) => (id, KeyIdSource::SubjectKeyIdentifier),
            None => (public_key_sha1_id(spki), KeyIdSource::PublicKeySha1),
        };
        let spki_sha256: [u8; 32] = sha2::Sha256::digest(spki.raw).into();
        if self
            .keys
            .iter()
            .any(|k| k.key_id == key_id && k.spki_sha256 == spki_sha256)
        {
            return Ok(key_id);
        }
        if self.keys.len() >= MAX_KEYS {
            return Err(KeyringError::TooManyKeys);
        }
        self.keys.push(Key {
            key_id,
            key_id_source,
            description,
            algorithm,
            spki_sha256,
            verifier,
        });
        Ok(key_id)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Every key, in the order added.
    pub fn keys(&self) -> impl Iterator<Item = &Key> {
        self.keys.iter()
    }

    /// The keys with `id` (several keys may share one: ids are 32 bits).
    pub fn with_key_id(&self, id: KeyId) -> impl Iterator<Item = &Key> {
        self.keys.iter().filter(move |k| k.key_id == id)
    }
}

fn check_der_len(der: &[u8]) -> Result<(), KeyringError> {
    if der.len() > MAX_DER_LEN {
        return Err(KeyringError::TooLarge {
            what: "a DER certificate or public key",
            len: der.len(),
            max: MAX_DER_LEN,
        });
    }
    Ok(())
}

/// ima-evm-utils' `calc_keyid_v2`: the last 4 bytes of the SHA-1 of the
/// subjectPublicKey BIT STRING contents (an RSAPublicKey, an EC point).
fn public_key_sha1_id(spki: &SubjectPublicKeyInfo<'_>) -> KeyId {
    let sha1: [u8; 20] = sha1::Sha1::digest(&spki.subject_public_key.data).into();
    let [.., a, b, c, d] = sha1;
    KeyId(u32::from_be_bytes([a, b, c, d]))
}

fn verifier(
    spki: &SubjectPublicKeyInfo<'_>,
    key: &str,
) -> Result<(KeyAlgorithm, Verifier), KeyringError> {
    let unsupported = |reason: String| KeyringError::UnsupportedKey {
        key: key.to_string(),
        reason,
    };
    let malformed = |reason: String| KeyringError::MalformedPublicKey(format!("{key}: {reason}"));
    let oid = spki.algorithm.algorithm.to_id_string();
    match oid.as_str() {
        OID_RSA_ENCRYPTION => {
            let Ok(PublicKey::RSA(k)) = spki.parsed() else {
                return Err(malformed("invalid RSAPublicKey".into()));
            };
            let n = rsa::BigUint::from_bytes_be(k.modulus);
            let bits = n.bits();
            if !RSA_BITS.contains(&bits) {
                return Err(unsupported(format!("an RSA-{bits} key")));
            }
            let e = rsa::BigUint::from_bytes_be(k.exponent);
            let k = rsa::RsaPublicKey::new(n, e)
                .map_err(|e| malformed(format!("invalid RSA key: {e}")))?;
            Ok((KeyAlgorithm::Rsa { bits: k.n().bits() }, Verifier::Rsa(k)))
        }
        OID_EC_PUBLIC_KEY => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string())
                .ok_or_else(|| unsupported("an EC key without a named curve".into()))?;
            let point: &[u8] = &spki.subject_public_key.data;
            match curve.as_str() {
                OID_P256 => p256::ecdsa::VerifyingKey::from_sec1_bytes(point)
                    .map(|k| (KeyAlgorithm::EcdsaP256, Verifier::P256(k)))
                    .map_err(|_| malformed("invalid P-256 point".into())),
                OID_P384 => p384::ecdsa::VerifyingKey::from_sec1_bytes(point)
                    .map(|k| (KeyAlgorithm::EcdsaP384, Verifier::P384(k)))
                    .map_err(|_| malformed("invalid P-384 point".into())),
                other => Err(unsupported(format!("an EC key on curve {other}"))),
            }
        }
        other => Err(unsupported(format!(
            "key algorithm {other} is neither rsaEncryption nor id-ecPublicKey"
        ))),
    }
}
