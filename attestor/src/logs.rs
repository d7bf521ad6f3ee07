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

/// Where the verifier's kept IMA state ends (`ChallengeResponse.ima_resume`),
/// with the boot the node's quote is of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImaResume {
    pub from_entry: u64,
    pub first_template_hash: Vec<u8>,
}

/// Longest template name, name or template data skipped in a binary record
/// (larger lengths mean the log is not one this reader understands: it is
/// then sent whole, and the verifier says what is wrong with it).
const MAX_SKIPPED_FIELD: u32 = 1 << 20;

/// Reads the IMA log for an attestation: with `resume` (the verifier's kept
/// state, for the boot the quote is of), only the entries from
/// `resume.from_entry` on, when the log's first entry is the one the state
/// was kept with and the log has that many entries; otherwise the whole log.
/// The entries skipped are read and dropped, never held. The cap applies to
/// what is sent. Returns the log read and the index of its first entry.
pub fn read_ima_log(path: &Path, cap: u64, resume: Option<&ImaResume>) -> (LogRead, u64) {
    if let Some(r) = resume.filter(|r| r.from_entry > 0) {
        match read_ima_after(path, cap, r) {
            Some(Ok(bytes)) => return (LogRead::Present(bytes), r.from_entry),
            Some(Err(note)) => return (LogRead::Absent(note), 0),
            None => {}
        }
    }
    (read_log(path, cap, "ima_log"), 0)
}

/// The entries from `r.from_entry` on; None when the log does not continue
/// the kept state (another first entry, fewer entries): send it whole.
fn read_ima_after(path: &Path, cap: u64, r: &ImaResume) -> Option<Result<Vec<u8>, String>> {
    use std::io::BufRead;
    let file = std::fs::File::open(path).ok()?;
    let mut input = std::io::BufReader::with_capacity(64 << 10, file);
    let binary = {
        let head = input.fill_buf().ok()?;
        head.iter().take(4).any(|b| *b == 0)
    };
    for index in 0..r.from_entry {
        let hash = if binary {
            skip_binary_record(&mut input, index == 0)?
        } else {
            skip_ascii_line(&mut input, index == 0)?
        };
        if index == 0 && hash != r.first_template_hash {
            return None;
        }
    }
    let mut bytes = Vec::new();
    if let Err(e) = input.take(cap.saturating_add(1)).read_to_end(&mut bytes) {
        return Some(Err(format!("unreadable: {}: {e}", path.display())));
    }
    if bytes.len() as u64 > cap {
        return Some(Err(format!(
            "too large: the entries of {} from {} on are over the {cap}-byte cap (config key `max_ima_log_bytes`)",
            path.display(),
            r.from_entry
        )));
    }
    Some(Ok(bytes))
}

/// Skips one binary record (see the verifier's `eventlog::ima`); its
/// template hash when `keep_hash`. None at the end of the log or on a
/// record this reader does not understand.
fn skip_binary_record(input: &mut impl Read, keep_hash: bool) -> Option<Vec<u8>> {
    fn u32_le(input: &mut impl Read) -> Option<u32> {
        let mut b = [0u8; 4];
        input.read_exact(&mut b).ok()?;
        Some(u32::from_le_bytes(b))
    }
    fn skip(input: &mut impl Read, n: u64) -> Option<()> {
        let skipped = std::io::copy(&mut input.take(n), &mut std::io::sink()).ok()?;
        (skipped == n).then_some(())
    }
    u32_le(input)?;
    let mut hash = vec![0u8; 20];
    input.read_exact(&mut hash).ok()?;
    let name_len = u32_le(input)?;
    if name_len > 64 {
        return None;
    }
    let mut name = vec![0u8; name_len as usize];
    input.read_exact(&mut name).ok()?;
    if name == b"ima" {
        skip(input, 20)?;
        let len = u32_le(input)?;
        (len <= MAX_SKIPPED_FIELD).then_some(())?;
        skip(input, u64::from(len))?;
    } else {
        let len = u32_le(input)?;
        (len <= MAX_SKIPPED_FIELD).then_some(())?;
        skip(input, u64::from(len))?;
    }
    Some(if keep_hash { hash } else { Vec::new() })
}

