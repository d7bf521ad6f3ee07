//! Named, versioned policies ([`PolicyStore`]): one tree of versions keyed by
//! (name, 0, version), one of group assignments; every change under one lock
//! (one process holds a sled database), then flushed.

use super::super::records::{
    applied_outcome, changed_versions, plan_apply, plan_retire, retired_outcome, Applied,
    NewPolicyVersion, PolicyVersion, Retired,
};
use super::super::{PolicyStore, StoreError};
use super::{from_json, to_json, SledStore};

const EPOCH: &[u8] = b"policy_epoch";

fn version_key(name: &str, version: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(name.len() + 9);
    k.extend_from_slice(name.as_bytes());
    k.push(0);
    k.extend_from_slice(&version.to_be_bytes());
    k
}

impl SledStore {
    fn versions_of(&self, name: &str) -> Result<Vec<PolicyVersion>, StoreError> {
        let mut prefix = name.as_bytes().to_vec();
        prefix.push(0);
        self.policy_versions
            .scan_prefix(&prefix)
            .map(|item| {
                let (k, v) = item?;
                from_json("policy_versions", &k, &v)
            })
            .collect()
    }

    /// Writes the versions `changes` touch; returns them as written.
    fn write_changes(
        &self,
        versions: &[PolicyVersion],
        changes: &[(u64, super::super::PolicyStatus)],
    ) -> Result<Vec<PolicyVersion>, StoreError> {
        let changed = changed_versions(versions, changes);
        for v in &changed {
            self.policy_versions
                .insert(version_key(&v.name, v.version), to_json(v))?;
        }
        Ok(changed)
    }
}

impl PolicyStore for SledStore {
    fn apply_policy(&self, new: &NewPolicyVersion<'_>) -> Result<Applied, StoreError> {
        let _one = self.policy_lock.lock().unwrap_or_else(|e| e.into_inner());
        let existing = self.versions_of(new.name)?;
        let (changes, v) = plan_apply(&existing, new);
        // The text by digest, in the same flush as the version.
        self.policies
            .insert(new.digest.as_bytes(), new.text.as_bytes())?;
        self.write_changes(&existing, &changes)?;
        self.policy_versions
            .insert(version_key(new.name, v.version), to_json(&v))?;
        self.add_meta(EPOCH, 1)?;
        self.flush()?;
        Ok(applied_outcome(&existing, &changes, v))
    }

    fn policy_versions(&self, name: &str) -> Result<Vec<PolicyVersion>, StoreError> {
        self.versions_of(name)
    }

    fn policy_names(&self) -> Result<Vec<String>, StoreError> {
        let mut names: Vec<String> = Vec::new();
        for item in self.policy_versions.iter() {
            let (k, _) = item?;
            let Some(end) = k.iter().position(|b| *b == 0) else {
                continue;
            };
            let name = String::from_utf8_lossy(&k[..end]).into_owned();
            if names.last() != Some(&name) {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn retire_policy_version(&self, name: &str, version: u64) -> Result<Retired, StoreError> {
        let _one = self.policy_lock.lock().unwrap_or_else(|e| e.into_inner());
        let existing = self.versions_of(name)?;
        let changes = match plan_retire(&existing, version) {
            Ok(c) => c,
            Err(refused) => return Ok(refused),
        };
        let changed = self.write_changes(&existing, &changes)?;
        self.add_meta(EPOCH, 1)?;
        self.flush()?;
        retired_outcome(changed).ok_or(StoreError::Db("retired version vanished".into()))
    }

    fn assign_policy(&self, group: &str, name: Option<&str>) -> Result<(), StoreError> {
        let _one = self.policy_lock.lock().unwrap_or_else(|e| e.into_inner());
        match name {
            Some(n) => self.policy_groups.insert(group.as_bytes(), n.as_bytes())?,
            None => self.policy_groups.remove(group.as_bytes())?,
        };
        self.add_meta(EPOCH, 1)?;
        self.flush()
    }

    fn policy_assignments(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.policy_groups
            .iter()
            .map(|item| {
                let (k, v) = item?;
                Ok((
                    String::from_utf8_lossy(&k).into_owned(),
                    String::from_utf8_lossy(&v).into_owned(),
                ))
            })
            .collect()
    }

    fn policy_epoch(&self) -> Result<u64, StoreError> {
        Ok(self.meta(EPOCH)?.max(0) as u64)
    }
}
