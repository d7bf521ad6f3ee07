//! The policy lifecycle end to end: real swtpm nodes, a real `assay-verifier`
//! over TLS (sled, and PostgreSQL with two replicas), its own CLI as the
//! operator, minisign keys made by the minisign CLI. A change is in force for
//! the very next attestation with no restart, on every replica; rollouts
//! accept two versions; the dry run predicts what an apply then does.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use assay_proto::v1 as pb;
use assay_tests::node::Node;
use assay_tests::{PgDb, VerifierOpts, VerifierProc};
use sha2::Digest as _;

const ZERO: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// What a "new kernel" extends PCR 16 with.
const NEW_KERNEL: &str = "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd";

/// PCR 16 after one extend of [`NEW_KERNEL`] from reset.
fn extended() -> String {
    let mut h = sha2::Sha256::new();
    h.update(hex::decode(ZERO).unwrap());
    h.update(hex::decode(NEW_KERNEL).unwrap());
    hex::encode(h.finalize())
}

/// A policy judging PCR 16 (and `extra` more TOML lines in `[pcrs.sha256]`).
fn policy(name: &str, pcr16: &str, extra: &str) -> String {
    format!("schema = 0\nname = \"{name}\"\n[pcrs.sha256]\n16 = \"{pcr16}\"\n{extra}")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn text(o: &Output) -> String {
    format!("{}{}", stdout(o), String::from_utf8_lossy(&o.stderr))
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(o)))
}

/// Enough nonces and rate for a test that polls.
const LIMITS: &str = "[limits]\nnode_rate = 1000\nnode_burst = 1000\nsource_rate = 1000\nsource_burst = 1000\nnonces_per_node = 1000\n";

fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p
}

/// Runs a CLI command as the operator; asserts its exit code.
fn cli(v: &VerifierProc, args: &[&str], code: i32) -> Output {
    let o = v.cli(args).unwrap();
    assert_eq!(o.status.code(), Some(code), "{args:?}: {}", text(&o));
    o
}

async fn attest(n: &Node, v: &VerifierProc) -> pb::Verdict {
    let req = n.quoted_request(v).await;
    n.send(v, req).await.verdict.expect("a verdict")
}

/// A challenge for `id` from `v`, through `n`'s connection.
async fn challenge(n: &Node, v: &VerifierProc, id: &str) -> pb::ChallengeResponse {
    n.client(v)
        .await
        .challenge(pb::ChallengeRequest { node_id: id.into() })
        .await
        .unwrap()
        .into_inner()
}

fn failed(v: &pb::Verdict) -> Vec<&str> {
    v.claims
        .iter()
        .filter(|c| !c.passed)
        .map(|c| c.id.as_str())
        .collect()
}

fn digest_of(v: &VerifierProc, reference: &str) -> String {
    let o = cli(v, &["policy", "show", reference, "--output", "json"], 0);
    json(&o)["version"]["digest"].as_str().unwrap().to_string()
}

fn admin_records(v: &VerifierProc) -> Vec<String> {
    let o = cli(
        v,
        &[
            "history",
            "--verdict",
            "admin",
            "--output",
            "json",
            "--limit",
            "100",
        ],
        0,
    );
    json(&o)
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.to_string())
        .collect()
}

