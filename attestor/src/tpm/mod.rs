//! The attestor's TPM: the only module in Assay that uses tss-esapi.
//!
//! [`Tpm`] owns the ESAPI context. Every method loads what it needs (EK, AK, sessions)
//! and flushes it again before returning, on error paths too, so the TPM's few
//! transient slots are free for the next caller even without a resource manager
//! (swtpm, `device:/dev/tpm0`). Results are plain bytes in TPM wire format
//! (TPM2B_PUBLIC, TPMS_ATTEST, TPMT_SIGNATURE), which is what the verifier parses.
//!
//! The AK is a restricted RSA-2048 RSASSA/SHA-256 signing key under one of the TPM's EKs
//! (see `ekkind`: RSA 2048/3072/4096 or ECC P-256/P-384, from the TCG EK Credential
//! Profile templates); its blobs and the EK's kind live in the state directory (see `state`).

mod ekkind;
mod error;
mod nv;
mod state;

use std::path::Path;
use std::str::FromStr;

use tss_esapi::abstraction::{ak, ek, pcr};
use tss_esapi::attributes::SessionAttributesBuilder;
use tss_esapi::constants::SessionType;
use tss_esapi::handles::{AuthHandle, KeyHandle, ObjectHandle, PcrHandle, SessionHandle};
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, SignatureSchemeAlgorithm};
use tss_esapi::interface_types::session_handles::{AuthSession, PolicySession};
use tss_esapi::structures::{
    Data, Digest, DigestValues, EncryptedSecret, IdObject, PcrSelectionList, PcrSlot, Private,
    Public, SignatureScheme, SymmetricDefinition,
};
use tss_esapi::tcti_ldr::TctiNameConf;
use tss_esapi::traits::{Marshall, UnMarshall};
use tss_esapi::Context;

pub use ekkind::{EkChoice, EkKind};
pub use error::TpmError;

/// How often a quote is retaken when the PCRs change between reading and quoting.
const QUOTE_ATTEMPTS: usize = 3;
/// TPM2B_DATA holds at most 64 bytes of qualifying data.
const MAX_NONCE: usize = 64;
/// PCRs in a PC Client TPM's sha256 bank.
const PCR_COUNT: u32 = 24;

/// The attestation key as the verifier needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AkInfo {
    /// TPM2B_PUBLIC, including its u16 size.
    pub public: Vec<u8>,
    /// The AK's TPM name (nameAlg id + digest of its TPMT_PUBLIC).
    pub name: Vec<u8>,
    /// Whether this call created the AK (first enrollment) rather than loading it.
    pub created: bool,
}

/// A quote and the PCR values it covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuoteResult {
    /// Marshalled TPMS_ATTEST.
    pub attest: Vec<u8>,
    /// Marshalled TPMT_SIGNATURE.
    pub signature: Vec<u8>,
    /// The quoted sha256 PCRs, ascending by index, as read around the quote.
    pub pcrs_sha256: Vec<(u32, Vec<u8>)>,
}

/// The node's TPM. Not `Send`: the ESAPI context is bound to the thread that made it.
pub struct Tpm {
    ctx: Context,
    /// The EK used as the AK's parent and for credential activation.
    ek: EkKind,
}

impl std::fmt::Debug for Tpm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tpm").finish_non_exhaustive()
    }
}

/// For a simulator TCTI, the port layout it assumes, which a wrongly started
/// simulator breaks with nothing but an unrecognized response code.
fn simulator_hint(tcti: &str) -> &'static str {
    if tcti.starts_with("swtpm:") || tcti.starts_with("mssim:") {
        "; the swtpm and mssim TCTIs send commands to `port` and control requests to \
         `port`+1: start swtpm with `--server type=tcp,port=P --ctrl type=tcp,port=P+1` \
         and give `port=P`"
    } else {
        ""
    }
}

