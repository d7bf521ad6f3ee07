//! The verifier's small HTTP/1.1 listeners (the Prometheus metrics endpoint,
//! the fleet page): hyper serves the protocol, rustls the TLS when there is
//! some. Bounded like the gRPC listener: so many connections at once, a
//! deadline for the request head, a lifetime for each connection, GET and
//! HEAD only, no request body read.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tracing::{debug, warn};

/// What one listener may be made to hold.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Connections served at once; more are closed at accept.
    pub max_connections: usize,
    /// A client must send its request head (and finish the TLS handshake)
    /// within this.
    pub header_timeout: Duration,
    /// A connection is closed this long after it was accepted, whatever it
    /// is doing.
    pub connection_timeout: Duration,
    /// Largest request head read.
    pub max_header_bytes: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_connections: 64,
            header_timeout: Duration::from_secs(10),
            connection_timeout: Duration::from_secs(60),
            max_header_bytes: 16 * 1024,
        }
    }
}

/// Who is asking: the peer's address, and over TLS the leaf certificate it
/// presented (DER), if any.
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    pub client_cert: Option<Vec<u8>>,
}

/// A complete answer.
pub type Answer = Response<Full<Bytes>>;

/// A plain answer with `status` and a text body.
pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Answer {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Serves `handler` on `listener` until the task is dropped. Requests other
/// than GET and HEAD are answered 405 before the handler sees them.
pub async fn serve<H, F>(
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    limits: HttpLimits,
    what: &'static str,
    handler: H,
) where
    H: Fn(Request<Incoming>, Arc<Peer>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Answer> + Send + 'static,
{
    let places = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let mut warned_full = false;
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and the like: back off, go on.
                warn!(error = %e, listener = what, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(place) = places.clone().try_acquire_owned() else {
            if !warned_full {
                warn!(
                    max = limits.max_connections,
                    listener = what,
                    "connection cap reached: new connections are closed until some end"
                );
                warned_full = true;
            }
            continue;
        };
        warned_full = false;
        let _ = stream.set_nodelay(true);
        let tls = tls.clone();
        let handler = handler.clone();
        tokio::spawn(async move {
            let _place = place;
            let served = tokio::time::timeout(limits.connection_timeout, async move {
                match tls {
                    Some(acceptor) => {
                        let accepted =
                            tokio::time::timeout(limits.header_timeout, acceptor.accept(stream))
                                .await;
                        let stream = match accepted {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                debug!(error = %e, %addr, listener = what, "TLS handshake failed");
                                return;
                            }
                            Err(_) => return,
                        };
                        let client_cert = stream
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|c| c.first())
                            .map(|c| c.as_ref().to_vec());
                        let peer = Arc::new(Peer { addr, client_cert });
                        serve_connection(stream, peer, limits, handler).await
                    }
                    None => {
                        let peer = Arc::new(Peer {
                            addr,
                            client_cert: None,
                        });
                        serve_connection(stream, peer, limits, handler).await
                    }
                }
            })
            .await;
            if served.is_err() {
                debug!(%addr, listener = what, "connection closed at its time limit");
            }
        });
    }
}

async fn serve_connection<IO, H, F>(io: IO, peer: Arc<Peer>, limits: HttpLimits, handler: H)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    H: Fn(Request<Incoming>, Arc<Peer>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Answer> + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let handler = handler.clone();
        let peer = peer.clone();
        async move {
            // hyper sends no body in answer to HEAD.
            let answer = if req.method() == Method::GET || req.method() == Method::HEAD {
                handler(req, peer).await
            } else {
                let mut a = text(StatusCode::METHOD_NOT_ALLOWED, "GET or HEAD only\n");
                a.headers_mut().insert(
                    hyper::header::ALLOW,
                    hyper::header::HeaderValue::from_static("GET, HEAD"),
                );
                a
            };
            Ok::<_, std::convert::Infallible>(answer)
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .serve_connection(TokioIo::new(io), service)
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    async fn server(limits: HttpLimits) -> SocketAddr {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(serve(l, None, limits, "test", |req, peer| async move {
            text(
                StatusCode::OK,
                format!("{} from {}\n", req.uri().path(), peer.addr.ip()),
            )
        }));
        addr
    }

    async fn exchange(addr: SocketAddr, request: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut out = String::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out)).await;
        out
    }

    fn small() -> HttpLimits {
        HttpLimits {
            max_connections: 2,
            header_timeout: Duration::from_millis(300),
            connection_timeout: Duration::from_secs(2),
            max_header_bytes: 8192,
        }
    }

    #[tokio::test]
    async fn get_is_answered_and_other_methods_are_refused_with_405() {
        let addr = server(small()).await;
        let ok = exchange(
            addr,
            "GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        assert!(ok.ends_with("/x from 127.0.0.1\n"), "{ok}");
        let head = exchange(
            addr,
            "HEAD /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(
            head.starts_with("HTTP/1.1 200") && !head.contains("from"),
            "{head}"
        );
        let post = exchange(
            addr,
            "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
        )
        .await;
        assert!(post.starts_with("HTTP/1.1 405"), "{post}");
        assert!(
            post.to_ascii_lowercase().contains("allow: get, head"),
            "{post}"
        );
    }

    #[tokio::test]
    async fn a_client_that_never_sends_its_request_head_is_dropped() {
        let addr = server(small()).await;
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost:").await.unwrap();
        let mut buf = Vec::new();
        let start = std::time::Instant::now();
        let r = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
        assert!(r.is_ok(), "still open after 5 s");
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
    }

    #[tokio::test]
    async fn connections_past_the_cap_are_closed_at_once_and_a_place_frees_when_one_ends() {
        let addr = server(small()).await;
        // Two idle keep-alive connections hold both places.
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n")
                .await
                .unwrap();
            let mut buf = [0u8; 256];
            let n = s.read(&mut buf).await.unwrap();
            assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
            held.push(s);
        }
        let refused = exchange(
            addr,
            "GET /b HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert_eq!(refused, "", "a third connection is closed unanswered");
        drop(held);
        let ok = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                let r = exchange(
                    addr,
                    "GET /c HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
                )
                .await;
                if !r.is_empty() {
                    return r;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("a place frees");
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    }
}
