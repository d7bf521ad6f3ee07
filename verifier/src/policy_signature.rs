//! Detached signatures of policy files, in the [minisign] format.
//!
//! An operator signs a policy file with an Ed25519 key, with the `minisign`
//! CLI (`minisign -S -s KEY -m policy.toml`) or with `assay-verifier policy
//! sign`; the verifier accepts the file only with a `.minisig` made by one of
//! the configured operator keys ([`PolicyKeys`]). The format is minisign's, so
//! either tool verifies what the other signed:
//!
//! ```text
//! untrusted comment: <anything; not covered by any signature>
//! base64(<"ED"> <key id: 8 bytes> <Ed25519 signature of BLAKE2b-512(file)>)
//! trusted comment: <one line>
//! base64(<Ed25519 signature of (the signature above ‖ the trusted comment)>)
//! ```
//!
//! The parsing, the prehash and the Ed25519 checks are the `minisign` crate's
//! (jedisct1/rust-minisign, by minisign's author); this module bounds and
//! checks the text's shape before the crate sees it (the crate indexes into the
//! global signature without checking its length), never lets it prompt for a
//! password, and turns its errors into [`SignatureError`]s.
//!
//! Decisions:
//! - **Prehashed only.** Signatures in the legacy `Ed` form (`minisign -S -l`,
//!   the file itself signed rather than its BLAKE2b-512 hash) are refused with
//!   [`SignatureError::Legacy`]: minisign has signed prehashed (`ED`) by
//!   default since 0.8, and one accepted form is less to get wrong.
//! - **The trusted comment is checked and returned**: the global signature
//!   covers it (`timestamp:…`, a file name, a ticket number: whatever the
//!   signer wrote), so it can be shown and logged as the operator's own words.
//!   An altered one is [`SignatureError::TrustedComment`].
//! - **Key ids** are minisign's 8-byte key numbers as 16 upper-case hex digits,
//!   the number read little-endian, as `minisign` prints it in `minisign.pub`
//!   (`untrusted comment: minisign public key 619A25DB6CE70BD`), but always
//!   zero-padded to 16 digits (the CLI drops leading zeros: that key is
//!   `0619A25DB6CE70BD` here).
//! - **Bounds**: a key file or a signature over 4 KiB is refused before it is
//!   parsed; a trusted comment we write is at most 1024 bytes (minisign's own
//!   cap), one line, no control characters but tab, no surrounding whitespace
//!   (the reader trims it, so it would no longer verify). A password-encrypted
//!   secret key whose scrypt parameters ask for more than 1 GiB or more than
//!   8 times the CLI's work is refused rather than run.
//! - **No prompts**: [`sign`] with an encrypted key and no password is an
//!   error. A password given for an unencrypted key is ignored.
//! - **Unencrypted secret keys as the CLI writes them**: `minisign -G -W`
//!   leaves the key's checksum all zero (minisign computes it only to check a
//!   password), which the crate's loader calls corrupted; such a key is read
//!   field by field instead. Every secret key, encrypted or not, must have a
//!   public half that is its seed's (checked with `ed25519-dalek`), and the
//!   crate checks each signature it makes against that public key.
//!
//! [minisign]: https://jedisct1.github.io/minisign/

use std::io::Read as _;
use std::path::{Path, PathBuf};

use base64::{engine::general_purpose::STANDARD, Engine as _};

/// The most bytes read of a public or secret key file.
pub const MAX_KEY_FILE_BYTES: usize = 4096;
/// The most bytes of a signature (`.minisig`) text.
pub const MAX_SIGNATURE_BYTES: usize = 4096;
/// The longest trusted comment [`sign`] writes (minisign's `COMMENT_MAXBYTES`).
pub const MAX_TRUSTED_COMMENT_BYTES: usize = 1024;
/// The longest password [`sign`] takes (the `minisign` crate's own cap).
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// The most scrypt work an encrypted secret key may ask for: 8 times what
/// `minisign -G` writes (2^25, with 1 GiB).
const MAX_KDF_OPSLIMIT: u64 = 1 << 28;
/// The most scrypt memory an encrypted secret key may ask for (`minisign -G`'s).
const MAX_KDF_MEMLIMIT: u64 = 1 << 30;

const COMMENT_PREFIX: &str = "untrusted comment:";
const TRUSTED_COMMENT_PREFIX: &str = "trusted comment: ";
/// Ed25519, the only algorithm of minisign keys.
const KEY_ALG: &[u8; 2] = b"Ed";
const SIG_PREHASHED: &[u8; 2] = b"ED";
const SIG_LEGACY: &[u8; 2] = b"Ed";
/// Algorithm (2), key number (8), Ed25519 public key (32).
const PUBLIC_KEY_BYTES: usize = 42;
/// Algorithm (2), key number (8), Ed25519 signature (64).
const SIGNATURE_BYTES: usize = 74;
const GLOBAL_SIGNATURE_BYTES: usize = 64;
/// Algorithms (3 × 2), salt (32), opslimit (8), memlimit (8), key number (8),
/// secret key (64), checksum (32).
const SECRET_KEY_BYTES: usize = 158;

