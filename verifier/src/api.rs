//! gRPC services: convert protobuf messages to the service's inputs, run the
//! flow on a blocking thread (it does crypto and durable writes), and map
//! errors to status codes.

use std::sync::Arc;

use assay_proto::v1 as pb;
use tonic::{Request, Response, Status};

use crate::roles::{Caller, Role, Rpc};
use crate::service::{now_unix, AttestInput, ServiceError, Verifier};
use tracing::warn;

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

pub(crate) async fn blocking<T: Send + 'static>(
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

/// Records an operator's state-changing action in the history (kind `admin`,
/// claim `admin.action`), durably, before the action is acknowledged.
async fn record_admin(
    v: &Arc<Verifier>,
    caller: &Caller,
    node_id: String,
    what: String,
) -> Result<(), Status> {
    let claim = assay_core::verdict::Claim::new(
        "admin.action",
        true,
        "an operator's request",
        format!("{what} (by {}, {})", caller.subject, caller.role),
        "Tokens.Revoke",
    );
    blocking(v, move |v| {
        v.store
            .append_history(crate::store::HistoryRecord {
                seq: 0,
                node_id,
                time_unix: now_unix(),
                passed: true,
                claims: vec![claim],
                policy_name: v.policy.name.clone(),
                policy_digest: v.policy.digest_hex(),
                evidence_digest: String::new(),
                prev_hash: String::new(),
                kind: "admin".into(),
            })
            .map(drop)
            .map_err(Into::into)
    })
    .await
}

impl Api {
    /// The caller of `req`, if it may call `rpc` (as `node_id`, for nodes).
    /// With `tls.no_client_auth` every caller may call everything.
    fn authorize<T>(
        &self,
        req: &Request<T>,
        rpc: Rpc,
        node_id: Option<&str>,
    ) -> Result<Caller, Status> {
        if self.0.config.client_ca.is_none() {
            return Ok(Caller {
                role: Role::Operator,
                subject: "unauthenticated (tls.no_client_auth)".into(),
            });
        }
        let certs = req.peer_certs();
        let leaf = certs.as_ref().and_then(|c| c.first()).map(|c| c.as_ref());
        let caller = crate::roles::caller(leaf)?;
        crate::roles::authorize(&caller, rpc, node_id).inspect_err(|e| {
            warn!(caller = %caller.subject, role = %caller.role, ?rpc, reason = e.message(), "refused");
        })?;
        Ok(caller)
    }
}

