//! Durable state behind one trait, [`Storage`], with two backends: sled
//! (embedded, the default) and PostgreSQL (several verifier replicas).
//! Nodes, pending enrollments, nonces, join tokens, the hash-chained verdict
//! history, evidence and policies.
//!
//! Every mutating call flushes before it returns, so whatever the service
//! acknowledges to a caller is on disk. Single-use objects (nonces, tokens,
//! enrollments) are consumed with an atomic read-modify-write, so two
//! concurrent uses cannot both succeed.

mod embedded;
mod postgres;

pub use self::embedded::SledStore;
pub use self::postgres::{PgConfig, PgStore};

use std::path::Path;

use assay_core::tpm::attest::ClockInfo;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "opening the database at {path}: {source} (is another assay-verifier using this data_dir?)"
    )]
    Open { path: String, source: ::sled::Error },
    #[error("database error: {0}")]
    Db(#[from] ::sled::Error),
    #[error("PostgreSQL: {0}")]
    Postgres(String),
    #[error("stored record {key} in `{tree}` is unreadable: {reason}")]
    Corrupt {
        tree: &'static str,
        key: String,
        reason: String,
    },
}

/// A node whose AK is bound to its EK (activation completed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub node_id: String,
    /// Hex SHA-256 of the DER EK certificate the node enrolled with.
    pub ek_cert_sha256: String,
    /// Hex TPM2B_PUBLIC of the EK.
    pub ek_public: String,
    /// Hex TPM2B_PUBLIC of the bound AK.
    pub ak_public: String,
    /// Hex TPM name of the bound AK.
    pub ak_name: String,
    pub activated_unix: i64,
    /// Clock info of the last quote whose signature verified (rollback detection).
    pub last_clock: Option<ClockInfo>,
    /// When the node last passed; a node that does not pass again within
    /// `stale_after_secs` is stale.
    #[serde(default)]
    pub last_pass_unix: Option<i64>,
}

/// An enrollment waiting for the node's proof of credential activation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingEnrollment {
    pub node_id: String,
    pub ek_cert_sha256: String,
    pub ek_public: String,
    pub ak_public: String,
    pub ak_name: String,
    /// Hex SHA-256 of the credential; the credential itself is never stored.
    pub credential_sha256: String,
    pub expires_unix: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NonceRecord {
    pub node_id: String,
    pub expires_unix: i64,
    pub used: bool,
}

/// A node isolated after a failed attestation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quarantine {
    pub since_unix: i64,
    /// The orchestrator confirmed the isolation (drain, …); retried until it does.
    pub applied: bool,
}

/// A join token, stored under the SHA-256 of the token: the token itself never is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenRecord {
    pub node_id: String,
    pub ak_name: String,
    pub expires_unix: i64,
    pub used: bool,
    /// Revoked (the node failed attestation, or an operator) before it was used.
    #[serde(default)]
    pub revoked: bool,
    #[serde(default)]
    pub issued_unix: i64,
}

impl TokenRecord {
    /// `unused`, `used`, `revoked` or `expired`.
    pub fn state(&self, now_unix: i64) -> &'static str {
        match (self.revoked, self.used) {
            (true, _) => "revoked",
            (false, true) => "used",
            (false, false) if self.expires_unix <= now_unix => "expired",
            _ => "unused",
        }
    }
}

/// What revoking one token by id found.
#[derive(Debug, Clone)]
pub enum RevokeOne {
    Revoked(TokenRecord),
    /// Already used or revoked: nothing to do.
    Spent(TokenRecord),
    NotFound,
    /// The prefix names more than one token.
    Ambiguous(usize),
}

/// Shortest token id prefix accepted by [`Store::revoke_token`] (hex digits).
pub const MIN_TOKEN_ID_PREFIX: usize = 8;

/// A token's public id: the hex SHA-256 of the token (what the store is keyed by).
pub fn token_id(token: &str) -> String {
    hex::encode(token_key(token))
}

