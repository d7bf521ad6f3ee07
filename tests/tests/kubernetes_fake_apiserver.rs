//! Kubernetes (kubeadm) join against a FAKE kube-apiserver: no kube-apiserver
//! can be installed on these machines, so this test runs an HTTPS server that
//! speaks the exact REST paths and JSON of the parts Assay uses (Secret
//! create/list/delete in kube-system, Node get/merge-patch with
//! resourceVersion conflicts) and checks every request against the Kubernetes
//! API's shapes and validation rules (bootstrap token Secret fields and
//! formats, label and taint syntax, content types, bearer token). Everything
//! else is real: swtpm, the verifier and attestor processes, TLS, sled; the
//! cluster CA hash is checked against openssl (the kubeadm docs' recipe).
//!
//! - a passing node of the Kubernetes node group gets a bootstrap token Secret
//!   and the exact `kubeadm join`; a node outside the group gets the default
//!   (signed token) grant and no Secret;
//! - a failing node gets nothing;
//! - once a node registers (its Node exists) its bootstrap token is deleted;
//! - a node that fails: its tokens are deleted and its Node is labelled
//!   `assay.dev/attested=false` and tainted NoExecute, foreign taints kept,
//!   a concurrent change (409) retried; it passes again: restored.
//!
//! The fake lists as the real API server does: `limit` honoured (none = all),
//! an opaque `continue` token and `remainingItemCount` (only without a
//! selector, as etcd3's store) while more remain, 410 Gone for a token older
//! than a compaction. With 1,200 Secrets (three pages), a failed node's
//! tokens on pages 2 and 3 are deleted and no other node's are touched; an
//! expired token restarts the list, a list that keeps expiring or never ends
//! is a clear error.

use std::collections::BTreeMap;
use std::io::BufReader;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use assay_tests::{attestor, wait_for, Swtpm, VerifierOpts, VerifierProc};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use regex::Regex;
use rustls_pki_types::pem::PemObject as _;
use serde_json::{json, Value};

const ZERO: &str = "0000000000000000000000000000000000000000000000000000000000000000";
const BEARER: &str = "assay-test-serviceaccount-token";
const GROUP: &str = "system:bootstrappers:kubeadm:default-node-token";

/// One request the fake answered.
#[derive(Clone, Debug)]
struct Req {
    at: Instant,
    method: String,
    path: String,
    status: u16,
}

#[derive(Default)]
struct State {
    secrets: BTreeMap<String, Value>,
    nodes: BTreeMap<String, Value>,
    rv: u64,
    log: Vec<Req>,
    /// Shape violations: the test fails if any.
    errors: Vec<String>,
    /// Answer the next Node PATCH with 409 after changing the Node (as a
    /// concurrent writer would).
    conflict_next_patch: bool,
    /// `continue` tokens older than this resourceVersion are 410 Gone (etcd
    /// compacted their snapshot).
    compacted_rv: u64,
    /// Compact right after serving this many more pages that have a next one
    /// (`u32::MAX`: after every such page), so that list's next page is 410.
    compact_during_lists: u32,
    /// Every Secret list page says more remain (a broken server).
    endless_list: bool,
}

struct FakeApi {
    port: u16,
    state: Arc<Mutex<State>>,
}

fn status(code: u16, reason: &str, message: &str) -> (u16, Value) {
    (
        code,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": message, "reason": reason, "code": code}),
    )
}

/// Kubernetes' qualified name (label/taint key) and label value syntax.
fn qualified_name(k: &str) -> bool {
    let name = Regex::new(r"^([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]$").unwrap();
    let prefix =
        Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$").unwrap();
    match k.split_once('/') {
        Some((p, n)) => p.len() <= 253 && prefix.is_match(p) && name.is_match(n),
        None => name.is_match(k),
    }
}

fn label_value(v: &str) -> bool {
    v.is_empty()
        || Regex::new(r"^([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]$")
            .unwrap()
            .is_match(v)
}

/// Go's `url.ParseQuery` value decoding: `%XX`, and `+` is a space.
fn query_decode(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("!");
                match u8::from_str_radix(hex, 16) {
                    Ok(x) => {
                        out.push(x);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The fake's continue token: opaque, and deliberately standard base64 (the
/// real one is URL-safe) so that a client not escaping it breaks (`+`).
fn encode_continue(rv: u64, start: &str) -> String {
    STANDARD.encode(json!({"v": "meta.k8s.io/v1", "rv": rv, "start": start}).to_string())
}

fn decode_continue(t: &str) -> Option<(u64, String)> {
    let v: Value = serde_json::from_slice(&STANDARD.decode(t).ok()?).ok()?;
    Some((v["rv"].as_u64()?, v["start"].as_str()?.to_string()))
}

/// A Secret as the API server stores one: stringData folded into base64 data.
fn stored_secret(b: &Value, rv: String) -> Value {
    let mut stored = b.clone();
    let data: serde_json::Map<String, Value> = b["stringData"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), json!(STANDARD.encode(v.as_str().unwrap()))))
        .collect();
    stored.as_object_mut().unwrap().remove("stringData");
    stored["data"] = Value::Object(data);
    stored["metadata"]["namespace"] = json!("kube-system");
    stored["metadata"]["resourceVersion"] = json!(rv);
    stored
}

/// RFC 7386 JSON merge patch.
fn merge(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = json!({});
            }
            let t = target.as_object_mut().unwrap();
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        _ => *target = patch.clone(),
    }
}

