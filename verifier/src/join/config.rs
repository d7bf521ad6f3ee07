//! The `[join]` section: which orchestrator nodes join (the default and per
//! node group), and how to reach it; and the issuer built from it.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;

use super::{groups, kubernetes, swarm, JoinIssuer, TokenIssuer};
use crate::setting::{host_port, secs, InvalidKey};

/// `[join]`: which orchestrator nodes join, and how to reach it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileJoin {
    /// `token` (default) or `swarm`.
    pub orchestrator: Option<String>,
    #[serde(default)]
    pub swarm: FileSwarm,
    #[serde(default)]
    pub kubernetes: FileKubernetes,
    /// Node groups with their own orchestrator (first match wins).
    #[serde(default)]
    pub groups: Vec<FileGroup>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileGroup {
    pub name: String,
    /// Regular expression over node ids, anchored at both ends.
    pub nodes: String,
    /// `token`, `swarm` or `kubeadm` (settings from `[join.swarm]`/`[join.kubernetes]`).
    pub orchestrator: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileKubernetes {
    /// `https://host:port` of the API server.
    pub api_server: Option<String>,
    /// The cluster CA certificate (PEM), e.g. /etc/kubernetes/pki/ca.crt.
    pub ca: Option<PathBuf>,
    /// Bearer token file (a ServiceAccount token).
    pub token_file: Option<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// `host:port` for `kubeadm join` (default: the API server's).
    pub join_endpoint: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSwarm {
    /// The manager's Engine API: `unix:///var/run/docker.sock` (default) or a path.
    pub docker_host: Option<String>,
    /// `host:port` nodes join at; default: the manager's own swarm address.
    pub manager_addr: Option<String>,
    /// How long a handed-out worker token lives before it is rotated (default 120).
    pub token_window_secs: Option<u64>,
}

/// A node group and the orchestrator its nodes join.
#[derive(Debug, Clone)]
pub struct JoinGroup {
    pub name: String,
    /// The `nodes` pattern as written (compiled and checked at load).
    pub nodes: String,
    pub join: JoinConfig,
}

/// The orchestrator nodes join.
#[derive(Debug, Clone)]
pub enum JoinConfig {
    /// The signed JWS only.
    Token,
    Swarm(swarm::SwarmConfig),
    Kubernetes(kubernetes::KubernetesConfig),
}

pub const DEFAULT_DOCKER_SOCKET: &str = "/var/run/docker.sock";
pub const DEFAULT_SWARM_TOKEN_WINDOW_SECS: u64 = 120;

impl FileJoin {
    /// The default orchestrator (`[join] orchestrator`).
    pub fn default_join(&self) -> Result<JoinConfig, InvalidKey> {
        self.join_config(self.orchestrator.as_deref())
    }

    /// The node groups (`[[join.groups]]`), each checked.
    pub fn groups(&self) -> Result<Vec<JoinGroup>, InvalidKey> {
        let mut out: Vec<JoinGroup> = Vec::new();
        for g in &self.groups {
            if g.name.is_empty() || out.iter().any(|o| o.name == g.name) {
                return Err(InvalidKey::new(
                    "join.groups.name",
                    format!("`{}`: every group needs a distinct, non-empty name", g.name),
                ));
            }
            groups::node_pattern(&g.nodes).map_err(|e| {
                InvalidKey::new("join.groups.nodes", format!("group `{}`: {e}", g.name))
            })?;
            out.push(JoinGroup {
                name: g.name.clone(),
                nodes: g.nodes.clone(),
                join: self.join_config(Some(&g.orchestrator))?,
            });
        }
        Ok(out)
    }

    fn join_config(&self, kind: Option<&str>) -> Result<JoinConfig, InvalidKey> {
        match kind.unwrap_or("token") {
            "token" => Ok(JoinConfig::Token),
            "swarm" => self.swarm.validate().map(JoinConfig::Swarm),
            "kubeadm" => self.kubernetes.validate().map(JoinConfig::Kubernetes),
            other => Err(InvalidKey::new(
                "join.orchestrator",
                format!("`{other}`: expected `token`, `swarm` or `kubeadm`"),
            )),
        }
    }
}

impl FileSwarm {
    fn validate(&self) -> Result<swarm::SwarmConfig, InvalidKey> {
        let host = self
            .docker_host
            .clone()
            .unwrap_or_else(|| DEFAULT_DOCKER_SOCKET.to_string());
        let socket = match host.strip_prefix("unix://") {
            Some(p) => PathBuf::from(p),
            None if host.starts_with('/') => PathBuf::from(&host),
            None => {
                return Err(InvalidKey::new(
                    "join.swarm.docker_host",
                    format!(
                        "`{host}`: only the manager's Unix socket is supported \
                         (`unix:///var/run/docker.sock`); an unauthenticated TCP Docker API \
                         is root on the manager"
                    ),
                ))
            }
        };
        if let Some(a) = &self.manager_addr {
            host_port("join.swarm.manager_addr", a)?;
        }
        Ok(swarm::SwarmConfig {
            socket,
            manager_addr: self.manager_addr.clone(),
            token_window: secs(
                "join.swarm.token_window_secs",
                self.token_window_secs,
                DEFAULT_SWARM_TOKEN_WINDOW_SECS,
            )?,
        })
    }
}

impl FileKubernetes {
    fn validate(&self) -> Result<kubernetes::KubernetesConfig, InvalidKey> {
        let api_server = self.api_server.clone().ok_or_else(|| {
            InvalidKey::new(
                "join.kubernetes.api_server",
                "required for `kubeadm` (https://host:6443)",
            )
        })?;
        let ca = self.ca.clone().ok_or_else(|| {
            InvalidKey::new(
                "join.kubernetes.ca",
                "required for `kubeadm`: the cluster CA (/etc/kubernetes/pki/ca.crt)",
            )
        })?;
        if let Some(a) = &self.join_endpoint {
            host_port("join.kubernetes.join_endpoint", a)?;
        }
        Ok(kubernetes::KubernetesConfig {
            api_server,
            ca,
            token_file: self.token_file.clone(),
            client_cert: self.client_cert.clone(),
            client_key: self.client_key.clone(),
            join_endpoint: self.join_endpoint.clone(),
        })
    }
}

/// The configured orchestrators as one issuer: one issuer per kind, shared
/// by the default and every node group that names it.
pub fn issuer(default: &JoinConfig, groups: &[JoinGroup]) -> Result<Arc<dyn JoinIssuer>, String> {
    let mut made: Vec<(&'static str, Arc<dyn JoinIssuer>)> = Vec::new();
    let mut make = |c: &JoinConfig| -> Result<Arc<dyn JoinIssuer>, String> {
        let kind = match c {
            JoinConfig::Token => "token",
            JoinConfig::Swarm(_) => "swarm",
            JoinConfig::Kubernetes(_) => "kubeadm",
        };
        if let Some((_, i)) = made.iter().find(|(k, _)| *k == kind) {
            return Ok(i.clone());
        }
        let i: Arc<dyn JoinIssuer> = match c {
            JoinConfig::Token => Arc::new(TokenIssuer),
            JoinConfig::Swarm(s) => Arc::new(swarm::SwarmIssuer::new(s.clone())),
            JoinConfig::Kubernetes(k) => Arc::new(kubernetes::KubernetesIssuer::new(k.clone())?),
        };
        made.push((kind, i.clone()));
        Ok(i)
    };
    let default = make(default)?;
    if groups.is_empty() {
        return Ok(default);
    }
    let mut built = Vec::new();
    for g in groups {
        built.push(groups::Group {
            name: g.name.clone(),
            nodes: groups::node_pattern(&g.nodes)?,
            issuer: make(&g.join)?,
        });
    }
    Ok(Arc::new(groups::Groups {
        groups: built,
        default,
        all: made.into_iter().map(|(_, i)| i).collect(),
    }))
}
