//! The agent against a real containerd (Debian's 1.6, started here with its own
//! root, state and socket in a temp dir), real runc, a real swtpm and the real
//! verifier: an image imported with `ctr images import` is measured from
//! containerd's event stream and re-attested; a container start is measured;
//! an image the policy does not allow fails the next verdict, named.
//!
//! Needs root (containerd, runc) and the `containerd`, `runc` and
//! `busybox-static` packages, which the test command installs.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use assay_tests::{bin, Swtpm, VerifierOpts, VerifierProc};
use sha2::Digest as _;
use tempfile::TempDir;

struct Containerd {
    child: Child,
    dir: TempDir,
}

impl Containerd {
    fn start() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("assay-containerd-")
            .tempdir()?;
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            "version = 2\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\", \"io.containerd.snapshotter.v1.btrfs\", \
             \"io.containerd.snapshotter.v1.zfs\", \"io.containerd.snapshotter.v1.devmapper\", \"io.containerd.snapshotter.v1.aufs\"]\n",
        )?;
        let log = std::fs::File::create(dir.path().join("containerd.log"))?;
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .arg("--root")
            .arg(dir.path().join("root"))
            .arg("--state")
            .arg(dir.path().join("state"))
            .arg("--address")
            .arg(dir.path().join("c.sock"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting containerd (Debian package containerd)")?;
        let c = Self { child, dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if c.ctr(&["version"]).is_ok() {
                return Ok(c);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("containerd did not start: {}", c.log());
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("c.sock")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    fn ctr(&self, args: &[&str]) -> Result<String> {
        let o = Command::new("ctr")
            .arg("--address")
            .arg(self.socket())
            .args(args)
            .output()?;
        if !o.status.success() {
            bail!("ctr {args:?}: {}", String::from_utf8_lossy(&o.stderr));
        }
        Ok(String::from_utf8_lossy(&o.stdout).to_string())
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sha256(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(b)))
}

/// An OCI image archive (busybox-static as /bin/sh), named `name`; `variant`
/// changes its config so each variant has its own digest. Returns (archive,
/// manifest digest).
fn oci_archive(dir: &Path, name: &str, variant: &str) -> Result<(PathBuf, String)> {
    let root = dir.join(format!("rootfs-{variant}"));
    std::fs::create_dir_all(root.join("bin"))?;
    std::fs::copy("/usr/bin/busybox", root.join("bin/busybox")).context("busybox-static")?;
    let _ = std::os::unix::fs::symlink("busybox", root.join("bin/sh"));
    let _ = std::os::unix::fs::symlink("busybox", root.join("bin/true"));
    let layer_path = dir.join(format!("layer-{variant}.tar"));
    let st = Command::new("tar")
        .args([
            "--sort=name",
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "--mtime=@0",
            "-C",
        ])
        .arg(&root)
        .arg("-cf")
        .arg(&layer_path)
        .arg(".")
        .status()?;
    assert!(st.success());
    let layout = dir.join(format!("image-{variant}"));
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs)?;
    let put = |b: &[u8]| -> Result<(String, usize)> {
        let d = sha256(b);
        std::fs::write(blobs.join(&d[7..]), b)?;
        Ok((d, b.len()))
    };
    let (ld, ls) = put(&std::fs::read(&layer_path)?)?;
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [ld]},
        "config": {"Cmd": ["/bin/sh"], "Labels": {"variant": variant}},
    });
    let (cd, cs) = put(config.to_string().as_bytes())?;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld, "size": ls}],
    });
    let (md, ms) = put(manifest.to_string().as_bytes())?;
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms,
                       "annotations": {"io.containerd.image.name": name}}],
    });
    std::fs::write(layout.join("index.json"), index.to_string())?;
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    let archive = dir.join(format!("archive-{variant}.tar"));
    let st = Command::new("tar")
        .arg("-C")
        .arg(&layout)
        .arg("-cf")
        .arg(&archive)
        .arg(".")
        .status()?;
    assert!(st.success());
    Ok((archive, md))
}

/// The agent, with its JSON lines on a channel; killed on drop.
struct Agent {
    child: Child,
    lines: mpsc::Receiver<serde_json::Value>,
}

