//! Named, versioned policies in force ([`PolicySet`]) and the operator's
//! policy flows: apply (with `--alongside` for a rollout), rollback, retire,
//! assign a node group, and the dry run (`policy test`).
//!
//! A node's policy is found by its assignments: a `label:KEY=VALUE` group
//! whose label the node's registration carries (the first in the order of
//! the group strings), else the node's `[join.groups]` group (the first
//! whose pattern matches, as for joining) when that group is assigned, else
//! `default`. Each name has one current version and, during a rollout, one
//! alongside; a node passes under either, and its verdict names the version.
//!
//! The set is loaded from the store and reloaded whenever the store's policy
//! epoch moves: at once on the replica that made the change, within
//! [`POLICY_POLL`] on every other.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use assay_core::policy::Policy;
use assay_core::verdict::Claim;
use assay_core::verify::verify_quote;
use tracing::{info, warn};

use super::{ServiceError, Verifier};
use crate::clock::now_unix;
use crate::store::{
    Applied, ApplyMode, HistoryRecord, NewPolicyVersion, PolicyStatus, PolicyVersion, Retired,
    Storage,
};

/// The policy of every node no assignment names.
pub const DEFAULT_POLICY: &str = "default";
/// How a group of nodes by inventory label is written: `label:KEY=VALUE`.
pub const LABEL_GROUP: &str = "label:";
/// Longest policy name accepted.
pub const MAX_POLICY_NAME: usize = 64;
/// Longest group accepted (a `label:KEY=VALUE` one included).
pub const MAX_GROUP: usize = 256;
/// Longest reason kept with a version.
pub const MAX_REASON: usize = 1024;
/// Largest detached signature accepted (a `.minisig` file is about 300 bytes).
pub const MAX_SIGNATURE: usize = 4096;
/// Most policy names, and most group assignments, a verifier holds (every
/// replica loads all of them at each change).
pub const MAX_POLICY_NAMES: usize = 256;
pub const MAX_ASSIGNMENTS: usize = 1024;
/// How often a verifier looks at the store's policy epoch for changes made
/// by another replica.
pub const POLICY_POLL: Duration = Duration::from_millis(250);

/// One accepted version of a named policy, parsed.
#[derive(Clone, Debug)]
pub struct Accepted {
    pub version: PolicyVersion,
    pub policy: Arc<Policy>,
}

/// The policies in force, as read from the store at one epoch.
#[derive(Debug)]
pub struct PolicySet {
    pub epoch: u64,
    /// Accepted versions by name: the current one first, then the alongside one.
    names: BTreeMap<String, Vec<Accepted>>,
    /// Names whose versions could not be loaded (a stored text that does not
    /// parse or hash to its digest): their nodes are refused, never judged
    /// under versions that were in force before.
    broken: BTreeMap<String, String>,
    /// `[join.groups]` group → policy name.
    groups: BTreeMap<String, String>,
    /// (label key, label value, policy name), in the order of their group strings.
    labels: Vec<(String, String, String)>,
}

impl PolicySet {
    /// Reads every name's accepted versions and every assignment. The epoch
    /// is read first, so a change racing the load is picked up by the next.
    pub fn load(store: &dyn Storage) -> Result<Self, ServiceError> {
        let epoch = store.policy_epoch()?;
        let mut names = BTreeMap::new();
        let mut broken = BTreeMap::new();
        for name in store.policy_names()? {
            let mut accepted = Vec::new();
            let mut failure = None;
            for v in store.policy_versions(&name)? {
                if !v.status.accepted() {
                    continue;
                }
                match stored_policy(store, &name, &v.digest) {
                    Ok(policy) => accepted.push(Accepted {
                        version: v,
                        policy: Arc::new(policy),
                    }),
                    // A store error is the whole load's; a bad text is this name's.
                    Err(ServiceError::Store(e)) => return Err(ServiceError::Store(e)),
                    Err(e) => failure = Some(format!("{}: {e}", label(&v))),
                }
            }
            match failure {
                Some(why) => {
                    warn!(policy = %name, error = %why, "policy not loaded: its nodes are refused until it is fixed");
                    broken.insert(name, why);
                }
                None => {
                    accepted.sort_by_key(|a| a.version.status != PolicyStatus::Current);
                    names.insert(name, accepted);
                }
            }
        }
        let mut groups = BTreeMap::new();
        let mut labels = Vec::new();
        for (group, name) in store.policy_assignments()? {
            match parse_label_group(&group) {
                Some((k, v)) => labels.push((k.to_string(), v.to_string(), name)),
                None => {
                    groups.insert(group, name);
                }
            }
        }
        Ok(PolicySet {
            epoch,
            names,
            broken,
            groups,
            labels,
        })
    }

    /// A name's accepted versions, the current one first (empty: no such name).
    pub fn accepted(&self, name: &str) -> &[Accepted] {
        self.names.get(name).map_or(&[], |v| v.as_slice())
    }

