//! Kubernetes (kubeadm): on a pass, a bootstrap token is created as a Secret
//! through the API server and handed out with the API endpoint and the cluster
//! CA's hash, so the node runs `kubeadm join`; on a fail, the node's bootstrap
//! tokens are deleted and its Node is labelled `assay.dev/attested=false` and
//! tainted `assay.dev/attested=false:NoExecute`; a later pass undoes exactly that.
//!
//! Plain HTTPS to the documented REST paths (no client library: four calls):
//! - `POST   /api/v1/namespaces/kube-system/secrets` — the bootstrap token
//!   (`bootstrap-token-<id>`, type `bootstrap.kubernetes.io/token`);
//! - `GET    /api/v1/namespaces/kube-system/secrets?labelSelector=…&limit=500`
//!   — Assay's, every page (`continue` tokens followed, bounded);
//! - `DELETE /api/v1/namespaces/kube-system/secrets/bootstrap-token-<id>`;
//! - `GET`/`PATCH /api/v1/nodes/<name>` — a JSON merge patch carrying the
//!   Node's `resourceVersion`, so a concurrent change is a 409 and is retried
//!   on fresh data instead of overwritten (taints are one list).
//!
//! Bootstrap tokens can be used many times until they expire; to make them
//! single use as far as the cluster allows, the upkeep deletes a node's token
//! once its Node object exists (kubelet registered: the join is done).
//!
//! Nodes are matched by name: the Assay node id must be the Kubernetes node
//! name (kubelet's default is the host name, the attestor's default node id).
//! A name goes into a URL only as one path segment of [A-Za-z0-9._-] that is
//! not `.` or `..` (refused otherwise: the API server decodes `%2F` before
//! routing, so escaping alone would not keep it one segment).
//! The verifier authenticates with a bearer token file (a ServiceAccount's,
//! re-read at each call so a projected token can rotate) or a client
//! certificate; the RBAC it needs is in the README.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use hyper::body::Bytes;
use hyper::{Method, StatusCode};
use rand::Rng as _;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use tokio::sync::Mutex;
use tracing::{info, warn};

use super::{BoxFuture, Grant, IssueFor, JoinError, JoinIssuer};
use crate::http::Endpoint;

/// Label and taint key Assay sets on a node it isolated.
pub const ATTESTED: &str = "assay.dev/attested";
/// Label on the Secrets Assay created, and the annotation naming their node.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "assay");
pub const NODE_ANNOTATION: &str = "assay.dev/node";
/// kubeadm's group for nodes joining with a bootstrap token.
pub const KUBEADM_GROUP: &str = "system:bootstrappers:kubeadm:default-node-token";
const NAMESPACE: &str = "kube-system";
const SECRETS: &str = "/api/v1/namespaces/kube-system/secrets";
/// How often used bootstrap tokens (the node registered) are deleted.
const CLEANUP_EVERY: Duration = Duration::from_secs(5);
/// Largest API answer read (a Secret list page is bounded by `limit`).
const MAX_RESPONSE: usize = 8 << 20;
/// Secrets asked for per list page (the API server may answer fewer).
const LIST_LIMIT: usize = 500;
/// Most pages one list reads: past it the list is an error, never acted on
/// in part (a revocation must not miss a token on an unread page).
const MAX_LIST_PAGES: usize = 1000;
/// Longest name put into a URL path (a Kubernetes object name's limit).
const MAX_NAME: usize = 253;
/// Optimistic-concurrency retries for a Node patch.
const PATCH_ATTEMPTS: u32 = 5;
/// Longest one API call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Clone)]
pub struct KubernetesConfig {
    /// `https://host:port` of the API server, as the verifier reaches it.
    pub api_server: String,
    /// The cluster CA (PEM): trusted for the API server, hashed for the nodes.
    pub ca: PathBuf,
    /// A bearer token file (a ServiceAccount token), or …
    pub token_file: Option<PathBuf>,
    /// … a client certificate and key (PEM).
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// `host:port` nodes give `kubeadm join` (default: the API server's).
    pub join_endpoint: Option<String>,
}

pub struct KubernetesIssuer {
    api: Endpoint,
    token_file: Option<PathBuf>,
    join_endpoint: String,
    ca_cert_hash: String,
    last_cleanup: Mutex<Option<Instant>>,
}