impl State {
    fn next_rv(&mut self) -> String {
        self.rv += 1;
        self.rv.to_string()
    }

    fn check_secret(&mut self, b: &Value) -> Result<String, String> {
        let sd = b["stringData"].as_object().ok_or("stringData missing")?;
        let s = |k: &str| {
            sd.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let allowed = [
            "description",
            "token-id",
            "token-secret",
            "expiration",
            "usage-bootstrap-authentication",
            "usage-bootstrap-signing",
            "auth-extra-groups",
        ];
        if let Some(k) = sd.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(format!("unexpected bootstrap token key {k}"));
        }
        if b["apiVersion"] != "v1" || b["kind"] != "Secret" {
            return Err("not a v1 Secret".into());
        }
        if b["type"] != "bootstrap.kubernetes.io/token" {
            return Err(format!("type {}", b["type"]));
        }
        let id = s("token-id");
        if !Regex::new("^[a-z0-9]{6}$").unwrap().is_match(&id) {
            return Err(format!("token-id {id:?}"));
        }
        if !Regex::new("^[a-z0-9]{16}$")
            .unwrap()
            .is_match(&s("token-secret"))
        {
            return Err("token-secret not [a-z0-9]{16}".into());
        }
        if b["metadata"]["name"] != format!("bootstrap-token-{id}") {
            return Err(format!("name {} for token id {id}", b["metadata"]["name"]));
        }
        if !b["metadata"]["namespace"].is_null() && b["metadata"]["namespace"] != "kube-system" {
            return Err("namespace".into());
        }
        let exp = time::OffsetDateTime::parse(
            &s("expiration"),
            &time::format_description::well_known::Rfc3339,
        )
        .map_err(|e| format!("expiration {:?}: {e}", s("expiration")))?;
        if exp <= time::OffsetDateTime::now_utc() {
            return Err("expiration in the past".into());
        }
        for u in ["usage-bootstrap-authentication", "usage-bootstrap-signing"] {
            if s(u) != "true" {
                return Err(format!("{u} = {:?}", s(u)));
            }
        }
        // The API server's rule for extra groups, and kubeadm's default group.
        let groups = Regex::new(r"^system:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]$").unwrap();
        if !s("auth-extra-groups")
            .split(',')
            .all(|g| groups.is_match(g))
            || s("auth-extra-groups") != GROUP
        {
            return Err(format!("auth-extra-groups {:?}", s("auth-extra-groups")));
        }
        if s("description").is_empty() {
            return Err("no description".into());
        }
        for (k, v) in b["metadata"]["labels"].as_object().into_iter().flatten() {
            if !qualified_name(k) || !label_value(v.as_str().unwrap_or("!")) {
                return Err(format!("label {k}={v}"));
            }
        }
        Ok(id)
    }

    /// A Secret list page as etcd3's store answers it: keys in order from the
    /// token's start, up to `limit` matching items (none or 0: all); a token
    /// for the rest while keys remain past the last item returned (so the
    /// last page may be empty); the list's resourceVersion is the first
    /// page's (a continued list reads one snapshot).
    fn list_secrets(&mut self, q: &BTreeMap<String, String>) -> (u16, Value) {
        let limit: usize = match q.get("limit").map(|l| l.parse()) {
            None => 0,
            Some(Ok(l)) => l,
            Some(Err(_)) => {
                self.errors.push(format!("limit {:?}", q["limit"]));
                return status(400, "BadRequest", "invalid limit");
            }
        };
        let (rv, start) = match q.get("continue") {
            None => (self.rv, String::new()),
            Some(t) => match decode_continue(t) {
                Some(c) => c,
                None => {
                    self.errors
                        .push(format!("continue token {t:?} is not one we gave"));
                    return status(400, "BadRequest", "continue key is not valid");
                }
            },
        };
        if rv < self.compacted_rv {
            return status(
                410,
                "Expired",
                "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
            );
        }
        let selector = q.get("labelSelector").map(String::as_str).unwrap_or("");
        let want = match selector {
            "" => None,
            s => match s.split_once('=') {
                Some(kv) => Some(kv),
                None => {
                    self.errors.push(format!("labelSelector {s:?}"));
                    return status(400, "BadRequest", "unable to parse requirement");
                }
            },
        };
        let mut keys = self.secrets.range(start.clone()..).peekable();
        let mut items = Vec::new();
        while let Some((_, s)) = keys.next_if(|_| limit == 0 || items.len() < limit) {
            if want.is_none_or(|(k, v)| s["metadata"]["labels"][k] == *v) {
                items.push(s.clone());
            }
        }
        let mut meta = json!({"resourceVersion": rv.to_string()});
        let rest = keys.count();
        if (rest > 0 && limit > 0) || self.endless_list {
            let next = match items.last().and_then(|s| s["metadata"]["name"].as_str()) {
                Some(last) => format!("{last}\0"),
                None => start.clone(),
            };
            meta["continue"] = json!(encode_continue(rv, &next));
            if want.is_none() {
                meta["remainingItemCount"] = json!(rest);
            }
            if self.compact_during_lists > 0 {
                if self.compact_during_lists != u32::MAX {
                    self.compact_during_lists -= 1;
                }
                self.compacted_rv = rv + 1;
                self.rv = self.rv.max(rv + 1);
            }
        }
        (
            200,
            json!({"kind": "SecretList", "apiVersion": "v1", "metadata": meta, "items": items}),
        )
    }

