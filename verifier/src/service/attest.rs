//! Attestation: Challenge issues a single-use nonce with the policy's PCR
//! selection; Attest judges the quote with the core and records the verdict,
//! minting a join token on a pass only.

use assay_core::tpm::public::parse_tpm2b_public;
use assay_core::verdict::{Claim, Verdict};
use assay_core::verify::{verify_quote, ImaState, QuoteCheck, QuoteEvidence};
use tracing::info;

use super::{
    bounded, random, validate_node_id, ServiceError, Verifier, NONCE_LEN, STORE_LINGER_SECS,
};
use crate::clock::now_unix;
use crate::store::{
    Consumed, HistoryRecord, Logs, NodeRecord, NonceRecord, StoredEvidence, TokenRecord,
    UnauthenticatedAttempts, VerdictWrite,
};

pub struct ChallengeOutput {
    pub nonce: Vec<u8>,
    pub pcrs_sha256: Vec<u32>,
    pub expires_unix: i64,
    pub want_uefi_log: bool,
    pub want_ima_log: bool,
    pub want_cel_log: bool,
    /// With `want_ima_log`: the node's kept IMA state, from whose end it may
    /// send only the entries after it.
    pub ima_resume: Option<ImaState>,
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
    /// The index of `ima_log`'s first entry (0: the whole log).
    pub ima_first_entry: u64,
    /// The attestor's notes on logs it could not send.
    pub log_notes: Vec<String>,
    /// Where the request came from (None: the transport did not say).
    pub source: Option<std::net::IpAddr>,
}

pub struct AttestOutput {
    pub verdict: Verdict,
    /// The named policy and the version the verdict was judged under.
    pub policy_name: String,
    pub policy_version: u64,
    pub history_seq: u64,
    /// A join token and its expiry, on a pass only.
    pub token: Option<(String, i64)>,
    /// The quote's signature and nonce verified: the node itself produced this
    /// evidence. Only such a verdict is recorded, and may isolate a node:
    /// anyone can send garbage in a node's name, which is only counted
    /// (`UnauthenticatedAttempts`, `history_seq` 0).
    pub authentic: bool,
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

impl Verifier {
    /// A single-use nonce bound to the node, with the PCR selection to quote.
    /// Refused (RESOURCE_EXHAUSTED) past the caps on outstanding nonces.
    pub fn challenge(
        &self,
        node_id: &str,
        source: Option<std::net::IpAddr>,
    ) -> Result<ChallengeOutput, ServiceError> {
        validate_node_id(node_id)?;
        let Some(node) = self.store.node(node_id)? else {
            return Err(ServiceError::NotEnrolled(node_id.into()));
        };
        // Resolved before a nonce is admitted: a node whose policy cannot be
        // loaded is refused without using up a place.
        let policy = self.node_policy(node_id)?;
        let nonce = random::<NONCE_LEN>().to_vec();
        let now = now_unix();
        let expires_unix = now + self.config.nonce_ttl.as_secs() as i64;
        self.nonces.admit(
            &self.nonce_bucket(node_id, source),
            now,
            expires_unix + STORE_LINGER_SECS,
        )?;
        self.store.put_nonce(
            &nonce,
            &NonceRecord {
                node_id: node_id.into(),
                expires_unix,
                used: false,
            },
        )?;
        // What every accepted version of the node's policy judges: during a
        // rollout one quote is judged under the current and the next.
        let accepted = policy.accepted();
        let mut pcrs: Vec<u32> = accepted
            .iter()
            .flat_map(|a| a.policy.pcr_selection())
            .collect();
        pcrs.sort_unstable();
        pcrs.dedup();
        // Only the entries after the kept state are asked for when every
        // version that may judge this quote judges IMA under the rules the
        // state was reached under (a changed policy judges the whole log).
        let ima_rules: Vec<_> = accepted.iter().filter_map(|a| a.policy.ima()).collect();
        let ima_resume = node.ima_state.filter(|s| {
            !ima_rules.is_empty()
                && ima_rules
                    .iter()
                    .all(|r| hex::encode(r.digest()) == s.rules_digest && r.pcr == s.pcr)
        });
        Ok(ChallengeOutput {
            nonce,
            pcrs_sha256: pcrs,
            expires_unix,
            want_uefi_log: accepted.iter().any(|a| a.policy.measured_boot().is_some()),
            want_ima_log: !ima_rules.is_empty(),
            want_cel_log: accepted.iter().any(|a| a.policy.containers().is_some()),
            ima_resume,
        })
    }