/// `sha256:<hex>` of a certificate's DER SubjectPublicKeyInfo: what
/// `kubeadm join --discovery-token-ca-cert-hash` pins.
pub fn ca_cert_hash(cert_der: &[u8]) -> Result<String, String> {
    let (rest, cert) = x509_parser::parse_x509_certificate(cert_der)
        .map_err(|e| format!("not an X.509 certificate: {e}"))?;
    if !rest.is_empty() {
        return Err("trailing bytes after the certificate".into());
    }
    Ok(format!(
        "sha256:{}",
        hex::encode(Sha256::digest(cert.tbs_certificate.subject_pki.raw))
    ))
}

const TOKEN_CHARS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// A fresh bootstrap token `(id, secret)`: `[a-z0-9]{6}`, `[a-z0-9]{16}`,
/// from the OS CSPRNG (about 82 bits in the secret, as kubeadm's).
pub fn new_bootstrap_token() -> (String, String) {
    let mut rng = rand::rngs::OsRng;
    let mut pick = |n: usize| -> String {
        (0..n)
            .map(|_| TOKEN_CHARS[rng.gen_range(0..TOKEN_CHARS.len())] as char)
            .collect()
    };
    (pick(6), pick(16))
}

/// RFC 3339 UTC, as Kubernetes writes times.
fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".into())
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Meta {
    #[serde(default)]
    name: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    resource_version: String,
}

#[derive(Deserialize)]
struct Object {
    #[serde(default)]
    metadata: Meta,
}

#[derive(Deserialize)]
struct List {
    #[serde(default)]
    metadata: Option<ListMeta>,
    /// `null` in some answers (an empty page).
    #[serde(default)]
    items: Option<Vec<Object>>,
}

#[derive(Deserialize, Default)]
struct ListMeta {
    /// The opaque token for the next page; absent or empty on the last.
    #[serde(default, rename = "continue")]
    next: Option<String>,
}

/// One page read: its items and the next page's token, or the API server
/// said the list's `continue` token expired (410 Gone).
enum Page {
    Items(Vec<Object>, Option<String>),
    Expired,
}

#[derive(Deserialize)]
struct Node {
    #[serde(default)]
    metadata: Meta,
    #[serde(default)]
    spec: NodeSpec,
}

#[derive(Deserialize, Default)]
struct NodeSpec {
    /// Kept as JSON: every field of a foreign taint is written back untouched.
    #[serde(default)]
    taints: Vec<serde_json::Value>,
}

/// What Assay wants of a Node's label and taints.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Want {
    Isolated,
    Restored,
}

impl KubernetesIssuer {
    pub fn new(config: KubernetesConfig) -> Result<Self, String> {
        if config.token_file.is_some() == config.client_cert.is_some() {
            return Err(
                "join.kubernetes: give exactly one of token_file and client_cert/client_key".into(),
            );
        }
        if config.client_cert.is_some() != config.client_key.is_some() {
            return Err("join.kubernetes: client_cert and client_key go together".into());
        }
        if !config.api_server.starts_with("https://") {
            return Err(format!(
                "join.kubernetes.api_server `{}`: must be https://",
                config.api_server
            ));
        }
        let pem = std::fs::read(&config.ca)
            .map_err(|e| format!("join.kubernetes.ca {}: {e}", config.ca.display()))?;
        let der = {
            use rustls_pki_types::pem::PemObject as _;
            rustls_pki_types::CertificateDer::from_pem_slice(&pem)
                .map_err(|e| format!("join.kubernetes.ca {}: {e}", config.ca.display()))?
        };
        let ca_cert_hash = ca_cert_hash(&der)
            .map_err(|e| format!("join.kubernetes.ca {}: {e}", config.ca.display()))?;
        let client = config
            .client_cert
            .as_deref()
            .zip(config.client_key.as_deref());
        let tls = crate::http::tls_connector(&config.ca, client, "join.kubernetes")?;
        let api = Endpoint::new(&config.api_server, Some(tls), "join.kubernetes.api_server")?;
        if config.api_server.contains('?') {
            return Err("join.kubernetes.api_server: no query string".into());
        }
        let join_endpoint = config.join_endpoint.clone().unwrap_or_else(|| {
            if api.host.contains(':') {
                format!("[{}]:{}", api.host, api.port)
            } else {
                format!("{}:{}", api.host, api.port)
            }
        });
        Ok(Self {
            api,
            token_file: config.token_file,
            join_endpoint,
            ca_cert_hash,
            last_cleanup: Mutex::new(None),
        })
    }

