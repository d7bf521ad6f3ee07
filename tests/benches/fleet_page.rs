//! How long the fleet page takes for a fleet of 10,000 nodes (criterion):
//! the store read behind it (`fleet_at` and the quarantines on sled, one
//! record per node; the operator actions' window of records), the counting,
//! ordering and paging (`fleet_rows`), and the rendering of one page, with
//! every node on it and with the default 500. Synthetic data: 10,000 nodes
//! whose verdicts carry 14 claims each, 1 in 12 failing one or two PCR
//! claims (and quarantined), 1 in 50 stale, 1 in 100 without a verdict.
//!
//! `cargo bench -p assay-tests --bench fleet_page -- --warm-up-time 1 --measurement-time 5`
//!
//! Environment: ASSAY_FLEET_NODES (default 10000).

use std::collections::HashMap;

use assay_core::verdict::Claim;
use assay_verifier::store::{HistoryRecord, HistoryStore, NodeStore, Quarantine, SledStore};
use assay_verifier::web::render;
use assay_verifier::web::view::{fleet_rows, ChainState, FleetPage, NodePage, Standing, Viewer};
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion};

const NOW: i64 = 1_714_744_800;

fn nodes() -> usize {
    std::env::var("ASSAY_FLEET_NODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

fn hex64(seed: usize) -> String {
    format!("{seed:064x}")
}

/// Node `i`'s latest record (None: no verdict yet).
fn record(i: usize, seq: u64) -> Option<HistoryRecord> {
    if i % 100 == 99 {
        return None;
    }
    let stale = i % 50 == 7;
    let failing = i % 12 == 3;
    let claims = if stale {
        vec![Claim::new(
            "node.fresh",
            false,
            "a pass within 900 s",
            "no pass since 2024-05-03 13:40:00Z",
            "history",
        )]
    } else {
        (0..14)
            .map(|c| {
                let bad = failing && (c == 7 || (i % 24 == 3 && c == 4));
                Claim::new(
                    format!("pcr.sha256.{c}"),
                    !bad,
                    hex64(c),
                    hex64(if bad { c + 1_000 + i } else { c }),
                    format!("PCR sha256:{c}"),
                )
            })
            .collect()
    };
    Some(HistoryRecord {
        seq,
        node_id: format!("rack{:03}-node-{i:05}", i / 40),
        time_unix: NOW - (i % 60) as i64,
        passed: !stale && !failing,
        claims,
        policy_name: "fleet".into(),
        policy_digest: hex64(42),
        evidence_digest: hex64(i),
        prev_hash: String::new(),
        kind: if stale { "stale".into() } else { String::new() },
        policy_version: 3 + (i % 2) as u64,
    })
}

fn fleet(n: usize) -> Vec<(String, Option<HistoryRecord>)> {
    (0..n)
        .map(|i| {
            (
                format!("rack{:03}-node-{i:05}", i / 40),
                record(i, i as u64 + 1),
            )
        })
        .collect()
}

fn quarantines(fleet: &[(String, Option<HistoryRecord>)]) -> HashMap<String, Quarantine> {
    fleet
        .iter()
        .filter(|(_, r)| r.as_ref().is_some_and(|r| r.kind.is_empty() && !r.passed))
        .map(|(n, r)| {
            (
                n.clone(),
                Quarantine {
                    since_unix: r.as_ref().map_or(NOW, |r| r.time_unix),
                    applied: true,
                },
            )
        })
        .collect()
}

fn page(rows: usize, fleet: Vec<(String, Option<HistoryRecord>)>) -> FleetPage {
    let q = quarantines(&fleet);
    let (counts, rows, paging) = fleet_rows(fleet, &q, None, 1, rows);
    FleetPage {
        viewer: Viewer {
            role: "auditor".into(),
            subject: "CN=bench".into(),
            open: false,
        },
        generated_unix: NOW,
        at_unix: None,
        filter: None,
        counts,
        rows,
        paging,
        chain: ChainState::default(),
        quarantines: q.into_iter().take(50).collect(),
        operator_actions: Vec::new(),
    }
}

fn bench(c: &mut Criterion) {
    let n = nodes();
    let all = fleet(n);
    let q = quarantines(&all);

    let mut g = c.benchmark_group(format!("fleet_page_{n}_nodes"));
    g.sample_size(20);
    g.bench_function("fleet_rows_count_order_page_500", |b| {
        b.iter_batched(
            || all.clone(),
            |f| fleet_rows(f, &q, None, 1, 500),
            BatchSize::LargeInput,
        )
    });
    let whole = page(n, all.clone());
    let html = render::fleet(&whole);
    println!(
        "a page of all {n} nodes: {:.1} MiB of HTML ({} bytes/node)",
        html.len() as f64 / 1_048_576.0,
        html.len() / n.max(1)
    );
    g.bench_function(format!("render_all_{n}_on_one_page"), |b| {
        b.iter(|| render::fleet(black_box(&whole)))
    });
    let first = page(500, all.clone());
    g.bench_function("render_page_of_500", |b| {
        b.iter(|| render::fleet(black_box(&first)))
    });
    let timeline: Vec<HistoryRecord> = (0..100)
        .filter_map(|i| record(i * 12 + 3, i as u64))
        .collect();
    let node = NodePage {
        viewer: whole.viewer.clone(),
        generated_unix: NOW,
        node_id: "rack000-node-00003".into(),
        standing: Standing::Fail,
        latest: timeline.first().cloned(),
        enrolled: Some((NOW - 86_400, Some(NOW - 60))),
        quarantine: None,
        tokens: Vec::new(),
        timeline,
        to_unix: None,
        before_seq: None,
        next_before_seq: 0,
    };
    g.bench_function("render_node_timeline_of_100", |b| {
        b.iter(|| render::node(black_box(&node)))
    });

    // The store read behind the page, on sled: one verdict per node.
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(&dir.path().join("db")).unwrap();
    let recs: Vec<HistoryRecord> = (0..n)
        .filter_map(|i| record(i, 0))
        .map(|mut r| {
            r.time_unix = NOW;
            r
        })
        .collect();
    for chunk in recs.chunks(1000) {
        store.append_history_batch(chunk.to_vec()).unwrap();
    }
    for (node, quarantine) in &q {
        store.set_quarantine(node, Some(quarantine)).unwrap();
    }
    assert_eq!(store.fleet_at(NOW).unwrap().len(), recs.len());
    g.bench_function("sled_fleet_at_and_quarantines", |b| {
        b.iter(|| (store.fleet_at(NOW).unwrap(), store.quarantines().unwrap()))
    });
    let head = store.history_head().unwrap().unwrap().seq;
    let window = assay_verifier::web::OPERATOR_ACTION_WINDOW;
    g.bench_function(format!("sled_operator_actions_window_{window}"), |b| {
        b.iter(|| {
            store
                .history_found(head.saturating_sub(window - 1).max(1), window as usize)
                .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
