#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use super::*;
use proptest::prelude::*;
use sha2::Digest;

const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data/ima/");

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{TESTDATA}{name}")).unwrap_or_else(|e| panic!("{TESTDATA}{name}: {e}"))
}

fn ascii(text: &str) -> Result<ImaLog, ImaError> {
    parse_ascii(text.as_bytes(), &Limits::default())
}

/// The sha1-fold of the logged template hashes (violations as 0xff).
fn sha1_fold(log: &ImaLog) -> Vec<u8> {
    let mut pcr = vec![0u8; 20];
    for e in &log.entries {
        let v = if e.is_violation() {
            vec![0xff; 20]
        } else {
            e.template_hash.clone()
        };
        pcr = sha1::Sha1::digest([pcr, v].concat()).to_vec();
    }
    pcr
}

fn line_of(e: &ImaError) -> String {
    e.to_string()
}

// ---- fixtures (keylime test/data/create-runtime-policy, see MANIFEST.tsv) ----

/// (file, replayed PCR 10 in the sha1 bank, in the sha256 bank, violation entries),
/// computed independently (Python, from the kernel's field encoding).
const FIXTURES: &[(&str, &str, &str, &[usize])] = &[
    (
        "ima-log-sha1",
        "62e5bdf4783228f7deec959f0a89a4739af79ac5",
        "37c153b0a390c91993992d79eb0b9b05b5cb9085c6179528e1b71694ed19896c",
        &[0],
    ),
    (
        "ima-log-sha256",
        "8adcb4304b78ee782bbba3733b191591e75dc83d",
        "8dcd5e7eb63e363377ec19b0d358601ccc19f25a30486f35784c5288dbb91d9d",
        &[],
    ),
    (
        "ima-log-sha384",
        "3dfd156753bbf66afbb3c10b98bac02ed13b481c",
        "35771508049511f8d3aef6691b528a1ea2fdcf13839dc0edceec1fa2ffb0737e",
        &[0],
    ),
    (
        "ima-log-sha512",
        "a37fb4ca32af8c94fefe8a4ce10d4b6dac5a7322",
        "ac16f32385ac34b7ca6b15b2afc7a319249206634d8143b5b245ddac4f11a2eb",
        &[0],
    ),
];

#[test]
fn fixtures_parse_and_replay_to_known_values() {
    for (file, sha1_pcr, sha256_pcr, violations) in FIXTURES {
        let bytes = fixture(file);
        let log = parse(&bytes, &Limits::default()).unwrap();
        assert_eq!(log, parse_ascii(&bytes, &Limits::default()).unwrap());
        assert_eq!(log.template_hash_alg, HashAlg::Sha1);
        assert_eq!(log.entries.len(), 2, "{file}");
        let alg = file.trim_start_matches("ima-log-");
        for e in &log.entries {
            assert_eq!(e.pcr, 10);
            let f = e.file().unwrap();
            assert_eq!(f.hash_alg, alg);
            assert!(matches!(e.template, Template::ImaNg(_)));
        }
        assert_eq!(log.entries[0].file().unwrap().path, "boot_aggregate");
        assert_eq!(log.entries[1].file().unwrap().path, "/data");

        let r1 = replay(&log, HashAlg::Sha1).unwrap();
        assert_eq!(hex::encode(&r1.pcrs[&10]), *sha1_pcr, "{file}");
        assert_eq!(r1.pcrs[&10], sha1_fold(&log));
        assert_eq!(r1.pcrs.len(), 1);
        assert!(r1.mismatched.is_empty(), "{file}: {:?}", r1.mismatched);
        assert!(r1.unchecked.is_empty());
        assert_eq!(r1.violations, *violations);
        let r256 = replay(&log, HashAlg::Sha256).unwrap();
        assert_eq!(hex::encode(&r256.pcrs[&10]), *sha256_pcr, "{file}");
        assert_eq!(r256.mismatched, r1.mismatched);
    }
}