impl Tpm {
    /// Opens the TPM behind a TCTI string: `device:/dev/tpmrm0`,
    /// `swtpm:host=127.0.0.1,port=2321`, `mssim:host=…,port=…`, `tabrmd:`.
    pub fn open(tcti: &str) -> Result<Self, TpmError> {
        let fail = |reason: String| TpmError::Tcti {
            tcti: tcti.to_string(),
            reason,
        };
        let conf = TctiNameConf::from_str(tcti)
            .map_err(|e| fail(format!("not a valid TCTI string ({e})")))?;
        let ctx = Context::new(conf).map_err(|e| fail(format!("{e}{}", simulator_hint(tcti))))?;
        Ok(Self {
            ctx,
            ek: EkKind::Rsa2048,
        })
    }

    /// The EK in use (RSA 2048 until [`Tpm::select_ek`] or [`Tpm::use_ek`] says otherwise).
    pub fn ek_kind(&self) -> EkKind {
        self.ek
    }

    /// Uses the EK `kind` from now on (tests; the attestor uses [`Tpm::select_ek`]).
    pub fn use_ek(&mut self, kind: EkKind) {
        self.ek = kind;
    }

    /// Picks the EK for the node whose state is in `state_dir`: the one its AK
    /// was made under, if there is an AK (an AK from before the choice existed
    /// was made under the RSA 2048 EK); otherwise `choice`, where `auto` is
    /// the first kind of [`EkKind::ALL`] whose certificate is in NV, else RSA 2048.
    /// Asking for another kind than the AK's is an error: the AK does not load
    /// under another EK, so that is a new enrollment.
    pub fn select_ek(&mut self, state_dir: &Path, choice: EkChoice) -> Result<EkKind, TpmError> {
        let kept = match ekkind::read_kept(state_dir)? {
            Some(k) => Some(k),
            None if state::read(state_dir)?.is_some() => Some(EkKind::Rsa2048),
            None => None,
        };
        let kind = match (kept, choice) {
            (Some(k), EkChoice::Kind(asked)) if k != asked => {
                return Err(TpmError::EkChoice {
                    state_dir: state_dir.to_path_buf(),
                    kept: k,
                    asked,
                })
            }
            (Some(k), _) => k,
            (None, EkChoice::Kind(k)) => k,
            (None, EkChoice::Auto) => {
                // One GetCapability over the profile's EK certificate indices.
                let defined = nv::defined_in_range(
                    &mut self.ctx,
                    EkKind::FIRST_CERTIFICATE_INDEX,
                    EkKind::LAST_CERTIFICATE_INDEX,
                )?;
                EkKind::ALL
                    .into_iter()
                    .find(|k| defined.contains(&k.certificate_index()))
                    .unwrap_or(EkKind::Rsa2048)
            }
        };
        self.ek = kind;
        Ok(kind)
    }

    /// TPM_PT_MANUFACTURER: the TCG vendor id (e.g. "INTC", "AMD\0" as a u32).
    pub fn manufacturer(&mut self) -> Result<u32, TpmError> {
        self.ctx
            .get_tpm_property(tss_esapi::constants::PropertyTag::Manufacturer)
            .map_err(TpmError::tss("GetCapability(TPM_PT_MANUFACTURER)"))?
            .ok_or(TpmError::Tss {
                op: "GetCapability(TPM_PT_MANUFACTURER)",
                reason: "the TPM reported no manufacturer".into(),
            })
    }

    /// The certificate of the EK in use, exact DER.
    pub fn ek_certificate(&mut self) -> Result<Vec<u8>, TpmError> {
        self.ek_certificate_if_any()?
            .ok_or(TpmError::NoEkCertificate {
                index: self.ek.certificate_index(),
            })
    }

    /// The certificate of the EK in use, or `None` when the TPM holds none in
    /// NV (some firmware TPMs: the vendor publishes it instead).
    pub fn ek_certificate_if_any(&mut self) -> Result<Option<Vec<u8>>, TpmError> {
        nv::read_der_certificate(&mut self.ctx, self.ek.certificate_index())
    }

