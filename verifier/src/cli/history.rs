//! `history` (records by node, time, verdict, policy, failed claim) and
//! `fleet` (each node's standing at a moment).

use assay_proto::v1 as pb;
use clap::Args;

use super::output::{claim_json, date, outln, policy_ref, print_list, ListOutput};
use super::remote::{answer, connect, ServerArgs};

#[derive(Args)]
pub struct HistoryArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Only this node [default: every node]
    #[arg(long, value_name = "ID")]
    node: Option<String>,
    /// Records at or after this time, in unix seconds [default: the first]
    #[arg(long, value_name = "T")]
    from_unix: Option<i64>,
    /// Records at or before this time, in unix seconds [default: the newest]
    #[arg(long, value_name = "T")]
    to_unix: Option<i64>,
    /// pass, fail, verdict (either), stale, webhook, admin or enroll [default: every record]
    #[arg(long, value_name = "KIND")]
    verdict: Option<String>,
    /// Records under this policy: a prefix of its digest (hex).
    #[arg(long, value_name = "HEX")]
    policy_digest: Option<String>,
    /// Records in which this claim failed, e.g. pcr.sha256.7.
    #[arg(long, value_name = "CLAIM")]
    failed_claim: Option<String>,
    /// A page of records older than this seq (the previous page prints it as `next page:`).
    #[arg(long, value_name = "SEQ")]
    before_seq: Option<u64>,
    /// Most records to show (the verifier caps it at 10000).
    #[arg(long, default_value_t = 100, value_name = "N")]
    limit: u32,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ListOutput::Table)]
    output: ListOutput,
    /// Same as --output json.
    #[arg(long)]
    json: bool,
}

pub async fn history(a: HistoryArgs) -> anyhow::Result<()> {
    let ch = connect(&a.server).await?;
    let r = pb::history_client::HistoryClient::new(ch)
        .query(pb::HistoryRequest {
            node_id: a.node.unwrap_or_default(),
            limit: a.limit,
            from_unix: a.from_unix.unwrap_or(0),
            to_unix: a.to_unix.unwrap_or(0),
            verdict: a.verdict.unwrap_or_default(),
            policy_digest: a.policy_digest.unwrap_or_default(),
            failed_claim: a.failed_claim.unwrap_or_default(),
            before_seq: a.before_seq.unwrap_or(0),
        })
        .await
        .map_err(|s| answer("history", s))?
        .into_inner();
    let output = if a.json { ListOutput::Json } else { a.output };
    print_list(&r.records, output, record_json, |recs| {
        print_history(recs);
        if r.next_before_seq != 0 {
            outln!("next page: --before-seq {}", r.next_before_seq);
        }
    })
}

#[derive(Args)]
pub struct FleetArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// The moment, in unix seconds [default: now]
    #[arg(long, value_name = "T")]
    at_unix: Option<i64>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ListOutput::Table)]
    output: ListOutput,
}

pub async fn fleet(a: FleetArgs) -> anyhow::Result<()> {
    let ch = connect(&a.server).await?;
    let nodes = pb::history_client::HistoryClient::new(ch)
        .fleet(pb::FleetRequest {
            at_unix: a.at_unix.unwrap_or(0),
        })
        .await
        .map_err(|s| answer("fleet", s))?
        .into_inner()
        .nodes;
    let json = |n: &pb::FleetEntry| {
        serde_json::json!({"node_id": n.node_id, "state": n.state, "seq": n.seq,
            "time_unix": n.time_unix, "policy_name": n.policy_name, "policy_version": n.policy_version,
            "policy_digest": n.policy_digest})
    };
    print_list(&nodes, a.output, json, |nodes| {
        outln!(
            "{:<24}  {:<8}  {:>6}  {:<20}  policy",
            "node",
            "state",
            "seq",
            "time (UTC)"
        );
        for n in nodes {
            outln!(
                "{:<24}  {:<8}  {:>6}  {:<20}  {}",
                n.node_id,
                n.state,
                n.seq,
                date(n.time_unix),
                policy_ref(&n.policy_name, n.policy_version, &n.policy_digest)
            );
        }
    })
}

/// What a history record says, in one word ([`assay_verifier::service::record_label`]).
fn record_label(r: &pb::HistoryRecord) -> &'static str {
    assay_verifier::service::record_label(&r.kind, r.passed)
}

fn record_json(r: &pb::HistoryRecord) -> serde_json::Value {
    serde_json::json!({
        "seq": r.seq, "node_id": r.node_id, "time_unix": r.time_unix,
        "kind": if r.kind.is_empty() { "verdict" } else { r.kind.as_str() },
        "verdict": record_label(r),
        "failed_claims": r.failed_claims.iter().map(claim_json).collect::<Vec<_>>(),
        "details": if r.kind.is_empty() { Vec::new() } else { r.claims.iter().map(claim_json).collect::<Vec<_>>() },
        "policy_name": r.policy_name, "policy_version": r.policy_version,
        "policy_digest": r.policy_digest,
        "evidence_digest": r.evidence_digest, "prev_hash": r.prev_hash,
    })
}

fn print_history(recs: &[pb::HistoryRecord]) {
    if recs.is_empty() {
        outln!("no verdicts recorded");
        return;
    }
    outln!(
        "{:>6}  {:<20}  {:<24}  {:<7}  {:<16}  failed claims / details",
        "seq",
        "time (UTC)",
        "node",
        "verdict",
        "policy"
    );
    for r in recs {
        let failed: Vec<String> = if r.kind.is_empty() {
            r.failed_claims
                .iter()
                .map(|c| format!("{} (expected {}, got {})", c.id, c.expected, c.actual))
                .collect()
        } else {
            // Not a verdict: what happened.
            r.claims
                .iter()
                .map(|c| format!("{}: {}", c.id, c.actual))
                .collect()
        };
        outln!(
            "{:>6}  {:<20}  {:<24}  {:<7}  {:<16}  {}",
            r.seq,
            date(r.time_unix),
            r.node_id,
            record_label(r),
            policy_ref(&r.policy_name, r.policy_version, &r.policy_digest),
            if failed.is_empty() {
                "-".to_string()
            } else {
                failed.join("; ")
            }
        );
    }
}