    /// The nonce cap's bucket of a request in `node_id`'s name: the node's own
    /// (from the address of its last authentic attestation) or everyone
    /// else's, so that challenges in its name from elsewhere cannot use up
    /// the node's own places.
    fn nonce_bucket(&self, node_id: &str, source: Option<std::net::IpAddr>) -> String {
        if self.rate_limits.is_known_source(node_id, source) {
            format!("{node_id} (its own address)")
        } else {
            node_id.to_string()
        }
    }

    /// Verifies a quote and records the verdict; mints a join token on a
    /// pass only. Evidence that is not authentic (quote signature, AK or
    /// nonce not verified) is answered with its claims but not recorded: it
    /// is counted as an unauthenticated attempt in the node's name.
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
        // Resolved before the nonce is consumed.
        let policy = self.node_policy(&input.node_id)?;

        let mut claims = self.nonce_claims(&input.node_id, &input.nonce, now)?;
        let passed = |id: &str| claims.iter().any(|c| c.id == id && c.passed);
        if passed("nonce.unused") && passed("nonce.node") {
            self.nonces
                .release(&self.nonce_bucket(&input.node_id, input.source));
        }
        let evidence = QuoteEvidence {
            attest: &input.attest,
            signature: &input.signature,
            pcrs_sha256: &input.pcrs_sha256,
            uefi_log: input.uefi_log.as_deref(),
            ima_log: input.ima_log.as_deref(),
            cel_log: input.cel_log.as_deref(),
            ima_first_entry: input.ima_first_entry,
        };
        // Judged under the current version, and during a rollout under the
        // alongside one when the current fails: the verdict names the
        // version it passed under (or the current one, failing both).
        let accepted = policy.accepted();
        let mut judged = None;
        for a in accepted {
            let check = QuoteCheck {
                ak: &ak,
                expected_nonce: &input.nonce,
                previous_clock: node.last_clock,
                policy: &a.policy,
                cache: Some(&self.measured_boot_cache),
                ima_state: node.ima_state.as_ref(),
            };
            let outcome = verify_quote(&check, &evidence);
            let passed = outcome.verdict.passed;
            if judged.is_none() || passed {
                judged = Some((a, outcome));
            }
            if passed {
                break;
            }
        }
        let Some((under, outcome)) = judged else {
            return Err(ServiceError::Internal(format!(
                "policy `{}` has no accepted version",
                policy.name
            )));
        };
        let version = &under.version;
        let notes = log_notes(&input.log_notes);
        claims.extend(outcome.verdict.claims.into_iter().map(|mut c| {
            if !c.passed && c.id.ends_with(".present") && !notes.is_empty() {
                c.actual = format!("{}; the attestor says: {notes}", c.actual);
            }
            c
        }));
        if let Some(c) = self.revocation_claim(&node.ek_certificate, &node.ek_chain, now) {
            claims.push(c);
        }
        // The core hashed the evidence already.
        let verdict = Verdict::from_claims(
            claims,
            version.digest.clone(),
            outcome.verdict.evidence_digest,
        );

