//! Endorsement keys beyond RSA-2048, with real swtpm TPMs and the real
//! attestor and verifier binaries: an ECC P-384 EK (template H-3, high range:
//! SHA-384, AES-256, PolicyB) enrolls and attests, as does an RSA-3072 EK
//! (H-6) where it is the TPM's RSA EK, and a TPM with only an ECC EK
//! certificate; the EK in use is kept in the state dir and a different one is
//! refused; tpm2_makecredential (tpm2-tools' software MakeCredential) is the
//! oracle for the attestor's activation under the high-range EK.

use std::path::Path;
use std::process::Output;

use assay_attestor::tpm::{EkKind, Tpm};
use assay_tests::{attestor, Swtpm, TestCa, VerifierOpts, VerifierProc};

fn policy() -> String {
    let zero = "0".repeat(64);
    format!("schema = 0\nname = \"ek-kinds\"\n[pcrs.sha256]\n0 = \"{zero}\"\n16 = \"{zero}\"\n")
}

fn verifier() -> VerifierProc {
    verifier_for(TestCa::shared())
}

fn verifier_for(ca: &TestCa) -> VerifierProc {
    let mut o = VerifierOpts::new(policy());
    o.ek_roots = vec![ca.root_cert_path()];
    o.ek_intermediates = vec![ca.issuer_cert_path()];
    VerifierProc::start(&o).unwrap()
}

fn text(o: &Output) -> String {
    assay_tests::output_text(o)
}

fn join(tpm: &Swtpm, v: &VerifierProc, state: &Path, id: &str, extra: &[&str]) -> Output {
    attestor(tpm, v, state, id, "join", extra).unwrap()
}

