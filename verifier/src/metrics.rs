//! Prometheus metrics: `[metrics] listen = "127.0.0.1:9464"` serves them at
//! `/metrics` (off when the section is absent).
//!
//! Recorded through the `metrics` facade and rendered by its Prometheus
//! exporter (`metrics-exporter-prometheus`); served by the verifier's own
//! bounded HTTP listener ([`crate::http_server`]). Until [`install`] runs,
//! every recording below is a no-op.
//!
//! Label sets are bounded: results and steps are fixed words, policy names
//! are capped by the policy store ([`crate::service::policies`]), claim ids
//! are the core's fixed ids; on top of that each label keeps at most
//! [`MAX_LABEL_VALUES`] distinct values (later ones are counted as
//! `other`). No metric carries a node id.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde::Deserialize;
use tracing::{info, warn};

use crate::setting::InvalidKey;

/// `[metrics]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileMetrics {
    /// Address of the plain-HTTP `/metrics` listener (absent: no metrics).
    pub listen: Option<SocketAddr>,
    /// How often the fleet gauges (nodes by state, quarantined nodes) are
    /// recounted from the store, in seconds (default 15).
    pub fleet_interval_secs: Option<u64>,
}

/// The validated `[metrics]`.
#[derive(Debug, Clone)]
pub struct MetricsConfig {
    pub listen: SocketAddr,
    pub fleet_interval: Duration,
}

pub const DEFAULT_FLEET_INTERVAL_SECS: u64 = 15;

impl FileMetrics {
    pub fn validate(self) -> Result<Option<MetricsConfig>, InvalidKey> {
        let Some(listen) = self.listen else {
            if self.fleet_interval_secs.is_some() {
                return Err(InvalidKey::new(
                    "metrics.fleet_interval_secs",
                    "set without metrics.listen",
                ));
            }
            return Ok(None);
        };
        Ok(Some(MetricsConfig {
            listen,
            fleet_interval: crate::setting::secs(
                "metrics.fleet_interval_secs",
                self.fleet_interval_secs,
                DEFAULT_FLEET_INTERVAL_SECS,
            )?,
        }))
    }
}

/// The metric names (Prometheus conventions: `assay_verifier_` prefix, base
/// units, `_total` on counters).
pub mod names {
    pub const BUILD_INFO: &str = "assay_verifier_build_info";
    pub const VERDICTS: &str = "assay_verifier_verdicts_total";
    pub const FAILED_CLAIMS: &str = "assay_verifier_failed_claims_total";
    pub const UNAUTHENTICATED: &str = "assay_verifier_unauthenticated_attempts_total";
    pub const ATTEST_SECONDS: &str = "assay_verifier_attest_duration_seconds";
    pub const ENROLL_SECONDS: &str = "assay_verifier_enroll_duration_seconds";
    pub const STORE_COMMIT_SECONDS: &str = "assay_verifier_store_commit_duration_seconds";
    pub const STORE_COMMIT_BATCH: &str = "assay_verifier_store_commit_batch_size";
    pub const STORE_UP: &str = "assay_verifier_store_up";
    pub const NONCES: &str = "assay_verifier_outstanding_nonces";
    pub const ENROLLMENTS: &str = "assay_verifier_pending_enrollments";
    pub const TOKENS_ISSUED: &str = "assay_verifier_tokens_issued_total";
    pub const TOKENS_REDEEMED: &str = "assay_verifier_tokens_redeemed_total";
    pub const TOKENS_REVOKED: &str = "assay_verifier_tokens_revoked_total";
    pub const WEBHOOK_DELIVERIES: &str = "assay_verifier_webhook_deliveries_total";
    pub const JOIN_ERRORS: &str = "assay_verifier_join_errors_total";
    pub const NODES: &str = "assay_verifier_nodes";
    pub const QUARANTINED: &str = "assay_verifier_quarantined_nodes";
    pub const RATE_LIMITED: &str = "assay_verifier_rate_limited_requests_total";
}

