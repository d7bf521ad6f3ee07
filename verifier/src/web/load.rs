//! Fills the views from the store. Blocking (store calls), run on a blocking
//! thread; every read is bounded: one `fleet_at` (a record per node), the
//! quarantines, a page of one node's history, at most
//! [`OPERATOR_ACTION_WINDOW`] records for the operator actions, and O(1)
//! reads for the chain's head and last checkpoint (the full chain re-check
//! is `assay-verifier audit verify`'s job, not a page view's).

use std::collections::HashMap;

use super::view::{
    fleet_rows, ChainState, CheckpointState, FleetPage, NodePage, Standing, Viewer, MAX_LISTED,
};
use crate::service::Verifier;
use crate::store::{Checkpoint, HistoryQuery, HistoryRecord, StoreError};

/// Newest records looked through for operator actions (`admin` records)
/// on the fleet page; `history --verdict admin` lists them all.
pub const OPERATOR_ACTION_WINDOW: u64 = 2_000;

/// What the fleet page was asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FleetQuery {
    pub at_unix: Option<i64>,
    pub filter: Option<Standing>,
    /// From 1.
    pub page: usize,
}

/// What a node's page was asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeQuery {
    pub node_id: String,
    pub at_unix: Option<i64>,
    pub before_seq: Option<u64>,
}

pub fn fleet_page(
    v: &Verifier,
    viewer: Viewer,
    q: &FleetQuery,
    per_page: usize,
    now_unix: i64,
) -> Result<FleetPage, StoreError> {
    let at = q.at_unix.unwrap_or(now_unix);
    let fleet = v.store.fleet_at(at)?;
    let mut quarantines = v.store.quarantines()?;
    let by_node: HashMap<String, crate::store::Quarantine> = quarantines.iter().cloned().collect();
    let (counts, rows, paging) = fleet_rows(fleet, &by_node, q.filter, q.page, per_page);
    quarantines.sort_by(|a, b| (b.1.since_unix, &a.0).cmp(&(a.1.since_unix, &b.0)));
    quarantines.truncate(MAX_LISTED);
    Ok(FleetPage {
        viewer,
        generated_unix: now_unix,
        at_unix: q.at_unix,
        filter: q.filter,
        counts,
        rows,
        paging,
        chain: chain_state(v)?,
        quarantines,
        operator_actions: operator_actions(v, q.at_unix)?,
    })
}

/// The chain's head and its last checkpoint, the checkpoint's signature
/// checked under this verifier's key and its head hash against the record.
pub fn chain_state(v: &Verifier) -> Result<ChainState, StoreError> {
    let head = v.store.history_head()?.map(|r| (r.seq, r.time_unix));
    let checkpoint = match v.store.last_checkpoint()? {
        None => None,
        Some(c) => {
            let jwks: serde_json::Value =
                serde_json::from_str(&v.tokens.jwks_json()).unwrap_or_default();
            let payload = Checkpoint::payload(c.seq, &c.head_hash, c.time_unix);
            Some(CheckpointState {
                seq: c.seq,
                time_unix: c.time_unix,
                signature: crate::audit::verify_detached(&jwks, &c.signature, &payload),
                matches_record: v
                    .store
                    .history_record(c.seq)?
                    .map(|r| r.hash() == c.head_hash),
            })
        }
    };
    Ok(ChainState { head, checkpoint })
}

/// The newest `admin` records at or before `at` among the
/// [`OPERATOR_ACTION_WINDOW`] records before it, newest first.
fn operator_actions(v: &Verifier, at: Option<i64>) -> Result<Vec<HistoryRecord>, StoreError> {
    let last = match at {
        None => v.store.history_head()?,
        Some(t) => v
            .store
            .query_history(&HistoryQuery {
                to_unix: Some(t),
                limit: 1,
                ..Default::default()
            })?
            .0
            .pop(),
    };
    let Some(last) = last else {
        return Ok(Vec::new());
    };
    let from = last.seq.saturating_sub(OPERATOR_ACTION_WINDOW - 1).max(1);
    let mut found: Vec<HistoryRecord> = v
        .store
        .history_found(from, OPERATOR_ACTION_WINDOW as usize)?
        .into_iter()
        .map(|f| f.record)
        .filter(|r| r.kind == "admin" && r.seq <= last.seq)
        .collect();
    found.reverse();
    found.truncate(MAX_LISTED);
    Ok(found)
}

/// A node's page; None when the store knows nothing of the node.
pub fn node_page(
    v: &Verifier,
    viewer: Viewer,
    q: &NodeQuery,
    per_page: usize,
    now_unix: i64,
) -> Result<Option<NodePage>, StoreError> {
    let node = Some(q.node_id.clone());
    let (timeline, next_before_seq) = v.store.query_history(&HistoryQuery {
        node_id: node.clone(),
        to_unix: q.at_unix,
        before_seq: q.before_seq,
        limit: per_page,
        ..Default::default()
    })?;
    // The standing: the newest verdict or stale record (as `fleet_at`). A
    // stale mark only follows a verdict: it is looked for after the newest
    // verdict only, so neither read walks the node's whole history.
    let newest = |kind: &str, from_unix: Option<i64>| {
        v.store
            .query_history(&HistoryQuery {
                node_id: node.clone(),
                from_unix,
                to_unix: q.at_unix,
                verdict: Some(kind.into()),
                limit: 1,
                ..Default::default()
            })
            .map(|(mut r, _)| r.pop())
    };
    let latest = match newest("verdict", None)? {
        None => None,
        Some(verdict) => match newest("stale", Some(verdict.time_unix))? {
            Some(stale) if stale.seq > verdict.seq => Some(stale),
            _ => Some(verdict),
        },
    };
    let enrolled = v
        .store
        .node(&q.node_id)?
        .map(|n| (n.activated_unix, n.last_pass_unix));
    let quarantine = v.store.quarantine(&q.node_id)?;
    let tokens = v
        .store
        .tokens(Some(&q.node_id), false, now_unix, MAX_LISTED)?;
    if timeline.is_empty()
        && q.before_seq.is_none()
        && latest.is_none()
        && enrolled.is_none()
        && quarantine.is_none()
        && tokens.is_empty()
    {
        return Ok(None);
    }
    Ok(Some(NodePage {
        viewer,
        generated_unix: now_unix,
        node_id: q.node_id.clone(),
        standing: Standing::of(latest.as_ref()),
        latest,
        enrolled,
        quarantine,
        tokens,
        timeline,
        to_unix: q.at_unix,
        before_seq: q.before_seq,
        next_before_seq,
    }))
}
