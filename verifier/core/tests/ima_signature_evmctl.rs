//! IMA file signatures against the real `evmctl` (ima-evm-utils) as oracle.
//!
//! (a) The fixtures in `tests/data/ima-sig/` (made by its `make.sh` with
//! openssl and `evmctl ima_sign --sigfile`; see its README.md) verify with
//! their certificate and fail with another key, no key, or a flipped byte.
//! (b) Live: fresh keys from openssl, a fresh file signed by `evmctl ima_sign`,
//! checked by Assay and by `evmctl ima_verify`, which must agree.
//!
//! openssl and evmctl are required: a missing tool fails the test (run
//! `tests/install-deps.sh`), it never skips.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use assay_core::ima_signature::{
    verify, HashAlgo, ImaSignature, KeyAlgorithm, KeyId, KeyIdSource, Keyring, SignatureError,
};
use sha2::Digest;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/ima-sig");

fn data(name: &str) -> Vec<u8> {
    let path = Path::new(DATA).join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// One line of `MANIFEST`: a signature evmctl made.
#[derive(Debug, Clone)]
struct Fixture {
    sig: String,
    file: String,
    key: String,
    alg: String,
    digest: Vec<u8>,
    key_id: KeyId,
}

fn manifest() -> Vec<Fixture> {
    let text = String::from_utf8(data("MANIFEST")).unwrap();
    let fixtures: Vec<_> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            assert_eq!(f.len(), 6, "MANIFEST line {l:?}");
            Fixture {
                sig: f[0].into(),
                file: f[1].into(),
                key: f[2].into(),
                alg: f[3].into(),
                digest: hex::decode(f[4]).unwrap(),
                key_id: KeyId(u32::from_str_radix(f[5], 16).unwrap()),
            }
        })
        .collect();
    assert!(fixtures.len() >= 10, "MANIFEST lists {}", fixtures.len());
    fixtures
}

fn file_digest(alg: &str, bytes: &[u8]) -> Vec<u8> {
    match alg {
        "sha1" => sha1::Sha1::digest(bytes).to_vec(),
        "sha224" => sha2::Sha224::digest(bytes).to_vec(),
        "sha256" => sha2::Sha256::digest(bytes).to_vec(),
        "sha384" => sha2::Sha384::digest(bytes).to_vec(),
        "sha512" => sha2::Sha512::digest(bytes).to_vec(),
        other => panic!("no digest {other}"),
    }
}

/// A keyring of the fixture certificates `names` (DER).
fn keyring(names: &[&str]) -> Keyring {
    let mut k = Keyring::new();
    for n in names {
        k.add_certificate_der(&data(&format!("{n}.der"))).unwrap();
    }
    k
}

const ALL_KEYS: [&str; 6] = [
    "rsa2048",
    "rsa4096",
    "p256",
    "p384",
    "impostor",
    "customskid",
];

#[test]
fn every_fixture_verifies_with_its_certificate() {
    let mut bundle = String::new();
    for k in ALL_KEYS {
        bundle += &String::from_utf8(data(&format!("{k}.cert.pem"))).unwrap();
    }
    let all = Keyring::from_pem(bundle.as_bytes()).unwrap();
    assert_eq!(all.len(), ALL_KEYS.len());
    let (mut rsa, mut ecdsa) = (0, 0);
    for f in manifest() {
        let content = data(&f.file);
        assert_eq!(file_digest(&f.alg, &content), f.digest, "{}", f.file);
        let sig = data(&f.sig);
        let parsed = ImaSignature::parse(&sig).unwrap();
        assert_eq!(parsed.key_id, f.key_id, "{}", f.sig);
        assert_eq!(parsed.hash_algo.name(), f.alg, "{}", f.sig);

        let own = keyring(&[&f.key]);
        let ring_id = own.keys().next().unwrap().key_id();
        assert_eq!(
            ring_id, f.key_id,
            "{}: evmctl's key id is the keyring's",
            f.sig
        );
        let signer =
            verify(&own, &f.alg, &f.digest, &sig).unwrap_or_else(|e| panic!("{}: {e}", f.sig));
        assert_eq!(
            signer.description,
            format!("O=Assay test fixtures, CN=IMA signing key {}", f.key)
        );
        assert_eq!(signer.key_id, f.key_id);
        match signer.algorithm {
            KeyAlgorithm::Rsa { .. } => rsa += 1,
            KeyAlgorithm::EcdsaP256 | KeyAlgorithm::EcdsaP384 => ecdsa += 1,
        }
        // In a keyring of every fixture key, the right one is named.
        let signer = verify(&all, &f.alg, &f.digest, &sig).unwrap();
        assert!(signer.description.ends_with(&f.key), "{}", f.sig);
        // The same certificate in PEM gives the same key.
        let pem = Keyring::from_pem(&data(&format!("{}.cert.pem", f.key))).unwrap();
        assert_eq!(verify(&pem, &f.alg, &f.digest, &sig).unwrap(), signer);
    }
    assert!(rsa >= 5 && ecdsa >= 5, "{rsa} RSA, {ecdsa} ECDSA");
}

