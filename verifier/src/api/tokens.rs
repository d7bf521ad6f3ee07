//! `Tokens`: Redeem, Jwks, List, Revoke.

use assay_proto::v1 as pb;
use tonic::{Code, Request, Response, Status};
use tracing::warn;

use super::{blocking, record_admin, Api, MAX_HISTORY_LIMIT};
use crate::clock::now_unix;
use crate::roles::Rpc;
use crate::store::{RevokeOne, MIN_TOKEN_ID_PREFIX};

#[tonic::async_trait]
impl pb::tokens_server::Tokens for Api {
    async fn redeem(
        &self,
        req: Request<pb::RedeemRequest>,
    ) -> Result<Response<pb::RedeemResponse>, Status> {
        self.authorize(&req, Rpc::Redeem, None)?;
        let r = req.into_inner();
        let out = blocking(&self.0, move |v| v.redeem(&r.token, &r.node_id)).await;
        crate::metrics::token_redeemed(match &out {
            Ok(_) => "ok",
            Err(s) if matches!(s.code(), Code::PermissionDenied | Code::InvalidArgument) => {
                "refused"
            }
            Err(_) => "error",
        });
        let out = out?;
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
                        crate::metrics::tokens_revoked(1);
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
                crate::metrics::tokens_revoked(n);
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
