//! The embedded backend: one sled database in `<data_dir>/db`, for one
//! verifier. Every mutating call flushes before it returns (many callers'
//! flushes served by one fsync, `flush.rs`); single-use objects are consumed
//! with a compare-and-swap. One file per concern of the [`Storage`] seam:
//! `nodes.rs`, `single_use.rs`, `history.rs`, `evidence.rs`, `policies.rs`.
//!
//! [`Storage`]: super::Storage

mod evidence;
mod flush;
mod history;
mod nodes;
mod policies;
mod single_use;

use std::path::Path;
use std::sync::Mutex;

use serde::{de::DeserializeOwned, Serialize};

use self::flush::GroupFlush;
use super::{from_json, to_json, Consumed, HistoryRecord, NodeRecord, StoreError};

/// The embedded store: one sled tree per kind of record.
pub struct SledStore {
    db: sled::Db,
    nodes: sled::Tree,
    /// Index: EK certificate SHA-256 (hex) → node id (one EK holds one node
    /// id); written in one transaction with `nodes`.
    ek_nodes: sled::Tree,
    /// Registered nodes (inventory mode), by node id, and the index EK
    /// SHA-256 (hex) → node id; written together in one transaction.
    inventory: sled::Tree,
    inventory_ek: sled::Tree,
    enrollments: sled::Tree,
    nonces: sled::Tree,
    tokens: sled::Tree,
    history: sled::Tree,
    /// Nodes isolated after a failed attestation, until they pass again.
    quarantined: sled::Tree,
    /// Unauthenticated attempts in each node's name (counters, by node id).
    unauthenticated: sled::Tree,
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
    /// Named policies' versions, by (name, 0, version BE), and node groups'
    /// assignments, group → name (`policies.rs`).
    policy_versions: sled::Tree,
    policy_groups: sled::Tree,
    /// Serializes policy changes (version numbers, statuses).
    policy_lock: Mutex<()>,
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
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = ::sled::Config::new()
            .cache_capacity(SLED_CACHE_BYTES)
            .path(path)
            .open()
            .map_err(|e| StoreError::sled_open(path, &e))?;
        // Older versions kept each node's last request here, logs included;
        // `policy generate --node` reads the kept evidence instead.
        db.drop_tree("last_evidence")?;
        Self {
            nodes: db.open_tree("nodes")?,
            ek_nodes: db.open_tree("ek_nodes")?,
            inventory: db.open_tree("inventory")?,
            inventory_ek: db.open_tree("inventory_ek")?,
            enrollments: db.open_tree("enrollments")?,
            nonces: db.open_tree("nonces")?,
            tokens: db.open_tree("tokens")?,
            history: db.open_tree("history")?,
            quarantined: db.open_tree("quarantined")?,
            unauthenticated: db.open_tree("unauthenticated")?,
            checkpoints: db.open_tree("checkpoints")?,
            history_by_node: db.open_tree("history_by_node")?,
            evidence: db.open_tree("evidence")?,
            blobs: db.open_tree("blobs")?,
            blob_refs: db.open_tree("blob_refs")?,
            policies: db.open_tree("policies")?,
            policy_versions: db.open_tree("policy_versions")?,
            policy_groups: db.open_tree("policy_groups")?,
            policy_lock: Mutex::new(()),
            head: Mutex::new(None),
            flusher: GroupFlush::default(),
            evidence_lock: Mutex::new(()),
            db,
        }
        .with_history_index()?
        .with_ek_index()
    }

    /// Builds the EK index for nodes enrolled before it existed.
    fn with_ek_index(self) -> Result<Self, StoreError> {
        const MARK: &[u8] = b"ek_nodes/v1";
        if self.db.get(MARK)?.is_none() {
            for item in self.nodes.iter() {
                let (k, v) = item?;
                let n: NodeRecord = from_json("nodes", &k, &v)?;
                self.ek_nodes
                    .insert(n.ek_cert_sha256.as_bytes(), n.node_id.as_bytes())?;
            }
            self.db.insert(MARK, &[1])?;
            self.flush()?;
        }
        Ok(self)
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
    use crate::store::{HistoryQuery, HistoryStore};

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
            policy_version: 0,
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
