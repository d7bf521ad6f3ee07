//! gRPC services: convert protobuf messages to the service's inputs, run the
//! flow on a blocking thread (it does crypto and durable writes), and map
//! errors to status codes.

use std::sync::Arc;

use assay_proto::v1 as pb;
use tonic::{Request, Response, Status};

use crate::join::IssueFor;
use crate::service::{AttestInput, AttestOutput, ServiceError, Verifier};
use crate::store::Quarantine;
use tracing::{info, warn};

fn status(e: ServiceError) -> Status {
    let msg = e.to_string();
    match e {
        ServiceError::BadRequest(_) => Status::invalid_argument(msg),
        ServiceError::EnrollRefused(_)
        | ServiceError::EkChanged(_)
        | ServiceError::ActivationFailed
        | ServiceError::Token(_) => Status::permission_denied(msg),
        ServiceError::EnrollmentUnknown(_) => Status::failed_precondition(msg),
        ServiceError::NotEnrolled(_) => Status::not_found(msg),
        ServiceError::Store(_) | ServiceError::Internal(_) => Status::internal(msg),
    }
}

async fn blocking<T: Send + 'static>(
    v: &Arc<Verifier>,
    f: impl FnOnce(&Verifier) -> Result<T, ServiceError> + Send + 'static,
) -> Result<T, Status> {
    let v = Arc::clone(v);
    tokio::task::spawn_blocking(move || f(&v))
        .await
        .map_err(|e| Status::internal(format!("worker failed: {e}")))?
        .map_err(status)
}

fn claim(c: &assay_core::verdict::Claim) -> pb::Claim {
    pb::Claim {
        id: c.id.clone(),
        passed: c.passed,
        expected: c.expected.clone(),
        actual: c.actual.clone(),
        location: c.location.clone(),
    }
}

#[derive(Clone)]
pub struct Api(pub Arc<Verifier>);

#[tonic::async_trait]
impl pb::attestation_server::Attestation for Api {
    async fn enroll(
        &self,
        req: Request<pb::EnrollRequest>,
    ) -> Result<Response<pb::EnrollResponse>, Status> {
        let r = req.into_inner();
        let out = blocking(&self.0, move |v| {
            v.enroll(&r.node_id, &r.ek_certificate, &r.ek_public, &r.ak_public)
        })
        .await?;
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
        let r = req.into_inner();
        let ak_name = blocking(&self.0, move |v| {
            v.activate(&r.node_id, &r.enrollment_id, &r.credential)
        })
        .await?;
        Ok(Response::new(pb::ActivateResponse { ak_name }))
    }

    async fn challenge(
        &self,
        req: Request<pb::ChallengeRequest>,
    ) -> Result<Response<pb::ChallengeResponse>, Status> {
        let r = req.into_inner();
        let c = blocking(&self.0, move |v| v.challenge(&r.node_id)).await?;
        Ok(Response::new(pb::ChallengeResponse {
            nonce: c.nonce,
            pcrs_sha256: c.pcrs_sha256,
            expires_unix: c.expires_unix,
            want_uefi_log: c.want_uefi_log,
            want_ima_log: c.want_ima_log,
            want_cel_log: c.want_cel_log,
        }))
    }