    fn check_node(&self, n: &Value) -> Result<(), String> {
        for (k, v) in n["metadata"]["labels"].as_object().into_iter().flatten() {
            if !qualified_name(k) || !label_value(v.as_str().unwrap_or("!")) {
                return Err(format!("label {k}={v}"));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for t in n["spec"]["taints"].as_array().into_iter().flatten() {
            let key = t["key"].as_str().unwrap_or_default();
            let effect = t["effect"].as_str().unwrap_or_default();
            if !qualified_name(key) {
                return Err(format!("taint key {key:?}"));
            }
            if !["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&effect) {
                return Err(format!("taint effect {effect:?}"));
            }
            if !label_value(t["value"].as_str().unwrap_or_default()) {
                return Err(format!("taint value {}", t["value"]));
            }
            if let Some(ta) = t.get("timeAdded") {
                time::OffsetDateTime::parse(
                    ta.as_str().unwrap_or_default(),
                    &time::format_description::well_known::Rfc3339,
                )
                .map_err(|e| format!("timeAdded {ta}: {e}"))?;
            }
            if !seen.insert((key.to_string(), effect.to_string())) {
                return Err(format!("duplicate taint {key}:{effect}"));
            }
        }
        Ok(())
    }

    fn handle(
        &mut self,
        method: &str,
        path: &str,
        headers: &BTreeMap<String, String>,
        body: &[u8],
    ) -> (u16, Value) {
        if headers.get("authorization").map(String::as_str) != Some(&format!("Bearer {BEARER}")) {
            self.errors
                .push(format!("{method} {path}: no or wrong bearer token"));
            return status(401, "Unauthorized", "Unauthorized");
        }
        let ct = headers.get("content-type").cloned().unwrap_or_default();
        let (p, query) = path.split_once('?').unwrap_or((path, ""));
        let mut q: BTreeMap<String, String> = BTreeMap::new();
        for (k, v) in query.split('&').filter_map(|kv| kv.split_once('=')) {
            if q.insert(query_decode(k), query_decode(v)).is_some() {
                self.errors
                    .push(format!("{method} {path}: parameter {k} twice"));
            }
        }
        const SECRETS: &str = SECRETS_PATH;
        match (method, p) {
            ("POST", SECRETS) => {
                let b: Value = match serde_json::from_slice(body) {
                    Ok(b) if ct == "application/json" => b,
                    _ => {
                        self.errors
                            .push(format!("POST secret: content-type {ct:?} or not JSON"));
                        return status(415, "UnsupportedMediaType", "bad body");
                    }
                };
                if let Err(e) = self.check_secret(&b) {
                    self.errors.push(format!("POST secret: {e}"));
                    return status(422, "Invalid", &e);
                }
                let name = b["metadata"]["name"].as_str().unwrap().to_string();
                if self.secrets.contains_key(&name) {
                    return status(
                        409,
                        "AlreadyExists",
                        &format!("secrets \"{name}\" already exists"),
                    );
                }
                let rv = self.next_rv();
                let stored = stored_secret(&b, rv);
                self.secrets.insert(name, stored.clone());
                (201, stored)
            }
            ("GET", SECRETS) => self.list_secrets(&q),
            ("DELETE", p) if p.starts_with(&format!("{SECRETS}/")) => {
                let name = &p[SECRETS.len() + 1..];
                match self.secrets.remove(name) {
                    Some(_) => (
                        200,
                        json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "details": {"name": name, "kind": "secrets"}}),
                    ),
                    None => status(404, "NotFound", &format!("secrets \"{name}\" not found")),
                }
            }
            ("GET", p) if p.starts_with("/api/v1/nodes/") => {
                match self.nodes.get(&p["/api/v1/nodes/".len()..]) {
                    Some(n) => (200, n.clone()),
                    None => status(404, "NotFound", "nodes not found"),
                }
            }
            ("PATCH", p) if p.starts_with("/api/v1/nodes/") => {
                let name = p["/api/v1/nodes/".len()..].to_string();
                if ct != "application/merge-patch+json" {
                    self.errors.push(format!("PATCH node: content-type {ct:?}"));
                    return status(415, "UnsupportedMediaType", "bad content type");
                }
                let Ok(patch) = serde_json::from_slice::<Value>(body) else {
                    self.errors.push("PATCH node: not JSON".into());
                    return status(400, "BadRequest", "not JSON");
                };
                if self.conflict_next_patch {
                    self.conflict_next_patch = false;
                    let rv = self.next_rv();
                    let n = self.nodes.get_mut(&name).unwrap();
                    n["metadata"]["resourceVersion"] = json!(rv);
                    n["metadata"]["labels"]["concurrent-writer"] = json!("was-here");
                    return status(409, "Conflict", "the object has been modified; please apply your changes to the latest version and try again");
                }
                let rv = self.rv + 1;
                let Some(node) = self.nodes.get_mut(&name) else {
                    return status(404, "NotFound", "nodes not found");
                };
                if let Some(want) = patch["metadata"]["resourceVersion"].as_str() {
                    if node["metadata"]["resourceVersion"] != want {
                        return status(409, "Conflict", "the object has been modified");
                    }
                } else {
                    self.errors.push(
                        "PATCH node without resourceVersion: a concurrent change would be lost"
                            .into(),
                    );
                }
                let mut new = node.clone();
                merge(&mut new, &patch);
                new["metadata"]["resourceVersion"] = json!(rv.to_string());
                if let Err(e) = self.check_node(&new) {
                    self.errors.push(format!("PATCH node: {e}"));
                    return status(422, "Invalid", &e);
                }
                self.rv = rv;
                self.nodes.insert(name, new.clone());
                (200, new)
            }
            _ => {
                self.errors.push(format!("unexpected {method} {path}"));
                status(
                    404,
                    "NotFound",
                    "the server could not find the requested resource",
                )
            }
        }
    }
}

