//! Load generator: N simulated nodes (software EK and a software AK each,
//! enrolled through the real enrollment path; see `assay_tests::simnode`)
//! drive real `assay-verifier` processes over gRPC + TLS on loopback with
//! bounded concurrency for a bounded time, every verdict durably recorded.
//! Setups run one after the other in one run, so their figures compare:
//! sled with one verifier, PostgreSQL with one and with two replicas (the
//! nodes spread across them, as behind a TCP load balancer).
//!
//! `cargo build --release --workspace --bins && cargo bench -p assay-tests --bench load`
//!
//! Environment: ASSAY_LOAD_NODES (default 2000), ASSAY_LOAD_SECS (10),
//! ASSAY_LOAD_CONCURRENCY (32 attestations in flight), ASSAY_LOAD_AK
//! (p256 | rsa), ASSAY_LOAD_SETUPS (default
//! "sled:1,postgres:1,postgres:2,sled:1:uefi,sled:1:pcrs:inventory,postgres:1:pcrs:inventory"):
//! backend:replicas[:evidence[:mode[:metrics]]], evidence `pcrs` (a quote of 8 PCRs
//! under golden values) or `uefi` (a quote of the 11 PCRs a real 112-event
//! UEFI log replays to, the log sent with every quote and judged under every
//! `[measured_boot]` rule, its evidence kept); mode `open` (the default) or
//! `inventory` (every node registered first with `node import`, each
//! enrollment then checked against the inventory); `metrics` turns the
//! verifier's Prometheus metrics on (`[metrics] listen`), to be compared with
//! the same setup without (e.g. `sled:1,sled:1:pcrs:open:metrics`).
//!
//! The generator runs on the same machine as the verifiers and PostgreSQL,
//! so they share its cores: next to the attestations per second it prints
//! the CPU time each part used per attestation (from /proc), which is what
//! scales to a machine of its own.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use assay_core::policy::Policy;
use assay_core::verify::testutil::{replayed_pcrs, GCE_MEASURED_BOOT_RULES};
use assay_proto::v1 as pb;
use assay_tests::simnode::{self, AkKind, SimNode, SoftEk};
use assay_tests::{PgDb, VerifierOpts, VerifierProc};
use pb::attestation_client::AttestationClient;
use tonic::transport::Channel;

const PCRS: [u32; 8] = [0, 1, 2, 3, 4, 5, 6, 7];

/// A real UEFI log (tpm2-tools' GCE Ubuntu 21.04 fixture), under `tests/data`.
const GCE_LOG: &str = "eventlogs/tpm2-tools/event-gce-ubuntu-2104-log.bin";

/// What every simulated node sends and the policy judges.
enum Evidence {
    /// A quote of [`PCRS`] holding golden values.
    Pcrs,
    /// A real UEFI log (112 events), its replayed PCRs quoted, judged under
    /// every `[measured_boot]` rule.
    Uefi(Arc<Vec<u8>>),
}

impl Evidence {
    fn policy(&self) -> String {
        match self {
            Evidence::Pcrs => simnode::golden_policy(&PCRS),
            Evidence::Uefi(_) => format!(
                "schema = 1\nname = \"simulated-fleet\"\n[measured_boot]\n{GCE_MEASURED_BOOT_RULES}"
            ),
        }
    }

    /// Makes `node` boot as this evidence says.
    fn apply(&self, node: &mut SimNode, quoted: &[u32]) {
        if let Evidence::Uefi(log) = self {
            node.pcr_overrides = replayed_pcrs(log, quoted);
            node.uefi_log = Some(log.clone());
        }
    }
}

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// CPU seconds (user + system) a process and its threads used so far.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the ")" that ends the command name: utime is the 12th, stime the 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0 // USER_HZ is 100 on Linux
}

/// CPU seconds every process on the machine used so far (/proc/stat).
fn machine_cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let line = stat.lines().next().unwrap_or_default();
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system (idle iowait excluded) irq softirq steal
    let busy: f64 = [0usize, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|i| v.get(*i))
        .sum();
    busy / 100.0
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn pct(v: &[Duration], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() as f64 - 1.0) * q).round() as usize].as_secs_f64() * 1e3
}

