//! What went wrong in the store, said for an operator.

/// A store failure. sled's own errors are turned into text that names the
/// problem (its `Display` prints internal offsets and backtraces).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("opening the database at {path}: {reason}{hint}")]
    Open {
        path: String,
        reason: String,
        /// What to do about it, when that is known (starts with "; ").
        hint: String,
    },
    #[error("database error: {0}")]
    Db(String),
    #[error("PostgreSQL: {0}")]
    Postgres(String),
    #[error("stored record {key} in `{tree}` is unreadable: {reason}")]
    Corrupt {
        tree: &'static str,
        key: String,
        reason: String,
    },
}

impl From<::sled::Error> for StoreError {
    fn from(e: ::sled::Error) -> Self {
        StoreError::Db(sled_reason(&e))
    }
}

impl StoreError {
    /// sled could not open the database at `path`.
    pub(crate) fn sled_open(path: &std::path::Path, e: &::sled::Error) -> Self {
        let hint = match e {
            ::sled::Error::Io(io)
                if io.kind() == std::io::ErrorKind::WouldBlock
                    || io.to_string().contains("lock") =>
            {
                "; another assay-verifier (or an offline assay-verifier command) is using this \
                 data directory: stop it first (sled is single-process)"
            }
            ::sled::Error::Io(io) if io.kind() == std::io::ErrorKind::PermissionDenied => {
                "; check the owner and mode of the data directory"
            }
            ::sled::Error::Corruption { .. } | ::sled::Error::Unsupported(_) => {
                "; the database files are damaged or not a database this verifier can read: \
                 restore the data directory's `db` from a backup, or move it away to start \
                 empty (the history in it would be lost)"
            }
            _ => "",
        };
        StoreError::Open {
            path: path.display().to_string(),
            reason: sled_reason(e),
            hint: hint.to_string(),
        }
    }
}

/// sled's error, without its internal debug text.
fn sled_reason(e: &::sled::Error) -> String {
    match e {
        ::sled::Error::Io(io) => io.to_string(),
        ::sled::Error::Corruption { .. } => "the database is corrupt".into(),
        ::sled::Error::CollectionNotFound(_) => "a tree is missing".into(),
        ::sled::Error::Unsupported(s) => format!("unsupported: {s}"),
        ::sled::Error::ReportableBug(s) => format!("internal sled error: {s}"),
    }
}

#[cfg(test)]
mod tests {
    use crate::store::SledStore;

    #[test]
    fn a_store_in_use_names_the_other_user() {
        let d = tempfile::tempdir().unwrap();
        let _first = SledStore::open(d.path()).unwrap();
        let e = SledStore::open(d.path()).err().unwrap().to_string();
        assert!(e.contains("another assay-verifier"), "{e}");
    }

    #[test]
    fn a_damaged_store_says_so_without_sled_internals() {
        let d = tempfile::tempdir().unwrap();
        {
            let s = SledStore::open(d.path()).unwrap();
            drop(s);
        }
        // Give sled's files a little while to be released, then damage them:
        // each file in turn, the others intact.
        std::thread::sleep(std::time::Duration::from_millis(200));
        let files: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|f| f.unwrap().path())
            .filter(|p| p.is_file())
            .collect();
        assert!(!files.is_empty());
        let mut refused = 0;
        for f in &files {
            let copy = tempfile::tempdir().unwrap();
            for g in &files {
                let to = copy.path().join(g.file_name().unwrap());
                if g == f {
                    std::fs::write(&to, vec![0xa5u8; 4096]).unwrap();
                } else {
                    std::fs::copy(g, &to).unwrap();
                }
            }
            let e = match SledStore::open(copy.path()) {
                Ok(_) => continue, // sled recovered (e.g. a snapshot it can rebuild)
                Err(e) => e.to_string(),
            };
            assert!(
                !e.contains("backtrace") && !e.contains("DiskPtr") && !e.contains("Custom {"),
                "{f:?}: {e}"
            );
            assert!(
                e.contains("restore the data directory's `db`"),
                "{f:?}: {e}"
            );
            refused += 1;
        }
        assert!(refused > 0, "no damaged copy was refused: {files:?}");
    }
}
