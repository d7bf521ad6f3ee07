//! `History`: Query, Reverify, Fleet, Export (auditors and operators).

use assay_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::{blocking, claim, Api};
use crate::clock::now_unix;
use crate::roles::Rpc;

/// Most records one history query returns.
pub const MAX_HISTORY_LIMIT: usize = 10_000;

#[tonic::async_trait]
impl pb::history_server::History for Api {
    async fn query(
        &self,
        req: Request<pb::HistoryRequest>,
    ) -> Result<Response<pb::HistoryResponse>, Status> {
        self.authorize(&req, Rpc::History, None)?;
        let r = req.into_inner();
        let some = |s: String| (!s.is_empty()).then_some(s);
        let q = crate::store::HistoryQuery {
            node_id: some(r.node_id),
            from_unix: (r.from_unix != 0).then_some(r.from_unix),
            to_unix: (r.to_unix != 0).then_some(r.to_unix),
            verdict: some(r.verdict.to_ascii_lowercase()),
            policy_digest: some(r.policy_digest.to_ascii_lowercase()),
            failed_claim: some(r.failed_claim),
            before_seq: (r.before_seq != 0).then_some(r.before_seq),
            limit: match r.limit {
                0 => 100,
                n => (n as usize).min(MAX_HISTORY_LIMIT),
            },
        };
        if let Some(v) = &q.verdict {
            if ![
                "pass", "fail", "verdict", "stale", "webhook", "admin", "enroll",
            ]
            .contains(&v.as_str())
            {
                return Err(Status::invalid_argument(format!(
                    "verdict `{v}`: pass, fail, verdict, stale, webhook, admin or enroll"
                )));
            }
        }
        let (recs, next_before_seq) =
            blocking(&self.0, move |v| Ok(v.store.query_history(&q)?)).await?;
        Ok(Response::new(pb::HistoryResponse {
            records: recs
                .into_iter()
                .map(|h| pb::HistoryRecord {
                    seq: h.seq,
                    node_id: h.node_id,
                    time_unix: h.time_unix,
                    passed: h.passed,
                    failed_claims: h.claims.iter().filter(|c| !c.passed).map(claim).collect(),
                    policy_name: h.policy_name,
                    policy_digest: h.policy_digest,
                    policy_version: h.policy_version,
                    evidence_digest: h.evidence_digest,
                    prev_hash: h.prev_hash,
                    kind: h.kind,
                    claims: h.claims.iter().map(claim).collect(),
                })
                .collect(),
            next_before_seq,
        }))
    }

    async fn reverify(
        &self,
        req: Request<pb::ReverifyRequest>,
    ) -> Result<Response<pb::ReverifyResponse>, Status> {
        self.authorize(&req, Rpc::History, None)?;
        let seq = req.get_ref().seq;
        let r = blocking(&self.0, move |v| v.reverify(seq)).await?;
        Ok(Response::new(pb::ReverifyResponse {
            seq,
            node_id: r.record.node_id,
            recorded_passed: r.record.passed,
            reverified_passed: r.verdict.passed,
            differences: r.differences,
            not_rechecked: r.not_rechecked,
            claims: r.verdict.claims.iter().map(claim).collect(),
            policy_name: r.record.policy_name,
            policy_digest: r.record.policy_digest,
            policy_version: r.record.policy_version,
        }))
    }

    async fn fleet(
        &self,
        req: Request<pb::FleetRequest>,
    ) -> Result<Response<pb::FleetResponse>, Status> {
        self.authorize(&req, Rpc::History, None)?;
        let at = match req.get_ref().at_unix {
            0 => now_unix(),
            t => t,
        };
        let fleet = blocking(&self.0, move |v| Ok(v.store.fleet_at(at)?)).await?;
        Ok(Response::new(pb::FleetResponse {
            nodes: fleet
                .into_iter()
                .map(|(node_id, r)| match r {
                    None => pb::FleetEntry {
                        node_id,
                        state: crate::service::standing(None).into(),
                        ..Default::default()
                    },
                    Some(r) => pb::FleetEntry {
                        node_id,
                        state: crate::service::standing(Some(&r)).into(),
                        seq: r.seq,
                        time_unix: r.time_unix,
                        policy_name: r.policy_name,
                        policy_digest: r.policy_digest,
                        policy_version: r.policy_version,
                    },
                })
                .collect(),
        }))
    }

    async fn export(
        &self,
        req: Request<pb::ExportRequest>,
    ) -> Result<Response<pb::ExportResponse>, Status> {
        self.authorize(&req, Rpc::Export, None)?;
        let r = req.into_inner();
        let limit = match r.limit {
            0 => MAX_EXPORT_PAGE,
            n => (n as usize).min(MAX_EXPORT_PAGE),
        };
        let (records, checkpoints, next_seq) = blocking(&self.0, move |v| {
            let from = match (r.from_seq, r.from_unix) {
                (0, 0) => 1,
                (0, t) => match v.store.history_between(t, i64::MAX, 1)?.first() {
                    Some(first) => first.seq,
                    None => u64::MAX,
                },
                (s, _) => s,
            };
            // One more than the page, to know whether there is a next one.
            let mut found = v.store.history_found(from, limit + 1)?;
            let mut next = found.get(limit).map_or(0, |f| f.key_seq);
            found.truncate(limit);
            if r.to_unix > 0 {
                if let Some(cut) = found.iter().position(|f| f.record.time_unix > r.to_unix) {
                    found.truncate(cut);
                    next = 0;
                }
            }
            let (lo, hi) = (
                found.first().map_or(0, |f| f.key_seq),
                found.last().map_or(0, |f| f.key_seq),
            );
            // On the last page of a full export also those beyond it: they
            // reveal records cut off the end.
            let cp_hi = if next == 0 && r.to_unix == 0 {
                u64::MAX
            } else {
                hi
            };
            let cps: Vec<String> = v
                .store
                .checkpoints_between(lo, cp_hi)?
                .into_iter()
                .map(|c| serde_json::to_string(&c).unwrap_or_default())
                .collect();
            let recs: Vec<String> = found
                .into_iter()
                .map(|f| serde_json::to_string(&f.record).unwrap_or_default())
                .collect();
            Ok((recs, cps, next))
        })
        .await?;
        Ok(Response::new(pb::ExportResponse {
            records_json: records,
            checkpoints_json: checkpoints,
            jwks_json: self.0.tokens.jwks_json(),
            next_seq,
        }))
    }
}

/// Most records one export page carries.
pub const MAX_EXPORT_PAGE: usize = 10_000;