struct Figures {
    setup: String,
    attestations: usize,
    failures: usize,
    secs: f64,
    full: Vec<Duration>,
    rpc: Vec<Duration>,
    verifier_cpu: f64,
    machine_cpu: f64,
    enroll_per_s: f64,
    rss_per_node: f64,
    rss_total_mib: f64,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let nodes: usize = env("ASSAY_LOAD_NODES", 2000).max(2);
    let secs: u64 = env("ASSAY_LOAD_SECS", 10);
    let conc: usize = env("ASSAY_LOAD_CONCURRENCY", 32).max(1);
    let ak = match std::env::var("ASSAY_LOAD_AK").as_deref() {
        Ok("rsa") => AkKind::Rsa,
        _ => AkKind::P256,
    };
    let setups = std::env::var("ASSAY_LOAD_SETUPS").unwrap_or_else(|_| {
        "sled:1,postgres:1,postgres:2,sled:1:uefi,sled:1:pcrs:inventory,postgres:1:pcrs:inventory"
            .into()
    });
    let ek = Arc::new(SoftEk::new()?);
    println!(
        "{nodes} simulated nodes ({ak:?} AKs), {conc} attestations in flight, {secs} s per setup; \
         every verdict, its evidence and the token durably stored"
    );
    let mut all = Vec::new();
    for setup in setups.split(',') {
        let mut parts = setup.split(':');
        let backend = parts.next().unwrap_or("sled");
        let replicas: usize = parts
            .next()
            .and_then(|r| r.parse().ok())
            .unwrap_or(1)
            .max(1);
        let evidence = match parts.next().unwrap_or("pcrs") {
            "pcrs" => Evidence::Pcrs,
            "uefi" => {
                let path = assay_tests::testdata(GCE_LOG);
                Evidence::Uefi(Arc::new(
                    std::fs::read(&path).with_context(|| format!("{}", path.display()))?,
                ))
            }
            other => anyhow::bail!("unknown evidence {other} (pcrs | uefi)"),
        };
        let inventory = match parts.next().unwrap_or("open") {
            "open" => false,
            "inventory" => true,
            other => anyhow::bail!("unknown enrollment mode {other} (open | inventory)"),
        };
        let metrics = match parts.next() {
            None => false,
            Some("metrics") => true,
            Some(other) => anyhow::bail!("unknown option {other} (metrics)"),
        };
        all.push(
            run(
                &ek, backend, replicas, &evidence, inventory, metrics, nodes, secs, conc, ak,
            )
            .await?,
        );
    }
    println!();
    println!(
        "{:<14} {:>9} {:>8} {:>9} {:>9} {:>9} {:>9} {:>11} {:>11} {:>9}",
        "setup",
        "att/s",
        "fails",
        "p50 ms",
        "p99 ms",
        "p999 ms",
        "rpc p99",
        "verif ms/att",
        "all ms/att",
        "enroll/s"
    );
    for f in &all {
        let n = f.attestations.max(1) as f64;
        println!(
            "{:<14} {:>9.0} {:>8} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>11.3} {:>11.3} {:>9.0}",
            f.setup,
            f.attestations as f64 / f.secs,
            f.failures,
            pct(&f.full, 0.5),
            pct(&f.full, 0.99),
            pct(&f.full, 0.999),
            pct(&f.rpc, 0.99),
            f.verifier_cpu * 1e3 / n,
            f.machine_cpu * 1e3 / n,
            f.enroll_per_s,
        );
    }
    for f in &all {
        println!(
            "{}: verifier memory per enrolled node {:.0} bytes (RSS growth over the second half of \
             the enrollment / its nodes); {:.1} MiB RSS growth over the whole enrollment",
            f.setup, f.rss_per_node, f.rss_total_mib
        );
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn run(
    ek: &Arc<SoftEk>,
    backend: &str,
    replicas: usize,
    evidence: &Evidence,
    inventory: bool,
    metrics: bool,
    nodes: usize,
    secs: u64,
    conc: usize,
    ak: AkKind,
) -> anyhow::Result<Figures> {
    let mut setup = match evidence {
        Evidence::Pcrs => format!("{backend}×{replicas}"),
        Evidence::Uefi(_) => format!("{backend}×{replicas}+uefi"),
    };
    if inventory {
        setup.push_str("+inv");
    }
    if metrics {
        setup.push_str("+metrics");
    }
    let db = match backend {
        "postgres" => Some(PgDb::new()?),
        "sled" => None,
        other => anyhow::bail!("unknown backend {other} (sled | postgres)"),
    };
    anyhow::ensure!(
        db.is_some() || replicas == 1,
        "sled is single-process: one verifier"
    );
    let policy = evidence.policy();
    let quoted = Policy::parse("load.toml", &policy)?.pcr_selection();
    let mut opts = VerifierOpts::new(policy);
    opts.ek_roots.push(ek.root_pem());
    let mut config = db.as_ref().map(PgDb::storage_toml).unwrap_or_default();
    if inventory {
        config.push_str("\n[enrollment]\nmode = \"inventory\"\n");
    }
    if metrics {
        config.push_str("\n[metrics]\nlisten = \"127.0.0.1:0\"\nfleet_interval_secs = 15\n");
    }
    // Thousands of simulated nodes share 127.0.0.1: the rate limits stay on
    // (their cost is measured) but far above what the bench sends.
    config.push_str(
        "\n[limits]\nsource_rate = 1000000\nsource_burst = 1000000\nnonces_total = 10000000\nenrollments_total = 10000000\nmax_connections = 100000\n",
    );
    opts.config = Some(config);
    let first = VerifierProc::start(&opts)?;
    let mut vs = vec![first];
    for _ in 1..replicas {
        let r = vs[0].replica()?;
        vs.push(r);
    }
    let rss0: u64 = vs.iter().map(|v| rss_kib(v.pid())).sum();
    // Channels: a few HTTP/2 connections per replica, shared by the workers.
    let mut channels: Vec<Vec<Channel>> = Vec::new();
    for v in &vs {
        let mut cs = Vec::new();
        for _ in 0..4 {
            cs.push(simnode::channel(&v.url, &v.ca_pem).await?);
        }
        channels.push(cs);
    }
    let channels = Arc::new(channels);

    // Enroll every node through the real path (node i at replica i % replicas).
    let made = Instant::now();
    let sims: Vec<Arc<SimNode>> = (0..nodes)
        .map(|i| {
            let mut node = SimNode::new(format!("sim-{i:05}"), ak, ek)?;
            evidence.apply(&mut node, &quoted);
            Ok(Arc::new(node))
        })
        .collect::<anyhow::Result<_>>()?;
    let make_secs = made.elapsed().as_secs_f64();
    if inventory {
        // Registered beforehand, as an operator would from a hardware
        // inventory: one `node import` (all or none), not timed as enrollment.
        let csv = vs[0].dir.path().join("inventory.csv");
        let mut text = String::from("node_id,ek_cert_sha256\n");
        for s in &sims {
            text.push_str(&format!("{},{}\n", s.id, s.ek_cert_sha256()));
        }
        std::fs::write(&csv, text)?;
        let t = Instant::now();
        let out = vs[0].cli(&["node", "import", &csv.display().to_string()])?;
        anyhow::ensure!(
            out.status.success(),
            "node import: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        println!(
            "{setup}: {nodes} nodes registered with one `node import` in {:.2} s",
            t.elapsed().as_secs_f64()
        );
    }
    let t = Instant::now();
    // In two halves: the verifiers' memory after each gives the cost of one
    // more enrolled node (the slope), apart from start-up and warm-up.
    let half = nodes / 2;
    enroll(&sims[..half], ek, &channels).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_half: u64 = vs.iter().map(|v| rss_kib(v.pid())).sum();
    enroll(&sims[half..], ek, &channels).await?;
    let enroll_per_s = nodes as f64 / t.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss1: u64 = vs.iter().map(|v| rss_kib(v.pid())).sum();
    println!(
        "{setup}: {nodes} nodes made in {make_secs:.1} s, enrolled in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // Load: `conc` workers, worker k attests nodes k, k+conc, … in turn (one
    // attestation in flight per node), for `secs` seconds.
    let cpu0: f64 = vs.iter().map(|v| cpu_secs(v.pid())).sum();
    let m0 = machine_cpu_secs();
    let failures = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    let mut set = tokio::task::JoinSet::new();
    for k in 0..conc {
        let (sims, channels, failures) = (sims.clone(), channels.clone(), failures.clone());
        set.spawn(async move {
            let mut full = Vec::new();
            let mut rpc = Vec::new();
            let mine: Vec<usize> = (k..sims.len()).step_by(conc).collect();
            if mine.is_empty() {
                return anyhow::Ok((full, rpc));
            }
            let mut j = 0;
            while Instant::now() < deadline {
                let i = mine[j % mine.len()];
                j += 1;
                let r = i % channels.len();
                let mut c = AttestationClient::new(channels[r][k % channels[r].len()].clone());
                let t = Instant::now();
                let chal = c
                    .challenge(pb::ChallengeRequest {
                        node_id: sims[i].id.clone(),
                    })
                    .await?
                    .into_inner();
                let req = sims[i].answer(&chal);
                let t_rpc = Instant::now();
                let resp = c.attest(req).await?.into_inner();
                let now = Instant::now();
                rpc.push(now - t_rpc);
                full.push(now - t);
                if !resp.verdict.is_some_and(|v| v.passed) {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
            }
            anyhow::Ok((full, rpc))
        });
    }
    let mut full = Vec::new();
    let mut rpc = Vec::new();
    while let Some(r) = set.join_next().await {
        let (f, r) = r??;
        full.extend(f);
        rpc.extend(r);
    }
    let wall = start.elapsed().as_secs_f64();
    let verifier_cpu = vs.iter().map(|v| cpu_secs(v.pid())).sum::<f64>() - cpu0;
    let machine_cpu = machine_cpu_secs() - m0;
    full.sort();
    rpc.sort();
    let f = Figures {
        setup,
        attestations: full.len(),
        failures: failures.load(Ordering::Relaxed) as usize,
        secs: wall,
        full,
        rpc,
        verifier_cpu,
        machine_cpu,
        enroll_per_s,
        rss_per_node: (rss1 as f64 - rss_half as f64) * 1024.0 / (nodes - half).max(1) as f64,
        rss_total_mib: (rss1.saturating_sub(rss0)) as f64 / 1024.0,
    };
    println!(
        "{}: {} attestations in {:.1} s = {:.0}/s; p50 {:.2} ms, p99 {:.2} ms, p999 {:.2} ms \
         (challenge + sign + attest); {} failed",
        f.setup,
        f.attestations,
        wall,
        f.attestations as f64 / wall,
        pct(&f.full, 0.5),
        pct(&f.full, 0.99),
        pct(&f.full, 0.999),
        f.failures
    );
    drop(vs);
    Ok(f)
}

/// Enrolls `sims` through the real path, 16 at a time (node i at replica i % replicas).
async fn enroll(
    sims: &[Arc<SimNode>],
    ek: &Arc<SoftEk>,
    channels: &Arc<Vec<Vec<Channel>>>,
) -> anyhow::Result<()> {
    let mut set = tokio::task::JoinSet::new();
    for w in 0..16usize {
        let (sims, ek, channels) = (sims.to_vec(), ek.clone(), channels.clone());
        set.spawn(async move {
            for i in (w..sims.len()).step_by(16) {
                let r = i % channels.len();
                let mut c = AttestationClient::new(channels[r][i % channels[r].len()].clone());
                sims[i].enroll(&ek, &mut c).await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    Ok(())
}