    pub fn ca_cert_hash(&self) -> &str {
        &self.ca_cert_hash
    }

    /// One API call; the status and body. Errors never include the bearer token.
    async fn call(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(StatusCode, Bytes), JoinError> {
        let bearer = match &self.token_file {
            Some(f) => {
                let t = tokio::fs::read_to_string(f).await.map_err(|e| {
                    JoinError::Orchestrator(format!(
                        "join.kubernetes.token_file {}: {e}",
                        f.display()
                    ))
                })?;
                Some(format!("Bearer {}", t.trim()))
            }
            None => None,
        };
        let mut headers = vec![("content-type", content_type)];
        if let Some(b) = &bearer {
            headers.push(("authorization", b.as_str()));
        }
        let body = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
        let what = format!("Kubernetes API {method} {path}");
        tokio::time::timeout(
            CALL_TIMEOUT,
            self.api.request(method, path, &headers, body, MAX_RESPONSE),
        )
        .await
        .map_err(|_| JoinError::Orchestrator(format!("{what}: no answer within {CALL_TIMEOUT:?}")))?
        .map_err(|e| JoinError::Orchestrator(format!("{what}: {e}")))
    }

    /// A call that must answer one of `ok`; otherwise an error with the API's message.
    async fn expect(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Option<&serde_json::Value>,
        ok: &[StatusCode],
    ) -> Result<(StatusCode, Bytes), JoinError> {
        let (status, bytes) = self.call(method.clone(), path, content_type, body).await?;
        if ok.contains(&status) {
            return Ok((status, bytes));
        }
        Err(api_error(&method, path, status, &bytes))
    }

    fn secret_body(&self, id: &str, secret: &str, to: &IssueFor<'_>) -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": format!("bootstrap-token-{id}"),
                "namespace": NAMESPACE,
                "labels": { MANAGED_BY.0: MANAGED_BY.1 },
                "annotations": { NODE_ANNOTATION: to.node_id },
            },
            "type": "bootstrap.kubernetes.io/token",
            "stringData": {
                "description": format!(
                    "assay: for node {}, attestation PASS ({}), history seq {}",
                    to.node_id, to.policy, to.history_seq
                ),
                "token-id": id,
                "token-secret": secret,
                "expiration": rfc3339(to.jws_expires_unix),
                "usage-bootstrap-authentication": "true",
                "usage-bootstrap-signing": "true",
                "auth-extra-groups": KUBEADM_GROUP,
            },
        })
    }

    /// Assay's bootstrap Secrets, as (name, node): every page of the list.
    /// An expired `continue` token (410 Gone: the API server compacted the
    /// snapshot the list was reading) restarts the list once from the start.
    async fn assay_secrets(&self) -> Result<Vec<(String, String)>, JoinError> {
        if let Some(all) = self.assay_secrets_once().await? {
            return Ok(all);
        }
        warn!("Kubernetes API: the Secret list's continue token expired (410 Gone); listing again from the start");
        self.assay_secrets_once().await?.ok_or_else(|| {
            JoinError::Orchestrator(format!(
                "Kubernetes API GET {SECRETS}: the list's continue token expired (410 Gone) twice in a row; no action taken on a partial list"
            ))
        })
    }

    /// One list, page after page; None if a `continue` token expired.
    async fn assay_secrets_once(&self) -> Result<Option<Vec<(String, String)>>, JoinError> {
        let mut all = Vec::new();
        let mut next = None;
        for _ in 0..MAX_LIST_PAGES {
            let (items, more) = match self.secrets_page(next.as_deref()).await? {
                Page::Items(items, more) => (items, more),
                Page::Expired => return Ok(None),
            };
            all.extend(
                items
                    .into_iter()
                    .filter(|o| o.metadata.name.starts_with("bootstrap-token-"))
                    .filter_map(|o| {
                        let node = o.metadata.annotations.get(NODE_ANNOTATION)?.clone();
                        Some((o.metadata.name, node))
                    }),
            );
            match more {
                Some(token) => next = Some(token),
                None => return Ok(Some(all)),
            }
        }
        Err(JoinError::Orchestrator(format!(
            "Kubernetes API GET {SECRETS}: more than {MAX_LIST_PAGES} pages of up to {LIST_LIMIT} Secrets; no action taken on a partial list"
        )))
    }

    /// One page of Assay's Secrets, from the start or from `next`.
    async fn secrets_page(&self, next: Option<&str>) -> Result<Page, JoinError> {
        let path = secrets_list_path(next);
        let (status, bytes) = self
            .call(Method::GET, &path, "application/json", None)
            .await?;
        match status {
            StatusCode::OK => {}
            StatusCode::GONE if next.is_some() => return Ok(Page::Expired),
            s => return Err(api_error(&Method::GET, &path, s, &bytes)),
        }
        let list: List = serde_json::from_slice(&bytes).map_err(|e| {
            JoinError::Orchestrator(format!(
                "Kubernetes API GET {SECRETS}: not a SecretList: {e}"
            ))
        })?;
        let more = list.metadata.and_then(|m| m.next).filter(|t| !t.is_empty());
        Ok(Page::Items(list.items.unwrap_or_default(), more))
    }

    async fn delete_secret(&self, name: &str) -> Result<(), JoinError> {
        let path = format!("{SECRETS}/{}", segment("Secret", name)?);
        self.expect(
            Method::DELETE,
            &path,
            "application/json",
            None,
            &[StatusCode::OK, StatusCode::ACCEPTED, StatusCode::NOT_FOUND],
        )
        .await
        .map(drop)
    }

    /// Deletes `node_id`'s bootstrap tokens; what was done.
    async fn delete_node_secrets(&self, node_id: &str) -> Result<Vec<String>, JoinError> {
        let mut done = Vec::new();
        for (name, node) in self.assay_secrets().await? {
            if node == node_id {
                self.delete_secret(&name).await?;
                done.push(format!("bootstrap token Secret {name} deleted"));
            }
        }
        Ok(done)
    }

    /// The Node, or None if the node never joined.
    async fn node(&self, name: &str) -> Result<Option<Node>, JoinError> {
        let path = node_path(name)?;
        let (status, bytes) = self
            .expect(
                Method::GET,
                &path,
                "application/json",
                None,
                &[StatusCode::OK, StatusCode::NOT_FOUND],
            )
            .await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            JoinError::Orchestrator(format!("Kubernetes API GET {path}: not a Node: {e}"))
        })
    }

    /// Brings the Node's Assay label and taint to `want`, retrying on
    /// conflicting writes; what was done.
    async fn set_node(&self, name: &str, want: Want) -> Result<Vec<String>, JoinError> {
        for _ in 0..PATCH_ATTEMPTS {
            let Some(node) = self.node(name).await? else {
                return Ok(vec![format!("no Kubernetes Node {name}: nothing to label")]);
            };
            let Some(patch) = node_patch(&node, want, crate::clock::now_unix()) else {
                return Ok(Vec::new());
            };
            let path = node_path(name)?;
            let (status, bytes) = self
                .call(
                    Method::PATCH,
                    &path,
                    "application/merge-patch+json",
                    Some(&patch),
                )
                .await?;
            match status {
                StatusCode::OK => {
                    return Ok(vec![match want {
                        Want::Isolated => format!(
                            "Node {name} labelled {ATTESTED}=false and tainted {ATTESTED}=false:NoExecute"
                        ),
                        Want::Restored => {
                            format!("Node {name} labelled {ATTESTED}=true, Assay's taint removed")
                        }
                    }])
                }
                StatusCode::CONFLICT => {
                    info!(kubernetes_node = name, "Node changed while Assay patched it; reading it again");
                    continue;
                }
                s => return Err(api_error(&Method::PATCH, &path, s, &bytes)),
            }
        }
        Err(JoinError::Orchestrator(format!(
            "Node {name} kept changing: {PATCH_ATTEMPTS} patches conflicted"
        )))
    }

    /// Deletes the bootstrap tokens of nodes that have registered (their
    /// token did its job and must not be used again).
    /// Each node is looked up once per sweep; a Secret whose name or node
    /// cannot go into a URL (not Assay's making) is skipped, not a stop.
    async fn delete_used(&self) -> Result<(), JoinError> {
        let mut by_node: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, node) in self.assay_secrets().await? {
            if valid_name(&name) && valid_name(&node) {
                by_node.entry(node).or_default().push(name);
            } else {
                warn!(secret = %name.escape_debug(), node_id = %node.escape_debug(), "Assay-labelled Secret with a name or node Kubernetes cannot hold: left alone");
            }
        }
        for (node, names) in by_node {
            if self.node(&node).await?.is_some() {
                for name in names {
                    self.delete_secret(&name).await?;
                    info!(node_id = %node, secret = %name, "node registered: its bootstrap token deleted");
                }
            }
        }
        Ok(())
    }
}

