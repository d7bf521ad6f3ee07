//! A node's membership, kept honest after every verdict and over time:
//!
//! - a pass: a node Assay isolated is restored, then the orchestrator's grant
//!   is issued;
//! - a fail on the node's *own* evidence (quote signature and nonce verified —
//!   anyone can send garbage in a node's name, and that must isolate nothing):
//!   its unused tokens are revoked and the orchestrator isolates it;
//! - no pass within `stale_after_secs`: the same, with a `stale` history record.
//!
//! The quarantine is recorded before the orchestrator is asked, so an
//! isolation that fails (orchestrator unreachable) is retried every second by
//! the upkeep task until it is confirmed. Each isolation and restore is
//! notified to the webhook, whose delivery is itself recorded in the history.

use std::sync::Arc;
use std::time::{Duration, Instant};

use assay_core::verdict::Claim;
use hyper::body::Bytes;
use sha2::{Digest as _, Sha256};
use tracing::{info, warn};

use crate::clock::now_unix;
use crate::join::{Grant, IssueFor};
use crate::service::{blocking, AttestOutput, ServiceError, Verifier};
use crate::store::Quarantine;
use crate::webhook::Event;

/// After the verdict is durable: restore and issue on a pass, isolate on an
/// authentic fail. The grant, or why a pass came without one.
pub async fn after_verdict(
    v: &Arc<Verifier>,
    node_id: &str,
    out: &AttestOutput,
) -> (Option<Grant>, String) {
    if !out.verdict.passed {
        if out.authentic {
            let event = Event {
                event: "node.quarantined",
                node_id: node_id.to_string(),
                time_unix: now_unix(),
                reason: "attestation failed".into(),
                failed_claims: out.verdict.failed().map(|c| c.id.clone()).collect(),
                history_seq: out.history_seq,
                tokens_revoked: 0,
            };
            if let Err(e) = isolate(v, event).await {
                note_join_error(v, node_id, &e);
                warn!(node_id, error = %e, "isolating the failed node did not complete; retrying");
            }
        }
        return (None, String::new());
    }
    if let Err(e) = restore(v, node_id, out.history_seq).await {
        note_join_error(v, node_id, &e);
        warn!(node_id, error = %e, "restoring the node failed; retried at its next pass");
    }
    let Some((jws, jws_expires_unix)) = &out.token else {
        return (None, String::new());
    };
    let to = IssueFor {
        node_id,
        jws,
        jws_expires_unix: *jws_expires_unix,
        now_unix: now_unix(),
        history_seq: out.history_seq,
        policy: format!(
            "{}@{} ({})",
            out.policy_name,
            out.policy_version,
            out.verdict.policy_digest.get(..8).unwrap_or_default()
        ),
    };
    match v.join.issue(to).await {
        Ok(g) => {
            info!(
                node_id,
                orchestrator = g.orchestrator,
                expires_unix = g.expires_unix,
                "join grant issued"
            );
            (Some(g), String::new())
        }
        Err(e) => {
            crate::metrics::join_error(v.join.name_for(node_id));
            warn!(node_id, error = %e, orchestrator = v.join.name_for(node_id), "join grant not issued");
            (
                None,
                format!(
                    "verdict PASS recorded (history seq {}), but the {} join grant could not be issued: {e}",
                    out.history_seq,
                    v.join.name_for(node_id)
                ),
            )
        }
    }
}

/// Counts an orchestrator's error (not the store's) in the join-error metric.
fn note_join_error(v: &Verifier, node_id: &str, e: &ServiceError) {
    if matches!(e, ServiceError::Join(_)) {
        crate::metrics::join_error(v.join.name_for(node_id));
    }
}

/// Records the quarantine and revokes the node's tokens, then has the
/// orchestrator isolate it. Only the transition into quarantine is notified:
/// a node that keeps failing is not announced at every attestation.
async fn isolate(v: &Arc<Verifier>, mut event: Event) -> Result<(), ServiceError> {
    let node = event.node_id.clone();
    let (revoked, was) = blocking(v, move |v| {
        let was = v.store.quarantine(&node)?;
        let since_unix = was.as_ref().map_or_else(now_unix, |q| q.since_unix);
        let applied = was.as_ref().is_some_and(|q| q.applied);
        v.store.set_quarantine(
            &node,
            Some(&Quarantine {
                since_unix,
                applied,
            }),
        )?;
        Ok((v.store.revoke_node_tokens(&node)?, was))
    })
    .await?;
    crate::metrics::tokens_revoked(revoked);
    event.tokens_revoked = revoked;
    let node_id = event.node_id.clone();
    match was {
        Some(q) if q.applied => Ok(()),
        Some(_) => apply(v, &node_id).await,
        None => {
            notify(v, event);
            apply(v, &node_id).await
        }
    }
}

/// Removes a node from `Verifier::isolating` when its attempt ends, however it ends.
struct Isolating<'a>(&'a Verifier, String);

impl Drop for Isolating<'_> {
    fn drop(&mut self) {
        self.0
            .isolating
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.1);
    }
}

/// Has the orchestrator isolate `node_id` and records that it did. If an
/// attempt for the node is already under way, leaves it to that one.
async fn apply(v: &Arc<Verifier>, node_id: &str) -> Result<(), ServiceError> {
    let fresh = v
        .isolating
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(node_id.to_string());
    if !fresh {
        return Ok(());
    }
    let _guard = Isolating(v, node_id.to_string());
    let done = v.join.quarantine(node_id).await?;
    let node = node_id.to_string();
    blocking(v, move |v| {
        if let Some(mut q) = v.store.quarantine(&node)? {
            q.applied = true;
            v.store.set_quarantine(&node, Some(&q))?;
        }
        Ok(())
    })
    .await?;
    warn!(node_id, actions = ?done, "node isolated");
    Ok(())
}

