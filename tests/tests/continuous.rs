//! Continuous attestation, for real: a real verifier with a webhook and a
//! staleness window, a real `assay-attestor agent` re-attesting on its
//! interval from a real swtpm, and a test HTTP receiver standing in for the
//! operator's webhook endpoint (it is the thing under observation, not a mock
//! of a part of Assay).
//!
//! - the node passes on every interval and is never marked stale while it does;
//! - it is tampered with (PCR 16 extended): the next interval fails, its
//!   outstanding token is revoked, and the webhook receives `node.quarantined`
//!   once (the receiver's first answer is a 503: the verifier retries), signed
//!   with the verifier's key (checked against the JWKS; a changed body does not
//!   verify); the delivery is recorded in the history;
//! - it passes again (TPM reset): `node.restored`;
//! - its attestor is stopped: after the window the node is marked stale
//!   (`node.stale`, history record STALE with claim `attestation.fresh`).

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpListener;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use assay_tests::{attestor, wait_for, Swtpm, VerifierOpts, VerifierProc};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

const ZERO: &str = "0000000000000000000000000000000000000000000000000000000000000000";
const STALE_AFTER_SECS: u64 = 5;

/// One POST the receiver got.
struct Hook {
    at: Instant,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
    /// The status the receiver answered with.
    answered: u16,
}

impl Hook {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("webhook body is JSON")
    }
}

/// A minimal HTTP/1.1 receiver on 127.0.0.1: answers the first request 503,
/// every later one 204, and forwards each to the test. Bounded: headers up to
/// 16 KiB, bodies up to 64 KiB, 5 s per connection.
fn receiver() -> Result<(String, mpsc::Receiver<Hook>)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let url = format!("http://{}/hooks/assay", listener.local_addr()?);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for (n, conn) in listener.incoming().enumerate() {
            let Ok(mut conn) = conn else { continue };
            let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
            let mut r = BufReader::new(conn.try_clone().expect("clone"));
            let Ok(req) = assay_tests::http::read_request(&mut r, 64 * 1024) else {
                continue;
            };
            if req.method != "POST" || req.path != "/hooks/assay" {
                let _ = conn.write_all(
                    b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
                continue;
            }
            let (headers, body) = (req.headers, req.body);
            let answered = if n == 0 { 503 } else { 204 };
            let reply = if answered == 503 {
                "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            } else {
                "HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n"
            };
            let _ = conn.write_all(reply.as_bytes());
            let hook = Hook {
                at: Instant::now(),
                headers,
                body,
                answered,
            };
            if tx.send(hook).is_err() {
                return;
            }
        }
    });
    Ok((url, rx))
}

/// The next hook that was answered 2xx, skipping (and returning) any refused
/// attempts before it.
fn next_delivered(rx: &mpsc::Receiver<Hook>, within: Duration) -> Result<(Vec<Hook>, Hook)> {
    let deadline = Instant::now() + within;
    let mut refused = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let h = rx
            .recv_timeout(left)
            .with_context(|| format!("no webhook delivered within {within:?}"))?;
        if h.answered == 204 {
            return Ok((refused, h));
        }
        refused.push(h);
    }
}

/// Checks the detached JWS in `assay-signature` over `body` with the JWKS.
fn signature_verifies(jwks: &serde_json::Value, sig: &str, body: &[u8]) -> Result<()> {
    let (header, rest) = sig
        .split_once("..")
        .context("a detached JWS: header..signature")?;
    let h: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header)?)?;
    if h["alg"] != "EdDSA" {
        bail!("alg {}", h["alg"]);
    }
    let key = jwks["keys"]
        .as_array()
        .context("keys")?
        .iter()
        .find(|k| k["kid"] == h["kid"])
        .context("the signature's kid is in the JWKS")?;
    let x: [u8; 32] = URL_SAFE_NO_PAD
        .decode(key["x"].as_str().context("x")?)?
        .try_into()
        .map_err(|_| anyhow::anyhow!("x is not 32 bytes"))?;
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&x)?;
    let s = ed25519_dalek::Signature::from_slice(&URL_SAFE_NO_PAD.decode(rest)?)?;
    let input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(body));
    vk.verify_strict(input.as_bytes(), &s)?;
    Ok(())
}

/// `assay-attestor agent` re-attesting every second; its JSON lines arrive on
/// the channel. containerd is not running for this node: the agent attests on
/// its interval all the same. Killed on drop.
struct Agent {
    child: Child,
    lines: mpsc::Receiver<serde_json::Value>,
}

