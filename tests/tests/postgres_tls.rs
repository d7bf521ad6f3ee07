//! PostgreSQL over TLS (rustls), against the real server of `assay_tests::PgDb`
//! (ssl=on, a certificate for `localhost` only from a CA of its own):
//!
//! - with `[storage] ca_file` the verifier's every connection is TLS (the
//!   server's own `pg_stat_ssl` says so) and it works (migrations, a query);
//! - a server certificate from another CA, or for another name than the host
//!   connected to, is refused and the verifier does not start;
//! - a database on another machine without TLS settings is refused before
//!   any connection is made;
//! - libpq (psql with `sslmode=verify-full`), a client Assay did not write,
//!   decides the same on the same server, certificate and names.

use anyhow::Result;
use assay_tests::{PgDb, Pki, VerifierOpts, VerifierProc};

const ZERO: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn opts(storage: String) -> VerifierOpts {
    let mut o = VerifierOpts::new(format!(
        "schema = 0\nname = \"pg-tls\"\n[pcrs.sha256]\n16 = \"{ZERO}\"\n"
    ));
    o.config = Some(storage);
    o
}

fn storage(url: &str, ca: &std::path::Path) -> String {
    format!(
        "[storage]\nbackend = \"postgres\"\nurl = \"{url}\"\nca_file = \"{}\"\n",
        ca.display()
    )
}

/// The verifier's sessions on `db` (the harness's psql is in clear and is
/// not counted): (all, over TLS).
fn sessions(db: &PgDb) -> Result<(u32, u32)> {
    let out = db.psql(&format!(
        "SELECT count(*), count(*) FILTER (WHERE s.ssl) FROM pg_stat_activity a \
         JOIN pg_stat_ssl s USING (pid) WHERE a.datname = '{}' AND a.pid <> pg_backend_pid()",
        db.name
    ))?;
    let (all, tls) = out.split_once('|').unwrap_or(("0", "0"));
    Ok((all.parse()?, tls.parse()?))
}

#[test]
fn the_verifier_talks_to_postgresql_over_verified_tls() -> Result<()> {
    let db = PgDb::new()?;
    let url = format!(
        "host=localhost port={} user=postgres dbname={}",
        db.port(),
        db.name
    );
    let v = VerifierProc::start(&opts(storage(&url, db.tls_ca())))?;
    // A query through the store (the operator's node list), over the pool.
    let out = v.cli(&["node", "list"])?;
    assert!(
        out.status.success(),
        "{}\n{}",
        assay_tests::output_text(&out),
        v.log()
    );
    let (all, tls) = sessions(&db)?;
    assert!(all >= 1, "the verifier holds no session on {}", db.name);
    assert_eq!(tls, all, "every session of the verifier is TLS");
    // The oracle: libpq verifies the same certificate for the same name.
    db.libpq_connects(&format!(
        "host=localhost sslmode=verify-full sslrootcert={}",
        db.tls_ca().display()
    ))?;
    Ok(())
}

/// The verifier connecting to `host` and trusting `ca` does not start and
/// names `rustls_says`; no session reached the database; libpq with
/// `sslmode=verify-full` on the same host and CA refuses too, saying `libpq_says`.
fn refused(
    db: &PgDb,
    host: &str,
    ca: &std::path::Path,
    rustls_says: &str,
    libpq_says: &str,
) -> Result<()> {
    let url = format!(
        "host={host} port={} user=postgres dbname={}",
        db.port(),
        db.name
    );
    let e = VerifierProc::start(&opts(storage(&url, ca)))
        .err()
        .expect("the verifier must not start");
    let e = format!("{e:#}");
    assert!(e.contains(rustls_says), "{e}");
    assert_eq!(sessions(db)?.0, 0, "no session was established");
    let libpq = db
        .libpq_connects(&format!(
            "host={host} sslmode=verify-full sslrootcert={}",
            ca.display()
        ))
        .expect_err("libpq refuses it too");
    assert!(libpq.to_string().contains(libpq_says), "{libpq}");
    Ok(())
}

#[test]
fn a_postgresql_certificate_from_another_ca_is_refused() -> Result<()> {
    let db = PgDb::new()?;
    let other = Pki::new("Another CA")?;
    refused(
        &db,
        "localhost",
        &other.ca_pem(),
        "UnknownIssuer",
        "certificate verify failed",
    )
}

#[test]
fn a_postgresql_certificate_for_another_name_is_refused() -> Result<()> {
    let db = PgDb::new()?;
    // The certificate names `localhost`; the verifier connects to 127.0.0.1.
    refused(
        &db,
        "127.0.0.1",
        db.tls_ca(),
        "not valid for name",
        "does not match host name",
    )
}

#[test]
fn a_database_on_another_machine_without_tls_settings_is_refused_at_start() -> Result<()> {
    // TEST-NET-1: nothing is connected to; the config check refuses first.
    let e = VerifierProc::start(&opts(
        "[storage]\nbackend = \"postgres\"\nurl = \"host=192.0.2.1 user=assay dbname=assay\"\n"
            .into(),
    ))
    .err()
    .expect("the verifier must not start");
    let e = format!("{e:#}");
    assert!(
        e.contains("storage.url") && e.contains("is not on this machine"),
        "{e}"
    );
    Ok(())
}
