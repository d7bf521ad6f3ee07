//! Verdicts are data: every claim that was evaluated, with what was expected,
//! what was found, and where in the evidence it was found.

use serde::{Deserialize, Serialize};

/// Outcome of one verification: the list of claims and whether all passed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// True only when every claim passed and at least one claim was evaluated.
    pub passed: bool,
    /// Every claim evaluated, in evaluation order.
    pub claims: Vec<Claim>,
    /// SHA-256 of the policy file the evidence was judged against (hex).
    pub policy_digest: String,
    /// SHA-256 over the evidence (attest || signature || reported PCR values), hex.
    pub evidence_digest: String,
}

impl Verdict {
    /// Builds a verdict from claims; `passed` is derived, never set by hand.
    pub fn from_claims(claims: Vec<Claim>, policy_digest: String, evidence_digest: String) -> Self {
        let passed = !claims.is_empty() && claims.iter().all(|c| c.passed);
        Self {
            passed,
            claims,
            policy_digest,
            evidence_digest,
        }
    }

    /// The claims that failed.
    pub fn failed(&self) -> impl Iterator<Item = &Claim> {
        self.claims.iter().filter(|c| !c.passed)
    }
}

/// Whether every `nonce.*` and `quote.*` claim passed: the node's TPM really
/// signed this evidence for this challenge, whatever the policy made of it.
pub fn quote_authentic(claims: &[Claim]) -> bool {
    claims
        .iter()
        .filter(|c| c.id.starts_with("nonce.") || c.id.starts_with("quote."))
        .all(|c| c.passed)
}

/// One evaluated claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// Stable identifier, e.g. `quote.signature`, `quote.nonce`, `pcr.sha256.7`.
    pub id: String,
    pub passed: bool,
    /// What the policy or protocol required.
    pub expected: String,
    /// What the evidence showed.
    pub actual: String,
    /// Where in the evidence (e.g. `TPMS_ATTEST.extraData`, `PCR sha256:7`).
    pub location: String,
}

impl Claim {
    pub fn new(
        id: impl Into<String>,
        passed: bool,
        expected: impl Into<String>,
        actual: impl Into<String>,
        location: impl Into<String>,
    ) -> Self {
        Self {
            id: id.into(),
            passed,
            expected: expected.into(),
            actual: actual.into(),
            location: location.into(),
        }
    }
}

impl std::fmt::Display for Claim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mark = if self.passed { "PASS" } else { "FAIL" };
        write!(
            f,
            "{mark} {} ({}): expected {}, got {}",
            self.id, self.location, self.expected, self.actual
        )
    }
}
