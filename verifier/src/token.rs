//! Signed join tokens (v0): a compact JWS (EdDSA / Ed25519), short-lived, bound
//! to the node id and its AK name, single use (enforced by the store), with the
//! public key published as a JSON Web Key Set.

use std::path::Path;

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use ed25519_dalek::pkcs8::{spki::der::pem::LineEnding, DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::SigningKey;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const ISSUER: &str = "assay-verifier";
pub const AUDIENCE: &str = "assay-join";

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token signing key {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("token is malformed or its signature does not verify: {0}")]
    Invalid(String),
    #[error("token expired at {expires_unix}")]
    Expired { expires_unix: i64 },
    #[error("token was issued to node `{issued_to}`, not to `{presented_by}`")]
    WrongNode {
        issued_to: String,
        presented_by: String,
    },
    #[error("token has already been used")]
    Reused,
    #[error("token was revoked (its node failed attestation, or an operator revoked it)")]
    Revoked,
    #[error("token is not known to this verifier (never issued, or revoked)")]
    Unknown,
}

/// Claims of a join token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinClaims {
    pub iss: String,
    pub aud: String,
    /// The node id the token is bound to.
    pub sub: String,
    /// Hex TPM name of the node's AK.
    pub ak: String,
    /// Unique token id.
    pub jti: String,
    pub iat: i64,
    pub exp: i64,
}

pub struct TokenSigner {
    encoding: EncodingKey,
    decoding: DecodingKey,
    kid: String,
    public: [u8; 32],
}

impl TokenSigner {
    /// Loads the PKCS#8 PEM Ed25519 key at `path`, creating it (mode 0600) if absent.
    pub fn load_or_create(path: &Path) -> Result<Self, TokenError> {
        let key_err = |reason: String| TokenError::Key {
            path: path.display().to_string(),
            reason,
        };
        let key = if path.exists() {
            let pem = std::fs::read_to_string(path).map_err(|e| key_err(e.to_string()))?;
            SigningKey::from_pkcs8_pem(&pem)
                .map_err(|e| key_err(format!("not a PKCS#8 Ed25519 key: {e}")))?
        } else {
            let key = SigningKey::generate(&mut rand::rngs::OsRng);
            let pem = key
                .to_pkcs8_pem(LineEnding::LF)
                .map_err(|e| key_err(e.to_string()))?;
            crate::files::write_private(path, pem.as_bytes())
                .map_err(|e| key_err(e.to_string()))?;
            key
        };
        Self::from_key(&key).map_err(key_err)
    }

    fn from_key(key: &SigningKey) -> Result<Self, String> {
        let der = key.to_pkcs8_der().map_err(|e| e.to_string())?;
        let public = key.verifying_key().to_bytes();
        let kid = hex::encode(&Sha256::digest(public)[..8]);
        Ok(Self {
            encoding: EncodingKey::from_ed_der(der.as_bytes()),
            decoding: DecodingKey::from_ed_components(&URL_SAFE_NO_PAD.encode(public))
                .map_err(|e| e.to_string())?,
            kid,
            public,
        })
    }