fn ek_json(tpm: &Swtpm, v: &VerifierProc, state: &Path, id: &str) -> serde_json::Value {
    let o = attestor(tpm, v, state, id, "ek", &["--output", "json"]).unwrap();
    assert!(o.status.success(), "{}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// The EK certificate at `index`, read by tpm2-tools and cut to its DER length.
fn nv_certificate(tpm: &Swtpm, index: &str) -> Vec<u8> {
    let nv = tpm.tpm2("tpm2_nvread", &[index]).unwrap();
    let len = match nv[1] {
        n if n < 0x80 => 2 + n as usize,
        0x81 => 3 + nv[2] as usize,
        _ => 4 + ((nv[2] as usize) << 8 | nv[3] as usize),
    };
    nv[..len].to_vec()
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

/// What the verifier recorded for a node's enrollment (`node show`).
fn enrolled_ek_sha256(v: &VerifierProc, node: &str) -> String {
    let o = v.cli(&["node", "show", node, "--json"]).unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    j["ek_sha256"]
        .as_str()
        .unwrap_or_else(|| panic!("no enrolled EK in {j}"))
        .to_string()
}

#[test]
fn ecc_p384_ek_enrolls_attests_and_is_kept_in_the_state_dir() {
    let v = verifier();
    let tpm = Swtpm::start().unwrap();
    let state = tempfile::tempdir().unwrap();

    let o = join(&tpm, &v, state.path(), "p384", &["--ek", "ecc-p384"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        std::fs::read_to_string(state.path().join("ek")).unwrap(),
        "ecc-p384\n"
    );
    // The verifier holds the P-384 EK certificate (NV 0x01c00016) for the node.
    let p384_cert = nv_certificate(&tpm, "0x1c00016");
    assert_eq!(enrolled_ek_sha256(&v, "p384"), sha256_hex(&p384_cert));

    // Later runs use the kept EK without being told, and `ek` reports it.
    let o = attestor(&tpm, &v, state.path(), "p384", "attest", &[]).unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let ek = ek_json(&tpm, &v, state.path(), "p384");
    assert_eq!(ek["ek"], "ecc-p384");
    assert_eq!(ek["ek_cert_nv_index"], "0x01c00016");
    assert_eq!(ek["ek_cert_sha256"], sha256_hex(&p384_cert));

    // Asking for another EK than the AK's is refused, saying why and what to do.
    let o = attestor(
        &tpm,
        &v,
        state.path(),
        "p384",
        "attest",
        &["--ek", "rsa2048"],
    )
    .unwrap();
    assert!(!o.status.success());
    let t = text(&o);
    assert!(
        t.contains("made under the ecc-p384 EK") && t.contains("node remove"),
        "{t}"
    );

    // The same TPM's RSA EK is another identity: as another node it enrolls in open mode,
    // but never under the id the P-384 EK holds.
    let other = tempfile::tempdir().unwrap();
    let o = join(&tpm, &v, other.path(), "p384", &["--ek", "rsa2048"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
}

#[test]
fn rsa3072_ek_is_chosen_where_it_is_the_tpms_rsa_ek() {
    let v = verifier();
    // swtpm_setup --rsa-keysize 3072: RSA-3072 (H-6, 0x01c0001c) and P-384 (0x01c00016).
    let tpm =
        Swtpm::start_manufactured_with(&["--create-ek-cert", "--rsa-keysize", "3072"]).unwrap();
    let state = tempfile::tempdir().unwrap();
    let ek = ek_json(&tpm, &v, state.path(), "r3072");
    assert_eq!(ek["ek"], "rsa3072", "{ek}");
    let o = join(&tpm, &v, state.path(), "r3072", &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        std::fs::read_to_string(state.path().join("ek")).unwrap(),
        "rsa3072\n"
    );
    assert_eq!(
        enrolled_ek_sha256(&v, "r3072"),
        sha256_hex(&nv_certificate(&tpm, "0x1c0001c"))
    );
    let o = attestor(&tpm, &v, state.path(), "r3072", "attest", &[]).unwrap();
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn tpm_with_only_an_ecc_ek_certificate_enrolls_with_auto() {
    let v = verifier();
    let tpm = Swtpm::start().unwrap();
    // Remove the RSA EK certificate (platform authorization, as a manufacturer would).
    tpm.tpm2("tpm2_nvundefine", &["-C", "p", "0x1c00002"])
        .unwrap();
    let state = tempfile::tempdir().unwrap();
    let o = join(&tpm, &v, state.path(), "ecc-only", &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        std::fs::read_to_string(state.path().join("ek")).unwrap(),
        "ecc-p384\n"
    );
    assert_eq!(
        enrolled_ek_sha256(&v, "ecc-only"),
        sha256_hex(&nv_certificate(&tpm, "0x1c00016"))
    );
}

/// tpm2-tools' file of `tpm2_makecredential`: magic, version, TPM2B_ID_OBJECT, TPM2B_ENCRYPTED_SECRET.
fn credential_file(b: &[u8]) -> (Vec<u8>, Vec<u8>) {
    assert_eq!(b[..8], [0xba, 0xdc, 0xc0, 0xde, 0, 0, 0, 1]);
    let n = u16::from_be_bytes([b[8], b[9]]) as usize;
    let id = b[10..10 + n].to_vec();
    let rest = &b[10 + n..];
    let m = u16::from_be_bytes([rest[0], rest[1]]) as usize;
    assert_eq!(rest.len(), 2 + m);
    (id, rest[2..].to_vec())
}

#[test]
fn attestor_activates_tpm2_makecredential_output_under_each_ek() {
    let tpm = Swtpm::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    for kind in [EkKind::EccP384, EkKind::EccP256, EkKind::Rsa3072] {
        let state = dir.path().join(kind.name());
        let mut t = Tpm::open(&tpm.tcti()).unwrap();
        t.use_ek(kind);
        let ek_pub = t.ek_public().unwrap();
        let ak = t.load_or_create_ak(&state).unwrap();
        drop(t);
        let ek_file = dir.path().join("ek.pub");
        std::fs::write(&ek_file, &ek_pub).unwrap();
        let secret_file = dir.path().join("secret");
        std::fs::write(&secret_file, b"0123456789abcdef0123456789abcdef").unwrap();
        let out = dir.path().join("cred");
        tpm.tpm2(
            "tpm2_makecredential",
            &[
                "-T",
                "none",
                "-u",
                ek_file.to_str().unwrap(),
                "-s",
                secret_file.to_str().unwrap(),
                "-n",
                &hex::encode(&ak.name),
                "-o",
                out.to_str().unwrap(),
            ],
        )
        .unwrap();
        let (blob, enc) = credential_file(&std::fs::read(&out).unwrap());
        let mut t = Tpm::open(&tpm.tcti()).unwrap();
        // select_ek finds the kind kept with the AK.
        assert_eq!(
            t.select_ek(&state, assay_attestor::tpm::EkChoice::Auto)
                .unwrap(),
            kind
        );
        assert_eq!(
            t.activate_credential(&state, &blob, &enc).unwrap(),
            b"0123456789abcdef0123456789abcdef",
            "{kind}"
        );
    }
}

/// Provisions a low-range P-256 EK certificate (template L-2, NV 0x01c0000a) as a
/// manufacturer would: the EK's public key from tpm2_createek, a certificate for it
/// from `ca`'s intermediate ([`TestCa::issue_ek_certificate`]), written to NV with
/// platform authorization. Returns the DER.
fn provision_p256_certificate(tpm: &Swtpm, ca: &TestCa, dir: &Path) -> Vec<u8> {
    let p = |n: &str| dir.join(n).display().to_string();
    tpm.ek_public_pem("ecc", &dir.join("ek.pem")).unwrap();
    let der = ca
        .issue_ek_certificate(&dir.join("ek.pem"), "keyAgreement")
        .unwrap();
    std::fs::write(dir.join("ek.der"), &der).unwrap();
    let size = der.len().to_string();
    tpm.tpm2(
        "tpm2_nvdefine",
        &[
            "0x1c0000a",
            "-C",
            "p",
            "-s",
            &size,
            "-a",
            "ppwrite|ppread|ownerread|authread|platformcreate|no_da",
        ],
    )
    .unwrap();
    tpm.tpm2(
        "tpm2_nvwrite",
        &["0x1c0000a", "-C", "p", "-i", &p("ek.der")],
    )
    .unwrap();
    der
}

#[test]
fn low_range_p256_ek_with_a_certificate_in_nv_enrolls() {
    let ca = TestCa::with_crl_signing().unwrap();
    let v = verifier_for(&ca);
    let tpm = Swtpm::start_with_ca(&ca).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let der = provision_p256_certificate(&tpm, &ca, dir.path());
    // With the RSA EK certificate gone, `auto` prefers the low-range P-256 EK to P-384.
    tpm.tpm2("tpm2_nvundefine", &["-C", "p", "0x1c00002"])
        .unwrap();
    let state = tempfile::tempdir().unwrap();
    let o = join(&tpm, &v, state.path(), "p256", &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        std::fs::read_to_string(state.path().join("ek")).unwrap(),
        "ecc-p256\n"
    );
    assert_eq!(enrolled_ek_sha256(&v, "p256"), sha256_hex(&der));
    let o = attestor(&tpm, &v, state.path(), "p256", "attest", &[]).unwrap();
    assert!(o.status.success(), "{}", text(&o));
}
