//! Linux IMA file signatures (`security.ima`, the `sig` field of `ima-sig`
//! entries): parsing, keyrings of X.509 certificates and public keys, and
//! verification against a logged file digest, with the kernel's rules.
//!
//! Bytes in, typed results out: [`ImaSignature::parse`], [`Keyring`] (built
//! from DER or PEM), [`verify`] (parse and verify) and [`verify_parsed`].
//!
//! # Format (`security/integrity/integrity.h`, ima-evm-utils' `imaevm.h`)
//!
//! A signature is a packed `struct signature_v2_hdr` — u8 type
//! (`EVM_IMA_XATTR_DIGSIG` = 0x03), u8 version (2), u8 hash_algo (the
//! kernel's `enum hash_algo`: 2 sha1, 4 sha256, 5 sha384, 6 sha512, 7 sha224,
//! …), u32 keyid and u16 sig_size, both big-endian — followed by exactly
//! sig_size bytes of signature ([`ImaSignature`]). `evmctl ima_sign` writes
//! it into the `security.ima` xattr (or, with `--sigfile`, a `.sig` file);
//! the kernel copies the xattr into the `ima-sig` template's `sig` field.
//!
//! # Verification (`security/integrity/digsig_asymmetric.c`, `crypto/`)
//!
//! For version 2 the signed message is the file digest itself, already
//! hashed with hash_algo: `asymmetric_verify` hands it to the public-key
//! layer as a digest. For RSA that is PKCS#1 v1.5 with the DigestInfo of
//! hash_algo (`pkcs1pad(rsa,<hash>)`, the signature as long as the modulus);
//! for ECDSA (`ecdsa-nist-p256`/`-p384`, encoding `x962`, since Linux 5.13)
//! a DER ECDSA-Sig-Value over the digest, as OpenSSL's `EVP_PKEY_sign` makes
//! it.
//! The key is looked up by keyid (`request_asymmetric_key`, "id:%08x"); see
//! [`Keyring`] for which id a key has. [`verify`] keeps apart what a policy
//! needs to tell apart ([`SignatureError`]): a malformed signature, a
//! signature over another hash algorithm than the logged digest's (IMA hashes
//! a signed file with the signature's algorithm, `ima_get_hash_algo`, so a
//! mismatch is a log that does not fit its signature), no key with the id,
//! and a key that does not verify it.
//!
//! Where Assay differs from the kernel, and why:
//! - when several keys share a key id (32 bits collide), each is tried; the
//!   kernel takes the first the keyring search returns;
//! - the kernel also matches an id against the tail of a certificate's
//!   serial+issuer and subject ids; Assay matches SKIDs (and the SHA-1 of the
//!   key where there is none, as ima-evm-utils does) only;
//! - ECDSA signatures must be strict DER (the kernel's BER decoder accepts
//!   some redundant encodings OpenSSL never makes);
//! - signature version 3 (a signature over the hash of `struct ima_file_id`
//!   {u8 hash_type; u8 hash_algorithm; u8 hash[]}, `calc_file_id_hash`) and
//!   type 0x05 `IMA_VERITY_DIGSIG` (fs-verity digests) are refused as
//!   unsupported: ima-evm-utils 1.4 cannot make either, so there is nothing
//!   to test them against. Version 1 (`evmctl --rsa`) is deprecated and refused.

mod header;
mod keyring;
#[cfg(test)]
mod tests;

pub use header::{
    kernel_hash_algo_name, HashAlgo, ImaSignature, KeyId, SignatureFormatError,
    EVM_IMA_XATTR_DIGSIG, HEADER_LEN, IMA_VERITY_DIGSIG, MAX_SIGNATURE_LEN, SIGNATURE_VERSION_2,
};
pub use keyring::{
    Key, KeyAlgorithm, KeyIdSource, Keyring, KeyringError, MAX_DER_LEN, MAX_KEYS, MAX_PEM_LEN,
    RSA_BITS,
};

/// The key that verified a signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signer {
    pub key_id: KeyId,
    /// The certificate's subject, or `public key <key id>`.
    pub description: String,
    pub algorithm: KeyAlgorithm,
    /// SHA-256 of the key's DER SubjectPublicKeyInfo.
    pub spki_sha256: [u8; 32],
    /// The signature's (and the logged digest's) hash algorithm.
    pub hash_algo: HashAlgo,
}

/// Why a file signature was not accepted. Each variant is a distinct
/// outcome for policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The blob is not a v2 IMA file signature Assay can verify.
    #[error(transparent)]
    Malformed(#[from] SignatureFormatError),
    /// The signature is over a digest of another algorithm than the logged one.
    #[error("the signature is over a {signature} digest, but the log has a {logged:?} digest of the file")]
    HashAlgorithmMismatch { signature: HashAlgo, logged: String },
    /// The logged digest is not as long as its algorithm's digests.
    #[error("the logged {alg} digest is {len} bytes, not {expected}")]
    DigestLength {
        alg: HashAlgo,
        len: usize,
        expected: usize,
    },
    /// No key of the keyring has the signature's key id.
    #[error("no key with id {key_id} in the IMA keyring: add the certificate of the key that signed the file (its subjectKeyIdentifier ends in {key_id})")]
    UnknownKey { key_id: KeyId },
    /// Keys with the id exist, and none verifies the signature.
    #[error("the signature does not verify with the key{} with id {key_id} ({}): the file or its signature was altered, or another key with the same id signed it", if tried.len() == 1 { "" } else { "s" }, tried.join("; "))]
    BadSignature { key_id: KeyId, tried: Vec<String> },
}

/// Parses `sig` (a `security.ima` value, the `sig` field of an `ima-sig`
/// entry) and verifies it over `file_digest`, the file's digest as logged
/// with the algorithm named `file_hash_alg` (an `ima-ng` `d-ng` name:
/// "sha256"). Returns the key that verified it.
pub fn verify(
    keyring: &Keyring,
    file_hash_alg: &str,
    file_digest: &[u8],
    sig: &[u8],
) -> Result<Signer, SignatureError> {
    verify_parsed(
        keyring,
        file_hash_alg,
        file_digest,
        &ImaSignature::parse(sig)?,
    )
}

/// [`verify`] for a signature already parsed.
pub fn verify_parsed(
    keyring: &Keyring,
    file_hash_alg: &str,
    file_digest: &[u8],
    sig: &ImaSignature,
) -> Result<Signer, SignatureError> {
    let alg = sig.hash_algo;
    if file_hash_alg != alg.name() {
        return Err(SignatureError::HashAlgorithmMismatch {
            signature: alg,
            logged: file_hash_alg.chars().take(64).collect(),
        });
    }
    if file_digest.len() != alg.digest_len() {
        return Err(SignatureError::DigestLength {
            alg,
            len: file_digest.len(),
            expected: alg.digest_len(),
        });
    }
    let mut tried = Vec::new();
    for key in keyring.with_key_id(sig.key_id) {
        if key.verifies(alg, file_digest, &sig.signature) {
            return Ok(Signer {
                key_id: key.key_id(),
                description: key.description().to_string(),
                algorithm: key.algorithm(),
                spki_sha256: key.spki_sha256(),
                hash_algo: alg,
            });
        }
        tried.push(key.description().to_string());
    }
    if tried.is_empty() {
        Err(SignatureError::UnknownKey { key_id: sig.key_id })
    } else {
        Err(SignatureError::BadSignature {
            key_id: sig.key_id,
            tried,
        })
    }
}
