//! Nodes, pending enrollments and quarantines in sled.

use assay_core::tpm::attest::ClockInfo;

use super::{get, SledStore};
use crate::store::{
    from_json, to_json, NodeRecord, NodeStore, PendingEnrollment, Quarantine, StoreError,
};

impl NodeStore for SledStore {
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
