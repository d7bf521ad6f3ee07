//! What the store keeps: the records the service reads and writes, and how
//! the backends encode them.

use assay_core::tpm::attest::ClockInfo;
use assay_core::verify::{ImaProgress, ImaState};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::StoreError;

/// A node whose AK is bound to its EK (activation completed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub node_id: String,
    /// Hex SHA-256 of the DER EK certificate the node enrolled with.
    pub ek_cert_sha256: String,
    /// Hex TPM2B_PUBLIC of the EK.
    pub ek_public: String,
    /// Hex TPM2B_PUBLIC of the bound AK.
    pub ak_public: String,
    /// Hex TPM name of the bound AK.
    pub ak_name: String,
    pub activated_unix: i64,
    /// Clock info of the last quote whose signature verified (rollback detection).
    pub last_clock: Option<ClockInfo>,
    /// When the node last passed; a node that does not pass again within
    /// `stale_after_secs` is stale.
    #[serde(default)]
    pub last_pass_unix: Option<i64>,
    /// Hex DER of the EK certificate it enrolled with (empty for an EK
    /// enrolled without one, or before this was kept): what each attestation
    /// checks against the EK CRLs.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ek_certificate: String,
    /// Hex DER of the CA certificates the node sent from its TPM's EK chain
    /// NV range (intermediates of the EK certificate's path).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ek_chain: Vec<String>,
    /// How far its IMA log was verified in its current boot (incremental
    /// attestation); moved by each authentic verdict, in the same write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ima_state: Option<ImaState>,
}

/// How an inventory entry names its node's EK.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EkBinding {
    /// The SHA-256 of the DER EK certificate (which must also chain to a
    /// configured root).
    Certificate,
    /// The SHA-256 of the EK's TPM2B_PUBLIC, for a TPM without an EK
    /// certificate: the registration is then the only thing vouching for it.
    PublicArea,
}

impl EkBinding {
    pub fn as_str(self) -> &'static str {
        match self {
            EkBinding::Certificate => "certificate",
            EkBinding::PublicArea => "public_area",
        }
    }
}

/// A node registered by an operator (inventory enrollment mode): the node id
/// its EK may enroll under, and the node's labels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryEntry {
    pub node_id: String,
    pub binding: EkBinding,
    /// Hex SHA-256 of what `binding` names (lower case).
    pub ek_sha256: String,
    /// The EK certificate's subject, when the operator gave the certificate.
    #[serde(default)]
    pub ek_subject: String,
    /// Labels (e.g. `rack=r12`, `class=gpu`), for node groups.
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    pub added_unix: i64,
    /// The subject of the operator certificate that registered it.
    #[serde(default)]
    pub added_by: String,
}

/// What registering inventory entries did (all of them, or none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InventoryAdded {
    pub added: usize,
    /// Already registered with the same EK; labels replaced.
    pub updated: usize,
    /// Already registered exactly so.
    pub unchanged: usize,
    /// The node ids written (added or updated), in the batch's order.
    pub written: Vec<String>,
}

/// Why registering inventory entries was refused (nothing was written):
/// one line per conflicting entry, at most [`MAX_CONFLICTS_LISTED`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryConflicts(pub Vec<String>);

pub const MAX_CONFLICTS_LISTED: usize = 20;

/// What `move_node` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Moved {
    /// The inventory entry and/or the enrolled record now carry the new id.
    Done { enrolled: bool, registered: bool },
    /// `from` is neither enrolled nor registered.
    Unknown,
    /// `to` is already enrolled or registered.
    Taken,
}

/// An enrollment waiting for the node's proof of credential activation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingEnrollment {
    pub node_id: String,
    pub ek_cert_sha256: String,
    pub ek_public: String,
    pub ak_public: String,
    pub ak_name: String,
    /// Hex SHA-256 of the credential; the credential itself is never stored.
    pub credential_sha256: String,
    pub expires_unix: i64,
    /// Hex DER of the EK certificate (empty: enrolled without one).
    #[serde(default)]
    pub ek_certificate: String,
    /// Hex DER of the EK chain certificates it sent.
    #[serde(default)]
    pub ek_chain: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NonceRecord {
    pub node_id: String,
    pub expires_unix: i64,
    pub used: bool,
}

/// A node isolated after a failed attestation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quarantine {
    pub since_unix: i64,
    /// The orchestrator confirmed the isolation (drain, …); retried until it does.
    pub applied: bool,
}

