//! Files of the state dir, written so a crash leaves the old contents or the
//! new, never a mix: the AK blobs (`tpm`) and the enrollment record
//! (`enrollment`).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` readable by the owner only (0600): a temporary
/// file, fsynced, renamed into place, and the directory fsynced. The error
/// says which step failed (`cannot … : …`).
pub fn write_private_atomic(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let tmp: PathBuf = path.with_extension("tmp");
    let io = |what: &str, e: std::io::Error| format!("cannot {what}: {e}");
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| io("create its temporary file", e))?;
        f.write_all(bytes).map_err(|e| io("write it", e))?;
        f.sync_all().map_err(|e| io("fsync it", e))?;
    }
    fs::rename(&tmp, path).map_err(|e| io("rename it into place", e))?;
    if let Some(dir) = path.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io("fsync its directory", e))?;
    }
    Ok(())
}
