//! Tests across the decoders: a minimal log walker and helpers here; every
//! event of every log in `tests/data/eventlogs` (`corpus`); per-log
//! expectations checked by hand against `tpm2_eventlog` (tpm2-tools 5.4) and
//! `openssl x509` (`logs`); dispatch and property tests (`dispatch`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use super::*;
/// Every UEFI log in the corpus that parses.
use crate::eventlog::uefi::tests::GOOD_LOGS as LOGS;

mod corpus;
mod dispatch;
mod logs;

/// One event, as the decoder tests use it.
#[derive(Debug)]
struct Ev {
    num: usize,
    pcr: u32,
    event_type: u32,
    /// (TPM_ALG_ID, digest)
    digests: Vec<(u16, Vec<u8>)>,
    data: Vec<u8>,
}

/// The events of a corpus log, read with the real parser (`eventlog::uefi`).
fn log(name: &str) -> Vec<Ev> {
    let bytes = crate::eventlog::uefi::tests::corpus(name);
    crate::eventlog::uefi::parse(&bytes, &crate::eventlog::uefi::Limits::default())
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .events
        .into_iter()
        .map(|e| Ev {
            num: e.num as usize,
            pcr: e.pcr,
            event_type: e.event_type,
            digests: e
                .digests
                .into_iter()
                .map(|d| (d.alg_id, d.digest))
                .collect(),
            data: e.data,
        })
        .collect()
}

fn hash(alg: u16, data: &[u8]) -> Option<Vec<u8>> {
    crate::tpm::public::HashAlg::from_tpm(alg).map(|bank| crate::eventlog::uefi::hash(bank, data))
}

fn digest_matches(ev: &Ev, data: &[u8]) -> bool {
    ev.digests
        .iter()
        .all(|(alg, d)| hash(*alg, data).is_none_or(|h| &h == d))
}

fn decoded(ev: &Ev) -> EventData {
    decode(ev.event_type, &ev.data)
        .unwrap_or_else(|e| panic!("event {} ({}): {e}", ev.num, event_type_name(ev.event_type)))
}

fn variable(ev: &Ev) -> VariableData {
    match decoded(ev) {
        EventData::Variable(v) => v,
        other => panic!("event {}: {other:?}", ev.num),
    }
}

fn certs(v: &VariableData) -> Vec<Certificate> {
    let VariableValue::SignatureLists { lists } = &v.value else {
        panic!("{}: {:?}", v.name, v.value)
    };
    lists
        .iter()
        .flat_map(|l| &l.signatures)
        .filter_map(|s| match &s.value {
            SignatureValue::X509(c) => Some(c.clone()),
            _ => None,
        })
        .collect()
}

fn sha256_entries(v: &VariableData) -> usize {
    let VariableValue::SignatureLists { lists } = &v.value else {
        panic!("{}: {:?}", v.name, v.value)
    };
    lists
        .iter()
        .flat_map(|l| &l.signatures)
        .filter(|s| matches!(s.value, SignatureValue::Sha256 { .. }))
        .count()
}

fn image(ev: &Ev) -> ImageLoadEvent {
    match decoded(ev) {
        EventData::ImageLoad(i) => i,
        other => panic!("event {}: {other:?}", ev.num),
    }
}