/// Undoes an isolation when a quarantined node passes again.
async fn restore(v: &Arc<Verifier>, node_id: &str, history_seq: u64) -> Result<(), ServiceError> {
    let node = node_id.to_string();
    if blocking(v, move |v| Ok(v.store.quarantine(&node)?))
        .await?
        .is_none()
    {
        return Ok(());
    }
    let done = v.join.restore(node_id).await?;
    let node = node_id.to_string();
    blocking(v, move |v| Ok(v.store.set_quarantine(&node, None)?)).await?;
    info!(node_id, actions = ?done, "node passed again: restored");
    notify(
        v,
        Event {
            event: "node.restored",
            node_id: node_id.to_string(),
            time_unix: now_unix(),
            reason: "attestation passed".into(),
            failed_claims: Vec::new(),
            history_seq,
            tokens_revoked: 0,
        },
    );
    Ok(())
}

/// Retries every isolation the orchestrator has not confirmed yet.
pub async fn retry_quarantines(v: &Arc<Verifier>) -> Result<(), ServiceError> {
    let pending = blocking(v, |v| Ok(v.store.unapplied_quarantines()?)).await?;
    for node in pending {
        apply(v, &node).await?;
    }
    Ok(())
}

/// How often the node table is scanned for stale nodes: a tenth of the window,
/// between 1 and 30 s.
fn scan_interval(stale_after: Duration) -> Duration {
    (stale_after / 10).clamp(Duration::from_secs(1), Duration::from_secs(30))
}

/// Isolates nodes whose last pass is older than `stale_after_secs`, each with
/// a `stale` history record (claim `attestation.fresh`).
pub async fn mark_stale(
    v: &Arc<Verifier>,
    last_scan: &mut Option<Instant>,
) -> Result<(), ServiceError> {
    let Some(after) = v.config.stale_after else {
        return Ok(());
    };
    if last_scan.is_some_and(|t| t.elapsed() < scan_interval(after)) {
        return Ok(());
    }
    *last_scan = Some(Instant::now());
    let now = now_unix();
    let cutoff = now - after.as_secs() as i64;
    let stale = blocking(v, move |v| {
        let mut out = Vec::new();
        for (node, last_pass) in v.store.nodes_passed_before(cutoff)? {
            if v.store.quarantine(&node)?.is_none() {
                out.push((node, last_pass));
            }
        }
        Ok(out)
    })
    .await?;
    for (node, last_pass) in stale {
        let claim = Claim::new(
            "attestation.fresh",
            false,
            format!("a pass within {} s", after.as_secs()),
            format!("last pass {} s ago", now - last_pass),
            "verifier clock",
        );
        let n = node.clone();
        let rec = blocking(v, move |v| {
            Ok(v.append_event("stale", n, false, claim, String::new())?)
        })
        .await?;
        warn!(node_id = %node, last_pass, seq = rec.seq, "node is stale: no pass within the window");
        isolate(
            v,
            Event {
                event: "node.stale",
                node_id: node,
                time_unix: now,
                reason: format!(
                    "no pass within {} s (last {} s ago)",
                    after.as_secs(),
                    now - last_pass
                ),
                failed_claims: vec!["attestation.fresh".into()],
                history_seq: rec.seq,
                tokens_revoked: 0,
            },
        )
        .await?;
    }
    Ok(())
}

/// Sends `event` to the webhook in the background and records the delivery.
fn notify(v: &Arc<Verifier>, event: Event) {
    let Some(hook) = v.webhook.clone() else {
        return;
    };
    let v = Arc::clone(v);
    tokio::spawn(async move {
        let body = match serde_json::to_vec(&event) {
            Ok(b) => b,
            Err(e) => return warn!(error = %e, "encoding a webhook event failed"),
        };
        let signature = match v.tokens.sign_detached(&body) {
            Ok(s) => s,
            Err(e) => return warn!(error = %e, "signing a webhook event failed"),
        };
        let digest = hex::encode(Sha256::digest(&body));
        let d = hook.deliver(Bytes::from(body), &signature).await;
        crate::metrics::webhook_delivery(d.delivered);
        if d.delivered {
            info!(event = event.event, node_id = %event.node_id, attempts = d.attempts, elapsed_ms = d.elapsed.as_millis() as u64, "webhook delivered");
        } else {
            warn!(event = event.event, node_id = %event.node_id, attempts = d.attempts, last = %d.last, "webhook not delivered");
        }
        let claim = Claim::new(
            "webhook.delivery",
            d.delivered,
            format!("a 2xx answer from {}", hook.url()),
            format!(
                "{} after {} attempt(s) in {} ms ({})",
                d.last,
                d.attempts,
                d.elapsed.as_millis(),
                event.event
            ),
            "webhook",
        );
        let node_id = event.node_id.clone();
        let r = blocking(&v, move |v| {
            Ok(v.append_event("webhook", node_id, d.delivered, claim, digest)?)
        })
        .await;
        if let Err(e) = r {
            warn!(error = %e, "recording a webhook delivery failed");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_scans_are_a_tenth_of_the_window_within_bounds() {
        assert_eq!(
            scan_interval(Duration::from_secs(3)),
            Duration::from_secs(1)
        );
        assert_eq!(
            scan_interval(Duration::from_secs(100)),
            Duration::from_secs(10)
        );
        assert_eq!(
            scan_interval(Duration::from_secs(3600)),
            Duration::from_secs(30)
        );
    }
}
