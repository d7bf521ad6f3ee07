//! What can go wrong talking to the TPM, worded for the operator who has to act on it.

use std::path::PathBuf;

/// Every failure of [`super::Tpm`]. No tss-esapi type appears here: TSS errors are
/// carried as text, together with the TPM command that produced them.
#[derive(Debug, thiserror::Error)]
pub enum TpmError {
    /// The TCTI string did not parse or the TPM behind it could not be opened.
    #[error(
        "cannot open the TPM through TCTI `{tcti}`: {reason}; check the `tcti` setting \
         (e.g. `device:/dev/tpmrm0`, `swtpm:host=127.0.0.1,port=2321`), that the TPM or \
         simulator is reachable, and that this user may open it"
    )]
    Tcti { tcti: String, reason: String },

    /// No EK certificate is provisioned at the NV index.
    #[error(
        "the TPM has no EK certificate at NV index {index:#010x}; the TPM manufacturer \
         did not provision one: write the EK certificate there (tpm2_nvdefine + tpm2_nvwrite) \
         or use a TPM that has one"
    )]
    NoEkCertificate { index: u32 },

    /// The NV index holds something that is not a DER certificate.
    #[error(
        "the EK certificate at NV index {index:#010x} is not DER: {reason}; the index was \
         overwritten or provisioned in another format, re-provision the EK certificate"
    )]
    EkCertificate { index: u32, reason: String },

    /// The state's AK was made under another EK than the one asked for.
    #[error(
        "the attestation key in {} was made under the {kept} EK, but the {asked} EK was asked \
         for (`ek` setting or --ek); an AK loads only under its own EK. Keep `ek = \"{kept}\"` \
         (or `auto`), or enroll anew under the other EK: another EK is another identity, so the \
         operator removes the node first (assay-verifier node remove) and the state directory \
         is moved aside",
        state_dir.display()
    )]
    EkChoice {
        state_dir: PathBuf,
        kept: super::EkKind,
        asked: super::EkKind,
    },

    /// The stored AK could not be created or loaded by this TPM.
    #[error(
        "the attestation key in {} could not be {action} by this TPM: {reason}; if the TPM \
         was cleared or replaced, delete ak.pub and ak.priv there and enroll the node again",
        state_dir.display()
    )]
    Ak {
        state_dir: PathBuf,
        action: &'static str,
        reason: String,
    },

    /// TPM2_ActivateCredential failed: the credential was not made for this EK and AK.
    #[error(
        "credential activation failed: {reason}; the verifier's credential was not made for \
         this TPM's EK and this AK (was the AK re-created after enrollment started?)"
    )]
    Activate { reason: String },

    /// The quote could not be made.
    #[error("quote failed: {reason}")]
    Quote { reason: String },

    /// A PCR index outside the TPM's sha256 bank.
    #[error("PCR {index} cannot be used: {reason}")]
    Pcr { index: u32, reason: String },

    /// The AK state files are missing, partial, unreadable or corrupt.
    #[error(
        "attestor state file {} is unusable: {reason}; to re-enroll with a new attestation \
         key, delete ak.pub and ak.priv in that directory",
        path.display()
    )]
    State { path: PathBuf, reason: String },

    /// Any other TSS/TPM failure, with the operation it happened in.
    #[error("TPM operation `{op}` failed: {reason}")]
    Tss { op: &'static str, reason: String },
}

impl TpmError {
    pub(crate) fn tss(op: &'static str) -> impl FnOnce(tss_esapi::Error) -> TpmError {
        move |e| TpmError::Tss {
            op,
            reason: e.to_string(),
        }
    }
}