        let authentic = assay_core::verdict::quote_authentic(&verdict.claims);
        if !authentic {
            self.count_attempt(input, &verdict, now);
            crate::metrics::unauthenticated_attempt();
            return Ok(AttestOutput {
                verdict,
                policy_name: version.name.clone(),
                policy_version: version.version,
                history_seq: 0,
                token: None,
                authentic,
            });
        }
        self.rate_limits
            .note_authentic(&input.node_id, input.source);
        // Advance the rollback baseline only from quotes whose every quote
        // claim passed: a rolled-back clock never becomes the baseline.
        let clock_trusted = verdict
            .claims
            .iter()
            .filter(|c| c.id.starts_with("quote."))
            .all(|c| c.passed);
        let token = if verdict.passed {
            let ttl = self.config.token_ttl.as_secs() as i64;
            let (token, claims) = self.tokens.issue(&input.node_id, &node.ak_name, now, ttl)?;
            Some((token, claims.exp))
        } else {
            None
        };
        // Everything the verdict changes, durable together before it is answered.
        let rec = self.store.record_verdict(VerdictWrite {
            record: HistoryRecord {
                seq: 0,
                node_id: input.node_id.clone(),
                time_unix: now,
                passed: verdict.passed,
                claims: verdict.claims.clone(),
                policy_name: version.name.clone(),
                policy_digest: verdict.policy_digest.clone(),
                policy_version: version.version,
                evidence_digest: verdict.evidence_digest.clone(),
                prev_hash: String::new(),
                kind: String::new(),
            },
            evidence: self
                .config
                .evidence
                .keep
                .is_some()
                .then(|| kept_evidence(input, &node, now)),
            logs: Logs {
                uefi: input.uefi_log.as_deref(),
                ima: input.ima_log.as_deref(),
                cel: input.cel_log.as_deref(),
            },
            clock: outcome.clock.filter(|_| clock_trusted),
            ima_state: outcome.ima,
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
        crate::metrics::verdict(
            verdict.passed,
            &version.name,
            verdict.failed().map(|c| c.id.as_str()),
        );
        if token.is_some() {
            crate::metrics::token_issued();
        }
        let failed: Vec<&str> = verdict.failed().map(|c| c.id.as_str()).collect();
        info!(
            node_id = %input.node_id,
            verdict = if verdict.passed { "pass" } else { "fail" },
            seq = rec.seq,
            policy = %super::policies::label(version),
            claim = %failed.join(","),
            "attestation verdict"
        );

        Ok(AttestOutput {
            verdict,
            policy_name: version.name.clone(),
            policy_version: version.version,
            history_seq: rec.seq,
            token,
            authentic,
        })
    }

    /// Counts an unauthenticated attempt in the node's name (flushed to the
    /// store every second by the limits upkeep, which logs one summary line:
    /// nothing is logged per attempt, so a flood does not flood the log).
    fn count_attempt(&self, input: &AttestInput, verdict: &Verdict, now: i64) {
        let failed: Vec<String> = verdict.failed().map(|c| c.id.clone()).take(16).collect();
        let source = input
            .source
            .map_or_else(|| "unknown".to_string(), |ip| ip.to_string());
        let one = UnauthenticatedAttempts::one(&source, now, failed);
        self.attempts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(input.node_id.clone())
            .or_default()
            .merge(&one);
    }

    /// The nonce claims: issued by us, to this node, not expired, not used before.
    fn nonce_claims(
        &self,
        node_id: &str,
        nonce: &[u8],
        now: i64,
    ) -> Result<Vec<Claim>, ServiceError> {
        const LOC: &str = "AttestRequest.nonce";
        let issued = |passed: bool, actual: String| {
            Claim::new(
                "nonce.issued",
                passed,
                "a nonce issued by this verifier",
                actual,
                LOC,
            )
        };
        let unused = |passed: bool, actual: &str| {
            Claim::new(
                "nonce.unused",
                passed,
                "a nonce not used before",
                actual,
                LOC,
            )
        };
        let shown = hex::encode(nonce.get(..NONCE_LEN.min(nonce.len())).unwrap_or_default());
        if nonce.len() != NONCE_LEN {
            return Ok(vec![issued(false, format!("{} bytes", nonce.len()))]);
        }
        let rec = match self.store.consume_nonce(nonce)? {
            Consumed::Unknown => return Ok(vec![issued(false, format!("unknown nonce {shown}"))]),
            Consumed::AlreadyUsed(r) => {
                return Ok([
                    issued(true, "issued".into()),
                    unused(false, "already used (replay)"),
                ]
                .into_iter()
                .chain(node_claim(&r, node_id))
                .collect())
            }
            Consumed::Fresh(r) => r,
        };
        let mut v = vec![issued(true, "issued".into()), unused(true, "first use")];
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
}

/// What is kept for `audit reverify`: the request and the verifier state its
/// verdict depended on (the AK, the previous TPM clock).
fn kept_evidence(input: &AttestInput, node: &NodeRecord, now: i64) -> StoredEvidence {
    StoredEvidence {
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
        ima_first_entry: input.ima_first_entry,
        // The kept IMA state the judgement read (reverify needs it).
        ima_state: node.ima_state.clone(),
        ..Default::default()
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

impl Verifier {
    /// With EK CRLs configured: whether the node's EK certificate (kept from
    /// its enrollment) is revoked now. A revoked EK fails the verdict, which
    /// quarantines the node and revokes its tokens like any failure. None
    /// without CRLs, or for a node enrolled without a kept certificate.
    fn revocation_claim(
        &self,
        ek_certificate_hex: &str,
        ek_chain_hex: &[String],
        now: i64,
    ) -> Option<Claim> {
        let anchors = self.anchors();
        if anchors.crls_len() == 0 || ek_certificate_hex.is_empty() {
            return None;
        }
        let chain: Result<Vec<Vec<u8>>, _> = ek_chain_hex.iter().map(hex::decode).collect();
        let result = hex::decode(ek_certificate_hex)
            .and_then(|der| Ok((der, chain?)))
            .map_err(|e| e.to_string())
            .and_then(|(der, chain)| {
                assay_core::ek::check_ek_revocation(&der, &chain, &anchors, now)
                    .map_err(|e| e.to_string())
            });
        Some(match result {
            Ok(()) => Claim::new(
                "ek.not_revoked",
                true,
                "the EK certificate and its issuers are not on a configured CRL",
                "not revoked",
                "trust.ek_crls",
            ),
            Err(e) => Claim::new(
                "ek.not_revoked",
                false,
                "the EK certificate and its issuers are not on a configured CRL",
                e,
                "trust.ek_crls",
            ),
        })
    }
}