    /// The CA certificates the TPM holds in its EK chain NV range (Intel PTT
    /// keeps its on-die CA chain there), in index order; empty if none.
    pub fn ek_chain(&mut self) -> Result<Vec<Vec<u8>>, TpmError> {
        nv::read_ek_chain(&mut self.ctx)
    }

    /// The ECC EK certificate: P-256 (NV 0x01c0000a), else P-384 (0x01c00016); `None` if neither.
    pub fn ecc_ek_certificate(&mut self) -> Result<Option<Vec<u8>>, TpmError> {
        for kind in [EkKind::EccP256, EkKind::EccP384] {
            if let Some(der) = nv::read_der_certificate(&mut self.ctx, kind.certificate_index())? {
                return Ok(Some(der));
            }
        }
        Ok(None)
    }

    /// TPM2B_PUBLIC (including size) of the EK in use, from its profile template.
    pub fn ek_public(&mut self) -> Result<Vec<u8>, TpmError> {
        self.with_ek(|ctx, ek| {
            let (public, _, _) = ctx
                .read_public(ek)
                .map_err(TpmError::tss("ReadPublic(EK)"))?;
            tpm2b_public(&public)
        })
    }

    /// Loads the AK stored in `state_dir`, or creates and stores one the first time.
    pub fn load_or_create_ak(&mut self, state_dir: &Path) -> Result<AkInfo, TpmError> {
        let (public, private, created) = self.ak_material(state_dir, true)?;
        let public_bytes = tpm2b_public(&public)?;
        let name = self.with_ek(|ctx, ek| {
            let ak = load_ak(ctx, ek, state_dir, &public, private)?;
            let name = ctx.read_public(ak).map_err(TpmError::tss("ReadPublic(AK)"));
            flush(ctx, ak.into(), "FlushContext(AK)", name)
        })?;
        Ok(AkInfo {
            public: public_bytes,
            name: name.1.value().to_vec(),
            created,
        })
    }

    /// TPM2_ActivateCredential with the EK and the stored AK: returns the secret the
    /// verifier protected with TPM2_MakeCredential for this EK and AK name.
    /// `credential_blob` and `encrypted_secret` are the TPM2B contents, without size.
    pub fn activate_credential(
        &mut self,
        state_dir: &Path,
        credential_blob: &[u8],
        encrypted_secret: &[u8],
    ) -> Result<Vec<u8>, TpmError> {
        let activate = |reason: String| TpmError::Activate { reason };
        let id = IdObject::try_from(credential_blob.to_vec()).map_err(|e| {
            activate(format!(
                "credential blob of {} bytes: {e}",
                credential_blob.len()
            ))
        })?;
        let secret = EncryptedSecret::try_from(encrypted_secret.to_vec()).map_err(|e| {
            activate(format!(
                "encrypted secret of {} bytes: {e}",
                encrypted_secret.len()
            ))
        })?;
        let (public, private, _) = self.ak_material(state_dir, false)?;
        let user_with_auth = self.ek.user_with_auth();
        self.with_ek(|ctx, ek| {
            let ak = load_ak(ctx, ek, state_dir, &public, private)?;
            let r = if user_with_auth {
                // High-range EK: its empty authValue serves for the USER role.
                ctx.execute_with_sessions(
                    (
                        Some(AuthSession::Password),
                        Some(AuthSession::Password),
                        None,
                    ),
                    |c| c.activate_credential(ak, ek, id, secret),
                )
                .map(|d| d.value().to_vec())
                .map_err(|e| TpmError::Activate {
                    reason: e.to_string(),
                })
            } else {
                activate_with_ek_policy(ctx, ek, ak, id, secret)
            };
            flush(ctx, ak.into(), "FlushContext(AK)", r)
        })
    }