impl FakeApi {
    /// Serves HTTPS on 127.0.0.1 with `cert`/`key` (signed by the cluster CA).
    fn start(cert: &Path, key: &Path) -> Result<Self> {
        let certs = rustls_pki_types::CertificateDer::pem_file_iter(cert)?
            .collect::<Result<Vec<_>, _>>()?;
        let key = rustls_pki_types::PrivateKeyDer::from_pem_file(key)?;
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs, key)?,
        );
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let state = Arc::new(Mutex::new(State::default()));
        let st = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(tcp) = conn else { continue };
                let config = config.clone();
                let st = st.clone();
                std::thread::spawn(move || {
                    let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
                    let Ok(tls) = rustls::ServerConnection::new(config) else {
                        return;
                    };
                    let mut stream = rustls::StreamOwned::new(tls, tcp);
                    let _ = serve_one(&mut stream, &st);
                });
            }
        });
        Ok(Self { port, state })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    fn secrets_of(&self, node: &str) -> Vec<Value> {
        self.state()
            .secrets
            .values()
            .filter(|s| s["metadata"]["annotations"]["assay.dev/node"] == node)
            .cloned()
            .collect()
    }

    /// What kubelet does when the node has joined: its Node appears.
    fn register_node(&self, name: &str, taints: Value) {
        let mut st = self.state();
        let rv = st.next_rv();
        st.nodes.insert(
            name.to_string(),
            json!({"kind": "Node", "apiVersion": "v1",
                   "metadata": {"name": name, "resourceVersion": rv,
                                "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}},
                   "spec": {"taints": taints, "podCIDR": "10.244.1.0/24"},
                   "status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
        );
    }

    fn node(&self, name: &str) -> Value {
        self.state().nodes.get(name).cloned().unwrap_or(Value::Null)
    }

    /// A bootstrap token Secret put straight into the store: Assay's for
    /// `node` (labelled, annotated), or with None kubeadm's own (neither).
    fn preload(&self, id: &str, node: Option<&str>) {
        let mut b = json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": format!("bootstrap-token-{id}")},
            "type": "bootstrap.kubernetes.io/token",
            "stringData": {"description": "preloaded", "token-id": id,
                "token-secret": "0123456789abcdef", "expiration": "2099-01-01T00:00:00Z",
                "usage-bootstrap-authentication": "true", "usage-bootstrap-signing": "true",
                "auth-extra-groups": GROUP}});
        if let Some(n) = node {
            b["metadata"]["labels"] = json!({"app.kubernetes.io/managed-by": "assay"});
            b["metadata"]["annotations"] = json!({"assay.dev/node": n});
        }
        let mut st = self.state();
        st.check_secret(&b).expect("a valid preloaded Secret");
        let rv = st.next_rv();
        st.secrets
            .insert(format!("bootstrap-token-{id}"), stored_secret(&b, rv));
    }

    /// The Secret list requests answered so far, as (path, status).
    fn lists(&self) -> Vec<(String, u16)> {
        self.state()
            .log
            .iter()
            .filter(|r| r.method == "GET" && r.path.starts_with(SECRETS_PATH))
            .map(|r| (r.path.clone(), r.status))
            .collect()
    }
}