/// Why a policy signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// Not a minisign signature: empty, truncated, oversized, garbage.
    #[error("policy signature is malformed: {0}")]
    Malformed(String),
    /// Made by a key that is not one of the configured policy keys.
    #[error("policy signature is by key {key_id}, which is not a configured policy signing key")]
    UnknownKey { key_id: String },
    /// minisign's legacy form (`-l`), which this verifier does not accept.
    #[error(
        "policy signature by key {key_id} is in minisign's legacy (not prehashed) form, \
         which is not accepted: sign again without -l"
    )]
    Legacy { key_id: String },
    /// The signature does not cover this text: the policy was altered, or the
    /// signature is another file's.
    #[error(
        "policy signature by key {key_id} does not match the policy text \
         (the policy was altered, or the signature is for another file)"
    )]
    Mismatch { key_id: String },
    /// The text's signature is good but the trusted comment was altered.
    #[error("policy signature by key {key_id}: the trusted comment was altered")]
    TrustedComment { key_id: String },
    /// Refused by the minisign crate for another reason.
    #[error("policy signature by key {key_id} does not verify: {reason}")]
    Invalid { key_id: String, reason: String },
}

/// A signature that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The signing key's id: 16 upper-case hex digits (see the module's doc).
    pub key_id: String,
    /// The signer's trusted comment, covered by the signature.
    pub trusted_comment: String,
}

/// A signature made by [`sign`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// The `.minisig` file's text.
    pub minisig: String,
    /// The signing key's id.
    pub key_id: String,
}

struct TrustedKey {
    key_id: String,
    keynum: [u8; 8],
    key: minisign::PublicKey,
}

/// The trusted operator keys that may sign policies.
pub struct PolicyKeys {
    keys: Vec<TrustedKey>,
}

impl std::fmt::Debug for PolicyKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyKeys")
            .field("key_ids", &self.key_ids())
            .finish()
    }
}

impl PolicyKeys {
    /// Loads minisign public key files (`minisign.pub`: an untrusted comment
    /// line and the base64 key line; or the key line alone). Refuses an empty
    /// list, a file over [`MAX_KEY_FILE_BYTES`], and two keys with one key id.
    pub fn load(paths: &[PathBuf]) -> Result<PolicyKeys, String> {
        if paths.is_empty() {
            return Err("no policy signing keys given".into());
        }
        let mut keys: Vec<(TrustedKey, &Path)> = Vec::with_capacity(paths.len());
        for path in paths {
            let key = load_public_key(path)
                .map_err(|e| format!("policy signing key {}: {e}", path.display()))?;
            if let Some((_, first)) = keys.iter().find(|(k, _)| k.keynum == key.keynum) {
                return Err(format!(
                    "policy signing key {}: key id {} is also the key id of {}",
                    path.display(),
                    key.key_id,
                    first.display()
                ));
            }
            keys.push((key, path));
        }
        Ok(PolicyKeys {
            keys: keys.into_iter().map(|(k, _)| k).collect(),
        })
    }

    /// One key from the text of a minisign public key file (as [`PolicyKeys::load`]
    /// reads each file).
    pub fn parse(text: &str) -> Result<PolicyKeys, String> {
        Ok(PolicyKeys {
            keys: vec![parse_public_key(text)?],
        })
    }

    /// The configured keys' ids, in the order given.
    pub fn key_ids(&self) -> Vec<String> {
        self.keys.iter().map(|k| k.key_id.clone()).collect()
    }

    /// Checks `signature` (a `.minisig` file's text) over `text`.
    pub fn verify(&self, text: &[u8], signature: &str) -> Result<Verified, SignatureError> {
        let parsed = check_signature_shape(signature)?;
        let key_id = key_id(&parsed.keynum);
        let trusted = self
            .keys
            .iter()
            .find(|k| k.keynum == parsed.keynum)
            .ok_or_else(|| SignatureError::UnknownKey {
                key_id: key_id.clone(),
            })?;
        if parsed.legacy {
            return Err(SignatureError::Legacy { key_id });
        }
        let sig = minisign::SignatureBox::from_string(signature)
            .map_err(|e| SignatureError::Malformed(e.to_string()))?;
        // Prehashed: the crate streams `text` through BLAKE2b, no copy.
        minisign::verify(
            &trusted.key,
            &sig,
            std::io::Cursor::new(text),
            true,
            false,
            false,
        )
        .map_err(|e| {
            // The crate's verify errors share one kind; its two signature
            // checks are told apart by their messages (pinned by the tests).
            match e.to_string().as_str() {
                "Signature verification failed" => SignatureError::Mismatch {
                    key_id: key_id.clone(),
                },
                "Comment signature verification failed" => SignatureError::TrustedComment {
                    key_id: key_id.clone(),
                },
                reason => SignatureError::Invalid {
                    key_id: key_id.clone(),
                    reason: reason.to_string(),
                },
            }
        })?;
        let trusted_comment = sig
            .trusted_comment()
            .map_err(|e| SignatureError::Malformed(format!("trusted comment: {e}")))?;
        Ok(Verified {
            key_id,
            trusted_comment,
        })
    }
}

