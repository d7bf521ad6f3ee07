#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use super::*;
use crate::eventlog::efi::{EV_IPL, EV_SEPARATOR};
use proptest::prelude::*;

pub(crate) const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data/eventlogs");

pub(crate) fn corpus(name: &str) -> Vec<u8> {
    std::fs::read(format!("{CORPUS}/{name}")).unwrap_or_else(|e| panic!("{CORPUS}/{name}: {e}"))
}

/// Every UEFI log in the corpus with what we must make of it.
pub(crate) const GOOD_LOGS: &[&str] = &[
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
    "go-attestation/short_no_action_eventlog",
    "go-attestation/ubuntu_2104_shielded_vm_no_secure_boot_eventlog",
    "keylime/binary_bios_measurements",
    "keylime/binary_bios_measurements-secureboot",
    "tpm2-tools/specid-vendordata.bin",
];

#[test]
fn every_corpus_log_parses_and_round_trips() {
    for name in GOOD_LOGS {
        let bytes = corpus(name);
        let log = parse(&bytes, &Limits::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!log.events.is_empty(), "{name}");
        let encoded = encode(&log);
        assert_eq!(
            encoded,
            bytes[..bytes.len() - log.trailing_zero_bytes],
            "{name}: encode(parse(x)) == x"
        );
        // Replay never panics and covers every supported bank.
        let r = replay(&log);
        for alg in log.banks() {
            if let Some(bank) = HashAlg::from_tpm(alg) {
                assert!(r.banks.contains_key(&bank), "{name}: bank {alg:#x}");
            }
        }
    }
}

