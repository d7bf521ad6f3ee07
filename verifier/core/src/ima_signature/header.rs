//! The signature blob: `struct signature_v2_hdr` and the signature after it.

use std::fmt;

use crate::reader::{Reader, WireError};

/// `EVM_IMA_XATTR_DIGSIG`: an IMA file signature (`enum evm_ima_xattr_type`).
pub const EVM_IMA_XATTR_DIGSIG: u8 = 0x03;
/// `IMA_VERITY_DIGSIG`: a signature over an fs-verity file digest.
pub const IMA_VERITY_DIGSIG: u8 = 0x05;
/// The signature format version Assay verifies.
pub const SIGNATURE_VERSION_2: u8 = 2;
/// Bytes of `struct signature_v2_hdr` (packed): type, version, hash_algo,
/// keyid (u32 BE), sig_size (u16 BE).
pub const HEADER_LEN: usize = 9;
/// Longest signature accepted after the header: an RSA-16384 signature; the
/// keyring holds at most RSA-4096 (512 bytes) and ECDSA P-384 (at most 104).
pub const MAX_SIGNATURE_LEN: usize = 2048;

/// A hash algorithm of a signature, by its number in the kernel's
/// `enum hash_algo` (`include/uapi/linux/hash_info.h`); only these five are
/// verified (see [`kernel_hash_algo_name`] for the others).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashAlgo {
    Sha1,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

impl HashAlgo {
    /// From the kernel's `enum hash_algo` number.
    pub fn from_kernel(id: u8) -> Option<Self> {
        Some(match id {
            2 => HashAlgo::Sha1,
            4 => HashAlgo::Sha256,
            5 => HashAlgo::Sha384,
            6 => HashAlgo::Sha512,
            7 => HashAlgo::Sha224,
            _ => return None,
        })
    }

    /// The kernel's `enum hash_algo` number.
    pub fn kernel_id(self) -> u8 {
        match self {
            HashAlgo::Sha1 => 2,
            HashAlgo::Sha256 => 4,
            HashAlgo::Sha384 => 5,
            HashAlgo::Sha512 => 6,
            HashAlgo::Sha224 => 7,
        }
    }

    /// The kernel's name (`hash_algo_name[]`), which is also the algorithm
    /// prefix of an `ima-ng`/`ima-sig` `d-ng` digest ("sha256").
    pub fn name(self) -> &'static str {
        match self {
            HashAlgo::Sha1 => "sha1",
            HashAlgo::Sha224 => "sha224",
            HashAlgo::Sha256 => "sha256",
            HashAlgo::Sha384 => "sha384",
            HashAlgo::Sha512 => "sha512",
        }
    }

    /// Bytes of a digest.
    pub fn digest_len(self) -> usize {
        match self {
            HashAlgo::Sha1 => 20,
            HashAlgo::Sha224 => 28,
            HashAlgo::Sha256 => 32,
            HashAlgo::Sha384 => 48,
            HashAlgo::Sha512 => 64,
        }
    }
}

impl fmt::Display for HashAlgo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The kernel's name for every `enum hash_algo` number (`crypto/hash_info.c`),
/// `None` past the end of the table.
pub fn kernel_hash_algo_name(id: u8) -> Option<&'static str> {
    const NAMES: [&str; 23] = [
        "md4",
        "md5",
        "sha1",
        "rmd160",
        "sha256",
        "sha384",
        "sha512",
        "sha224",
        "rmd128",
        "rmd256",
        "rmd320",
        "wp256",
        "wp384",
        "wp512",
        "tgr128",
        "tgr160",
        "tgr192",
        "sm3",
        "streebog256",
        "streebog512",
        "sha3-256",
        "sha3-384",
        "sha3-512",
    ];
    NAMES.get(usize::from(id)).copied()
}

/// A key id: the 32-bit `keyid` of a signature header, matched against the
/// last 4 bytes of a key's subjectKeyIdentifier. Displayed as the kernel
/// prints it in its key search (`id:%08x`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub u32);

impl KeyId {
    /// From the last 4 bytes of an identifier (a SKID, a SHA-1); `None` when
    /// it is shorter than 4 bytes.
    pub fn from_tail(id: &[u8]) -> Option<Self> {
        let tail = id.get(id.len().checked_sub(4)?..)?;
        let bytes: [u8; 4] = tail.try_into().ok()?;
        Some(KeyId(u32::from_be_bytes(bytes)))
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

/// Why a signature blob is not a v2 IMA file signature Assay can verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureFormatError {
    #[error("IMA signature: {0}")]
    Wire(#[from] WireError),
    #[error(
        "IMA signature: sig_size is 0 (the kernel refuses a signature no longer than its header)"
    )]
    Empty,
    #[error("IMA signature: the xattr type is {value:#04x} ({meaning}), not 0x03 EVM_IMA_XATTR_DIGSIG: the file carries no IMA signature")]
    NotASignature { value: u8, meaning: &'static str },
    #[error("IMA signature: type 0x05 IMA_VERITY_DIGSIG (a signature over the file's fs-verity digest) is not supported; sign the file content with `evmctl ima_sign`")]
    VerityUnsupported,
    #[error("IMA signature: version {0} is not supported ({reason}); sign with `evmctl ima_sign` (version 2)", reason = version_reason(*.0))]
    UnsupportedVersion(u8),
    #[error("IMA signature: unsupported hash algorithm {id} ({name}); Assay verifies sha1, sha224, sha256, sha384 and sha512", name = kernel_hash_algo_name(*.id).unwrap_or("not in the kernel's enum hash_algo"))]
    UnsupportedHashAlgorithm { id: u8 },
}

fn version_reason(v: u8) -> &'static str {
    match v {
        1 => "v1 is the deprecated RSA-only format of `evmctl --rsa`",
        3 => "v3 signs the hash of struct ima_file_id; ima-evm-utils 1.4 cannot make one to test against",
        _ => "unknown version",
    }
}

