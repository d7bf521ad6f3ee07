//! Peer oracles for enrollment: a real TPM (swtpm) driven by tpm2-tools recovers
//! credentials that assay-core's software `make_credential` protected, and
//! assay-core accepts swtpm's real EK certificate chain (swtpm_localca) and the
//! EK/AK public areas tpm2-tools produce.

use std::time::{SystemTime, UNIX_EPOCH};

use assay_core::ek::{validate_ek_certificate, EkError, EkPublicKey, TrustAnchors};
use assay_core::enroll::{check_enrollment, EnrollError};
use assay_core::tpm::credential::{make_credential, CredentialKey};
use assay_core::tpm::public::parse_tpm2b_public;
use assay_tests::{Swtpm, TestCa};
use rand::RngCore;

struct Node {
    tpm: Swtpm,
    dir: tempfile::TempDir,
}

impl Node {
    fn new() -> Node {
        Node {
            tpm: Swtpm::start().expect("starting swtpm"),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn p(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.dir.path().join(name)).unwrap()
    }

    fn flush(&self) {
        self.tpm.tpm2("tpm2_flushcontext", &["-t"]).unwrap();
        self.tpm.tpm2("tpm2_flushcontext", &["-s"]).unwrap();
    }

    /// RSA EK (TCG default template) and an RSA AK under it, as `tpm2_createek` / `tpm2_createak` make them.
    fn create_keys(&self) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        self.create_keys_with("rsa")
    }

    /// The EK of tpm2_createek's template `ek_alg` (rsa, ecc: low range L-1/L-2; rsa3072,
    /// ecc384: high range H-6/H-3) and an RSA AK under it.
    fn create_keys_with(&self, ek_alg: &str) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        self.tpm
            .tpm2(
                "tpm2_createek",
                &[
                    "-c",
                    &self.p("ek.ctx"),
                    "-G",
                    ek_alg,
                    "-u",
                    &self.p("ek.pub"),
                ],
            )
            .unwrap();
        self.flush();
        self.tpm
            .tpm2(
                "tpm2_createak",
                &[
                    "-C",
                    &self.p("ek.ctx"),
                    "-c",
                    &self.p("ak.ctx"),
                    "-G",
                    "rsa",
                    "-g",
                    "sha256",
                    "-s",
                    "rsassa",
                    "-u",
                    &self.p("ak.pub"),
                    "-n",
                    &self.p("ak.name"),
                ],
            )
            .unwrap();
        self.flush();
        (
            self.read("ek.pub"),
            self.read("ak.pub"),
            self.read("ak.name"),
        )
    }

    /// The RSA EK certificate from NV index 0x01c00002, trimmed to its DER length.
    fn ek_certificate(&self) -> Vec<u8> {
        let nv = self.tpm.tpm2("tpm2_nvread", &["0x1c00002"]).unwrap();
        let len = der_len(&nv);
        nv[..len].to_vec()
    }

    /// `tpm2_activatecredential` with the EK authorised by a PolicySecret(endorsement) session.
    fn activate(&self, blob: &[u8], secret: &[u8]) -> anyhow::Result<Vec<u8>> {
        self.activate_as(blob, secret, true)
    }

    /// `tpm2_activatecredential`; the EK is authorised by a PolicySecret(endorsement)
    /// session (low range) or, for a high-range EK (userWithAuth), its empty authValue.
    fn activate_as(&self, blob: &[u8], secret: &[u8], policy: bool) -> anyhow::Result<Vec<u8>> {
        let mut file = Vec::new();
        file.extend_from_slice(&0xBADC_C0DEu32.to_be_bytes());
        file.extend_from_slice(&1u32.to_be_bytes());
        for part in [blob, secret] {
            file.extend_from_slice(&(part.len() as u16).to_be_bytes());
            file.extend_from_slice(part);
        }
        std::fs::write(self.p("cred.in"), file)?;
        let (ak, ek, cred_in, cred_out) = (
            self.p("ak.ctx"),
            self.p("ek.ctx"),
            self.p("cred.in"),
            self.p("cred.out"),
        );
        let mut args = vec!["-c", &ak, "-C", &ek, "-i", &cred_in, "-o", &cred_out];
        let session = self.p("session.ctx");
        let auth = format!("session:{session}");
        if policy {
            self.tpm.tpm2(
                "tpm2_startauthsession",
                &["--policy-session", "-S", &session],
            )?;
            self.tpm
                .tpm2("tpm2_policysecret", &["-S", &session, "-c", "e"])?;
            args.extend(["-P", &auth]);
        }
        let r = self.tpm.tpm2("tpm2_activatecredential", &args);
        self.flush();
        r?;
        Ok(self.read("cred.out"))
    }
}

