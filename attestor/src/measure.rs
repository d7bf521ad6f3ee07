//! The container measurement log: TCG CEL records (format in
//! `assay_core::eventlog::cel`), each appended and fsynced, then extended into
//! the CEL PCR.
//!
//! Crash safety. The record is durable before the PCR moves, so after a crash
//! the log is either equal to the PCR or exactly one record ahead of it (the
//! record was written, the extend never happened). [`MeasurementLog::open`]
//! reconciles: equal is fine; one ahead is completed by extending that record;
//! a torn last record (a crash inside the write) was never extended and is cut
//! off. Anything else means the log or the PCR was changed behind the
//! attestor's back: it is reported as tampering and never repaired.
//!
//! Every operation holds an exclusive lock on the log file, so one-shot
//! commands (OCI hooks) and the agent can measure at the same time.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use assay_core::eventlog::cel::{self, CelLog, Measurement, Record};
use assay_core::eventlog::uefi;
use assay_core::tpm::public::HashAlg;
use tracing::info;

use crate::tpm::{Tpm, TpmError};

/// Where the log lives unless configured: under /run, so it dies with the PCRs
/// at reboot.
pub const DEFAULT_CEL_LOG: &str = "/run/assay-attestor/measurements.cel";

/// Largest CEL log read or sent.
pub const MAX_CEL_LOG_BYTES: u64 = 16 << 20;

/// Test-only crash injection: `ASSAY_TEST_CRASH_AT=after-append|after-extend`
/// aborts the process at that point, as a `kill -9` would. Compiled in only
/// with the crate's `test-hooks` feature (off by default; the tests crate turns
/// it on for `cargo build --workspace --bins`), so a release build of the
/// attestor neither reads this variable nor contains its name.
#[cfg(feature = "test-hooks")]
const CRASH_ENV: &str = "ASSAY_TEST_CRASH_AT";

#[derive(Debug, thiserror::Error)]
pub enum MeasureError {
    #[error("measurement log {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("measurement log {path}: {reason}")]
    Format { path: String, reason: String },
    #[error(
        "TAMPERING: the measurement log {path} does not match PCR {pcr}: {detail}. \
         Not repaired; the verifier will refuse this node until it reboots"
    )]
    Tampered {
        path: String,
        pcr: u32,
        detail: String,
    },
    #[error(transparent)]
    Tpm(#[from] TpmError),
}

/// What opening the log found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reconciled {
    /// Log and PCR agree.
    InSync { records: usize },
    /// The last record had been written but not extended: it was extended now.
    CompletedLast { recnum: u64 },
    /// A torn last record (crash mid-write, never extended) was cut off.
    CutTornTail { bytes: usize },
}

