//! The page's HTTPS listener: rustls with the verifier's own certificate and
//! key, client certificates verified against `tls.client_ca` (optional at
//! the handshake, so a browser without one is answered a page saying what
//! it needs, 403, instead of a bare TLS alert), HTTP/1.1 through
//! [`crate::http_server`] (connection cap, header deadline, connection
//! lifetime, GET and HEAD only). Then the routes, the role check and the
//! security headers every answer carries.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, StatusCode};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tracing::{debug, info, warn};

use super::config::WebConfig;
use super::view::Viewer;
use super::{load, query, render};
use crate::config::Config;
use crate::http_server::{Answer, HttpLimits, Peer};
use crate::roles::{Role, Rpc};
use crate::service::Verifier;

/// Pages built at once (each reads the store); more wait for a turn.
pub const MAX_BUILDS: usize = 4;
/// How long a request waits for a turn before it is answered 503.
pub const BUILD_WAIT: Duration = Duration::from_secs(10);

/// The listener, bound and with its TLS configuration loaded (`bind`), not
/// yet serving.
pub struct WebListener {
    listener: tokio::net::TcpListener,
    tls: tokio_rustls::TlsAcceptor,
    config: WebConfig,
}

impl WebListener {
    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }
}

/// Binds `[web] listen` with the verifier's TLS material, and prints
/// `fleet page on ADDR` (before `serve` prints `listening on`); None when
/// the page is off. Every file is read here, so a bad one stops start-up.
pub async fn bind(config: &Config) -> anyhow::Result<Option<WebListener>> {
    let Some(web) = config.web.clone() else {
        return Ok(None);
    };
    let tls = tls_config(config)?;
    let listener = tokio::net::TcpListener::bind(web.listen)
        .await
        .with_context(|| format!("web.listen: binding {}", web.listen))?;
    let addr = listener.local_addr()?;
    if config.client_ca.is_none() {
        warn!(
            %addr,
            "tls.no_client_auth: the fleet page, like every RPC, is open to any TLS client"
        );
    }
    info!(%addr, "fleet page served over HTTPS");
    println!("fleet page on {addr}");
    Ok(Some(WebListener {
        listener,
        tls: tokio_rustls::TlsAcceptor::from(Arc::new(tls)),
        config: web,
    }))
}