/// How often the recorder's upkeep runs.
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Distinct values one label keeps before the rest count as `other`.
pub const MAX_LABEL_VALUES: usize = 256;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process's recorder (once; later calls return the same
/// handle) and records the build info.
pub fn install() -> Result<PrometheusHandle, String> {
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    let seconds = [
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ];
    let batch = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0];
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &seconds)
        .and_then(|b| {
            b.set_buckets_for_metric(Matcher::Full(names::STORE_COMMIT_BATCH.into()), &batch)
        })
        .map_err(|e| format!("metrics: {e}"))?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|e| format!("metrics: {e}"))?;
    describe();
    gauge!(names::BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    Ok(HANDLE.get_or_init(|| handle).clone())
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_gauge!(names::BUILD_INFO, "1, labelled with the verifier's version");
    describe_counter!(
        names::VERDICTS,
        "Recorded attestation verdicts, by result (pass, fail) and policy name"
    );
    describe_counter!(
        names::FAILED_CLAIMS,
        "Failed claims of recorded verdicts, by claim id and policy name"
    );
    describe_counter!(
        names::UNAUTHENTICATED,
        "Attestations whose signature, AK or nonce did not verify (not recorded as verdicts)"
    );
    describe_histogram!(
        names::ATTEST_SECONDS,
        Unit::Seconds,
        "Attest RPC latency, by result (pass, fail, unauthenticated, error)"
    );
    describe_histogram!(
        names::ENROLL_SECONDS,
        Unit::Seconds,
        "Enroll and Activate RPC latency, by step (enroll, activate) and result (ok, error)"
    );
    describe_histogram!(
        names::STORE_COMMIT_SECONDS,
        Unit::Seconds,
        "Durable commits of the store (sled flush, PostgreSQL verdict transaction), by backend"
    );
    describe_histogram!(
        names::STORE_COMMIT_BATCH,
        "Writers covered by one durable commit (group commit), by backend"
    );
    describe_gauge!(
        names::STORE_UP,
        "1 while the store answers (gRPC health SERVING), 0 while it does not"
    );
    describe_gauge!(names::NONCES, "Nonces issued and not yet used or expired");
    describe_gauge!(names::ENROLLMENTS, "Enrollments waiting for their Activate");
    describe_counter!(names::TOKENS_ISSUED, "Join tokens issued on a pass");
    describe_counter!(
        names::TOKENS_REDEEMED,
        "Join-token redemptions, by result (ok, refused, error)"
    );
    describe_counter!(names::TOKENS_REVOKED, "Join tokens revoked");
    describe_counter!(
        names::WEBHOOK_DELIVERIES,
        "Webhook notifications, by result (delivered, failed)"
    );
    describe_counter!(
        names::JOIN_ERRORS,
        "Errors from the orchestrator join issuer, by orchestrator"
    );
    describe_gauge!(
        names::NODES,
        "Enrolled nodes by their standing now (pass, fail, stale, unknown: no verdict yet); stale: no pass within stale_after_secs"
    );
    describe_gauge!(names::QUARANTINED, "Nodes in quarantine");
    describe_counter!(
        names::RATE_LIMITED,
        "Node-facing requests refused by the rate limits"
    );
}

/// `value` if it is a plausible label value the label has room for, else
/// `other`: a label never gets more than [`MAX_LABEL_VALUES`] values.
fn bounded(label: &'static str, value: &str) -> String {
    static SEEN: OnceLock<RwLock<HashMap<&'static str, HashSet<String>>>> = OnceLock::new();
    if HANDLE.get().is_none() {
        // Not installed: the recording is a no-op, the label is not kept.
        return String::new();
    }
    let plausible = !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'));
    if !plausible {
        return "other".into();
    }
    let seen = SEEN.get_or_init(Default::default);
    // Every verdict asks: a value seen before is answered under the read lock.
    if seen
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(label)
        .is_some_and(|v| v.contains(value))
    {
        return value.to_string();
    }
    let mut seen = seen.write().unwrap_or_else(|p| p.into_inner());
    let values = seen.entry(label).or_default();
    if values.contains(value) {
        return value.to_string();
    }
    if values.len() >= MAX_LABEL_VALUES {
        return "other".into();
    }
    values.insert(value.to_string());
    value.to_string()
}