/// A join token, stored under the SHA-256 of the token: the token itself never is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenRecord {
    pub node_id: String,
    pub ak_name: String,
    pub expires_unix: i64,
    pub used: bool,
    /// Revoked (the node failed attestation, or an operator) before it was used.
    #[serde(default)]
    pub revoked: bool,
    #[serde(default)]
    pub issued_unix: i64,
}

impl TokenRecord {
    /// `unused`, `used`, `revoked` or `expired`.
    pub fn state(&self, now_unix: i64) -> &'static str {
        match (self.revoked, self.used) {
            (true, _) => "revoked",
            (false, true) => "used",
            (false, false) if self.expires_unix <= now_unix => "expired",
            _ => "unused",
        }
    }
}

/// What revoking one token by id found.
#[derive(Debug, Clone)]
pub enum RevokeOne {
    Revoked(TokenRecord),
    /// Already used or revoked: nothing to do.
    Spent(TokenRecord),
    NotFound,
    /// The prefix names more than one token.
    Ambiguous(usize),
}

/// Shortest token id prefix accepted by [`super::SingleUseStore::revoke_token`] (hex digits).
pub const MIN_TOKEN_ID_PREFIX: usize = 8;

/// A token's public id: the hex SHA-256 of the token (what the store is keyed by).
pub fn token_id(token: &str) -> String {
    hex::encode(token_key(token))
}

/// One verdict in the history. `hash` chains it to the previous record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryRecord {
    pub seq: u64,
    pub node_id: String,
    pub time_unix: i64,
    pub passed: bool,
    pub claims: Vec<assay_core::verdict::Claim>,
    pub policy_name: String,
    pub policy_digest: String,
    pub evidence_digest: String,
    /// Hex SHA-256 of the previous record's canonical JSON; empty for the first.
    pub prev_hash: String,
    /// Empty for a verdict; `stale` (no pass within the window), `webhook` (a
    /// notification's delivery). Left out of the JSON when empty, so records
    /// written before it existed hash as they did.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// The version of the named policy `policy_name` the verdict was judged
    /// under (`policy list`); 0 for records written before policies had
    /// versions, and left out of the JSON then, so they hash as they did.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub policy_version: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl HistoryRecord {
    /// SHA-256 of the record's canonical JSON (the value the next record chains to).
    pub fn hash(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        hex::encode(Sha256::digest(json))
    }
}

/// What consuming a single-use object found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Consumed<T> {
    /// It existed and was unused; it is now used.
    Fresh(T),
    /// It existed and had been used before.
    AlreadyUsed(T),
    /// It never existed (or was purged).
    Unknown,
}

/// What one attestation's verdict writes.
#[derive(Debug, Clone)]
pub struct VerdictWrite<'a> {
    /// The history record (its seq and prev_hash are assigned).
    pub record: HistoryRecord,
    /// The evidence behind it (kept under the record's seq) and its logs.
    pub evidence: Option<StoredEvidence>,
    pub logs: Logs<&'a [u8]>,
    /// An authentic quote's clock: the node's new rollback baseline.
    pub clock: Option<ClockInfo>,
    /// What the IMA judgement does to the node's kept IMA state.
    pub ima_state: ImaProgress,
    /// A pass at this time: the start of the node's freshness window.
    pub passed_at: Option<i64>,
    /// A pass's join token (stored by its hash) and record.
    pub token: Option<(&'a str, TokenRecord)>,
}

/// A signed statement: "record `seq` is the head, with hash `head_hash`, at
/// `time_unix`" (see `audit`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub seq: u64,
    pub head_hash: String,
    pub time_unix: i64,
    /// Detached JWS over [`Checkpoint::payload`].
    pub signature: String,
}

impl Checkpoint {
    /// The exact bytes signed.
    pub fn payload(seq: u64, head_hash: &str, time_unix: i64) -> Vec<u8> {
        format!("assay-history-checkpoint/v1\n{seq}\n{head_hash}\n{time_unix}\n").into_bytes()
    }
}

/// One record as found: the position it was stored at (its key) and what it says.
#[derive(Debug, Clone)]
pub struct Found {
    /// The sequence number its storage key says (sled key, export line order).
    pub key_seq: u64,
    pub record: HistoryRecord,
}

/// The logs of one piece of evidence, by kind: owned (`Logs`, as read back)
/// or borrowed (`Logs<&[u8]>`, as written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logs<B = Vec<u8>> {
    /// The UEFI (firmware) event log.
    pub uefi: Option<B>,
    /// The IMA runtime measurement log.
    pub ima: Option<B>,
    /// The container measurement log (TCG CEL).
    pub cel: Option<B>,
}