/// The template hash of every real (non-violation) fixture entry is the SHA-1
/// of the template data rebuilt from the ascii fields: this is what proves the
/// `d-ng`/`n-ng` encoding.
#[test]
fn template_hash_is_sha1_of_rebuilt_template_data() {
    let mut checked = 0;
    for (file, ..) in FIXTURES {
        let log = parse(&fixture(file), &Limits::default()).unwrap();
        for e in log.entries.iter().filter(|e| !e.is_violation()) {
            let data = e.template_data().unwrap();
            assert_eq!(
                sha1::Sha1::digest(&data).to_vec(),
                e.template_hash,
                "{file} {}",
                e.index
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 5);
}

/// `ima-log-unknown`: SHA-256 template hashes (a per-bank log, Linux 6.10+) and
/// a file digest algorithm "unknown" with 29 bytes, which no kernel emits.
/// The parser keeps the algorithm name for policy to refuse (MANIFEST.tsv only
/// records provenance; Keylime's test refuses it as *policy input*); the
/// second entry's template hash is not the SHA-256 of its data, so replay
/// names it.
#[test]
fn unknown_digest_algorithm_is_kept_and_its_bad_template_hash_named() {
    let log = parse(&fixture("ima-log-unknown"), &Limits::default()).unwrap();
    assert_eq!(log.template_hash_alg, HashAlg::Sha256);
    let f = log.entries[1].file().unwrap();
    assert_eq!(f.hash_alg, "unknown");
    assert_eq!(f.digest.len(), 29);
    let r = replay(&log, HashAlg::Sha256).unwrap();
    assert_eq!(r.violations, vec![0]);
    assert_eq!(r.mismatched, vec![1]);
    let r1 = replay(&log, HashAlg::Sha1).unwrap();
    assert_eq!(r1.mismatched, vec![1]);
    // The same digest under a known name must have that algorithm's size.
    let text = String::from_utf8(fixture("ima-log-unknown"))
        .unwrap()
        .replace("unknown:", "sha256:");
    let e = ascii(&text).unwrap_err();
    assert!(
        line_of(&e).starts_with("line 1: d-ng: a sha256 digest of 29 bytes"),
        "{e}"
    );
}

#[test]
fn fixtures_round_trip_through_binary() {
    for file in [
        "ima-log-sha1",
        "ima-log-sha256",
        "ima-log-sha384",
        "ima-log-sha512",
        "ima-log-unknown",
    ] {
        let log = parse(&fixture(file), &Limits::default()).unwrap();
        let bin = to_binary(&log).unwrap();
        let back = parse_binary(&bin, log.template_hash_alg, &Limits::default()).unwrap();
        assert_eq!(back, log, "{file}");
        if log.template_hash_alg == HashAlg::Sha1 {
            assert_eq!(parse(&bin, &Limits::default()).unwrap(), log);
        }
        assert_eq!(to_binary(&back).unwrap(), bin);
    }
}

// ---- the other templates, against independently computed template hashes ----

#[test]
fn ima_template_pads_the_name_to_256_bytes() {
    // d = sha1("hello"); template hash = sha1(d || "/usr/bin/true" || zeros to 256).
    let log = ascii("10 58d66ef597c4fa36d54148042d075ae68a1b8d2e ima aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d /usr/bin/true\n").unwrap();
    let e = &log.entries[0];
    assert!(matches!(e.template, Template::Ima(_)));
    assert_eq!(e.template_data().unwrap().len(), 20 + 256);
    assert!(replay(&log, HashAlg::Sha1).unwrap().mismatched.is_empty());
    // Binary: no template-data length, `n` as u32 + name without NUL.
    let bin = to_binary(&log).unwrap();
    assert_eq!(bin.len(), 4 + 20 + 4 + 3 + 20 + 4 + 13);
    assert_eq!(&bin[bin.len() - 17..bin.len() - 13], &13u32.to_le_bytes());
    assert_eq!(parse(&bin, &Limits::default()).unwrap(), log);
}

#[test]
fn ima_sig_with_and_without_signature() {
    let text = "10 5d9838950da04766bc52f9336b26e3aabe397240 ima-sig sha256:c7b68ac37f364473e922936708e7f43c293dd07b295171566c07ff5fe024fab9 /usr/bin/ls 030204aabbccdd00081111111111111111\n\
                10 e0db37e04690892656db07018abff0f2e064c451 ima-sig sha256:c7b68ac37f364473e922936708e7f43c293dd07b295171566c07ff5fe024fab9 /usr/bin/ls \n";
    let log = ascii(text).unwrap();
    let sig = log.entries[0].file().unwrap().signature.clone().unwrap();
    assert_eq!(hex::encode(sig), "030204aabbccdd00081111111111111111");
    assert_eq!(log.entries[1].file().unwrap().signature, None);
    assert_eq!(log.entries[1].file().unwrap().path, "/usr/bin/ls");
    let r = replay(&log, HashAlg::Sha1).unwrap();
    assert!(r.mismatched.is_empty(), "{:?}", r.mismatched);
    // Trailing space stripped by some tool: still no signature.
    let stripped = ascii(text.lines().nth(1).unwrap().trim_end()).unwrap();
    assert_eq!(stripped.entries[0].template, log.entries[1].template);
    let bin = to_binary(&log).unwrap();
    assert_eq!(parse(&bin, &Limits::default()).unwrap(), log);
}

#[test]
fn ima_buf_decodes_the_buffer() {
    let log = ascii("10 620eeedaa21da7c900f1724455564101764457b2 ima-buf sha256:046e81c9df60c60c2e6a7874e0b968916add4a951e5150ef05c02c2a4318354f kexec-cmdline 726f6f743d2f6465762f7664613120726f\n").unwrap();
    match &log.entries[0].template {
        Template::ImaBuf(b) => {
            assert_eq!(b.name, "kexec-cmdline");
            assert_eq!(b.buf, b"root=/dev/vda1 ro");
        }
        t => panic!("{t:?}"),
    }
    assert!(replay(&log, HashAlg::Sha1).unwrap().mismatched.is_empty());
}

#[test]
fn per_bank_sha256_log_extends_logged_hashes_and_checks_with_sha256() {
    let line = "10 1a444412261a1b3c47986387239267bd12ad1acb5c42e95f0fe737057a2ba295 ima-ng sha256:c7b68ac37f364473e922936708e7f43c293dd07b295171566c07ff5fe024fab9 /usr/bin/ls\n";
    let log = ascii(line).unwrap();
    assert_eq!(log.template_hash_alg, HashAlg::Sha256);
    let r256 = replay(&log, HashAlg::Sha256).unwrap();
    assert!(r256.mismatched.is_empty());
    let th = &log.entries[0].template_hash;
    assert_eq!(
        r256.pcrs[&10],
        sha2::Sha256::digest([vec![0; 32], th.clone()].concat()).to_vec()
    );
    // The sha1 bank recomputes: sha1(template data) = 417626c0….
    let r1 = replay(&log, HashAlg::Sha1).unwrap();
    let v = hex::decode("417626c0e06582e5956f2ecdf48d78bc617cb0b5").unwrap();
    assert_eq!(
        r1.pcrs[&10],
        sha1::Sha1::digest([vec![0; 20], v].concat()).to_vec()
    );
    // Binary per-bank logs are read with their algorithm.
    let bin = to_binary(&log).unwrap();
    assert_eq!(
        parse_binary(&bin, HashAlg::Sha256, &Limits::default()).unwrap(),
        log
    );
    assert!(parse_binary(&bin, HashAlg::Sha1, &Limits::default()).is_err());
}

#[test]
fn tampered_entry_is_named_but_sha1_bank_still_replays_logged_hash() {
    let text = String::from_utf8(fixture("ima-log-sha256"))
        .unwrap()
        .replace("/data", "/dat4");
    let log = ascii(&text).unwrap();
    let r = replay(&log, HashAlg::Sha1).unwrap();
    assert_eq!(r.mismatched, vec![1]);
    assert_eq!(hex::encode(&r.pcrs[&10]), FIXTURES[1].1);
    assert_ne!(
        hex::encode(&replay(&log, HashAlg::Sha256).unwrap().pcrs[&10]),
        FIXTURES[1].2
    );
}

#[test]
fn violation_extends_ff_in_every_bank() {
    let log = ascii(&format!(
        "10 {} ima-ng sha256:{} /tmp/x\n",
        "0".repeat(40),
        "0".repeat(40)
    ))
    .unwrap();
    for bank in [
        HashAlg::Sha1,
        HashAlg::Sha256,
        HashAlg::Sha384,
        HashAlg::Sha512,
    ] {
        let r = replay(&log, bank).unwrap();
        let n = bank.digest_len();
        assert_eq!(
            r.pcrs[&10],
            bank.digest(&[vec![0; n], vec![0xff; n]].concat())
        );
        assert_eq!(r.violations, vec![0]);
    }
}

#[test]
fn unknown_templates_are_kept() {
    let text = format!(
        "10 {} ima-modsig sha256:{} /x 00 sha256:{} 00\n",
        "1".repeat(40),
        "2".repeat(64),
        "3".repeat(64)
    );
    let log = ascii(&text).unwrap();
    assert_eq!(log.entries[0].template.name(), "ima-modsig");
    let r = replay(&log, HashAlg::Sha1).unwrap();
    assert_eq!(r.unchecked, vec![0]);
    assert_eq!(r.pcrs[&10], sha1_fold(&log));
    let e = replay(&log, HashAlg::Sha256).unwrap_err();
    assert_eq!(
        e,
        ImaError::NotRecomputable {
            index: 0,
            template: "ima-modsig".into()
        }
    );
    assert!(to_binary(&log).is_err());
    // From a binary log the raw template data is kept and replays.
    let mut bin = Vec::new();
    bin.extend_from_slice(&10u32.to_le_bytes());
    let data = b"\x03\x00\x00\x00abc";
    bin.extend_from_slice(&sha1::Sha1::digest(data));
    bin.extend_from_slice(&4u32.to_le_bytes());
    bin.extend_from_slice(b"d|ns");
    bin.extend_from_slice(&(data.len() as u32).to_le_bytes());
    bin.extend_from_slice(data);
    let log = parse(&bin, &Limits::default()).unwrap();
    let r = replay(&log, HashAlg::Sha256).unwrap();
    assert!(r.mismatched.is_empty() && r.unchecked.is_empty());
    assert_eq!(to_binary(&log).unwrap(), bin);
}

#[test]
fn single_digit_pcr_and_spaces_in_old_kernel_paths() {
    let d = "sha256:c7b68ac37f364473e922936708e7f43c293dd07b295171566c07ff5fe024fab9";
    let log = ascii(&format!(
        " 9 {} ima-ng {d} /opt/My App/run\n",
        "1".repeat(40)
    ))
    .unwrap();
    assert_eq!(log.entries[0].pcr, 9);
    assert_eq!(log.entries[0].file().unwrap().path, "/opt/My App/run");
    let log = ascii(&format!(
        "11 {} ima-sig {d} /opt/My App/run 0302\n",
        "1".repeat(40)
    ))
    .unwrap();
    let f = log.entries[0].file().unwrap();
    assert_eq!(
        (f.path.as_str(), f.signature.as_deref()),
        ("/opt/My App/run", Some(&[3u8, 2][..]))
    );
}

#[test]
fn non_utf8_names_are_errors_naming_the_line_or_record() {
    let mut line = format!(
        "10 {} ima-ng sha256:{} /tmp/",
        "1".repeat(40),
        "2".repeat(64)
    )
    .into_bytes();
    line.extend_from_slice(b"\xff\xfe.bin\n");
    let e = parse(&line, &Limits::default()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "line 1: n-ng: \"/tmp/\u{fffd}\u{fffd}.bin\" is not UTF-8"
    );
    let mut log = ascii(&String::from_utf8(fixture("ima-log-sha1")).unwrap()).unwrap();
    if let Template::ImaNg(f) = &mut log.entries[1].template {
        f.path = "/tmp/\u{e9}".into();
    }
    let mut bin = to_binary(&log).unwrap();
    let n = bin.len();
    bin[n - 3] = 0xc3; // "\xc3\x0a": not UTF-8
    bin[n - 2] = b'\n';
    let e = parse(&bin, &Limits::default()).unwrap_err();
    assert!(e.to_string().starts_with("record 1 (byte offset "), "{e}");
    assert!(
        e.to_string()
            .ends_with("n-ng: \"/tmp/\u{fffd}\\n\" is not UTF-8"),
        "{e}"
    );
}

#[test]
fn entry_helpers_agree_with_replay() {
    let log = ascii(
        &String::from_utf8(fixture("ima-log-sha256"))
            .unwrap()
            .replace("/data", "/dat4"),
    )
    .unwrap();
    assert_eq!(log.entries[0].path(), Some("boot_aggregate"));
    assert_eq!(log.entries[0].template_hash_matches(), Some(true));
    assert_eq!(log.entries[1].template_hash_matches(), Some(false));
    for bank in [HashAlg::Sha1, HashAlg::Sha256] {
        let mut pcr = vec![0; bank.digest_len()];
        for e in &log.entries {
            pcr = bank.digest(&[pcr, e.extend_digest(bank).unwrap()].concat());
        }
        assert_eq!(replay(&log, bank).unwrap().pcrs[&10], pcr);
    }
    let v = ascii(&format!(
        "10 {} ima-ng sha256:{} /x\n",
        "0".repeat(40),
        "0".repeat(64)
    ))
    .unwrap();
    assert_eq!(v.entries[0].template_hash_matches(), None);
    assert_eq!(
        v.entries[0].extend_digest(HashAlg::Sha384).unwrap(),
        vec![0xff; 48]
    );
}

#[test]
fn json_output_uses_hex() {
    let log = parse(&fixture("ima-log-sha256"), &Limits::default()).unwrap();
    let v: serde_json::Value = serde_json::to_value(&log).unwrap();
    assert_eq!(v["template_hash_alg"], "sha1");
    assert_eq!(v["entries"][1]["template"], "ima-ng");
    assert_eq!(
        v["entries"][1]["template_hash"],
        "80255d9c7dad91ef5f21b18560a47642d6f4d653"
    );
    assert_eq!(v["entries"][1]["file"]["path"], "/data");
    assert_eq!(v["entries"][1]["file"]["hash_alg"], "sha256");
    let r: serde_json::Value = serde_json::to_value(replay(&log, HashAlg::Sha1).unwrap()).unwrap();
    assert_eq!(r["pcrs"]["10"], FIXTURES[1].1);
    assert_eq!(r["bank"], "sha1");
}

// ---- malformed input ----

#[test]
fn malformed_ascii_lines_are_errors_naming_the_line() {
    let good = format!(
        "10 {} ima-ng sha1:{} /bin/sh",
        "1".repeat(40),
        "2".repeat(40)
    );
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            format!("10 {}zz ima-ng sha1:{} /a", "1".repeat(38), "2".repeat(40)).into(),
            "template hash: \"",
        ),
        (
            format!("10 {} ima-ng sha1:{}zz /a", "1".repeat(40), "2".repeat(38)).into(),
            "d-ng digest",
        ),
        (
            format!("10 {} ima-ng", "1".repeat(40)).into(),
            "template name: missing",
        ),
        (
            format!("10 {} ima-ng sha1:{}", "1".repeat(40), "2".repeat(40)).into(),
            "n-ng: missing",
        ),
        (b"10".to_vec(), "pcr: missing"),
        (
            format!("x1 {} ima-ng sha1:{} /a", "1".repeat(40), "2".repeat(40)).into(),
            "pcr: \"x1\" is not a PCR number",
        ),
        (
            format!("+1 {} ima-ng sha1:{} /a", "1".repeat(40), "2".repeat(40)).into(),
            "pcr",
        ),
        (
            format!("24 {} ima-ng sha1:{} /a", "1".repeat(40), "2".repeat(40)).into(),
            "PCR 24 does not exist",
        ),
        (
            format!(
                "99999999999 {} ima-ng sha1:{} /a",
                "1".repeat(40),
                "2".repeat(40)
            )
            .into(),
            "pcr",
        ),
        (
            format!("10 {} ima-ng sha1:{} /a", "1".repeat(39), "2".repeat(40)).into(),
            "39 hex digits",
        ),
        (
            format!("10 {} ima-ng sha1{} /a", "1".repeat(40), "2".repeat(40)).into(),
            "not alg:hexdigest",
        ),
        (
            format!("10 {} ima-ng sha1:{} /a", "1".repeat(40), "2".repeat(64)).into(),
            "a sha1 digest of 32 bytes",
        ),
        (
            format!("10 {} ima-ng s/a:{} /a", "1".repeat(40), "2".repeat(40)).into(),
            "not a hash algorithm name",
        ),
        (
            format!("10 {} ima {} /a", "1".repeat(40), "2".repeat(64)).into(),
            "expected 40",
        ),
        (
            format!(
                "10 {} ima-sig sha1:{} /a 0x",
                "1".repeat(40),
                "2".repeat(40)
            )
            .into(),
            "sig: \"0x\" is not hex",
        ),
        (
            [
                &b"10 "[..],
                "1".repeat(40).as_bytes(),
                b" ima\xc3-ng sha1:",
                "2".repeat(40).as_bytes(),
                b" /a",
            ]
            .concat(),
            "template name",
        ),
        (
            [
                &b"10 "[..],
                &[0xff, 0xfe],
                format!(" ima-ng sha1:{} /a", "2".repeat(40)).as_bytes(),
            ]
            .concat(),
            "template hash",
        ),
        (
            [
                format!("10 {} ima-ng sha1:{} /a", "1".repeat(40), "2".repeat(40)).as_bytes(),
                b"\0b",
            ]
            .concat(),
            "NUL byte",
        ),
        (b"   ".to_vec(), "empty line"),
    ];
    for (bad, want) in cases {
        let text = [good.as_bytes(), b"\n", &bad, b"\n"].concat();
        let e = parse_ascii(&text, &Limits::default()).unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("line 2: "), "{msg}");
        assert!(
            msg.contains(want),
            "{:?}: {msg}",
            String::from_utf8_lossy(&bad)
        );
    }
    let mixed = format!(
        "{good}\n10 {} ima-ng sha1:{} /a\n",
        "1".repeat(64),
        "2".repeat(40)
    );
    assert!(ascii(&mixed)
        .unwrap_err()
        .to_string()
        .contains("earlier lines have sha1"));
    assert!(ascii(&format!("{good}\n\n{good}\n"))
        .unwrap_err()
        .to_string()
        .starts_with("line 2: line: empty line"));
    assert_eq!(ascii("").unwrap().entries.len(), 0);
    assert_eq!(ascii(&good).unwrap().entries.len(), 1);
}