fn tls_config(config: &Config) -> anyhow::Result<rustls::ServerConfig> {
    let read = |what: &str, p: &std::path::Path| {
        std::fs::read(p).with_context(|| format!("{what}: reading {}", p.display()))
    };
    let chain = CertificateDer::pem_slice_iter(&read("tls.cert", &config.tls_cert)?)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("tls.cert {}", config.tls_cert.display()))?;
    let key = PrivateKeyDer::from_pem_slice(&read("tls.key", &config.tls_key)?)
        .with_context(|| format!("tls.key {}", config.tls_key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match &config.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&read("tls.client_ca", path)?) {
                roots
                    .add(cert.with_context(|| format!("tls.client_ca {}", path.display()))?)
                    .with_context(|| format!("tls.client_ca {}", path.display()))?;
            }
            // Optional at the handshake, as for the API: a certificate that
            // is presented must chain to the clients CA; none is answered 403.
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .allow_unauthenticated()
            .build()
            .with_context(|| format!("tls.client_ca {}", path.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut tls = builder
        .with_single_cert(chain, key)
        .context("tls.cert and tls.key")?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tls)
}

struct State {
    verifier: Arc<Verifier>,
    config: WebConfig,
    builds: Arc<tokio::sync::Semaphore>,
}

/// Serves the page until the task is dropped.
pub async fn serve(l: WebListener, verifier: Arc<Verifier>) {
    let limits = HttpLimits {
        max_connections: l.config.max_connections,
        header_timeout: l.config.header_timeout,
        connection_timeout: l.config.connection_timeout,
        ..HttpLimits::default()
    };
    let state = Arc::new(State {
        verifier,
        config: l.config,
        builds: Arc::new(tokio::sync::Semaphore::new(MAX_BUILDS)),
    });
    crate::http_server::serve(
        l.listener,
        Some(l.tls),
        limits,
        "fleet page",
        move |req, peer| handle(state.clone(), req, peer),
    )
    .await;
}

async fn handle(state: Arc<State>, req: Request<Incoming>, peer: Arc<Peer>) -> Answer {
    let now = crate::clock::now_unix();
    let path = req.uri().path().to_string();
    // Static, the same for everyone (the 403 page uses it too); no icon.
    match path.as_str() {
        "/style.css" => {
            return answer(
                StatusCode::OK,
                "text/css; charset=utf-8",
                render::STYLE.into(),
            )
        }
        "/favicon.ico" => {
            return answer(
                StatusCode::NOT_FOUND,
                "text/plain; charset=utf-8",
                String::new(),
            )
        }
        _ => {}
    }
    let viewer = match viewer(&state.verifier, &peer, &path) {
        Ok(v) => v,
        Err(why) => {
            return html(
                StatusCode::FORBIDDEN,
                render::message("Certificate required", &why, Some(CERTIFICATE_HINT), now),
            )
        }
    };
    let q = req.uri().query().map(str::to_string);
    match path.as_str() {
        "/" => match query::fleet(q.as_deref()) {
            Ok(q) => {
                let per_page = state.config.nodes_per_page;
                build(&state, now, move |v| {
                    load::fleet_page(v, viewer, &q, per_page, now).map(|p| Some(render::fleet(&p)))
                })
                .await
            }
            Err(e) => bad_request(&e, now),
        },
        "/node" => match query::node(q.as_deref()) {
            Ok(q) => {
                let per_page = state.config.records_per_page;
                build(&state, now, move |v| {
                    load::node_page(v, viewer, &q, per_page, now)
                        .map(|p| p.map(|p| render::node(&p)))
                })
                .await
            }
            Err(e) => bad_request(&e, now),
        },
        _ => html(
            StatusCode::NOT_FOUND,
            render::message(
                "Not found",
                "There is no such page.",
                Some("The fleet is at /."),
                now,
            ),
        ),
    }
}

/// Builds a page on a blocking thread, at most [`MAX_BUILDS`] at once.
async fn build(
    state: &State,
    now: i64,
    f: impl FnOnce(&Verifier) -> Result<Option<String>, crate::store::StoreError> + Send + 'static,
) -> Answer {
    // The turn is held by the build itself: a client that leaves does not
    // free it while its page is still being built.
    let Ok(Ok(turn)) = tokio::time::timeout(BUILD_WAIT, state.builds.clone().acquire_owned()).await
    else {
        return html(
            StatusCode::SERVICE_UNAVAILABLE,
            render::message(
                "Busy",
                "Too many pages are being built; try again.",
                None,
                now,
            ),
        );
    };
    let v = state.verifier.clone();
    let built = tokio::task::spawn_blocking(move || {
        let _turn = turn;
        f(&v)
    });
    match built.await {
        Ok(Ok(Some(body))) => html(StatusCode::OK, body),
        Ok(Ok(None)) => html(
            StatusCode::NOT_FOUND,
            render::message(
                "No such node",
                "The verifier has no record, enrollment or token of this node.",
                None,
                now,
            ),
        ),
        Ok(Err(e)) => {
            warn!(error = %e, "fleet page: the store did not answer");
            html(
                StatusCode::SERVICE_UNAVAILABLE,
                render::message(
                    "The store did not answer",
                    "The verifier could not read its store; its log says why.",
                    None,
                    now,
                ),
            )
        }
        Err(e) => {
            warn!(error = %e, "fleet page: building a page failed");
            html(
                StatusCode::INTERNAL_SERVER_ERROR,
                render::message("Internal error", "Building the page failed.", None, now),
            )
        }
    }
}

/// How an auditor gets a certificate a browser takes (the 403 page).
const CERTIFICATE_HINT: &str = "An auditor gets a certificate from an operator: `assay-verifier \
    client-cert --role auditor --name NAME` writes NAME.pem and NAME.key; `openssl pkcs12 \
    -export -in NAME.pem -inkey NAME.key -out NAME.p12` makes the file a browser imports \
    (Settings → Privacy and security → Security → Manage certificates).";

/// The viewer a client certificate names, if it may read the page (the
/// roles that may read the history: auditor and operator); else why not.
fn viewer(v: &Verifier, peer: &Peer, path: &str) -> Result<Viewer, String> {
    if v.config.client_ca.is_none() {
        return Ok(Viewer {
            role: "anyone".into(),
            subject: String::new(),
            open: true,
        });
    }
    let refuse = |text: String, subject: &str, role: &str| {
        // Any TLS client can cause this: not a warning.
        debug!(caller = %subject, role, addr = %peer.addr, path, "fleet page refused");
        Err(text)
    };
    let caller = match crate::roles::caller(peer.client_cert.as_deref()) {
        Ok(c) => c,
        Err(status) => return refuse(status.message().to_string(), "(unreadable)", "none"),
    };
    if crate::roles::allowed(&caller.role, Rpc::History) {
        debug!(caller = %caller.subject, role = %caller.role, path, "fleet page");
        return Ok(Viewer {
            role: caller.role.to_string(),
            subject: caller.subject,
            open: false,
        });
    }
    let text = match &caller.role {
        Role::Node(None) => "No client certificate was presented. The fleet page is for \
                             auditors and operators: it takes a client certificate with the \
                             role auditor or operator."
            .to_string(),
        r => format!(
            "The certificate `{}` carries the role {r}; the fleet page takes the role auditor or \
             operator.",
            caller.subject
        ),
    };
    refuse(text, &caller.subject, &caller.role.to_string())
}

fn bad_request(e: &str, now: i64) -> Answer {
    html(
        StatusCode::BAD_REQUEST,
        render::message("Bad request", e, None, now),
    )
}

fn html(status: StatusCode, body: String) -> Answer {
    answer(status, "text/html; charset=utf-8", body)
}

/// The Content-Security-Policy of every answer: nothing but the page's own
/// stylesheet loads, no script runs, forms go only back to the page, and no
/// other site may frame it.
pub const CSP: &str = "default-src 'none'; style-src 'self'; form-action 'self'; \
                       frame-ancestors 'none'; base-uri 'none'";

/// An answer with the headers every answer carries. No HSTS: it would bind
/// every port of the host name to HTTPS (the metrics listener is HTTP).
fn answer(status: StatusCode, content_type: &'static str, body: String) -> Answer {
    let mut a = crate::http_server::text(status, body);
    let h = a.headers_mut();
    let set = [
        ("content-type", content_type),
        ("content-security-policy", CSP),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        ("cross-origin-opener-policy", "same-origin"),
        ("cross-origin-resource-policy", "same-origin"),
        ("cache-control", "no-store"),
    ];
    for (name, value) in set {
        h.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    a
}
