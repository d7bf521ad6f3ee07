//! One storage test suite, run against both backends: sled in a temp dir and
//! a real PostgreSQL (a cluster this process starts with initdb, one database
//! per test). Every test below exists twice, as `sled::NAME` and
//! `postgres::NAME`; the PostgreSQL ones fail (never skip) when PostgreSQL
//! is not installed.
//!
//! Tampering and "never stored in clear" checks reach under the trait: sled's
//! trees directly, PostgreSQL through psql.

use std::time::Duration;

use assay_core::tpm::attest::ClockInfo;
use assay_core::verdict::Claim;
use assay_core::verify::{ImaProgress, ImaState};
use assay_tests::PgDb;
use assay_verifier::store::{
    latest_authentic_evidence, token_id, Checkpoint, Consumed, EkBinding, HistoryQuery,
    HistoryRecord, InventoryEntry, Logs, Moved, NodeRecord, NonceRecord, PendingEnrollment,
    PgConfig, PgStore, Quarantine, RevokeOne, SledStore, Storage, StoredEvidence, TokenRecord,
    VerdictWrite,
};

/// The sled database under the trait, for tampering and inspection; once the
/// store's handle is dropped (its file lock is released from a background
/// thread, hence the bounded retry, as in `Backend::open`).
fn raw_sled(d: &tempfile::TempDir) -> sled::Db {
    let mut last = None;
    for _ in 0..100 {
        match sled::open(d.path().join("db")) {
            Ok(db) => return db,
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("opening sled: {last:?}");
}

enum Backend {
    Sled(tempfile::TempDir),
    Postgres(PgDb),
}

impl Backend {
    fn sled() -> Self {
        Backend::Sled(tempfile::tempdir().expect("temp dir"))
    }

    fn postgres() -> Self {
        Backend::Postgres(PgDb::new().expect("PostgreSQL for the storage suite"))
    }

    /// A handle on the store. sled: one at a time (drop the last before
    /// opening again; its file lock is released from a background thread,
    /// hence the bounded retry). PostgreSQL: any number, like replicas.
    fn open(&self) -> Box<dyn Storage> {
        match self {
            Backend::Sled(d) => {
                let mut last = None;
                for _ in 0..100 {
                    match SledStore::open(&d.path().join("db")) {
                        Ok(s) => return Box::new(s),
                        Err(e) => last = Some(e),
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                panic!("opening sled: {last:?}");
            }
            Backend::Postgres(db) => Box::new(
                PgStore::open(
                    &PgConfig::from_section(Some(db.url.clone()), None, Some(4), None)
                        .expect("loopback"),
                )
                .expect("opening PostgreSQL"),
            ),
        }
    }

    /// Rewrites the stored JSON of history record `seq` with `edit`, under the
    /// trait (the store must be closed for sled).
    fn tamper_record(&self, seq: u64, edit: impl Fn(&mut serde_json::Value)) {
        match self {
            Backend::Sled(d) => {
                let db = raw_sled(d);
                let t = db.open_tree("history").expect("tree");
                let v = t.get(seq.to_be_bytes()).expect("get").expect("record");
                let mut j: serde_json::Value = serde_json::from_slice(&v).expect("json");
                edit(&mut j);
                t.insert(seq.to_be_bytes(), serde_json::to_vec(&j).expect("json"))
                    .expect("insert");
                db.flush().expect("flush");
            }
            Backend::Postgres(db) => {
                let text = db
                    .psql(&format!("SELECT record FROM history WHERE seq = {seq}"))
                    .expect("select");
                let mut j: serde_json::Value = serde_json::from_str(&text).expect("json");
                edit(&mut j);
                let new = serde_json::to_string(&j).expect("json").replace('\'', "''");
                db.psql(&format!(
                    "UPDATE history SET record = '{new}' WHERE seq = {seq}"
                ))
                .expect("update");
            }
        }
    }

    /// Everything stored about tokens, as text (keys and values).
    fn raw_tokens(&self) -> String {
        match self {
            Backend::Sled(d) => {
                let db = raw_sled(d);
                let t = db.open_tree("tokens").expect("tree");
                t.iter()
                    .map(|kv| {
                        let (k, v) = kv.expect("item");
                        format!("{} {}", hex::encode(&k), String::from_utf8_lossy(&v))
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            }
            Backend::Postgres(db) => db
                .psql("SELECT string_agg(t::text, E'\\n') FROM tokens t")
                .expect("select"),
        }
    }

    /// How many logs are kept in the content-addressed store.
    fn blob_count(&self) -> usize {
        match self {
            Backend::Sled(d) => {
                let db = raw_sled(d);
                db.open_tree("blobs").expect("tree").len()
                    + db.open_tree("blob_refs").expect("tree").len()
            }
            Backend::Postgres(db) => db
                .psql("SELECT count(*) FROM blobs")
                .expect("count")
                .parse()
                .expect("number"),
        }
    }
}

macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod sled_backend {
            $( #[test] fn $name() { super::$name(super::Backend::sled()) } )*
        }
        mod postgres_backend {
            $( #[test] fn $name() { super::$name(super::Backend::postgres()) } )*
        }
    };
}

suite!(
    nonce_is_consumed_once_even_under_concurrency,
    history_is_hash_chained_survives_reopen_and_tampering_breaks_it,
    concurrent_appends_from_several_handles_form_one_gap_free_chain,
    tokens_are_stored_hashed_and_single_use,
    revoking_a_node_s_tokens_spares_other_nodes_and_used_tokens,
    purge_drops_only_what_expired_before_the_cutoff,
    tokens_are_listed_by_id_never_by_value_and_revoked_one_at_a_time,
    history_queries_filter_by_node_time_verdict_policy_and_claim_and_page,
    the_fleet_at_a_moment_is_each_node_s_last_verdict_then,
    evidence_logs_are_stored_once_and_pruned_oldest_first_by_age_count_and_size,
    nodes_enrollments_quarantines_policies_and_checkpoints_round_trip,
    an_enrollment_is_taken_once_even_under_concurrency,
    a_verdict_s_writes_land_together,
    concurrent_verdicts_land_once_each_with_their_own_writes,
    policy_evidence_is_the_newest_authentic_verdict_s,
    a_node_is_found_by_its_ek_and_the_index_follows_moves_and_removals,
    inventory_adds_all_or_none_and_one_ek_holds_one_node_id,
    a_move_carries_registration_enrollment_and_quarantine_atomically,
    unauthenticated_attempts_merge_per_node_and_keep_the_busiest_sources,
    named_policies_version_in_order_through_apply_alongside_retire_and_rollback,
    concurrent_applies_to_one_name_all_get_a_version_in_order,
    policy_assignments_and_the_epoch_follow_every_change,
);

fn apply<'a>(
    name: &'a str,
    digest: &'a str,
    mode: assay_verifier::store::ApplyMode,
) -> assay_verifier::store::NewPolicyVersion<'a> {
    assay_verifier::store::NewPolicyVersion {
        name,
        digest,
        text: digest,
        applied_unix: 1_700_000_000,
        subject: "CN=ops",
        reason: "test",
        signature: None,
        signed_by: None,
        mode,
        rollback_of: None,
    }
}

fn statuses(s: &dyn Storage, name: &str) -> Vec<(u64, &'static str)> {
    s.policy_versions(name)
        .unwrap()
        .iter()
        .map(|v| (v.version, v.status.as_str()))
        .collect()
}

fn named_policies_version_in_order_through_apply_alongside_retire_and_rollback(b: Backend) {
    use assay_verifier::store::{ApplyMode::*, PolicyStatus, Retired};
    let s = b.open();
    assert!(s.policy_versions("default").unwrap().is_empty());
    assert!(s.policy_names().unwrap().is_empty());
    // The first version of a name is current, even if asked alongside.
    let a1 = s.apply_policy(&apply("default", "d1", Alongside)).unwrap();
    let v1 = &a1.version;
    assert_eq!((v1.version, v1.status), (1, PolicyStatus::Current));
    assert!(a1.previous.is_none() && a1.superseded.is_empty());
    assert_eq!(s.policy_text("d1").unwrap().as_deref(), Some("d1"));
    // A rollout: v2 alongside v1, then a newer next (v3) supersedes v2.
    s.apply_policy(&apply("default", "d2", Alongside)).unwrap();
    assert_eq!(statuses(&*s, "default"), [(1, "current"), (2, "alongside")]);
    let a3 = s.apply_policy(&apply("default", "d3", Alongside)).unwrap();
    assert_eq!(a3.previous.map(|p| p.version), Some(1), "v1 stays current");
    assert_eq!(
        a3.superseded
            .iter()
            .map(|v| (v.version, v.status))
            .collect::<Vec<_>>(),
        [(2, PolicyStatus::Superseded)]
    );
    assert_eq!(
        statuses(&*s, "default"),
        [(1, "current"), (2, "superseded"), (3, "alongside")]
    );
    // Retiring the current one promotes the next; the last accepted stays.
    match s.retire_policy_version("default", 1).unwrap() {
        Retired::Done { retired, promoted } => {
            assert_eq!(
                (retired.version, retired.status),
                (1, PolicyStatus::Retired)
            );
            assert_eq!(
                promoted.map(|p| (p.version, p.status)),
                Some((3, PolicyStatus::Current))
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        statuses(&*s, "default"),
        [(1, "retired"), (2, "superseded"), (3, "current")]
    );
    assert_eq!(
        s.retire_policy_version("default", 3).unwrap(),
        Retired::LastAccepted
    );
    assert_eq!(
        s.retire_policy_version("default", 2).unwrap(),
        Retired::NotAccepted(PolicyStatus::Superseded)
    );
    assert_eq!(
        s.retire_policy_version("default", 9).unwrap(),
        Retired::NotFound
    );
    assert_eq!(
        s.retire_policy_version("nope", 1).unwrap(),
        Retired::NotFound
    );
    // Replace supersedes every accepted version; a rollback is a new version.
    let a4 = s.apply_policy(&apply("default", "d4", Replace)).unwrap();
    assert_eq!(
        a4.previous.map(|p| (p.version, p.digest)),
        Some((3, "d3".into()))
    );
    let mut back = apply("default", "d1", Replace);
    back.rollback_of = Some(1);
    back.signature = Some("sig");
    back.signed_by = Some("0123456789ABCDEF");
    let v5 = s.apply_policy(&back).unwrap().version;
    assert_eq!(
        (v5.version, v5.rollback_of, v5.signature.as_deref()),
        (5, Some(1), Some("sig"))
    );
    let stored = s.policy_versions("default").unwrap().pop().unwrap();
    assert_eq!(stored, v5, "kept as applied");
    assert_eq!(stored.signed_by.as_deref(), Some("0123456789ABCDEF"));
    assert_eq!(
        statuses(&*s, "default"),
        [
            (1, "retired"),
            (2, "superseded"),
            (3, "superseded"),
            (4, "superseded"),
            (5, "current")
        ]
    );
    // Names are apart; a name that is a prefix of another stays apart.
    s.apply_policy(&apply("default-gpu", "g1", Replace))
        .unwrap();
    assert_eq!(statuses(&*s, "default").len(), 5);
    assert_eq!(statuses(&*s, "default-gpu"), [(1, "current")]);
    assert_eq!(s.policy_names().unwrap(), ["default", "default-gpu"]);
    // Kept across a reopen, every field.
    let before = s.policy_versions("default").unwrap();
    drop(s);
    let s = b.open();
    assert_eq!(s.policy_versions("default").unwrap(), before);
    assert_eq!(before[0].subject, "CN=ops");
}

fn concurrent_applies_to_one_name_all_get_a_version_in_order(b: Backend) {
    use assay_verifier::store::ApplyMode;
    let stores: Vec<Box<dyn Storage>> = match &b {
        Backend::Postgres(_) => vec![b.open(), b.open()],
        Backend::Sled(_) => vec![b.open()],
    };
    let digests: Vec<Vec<String>> = (0..4)
        .map(|t| (0..10).map(|i| format!("t{t}-{i}")).collect())
        .collect();
    std::thread::scope(|sc| {
        for (t, mine) in digests.iter().enumerate() {
            let s = stores[t % stores.len()].as_ref();
            sc.spawn(move || {
                for d in mine {
                    let mode = if d.ends_with('0') {
                        ApplyMode::Replace
                    } else {
                        ApplyMode::Alongside
                    };
                    s.apply_policy(&apply("fleet", d, mode)).unwrap();
                }
            });
        }
    });
    let v = stores[0].policy_versions("fleet").unwrap();
    // 40 applies from 4 writers on (for PostgreSQL) two handles: 40 versions,
    // numbered 1..=40, every digest once, one current, at most one alongside.
    assert_eq!(
        v.iter().map(|v| v.version).collect::<Vec<_>>(),
        (1..=40).collect::<Vec<_>>()
    );
    let mut seen: Vec<&str> = v.iter().map(|v| v.digest.as_str()).collect();
    seen.sort();
    let mut want: Vec<&str> = digests.iter().flatten().map(String::as_str).collect();
    want.sort();
    assert_eq!(seen, want);
    let count = |st: &str| v.iter().filter(|x| x.status.as_str() == st).count();
    assert_eq!(count("current"), 1);
    assert!(count("alongside") <= 1);
    // Each writer's own versions are in its order.
    for mine in &digests {
        let order: Vec<u64> = mine
            .iter()
            .map(|d| v.iter().find(|x| &x.digest == d).unwrap().version)
            .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
    }
}

fn policy_assignments_and_the_epoch_follow_every_change(b: Backend) {
    use assay_verifier::store::ApplyMode;
    let s = b.open();
    let e0 = s.policy_epoch().unwrap();
    s.apply_policy(&apply("gpu", "g1", ApplyMode::Replace))
        .unwrap();
    let e1 = s.policy_epoch().unwrap();
    assert_ne!(e1, e0, "an apply moves the epoch");
    s.assign_policy("gpu-nodes", Some("gpu")).unwrap();
    s.assign_policy("edge", Some("default")).unwrap();
    let e2 = s.policy_epoch().unwrap();
    assert_ne!(e2, e1, "an assignment moves the epoch");
    assert_eq!(
        s.policy_assignments().unwrap(),
        [
            ("edge".to_string(), "default".to_string()),
            ("gpu-nodes".into(), "gpu".into())
        ]
    );
    s.assign_policy("gpu-nodes", Some("default")).unwrap();
    s.assign_policy("edge", None).unwrap();
    assert_eq!(
        s.policy_assignments().unwrap(),
        [("gpu-nodes".to_string(), "default".to_string())]
    );
    s.apply_policy(&apply("gpu", "g2", ApplyMode::Alongside))
        .unwrap();
    let e3 = s.policy_epoch().unwrap();
    s.retire_policy_version("gpu", 1).unwrap();
    let e4 = s.policy_epoch().unwrap();
    assert!(e3 != e2 && e4 != e3, "apply and retire move the epoch");
    // A refused retire changes nothing, the epoch included.
    s.retire_policy_version("gpu", 1).unwrap();
    assert_eq!(s.policy_epoch().unwrap(), e4);
    // Seen by another handle (a replica, on PostgreSQL) and after a reopen.
    drop(s);
    let s = b.open();
    assert_eq!(s.policy_epoch().unwrap(), e4);
    assert_eq!(s.policy_assignments().unwrap().len(), 1);
}

fn unauthenticated_attempts_merge_per_node_and_keep_the_busiest_sources(b: Backend) {
    use assay_verifier::store::{UnauthenticatedAttempts, MAX_ATTEMPT_SOURCES};
    let s = b.open();
    assert_eq!(s.attempts("web-1").unwrap(), None);
    let mut first = UnauthenticatedAttempts::one("192.0.2.1", 100, vec!["quote.signature".into()]);
    first.merge(&UnauthenticatedAttempts::one("192.0.2.1", 101, vec![]));
    s.add_attempts("web-1", &first).unwrap();
    // Twenty more sources, each once, later: only the busiest are kept.
    let mut later = UnauthenticatedAttempts::default();
    for i in 0..20 {
        later.merge(&UnauthenticatedAttempts::one(
            &format!("198.51.100.{i}"),
            200 + i,
            vec!["nonce.issued".into()],
        ));
    }
    s.add_attempts("web-1", &later).unwrap();
    let got = s.attempts("web-1").unwrap().expect("recorded");
    assert_eq!(got.count, 22);
    assert_eq!((got.first_unix, got.last_unix), (100, 219));
    assert_eq!(got.last_failed, ["nonce.issued"]);
    assert_eq!(got.sources.len(), MAX_ATTEMPT_SOURCES);
    assert_eq!(
        (got.sources[0].address.as_str(), got.sources[0].count),
        ("192.0.2.1", 2)
    );
    // Per node: another node's record is its own, and survives a reopen.
    s.add_attempts("web-2", &UnauthenticatedAttempts::one("::1", 5, vec![]))
        .unwrap();
    drop(s);
    let s = b.open();
    assert_eq!(s.attempts("web-2").unwrap().unwrap().count, 1);
    assert_eq!(s.attempts("web-1").unwrap().unwrap().count, 22);
}

fn nonce(node: &str, expires: i64) -> NonceRecord {
    NonceRecord {
        node_id: node.into(),
        expires_unix: expires,
        used: false,
    }
}

fn token(node: &str, expires: i64, used: bool) -> TokenRecord {
    TokenRecord {
        node_id: node.into(),
        ak_name: "ak".into(),
        expires_unix: expires,
        used,
        revoked: false,
        issued_unix: expires - 600,
    }
}

fn hrec(node: &str, time: i64, passed: bool, kind: &str, failed: Option<&str>) -> HistoryRecord {
    HistoryRecord {
        seq: 0,
        node_id: node.into(),
        time_unix: time,
        passed,
        claims: failed
            .map(|c| vec![Claim::new(c, false, "e", "a", "l")])
            .unwrap_or_default(),
        policy_name: "p".into(),
        policy_digest: if time < 150 {
            "aaaa11".into()
        } else {
            "bbbb22".into()
        },
        evidence_digest: String::new(),
        prev_hash: String::new(),
        kind: kind.into(),
        policy_version: 0,
    }
}

fn nonce_is_consumed_once_even_under_concurrency(b: Backend) {
    let s = b.open();
    s.put_nonce(b"n1", &nonce("a", 10)).unwrap();
    // PostgreSQL: a second handle, as another replica would have.
    let other = match &b {
        Backend::Postgres(_) => Some(b.open()),
        Backend::Sled(_) => None,
    };
    let fresh = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..8)
            .map(|i| {
                let s: &dyn Storage = match (&other, i % 2) {
                    (Some(o), 1) => o.as_ref(),
                    _ => s.as_ref(),
                };
                sc.spawn(move || s.consume_nonce(b"n1").unwrap())
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().unwrap())
            .filter(|c| matches!(c, Consumed::Fresh(_)))
            .count()
    });
    assert_eq!(fresh, 1);
    assert!(matches!(
        s.consume_nonce(b"n1").unwrap(),
        Consumed::AlreadyUsed(r) if r.node_id == "a" && r.used
    ));
    assert_eq!(s.consume_nonce(b"nope").unwrap(), Consumed::Unknown);
}

fn history_is_hash_chained_survives_reopen_and_tampering_breaks_it(b: Backend) {
    {
        let s = b.open();
        let a = s.append_history(hrec("a", 1, true, "", None)).unwrap();
        let bb = s.append_history(hrec("b", 1, true, "", None)).unwrap();
        let c = s.append_history(hrec("c", 1, true, "", None)).unwrap();
        assert_eq!((a.seq, bb.seq, c.seq), (1, 2, 3));
        assert_eq!(bb.prev_hash, a.hash());
        assert_eq!(s.history_head().unwrap().unwrap(), c);
    }
    {
        let s = b.open();
        assert_eq!(s.verify_history_chain().unwrap(), Ok(3));
        let q = |node: Option<&str>| {
            s.query_history(&HistoryQuery {
                node_id: node.map(str::to_string),
                limit: 10,
                ..Default::default()
            })
            .unwrap()
            .0
        };
        assert_eq!(q(Some("a")).len(), 1);
        assert_eq!(q(None)[0].node_id, "c", "most recent first");
    }
    // Flip record 1's verdict under the store: the chain breaks at record 2.
    b.tamper_record(1, |j| j["passed"] = serde_json::Value::Bool(false));
    let s = b.open();
    assert!(!s.history_record(1).unwrap().unwrap().passed);
    assert_eq!(s.verify_history_chain().unwrap(), Err(2));
}

fn concurrent_appends_from_several_handles_form_one_gap_free_chain(b: Backend) {
    let stores: Vec<Box<dyn Storage>> = match &b {
        Backend::Postgres(_) => vec![b.open(), b.open()],
        Backend::Sled(_) => vec![b.open()],
    };
    std::thread::scope(|sc| {
        for t in 0..4 {
            let s = stores[t % stores.len()].as_ref();
            sc.spawn(move || {
                for i in 0..25 {
                    let node = format!("t{t}");
                    if i % 5 == 0 {
                        let batch = (0..3).map(|_| hrec(&node, 100 + i, true, "", None));
                        s.append_history_batch(batch.collect()).unwrap();
                    } else {
                        s.append_history(hrec(&node, 100 + i, true, "", None))
                            .unwrap();
                    }
                }
            });
        }
    });
    // 4 writers × (20 singles + 5 batches of 3) = 140 records, none lost or doubled.
    let s = stores[0].as_ref();
    assert_eq!(s.verify_history_chain().unwrap(), Ok(140));
    for t in 0..4 {
        let (r, _) = s
            .query_history(&HistoryQuery {
                node_id: Some(format!("t{t}")),
                limit: 1000,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(r.len(), 35, "writer t{t}");
    }
}

fn tokens_are_stored_hashed_and_single_use(b: Backend) {
    let tok = "header.payload.signature";
    {
        let s = b.open();
        s.put_token(tok, &token("a", 9, false)).unwrap();
        assert!(matches!(s.consume_token(tok).unwrap(), Consumed::Fresh(r) if !r.used));
        assert!(matches!(
            s.consume_token(tok).unwrap(),
            Consumed::AlreadyUsed(r) if r.used && !r.revoked
        ));
        assert!(matches!(
            s.consume_token("never.issued.token").unwrap(),
            Consumed::Unknown
        ));
    }
    let raw = b.raw_tokens();
    assert!(
        raw.contains(&token_id(tok)[..16]),
        "stored by its hash: {raw}"
    );
    assert!(!raw.contains(tok) && !raw.contains("payload"), "{raw}");
}

fn revoking_a_node_s_tokens_spares_other_nodes_and_used_tokens(b: Backend) {
    let s = b.open();
    s.put_token("a1", &token("a", 9, false)).unwrap();
    s.put_token("a2", &token("a", 9, true)).unwrap();
    s.put_token("b1", &token("b", 9, false)).unwrap();
    assert_eq!(s.revoke_node_tokens("a").unwrap(), 1);
    match s.consume_token("a1").unwrap() {
        Consumed::AlreadyUsed(r) => assert!(r.revoked),
        other => panic!("{other:?}"),
    }
    match s.consume_token("a2").unwrap() {
        Consumed::AlreadyUsed(r) => assert!(!r.revoked),
        other => panic!("{other:?}"),
    }
    assert!(matches!(s.consume_token("b1").unwrap(), Consumed::Fresh(_)));
}

fn purge_drops_only_what_expired_before_the_cutoff(b: Backend) {
    let s = b.open();
    s.put_nonce(b"old", &nonce("a", 10)).unwrap();
    s.put_nonce(b"new", &nonce("a", 100)).unwrap();
    s.put_token("t-old", &token("a", 10, true)).unwrap();
    s.put_token("t-new", &token("a", 100, true)).unwrap();
    let enrollment = |exp| PendingEnrollment {
        node_id: "a".into(),
        ek_cert_sha256: "ek".into(),
        ek_public: "ekp".into(),
        ak_public: "akp".into(),
        ak_name: "akn".into(),
        credential_sha256: "c".into(),
        expires_unix: exp,
        ek_certificate: String::new(),
        ek_chain: Vec::new(),
    };
    s.put_enrollment("e-old", &enrollment(10)).unwrap();
    s.put_enrollment("e-new", &enrollment(100)).unwrap();
    assert_eq!(s.purge_expired(50).unwrap(), 3);
    assert_eq!(s.consume_nonce(b"old").unwrap(), Consumed::Unknown);
    assert!(matches!(
        s.consume_nonce(b"new").unwrap(),
        Consumed::Fresh(_)
    ));
    assert!(matches!(
        s.consume_token("t-old").unwrap(),
        Consumed::Unknown
    ));
    assert!(matches!(
        s.consume_token("t-new").unwrap(),
        Consumed::AlreadyUsed(_)
    ));
    assert!(s.take_enrollment("e-old").unwrap().is_none());
    assert!(s.take_enrollment("e-new").unwrap().is_some());
    assert_eq!(s.purge_expired(50).unwrap(), 0);
}

fn tokens_are_listed_by_id_never_by_value_and_revoked_one_at_a_time(b: Backend) {
    let s = b.open();
    s.put_token("tok-a1", &token("a", 1000, false)).unwrap();
    s.put_token("tok-a2", &token("a", 2000, true)).unwrap();
    s.put_token("tok-a3", &token("a", 500, false)).unwrap();
    s.put_token("tok-b1", &token("b", 3000, false)).unwrap();
    let now = 700;
    // Unused only: a1 (a3 expired, a2 used), b1; newest expiry first.
    let ids: Vec<String> = s
        .tokens(None, true, now, 100)
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(ids, vec![token_id("tok-b1"), token_id("tok-a1")]);
    let all = s.tokens(Some("a"), false, now, 100).unwrap();
    let states: Vec<&str> = all.iter().map(|(_, r)| r.state(now)).collect();
    assert_eq!(states, vec!["used", "unused", "expired"]);
    assert_eq!(all[1].1.issued_unix, 400, "every field kept");
    assert_eq!(s.tokens(None, false, now, 2).unwrap().len(), 2, "limit");
    let listed = format!("{:?}", s.tokens(None, false, now, 100).unwrap());
    assert!(!listed.contains("tok-"), "a token value never comes out");

    let a1 = token_id("tok-a1");
    match s.revoke_token(&a1[..12].to_ascii_uppercase()).unwrap() {
        RevokeOne::Revoked(r) => assert!(r.node_id == "a" && r.revoked && r.used),
        other => panic!("{other:?}"),
    }
    match s.consume_token("tok-a1").unwrap() {
        Consumed::AlreadyUsed(r) => assert!(r.revoked && r.state(now) == "revoked"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(s.revoke_token(&a1).unwrap(), RevokeOne::Spent(_)));
    assert!(matches!(
        s.revoke_token(&token_id("tok-a2")).unwrap(),
        RevokeOne::Spent(_)
    ));
    assert!(matches!(
        s.revoke_token("00000000deadbeef").unwrap(),
        RevokeOne::NotFound
    ));
    // The empty prefix (the API refuses it) would name every token.
    assert!(matches!(
        s.revoke_token("").unwrap(),
        RevokeOne::Ambiguous(4)
    ));
    assert!(matches!(
        s.consume_token("tok-b1").unwrap(),
        Consumed::Fresh(_)
    ));
}

fn history_queries_filter_by_node_time_verdict_policy_and_claim_and_page(b: Backend) {
    let s = b.open();
    let mut recs = Vec::new();
    for i in 0..300 {
        let node = format!("n{}", i % 3);
        let failed = (i % 10 == 0).then_some("pcr.sha256.7");
        recs.push(hrec(&node, 100 + i / 2, failed.is_none(), "", failed));
    }
    recs.push(hrec("n1", 90, false, "stale", Some("attestation.fresh")));
    let stored = s.append_history_batch(recs).unwrap();
    assert_eq!(stored.len(), 301);
    assert_eq!(stored[300].time_unix, 249, "times never go backwards");
    assert_eq!(s.verify_history_chain().unwrap(), Ok(301));
    let q = |f: &dyn Fn(&mut HistoryQuery)| {
        let mut q = HistoryQuery {
            limit: 1000,
            ..Default::default()
        };
        f(&mut q);
        s.query_history(&q).unwrap()
    };
    let (all, next) = q(&|_| {});
    assert_eq!((all.len(), next), (301, 0));
    assert!(all.windows(2).all(|w| w[0].seq > w[1].seq), "newest first");
    assert_eq!(all.last().unwrap(), &stored[0], "stored as returned");
    let (r, _) = q(&|q| q.node_id = Some("n1".into()));
    assert_eq!(r.len(), 101);
    assert!(r.iter().all(|x| x.node_id == "n1"));
    let (r, _) = q(&|q| {
        q.from_unix = Some(110);
        q.to_unix = Some(119);
    });
    assert_eq!(r.len(), 20);
    assert!(r.iter().all(|x| (110..=119).contains(&x.time_unix)));
    let (r, _) = q(&|q| {
        q.node_id = Some("n2".into());
        q.from_unix = Some(110);
        q.to_unix = Some(119);
    });
    assert!(r
        .iter()
        .all(|x| x.node_id == "n2" && (110..=119).contains(&x.time_unix)));
    assert_eq!(r.len(), 7);
    let (r, _) = q(&|q| q.verdict = Some("fail".into()));
    assert_eq!(r.len(), 30);
    let (r, _) = q(&|q| q.verdict = Some("pass".into()));
    assert_eq!(r.len(), 270);
    let (r, _) = q(&|q| q.verdict = Some("stale".into()));
    assert_eq!(r.len(), 1);
    let (r, _) = q(&|q| q.failed_claim = Some("pcr.sha256.7".into()));
    assert_eq!(r.len(), 30);
    let (r, _) = q(&|q| q.failed_claim = Some("pcr.sha256".into()));
    assert!(r.is_empty(), "a claim id, not a prefix");
    let (r, _) = q(&|q| q.policy_digest = Some("aaaa".into()));
    assert_eq!(r.len(), 101, "100 verdicts before t=150 and the stale mark");
    // Paging: disjoint pages that add up to everything.
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let (page, next) = q(&|q| {
            q.limit = 64;
            q.node_id = Some("n0".into());
            q.before_seq = before;
        });
        seen.extend(page.iter().map(|r| r.seq));
        if next == 0 {
            break;
        }
        before = Some(next);
    }
    assert_eq!(seen.len(), 100);
    seen.dedup();
    assert_eq!(seen.len(), 100);
    // Empty ranges.
    assert!(q(&|q| q.from_unix = Some(10_000)).0.is_empty());
    assert!(q(&|q| q.to_unix = Some(1)).0.is_empty());
    assert!(q(&|q| q.node_id = Some("nobody".into())).0.is_empty());
    assert!(q(&|q| q.limit = 0).0.is_empty());
    // The first record at or after a time, and a page of the raw chain.
    assert_eq!(s.history_between(120, i64::MAX, 1).unwrap()[0].seq, 41);
    let found = s.history_found(299, 10).unwrap();
    assert_eq!(
        found.iter().map(|f| f.key_seq).collect::<Vec<_>>(),
        vec![299, 300, 301]
    );
}

fn the_fleet_at_a_moment_is_each_node_s_last_verdict_then(b: Backend) {
    let s = b.open();
    s.append_history_batch(vec![
        hrec("a", 100, true, "", None),
        hrec("b", 100, true, "", None),
        hrec("a", 110, false, "", Some("pcr.sha256.7")),
        hrec("a", 111, true, "webhook", None),
        hrec("", 115, true, "admin", None),
        hrec("b", 120, false, "stale", Some("attestation.fresh")),
        hrec("c", 130, true, "", None),
    ])
    .unwrap();
    let at = |t| -> Vec<(String, Option<(bool, String)>)> {
        s.fleet_at(t)
            .unwrap()
            .into_iter()
            .map(|(n, r)| (n, r.map(|r| (r.passed, r.kind))))
            .collect()
    };
    let st = |p: bool, k: &str| Some((p, k.to_string()));
    assert_eq!(
        at(105),
        vec![
            ("a".into(), st(true, "")),
            ("b".into(), st(true, "")),
            ("c".into(), None)
        ]
    );
    assert_eq!(
        at(125),
        vec![
            ("a".into(), st(false, "")),
            ("b".into(), st(false, "stale")),
            ("c".into(), None)
        ]
    );
    assert_eq!(at(200)[2], ("c".into(), st(true, "")));
    assert!(at(50).iter().all(|(_, r)| r.is_none()));
}

fn evidence_logs_are_stored_once_and_pruned_oldest_first_by_age_count_and_size(b: Backend) {
    {
        let s = b.open();
        let ev = |t: i64| StoredEvidence {
            node_id: "n".into(),
            time_unix: t,
            attest: "00".repeat(100),
            signature: "11".repeat(100),
            ..Default::default()
        };
        let shared = vec![7u8; 10_000];
        for seq in 1..=5u64 {
            let own = vec![seq as u8; 1000];
            s.put_evidence(
                seq,
                ev(100 * seq as i64),
                Logs {
                    uefi: Some(&shared),
                    ima: Some(&own),
                    cel: None,
                },
            )
            .unwrap();
        }
        // 5 × (200 + 1000) + one copy of the shared 10,000-byte log.
        assert_eq!(s.evidence_usage().unwrap(), (16_000, 5));
        let (e, logs) = s.evidence(3).unwrap().unwrap();
        assert_eq!(e.time_unix, 300);
        assert_eq!(logs.uefi.as_deref(), Some(shared.as_slice()));
        assert_eq!(logs.ima.as_deref(), Some(vec![3u8; 1000].as_slice()));
        assert!(logs.cel.is_none() && e.cel_log.is_none());
        assert!(s.evidence(99).unwrap().is_none());
        // By age: entries older than t=250 go (seq 1, 2); the shared log stays.
        assert_eq!(s.prune_evidence(250, usize::MAX, u64::MAX).unwrap(), 2);
        assert!(s.evidence(1).unwrap().is_none() && s.evidence(3).unwrap().is_some());
        assert_eq!(
            s.evidence(3).unwrap().unwrap().1.uefi.as_deref(),
            Some(shared.as_slice())
        );
        assert_eq!(s.evidence_usage().unwrap(), (13_600, 3));
        // By count: seq 3 goes.
        assert_eq!(s.prune_evidence(0, 2, u64::MAX).unwrap(), 1);
        assert_eq!(s.evidence_usage().unwrap(), (12_400, 2));
        // By size: removing seq 4 frees only its own 1,200 bytes (the shared
        // log is still used), so seq 5 goes too, taking the shared log.
        assert_eq!(s.prune_evidence(0, usize::MAX, 5_000).unwrap(), 2);
        assert_eq!(s.evidence_usage().unwrap(), (0, 0));
        assert_eq!(s.prune_evidence(i64::MAX, 0, 0).unwrap(), 0, "nothing left");
    }
    assert_eq!(b.blob_count(), 0, "no log left behind");
}

fn nodes_enrollments_quarantines_policies_and_checkpoints_round_trip(b: Backend) {
    let s = b.open();
    let node = NodeRecord {
        activated_unix: 5,
        ..node_record("node-1")
    };
    assert!(s.node("node-1").unwrap().is_none());
    s.put_node(&node).unwrap();
    assert_eq!(s.node("node-1").unwrap().as_ref(), Some(&node));
    let clock = ClockInfo {
        clock: 1 << 40,
        reset_count: 3,
        restart_count: 1,
        safe: true,
    };
    s.set_last_clock("node-1", clock).unwrap();
    s.set_last_pass("node-1", 1000).unwrap();
    s.set_last_pass("ghost", 1000).unwrap();
    let n = s.node("node-1").unwrap().unwrap();
    assert_eq!((n.last_clock, n.last_pass_unix), (Some(clock), Some(1000)));
    assert!(s.node("ghost").unwrap().is_none(), "no node made up");
    assert_eq!(
        s.nodes_passed_before(1001).unwrap(),
        vec![("node-1".to_string(), 1000)]
    );
    assert!(s.nodes_passed_before(1000).unwrap().is_empty());
    // Enrolling again replaces the record.
    let again = NodeRecord {
        ak_name: "akn2".into(),
        ..node.clone()
    };
    s.put_node(&again).unwrap();
    assert_eq!(s.node("node-1").unwrap().unwrap().ak_name, "akn2");
    assert!(s.remove_node("node-1").unwrap());
    assert!(!s.remove_node("node-1").unwrap());
    assert!(s.node("node-1").unwrap().is_none());

    assert!(s.quarantine("q").unwrap().is_none());
    let q = Quarantine {
        since_unix: 7,
        applied: false,
    };
    s.set_quarantine("q", Some(&q)).unwrap();
    s.set_quarantine(
        "r",
        Some(&Quarantine {
            since_unix: 8,
            applied: true,
        }),
    )
    .unwrap();
    assert_eq!(s.quarantine("q").unwrap(), Some(q.clone()));
    assert_eq!(s.unapplied_quarantines().unwrap(), vec!["q".to_string()]);
    let all = s.quarantines().unwrap();
    assert_eq!(
        all.iter()
            .map(|(n, q)| (n.as_str(), q.applied))
            .collect::<Vec<_>>(),
        vec![("q", false), ("r", true)],
        "every quarantine, by node id"
    );
    assert_eq!(s.quarantined_count().unwrap(), 2);
    s.set_quarantine("q", None).unwrap();
    assert!(s.quarantine("q").unwrap().is_none());
    assert!(s.unapplied_quarantines().unwrap().is_empty());
    assert_eq!(s.quarantined_count().unwrap(), 1);

    assert!(s.current_policy().unwrap().is_none());
    s.put_policy("d1", "name = \"one\"").unwrap();
    s.put_policy("d1", "name = \"one\"").unwrap();
    s.set_current_policy("d1").unwrap();
    s.set_current_policy("d2").unwrap();
    assert_eq!(s.current_policy().unwrap().as_deref(), Some("d2"));
    assert_eq!(
        s.policy_text("d1").unwrap().as_deref(),
        Some("name = \"one\"")
    );
    assert!(s.policy_text("d2").unwrap().is_none());

    assert!(s.last_checkpoint().unwrap().is_none());
    for seq in [10, 20, 30] {
        s.add_checkpoint(&Checkpoint {
            seq,
            head_hash: format!("h{seq}"),
            time_unix: seq as i64,
            signature: "sig".into(),
        })
        .unwrap();
    }
    let seqs = |v: Vec<Checkpoint>| v.into_iter().map(|c| c.seq).collect::<Vec<_>>();
    assert_eq!(seqs(s.checkpoints().unwrap()), vec![10, 20, 30]);
    assert_eq!(seqs(s.checkpoints_between(15, 30).unwrap()), vec![20, 30]);
    assert_eq!(s.last_checkpoint().unwrap().unwrap().head_hash, "h30");
}

fn an_enrollment_is_taken_once_even_under_concurrency(b: Backend) {
    let s = b.open();
    let e = PendingEnrollment {
        node_id: "a".into(),
        ek_cert_sha256: "ek".into(),
        ek_public: "ekp".into(),
        ak_public: "akp".into(),
        ak_name: "akn".into(),
        credential_sha256: "c".into(),
        expires_unix: 99,
        ek_certificate: "30820102".into(),
        ek_chain: vec!["3081".into(), "3082".into()],
    };
    s.put_enrollment("e1", &e).unwrap();
    let taken = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..6)
            .map(|_| sc.spawn(|| s.take_enrollment("e1").unwrap()))
            .collect();
        hs.into_iter()
            .filter_map(|h| h.join().unwrap())
            .collect::<Vec<_>>()
    });
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].credential_sha256, "c");
    assert!(s.take_enrollment("e1").unwrap().is_none());
}

fn a_verdict_s_writes_land_together(b: Backend) {
    let s = b.open();
    s.put_node(&node_record("n")).unwrap();
    s.append_history(hrec("other", 100, true, "", None))
        .unwrap();
    let clock = ClockInfo {
        clock: 77,
        reset_count: 1,
        restart_count: 0,
        safe: true,
    };
    let log = vec![5u8; 300];
    let rec = s
        .record_verdict(VerdictWrite {
            record: hrec("n", 120, true, "", None),
            evidence: Some(StoredEvidence {
                node_id: "n".into(),
                time_unix: 120,
                attest: "00".repeat(10),
                ..Default::default()
            }),
            logs: Logs {
                uefi: Some(&log),
                ..Logs::default()
            },
            clock: Some(clock),
            passed_at: Some(120),
            ima_state: ImaProgress::Set(ima_state(40)),
            token: Some(("tok-n", token("n", 999, false))),
        })
        .unwrap();
    assert_eq!(rec.seq, 2);
    assert_eq!(s.verify_history_chain().unwrap(), Ok(2));
    let (ev, logs) = s
        .evidence(2)
        .unwrap()
        .expect("evidence under the record's seq");
    assert_eq!(
        (ev.time_unix, logs.uefi.as_deref()),
        (120, Some(log.as_slice()))
    );
    let n = s.node("n").unwrap().unwrap();
    assert_eq!((n.last_clock, n.last_pass_unix), (Some(clock), Some(120)));
    assert_eq!(n.ima_state, Some(ima_state(40)));
    assert!(matches!(
        s.consume_token("tok-n").unwrap(),
        Consumed::Fresh(_)
    ));
    // A failed, unauthentic verdict changes nothing but the history.
    let rec = s
        .record_verdict(VerdictWrite {
            record: hrec("n", 130, false, "", Some("quote.signature")),
            evidence: None,
            logs: Logs::default(),
            clock: None,
            passed_at: None,
            ima_state: ImaProgress::Unchanged,
            token: None,
        })
        .unwrap();
    assert_eq!(rec.seq, 3);
    assert!(s.evidence(3).unwrap().is_none());
    let n = s.node("n").unwrap().unwrap();
    assert_eq!((n.last_clock, n.last_pass_unix), (Some(clock), Some(120)));
    assert_eq!(n.ima_state, Some(ima_state(40)), "kept while unchanged");
    // The IMA state moves with a verdict, and is dropped by one.
    for (change, expect) in [
        (ImaProgress::Set(ima_state(90)), Some(ima_state(90))),
        (ImaProgress::Clear, None),
    ] {
        s.record_verdict(VerdictWrite {
            record: hrec("n", 140, false, "", Some("ima.file")),
            evidence: None,
            logs: Logs::default(),
            clock: None,
            passed_at: None,
            ima_state: change,
            token: None,
        })
        .unwrap();
        assert_eq!(s.node("n").unwrap().unwrap().ima_state, expect);
    }
}

fn ima_state(entries: u64) -> ImaState {
    ImaState {
        reset_count: 1,
        restart_count: 0,
        first_template_hash: "ab".repeat(20),
        entries,
        pcr: 10,
        pcr_value: "cd".repeat(32),
        rules_digest: "ef".repeat(32),
    }
}

/// One EK holds one node id: enrollment looks the holder up by the EK
/// certificate's hash; a move (new record, then the old one removed), a
/// re-enrollment with another EK and a removal keep the index true, and it
/// survives reopening.
fn a_node_is_found_by_its_ek_and_the_index_follows_moves_and_removals(b: Backend) {
    let s = b.open();
    assert_eq!(s.node_by_ek("ekc").unwrap(), None);
    s.put_node(&node_record("node-a")).unwrap();
    assert_eq!(s.node_by_ek("ekc").unwrap().as_deref(), Some("node-a"));
    // Updates (last pass, clock) keep it.
    s.set_last_pass("node-a", 9).unwrap();
    assert_eq!(s.node_by_ek("ekc").unwrap().as_deref(), Some("node-a"));
    // `node move node-a node-b`.
    s.put_node(&node_record("node-b")).unwrap();
    assert!(s.remove_node("node-a").unwrap());
    assert_eq!(s.node_by_ek("ekc").unwrap().as_deref(), Some("node-b"));
    // The node re-enrolled with another EK (after `node remove`, a new TPM).
    s.put_node(&NodeRecord {
        ek_cert_sha256: "ekc2".into(),
        ..node_record("node-b")
    })
    .unwrap();
    assert_eq!(s.node_by_ek("ekc").unwrap(), None);
    assert_eq!(s.node_by_ek("ekc2").unwrap().as_deref(), Some("node-b"));
    drop(s);
    let s = b.open();
    assert_eq!(s.node_by_ek("ekc2").unwrap().as_deref(), Some("node-b"));
    assert!(s.remove_node("node-b").unwrap());
    assert_eq!(s.node_by_ek("ekc2").unwrap(), None);
}

fn node_record(id: &str) -> NodeRecord {
    NodeRecord {
        node_id: id.into(),
        ek_cert_sha256: "ekc".into(),
        ek_public: "ekp".into(),
        ak_public: "akp".into(),
        ak_name: "akn".into(),
        activated_unix: 1,
        last_clock: None,
        last_pass_unix: None,
        ek_certificate: "3082".into(),
        ek_chain: vec!["30aa".into(), "30bb".into()],
        ima_state: None,
    }
}

/// `policy generate --node` reads the evidence kept with the node's newest
/// verdict whose quote was authentic — not a failed signature's, not
/// another node's.
fn policy_evidence_is_the_newest_authentic_verdict_s(b: Backend) {
    let s = b.open();
    let claim = |id: &str, passed| Claim::new(id, passed, "e", "a", "l");
    let write = |node: &str, claims: Vec<Claim>, log: Option<&[u8]>, keep: bool| {
        let mut record = hrec(node, 100, claims.iter().all(|c| c.passed), "", None);
        record.claims = claims;
        s.record_verdict(VerdictWrite {
            record,
            evidence: keep.then(|| StoredEvidence {
                node_id: node.into(),
                time_unix: 100,
                pcrs_sha256: vec![(0, "ab".repeat(32))],
                ..Default::default()
            }),
            logs: Logs {
                uefi: log,
                ..Logs::default()
            },
            clock: None,
            passed_at: None,
            ima_state: ImaProgress::Unchanged,
            token: None,
        })
        .unwrap()
        .seq
    };
    let authentic_pass = vec![
        claim("nonce.unused", true),
        claim("quote.signature", true),
        claim("quote.nonce", true),
    ];
    let authentic_fail = vec![
        claim("nonce.unused", true),
        claim("quote.signature", true),
        claim("quote.nonce", true),
        claim("pcr.sha256.0", false),
    ];
    // (Older stores hold such records: before forged evidence was only counted.)
    let forged = vec![
        claim("nonce.unused", true),
        claim("quote.signature", false),
        claim("quote.nonce", true),
    ];
    write("n", authentic_pass.clone(), Some(b"log A"), true);
    let newest = write("n", authentic_fail, Some(b"log B"), true);
    write("n", forged.clone(), Some(b"log C"), true);
    write("other", authentic_pass.clone(), Some(b"log D"), true);
    let (rec, ev, logs) = latest_authentic_evidence(s.as_ref(), "n").unwrap().unwrap();
    assert_eq!(rec.seq, newest);
    assert_eq!(logs.uefi.as_deref(), Some(&b"log B"[..]));
    assert_eq!(ev.pcrs_sha256, vec![(0, "ab".repeat(32))]);
    // Only forged quotes, or an authentic one whose evidence was not kept: none.
    write("m", forged, Some(b"log E"), true);
    assert!(latest_authentic_evidence(s.as_ref(), "m")
        .unwrap()
        .is_none());
    write("k", authentic_pass, None, false);
    assert!(latest_authentic_evidence(s.as_ref(), "k")
        .unwrap()
        .is_none());
    assert!(latest_authentic_evidence(s.as_ref(), "nobody")
        .unwrap()
        .is_none());
}

fn verdict_for<'a>(node: &str, i: i64, log: &'a [u8]) -> VerdictWrite<'a> {
    VerdictWrite {
        record: hrec(node, 100 + i, true, "", None),
        evidence: Some(StoredEvidence {
            node_id: node.into(),
            time_unix: 100 + i,
            attest: format!("{i:04x}"),
            ..Default::default()
        }),
        logs: Logs {
            uefi: Some(log),
            ..Logs::default()
        },
        clock: Some(ClockInfo {
            clock: 1000 + i as u64,
            reset_count: 1,
            restart_count: 0,
            safe: true,
        }),
        passed_at: Some(100 + i),
        ima_state: ImaProgress::Unchanged,
        token: None,
    }
}

