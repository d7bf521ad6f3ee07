//! Webhook notifications: a JSON body POSTed to the configured URL when a node
//! is isolated (failed or stale) or restored, signed with the verifier's token
//! key as a detached JWS in the `Assay-Signature` header (check it with the
//! JWKS: `Tokens.Jwks` or `assay-verifier token jwks`). Delivery is retried with
//! exponential backoff a bounded number of times and recorded in the history.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use hyper::body::Bytes;
use hyper::Method;
use serde::{Deserialize, Serialize};

/// Attempts per notification.
pub const ATTEMPTS: u32 = 5;
/// Wait before the second attempt; doubled for each next one (1, 2, 4, 8 s).
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// Longest one attempt may take.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default trust store for `https://` webhooks (Debian's ca-certificates).
pub const DEFAULT_CA: &str = "/etc/ssl/certs/ca-certificates.crt";

/// `[webhook]`: where isolation and restore notifications go.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileWebhook {
    pub url: Option<String>,
    /// PEM roots for an https URL (default: /etc/ssl/certs/ca-certificates.crt).
    pub ca: Option<PathBuf>,
}

impl FileWebhook {
    /// None: no webhook configured.
    pub fn validate(self) -> Option<WebhookConfig> {
        self.url.map(|url| WebhookConfig { url, ca: self.ca })
    }
}

#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub url: String,
    /// PEM roots for an `https://` URL (default: the system bundle).
    pub ca: Option<PathBuf>,
}

/// What happened to a node.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// `node.quarantined`, `node.stale`, `node.restored`.
    pub event: &'static str,
    pub node_id: String,
    pub time_unix: i64,
    pub reason: String,
    /// Failed claim ids (for `node.quarantined`).
    pub failed_claims: Vec<String>,
    /// The history record that caused it (0 if none).
    pub history_seq: u64,
    pub tokens_revoked: usize,
}

/// The outcome of delivering one notification.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub delivered: bool,
    pub attempts: u32,
    /// The last status or error.
    pub last: String,
    pub elapsed: Duration,
}

pub struct Webhook {
    url: String,
    endpoint: crate::http::Endpoint,
    first_backoff: Duration,
}

impl Webhook {
    /// Checks the URL and loads the TLS roots; errors name the config key.
    pub fn new(cfg: &WebhookConfig) -> Result<Self, String> {
        let tls = if cfg.url.starts_with("https://") {
            let ca = cfg.ca.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_CA));
            Some(crate::http::tls_connector(&ca, None, "webhook.ca")?)
        } else {
            None
        };
        Ok(Self {
            url: cfg.url.clone(),
            endpoint: crate::http::Endpoint::new(&cfg.url, tls, "webhook.url")?,
            first_backoff: FIRST_BACKOFF,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    async fn post_once(&self, body: &Bytes, signature: &str) -> Result<u16, String> {
        let (status, _) = self
            .endpoint
            .request(
                Method::POST,
                "",
                &[("assay-signature", signature)],
                body.clone(),
                64 * 1024,
            )
            .await?;
        if status.is_success() {
            Ok(status.as_u16())
        } else {
            Err(format!("HTTP {status}"))
        }
    }

    /// POSTs `body` until a 2xx answer, at most [`ATTEMPTS`] times with
    /// exponential backoff.
    pub async fn deliver(&self, body: Bytes, signature: &str) -> Delivery {
        let start = Instant::now();
        let mut backoff = self.first_backoff;
        let mut last = String::new();
        for attempt in 1..=ATTEMPTS {
            match tokio::time::timeout(ATTEMPT_TIMEOUT, self.post_once(&body, signature)).await {
                Ok(Ok(status)) => {
                    return Delivery {
                        delivered: true,
                        attempts: attempt,
                        last: format!("HTTP {status}"),
                        elapsed: start.elapsed(),
                    }
                }
                Ok(Err(e)) => last = e,
                Err(_) => last = format!("no answer within {ATTEMPT_TIMEOUT:?}"),
            }
            if attempt < ATTEMPTS {
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
        }
        Delivery {
            delivered: false,
            attempts: ATTEMPTS,
            last,
            elapsed: start.elapsed(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(url: &str, ca: Option<&str>) -> WebhookConfig {
        WebhookConfig {
            url: url.into(),
            ca: ca.map(PathBuf::from),
        }
    }

    #[test]
    fn bad_webhook_settings_are_refused_naming_the_key() {
        for (url, ca, says) in [
            ("ftp://h/x", None, "must be http:// or https://"),
            ("not a url", None, "webhook.url"),
            ("/just/a/path", None, "must be http:// or https://"),
            ("https://h/x", Some("/nonexistent/ca.pem"), "webhook.ca"),
            ("https://h/x", Some("/dev/null"), "no certificate"),
        ] {
            let e = Webhook::new(&cfg(url, ca)).err().unwrap_or_default();
            assert!(e.contains(says), "{url}: {e}");
        }
        let w = Webhook::new(&cfg("http://127.0.0.1:9/hook?x=1", None)).unwrap();
        let e = &w.endpoint;
        assert_eq!((e.host.as_str(), e.port), ("127.0.0.1", 9));
        assert_eq!(e.path(""), "/hook?x=1");
        let w = Webhook::new(&cfg("http://[::1]/h", None)).unwrap();
        assert_eq!((w.endpoint.host.as_str(), w.endpoint.port), ("::1", 80));
        let w = Webhook::new(&cfg("http://example.com", None)).unwrap();
        assert_eq!(w.endpoint.path(""), "/");
    }

    #[tokio::test]
    async fn an_unreachable_webhook_is_tried_a_bounded_number_of_times() {
        // A port nothing listens on: every attempt is refused at once.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let mut w = Webhook::new(&cfg(&format!("http://127.0.0.1:{port}/h"), None)).unwrap();
        w.first_backoff = Duration::from_millis(1);
        let d = w.deliver(Bytes::from_static(b"{}"), "s").await;
        assert!(!d.delivered);
        assert_eq!(d.attempts, ATTEMPTS);
        assert!(d.last.contains("connecting"), "{}", d.last);
    }
}
