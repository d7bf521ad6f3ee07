//! The TCG PC Client firmware event log, as the kernel exposes it in
//! `/sys/kernel/security/tpm0/binary_bios_measurements`.
//!
//! Two formats (TCG PC Client Platform Firmware Profile, §10):
//! - **SHA-1 legacy**: every event is a `TCG_PCClientPCREvent` (u32 PCR, u32 type,
//!   20-byte SHA-1 digest, u32 size, data).
//! - **crypto-agile**: the first event is a legacy-format `EV_NO_ACTION` whose data
//!   is the `TCG_EfiSpecIDEventStruct` ("Spec ID Event03") listing the banks and
//!   their digest sizes; every later event is a `TCG_PCR_EVENT2` (u32 PCR, u32
//!   type, `TPML_DIGEST_VALUES`, u32 size, data).
//!
//! Events are numbered as `tpm2_eventlog` numbers them (`EventNum`, the first
//! record is 0), so a person can compare our output with that tool's.
//!
//! [`replay`] folds the digests into every bank present. `EV_NO_ACTION` events
//! are never extended; a `StartupLocality` event sets PCR 0's initial value
//! (§10.4.5.3). [`check_event_data`] decides whether an event's data is proven by
//! its digests, which is what lets a policy rely on decoded content.

use std::collections::BTreeMap;

use serde::Serialize;
use sha2::Digest as _;

use crate::reader::{Reader, WireError};
use crate::tpm::public::HashAlg;

use super::efi;
use super::event_type::{EV_EFI_VARIABLE_BOOT, EV_IPL, EV_NO_ACTION};

// The event-type table lives in `event_type`; these paths are kept for callers.
pub use super::event_type::{event_type_from_name, event_type_name, EVENT_TYPES};

/// Highest PCR index an extended event may name (PC Client TPMs have PCRs 0-23).
pub const MAX_PCR: u32 = 23;
/// Most banks a Spec ID event may list.
pub const MAX_ALGORITHMS: u32 = 16;
const SPEC_ID_SIGNATURE: &[u8; 16] = b"Spec ID Event03\0";
const STARTUP_LOCALITY: &[u8; 16] = b"StartupLocality\0";
const SHA1_LEN: usize = 20;

/// Caps on what a log may make the verifier hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest log accepted, in bytes.
    pub max_log_bytes: usize,
    /// Most events accepted.
    pub max_events: usize,
    /// Largest data of one event, in bytes.
    pub max_event_data: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_log_bytes: 16 << 20,
            max_events: 100_000,
            max_event_data: 4 << 20,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventLogError {
    #[error("event log is empty")]
    Empty,
    #[error("event log is {len} bytes, more than the {max}-byte limit")]
    TooLarge { len: usize, max: usize },
    #[error("event log has more than {max} events")]
    TooManyEvents { max: usize },
    #[error("event {num} (byte offset {offset}): {source}")]
    Wire {
        num: u32,
        offset: usize,
        #[source]
        source: WireError,
    },
    #[error("event {num} (byte offset {offset}): PCR index {pcr} is above {MAX_PCR}; this is not a TCG PC Client event log (or it is corrupt)")]
    PcrOutOfRange { num: u32, offset: usize, pcr: u32 },
    #[error("event {num} (byte offset {offset}): {reason}")]
    Invalid {
        num: u32,
        offset: usize,
        reason: String,
    },
}

/// Which of the two formats the log is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Sha1Legacy,
    CryptoAgile,
}

/// One bank the log carries digests for (from the Spec ID event).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BankInfo {
    pub alg_id: u16,
    pub digest_size: u16,
}

