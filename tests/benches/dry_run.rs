//! The policy dry run (`assay-verifier policy test`) over the kept evidence of
//! a fleet: N simulated nodes (default 1,000; software EK and AK each,
//! enrolled through the real path, see `assay_tests::simnode`) attest once to
//! a real `assay-verifier`, which keeps each verdict's evidence; then the
//! operator's CLI runs the dry run of a candidate policy over all of them,
//! as an operator would before `policy apply`. Setups run one after the other
//! in one run, so their figures compare: sled and PostgreSQL, each with a
//! quote of 8 PCRs under golden values (`pcrs`) and with a real 112-event
//! UEFI log judged under every `[measured_boot]` rule (`uefi`; one boot image
//! for the fleet, as a fleet booted from one image has).
//!
//! `cargo build --release --workspace --bins && cargo bench -p assay-tests --bench dry_run`
//!
//! Environment: ASSAY_DRYRUN_NODES (default 1000), ASSAY_DRYRUN_RUNS (5),
//! ASSAY_DRYRUN_SETUPS (default "sled:pcrs,postgres:pcrs,sled:uefi,postgres:uefi").

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use assay_core::policy::Policy;
use assay_core::verify::testutil::{replayed_pcrs, GCE_MEASURED_BOOT_RULES};
use assay_proto::v1 as pb;
use assay_tests::simnode::{self, AkKind, SimNode, SoftEk};
use assay_tests::{PgDb, VerifierOpts, VerifierProc};
use pb::attestation_client::AttestationClient;

const PCRS: [u32; 8] = [0, 1, 2, 3, 4, 5, 6, 7];
const GCE_LOG: &str = "eventlogs/tpm2-tools/event-gce-ubuntu-2104-log.bin";
/// Every tenth node boots something else (PCR 7): it fails, now and under the candidate.
const ODD_ONE: usize = 10;

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn policy(uefi: bool, description: &str) -> String {
    if uefi {
        format!(
            "schema = 1\nname = \"fleet\"\ndescription = \"{description}\"\n[measured_boot]\n{GCE_MEASURED_BOOT_RULES}"
        )
    } else {
        simnode::golden_policy(&PCRS).replacen(
            "name = \"simulated-fleet\"\n",
            &format!("name = \"simulated-fleet\"\ndescription = \"{description}\"\n"),
            1,
        )
    }
}

struct Figures {
    setup: String,
    nodes: usize,
    runs: Vec<Duration>,
    attest_secs: f64,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let nodes: usize = env("ASSAY_DRYRUN_NODES", 1000).max(1);
    let runs: usize = env("ASSAY_DRYRUN_RUNS", 5).max(1);
    let setups = std::env::var("ASSAY_DRYRUN_SETUPS")
        .unwrap_or_else(|_| "sled:pcrs,postgres:pcrs,sled:uefi,postgres:uefi".into());
    let ek = Arc::new(SoftEk::new()?);
    println!("dry run over the kept evidence of {nodes} simulated nodes, {runs} runs per setup");
    let mut all = Vec::new();
    for setup in setups.split(',') {
        let (backend, evidence) = setup.split_once(':').unwrap_or((setup, "pcrs"));
        all.push(run(&ek, backend, evidence == "uefi", nodes, runs).await?);
    }
    println!();
    println!(
        "{:<16} {:>7} {:>10} {:>10} {:>12} {:>14}",
        "setup", "nodes", "median s", "max s", "ms per node", "attest once s"
    );
    for f in &all {
        let mut r = f.runs.clone();
        r.sort();
        let median = r[r.len() / 2].as_secs_f64();
        println!(
            "{:<16} {:>7} {:>10.3} {:>10.3} {:>12.3} {:>14.1}",
            f.setup,
            f.nodes,
            median,
            r[r.len() - 1].as_secs_f64(),
            median * 1e3 / f.nodes as f64,
            f.attest_secs
        );
    }
    Ok(())
}