/// The merge patch that brings `node` to `want`, or None if it is there.
/// Foreign taints are written back unchanged; the patch carries the Node's
/// `resourceVersion`, so it fails (409) if anything changed since it was read.
fn node_patch(node: &Node, want: Want, now_unix: i64) -> Option<serde_json::Value> {
    let ours = |t: &serde_json::Value| t.get("key").and_then(|k| k.as_str()) == Some(ATTESTED);
    let label = node.metadata.labels.get(ATTESTED).map(String::as_str);
    let tainted = node.spec.taints.iter().any(ours);
    let mut taints: Vec<serde_json::Value> = node
        .spec
        .taints
        .iter()
        .filter(|t| !ours(t))
        .cloned()
        .collect();
    let label_to = match want {
        Want::Isolated => {
            if label == Some("false") && tainted {
                return None;
            }
            taints.push(serde_json::json!({
                "key": ATTESTED,
                "value": "false",
                "effect": "NoExecute",
                "timeAdded": rfc3339(now_unix),
            }));
            "false"
        }
        Want::Restored => {
            if label != Some("false") && !tainted {
                return None;
            }
            "true"
        }
    };
    Some(serde_json::json!({
        "metadata": {
            "resourceVersion": node.metadata.resource_version,
            "labels": { ATTESTED: label_to },
        },
        "spec": { "taints": taints },
    }))
}

