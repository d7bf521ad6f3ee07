//! A verifier lost in the middle of an exchange: `assay-attestor join
//! --retries N` starts the exchange again with backoff (a new enrollment, a
//! new challenge) and succeeds once the verifier is back, or exits 4 ("verifier
//! unreachable") when its retries are spent. Real swtpm, real verifier, real
//! TLS; between the attestor and the verifier a plain TCP proxy on loopback
//! that forwards bytes both ways and cuts a connection (RST) once the attestor
//! has sent a given number of bytes through it: past the TLS handshake, inside
//! a request.

use std::io::Read as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use assay_tests::{bin, output_text, Swtpm, VerifierOpts, VerifierProc};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

const ZERO: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Bytes the attestor sends before a cut: past its TLS handshake (a few
/// hundred bytes) and inside its first request (an enrollment carries the EK
/// certificate, the EK and the AK public areas: over two kilobytes).
const CUT_AFTER: usize = 1200;
/// No run of the attestor takes longer than this (it is killed and the test fails).
const RUN_LIMIT: Duration = Duration::from_secs(120);

fn policy() -> String {
    format!("schema = 0\nname = \"retry\"\n[pcrs.sha256]\n0 = \"{ZERO}\"\n1 = \"{ZERO}\"\n2 = \"{ZERO}\"\n16 = \"{ZERO}\"\n")
}

/// Which connections the proxy cuts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// The first that reaches the byte count; the others are forwarded whole.
    Once,
    /// Every one.
    Always,
}

/// What runs at a cut, before the attestor's connection is reset (on a
/// blocking thread).
type OnCut = Box<dyn Fn(&Proxy) + Send + Sync>;

struct Shared {
    cut: Cut,
    after: usize,
    on_cut: Option<OnCut>,
    /// Where the verifier listens; `None` while it is restarting (new
    /// connections wait for it, at most 30 s).
    upstream: Mutex<Option<SocketAddr>>,
    /// Whether connections are cut at all yet.
    armed: AtomicBool,
    connections: AtomicUsize,
    cuts: AtomicUsize,
    cut_once: AtomicBool,
    /// Bytes the verifier had sent on each cut connection when it was cut.
    answered_before_cut: Mutex<Vec<usize>>,
}

/// The proxy: accepts on 127.0.0.1, forwards to the verifier; stopped (with
/// every connection) on drop.
#[derive(Clone)]
struct Proxy {
    shared: Arc<Shared>,
    url: String,
}

impl Proxy {
    fn set_upstream(&self, addr: Option<SocketAddr>) {
        *self.shared.upstream.lock().unwrap() = addr;
    }

    /// Cut connections from now on (`false`: forward them whole).
    fn arm(&self, armed: bool) {
        self.shared.armed.store(armed, Ordering::SeqCst);
    }

    fn run_on_cut(&self) {
        if let Some(f) = &self.shared.on_cut {
            f(self);
        }
    }

    fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    fn cuts(&self) -> usize {
        self.shared.cuts.load(Ordering::SeqCst)
    }

    fn report(&self) {
        eprintln!(
            "proxy: {} connections, {} cut; the verifier had sent {:?} bytes on each before its cut",
            self.connections(),
            self.cuts(),
            self.answered_before_cut()
        );
    }

    fn answered_before_cut(&self) -> Vec<usize> {
        self.shared.answered_before_cut.lock().unwrap().clone()
    }
}

fn addr_of(v: &VerifierProc) -> SocketAddr {
    v.url
        .strip_prefix("https://")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("verifier url {}", v.url))
}

/// Starts a proxy in front of `upstream` on `rt`.
fn start_proxy(
    rt: &tokio::runtime::Runtime,
    upstream: SocketAddr,
    cut: Cut,
    on_cut: Option<OnCut>,
) -> Proxy {
    let listener = rt
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .expect("a free loopback port");
    let url = format!("https://{}", listener.local_addr().unwrap());
    let proxy = Proxy {
        shared: Arc::new(Shared {
            cut,
            after: CUT_AFTER,
            on_cut,
            upstream: Mutex::new(Some(upstream)),
            armed: AtomicBool::new(true),
            connections: AtomicUsize::new(0),
            cuts: AtomicUsize::new(0),
            cut_once: AtomicBool::new(false),
            answered_before_cut: Mutex::new(Vec::new()),
        }),
        url,
    };
    let p = proxy.clone();
    rt.spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            p.shared.connections.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(forward(p.clone(), client));
        }
    });
    proxy
}

