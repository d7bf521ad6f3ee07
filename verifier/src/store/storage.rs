//! The storage seam: what the service needs kept, in four concerns, and the
//! one contract every backend keeps.

use assay_core::tpm::attest::ClockInfo;

use super::records::{
    Applied, Checkpoint, Consumed, Found, HistoryQuery, HistoryRecord, InventoryAdded,
    InventoryConflicts, InventoryEntry, Logs, Moved, NewPolicyVersion, NodeRecord, NonceRecord,
    PendingEnrollment, PolicyVersion, Quarantine, Retired, RevokeOne, StoredEvidence, TokenRecord,
    UnauthenticatedAttempts, VerdictWrite,
};
use super::StoreError;

/// The verifier's durable state: nodes, single-use objects, the history, the
/// evidence behind it and the named policies. A backend implements the five
/// concerns ([`NodeStore`], [`SingleUseStore`], [`HistoryStore`],
/// [`EvidenceStore`], [`PolicyStore`]); `Storage` is all of them, and the
/// service holds a `Box<dyn Storage>`.
///
/// # The contract
/// - **Durable on return.** Every mutating call is durable when it returns
///   (sled: flushed; PostgreSQL: committed with `synchronous_commit`), so
///   whatever the service acknowledges to a caller survives a crash — with
///   two exceptions, both about nonces: [`SingleUseStore::put_nonce`] need
///   not be durable (a nonce lost in a crash only makes its node ask again),
///   and [`SingleUseStore::consume_nonce`] is made durable by the verdict
///   recorded after it, before which nothing is answered.
/// - **Visible at once.** A write is visible to every verifier sharing the
///   store when the call returns (replicas on PostgreSQL).
/// - **Single use.** Nonces, tokens and pending enrollments are consumed by
///   an atomic read-modify-write: of two concurrent uses, exactly one wins.
/// - **One verdict, one write.** [`HistoryStore::record_verdict`] makes
///   everything one verdict changes (record, evidence, clock, last pass,
///   token) durable together, in one flush or one transaction: there is no
///   default that would split it into separate writes.
/// - **One chain.** Records get consecutive sequence numbers, each chained to
///   the SHA-256 of the one before, and record times never go backwards.
///
/// Calls block: the service makes them from blocking threads.
pub trait Storage: NodeStore + SingleUseStore + HistoryStore + EvidenceStore + PolicyStore {}

impl<T: NodeStore + SingleUseStore + HistoryStore + EvidenceStore + PolicyStore + ?Sized> Storage
    for T
{
}

/// Named, versioned policies and which node group uses which name. Every
/// change is one atomic step (sled: under one lock, then flushed;
/// PostgreSQL: one transaction serialized on the `policy_epoch` row), so two
/// verifiers applying to one name at once both get a version, in order, and
/// none is lost; and every change moves [`PolicyStore::policy_epoch`], which
/// a verifier polls to pick up changes made elsewhere.
pub trait PolicyStore: Send + Sync {
    /// Appends a version to `new.name` (created by its first version) and
    /// keeps its text by digest; the status changes of `new.mode`
    /// (`records::plan_apply`). The new version as stored, and what it replaced.
    fn apply_policy(&self, new: &NewPolicyVersion<'_>) -> Result<Applied, StoreError>;

    /// A name's versions, oldest first (empty: no such name).
    fn policy_versions(&self, name: &str) -> Result<Vec<PolicyVersion>, StoreError>;

    /// Every policy name, sorted.
    fn policy_names(&self) -> Result<Vec<String>, StoreError>;

    /// Takes `version` out of a rollout (`records::plan_retire`).
    fn retire_policy_version(&self, name: &str, version: u64) -> Result<Retired, StoreError>;

    /// Node group `group` uses policy `name` (None: back to `default`).
    fn assign_policy(&self, group: &str, name: Option<&str>) -> Result<(), StoreError>;

    /// Every assignment (group, policy name), sorted by group.
    fn policy_assignments(&self) -> Result<Vec<(String, String)>, StoreError>;

    /// A number that changes with every apply, retire and assignment.
    fn policy_epoch(&self) -> Result<u64, StoreError>;
}

/// Enrolled nodes, pending enrollments and quarantines.
pub trait NodeStore: Send + Sync {
    fn node(&self, node_id: &str) -> Result<Option<NodeRecord>, StoreError>;

