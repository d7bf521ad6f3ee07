//! `TPM2_MakeCredential` in software (TPM 2.0 Library Part 1, §24 "Credential
//! Protection", §11.4.10 KDFa/KDFe, Annex B.10.3 (RSA) and C.6.4 (ECC) secret
//! sharing; Part 3, §12.6).
//!
//! The verifier protects a random credential to a node's EK such that only the
//! TPM holding that EK *and* a loaded object whose name is `ak_name` can
//! recover it with `TPM2_ActivateCredential`. A node that returns the
//! credential has proven that its AK lives in the same TPM as the certified EK.
//!
//! Supported EKs ([`CredentialKey::from_public`]) are those of the TCG EK
//! Credential Profile templates: RSA 2048/3072/4096 and ECC NIST P-256/P-384,
//! nameAlg SHA-256/384/512, inner symmetric AES-128-CFB or AES-256-CFB (low
//! range L-1/L-2 and high range H-1..H-3, H-6, H-7). Anything else is refused
//! before a credential is made.
//!
//! Construction, with `H` = the EK's nameAlg and `S` its symmetric key size:
//! ```text
//! seed            = |H| random bytes                                (RSA)
//! encrypted_secret= RSA-OAEP(EK, seed, hash H, label "IDENTITY\0")
//!
//! (d_e, Q_e)      = an ephemeral key pair on the EK's curve         (ECC)
//! Z               = x(d_e · Q_ek)
//! seed            = KDFe(H, Z, "IDENTITY", x(Q_e), x(Q_ek), 8·|H|)
//! encrypted_secret= TPMS_ECC_POINT(Q_e)
//!
//! symKey          = KDFa(H, seed, "STORAGE", ak_name, "", S)
//! encIdentity     = AES-S-CFB(symKey, IV = 0, u16be(len(cred)) || cred)
//! hmacKey         = KDFa(H, seed, "INTEGRITY", "", "", 8·|H|)
//! outerHMAC       = HMAC-H(hmacKey, encIdentity || ak_name)
//! credential_blob = u16be(|H|) || outerHMAC || encIdentity   (TPM2B_ID_OBJECT contents)
//! ```

use aes::cipher::{AsyncStreamCipher, KeyIvInit};
use hmac::digest::core_api::BlockSizeUser;
use hmac::{Mac, SimpleHmac};
use rand_core::CryptoRngCore;
use rsa::{Oaep, RsaPublicKey};
use sha2::{Digest, Sha256, Sha384, Sha512};

use crate::tpm::public::{HashAlg, PublicKey, TpmPublic, TPM_ALG_AES, TPM_ECC_NIST_P256};

/// TPM_ECC_NIST_P384.
pub const TPM_ECC_NIST_P384: u16 = 0x0004;
/// TPM_ALG_CFB.
const TPM_ALG_CFB: u16 = 0x0043;

/// Largest credential made: `TPM2_ActivateCredential` returns a `TPM2B_DIGEST`,
/// which no TPM accepts longer than its smallest supported nameAlg digest in
/// practice (SHA-256).
pub const MAX_CREDENTIAL_LEN: usize = 32;
/// The TPM refuses RSA EKs below this; so do we.
const MIN_EK_BITS: usize = 2048;
/// The largest RSA EK of the profile (template H-7).
const MAX_EK_BITS: usize = 4096;

/// The two halves `TPM2_ActivateCredential` takes, without their `TPM2B` size prefixes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MadeCredential {
    /// `TPM2B_ID_OBJECT` contents: `TPM2B_DIGEST(outerHMAC) || encIdentity`.
    pub credential_blob: Vec<u8>,
    /// `TPM2B_ENCRYPTED_SECRET` contents: the OAEP-encrypted seed (RSA) or
    /// the ephemeral public point (ECC).
    pub encrypted_secret: Vec<u8>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CredentialError {
    #[error("credential must be 1..={MAX_CREDENTIAL_LEN} bytes, got {0}")]
    CredentialSize(usize),
    #[error("AK name must be a nameAlg (u16) followed by a digest, got {0} bytes")]
    BadName(usize),
    #[error("EK RSA key is {0} bits; {MIN_EK_BITS} to {MAX_EK_BITS} are supported")]
    WeakEk(usize),
    #[error("EK is not a key credentials can be made for: {0}")]
    Unsupported(String),
    #[error("RSA-OAEP encryption of the seed failed: {0}")]
    Encrypt(String),
}

