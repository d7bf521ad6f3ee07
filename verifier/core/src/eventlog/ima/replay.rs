//! Replay of a log into one PCR bank, and the per-entry template-hash check.
//!
//! Digests are computed without allocating: template data is streamed into
//! the hash ([`Sink`]), and values are kept in fixed [`Value`] buffers.

use std::collections::BTreeMap;

use serde::{Serialize, Serializer};
use sha2::Digest;

use super::template::{write_template_data, HashSink};
use super::{ser_alg, ImaEntry, ImaError, ImaLog};
use crate::tpm::public::HashAlg;

/// What replaying a log into one bank gives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImaReplay {
    #[serde(serialize_with = "ser_alg")]
    pub bank: HashAlg,
    /// PCR index → value after every entry naming it (starting from zeros).
    #[serde(serialize_with = "ser_pcrs")]
    pub pcrs: BTreeMap<u32, Vec<u8>>,
    /// Entries whose logged template hash is not the hash of their template
    /// data: their path and digest must not be trusted, even if the PCR matches.
    pub mismatched: Vec<usize>,
    /// Violation entries (all-zero template hash, extended as all-`0xff`).
    pub violations: Vec<usize>,
    /// Entries whose template data is unknown (undecoded templates from an
    /// ascii log), so their template hash could not be checked.
    pub unchecked: Vec<usize>,
}

/// A digest of any bank, without a heap allocation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Value {
    bytes: [u8; 64],
    len: usize,
}

impl Value {
    /// `bank`'s initial PCR value (zeros).
    pub fn zero(bank: HashAlg) -> Self {
        Self {
            bytes: [0; 64],
            len: bank.digest_len(),
        }
    }

    /// A value of `bytes` (at most 64 bytes; longer is cut).
    pub fn from_slice(bytes: &[u8]) -> Self {
        let mut v = Self {
            bytes: [0; 64],
            len: bytes.len().min(64),
        };
        if let (Some(dst), Some(src)) = (v.bytes.get_mut(..v.len), bytes.get(..v.len)) {
            dst.copy_from_slice(src);
        }
        v
    }

    pub fn as_slice(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or_default()
    }

    fn filled(len: usize, byte: u8) -> Self {
        Self {
            bytes: [byte; 64],
            len: len.min(64),
        }
    }
}

impl std::fmt::Debug for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.as_slice()))
    }
}

fn finish<D: Digest>(d: D) -> Value {
    Value::from_slice(&d.finalize())
}

/// `bank` over the entry's template data, or None when it is unknown.
fn hash_template(e: &ImaEntry, bank: HashAlg) -> Option<Value> {
    fn run<D: Digest>(e: &ImaEntry) -> Option<Value> {
        let mut sink = HashSink(D::new());
        write_template_data(&e.template, &mut sink)?;
        Some(finish(sink.0))
    }
    match bank {
        HashAlg::Sha1 => run::<sha1::Sha1>(e),
        HashAlg::Sha256 => run::<sha2::Sha256>(e),
        HashAlg::Sha384 => run::<sha2::Sha384>(e),
        HashAlg::Sha512 => run::<sha2::Sha512>(e),
    }
}

/// `H(pcr || value)`, in place.
pub fn extend_value(bank: HashAlg, pcr: &mut Value, value: &Value) {
    fn run<D: Digest>(pcr: &[u8], value: &[u8]) -> Value {
        let mut h = D::new();
        h.update(pcr);
        h.update(value);
        finish(h)
    }
    *pcr = match bank {
        HashAlg::Sha1 => run::<sha1::Sha1>(pcr.as_slice(), value.as_slice()),
        HashAlg::Sha256 => run::<sha2::Sha256>(pcr.as_slice(), value.as_slice()),
        HashAlg::Sha384 => run::<sha2::Sha384>(pcr.as_slice(), value.as_slice()),
        HashAlg::Sha512 => run::<sha2::Sha512>(pcr.as_slice(), value.as_slice()),
    };
}

