//! `audit reverify`: the core re-run on a record's kept evidence, under the
//! policy the record names, compared claim by claim with what was recorded.

use assay_core::policy::Policy;
use assay_core::tpm::public::parse_tpm2b_public;
use assay_core::verdict::{Claim, Verdict};
use assay_core::verify::{evidence_digest, verify_quote, QuoteCheck, QuoteEvidence};

use super::{ServiceError, Verifier};
use std::collections::BTreeMap;

use crate::store::{HistoryRecord, Logs, StoredEvidence};

/// What `reverify` found.
pub struct Reverified {
    pub record: HistoryRecord,
    pub verdict: Verdict,
    /// Empty when the kept evidence reproduces the recorded verdict.
    pub differences: Vec<String>,
    /// Claims taken as recorded (single-use nonce state).
    pub not_rechecked: Vec<String>,
}

impl Verifier {
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
        let policy = self.recorded_policy(&rec)?;
        let kept = Kept::decode(seq, &ev, &logs)?;
        let evidence = kept.evidence(&logs);
        // Reverification judges the stored evidence afresh.
        let outcome = verify_quote(&kept.check(&ev, &policy, None), &evidence);
        // Nonce claims depend on single-use state at the time, and the EK's
        // revocation on the CRLs then: taken as recorded.
        let mut claims: Vec<Claim> = rec
            .claims
            .iter()
            .filter(|c| c.id.starts_with("nonce.") || c.id.starts_with("ek."))
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
        differences.extend(claim_differences(&rec.claims, &claims));
        let verdict = Verdict::from_claims(claims, rec.policy_digest.clone(), digest);
        if verdict.passed != rec.passed {
            differences.push(format!(
                "verdict: recorded {}, now {}",
                word(rec.passed),
                word(verdict.passed)
            ));
        }
        Ok(Reverified {
            record: rec,
            verdict,
            differences,
            not_rechecked,
        })
    }

    /// The policy a record names, from the text kept under its digest.
    fn recorded_policy(&self, rec: &HistoryRecord) -> Result<Policy, ServiceError> {
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
        Ok(policy)
    }
}

/// Kept evidence, decoded from its stored (hex) form.
pub(super) struct Kept {
    pub ak: assay_core::tpm::public::TpmPublic,
    pub nonce: Vec<u8>,
    pub attest: Vec<u8>,
    pub signature: Vec<u8>,
    pub pcrs: Vec<(u32, Vec<u8>)>,
    pub ima_first_entry: u64,
    pub ima_state: Option<assay_core::verify::ImaState>,
}

impl Kept {
    /// The kept evidence as the core judges it.
    pub(super) fn evidence<'a>(&'a self, logs: &'a Logs) -> QuoteEvidence<'a> {
        QuoteEvidence {
            attest: &self.attest,
            signature: &self.signature,
            pcrs_sha256: &self.pcrs,
            uefi_log: logs.uefi.as_deref(),
            ima_log: logs.ima.as_deref(),
            cel_log: logs.cel.as_deref(),
            ima_first_entry: self.ima_first_entry,
        }
    }

    /// What it is judged against: its AK, nonce and previous clock, under `policy`.
    pub(super) fn check<'a>(
        &'a self,
        ev: &StoredEvidence,
        policy: &'a Policy,
        cache: Option<&'a assay_core::verify::MeasuredBootCache>,
    ) -> QuoteCheck<'a> {
        QuoteCheck {
            ak: &self.ak,
            expected_nonce: &self.nonce,
            previous_clock: ev.previous_clock,
            policy,
            cache,
            ima_state: self.ima_state.as_ref(),
        }
    }

    pub(super) fn decode(seq: u64, ev: &StoredEvidence, logs: &Logs) -> Result<Self, ServiceError> {
        let unhex = |what: &str, h: &str| {
            hex::decode(h).map_err(|e| ServiceError::Internal(format!("stored {what}: {e}")))
        };
        for (name, digest, bytes) in [
            ("UEFI log", &ev.uefi_log, &logs.uefi),
            ("IMA log", &ev.ima_log, &logs.ima),
            ("CEL log", &ev.cel_log, &logs.cel),
        ] {
            if digest.is_some() && bytes.is_none() {
                return Err(ServiceError::Internal(format!(
                    "the {name} of record {seq} is missing from the store"
                )));
            }
        }
        Ok(Kept {
            ak: parse_tpm2b_public(&unhex("AK", &ev.ak_public)?)
                .map_err(|e| ServiceError::Internal(format!("stored AK: {e}")))?,
            nonce: unhex("nonce", &ev.nonce)?,
            attest: unhex("attest", &ev.attest)?,
            signature: unhex("signature", &ev.signature)?,
            pcrs: ev
                .pcrs_sha256
                .iter()
                .map(|(i, d)| Ok((*i, unhex("PCR", d)?)))
                .collect::<Result<_, ServiceError>>()?,
            ima_first_entry: ev.ima_first_entry,
            ima_state: ev.ima_state.clone(),
        })
    }
}

fn word(passed: bool) -> &'static str {
    if passed {
        "PASS"
    } else {
        "FAIL"
    }
}

/// Claim by claim (by id and location), what differs between the recorded
/// claims and the ones reached now.
fn claim_differences(recorded: &[Claim], now: &[Claim]) -> Vec<String> {
    let key = |c: &Claim| (c.id.clone(), c.location.clone());
    let recorded: BTreeMap<_, _> = recorded.iter().map(|c| (key(c), c.passed)).collect();
    let now: BTreeMap<_, _> = now.iter().map(|c| (key(c), c.passed)).collect();
    let pass = |p: bool| if p { "pass" } else { "FAIL" };
    let mut out = Vec::new();
    for (k, was) in &recorded {
        match now.get(k) {
            None => out.push(format!(
                "claim {} ({}): recorded, not reached now",
                k.0, k.1
            )),
            Some(is) if is != was => out.push(format!(
                "claim {} ({}): recorded {}, now {}",
                k.0,
                k.1,
                pass(*was),
                pass(*is)
            )),
            _ => {}
        }
    }
    for k in now.keys().filter(|k| !recorded.contains_key(*k)) {
        out.push(format!(
            "claim {} ({}): reached now, not recorded",
            k.0, k.1
        ));
    }
    out
}
