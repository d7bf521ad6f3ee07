//! The pages' HTML on small views: what each shows, and that nothing
//! from the store becomes markup.

use std::collections::HashMap;

use super::*;
use crate::store::Quarantine;
use crate::web::view::{fleet_rows, ChainState, CheckpointState, FleetPage, NodePage};

fn viewer() -> Viewer {
    Viewer {
        role: "auditor".into(),
        subject: "CN=alice".into(),
        open: false,
    }
}

fn rec(seq: u64, node: &str, claims: Vec<Claim>, kind: &str) -> HistoryRecord {
    HistoryRecord {
        seq,
        node_id: node.into(),
        time_unix: 1_714_744_800,
        passed: claims.iter().all(|c| c.passed),
        claims,
        policy_name: "fleet<b>".into(),
        policy_digest: "5c3a9f00".repeat(8),
        evidence_digest: String::new(),
        prev_hash: String::new(),
        kind: kind.into(),
        policy_version: 3,
    }
}

fn page(fleet: Vec<(String, Option<HistoryRecord>)>) -> FleetPage {
    let q = HashMap::from([(
        "n-bad".to_string(),
        Quarantine {
            since_unix: 1_714_744_801,
            applied: false,
        },
    )]);
    let (counts, rows, paging) = fleet_rows(fleet, &q, None, 1, 100);
    FleetPage {
        viewer: viewer(),
        generated_unix: 1_714_744_900,
        at_unix: None,
        filter: None,
        counts,
        rows,
        paging,
        chain: ChainState {
            head: Some((12, 1_714_744_850)),
            checkpoint: Some(CheckpointState {
                seq: 10,
                time_unix: 1_714_744_820,
                signature: Ok(()),
                matches_record: Some(true),
            }),
        },
        quarantines: q.into_iter().collect(),
        operator_actions: vec![rec(
            11,
            "n-bad",
            vec![Claim::new(
                "admin.action",
                true,
                "CN=op",
                "revoked token 3f9c",
                "operator",
            )],
            "admin",
        )],
    }
}

#[test]
fn a_failing_node_shows_its_failed_claim_expected_and_actual() {
    let bad = rec(
        9,
        "n-bad",
        vec![
            Claim::new("quote.signature", true, "", "", ""),
            Claim::new("pcr.sha256.16", false, "00ab", "42cd", "PCR sha256:16"),
        ],
        "",
    );
    let good = rec(
        8,
        "n-good",
        vec![Claim::new("pcr.sha256.0", true, "", "", "")],
        "",
    );
    let html = fleet(&page(vec![
        ("n-good".into(), Some(good)),
        ("n-bad".into(), Some(bad)),
        ("n-new".into(), None),
    ]));
    let bad_row = html
        .lines()
        .find(|l| l.contains("id=n-bad") && l.contains("<tr"))
        .expect("a row for n-bad");
    assert!(bad_row.contains("badge fail"), "{bad_row}");
    assert!(
        bad_row.contains("pcr.sha256.16</code> expected <code>00ab</code> got <code>42cd"),
        "{bad_row}"
    );
    assert!(bad_row.contains("isolation pending"), "{bad_row}");
    assert!(
        html.find("id=n-bad").unwrap() < html.find("id=n-good").unwrap(),
        "failing nodes first"
    );
    assert!(
        html.contains("fleet&lt;b&gt;@3"),
        "policy name escaped, version shown"
    );
    assert!(html.contains("2024-05-03 14:00:00Z"), "dates in UTC");
    assert!(!html.contains("1714744800"), "no unix seconds");
    assert!(html.contains("Last signed checkpoint: #10"));
    assert!(html.contains("2 records after it"));
    assert!(html.contains("revoked token 3f9c"));
    assert!(html.contains("auditor · CN=alice"));
}

#[test]
fn hostile_strings_are_escaped_everywhere() {
    let evil = "<img src=x onerror=alert(1)>\"'&";
    let r = rec(1, evil, vec![Claim::new(evil, false, evil, evil, evil)], "");
    let mut p = page(vec![(evil.into(), Some(r.clone()))]);
    p.viewer.subject = evil.into();
    let html = fleet(&p);
    assert!(!html.contains("<img"), "{html}");
    assert!(!html.contains("onerror=alert(1)>"), "{html}");
    let n = node(&NodePage {
        viewer: p.viewer.clone(),
        generated_unix: 1,
        node_id: evil.into(),
        standing: Standing::Fail,
        latest: Some(r.clone()),
        enrolled: None,
        quarantine: None,
        tokens: vec![],
        timeline: vec![r],
        to_unix: None,
        before_seq: None,
        next_before_seq: 0,
    });
    assert!(!n.contains("<img"), "{n}");
    let m = message(evil, evil, Some(evil), 0);
    assert!(!m.contains("<img"), "{m}");
}

#[test]
fn a_node_page_shows_the_timeline_with_policy_versions_and_a_cursor() {
    let recs = vec![
        rec(
            5,
            "n1",
            vec![Claim::new(
                "pcr.sha256.7",
                false,
                "aa",
                "bb",
                "PCR sha256:7",
            )],
            "",
        ),
        rec(
            4,
            "n1",
            vec![Claim::new("pcr.sha256.7", true, "aa", "aa", "")],
            "",
        ),
    ];
    let html = node(&NodePage {
        viewer: viewer(),
        generated_unix: 1_714_744_900,
        node_id: "n1".into(),
        standing: Standing::Fail,
        latest: Some(recs[0].clone()),
        enrolled: Some((1_714_700_000, Some(1_714_744_000))),
        quarantine: Some(Quarantine {
            since_unix: 1_714_744_800,
            applied: true,
        }),
        tokens: vec![(
            "ab".repeat(32),
            crate::store::TokenRecord {
                node_id: "n1".into(),
                ak_name: String::new(),
                expires_unix: 1_714_745_000,
                used: false,
                revoked: true,
                issued_unix: 1_714_744_400,
            },
        )],
        timeline: recs,
        to_unix: None,
        before_seq: None,
        next_before_seq: 4,
    });
    assert!(html.contains("<td><code class=\"claim\">pcr.sha256.7</code></td><td><code>aa</code></td><td><code>bb</code></td><td>PCR sha256:7</td>"), "{html}");
    assert!(html.contains("all claims passed (1)"));
    assert!(html.contains("token revoked"));
    assert!(html.contains("isolated by the orchestrator"));
    assert!(html.contains("href=\"/node?id=n1&amp;before=4\""), "{html}");
}
