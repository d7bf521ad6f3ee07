//! Nodes, pending enrollments and quarantines in sled.

use assay_core::tpm::attest::ClockInfo;

use sled::Transactional;

use super::{get, SledStore};
use sled::transaction::{ConflictableTransactionError, TransactionError};

use crate::store::{
    batch_conflicts, from_json, plan_inventory_batch, to_json, InventoryAdded, InventoryConflicts,
    InventoryEntry, Moved, NodeRecord, NodeStore, PendingEnrollment, Quarantine, StoreError,
    UnauthenticatedAttempts,
};

impl NodeStore for SledStore {
    fn node(&self, node_id: &str) -> Result<Option<NodeRecord>, StoreError> {
        get(&self.nodes, "nodes", node_id.as_bytes())
    }

    /// The record and its EK index entry in one transaction (an EK the node
    /// no longer holds leaves the index).
    fn put_node(&self, node: &NodeRecord) -> Result<(), StoreError> {
        let value = to_json(node);
        (&self.nodes, &self.ek_nodes)
            .transaction(|(nodes, ek_nodes)| {
                let id = node.node_id.as_bytes();
                if let Some(old) = nodes.insert(id, value.as_slice())? {
                    let old = serde_json::from_slice::<NodeRecord>(&old)
                        .ok()
                        .filter(|o| o.ek_cert_sha256 != node.ek_cert_sha256);
                    if let Some(old) = old {
                        let key = old.ek_cert_sha256.as_bytes();
                        if ek_nodes.get(key)?.as_deref() == Some(id) {
                            ek_nodes.remove(key)?;
                        }
                    }
                }
                ek_nodes.insert(node.ek_cert_sha256.as_bytes(), id)?;
                Ok(())
            })
            .map_err(tx_error)?;
        self.flush()
    }

    fn remove_node(&self, node_id: &str) -> Result<bool, StoreError> {
        let existed = (&self.nodes, &self.ek_nodes)
            .transaction(|(nodes, ek_nodes)| {
                let id = node_id.as_bytes();
                let Some(old) = nodes.remove(id)? else {
                    return Ok(false);
                };
                if let Ok(old) = serde_json::from_slice::<NodeRecord>(&old) {
                    let key = old.ek_cert_sha256.as_bytes();
                    if ek_nodes.get(key)?.as_deref() == Some(id) {
                        ek_nodes.remove(key)?;
                    }
                }
                Ok(true)
            })
            .map_err(tx_error)?;
        self.flush()?;
        Ok(existed)
    }

    fn node_by_ek(&self, ek_cert_sha256: &str) -> Result<Option<String>, StoreError> {
        self.ek_nodes
            .get(ek_cert_sha256.as_bytes())?
            .map(|id| {
                String::from_utf8(id.to_vec()).map_err(|_| StoreError::Corrupt {
                    tree: "ek_nodes",
                    key: ek_cert_sha256.into(),
                    reason: "node id is not UTF-8".into(),
                })
            })
            .transpose()
    }

    // ---- the inventory

    fn add_inventory(
        &self,
        entries: &[InventoryEntry],
    ) -> Result<Result<InventoryAdded, InventoryConflicts>, StoreError> {
        let conflicts = batch_conflicts(entries);
        if !conflicts.is_empty() {
            return Ok(Err(InventoryConflicts(conflicts)));
        }
        let outcome = (&self.inventory, &self.inventory_ek)
            .transaction(|(inv, by_ek)| {
                let planned = plan_inventory_batch(entries, |e| {
                    let by_node: Option<InventoryEntry> = inv
                        .get(e.node_id.as_bytes())?
                        .map(|v| from_json("inventory", e.node_id.as_bytes(), &v))
                        .transpose()
                        .map_err(ConflictableTransactionError::Abort)?;
                    let holder = match by_ek.get(e.ek_sha256.as_bytes())? {
                        Some(id) => inv
                            .get(&id)?
                            .map(|v| from_json::<InventoryEntry>("inventory", &id, &v))
                            .transpose()
                            .map_err(ConflictableTransactionError::Abort)?,
                        None => None,
                    };
                    Ok::<_, ConflictableTransactionError<StoreError>>((by_node, holder))
                })?;
                let (added, writes) = match planned {
                    Ok(p) => p,
                    Err(c) => return Ok(Err(c)),
                };
                for e in writes {
                    inv.insert(e.node_id.as_bytes(), to_json(e))?;
                    by_ek.insert(e.ek_sha256.as_bytes(), e.node_id.as_bytes())?;
                }
                Ok(Ok(added))
            })
            .map_err(store_tx_error)?;
        self.flush()?;
        Ok(outcome)
    }

    fn inventory(&self, node_id: &str) -> Result<Option<InventoryEntry>, StoreError> {
        get(&self.inventory, "inventory", node_id.as_bytes())
    }

    fn inventory_by_ek(&self, ek_sha256: &str) -> Result<Option<InventoryEntry>, StoreError> {
        match self.inventory_ek.get(ek_sha256.as_bytes())? {
            Some(id) => Ok(get::<InventoryEntry>(&self.inventory, "inventory", &id)?
                .filter(|e| e.ek_sha256 == ek_sha256)),
            None => Ok(None),
        }
    }

