//! The node-facing API on a hostile network (issue #19): forged evidence is
//! counted apart from the node's verdicts, state is capped, sources are rate
//! limited, hostile messages and connections are refused without a state
//! change, and a restored older TPM state is caught through the service.
//!
//! Real swtpm, real verifier over real TLS, real sled; the "attacker" is a
//! gRPC client (or curl, or a raw TLS socket) bound to another loopback
//! address (127.0.0.2 …), which Linux routes to `lo` like 127.0.0.1.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use assay_proto::v1 as pb;
use assay_tests::node::Node;
use assay_tests::{output_text, VerifierOpts, VerifierProc};
use pb::attestation_client::AttestationClient;
use tonic::transport::Channel;

const ZERO: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn policy() -> String {
    format!("schema = 0\nname = \"hostile\"\n[pcrs.sha256]\n0 = \"{ZERO}\"\n16 = \"{ZERO}\"\n")
}

fn opts(limits: &str) -> VerifierOpts {
    let mut o = VerifierOpts::new(policy());
    if !limits.is_empty() {
        o.config = Some(format!("[limits]\n{limits}\n"));
    }
    o
}

/// A gRPC client whose connection comes from `local` (e.g. 127.0.0.2).
async fn client_from(v: &VerifierProc, local: &str) -> AttestationClient<Channel> {
    let ca = std::fs::read(&v.ca_pem).unwrap();
    let ep = assay_proto::client::endpoint(&v.url, ca, None)
        .unwrap()
        .local_address(Some(local.parse::<IpAddr>().unwrap()));
    AttestationClient::new(ep.connect().await.expect("connect")).max_encoding_message_size(64 << 20)
}

fn json(o: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", output_text(o)))
}

fn history(v: &VerifierProc, node: &str) -> Vec<serde_json::Value> {
    let o = v.cli(&["history", "--node", node, "--json"]).unwrap();
    assert!(o.status.success(), "{}", output_text(&o));
    json(&o).as_array().unwrap().clone()
}

fn fleet_state(v: &VerifierProc, node: &str) -> String {
    let o = v.cli(&["fleet", "--output", "json"]).unwrap();
    assert!(o.status.success(), "{}", output_text(&o));
    json(&o)
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node_id"] == node)
        .map(|n| n["state"].as_str().unwrap().to_string())
        .unwrap_or_default()
}

