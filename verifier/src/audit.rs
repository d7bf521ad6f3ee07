//! Tamper evidence for the history. Each record carries the SHA-256 of the
//! one before it (`store::append_history`); at an interval the verifier signs
//! a checkpoint — sequence number, head hash, time — with its Ed25519 key (a
//! detached JWS, `typ` `assay-checkpoint+jws`, checked with the JWKS). Editing,
//! deleting or reordering a record breaks the chain; rewriting the chain from
//! some record on (recomputing every later hash) contradicts the signed
//! checkpoints after it.
//!
//! `verify` re-checks a run of records (ascending, as stored or exported) and
//! the checkpoints, and names the first broken record. It is pure: the store,
//! an export file or a test feed it.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use serde::Serialize;

use crate::store::{Checkpoint, Found};

/// What `verify` found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub records: u64,
    pub first_seq: u64,
    pub last_seq: u64,
    pub checkpoints_verified: u64,
    /// The latest record a valid checkpoint covers (0: none).
    pub checkpointed_through: u64,
    /// The first broken record and why; None if everything holds.
    pub broken: Option<Broken>,
    /// Checks that could not be made (e.g. an export starting mid-chain).
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Broken {
    pub seq: u64,
    pub reason: String,
}

/// Verifies a detached EdDSA JWS over `payload` against a JWKS.
pub fn verify_detached(jwks: &serde_json::Value, jws: &str, payload: &[u8]) -> Result<(), String> {
    let (header, sig) = jws
        .split_once("..")
        .ok_or("not a detached JWS (header..signature)")?;
    let h: serde_json::Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(header)
            .map_err(|e| format!("header: {e}"))?,
    )
    .map_err(|e| format!("header: {e}"))?;
    if h["alg"] != "EdDSA" {
        return Err(format!("alg {} (expected EdDSA)", h["alg"]));
    }
    let key = jwks["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|k| k["kid"] == h["kid"] && k["crv"] == "Ed25519")
        .ok_or_else(|| format!("no key {} in the JWKS", h["kid"]))?;
    let x: [u8; 32] = URL_SAFE_NO_PAD
        .decode(key["x"].as_str().unwrap_or_default())
        .map_err(|e| format!("key x: {e}"))?
        .try_into()
        .map_err(|_| "key x is not 32 bytes")?;
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&x).map_err(|e| e.to_string())?;
    let sig = ed25519_dalek::Signature::from_slice(
        &URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|e| format!("signature: {e}"))?,
    )
    .map_err(|e| e.to_string())?;
    let input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(payload));
    vk.verify_strict(input.as_bytes(), &sig)
        .map_err(|_| "signature does not verify".to_string())
}