/// A recorded verdict: its result and each failed claim, under `policy`.
pub fn verdict<'a>(passed: bool, policy: &str, failed: impl Iterator<Item = &'a str>) {
    let policy = bounded("policy", policy);
    let result = if passed { "pass" } else { "fail" };
    counter!(names::VERDICTS, "result" => result, "policy" => policy.clone()).increment(1);
    for claim in failed {
        counter!(names::FAILED_CLAIMS, "claim" => bounded("claim", claim), "policy" => policy.clone())
            .increment(1);
    }
}

pub fn unauthenticated_attempt() {
    counter!(names::UNAUTHENTICATED).increment(1);
}

pub fn attest_latency(result: &'static str, d: Duration) {
    histogram!(names::ATTEST_SECONDS, "result" => result).record(d.as_secs_f64());
}

pub fn enroll_latency(step: &'static str, ok: bool, d: Duration) {
    let result = if ok { "ok" } else { "error" };
    histogram!(names::ENROLL_SECONDS, "step" => step, "result" => result).record(d.as_secs_f64());
}

/// One durable commit of `backend` covering `writers` callers.
pub fn store_commit(backend: &'static str, writers: usize, d: Duration) {
    histogram!(names::STORE_COMMIT_SECONDS, "backend" => backend).record(d.as_secs_f64());
    histogram!(names::STORE_COMMIT_BATCH, "backend" => backend).record(writers as f64);
}

pub fn store_up(up: bool) {
    gauge!(names::STORE_UP).set(if up { 1.0 } else { 0.0 });
}

pub fn token_issued() {
    counter!(names::TOKENS_ISSUED).increment(1);
}

/// A redemption's result: `ok`, `refused` (a bad, used, revoked or expired
/// token) or `error` (the verifier failed).
pub fn token_redeemed(result: &'static str) {
    counter!(names::TOKENS_REDEEMED, "result" => result).increment(1);
}

pub fn tokens_revoked(n: usize) {
    counter!(names::TOKENS_REVOKED).increment(n as u64);
}

pub fn webhook_delivery(delivered: bool) {
    let result = if delivered { "delivered" } else { "failed" };
    counter!(names::WEBHOOK_DELIVERIES, "result" => result).increment(1);
}

pub fn join_error(orchestrator: &'static str) {
    counter!(names::JOIN_ERRORS, "orchestrator" => orchestrator).increment(1);
}

pub fn rate_limited() {
    counter!(names::RATE_LIMITED).increment(1);
}

/// The in-memory tables' sizes, read at each scrape.
fn refresh_tables(v: &crate::service::Verifier) {
    gauge!(names::NONCES).set(v.nonces.len() as f64);
    gauge!(names::ENROLLMENTS).set(v.enrollments.len() as f64);
}

