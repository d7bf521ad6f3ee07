//! The load generator's simulated nodes are faithful enough to pass a real
//! verifier, and only when they should: enrollment through the real path
//! (software credential activation), a pass with a token, a wrong PCR value
//! failing that PCR's claim, a replayed answer failing `nonce.unused`, and a
//! quote signed by another node's AK failing its signature check.

use assay_proto::v1 as pb;
use assay_tests::simnode::{self, AkKind, SimNode, SoftEk};
use assay_tests::{VerifierOpts, VerifierProc};

fn failed(r: &pb::AttestResponse) -> Vec<String> {
    r.verdict
        .as_ref()
        .expect("a verdict")
        .claims
        .iter()
        .filter(|c| !c.passed)
        .map(|c| c.id.clone())
        .collect()
}

#[tokio::test(flavor = "current_thread")]
async fn simulated_nodes_pass_a_real_verifier_only_when_they_should() {
    let ek = SoftEk::new().unwrap();
    let mut opts = VerifierOpts::new(simnode::golden_policy(&[0, 1, 2, 7]));
    opts.ek_roots.push(ek.root_pem());
    let v = VerifierProc::start(&opts).unwrap();
    let mut c = pb::attestation_client::AttestationClient::new(
        simnode::channel(&v.url, &v.ca_pem).await.unwrap(),
    );
    for kind in [AkKind::P256, AkKind::Rsa] {
        let n = SimNode::new(format!("sim-{kind:?}"), kind, &ek).unwrap();
        n.enroll(&ek, &mut c).await.unwrap();
        let r = n.attest(&mut c).await.unwrap();
        assert!(failed(&r).is_empty(), "{r:?}\n{}", v.log());
        assert!(r.join_token.is_some());
    }

    let mut bad = SimNode::new("sim-bad-pcr", AkKind::P256, &ek).unwrap();
    bad.pcr_overrides.push((7, vec![0xab; 32]));
    bad.enroll(&ek, &mut c).await.unwrap();
    assert_eq!(
        failed(&bad.attest(&mut c).await.unwrap()),
        vec!["pcr.sha256.7"]
    );

    let n = SimNode::new("sim-replay", AkKind::P256, &ek).unwrap();
    n.enroll(&ek, &mut c).await.unwrap();
    let chal = c
        .challenge(pb::ChallengeRequest {
            node_id: n.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let answer = n.answer(&chal);
    assert!(failed(&c.attest(answer.clone()).await.unwrap().into_inner()).is_empty());
    assert_eq!(
        failed(&c.attest(answer).await.unwrap().into_inner()),
        vec!["nonce.unused"]
    );

    // Another node's AK signs an answer in this node's name.
    let other = SimNode::new("sim-replay", AkKind::P256, &ek).unwrap();
    let chal = c
        .challenge(pb::ChallengeRequest {
            node_id: n.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let f = failed(&c.attest(other.answer(&chal)).await.unwrap().into_inner());
    assert!(f.contains(&"quote.signature".to_string()), "{f:?}");
}
