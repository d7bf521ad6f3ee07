//! Commands that work on files, without a running verifier: print and replay an
//! event log, verify an evidence bundle, and build a reference policy from one.

use std::collections::BTreeMap;

use anyhow::{bail, Context};
use assay_core::eventlog::uefi::{self, check_event_data, event_type_name, DataCheck, EventLog};
use assay_core::eventlog::{efi, ima};
use assay_core::policy::Policy;
use assay_core::tpm::public::{parse_tpm2b_public, HashAlg};
use assay_core::verdict::Verdict;
use assay_core::verify::{verify_quote, QuoteCheck, QuoteEvidence};
use assay_proto::v1 as pb;
use prost::Message;
use serde_json::{json, Value};

/// Largest bundle read (a quote, two logs and some certificates).
pub const MAX_BUNDLE_BYTES: u64 = 64 << 20;

/// Bank names as `tpm2_eventlog` prints them.
pub fn bank_name(bank: HashAlg) -> &'static str {
    match bank {
        HashAlg::Sha1 => "sha1",
        HashAlg::Sha256 => "sha256",
        HashAlg::Sha384 => "sha384",
        HashAlg::Sha512 => "sha512",
    }
}

/// `{"pcrs": {"sha256": {"0": "<hex>", …}, …}}` for every bank the log carries
/// that this build can hash, as `tpm2_eventlog` reports them.
pub fn replay_json(log: &EventLog) -> Value {
    let replay = uefi::replay(log);
    let mut banks = serde_json::Map::new();
    for (bank, pcrs) in &replay.banks {
        let values: serde_json::Map<String, Value> = pcrs
            .iter()
            .map(|(i, v)| (i.to_string(), Value::String(hex::encode(v))))
            .collect();
        banks.insert(bank_name(*bank).to_string(), Value::Object(values));
    }
    let mut out = json!({ "pcrs": banks });
    if !replay.unsupported_banks.is_empty() {
        out["unsupported_banks"] = json!(replay
            .unsupported_banks
            .iter()
            .map(|a| format!("{a:#06x}"))
            .collect::<Vec<_>>());
    }
    out
}

/// A one-line summary of what an event's data says.
pub fn describe_event_data(event_type: u32, data: &[u8]) -> String {
    use efi::{Authority, EventData as D, PostCode, SignatureValue, VariableValue as V};
    let clip = |s: &str| -> String {
        let s = s.replace(['\n', '\r'], " ");
        if s.chars().count() > 160 {
            format!("{}…", s.chars().take(160).collect::<String>())
        } else {
            s
        }
    };
    let cert = |c: &efi::Certificate| {
        format!(
            "X.509 sha256:{} {}",
            hex::encode(c.sha256),
            c.subject.as_deref().unwrap_or("(unreadable)")
        )
    };
    let decoded = match efi::decode(event_type, data) {
        Ok(d) => d,
        Err(e) => return format!("(undecodable: {e})"),
    };
    match decoded {
        D::Variable(v) => {
            let value = match &v.value {
                V::SecureBoot { enabled } => format!("enabled={enabled}"),
                V::SignatureLists { lists } => {
                    let n: usize = lists.iter().map(|l| l.signatures.len()).sum();
                    let first = lists
                        .iter()
                        .flat_map(|l| l.signatures.iter())
                        .find_map(|s| match &s.value {
                            SignatureValue::X509(c) => Some(cert(c)),
                            _ => None,
                        })
                        .map(|c| format!(", first {c}"))
                        .unwrap_or_default();
                    format!("{} lists, {n} entries{first}", lists.len())
                }
                V::BootOrder { order } => {
                    let o: Vec<String> = order.iter().map(|b| format!("Boot{b:04X}")).collect();
                    o.join(",")
                }
                V::LoadOption(o) => format!(
                    "{:?}{} {}",
                    o.description,
                    if o.active { "" } else { " (inactive)" },
                    o.device_path
                        .text
                        .as_deref()
                        .unwrap_or("(broken device path)")
                ),
                V::Authority(Authority::Signature { entry }) => match &entry.value {
                    SignatureValue::X509(c) => cert(c),
                    SignatureValue::Sha256 { digest } => {
                        format!("image hash sha256:{}", hex::encode(digest))
                    }
                    SignatureValue::Other { .. } => "signature of another type".to_string(),
                },
                V::Authority(Authority::Certificate { certificate }) => cert(certificate),
                V::Authority(Authority::Text { text }) => format!("{:?}", clip(text)),
                V::Authority(Authority::Other) | V::Other => format!("{} bytes", v.data.len()),
            };
            format!("{} {}: {}", v.vendor_guid, v.name, value)
        }
        D::ImageLoad(i) => format!(
            "image {} bytes at {:#x}: {}",
            i.image_length_in_memory,
            i.image_location_in_memory,
            i.device_path.text.as_deref().unwrap_or("(no device path)")
        ),
        D::FirmwareBlob(b)
        | D::PostCode(PostCode::Blob(b))
        | D::CrtmContents(PostCode::Blob(b)) => format!(
            "{}base {:#x}, length {:#x}",
            b.description
                .map(|d| format!("{d:?}, "))
                .unwrap_or_default(),
            b.base,
            b.length
        ),
        D::HandoffTables(t) => format!("{} configuration tables", t.tables.len()),
        D::Gpt(g) => {
            let names: Vec<String> = g
                .partitions
                .iter()
                .map(|p| format!("{:?}", p.name))
                .collect();
            format!(
                "GPT disk {}, partitions {}",
                g.header.disk_guid,
                clip(&names.join(", "))
            )
        }
        D::CrtmVersion(v) => format!("{:?}", v.to_string()),
        D::PostCode(PostCode::Text(t))
        | D::CrtmContents(PostCode::Text(t))
        | D::Action(t)
        | D::Ipl(t) => {
            format!("{:?}", clip(&t.text))
        }
        D::Separator(s) => format!("{s:?}"),
        D::TaggedEvents(t) => {
            let ids: Vec<String> = t
                .iter()
                .map(|e| format!("tag {:#x} ({} bytes)", e.id, e.data.len()))
                .collect();
            ids.join(", ")
        }
        D::StartupLocality(l) => format!("StartupLocality {l}"),
        D::Raw => format!("{} bytes", data.len()),
    }
}