#[tokio::test(flavor = "current_thread")]
async fn apply_changes_the_very_next_verdict_without_a_restart_and_rollback_restores_it_on_sled() {
    let v = VerifierProc::start(&VerifierOpts::new(policy("lab", ZERO, ""))).unwrap();
    let pid = v.pid();
    let n = Node::new("node-apply");
    n.enroll(&v).await;
    let first = attest(&n, &v).await;
    assert!(first.passed, "{:?}", failed(&first));
    assert_eq!(
        (first.policy_name.as_str(), first.policy_version),
        ("default", 1)
    );

    // A new golden value for PCR 16 (the node still boots the old kernel).
    let dir = tempfile::tempdir().unwrap();
    let next = write(dir.path(), "next.toml", &policy("lab", &extended(), ""));
    let o = cli(
        &v,
        &[
            "policy",
            "apply",
            next.to_str().unwrap(),
            "--name",
            "default",
            "--reason",
            "kernel 6.12 rollout",
        ],
        0,
    );
    assert!(
        stdout(&o).contains("applied default@2 (current)"),
        "{}",
        text(&o)
    );
    let after = attest(&n, &v).await;
    assert_eq!(failed(&after), ["pcr.sha256.16"]);
    assert_eq!(after.policy_version, 2);
    assert_eq!(after.policy_digest, digest_of(&v, "default@2"));

    // Rolling back: a new version with version 1's text; the node passes again.
    let o = cli(
        &v,
        &[
            "policy",
            "rollback",
            "default",
            "--to",
            "1",
            "--reason",
            "bad image",
        ],
        0,
    );
    assert!(stdout(&o).contains("applied default@3"), "{}", text(&o));
    let back = attest(&n, &v).await;
    assert!(back.passed, "{:?}", failed(&back));
    assert_eq!(back.policy_version, 3);
    assert_eq!(back.policy_digest, first.policy_digest);
    assert_eq!(v.pid(), pid, "no restart");

    // The list and the history show each change: who, why, old and new digest.
    let list = json(&cli(&v, &["policy", "list", "--output", "json"], 0));
    let statuses: Vec<(u64, String, Option<u64>)> = list["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["version"].as_u64().unwrap(),
                x["status"].as_str().unwrap().to_string(),
                x["rollback_of"].as_u64(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        [
            (1, "superseded".into(), None),
            (2, "superseded".into(), None),
            (3, "current".into(), Some(1))
        ]
    );
    let admin = admin_records(&v);
    let d1 = &first.policy_digest;
    let d2 = digest_of(&v, "default@2");
    assert!(
        admin.iter().any(|r| r.contains("default@2")
            && r.contains(&format!("replacing default@1 (sha256:{d1})"))
            && r.contains(&format!("sha256:{d2}"))
            && r.contains("kernel 6.12 rollout")
            && r.contains("test-operator")),
        "{admin:#?}"
    );
    assert!(
        admin.iter().any(|r| r.contains("default@3")
            && r.contains("rolling back to version 1")
            && r.contains(&format!("replacing default@2 (sha256:{d2})"))
            && r.contains("bad image")),
        "{admin:#?}"
    );
    // Every verdict is reverified under the version it names.
    let h = json(&cli(
        &v,
        &["history", "--node", "node-apply", "--output", "json"],
        0,
    ));
    for r in h.as_array().unwrap() {
        let seq = r["seq"].as_u64().unwrap().to_string();
        let o = cli(&v, &["audit", "reverify", &seq], 0);
        assert!(text(&o).contains("same verdict"), "{}", text(&o));
    }
    // `policy explain` and `fleet` name the version of the node's standing.
    let o = cli(&v, &["policy", "explain", "node-apply"], 0);
    assert!(stdout(&o).contains("policy default@3"), "{}", text(&o));
    let o = cli(&v, &["fleet"], 0);
    assert!(stdout(&o).contains("default@3"), "{}", text(&o));
}

#[tokio::test(flavor = "current_thread")]
async fn alongside_passes_old_and_new_kernels_during_a_rollout_and_retire_ends_it() {
    let v = VerifierProc::start(&VerifierOpts::new(policy("fleet", ZERO, ""))).unwrap();
    let old = Node::new("node-old-kernel");
    let new = Node::new("node-new-kernel");
    old.enroll(&v).await;
    new.enroll(&v).await;
    new.tpm
        .tpm2("tpm2_pcrextend", &[&format!("16:sha256={NEW_KERNEL}")])
        .unwrap();
    assert_eq!(failed(&attest(&new, &v).await), ["pcr.sha256.16"]);

    let dir = tempfile::tempdir().unwrap();
    // The next version also judges PCR 23 (reset value on swtpm): the
    // challenge asks for what both versions judge.
    let next = write(
        dir.path(),
        "next.toml",
        &policy("fleet", &extended(), &format!("23 = \"{ZERO}\"\n")),
    );
    let o = cli(
        &v,
        &[
            "policy",
            "apply",
            next.to_str().unwrap(),
            "--name",
            "default",
            "--alongside",
        ],
        0,
    );
    assert!(stdout(&o).contains("default@2 (alongside)"), "{}", text(&o));
    assert!(
        stdout(&o).contains("default@1 stays current"),
        "{}",
        text(&o)
    );
    let chal = challenge(&old, &v, &old.id).await;
    assert_eq!(chal.pcrs_sha256, [16, 23]);

    let o_v = attest(&old, &v).await;
    let n_v = attest(&new, &v).await;
    assert!(
        o_v.passed && n_v.passed,
        "{:?} {:?}",
        failed(&o_v),
        failed(&n_v)
    );
    assert_eq!(
        o_v.policy_version, 1,
        "the old kernel passes under the current version"
    );
    assert_eq!(
        n_v.policy_version, 2,
        "the new kernel passes under the next"
    );

    let o = cli(
        &v,
        &["policy", "retire", "default@1", "--reason", "rollout done"],
        0,
    );
    assert!(stdout(&o).contains("default@2 is current"), "{}", text(&o));
    let o_v = attest(&old, &v).await;
    let n_v = attest(&new, &v).await;
    assert_eq!(failed(&o_v), ["pcr.sha256.16"]);
    assert_eq!(o_v.policy_version, 2);
    assert!(n_v.passed, "{:?}", failed(&n_v));
    // The last accepted version cannot be retired.
    let o = cli(&v, &["policy", "retire", "default@2"], 2);
    assert!(text(&o).contains("only accepted version"), "{}", text(&o));
    assert!(admin_records(&v)
        .iter()
        .any(|r| r.contains("default@1") && r.contains("retired") && r.contains("rollout done")));
}

#[tokio::test(flavor = "current_thread")]
async fn the_dry_run_predicts_per_node_what_apply_then_produces_and_writes_nothing() {
    let mut opts = VerifierOpts::new(policy("fleet", ZERO, ""));
    opts.config = Some(LIMITS.into());
    let v = VerifierProc::start(&opts).unwrap();
    let a = Node::new("node-dry-a");
    let b = Node::new("node-dry-b");
    let never = Node::new("node-dry-never");
    for n in [&a, &b, &never] {
        n.enroll(&v).await;
    }
    b.tpm
        .tpm2("tpm2_pcrextend", &[&format!("16:sha256={NEW_KERNEL}")])
        .unwrap();
    assert!(attest(&a, &v).await.passed);
    assert!(!attest(&b, &v).await.passed);

    let dir = tempfile::tempdir().unwrap();
    let candidate = write(dir.path(), "c.toml", &policy("fleet", &extended(), ""));
    let head = |v: &VerifierProc| {
        json(&cli(v, &["history", "--limit", "1", "--output", "json"], 0))[0]["seq"]
            .as_u64()
            .unwrap()
    };
    let before = head(&v);
    let o = v
        .cli(&[
            "policy",
            "test",
            candidate.to_str().unwrap(),
            "--name",
            "default",
            "--output",
            "json",
        ])
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "a node would fail: {}", text(&o));
    let dry = json(&o);
    assert_eq!(head(&v), before, "a dry run writes nothing");
    let outcome = |id: &str| {
        dry["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["node_id"] == id)
            .unwrap_or_else(|| panic!("{id} in {dry}"))
            .clone()
    };
    assert_eq!(outcome("node-dry-a")["outcome"], "fail");
    assert_eq!(outcome("node-dry-b")["outcome"], "pass");
    assert_eq!(outcome("node-dry-never")["outcome"], "no-evidence");
    assert_eq!(dry["summary"]["newly_failing"], 1);
    let text_out = v
        .cli(&[
            "policy",
            "test",
            candidate.to_str().unwrap(),
            "--name",
            "default",
        ])
        .unwrap();
    assert!(
        stdout(&text_out).contains("node-dry-a")
            && stdout(&text_out).contains("would be quarantined"),
        "{}",
        text(&text_out)
    );

    cli(
        &v,
        &[
            "policy",
            "apply",
            candidate.to_str().unwrap(),
            "--name",
            "default",
        ],
        0,
    );
    for n in [&a, &b] {
        let real = attest(n, &v).await;
        let predicted = outcome(&n.id);
        assert_eq!(
            if real.passed { "pass" } else { "fail" },
            predicted["outcome"],
            "{}",
            n.id
        );
        let predicted_claims: Vec<&str> = predicted["failed_claims"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap())
            .collect();
        assert_eq!(failed(&real), predicted_claims, "{}", n.id);
    }

    // A candidate judging a PCR the kept quotes do not cover cannot be
    // decided on kept evidence: said so, not reported as a failure.
    let wider = write(
        dir.path(),
        "w.toml",
        &policy("fleet", &extended(), &format!("23 = \"{ZERO}\"\n")),
    );
    let o = cli(
        &v,
        &[
            "policy",
            "test",
            wider.to_str().unwrap(),
            "--name",
            "default",
            "--output",
            "json",
        ],
        0,
    );
    let d = json(&o);
    let b_out = d["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node_id"] == "node-dry-b")
        .unwrap()
        .clone();
    assert_eq!(b_out["outcome"], "undetermined", "{d}");
    assert!(b_out["note"].as_str().unwrap().contains("PCR 23"), "{d}");
}

