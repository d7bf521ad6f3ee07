//! Container measurements on a real swtpm, through the real binaries: the
//! attestor's CEL log (append + fsync, then extend), one-shot image
//! measurement, runtime files, tampering with the log, and crashes (abort at
//! injected points, as kill -9 would) followed by reconciliation.
//!
//! containerd itself is not used here: `assay-attestor measure-image` is the
//! same measurement path an OCI hook or the containerd watcher takes.

use std::path::{Path, PathBuf};
use std::process::Output;

use anyhow::Result;
use assay_tests::{attestor, bin, Swtpm, VerifierOpts, VerifierProc};
use tempfile::TempDir;

const NGINX: &str = "sha256:6666666666666666666666666666666666666666666666666666666666666666";
const BUSYBOX: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

struct Node {
    tpm: Swtpm,
    state: TempDir,
    prefix: TempDir,
    config: PathBuf,
}

impl Node {
    /// A node with a fake runtime install prefix: bin/containerd and
    /// etc/containerd/config.toml, measured as the runtime.
    fn new() -> Result<Self> {
        let prefix = tempfile::tempdir()?;
        std::fs::create_dir_all(prefix.path().join("bin"))?;
        std::fs::create_dir_all(prefix.path().join("etc/containerd"))?;
        std::fs::write(
            prefix.path().join("bin/containerd"),
            b"containerd 1.6.20 build",
        )?;
        std::fs::write(
            prefix.path().join("etc/containerd/config.toml"),
            b"version = 2\n",
        )?;
        let state = tempfile::tempdir()?;
        let config = state.path().join("attestor.toml");
        std::fs::write(
            &config,
            format!(
                "runtime_files = [{:?}, {:?}]\n",
                prefix.path().join("bin/containerd"),
                prefix.path().join("etc/containerd/config.toml")
            ),
        )?;
        Ok(Self {
            tpm: Swtpm::start()?,
            state,
            prefix,
            config,
        })
    }

    fn cel_log(&self) -> PathBuf {
        self.state.path().join("measurements.cel")
    }

    fn join(&self, v: &VerifierProc) -> Result<Output> {
        let config = self.config.display().to_string();
        attestor(
            &self.tpm,
            v,
            self.state.path(),
            "node-c",
            "join",
            &["--config", &config, "--output", "json"],
        )
    }

    /// `assay-attestor measure-image`, optionally crashing at `crash_at`.
    fn measure_image(
        &self,
        reference: &str,
        digest: &str,
        crash_at: Option<&str>,
    ) -> Result<Output> {
        let mut cmd = std::process::Command::new(bin("assay-attestor")?);
        cmd.args([
            "measure-image",
            "--ref",
            reference,
            "--digest",
            digest,
            "--tcti",
        ])
        .arg(self.tpm.tcti())
        .arg("--cel-log")
        .arg(self.cel_log());
        if let Some(at) = crash_at {
            cmd.env("ASSAY_TEST_CRASH_AT", at);
        }
        Ok(cmd.output()?)
    }

    fn show(&self) -> Result<serde_json::Value> {
        let o = std::process::Command::new(bin("assay-attestor")?)
            .args(["log", "show", "--output", "json", "--cel-log"])
            .arg(self.cel_log())
            .output()?;
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        Ok(serde_json::from_slice(&o.stdout)?)
    }
}

fn sha256_file(p: &Path) -> Result<String> {
    use sha2::Digest as _;
    Ok(format!(
        "sha256:{}",
        hex::encode(sha2::Sha256::digest(std::fs::read(p)?))
    ))
}

fn policy(node: &Node) -> Result<String> {
    Ok(format!(
        "schema = 1\nname = \"containers\"\n[containers]\nallowed_images = [{BUSYBOX:?}]\n[containers.runtime]\n{:?} = [{:?}]\n{:?} = [{:?}]\n",
        node.prefix.path().join("bin/containerd"),
        sha256_file(&node.prefix.path().join("bin/containerd"))?,
        node.prefix.path().join("etc/containerd/config.toml"),
        sha256_file(&node.prefix.path().join("etc/containerd/config.toml"))?,
    ))
}

/// (trusted, failed claims as (id, actual, location)).
fn verdict(o: &Output) -> (bool, Vec<(String, String, String)>) {
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    });
    let failed = v["claims"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .filter(|c| c["passed"] == false)
                .map(|c| {
                    let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
                    (s("id"), s("actual"), s("location"))
                })
                .collect()
        })
        .unwrap_or_default();
    (v["trusted"] == true, failed)
}