    /// Whether resolving a node needs its inventory labels.
    pub fn uses_labels(&self) -> bool {
        !self.labels.is_empty()
    }

    /// The policy name of a node in `group` (its `[join.groups]` group) with
    /// `labels` (its registration's).
    pub fn name_for(&self, group: Option<&str>, labels: &BTreeMap<String, String>) -> &str {
        if let Some((_, _, name)) = self
            .labels
            .iter()
            .find(|(k, v, _)| labels.get(k) == Some(v))
        {
            return name;
        }
        group
            .and_then(|g| self.groups.get(g))
            .map_or(DEFAULT_POLICY, String::as_str)
    }

    /// Every accepted version, as `NAME@VERSION` (for the log).
    pub fn in_force(&self) -> Vec<String> {
        self.names
            .values()
            .flat_map(|a| a.iter().map(|a| label(&a.version)))
            .collect()
    }

    /// Why `name` could not be loaded, if it could not.
    pub fn broken(&self, name: &str) -> Option<&str> {
        self.broken.get(name).map(String::as_str)
    }

    /// The current version of `name`.
    pub fn current(&self, name: &str) -> Option<&Accepted> {
        self.accepted(name).first()
    }
}

/// A node's policy: its name and accepted versions in one loaded set.
pub struct NodePolicy {
    pub set: Arc<PolicySet>,
    pub name: String,
}

impl NodePolicy {
    pub fn accepted(&self) -> &[Accepted] {
        self.set.accepted(&self.name)
    }
}

/// `label:KEY=VALUE` → (KEY, VALUE).
pub fn parse_label_group(group: &str) -> Option<(&str, &str)> {
    let rest = group.strip_prefix(LABEL_GROUP)?;
    let (k, v) = rest.split_once('=')?;
    (!k.is_empty()).then_some((k, v))
}

/// With `require_signed_policies`: the accepted versions in force whose
/// kept signature does not verify under the configured keys now (applied
/// before signatures were required, the first start's `--policy` file, or
/// signed by a key since removed), as `NAME@VERSION: why`. They stay in
/// force (refusing them could leave a fleet with no policy); the verifier
/// warns at start-up, and the operator re-applies them signed.
pub fn unverified_in_force(
    store: &dyn Storage,
    set: &PolicySet,
    keys: &crate::policy_signature::PolicyKeys,
) -> Result<Vec<String>, ServiceError> {
    let mut out = Vec::new();
    for accepted in set.names.values() {
        for a in accepted {
            let v = &a.version;
            let why = match &v.signature {
                None => Some("unsigned".to_string()),
                Some(sig) => {
                    let text = store.policy_text(&v.digest)?.unwrap_or_default();
                    keys.verify(text.as_bytes(), sig)
                        .err()
                        .map(|e| e.to_string())
                }
            };
            if let Some(why) = why {
                out.push(format!("{}: {why}", label(v)));
            }
        }
    }
    Ok(out)
}

/// A stored version's policy, parsed and checked against its digest.
fn stored_policy(store: &dyn Storage, name: &str, digest: &str) -> Result<Policy, ServiceError> {
    let text = store.policy_text(digest)?.ok_or_else(|| {
        ServiceError::Internal(format!(
            "policy `{name}`: the text of {digest} is not in the store"
        ))
    })?;
    let policy = Policy::parse(name, &text)
        .map_err(|e| ServiceError::Internal(format!("stored policy `{name}` ({digest}): {e}")))?;
    if policy.digest_hex() != digest {
        return Err(ServiceError::Internal(format!(
            "stored policy `{name}`: its text does not hash to {digest}"
        )));
    }
    Ok(policy)
}

pub fn validate_policy_name(name: &str) -> Result<(), ServiceError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_POLICY_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        && name != "."
        && name != "..";
    if ok {
        Ok(())
    } else {
        Err(ServiceError::BadRequest(format!(
            "policy name `{}` must be 1 to {MAX_POLICY_NAME} characters of [A-Za-z0-9._-]",
            name.chars().take(80).collect::<String>().escape_debug()
        )))
    }
}

/// A reason kept with a change is bounded.
fn check_reason(reason: &str) -> Result<(), ServiceError> {
    if reason.len() > MAX_REASON {
        return Err(ServiceError::BadRequest(format!(
            "the reason is {} bytes; at most {MAX_REASON}",
            reason.len()
        )));
    }
    Ok(())
}

/// `NAME@VERSION` as operators write it.
pub fn label(v: &PolicyVersion) -> String {
    format!("{}@{}", v.name, v.version)
}

fn short(digest: &str) -> &str {
    digest.get(..16).unwrap_or(digest)
}

