//! EK certificates the TPM does not hold in NV but its vendor publishes per
//! EK: AMD fTPM and Intel PTT parts whose certificate is served by the
//! vendor's web service (the same services tpm2_getekcertificate and Windows
//! use). Off by default (`fetch_ek_certificate = true` turns it on).
//!
//! - Intel (`https://ekop.intel.com/ekcertservice/`): the path is base64url
//!   (with padding, then percent-escaped) of SHA-256(modulus ‖ 01 00 01) for
//!   an RSA EK or SHA-256(x ‖ y) for an ECC EK; the answer is JSON with the
//!   DER certificate, base64url, under `certificate`.
//! - AMD (`https://ftpm.amd.com/pki/aia/`): the path is hex of the first 16
//!   bytes of SHA-256(00 00 22 22 ‖ u32be(exponent) ‖ modulus), or
//!   SHA-256(00 00 44 44 ‖ x ‖ y) for ECC; the answer is the DER certificate.
//!
//! Nothing fetched is trusted here beyond one check: the certificate must be
//! for this TPM's EK (a wrong or substituted answer is refused before it is
//! kept or sent). The verifier validates the chain as for a certificate from
//! NV. A certificate that passed is kept in the state dir (`ek-cert.der`) and
//! used from then on, so the service is asked once per TPM.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use assay_core::ek_service::{certificate_of_answer, ek_path, Vendor, MAX_ANSWER};
use http_body_util::{BodyExt, Empty, Limited};
use rustls_pki_types::pem::PemObject as _;

/// The file in the state dir that keeps a fetched certificate.
pub const CACHE_FILE: &str = "ek-cert.der";
/// Connect + TLS + answer, in all.
const TIMEOUT: Duration = Duration::from_secs(20);

/// How to reach the service (from the attestor's config).
#[derive(Clone, Debug, Default)]
pub struct FetchSettings {
    /// None: from the TPM's manufacturer.
    pub vendor: Option<Vendor>,
    /// None: the vendor's service.
    pub base_url: Option<String>,
    /// PEM roots for the service's TLS certificate instead of the system's.
    pub ca: Option<PathBuf>,
}

/// The kept certificate, if it is (still) for this EK.
pub fn cached(state_dir: &Path, ek_public: &[u8]) -> Option<Vec<u8>> {
    let der = std::fs::read(state_dir.join(CACHE_FILE)).ok()?;
    assay_core::enroll::certificate_matches_ek(&der, ek_public).ok()?;
    Some(der)
}

/// Fetches, checks and keeps the EK certificate from the vendor's service.
pub async fn fetch(
    settings: &FetchSettings,
    vendor: Vendor,
    ek_public: &[u8],
    state_dir: &Path,
) -> Result<Vec<u8>, String> {
    let base = settings
        .base_url
        .clone()
        .unwrap_or_else(|| vendor.default_base_url().into());
    let url = format!("{base}{}", ek_path(vendor, ek_public)?);
    let body = tokio::time::timeout(TIMEOUT, get(&url, settings.ca.as_deref()))
        .await
        .map_err(|_| format!("{url}: no answer within {}s", TIMEOUT.as_secs()))?
        .map_err(|e| format!("{url}: {e}"))?;
    let der = certificate_of_answer(vendor, &body).map_err(|e| format!("{url}: {e}"))?;
    assay_core::enroll::certificate_matches_ek(&der, ek_public).map_err(|e| {
        format!(
            "{url}: {} answered with a certificate that is not for this TPM's EK ({e}); refused",
            vendor.name()
        )
    })?;
    crate::files::write_private_atomic(&state_dir.join(CACHE_FILE), &der)?;
    Ok(der)
}

/// HTTPS GET of `url`, the body bounded; `ca`: PEM roots instead of the system's.
async fn get(url: &str, ca: Option<&Path>) -> Result<Vec<u8>, String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
    if uri.scheme_str() != Some("https") {
        return Err("only https:// services are used".into());
    }
    let host = uri.host().ok_or("the URL has no host")?.to_string();
    let port = uri.port_u16().unwrap_or(443);
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(path) => {
            let pem = read_capped(path, 1 << 20)?;
            for c in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
                let c = c.map_err(|e| format!("{}: {e}", path.display()))?;
                roots
                    .add(c)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for c in found.certs {
                let _ = roots.add(c);
            }
        }
    }
    if roots.is_empty() {
        return Err("no CA certificates to check the service's TLS certificate with (install ca-certificates, or set ek_cert_service_ca)".into());
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from(host.trim_matches(['[', ']']).to_string())
        .map_err(|e| format!("host `{host}`: {e}"))?;
    let tcp = tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS: {e}"))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .map_err(|e| format!("HTTP: {e}"))?;
    tokio::spawn(conn);
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let req = hyper::Request::get(path)
        .header(
            hyper::header::HOST,
            uri.authority().map(|a| a.as_str()).unwrap_or(&host),
        )
        .header(
            hyper::header::USER_AGENT,
            concat!("assay-attestor/", env!("CARGO_PKG_VERSION")),
        )
        .body(Empty::<hyper::body::Bytes>::new())
        .map_err(|e| e.to_string())?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(format!(
            "HTTP {status} (the service has no certificate for this EK, or the URL is wrong)"
        ));
    }
    let body = Limited::new(resp.into_body(), MAX_ANSWER)
        .collect()
        .await
        .map_err(|e| format!("reading the answer (at most {MAX_ANSWER} bytes): {e}"))?;
    Ok(body.to_bytes().to_vec())
}

fn read_capped(path: &Path, max: u64) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let mut out = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(max + 1).read_to_end(&mut out))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if out.len() as u64 > max {
        return Err(format!("{}: larger than {max} bytes", path.display()));
    }
    Ok(out)
}