    fn put_node(&self, node: &NodeRecord) -> Result<(), StoreError>;

    fn remove_node(&self, node_id: &str) -> Result<bool, StoreError>;

    /// The node enrolled with the EK certificate whose hex SHA-256 is
    /// `ek_cert_sha256`, if any (one EK holds one node id).
    fn node_by_ek(&self, ek_cert_sha256: &str) -> Result<Option<String>, StoreError>;

    /// Registers inventory entries, all or none, atomically: refused, with
    /// nothing written, when an entry's node id is registered with another
    /// EK or its EK is registered under another node id (within the batch
    /// too). An entry registered with the same EK has its labels replaced.
    fn add_inventory(
        &self,
        entries: &[InventoryEntry],
    ) -> Result<Result<InventoryAdded, InventoryConflicts>, StoreError>;

    fn inventory(&self, node_id: &str) -> Result<Option<InventoryEntry>, StoreError>;

    /// The entry registered for the EK whose SHA-256 (of its certificate or
    /// of its public area) is `ek_sha256`.
    fn inventory_by_ek(&self, ek_sha256: &str) -> Result<Option<InventoryEntry>, StoreError>;

    /// Entries in node-id order, starting after `after` ("" for the first).
    fn list_inventory(&self, after: &str, limit: usize) -> Result<Vec<InventoryEntry>, StoreError>;

    /// Enrolled nodes in node-id order, starting after `after` ("" for the first).
    fn list_nodes(&self, after: &str, limit: usize) -> Result<Vec<NodeRecord>, StoreError>;

    fn remove_inventory(&self, node_id: &str) -> Result<bool, StoreError>;

    /// Renames a node, atomically: its inventory entry, its enrolled record
    /// (EK, AK, rollback baseline) and its quarantine move to `to`.
    fn move_node(&self, from: &str, to: &str) -> Result<Moved, StoreError>;

    /// Records a pass at `now_unix` (the start of the node's freshness window).
    fn set_last_pass(&self, node_id: &str, now_unix: i64) -> Result<(), StoreError>;

    /// Nodes whose last pass is older than `cutoff_unix` (nodes that never passed are not listed).
    fn nodes_passed_before(&self, cutoff_unix: i64) -> Result<Vec<(String, i64)>, StoreError>;

    /// Records the clock of the last verified quote.
    fn set_last_clock(&self, node_id: &str, clock: ClockInfo) -> Result<(), StoreError>;

    fn put_enrollment(&self, id: &str, e: &PendingEnrollment) -> Result<(), StoreError>;

    /// Removes and returns a pending enrollment: each enrollment can be completed once.
    fn take_enrollment(&self, id: &str) -> Result<Option<PendingEnrollment>, StoreError>;

    fn set_quarantine(&self, node_id: &str, q: Option<&Quarantine>) -> Result<(), StoreError>;

    fn quarantine(&self, node_id: &str) -> Result<Option<Quarantine>, StoreError>;

    /// Every quarantined node, by node id.
    fn quarantines(&self) -> Result<Vec<(String, Quarantine)>, StoreError>;

    /// Quarantines the orchestrator has not confirmed yet.
    fn unapplied_quarantines(&self) -> Result<Vec<String>, StoreError> {
        Ok(self
            .quarantines()?
            .into_iter()
            .filter(|(_, q)| !q.applied)
            .map(|(n, _)| n)
            .collect())
    }

    /// How many nodes are quarantined.
    fn quarantined_count(&self) -> Result<usize, StoreError> {
        Ok(self.quarantines()?.len())
    }

    /// Adds attempts seen since the last call (merged, see
    /// [`UnauthenticatedAttempts::merge`]) to the node's record. Counters,
    /// written in batches by the service: atomic per call, and durable no
    /// later than the next flush.
    fn add_attempts(&self, node_id: &str, seen: &UnauthenticatedAttempts)
        -> Result<(), StoreError>;

    /// The unauthenticated attempts recorded in the node's name.
    fn attempts(&self, node_id: &str) -> Result<Option<UnauthenticatedAttempts>, StoreError>;
}

/// Nonces and join tokens: single-use objects, and the purge of everything
/// that expires (nonces, pending enrollments, tokens).
pub trait SingleUseStore: Send + Sync {
    /// Keeps an issued nonce; visible on return, not necessarily durable
    /// (see the contract on [`Storage`]).
    fn put_nonce(&self, nonce: &[u8], rec: &NonceRecord) -> Result<(), StoreError>;

