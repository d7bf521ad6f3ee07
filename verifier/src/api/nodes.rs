//! `Nodes`: Add, List, Show, Remove, Move (the inventory and enrolled nodes).

use assay_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::{blocking, Api};
use crate::roles::Rpc;
use crate::service::{EntryInput, NodeView};
use crate::store::{EkBinding, InventoryEntry};

/// Most nodes one List answers.
pub const MAX_LIST: usize = 1000;

fn entry(e: &InventoryEntry) -> pb::InventoryEntry {
    let (cert, public) = match e.binding {
        EkBinding::Certificate => (e.ek_sha256.clone(), String::new()),
        EkBinding::PublicArea => (String::new(), e.ek_sha256.clone()),
    };
    pb::InventoryEntry {
        node_id: e.node_id.clone(),
        ek_cert_sha256: cert,
        ek_public_sha256: public,
        ek_subject: e.ek_subject.clone(),
        labels: e.labels.clone().into_iter().collect(),
        added_unix: e.added_unix,
        added_by: e.added_by.clone(),
    }
}

fn info(v: NodeView) -> pb::NodeInfo {
    let n = v.enrolled.as_ref();
    pb::NodeInfo {
        node_id: v.node_id,
        registered: v.registration.is_some(),
        registration: v.registration.as_ref().map(entry),
        enrolled: n.is_some(),
        ek_sha256: n.map(|n| n.ek_cert_sha256.clone()).unwrap_or_default(),
        ak_name: n.map(|n| n.ak_name.clone()).unwrap_or_default(),
        activated_unix: n.map_or(0, |n| n.activated_unix),
        last_pass_unix: n.and_then(|n| n.last_pass_unix).unwrap_or(0),
        quarantined: v.quarantine.is_some(),
        quarantined_since_unix: v.quarantine.map_or(0, |q| q.since_unix),
        unauthenticated: v.unauthenticated.map(|a| pb::UnauthenticatedAttempts {
            count: a.count,
            first_unix: a.first_unix,
            last_unix: a.last_unix,
            sources: a
                .sources
                .into_iter()
                .map(|s| pb::AttemptSource {
                    address: s.address,
                    count: s.count,
                    last_unix: s.last_unix,
                })
                .collect(),
            last_failed: a.last_failed,
        }),
    }
}

#[tonic::async_trait]
impl pb::nodes_server::Nodes for Api {
    async fn add(
        &self,
        req: Request<pb::AddNodesRequest>,
    ) -> Result<Response<pb::AddNodesResponse>, Status> {
        let caller = self.authorize(&req, Rpc::ChangeNodes, None)?;
        let r = req.into_inner();
        let by = format!("{}, {}", caller.subject, caller.role);
        let inputs: Vec<EntryInput> = r
            .entries
            .into_iter()
            .map(|e| EntryInput {
                node_id: e.node_id,
                ek_cert_sha256: e.ek_cert_sha256,
                ek_public_sha256: e.ek_public_sha256,
                ek_subject: e.ek_subject,
                labels: e.labels.into_iter().collect(),
            })
            .collect();
        let source = r.source;
        let subject = caller.subject;
        let added = blocking(&self.0, move |v| {
            v.add_inventory(inputs, &subject, &by, &source)
        })
        .await?;
        Ok(Response::new(pb::AddNodesResponse {
            added: added.added as u32,
            updated: added.updated as u32,
            unchanged: added.unchanged as u32,
        }))
    }

    async fn list(
        &self,
        req: Request<pb::ListNodesRequest>,
    ) -> Result<Response<pb::ListNodesResponse>, Status> {
        self.authorize(&req, Rpc::ReadNodes, None)?;
        let r = req.into_inner();
        let limit = match r.limit {
            0 => 100,
            n => (n as usize).min(MAX_LIST),
        };
        let views = blocking(&self.0, move |v| v.list_nodes(&r.after, limit)).await?;
        Ok(Response::new(pb::ListNodesResponse {
            nodes: views.into_iter().map(info).collect(),
            enrollment_mode: self.0.config.enrollment_mode.as_str().into(),
        }))
    }

    async fn show(
        &self,
        req: Request<pb::ShowNodeRequest>,
    ) -> Result<Response<pb::NodeInfo>, Status> {
        self.authorize(&req, Rpc::ReadNodes, None)?;
        let id = req.into_inner().node_id;
        let view = blocking(&self.0, move |v| v.show_node(&id)).await?;
        Ok(Response::new(info(view)))
    }

    async fn remove(
        &self,
        req: Request<pb::RemoveNodeRequest>,
    ) -> Result<Response<pb::RemoveNodeResponse>, Status> {
        let caller = self.authorize(&req, Rpc::ChangeNodes, None)?;
        let id = req.into_inner().node_id;
        let by = format!("{}, {}", caller.subject, caller.role);
        let removed = blocking(&self.0, move |v| v.remove_node(&id, &by)).await?;
        Ok(Response::new(pb::RemoveNodeResponse {
            was_registered: removed.was_registered,
            was_enrolled: removed.was_enrolled,
            tokens_revoked: removed.tokens_revoked as u32,
        }))
    }

    async fn r#move(
        &self,
        req: Request<pb::MoveNodeRequest>,
    ) -> Result<Response<pb::MoveNodeResponse>, Status> {
        let caller = self.authorize(&req, Rpc::ChangeNodes, None)?;
        let r = req.into_inner();
        let by = format!("{}, {}", caller.subject, caller.role);
        let (registered, enrolled) =
            blocking(&self.0, move |v| v.move_node(&r.from, &r.to, &by)).await?;
        Ok(Response::new(pb::MoveNodeResponse {
            registered,
            enrolled,
        }))
    }
}
