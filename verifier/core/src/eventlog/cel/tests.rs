#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use proptest::prelude::*;

use super::*;

const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

fn sample() -> CelLog {
    let ms = [
        Measurement::RuntimeBinary {
            path: "/usr/bin/containerd".into(),
            sha256: [7; 32],
        },
        Measurement::RuntimeConfig {
            path: "/etc/containerd/config.toml".into(),
            sha256: [8; 32],
        },
        Measurement::Image {
            reference: "docker.io/library/busybox:1.36".into(),
            manifest_digest: D1.into(),
            config_digest: None,
        },
        Measurement::ContainerStart {
            container_id: "web-1".into(),
            image_digest: Some(D1.into()),
            image_reference: Some("docker.io/library/busybox:1.36".into()),
        },
    ];
    CelLog {
        records: ms
            .iter()
            .enumerate()
            .map(|(i, m)| Record::new(i as u64, 13, m))
            .collect(),
    }
}

fn with_offsets(mut log: CelLog) -> CelLog {
    let mut at = 0;
    for r in &mut log.records {
        r.offset = at;
        at += encode_record(r).len();
    }
    log
}

#[test]
fn round_trips_and_decodes_every_kind() {
    let log = with_offsets(sample());
    let bytes = encode(&log);
    let parsed = parse(&bytes, &Limits::default()).unwrap();
    assert_eq!(parsed, log);
    for r in &parsed.records {
        assert!(r.content_proven());
        assert_eq!(encode_measurement(&r.measurement().unwrap()), r.content);
    }
}

#[test]
fn the_tlv_layout_is_the_cel_one() {
    let r = &sample().records[2];
    let b = encode_record(r);
    // RECNUM: type 0, length 8 (big-endian), value 2.
    assert_eq!(&b[..13], &[0, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 2]);
    // PCR: type 1, length 1, 13.
    assert_eq!(&b[13..19], &[1, 0, 0, 0, 1, 13]);
    // DIGESTS: type 3, length 37 = one nested TLV (type 0x0b = sha256, length 32).
    assert_eq!(&b[19..29], &[3, 0, 0, 0, 37, 0x0b, 0, 0, 0, 32]);
    // The digest is the SHA-256 of the content TLV that follows.
    let content_tlv = &b[19 + 5 + 37..];
    assert_eq!(content_tlv[0], CONTENT_ASSAY);
    assert_eq!(&b[29..61], HashAlg::Sha256.digest(content_tlv).as_slice());
}

#[test]
fn replay_folds_sha256_digests_from_the_initial_value() {
    let log = sample();
    let init = vec![0xAB; 32];
    let pcrs = replay(&log.records, HashAlg::Sha256, |_| init.clone());
    let mut want = init.clone();
    for r in &log.records {
        want = crate::eventlog::uefi::extend(
            HashAlg::Sha256,
            &want,
            &r.content_digest(HashAlg::Sha256),
        );
    }
    assert_eq!(pcrs.get(&13), Some(&want));
    assert_eq!(pcrs.len(), 1);
}

#[test]
fn dropped_reordered_and_inserted_records_are_named() {
    let log = sample();
    let mut dropped = log.clone();
    dropped.records.remove(1);
    let e = parse(&encode(&dropped), &Limits::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("record number 2 where 1 was expected"), "{e}");
    let mut swapped = log.clone();
    swapped.records.swap(0, 1);
    let e = parse(&encode(&swapped), &Limits::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("record number 1 where 0 was expected"), "{e}");
}

#[test]
fn edited_content_is_not_proven() {
    let mut log = sample();
    let r = &mut log.records[2];
    let at = r.content.len() - 1;
    r.content[at] = b'2';
    assert!(!r.content_proven());
    assert!(
        r.measurement().is_ok(),
        "still decodes; only the digest says it is false"
    );
}

#[test]
fn truncation_anywhere_is_an_error_never_a_panic() {
    let bytes = encode(&sample());
    let ends: Vec<usize> = {
        let mut at = 0;
        sample()
            .records
            .iter()
            .map(|r| {
                at += encode_record(r).len();
                at
            })
            .collect()
    };
    for len in 1..bytes.len() {
        let r = parse(&bytes[..len], &Limits::default());
        assert_eq!(r.is_ok(), ends.contains(&len), "length {len}: {r:?}");
    }
    assert_eq!(
        parse(&[], &Limits::default()),
        Ok(CelLog { records: vec![] })
    );
}