async fn run(
    ek: &Arc<SoftEk>,
    backend: &str,
    uefi: bool,
    nodes: usize,
    runs: usize,
) -> anyhow::Result<Figures> {
    let setup = format!("{backend}+{}", if uefi { "uefi" } else { "pcrs" });
    let db = match backend {
        "postgres" => Some(PgDb::new()?),
        "sled" => None,
        other => anyhow::bail!("unknown backend {other} (sled | postgres)"),
    };
    let current = policy(uefi, "in force");
    let quoted = Policy::parse("current", &current)?.pcr_selection();
    let mut opts = VerifierOpts::new(current);
    opts.ek_roots.push(ek.root_pem());
    let mut config = db.as_ref().map(PgDb::storage_toml).unwrap_or_default();
    config.push_str(
        "\n[limits]\nsource_rate = 1000000\nsource_burst = 1000000\nnonces_total = 10000000\nenrollments_total = 10000000\nmax_connections = 100000\nrequest_timeout_secs = 600\n",
    );
    opts.config = Some(config);
    let v = VerifierProc::start(&opts)?;
    let log = Arc::new(std::fs::read(assay_tests::testdata(GCE_LOG)).context("the GCE UEFI log")?);
    let sims: Vec<Arc<SimNode>> = (0..nodes)
        .map(|i| {
            let mut node = SimNode::new(format!("sim-{i:05}"), AkKind::P256, ek)?;
            if uefi {
                node.pcr_overrides = replayed_pcrs(&log, &quoted);
                node.uefi_log = Some(log.clone());
            }
            if i % ODD_ONE == 0 {
                node.pcr_overrides.retain(|(p, _)| *p != 7);
                node.pcr_overrides.push((7, vec![0x77; 32]));
            }
            Ok(Arc::new(node))
        })
        .collect::<anyhow::Result<_>>()?;
    let t = Instant::now();
    let mut channels = Vec::new();
    for _ in 0..4 {
        channels.push(simnode::channel(&v.url, &v.ca_pem).await?);
    }
    let mut set = tokio::task::JoinSet::new();
    for w in 0..16usize {
        let (sims, ek, channels) = (sims.clone(), ek.clone(), channels.clone());
        set.spawn(async move {
            for i in (w..sims.len()).step_by(16) {
                let mut c = AttestationClient::new(channels[i % channels.len()].clone());
                sims[i].enroll(&ek, &mut c).await?;
                let r = sims[i].attest(&mut c).await?;
                let passed = r.verdict.map(|v| v.passed).unwrap_or(false);
                anyhow::ensure!(
                    passed == (i % ODD_ONE != 0),
                    "node {i}: verdict {passed} not as booted"
                );
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    let attest_secs = t.elapsed().as_secs_f64();
    println!("{setup}: {nodes} nodes enrolled and attested once in {attest_secs:.1} s");

    let candidate = v.dir.path().join("candidate.toml");
    std::fs::write(&candidate, policy(uefi, "candidate"))?;
    let c = candidate.display().to_string();
    let mut times = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let out = v.cli(&[
            "policy", "test", &c, "--name", "default", "--output", "json",
        ])?;
        times.push(t.elapsed());
        // Exit 3: the odd ones fail under the candidate too.
        anyhow::ensure!(
            out.status.code() == Some(3),
            "policy test: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let j: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let s = &j["summary"];
        let fails = nodes.div_ceil(ODD_ONE) as u64;
        anyhow::ensure!(
            s["nodes"] == nodes as u64 && s["fail"] == fails && s["pass"] == (nodes as u64 - fails),
            "unexpected dry run: {s}"
        );
    }
    println!(
        "{setup}: dry runs {:?}",
        times
            .iter()
            .map(|d| format!("{:.3}s", d.as_secs_f64()))
            .collect::<Vec<_>>()
    );
    Ok(Figures {
        setup,
        nodes,
        runs: times,
        attest_secs,
    })
}
