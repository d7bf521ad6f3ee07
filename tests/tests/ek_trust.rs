//! EK trust settings with real swtpm TPMs and the real binaries: the
//! built-in vendor bundle loads beside the operator's own CA files, and
//! alone it does not trust a CA it does not hold.

use std::path::PathBuf;
use std::process::Output;

use assay_tests::{attestor, Swtpm, VerifierOpts, VerifierProc};

fn policy() -> String {
    let zero = "0".repeat(64);
    format!("schema = 0\nname = \"ek-trust\"\n[pcrs.sha256]\n0 = \"{zero}\"\n16 = \"{zero}\"\n")
}

fn text(o: &Output) -> String {
    assay_tests::output_text(o)
}

#[test]
fn the_builtin_vendor_bundle_loads_beside_the_operators_ca_and_trusts_only_what_it_holds() {
    let tpm = Swtpm::start().unwrap();
    // Beside the test CA: the swtpm enrolls.
    let mut opts = VerifierOpts::new(policy());
    opts.ek_roots.insert(0, PathBuf::from("builtin"));
    let v = VerifierProc::start(&opts).unwrap();
    let state = tempfile::tempdir().unwrap();
    let ok = attestor(&tpm, &v, state.path(), "n1", "join", &[]).unwrap();
    assert_eq!(ok.status.code(), Some(0), "{}\n{}", text(&ok), v.log());
    assert!(
        v.log().contains("built-in EK CA has expired"),
        "{}",
        v.log()
    );
    drop(v);
    // The bundle alone: swtpm's CA is no vendor's, so it is refused.
    let mut opts = VerifierOpts::new(policy());
    opts.ek_roots = vec![PathBuf::from("builtin")];
    opts.ek_intermediates.clear();
    let v = VerifierProc::start(&opts).unwrap();
    let state = tempfile::tempdir().unwrap();
    let refused = attestor(&tpm, &v, state.path(), "n1", "join", &[]).unwrap();
    assert_eq!(refused.status.code(), Some(3), "{}", text(&refused));
    assert!(
        text(&refused).contains("EK certificate refused"),
        "{}",
        text(&refused)
    );
}

/// Waits (bounded) until the verifier's log holds `needle` at least `n` times.
fn wait_log(v: &VerifierProc, needle: &str, n: usize) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while v.log().matches(needle).count() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "no `{needle}` in the log:\n{}",
            v.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Writes a new CRL in place (a new file renamed over the old, as a cron
/// job would), so the reload sees a changed file.
fn install_crl(path: &std::path::Path, pem: &[u8]) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, pem).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn a_revoked_ek_is_refused_at_enrollment_and_quarantines_an_enrolled_node() {
    let ca = assay_tests::TestCa::with_crl_signing().unwrap();
    let enrolled = Swtpm::start_with_ca(&ca).unwrap();
    let newcomer = Swtpm::start_with_ca(&ca).unwrap();
    let crl_dir = tempfile::tempdir().unwrap();
    let crl = crl_dir.path().join("ek-issuer.crl");
    std::fs::write(&crl, ca.crl(&[], false).unwrap()).unwrap();
    let mut opts = VerifierOpts::new(policy());
    opts.ek_roots = vec![ca.root_cert_path()];
    opts.ek_intermediates = vec![ca.issuer_cert_path()];
    opts.config = Some(format!(
        "[trust]\nek_crls = [{:?}]\n",
        crl.display().to_string()
    ));
    let v = VerifierProc::start(&opts).unwrap();
    assert!(v.log().contains("EK CRL loaded"), "{}", v.log());

    let state = tempfile::tempdir().unwrap();
    let joined = attestor(
        &enrolled,
        &v,
        state.path(),
        "n1",
        "join",
        &["--output", "json"],
    )
    .unwrap();
    assert_eq!(
        joined.status.code(),
        Some(0),
        "{}\n{}",
        text(&joined),
        v.log()
    );
    let token = serde_json::from_slice::<serde_json::Value>(&joined.stdout).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();

    // The newcomer's EK certificate is revoked: refused at enrollment.
    let newcomer_ek = newcomer.tpm2("tpm2_nvread", &["0x1c00002"]).unwrap();
    install_crl(&crl, &ca.crl(&[&newcomer_ek], false).unwrap());
    wait_log(&v, "EK CRLs reloaded", 1);
    let other = tempfile::tempdir().unwrap();
    let refused = attestor(&newcomer, &v, other.path(), "n2", "join", &[]).unwrap();
    assert_eq!(refused.status.code(), Some(3), "{}", text(&refused));
    assert!(
        text(&refused).contains("is revoked by the CRL"),
        "{}",
        text(&refused)
    );
    // The enrolled node is not on it: it still passes.
    let again = attestor(&enrolled, &v, state.path(), "n1", "attest", &[]).unwrap();
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));

    // Now the enrolled node's EK is revoked too: its next attestation fails
    // the ek.not_revoked claim, its unused token is revoked, it is quarantined.
    let enrolled_ek = enrolled.tpm2("tpm2_nvread", &["0x1c00002"]).unwrap();
    install_crl(&crl, &ca.crl(&[&enrolled_ek], false).unwrap());
    wait_log(&v, "EK CRLs reloaded", 2);
    let failed = attestor(
        &enrolled,
        &v,
        state.path(),
        "n1",
        "attest",
        &["--output", "json"],
    )
    .unwrap();
    assert_eq!(failed.status.code(), Some(3), "{}", text(&failed));
    let j: serde_json::Value = serde_json::from_slice(&failed.stdout).unwrap();
    let failed_claims: Vec<&str> = j["claims"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["passed"] == false)
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(failed_claims, ["ek.not_revoked"], "{j}");
    let redeem = v
        .cli(&["token", "verify", "--token", &token, "--node", "n1"])
        .unwrap();
    assert_eq!(redeem.status.code(), Some(3), "{}", text(&redeem));
    let shown: serde_json::Value =
        serde_json::from_slice(&v.cli(&["node", "show", "n1", "--json"]).unwrap().stdout).unwrap();
    assert_eq!(shown["quarantined"], true, "{shown}");

    // An expired CRL fails closed: nothing under that issuer enrolls.
    install_crl(&crl, &ca.crl(&[], true).unwrap());
    wait_log(&v, "EK CRLs reloaded", 3);
    let third = tempfile::tempdir().unwrap();
    let closed = attestor(&newcomer, &v, third.path(), "n3", "join", &[]).unwrap();
    assert_eq!(closed.status.code(), Some(3), "{}", text(&closed));
    assert!(text(&closed).contains("nextUpdate"), "{}", text(&closed));
    // A damaged CRL file keeps the previous CRLs in force.
    install_crl(&crl, b"not a CRL");
    wait_log(&v, "EK CRLs not reloaded", 1);
    let still = attestor(&newcomer, &v, third.path(), "n3", "join", &[]).unwrap();
    assert_eq!(still.status.code(), Some(3), "{}", text(&still));
}

