//! swtpm instances for tests.

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tempfile::TempDir;

/// A local certificate authority (swtpm_localca) that signs EK certificates.
///
/// The root and intermediate are created on first use, in a temporary directory.
pub struct TestCa {
    dir: TempDir,
}

impl TestCa {
    /// A fresh CA, distinct from every other one (for "untrusted CA" tests).
    pub fn new() -> Result<Self> {
        Self::in_dir(tempfile::Builder::new().prefix("assay-ca-").tempdir()?)
    }

    /// A fresh CA whose root and EK issuer are made by openssl with keyUsage
    /// keyCertSign and cRLSign (swtpm_localca's own issuer may not sign
    /// CRLs), so tests can revoke EK certificates ([`TestCa::crl`]).
    pub fn with_crl_signing() -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("assay-crl-ca-").tempdir()?;
        let d = dir.path();
        let ext = d.join("ca.ext");
        std::fs::write(
            &ext,
            "basicConstraints = critical, CA:TRUE, pathlen:0\nkeyUsage = critical, keyCertSign, cRLSign\n",
        )?;
        let p = |n: &str| d.join(n).display().to_string();
        let openssl = |args: &[&str]| -> Result<()> {
            let out = Command::new("openssl")
                .args(args)
                .output()
                .context("running openssl")?;
            if !out.status.success() {
                bail!("openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
            }
            Ok(())
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &p("swtpm-localca-rootca-privkey.pem"),
            "-out",
            &p("swtpm-localca-rootca-cert.pem"),
            "-subj",
            "/CN=assay test EK root (CRL)",
            "-days",
            "3650",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ])?;
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &p("signkey.pem"),
            "-out",
            &p("issuer.csr"),
            "-subj",
            "/CN=assay test EK issuer (CRL)",
        ])?;
        openssl(&[
            "x509",
            "-req",
            "-in",
            &p("issuer.csr"),
            "-CA",
            &p("swtpm-localca-rootca-cert.pem"),
            "-CAkey",
            &p("swtpm-localca-rootca-privkey.pem"),
            "-set_serial",
            "2",
            "-days",
            "3650",
            "-extfile",
            &ext.display().to_string(),
            "-out",
            &p("issuercert.pem"),
        ])?;
        std::fs::write(d.join("certserial"), "10\n")?;
        std::fs::write(d.join("index.txt"), "")?;
        std::fs::write(d.join("crlnumber"), "01\n")?;
        std::fs::write(
            d.join("openssl-ca.cnf"),
            format!(
                "[ca]\ndefault_ca = test\n[test]\ndatabase = {0}/index.txt\ncrlnumber = {0}/crlnumber\ndefault_md = sha256\ndefault_crl_days = 30\nunique_subject = no\n",
                d.display()
            ),
        )?;
        Self::in_dir(dir)
    }

    /// A CRL (PEM) from the EK issuer of a [`TestCa::with_crl_signing`] CA,
    /// made by `openssl ca`, revoking the given DER certificates (cumulative:
    /// what was revoked before stays revoked). `expired` dates it in the past.
    pub fn crl(&self, revoke: &[&[u8]], expired: bool) -> Result<Vec<u8>> {
        let d = self.dir.path();
        let cnf = d.join("openssl-ca.cnf").display().to_string();
        let key = d.join("signkey.pem").display().to_string();
        let cert = self.issuer_cert_path().display().to_string();
        let run = |args: &[&str]| -> Result<Vec<u8>> {
            let out = Command::new("openssl")
                .args([
                    "ca", "-batch", "-config", &cnf, "-keyfile", &key, "-cert", &cert,
                ])
                .args(args)
                .output()
                .context("running openssl ca")?;
            if !out.status.success() {
                bail!(
                    "openssl ca {args:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            Ok(out.stdout)
        };
        for (i, der) in revoke.iter().enumerate() {
            let pem = d.join(format!("revoke-{i}.pem"));
            let out = Command::new("openssl")
                .args(["x509", "-inform", "DER", "-out"])
                .arg(&pem)
                .stdin(Stdio::piped())
                .spawn()
                .and_then(|mut c| {
                    use std::io::Write as _;
                    c.stdin.take().map(|mut s| s.write_all(der)).transpose()?;
                    c.wait_with_output()
                })?;
            if !out.status.success() {
                bail!("openssl x509: converting a certificate to PEM failed");
            }
            run(&[
                "-revoke",
                &pem.display().to_string(),
                "-crl_reason",
                "keyCompromise",
            ])?;
        }
        if expired {
            run(&[
                "-gencrl",
                "-crl_lastupdate",
                "20250101000000Z",
                "-crl_nextupdate",
                "20250201000000Z",
            ])
        } else {
            run(&["-gencrl"])
        }
    }

    fn in_dir(dir: TempDir) -> Result<Self> {
        let d = dir.path();
        std::fs::write(
            d.join("swtpm-localca.conf"),
            format!(
                "statedir = {0}\nsigningkey = {0}/signkey.pem\nissuercert = {0}/issuercert.pem\ncertserial = {0}/certserial\n",
                d.display()
            ),
        )?;
        std::fs::write(
            d.join("swtpm_setup.conf"),
            format!(
                "create_certs_tool = /usr/bin/swtpm_localca\ncreate_certs_tool_config = {}/swtpm-localca.conf\ncreate_certs_tool_options = /etc/swtpm-localca.options\nactive_pcr_banks = sha256\n",
                d.display()
            ),
        )?;
        let ca = Self { dir };
        // Make the CA now, with a throwaway TPM, so that parallel users never race to create it.
        let scratch = tempfile::Builder::new()
            .prefix("assay-ca-init-")
            .tempdir()?;
        ca.manufacture(scratch.path())?;
        if !ca.root_cert_path().exists() || !ca.issuer_cert_path().exists() {
            bail!(
                "swtpm_localca did not create its CA in {}",
                ca.dir.path().display()
            );
        }
        Ok(ca)
    }

    /// One CA shared by every test in this process. A static is never
    /// dropped, so its directory is named after the process and the ones left
    /// by test processes that have exited are removed here.
    pub fn shared() -> &'static TestCa {
        static CA: OnceLock<TestCa> = OnceLock::new();
        CA.get_or_init(|| {
            const PREFIX: &str = "assay-shared-ca-";
            let tmp = std::env::temp_dir();
            if let Ok(entries) = std::fs::read_dir(&tmp) {
                for e in entries.flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let Some(pid) = name.strip_prefix(PREFIX).and_then(|p| p.split('.').next())
                    else {
                        continue;
                    };
                    if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
                        let _ = std::fs::remove_dir_all(e.path());
                    }
                }
            }
            let dir = tempfile::Builder::new()
                .prefix(&format!("{PREFIX}{}.", std::process::id()))
                .tempdir()
                .expect("a temp dir for the shared test CA");
            TestCa::in_dir(dir)
                .expect("creating the shared swtpm test CA (is swtpm-tools installed?)")
        })
    }

    /// The self-signed root certificate (PEM).
    pub fn root_cert_path(&self) -> PathBuf {
        self.dir.path().join("swtpm-localca-rootca-cert.pem")
    }

    /// The intermediate's private key (PEM; unencrypted for [`TestCa::with_crl_signing`]).
    pub fn issuer_key_path(&self) -> PathBuf {
        self.dir.path().join("signkey.pem")
    }

    /// An EK certificate (DER) from this CA's intermediate for the public key in
    /// `key_pem` (e.g. `tpm2_createek -f pem` output), as a TPM vendor issues one:
    /// end entity, critical keyUsage `key_usage` (keyEncipherment for RSA,
    /// keyAgreement for ECC). Needs an unencrypted issuer key ([`TestCa::with_crl_signing`]).
    pub fn issue_ek_certificate(&self, key_pem: &Path, key_usage: &str) -> Result<Vec<u8>> {
        let dir = tempfile::tempdir()?;
        let ext = dir.path().join("ext.cnf");
        std::fs::write(
            &ext,
            format!("[v3]\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,{key_usage}\n"),
        )?;
        let der = dir.path().join("ek.der");
        let out = Command::new("openssl")
            .args(["x509", "-new", "-force_pubkey"])
            .arg(key_pem)
            .args(["-subj", "/CN=assay test EK", "-days", "30", "-CA"])
            .arg(self.issuer_cert_path())
            .arg("-CAkey")
            .arg(self.issuer_key_path())
            .arg("-extfile")
            .arg(&ext)
            .args(["-extensions", "v3", "-outform", "DER", "-out"])
            .arg(&der)
            .output()
            .context("running openssl")?;
        if !out.status.success() {
            bail!(
                "openssl x509 -new: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(std::fs::read(der)?)
    }

    /// The intermediate certificate that signs EK certificates (PEM).
    pub fn issuer_cert_path(&self) -> PathBuf {
        self.dir.path().join("issuercert.pem")
    }

    /// Runs swtpm_setup: TPM 2.0 state with RSA + ECC EKs and their certificates.
    fn manufacture(&self, state: &Path) -> Result<()> {
        self.manufacture_with(state, &["--create-ek-cert", "--create-platform-cert"])
    }

    /// Runs swtpm_setup with `extra` flags (none: no EK certificate in NV).
    fn manufacture_with(&self, state: &Path, extra: &[&str]) -> Result<()> {
        let out = Command::new("swtpm_setup")
            .arg("--tpm2")
            .args(extra)
            .args(["--lock-nvram", "--overwrite"])
            .arg("--tpmstate")
            .arg(state)
            .arg("--config")
            .arg(self.dir.path().join("swtpm_setup.conf"))
            .output()
            .context("running swtpm_setup (apt-get install swtpm swtpm-tools)")?;
        if !out.status.success() {
            bail!(
                "swtpm_setup failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }
}

/// A running swtpm on 127.0.0.1, killed and removed on drop.
pub struct Swtpm {
    child: Child,
    port: u16,
    state: TempDir,
}

impl Swtpm {
    /// A TPM whose EK certificates are signed by the shared test CA.
    pub fn start() -> Result<Self> {
        Self::start_with_ca(TestCa::shared())
    }

    /// A TPM whose EK certificates are signed by `ca`.
    pub fn start_with_ca(ca: &TestCa) -> Result<Self> {
        let state = tempfile::Builder::new().prefix("assay-swtpm-").tempdir()?;
        ca.manufacture(state.path())?;
        Self::run(state)
    }

    /// A TPM with no EK certificate in NV (as many firmware TPMs ship: the
    /// vendor publishes the certificate instead).
    pub fn start_without_ek_certificate() -> Result<Self> {
        let state = tempfile::Builder::new().prefix("assay-swtpm-").tempdir()?;
        TestCa::shared().manufacture_with(state.path(), &[])?;
        Self::run(state)
    }

    /// A TPM manufactured by swtpm_setup with `flags` (e.g. `--create-ek-cert
    /// --rsa-keysize 3072`), EK certificates signed by the shared test CA.
    pub fn start_manufactured_with(flags: &[&str]) -> Result<Self> {
        let state = tempfile::Builder::new().prefix("assay-swtpm-").tempdir()?;
        TestCa::shared().manufacture_with(state.path(), flags)?;
        Self::run(state)
    }

    fn run(state: TempDir) -> Result<Self> {
        // Ports are picked free and then handed to swtpm, so another process can take
        // them in between: retry a bounded number of times.
        let mut last_err = None;
        for _ in 0..20 {
            let port = free_port_pair()?;
            let mut child = Command::new("swtpm")
                .args(["socket", "--tpm2", "--flags", "not-need-init,startup-clear"])
                .arg("--tpmstate")
                .arg(format!("dir={}", state.path().display()))
                .arg("--server")
                .arg(format!("type=tcp,port={port},bindaddr=127.0.0.1"))
                .arg("--ctrl")
                .arg(format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .context("starting swtpm")?;
            match wait_listening(&mut child, port, Duration::from_secs(10)) {
                Ok(()) => return Ok(Self { child, port, state }),
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("swtpm did not start")))
    }

    /// The public key (PEM) of the EK tpm2_createek makes from template `alg`
    /// (rsa, ecc, rsa3072, ecc384), written to `out`; the EK is flushed again.
    pub fn ek_public_pem(&self, alg: &str, out: &Path) -> Result<()> {
        let ctx = out.with_extension("ctx");
        let (ctx, out) = (ctx.display().to_string(), out.display().to_string());
        self.tpm2(
            "tpm2_createek",
            &["-G", alg, "-c", &ctx, "-u", &out, "-f", "pem"],
        )?;
        self.tpm2("tpm2_flushcontext", &["-t"])?;
        Ok(())
    }

    /// The TCTI string for tss-esapi / tpm2-tools (`swtpm:host=127.0.0.1,port=P`).
    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn state_dir(&self) -> &Path {
        self.state.path()
    }

    /// The TPM's whole persistent state (swtpm's `tpm2-00.permall`): what an
    /// attacker who copies a TPM's state file keeps.
    pub fn save_state(&self) -> Result<Vec<u8>> {
        std::fs::read(self.state.path().join("tpm2-00.permall")).context("reading tpm2-00.permall")
    }

    /// Stops this swtpm, puts `state` (from [`Swtpm::save_state`]) back and
    /// starts it again on the same state dir (a new port): an older copy of
    /// the TPM restored, as in a rollback attack on a virtual TPM.
    pub fn restore_state(&mut self, state: &[u8]) -> Result<()> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::fs::write(self.state.path().join("tpm2-00.permall"), state)?;
        let dir = tempfile::Builder::new().prefix("assay-swtpm-").tempdir()?;
        // `run` takes ownership of a TempDir: swap ours in for the restart.
        let ours = std::mem::replace(&mut self.state, dir);
        let mut restarted = Self::run(ours)?;
        // The old (stopped) process and the placeholder dir go with `restarted`.
        std::mem::swap(self, &mut restarted);
        Ok(())
    }

    /// A power cycle: the TPM is re-initialised through swtpm's control channel
    /// (`swtpm_ioctl -i`) and started up again (`tpm2_startup -c`), so PCRs are
    /// back at their reset values while NV state (EK, certificates) stays.
    pub fn reboot(&self) -> Result<()> {
        let out = Command::new("swtpm_ioctl")
            .arg("--tcp")
            .arg(format!("127.0.0.1:{}", self.port + 1))
            .arg("-i")
            .output()
            .context("running swtpm_ioctl (apt-get install swtpm-tools)")?;
        if !out.status.success() {
            bail!(
                "swtpm_ioctl -i failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        self.tpm2("tpm2_startup", &["-c"]).map(drop)
    }

    /// Runs a tpm2-tools command against this TPM and returns its stdout.
    pub fn tpm2(&self, tool: &str, args: &[&str]) -> Result<Vec<u8>> {
        let out = Command::new(tool)
            .args(args)
            .env("TPM2TOOLS_TCTI", self.tcti())
            .output()
            .with_context(|| format!("running {tool} (apt-get install tpm2-tools)"))?;
        if !out.status.success() {
            bail!(
                "{tool} {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(out.stdout)
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port P on 127.0.0.1 such that P and P+1 are both free right now.
pub fn free_port_pair() -> Result<u16> {
    for _ in 0..100 {
        let a = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))?;
        let port = a.local_addr()?.port();
        if port < u16::MAX
            && TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port + 1)).is_ok()
        {
            return Ok(port);
        }
    }
    bail!("no free pair of loopback ports found in 100 tries")
}

/// A free port on 127.0.0.1 right now.
pub fn free_port() -> Result<u16> {
    Ok(
        TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))?
            .local_addr()?
            .port(),
    )
}

fn wait_listening(child: &mut Child, port: u16, limit: Duration) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(status) = child.try_wait()? {
            let mut err = String::new();
            if let Some(mut s) = child.stderr.take() {
                use std::io::Read;
                let _ = s.read_to_string(&mut err);
            }
            bail!("swtpm exited with {status}: {err}");
        }
        if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("swtpm did not listen on port {port} within {limit:?}")
}