impl<B> Default for Logs<B> {
    fn default() -> Self {
        Logs {
            uefi: None,
            ima: None,
            cel: None,
        }
    }
}

impl<B> Logs<B> {
    /// Applies `f` to each log there is, keeping which is which.
    pub fn map<C>(self, mut f: impl FnMut(B) -> C) -> Logs<C> {
        Logs {
            uefi: self.uefi.map(&mut f),
            ima: self.ima.map(&mut f),
            cel: self.cel.map(&mut f),
        }
    }

    /// Like [`Logs::map`], for a function that can fail.
    pub fn try_map<C, E>(self, mut f: impl FnMut(B) -> Result<C, E>) -> Result<Logs<C>, E> {
        Ok(Logs {
            uefi: self.uefi.map(&mut f).transpose()?,
            ima: self.ima.map(&mut f).transpose()?,
            cel: self.cel.map(&mut f).transpose()?,
        })
    }

    /// Whether there is any log at all.
    pub fn any(&self) -> bool {
        self.uefi.is_some() || self.ima.is_some() || self.cel.is_some()
    }
}

impl Logs<Vec<u8>> {
    /// The logs, borrowed.
    pub fn borrowed(&self) -> Logs<&[u8]> {
        Logs {
            uefi: self.uefi.as_deref(),
            ima: self.ima.as_deref(),
            cel: self.cel.as_deref(),
        }
    }
}

/// The evidence behind one record, as kept for `audit reverify`: what the
/// node sent and the verifier state the verdict depended on (AK, previous
/// TPM clock). Binary fields are hex; logs are named by their SHA-256.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEvidence {
    pub node_id: String,
    pub time_unix: i64,
    pub ak_public: String,
    pub nonce: String,
    pub attest: String,
    pub signature: String,
    pub pcrs_sha256: Vec<(u32, String)>,
    pub previous_clock: Option<ClockInfo>,
    /// The index of the IMA log's first entry (0: the whole log).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ima_first_entry: u64,
    /// The node's kept IMA state the judgement read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ima_state: Option<ImaState>,
    pub uefi_log: Option<String>,
    pub ima_log: Option<String>,
    pub cel_log: Option<String>,
    /// What keeping it cost (logs counted only when first stored).
    pub bytes: u64,
}

/// A history query: every filter optional.
#[derive(Debug, Clone, Default)]
pub struct HistoryQuery {
    pub node_id: Option<String>,
    pub from_unix: Option<i64>,
    pub to_unix: Option<i64>,
    /// `pass`, `fail`, `verdict` (either), or a record kind (`stale`, `webhook`, `admin`).
    pub verdict: Option<String>,
    /// A prefix of the policy digest (hex).
    pub policy_digest: Option<String>,
    /// Records where this claim failed.
    pub failed_claim: Option<String>,
    /// Only records older than this (paging).
    pub before_seq: Option<u64>,
    pub limit: usize,
}

impl HistoryQuery {
    pub(crate) fn matches(&self, r: &HistoryRecord) -> bool {
        let verdict_ok = match self.verdict.as_deref() {
            None => true,
            Some("pass") => r.kind.is_empty() && r.passed,
            Some("fail") => r.kind.is_empty() && !r.passed,
            Some("verdict") => r.kind.is_empty(),
            Some(kind) => r.kind == kind,
        };
        verdict_ok
            && self
                .policy_digest
                .as_ref()
                .is_none_or(|p| r.policy_digest.starts_with(p.as_str()))
            && self
                .failed_claim
                .as_ref()
                .is_none_or(|c| r.claims.iter().any(|x| !x.passed && &x.id == c))
    }
}

pub(crate) fn token_key(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

pub(crate) fn to_json<T: Serialize>(v: &T) -> Vec<u8> {
    // Serializing these plain structs cannot fail (no maps with non-string keys).
    serde_json::to_vec(v).unwrap_or_default()
}

pub(crate) fn from_json<T: DeserializeOwned>(
    tree: &'static str,
    key: &[u8],
    v: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(v).map_err(|e| StoreError::Corrupt {
        tree,
        key: hex::encode(key),
        reason: e.to_string(),
    })
}

/// What registering one inventory entry means, given what is registered
/// under its node id and under its EK (the same rule for every backend).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum InventoryPlan {
    Add,
    Update,
    Unchanged,
    Conflict(String),
}