/// The events, one per line (or JSON), with digests, decoded data and whether
/// the data is proven by the digest.
pub fn eventlog_text(log: &EventLog) -> String {
    let mut out = format!(
        "format: {:?}; banks: {}; events: {}{}\n",
        log.format,
        log.banks()
            .iter()
            .map(|a| HashAlg::from_tpm(*a)
                .map_or_else(|| format!("{a:#06x}"), |b| bank_name(b).to_string()))
            .collect::<Vec<_>>()
            .join(", "),
        log.events.len(),
        log.startup_locality
            .map(|l| format!("; startup locality {l}"))
            .unwrap_or_default()
    );
    if let Some(spec) = log
        .spec_id
        .as_ref()
        .filter(|s| s.vendor_info_outside_event > 0)
    {
        out.push_str(&format!(
            "note: {} bytes of the Spec ID event's vendorInfo lie after the event, outside its eventDataSize (read as tpm2_eventlog reads them)\n",
            spec.vendor_info_outside_event
        ));
    }
    for e in &log.events {
        let name = event_type_name(e.event_type)
            .map_or_else(|| format!("{:#x}", e.event_type), str::to_string);
        let digest = e
            .digest(HashAlg::Sha256)
            .or_else(|| e.digests.first().map(|d| d.digest.as_slice()))
            .map(hex::encode)
            .unwrap_or_default();
        let check = match check_event_data(e) {
            DataCheck::Verified => " [data verified]",
            DataCheck::Mismatch { .. } => " [DATA DOES NOT MATCH DIGEST]",
            DataCheck::NotDigestOfData => "",
        };
        out.push_str(&format!(
            "#{:<4} PCR {:<2} {:<34} {}{}\n       {}\n",
            e.num,
            e.pcr,
            name,
            digest,
            check,
            describe_event_data(e.event_type, &e.data)
        ));
    }
    out
}