/// A minisign key pair made by the minisign CLI (unencrypted).
fn minisign_keys(dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
    let (p, s) = (
        dir.join(format!("{stem}.pub")),
        dir.join(format!("{stem}.key")),
    );
    let o = std::process::Command::new("minisign")
        .args(["-G", "-W", "-p"])
        .arg(&p)
        .arg("-s")
        .arg(&s)
        .output()
        .expect("the minisign CLI");
    assert!(o.status.success(), "{}", text(&o));
    (p, s)
}

fn sign(v: &VerifierProc, file: &Path, key: &Path) {
    let o = v
        .cli(&[
            "policy",
            "sign",
            file.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ])
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
}

#[tokio::test(flavor = "current_thread")]
async fn with_signed_policies_required_only_a_good_signature_by_a_configured_key_applies() {
    let keys = tempfile::tempdir().unwrap();
    let (ops_pub, ops_key) = minisign_keys(keys.path(), "ops");
    let (_, other_key) = minisign_keys(keys.path(), "other");
    let mut opts = VerifierOpts::new(policy("fleet", ZERO, ""));
    opts.config = Some(format!(
        "require_signed_policies = true\npolicy_signing_keys = [\"{}\"]\n",
        ops_pub.display()
    ));
    let v = VerifierProc::start(&opts).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // A signed file names the policy it is for.
    let next = write(dir.path(), "next.toml", &policy("default", &extended(), ""));
    let f = next.to_str().unwrap();

    // Unsigned: refused (exit 3), nothing applied.
    let o = cli(&v, &["policy", "apply", f, "--name", "default"], 3);
    assert!(text(&o).contains("signed policies only"), "{}", text(&o));
    // Signed by a key the verifier does not trust: refused.
    sign(&v, &next, &other_key);
    let o = cli(&v, &["policy", "apply", f, "--name", "default"], 3);
    assert!(text(&o).contains("signature refused"), "{}", text(&o));
    // Signed by the operators' key, then changed: refused.
    sign(&v, &next, &ops_key);
    let sig = std::fs::read_to_string(format!("{f}.minisig")).unwrap();
    let tampered = write(
        dir.path(),
        "tampered.toml",
        &format!("{}# one more line\n", policy("default", &extended(), "")),
    );
    std::fs::write(format!("{}.minisig", tampered.display()), &sig).unwrap();
    let o = cli(
        &v,
        &[
            "policy",
            "apply",
            tampered.to_str().unwrap(),
            "--name",
            "default",
        ],
        3,
    );
    assert!(text(&o).contains("signature refused"), "{}", text(&o));
    // Well signed, but for another policy: refused as `default`.
    let gpu = write(dir.path(), "gpu.toml", &policy("gpu", &extended(), ""));
    sign(&v, &gpu, &ops_key);
    let o = cli(
        &v,
        &[
            "policy",
            "apply",
            gpu.to_str().unwrap(),
            "--name",
            "default",
        ],
        3,
    );
    assert!(
        text(&o).contains("names policy `gpu`, not `default`"),
        "{}",
        text(&o)
    );
    let list = json(&cli(&v, &["policy", "list", "--output", "json"], 0));
    assert_eq!(list["versions"].as_array().unwrap().len(), 1, "{list}");
    // Under its own name it applies.
    cli(
        &v,
        &["policy", "apply", gpu.to_str().unwrap(), "--name", "gpu"],
        0,
    );

    // Signed by the operators' key: applied, the signature kept with the version.
    let o = cli(&v, &["policy", "apply", f, "--name", "default"], 0);
    assert!(stdout(&o).contains("signed by key"), "{}", text(&o));
    let shown = json(&cli(
        &v,
        &["policy", "show", "default@2", "--output", "json"],
        0,
    ));
    assert_eq!(shown["signature"], sig.as_str());
    let key_id = shown["version"]["signed_by"].as_str().unwrap().to_string();
    assert!(
        key_id.len() == 16 && stdout(&o).contains(&format!("signed by key {key_id}")),
        "{shown}\n{}",
        text(&o)
    );
    // Version 1 came from the --policy file unsigned: no rollback to it while
    // signatures are required.
    // The start-up named the version in force that no configured key signed.
    assert!(v.log().contains("default@1: unsigned"), "{}", v.log());
    let o = cli(&v, &["policy", "rollback", "default", "--to", "1"], 3);
    assert!(text(&o).contains("signed policies only"), "{}", text(&o));
    // An auditor reads policies but changes none.
    let (c, k) = v.client_cert("auditor", "auditor-1", None).unwrap();
    let o = v.cli_as(&["policy", "list"], Some((&c, &k))).unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = v
        .cli_as(&["policy", "apply", f, "--name", "default"], Some((&c, &k)))
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
}

