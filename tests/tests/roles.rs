//! Roles on the API, for real: a real verifier with a clients CA, real client
//! certificates from `assay-verifier client-cert`, real TLS. Every role calls
//! every RPC; what the table forbids is refused, what it allows goes through
//! (and fails, if at all, for a reason that is not permission). A certificate
//! from another CA does not get through the handshake. An operator's revoke is
//! recorded in the history with who did it.

use std::path::PathBuf;

use assay_proto::v1 as pb;
use assay_tests::{VerifierOpts, VerifierProc};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

const ZERO: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn policy() -> String {
    format!("schema = 0\nname = \"roles\"\n[pcrs.sha256]\n16 = \"{ZERO}\"\n")
}

/// A client certificate and its key.
type Cert = (PathBuf, PathBuf);

async fn channel(v: &VerifierProc, cert: Option<&Cert>) -> Result<Channel, String> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(&v.ca_pem).unwrap()))
        .domain_name("127.0.0.1");
    if let Some((c, k)) = cert {
        tls = tls.identity(Identity::from_pem(
            std::fs::read(c).unwrap(),
            std::fs::read(k).unwrap(),
        ));
    }
    Channel::from_shared(v.url.clone())
        .unwrap()
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))
}

/// Calls `rpc` as `cert`; Ok(()) unless refused for permission (a refusal's message otherwise).
async fn call(v: &VerifierProc, cert: Option<&Cert>, rpc: &str) -> Result<(), String> {
    let ch = channel(v, cert).await?;
    let r = match rpc {
        "Challenge" => pb::attestation_client::AttestationClient::new(ch)
            .challenge(pb::ChallengeRequest {
                node_id: "n1".into(),
            })
            .await
            .map(drop),
        "ChallengeOther" => pb::attestation_client::AttestationClient::new(ch)
            .challenge(pb::ChallengeRequest {
                node_id: "n2".into(),
            })
            .await
            .map(drop),
        "Redeem" => pb::tokens_client::TokensClient::new(ch)
            .redeem(pb::RedeemRequest {
                token: "not.a.token".into(),
                node_id: "n1".into(),
            })
            .await
            .map(drop),
        "Jwks" => pb::tokens_client::TokensClient::new(ch)
            .jwks(pb::JwksRequest {})
            .await
            .map(drop),
        "ListTokens" => pb::tokens_client::TokensClient::new(ch)
            .list(pb::ListTokensRequest::default())
            .await
            .map(drop),
        "RevokeTokens" => pb::tokens_client::TokensClient::new(ch)
            .revoke(pb::RevokeTokensRequest {
                id: "0000000000000000".into(),
                node_id: String::new(),
            })
            .await
            .map(drop),
        "History" => pb::history_client::HistoryClient::new(ch)
            .query(pb::HistoryRequest::default())
            .await
            .map(drop),
        "Export" => pb::history_client::HistoryClient::new(ch)
            .export(pb::ExportRequest::default())
            .await
            .map(drop),
        "Fleet" => pb::history_client::HistoryClient::new(ch)
            .fleet(pb::FleetRequest::default())
            .await
            .map(drop),
        "Reverify" => pb::history_client::HistoryClient::new(ch)
            .reverify(pb::ReverifyRequest { seq: 1 })
            .await
            .map(drop),
        other => panic!("{other}"),
    };
    match r {
        Err(s)
            if s.code() == tonic::Code::PermissionDenied
                && (s.message().contains("may not call")
                    || s.message().contains("only act as itself")) =>
        {
            Err(s.message().to_string())
        }
        Err(s) if s.code() == tonic::Code::Unauthenticated => Err(s.message().to_string()),
        Err(s) if matches!(s.code(), tonic::Code::Unavailable | tonic::Code::Unknown) => {
            panic!("{rpc}: not an answer from the service: {s:?}")
        }
        // Allowed: any other outcome (not enrolled, bad token, not found) is the RPC's own.
        _ => Ok(()),
    }
}

const RPCS: [&str; 10] = [
    "Challenge",
    "ChallengeOther",
    "Redeem",
    "Jwks",
    "ListTokens",
    "RevokeTokens",
    "History",
    "Export",
    "Fleet",
    "Reverify",
];

