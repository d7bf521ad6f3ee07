//! What the attestor remembers about its enrollment, in the state dir
//! (`enrollment.json`, written once the verifier bound the AK): the verifier,
//! the AK's name and the node id. The node id kept here is the node's
//! identity: `join` and `attest` use it, and a different `--node-id` is
//! refused unless `--rename` asks for it (renaming a node is an operator's
//! act: `assay-verifier node move OLD NEW` first).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The file in the state dir.
pub const ENROLLMENT_FILE: &str = "enrollment.json";
/// Larger than any enrollment record; a bigger file is not one.
const MAX_ENROLLMENT_FILE: u64 = 64 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Enrollment {
    pub verifier: String,
    pub node_id: String,
    pub ak_name: String,
}

/// Why the state dir's enrollment record could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum EnrollmentFileError {
    #[error("{path}: {reason}; move it away to enroll afresh")]
    Unreadable { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    Write { path: PathBuf, reason: String },
}

/// The enrollment record in `state_dir`; `None` if there is none yet.
pub fn load(state_dir: &Path) -> Result<Option<Enrollment>, EnrollmentFileError> {
    let path = state_dir.join(ENROLLMENT_FILE);
    let unreadable = |reason: String| EnrollmentFileError::Unreadable {
        path: path.clone(),
        reason,
    };
    let len = match std::fs::metadata(&path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(unreadable(e.to_string())),
    };
    if len > MAX_ENROLLMENT_FILE {
        return Err(unreadable(format!(
            "{len} bytes is not an enrollment record (limit {MAX_ENROLLMENT_FILE})"
        )));
    }
    let bytes = std::fs::read(&path).map_err(|e| unreadable(e.to_string()))?;
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| unreadable(format!("not an enrollment record ({e})")))
}

/// Writes the enrollment record as the AK blobs are written: atomically,
/// durably, readable by the owner only.
pub fn store(state_dir: &Path, e: &Enrollment) -> Result<(), EnrollmentFileError> {
    let path = state_dir.join(ENROLLMENT_FILE);
    let write = |reason: String| EnrollmentFileError::Write {
        path: path.clone(),
        reason,
    };
    let json = serde_json::to_vec_pretty(e).map_err(|e| write(e.to_string()))?;
    crate::files::write_private_atomic(&path, &json).map_err(write)
}

/// The node id to act as: the one given (flag, environment or config file),
/// else the one the state dir keeps, else `default` (the host name). A given
/// id that differs from the kept one is refused unless `rename`.
pub fn resolve_node_id(
    given: Option<String>,
    state_dir: &Path,
    rename: bool,
    default: impl FnOnce() -> Option<String>,
) -> Result<String, String> {
    let kept = load(state_dir)
        .map_err(|e| e.to_string())?
        .map(|e| e.node_id);
    match (given, kept) {
        (Some(given), Some(kept)) if given != kept && !rename => Err(format!(
            "config key `node_id`: `{given}` given, but the state dir {} holds node `{kept}`; \
             a node keeps its id. To rename it, the operator runs `assay-verifier node move \
             {kept} {given}`, then run this again with --rename",
            state_dir.display()
        )),
        (Some(given), _) => Ok(given),
        (None, Some(kept)) => Ok(kept),
        (None, None) => default().ok_or_else(|| {
            "config key `node_id`: not given, none in the state dir, and the host name could not \
             be read"
                .into()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enrolled(dir: &Path, id: &str) {
        store(
            dir,
            &Enrollment {
                verifier: "https://v:7443".into(),
                node_id: id.into(),
                ak_name: "000b00".into(),
            },
        )
        .unwrap();
    }

    #[test]
    fn the_kept_node_id_is_used_and_a_different_one_refused_unless_renaming() {
        let d = tempfile::tempdir().unwrap();
        let host = || Some("host".to_string());
        assert_eq!(
            resolve_node_id(None, d.path(), false, host).unwrap(),
            "host"
        );
        assert_eq!(
            resolve_node_id(Some("a".into()), d.path(), false, host).unwrap(),
            "a"
        );
        enrolled(d.path(), "a");
        assert_eq!(resolve_node_id(None, d.path(), false, host).unwrap(), "a");
        assert_eq!(
            resolve_node_id(Some("a".into()), d.path(), false, host).unwrap(),
            "a"
        );
        let e = resolve_node_id(Some("b".into()), d.path(), false, host).unwrap_err();
        assert!(
            e.contains("holds node `a`") && e.contains("node move a b") && e.contains("--rename"),
            "{e}"
        );
        assert_eq!(
            resolve_node_id(Some("b".into()), d.path(), true, host).unwrap(),
            "b"
        );
    }

    #[test]
    fn a_damaged_or_oversized_record_is_an_error_not_a_new_identity() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(ENROLLMENT_FILE), b"{\"node_id\": ").unwrap();
        let e = resolve_node_id(None, d.path(), false, || Some("h".into())).unwrap_err();
        assert!(e.contains("not an enrollment record"), "{e}");
        std::fs::write(
            d.path().join(ENROLLMENT_FILE),
            vec![b' '; MAX_ENROLLMENT_FILE as usize + 1],
        )
        .unwrap();
        let e = load(d.path()).unwrap_err().to_string();
        assert!(e.contains("limit"), "{e}");
    }
}