const SECRETS_PATH: &str = "/api/v1/namespaces/kube-system/secrets";

/// The cluster CA, the fake API server and a verifier whose `k8s-.*` nodes
/// join with kubeadm.
struct Cluster {
    _pki: tempfile::TempDir,
    ca: PathBuf,
    api: FakeApi,
    v: VerifierProc,
}

fn cluster() -> Result<Cluster> {
    // The cluster CA and the API server's certificate (127.0.0.1).
    let pki = tempfile::tempdir()?;
    let run = Command::new(assay_tests::bin("assay-verifier")?)
        .args(["init", "--dir"])
        .arg(pki.path())
        .output()?;
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let ca: PathBuf = pki.path().join("ca.pem");
    let api = FakeApi::start(
        &pki.path().join("server.pem"),
        &pki.path().join("server.key"),
    )?;
    let v = verifier_for(&api, &ca, pki.path())?;
    Ok(Cluster {
        _pki: pki,
        ca,
        api,
        v,
    })
}

/// A verifier whose `k8s-.*` nodes join with kubeadm through `api`, trusting
/// `ca` for the API server (its service account token kept in `dir`).
fn verifier_for(api: &FakeApi, ca: &Path, dir: &Path) -> Result<VerifierProc> {
    let token_file = dir.join("sa-token");
    std::fs::write(&token_file, format!("{BEARER}\n"))?;
    let mut opts = VerifierOpts::new(format!(
        "schema = 0\nname = \"k8s\"\n[pcrs.sha256]\n16 = \"{ZERO}\"\n"
    ));
    opts.config = Some(format!(
        "[join]\norchestrator = \"token\"\n[[join.groups]]\nname = \"cluster\"\nnodes = \"k8s-.*\"\norchestrator = \"kubeadm\"\n[join.kubernetes]\napi_server = \"https://127.0.0.1:{}\"\nca = \"{}\"\ntoken_file = \"{}\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n",
        api.port,
        ca.display(),
        token_file.display()
    ));
    VerifierProc::start(&opts)
}

fn serve_one(s: &mut (impl std::io::Read + std::io::Write), st: &Mutex<State>) -> Result<()> {
    let mut r = BufReader::new(&mut *s);
    let assay_tests::http::Request {
        method,
        path,
        headers,
        body,
    } = assay_tests::http::read_request(&mut r, 1 << 20)?;
    let (code, answer) = {
        let mut st = st.lock().unwrap();
        let out = st.handle(&method, &path, &headers, &body);
        st.log.push(Req {
            at: Instant::now(),
            method: method.clone(),
            path: path.clone(),
            status: out.0,
        });
        out
    };
    let body = answer.to_string();
    write!(
        s,
        "HTTP/1.1 {code} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )?;
    s.flush()?;
    Ok(())
}

fn join(tpm: &Swtpm, v: &VerifierProc, state: &Path, node: &str, exec: bool) -> Result<Output> {
    let mut extra = vec!["--orchestrator", "kubeadm", "--output", "json"];
    if exec {
        extra.push("--exec");
    }
    attestor(tpm, v, state, node, "join", &extra)
}

/// The kubeadm documentation's recipe, as an independent oracle.
fn openssl_ca_hash(ca: &Path) -> Result<String> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl x509 -pubkey -noout -in '{}' | openssl pkey -pubin -outform der | sha256sum",
            ca.display()
        ))
        .output()?;
    if !out.status.success() {
        bail!("openssl: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(format!(
        "sha256:{}",
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .context("sha256sum output")?
    ))
}

struct Node {
    name: &'static str,
    tpm: Swtpm,
    state: tempfile::TempDir,
}

impl Node {
    fn new(name: &'static str) -> Result<Self> {
        Ok(Self {
            name,
            tpm: Swtpm::start()?,
            state: tempfile::tempdir()?,
        })
    }

    fn join(&self, v: &VerifierProc) -> Result<(Output, Value)> {
        let out = join(&self.tpm, v, self.state.path(), self.name, false)?;
        let j = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        Ok((out, j))
    }

    fn tamper(&self) -> Result<()> {
        self.tpm
            .tpm2(
                "tpm2_pcrextend",
                &[&format!("16:sha256={}", "ab".repeat(32))],
            )
            .map(drop)
    }
}

