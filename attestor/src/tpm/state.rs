//! The AK's blobs on disk: `ak.pub` (TPM2B_PUBLIC) and `ak.priv` (TPM2B_PRIVATE), both in
//! the TPM2B framing tpm2-tools uses (big-endian u16 size, then the contents), so
//! `tpm2_load -u ak.pub -r ak.priv` reads them too.
//!
//! Files are written to a temporary name, fsynced, renamed and the directory fsynced;
//! mode 0600 in a 0700 directory. `ak.pub` is written last and is the commit marker: an
//! `ak.priv` without `ak.pub` is an interrupted creation whose key was never handed out,
//! and is replaced; an `ak.pub` without `ak.priv` is an error.

use std::fs::{self, DirBuilder};
use std::io::ErrorKind;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use super::TpmError;

pub(crate) const AK_PUB: &str = "ak.pub";
pub(crate) const AK_PRIV: &str = "ak.priv";

/// Contents (without the u16 size) of the stored TPM2B_PUBLIC and TPM2B_PRIVATE.
pub(crate) struct AkBlobs {
    pub public: Vec<u8>,
    pub private: Vec<u8>,
}

fn state_err(path: &Path, reason: impl Into<String>) -> TpmError {
    TpmError::State {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Reads the stored AK; `None` if there is none (or only an interrupted creation).
pub(crate) fn read(dir: &Path) -> Result<Option<AkBlobs>, TpmError> {
    let pub_path = dir.join(AK_PUB);
    let priv_path = dir.join(AK_PRIV);
    let public = match fs::read(&pub_path) {
        Ok(b) => b,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(state_err(&pub_path, format!("cannot read it: {e}"))),
    };
    let private = match fs::read(&priv_path) {
        Ok(b) => b,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(state_err(
                &priv_path,
                format!("it is missing but {AK_PUB} exists"),
            ))
        }
        Err(e) => return Err(state_err(&priv_path, format!("cannot read it: {e}"))),
    };
    Ok(Some(AkBlobs {
        public: unframe(&public)
            .map_err(|r| state_err(&pub_path, r))?
            .to_vec(),
        private: unframe(&private)
            .map_err(|r| state_err(&priv_path, r))?
            .to_vec(),
    }))
}

/// Stores a new AK: `ak.priv` first, then `ak.pub` (the commit marker).
pub(crate) fn write(dir: &Path, blobs: &AkBlobs) -> Result<(), TpmError> {
    ensure_dir(dir)?;
    write_atomic(&dir.join(AK_PRIV), &frame(&blobs.private)?)?;
    write_atomic(&dir.join(AK_PUB), &frame(&blobs.public)?)?;
    Ok(())
}

/// Creates the state directory (mode 0700) if it does not exist.
pub(crate) fn ensure_dir(dir: &Path) -> Result<(), TpmError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| state_err(dir, format!("cannot create the state directory: {e}")))
}

/// Checks the TPM2B framing: a u16 size equal to what follows, and not zero.
pub(crate) fn unframe(bytes: &[u8]) -> Result<&[u8], String> {
    let (size, rest) = match bytes {
        [a, b, rest @ ..] => (usize::from(u16::from_be_bytes([*a, *b])), rest),
        _ => return Err(format!("{} bytes, too short for a TPM2B size", bytes.len())),
    };
    if size == 0 || size != rest.len() {
        return Err(format!(
            "TPM2B size field says {size} bytes but {} follow (truncated or not a TPM2B file)",
            rest.len()
        ));
    }
    Ok(rest)
}

/// Prepends the big-endian u16 size.
pub(crate) fn frame(contents: &[u8]) -> Result<Vec<u8>, TpmError> {
    let size = u16::try_from(contents.len()).map_err(|_| TpmError::Tss {
        op: "frame TPM2B",
        reason: format!("{} bytes", contents.len()),
    })?;
    let mut out = Vec::with_capacity(contents.len() + 2);
    out.extend_from_slice(&size.to_be_bytes());
    out.extend_from_slice(contents);
    Ok(out)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TpmError> {
    crate::files::write_private_atomic(path, bytes).map_err(|reason| state_err(path, reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_round_trips_and_rejects_truncation() {
        let framed = frame(b"abc").unwrap();
        assert_eq!(framed, [0, 3, b'a', b'b', b'c']);
        assert_eq!(unframe(&framed).unwrap(), b"abc");
        assert!(unframe(&framed[..4]).is_err());
        assert!(unframe(&[0]).is_err());
        assert!(unframe(&[0, 0]).is_err());
    }

    #[test]
    fn priv_without_pub_is_no_state_and_pub_without_priv_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join(AK_PRIV), frame(b"x").unwrap()).unwrap();
        assert!(read(d.path()).unwrap().is_none());
        fs::remove_file(d.path().join(AK_PRIV)).unwrap();
        fs::write(d.path().join(AK_PUB), frame(b"x").unwrap()).unwrap();
        let e = read(d.path()).err().unwrap().to_string();
        assert!(e.contains("ak.priv") && e.contains("delete"), "{e}");
    }

    #[test]
    fn written_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("state");
        write(
            &dir,
            &AkBlobs {
                public: vec![1, 2],
                private: vec![3],
            },
        )
        .unwrap();
        assert_eq!(
            fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        for f in [AK_PUB, AK_PRIV] {
            assert_eq!(
                fs::metadata(dir.join(f)).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let b = read(&dir).unwrap().unwrap();
        assert_eq!((b.public, b.private), (vec![1, 2], vec![3]));
    }
}
