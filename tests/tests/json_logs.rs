//! `--log-format json`: one JSON object a line on stderr, with stable field
//! names a log pipeline can index (node_id, verdict, seq, claim, policy), from
//! a real verifier judging a real swtpm node (a pass, then PCR 16 tampered)
//! and from the attestor's own command line.

use assay_tests::node::Node;
use assay_tests::{attestor_command, VerifierOpts, VerifierProc};

const ZERO: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect()
}

#[tokio::test(flavor = "current_thread")]
async fn json_log_lines_name_the_node_verdict_seq_claim_and_policy() {
    let mut opts = VerifierOpts::new(format!(
        "schema = 0\nname = \"lab\"\n[pcrs.sha256]\n16 = \"{ZERO}\"\n"
    ));
    opts.args = vec!["--log-format".into(), "json".into()];
    let v = VerifierProc::start(&opts).unwrap();
    let n = Node::new("node-json-logs");
    n.enroll(&v).await;
    let req = n.quoted_request(&v).await;
    assert!(n.send(&v, req).await.verdict.unwrap().passed);
    n.tpm
        .tpm2(
            "tpm2_pcrextend",
            &[&format!("16:sha256={}", "ab".repeat(32))],
        )
        .unwrap();
    let req = n.quoted_request(&v).await;
    assert!(!n.send(&v, req).await.verdict.unwrap().passed);

    let lines = json_lines(&v.log());
    for l in &lines {
        assert!(l["timestamp"].is_string() && l["level"].is_string(), "{l}");
        assert!(l["message"].is_string(), "{l}");
    }
    let verdicts: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["message"] == "attestation verdict")
        .collect();
    assert_eq!(verdicts.len(), 2, "{lines:?}");
    let (pass, fail) = (verdicts[0], verdicts[1]);
    assert_eq!(pass["node_id"], "node-json-logs");
    assert_eq!(pass["verdict"], "pass");
    assert_eq!(pass["policy"], "default@1");
    assert_eq!(pass["claim"], "");
    assert_eq!(fail["verdict"], "fail");
    assert_eq!(fail["claim"], "pcr.sha256.16");
    assert_eq!(
        fail["seq"].as_u64().unwrap(),
        pass["seq"].as_u64().unwrap() + 1
    );
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "assay-verifier serving" && l["addr"].is_string()),
        "{lines:?}"
    );

    // The attestor: its failure line, as JSON, with the error field.
    let out = attestor_command(&n.tpm, &v, n.state.path(), &n.id, "attest")
        .unwrap()
        .args(["--log-format", "json"])
        .env("ASSAY_LOG", "info")
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0), "a tampered node does not pass");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let json: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(!json.is_empty(), "no JSON log line: {stderr}");
    assert!(json.iter().all(|l| l["level"].is_string()), "{stderr}");
}
