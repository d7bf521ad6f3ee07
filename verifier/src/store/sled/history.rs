//! The hash-chained history, its per-node index and the checkpoints in sled.

use assay_core::verify::ImaProgress;
use sha2::{Digest, Sha256};

use super::{get, node_key, node_of, Head, SledStore};
use crate::store::{
    from_json, to_json, token_key, Checkpoint, Found, HistoryQuery, HistoryRecord, HistoryStore,
    NodeStore, StoreError, VerdictWrite,
};

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
}

impl HistoryStore for SledStore {
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
        let ima_changed = w.ima_state != ImaProgress::Unchanged;
        if w.clock.is_some() || w.passed_at.is_some() || ima_changed {
            if let Some(mut n) = self.node(&node_id)? {
                n.last_clock = w.clock.or(n.last_clock);
                n.last_pass_unix = w.passed_at.or(n.last_pass_unix);
                match w.ima_state {
                    ImaProgress::Unchanged => {}
                    ImaProgress::Clear => n.ima_state = None,
                    ImaProgress::Set(s) => n.ima_state = Some(s),
                }
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

    /// Checkpoints covering records `lo..=hi`, ascending.
    fn checkpoints_between(&self, lo: u64, hi: u64) -> Result<Vec<Checkpoint>, StoreError> {
        let mut out = Vec::new();
        for item in self.checkpoints.range(lo.to_be_bytes()..=hi.to_be_bytes()) {
            let (k, v) = item?;
            out.push(from_json("checkpoints", &k, &v)?);
        }
        Ok(out)
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
    fn history_found(&self, from_seq: u64, limit: usize) -> Result<Vec<Found>, StoreError> {
        let mut out = Vec::new();
        for item in self.history.range(from_seq.to_be_bytes()..) {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item?;
            let key_seq = <[u8; 8]>::try_from(k.as_ref()).map_or(0, u64::from_be_bytes);
            out.push(Found {
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

    fn add_checkpoint(&self, c: &Checkpoint) -> Result<(), StoreError> {
        self.checkpoints.insert(c.seq.to_be_bytes(), to_json(c))?;
        self.flush()
    }

    /// Checkpoints, ascending.
    fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        let mut out = Vec::new();
        for item in self.checkpoints.iter() {
            let (k, v) = item?;
            out.push(from_json("checkpoints", &k, &v)?);
        }
        Ok(out)
    }

    fn last_checkpoint(&self) -> Result<Option<Checkpoint>, StoreError> {
        match self.checkpoints.last()? {
            Some((k, v)) => Ok(Some(from_json("checkpoints", &k, &v)?)),
            None => Ok(None),
        }
    }
}