/// A policy to apply.
pub struct ApplyInput {
    pub name: String,
    /// The policy file's text (empty for a rollback).
    pub text: String,
    pub reason: String,
    /// A detached minisign signature over `text` (`policy sign`).
    pub signature: Option<String>,
    pub alongside: bool,
    /// Apply the text of this earlier version again (a rollback).
    pub rollback_to: Option<u64>,
}

/// What an apply did.
pub struct ApplyOutput {
    pub applied: Applied,
    /// The signing key's id, when the signature was checked.
    pub signed_by: Option<String>,
    pub history_seq: u64,
}

/// One node under a candidate policy (`policy test`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DryRunNode {
    pub node_id: String,
    pub outcome: DryOutcome,
    /// The record whose kept evidence was judged (0: none).
    pub seq: u64,
    pub time_unix: i64,
    /// That record's verdict under the policy then in force.
    pub recorded_passed: bool,
    /// The candidate's failed claims.
    pub failed: Vec<Claim>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DryOutcome {
    Pass,
    Fail,
    /// No authentic verdict with kept evidence.
    NoEvidence,
    /// The kept evidence lacks what the candidate judges (a PCR not quoted,
    /// a log not sent because the policy then in force did not ask for it):
    /// only the node's next attestation under the candidate can tell.
    Undetermined(String),
}

impl DryOutcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            DryOutcome::Pass => "pass",
            DryOutcome::Fail => "fail",
            DryOutcome::NoEvidence => "no-evidence",
            DryOutcome::Undetermined(_) => "undetermined",
        }
    }
}

/// Nodes listed per page while a dry run walks the enrolled nodes.
const NODE_PAGE: usize = 500;
/// Most failed claims reported per node in a dry run, and the most
/// characters of their expected and actual text: the answer stays a few
/// hundred bytes per node however a node fails.
const MAX_DRY_RUN_CLAIMS: usize = 8;
const MAX_DRY_RUN_TEXT: usize = 200;

fn clip(s: &str) -> String {
    if s.chars().count() <= MAX_DRY_RUN_TEXT {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(MAX_DRY_RUN_TEXT).collect();
        t.push('…');
        t
    }
}

