//! Template fields: checks shared by both formats, and the template data the
//! kernel hashes (`ima_template_lib.c`, `ima_crypto.c`).

use super::{
    At, BufferMeasurement, FileMeasurement, ImaError, OtherFields, Template, MAX_ALG_NAME,
    MAX_FILE_DIGEST,
};

/// The kernel's `hash_algo_name[]` and `hash_digest_size[]` (`crypto/hash_info.c`).
const KERNEL_HASH_ALGS: &[(&str, usize)] = &[
    ("md4", 16),
    ("md5", 16),
    ("sha1", 20),
    ("rmd160", 20),
    ("sha256", 32),
    ("sha384", 48),
    ("sha512", 64),
    ("sha224", 28),
    ("rmd128", 16),
    ("rmd256", 32),
    ("rmd320", 40),
    ("wp256", 32),
    ("wp384", 48),
    ("wp512", 64),
    ("tgr128", 16),
    ("tgr160", 20),
    ("tgr192", 24),
    ("sm3", 32),
    ("streebog256", 32),
    ("streebog512", 64),
    ("sha3-256", 32),
    ("sha3-384", 48),
    ("sha3-512", 64),
    ("ascon-hash256", 32),
];

/// Digest size of a violation's `d`/`d-ng` field in kernels before 5.9
/// (`IMA_DIGEST_SIZE`, whatever the algorithm); later ones use the algorithm's.
const IMA_DIGEST_SIZE: usize = 20;

/// The legacy `ima` template hashes its name zero-padded to this many bytes.
const IMA_NAME_FIELD: usize = 256;

/// Checks a `d-ng` algorithm name and digest. Known algorithms must have their
/// digest size (a violation may carry zeros of `IMA_DIGEST_SIZE`); unknown ones
/// are kept for policy to refuse, so a newer kernel's algorithm does not make
/// the whole log unreadable.
pub(super) fn check_file_digest(
    alg: &[u8],
    digest: &[u8],
    violation: bool,
    at: At,
) -> Result<String, ImaError> {
    let valid_name = !alg.is_empty()
        && alg.len() <= MAX_ALG_NAME
        && alg
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_');
    let alg = match std::str::from_utf8(alg) {
        Ok(a) if valid_name => a,
        _ => {
            return Err(ImaError::malformed(
                at,
                "d-ng",
                format!("{} is not a hash algorithm name", super::shown(alg)),
            ))
        }
    };
    if digest.len() > MAX_FILE_DIGEST {
        return Err(ImaError::TooLarge {
            at,
            field: "d-ng digest",
            len: digest.len(),
            max: MAX_FILE_DIGEST,
        });
    }
    let zero_violation =
        violation && digest.len() == IMA_DIGEST_SIZE && digest.iter().all(|b| *b == 0);
    let size_ok = match KERNEL_HASH_ALGS.iter().find(|(name, _)| *name == alg) {
        Some((_, size)) => digest.len() == *size || zero_violation,
        None => !digest.is_empty(),
    };
    if !size_ok {
        return Err(ImaError::malformed(
            at,
            "d-ng",
            format!("a {alg} digest of {} bytes", digest.len()),
        ));
    }
    Ok(alg.to_string())
}

/// Checks a name (`n`, `n-ng`): at most `max` bytes, UTF-8, no NUL.
pub(super) fn check_name(
    name: &[u8],
    max: usize,
    field: &'static str,
    at: At,
) -> Result<String, ImaError> {
    if name.len() > max {
        return Err(ImaError::TooLarge {
            at,
            field,
            len: name.len(),
            max,
        });
    }
    if name.contains(&0) {
        return Err(ImaError::malformed(at, field, "NUL byte inside the name"));
    }
    match std::str::from_utf8(name) {
        Ok(name) => Ok(name.to_string()),
        Err(_) => Err(ImaError::malformed(
            at,
            field,
            format!("{} is not UTF-8", super::shown(name)),
        )),
    }
}

