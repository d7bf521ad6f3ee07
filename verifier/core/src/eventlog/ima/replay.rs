//! Replay of a log into one PCR bank, and the per-entry template-hash check.

use std::collections::BTreeMap;

use serde::{Serialize, Serializer};
use sha2::Digest;

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
    for e in &log.entries {
        let data = e.template_data();
        if e.is_violation() {
            out.violations.push(e.index);
        } else {
            match data.as_deref().and_then(|d| template_hash_matches(e, d)) {
                Some(true) => {}
                Some(false) => out.mismatched.push(e.index),
                None => out.unchecked.push(e.index),
            }
        }
        let value = extend_digest(e, bank, data.as_deref())?;
        let pcr = out
            .pcrs
            .entry(e.pcr)
            .or_insert_with(|| vec![0; bank.digest_len()]);
        *pcr = extend(bank, pcr, &value);
    }
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

pub(super) fn template_hash_matches(e: &ImaEntry, data: &[u8]) -> Option<bool> {
    let alg = template_hash_alg(e.template_hash.len())?;
    Some(alg.digest(data) == e.template_hash)
}

pub(super) fn extend_digest(
    e: &ImaEntry,
    bank: HashAlg,
    data: Option<&[u8]>,
) -> Result<Vec<u8>, ImaError> {
    if e.is_violation() {
        return Ok(vec![0xff; bank.digest_len()]);
    }
    if e.template_hash.len() == bank.digest_len() {
        return Ok(e.template_hash.clone());
    }
    let data = data.ok_or_else(|| ImaError::NotRecomputable {
        index: e.index,
        template: e.template.name().to_string(),
    })?;
    Ok(bank.digest(data))
}

/// `H(pcr || value)`.
fn extend(bank: HashAlg, pcr: &[u8], value: &[u8]) -> Vec<u8> {
    fn run<D: Digest>(pcr: &[u8], value: &[u8]) -> Vec<u8> {
        let mut h = D::new();
        h.update(pcr);
        h.update(value);
        h.finalize().to_vec()
    }
    match bank {
        HashAlg::Sha1 => run::<sha1::Sha1>(pcr, value),
        HashAlg::Sha256 => run::<sha2::Sha256>(pcr, value),
        HashAlg::Sha384 => run::<sha2::Sha384>(pcr, value),
        HashAlg::Sha512 => run::<sha2::Sha512>(pcr, value),
    }
}

fn ser_pcrs<S: Serializer>(pcrs: &BTreeMap<u32, Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(pcrs.iter().map(|(pcr, value)| (pcr, hex::encode(value))))
}
