//! Simulated nodes for load tests: software keys where a TPM would be,
//! speaking the real protocol to a real verifier over TLS.
//!
//! - A test-only EK CA (ECDSA P-256 root, made here) issues one RSA-2048 EK
//!   certificate per simulated node for one shared software EK key (RSA key
//!   generation is slow; the verifier binds node ids to certificates).
//! - Each node has its own software AK (ECDSA P-256 by default, RSA-2048 on
//!   request) whose `TPM2B_PUBLIC` is what `tpm2_createak` reports.
//! - Enrollment is the real path: `Enroll` → `TPM2_ActivateCredential` done
//!   in software from the spec (`testutil::activate_credential`) → `Activate`.
//! - Quotes are `TPMS_ATTEST` structures built and signed exactly as a TPM
//!   would: the AK's name as signer, the nonce as extraData, a clock that
//!   only moves forward, the PCR selection and digest of the values sent.
//!
//! It is a simulation of the TPM side only: everything the verifier does is
//! real. `tests/tests/simnode.rs` shows a simulated node passes, and that a
//! wrong PCR or a foreign AK fails, at a real verifier.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};
use assay_core::tpm::attest::{encode_quote_attest, Attest, ClockInfo, QuoteInfo};
use assay_core::tpm::pcr::{pcr_digest, PcrSelection};
use assay_core::tpm::public::HashAlg;
use assay_core::verify::testutil::{activate_credential, rsa_ek_public_bytes, TestAk};
use assay_proto::v1 as pb;
use pb::attestation_client::AttestationClient;
use rand::SeedableRng;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

/// The test-only EK CA and the shared software EK.
pub struct SoftEk {
    dir: tempfile::TempDir,
    ek: rsa::RsaPrivateKey,
    ek_public: Vec<u8>,
    ca_key: rcgen::KeyPair,
    ca_cert: rcgen::Certificate,
    ek_keypair: rcgen::KeyPair,
}

fn dn(cn: &str) -> rcgen::DistinguishedName {
    let mut d = rcgen::DistinguishedName::new();
    d.push(rcgen::DnType::CommonName, cn);
    d
}

impl SoftEk {
    /// A new CA (its root certificate in [`SoftEk::root_pem`]) and EK key.
    pub fn new() -> Result<Self> {
        use rsa::pkcs8::EncodePrivateKey;
        let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut p = rcgen::CertificateParams::default();
        p.distinguished_name = dn("assay simulated TPM vendor root (test only)");
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        p.not_before = rcgen::date_time_ymd(2025, 1, 1);
        p.not_after = rcgen::date_time_ymd(2045, 1, 1);
        let ca_cert = p.self_signed(&ca_key)?;
        let ek = rsa::RsaPrivateKey::new(&mut rand::rngs::StdRng::from_entropy(), 2048)?;
        let der = ek.to_pkcs8_der()?;
        let ek_keypair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
            &der.as_bytes().into(),
            &rcgen::PKCS_RSA_SHA256,
        )?;
        let ek_public = rsa_ek_public_bytes(&ek.to_public_key());
        let dir = tempfile::Builder::new()
            .prefix("assay-soft-ek-")
            .tempdir()?;
        std::fs::write(dir.path().join("root.pem"), ca_cert.pem())?;
        Ok(Self {
            dir,
            ek,
            ek_public,
            ca_key,
            ca_cert,
            ek_keypair,
        })
    }

    /// The CA's root certificate (for the verifier's `--ek-root`).
    pub fn root_pem(&self) -> PathBuf {
        self.dir.path().join("root.pem")
    }

    /// An EK certificate for `node` (end entity, keyEncipherment).
    pub fn certificate(&self, node: &str) -> Result<Vec<u8>> {
        let mut p = rcgen::CertificateParams::default();
        p.distinguished_name = dn(&format!("simulated TPM EK of {node}"));
        p.is_ca = rcgen::IsCa::ExplicitNoCa;
        p.key_usages = vec![rcgen::KeyUsagePurpose::KeyEncipherment];
        p.not_before = rcgen::date_time_ymd(2025, 1, 1);
        p.not_after = rcgen::date_time_ymd(2045, 1, 1);
        Ok(p.signed_by(&self.ek_keypair, &self.ca_cert, &self.ca_key)?
            .der()
            .to_vec())
    }
}

/// Which key type simulated AKs use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AkKind {
    /// ECDSA P-256 (fast to make and to sign with).
    P256,
    /// RSA-2048 RSASSA (what `tpm2_createak` makes by default; slow to make).
    Rsa,
}

/// One simulated node.
pub struct SimNode {
    pub id: String,
    ak: TestAk,
    ek_cert: Vec<u8>,
    /// TPM clock (ms): only moves forward.
    clock: AtomicU64,
    /// The sha256 PCR bank: PCR i holds `pcr_value(i)`, except where set.
    pub pcr_overrides: Vec<(u32, Vec<u8>)>,
    /// The UEFI event log sent with every quote, if any.
    pub uefi_log: Option<std::sync::Arc<Vec<u8>>>,
}

/// The value simulated PCR `i` holds.
pub fn pcr_value(i: u32) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(format!("assay simulated PCR {i}")).to_vec()
}

