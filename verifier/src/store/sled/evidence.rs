//! The evidence behind each verdict (logs content-addressed, reference
//! counted) and the policy texts, in sled.

use sha2::{Digest, Sha256};

use super::SledStore;
use crate::store::{from_json, to_json, EvidenceStore, Logs, StoreError, StoredEvidence};

impl SledStore {
    /// Keeps the evidence behind record `seq` (not flushed yet); logs are
    /// stored once by digest, their reference counts under `evidence_lock`.
    pub(super) fn put_evidence_unflushed(
        &self,
        seq: u64,
        mut ev: StoredEvidence,
        logs: Logs<&[u8]>,
    ) -> Result<(), StoreError> {
        // Reference counts need the lock; evidence with no logs touches none
        // (the byte total is updated atomically).
        let _guard = logs
            .any()
            .then(|| self.evidence_lock.lock().unwrap_or_else(|p| p.into_inner()));
        let mut size = ev.attest.len() as u64 / 2 + ev.signature.len() as u64 / 2;
        let names = logs.try_map(|bytes| -> Result<String, StoreError> {
            let digest: [u8; 32] = Sha256::digest(bytes).into();
            let refs = self.blob_refcount(&digest)?;
            if refs == 0 {
                self.blobs.insert(digest, bytes)?;
                size += bytes.len() as u64;
            }
            self.blob_refs.insert(digest, &(refs + 1).to_be_bytes())?;
            Ok(hex::encode(digest))
        })?;
        (ev.uefi_log, ev.ima_log, ev.cel_log) = (names.uefi, names.ima, names.cel);
        ev.bytes = size;
        self.evidence.insert(seq.to_be_bytes(), to_json(&ev))?;
        self.add_meta(b"evidence_bytes", size as i64)
    }
}

impl EvidenceStore for SledStore {
    /// Keeps a policy file's text under its digest (idempotent).
    fn put_policy(&self, digest_hex: &str, text: &str) -> Result<(), StoreError> {
        self.policies
            .insert(digest_hex.as_bytes(), text.as_bytes())?;
        self.flush()
    }

    /// The digest of the policy the verifier last started with.
    fn current_policy(&self) -> Result<Option<String>, StoreError> {
        Ok(self
            .db
            .get(b"current_policy")?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    fn set_current_policy(&self, digest_hex: &str) -> Result<(), StoreError> {
        self.db.insert(b"current_policy", digest_hex.as_bytes())?;
        self.flush()
    }

    fn policy_text(&self, digest_hex: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .policies
            .get(digest_hex.as_bytes())?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Keeps the evidence behind record `seq`; logs are stored once by digest.
    fn put_evidence(
        &self,
        seq: u64,
        ev: StoredEvidence,
        logs: Logs<&[u8]>,
    ) -> Result<(), StoreError> {
        self.put_evidence_unflushed(seq, ev, logs)?;
        self.flush()
    }

    /// The evidence behind record `seq`, and its logs.
    fn evidence(&self, seq: u64) -> Result<Option<(StoredEvidence, Logs)>, StoreError> {
        let Some(v) = self.evidence.get(seq.to_be_bytes())? else {
            return Ok(None);
        };
        let ev: StoredEvidence = from_json("evidence", &seq.to_be_bytes(), &v)?;
        let blob = |d: &Option<String>| -> Result<Option<Vec<u8>>, StoreError> {
            match d {
                None => Ok(None),
                Some(h) => {
                    let key = hex::decode(h).unwrap_or_default();
                    Ok(self.blobs.get(key)?.map(|b| b.to_vec()))
                }
            }
        };
        let logs = Logs {
            uefi: blob(&ev.uefi_log)?,
            ima: blob(&ev.ima_log)?,
            cel: blob(&ev.cel_log)?,
        };
        Ok(Some((ev, logs)))
    }

    /// Deletes the oldest evidence until what is kept is newer than
    /// `before_unix`, at most `max_count` entries and `max_bytes` bytes
    /// (logs counted once). Records stay; only their evidence goes. How many.
    fn prune_evidence(
        &self,
        before_unix: i64,
        max_count: usize,
        max_bytes: u64,
    ) -> Result<usize, StoreError> {
        let _guard = self.evidence_lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut count = self.evidence.len();
        let mut bytes = self.meta(b"evidence_bytes")?.max(0) as u64;
        let mut removed = 0;
        for item in self.evidence.iter() {
            let (k, v) = item?;
            let ev: StoredEvidence = from_json("evidence", &k, &v)?;
            if ev.time_unix >= before_unix && count <= max_count && bytes <= max_bytes {
                break;
            }
            let mut freed = ev.attest.len() as u64 / 2 + ev.signature.len() as u64 / 2;
            for d in [&ev.uefi_log, &ev.ima_log, &ev.cel_log]
                .into_iter()
                .flatten()
            {
                let key = hex::decode(d).unwrap_or_default();
                let refs = self.blob_refcount(&key)?;
                if refs <= 1 {
                    if let Some(b) = self.blobs.remove(&key)? {
                        freed += b.len() as u64;
                    }
                    self.blob_refs.remove(&key)?;
                } else {
                    self.blob_refs.insert(&key, &(refs - 1).to_be_bytes())?;
                }
            }
            self.evidence.remove(&k)?;
            self.add_meta(b"evidence_bytes", -(freed as i64))?;
            bytes = bytes.saturating_sub(freed);
            count -= 1;
            removed += 1;
        }
        if removed > 0 {
            self.flush()?;
        }
        Ok(removed)
    }

    /// Bytes of evidence kept (logs counted once) and entries.
    fn evidence_usage(&self) -> Result<(u64, usize), StoreError> {
        Ok((
            self.meta(b"evidence_bytes")?.max(0) as u64,
            self.evidence.len(),
        ))
    }
}