#[tokio::test(flavor = "current_thread")]
async fn two_node_groups_under_two_policies_and_a_node_moved_between_them_changes_policy() {
    let mut opts = VerifierOpts::new(policy("cpu", ZERO, ""));
    opts.config = Some(
        "[join]\norchestrator = \"token\"\n[[join.groups]]\nname = \"gpu\"\nnodes = \"gpu-[0-9]+\"\norchestrator = \"token\"\n"
            .into(),
    );
    let v = VerifierProc::start(&opts).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let gpu = write(dir.path(), "gpu.toml", &policy("gpu", &extended(), ""));
    cli(
        &v,
        &["policy", "apply", gpu.to_str().unwrap(), "--name", "gpu"],
        0,
    );
    // No such group, no such policy: refused, clearly.
    let o = cli(&v, &["policy", "assign", "tpu", "gpu"], 2);
    assert!(text(&o).contains("no node group `tpu`"), "{}", text(&o));
    let o = cli(&v, &["policy", "assign", "gpu", "nonesuch"], 2);
    assert!(text(&o).contains("no policy `nonesuch`"), "{}", text(&o));
    cli(
        &v,
        &["policy", "assign", "gpu", "gpu", "--reason", "GPU image"],
        0,
    );
    assert!(
        admin_records(&v).iter().any(|r| r
            .contains("node group `gpu` uses policy `gpu` (gpu@1, sha256:")
            && r.contains("was `default` (default@1, sha256:")
            && r.contains("reason: GPU image")),
        "{:#?}",
        admin_records(&v)
    );
    // Label groups follow the inventory's label rules.
    cli(&v, &["policy", "assign", "label:class=gpu", "gpu"], 0);
    let o = cli(&v, &["policy", "assign", "label:bad key=x", "gpu"], 2);
    assert!(text(&o).contains("label key"), "{}", text(&o));
    cli(&v, &["policy", "assign", "label:class=gpu", "default"], 0);

    // Both boot the "GPU image" (PCR 16 extended).
    let g = Node::new("gpu-1");
    let c = Node::new("cpu-1");
    for n in [&g, &c] {
        n.enroll(&v).await;
        n.tpm
            .tpm2("tpm2_pcrextend", &[&format!("16:sha256={NEW_KERNEL}")])
            .unwrap();
    }
    let gv = attest(&g, &v).await;
    assert!(gv.passed, "{:?}", failed(&gv));
    assert_eq!((gv.policy_name.as_str(), gv.policy_version), ("gpu", 1));
    let cv = attest(&c, &v).await;
    assert_eq!(failed(&cv), ["pcr.sha256.16"]);
    assert_eq!(cv.policy_name, "default");

    // gpu-1 renamed out of the gpu group: judged under `default` now.
    cli(&v, &["node", "move", "gpu-1", "cpu-2"], 0);
    let chal = challenge(&g, &v, "cpu-2").await;
    let mut req = g.quote_for(&chal.nonce, &chal.pcrs_sha256);
    req.node_id = "cpu-2".into();
    let moved = g.send(&v, req).await.verdict.unwrap();
    assert_eq!(moved.policy_name, "default");
    assert_eq!(failed(&moved), ["pcr.sha256.16"]);

    let list = stdout(&cli(&v, &["policy", "list"], 0));
    assert!(list.contains("gpu → gpu"), "{list}");
    // Back to default: the group's nodes follow.
    cli(&v, &["policy", "assign", "gpu", "default"], 0);
    let g2 = Node::new("gpu-2");
    g2.enroll(&v).await;
    assert_eq!(attest(&g2, &v).await.policy_name, "default");
}

