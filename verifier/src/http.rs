//! One HTTP/1.1 request over an already connected stream (Unix socket, TCP or
//! TLS), with a bounded response body: what the Docker Engine client, the
//! Kubernetes API client and the webhook sender share. hyper does the
//! protocol, rustls the TLS.

use std::path::Path;
use std::sync::Arc;

use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

pub struct Sent<'a> {
    pub method: Method,
    /// Path and query.
    pub path: &'a str,
    pub host: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    pub body: Bytes,
    /// Largest response body read.
    pub max_response: usize,
}

/// Sends `req` over `io`; the status and body, or what went wrong.
pub async fn request<I>(io: I, req: Sent<'_>) -> Result<(StatusCode, Bytes), String>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| format!("HTTP handshake: {e}"))?;
    let conn = tokio::spawn(conn);
    let mut b = Request::builder()
        .method(req.method.clone())
        .uri(req.path)
        .header("host", req.host)
        .header("content-type", "application/json")
        .header(
            "user-agent",
            concat!("assay-verifier/", env!("CARGO_PKG_VERSION")),
        );
    for (k, v) in req.headers {
        b = b.header(*k, *v);
    }
    let r = b.body(Full::new(req.body)).map_err(|e| e.to_string())?;
    let resp = sender
        .send_request(r)
        .await
        .map_err(|e| format!("{} {}: {e}", req.method, req.path))?;
    let status = resp.status();
    let bytes = Limited::new(resp.into_body(), req.max_response)
        .collect()
        .await
        .map_err(|e| format!("{} {}: reading the answer: {e}", req.method, req.path))?
        .to_bytes();
    conn.abort();
    Ok((status, bytes))
}

/// A TLS client trusting the PEM certificates in `roots` (and only those),
/// presenting `client` (certificate chain, key; PEM files) when given.
/// `what` names the setting in errors.
pub fn tls_connector(
    roots: &Path,
    client: Option<(&Path, &Path)>,
    what: &str,
) -> Result<tokio_rustls::TlsConnector, String> {
    Ok(tokio_rustls::TlsConnector::from(Arc::new(
        tls_client_config(roots, client, what)?,
    )))
}

/// The rustls configuration of [`tls_connector`]: the server's certificate
/// must chain to `roots` and name the host connected to (rustls' WebPKI
/// verifier; no option turns either check off).
pub fn tls_client_config(
    roots: &Path,
    client: Option<(&Path, &Path)>,
    what: &str,
) -> Result<rustls::ClientConfig, String> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{what} {}: {e}", p.display()));
    let pem = read(roots)?;
    let mut store = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| format!("{what} {}: {e}", roots.display()))?;
        store
            .add(cert)
            .map_err(|e| format!("{what} {}: {e}", roots.display()))?;
    }
    if store.is_empty() {
        return Err(format!("{what} {}: no certificate in it", roots.display()));
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(store);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_slice_iter(&read(cert)?)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("{what} {}: {e}", cert.display()))?;
            if chain.is_empty() {
                return Err(format!("{what} {}: no certificate in it", cert.display()));
            }
            let key = PrivateKeyDer::from_pem_slice(&read(key)?)
                .map_err(|e| format!("{what} {}: {e}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("{what}: client certificate and key: {e}"))?
        }
    };
    Ok(config)
}

/// An `http://` or `https://` base URL and how to reach it.
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    /// `host[:port]` as written, for the Host header.
    authority: String,
    /// The URL's path, without a trailing `/` (prefixed to request paths).
    base_path: String,
    tls: Option<tokio_rustls::TlsConnector>,
}

impl Endpoint {
    /// `tls` is required for an `https://` URL and refused for `http://`.
    pub fn new(
        url: &str,
        tls: Option<tokio_rustls::TlsConnector>,
        what: &str,
    ) -> Result<Self, String> {
        let uri: Uri = url.parse().map_err(|e| format!("{what} `{url}`: {e}"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(format!("{what} `{url}`: must be http:// or https://")),
        };
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("{what} `{url}`: no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let tls = match (https, tls) {
            (true, Some(t)) => Some(t),
            (false, None) => None,
            (true, None) => return Err(format!("{what} `{url}`: https needs TLS settings")),
            (false, Some(_)) => return Err(format!("{what} `{url}`: TLS settings need https://")),
        };
        Ok(Self {
            port: uri.port_u16().unwrap_or(if https { 443 } else { 80 }),
            authority: uri.authority().map_or(host.clone(), |a| a.to_string()),
            base_path: uri
                .path_and_query()
                .map_or("", |p| p.as_str())
                .trim_end_matches('/')
                .to_string(),
            host,
            tls,
        })
    }

    /// The full request path for `path` (which starts with `/`, or is empty).
    pub fn path(&self, path: &str) -> String {
        match (self.base_path.is_empty(), path.is_empty()) {
            (true, true) => "/".into(),
            _ => format!("{}{path}", self.base_path),
        }
    }

    /// One request on a new connection. `path` is appended to the URL's path.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
        max_response: usize,
    ) -> Result<(StatusCode, Bytes), String> {
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| format!("connecting to {}:{}: {e}", self.host, self.port))?;
        let full = self.path(path);
        let sent = Sent {
            method,
            path: &full,
            host: &self.authority,
            headers,
            body,
            max_response,
        };
        match &self.tls {
            Some(tls) => {
                let name = rustls_pki_types::ServerName::try_from(self.host.clone())
                    .map_err(|e| format!("host `{}`: {e}", self.host))?;
                let stream = tls
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("TLS with {}: {e}", self.host))?;
                request(stream, sent).await
            }
            None => request(tcp, sent).await,
        }
    }
}
