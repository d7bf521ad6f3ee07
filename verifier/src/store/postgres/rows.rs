//! Statements (each prepared once per connection) and the decoders of rows.

use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::pg;
use crate::store::{
    from_json, to_json, Checkpoint, HistoryRecord, NodeRecord, StoreError, TokenRecord,
};

pub(super) fn history_row(row: &Row) -> Result<HistoryRecord, StoreError> {
    let seq: i64 = row.get("seq");
    let json: &str = row.get("record");
    from_json("history", &seq.to_be_bytes(), json.as_bytes())
}

pub(super) fn token_row(row: &Row) -> TokenRecord {
    TokenRecord {
        node_id: row.get("node_id"),
        ak_name: row.get("ak_name"),
        issued_unix: row.get("issued_unix"),
        expires_unix: row.get("expires_unix"),
        used: row.get("used"),
        revoked: row.get("revoked"),
    }
}

pub(super) const TOKEN_COLUMNS: &str = "node_id, ak_name, issued_unix, expires_unix, used, revoked";

pub(super) fn node_row(row: &Row) -> Result<NodeRecord, StoreError> {
    let node_id: String = row.get("node_id");
    let last_clock = match row.get::<_, Option<&str>>("last_clock") {
        Some(j) => Some(from_json("nodes", node_id.as_bytes(), j.as_bytes())?),
        None => None,
    };
    let ima_state = match row.get::<_, Option<&str>>("ima_state") {
        Some(j) => Some(from_json("nodes", node_id.as_bytes(), j.as_bytes())?),
        None => None,
    };
    Ok(NodeRecord {
        ima_state,
        ek_cert_sha256: row.get("ek_cert_sha256"),
        ek_public: row.get("ek_public"),
        ak_public: row.get("ak_public"),
        ak_name: row.get("ak_name"),
        activated_unix: row.get("activated_unix"),
        last_pass_unix: row.get("last_pass_unix"),
        last_clock,
        ek_certificate: row.get("ek_certificate"),
        ek_chain: row
            .get::<_, &str>("ek_chain")
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        node_id,
    })
}

pub(super) fn json_text<T: serde::Serialize>(v: &T) -> String {
    String::from_utf8(to_json(v)).unwrap_or_default()
}

pub(super) fn checkpoint_rows(rows: &[Row]) -> Result<Vec<Checkpoint>, StoreError> {
    rows.iter()
        .map(|r| {
            let seq: i64 = r.get("seq");
            let j: &str = r.get("rec");
            from_json("checkpoints", &seq.to_be_bytes(), j.as_bytes())
        })
        .collect()
}

/// Runs a statement prepared once per connection (parse and plan once).
pub(super) async fn exec(
    c: &impl deadpool_postgres::GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64, StoreError> {
    let st = c.prepare_cached(sql).await.map_err(pg)?;
    c.execute(&st, params).await.map_err(pg)
}

/// `sql` alone in a transaction that commits without waiting for its WAL
/// flush (`synchronous_commit = off`), in one round trip: BEGIN, the
/// statement (prepared once per connection) and COMMIT are pipelined. A
/// later synchronous commit on any connection flushes it too (the WAL is one
/// sequence).
pub(super) async fn rows_async_commit(
    c: &deadpool_postgres::Object,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, StoreError> {
    // Prepared before the pipeline: a statement prepared inside it would run
    // after the COMMIT.
    let st = c.prepare_cached(sql).await.map_err(pg)?;
    // All three are sent at the first poll, in order, and all three answers
    // read: a failed statement's COMMIT ends its transaction as a rollback.
    let (begin, rows, commit) = tokio::join!(
        c.batch_execute("BEGIN; SET LOCAL synchronous_commit = off"),
        c.query(&st, params),
        c.batch_execute("COMMIT"),
    );
    begin.map_err(pg)?;
    let rows = rows.map_err(pg)?;
    commit.map_err(pg)?;
    Ok(rows)
}

/// A query prepared once per connection.
pub(super) async fn rows(
    c: &impl deadpool_postgres::GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, StoreError> {
    let st = c.prepare_cached(sql).await.map_err(pg)?;
    c.query(&st, params).await.map_err(pg)
}
