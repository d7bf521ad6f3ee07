//! The verifier's flows as plain synchronous functions over the store and the
//! pure core, one file per flow: `enroll.rs` (Enroll, Activate), `attest.rs`
//! (Challenge, Attest), `redeem.rs` (token redemption), `reverify.rs`
//! (`audit reverify`). The gRPC layer (`api/`) only converts messages and maps
//! [`ServiceError`] to status codes; `membership` acts on verdicts afterwards.

mod attest;
mod enroll;
mod inventory;
pub mod policies;
mod redeem;
mod reverify;

pub use self::attest::{AttestInput, AttestOutput, ChallengeOutput};
pub use self::enroll::EnrollOutput;
pub use self::inventory::{EntryInput, NodeView, Removed, MAX_ENTRIES_PER_ADD, MAX_LABELS};
pub use self::policies::{
    ApplyInput, ApplyOutput, DryOutcome, DryRunNode, PolicySet, DEFAULT_POLICY, POLICY_POLL,
};
pub use self::redeem::RedeemOutput;
pub use self::reverify::Reverified;

use std::sync::Arc;

use assay_core::ek::TrustAnchors;
use assay_core::enroll::EnrollError;
use assay_core::verdict::Claim;
use rand::RngCore;

use crate::clock::now_unix;
use crate::config::Config;
use crate::store::{HistoryRecord, Storage, StoreError, UnauthenticatedAttempts};
use crate::token::{TokenError, TokenSigner};