#[test]
fn fixture_fails_with_another_key_or_none() {
    for f in manifest() {
        let sig = data(&f.sig);
        let e = verify(&Keyring::new(), &f.alg, &f.digest, &sig).unwrap_err();
        assert_eq!(e, SignatureError::UnknownKey { key_id: f.key_id });
        assert!(
            e.to_string()
                .contains(&format!("no key with id {}", f.key_id)),
            "{e}"
        );
        let other = if f.key.starts_with('p') {
            "rsa2048"
        } else {
            "p256"
        };
        assert_eq!(
            verify(&keyring(&[other]), &f.alg, &f.digest, &sig),
            Err(SignatureError::UnknownKey { key_id: f.key_id }),
            "{}",
            f.sig
        );
    }
    // The impostor's certificate claims rsa2048's SKID: it is found, and fails.
    let impostor = keyring(&["impostor"]);
    let both = keyring(&["impostor", "rsa2048"]);
    let mut seen = 0;
    for f in manifest().into_iter().filter(|f| f.key == "rsa2048") {
        let sig = data(&f.sig);
        assert_eq!(
            verify(&impostor, &f.alg, &f.digest, &sig),
            Err(SignatureError::BadSignature {
                key_id: f.key_id,
                tried: vec!["O=Assay test fixtures, CN=IMA signing key impostor".into()]
            }),
            "{}",
            f.sig
        );
        assert!(verify(&both, &f.alg, &f.digest, &sig)
            .unwrap()
            .description
            .ends_with("rsa2048"));
        seen += 1;
    }
    assert!(seen >= 5);
}

#[test]
fn fixture_with_a_flipped_byte_fails() {
    for f in manifest() {
        let ring = keyring(&[&f.key]);
        let sig = data(&f.sig);
        for at in [9, sig.len() / 2, sig.len() - 1] {
            let mut bad = sig.clone();
            bad[at] ^= 0x04;
            assert!(
                matches!(
                    verify(&ring, &f.alg, &f.digest, &bad),
                    Err(SignatureError::BadSignature { .. })
                ),
                "{} byte {at}",
                f.sig
            );
        }
        let mut digest = f.digest.clone();
        digest[0] ^= 1;
        assert!(matches!(
            verify(&ring, &f.alg, &digest, &sig),
            Err(SignatureError::BadSignature { .. })
        ));
        let logged = if f.alg == "sha1" { "sha256" } else { "sha1" };
        assert!(matches!(
            verify(&ring, logged, &f.digest, &sig),
            Err(SignatureError::HashAlgorithmMismatch { .. })
        ));
        let mut truncated = sig.clone();
        truncated.pop();
        assert!(matches!(
            verify(&ring, &f.alg, &f.digest, &truncated),
            Err(SignatureError::Malformed(_))
        ));
    }
}