fn api_error(method: &Method, path: &str, status: StatusCode, body: &[u8]) -> JoinError {
    // The API's Status object says why; never echo a request (it may hold a secret).
    let message = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.get("message")
                .and_then(|m| m.as_str())
                .map(str::to_string)
        })
        .unwrap_or_default();
    let path = path.split('?').next().unwrap_or(path);
    JoinError::Orchestrator(format!(
        "Kubernetes API {method} {path}: {status}{}{message}",
        if message.is_empty() { "" } else { ": " }
    ))
}

/// The query listing one page of Assay's Secrets; `next` is the previous
/// page's `continue` token (opaque: percent-encoded whole).
fn secrets_list_path(next: Option<&str>) -> String {
    let mut path = format!(
        "{SECRETS}?labelSelector={}%3D{}&limit={LIST_LIMIT}",
        percent(MANAGED_BY.0),
        percent(MANAGED_BY.1)
    );
    if let Some(token) = next {
        path.push_str("&continue=");
        path.push_str(&percent(token));
    }
    path
}

/// A name Kubernetes could hold that is one URL path segment as it stands:
/// 1 to 253 characters of [A-Za-z0-9._-], not `.` or `..`.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// `name` as one URL path segment, or a clear refusal (`what`: "node", "Secret").
fn segment(what: &str, name: &str) -> Result<String, JoinError> {
    if valid_name(name) {
        Ok(percent(name))
    } else {
        Err(JoinError::Orchestrator(format!(
            "{what} name `{}` refused for the Kubernetes API: it must be 1 to {MAX_NAME} characters of [A-Za-z0-9._-], not `.` or `..`",
            name.escape_debug()
        )))
    }
}

