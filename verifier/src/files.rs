//! Small file helpers for keys and state: atomic, private writes; capped reads.

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` atomically (temp file, fsync, rename) with mode 0600,
/// creating the parent directory (mode 0700) if needed.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file")
    ));
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// Reads at most `cap` bytes of `path`; a larger file is an error naming the cap.
pub fn read_capped(path: &Path, cap: u64) -> anyhow::Result<Vec<u8>> {
    use anyhow::Context;
    use std::io::Read;
    let f = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut bytes = Vec::new();
    f.take(cap.saturating_add(1))
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() as u64 > cap {
        anyhow::bail!("{} is larger than the {cap}-byte limit", path.display());
    }
    Ok(bytes)
}

/// Reads and validates a policy file, reading no more than the policy cap.
pub fn read_policy(path: &Path) -> anyhow::Result<assay_core::policy::Policy> {
    Ok(read_policy_with_text(path)?.0)
}

/// [`read_policy`], and the exact text its digest covers.
pub fn read_policy_with_text(path: &Path) -> anyhow::Result<(assay_core::policy::Policy, String)> {
    use anyhow::Context;
    let cap = assay_core::policy::MAX_POLICY_BYTES as u64;
    let bytes = read_capped(path, cap).with_context(|| format!("policy {}", path.display()))?;
    let text = String::from_utf8(bytes)
        .map_err(|e| anyhow::anyhow!("policy {}: not UTF-8 text ({e})", path.display()))?;
    let policy = assay_core::policy::Policy::parse(&path.display().to_string(), &text)?;
    Ok((policy, text))
}