pub(crate) fn plan_inventory(
    e: &InventoryEntry,
    by_node: Option<&InventoryEntry>,
    by_ek: Option<&InventoryEntry>,
) -> InventoryPlan {
    if let Some(other) = by_ek.filter(|o| o.node_id != e.node_id) {
        return InventoryPlan::Conflict(format!(
            "{}: this EK (sha256:{}) is registered as node {} (one EK holds one node id; \
             `node move {} {}` renames it)",
            e.node_id, e.ek_sha256, other.node_id, other.node_id, e.node_id
        ));
    }
    match by_node {
        None => InventoryPlan::Add,
        Some(old) if old.ek_sha256 != e.ek_sha256 || old.binding != e.binding => {
            InventoryPlan::Conflict(format!(
                "{}: registered with another EK ({} sha256:{}); `node remove {}` first if its \
                 TPM was replaced",
                e.node_id,
                old.binding.as_str(),
                old.ek_sha256,
                e.node_id
            ))
        }
        Some(old) if old.labels == e.labels && old.ek_subject == e.ek_subject => {
            InventoryPlan::Unchanged
        }
        Some(_) => InventoryPlan::Update,
    }
}

/// Conflicts inside one batch: a node id or an EK given twice.
pub(crate) fn batch_conflicts(entries: &[InventoryEntry]) -> Vec<String> {
    let mut nodes = std::collections::HashMap::new();
    let mut eks = std::collections::HashMap::new();
    let mut out = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        if let Some(j) = nodes.insert(e.node_id.as_str(), i) {
            out.push(format!(
                "{}: given twice (entries {} and {})",
                e.node_id,
                j + 1,
                i + 1
            ));
        }
        if let Some(j) = eks.insert(e.ek_sha256.as_str(), i) {
            out.push(format!(
                "{}: its EK sha256:{} is also given for {} (entry {})",
                e.node_id,
                e.ek_sha256,
                entries[j].node_id,
                j + 1
            ));
        }
        if out.len() >= MAX_CONFLICTS_LISTED {
            break;
        }
    }
    out
}

/// Plans a batch under [`plan_inventory`]: the counts and the entries to
/// write, or the conflicts (nothing is to be written then). `lookup` gives
/// what is registered under an entry's node id and under its EK.
#[allow(clippy::type_complexity)]
pub(crate) fn plan_inventory_batch<E>(
    entries: &[InventoryEntry],
    mut lookup: impl FnMut(
        &InventoryEntry,
    ) -> Result<(Option<InventoryEntry>, Option<InventoryEntry>), E>,
) -> Result<Result<(InventoryAdded, Vec<&InventoryEntry>), InventoryConflicts>, E> {
    let mut added = InventoryAdded::default();
    let mut conflicts = Vec::new();
    let mut writes = Vec::new();
    for e in entries {
        let (by_node, by_ek) = lookup(e)?;
        match plan_inventory(e, by_node.as_ref(), by_ek.as_ref()) {
            InventoryPlan::Add => {
                added.added += 1;
                writes.push(e);
            }
            InventoryPlan::Update => {
                added.updated += 1;
                writes.push(e);
            }
            InventoryPlan::Unchanged => added.unchanged += 1,
            InventoryPlan::Conflict(c) if conflicts.len() < MAX_CONFLICTS_LISTED => {
                conflicts.push(c)
            }
            InventoryPlan::Conflict(_) => {}
        }
    }
    added.written = writes.iter().map(|e| e.node_id.clone()).collect();
    Ok(if conflicts.is_empty() {
        Ok((added, writes))
    } else {
        Err(InventoryConflicts(conflicts))
    })
}

/// Attestations in a node's name whose quote signature, AK or nonce did not
/// verify: anyone who reaches the port can send them, so they are not the
/// node's verdicts (no history record, no evidence, no standing, no
/// quarantine). What an auditor still sees: how many, when, from where.
/// Bounded: one record per enrolled node id, at most [`MAX_ATTEMPT_SOURCES`]
/// source addresses each.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnauthenticatedAttempts {
    pub count: u64,
    pub first_unix: i64,
    pub last_unix: i64,
    /// The busiest source addresses, most attempts first.
    pub sources: Vec<AttemptSource>,
    /// The claims that failed in the newest attempt (ids only).
    pub last_failed: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptSource {
    /// IP address ("unknown" when the transport gave none).
    pub address: String,
    pub count: u64,
    pub last_unix: i64,
}