/// The `TCG_EfiSpecIDEventStruct` of a crypto-agile log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpecId {
    pub platform_class: u32,
    pub spec_version_major: u8,
    pub spec_version_minor: u8,
    pub spec_errata: u8,
    pub uintn_size: u8,
    pub algorithms: Vec<BankInfo>,
    #[serde(serialize_with = "crate::eventlog::ser_hex")]
    pub vendor_info: Vec<u8>,
    /// How many of the `vendor_info` bytes lie after the event, outside its
    /// `eventDataSize` (a writer bug, seen in tpm2-tools' `specid-vendordata.bin`
    /// fixture; `tpm2_eventlog` reads them, and so do we: the event is never
    /// extended, and reading them is the only way the next event parses).
    #[serde(skip_serializing_if = "is_zero")]
    pub vendor_info_outside_event: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// One digest of one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventDigest {
    pub alg_id: u16,
    #[serde(serialize_with = "crate::eventlog::ser_hex")]
    pub digest: Vec<u8>,
}

/// One event as logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// Position in the log, as `tpm2_eventlog` numbers it (0 is the first record).
    pub num: u32,
    /// Byte offset of the record in the log.
    pub offset: usize,
    pub pcr: u32,
    pub event_type: u32,
    pub digests: Vec<EventDigest>,
    #[serde(serialize_with = "crate::eventlog::ser_hex")]
    pub data: Vec<u8>,
}

impl Event {
    /// The digest this event carries for `alg`, if any.
    pub fn digest(&self, alg: HashAlg) -> Option<&[u8]> {
        self.digests
            .iter()
            .find(|d| d.alg_id == alg.to_tpm())
            .map(|d| d.digest.as_slice())
    }

    /// True for events that are logged but never extended.
    pub fn is_no_action(&self) -> bool {
        self.event_type == EV_NO_ACTION
    }
}

/// A parsed firmware event log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventLog {
    pub format: LogFormat,
    pub spec_id: Option<SpecId>,
    /// Locality from a `StartupLocality` `EV_NO_ACTION` event, if the log has one.
    pub startup_locality: Option<u8>,
    /// Every record, including `EV_NO_ACTION` ones and the Spec ID header.
    pub events: Vec<Event>,
    /// Zero bytes after the last event (firmware log areas are often padded).
    pub trailing_zero_bytes: usize,
}

impl EventLog {
    /// The banks this log carries digests for, in Spec ID order (SHA-1 for legacy logs).
    pub fn banks(&self) -> Vec<u16> {
        match &self.spec_id {
            Some(spec) => spec.algorithms.iter().map(|a| a.alg_id).collect(),
            None => vec![HashAlg::Sha1.to_tpm()],
        }
    }
}

/// Parses a firmware event log in either format.
pub fn parse(bytes: &[u8], limits: &Limits) -> Result<EventLog, EventLogError> {
    if bytes.is_empty() {
        return Err(EventLogError::Empty);
    }
    if bytes.len() > limits.max_log_bytes {
        return Err(EventLogError::TooLarge {
            len: bytes.len(),
            max: limits.max_log_bytes,
        });
    }
    let mut r = Reader::new(bytes);
    let first = read_legacy_event(&mut r, bytes.len(), 0, limits)?;
    let spec_id = if first.event_type == EV_NO_ACTION && first.data.starts_with(SPEC_ID_SIGNATURE) {
        let mut spec = parse_spec_id(&first)?;
        let outside = r
            .take(spec.vendor_info_outside_event, "SpecID.vendorInfo")
            .map_err(wire(0, 0))?;
        spec.vendor_info.extend_from_slice(outside);
        Some(spec)
    } else {
        None
    };
    let mut log = EventLog {
        format: if spec_id.is_some() {
            LogFormat::CryptoAgile
        } else {
            LogFormat::Sha1Legacy
        },
        spec_id,
        startup_locality: None,
        events: Vec::new(),
        trailing_zero_bytes: 0,
    };
    note_startup_locality(&mut log.startup_locality, &first)?;
    log.events.push(first);
    let mut num: u32 = 1;
    while r.left() > 0 {
        if r.peek_rest().iter().all(|&b| b == 0) {
            log.trailing_zero_bytes = r.left();
            break;
        }
        if log.events.len() >= limits.max_events {
            return Err(EventLogError::TooManyEvents {
                max: limits.max_events,
            });
        }
        let event = match &log.spec_id {
            Some(spec) => read_agile_event(&mut r, bytes.len(), num, spec, limits)?,
            None => read_legacy_event(&mut r, bytes.len(), num, limits)?,
        };
        note_startup_locality(&mut log.startup_locality, &event)?;
        log.events.push(event);
        num = num.saturating_add(1);
    }
    Ok(log)
}