/// Replica A and replica B of one verifier on database `db`.
fn two_replicas(db: &PgDb, pcr16: &str) -> (VerifierProc, VerifierProc) {
    let mut opts = VerifierOpts::new(policy("replicas", pcr16, ""));
    opts.config = Some(format!("{LIMITS}{}", db.storage_toml()));
    let a = VerifierProc::start(&opts).expect("replica A");
    let b = a.replica().expect("replica B");
    (a, b)
}

#[tokio::test(flavor = "current_thread")]
async fn an_apply_at_one_replica_is_in_force_at_the_other_within_a_second_on_postgresql() {
    let db = PgDb::new().expect("PostgreSQL");
    let (a, b) = two_replicas(&db, ZERO);
    let n = Node::new("node-replicated");
    n.enroll(&a).await;
    assert!(attest(&n, &b).await.passed);

    // The next version also judges PCR 23: B's challenges show when B has it.
    let dir = tempfile::tempdir().unwrap();
    let next = write(
        dir.path(),
        "next.toml",
        &policy("replicas", ZERO, &format!("23 = \"{ZERO}\"\n")),
    );
    let mut c = n.client(&b).await;
    let mut times = Vec::new();
    for round in 0..3 {
        let body = policy(
            "replicas",
            ZERO,
            &format!("23 = \"{ZERO}\"\n# round {round}\n"),
        );
        std::fs::write(
            &next,
            if round % 2 == 0 {
                body
            } else {
                policy("replicas", ZERO, "")
            },
        )
        .unwrap();
        let want: &[u32] = if round % 2 == 0 { &[16, 23] } else { &[16] };
        cli(
            &a,
            &[
                "policy",
                "apply",
                next.to_str().unwrap(),
                "--name",
                "default",
            ],
            0,
        );
        let applied = Instant::now();
        loop {
            let chal = c
                .challenge(pb::ChallengeRequest {
                    node_id: n.id.clone(),
                })
                .await
                .unwrap()
                .into_inner();
            if chal.pcrs_sha256 == want {
                times.push(applied.elapsed());
                break;
            }
            assert!(
                applied.elapsed() < Duration::from_secs(1),
                "not in force at B within a second: {:?}\nB: {}",
                chal.pcrs_sha256,
                b.log()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    println!("apply at A to effect at B: {times:?}");
    let v = attest(&n, &b).await;
    assert!(v.passed, "{:?}", failed(&v));
    assert_eq!(v.policy_version, 4);

    // A failing version applied at B is in force at A for the next verdict.
    std::fs::write(&next, policy("replicas", &extended(), "")).unwrap();
    cli(
        &b,
        &[
            "policy",
            "apply",
            next.to_str().unwrap(),
            "--name",
            "default",
        ],
        0,
    );
    std::thread::sleep(Duration::from_millis(600));
    let v = attest(&n, &a).await;
    assert_eq!(failed(&v), ["pcr.sha256.16"]);
    assert_eq!(v.policy_version, 5);
}

#[tokio::test(flavor = "current_thread")]
async fn two_replicas_applying_to_one_name_at_once_keep_every_version_in_order() {
    let db = PgDb::new().expect("PostgreSQL");
    let (a, b) = two_replicas(&db, ZERO);
    let dir = tempfile::tempdir().unwrap();
    const EACH: usize = 6;
    let mut files = Vec::new();
    for (r, _) in [(&a, 'a'), (&b, 'b')].iter().enumerate() {
        for i in 0..EACH {
            let body = format!(
                "schema = 0\nname = \"replicas\"\ndescription = \"replica {r} apply {i}\"\n[pcrs.sha256]\n16 = \"{ZERO}\"\n"
            );
            files.push(write(dir.path(), &format!("p-{r}-{i}.toml"), &body));
        }
    }
    let (fa, fb) = files.split_at(EACH);
    std::thread::scope(|s| {
        for (v, fs) in [(&a, fa), (&b, fb)] {
            s.spawn(move || {
                for f in fs {
                    cli(
                        v,
                        &["policy", "apply", f.to_str().unwrap(), "--name", "default"],
                        0,
                    );
                }
            });
        }
    });
    let list = json(&cli(
        &a,
        &["policy", "list", "default", "--output", "json"],
        0,
    ));
    let versions = list["versions"].as_array().unwrap();
    let numbers: Vec<u64> = versions
        .iter()
        .map(|x| x["version"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, (1..=(2 * EACH as u64 + 1)).collect::<Vec<_>>());
    let mut digests: Vec<String> = versions[1..]
        .iter()
        .map(|x| x["digest"].as_str().unwrap().to_string())
        .collect();
    digests.sort();
    digests.dedup();
    assert_eq!(digests.len(), 2 * EACH, "every apply kept");
    let current: Vec<&serde_json::Value> = versions
        .iter()
        .filter(|x| x["status"] == "current")
        .collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0]["version"].as_u64(), Some(2 * EACH as u64 + 1));
    // Each apply is one ADMIN record.
    let admin = admin_records(&a);
    assert_eq!(
        admin
            .iter()
            .filter(|r| r.contains("Policies.Apply"))
            .count(),
        2 * EACH,
        "{admin:#?}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_policy_text_tampered_in_postgresql_refuses_its_nodes_instead_of_judging_them_under_an_older_version(
) {
    let db = PgDb::new().expect("PostgreSQL");
    let (a, _b) = two_replicas(&db, ZERO);
    let n = Node::new("node-tamper");
    n.enroll(&a).await;
    let dir = tempfile::tempdir().unwrap();
    let v2 = write(
        dir.path(),
        "v2.toml",
        &policy("replicas", ZERO, "# version 2\n"),
    );
    cli(
        &a,
        &["policy", "apply", v2.to_str().unwrap(), "--name", "default"],
        0,
    );
    assert_eq!(attest(&n, &a).await.policy_version, 2);
    // Someone with database access swaps version 2's text (it would now pass
    // a node with PCR 16 extended) and moves the epoch so replicas reload.
    let digest = digest_of(&a, "default@2");
    let forged = policy("replicas", &extended(), "");
    db.psql(&format!(
        "UPDATE policies SET text = '{forged}' WHERE digest = '{digest}'; \
         UPDATE policy_epoch SET epoch = epoch + 1"
    ))
    .unwrap();
    let mut c = n.client(&a).await;
    let start = Instant::now();
    let refused = loop {
        match c
            .challenge(pb::ChallengeRequest {
                node_id: n.id.clone(),
            })
            .await
        {
            Err(s) => break s,
            Ok(_) => {
                assert!(
                    start.elapsed() < Duration::from_secs(2),
                    "still served: {}",
                    a.log()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    assert!(
        refused.message().contains("cannot be loaded")
            && refused.message().contains("does not hash"),
        "{refused:?}"
    );
    // A good version applied by an operator ends it.
    let v3 = write(
        dir.path(),
        "v3.toml",
        &policy("replicas", ZERO, "# version 3\n"),
    );
    cli(
        &a,
        &["policy", "apply", v3.to_str().unwrap(), "--name", "default"],
        0,
    );
    assert!(attest(&n, &a).await.passed);
}