    async fn attest(
        &self,
        req: Request<pb::AttestRequest>,
    ) -> Result<Response<pb::AttestResponse>, Status> {
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
            log_notes: r.log_notes,
        };
        let node_id = input.node_id.clone();
        let out = blocking(&self.0, move |v| v.attest(&input)).await?;
        let (grant, join_error) = after_verdict(&self.0, &node_id, &out).await;
        Ok(Response::new(pb::AttestResponse {
            grant,
            join_error,
            verdict: Some(pb::Verdict {
                passed: out.verdict.passed,
                claims: out.verdict.claims.iter().map(claim).collect(),
                policy_name: out.policy_name,
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

/// After the verdict is durable: on a pass, restore a quarantined node and
/// issue its grant; on an authentic fail, revoke the node's tokens and isolate
/// it. An unauthenticated fail (bad signature, stale nonce: anyone can send
/// those in a node's name) changes nothing.
async fn after_verdict(
    v: &Arc<Verifier>,
    node_id: &str,
    out: &AttestOutput,
) -> (Option<pb::JoinGrant>, String) {
    if !out.verdict.passed {
        if out.authentic {
            if let Err(e) = quarantine(v, node_id).await {
                warn!(node_id, error = %e, "isolating the failed node did not complete; retrying");
            }
        }
        return (None, String::new());
    }
    let node = node_id.to_string();
    match blocking(v, move |v| Ok(v.store.quarantine(&node)?)).await {
        Ok(Some(_)) => match v.join.restore(node_id).await {
            Ok(done) => {
                let node = node_id.to_string();
                if let Err(e) = blocking(v, move |v| Ok(v.store.set_quarantine(&node, None)?)).await
                {
                    warn!(node_id, error = %e, "clearing the quarantine record failed");
                }
                info!(node_id, actions = ?done, "node passed again: restored");
            }
            Err(e) => {
                warn!(node_id, error = %e, "restoring the node failed; retried at its next pass")
            }
        },
        Ok(None) => {}
        Err(e) => warn!(node_id, error = %e, "reading the quarantine record failed"),
    }
    let Some((jws, jws_expires_unix)) = &out.token else {
        return (None, String::new());
    };
    let to = IssueFor {
        node_id,
        jws,
        jws_expires_unix: *jws_expires_unix,
        now_unix: crate::service::now_unix(),
    };
    match v.join.issue(to).await {
        Ok(g) => {
            info!(
                node_id,
                orchestrator = g.orchestrator,
                expires_unix = g.expires_unix,
                "join grant issued"
            );
            (
                Some(pb::JoinGrant {
                    orchestrator: g.orchestrator.to_string(),
                    token: g.token,
                    endpoint: g.endpoint,
                    ca_cert_hash: g.ca_cert_hash,
                    expires_unix: g.expires_unix,
                }),
                String::new(),
            )
        }
        Err(e) => {
            warn!(node_id, error = %e, orchestrator = v.join.name(), "join grant not issued");
            (
                None,
                format!(
                    "verdict PASS recorded (history seq {}), but the {} join grant could not be issued: {e}",
                    out.history_seq,
                    v.join.name()
                ),
            )
        }
    }
}

/// Revokes the node's outstanding tokens and has the orchestrator isolate it;
/// the quarantine is recorded first, so a failure here is retried by the upkeep task.
async fn quarantine(v: &Arc<Verifier>, node_id: &str) -> Result<(), String> {
    let node = node_id.to_string();
    let revoked = blocking(v, move |v| {
        let since_unix = match v.store.quarantine(&node)? {
            Some(q) => q.since_unix,
            None => crate::service::now_unix(),
        };
        v.store.set_quarantine(
            &node,
            Some(&Quarantine {
                since_unix,
                applied: false,
            }),
        )?;
        Ok(v.store.revoke_node_tokens(&node)?)
    })
    .await
    .map_err(|e| e.message().to_string())?;
    let done = v
        .join
        .quarantine(node_id)
        .await
        .map_err(|e| e.to_string())?;
    let node = node_id.to_string();
    blocking(v, move |v| {
        let since_unix = v
            .store
            .quarantine(&node)?
            .map_or_else(crate::service::now_unix, |q| q.since_unix);
        Ok(v.store.set_quarantine(
            &node,
            Some(&Quarantine {
                since_unix,
                applied: true,
            }),
        )?)
    })
    .await
    .map_err(|e| e.message().to_string())?;
    warn!(node_id, tokens_revoked = revoked, actions = ?done, "node failed attestation: isolated");
    Ok(())
}

/// Retries every isolation the orchestrator has not confirmed yet.
pub async fn retry_quarantines(v: &Arc<Verifier>) -> Result<(), String> {
    let pending = blocking(v, |v| Ok(v.store.unapplied_quarantines()?))
        .await
        .map_err(|e| e.message().to_string())?;
    for node in pending {
        quarantine(v, &node).await?;
    }
    Ok(())
}

#[tonic::async_trait]
impl pb::tokens_server::Tokens for Api {
    async fn redeem(
        &self,
        req: Request<pb::RedeemRequest>,
    ) -> Result<Response<pb::RedeemResponse>, Status> {
        let r = req.into_inner();
        let out = blocking(&self.0, move |v| v.redeem(&r.token, &r.node_id)).await?;
        Ok(Response::new(pb::RedeemResponse {
            node_id: out.node_id,
            ak_name: out.ak_name,
            expires_unix: out.expires_unix,
        }))
    }

    async fn jwks(
        &self,
        _req: Request<pb::JwksRequest>,
    ) -> Result<Response<pb::JwksResponse>, Status> {
        Ok(Response::new(pb::JwksResponse {
            jwks_json: self.0.tokens.jwks_json(),
        }))
    }
}

/// Most records one history query returns.
pub const MAX_HISTORY_LIMIT: usize = 10_000;

#[tonic::async_trait]
impl pb::history_server::History for Api {
    async fn query(
        &self,
        req: Request<pb::HistoryRequest>,
    ) -> Result<Response<pb::HistoryResponse>, Status> {
        let r = req.into_inner();
        let limit = match r.limit {
            0 => 100,
            n => (n as usize).min(MAX_HISTORY_LIMIT),
        };
        let node = (!r.node_id.is_empty()).then_some(r.node_id);
        let recs = blocking(&self.0, move |v| {
            Ok(v.store.history(node.as_deref(), limit)?)
        })
        .await?;
        Ok(Response::new(pb::HistoryResponse {
            records: recs
                .into_iter()
                .map(|h| pb::HistoryRecord {
                    seq: h.seq,
                    node_id: h.node_id,
                    time_unix: h.time_unix,
                    passed: h.passed,
                    failed_claims: h.claims.iter().filter(|c| !c.passed).map(claim).collect(),
                    policy_name: h.policy_name,
                    policy_digest: h.policy_digest,
                    evidence_digest: h.evidence_digest,
                    prev_hash: h.prev_hash,
                    claims: h.claims.iter().map(claim).collect(),
                })
                .collect(),
        }))
    }
}