    /// Marks a nonce used, atomically, and says what it was before. Visible
    /// on return; durable no later than the verdict recorded after it (see
    /// the contract on [`Storage`]).
    fn consume_nonce(&self, nonce: &[u8]) -> Result<Consumed<NonceRecord>, StoreError>;

    /// Drops nonces, enrollments and join tokens that expired before
    /// `cutoff_unix`; returns how many. History is never purged here.
    fn purge_expired(&self, cutoff_unix: i64) -> Result<usize, StoreError>;

    fn put_token(&self, token: &str, rec: &TokenRecord) -> Result<(), StoreError>;

    /// Marks a token used, atomically, and says what it was before.
    fn consume_token(&self, token: &str) -> Result<Consumed<TokenRecord>, StoreError>;

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
    /// least [`super::MIN_TOKEN_ID_PREFIX`] digits; the caller checks).
    fn revoke_token(&self, id_prefix: &str) -> Result<RevokeOne, StoreError>;
}

/// The hash-chained history and its signed checkpoints.
pub trait HistoryStore: Send + Sync {
    /// Appends records in order, each chained to the one before, in one
    /// transaction and one flush.
    fn append_history_batch(
        &self,
        recs: Vec<HistoryRecord>,
    ) -> Result<Vec<HistoryRecord>, StoreError>;

    /// Appends one record (an admin, stale or webhook record), chained.
    fn append_history(&self, rec: HistoryRecord) -> Result<HistoryRecord, StoreError> {
        self.append_history_batch(vec![rec])?
            .pop()
            .ok_or_else(|| StoreError::Db("an append returned no record".into()))
    }

    /// Everything one verdict writes (see [`VerdictWrite`]), durable together
    /// on return; the record as appended.
    fn record_verdict(&self, w: VerdictWrite<'_>) -> Result<HistoryRecord, StoreError>;

    /// History matching `q`, newest first, at most `q.limit`; and the cursor
    /// for the next page (`before_seq`), or 0 when this is the last.
    fn query_history(&self, q: &HistoryQuery) -> Result<(Vec<HistoryRecord>, u64), StoreError>;

    /// Each node's standing at time `at`: its last verdict or stale record at
    /// or before `at` (None for nodes with no such record). Nodes are those
    /// with any history.
    fn fleet_at(&self, at: i64) -> Result<Vec<(String, Option<HistoryRecord>)>, StoreError>;

    /// The record `seq`, if there is one.
    fn history_record(&self, seq: u64) -> Result<Option<HistoryRecord>, StoreError>;

    /// The newest record, if any.
    fn history_head(&self) -> Result<Option<HistoryRecord>, StoreError>;

    /// Records from `from_seq` on, ascending, each with the seq its key says;
    /// at most `limit`.
    fn history_found(&self, from_seq: u64, limit: usize) -> Result<Vec<Found>, StoreError>;

    /// Records whose time is in `[from_unix, to_unix]`, ascending; at most `limit`.
    fn history_between(
        &self,
        from_unix: i64,
        to_unix: i64,
        limit: usize,
    ) -> Result<Vec<HistoryRecord>, StoreError>;

    fn add_checkpoint(&self, c: &Checkpoint) -> Result<(), StoreError>;

    /// Checkpoints, ascending.
    fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError>;

    /// Checkpoints covering records `lo..=hi`, ascending.
    fn checkpoints_between(&self, lo: u64, hi: u64) -> Result<Vec<Checkpoint>, StoreError>;

    fn last_checkpoint(&self) -> Result<Option<Checkpoint>, StoreError>;

    /// Every record, ascending, lazily (for `audit verify` over any size).
    fn history_iter(&self) -> Box<dyn Iterator<Item = Result<Found, StoreError>> + '_> {
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

/// The evidence behind each verdict (content-addressed logs, retention) and
/// the policy texts verdicts were judged under (`audit reverify`).
pub trait EvidenceStore: Send + Sync {
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
        logs: Logs<&[u8]>,
    ) -> Result<(), StoreError>;

    /// The evidence behind record `seq`, and its logs.
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

    /// Bytes of evidence kept (logs counted once) and entries.
    fn evidence_usage(&self) -> Result<(u64, usize), StoreError>;
}

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