    /// Signs a token for `node_id`/`ak_name`, valid from `now` for `ttl_secs`.
    pub fn issue(
        &self,
        node_id: &str,
        ak_name: &str,
        now: i64,
        ttl_secs: i64,
    ) -> Result<(String, JoinClaims), TokenError> {
        let mut jti = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut jti);
        let claims = JoinClaims {
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            sub: node_id.into(),
            ak: ak_name.into(),
            jti: hex::encode(jti),
            iat: now,
            exp: now + ttl_secs,
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &self.encoding)
            .map_err(|e| TokenError::Invalid(e.to_string()))?;
        Ok((token, claims))
    }

    /// Checks signature, issuer, audience, expiry (against `now`, no leeway) and
    /// node binding. Single use is the store's job.
    pub fn check(
        &self,
        token: &str,
        presented_by: &str,
        now: i64,
    ) -> Result<JoinClaims, TokenError> {
        let mut v = Validation::new(Algorithm::EdDSA);
        v.set_issuer(&[ISSUER]);
        v.set_audience(&[AUDIENCE]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        // Expiry is checked below against the caller's clock, so tests can move time.
        v.validate_exp = false;
        v.leeway = 0;
        let data = jsonwebtoken::decode::<JoinClaims>(token, &self.decoding, &v)
            .map_err(|e| TokenError::Invalid(e.to_string()))?;
        let c = data.claims;
        if now >= c.exp {
            return Err(TokenError::Expired {
                expires_unix: c.exp,
            });
        }
        if c.sub != presented_by {
            return Err(TokenError::WrongNode {
                issued_to: c.sub,
                presented_by: presented_by.into(),
            });
        }
        Ok(c)
    }

    /// The JSON Web Key Set with this verifier's token key.
    /// A detached compact JWS (RFC 7515 appendix F: `header..signature`) over
    /// `payload`, with the token key: how webhook bodies are signed. Verify by
    /// putting base64url(payload) between the dots and checking with the JWKS.
    pub fn sign_detached(&self, payload: &[u8]) -> Result<String, TokenError> {
        self.sign_detached_typ(payload, "assay-webhook+jws")
    }

    /// A detached JWS (`header..signature`, RFC 7515 appendix F) over `payload`
    /// with header `typ`.
    pub fn sign_detached_typ(&self, payload: &[u8], typ: &str) -> Result<String, TokenError> {
        let header = URL_SAFE_NO_PAD
            .encode(serde_json::json!({"alg": "EdDSA", "kid": self.kid, "typ": typ}).to_string());
        let input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(payload));
        let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &self.encoding, Algorithm::EdDSA)
            .map_err(|e| TokenError::Invalid(format!("signing: {e}")))?;
        Ok(format!("{header}..{sig}"))
    }

    pub fn jwks_json(&self) -> String {
        serde_json::json!({
            "keys": [{
                "kty": "OKP",
                "crv": "Ed25519",
                "alg": "EdDSA",
                "use": "sig",
                "kid": self.kid,
                "x": URL_SAFE_NO_PAD.encode(self.public),
            }]
        })
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> (tempfile::TempDir, TokenSigner) {
        let d = tempfile::tempdir().unwrap();
        let s = TokenSigner::load_or_create(&d.path().join("k.pem")).unwrap();
        (d, s)
    }

    #[test]
    fn detached_signatures_verify_with_the_published_key_and_only_over_their_body() {
        let d = tempfile::tempdir().unwrap();
        let s = TokenSigner::load_or_create(&d.path().join("k.pem")).unwrap();
        let body = br#"{"event":"node.quarantined"}"#;
        let jws = s.sign_detached(body).unwrap();
        let (header, sig) = jws.split_once("..").unwrap();
        let check = |payload: &[u8]| {
            let input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(payload));
            let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
            let key = ed25519_dalek::VerifyingKey::from_bytes(&s.public).unwrap();
            key.verify_strict(
                input.as_bytes(),
                &ed25519_dalek::Signature::from_slice(&sig).unwrap(),
            )
            .is_ok()
        };
        assert!(check(body));
        assert!(!check(br#"{"event":"node.restored"}"#));
    }

    #[test]
    fn issued_token_checks_and_key_persists() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("k.pem");
        let s = TokenSigner::load_or_create(&p).unwrap();
        let (t, c) = s.issue("node-a", "000b00", 100, 60).unwrap();
        assert_eq!(s.check(&t, "node-a", 120).unwrap(), c);
        let again = TokenSigner::load_or_create(&p).unwrap();
        assert_eq!(
            again.check(&t, "node-a", 120).unwrap(),
            c,
            "same key after restart"
        );
        let jwks: serde_json::Value = serde_json::from_str(&s.jwks_json()).unwrap();
        assert_eq!(jwks["keys"][0]["crv"], "Ed25519");
    }

    #[test]
    fn rejects_expired_token() {
        let (_d, s) = signer();
        let (t, _) = s.issue("node-a", "x", 100, 60).unwrap();
        assert!(matches!(
            s.check(&t, "node-a", 160),
            Err(TokenError::Expired { expires_unix: 160 })
        ));
    }

    #[test]
    fn rejects_token_presented_by_another_node() {
        let (_d, s) = signer();
        let (t, _) = s.issue("node-a", "x", 100, 60).unwrap();
        assert!(matches!(
            s.check(&t, "node-b", 110),
            Err(TokenError::WrongNode { .. })
        ));
    }

    #[test]
    fn rejects_token_signed_by_another_key_or_tampered() {
        let (_d, s) = signer();
        let (_d2, other) = signer();
        let (t, _) = other.issue("node-a", "x", 100, 60).unwrap();
        assert!(matches!(
            s.check(&t, "node-a", 110),
            Err(TokenError::Invalid(_))
        ));
        let (t, _) = s.issue("node-a", "x", 100, 60).unwrap();
        // Re-sign nothing, change the payload: the signature no longer covers it.
        let parts: Vec<&str> = t.split('.').collect();
        let forged_claims = URL_SAFE_NO_PAD.encode(
            serde_json::to_vec(&serde_json::json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "node-b", "ak": "x", "jti": "0", "iat": 100, "exp": 9999})).unwrap(),
        );
        let forged = format!("{}.{}.{}", parts[0], forged_claims, parts[2]);
        assert!(matches!(
            s.check(&forged, "node-b", 110),
            Err(TokenError::Invalid(_))
        ));
        assert!(matches!(
            s.check("garbage", "node-a", 110),
            Err(TokenError::Invalid(_))
        ));
    }
}
