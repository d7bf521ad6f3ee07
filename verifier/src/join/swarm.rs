//! Docker Swarm: on a pass, the node gets the worker join token and the
//! manager's address; on a fail, it is drained.
//!
//! Swarm has one worker token at a time and cannot make it single-use or
//! per-node. What Assay does instead:
//! - the token is rotated before it is first handed out (a token that leaked
//!   earlier — from a log, a script, an image — dies) and again when its join
//!   window (`token_window_secs`) ends, so a handed-out token lives at most that
//!   long; nodes attesting within one window share it (all of them attested);
//! - it is rotated at start-up, since a window open before a restart is unknown;
//! - it is rotated at once when a node fails attestation while a window is open.
//!
//! Nodes are matched by hostname: the Assay node id must be the Swarm node's
//! hostname (the attestor's default node id). Draining sets the label
//! `assay.dev/drained=true`; restoring touches only nodes carrying it, so an
//! operator's own drain is left alone.

use std::time::Duration;

use serde::Deserialize;
use tokio::sync::Mutex;
use tracing::{info, warn};

use super::docker::Docker;
use super::{BoxFuture, Grant, IssueFor, JoinError, JoinIssuer};

/// Label set on nodes Assay drained.
pub const DRAINED_LABEL: &str = "assay.dev/drained";

#[derive(Debug, Clone)]
pub struct SwarmConfig {
    /// The manager's Engine API socket.
    pub socket: std::path::PathBuf,
    /// `host:port` nodes join at; default: the manager's own swarm address.
    pub manager_addr: Option<String>,
    /// How long a handed-out worker token lives before it is rotated.
    pub token_window: Duration,
}

struct Held {
    token: String,
    expires_unix: i64,
}

struct State {
    held: Option<Held>,
    /// Rotated since start-up.
    fresh: bool,
}

