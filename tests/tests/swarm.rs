//! Docker Swarm join, for real: Debian's dockerd (docker.io) as the swarm
//! manager and as two would-be workers, each in its own network namespace the
//! test creates (joined by a bridge in a fourth), real swtpm, real verifier and
//! attestor processes.
//!
//! - an attested node gets the worker token and really joins (`--exec`): the
//!   manager lists it;
//! - a node whose PCRs do not match gets nothing (exit 3);
//! - the token in circulation before the verifier started is rotated away, and
//!   the issued one, once its window ended, is refused by the manager;
//! - the joined node later fails attestation: its tokens are revoked and the
//!   manager drains it; a forged failing attestation in its name changes nothing;
//! - it passes again (swtpm restarted: PCRs reset): it is set active again.
//!
//! Needs root, iproute2, util-linux (nsenter, unshare) and docker.io, which the
//! test command installs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use assay_tests::{attestor, wait_for, Swtpm, VerifierOpts, VerifierProc};
use tempfile::TempDir;

const ZERO: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn run(cmd: &mut Command) -> Result<Output> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

fn ip(args: &[&str]) -> Result<()> {
    run(Command::new("ip").args(args)).map(drop)
}

/// Network namespaces joined by a bridge: `hosts[i]` has 10.X.Y.(i+1)/24.
struct Net {
    hub: String,
    hosts: Vec<String>,
    prefix: String,
}

