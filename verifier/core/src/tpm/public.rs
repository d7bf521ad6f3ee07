//! `TPM2B_PUBLIC` / `TPMT_PUBLIC` (TPM 2.0 Part 2, 12.2): RSA and ECC public
//! areas, object names, and the attestation-key requirements.

use std::fmt;

use sha2::Digest;

use crate::reader::{Reader, WireError};

pub const TPM_ALG_RSA: u16 = 0x0001;
pub const TPM_ALG_SHA1: u16 = 0x0004;
pub const TPM_ALG_AES: u16 = 0x0006;
pub const TPM_ALG_SHA256: u16 = 0x000B;
pub const TPM_ALG_SHA384: u16 = 0x000C;
pub const TPM_ALG_SHA512: u16 = 0x000D;
pub const TPM_ALG_NULL: u16 = 0x0010;
pub const TPM_ALG_SM4: u16 = 0x0013;
pub const TPM_ALG_RSASSA: u16 = 0x0014;
pub const TPM_ALG_RSAES: u16 = 0x0015;
pub const TPM_ALG_RSAPSS: u16 = 0x0016;
pub const TPM_ALG_OAEP: u16 = 0x0017;
pub const TPM_ALG_ECDSA: u16 = 0x0018;
pub const TPM_ALG_ECDH: u16 = 0x0019;
pub const TPM_ALG_ECDAA: u16 = 0x001A;
pub const TPM_ALG_SM2: u16 = 0x001B;
pub const TPM_ALG_ECSCHNORR: u16 = 0x001C;
pub const TPM_ALG_ECMQV: u16 = 0x001D;
pub const TPM_ALG_ECC: u16 = 0x0023;
pub const TPM_ALG_CAMELLIA: u16 = 0x0026;
pub const TPM_ECC_NIST_P256: u16 = 0x0003;

/// Largest `TPM2B_PUBLIC` size accepted (a 4096-bit RSA public area is ~600 bytes).
pub const MAX_PUBLIC_SIZE: usize = 1024;
/// Largest digest (`TPM2B_DIGEST`): SHA-512.
pub const MAX_DIGEST_SIZE: usize = 64;
/// Largest RSA modulus (`MAX_RSA_KEY_BYTES`, 4096 bits).
pub const MAX_RSA_KEY_BYTES: usize = 512;
/// Largest ECC coordinate (`MAX_ECC_KEY_BYTES`, P-521).
pub const MAX_ECC_KEY_BYTES: usize = 66;

/// Hash algorithms Assay understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HashAlg {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl HashAlg {
    pub fn from_tpm(alg: u16) -> Option<Self> {
        match alg {
            TPM_ALG_SHA1 => Some(Self::Sha1),
            TPM_ALG_SHA256 => Some(Self::Sha256),
            TPM_ALG_SHA384 => Some(Self::Sha384),
            TPM_ALG_SHA512 => Some(Self::Sha512),
            _ => None,
        }
    }

    pub fn to_tpm(self) -> u16 {
        match self {
            Self::Sha1 => TPM_ALG_SHA1,
            Self::Sha256 => TPM_ALG_SHA256,
            Self::Sha384 => TPM_ALG_SHA384,
            Self::Sha512 => TPM_ALG_SHA512,
        }
    }

    pub fn digest_len(self) -> usize {
        match self {
            Self::Sha1 => 20,
            Self::Sha256 => 32,
            Self::Sha384 => 48,
            Self::Sha512 => 64,
        }
    }

    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha1 => sha1::Sha1::digest(data).to_vec(),
            Self::Sha256 => sha2::Sha256::digest(data).to_vec(),
            Self::Sha384 => sha2::Sha384::digest(data).to_vec(),
            Self::Sha512 => sha2::Sha512::digest(data).to_vec(),
        }
    }

    /// Reads a TPMI_ALG_HASH this build supports.
    pub(crate) fn read(r: &mut Reader<'_>, what: &'static str) -> Result<Self, WireError> {
        let alg = r.u16(what)?;
        Self::from_tpm(alg).ok_or(WireError::Unsupported {
            what,
            value: u32::from(alg),
        })
    }
}

