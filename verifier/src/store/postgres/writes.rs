//! What a batch of verdicts writes, inside one transaction.

use deadpool_postgres::Pool;
use sha2::{Digest, Sha256};
use tokio_postgres::types::ToSql;

use super::evidence::put_evidence_in;
use super::queue::OwnedVerdict;
use super::rows::{exec, json_text};
use super::{pg, pool_err};
use crate::store::{token_key, HistoryRecord, StoreError, TokenRecord};

/// Writes verdicts in one transaction, in order: the nodes' rows and the
/// tokens (pipelined), the records appended to the chain under its head's
/// lock, their evidence; then the commit. Their records, in order.
pub(super) async fn write_verdicts(
    pool: &Pool,
    batch: &[OwnedVerdict],
) -> Result<Vec<HistoryRecord>, StoreError> {
    let mut c = pool.get().await.map_err(pool_err)?;
    let tx = c.transaction().await.map_err(pg)?;
    // Per node, what the last of its verdicts in the batch leaves (as
    // transactions one after the other would): one row each.
    #[derive(Default)]
    struct NodeUpdate<'a> {
        clock: Option<&'a String>,
        pass: Option<i64>,
        ima_changed: bool,
        ima: Option<&'a String>,
    }
    let mut nodes: std::collections::BTreeMap<&str, NodeUpdate<'_>> = Default::default();
    for v in batch {
        let id = v.record.node_id.as_str();
        if v.clock.is_some() || v.passed_at.is_some() || v.ima_state.is_some() {
            let e = nodes.entry(id).or_default();
            e.clock = v.clock.as_ref().or(e.clock);
            e.pass = v.passed_at.or(e.pass);
            if let Some(ima) = &v.ima_state {
                e.ima_changed = true;
                e.ima = ima.as_ref();
            }
        }
    }
    let node_rows = async {
        if nodes.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = nodes.keys().copied().collect();
        let clocks: Vec<Option<&String>> = nodes.values().map(|v| v.clock).collect();
        let passes: Vec<Option<i64>> = nodes.values().map(|v| v.pass).collect();
        let ima_changed: Vec<bool> = nodes.values().map(|v| v.ima_changed).collect();
        let ima: Vec<Option<&String>> = nodes.values().map(|v| v.ima).collect();
        exec(
            &tx,
            "UPDATE nodes SET last_clock = coalesce(u.c, nodes.last_clock), \
             last_pass_unix = coalesce(u.p, nodes.last_pass_unix), \
             ima_state = CASE WHEN u.ic THEN u.i ELSE nodes.ima_state END \
             FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bool[], $5::text[]) \
             AS u(n, c, p, ic, i) \
             WHERE nodes.node_id = u.n",
            &[&ids, &clocks, &passes, &ima_changed, &ima],
        )
        .await
        .map(drop)
    };
    let token_rows = futures_util::future::try_join_all(
        batch
            .iter()
            .filter_map(|v| v.token.as_ref())
            .map(|(token, t)| put_token_in(&tx, token, t)),
    );
    tokio::try_join!(node_rows, token_rows)?;
    let recs = append_in(&tx, batch.iter().map(|v| v.record.clone()).collect()).await?;
    futures_util::future::try_join_all(batch.iter().zip(&recs).filter_map(|(v, rec)| {
        let ev = v.evidence.clone()?;
        let logs = v.logs.borrowed();
        Some(put_evidence_in(&tx, rec.seq, ev, logs))
    }))
    .await?;
    tx.commit().await.map_err(pg)?;
    Ok(recs)
}

/// Appends `recs` to the global chain inside `tx` (which then holds the
/// history lock until it ends).
pub(super) async fn append_in(
    tx: &deadpool_postgres::Transaction<'_>,
    mut recs: Vec<HistoryRecord>,
) -> Result<Vec<HistoryRecord>, StoreError> {
    // The head row's lock serializes appends across replicas until commit.
    let st = tx
        .prepare_cached("SELECT seq, hash, time_unix FROM history_head FOR UPDATE")
        .await
        .map_err(pg)?;
    let head = tx.query_one(&st, &[]).await.map_err(pg)?;
    let (mut seq, mut hash, mut time): (i64, String, i64) = (head.get(0), head.get(1), head.get(2));
    let n = recs.len();
    let (mut seqs, mut nodes, mut times, mut kinds) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut passed, mut policies, mut failed, mut json) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for rec in &mut recs {
        seq += 1;
        rec.seq = u64::try_from(seq).unwrap_or(0);
        rec.prev_hash = std::mem::take(&mut hash);
        // As on sled: record times never go backwards.
        rec.time_unix = rec.time_unix.max(time);
        time = rec.time_unix;
        seqs.push(seq);
        nodes.push(rec.node_id.clone());
        times.push(rec.time_unix);
        kinds.push(rec.kind.clone());
        passed.push(rec.passed);
        policies.push(rec.policy_digest.clone());
        // Postgres arrays of arrays must be rectangular: failed claims go
        // as one tab-separated string each, split on insert.
        failed.push(
            rec.claims
                .iter()
                .filter(|c| !c.passed)
                .map(|c| c.id.replace('\t', " "))
                .collect::<Vec<_>>()
                .join("\t"),
        );
        let j = json_text(rec);
        hash = hex::encode(Sha256::digest(j.as_bytes()));
        json.push(j);
    }
    let insert = tx
        .prepare_cached(
            "INSERT INTO history (seq, node_id, time_unix, kind, passed, policy_digest, \
             failed_claims, record) \
             SELECT s, n, t, k, p, d, \
                    CASE WHEN f = '' THEN '{}'::text[] ELSE string_to_array(f, E'\\t') END, r \
             FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], \
                         $5::boolean[], $6::text[], $7::text[], $8::text[]) \
                  AS u(s, n, t, k, p, d, f, r)",
        )
        .await
        .map_err(pg)?;
    let advance = tx
        .prepare_cached("UPDATE history_head SET seq = $1, hash = $2, time_unix = $3")
        .await
        .map_err(pg)?;
    // Pipelined: both go out before either answer comes back.
    let rows: [&(dyn ToSql + Sync); 8] = [
        &seqs, &nodes, &times, &kinds, &passed, &policies, &failed, &json,
    ];
    let head: [&(dyn ToSql + Sync); 3] = [&seq, &hash, &time];
    tokio::try_join!(tx.execute(&insert, &rows), tx.execute(&advance, &head)).map_err(pg)?;
    Ok(recs)
}

pub(super) async fn put_token_in(
    c: &impl deadpool_postgres::GenericClient,
    token: &str,
    rec: &TokenRecord,
) -> Result<(), StoreError> {
    let id = token_key(token).to_vec();
    exec(
        c,
        "INSERT INTO tokens (id, node_id, ak_name, issued_unix, expires_unix, used, \
         revoked) VALUES ($1,$2,$3,$4,$5,$6,$7) ON CONFLICT (id) DO UPDATE SET \
         node_id = EXCLUDED.node_id, ak_name = EXCLUDED.ak_name, \
         issued_unix = EXCLUDED.issued_unix, expires_unix = EXCLUDED.expires_unix, \
         used = EXCLUDED.used, revoked = EXCLUDED.revoked",
        &[
            &id,
            &rec.node_id,
            &rec.ak_name,
            &rec.issued_unix,
            &rec.expires_unix,
            &rec.used,
            &rec.revoked,
        ],
    )
    .await?;
    Ok(())
}