/// Largest node id accepted.
pub const MAX_NODE_ID: usize = 253;
/// Largest EK certificate, TPM2B_PUBLIC, TPMS_ATTEST or TPMT_SIGNATURE accepted.
pub const MAX_BLOB: usize = 16 * 1024;
/// Nonce size issued (and the only size accepted back).
pub const NONCE_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("invalid request: {0}")]
    BadRequest(String),
    #[error("enrollment refused: {0}")]
    EnrollRefused(#[from] EnrollError),
    #[error("node `{0}` is already enrolled with a different EK; if this is a replaced TPM, remove the node first (`assay-verifier node remove {0}`)")]
    EkChanged(String),
    #[error("node `{node_id}` refused: this TPM's EK is enrolled as node `{holder}`, and one EK holds one node id; to rename the node, run `assay-verifier node move {holder} {node_id}`, then `assay-attestor join --node-id {node_id} --rename` on the node")]
    EkHeld { node_id: String, holder: String },
    #[error("node `{node_id}` refused: this TPM's EK is not registered, and the verifier enrolls only registered EKs (enrollment mode `inventory`); an operator registers it with {}", register_hint(.node_id, .cert_sha256.as_deref(), .public_sha256))]
    NotRegistered {
        node_id: String,
        cert_sha256: Option<String>,
        public_sha256: String,
    },
    #[error("node `{node_id}` refused: this TPM's EK is registered as node `{registered}`; join with --node-id {registered}, or an operator renames it (`assay-verifier node move {registered} {node_id}`)")]
    RegisteredAs { node_id: String, registered: String },
    #[error("node `{0}` refused: its registration was removed or moved during enrollment; check `assay-verifier node show {0}` and enroll again")]
    RegistrationChanged(String),
    #[error("no EK certificate sent (the TPM has none in NV); in enrollment mode `open` an EK certificate chaining to a configured root is required. Register the TPM's EK public area (`assay-verifier node add ID --ek-public-sha256 HASH`, the hash from `assay-attestor ek`) and use enrollment mode `inventory`, or fetch the certificate from the TPM vendor")]
    NoEkCertificate,
    #[error("nothing registered: {}", .0.join("; "))]
    InventoryConflict(Vec<String>),
    #[error("node `{0}` is neither registered nor enrolled")]
    UnknownNode(String),
    #[error("node id `{0}` is already registered or enrolled; remove it first")]
    NodeIdTaken(String),
    #[error("enrollment `{0}` is unknown, expired or already completed; enroll again")]
    EnrollmentUnknown(String),
    #[error("credential activation failed: the node did not recover the credential, so its AK is not bound to a trusted EK")]
    ActivationFailed,
    #[error("node `{0}` is not enrolled (or its AK activation was never completed); run `assay-attestor join` to enroll")]
    NotEnrolled(String),
    #[error("policy refused: {0}")]
    PolicyRefused(String),
    #[error("join token refused: {0}")]
    Token(#[from] TokenError),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("the orchestrator: {0}")]
    Join(#[from] crate::join::JoinError),
    #[error("{0}")]
    Exhausted(#[from] crate::limits::Exhausted),
    #[error("internal error: {0}")]
    Internal(String),
}

fn register_hint(node_id: &str, cert_sha256: Option<&str>, public_sha256: &str) -> String {
    match cert_sha256 {
        Some(c) => format!(
            "`assay-verifier node add {node_id} --ek-sha256 {c}` (the SHA-256 of its EK \
             certificate), or `--ek-cert FILE`"
        ),
        None => format!(
            "`assay-verifier node add {node_id} --ek-public-sha256 {public_sha256}` (the SHA-256 \
             of its EK public area: this TPM sent no EK certificate)"
        ),
    }
}

/// The verifier: configuration, trust anchors, policy, store and token key.
pub struct Verifier {
    pub config: Config,
    /// EK roots, intermediates and CRLs; replaced whole when a CRL file changes.
    pub anchors: std::sync::RwLock<Arc<TrustAnchors>>,
    /// The named policies in force (`service::policies`), reloaded when the
    /// store's policy epoch moves.
    pub policies: std::sync::RwLock<Arc<PolicySet>>,
    /// `policy_signing_keys`: who may sign policies.
    pub policy_keys: Option<crate::policy_signature::PolicyKeys>,
    pub store: Box<dyn Storage>,
    /// Measured-boot judgements by (policy, UEFI log, quoted PCRs): a fleet
    /// booted from one image is judged once per distinct log.
    pub measured_boot_cache: assay_core::verify::MeasuredBootCache,
    pub tokens: TokenSigner,
    /// The orchestrator's join issuer (`[join]`).
    pub join: std::sync::Arc<dyn crate::join::JoinIssuer>,
    /// Isolation and restore notifications (`[webhook]`).
    pub webhook: Option<std::sync::Arc<crate::webhook::Webhook>>,
    /// Nodes whose isolation the orchestrator is being asked for right now,
    /// so the upkeep's retry never races the attest path's first attempt.
    pub isolating: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Rate limits of the node-facing RPCs (`[limits]`).
    pub rate_limits: crate::limits::RateLimits,
    /// Nonces issued and not yet used, per node and in all.
    pub nonces: crate::limits::Outstanding,
    /// Pending enrollments, per EK and in all.
    pub enrollments: crate::limits::Outstanding,
    /// Unauthenticated attempts seen since the last flush to the store, by
    /// node id (enrolled nodes only, so bounded by them).
    pub attempts: std::sync::Mutex<std::collections::HashMap<String, UnauthenticatedAttempts>>,
}

/// How long after its expiry an expired nonce, enrollment or token may still
/// be in the store: the sweeper's grace plus one sweep interval. The caps
/// count an unused entry this long, so they bound the store as well.
pub const STORE_LINGER_SECS: i64 =
    crate::limits::SWEEP_GRACE_SECS + crate::limits::SWEEP_INTERVAL.as_secs() as i64;

impl Verifier {
    /// The caps' bookkeeping for a configuration.
    pub fn outstanding(
        limits: &crate::limits::Limits,
    ) -> (crate::limits::Outstanding, crate::limits::Outstanding) {
        (
            crate::limits::Outstanding::new(
                "nonces",
                "node",
                "limits.nonces_per_node and limits.nonces_total",
                limits.nonces_per_node,
                limits.nonces_total,
            ),
            crate::limits::Outstanding::new(
                "pending enrollments",
                "EK",
                "limits.enrollments_per_ek and limits.enrollments_total",
                limits.enrollments_per_ek,
                limits.enrollments_total,
            ),
        )
    }

    /// Writes the unauthenticated attempts counted since the last call to
    /// the store; how many attempts, over how many nodes.
    pub fn flush_attempts(&self) -> Result<(u64, usize), StoreError> {
        let seen = std::mem::take(&mut *self.attempts.lock().unwrap_or_else(|p| p.into_inner()));
        let mut total = 0;
        for (node, a) in &seen {
            self.store.add_attempts(node, a)?;
            total += a.count;
        }
        Ok((total, seen.len()))
    }

    /// The EK trust anchors in force.
    pub fn anchors(&self) -> Arc<TrustAnchors> {
        match self.anchors.read() {
            Ok(a) => Arc::clone(&a),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    pub fn set_anchors(&self, a: TrustAnchors) {
        match self.anchors.write() {
            Ok(mut g) => *g = Arc::new(a),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(a),
        }
    }

    /// Appends a record that is not a verdict (`admin`, `stale`, `webhook`)
    /// under the node's policy in force (`default` for none), durably; the
    /// record as appended.
    pub fn append_event(
        &self,
        kind: &str,
        node_id: String,
        passed: bool,
        claim: Claim,
        evidence_digest: String,
    ) -> Result<HistoryRecord, StoreError> {
        let (policy_name, policy_digest, policy_version) = self.policy_of_record(&node_id);
        self.store.append_history(HistoryRecord {
            seq: 0,
            node_id,
            time_unix: now_unix(),
            passed,
            claims: vec![claim],
            policy_name,
            policy_digest,
            policy_version,
            evidence_digest,
            prev_hash: String::new(),
            kind: kind.into(),
        })
    }

    /// The policy a record that is not a verdict is written under: the
    /// node's current version (`default`'s for no node).
    pub fn policy_of_record(&self, node_id: &str) -> (String, String, u64) {
        let node = (!node_id.is_empty())
            .then(|| self.node_policy(node_id).ok())
            .flatten();
        let (set, name) = match node {
            Some(p) => (p.set, p.name),
            None => (self.policy_set(), DEFAULT_POLICY.to_string()),
        };
        match set.current(&name) {
            Some(a) => (name, a.version.digest.clone(), a.version.version),
            None => (name, String::new(), 0),
        }
    }
}

/// An `admin` history record: one `admin.action` claim saying what was done
/// (`actual`) at whose request (`expected`, `location`), under `policy`
/// (name, digest, version).
pub(crate) fn admin_record(
    node_id: &str,
    expected: &str,
    actual: String,
    location: &str,
    policy: (String, String, u64),
) -> HistoryRecord {
    HistoryRecord {
        seq: 0,
        node_id: node_id.into(),
        time_unix: now_unix(),
        passed: true,
        claims: vec![Claim::new("admin.action", true, expected, actual, location)],
        policy_name: policy.0,
        policy_digest: policy.1,
        policy_version: policy.2,
        evidence_digest: String::new(),
        prev_hash: String::new(),
        kind: "admin".into(),
    }
}

/// What a history record is, in one word (`history`, the fleet page): a
/// verdict's PASS/FAIL, STALE for a node that missed its window, SENT/UNSENT
/// for a webhook delivery, ADMIN for an operator's action, ENROLL for an AK
/// bound to a node's EK.
pub fn record_label(kind: &str, passed: bool) -> &'static str {
    match (kind, passed) {
        ("stale", _) => "STALE",
        ("admin", _) => "ADMIN",
        ("enroll", _) => "ENROLL",
        ("webhook", true) => "SENT",
        ("webhook", false) => "UNSENT",
        (_, true) => "PASS",
        (_, false) => "FAIL",
    }
}

/// A node's standing from its latest record at some time (see
/// [`crate::store::Storage::fleet_at`]): "pass", "fail", "stale" (its
/// latest record says it did not pass again in time) or "unknown" (no
/// verdict yet).
pub fn standing(latest: Option<&HistoryRecord>) -> &'static str {
    match latest.map(|r| (r.kind.as_str(), r.passed)) {
        None => "unknown",
        Some(("stale", _)) => "stale",
        Some((_, true)) => "pass",
        Some((_, false)) => "fail",
    }
}

/// Runs `f` on a blocking thread (it does crypto and durable writes) and
/// waits for it.
pub async fn blocking<T: Send + 'static>(
    v: &Arc<Verifier>,
    f: impl FnOnce(&Verifier) -> Result<T, ServiceError> + Send + 'static,
) -> Result<T, ServiceError> {
    let v = Arc::clone(v);
    tokio::task::spawn_blocking(move || f(&v))
        .await
        .map_err(|e| ServiceError::Internal(format!("worker failed: {e}")))?
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b
}

pub fn validate_node_id(id: &str) -> Result<(), ServiceError> {
    // "." and ".." would be path segments wherever an id reaches a URL or a
    // file name; everything else of the set is inert there.
    let ok = !id.is_empty()
        && id != "."
        && id != ".."
        && id.len() <= MAX_NODE_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if ok {
        Ok(())
    } else {
        Err(ServiceError::BadRequest(format!(
            "node id `{}` must be 1 to {MAX_NODE_ID} characters of [A-Za-z0-9._-], and not `.` or `..`",
            id.chars().take(64).collect::<String>().escape_debug()
        )))
    }
}

fn bounded(what: &str, b: &[u8]) -> Result<(), ServiceError> {
    if b.is_empty() || b.len() > MAX_BLOB {
        return Err(ServiceError::BadRequest(format!(
            "{what} is {} bytes; expected 1 to {MAX_BLOB}",
            b.len()
        )));
    }
    Ok(())
}