fn wire(num: u32, offset: usize) -> impl Fn(WireError) -> EventLogError {
    move |source| EventLogError::Wire {
        num,
        offset,
        source,
    }
}

fn read_header(r: &mut Reader<'_>, num: u32, offset: usize) -> Result<(u32, u32), EventLogError> {
    let pcr = r.u32_le("event.pcrIndex").map_err(wire(num, offset))?;
    let event_type = r.u32_le("event.eventType").map_err(wire(num, offset))?;
    // Windows logs EV_NO_ACTION events against "PCR -1" (0xffffffff); they are
    // never extended, so only extended events need a real PCR.
    if pcr > MAX_PCR && event_type != EV_NO_ACTION {
        return Err(EventLogError::PcrOutOfRange { num, offset, pcr });
    }
    Ok((pcr, event_type))
}

fn read_data(
    r: &mut Reader<'_>,
    num: u32,
    offset: usize,
    limits: &Limits,
) -> Result<Vec<u8>, EventLogError> {
    let len = r.u32_le("event.eventDataSize").map_err(wire(num, offset))?;
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    if len > limits.max_event_data {
        return Err(wire(num, offset)(WireError::TooLarge {
            what: "event.eventDataSize",
            len,
            max: limits.max_event_data,
        }));
    }
    Ok(r.take(len, "event.event")
        .map_err(wire(num, offset))?
        .to_vec())
}

fn read_legacy_event(
    r: &mut Reader<'_>,
    total: usize,
    num: u32,
    limits: &Limits,
) -> Result<Event, EventLogError> {
    let offset = total - r.left();
    let (pcr, event_type) = read_header(r, num, offset)?;
    let digest = r
        .take(SHA1_LEN, "event.digest (SHA-1)")
        .map_err(wire(num, offset))?
        .to_vec();
    let data = read_data(r, num, offset, limits)?;
    Ok(Event {
        num,
        offset,
        pcr,
        event_type,
        digests: vec![EventDigest {
            alg_id: HashAlg::Sha1.to_tpm(),
            digest,
        }],
        data,
    })
}

fn read_agile_event(
    r: &mut Reader<'_>,
    total: usize,
    num: u32,
    spec: &SpecId,
    limits: &Limits,
) -> Result<Event, EventLogError> {
    let offset = total - r.left();
    let (pcr, event_type) = read_header(r, num, offset)?;
    let count = r
        .u32_le("TPML_DIGEST_VALUES.count")
        .map_err(wire(num, offset))?;
    let invalid = |reason: String| EventLogError::Invalid {
        num,
        offset,
        reason,
    };
    if count == 0 || count as usize > spec.algorithms.len() {
        return Err(invalid(format!(
            "digest count {count}: the Spec ID event lists {} banks",
            spec.algorithms.len()
        )));
    }
    let mut digests: Vec<EventDigest> = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let alg_id = r.u16_le("TPMT_HA.hashAlg").map_err(wire(num, offset))?;
        let bank = spec
            .algorithms
            .iter()
            .find(|a| a.alg_id == alg_id)
            .ok_or_else(|| {
                invalid(format!(
                    "digest algorithm {alg_id:#06x} is not among the Spec ID event's banks"
                ))
            })?;
        if digests.iter().any(|d| d.alg_id == alg_id) {
            return Err(invalid(format!(
                "digest algorithm {alg_id:#06x} appears twice"
            )));
        }
        let digest = r
            .take(usize::from(bank.digest_size), "TPMT_HA.digest")
            .map_err(wire(num, offset))?
            .to_vec();
        digests.push(EventDigest { alg_id, digest });
    }
    let data = read_data(r, num, offset, limits)?;
    Ok(Event {
        num,
        offset,
        pcr,
        event_type,
        digests,
        data,
    })
}

