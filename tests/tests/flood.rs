//! A flood on the node-facing API while a real node attests every second
//! (issue #19): 20,000 unauthenticated Challenge, Enroll (with the node's
//! harvested EK certificate) and forged Attest calls in its name, and
//! Challenges for ids that are not enrolled, from four other loopback
//! addresses, paced over 20 s and bounded at 60 s, against a verifier with its default
//! limits. The node keeps passing, its standing never changes, and the
//! verifier's RSS and data dir stay within stated bounds. The figures are
//! printed (`cargo test --test flood -- --nocapture`).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use assay_proto::v1 as pb;
use assay_tests::node::Node;
use assay_tests::{output_text, VerifierOpts, VerifierProc};
use pb::attestation_client::AttestationClient;

const ZERO: &str = "0000000000000000000000000000000000000000000000000000000000000000";
const CALLS: usize = 20_000;
const SOURCES: [&str; 4] = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"];
const LOOPS_PER_SOURCE: usize = 4;
const FLOOD_BOUND: Duration = Duration::from_secs(60);
/// The flood is paced over this long, so the node attests many times in it.
const FLOOD_SPREAD: Duration = Duration::from_secs(20);
/// Bounds stated for the flood: what the verifier may grow by.
const MAX_RSS_GROWTH_KIB: u64 = 64 * 1024;
const MAX_DATA_DIR_GROWTH: u64 = 16 << 20;

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

