//! Cost of one container measurement on swtpm: append the CEL record, fsync,
//! extend the PCR (`MeasurementLog::measure`), and of reconciling the log on
//! open, with the log on the temp dir's filesystem.
//!
//! `cargo bench -p assay-tests --bench measure` (N = ASSAY_BENCH_ROUNDS, default 200).

use std::time::{Duration, Instant};

use assay_attestor::measure::MeasurementLog;
use assay_attestor::tpm::Tpm;
use assay_core::eventlog::cel::Measurement;
use assay_tests::Swtpm;

fn stats(name: &str, mut v: Vec<Duration>) {
    v.sort();
    let at = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "{name:<36} median {:>8.3} ms   p90 {:>8.3} ms   p99 {:>8.3} ms   (n={})",
        at(0.5).as_secs_f64() * 1e3,
        at(0.9).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        v.len()
    );
}

fn main() -> anyhow::Result<()> {
    let n: usize = std::env::var("ASSAY_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let swtpm = Swtpm::start()?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("measurements.cel");
    let mut tpm = Tpm::open(&swtpm.tcti())?;
    let (mut log, _) = MeasurementLog::open(&path, 13, vec![0; 32], &mut tpm)?;
    let mut measure = Vec::with_capacity(n);
    let mut extend_only = Vec::with_capacity(n);
    for i in 0..n {
        let m = Measurement::Image {
            reference: format!("registry.example.com/team/app:{i}"),
            manifest_digest: format!("sha256:{:064x}", i + 1),
            config_digest: None,
        };
        let t = Instant::now();
        log.measure(&m, &mut tpm)?;
        measure.push(t.elapsed());
        let t = Instant::now();
        tpm.extend_pcr_sha256(16, &[i as u8; 32])?;
        extend_only.push(t.elapsed());
    }
    drop(log);
    let t = Instant::now();
    let (log, state) = MeasurementLog::open(&path, 13, vec![0; 32], &mut tpm)?;
    let reconcile = t.elapsed();
    println!("filesystem of the log: {}", dir.path().display());
    stats("measure (append+fsync+extend)", measure);
    stats("PCR_Extend alone (PCR 16)", extend_only);
    println!(
        "reconcile on open of {} records: {:.3} ms ({state:?})",
        log.records().len(),
        reconcile.as_secs_f64() * 1e3
    );
    Ok(())
}