    /// TPM2_Quote with the AK over the sha256 PCRs `pcrs_sha256`, qualifying data `nonce`
    /// (at most 64 bytes). Returns the PCR values that were quoted: they are read before
    /// and after the quote, and the quote is retaken if they changed in between.
    pub fn quote(
        &mut self,
        state_dir: &Path,
        nonce: &[u8],
        pcrs_sha256: &[u32],
    ) -> Result<QuoteResult, TpmError> {
        let quote_err = |reason: String| TpmError::Quote { reason };
        if nonce.len() > MAX_NONCE {
            return Err(quote_err(format!(
                "nonce is {} bytes, at most {MAX_NONCE} fit",
                nonce.len()
            )));
        }
        let data = Data::try_from(nonce.to_vec()).map_err(|e| quote_err(format!("nonce: {e}")))?;
        let (selection, indices) = sha256_selection(pcrs_sha256)?;
        let (public, private, _) = self.ak_material(state_dir, false)?;
        let ak = self.with_ek(|ctx, ek| load_ak(ctx, ek, state_dir, &public, private))?;
        let r = quote_consistent(&mut self.ctx, ak, &data, &selection, &indices);
        flush(&mut self.ctx, ak.into(), "FlushContext(AK)", r)
    }

    /// TPM2_PCR_Read of the sha256 bank of PCR `index`.
    pub fn read_pcr_sha256(&mut self, index: u32) -> Result<Vec<u8>, TpmError> {
        let (selection, indices) = sha256_selection(&[index])?;
        let values = read_pcrs(&mut self.ctx, &selection, &indices)?;
        values
            .into_iter()
            .next()
            .map(|(_, v)| v)
            .ok_or_else(|| TpmError::Pcr {
                index,
                reason: "PCR_Read returned nothing".into(),
            })
    }

    /// TPM2_PCR_Extend of the sha256 bank of PCR `index` with `digest`.
    pub fn extend_pcr_sha256(&mut self, index: u32, digest: &[u8; 32]) -> Result<(), TpmError> {
        if index >= PCR_COUNT {
            return Err(TpmError::Pcr {
                index,
                reason: format!("the sha256 bank has PCRs 0..{PCR_COUNT}"),
            });
        }
        let handle = PcrHandle::try_from(index).map_err(|e| TpmError::Pcr {
            index,
            reason: e.to_string(),
        })?;
        let mut values = DigestValues::new();
        values.set(
            HashingAlgorithm::Sha256,
            Digest::try_from(digest.to_vec()).map_err(TpmError::tss("PCR_Extend digest"))?,
        );
        self.ctx
            .execute_with_session(Some(AuthSession::Password), |c| {
                c.pcr_extend(handle, values)
            })
            .map_err(|e| TpmError::Pcr {
                index,
                reason: format!("PCR_Extend: {e}"),
            })
    }

    /// Runs `f` with the EK in use loaded, and flushes the EK afterwards whatever `f` returned.
    fn with_ek<T>(
        &mut self,
        f: impl FnOnce(&mut Context, KeyHandle) -> Result<T, TpmError>,
    ) -> Result<T, TpmError> {
        let ek = ek::create_ek_object_2(&mut self.ctx, self.ek.selection(), None)
            .map_err(TpmError::tss("CreatePrimary(EK)"))?;
        let r = f(&mut self.ctx, ek);
        flush(&mut self.ctx, ek.into(), "FlushContext(EK)", r)
    }

