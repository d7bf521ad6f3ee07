//! `assay-attestor agent`: the long-running side. Measures the container
//! runtime, every image and running container containerd knows, follows
//! containerd's event stream so that a new image or container start is measured
//! as it happens, and re-attests after each new measurement (and on an
//! interval). One JSON line per attestation goes to stdout.
//!
//! The measurement log is opened (locked, reconciled) per batch, so one-shot
//! `measure-image` calls from OCI hooks interleave with the agent.

use std::io::Write as _;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::config::Config;
use crate::containerd::Containerd;
use crate::flow::{self, Failure, Outcome};
use crate::measure::MeasureError;
use crate::tpm::Tpm;
use assay_core::eventlog::cel::Measurement;
use assay_proto::containerd::services::events::v1::Envelope;

/// Events arriving within this window are measured together before one attestation.
const DEBOUNCE: Duration = Duration::from_millis(100);
/// Longest wait between attempts to reach containerd.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Interval attestations are spread by up to this fraction either way, so a
/// fleet started together does not attest in lockstep.
const JITTER: f64 = 0.1;

/// When the next interval attestation is due: `interval` ± 10 % after the
/// last attestation of any kind.
struct Schedule {
    interval: Duration,
    next: tokio::time::Instant,
}

impl Schedule {
    fn new(interval: Duration) -> Self {
        Self {
            interval,
            next: tokio::time::Instant::now(),
        }
    }

    fn attested(&mut self) {
        self.next = tokio::time::Instant::now() + jittered(self.interval, rand::random::<f64>());
    }

    fn due(&self) -> bool {
        tokio::time::Instant::now() >= self.next
    }
}

/// `interval` scaled by a factor in [1 - JITTER, 1 + JITTER), `u` in [0, 1).
fn jittered(interval: Duration, u: f64) -> Duration {
    interval.mul_f64(1.0 - JITTER + 2.0 * JITTER * u.clamp(0.0, 1.0))
}

fn tpm_err(e: crate::tpm::TpmError) -> Failure {
    Failure::Tpm(e.to_string())
}

fn measure_err(e: MeasureError) -> Failure {
    match e {
        MeasureError::Tampered { .. } => Failure::Untrusted(e.to_string()),
        MeasureError::Tpm(t) => Failure::Tpm(t.to_string()),
        other => Failure::Internal(other.to_string()),
    }
}

/// Measures `ms` (each once); the number of new records.
fn measure_all(cfg: &Config, tpm: &mut Tpm, ms: &[Measurement]) -> Result<usize, Failure> {
    if ms.is_empty() {
        return Ok(0);
    }
    let mut log = flow::open_measurement_log(cfg, tpm).map_err(measure_err)?;
    let mut added = 0;
    for m in ms {
        if let Some(n) = log.measure(m, tpm).map_err(measure_err)? {
            info!(record = n, measurement = ?m, "measured");
            added += 1;
        }
    }
    crate::metrics::measured(added);
    Ok(added)
}

async fn attest_and_report(cfg: &Config, tpm: &mut Tpm, why: &str, since: Option<Instant>) {
    match flow::join_with(cfg, tpm, true).await {
        Ok(o) => {
            crate::metrics::attested(o.trusted);
            report(&o, why, since)
        }
        Err(e) => {
            crate::metrics::attest_error();
            warn!(error = %e, why, "attestation failed")
        }
    }
}

fn report(o: &Outcome, why: &str, since: Option<Instant>) {
    let failed: Vec<&str> = o
        .claims
        .iter()
        .filter(|c| !c.passed)
        .map(|c| c.id.as_str())
        .collect();
    let line = serde_json::json!({
        "attested": why,
        "trusted": o.trusted,
        "history_seq": o.history_seq,
        "failed": failed,
        "ms_since_event": since.map(|t| t.elapsed().as_secs_f64() * 1e3),
    });
    let _ = writeln!(std::io::stdout().lock(), "{line}");
    info!(
        trusted = o.trusted,
        seq = o.history_seq,
        claim = %failed.join(","),
        why,
        "attested"
    );
}