pub struct SwarmIssuer {
    docker: Docker,
    config: SwarmConfig,
    state: Mutex<State>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Version {
    index: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct JoinTokens {
    worker: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SwarmInspect {
    version: Version,
    spec: serde_json::Value,
    join_tokens: JoinTokens,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Info {
    swarm: InfoSwarm,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InfoSwarm {
    #[serde(default)]
    node_addr: String,
    #[serde(default)]
    control_available: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Node {
    #[serde(rename = "ID")]
    id: String,
    version: Version,
    spec: serde_json::Value,
    #[serde(default)]
    description: NodeDescription,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct NodeDescription {
    #[serde(default)]
    hostname: String,
}

impl SwarmIssuer {
    pub fn new(config: SwarmConfig) -> Self {
        Self {
            docker: Docker::new(config.socket.clone()),
            config,
            state: Mutex::new(State {
                held: None,
                fresh: false,
            }),
        }
    }

    /// Rotates the worker token and returns the new one.
    async fn rotate(&self) -> Result<String, JoinError> {
        let s: SwarmInspect = self.docker.get("/swarm").await?;
        self.docker
            .post(
                &format!(
                    "/swarm/update?version={}&rotateWorkerToken=true",
                    s.version.index
                ),
                &s.spec,
            )
            .await?;
        let after: SwarmInspect = self.docker.get("/swarm").await?;
        if after.join_tokens.worker == s.join_tokens.worker {
            return Err(JoinError::Orchestrator(
                "the Swarm manager accepted a worker token rotation but kept the old token".into(),
            ));
        }
        info!("swarm worker join token rotated");
        Ok(after.join_tokens.worker)
    }

    /// Rotates the worker token if one is out (the node may hold the open
    /// window's token: there is one per swarm, not one per node).
    async fn revoke_window(&self) -> Result<Vec<String>, JoinError> {
        let mut st = self.state.lock().await;
        if st.held.is_none() {
            return Ok(Vec::new());
        }
        self.rotate().await?;
        st.held = None;
        Ok(vec!["swarm worker join token rotated".to_string()])
    }

    async fn endpoint(&self) -> Result<String, JoinError> {
        if let Some(a) = &self.config.manager_addr {
            return Ok(a.clone());
        }
        let info: Info = self.docker.get("/info").await?;
        if !info.swarm.control_available || info.swarm.node_addr.is_empty() {
            return Err(JoinError::Orchestrator(format!(
                "the Docker daemon at {} is not a Swarm manager (run `docker swarm init`), or set join.swarm.manager_addr",
                self.config.socket.display()
            )));
        }
        Ok(format!("{}:2377", info.swarm.node_addr))
    }

    /// Drains every node whose hostname is `node_id` (labelling it), or sets
    /// active again those of them Assay drained. Returns what was changed.
    async fn set_availability(&self, node_id: &str, drain: bool) -> Result<Vec<String>, JoinError> {
        let nodes: Vec<Node> = self.docker.get("/nodes").await?;
        let mut done = Vec::new();
        for n in nodes
            .into_iter()
            .filter(|n| n.description.hostname == node_id)
        {
            let mut spec = n.spec;
            let labelled = spec
                .pointer(&format!("/Labels/{}", DRAINED_LABEL.replace('/', "~1")))
                .and_then(|v| v.as_str())
                == Some("true");
            let obj = spec.as_object_mut().ok_or_else(|| {
                JoinError::Orchestrator(format!("swarm node {}: spec is not an object", n.id))
            })?;
            let labels = obj.entry("Labels").or_insert_with(|| serde_json::json!({}));
            if labels.is_null() {
                *labels = serde_json::json!({});
            }
            let labels = labels.as_object_mut().ok_or_else(|| {
                JoinError::Orchestrator(format!("swarm node {}: labels are not an object", n.id))
            })?;
            if drain {
                labels.insert(DRAINED_LABEL.into(), "true".into());
                obj.insert("Availability".into(), "drain".into());
            } else {
                if !labelled {
                    continue;
                }
                labels.remove(DRAINED_LABEL);
                obj.insert("Availability".into(), "active".into());
            }
            self.docker
                .post(
                    &format!("/nodes/{}/update?version={}", n.id, n.version.index),
                    &spec,
                )
                .await?;
            done.push(format!(
                "swarm node {} ({node_id}) {}",
                n.id,
                if drain { "drained" } else { "set active" }
            ));
        }
        Ok(done)
    }
}

impl JoinIssuer for SwarmIssuer {
    fn name(&self) -> &'static str {
        "swarm"
    }

    fn issue<'a>(&'a self, to: IssueFor<'a>) -> BoxFuture<'a, Result<Grant, JoinError>> {
        Box::pin(async move {
            let endpoint = self.endpoint().await?;
            // Held across the rotation: concurrent passes share one window, never
            // rotate each other's token away.
            let mut st = self.state.lock().await;
            let (token, expires_unix) = match &st.held {
                Some(h) if h.expires_unix > to.now_unix => (h.token.clone(), h.expires_unix),
                _ => {
                    let token = self.rotate().await?;
                    let expires_unix = to.now_unix + self.config.token_window.as_secs() as i64;
                    st.held = Some(Held {
                        token: token.clone(),
                        expires_unix,
                    });
                    st.fresh = true;
                    (token, expires_unix)
                }
            };
            Ok(Grant {
                orchestrator: "swarm",
                token,
                endpoint,
                ca_cert_hash: String::new(),
                expires_unix,
            })
        })
    }

    fn quarantine<'a>(&'a self, node_id: &'a str) -> BoxFuture<'a, Result<Vec<String>, JoinError>> {
        Box::pin(async move {
            let mut done = self.revoke_window().await?;
            done.extend(self.set_availability(node_id, true).await?);
            Ok(done)
        })
    }

    fn revoke<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Vec<String>, JoinError>> {
        Box::pin(self.revoke_window())
    }

    fn restore<'a>(&'a self, node_id: &'a str) -> BoxFuture<'a, Result<Vec<String>, JoinError>> {
        Box::pin(self.set_availability(node_id, false))
    }

    fn tick(&self, now_unix: i64) -> BoxFuture<'_, Result<(), JoinError>> {
        Box::pin(async move {
            let mut st = self.state.lock().await;
            let expired = st.held.as_ref().is_some_and(|h| h.expires_unix <= now_unix);
            if expired || !st.fresh {
                self.rotate().await.inspect_err(
                    |e| warn!(error = %e, "rotating the swarm worker token failed; retrying"),
                )?;
                st.held = None;
                st.fresh = true;
            }
            Ok(())
        })
    }
}
