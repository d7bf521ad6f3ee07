//! Named, versioned policies ([`PolicyStore`]): one tree of versions keyed by
//! (name, 0, version), one of group assignments; every change decided under
//! one lock (one process holds a sled database) and written as one sled
//! transaction over the text, the versions (or assignments) and the epoch,
//! then flushed: a crash leaves the change whole or absent, never a name
//! without an accepted version.

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

    /// Writes one change atomically: a policy text by digest, version
    /// records, an assignment (Some(None) removes it), and the epoch moved.
    fn commit(
        &self,
        text: Option<(&str, &str)>,
        versions: &[PolicyVersion],
        assignment: Option<(&str, Option<&str>)>,
    ) -> Result<(), StoreError> {
        use sled::transaction::{ConflictableTransactionError, TransactionError};
        use sled::Transactional as _;
        let records: Vec<(Vec<u8>, Vec<u8>)> = versions
            .iter()
            .map(|v| (version_key(&v.name, v.version), to_json(v)))
            .collect();
        let meta: &sled::Tree = &self.db;
        (
            &self.policies,
            &self.policy_versions,
            &self.policy_groups,
            meta,
        )
            .transaction(|(texts, vs, groups, meta)| {
                if let Some((digest, text)) = text {
                    texts.insert(digest.as_bytes(), text.as_bytes())?;
                }
                for (k, v) in &records {
                    vs.insert(k.as_slice(), v.as_slice())?;
                }
                match assignment {
                    Some((g, Some(n))) => {
                        groups.insert(g.as_bytes(), n.as_bytes())?;
                    }
                    Some((g, None)) => {
                        groups.remove(g.as_bytes())?;
                    }
                    None => {}
                }
                let n = meta.get(EPOCH)?.map_or(0, |v| {
                    i64::from_be_bytes(v.as_ref().try_into().unwrap_or_default())
                });
                meta.insert(EPOCH, &(n + 1).to_be_bytes())?;
                Ok::<(), ConflictableTransactionError<()>>(())
            })
            .map_err(|e| match e {
                TransactionError::Storage(e) => StoreError::from(e),
                TransactionError::Abort(()) => StoreError::Db("policy change aborted".into()),
            })?;
        self.flush()
    }
}

impl PolicyStore for SledStore {
    fn apply_policy(&self, new: &NewPolicyVersion<'_>) -> Result<Applied, StoreError> {
        let _one = self.policy_lock.lock().unwrap_or_else(|e| e.into_inner());
        let existing = self.versions_of(new.name)?;
        let (changes, v) = plan_apply(&existing, new);
        let superseded = changed_versions(&existing, &changes);
        let written = [superseded.as_slice(), std::slice::from_ref(&v)].concat();
        self.commit(Some((new.digest, new.text)), &written, None)?;
        Ok(applied_outcome(&existing, superseded, v))
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
        let changed = changed_versions(&existing, &changes);
        self.commit(None, &changed, None)?;
        retired_outcome(changed).ok_or(StoreError::Db("retired version vanished".into()))
    }

    fn assign_policy(&self, group: &str, name: Option<&str>) -> Result<(), StoreError> {
        let _one = self.policy_lock.lock().unwrap_or_else(|e| e.into_inner());
        self.commit(None, &[], Some((group, name)))
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
