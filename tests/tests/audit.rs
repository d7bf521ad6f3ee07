//! Tamper evidence, for real: a real verifier records verdicts of a real
//! attestor on swtpm and signs checkpoints; the history is exported by an
//! auditor and re-checked offline; then records are edited, deleted,
//! reordered and rewritten — in the export file and directly in the
//! verifier's sled database or PostgreSQL — and `audit verify` names the
//! record each time.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use assay_tests::{attestor, PgDb, Swtpm, VerifierOpts, VerifierProc};
use assay_verifier::store::HistoryRecord;

const ZERO: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn verify(args: &[&str]) -> Output {
    std::process::Command::new(assay_tests::bin("assay-verifier").unwrap())
        .args(["audit", "verify"])
        .args(args)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

/// A copy of the verifier's data directory with `tamper` applied to its history tree.
fn tampered(data: &Path, scratch: &Path, name: &str, tamper: impl FnOnce(&sled::Tree)) -> PathBuf {
    let dir = scratch.join(name);
    copy_dir(data, &dir);
    {
        let db = sled::open(dir.join("db")).unwrap();
        let t = db.open_tree("history").unwrap();
        tamper(&t);
        db.flush().unwrap();
    }
    dir
}

fn get(t: &sled::Tree, seq: u64) -> HistoryRecord {
    serde_json::from_slice(&t.get(seq.to_be_bytes()).unwrap().unwrap()).unwrap()
}

fn put(t: &sled::Tree, seq: u64, r: &HistoryRecord) {
    t.insert(seq.to_be_bytes(), serde_json::to_vec(r).unwrap())
        .unwrap();
}

/// A verifier (with `storage`, extra config) holding 8 records: the policy
/// coming into force, six passes of one node, then its failure (PCR 16
/// extended); a checkpoint covers the head.
fn eight_records(storage: &str) -> (VerifierProc, Swtpm) {
    let mut opts = VerifierOpts::new(format!(
        "schema = 0\nname = \"audit\"\n[pcrs.sha256]\n16 = \"{ZERO}\"\n"
    ));
    opts.config = Some(format!("checkpoint_interval_secs = 1\n{storage}"));
    let v = VerifierProc::start(&opts).unwrap();
    let tpm = Swtpm::start().unwrap();
    let state = tempfile::tempdir().unwrap();
    for _ in 0..6 {
        let out = attestor(&tpm, &v, state.path(), "node-audit", "join", &[]).unwrap();
        assert_eq!(out.status.code(), Some(0));
    }
    tpm.tpm2(
        "tpm2_pcrextend",
        &[&format!("16:sha256={}", "cd".repeat(32))],
    )
    .unwrap();
    let out = attestor(&tpm, &v, state.path(), "node-audit", "join", &[]).unwrap();
    assert_eq!(out.status.code(), Some(3));
    // Let a checkpoint cover the head.
    std::thread::sleep(Duration::from_millis(2500));
    (v, tpm)
}

#[test]
fn audit_verify_names_records_tampered_directly_in_postgresql() {
    let db = PgDb::new().expect("PostgreSQL");
    let (mut v, _tpm) = eight_records(&db.storage_toml());
    let scratch = tempfile::tempdir().unwrap();
    let jwks = scratch.path().join("jwks.json");
    std::fs::write(&jwks, v.cli(&["token", "jwks"]).unwrap().stdout).unwrap();
    let j = jwks.to_str().unwrap();
    v.kill();
    let out = verify(&["--postgres", &db.url, "--jwks", j]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("8 records") && stdout(&out).contains("signed through record 8"),
        "{}",
        stdout(&out)
    );
    for (name, sql, expect) in [
        (
            "edit",
            "UPDATE history SET record = replace(record, '\"node_id\":\"node-audit\"', \
             '\"node_id\":\"someone-else\"') WHERE seq = 3",
            "BROKEN at record 3",
        ),
        (
            "delete",
            "DELETE FROM history WHERE seq = 5",
            "BROKEN at record 5",
        ),
        (
            "reorder",
            "UPDATE history SET seq = -2 WHERE seq = 2; UPDATE history SET seq = 2 WHERE seq = 4; \
             UPDATE history SET seq = 4 WHERE seq = -2",
            "BROKEN at record 2",
        ),
        (
            "truncate",
            "DELETE FROM history WHERE seq = 8",
            "removed from the end",
        ),
    ] {
        let copy = db.copy().unwrap();
        assert!(
            !copy
                .psql(&format!("{sql} RETURNING seq"))
                .unwrap()
                .is_empty(),
            "{name}: no row changed"
        );
        let out = verify(&["--postgres", &copy.url, "--jwks", j]);
        assert_eq!(out.status.code(), Some(1), "{name}: {}", stdout(&out));
        assert!(stdout(&out).contains(expect), "{name}: {}", stdout(&out));
    }
}

#[test]
fn audit_verify_names_edited_deleted_reordered_and_rewritten_records() {
    let (mut v, _tpm) = eight_records("");

    // The auditor's queries: filters, paging, JSON lines, the fleet at a moment.
    let q = |args: &[&str]| -> Vec<serde_json::Value> {
        let mut a = vec!["history", "--output", "jsonl"];
        a.extend_from_slice(args);
        let out = v.cli(&a).unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout(&out)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let fails = q(&["--verdict", "fail"]);
    assert_eq!(fails.len(), 1);
    assert_eq!(
        fails[0]["seq"], 8,
        "record 1 is the policy coming into force"
    );
    assert_eq!(q(&["--failed-claim", "pcr.sha256.16"]).len(), 1);
    assert_eq!(q(&["--verdict", "pass", "--node", "node-audit"]).len(), 6);
    assert!(q(&["--node", "someone-else"]).is_empty());
    let t7 = fails[0]["time_unix"].as_i64().unwrap();
    assert!(q(&["--from-unix", &(t7 + 1).to_string()]).is_empty());
    let page1 = q(&["--limit", "4"]);
    let page2 = q(&["--limit", "4", "--before-seq", "5"]);
    assert_eq!(
        page1
            .iter()
            .chain(&page2)
            .map(|r| r["seq"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        vec![8, 7, 6, 5, 4, 3, 2, 1]
    );
    let out = v.cli(&["history", "--limit", "4"]).unwrap();
    assert!(
        stdout(&out).contains("next page: --before-seq 5"),
        "{}",
        stdout(&out)
    );
    let out = v.cli(&["history", "--verdict", "maybe"]).unwrap();
    assert!(!out.status.success());
    let fleet = |at: i64| -> serde_json::Value {
        let out = v
            .cli(&["fleet", "--at-unix", &at.to_string(), "--output", "json"])
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    assert_eq!(fleet(t7)[0]["state"], "fail");
    assert_eq!(fleet(t7 - 3600)[0]["state"], "unknown");

    // The kept evidence reproduces the recorded verdicts.
    for seq in ["2", "8"] {
        let out = v.cli(&["audit", "reverify", seq]).unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}{}",
            stdout(&out),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout(&out).contains("same verdict"), "{}", stdout(&out));
    }
    let out = v.cli(&["audit", "reverify", "1", "--json"]).unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a verdict"));

    // The auditor exports and verifies, pinning the JWKS fetched apart.
    let scratch = tempfile::tempdir().unwrap();
    let export = scratch.path().join("history.jsonl");
    let jwks = scratch.path().join("jwks.json");
    std::fs::write(&jwks, v.cli(&["token", "jwks"]).unwrap().stdout).unwrap();
    let auditor = v.client_cert("auditor", "auditor", None).unwrap();
    let out = v
        .cli_as(
            &["audit", "export", "--out", export.to_str().unwrap()],
            Some((&auditor.0, &auditor.1)),
        )
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout(&out).contains("wrote 8 records"), "{}", stdout(&out));
    let j = jwks.to_str().unwrap();
    let e = export.to_str().unwrap();
    let out = verify(&["--from-export", e, "--jwks", j]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).contains("intact"));
    assert!(
        stdout(&out).contains("signed through record 8"),
        "{}",
        stdout(&out)
    );

    // In the export file: a FAIL turned PASS, a record dropped.
    let text = std::fs::read_to_string(&export).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let edited: Vec<String> = lines
        .iter()
        .map(|l| {
            if l.contains("\"seq\":8") && l.contains("\"type\":\"record\"") {
                l.replace("\"passed\":false", "\"passed\":true")
            } else {
                l.to_string()
            }
        })
        .collect();
    assert_ne!(edited.join("\n"), lines.join("\n"));
    let f = scratch.path().join("edited.jsonl");
    std::fs::write(&f, edited.join("\n")).unwrap();
    let out = verify(&["--from-export", f.to_str().unwrap(), "--jwks", j]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("BROKEN at record 8"),
        "{}",
        stdout(&out)
    );
    let dropped: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| !(l.contains("\"type\":\"record\"") && l.contains("\"seq\":4,")))
        .collect();
    let f = scratch.path().join("dropped.jsonl");
    std::fs::write(&f, dropped.join("\n")).unwrap();
    let out = verify(&["--from-export", f.to_str().unwrap(), "--jwks", j]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("BROKEN at record 4") && stdout(&out).contains("missing"),
        "{}",
        stdout(&out)
    );
    // Truncated or garbage files are clear errors.
    let f = scratch.path().join("garbage.jsonl");
    std::fs::write(&f, "{\"type\":\"jwks\",\"jwks\":{}}\n{not json").unwrap();
    let out = verify(&["--from-export", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 2"));

    // Directly in sled, the verifier stopped.
    v.kill();
    let data = v.data_dir.clone();
    let out = verify(&["--data-dir", data.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));

    let d = tampered(&data, scratch.path(), "edit", |t| {
        let mut r = get(t, 3);
        r.node_id = "someone-else".into();
        put(t, 3, &r);
    });
    let out = verify(&["--data-dir", d.to_str().unwrap()]);
    assert!(
        stdout(&out).contains("BROKEN at record 3"),
        "{}",
        stdout(&out)
    );

    let d = tampered(&data, scratch.path(), "delete", |t| {
        t.remove(5u64.to_be_bytes()).unwrap();
    });
    let out = verify(&["--data-dir", d.to_str().unwrap()]);
    assert!(
        stdout(&out).contains("BROKEN at record 5"),
        "{}",
        stdout(&out)
    );

    let d = tampered(&data, scratch.path(), "reorder", |t| {
        let (a, b) = (get(t, 2), get(t, 4));
        put(t, 2, &b);
        put(t, 4, &a);
    });
    let out = verify(&["--data-dir", d.to_str().unwrap()]);
    assert!(
        stdout(&out).contains("BROKEN at record 2"),
        "{}",
        stdout(&out)
    );

    let d = tampered(&data, scratch.path(), "truncate", |t| {
        t.remove(8u64.to_be_bytes()).unwrap();
    });
    let out = verify(&["--data-dir", d.to_str().unwrap()]);
    assert!(
        stdout(&out).contains("BROKEN at record 8")
            && stdout(&out).contains("removed from the end"),
        "{}",
        stdout(&out)
    );

    // The failed verdict rewritten as a pass and every later hash recomputed:
    // the links hold, the signed checkpoint does not.
    let d = tampered(&data, scratch.path(), "rewrite", |t| {
        let mut r = get(t, 8);
        r.passed = true;
        r.claims.iter_mut().for_each(|c| c.passed = true);
        put(t, 8, &r);
    });
    let out = verify(&["--data-dir", d.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("BROKEN at record 8") && stdout(&out).contains("rewritten"),
        "{}",
        stdout(&out)
    );

    // The same rewrite in the verifier's own store: once it runs again,
    // re-running the core on the kept evidence contradicts the record.
    {
        let db = sled::open(data.join("db")).unwrap();
        let t = db.open_tree("history").unwrap();
        let mut r = get(&t, 8);
        r.passed = true;
        r.claims.iter_mut().for_each(|c| c.passed = true);
        put(&t, 8, &r);
        db.flush().unwrap();
    }
    v.restart().unwrap();
    let out = v.cli(&["audit", "reverify", "8"]).unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("recorded PASS, reverified FAIL")
            && stdout(&out).contains("DIFFERS: claim pcr.sha256.16"),
        "{}",
        stdout(&out)
    );
}