/// The EK's public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EkKey {
    Rsa(RsaPublicKey),
    P256(p256::PublicKey),
    P384(p384::PublicKey),
}

/// An EK credentials can be protected to: its key, nameAlg and inner symmetric key size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialKey {
    pub key: EkKey,
    pub name_alg: HashAlg,
    /// AES key size of the EK's symmetric definition (128 or 256).
    pub sym_bits: u16,
    /// The EK's x coordinate exactly as its public area holds it (KDFe's PartyVInfo).
    ecc_x: Vec<u8>,
}

impl CredentialKey {
    /// Checks that `ek` is a key of the profile's templates and takes what
    /// MakeCredential needs from it.
    pub fn from_public(ek: &TpmPublic) -> Result<Self, CredentialError> {
        let unsupported = |m: String| CredentialError::Unsupported(m);
        if !matches!(
            ek.name_alg,
            HashAlg::Sha256 | HashAlg::Sha384 | HashAlg::Sha512
        ) {
            return Err(unsupported(format!(
                "nameAlg {} (sha256, sha384 or sha512 are supported)",
                ek.name_alg
            )));
        }
        let sym_bits = match &ek.symmetric {
            Some(s) if s.alg == TPM_ALG_AES && s.mode == TPM_ALG_CFB && matches!(s.key_bits, 128 | 256) => {
                s.key_bits
            }
            other => {
                return Err(unsupported(format!(
                    "symmetric definition {other:?} (AES-128-CFB or AES-256-CFB, as in the TCG EK templates, are supported)"
                )))
            }
        };
        let (key, ecc_x) = match &ek.key {
            PublicKey::Rsa { modulus, .. } => {
                let bits = rsa::BigUint::from_bytes_be(modulus).bits();
                if !(MIN_EK_BITS..=MAX_EK_BITS).contains(&bits) {
                    return Err(CredentialError::WeakEk(bits));
                }
                let k = ek
                    .rsa_public_key()
                    .ok_or_else(|| unsupported("the RSA key is invalid".into()))?;
                (EkKey::Rsa(k), Vec::new())
            }
            PublicKey::Ecc { curve, x, y } => {
                let point = |len: usize| -> Result<Vec<u8>, CredentialError> {
                    if x.len() > len || y.len() > len {
                        return Err(unsupported(
                            "ECC coordinates longer than the curve's field".into(),
                        ));
                    }
                    let mut p = vec![0x04];
                    p.resize(1 + len - x.len(), 0);
                    p.extend_from_slice(x);
                    p.resize(1 + 2 * len - y.len(), 0);
                    p.extend_from_slice(y);
                    Ok(p)
                };
                let off = |_| unsupported("the ECC point is not on its curve".into());
                let key = match *curve {
                    TPM_ECC_NIST_P256 => {
                        EkKey::P256(p256::PublicKey::from_sec1_bytes(&point(32)?).map_err(off)?)
                    }
                    TPM_ECC_NIST_P384 => {
                        EkKey::P384(p384::PublicKey::from_sec1_bytes(&point(48)?).map_err(off)?)
                    }
                    c => {
                        return Err(unsupported(format!(
                            "ECC curve {c:#06x} (NIST P-256 and P-384 are supported)"
                        )))
                    }
                };
                (key, x.clone())
            }
        };
        Ok(Self {
            key,
            name_alg: ek.name_alg,
            sym_bits,
            ecc_x,
        })
    }
}

