//! `eventlog FILE [--replay]`: a UEFI event log as `tpm2_eventlog` would show
//! it, with each event's data decoded and checked against its digest.

use std::path::PathBuf;

use anyhow::Context as _;
use assay_core::eventlog::efi;
use assay_core::eventlog::uefi::{self, check_event_data, event_type_name, DataCheck, EventLog};
use assay_core::tpm::public::HashAlg;
use clap::Args;
use serde_json::{json, Value};

use super::output::{out, outln, Output};

/// Largest event log read.
const MAX_LOG_BYTES: u64 = 64 << 20;

#[derive(Args)]
pub struct EventlogArgs {
    /// The log (e.g. /sys/kernel/security/tpm0/binary_bios_measurements).
    file: PathBuf,
    /// Print the replayed PCRs instead of the events.
    #[arg(long)]
    replay: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

pub fn run(a: EventlogArgs) -> anyhow::Result<()> {
    let bytes = assay_verifier::files::read_capped(&a.file, MAX_LOG_BYTES)?;
    let log = uefi::parse(&bytes, &Default::default())
        .with_context(|| format!("{}", a.file.display()))?;
    match (a.replay, a.output) {
        (true, Output::Json) => outln!("{}", serde_json::to_string_pretty(&replay_json(&log))?),
        (true, Output::Text) => {
            let v = replay_json(&log);
            for (bank, pcrs) in v["pcrs"].as_object().into_iter().flatten() {
                outln!("{bank}:");
                let mut pcrs: Vec<(u32, &Value)> = pcrs
                    .as_object()
                    .into_iter()
                    .flatten()
                    .filter_map(|(k, v)| Some((k.parse().ok()?, v)))
                    .collect();
                pcrs.sort_by_key(|(k, _)| *k);
                for (i, value) in pcrs {
                    outln!("  {i:<2} : 0x{}", value.as_str().unwrap_or_default());
                }
            }
        }
        (false, Output::Json) => outln!("{}", serde_json::to_string_pretty(&eventlog_json(&log))?),
        (false, Output::Text) => out!("{}", eventlog_text(&log)),
    }
    Ok(())
}

/// Bank names as `tpm2_eventlog` prints them.
fn bank_name(bank: HashAlg) -> &'static str {
    match bank {
        HashAlg::Sha1 => "sha1",
        HashAlg::Sha256 => "sha256",
        HashAlg::Sha384 => "sha384",
        HashAlg::Sha512 => "sha512",
    }
}

/// `{"pcrs": {"sha256": {"0": "<hex>", …}, …}}` for every bank the log carries
/// that this build can hash, as `tpm2_eventlog` reports them.
fn replay_json(log: &EventLog) -> Value {
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
fn describe_event_data(event_type: u32, data: &[u8]) -> String {
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
fn eventlog_text(log: &EventLog) -> String {
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
fn eventlog_json(log: &EventLog) -> Value {
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