/// Signs `text` with a minisign secret key file (`minisign -G`'s output,
/// unencrypted with `-W` or encrypted with a password), returning the
/// `.minisig` text (prehashed) and the key's id. `trusted_comment` defaults to
/// `timestamp:<unix seconds>`. Never prompts: an encrypted key without
/// `password` is an error.
pub fn sign(
    text: &[u8],
    secret_key_file: &Path,
    password: Option<String>,
    trusted_comment: Option<&str>,
) -> Result<Signed, String> {
    let name = secret_key_file.display();
    if let Some(c) = trusted_comment {
        check_trusted_comment(c).map_err(|e| format!("trusted comment: {e}"))?;
    }
    let key_text = read_key_file(secret_key_file)
        .map_err(|e| format!("policy signing secret key {name}: {e}"))?;
    let shape = check_secret_key_shape(&key_text)
        .map_err(|e| format!("policy signing secret key {name}: {e}"))?;
    let key_box = minisign::SecretKeyBox::from_string(&key_text)
        .map_err(|e| format!("policy signing secret key {name}: {e}"))?;
    let secret = if shape.encrypted {
        let password = password.ok_or_else(|| {
            format!("policy signing secret key {name} is encrypted, and no password was given")
        })?;
        if password.len() > MAX_PASSWORD_BYTES {
            return Err(format!(
                "the password is longer than {MAX_PASSWORD_BYTES} bytes"
            ));
        }
        // With Some(password) the crate never prompts.
        minisign::SecretKey::from_box(key_box, Some(password)).map_err(|e| match e.kind() {
            minisign::ErrorKind::Verify => {
                format!("policy signing secret key {name}: wrong password")
            }
            _ => format!("policy signing secret key {name}: {e}"),
        })?
    } else if shape.zero_checksum {
        // `minisign -G -W` leaves an unencrypted key's checksum zero and never
        // checks it; the crate's `from_unencrypted_box` would call such a key
        // corrupted. Read the fields as they are: the check of the key's two
        // halves below stands in for the checksum.
        minisign::SecretKey::from_bytes(&shape.bytes)
            .map_err(|e| format!("policy signing secret key {name}: {e}"))?
    } else {
        minisign::SecretKey::from_unencrypted_box(key_box).map_err(|e| match e.kind() {
            minisign::ErrorKind::Verify => {
                format!("policy signing secret key {name}: corrupted (its checksum does not match)")
            }
            _ => format!("policy signing secret key {name}: {e}"),
        })?
    };
    check_key_halves(&secret.to_bytes())
        .map_err(|e| format!("policy signing secret key {name}: {e}"))?;
    let public = minisign::PublicKey::from_secret_key(&secret)
        .map_err(|e| format!("policy signing secret key {name}: {e}"))?;
    let keynum: [u8; 8] = secret
        .keynum()
        .try_into()
        .map_err(|_| format!("policy signing secret key {name}: bad key number"))?;
    let key_id = key_id(&keynum);
    let untrusted = format!("assay policy signature by key {key_id}");
    // With the public key the crate checks the signature it made.
    let sig = minisign::sign(
        Some(&public),
        &secret,
        std::io::Cursor::new(text),
        trusted_comment,
        Some(&untrusted),
    )
    .map_err(|e| format!("signing with {name}: {e}"))?;
    Ok(Signed {
        minisig: sig.into_string(),
        key_id,
    })
}

/// A key number as minisign prints it, zero-padded: 16 upper-case hex digits
/// of the little-endian number.
fn key_id(keynum: &[u8; 8]) -> String {
    format!("{:016X}", u64::from_le_bytes(*keynum))
}

