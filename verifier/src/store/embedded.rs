//! The embedded backend: one sled database in `<data_dir>/db`, for one
//! verifier. Every mutating call flushes before it returns; single-use
//! objects are consumed with a compare-and-swap.

use std::path::Path;
use std::sync::Mutex;

use super::{
    from_json, to_json, token_key, ClockInfo, Consumed, HistoryQuery, HistoryRecord, Logs,
    NodeRecord, NonceRecord, PendingEnrollment, Quarantine, RevokeOne, Storage, StoreError,
    StoredEvidence, TokenRecord, VerdictWrite,
};
use serde::{de::DeserializeOwned, Serialize};
use sha2::{Digest, Sha256};

pub struct SledStore {
    db: sled::Db,
    nodes: sled::Tree,
    enrollments: sled::Tree,
    nonces: sled::Tree,
    tokens: sled::Tree,
    history: sled::Tree,
    /// Per node, the last authentic evidence (protobuf `AttestRequest`), for
    /// `policy generate --node`. One per node, overwritten: bounded.
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
    /// written just after the record (restored on open if a crash lost it).
    history_by_node: sled::Tree,
    /// The chain head as last appended (None: not read yet), under which
    /// appends are serialized: no read and re-hash of the head per append.
    head: Mutex<Option<Option<Head>>>,
    /// Many threads' flushes served by one fsync (group commit).
    flusher: GroupFlush,
    /// Serializes evidence writes and pruning (log reference counts).
    evidence_lock: Mutex<()>,
}

impl SledStore {
    /// Appends records in order, each chained to the one before (not
    /// flushed yet).
    fn append_unflushed(
        &self,
        mut recs: Vec<HistoryRecord>,
    ) -> Result<Vec<HistoryRecord>, StoreError> {
        let mut cached = self.head.lock().unwrap_or_else(|p| p.into_inner());
        let mut head = match &*cached {
            Some(h) => h.clone(),
            None => match self.history.last()? {
                Some((k, v)) => {
                    let r: HistoryRecord = from_json("history", &k, &v)?;
                    Some(Head {
                        seq: r.seq,
                        hash: r.hash(),
                        time_unix: r.time_unix,
                    })
                }
                None => None,
            },
        };
        let mut rows = Vec::with_capacity(recs.len());
        for rec in &mut recs {
            rec.seq = head.as_ref().map_or(1, |h| h.seq + 1);
            rec.prev_hash = head.as_ref().map(|h| h.hash.clone()).unwrap_or_default();
            // Record times never go backwards (a clock stepped back records
            // the previous time), so a time range is a range of sequence numbers.
            if let Some(h) = &head {
                rec.time_unix = rec.time_unix.max(h.time_unix);
            }
            let json = to_json(rec);
            head = Some(Head {
                seq: rec.seq,
                hash: hex::encode(Sha256::digest(&json)),
                time_unix: rec.time_unix,
            });
            rows.push((rec.seq, json, node_key(&rec.node_id, rec.seq)));
        }
        // No transaction across the two trees: sled's transactions take a
        // lock every reader of every tree waits on. Appends are serialized by
        // the head lock; the record goes first, then its index entry (derived
        // data: `open` restores entries a crash lost, and index readers check
        // the record's node).
        for (seq, value, index) in &rows {
            self.history.insert(seq.to_be_bytes(), value.as_slice())?;
            self.history_by_node.insert(index.as_slice(), &[])?;
        }
        *cached = Some(head);
        Ok(recs)
    }

