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
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

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

    fn test_ca(name: &str) -> (rcgen::Certificate, rcgen::KeyPair) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::default();
        p.distinguished_name.push(rcgen::DnType::CommonName, name);
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
        p.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
        (p.self_signed(&key).unwrap(), key)
    }

    /// A one-request-per-connection HTTPS server on 127.0.0.1 presenting a
    /// certificate for `names` from `issuer`, answering 204; it counts the
    /// requests that got through the TLS handshake.
    async fn https_server(
        issuer: &(rcgen::Certificate, rcgen::KeyPair),
        names: &[&str],
    ) -> (u16, Arc<AtomicUsize>) {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let cert = p.signed_by(&key, &issuer.0, &issuer.1).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let served = Arc::new(AtomicUsize::new(0));
        let count = served.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, count) = (acceptor.clone(), count.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut head = vec![0u8; 16 * 1024];
                    let mut n = 0;
                    while !head[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut head[n..]).await {
                            Ok(0) | Err(_) => return,
                            Ok(k) => n += k,
                        }
                        if n == head.len() {
                            return;
                        }
                    }
                    count.fetch_add(1, Ordering::SeqCst);
                    let _ = tls
                        .write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")
                        .await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        (port, served)
    }

    #[tokio::test]
    async fn an_https_webhook_with_a_certificate_from_another_ca_or_for_another_name_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let trusted = test_ca("Webhook CA");
        let other = test_ca("Another CA");
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, trusted.0.pem()).unwrap();
        for (case, issuer, names, refusal) in [
            ("another CA", &other, ["127.0.0.1"], Some("UnknownIssuer")),
            (
                "another name",
                &trusted,
                ["hooks.example.org"],
                Some("not valid for name"),
            ),
            ("the control", &trusted, ["127.0.0.1"], None),
        ] {
            let (port, served) = https_server(issuer, &names).await;
            let mut w =
                Webhook::new(&cfg(&format!("https://127.0.0.1:{port}/hook"), ca.to_str())).unwrap();
            w.first_backoff = Duration::from_millis(1);
            let d = w.deliver(Bytes::from_static(b"{}"), "s").await;
            match refusal {
                Some(why) => {
                    assert!(!d.delivered, "{case}");
                    assert!(d.last.contains(why), "{case}: {}", d.last);
                    assert_eq!(
                        served.load(Ordering::SeqCst),
                        0,
                        "{case}: nothing got through"
                    );
                }
                None => {
                    assert!(d.delivered, "{case}: {}", d.last);
                    assert_eq!(served.load(Ordering::SeqCst), 1, "{case}");
                }
            }
        }
    }
}