/// Verdicts from many threads (and, on PostgreSQL, two handles, as two
/// replicas) — written many to a transaction on PostgreSQL — each land once,
/// under the seq returned to their own caller, with their own evidence,
/// token and node state.
fn concurrent_verdicts_land_once_each_with_their_own_writes(b: Backend) {
    let stores: Vec<Box<dyn Storage>> = match &b {
        Backend::Postgres(_) => vec![b.open(), b.open()],
        Backend::Sled(_) => vec![b.open()],
    };
    let shared_log = vec![9u8; 2000];
    for t in 0..8 {
        stores[0].put_node(&node_record(&format!("v{t}"))).unwrap();
    }
    let returned = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|sc| {
        for t in 0..8 {
            let s = stores[t % stores.len()].as_ref();
            let (log, returned) = (&shared_log, &returned);
            sc.spawn(move || {
                let node = format!("v{t}");
                for i in 0..20 {
                    let mut w = verdict_for(&node, i, log);
                    let tok = format!("tok-{t}-{i}");
                    w.token = Some((&tok, token(&node, 999, false)));
                    let rec = s.record_verdict(w).unwrap();
                    returned
                        .lock()
                        .unwrap()
                        .push((node.clone(), i, rec.seq, tok));
                }
            });
        }
    });
    let s = stores[0].as_ref();
    let returned = returned.into_inner().unwrap();
    assert_eq!(s.verify_history_chain().unwrap(), Ok(160));
    let mut seqs: Vec<u64> = returned.iter().map(|r| r.2).collect();
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (1..=160).collect::<Vec<u64>>(),
        "one seq each, no gap"
    );
    for (node, i, seq, tok) in &returned {
        let rec = s.history_record(*seq).unwrap().unwrap();
        // (Record times never go backwards: a later seq may carry a later time.)
        assert_eq!(&rec.node_id, node, "seq {seq}");
        assert!(rec.time_unix >= 100 + i, "seq {seq}");
        let (ev, logs) = s.evidence(*seq).unwrap().expect("evidence");
        assert_eq!(ev.attest, format!("{i:04x}"), "seq {seq}");
        assert_eq!(logs.uefi.as_deref(), Some(shared_log.as_slice()));
        assert!(matches!(s.consume_token(tok).unwrap(), Consumed::Fresh(_)));
    }
    for t in 0..8 {
        let node = format!("v{t}");
        // Each node's verdicts came from one thread, in order: the last one's
        // state is what stays.
        let n = s.node(&node).unwrap().unwrap();
        assert_eq!(
            (n.last_clock.map(|c| c.clock), n.last_pass_unix),
            (Some(1019), Some(119)),
            "{node}"
        );
    }
}

