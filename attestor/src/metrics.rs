//! The agent's Prometheus metrics (`agent --metrics-listen ADDR`, config key
//! `metrics_listen`): served at `/metrics` in plain HTTP by the `metrics`
//! facade's Prometheus exporter. Meant for a node-local scraper: bind it to
//! loopback (or a management network); it carries no secrets, only the
//! node's last result and counts. Until [`install`] runs every recording is
//! a no-op.

use std::net::SocketAddr;

use metrics::{counter, gauge};
use metrics_exporter_prometheus::PrometheusBuilder;

pub mod names {
    pub const BUILD_INFO: &str = "assay_attestor_build_info";
    pub const ATTESTATIONS: &str = "assay_attestor_attestations_total";
    pub const LAST_TIME: &str = "assay_attestor_last_attestation_timestamp_seconds";
    pub const LAST_TRUSTED: &str = "assay_attestor_last_attestation_trusted";
    pub const MEASUREMENTS: &str = "assay_attestor_measurements_appended_total";
}

/// Starts the listener on the current Tokio runtime and installs the recorder.
pub fn install(addr: SocketAddr) -> Result<(), String> {
    use metrics::{describe_counter, describe_gauge, Unit};
    if !addr.ip().is_loopback() {
        tracing::warn!(%addr, "metrics_listen is not a loopback address: the agent's metrics are served in plain HTTP");
    }
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .install()
        .map_err(|e| format!("metrics_listen {addr}: {e}"))?;
    describe_gauge!(names::BUILD_INFO, "1, labelled with the attestor's version");
    describe_counter!(
        names::ATTESTATIONS,
        "Attestations, by result (trusted, untrusted, error)"
    );
    describe_gauge!(
        names::LAST_TIME,
        Unit::Seconds,
        "When the last attestation answered (unix time)"
    );
    describe_gauge!(
        names::LAST_TRUSTED,
        "1 if the last attestation that reached a verdict passed, else 0"
    );
    describe_counter!(
        names::MEASUREMENTS,
        "Records appended to the container measurement log (and extended into the TPM)"
    );
    gauge!(names::BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    Ok(())
}

/// An attestation that reached a verdict.
pub fn attested(trusted: bool) {
    let result = if trusted { "trusted" } else { "untrusted" };
    counter!(names::ATTESTATIONS, "result" => result).increment(1);
    gauge!(names::LAST_TRUSTED).set(if trusted { 1.0 } else { 0.0 });
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    gauge!(names::LAST_TIME).set(now);
}

/// An attestation that failed before a verdict (verifier unreachable, TPM error…).
pub fn attest_error() {
    counter!(names::ATTESTATIONS, "result" => "error").increment(1);
}

pub fn measured(records: usize) {
    counter!(names::MEASUREMENTS).increment(records as u64);
}
