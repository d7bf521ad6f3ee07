//! The fleet page (`[web]`) as its users see it: a real verifier with the
//! page on its own HTTPS listener, a fleet of simulated nodes and one real
//! swtpm node whose PCR is tampered with, looked at with headless Chromium
//! (Debian's `chromium`; an NSS database in a temporary HOME holds the CA
//! and the auditor's PKCS#12, and a profile setting picks the certificate,
//! nothing written outside temporary directories) and with curl, a client
//! Assay did not write, for the status codes and headers.
//!
//! The screenshot goes to a temporary directory; with
//! `ASSAY_UPDATE_SCREENSHOT=1` it also replaces the README's copy,
//! `tests/screenshots/fleet-page.png`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use assay_attestor::tpm::Tpm;
use assay_tests::node::Node;
use assay_tests::simnode::{self, AkKind, SimNode, SoftEk};
use assay_tests::{output_text, VerifierOpts, VerifierProc};

const ZERO: [u8; 32] = [0; 32];

/// PCRs 0, 1, 2 and 16 at their reset value (all zeros), as a fresh swtpm has them.
fn policy() -> String {
    let z = hex::encode(ZERO);
    format!(
        "schema = 0\nname = \"fleet-baseline\"\n[pcrs.sha256]\n0 = \"{z}\"\n1 = \"{z}\"\n2 = \"{z}\"\n16 = \"{z}\"\n"
    )
}

