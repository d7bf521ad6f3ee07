//! Metrics, read the way operators read them: a real Prometheus (Debian's
//! `prometheus`), started here on loopback with a temporary config and data
//! dir, scrapes a real `assay-verifier` and a real `assay-attestor agent`
//! (swtpm). After a pass and then a tamper (PCR 16 extended) Prometheus's
//! HTTP API answers with the verdict counter by result, the failed claim by
//! id, and the agent's last result.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use assay_tests::swtpm::free_port;
use assay_tests::{attestor, attestor_command, Swtpm, VerifierOpts, VerifierProc};

const ZERO: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Killed on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// GET `url` with curl (bounded); the body.
fn get(url: &str) -> anyhow::Result<String> {
    let o = Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "5", url])
        .output()?;
    anyhow::ensure!(
        o.status.success(),
        "curl {url}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// Prometheus on 127.0.0.1, scraping `targets` (job, address) every second.
fn prometheus(dir: &Path, targets: &[(&str, &str)]) -> (Killed, String) {
    let mut config =
        String::from("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n");
    for (job, addr) in targets {
        config.push_str(&format!(
            "  - job_name: {job}\n    static_configs:\n      - targets: ['{addr}']\n"
        ));
    }
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    let port = free_port().unwrap();
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let child = Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("prometheus (Debian's `prometheus` package; tests/install-deps.sh installs it)");
    let url = format!("http://127.0.0.1:{port}");
    assay_tests::wait_for("Prometheus ready", Duration::from_secs(30), || {
        Ok(get(&format!("{url}/-/ready")).is_ok())
    })
    .unwrap_or_else(|e| {
        panic!(
            "{e}: {}",
            std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
        )
    });
    (Killed(child), url)
}

/// The value of the single series `query` selects in Prometheus now, if any.
fn value(prom: &str, query: &str) -> Option<f64> {
    let body = Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "5", "-G"])
        .arg(format!("{prom}/api/v1/query"))
        .arg("--data-urlencode")
        .arg(format!("query={query}"))
        .output()
        .ok()?;
    let j: serde_json::Value = serde_json::from_slice(&body.stdout).ok()?;
    assert_eq!(j["status"], "success", "{query}: {j}");
    let result = j["data"]["result"].as_array()?;
    assert!(result.len() <= 1, "{query} selects several series: {j}");
    result.first()?["value"][1].as_str()?.parse().ok()
}

/// Waits (bounded) until `query` has a value for which `ok` holds.
fn until(prom: &str, query: &str, ok: impl Fn(f64) -> bool) -> f64 {
    let mut last = None;
    assay_tests::wait_for(query, Duration::from_secs(30), || {
        last = value(prom, query);
        Ok(last.is_some_and(&ok))
    })
    .unwrap_or_else(|e| panic!("{e}; last value {last:?}"));
    last.unwrap()
}

#[test]
fn prometheus_scrapes_the_verdict_counter_after_a_pass_and_a_fail_and_the_agents_last_result() {
    let mut opts = VerifierOpts::new(format!(
        "schema = 0\nname = \"lab\"\n[pcrs.sha256]\n16 = \"{ZERO}\"\n"
    ));
    opts.config = Some("[metrics]\nlisten = \"127.0.0.1:0\"\nfleet_interval_secs = 1\n".into());
    let v = VerifierProc::start(&opts).unwrap();
    let verifier_metrics = v
        .listener("metrics")
        .expect("`metrics on ADDR` at start-up");
    // The exposition itself, read by a client Assay did not write.
    let text = get(&format!("http://{verifier_metrics}/metrics")).unwrap();
    assert!(
        text.contains("# TYPE assay_verifier_build_info gauge"),
        "{text}"
    );
    assert!(
        text.contains("assay_verifier_build_info{version=\""),
        "{text}"
    );

    let tpm = Swtpm::start().unwrap();
    let state = tempfile::tempdir().unwrap();
    let node = "node-metrics";
    let out = attestor(&tpm, &v, state.path(), node, "enroll", &[]).unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        assay_tests::output_text(&out)
    );
    let agent_metrics = format!("127.0.0.1:{}", free_port().unwrap());
    let _agent = Killed(
        attestor_command(&tpm, &v, state.path(), node, "agent")
            .unwrap()
            .arg("--containerd-socket")
            .arg(state.path().join("no-containerd.sock"))
            .args(["--interval-secs", "1", "--metrics-listen", &agent_metrics])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );

    let dir = tempfile::tempdir().unwrap();
    let (_prom, prom) = prometheus(
        dir.path(),
        &[
            ("assay-verifier", verifier_metrics.as_str()),
            ("assay-attestor", agent_metrics.as_str()),
        ],
    );
    until(&prom, "up{job=\"assay-verifier\"}", |x| x == 1.0);
    until(&prom, "up{job=\"assay-attestor\"}", |x| x == 1.0);

    // Passes first.
    let passes = until(
        &prom,
        "assay_verifier_verdicts_total{result=\"pass\",policy=\"default\"}",
        |x| x >= 1.0,
    );
    until(&prom, "assay_attestor_last_attestation_trusted", |x| {
        x == 1.0
    });
    until(&prom, "assay_verifier_tokens_issued_total", |x| x >= 1.0);
    until(&prom, "assay_verifier_nodes{state=\"pass\"}", |x| x == 1.0);
    assert_eq!(
        value(&prom, "assay_verifier_verdicts_total{result=\"fail\"}"),
        None,
        "no fail before the tamper"
    );

    // Tampered: the next interval fails on PCR 16.
    tpm.tpm2(
        "tpm2_pcrextend",
        &[&format!("16:sha256={}", "ab".repeat(32))],
    )
    .unwrap();
    until(
        &prom,
        "assay_verifier_verdicts_total{result=\"fail\",policy=\"default\"}",
        |x| x >= 1.0,
    );
    until(
        &prom,
        "assay_verifier_failed_claims_total{claim=\"pcr.sha256.16\",policy=\"default\"}",
        |x| x >= 1.0,
    );
    until(&prom, "assay_attestor_last_attestation_trusted", |x| {
        x == 0.0
    });
    until(
        &prom,
        "assay_attestor_attestations_total{result=\"untrusted\"}",
        |x| x >= 1.0,
    );
    until(&prom, "assay_verifier_quarantined_nodes", |x| x == 1.0);
    until(&prom, "assay_verifier_nodes{state=\"fail\"}", |x| x == 1.0);
    // Latency histograms and group-commit sizes are there with buckets.
    until(
        &prom,
        "sum(assay_verifier_attest_duration_seconds_count)",
        |x| x >= 2.0,
    );
    until(
        &prom,
        "sum(assay_verifier_enroll_duration_seconds_count{result=\"ok\"})",
        |x| x >= 2.0,
    );
    until(
        &prom,
        "sum(assay_verifier_store_commit_batch_size_count{backend=\"sled\"})",
        |x| x >= 1.0,
    );
    until(&prom, "assay_verifier_store_up", |x| x == 1.0);
    println!("passes before the tamper: {passes}");

    // No series carries a node id.
    let all = get(&format!("http://{verifier_metrics}/metrics")).unwrap();
    assert!(!all.contains(node), "a metric names the node: {all}");
}
