//! `TPMT_SIGNATURE` (TPM 2.0 Part 2, 11.3.4) and its verification with a TPM public key.

use rsa::traits::PublicKeyParts;

use crate::reader::{Reader, WireError};
use crate::tpm::public::{
    left_pad, HashAlg, PublicKey, TpmPublic, MAX_ECC_KEY_BYTES, MAX_RSA_KEY_BYTES, TPM_ALG_ECDSA,
    TPM_ALG_RSAPSS, TPM_ALG_RSASSA, TPM_ECC_NIST_P256,
};

/// A parsed `TPMT_SIGNATURE` of a scheme Assay verifies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TpmSignature {
    RsaSsa {
        hash: HashAlg,
        sig: Vec<u8>,
    },
    RsaPss {
        hash: HashAlg,
        sig: Vec<u8>,
    },
    Ecdsa {
        hash: HashAlg,
        r: Vec<u8>,
        s: Vec<u8>,
    },
}

impl TpmSignature {
    /// The `TPM_ALG_ID` of the scheme.
    pub fn scheme(&self) -> u16 {
        match self {
            Self::RsaSsa { .. } => TPM_ALG_RSASSA,
            Self::RsaPss { .. } => TPM_ALG_RSAPSS,
            Self::Ecdsa { .. } => TPM_ALG_ECDSA,
        }
    }

    pub fn hash(&self) -> HashAlg {
        match self {
            Self::RsaSsa { hash, .. } | Self::RsaPss { hash, .. } | Self::Ecdsa { hash, .. } => {
                *hash
            }
        }
    }

    fn scheme_name(&self) -> &'static str {
        match self {
            Self::RsaSsa { .. } => "RSASSA",
            Self::RsaPss { .. } => "RSAPSS",
            Self::Ecdsa { .. } => "ECDSA",
        }
    }

    /// Encodes as a `TPMT_SIGNATURE` (the inverse of [`parse_tpmt_signature`]).
    pub fn to_bytes(&self) -> Vec<u8> {
        fn tpm2b(out: &mut Vec<u8>, b: &[u8]) {
            out.extend(u16::try_from(b.len()).unwrap_or(u16::MAX).to_be_bytes());
            out.extend(b);
        }
        let mut out = self.scheme().to_be_bytes().to_vec();
        out.extend(self.hash().to_tpm().to_be_bytes());
        match self {
            Self::RsaSsa { sig, .. } | Self::RsaPss { sig, .. } => tpm2b(&mut out, sig),
            Self::Ecdsa { r, s, .. } => {
                tpm2b(&mut out, r);
                tpm2b(&mut out, s);
            }
        }
        out
    }
}

/// Parses a `TPMT_SIGNATURE` filling all of `bytes` (RSASSA, RSAPSS or ECDSA).
pub fn parse_tpmt_signature(bytes: &[u8]) -> Result<TpmSignature, WireError> {
    let mut r = Reader::new(bytes);
    let alg = r.u16("TPMT_SIGNATURE.sigAlg")?;
    if ![TPM_ALG_RSASSA, TPM_ALG_RSAPSS, TPM_ALG_ECDSA].contains(&alg) {
        return Err(WireError::Unsupported {
            what: "TPMT_SIGNATURE.sigAlg",
            value: u32::from(alg),
        });
    }
    let hash = HashAlg::read(&mut r, "TPMT_SIGNATURE.hash")?;
    let sig = match alg {
        TPM_ALG_ECDSA => {
            let sr = r
                .tpm2b(MAX_ECC_KEY_BYTES, "TPMS_SIGNATURE_ECDSA.signatureR")?
                .to_vec();
            let ss = r
                .tpm2b(MAX_ECC_KEY_BYTES, "TPMS_SIGNATURE_ECDSA.signatureS")?
                .to_vec();
            TpmSignature::Ecdsa { hash, r: sr, s: ss }
        }
        _ => {
            let sig = r
                .tpm2b(MAX_RSA_KEY_BYTES, "TPMS_SIGNATURE_RSA.sig")?
                .to_vec();
            if alg == TPM_ALG_RSASSA {
                TpmSignature::RsaSsa { hash, sig }
            } else {
                TpmSignature::RsaPss { hash, sig }
            }
        }
    };
    r.expect_empty("TPMT_SIGNATURE")?;
    Ok(sig)
}

