//! Real EK certificates from public sources (`tests/data/ek-certs`, with
//! provenance in its MANIFEST.tsv): each parses and chains to the built-in
//! vendor EK CA bundle (`trust.ek_roots = ["builtin"]`), openssl agrees, and
//! the vendor quirks they carry meet the explicit rules of `core::ek`:
//!
//! - an empty subject is accepted (TCG EK Credential Profile: the TPM's
//!   identity is in the subjectAltName, and the subject may be empty);
//! - a critical subjectAltName holding the TPM manufacturer, model and
//!   version (directoryName, TCG OIDs 2.23.133.2.1-3) is accepted, being an
//!   extension the parser understands;
//! - an unknown critical extension is refused (RFC 5280 §4.2; the core's
//!   unit tests cover it with made certificates: no real sample has one);
//! - non-critical vendor extensions (Google's instance information,
//!   1.3.6.1.4.1.11129.2.1.21) and subjectDirectoryAttributes are ignored.

use std::path::PathBuf;
use std::process::Command;

use assay_core::ek::{validate_ek_certificate, EkPublicKey};
use assay_verifier::trust::{load_anchors, BUILTIN};

/// 2026-12-01: inside every sample's validity.
const NOW: i64 = 1_796_083_200;

fn data(rel: &str) -> PathBuf {
    assay_tests::testdata(format!("ek-certs/{rel}"))
}

/// The MANIFEST's rows: (file, sha256 of the DER).
fn manifest() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(data("MANIFEST.tsv")).unwrap();
    text.lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[0].to_string(), f[4].to_string())
        })
        .collect()
}

#[test]
fn every_real_ek_certificate_parses_and_chains_to_the_builtin_bundle() {
    use sha2::{Digest, Sha256};
    let anchors = load_anchors(&[PathBuf::from(BUILTIN)], &[], &[]).unwrap();
    let rows = manifest();
    assert!(rows.len() >= 4, "{rows:?}");
    let mut empty_subjects = 0;
    let mut ecc = 0;
    for (file, sha256) in &rows {
        let der = assay_tests::der_of_pem(&data(file)).unwrap();
        assert_eq!(
            &hex::encode(Sha256::digest(&der)),
            sha256,
            "{file}: MANIFEST"
        );
        let c =
            validate_ek_certificate(&der, &anchors, NOW).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(c.chain.len(), 2, "{file}: {:?}", c.chain);
        assert!(c.chain[1].contains("Google"), "{file}: {:?}", c.chain);
        match &c.public_key {
            EkPublicKey::Rsa { modulus, exponent } => {
                assert_eq!((modulus.len(), *exponent), (256, 65537), "{file}")
            }
            EkPublicKey::Ecc { curve_oid, .. } => {
                assert_eq!(curve_oid, "1.2.840.10045.3.1.7", "{file}: P-256");
                ecc += 1;
            }
        }
        empty_subjects += usize::from(c.subject.is_empty());
        // Expired at a time past its not-after: the same path is then refused.
        assert!(validate_ek_certificate(&der, &anchors, c.not_after_unix + 1).is_err());
    }
    assert_eq!(ecc, 2);
    assert_eq!(empty_subjects, 2, "the uca samples have an empty subject");
}

#[test]
fn openssl_agrees_that_each_sample_chains_and_that_without_its_intermediate_none_does() {
    let bundle = assay_verifier::trust::builtin_bundle().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let roots = dir.path().join("roots.pem");
    let inters = dir.path().join("inters.pem");
    let pem = |der: &[u8]| {
        let out = Command::new("openssl")
            .args(["x509", "-inform", "DER"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write as _;
                c.stdin.take().unwrap().write_all(der)?;
                c.wait_with_output()
            })
            .unwrap();
        out.stdout
    };
    let google = |root: bool| -> Vec<u8> {
        bundle
            .iter()
            .filter(|c| c.root == root && c.subject.contains("Google"))
            .flat_map(|c| pem(&c.der))
            .collect()
    };
    std::fs::write(&roots, google(true)).unwrap();
    std::fs::write(&inters, google(false)).unwrap();
    for (file, _) in manifest() {
        let ours = validate_ek_certificate(
            &assay_tests::der_of_pem(&data(&file)).unwrap(),
            &load_anchors(std::slice::from_ref(&roots), &[], &[]).unwrap(),
            NOW,
        );
        assert!(ours.is_err(), "{file}: chained without its intermediate");
        let out = Command::new("openssl")
            .args(["verify", "-attime", &NOW.to_string(), "-CAfile"])
            .arg(&roots)
            .arg("-untrusted")
            .arg(&inters)
            .arg(data(&file))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let out = Command::new("openssl")
            .args(["verify", "-attime", &NOW.to_string(), "-CAfile"])
            .arg(&roots)
            .arg(data(&file))
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "{file}: openssl chained without the intermediate"
        );
    }
}

/// The documented rule for a vendor quirk: an EK certificate whose serial is a
/// negative DER INTEGER (made here by openssl `-set_serial -0x8001`, under a test
/// CA) is accepted, and its serial is reported as its DER bytes.
#[test]
fn an_ek_certificate_with_a_negative_serial_is_accepted_by_rule() {
    let ca = assay_tests::TestCa::with_crl_signing().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).display().to_string();
    std::fs::write(
        dir.path().join("ext.cnf"),
        "[v3]\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,keyEncipherment\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        let o = Command::new("openssl").args(args).output().unwrap();
        assert!(
            o.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    run(&[
        "req",
        "-new",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        &p("k.pem"),
        "-out",
        &p("r.csr"),
        "-subj",
        "/CN=negative serial EK",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        &p("r.csr"),
        "-CA",
        ca.issuer_cert_path().to_str().unwrap(),
        "-CAkey",
        ca.issuer_key_path().to_str().unwrap(),
        "-set_serial",
        "-0x8001",
        "-days",
        "30",
        "-extfile",
        &p("ext.cnf"),
        "-extensions",
        "v3",
        "-outform",
        "DER",
        "-out",
        &p("ek.der"),
    ]);
    let der = std::fs::read(dir.path().join("ek.der")).unwrap();
    let mut a = assay_core::ek::TrustAnchors::new();
    a.add_roots_pem(&std::fs::read(ca.root_cert_path()).unwrap())
        .unwrap();
    a.add_intermediates_pem(&std::fs::read(ca.issuer_cert_path()).unwrap())
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let cert = validate_ek_certificate(&der, &a, now).unwrap();
    // -0x8001 in two's complement: ff 7f ff.
    assert_eq!(cert.serial_hex, "ff7fff");
}
