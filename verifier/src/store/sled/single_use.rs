//! Nonces and join tokens in sled: consumed by compare-and-swap.

use super::{consume, SledStore};
use crate::store::{
    from_json, to_json, token_key, Consumed, NonceRecord, PendingEnrollment, RevokeOne,
    SingleUseStore, StoreError, TokenRecord,
};

impl SingleUseStore for SledStore {
    fn put_nonce(&self, nonce: &[u8], rec: &NonceRecord) -> Result<(), StoreError> {
        // Not flushed: see the trait (the next flush takes it along).
        self.nonces.insert(nonce, to_json(rec))?;
        Ok(())
    }

    /// Marks a nonce used, atomically, and says what it was before.
    fn consume_nonce(&self, nonce: &[u8]) -> Result<Consumed<NonceRecord>, StoreError> {
        // Not flushed here: the verdict recorded for this use flushes it
        // before anything is answered (see the trait).
        consume(
            &self.nonces,
            "nonces",
            nonce,
            |r: &NonceRecord| r.used,
            |r| r.used = true,
        )
    }

    /// Drops nonces, enrollments and join tokens that expired before `cutoff_unix`;
    /// returns how many. History is never purged here.
    fn purge_expired(&self, cutoff_unix: i64) -> Result<usize, StoreError> {
        let mut n = 0;
        for item in self.nonces.iter() {
            let (k, v) = item?;
            let r: NonceRecord = from_json("nonces", &k, &v)?;
            if r.expires_unix < cutoff_unix {
                self.nonces.remove(k)?;
                n += 1;
            }
        }
        for item in self.enrollments.iter() {
            let (k, v) = item?;
            let r: PendingEnrollment = from_json("enrollments", &k, &v)?;
            if r.expires_unix < cutoff_unix {
                self.enrollments.remove(k)?;
                n += 1;
            }
        }
        for item in self.tokens.iter() {
            let (k, v) = item?;
            let r: TokenRecord = from_json("tokens", &k, &v)?;
            if r.expires_unix < cutoff_unix {
                self.tokens.remove(k)?;
                n += 1;
            }
        }
        self.flush()?;
        Ok(n)
    }

    // ---- tokens

    fn put_token(&self, token: &str, rec: &TokenRecord) -> Result<(), StoreError> {
        self.tokens.insert(token_key(token), to_json(rec))?;
        self.flush()
    }

    /// Revokes every unused token of `node_id` (it failed attestation); how many.
    fn revoke_node_tokens(&self, node_id: &str) -> Result<usize, StoreError> {
        let mut n = 0;
        for item in self.tokens.iter() {
            let (k, v) = item?;
            let r: TokenRecord = from_json("tokens", &k, &v)?;
            if r.node_id != node_id || r.used {
                continue;
            }
            if let Consumed::Fresh(_) = consume(
                &self.tokens,
                "tokens",
                &k,
                |r: &TokenRecord| r.used,
                |r| {
                    r.used = true;
                    r.revoked = true;
                },
            )? {
                n += 1;
            }
        }
        self.flush()?;
        Ok(n)
    }

    /// Tokens, newest expiry first, optionally of one node and only unused
    /// ones; at most `limit`. Each with its id (hex SHA-256 of the token).
    fn tokens(
        &self,
        node_id: Option<&str>,
        unused_only: bool,
        now_unix: i64,
        limit: usize,
    ) -> Result<Vec<(String, TokenRecord)>, StoreError> {
        let mut out = Vec::new();
        for item in self.tokens.iter() {
            let (k, v) = item?;
            let r: TokenRecord = from_json("tokens", &k, &v)?;
            if node_id.is_some_and(|n| n != r.node_id)
                || (unused_only && r.state(now_unix) != "unused")
            {
                continue;
            }
            out.push((hex::encode(&k), r));
        }
        out.sort_by(|a, b| b.1.expires_unix.cmp(&a.1.expires_unix).then(a.0.cmp(&b.0)));
        out.truncate(limit);
        Ok(out)
    }

    /// Revokes the unused token whose id starts with `id_prefix` (hex, at
    /// least [`MIN_TOKEN_ID_PREFIX`] digits; the caller checks).
    fn revoke_token(&self, id_prefix: &str) -> Result<RevokeOne, StoreError> {
        let prefix = id_prefix.to_ascii_lowercase();
        let mut found = Vec::new();
        for item in self.tokens.iter() {
            let (k, _) = item?;
            if hex::encode(&k).starts_with(&prefix) {
                found.push(k);
            }
        }
        let key = match found.len() {
            0 => return Ok(RevokeOne::NotFound),
            1 => found.remove(0),
            n => return Ok(RevokeOne::Ambiguous(n)),
        };
        let r = consume(
            &self.tokens,
            "tokens",
            &key,
            |r: &TokenRecord| r.used,
            |r| {
                r.used = true;
                r.revoked = true;
            },
        )?;
        self.flush()?;
        Ok(match r {
            Consumed::Fresh(mut rec) => {
                rec.used = true;
                rec.revoked = true;
                RevokeOne::Revoked(rec)
            }
            Consumed::AlreadyUsed(rec) => RevokeOne::Spent(rec),
            Consumed::Unknown => RevokeOne::NotFound,
        })
    }

    /// Marks a token used, atomically, and says what it was before.
    fn consume_token(&self, token: &str) -> Result<Consumed<TokenRecord>, StoreError> {
        let r = consume(
            &self.tokens,
            "tokens",
            &token_key(token),
            |r: &TokenRecord| r.used,
            |r| r.used = true,
        );
        self.flush()?;
        r
    }
}
