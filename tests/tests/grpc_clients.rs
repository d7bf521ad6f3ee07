//! Standard gRPC clients that Assay did not write — grpcio's health-checking
//! and reflection clients from PyPI (`tests/grpc_clients/health_reflection.py`,
//! venv by `tests/install-deps.sh`) — against a real `assay-verifier` over
//! TLS: they list its services, check its health and call an RPC knowing
//! only what server reflection tells them.

use std::process::Command;

use assay_tests::grpcio::{client, health};
use assay_tests::{VerifierOpts, VerifierProc};

const POLICY: &str = "schema = 0\nname = \"lab\"\n[pcrs.sha256]\n16 = \"0000000000000000000000000000000000000000000000000000000000000000\"\n";

#[test]
fn grpcio_lists_the_services_checks_health_and_calls_an_rpc_from_reflection_alone() {
    let v = VerifierProc::start(&VerifierOpts::new(POLICY)).unwrap();
    let services = client(&v, None, &["services"]);
    let listed: Vec<&str> = services["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    for s in [
        "assay.v1.Attestation",
        "assay.v1.History",
        "assay.v1.Nodes",
        "assay.v1.Policies",
        "assay.v1.Tokens",
        "grpc.health.v1.Health",
    ] {
        assert!(listed.contains(&s), "{s} not listed: {listed:?}");
    }

    // The server as a whole and each of Assay's services; an unknown name is NOT_FOUND.
    assert_eq!(health(&v, ""), "SERVING");
    assert_eq!(health(&v, "assay.v1.Attestation"), "SERVING");
    assert_eq!(health(&v, "assay.v1.History"), "SERVING");
    assert_eq!(health(&v, "no.such.Service"), "error \"NOT_FOUND\"");

    // A call built from reflected descriptors only, with the operator's certificate.
    let tls = v.dir.path().join("tls");
    let (cert, key) = (tls.join("test-operator.pem"), tls.join("test-operator.key"));
    let r = client(&v, Some((&cert, &key)), &["call-jwks"]);
    assert_eq!(r["input"], "assay.v1.JwksRequest");
    assert_eq!(r["output"], "assay.v1.JwksResponse");
    let jwks: serde_json::Value =
        serde_json::from_str(r["response"]["jwks_json"].as_str().expect("jwks_json")).unwrap();
    assert!(!jwks["keys"].as_array().unwrap().is_empty(), "{jwks}");
}

#[test]
fn with_reflection_off_the_api_shape_is_not_served_and_health_still_is() {
    let mut opts = VerifierOpts::new(POLICY);
    opts.config = Some("reflection = false\n".into());
    let v = VerifierProc::start(&opts).unwrap();
    let (python, script) = assay_tests::grpcio::grpc_python().unwrap();
    let out = Command::new(python)
        .arg(script)
        .args(["--target", v.url.trim_start_matches("https://"), "--ca"])
        .arg(&v.ca_pem)
        .arg("services")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "reflection answered although off");
    assert!(err.contains("UNIMPLEMENTED"), "{err}");
    assert_eq!(health(&v, ""), "SERVING");
}

#[test]
fn a_health_watch_sees_not_serving_at_a_stop_and_does_not_hold_the_stop() {
    let mut v = VerifierProc::start(&VerifierOpts::new(POLICY)).unwrap();
    let (python, script) = assay_tests::grpcio::grpc_python().unwrap();
    let mut watch = Command::new(python)
        .arg(script)
        .args(["--target", v.url.trim_start_matches("https://"), "--ca"])
        .arg(&v.ca_pem)
        .args(["watch", ""])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let lines = assay_tests::procs::stdout_lines(&mut watch).unwrap();
    let next = || -> serde_json::Value {
        let l = lines
            .recv_timeout(std::time::Duration::from_secs(15))
            .expect("a line from the watch");
        serde_json::from_str(&l).unwrap()
    };
    assert_eq!(next()["status"], "SERVING");
    // An open Watch stream is a connection graceful shutdown would wait for.
    let (status, took) = v.terminate(std::time::Duration::from_secs(20)).unwrap();
    assert!(status.success(), "{status:?}\n{}", v.log());
    assert_eq!(next()["status"], "NOT_SERVING", "watchers see it leave");
    let end = next();
    assert!(end.get("ended").is_some(), "{end}");
    assert!(
        took < std::time::Duration::from_secs(8),
        "the watch held the stop for {took:?}:\n{}",
        v.log()
    );
    assert!(
        v.log().contains("stopping: health NOT_SERVING"),
        "{}",
        v.log()
    );
    assert!(v.log().contains("assay-verifier stopped"), "{}", v.log());
    let _ = watch.wait();
    println!(
        "stopped {} ms after SIGTERM with a health watch open",
        took.as_millis()
    );
}