fn der_len(b: &[u8]) -> usize {
    assert_eq!(b[0], 0x30, "DER SEQUENCE");
    match b[1] {
        n if n < 0x80 => 2 + n as usize,
        0x81 => 3 + b[2] as usize,
        0x82 => 4 + ((b[2] as usize) << 8 | b[3] as usize),
        other => panic!("unexpected DER length form {other:#x}"),
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn anchors_of(ca: &TestCa) -> TrustAnchors {
    let mut a = TrustAnchors::new();
    a.add_roots_pem(&std::fs::read(ca.root_cert_path()).unwrap())
        .unwrap();
    a.add_intermediates_pem(&std::fs::read(ca.issuer_cert_path()).unwrap())
        .unwrap();
    a
}

fn secret() -> Vec<u8> {
    let mut s = vec![0u8; 32];
    rand::thread_rng().fill_bytes(&mut s);
    s
}

#[test]
fn tpm2_activatecredential_recovers_assay_made_credential() {
    let node = Node::new();
    let (ek_pub, ak_pub, ak_name) = node.create_keys();
    let ek = CredentialKey::from_public(&parse_tpm2b_public(&ek_pub).unwrap()).unwrap();
    // Our computed AK name equals the one the TPM reports.
    assert_eq!(parse_tpm2b_public(&ak_pub).unwrap().name(), ak_name);

    for round in 0..3 {
        let s = secret();
        let made = make_credential(&ek, &ak_name, &s, &mut rand::rngs::OsRng).unwrap();
        let got = node
            .activate(&made.credential_blob, &made.encrypted_secret)
            .unwrap();
        assert_eq!(got, s, "round {round}");
    }
}

/// Every EK template tpm2-tools makes: the TPM recovers what assay-core protected
/// (RSA-OAEP with SHA-384 for RSA-3072; ECDH + KDFe for the curves; AES-256 in the
/// high range), and refuses it under another name.
#[test]
fn tpm2_activatecredential_recovers_assay_made_credential_for_every_ek_template() {
    let node = Node::new();
    for (alg, high_range) in [("ecc", false), ("ecc384", true), ("rsa3072", true)] {
        let (ek_pub, ak_pub, ak_name) = node.create_keys_with(alg);
        let ek = CredentialKey::from_public(&parse_tpm2b_public(&ek_pub).unwrap()).unwrap();
        assert_eq!(
            parse_tpm2b_public(&ak_pub).unwrap().name(),
            ak_name,
            "{alg}"
        );
        let s = secret();
        let made = make_credential(&ek, &ak_name, &s, &mut rand::rngs::OsRng).unwrap();
        let got = node
            .activate_as(&made.credential_blob, &made.encrypted_secret, !high_range)
            .unwrap_or_else(|e| panic!("{alg}: {e:#}"));
        assert_eq!(got, s, "{alg}");
        let mut other = ak_name.clone();
        *other.last_mut().unwrap() ^= 1;
        let made = make_credential(&ek, &other, &s, &mut rand::rngs::OsRng).unwrap();
        assert!(
            node.activate_as(&made.credential_blob, &made.encrypted_secret, !high_range)
                .is_err(),
            "{alg}: a credential for another name activated"
        );
    }
}

#[test]
fn tpm_refuses_credential_bound_to_another_name() {
    // The attack: the credential is bound to a name other than the loaded AK's (e.g. a
    // software key the node claims is in the TPM). The TPM's integrity check fails.
    let node = Node::new();
    let (ek_pub, _, ak_name) = node.create_keys();
    let ek = CredentialKey::from_public(&parse_tpm2b_public(&ek_pub).unwrap()).unwrap();
    let mut other = ak_name.clone();
    *other.last_mut().unwrap() ^= 1;
    let made = make_credential(&ek, &other, &secret(), &mut rand::rngs::OsRng).unwrap();
    let err = node
        .activate(&made.credential_blob, &made.encrypted_secret)
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("tpm2_activatecredential"),
        "{err:#}"
    );
}

#[test]
fn swtpm_ek_certificate_chains_to_its_local_ca() {
    let node = Node::new();
    let der = node.ek_certificate();
    let (ek_pub, ak_pub, _) = node.create_keys();
    let ca = TestCa::shared();
    let cert = validate_ek_certificate(&der, &anchors_of(ca), now()).unwrap();
    assert_eq!(cert.chain.len(), 2, "intermediate + root: {:?}", cert.chain);
    let EkPublicKey::Rsa { modulus, .. } = &cert.public_key else {
        panic!("RSA EK expected")
    };
    assert_eq!(modulus.len(), 256);

    // The full enrollment check passes for the real EK, its certificate and the real AK.
    let checked = check_enrollment(&der, &ek_pub, &ak_pub, &anchors_of(ca), now()).unwrap();
    assert_eq!(checked.ak_name, parse_tpm2b_public(&ak_pub).unwrap().name());

    // Without the intermediate configured, the chain does not reach the root.
    let mut roots_only = TrustAnchors::new();
    roots_only
        .add_roots_pem(&std::fs::read(ca.root_cert_path()).unwrap())
        .unwrap();
    assert!(matches!(
        validate_ek_certificate(&der, &roots_only, now()),
        Err(EkError::UntrustedIssuer { .. })
    ));
}

#[test]
fn enrollment_refuses_another_tpms_ek_certificate() {
    // The attack: a node presents a genuine EK certificate copied from another TPM, with
    // its own (different) EK public area, hoping to be trusted under that identity.
    let victim = Node::new();
    let stolen = victim.ek_certificate();
    let attacker = Node::new();
    let (ek_pub, ak_pub, _) = attacker.create_keys();
    let e = check_enrollment(
        &stolen,
        &ek_pub,
        &ak_pub,
        &anchors_of(TestCa::shared()),
        now(),
    )
    .unwrap_err();
    assert!(matches!(e, EnrollError::EkMismatch), "{e:?}");
}

#[test]
fn enrollment_refuses_tpm_from_unconfigured_ca() {
    // A swtpm certified by a CA nobody configured: a software TPM is not a vendor TPM.
    let rogue_ca = TestCa::new().unwrap();
    let rogue = Swtpm::start_with_ca(&rogue_ca).unwrap();
    let nv = rogue.tpm2("tpm2_nvread", &["0x1c00002"]).unwrap();
    let der = &nv[..der_len(&nv)];
    let e = validate_ek_certificate(der, &anchors_of(TestCa::shared()), now()).unwrap_err();
    // Both CAs are named by swtpm_localca alike, so the names match and the signature fails.
    assert!(
        matches!(
            e,
            EkError::BadSignature { .. } | EkError::UntrustedIssuer { .. }
        ),
        "{e:?}"
    );
    // And the rogue CA's own anchors accept it, so the refusal is about trust, not format.
    validate_ek_certificate(der, &anchors_of(&rogue_ca), now()).unwrap();
}

#[test]
fn enrollment_refuses_ak_that_is_not_a_restricted_signing_key() {
    // The attack: enrolling a non-restricted key as "AK"; it could sign a forged TPMS_ATTEST.
    let node = Node::new();
    let der = node.ek_certificate();
    // A real AK public area with `restricted` cleared: what a plain signing key looks like.
    let (ek_pub, ak_pub, _) = node.create_keys();
    let mut bad = ak_pub.clone();
    // TPM2B_PUBLIC: size(2) type(2) nameAlg(2) objectAttributes(4): bit 16 = restricted.
    let attrs = u32::from_be_bytes(bad[6..10].try_into().unwrap()) & !(1 << 16);
    bad[6..10].copy_from_slice(&attrs.to_be_bytes());
    let e =
        check_enrollment(&der, &ek_pub, &bad, &anchors_of(TestCa::shared()), now()).unwrap_err();
    assert!(matches!(e, EnrollError::Ak(_)), "{e:?}");
}

/// swtpm's P-384 EK certificate (0x01c00016) matches the EK tpm2_createek makes
/// from template H-3; another EK (the P-256 or RSA EK of the same TPM) sent with
/// it is refused: the certificate vouches for one key only.
#[test]
fn p384_ek_certificate_matches_only_its_own_key() {
    let node = Node::new();
    let nv = node.tpm.tpm2("tpm2_nvread", &["0x1c00016"]).unwrap();
    let der = nv[..der_len(&nv)].to_vec();
    let anchors = anchors_of(TestCa::shared());
    let (ek384, ak_pub, _) = node.create_keys_with("ecc384");
    let checked = check_enrollment(&der, &ek384, &ak_pub, &anchors, now()).unwrap();
    assert!(matches!(
        checked.ek_certificate.unwrap().public_key,
        EkPublicKey::Ecc { ref curve_oid, .. } if curve_oid == "1.3.132.0.34"
    ));
    for other in ["ecc", "rsa"] {
        let (ek, ak_pub, _) = node.create_keys_with(other);
        assert!(
            matches!(
                check_enrollment(&der, &ek, &ak_pub, &anchors, now()),
                Err(EnrollError::EkMismatch)
            ),
            "{other}"
        );
    }
}
