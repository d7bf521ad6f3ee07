//! Commands that talk to a running verifier: where it is, how to trust it,
//! who is calling, and what its answers mean for the exit code.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use tonic::transport::Channel;

use super::Exit;

#[derive(Args)]
pub struct ServerArgs {
    /// The verifier's address.
    #[arg(
        long,
        env = "ASSAY_VERIFIER",
        default_value = "https://127.0.0.1:7443",
        value_name = "URL"
    )]
    pub server: String,
    /// CA certificate (PEM) that signed the verifier's TLS certificate
    /// (`<dir>/ca.pem` from `assay-verifier init`).
    #[arg(long, env = "ASSAY_CA", value_name = "FILE")]
    pub ca: PathBuf,
    /// Client certificate carrying your role (`assay-verifier client-cert`);
    /// default: none (the node role).
    #[arg(long, env = "ASSAY_CLIENT_CERT", requires = "key", value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// The client certificate's private key.
    #[arg(long, env = "ASSAY_CLIENT_KEY", requires = "cert", value_name = "FILE")]
    pub key: Option<PathBuf>,
}

/// Connects over TLS; a verifier that cannot be reached is [`Exit::Unreachable`],
/// one whose certificate `--ca` does not vouch for is a plain error (retrying
/// will not help).
pub async fn connect(a: &ServerArgs) -> anyhow::Result<Channel> {
    use assay_proto::client::{self, ConnectError};
    let ca = std::fs::read(&a.ca).with_context(|| format!("--ca: reading {}", a.ca.display()))?;
    let identity = match (&a.cert, &a.key) {
        (Some(c), Some(k)) => Some((
            std::fs::read(c).with_context(|| format!("--cert: reading {}", c.display()))?,
            std::fs::read(k).with_context(|| format!("--key: reading {}", k.display()))?,
        )),
        _ => None,
    };
    let endpoint = client::endpoint(&a.server, ca, identity)
        .map_err(|e| Exit::Usage(format!("--server/--ca: {e}")))?;
    client::connect(&a.server, &endpoint)
        .await
        .map_err(|e| match e {
            ConnectError::Certificate { .. } => anyhow::anyhow!(
                "{e}; check --ca {} (the ca.pem `assay-verifier init` wrote) and --server",
                a.ca.display()
            ),
            ConnectError::Unreachable { .. } => {
                Exit::Unreachable(format!("verifier unreachable at {e}")).into()
            }
            ConnectError::Setup(_) => Exit::Usage(e.to_string()).into(),
        })
}

/// A refusal or failure the verifier answered with, as the error whose kind
/// sets the exit code: refused (3), unreachable (4), bad usage (2), else 1.
pub fn answer(what: &str, s: tonic::Status) -> anyhow::Error {
    use tonic::Code;
    let msg = if s.message().is_empty() {
        format!("{what}: {}", s.code())
    } else {
        format!("{what}: {}", s.message())
    };
    match s.code() {
        Code::PermissionDenied | Code::Unauthenticated => Exit::Refused(msg).into(),
        Code::Unavailable | Code::DeadlineExceeded => Exit::Unreachable(msg).into(),
        Code::InvalidArgument => Exit::Usage(msg).into(),
        _ => anyhow::Error::msg(msg),
    }
}