/// Why a signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("a {sig} signature cannot come from a {key} key")]
    KeyMismatch {
        key: &'static str,
        sig: &'static str,
    },
    #[error("the key is bound to scheme {key_scheme:#06x} with {key_hash}, but the signature uses {sig_scheme:#06x} with {sig_hash}")]
    SchemeMismatch {
        key_scheme: u16,
        key_hash: HashAlg,
        sig_scheme: u16,
        sig_hash: HashAlg,
    },
    #[error("the public key is not usable: {0}")]
    UnusableKey(&'static str),
    #[error(
        "the signature does not verify with this key (forged, altered, or made by another key)"
    )]
    Invalid,
}

/// Verifies `sig` over `message` with `key`. The message is hashed with the
/// signature's hash; when the key fixes a scheme, the signature must use it.
pub fn verify_signature(
    key: &TpmPublic,
    message: &[u8],
    sig: &TpmSignature,
) -> Result<(), SignatureError> {
    let key_kind = match key.key {
        PublicKey::Rsa { .. } => "RSA",
        PublicKey::Ecc { .. } => "ECC",
    };
    let sig_is_rsa = matches!(
        sig,
        TpmSignature::RsaSsa { .. } | TpmSignature::RsaPss { .. }
    );
    if sig_is_rsa != (key_kind == "RSA") {
        return Err(SignatureError::KeyMismatch {
            key: key_kind,
            sig: sig.scheme_name(),
        });
    }
    if let Some(s) = key.scheme {
        if s.alg != sig.scheme() || s.hash != sig.hash() {
            return Err(SignatureError::SchemeMismatch {
                key_scheme: s.alg,
                key_hash: s.hash,
                sig_scheme: sig.scheme(),
                sig_hash: sig.hash(),
            });
        }
    }
    // Fast path: ring's assembly-backed verification for the common cases
    // (RSA 2048–8192 PKCS#1 v1.5 and PSS with salt = hash length, ECDSA
    // P-256). Anything it does not accept — another scheme or size, PSS with
    // the largest salt, or a bad signature (for the precise error) — goes to
    // RustCrypto, which implements every case. Both agree (tested).
    if verify_with_ring(key, message, sig) == Some(true) {
        return Ok(());
    }
    verify_with_rustcrypto(key, message, sig)
}

/// Verifies with ring where it implements the scheme: `None` when it does not.
fn verify_with_ring(key: &TpmPublic, message: &[u8], signature: &TpmSignature) -> Option<bool> {
    use ring::signature as rs;
    let pss = matches!(signature, TpmSignature::RsaPss { .. });
    match (signature, &key.key) {
        (TpmSignature::RsaSsa { hash, sig }, PublicKey::Rsa { modulus, exponent })
        | (TpmSignature::RsaPss { hash, sig }, PublicKey::Rsa { modulus, exponent }) => {
            let alg: &'static rs::RsaParameters = match (pss, hash) {
                (false, HashAlg::Sha1) => &rs::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
                (false, HashAlg::Sha256) => &rs::RSA_PKCS1_2048_8192_SHA256,
                (false, HashAlg::Sha384) => &rs::RSA_PKCS1_2048_8192_SHA384,
                (false, HashAlg::Sha512) => &rs::RSA_PKCS1_2048_8192_SHA512,
                (true, HashAlg::Sha256) => &rs::RSA_PSS_2048_8192_SHA256,
                (true, HashAlg::Sha384) => &rs::RSA_PSS_2048_8192_SHA384,
                (true, HashAlg::Sha512) => &rs::RSA_PSS_2048_8192_SHA512,
                (true, HashAlg::Sha1) => return None,
            };
            let n = modulus.get(modulus.iter().take_while(|b| **b == 0).count()..)?;
            if !(2048..=8192).contains(&(n.len() * 8)) {
                return None;
            }
            let e = if *exponent == 0 { 65_537 } else { *exponent };
            let e = e.to_be_bytes();
            let e = e.get(e.iter().take_while(|b| **b == 0).count()..)?;
            Some(
                rs::RsaPublicKeyComponents { n, e }
                    .verify(alg, message, sig)
                    .is_ok(),
            )
        }
        (TpmSignature::Ecdsa { hash, r, s }, PublicKey::Ecc { curve, x, y })
            if *curve == TPM_ECC_NIST_P256 =>
        {
            if *hash != HashAlg::Sha256 {
                return None;
            }
            let (x, y) = (left_pad::<32>(x)?, left_pad::<32>(y)?);
            let point = [&[4u8][..], &x, &y].concat();
            let (Some(r), Some(s)) = (left_pad::<32>(r), left_pad::<32>(s)) else {
                return Some(false);
            };
            Some(
                rs::UnparsedPublicKey::new(&rs::ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, &[r, s].concat())
                    .is_ok(),
            )
        }
        _ => None,
    }
}

