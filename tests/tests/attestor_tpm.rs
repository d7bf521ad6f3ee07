//! The attestor's TPM module against a real swtpm, with tpm2-tools as the oracle.
//!
//! Each test runs its own swtpm. tpm2-tools are only run while no `Tpm` is open (swtpm
//! serves one connection at a time and there is no resource manager).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Instant;

use assay_attestor::tpm::{Tpm, TpmError};
use assay_tests::Swtpm;
use rand::RngCore;
use sha2::{Digest, Sha256};
use tempfile::TempDir;

struct Rig {
    swtpm: Swtpm,
    dir: TempDir,
}

impl Rig {
    fn new() -> Rig {
        Rig {
            swtpm: Swtpm::start().expect("starting swtpm"),
            dir: tempfile::Builder::new()
                .prefix("assay-tpm-test-")
                .tempdir()
                .unwrap(),
        }
    }

    fn open(&self) -> Tpm {
        Tpm::open(&self.swtpm.tcti()).expect("opening swtpm")
    }

    /// Where the attestor keeps its AK.
    fn state(&self) -> std::path::PathBuf {
        self.dir.path().join("state")
    }

    fn file(&self, name: &str, bytes: &[u8]) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p.to_str().unwrap().to_string()
    }

    /// Asserts that no transient object or session is loaded (the `Tpm` must be dropped).
    fn assert_nothing_loaded(&self, after: &str) {
        for cap in ["handles-transient", "handles-loaded-session"] {
            let out = self.swtpm.tpm2("tpm2_getcap", &[cap]).unwrap();
            let out = String::from_utf8_lossy(&out);
            assert!(
                out.trim().is_empty(),
                "{cap} not empty after {after}: {out}"
            );
        }
    }
}

fn random(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rand::thread_rng().fill_bytes(&mut v);
    v
}

/// DER length of the SEQUENCE at the start of `b` (header + contents).
fn der_len(b: &[u8]) -> usize {
    assert_eq!(b[0], 0x30, "DER SEQUENCE");
    match b[1] {
        n if n < 0x80 => 2 + n as usize,
        0x81 => 3 + b[2] as usize,
        0x82 => 4 + ((b[2] as usize) << 8 | b[3] as usize),
        other => panic!("unexpected DER length form {other:#x}"),
    }
}