/// One verdict in the history. `hash` chains it to the previous record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryRecord {
    pub seq: u64,
    pub node_id: String,
    pub time_unix: i64,
    pub passed: bool,
    pub claims: Vec<assay_core::verdict::Claim>,
    pub policy_name: String,
    pub policy_digest: String,
    pub evidence_digest: String,
    /// Hex SHA-256 of the previous record's canonical JSON; empty for the first.
    pub prev_hash: String,
    /// Empty for a verdict; `stale` (no pass within the window), `webhook` (a
    /// notification's delivery). Left out of the JSON when empty, so records
    /// written before it existed hash as they did.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
}

impl HistoryRecord {
    /// SHA-256 of the record's canonical JSON (the value the next record chains to).
    pub fn hash(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        hex::encode(Sha256::digest(json))
    }
}

/// What consuming a single-use object found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Consumed<T> {
    /// It existed and was unused; it is now used.
    Fresh(T),
    /// It existed and had been used before.
    AlreadyUsed(T),
    /// It never existed (or was purged).
    Unknown,
}

/// What one attestation's verdict writes.
#[derive(Debug, Clone)]
pub struct VerdictWrite<'a> {
    /// The history record (its seq and prev_hash are assigned).
    pub record: HistoryRecord,
    /// The evidence behind it (kept under the record's seq) and its logs.
    pub evidence: Option<StoredEvidence>,
    pub logs: [Option<&'a [u8]>; 3],
    /// An authentic quote's clock: the node's new rollback baseline.
    pub clock: Option<ClockInfo>,
    /// A pass at this time: the start of the node's freshness window.
    pub passed_at: Option<i64>,
    /// A pass's join token (stored by its hash) and record.
    pub token: Option<(&'a str, TokenRecord)>,
}

/// Where the verifier keeps its state (`[storage]`).
#[derive(Debug, Clone, Default)]
pub enum StorageConfig {
    /// sled in `<data_dir>/db`: one verifier, nothing to set up.
    #[default]
    Sled,
    /// PostgreSQL, shared by any number of verifier replicas.
    Postgres(PgConfig),
}

/// Opens the configured backend (`data_dir` is where sled lives).
pub fn open(config: &StorageConfig, data_dir: &Path) -> Result<Box<dyn Storage>, StoreError> {
    Ok(match config {
        StorageConfig::Sled => Box::new(SledStore::open(&data_dir.join("db"))?),
        StorageConfig::Postgres(pg) => Box::new(PgStore::open(pg)?),
    })
}

/// The verifier's durable state. Every mutating call is durable when it
/// returns (sled flush / committed transaction), so whatever the service
/// acknowledges is kept — except issuing and using a nonce (`put_nonce`,
/// `consume_nonce`: see each). Calls block: the service makes them from
/// blocking threads.
pub trait Storage: Send + Sync {
    // ---- nodes

    fn node(&self, node_id: &str) -> Result<Option<NodeRecord>, StoreError>;

    fn put_node(&self, node: &NodeRecord) -> Result<(), StoreError>;

    fn remove_node(&self, node_id: &str) -> Result<bool, StoreError>;

    /// Records a pass at `now_unix` (the start of the node's freshness window).
    fn set_last_pass(&self, node_id: &str, now_unix: i64) -> Result<(), StoreError>;

    /// Nodes whose last pass is older than `cutoff_unix` (nodes that never passed are not listed).
    fn nodes_passed_before(&self, cutoff_unix: i64) -> Result<Vec<(String, i64)>, StoreError>;

    /// Records the clock of the last verified quote.
    fn set_last_clock(&self, node_id: &str, clock: ClockInfo) -> Result<(), StoreError>;

    // ---- enrollments

    fn put_enrollment(&self, id: &str, e: &PendingEnrollment) -> Result<(), StoreError>;

    /// Removes and returns a pending enrollment: each enrollment can be completed once.
    fn take_enrollment(&self, id: &str) -> Result<Option<PendingEnrollment>, StoreError>;

    // ---- nonces

    /// Keeps an issued nonce. Visible to every verifier sharing the store
    /// on return, but need not be durable yet: a nonce lost in a crash only
    /// makes its node's attestation fail `nonce.issued` (it asks again);
    /// using one is durable (`consume_nonce`).
    fn put_nonce(&self, nonce: &[u8], rec: &NonceRecord) -> Result<(), StoreError>;

    /// Marks a nonce used, atomically, and says what it was before. The use
    /// is visible to every verifier sharing the store on return; it is
    /// durable no later than the verdict recorded after it
    /// (`record_verdict`), before which nothing is answered: a use a crash
    /// loses was never acknowledged.
    fn consume_nonce(&self, nonce: &[u8]) -> Result<Consumed<NonceRecord>, StoreError>;

    /// Drops nonces, enrollments and join tokens that expired before `cutoff_unix`;
    /// returns how many. History is never purged here.
    fn purge_expired(&self, cutoff_unix: i64) -> Result<usize, StoreError>;

    // ---- tokens

    fn put_token(&self, token: &str, rec: &TokenRecord) -> Result<(), StoreError>;

    /// Revokes every unused token of `node_id` (it failed attestation); how many.
    fn revoke_node_tokens(&self, node_id: &str) -> Result<usize, StoreError>;

    /// Tokens, newest expiry first, optionally of one node and only unused
    /// ones; at most `limit`. Each with its id (hex SHA-256 of the token).
    fn tokens(
        &self,
        node_id: Option<&str>,
        unused_only: bool,
        now_unix: i64,
        limit: usize,
    ) -> Result<Vec<(String, TokenRecord)>, StoreError>;

    /// Revokes the unused token whose id starts with `id_prefix` (hex, at
    /// least [`MIN_TOKEN_ID_PREFIX`] digits; the caller checks).
    fn revoke_token(&self, id_prefix: &str) -> Result<RevokeOne, StoreError>;

    // ---- quarantine

    fn set_quarantine(&self, node_id: &str, q: Option<&Quarantine>) -> Result<(), StoreError>;

    fn quarantine(&self, node_id: &str) -> Result<Option<Quarantine>, StoreError>;

    /// Quarantines the orchestrator has not confirmed yet.
    fn unapplied_quarantines(&self) -> Result<Vec<String>, StoreError>;

    /// Marks a token used, atomically, and says what it was before.
    fn consume_token(&self, token: &str) -> Result<Consumed<TokenRecord>, StoreError>;

    // ---- history

    /// Appends a verdict, chaining it to the previous record; durable on return.
    fn append_history(&self, rec: HistoryRecord) -> Result<HistoryRecord, StoreError> {
        let mut out = self.append_history_batch(vec![rec])?;
        Ok(out.remove(0))
    }

    /// Appends records in order, each chained to the one before, in one
    /// transaction and one flush; durable on return.
    fn append_history_batch(
        &self,
        recs: Vec<HistoryRecord>,
    ) -> Result<Vec<HistoryRecord>, StoreError>;

    /// History matching `q`, newest first, at most `q.limit`; and the cursor
    /// for the next page (`before_seq`), or 0 when this is the last.
    /// Everything one verdict writes (see [`VerdictWrite`]), durable together
    /// on return: one flush / one transaction instead of one per write.
    fn record_verdict(&self, w: VerdictWrite<'_>) -> Result<HistoryRecord, StoreError> {
        let node_id = w.record.node_id.clone();
        let rec = self.append_history(w.record)?;
        if let Some(ev) = w.evidence {
            self.put_evidence(rec.seq, ev, w.logs)?;
        }
        if let Some(c) = w.clock {
            self.set_last_clock(&node_id, c)?;
        }
        if let Some(t) = w.passed_at {
            self.set_last_pass(&node_id, t)?;
        }
        if let Some((token, t)) = &w.token {
            self.put_token(token, t)?;
        }
        Ok(rec)
    }

    fn query_history(&self, q: &HistoryQuery) -> Result<(Vec<HistoryRecord>, u64), StoreError>;

    /// Each node's standing at time `at`: its last verdict or stale record at
    /// or before `at` (None for nodes with no such record). Nodes are those
    /// with any history.
    fn fleet_at(&self, at: i64) -> Result<Vec<(String, Option<HistoryRecord>)>, StoreError>;

    /// The record `seq`, if there is one.
    fn history_record(&self, seq: u64) -> Result<Option<HistoryRecord>, StoreError>;

    // ---- evidence and policies (audit reverify)

    /// Keeps a policy file's text under its digest (idempotent).
    fn put_policy(&self, digest_hex: &str, text: &str) -> Result<(), StoreError>;

    /// The digest of the policy the verifier last started with.
    fn current_policy(&self) -> Result<Option<String>, StoreError>;

    fn set_current_policy(&self, digest_hex: &str) -> Result<(), StoreError>;

    fn policy_text(&self, digest_hex: &str) -> Result<Option<String>, StoreError>;

    /// Keeps the evidence behind record `seq`; logs are stored once by digest.
    fn put_evidence(
        &self,
        seq: u64,
        ev: StoredEvidence,
        logs: [Option<&[u8]>; 3],
    ) -> Result<(), StoreError>;

    /// The evidence behind record `seq` and its logs (UEFI, IMA, CEL).
    fn evidence(&self, seq: u64) -> Result<Option<(StoredEvidence, Logs)>, StoreError>;

    /// Deletes the oldest evidence until what is kept is newer than
    /// `before_unix`, at most `max_count` entries and `max_bytes` bytes
    /// (logs counted once). Records stay; only their evidence goes. How many.
    fn prune_evidence(
        &self,
        before_unix: i64,
        max_count: usize,
        max_bytes: u64,
    ) -> Result<usize, StoreError>;

    /// Checkpoints covering records `lo..=hi`, ascending.
    fn checkpoints_between(
        &self,
        lo: u64,
        hi: u64,
    ) -> Result<Vec<crate::audit::Checkpoint>, StoreError>;

    /// Bytes of evidence kept (logs counted once) and entries.
    fn evidence_usage(&self) -> Result<(u64, usize), StoreError>;

    /// The newest record, if any.
    fn history_head(&self) -> Result<Option<HistoryRecord>, StoreError>;

    /// Records from `from_seq` on, ascending, each with the seq its key says;
    /// at most `limit`.
    fn history_found(
        &self,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<crate::audit::Found>, StoreError>;

    /// Every record, ascending, lazily (for `audit verify` over any size).
    fn history_iter(
        &self,
    ) -> Box<dyn Iterator<Item = Result<crate::audit::Found, StoreError>> + '_> {
        const PAGE: usize = 10_000;
        let mut next = 1u64;
        let mut page = std::collections::VecDeque::new();
        let mut done = false;
        Box::new(std::iter::from_fn(move || {
            if page.is_empty() && !done {
                match self.history_found(next, PAGE) {
                    Ok(found) => {
                        done = found.len() < PAGE;
                        if let Some(last) = found.last() {
                            next = last.key_seq.saturating_add(1);
                        }
                        page.extend(found);
                    }
                    Err(e) => {
                        done = true;
                        return Some(Err(e));
                    }
                }
            }
            page.pop_front().map(Ok)
        }))
    }

    /// Records whose time is in `[from_unix, to_unix]`, ascending; at most `limit`.
    /// A scan: the history is keyed by sequence number.
    fn history_between(
        &self,
        from_unix: i64,
        to_unix: i64,
        limit: usize,
    ) -> Result<Vec<HistoryRecord>, StoreError>;

    fn add_checkpoint(&self, c: &crate::audit::Checkpoint) -> Result<(), StoreError>;

    /// Checkpoints, ascending.
    fn checkpoints(&self) -> Result<Vec<crate::audit::Checkpoint>, StoreError>;

    fn last_checkpoint(&self) -> Result<Option<crate::audit::Checkpoint>, StoreError>;

    /// Re-checks the hash chain from the first record; returns the number of
    /// records, or the sequence number of the first record whose link is broken.
    fn verify_history_chain(&self) -> Result<Result<u64, u64>, StoreError> {
        let mut prev: Option<HistoryRecord> = None;
        let mut count = 0;
        for found in self.history_iter() {
            let r = found?.record;
            let expected = prev.as_ref().map(HistoryRecord::hash).unwrap_or_default();
            if r.prev_hash != expected || prev.as_ref().is_some_and(|p| p.seq + 1 != r.seq) {
                return Ok(Err(r.seq));
            }
            count += 1;
            prev = Some(r);
        }
        Ok(Ok(count))
    }
}
/// The UEFI, IMA and CEL logs of one piece of evidence.
pub type Logs = [Option<Vec<u8>>; 3];

/// Most of a node's newest verdicts [`latest_authentic_evidence`] looks through.
const AUTHENTIC_SCAN: usize = 1000;

/// The evidence kept with `node_id`'s newest verdict whose quote was
/// authentic (every `nonce.*` and `quote.*` claim passed: the node's TPM
/// really reported it, whatever the policy made of it), among its newest
/// 1,000 verdicts; `None` when there is none or its evidence was not kept.
pub fn latest_authentic_evidence(
    store: &dyn Storage,
    node_id: &str,
) -> Result<Option<(HistoryRecord, StoredEvidence, Logs)>, StoreError> {
    let mut q = HistoryQuery {
        node_id: Some(node_id.to_string()),
        verdict: Some("verdict".into()),
        limit: 100,
        ..Default::default()
    };
    let mut seen = 0;
    while seen < AUTHENTIC_SCAN {
        let (recs, next) = store.query_history(&q)?;
        seen += recs.len();
        if let Some(r) = recs
            .into_iter()
            .find(|r| assay_core::verdict::quote_authentic(&r.claims))
        {
            return Ok(store.evidence(r.seq)?.map(|(ev, logs)| (r, ev, logs)));
        }
        if next == 0 {
            break;
        }
        q.before_seq = Some(next);
    }
    Ok(None)
}

/// The evidence behind one record, as kept for `audit reverify`: what the
/// node sent and the verifier state the verdict depended on (AK, previous
/// TPM clock). Binary fields are hex; logs are named by their SHA-256.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEvidence {
    pub node_id: String,
    pub time_unix: i64,
    pub ak_public: String,
    pub nonce: String,
    pub attest: String,
    pub signature: String,
    pub pcrs_sha256: Vec<(u32, String)>,
    pub previous_clock: Option<ClockInfo>,
    pub uefi_log: Option<String>,
    pub ima_log: Option<String>,
    pub cel_log: Option<String>,
    /// What keeping it cost (logs counted only when first stored).
    pub bytes: u64,
}