impl fmt::Display for HashAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Sha1 => "sha1",
            Self::Sha256 => "sha256",
            Self::Sha384 => "sha384",
            Self::Sha512 => "sha512",
        })
    }
}

/// TPMA_OBJECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectAttributes(pub u32);

impl ObjectAttributes {
    pub const FIXED_TPM: u32 = 1 << 1;
    pub const ST_CLEAR: u32 = 1 << 2;
    pub const FIXED_PARENT: u32 = 1 << 4;
    pub const SENSITIVE_DATA_ORIGIN: u32 = 1 << 5;
    pub const USER_WITH_AUTH: u32 = 1 << 6;
    pub const RESTRICTED: u32 = 1 << 16;
    pub const DECRYPT: u32 = 1 << 17;
    pub const SIGN: u32 = 1 << 18;

    fn has(self, bit: u32) -> bool {
        self.0 & bit != 0
    }
    pub fn fixed_tpm(self) -> bool {
        self.has(Self::FIXED_TPM)
    }
    pub fn st_clear(self) -> bool {
        self.has(Self::ST_CLEAR)
    }
    pub fn fixed_parent(self) -> bool {
        self.has(Self::FIXED_PARENT)
    }
    pub fn sensitive_data_origin(self) -> bool {
        self.has(Self::SENSITIVE_DATA_ORIGIN)
    }
    pub fn user_with_auth(self) -> bool {
        self.has(Self::USER_WITH_AUTH)
    }
    pub fn restricted(self) -> bool {
        self.has(Self::RESTRICTED)
    }
    pub fn decrypt(self) -> bool {
        self.has(Self::DECRYPT)
    }
    pub fn sign(self) -> bool {
        self.has(Self::SIGN)
    }
}

/// The public key in `TPMU_PUBLIC_ID`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// `exponent` 0 means the default, 65537.
    Rsa {
        modulus: Vec<u8>,
        exponent: u32,
    },
    Ecc {
        curve: u16,
        x: Vec<u8>,
        y: Vec<u8>,
    },
}

/// `TPMT_SYM_DEF_OBJECT` when not `TPM_ALG_NULL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SymDef {
    pub alg: u16,
    pub key_bits: u16,
    pub mode: u16,
}

/// The key's scheme (`TPMT_RSA_SCHEME` / `TPMT_ECC_SCHEME`) when not `TPM_ALG_NULL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SigScheme {
    pub alg: u16,
    pub hash: HashAlg,
}

/// A parsed `TPMT_PUBLIC` (RSA or ECC objects only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpmPublic {
    pub name_alg: HashAlg,
    pub attributes: ObjectAttributes,
    pub auth_policy: Vec<u8>,
    pub symmetric: Option<SymDef>,
    pub scheme: Option<SigScheme>,
    pub key: PublicKey,
    /// RSA `keyBits` or, for ECC, the coordinate size in bits.
    pub key_bits: u16,
    /// The exact `TPMT_PUBLIC` bytes, which the object's name is computed over.
    raw: Vec<u8>,
}

/// Parses a `TPM2B_PUBLIC` (u16 size then `TPMT_PUBLIC`); nothing may follow it.
pub fn parse_tpm2b_public(bytes: &[u8]) -> Result<TpmPublic, WireError> {
    let mut outer = Reader::new(bytes);
    let inner = outer.tpm2b(MAX_PUBLIC_SIZE, "TPM2B_PUBLIC.size")?;
    outer.expect_empty("TPM2B_PUBLIC")?;
    parse_tpmt_public(inner)
}