#[test]
fn runtime_and_images_are_measured_and_judged() -> Result<()> {
    let node = Node::new()?;
    let v = VerifierProc::start(&VerifierOpts::new(policy(&node)?))?;
    // First join: the runtime files are measured, nothing else yet.
    let o = node.join(&v)?;
    assert!(verdict(&o).0, "{:#?}\n{}", verdict(&o).1, v.log());
    assert_eq!(node.show()?["records"].as_array().map(Vec::len), Some(2));

    // An allowed image: PASS.
    let m = node.measure_image("docker.io/library/busybox:1.36", BUSYBOX, None)?;
    assert!(m.status.success(), "{}", String::from_utf8_lossy(&m.stderr));
    let o = node.join(&v)?;
    assert!(verdict(&o).0, "{:#?}", verdict(&o).1);
    // Measuring it again is a no-op (measured once).
    node.measure_image("docker.io/library/busybox:1.36", BUSYBOX, None)?;
    assert_eq!(node.show()?["records"].as_array().map(Vec::len), Some(3));

    // An image the policy does not allow: FAIL naming its digest and record.
    node.measure_image("docker.io/library/nginx:1.25", NGINX, None)?;
    let o = node.join(&v)?;
    let (trusted, failed) = verdict(&o);
    assert!(!trusted && o.status.code() == Some(3));
    assert!(
        failed
            .iter()
            .any(|(id, actual, loc)| id == "containers.image"
                && actual.contains(NGINX)
                && loc == "CEL record #3"),
        "{failed:#?}"
    );
    Ok(())
}

#[test]
fn a_modified_runtime_binary_is_named() -> Result<()> {
    let node = Node::new()?;
    let v = VerifierProc::start(&VerifierOpts::new(policy(&node)?))?;
    assert!(verdict(&node.join(&v)?).0);
    // Replace containerd with a modified copy: the next join measures it.
    std::fs::write(
        node.prefix.path().join("bin/containerd"),
        b"containerd 1.6.20 build + implant",
    )?;
    let o = node.join(&v)?;
    let (trusted, failed) = verdict(&o);
    assert!(!trusted);
    let path = node
        .prefix
        .path()
        .join("bin/containerd")
        .display()
        .to_string();
    assert!(
        failed
            .iter()
            .any(|(id, actual, _)| id == "containers.runtime" && actual.starts_with(&path)),
        "{failed:#?}"
    );
    Ok(())
}

#[test]
fn edited_truncated_or_dropped_records_are_detected() -> Result<()> {
    for (what, tamper) in [
        (
            "edited",
            Box::new(|b: &mut Vec<u8>| {
                let n = b.len();
                b[n - 2] ^= 1; // in the last record's content
            }) as Box<dyn Fn(&mut Vec<u8>)>,
        ),
        (
            "truncated",
            Box::new(|b: &mut Vec<u8>| {
                let n = b.len();
                b.truncate(n - 3);
            }),
        ),
    ] {
        let node = Node::new()?;
        let v = VerifierProc::start(&VerifierOpts::new(policy(&node)?))?;
        node.measure_image("docker.io/library/busybox:1.36", BUSYBOX, None)?;
        assert!(verdict(&node.join(&v)?).0, "{what}: baseline");
        let mut bytes = std::fs::read(node.cel_log())?;
        tamper(&mut bytes);
        std::fs::write(node.cel_log(), &bytes)?;
        // The attestor refuses to repair it (tampering), and the verifier fails the node.
        let m = node.measure_image("docker.io/library/nginx:1.25", NGINX, None)?;
        assert_eq!(
            m.status.code(),
            Some(3),
            "{what}: {}",
            String::from_utf8_lossy(&m.stderr)
        );
        assert!(
            String::from_utf8_lossy(&m.stderr).contains("TAMPERING"),
            "{what}"
        );
        let o = node.join(&v)?;
        let (trusted, failed) = verdict(&o);
        assert!(!trusted, "{what}");
        assert!(
            failed
                .iter()
                .any(|(id, _, _)| id.starts_with("eventlog.cel") || id == "containers.record"),
            "{what}: {failed:#?}"
        );
    }
    // A dropped middle record: named by number.
    let node = Node::new()?;
    let v = VerifierProc::start(&VerifierOpts::new(policy(&node)?))?;
    node.measure_image("docker.io/library/busybox:1.36", BUSYBOX, None)?;
    assert!(verdict(&node.join(&v)?).0);
    let bytes = std::fs::read(node.cel_log())?;
    let log = assay_core::eventlog::cel::parse(&bytes, &Default::default())?;
    let mut dropped = log.clone();
    dropped.records.remove(0);
    std::fs::write(node.cel_log(), assay_core::eventlog::cel::encode(&dropped))?;
    let (trusted, failed) = verdict(&node.join(&v)?);
    assert!(!trusted);
    assert!(
        failed
            .iter()
            .any(|(id, actual, _)| id == "eventlog.cel.format"
                && actual.contains("record number 1 where 0 was expected")),
        "{failed:#?}"
    );
    Ok(())
}