/// On PostgreSQL a transaction holds many callers' verdicts: one that the
/// database refuses (a NUL byte in text) fails its own caller only.
#[test]
fn postgres_a_refused_verdict_fails_only_its_own_caller() {
    let b = Backend::postgres();
    let s = b.open();
    let log = vec![1u8; 100];
    let results = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|sc| {
        for t in 0..8 {
            let (s, log, results) = (s.as_ref(), &log, &results);
            sc.spawn(move || {
                for i in 0..10 {
                    let node = if t == 0 && i % 2 == 0 {
                        format!("bad\0{i}")
                    } else {
                        format!("ok{t}")
                    };
                    let r = s.record_verdict(verdict_for(&node, i, log));
                    results.lock().unwrap().push((node, r.is_ok()));
                }
            });
        }
    });
    let results = results.into_inner().unwrap();
    let refused: Vec<&String> = results.iter().filter(|r| !r.1).map(|r| &r.0).collect();
    assert_eq!(refused.len(), 5, "{refused:?}");
    assert!(refused.iter().all(|n| n.starts_with("bad")), "{refused:?}");
    assert_eq!(s.verify_history_chain().unwrap(), Ok(75));
}

/// A database a version-1 verifier left (schema 1, two chained records, one
/// evidence entry) is upgraded in place at start-up and the chain goes on.
#[test]
fn postgres_migrations_upgrade_a_version_1_database_in_place() {
    let db = PgDb::new().expect("PostgreSQL");
    db.psql(include_str!("../../verifier/migrations/0001_init.sql"))
        .unwrap();
    db.psql(
        "CREATE TABLE assay_schema (version integer PRIMARY KEY, applied_unix bigint NOT NULL); \
         INSERT INTO assay_schema VALUES (1, 0)",
    )
    .unwrap();
    let mut r1 = hrec("a", 100, true, "", None);
    r1.seq = 1;
    let mut r2 = hrec("b", 101, true, "", None);
    r2.seq = 2;
    r2.prev_hash = r1.hash();
    for r in [&r1, &r2] {
        db.psql(&format!(
            "INSERT INTO history VALUES ({}, '{}', {}, '', true, 'aaaa11', '{{}}', '{}')",
            r.seq,
            r.node_id,
            r.time_unix,
            serde_json::to_string(r).unwrap().replace('\'', "''")
        ))
        .unwrap();
    }
    let ev = StoredEvidence {
        node_id: "a".into(),
        time_unix: 100,
        attest: "00".repeat(40),
        signature: "11".repeat(60),
        ..Default::default()
    };
    db.psql(&format!(
        "INSERT INTO evidence VALUES (1, 100, '{}')",
        serde_json::to_string(&ev).unwrap()
    ))
    .unwrap();

    let b = Backend::Postgres(db);
    let s = b.open();
    let r3 = s.append_history(hrec("c", 99, true, "", None)).unwrap();
    assert_eq!((r3.seq, r3.prev_hash.as_str()), (3, r2.hash().as_str()));
    assert_eq!(
        r3.time_unix, 101,
        "times never go backwards, across the upgrade"
    );
    assert_eq!(s.verify_history_chain().unwrap(), Ok(3));
    assert_eq!(s.evidence_usage().unwrap(), (100, 1), "40 + 60 bytes");
}

