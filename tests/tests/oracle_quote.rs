//! Peer oracle: quotes made by a real TPM (swtpm) through tpm2-tools' `tpm2_createak`
//! and `tpm2_quote` are accepted by assay-core, with the AK name tpm2-tools reports,
//! and stop being accepted when a single byte changes.

use std::path::Path;

use assay_core::policy::Policy;
use assay_core::tpm::attest::parse_quote_attest;
use assay_core::tpm::public::{check_ak_attributes, parse_tpm2b_public, TpmPublic};
use assay_core::verify::{verify_quote, QuoteCheck, QuoteEvidence, QuoteOutcome};
use assay_tests::Swtpm;

const PCRS: [u32; 4] = [0, 1, 2, 13];

/// Everything one `tpm2_createak` + `tpm2_quote` run produced.
struct TpmQuote {
    ak_pub: Vec<u8>,
    ak_name: Vec<u8>,
    attest: Vec<u8>,
    signature: Vec<u8>,
    pcrs: Vec<(u32, Vec<u8>)>,
    nonce: Vec<u8>,
}

fn path(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

/// Creates an EK and an AK (`-G alg -s scheme`), extends PCR 13 so that not every
/// value is zero, reads the PCRs and quotes them with a fresh nonce.
fn tpm2_quote(alg: &str, scheme: &str) -> anyhow::Result<TpmQuote> {
    let tpm = Swtpm::start()?;
    let dir = tempfile::tempdir()?;
    let p = |n: &str| path(dir.path(), n);
    let flush = || -> anyhow::Result<()> {
        tpm.tpm2("tpm2_flushcontext", &["-t"])?;
        tpm.tpm2("tpm2_flushcontext", &["-s"])?;
        Ok(())
    };
    tpm.tpm2(
        "tpm2_pcrextend",
        &["13:sha256=4c8b3c8c2ad9cc6b5e3d3c1b1a0f0e0d0c0b0a09080706050403020100ffeedd"],
    )?;
    tpm.tpm2(
        "tpm2_createek",
        &["-c", &p("ek.ctx"), "-G", "rsa", "-u", &p("ek.pub")],
    )?;
    flush()?;
    tpm.tpm2(
        "tpm2_createak",
        &[
            "-C",
            &p("ek.ctx"),
            "-c",
            &p("ak.ctx"),
            "-G",
            alg,
            "-g",
            "sha256",
            "-s",
            scheme,
            "-u",
            &p("ak.pub"),
            "-n",
            &p("ak.name"),
        ],
    )?;
    flush()?;
    let nonce: [u8; 32] = rand::random();
    let selection = "sha256:0,1,2,13";
    tpm.tpm2(
        "tpm2_quote",
        &[
            "-c",
            &p("ak.ctx"),
            "-l",
            selection,
            "-q",
            &hex::encode(nonce),
            "-m",
            &p("q.msg"),
            "-s",
            &p("q.sig"),
            "-o",
            &p("q.pcrs"),
            "-g",
            "sha256",
            "--scheme",
            scheme,
        ],
    )?;
    flush()?;
    tpm.tpm2("tpm2_pcrread", &[selection, "-o", &p("pcrs.bin")])?;
    let values = std::fs::read(p("pcrs.bin"))?;
    anyhow::ensure!(
        values.len() == 32 * PCRS.len(),
        "tpm2_pcrread wrote {} bytes",
        values.len()
    );
    let pcrs = PCRS
        .iter()
        .zip(values.chunks(32))
        .map(|(i, v)| (*i, v.to_vec()))
        .collect();
    Ok(TpmQuote {
        ak_pub: std::fs::read(p("ak.pub"))?,
        ak_name: std::fs::read(p("ak.name"))?,
        attest: std::fs::read(p("q.msg"))?,
        signature: std::fs::read(p("q.sig"))?,
        pcrs,
        nonce: nonce.to_vec(),
    })
}

fn policy_for(pcrs: &[(u32, Vec<u8>)]) -> Policy {
    let mut text = String::from("schema = 0\nname = \"oracle\"\n[pcrs.sha256]\n");
    for (i, v) in pcrs {
        text.push_str(&format!("{i} = \"{}\"\n", hex::encode(v)));
    }
    Policy::parse("oracle.toml", &text).unwrap()
}

fn verify(
    ak: &TpmPublic,
    q: &TpmQuote,
    attest: &[u8],
    signature: &[u8],
    policy: &Policy,
) -> QuoteOutcome {
    let check = QuoteCheck {
        ak,
        expected_nonce: &q.nonce,
        previous_clock: None,
        policy,
        cache: None,
        ima_state: None,
    };
    verify_quote(
        &check,
        &QuoteEvidence {
            attest,
            signature,
            pcrs_sha256: &q.pcrs,
            ..Default::default()
        },
    )
}

fn failed(o: &QuoteOutcome) -> Vec<String> {
    o.verdict.failed().map(|c| c.id.clone()).collect()
}

/// The whole oracle check for one AK type and scheme.
fn core_accepts_tpm2_quote(alg: &str, scheme: &str) {
    let q = tpm2_quote(alg, scheme).unwrap();
    let ak = parse_tpm2b_public(&q.ak_pub).unwrap();
    check_ak_attributes(&ak).unwrap();
    assert_eq!(
        hex::encode(ak.name()),
        hex::encode(&q.ak_name),
        "our AK name equals tpm2_createak's"
    );

    let attest = parse_quote_attest(&q.attest).unwrap();
    assert_eq!(attest.extra_data, q.nonce);
    assert_eq!(attest.qualified_signer.len(), 34, "a sha256 name");
    let policy = policy_for(&q.pcrs);
    let o = verify(&ak, &q, &q.attest, &q.signature, &policy);
    assert!(o.verdict.passed, "{:#?}", o.verdict);
    assert_eq!(o.clock, Some(attest.clock_info));
    assert!(
        q.pcrs
            .iter()
            .any(|(i, v)| *i == 13 && v.iter().any(|b| *b != 0)),
        "PCR 13 was extended"
    );

    // One flipped byte anywhere in the quote: the signature no longer verifies.
    for at in [0, q.attest.len() / 2, q.attest.len() - 1] {
        let mut bad = q.attest.clone();
        bad[at] ^= 0x01;
        let o = verify(&ak, &q, &bad, &q.signature, &policy);
        assert_eq!(failed(&o), ["quote.signature"], "flipped attest byte {at}");
    }
    // One flipped byte in the signature value (its last byte).
    let mut bad = q.signature.clone();
    *bad.last_mut().unwrap() ^= 0x01;
    assert_eq!(
        failed(&verify(&ak, &q, &q.attest, &bad, &policy)),
        ["quote.signature"]
    );
    // A reported PCR value that is not what the TPM quoted.
    let mut lying = TpmQuote {
        pcrs: q.pcrs.clone(),
        ..q
    };
    lying.pcrs[1].1[0] ^= 0x01;
    let o = verify(&ak, &lying, &lying.attest, &lying.signature, &policy);
    assert_eq!(failed(&o), ["quote.pcr_digest"]);
    // A golden value the node does not have: named by PCR.
    let mut golden = lying.pcrs.clone();
    golden[1].1[0] ^= 0x01; // back to the true value
    golden[3].1 = vec![0xee; 32];
    let o = verify(
        &ak,
        &lying,
        &lying.attest,
        &lying.signature,
        &policy_for(&golden),
    );
    assert!(failed(&o).contains(&"quote.pcr_digest".to_string()));
}

#[test]
fn core_accepts_quote_made_by_tpm2_quote_rsassa() {
    core_accepts_tpm2_quote("rsa", "rsassa");
}

#[test]
fn core_accepts_quote_made_by_tpm2_quote_rsapss() {
    core_accepts_tpm2_quote("rsa", "rsapss");
}

#[test]
fn core_accepts_quote_made_by_tpm2_quote_ecdsa_p256() {
    core_accepts_tpm2_quote("ecc", "ecdsa");
}

#[test]
fn core_names_the_pcr_when_the_tpm_differs_from_policy() {
    let q = tpm2_quote("rsa", "rsassa").unwrap();
    let ak = parse_tpm2b_public(&q.ak_pub).unwrap();
    let mut golden = q.pcrs.clone();
    golden[3].1 = vec![0xee; 32];
    let o = verify(&ak, &q, &q.attest, &q.signature, &policy_for(&golden));
    assert_eq!(failed(&o), ["pcr.sha256.13"]);
    let c = o.verdict.failed().next().unwrap();
    assert_eq!(c.expected, "ee".repeat(32));
    assert_eq!(c.actual, hex::encode(&q.pcrs[3].1));
    // A policy asking for a PCR the quote did not cover.
    let mut more = q.pcrs.clone();
    more.push((7, vec![0; 32]));
    let o = verify(&ak, &q, &q.attest, &q.signature, &policy_for(&more));
    assert_eq!(failed(&o), ["quote.pcr_selection"]);
}
