//! The global hash-chained history and its checkpoints in PostgreSQL.

use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::queue::OwnedVerdict;
use super::rows::{checkpoint_rows, history_row, json_text};
use super::writes::{append_in, write_verdicts};
use super::{i64_of, pg, PgStore};
use crate::store::{
    Checkpoint, Found, HistoryQuery, HistoryRecord, HistoryStore, StoreError, VerdictWrite,
};

impl PgStore {
    /// The first seq whose record time is ≥ `t` (`i64::MAX` if none).
    async fn first_seq_at_or_after(&self, t: i64) -> Result<i64, StoreError> {
        let rows = self
            .query(
                "SELECT seq FROM history WHERE time_unix >= $1 ORDER BY time_unix, seq LIMIT 1",
                &[&t],
            )
            .await?;
        Ok(rows.first().map_or(i64::MAX, |r| r.get(0)))
    }

    /// The last seq whose record time is ≤ `t` (0 if none).
    async fn last_seq_at_or_before(&self, t: i64) -> Result<i64, StoreError> {
        let rows = self
            .query(
                "SELECT seq FROM history WHERE time_unix <= $1 \
                 ORDER BY time_unix DESC, seq DESC LIMIT 1",
                &[&t],
            )
            .await?;
        Ok(rows.first().map_or(0, |r| r.get(0)))
    }

    fn history_rows(rows: &[Row]) -> Result<Vec<HistoryRecord>, StoreError> {
        rows.iter().map(history_row).collect()
    }
}

impl HistoryStore for PgStore {
    fn append_history_batch(
        &self,
        recs: Vec<HistoryRecord>,
    ) -> Result<Vec<HistoryRecord>, StoreError> {
        if recs.is_empty() {
            return Ok(recs);
        }
        self.run(async {
            let mut c = self.client().await?;
            let tx = c.transaction().await.map_err(pg)?;
            let recs = append_in(&tx, recs).await?;
            tx.commit().await.map_err(pg)?;
            Ok(recs)
        })
    }

    fn record_verdict(&self, w: VerdictWrite<'_>) -> Result<HistoryRecord, StoreError> {
        self.verdicts.write(OwnedVerdict::from(w), |batch| {
            self.run(write_verdicts(&self.pool, batch))
        })
    }

    fn query_history(&self, q: &HistoryQuery) -> Result<(Vec<HistoryRecord>, u64), StoreError> {
        if q.limit == 0 {
            return Ok((Vec::new(), 0));
        }
        // Only the filters given, so the planner can use the node and time indexes.
        let mut sql = String::from("SELECT seq, record FROM history WHERE true");
        let mut params: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
        fn add(
            sql: &mut String,
            params: &mut Vec<Box<dyn ToSql + Sync + Send>>,
            cond: &str,
            p: Option<Box<dyn ToSql + Sync + Send>>,
        ) {
            if let Some(p) = p {
                params.push(p);
            }
            sql.push_str(&cond.replace('?', &format!("${}", params.len())));
        }
        let (s, p) = (&mut sql, &mut params);
        if let Some(n) = &q.node_id {
            add(s, p, " AND node_id = ?", Some(Box::new(n.clone())));
        }
        // Record times never decrease along the chain, so a time range is a
        // range of sequence numbers: found in the time index, then scanned
        // in the primary key (or the node index) newest first.
        if let Some(t) = q.from_unix {
            let lo = self.run(self.first_seq_at_or_after(t))?;
            add(s, p, " AND seq >= ?", Some(Box::new(lo)));
        }
        if let Some(t) = q.to_unix {
            let hi = self.run(self.last_seq_at_or_before(t))?;
            add(s, p, " AND seq <= ?", Some(Box::new(hi)));
        }
        if let Some(b) = q.before_seq {
            add(s, p, " AND seq < ?", Some(Box::new(i64_of(b))));
        }
        match q.verdict.as_deref() {
            None => {}
            Some("pass") => add(s, p, " AND kind = '' AND passed", None),
            Some("fail") => add(s, p, " AND kind = '' AND NOT passed", None),
            Some("verdict") => add(s, p, " AND kind = ''", None),
            Some(kind) => add(s, p, " AND kind = ?", Some(Box::new(kind.to_string()))),
        }
        if let Some(d) = &q.policy_digest {
            add(
                s,
                p,
                " AND starts_with(policy_digest, ?)",
                Some(Box::new(d.clone())),
            );
        }
        if let Some(c) = &q.failed_claim {
            add(
                s,
                p,
                " AND ? = ANY(failed_claims)",
                Some(Box::new(c.clone())),
            );
        }
        let limit = i64_of(q.limit as u64).saturating_add(1);
        add(s, p, " ORDER BY seq DESC LIMIT ?", Some(Box::new(limit)));
        let refs: Vec<&(dyn ToSql + Sync)> = params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect();
        let rows = self.run(self.query(&sql, &refs))?;
        let mut out = Self::history_rows(&rows)?;
        // The columns are an index; the record is what the chain covers.
        out.retain(|r| q.matches(r));
        let more = out.len() > q.limit;
        out.truncate(q.limit);
        let next = if more {
            out.last().map_or(0, |r| r.seq)
        } else {
            0
        };
        Ok((out, next))
    }

