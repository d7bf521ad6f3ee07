//! End to end: real swtpm, real `assay-verifier` over real TLS with real sled,
//! real `assay-attestor` binary or its library flow. Each test starts its own
//! TPM(s) and verifier, so tests run in parallel.
//!
//! Attack tests drive the protocol through the attestor library (real TPM
//! quotes) and tamper with exactly one thing before it reaches the verifier.

use std::path::Path;
use std::process::Output;

use assay_attestor::flow::{self, Failure};
use assay_attestor::tpm::Tpm;
use assay_proto::v1 as pb;
use assay_tests::node::Node;
use assay_tests::{TestCa, VerifierOpts, VerifierProc};
use sha2::Digest as _;

const ZERO: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// PCRs 0, 1, 2 and 16 at their reset value (all zeros) on a fresh swtpm.
fn policy() -> String {
    format!("schema = 0\nname = \"e2e\"\n[pcrs.sha256]\n0 = \"{ZERO}\"\n1 = \"{ZERO}\"\n2 = \"{ZERO}\"\n16 = \"{ZERO}\"\n")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The ids of the failed claims of a response; asserts no token came with a failure.
fn failed(r: &pb::AttestResponse) -> Vec<String> {
    let v = r.verdict.as_ref().expect("a verdict");
    let f: Vec<String> = v
        .claims
        .iter()
        .filter(|c| !c.passed)
        .map(|c| c.id.clone())
        .collect();
    assert_eq!(v.passed, f.is_empty());
    if !v.passed {
        assert!(
            r.join_token.is_none(),
            "a failed verdict must not carry a token"
        );
    }
    f
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", stdout(o), stderr(o)))
}

#[test]
fn happy_path_enroll_attest_token_verifies_and_history_shows_pass() {
    let v = VerifierProc::start(&VerifierOpts::new(policy())).unwrap();
    let n = Node::new("node-happy");
    let out = n.run(&v, "join", &["--output", "json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}\n{}",
        stdout(&out),
        stderr(&out),
        v.log()
    );
    let j = json(&out);
    assert_eq!(j["trusted"], true);
    let token = j["token"].as_str().expect("a join token").to_string();
    assert!(j["claims"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["passed"] == true));

    // The AK blobs and the enrollment record are kept: a second join reuses them.
    assert!(n.state.path().join("enrollment.json").exists());
    let again = n.run(&v, "join", &["--output", "json"]);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));

    let tv = v
        .cli(&[
            "token",
            "verify",
            "--token",
            &token,
            "--node",
            "node-happy",
            "--json",
        ])
        .unwrap();
    assert!(tv.status.success(), "{}", stderr(&tv));
    assert_eq!(json(&tv)["valid"], true);

    let h = v
        .cli(&["history", "--node", "node-happy", "--json"])
        .unwrap();
    assert!(h.status.success(), "{}", stderr(&h));
    let recs = json(&h);
    let recs = recs.as_array().unwrap();
    assert_eq!(recs.len(), 2);
    assert!(recs
        .iter()
        .all(|r| r["verdict"] == "PASS" && r["node_id"] == "node-happy"));
    assert_eq!(
        recs[0]["prev_hash"].as_str().unwrap().len(),
        64,
        "records are hash-chained"
    );
    let text = v.cli(&["history", "--node", "node-happy"]).unwrap();
    assert!(stdout(&text).contains("PASS"), "{}", stdout(&text));
}