impl Net {
    fn new(n: usize) -> Result<Self> {
        let pid = std::process::id();
        let tag = format!("{:x}", pid % 0xfffff);
        let prefix = format!("10.{}.{}", 200 + (pid / 251) % 50, pid % 251);
        let hub = format!("asy{tag}h");
        let mut net = Self {
            hub: hub.clone(),
            hosts: Vec::new(),
            prefix,
        };
        ip(&["netns", "add", &hub])?;
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &hub, "link", "set", "br0", "up"])?;
        for i in 0..n {
            let ns = format!("asy{tag}n{i}");
            ip(&["netns", "add", &ns])?;
            net.hosts.push(ns.clone());
            ip(&[
                "link",
                "add",
                "eth0",
                "netns",
                &ns,
                "type",
                "veth",
                "peer",
                "name",
                &format!("p{i}"),
                "netns",
                &hub,
            ])?;
            ip(&[
                "-n",
                &hub,
                "link",
                "set",
                &format!("p{i}"),
                "master",
                "br0",
                "up",
            ])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", net.addr(i)),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(net)
    }

    fn addr(&self, i: usize) -> String {
        format!("{}.{}", self.prefix, i + 1)
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in self.hosts.iter().chain(std::iter::once(&self.hub)) {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// A dockerd in a network namespace, with its own data root, exec root, socket
/// and (through a UTS namespace) hostname.
struct Dockerd {
    child: Child,
    dir: TempDir,
}

impl Dockerd {
    fn start(ns: &str, hostname: &str) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("assay-dockerd-")
            .tempdir()?;
        let d = dir.path();
        let log = std::fs::File::create(d.join("dockerd.log"))?;
        // `ip netns exec` would remount /sys and hide the cgroup mounts dockerd
        // needs; nsenter --net changes the network namespace only.
        let child = Command::new("unshare")
            .arg("--uts")
            .arg("sh")
            .arg("-c")
            .arg(format!(
                "hostname {hostname} && exec nsenter --net=/var/run/netns/{ns} dockerd \
                 --data-root {dr} --exec-root {er} -H unix://{sock} --pidfile {pid} \
                 --iptables=false --ip-masq=false --bridge=none \
                 --containerd-namespace {ns}d --containerd-plugins-namespace {ns}p",
                dr = d.join("data").display(),
                er = d.join("exec").display(),
                sock = d.join("docker.sock").display(),
                pid = d.join("docker.pid").display(),
            ))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting dockerd (Debian package docker.io)")?;
        let me = Self { child, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if me.docker(&["info"]).is_ok() {
                return Ok(me);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("dockerd did not start within 30 s: {}", me.log());
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("docker.sock")
    }

    fn host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default()
    }

    fn docker(&self, args: &[&str]) -> Result<String> {
        let out = run(Command::new("docker").arg("-H").arg(self.host()).args(args))?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Tries to join with `token`; the error text if it is refused.
    fn try_join(&self, token: &str, manager: &str) -> Result<(), String> {
        self.docker(&["swarm", "join", "--token", token, manager])
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

impl Dockerd {
    /// SIGTERM, so it stops its own containerd too (SIGKILL would orphan it).
    fn terminate(&self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .output();
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        self.terminate();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// (hostname, availability) of every swarm node.
fn nodes(manager: &Dockerd) -> Result<Vec<(String, String)>> {
    let out = manager.docker(&["node", "ls", "--format", "{{.Hostname}} {{.Availability}}"])?;
    Ok(out
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(h, a)| (h.to_string(), a.to_lowercase()))
        .collect())
}

fn join(
    tpm: &Swtpm,
    v: &VerifierProc,
    state: &Path,
    node: &str,
    worker: Option<&Dockerd>,
) -> Result<Output> {
    let mut extra = vec!["--orchestrator", "swarm", "--output", "json"];
    if worker.is_some() {
        extra.push("--exec");
    }
    // The attestor runs `docker swarm join` against the worker's daemon.
    let host = worker.map(Dockerd::host).unwrap_or_default();
    Ok(assay_tests::attestor_command(tpm, v, state, node, "join")?
        .env("DOCKER_HOST", host)
        .args(&extra)
        .output()?)
}

#[test]
fn only_attested_nodes_join_the_swarm_and_failing_ones_are_drained() -> Result<()> {
    let t_start = Instant::now();
    let stage = |what: &str| eprintln!("[{:>6.2?}] {what}", t_start.elapsed());
    let net = Net::new(3)?;
    let node = format!("assay-node-{}", std::process::id());
    let manager = Dockerd::start(&net.hosts[0], "assay-manager")?;
    let worker = Dockerd::start(&net.hosts[1], &node)?;
    let intruder = Dockerd::start(&net.hosts[2], "assay-intruder")?;
    stage("dockerds up");
    let maddr = format!("{}:2377", net.addr(0));
    manager.docker(&[
        "swarm",
        "init",
        "--advertise-addr",
        &maddr,
        "--listen-addr",
        &maddr,
    ])?;
    let t0 = manager.docker(&["swarm", "join-token", "-q", "worker"])?;

    let window = 4;
    let mut opts = VerifierOpts::new(format!(
        "schema = 0\nname = \"swarm\"\n[pcrs.sha256]\n16 = \"{ZERO}\"\n"
    ));
    opts.config = Some(format!(
        "[join]\norchestrator = \"swarm\"\n[join.swarm]\ndocker_host = \"{}\"\ntoken_window_secs = {window}\n",
        manager.host()
    ));
    let v = VerifierProc::start(&opts)?;
    stage("swarm initialised, verifier up");

    // The verifier rotates at start-up: the token in circulation before it dies.
    wait_for("start-up rotation", Duration::from_secs(10), || {
        Ok(manager.docker(&["swarm", "join-token", "-q", "worker"])? != t0)
    })?;
    stage("token in circulation before start-up rotated away");
    // A node whose PCR 16 was extended: FAIL, nothing issued.
    let bad_tpm = Swtpm::start()?;
    bad_tpm.tpm2(
        "tpm2_pcrextend",
        &[&format!("16:sha256={}", "ab".repeat(32))],
    )?;
    let bad_state = tempfile::tempdir()?;
    let out = join(
        &bad_tpm,
        &v,
        bad_state.path(),
        "assay-intruder",
        Some(&intruder),
    )?;
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(j["trusted"], false);
    assert!(j["grant"].is_null(), "{j}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("SWMTKN"));
    assert_eq!(nodes(&manager)?.len(), 1, "nobody joined");

    stage("failing node refused");
    // The attested node: gets the token and joins for real.
    let tpm = Swtpm::start()?;
    let state = tempfile::tempdir()?;
    let started = Instant::now();
    let out = join(&tpm, &v, state.path(), &node, Some(&worker))?;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        v.log()
    );
    let joined_in = started.elapsed();
    let j: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(j["grant"]["orchestrator"], "swarm");
    assert_eq!(j["grant"]["endpoint"], maddr);
    let t1 = j["grant"]["token"].as_str().context("token")?.to_string();
    assert!(t1.starts_with("SWMTKN-1-"), "{t1}");
    let listed = nodes(&manager)?;
    assert!(
        listed.contains(&(node.clone(), "active".into())),
        "{listed:?}"
    );
    assert!(
        !v.log().contains(&t1),
        "the swarm token must never be logged"
    );
    eprintln!("attest + join (enrollment included): {joined_in:?}");

    // The issued token dies when its window ends.
    let rotated_in = wait_for(
        "end-of-window rotation",
        Duration::from_secs(window + 10),
        || Ok(manager.docker(&["swarm", "join-token", "-q", "worker"])? != t1),
    )?;
    // A real join attempt with it is refused by the manager (each refused join
    // costs the daemon ~10 s, so the rotated-away t0 is only checked above).
    let err = intruder
        .try_join(&t1, &maddr)
        .expect_err("the issued token must die with its window");
    assert!(err.contains("join token"), "{err}");
    eprintln!("issued token rotated {rotated_in:?} after the join");

    stage("issued token refused after its window");
    // A forged failing attestation in the node's name (no valid quote) changes nothing.
    let forged = attestor(&bad_tpm, &v, bad_state.path(), &node, "attest", &[])?;
    assert_ne!(forged.status.code(), Some(0));
    std::thread::sleep(Duration::from_millis(1500));
    assert!(nodes(&manager)?.contains(&(node.clone(), "active".into())));

    // The node is tampered with: its next attestation fails, it is drained.
    tpm.tpm2(
        "tpm2_pcrextend",
        &[&format!("16:sha256={}", "cd".repeat(32))],
    )?;
    let failed_at = Instant::now();
    let out = attestor(&tpm, &v, state.path(), &node, "attest", &[])?;
    assert_eq!(out.status.code(), Some(3));
    let drained_in = wait_for("drain", Duration::from_secs(10), || {
        Ok(nodes(&manager)?.contains(&(node.clone(), "drain".into())))
    })?;
    eprintln!(
        "failed attestation → drained: {drained_in:?} (attest RPC included: {:?})",
        failed_at.elapsed()
    );
    let labels = manager.docker(&[
        "node",
        "inspect",
        &node,
        "--format",
        "{{json .Spec.Labels}}",
    ])?;
    assert!(labels.contains("assay.dev/drained"), "{labels}");

    stage("drained");
    // It passes again (reboot: PCRs reset) and is set active again.
    tpm.reboot()?;
    let out = attestor(&tpm, &v, state.path(), &node, "attest", &[])?;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for("restore", Duration::from_secs(10), || {
        Ok(nodes(&manager)?.contains(&(node.clone(), "active".into())))
    })?;
    stage("restored");
    let t = Instant::now();
    // Stopped together: each takes a few seconds to leave.
    for d in [&worker, &intruder, &manager] {
        d.terminate();
    }
    drop((worker, intruder, manager));
    eprintln!("dockerds stopped in {:?}", t.elapsed());
    Ok(())
}
