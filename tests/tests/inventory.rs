//! Enrollment mode `inventory` with real swtpm TPMs, the real attestor and
//! verifier binaries and tpm2-tools as oracle for the EK hashes: only
//! registered EKs enroll, each under its own id; a TPM without an EK
//! certificate enrolls by its registered public area; `node add | import |
//! list | show | remove | move` go through the operator-role API, leave
//! ADMIN records, and are seen at once by a PostgreSQL replica.

use std::path::{Path, PathBuf};
use std::process::Output;

use assay_tests::{attestor, PgDb, Swtpm, VerifierOpts, VerifierProc};
use sha2::{Digest, Sha256};

fn policy() -> String {
    let zero = "0".repeat(64);
    format!("schema = 0\nname = \"inventory\"\n[pcrs.sha256]\n0 = \"{zero}\"\n16 = \"{zero}\"\n")
}

fn inventory_opts(extra: &str) -> VerifierOpts {
    let mut o = VerifierOpts::new(policy());
    o.config = Some(format!("{extra}\n[enrollment]\nmode = \"inventory\"\n"));
    o
}

fn text(o: &Output) -> String {
    assay_tests::output_text(o)
}

fn ok(o: Output) -> String {
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn join(tpm: &Swtpm, v: &VerifierProc, state: &Path, id: &str, extra: &[&str]) -> Output {
    attestor(tpm, v, state, id, "join", extra).unwrap()
}

/// The EK certificate in NV, read by tpm2-tools (DER).
fn nv_ek_certificate(tpm: &Swtpm) -> Vec<u8> {
    tpm.tpm2("tpm2_nvread", &["0x1c00002"]).unwrap()
}

/// What `assay-attestor ek --output json` prints.
fn ek_json(tpm: &Swtpm, v: &VerifierProc, state: &Path) -> serde_json::Value {
    let out = ok(attestor(tpm, v, state, "x", "ek", &["--output", "json"]).unwrap());
    serde_json::from_str(&out).unwrap()
}

fn history(v: &VerifierProc, node: &str) -> Vec<serde_json::Value> {
    let out = ok(v.cli(&["history", "--node", node, "--json"]).unwrap());
    serde_json::from_str::<serde_json::Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn show(v: &VerifierProc, node: &str) -> serde_json::Value {
    serde_json::from_str(&ok(v.cli(&["node", "show", node, "--json"]).unwrap())).unwrap()
}

#[test]
fn inventory_mode_enrolls_a_registered_ek_only_under_its_own_id() {
    let v = VerifierProc::start(&inventory_opts("")).unwrap();
    let tpm = Swtpm::start().unwrap();
    let state = tempfile::tempdir().unwrap();
    let der = nv_ek_certificate(&tpm);
    let cert_sha256 = hex::encode(Sha256::digest(&der));
    assert_eq!(
        ek_json(&tpm, &v, state.path())["ek_cert_sha256"],
        cert_sha256
    );

    // Unknown: refused (exit 3), and the message names the hash to register.
    let refused = join(&tpm, &v, state.path(), "node-a", &[]);
    assert_eq!(refused.status.code(), Some(3), "{}", text(&refused));
    assert!(
        text(&refused).contains(&format!("node add node-a --ek-sha256 {cert_sha256}")),
        "{}",
        text(&refused)
    );

    // Only the operator registers: an auditor may read, not add.
    let (apem, akey) = v.client_cert("auditor", "inv-auditor", None).unwrap();
    let ek_file = state.path().join("ek.der");
    std::fs::write(&ek_file, &der).unwrap();
    let ek_arg = ek_file.display().to_string();
    let add = [
        "node",
        "add",
        "node-a",
        "--ek-cert",
        &ek_arg,
        "--label",
        "rack=r1",
    ];
    let denied = v.cli_as(&add, Some((&apem, &akey))).unwrap();
    assert_eq!(denied.status.code(), Some(3), "{}", text(&denied));
    ok(v.cli(&add).unwrap());
    let listed = ok(v
        .cli_as(&["node", "list", "--output", "json"], Some((&apem, &akey)))
        .unwrap());
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed[0]["node_id"], "node-a", "{listed}");
    assert_eq!(listed[0]["registered"], true);
    assert_eq!(listed[0]["enrolled"], false);
    // The ADMIN record names the operator and the EK certificate's subject.
    let h = history(&v, "node-a");
    let actual = h[0]["details"][0]["actual"].as_str().unwrap().to_string();
    assert_eq!(h[0]["kind"], "admin");
    assert!(
        actual.contains(&format!("registered EK certificate sha256:{cert_sha256}"))
            && actual.contains("subject")
            && actual.contains("rack=r1")
            && actual.contains("test-operator"),
        "{actual}"
    );

    // Registered as node-a: another id is refused, naming the registered one.
    let other = tempfile::tempdir().unwrap();
    let wrong = join(&tpm, &v, other.path(), "node-b", &[]);
    assert_eq!(wrong.status.code(), Some(3), "{}", text(&wrong));
    assert!(
        text(&wrong).contains("registered as node `node-a`"),
        "{}",
        text(&wrong)
    );
    let joined = join(&tpm, &v, state.path(), "node-a", &["--output", "json"]);
    assert_eq!(
        joined.status.code(),
        Some(0),
        "{}\n{}",
        text(&joined),
        v.log()
    );
    let n = show(&v, "node-a");
    assert_eq!(n["enrolled"], true, "{n}");
    assert_eq!(n["ek_sha256"], cert_sha256);
    assert_eq!(n["registration"]["labels"]["rack"], "r1");

    // A rename moves registration and enrollment: the new id attests, the old is free.
    ok(v.cli(&["node", "move", "node-a", "node-z"]).unwrap());
    let moved = join(&tpm, &v, state.path(), "node-z", &["--rename"]);
    assert_eq!(
        moved.status.code(),
        Some(0),
        "{}\n{}",
        text(&moved),
        v.log()
    );
    assert_eq!(show(&v, "node-z")["registered"], true);
    let gone = v.cli(&["node", "show", "node-a"]).unwrap();
    assert_eq!(gone.status.code(), Some(1), "{}", text(&gone));

    // Removed: registration and enrollment are gone, so the TPM cannot
    // enroll again until it is registered again.
    let rm = ok(v.cli(&["node", "remove", "node-z"]).unwrap());
    assert!(rm.contains("registration: yes, enrollment: yes"), "{rm}");
    let fresh = tempfile::tempdir().unwrap();
    let again = join(&tpm, &v, fresh.path(), "node-z", &[]);
    assert_eq!(again.status.code(), Some(3), "{}", text(&again));
    assert!(text(&again).contains("not registered"), "{}", text(&again));
}

#[test]
fn a_tpm_without_an_ek_certificate_enrolls_only_by_its_registered_public_area() {
    let tpm = Swtpm::start_without_ek_certificate().unwrap();
    assert!(tpm.tpm2("tpm2_nvread", &["0x1c00002"]).is_err());
    // Open mode needs a certificate.
    let open = VerifierProc::start(&VerifierOpts::new(policy())).unwrap();
    let state = tempfile::tempdir().unwrap();
    let refused = join(&tpm, &open, state.path(), "bare", &[]);
    assert_eq!(refused.status.code(), Some(3), "{}", text(&refused));
    assert!(
        text(&refused).contains("no EK certificate"),
        "{}",
        text(&refused)
    );
    drop(open);

    let v = VerifierProc::start(&inventory_opts("")).unwrap();
    let ek = ek_json(&tpm, &v, state.path());
    assert!(ek["ek_cert_sha256"].is_null(), "{ek}");
    let public_sha256 = ek["ek_public_sha256"].as_str().unwrap().to_string();
    // Oracle: tpm2_createek makes the same EK from the TCG default template
    // and writes its TPM2B_PUBLIC.
    let work = tempfile::tempdir().unwrap();
    let p = |n: &str| work.path().join(n).display().to_string();
    tpm.tpm2(
        "tpm2_createek",
        &["-c", &p("ek.ctx"), "-G", "rsa", "-u", &p("ek.pub")],
    )
    .unwrap();
    tpm.tpm2("tpm2_flushcontext", &["-t"]).unwrap();
    let oracle = hex::encode(Sha256::digest(std::fs::read(p("ek.pub")).unwrap()));
    assert_eq!(public_sha256, oracle);

    let refused = join(&tpm, &v, state.path(), "bare", &[]);
    assert_eq!(refused.status.code(), Some(3), "{}", text(&refused));
    assert!(
        text(&refused).contains(&format!("--ek-public-sha256 {public_sha256}")),
        "{}",
        text(&refused)
    );
    // A certificate hash does not stand for a public area.
    ok(
        v.cli(&["node", "add", "bare", "--ek-sha256", &public_sha256])
            .unwrap(),
    );
    let still = join(&tpm, &v, state.path(), "bare", &[]);
    assert_eq!(still.status.code(), Some(3), "{}", text(&still));
    ok(v.cli(&["node", "remove", "bare"]).unwrap());
    ok(
        v.cli(&["node", "add", "bare", "--ek-public-sha256", &public_sha256])
            .unwrap(),
    );
    let joined = join(&tpm, &v, state.path(), "bare", &["--output", "json"]);
    assert_eq!(
        joined.status.code(),
        Some(0),
        "{}\n{}",
        text(&joined),
        v.log()
    );
    assert_eq!(show(&v, "bare")["ek_sha256"], public_sha256);
}

/// A CSV of 1,000 nodes, one of them (`n-0500`) this TPM.
fn inventory_csv(dir: &Path, cert_sha256: &str) -> PathBuf {
    let mut csv = String::from("node_id,ek_cert_sha256,labels\n");
    for i in 0..1000 {
        let h = if i == 500 {
            cert_sha256.to_string()
        } else {
            hex::encode(Sha256::digest(format!("ek-{i}")))
        };
        csv.push_str(&format!("n-{i:04},{h},rack=r{};class=cpu\n", i % 40));
    }
    let path = dir.join("inventory.csv");
    std::fs::write(&path, csv).unwrap();
    path
}

/// Imports 1,000 entries at `a`, then enrolls the registered TPM at `b`
/// (the same verifier, or a replica on the same PostgreSQL).
fn import_and_enroll(a: &VerifierProc, b: &VerifierProc) {
    let tpm = Swtpm::start().unwrap();
    let state = tempfile::tempdir().unwrap();
    let cert_sha256 = hex::encode(Sha256::digest(nv_ek_certificate(&tpm)));
    let file = inventory_csv(state.path(), &cert_sha256);
    let f = file.display().to_string();
    let out = ok(a.cli(&["node", "import", &f]).unwrap());
    assert!(
        out.contains("1000 registered, 0 updated, 0 unchanged"),
        "{out}"
    );
    let joined = join(&tpm, b, state.path(), "n-0500", &[]);
    assert_eq!(
        joined.status.code(),
        Some(0),
        "{}\n{}",
        text(&joined),
        b.log()
    );
    // Listed from the other side, in pages.
    let page: serde_json::Value = serde_json::from_str(&ok(b
        .cli(&["node", "list", "--output", "json", "--limit", "1000"])
        .unwrap()))
    .unwrap();
    let page = page.as_array().unwrap();
    assert_eq!(page.len(), 1000);
    assert_eq!(page[500]["node_id"], "n-0500");
    assert_eq!(page[500]["enrolled"], true);
    assert_eq!(page[7]["registration"]["labels"]["rack"], "r7");
    // Again: nothing new. One conflicting entry: nothing of the file lands.
    let out = ok(b.cli(&["node", "import", &f]).unwrap());
    assert!(
        out.contains("0 registered, 0 updated, 1000 unchanged"),
        "{out}"
    );
    let bad = state.path().join("bad.json");
    std::fs::write(
        &bad,
        format!(
            r#"[{{"node_id":"n-2000","ek_cert_sha256":"{}"}},
               {{"node_id":"n-2001","ek_cert_sha256":"{cert_sha256}"}}]"#,
            "ab".repeat(32)
        ),
    )
    .unwrap();
    let refused = a
        .cli(&["node", "import", &bad.display().to_string()])
        .unwrap();
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(
        text(&refused).contains("registered as node n-0500"),
        "{}",
        text(&refused)
    );
    let none = b.cli(&["node", "show", "n-2000"]).unwrap();
    assert_eq!(none.status.code(), Some(1), "{}", text(&none));
    // One ADMIN record per registered node, naming the file.
    let h = history(b, "n-0999");
    assert_eq!(h.len(), 1, "{h:?}");
    assert!(
        h[0]["details"][0]["actual"]
            .as_str()
            .unwrap()
            .contains("inventory.csv"),
        "{h:?}"
    );
}

#[test]
fn an_import_of_1000_entries_registers_all_or_none_on_sled() {
    let v = VerifierProc::start(&inventory_opts("")).unwrap();
    import_and_enroll(&v, &v);
}

#[test]
fn an_import_of_1000_entries_at_one_replica_is_seen_by_the_other_at_once_on_postgres() {
    let db = PgDb::new().expect("PostgreSQL");
    let a = VerifierProc::start(&inventory_opts(&db.storage_toml())).unwrap();
    let b = a.replica().unwrap();
    import_and_enroll(&a, &b);
}