/// Source addresses kept per node (the busiest).
pub const MAX_ATTEMPT_SOURCES: usize = 8;

impl UnauthenticatedAttempts {
    /// One attempt at `now` from `address`, failing `failed`.
    pub fn one(address: &str, now: i64, failed: Vec<String>) -> Self {
        UnauthenticatedAttempts {
            count: 1,
            first_unix: now,
            last_unix: now,
            sources: vec![AttemptSource {
                address: address.to_string(),
                count: 1,
                last_unix: now,
            }],
            last_failed: failed,
        }
    }

    /// Adds `later` (attempts seen after these) to these.
    pub fn merge(&mut self, later: &UnauthenticatedAttempts) {
        if later.count == 0 {
            return;
        }
        if self.count == 0 {
            self.first_unix = later.first_unix;
        } else {
            self.first_unix = self.first_unix.min(later.first_unix);
        }
        self.count = self.count.saturating_add(later.count);
        if later.last_unix >= self.last_unix {
            self.last_unix = later.last_unix;
            self.last_failed = later.last_failed.clone();
        }
        for s in &later.sources {
            match self.sources.iter_mut().find(|x| x.address == s.address) {
                Some(x) => {
                    x.count = x.count.saturating_add(s.count);
                    x.last_unix = x.last_unix.max(s.last_unix);
                }
                None => self.sources.push(s.clone()),
            }
        }
        self.sources
            .sort_by(|a, b| b.count.cmp(&a.count).then(b.last_unix.cmp(&a.last_unix)));
        self.sources.truncate(MAX_ATTEMPT_SOURCES);
        self.last_failed.truncate(16);
    }
}

/// Where a version of a named policy stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyStatus {
    /// The name's version in force (exactly one per name).
    Current,
    /// Accepted besides the current one during a rollout
    /// (`policy apply --alongside`) until one of them is retired.
    Alongside,
    /// Replaced by a later apply or rollback; no longer accepted.
    Superseded,
    /// Taken out of a rollout (`policy retire`); no longer accepted.
    Retired,
}

impl PolicyStatus {
    /// Whether a node passes under a version with this status.
    pub fn accepted(self) -> bool {
        matches!(self, PolicyStatus::Current | PolicyStatus::Alongside)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PolicyStatus::Current => "current",
            PolicyStatus::Alongside => "alongside",
            PolicyStatus::Superseded => "superseded",
            PolicyStatus::Retired => "retired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            PolicyStatus::Current,
            PolicyStatus::Alongside,
            PolicyStatus::Superseded,
            PolicyStatus::Retired,
        ]
        .into_iter()
        .find(|p| p.as_str() == s)
    }
}

/// One version of a named policy. Its text is kept by digest
/// ([`super::EvidenceStore::policy_text`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyVersion {
    pub name: String,
    /// 1, 2, … per name, in the order the versions were applied.
    pub version: u64,
    /// Hex SHA-256 of the policy's canonical form (`Policy::digest_hex`).
    pub digest: String,
    pub applied_unix: i64,
    /// Who applied it (the operator certificate's subject).
    pub subject: String,
    pub reason: String,
    /// The detached signature it was applied with, as received.
    pub signature: Option<String>,
    /// The id of the configured key that verified `signature` (None: not
    /// verified, e.g. no `policy_signing_keys` then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<String>,
    pub status: PolicyStatus,
    /// For a rollback: the version whose text this one restores.
    pub rollback_of: Option<u64>,
}

/// How a new version joins its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyMode {
    /// It becomes current; every other accepted version is superseded.
    Replace,
    /// It is accepted alongside the current one (a rollout).
    Alongside,
}

/// A version to append ([`super::PolicyStore::apply_policy`]).
#[derive(Debug, Clone)]
pub struct NewPolicyVersion<'a> {
    pub name: &'a str,
    pub digest: &'a str,
    /// The policy file's text, kept under `digest`.
    pub text: &'a str,
    pub applied_unix: i64,
    pub subject: &'a str,
    pub reason: &'a str,
    pub signature: Option<&'a str>,
    pub signed_by: Option<&'a str>,
    pub mode: ApplyMode,
    pub rollback_of: Option<u64>,
}

/// What [`super::PolicyStore::apply_policy`] did, as decided under its lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The new version as stored.
    pub version: PolicyVersion,
    /// The name's current version before the apply (None: a new name).
    pub previous: Option<PolicyVersion>,
    /// The versions the apply superseded, with their new status.
    pub superseded: Vec<PolicyVersion>,
}

