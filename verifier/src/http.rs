//! One HTTP/1.1 request over an already connected stream (Unix socket, TCP or
//! TLS), with a bounded response body: what the Docker Engine client and the
//! webhook sender share. hyper does the protocol.

use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;

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
