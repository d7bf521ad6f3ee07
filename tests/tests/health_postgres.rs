//! gRPC health follows the store: a verifier on PostgreSQL answers SERVING
//! to grpcio's health client while the database answers, and NOT_SERVING
//! (and `assay_verifier_store_up 0` on its metrics) once PostgreSQL is
//! stopped. Its own test binary: stopping the cluster ends it for every
//! test of the process.

use std::time::Duration;

use assay_tests::grpcio::health;
use assay_tests::{PgDb, VerifierOpts, VerifierProc};

const POLICY: &str = "schema = 0\nname = \"lab\"\n[pcrs.sha256]\n16 = \"0000000000000000000000000000000000000000000000000000000000000000\"\n";

#[test]
fn health_is_serving_while_postgresql_answers_and_not_serving_once_it_is_stopped() {
    let db = PgDb::new().unwrap();
    let mut opts = VerifierOpts::new(POLICY);
    opts.config = Some(format!(
        "{}[metrics]\nlisten = \"127.0.0.1:0\"\n",
        db.storage_toml()
    ));
    let v = VerifierProc::start(&opts).unwrap();
    assay_tests::wait_for("health SERVING", Duration::from_secs(10), || {
        Ok(health(&v, "") == "SERVING")
    })
    .unwrap();
    assert_eq!(health(&v, "assay.v1.Attestation"), "SERVING");
    let up = |v: &VerifierProc| {
        assay_tests::metric(&assay_tests::scrape(v).unwrap(), "assay_verifier_store_up")
    };
    assert_eq!(up(&v), Some(1.0));

    db.cluster().stop().unwrap();
    let took = assay_tests::wait_for("health NOT_SERVING", Duration::from_secs(15), || {
        Ok(health(&v, "") == "NOT_SERVING")
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", v.log()));
    println!(
        "NOT_SERVING {} ms after PostgreSQL stopped",
        took.as_millis()
    );
    assert_eq!(health(&v, "assay.v1.Attestation"), "NOT_SERVING");
    assert_eq!(health(&v, "assay.v1.History"), "NOT_SERVING");
    assert_eq!(up(&v), Some(0.0));
    assert!(
        v.log()
            .contains("the store does not answer: health NOT_SERVING"),
        "{}",
        v.log()
    );
}