#[test]
fn limits_are_enforced() {
    let text = fixture("ima-log-sha1");
    let small = Limits {
        max_log_bytes: text.len() - 1,
        ..Limits::default()
    };
    assert!(matches!(
        parse(&text, &small),
        Err(ImaError::LogTooLarge { .. })
    ));
    let one = Limits {
        max_entries: 1,
        ..Limits::default()
    };
    assert!(matches!(
        parse(&text, &one),
        Err(ImaError::TooManyEntries {
            at: At::Line(2),
            max: 1
        })
    ));
    let bin = to_binary(&parse(&text, &Limits::default()).unwrap()).unwrap();
    assert!(matches!(
        parse(&bin, &one),
        Err(ImaError::TooManyEntries {
            at: At::Record { index: 1, .. },
            ..
        })
    ));
    let short_names = Limits {
        max_name: 4,
        ..Limits::default()
    };
    let e = parse(&text, &short_names).unwrap_err();
    assert!(
        matches!(
            e,
            ImaError::TooLarge {
                at: At::Line(1),
                field: "n-ng",
                len: 14,
                max: 4
            }
        ),
        "{e}"
    );
    let e = parse(&bin, &short_names).unwrap_err();
    assert!(
        matches!(
            e,
            ImaError::TooLarge {
                field: "n-ng",
                len: 15,
                max: 5,
                ..
            }
        ),
        "{e}"
    );
    let short_sig = Limits {
        max_signature: 2,
        ..Limits::default()
    };
    let line = format!(
        "10 {} ima-sig sha1:{} /a 01020304\n",
        "1".repeat(40),
        "2".repeat(40)
    );
    assert!(matches!(
        parse(line.as_bytes(), &short_sig),
        Err(ImaError::TooLarge { field: "sig", .. })
    ));
}