/// Parses a bare `TPMT_PUBLIC` filling all of `bytes`.
pub fn parse_tpmt_public(bytes: &[u8]) -> Result<TpmPublic, WireError> {
    let mut r = Reader::new(bytes);
    let kind = r.u16("TPMT_PUBLIC.type")?;
    if kind != TPM_ALG_RSA && kind != TPM_ALG_ECC {
        return Err(WireError::Unsupported {
            what: "TPMT_PUBLIC.type",
            value: u32::from(kind),
        });
    }
    let name_alg = HashAlg::read(&mut r, "TPMT_PUBLIC.nameAlg")?;
    let attributes = ObjectAttributes(r.u32("TPMT_PUBLIC.objectAttributes")?);
    let auth_policy = r.tpm2b(MAX_DIGEST_SIZE, "TPMT_PUBLIC.authPolicy")?.to_vec();
    let symmetric = read_sym_def(&mut r)?;
    let (scheme, key_bits, key) = if kind == TPM_ALG_RSA {
        read_rsa(&mut r)?
    } else {
        read_ecc(&mut r)?
    };
    r.expect_empty("TPMT_PUBLIC")?;
    Ok(TpmPublic {
        name_alg,
        attributes,
        auth_policy,
        symmetric,
        scheme,
        key,
        key_bits,
        raw: bytes.to_vec(),
    })
}

fn read_sym_def(r: &mut Reader<'_>) -> Result<Option<SymDef>, WireError> {
    let alg = r.u16("TPMT_SYM_DEF_OBJECT.algorithm")?;
    match alg {
        TPM_ALG_NULL => Ok(None),
        TPM_ALG_AES | TPM_ALG_SM4 | TPM_ALG_CAMELLIA => {
            let key_bits = r.u16("TPMT_SYM_DEF_OBJECT.keyBits")?;
            let mode = r.u16("TPMT_SYM_DEF_OBJECT.mode")?;
            Ok(Some(SymDef {
                alg,
                key_bits,
                mode,
            }))
        }
        other => Err(WireError::Unsupported {
            what: "TPMT_SYM_DEF_OBJECT.algorithm",
            value: u32::from(other),
        }),
    }
}

fn read_scheme(
    r: &mut Reader<'_>,
    allowed: &[u16],
    what: &'static str,
) -> Result<Option<SigScheme>, WireError> {
    let alg = r.u16(what)?;
    if alg == TPM_ALG_NULL {
        return Ok(None);
    }
    if !allowed.contains(&alg) {
        return Err(WireError::Unsupported {
            what,
            value: u32::from(alg),
        });
    }
    let hash = HashAlg::read(r, "TPMT_PUBLIC scheme hashAlg")?;
    if alg == TPM_ALG_ECDAA {
        r.u16("TPMS_SCHEME_ECDAA.count")?;
    }
    Ok(Some(SigScheme { alg, hash }))
}

type Params = (Option<SigScheme>, u16, PublicKey);

fn read_rsa(r: &mut Reader<'_>) -> Result<Params, WireError> {
    // TPM_ALG_RSAES has no hash in its details; Assay does not need such keys.
    let scheme = read_scheme(
        r,
        &[TPM_ALG_RSASSA, TPM_ALG_RSAPSS, TPM_ALG_OAEP],
        "TPMT_RSA_SCHEME.scheme",
    )?;
    let key_bits = r.u16("TPMS_RSA_PARMS.keyBits")?;
    let exponent = r.u32("TPMS_RSA_PARMS.exponent")?;
    let modulus = r.tpm2b(MAX_RSA_KEY_BYTES, "TPM2B_PUBLIC_KEY_RSA")?;
    if modulus.len() * 8 != usize::from(key_bits) {
        return Err(WireError::Invalid {
            what: "TPM2B_PUBLIC_KEY_RSA",
            reason: format!(
                "modulus is {} bytes but keyBits says {key_bits}",
                modulus.len()
            ),
        });
    }
    Ok((
        scheme,
        key_bits,
        PublicKey::Rsa {
            modulus: modulus.to_vec(),
            exponent,
        },
    ))
}

fn read_ecc(r: &mut Reader<'_>) -> Result<Params, WireError> {
    let scheme = read_scheme(
        r,
        &[
            TPM_ALG_ECDSA,
            TPM_ALG_ECDH,
            TPM_ALG_ECDAA,
            TPM_ALG_SM2,
            TPM_ALG_ECSCHNORR,
            TPM_ALG_ECMQV,
        ],
        "TPMT_ECC_SCHEME.scheme",
    )?;
    let curve = r.u16("TPMS_ECC_PARMS.curveID")?;
    let kdf = r.u16("TPMT_KDF_SCHEME.scheme")?;
    if kdf != TPM_ALG_NULL {
        r.u16("TPMT_KDF_SCHEME.hashAlg")?;
    }
    let x = r.tpm2b(MAX_ECC_KEY_BYTES, "TPMS_ECC_POINT.x")?.to_vec();
    let y = r.tpm2b(MAX_ECC_KEY_BYTES, "TPMS_ECC_POINT.y")?.to_vec();
    let key_bits = u16::try_from(x.len() * 8).unwrap_or(u16::MAX);
    Ok((scheme, key_bits, PublicKey::Ecc { curve, x, y }))
}