fn entry(id: &str, ek: &str) -> InventoryEntry {
    InventoryEntry {
        node_id: id.into(),
        binding: EkBinding::Certificate,
        ek_sha256: ek.into(),
        ek_subject: String::new(),
        labels: Default::default(),
        added_unix: 1,
        added_by: "op".into(),
    }
}

fn inventory_adds_all_or_none_and_one_ek_holds_one_node_id(b: Backend) {
    let s = b.open();
    let batch: Vec<InventoryEntry> = (0..300)
        .map(|i| entry(&format!("n{i:04}"), &format!("ek{i:04}")))
        .collect();
    let added = s.add_inventory(&batch).unwrap().unwrap();
    assert_eq!(added.added, 300);
    assert_eq!(
        s.inventory_by_ek("ek0123").unwrap().unwrap().node_id,
        "n0123"
    );
    assert_eq!(s.inventory("n0007").unwrap().unwrap().ek_sha256, "ek0007");
    assert_eq!(s.inventory_by_ek("nope").unwrap(), None);
    // Again: unchanged; with a label: updated.
    let again = s.add_inventory(&batch).unwrap().unwrap();
    assert_eq!((again.added, again.unchanged), (0, 300));
    let mut labelled = entry("n0001", "ek0001");
    labelled.labels.insert("rack".into(), "r1".into());
    let up = s.add_inventory(&[labelled.clone()]).unwrap().unwrap();
    assert_eq!(up.updated, 1);
    assert_eq!(s.inventory("n0001").unwrap().unwrap(), labelled);
    // A batch with one conflict writes nothing: the EK of n0002 under a new
    // id, a known id with another EK, and duplicates within the batch.
    for bad in [
        vec![entry("new-1", "ek-new-1"), entry("new-2", "ek0002")],
        vec![entry("new-1", "ek-new-1"), entry("n0003", "ek-other")],
        vec![entry("new-1", "ek-new-1"), entry("new-1", "ek-new-2")],
        vec![entry("new-1", "ek-new-1"), entry("new-2", "ek-new-1")],
    ] {
        let c = s.add_inventory(&bad).unwrap().unwrap_err();
        assert_eq!(c.0.len(), 1, "{:?}", c.0);
        assert_eq!(s.inventory("new-1").unwrap(), None, "{:?}", c.0);
        assert_eq!(s.inventory_by_ek("ek-new-1").unwrap(), None);
    }
    assert_eq!(
        s.inventory_by_ek("ek0002").unwrap().unwrap().node_id,
        "n0002"
    );
    // Paging in node-id order.
    let mut seen = Vec::new();
    let mut after = String::new();
    loop {
        let page = s.list_inventory(&after, 128).unwrap();
        let Some(last) = page.last() else { break };
        after = last.node_id.clone();
        seen.extend(page.into_iter().map(|e| e.node_id));
    }
    assert_eq!(seen.len(), 300);
    assert!(seen.windows(2).all(|w| w[0] < w[1]));
    // Removal frees the id and the EK; it survives a reopen.
    assert!(s.remove_inventory("n0004").unwrap());
    assert!(!s.remove_inventory("n0004").unwrap());
    drop(s);
    let s = b.open();
    assert_eq!(s.inventory("n0004").unwrap(), None);
    assert_eq!(s.inventory_by_ek("ek0004").unwrap(), None);
    assert_eq!(
        s.add_inventory(&[entry("n9999", "ek0004")])
            .unwrap()
            .unwrap()
            .added,
        1
    );
    assert_eq!(s.list_inventory("", 1000).unwrap().len(), 300);
}