fn parse_spec_id(event: &Event) -> Result<SpecId, EventLogError> {
    let (num, offset) = (event.num, event.offset);
    let mut r = Reader::new(&event.data);
    let w = wire(num, offset);
    r.take(SPEC_ID_SIGNATURE.len(), "SpecID.signature")
        .map_err(&w)?;
    let platform_class = r.u32_le("SpecID.platformClass").map_err(&w)?;
    let spec_version_minor = r.u8("SpecID.specVersionMinor").map_err(&w)?;
    let spec_version_major = r.u8("SpecID.specVersionMajor").map_err(&w)?;
    let spec_errata = r.u8("SpecID.specErrata").map_err(&w)?;
    let uintn_size = r.u8("SpecID.uintnSize").map_err(&w)?;
    let n = r.u32_le("SpecID.numberOfAlgorithms").map_err(&w)?;
    if n == 0 || n > MAX_ALGORITHMS {
        return Err(EventLogError::Invalid {
            num,
            offset,
            reason: format!("Spec ID event lists {n} algorithms (1 to {MAX_ALGORITHMS} expected)"),
        });
    }
    let mut algorithms: Vec<BankInfo> = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let alg_id = r.u16_le("SpecID.algorithmId").map_err(&w)?;
        let digest_size = r.u16_le("SpecID.digestSize").map_err(&w)?;
        if let Some(alg) = HashAlg::from_tpm(alg_id) {
            if usize::from(digest_size) != alg.digest_len() {
                return Err(EventLogError::Invalid {
                    num,
                    offset,
                    reason: format!(
                        "Spec ID event gives {alg:?} a digest size of {digest_size}, not {}",
                        alg.digest_len()
                    ),
                });
            }
        }
        if digest_size == 0 || digest_size > 64 || algorithms.iter().any(|a| a.alg_id == alg_id) {
            return Err(EventLogError::Invalid {
                num,
                offset,
                reason: format!(
                    "Spec ID event: algorithm {alg_id:#06x} with digest size {digest_size} is invalid or listed twice"
                ),
            });
        }
        algorithms.push(BankInfo {
            alg_id,
            digest_size,
        });
    }
    let vendor_len = usize::from(r.u8("SpecID.vendorInfoSize").map_err(&w)?);
    // What the event holds of vendorInfo; the caller reads the rest, if any,
    // from after the event (see `SpecId::vendor_info_outside_event`).
    let inside = vendor_len.min(r.left());
    let vendor_info = r.take(inside, "SpecID.vendorInfo").map_err(&w)?.to_vec();
    r.expect_empty("SpecID").map_err(&w)?;
    Ok(SpecId {
        platform_class,
        spec_version_major,
        spec_version_minor,
        spec_errata,
        uintn_size,
        algorithms,
        vendor_info,
        vendor_info_outside_event: vendor_len - inside,
    })
}

fn note_startup_locality(slot: &mut Option<u8>, event: &Event) -> Result<(), EventLogError> {
    if event.event_type != EV_NO_ACTION || !event.data.starts_with(STARTUP_LOCALITY) {
        return Ok(());
    }
    let invalid = |reason: &str| EventLogError::Invalid {
        num: event.num,
        offset: event.offset,
        reason: reason.to_string(),
    };
    if event.pcr != 0 {
        return Err(invalid("StartupLocality event must be logged for PCR 0"));
    }
    let locality = match event.data.get(STARTUP_LOCALITY.len()..) {
        Some([l]) => *l,
        _ => return Err(invalid("StartupLocality event data must be 17 bytes")),
    };
    if !matches!(locality, 0 | 3 | 4) {
        return Err(invalid("StartupLocality must be 0, 3 or 4"));
    }
    if slot.replace(locality).is_some() {
        return Err(invalid("a second StartupLocality event"));
    }
    Ok(())
}

