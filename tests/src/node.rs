//! A test node driven through the attestor's library flow with a real swtpm:
//! enroll, challenge, quote, send — each step separately, so tests can move
//! a request between verifiers or tamper with exactly one thing.

use std::process::Output;

use assay_attestor::config::Config;
use assay_attestor::flow;
use assay_attestor::tpm::Tpm;
use assay_proto::v1 as pb;
use tempfile::TempDir;

use crate::{attestor, Swtpm, VerifierProc};

pub struct Node {
    pub tpm: Swtpm,
    pub state: TempDir,
    pub id: String,
}

impl Node {
    pub fn new(id: &str) -> Self {
        Self {
            tpm: Swtpm::start().expect("swtpm"),
            state: tempfile::tempdir().unwrap(),
            id: id.into(),
        }
    }

    pub fn config(&self, v: &VerifierProc) -> Config {
        Config {
            tcti: self.tpm.tcti(),
            ek: assay_attestor::tpm::EkChoice::Auto,
            ek_fetch: None,
            state_dir: self.state.path().to_path_buf(),
            verifier: v.url.clone(),
            ca: v.ca_pem.clone(),
            node_id: self.id.clone(),
            retries: 0,
            uefi_log: "/nonexistent/uefi".into(),
            ima_log: "/nonexistent/ima".into(),
            max_uefi_log_bytes: 1 << 20,
            max_ima_log_bytes: 1 << 20,
            cel_log: self.state.path().join("measurements.cel"),
            cel_pcr: 13,
            runtime_files: vec![],
            containerd_socket: "/nonexistent/containerd.sock".into(),
            containerd_namespaces: vec![],
            attest_interval_secs: 300,
            metrics_listen: None,
        }
    }

    pub fn run(&self, v: &VerifierProc, sub: &str, extra: &[&str]) -> Output {
        attestor(&self.tpm, v, self.state.path(), &self.id, sub, extra).unwrap()
    }

    /// Enrolls through the attestor's own flow (EK cert, AK, credential activation).
    pub async fn enroll(&self, v: &VerifierProc) {
        let cfg = self.config(v);
        let mut tpm = Tpm::open(&cfg.tcti).unwrap();
        let ch = flow::connect(&cfg).await.unwrap();
        flow::enroll(&cfg, &mut tpm, ch).await.unwrap();
    }

    pub async fn client(
        &self,
        v: &VerifierProc,
    ) -> pb::attestation_client::AttestationClient<tonic::transport::Channel> {
        pb::attestation_client::AttestationClient::new(
            flow::connect(&self.config(v)).await.unwrap(),
        )
    }

    /// Challenge + real quote; returns the request, untampered.
    pub async fn quoted_request(&self, v: &VerifierProc) -> pb::AttestRequest {
        let mut c = self.client(v).await;
        let chal = c
            .challenge(pb::ChallengeRequest {
                node_id: self.id.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        self.quote_for(&chal.nonce, &chal.pcrs_sha256)
    }

    pub fn quote_for(&self, nonce: &[u8], pcrs: &[u32]) -> pb::AttestRequest {
        let mut tpm = Tpm::open(&self.tpm.tcti()).unwrap();
        let q = tpm.quote(self.state.path(), nonce, pcrs).unwrap();
        pb::AttestRequest {
            node_id: self.id.clone(),
            nonce: nonce.to_vec(),
            attest: q.attest,
            signature: q.signature,
            pcrs_sha256: q
                .pcrs_sha256
                .into_iter()
                .map(|(index, digest)| pb::PcrValue { index, digest })
                .collect(),
            ..Default::default()
        }
    }

    pub async fn send(&self, v: &VerifierProc, req: pb::AttestRequest) -> pb::AttestResponse {
        self.client(v).await.attest(req).await.unwrap().into_inner()
    }
}