fn dir_bytes(p: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(p).unwrap().flatten() {
        let m = e.metadata().unwrap();
        total += if m.is_dir() {
            dir_bytes(&e.path())
        } else {
            m.len()
        };
    }
    total
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

async fn attest_once(v: &VerifierProc, n: &Node) -> (Duration, bool, u64) {
    let t = Instant::now();
    let r = n.send(v, n.quoted_request(v).await).await;
    let verdict = r.verdict.unwrap();
    (t.elapsed(), verdict.passed, verdict.history_seq)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_20000_unauthenticated_calls_changes_nothing_for_a_real_node() {
    let policy = format!("schema = 0\nname = \"flood\"\n[pcrs.sha256]\n0 = \"{ZERO}\"\n");
    let v = Arc::new(VerifierProc::start(&VerifierOpts::new(policy)).unwrap());
    let n = Node::new("real-1");
    n.enroll(&v).await;

    // Idle: five attestations a second apart.
    let mut idle = Vec::new();
    for _ in 0..5 {
        let (d, passed, _) = attest_once(&v, &n).await;
        assert!(passed);
        idle.push(d);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let rss_before = rss_kib(v.pid());
    let dir_before = dir_bytes(&v.data_dir);

    // What the attacker has: the node's EK certificate and public areas
    // (public), any AK public area, and the node's id.
    let enroll_req = {
        let mut tpm = assay_attestor::tpm::Tpm::open(&n.tpm.tcti()).unwrap();
        let ak = tpm.load_or_create_ak(n.state.path()).unwrap();
        pb::EnrollRequest {
            node_id: "real-1".into(),
            ek_certificate: tpm.ek_certificate().unwrap(),
            ek_public: tpm.ek_public().unwrap(),
            ak_public: ak.public,
            ek_chain: Vec::new(),
        }
    };
    let forged = {
        let mut r = n.quote_for(&[7; 32], &[0]);
        r.signature[20] ^= 1;
        r
    };
    let codes: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let per_loop = CALLS / (SOURCES.len() * LOOPS_PER_SOURCE);
    for src in SOURCES {
        let ca = std::fs::read(&v.ca_pem).unwrap();
        let ep = assay_proto::client::endpoint(&v.url, ca, None)
            .unwrap()
            .local_address(Some(src.parse::<IpAddr>().unwrap()));
        let ch = ep.connect().await.unwrap();
        for l in 0..LOOPS_PER_SOURCE {
            let mut c = AttestationClient::new(ch.clone());
            let (enroll_req, forged, codes) = (enroll_req.clone(), forged.clone(), codes.clone());
            tasks.spawn(async move {
                let step = FLOOD_SPREAD / per_loop as u32;
                for k in 0..per_loop {
                    if start.elapsed() > FLOOD_BOUND {
                        break;
                    }
                    let due = step * k as u32;
                    if let Some(wait) = due.checked_sub(start.elapsed()) {
                        tokio::time::sleep(wait).await;
                    }
                    let r = match (k + l) % 4 {
                        // Names that are not enrolled (state the id keys).
                        3 => c
                            .challenge(pb::ChallengeRequest {
                                node_id: format!("ghost-{k}"),
                            })
                            .await
                            .map(drop),
                        0 => c
                            .challenge(pb::ChallengeRequest {
                                node_id: "real-1".into(),
                            })
                            .await
                            .map(drop),
                        1 => c.enroll(enroll_req.clone()).await.map(drop),
                        _ => {
                            let mut f = forged.clone();
                            f.nonce = (0..32).map(|i| (i as u8) ^ (k as u8)).collect();
                            c.attest(f).await.map(drop)
                        }
                    };
                    let code = match r {
                        Ok(()) => "ok (answered)".to_string(),
                        Err(e) => format!("{:?}", e.code()),
                    };
                    *codes.lock().unwrap().entry(code).or_default() += 1;
                }
            });
        }
    }
    // The node attests every second while the flood runs.
    let mut during = Vec::new();
    let mut seqs = Vec::new();
    while !tasks.is_empty() {
        let (d, passed, seq) = attest_once(&v, &n).await;
        assert!(passed, "the real node failed during the flood");
        during.push(d);
        seqs.push(seq);
        let tick = tokio::time::sleep(Duration::from_secs(1));
        tokio::pin!(tick);
        loop {
            tokio::select! {
                _ = &mut tick => break,
                done = tasks.join_next() => match done {
                    Some(r) => r.unwrap(),
                    None => { (&mut tick).await; break }
                },
            }
        }
    }
    let flood_secs = start.elapsed().as_secs_f64();
    // A last attestation after the flood, then the figures.
    let (_, passed, _) = attest_once(&v, &n).await;
    assert!(passed);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let rss_after = rss_kib(v.pid());
    let dir_after = dir_bytes(&v.data_dir);
    let codes = codes.lock().unwrap().clone();
    let sent: u64 = codes.values().sum();
    idle.sort();
    during.sort();
    println!(
        "flood: {sent} calls from {} sources in {flood_secs:.1} s ({:.0}/s); answers by status: {codes:?}",
        SOURCES.len(),
        sent as f64 / flood_secs
    );
    println!(
        "real node attestation (challenge + quote + attest): idle p50 {:.1} ms p99 {:.1} ms (n={}); during the flood p50 {:.1} ms p99 {:.1} ms (n={})",
        percentile(&idle, 0.5),
        percentile(&idle, 0.99),
        idle.len(),
        percentile(&during, 0.5),
        percentile(&during, 0.99),
        during.len()
    );
    println!(
        "verifier RSS {rss_before} KiB -> {rss_after} KiB (+{} KiB); data dir {dir_before} -> {dir_after} bytes (+{} bytes)",
        rss_after.saturating_sub(rss_before),
        dir_after.saturating_sub(dir_before)
    );

    assert_eq!(
        sent as usize, CALLS,
        "the flood ran to its count within {FLOOD_BOUND:?}"
    );
    assert!(during.len() >= 10, "the node attested during the flood");
    assert!(
        codes.get("ResourceExhausted").copied().unwrap_or(0) > (CALLS / 2) as u64,
        "most of the flood is refused by the limits: {codes:?}"
    );
    assert!(rss_after.saturating_sub(rss_before) < MAX_RSS_GROWTH_KIB);
    assert!(dir_after.saturating_sub(dir_before) < MAX_DATA_DIR_GROWTH);
    // Its history holds only its own passes; its standing never changed.
    let o = v.cli(&["history", "--node", "real-1", "--json"]).unwrap();
    let recs: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        recs.as_array()
            .unwrap()
            .iter()
            .all(|r| r["verdict"] == "PASS"),
        "{}",
        output_text(&o)
    );
    let o = v.cli(&["fleet", "--output", "json"]).unwrap();
    let fleet: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(fleet[0]["state"], "pass", "{fleet}");
    let o = v.cli(&["node", "show", "real-1", "--json"]).unwrap();
    let show: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(show["quarantined"], false);
    println!(
        "unauthenticated attempts recorded for real-1: {}",
        show["unauthenticated"]
    );
    assert!(show["unauthenticated"]["count"].as_u64().unwrap() > 0);
}
