//! Who may call what. Callers are identified by their TLS client certificate,
//! issued by the CA in `tls.client_ca` (rustls verifies chain and validity);
//! the role is a SAN URI in it:
//!
//! | SAN URI                   | role         | may call                                   |
//! |---------------------------|--------------|--------------------------------------------|
//! | (no client certificate)   | node         | Enroll, Activate, Challenge, Attest, Jwks  |
//! | `urn:assay:node:<id>`     | node `<id>`  | the same, only for node `<id>`             |
//! | `urn:assay:role:operator` | operator     | Redeem, Jwks, History, Export, Tokens.List/Revoke, Nodes (all), Policies (all) |
//! | `urn:assay:role:auditor`  | auditor      | Jwks, History, Export, Tokens.List, Nodes.List/Show, Policies.List/Show (read-only) |
//! | `urn:assay:role:orchestrator` | orchestrator | Redeem, Jwks                           |
//!
//! A node needs no certificate: its identity is its TPM (the EK certificate
//! chain and the activated AK bind the node id), so what it can do is already
//! limited to itself. Every other role needs a certificate carrying exactly
//! one `urn:assay:` URI. Operator actions that change state are recorded in
//! the history with the certificate's subject.

use std::fmt;

use tonic::Status;
use x509_parser::prelude::*;

/// The RPCs, for the permission table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rpc {
    Enroll,
    Activate,
    Challenge,
    Attest,
    Redeem,
    Jwks,
    ListTokens,
    RevokeTokens,
    History,
    Export,
    /// Nodes.List and Nodes.Show.
    ReadNodes,
    /// Nodes.Add, Nodes.Remove and Nodes.Move.
    ChangeNodes,
    /// Policies.List and Policies.Show.
    ReadPolicies,
    /// Policies.Apply, Policies.Retire and Policies.Assign.
    ChangePolicies,
    /// Policies.Test (reads every affected node's kept evidence).
    TestPolicy,
}

impl Rpc {
    pub const ALL: [Rpc; 15] = [
        Rpc::Enroll,
        Rpc::Activate,
        Rpc::Challenge,
        Rpc::Attest,
        Rpc::Redeem,
        Rpc::Jwks,
        Rpc::ListTokens,
        Rpc::RevokeTokens,
        Rpc::History,
        Rpc::Export,
        Rpc::ReadNodes,
        Rpc::ChangeNodes,
        Rpc::ReadPolicies,
        Rpc::ChangePolicies,
        Rpc::TestPolicy,
    ];
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// A node; `Some(id)` when it presented a node certificate.
    Node(Option<String>),
    Operator,
    Auditor,
    Orchestrator,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Role::Node(None) => write!(f, "node"),
            Role::Node(Some(id)) => write!(f, "node {id}"),
            Role::Operator => write!(f, "operator"),
            Role::Auditor => write!(f, "auditor"),
            Role::Orchestrator => write!(f, "orchestrator"),
        }
    }
}

/// The authenticated caller of one request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub role: Role,
    /// The certificate's subject (for the history), or `anonymous`.
    pub subject: String,
}

/// Whether `role` may call `rpc` at all (node-id binding is checked apart).
pub fn allowed(role: &Role, rpc: Rpc) -> bool {
    use Rpc::*;
    match role {
        Role::Node(_) => matches!(rpc, Enroll | Activate | Challenge | Attest | Jwks),
        Role::Operator => matches!(
            rpc,
            Redeem
                | Jwks
                | ListTokens
                | RevokeTokens
                | History
                | Export
                | ReadNodes
                | ChangeNodes
                | ReadPolicies
                | ChangePolicies
                | TestPolicy
        ),
        Role::Auditor => matches!(
            rpc,
            Jwks | ListTokens | History | Export | ReadNodes | ReadPolicies
        ),
        Role::Orchestrator => matches!(rpc, Redeem | Jwks),
    }
}

const ROLE_PREFIX: &str = "urn:assay:role:";
const NODE_PREFIX: &str = "urn:assay:node:";

/// The caller a (verified) client certificate chain names; no certificate is
/// an anonymous node.
pub fn caller(leaf_der: Option<&[u8]>) -> Result<Caller, Status> {
    let Some(der) = leaf_der else {
        return Ok(Caller {
            role: Role::Node(None),
            subject: "anonymous".into(),
        });
    };
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| Status::unauthenticated(format!("client certificate: {e}")))?;
    let subject = cert.subject().to_string();
    let mut uris = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let GeneralName::URI(u) = n {
                if u.starts_with("urn:assay:") {
                    uris.push(u.to_string());
                }
            }
        }
    }
    let [uri] = uris.as_slice() else {
        return Err(Status::permission_denied(format!(
            "client certificate `{subject}` must carry exactly one urn:assay: SAN URI (has {})",
            uris.len()
        )));
    };
    let role = if let Some(r) = uri.strip_prefix(ROLE_PREFIX) {
        match r {
            "operator" => Role::Operator,
            "auditor" => Role::Auditor,
            "orchestrator" => Role::Orchestrator,
            other => {
                return Err(Status::permission_denied(format!(
                    "client certificate `{subject}`: unknown role `{other}`"
                )))
            }
        }
    } else if let Some(id) = uri.strip_prefix(NODE_PREFIX).filter(|id| !id.is_empty()) {
        Role::Node(Some(id.to_string()))
    } else {
        return Err(Status::permission_denied(format!(
            "client certificate `{subject}`: `{uri}` is not an Assay role"
        )));
    };
    Ok(Caller { role, subject })
}

