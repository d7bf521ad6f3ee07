//! Durable state on sled: nodes, pending enrollments, nonces, join tokens and
//! the hash-chained verdict history.
//!
//! Every mutating call flushes before it returns, so whatever the service
//! acknowledges to a caller is on disk. Single-use objects (nonces, tokens,
//! enrollments) are consumed with an atomic read-modify-write, so two
//! concurrent uses cannot both succeed.

use std::path::Path;
use std::sync::Mutex;

use sled::Transactional as _;

use assay_core::tpm::attest::ClockInfo;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "opening the database at {path}: {source} (is another assay-verifier using this data_dir?)"
    )]
    Open { path: String, source: sled::Error },
    #[error("database error: {0}")]
    Db(#[from] sled::Error),
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

pub struct Store {
    db: sled::Db,
    nodes: sled::Tree,
    enrollments: sled::Tree,
    nonces: sled::Tree,
    tokens: sled::Tree,
    history: sled::Tree,
    /// Per node, the last authentic evidence (protobuf `AttestRequest`), for
    /// `policy generate --node`. One per node, overwritten: bounded.
    last_evidence: sled::Tree,
    /// Nodes isolated after a failed attestation, until they pass again.
    quarantined: sled::Tree,
    /// Signed history checkpoints, by sequence number (`audit`).
    checkpoints: sled::Tree,
    /// The evidence behind each record, by seq (`StoredEvidence`), and the
    /// logs it names, content-addressed (stored once however many records
    /// share them) with a reference count; pruned per the retention setting.
    evidence: sled::Tree,
    blobs: sled::Tree,
    blob_refs: sled::Tree,
    /// Policy files by digest, so a record's policy can be re-applied.
    policies: sled::Tree,
    /// Index: (node id, seq) → (), for per-node queries. Derived data,
    /// written in the same transaction as the record.
    history_by_node: sled::Tree,
    history_lock: Mutex<()>,
}

impl Store {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .path(path)
            .open()
            .map_err(|source| StoreError::Open {
                path: path.display().to_string(),
                source,
            })?;
        Self {
            nodes: db.open_tree("nodes")?,
            enrollments: db.open_tree("enrollments")?,
            nonces: db.open_tree("nonces")?,
            tokens: db.open_tree("tokens")?,
            history: db.open_tree("history")?,
            last_evidence: db.open_tree("last_evidence")?,
            quarantined: db.open_tree("quarantined")?,
            checkpoints: db.open_tree("checkpoints")?,
            history_by_node: db.open_tree("history_by_node")?,
            evidence: db.open_tree("evidence")?,
            blobs: db.open_tree("blobs")?,
            blob_refs: db.open_tree("blob_refs")?,
            policies: db.open_tree("policies")?,
            history_lock: Mutex::new(()),
            db,
        }
        .with_history_index()
    }

    /// Builds the per-node index for records written before it existed.
    fn with_history_index(self) -> Result<Self, StoreError> {
        const MARK: &[u8] = b"history_by_node/v1";
        if self.db.get(MARK)?.is_none() {
            for item in self.history.iter() {
                let (k, v) = item?;
                let r: HistoryRecord = from_json("history", &k, &v)?;
                self.history_by_node
                    .insert(node_key(&r.node_id, r.seq), &[])?;
            }
            self.db.insert(MARK, &[1])?;
            self.flush()?;
        }
        Ok(self)
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    // ---- nodes

    pub fn node(&self, node_id: &str) -> Result<Option<NodeRecord>, StoreError> {
        get(&self.nodes, "nodes", node_id.as_bytes())
    }

    pub fn put_node(&self, node: &NodeRecord) -> Result<(), StoreError> {
        self.nodes.insert(node.node_id.as_bytes(), to_json(node))?;
        self.flush()
    }

    pub fn remove_node(&self, node_id: &str) -> Result<bool, StoreError> {
        let existed = self.nodes.remove(node_id.as_bytes())?.is_some();
        self.last_evidence.remove(node_id.as_bytes())?;
        self.flush()?;
        Ok(existed)
    }

    /// Keeps `evidence` as the node's last authentic evidence (replacing the previous).
    pub fn set_last_evidence(&self, node_id: &str, evidence: &[u8]) -> Result<(), StoreError> {
        self.last_evidence.insert(node_id.as_bytes(), evidence)?;
        self.flush()
    }

    /// The node's last authentic evidence, if any.
    pub fn last_evidence(&self, node_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .last_evidence
            .get(node_id.as_bytes())?
            .map(|v| v.to_vec()))
    }

    /// Records a pass at `now_unix` (the start of the node's freshness window).
    pub fn set_last_pass(&self, node_id: &str, now_unix: i64) -> Result<(), StoreError> {
        if let Some(mut n) = self.node(node_id)? {
            n.last_pass_unix = Some(now_unix);
            self.put_node(&n)?;
        }
        Ok(())
    }

    /// Nodes whose last pass is older than `cutoff_unix` (nodes that never passed are not listed).
    pub fn nodes_passed_before(&self, cutoff_unix: i64) -> Result<Vec<(String, i64)>, StoreError> {
        let mut out = Vec::new();
        for item in self.nodes.iter() {
            let (k, v) = item?;
            let n: NodeRecord = from_json("nodes", &k, &v)?;
            if let Some(t) = n.last_pass_unix.filter(|t| *t < cutoff_unix) {
                out.push((n.node_id, t));
            }
        }
        Ok(out)
    }

    /// Records the clock of the last verified quote.
    pub fn set_last_clock(&self, node_id: &str, clock: ClockInfo) -> Result<(), StoreError> {
        if let Some(mut n) = self.node(node_id)? {
            n.last_clock = Some(clock);
            self.put_node(&n)?;
        }
        Ok(())
    }

    // ---- enrollments

    pub fn put_enrollment(&self, id: &str, e: &PendingEnrollment) -> Result<(), StoreError> {
        self.enrollments.insert(id.as_bytes(), to_json(e))?;
        self.flush()
    }

    /// Removes and returns a pending enrollment: each enrollment can be completed once.
    pub fn take_enrollment(&self, id: &str) -> Result<Option<PendingEnrollment>, StoreError> {
        let v = self.enrollments.remove(id.as_bytes())?;
        self.flush()?;
        v.map(|b| from_json("enrollments", id.as_bytes(), &b))
            .transpose()
    }

    // ---- nonces

    pub fn put_nonce(&self, nonce: &[u8], rec: &NonceRecord) -> Result<(), StoreError> {
        self.nonces.insert(nonce, to_json(rec))?;
        self.flush()
    }

    /// Marks a nonce used, atomically, and says what it was before.
    pub fn consume_nonce(&self, nonce: &[u8]) -> Result<Consumed<NonceRecord>, StoreError> {
        let r = consume(
            &self.nonces,
            "nonces",
            nonce,
            |r: &NonceRecord| r.used,
            |r| r.used = true,
        );
        self.flush()?;
        r
    }

    /// Drops nonces, enrollments and join tokens that expired before `cutoff_unix`;
    /// returns how many. History is never purged here.
    pub fn purge_expired(&self, cutoff_unix: i64) -> Result<usize, StoreError> {
        let mut n = 0;
        for item in self.nonces.iter() {
            let (k, v) = item?;
            let r: NonceRecord = from_json("nonces", &k, &v)?;
            if r.expires_unix < cutoff_unix {
                self.nonces.remove(k)?;
                n += 1;
            }
        }
        for item in self.enrollments.iter() {
            let (k, v) = item?;
            let r: PendingEnrollment = from_json("enrollments", &k, &v)?;
            if r.expires_unix < cutoff_unix {
                self.enrollments.remove(k)?;
                n += 1;
            }
        }
        for item in self.tokens.iter() {
            let (k, v) = item?;
            let r: TokenRecord = from_json("tokens", &k, &v)?;
            if r.expires_unix < cutoff_unix {
                self.tokens.remove(k)?;
                n += 1;
            }
        }
        self.flush()?;
        Ok(n)
    }

    // ---- tokens

    pub fn put_token(&self, token: &str, rec: &TokenRecord) -> Result<(), StoreError> {
        self.tokens.insert(token_key(token), to_json(rec))?;
        self.flush()
    }

    /// Revokes every unused token of `node_id` (it failed attestation); how many.
    pub fn revoke_node_tokens(&self, node_id: &str) -> Result<usize, StoreError> {
        let mut n = 0;
        for item in self.tokens.iter() {
            let (k, v) = item?;
            let r: TokenRecord = from_json("tokens", &k, &v)?;
            if r.node_id != node_id || r.used {
                continue;
            }
            if let Consumed::Fresh(_) = consume(
                &self.tokens,
                "tokens",
                &k,
                |r: &TokenRecord| r.used,
                |r| {
                    r.used = true;
                    r.revoked = true;
                },
            )? {
                n += 1;
            }
        }
        self.flush()?;
        Ok(n)
    }

    /// Tokens, newest expiry first, optionally of one node and only unused
    /// ones; at most `limit`. Each with its id (hex SHA-256 of the token).
    pub fn tokens(
        &self,
        node_id: Option<&str>,
        unused_only: bool,
        now_unix: i64,
        limit: usize,
    ) -> Result<Vec<(String, TokenRecord)>, StoreError> {
        let mut out = Vec::new();
        for item in self.tokens.iter() {
            let (k, v) = item?;
            let r: TokenRecord = from_json("tokens", &k, &v)?;
            if node_id.is_some_and(|n| n != r.node_id)
                || (unused_only && r.state(now_unix) != "unused")
            {
                continue;
            }
            out.push((hex::encode(&k), r));
        }
        out.sort_by(|a, b| b.1.expires_unix.cmp(&a.1.expires_unix).then(a.0.cmp(&b.0)));
        out.truncate(limit);
        Ok(out)
    }

    /// Revokes the unused token whose id starts with `id_prefix` (hex, at
    /// least [`MIN_TOKEN_ID_PREFIX`] digits; the caller checks).
    pub fn revoke_token(&self, id_prefix: &str) -> Result<RevokeOne, StoreError> {
        let prefix = id_prefix.to_ascii_lowercase();
        let mut found = Vec::new();
        for item in self.tokens.iter() {
            let (k, _) = item?;
            if hex::encode(&k).starts_with(&prefix) {
                found.push(k);
            }
        }
        let key = match found.len() {
            0 => return Ok(RevokeOne::NotFound),
            1 => found.remove(0),
            n => return Ok(RevokeOne::Ambiguous(n)),
        };
        let r = consume(
            &self.tokens,
            "tokens",
            &key,
            |r: &TokenRecord| r.used,
            |r| {
                r.used = true;
                r.revoked = true;
            },
        )?;
        self.flush()?;
        Ok(match r {
            Consumed::Fresh(mut rec) => {
                rec.used = true;
                rec.revoked = true;
                RevokeOne::Revoked(rec)
            }
            Consumed::AlreadyUsed(rec) => RevokeOne::Spent(rec),
            Consumed::Unknown => RevokeOne::NotFound,
        })
    }

    // ---- quarantine

    pub fn set_quarantine(&self, node_id: &str, q: Option<&Quarantine>) -> Result<(), StoreError> {
        match q {
            Some(q) => self.quarantined.insert(node_id.as_bytes(), to_json(q))?,
            None => self.quarantined.remove(node_id.as_bytes())?,
        };
        self.flush()
    }

    pub fn quarantine(&self, node_id: &str) -> Result<Option<Quarantine>, StoreError> {
        get(&self.quarantined, "quarantined", node_id.as_bytes())
    }

    /// Quarantines the orchestrator has not confirmed yet.
    pub fn unapplied_quarantines(&self) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        for item in self.quarantined.iter() {
            let (k, v) = item?;
            let q: Quarantine = from_json("quarantined", &k, &v)?;
            if !q.applied {
                out.push(String::from_utf8_lossy(&k).into_owned());
            }
        }
        Ok(out)
    }

    /// Marks a token used, atomically, and says what it was before.
    pub fn consume_token(&self, token: &str) -> Result<Consumed<TokenRecord>, StoreError> {
        let r = consume(
            &self.tokens,
            "tokens",
            &token_key(token),
            |r: &TokenRecord| r.used,
            |r| r.used = true,
        );
        self.flush()?;
        r
    }

    // ---- history

    /// Appends a verdict, chaining it to the previous record; durable on return.
    pub fn append_history(&self, rec: HistoryRecord) -> Result<HistoryRecord, StoreError> {
        let mut out = self.append_history_batch(vec![rec])?;
        Ok(out.remove(0))
    }

    /// Appends records in order, each chained to the one before, in one
    /// transaction and one flush; durable on return.
    pub fn append_history_batch(
        &self,
        mut recs: Vec<HistoryRecord>,
    ) -> Result<Vec<HistoryRecord>, StoreError> {
        let _guard = self.history_lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut prev: Option<HistoryRecord> = match self.history.last()? {
            Some((k, v)) => Some(from_json("history", &k, &v)?),
            None => None,
        };
        let mut rows = Vec::with_capacity(recs.len());
        for rec in &mut recs {
            rec.seq = prev.as_ref().map_or(1, |p| p.seq + 1);
            rec.prev_hash = prev.as_ref().map(HistoryRecord::hash).unwrap_or_default();
            // Record times never go backwards (a clock stepped back records
            // the previous time), so a time range is a range of sequence numbers.
            if let Some(p) = &prev {
                rec.time_unix = rec.time_unix.max(p.time_unix);
            }
            rows.push((rec.seq, to_json(rec), node_key(&rec.node_id, rec.seq)));
            prev = Some(rec.clone());
        }
        (&self.history, &self.history_by_node)
            .transaction(|(h, n)| {
                for (seq, value, index) in &rows {
                    h.insert(&seq.to_be_bytes(), value.as_slice())?;
                    n.insert(index.as_slice(), &[])?;
                }
                Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
            })
            .map_err(|e| match e {
                sled::transaction::TransactionError::Storage(e) => StoreError::from(e),
                sled::transaction::TransactionError::Abort(()) => {
                    StoreError::from(sled::Error::Unsupported("history append aborted".into()))
                }
            })?;
        self.flush()?;
        Ok(recs)
    }

    /// The first seq whose record time is ≥ `t` (binary search: record times
    /// are non-decreasing); `last + 1` if none.
    fn seq_from_time(&self, t: i64, last: u64) -> Result<u64, StoreError> {
        let (mut lo, mut hi) = (1u64, last + 1);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let time = match self.history.get(mid.to_be_bytes())? {
                Some(v) => from_json::<HistoryRecord>("history", &mid.to_be_bytes(), &v)?.time_unix,
                // A hole (purged or tampered): look later.
                None => i64::MIN,
            };
            if time >= t {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        Ok(lo)
    }

    /// History matching `q`, newest first, at most `q.limit`; and the cursor
    /// for the next page (`before_seq`), or 0 when this is the last.
    pub fn query_history(&self, q: &HistoryQuery) -> Result<(Vec<HistoryRecord>, u64), StoreError> {
        let Some(head) = self.history_head()? else {
            return Ok((Vec::new(), 0));
        };
        let lo = match q.from_unix {
            Some(t) => self.seq_from_time(t, head.seq)?,
            None => 1,
        };
        let mut hi = match q.to_unix {
            Some(t) => self
                .seq_from_time(t.saturating_add(1), head.seq)?
                .saturating_sub(1),
            None => head.seq,
        };
        if let Some(b) = q.before_seq {
            hi = hi.min(b.saturating_sub(1));
        }
        let mut out = Vec::new();
        if lo > hi || q.limit == 0 {
            return Ok((out, 0));
        }
        let mut more = false;
        let mut take = |r: HistoryRecord, out: &mut Vec<HistoryRecord>| -> bool {
            if q.matches(&r) {
                if out.len() == q.limit {
                    more = true;
                    return false;
                }
                out.push(r);
            }
            true
        };
        match &q.node_id {
            Some(node) => {
                let range = node_key(node, lo)..=node_key(node, hi);
                for item in self.history_by_node.range(range).rev() {
                    let (k, _) = item?;
                    let seq = u64::from_be_bytes(k[k.len() - 8..].try_into().unwrap_or_default());
                    let Some(v) = self.history.get(seq.to_be_bytes())? else {
                        continue;
                    };
                    if !take(from_json("history", &k, &v)?, &mut out) {
                        break;
                    }
                }
            }
            None => {
                for item in self
                    .history
                    .range(lo.to_be_bytes()..=hi.to_be_bytes())
                    .rev()
                {
                    let (k, v) = item?;
                    if !take(from_json("history", &k, &v)?, &mut out) {
                        break;
                    }
                }
            }
        }
        let next = if more {
            out.last().map_or(0, |r| r.seq)
        } else {
            0
        };
        Ok((out, next))
    }

    /// Each node's standing at time `at`: its last verdict or stale record at
    /// or before `at` (None for nodes with no such record). Nodes are those
    /// with any history.
    pub fn fleet_at(&self, at: i64) -> Result<Vec<(String, Option<HistoryRecord>)>, StoreError> {
        let Some(head) = self.history_head()? else {
            return Ok(Vec::new());
        };
        let hi = self
            .seq_from_time(at.saturating_add(1), head.seq)?
            .saturating_sub(1);
        let mut out = Vec::new();
        // Walk the index node by node: jump from one node's keys to the next.
        let mut from: Vec<u8> = Vec::new();
        loop {
            let Some(item) = self.history_by_node.range(from.clone()..).next() else {
                break;
            };
            let (k, _) = item?;
            let node = node_of(&k).to_string();
            let mut state = None;
            for item in self
                .history_by_node
                .range(node_key(&node, 1)..=node_key(&node, hi))
                .rev()
            {
                let (k, _) = item?;
                let seq = u64::from_be_bytes(k[k.len() - 8..].try_into().unwrap_or_default());
                if let Some(v) = self.history.get(seq.to_be_bytes())? {
                    let r: HistoryRecord = from_json("history", &k, &v)?;
                    if r.kind.is_empty() || r.kind == "stale" {
                        state = Some(r);
                        break;
                    }
                }
            }
            // Records of no node (the verifier's own admin actions) are not a node.
            if !node.is_empty() {
                out.push((node.clone(), state));
            }
            from = node_key(&node, u64::MAX);
            from.push(0);
        }
        Ok(out)
    }

    /// The record `seq`, if there is one.
    pub fn history_record(&self, seq: u64) -> Result<Option<HistoryRecord>, StoreError> {
        get(&self.history, "history", &seq.to_be_bytes())
    }

    // ---- evidence and policies (audit reverify)

    /// Keeps a policy file's text under its digest (idempotent).
    pub fn put_policy(&self, digest_hex: &str, text: &str) -> Result<(), StoreError> {
        self.policies
            .insert(digest_hex.as_bytes(), text.as_bytes())?;
        self.flush()
    }

    /// The digest of the policy the verifier last started with.
    pub fn current_policy(&self) -> Result<Option<String>, StoreError> {
        Ok(self
            .db
            .get(b"current_policy")?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    pub fn set_current_policy(&self, digest_hex: &str) -> Result<(), StoreError> {
        self.db.insert(b"current_policy", digest_hex.as_bytes())?;
        self.flush()
    }

    pub fn policy_text(&self, digest_hex: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .policies
            .get(digest_hex.as_bytes())?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Keeps the evidence behind record `seq`; logs are stored once by digest.
    pub fn put_evidence(
        &self,
        seq: u64,
        mut ev: StoredEvidence,
        logs: [Option<&[u8]>; 3],
    ) -> Result<(), StoreError> {
        let mut size = ev.attest.len() as u64 / 2 + ev.signature.len() as u64 / 2;
        let mut names = [None, None, None];
        for (i, log) in logs.iter().enumerate() {
            let Some(bytes) = log else { continue };
            let digest: [u8; 32] = Sha256::digest(bytes).into();
            let refs = self.blob_refcount(&digest)?;
            if refs == 0 {
                self.blobs.insert(digest, *bytes)?;
                size += bytes.len() as u64;
            }
            self.blob_refs.insert(digest, &(refs + 1).to_be_bytes())?;
            names[i] = Some(hex::encode(digest));
        }
        [ev.uefi_log, ev.ima_log, ev.cel_log] = names;
        ev.bytes = size;
        self.evidence.insert(seq.to_be_bytes(), to_json(&ev))?;
        self.add_meta(b"evidence_bytes", size as i64)?;
        self.flush()
    }

    /// The evidence behind record `seq` and its logs (UEFI, IMA, CEL).
    pub fn evidence(&self, seq: u64) -> Result<Option<(StoredEvidence, Logs)>, StoreError> {
        let Some(v) = self.evidence.get(seq.to_be_bytes())? else {
            return Ok(None);
        };
        let ev: StoredEvidence = from_json("evidence", &seq.to_be_bytes(), &v)?;
        let blob = |d: &Option<String>| -> Result<Option<Vec<u8>>, StoreError> {
            match d {
                None => Ok(None),
                Some(h) => {
                    let key = hex::decode(h).unwrap_or_default();
                    Ok(self.blobs.get(key)?.map(|b| b.to_vec()))
                }
            }
        };
        let logs = [blob(&ev.uefi_log)?, blob(&ev.ima_log)?, blob(&ev.cel_log)?];
        Ok(Some((ev, logs)))
    }

    /// Deletes the oldest evidence until what is kept is newer than
    /// `before_unix`, at most `max_count` entries and `max_bytes` bytes
    /// (logs counted once). Records stay; only their evidence goes. How many.
    pub fn prune_evidence(
        &self,
        before_unix: i64,
        max_count: usize,
        max_bytes: u64,
    ) -> Result<usize, StoreError> {
        let mut count = self.evidence.len();
        let mut bytes = self.meta(b"evidence_bytes")?.max(0) as u64;
        let mut removed = 0;
        for item in self.evidence.iter() {
            let (k, v) = item?;
            let ev: StoredEvidence = from_json("evidence", &k, &v)?;
            if ev.time_unix >= before_unix && count <= max_count && bytes <= max_bytes {
                break;
            }
            let mut freed = ev.attest.len() as u64 / 2 + ev.signature.len() as u64 / 2;
            for d in [&ev.uefi_log, &ev.ima_log, &ev.cel_log]
                .into_iter()
                .flatten()
            {
                let key = hex::decode(d).unwrap_or_default();
                let refs = self.blob_refcount(&key)?;
                if refs <= 1 {
                    if let Some(b) = self.blobs.remove(&key)? {
                        freed += b.len() as u64;
                    }
                    self.blob_refs.remove(&key)?;
                } else {
                    self.blob_refs.insert(&key, &(refs - 1).to_be_bytes())?;
                }
            }
            self.evidence.remove(&k)?;
            self.add_meta(b"evidence_bytes", -(freed as i64))?;
            bytes = bytes.saturating_sub(freed);
            count -= 1;
            removed += 1;
        }
        if removed > 0 {
            self.flush()?;
        }
        Ok(removed)
    }

    /// How many kept evidence entries name the log with this digest.
    fn blob_refcount(&self, digest: &[u8]) -> Result<u64, StoreError> {
        Ok(self.blob_refs.get(digest)?.map_or(0, |v| {
            u64::from_be_bytes(v.as_ref().try_into().unwrap_or_default())
        }))
    }

    /// Checkpoints covering records `lo..=hi`, ascending.
    pub fn checkpoints_between(
        &self,
        lo: u64,
        hi: u64,
    ) -> Result<Vec<crate::audit::Checkpoint>, StoreError> {
        let mut out = Vec::new();
        for item in self.checkpoints.range(lo.to_be_bytes()..=hi.to_be_bytes()) {
            let (k, v) = item?;
            out.push(from_json("checkpoints", &k, &v)?);
        }
        Ok(out)
    }

    /// Bytes of evidence kept (logs counted once) and entries.
    pub fn evidence_usage(&self) -> Result<(u64, usize), StoreError> {
        Ok((
            self.meta(b"evidence_bytes")?.max(0) as u64,
            self.evidence.len(),
        ))
    }

    fn meta(&self, key: &[u8]) -> Result<i64, StoreError> {
        Ok(self.db.get(key)?.map_or(0, |v| {
            i64::from_be_bytes(v.as_ref().try_into().unwrap_or_default())
        }))
    }

    fn add_meta(&self, key: &[u8], delta: i64) -> Result<(), StoreError> {
        self.db.update_and_fetch(key, |old| {
            let n = old.map_or(0, |v| i64::from_be_bytes(v.try_into().unwrap_or_default()));
            Some((n + delta).to_be_bytes().to_vec())
        })?;
        Ok(())
    }

    /// The newest record, if any.
    pub fn history_head(&self) -> Result<Option<HistoryRecord>, StoreError> {
        match self.history.last()? {
            Some((k, v)) => Ok(Some(from_json("history", &k, &v)?)),
            None => Ok(None),
        }
    }

    /// Records from `from_seq` on, ascending, each with the seq its key says;
    /// at most `limit`.
    pub fn history_found(
        &self,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<crate::audit::Found>, StoreError> {
        let mut out = Vec::new();
        for item in self.history.range(from_seq.to_be_bytes()..) {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item?;
            let key_seq = <[u8; 8]>::try_from(k.as_ref()).map_or(0, u64::from_be_bytes);
            out.push(crate::audit::Found {
                key_seq,
                record: from_json("history", &k, &v)?,
            });
        }
        Ok(out)
    }

    /// Every record, ascending, lazily (for `audit verify` over any size).
    pub fn history_iter(
        &self,
    ) -> impl Iterator<Item = Result<crate::audit::Found, StoreError>> + '_ {
        self.history.iter().map(|item| {
            let (k, v) = item?;
            let key_seq = <[u8; 8]>::try_from(k.as_ref()).map_or(0, u64::from_be_bytes);
            Ok(crate::audit::Found {
                key_seq,
                record: from_json("history", &k, &v)?,
            })
        })
    }

    /// Records whose time is in `[from_unix, to_unix]`, ascending; at most `limit`.
    /// A scan: the history is keyed by sequence number.
    pub fn history_between(
        &self,
        from_unix: i64,
        to_unix: i64,
        limit: usize,
    ) -> Result<Vec<HistoryRecord>, StoreError> {
        let mut out = Vec::new();
        for item in self.history.iter() {
            let (k, v) = item?;
            let r: HistoryRecord = from_json("history", &k, &v)?;
            if r.time_unix > to_unix {
                break;
            }
            if r.time_unix >= from_unix {
                out.push(r);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    pub fn add_checkpoint(&self, c: &crate::audit::Checkpoint) -> Result<(), StoreError> {
        self.checkpoints.insert(c.seq.to_be_bytes(), to_json(c))?;
        self.flush()
    }

    /// Checkpoints, ascending.
    pub fn checkpoints(&self) -> Result<Vec<crate::audit::Checkpoint>, StoreError> {
        let mut out = Vec::new();
        for item in self.checkpoints.iter() {
            let (k, v) = item?;
            out.push(from_json("checkpoints", &k, &v)?);
        }
        Ok(out)
    }

    pub fn last_checkpoint(&self) -> Result<Option<crate::audit::Checkpoint>, StoreError> {
        match self.checkpoints.last()? {
            Some((k, v)) => Ok(Some(from_json("checkpoints", &k, &v)?)),
            None => Ok(None),
        }
    }

    /// Re-checks the hash chain from the first record; returns the number of
    /// records, or the sequence number of the first record whose link is broken.
    pub fn verify_history_chain(&self) -> Result<Result<u64, u64>, StoreError> {
        let mut prev: Option<HistoryRecord> = None;
        let mut count = 0;
        for item in self.history.iter() {
            let (k, v) = item?;
            let r: HistoryRecord = from_json("history", &k, &v)?;
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

/// `history_by_node` key: u16 length, node id, seq (big-endian): one node's
/// records are contiguous and in seq order.
fn node_key(node: &str, seq: u64) -> Vec<u8> {
    let n = node.as_bytes();
    let len = u16::try_from(n.len()).unwrap_or(u16::MAX);
    let mut k = Vec::with_capacity(2 + n.len() + 8);
    k.extend_from_slice(&len.to_be_bytes());
    k.extend_from_slice(&n[..usize::from(len)]);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn node_of(key: &[u8]) -> &str {
    let len = key
        .get(..2)
        .map_or(0, |l| usize::from(u16::from_be_bytes([l[0], l[1]])));
    key.get(2..2 + len)
        .and_then(|n| std::str::from_utf8(n).ok())
        .unwrap_or_default()
}

/// The UEFI, IMA and CEL logs of one piece of evidence.
pub type Logs = [Option<Vec<u8>>; 3];

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
    fn matches(&self, r: &HistoryRecord) -> bool {
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

fn token_key(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn to_json<T: Serialize>(v: &T) -> Vec<u8> {
    // Serializing these plain structs cannot fail (no maps with non-string keys).
    serde_json::to_vec(v).unwrap_or_default()
}

fn from_json<T: DeserializeOwned>(
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

fn get<T: DeserializeOwned>(
    t: &sled::Tree,
    tree: &'static str,
    key: &[u8],
) -> Result<Option<T>, StoreError> {
    t.get(key)?.map(|v| from_json(tree, key, &v)).transpose()
}

fn consume<T: Serialize + DeserializeOwned + Clone>(
    t: &sled::Tree,
    tree: &'static str,
    key: &[u8],
    is_used: impl Fn(&T) -> bool,
    mark: impl Fn(&mut T),
) -> Result<Consumed<T>, StoreError> {
    loop {
        let Some(old) = t.get(key)? else {
            return Ok(Consumed::Unknown);
        };
        let rec: T = from_json(tree, key, &old)?;
        if is_used(&rec) {
            return Ok(Consumed::AlreadyUsed(rec));
        }
        let mut new = rec.clone();
        mark(&mut new);
        // Compare-and-swap: if another request consumed it in between, look again.
        if t.compare_and_swap(key, Some(&old), Some(to_json(&new)))?
            .is_ok()
        {
            return Ok(Consumed::Fresh(rec));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(&d.path().join("db")).unwrap();
        (d, s)
    }

    #[test]
    fn nonce_is_consumed_once_even_under_concurrency() {
        let (_d, s) = store();
        s.put_nonce(
            b"n1",
            &NonceRecord {
                node_id: "a".into(),
                expires_unix: 10,
                used: false,
            },
        )
        .unwrap();
        let fresh = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..8)
                .map(|_| sc.spawn(|| s.consume_nonce(b"n1").unwrap()))
                .collect();
            hs.into_iter()
                .map(|h| h.join().unwrap())
                .filter(|c| matches!(c, Consumed::Fresh(_)))
                .count()
        });
        assert_eq!(fresh, 1);
        assert!(matches!(
            s.consume_nonce(b"n1").unwrap(),
            Consumed::AlreadyUsed(_)
        ));
        assert_eq!(s.consume_nonce(b"nope").unwrap(), Consumed::Unknown);
    }

    /// sled releases its file lock from a background thread after the last
    /// handle drops, so an immediate reopen in the same process can find it still
    /// held (a new process, as on a restart, does not). Bounded: 100 × 20 ms.
    fn reopen(path: &std::path::Path) -> Store {
        let mut last = None;
        for _ in 0..100 {
            match Store::open(path) {
                Ok(s) => return s,
                Err(e) => last = Some(e),
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        panic!("reopening {}: {:?}", path.display(), last);
    }

    #[test]
    fn history_is_hash_chained_and_survives_reopen() {
        let d = tempfile::tempdir().unwrap();
        let rec = |node: &str| HistoryRecord {
            seq: 0,
            node_id: node.into(),
            time_unix: 1,
            passed: true,
            claims: vec![],
            policy_name: "p".into(),
            policy_digest: "d".into(),
            evidence_digest: "e".into(),
            prev_hash: String::new(),
            kind: String::new(),
        };
        {
            let s = Store::open(&d.path().join("db")).unwrap();
            let a = s.append_history(rec("a")).unwrap();
            let b = s.append_history(rec("b")).unwrap();
            assert_eq!((a.seq, b.seq), (1, 2));
            assert_eq!(b.prev_hash, a.hash());
        }
        let s = reopen(&d.path().join("db"));
        assert_eq!(s.verify_history_chain().unwrap(), Ok(2));
        let q = |node: Option<&str>| {
            s.query_history(&HistoryQuery {
                node_id: node.map(str::to_string),
                limit: 10,
                ..Default::default()
            })
            .unwrap()
            .0
        };
        assert_eq!(q(Some("a")).len(), 1);
        assert_eq!(q(None)[0].node_id, "b", "most recent first");
        // Tamper with record 1: the chain breaks at record 2.
        let mut r1 = s.history_record(1).unwrap().unwrap();
        r1.passed = false;
        s.history.insert(1u64.to_be_bytes(), to_json(&r1)).unwrap();
        assert_eq!(s.verify_history_chain().unwrap(), Err(2));
    }

    #[test]
    fn tokens_are_stored_hashed_and_single_use() {
        let (_d, s) = store();
        let tok = "header.payload.signature";
        s.put_token(
            tok,
            &TokenRecord {
                node_id: "a".into(),
                ak_name: "x".into(),
                expires_unix: 9,
                used: false,
                revoked: false,
                issued_unix: 0,
            },
        )
        .unwrap();
        for item in s.tokens.iter() {
            let (k, v) = item.unwrap();
            assert_ne!(&k[..], tok.as_bytes());
            assert!(!String::from_utf8_lossy(&v).contains(tok));
        }
        assert!(matches!(s.consume_token(tok).unwrap(), Consumed::Fresh(_)));
        assert!(matches!(
            s.consume_token(tok).unwrap(),
            Consumed::AlreadyUsed(_)
        ));
    }

    #[test]
    fn revoking_a_node_s_tokens_spares_other_nodes_and_used_tokens() {
        let (_d, s) = store();
        let rec = |node: &str, used| TokenRecord {
            node_id: node.into(),
            ak_name: "x".into(),
            expires_unix: 9,
            used,
            revoked: false,
            issued_unix: 0,
        };
        s.put_token("a1", &rec("a", false)).unwrap();
        s.put_token("a2", &rec("a", true)).unwrap();
        s.put_token("b1", &rec("b", false)).unwrap();
        assert_eq!(s.revoke_node_tokens("a").unwrap(), 1);
        match s.consume_token("a1").unwrap() {
            Consumed::AlreadyUsed(r) => assert!(r.revoked),
            other => panic!("{other:?}"),
        }
        match s.consume_token("a2").unwrap() {
            Consumed::AlreadyUsed(r) => assert!(!r.revoked),
            other => panic!("{other:?}"),
        }
        assert!(matches!(s.consume_token("b1").unwrap(), Consumed::Fresh(_)));
    }

    #[test]
    fn purge_drops_only_what_expired_before_the_cutoff() {
        let (_d, s) = store();
        let nonce = |exp| NonceRecord {
            node_id: "a".into(),
            expires_unix: exp,
            used: false,
        };
        s.put_nonce(b"old", &nonce(10)).unwrap();
        s.put_nonce(b"new", &nonce(100)).unwrap();
        let token = |exp| TokenRecord {
            node_id: "a".into(),
            ak_name: "x".into(),
            expires_unix: exp,
            used: true,
            revoked: false,
            issued_unix: 0,
        };
        s.put_token("t-old", &token(10)).unwrap();
        s.put_token("t-new", &token(100)).unwrap();
        assert_eq!(s.purge_expired(50).unwrap(), 2);
        assert_eq!(s.consume_nonce(b"old").unwrap(), Consumed::Unknown);
        assert!(matches!(
            s.consume_nonce(b"new").unwrap(),
            Consumed::Fresh(_)
        ));
        assert!(matches!(
            s.consume_token("t-old").unwrap(),
            Consumed::Unknown
        ));
        assert!(matches!(
            s.consume_token("t-new").unwrap(),
            Consumed::AlreadyUsed(_)
        ));
        assert_eq!(s.purge_expired(50).unwrap(), 0);
    }

    #[test]
    fn tokens_are_listed_by_id_never_by_value_and_revoked_one_at_a_time() {
        let (_d, s) = store();
        let rec = |node: &str, exp, used| TokenRecord {
            node_id: node.into(),
            ak_name: "ak".into(),
            expires_unix: exp,
            used,
            revoked: false,
            issued_unix: exp - 600,
        };
        s.put_token("tok-a1", &rec("a", 1000, false)).unwrap();
        s.put_token("tok-a2", &rec("a", 2000, true)).unwrap();
        s.put_token("tok-a3", &rec("a", 500, false)).unwrap();
        s.put_token("tok-b1", &rec("b", 3000, false)).unwrap();
        let now = 700;
        // Unused only: a1 (a3 expired, a2 used), b1; newest expiry first.
        let ids: Vec<String> = s
            .tokens(None, true, now, 100)
            .unwrap()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(ids, vec![token_id("tok-b1"), token_id("tok-a1")]);
        let all = s.tokens(Some("a"), false, now, 100).unwrap();
        let states: Vec<&str> = all.iter().map(|(_, r)| r.state(now)).collect();
        assert_eq!(states, vec!["used", "unused", "expired"]);
        assert_eq!(s.tokens(None, false, now, 2).unwrap().len(), 2, "limit");
        let listed = format!("{:?}", s.tokens(None, false, now, 100).unwrap());
        assert!(!listed.contains("tok-"), "a token value never comes out");

        let a1 = token_id("tok-a1");
        match s.revoke_token(&a1[..12]).unwrap() {
            RevokeOne::Revoked(r) => assert_eq!(r.node_id, "a"),
            other => panic!("{other:?}"),
        }
        match s.consume_token("tok-a1").unwrap() {
            Consumed::AlreadyUsed(r) => assert!(r.revoked && r.state(now) == "revoked"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(s.revoke_token(&a1).unwrap(), RevokeOne::Spent(_)));
        assert!(matches!(
            s.revoke_token(&token_id("tok-a2")).unwrap(),
            RevokeOne::Spent(_)
        ));
        assert!(matches!(
            s.revoke_token("00000000deadbeef").unwrap(),
            RevokeOne::NotFound
        ));
        // The empty prefix (the API refuses it) would name every token.
        assert!(matches!(
            s.revoke_token("").unwrap(),
            RevokeOne::Ambiguous(4)
        ));
        assert!(matches!(
            s.consume_token("tok-b1").unwrap(),
            Consumed::Fresh(_)
        ));
    }

    fn hrec(
        node: &str,
        time: i64,
        passed: bool,
        kind: &str,
        failed: Option<&str>,
    ) -> HistoryRecord {
        HistoryRecord {
            seq: 0,
            node_id: node.into(),
            time_unix: time,
            passed,
            claims: failed
                .map(|c| vec![assay_core::verdict::Claim::new(c, false, "e", "a", "l")])
                .unwrap_or_default(),
            policy_name: "p".into(),
            policy_digest: if time < 150 {
                "aaaa11".into()
            } else {
                "bbbb22".into()
            },
            evidence_digest: String::new(),
            prev_hash: String::new(),
            kind: kind.into(),
        }
    }

    #[test]
    fn history_queries_filter_by_node_time_verdict_policy_and_claim_and_page() {
        let (_d, s) = store();
        let mut recs = Vec::new();
        for i in 0..300 {
            let node = format!("n{}", i % 3);
            let failed = (i % 10 == 0).then_some("pcr.sha256.7");
            recs.push(hrec(&node, 100 + i / 2, failed.is_none(), "", failed));
        }
        recs.push(hrec("n1", 90, false, "stale", Some("attestation.fresh")));
        let stored = s.append_history_batch(recs).unwrap();
        assert_eq!(stored.len(), 301);
        assert_eq!(stored[300].time_unix, 249, "times never go backwards");
        assert_eq!(s.verify_history_chain().unwrap(), Ok(301));
        let q = |f: &dyn Fn(&mut HistoryQuery)| {
            let mut q = HistoryQuery {
                limit: 1000,
                ..Default::default()
            };
            f(&mut q);
            s.query_history(&q).unwrap()
        };
        let (all, next) = q(&|_| {});
        assert_eq!((all.len(), next), (301, 0));
        assert!(all.windows(2).all(|w| w[0].seq > w[1].seq), "newest first");
        let (r, _) = q(&|q| q.node_id = Some("n1".into()));
        assert_eq!(r.len(), 101);
        assert!(r.iter().all(|x| x.node_id == "n1"));
        let (r, _) = q(&|q| {
            q.from_unix = Some(110);
            q.to_unix = Some(119);
        });
        assert_eq!(r.len(), 20);
        assert!(r.iter().all(|x| (110..=119).contains(&x.time_unix)));
        let (r, _) = q(&|q| {
            q.node_id = Some("n2".into());
            q.from_unix = Some(110);
            q.to_unix = Some(119);
        });
        assert!(r
            .iter()
            .all(|x| x.node_id == "n2" && (110..=119).contains(&x.time_unix)));
        assert_eq!(r.len(), 7);
        let (r, _) = q(&|q| q.verdict = Some("fail".into()));
        assert_eq!(r.len(), 30);
        let (r, _) = q(&|q| q.verdict = Some("stale".into()));
        assert_eq!(r.len(), 1);
        let (r, _) = q(&|q| q.failed_claim = Some("pcr.sha256.7".into()));
        assert_eq!(r.len(), 30);
        let (r, _) = q(&|q| q.policy_digest = Some("aaaa".into()));
        assert_eq!(r.len(), 101, "100 verdicts before t=150 and the stale mark");
        // Paging: disjoint pages that add up to everything.
        let mut seen = Vec::new();
        let mut before = None;
        loop {
            let (page, next) = q(&|q| {
                q.limit = 64;
                q.node_id = Some("n0".into());
                q.before_seq = before;
            });
            seen.extend(page.iter().map(|r| r.seq));
            if next == 0 {
                break;
            }
            before = Some(next);
        }
        assert_eq!(seen.len(), 100);
        seen.dedup();
        assert_eq!(seen.len(), 100);
        // Empty ranges.
        assert!(q(&|q| q.from_unix = Some(10_000)).0.is_empty());
        assert!(q(&|q| q.to_unix = Some(1)).0.is_empty());
        assert!(q(&|q| q.node_id = Some("nobody".into())).0.is_empty());
    }

    #[test]
    fn the_fleet_at_a_moment_is_each_node_s_last_verdict_then() {
        let (_d, s) = store();
        s.append_history_batch(vec![
            hrec("a", 100, true, "", None),
            hrec("b", 100, true, "", None),
            hrec("a", 110, false, "", Some("pcr.sha256.7")),
            hrec("a", 111, true, "webhook", None),
            hrec("b", 120, false, "stale", Some("attestation.fresh")),
            hrec("c", 130, true, "", None),
        ])
        .unwrap();
        let at = |t| -> Vec<(String, Option<(bool, String)>)> {
            s.fleet_at(t)
                .unwrap()
                .into_iter()
                .map(|(n, r)| (n, r.map(|r| (r.passed, r.kind))))
                .collect()
        };
        let st = |p: bool, k: &str| Some((p, k.to_string()));
        assert_eq!(
            at(105),
            vec![
                ("a".into(), st(true, "")),
                ("b".into(), st(true, "")),
                ("c".into(), None)
            ]
        );
        assert_eq!(
            at(125),
            vec![
                ("a".into(), st(false, "")),
                ("b".into(), st(false, "stale")),
                ("c".into(), None)
            ]
        );
        assert_eq!(at(200)[2], ("c".into(), st(true, "")));
    }

    #[test]
    fn the_node_index_is_built_for_histories_written_before_it() {
        let d = tempfile::tempdir().unwrap();
        {
            let s = Store::open(d.path()).unwrap();
            s.append_history_batch(vec![
                hrec("x", 1, true, "", None),
                hrec("y", 2, true, "", None),
            ])
            .unwrap();
            // As an older verifier left it: no index, no marker.
            s.history_by_node.clear().unwrap();
            s.db.remove(b"history_by_node/v1").unwrap();
            s.flush().unwrap();
        }
        let s = Store::open(d.path()).unwrap();
        let (r, _) = s
            .query_history(&HistoryQuery {
                node_id: Some("y".into()),
                limit: 10,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn evidence_logs_are_stored_once_and_pruned_oldest_first_by_age_count_and_size() {
        let (_d, s) = store();
        let ev = |t: i64| StoredEvidence {
            node_id: "n".into(),
            time_unix: t,
            attest: "00".repeat(100),
            signature: "11".repeat(100),
            ..Default::default()
        };
        let shared = vec![7u8; 10_000];
        for seq in 1..=5u64 {
            let own = vec![seq as u8; 1000];
            s.put_evidence(seq, ev(100 * seq as i64), [Some(&shared), Some(&own), None])
                .unwrap();
        }
        // 5 × (200 + 1000) + one copy of the shared 10,000-byte log.
        assert_eq!(s.evidence_usage().unwrap(), (16_000, 5));
        let (e, logs) = s.evidence(3).unwrap().unwrap();
        assert_eq!(logs[0].as_deref(), Some(shared.as_slice()));
        assert_eq!(logs[1].as_deref(), Some(vec![3u8; 1000].as_slice()));
        assert!(logs[2].is_none() && e.cel_log.is_none());
        // By age: entries older than t=250 go (seq 1, 2); the shared log stays.
        assert_eq!(s.prune_evidence(250, usize::MAX, u64::MAX).unwrap(), 2);
        assert!(s.evidence(1).unwrap().is_none() && s.evidence(3).unwrap().is_some());
        assert_eq!(
            s.evidence(3).unwrap().unwrap().1[0].as_deref(),
            Some(shared.as_slice())
        );
        assert_eq!(s.evidence_usage().unwrap(), (13_600, 3));
        // By count: seq 3 goes.
        assert_eq!(s.prune_evidence(0, 2, u64::MAX).unwrap(), 1);
        assert_eq!(s.evidence_usage().unwrap(), (12_400, 2));
        // By size: removing seq 4 frees only its own 1,200 bytes (the shared
        // log is still used), so seq 5 goes too, taking the shared log.
        assert_eq!(s.prune_evidence(0, usize::MAX, 5_000).unwrap(), 2);
        assert_eq!(s.evidence_usage().unwrap(), (0, 0));
        assert!(
            s.blobs.is_empty() && s.blob_refs.is_empty(),
            "no log left behind"
        );
    }
}