/// A policy requiring `pcrs` to hold [`pcr_value`].
pub fn golden_policy(pcrs: &[u32]) -> String {
    let mut p = String::from("schema = 0\nname = \"simulated-fleet\"\n[pcrs.sha256]\n");
    for i in pcrs {
        p.push_str(&format!("{i} = \"{}\"\n", hex::encode(pcr_value(*i))));
    }
    p
}

impl SimNode {
    pub fn new(id: impl Into<String>, kind: AkKind, ek: &SoftEk) -> Result<Self> {
        let id = id.into();
        let mut rng = rand::rngs::StdRng::from_entropy();
        let ak = match kind {
            AkKind::P256 => TestAk::p256(p256::ecdsa::SigningKey::random(&mut rng)),
            AkKind::Rsa => TestAk::rsa(
                rsa::RsaPrivateKey::new(&mut rng, 2048)?,
                assay_core::tpm::public::TPM_ALG_RSASSA,
            ),
        };
        Ok(Self {
            ek_cert: ek.certificate(&id)?,
            id,
            ak,
            clock: AtomicU64::new(1_000_000),
            pcr_overrides: Vec::new(),
            uefi_log: None,
        })
    }

    /// Enrolls through the real path: `Enroll`, software credential
    /// activation with the EK, `Activate`.
    /// The hex SHA-256 of its EK certificate (what `node add --ek-sha256` registers).
    pub fn ek_cert_sha256(&self) -> String {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&self.ek_cert))
    }

    pub async fn enroll(&self, ek: &SoftEk, c: &mut AttestationClient<Channel>) -> Result<()> {
        let r = c
            .enroll(pb::EnrollRequest {
                node_id: self.id.clone(),
                ek_certificate: self.ek_cert.clone(),
                ek_public: ek.ek_public.clone(),
                ak_public: self.ak.public_bytes(),
                ek_chain: Vec::new(),
            })
            .await
            .with_context(|| format!("{}: Enroll", self.id))?
            .into_inner();
        let credential = activate_credential(
            &ek.ek,
            &self.ak.public().name(),
            &r.credential_blob,
            &r.encrypted_secret,
        )
        .map_err(|e| anyhow::anyhow!("{}: ActivateCredential: {e}", self.id))?;
        c.activate(pb::ActivateRequest {
            node_id: self.id.clone(),
            enrollment_id: r.enrollment_id,
            credential,
        })
        .await
        .with_context(|| format!("{}: Activate", self.id))?;
        Ok(())
    }

    /// The node's answer to a challenge: a quote over the PCRs asked for,
    /// signed by its AK, and their values.
    pub fn answer(&self, chal: &pb::ChallengeResponse) -> pb::AttestRequest {
        let values: Vec<(u32, Vec<u8>)> = chal
            .pcrs_sha256
            .iter()
            .map(|i| {
                let v = self
                    .pcr_overrides
                    .iter()
                    .find(|(j, _)| j == i)
                    .map_or_else(|| pcr_value(*i), |(_, v)| v.clone());
                (*i, v)
            })
            .collect();
        let refs: Vec<&[u8]> = values.iter().map(|(_, v)| v.as_slice()).collect();
        let attest = Attest {
            qualified_signer: self.ak.public().name(),
            extra_data: chal.nonce.clone(),
            clock_info: ClockInfo {
                clock: self.clock.fetch_add(1000, Ordering::Relaxed),
                reset_count: 1,
                restart_count: 0,
                safe: true,
            },
            firmware_version: 0x2025_0101,
            quote: QuoteInfo {
                pcr_select: PcrSelection::sha256_only(&chal.pcrs_sha256),
                pcr_digest: pcr_digest(HashAlg::Sha256, &refs),
            },
        };
        let attest = encode_quote_attest(&attest);
        let signature = self
            .ak
            .sign(&mut rand::rngs::StdRng::from_entropy(), &attest);
        pb::AttestRequest {
            node_id: self.id.clone(),
            nonce: chal.nonce.clone(),
            attest,
            signature,
            pcrs_sha256: values
                .into_iter()
                .map(|(index, digest)| pb::PcrValue { index, digest })
                .collect(),
            uefi_log: self.uefi_log.as_ref().map(|l| l.to_vec()),
            ..Default::default()
        }
    }

    /// Challenge, quote, attest: one attestation.
    pub async fn attest(&self, c: &mut AttestationClient<Channel>) -> Result<pb::AttestResponse> {
        let chal = c
            .challenge(pb::ChallengeRequest {
                node_id: self.id.clone(),
            })
            .await
            .with_context(|| format!("{}: Challenge", self.id))?
            .into_inner();
        Ok(c.attest(self.answer(&chal))
            .await
            .with_context(|| format!("{}: Attest", self.id))?
            .into_inner())
    }
}

/// A TLS channel to a verifier at `url` whose certificate `ca_pem` signed.
pub async fn channel(url: &str, ca_pem: &std::path::Path) -> Result<Channel> {
    let ca = std::fs::read(ca_pem)?;
    let uri: tonic::transport::Uri = url.parse()?;
    let host = uri.host().unwrap_or("localhost").trim_matches(['[', ']']);
    Ok(Channel::builder(uri.clone())
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(ca))
                .domain_name(host),
        )?
        .connect()
        .await?)
}
