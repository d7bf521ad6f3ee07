//! `Policies`: Apply, List, Show, Retire, Assign, Test (named, versioned
//! policies; see `service::policies`).

use assay_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::{blocking, claim, Api};
use crate::roles::Rpc;
use crate::service::policies::validate_policy_name;
use crate::service::{ApplyInput, ServiceError};
use crate::store::{PolicyStatus, PolicyVersion};

pub fn version_info(v: &PolicyVersion) -> pb::PolicyVersionInfo {
    pb::PolicyVersionInfo {
        name: v.name.clone(),
        version: v.version,
        digest: v.digest.clone(),
        applied_unix: v.applied_unix,
        subject: v.subject.clone(),
        reason: v.reason.clone(),
        signature: v.signature.clone().unwrap_or_default(),
        status: v.status.as_str().into(),
        rollback_of: v.rollback_of.unwrap_or(0),
        signed_by: v.signed_by.clone().unwrap_or_default(),
    }
}

fn some(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

#[tonic::async_trait]
impl pb::policies_server::Policies for Api {
    async fn apply(
        &self,
        req: Request<pb::ApplyPolicyRequest>,
    ) -> Result<Response<pb::ApplyPolicyResponse>, Status> {
        let caller = self.authorize(&req, Rpc::ChangePolicies, None)?;
        let r = req.into_inner();
        let input = ApplyInput {
            name: r.name,
            text: r.text,
            reason: r.reason,
            signature: some(&r.signature),
            alongside: r.alongside,
            rollback_to: (r.rollback_to != 0).then_some(r.rollback_to),
        };
        let subject = format!("{} ({})", caller.subject, caller.role);
        let out = blocking(&self.0, move |v| v.apply_policy(input, &subject)).await?;
        Ok(Response::new(pb::ApplyPolicyResponse {
            version: Some(version_info(&out.applied.version)),
            previous: out.applied.previous.as_ref().map(version_info),
            superseded: out.applied.superseded.iter().map(version_info).collect(),
            signed_by: out.signed_by.unwrap_or_default(),
            history_seq: out.history_seq,
        }))
    }

    async fn list(
        &self,
        req: Request<pb::ListPoliciesRequest>,
    ) -> Result<Response<pb::ListPoliciesResponse>, Status> {
        self.authorize(&req, Rpc::ReadPolicies, None)?;
        let only = some(&req.get_ref().name);
        let (versions, assignments) = blocking(&self.0, move |v| {
            let names = match only {
                Some(n) => {
                    validate_policy_name(&n)?;
                    vec![n]
                }
                None => v.store.policy_names()?,
            };
            let mut versions = Vec::new();
            for n in &names {
                versions.extend(v.store.policy_versions(n)?);
            }
            Ok((versions, v.store.policy_assignments()?))
        })
        .await?;
        Ok(Response::new(pb::ListPoliciesResponse {
            versions: versions.iter().map(version_info).collect(),
            assignments: assignments
                .into_iter()
                .map(|(group, name)| pb::PolicyAssignment { group, name })
                .collect(),
            groups: self
                .0
                .config
                .join_groups
                .iter()
                .map(|g| g.name.clone())
                .collect(),
        }))
    }

    async fn show(
        &self,
        req: Request<pb::ShowPolicyRequest>,
    ) -> Result<Response<pb::ShowPolicyResponse>, Status> {
        self.authorize(&req, Rpc::ReadPolicies, None)?;
        let r = req.into_inner();
        let (version, text) = blocking(&self.0, move |v| {
            validate_policy_name(&r.name)?;
            let versions = v.store.policy_versions(&r.name)?;
            if versions.is_empty() {
                return Err(ServiceError::BadRequest(format!(
                    "no policy `{}` (see `policy list`)",
                    r.name
                )));
            }
            let found = match r.version {
                0 => versions
                    .into_iter()
                    .find(|x| x.status == PolicyStatus::Current),
                n => versions.into_iter().find(|x| x.version == n),
            }
            .ok_or_else(|| {
                ServiceError::BadRequest(format!(
                    "policy `{}` has no version {} (see `policy list`)",
                    r.name, r.version
                ))
            })?;
            let text = v.store.policy_text(&found.digest)?.ok_or_else(|| {
                ServiceError::Internal(format!("the text of {} is not in the store", found.digest))
            })?;
            Ok((found, text))
        })
        .await?;
        Ok(Response::new(pb::ShowPolicyResponse {
            version: Some(version_info(&version)),
            text,
        }))
    }

    async fn retire(
        &self,
        req: Request<pb::RetirePolicyRequest>,
    ) -> Result<Response<pb::RetirePolicyResponse>, Status> {
        let caller = self.authorize(&req, Rpc::ChangePolicies, None)?;
        let r = req.into_inner();
        let subject = format!("{} ({})", caller.subject, caller.role);
        let (retired, promoted, seq) = blocking(&self.0, move |v| {
            v.retire_policy(&r.name, r.version, &r.reason, &subject)
        })
        .await?;
        Ok(Response::new(pb::RetirePolicyResponse {
            retired: Some(version_info(&retired)),
            promoted: promoted.as_ref().map(version_info),
            history_seq: seq,
        }))
    }

    async fn assign(
        &self,
        req: Request<pb::AssignPolicyRequest>,
    ) -> Result<Response<pb::AssignPolicyResponse>, Status> {
        let caller = self.authorize(&req, Rpc::ChangePolicies, None)?;
        let r = req.into_inner();
        let subject = format!("{} ({})", caller.subject, caller.role);
        let seq = blocking(&self.0, move |v| {
            v.assign_policy(&r.group, &r.name, &r.reason, &subject)
        })
        .await?;
        Ok(Response::new(pb::AssignPolicyResponse { history_seq: seq }))
    }

    async fn test(
        &self,
        req: Request<pb::TestPolicyRequest>,
    ) -> Result<Response<pb::TestPolicyResponse>, Status> {
        self.authorize(&req, Rpc::TestPolicy, None)?;
        let r = req.into_inner();
        let (nodes, digest, current) = blocking(&self.0, move |v| {
            let (digest, nodes) = v.dry_run(&r.name, &r.text)?;
            let current = v.policy_set().current(&r.name).map(|a| a.version.clone());
            Ok((nodes, digest, current))
        })
        .await?;
        Ok(Response::new(pb::TestPolicyResponse {
            nodes: nodes
                .into_iter()
                .map(|n| pb::DryRunNode {
                    outcome: n.outcome.as_str().into(),
                    note: match &n.outcome {
                        crate::service::DryOutcome::Undetermined(why) => why.clone(),
                        _ => String::new(),
                    },
                    node_id: n.node_id,
                    seq: n.seq,
                    time_unix: n.time_unix,
                    recorded_passed: n.recorded_passed,
                    failed_claims: n.failed.iter().map(claim).collect(),
                })
                .collect(),
            digest,
            current: current.as_ref().map(version_info),
        }))
    }
}
