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

/// The claims that say who produced the evidence: a nonce this verifier
/// issued to this node, fresh and unused, and a quote signed by the node's
/// enrolled AK over exactly that nonce. Nothing else: `quote.pcr_selection`,
/// `quote.pcr_digest` and `quote.clock` judge what the node's TPM reported,
/// so their failures are the node's own (a clock rollback is a finding about
/// the node, not a forgery).
pub const AUTHENTICITY_CLAIMS: &[&str] = &[
    "nonce.issued",
    "nonce.unused",
    "nonce.node",
    "nonce.fresh",
    "quote.signature_format",
    "quote.signature",
    "quote.format",
    "quote.nonce",
];

/// Whether the node's TPM really signed this evidence for this challenge,
/// whatever the policy made of it: `quote.signature` and `quote.nonce` are
/// present, and every [`AUTHENTICITY_CLAIMS`] claim present passed. Anyone
/// can send evidence in a node's name; only authentic evidence is the
/// node's (its verdicts, its standing, its quarantine).
pub fn quote_authentic(claims: &[Claim]) -> bool {
    let present = |id: &str| claims.iter().any(|c| c.id == id);
    present("quote.signature")
        && present("quote.nonce")
        && claims
            .iter()
            .filter(|c| AUTHENTICITY_CLAIMS.contains(&c.id.as_str()))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(failing: &[&str]) -> Vec<Claim> {
        let judged = [
            "quote.pcr_selection",
            "quote.pcr_digest",
            "quote.clock",
            "pcr.sha256.7",
        ];
        AUTHENTICITY_CLAIMS
            .iter()
            .chain(judged.iter())
            .map(|id| Claim::new(*id, !failing.contains(id), "", "", ""))
            .collect()
    }

    #[test]
    fn the_nodes_own_findings_are_authentic() {
        assert!(quote_authentic(&claims(&[])));
        // A rolled-back clock, a wrong PCR digest or a PCR value: the node's
        // TPM signed them, so they are the node's failures.
        for id in [
            "quote.clock",
            "quote.pcr_digest",
            "quote.pcr_selection",
            "pcr.sha256.7",
        ] {
            assert!(quote_authentic(&claims(&[id])), "{id}");
        }
    }

    #[test]
    fn forged_or_replayed_evidence_is_not() {
        for id in AUTHENTICITY_CLAIMS {
            assert!(!quote_authentic(&claims(&[id])), "{id}");
        }
        // A verdict that never reached the signature check proves nothing.
        let early = vec![Claim::new("nonce.issued", false, "", "", "")];
        assert!(!quote_authentic(&early));
        let no_nonce: Vec<Claim> = claims(&[])
            .into_iter()
            .filter(|c| c.id != "quote.nonce")
            .collect();
        assert!(!quote_authentic(&no_nonce));
    }
}