#[test]
fn fixture_public_keys_have_evmctls_key_ids() {
    for f in manifest() {
        let pem = Keyring::from_pem(&data(&format!("{}.pub.pem", f.key))).unwrap();
        let key = pem.keys().next().unwrap();
        assert_eq!(key.key_id_source(), KeyIdSource::PublicKeySha1);
        if f.key == "customskid" {
            // Signed with --keyid-from-cert: the SKID, not the key's hash.
            assert_ne!(key.key_id(), f.key_id);
            assert_eq!(f.key_id, KeyId(0x01020304));
            assert!(matches!(
                verify(&pem, &f.alg, &f.digest, &data(&f.sig)),
                Err(SignatureError::UnknownKey { .. })
            ));
        } else {
            assert_eq!(key.key_id(), f.key_id, "{}", f.key);
            verify(&pem, &f.alg, &f.digest, &data(&f.sig)).unwrap();
        }
    }
}

// ---- live: evmctl as the oracle ------------------------------------------

/// A command that must exist; a missing tool fails the test.
fn tool(name: &str) -> Command {
    match Command::new(name).arg("--version").output() {
        Ok(_) => Command::new(name),
        Err(e) => panic!(
            "`{name}` is needed by this test and could not be run ({e}): run tests/install-deps.sh (it installs ima-evm-utils and openssl)"
        ),
    }
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let p = std::env::temp_dir().join(format!(
            "assay-ima-sig-{tag}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh key and self-signed certificate (`subjectKeyIdentifier` as given).
fn fresh_key(dir: &TempDir, name: &str, genpkey: &[&str], skid: &str) -> (PathBuf, Vec<u8>) {
    let key = dir.path(&format!("{name}.key.pem"));
    let cert = dir.path(&format!("{name}.cert.pem"));
    let der = dir.path(&format!("{name}.der"));
    run(tool("openssl")
        .args(["genpkey", "-out"])
        .arg(&key)
        .args(genpkey));
    run(tool("openssl")
        .args(["req", "-new", "-x509", "-days", "2", "-key"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .args(["-subj", &format!("/CN=fresh {name}")])
        .args(["-addext", &format!("subjectKeyIdentifier={skid}")]));
    run(tool("openssl")
        .args(["x509", "-outform", "DER", "-in"])
        .arg(&cert)
        .arg("-out")
        .arg(&der));
    (key, std::fs::read(der).unwrap())
}

/// `evmctl ima_verify --key CERT.der --sigfile FILE` (reads FILE.sig).
fn evmctl_verifies(dir: &TempDir, cert_der: &Path, file: &Path) -> bool {
    let out = tool("evmctl")
        .current_dir(&dir.0)
        .args(["ima_verify", "--key"])
        .arg(cert_der)
        .arg("--sigfile")
        .arg(file)
        .output()
        .unwrap();
    out.status.success()
}

#[test]
fn evmctl_signs_fresh_files_and_assay_agrees_with_evmctl_verify() {
    let dir = TempDir::new("live");
    let cases: [(&str, &[&str], &[&str]); 4] = [
        (
            "rsa2048",
            &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
            &["sha256", "sha1", "sha512"],
        ),
        (
            "rsa3072",
            &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:3072"],
            &["sha384"],
        ),
        (
            "p256",
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
            &["sha256", "sha224", "sha512"],
        ),
        (
            "p384",
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
            &["sha384", "sha256", "sha1"],
        ),
    ];
    for (name, genpkey, algs) in cases {
        let (key, der) = fresh_key(&dir, name, genpkey, "hash");
        let der_path = dir.path(&format!("{name}.der"));
        let mut ring = Keyring::new();
        let ring_id = ring.add_certificate_der(&der).unwrap();
        for alg in algs {
            let file = dir.path(&format!("{name}-{alg}.bin"));
            let content = format!(
                "fresh content for {name} {alg} at {:?}\n",
                std::time::SystemTime::now()
            );
            std::fs::write(&file, &content).unwrap();
            run(tool("evmctl")
                .args(["ima_sign", "--key"])
                .arg(&key)
                .args(["-a", alg, "--sigfile"])
                .arg(&file));
            let sig_path = PathBuf::from(format!("{}.sig", file.display()));
            let sig = std::fs::read(&sig_path).unwrap();
            let parsed = ImaSignature::parse(&sig).unwrap();
            assert_eq!(
                parsed.key_id, ring_id,
                "{name}/{alg}: the key id evmctl wrote is the one Assay computes"
            );
            assert_eq!(parsed.hash_algo.name(), *alg);
            let digest = file_digest(alg, content.as_bytes());

            // Both accept the signature.
            let signer =
                verify(&ring, alg, &digest, &sig).unwrap_or_else(|e| panic!("{name}/{alg}: {e}"));
            assert_eq!(signer.description, format!("CN=fresh {name}"));
            assert!(
                evmctl_verifies(&dir, &der_path, &file),
                "{name}/{alg}: evmctl ima_verify refuses"
            );

            // Both refuse it with a byte flipped.
            let mut bad = sig.clone();
            let last = bad.len() - 1;
            bad[last] ^= 0x01;
            std::fs::write(&sig_path, &bad).unwrap();
            assert!(matches!(
                verify(&ring, alg, &digest, &bad),
                Err(SignatureError::BadSignature { .. })
            ));
            assert!(
                !evmctl_verifies(&dir, &der_path, &file),
                "{name}/{alg}: evmctl ima_verify accepts a damaged signature"
            );

            // Both refuse the intact signature on changed content.
            std::fs::write(&sig_path, &sig).unwrap();
            std::fs::write(&file, format!("{content}changed")).unwrap();
            let changed = file_digest(alg, format!("{content}changed").as_bytes());
            assert!(matches!(
                verify(&ring, alg, &changed, &sig),
                Err(SignatureError::BadSignature { .. })
            ));
            assert!(!evmctl_verifies(&dir, &der_path, &file));
        }
        // A keyring without this key: no key with its id.
        assert_eq!(
            verify(
                &keyring(&["rsa2048", "p256"]),
                "sha256",
                &[0; 32],
                &ImaSignature {
                    hash_algo: HashAlgo::Sha256,
                    key_id: ring_id,
                    signature: vec![1],
                }
                .to_bytes()
            ),
            Err(SignatureError::UnknownKey { key_id: ring_id })
        );
    }
}

#[test]
fn evmctl_keyid_from_cert_is_the_skid_assay_matches() {
    let dir = TempDir::new("skid");
    let (key, der) = fresh_key(
        &dir,
        "skid",
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
        "0badc0de0badc0de0badc0de0badc0de5ca1ab1e",
    );
    let cert_pem = dir.path("skid.cert.pem");
    let file = dir.path("f");
    std::fs::write(&file, b"signed under a chosen key id").unwrap();
    run(tool("evmctl")
        .args(["ima_sign", "--key"])
        .arg(&key)
        .arg("--keyid-from-cert")
        .arg(&cert_pem)
        .args(["-a", "sha256", "--sigfile"])
        .arg(&file));
    let sig = std::fs::read(dir.path("f.sig")).unwrap();
    assert_eq!(ImaSignature::parse(&sig).unwrap().key_id, KeyId(0x5ca1ab1e));
    let mut ring = Keyring::new();
    assert_eq!(ring.add_certificate_der(&der).unwrap(), KeyId(0x5ca1ab1e));
    let digest = file_digest("sha256", b"signed under a chosen key id");
    verify(&ring, "sha256", &digest, &sig).unwrap();
    // The bare public key has the hash id, not the SKID: no key found.
    let spki = run(tool("openssl")
        .args(["pkey", "-pubout", "-outform", "DER", "-in"])
        .arg(&key))
    .stdout;
    let mut bare = Keyring::new();
    let bare_id = bare.add_public_key_der(&spki).unwrap();
    assert_ne!(bare_id, KeyId(0x5ca1ab1e));
    assert_eq!(
        verify(&bare, "sha256", &digest, &sig),
        Err(SignatureError::UnknownKey {
            key_id: KeyId(0x5ca1ab1e)
        })
    );
}
