//! Enrollment: Enroll checks the EK chain, the EK public area and the AK,
//! then protects a fresh credential to the EK bound to the AK's name;
//! Activate binds the AK once the node shows it recovered the credential.

use assay_core::enroll::{
    check_enrollment_with_chain, check_registered_enrollment, CheckedEnrollment,
};
use assay_core::tpm::credential::make_credential;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tracing::{info, warn};

use super::{bounded, random, validate_node_id, ServiceError, Verifier, STORE_LINGER_SECS};
use assay_core::verdict::Claim;

use crate::clock::now_unix;
use crate::config::EnrollmentMode;
use crate::store::{EkBinding, NodeRecord, PendingEnrollment};

pub struct EnrollOutput {
    pub enrollment_id: String,
    pub credential_blob: Vec<u8>,
    pub encrypted_secret: Vec<u8>,
}

impl Verifier {
    /// Step 1 of enrollment: check EK chain, EK/cert match and AK attributes, then protect a
    /// fresh credential to the EK, bound to the AK's name.
    pub fn enroll(
        &self,
        node_id: &str,
        ek_cert: &[u8],
        ek_chain: &[Vec<u8>],
        ek_public: &[u8],
        ak_public: &[u8],
    ) -> Result<EnrollOutput, ServiceError> {
        validate_node_id(node_id)?;
        if ek_cert.len() > super::MAX_BLOB {
            bounded("ek_certificate", ek_cert)?;
        }
        if ek_chain.len() > assay_core::ek::MAX_SENT_CHAIN {
            return Err(ServiceError::BadRequest(format!(
                "{} EK chain certificates; at most {}",
                ek_chain.len(),
                assay_core::ek::MAX_SENT_CHAIN
            )));
        }
        for c in ek_chain {
            bounded("ek_chain certificate", c)?;
        }
        bounded("ek_public", ek_public)?;
        bounded("ak_public", ak_public)?;
        let now = now_unix();
        let (checked, ek_cert_sha256) = self
            .check_ek(node_id, ek_cert, ek_chain, ek_public, ak_public, now)
            .inspect_err(|e| {
                warn!(node_id, reason = %e, "enrollment refused");
            })?;
        self.check_identity(node_id, &ek_cert_sha256)?;
        // A harvested EK certificate is public: the caps keep what Enroll
        // calls with it can store bounded.
        let expires_unix = now + self.config.enrollment_ttl.as_secs() as i64;
        self.enrollments
            .admit(&ek_cert_sha256, now, expires_unix + STORE_LINGER_SECS)?;
        let credential = random::<32>();
        let made = make_credential(
            &checked.ek_key,
            &checked.ak_name,
            &credential,
            &mut rand::rngs::OsRng,
        )
        .map_err(|e| ServiceError::Internal(format!("MakeCredential: {e}")))?;
        let enrollment_id = hex::encode(random::<16>());
        self.store.put_enrollment(
            &enrollment_id,
            &PendingEnrollment {
                node_id: node_id.into(),
                ek_cert_sha256,
                ek_public: hex::encode(ek_public),
                ak_public: hex::encode(ak_public),
                ak_name: hex::encode(&checked.ak_name),
                credential_sha256: hex::encode(Sha256::digest(credential)),
                expires_unix,
                // Kept for revocation checks only when it is what vouches for the EK.
                ek_certificate: if checked.ek_certificate.is_some() {
                    hex::encode(ek_cert)
                } else {
                    String::new()
                },
                ek_chain: if checked.ek_certificate.is_some() {
                    ek_chain.iter().map(hex::encode).collect()
                } else {
                    Vec::new()
                },
            },
        )?;
        let ek = checked
            .ek_certificate
            .as_ref()
            .map_or("(registered EK public area, no certificate)", |c| {
                c.subject.as_str()
            });
        info!(node_id, ek, "enrollment started; credential sent");
        Ok(EnrollOutput {
            enrollment_id,
            credential_blob: made.credential_blob,
            encrypted_secret: made.encrypted_secret,
        })
    }

    /// Whether this EK may enroll as `node_id` under the enrollment mode: the
    /// checked keys, and the hash the node's identity binds (the SHA-256 of
    /// the EK certificate, or of the EK public area for an EK registered
    /// without one).
    fn check_ek(
        &self,
        node_id: &str,
        ek_cert: &[u8],
        ek_chain: &[Vec<u8>],
        ek_public: &[u8],
        ak_public: &[u8],
        now: i64,
    ) -> Result<(CheckedEnrollment, String), ServiceError> {
        let cert_sha256 = (!ek_cert.is_empty()).then(|| hex::encode(Sha256::digest(ek_cert)));
        let with_certificate = |cert_sha256: Option<String>| {
            let Some(h) = cert_sha256 else {
                return Err(ServiceError::NoEkCertificate);
            };
            let c = check_enrollment_with_chain(
                ek_cert,
                ek_chain,
                ek_public,
                ak_public,
                &self.anchors(),
                now,
            )?;
            Ok((c, h))
        };
        if self.config.enrollment_mode == EnrollmentMode::Open {
            return with_certificate(cert_sha256);
        }
        let public_sha256 = hex::encode(Sha256::digest(ek_public));
        let entry = match &cert_sha256 {
            Some(h) => self.store.inventory_by_ek(h)?,
            None => None,
        };
        let entry = match entry {
            Some(e) => Some(e),
            None => self
                .store
                .inventory_by_ek(&public_sha256)?
                .filter(|e| e.binding == EkBinding::PublicArea),
        };
        let Some(entry) = entry else {
            return Err(ServiceError::NotRegistered {
                node_id: node_id.into(),
                cert_sha256,
                public_sha256,
            });
        };
        if entry.node_id != node_id {
            return Err(ServiceError::RegisteredAs {
                node_id: node_id.into(),
                registered: entry.node_id,
            });
        }
        match entry.binding {
            EkBinding::Certificate => with_certificate(cert_sha256),
            EkBinding::PublicArea => Ok((
                check_registered_enrollment(ek_public, ak_public)?,
                public_sha256,
            )),
        }
    }

