//! `Attestation`: Enroll, Activate, Challenge, Attest (the node-facing RPCs).

use assay_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::{blocking, claim, Api};
use crate::roles::Rpc;
use crate::service::AttestInput;

#[tonic::async_trait]
impl pb::attestation_server::Attestation for Api {
    async fn enroll(
        &self,
        req: Request<pb::EnrollRequest>,
    ) -> Result<Response<pb::EnrollResponse>, Status> {
        self.authorize(&req, Rpc::Enroll, Some(&req.get_ref().node_id))?;
        self.admit(&req, &req.get_ref().node_id)?;
        let r = req.into_inner();
        let start = std::time::Instant::now();
        let out = blocking(&self.0, move |v| {
            v.enroll(
                &r.node_id,
                &r.ek_certificate,
                &r.ek_chain,
                &r.ek_public,
                &r.ak_public,
            )
        })
        .await;
        crate::metrics::enroll_latency("enroll", out.is_ok(), start.elapsed());
        let out = out?;
        Ok(Response::new(pb::EnrollResponse {
            enrollment_id: out.enrollment_id,
            credential_blob: out.credential_blob,
            encrypted_secret: out.encrypted_secret,
        }))
    }

    async fn activate(
        &self,
        req: Request<pb::ActivateRequest>,
    ) -> Result<Response<pb::ActivateResponse>, Status> {
        self.authorize(&req, Rpc::Activate, Some(&req.get_ref().node_id))?;
        self.admit(&req, &req.get_ref().node_id)?;
        let r = req.into_inner();
        let start = std::time::Instant::now();
        let ak_name = blocking(&self.0, move |v| {
            v.activate(&r.node_id, &r.enrollment_id, &r.credential)
        })
        .await;
        crate::metrics::enroll_latency("activate", ak_name.is_ok(), start.elapsed());
        let ak_name = ak_name?;
        Ok(Response::new(pb::ActivateResponse { ak_name }))
    }

    async fn challenge(
        &self,
        req: Request<pb::ChallengeRequest>,
    ) -> Result<Response<pb::ChallengeResponse>, Status> {
        self.authorize(&req, Rpc::Challenge, Some(&req.get_ref().node_id))?;
        let source = self.admit(&req, &req.get_ref().node_id)?;
        let r = req.into_inner();
        let c = blocking(&self.0, move |v| v.challenge(&r.node_id, source)).await?;
        Ok(Response::new(pb::ChallengeResponse {
            nonce: c.nonce,
            pcrs_sha256: c.pcrs_sha256,
            expires_unix: c.expires_unix,
            want_uefi_log: c.want_uefi_log,
            want_ima_log: c.want_ima_log,
            want_cel_log: c.want_cel_log,
            ima_resume: c.ima_resume.map(|r| pb::ImaResume {
                from_entry: r.entries,
                reset_count: r.reset_count,
                restart_count: r.restart_count,
                first_template_hash: hex::decode(&r.first_template_hash).unwrap_or_default(),
            }),
        }))
    }

    async fn attest(
        &self,
        req: Request<pb::AttestRequest>,
    ) -> Result<Response<pb::AttestResponse>, Status> {
        self.authorize(&req, Rpc::Attest, Some(&req.get_ref().node_id))?;
        let source = self.admit(&req, &req.get_ref().node_id)?;
        let r = req.into_inner();
        let input = AttestInput {
            node_id: r.node_id,
            nonce: r.nonce,
            attest: r.attest,
            signature: r.signature,
            pcrs_sha256: r
                .pcrs_sha256
                .into_iter()
                .map(|p| (p.index, p.digest))
                .collect(),
            uefi_log: r.uefi_log,
            ima_log: r.ima_log,
            cel_log: r.cel_log,
            ima_first_entry: r.ima_first_entry,
            log_notes: r.log_notes,
            source,
        };
        let node_id = input.node_id.clone();
        let start = std::time::Instant::now();
        let out = blocking(&self.0, move |v| v.attest(&input)).await;
        let out = match out {
            Ok(out) => out,
            Err(e) => {
                crate::metrics::attest_latency("error", start.elapsed());
                return Err(e);
            }
        };
        let (grant, join_error) = crate::membership::after_verdict(&self.0, &node_id, &out).await;
        crate::metrics::attest_latency(
            match (out.authentic, out.verdict.passed) {
                (false, _) => "unauthenticated",
                (true, true) => "pass",
                (true, false) => "fail",
            },
            start.elapsed(),
        );
        Ok(Response::new(pb::AttestResponse {
            grant: grant.map(|g| pb::JoinGrant {
                orchestrator: g.orchestrator.to_string(),
                token: g.token,
                endpoint: g.endpoint,
                ca_cert_hash: g.ca_cert_hash,
                expires_unix: g.expires_unix,
            }),
            join_error,
            verdict: Some(pb::Verdict {
                passed: out.verdict.passed,
                claims: out.verdict.claims.iter().map(claim).collect(),
                policy_name: out.policy_name,
                policy_version: out.policy_version,
                policy_digest: out.verdict.policy_digest,
                evidence_digest: out.verdict.evidence_digest,
                history_seq: out.history_seq,
            }),
            join_token: out.token.map(|(token, expires_unix)| pb::JoinToken {
                token,
                expires_unix,
            }),
        }))
    }
}
