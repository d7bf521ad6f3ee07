//! What a page shows, as plain data: filled from the store by `load`, turned
//! into HTML by `render`. [`fleet_rows`] (counting, ordering, paging) is pure
//! too, so the bench can build a page of any size without a store.

use std::collections::HashMap;

use crate::store::{HistoryRecord, Quarantine, TokenRecord};

/// A node's standing from its latest verdict or stale record
/// ([`crate::service::standing`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Standing {
    Fail,
    Stale,
    Unknown,
    Pass,
}

impl Standing {
    /// In the order the fleet lists them: what needs attention first.
    pub const ALL: [Standing; 4] = [
        Standing::Fail,
        Standing::Stale,
        Standing::Unknown,
        Standing::Pass,
    ];

    pub fn of(latest: Option<&HistoryRecord>) -> Self {
        match crate::service::standing(latest) {
            "pass" => Standing::Pass,
            "fail" => Standing::Fail,
            "stale" => Standing::Stale,
            _ => Standing::Unknown,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Standing::Pass => "pass",
            Standing::Fail => "fail",
            Standing::Stale => "stale",
            Standing::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Standing::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// Who is looking, from their client certificate.
#[derive(Debug, Clone)]
pub struct Viewer {
    /// `auditor` or `operator`.
    pub role: String,
    /// The certificate's subject.
    pub subject: String,
    /// `tls.no_client_auth`: the page (like the API) is open to any TLS client.
    pub open: bool,
}

/// One row of the fleet table.
#[derive(Debug, Clone)]
pub struct NodeRow {
    pub node_id: String,
    pub standing: Standing,
    /// The record the standing comes from.
    pub latest: Option<HistoryRecord>,
    /// Quarantined now (whatever the moment shown).
    pub quarantine: Option<Quarantine>,
}

/// How many nodes stand where.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub pass: usize,
    pub fail: usize,
    pub stale: usize,
    pub unknown: usize,
    /// Quarantined now.
    pub quarantined: usize,
}

impl Counts {
    pub fn of(&self, s: Standing) -> usize {
        match s {
            Standing::Pass => self.pass,
            Standing::Fail => self.fail,
            Standing::Stale => self.stale,
            Standing::Unknown => self.unknown,
        }
    }

    pub fn nodes(&self) -> usize {
        self.pass + self.fail + self.stale + self.unknown
    }
}

/// The last signed checkpoint, as checked when the page was built.
#[derive(Debug, Clone)]
pub struct CheckpointState {
    pub seq: u64,
    pub time_unix: i64,
    /// Its signature under this verifier's key (the JWKS): Ok, or why not.
    pub signature: Result<(), String>,
    /// The stored record `seq` still hashes to the signed head hash (None:
    /// the record is gone).
    pub matches_record: Option<bool>,
}

/// The history chain's state: its head and the last signed checkpoint.
#[derive(Debug, Clone, Default)]
pub struct ChainState {
    /// (seq, time) of the newest record.
    pub head: Option<(u64, i64)>,
    pub checkpoint: Option<CheckpointState>,
}

/// Where a list is: page `number` (from 1) of `pages`, `matching` items in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paging {
    pub number: usize,
    pub pages: usize,
    pub matching: usize,
    pub per_page: usize,
}

/// The fleet page.
#[derive(Debug, Clone)]
pub struct FleetPage {
    pub viewer: Viewer,
    /// When the page was built.
    pub generated_unix: i64,
    /// The moment shown; None: now.
    pub at_unix: Option<i64>,
    /// Only nodes standing so.
    pub filter: Option<Standing>,
    pub counts: Counts,
    /// This page's nodes.
    pub rows: Vec<NodeRow>,
    pub paging: Paging,
    pub chain: ChainState,
    /// Quarantined nodes, newest first (at most [`MAX_LISTED`]).
    pub quarantines: Vec<(String, Quarantine)>,
    /// The newest operator actions (`admin` records: revocations, node and
    /// policy changes), newest first.
    pub operator_actions: Vec<HistoryRecord>,
}

/// Most entries of a side list (quarantines, operator actions, tokens).
pub const MAX_LISTED: usize = 50;

/// One node's page.
#[derive(Debug, Clone)]
pub struct NodePage {
    pub viewer: Viewer,
    pub generated_unix: i64,
    pub node_id: String,
    pub standing: Standing,
    pub latest: Option<HistoryRecord>,
    /// (enrolled at, last pass) when the node is enrolled.
    pub enrolled: Option<(i64, Option<i64>)>,
    pub quarantine: Option<Quarantine>,
    /// Its newest tokens (id, record), newest expiry first.
    pub tokens: Vec<(String, TokenRecord)>,
    /// Records at or before `to_unix` (None: up to now), newest first.
    pub timeline: Vec<HistoryRecord>,
    pub to_unix: Option<i64>,
    /// This page's cursor (`before`), if it is not the first.
    pub before_seq: Option<u64>,
    /// The next (older) page's cursor; 0: this is the last.
    pub next_before_seq: u64,
}

/// The rows of one fleet page and the counts over the whole fleet: every
/// node of `fleet` ([`crate::store::HistoryStore::fleet_at`]) counted,
/// those standing as `filter` listed failing first (then stale, unknown,
/// passing; by node id within each), `per_page` a page; `page` from 1,
/// past the last page the last page.
pub fn fleet_rows(
    fleet: Vec<(String, Option<HistoryRecord>)>,
    quarantines: &HashMap<String, Quarantine>,
    filter: Option<Standing>,
    page: usize,
    per_page: usize,
) -> (Counts, Vec<NodeRow>, Paging) {
    let per_page = per_page.max(1);
    let mut counts = Counts {
        quarantined: quarantines.len(),
        ..Counts::default()
    };
    let mut rows: Vec<(Standing, String, Option<HistoryRecord>)> = Vec::new();
    for (node_id, latest) in fleet {
        let standing = Standing::of(latest.as_ref());
        match standing {
            Standing::Pass => counts.pass += 1,
            Standing::Fail => counts.fail += 1,
            Standing::Stale => counts.stale += 1,
            Standing::Unknown => counts.unknown += 1,
        }
        if filter.is_none_or(|f| f == standing) {
            rows.push((standing, node_id, latest));
        }
    }
    rows.sort_by(|a, b| (a.0 as u8, &a.1).cmp(&(b.0 as u8, &b.1)));
    let matching = rows.len();
    let pages = matching.div_ceil(per_page).max(1);
    let number = page.clamp(1, pages);
    let rows = rows
        .into_iter()
        .skip((number - 1) * per_page)
        .take(per_page)
        .map(|(standing, node_id, latest)| NodeRow {
            quarantine: quarantines.get(&node_id).cloned(),
            node_id,
            standing,
            latest,
        })
        .collect();
    (
        counts,
        rows,
        Paging {
            number,
            pages,
            matching,
            per_page,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(node: &str, passed: bool, kind: &str) -> HistoryRecord {
        HistoryRecord {
            seq: 1,
            node_id: node.into(),
            time_unix: 1,
            passed,
            claims: vec![],
            policy_name: "default".into(),
            policy_digest: String::new(),
            evidence_digest: String::new(),
            prev_hash: String::new(),
            kind: kind.into(),
            policy_version: 1,
        }
    }

    fn fleet() -> Vec<(String, Option<HistoryRecord>)> {
        vec![
            ("a".into(), Some(rec("a", true, ""))),
            ("b".into(), Some(rec("b", false, ""))),
            ("c".into(), Some(rec("c", false, "stale"))),
            ("d".into(), None),
            ("e".into(), Some(rec("e", false, ""))),
            ("f".into(), Some(rec("f", true, ""))),
        ]
    }

    #[test]
    fn the_fleet_is_counted_whole_and_listed_failing_first() {
        let q = HashMap::from([(
            "b".to_string(),
            Quarantine {
                since_unix: 5,
                applied: true,
            },
        )]);
        let (counts, rows, paging) = fleet_rows(fleet(), &q, None, 1, 4);
        assert_eq!(
            counts,
            Counts {
                pass: 2,
                fail: 2,
                stale: 1,
                unknown: 1,
                quarantined: 1
            }
        );
        let ids: Vec<&str> = rows.iter().map(|r| r.node_id.as_str()).collect();
        assert_eq!(ids, ["b", "e", "c", "d"]);
        assert!(rows[0].quarantine.is_some() && rows[1].quarantine.is_none());
        assert_eq!(
            paging,
            Paging {
                number: 1,
                pages: 2,
                matching: 6,
                per_page: 4
            }
        );
        let (_, rows, paging) = fleet_rows(fleet(), &q, None, 9, 4);
        assert_eq!(paging.number, 2, "past the end: the last page");
        let ids: Vec<&str> = rows.iter().map(|r| r.node_id.as_str()).collect();
        assert_eq!(ids, ["a", "f"]);
    }

    #[test]
    fn a_filter_lists_only_its_nodes_but_counts_all() {
        let (counts, rows, paging) =
            fleet_rows(fleet(), &HashMap::new(), Some(Standing::Fail), 1, 100);
        assert_eq!(counts.nodes(), 6);
        assert_eq!(rows.len(), 2);
        assert_eq!(paging.matching, 2);
        let (_, rows, paging) = fleet_rows(Vec::new(), &HashMap::new(), None, 0, 100);
        assert!(rows.is_empty());
        assert_eq!((paging.number, paging.pages), (1, 1));
    }
}
