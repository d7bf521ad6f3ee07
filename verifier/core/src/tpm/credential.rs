//! `TPM2_MakeCredential` in software (TPM 2.0 Library Part 1, §24 "Credential
//! Protection"; Part 3, §12.6).
//!
//! The verifier protects a random credential to a node's EK such that only the
//! TPM holding that EK *and* a loaded object whose name is `ak_name` can
//! recover it with `TPM2_ActivateCredential`. A node that returns the
//! credential has proven that its AK lives in the same TPM as the certified EK.
//!
//! Only the TCG default RSA EK template is supported (RSA-2048 or larger,
//! nameAlg SHA-256, AES-128-CFB inner symmetric); `enroll::check_enrollment`
//! refuses any other EK before this is called.
//!
//! Construction, with `H` = SHA-256 (the EK's nameAlg):
//! ```text
//! seed            = 32 random bytes
//! encrypted_secret= RSA-OAEP(EK, seed, hash H, label "IDENTITY\0")
//! symKey          = KDFa(H, seed, "STORAGE", ak_name, "", 128)
//! encIdentity     = AES-128-CFB(symKey, IV = 0, u16be(len(cred)) || cred)
//! hmacKey         = KDFa(H, seed, "INTEGRITY", "", "", 256)
//! outerHMAC       = HMAC-H(hmacKey, encIdentity || ak_name)
//! credential_blob = u16be(32) || outerHMAC || encIdentity   (TPM2B_ID_OBJECT contents)
//! ```

use aes::cipher::{AsyncStreamCipher, KeyIvInit};
use hmac::{Hmac, Mac};
use rand_core::CryptoRngCore;
use rsa::{Oaep, RsaPublicKey};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;
type Aes128CfbEnc = cfb_mode::Encryptor<aes::Aes128>;

/// Largest credential `TPM2_ActivateCredential` returns for a SHA-256 EK: a
/// `TPM2B_DIGEST` may not exceed the nameAlg digest size.
pub const MAX_CREDENTIAL_LEN: usize = 32;
/// Size of the seed: the digest size of the EK's nameAlg (SHA-256).
const SEED_LEN: usize = 32;
/// The TPM refuses RSA EKs below this; so do we.
const MIN_EK_BITS: usize = 2048;

/// The two halves `TPM2_ActivateCredential` takes, without their `TPM2B` size prefixes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MadeCredential {
    /// `TPM2B_ID_OBJECT` contents: `TPM2B_DIGEST(outerHMAC) || encIdentity`.
    pub credential_blob: Vec<u8>,
    /// `TPM2B_ENCRYPTED_SECRET` contents: the OAEP-encrypted seed.
    pub encrypted_secret: Vec<u8>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CredentialError {
    #[error("credential must be 1..={MAX_CREDENTIAL_LEN} bytes, got {0}")]
    CredentialSize(usize),
    #[error("AK name must be a nameAlg (u16) followed by a digest, got {0} bytes")]
    BadName(usize),
    #[error("EK RSA key is {0} bits; at least {MIN_EK_BITS} are required")]
    WeakEk(usize),
    #[error("RSA-OAEP encryption of the seed failed: {0}")]
    Encrypt(String),
}

/// Protects `credential` to the EK `ek`, bound to the object named `ak_name`.
pub fn make_credential(
    ek: &RsaPublicKey,
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
    let bits = rsa::traits::PublicKeyParts::n(ek).bits();
    if bits < MIN_EK_BITS {
        return Err(CredentialError::WeakEk(bits));
    }

    let mut seed = [0u8; SEED_LEN];
    rng.fill_bytes(&mut seed);
    let encrypted_secret = ek
        .encrypt(rng, Oaep::new_with_label::<Sha256, _>("IDENTITY\0"), &seed)
        .map_err(|e| CredentialError::Encrypt(e.to_string()))?;

    let sym_key = kdfa_sha256(&seed, b"STORAGE", ak_name, &[], 128);
    let mut enc_identity = Vec::with_capacity(2 + credential.len());
    enc_identity.extend_from_slice(&(credential.len() as u16).to_be_bytes());
    enc_identity.extend_from_slice(credential);
    Aes128CfbEnc::new(sym_key.as_slice().into(), &[0u8; 16].into()).encrypt(&mut enc_identity);

    let hmac_key = kdfa_sha256(&seed, b"INTEGRITY", &[], &[], 256);
    let mut mac = hmac_sha256(&hmac_key);
    mac.update(&enc_identity);
    mac.update(ak_name);
    let outer_hmac = mac.finalize().into_bytes();

    let mut credential_blob = Vec::with_capacity(2 + outer_hmac.len() + enc_identity.len());
    credential_blob.extend_from_slice(&(outer_hmac.len() as u16).to_be_bytes());
    credential_blob.extend_from_slice(&outer_hmac);
    credential_blob.extend_from_slice(&enc_identity);
    Ok(MadeCredential {
        credential_blob,
        encrypted_secret,
    })
}