fn a_move_carries_registration_enrollment_and_quarantine_atomically(b: Backend) {
    let s = b.open();
    s.add_inventory(&[entry("node-a", "ekc"), entry("node-c", "ekz")])
        .unwrap()
        .unwrap();
    s.put_node(&node_record("node-a")).unwrap();
    let q = Quarantine {
        since_unix: 5,
        applied: false,
    };
    s.set_quarantine("node-a", Some(&q)).unwrap();
    // Onto a taken id (registered), or from an unknown one: nothing moves.
    assert_eq!(s.move_node("node-a", "node-c").unwrap(), Moved::Taken);
    assert_eq!(s.move_node("ghost", "node-x").unwrap(), Moved::Unknown);
    assert!(s.node("node-a").unwrap().is_some());
    assert_eq!(
        s.move_node("node-a", "node-b").unwrap(),
        Moved::Done {
            enrolled: true,
            registered: true
        }
    );
    assert_eq!(s.node("node-a").unwrap(), None);
    assert_eq!(s.inventory("node-a").unwrap(), None);
    assert_eq!(s.quarantine("node-a").unwrap(), None);
    let n = s.node("node-b").unwrap().unwrap();
    assert_eq!(
        (n.node_id.as_str(), n.ek_cert_sha256.as_str()),
        ("node-b", "ekc")
    );
    assert_eq!(s.node_by_ek("ekc").unwrap().as_deref(), Some("node-b"));
    assert_eq!(s.inventory_by_ek("ekc").unwrap().unwrap().node_id, "node-b");
    assert_eq!(s.quarantine("node-b").unwrap(), Some(q));
    // Enrolled but never registered (open mode) moves too; the list of
    // enrolled nodes follows.
    s.put_node(&NodeRecord {
        ek_cert_sha256: "ekd".into(),
        ..node_record("node-d")
    })
    .unwrap();
    assert_eq!(
        s.move_node("node-d", "node-e").unwrap(),
        Moved::Done {
            enrolled: true,
            registered: false
        }
    );
    let ids: Vec<String> = s
        .list_nodes("", 10)
        .unwrap()
        .into_iter()
        .map(|n| n.node_id)
        .collect();
    assert_eq!(ids, ["node-b", "node-e"]);
    assert_eq!(s.list_nodes("node-b", 10).unwrap().len(), 1);
}