#[test]
fn formats_are_told_apart() {
    let agile = parse(&corpus("tpm2-tools/event.bin"), &Limits::default()).unwrap();
    assert_eq!(agile.format, LogFormat::CryptoAgile);
    let spec = agile.spec_id.as_ref().unwrap();
    assert_eq!(
        spec.algorithms.iter().map(|a| a.alg_id).collect::<Vec<_>>(),
        vec![0x4, 0xb, 0xc, 0xd]
    );
    assert_eq!(agile.events[1].event_type, 0x8000_0008);
    let legacy = parse(
        &corpus("tpm2-tools/event-uefi-sha1-log.bin"),
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(legacy.format, LogFormat::Sha1Legacy);
    assert!(legacy.spec_id.is_none());
    assert_eq!(legacy.banks(), vec![HashAlg::Sha1.to_tpm()]);
}

#[test]
fn spec_id_vendor_info_outside_the_event_is_read_as_tpm2_eventlog_reads_it() {
    // tpm2-tools' fixture declares eventDataSize 37 but vendorInfoSize 4, with the
    // four vendor bytes after the event; tpm2_eventlog 5.4 reads across the record
    // boundary, and so do we (the event is never extended), recording it.
    let bytes = corpus("tpm2-tools/specid-vendordata.bin");
    let log = parse(&bytes, &Limits::default()).unwrap();
    let spec = log.spec_id.clone().unwrap();
    assert_eq!(spec.vendor_info, vec![0xde, 0xad, 0xbe, 0xef]);
    assert_eq!(spec.vendor_info_outside_event, 4);
    assert_eq!(log.events.len(), 1);
    assert_eq!(encode(&log), bytes, "re-encodes byte for byte");
    // Cut inside the outside bytes: truncated, naming the field.
    let e = parse(&bytes[..bytes.len() - 1], &Limits::default()).unwrap_err();
    assert!(e.to_string().contains("SpecID.vendorInfo"), "{e}");
    // The same header with the vendor bytes inside the event parses, unflagged.
    let mut inside = bytes.clone();
    inside[28..32].copy_from_slice(&41u32.to_le_bytes());
    let log = parse(&inside, &Limits::default()).unwrap();
    let spec = log.spec_id.unwrap();
    assert_eq!(spec.vendor_info, vec![0xde, 0xad, 0xbe, 0xef]);
    assert_eq!(spec.vendor_info_outside_event, 0);
}

#[test]
fn tpm2_tools_event_bin_replays_to_the_values_tpm2_eventlog_prints() {
    // Figures printed by `tpm2_eventlog event.bin` (tpm2-tools 5.4); the live oracle
    // over the whole corpus is tests/tests/oracle_eventlog.rs.
    let log = parse(&corpus("tpm2-tools/event.bin"), &Limits::default()).unwrap();
    let r = replay(&log);
    assert_eq!(
        hex::encode(r.pcr(HashAlg::Sha1, 0).unwrap()),
        "543c314066a9cd7a6b6aa53f56b38e814a76efe7"
    );
    assert_eq!(
        hex::encode(r.pcr(HashAlg::Sha256, 0).unwrap()),
        "118bdc4043596f8d6b7813438131959961f6abba29bab0075d16ca39664f5862"
    );
}

#[test]
fn startup_locality_sets_pcr0_initial_value() {
    // A legacy-format log holding only a StartupLocality event (tpm2_eventlog
    // rejects it: "invalid eventDataSize in specid event").
    let log = parse(
        &corpus("go-attestation/short_no_action_eventlog"),
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(log.startup_locality, Some(3));
    assert!(
        replay(&log).banks[&HashAlg::Sha1].is_empty(),
        "nothing was extended"
    );
    let mut expected = vec![0u8; 32];
    expected[31] = 3;
    assert_eq!(initial_pcr_value(HashAlg::Sha256, 0, Some(3)), expected);
    assert_eq!(
        initial_pcr_value(HashAlg::Sha256, 1, Some(3)),
        vec![0u8; 32]
    );
    assert_eq!(initial_pcr_value(HashAlg::Sha1, 17, None), vec![0xffu8; 20]);
}

#[test]
fn garbage_is_a_clear_error() {
    // Keylime's bogus log is ASCII text: its first "PCR index" is 0x756f6762.
    let e = parse(
        &corpus("keylime/binary_bios_measurements-bogus"),
        &Limits::default(),
    )
    .unwrap_err();
    assert!(
        matches!(e, EventLogError::PcrOutOfRange { num: 0, .. }),
        "{e}"
    );
    assert!(
        e.to_string().contains("not a TCG PC Client event log"),
        "{e}"
    );
    assert_eq!(
        parse(&[], &Limits::default()).unwrap_err(),
        EventLogError::Empty
    );
}

#[test]
fn truncation_at_every_offset_is_an_error_or_a_shorter_log() {
    let bytes = corpus("tpm2-tools/event-uefivar.bin");
    let full = parse(&bytes, &Limits::default()).unwrap();
    let boundaries: Vec<usize> = full
        .events
        .iter()
        .map(|e| e.offset)
        .chain([bytes.len()])
        .collect();
    for cut in 0..bytes.len() {
        match parse(&bytes[..cut], &Limits::default()) {
            Ok(log) => {
                assert!(
                    boundaries.contains(&cut),
                    "cut {cut} parsed but is no event boundary"
                );
                assert!(log.events.len() < full.events.len());
            }
            Err(e) => assert!(cut == 0 || !boundaries.contains(&cut), "cut {cut}: {e}"),
        }
    }
}

#[test]
fn oversized_fields_are_refused_before_allocation() {
    let mut bytes = corpus("tpm2-tools/event.bin");
    // The first event's data size (offset 28) set to 4 GiB - 1.
    bytes[28..32].copy_from_slice(&u32::MAX.to_le_bytes());
    let e = parse(&bytes, &Limits::default()).unwrap_err();
    assert!(
        matches!(
            e,
            EventLogError::Wire {
                source: WireError::TooLarge { .. },
                ..
            }
        ),
        "{e}"
    );
    let bytes = corpus("tpm2-tools/event.bin");
    let small = Limits {
        max_log_bytes: 100,
        ..Limits::default()
    };
    assert!(matches!(
        parse(&bytes, &small),
        Err(EventLogError::TooLarge { .. })
    ));
    let one = Limits {
        max_events: 1,
        ..Limits::default()
    };
    assert!(matches!(
        parse(&bytes, &one),
        Err(EventLogError::TooManyEvents { max: 1 })
    ));
}

#[test]
fn malformed_spec_id_and_digests_are_refused() {
    let good = corpus("tpm2-tools/event.bin");
    let log = parse(&good, &Limits::default()).unwrap();
    // A digest algorithm the Spec ID event does not list (event 1, first TPMT_HA).
    let mut bytes = good.clone();
    let ev1 = log.events[1].offset;
    bytes[ev1 + 12..ev1 + 14].copy_from_slice(&0x0012u16.to_le_bytes());
    let e = parse(&bytes, &Limits::default()).unwrap_err();
    assert!(
        e.to_string()
            .contains("not among the Spec ID event's banks"),
        "{e}"
    );
    // Digest count above the number of banks.
    let mut bytes = good.clone();
    bytes[ev1 + 8..ev1 + 12].copy_from_slice(&9u32.to_le_bytes());
    assert!(parse(&bytes, &Limits::default())
        .unwrap_err()
        .to_string()
        .contains("digest count 9"));
    // Spec ID claims SHA-256 digests are 20 bytes.
    let mut bytes = good.clone();
    let alg1_size = 32 + 24 + 4 + 2; // header(32) + fixed SpecID fields(24) + count, first alg id
    bytes[alg1_size + 4..alg1_size + 6].copy_from_slice(&20u16.to_le_bytes());
    let e = parse(&bytes, &Limits::default()).unwrap_err();
    assert!(e.to_string().contains("digest size of 20"), "{e}");
    // Zero algorithms.
    let mut bytes = good;
    bytes[32 + 24..32 + 28].copy_from_slice(&0u32.to_le_bytes());
    assert!(parse(&bytes, &Limits::default())
        .unwrap_err()
        .to_string()
        .contains("0 algorithms"));
}

#[test]
fn trailing_zero_padding_is_tolerated_and_counted() {
    let mut bytes = corpus("tpm2-tools/event.bin");
    let n = parse(&bytes, &Limits::default()).unwrap().events.len();
    bytes.extend_from_slice(&[0u8; 300]);
    let log = parse(&bytes, &Limits::default()).unwrap();
    assert_eq!((log.events.len(), log.trailing_zero_bytes), (n, 300));
    bytes.push(1);
    assert!(
        parse(&bytes, &Limits::default()).is_err(),
        "non-zero garbage after the padding"
    );
}

#[test]
fn data_digests_are_checked_where_the_spec_makes_them_hashes_of_the_data() {
    // tpm2_eventlog warns: "Event 24's digest does not match its payload". It is
    // systemd-boot's EV_IPL (365 bytes: UTF-16 load options with an odd tail),
    // whose digest covers bytes we cannot derive from the data: it is not a
    // mismatch, but nothing decoded from it may be trusted either.
    let log = parse(
        &corpus("tpm2-tools/event-arch-linux.bin"),
        &Limits::default(),
    )
    .unwrap();
    let bad: Vec<u32> = log
        .events
        .iter()
        .filter(|e| matches!(check_event_data(e), DataCheck::Mismatch { .. }))
        .map(|e| e.num)
        .collect();
    assert_eq!(bad, Vec::<u32>::new());
    let e24 = log.events.iter().find(|e| e.num == 24).unwrap();
    assert_eq!(e24.event_type, EV_IPL);
    assert_eq!(check_event_data(e24), DataCheck::NotDigestOfData);
    // GRUB's kernel command line verifies (digest of the text without prefix and NUL)...
    let log = parse(
        &corpus("tpm2-tools/event-gce-ubuntu-2104-log.bin"),
        &Limits::default(),
    )
    .unwrap();
    let mut cmdline = log
        .events
        .iter()
        .find(|e| e.event_type == EV_IPL && e.data.starts_with(b"kernel_cmdline: "))
        .unwrap()
        .clone();
    assert_eq!(check_event_data(&cmdline), DataCheck::Verified);
    // ...and an edited one does not.
    let last = cmdline.data.len() - 2;
    cmdline.data[last] ^= 1;
    assert!(matches!(
        check_event_data(&cmdline),
        DataCheck::Mismatch { .. }
    ));
    // A separator whose data was changed no longer verifies.
    let mut log = parse(
        &corpus("tpm2-tools/event-gce-ubuntu-2104-log.bin"),
        &Limits::default(),
    )
    .unwrap();
    let sep = log
        .events
        .iter_mut()
        .find(|e| e.event_type == EV_SEPARATOR)
        .unwrap();
    assert_eq!(check_event_data(sep), DataCheck::Verified);
    sep.data = vec![1, 0, 0, 0];
    assert!(matches!(check_event_data(sep), DataCheck::Mismatch { .. }));
}

#[test]
fn the_first_event_past_the_quoted_state_is_named() {
    let log = parse(
        &corpus("tpm2-tools/event-gce-ubuntu-2104-log.bin"),
        &Limits::default(),
    )
    .unwrap();
    let pcr4: Vec<&Event> = log
        .events
        .iter()
        .filter(|e| e.pcr == 4 && !e.is_no_action())
        .collect();
    assert!(pcr4.len() >= 2);
    // The TPM was quoted after the first PCR 4 event only.
    let quoted = extend(
        HashAlg::Sha256,
        &initial_pcr_value(HashAlg::Sha256, 4, None),
        pcr4[0].digest(HashAlg::Sha256).unwrap(),
    );
    assert_eq!(
        first_event_past_quoted(&log, HashAlg::Sha256, 4, &quoted),
        Some(pcr4[1].num)
    );
    assert_eq!(
        first_event_past_quoted(&log, HashAlg::Sha256, 4, &[7u8; 32]),
        None
    );
}

fn arb_event() -> impl Strategy<Value = (u32, u32, [u8; 20], [u8; 32], Vec<u8>)> {
    (
        0u32..=MAX_PCR,
        prop_oneof![
            Just(0x8000_0001u32),
            Just(0xd),
            Just(0x4),
            Just(EV_NO_ACTION)
        ],
        any::<[u8; 20]>(),
        any::<[u8; 32]>(),
        proptest::collection::vec(any::<u8>(), 0..64),
    )
}

proptest! {
    #[test]
    fn parse_encode_round_trip_and_replay_is_a_fold_of_extends(
        events in proptest::collection::vec(arb_event(), 0..40)
    ) {
        let header = corpus_header();
        let mut log = header.clone();
        for (i, (pcr, ty, d1, d256, data)) in events.iter().enumerate() {
            // A StartupLocality payload would be validated; keep NO_ACTION data plain.
            let data = if *ty == EV_NO_ACTION { vec![0x55; data.len().min(8)] } else { data.clone() };
            log.events.push(Event {
                num: u32::try_from(i + 1).unwrap(),
                offset: 0,
                pcr: *pcr,
                event_type: *ty,
                digests: vec![
                    EventDigest { alg_id: 0x4, digest: d1.to_vec() },
                    EventDigest { alg_id: 0xb, digest: d256.to_vec() },
                ],
                data,
            });
        }
        let bytes = encode(&log);
        let mut parsed = parse(&bytes, &Limits::default()).unwrap();
        for e in &mut parsed.events { e.offset = 0; }
        let mut expected = log.clone();
        for e in &mut expected.events { e.offset = 0; }
        prop_assert_eq!(&parsed, &expected);

        let r = replay(&parsed);
        for bank in [HashAlg::Sha1, HashAlg::Sha256] {
            let mut fold: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
            for e in parsed.events.iter().skip(1).filter(|e| e.event_type != EV_NO_ACTION) {
                let v = fold.entry(e.pcr).or_insert_with(|| initial_pcr_value(bank, e.pcr, None));
                let mut h: Vec<u8> = v.clone();
                h.extend_from_slice(e.digest(bank).unwrap());
                *v = hash(bank, &h);
            }
            prop_assert_eq!(&r.banks[&bank], &fold);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(log) = parse(&bytes, &Limits::default()) {
            let _ = replay(&log);
            for e in &log.events { let _ = check_event_data(e); }
        }
    }
}

/// A crypto-agile header (Spec ID event) with SHA-1 and SHA-256 banks.
fn corpus_header() -> EventLog {
    let mut data = SPEC_ID_SIGNATURE.to_vec();
    data.extend_from_slice(&0u32.to_le_bytes()); // platform class
    data.extend_from_slice(&[0, 2, 0, 2]); // minor, major, errata, uintn
    data.extend_from_slice(&2u32.to_le_bytes());
    data.extend_from_slice(&[0x04, 0, 20, 0, 0x0b, 0, 32, 0, 0]);
    let bytes = {
        let mut b = Vec::new();
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&EV_NO_ACTION.to_le_bytes());
        b.extend_from_slice(&[0u8; 20]);
        b.extend_from_slice(&u32::try_from(data.len()).unwrap().to_le_bytes());
        b.extend_from_slice(&data);
        b
    };
    parse(&bytes, &Limits::default()).unwrap()
}