/// Runs `cmd`, killing it if it has not finished within `within`.
fn run_bounded(cmd: &mut Command, within: Duration) -> Result<Output> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {cmd:?}"))?;
    let start = Instant::now();
    loop {
        if child.try_wait()?.is_some() {
            return Ok(child.wait_with_output()?);
        }
        if start.elapsed() > within {
            let _ = child.kill();
            let out = child.wait_with_output()?;
            bail!(
                "{cmd:?} did not finish within {within:?}:\n{}",
                output_text(&out)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An answer as curl saw it.
struct Http {
    status: u16,
    headers: String,
    body: String,
}

/// `curl -i` against the page; `cert`: the client certificate and key.
fn curl(url: &str, ca: &Path, cert: Option<&(PathBuf, PathBuf)>, extra: &[&str]) -> Result<Http> {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-i", "--max-time", "20", "--cacert"])
        .arg(ca)
        .args(extra);
    if let Some((c, k)) = cert {
        cmd.arg("--cert").arg(c).arg("--key").arg(k);
    }
    let out = run_bounded(cmd.arg(url), Duration::from_secs(30))?;
    if !out.status.success() {
        bail!("curl {url}: {}", output_text(&out));
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (headers, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = headers
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no status line: {headers}"))?;
    Ok(Http {
        status,
        headers: headers.to_ascii_lowercase(),
        body: body.to_string(),
    })
}

/// A Chromium profile: HOME with an NSS database trusting the verifier's CA
/// (and holding a client certificate), and a user data dir whose
/// preferences auto-select a certificate issued by the clients CA for the
/// page's origin (the AutoSelectCertificateForUrls content setting, set in
/// the profile instead of a machine-wide policy under /etc).
struct Browser {
    home: tempfile::TempDir,
    data: tempfile::TempDir,
}

impl Browser {
    fn new(ca_pem: &Path, client_p12: Option<&Path>, origin: &str) -> Result<Self> {
        let home = tempfile::Builder::new()
            .prefix("assay-chromium-home-")
            .tempdir()?;
        let data = tempfile::Builder::new()
            .prefix("assay-chromium-")
            .tempdir()?;
        let db = home.path().join(".pki/nssdb");
        std::fs::create_dir_all(&db)?;
        let db = format!("sql:{}", db.display());
        let ok = |cmd: &mut Command| -> Result<()> {
            let out = run_bounded(cmd, Duration::from_secs(30))?;
            if !out.status.success() {
                bail!("{cmd:?}: {}", output_text(&out));
            }
            Ok(())
        };
        ok(Command::new("certutil").args(["-N", "--empty-password", "-d", &db]))?;
        ok(Command::new("certutil")
            .args([
                "-A",
                "-t",
                "C,,",
                "-n",
                "assay-verifier-ca",
                "-d",
                &db,
                "-i",
            ])
            .arg(ca_pem))?;
        if let Some(p12) = client_p12 {
            ok(Command::new("pk12util")
                .args(["-d", &db, "-W", "", "-i"])
                .arg(p12))?;
        }
        let prefs = serde_json::json!({"profile": {"content_settings": {"exceptions": {
            "auto_select_certificate": {
                format!("{origin},*"): {
                    "last_modified": "13300000000000000",
                    "setting": {"filters": [{"ISSUER": {"CN": "Assay clients CA"}}]}
                }
            }
        }}}});
        std::fs::create_dir_all(data.path().join("Default"))?;
        std::fs::write(
            data.path().join("Default/Preferences"),
            serde_json::to_vec(&prefs)?,
        )?;
        Ok(Self { home, data })
    }

    fn run(&self, args: &[&str], url: &str) -> Result<Output> {
        let mut cmd = Command::new("/usr/bin/chromium");
        cmd.env("HOME", self.home.path())
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
            ])
            .arg(format!("--user-data-dir={}", self.data.path().display()))
            .args(args)
            .arg(url);
        let out = run_bounded(&mut cmd, Duration::from_secs(90))?;
        if !out.status.success() {
            bail!("chromium {args:?} {url}: {}", output_text(&out));
        }
        Ok(out)
    }

    /// The page's DOM after it loaded.
    fn dom(&self, url: &str) -> Result<String> {
        Ok(String::from_utf8_lossy(&self.run(&["--dump-dom"], url)?.stdout).into_owned())
    }

    fn screenshot(&self, url: &str, out: &Path) -> Result<()> {
        self.run(
            &[
                &format!("--screenshot={}", out.display()),
                "--window-size=1280,1000",
            ],
            url,
        )?;
        Ok(())
    }
}

/// The `<tr>` of `node` in the fleet table.
fn row<'a>(html: &'a str, node: &str) -> &'a str {
    let (end, more) = (format!("?id={node}\""), format!("?id={node}&amp;"));
    html.split("<tr")
        .find(|r| (r.contains(&end) || r.contains(&more)) && r.contains("badge"))
        .unwrap_or_else(|| panic!("no row for {node} in:\n{html}"))
}

fn p12(cert: &(PathBuf, PathBuf), out: &Path) -> Result<()> {
    let o = run_bounded(
        Command::new("openssl")
            .args([
                "pkcs12",
                "-export",
                "-passout",
                "pass:",
                "-name",
                "assay-auditor",
                "-in",
            ])
            .arg(&cert.0)
            .arg("-inkey")
            .arg(&cert.1)
            .arg("-out")
            .arg(out),
        Duration::from_secs(30),
    )?;
    if !o.status.success() {
        bail!("openssl pkcs12 -export: {}", output_text(&o));
    }
    Ok(())
}

#[tokio::test(flavor = "current_thread")]
async fn fleet_page_shows_a_tampered_node_failing_to_an_auditor_in_a_browser_and_refuses_without_a_role(
) {
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "Debian's chromium is needed (tests/install-deps.sh installs it)"
    );
    let ek = SoftEk::new().unwrap();
    let mut opts = VerifierOpts::new(policy());
    opts.ek_roots.push(ek.root_pem());
    opts.config = Some("[web]\nlisten = \"127.0.0.1:0\"\nnodes_per_page = 50\n".into());
    let v = VerifierProc::start(&opts).unwrap();
    let addr = v
        .listener("fleet page")
        .unwrap_or_else(|| panic!("no `fleet page on ADDR` line; log:\n{}", v.log()));
    let origin = format!("https://{addr}");
    let ca = v.ca_pem.clone();

    // A fleet: simulated nodes that pass, one with another firmware (PCR 1)…
    let mut c = pb_client(&v).await;
    for i in 1..=8 {
        let mut n = SimNode::new(format!("rack1-node-{i:02}"), AkKind::P256, &ek).unwrap();
        n.pcr_overrides = [0, 1, 2, 16].map(|p| (p, ZERO.to_vec())).to_vec();
        if i == 5 {
            n.pcr_overrides[1].1 = vec![0x11; 32];
        }
        n.enroll(&ek, &mut c).await.unwrap();
        let r = n.attest(&mut c).await.unwrap();
        assert_eq!(r.verdict.unwrap().passed, i != 5);
    }
    // …and a real swtpm node that passes, then has PCR 16 extended.
    let node = Node::new("edge-node-tampered");
    let out = node.run(&v, "join", &["--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let passed_at = assay_verifier::web::utc(now_unix());
    std::thread::sleep(Duration::from_millis(1100));
    Tpm::open(&node.tpm.tcti())
        .unwrap()
        .extend_pcr_sha256(16, &[0x42; 32])
        .unwrap();
    let out = node.run(&v, "join", &["--output", "json"]);
    assert_eq!(out.status.code(), Some(3), "{}", output_text(&out));
    // An operator action: the failing simulated node's tokens revoked.
    let o = v
        .cli(&["token", "revoke", "--node", "rack1-node-05"])
        .unwrap();
    assert!(o.status.success(), "{}", output_text(&o));

    let auditor = v.client_cert("auditor", "fleet-auditor", None).unwrap();
    let operator_cert = {
        let tls = v.dir.path().join("tls");
        (tls.join("test-operator.pem"), tls.join("test-operator.key"))
    };
    let node_cert = v
        .client_cert("node", "fleet-node-cert", Some("edge-node-tampered"))
        .unwrap();
    let orchestrator = v
        .client_cert("orchestrator", "fleet-orchestrator", None)
        .unwrap();

    // curl: who is answered what.
    let page = curl(&format!("{origin}/"), &ca, Some(&auditor), &[]).unwrap();
    assert_eq!(page.status, 200, "{}", page.body);
    let bad = row(&page.body, "edge-node-tampered");
    assert!(bad.contains("badge fail"), "{bad}");
    assert!(bad.contains("pcr.sha256.16</code> expected"), "{bad}");
    assert!(
        bad.contains(&hex::encode(ZERO)),
        "the expected value: {bad}"
    );
    assert!(bad.contains("default@1"), "the policy version: {bad}");
    assert!(row(&page.body, "rack1-node-05").contains("pcr.sha256.1</code>"));
    assert!(row(&page.body, "rack1-node-01").contains("badge pass"));
    assert!(page.body.contains("revoked"), "operator actions listed");
    assert!(
        page.body.contains("Last signed checkpoint")
            || page.body.contains("No signed checkpoint yet")
    );
    for h in [
        "content-security-policy: default-src 'none'; style-src 'self'",
        "frame-ancestors 'none'",
        "x-content-type-options: nosniff",
        "referrer-policy: no-referrer",
        "content-type: text/html; charset=utf-8",
    ] {
        assert!(page.headers.contains(h), "{h} in\n{}", page.headers);
    }
    assert_eq!(
        curl(&format!("{origin}/"), &ca, Some(&operator_cert), &[])
            .unwrap()
            .status,
        200
    );
    let none = curl(&format!("{origin}/"), &ca, None, &[]).unwrap();
    assert_eq!(none.status, 403, "no certificate: refused");
    assert!(none.body.contains("No client certificate"), "{}", none.body);
    assert!(!none.body.contains("edge-node-tampered"));
    for cert in [&node_cert, &orchestrator] {
        let r = curl(
            &format!("{origin}/node?id=edge-node-tampered"),
            &ca,
            Some(cert),
            &[],
        )
        .unwrap();
        assert_eq!(r.status, 403, "{}", r.body);
        assert!(!r.body.contains("pcr.sha256.16"));
    }
    // An auditor certificate from another CA: refused at the handshake.
    let stranger = (
        v.dir.path().join("stranger.pem"),
        v.dir.path().join("stranger.key"),
    );
    let o = run_bounded(
        Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ])
            .args(["-nodes", "-days", "1", "-subj", "/CN=stranger"])
            .args(["-addext", "subjectAltName=URI:urn:assay:role:auditor"])
            .arg("-keyout")
            .arg(&stranger.1)
            .arg("-out")
            .arg(&stranger.0),
        Duration::from_secs(30),
    )
    .unwrap();
    assert!(o.status.success(), "{}", output_text(&o));
    assert!(
        curl(&format!("{origin}/"), &ca, Some(&stranger), &[]).is_err(),
        "a certificate from another CA must fail the handshake"
    );
    let post = curl(&format!("{origin}/"), &ca, Some(&auditor), &["-X", "POST"]).unwrap();
    assert_eq!(post.status, 405);
    for (path, status) in [
        ("/nowhere", 404),
        ("/node?id=..", 400),
        ("/node?id=never-seen", 404),
        ("/?state=maybe", 400),
        ("/?at=yesterday", 400),
        ("/style.css", 200),
    ] {
        let r = curl(&format!("{origin}{path}"), &ca, Some(&auditor), &[]).unwrap();
        assert_eq!(r.status, status, "{path}: {}", r.body);
    }
    // The standing at a chosen time: before the tamper, the node passed.
    let then = curl(
        &format!("{origin}/?at={}", passed_at.replace(' ', "+")),
        &ca,
        Some(&auditor),
        &[],
    )
    .unwrap();
    assert_eq!(then.status, 200, "{}", then.body);
    assert!(row(&then.body, "edge-node-tampered").contains("badge pass"));
    // The node's timeline: the failure with expected vs actual, then the pass.
    let timeline = curl(
        &format!("{origin}/node?id=edge-node-tampered"),
        &ca,
        Some(&auditor),
        &[],
    )
    .unwrap();
    assert_eq!(timeline.status, 200);
    let zero = hex::encode(ZERO);
    assert!(
        timeline.body.contains(&format!(
            "<code class=\"claim\">pcr.sha256.16</code></td><td><code>{zero}</code>"
        )),
        "{}",
        timeline.body
    );
    assert!(timeline.body.contains("label pass") && timeline.body.contains("label fail"));
    assert!(timeline.body.contains("quarantined</span> since"));

    // Chromium, with the auditor's PKCS#12: the page as the auditor sees it.
    let scratch = tempfile::Builder::new()
        .prefix("assay-fleet-page-")
        .tempdir()
        .unwrap();
    let p12_path = scratch.path().join("auditor.p12");
    p12(&auditor, &p12_path).unwrap();
    let browser = Browser::new(&ca, Some(&p12_path), &origin).unwrap();
    let dom = browser.dom(&format!("{origin}/")).unwrap();
    let bad = row(&dom, "edge-node-tampered");
    assert!(
        bad.contains("badge fail") && bad.contains("pcr.sha256.16"),
        "{dom}"
    );
    assert!(dom.contains("auditor · CN=fleet-auditor"), "{dom}");
    let shot = scratch.path().join("fleet-page.png");
    browser.screenshot(&format!("{origin}/"), &shot).unwrap();
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    println!("screenshot: {}", shot.display());
    if std::env::var_os("ASSAY_UPDATE_SCREENSHOT").is_some_and(|v| v == "1") {
        let keep = Path::new(env!("CARGO_MANIFEST_DIR")).join("screenshots/fleet-page.png");
        std::fs::create_dir_all(keep.parent().unwrap()).unwrap();
        std::fs::copy(&shot, &keep).unwrap();
        println!("updated {}", keep.display());
    }

    // Chromium without a certificate: the 403 page, saying what it takes.
    let bare = Browser::new(&ca, None, &origin).unwrap();
    let dom = bare.dom(&format!("{origin}/")).unwrap();
    assert!(dom.contains("No client certificate was presented"), "{dom}");
    assert!(!dom.contains("edge-node-tampered"));
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

async fn pb_client(
    v: &VerifierProc,
) -> assay_proto::v1::attestation_client::AttestationClient<tonic::transport::Channel> {
    assay_proto::v1::attestation_client::AttestationClient::new(
        simnode::channel(&v.url, &v.ca_pem).await.unwrap(),
    )
}
