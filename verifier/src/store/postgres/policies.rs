//! Named, versioned policies ([`PolicyStore`]) in PostgreSQL. Every change is
//! one transaction that first locks the `policy_epoch` row: changes from any
//! number of replicas are serialized (each apply reads the name's versions
//! after the previous change committed, so version numbers never collide and
//! no apply is lost) and the epoch moves with each.

use tokio_postgres::Transaction;

use super::rows::json_text;
use super::{i64_of, pg, PgStore};
use crate::store::{
    applied_outcome, changed_versions, from_json, plan_apply, plan_retire, retired_outcome,
    Applied, NewPolicyVersion, PolicyStatus, PolicyStore, PolicyVersion, Retired, StoreError,
};

fn read_versions(rows: &[tokio_postgres::Row]) -> Result<Vec<PolicyVersion>, StoreError> {
    rows.iter()
        .map(|r| {
            let name: &str = r.get(0);
            let rec: &str = r.get(1);
            from_json("policy_versions", name.as_bytes(), rec.as_bytes())
        })
        .collect()
}

/// Locks the epoch row and moves it (the first statement of every change).
async fn bump_epoch(tx: &Transaction<'_>) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE policy_epoch SET epoch = epoch + 1 WHERE id = 1",
        &[],
    )
    .await
    .map_err(pg)
    .map(drop)
}

async fn versions_in(tx: &Transaction<'_>, name: &str) -> Result<Vec<PolicyVersion>, StoreError> {
    let rows = tx
        .query(
            "SELECT name, rec FROM policy_versions WHERE name = $1 ORDER BY version",
            &[&name],
        )
        .await
        .map_err(pg)?;
    read_versions(&rows)
}

/// Writes the versions `changes` touch; returns them as written.
async fn write_changes(
    tx: &Transaction<'_>,
    versions: &[PolicyVersion],
    changes: &[(u64, PolicyStatus)],
) -> Result<Vec<PolicyVersion>, StoreError> {
    let changed = changed_versions(versions, changes);
    for v in &changed {
        tx.execute(
            "UPDATE policy_versions SET rec = $3 WHERE name = $1 AND version = $2",
            &[&v.name, &i64_of(v.version), &json_text(v)],
        )
        .await
        .map_err(pg)?;
    }
    Ok(changed)
}

impl PolicyStore for PgStore {
    fn apply_policy(&self, new: &NewPolicyVersion<'_>) -> Result<Applied, StoreError> {
        self.run(async {
            let mut c = self.client().await?;
            let tx = c.transaction().await.map_err(pg)?;
            bump_epoch(&tx).await?;
            let existing = versions_in(&tx, new.name).await?;
            let (changes, v) = plan_apply(&existing, new);
            tx.execute(
                "INSERT INTO policies (digest, text) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&new.digest, &new.text],
            )
            .await
            .map_err(pg)?;
            let superseded = write_changes(&tx, &existing, &changes).await?;
            tx.execute(
                "INSERT INTO policy_versions (name, version, rec) VALUES ($1, $2, $3)",
                &[&v.name, &i64_of(v.version), &json_text(&v)],
            )
            .await
            .map_err(pg)?;
            tx.commit().await.map_err(pg)?;
            Ok(applied_outcome(&existing, superseded, v))
        })
    }

    fn policy_versions(&self, name: &str) -> Result<Vec<PolicyVersion>, StoreError> {
        self.run(async {
            let rows = self
                .query(
                    "SELECT name, rec FROM policy_versions WHERE name = $1 ORDER BY version",
                    &[&name],
                )
                .await?;
            read_versions(&rows)
        })
    }

    fn policy_names(&self) -> Result<Vec<String>, StoreError> {
        self.run(async {
            Ok(self
                .query(
                    "SELECT DISTINCT name FROM policy_versions ORDER BY name",
                    &[],
                )
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect())
        })
    }

    fn retire_policy_version(&self, name: &str, version: u64) -> Result<Retired, StoreError> {
        self.run(async {
            let mut c = self.client().await?;
            let tx = c.transaction().await.map_err(pg)?;
            bump_epoch(&tx).await?;
            let existing = versions_in(&tx, name).await?;
            let changes = match plan_retire(&existing, version) {
                Ok(c) => c,
                // Dropping the transaction rolls the epoch back.
                Err(refused) => return Ok(refused),
            };
            let changed = write_changes(&tx, &existing, &changes).await?;
            tx.commit().await.map_err(pg)?;
            retired_outcome(changed).ok_or(StoreError::Postgres("retired version vanished".into()))
        })
    }

    fn assign_policy(&self, group: &str, name: Option<&str>) -> Result<(), StoreError> {
        self.run(async {
            let mut c = self.client().await?;
            let tx = c.transaction().await.map_err(pg)?;
            bump_epoch(&tx).await?;
            match name {
                Some(n) => {
                    tx.execute(
                        "INSERT INTO policy_groups (group_name, policy) VALUES ($1, $2) \
                         ON CONFLICT (group_name) DO UPDATE SET policy = EXCLUDED.policy",
                        &[&group, &n],
                    )
                    .await
                }
                None => {
                    tx.execute("DELETE FROM policy_groups WHERE group_name = $1", &[&group])
                        .await
                }
            }
            .map_err(pg)?;
            tx.commit().await.map_err(pg)
        })
    }

    fn policy_assignments(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.run(async {
            Ok(self
                .query(
                    "SELECT group_name, policy FROM policy_groups ORDER BY group_name",
                    &[],
                )
                .await?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect())
        })
    }

    fn policy_epoch(&self) -> Result<u64, StoreError> {
        Ok(self
            .first("SELECT epoch FROM policy_epoch WHERE id = 1", &[], |r| {
                Ok(r.get::<_, i64>(0))
            })?
            .unwrap_or(0)
            .max(0) as u64)
    }
}