fn openssl_parses_der(rig: &Rig, der: &[u8]) -> String {
    let path = rig.file("cert.der", der);
    let out = std::process::Command::new("openssl")
        .args([
            "x509", "-inform", "DER", "-noout", "-subject", "-issuer", "-in", &path,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl x509: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn reads_ek_certificate_matching_tpm2_nvread() {
    let rig = Rig::new();
    let mut tpm = rig.open();
    let der = tpm.ek_certificate().unwrap();
    let ecc = tpm.ecc_ek_certificate().unwrap();
    drop(tpm);
    rig.assert_nothing_loaded("ek_certificate");

    let nv = rig.swtpm.tpm2("tpm2_nvread", &["0x1c00002"]).unwrap();
    assert_eq!(der.len(), der_len(&nv), "cut at the DER length");
    assert_eq!(der, nv[..der.len()]);
    let text = openssl_parses_der(&rig, &der);
    assert!(text.contains("subject"), "{text}");

    // swtpm_setup puts its (P-384) ECC EK certificate in the high range, 0x01c00016.
    let ecc = ecc.expect("swtpm has an ECC EK certificate");
    let nv = rig.swtpm.tpm2("tpm2_nvread", &["0x1c00016"]).unwrap();
    assert_eq!(ecc, nv[..der_len(&nv)]);
    openssl_parses_der(&rig, &ecc);
}

#[test]
fn ak_is_created_once_and_reused_after_restart() {
    let rig = Rig::new();
    let mut tpm = rig.open();
    let t = Instant::now();
    let first = tpm.load_or_create_ak(&rig.state()).unwrap();
    eprintln!(
        "timing: load_or_create_ak (create, incl. EK) {:?}",
        t.elapsed()
    );
    assert!(first.created);
    let t = Instant::now();
    let again = tpm.load_or_create_ak(&rig.state()).unwrap();
    eprintln!(
        "timing: load_or_create_ak (load, incl. EK) {:?}",
        t.elapsed()
    );
    assert!(!again.created);
    assert_eq!((&again.public, &again.name), (&first.public, &first.name));
    drop(tpm);

    let mut tpm = rig.open();
    let reopened = tpm.load_or_create_ak(&rig.state()).unwrap();
    drop(tpm);
    assert!(!reopened.created);
    assert_eq!(reopened.name, first.name);
    assert_eq!(reopened.public, first.public);

    // TPM2B_PUBLIC framing, and name = nameAlg(sha256) || sha256(TPMT_PUBLIC).
    let size = u16::from_be_bytes([first.public[0], first.public[1]]) as usize;
    assert_eq!(size + 2, first.public.len());
    let mut name = vec![0x00, 0x0b];
    name.extend_from_slice(&Sha256::digest(&first.public[2..]));
    assert_eq!(first.name, name);

    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&rig.state()), 0o700);
    for f in ["ak.pub", "ak.priv"] {
        assert_eq!(mode(&rig.state().join(f)), 0o600, "{f}");
    }
    rig.assert_nothing_loaded("load_or_create_ak");
}

#[test]
fn corrupt_ak_state_is_a_clear_error() {
    let rig = Rig::new();
    let state = rig.state();
    let mut tpm = rig.open();
    tpm.load_or_create_ak(&state).unwrap();
    let good_pub = std::fs::read(state.join("ak.pub")).unwrap();
    let good_priv = std::fs::read(state.join("ak.priv")).unwrap();

    // Truncated public part.
    std::fs::write(state.join("ak.pub"), &good_pub[..good_pub.len() / 2]).unwrap();
    let e = tpm.load_or_create_ak(&state).unwrap_err();
    assert!(
        matches!(e, TpmError::State { ref path, .. } if path.ends_with("ak.pub")),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(msg.contains("ak.pub") && msg.contains("delete"), "{msg}");

    // Well-framed garbage as the private part: the TPM refuses to load it.
    std::fs::write(state.join("ak.pub"), &good_pub).unwrap();
    let mut bad_priv = good_priv.clone();
    let last = bad_priv.len() - 1;
    bad_priv[last] ^= 0xff;
    bad_priv[10] ^= 0xff;
    std::fs::write(state.join("ak.priv"), &bad_priv).unwrap();
    let e = tpm.load_or_create_ak(&state).unwrap_err();
    assert!(matches!(e, TpmError::Ak { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("ak.priv") && msg.contains("delete"), "{msg}");
    let e = tpm.quote(&state, b"nonce", &[0]).unwrap_err();
    assert!(matches!(e, TpmError::Ak { .. }), "{e:?}");

    // Partial state: the public part without the private part.
    std::fs::remove_file(state.join("ak.priv")).unwrap();
    let e = tpm.load_or_create_ak(&state).unwrap_err();
    assert!(
        matches!(e, TpmError::State { ref path, .. } if path.ends_with("ak.priv")),
        "{e:?}"
    );
    eprintln!("example message: {e}");
    drop(tpm);
    rig.assert_nothing_loaded("errors on corrupt state");

    // Deleting the files, as the message says, recovers with a new AK.
    std::fs::remove_file(state.join("ak.pub")).unwrap();
    let mut tpm = rig.open();
    assert!(tpm.load_or_create_ak(&state).unwrap().created);
}

/// tpm2-tools' credential file: magic 0xBADCC0DE, version 1, TPM2B_ID_OBJECT, TPM2B_ENCRYPTED_SECRET.
fn parse_credential_file(b: &[u8]) -> (Vec<u8>, Vec<u8>) {
    assert_eq!(b[..4], 0xBADC_C0DEu32.to_be_bytes(), "magic");
    assert_eq!(b[4..8], 1u32.to_be_bytes(), "version");
    let mut rest = &b[8..];
    let mut take = || {
        let n = u16::from_be_bytes([rest[0], rest[1]]) as usize;
        let v = rest[2..2 + n].to_vec();
        rest = &rest[2 + n..];
        v
    };
    let id = take();
    let secret = take();
    assert!(rest.is_empty(), "trailing bytes in credential file");
    (id, secret)
}

fn make_credential(rig: &Rig, ek_pub: &[u8], name: &[u8], secret: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let ek = rig.file("ek.pub", ek_pub);
    // tpm2-tools 5.4 takes the name as hex on the command line.
    let name = hex::encode(name);
    let secret = rig.file("secret.bin", secret);
    let out = rig.dir.path().join("cred.out");
    let out_s = out.to_str().unwrap();
    rig.swtpm
        .tpm2(
            "tpm2_makecredential",
            &[
                "-T", "none", "-u", &ek, "-s", &secret, "-n", &name, "-o", out_s,
            ],
        )
        .unwrap();
    parse_credential_file(&std::fs::read(&out).unwrap())
}

#[test]
fn activate_credential_recovers_what_tpm2_makecredential_protected() {
    let rig = Rig::new();
    let mut tpm = rig.open();
    let ek_pub = tpm.ek_public().unwrap();
    let ak = tpm.load_or_create_ak(&rig.state()).unwrap();
    drop(tpm);

    let secret = random(32);
    let (blob, enc) = make_credential(&rig, &ek_pub, &ak.name, &secret);
    let mut tpm = rig.open();
    let t = Instant::now();
    let got = tpm.activate_credential(&rig.state(), &blob, &enc).unwrap();
    eprintln!(
        "timing: activate_credential (incl. EK, AK load) {:?}",
        t.elapsed()
    );
    assert_eq!(got, secret);
    drop(tpm);

    // A credential made for another key's name does not activate with this AK.
    let mut other = vec![0x00, 0x0b];
    other.extend_from_slice(&random(32));
    let (blob, enc) = make_credential(&rig, &ek_pub, &other, &secret);
    let mut tpm = rig.open();
    let e = tpm
        .activate_credential(&rig.state(), &blob, &enc)
        .unwrap_err();
    assert!(matches!(e, TpmError::Activate { .. }), "{e:?}");
    // Garbage in the blobs is an error too, not a panic.
    let e = tpm
        .activate_credential(&rig.state(), &[1, 2, 3], &[4])
        .unwrap_err();
    assert!(matches!(e, TpmError::Activate { .. }), "{e:?}");
    drop(tpm);
    rig.assert_nothing_loaded("failed activations");
}

#[test]
fn tpm2_checkquote_accepts_attestor_quote() {
    let rig = Rig::new();
    let mut tpm = rig.open();
    let ak = tpm.load_or_create_ak(&rig.state()).unwrap();
    let nonce = random(32);
    let pcrs = [0u32, 1, 2, 16];
    let mut times = Vec::new();
    let mut q = None;
    for _ in 0..5 {
        let t = Instant::now();
        q = Some(tpm.quote(&rig.state(), &nonce, &pcrs).unwrap());
        times.push(t.elapsed());
    }
    eprintln!("timing: quote (incl. EK, AK load, 2 PCR reads) {times:?}");
    let q = q.unwrap();
    drop(tpm);
    assert_eq!(
        q.pcrs_sha256.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        pcrs
    );

    let ak_pub = rig.file("ak.pub", &ak.public);
    let msg = rig.file("q.msg", &q.attest);
    let sig = rig.file("q.sig", &q.signature);
    let values: Vec<u8> = q.pcrs_sha256.iter().flat_map(|(_, v)| v.clone()).collect();
    let pcr_file = rig.file("q.pcrs", &values);
    let check = |nonce: &[u8], pcr_file: &str| {
        rig.swtpm.tpm2(
            "tpm2_checkquote",
            &[
                "-u",
                &ak_pub,
                "-m",
                &msg,
                "-s",
                &sig,
                "-g",
                "sha256",
                "-q",
                &hex::encode(nonce),
                "-f",
                pcr_file,
                "-l",
                "sha256:0,1,2,16",
            ],
        )
    };
    check(&nonce, &pcr_file).expect("tpm2_checkquote accepts the quote");

    let mut other = nonce.clone();
    other[0] ^= 1;
    assert!(
        check(&other, &pcr_file).is_err(),
        "another nonce must be rejected"
    );
    let mut tampered = values.clone();
    tampered[0] ^= 1;
    let tampered = rig.file("q-tampered.pcrs", &tampered);
    assert!(
        check(&nonce, &tampered).is_err(),
        "other PCR values must be rejected"
    );
}

#[test]
fn quote_reports_the_extended_pcr() {
    let rig = Rig::new();
    let mut tpm = rig.open();
    tpm.load_or_create_ak(&rig.state()).unwrap();
    let digest: [u8; 32] = Sha256::digest(b"container start").into();
    tpm.extend_pcr_sha256(16, &digest).unwrap();
    let q = tpm.quote(&rig.state(), b"n", &[16]).unwrap();
    let mut h = Sha256::new();
    h.update([0u8; 32]);
    h.update(digest);
    assert_eq!(q.pcrs_sha256, vec![(16, h.finalize().to_vec())]);

    // TPMS_ATTEST's pcrDigest (last 32 bytes of a quote) = sha256 of the reported values.
    let values: Vec<u8> = q.pcrs_sha256.iter().flat_map(|(_, v)| v.clone()).collect();
    assert_eq!(q.attest[q.attest.len() - 32..], Sha256::digest(&values)[..]);
    drop(tpm);
    let pcr = rig.swtpm.tpm2("tpm2_pcrread", &["sha256:16"]).unwrap();
    let pcr = String::from_utf8_lossy(&pcr).to_lowercase();
    assert!(pcr.contains(&hex::encode(&q.pcrs_sha256[0].1)), "{pcr}");

    let mut tpm = rig.open();
    let e = tpm.extend_pcr_sha256(24, &digest).unwrap_err();
    assert!(matches!(e, TpmError::Pcr { index: 24, .. }), "{e:?}");
    let e = tpm.quote(&rig.state(), &[0; 65], &[16]).unwrap_err();
    assert!(matches!(e, TpmError::Quote { .. }), "{e:?}");
    let e = tpm.quote(&rig.state(), b"n", &[99]).unwrap_err();
    assert!(matches!(e, TpmError::Pcr { index: 99, .. }), "{e:?}");
}

#[test]
fn no_transient_handles_left_after_each_call() {
    let rig = Rig::new();
    let state = rig.state();
    let step = |what: &str, f: &dyn Fn(&mut Tpm)| {
        let mut tpm = rig.open();
        f(&mut tpm);
        drop(tpm);
        rig.assert_nothing_loaded(what);
    };
    step("ek_certificate", &|t| drop(t.ek_certificate().unwrap()));
    step("ecc_ek_certificate", &|t| {
        drop(t.ecc_ek_certificate().unwrap())
    });
    step("ek_public", &|t| drop(t.ek_public().unwrap()));
    step("load_or_create_ak (create)", &|t| {
        assert!(t.load_or_create_ak(&state).unwrap().created)
    });
    step("load_or_create_ak (load)", &|t| {
        assert!(!t.load_or_create_ak(&state).unwrap().created)
    });
    step("quote", &|t| {
        drop(t.quote(&state, b"nonce", &[0, 16]).unwrap())
    });
    step("extend_pcr_sha256", &|t| {
        t.extend_pcr_sha256(16, &[7; 32]).unwrap()
    });
    step("activate_credential (fails)", &|t| {
        assert!(t.activate_credential(&state, &[0; 50], &[0; 256]).is_err())
    });

    // The real activation, with tpm2-tools' credential.
    let (ek_pub, name) = {
        let mut t = rig.open();
        (
            t.ek_public().unwrap(),
            t.load_or_create_ak(&state).unwrap().name,
        )
    };
    let (blob, enc) = make_credential(&rig, &ek_pub, &name, b"secret");
    step("activate_credential", &|t| {
        assert_eq!(
            t.activate_credential(&state, &blob, &enc).unwrap(),
            b"secret"
        )
    });
}

#[test]
fn open_with_bad_tcti_is_a_clear_error() {
    let port = assay_tests::swtpm::free_port().unwrap();
    let tcti = format!("swtpm:host=127.0.0.1,port={port}");
    let e = Tpm::open(&tcti).unwrap_err();
    assert!(matches!(e, TpmError::Tcti { .. }), "{e:?}");
    assert!(e.to_string().contains(&tcti), "{e}");

    for bad in ["nonsense:foo", "device:/nonexistent/tpm"] {
        let e = Tpm::open(bad).unwrap_err();
        assert!(matches!(e, TpmError::Tcti { .. }), "{e:?}");
        assert!(e.to_string().contains(bad), "{e}");
    }
}