impl TpmPublic {
    /// The object's TPM name: `nameAlg` (u16, big-endian) || H_nameAlg(`TPMT_PUBLIC`).
    pub fn name(&self) -> Vec<u8> {
        let mut name = self.name_alg.to_tpm().to_be_bytes().to_vec();
        name.extend(self.name_alg.digest(&self.raw));
        name
    }

    /// The exact `TPMT_PUBLIC` bytes this was parsed from.
    pub fn tpmt_bytes(&self) -> &[u8] {
        &self.raw
    }

    /// The RSA key, if this is a valid RSA public area.
    pub fn rsa_public_key(&self) -> Option<rsa::RsaPublicKey> {
        let PublicKey::Rsa { modulus, exponent } = &self.key else {
            return None;
        };
        let e = if *exponent == 0 { 65_537 } else { *exponent };
        rsa::RsaPublicKey::new(rsa::BigUint::from_bytes_be(modulus), rsa::BigUint::from(e)).ok()
    }

    /// The P-256 key, if this is a valid NIST P-256 public area.
    pub fn p256_public_key(&self) -> Option<p256::ecdsa::VerifyingKey> {
        let PublicKey::Ecc {
            curve: TPM_ECC_NIST_P256,
            x,
            y,
        } = &self.key
        else {
            return None;
        };
        let (x, y) = (left_pad::<32>(x)?, left_pad::<32>(y)?);
        let point = p256::EncodedPoint::from_affine_coordinates(&x.into(), &y.into(), false);
        p256::ecdsa::VerifyingKey::from_encoded_point(&point).ok()
    }
}

/// Left-pads a big-endian integer to `N` bytes (leading zeros beyond `N` are dropped).
pub(crate) fn left_pad<const N: usize>(v: &[u8]) -> Option<[u8; N]> {
    let skip = v.iter().take_while(|b| **b == 0).count();
    let v = v.get(skip..)?;
    let mut out = [0u8; N];
    let start = N.checked_sub(v.len())?;
    out.get_mut(start..)?.copy_from_slice(v);
    Some(out)
}

/// Why a public area is not acceptable as an attestation key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AkError {
    #[error("AK is not fixedTPM (it could be duplicated out of the TPM)")]
    NotFixedTpm,
    #[error("AK is not fixedParent (it could be duplicated to another parent)")]
    NotFixedParent,
    #[error("AK is not sensitiveDataOrigin (its private part was imported, not made by the TPM)")]
    NotSensitiveDataOrigin,
    #[error("AK is not restricted (it could sign data that imitates a TPM quote)")]
    NotRestricted,
    #[error("AK lacks the sign attribute")]
    NotSigning,
    #[error("AK has the decrypt attribute (an attestation key must be a signing-only key)")]
    Decrypts,
    #[error("AK nameAlg is {0}; sha256 or stronger is required")]
    WeakNameAlg(HashAlg),
    #[error("AK RSA key is {bits} bits; at least 2048 are required")]
    RsaKeyTooSmall { bits: usize },
    #[error("AK RSA public key is not a valid RSA key")]
    InvalidRsaKey,
    #[error("AK ECC curve {curve:#06x} is not supported (only NIST P-256)")]
    UnsupportedCurve { curve: u16 },
    #[error("AK ECC point is not a valid NIST P-256 public key")]
    InvalidEccKey,
    #[error("AK has no signing scheme; a restricted AK must fix RSASSA, RSAPSS or ECDSA")]
    NoScheme,
    #[error("AK scheme {scheme:#06x} is not allowed for a {key} key (RSA: RSASSA or RSAPSS; ECC: ECDSA)")]
    WrongScheme { scheme: u16, key: &'static str },
    #[error("AK scheme hash is {0}; sha256 or stronger is required")]
    WeakSchemeHash(HashAlg),
}