fn node_path(name: &str) -> Result<String, JoinError> {
    Ok(format!("/api/v1/nodes/{}", segment("node", name)?))
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
fn percent(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl JoinIssuer for KubernetesIssuer {
    fn name(&self) -> &'static str {
        "kubeadm"
    }

    fn issue<'a>(&'a self, to: IssueFor<'a>) -> BoxFuture<'a, Result<Grant, JoinError>> {
        Box::pin(async move {
            // A token for a name no Node can have could never be retired by
            // the upkeep (it looks the Node up by that name).
            segment("node", to.node_id)?;
            let path = SECRETS.to_string();
            // A 409 means the 6-character id is taken: draw another.
            for _ in 0..3 {
                let (id, secret) = new_bootstrap_token();
                let body = self.secret_body(&id, &secret, &to);
                let (status, bytes) = self
                    .call(Method::POST, &path, "application/json", Some(&body))
                    .await?;
                match status {
                    StatusCode::CREATED | StatusCode::OK => {
                        info!(node_id = to.node_id, token_id = %id, "bootstrap token created");
                        return Ok(Grant {
                            orchestrator: "kubeadm",
                            token: format!("{id}.{secret}"),
                            endpoint: self.join_endpoint.clone(),
                            ca_cert_hash: self.ca_cert_hash.clone(),
                            expires_unix: to.jws_expires_unix,
                        });
                    }
                    StatusCode::CONFLICT => continue,
                    s => return Err(api_error(&Method::POST, &path, s, &bytes)),
                }
            }
            Err(JoinError::Orchestrator(
                "three bootstrap token ids in a row were taken".into(),
            ))
        })
    }

    fn quarantine<'a>(&'a self, node_id: &'a str) -> BoxFuture<'a, Result<Vec<String>, JoinError>> {
        Box::pin(async move {
            let mut done = self.delete_node_secrets(node_id).await?;
            done.extend(self.set_node(node_id, Want::Isolated).await?);
            Ok(done)
        })
    }

    fn revoke<'a>(&'a self, node_id: &'a str) -> BoxFuture<'a, Result<Vec<String>, JoinError>> {
        Box::pin(self.delete_node_secrets(node_id))
    }

    fn restore<'a>(&'a self, node_id: &'a str) -> BoxFuture<'a, Result<Vec<String>, JoinError>> {
        Box::pin(self.set_node(node_id, Want::Restored))
    }

    fn tick(&self, _now_unix: i64) -> BoxFuture<'_, Result<(), JoinError>> {
        Box::pin(async move {
            {
                let mut last = self.last_cleanup.lock().await;
                if last.is_some_and(|t| t.elapsed() < CLEANUP_EVERY) {
                    return Ok(());
                }
                *last = Some(Instant::now());
            }
            self.delete_used().await.inspect_err(
                |e| warn!(error = %e, "deleting used bootstrap tokens failed; retrying"),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_tokens_have_kubeadm_s_form_and_do_not_repeat() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            let (id, secret) = new_bootstrap_token();
            assert_eq!((id.len(), secret.len()), (6, 16));
            assert!(format!("{id}{secret}")
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
            assert!(seen.insert(secret));
        }
    }

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_000_000), "2026-11-18T11:06:40Z");
    }

    #[test]
    fn names_and_selectors_are_percent_encoded() {
        assert_eq!(
            percent("app.kubernetes.io/managed-by"),
            "app.kubernetes.io%2Fmanaged-by"
        );
        assert_eq!(percent("node-1.example"), "node-1.example");
        assert_eq!(percent("a/../b?c"), "a%2F..%2Fb%3Fc");
    }

    #[test]
    fn hostile_names_never_reach_a_url_path() {
        assert_eq!(
            node_path("k8s-worker-1").unwrap(),
            "/api/v1/nodes/k8s-worker-1"
        );
        assert_eq!(node_path("a..b").unwrap(), "/api/v1/nodes/a..b");
        assert_eq!(node_path("Node_1.x").unwrap(), "/api/v1/nodes/Node_1.x");
        let long = "a".repeat(MAX_NAME + 1);
        for hostile in [
            "", ".", "..", "a/b", "a%2Fb", "%2E%2E", "a?b", "a#b", "a&b", "a b", "a\0b", "\0",
            "a\nb", "a\rb", "a\tb", "\u{7f}", "é", "../etc", "a\\b", &long,
        ] {
            let e = node_path(hostile).unwrap_err().to_string();
            assert!(e.contains("refused"), "{hostile:?}: {e}");
            assert!(
                !e.contains('\0') && !e.contains('\n'),
                "escaped in the error: {e:?}"
            );
            assert!(segment("Secret", hostile).is_err(), "{hostile:?}");
            assert!(!valid_name(hostile), "{hostile:?}");
        }
        assert!(valid_name(&"a".repeat(MAX_NAME)));
    }

    #[test]
    fn secret_list_pages_carry_the_continue_token_escaped() {
        assert_eq!(
            secrets_list_path(None),
            "/api/v1/namespaces/kube-system/secrets?labelSelector=app.kubernetes.io%2Fmanaged-by%3Dassay&limit=500"
        );
        let p = secrets_list_path(Some("eyJ2Ijo+/x==&limit=1#f?\0 \n"));
        assert_eq!(
            p,
            "/api/v1/namespaces/kube-system/secrets?labelSelector=app.kubernetes.io%2Fmanaged-by%3Dassay&limit=500&continue=eyJ2Ijo%2B%2Fx%3D%3D%26limit%3D1%23f%3F%00%20%0A"
        );
        // One query parameter each: the token cannot add or cut one.
        assert_eq!(p.matches('&').count(), 2);
        assert!(p.bytes().all(|b| b.is_ascii_graphic()));
    }

    #[test]
    fn list_pages_parse_with_or_without_a_continue_token() {
        let l: List = serde_json::from_str(
            r#"{"kind":"SecretList","metadata":{"resourceVersion":"9","continue":"abc","remainingItemCount":3},"items":[{"metadata":{"name":"x"}}]}"#,
        )
        .unwrap();
        assert_eq!(l.metadata.unwrap().next.as_deref(), Some("abc"));
        assert_eq!(l.items.unwrap().len(), 1);
        let l: List =
            serde_json::from_str(r#"{"metadata":{"resourceVersion":"9"},"items":null}"#).unwrap();
        assert!(l.metadata.unwrap().next.is_none() && l.items.is_none());
        let l: List = serde_json::from_str(r#"{}"#).unwrap();
        assert!(l.metadata.is_none());
    }

    fn node(labels: &[(&str, &str)], taints: serde_json::Value) -> Node {
        serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "n1",
                "resourceVersion": "41",
                "labels": labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
            },
            "spec": { "taints": taints },
        }))
        .unwrap()
    }

    #[test]
    fn isolating_adds_assay_s_taint_and_keeps_foreign_ones() {
        let foreign =
            serde_json::json!({"key": "dedicated", "value": "gpu", "effect": "NoSchedule"});
        let n = node(&[("zone", "a")], serde_json::json!([foreign]));
        let p = node_patch(&n, Want::Isolated, 0).unwrap();
        assert_eq!(p["metadata"]["resourceVersion"], "41");
        assert_eq!(
            p["metadata"]["labels"],
            serde_json::json!({ATTESTED: "false"})
        );
        assert_eq!(
            p["spec"]["taints"],
            serde_json::json!([foreign, {"key": ATTESTED, "value": "false", "effect": "NoExecute", "timeAdded": "1970-01-01T00:00:00Z"}])
        );
        // Already isolated: nothing to do.
        let n = node(
            &[(ATTESTED, "false")],
            serde_json::json!([foreign, {"key": ATTESTED, "value": "false", "effect": "NoExecute"}]),
        );
        assert!(node_patch(&n, Want::Isolated, 0).is_none());
        // Restoring removes only Assay's taint.
        let p = node_patch(&n, Want::Restored, 0).unwrap();
        assert_eq!(p["spec"]["taints"], serde_json::json!([foreign]));
        assert_eq!(p["metadata"]["labels"][ATTESTED], "true");
        // A node Assay never isolated is not touched on restore.
        let n = node(&[], serde_json::json!([foreign]));
        assert!(node_patch(&n, Want::Restored, 0).is_none());
    }

    /// Known value: a self-signed CA made with `openssl req -x509 -newkey
    /// rsa:2048`, whose hash `openssl x509 -pubkey -noout -in ca.crt | openssl
    /// pkey -pubin -outform der | sha256sum` (the kubeadm documentation's
    /// recipe) printed as below.
    #[test]
    fn ca_hash_is_sha256_of_the_subject_public_key_info() {
        use rustls_pki_types::pem::PemObject as _;
        let der = rustls_pki_types::CertificateDer::from_pem_slice(KNOWN_CA.as_bytes()).unwrap();
        assert_eq!(ca_cert_hash(&der).unwrap(), KNOWN_CA_HASH);
        assert!(ca_cert_hash(&der[..der.len() - 1]).is_err());
        let mut long = der.to_vec();
        long.push(0);
        assert!(ca_cert_hash(&long).is_err());
        assert!(ca_cert_hash(b"").is_err());
    }

    #[test]
    fn issuer_settings_are_checked_before_serving() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.crt");
        std::fs::write(&ca, KNOWN_CA).unwrap();
        let tok = dir.path().join("token");
        std::fs::write(&tok, "t").unwrap();
        let cfg = |api: &str, token: bool, cert: bool| KubernetesConfig {
            api_server: api.into(),
            ca: ca.clone(),
            token_file: token.then(|| tok.clone()),
            client_cert: cert.then(|| ca.clone()),
            client_key: cert.then(|| dir.path().join("missing.key")),
            join_endpoint: None,
        };
        for (c, says) in [
            (
                cfg("https://k:6443", false, false),
                "exactly one of token_file",
            ),
            (
                cfg("https://k:6443", true, true),
                "exactly one of token_file",
            ),
            (cfg("http://k:6443", true, false), "must be https://"),
            (cfg("https://k:6443", false, true), "missing.key"),
            (
                KubernetesConfig {
                    ca: dir.path().join("nope.crt"),
                    ..cfg("https://k:6443", true, false)
                },
                "join.kubernetes.ca",
            ),
        ] {
            let e = KubernetesIssuer::new(c).err().unwrap_or_default();
            assert!(e.contains(says), "{says}: {e}");
        }
        let k = KubernetesIssuer::new(cfg("https://10.0.0.1:6443", true, false)).unwrap();
        assert_eq!(k.join_endpoint, "10.0.0.1:6443");
        assert_eq!(k.ca_cert_hash(), KNOWN_CA_HASH);
        let k = KubernetesIssuer::new(cfg("https://[fd00::1]", true, false)).unwrap();
        assert_eq!(k.join_endpoint, "[fd00::1]:443");
    }

    const KNOWN_CA_HASH: &str =
        "sha256:f20ecd325336c8bb41dec014b90406a57d1fdb653d794e49fc1f97d6920a5da3";
    const KNOWN_CA: &str = "\
-----BEGIN CERTIFICATE-----
MIIDDTCCAfWgAwIBAgIUdxWOnX8ZNn8+c+t1i0FuHzN9tGAwDQYJKoZIhvcNAQEL
BQAwFTETMBEGA1UEAwwKa3ViZXJuZXRlczAgFw0yNjExMjMwODM3NThaGA8yMTI2
MTAzMDA4Mzc1OFowFTETMBEGA1UEAwwKa3ViZXJuZXRlczCCASIwDQYJKoZIhvcN
AQEBBQADggEPADCCAQoCggEBANp8kYTNLSXHLcB53+j5/t7t7NAJnRZQIb1osoiI
zOC9coxtB0ZVEvzuNw0STQkoqKtNlffMY7PWf9o+UHSkMZZQw4Ze1l7BxpUFX2RE
oyXtWvRcwrKugqWHI6rgIaBtQOU36iQY/9pxJnPdyNToAJHCKq2QUBiL8Hk1GsIA
ymt8HrnG0t3yGlvxjJrTuM6XYzop4dD12hE1Sg51VVfwdg2QCF3wEBEe1U4LRiTQ
KwFE7KWGBJsoTxgjh9sfWPjXPsjSH0Bvds/HobwC6dWjzLSGxV3cLyUBFxJsFih2
9VLABGMaXTUFLBrdVxyG8p7+40+hqaFGMX8v4yt/3mtgRr0CAwEAAaNTMFEwHQYD
VR0OBBYEFA6a5X32Snp+NEwBlq+6WEur6DHzMB8GA1UdIwQYMBaAFA6a5X32Snp+
NEwBlq+6WEur6DHzMA8GA1UdEwEB/wQFMAMBAf8wDQYJKoZIhvcNAQELBQADggEB
AKnUnr+o3XzPvKOoj62/L8VqqCMyge9pEQhcz0iWDrjOMUc4r99ko+LmQSY5I2p1
/4fAXrQmhR9uRX0Ea8K5IBt31ilVmNgdGMn/b3NRG+SkgknZ8zQYTkrybtRM00oC
AS3kuGlWT6SnVFwe8/uf9f2s+Lw9/nLQ/jICZFMJhz2FfFwNoeQUtfTUlh+7cBdc
HOr836y2Gxl6mLQLzzoqUpur6Jd+hCYxMwM0sCFdHUXxTpzr+qz2cgJYjgOtQx5V
9wNqv6bO+OYkKv9V0aypaczTR2RkaXD1sVeSCQ2fc2gYSt0ycw8XgUd0v8wRYvTx
AB1VBtnCtZ+/GyeSlnBqyuI=
-----END CERTIFICATE-----
";
}