/// The verifier's address, waiting (bounded) while it restarts.
async fn upstream(p: &Proxy) -> Option<SocketAddr> {
    for _ in 0..1500 {
        if let Some(a) = *p.shared.upstream.lock().unwrap() {
            return Some(a);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// Forwards one connection both ways, cutting it as `p` says.
async fn forward(p: Proxy, mut client: TcpStream) {
    let Some(addr) = upstream(&p).await else {
        return;
    };
    let Ok(mut server) = TcpStream::connect(addr).await else {
        return;
    };
    let (mut up, mut down) = (0usize, 0usize);
    let (mut a, mut b) = ([0u8; 4096], [0u8; 4096]);
    loop {
        tokio::select! {
            r = client.read(&mut a) => {
                let n = match r { Ok(0) | Err(_) => return, Ok(n) => n };
                let cut_here = up + n >= p.shared.after
                    && p.shared.armed.load(Ordering::SeqCst) && match p.shared.cut {
                    Cut::Always => true,
                    Cut::Once => !p.shared.cut_once.swap(true, Ordering::SeqCst),
                };
                if !cut_here {
                    up += n;
                    if server.write_all(&a[..n]).await.is_err() {
                        return;
                    }
                    continue;
                }
                // Part of the request reaches the verifier, then the connection dies.
                let part = p.shared.after.saturating_sub(up).min(n);
                let _ = server.write_all(&a[..part]).await;
                p.shared.answered_before_cut.lock().unwrap().push(down);
                let q = p.clone();
                tokio::task::spawn_blocking(move || q.run_on_cut()).await.unwrap();
                p.shared.cuts.fetch_add(1, Ordering::SeqCst);
                // SO_LINGER 0: closing sends a reset, not a FIN.
                let _ = client.set_zero_linger();
                let _ = server.set_zero_linger();
                return;
            }
            r = server.read(&mut b) => {
                let n = match r { Ok(0) | Err(_) => return, Ok(n) => n };
                down += n;
                if client.write_all(&b[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Runs `assay-attestor join` against `url` (the proxy), killed after `RUN_LIMIT`.
fn join(url: &str, ca: &Path, tpm: &Swtpm, state: &Path, node: &str, retries: u32) -> Output {
    let mut child = Command::new(bin("assay-attestor").unwrap())
        .args([
            "join",
            "--output",
            "json",
            "--retries",
            &retries.to_string(),
        ])
        .args(["--verifier", url])
        .arg("--ca")
        .arg(ca)
        .args(["--tcti", &tpm.tcti(), "--node-id", node])
        .arg("--state-dir")
        .arg(state)
        .env("ASSAY_CEL_LOG", state.join("measurements.cel"))
        .env("ASSAY_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let drain = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > RUN_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("assay-attestor join ran past {RUN_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Prints the retries the attestor logged (for the test's output).
fn retries_logged(out: &Output) {
    for l in String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.contains("again in") || l.contains("error:"))
    {
        eprintln!("attestor: {l}");
    }
}

/// The verdicts the verifier recorded for `node`.
fn verdicts(v: &VerifierProc, node: &str) -> Vec<String> {
    let h = v.cli(&["history", "--node", node, "--json"]).unwrap();
    assert!(h.status.success(), "{}", output_text(&h));
    let recs: serde_json::Value = serde_json::from_slice(&h.stdout).unwrap();
    recs.as_array()
        .unwrap()
        .iter()
        .map(|r| r["verdict"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn verifier_killed_mid_enrollment_and_restarted_join_retries_and_succeeds() {
    let rt = runtime();
    let v = Arc::new(Mutex::new(
        VerifierProc::start(&VerifierOpts::new(policy())).unwrap(),
    ));
    let (addr, ca) = {
        let v = v.lock().unwrap();
        (addr_of(&v), v.ca_pem.clone())
    };
    // At the cut, SIGKILL the verifier (with part of the enrollment request
    // delivered), reset the attestor's connection, and start the verifier
    // again on its data meanwhile; the proxy keeps the attestor's address.
    let restarted = Arc::clone(&v);
    let on_cut: OnCut = Box::new(move |p: &Proxy| {
        p.set_upstream(None);
        restarted.lock().unwrap().kill();
        let (v, p) = (Arc::clone(&restarted), p.clone());
        std::thread::spawn(move || {
            let mut v = v.lock().unwrap();
            v.restart().unwrap();
            p.set_upstream(Some(addr_of(&v)));
        });
    });
    let proxy = start_proxy(&rt, addr, Cut::Once, Some(on_cut));
    let tpm = Swtpm::start().unwrap();
    let state = tempfile::tempdir().unwrap();
    let node = "node-retry-killed";

    let out = join(&proxy.url, &ca, &tpm, state.path(), node, 6);
    let v = v.lock().unwrap();
    let text = format!("{}\nverifier:\n{}", output_text(&out), v.log());
    proxy.report();
    retries_logged(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert_eq!(proxy.cuts(), 1, "{text}");
    let answered = proxy.answered_before_cut();
    assert!(
        answered.iter().all(|&n| n > 0),
        "the verifier had answered the TLS handshake before the cut: {answered:?}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("failed mid-exchange; starting the exchange again"),
        "the retry is logged: {text}"
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["trusted"], true, "{text}");
    assert!(j["token"].as_str().is_some_and(|t| !t.is_empty()), "{text}");
    assert_eq!(verdicts(&v, node), ["PASS"], "{text}");
}

#[test]
fn connection_reset_mid_attestation_join_starts_again_from_a_new_challenge() {
    let rt = runtime();
    let v = VerifierProc::start(&VerifierOpts::new(policy())).unwrap();
    let tpm = Swtpm::start().unwrap();
    let state = tempfile::tempdir().unwrap();
    let node = "node-retry-reset";
    // Enrolled (and attested once) through the proxy, uncut, so the cut
    // falls in the next join's attestation.
    let proxy = start_proxy(&rt, addr_of(&v), Cut::Once, None);
    proxy.arm(false);
    let first = join(&proxy.url, &v.ca_pem, &tpm, state.path(), node, 0);
    assert_eq!(first.status.code(), Some(0), "{}", output_text(&first));
    proxy.arm(true);
    let out = join(&proxy.url, &v.ca_pem, &tpm, state.path(), node, 6);
    let text = format!("{}\nverifier:\n{}", output_text(&out), v.log());
    proxy.report();
    retries_logged(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert_eq!(proxy.cuts(), 1, "{text}");
    assert!(proxy.connections() >= 2, "{text}");
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("failed mid-exchange; starting the exchange again"),
        "the retry is logged: {text}"
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["trusted"], true, "{text}");
    // The cut attestation left no verdict, or a PASS whose answer was lost:
    // either way the retry's own verdict is the last, and a PASS.
    let recorded = verdicts(&v, node);
    assert!(
        (2..=3).contains(&recorded.len()) && recorded.iter().all(|r| r == "PASS"),
        "{recorded:?}\n{text}"
    );
}

#[test]
fn verifier_cut_off_mid_request_every_time_join_exits_4_after_the_retries() {
    let rt = runtime();
    let v = VerifierProc::start(&VerifierOpts::new(policy())).unwrap();
    let proxy = start_proxy(&rt, addr_of(&v), Cut::Always, None);
    let tpm = Swtpm::start().unwrap();
    let state = tempfile::tempdir().unwrap();
    let retries = 3;

    let started = Instant::now();
    let out = join(
        &proxy.url,
        &v.ca_pem,
        &tpm,
        state.path(),
        "node-retry-cut",
        retries,
    );
    let took = started.elapsed();
    let text = format!("{}\nverifier:\n{}", output_text(&out), v.log());
    proxy.report();
    retries_logged(&out);
    assert_eq!(out.status.code(), Some(4), "{text}");
    // Every try was made (connected, then cut mid-request), and no more.
    assert_eq!(proxy.cuts(), retries as usize + 1, "{text}");
    assert_eq!(proxy.connections(), retries as usize + 1, "{text}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr
            .matches("failed mid-exchange; starting the exchange again")
            .count(),
        retries as usize,
        "each retry is logged: {text}"
    );
    assert!(
        stderr.contains("verifier unreachable") && stderr.contains("after 4 attempts"),
        "{text}"
    );
    // Backoff 0.25 + 0.5 + 1 s, four short tries: bounded, not a hang.
    assert!(
        took >= Duration::from_millis(1750) && took < Duration::from_secs(60),
        "{took:?}"
    );
    assert!(verdicts(&v, "node-retry-cut").is_empty());
}

#[test]
fn a_fail_verdict_is_an_answer_and_is_not_retried() {
    let rt = runtime();
    let wrong = "11".repeat(32);
    let v = VerifierProc::start(&VerifierOpts::new(format!(
        "schema = 0\nname = \"retry-fail\"\n[pcrs.sha256]\n16 = \"{wrong}\"\n"
    )))
    .unwrap();
    let proxy = start_proxy(&rt, addr_of(&v), Cut::Once, None);
    proxy.arm(false);
    let tpm = Swtpm::start().unwrap();
    let state = tempfile::tempdir().unwrap();

    let out = join(
        &proxy.url,
        &v.ca_pem,
        &tpm,
        state.path(),
        "node-retry-fail",
        6,
    );
    let text = format!("{}\nverifier:\n{}", output_text(&out), v.log());
    proxy.report();
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert_eq!(proxy.connections(), 1, "{text}");
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("again in"),
        "{text}"
    );
    assert_eq!(verdicts(&v, "node-retry-fail"), ["FAIL"], "{text}");
}
