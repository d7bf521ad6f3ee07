//! Linux IMA runtime measurement logs: parsing (ascii and binary), template
//! data, and replay into PCRs.
//!
//! Bytes in, typed results out: [`parse`] (auto-detects the format),
//! [`parse_ascii`], [`parse_binary`], [`replay`], and [`to_binary`] (the
//! kernel's binary encoding of a parsed log, for tests, benches and archiving).
//!
//! # Formats (as the kernel writes them; `ima_fs.c`, `ima_template_lib.c`)
//!
//! - **ascii** (`ascii_runtime_measurements`): one entry per `\n`-terminated
//!   line, `PCR template-hash template-name field…`. The PCR is printed `%2d`
//!   (so PCRs below 10 have a leading space). Each field is preceded by one
//!   space, even when it is empty (an `ima-sig` entry without a signature ends
//!   in a space). Since 2014 the kernel replaces spaces in names with `_`;
//!   older logs may still have them, so the name is the rest of the line for
//!   `ima`/`ima-ng`, and the text between the digest and the last space for
//!   `ima-sig`/`ima-buf` (whose last field is hex and has no spaces).
//!   Names must be UTF-8 (a file with another name makes the log an error
//!   naming its line or record; it would fail an allowlist anyway).
//! - **binary** (`binary_runtime_measurements`): records of u32 PCR, template
//!   hash, u32 template-name length, name, then for every template but `ima`
//!   a u32 template-data length and the template data; for `ima` the 20-byte
//!   digest and a u32 length + the name without NUL. Integers are little-endian
//!   (host order; big-endian hosts must boot with `ima_canonical_fmt`).
//! - The **template data** (what the template hash is computed over) is, for
//!   every template but `ima`, each field as a u32 LE length and its bytes:
//!   `d-ng` = algorithm name, `:`, NUL, raw digest; `n-ng` = name and NUL;
//!   `sig`/`buf` = raw bytes (possibly empty). For `ima` it is the 20-byte
//!   digest followed by the name zero-padded to 256 bytes, without lengths
//!   (`ima_calc_field_array_hash_tfm`).
//!
//! The template hash is SHA-1 in `ascii_runtime_measurements` and
//! `binary_runtime_measurements`; since Linux 6.10 the files suffixed
//! `_sha256`, `_sha384`, … carry that bank's digest instead. The ascii parser
//! tells them apart by length; [`parse_binary`] is told.
//!
//! # Replay
//!
//! The kernel extends each bank with the template data hashed by that bank's
//! algorithm; an entry whose template hash is all zeros is a violation
//! (ToMToU, open-writers) and is extended as all-`0xff` instead. [`replay`]
//! does the same and also checks every entry's logged template hash against
//! its template data, listing the entries that do not match: their contents
//! must not be trusted even when the PCR value matches.

mod ascii;
mod binary;
mod replay;
mod template;
#[cfg(test)]
mod tests;

use std::fmt;

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use crate::reader::WireError;
use crate::tpm::public::HashAlg;

pub use ascii::parse_ascii;
pub use binary::{parse_binary, to_binary};
pub use replay::{entry_extend, extend_value, replay, ImaReplay, Value};

/// PCR indices must be below this (TPM 2.0 PC Client platforms have 24 PCRs).
pub const PCR_COUNT: u32 = 24;
/// Longest template name accepted (the kernel's `MAX_TEMPLATE_NAME_LEN` is 38).
pub const MAX_TEMPLATE_NAME: usize = 64;
/// Longest hash algorithm name (`CRYPTO_MAX_ALG_NAME`).
pub const MAX_ALG_NAME: usize = 128;
/// Longest file digest (`HASH_MAX_DIGESTSIZE`, SHA-512).
pub const MAX_FILE_DIGEST: usize = 64;
/// Longest name of the legacy `ima` template (`IMA_EVENT_NAME_LEN_MAX`).
pub const MAX_IMA_TEMPLATE_NAME: usize = 255;

/// Bounds on what a log may make the parser hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Whole log, in bytes.
    pub max_log_bytes: usize,
    /// Number of entries.
    pub max_entries: usize,
    /// One entry's template data (binary), or the text of its fields (ascii).
    pub max_template_data: usize,
    /// A file or buffer name, without its NUL (`PATH_MAX` is 4096).
    pub max_name: usize,
    /// An `ima-sig` signature.
    pub max_signature: usize,
}

