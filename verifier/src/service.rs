//! The verifier's flows — enroll, activate, challenge, attest, redeem — as plain
//! synchronous functions over the store and the pure core. The gRPC layer
//! (`api.rs`) only converts messages and maps errors to status codes.

use std::time::{SystemTime, UNIX_EPOCH};

use assay_core::ek::TrustAnchors;
use assay_core::enroll::{check_enrollment, EnrollError};
use assay_core::policy::Policy;
use assay_core::tpm::credential::make_credential;
use assay_core::tpm::public::parse_tpm2b_public;
use assay_core::verdict::{Claim, Verdict};
use assay_core::verify::{evidence_digest, verify_quote, QuoteCheck, QuoteEvidence};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tracing::{info, warn};

use crate::config::Config;
use crate::store::{
    Consumed, HistoryRecord, NodeRecord, NonceRecord, PendingEnrollment, Storage, StoreError,
    TokenRecord, VerdictWrite,
};
use crate::token::{TokenError, TokenSigner};

/// Largest node id accepted.
pub const MAX_NODE_ID: usize = 253;
/// Largest EK certificate, TPM2B_PUBLIC, TPMS_ATTEST or TPMT_SIGNATURE accepted.
pub const MAX_BLOB: usize = 16 * 1024;
/// Nonce size issued (and the only size accepted back).
pub const NONCE_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("invalid request: {0}")]
    BadRequest(String),
    #[error("enrollment refused: {0}")]
    EnrollRefused(#[from] EnrollError),
    #[error("node `{0}` is already enrolled with a different EK; if this is a replaced TPM, remove the node first (`assay-verifier node remove {0}`)")]
    EkChanged(String),
    #[error("enrollment `{0}` is unknown, expired or already completed; enroll again")]
    EnrollmentUnknown(String),
    #[error("credential activation failed: the node did not recover the credential, so its AK is not bound to a trusted EK")]
    ActivationFailed,
    #[error("node `{0}` is not enrolled (or its AK activation was never completed); run `assay-attestor join` to enroll")]
    NotEnrolled(String),
    #[error("join token refused: {0}")]
    Token(#[from] TokenError),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("internal error: {0}")]
    Internal(String),
}

pub struct EnrollOutput {
    pub enrollment_id: String,
    pub credential_blob: Vec<u8>,
    pub encrypted_secret: Vec<u8>,
}

pub struct ChallengeOutput {
    pub nonce: Vec<u8>,
    pub pcrs_sha256: Vec<u32>,
    pub expires_unix: i64,
    pub want_uefi_log: bool,
    pub want_ima_log: bool,
    pub want_cel_log: bool,
}

pub struct AttestInput {
    pub node_id: String,
    pub nonce: Vec<u8>,
    pub attest: Vec<u8>,
    pub signature: Vec<u8>,
    pub pcrs_sha256: Vec<(u32, Vec<u8>)>,
    pub uefi_log: Option<Vec<u8>>,
    pub ima_log: Option<Vec<u8>>,
    pub cel_log: Option<Vec<u8>>,
    /// The attestor's notes on logs it could not send.
    pub log_notes: Vec<String>,
}

pub struct AttestOutput {
    pub verdict: Verdict,
    pub policy_name: String,
    pub history_seq: u64,
    /// A join token and its expiry, on a pass only.
    pub token: Option<(String, i64)>,
    /// The quote's signature and nonce verified: the node itself produced this
    /// evidence. Only such a verdict may isolate a node (anyone can send garbage
    /// in a node's name).
    pub authentic: bool,
}

pub struct RedeemOutput {
    pub node_id: String,
    pub ak_name: String,
    pub expires_unix: i64,
}

/// The verifier: configuration, trust anchors, policy, store and token key.
pub struct Verifier {
    pub config: Config,
    pub anchors: TrustAnchors,
    pub policy: Policy,
    pub store: Box<dyn Storage>,
    /// Measured-boot judgements by (policy, UEFI log, quoted PCRs): a fleet
    /// booted from one image is judged once per distinct log.
    pub measured_boot_cache: assay_core::verify::MeasuredBootCache,
    pub tokens: TokenSigner,
    /// The orchestrator's join issuer (`[join]`).
    pub join: std::sync::Arc<dyn crate::join::JoinIssuer>,
    /// Isolation and restore notifications (`[webhook]`).
    pub webhook: Option<std::sync::Arc<crate::webhook::Webhook>>,
    /// Nodes whose isolation the orchestrator is being asked for right now,
    /// so the upkeep's retry never races the attest path's first attempt.
    pub isolating: std::sync::Mutex<std::collections::HashSet<String>>,
}

/// What `reverify` found.
pub struct Reverified {
    pub record: HistoryRecord,
    pub verdict: Verdict,
    /// Empty when the kept evidence reproduces the recorded verdict.
    pub differences: Vec<String>,
    /// Claims taken as recorded (single-use nonce state).
    pub not_rechecked: Vec<String>,
}

pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b
}