    /// One EK holds one node id, and a node id held by one EK cannot be
    /// taken by another. Checked when the credential is sent and again when
    /// it comes back (another enrollment may have completed in between).
    /// The node's current record, if it is enrolled.
    fn check_identity(
        &self,
        node_id: &str,
        ek_cert_sha256: &str,
    ) -> Result<Option<NodeRecord>, ServiceError> {
        let existing = self.store.node(node_id)?;
        if let Some(existing) = &existing {
            if existing.ek_cert_sha256 != ek_cert_sha256 {
                warn!(
                    node_id,
                    "enrollment refused: EK differs from the enrolled one"
                );
                return Err(ServiceError::EkChanged(node_id.into()));
            }
        }
        if let Some(holder) = self.store.node_by_ek(ek_cert_sha256)? {
            if holder != node_id {
                warn!(
                    node_id,
                    holder, "enrollment refused: the EK already holds another node id"
                );
                return Err(ServiceError::EkHeld {
                    node_id: node_id.into(),
                    holder,
                });
            }
        }
        Ok(existing)
    }

    /// Step 2: the node shows the credential it recovered; only then is its AK bound.
    pub fn activate(
        &self,
        node_id: &str,
        enrollment_id: &str,
        credential: &[u8],
    ) -> Result<String, ServiceError> {
        validate_node_id(node_id)?;
        // Taken (removed) whatever the outcome: each credential gets one try.
        let taken = self.store.take_enrollment(enrollment_id)?;
        if let Some(p) = &taken {
            self.enrollments.release(&p.ek_cert_sha256);
        }
        let pending = taken
            .filter(|p| p.node_id == node_id && p.expires_unix >= now_unix())
            .ok_or_else(|| ServiceError::EnrollmentUnknown(enrollment_id.into()))?;
        let got: [u8; 32] = Sha256::digest(credential).into();
        let want = hex::decode(&pending.credential_sha256)
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        if !bool::from(got.as_slice().ct_eq(&want)) {
            warn!(node_id, "credential activation failed");
            return Err(ServiceError::ActivationFailed);
        }
        let previous = self.check_identity(node_id, &pending.ek_cert_sha256)?;
        // The registration may have been removed or moved since Enroll.
        if self.config.enrollment_mode == EnrollmentMode::Inventory
            && self
                .store
                .inventory_by_ek(&pending.ek_cert_sha256)?
                .is_none_or(|e| e.node_id != node_id)
        {
            warn!(
                node_id,
                "activation refused: the registration changed since Enroll"
            );
            return Err(ServiceError::RegistrationChanged(node_id.into()));
        }
        // Re-enrollment of the same EK (the attestor lost its state and made a
        // new AK) keeps the node's rollback baseline: the TPM clock, reset and
        // restart counters of its last verified quote. Restoring an older copy
        // of the TPM state and enrolling again is still caught.
        let reenrolled = previous.is_some();
        let (last_clock, last_pass_unix) = previous
            .map(|p| (p.last_clock, p.last_pass_unix))
            .unwrap_or_default();
        self.store.put_node(&NodeRecord {
            node_id: node_id.into(),
            ek_cert_sha256: pending.ek_cert_sha256.clone(),
            ek_public: pending.ek_public,
            ak_public: pending.ak_public,
            ak_name: pending.ak_name.clone(),
            activated_unix: now_unix(),
            last_clock,
            last_pass_unix,
            ek_certificate: pending.ek_certificate,
            ek_chain: pending.ek_chain,
            // A new AK starts IMA over: its first quote judges the whole log.
            ima_state: None,
        })?;
        if reenrolled {
            let claim = Claim::new(
                "enroll.ak_bound",
                true,
                "an AK activated by the TPM holding the enrolled EK",
                format!(
                    "re-enrolled: AK {} bound to EK certificate sha256:{} (a new AK for the \
                     enrolled EK; the rollback baseline is kept)",
                    pending.ak_name, pending.ek_cert_sha256
                ),
                "TPM2_ActivateCredential",
            );
            self.append_event("enroll", node_id.into(), true, claim, String::new())?;
        }
        info!(node_id, ak_name = %pending.ak_name, reenrolled, "AK bound to EK");
        Ok(pending.ak_name)
    }
}