#[test]
fn a_crash_between_append_and_extend_or_after_extend_is_reconciled() -> Result<()> {
    for at in ["after-append", "after-extend"] {
        let node = Node::new()?;
        let v = VerifierProc::start(&VerifierOpts::new(policy(&node)?))?;
        let m = node.measure_image("docker.io/library/busybox:1.36", BUSYBOX, Some(at))?;
        assert!(
            m.status.code().is_none(),
            "{at}: the process must have been killed (SIGABRT); is assay-attestor built \
             with its `test-hooks` feature (`cargo build --workspace --bins`)?"
        );
        // The record is on disk either way.
        assert_eq!(
            node.show()?["records"].as_array().map(Vec::len),
            Some(1),
            "{at}"
        );
        // The next run reconciles (extends the record if the extend was lost),
        // measures the runtime, and the verifier replays the log cleanly.
        let o = node.join(&v)?;
        let (trusted, failed) = verdict(&o);
        assert!(
            trusted,
            "{at}: {failed:#?}\n{}",
            String::from_utf8_lossy(&o.stderr)
        );
        // Re-measuring the image does not add a record.
        node.measure_image("docker.io/library/busybox:1.36", BUSYBOX, None)?;
        assert_eq!(
            node.show()?["records"].as_array().map(Vec::len),
            Some(3),
            "{at}"
        );
    }
    Ok(())
}

#[test]
fn a_reference_policy_from_a_node_allows_exactly_its_runtime_and_images() -> Result<()> {
    let node = Node::new()?;
    node.measure_image("docker.io/library/busybox:1.36", BUSYBOX, None)?;
    let bundle = node.state.path().join("ref.bundle");
    let o = std::process::Command::new(bin("assay-attestor")?)
        .args([
            "collect",
            "--nonce",
            "0102",
            "--no-uefi-log",
            "--no-ima-log",
            "--pcrs",
            "13",
            "--tcti",
        ])
        .arg(node.tpm.tcti())
        .arg("--state-dir")
        .arg(node.state.path())
        .arg("--cel-log")
        .arg(node.cel_log())
        .arg("--out")
        .arg(&bundle)
        .output()?;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let g = std::process::Command::new(bin("assay-verifier")?)
        .args(["policy", "generate", "--name", "ref", "--from-evidence"])
        .arg(&bundle)
        .output()?;
    assert!(g.status.success(), "{}", String::from_utf8_lossy(&g.stderr));
    let policy = String::from_utf8(g.stdout)?;
    assert!(
        policy.contains(BUSYBOX) && policy.contains("[containers.runtime]"),
        "{policy}"
    );
    // collect measured nothing (no runtime measured yet: join does it), so the
    // runtime table is empty and the first join's runtime records fail...
    let v = VerifierProc::start(&VerifierOpts::new(policy))?;
    let (trusted, failed) = verdict(&node.join(&v)?);
    assert!(
        !trusted && failed.iter().all(|(id, _, _)| id == "containers.runtime"),
        "{failed:#?}"
    );
    // ...while a reference taken after the runtime was measured passes.
    let o = std::process::Command::new(bin("assay-attestor")?)
        .args([
            "collect",
            "--nonce",
            "0103",
            "--no-uefi-log",
            "--no-ima-log",
            "--pcrs",
            "13",
            "--tcti",
        ])
        .arg(node.tpm.tcti())
        .arg("--state-dir")
        .arg(node.state.path())
        .arg("--cel-log")
        .arg(node.cel_log())
        .arg("--out")
        .arg(&bundle)
        .output()?;
    assert!(o.status.success());
    let g = std::process::Command::new(bin("assay-verifier")?)
        .args(["policy", "generate", "--name", "ref", "--from-evidence"])
        .arg(&bundle)
        .output()?;
    let v = VerifierProc::start(&VerifierOpts::new(String::from_utf8(g.stdout)?))?;
    let (trusted, failed) = verdict(&node.join(&v)?);
    assert!(trusted, "{failed:#?}");
    Ok(())
}