/// Writes a log back in its format: `parse(encode(log)) == log` (without
/// trailing padding). Used to build edited logs in tests and tools.
pub fn encode(log: &EventLog) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, event) in log.events.iter().enumerate() {
        out.extend_from_slice(&event.pcr.to_le_bytes());
        out.extend_from_slice(&event.event_type.to_le_bytes());
        let legacy_framing = i == 0 || log.format == LogFormat::Sha1Legacy;
        if legacy_framing {
            let mut sha1 = [0u8; SHA1_LEN];
            if let Some(d) = event.digests.first() {
                for (dst, src) in sha1.iter_mut().zip(&d.digest) {
                    *dst = *src;
                }
            }
            out.extend_from_slice(&sha1);
        } else {
            out.extend_from_slice(
                &u32::try_from(event.digests.len())
                    .unwrap_or(u32::MAX)
                    .to_le_bytes(),
            );
            for d in &event.digests {
                out.extend_from_slice(&d.alg_id.to_le_bytes());
                out.extend_from_slice(&d.digest);
            }
        }
        out.extend_from_slice(
            &u32::try_from(event.data.len())
                .unwrap_or(u32::MAX)
                .to_le_bytes(),
        );
        out.extend_from_slice(&event.data);
        if i == 0 {
            if let Some(spec) = &log.spec_id {
                let n = spec.vendor_info.len();
                let outside = spec.vendor_info_outside_event.min(n);
                out.extend_from_slice(spec.vendor_info.get(n - outside..).unwrap_or_default());
            }
        }
    }
    out
}

/// The PCR values a log replays to, per bank.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Replay {
    /// Per bank, per PCR touched by at least one extended event, the final value.
    pub banks: BTreeMap<HashAlg, BTreeMap<u32, Vec<u8>>>,
    /// Banks the log carries that this build cannot hash (e.g. SM3), by TPM alg id.
    pub unsupported_banks: Vec<u16>,
    /// Per bank, extended events that carried no digest for it (the bank's replay
    /// then cannot match the TPM; the events are named so a person can look).
    pub missing_digests: BTreeMap<HashAlg, Vec<u32>>,
}

impl Replay {
    /// The replayed value of `pcr` in `bank`, if the log extended it.
    pub fn pcr(&self, bank: HashAlg, pcr: u32) -> Option<&[u8]> {
        self.banks
            .get(&bank)
            .and_then(|b| b.get(&pcr))
            .map(Vec::as_slice)
    }
}

/// The value a PCR holds after TPM2_Startup, before any extend.
pub fn initial_pcr_value(bank: HashAlg, pcr: u32, startup_locality: Option<u8>) -> Vec<u8> {
    let len = bank.digest_len();
    // PC Client PTP: PCRs 17-22 reset to all ones; only a dynamic launch zeroes them.
    let mut v = if (17..=22).contains(&pcr) {
        vec![0xff; len]
    } else {
        vec![0; len]
    };
    if pcr == 0 {
        if let (Some(l), Some(last)) = (startup_locality, v.last_mut()) {
            *last = l;
        }
    }
    v
}

/// `new = H(old || digest)` in `bank`.
pub fn extend(bank: HashAlg, old: &[u8], digest: &[u8]) -> Vec<u8> {
    fn h<D: sha2::Digest>(old: &[u8], digest: &[u8]) -> Vec<u8> {
        let mut d = D::new();
        d.update(old);
        d.update(digest);
        d.finalize().to_vec()
    }
    match bank {
        HashAlg::Sha1 => h::<sha1::Sha1>(old, digest),
        HashAlg::Sha256 => h::<sha2::Sha256>(old, digest),
        HashAlg::Sha384 => h::<sha2::Sha384>(old, digest),
        HashAlg::Sha512 => h::<sha2::Sha512>(old, digest),
    }
}

/// `H(data)` in `bank`.
pub fn hash(bank: HashAlg, data: &[u8]) -> Vec<u8> {
    match bank {
        HashAlg::Sha1 => sha1::Sha1::digest(data).to_vec(),
        HashAlg::Sha256 => sha2::Sha256::digest(data).to_vec(),
        HashAlg::Sha384 => sha2::Sha384::digest(data).to_vec(),
        HashAlg::Sha512 => sha2::Sha512::digest(data).to_vec(),
    }
}