impl Agent {
    fn start(tpm: &Swtpm, v: &VerifierProc, state: &std::path::Path, node: &str) -> Result<Self> {
        let mut child = assay_tests::attestor_command(tpm, v, state, node, "agent")?
            .arg("--containerd-socket")
            .arg(state.join("no-containerd.sock"))
            .args(["--interval-secs", "1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .stdin(Stdio::null())
            .spawn()?;
        let out = child.stdout.take().context("agent stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(j) = serde_json::from_str(&l) {
                    if tx.send(j).is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Self { child, lines })
    }

    /// The next attestation line whose `trusted` is `trusted`.
    fn until(&self, trusted: bool, within: Duration) -> Result<(Instant, serde_json::Value)> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let j = self.lines.recv_timeout(left).with_context(|| {
                format!("no attestation with trusted={trusted} within {within:?}")
            })?;
            if j["trusted"] == trusted {
                return Ok((Instant::now(), j));
            }
        }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop();
    }
}

fn history(v: &VerifierProc, node: &str) -> Result<Vec<serde_json::Value>> {
    let out = v.cli(&["history", "--node", node, "--json"])?;
    if !out.status.success() {
        bail!("history: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(serde_json::from_slice::<serde_json::Value>(&out.stdout)?
        .as_array()
        .cloned()
        .unwrap_or_default())
}

#[test]
fn tampered_node_is_quarantined_and_notified_restored_when_it_passes_and_stale_when_silent(
) -> Result<()> {
    let (url, hooks) = receiver()?;
    let mut opts = VerifierOpts::new(format!(
        "schema = 0\nname = \"continuous\"\n[pcrs.sha256]\n16 = \"{ZERO}\"\n"
    ));
    opts.config = Some(format!(
        "stale_after_secs = {STALE_AFTER_SECS}\n[webhook]\nurl = \"{url}\"\n\
         [metrics]\nlisten = \"127.0.0.1:0\"\nfleet_interval_secs = 1\n"
    ));
    let v = VerifierProc::start(&opts)?;
    let jwks: serde_json::Value =
        serde_json::from_slice(&v.cli(&["token", "jwks"])?.stdout).context("JWKS")?;
    let tpm = Swtpm::start()?;
    let state = tempfile::tempdir()?;
    let node = "node-continuous";

    // A token the node holds and has not used yet.
    let out = attestor(&tpm, &v, state.path(), node, "join", &["--output", "json"])?;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = serde_json::from_slice::<serde_json::Value>(&out.stdout)?["token"]
        .as_str()
        .context("a token")?
        .to_string();

    // The agent keeps it attested past the staleness window: nothing is sent.
    let mut agent = Agent::start(&tpm, &v, state.path(), node)?;
    agent.until(true, Duration::from_secs(20))?;
    std::thread::sleep(Duration::from_secs(STALE_AFTER_SECS + 2));
    assert!(
        hooks.try_recv().is_err(),
        "a node attesting on its interval is neither stale nor quarantined"
    );

    // Tampered: the next interval fails.
    tpm.tpm2(
        "tpm2_pcrextend",
        &[&format!("16:sha256={}", "ab".repeat(32))],
    )?;
    let (failed_at, line) = agent.until(false, Duration::from_secs(10))?;
    assert_eq!(line["failed"], serde_json::json!(["pcr.sha256.16"]));
    let (refused, hook) = next_delivered(&hooks, Duration::from_secs(15))?;
    assert_eq!(refused.len(), 1, "the receiver's 503 was retried");
    assert_eq!(refused[0].body, hook.body, "a retry carries the same body");
    let retry_gap = hook.at - refused[0].at;
    assert!(
        retry_gap >= Duration::from_millis(900),
        "backoff before retrying: {retry_gap:?}"
    );
    // Revocation and the first attempt happen before the attest RPC returns:
    // the receiver usually has it before the agent has printed its verdict.
    let first_try_ms = if refused[0].at >= failed_at {
        (refused[0].at - failed_at).as_secs_f64() * 1e3
    } else {
        -((failed_at - refused[0].at).as_secs_f64() * 1e3)
    };
    let e = hook.json();
    assert_eq!(e["event"], "node.quarantined", "{e}");
    assert_eq!(e["node_id"], node);
    assert_eq!(e["failed_claims"], serde_json::json!(["pcr.sha256.16"]));
    assert!(e["tokens_revoked"].as_u64().unwrap_or(0) >= 1, "{e}");
    assert_eq!(
        hook.headers.get("content-type").map(String::as_str),
        Some("application/json")
    );
    let sig = hook.headers.get("assay-signature").context("signed")?;
    signature_verifies(&jwks, sig, &hook.body)?;
    let mut forged = hook.body.clone();
    let at = forged.len() / 2;
    forged[at] ^= 0x01;
    assert!(
        signature_verifies(&jwks, sig, &forged).is_err(),
        "a changed body does not verify"
    );
    eprintln!(
        "first webhook attempt {first_try_ms:+.1} ms relative to the agent printing the failed verdict; retry gap {retry_gap:?}"
    );

    // The token is revoked.
    let out = v.cli(&["token", "verify", "--token", &token, "--node", node])?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("revoked"));

    // It keeps failing on every interval, but is announced once.
    agent.until(false, Duration::from_secs(10))?;
    agent.until(false, Duration::from_secs(10))?;
    assert!(hooks.try_recv().is_err(), "no second node.quarantined");

    // The delivery is in the history, after the failed verdict.
    let deadline = Instant::now() + Duration::from_secs(10);
    let recs = loop {
        let recs = history(&v, node)?;
        if recs.iter().any(|r| r["kind"] == "webhook") || Instant::now() > deadline {
            break recs;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let sent = recs
        .iter()
        .find(|r| r["kind"] == "webhook")
        .context("webhook delivery recorded")?;
    assert_eq!(sent["verdict"], "SENT", "{sent}");
    let fail = recs
        .iter()
        .find(|r| r["seq"] == e["history_seq"])
        .context("the event names the failed verdict's record")?;
    assert_eq!(fail["verdict"], "FAIL", "{fail}");
    assert!(fail["seq"].as_u64() < sent["seq"].as_u64());
    // And in the metrics: one delivery (its 503 was retried, not counted
    // as a failure), the token revoked, the node quarantined.
    let m = assay_tests::scrape(&v)?;
    let series = |s: &str| assay_tests::metric(&m, s);
    assert_eq!(
        series("assay_verifier_webhook_deliveries_total{result=\"delivered\"}"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        series("assay_verifier_webhook_deliveries_total{result=\"failed\"}"),
        None
    );
    assert!(
        series("assay_verifier_tokens_revoked_total") >= Some(1.0),
        "{m}"
    );
    assert_eq!(
        series("assay_verifier_failed_claims_total{claim=\"pcr.sha256.16\",policy=\"default\"}")
            .map(|n| n >= 1.0),
        Some(true),
        "{m}"
    );

    // Passes again after a TPM reset: restored.
    agent.stop();
    tpm.reboot()?;
    let mut agent = Agent::start(&tpm, &v, state.path(), node)?;
    agent.until(true, Duration::from_secs(20))?;
    let (_, hook) = next_delivered(&hooks, Duration::from_secs(10))?;
    let e = hook.json();
    assert_eq!(e["event"], "node.restored", "{e}");
    signature_verifies(
        &jwks,
        hook.headers.get("assay-signature").context("signed")?,
        &hook.body,
    )?;

    // The attestor stops: the node goes stale after the window.
    agent.until(true, Duration::from_secs(10))?;
    agent.stop();
    let stopped = Instant::now();
    let (_, hook) = next_delivered(&hooks, Duration::from_secs(STALE_AFTER_SECS + 15))?;
    let e = hook.json();
    assert_eq!(e["event"], "node.stale", "{e}");
    assert_eq!(e["failed_claims"], serde_json::json!(["attestation.fresh"]));
    let noticed = stopped.elapsed();
    assert!(
        noticed >= Duration::from_secs(STALE_AFTER_SECS - 2),
        "not before the window: {noticed:?}"
    );
    eprintln!("attestor stopped → node.stale received: {noticed:?} (window {STALE_AFTER_SECS} s)");
    let recs = history(&v, node)?;
    let stale = recs
        .iter()
        .find(|r| r["verdict"] == "STALE")
        .context("a STALE record")?;
    assert_eq!(stale["kind"], "stale");
    wait_for("the stale-node gauge", Duration::from_secs(10), || {
        Ok(assay_tests::metric(
            &assay_tests::scrape(&v)?,
            "assay_verifier_nodes{state=\"stale\"}",
        ) == Some(1.0))
    })?;
    assert_eq!(
        stale["failed_claims"][0]["id"], "attestation.fresh",
        "{stale}"
    );
    Ok(())
}
