//! The gRPC API: one file per service (`attestation.rs`, `tokens.rs`,
//! `history.rs`). Each handler authorizes the caller (`roles`), converts the
//! message to the service's input, runs the flow on a blocking thread and
//! maps [`ServiceError`] to a status code.

mod attestation;
mod history;
mod nodes;
pub mod policies;
mod tokens;

pub use self::history::{MAX_EXPORT_PAGE, MAX_HISTORY_LIMIT};

use std::sync::Arc;

use assay_proto::v1 as pb;
use tonic::{Request, Status};
use tracing::warn;

use crate::roles::{Caller, Role, Rpc};
use crate::service::{ServiceError, Verifier};

/// The gRPC services over one verifier.
#[derive(Clone)]
pub struct Api(pub Arc<Verifier>);

fn status(e: ServiceError) -> Status {
    let msg = e.to_string();
    match e {
        ServiceError::BadRequest(_) => Status::invalid_argument(msg),
        ServiceError::EnrollRefused(_)
        | ServiceError::EkChanged(_)
        | ServiceError::EkHeld { .. }
        | ServiceError::NotRegistered { .. }
        | ServiceError::RegisteredAs { .. }
        | ServiceError::RegistrationChanged(_)
        | ServiceError::NoEkCertificate
        | ServiceError::ActivationFailed
        | ServiceError::Token(_)
        | ServiceError::PolicyRefused(_) => Status::permission_denied(msg),
        ServiceError::EnrollmentUnknown(_) => Status::failed_precondition(msg),
        ServiceError::NotEnrolled(_) | ServiceError::UnknownNode(_) => Status::not_found(msg),
        ServiceError::InventoryConflict(_) | ServiceError::NodeIdTaken(_) => {
            Status::already_exists(msg)
        }
        ServiceError::Join(_) => Status::unavailable(msg),
        ServiceError::Exhausted(_) => Status::resource_exhausted(msg),
        ServiceError::Store(_) | ServiceError::Internal(_) => Status::internal(msg),
    }
}

/// [`crate::service::blocking`], answered as a gRPC status.
async fn blocking<T: Send + 'static>(
    v: &Arc<Verifier>,
    f: impl FnOnce(&Verifier) -> Result<T, ServiceError> + Send + 'static,
) -> Result<T, Status> {
    crate::service::blocking(v, f).await.map_err(status)
}

fn claim(c: &assay_core::verdict::Claim) -> pb::Claim {
    pb::Claim {
        id: c.id.clone(),
        passed: c.passed,
        expected: c.expected.clone(),
        actual: c.actual.clone(),
        location: c.location.clone(),
    }
}

/// Records an operator's state-changing action in the history (kind `admin`,
/// claim `admin.action`), durably, before the action is acknowledged.
async fn record_admin(
    v: &Arc<Verifier>,
    caller: &Caller,
    node_id: String,
    what: String,
) -> Result<(), Status> {
    let claim = assay_core::verdict::Claim::new(
        "admin.action",
        true,
        "an operator's request",
        format!("{what} (by {}, {})", caller.subject, caller.role),
        "Tokens.Revoke",
    );
    blocking(v, move |v| {
        Ok(v.append_event("admin", node_id, true, claim, String::new())
            .map(drop)?)
    })
    .await
}

impl Api {
    /// For the node-facing RPCs, after `authorize`: the node id is valid
    /// (before it is used as a key anywhere) and the rate limits admit the
    /// request. The caller's address, for the service.
    fn admit<T>(
        &self,
        req: &Request<T>,
        node_id: &str,
    ) -> Result<Option<std::net::IpAddr>, Status> {
        crate::service::validate_node_id(node_id).map_err(status)?;
        let source = req.remote_addr().map(|a| a.ip());
        self.0.rate_limits.check(source, node_id).map_err(|e| {
            crate::metrics::rate_limited();
            Status::resource_exhausted(e.0)
        })?;
        Ok(source)
    }

    /// The caller of `req`, if it may call `rpc` (as `node_id`, for nodes).
    /// With `tls.no_client_auth` every caller may call everything.
    fn authorize<T>(
        &self,
        req: &Request<T>,
        rpc: Rpc,
        node_id: Option<&str>,
    ) -> Result<Caller, Status> {
        if self.0.config.client_ca.is_none() {
            return Ok(Caller {
                role: Role::Operator,
                subject: "unauthenticated (tls.no_client_auth)".into(),
            });
        }
        let certs = req.peer_certs();
        let leaf = certs.as_ref().and_then(|c| c.first()).map(|c| c.as_ref());
        let caller = crate::roles::caller(leaf)?;
        crate::roles::authorize(&caller, rpc, node_id).inspect_err(|e| {
            warn!(caller = %caller.subject, role = %caller.role, ?rpc, reason = e.message(), "refused");
        })?;
        Ok(caller)
    }
}