/// Protects `credential` to the EK `ek`, bound to the object named `ak_name`.
pub fn make_credential(
    ek: &CredentialKey,
    ak_name: &[u8],
    credential: &[u8],
    rng: &mut impl CryptoRngCore,
) -> Result<MadeCredential, CredentialError> {
    if credential.is_empty() || credential.len() > MAX_CREDENTIAL_LEN {
        return Err(CredentialError::CredentialSize(credential.len()));
    }
    // A TPM name is a 2-byte algorithm ID and a digest; anything shorter cannot be one.
    if ak_name.len() < 2 + 20 || ak_name.len() > 2 + 64 {
        return Err(CredentialError::BadName(ak_name.len()));
    }
    let h = ek.name_alg;
    let (seed, encrypted_secret) = match &ek.key {
        EkKey::Rsa(k) => {
            let bits = rsa::traits::PublicKeyParts::n(k).bits();
            if !(MIN_EK_BITS..=MAX_EK_BITS).contains(&bits) {
                return Err(CredentialError::WeakEk(bits));
            }
            let mut seed = vec![0u8; h.digest_len()];
            rng.fill_bytes(&mut seed);
            let enc = match h {
                HashAlg::Sha384 => {
                    k.encrypt(rng, Oaep::new_with_label::<Sha384, _>("IDENTITY\0"), &seed)
                }
                HashAlg::Sha512 => {
                    k.encrypt(rng, Oaep::new_with_label::<Sha512, _>("IDENTITY\0"), &seed)
                }
                _ => k.encrypt(rng, Oaep::new_with_label::<Sha256, _>("IDENTITY\0"), &seed),
            }
            .map_err(|e| CredentialError::Encrypt(e.to_string()))?;
            (seed, enc)
        }
        EkKey::P256(k) => {
            let eph = p256::ecdh::EphemeralSecret::random(rng);
            let z = eph.diffie_hellman(k);
            let q = p256::EncodedPoint::from(eph.public_key());
            ecc_seed(h, z.raw_secret_bytes(), q.x(), q.y(), &ek.ecc_x)?
        }
        EkKey::P384(k) => {
            let eph = p384::ecdh::EphemeralSecret::random(rng);
            let z = eph.diffie_hellman(k);
            let q = p384::EncodedPoint::from(eph.public_key());
            ecc_seed(h, z.raw_secret_bytes(), q.x(), q.y(), &ek.ecc_x)?
        }
    };

    let sym_key = kdfa(h, &seed, b"STORAGE", ak_name, &[], u32::from(ek.sym_bits));
    let mut enc_identity = Vec::with_capacity(2 + credential.len());
    enc_identity.extend_from_slice(&(credential.len() as u16).to_be_bytes());
    enc_identity.extend_from_slice(credential);
    let iv = [0u8; 16];
    match ek.sym_bits {
        128 => cfb_mode::Encryptor::<aes::Aes128>::new(sym_key.as_slice().into(), &iv.into())
            .encrypt(&mut enc_identity),
        _ => cfb_mode::Encryptor::<aes::Aes256>::new(sym_key.as_slice().into(), &iv.into())
            .encrypt(&mut enc_identity),
    }

    let hmac_key = kdfa(h, &seed, b"INTEGRITY", &[], &[], 8 * h.digest_len() as u32);
    let outer_hmac = hmac(h, &hmac_key, &[&enc_identity, ak_name]);

    let mut credential_blob = Vec::with_capacity(2 + outer_hmac.len() + enc_identity.len());
    credential_blob.extend_from_slice(&(outer_hmac.len() as u16).to_be_bytes());
    credential_blob.extend_from_slice(&outer_hmac);
    credential_blob.extend_from_slice(&enc_identity);
    Ok(MadeCredential {
        credential_blob,
        encrypted_secret,
    })
}

/// The ECC seed and the `TPMS_ECC_POINT` of the ephemeral key.
fn ecc_seed(
    h: HashAlg,
    z: &[u8],
    qx: Option<&impl AsRef<[u8]>>,
    qy: Option<&impl AsRef<[u8]>>,
    ek_x: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), CredentialError> {
    let (Some(qx), Some(qy)) = (qx, qy) else {
        // An uncompressed encoding of a non-identity point always has both.
        return Err(CredentialError::Unsupported(
            "ephemeral point has no coordinates".into(),
        ));
    };
    let (qx, qy) = (qx.as_ref(), qy.as_ref());
    let seed = kdfe(h, z, b"IDENTITY", qx, ek_x, 8 * h.digest_len() as u32);
    let mut point = Vec::with_capacity(4 + qx.len() + qy.len());
    for c in [qx, qy] {
        point.extend_from_slice(&(c.len() as u16).to_be_bytes());
        point.extend_from_slice(c);
    }
    Ok((seed, point))
}

fn hmac_with<D: Digest + BlockSizeUser>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    // HMAC accepts keys of any length: `new_from_slice` cannot fail.
    let mut mac = <SimpleHmac<D> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().to_vec()
}

/// HMAC over the concatenation of `parts` with hash `h`.
pub fn hmac(h: HashAlg, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    match h {
        HashAlg::Sha1 => hmac_with::<sha1::Sha1>(key, parts),
        HashAlg::Sha256 => hmac_with::<Sha256>(key, parts),
        HashAlg::Sha384 => hmac_with::<Sha384>(key, parts),
        HashAlg::Sha512 => hmac_with::<Sha512>(key, parts),
    }
}