impl Agent {
    fn start(tpm: &Swtpm, v: &VerifierProc, state: &Path, ctd: &Containerd) -> Result<Self> {
        let config = state.join("attestor.toml");
        std::fs::write(
            &config,
            "runtime_files = []\ncontainerd_namespaces = [\"default\"]\n",
        )?;
        let mut child = assay_tests::attestor_command(tpm, v, state, "node-ctd", "agent")?
            .arg("--config")
            .arg(&config)
            .arg("--containerd-socket")
            .arg(ctd.socket())
            .env(
                "ASSAY_LOG",
                "debug,h2=info,tower=info,hyper=info,hyper_util=info",
            )
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(state.join("agent.log"))?)
            .spawn()?;
        let out = child.stdout.take().context("stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str(&line) {
                    let _ = tx.send(v);
                }
            }
        });
        Ok(Self { child, lines })
    }

    /// The next attestation report (bounded wait).
    fn next(&self, state: &Path) -> Result<serde_json::Value> {
        self.lines
            .recv_timeout(Duration::from_secs(30))
            .map_err(|_| {
                anyhow::anyhow!(
                    "no attestation from the agent within 30 s:\n{}",
                    std::fs::read_to_string(state.join("agent.log")).unwrap_or_default()
                )
            })
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn failed(v: &serde_json::Value) -> Vec<String> {
    v["failed"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn images_and_container_starts_are_measured_live_and_judged() -> Result<()> {
    let ctd = Containerd::start()?;
    let work = tempfile::tempdir()?;
    let (allowed, allowed_digest) =
        oci_archive(work.path(), "docker.io/assay-test/busybox:1", "allowed")?;
    let (denied, denied_digest) =
        oci_archive(work.path(), "docker.io/assay-test/other:1", "other")?;
    let policy = format!(
        "schema = 1\nname = \"ctd\"\n[containers]\nallowed_images = [{allowed_digest:?}]\n"
    );
    let v = VerifierProc::start(&VerifierOpts::new(policy))?;
    let tpm = Swtpm::start()?;
    let state = tempfile::tempdir()?;
    let agent = Agent::start(&tpm, &v, state.path(), &ctd)?;

    let first = agent.next(state.path())?;
    assert_eq!(
        (first["attested"].as_str(), first["trusted"].as_bool()),
        (Some("start"), Some(true)),
        "{first}"
    );

    // Import an allowed image: measured from the event stream, re-attested.
    let t0 = Instant::now();
    ctd.ctr(&[
        "images",
        "import",
        "--snapshotter",
        "native",
        allowed.to_str().context("path")?,
    ])?;
    let after_import = agent.next(state.path())?;
    let import_to_verdict = t0.elapsed();
    assert_eq!(after_import["attested"], "measurement", "{after_import}");
    assert_eq!(after_import["trusted"], true, "{after_import}");
    eprintln!(
        "image import → stored verdict: {:.0} ms (ctr import included; {:.1} ms from the event)",
        import_to_verdict.as_secs_f64() * 1e3,
        after_import["ms_since_event"].as_f64().unwrap_or(-1.0)
    );
    // The verdict is in the verifier's history.
    let h = v.cli(&["history", "--node", "node-ctd", "--json"])?;
    let h: serde_json::Value = serde_json::from_slice(&h.stdout)?;
    let seqs: Vec<u64> = h
        .as_array()
        .context("history")?
        .iter()
        .filter_map(|r| r["seq"].as_u64())
        .collect();
    assert!(
        seqs.contains(&after_import["history_seq"].as_u64().context("seq")?),
        "{h}"
    );

    // A container from it: the start is measured, still trusted.
    ctd.ctr(&[
        "run",
        "--snapshotter",
        "native",
        "--rm",
        "docker.io/assay-test/busybox:1",
        "c1",
        "/bin/true",
    ])?;
    let after_run = agent.next(state.path())?;
    assert_eq!(
        (
            after_run["attested"].as_str(),
            after_run["trusted"].as_bool()
        ),
        (Some("measurement"), Some(true)),
        "{after_run}"
    );
    let show = Command::new(bin("assay-attestor")?)
        .args(["log", "show", "--output", "json", "--cel-log"])
        .arg(state.path().join("measurements.cel"))
        .output()?;
    let log: serde_json::Value = serde_json::from_slice(&show.stdout)?;
    let starts: Vec<&serde_json::Value> = log["records"]
        .as_array()
        .context("records")?
        .iter()
        .filter(|r| r["measurement"]["kind"] == "container_start")
        .collect();
    assert_eq!(starts.len(), 1, "{log}");
    assert_eq!(starts[0]["measurement"]["container_id"], "c1");
    assert_eq!(
        starts[0]["measurement"]["image_digest"],
        allowed_digest.as_str()
    );

    // An image the policy does not allow: the next verdict fails, naming it.
    ctd.ctr(&[
        "images",
        "import",
        "--snapshotter",
        "native",
        denied.to_str().context("path")?,
    ])?;
    let after_denied = agent.next(state.path())?;
    assert_eq!(after_denied["trusted"], false, "{after_denied}");
    assert_eq!(
        failed(&after_denied),
        ["containers.image"],
        "{after_denied}"
    );
    let explain = v.cli(&["policy", "explain", "node-ctd"])?;
    assert!(
        String::from_utf8_lossy(&explain.stdout).contains(&denied_digest),
        "{}",
        String::from_utf8_lossy(&explain.stdout)
    );
    drop(agent);
    assert!(!ctd.log().contains("panic"), "{}", ctd.log());
    Ok(())
}