    /// The AK's public and private parts from `state_dir`; created and stored first if
    /// there are none and `create` is set.
    fn ak_material(
        &mut self,
        state_dir: &Path,
        create: bool,
    ) -> Result<(Public, Private, bool), TpmError> {
        if let Some(blobs) = state::read(state_dir)? {
            let public = Public::unmarshall(&blobs.public).map_err(|e| TpmError::State {
                path: state_dir.join(state::AK_PUB),
                reason: format!("not a TPM2B_PUBLIC ({e})"),
            })?;
            let private = Private::try_from(blobs.private).map_err(|e| TpmError::State {
                path: state_dir.join(state::AK_PRIV),
                reason: format!("not a TPM2B_PRIVATE ({e})"),
            })?;
            return Ok((public, private, false));
        }
        if !create {
            return Err(TpmError::State {
                path: state_dir.join(state::AK_PUB),
                reason: "there is no attestation key yet; enroll first".into(),
            });
        }
        state::ensure_dir(state_dir)?;
        let made = self.with_ek(|ctx, ek| {
            ak::create_ak(
                ctx,
                ek,
                HashingAlgorithm::Sha256,
                SignatureSchemeAlgorithm::RsaSsa,
                None,
                None,
            )
            .map_err(|e| ak_err(state_dir, "created", e))
        })?;
        // Which EK the AK belongs to, before the AK is committed (ak.pub last).
        ekkind::keep(state_dir, self.ek)?;
        let blobs = state::AkBlobs {
            public: made
                .out_public
                .marshall()
                .map_err(TpmError::tss("marshal AK public"))?,
            private: made.out_private.value().to_vec(),
        };
        state::write(state_dir, &blobs)?;
        Ok((made.out_public, made.out_private, true))
    }
}

fn ak_err(state_dir: &Path, action: &'static str, e: tss_esapi::Error) -> TpmError {
    TpmError::Ak {
        state_dir: state_dir.to_path_buf(),
        action,
        reason: e.to_string(),
    }
}

/// Loads the AK under the EK; the caller flushes the returned handle.
fn load_ak(
    ctx: &mut Context,
    ek: KeyHandle,
    state_dir: &Path,
    public: &Public,
    private: Private,
) -> Result<KeyHandle, TpmError> {
    ak::load_ak(ctx, ek, None, private, public.clone()).map_err(|e| ak_err(state_dir, "loaded", e))
}

/// Flushes `handle` and returns `r`; a flush failure is reported only if `r` succeeded.
fn flush<T>(
    ctx: &mut Context,
    handle: ObjectHandle,
    op: &'static str,
    r: Result<T, TpmError>,
) -> Result<T, TpmError> {
    let flushed = ctx.flush_context(handle);
    let v = r?;
    flushed.map_err(TpmError::tss(op))?;
    Ok(v)
}

/// TPM2B_PUBLIC (with u16 size) of `public`.
fn tpm2b_public(public: &Public) -> Result<Vec<u8>, TpmError> {
    state::frame(
        &public
            .marshall()
            .map_err(TpmError::tss("marshal TPMT_PUBLIC"))?,
    )
}

/// ActivateCredential: password session for the AK, a policy session satisfying the
/// EK's PolicySecret(TPM_RH_ENDORSEMENT) for the EK; the policy session is flushed.
fn activate_with_ek_policy(
    ctx: &mut Context,
    ek: KeyHandle,
    ak: KeyHandle,
    id: IdObject,
    secret: EncryptedSecret,
) -> Result<Vec<u8>, TpmError> {
    let session = ctx
        .start_auth_session(
            None,
            None,
            None,
            SessionType::Policy,
            SymmetricDefinition::AES_128_CFB,
            HashingAlgorithm::Sha256,
        )
        .map_err(TpmError::tss("StartAuthSession(policy)"))?
        .ok_or(TpmError::Tss {
            op: "StartAuthSession(policy)",
            reason: "no session returned".into(),
        })?;
    let r = (|| {
        let (attrs, mask) = SessionAttributesBuilder::new().build();
        ctx.tr_sess_set_attributes(session, attrs, mask)
            .map_err(TpmError::tss("TRSess_SetAttributes"))?;
        let policy = PolicySession::try_from(session).map_err(TpmError::tss("policy session"))?;
        ctx.execute_with_nullauth_session(|c| {
            c.policy_secret(
                policy,
                AuthHandle::Endorsement,
                Default::default(),
                Default::default(),
                Default::default(),
                None,
            )
        })
        .map_err(TpmError::tss("PolicySecret(endorsement)"))?;
        ctx.execute_with_sessions((Some(AuthSession::Password), Some(session), None), |c| {
            c.activate_credential(ak, ek, id, secret)
        })
        .map(|d| d.value().to_vec())
        .map_err(|e| TpmError::Activate {
            reason: e.to_string(),
        })
    })();
    flush(
        ctx,
        SessionHandle::from(session).into(),
        "FlushContext(policy session)",
        r,
    )
}