/// Checks that `ak` is a restricted signing key the TPM made and cannot leave the TPM.
pub fn check_ak_attributes(ak: &TpmPublic) -> Result<(), AkError> {
    let a = ak.attributes;
    if !a.fixed_tpm() {
        return Err(AkError::NotFixedTpm);
    }
    if !a.fixed_parent() {
        return Err(AkError::NotFixedParent);
    }
    if !a.sensitive_data_origin() {
        return Err(AkError::NotSensitiveDataOrigin);
    }
    if !a.restricted() {
        return Err(AkError::NotRestricted);
    }
    if !a.sign() {
        return Err(AkError::NotSigning);
    }
    if a.decrypt() {
        return Err(AkError::Decrypts);
    }
    if ak.name_alg < HashAlg::Sha256 {
        return Err(AkError::WeakNameAlg(ak.name_alg));
    }
    let (key, allowed): (&'static str, &[u16]) = match &ak.key {
        PublicKey::Rsa { .. } => {
            let bits = ak
                .rsa_public_key()
                .map(|k| rsa::traits::PublicKeyParts::n(&k).bits())
                .ok_or(AkError::InvalidRsaKey)?;
            if bits < 2048 {
                return Err(AkError::RsaKeyTooSmall { bits });
            }
            ("RSA", &[TPM_ALG_RSASSA, TPM_ALG_RSAPSS])
        }
        PublicKey::Ecc { curve, .. } => {
            if *curve != TPM_ECC_NIST_P256 {
                return Err(AkError::UnsupportedCurve { curve: *curve });
            }
            ak.p256_public_key().ok_or(AkError::InvalidEccKey)?;
            ("ECC", &[TPM_ALG_ECDSA])
        }
    };
    let scheme = ak.scheme.ok_or(AkError::NoScheme)?;
    if !allowed.contains(&scheme.alg) {
        return Err(AkError::WrongScheme {
            scheme: scheme.alg,
            key,
        });
    }
    if scheme.hash < HashAlg::Sha256 {
        return Err(AkError::WeakSchemeHash(scheme.hash));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )]
    use super::*;
    use crate::verify::testutil::{self, TestAk};

    fn rsa_ak() -> &'static TestAk {
        testutil::shared_rsa_ak()
    }

    /// The AK's TPM2B_PUBLIC with its attributes replaced.
    fn with_attrs(ak: &TestAk, attrs: u32) -> TpmPublic {
        let mut spec = ak.clone();
        spec.attributes = attrs;
        parse_tpm2b_public(&spec.public_bytes()).unwrap()
    }

    #[test]
    fn round_trips_rsa_and_ecc_public_areas() {
        for ak in [testutil::shared_rsa_ak(), testutil::shared_p256_ak()] {
            let bytes = ak.public_bytes();
            let p = parse_tpm2b_public(&bytes).unwrap();
            assert_eq!(p.name_alg, HashAlg::Sha256);
            assert_eq!(p.attributes.0, testutil::AK_ATTRIBUTES);
            assert_eq!(p.tpmt_bytes(), &bytes[2..]);
            let name = p.name();
            assert_eq!(&name[..2], &[0x00, 0x0b]);
            assert_eq!(name[2..], sha2::Sha256::digest(&bytes[2..])[..]);
            check_ak_attributes(&p).unwrap();
        }
        let p = rsa_ak().public();
        assert!(p.rsa_public_key().is_some());
        assert_eq!(p.key_bits, 2048);
        assert_eq!(
            p.scheme,
            Some(SigScheme {
                alg: TPM_ALG_RSASSA,
                hash: HashAlg::Sha256
            })
        );
        assert!(testutil::shared_p256_ak()
            .public()
            .p256_public_key()
            .is_some());
    }

    #[test]
    fn truncation_at_every_length_is_a_typed_error() {
        for ak in [testutil::shared_rsa_ak(), testutil::shared_p256_ak()] {
            let bytes = ak.public_bytes();
            for n in 0..bytes.len() {
                assert!(parse_tpm2b_public(&bytes[..n]).is_err(), "prefix {n}");
                // Also a consistent size field with a truncated body.
                if n >= 2 {
                    let mut b = ((n - 2) as u16).to_be_bytes().to_vec();
                    b.extend_from_slice(&bytes[2..n]);
                    assert!(parse_tpm2b_public(&b).is_err(), "body {n}");
                }
            }
        }
    }

    #[test]
    fn oversized_size_fields_and_trailing_data_are_refused() {
        let bytes = rsa_ak().public_bytes();
        let mut big = bytes.clone();
        big[..2].copy_from_slice(&0xffffu16.to_be_bytes());
        assert!(matches!(
            parse_tpm2b_public(&big),
            Err(WireError::TooLarge {
                what: "TPM2B_PUBLIC.size",
                ..
            })
        ));
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(matches!(
            parse_tpm2b_public(&trailing),
            Err(WireError::TrailingData {
                what: "TPM2B_PUBLIC",
                ..
            })
        ));
        // Trailing data inside the TPM2B.
        let mut inner = bytes[2..].to_vec();
        inner.push(0);
        let mut b = (inner.len() as u16).to_be_bytes().to_vec();
        b.extend(inner);
        assert!(matches!(
            parse_tpm2b_public(&b),
            Err(WireError::TrailingData {
                what: "TPMT_PUBLIC",
                ..
            })
        ));
        // authPolicy larger than any digest.
        let mut b = bytes[..10].to_vec();
        b.extend_from_slice(&65u16.to_be_bytes());
        b.extend([0; 65]);
        assert!(matches!(
            parse_tpmt_public(&b[2..]),
            Err(WireError::TooLarge {
                what: "TPMT_PUBLIC.authPolicy",
                len: 65,
                max: 64
            })
        ));
    }

    #[test]
    fn unknown_types_and_algorithms_are_unsupported() {
        let bytes = rsa_ak().public_bytes();
        let mut keyedhash = bytes.clone();
        keyedhash[2..4].copy_from_slice(&0x0008u16.to_be_bytes());
        assert!(matches!(
            parse_tpm2b_public(&keyedhash),
            Err(WireError::Unsupported {
                what: "TPMT_PUBLIC.type",
                value: 8
            })
        ));
        let mut sm3 = bytes.clone();
        sm3[4..6].copy_from_slice(&0x0012u16.to_be_bytes());
        assert!(matches!(
            parse_tpm2b_public(&sm3),
            Err(WireError::Unsupported {
                what: "TPMT_PUBLIC.nameAlg",
                ..
            })
        ));
    }

    #[test]
    fn modulus_must_match_key_bits() {
        let mut ak = rsa_ak().clone();
        ak.key_bits_override = Some(1024);
        assert!(matches!(
            parse_tpm2b_public(&ak.public_bytes()),
            Err(WireError::Invalid { .. })
        ));
    }

    #[test]
    fn rejects_ak_without_fixed_tpm() {
        let p = with_attrs(
            rsa_ak(),
            testutil::AK_ATTRIBUTES & !ObjectAttributes::FIXED_TPM,
        );
        assert_eq!(check_ak_attributes(&p), Err(AkError::NotFixedTpm));
    }

    #[test]
    fn rejects_ak_without_fixed_parent() {
        let p = with_attrs(
            rsa_ak(),
            testutil::AK_ATTRIBUTES & !ObjectAttributes::FIXED_PARENT,
        );
        assert_eq!(check_ak_attributes(&p), Err(AkError::NotFixedParent));
    }

    #[test]
    fn rejects_ak_without_sensitive_data_origin() {
        let p = with_attrs(
            rsa_ak(),
            testutil::AK_ATTRIBUTES & !ObjectAttributes::SENSITIVE_DATA_ORIGIN,
        );
        assert_eq!(
            check_ak_attributes(&p),
            Err(AkError::NotSensitiveDataOrigin)
        );
    }

    #[test]
    fn rejects_ak_without_restricted() {
        let p = with_attrs(
            rsa_ak(),
            testutil::AK_ATTRIBUTES & !ObjectAttributes::RESTRICTED,
        );
        assert_eq!(check_ak_attributes(&p), Err(AkError::NotRestricted));
    }

    #[test]
    fn rejects_ak_without_sign() {
        let p = with_attrs(rsa_ak(), testutil::AK_ATTRIBUTES & !ObjectAttributes::SIGN);
        assert_eq!(check_ak_attributes(&p), Err(AkError::NotSigning));
    }

    #[test]
    fn rejects_ak_with_decrypt() {
        let p = with_attrs(
            rsa_ak(),
            testutil::AK_ATTRIBUTES | ObjectAttributes::DECRYPT,
        );
        assert_eq!(check_ak_attributes(&p), Err(AkError::Decrypts));
    }

    #[test]
    fn rejects_ak_with_sha1_name_alg() {
        let mut ak = rsa_ak().clone();
        ak.name_alg = HashAlg::Sha1;
        let p = parse_tpm2b_public(&ak.public_bytes()).unwrap();
        assert_eq!(
            check_ak_attributes(&p),
            Err(AkError::WeakNameAlg(HashAlg::Sha1))
        );
        assert_eq!(p.name().len(), 22);
    }

    #[test]
    fn rejects_ak_with_sha1_scheme_hash() {
        let mut ak = rsa_ak().clone();
        ak.hash = HashAlg::Sha1;
        let p = parse_tpm2b_public(&ak.public_bytes()).unwrap();
        assert_eq!(
            check_ak_attributes(&p),
            Err(AkError::WeakSchemeHash(HashAlg::Sha1))
        );
    }

    #[test]
    fn rejects_ak_without_scheme() {
        let mut ak = rsa_ak().clone();
        ak.scheme_alg = TPM_ALG_NULL;
        let p = parse_tpm2b_public(&ak.public_bytes()).unwrap();
        assert_eq!(p.scheme, None);
        assert_eq!(check_ak_attributes(&p), Err(AkError::NoScheme));
    }

    #[test]
    fn rejects_ak_with_decryption_scheme() {
        let mut ak = rsa_ak().clone();
        ak.scheme_alg = TPM_ALG_OAEP;
        let p = parse_tpm2b_public(&ak.public_bytes()).unwrap();
        assert_eq!(
            check_ak_attributes(&p),
            Err(AkError::WrongScheme {
                scheme: TPM_ALG_OAEP,
                key: "RSA"
            })
        );
    }

    #[test]
    fn rejects_ak_with_small_rsa_key() {
        let mut ak = rsa_ak().clone();
        ak.key = testutil::SigningKey::Rsa(Box::new(testutil::rsa_key(1024, 7)));
        let p = parse_tpm2b_public(&ak.public_bytes()).unwrap();
        assert_eq!(
            check_ak_attributes(&p),
            Err(AkError::RsaKeyTooSmall { bits: 1024 })
        );
    }

    #[test]
    fn rejects_ak_on_unsupported_curve() {
        let mut ak = testutil::shared_p256_ak().clone();
        ak.curve_override = Some(0x0004);
        let p = parse_tpm2b_public(&ak.public_bytes()).unwrap();
        assert_eq!(
            check_ak_attributes(&p),
            Err(AkError::UnsupportedCurve { curve: 4 })
        );
    }

    #[test]
    fn hash_alg_codes_names_and_lengths() {
        for h in [
            HashAlg::Sha1,
            HashAlg::Sha256,
            HashAlg::Sha384,
            HashAlg::Sha512,
        ] {
            assert_eq!(HashAlg::from_tpm(h.to_tpm()), Some(h));
            assert_eq!(h.digest(b"x").len(), h.digest_len());
        }
        assert_eq!(HashAlg::Sha256.to_string(), "sha256");
        assert_eq!(HashAlg::from_tpm(0x0012), None);
    }

    #[test]
    fn left_pad_handles_short_long_and_zero_prefixed_values() {
        assert_eq!(left_pad::<4>(&[1, 2]), Some([0, 0, 1, 2]));
        assert_eq!(left_pad::<2>(&[0, 0, 1, 2]), Some([1, 2]));
        assert_eq!(left_pad::<2>(&[1, 2, 3]), None);
    }
}
