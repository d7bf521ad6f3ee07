//! # assay-tests — harness for Assay's real-part tests
//!
//! Starts real software TPMs (swtpm) with EK certificates signed by a per-process
//! test CA, each on its own loopback port pair with its own temporary state
//! directory, and real `assay-verifier` / `assay-attestor` processes over TLS, so
//! tests run in parallel and clean up after themselves (children are killed and
//! directories removed on drop). It is not a mock: every test that uses it talks
//! to a real TPM 2.0 simulator and real binaries.

pub mod grpcio;
pub mod http;
pub mod node;
pub mod pki;
pub mod postgres;
pub mod procs;
pub mod simnode;
pub mod swtpm;

pub use pki::Pki;
pub use postgres::{PgCluster, PgDb};
pub use procs::{
    attestor, attestor_command, bin, der_of_pem, output_text, VerifierOpts, VerifierProc,
};
pub use swtpm::{Swtpm, TestCa};

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A file or folder of the repository's third-party test data, `tests/data/`
/// (UEFI event logs, IMA logs; their sources and licenses are in its README and
/// MANIFEST.tsv files): `testdata("eventlogs/tpm2-tools/event.bin")`.
pub fn testdata(rel: impl AsRef<Path>) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data").join(rel)
}

/// The verifier's Prometheus exposition (`[metrics] listen`), read with curl.
pub fn scrape(v: &VerifierProc) -> anyhow::Result<String> {
    let addr = v
        .listener("metrics")
        .ok_or_else(|| anyhow::anyhow!("no `metrics on ADDR` at start-up: set [metrics] listen"))?;
    let o = std::process::Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "5"])
        .arg(format!("http://{addr}/metrics"))
        .output()?;
    anyhow::ensure!(
        o.status.success(),
        "curl /metrics: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// The value of `series` (name and labels as exposed, e.g.
/// `assay_verifier_nodes{state="pass"}`) in an exposition, if present.
pub fn metric(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|l| {
        let (name, value) = l.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok())?
    })
}

/// Polls `f` every 50 ms until it says yes (how long that took) or `within`
/// passes (an error naming `what`): bounded in time, never a hang.
pub fn wait_for(
    what: &str,
    within: Duration,
    mut f: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    while start.elapsed() < within {
        if f()? {
            return Ok(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    anyhow::bail!("{what}: not within {within:?}")
}