/// HMAC-SHA256 keyed with `key`.
#[allow(clippy::expect_used)] // HMAC accepts keys of any length: `new_from_slice` cannot fail.
fn hmac_sha256(key: &[u8]) -> HmacSha256 {
    HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length")
}

/// KDFa with SHA-256 (TPM 2.0 Part 1, §11.4.10.2; SP 800-108 counter mode):
/// `HMAC(key, u32be(i) || label || 0x00 || context_u || context_v || u32be(bits))`,
/// concatenated for i = 1.. and truncated to `bits` (a multiple of 8).
pub fn kdfa_sha256(
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
    let len = (bits / 8) as usize;
    let mut out = Vec::with_capacity(len + 32);
    let mut counter = 1u32;
    while out.len() < len {
        let mut mac = hmac_sha256(key);
        mac.update(&counter.to_be_bytes());
        mac.update(label);
        mac.update(&[0]);
        mac.update(context_u);
        mac.update(context_v);
        mac.update(&bits.to_be_bytes());
        out.extend_from_slice(&mac.finalize().into_bytes());
        counter += 1;
    }
    out.truncate(len);
    out
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

    fn activate(
        ek: &RsaPrivateKey,
        name: &[u8],
        made: &MadeCredential,
    ) -> Result<Vec<u8>, &'static str> {
        crate::verify::testutil::activate_credential(
            ek,
            name,
            &made.credential_blob,
            &made.encrypted_secret,
        )
    }

    #[test]
    fn round_trips_through_a_spec_activation() {
        let ek = key(2048);
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let made = make_credential(
            &ek.to_public_key(),
            &name(),
            b"0123456789abcdef0123456789abcdef",
            &mut rng,
        )
        .unwrap();
        assert_eq!(made.encrypted_secret.len(), 256);
        assert_eq!(made.credential_blob.len(), 2 + 32 + 2 + 32);
        assert_eq!(
            activate(&ek, &name(), &made).unwrap(),
            b"0123456789abcdef0123456789abcdef"
        );
    }

    #[test]
    fn activation_under_another_name_fails_integrity() {
        // The attack: a node activates the credential with a different (e.g. software) key loaded.
        let ek = key(2048);
        let made = make_credential(
            &ek.to_public_key(),
            &name(),
            b"secret",
            &mut rand::rngs::OsRng,
        )
        .unwrap();
        let mut other = name();
        other[5] ^= 1;
        assert_eq!(activate(&ek, &other, &made), Err("integrity"));
    }

    #[test]
    fn another_ek_cannot_decrypt_the_seed() {
        let ek = key(2048);
        let made = make_credential(
            &ek.to_public_key(),
            &name(),
            b"secret",
            &mut rand::rngs::OsRng,
        )
        .unwrap();
        let other = RsaPrivateKey::new(&mut rand::rngs::StdRng::seed_from_u64(99), 2048).unwrap();
        assert_eq!(activate(&other, &name(), &made), Err("oaep"));
    }

    #[test]
    fn fresh_randomness_each_call() {
        let ek = key(2048).to_public_key();
        let a = make_credential(&ek, &name(), b"same", &mut rand::rngs::OsRng).unwrap();
        let b = make_credential(&ek, &name(), b"same", &mut rand::rngs::OsRng).unwrap();
        assert_ne!(a.encrypted_secret, b.encrypted_secret);
        assert_ne!(a.credential_blob, b.credential_blob);
    }

    #[test]
    fn refuses_bad_sizes_and_weak_keys() {
        let ek = key(2048).to_public_key();
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
        let weak = key(1024).to_public_key();
        assert_eq!(
            make_credential(&weak, &name(), b"x", r),
            Err(CredentialError::WeakEk(1024))
        );
    }

    #[test]
    fn kdfa_multi_block_prefix_property() {
        // Counter mode: the first 32 bytes of a 512-bit output differ from the 256-bit
        // output (bits is part of the input) and outputs have the requested length.
        let a = kdfa_sha256(b"k", b"STORAGE", b"u", b"", 256);
        let b = kdfa_sha256(b"k", b"STORAGE", b"u", b"", 512);
        assert_eq!(a.len(), 32);
        assert_eq!(b.len(), 64);
        assert_ne!(a[..], b[..32]);
        assert_eq!(kdfa_sha256(b"k", b"STORAGE", b"u", b"", 128).len(), 16);
    }
}
