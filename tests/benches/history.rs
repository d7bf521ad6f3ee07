//! History at scale, on both backends side by side: loads N records (default
//! 1,000,000; `ASSAY_BENCH_RECORDS`) for 1,000 nodes, one verdict per node per
//! minute, into sled and into a real PostgreSQL (a cluster this bench starts;
//! `ASSAY_BENCH_BACKENDS=sled` or `postgres` for one), then times the queries
//! an auditor runs: a node in a one-hour window, a one-hour window for the
//! whole fleet (first page of 100), the fleet at a moment, a failed claim over
//! the last hour, and `audit verify` over everything. Prints figures.
//!
//! `cargo bench -p assay-tests --bench history`

use std::time::{Duration, Instant};

use assay_core::verdict::Claim;
use assay_tests::PgDb;
use assay_verifier::store::{HistoryQuery, HistoryRecord, PgConfig, PgStore, SledStore, Storage};

const NODES: u64 = 1000;
const T0: i64 = 1_790_000_000;

fn record(i: u64) -> HistoryRecord {
    let fail = i.is_multiple_of(97);
    HistoryRecord {
        seq: 0,
        node_id: format!("node-{:04}", i % NODES),
        // One verdict per node per minute.
        time_unix: T0 + (i / NODES) as i64 * 60,
        passed: !fail,
        claims: if fail {
            vec![Claim::new(
                "pcr.sha256.7",
                false,
                "00".repeat(32),
                "ab".repeat(32),
                "PCR sha256:7",
            )]
        } else {
            Vec::new()
        },
        policy_name: "fleet".into(),
        policy_digest: "5c3a".repeat(16),
        evidence_digest: "e1".repeat(32),
        prev_hash: String::new(),
        kind: String::new(),
        policy_version: 0,
    }
}

fn time<T>(n: usize, mut f: impl FnMut(usize) -> T) -> (Duration, Duration, T) {
    let mut ds = Vec::with_capacity(n);
    let mut last = None;
    for i in 0..n {
        let t = Instant::now();
        last = Some(f(i));
        ds.push(t.elapsed());
    }
    ds.sort();
    (
        ds[n / 2],
        ds[(n * 99 / 100).min(n - 1)],
        last.expect("n > 0"),
    )
}

fn main() {
    let n: u64 = std::env::var("ASSAY_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let backends = std::env::var("ASSAY_BENCH_BACKENDS").unwrap_or("sled,postgres".into());
    for b in backends.split(',') {
        match b {
            "sled" => {
                let dir = tempfile::tempdir().expect("temp dir");
                let store = SledStore::open(&dir.path().join("db")).expect("store");
                println!("== sled");
                run(n, &store, &|| {});
                let size = walk(dir.path());
                println!(
                    "sled on disk: {:.0} MiB ({:.0} bytes/record)",
                    size as f64 / 1048576.0,
                    size as f64 / n as f64
                );
            }
            "postgres" => {
                let db = PgDb::new().expect("PostgreSQL");
                let store = PgStore::open(
                    &PgConfig::from_section(Some(db.url.clone()), None, Some(4), None)
                        .expect("loopback"),
                )
                .expect("store");
                println!("== PostgreSQL");
                // As autovacuum would after a bulk load: planner statistics.
                run(n, &store, &|| {
                    db.psql("VACUUM ANALYZE history").expect("vacuum");
                });
                let size: f64 = db
                    .psql("SELECT pg_database_size(current_database())")
                    .expect("size")
                    .parse()
                    .expect("number");
                println!(
                    "PostgreSQL database: {:.0} MiB ({:.0} bytes/record, indexes included)",
                    size / 1048576.0,
                    size / n as f64
                );
            }
            other => panic!("ASSAY_BENCH_BACKENDS: unknown backend {other}"),
        }
    }
}

/// Loads `n` records, calls `loaded` (statistics), then times the queries.
fn run(n: u64, store: &dyn Storage, loaded: &dyn Fn()) {
    let t = Instant::now();
    let batch = 10_000;
    let mut i = 0;
    while i < n {
        let recs: Vec<HistoryRecord> = (i..(i + batch).min(n)).map(record).collect();
        store.append_history_batch(recs).expect("append");
        i += batch;
    }
    let load = t.elapsed();
    println!(
        "loaded {n} records ({NODES} nodes) in {:.1} s ({:.0} records/s, batches of {batch}, each durable)",
        load.as_secs_f64(),
        n as f64 / load.as_secs_f64()
    );
    loaded();
    let end = T0 + (n / NODES) as i64 * 60;
    let hour = 3600;

    let (p50, p99, got) = time(200, |k| {
        let from = T0 + ((k as i64 * 7919) % ((end - T0 - hour).max(1)));
        store
            .query_history(&HistoryQuery {
                node_id: Some(format!("node-{:04}", k as u64 % NODES)),
                from_unix: Some(from),
                to_unix: Some(from + hour),
                limit: 1000,
                ..Default::default()
            })
            .expect("query")
            .0
            .len()
    });
    println!("query node + 1 h window: p50 {p50:?}  p99 {p99:?}  ({got} records)");

    let (p50, p99, got) = time(100, |k| {
        let from = T0 + ((k as i64 * 7919) % ((end - T0 - hour).max(1)));
        store
            .query_history(&HistoryQuery {
                from_unix: Some(from),
                to_unix: Some(from + hour),
                limit: 100,
                ..Default::default()
            })
            .expect("query")
            .0
            .len()
    });
    println!(
        "query fleet 1 h window, first page of 100: p50 {p50:?}  p99 {p99:?}  ({got} records)"
    );

    let (p50, p99, got) = time(20, |_| {
        store
            .query_history(&HistoryQuery {
                from_unix: Some(end - hour),
                failed_claim: Some("pcr.sha256.7".into()),
                limit: 10_000,
                ..Default::default()
            })
            .expect("query")
            .0
            .len()
    });
    println!("query failed claim, last hour (scan of that hour): p50 {p50:?}  p99 {p99:?}  ({got} records)");

    let (p50, _, got) = time(5, |k| {
        store
            .fleet_at(T0 + (end - T0) / (k as i64 + 2))
            .expect("fleet")
            .len()
    });
    println!("fleet at a moment ({got} nodes): p50 {p50:?}");

    let jwks = serde_json::json!({"keys": []});
    let t = Instant::now();
    let report =
        assay_verifier::audit::verify(store.history_iter().map(|r| r.expect("read")), &[], &jwks);
    println!(
        "audit verify over {} records: {:.2} s ({})",
        report.records,
        t.elapsed().as_secs_f64(),
        if report.broken.is_none() {
            "intact"
        } else {
            "BROKEN"
        }
    );
}

fn walk(p: &std::path::Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.flatten()
                .map(|e| match e.file_type() {
                    Ok(t) if t.is_dir() => walk(&e.path()),
                    _ => e.metadata().map_or(0, |m| m.len()),
                })
                .sum()
        })
        .unwrap_or(0)
}