    fn list_inventory(&self, after: &str, limit: usize) -> Result<Vec<InventoryEntry>, StoreError> {
        let mut out = Vec::new();
        let range = (
            std::ops::Bound::Excluded(after.as_bytes().to_vec()),
            std::ops::Bound::Unbounded,
        );
        for item in self.inventory.range(range).take(limit) {
            let (k, v) = item?;
            out.push(from_json("inventory", &k, &v)?);
        }
        Ok(out)
    }

    fn list_nodes(&self, after: &str, limit: usize) -> Result<Vec<NodeRecord>, StoreError> {
        let range = (
            std::ops::Bound::Excluded(after.as_bytes().to_vec()),
            std::ops::Bound::Unbounded,
        );
        let mut out = Vec::new();
        for item in self.nodes.range(range).take(limit) {
            let (k, v) = item?;
            out.push(from_json("nodes", &k, &v)?);
        }
        Ok(out)
    }

    fn remove_inventory(&self, node_id: &str) -> Result<bool, StoreError> {
        let existed = (&self.inventory, &self.inventory_ek)
            .transaction(|(inv, by_ek)| {
                let id = node_id.as_bytes();
                let Some(old) = inv.remove(id)? else {
                    return Ok(false);
                };
                if let Ok(old) = serde_json::from_slice::<InventoryEntry>(&old) {
                    if by_ek.get(old.ek_sha256.as_bytes())?.as_deref() == Some(id) {
                        by_ek.remove(old.ek_sha256.as_bytes())?;
                    }
                }
                Ok(true)
            })
            .map_err(tx_error)?;
        self.flush()?;
        Ok(existed)
    }

    fn move_node(&self, from: &str, to: &str) -> Result<Moved, StoreError> {
        let moved = (
            &self.nodes,
            &self.ek_nodes,
            &self.inventory,
            &self.inventory_ek,
            &self.quarantined,
        )
            .transaction(|(nodes, ek_nodes, inv, by_ek, quarantined)| {
                let (f, t) = (from.as_bytes(), to.as_bytes());
                if nodes.get(t)?.is_some() || inv.get(t)?.is_some() {
                    return Ok(Moved::Taken);
                }
                let node = nodes.remove(f)?;
                let entry = inv.remove(f)?;
                if node.is_none() && entry.is_none() {
                    return Ok(Moved::Unknown);
                }
                if let Some(v) = &node {
                    let mut n: NodeRecord =
                        from_json("nodes", f, v).map_err(ConflictableTransactionError::Abort)?;
                    n.node_id = to.into();
                    nodes.insert(t, to_json(&n))?;
                    ek_nodes.insert(n.ek_cert_sha256.as_bytes(), t)?;
                }
                if let Some(v) = &entry {
                    let mut e: InventoryEntry = from_json("inventory", f, v)
                        .map_err(ConflictableTransactionError::Abort)?;
                    e.node_id = to.into();
                    inv.insert(t, to_json(&e))?;
                    by_ek.insert(e.ek_sha256.as_bytes(), t)?;
                }
                if let Some(q) = quarantined.remove(f)? {
                    quarantined.insert(t, q)?;
                }
                Ok(Moved::Done {
                    enrolled: node.is_some(),
                    registered: entry.is_some(),
                })
            })
            .map_err(store_tx_error)?;
        self.flush()?;
        Ok(moved)
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

    fn quarantines(&self) -> Result<Vec<(String, Quarantine)>, StoreError> {
        let mut out = Vec::new();
        for item in self.quarantined.iter() {
            let (k, v) = item?;
            let q: Quarantine = from_json("quarantined", &k, &v)?;
            out.push((String::from_utf8_lossy(&k).into_owned(), q));
        }
        Ok(out)
    }

    fn quarantined_count(&self) -> Result<usize, StoreError> {
        Ok(self.quarantined.len())
    }

    fn add_attempts(
        &self,
        node_id: &str,
        seen: &UnauthenticatedAttempts,
    ) -> Result<(), StoreError> {
        // Counters: a record that no longer reads starts over rather than
        // failing every later merge.
        self.unauthenticated
            .update_and_fetch(node_id.as_bytes(), |old| {
                let mut rec: UnauthenticatedAttempts = old
                    .and_then(|b| serde_json::from_slice(b).ok())
                    .unwrap_or_default();
                rec.merge(seen);
                Some(to_json(&rec))
            })?;
        Ok(())
    }

    fn attempts(&self, node_id: &str) -> Result<Option<UnauthenticatedAttempts>, StoreError> {
        get(&self.unauthenticated, "unauthenticated", node_id.as_bytes())
    }
}

fn tx_error(e: sled::transaction::TransactionError<()>) -> StoreError {
    match e {
        sled::transaction::TransactionError::Storage(e) => e.into(),
        sled::transaction::TransactionError::Abort(()) => {
            StoreError::Db("node transaction aborted".into())
        }
    }
}

fn store_tx_error(e: TransactionError<StoreError>) -> StoreError {
    match e {
        TransactionError::Storage(e) => e.into(),
        TransactionError::Abort(e) => e,
    }
}
