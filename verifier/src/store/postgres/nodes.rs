//! Nodes, pending enrollments and quarantines in PostgreSQL.

use assay_core::tpm::attest::ClockInfo;

use super::rows::{json_text, node_row};
use super::{pg, PgStore};
use crate::store::{from_json, NodeRecord, NodeStore, PendingEnrollment, Quarantine, StoreError};

impl NodeStore for PgStore {
    fn node(&self, node_id: &str) -> Result<Option<NodeRecord>, StoreError> {
        self.first(
            "SELECT * FROM nodes WHERE node_id = $1",
            &[&node_id],
            node_row,
        )
    }

    fn node_by_ek(&self, ek_cert_sha256: &str) -> Result<Option<String>, StoreError> {
        self.first(
            "SELECT node_id FROM nodes WHERE ek_cert_sha256 = $1 ORDER BY node_id LIMIT 1",
            &[&ek_cert_sha256],
            |row| Ok(row.get(0)),
        )
    }

    fn put_node(&self, node: &NodeRecord) -> Result<(), StoreError> {
        let clock = node.last_clock.as_ref().map(json_text);
        self.run(async {
            self.execute(
                "INSERT INTO nodes (node_id, ek_cert_sha256, ek_public, ak_public, ak_name, \
                 activated_unix, last_clock, last_pass_unix) VALUES ($1,$2,$3,$4,$5,$6,$7,$8) \
                 ON CONFLICT (node_id) DO UPDATE SET ek_cert_sha256 = EXCLUDED.ek_cert_sha256, \
                 ek_public = EXCLUDED.ek_public, ak_public = EXCLUDED.ak_public, \
                 ak_name = EXCLUDED.ak_name, activated_unix = EXCLUDED.activated_unix, \
                 last_clock = EXCLUDED.last_clock, last_pass_unix = EXCLUDED.last_pass_unix",
                &[
                    &node.node_id,
                    &node.ek_cert_sha256,
                    &node.ek_public,
                    &node.ak_public,
                    &node.ak_name,
                    &node.activated_unix,
                    &clock,
                    &node.last_pass_unix,
                ],
            )
            .await
            .map(drop)
        })
    }

    fn remove_node(&self, node_id: &str) -> Result<bool, StoreError> {
        self.run(async {
            let mut c = self.client().await?;
            let tx = c.transaction().await.map_err(pg)?;
            let n = tx
                .execute("DELETE FROM nodes WHERE node_id = $1", &[&node_id])
                .await
                .map_err(pg)?;
            tx.commit().await.map_err(pg)?;
            Ok(n > 0)
        })
    }

    fn set_last_pass(&self, node_id: &str, now_unix: i64) -> Result<(), StoreError> {
        self.run(async {
            self.execute(
                "UPDATE nodes SET last_pass_unix = $2 WHERE node_id = $1",
                &[&node_id, &now_unix],
            )
            .await
            .map(drop)
        })
    }

    fn nodes_passed_before(&self, cutoff_unix: i64) -> Result<Vec<(String, i64)>, StoreError> {
        self.run(async {
            let rows = self
                .query(
                    "SELECT node_id, last_pass_unix FROM nodes WHERE last_pass_unix < $1 \
                     ORDER BY node_id",
                    &[&cutoff_unix],
                )
                .await?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }

    fn set_last_clock(&self, node_id: &str, clock: ClockInfo) -> Result<(), StoreError> {
        let clock = json_text(&clock);
        self.run(async {
            self.execute(
                "UPDATE nodes SET last_clock = $2 WHERE node_id = $1",
                &[&node_id, &clock],
            )
            .await
            .map(drop)
        })
    }

    fn put_enrollment(&self, id: &str, e: &PendingEnrollment) -> Result<(), StoreError> {
        let rec = json_text(e);
        self.run(async {
            self.execute(
                "INSERT INTO enrollments (id, expires_unix, rec) VALUES ($1, $2, $3) \
                 ON CONFLICT (id) DO UPDATE SET expires_unix = EXCLUDED.expires_unix, \
                 rec = EXCLUDED.rec",
                &[&id, &e.expires_unix, &rec],
            )
            .await
            .map(drop)
        })
    }

    fn take_enrollment(&self, id: &str) -> Result<Option<PendingEnrollment>, StoreError> {
        self.first(
            "DELETE FROM enrollments WHERE id = $1 RETURNING rec",
            &[&id],
            |r| from_json("enrollments", id.as_bytes(), r.get::<_, &str>(0).as_bytes()),
        )
    }

    fn set_quarantine(&self, node_id: &str, q: Option<&Quarantine>) -> Result<(), StoreError> {
        self.run(async {
            match q {
                Some(q) => {
                    self.execute(
                        "INSERT INTO quarantined (node_id, since_unix, applied) VALUES ($1,$2,$3) \
                         ON CONFLICT (node_id) DO UPDATE SET since_unix = EXCLUDED.since_unix, \
                         applied = EXCLUDED.applied",
                        &[&node_id, &q.since_unix, &q.applied],
                    )
                    .await
                }
                None => {
                    self.execute("DELETE FROM quarantined WHERE node_id = $1", &[&node_id])
                        .await
                }
            }
            .map(drop)
        })
    }

    fn quarantine(&self, node_id: &str) -> Result<Option<Quarantine>, StoreError> {
        self.first(
            "SELECT since_unix, applied FROM quarantined WHERE node_id = $1",
            &[&node_id],
            |r| {
                Ok(Quarantine {
                    since_unix: r.get(0),
                    applied: r.get(1),
                })
            },
        )
    }

    fn unapplied_quarantines(&self) -> Result<Vec<String>, StoreError> {
        self.run(async {
            let rows = self
                .query(
                    "SELECT node_id FROM quarantined WHERE NOT applied ORDER BY node_id",
                    &[],
                )
                .await?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }
}