#[test]
fn oversized_fields_and_logs_are_refused_before_allocation() {
    // A content TLV claiming 4 GiB.
    let mut b = encode_record(&sample().records[0]);
    let content_at = 13 + 6 + 5 + 37;
    b[content_at + 1..content_at + 5].copy_from_slice(&u32::MAX.to_be_bytes());
    let e = parse(&b, &Limits::default()).unwrap_err().to_string();
    assert!(e.contains("exceeds the maximum"), "{e}");
    let small = Limits {
        max_log_bytes: 10,
        ..Limits::default()
    };
    assert!(matches!(
        parse(&encode(&sample()), &small),
        Err(CelError::TooLarge { .. })
    ));
    let few = Limits {
        max_records: 2,
        ..Limits::default()
    };
    assert_eq!(
        parse(&encode(&sample()), &few),
        Err(CelError::TooManyRecords { max: 2 })
    );
}

#[test]
fn malformed_records_and_contents_are_clear_errors() {
    let good = encode_record(&sample().records[0]);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            {
                let mut b = good.clone();
                b[0] = 9;
                b
            },
            "expected a RECNUM",
        ),
        (
            {
                let mut b = good.clone();
                b[13] = 2;
                b
            },
            "NV index records are not supported",
        ),
        (
            {
                let mut b = good.clone();
                b[18] = 24;
                b
            },
            "PCR 24 is above 23",
        ),
        (
            {
                let mut b = good.clone();
                b[24] = 0x0c;
                b
            },
            "Sha384 digest is 32 bytes, not 48",
        ),
        (
            {
                let mut b = good.clone();
                b[19 + 5 + 37] = 1;
                b
            },
            "expected a content field",
        ),
    ];
    for (bytes, want) in cases {
        let e = parse(&bytes, &Limits::default()).unwrap_err().to_string();
        assert!(e.contains(want), "{e} (wanted {want})");
    }
    let bad = |content: Vec<u8>| decode_measurement(&content).unwrap_err();
    let mut m = encode_measurement(&sample().records[2].measurement().unwrap());
    assert!(bad(m[6..].to_vec()).contains("KIND"));
    m.extend_from_slice(&[F_PATH, 0, 0, 0, 1, b'x']);
    assert!(bad(m).contains("does not belong"));
    let img = |d: &str| {
        encode_measurement(&Measurement::Image {
            reference: "r".into(),
            manifest_digest: d.into(),
            config_digest: None,
        })
    };
    assert!(bad(img("sha256:ABC")).contains("not sha256:<64 lowercase hex>"));
    assert!(bad(vec![F_KIND, 0, 0, 0, 1, 9]).contains("unknown measurement kind 9"));
}

fn arb_text() -> impl Strategy<Value = String> {
    "[a-z0-9/._:-]{1,40}"
}

fn arb_digest() -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<u8>(), 32).prop_map(|b| format!("sha256:{}", hex::encode(b)))
}

fn arb_measurement() -> impl Strategy<Value = Measurement> {
    prop_oneof![
        (arb_text(), any::<[u8; 32]>())
            .prop_map(|(path, sha256)| Measurement::RuntimeBinary { path, sha256 }),
        (arb_text(), any::<[u8; 32]>())
            .prop_map(|(path, sha256)| Measurement::RuntimeConfig { path, sha256 }),
        (arb_text(), arb_digest(), proptest::option::of(arb_digest())).prop_map(
            |(reference, manifest_digest, config_digest)| Measurement::Image {
                reference,
                manifest_digest,
                config_digest
            }
        ),
        (
            arb_text(),
            proptest::option::of(arb_digest()),
            proptest::option::of(arb_text())
        )
            .prop_map(|(container_id, image_digest, image_reference)| {
                Measurement::ContainerStart {
                    container_id,
                    image_digest,
                    image_reference,
                }
            }),
    ]
}

proptest! {
    #[test]
    fn parse_encode_round_trip_and_replay_is_a_fold_of_extends(
        ms in proptest::collection::vec((arb_measurement(), 0u32..24), 1..30)
    ) {
        let log = with_offsets(CelLog {
            records: ms.iter().enumerate().map(|(i, (m, pcr))| Record::new(i as u64, *pcr, m)).collect(),
        });
        let parsed = parse(&encode(&log), &Limits::default()).unwrap();
        prop_assert_eq!(&parsed, &log);
        for (r, (m, _)) in parsed.records.iter().zip(&ms) {
            prop_assert_eq!(&r.measurement().unwrap(), m);
        }
        let pcrs = replay(&parsed.records, HashAlg::Sha256, |_| vec![0; 32]);
        for (pcr, value) in &pcrs {
            let mut want = vec![0u8; 32];
            for r in parsed.records.iter().filter(|r| r.pcr == *pcr) {
                want = crate::eventlog::uefi::extend(HashAlg::Sha256, &want, &r.content_digest(HashAlg::Sha256));
            }
            prop_assert_eq!(value, &want);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(log) = parse(&bytes, &Limits::default()) {
            for r in &log.records {
                let _ = r.measurement();
                let _ = r.content_proven();
            }
        }
    }
}