#[test]
fn kubernetes_join_against_a_fake_apiserver_checking_every_request_shape() -> Result<()> {
    let Cluster { _pki, ca, api, v } = cluster()?;

    // A passing node: a bootstrap token Secret and the exact kubeadm join.
    let w1 = Node::new("k8s-worker-1")?;
    let (out, j) = w1.join(&v)?;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        v.log()
    );
    let g = &j["grant"];
    assert_eq!(g["orchestrator"], "kubeadm");
    let token = g["token"].as_str().context("token")?.to_string();
    assert!(
        Regex::new("^[a-z0-9]{6}\\.[a-z0-9]{16}$")?.is_match(&token),
        "{token}"
    );
    let (id, secret) = token.split_once('.').unwrap();
    let hash = openssl_ca_hash(&ca)?;
    assert_eq!(g["ca_cert_hash"], hash.as_str());
    assert_eq!(g["endpoint"], format!("127.0.0.1:{}", api.port));
    assert_eq!(
        g["command"],
        json!([
            "kubeadm",
            "join",
            format!("127.0.0.1:{}", api.port),
            "--token",
            token,
            "--discovery-token-ca-cert-hash",
            hash
        ])
    );
    let s = api
        .state()
        .secrets
        .get(&format!("bootstrap-token-{id}"))
        .cloned()
        .context("the Secret")?;
    let field = |k: &str| {
        String::from_utf8(
            STANDARD
                .decode(s["data"][k].as_str().unwrap_or_default())
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(field("token-secret"), secret);
    let desc = field("description");
    assert!(
        desc.contains("k8s-worker-1") && desc.contains("PASS"),
        "{desc}"
    );
    let exp = time::OffsetDateTime::parse(
        &field("expiration"),
        &time::format_description::well_known::Rfc3339,
    )?;
    assert_eq!(exp.unix_timestamp(), g["expires_unix"].as_i64().unwrap());
    assert!(
        !v.log().contains(secret),
        "the token secret is never logged"
    );

    // --exec runs kubeadm; it is not installed here, which must be exit 6.
    let out = join(&w1.tpm, &v, w1.state.path(), w1.name, true)?;
    assert_eq!(
        out.status.code(),
        Some(6),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("kubeadm"));
    assert_eq!(api.secrets_of("k8s-worker-1").len(), 2);

    // A node outside the group joins the default orchestrator (the JWS).
    let other = Node::new("db-1")?;
    let (out, _) = other.join(&v)?;
    assert_eq!(out.status.code(), Some(6), "it expected kubeadm: told so");
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected a `kubeadm` grant"));
    let out = attestor(
        &other.tpm,
        &v,
        other.state.path(),
        "db-1",
        "join",
        &["--orchestrator", "token", "--output", "json"],
    )?;
    assert_eq!(out.status.code(), Some(0));
    let j: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(j["grant"]["orchestrator"], "token");
    assert!(api.secrets_of("db-1").is_empty());

    // A failing node gets nothing.
    let bad = Node::new("k8s-intruder")?;
    bad.tamper()?;
    let (out, j) = bad.join(&v)?;
    assert_eq!(out.status.code(), Some(3));
    assert!(j["grant"].is_null());
    assert!(api.secrets_of("k8s-intruder").is_empty());

    // kubelet registers: the node's bootstrap tokens did their job and go.
    let foreign = json!({"key": "dedicated", "value": "gpu", "effect": "NoSchedule"});
    api.register_node("k8s-worker-1", json!([foreign]));
    let took = wait_for(
        "used bootstrap tokens deleted",
        Duration::from_secs(15),
        || Ok(api.secrets_of("k8s-worker-1").is_empty()),
    )?;
    eprintln!("registered node's bootstrap tokens deleted {took:?} after its Node appeared");

    // A second node passes (unregistered, holding a token) and fails: its token
    // is deleted; it has no Node to label.
    let w2 = Node::new("k8s-worker-2")?;
    assert_eq!(w2.join(&v)?.0.status.code(), Some(0));
    assert_eq!(api.secrets_of("k8s-worker-2").len(), 1);
    w2.tamper()?;
    assert_eq!(w2.join(&v)?.0.status.code(), Some(3));
    wait_for(
        "failed node's token deleted",
        Duration::from_secs(5),
        || Ok(api.secrets_of("k8s-worker-2").is_empty()),
    )?;

    // The registered node fails, while someone else writes its Node: the
    // isolation is re-read and retried, foreign taints and labels kept.
    api.state().conflict_next_patch = true;
    w1.tamper()?;
    let (out, _) = w1.join(&v)?;
    let failed_at = Instant::now();
    assert_eq!(out.status.code(), Some(3));
    wait_for("Node isolated", Duration::from_secs(10), || {
        Ok(api.node("k8s-worker-1")["metadata"]["labels"]["assay.dev/attested"] == "false")
    })?;
    let n = api.node("k8s-worker-1");
    let taints = n["spec"]["taints"].as_array().cloned().unwrap_or_default();
    assert!(taints.contains(&foreign), "{n}");
    assert!(
        taints
            .iter()
            .any(|t| t["key"] == "assay.dev/attested" && t["effect"] == "NoExecute"),
        "{n}"
    );
    assert_eq!(
        n["metadata"]["labels"]["concurrent-writer"], "was-here",
        "the concurrent write survived"
    );
    let log = api.state().log.clone();
    let patches: Vec<&Req> = log
        .iter()
        .filter(|r| r.method == "PATCH" && r.path == "/api/v1/nodes/k8s-worker-1")
        .collect();
    assert_eq!(
        patches.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![409, 200]
    );
    let patched = patches[1].at;
    let ms = if patched >= failed_at {
        (patched - failed_at).as_secs_f64() * 1e3
    } else {
        -((failed_at - patched).as_secs_f64() * 1e3)
    };
    eprintln!("Node tainted {ms:+.1} ms relative to the attestor exiting with the FAIL (incl. one 409 retry)");

    // Passes again (TPM reset): restored; only Assay's taint goes.
    w1.tpm.reboot()?;
    let (out, _) = w1.join(&v)?;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for("Node restored", Duration::from_secs(10), || {
        Ok(api.node("k8s-worker-1")["metadata"]["labels"]["assay.dev/attested"] == "true")
    })?;
    let n = api.node("k8s-worker-1");
    assert_eq!(n["spec"]["taints"], json!([foreign]), "{n}");

    // An operator revokes a node's grants: its bootstrap Secret goes.
    w2.tpm.reboot()?;
    assert_eq!(w2.join(&v)?.0.status.code(), Some(0));
    assert_eq!(api.secrets_of("k8s-worker-2").len(), 1);
    let out = v.cli(&["tokens", "revoke", "--node", "k8s-worker-2"])?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("bootstrap token Secret"));
    assert!(api.secrets_of("k8s-worker-2").is_empty());

    let errors = api.state().errors.clone();
    assert!(
        errors.is_empty(),
        "requests that a kube-apiserver would refuse: {errors:#?}"
    );
    let calls = api.state().log.len();
    assert!(calls > 10, "{calls} API calls");
    Ok(())
}