/// Replays the log into every bank it carries.
pub fn replay(log: &EventLog) -> Replay {
    replay_banks(log, |_| true)
}

/// [`replay`] of one bank only (what the verifier compares with a sha256
/// quote): the other banks' hashing is not done.
pub fn replay_bank(log: &EventLog, bank: HashAlg) -> Replay {
    replay_banks(log, |b| b == bank.to_tpm())
}

fn replay_banks(log: &EventLog, wanted: impl Fn(u16) -> bool) -> Replay {
    let mut out = Replay::default();
    for alg_id in log.banks().into_iter().filter(|b| wanted(*b)) {
        let Some(bank) = HashAlg::from_tpm(alg_id) else {
            out.unsupported_banks.push(alg_id);
            continue;
        };
        let mut pcrs: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
        for event in log.events.iter().filter(|e| !e.is_no_action()) {
            let Some(digest) = event.digest(bank) else {
                out.missing_digests.entry(bank).or_default().push(event.num);
                continue;
            };
            let value = pcrs
                .entry(event.pcr)
                .or_insert_with(|| initial_pcr_value(bank, event.pcr, log.startup_locality));
            *value = extend(bank, value, digest);
        }
        out.banks.insert(bank, pcrs);
    }
    out
}

/// For a PCR whose replay differs from the quoted value: the first event of
/// that PCR after which the log no longer leads to the quoted value, when the
/// quoted value is an intermediate state of the log (the log has events the
/// quote does not cover). `None` when no prefix of the log reaches the value.
pub fn first_event_past_quoted(
    log: &EventLog,
    bank: HashAlg,
    pcr: u32,
    quoted: &[u8],
) -> Option<u32> {
    let mut value = initial_pcr_value(bank, pcr, log.startup_locality);
    let mut reached = value == quoted;
    for event in log
        .events
        .iter()
        .filter(|e| e.pcr == pcr && !e.is_no_action())
    {
        if reached {
            return Some(event.num);
        }
        let digest = event.digest(bank)?;
        value = extend(bank, &value, digest);
        reached = value == quoted;
    }
    None
}

/// Whether an event's data is proven by its digests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum DataCheck {
    /// The spec makes this event's digest the hash of its data, and every digest
    /// in a bank we can compute matches: the decoded content may be relied on.
    Verified,
    /// The digest should be the hash of the data but is not, in `bank`: the data
    /// is not what was measured, and nothing decoded from it may be trusted.
    Mismatch { bank: String },
    /// The digest covers something else (an image, a firmware volume): the data is
    /// descriptive only, and policies judge such events by digest.
    NotDigestOfData,
}

/// Checks an event's data against its digests. Which events are digests of
/// their data is [`efi::data_is_digested`]; `EV_EFI_VARIABLE_BOOT` may carry the
/// hash of the variable's data only (EDK2 does this); an `EV_IPL` is checked
/// against the bytes its boot loader hashes ([`efi::ipl_measured_bytes`]).
pub fn check_event_data(event: &Event) -> DataCheck {
    let (full, alt): (&[u8], Option<&[u8]>) = if event.event_type == EV_IPL {
        match efi::ipl_measured_bytes(&event.data) {
            Some(bytes) => (bytes, None),
            None => return DataCheck::NotDigestOfData,
        }
    } else if efi::data_is_digested(event.event_type) {
        let alt = (event.event_type == EV_EFI_VARIABLE_BOOT)
            .then(|| efi::variable_data_only(&event.data))
            .flatten();
        (&event.data, alt)
    } else {
        return DataCheck::NotDigestOfData;
    };
    for d in &event.digests {
        let Some(bank) = HashAlg::from_tpm(d.alg_id) else {
            continue;
        };
        let ok = hash(bank, full) == d.digest || alt.is_some_and(|a| hash(bank, a) == d.digest);
        if !ok {
            return DataCheck::Mismatch {
                bank: format!("{bank:?}").to_lowercase(),
            };
        }
    }
    DataCheck::Verified
}

#[cfg(test)]
pub(crate) mod tests;