/// An open, locked, reconciled measurement log.
pub struct MeasurementLog {
    path: PathBuf,
    file: File,
    pcr: u32,
    log: CelLog,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> MeasureError + '_ {
    move |source| MeasureError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Aborts here if [`CRASH_ENV`] names `at` (feature `test-hooks` only).
#[cfg(feature = "test-hooks")]
fn crash_point(at: &str) {
    if std::env::var(CRASH_ENV).is_ok_and(|v| v == at) {
        tracing::warn!(at, "{CRASH_ENV}: aborting");
        std::process::abort();
    }
}

/// Without the `test-hooks` feature: no crash injection.
#[cfg(not(feature = "test-hooks"))]
#[inline(always)]
fn crash_point(_at: &str) {}

impl MeasurementLog {
    /// Opens (creating) and locks the log at `path`, then reconciles it with the
    /// TPM's PCR `pcr`. `boot_value` is what the PCR held before the first
    /// record (the replay of the UEFI log's events for it, or zeros).
    pub fn open(
        path: &Path,
        pcr: u32,
        boot_value: Vec<u8>,
        tpm: &mut Tpm,
    ) -> Result<(Self, Reconciled), MeasureError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(io(path))?;
        file.lock().map_err(io(path))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io(path))?;
        let (log, torn) = parse_prefix(&bytes).map_err(|reason| MeasureError::Format {
            path: path.display().to_string(),
            reason,
        })?;
        let tampered = |detail: String| MeasureError::Tampered {
            path: path.display().to_string(),
            pcr,
            detail,
        };
        if let Some(r) = log.records.iter().find(|r| r.pcr != pcr) {
            return Err(tampered(format!(
                "record {} is for PCR {}",
                r.recnum, r.pcr
            )));
        }
        if let Some(r) = log.records.iter().find(|r| !r.content_proven()) {
            return Err(tampered(format!(
                "record {}'s content is not what its digest measured",
                r.recnum
            )));
        }
        let now = tpm.read_pcr_sha256(pcr)?;
        let all = replay(&log.records, &boot_value);
        let outcome = if all == now {
            if torn > 0 {
                Reconciled::CutTornTail { bytes: torn }
            } else {
                Reconciled::InSync {
                    records: log.records.len(),
                }
            }
        } else {
            let (last, before) = match log.records.split_last() {
                Some((last, before)) => (last, before),
                None => {
                    return Err(tampered(format!(
                        "the log is empty but the PCR is {} (boot value {})",
                        hex::encode(&now),
                        hex::encode(&boot_value)
                    )))
                }
            };
            if replay(before, &boot_value) != now || torn > 0 {
                return Err(tampered(format!(
                    "{} records replay to {}, the PCR is {}, and no crash explains the difference",
                    log.records.len(),
                    hex::encode(&all),
                    hex::encode(&now)
                )));
            }
            extend(tpm, last)?;
            Reconciled::CompletedLast {
                recnum: last.recnum,
            }
        };
        if torn > 0 {
            // Never extended (the PCR matches the complete records): drop it.
            let keep = bytes.len() - torn;
            file.set_len(u64::try_from(keep).unwrap_or(u64::MAX))
                .map_err(io(path))?;
            file.sync_all().map_err(io(path))?;
        }
        match &outcome {
            Reconciled::InSync { .. } => {}
            other => {
                info!(?other, path = %path.display(), "measurement log reconciled after a crash")
            }
        }
        Ok((
            Self {
                path: path.to_path_buf(),
                file,
                pcr,
                log,
            },
            outcome,
        ))
    }

    pub fn records(&self) -> &[Record] {
        &self.log.records
    }

    /// Measures `m` unless an identical measurement is already in the log:
    /// append + fsync the record, then extend. Returns the new record's number.
    pub fn measure(&mut self, m: &Measurement, tpm: &mut Tpm) -> Result<Option<u64>, MeasureError> {
        if self
            .log
            .records
            .iter()
            .any(|r| r.measurement().as_ref() == Ok(m))
        {
            return Ok(None);
        }
        let recnum = u64::try_from(self.log.records.len()).unwrap_or(u64::MAX);
        let record = Record::new(recnum, self.pcr, m);
        let bytes = cel::encode_record(&record);
        self.file.seek(SeekFrom::End(0)).map_err(io(&self.path))?;
        self.file.write_all(&bytes).map_err(io(&self.path))?;
        self.file.sync_data().map_err(io(&self.path))?;
        crash_point("after-append");
        extend(tpm, &record)?;
        crash_point("after-extend");
        self.log.records.push(record);
        Ok(Some(recnum))
    }
}

fn extend(tpm: &mut Tpm, r: &Record) -> Result<(), MeasureError> {
    let digest: [u8; 32] = r
        .digest(HashAlg::Sha256)
        .and_then(|d| d.try_into().ok())
        .ok_or_else(|| MeasureError::Format {
            path: String::new(),
            reason: format!("record {} has no sha256 digest", r.recnum),
        })?;
    tpm.extend_pcr_sha256(r.pcr, &digest)?;
    Ok(())
}

fn replay(records: &[Record], boot_value: &[u8]) -> Vec<u8> {
    records.iter().fold(boot_value.to_vec(), |v, r| {
        r.digest(HashAlg::Sha256)
            .map_or(v.clone(), |d| uefi::extend(HashAlg::Sha256, &v, d))
    })
}

/// Parses the complete records; a last record cut short (a crash inside the
/// write) is reported as its byte count, any other damage is an error.
fn parse_prefix(bytes: &[u8]) -> Result<(CelLog, usize), String> {
    match cel::parse(bytes, &cel::Limits::default()) {
        Ok(log) => Ok((log, 0)),
        Err(e) => {
            let cel::CelError::Wire {
                offset,
                source: assay_core::reader::WireError::MissingData { .. },
                ..
            } = &e
            else {
                return Err(e.to_string());
            };
            let head = bytes.get(..*offset).unwrap_or_default();
            let log = cel::parse(head, &cel::Limits::default()).map_err(|e| e.to_string())?;
            Ok((log, bytes.len() - offset))
        }
    }
}

/// What the UEFI log put into `pcr` at boot, or zeros (no log, or none there).
pub fn boot_value(uefi_log: &Path, max_bytes: u64, pcr: u32) -> Vec<u8> {
    let zeros = vec![0u8; 32];
    let Ok(bytes) = std::fs::read(uefi_log) else {
        return zeros;
    };
    if bytes.len() as u64 > max_bytes {
        return zeros;
    }
    uefi::parse(&bytes, &uefi::Limits::default())
        .ok()
        .and_then(|log| {
            uefi::replay(&log)
                .pcr(HashAlg::Sha256, pcr)
                .map(<[u8]>::to_vec)
        })
        .unwrap_or(zeros)
}

/// Hashes a runtime file (binary or config) for a measurement.
pub fn hash_file(path: &Path) -> std::io::Result<[u8; 32]> {
    use sha2::Digest as _;
    let mut f = File::open(path)?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(buf.get(..n).unwrap_or_default());
    }
    Ok(h.finalize().into())
}