#[test]
fn a_failed_node_s_tokens_are_deleted_from_every_page_of_the_secret_list() -> Result<()> {
    const VICTIM: &str = "k8s-victim";
    let Cluster { _pki, api, v, .. } = cluster()?;
    // 1,200 of Assay's bootstrap Secrets, ids p00000..p01199: in key order
    // three pages of 500; the victim's at 20, 700, 1100, 1199 (pages 1, 2, 3,
    // 3), the rest three other nodes'. Then 150 of kubeadm's own (unlabelled).
    let victim_at = [20, 700, 1100, 1199];
    let bystanders = ["k8s-other-a", "k8s-other-b", "k8s-other-c"];
    for i in 0..1200 {
        let node = if victim_at.contains(&i) {
            VICTIM
        } else {
            bystanders[i % 3]
        };
        api.preload(&format!("p{i:05}"), Some(node));
    }
    for i in 0..150 {
        api.preload(&format!("q{i:05}"), None);
    }
    let others = || -> BTreeMap<String, Value> {
        api.state()
            .secrets
            .iter()
            .filter(|(_, s)| s["metadata"]["annotations"]["assay.dev/node"] != VICTIM)
            .map(|(k, s)| (k.clone(), s.clone()))
            .collect()
    };
    let before = others();
    assert_eq!(before.len(), 1196 + 150);

    // The fake pages as the real API server does.
    {
        let mut st = api.state();
        let q = |kv: &[(&str, &str)]| -> BTreeMap<String, String> {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let (code, all) = st.list_secrets(&q(&[]));
        assert_eq!((code, all["items"].as_array().unwrap().len()), (200, 1350));
        assert!(
            all["metadata"]["continue"].is_null(),
            "no limit: all at once"
        );
        let (_, p1) = st.list_secrets(&q(&[("limit", "500")]));
        assert_eq!(p1["items"].as_array().unwrap().len(), 500);
        assert_eq!(p1["metadata"]["remainingItemCount"], 850);
        let sel = ("labelSelector", "app.kubernetes.io/managed-by=assay");
        let (_, p1) = st.list_secrets(&q(&[sel, ("limit", "500")]));
        assert!(
            p1["metadata"]["remainingItemCount"].is_null(),
            "not counted under a selector"
        );
        let t = p1["metadata"]["continue"].as_str().unwrap().to_string();
        let (_, p3) = st.list_secrets(&q(&[sel, ("limit", "700"), ("continue", &t)]));
        assert_eq!(p3["items"].as_array().unwrap().len(), 700);
        assert!(
            p3["metadata"]["continue"].is_string(),
            "keys remain: another page, empty"
        );
        assert_eq!(p3["items"][0]["metadata"]["name"], "bootstrap-token-p00500");
        st.log.clear();
    }

    // The victim passes (its own token: a 5th) and fails: every one goes.
    let n = Node::new(VICTIM)?;
    let (out, _) = n.join(&v)?;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        v.log()
    );
    assert_eq!(api.secrets_of(VICTIM).len(), 5);
    n.tamper()?;
    assert_eq!(n.join(&v)?.0.status.code(), Some(3));
    wait_for(
        "the failed node's tokens deleted from every page",
        Duration::from_secs(15),
        || Ok(api.secrets_of(VICTIM).is_empty()),
    )
    .with_context(|| {
        format!(
            "left: {:?}\n{}",
            api.secrets_of(VICTIM)
                .iter()
                .map(|s| s["metadata"]["name"].clone())
                .collect::<Vec<_>>(),
            v.log()
        )
    })?;
    assert!(others() == before, "no other Secret touched");
    let lists = api.lists();
    assert!(
        lists
            .iter()
            .all(|(p, c)| p.contains("&limit=500") && *c == 200),
        "{lists:#?}"
    );
    assert!(
        lists.iter().any(|(p, _)| p.contains("&continue=")),
        "{lists:#?}"
    );

    // A compaction mid-list: 410 Gone on the next page; the list starts over
    // and the revocation still reaches page 3.
    api.preload("p01200", Some(VICTIM));
    api.state().compact_during_lists = 1;
    let revoke = || v.cli(&["tokens", "revoke", "--node", VICTIM]);
    let out = revoke()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(api.secrets_of(VICTIM).is_empty());
    assert!(
        api.lists().iter().any(|(_, c)| *c == 410),
        "a 410 was answered"
    );

    // Compacted under every list: a clear error, nothing done on half a list.
    api.preload("p01201", Some(VICTIM));
    api.state().compact_during_lists = u32::MAX;
    let out = revoke()?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("410 Gone) twice"),
        "{err}"
    );
    assert_eq!(api.secrets_of(VICTIM).len(), 1);

    // A server whose list never ends: refused past 1,000 pages.
    {
        let mut st = api.state();
        st.compact_during_lists = 0;
        st.endless_list = true;
    }
    let t = Instant::now();
    let out = revoke()?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("more than 1000 pages"),
        "{err}"
    );
    eprintln!("1,000 pages read and refused in {:?}", t.elapsed());
    assert_eq!(api.secrets_of(VICTIM).len(), 1);
    api.state().endless_list = false;
    let out = revoke()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(api.secrets_of(VICTIM).is_empty());

    assert!(others() == before, "no other Secret touched");
    let errors = api.state().errors.clone();
    assert!(
        errors.is_empty(),
        "requests that a kube-apiserver would refuse: {errors:#?}"
    );
    Ok(())
}