/// A history query: every filter optional.
#[derive(Debug, Clone, Default)]
pub struct HistoryQuery {
    pub node_id: Option<String>,
    pub from_unix: Option<i64>,
    pub to_unix: Option<i64>,
    /// `pass`, `fail`, `verdict` (either), or a record kind (`stale`, `webhook`, `admin`).
    pub verdict: Option<String>,
    /// A prefix of the policy digest (hex).
    pub policy_digest: Option<String>,
    /// Records where this claim failed.
    pub failed_claim: Option<String>,
    /// Only records older than this (paging).
    pub before_seq: Option<u64>,
    pub limit: usize,
}

impl HistoryQuery {
    pub(crate) fn matches(&self, r: &HistoryRecord) -> bool {
        let verdict_ok = match self.verdict.as_deref() {
            None => true,
            Some("pass") => r.kind.is_empty() && r.passed,
            Some("fail") => r.kind.is_empty() && !r.passed,
            Some("verdict") => r.kind.is_empty(),
            Some(kind) => r.kind == kind,
        };
        verdict_ok
            && self
                .policy_digest
                .as_ref()
                .is_none_or(|p| r.policy_digest.starts_with(p.as_str()))
            && self
                .failed_claim
                .as_ref()
                .is_none_or(|c| r.claims.iter().any(|x| !x.passed && &x.id == c))
    }
}

pub(crate) fn token_key(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

pub(crate) fn to_json<T: Serialize>(v: &T) -> Vec<u8> {
    // Serializing these plain structs cannot fail (no maps with non-string keys).
    serde_json::to_vec(v).unwrap_or_default()
}

pub(crate) fn from_json<T: DeserializeOwned>(
    tree: &'static str,
    key: &[u8],
    v: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(v).map_err(|e| StoreError::Corrupt {
        tree,
        key: hex::encode(key),
        reason: e.to_string(),
    })
}