    fn fleet_at(&self, at: i64) -> Result<Vec<(String, Option<HistoryRecord>)>, StoreError> {
        self.run(async {
            // Distinct node ids by skipping through the (node_id, seq) index,
            // then each node's last verdict or stale mark at or before `at`
            // (up to the last seq at `at`: record times never decrease).
            let hi = self.last_seq_at_or_before(at).await?;
            let rows = self
                .query(
                    "WITH RECURSIVE n(node_id) AS ( \
                       (SELECT node_id FROM history WHERE node_id > '' ORDER BY node_id LIMIT 1) \
                       UNION ALL \
                       SELECT (SELECT h.node_id FROM history h WHERE h.node_id > n.node_id \
                               ORDER BY h.node_id LIMIT 1) \
                       FROM n WHERE n.node_id IS NOT NULL) \
                     SELECT n.node_id, r.seq, r.record FROM n LEFT JOIN LATERAL ( \
                       SELECT seq, record FROM history h WHERE h.node_id = n.node_id \
                       AND h.seq <= $1 AND h.kind IN ('', 'stale') \
                       ORDER BY h.seq DESC LIMIT 1) r ON true \
                     WHERE n.node_id IS NOT NULL",
                    &[&hi],
                )
                .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                let node: String = r.get("node_id");
                let rec = match r.get::<_, Option<i64>>("seq") {
                    Some(_) => Some(history_row(r)?),
                    None => None,
                };
                out.push((node, rec));
            }
            out.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(out)
        })
    }

    fn history_record(&self, seq: u64) -> Result<Option<HistoryRecord>, StoreError> {
        self.first(
            "SELECT seq, record FROM history WHERE seq = $1",
            &[&i64_of(seq)],
            history_row,
        )
    }

    fn checkpoints_between(&self, lo: u64, hi: u64) -> Result<Vec<Checkpoint>, StoreError> {
        self.run(async {
            let rows = self
                .query(
                    "SELECT seq, rec FROM checkpoints WHERE seq BETWEEN $1 AND $2 ORDER BY seq",
                    &[&i64_of(lo), &i64_of(hi)],
                )
                .await?;
            checkpoint_rows(&rows)
        })
    }

    fn history_head(&self) -> Result<Option<HistoryRecord>, StoreError> {
        self.first(
            "SELECT seq, record FROM history ORDER BY seq DESC LIMIT 1",
            &[],
            history_row,
        )
    }

    fn history_found(&self, from_seq: u64, limit: usize) -> Result<Vec<Found>, StoreError> {
        self.run(async {
            let rows = self
                .query(
                    "SELECT seq, record FROM history WHERE seq >= $1 ORDER BY seq LIMIT $2",
                    &[&i64_of(from_seq), &i64_of(limit as u64)],
                )
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(Found {
                        key_seq: u64::try_from(r.get::<_, i64>("seq")).unwrap_or(0),
                        record: history_row(r)?,
                    })
                })
                .collect()
        })
    }

    fn history_between(
        &self,
        from_unix: i64,
        to_unix: i64,
        limit: usize,
    ) -> Result<Vec<HistoryRecord>, StoreError> {
        self.run(async {
            let rows = self
                .query(
                    "SELECT seq, record FROM history WHERE time_unix >= $1 AND time_unix <= $2 \
                     ORDER BY seq LIMIT $3",
                    &[&from_unix, &to_unix, &i64_of(limit as u64)],
                )
                .await?;
            Self::history_rows(&rows)
        })
    }

    fn add_checkpoint(&self, c: &Checkpoint) -> Result<(), StoreError> {
        // Two replicas may sign the same head: the first signature stays.
        self.run(async {
            self.execute(
                "INSERT INTO checkpoints (seq, rec) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&i64_of(c.seq), &json_text(c)],
            )
            .await
            .map(drop)
        })
    }

    fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        self.run(async {
            let rows = self
                .query("SELECT seq, rec FROM checkpoints ORDER BY seq", &[])
                .await?;
            checkpoint_rows(&rows)
        })
    }

    fn last_checkpoint(&self) -> Result<Option<Checkpoint>, StoreError> {
        self.run(async {
            let rows = self
                .query(
                    "SELECT seq, rec FROM checkpoints ORDER BY seq DESC LIMIT 1",
                    &[],
                )
                .await?;
            Ok(checkpoint_rows(&rows)?.pop())
        })
    }
}
