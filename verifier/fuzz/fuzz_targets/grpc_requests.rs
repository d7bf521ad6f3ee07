//! The node-facing gRPC requests (Enroll, Activate, Challenge, Attest) and the
//! operator's policy requests (Policies: Apply, List, Show, Retire, Assign,
//! Test) as the server receives them: arbitrary bytes decoded by prost (what tonic's codec
//! does with a frame's payload), then handed to the service's handlers on a
//! real verifier (sled store in a temporary directory, default caps lowered so
//! the exhaustion paths are reached, rate limits off so they do not hide the
//! handlers; no client authentication, so every caller is an operator). The
//! first byte picks the RPC. Applies that change the store stop after
//! [`MAX_APPLIES`] per process, so a long run keeps the store bounded.
//!
//! Checked besides "no panic, no hang, bounded memory": no arbitrary input
//! passes attestation or obtains a join token (there is no TPM behind it),
//! and no input makes the service answer INTERNAL or UNKNOWN (a malformed
//! request is the caller's error, never the verifier's).
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use assay_proto::v1 as pb;
use assay_proto::v1::attestation_server::Attestation as _;
use assay_proto::v1::policies_server::Policies as _;
use assay_verifier::api::Api;
use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use tonic::{Code, Request};

struct World {
    rt: tokio::runtime::Runtime,
    api: Api,
}

/// The EK root of the core's fuzz anchors (any valid CA certificate does:
/// no input can chain to its key).
const EK_ROOT: &str = include_str!("../../core/fuzz/anchors/root.pem");

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        // Kept for the process's life (libFuzzer exits the process without
        // running destructors), so the directories of earlier runs whose
        // process is gone are removed here.
        let tmp = std::env::temp_dir();
        for e in std::fs::read_dir(&tmp).into_iter().flatten().flatten() {
            let name = e.file_name();
            let Some(pid) = name.to_str().and_then(|n| n.strip_prefix("assay-fuzz-grpc-")) else {
                continue;
            };
            if !Path::new("/proc").join(pid).exists() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        let dir = tmp.join(format!("assay-fuzz-grpc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let write = |name: &str, text: &str| {
            let p = dir.join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let policy = write(
            "policy.toml",
            "schema = 0\nname = \"fuzz\"\n[pcrs.sha256]\n0 = \"0000000000000000000000000000000000000000000000000000000000000000\"\n",
        );
        let root = write("root.pem", EK_ROOT);
        let config = write(
            "verifier.toml",
            &format!(
                "data_dir = \"{}\"\npolicy = \"{}\"\n[tls]\nno_client_auth = true\n\
                 [trust]\nek_roots = [\"{}\"]\n\
                 [limits]\nsource_rate = 0\nnode_rate = 0\nnonces_per_node = 4\nnonces_total = 64\n\
                 enrollments_per_ek = 2\nenrollments_total = 32\n",
                dir.join("data").display(),
                policy.display(),
                root.display(),
            ),
        );
        let config = assay_verifier::config::Config::load(Some(Path::new(&config)), Default::default())
            .unwrap();
        let verifier = assay_verifier::server::build(config).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        World {
            rt,
            api: Api(std::sync::Arc::new(verifier)),
        }
    })
}

/// Policy applies (each a stored version) per fuzzing process.
const MAX_APPLIES: usize = 20_000;
static APPLIES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn refused_as_the_callers_error(s: &tonic::Status) {
    assert!(
        !matches!(s.code(), Code::Internal | Code::Unknown),
        "a malformed request is answered {:?}: {}",
        s.code(),
        s.message()
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&rpc, body)) = data.split_first() else {
        return;
    };
    let w = world();
    w.rt.block_on(async {
        match rpc % 8 {
            0 => {
                let Ok(m) = pb::EnrollRequest::decode(body) else {
                    return;
                };
                if let Err(s) = w.api.enroll(Request::new(m)).await {
                    refused_as_the_callers_error(&s);
                }
            }
            1 => {
                let Ok(m) = pb::ActivateRequest::decode(body) else {
                    return;
                };
                if let Err(s) = w.api.activate(Request::new(m)).await {
                    refused_as_the_callers_error(&s);
                }
            }
            2 => {
                let Ok(m) = pb::ChallengeRequest::decode(body) else {
                    return;
                };
                if let Err(s) = w.api.challenge(Request::new(m)).await {
                    refused_as_the_callers_error(&s);
                }
            }
            4 => {
                let Ok(m) = pb::ApplyPolicyRequest::decode(body) else {
                    return;
                };
                if APPLIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed) >= MAX_APPLIES {
                    return;
                }
                if let Err(s) = w.api.apply(Request::new(m)).await {
                    refused_as_the_callers_error(&s);
                }
            }
            5 => {
                if let Ok(m) = pb::ShowPolicyRequest::decode(body) {
                    if let Err(s) = w.api.show(Request::new(m)).await {
                        refused_as_the_callers_error(&s);
                    }
                }
                if let Ok(m) = pb::ListPoliciesRequest::decode(body) {
                    if let Err(s) = w.api.list(Request::new(m)).await {
                        refused_as_the_callers_error(&s);
                    }
                }
            }
            6 => {
                if let Ok(m) = pb::RetirePolicyRequest::decode(body) {
                    if let Err(s) = w.api.retire(Request::new(m)).await {
                        refused_as_the_callers_error(&s);
                    }
                }
                if let Ok(m) = pb::AssignPolicyRequest::decode(body) {
                    if let Err(s) = w.api.assign(Request::new(m)).await {
                        refused_as_the_callers_error(&s);
                    }
                }
            }
            7 => {
                let Ok(m) = pb::TestPolicyRequest::decode(body) else {
                    return;
                };
                if let Err(s) = w.api.test(Request::new(m)).await {
                    refused_as_the_callers_error(&s);
                }
            }
            _ => {
                let Ok(m) = pb::AttestRequest::decode(body) else {
                    return;
                };
                match w.api.attest(Request::new(m)).await {
                    Ok(r) => {
                        let r = r.into_inner();
                        assert!(
                            !r.verdict.as_ref().is_some_and(|v| v.passed),
                            "arbitrary evidence passed attestation"
                        );
                        assert!(r.join_token.is_none() && r.grant.is_none());
                    }
                    Err(s) => refused_as_the_callers_error(&s),
                }
            }
        }
    });
});