impl Verifier {
    /// The policies in force.
    pub fn policy_set(&self) -> Arc<PolicySet> {
        match self.policies.read() {
            Ok(p) => Arc::clone(&p),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Reloads the policies when the store's epoch moved (a change here or on
    /// another replica); whether it did. A set that cannot be loaded keeps
    /// the previous one in force (and is an error, logged by the caller).
    pub fn refresh_policies(&self) -> Result<bool, ServiceError> {
        let epoch = self.store.policy_epoch()?;
        if epoch == self.policy_set().epoch {
            return Ok(false);
        }
        let set = PolicySet::load(&*self.store)?;
        let summary = set.in_force();
        let loaded = set.epoch;
        // Never back: a load that began before a change another load has
        // already installed does not replace it.
        let installed = {
            let mut g = self.policies.write().unwrap_or_else(|p| p.into_inner());
            if loaded > g.epoch {
                *g = Arc::new(set);
                true
            } else {
                false
            }
        };
        if installed {
            info!(epoch = loaded, accepted = ?summary, "policies reloaded");
        }
        Ok(installed)
    }

    /// The name of the policy `set` gives a node: by its registration's
    /// labels (read only when some assignment is by label), then its
    /// `[join.groups]` group (the join router's), else `default`.
    fn policy_name_in(&self, set: &PolicySet, node_id: &str) -> Result<String, ServiceError> {
        let labels = if set.uses_labels() {
            self.store
                .inventory(node_id)?
                .map(|e| e.labels)
                .unwrap_or_default()
        } else {
            BTreeMap::new()
        };
        Ok(set
            .name_for(self.join.group_of(node_id), &labels)
            .to_string())
    }

    /// The policy a node is judged under now.
    pub fn node_policy(&self, node_id: &str) -> Result<NodePolicy, ServiceError> {
        let set = self.policy_set();
        let name = self.policy_name_in(&set, node_id)?;
        if let Some(why) = set.broken(&name) {
            return Err(ServiceError::Internal(format!(
                "node {node_id}'s policy `{name}` cannot be loaded ({why}); its nodes are \
                 refused until an operator applies a good version"
            )));
        }
        if set.accepted(&name).is_empty() {
            return Err(ServiceError::Internal(format!(
                "node {node_id} is assigned policy `{name}`, which has no accepted version"
            )));
        }
        Ok(NodePolicy { set, name })
    }

    /// Applies a policy version (or a rollback), records it in the history
    /// (kind `admin`), and puts it in force here at once.
    pub fn apply_policy(
        &self,
        input: ApplyInput,
        subject: &str,
    ) -> Result<ApplyOutput, ServiceError> {
        validate_policy_name(&input.name)?;
        check_reason(&input.reason)?;
        let (text, signature, rollback_of) = match input.rollback_to {
            None => (input.text, input.signature, None),
            Some(to) => {
                if !input.text.is_empty() || input.signature.is_some() {
                    return Err(ServiceError::BadRequest(
                        "a rollback applies an earlier version's own text and signature; \
                         give neither"
                            .into(),
                    ));
                }
                let old = self
                    .store
                    .policy_versions(&input.name)?
                    .into_iter()
                    .find(|v| v.version == to)
                    .ok_or_else(|| {
                        ServiceError::BadRequest(format!(
                            "policy `{}` has no version {to} (see `policy list`)",
                            input.name
                        ))
                    })?;
                let text = self.store.policy_text(&old.digest)?.ok_or_else(|| {
                    ServiceError::Internal(format!(
                        "the text of {} is not in the store",
                        label(&old)
                    ))
                })?;
                (text, old.signature, Some(to))
            }
        };
        let policy = Policy::parse(&input.name, &text)
            .map_err(|e| ServiceError::BadRequest(format!("policy `{}`: {e}", input.name)))?;
        let names = self.store.policy_names()?;
        if !names.contains(&input.name) && names.len() >= MAX_POLICY_NAMES {
            return Err(ServiceError::BadRequest(format!(
                "{} policy names already; at most {MAX_POLICY_NAMES}: add versions to an \
                 existing name",
                names.len()
            )));
        }
        let signed_by = self.check_policy_signature(&text, signature.as_deref())?;
        // A signature covers the text, not where it is applied: under
        // require_signed_policies the signed text must name its policy, so a
        // file signed for `lab` cannot be applied as `default`.
        if self.config.require_signed_policies && policy.name != input.name {
            return Err(ServiceError::PolicyRefused(format!(
                "the signed file names policy `{}`, not `{}`: with require_signed_policies a \
                 signed file applies only under its own `name` (set name = \"{}\" in the file \
                 and sign it again)",
                policy.name, input.name, input.name
            )));
        }
        let digest = policy.digest_hex();
        let applied = self.store.apply_policy(&NewPolicyVersion {
            name: &input.name,
            digest: &digest,
            text: &text,
            applied_unix: now_unix(),
            subject,
            reason: &input.reason,
            signature: signature.as_deref(),
            signed_by: signed_by.as_deref(),
            mode: if input.alongside {
                ApplyMode::Alongside
            } else {
                ApplyMode::Replace
            },
            rollback_of,
        })?;
        let v = &applied.version;
        let mut what = format!(
            "policy {} (sha256:{digest}) {}",
            label(v),
            match (rollback_of, v.status) {
                (Some(to), _) => format!("applied, rolling back to version {to}"),
                (None, PolicyStatus::Alongside) => "applied alongside the current version".into(),
                _ => "applied".into(),
            }
        );
        match &applied.previous {
            Some(p) if v.status == PolicyStatus::Alongside => what.push_str(&format!(
                "; {} (sha256:{}) stays current",
                label(p),
                p.digest
            )),
            Some(p) => what.push_str(&format!(", replacing {} (sha256:{})", label(p), p.digest)),
            None => {}
        }
        for s in applied.superseded.iter().filter(|s| {
            applied
                .previous
                .as_ref()
                .is_none_or(|p| p.version != s.version)
        }) {
            what.push_str(&format!("; {} superseded", label(s)));
        }
        if let Some(k) = &signed_by {
            what.push_str(&format!("; signed by key {k}"));
        }
        if !input.reason.is_empty() {
            what.push_str(&format!("; reason: {}", input.reason));
        }
        let rec = self.policy_admin_record(v, what, subject, "Policies.Apply")?;
        self.refresh_after_change(rec.seq)?;
        info!(policy = %label(v), digest = %digest, by = subject, "policy applied");
        Ok(ApplyOutput {
            applied,
            signed_by,
            history_seq: rec.seq,
        })
    }

    /// With `require_signed_policies`, a policy is applied only with a good
    /// signature by a configured key; with keys configured, a signature
    /// given is checked either way. The signing key's id.
    fn check_policy_signature(
        &self,
        text: &str,
        signature: Option<&str>,
    ) -> Result<Option<String>, ServiceError> {
        if let Some(s) = signature {
            if s.len() > MAX_SIGNATURE {
                return Err(ServiceError::BadRequest(format!(
                    "the signature is {} bytes; at most {MAX_SIGNATURE}",
                    s.len()
                )));
            }
        }
        match (&self.policy_keys, signature) {
            (Some(keys), Some(sig)) => keys
                .verify(text.as_bytes(), sig)
                .map(|v| Some(v.key_id))
                .map_err(|e| ServiceError::PolicyRefused(format!("signature refused: {e}"))),
            (_, None) if self.config.require_signed_policies => Err(ServiceError::PolicyRefused(
                "this verifier applies signed policies only (require_signed_policies): \
                     sign the file with `assay-verifier policy sign FILE --key KEY` and apply \
                     it with --signature FILE.minisig"
                    .into(),
            )),
            _ => Ok(None),
        }
    }

    /// Takes `name@version` out of a rollout.
    pub fn retire_policy(
        &self,
        name: &str,
        version: u64,
        reason: &str,
        subject: &str,
    ) -> Result<(PolicyVersion, Option<PolicyVersion>, u64), ServiceError> {
        validate_policy_name(name)?;
        check_reason(reason)?;
        let (retired, promoted) = match self.store.retire_policy_version(name, version)? {
            Retired::Done { retired, promoted } => (*retired, promoted.map(|p| *p)),
            Retired::NotFound => {
                return Err(ServiceError::BadRequest(format!(
                    "policy `{name}` has no version {version} (see `policy list`)"
                )))
            }
            Retired::NotAccepted(s) => {
                return Err(ServiceError::BadRequest(format!(
                    "{name}@{version} is {} already: only an accepted version can be retired",
                    s.as_str()
                )))
            }
            Retired::LastAccepted => {
                return Err(ServiceError::BadRequest(format!(
                    "{name}@{version} is the only accepted version of `{name}`: apply another \
                     version (or roll back) instead"
                )))
            }
        };
        let mut what = format!(
            "policy {} (sha256:{}) retired",
            label(&retired),
            retired.digest
        );
        if let Some(p) = &promoted {
            what.push_str(&format!("; {} (sha256:{}) is current", label(p), p.digest));
        }
        if !reason.is_empty() {
            what.push_str(&format!("; reason: {reason}"));
        }
        let current = promoted.clone().map_or_else(
            || {
                self.store
                    .policy_versions(name)
                    .map(|vs| vs.into_iter().find(|v| v.status == PolicyStatus::Current))
            },
            |p| Ok(Some(p)),
        )?;
        let rec = self.policy_admin_record(
            current.as_ref().unwrap_or(&retired),
            what,
            subject,
            "Policies.Retire",
        )?;
        self.refresh_after_change(rec.seq)?;
        Ok((retired, promoted, rec.seq))
    }

    /// Node group `group` uses policy `name` (`default`: the assignment is removed).
    pub fn assign_policy(
        &self,
        group: &str,
        name: &str,
        reason: &str,
        subject: &str,
    ) -> Result<u64, ServiceError> {
        check_reason(reason)?;
        if group.is_empty() || group.len() > MAX_GROUP {
            return Err(ServiceError::BadRequest(format!(
                "a group is 1 to {MAX_GROUP} bytes"
            )));
        }
        if group.starts_with(LABEL_GROUP) {
            let Some((k, v)) = parse_label_group(group) else {
                return Err(ServiceError::BadRequest(format!(
                    "`{}`: a label group is written label:KEY=VALUE",
                    group.escape_debug()
                )));
            };
            // The inventory's own rules for labels: a group no label can match is refused.
            super::inventory::check_label("label group", k, v)?;
        } else if !self.config.join_groups.iter().any(|g| g.name == group) {
            let known: Vec<&str> = self
                .config
                .join_groups
                .iter()
                .map(|g| g.name.as_str())
                .collect();
            return Err(ServiceError::BadRequest(format!(
                "no node group `{}` in [join.groups] (groups: {}); or name nodes by an \
                 inventory label with label:KEY=VALUE",
                group.escape_debug(),
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )));
        }
        validate_policy_name(name)?;
        let target = if name == DEFAULT_POLICY {
            None
        } else {
            if self.store.policy_versions(name)?.is_empty() {
                return Err(ServiceError::BadRequest(format!(
                    "no policy `{name}`: apply it first (`policy apply FILE --name {name}`)"
                )));
            }
            Some(name)
        };
        let assignments = self.store.policy_assignments()?;
        if target.is_some()
            && !assignments.iter().any(|(g, _)| g == group)
            && assignments.len() >= MAX_ASSIGNMENTS
        {
            return Err(ServiceError::BadRequest(format!(
                "{} group assignments already; at most {MAX_ASSIGNMENTS}",
                assignments.len()
            )));
        }
        let before = assignments
            .into_iter()
            .find(|(g, _)| g == group)
            .map(|(_, n)| n);
        self.store.assign_policy(group, target)?;
        let set = self.policy_set();
        let describe = |n: &str| match set.current(n) {
            Some(a) => format!("`{n}` ({}, sha256:{})", label(&a.version), a.version.digest),
            None => format!("`{n}`"),
        };
        let mut what = format!(
            "node group `{group}` uses policy {}, was {}",
            describe(name),
            describe(before.as_deref().unwrap_or(DEFAULT_POLICY))
        );
        if !reason.is_empty() {
            what.push_str(&format!("; reason: {reason}"));
        }
        let v = set
            .current(name)
            .map(|a| a.version.clone())
            .or_else(|| self.store.policy_versions(name).ok()?.into_iter().last());
        let rec = match v {
            Some(v) => self.policy_admin_record(&v, what, subject, "Policies.Assign")?,
            None => {
                return Err(ServiceError::Internal(format!(
                    "policy `{name}` has no version"
                )))
            }
        };
        self.refresh_after_change(rec.seq)?;
        Ok(rec.seq)
    }

    /// After a change made here: in force for the very next attestation. A
    /// reload that fails is the caller's answer (the change is stored and
    /// recorded; the poll retries the reload).
    fn refresh_after_change(&self, seq: u64) -> Result<(), ServiceError> {
        self.refresh_policies().map(drop).map_err(|e| {
            warn!(error = %e, "policies not reloaded after a change; retried every {POLICY_POLL:?}");
            ServiceError::Internal(format!(
                "the change is stored (history record {seq}) but not yet in force here: {e}; \
                 the verifier retries every {} ms",
                POLICY_POLL.as_millis()
            ))
        })
    }

    fn policy_admin_record(
        &self,
        v: &PolicyVersion,
        what: String,
        subject: &str,
        rpc: &str,
    ) -> Result<HistoryRecord, ServiceError> {
        Ok(self.store.append_history(super::admin_record(
            "",
            "an operator's request",
            format!("{what} (by {subject})"),
            rpc,
            (v.name.clone(), v.digest.clone(), v.version),
        ))?)
    }

    /// The dry run: every enrolled node whose policy is `name`, judged under
    /// `text` on the evidence kept with its newest authentic verdict; the
    /// candidate's digest and each node's outcome. Nothing is written.
    pub fn dry_run(
        &self,
        name: &str,
        text: &str,
    ) -> Result<(String, Vec<DryRunNode>), ServiceError> {
        validate_policy_name(name)?;
        let candidate = Policy::parse(name, text)
            .map_err(|e| ServiceError::BadRequest(format!("policy `{name}`: {e}")))?;
        let set = self.policy_set();
        let cache = assay_core::verify::MeasuredBootCache::new(256);
        let mut out = Vec::new();
        let mut after = String::new();
        loop {
            let page = self.store.list_nodes(&after, NODE_PAGE)?;
            let Some(last) = page.last() else { break };
            after = last.node_id.clone();
            for node in &page {
                if self.policy_name_in(&set, &node.node_id)? != name {
                    continue;
                }
                out.push(self.dry_run_node(&node.node_id, &candidate, &cache)?);
            }
            if page.len() < NODE_PAGE {
                break;
            }
        }
        Ok((candidate.digest_hex(), out))
    }

    fn dry_run_node(
        &self,
        node_id: &str,
        candidate: &Policy,
        cache: &assay_core::verify::MeasuredBootCache,
    ) -> Result<DryRunNode, ServiceError> {
        let Some((rec, ev, logs)) = crate::store::latest_authentic_evidence(&*self.store, node_id)?
        else {
            return Ok(DryRunNode {
                node_id: node_id.into(),
                outcome: DryOutcome::NoEvidence,
                seq: 0,
                time_unix: 0,
                recorded_passed: false,
                failed: Vec::new(),
            });
        };
        let kept = match super::reverify::Kept::decode(rec.seq, &ev, &logs) {
            Ok(k) => k,
            Err(e) => {
                return Ok(DryRunNode {
                    node_id: node_id.into(),
                    outcome: DryOutcome::Undetermined(format!(
                        "the kept evidence of record {} cannot be read: {e}",
                        rec.seq
                    )),
                    seq: rec.seq,
                    time_unix: rec.time_unix,
                    recorded_passed: rec.passed,
                    failed: Vec::new(),
                })
            }
        };
        let outcome = verify_quote(
            &kept.check(&ev, candidate, Some(cache)),
            &kept.evidence(&logs),
        );
        let failed: Vec<Claim> = outcome.verdict.failed().cloned().collect();
        let quoted: Vec<u32> = kept.pcrs.iter().map(|(i, _)| *i).collect();
        let missing: Vec<String> = candidate
            .pcr_selection()
            .into_iter()
            .filter(|i| !quoted.contains(i))
            .map(|i| i.to_string())
            .collect();
        // An incremental IMA judgement kept only the entries after the
        // node's state: under other IMA rules they cannot be judged alone.
        let ima_part = kept.ima_first_entry != 0;
        let gap = |c: &Claim| {
            (c.id == "quote.pcr_selection" && !missing.is_empty())
                || (c.id.starts_with("eventlog.") && c.id.ends_with(".present"))
                || (c.id == "eventlog.ima.range" && ima_part)
        };
        let outcome = if failed.is_empty() {
            DryOutcome::Pass
        } else if failed.iter().all(gap) {
            let mut why = Vec::new();
            if !missing.is_empty() {
                why.push(format!(
                    "the kept quote does not cover PCR {}",
                    missing.join(", ")
                ));
            }
            for c in failed.iter().filter(|c| c.id.ends_with(".present")) {
                why.push(format!("{}: {}", c.id, c.actual));
            }
            if failed.iter().any(|c| c.id == "eventlog.ima.range") {
                why.push(format!(
                    "the kept IMA log holds only the entries from {} on (an incremental attestation)",
                    kept.ima_first_entry
                ));
            }
            DryOutcome::Undetermined(format!(
                "{} (the policy in force did not ask for it); the node's next attestation under \
                 the candidate decides",
                why.join("; ")
            ))
        } else {
            DryOutcome::Fail
        };
        Ok(DryRunNode {
            node_id: node_id.into(),
            outcome,
            seq: rec.seq,
            time_unix: rec.time_unix,
            recorded_passed: rec.passed,
            failed: failed
                .into_iter()
                .take(MAX_DRY_RUN_CLAIMS)
                .map(|mut c| {
                    c.expected = clip(&c.expected);
                    c.actual = clip(&c.actual);
                    c
                })
                .collect(),
        })
    }

    /// At start-up: the `--policy` file becomes the `default` policy's first
    /// version when the store has none. When it has one, the store is the
    /// truth (replicas share it): a differing file is not applied, only
    /// reported. Then the set in force is loaded.
    pub fn seed_default_policy(
        store: &dyn Storage,
        file: Option<(&Policy, &str, &std::path::Path)>,
    ) -> Result<PolicySet, anyhow::Error> {
        let versions = store.policy_versions(DEFAULT_POLICY)?;
        match (versions.is_empty(), file) {
            (true, None) => anyhow::bail!(
                "no policy: the store holds no `{DEFAULT_POLICY}` policy yet; set `policy = \
                 \"FILE\"` or pass --policy (see policies/) for the first start"
            ),
            (true, Some((policy, text, path))) => {
                let digest = policy.digest_hex();
                // A store from before named policies knows the digest it
                // last started with.
                let before = store.current_policy()?;
                let applied = store.apply_policy(&NewPolicyVersion {
                    name: DEFAULT_POLICY,
                    digest: &digest,
                    text,
                    applied_unix: now_unix(),
                    subject: "assay-verifier serve",
                    reason: &format!("the --policy file {} at first start", path.display()),
                    signature: None,
                    signed_by: None,
                    mode: ApplyMode::Replace,
                    rollback_of: None,
                })?;
                let v = &applied.version;
                let what = match before.filter(|b| *b != digest) {
                    Some(b) => format!(
                        "policy {} (`{}`, sha256:{}) in force, replacing {}",
                        label(v),
                        policy.name,
                        short(&digest),
                        short(&b)
                    ),
                    None => format!(
                        "policy {} (`{}`, sha256:{}) in force",
                        label(v),
                        policy.name,
                        short(&digest)
                    ),
                };
                store.append_history(super::admin_record(
                    "",
                    "the verifier's configuration",
                    format!("{what} (from {})", path.display()),
                    "assay-verifier serve",
                    (DEFAULT_POLICY.into(), digest.clone(), v.version),
                ))?;
                store.set_current_policy(&digest)?;
                info!(policy = %label(v), digest = %digest, "policy recorded in the store and the history");
            }
            (false, Some((policy, _, path))) => {
                let digest = policy.digest_hex();
                let accepted: Vec<&PolicyVersion> =
                    versions.iter().filter(|v| v.status.accepted()).collect();
                if !accepted.iter().any(|v| v.digest == digest) {
                    let current = accepted
                        .iter()
                        .map(|v| format!("{} (sha256:{})", label(v), short(&v.digest)))
                        .collect::<Vec<_>>()
                        .join(", ");
                    warn!(
                        file = %path.display(),
                        "the --policy file (sha256:{}) is not applied: the store's policy {current} is in force \
                         (the store is shared by replicas and holds the policies' history); to put the file \
                         in force, run `assay-verifier policy apply {} --name {DEFAULT_POLICY}`",
                        short(&digest),
                        path.display()
                    );
                }
            }
            (false, None) => {}
        }
        Ok(PolicySet::load(store)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(assignments: &[(&str, &str)]) -> PolicySet {
        let mut groups = BTreeMap::new();
        let mut labels = Vec::new();
        for (g, n) in assignments {
            match parse_label_group(g) {
                Some((k, v)) => labels.push((k.to_string(), v.to_string(), n.to_string())),
                None => {
                    groups.insert(g.to_string(), n.to_string());
                }
            }
        }
        PolicySet {
            epoch: 1,
            names: BTreeMap::new(),
            broken: BTreeMap::new(),
            groups,
            labels,
        }
    }

    #[test]
    fn a_node_s_policy_is_its_label_group_s_then_its_node_group_s_then_default() {
        let s = set(&[("gpu", "gpu-policy"), ("label:rack=r7", "r7-policy")]);
        let none = BTreeMap::new();
        let r7: BTreeMap<String, String> = [("rack".to_string(), "r7".to_string())].into();
        let r8: BTreeMap<String, String> = [("rack".to_string(), "r8".to_string())].into();
        assert_eq!(s.name_for(Some("gpu"), &none), "gpu-policy");
        assert_eq!(s.name_for(Some("gpu"), &r7), "r7-policy", "the label wins");
        assert_eq!(s.name_for(Some("gpu"), &r8), "gpu-policy");
        assert_eq!(
            s.name_for(Some("storage"), &none),
            DEFAULT_POLICY,
            "unassigned group"
        );
        assert_eq!(s.name_for(None, &r8), DEFAULT_POLICY);
        assert!(s.uses_labels());
        assert!(!set(&[("gpu", "g")]).uses_labels());
    }

    #[test]
    fn label_groups_and_policy_names_are_checked() {
        assert_eq!(parse_label_group("label:k=v"), Some(("k", "v")));
        assert_eq!(parse_label_group("label:k="), Some(("k", "")));
        assert_eq!(parse_label_group("label:=v"), None);
        assert_eq!(parse_label_group("label:k"), None);
        assert_eq!(parse_label_group("gpu"), None);
        for ok in [
            "default",
            "gpu-nodes",
            "a.b_c",
            &"x".repeat(MAX_POLICY_NAME),
        ] {
            assert!(validate_policy_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a b",
            "a/b",
            "ä",
            &"x".repeat(MAX_POLICY_NAME + 1),
        ] {
            assert!(validate_policy_name(bad).is_err(), "{bad}");
        }
    }

    fn sled() -> (tempfile::TempDir, Box<dyn Storage>) {
        let d = tempfile::tempdir().unwrap();
        let s = crate::store::SledStore::open(&d.path().join("db")).unwrap();
        (d, Box::new(s))
    }

    const P1: &str = "schema = 0\nname = \"one\"\n[pcrs.sha256]\n16 = \"0000000000000000000000000000000000000000000000000000000000000000\"\n";
    const P2: &str = "schema = 0\nname = \"two\"\n[pcrs.sha256]\n16 = \"1111111111111111111111111111111111111111111111111111111111111111\"\n";

    #[test]
    fn the_policy_file_seeds_default_once_and_a_differing_file_later_is_not_applied() {
        let (_d, store) = sled();
        let path = std::path::Path::new("/etc/assay/policy.toml");
        let err = Verifier::seed_default_policy(&*store, None).unwrap_err();
        assert!(err.to_string().contains("--policy"), "{err}");
        let p1 = Policy::parse("p1", P1).unwrap();
        let set = Verifier::seed_default_policy(&*store, Some((&p1, P1, path))).unwrap();
        let current = set.current(DEFAULT_POLICY).unwrap();
        assert_eq!(
            (current.version.version, current.version.digest.as_str()),
            (1, p1.digest_hex().as_str())
        );
        // Restarted with another file: the store's version stays in force.
        let p2 = Policy::parse("p2", P2).unwrap();
        let set = Verifier::seed_default_policy(&*store, Some((&p2, P2, path))).unwrap();
        assert_eq!(set.accepted(DEFAULT_POLICY).len(), 1);
        assert_eq!(
            set.current(DEFAULT_POLICY).unwrap().version.digest,
            p1.digest_hex()
        );
        // And without a file at all.
        assert!(Verifier::seed_default_policy(&*store, None).is_ok());
        // One ADMIN record, at the first start only.
        let (recs, _) = store
            .query_history(&crate::store::HistoryQuery {
                limit: 10,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(recs.len(), 1);
        assert_eq!(
            (recs[0].kind.as_str(), recs[0].policy_version),
            ("admin", 1)
        );
    }

    #[test]
    fn a_stored_text_that_does_not_hash_to_its_digest_is_not_loaded() {
        let (_d, store) = sled();
        let p1 = Policy::parse("p1", P1).unwrap();
        Verifier::seed_default_policy(&*store, Some((&p1, P1, std::path::Path::new("/p"))))
            .unwrap();
        store
            .apply_policy(&NewPolicyVersion {
                name: "other",
                // Kept under a digest that is not its own.
                digest: &"ab".repeat(32),
                text: P2,
                applied_unix: 0,
                subject: "t",
                reason: "",
                signature: None,
                signed_by: None,
                mode: ApplyMode::Replace,
                rollback_of: None,
            })
            .unwrap();
        // A tampered store: the text kept under a digest is another policy's.
        // That name's nodes are refused; the other names load.
        let set = PolicySet::load(&*store).unwrap();
        assert!(
            set.broken("other").unwrap().contains("does not hash"),
            "{set:?}"
        );
        assert!(set.accepted("other").is_empty());
        assert_eq!(set.accepted(DEFAULT_POLICY).len(), 1);
    }
}
