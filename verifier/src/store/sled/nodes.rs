//! Nodes, pending enrollments and quarantines in sled.

use assay_core::tpm::attest::ClockInfo;

use sled::Transactional;

use super::{get, SledStore};
use crate::store::{
    from_json, to_json, NodeRecord, NodeStore, PendingEnrollment, Quarantine, StoreError,
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
}

fn tx_error(e: sled::transaction::TransactionError<()>) -> StoreError {
    match e {
        sled::transaction::TransactionError::Storage(e) => e.into(),
        sled::transaction::TransactionError::Abort(()) => {
            StoreError::Db("node transaction aborted".into())
        }
    }
}
