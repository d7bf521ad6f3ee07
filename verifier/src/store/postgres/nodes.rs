//! Nodes, pending enrollments and quarantines in PostgreSQL.

use assay_core::tpm::attest::ClockInfo;

use super::rows::{json_text, node_row};
use super::{pg, PgStore};
use crate::store::{
    batch_conflicts, from_json, plan_inventory_batch, InventoryAdded, InventoryConflicts,
    InventoryEntry, Moved, NodeRecord, NodeStore, PendingEnrollment, Quarantine, StoreError,
    UnauthenticatedAttempts,
};

/// Serializes inventory changes and renames across replicas (transaction
/// scoped advisory lock): they are rare, and each reads before it writes.
const LOCK_INVENTORY: i64 = 0x6173_7361_7905;

fn inventory_row(r: &tokio_postgres::Row) -> Result<InventoryEntry, StoreError> {
    let id: &str = r.get(0);
    from_json("inventory", id.as_bytes(), r.get::<_, &str>(1).as_bytes())
}

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
        let chain = node.ek_chain.join(",");
        let clock = node.last_clock.as_ref().map(json_text);
        let ima = node.ima_state.as_ref().map(json_text);
        self.run(async {
            self.execute(
                "INSERT INTO nodes (node_id, ek_cert_sha256, ek_public, ak_public, ak_name, \
                 activated_unix, last_clock, last_pass_unix, ek_certificate, ek_chain, ima_state) \
                 VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11) \
                 ON CONFLICT (node_id) DO UPDATE SET ek_cert_sha256 = EXCLUDED.ek_cert_sha256, \
                 ek_public = EXCLUDED.ek_public, ak_public = EXCLUDED.ak_public, \
                 ak_name = EXCLUDED.ak_name, activated_unix = EXCLUDED.activated_unix, \
                 last_clock = EXCLUDED.last_clock, last_pass_unix = EXCLUDED.last_pass_unix, \
                 ek_certificate = EXCLUDED.ek_certificate, ek_chain = EXCLUDED.ek_chain, \
                 ima_state = EXCLUDED.ima_state",
                &[
                    &node.node_id,
                    &node.ek_cert_sha256,
                    &node.ek_public,
                    &node.ak_public,
                    &node.ak_name,
                    &node.activated_unix,
                    &clock,
                    &node.last_pass_unix,
                    &node.ek_certificate,
                    &chain,
                    &ima,
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

    fn add_inventory(
        &self,
        entries: &[InventoryEntry],
    ) -> Result<Result<InventoryAdded, InventoryConflicts>, StoreError> {
        let conflicts = batch_conflicts(entries);
        if !conflicts.is_empty() {
            return Ok(Err(InventoryConflicts(conflicts)));
        }
        let ids: Vec<&str> = entries.iter().map(|e| e.node_id.as_str()).collect();
        let eks: Vec<&str> = entries.iter().map(|e| e.ek_sha256.as_str()).collect();
        self.run(async {
            let mut c = self.client().await?;
            let tx = c.transaction().await.map_err(pg)?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_INVENTORY])
                .await
                .map_err(pg)?;
            let rows = tx
                .query(
                    "SELECT node_id, rec, ek_sha256 FROM inventory \
                     WHERE node_id = ANY($1) OR ek_sha256 = ANY($2)",
                    &[&ids, &eks],
                )
                .await
                .map_err(pg)?;
            let mut by_node = std::collections::HashMap::new();
            let mut by_ek = std::collections::HashMap::new();
            for r in &rows {
                let e = inventory_row(r)?;
                by_ek.insert(e.ek_sha256.clone(), e.clone());
                by_node.insert(e.node_id.clone(), e);
            }
            let planned = plan_inventory_batch(entries, |e| {
                Ok::<_, StoreError>((
                    by_node.get(&e.node_id).cloned(),
                    by_ek.get(&e.ek_sha256).cloned(),
                ))
            })?;
            let (added, writes) = match planned {
                Ok(p) => p,
                Err(c) => return Ok(Err(c)),
            };
            let (w_ids, w_eks, w_recs): (Vec<&str>, Vec<&str>, Vec<String>) = writes
                .iter()
                .map(|e| (e.node_id.as_str(), e.ek_sha256.as_str(), json_text(*e)))
                .fold((vec![], vec![], vec![]), |mut acc, (a, b, c)| {
                    acc.0.push(a);
                    acc.1.push(b);
                    acc.2.push(c);
                    acc
                });
            tx.execute(
                "INSERT INTO inventory (node_id, ek_sha256, rec) \
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[]) \
                 ON CONFLICT (node_id) DO UPDATE SET rec = EXCLUDED.rec",
                &[&w_ids, &w_eks, &w_recs],
            )
            .await
            .map_err(pg)?;
            tx.commit().await.map_err(pg)?;
            Ok(Ok(added))
        })
    }

    fn inventory(&self, node_id: &str) -> Result<Option<InventoryEntry>, StoreError> {
        self.first(
            "SELECT node_id, rec FROM inventory WHERE node_id = $1",
            &[&node_id],
            inventory_row,
        )
    }

    fn inventory_by_ek(&self, ek_sha256: &str) -> Result<Option<InventoryEntry>, StoreError> {
        self.first(
            "SELECT node_id, rec FROM inventory WHERE ek_sha256 = $1",
            &[&ek_sha256],
            inventory_row,
        )
    }

    fn list_inventory(&self, after: &str, limit: usize) -> Result<Vec<InventoryEntry>, StoreError> {
        let limit = limit as i64;
        self.run(async {
            let rows = self
                .query(
                    "SELECT node_id, rec FROM inventory WHERE node_id > $1 \
                     ORDER BY node_id LIMIT $2",
                    &[&after, &limit],
                )
                .await?;
            rows.iter().map(inventory_row).collect()
        })
    }

    fn list_nodes(&self, after: &str, limit: usize) -> Result<Vec<NodeRecord>, StoreError> {
        let limit = limit as i64;
        self.run(async {
            let rows = self
                .query(
                    "SELECT * FROM nodes WHERE node_id > $1 ORDER BY node_id LIMIT $2",
                    &[&after, &limit],
                )
                .await?;
            rows.iter().map(node_row).collect()
        })
    }

    fn remove_inventory(&self, node_id: &str) -> Result<bool, StoreError> {
        self.run(async {
            self.execute("DELETE FROM inventory WHERE node_id = $1", &[&node_id])
                .await
                .map(|n| n > 0)
        })
    }

    fn move_node(&self, from: &str, to: &str) -> Result<Moved, StoreError> {
        self.run(async {
            let mut c = self.client().await?;
            let tx = c.transaction().await.map_err(pg)?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_INVENTORY])
                .await
                .map_err(pg)?;
            let taken = tx
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM nodes WHERE node_id = $1) \
                     OR EXISTS (SELECT 1 FROM inventory WHERE node_id = $1)",
                    &[&to],
                )
                .await
                .map_err(pg)?
                .get::<_, bool>(0);
            if taken {
                return Ok(Moved::Taken);
            }
            let enrolled = tx
                .execute(
                    "UPDATE nodes SET node_id = $2 WHERE node_id = $1",
                    &[&from, &to],
                )
                .await
                .map_err(pg)?
                > 0;
            let rec = tx
                .query_opt("SELECT rec FROM inventory WHERE node_id = $1", &[&from])
                .await
                .map_err(pg)?;
            let registered = match rec {
                Some(r) => {
                    let mut e: InventoryEntry =
                        from_json("inventory", from.as_bytes(), r.get::<_, &str>(0).as_bytes())?;
                    e.node_id = to.into();
                    tx.execute(
                        "UPDATE inventory SET node_id = $2, rec = $3 WHERE node_id = $1",
                        &[&from, &to, &json_text(&e)],
                    )
                    .await
                    .map_err(pg)?;
                    true
                }
                None => false,
            };
            if !enrolled && !registered {
                return Ok(Moved::Unknown);
            }
            tx.execute(
                "UPDATE quarantined SET node_id = $2 WHERE node_id = $1",
                &[&from, &to],
            )
            .await
            .map_err(pg)?;
            tx.commit().await.map_err(pg)?;
            Ok(Moved::Done {
                enrolled,
                registered,
            })
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

    /// Asked every second by the join upkeep: filtered in SQL.
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

    fn quarantined_count(&self) -> Result<usize, StoreError> {
        self.run(async {
            let rows = self.query("SELECT count(*) FROM quarantined", &[]).await?;
            Ok(rows.first().map_or(0, |r| r.get::<_, i64>(0)) as usize)
        })
    }

    fn quarantines(&self) -> Result<Vec<(String, Quarantine)>, StoreError> {
        self.run(async {
            let rows = self
                .query(
                    "SELECT node_id, since_unix, applied FROM quarantined ORDER BY node_id",
                    &[],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| {
                    (
                        r.get(0),
                        Quarantine {
                            since_unix: r.get(1),
                            applied: r.get(2),
                        },
                    )
                })
                .collect())
        })
    }

    fn add_attempts(
        &self,
        node_id: &str,
        seen: &UnauthenticatedAttempts,
    ) -> Result<(), StoreError> {
        self.run(async {
            let mut c = self.client().await?;
            let tx = c.transaction().await.map_err(pg)?;
            let old = tx
                .query_opt(
                    "SELECT rec FROM unauthenticated_attempts WHERE node_id = $1 FOR UPDATE",
                    &[&node_id],
                )
                .await
                .map_err(pg)?;
            // Counters: a record that no longer reads starts over.
            let mut rec: UnauthenticatedAttempts = old
                .and_then(|r| serde_json::from_str(r.get::<_, &str>(0)).ok())
                .unwrap_or_default();
            rec.merge(seen);
            tx.execute(
                "INSERT INTO unauthenticated_attempts (node_id, rec) VALUES ($1, $2) \
                 ON CONFLICT (node_id) DO UPDATE SET rec = EXCLUDED.rec",
                &[&node_id, &json_text(&rec)],
            )
            .await
            .map_err(pg)?;
            tx.commit().await.map_err(pg)
        })
    }

    fn attempts(&self, node_id: &str) -> Result<Option<UnauthenticatedAttempts>, StoreError> {
        self.first(
            "SELECT rec FROM unauthenticated_attempts WHERE node_id = $1",
            &[&node_id],
            |r| {
                from_json(
                    "unauthenticated_attempts",
                    node_id.as_bytes(),
                    r.get::<_, &str>(0).as_bytes(),
                )
            },
        )
    }
}