/// The RustCrypto path (every scheme and size the parser accepts).
fn verify_with_rustcrypto(
    key: &TpmPublic,
    message: &[u8],
    sig: &TpmSignature,
) -> Result<(), SignatureError> {
    let digest = sig.hash().digest(message);
    match sig {
        TpmSignature::RsaSsa { hash, sig } => {
            let k = key
                .rsa_public_key()
                .ok_or(SignatureError::UnusableKey("invalid RSA public key"))?;
            k.verify(pkcs1v15(*hash), &digest, sig)
                .map_err(|_| SignatureError::Invalid)
        }
        TpmSignature::RsaPss { hash, sig } => {
            let k = key
                .rsa_public_key()
                .ok_or(SignatureError::UnusableKey("invalid RSA public key"))?;
            // TPM 2.0 Part 1 (B.7): the salt is the hash length (libtpms and FIPS-mode TPMs),
            // or, on TPMs following earlier revisions, the largest salt the key allows.
            let h = hash.digest_len();
            let em_len = (k.n().bits().saturating_sub(1)).div_ceil(8);
            let max_salt = em_len.saturating_sub(h + 2);
            for salt in [h, max_salt] {
                if k.verify(pss(*hash, salt), &digest, sig).is_ok() {
                    return Ok(());
                }
            }
            Err(SignatureError::Invalid)
        }
        TpmSignature::Ecdsa { r, s, .. } => {
            use p256::ecdsa::signature::hazmat::PrehashVerifier;
            let PublicKey::Ecc { curve, .. } = &key.key else {
                return Err(SignatureError::UnusableKey("not ECC"));
            };
            if *curve != TPM_ECC_NIST_P256 {
                return Err(SignatureError::UnusableKey(
                    "only NIST P-256 ECDSA keys are supported",
                ));
            }
            let vk = key
                .p256_public_key()
                .ok_or(SignatureError::UnusableKey("invalid NIST P-256 point"))?;
            let (r, s) = (
                left_pad::<32>(r).ok_or(SignatureError::Invalid)?,
                left_pad::<32>(s).ok_or(SignatureError::Invalid)?,
            );
            let sig =
                p256::ecdsa::Signature::from_scalars(r, s).map_err(|_| SignatureError::Invalid)?;
            vk.verify_prehash(&digest, &sig)
                .map_err(|_| SignatureError::Invalid)
        }
    }
}

fn pkcs1v15(hash: HashAlg) -> rsa::Pkcs1v15Sign {
    match hash {
        HashAlg::Sha1 => rsa::Pkcs1v15Sign::new::<sha1::Sha1>(),
        HashAlg::Sha256 => rsa::Pkcs1v15Sign::new::<sha2::Sha256>(),
        HashAlg::Sha384 => rsa::Pkcs1v15Sign::new::<sha2::Sha384>(),
        HashAlg::Sha512 => rsa::Pkcs1v15Sign::new::<sha2::Sha512>(),
    }
}