/// Runs until killed (or, with `max_attestations`, until that many
/// attestations were made: for tests and one-off runs).
pub async fn run(cfg: &Config, max_attestations: Option<u64>) -> Result<(), Failure> {
    let mut tpm = Tpm::open(&cfg.tcti).map_err(tpm_err)?;
    // Refuse to run on a tampered log: nothing measured on top of it could be believed.
    drop(flow::open_measurement_log(cfg, &mut tpm).map_err(measure_err)?);
    let mut attestations = 0u64;
    let mut backoff = Duration::from_millis(200);
    let mut schedule = Schedule::new(Duration::from_secs(cfg.attest_interval_secs.max(1)));
    loop {
        let cd = match Containerd::connect(&cfg.containerd_socket).await {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "containerd unreachable; images and containers are not measured until it is");
                // Still attested on the interval: the boot chain and runtime
                // files are evidence enough to keep the node's standing honest.
                if schedule.due() {
                    attest_and_report(cfg, &mut tpm, "interval", None).await;
                    schedule.attested();
                    attestations += 1;
                    if max_attestations.is_some_and(|m| attestations >= m) {
                        return Ok(());
                    }
                }
                let until_due = schedule
                    .next
                    .saturating_duration_since(tokio::time::Instant::now());
                tokio::time::sleep(backoff.min(until_due.max(Duration::from_millis(50)))).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        backoff = Duration::from_millis(200);
        // Subscribe before listing, so nothing created in between is missed.
        // containerd sends the stream's headers with its first event, so the
        // subscription runs in its own task and forwards envelopes here.
        let (tx, mut events) = tokio::sync::mpsc::channel::<Envelope>(1024);
        let sub = {
            let cd = cd.clone();
            let namespaces = cfg.containerd_namespaces.clone();
            tokio::spawn(async move {
                let mut stream = match cd.subscribe(&namespaces).await {
                    Ok(s) => s,
                    Err(e) => {
                        warn!(error = %e, "containerd events");
                        return;
                    }
                };
                while let Ok(Some(e)) = stream.message().await {
                    if tx.send(e).await.is_err() {
                        return;
                    }
                }
            })
        };
        // Give the subscription a moment to register before listing.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut initial = Vec::new();
        for ns in &cfg.containerd_namespaces {
            match cd.images(ns).await {
                Ok(ms) => initial.extend(ms),
                Err(e) => warn!(error = %e, ns, "listing images"),
            }
            match cd.running(ns).await {
                Ok(ms) => initial.extend(ms),
                Err(e) => warn!(error = %e, ns, "listing running containers"),
            }
        }
        measure_all(cfg, &mut tpm, &initial)?;
        attest_and_report(cfg, &mut tpm, "start", None).await;
        schedule.attested();
        attestations += 1;
        if max_attestations.is_some_and(|m| attestations >= m) {
            return Ok(());
        }
        let mut created = crate::containerd::ContainerImages::default();
        loop {
            let first = tokio::select! {
                m = events.recv() => m,
                () = tokio::time::sleep_until(schedule.next) => {
                    attest_and_report(cfg, &mut tpm, "interval", None).await;
                    schedule.attested();
                    attestations += 1;
                    if max_attestations.is_some_and(|m| attestations >= m) {
                        return Ok(());
                    }
                    continue;
                }
            };
            let Some(first) = first else {
                warn!("containerd event stream ended; reconnecting");
                tokio::time::sleep(backoff).await;
                break;
            };
            let since = Instant::now();
            let mut batch = vec![first];
            while let Ok(Some(e)) = tokio::time::timeout(DEBOUNCE, events.recv()).await {
                batch.push(e);
                if batch.len() >= 256 {
                    break;
                }
            }
            let mut ms = Vec::new();
            for e in &batch {
                tracing::debug!(topic = %e.topic, ns = %e.namespace, kind = ?e.event.as_ref().map(|a| &a.type_url), "containerd event");
                match cd.measurement_for(e, &mut created).await {
                    Ok(Some(m)) => ms.push(m),
                    Ok(None) => {}
                    Err(err) => warn!(error = %err, topic = %e.topic, "event not measured"),
                }
            }
            if measure_all(cfg, &mut tpm, &ms)? > 0 {
                attest_and_report(cfg, &mut tpm, "measurement", Some(since)).await;
                schedule.attested();
                attestations += 1;
                if max_attestations.is_some_and(|m| attestations >= m) {
                    return Ok(());
                }
            }
        }
        sub.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_attestations_are_jittered_ten_percent_either_way() {
        let i = Duration::from_secs(300);
        assert_eq!(jittered(i, 0.0), Duration::from_secs(270));
        assert_eq!(jittered(i, 0.5), Duration::from_secs(300));
        assert!(jittered(i, 0.999_999) < Duration::from_secs(330));
        assert!(jittered(i, 0.999_999) > Duration::from_secs(329));
        // Out-of-range input is clamped, never a zero or runaway wait.
        assert_eq!(jittered(i, -3.0), Duration::from_secs(270));
        assert_eq!(jittered(i, 7.0), Duration::from_secs(330));
        let spread: std::collections::BTreeSet<u128> = (0..64)
            .map(|_| jittered(i, rand::random::<f64>()).as_millis())
            .collect();
        assert!(spread.len() > 32, "random draws spread the schedule");
    }
}