/// KDFa (TPM 2.0 Part 1, §11.4.10.2; SP 800-108 counter mode with HMAC-`h`):
/// `HMAC(key, u32be(i) || label || 0x00 || context_u || context_v || u32be(bits))`,
/// concatenated for i = 1.. and truncated to `bits` (a multiple of 8).
pub fn kdfa(
    h: HashAlg,
    key: &[u8],
    label: &[u8],
    context_u: &[u8],
    context_v: &[u8],
    bits: u32,
) -> Vec<u8> {
    debug_assert!(
        bits.is_multiple_of(8),
        "KDFa is only used for whole bytes here"
    );
    counter_mode(bits, |counter| {
        hmac(
            h,
            key,
            &[
                &counter.to_be_bytes(),
                label,
                &[0],
                context_u,
                context_v,
                &bits.to_be_bytes(),
            ],
        )
    })
}

/// The blocks `block(1), block(2), …` concatenated and cut to `bits` (the counter
/// construction KDFa and KDFe share).
fn counter_mode(bits: u32, mut block: impl FnMut(u32) -> Vec<u8>) -> Vec<u8> {
    let len = (bits / 8) as usize;
    let mut out = Vec::with_capacity(len + 64);
    let mut counter = 1u32;
    while out.len() < len {
        out.extend(block(counter));
        counter += 1;
    }
    out.truncate(len);
    out
}

/// KDFe (TPM 2.0 Part 1, §11.4.10.3; SP 800-56A concatenation KDF):
/// `H(u32be(i) || Z || label || 0x00 || party_u || party_v)`, concatenated
/// for i = 1.. and truncated to `bits`.
pub fn kdfe(
    h: HashAlg,
    z: &[u8],
    label: &[u8],
    party_u: &[u8],
    party_v: &[u8],
    bits: u32,
) -> Vec<u8> {
    counter_mode(bits, |counter| {
        let mut b =
            Vec::with_capacity(4 + z.len() + label.len() + 1 + party_u.len() + party_v.len());
        b.extend_from_slice(&counter.to_be_bytes());
        b.extend_from_slice(z);
        b.extend_from_slice(label);
        b.push(0);
        b.extend_from_slice(party_u);
        b.extend_from_slice(party_v);
        h.digest(&b)
    })
}