pub fn validate_node_id(id: &str) -> Result<(), ServiceError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_NODE_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if ok {
        Ok(())
    } else {
        Err(ServiceError::BadRequest(format!(
            "node id `{}` must be 1 to {MAX_NODE_ID} characters of [A-Za-z0-9._-]",
            id.escape_debug()
        )))
    }
}

/// The attestor's notes on missing logs, bounded for the verdict.
fn log_notes(notes: &[String]) -> String {
    notes
        .iter()
        .take(4)
        .map(|n| n.chars().take(300).collect::<String>())
        .collect::<Vec<_>>()
        .join("; ")
}

fn bounded(what: &str, b: &[u8]) -> Result<(), ServiceError> {
    if b.is_empty() || b.len() > MAX_BLOB {
        return Err(ServiceError::BadRequest(format!(
            "{what} is {} bytes; expected 1 to {MAX_BLOB}",
            b.len()
        )));
    }
    Ok(())
}

impl Verifier {
    /// Step 1 of enrollment: check EK chain, EK/cert match and AK attributes, then protect a
    /// fresh credential to the EK, bound to the AK's name.
    pub fn enroll(
        &self,
        node_id: &str,
        ek_cert: &[u8],
        ek_public: &[u8],
        ak_public: &[u8],
    ) -> Result<EnrollOutput, ServiceError> {
        validate_node_id(node_id)?;
        bounded("ek_certificate", ek_cert)?;
        bounded("ek_public", ek_public)?;
        bounded("ak_public", ak_public)?;
        let now = now_unix();
        let checked = check_enrollment(ek_cert, ek_public, ak_public, &self.anchors, now)
            .inspect_err(|e| {
                warn!(node_id, reason = %e, "enrollment refused");
            })?;
        let ek_cert_sha256 = hex::encode(Sha256::digest(ek_cert));
        if let Some(existing) = self.store.node(node_id)? {
            if existing.ek_cert_sha256 != ek_cert_sha256 {
                warn!(
                    node_id,
                    "enrollment refused: EK differs from the enrolled one"
                );
                return Err(ServiceError::EkChanged(node_id.into()));
            }
        }
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
                expires_unix: now + self.config.enrollment_ttl.as_secs() as i64,
            },
        )?;
        info!(node_id, ek = %checked.ek_certificate.subject, "enrollment started; credential sent");
        Ok(EnrollOutput {
            enrollment_id,
            credential_blob: made.credential_blob,
            encrypted_secret: made.encrypted_secret,
        })
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
        let pending = self
            .store
            .take_enrollment(enrollment_id)?
            .filter(|p| p.node_id == node_id && p.expires_unix >= now_unix())
            .ok_or_else(|| ServiceError::EnrollmentUnknown(enrollment_id.into()))?;
        let got: [u8; 32] = Sha256::digest(credential).into();
        let want = hex::decode(&pending.credential_sha256)
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        if !bool::from(got.as_slice().ct_eq(&want)) {
            warn!(node_id, "credential activation failed");
            return Err(ServiceError::ActivationFailed);
        }
        self.store.put_node(&NodeRecord {
            node_id: node_id.into(),
            ek_cert_sha256: pending.ek_cert_sha256,
            ek_public: pending.ek_public,
            ak_public: pending.ak_public,
            ak_name: pending.ak_name.clone(),
            activated_unix: now_unix(),
            last_clock: None,
            last_pass_unix: None,
        })?;
        info!(node_id, ak_name = %pending.ak_name, "AK bound to EK");
        Ok(pending.ak_name)
    }

    /// A single-use nonce bound to the node, with the PCR selection to quote.
    pub fn challenge(&self, node_id: &str) -> Result<ChallengeOutput, ServiceError> {
        validate_node_id(node_id)?;
        if self.store.node(node_id)?.is_none() {
            return Err(ServiceError::NotEnrolled(node_id.into()));
        }
        let nonce = random::<NONCE_LEN>().to_vec();
        let expires_unix = now_unix() + self.config.nonce_ttl.as_secs() as i64;
        self.store.put_nonce(
            &nonce,
            &NonceRecord {
                node_id: node_id.into(),
                expires_unix,
                used: false,
            },
        )?;
        Ok(ChallengeOutput {
            nonce,
            pcrs_sha256: self.policy.pcr_selection(),
            expires_unix,
            want_uefi_log: self.policy.measured_boot().is_some(),
            want_ima_log: self.policy.ima().is_some(),
            want_cel_log: self.policy.containers().is_some(),
        })
    }

    /// Re-runs the verification core on the evidence kept for record `seq`,
    /// under the policy the record names, and compares with what was recorded.
    pub fn reverify(&self, seq: u64) -> Result<Reverified, ServiceError> {
        let rec = self
            .store
            .history_record(seq)?
            .ok_or_else(|| ServiceError::BadRequest(format!("no history record {seq}")))?;
        if !rec.kind.is_empty() {
            return Err(ServiceError::BadRequest(format!(
                "record {seq} is a `{}` record, not a verdict",
                rec.kind
            )));
        }
        let (ev, logs) = self.store.evidence(seq)?.ok_or_else(|| {
            ServiceError::BadRequest(format!(
                "the evidence of record {seq} is no longer kept (see [evidence] retention)"
            ))
        })?;
        let text = self.store.policy_text(&rec.policy_digest)?.ok_or_else(|| {
            ServiceError::Internal(format!("policy {} is not in the store", rec.policy_digest))
        })?;
        let policy = Policy::parse(&rec.policy_name, &text)
            .map_err(|e| ServiceError::Internal(format!("stored policy: {e}")))?;
        if policy.digest_hex() != rec.policy_digest {
            return Err(ServiceError::Internal(
                "stored policy text does not match its digest".into(),
            ));
        }
        let unhex = |what: &str, h: &str| {
            hex::decode(h).map_err(|e| ServiceError::Internal(format!("stored {what}: {e}")))
        };
        let ak = parse_tpm2b_public(&unhex("AK", &ev.ak_public)?)
            .map_err(|e| ServiceError::Internal(format!("stored AK: {e}")))?;
        let (nonce, attest, signature) = (
            unhex("nonce", &ev.nonce)?,
            unhex("attest", &ev.attest)?,
            unhex("signature", &ev.signature)?,
        );
        let pcrs = ev
            .pcrs_sha256
            .iter()
            .map(|(i, d)| Ok((*i, unhex("PCR", d)?)))
            .collect::<Result<Vec<_>, ServiceError>>()?;
        for (name, digest, bytes) in [
            ("UEFI log", &ev.uefi_log, &logs[0]),
            ("IMA log", &ev.ima_log, &logs[1]),
            ("CEL log", &ev.cel_log, &logs[2]),
        ] {
            if digest.is_some() && bytes.is_none() {
                return Err(ServiceError::Internal(format!(
                    "the {name} of record {seq} is missing from the store"
                )));
            }
        }
        let evidence = QuoteEvidence {
            attest: &attest,
            signature: &signature,
            pcrs_sha256: &pcrs,
            uefi_log: logs[0].as_deref(),
            ima_log: logs[1].as_deref(),
            cel_log: logs[2].as_deref(),
        };
        let check = QuoteCheck {
            ak: &ak,
            expected_nonce: &nonce,
            previous_clock: ev.previous_clock,
            policy: &policy,
            // Reverification judges the stored evidence afresh.
            cache: None,
        };
        let outcome = verify_quote(&check, &evidence);
        // Nonce claims depend on single-use state at the time: taken as recorded.
        let mut claims: Vec<Claim> = rec
            .claims
            .iter()
            .filter(|c| c.id.starts_with("nonce."))
            .cloned()
            .collect();
        let not_rechecked: Vec<String> = claims.iter().map(|c| c.id.clone()).collect();
        claims.extend(outcome.verdict.claims);
        let digest = hex::encode(evidence_digest(&evidence));
        let mut differences = Vec::new();
        if digest != rec.evidence_digest {
            differences.push(format!(
                "evidence digest: recorded {}, kept evidence hashes to {digest}",
                rec.evidence_digest
            ));
        }
        let key = |c: &Claim| (c.id.clone(), c.location.clone());
        let recorded: std::collections::BTreeMap<_, _> =
            rec.claims.iter().map(|c| (key(c), c.passed)).collect();
        let now: std::collections::BTreeMap<_, _> =
            claims.iter().map(|c| (key(c), c.passed)).collect();
        for (k, was) in &recorded {
            match now.get(k) {
                None => differences.push(format!(
                    "claim {} ({}): recorded, not reached now",
                    k.0, k.1
                )),
                Some(is) if is != was => differences.push(format!(
                    "claim {} ({}): recorded {}, now {}",
                    k.0,
                    k.1,
                    if *was { "pass" } else { "FAIL" },
                    if *is { "pass" } else { "FAIL" }
                )),
                _ => {}
            }
        }
        for k in now.keys().filter(|k| !recorded.contains_key(*k)) {
            differences.push(format!(
                "claim {} ({}): reached now, not recorded",
                k.0, k.1
            ));
        }
        let verdict = Verdict::from_claims(claims, rec.policy_digest.clone(), digest);
        if verdict.passed != rec.passed {
            differences.push(format!(
                "verdict: recorded {}, now {}",
                if rec.passed { "PASS" } else { "FAIL" },
                if verdict.passed { "PASS" } else { "FAIL" }
            ));
        }
        Ok(Reverified {
            record: rec,
            verdict,
            differences,
            not_rechecked,
        })
    }

    /// Verifies a quote and records the verdict; mints a join token on a pass only.
    pub fn attest(&self, input: &AttestInput) -> Result<AttestOutput, ServiceError> {
        validate_node_id(&input.node_id)?;
        bounded("attest", &input.attest)?;
        bounded("signature", &input.signature)?;
        if input.pcrs_sha256.len() > 24 {
            return Err(ServiceError::BadRequest(format!(
                "{} PCR values; at most 24",
                input.pcrs_sha256.len()
            )));
        }
        let node = self
            .store
            .node(&input.node_id)?
            .ok_or_else(|| ServiceError::NotEnrolled(input.node_id.clone()))?;
        let ak_bytes =
            hex::decode(&node.ak_public).map_err(|e| ServiceError::Internal(e.to_string()))?;
        let ak = parse_tpm2b_public(&ak_bytes)
            .map_err(|e| ServiceError::Internal(format!("stored AK: {e}")))?;
        let now = now_unix();

        let mut claims = self.nonce_claims(&input.node_id, &input.nonce, now)?;
        let evidence = QuoteEvidence {
            attest: &input.attest,
            signature: &input.signature,
            pcrs_sha256: &input.pcrs_sha256,
            uefi_log: input.uefi_log.as_deref(),
            ima_log: input.ima_log.as_deref(),
            cel_log: input.cel_log.as_deref(),
        };
        let check = QuoteCheck {
            ak: &ak,
            expected_nonce: &input.nonce,
            previous_clock: node.last_clock,
            policy: &self.policy,
            cache: Some(&self.measured_boot_cache),
        };
        let outcome = verify_quote(&check, &evidence);
        let notes = log_notes(&input.log_notes);
        claims.extend(outcome.verdict.claims.into_iter().map(|mut c| {
            if !c.passed && c.id.ends_with(".present") && !notes.is_empty() {
                c.actual = format!("{}; the attestor says: {notes}", c.actual);
            }
            c
        }));
        // The core hashed the evidence already.
        let verdict = Verdict::from_claims(
            claims,
            self.policy.digest_hex(),
            outcome.verdict.evidence_digest,
        );

        // Advance the rollback baseline only from fresh, authentic quotes.
        let authentic = assay_core::verdict::quote_authentic(&verdict.claims);
        let token = if verdict.passed {
            let ttl = self.config.token_ttl.as_secs() as i64;
            let (token, claims) = self.tokens.issue(&input.node_id, &node.ak_name, now, ttl)?;
            Some((token, claims.exp))
        } else {
            None
        };
        // Everything the verdict changes, durable together before it is answered.
        let rec =
            self.store.record_verdict(VerdictWrite {
                record: HistoryRecord {
                    seq: 0,
                    node_id: input.node_id.clone(),
                    time_unix: now,
                    passed: verdict.passed,
                    claims: verdict.claims.clone(),
                    policy_name: self.policy.name.clone(),
                    policy_digest: verdict.policy_digest.clone(),
                    evidence_digest: verdict.evidence_digest.clone(),
                    prev_hash: String::new(),
                    kind: String::new(),
                },
                evidence: self.config.evidence.keep.is_some().then(|| {
                    crate::store::StoredEvidence {
                        node_id: input.node_id.clone(),
                        time_unix: now,
                        ak_public: node.ak_public.clone(),
                        nonce: hex::encode(&input.nonce),
                        attest: hex::encode(&input.attest),
                        signature: hex::encode(&input.signature),
                        pcrs_sha256: input
                            .pcrs_sha256
                            .iter()
                            .map(|(i, d)| (*i, hex::encode(d)))
                            .collect(),
                        previous_clock: node.last_clock,
                        ..Default::default()
                    }
                }),
                logs: [
                    input.uefi_log.as_deref(),
                    input.ima_log.as_deref(),
                    input.cel_log.as_deref(),
                ],
                clock: outcome.clock.filter(|_| authentic),
                passed_at: verdict.passed.then_some(now),
                token: token.as_ref().map(|(t, exp)| {
                    (
                        t.as_str(),
                        TokenRecord {
                            node_id: input.node_id.clone(),
                            ak_name: node.ak_name.clone(),
                            expires_unix: *exp,
                            used: false,
                            revoked: false,
                            issued_unix: now,
                        },
                    )
                }),
            })?;
        let failed: Vec<&str> = verdict.failed().map(|c| c.id.as_str()).collect();
        info!(node_id = %input.node_id, verdict = if verdict.passed { "pass" } else { "fail" }, seq = rec.seq, failed = ?failed, "attestation verdict");

        Ok(AttestOutput {
            verdict,
            policy_name: self.policy.name.clone(),
            history_seq: rec.seq,
            token,
            authentic,
        })
    }

    /// The nonce claims: issued by us, to this node, not expired, not used before.
    fn nonce_claims(
        &self,
        node_id: &str,
        nonce: &[u8],
        now: i64,
    ) -> Result<Vec<Claim>, ServiceError> {
        const LOC: &str = "AttestRequest.nonce";
        let shown = hex::encode(nonce.get(..NONCE_LEN.min(nonce.len())).unwrap_or_default());
        if nonce.len() != NONCE_LEN {
            return Ok(vec![Claim::new(
                "nonce.issued",
                false,
                "a nonce issued by this verifier",
                format!("{} bytes", nonce.len()),
                LOC,
            )]);
        }
        let rec = match self.store.consume_nonce(nonce)? {
            Consumed::Unknown => {
                return Ok(vec![Claim::new(
                    "nonce.issued",
                    false,
                    "a nonce issued by this verifier",
                    format!("unknown nonce {shown}"),
                    LOC,
                )])
            }
            Consumed::AlreadyUsed(r) => {
                return Ok(vec![
                    Claim::new(
                        "nonce.issued",
                        true,
                        "a nonce issued by this verifier",
                        "issued",
                        LOC,
                    ),
                    Claim::new(
                        "nonce.unused",
                        false,
                        "a nonce not used before",
                        "already used (replay)",
                        LOC,
                    ),
                ]
                .into_iter()
                .chain(node_claim(&r, node_id))
                .collect())
            }
            Consumed::Fresh(r) => r,
        };
        let mut v = vec![
            Claim::new(
                "nonce.issued",
                true,
                "a nonce issued by this verifier",
                "issued",
                LOC,
            ),
            Claim::new(
                "nonce.unused",
                true,
                "a nonce not used before",
                "first use",
                LOC,
            ),
        ];
        v.extend(node_claim(&rec, node_id));
        v.push(Claim::new(
            "nonce.fresh",
            now <= rec.expires_unix,
            format!("used by {}", rec.expires_unix),
            format!("used at {now}"),
            LOC,
        ));
        Ok(v)
    }

    /// Checks and consumes a join token presented by `node_id`.
    pub fn redeem(&self, token: &str, node_id: &str) -> Result<RedeemOutput, ServiceError> {
        if token.len() > 4096 {
            return Err(ServiceError::BadRequest(
                "token longer than 4096 bytes".into(),
            ));
        }
        let claims = self.tokens.check(token, node_id, now_unix())?;
        match self.store.consume_token(token)? {
            Consumed::Fresh(rec) => {
                info!(node_id, "join token redeemed");
                Ok(RedeemOutput {
                    node_id: rec.node_id,
                    ak_name: rec.ak_name,
                    expires_unix: claims.exp,
                })
            }
            Consumed::AlreadyUsed(rec) if rec.revoked => {
                warn!(node_id, "revoked join token refused");
                Err(TokenError::Revoked.into())
            }
            Consumed::AlreadyUsed(_) => {
                warn!(node_id, "join token reuse refused");
                Err(TokenError::Reused.into())
            }
            Consumed::Unknown => Err(TokenError::Unknown.into()),
        }
    }
}

fn node_claim(rec: &NonceRecord, node_id: &str) -> Option<Claim> {
    Some(Claim::new(
        "nonce.node",
        rec.node_id == node_id,
        format!("issued to {node_id}"),
        format!("issued to {}", rec.node_id),
        "AttestRequest.nonce",
    ))
}