/// The verifier's client to kube-apiserver verifies the server: a certificate
/// from another CA than `[join.kubernetes] ca`, or from that CA for another
/// name than the `api_server` host, fails the handshake, so no request (and
/// no service account token) reaches that server and the node gets no
/// grant. The control: the same CA's certificate for the right name works.
#[test]
fn a_kube_apiserver_with_a_certificate_from_another_ca_or_for_another_name_is_refused() -> Result<()>
{
    let cluster_ca = assay_tests::Pki::new("Cluster CA")?;
    let other_ca = assay_tests::Pki::new("Another CA")?;
    let cases = [
        (
            "another CA",
            other_ca.server("api", &["127.0.0.1", "localhost"])?,
            Some("UnknownIssuer"),
        ),
        (
            "another name",
            cluster_ca.server("elsewhere", &["kube.example.org"])?,
            Some("not valid for name"),
        ),
        (
            "the control",
            cluster_ca.server("api", &["127.0.0.1"])?,
            None,
        ),
    ];
    for (i, (case, (cert, key), refusal)) in cases.into_iter().enumerate() {
        let api = FakeApi::start(&cert, &key)?;
        let v = verifier_for(&api, &cluster_ca.ca_pem(), cluster_ca.dir())?;
        let (out, j) = Node::new(["k8s-tls-0", "k8s-tls-1", "k8s-tls-2"][i])?.join(&v)?;
        let text = format!(
            "{case}: {}\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            v.log()
        );
        let join_errors = assay_tests::metric(
            &assay_tests::scrape(&v)?,
            "assay_verifier_join_errors_total{orchestrator=\"kubeadm\"}",
        );
        match refusal {
            Some(why) => {
                assert_eq!(join_errors, Some(1.0), "{case}: counted once");
                assert_ne!(out.status.code(), Some(0), "{text}");
                assert!(j["grant"].is_null(), "{text}");
                assert!(text.contains(why), "the refusal names {why}: {text}");
                assert!(
                    api.state().log.is_empty(),
                    "{case}: no request got through the handshake"
                );
            }
            None => {
                assert_eq!(join_errors, None, "{case}: no join error");
                assert_eq!(out.status.code(), Some(0), "{text}");
                assert_eq!(j["grant"]["orchestrator"], "kubeadm", "{text}");
                assert!(!api.state().log.is_empty());
            }
        }
    }
    Ok(())
}
