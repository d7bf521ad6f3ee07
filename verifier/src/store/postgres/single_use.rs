//! Nonces and join tokens in PostgreSQL: consumed by conditional updates.

use tokio_postgres::Row;

use super::rows::{rows_async_commit, token_row, TOKEN_COLUMNS};
use super::writes::put_token_in;
use super::{i64_of, pg, PgStore};
use crate::store::{
    token_key, Consumed, NonceRecord, RevokeOne, SingleUseStore, StoreError, TokenRecord,
};

impl SingleUseStore for PgStore {
    fn put_nonce(&self, nonce: &[u8], rec: &NonceRecord) -> Result<(), StoreError> {
        self.run(async {
            // Visible to every replica at commit, without waiting for the WAL
            // flush (see the trait): issuing a challenge costs no fsync.
            rows_async_commit(
                &self.client().await?,
                "INSERT INTO nonces (nonce, node_id, expires_unix, used) VALUES ($1,$2,$3,$4) \
                 ON CONFLICT (nonce) DO UPDATE SET node_id = EXCLUDED.node_id, \
                 expires_unix = EXCLUDED.expires_unix, used = EXCLUDED.used",
                &[&nonce, &rec.node_id, &rec.expires_unix, &rec.used],
            )
            .await
            .map(drop)
        })
    }

    fn consume_nonce(&self, nonce: &[u8]) -> Result<Consumed<NonceRecord>, StoreError> {
        self.run(async {
            let row = |r: &Row, used| NonceRecord {
                node_id: r.get(0),
                expires_unix: r.get(1),
                used,
            };
            // Durable with the verdict recorded after it (see the trait): its
            // synchronous commit flushes the WAL past this one.
            let rows = rows_async_commit(
                &self.client().await?,
                "UPDATE nonces SET used = true WHERE nonce = $1 AND NOT used \
                 RETURNING node_id, expires_unix",
                &[&nonce],
            )
            .await?;
            if let Some(r) = rows.first() {
                return Ok(Consumed::Fresh(row(r, false)));
            }
            let rows = self
                .query(
                    "SELECT node_id, expires_unix FROM nonces WHERE nonce = $1",
                    &[&nonce],
                )
                .await?;
            Ok(match rows.first() {
                Some(r) => Consumed::AlreadyUsed(row(r, true)),
                None => Consumed::Unknown,
            })
        })
    }

    fn purge_expired(&self, cutoff_unix: i64) -> Result<usize, StoreError> {
        self.run(async {
            let mut c = self.client().await?;
            let tx = c.transaction().await.map_err(pg)?;
            let mut n = 0;
            for table in ["nonces", "enrollments", "tokens"] {
                n += tx
                    .execute(
                        &format!("DELETE FROM {table} WHERE expires_unix < $1"),
                        &[&cutoff_unix],
                    )
                    .await
                    .map_err(pg)?;
            }
            tx.commit().await.map_err(pg)?;
            Ok(usize::try_from(n).unwrap_or(usize::MAX))
        })
    }

    fn put_token(&self, token: &str, rec: &TokenRecord) -> Result<(), StoreError> {
        self.run(async {
            let c = self.client().await?;
            put_token_in(&c, token, rec).await
        })
    }

    fn revoke_node_tokens(&self, node_id: &str) -> Result<usize, StoreError> {
        self.run(async {
            let n = self
                .execute(
                    "UPDATE tokens SET used = true, revoked = true \
                     WHERE node_id = $1 AND NOT used",
                    &[&node_id],
                )
                .await?;
            Ok(usize::try_from(n).unwrap_or(usize::MAX))
        })
    }

    fn tokens(
        &self,
        node_id: Option<&str>,
        unused_only: bool,
        now_unix: i64,
        limit: usize,
    ) -> Result<Vec<(String, TokenRecord)>, StoreError> {
        let limit = i64_of(limit as u64);
        self.run(async {
            let rows = self
                .query(
                    &format!(
                        "SELECT id, {TOKEN_COLUMNS} FROM tokens \
                         WHERE ($1::text IS NULL OR node_id = $1) \
                         AND (NOT $2 OR (NOT used AND NOT revoked AND expires_unix > $3)) \
                         ORDER BY expires_unix DESC, id LIMIT $4"
                    ),
                    &[&node_id, &unused_only, &now_unix, &limit],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| (hex::encode(r.get::<_, &[u8]>("id")), token_row(r)))
                .collect())
        })
    }

    fn revoke_token(&self, id_prefix: &str) -> Result<RevokeOne, StoreError> {
        let prefix = id_prefix.to_ascii_lowercase();
        self.run(async {
            let rows = self
                .query(
                    "SELECT id FROM tokens WHERE starts_with(encode(id, 'hex'), $1)",
                    &[&prefix],
                )
                .await?;
            let id: Vec<u8> = match rows.len() {
                0 => return Ok(RevokeOne::NotFound),
                1 => rows[0].get(0),
                n => return Ok(RevokeOne::Ambiguous(n)),
            };
            let rows = self
                .query(
                    &format!(
                        "UPDATE tokens SET used = true, revoked = true WHERE id = $1 \
                         AND NOT used RETURNING {TOKEN_COLUMNS}"
                    ),
                    &[&id],
                )
                .await?;
            if let Some(r) = rows.first() {
                return Ok(RevokeOne::Revoked(token_row(r)));
            }
            Ok(self
                .token_by_id(&id)
                .await?
                .map_or(RevokeOne::NotFound, RevokeOne::Spent))
        })
    }

    fn consume_token(&self, token: &str) -> Result<Consumed<TokenRecord>, StoreError> {
        let id = token_key(token).to_vec();
        self.run(async {
            let rows = self
                .query(
                    &format!(
                        "UPDATE tokens SET used = true WHERE id = $1 AND NOT used \
                         RETURNING {TOKEN_COLUMNS}"
                    ),
                    &[&id],
                )
                .await?;
            if let Some(r) = rows.first() {
                let mut rec = token_row(r);
                rec.used = false; // as it was
                return Ok(Consumed::Fresh(rec));
            }
            Ok(self
                .token_by_id(&id)
                .await?
                .map_or(Consumed::Unknown, Consumed::AlreadyUsed))
        })
    }
}

impl PgStore {
    /// The token stored under `id` (the SHA-256 of the token), as it is now.
    async fn token_by_id(&self, id: &[u8]) -> Result<Option<TokenRecord>, StoreError> {
        let rows = self
            .query(
                &format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = $1"),
                &[&id],
            )
            .await?;
        Ok(rows.first().map(token_row))
    }
}
