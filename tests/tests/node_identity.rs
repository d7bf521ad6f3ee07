//! Node identity with real swtpm TPMs, the real attestor and verifier
//! binaries: one EK holds one node id, a node id held by one EK cannot be
//! taken by another, the attestor keeps its node id in its state dir, and a
//! re-enrollment keeps the rollback baseline.

use std::path::Path;
use std::process::Output;

use assay_tests::{attestor, Swtpm, VerifierOpts, VerifierProc};

/// PCRs 0 and 16 at their reset value (all zeros) on a fresh swtpm.
fn policy() -> String {
    let zero = "0".repeat(64);
    format!("schema = 0\nname = \"identity\"\n[pcrs.sha256]\n0 = \"{zero}\"\n16 = \"{zero}\"\n")
}

fn text(o: &Output) -> String {
    assay_tests::output_text(o)
}

fn join(tpm: &Swtpm, v: &VerifierProc, state: &Path, id: &str, extra: &[&str]) -> Output {
    attestor(tpm, v, state, id, "join", extra).unwrap()
}

fn history(v: &VerifierProc, node: &str) -> Vec<serde_json::Value> {
    let h = v.cli(&["history", "--node", node, "--json"]).unwrap();
    assert!(h.status.success(), "{}", text(&h));
    serde_json::from_slice::<serde_json::Value>(&h.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn one_ek_holds_one_node_id_and_node_move_renames_it() {
    let v = VerifierProc::start(&VerifierOpts::new(policy())).unwrap();
    let tpm = Swtpm::start().unwrap();
    let state = tempfile::tempdir().unwrap();
    let first = join(&tpm, &v, state.path(), "node-a", &["--output", "json"]);
    assert_eq!(
        first.status.code(),
        Some(0),
        "{}\n{}",
        text(&first),
        v.log()
    );

    // The same TPM with a fresh state dir (or a second attestor) under another
    // id: refused by the verifier, naming the id the EK holds.
    let other_state = tempfile::tempdir().unwrap();
    let second = join(&tpm, &v, other_state.path(), "node-a2", &[]);
    assert_eq!(second.status.code(), Some(3), "{}", text(&second));
    let msg = text(&second);
    assert!(
        msg.contains("enrolled as node `node-a`") && msg.contains("node move node-a node-a2"),
        "{msg}"
    );
    // The attestor's own state dir keeps its id: another --node-id is refused
    // before anything is sent (exit 2), and --rename alone does not get past
    // the verifier.
    let renamed = join(&tpm, &v, state.path(), "node-a2", &[]);
    assert_eq!(renamed.status.code(), Some(2), "{}", text(&renamed));
    assert!(
        text(&renamed).contains("holds node `node-a`"),
        "{}",
        text(&renamed)
    );
    let forced = join(&tpm, &v, state.path(), "node-a2", &["--rename"]);
    assert_eq!(forced.status.code(), Some(3), "{}", text(&forced));
    // No token was issued under the second id.
    assert!(history(&v, "node-a2").is_empty());

    // `attest` without --node-id acts as the node the state dir holds.
    let bin = assay_tests::bin("assay-attestor").unwrap();
    let kept = std::process::Command::new(bin)
        .args(["attest", "--output", "json", "--verifier", &v.url, "--ca"])
        .arg(&v.ca_pem)
        .args(["--tcti", &tpm.tcti(), "--state-dir"])
        .arg(state.path())
        .env("ASSAY_CEL_LOG", state.path().join("measurements.cel"))
        .env_remove("ASSAY_NODE_ID")
        .output()
        .unwrap();
    assert_eq!(kept.status.code(), Some(0), "{}", text(&kept));
    let j: serde_json::Value = serde_json::from_slice(&kept.stdout).unwrap();
    assert_eq!(j["node_id"], "node-a", "{j}");

    // The operator's way: `node move` (through the API, an ADMIN record
    // under both ids), then the node renames itself.
    let mv = v.cli(&["node", "move", "node-a", "node-a2"]).unwrap();
    assert!(mv.status.success(), "{}", text(&mv));
    for id in ["node-a", "node-a2"] {
        let h = history(&v, id);
        let last = &h[0];
        assert_eq!(last["kind"], "admin", "{id}: {last}");
        let actual = last["details"][0]["actual"].as_str().unwrap();
        assert!(
            actual.contains("renamed node node-a to node-a2") && actual.contains("test-operator"),
            "{actual}"
        );
    }
    let moved = join(
        &tpm,
        &v,
        state.path(),
        "node-a2",
        &["--rename", "--output", "json"],
    );
    assert_eq!(
        moved.status.code(),
        Some(0),
        "{}\n{}",
        text(&moved),
        v.log()
    );
    let j: serde_json::Value = serde_json::from_slice(&moved.stdout).unwrap();
    assert_eq!(j["trusted"], true, "{j}");
    assert!(j["token"].is_string(), "{j}");
    // Now the old name is free of this EK, and the new one is kept.
    let again = join(&tpm, &v, state.path(), "node-a", &[]);
    assert_eq!(again.status.code(), Some(2), "{}", text(&again));
}

#[test]
fn another_genuine_tpm_cannot_take_an_enrolled_node_id() {
    let v = VerifierProc::start(&VerifierOpts::new(policy())).unwrap();
    let owner = Swtpm::start().unwrap();
    let owner_state = tempfile::tempdir().unwrap();
    let ok = join(&owner, &v, owner_state.path(), "node-b", &[]);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok));
    // A second TPM whose EK certificate chains to the same trusted CA.
    let thief = Swtpm::start().unwrap();
    let thief_state = tempfile::tempdir().unwrap();
    let stolen = join(&thief, &v, thief_state.path(), "node-b", &[]);
    assert_eq!(stolen.status.code(), Some(3), "{}", text(&stolen));
    assert!(
        text(&stolen).contains("already enrolled with a different EK"),
        "{}",
        text(&stolen)
    );
    // The owner still attests.
    let still = join(&owner, &v, owner_state.path(), "node-b", &[]);
    assert_eq!(still.status.code(), Some(0), "{}", text(&still));
}

