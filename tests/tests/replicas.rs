//! Two verifier processes on one real PostgreSQL (a cluster this test
//! process starts), real swtpm nodes, real TLS: what one replica issues
//! (nonces, tokens) the other honours exactly once, and attestations spread
//! across both leave one complete, verifiable history.

use std::time::{Duration, Instant};

use assay_proto::v1 as pb;
use assay_tests::node::Node;
use assay_tests::{PgDb, Swtpm, VerifierOpts, VerifierProc};

const ZERO: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn policy() -> String {
    format!("schema = 0\nname = \"replicas\"\n[pcrs.sha256]\n16 = \"{ZERO}\"\n")
}

/// Replica A and replica B of one verifier on database `db`.
fn two_replicas(db: &PgDb) -> (VerifierProc, VerifierProc) {
    let mut opts = VerifierOpts::new(policy());
    opts.config = Some(format!(
        "checkpoint_interval_secs = 1\n{}",
        db.storage_toml()
    ));
    let a = VerifierProc::start(&opts).expect("replica A");
    let b = a.replica().expect("replica B");
    (a, b)
}

fn failed(r: &pb::AttestResponse) -> Vec<String> {
    let v = r.verdict.as_ref().expect("a verdict");
    v.claims
        .iter()
        .filter(|c| !c.passed)
        .map(|c| c.id.clone())
        .collect()
}

fn redeem(v: &VerifierProc, token: &str, node: &str) -> bool {
    let out = v
        .cli(&["token", "verify", "--token", token, "--node", node])
        .expect("assay-verifier token verify");
    out.status.success()
}

#[tokio::test(flavor = "current_thread")]
async fn a_nonce_issued_by_one_replica_is_used_at_the_other_once_and_only_once() {
    let db = PgDb::new().expect("PostgreSQL");
    let (a, b) = two_replicas(&db);
    let n = Node::new("node-r1");
    n.enroll(&a).await;

    // Challenged by A, answered at B: passes; the same answer again, at
    // either replica, is a replay.
    let req = n.quoted_request(&a).await;
    let first = n.send(&b, req.clone()).await;
    assert!(
        failed(&first).is_empty(),
        "{first:?}\nA: {}\nB: {}",
        a.log(),
        b.log()
    );
    for v in [&a, &b] {
        assert_eq!(failed(&n.send(v, req.clone()).await), vec!["nonce.unused"]);
    }

    // The same answer sent to both replicas at once: exactly one passes.
    let req = n.quoted_request(&b).await;
    let (ra, rb) = tokio::join!(n.send(&a, req.clone()), n.send(&b, req.clone()));
    let verdicts = [failed(&ra), failed(&rb)];
    assert_eq!(
        verdicts.iter().filter(|f| f.is_empty()).count(),
        1,
        "{verdicts:?}"
    );
    assert!(
        verdicts.contains(&vec!["nonce.unused".to_string()]),
        "{verdicts:?}"
    );

    // The token B issued is redeemed at A once, and is spent at B after.
    let token = first.join_token.expect("a token with the pass").token;
    assert!(redeem(&a, &token, "node-r1"), "{}", a.log());
    assert!(
        !redeem(&b, &token, "node-r1"),
        "a token is single use across replicas"
    );
    assert!(!redeem(&a, &token, "node-r1"));
}

#[derive(Debug, Clone)]
struct Acked {
    node: String,
    seq: u64,
    token: String,
    /// Which replica (0 = A, 1 = B) acknowledged it.
    replica: usize,
}

#[test]
fn attestors_spread_across_two_replicas_leave_one_complete_history() {
    const NODES: usize = 4;
    const ROUNDS: usize = 4;
    let db = PgDb::new().expect("PostgreSQL");
    let (a, b) = two_replicas(&db);
    let urls = [a.url.clone(), b.url.clone()];
    let ca = a.ca_pem.clone();
    let started = Instant::now();
    let acked: Vec<Acked> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..NODES)
            .map(|i| {
                let (urls, ca) = (urls.clone(), ca.clone());
                sc.spawn(move || {
                    let tpm = Swtpm::start().expect("swtpm");
                    let state = tempfile::tempdir().expect("temp dir");
                    let node = format!("node-s{i}");
                    let mut acked = Vec::new();
                    for round in 0..ROUNDS {
                        let replica = (i + round) % 2;
                        let out = std::process::Command::new(
                            assay_tests::bin("assay-attestor").expect("attestor"),
                        )
                        .args(["join", "--output", "json", "--retries", "0"])
                        .args(["--verifier", &urls[replica]])
                        .arg("--ca")
                        .arg(&ca)
                        .args(["--tcti", &tpm.tcti(), "--node-id", &node])
                        .arg("--state-dir")
                        .arg(state.path())
                        .env("ASSAY_CEL_LOG", state.path().join("m.cel"))
                        .output()
                        .expect("running the attestor");
                        assert_eq!(
                            out.status.code(),
                            Some(0),
                            "{node} round {round} at replica {replica}: {}",
                            String::from_utf8_lossy(&out.stderr)
                        );
                        let j: serde_json::Value =
                            serde_json::from_slice(&out.stdout).expect("json");
                        acked.push(Acked {
                            node: node.clone(),
                            seq: j["history_seq"].as_u64().expect("history_seq"),
                            token: j["token"].as_str().expect("token").to_string(),
                            replica,
                        });
                    }
                    acked
                })
            })
            .collect();
        hs.into_iter()
            .flat_map(|h| h.join().expect("attestor thread"))
            .collect()
    });
    assert_eq!(acked.len(), NODES * ROUNDS);
    eprintln!(
        "{} attestations (incl. {NODES} enrollments) across 2 replicas in {:?}",
        acked.len(),
        started.elapsed()
    );

    // One history: every acknowledged verdict, once, whichever replica is asked.
    for v in [&a, &b] {
        let out = v
            .cli(&["history", "--limit", "10000", "--output", "jsonl"])
            .expect("history");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let recs: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("jsonl"))
            .collect();
        let mut seqs: Vec<u64> = recs.iter().filter_map(|r| r["seq"].as_u64()).collect();
        let n = seqs.len();
        seqs.sort_unstable();
        seqs.dedup();
        assert_eq!(seqs.len(), n, "no record twice");
        for k in &acked {
            let r = recs
                .iter()
                .find(|r| r["seq"] == k.seq)
                .unwrap_or_else(|| panic!("acknowledged verdict {k:?} missing"));
            assert_eq!(r["node_id"], k.node.as_str());
            assert_eq!(r["verdict"], "PASS");
        }
    }

    // Each token redeems once, at the replica that did not issue it.
    let [ra, rb] = [&a, &b];
    for k in &acked {
        let (other, issuer) = if k.replica == 0 { (rb, ra) } else { (ra, rb) };
        assert!(redeem(other, &k.token, &k.node), "{k:?}");
        assert!(!redeem(issuer, &k.token, &k.node), "{k:?} redeemed twice");
    }

    // The global chain verifies, checkpoints included, straight from PostgreSQL.
    let deadline = Instant::now() + Duration::from_secs(10);
    let last = acked.iter().map(|k| k.seq).max().expect("records");
    loop {
        let out = std::process::Command::new(assay_tests::bin("assay-verifier").expect("bin"))
            .args(["audit", "verify", "--json", "--postgres", &db.url])
            .arg("--data-dir")
            .arg(&a.data_dir)
            .output()
            .expect("audit verify");
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        assert!(report["records"].as_u64().expect("records") >= acked.len() as u64);
        if report["checkpointed_through"].as_u64().unwrap_or(0) >= last {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no checkpoint covers record {last} within 10 s: {report}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
