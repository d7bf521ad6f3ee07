//! Tests across the decoders: a minimal log walker and helpers here; every
//! event of every log in `shared/testdata/eventlogs` (`corpus`); per-log
//! expectations checked by hand against `tpm2_eventlog` (tpm2-tools 5.4) and
//! `openssl x509` (`logs`); dispatch and property tests (`dispatch`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use sha2::Digest as _;

use super::*;

mod corpus;
mod dispatch;
mod logs;

const CORPUS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/testdata/eventlogs"
);

/// One event as the test walker sees it.
#[derive(Debug)]
struct Ev {
    num: usize,
    pcr: u32,
    event_type: u32,
    /// (TPM_ALG_ID, digest)
    digests: Vec<(u16, Vec<u8>)>,
    data: Vec<u8>,
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

/// A minimal walker for test logs (the real parser is `eventlog::uefi`): the
/// first record is a SHA-1 `TCG_PCClientPCREvent`; if it is the Spec ID event the
/// rest are `TCG_PCR_EVENT2`, otherwise SHA-1 records. Stops at zero padding.
fn walk(log: &[u8]) -> Vec<Ev> {
    let mut out = Vec::new();
    let mut at = 0;
    let legacy = |at: &mut usize| {
        let (pcr, event_type) = (le32(log, *at), le32(log, *at + 4));
        let digest = log[*at + 8..*at + 28].to_vec();
        let size = le32(log, *at + 28) as usize;
        let data = log[*at + 32..*at + 32 + size].to_vec();
        *at += 32 + size;
        (pcr, event_type, vec![(0x0004u16, digest)], data)
    };
    let (pcr, event_type, digests, data) = legacy(&mut at);
    let agile = data.starts_with(b"Spec ID Event03\0");
    out.push(Ev {
        num: 0,
        pcr,
        event_type,
        digests,
        data,
    });
    while at < log.len() && log[at..].iter().any(|&b| b != 0) {
        let (pcr, event_type, digests, data) = if agile {
            let (pcr, event_type, count) = (le32(log, at), le32(log, at + 4), le32(log, at + 8));
            at += 12;
            let mut digests = Vec::new();
            for _ in 0..count {
                let alg = u16::from_le_bytes([log[at], log[at + 1]]);
                let len = match alg {
                    0x0004 => 20,
                    0x000b | 0x0012 => 32,
                    0x000c => 48,
                    0x000d => 64,
                    other => panic!("unknown digest algorithm {other:#x}"),
                };
                digests.push((alg, log[at + 2..at + 2 + len].to_vec()));
                at += 2 + len;
            }
            let size = le32(log, at) as usize;
            let data = log[at + 4..at + 4 + size].to_vec();
            at += 4 + size;
            (pcr, event_type, digests, data)
        } else {
            legacy(&mut at)
        };
        out.push(Ev {
            num: out.len(),
            pcr,
            event_type,
            digests,
            data,
        });
    }
    out
}

fn log(name: &str) -> Vec<Ev> {
    let path = format!("{CORPUS}/{name}");
    walk(&std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
}

/// Every UEFI log in the corpus that `tpm2_eventlog` can walk (the bogus one is
/// not a log; `short_no_action_eventlog` is one truncated Spec ID event).
const LOGS: &[&str] = &[
    "tpm2-tools/event-arch-linux.bin",
    "tpm2-tools/event-bootorder.bin",
    "tpm2-tools/event-gce-ubuntu-2104-log.bin",
    "tpm2-tools/event-moklisttrusted.bin",
    "tpm2-tools/event-postcode.bin",
    "tpm2-tools/event-sd-boot-fedora37.bin",
    "tpm2-tools/event-uefi-sha1-log.bin",
    "tpm2-tools/event-uefiaction.bin",
    "tpm2-tools/event-uefiservices.bin",
    "tpm2-tools/event-uefivar.bin",
    "tpm2-tools/event.bin",
    "go-attestation/coreos_36_shielded_vm_no_secure_boot_eventlog",
    "go-attestation/crypto_agile_eventlog",
    "go-attestation/ebs_event_missing_eventlog",
    "go-attestation/option_rom_eventlog",
    "go-attestation/sb_cert_eventlog",
    "go-attestation/ubuntu_2104_shielded_vm_no_secure_boot_eventlog",
    "keylime/binary_bios_measurements",
    "keylime/binary_bios_measurements-secureboot",
];

fn hash(alg: u16, data: &[u8]) -> Option<Vec<u8>> {
    Some(match alg {
        0x0004 => sha1::Sha1::digest(data).to_vec(),
        0x000b => sha2::Sha256::digest(data).to_vec(),
        0x000c => sha2::Sha384::digest(data).to_vec(),
        0x000d => sha2::Sha512::digest(data).to_vec(),
        _ => return None,
    })
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