impl Limits {
    pub const DEFAULT: Limits = Limits {
        max_log_bytes: 256 << 20,
        max_entries: 1_000_000,
        max_template_data: 64 << 10,
        max_name: 4096,
        max_signature: 8 << 10,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A parsed IMA measurement log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImaLog {
    /// The algorithm of every entry's `template_hash`.
    #[serde(serialize_with = "ser_alg")]
    pub template_hash_alg: HashAlg,
    pub entries: Vec<ImaEntry>,
}

/// One measurement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImaEntry {
    /// Position in the log, from 0 (an ascii entry's line number is `index + 1`).
    pub index: usize,
    pub pcr: u32,
    /// As logged; all zeros marks a violation.
    pub template_hash: Vec<u8>,
    pub template: Template,
}

/// The template of an entry and its decoded fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Template {
    /// `ima` (`d|n`): a 20-byte digest (`hash_alg` is "sha1") and a name of at
    /// most 255 bytes.
    Ima(FileMeasurement),
    /// `ima-ng` (`d-ng|n-ng`).
    ImaNg(FileMeasurement),
    /// `ima-sig` (`d-ng|n-ng|sig`).
    ImaSig(FileMeasurement),
    /// `ima-buf` (`d-ng|n-ng|buf`): kexec command lines, keys, critical data.
    ImaBuf(BufferMeasurement),
    /// Any other template, kept undecoded.
    Other(OtherTemplate),
}

/// A file's digest and name (`ima`, `ima-ng`, `ima-sig`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileMeasurement {
    /// The kernel's name for the algorithm ("sha256", "sha1", "sm3", …). Known
    /// algorithms are checked against their digest size; others are kept for
    /// policy to judge.
    pub hash_alg: String,
    #[serde(serialize_with = "ser_hex")]
    pub digest: Vec<u8>,
    pub path: String,
    /// `ima-sig` only; `None` when the field is empty.
    #[serde(serialize_with = "ser_hex_opt")]
    pub signature: Option<Vec<u8>>,
}

/// A measured buffer (`ima-buf`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BufferMeasurement {
    pub hash_alg: String,
    #[serde(serialize_with = "ser_hex")]
    pub digest: Vec<u8>,
    pub name: String,
    #[serde(serialize_with = "ser_hex")]
    pub buf: Vec<u8>,
}

/// A template this module does not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtherTemplate {
    pub name: String,
    pub fields: OtherFields,
}

/// What is kept of an undecoded template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OtherFields {
    /// From a binary log: the template data, which can be hashed and replayed.
    TemplateData(Vec<u8>),
    /// From an ascii log: the printed fields, which cannot be turned back into
    /// template data (replay into a bank other than the log's template-hash
    /// algorithm fails with [`ImaError::NotRecomputable`]).
    Ascii(String),
}

impl Template {
    /// The template name as logged.
    pub fn name(&self) -> &str {
        match self {
            Template::Ima(_) => "ima",
            Template::ImaNg(_) => "ima-ng",
            Template::ImaSig(_) => "ima-sig",
            Template::ImaBuf(_) => "ima-buf",
            Template::Other(o) => &o.name,
        }
    }
}

impl ImaEntry {
    /// The measured file, for `ima`, `ima-ng` and `ima-sig` entries.
    pub fn file(&self) -> Option<&FileMeasurement> {
        match &self.template {
            Template::Ima(f) | Template::ImaNg(f) | Template::ImaSig(f) => Some(f),
            Template::ImaBuf(_) | Template::Other(_) => None,
        }
    }

    /// A violation entry: all-zero template hash, extended as all-`0xff`.
    pub fn is_violation(&self) -> bool {
        self.template_hash.iter().all(|b| *b == 0)
    }

    /// The measured file's path, or the buffer's name (`ima-buf`).
    pub fn path(&self) -> Option<&str> {
        match &self.template {
            Template::Ima(f) | Template::ImaNg(f) | Template::ImaSig(f) => Some(&f.path),
            Template::ImaBuf(b) => Some(&b.name),
            Template::Other(_) => None,
        }
    }

    /// The bytes the kernel hashes into the template hash and each PCR bank;
    /// `None` for undecoded templates from an ascii log.
    pub fn template_data(&self) -> Option<Vec<u8>> {
        template::template_data(&self.template)
    }

    /// Whether the logged template hash is the hash of the template data
    /// (with the algorithm its length names); `None` for violations and when
    /// the template data is unknown. [`replay`] lists the entries for which
    /// this is `Some(false)`.
    pub fn template_hash_matches(&self) -> Option<bool> {
        if self.is_violation() {
            return None;
        }
        replay::template_hash_matches(self)
    }

    /// What the kernel extends into `bank` for this entry: all-`0xff` for a
    /// violation, the template hash if it is a `bank` digest, else the
    /// template data hashed with `bank` (which fails with
    /// [`ImaError::NotRecomputable`] for undecoded templates of ascii logs).
    pub fn extend_digest(&self, bank: HashAlg) -> Result<Vec<u8>, ImaError> {
        replay::extend_digest(self, bank)
    }
}

impl Serialize for ImaEntry {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("index", &self.index)?;
        m.serialize_entry("pcr", &self.pcr)?;
        m.serialize_entry("template_hash", &hex::encode(&self.template_hash))?;
        m.serialize_entry("template", self.template.name())?;
        match &self.template {
            Template::Ima(f) | Template::ImaNg(f) | Template::ImaSig(f) => {
                m.serialize_entry("file", f)?
            }
            Template::ImaBuf(b) => m.serialize_entry("buffer", b)?,
            Template::Other(OtherTemplate { fields, .. }) => match fields {
                OtherFields::TemplateData(d) => {
                    m.serialize_entry("template_data", &hex::encode(d))?
                }
                OtherFields::Ascii(text) => m.serialize_entry("ascii_fields", text)?,
            },
        }
        m.end()
    }
}