/// JSON of the events with decoded data.
pub fn eventlog_json(log: &EventLog) -> Value {
    let events: Vec<Value> = log
        .events
        .iter()
        .map(|e| {
            json!({
                "num": e.num,
                "pcr": e.pcr,
                "type": event_type_name(e.event_type).map_or_else(|| format!("{:#x}", e.event_type), str::to_string),
                "type_num": e.event_type,
                "digests": e.digests.iter().map(|d| json!({
                    "alg": HashAlg::from_tpm(d.alg_id).map_or_else(|| format!("{:#06x}", d.alg_id), |b| bank_name(b).to_string()),
                    "digest": hex::encode(&d.digest),
                })).collect::<Vec<_>>(),
                "data_check": check_event_data(e),
                "data": efi::decode(e.event_type, &e.data).map_or_else(
                    |err| json!({"error": err.to_string(), "hex": hex::encode(&e.data)}),
                    |d| serde_json::to_value(d).unwrap_or(Value::Null)),
            })
        })
        .collect();
    json!({
        "format": log.format,
        "spec_id": log.spec_id,
        "startup_locality": log.startup_locality,
        "trailing_zero_bytes": log.trailing_zero_bytes,
        "events": events,
    })
}

/// Reads and decodes an evidence bundle.
pub fn read_bundle(path: &std::path::Path) -> anyhow::Result<pb::EvidenceBundle> {
    let bytes = crate::files::read_capped(path, MAX_BUNDLE_BYTES)?;
    let b = pb::EvidenceBundle::decode(bytes.as_slice())
        .with_context(|| format!("{}: not an Assay evidence bundle", path.display()))?;
    if b.version != 1 {
        bail!(
            "{}: bundle version {} (this verifier reads version 1)",
            path.display(),
            b.version
        );
    }
    if b.evidence.is_none() {
        bail!("{}: the bundle holds no evidence", path.display());
    }
    Ok(b)
}

/// Where the AK that verifies a bundle comes from.
pub enum AkSource {
    /// The AK a verifier enrolled for the node (credential activation proved it).
    Enrolled(Vec<u8>),
    /// The bundle's own AK, on the operator's word (reference boots in a lab).
    Bundle,
}

/// Verifies a bundle's evidence with the core, exactly as the service would
/// (minus nonce single-use, which needs the store).
pub fn verify_bundle(
    bundle: &pb::EvidenceBundle,
    policy: &Policy,
    expected_nonce: Option<&[u8]>,
    ak: &AkSource,
) -> anyhow::Result<Verdict> {
    let ev = bundle
        .evidence
        .as_ref()
        .context("the bundle holds no evidence")?;
    let ak_bytes = match ak {
        AkSource::Enrolled(b) => b.as_slice(),
        AkSource::Bundle => bundle.ak_public.as_slice(),
    };
    let ak = parse_tpm2b_public(ak_bytes).context("AK public area")?;
    let pcrs: Vec<(u32, Vec<u8>)> = ev
        .pcrs_sha256
        .iter()
        .map(|p| (p.index, p.digest.clone()))
        .collect();
    let check = QuoteCheck {
        ak: &ak,
        expected_nonce: expected_nonce.unwrap_or(&ev.nonce),
        previous_clock: None,
        policy,
        cache: None,
    };
    let evidence = QuoteEvidence {
        attest: &ev.attest,
        signature: &ev.signature,
        pcrs_sha256: &pcrs,
        uefi_log: ev.uefi_log.as_deref(),
        ima_log: ev.ima_log.as_deref(),
        cel_log: ev.cel_log.as_deref(),
    };
    Ok(verify_quote(&check, &evidence).verdict)
}

/// Prints a verdict for a person.
pub fn verdict_text(v: &Verdict, policy: &Policy) -> String {
    let mut out = format!(
        "verdict: {} under policy `{}`{} (sha256:{})\n",
        if v.passed { "PASS" } else { "FAIL" },
        policy.name,
        policy
            .version
            .as_ref()
            .map(|v| format!(" version {v}"))
            .unwrap_or_default(),
        v.policy_digest
    );
    for c in &v.claims {
        out.push_str(&format!("  {c}\n"));
    }
    out.push_str(&format!("evidence digest: sha256:{}\n", v.evidence_digest));
    out
}

