//! Reaching the verifier: the TLS channel both of its clients (the attestor
//! and `assay-verifier`'s commands) open, and what a failed connection means.

use std::time::Duration;

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// Why a channel to the verifier could not be set up or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// The address or the TLS material is unusable: fix the arguments.
    #[error("{0}")]
    Setup(String),
    /// The verifier answered with a certificate the given CA does not vouch
    /// for, or not for this host name: retrying will not help.
    #[error("the verifier at {url} presented a certificate that {problem}")]
    Certificate { url: String, problem: String },
    /// Nothing usable answered (refused, timed out, reset): worth retrying.
    #[error("{url}: {cause}")]
    Unreachable { url: String, cause: String },
}

/// An endpoint for `url` that trusts `ca_pem` for the host in `url`, with an
/// optional client identity (PEM certificate and key).
pub fn endpoint(
    url: &str,
    ca_pem: Vec<u8>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
) -> Result<Endpoint, ConnectError> {
    let uri: tonic::transport::Uri = url
        .parse()
        .map_err(|e| ConnectError::Setup(format!("{url} is not a URL: {e}")))?;
    let host = uri
        .host()
        .unwrap_or("localhost")
        .trim_matches(['[', ']'])
        .to_string();
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name(host);
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    Ok(Channel::builder(uri)
        .tls_config(tls)
        .map_err(|e| ConnectError::Setup(format!("TLS setup: {}", causes(&e))))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30)))
}

/// Connects once, telling a certificate problem from an unreachable verifier.
pub async fn connect(url: &str, endpoint: &Endpoint) -> Result<Channel, ConnectError> {
    endpoint
        .connect()
        .await
        .map_err(|e| match certificate_problem(&e) {
            Some(problem) => ConnectError::Certificate {
                url: url.to_string(),
                problem,
            },
            None => ConnectError::Unreachable {
                url: url.to_string(),
                cause: causes(&e),
            },
        })
}

/// What a TLS certificate problem among `e`'s causes was, in words.
pub fn certificate_problem(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    use rustls::{CertificateError, Error as Tls};
    let mut next = Some(e);
    while let Some(err) = next {
        // io::Error hides the error it wraps from `source()`.
        let tls = err.downcast_ref::<Tls>().or_else(|| {
            err.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<Tls>())
        });
        if let Some(t) = tls {
            return Some(match t {
                // A CA of the same name that did not sign it: BadSignature.
                Tls::InvalidCertificate(
                    CertificateError::UnknownIssuer | CertificateError::BadSignature,
                ) => "is not signed by the CA given (--ca)".into(),
                Tls::InvalidCertificate(
                    CertificateError::NotValidForName
                    | CertificateError::NotValidForNameContext { .. },
                ) => "is not valid for the host name in the verifier's address".into(),
                Tls::InvalidCertificate(c) => format!("was refused ({c:?})"),
                other => format!("could not be checked ({other})"),
            });
        }
        next = err.source();
    }
    None
}

/// An error's causes in one line, each said once (transport errors repeat
/// their source's text in their own).
pub fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(e);
    while let Some(err) = next {
        let text = err.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.retain(|p| !text.contains(p.as_str()));
            parts.push(text);
        }
        next = err.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|l| l as _)
        }
    }

    #[test]
    fn each_cause_is_said_once() {
        let e = Layer(
            "transport error",
            Some(Box::new(Layer(
                "connection refused (os error 111)",
                Some(Box::new(Layer("connection refused (os error 111)", None))),
            ))),
        );
        assert_eq!(
            causes(&e),
            "transport error: connection refused (os error 111)"
        );
        let wraps = Layer(
            "error trying to connect: tcp connect error",
            Some(Box::new(Layer("tcp connect error", None))),
        );
        assert_eq!(causes(&wraps), "error trying to connect: tcp connect error");
    }

    #[test]
    fn a_certificate_problem_is_found_inside_an_io_error() {
        let inner = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, inner);
        assert_eq!(
            certificate_problem(&io).as_deref(),
            Some("is not signed by the CA given (--ca)")
        );
        let same_name = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::BadSignature),
        );
        assert_eq!(
            certificate_problem(&same_name).as_deref(),
            Some("is not signed by the CA given (--ca)")
        );
        assert_eq!(certificate_problem(&Layer("refused", None)), None);
    }

    #[test]
    fn a_bad_url_is_a_setup_error() {
        assert!(matches!(
            endpoint("not a url", Vec::new(), None),
            Err(ConnectError::Setup(_))
        ));
    }
}