#[tokio::test(flavor = "current_thread")]
async fn pcr_not_matching_policy_fails_naming_the_pcr_and_no_token() {
    let v = VerifierProc::start(&VerifierOpts::new(policy())).unwrap();
    let n = Node::new("node-pcr");
    n.enroll(&v).await;
    Tpm::open(&n.tpm.tcti())
        .unwrap()
        .extend_pcr_sha256(16, &[0x42; 32])
        .unwrap();
    let out = n.run(&v, "join", &["--output", "json"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "not trusted exit code; {}",
        stderr(&out)
    );
    let j = json(&out);
    assert_eq!(j["trusted"], false);
    assert!(j["token"].is_null());
    let bad: Vec<&serde_json::Value> = j["claims"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["passed"] == false)
        .collect();
    assert_eq!(bad.len(), 1, "{j}");
    assert_eq!(bad[0]["id"], "pcr.sha256.16");
    assert_eq!(bad[0]["expected"], ZERO);
    assert_ne!(bad[0]["actual"], ZERO);
    let h = json(&v.cli(&["history", "--node", "node-pcr", "--json"]).unwrap());
    assert_eq!(h[0]["verdict"], "FAIL");
    assert_eq!(h[0]["failed_claims"][0]["id"], "pcr.sha256.16");
}

#[test]
fn rejects_ek_certificate_from_unconfigured_ca() {
    let other = TestCa::new().unwrap();
    let mut opts = VerifierOpts::new(policy());
    opts.ek_roots = vec![other.root_cert_path()];
    opts.ek_intermediates = vec![other.issuer_cert_path()];
    let v = VerifierProc::start(&opts).unwrap();
    let n = Node::new("node-untrusted-ek");
    let out = n.run(&v, "join", &[]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("EK certificate"), "{}", stderr(&out));
}

#[tokio::test(flavor = "current_thread")]
async fn rejects_attestation_when_credential_activation_was_not_completed() {
    let v = VerifierProc::start(&VerifierOpts::new(policy())).unwrap();
    let n = Node::new("node-no-activation");
    let mut tpm = Tpm::open(&n.tpm.tcti()).unwrap();
    let ak = tpm.load_or_create_ak(n.state.path()).unwrap();
    let mut c = n.client(&v).await;
    let r = c
        .enroll(pb::EnrollRequest {
            node_id: n.id.clone(),
            ek_certificate: tpm.ek_certificate().unwrap(),
            ek_public: tpm.ek_public().unwrap(),
            ak_public: ak.public,
            ek_chain: Vec::new(),
        })
        .await
        .unwrap()
        .into_inner();
    drop(tpm);
    // No Activate: the AK is not bound, so the node gets no nonce and no verdict.
    let e = c
        .challenge(pb::ChallengeRequest {
            node_id: n.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
    let e = c
        .attest(n.quote_for(&[7; 32], &[0, 1, 2, 16]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
    // A wrong credential does not bind it either, and burns the enrollment.
    let e = c
        .activate(pb::ActivateRequest {
            node_id: n.id.clone(),
            enrollment_id: r.enrollment_id.clone(),
            credential: vec![0; 32],
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    let e = c
        .activate(pb::ActivateRequest {
            node_id: n.id.clone(),
            enrollment_id: r.enrollment_id,
            credential: vec![0; 32],
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    let e = c
        .challenge(pb::ChallengeRequest {
            node_id: n.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
}

#[tokio::test(flavor = "current_thread")]
async fn rejects_replayed_nonce() {
    let v = VerifierProc::start(&VerifierOpts::new(policy())).unwrap();
    let n = Node::new("node-replay");
    n.enroll(&v).await;
    let req = n.quoted_request(&v).await;
    let first = n.send(&v, req.clone()).await;
    assert!(failed(&first).is_empty(), "{first:?}");
    assert!(first.join_token.is_some());
    let replay = n.send(&v, req).await;
    assert_eq!(failed(&replay), vec!["nonce.unused"]);
}

#[tokio::test(flavor = "current_thread")]
async fn rejects_expired_nonce() {
    let mut opts = VerifierOpts::new(policy());
    opts.nonce_ttl_secs = 1;
    let v = VerifierProc::start(&opts).unwrap();
    let n = Node::new("node-expired-nonce");
    n.enroll(&v).await;
    let req = n.quoted_request(&v).await;
    std::thread::sleep(std::time::Duration::from_millis(2100));
    assert_eq!(failed(&n.send(&v, req).await), vec!["nonce.fresh"]);
}

#[tokio::test(flavor = "current_thread")]
async fn rejects_nonce_issued_to_another_node() {
    let v = VerifierProc::start(&VerifierOpts::new(policy())).unwrap();
    let a = Node::new("node-a");
    let b = Node::new("node-b");
    a.enroll(&v).await;
    b.enroll(&v).await;
    let mut c = b.client(&v).await;
    let chal_b = c
        .challenge(pb::ChallengeRequest {
            node_id: b.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    // Node A answers B's nonce with its own TPM, as itself.
    let req = a.quote_for(&chal_b.nonce, &chal_b.pcrs_sha256);
    assert_eq!(failed(&a.send(&v, req).await), vec!["nonce.node"]);
}

#[tokio::test(flavor = "current_thread")]
async fn rejects_forged_bitflipped_and_foreign_quote_signatures() {
    let v = VerifierProc::start(&VerifierOpts::new(policy())).unwrap();
    let a = Node::new("node-sig-a");
    let b = Node::new("node-sig-b");
    a.enroll(&v).await;
    b.enroll(&v).await;

    // Bit flipped in the signature value (last byte of TPMT_SIGNATURE).
    let mut req = a.quoted_request(&v).await;
    let last = req.signature.len() - 1;
    req.signature[last] ^= 1;
    assert_eq!(failed(&a.send(&v, req).await), vec!["quote.signature"]);

    // Forged: the signature value replaced by random bytes of the right size.
    let mut req = a.quoted_request(&v).await;
    let n = req.signature.len();
    for (i, byte) in req.signature[6..n].iter_mut().enumerate() {
        *byte = (i as u8).wrapping_mul(31).wrapping_add(7);
    }
    assert_eq!(failed(&a.send(&v, req).await), vec!["quote.signature"]);

    // A quote over A's nonce but signed by B's AK (a TPM not bound to node A).
    let mut c = a.client(&v).await;
    let chal = c
        .challenge(pb::ChallengeRequest {
            node_id: a.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut req = b.quote_for(&chal.nonce, &chal.pcrs_sha256);
    req.node_id = a.id.clone();
    assert_eq!(failed(&a.send(&v, req).await), vec!["quote.signature"]);
}

#[tokio::test(flavor = "current_thread")]
async fn rejects_quote_over_a_different_pcr_selection() {
    let v = VerifierProc::start(&VerifierOpts::new(policy())).unwrap();
    let n = Node::new("node-selection");
    n.enroll(&v).await;
    let mut c = n.client(&v).await;
    let chal = c
        .challenge(pb::ChallengeRequest {
            node_id: n.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(chal.pcrs_sha256, vec![0, 1, 2, 16]);
    // PCR 16 left out: a node hiding a PCR it extended.
    let req = n.quote_for(&chal.nonce, &[0, 1, 2]);
    assert_eq!(failed(&n.send(&v, req).await), vec!["quote.pcr_selection"]);
}

#[tokio::test(flavor = "current_thread")]
async fn rejects_pcr_values_that_do_not_hash_to_the_quote_digest() {
    let v = VerifierProc::start(&VerifierOpts::new(policy())).unwrap();
    let n = Node::new("node-digest");
    n.enroll(&v).await;
    // The node extended PCR 16 but reports the golden (zero) value for it.
    Tpm::open(&n.tpm.tcti())
        .unwrap()
        .extend_pcr_sha256(16, &[0x99; 32])
        .unwrap();
    let mut req = n.quoted_request(&v).await;
    let p16 = req.pcrs_sha256.iter_mut().find(|p| p.index == 16).unwrap();
    p16.digest = vec![0; 32];
    assert_eq!(failed(&n.send(&v, req).await), vec!["quote.pcr_digest"]);
}

async fn token_for(v: &VerifierProc, n: &Node) -> String {
    n.enroll(v).await;
    let r = n.send(v, n.quoted_request(v).await).await;
    assert!(failed(&r).is_empty());
    r.join_token.expect("token on pass").token
}

#[tokio::test(flavor = "current_thread")]
async fn rejects_join_token_reuse_and_use_by_another_node() {
    let v = VerifierProc::start(&VerifierOpts::new(policy())).unwrap();
    let n = Node::new("node-token");
    let token = token_for(&v, &n).await;
    let other = v
        .cli(&["token", "verify", "--token", &token, "--node", "node-thief"])
        .unwrap();
    assert!(!other.status.success());
    assert!(
        stderr(&other).contains("issued to node `node-token`"),
        "{}",
        stderr(&other)
    );
    let ok = v
        .cli(&["token", "verify", "--token", &token, "--node", "node-token"])
        .unwrap();
    assert!(ok.status.success(), "{}", stderr(&ok));
    let reuse = v
        .cli(&["token", "verify", "--token", &token, "--node", "node-token"])
        .unwrap();
    assert!(!reuse.status.success());
    assert!(
        stderr(&reuse).contains("already been used"),
        "{}",
        stderr(&reuse)
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_node_that_fails_loses_its_outstanding_tokens_but_forgery_in_its_name_revokes_nothing() {
    let v = VerifierProc::start(&VerifierOpts::new(policy())).unwrap();
    let n = Node::new("node-revoke");
    let kept = token_for(&v, &n).await;
    let revoked = n
        .send(&v, n.quoted_request(&v).await)
        .await
        .join_token
        .unwrap()
        .token;
    // Garbage in the node's name (a signature that does not verify): not the
    // node's own evidence, so its tokens stay.
    let mut forged = n.quoted_request(&v).await;
    forged.signature[20] ^= 1;
    assert!(failed(&n.send(&v, forged).await).contains(&"quote.signature".to_string()));
    let ok = v
        .cli(&["token", "verify", "--token", &kept, "--node", "node-revoke"])
        .unwrap();
    assert!(ok.status.success(), "{}", stderr(&ok));
    // The node itself quotes a tampered PCR 16: its unused token is revoked.
    Tpm::open(&n.tpm.tcti())
        .unwrap()
        .extend_pcr_sha256(16, &[0x42; 32])
        .unwrap();
    let r = n.send(&v, n.quoted_request(&v).await).await;
    assert_eq!(failed(&r), vec!["pcr.sha256.16"]);
    assert!(r.join_token.is_none() && r.grant.is_none());
    let out = v
        .cli(&[
            "token",
            "verify",
            "--token",
            &revoked,
            "--node",
            "node-revoke",
        ])
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("revoked"), "{}", stderr(&out));
}

#[tokio::test(flavor = "current_thread")]
async fn rejects_expired_join_token() {
    let mut opts = VerifierOpts::new(policy());
    opts.token_ttl_secs = 1;
    let v = VerifierProc::start(&opts).unwrap();
    let n = Node::new("node-token-exp");
    let token = token_for(&v, &n).await;
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let out = v
        .cli(&[
            "token",
            "verify",
            "--token",
            &token,
            "--node",
            "node-token-exp",
        ])
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("expired"), "{}", stderr(&out));
}

#[tokio::test(flavor = "current_thread")]
async fn unreachable_verifier_and_bad_tpm_have_their_own_exit_codes() {
    let v = VerifierProc::start(&VerifierOpts::new(policy())).unwrap();
    let n = Node::new("node-codes");
    // Verifier URL with nothing listening.
    let port = assay_tests::swtpm::free_port().unwrap();
    let out = std::process::Command::new(assay_tests::bin("assay-attestor").unwrap())
        .args([
            "join",
            "--retries",
            "1",
            "--node-id",
            "x",
            "--tcti",
            &n.tpm.tcti(),
        ])
        .arg("--verifier")
        .arg(format!("https://127.0.0.1:{port}"))
        .arg("--ca")
        .arg(&v.ca_pem)
        .arg("--state-dir")
        .arg(n.state.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    // TPM that is not there.
    let out = attestor_with_tcti(&v, n.state.path(), "swtpm:host=127.0.0.1,port=1");
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    // The simulator TCTIs' port layout is said, since a wrongly started
    // simulator shows only an unrecognized response code.
    assert!(stderr(&out).contains("port`+1"), "{}", stderr(&out));
    // Bad configuration: no --ca.
    let out = std::process::Command::new(assay_tests::bin("assay-attestor").unwrap())
        .args(["join", "--verifier", &v.url, "--node-id", "x"])
        .env_remove("ASSAY_CA")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("`ca`"), "{}", stderr(&out));
    // Unreachable maps from the library too.
    let mut cfg = n.config(&v);
    cfg.verifier = format!("https://127.0.0.1:{port}");
    assert!(matches!(
        flow::connect(&cfg).await,
        Err(Failure::Unreachable(_))
    ));
}

/// A CA that did not sign the verifier's certificate: a configuration error
/// said once and plainly (attestor: exit 2, at once, no retries; verifier
/// commands: exit 1), never "unreachable"; a verifier that is not there is
/// exit 4 for both; a refused token is exit 3.
#[tokio::test(flavor = "current_thread")]
async fn a_wrong_ca_is_a_configuration_error_not_an_unreachable_verifier() {
    let v = VerifierProc::start(&VerifierOpts::new(policy())).unwrap();
    let other = tempfile::tempdir().unwrap();
    let init = std::process::Command::new(assay_tests::bin("assay-verifier").unwrap())
        .args(["init", "--dir"])
        .arg(other.path())
        .output()
        .unwrap();
    assert!(init.status.success(), "{}", stderr(&init));
    let wrong_ca = other.path().join("ca.pem");

    let n = Node::new("node-wrong-ca");
    let started = std::time::Instant::now();
    let out = std::process::Command::new(assay_tests::bin("assay-attestor").unwrap())
        .args([
            "join",
            "--retries",
            "5",
            "--node-id",
            "node-wrong-ca",
            "--tcti",
        ])
        .arg(n.tpm.tcti())
        .arg("--verifier")
        .arg(&v.url)
        .arg("--ca")
        .arg(&wrong_ca)
        .arg("--state-dir")
        .arg(n.state.path())
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("is not signed by the CA given"), "{err}");
    assert!(!err.contains("unreachable"), "{err}");
    // Not retried: five retries with backoff would take seconds.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "{err}"
    );

    let out = std::process::Command::new(assay_tests::bin("assay-verifier").unwrap())
        .args(["history", "--server", &v.url, "--ca"])
        .arg(&wrong_ca)
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("is not signed by the CA given"), "{err}");
    assert_eq!(err.matches("not signed").count(), 1, "said once: {err}");

    let port = assay_tests::swtpm::free_port().unwrap();
    let out = std::process::Command::new(assay_tests::bin("assay-verifier").unwrap())
        .args([
            "history",
            "--server",
            &format!("https://127.0.0.1:{port}"),
            "--ca",
        ])
        .arg(&v.ca_pem)
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("verifier unreachable"), "{err}");

    let out = v
        .cli(&["token", "verify", "--token", "not-a-token", "--node", "x"])
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    // A role that may not call: refused (3), naming who may.
    let out = v.cli_as(&["history"], None).unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("the role operator or auditor"), "{err}");
}

fn attestor_with_tcti(v: &VerifierProc, state: &Path, tcti: &str) -> Output {
    std::process::Command::new(assay_tests::bin("assay-attestor").unwrap())
        .args([
            "join",
            "--node-id",
            "x",
            "--tcti",
            tcti,
            "--verifier",
            &v.url,
        ])
        .arg("--ca")
        .arg(&v.ca_pem)
        .arg("--state-dir")
        .arg(state)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "current_thread")]
async fn operators_list_tokens_by_id_and_revoke_one_or_all_of_a_node() {
    let v = VerifierProc::start(&VerifierOpts::new(policy())).unwrap();
    let n = Node::new("node-tokens");
    let t1 = token_for(&v, &n).await;
    let r = n.send(&v, n.quoted_request(&v).await).await;
    let t2 = r.join_token.unwrap().token;
    let t3 = n
        .send(&v, n.quoted_request(&v).await)
        .await
        .join_token
        .unwrap()
        .token;
    let id = |t: &str| hex::encode(sha2::Sha256::digest(t.as_bytes()));

    let out = v
        .cli(&["tokens", "list", "--node", "node-tokens", "--json"])
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stdout(&out).contains(&t1), "a token value is never listed");
    let listed = json(&out);
    let mut ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    let mut want = vec![id(&t1), id(&t2), id(&t3)];
    want.sort_unstable();
    assert_eq!(ids, want);
    assert!(listed
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["state"] == "unused" && t["node_id"] == "node-tokens"));

    // One token, by the file that holds it: only its hash is sent.
    let f = n.state.path().join("t1");
    std::fs::write(&f, format!("{t1}\n")).unwrap();
    let out = v
        .cli(&["tokens", "revoke", "--token-file", f.to_str().unwrap()])
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = v
        .cli(&["token", "verify", "--token", &t1, "--node", "node-tokens"])
        .unwrap();
    assert!(stderr(&out).contains("revoked"), "{}", stderr(&out));
    // Revoking it again, a too-short id, or both selectors: clear refusals.
    let short = id(&t1)[..16].to_string();
    for (args, says) in [
        (vec!["--id", short.as_str()], "already revoked"),
        (vec!["--id", "abc"], "8 to 64 hex digits"),
        (vec!["--id", "zzzzzzzzzz"], "8 to 64 hex digits"),
        (vec!["--id", "0000000000000000"], "no token with id"),
    ] {
        let mut a = vec!["tokens", "revoke"];
        a.extend(args);
        let out = v.cli(&a).unwrap();
        assert!(!out.status.success());
        assert!(stderr(&out).contains(says), "{a:?}: {}", stderr(&out));
    }
    let out = v
        .cli(&["tokens", "revoke", "--id", &short, "--node", "node-tokens"])
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "clap refuses two selectors");

    // The rest of the node's tokens at once.
    let out = v
        .cli(&["tokens", "revoke", "--node", "node-tokens"])
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("2 token(s) revoked"),
        "{}",
        stdout(&out)
    );
    for t in [&t2, &t3] {
        let out = v
            .cli(&["token", "verify", "--token", t, "--node", "node-tokens"])
            .unwrap();
        assert!(stderr(&out).contains("revoked"), "{}", stderr(&out));
    }
    let out = v.cli(&["tokens", "list", "--node", "node-tokens"]).unwrap();
    assert!(
        stdout(&out).contains("no tokens unused"),
        "{}",
        stdout(&out)
    );
    let all = json(&v.cli(&["tokens", "list", "--all", "--json"]).unwrap());
    assert_eq!(all.as_array().unwrap().len(), 3);
    assert!(all
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["state"] == "revoked"));
    // The node is not isolated by an operator's revoke: it passes and gets a new one.
    let r = n.send(&v, n.quoted_request(&v).await).await;
    assert!(r.join_token.is_some());
}