fn pss(hash: HashAlg, salt: usize) -> rsa::Pss {
    match hash {
        HashAlg::Sha1 => rsa::Pss::new_with_salt::<sha1::Sha1>(salt),
        HashAlg::Sha256 => rsa::Pss::new_with_salt::<sha2::Sha256>(salt),
        HashAlg::Sha384 => rsa::Pss::new_with_salt::<sha2::Sha384>(salt),
        HashAlg::Sha512 => rsa::Pss::new_with_salt::<sha2::Sha512>(salt),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
    use super::*;
    use crate::tpm::public::{parse_tpm2b_public, TPM_ALG_NULL};
    use crate::verify::testutil::{self, TestAk};
    use rand::SeedableRng;

    const MSG: &[u8] = b"a TPMS_ATTEST would go here";

    fn rng() -> rand::rngs::StdRng {
        rand::rngs::StdRng::seed_from_u64(1)
    }

    fn all_aks() -> [&'static TestAk; 3] {
        [
            testutil::shared_rsa_ak(),
            testutil::shared_rsapss_ak(),
            testutil::shared_p256_ak(),
        ]
    }

    #[test]
    fn accepts_signatures_from_rsassa_rsapss_and_ecdsa_aks() {
        for ak in all_aks() {
            let sig = parse_tpmt_signature(&ak.sign(&mut rng(), MSG)).unwrap();
            verify_signature(&ak.public(), MSG, &sig).unwrap();
        }
    }

    #[test]
    fn ring_and_rustcrypto_agree_on_good_and_damaged_signatures() {
        for ak in all_aks() {
            let public = ak.public();
            let good = parse_tpmt_signature(&ak.sign(&mut rng(), MSG)).unwrap();
            assert_eq!(verify_with_ring(&public, MSG, &good), Some(true));
            assert!(verify_with_rustcrypto(&public, MSG, &good).is_ok());
            // Every byte of the signature, and of the message, damaged in turn.
            let raw = good.to_bytes();
            for i in (6..raw.len()).step_by(7) {
                let mut bad = raw.clone();
                bad[i] ^= 0x01;
                let Ok(bad) = parse_tpmt_signature(&bad) else {
                    continue;
                };
                assert_eq!(
                    verify_with_ring(&public, MSG, &bad).unwrap_or(false),
                    verify_with_rustcrypto(&public, MSG, &bad).is_ok(),
                    "signature byte {i}"
                );
                assert!(verify_signature(&public, MSG, &bad).is_err());
            }
            for i in 0..MSG.len() {
                let mut msg = MSG.to_vec();
                msg[i] ^= 0x80;
                assert_eq!(verify_with_ring(&public, &msg, &good), Some(false));
                assert!(verify_with_rustcrypto(&public, &msg, &good).is_err());
            }
        }
    }

    #[test]
    fn accepts_rsapss_with_maximum_salt() {
        let ak = testutil::shared_rsapss_ak();
        let testutil::SigningKey::Rsa(k) = &ak.key else {
            panic!()
        };
        let digest = HashAlg::Sha256.digest(MSG);
        let raw = k
            .sign_with_rng(
                &mut rng(),
                rsa::Pss::new_with_salt::<sha2::Sha256>(256 - 32 - 2),
                &digest,
            )
            .unwrap();
        let sig = TpmSignature::RsaPss {
            hash: HashAlg::Sha256,
            sig: raw,
        };
        verify_signature(&ak.public(), MSG, &sig).unwrap();
        // Any other salt length is not what a TPM makes.
        let raw = k
            .sign_with_rng(
                &mut rng(),
                rsa::Pss::new_with_salt::<sha2::Sha256>(20),
                &digest,
            )
            .unwrap();
        let sig = TpmSignature::RsaPss {
            hash: HashAlg::Sha256,
            sig: raw,
        };
        assert_eq!(
            verify_signature(&ak.public(), MSG, &sig),
            Err(SignatureError::Invalid)
        );
    }

    #[test]
    fn round_trips_and_rejects_every_truncation() {
        for ak in all_aks() {
            let bytes = ak.sign(&mut rng(), MSG);
            let sig = parse_tpmt_signature(&bytes).unwrap();
            assert_eq!(sig.to_bytes(), bytes);
            for n in 0..bytes.len() {
                assert!(
                    matches!(
                        parse_tpmt_signature(&bytes[..n]),
                        Err(WireError::MissingData { .. })
                    ),
                    "{n}"
                );
            }
            let mut trailing = bytes.clone();
            trailing.push(0);
            assert!(matches!(
                parse_tpmt_signature(&trailing),
                Err(WireError::TrailingData { .. })
            ));
        }
    }

    #[test]
    fn unknown_schemes_hashes_and_oversized_sizes_are_refused() {
        assert!(matches!(
            parse_tpmt_signature(&[0x00, 0x10, 0x00, 0x0b]),
            Err(WireError::Unsupported {
                what: "TPMT_SIGNATURE.sigAlg",
                value: 0x10
            })
        ));
        assert!(matches!(
            parse_tpmt_signature(&[0x00, 0x14, 0x00, 0x12, 0, 0]),
            Err(WireError::Unsupported {
                what: "TPMT_SIGNATURE.hash",
                value: 0x12
            })
        ));
        assert!(matches!(
            parse_tpmt_signature(&[0x00, 0x14, 0x00, 0x0b, 0x02, 0x01]),
            Err(WireError::TooLarge { .. })
        ));
        assert!(matches!(
            parse_tpmt_signature(&[0x00, 0x18, 0x00, 0x0b, 0x00, 67]),
            Err(WireError::TooLarge { .. })
        ));
    }

    #[test]
    fn rejects_bit_flipped_signature() {
        for ak in all_aks() {
            let mut sig = parse_tpmt_signature(&ak.sign(&mut rng(), MSG)).unwrap();
            match &mut sig {
                TpmSignature::RsaSsa { sig, .. } | TpmSignature::RsaPss { sig, .. } => {
                    sig[100] ^= 1
                }
                TpmSignature::Ecdsa { s, .. } => s[5] ^= 1,
            }
            assert_eq!(
                verify_signature(&ak.public(), MSG, &sig),
                Err(SignatureError::Invalid)
            );
        }
    }

    #[test]
    fn rejects_signature_over_other_message() {
        for ak in all_aks() {
            let sig = parse_tpmt_signature(&ak.sign(&mut rng(), MSG)).unwrap();
            assert_eq!(
                verify_signature(&ak.public(), b"another message", &sig),
                Err(SignatureError::Invalid)
            );
        }
    }

    #[test]
    fn rejects_signature_by_another_key() {
        let other_rsa = TestAk::rsa(testutil::rsa_key(2048, 99), TPM_ALG_RSASSA);
        let sig = parse_tpmt_signature(&other_rsa.sign(&mut rng(), MSG)).unwrap();
        assert_eq!(
            verify_signature(&testutil::shared_rsa_ak().public(), MSG, &sig),
            Err(SignatureError::Invalid)
        );
        let other_ecc = TestAk::p256(p256::ecdsa::SigningKey::random(&mut rng()));
        let sig = parse_tpmt_signature(&other_ecc.sign(&mut rng(), MSG)).unwrap();
        assert_eq!(
            verify_signature(&testutil::shared_p256_ak().public(), MSG, &sig),
            Err(SignatureError::Invalid)
        );
    }

    #[test]
    fn rejects_forged_signatures() {
        let rsa = testutil::shared_rsa_ak().public();
        for forged in [vec![0u8; 256], vec![0xff; 256], vec![1], vec![]] {
            let sig = TpmSignature::RsaSsa {
                hash: HashAlg::Sha256,
                sig: forged,
            };
            assert_eq!(
                verify_signature(&rsa, MSG, &sig),
                Err(SignatureError::Invalid)
            );
        }
        let ecc = testutil::shared_p256_ak().public();
        for (r, s) in [
            (vec![0u8; 32], vec![0u8; 32]),
            (vec![0xff; 32], vec![1; 32]),
            (vec![], vec![]),
            (vec![1; 33], vec![1]),
        ] {
            let sig = TpmSignature::Ecdsa {
                hash: HashAlg::Sha256,
                r,
                s,
            };
            assert_eq!(
                verify_signature(&ecc, MSG, &sig),
                Err(SignatureError::Invalid)
            );
        }
    }

    #[test]
    fn rejects_scheme_or_hash_other_than_the_keys() {
        let ak = testutil::shared_rsa_ak();
        let testutil::SigningKey::Rsa(k) = &ak.key else {
            panic!()
        };
        // A valid PSS signature by the right key, but the AK is bound to RSASSA.
        let raw = k
            .sign_with_rng(
                &mut rng(),
                rsa::Pss::new::<sha2::Sha256>(),
                &HashAlg::Sha256.digest(MSG),
            )
            .unwrap();
        let sig = TpmSignature::RsaPss {
            hash: HashAlg::Sha256,
            sig: raw,
        };
        assert!(matches!(
            verify_signature(&ak.public(), MSG, &sig),
            Err(SignatureError::SchemeMismatch { .. })
        ));
        // Valid RSASSA-SHA1 by the right key, AK bound to sha256.
        let raw = k
            .sign(
                rsa::Pkcs1v15Sign::new::<sha1::Sha1>(),
                &HashAlg::Sha1.digest(MSG),
            )
            .unwrap();
        let sig = TpmSignature::RsaSsa {
            hash: HashAlg::Sha1,
            sig: raw,
        };
        assert!(matches!(
            verify_signature(&ak.public(), MSG, &sig),
            Err(SignatureError::SchemeMismatch { .. })
        ));
        // The same signature is fine for an unrestricted key with no scheme.
        let mut open = ak.clone();
        open.scheme_alg = TPM_ALG_NULL;
        let open = parse_tpm2b_public(&open.public_bytes()).unwrap();
        verify_signature(&open, MSG, &sig).unwrap();
    }

    #[test]
    fn rejects_ecdsa_signature_for_rsa_key_and_vice_versa() {
        let ecc_sig =
            parse_tpmt_signature(&testutil::shared_p256_ak().sign(&mut rng(), MSG)).unwrap();
        assert_eq!(
            verify_signature(&testutil::shared_rsa_ak().public(), MSG, &ecc_sig),
            Err(SignatureError::KeyMismatch {
                key: "RSA",
                sig: "ECDSA"
            })
        );
        let rsa_sig =
            parse_tpmt_signature(&testutil::shared_rsa_ak().sign(&mut rng(), MSG)).unwrap();
        assert_eq!(
            verify_signature(&testutil::shared_p256_ak().public(), MSG, &rsa_sig),
            Err(SignatureError::KeyMismatch {
                key: "ECC",
                sig: "RSASSA"
            })
        );
    }
}