/// A sha256 PCR selection of `pcrs` (deduplicated, ascending).
fn sha256_selection(pcrs: &[u32]) -> Result<(PcrSelectionList, Vec<u32>), TpmError> {
    let mut indices = pcrs.to_vec();
    indices.sort_unstable();
    indices.dedup();
    if indices.is_empty() {
        return Err(TpmError::Quote {
            reason: "no PCRs selected".into(),
        });
    }
    let slots = indices
        .iter()
        .map(|&index| pcr_slot(index))
        .collect::<Result<Vec<_>, _>>()?;
    let list = PcrSelectionList::builder()
        .with_selection(HashingAlgorithm::Sha256, &slots)
        .build()
        .map_err(TpmError::tss("PCR selection"))?;
    Ok((list, indices))
}

fn pcr_slot(index: u32) -> Result<PcrSlot, TpmError> {
    let bad = |reason: String| TpmError::Pcr { index, reason };
    if index >= PCR_COUNT {
        return Err(bad(format!("the sha256 bank has PCRs 0..{PCR_COUNT}")));
    }
    PcrSlot::try_from(1u32 << index).map_err(|e| bad(e.to_string()))
}

/// Reads the selected sha256 PCRs, ascending by index.
fn read_pcrs(
    ctx: &mut Context,
    selection: &PcrSelectionList,
    indices: &[u32],
) -> Result<Vec<(u32, Vec<u8>)>, TpmError> {
    let data = ctx
        .execute_without_session(|c| pcr::read_all(c, selection.clone()))
        .map_err(TpmError::tss("PCR_Read"))?;
    let bank = data
        .pcr_bank(HashingAlgorithm::Sha256)
        .ok_or(TpmError::Quote {
            reason: "the TPM has no active sha256 PCR bank".into(),
        })?;
    indices
        .iter()
        .map(|&index| {
            let d = bank.get_digest(pcr_slot(index)?).ok_or(TpmError::Pcr {
                index,
                reason: "the TPM returned no sha256 value for it".into(),
            })?;
            Ok((index, d.value().to_vec()))
        })
        .collect()
}

/// Quotes until the PCRs read before and after the quote agree (bounded).
fn quote_consistent(
    ctx: &mut Context,
    ak: KeyHandle,
    nonce: &Data,
    selection: &PcrSelectionList,
    indices: &[u32],
) -> Result<QuoteResult, TpmError> {
    for _ in 0..QUOTE_ATTEMPTS {
        let before = read_pcrs(ctx, selection, indices)?;
        let (attest, signature) = ctx
            .execute_with_nullauth_session(|c| {
                c.quote(ak, nonce.clone(), SignatureScheme::Null, selection.clone())
            })
            .map_err(|e| TpmError::Quote {
                reason: format!("TPM2_Quote: {e}"),
            })?;
        let after = read_pcrs(ctx, selection, indices)?;
        if before == after {
            return Ok(QuoteResult {
                attest: attest
                    .marshall()
                    .map_err(TpmError::tss("marshal TPMS_ATTEST"))?,
                signature: signature
                    .marshall()
                    .map_err(TpmError::tss("marshal TPMT_SIGNATURE"))?,
                pcrs_sha256: after,
            });
        }
    }
    Err(TpmError::Quote {
        reason: format!(
            "the selected PCRs changed during each of {QUOTE_ATTEMPTS} attempts; something is \
             extending them continuously, retry later"
        ),
    })
}