fn xattr_type_meaning(t: u8) -> &'static str {
    match t {
        0x01 => "IMA_XATTR_DIGEST, a bare SHA-1 digest",
        0x02 => "EVM_XATTR_HMAC, an EVM HMAC",
        0x04 => "IMA_XATTR_DIGEST_NG, a bare digest",
        0x06 => "EVM_XATTR_PORTABLE_DIGSIG, an EVM signature",
        _ => "unknown",
    }
}

/// A parsed `security.ima` signature value, as carried by the `sig` field of
/// an `ima-sig` log entry.
///
/// The layout is the kernel's packed `struct signature_v2_hdr`
/// (`security/integrity/integrity.h`; ima-evm-utils' `imaevm.h`), all
/// integers big-endian:
///
/// | bytes | field | value |
/// | --- | --- | --- |
/// | 1 | type | `EVM_IMA_XATTR_DIGSIG` (0x03) |
/// | 1 | version | 2 |
/// | 1 | hash_algo | `enum hash_algo` (4 = sha256) |
/// | 4 | keyid | last 4 bytes of the signing key's SKID |
/// | 2 | sig_size | bytes that follow |
/// | sig_size | sig | RSA PKCS#1 v1.5, or DER ECDSA-Sig-Value |
///
/// As `asymmetric_verify` (`security/integrity/digsig_asymmetric.c`) demands,
/// sig_size must be exactly what follows the header and not 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImaSignature {
    pub hash_algo: HashAlgo,
    pub key_id: KeyId,
    /// The signature proper: `sig_size` bytes.
    pub signature: Vec<u8>,
}

impl ImaSignature {
    /// Parses a signature blob that must fill all of `bytes`.
    pub fn parse(bytes: &[u8]) -> Result<Self, SignatureFormatError> {
        let mut r = Reader::new(bytes);
        match r.u8("signature_v2_hdr.type")? {
            EVM_IMA_XATTR_DIGSIG => {}
            IMA_VERITY_DIGSIG => return Err(SignatureFormatError::VerityUnsupported),
            value => {
                return Err(SignatureFormatError::NotASignature {
                    value,
                    meaning: xattr_type_meaning(value),
                })
            }
        }
        let version = r.u8("signature_v2_hdr.version")?;
        if version != SIGNATURE_VERSION_2 {
            return Err(SignatureFormatError::UnsupportedVersion(version));
        }
        let id = r.u8("signature_v2_hdr.hash_algo")?;
        let hash_algo = HashAlgo::from_kernel(id)
            .ok_or(SignatureFormatError::UnsupportedHashAlgorithm { id })?;
        let key_id = KeyId(r.u32("signature_v2_hdr.keyid")?);
        let len = usize::from(r.u16("signature_v2_hdr.sig_size")?);
        if len == 0 {
            return Err(SignatureFormatError::Empty);
        }
        if len > MAX_SIGNATURE_LEN {
            return Err(WireError::TooLarge {
                what: "signature_v2_hdr.sig_size",
                len,
                max: MAX_SIGNATURE_LEN,
            }
            .into());
        }
        let signature = r.take(len, "signature_v2_hdr.sig")?.to_vec();
        r.expect_empty("IMA signature (after sig_size bytes)")?;
        Ok(ImaSignature {
            hash_algo,
            key_id,
            signature,
        })
    }

    /// Encodes the blob (the inverse of [`ImaSignature::parse`]; a signature
    /// longer than 65535 bytes, which `parse` never returns, does not fit).
    pub fn to_bytes(&self) -> Vec<u8> {
        let len = u16::try_from(self.signature.len()).unwrap_or(u16::MAX);
        let mut out = Vec::with_capacity(HEADER_LEN + self.signature.len());
        out.extend([
            EVM_IMA_XATTR_DIGSIG,
            SIGNATURE_VERSION_2,
            self.hash_algo.kernel_id(),
        ]);
        out.extend(self.key_id.0.to_be_bytes());
        out.extend(len.to_be_bytes());
        out.extend(&self.signature);
        out
    }
}