/// A reference policy from a known-good node's evidence: its UEFI log (Secure
/// Boot state, PK/KEK/db, required dbx, CRTM, firmware blobs, boot applications,
/// kernel command lines, events after the separators) and its IMA log (every
/// measured file with its digest) and its container measurement log (runtime
/// files and images). Review it before use: it allows exactly what this node
/// booted and ran.
pub fn generate_policy(
    name: &str,
    uefi_log: Option<&[u8]>,
    ima_log: Option<&[u8]>,
    cel_log: Option<&[u8]>,
    pcrs: &[(u32, Vec<u8>)],
) -> anyhow::Result<String> {
    let mut out = format!(
        "# Reference policy generated by `assay-verifier policy generate` from a known-good\n\
         # node's evidence. It allows exactly what that node booted: review it, then widen\n\
         # lists (e.g. more boot applications or kernel command lines) as the fleet needs.\n\
         schema = 1\nname = {}\nversion = \"1\"\n",
        toml_str(name)
    );
    if uefi_log.is_none() && ima_log.is_none() && cel_log.is_none() {
        out.push_str("\n[pcrs.sha256]\n");
        for (i, v) in pcrs {
            out.push_str(&format!("{i} = \"{}\"\n", hex::encode(v)));
        }
        return Ok(out);
    }
    if let Some(bytes) = uefi_log {
        let log = uefi::parse(bytes, &uefi::Limits::default()).context("UEFI event log")?;
        // A reference must be self-consistent: the log must replay to the PCR
        // values the node reported with its quote.
        let replay = uefi::replay(&log);
        // (Only the PCRs a generated policy replays: see `reference`.)
        for (i, quoted) in pcrs.iter().filter(|(i, _)| matches!(i, 0..=9 | 12..=14)) {
            if let Some(replayed) = replay.pcr(HashAlg::Sha256, *i) {
                if replayed != quoted.as_slice() {
                    bail!(
                        "the UEFI log replays PCR {i} to {}, but the evidence reports {}: \
                         the log is not the one this TPM measured; no reference policy from it",
                        hex::encode(replayed),
                        hex::encode(quoted)
                    );
                }
            }
        }
        out.push_str(&crate::reference::measured_boot_section(&log));
    }
    if let Some(bytes) = ima_log {
        let log = ima::parse(bytes, &ima::Limits::default()).context("IMA log")?;
        out.push_str(&crate::reference::ima_section(&log));
    }
    if let Some(bytes) = cel_log {
        let log = assay_core::eventlog::cel::parse(bytes, &Default::default())
            .context("container measurement log")?;
        out.push_str(&crate::reference::containers_section(&log));
    }
    Ok(out)
}

/// A TOML basic string.
pub fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// Indexes a verdict's claims for `policy explain`.
pub fn claims_by_id(v: &Verdict) -> BTreeMap<String, Vec<&assay_core::verdict::Claim>> {
    let mut m: BTreeMap<String, Vec<&assay_core::verdict::Claim>> = BTreeMap::new();
    for c in &v.claims {
        m.entry(c.id.clone()).or_default().push(c);
    }
    m
}

/// Longest line `audit verify` reads from an export (one record).
pub const MAX_EXPORT_LINE: usize = 1 << 20;

/// An `audit export` file: its JWKS and checkpoints (read up front: small),
/// and its records, streamed (an export may hold millions).
pub struct Export {
    pub jwks: serde_json::Value,
    pub checkpoints: Vec<crate::audit::Checkpoint>,
    pub records: ExportRecords,
}

/// The records of an export, in file order; stops at the first bad line
/// (see [`ExportRecords::error`]).
pub struct ExportRecords {
    lines: std::io::BufReader<std::fs::File>,
    line_no: usize,
    pub error: Option<String>,
}

/// One bounded line, or None at the end.
fn next_line(
    r: &mut impl std::io::BufRead,
    line_no: &mut usize,
) -> Result<Option<serde_json::Value>, String> {
    use std::io::{BufRead as _, Read as _};
    let mut buf = Vec::new();
    let n = (&mut *r)
        .take(MAX_EXPORT_LINE as u64 + 1)
        .read_until(b'\n', &mut buf)
        .map_err(|e| e.to_string())?;
    if n == 0 {
        return Ok(None);
    }
    *line_no += 1;
    if buf.len() > MAX_EXPORT_LINE {
        return Err(format!(
            "line {line_no}: longer than {MAX_EXPORT_LINE} bytes"
        ));
    }
    serde_json::from_slice(&buf)
        .map(Some)
        .map_err(|e| format!("line {line_no}: {e}"))
}