/// Reads a key file, at most [`MAX_KEY_FILE_BYTES`], as UTF-8 text.
fn read_key_file(path: &Path) -> Result<String, String> {
    let f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    f.take(MAX_KEY_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() > MAX_KEY_FILE_BYTES {
        return Err(format!("larger than {MAX_KEY_FILE_BYTES} bytes"));
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err("empty".into());
    }
    String::from_utf8(bytes).map_err(|_| "not UTF-8 text".into())
}

/// The lines of a key or signature text, trailing blank lines dropped.
fn lines(text: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = text.lines().collect();
    while lines.last().is_some_and(|l| l.trim().is_empty()) {
        lines.pop();
    }
    lines
}

/// Base64 of exactly `len` bytes.
fn decode_exact(line: &str, len: usize, what: &str) -> Result<Vec<u8>, String> {
    let line = line.trim();
    // Base64 of `len` bytes, padded: no need to decode anything longer.
    if line.len() != len.div_ceil(3) * 4 {
        return Err(format!(
            "{what}: {} base64 characters, not {}",
            line.len(),
            len.div_ceil(3) * 4
        ));
    }
    let bytes = STANDARD
        .decode(line)
        .map_err(|e| format!("{what}: not base64 ({e})"))?;
    if bytes.len() != len {
        return Err(format!("{what}: {} bytes, not {len}", bytes.len()));
    }
    Ok(bytes)
}

fn load_public_key(path: &Path) -> Result<TrustedKey, String> {
    parse_public_key(&read_key_file(path)?)
}

fn parse_public_key(text: &str) -> Result<TrustedKey, String> {
    if text.len() > MAX_KEY_FILE_BYTES {
        return Err(format!("larger than {MAX_KEY_FILE_BYTES} bytes"));
    }
    let key_line =
        match lines(text).as_slice() {
            [key] => *key,
            [comment, key] if comment.starts_with(COMMENT_PREFIX) => *key,
            [_, _] => {
                return Err(format!(
                    "its first line does not start with `{COMMENT_PREFIX}`"
                ))
            }
            _ => return Err(
                "not a minisign public key (an `untrusted comment:` line and a base64 key line)"
                    .into(),
            ),
        };
    let bytes = decode_exact(key_line, PUBLIC_KEY_BYTES, "the key line")?;
    if &bytes[..2] != KEY_ALG {
        return Err("not an Ed25519 minisign public key".into());
    }
    let point: [u8; 32] = bytes[10..]
        .try_into()
        .map_err(|_| "the key line: bad length".to_string())?;
    match ed25519_dalek::VerifyingKey::from_bytes(&point) {
        Ok(k) if !k.is_weak() => {}
        _ => return Err("not a valid Ed25519 public key".into()),
    }
    let key = minisign::PublicKey::from_bytes(&bytes).map_err(|e| e.to_string())?;
    let keynum: [u8; 8] = bytes[2..10]
        .try_into()
        .map_err(|_| "the key line: bad length".to_string())?;
    Ok(TrustedKey {
        key_id: key_id(&keynum),
        keynum,
        key,
    })
}

/// What the shape check learns of a signature.
struct SignatureShape {
    keynum: [u8; 8],
    legacy: bool,
}

/// Checks the four lines of a `.minisig` text and the lengths of what they
/// encode, so that the crate only ever parses a well-formed one.
fn check_signature_shape(signature: &str) -> Result<SignatureShape, SignatureError> {
    let malformed = |s: String| SignatureError::Malformed(s);
    if signature.len() > MAX_SIGNATURE_BYTES {
        return Err(malformed(format!(
            "larger than {MAX_SIGNATURE_BYTES} bytes"
        )));
    }
    if signature.trim().is_empty() {
        return Err(malformed("empty".into()));
    }
    let [untrusted, sig, trusted, global] = lines(signature)[..] else {
        return Err(malformed(format!(
            "{} lines, not 4 (untrusted comment, signature, trusted comment, global signature)",
            lines(signature).len()
        )));
    };
    if !untrusted.starts_with("untrusted comment: ") {
        return Err(malformed(
            "line 1 does not start with `untrusted comment: `".into(),
        ));
    }
    let sig = decode_exact(sig, SIGNATURE_BYTES, "line 2 (the signature)").map_err(malformed)?;
    let legacy = match &sig[..2] {
        alg if alg == SIG_PREHASHED => false,
        alg if alg == SIG_LEGACY => true,
        _ => {
            return Err(malformed(
                "line 2: not an Ed25519 minisign signature".into(),
            ))
        }
    };
    if !trusted.starts_with(TRUSTED_COMMENT_PREFIX) {
        return Err(malformed(format!(
            "line 3 does not start with `{TRUSTED_COMMENT_PREFIX}`"
        )));
    }
    decode_exact(
        global,
        GLOBAL_SIGNATURE_BYTES,
        "line 4 (the global signature)",
    )
    .map_err(malformed)?;
    let keynum: [u8; 8] = sig[2..10]
        .try_into()
        .map_err(|_| malformed("line 2: bad length".into()))?;
    Ok(SignatureShape { keynum, legacy })
}

/// What the shape check learns of a secret key file.
struct SecretKeyShape {
    /// The decoded key line.
    bytes: Vec<u8>,
    encrypted: bool,
    /// Unencrypted with an all-zero checksum, as `minisign -G -W` writes it.
    zero_checksum: bool,
}

/// Checks a secret key file's text and the length of what it encodes.
fn check_secret_key_shape(text: &str) -> Result<SecretKeyShape, String> {
    let [comment, key] = lines(text)[..] else {
        return Err(
            "not a minisign secret key (an `untrusted comment:` line and a base64 key line)".into(),
        );
    };
    if !comment.starts_with(COMMENT_PREFIX) {
        return Err(format!(
            "its first line does not start with `{COMMENT_PREFIX}`"
        ));
    }
    let bytes = decode_exact(key, SECRET_KEY_BYTES, "the key line")?;
    if &bytes[..2] != KEY_ALG || &bytes[4..6] != b"B2" {
        return Err("not an Ed25519 minisign secret key".into());
    }
    let le = |at: usize| {
        let mut n = [0u8; 8];
        n.copy_from_slice(&bytes[at..at + 8]);
        u64::from_le_bytes(n)
    };
    let encrypted = match &bytes[2..4] {
        [0, 0] => false,
        b"Sc" => {
            if le(38) > MAX_KDF_OPSLIMIT || le(46) > MAX_KDF_MEMLIMIT {
                return Err("its password's scrypt parameters ask for too much".into());
            }
            true
        }
        _ => return Err("encrypted with an unknown algorithm".into()),
    };
    let zero_checksum = !encrypted && bytes[126..].iter().all(|b| *b == 0);
    Ok(SecretKeyShape {
        bytes,
        encrypted,
        zero_checksum,
    })
}

/// The Ed25519 secret key of a (decrypted) secret key's fields is its seed
/// and its public key: the public key must be the seed's.
fn check_key_halves(fields: &[u8]) -> Result<(), String> {
    let corrupted = || "corrupted (its public half is not its secret half's)".to_string();
    let seed: [u8; 32] = fields
        .get(62..94)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(corrupted)?;
    let public = fields.get(94..126).ok_or_else(corrupted)?;
    let derived = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key();
    if derived.as_bytes()[..] != *public {
        return Err(corrupted());
    }
    Ok(())
}

/// A trusted comment [`sign`] may write: it must read back the same.
fn check_trusted_comment(c: &str) -> Result<(), String> {
    if c.len() > MAX_TRUSTED_COMMENT_BYTES {
        return Err(format!("longer than {MAX_TRUSTED_COMMENT_BYTES} bytes"));
    }
    if c.chars().any(|ch| ch.is_control() && ch != '\t') {
        return Err("holds a line break or another control character".into());
    }
    if c.trim() != c {
        return Err("starts or ends with whitespace (minisign trims it)".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &[u8] = b"schema = 1\nname = \"fleet\"\n";

    struct Key {
        _dir: tempfile::TempDir,
        public: PathBuf,
        secret: PathBuf,
    }

    /// A fresh key pair written as `minisign -G -W` would.
    fn key() -> Key {
        let kp = minisign::KeyPair::generate_unencrypted_keypair().expect("keypair");
        write_key(&kp)
    }

    fn write_key(kp: &minisign::KeyPair) -> Key {
        let dir = tempfile::tempdir().expect("tempdir");
        let public = dir.path().join("minisign.pub");
        let secret = dir.path().join("minisign.key");
        std::fs::write(&public, kp.pk.to_box().expect("pk box").to_string()).expect("pub");
        std::fs::write(&secret, kp.sk.to_box(None).expect("sk box").to_string()).expect("sec");
        Key {
            _dir: dir,
            public,
            secret,
        }
    }

    fn keys(k: &[&Key]) -> PolicyKeys {
        PolicyKeys::load(&k.iter().map(|k| k.public.clone()).collect::<Vec<_>>()).expect("load")
    }

    fn signed(k: &Key, comment: Option<&str>) -> Signed {
        sign(POLICY, &k.secret, None, comment).expect("sign")
    }

    fn malformed(r: Result<Verified, SignatureError>) -> String {
        match r {
            Err(SignatureError::Malformed(m)) => m,
            other => panic!("expected malformed, got {other:?}"),
        }
    }

    /// Replaces line `n` (0-based) of a signature.
    fn with_line(sig: &str, n: usize, line: &str) -> String {
        let mut l: Vec<String> = sig.lines().map(str::to_string).collect();
        l[n] = line.to_string();
        l.join("\n") + "\n"
    }

    #[test]
    fn policy_signature_round_trip() {
        let k = key();
        let s = signed(&k, Some("ticket 42\tfile:fleet.toml"));
        let ks = keys(&[&k]);
        assert_eq!(ks.key_ids(), vec![s.key_id.clone()]);
        assert_eq!(s.key_id.len(), 16);
        assert!(s
            .key_id
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase()));
        assert_eq!(
            ks.verify(POLICY, &s.minisig),
            Ok(Verified {
                key_id: s.key_id.clone(),
                trusted_comment: "ticket 42\tfile:fleet.toml".into(),
            })
        );
        // The default trusted comment is a timestamp.
        let d = signed(&k, None);
        let v = ks.verify(POLICY, &d.minisig).expect("default comment");
        assert!(v.trusted_comment.starts_with("timestamp:"), "{v:?}");
        // CRLF line ends (a copy through another system) still verify.
        let crlf = s.minisig.replace('\n', "\r\n");
        assert!(ks.verify(POLICY, &crlf).is_ok());
    }

    #[test]
    fn policy_signature_any_configured_key_verifies() {
        let (a, b) = (key(), key());
        let ks = keys(&[&a, &b]);
        assert_eq!(
            ks.verify(POLICY, &signed(&b, None).minisig)
                .map(|v| v.key_id),
            Ok(signed(&b, None).key_id)
        );
        assert!(ks.verify(POLICY, &signed(&a, None).minisig).is_ok());
    }

    #[test]
    fn policy_signature_by_another_key_is_refused_naming_it() {
        let (a, b) = (key(), key());
        let s = signed(&b, None);
        let e = keys(&[&a]).verify(POLICY, &s.minisig).unwrap_err();
        assert_eq!(
            e,
            SignatureError::UnknownKey {
                key_id: s.key_id.clone()
            }
        );
        assert!(e.to_string().contains(&s.key_id), "{e}");
    }

    /// Another key's signature relabelled with a configured key's id: it is
    /// checked against the configured key, and fails.
    #[test]
    fn policy_signature_with_a_forged_key_id_is_refused() {
        let (a, b) = (key(), key());
        let a_pub = std::fs::read_to_string(&a.public).unwrap();
        let a_bytes = STANDARD.decode(lines(&a_pub)[1]).unwrap();
        let s = signed(&b, None).minisig;
        let mut sig = STANDARD.decode(s.lines().nth(1).unwrap()).unwrap();
        sig[2..10].copy_from_slice(&a_bytes[2..10]);
        let forged = with_line(&s, 1, &STANDARD.encode(&sig));
        let e = keys(&[&a]).verify(POLICY, &forged).unwrap_err();
        assert!(matches!(e, SignatureError::Mismatch { .. }), "{e:?}");
    }

    #[test]
    fn policy_signature_of_altered_text_is_refused() {
        let k = key();
        let s = signed(&k, None);
        let ks = keys(&[&k]);
        for altered in [
            &b"schema = 1\nname = \"fleet2\"\n"[..],
            &POLICY[..POLICY.len() - 1],
            b"",
        ] {
            let e = ks.verify(altered, &s.minisig).unwrap_err();
            assert_eq!(
                e,
                SignatureError::Mismatch {
                    key_id: s.key_id.clone()
                }
            );
            assert!(
                e.to_string().contains("does not match the policy text"),
                "{e}"
            );
        }
        // A flipped bit of the signature itself.
        let mut sig = STANDARD.decode(s.minisig.lines().nth(1).unwrap()).unwrap();
        sig[20] ^= 1;
        let bad = with_line(&s.minisig, 1, &STANDARD.encode(&sig));
        assert!(matches!(
            ks.verify(POLICY, &bad),
            Err(SignatureError::Mismatch { .. })
        ));
    }

    #[test]
    fn policy_signature_altered_trusted_comment_is_refused() {
        let k = key();
        let s = signed(&k, Some("approved by alice"));
        let ks = keys(&[&k]);
        let bad = with_line(&s.minisig, 2, "trusted comment: approved by mallory");
        let e = ks.verify(POLICY, &bad).unwrap_err();
        assert_eq!(
            e,
            SignatureError::TrustedComment {
                key_id: s.key_id.clone()
            }
        );
        // A flipped bit of the global signature too.
        let mut g = STANDARD.decode(s.minisig.lines().nth(3).unwrap()).unwrap();
        g[5] ^= 0x80;
        let bad = with_line(&s.minisig, 3, &STANDARD.encode(&g));
        assert!(matches!(
            ks.verify(POLICY, &bad),
            Err(SignatureError::TrustedComment { .. })
        ));
        // The untrusted comment is covered by nothing: changing it is fine.
        let ok = with_line(&s.minisig, 0, "untrusted comment: anything");
        assert!(ks.verify(POLICY, &ok).is_ok());
    }

    #[test]
    fn policy_signature_legacy_form_is_refused() {
        // The legacy form signs the text itself, algorithm `Ed`: made here by
        // relabelling a prehashed signature (which then also would not verify;
        // the form is refused before any check). The oracle test refuses a
        // real `minisign -S -l` signature.
        let k = key();
        let s = signed(&k, None);
        let mut sig = STANDARD.decode(s.minisig.lines().nth(1).unwrap()).unwrap();
        sig[..2].copy_from_slice(b"Ed");
        let legacy = with_line(&s.minisig, 1, &STANDARD.encode(&sig));
        let e = keys(&[&k]).verify(POLICY, &legacy).unwrap_err();
        assert_eq!(e, SignatureError::Legacy { key_id: s.key_id });
        assert!(e.to_string().contains("without -l"), "{e}");
    }

    #[test]
    fn policy_signature_malformed_is_refused() {
        let k = key();
        let s = signed(&k, None).minisig;
        let ks = keys(&[&k]);
        assert!(malformed(ks.verify(POLICY, "")).contains("empty"));
        assert!(malformed(ks.verify(POLICY, "\n \n")).contains("empty"));
        // Truncated at every byte (but the last: the final line break), none
        // verifies and none panics.
        assert!(s.ends_with('\n'));
        for n in 0..s.len() - 1 {
            let e = ks.verify(POLICY, &s[..n]);
            assert!(matches!(e, Err(SignatureError::Malformed(_))), "{n}: {e:?}");
        }
        // Truncated global signature (the crate would index past it).
        let g = s.lines().nth(3).unwrap();
        let short = with_line(&s, 3, &STANDARD.encode(&STANDARD.decode(g).unwrap()[..10]));
        assert!(malformed(ks.verify(POLICY, &short)).contains("line 4"));
        // A signature line with extra bytes.
        let sig = STANDARD.decode(s.lines().nth(1).unwrap()).unwrap();
        let long = with_line(&s, 1, &STANDARD.encode([&sig[..], b"xx"].concat()));
        assert!(malformed(ks.verify(POLICY, &long)).contains("line 2"));
        // Oversized.
        let big = format!(
            "untrusted comment: {}\n{}",
            "x".repeat(5000),
            &s[s.find('\n').unwrap() + 1..]
        );
        assert!(malformed(ks.verify(POLICY, &big)).contains("larger than 4096"));
        // Garbage.
        for g in [
            "garbage",
            "untrusted comment: a\nnot base64 !!\ntrusted comment: b\nAAAA\n",
            "\u{0}\u{1}\u{2}",
            &s.replace("trusted comment: ", "trusted: "),
            &s.replace("untrusted comment: ", "comment: "),
            &format!("{s}extra line\n"),
        ] {
            malformed(ks.verify(POLICY, g));
        }
        // Another algorithm in the signature line.
        let mut other = sig.clone();
        other[..2].copy_from_slice(b"XX");
        let other = with_line(&s, 1, &STANDARD.encode(&other));
        assert!(malformed(ks.verify(POLICY, &other)).contains("not an Ed25519"));
    }

    #[test]
    fn policy_keys_bare_key_line_loads() {
        let k = key();
        let text = std::fs::read_to_string(&k.public).unwrap();
        std::fs::write(&k.public, format!("{}\n", lines(&text)[1])).unwrap();
        let s = signed(&k, None);
        assert!(keys(&[&k]).verify(POLICY, &s.minisig).is_ok());
    }

    #[test]
    fn policy_keys_parse_a_key_text_as_load_reads_a_file() {
        let k = key();
        let text = std::fs::read_to_string(&k.public).unwrap();
        let parsed = PolicyKeys::parse(&text).unwrap();
        assert_eq!(parsed.key_ids(), keys(&[&k]).key_ids());
        assert!(parsed.verify(POLICY, &signed(&k, None).minisig).is_ok());
        for bad in ["", "garbage", &"A".repeat(MAX_KEY_FILE_BYTES + 1)] {
            assert!(PolicyKeys::parse(bad).is_err(), "{:.20}", bad);
        }
    }

    #[test]
    fn policy_keys_bad_files_are_refused_naming_them() {
        let dir = tempfile::tempdir().unwrap();
        let k = key();
        let good = std::fs::read_to_string(&k.public).unwrap();
        let key_line = lines(&good)[1].to_string();
        let case = |name: &str, body: &[u8], want: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, body).unwrap();
            let e = PolicyKeys::load(std::slice::from_ref(&p)).unwrap_err();
            assert!(e.contains(&p.display().to_string()), "{name}: {e}");
            assert!(e.contains(want), "{name}: {e}");
        };
        case("empty.pub", b"", "empty");
        case("blank.pub", b"\n\n", "empty");
        case("garbage.pub", b"hello world\n", "base64");
        case("binary.pub", &[0xff, 0xfe, 0x00], "not UTF-8");
        case(
            "big.pub",
            &vec![b'A'; MAX_KEY_FILE_BYTES + 1],
            "larger than 4096",
        );
        case(
            "three.pub",
            format!("{good}{key_line}\n").as_bytes(),
            "not a minisign public key",
        );
        case(
            "nocomment.pub",
            format!("hello\n{key_line}\n").as_bytes(),
            "untrusted comment",
        );
        // A secret key is not a public key.
        case(
            "secret.pub",
            &std::fs::read(&k.secret).unwrap(),
            "base64 characters",
        );
        // Another algorithm.
        let mut b = STANDARD.decode(&key_line).unwrap();
        b[..2].copy_from_slice(b"XX");
        case("alg.pub", STANDARD.encode(&b).as_bytes(), "not an Ed25519");
        // A small-order point.
        let mut b = STANDARD.decode(&key_line).unwrap();
        b[10..].fill(0);
        b[10] = 1;
        case(
            "weak.pub",
            STANDARD.encode(&b).as_bytes(),
            "not a valid Ed25519",
        );
        // Missing.
        let missing = dir.path().join("missing.pub");
        let e = PolicyKeys::load(std::slice::from_ref(&missing)).unwrap_err();
        assert!(e.contains(&missing.display().to_string()), "{e}");
        // None at all.
        assert!(PolicyKeys::load(&[])
            .unwrap_err()
            .contains("no policy signing keys"));
    }

    #[test]
    fn policy_keys_duplicate_key_ids_are_refused() {
        let k = key();
        let copy = k.public.with_file_name("copy.pub");
        std::fs::copy(&k.public, &copy).unwrap();
        let e = PolicyKeys::load(&[k.public.clone(), copy.clone()]).unwrap_err();
        let id = keys(&[&k]).key_ids().remove(0);
        assert!(e.contains(&id), "{e}");
        assert!(e.contains(&copy.display().to_string()), "{e}");
        assert!(e.contains(&k.public.display().to_string()), "{e}");
    }

    #[test]
    fn policy_sign_encrypted_key_needs_its_password() {
        let kp = minisign::KeyPair::generate_encrypted_keypair(Some("correct horse".into()))
            .expect("keypair");
        let k = write_key(&kp);
        let e = sign(POLICY, &k.secret, None, None).unwrap_err();
        assert!(e.contains("encrypted, and no password was given"), "{e}");
        let e = sign(POLICY, &k.secret, Some("wrong".into()), None).unwrap_err();
        assert!(e.contains("wrong password"), "{e}");
        let e = sign(POLICY, &k.secret, Some("x".repeat(2000)), None).unwrap_err();
        assert!(e.contains("longer than 1024"), "{e}");
        let s = sign(POLICY, &k.secret, Some("correct horse".into()), Some("ok")).expect("sign");
        assert_eq!(
            keys(&[&k])
                .verify(POLICY, &s.minisig)
                .map(|v| v.trusted_comment),
            Ok("ok".into())
        );
        // A password for an unencrypted key is ignored.
        let u = key();
        assert!(sign(POLICY, &u.secret, Some("unused".into()), None).is_ok());
    }

    #[test]
    fn policy_sign_refuses_bad_keys_and_comments() {
        let k = key();
        for c in [
            "two\nlines",
            "cr\rhere",
            " leading",
            "trailing ",
            "nul\u{0}",
        ] {
            let e = sign(POLICY, &k.secret, None, Some(c)).unwrap_err();
            assert!(e.starts_with("trusted comment:"), "{c:?}: {e}");
        }
        let e = sign(POLICY, &k.secret, None, Some(&"x".repeat(1025))).unwrap_err();
        assert!(e.contains("longer than 1024"), "{e}");
        assert!(sign(POLICY, &k.secret, None, Some(&"x".repeat(1024))).is_ok());
        let dir = tempfile::tempdir().unwrap();
        let case = |name: &str, body: &[u8], want: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, body).unwrap();
            let e = sign(POLICY, &p, None, None).unwrap_err();
            assert!(e.contains(&p.display().to_string()), "{name}: {e}");
            assert!(e.contains(want), "{name}: {e}");
        };
        case("empty.key", b"", "empty");
        case("garbage.key", b"untrusted comment: x\ngarbage\n", "base64");
        case(
            "public.key",
            &std::fs::read(&k.public).unwrap(),
            "base64 characters",
        );
        case(
            "big.key",
            &vec![b'A'; MAX_KEY_FILE_BYTES + 1],
            "larger than 4096",
        );
        let good = std::fs::read_to_string(&k.secret).unwrap();
        let mut b = STANDARD.decode(lines(&good)[1]).unwrap();
        b[100] ^= 1;
        let body = format!("untrusted comment: x\n{}\n", STANDARD.encode(&b));
        case("corrupt.key", body.as_bytes(), "corrupted");
        // An all-zero checksum, as `minisign -G -W` writes: signs...
        let mut b = STANDARD.decode(lines(&good)[1]).unwrap();
        b[126..].fill(0);
        let p = dir.path().join("zero-chk.key");
        std::fs::write(
            &p,
            format!("untrusted comment: x\n{}\n", STANDARD.encode(&b)),
        )
        .unwrap();
        let s = sign(POLICY, &p, None, None).expect("a key with a zero checksum");
        assert!(keys(&[&k]).verify(POLICY, &s.minisig).is_ok());
        // ...unless its halves disagree (a flipped bit of the seed, of the public half).
        for at in [70, 100] {
            let mut c = b.clone();
            c[at] ^= 1;
            let body = format!("untrusted comment: x\n{}\n", STANDARD.encode(&c));
            case(&format!("zero-chk-{at}.key"), body.as_bytes(), "corrupted");
        }
        // scrypt parameters beyond the bound are not run.
        let mut b = STANDARD.decode(lines(&good)[1]).unwrap();
        b[2..4].copy_from_slice(b"Sc");
        b[38..46].copy_from_slice(&u64::MAX.to_le_bytes());
        let body = format!("untrusted comment: x\n{}\n", STANDARD.encode(&b));
        let p = dir.path().join("kdf.key");
        std::fs::write(&p, body).unwrap();
        let e = sign(POLICY, &p, Some("pw".into()), None).unwrap_err();
        assert!(e.contains("scrypt parameters"), "{e}");
        let missing = dir.path().join("missing.key");
        assert!(sign(POLICY, &missing, None, None)
            .unwrap_err()
            .contains(&missing.display().to_string()));
    }

    #[test]
    fn policy_key_id_is_the_little_endian_key_number_in_16_digits() {
        assert_eq!(
            key_id(&[0xBD, 0x70, 0xCE, 0xB6, 0x5D, 0xA2, 0x19, 0x06]),
            "0619A25DB6CE70BD"
        );
    }
}