/// The digest of `data` under SHA-256, for callers that store a credential's hash.
pub fn credential_digest(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
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
    use crate::tpm::public::parse_tpm2b_public;
    use crate::verify::testutil::{
        activate_credential_with, ecc_ek_public_bytes, rsa_ek_public_bytes_with, SoftEk,
    };
    use rand::SeedableRng;
    use rsa::RsaPrivateKey;

    fn key(bits: usize) -> RsaPrivateKey {
        let mut rng = rand::rngs::StdRng::seed_from_u64(bits as u64);
        RsaPrivateKey::new(&mut rng, bits).unwrap()
    }

    fn name() -> Vec<u8> {
        let mut n = vec![0x00, 0x0b];
        n.extend_from_slice(&Sha256::digest(b"an AK public area"));
        n
    }

    /// A software EK of one of the profile's shapes, its public area and the parsed key.
    struct Ek {
        soft: SoftEk,
        name_alg: HashAlg,
        sym_bits: u16,
        key: CredentialKey,
    }

    fn rsa_ek(bits: usize, name_alg: HashAlg, sym_bits: u16) -> Ek {
        let k = key(bits);
        let public = rsa_ek_public_bytes_with(&k.to_public_key(), name_alg, sym_bits);
        let key = CredentialKey::from_public(&parse_tpm2b_public(&public).unwrap()).unwrap();
        Ek {
            soft: SoftEk::Rsa(Box::new(k)),
            name_alg,
            sym_bits,
            key,
        }
    }

    fn ecc_ek(curve: u16, name_alg: HashAlg, sym_bits: u16) -> Ek {
        let mut rng = rand::rngs::StdRng::seed_from_u64(u64::from(curve));
        let (soft, point) = if curve == TPM_ECC_NIST_P256 {
            let k = p256::SecretKey::random(&mut rng);
            let p = p256::EncodedPoint::from(k.public_key()).as_bytes().to_vec();
            (SoftEk::P256(k), p)
        } else {
            let k = p384::SecretKey::random(&mut rng);
            let p = p384::EncodedPoint::from(k.public_key()).as_bytes().to_vec();
            (SoftEk::P384(k), p)
        };
        let len = (point.len() - 1) / 2;
        let public = ecc_ek_public_bytes(
            curve,
            &point[1..1 + len],
            &point[1 + len..],
            name_alg,
            sym_bits,
        );
        let key = CredentialKey::from_public(&parse_tpm2b_public(&public).unwrap()).unwrap();
        Ek {
            soft,
            name_alg,
            sym_bits,
            key,
        }
    }

    fn activate(ek: &Ek, name: &[u8], made: &MadeCredential) -> Result<Vec<u8>, &'static str> {
        activate_credential_with(
            &ek.soft,
            ek.name_alg,
            ek.sym_bits,
            name,
            &made.credential_blob,
            &made.encrypted_secret,
        )
    }

    /// The profile's shapes: L-1, H-6, H-7 (RSA), L-2, H-2, H-3 (ECC).
    fn profile_eks() -> Vec<(&'static str, Ek)> {
        vec![
            ("RSA-2048 L-1", rsa_ek(2048, HashAlg::Sha256, 128)),
            ("RSA-3072 H-6", rsa_ek(3072, HashAlg::Sha384, 256)),
            ("RSA-4096 H-7", rsa_ek(4096, HashAlg::Sha384, 256)),
            ("P-256 L-2", ecc_ek(TPM_ECC_NIST_P256, HashAlg::Sha256, 128)),
            (
                "P-256 SHA-512",
                ecc_ek(TPM_ECC_NIST_P256, HashAlg::Sha512, 256),
            ),
            ("P-384 H-3", ecc_ek(TPM_ECC_NIST_P384, HashAlg::Sha384, 256)),
        ]
    }

    #[test]
    fn round_trips_through_a_spec_activation_for_every_profile_shape() {
        for (what, ek) in profile_eks() {
            let mut rng = rand::rngs::StdRng::seed_from_u64(7);
            let made = make_credential(
                &ek.key,
                &name(),
                b"0123456789abcdef0123456789abcdef",
                &mut rng,
            )
            .unwrap();
            let h = ek.name_alg.digest_len();
            assert_eq!(made.credential_blob.len(), 2 + h + 2 + 32, "{what}");
            let want_secret = match &ek.soft {
                SoftEk::Rsa(k) => rsa::traits::PublicKeyParts::size(k.as_ref()),
                SoftEk::P256(_) => 2 + 32 + 2 + 32,
                SoftEk::P384(_) => 2 + 48 + 2 + 48,
            };
            assert_eq!(made.encrypted_secret.len(), want_secret, "{what}");
            assert_eq!(
                activate(&ek, &name(), &made).unwrap(),
                b"0123456789abcdef0123456789abcdef",
                "{what}"
            );
        }
    }

    #[test]
    fn activation_under_another_name_fails_integrity() {
        // The attack: a node activates the credential with a different (e.g. software) key loaded.
        for (what, ek) in profile_eks() {
            let made =
                make_credential(&ek.key, &name(), b"secret", &mut rand::rngs::OsRng).unwrap();
            let mut other = name();
            other[5] ^= 1;
            assert_eq!(activate(&ek, &other, &made), Err("integrity"), "{what}");
        }
    }

    #[test]
    fn another_ek_cannot_recover_the_seed() {
        let ek = rsa_ek(2048, HashAlg::Sha256, 128);
        let made = make_credential(&ek.key, &name(), b"secret", &mut rand::rngs::OsRng).unwrap();
        let mut other = rsa_ek(2048, HashAlg::Sha256, 128);
        other.soft = SoftEk::Rsa(Box::new(
            RsaPrivateKey::new(&mut rand::rngs::StdRng::seed_from_u64(99), 2048).unwrap(),
        ));
        assert_eq!(activate(&other, &name(), &made), Err("oaep"));
        // ECC: another key derives another seed, so the integrity check fails.
        let ek = ecc_ek(TPM_ECC_NIST_P256, HashAlg::Sha256, 128);
        let made = make_credential(&ek.key, &name(), b"secret", &mut rand::rngs::OsRng).unwrap();
        let mut other = ecc_ek(TPM_ECC_NIST_P256, HashAlg::Sha256, 128);
        other.soft = SoftEk::P256(p256::SecretKey::random(&mut rand::rngs::OsRng));
        assert_eq!(activate(&other, &name(), &made), Err("integrity"));
    }

    #[test]
    fn fresh_randomness_each_call() {
        for (what, ek) in profile_eks() {
            let a = make_credential(&ek.key, &name(), b"same", &mut rand::rngs::OsRng).unwrap();
            let b = make_credential(&ek.key, &name(), b"same", &mut rand::rngs::OsRng).unwrap();
            assert_ne!(a.encrypted_secret, b.encrypted_secret, "{what}");
            assert_ne!(a.credential_blob, b.credential_blob, "{what}");
        }
    }

    #[test]
    fn refuses_bad_sizes() {
        let ek = rsa_ek(2048, HashAlg::Sha256, 128).key;
        let r = &mut rand::rngs::OsRng;
        assert_eq!(
            make_credential(&ek, &name(), &[], r),
            Err(CredentialError::CredentialSize(0))
        );
        assert_eq!(
            make_credential(&ek, &name(), &[0; 33], r),
            Err(CredentialError::CredentialSize(33))
        );
        assert_eq!(
            make_credential(&ek, &[0, 11], b"x", r),
            Err(CredentialError::BadName(2))
        );
        assert_eq!(
            make_credential(&ek, &[0; 67], b"x", r),
            Err(CredentialError::BadName(67))
        );
    }

    #[test]
    fn refuses_eks_outside_the_profile() {
        let parse = |b: Vec<u8>| CredentialKey::from_public(&parse_tpm2b_public(&b).unwrap());
        // Weak RSA.
        let weak = key(1024).to_public_key();
        assert_eq!(
            parse(rsa_ek_public_bytes_with(&weak, HashAlg::Sha256, 128)),
            Err(CredentialError::WeakEk(1024))
        );
        let k = key(2048).to_public_key();
        // SHA-1 nameAlg, AES-192.
        assert!(matches!(
            parse(rsa_ek_public_bytes_with(&k, HashAlg::Sha1, 128)),
            Err(CredentialError::Unsupported(m)) if m.contains("nameAlg")
        ));
        assert!(matches!(
            parse(rsa_ek_public_bytes_with(&k, HashAlg::Sha256, 192)),
            Err(CredentialError::Unsupported(m)) if m.contains("symmetric")
        ));
        // P-521 (no curve arithmetic here), and a point off the curve.
        assert!(matches!(
            parse(ecc_ek_public_bytes(0x0005, &[1; 66], &[2; 66], HashAlg::Sha512, 256)),
            Err(CredentialError::Unsupported(m)) if m.contains("curve")
        ));
        assert!(matches!(
            parse(ecc_ek_public_bytes(TPM_ECC_NIST_P256, &[1; 32], &[2; 32], HashAlg::Sha256, 128)),
            Err(CredentialError::Unsupported(m)) if m.contains("not on its curve")
        ));
        assert!(matches!(
            parse(ecc_ek_public_bytes(TPM_ECC_NIST_P256, &[1; 33], &[2; 32], HashAlg::Sha256, 128)),
            Err(CredentialError::Unsupported(m)) if m.contains("longer")
        ));
    }

    #[test]
    fn kdfa_multi_block_prefix_property() {
        // Counter mode: the first 32 bytes of a 512-bit output differ from the 256-bit
        // output (bits is part of the input) and outputs have the requested length.
        let a = kdfa(HashAlg::Sha256, b"k", b"STORAGE", b"u", b"", 256);
        let b = kdfa(HashAlg::Sha256, b"k", b"STORAGE", b"u", b"", 512);
        assert_eq!(a.len(), 32);
        assert_eq!(b.len(), 64);
        assert_ne!(a[..], b[..32]);
        assert_eq!(
            kdfa(HashAlg::Sha256, b"k", b"STORAGE", b"u", b"", 128).len(),
            16
        );
        assert_eq!(
            kdfa(HashAlg::Sha384, b"k", b"STORAGE", b"u", b"", 256).len(),
            32
        );
    }

    #[test]
    fn kdfe_is_the_concatenation_kdf() {
        // One block by hand: SHA-256(u32be(1) || Z || "IDENTITY\0" || U || V).
        let mut block = vec![0, 0, 0, 1];
        block.extend_from_slice(b"zz");
        block.extend_from_slice(b"IDENTITY\0");
        block.extend_from_slice(b"u");
        block.extend_from_slice(b"v");
        assert_eq!(
            kdfe(HashAlg::Sha256, b"zz", b"IDENTITY", b"u", b"v", 256),
            Sha256::digest(&block).to_vec()
        );
        // Two blocks, truncated.
        let long = kdfe(HashAlg::Sha256, b"zz", b"IDENTITY", b"u", b"v", 384);
        assert_eq!(long.len(), 48);
        assert_eq!(long[..32], Sha256::digest(&block)[..]);
    }
}
