//! What a UEFI event log says about the boot, read the same way by the verifier
//! (which then asks whether each fact is proven by the quote) and by reference
//! policy generation (which writes the facts of a known-good node down).
//!
//! Nothing here decides trust: callers check the event's PCR replay and
//! [`super::uefi::check_event_data`] before relying on a fact.

use super::efi::{
    self, EventData, SignatureValue, TextEncoding, VariableData, VariableValue,
    EV_EFI_BOOT_SERVICES_APPLICATION, EV_EFI_PLATFORM_FIRMWARE_BLOB,
    EV_EFI_PLATFORM_FIRMWARE_BLOB2, EV_EFI_VARIABLE_DRIVER_CONFIG, EV_IPL, EV_S_CRTM_VERSION,
};
use super::uefi::{Event, EventLog};

/// The PCR the PC Client profile puts Secure Boot configuration in.
pub const SECURE_BOOT_PCR: u32 = 7;
/// The PCR boot applications (boot loaders, shim, UKIs) are measured into.
pub const BOOT_APPLICATION_PCR: u32 = 4;

/// The last `EV_EFI_VARIABLE_DRIVER_CONFIG` event in PCR 7 for the variable
/// `name` (`SecureBoot`, `PK`, `KEK`, `db`, `dbx`), decoded.
pub fn config_variable<'a>(log: &'a EventLog, name: &str) -> Option<(&'a Event, VariableData)> {
    let mut found = None;
    for e in log
        .events
        .iter()
        .filter(|e| e.pcr == SECURE_BOOT_PCR && e.event_type == EV_EFI_VARIABLE_DRIVER_CONFIG)
    {
        // Decode the value of the last event naming `name` only.
        if efi::variable::name_of(&e.data).is_some_and(|n| n == name) {
            found = Some(e);
        }
    }
    let e = found?;
    match efi::decode(e.event_type, &e.data) {
        Ok(EventData::Variable(v)) => Some((e, v)),
        _ => None,
    }
}

/// The entries of a signature database variable, each as the SHA-256 a policy
/// names it by (an X.509 certificate by the hash of its DER, a SHA-256 entry by
/// itself) and a description for people. `None` if the value is not a list of
/// EFI signature lists; entries of other types are skipped.
pub fn signature_entries(value: &VariableValue) -> Option<Vec<([u8; 32], String)>> {
    let VariableValue::SignatureLists { lists } = value else {
        return None;
    };
    Some(
        lists
            .iter()
            .flat_map(|l| l.signatures.iter())
            .filter_map(|s| match &s.value {
                SignatureValue::X509(cert) => Some((
                    cert.sha256,
                    format!(
                        "X.509 {}",
                        cert.subject.as_deref().unwrap_or("(unreadable subject)")
                    ),
                )),
                SignatureValue::Sha256 { digest } => Some((*digest, "SHA-256 hash".to_string())),
                SignatureValue::Other { .. } => None,
            })
            .collect(),
    )
}

/// The Secure Boot state the `SecureBoot` variable's value states, if it is one.
pub fn secure_boot_state(value: &VariableValue) -> Option<bool> {
    match value {
        VariableValue::SecureBoot { enabled } => Some(*enabled),
        _ => None,
    }
}

/// `EV_S_CRTM_VERSION` events with their decoded version text (`Err` with the
/// reason if it does not decode).
pub fn crtm_versions(log: &EventLog) -> Vec<(&Event, Result<String, String>)> {
    log.events
        .iter()
        .filter(|e| e.event_type == EV_S_CRTM_VERSION)
        .map(|e| {
            let v = match efi::decode(e.event_type, &e.data) {
                Ok(EventData::CrtmVersion(v)) => Ok(v.to_string()),
                Ok(other) => Err(format!("unexpected CRTM version data {other:?}")),
                Err(err) => Err(err.to_string()),
            };
            (e, v)
        })
        .collect()
}

/// `EV_EFI_PLATFORM_FIRMWARE_BLOB(2)` events.
pub fn is_firmware_blob(e: &Event) -> bool {
    matches!(
        e.event_type,
        EV_EFI_PLATFORM_FIRMWARE_BLOB | EV_EFI_PLATFORM_FIRMWARE_BLOB2
    )
}

/// Boot applications: `EV_EFI_BOOT_SERVICES_APPLICATION` in PCR 4 (their
/// digest is the PE image's Authenticode hash).
pub fn is_boot_application(e: &Event) -> bool {
    e.pcr == BOOT_APPLICATION_PCR && e.event_type == EV_EFI_BOOT_SERVICES_APPLICATION
}

/// The device path of an image load event, as text, if it has one.
pub fn image_path(e: &Event) -> Option<String> {
    match efi::decode(e.event_type, &e.data) {
        Ok(EventData::ImageLoad(img)) => img.device_path.text,
        _ => None,
    }
}

/// Kernel command lines measured by the boot loader: GRUB's
/// `kernel_cmdline: …` strings (PCR 8) and systemd-stub's / systemd-boot's
/// UTF-16 command lines (PCR 12, or 8).
pub fn kernel_cmdlines(log: &EventLog) -> Vec<(&Event, String)> {
    let mut out = Vec::new();
    // Only GRUB's prefixed ASCII strings and NUL-terminated UTF-16 text can
    // be command lines: the other EV_IPL events (every GRUB command) are not
    // decoded at all.
    let candidate =
        |e: &&Event| e.data.starts_with(b"kernel_cmdline: ") || e.data.ends_with(&[0, 0]);
    for e in log
        .events
        .iter()
        .filter(|e| e.event_type == EV_IPL)
        .filter(candidate)
    {
        let Ok(EventData::Ipl(ipl)) = efi::decode(e.event_type, &e.data) else {
            continue;
        };
        let text = ipl.text.trim_end_matches('\0');
        if let Some(rest) = text.strip_prefix("kernel_cmdline: ") {
            out.push((e, rest.to_string()));
        } else if ipl.encoding == TextEncoding::Utf16le && (e.pcr == 12 || e.pcr == 8) {
            out.push((e, text.to_string()));
        }
    }
    out
}

/// Per PCR 0-7, the event types logged after that PCR's separator, in order.
pub fn after_separator(log: &EventLog) -> Vec<(&Event, u32)> {
    let mut separated = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for e in log
        .events
        .iter()
        .filter(|e| e.pcr <= 7 && !e.is_no_action())
    {
        if e.event_type == efi::EV_SEPARATOR {
            separated.insert(e.pcr);
        } else if separated.contains(&e.pcr) {
            out.push((e, e.event_type));
        }
    }
    out
}