/// Re-checks `records` (ascending by key) and `checkpoints` against `jwks`.
/// The first problem found, in record order, is reported; records before the
/// first one in the input cannot be checked (an export of a range), which is
/// noted. Memory: the hashes of checkpointed sequence numbers only.
pub fn verify(
    records: impl IntoIterator<Item = Found>,
    checkpoints: &[Checkpoint],
    jwks: &serde_json::Value,
) -> Report {
    let mut report = Report::default();
    // Checkpoints whose signature verifies, by seq; a bad signature is itself a finding.
    let mut signed = std::collections::BTreeMap::new();
    let mut bad_checkpoint = None;
    for c in checkpoints {
        match verify_detached(
            jwks,
            &c.signature,
            &Checkpoint::payload(c.seq, &c.head_hash, c.time_unix),
        ) {
            Ok(()) => {
                signed.insert(c.seq, c);
            }
            Err(e) => {
                bad_checkpoint.get_or_insert(Broken {
                    seq: c.seq,
                    reason: format!("the checkpoint at record {} does not verify: {e}", c.seq),
                });
            }
        }
    }
    let mut prev: Option<(u64, String)> = None;
    for f in records {
        let r = &f.record;
        report.records += 1;
        if report.records == 1 {
            report.first_seq = r.seq;
            if r.seq == 1 && !r.prev_hash.is_empty() {
                report.broken = Some(Broken {
                    seq: 1,
                    reason: "the first record links to a predecessor".into(),
                });
                break;
            }
            if r.seq > 1 {
                report.notes.push(format!(
                    "record {} links to record {}, which is not in the input: that link is not checked",
                    r.seq,
                    r.seq - 1
                ));
            }
        }
        if f.key_seq != r.seq {
            report.broken = Some(Broken {
                seq: f.key_seq,
                reason: format!(
                    "the record stored as {} says it is {}: records were reordered or replaced",
                    f.key_seq, r.seq
                ),
            });
            break;
        }
        if let Some((pseq, phash)) = &prev {
            if r.seq != pseq + 1 {
                report.broken = Some(Broken {
                    seq: pseq + 1,
                    reason: format!(
                        "record {} is missing (deleted): {} follows {}",
                        pseq + 1,
                        r.seq,
                        pseq
                    ),
                });
                break;
            }
            if &r.prev_hash != phash {
                report.broken = Some(Broken {
                    seq: *pseq,
                    reason: format!(
                        "record {} is not the record {} was chained to: {} was altered (or {}'s link was)",
                        pseq, r.seq, pseq, r.seq
                    ),
                });
                break;
            }
        }
        let hash = r.hash();
        if let Some(c) = signed.get(&r.seq) {
            if c.head_hash != hash {
                report.broken = Some(Broken {
                    seq: r.seq,
                    reason: format!(
                        "record {} differs from what the checkpoint signed at {}: the chain was rewritten at or before it",
                        r.seq, c.time_unix
                    ),
                });
                break;
            }
            report.checkpoints_verified += 1;
            report.checkpointed_through = r.seq;
        }
        report.last_seq = r.seq;
        prev = Some((r.seq, hash));
    }
    if report.broken.is_none() {
        // A signed checkpoint beyond the last record: records were cut off the end.
        if let Some((&seq, c)) = signed.range(report.last_seq + 1..).next() {
            if report.records > 0 || seq > 0 {
                report.broken = Some(Broken {
                    seq: report.last_seq + 1,
                    reason: format!(
                        "the checkpoint signed at {} covers record {seq}, but the records end at {}: records were removed from the end",
                        c.time_unix, report.last_seq
                    ),
                });
            }
        }
    }
    if report.broken.is_none() {
        report.broken = bad_checkpoint;
    }
    if report.broken.is_none() && report.last_seq > report.checkpointed_through {
        report.notes.push(format!(
            "records {}..={} are after the last checkpoint: chained, not yet signed",
            report.checkpointed_through + 1,
            report.last_seq
        ));
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::HistoryRecord;
    use crate::token::TokenSigner;

    fn rec(seq: u64, prev_hash: String, passed: bool) -> HistoryRecord {
        HistoryRecord {
            seq,
            node_id: format!("n{}", seq % 3),
            time_unix: 1000 + seq as i64,
            passed,
            claims: Vec::new(),
            policy_name: "p".into(),
            policy_digest: "d".into(),
            evidence_digest: "e".into(),
            prev_hash,
            kind: String::new(),
            policy_version: 0,
        }
    }

    fn chain(n: u64) -> Vec<HistoryRecord> {
        let mut out: Vec<HistoryRecord> = Vec::new();
        for seq in 1..=n {
            let prev = out.last().map(HistoryRecord::hash).unwrap_or_default();
            out.push(rec(seq, prev, true));
        }
        out
    }

    fn found(rs: &[HistoryRecord]) -> Vec<Found> {
        rs.iter()
            .map(|r| Found {
                key_seq: r.seq,
                record: r.clone(),
            })
            .collect()
    }

    fn signer() -> (tempfile::TempDir, TokenSigner, serde_json::Value) {
        let d = tempfile::tempdir().unwrap();
        let s = TokenSigner::load_or_create(&d.path().join("k.pem")).unwrap();
        let jwks = serde_json::from_str(&s.jwks_json()).unwrap();
        (d, s, jwks)
    }

    fn checkpoint(s: &TokenSigner, r: &HistoryRecord) -> Checkpoint {
        let payload = Checkpoint::payload(r.seq, &r.hash(), 5000);
        Checkpoint {
            seq: r.seq,
            head_hash: r.hash(),
            time_unix: 5000,
            signature: s
                .sign_detached_typ(&payload, "assay-checkpoint+jws")
                .unwrap(),
        }
    }

    #[test]
    fn an_untouched_chain_verifies_with_its_checkpoints() {
        let (_d, s, jwks) = signer();
        let c = chain(10);
        let cps = vec![checkpoint(&s, &c[3]), checkpoint(&s, &c[7])];
        let r = verify(found(&c), &cps, &jwks);
        assert_eq!(r.broken, None, "{r:?}");
        assert_eq!(
            (r.records, r.checkpoints_verified, r.checkpointed_through),
            (10, 2, 8)
        );
        assert!(r.notes[0].contains("9..=10"), "{:?}", r.notes);
    }

    #[test]
    fn an_edited_record_is_named() {
        let (_d, _s, jwks) = signer();
        let mut c = chain(6);
        c[2].passed = false; // record 3: a PASS rewritten as a FAIL
        let r = verify(found(&c), &[], &jwks);
        assert_eq!(r.broken.as_ref().unwrap().seq, 3, "{r:?}");
        assert!(r.broken.unwrap().reason.contains("altered"));
    }

    #[test]
    fn a_deleted_record_is_named() {
        let (_d, _s, jwks) = signer();
        let mut c = chain(6);
        c.remove(3); // record 4
        let r = verify(found(&c), &[], &jwks);
        assert_eq!(r.broken.as_ref().unwrap().seq, 4, "{r:?}");
        assert!(r.broken.unwrap().reason.contains("missing"));
    }

    #[test]
    fn reordered_records_are_named() {
        let (_d, _s, jwks) = signer();
        let c = chain(6);
        let mut f = found(&c);
        // Swap the values stored under keys 2 and 3.
        let (a, b) = (f[1].record.clone(), f[2].record.clone());
        f[1].record = b;
        f[2].record = a;
        let r = verify(f, &[], &jwks);
        assert_eq!(r.broken.as_ref().unwrap().seq, 2, "{r:?}");
        assert!(r.broken.unwrap().reason.contains("reordered"));
    }

    #[test]
    fn a_rewritten_chain_contradicts_the_signed_checkpoint() {
        let (_d, s, jwks) = signer();
        let c = chain(8);
        let cps = vec![checkpoint(&s, &c[5])];
        // Record 4 changed and every later hash recomputed: links all hold.
        let mut forged = c[..3].to_vec();
        for r in &c[3..] {
            let mut r = r.clone();
            r.prev_hash = forged.last().unwrap().hash();
            if r.seq == 4 {
                r.passed = false;
            }
            forged.push(r);
        }
        let r = verify(found(&forged), &[], &jwks);
        assert_eq!(
            r.broken, None,
            "without checkpoints the rewrite is invisible"
        );
        let r = verify(found(&forged), &cps, &jwks);
        assert_eq!(r.broken.as_ref().unwrap().seq, 6, "{r:?}");
        assert!(r.broken.unwrap().reason.contains("rewritten"));
    }

    #[test]
    fn records_cut_off_the_end_are_found_by_a_later_checkpoint() {
        let (_d, s, jwks) = signer();
        let c = chain(8);
        let cps = vec![checkpoint(&s, &c[7])];
        let r = verify(found(&c[..5]), &cps, &jwks);
        assert_eq!(r.broken.as_ref().unwrap().seq, 6, "{r:?}");
        assert!(r.broken.unwrap().reason.contains("removed from the end"));
    }

    #[test]
    fn a_forged_checkpoint_is_refused() {
        let (_d, s, jwks) = signer();
        let (_d2, other, _) = signer();
        let c = chain(4);
        let mut cp = checkpoint(&s, &c[1]);
        cp.time_unix += 1; // signed payload no longer matches
        let r = verify(found(&c), &[cp], &jwks);
        assert!(r.broken.unwrap().reason.contains("does not verify"));
        let r = verify(found(&c), &[checkpoint(&other, &c[1])], &jwks);
        assert!(r.broken.unwrap().reason.contains("no key"));
    }

    #[test]
    fn an_export_starting_mid_chain_says_what_it_could_not_check() {
        let (_d, _s, jwks) = signer();
        let c = chain(6);
        let r = verify(found(&c[2..]), &[], &jwks);
        assert_eq!(r.broken, None);
        assert!(r.notes[0].contains("not checked"), "{:?}", r.notes);
        assert_eq!(r.first_seq, 3);
    }

    #[test]
    fn garbage_signatures_are_errors_not_panics() {
        let jwks = serde_json::json!({"keys": []});
        for jws in ["", "..", "a..b", "!!..!!", "e30..AAAA"] {
            assert!(verify_detached(&jwks, jws, b"x").is_err(), "{jws}");
        }
    }
}