/// What `bank` is extended with for this entry, and — when that is the
/// logged template hash (the bank is the log's template-hash algorithm) —
/// whether the template data hashes to it (`Some(false)`: the data is not
/// what was extended). For any other bank the value is computed from the
/// data itself, which the bank's replay then proves, and the logged hash
/// plays no part (`None`). Violations extend all-`0xff` (`None`).
pub fn entry_extend(e: &ImaEntry, bank: HashAlg) -> Result<(Value, Option<bool>), ImaError> {
    if e.is_violation() {
        return Ok((Value::filled(bank.digest_len(), 0xff), None));
    }
    let computed = hash_template(e, bank);
    if e.template_hash.len() == bank.digest_len() {
        let logged = Value::from_slice(&e.template_hash);
        return Ok((logged, computed.map(|c| c == logged)));
    }
    let value = computed.ok_or_else(|| ImaError::NotRecomputable {
        index: e.index,
        template: e.template.name().to_string(),
    })?;
    Ok((value, None))
}

/// Replays `log` into `bank` as the kernel extends it (each entry's
/// [`ImaEntry::extend_digest`]), and checks every entry's template hash
/// against its template data.
///
/// A bank with the log's template-hash algorithm is extended with the logged
/// template hashes; any other bank with the template data hashed by the bank's
/// algorithm, which fails with [`ImaError::NotRecomputable`] for undecoded
/// templates from an ascii log. Violations extend all-`0xff` in every bank.
pub fn replay(log: &ImaLog, bank: HashAlg) -> Result<ImaReplay, ImaError> {
    let mut out = ImaReplay {
        bank,
        pcrs: BTreeMap::new(),
        mismatched: Vec::new(),
        violations: Vec::new(),
        unchecked: Vec::new(),
    };
    let mut values: BTreeMap<u32, Value> = BTreeMap::new();
    for e in &log.entries {
        let (value, matched) = entry_extend(e, bank)?;
        if e.is_violation() {
            out.violations.push(e.index);
        } else {
            // The logged hash is checked whatever the bank: with another
            // bank's replay it is not what was extended, but a log whose
            // hashes disagree with its data is named.
            let matched = match matched {
                Some(m) => Some(m),
                None => template_hash_alg(e.template_hash.len())
                    .and_then(|alg| hash_template(e, alg))
                    .map(|c| c.as_slice() == e.template_hash.as_slice()),
            };
            match matched {
                Some(true) => {}
                Some(false) => out.mismatched.push(e.index),
                None => out.unchecked.push(e.index),
            }
        }
        let pcr = values.entry(e.pcr).or_insert_with(|| Value::zero(bank));
        extend_value(bank, pcr, &value);
    }
    out.pcrs = values
        .into_iter()
        .map(|(i, v)| (i, v.as_slice().to_vec()))
        .collect();
    Ok(out)
}

/// The algorithm a template hash of this length belongs to (parsing keeps
/// every entry of a log at its `template_hash_alg`).
fn template_hash_alg(len: usize) -> Option<HashAlg> {
    [
        HashAlg::Sha1,
        HashAlg::Sha256,
        HashAlg::Sha384,
        HashAlg::Sha512,
    ]
    .into_iter()
    .find(|a| a.digest_len() == len)
}

pub(super) fn template_hash_matches(e: &ImaEntry) -> Option<bool> {
    let alg = template_hash_alg(e.template_hash.len())?;
    Some(hash_template(e, alg)?.as_slice() == e.template_hash.as_slice())
}

pub(super) fn extend_digest(e: &ImaEntry, bank: HashAlg) -> Result<Vec<u8>, ImaError> {
    entry_extend(e, bank).map(|(v, _)| v.as_slice().to_vec())
}

fn ser_pcrs<S: Serializer>(pcrs: &BTreeMap<u32, Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(pcrs.iter().map(|(pcr, value)| (pcr, hex::encode(value))))
}