/// `node show --json`, polled until `until` holds (attempts are written to
/// the store once a second), for at most 10 s.
fn node_show_until(
    v: &VerifierProc,
    node: &str,
    until: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let o = v.cli(&["node", "show", node, "--json"]).unwrap();
        assert!(o.status.success(), "{}", output_text(&o));
        let j = json(&o);
        if until(&j) || Instant::now() > deadline {
            return j;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn failed(r: &pb::AttestResponse) -> Vec<String> {
    let v = r.verdict.as_ref().expect("a verdict");
    v.claims
        .iter()
        .filter(|c| !c.passed)
        .map(|c| c.id.clone())
        .collect()
}

#[tokio::test(flavor = "current_thread")]
async fn forged_attestations_in_a_nodes_name_are_counted_apart_and_change_nothing() {
    // Rate limits high: this test is about what is recorded.
    let v = VerifierProc::start(&opts("node_rate = 1000\nnode_burst = 1000")).unwrap();
    let n = Node::new("web-1");
    n.enroll(&v).await;
    let pass = n.send(&v, n.quoted_request(&v).await).await;
    assert!(failed(&pass).is_empty(), "{pass:?}");
    let before = history(&v, "web-1");
    assert_eq!(fleet_state(&v, "web-1"), "pass");

    // From another address, no certificate, no TPM: a bit-flipped signature
    // over a real nonce, garbage quotes, unknown and replayed nonces.
    let mut c = client_from(&v, "127.0.0.2").await;
    let mut forged = 0;
    for i in 0..30u8 {
        let chal = c
            .challenge(pb::ChallengeRequest {
                node_id: "web-1".into(),
            })
            .await
            .unwrap()
            .into_inner();
        let mut req = n.quote_for(&chal.nonce, &chal.pcrs_sha256);
        match i % 3 {
            0 => req.signature[20] ^= 1,
            1 => req.attest = vec![i; 100],
            _ => req.nonce = vec![i; 32],
        }
        let r = c.attest(req).await.unwrap().into_inner();
        let verdict = r.verdict.as_ref().unwrap();
        assert!(!verdict.passed);
        assert_eq!(verdict.history_seq, 0, "not recorded: {verdict:?}");
        assert!(r.join_token.is_none() && r.grant.is_none());
        forged += 1;
    }
    // The node's history, standing and tokens are untouched...
    assert_eq!(history(&v, "web-1").len(), before.len());
    assert_eq!(fleet_state(&v, "web-1"), "pass");
    let show = node_show_until(&v, "web-1", |j| j["unauthenticated"]["count"] == forged);
    assert_eq!(show["quarantined"], false);
    // ...and the auditor sees the attempts: how many, when, from where.
    let a = &show["unauthenticated"];
    assert_eq!(a["count"], forged, "{show}");
    assert!(a["first_unix"].as_i64().unwrap() > 0);
    assert!(a["last_unix"].as_i64() >= a["first_unix"].as_i64());
    assert_eq!(a["sources"][0]["address"], "127.0.0.2", "{show}");
    let text = v.cli(&["node", "show", "web-1"]).unwrap();
    assert!(
        output_text(&text).contains("unauthenticated attempts: 30 (not verdicts)"),
        "{}",
        output_text(&text)
    );
    // The node itself still passes, and its pass is recorded.
    let again = n.send(&v, n.quoted_request(&v).await).await;
    assert!(failed(&again).is_empty(), "{again:?}");
    assert!(again.verdict.unwrap().history_seq > 0);
    assert_eq!(history(&v, "web-1").len(), before.len() + 1);
}

#[tokio::test(flavor = "current_thread")]
async fn a_restored_older_tpm_state_is_refused_on_the_clock_and_loses_its_tokens() {
    let v = VerifierProc::start(&opts("")).unwrap();
    let mut n = Node::new("rollback-1");
    n.enroll(&v).await;
    let first = n.send(&v, n.quoted_request(&v).await).await;
    assert!(failed(&first).is_empty(), "{first:?}");
    // The attacker keeps a copy of the TPM state; the real TPM goes on
    // through two reboots and attests again (the verifier's baseline moves).
    let old = n.tpm.save_state().unwrap();
    n.tpm.reboot().unwrap();
    n.tpm.reboot().unwrap();
    let current = n.send(&v, n.quoted_request(&v).await).await;
    assert!(failed(&current).is_empty(), "{current:?}");
    let unused = current.join_token.expect("a token").token;
    // The older copy is restored and quotes: its reset counter went back.
    n.tpm.restore_state(&old).unwrap();
    let r = n.send(&v, n.quoted_request(&v).await).await;
    assert_eq!(failed(&r), ["quote.clock"], "{r:?}");
    let verdict = r.verdict.as_ref().unwrap();
    assert!(verdict.history_seq > 0, "an authentic failure is recorded");
    assert!(r.join_token.is_none());
    // Like every authentic failure: quarantined, unused tokens revoked.
    let out = v
        .cli(&[
            "token",
            "verify",
            "--token",
            &unused,
            "--node",
            "rollback-1",
        ])
        .unwrap();
    assert!(!out.status.success(), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("revoked"),
        "{}",
        output_text(&out)
    );
    let show = node_show_until(&v, "rollback-1", |j| j["quarantined"] == true);
    assert_eq!(show["quarantined"], true, "{show}");
    assert_eq!(fleet_state(&v, "rollback-1"), "fail");
    // The rolled-back clock did not become the baseline: it fails again.
    let again = n.send(&v, n.quoted_request(&v).await).await;
    assert_eq!(failed(&again), ["quote.clock"]);
}

#[tokio::test(flavor = "current_thread")]
async fn outstanding_nonces_and_enrollments_are_capped_with_resource_exhausted() {
    let v = VerifierProc::start(&opts("nonces_per_node = 3\nenrollments_per_ek = 2")).unwrap();
    let n = Node::new("capped-1");
    n.enroll(&v).await;
    let mut c = client_from(&v, "127.0.0.3").await;
    let challenge = |c: &mut AttestationClient<Channel>| {
        let mut c = c.clone();
        async move {
            c.challenge(pb::ChallengeRequest {
                node_id: "capped-1".into(),
            })
            .await
        }
    };
    let mut nonces = Vec::new();
    for _ in 0..3 {
        nonces.push(challenge(&mut c).await.unwrap().into_inner());
    }
    let e = challenge(&mut c).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");
    assert!(
        e.message()
            .contains("3 nonces outstanding for node `capped-1`")
            && e.message().contains("limits.nonces_per_node"),
        "{}",
        e.message()
    );
    // Using one frees its place.
    let r = c
        .attest(n.quote_for(&nonces[0].nonce, &nonces[0].pcrs_sha256))
        .await
        .unwrap()
        .into_inner();
    assert!(failed(&r).is_empty(), "{r:?}");
    challenge(&mut c).await.unwrap();

    // Enroll with the node's (public) EK certificate: two pending, then refused.
    let mut tpm = assay_attestor::tpm::Tpm::open(&n.tpm.tcti()).unwrap();
    let ak = tpm.load_or_create_ak(n.state.path()).unwrap();
    let req = pb::EnrollRequest {
        node_id: "capped-1".into(),
        ek_certificate: tpm.ek_certificate().unwrap(),
        ek_public: tpm.ek_public().unwrap(),
        ak_public: ak.public,
        ek_chain: Vec::new(),
    };
    drop(tpm);
    for _ in 0..2 {
        c.enroll(req.clone()).await.unwrap();
    }
    let e = c.enroll(req).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");
    assert!(
        e.message()
            .contains("pending enrollments outstanding for EK"),
        "{}",
        e.message()
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_flooding_source_is_rate_limited_and_the_node_itself_is_not() {
    let mut o = opts("source_rate = 5\nsource_burst = 10\nnode_rate = 2\nnode_burst = 6");
    o.config = Some(format!(
        "{}[metrics]\nlisten = \"127.0.0.1:0\"\n",
        o.config.unwrap()
    ));
    let v = VerifierProc::start(&o).unwrap();
    let n = Node::new("limited-1");
    n.enroll(&v).await;
    // One authentic attestation from 127.0.0.1 makes that the node's address.
    assert!(failed(&n.send(&v, n.quoted_request(&v).await).await).is_empty());
    let mut flood = client_from(&v, "127.0.0.4").await;
    let mut refused = 0;
    for _ in 0..40 {
        match flood
            .challenge(pb::ChallengeRequest {
                node_id: "limited-1".into(),
            })
            .await
        {
            Ok(_) => {}
            Err(e) => {
                assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");
                assert!(e.message().contains("rate limit"), "{}", e.message());
                refused += 1;
            }
        }
    }
    assert!(refused >= 30, "{refused} of 40 refused");
    // Each refusal counted.
    let counted = assay_tests::metric(
        &assay_tests::scrape(&v).unwrap(),
        "assay_verifier_rate_limited_requests_total",
    );
    assert_eq!(counted, Some(refused as f64));
    // The node, from its own address, is not locked out by the flood in its name.
    let r = n.send(&v, n.quoted_request(&v).await).await;
    assert!(failed(&r).is_empty(), "{r:?}");
    // Logged once per burst, not per refusal.
    let log = v.log();
    let starts = log.matches("rate limit reached").count();
    assert!(
        (1..=2).contains(&starts),
        "{starts} burst starts logged:\n{log}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn hostile_messages_are_refused_with_a_clear_status_and_change_nothing() {
    let v = VerifierProc::start(&opts("")).unwrap();
    let n = Node::new("msg-1");
    n.enroll(&v).await;
    let head = |v: &VerifierProc| {
        let o = v.cli(&["history", "--json"]).unwrap();
        json(&o).as_array().unwrap().len()
    };
    let records = head(&v);
    let mut c = client_from(&v, "127.0.0.5").await;
    let long = "a".repeat(1 << 20);
    for id in [
        ".",
        "..",
        "/",
        "a/b",
        "a\0b",
        "a\nb",
        "\u{7f}",
        "",
        long.as_str(),
    ] {
        let e = c
            .challenge(pb::ChallengeRequest { node_id: id.into() })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{id:?}: {e:?}");
        assert!(e.message().contains("node id"), "{}", e.message());
        assert!(e.message().len() < 1024, "the id is not echoed whole");
        let e = c
            .enroll(pb::EnrollRequest {
                node_id: id.into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{id:?}: {e:?}");
    }
    let chal = c
        .challenge(pb::ChallengeRequest {
            node_id: "msg-1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let good = n.quote_for(&chal.nonce, &chal.pcrs_sha256);
    // Each bounded field past its bound.
    let cases: Vec<(&str, pb::AttestRequest)> = vec![
        (
            "attest",
            pb::AttestRequest {
                attest: vec![0; 16 * 1024 + 1],
                ..good.clone()
            },
        ),
        (
            "signature",
            pb::AttestRequest {
                signature: vec![0; 16 * 1024 + 1],
                ..good.clone()
            },
        ),
        (
            "PCR values",
            pb::AttestRequest {
                pcrs_sha256: (0..25)
                    .map(|i| pb::PcrValue {
                        index: i,
                        digest: vec![0; 32],
                    })
                    .collect(),
                ..good.clone()
            },
        ),
    ];
    for (what, req) in cases {
        let e = c.attest(req).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{what}: {e:?}");
        assert!(e.message().contains(what), "{what}: {}", e.message());
    }
    // Over the decoding limit (32 MiB): refused before it is decoded.
    let e = c
        .attest(pb::AttestRequest {
            ima_log: Some(vec![0; 33 << 20]),
            ..good.clone()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::OutOfRange, "{e:?}");
    // Nothing was recorded, and the untouched request still passes.
    assert_eq!(head(&v), records);
    let r = c.attest(good).await.unwrap().into_inner();
    assert!(failed(&r).is_empty(), "{r:?}");
}

/// curl (a client Assay did not write) speaks HTTP/2 with malformed gRPC.
#[test]
fn malformed_protobuf_from_curl_is_refused_with_a_grpc_status() {
    let v = VerifierProc::start(&opts("")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let send = |body: &[u8]| -> String {
        let f = dir.path().join("body");
        std::fs::write(&f, body).unwrap();
        let out = std::process::Command::new("curl")
            .args([
                "-s",
                "--http2-prior-knowledge",
                "--max-time",
                "10",
                "-D",
                "-",
                "-o",
                "/dev/null",
            ])
            .args(["--cacert"])
            .arg(&v.ca_pem)
            .args(["-H", "content-type: application/grpc", "-H", "te: trailers"])
            .arg("--data-binary")
            .arg(format!("@{}", f.display()))
            .arg(format!("{}/assay.v1.Attestation/Attest", v.url))
            .output()
            .expect("curl (apt-get install curl)");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // A gRPC frame whose payload is not protobuf (a truncated field).
    let mut frame = vec![0u8, 0, 0, 0, 4];
    frame.extend_from_slice(&[0x0a, 0x80, 0x80, 0x80]);
    let headers = send(&frame);
    assert!(
        headers.contains("grpc-status: 13") || headers.contains("grpc-status: 3"),
        "{headers}"
    );
    // A frame that claims 4 GiB.
    let headers = send(&[0, 0xff, 0xff, 0xff, 0xff, 1, 2, 3]);
    assert!(headers.contains("grpc-status: "), "{headers}");
    assert!(!headers.contains("grpc-status: 0\r"), "{headers}");
    // The verifier still serves.
    let o = v.cli(&["history", "--json"]).unwrap();
    assert!(o.status.success(), "{}", output_text(&o));
}

/// A raw TLS client: garbage after the HTTP/2 preface, and connections that
/// never finish (or never start) their handshake.
#[tokio::test(flavor = "current_thread")]
async fn garbage_frames_idle_and_slow_connections_hold_nothing() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let v = VerifierProc::start(&opts("handshake_timeout_secs = 1\nmax_connections = 8")).unwrap();
    let addr = v.url.trim_start_matches("https://").to_string();

    // Garbage HTTP/2 frames: the server closes the connection.
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(&v.ca_pem).unwrap();
    for c in rustls_pki_types::pem::PemObject::pem_slice_iter(&pem) {
        roots.add(c.unwrap()).unwrap();
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg));
    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut s = tls.connect(name, tcp).await.unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    s.write_all(&[0xff; 64]).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the server did not close a garbage connection"
    );

    // Eight connections that never send a byte take every place...
    let mut idle = Vec::new();
    for _ in 0..8 {
        idle.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // ...so a ninth is closed at once...
    let mut ninth = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let r = tokio::time::timeout(Duration::from_secs(2), ninth.read(&mut buf)).await;
    assert!(matches!(r, Ok(Ok(0)) | Ok(Err(_))), "{r:?}");
    // ...and the idle ones are dropped after the handshake timeout.
    for mut c in idle {
        let r = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf)).await;
        assert!(
            matches!(r, Ok(Ok(0)) | Ok(Err(_))),
            "an idle connection was kept: {r:?}"
        );
    }
    // The places are free again: a real node enrolls and passes.
    let n = Node::new("after-slowloris");
    n.enroll(&v).await;
    let r = n.send(&v, n.quoted_request(&v).await).await;
    assert!(failed(&r).is_empty(), "{r:?}");
    assert!(v.log().contains("limits.max_connections reached"));
}
