//! Event logs: the measurements behind PCR values.
//!
//! - [`uefi`]: the TCG PC Client firmware event log (SHA-1 legacy and crypto-agile
//!   formats), replay into every bank, and the digest-vs-data check that decides
//!   which event contents policy may trust.
//! - [`efi`]: decoders for the event data policies judge (UEFI variables, EFI
//!   signature lists, device paths, image load events, firmware blobs, GPT).
//! - [`event_type`]: the `EV_*` event type numbers and their spec names (one
//!   table, re-exported by `uefi` and `efi`).
//! - [`ima`]: Linux IMA runtime measurement logs (ascii and binary; templates
//!   ima, ima-ng, ima-sig) and their replay into PCR 10.
//! - [`cel`]: the TCG Canonical Event Log of container measurements (runtime
//!   files, images, container starts) and its replay into one PCR.
//! - [`facts`]: what a replayed UEFI log says about the boot (Secure Boot
//!   variables, key databases, CRTM, boot applications, kernel command lines),
//!   shared by the policy checks and the reference-policy generator.
//!
//! Every parser here is bounded: sizes are checked against what is left and a
//! fixed maximum before anything is allocated, and peer input can only produce
//! an error, never a panic.

pub mod cel;
pub mod efi;
pub mod event_type;
pub mod facts;
pub mod ima;
pub mod uefi;

/// Serializes bytes as lowercase hex (digests, raw event data in JSON output).
pub fn ser_hex<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(bytes))
}
