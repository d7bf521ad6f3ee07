//! Join issuers: what a node gets on a pass to join its orchestrator, and what
//! is done to its membership on a fail. One trait, one implementation per
//! orchestrator, chosen in the verifier's config (`[join] orchestrator`).
//!
//! - `token`: the verifier's signed JWS join token (bound to node id and AK, single use,
//!   checked with `Tokens.Redeem` or the JWKS) — for any orchestrator.
//! - `swarm`: Docker Swarm's worker join token, fetched from the manager's
//!   Engine API, rotated before it is handed out and again when its join
//!   window ends, so a leaked token dies; a failing node is drained.
//! - `kubeadm`: a Kubernetes bootstrap token Secret per pass, with the API
//!   endpoint and CA hash for `kubeadm join`; a failing node's tokens are
//!   deleted and its Node labelled and tainted NoExecute.
//!
//! The JWS is minted on every pass whatever the orchestrator (it is what
//! `assay-verifier token verify` checks), and revoked with every other
//! outstanding token of a node that fails.

mod config;
pub mod docker;
pub mod groups;
pub mod kubernetes;
pub mod swarm;

pub use self::config::{
    issuer, FileGroup, FileJoin, FileKubernetes, FileSwarm, JoinConfig, JoinGroup,
    DEFAULT_DOCKER_SOCKET, DEFAULT_SWARM_TOKEN_WINDOW_SECS,
};

use std::future::Future;
use std::pin::Pin;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("{0}")]
    Docker(#[from] docker::DockerError),
    #[error("{0}")]
    Orchestrator(String),
}

/// What a node that passed joins with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// `token`, `swarm`, `kubeadm`.
    pub orchestrator: &'static str,
    /// The secret the node joins with. Never logged.
    pub token: String,
    /// Where it joins: the Swarm manager's or the API server's `host:port`;
    /// empty for `token`.
    pub endpoint: String,
    /// `sha256:<hex>` of the cluster CA's public key, where the orchestrator pins one.
    pub ca_cert_hash: String,
    pub expires_unix: i64,
}

/// The node a grant is for, and the signed JWS minted for it.
pub struct IssueFor<'a> {
    pub node_id: &'a str,
    pub jws: &'a str,
    pub jws_expires_unix: i64,
    pub now_unix: i64,
    /// The passing verdict's history record and policy (`name@digest8`), for
    /// orchestrators that describe what they issue.
    pub history_seq: u64,
    pub policy: String,
}

/// One orchestrator's side of joining. Implementations are called after the
/// verdict is durably recorded; they must not log secrets.
pub trait JoinIssuer: Send + Sync {
    fn name(&self) -> &'static str;
    /// The orchestrator `node_id` joins (differs from `name` with node groups).
    fn name_for(&self, _node_id: &str) -> &'static str {
        self.name()
    }
    /// The `[join.groups]` group `node_id` is in (the first whose pattern
    /// matches; `None`: the default), which also picks its policy.
    fn group_of(&self, _node_id: &str) -> Option<&str> {
        None
    }
    /// On a pass: the grant the node joins with.
    fn issue<'a>(&'a self, to: IssueFor<'a>) -> BoxFuture<'a, Result<Grant, JoinError>>;
    /// On a fail: isolate the node (drain, taint, …). Returns what was done, for the log.
    fn quarantine<'a>(&'a self, node_id: &'a str) -> BoxFuture<'a, Result<Vec<String>, JoinError>>;
    /// An operator revokes a node's grants without isolating it (`tokens
    /// revoke --node`): grants the node could still join with stop working.
    fn revoke<'a>(&'a self, node_id: &'a str) -> BoxFuture<'a, Result<Vec<String>, JoinError>>;
    /// On a pass after a fail: undo what `quarantine` did, and only that.
    fn restore<'a>(&'a self, node_id: &'a str) -> BoxFuture<'a, Result<Vec<String>, JoinError>>;
    /// Called about once a second: expiry-driven upkeep (rotating a token whose window ended).
    fn tick(&self, now_unix: i64) -> BoxFuture<'_, Result<(), JoinError>>;
}

/// The verifier's signed JWS join token, for any orchestrator that checks it itself.
pub struct TokenIssuer;

impl JoinIssuer for TokenIssuer {
    fn name(&self) -> &'static str {
        "token"
    }

    fn issue<'a>(&'a self, to: IssueFor<'a>) -> BoxFuture<'a, Result<Grant, JoinError>> {
        Box::pin(async move {
            Ok(Grant {
                orchestrator: "token",
                token: to.jws.to_string(),
                endpoint: String::new(),
                ca_cert_hash: String::new(),
                expires_unix: to.jws_expires_unix,
            })
        })
    }

    fn quarantine<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Vec<String>, JoinError>> {
        // Revoking the node's JWS tokens is done for every orchestrator by the caller.
        Box::pin(async { Ok(Vec::new()) })
    }

    fn revoke<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Vec<String>, JoinError>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn restore<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Vec<String>, JoinError>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn tick(&self, _: i64) -> BoxFuture<'_, Result<(), JoinError>> {
        Box::pin(async { Ok(()) })
    }
}
