//! Durability, for real: three attestors on their own swtpms attest in a
//! bounded loop against a real verifier (on sled, and on a real PostgreSQL),
//! which is killed with SIGKILL mid-load and restarted on the same data. Every verdict and token the
//! verifier acknowledged (an attestor printed it) must be there after the
//! restart, and the history must verify.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use assay_tests::{PgDb, Swtpm, VerifierOpts, VerifierProc};

const ZERO: &str = "0000000000000000000000000000000000000000000000000000000000000000";
const NODES: usize = 3;
/// Attestations per node at most: the loop is bounded in count and time.
const MAX_ROUNDS: usize = 200;

#[derive(Debug, Clone)]
struct Acked {
    node: String,
    seq: u64,
    token: String,
}

#[test]
fn sigkill_under_load_loses_no_acknowledged_verdict_or_token_on_sled() {
    sigkill_under_load(None);
}

#[test]
fn sigkill_under_load_loses_no_acknowledged_verdict_or_token_on_postgres() {
    let db = PgDb::new().expect("PostgreSQL");
    sigkill_under_load(Some(&db));
}

fn sigkill_under_load(db: Option<&PgDb>) {
    let mut opts = VerifierOpts::new(format!(
        "schema = 0\nname = \"durability\"\n[pcrs.sha256]\n16 = \"{ZERO}\"\n"
    ));
    opts.config = Some(format!(
        "checkpoint_interval_secs = 1\n{}",
        db.map(PgDb::storage_toml).unwrap_or_default()
    ));
    let mut v = VerifierProc::start(&opts).unwrap();
    let url = v.url.clone();
    let ca = v.ca_pem.clone();
    let acked = Arc::new(Mutex::new(Vec::<Acked>::new()));
    let mut threads = Vec::new();
    for i in 0..NODES {
        let (url, ca, acked) = (url.clone(), ca.clone(), acked.clone());
        threads.push(std::thread::spawn(move || {
            let tpm = Swtpm::start().unwrap();
            let state = tempfile::tempdir().unwrap();
            let node = format!("node-d{i}");
            let started = Instant::now();
            let mut failures = 0;
            for _ in 0..MAX_ROUNDS {
                if started.elapsed() > Duration::from_secs(60) || failures >= 3 {
                    break;
                }
                let out = std::process::Command::new(assay_tests::bin("assay-attestor").unwrap())
                    .args(["join", "--output", "json", "--retries", "0"])
                    .args(["--verifier", &url])
                    .arg("--ca")
                    .arg(&ca)
                    .args(["--tcti", &tpm.tcti(), "--node-id", &node])
                    .arg("--state-dir")
                    .arg(state.path())
                    .env("ASSAY_CEL_LOG", state.path().join("m.cel"))
                    .output()
                    .unwrap();
                if out.status.code() != Some(0) {
                    failures += 1;
                    continue;
                }
                let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
                acked.lock().unwrap().push(Acked {
                    node: node.clone(),
                    seq: j["history_seq"].as_u64().unwrap(),
                    token: j["token"].as_str().unwrap().to_string(),
                });
            }
        }));
    }
    // Kill when enough has been acknowledged (bounded wait).
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < 15 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    v.kill(); // SIGKILL, mid-load
    let killed_with = acked.lock().unwrap().len();
    for t in threads {
        t.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        killed_with >= 15,
        "load was running: {killed_with} acknowledged"
    );
    // An attestor whose answer left before the kill may be counted just
    // after it (one in flight per node); nothing started later can succeed.
    assert!(
        acked.len() <= killed_with + NODES,
        "{} acknowledged, {killed_with} at the kill: the verifier answered after it",
        acked.len()
    );

    v.restart().unwrap();
    let out = v
        .cli(&["history", "--limit", "10000", "--output", "jsonl"])
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recs: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for a in &acked {
        let r = recs
            .iter()
            .find(|r| r["seq"] == a.seq)
            .unwrap_or_else(|| panic!("acknowledged verdict {} lost", a.seq));
        assert_eq!(r["node_id"], a.node.as_str());
        assert_eq!(r["verdict"], "PASS");
        let out = v
            .cli(&["token", "verify", "--token", &a.token, "--node", &a.node])
            .unwrap();
        assert!(
            out.status.success(),
            "acknowledged token of verdict {} lost: {}",
            a.seq,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The chain holds across the crash (export, then verify offline).
    let dir = tempfile::tempdir().unwrap();
    let export = dir.path().join("h.jsonl");
    let out = v
        .cli(&["audit", "export", "--out", export.to_str().unwrap()])
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = std::process::Command::new(assay_tests::bin("assay-verifier").unwrap())
        .args(["audit", "verify", "--from-export", export.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    eprintln!(
        "{} acknowledged before SIGKILL, all present after restart; {} records in all",
        acked.len(),
        recs.len()
    );
}