/// Checks `caller` may call `rpc`, and for a node certificate that it acts
/// as the node it names.
pub fn authorize(caller: &Caller, rpc: Rpc, node_id: Option<&str>) -> Result<(), Status> {
    if !allowed(&caller.role, rpc) {
        let may: Vec<String> = [
            Role::Operator,
            Role::Auditor,
            Role::Orchestrator,
            Role::Node(None),
        ]
        .iter()
        .filter(|r| allowed(r, rpc))
        .map(Role::to_string)
        .collect();
        return Err(Status::permission_denied(format!(
            "{} (`{}`) may not call {rpc:?}; it takes a client certificate with the role {} \
             (`assay-verifier client-cert --role ...`)",
            caller.role,
            caller.subject,
            may.join(" or ")
        )));
    }
    if let (Role::Node(Some(own)), Some(asked)) = (&caller.role, node_id) {
        if own != asked {
            return Err(Status::permission_denied(format!(
                "node {own} may only act as itself, not as {asked}"
            )));
        }
    }
    Ok(())
}

/// The SAN URI for a role certificate (`assay-verifier client-cert`).
pub fn san_uri(role: &str, node: Option<&str>) -> Result<String, String> {
    match (role, node) {
        ("node", Some(n)) if !n.is_empty() => Ok(format!("{NODE_PREFIX}{n}")),
        ("node", _) => Err("a node certificate names its node: --node ID".into()),
        ("operator" | "auditor" | "orchestrator", None) => Ok(format!("{ROLE_PREFIX}{role}")),
        ("operator" | "auditor" | "orchestrator", Some(_)) => {
            Err("--node is only for --role node".into())
        }
        (other, _) => Err(format!(
            "unknown role `{other}`: operator, auditor, orchestrator or node"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_names_the_roles_that_may_call() {
        let anon = Caller {
            role: Role::Node(None),
            subject: "anonymous".into(),
        };
        let e = authorize(&anon, Rpc::History, None).unwrap_err();
        assert!(
            e.message().contains("may not call History")
                && e.message().contains("the role operator or auditor"),
            "{}",
            e.message()
        );
        let auditor = Caller {
            role: Role::Auditor,
            subject: "CN=alice".into(),
        };
        let e = authorize(&auditor, Rpc::Redeem, None).unwrap_err();
        assert!(
            e.message().contains("the role operator or orchestrator"),
            "{}",
            e.message()
        );
    }

    #[test]
    fn the_permission_table_is_least_privilege() {
        use Rpc::*;
        let may = |r: &Role| -> Vec<Rpc> {
            Rpc::ALL
                .iter()
                .copied()
                .filter(|x| allowed(r, *x))
                .collect()
        };
        assert_eq!(
            may(&Role::Node(None)),
            [Enroll, Activate, Challenge, Attest, Jwks]
        );
        assert_eq!(
            may(&Role::Operator),
            [
                Redeem,
                Jwks,
                ListTokens,
                RevokeTokens,
                History,
                Export,
                ReadNodes,
                ChangeNodes,
                ReadPolicies,
                ChangePolicies,
                TestPolicy
            ]
        );
        assert_eq!(
            may(&Role::Auditor),
            [Jwks, ListTokens, History, Export, ReadNodes, ReadPolicies]
        );
        assert_eq!(may(&Role::Orchestrator), [Redeem, Jwks]);
    }

    #[test]
    fn a_node_certificate_acts_only_as_its_node() {
        let c = Caller {
            role: Role::Node(Some("n1".into())),
            subject: "CN=n1".into(),
        };
        assert!(authorize(&c, Rpc::Attest, Some("n1")).is_ok());
        let e = authorize(&c, Rpc::Attest, Some("n2")).unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        assert!(e.message().contains("only act as itself"));
        let anon = caller(None).unwrap();
        assert!(authorize(&anon, Rpc::Attest, Some("n2")).is_ok());
        assert!(authorize(&anon, Rpc::History, None).is_err());
    }

    fn cert_with(uris: &[&str]) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "alice");
        p.subject_alt_names = uris
            .iter()
            .map(|u| rcgen::SanType::URI((*u).try_into().unwrap()))
            .collect();
        p.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn roles_come_from_exactly_one_assay_san_uri() {
        let c = caller(Some(&cert_with(&["urn:assay:role:auditor"]))).unwrap();
        assert_eq!(c.role, Role::Auditor);
        assert_eq!(c.subject, "CN=alice");
        let c = caller(Some(&cert_with(&["https://x", "urn:assay:node:n-7"]))).unwrap();
        assert_eq!(c.role, Role::Node(Some("n-7".into())));
        for (uris, says) in [
            (vec![], "exactly one"),
            (
                vec!["urn:assay:role:auditor", "urn:assay:role:operator"],
                "exactly one",
            ),
            (vec!["urn:assay:role:root"], "unknown role"),
            (vec!["urn:assay:node:"], "not an Assay role"),
            (vec!["urn:assay:admin"], "not an Assay role"),
        ] {
            let e = caller(Some(&cert_with(&uris))).unwrap_err();
            assert_eq!(e.code(), tonic::Code::PermissionDenied);
            assert!(e.message().contains(says), "{uris:?}: {}", e.message());
        }
        assert_eq!(
            caller(Some(b"junk")).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
    }

    #[test]
    fn role_certificates_name_known_roles_only() {
        assert_eq!(san_uri("auditor", None).unwrap(), "urn:assay:role:auditor");
        assert_eq!(san_uri("node", Some("n1")).unwrap(), "urn:assay:node:n1");
        assert!(san_uri("node", None).is_err());
        assert!(san_uri("root", None).is_err());
        assert!(san_uri("auditor", Some("n1")).is_err());
    }
}
