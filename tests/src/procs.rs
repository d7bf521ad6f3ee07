//! Real Assay processes for end-to-end tests: the verifier binary on a free
//! loopback port with its own TLS material, data dir and policy, and the
//! attestor binary pointed at it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tempfile::TempDir;

use crate::swtpm::{Swtpm, TestCa};

/// Path of a workspace binary (built by `cargo build --workspace --bins`).
pub fn bin(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // target/<profile>/deps/<test-binary> → target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .context("locating the target directory")?;
    let p = dir.join(name);
    if !p.exists() {
        bail!(
            "{} is missing: run `cargo build --workspace --bins` before the tests",
            p.display()
        );
    }
    Ok(p)
}

/// Options for a test verifier.
pub struct VerifierOpts {
    pub policy: String,
    pub ek_roots: Vec<PathBuf>,
    pub ek_intermediates: Vec<PathBuf>,
    pub nonce_ttl_secs: u64,
    pub token_ttl_secs: u64,
    /// Extra TOML for `--config` (e.g. a `[join]` section).
    pub config: Option<String>,
    /// More `serve` arguments (e.g. `--log-format json`).
    pub args: Vec<String>,
}

impl VerifierOpts {
    /// Trusts the shared swtpm test CA; `policy` is the policy file's text.
    pub fn new(policy: impl Into<String>) -> Self {
        let ca = TestCa::shared();
        Self {
            policy: policy.into(),
            ek_roots: vec![ca.root_cert_path()],
            ek_intermediates: vec![ca.issuer_cert_path()],
            nonce_ttl_secs: 60,
            token_ttl_secs: 600,
            config: None,
            args: Vec::new(),
        }
    }
}

/// A running `assay-verifier serve`, killed on drop.
pub struct VerifierProc {
    child: Child,
    /// What it printed on stdout before `listening on ADDR`.
    printed: Vec<String>,
    /// The `serve` command line, for `restart`.
    args: Vec<std::ffi::OsString>,
    /// Shared with replicas ([`VerifierProc::replica`]).
    pub dir: Arc<TempDir>,
    /// Its log file in `dir`.
    log_name: String,
    pub url: String,
    pub ca_pem: PathBuf,
    pub data_dir: PathBuf,
}