fn record_header(name: &[u8]) -> Vec<u8> {
    [
        &10u32.to_le_bytes()[..],
        &[7; 20],
        &(name.len() as u32).to_le_bytes(),
        name,
    ]
    .concat()
}

#[test]
fn oversized_length_fields_are_too_large_before_anything_is_taken() {
    let limits = Limits::default();
    // Template name length 0xffffffff with nothing after it.
    let bin = [&10u32.to_le_bytes()[..], &[7; 20], &u32::MAX.to_le_bytes()].concat();
    let e = parse(&bin, &limits).unwrap_err();
    assert!(
        matches!(e, ImaError::TooLarge { field: "template name", len, max: MAX_TEMPLATE_NAME, .. } if len == u32::MAX as usize),
        "{e}"
    );
    // Template data length.
    let bin = [record_header(b"ima-ng"), u32::MAX.to_le_bytes().to_vec()].concat();
    let e = parse(&bin, &limits).unwrap_err();
    assert!(
        matches!(e, ImaError::TooLarge { field: "template data", max, .. } if max == limits.max_template_data),
        "{e}"
    );
    // Field lengths inside the template data.
    for (field, data) in [
        (
            "d-ng",
            [&0xffff_fff0u32.to_le_bytes()[..], &[0; 8]].concat(),
        ),
        (
            "n-ng",
            [
                &4u32.to_le_bytes()[..],
                b"x:\0a",
                &0x10_0000u32.to_le_bytes(),
            ]
            .concat(),
        ),
        (
            "sig",
            [
                &4u32.to_le_bytes()[..],
                b"x:\0a",
                &2u32.to_le_bytes(),
                b"a\0",
                &0x10_0000u32.to_le_bytes(),
            ]
            .concat(),
        ),
    ] {
        let name: &[u8] = if field == "sig" {
            b"ima-sig"
        } else {
            b"ima-ng"
        };
        let bin = [
            record_header(name),
            (data.len() as u32).to_le_bytes().to_vec(),
            data,
        ]
        .concat();
        let e = parse(&bin, &limits).unwrap_err();
        assert!(
            matches!(e, ImaError::TooLarge { field: f, .. } if f == field),
            "{field}: {e}"
        );
    }
    // The legacy template's name.
    let bin = [
        record_header(b"ima"),
        vec![1; 20],
        256u32.to_le_bytes().to_vec(),
    ]
    .concat();
    let e = parse(&bin, &limits).unwrap_err();
    assert!(
        matches!(
            e,
            ImaError::TooLarge {
                field: "ima template name (n)",
                len: 256,
                max: 255,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn malformed_binary_fields_are_errors_naming_the_record() {
    let limits = Limits::default();
    let with = |name: &[u8], data: &[u8]| {
        let first = to_binary(&parse(&fixture("ima-log-sha1"), &limits).unwrap()).unwrap();
        [
            first,
            record_header(name),
            (data.len() as u32).to_le_bytes().to_vec(),
            data.to_vec(),
        ]
        .concat()
    };
    let dng = [&26u32.to_le_bytes()[..], b"sha1:\0", &[9; 20]].concat();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            with(b"ima-ng", &[&dng[..], &2u32.to_le_bytes(), b"ab"].concat()),
            "n-ng: not NUL-terminated",
        ),
        (
            with(
                b"ima-ng",
                &[&dng[..], &3u32.to_le_bytes(), b"a\0\0"].concat(),
            ),
            "NUL byte inside",
        ),
        (
            with(
                b"ima-ng",
                &[&dng[..], &2u32.to_le_bytes(), b"a\0", b"x"].concat(),
            ),
            "1 unexpected trailing bytes",
        ),
        (
            with(
                b"ima-ng",
                &[&26u32.to_le_bytes()[..], b"sha1-\0", &[9; 20]].concat(),
            ),
            "no ':'",
        ),
        (
            with(
                b"ima-ng",
                &[&26u32.to_le_bytes()[..], b"sha1:x", &[9; 20]].concat(),
            ),
            "not followed by NUL",
        ),
        (with(b"ima-ng", &dng), "n-ng: needs 4 more bytes"),
        (with(b"ima ng", &[]), "template name"),
        (with(b"", &[]), "template name"),
    ];
    for (bin, want) in cases {
        let e = parse(&bin, &limits).unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("record 2 (byte offset 165)"), "{msg}");
        assert!(msg.contains(want), "{want}: {msg}");
    }
    let mut pcr99 = to_binary(&parse(&fixture("ima-log-sha1"), &limits).unwrap()).unwrap();
    pcr99[0] = 99;
    assert!(parse(&pcr99, &limits)
        .unwrap_err()
        .to_string()
        .starts_with("record 0 (byte offset 0): pcr: PCR 99"));
}

fn small_binary_log() -> (Vec<u8>, Vec<usize>) {
    let text = [
        String::from_utf8(fixture("ima-log-sha256")).unwrap(),
        "10 58d66ef597c4fa36d54148042d075ae68a1b8d2e ima aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d /usr/bin/true\n".into(),
        "10 5d9838950da04766bc52f9336b26e3aabe397240 ima-sig sha256:c7b68ac37f364473e922936708e7f43c293dd07b295171566c07ff5fe024fab9 /usr/bin/ls 030204aabbccdd00081111111111111111\n".into(),
    ]
    .concat();
    let log = ascii(&text).unwrap();
    let mut boundaries = vec![0];
    for i in 1..=log.entries.len() {
        let part = ImaLog {
            template_hash_alg: log.template_hash_alg,
            entries: log.entries[..i].to_vec(),
        };
        boundaries.push(to_binary(&part).unwrap().len());
    }
    (to_binary(&log).unwrap(), boundaries)
}

#[test]
fn truncation_at_every_offset_is_an_error_except_at_record_boundaries() {
    let (bin, boundaries) = small_binary_log();
    assert_eq!(boundaries.last(), Some(&bin.len()));
    for cut in 0..bin.len() {
        let prefix = &bin[..cut];
        let got = parse_binary(prefix, HashAlg::Sha1, &Limits::default());
        match boundaries.iter().position(|b| *b == cut) {
            Some(n) => assert_eq!(got.unwrap().entries.len(), n, "cut {cut}"),
            None => assert!(got.is_err(), "cut {cut} parsed"),
        }
        let _ = parse(prefix, &Limits::default());
    }
}

// ---- properties ----

/// The ascii form the kernel prints (test-only: names must not hold `\n`, and
/// for `ima-sig`/`ima-buf` no spaces, as the kernel guarantees since 2014).
fn to_ascii(log: &ImaLog) -> Vec<u8> {
    let mut out = Vec::new();
    for e in &log.entries {
        out.extend_from_slice(
            format!(
                "{:2} {} {}",
                e.pcr,
                hex::encode(&e.template_hash),
                e.template.name()
            )
            .as_bytes(),
        );
        let ng = |out: &mut Vec<u8>, alg: &str, d: &[u8], n: &[u8]| {
            out.extend_from_slice(format!(" {alg}:{} ", hex::encode(d)).as_bytes());
            out.extend_from_slice(n);
        };
        match &e.template {
            Template::Ima(f) => {
                out.extend_from_slice(format!(" {} ", hex::encode(&f.digest)).as_bytes());
                out.extend_from_slice(f.path.as_bytes());
            }
            Template::ImaNg(f) => ng(&mut out, &f.hash_alg, &f.digest, f.path.as_bytes()),
            Template::ImaSig(f) => {
                ng(&mut out, &f.hash_alg, &f.digest, f.path.as_bytes());
                out.extend_from_slice(
                    format!(
                        " {}",
                        hex::encode(f.signature.as_deref().unwrap_or_default())
                    )
                    .as_bytes(),
                );
            }
            Template::ImaBuf(b) => {
                ng(&mut out, &b.hash_alg, &b.digest, b.name.as_bytes());
                out.extend_from_slice(format!(" {}", hex::encode(&b.buf)).as_bytes());
            }
            Template::Other(_) => unreachable!(),
        }
        out.push(b'\n');
    }
    out
}

#[derive(Debug, Clone, Copy)]
enum HashKind {
    Valid,
    Violation,
    Random,
}

fn arb_template() -> impl Strategy<Value = Template> {
    let alg = prop_oneof![
        Just(("sha1", 20)),
        Just(("sha256", 32)),
        Just(("sha512", 64)),
        Just(("sm3", 32)),
        Just(("newhash", 7))
    ];
    let digest = alg.prop_flat_map(|(a, n)| {
        (
            Just(a.to_string()),
            proptest::collection::vec(any::<u8>(), n),
        )
    });
    // Any UTF-8 but NUL and newline (and, where a hex field follows, space).
    let path = "/[^\\x00\\n ]{0,60}";
    let path_with_spaces = "/[^\\x00\\n]{0,60}";
    let bytes = proptest::collection::vec(any::<u8>(), 1..80);
    prop_oneof![
        (proptest::collection::vec(any::<u8>(), 20), path_with_spaces).prop_map(
            |(digest, path)| Template::Ima(FileMeasurement {
                hash_alg: "sha1".into(),
                digest,
                path,
                signature: None
            })
        ),
        (digest.clone(), path_with_spaces).prop_map(|((hash_alg, digest), path)| Template::ImaNg(
            FileMeasurement {
                hash_alg,
                digest,
                path,
                signature: None
            }
        )),
        (digest.clone(), path, proptest::option::of(bytes.clone())).prop_map(
            |((hash_alg, digest), path, signature)| {
                Template::ImaSig(FileMeasurement {
                    hash_alg,
                    digest,
                    path,
                    signature,
                })
            }
        ),
        (digest, path, proptest::collection::vec(any::<u8>(), 0..40)).prop_map(
            |((hash_alg, digest), name, buf)| Template::ImaBuf(BufferMeasurement {
                hash_alg,
                digest,
                name,
                buf
            })
        ),
    ]
}

fn arb_log(alg: HashAlg) -> impl Strategy<Value = ImaLog> {
    let kind = prop_oneof![6 => Just(HashKind::Valid), 1 => Just(HashKind::Violation), 1 => Just(HashKind::Random)];
    proptest::collection::vec((0u32..PCR_COUNT, arb_template(), kind, any::<u8>()), 0..12).prop_map(
        move |raw| {
            let entries = raw
                .into_iter()
                .enumerate()
                .map(|(index, (pcr, template, kind, seed))| {
                    let data = template::template_data(&template).unwrap();
                    let template_hash = match kind {
                        HashKind::Valid => alg.digest(&data),
                        HashKind::Violation => vec![0; alg.digest_len()],
                        HashKind::Random => vec![seed | 1; alg.digest_len()],
                    };
                    ImaEntry {
                        index,
                        pcr,
                        template_hash,
                        template,
                    }
                })
                .collect();
            ImaLog {
                template_hash_alg: alg,
                entries,
            }
        },
    )
}

fn arb_any_log() -> impl Strategy<Value = ImaLog> {
    prop_oneof![
        arb_log(HashAlg::Sha1),
        arb_log(HashAlg::Sha256),
        arb_log(HashAlg::Sha512)
    ]
}

proptest! {
    #[test]
    fn binary_and_ascii_round_trip(log in arb_any_log()) {
        let limits = Limits::default();
        let bin = to_binary(&log).unwrap();
        prop_assert_eq!(&parse_binary(&bin, log.template_hash_alg, &limits).unwrap(), &log);
        if !log.entries.is_empty() {
            // An empty ascii log cannot say which template-hash algorithm it has.
            prop_assert_eq!(&parse_ascii(&to_ascii(&log), &limits).unwrap(), &log);
        }
        if log.template_hash_alg == HashAlg::Sha1 {
            prop_assert_eq!(&parse(&bin, &limits).unwrap(), &log);
        }
    }

    #[test]
    fn replay_is_the_fold_of_extends(log in arb_any_log(), bank in prop_oneof![Just(HashAlg::Sha1), Just(HashAlg::Sha256), Just(HashAlg::Sha384)]) {
        let r = replay(&log, bank).unwrap();
        let n = bank.digest_len();
        let mut want: std::collections::BTreeMap<u32, Vec<u8>> = Default::default();
        let mut mismatched = Vec::new();
        for e in &log.entries {
            let data = e.template_data().unwrap();
            let violation = e.template_hash.iter().all(|b| *b == 0);
            if !violation && log.template_hash_alg.digest(&data) != e.template_hash {
                mismatched.push(e.index);
            }
            let value = if violation { vec![0xff; n] } else if bank == log.template_hash_alg { e.template_hash.clone() } else { bank.digest(&data) };
            let pcr = want.entry(e.pcr).or_insert_with(|| vec![0; n]);
            *pcr = bank.digest(&[pcr.clone(), value].concat());
        }
        prop_assert_eq!(r.pcrs, want);
        prop_assert_eq!(r.mismatched, mismatched);
        prop_assert!(r.unchecked.is_empty());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(log) = parse(&bytes, &Limits::default()) {
            let _ = replay(&log, HashAlg::Sha256);
        }
        let _ = parse_binary(&bytes, HashAlg::Sha256, &Limits::default());
    }

    #[test]
    fn corrupted_binary_logs_never_panic(pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let (mut bin, _) = small_binary_log();
        let i = pos.index(bin.len());
        bin[i] = byte;
        if let Ok(log) = parse_binary(&bin, HashAlg::Sha1, &Limits::default()) {
            let _ = replay(&log, HashAlg::Sha384);
            prop_assert_eq!(to_binary(&log).unwrap(), bin);
        }
    }
}