impl Iterator for ExportRecords {
    type Item = crate::audit::Found;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.error.is_some() {
                return None;
            }
            let v = match next_line(&mut self.lines, &mut self.line_no) {
                Ok(Some(v)) => v,
                Ok(None) => return None,
                Err(e) => {
                    self.error = Some(e);
                    return None;
                }
            };
            if v["type"] != "record" {
                continue;
            }
            match serde_json::from_value::<crate::store::HistoryRecord>(v["record"].clone()) {
                Ok(record) => {
                    return Some(crate::audit::Found {
                        key_seq: record.seq,
                        record,
                    })
                }
                Err(e) => self.error = Some(format!("line {}: not a record: {e}", self.line_no)),
            }
        }
    }
}

/// Opens an export: a first pass for the JWKS and checkpoints, then the records.
pub fn read_export(path: &std::path::Path) -> anyhow::Result<Export> {
    let open = || -> anyhow::Result<std::io::BufReader<std::fs::File>> {
        Ok(std::io::BufReader::new(
            std::fs::File::open(path).with_context(|| format!("{}", path.display()))?,
        ))
    };
    let mut r = open()?;
    let (mut line_no, mut jwks, mut checkpoints) = (0, None, Vec::new());
    while let Some(v) =
        next_line(&mut r, &mut line_no).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
    {
        match v["type"].as_str() {
            Some("jwks") => jwks = Some(v["jwks"].clone()),
            Some("checkpoint") => checkpoints.push(
                serde_json::from_value(v["checkpoint"].clone()).with_context(|| {
                    format!("{}: line {line_no}: not a checkpoint", path.display())
                })?,
            ),
            Some("record") => {}
            _ => bail!(
                "{}: line {line_no}: not an Assay history export line",
                path.display()
            ),
        }
    }
    Ok(Export {
        jwks: jwks.with_context(|| format!("{}: no JWKS line", path.display()))?,
        checkpoints,
        records: ExportRecords {
            lines: open()?,
            line_no: 0,
            error: None,
        },
    })
}

#[cfg(test)]
mod export_tests {
    use super::*;
    use proptest::prelude::*;

    fn run(bytes: &[u8]) -> Result<crate::audit::Report, String> {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.jsonl");
        std::fs::write(&p, bytes).unwrap();
        let mut e = read_export(&p).map_err(|e| e.to_string())?;
        let jwks = e.jwks.clone();
        let r = crate::audit::verify(&mut e.records, &e.checkpoints, &jwks);
        match e.records.error {
            Some(err) => Err(err),
            None => Ok(r),
        }
    }

    #[test]
    fn malformed_truncated_and_oversized_exports_are_errors() {
        let jwks = "{\"type\":\"jwks\",\"jwks\":{\"keys\":[]}}\n";
        assert!(run(b"").unwrap_err().contains("no JWKS"));
        assert!(run(b"{\"type\":\"nope\"}\n")
            .unwrap_err()
            .contains("line 1"));
        assert!(run(format!("{jwks}{{\"type\":\"rec").as_bytes())
            .unwrap_err()
            .contains("line 2"));
        assert!(run(
            format!("{jwks}{{\"type\":\"record\",\"record\":{{\"seq\":\"x\"}}}}\n").as_bytes()
        )
        .unwrap_err()
        .contains("not a record"));
        let long = format!("{jwks}{}\n", " ".repeat(MAX_EXPORT_LINE + 10));
        assert!(run(long.as_bytes()).unwrap_err().contains("longer than"));
        let r = run(jwks.as_bytes()).unwrap();
        assert_eq!((r.records, r.broken), (0, None));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn arbitrary_lines_never_panic(lines in proptest::collection::vec(
            prop_oneof![
                Just("{\"type\":\"jwks\",\"jwks\":{\"keys\":[{\"kid\":\"k\",\"crv\":\"Ed25519\",\"x\":\"AAAA\"}]}}".to_string()),
                Just("{\"type\":\"checkpoint\",\"checkpoint\":{\"seq\":2,\"head_hash\":\"h\",\"time_unix\":1,\"signature\":\"e30..AA\"}}".to_string()),
                (0u64..5, "[a-f0-9]{0,4}").prop_map(|(s, h)| format!(
                    "{{\"type\":\"record\",\"record\":{{\"seq\":{s},\"node_id\":\"n\",\"time_unix\":1,\"passed\":true,\"claims\":[],\"policy_name\":\"p\",\"policy_digest\":\"d\",\"evidence_digest\":\"\",\"prev_hash\":\"{h}\"}}}}")),
                ".{0,40}",
            ],
            0..12,
        )) {
            let _ = run(lines.join("\n").as_bytes());
        }
    }
}
