//! Incremental IMA attestation on real swtpm nodes, through the attestor's
//! own flow: the test plays the kernel, appending ima-ng entries to a binary
//! runtime measurement log and extending each into PCR 10 (sha256 bank) as
//! IMA does. The verifier keeps how far each node's log was verified; the
//! attestor sends only the entries after it; the verdict's
//! `eventlog.ima.range` claim says which entries were judged and why.

use std::path::PathBuf;

use assay_attestor::flow::{self, Outcome};
use assay_attestor::tpm::Tpm;
use assay_core::eventlog::ima::{to_binary, FileMeasurement, ImaEntry, ImaLog, Template};
use assay_core::tpm::public::HashAlg;
use assay_proto::v1 as pb;
use assay_tests::node::Node;
use assay_tests::{PgDb, VerifierOpts, VerifierProc};

/// The files this node measures: allowed ones, and one that is not.
const ALLOWED: [&str; 6] = [
    "/usr/bin/bash",
    "/usr/bin/ls",
    "/usr/lib/libc.so.6",
    "/usr/bin/cat",
    "/usr/sbin/sshd",
    "/usr/bin/sleep",
];

fn content(path: &str) -> Vec<u8> {
    format!("the contents of {path}").into_bytes()
}

fn policy() -> String {
    let mut p = String::from(
        "schema = 1\nname = \"ima-incremental\"\n[ima]\nexcludes = ['/tmp/.*']\n[ima.allowlist]\n",
    );
    for path in ALLOWED {
        p.push_str(&format!(
            "{path:?} = [\"sha256:{}\"]\n",
            hex::encode(HashAlg::Sha256.digest(&content(path)))
        ));
    }
    p
}

fn entry(index: usize, path: &str, data: &[u8]) -> ImaEntry {
    let mut e = ImaEntry {
        index,
        pcr: 10,
        template_hash: vec![],
        template: Template::ImaNg(FileMeasurement {
            hash_alg: "sha256".into(),
            digest: HashAlg::Sha256.digest(data),
            path: path.into(),
            signature: None,
        }),
    };
    e.template_hash = HashAlg::Sha1.digest(&e.template_data().unwrap());
    e
}

/// A node whose kernel the test plays: its log file and TPM move together.
struct ImaNode {
    node: Node,
    log: ImaLog,
    path: PathBuf,
}

impl ImaNode {
    fn new(id: &str) -> Self {
        let node = Node::new(id);
        let path = node.state.path().join("binary_runtime_measurements");
        let mut n = Self {
            node,
            log: ImaLog {
                template_hash_alg: HashAlg::Sha1,
                entries: vec![],
            },
            path,
        };
        n.boot("first boot");
        n
    }

    /// A boot (the TPM was just reset): firmware measures `which` into
    /// PCR 0, then the kernel starts a log with its boot_aggregate, the
    /// sha256 of PCRs 0-9 (which the verifier recomputes from the quote).
    fn boot(&mut self, which: &str) {
        let firmware = HashAlg::Sha256.digest(which.as_bytes());
        let mut tpm = Tpm::open(&self.node.tpm.tcti()).unwrap();
        tpm.extend_pcr_sha256(0, &firmware.clone().try_into().unwrap())
            .unwrap();
        let pcr0 = HashAlg::Sha256.digest(&[vec![0u8; 32], firmware].concat());
        let mut boot_pcrs = pcr0;
        boot_pcrs.extend(std::iter::repeat_n(0u8, 32 * 9));
        let aggregate = HashAlg::Sha256.digest(&boot_pcrs);
        self.log.entries.clear();
        let mut e = entry(0, "boot_aggregate", b"");
        if let Template::ImaNg(f) = &mut e.template {
            f.digest = aggregate;
        }
        e.template_hash = HashAlg::Sha1.digest(&e.template_data().unwrap());
        self.extend_and_log(e);
    }

    /// The kernel measures a file: extend PCR 10, then append to the log.
    fn measure(&mut self, path: &str, data: &[u8]) {
        self.extend_and_log(entry(self.log.entries.len(), path, data));
    }

    fn extend_and_log(&mut self, e: ImaEntry) {
        let mut tpm = Tpm::open(&self.node.tpm.tcti()).unwrap();
        let d: [u8; 32] = e
            .extend_digest(HashAlg::Sha256)
            .unwrap()
            .try_into()
            .unwrap();
        tpm.extend_pcr_sha256(10, &d).unwrap();
        self.log.entries.push(e);
        self.write(&self.log.clone());
    }

    fn measure_allowed(&mut self, n: usize) {
        for i in 0..n {
            let path = ALLOWED[(self.log.entries.len() + i) % ALLOWED.len()];
            self.measure(path, &content(path));
        }
    }

    /// What the node's log file holds (the test may make it lie).
    fn write(&self, log: &ImaLog) {
        std::fs::write(&self.path, to_binary(log).unwrap()).unwrap();
    }