/// Defines NV 0x01c00100, 0x01c00101, … (the EK chain range) and writes one
/// certificate into each, with tpm2-tools. (swtpm's NV indices hold at most
/// 2 KiB, so two certificates back to back in one index do not fit here; the
/// attestor's unit tests split such an index.)
fn write_nv_chain(tpm: &Swtpm, certs: &[Vec<u8>]) {
    let dir = tempfile::tempdir().unwrap();
    for (i, cert) in certs.iter().enumerate() {
        let index = format!("{:#x}", 0x01c0_0100 + i);
        let file = dir.path().join(format!("chain-{i}.der"));
        std::fs::write(&file, cert).unwrap();
        let size = cert.len().to_string();
        tpm.tpm2(
            "tpm2_nvdefine",
            &[
                &index,
                "-C",
                "o",
                "-s",
                &size,
                "-a",
                "ownerread|ownerwrite|authread|no_da",
            ],
        )
        .unwrap();
        tpm.tpm2(
            "tpm2_nvwrite",
            &[&index, "-C", "o", "-i", &file.display().to_string()],
        )
        .unwrap();
    }
}

#[test]
fn an_ek_chain_in_nv_completes_the_path_to_a_configured_root_but_never_becomes_a_root() {
    let ca = assay_tests::TestCa::shared();
    // The verifier knows the root only: the intermediate must come from the TPM.
    let mut opts = VerifierOpts::new(policy());
    opts.ek_intermediates.clear();
    let v = VerifierProc::start(&opts).unwrap();

    let bare = Swtpm::start().unwrap();
    let state = tempfile::tempdir().unwrap();
    let refused = attestor(&bare, &v, state.path(), "bare", "join", &[]).unwrap();
    assert_eq!(refused.status.code(), Some(3), "{}", text(&refused));
    assert!(
        text(&refused).contains("not a configured EK root or intermediate"),
        "{}",
        text(&refused)
    );

    // The intermediate and, as an untrusted extra, the root.
    let tpm = Swtpm::start().unwrap();
    write_nv_chain(
        &tpm,
        &[
            assay_tests::der_of_pem(&ca.issuer_cert_path()).unwrap(),
            assay_tests::der_of_pem(&ca.root_cert_path()).unwrap(),
        ],
    );
    let state = tempfile::tempdir().unwrap();
    let joined = attestor(&tpm, &v, state.path(), "chained", "join", &[]).unwrap();
    assert_eq!(
        joined.status.code(),
        Some(0),
        "{}\n{}",
        text(&joined),
        v.log()
    );

    // A rogue CA's whole chain in NV, root included, earns no trust.
    let rogue = assay_tests::TestCa::new().unwrap();
    let forged = Swtpm::start_with_ca(&rogue).unwrap();
    write_nv_chain(
        &forged,
        &[
            assay_tests::der_of_pem(&rogue.issuer_cert_path()).unwrap(),
            assay_tests::der_of_pem(&rogue.root_cert_path()).unwrap(),
        ],
    );
    let state = tempfile::tempdir().unwrap();
    let refused = attestor(&forged, &v, state.path(), "rogue", "join", &[]).unwrap();
    assert_eq!(refused.status.code(), Some(3), "{}", text(&refused));
    assert!(
        text(&refused).contains("EK certificate refused"),
        "{}",
        text(&refused)
    );
}