/// Recounts enrolled nodes by standing, and quarantined nodes, from the
/// store. A removed node is not counted (its history stays).
pub fn refresh_fleet(v: &crate::service::Verifier) -> Result<(), crate::store::StoreError> {
    const PAGE: usize = 1000;
    let now = crate::clock::now_unix();
    let mut enrolled = HashSet::new();
    let mut after = String::new();
    loop {
        let page = v.store.list_nodes(&after, PAGE)?;
        let full = page.len() == PAGE;
        if let Some(n) = page.last() {
            after = n.node_id.clone();
        }
        enrolled.extend(page.into_iter().map(|n| n.node_id));
        if !full {
            break;
        }
    }
    let mut by_state: [(&'static str, u64); 4] =
        [("pass", 0), ("fail", 0), ("stale", 0), ("unknown", 0)];
    let mut count = |state: &str| {
        if let Some(slot) = by_state.iter_mut().find(|(s, _)| *s == state) {
            slot.1 += 1;
        }
    };
    let mut judged = 0usize;
    for (node, rec) in v.store.fleet_at(now)? {
        if enrolled.contains(&node) {
            judged += 1;
            count(crate::service::standing(rec.as_ref()));
        }
    }
    for _ in judged..enrolled.len() {
        count(crate::service::standing(None));
    }
    for (state, n) in by_state {
        gauge!(names::NODES, "state" => state).set(n as f64);
    }
    gauge!(names::QUARANTINED).set(v.store.quarantined_count()? as f64);
    Ok(())
}

/// Serves `/metrics` on `listener` (plain HTTP) until dropped, and keeps the
/// fleet gauges current.
pub async fn serve(
    listener: tokio::net::TcpListener,
    handle: PrometheusHandle,
    verifier: Arc<crate::service::Verifier>,
) {
    let Some(cfg) = verifier.config.metrics.clone() else {
        return;
    };
    if !cfg.listen.ip().is_loopback() {
        warn!(
            listen = %cfg.listen,
            "metrics.listen is not a loopback address: the metrics (fleet counts, policy names, \
             failed claim ids) are served in plain HTTP to anyone who reaches it"
        );
    }
    let fleet = tokio::spawn(fleet_gauges(verifier.clone(), cfg.fleet_interval));
    // The recorder's upkeep (histogram samples drained, descriptions
    // published) must run whether or not anyone scrapes.
    handle.run_upkeep();
    let upkeep = {
        let handle = handle.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
            loop {
                tick.tick().await;
                handle.run_upkeep();
            }
        })
    };
    let v = verifier.clone();
    info!(listen = %cfg.listen, "metrics served at /metrics");
    crate::http_server::serve(
        listener,
        None,
        crate::http_server::HttpLimits::default(),
        "metrics",
        move |req, _peer| {
            let handle = handle.clone();
            let v = v.clone();
            async move {
                match req.uri().path() {
                    "/metrics" => {
                        refresh_tables(&v);
                        let mut a =
                            crate::http_server::text(hyper::StatusCode::OK, handle.render());
                        a.headers_mut().insert(
                            hyper::header::CONTENT_TYPE,
                            hyper::header::HeaderValue::from_static(
                                "text/plain; version=0.0.4; charset=utf-8",
                            ),
                        );
                        a
                    }
                    "/" => crate::http_server::text(
                        hyper::StatusCode::OK,
                        "assay-verifier metrics: GET /metrics\n",
                    ),
                    _ => crate::http_server::text(hyper::StatusCode::NOT_FOUND, "not found\n"),
                }
            }
        },
    )
    .await;
    fleet.abort();
    upkeep.abort();
}

async fn fleet_gauges(verifier: Arc<crate::service::Verifier>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_warning = None::<String>;
    loop {
        tick.tick().await;
        let v = verifier.clone();
        match tokio::task::spawn_blocking(move || refresh_fleet(&v)).await {
            Ok(Ok(())) => last_warning = None,
            Ok(Err(e)) if last_warning.as_deref() != Some(e.to_string().as_str()) => {
                warn!(error = %e, "fleet gauges not refreshed");
                last_warning = Some(e.to_string());
            }
            Ok(Err(_)) => {}
            Err(e) => warn!(error = %e, "fleet gauge task failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_bounded_and_sanitized() {
        install().unwrap();
        assert_eq!(bounded("t1", "pcr.sha256.7"), "pcr.sha256.7");
        assert_eq!(bounded("t1", "node-1 \"x\""), "other");
        assert_eq!(bounded("t1", ""), "other");
        assert_eq!(bounded("t1", &"a".repeat(65)), "other");
        for i in 0..MAX_LABEL_VALUES * 2 {
            let _ = bounded("t2", &format!("v{i}"));
        }
        assert_eq!(
            bounded("t2", "v0"),
            "v0",
            "a value seen before keeps its label"
        );
        assert_eq!(
            bounded("t2", "v9999"),
            "other",
            "past the cap, new values are `other`"
        );
    }

    #[test]
    fn metrics_section_is_off_unless_listen_is_set() {
        assert!(FileMetrics::default().validate().unwrap().is_none());
        let e = FileMetrics {
            listen: None,
            fleet_interval_secs: Some(5),
        }
        .validate()
        .unwrap_err();
        assert!(e.to_string().contains("metrics.fleet_interval_secs"), "{e}");
        let c = FileMetrics {
            listen: Some("127.0.0.1:9464".parse().unwrap()),
            fleet_interval_secs: None,
        }
        .validate()
        .unwrap()
        .unwrap();
        assert_eq!(
            c.fleet_interval,
            Duration::from_secs(DEFAULT_FLEET_INTERVAL_SECS)
        );
    }
}