/// Where in the log a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum At {
    /// An ascii line, from 1.
    Line(usize),
    /// A binary record (from 0, as [`ImaEntry::index`]) and its byte offset.
    Record { index: usize, offset: usize },
}

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            At::Line(n) => write!(f, "line {n}"),
            At::Record { index, offset } => write!(f, "record {index} (byte offset {offset})"),
        }
    }
}

/// Why an IMA log could not be parsed or replayed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImaError {
    #[error("IMA log is {len} bytes, more than the limit of {max} (raise `Limits::max_log_bytes` if the node is legitimate)")]
    LogTooLarge { len: usize, max: usize },
    #[error("{at}: IMA log has more than {max} entries (`Limits::max_entries`)")]
    TooManyEntries { at: At, max: usize },
    #[error("{at}: {field}: needs {needed} more bytes, only {left} left (truncated log)")]
    Truncated {
        at: At,
        field: &'static str,
        needed: usize,
        left: usize,
    },
    #[error("{at}: {field}: length {len} exceeds the maximum of {max}")]
    TooLarge {
        at: At,
        field: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{at}: {field}: {len} unexpected trailing bytes")]
    TrailingData {
        at: At,
        field: &'static str,
        len: usize,
    },
    #[error("{at}: {field}: {reason}")]
    Malformed {
        at: At,
        field: &'static str,
        reason: String,
    },
    #[error("entry {index}: the ascii fields of template {template:?} cannot be turned back into template data, which replay into a bank other than the template hash's and binary encoding need; send the binary log")]
    NotRecomputable { index: usize, template: String },
}

impl ImaError {
    fn malformed(at: At, field: &'static str, reason: impl Into<String>) -> Self {
        ImaError::Malformed {
            at,
            field,
            reason: reason.into(),
        }
    }

    fn from_wire(at: At, e: WireError) -> Self {
        match e {
            WireError::MissingData { what, needed, left } => ImaError::Truncated {
                at,
                field: what,
                needed,
                left,
            },
            WireError::TooLarge { what, len, max } => ImaError::TooLarge {
                at,
                field: what,
                len,
                max,
            },
            WireError::TrailingData { what, len } => ImaError::TrailingData {
                at,
                field: what,
                len,
            },
            WireError::Unsupported { what, value } => {
                ImaError::malformed(at, what, format!("unsupported value {value:#x}"))
            }
            WireError::Invalid { what, reason } => ImaError::malformed(at, what, reason),
        }
    }
}

/// Parses an IMA log in either format. Binary is recognised by a NUL among the
/// first four bytes (the little-endian PCR index; ascii logs never hold NUL)
/// and read with SHA-1 template hashes, as in `binary_runtime_measurements`;
/// for the per-bank binary files call [`parse_binary`].
pub fn parse(bytes: &[u8], limits: &Limits) -> Result<ImaLog, ImaError> {
    let head = bytes.get(..4).unwrap_or(bytes);
    if head.contains(&0) {
        parse_binary(bytes, HashAlg::Sha1, limits)
    } else {
        parse_ascii(bytes, limits)
    }
}

fn check_log_size(bytes: &[u8], limits: &Limits) -> Result<(), ImaError> {
    if bytes.len() > limits.max_log_bytes {
        return Err(ImaError::LogTooLarge {
            len: bytes.len(),
            max: limits.max_log_bytes,
        });
    }
    Ok(())
}

fn check_pcr(pcr: u32, at: At) -> Result<u32, ImaError> {
    if pcr >= PCR_COUNT {
        return Err(ImaError::malformed(
            at,
            "pcr",
            format!(
                "PCR {pcr} does not exist (a TPM has PCRs 0 to {})",
                PCR_COUNT - 1
            ),
        ));
    }
    Ok(pcr)
}

/// Template names are printable ASCII without spaces.
fn check_template_name(bytes: &[u8], at: At) -> Result<String, ImaError> {
    if bytes.len() > MAX_TEMPLATE_NAME {
        return Err(ImaError::TooLarge {
            at,
            field: "template name",
            len: bytes.len(),
            max: MAX_TEMPLATE_NAME,
        });
    }
    match std::str::from_utf8(bytes) {
        Ok(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic()) => Ok(s.to_string()),
        _ => Err(ImaError::malformed(
            at,
            "template name",
            format!("{} is not a template name", shown(bytes)),
        )),
    }
}

/// Peer bytes for an error message: lossy, escaped, at most 40 characters.
fn shown(bytes: &[u8]) -> String {
    let text: String = String::from_utf8_lossy(bytes).chars().take(40).collect();
    format!("{text:?}")
}

fn ser_hex<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(bytes))
}

fn ser_hex_opt<S: Serializer>(bytes: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
    match bytes {
        Some(b) => s.serialize_some(&hex::encode(b)),
        None => s.serialize_none(),
    }
}

fn ser_alg<S: Serializer>(alg: &HashAlg, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(alg)
}
