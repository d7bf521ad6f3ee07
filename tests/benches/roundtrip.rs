//! One full attestation round trip on swtpm, broken down, against the real
//! verifier over TLS with sled history: `cargo bench -p assay-tests --bench roundtrip`.
//!
//! Prints median and p90 per phase over N rounds (ASSAY_BENCH_ROUNDS, default 50).
//! Run `cargo build --release --workspace --bins` first to measure release binaries
//! (the harness uses the binaries of the profile the bench was built with).

use std::time::{Duration, Instant};

use assay_attestor::config::Config;
use assay_attestor::flow;
use assay_attestor::tpm::Tpm;
use assay_proto::v1 as pb;
use assay_tests::{Swtpm, VerifierOpts, VerifierProc};

const ZERO: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn stats(name: &str, mut v: Vec<Duration>) {
    v.sort();
    let at = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "{name:<28} median {:>8.2} ms   p90 {:>8.2} ms   (n={})",
        at(0.5).as_secs_f64() * 1e3,
        at(0.9).as_secs_f64() * 1e3,
        v.len()
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let rounds: usize = std::env::var("ASSAY_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    let policy = format!(
        "schema = 0\nname = \"bench\"\n[pcrs.sha256]\n{}",
        (0..8)
            .map(|i| format!("{i} = \"{ZERO}\"\n"))
            .collect::<String>()
    );
    let v = VerifierProc::start(&VerifierOpts::new(policy))?;
    let tpm_proc = Swtpm::start()?;
    let state = tempfile::tempdir()?;
    let cfg = Config {
        ek: assay_attestor::tpm::EkChoice::Auto,
        ek_fetch: None,
        tcti: tpm_proc.tcti(),
        state_dir: state.path().to_path_buf(),
        verifier: v.url.clone(),
        ca: v.ca_pem.clone(),
        node_id: "bench-node".into(),
        retries: 0,
        uefi_log: "/nonexistent/uefi".into(),
        ima_log: "/nonexistent/ima".into(),
        max_uefi_log_bytes: 1 << 20,
        max_ima_log_bytes: 1 << 20,
        cel_log: state.path().join("measurements.cel"),
        cel_pcr: 13,
        runtime_files: vec![],
        containerd_socket: "/nonexistent/containerd.sock".into(),
        containerd_namespaces: vec![],
        attest_interval_secs: 300,
        metrics_listen: None,
    };
    let mut tpm = Tpm::open(&cfg.tcti)?;
    let t = Instant::now();
    let ch = flow::connect(&cfg)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    flow::enroll(&cfg, &mut tpm, ch.clone())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "enrollment (AK create + EK cert + MakeCredential + ActivateCredential): {:.1} ms",
        t.elapsed().as_secs_f64() * 1e3
    );

    let mut c = pb::attestation_client::AttestationClient::new(ch);
    let (mut chal_t, mut quote_t, mut attest_t, mut total_t) = (vec![], vec![], vec![], vec![]);
    for _ in 0..rounds {
        let t0 = Instant::now();
        let chal = c
            .challenge(pb::ChallengeRequest {
                node_id: cfg.node_id.clone(),
            })
            .await?
            .into_inner();
        let t1 = Instant::now();
        let q = tpm.quote(&cfg.state_dir, &chal.nonce, &chal.pcrs_sha256)?;
        let t2 = Instant::now();
        let r = c
            .attest(pb::AttestRequest {
                node_id: cfg.node_id.clone(),
                nonce: chal.nonce,
                attest: q.attest,
                signature: q.signature,
                pcrs_sha256: q
                    .pcrs_sha256
                    .into_iter()
                    .map(|(index, digest)| pb::PcrValue { index, digest })
                    .collect(),
                ..Default::default()
            })
            .await?
            .into_inner();
        let t3 = Instant::now();
        anyhow::ensure!(r.verdict.is_some_and(|v| v.passed), "verdict did not pass");
        chal_t.push(t1 - t0);
        quote_t.push(t2 - t1);
        attest_t.push(t3 - t2);
        total_t.push(t3 - t0);
    }
    stats("challenge RPC (nonce stored)", chal_t);
    stats("TPM quote + PCR reads", quote_t);
    stats("attest RPC (verify + history + token)", attest_t);
    stats("full round trip", total_t);
    Ok(())
}