    async fn attest(&self, v: &VerifierProc) -> Outcome {
        let mut cfg = self.node.config(v);
        cfg.ima_log = self.path.clone();
        cfg.max_ima_log_bytes = 1 << 20;
        let mut tpm = Tpm::open(&cfg.tcti).unwrap();
        let ch = flow::connect(&cfg).await.unwrap();
        flow::attest_with(&cfg, &mut tpm, ch, false).await.unwrap()
    }

    /// A request made by hand: the challenge, a real quote, and `ima` sent
    /// as the entries from `first` on.
    async fn send_raw(&self, v: &VerifierProc, ima: &ImaLog, first: u64) -> pb::AttestResponse {
        let mut c = self.node.client(v).await;
        let chal = c
            .challenge(pb::ChallengeRequest {
                node_id: self.node.id.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        let mut req = self.node.quote_for(&chal.nonce, &chal.pcrs_sha256);
        req.ima_log = Some(to_binary(ima).unwrap());
        req.ima_first_entry = first;
        self.node.send(v, req).await
    }

    fn from(&self, first: usize) -> ImaLog {
        ImaLog {
            template_hash_alg: HashAlg::Sha1,
            entries: self.log.entries[first..].to_vec(),
        }
    }
}

fn range(o: &Outcome) -> String {
    o.claims
        .iter()
        .find(|c| c.id == "eventlog.ima.range")
        .map(|c| format!("{} {}", c.passed, c.actual))
        .unwrap_or_else(|| format!("no range claim in {:#?}", o.claims))
}

/// The range claim says `text`.
#[track_caller]
fn assert_range(o: &Outcome, text: &str) {
    let r = range(o);
    assert!(r.contains(text), "{r}");
}

fn failed(o: &Outcome) -> Vec<(String, String)> {
    o.claims
        .iter()
        .filter(|c| !c.passed)
        .map(|c| (c.id.clone(), c.actual.clone()))
        .collect()
}

fn raw_failed(r: &pb::AttestResponse) -> Vec<(String, String)> {
    r.verdict
        .as_ref()
        .unwrap()
        .claims
        .iter()
        .filter(|c| !c.passed)
        .map(|c| (c.id.clone(), c.actual.clone()))
        .collect()
}

fn assert_pass(o: &Outcome, v: &VerifierProc) {
    assert!(o.trusted, "{:#?}\n{}", failed(o), v.log());
}

fn reverify(v: &VerifierProc, seq: u64) {
    let out = v.cli(&["audit", "reverify", &seq.to_string()]).unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("same verdict"), "{text}");
}

#[tokio::test(flavor = "current_thread")]
async fn a_growing_log_is_attested_incrementally_and_tampering_reboots_and_restarts_are_handled() {
    let mut v = VerifierProc::start(&VerifierOpts::new(policy())).unwrap();
    let mut n = ImaNode::new("node-ima-1");
    n.node.enroll(&v).await;
    n.measure_allowed(3);

    // First attestation: the whole log, no state yet.
    let o = n.attest(&v).await;
    assert_pass(&o, &v);
    assert_range(
        &o,
        "entries 0–3 judged: the whole log, because no state is kept",
    );

    // The log grows: only the new entries are sent and judged.
    n.measure_allowed(2);
    let o = n.attest(&v).await;
    assert_pass(&o, &v);
    assert_range(
        &o,
        "entries 4–5 judged, continuing from the state kept at entry 4",
    );
    // Its kept evidence (the state it continued from and the entries after
    // it) reproduces the verdict.
    reverify(&v, o.history_seq);
    // Nothing new.
    let o = n.attest(&v).await;
    assert_pass(&o, &v);
    assert_range(&o, "no new entries since entry 6");

    // A verifier restart keeps the state (it is in the store).
    v.restart().unwrap();
    n.measure_allowed(1);
    let o = n.attest(&v).await;
    assert_pass(&o, &v);
    assert_range(
        &o,
        "entries 6–6 judged, continuing from the state kept at entry 6",
    );

    // A dropped entry: the kernel measured two files, the log hides one.
    n.measure("/usr/bin/nc", b"netcat");
    n.measure_allowed(1);
    let mut lying = n.log.clone();
    lying.entries.remove(7);
    n.write(&lying);
    let o = n.attest(&v).await;
    assert!(!o.trusted);
    let f = failed(&o);
    assert!(
        f.iter().any(|(id, why)| id == "eventlog.ima.replay.10"
            && why.contains("replayed from the value kept at entry 7")),
        "{f:#?}"
    );
    // The state was dropped: the next attestation judges the whole, honest
    // log, and fails on the file the log hid, naming it.
    n.write(&n.log.clone());
    let o = n.attest(&v).await;
    assert_range(
        &o,
        "entries 0–8 judged: the whole log, because no state is kept",
    );
    assert!(
        failed(&o)
            .iter()
            .any(|(id, why)| id == "ima.file" && why.starts_with("/usr/bin/nc")),
        "{:#?}",
        failed(&o)
    );
    // It keeps failing incrementally, from the failing entry, until allowed.
    n.measure_allowed(1);
    let o = n.attest(&v).await;
    assert!(!o.trusted);
    assert_range(
        &o,
        "entries 7–9 judged, continuing from the state kept at entry 7",
    );
    reverify(&v, o.history_seq);

    // An edited old entry, in a whole log sent by hand, does not replay.
    let mut edited = n.log.clone();
    if let Template::ImaNg(f) = &mut edited.entries[2].template {
        f.digest = HashAlg::Sha256.digest(b"trojaned");
    }
    let r = n.send_raw(&v, &edited, 0).await;
    assert!(
        raw_failed(&r)
            .iter()
            .any(|(id, _)| id == "eventlog.ima.replay.10"),
        "{:#?}",
        raw_failed(&r)
    );

    // A TPM reset (reboot): PCRs are back at zero, the kernel starts a new
    // log. The attestor sees the new boot and sends its whole log.
    n.node.tpm.reboot().unwrap();
    n.boot("second boot");
    n.measure_allowed(2);
    let o = n.attest(&v).await;
    assert_pass(&o, &v);
    // (the edited log dropped the state)
    assert_range(
        &o,
        "entries 0–2 judged: the whole log, because no state is kept",
    );
    n.measure_allowed(1);
    let o = n.attest(&v).await;
    assert_pass(&o, &v);
    assert_range(&o, "continuing from the state kept at entry 3");
    // Another reboot, with the state kept: the verdict says why it starts over.
    n.node.tpm.reboot().unwrap();
    n.boot("third boot");
    n.measure_allowed(1);
    let o = n.attest(&v).await;
    assert_pass(&o, &v);
    assert_range(&o, "entries 0–1 judged: the whole log, because the TPM was reset or restarted since entry 4 was verified");
}

#[tokio::test(flavor = "current_thread")]
async fn entries_of_another_boot_are_refused_and_a_reset_starts_over_from_entry_0() {
    let v = VerifierProc::start(&VerifierOpts::new(policy())).unwrap();
    let mut n = ImaNode::new("node-ima-2");
    n.node.enroll(&v).await;
    n.measure_allowed(4);
    let o = n.attest(&v).await;
    assert_pass(&o, &v);
    let old_boot = n.log.clone();

    // Reboot; the node (or someone replaying its old log) sends the old
    // boot's entries after the kept state: the quote is of another boot.
    n.node.tpm.reboot().unwrap();
    n.boot("second boot");
    n.measure_allowed(5);
    let mut later = old_boot.clone();
    later
        .entries
        .push(entry(5, "/usr/bin/ls", &content("/usr/bin/ls")));
    let r = n
        .send_raw(
            &v,
            &ImaLog {
                template_hash_alg: HashAlg::Sha1,
                entries: later.entries[5..].to_vec(),
            },
            5,
        )
        .await;
    let f = raw_failed(&r);
    assert!(
        f.iter().any(|(id, why)| id == "eventlog.ima.range"
            && why.contains("reset or restarted")
            && why.contains("whole log is needed")),
        "{f:#?}"
    );
    // The old boot's whole log does not replay to this boot's PCR.
    let r = n.send_raw(&v, &old_boot, 0).await;
    assert!(
        raw_failed(&r)
            .iter()
            .any(|(id, _)| id == "eventlog.ima.replay.10"),
        "{:#?}",
        raw_failed(&r)
    );
    // The honest attestor starts over from entry 0, and continues after.
    let o = n.attest(&v).await;
    assert_pass(&o, &v);
    assert_range(
        &o,
        "entries 0–5 judged: the whole log, because no state is kept",
    );
    n.measure_allowed(1);
    let o = n.attest(&v).await;
    assert_pass(&o, &v);
    assert_range(&o, "entries 6–6 judged, continuing");
    // Entries from another point than the kept one are refused.
    n.measure_allowed(1);
    let r = n.send_raw(&v, &n.from(5), 5).await;
    assert!(
        raw_failed(&r)
            .iter()
            .any(|(id, why)| id == "eventlog.ima.range"
                && why.contains("the state kept is at entry")),
        "{:#?}",
        raw_failed(&r)
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_node_switching_replicas_mid_stream_continues_from_the_shared_state() {
    let db = PgDb::new().expect("PostgreSQL");
    let mut opts = VerifierOpts::new(policy());
    opts.config = Some(db.storage_toml());
    let a = VerifierProc::start(&opts).unwrap();
    let b = a.replica().unwrap();
    let mut n = ImaNode::new("node-ima-3");
    n.node.enroll(&a).await;
    n.measure_allowed(3);
    let o = n.attest(&a).await;
    assert_pass(&o, &a);
    for (round, v) in [&b, &a, &b].into_iter().enumerate() {
        n.measure_allowed(2);
        let o = n.attest(v).await;
        assert_pass(&o, v);
        let from = 4 + 2 * round;
        assert_range(
            &o,
            &format!(
                "entries {from}–{} judged, continuing from the state kept at entry {from}",
                from + 1
            ),
        );
    }
    reverify(&a, n.attest(&b).await.history_seq);
}