    /// Keeps the evidence behind record `seq` (not flushed yet); logs are
    /// stored once by digest, their reference counts under `evidence_lock`.
    fn put_evidence_unflushed(
        &self,
        seq: u64,
        mut ev: StoredEvidence,
        logs: [Option<&[u8]>; 3],
    ) -> Result<(), StoreError> {
        // Reference counts need the lock; evidence with no logs touches none
        // (the byte total is updated atomically).
        let _guard = logs
            .iter()
            .any(Option::is_some)
            .then(|| self.evidence_lock.lock().unwrap_or_else(|p| p.into_inner()));
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
        self.add_meta(b"evidence_bytes", size as i64)
    }

    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .cache_capacity(SLED_CACHE_BYTES)
            .path(path)
            .open()
            .map_err(|source| StoreError::Open {
                path: path.display().to_string(),
                source,
            })?;
        // Older versions kept each node's last request here, logs included;
        // `policy generate --node` reads the kept evidence instead.
        db.drop_tree("last_evidence")?;
        Self {
            nodes: db.open_tree("nodes")?,
            enrollments: db.open_tree("enrollments")?,
            nonces: db.open_tree("nonces")?,
            tokens: db.open_tree("tokens")?,
            history: db.open_tree("history")?,
            quarantined: db.open_tree("quarantined")?,
            checkpoints: db.open_tree("checkpoints")?,
            history_by_node: db.open_tree("history_by_node")?,
            evidence: db.open_tree("evidence")?,
            blobs: db.open_tree("blobs")?,
            blob_refs: db.open_tree("blob_refs")?,
            policies: db.open_tree("policies")?,
            head: Mutex::new(None),
            flusher: GroupFlush::default(),
            evidence_lock: Mutex::new(()),
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
            return Ok(self);
        }
        // An append writes the record, then its index entry, unflushed: a
        // crash between them leaves the newest records without an entry.
        let mut repaired = false;
        for item in self.history.iter().rev() {
            let (k, v) = item?;
            let r: HistoryRecord = from_json("history", &k, &v)?;
            let key = node_key(&r.node_id, r.seq);
            if self.history_by_node.contains_key(&key)? {
                break;
            }
            self.history_by_node.insert(key, &[])?;
            repaired = true;
        }
        if repaired {
            self.flush()?;
        }
        Ok(self)
    }

    /// Makes every write this thread made before the call durable.
    fn flush(&self) -> Result<(), StoreError> {
        self.flusher.flush(&self.db)
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

    /// How many kept evidence entries name the log with this digest.
    fn blob_refcount(&self, digest: &[u8]) -> Result<u64, StoreError> {
        Ok(self.blob_refs.get(digest)?.map_or(0, |v| {
            u64::from_be_bytes(v.as_ref().try_into().unwrap_or_default())
        }))
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
}

impl Storage for SledStore {
    // ---- nodes

    fn node(&self, node_id: &str) -> Result<Option<NodeRecord>, StoreError> {
        get(&self.nodes, "nodes", node_id.as_bytes())
    }

    fn put_node(&self, node: &NodeRecord) -> Result<(), StoreError> {
        self.nodes.insert(node.node_id.as_bytes(), to_json(node))?;
        self.flush()
    }

    fn remove_node(&self, node_id: &str) -> Result<bool, StoreError> {
        let existed = self.nodes.remove(node_id.as_bytes())?.is_some();
        self.flush()?;
        Ok(existed)
    }

    /// Records a pass at `now_unix` (the start of the node's freshness window).
    fn set_last_pass(&self, node_id: &str, now_unix: i64) -> Result<(), StoreError> {
        if let Some(mut n) = self.node(node_id)? {
            n.last_pass_unix = Some(now_unix);
            self.put_node(&n)?;
        }
        Ok(())
    }

    /// Nodes whose last pass is older than `cutoff_unix` (nodes that never passed are not listed).
    fn nodes_passed_before(&self, cutoff_unix: i64) -> Result<Vec<(String, i64)>, StoreError> {
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
    fn set_last_clock(&self, node_id: &str, clock: ClockInfo) -> Result<(), StoreError> {
        if let Some(mut n) = self.node(node_id)? {
            n.last_clock = Some(clock);
            self.put_node(&n)?;
        }
        Ok(())
    }

    // ---- enrollments

    fn put_enrollment(&self, id: &str, e: &PendingEnrollment) -> Result<(), StoreError> {
        self.enrollments.insert(id.as_bytes(), to_json(e))?;
        self.flush()
    }

    /// Removes and returns a pending enrollment: each enrollment can be completed once.
    fn take_enrollment(&self, id: &str) -> Result<Option<PendingEnrollment>, StoreError> {
        let v = self.enrollments.remove(id.as_bytes())?;
        self.flush()?;
        v.map(|b| from_json("enrollments", id.as_bytes(), &b))
            .transpose()
    }

    // ---- nonces

    fn put_nonce(&self, nonce: &[u8], rec: &NonceRecord) -> Result<(), StoreError> {
        // Not flushed: see the trait (the next flush takes it along).
        self.nonces.insert(nonce, to_json(rec))?;
        Ok(())
    }

    /// Marks a nonce used, atomically, and says what it was before.
    fn consume_nonce(&self, nonce: &[u8]) -> Result<Consumed<NonceRecord>, StoreError> {
        // Not flushed here: the verdict recorded for this use flushes it
        // before anything is answered (see the trait).
        consume(
            &self.nonces,
            "nonces",
            nonce,
            |r: &NonceRecord| r.used,
            |r| r.used = true,
        )
    }

    /// Drops nonces, enrollments and join tokens that expired before `cutoff_unix`;
    /// returns how many. History is never purged here.
    fn purge_expired(&self, cutoff_unix: i64) -> Result<usize, StoreError> {
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

    fn put_token(&self, token: &str, rec: &TokenRecord) -> Result<(), StoreError> {
        self.tokens.insert(token_key(token), to_json(rec))?;
        self.flush()
    }

    /// Revokes every unused token of `node_id` (it failed attestation); how many.
    fn revoke_node_tokens(&self, node_id: &str) -> Result<usize, StoreError> {
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
    fn tokens(
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
    fn revoke_token(&self, id_prefix: &str) -> Result<RevokeOne, StoreError> {
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

    fn set_quarantine(&self, node_id: &str, q: Option<&Quarantine>) -> Result<(), StoreError> {
        match q {
            Some(q) => self.quarantined.insert(node_id.as_bytes(), to_json(q))?,
            None => self.quarantined.remove(node_id.as_bytes())?,
        };
        self.flush()
    }

    fn quarantine(&self, node_id: &str) -> Result<Option<Quarantine>, StoreError> {
        get(&self.quarantined, "quarantined", node_id.as_bytes())
    }

    /// Quarantines the orchestrator has not confirmed yet.
    fn unapplied_quarantines(&self) -> Result<Vec<String>, StoreError> {
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
    fn consume_token(&self, token: &str) -> Result<Consumed<TokenRecord>, StoreError> {
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

    /// Appends records in order, each chained to the one before, with one
    /// flush; durable on return.
    fn append_history_batch(
        &self,
        recs: Vec<HistoryRecord>,
    ) -> Result<Vec<HistoryRecord>, StoreError> {
        let recs = self.append_unflushed(recs)?;
        self.flush()?;
        Ok(recs)
    }

    /// One verdict's writes, then one flush.
    fn record_verdict(&self, w: VerdictWrite<'_>) -> Result<HistoryRecord, StoreError> {
        let node_id = w.record.node_id.clone();
        let rec = self.append_unflushed(vec![w.record])?.remove(0);
        if let Some(ev) = w.evidence {
            self.put_evidence_unflushed(rec.seq, ev, w.logs)?;
        }
        if w.clock.is_some() || w.passed_at.is_some() {
            if let Some(mut n) = self.node(&node_id)? {
                n.last_clock = w.clock.or(n.last_clock);
                n.last_pass_unix = w.passed_at.or(n.last_pass_unix);
                self.nodes.insert(n.node_id.as_bytes(), to_json(&n))?;
            }
        }
        if let Some((token, t)) = &w.token {
            self.tokens.insert(token_key(token), to_json(t))?;
        }
        self.flush()?;
        Ok(rec)
    }

    /// History matching `q`, newest first, at most `q.limit`; and the cursor
    /// for the next page (`before_seq`), or 0 when this is the last.
    fn query_history(&self, q: &HistoryQuery) -> Result<(Vec<HistoryRecord>, u64), StoreError> {
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
                    let r: HistoryRecord = from_json("history", &k, &v)?;
                    // An entry whose record a crash lost names a seq a later
                    // record of another node may have taken.
                    if r.node_id != *node {
                        continue;
                    }
                    if !take(r, &mut out) {
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
    fn fleet_at(&self, at: i64) -> Result<Vec<(String, Option<HistoryRecord>)>, StoreError> {
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
                    if r.node_id == node && (r.kind.is_empty() || r.kind == "stale") {
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
        // The index orders by id length first; callers get plain id order.
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// The record `seq`, if there is one.
    fn history_record(&self, seq: u64) -> Result<Option<HistoryRecord>, StoreError> {
        get(&self.history, "history", &seq.to_be_bytes())
    }

    // ---- evidence and policies (audit reverify)

    /// Keeps a policy file's text under its digest (idempotent).
    fn put_policy(&self, digest_hex: &str, text: &str) -> Result<(), StoreError> {
        self.policies
            .insert(digest_hex.as_bytes(), text.as_bytes())?;
        self.flush()
    }

    /// The digest of the policy the verifier last started with.
    fn current_policy(&self) -> Result<Option<String>, StoreError> {
        Ok(self
            .db
            .get(b"current_policy")?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    fn set_current_policy(&self, digest_hex: &str) -> Result<(), StoreError> {
        self.db.insert(b"current_policy", digest_hex.as_bytes())?;
        self.flush()
    }

    fn policy_text(&self, digest_hex: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .policies
            .get(digest_hex.as_bytes())?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Keeps the evidence behind record `seq`; logs are stored once by digest.
    fn put_evidence(
        &self,
        seq: u64,
        ev: StoredEvidence,
        logs: [Option<&[u8]>; 3],
    ) -> Result<(), StoreError> {
        self.put_evidence_unflushed(seq, ev, logs)?;
        self.flush()
    }

    /// The evidence behind record `seq` and its logs (UEFI, IMA, CEL).
    fn evidence(&self, seq: u64) -> Result<Option<(StoredEvidence, Logs)>, StoreError> {
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
    fn prune_evidence(
        &self,
        before_unix: i64,
        max_count: usize,
        max_bytes: u64,
    ) -> Result<usize, StoreError> {
        let _guard = self.evidence_lock.lock().unwrap_or_else(|p| p.into_inner());
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

    /// Checkpoints covering records `lo..=hi`, ascending.
    fn checkpoints_between(
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
    fn evidence_usage(&self) -> Result<(u64, usize), StoreError> {
        Ok((
            self.meta(b"evidence_bytes")?.max(0) as u64,
            self.evidence.len(),
        ))
    }

    /// The newest record, if any.
    fn history_head(&self) -> Result<Option<HistoryRecord>, StoreError> {
        match self.history.last()? {
            Some((k, v)) => Ok(Some(from_json("history", &k, &v)?)),
            None => Ok(None),
        }
    }

    /// Records from `from_seq` on, ascending, each with the seq its key says;
    /// at most `limit`.
    fn history_found(
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

    /// Records whose time is in `[from_unix, to_unix]`, ascending; at most `limit`.
    /// A scan: the history is keyed by sequence number.
    fn history_between(
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

    fn add_checkpoint(&self, c: &crate::audit::Checkpoint) -> Result<(), StoreError> {
        self.checkpoints.insert(c.seq.to_be_bytes(), to_json(c))?;
        self.flush()
    }

    /// Checkpoints, ascending.
    fn checkpoints(&self) -> Result<Vec<crate::audit::Checkpoint>, StoreError> {
        let mut out = Vec::new();
        for item in self.checkpoints.iter() {
            let (k, v) = item?;
            out.push(from_json("checkpoints", &k, &v)?);
        }
        Ok(out)
    }

    fn last_checkpoint(&self) -> Result<Option<crate::audit::Checkpoint>, StoreError> {
        match self.checkpoints.last()? {
            Some((k, v)) => Ok(Some(from_json("checkpoints", &k, &v)?)),
            None => Ok(None),
        }
    }
}

/// sled's page cache (its default is 1 GiB): the verifier's memory then
/// stays flat as the fleet and its history grow; cold pages come from disk.
const SLED_CACHE_BYTES: u64 = 128 << 20;

/// The last record's position, hash and time.
#[derive(Clone)]
struct Head {
    seq: u64,
    hash: String,
    time_unix: i64,
}

/// Group commit: a caller's writes are durable once a flush that started
/// after they were made has finished. One caller flushes for everyone who
/// asked before it started; those who ask meanwhile wait for the next.
#[derive(Default)]
struct GroupFlush {
    /// (flushes asked for, asked-for count the last finished flush covers, flushing now)
    state: Mutex<(u64, u64, bool)>,
    done: std::sync::Condvar,
}

impl GroupFlush {
    fn flush(&self, db: &sled::Db) -> Result<(), StoreError> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.0 += 1;
        let mine = st.0;
        loop {
            if st.1 >= mine {
                return Ok(());
            }
            if !st.2 {
                st.2 = true;
                let covers = st.0;
                drop(st);
                let r = db.flush();
                st = self.state.lock().unwrap_or_else(|p| p.into_inner());
                st.2 = false;
                if r.is_ok() {
                    st.1 = st.1.max(covers);
                }
                self.done.notify_all();
                r?;
            } else {
                st = self.done.wait(st).unwrap_or_else(|p| p.into_inner());
            }
        }
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
    //! sled-only behaviour; the storage suite both backends pass is
    //! `tests/tests/storage.rs`.
    use super::*;

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

    /// The seqs a per-node query finds, newest first.
    fn node_seqs(s: &SledStore, node: &str) -> Vec<u64> {
        let (r, _) = s
            .query_history(&HistoryQuery {
                node_id: Some(node.into()),
                limit: 10,
                ..Default::default()
            })
            .unwrap();
        r.iter().map(|r| r.seq).collect()
    }

    #[test]
    fn the_node_index_is_built_for_histories_written_before_it() {
        let d = tempfile::tempdir().unwrap();
        {
            let s = SledStore::open(d.path()).unwrap();
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
        let s = SledStore::open(d.path()).unwrap();
        assert_eq!(node_seqs(&s, "y"), vec![2]);
    }

    #[test]
    fn index_entries_a_crash_lost_are_restored_on_open() {
        let d = tempfile::tempdir().unwrap();
        {
            let s = SledStore::open(d.path()).unwrap();
            s.append_history_batch(vec![
                hrec("x", 1, true, "", None),
                hrec("y", 2, true, "", None),
                hrec("y", 3, false, "", None),
            ])
            .unwrap();
            // Records written, their index entries not (a crash between the
            // two unflushed writes of an append).
            s.history_by_node.remove(node_key("y", 2)).unwrap();
            s.history_by_node.remove(node_key("y", 3)).unwrap();
            s.flush().unwrap();
        }
        let s = SledStore::open(d.path()).unwrap();
        assert_eq!(node_seqs(&s, "y"), vec![3, 2]);
        assert_eq!(node_seqs(&s, "x"), vec![1]);
    }

    #[test]
    fn an_index_entry_naming_another_nodes_record_is_ignored() {
        let d = tempfile::tempdir().unwrap();
        let s = SledStore::open(d.path()).unwrap();
        s.append_history_batch(vec![
            hrec("x", 1, true, "", None),
            hrec("y", 2, false, "", None),
        ])
        .unwrap();
        // Left by a record a crash lost, whose seq record 2 (node y) took.
        s.history_by_node.insert(node_key("x", 2), &[]).unwrap();
        assert_eq!(node_seqs(&s, "x"), vec![1]);
        let fleet = s.fleet_at(i64::MAX).unwrap();
        let x = fleet.iter().find(|(n, _)| n == "x").unwrap();
        assert_eq!(x.1.as_ref().map(|r| r.seq), Some(1));
    }
}