impl VerifierProc {
    pub fn start(opts: &VerifierOpts) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("assay-verifier-")
            .tempdir()?;
        let tls = dir.path().join("tls");
        run_ok(
            Command::new(bin("assay-verifier")?)
                .arg("init")
                .arg("--dir")
                .arg(&tls),
        )?;
        // The operator's client certificate, for `cli`.
        run_ok(
            Command::new(bin("assay-verifier")?)
                .args([
                    "client-cert",
                    "--role",
                    "operator",
                    "--name",
                    "test-operator",
                    "--dir",
                ])
                .arg(&tls),
        )?;
        let policy = dir.path().join("policy.toml");
        std::fs::write(&policy, &opts.policy)?;
        let data_dir = dir.path().join("data");
        let mut cmd = Command::new(bin("assay-verifier")?);
        cmd.arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--policy")
            .arg(&policy)
            .arg("--tls-cert")
            .arg(tls.join("server.pem"))
            .arg("--tls-key")
            .arg(tls.join("server.key"))
            .arg("--client-ca")
            .arg(tls.join("clients-ca.pem"))
            .arg("--nonce-ttl-secs")
            .arg(opts.nonce_ttl_secs.to_string())
            .arg("--token-ttl-secs")
            .arg(opts.token_ttl_secs.to_string());
        if let Some(text) = &opts.config {
            let path = dir.path().join("verifier.toml");
            std::fs::write(&path, text)?;
            cmd.arg("--config").arg(path);
        }
        for r in &opts.ek_roots {
            cmd.arg("--ek-root").arg(r);
        }
        for r in &opts.ek_intermediates {
            cmd.arg("--ek-intermediate").arg(r);
        }
        cmd.args(&opts.args);
        let args: Vec<std::ffi::OsString> = cmd.get_args().map(|a| a.to_owned()).collect();
        let log_name = "verifier.log".to_string();
        let (child, addr, printed) = spawn(dir.path(), &log_name, &args)?;
        Ok(Self {
            child,
            printed,
            args,
            url: format!("https://{addr}"),
            ca_pem: tls.join("ca.pem"),
            data_dir,
            dir: Arc::new(dir),
            log_name,
        })
    }

    /// Another verifier process with the same command line, TLS material,
    /// keys, policy and config (so the same store: use it with PostgreSQL),
    /// on its own port, logging to `verifier-<port>.log`.
    pub fn replica(&self) -> Result<Self> {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
        let log_name = format!(
            "verifier-replica-{}.log",
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let (child, addr, printed) = spawn(self.dir.path(), &log_name, &self.args)?;
        Ok(Self {
            child,
            printed,
            args: self.args.clone(),
            url: format!("https://{addr}"),
            ca_pem: self.ca_pem.clone(),
            data_dir: self.data_dir.clone(),
            dir: Arc::clone(&self.dir),
            log_name,
        })
    }

    /// Starts the verifier again on the same data, TLS material and config
    /// (after `kill`); it listens on a new port (`url` is updated).
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        let (child, addr, printed) = spawn(self.dir.path(), &self.log_name, &self.args)?;
        self.child = child;
        self.printed = printed;
        self.url = format!("https://{addr}");
        Ok(())
    }

    /// The address of another listener it printed at start-up as `WHAT on
    /// ADDR` (`metrics`, `fleet page`).
    pub fn listener(&self, what: &str) -> Option<String> {
        let prefix = format!("{what} on ");
        self.printed
            .iter()
            .find_map(|l| l.strip_prefix(&prefix).map(str::to_string))
    }

    /// The verifier's log so far (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join(&self.log_name)).unwrap_or_default()
    }

    /// Runs an `assay-verifier` client command (`history`, `token verify`, …)
    /// against this verifier, as its operator.
    pub fn cli(&self, args: &[&str]) -> Result<Output> {
        let tls = self.dir.path().join("tls");
        self.cli_as(
            args,
            Some((
                &tls.join("test-operator.pem"),
                &tls.join("test-operator.key"),
            )),
        )
    }

    /// Runs an `assay-verifier` client command with the given client
    /// certificate and key (None: no client certificate).
    pub fn cli_as(&self, args: &[&str], cert: Option<(&Path, &Path)>) -> Result<Output> {
        let mut cmd = Command::new(bin("assay-verifier")?);
        cmd.args(args)
            .env("ASSAY_VERIFIER", &self.url)
            .env("ASSAY_CA", &self.ca_pem)
            .env_remove("ASSAY_CLIENT_CERT")
            .env_remove("ASSAY_CLIENT_KEY");
        if let Some((c, k)) = cert {
            cmd.env("ASSAY_CLIENT_CERT", c).env("ASSAY_CLIENT_KEY", k);
        }
        Ok(cmd.output()?)
    }

    /// Issues a client certificate (`assay-verifier client-cert`); its (cert, key) paths.
    pub fn client_cert(
        &self,
        role: &str,
        name: &str,
        node: Option<&str>,
    ) -> Result<(PathBuf, PathBuf)> {
        let tls = self.dir.path().join("tls");
        let mut cmd = Command::new(bin("assay-verifier")?);
        cmd.args(["client-cert", "--role", role, "--name", name, "--dir"])
            .arg(&tls);
        if let Some(n) = node {
            cmd.args(["--node", n]);
        }
        run_ok(&mut cmd)?;
        Ok((
            tls.join(format!("{name}.pem")),
            tls.join(format!("{name}.key")),
        ))
    }

    /// The verifier's process id (for CPU and memory figures).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the verifier (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Asks it to stop (SIGTERM) and waits up to `within`: its exit status
    /// and how long the stop took, or an error (it is killed then).
    pub fn terminate(&mut self, within: Duration) -> Result<(std::process::ExitStatus, Duration)> {
        let start = std::time::Instant::now();
        let st = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        anyhow::ensure!(st.success(), "kill -TERM failed");
        while start.elapsed() < within {
            if let Some(status) = self.child.try_wait()? {
                return Ok((status, start.elapsed()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        bail!("still running {within:?} after SIGTERM")
    }
}

impl Drop for VerifierProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Spawns `assay-verifier <args>` logging (appending) to `dir/<log_name>`;
/// the child and the address it listens on.
/// The lines `child` writes on its (piped) stdout, as they come, from a
/// thread of their own.
pub fn stdout_lines(child: &mut Child) -> Result<mpsc::Receiver<String>> {
    let stdout = child.stdout.take().context("the child's stdout (piped?)")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    Ok(rx)
}

fn spawn(
    dir: &Path,
    log_name: &str,
    args: &[std::ffi::OsString],
) -> Result<(Child, String, Vec<String>)> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(log_name))?;
    let mut child = Command::new(bin("assay-verifier")?)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()?;
    let rx = stdout_lines(&mut child)?;
    // Lines before `listening on ADDR` name the other listeners (`metrics on
    // ADDR`, …).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut printed = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => match line.strip_prefix("listening on ") {
                Some(a) => return Ok((child, a.to_string(), printed)),
                None => printed.push(line),
            },
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                let log = std::fs::read_to_string(dir.join(log_name)).unwrap_or_default();
                bail!("assay-verifier exited or did not start within 30 s:\n{log}");
            }
        }
    }
}

/// `assay-attestor <sub>` for `node_id` against `tpm` and `v`, with state
/// (and its container measurement log) in `state_dir`; add arguments, then run it.
pub fn attestor_command(
    tpm: &Swtpm,
    v: &VerifierProc,
    state_dir: &Path,
    node_id: &str,
    sub: &str,
) -> Result<Command> {
    let mut cmd = Command::new(bin("assay-attestor")?);
    cmd.arg(sub)
        .arg("--verifier")
        .arg(&v.url)
        .arg("--ca")
        .arg(&v.ca_pem)
        .arg("--tcti")
        .arg(tpm.tcti())
        .arg("--state-dir")
        .arg(state_dir)
        .arg("--node-id")
        .arg(node_id)
        // Never the host's /run/assay-attestor: each test node keeps its own.
        .env("ASSAY_CEL_LOG", state_dir.join("measurements.cel"));
    Ok(cmd)
}

/// Runs `assay-attestor <sub> … extra` (see [`attestor_command`]).
pub fn attestor(
    tpm: &Swtpm,
    v: &VerifierProc,
    state_dir: &Path,
    node_id: &str,
    sub: &str,
    extra: &[&str],
) -> Result<Output> {
    Ok(attestor_command(tpm, v, state_dir, node_id, sub)?
        .args(extra)
        .output()?)
}

/// The DER of a PEM certificate file, converted by openssl.
pub fn der_of_pem(pem: &Path) -> Result<Vec<u8>> {
    let out = Command::new("openssl")
        .args(["x509", "-outform", "DER", "-in"])
        .arg(pem)
        .output()?;
    if !out.status.success() {
        bail!(
            "openssl x509 {}: {}",
            pem.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out.stdout)
}

/// A process's stdout and stderr, for assertion messages.
pub fn output_text(o: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn run_ok(cmd: &mut Command) -> Result<Output> {
    let out = cmd.output()?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(out)
}
