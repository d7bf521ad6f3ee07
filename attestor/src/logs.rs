//! Reading the event logs the verifier replays: the UEFI firmware log and the
//! IMA runtime measurement log.
//!
//! A log that does not exist (no TPM driver log, IMA not enabled) is reported as
//! absent with a note, not as an error: the verifier decides whether its policy
//! needs it. Logs are read with a size cap, because securityfs files report a
//! size of 0 and the IMA log grows for as long as the host runs.

use std::io::Read;
use std::path::Path;

/// Where the kernel exposes the firmware event log.
pub const DEFAULT_UEFI_LOG: &str = "/sys/kernel/security/tpm0/binary_bios_measurements";
/// Where the kernel exposes the IMA log (binary: it carries the template data
/// exactly as hashed, so no re-encoding is needed to replay it).
pub const DEFAULT_IMA_LOG: &str = "/sys/kernel/security/ima/binary_runtime_measurements";
/// Default cap on the UEFI log (real logs are 10-100 KiB).
pub const DEFAULT_MAX_UEFI_LOG_BYTES: u64 = 4 << 20;
/// Default cap on the IMA log (the verifier accepts gRPC messages up to 32 MiB).
pub const DEFAULT_MAX_IMA_LOG_BYTES: u64 = 24 << 20;

/// What reading one log gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogRead {
    Present(Vec<u8>),
    /// Not sent; the note says why, for the verdict and the operator.
    Absent(String),
}

/// Reads at most `cap` bytes of the log at `path`. `key` names the config key
/// that sets the path, for the note.
pub fn read_log(path: &Path, cap: u64, key: &str) -> LogRead {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return LogRead::Absent(format!(
                "absent: {} does not exist (config key `{key}`)",
                path.display()
            ))
        }
        Err(e) => return LogRead::Absent(format!("unreadable: {}: {e}", path.display())),
    };
    let mut bytes = Vec::new();
    if let Err(e) = file.take(cap.saturating_add(1)).read_to_end(&mut bytes) {
        return LogRead::Absent(format!("unreadable: {}: {e}", path.display()));
    }
    if bytes.len() as u64 > cap {
        return LogRead::Absent(format!(
            "too large: {} is over the {cap}-byte cap (config key `max_{key}_bytes`)",
            path.display()
        ));
    }
    if bytes.is_empty() {
        return LogRead::Absent(format!("empty: {}", path.display()));
    }
    LogRead::Present(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_oversized_empty_and_present_logs() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let LogRead::Absent(note) = read_log(&missing, 10, "uefi_log") else {
            panic!()
        };
        assert!(
            note.starts_with("absent:") && note.contains("uefi_log"),
            "{note}"
        );
        let f = dir.path().join("log");
        std::fs::write(&f, [7u8; 11]).unwrap();
        let LogRead::Absent(note) = read_log(&f, 10, "ima_log") else {
            panic!()
        };
        assert!(note.contains("max_ima_log_bytes"), "{note}");
        assert_eq!(read_log(&f, 11, "ima_log"), LogRead::Present(vec![7u8; 11]));
        std::fs::write(&f, []).unwrap();
        assert!(
            matches!(read_log(&f, 11, "ima_log"), LogRead::Absent(n) if n.starts_with("empty"))
        );
    }
}