/// A u32 length the way the kernel writes it (little-endian). Lengths here come
/// from parsed, bounded fields; one past u32 (never produced by parsing)
/// saturates.
pub(super) fn le32(len: usize) -> [u8; 4] {
    u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes()
}

/// Where template data is written: a buffer, or a hash that never holds it.
pub(super) trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

impl<D: sha2::Digest> Sink for HashSink<D> {
    fn put(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// A [`Sink`] hashing what is written.
pub(super) struct HashSink<D>(pub D);

fn put_field(out: &mut impl Sink, bytes: &[u8]) {
    out.put(&le32(bytes.len()));
    out.put(bytes);
}

/// `d-ng`: u32 length, algorithm name, `:`, NUL, raw digest.
fn put_digest_ng(out: &mut impl Sink, alg: &str, digest: &[u8]) {
    out.put(&le32(alg.len() + 2 + digest.len()));
    out.put(alg.as_bytes());
    out.put(b":\0");
    out.put(digest);
}

/// `n-ng`: u32 length, name, NUL.
fn put_name_ng(out: &mut impl Sink, name: &[u8]) {
    out.put(&le32(name.len() + 1));
    out.put(name);
    out.put(&[0]);
}

/// `d-ng` then `n-ng`: the fields every template but `ima` starts with.
fn put_ng(out: &mut impl Sink, alg: &str, digest: &[u8], name: &[u8]) {
    put_digest_ng(out, alg, digest);
    put_name_ng(out, name);
}

/// Length of [`template_data`], without building it.
pub(super) fn template_data_len(t: &Template) -> Option<usize> {
    let ng = |alg: &str, digest: &[u8], name: &[u8]| {
        4 + alg.len() + 2 + digest.len() + 4 + name.len() + 1
    };
    Some(match t {
        Template::Ima(f) => f.digest.len() + IMA_NAME_FIELD.max(f.path.len()),
        Template::ImaNg(f) => ng(&f.hash_alg, &f.digest, f.path.as_bytes()),
        Template::ImaSig(f) => {
            ng(&f.hash_alg, &f.digest, f.path.as_bytes())
                + 4
                + f.signature.as_ref().map_or(0, Vec::len)
        }
        Template::ImaBuf(b) => ng(&b.hash_alg, &b.digest, b.name.as_bytes()) + 4 + b.buf.len(),
        Template::Other(o) => match &o.fields {
            OtherFields::TemplateData(d) => d.len(),
            OtherFields::Ascii(_) => return None,
        },
    })
}

/// The template data of an entry: what its template hash and every PCR bank's
/// extend value are computed over.
pub(super) fn template_data(t: &Template) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(template_data_len(t)?);
    write_template_data(t, &mut out)?;
    Some(out)
}

/// Writes [`template_data`] into `out`; `None` (nothing written) for
/// undecoded templates of ascii logs.
pub(super) fn write_template_data(t: &Template, out: &mut impl Sink) -> Option<()> {
    match t {
        Template::Ima(FileMeasurement { digest, path, .. }) => {
            // `ima`: no lengths; the name is zero-padded to 256 bytes.
            const ZEROS: [u8; IMA_NAME_FIELD] = [0; IMA_NAME_FIELD];
            out.put(digest);
            out.put(path.as_bytes());
            let pad = IMA_NAME_FIELD.saturating_sub(path.len());
            out.put(ZEROS.get(..pad).unwrap_or_default());
        }
        Template::ImaNg(f) => put_ng(out, &f.hash_alg, &f.digest, f.path.as_bytes()),
        Template::ImaSig(f) => {
            put_ng(out, &f.hash_alg, &f.digest, f.path.as_bytes());
            put_field(out, f.signature.as_deref().unwrap_or_default());
        }
        Template::ImaBuf(BufferMeasurement {
            hash_alg,
            digest,
            name,
            buf,
        }) => {
            put_ng(out, hash_alg, digest, name.as_bytes());
            put_field(out, buf);
        }
        Template::Other(o) => match &o.fields {
            OtherFields::TemplateData(d) => out.put(d),
            OtherFields::Ascii(_) => return None,
        },
    }
    Some(())
}