/// The TPM state is copied after a pass, the node attests on (rebooting, so
/// its resetCount grows), the copy is restored, and the attestor, its state
/// lost, enrolls again with a new AK: the verifier kept the node's rollback
/// baseline across the re-enrollment and the verdict fails the clock claim.
#[test]
fn restoring_an_older_tpm_state_and_re_enrolling_is_caught_as_a_rollback() {
    let v = VerifierProc::start(&VerifierOpts::new(policy())).unwrap();
    let tpm = Swtpm::start().unwrap();
    let state = tempfile::tempdir().unwrap();
    let ok = join(&tpm, &v, state.path(), "node-r", &[]);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok));

    tpm.reboot().unwrap();
    let saved = tempfile::tempdir().unwrap();
    copy_dir(tpm.state_dir(), saved.path());
    for _ in 0..2 {
        tpm.reboot().unwrap();
    }
    let later = join(&tpm, &v, state.path(), "node-r", &[]);
    assert_eq!(later.status.code(), Some(0), "{}", text(&later));

    // Restore the older TPM state; swtpm reloads it at the next init.
    copy_dir(saved.path(), tpm.state_dir());
    tpm.reboot().unwrap();
    // The attestor lost its state: a new AK, a new enrollment of the same EK.
    let fresh = tempfile::tempdir().unwrap();
    let replay = join(&tpm, &v, fresh.path(), "node-r", &["--output", "json"]);
    assert_ne!(replay.status.code(), Some(0), "{}", text(&replay));
    let j: serde_json::Value = serde_json::from_slice(&replay.stdout).unwrap();
    assert_eq!(j["trusted"], false, "{j}");
    let failed: Vec<String> = j["claims"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["passed"] == false)
        .map(|c| format!("{} {}", c["id"], c["actual"]))
        .collect();
    assert!(
        failed.iter().any(|c| c.contains("rolled back")),
        "{failed:?}\n{j}"
    );

    // The re-enrollment is its own history record.
    let recs = history(&v, "node-r");
    let enrolls: Vec<&serde_json::Value> =
        recs.iter().filter(|r| r["verdict"] == "ENROLL").collect();
    assert_eq!(enrolls.len(), 1, "{recs:?}");
    assert!(
        enrolls[0].to_string().contains("re-enrolled"),
        "{enrolls:?}"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}