/// An apply's answer from what it read (`existing`) and wrote (the
/// `superseded` versions `changed_versions` gave, and the new `version`).
pub(crate) fn applied_outcome(
    existing: &[PolicyVersion],
    superseded: Vec<PolicyVersion>,
    version: PolicyVersion,
) -> Applied {
    Applied {
        previous: existing
            .iter()
            .find(|v| v.status == PolicyStatus::Current)
            .cloned(),
        superseded,
        version,
    }
}

/// What [`super::PolicyStore::retire_policy_version`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retired {
    /// Retired; `promoted` is the alongside version that became current
    /// when the current one was retired.
    Done {
        retired: Box<PolicyVersion>,
        promoted: Option<Box<PolicyVersion>>,
    },
    /// No such name or version.
    NotFound,
    /// The version is not accepted (superseded or retired already).
    NotAccepted(PolicyStatus),
    /// It is the name's only accepted version: apply another one instead.
    LastAccepted,
}

/// The status changes an apply makes to a name's versions (`existing`, in
/// version order), and the new version: one plan for every backend.
pub(crate) fn plan_apply(
    existing: &[PolicyVersion],
    new: &NewPolicyVersion<'_>,
) -> (Vec<(u64, PolicyStatus)>, PolicyVersion) {
    let version = existing.last().map_or(0, |v| v.version) + 1;
    let (changes, status) = match (new.mode, existing.iter().any(|v| v.status.accepted())) {
        // The first version of a name is current whatever was asked.
        (_, false) => (Vec::new(), PolicyStatus::Current),
        (ApplyMode::Replace, true) => (
            existing
                .iter()
                .filter(|v| v.status.accepted())
                .map(|v| (v.version, PolicyStatus::Superseded))
                .collect(),
            PolicyStatus::Current,
        ),
        // A rollout has one next version: an earlier alongside one is
        // superseded by the newer.
        (ApplyMode::Alongside, true) => (
            existing
                .iter()
                .filter(|v| v.status == PolicyStatus::Alongside)
                .map(|v| (v.version, PolicyStatus::Superseded))
                .collect(),
            PolicyStatus::Alongside,
        ),
    };
    let v = PolicyVersion {
        name: new.name.to_string(),
        version,
        digest: new.digest.to_string(),
        applied_unix: new.applied_unix,
        subject: new.subject.to_string(),
        reason: new.reason.to_string(),
        signature: new.signature.map(str::to_string),
        signed_by: new.signed_by.map(str::to_string),
        status,
        rollback_of: new.rollback_of,
    };
    (changes, v)
}

/// The status changes retiring `version` makes, or why it cannot be.
pub(crate) fn plan_retire(
    existing: &[PolicyVersion],
    version: u64,
) -> Result<Vec<(u64, PolicyStatus)>, Retired> {
    let Some(v) = existing.iter().find(|v| v.version == version) else {
        return Err(Retired::NotFound);
    };
    if !v.status.accepted() {
        return Err(Retired::NotAccepted(v.status));
    }
    let others: Vec<&PolicyVersion> = existing
        .iter()
        .filter(|o| o.version != version && o.status.accepted())
        .collect();
    let Some(next) = others.last() else {
        return Err(Retired::LastAccepted);
    };
    let mut changes = vec![(version, PolicyStatus::Retired)];
    if v.status == PolicyStatus::Current {
        changes.push((next.version, PolicyStatus::Current));
    }
    Ok(changes)
}

/// The versions `changes` touch, with their new statuses, in the order of
/// `changes` (what a backend writes back, and answers with).
pub(crate) fn changed_versions(
    existing: &[PolicyVersion],
    changes: &[(u64, PolicyStatus)],
) -> Vec<PolicyVersion> {
    changes
        .iter()
        .filter_map(|(n, status)| {
            let mut v = existing.iter().find(|v| v.version == *n)?.clone();
            v.status = *status;
            Some(v)
        })
        .collect()
}

/// A retire's answer from its written changes (`plan_retire`: the retired
/// version first, then the promoted one, if any). None: the plan named a
/// version that is not there.
pub(crate) fn retired_outcome(changed: Vec<PolicyVersion>) -> Option<Retired> {
    let mut it = changed.into_iter().map(Box::new);
    Some(Retired::Done {
        retired: it.next()?,
        promoted: it.next(),
    })
}