/// Skips one ascii line (`PCR template-hash template-name fields…`); its
/// template hash when `keep_hash`.
fn skip_ascii_line(input: &mut impl std::io::BufRead, keep_hash: bool) -> Option<Vec<u8>> {
    use std::io::BufRead as _;
    let mut line = Vec::new();
    let n = input
        .take(u64::from(MAX_SKIPPED_FIELD))
        .read_until(b'\n', &mut line)
        .ok()?;
    if n == 0 || line.last() != Some(&b'\n') {
        return None;
    }
    if !keep_hash {
        return Some(Vec::new());
    }
    let text = std::str::from_utf8(&line).ok()?;
    let field = text.split_ascii_whitespace().nth(1)?;
    hex::decode(field).ok()
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

    fn ima_ng_binary(entries: &[(&[u8; 20], &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (hash, name) in entries {
            out.extend_from_slice(&10u32.to_le_bytes());
            out.extend_from_slice(*hash);
            out.extend_from_slice(&6u32.to_le_bytes());
            out.extend_from_slice(b"ima-ng");
            let data = name.as_bytes();
            out.extend_from_slice(&(data.len() as u32).to_le_bytes());
            out.extend_from_slice(data);
        }
        out
    }

    #[test]
    fn an_ima_log_is_sent_from_the_kept_entry_only_when_it_continues_the_kept_state() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("binary_runtime_measurements");
        let (h0, h1, h2) = ([1u8; 20], [2u8; 20], [3u8; 20]);
        let log = ima_ng_binary(&[(&h0, "boot"), (&h1, "one"), (&h2, "two")]);
        std::fs::write(&f, &log).unwrap();
        let tail = ima_ng_binary(&[(&h2, "two")]);
        let resume = |from_entry, first: [u8; 20]| ImaResume {
            from_entry,
            first_template_hash: first.to_vec(),
        };
        assert_eq!(
            read_ima_log(&f, 1 << 20, Some(&resume(2, h0))),
            (LogRead::Present(tail.clone()), 2)
        );
        // All entries verified: nothing new is sent, from entry 3.
        assert_eq!(
            read_ima_log(&f, 1 << 20, Some(&resume(3, h0))),
            (LogRead::Present(Vec::new()), 3)
        );
        // Another boot (first entry differs), or fewer entries than kept: whole.
        assert_eq!(
            read_ima_log(&f, 1 << 20, Some(&resume(2, h1))),
            (LogRead::Present(log.clone()), 0)
        );
        assert_eq!(
            read_ima_log(&f, 1 << 20, Some(&resume(4, h0))),
            (LogRead::Present(log.clone()), 0)
        );
        assert_eq!(
            read_ima_log(&f, 1 << 20, None),
            (LogRead::Present(log.clone()), 0)
        );
        // The cap applies to what is sent.
        let (read, _) = read_ima_log(&f, tail.len() as u64 - 1, Some(&resume(2, h0)));
        assert!(matches!(read, LogRead::Absent(n) if n.contains("max_ima_log_bytes")));
        assert_eq!(
            read_ima_log(&f, tail.len() as u64, Some(&resume(2, h0))).0,
            LogRead::Present(tail)
        );

        // The ascii form.
        let a = dir.path().join("ascii_runtime_measurements");
        let line = |h: &[u8; 20], n: &str| format!("10 {} ima-ng sha256:00 {n}\n", hex::encode(h));
        let text = format!(
            "{}{}{}",
            line(&h0, "boot"),
            line(&h1, "one"),
            line(&h2, "two")
        );
        std::fs::write(&a, &text).unwrap();
        assert_eq!(
            read_ima_log(&a, 1 << 20, Some(&resume(1, h0))),
            (
                LogRead::Present(format!("{}{}", line(&h1, "one"), line(&h2, "two")).into_bytes()),
                1
            )
        );
        assert_eq!(read_ima_log(&a, 1 << 20, Some(&resume(1, h2))).1, 0);
    }
}
