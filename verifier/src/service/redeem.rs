//! Redemption: an orchestrator presents a node's join token; it is checked
//! (signature, expiry, node) and consumed, once.

use tracing::{info, warn};

use super::{ServiceError, Verifier};
use crate::clock::now_unix;
use crate::store::Consumed;
use crate::token::TokenError;

pub struct RedeemOutput {
    pub node_id: String,
    pub ak_name: String,
    pub expires_unix: i64,
}

impl Verifier {
    /// Checks and consumes a join token presented by `node_id`.
    pub fn redeem(&self, token: &str, node_id: &str) -> Result<RedeemOutput, ServiceError> {
        if token.len() > 4096 {
            return Err(ServiceError::BadRequest(
                "token longer than 4096 bytes".into(),
            ));
        }
        let claims = self.tokens.check(token, node_id, now_unix())?;
        match self.store.consume_token(token)? {
            Consumed::Fresh(rec) => {
                info!(node_id, "join token redeemed");
                Ok(RedeemOutput {
                    node_id: rec.node_id,
                    ak_name: rec.ak_name,
                    expires_unix: claims.exp,
                })
            }
            Consumed::AlreadyUsed(rec) if rec.revoked => {
                warn!(node_id, "revoked join token refused");
                Err(TokenError::Revoked.into())
            }
            Consumed::AlreadyUsed(_) => {
                warn!(node_id, "join token reuse refused");
                Err(TokenError::Reused.into())
            }
            Consumed::Unknown => Err(TokenError::Unknown.into()),
        }
    }
}