#[tokio::test(flavor = "current_thread")]
async fn each_role_is_refused_every_rpc_its_table_forbids_and_allowed_the_rest() {
    let v = VerifierProc::start(&VerifierOpts::new(policy())).unwrap();
    let operator = v.client_cert("operator", "olga", None).unwrap();
    let auditor = v.client_cert("auditor", "aud", None).unwrap();
    let orchestrator = v.client_cert("orchestrator", "kube", None).unwrap();
    let node = v.client_cert("node", "n1-cert", Some("n1")).unwrap();
    // (who, cert, allowed RPCs)
    let table: Vec<(&str, Option<&Cert>, Vec<&str>)> = vec![
        (
            "no certificate",
            None,
            vec!["Challenge", "ChallengeOther", "Jwks"],
        ),
        ("node n1", Some(&node), vec!["Challenge", "Jwks"]),
        (
            "operator",
            Some(&operator),
            vec![
                "Redeem",
                "Jwks",
                "ListTokens",
                "RevokeTokens",
                "History",
                "Export",
                "Fleet",
                "Reverify",
            ],
        ),
        (
            "auditor",
            Some(&auditor),
            vec![
                "Jwks",
                "ListTokens",
                "History",
                "Export",
                "Fleet",
                "Reverify",
            ],
        ),
        ("orchestrator", Some(&orchestrator), vec!["Redeem", "Jwks"]),
    ];
    for (who, cert, ok) in &table {
        for rpc in RPCS {
            let got = call(&v, *cert, rpc).await;
            assert_eq!(
                got.is_ok(),
                ok.contains(&rpc),
                "{who} calling {rpc}: {got:?}"
            );
        }
    }
    let log = v.log();
    assert!(log.contains("refused"), "refusals are logged");
}

#[tokio::test(flavor = "current_thread")]
async fn a_certificate_from_another_ca_or_without_a_role_gets_nothing() {
    let v = VerifierProc::start(&VerifierOpts::new(policy())).unwrap();
    // Another deployment's clients CA: the handshake itself fails.
    let other = VerifierProc::start(&VerifierOpts::new(policy())).unwrap();
    let foreign = other.client_cert("operator", "mallory", None).unwrap();
    let outcome = match channel(&v, Some(&foreign)).await {
        Err(e) => Err(e),
        Ok(ch) => pb::history_client::HistoryClient::new(ch)
            .query(pb::HistoryRequest::default())
            .await
            .map(drop)
            .map_err(|s| format!("{s:?}")),
    };
    let e = outcome.expect_err("a foreign operator certificate must not work");
    assert!(
        !e.contains("may not call"),
        "refused at the handshake, not by role: {e}"
    );
    let out = v
        .cli_as(&["history"], Some((&foreign.0, &foreign.1)))
        .unwrap();
    assert!(!out.status.success());
    // The CLI without a certificate is an anonymous node: refused, saying why.
    let out = v.cli_as(&["history"], None).unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("may not call History"), "{err}");
    // The auditor reads but cannot revoke.
    let auditor = v.client_cert("auditor", "aud", None).unwrap();
    let out = v
        .cli_as(
            &["tokens", "revoke", "--node", "n1"],
            Some((&auditor.0, &auditor.1)),
        )
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("may not call RevokeTokens"));
    let out = v
        .cli_as(&["history"], Some((&auditor.0, &auditor.1)))
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "current_thread")]
async fn an_operator_s_revoke_is_recorded_with_who_did_it() {
    let v = VerifierProc::start(&VerifierOpts::new(policy())).unwrap();
    let out = v.cli(&["tokens", "revoke", "--node", "n9"]).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = v.cli(&["history", "--node", "n9", "--json"]).unwrap();
    let h: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rec = &h[0];
    assert_eq!(rec["kind"], "admin", "{h}");
    assert_eq!(rec["verdict"], "ADMIN");
    let what = rec["details"][0]["actual"].as_str().unwrap();
    assert!(
        what.contains("revoked 0 token(s)")
            && what.contains("CN=test-operator")
            && what.contains("operator"),
        "{what}"
    );
    let text = v.cli(&["history", "--node", "n9"]).unwrap();
    assert!(String::from_utf8_lossy(&text.stdout).contains("admin.action"));
}

#[test]
fn role_certificates_are_refused_for_unknown_roles() {
    let v = VerifierProc::start(&VerifierOpts::new(policy())).unwrap();
    for args in [
        vec!["--role", "root", "--name", "x"],
        vec!["--role", "node", "--name", "x"],
        vec!["--role", "auditor", "--name", "x", "--node", "n1"],
    ] {
        let out = std::process::Command::new(assay_tests::bin("assay-verifier").unwrap())
            .arg("client-cert")
            .arg("--dir")
            .arg(v.dir.path().join("tls"))
            .args(&args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
    }
}