#[tonic::async_trait]
impl pb::attestation_server::Attestation for Api {
    async fn enroll(
        &self,
        req: Request<pb::EnrollRequest>,
    ) -> Result<Response<pb::EnrollResponse>, Status> {
        self.authorize(&req, Rpc::Enroll, Some(&req.get_ref().node_id))?;
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
        self.authorize(&req, Rpc::Activate, Some(&req.get_ref().node_id))?;
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
        self.authorize(&req, Rpc::Challenge, Some(&req.get_ref().node_id))?;
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
        self.authorize(&req, Rpc::Attest, Some(&req.get_ref().node_id))?;
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
        let (grant, join_error) = crate::membership::after_verdict(&self.0, &node_id, &out).await;
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

#[tonic::async_trait]
impl pb::tokens_server::Tokens for Api {
    async fn redeem(
        &self,
        req: Request<pb::RedeemRequest>,
    ) -> Result<Response<pb::RedeemResponse>, Status> {
        self.authorize(&req, Rpc::Redeem, None)?;
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
        req: Request<pb::JwksRequest>,
    ) -> Result<Response<pb::JwksResponse>, Status> {
        self.authorize(&req, Rpc::Jwks, None)?;
        Ok(Response::new(pb::JwksResponse {
            jwks_json: self.0.tokens.jwks_json(),
        }))
    }

    async fn list(
        &self,
        req: Request<pb::ListTokensRequest>,
    ) -> Result<Response<pb::ListTokensResponse>, Status> {
        self.authorize(&req, Rpc::ListTokens, None)?;
        let r = req.into_inner();
        let limit = match r.limit {
            0 => 100,
            n => (n as usize).min(MAX_HISTORY_LIMIT),
        };
        let node = (!r.node_id.is_empty()).then_some(r.node_id);
        let now = now_unix();
        let toks = blocking(&self.0, move |v| {
            Ok(v.store.tokens(node.as_deref(), !r.all, now, limit)?)
        })
        .await?;
        Ok(Response::new(pb::ListTokensResponse {
            tokens: toks
                .into_iter()
                .map(|(id, t)| pb::TokenInfo {
                    state: t.state(now).to_string(),
                    id,
                    node_id: t.node_id,
                    ak_name: t.ak_name,
                    issued_unix: t.issued_unix,
                    expires_unix: t.expires_unix,
                })
                .collect(),
        }))
    }

    async fn revoke(
        &self,
        req: Request<pb::RevokeTokensRequest>,
    ) -> Result<Response<pb::RevokeTokensResponse>, Status> {
        let caller = self.authorize(&req, Rpc::RevokeTokens, None)?;
        use crate::store::{RevokeOne, MIN_TOKEN_ID_PREFIX};
        let r = req.into_inner();
        match (r.id.is_empty(), r.node_id.is_empty()) {
            (false, true) => {
                let id = r.id.trim().to_ascii_lowercase();
                if id.len() < MIN_TOKEN_ID_PREFIX
                    || id.len() > 64
                    || !id.bytes().all(|b| b.is_ascii_hexdigit())
                {
                    return Err(Status::invalid_argument(format!(
                        "token id: {MIN_TOKEN_ID_PREFIX} to 64 hex digits (see `tokens list`)"
                    )));
                }
                let out = blocking(&self.0, move |v| Ok(v.store.revoke_token(&id)?)).await?;
                match out {
                    RevokeOne::Revoked(t) => {
                        warn!(node_id = %t.node_id, id = %r.id, by = %caller.subject, "token revoked by request");
                        record_admin(
                            &self.0,
                            &caller,
                            t.node_id.clone(),
                            format!("revoked token {}", r.id),
                        )
                        .await?;
                        Ok(Response::new(pb::RevokeTokensResponse {
                            revoked: 1,
                            actions: Vec::new(),
                        }))
                    }
                    RevokeOne::Spent(t) => Err(Status::failed_precondition(format!(
                        "token {} is already {}",
                        r.id,
                        t.state(now_unix())
                    ))),
                    RevokeOne::NotFound => {
                        Err(Status::not_found(format!("no token with id {}", r.id)))
                    }
                    RevokeOne::Ambiguous(n) => Err(Status::invalid_argument(format!(
                        "{n} tokens have ids starting with {}; give more digits",
                        r.id
                    ))),
                }
            }
            (true, false) => {
                let node = r.node_id.clone();
                let n = blocking(&self.0, move |v| Ok(v.store.revoke_node_tokens(&node)?)).await?;
                let actions = self.0.join.revoke(&r.node_id).await.map_err(|e| {
                    Status::unavailable(format!(
                        "{n} token(s) revoked, but the {} grants could not be revoked: {e}",
                        self.0.join.name_for(&r.node_id)
                    ))
                })?;
                warn!(node_id = %r.node_id, revoked = n, ?actions, by = %caller.subject, "node's tokens revoked by request");
                record_admin(
                    &self.0,
                    &caller,
                    r.node_id.clone(),
                    format!(
                        "revoked {n} token(s) of the node; {}",
                        if actions.is_empty() {
                            "no orchestrator action".to_string()
                        } else {
                            actions.join("; ")
                        }
                    ),
                )
                .await?;
                Ok(Response::new(pb::RevokeTokensResponse {
                    revoked: n as u32,
                    actions,
                }))
            }
            _ => Err(Status::invalid_argument(
                "give exactly one of a token id and a node id",
            )),
        }
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
        self.authorize(&req, Rpc::History, None)?;
        let r = req.into_inner();
        let some = |s: String| (!s.is_empty()).then_some(s);
        let q = crate::store::HistoryQuery {
            node_id: some(r.node_id),
            from_unix: (r.from_unix != 0).then_some(r.from_unix),
            to_unix: (r.to_unix != 0).then_some(r.to_unix),
            verdict: some(r.verdict.to_ascii_lowercase()),
            policy_digest: some(r.policy_digest.to_ascii_lowercase()),
            failed_claim: some(r.failed_claim),
            before_seq: (r.before_seq != 0).then_some(r.before_seq),
            limit: match r.limit {
                0 => 100,
                n => (n as usize).min(MAX_HISTORY_LIMIT),
            },
        };
        if let Some(v) = &q.verdict {
            if !["pass", "fail", "verdict", "stale", "webhook", "admin"].contains(&v.as_str()) {
                return Err(Status::invalid_argument(format!(
                    "verdict `{v}`: pass, fail, verdict, stale, webhook or admin"
                )));
            }
        }
        let (recs, next_before_seq) =
            blocking(&self.0, move |v| Ok(v.store.query_history(&q)?)).await?;
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
                    kind: h.kind,
                    claims: h.claims.iter().map(claim).collect(),
                })
                .collect(),
            next_before_seq,
        }))
    }

    async fn reverify(
        &self,
        req: Request<pb::ReverifyRequest>,
    ) -> Result<Response<pb::ReverifyResponse>, Status> {
        self.authorize(&req, Rpc::History, None)?;
        let seq = req.get_ref().seq;
        let r = blocking(&self.0, move |v| v.reverify(seq)).await?;
        Ok(Response::new(pb::ReverifyResponse {
            seq,
            node_id: r.record.node_id,
            recorded_passed: r.record.passed,
            reverified_passed: r.verdict.passed,
            differences: r.differences,
            not_rechecked: r.not_rechecked,
            claims: r.verdict.claims.iter().map(claim).collect(),
            policy_name: r.record.policy_name,
            policy_digest: r.record.policy_digest,
        }))
    }

    async fn fleet(
        &self,
        req: Request<pb::FleetRequest>,
    ) -> Result<Response<pb::FleetResponse>, Status> {
        self.authorize(&req, Rpc::History, None)?;
        let at = match req.get_ref().at_unix {
            0 => now_unix(),
            t => t,
        };
        let fleet = blocking(&self.0, move |v| Ok(v.store.fleet_at(at)?)).await?;
        Ok(Response::new(pb::FleetResponse {
            nodes: fleet
                .into_iter()
                .map(|(node_id, r)| match r {
                    None => pb::FleetEntry {
                        node_id,
                        state: "unknown".into(),
                        ..Default::default()
                    },
                    Some(r) => pb::FleetEntry {
                        node_id,
                        state: match (r.kind.as_str(), r.passed) {
                            ("stale", _) => "stale",
                            (_, true) => "pass",
                            (_, false) => "fail",
                        }
                        .into(),
                        seq: r.seq,
                        time_unix: r.time_unix,
                        policy_name: r.policy_name,
                        policy_digest: r.policy_digest,
                    },
                })
                .collect(),
        }))
    }

    async fn export(
        &self,
        req: Request<pb::ExportRequest>,
    ) -> Result<Response<pb::ExportResponse>, Status> {
        self.authorize(&req, Rpc::Export, None)?;
        let r = req.into_inner();
        let limit = match r.limit {
            0 => MAX_EXPORT_PAGE,
            n => (n as usize).min(MAX_EXPORT_PAGE),
        };
        let (records, checkpoints, next_seq) = blocking(&self.0, move |v| {
            let from = match (r.from_seq, r.from_unix) {
                (0, 0) => 1,
                (0, t) => match v.store.history_between(t, i64::MAX, 1)?.first() {
                    Some(first) => first.seq,
                    None => u64::MAX,
                },
                (s, _) => s,
            };
            // One more than the page, to know whether there is a next one.
            let mut found = v.store.history_found(from, limit + 1)?;
            let mut next = found.get(limit).map_or(0, |f| f.key_seq);
            found.truncate(limit);
            if r.to_unix > 0 {
                if let Some(cut) = found.iter().position(|f| f.record.time_unix > r.to_unix) {
                    found.truncate(cut);
                    next = 0;
                }
            }
            let (lo, hi) = (
                found.first().map_or(0, |f| f.key_seq),
                found.last().map_or(0, |f| f.key_seq),
            );
            // On the last page of a full export also those beyond it: they
            // reveal records cut off the end.
            let cp_hi = if next == 0 && r.to_unix == 0 {
                u64::MAX
            } else {
                hi
            };
            let cps: Vec<String> = v
                .store
                .checkpoints_between(lo, cp_hi)?
                .into_iter()
                .map(|c| serde_json::to_string(&c).unwrap_or_default())
                .collect();
            let recs: Vec<String> = found
                .into_iter()
                .map(|f| serde_json::to_string(&f.record).unwrap_or_default())
                .collect();
            Ok((recs, cps, next))
        })
        .await?;
        Ok(Response::new(pb::ExportResponse {
            records_json: records,
            checkpoints_json: checkpoints,
            jwks_json: self.0.tokens.jwks_json(),
            next_seq,
        }))
    }
}

/// Most records one export page carries.
pub const MAX_EXPORT_PAGE: usize = 10_000;
