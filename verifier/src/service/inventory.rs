//! The inventory: which EK may enroll under which node id (enrollment mode
//! `inventory`), and the operator's acts on nodes (register, remove,
//! rename). Each change is an ADMIN record in the history naming the
//! operator certificate's subject and, where known, the EK certificate's.

use std::collections::BTreeMap;

use tracing::info;

use super::{validate_node_id, ServiceError, Verifier};
use crate::clock::now_unix;
use crate::store::{
    EkBinding, HistoryRecord, InventoryAdded, InventoryEntry, Moved, NodeRecord, Quarantine,
    UnauthenticatedAttempts,
};

/// Most entries one request registers (a larger import is split by the CLI).
pub const MAX_ENTRIES_PER_ADD: usize = 10_000;
/// Most labels on one node.
pub const MAX_LABELS: usize = 32;
/// Longest label key and value.
pub const MAX_LABEL_KEY: usize = 63;
pub const MAX_LABEL_VALUE: usize = 253;
/// Longest EK certificate subject kept.
pub const MAX_SUBJECT: usize = 1024;
/// Longest `source` text kept in the history.
pub const MAX_SOURCE: usize = 512;

/// A node as the verifier knows it: registered, enrolled, or both.
#[derive(Debug, Clone)]
pub struct NodeView {
    pub node_id: String,
    pub registration: Option<InventoryEntry>,
    pub enrolled: Option<NodeRecord>,
    pub quarantine: Option<Quarantine>,
    /// Recorded by `show_node` only (`list_nodes` leaves it empty).
    pub unauthenticated: Option<UnauthenticatedAttempts>,
}

/// What removing a node found.
#[derive(Debug, Clone, Copy)]
pub struct Removed {
    pub was_registered: bool,
    pub was_enrolled: bool,
    pub tokens_revoked: usize,
}

/// An entry as an operator gives it, before validation.
#[derive(Debug, Clone, Default)]
pub struct EntryInput {
    pub node_id: String,
    pub ek_cert_sha256: String,
    pub ek_public_sha256: String,
    pub ek_subject: String,
    pub labels: BTreeMap<String, String>,
}

fn bad(msg: String) -> ServiceError {
    ServiceError::BadRequest(msg)
}

fn sha256_hex(what: &str, node_id: &str, v: &str) -> Result<String, ServiceError> {
    let v = v.trim().trim_start_matches("sha256:").to_ascii_lowercase();
    if v.len() != 64 || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad(format!(
            "{node_id}: {what} must be a SHA-256 in hex (64 digits), got `{}`",
            v.chars().take(80).collect::<String>().escape_debug()
        )));
    }
    Ok(v)
}

/// A label key: 1 to 63 of `[A-Za-z0-9._/-]`, starting with a letter or digit
/// (the shape of Kubernetes label keys).
pub(super) fn check_label(node_id: &str, k: &str, v: &str) -> Result<(), ServiceError> {
    let key_ok = !k.is_empty()
        && k.len() <= MAX_LABEL_KEY
        && k.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'/' | b'-'));
    if !key_ok {
        return Err(bad(format!(
            "{node_id}: label key `{}` must be 1 to {MAX_LABEL_KEY} characters of [A-Za-z0-9._/-], starting with a letter or digit",
            k.escape_debug()
        )));
    }
    if v.len() > MAX_LABEL_VALUE || v.chars().any(char::is_control) {
        return Err(bad(format!(
            "{node_id}: label {k}: the value must be at most {MAX_LABEL_VALUE} bytes, without control characters"
        )));
    }
    Ok(())
}

/// Checks an operator's entry and makes the stored form of it.
pub fn validate_entry(
    e: EntryInput,
    added_by: &str,
    now: i64,
) -> Result<InventoryEntry, ServiceError> {
    validate_node_id(&e.node_id)?;
    let id = e.node_id.as_str();
    let (binding, ek_sha256) = match (e.ek_cert_sha256.is_empty(), e.ek_public_sha256.is_empty()) {
        (false, true) => (
            EkBinding::Certificate,
            sha256_hex("ek_cert_sha256", id, &e.ek_cert_sha256)?,
        ),
        (true, false) => (
            EkBinding::PublicArea,
            sha256_hex("ek_public_sha256", id, &e.ek_public_sha256)?,
        ),
        _ => {
            return Err(bad(format!(
                "{id}: give exactly one of the EK certificate's SHA-256 and the EK public area's"
            )))
        }
    };
    if e.labels.len() > MAX_LABELS {
        return Err(bad(format!(
            "{id}: {} labels; at most {MAX_LABELS}",
            e.labels.len()
        )));
    }
    for (k, v) in &e.labels {
        check_label(id, k, v)?;
    }
    if e.ek_subject.len() > MAX_SUBJECT || e.ek_subject.chars().any(char::is_control) {
        return Err(bad(format!(
            "{id}: the EK subject must be at most {MAX_SUBJECT} bytes, without control characters"
        )));
    }
    Ok(InventoryEntry {
        node_id: e.node_id,
        binding,
        ek_sha256,
        ek_subject: e.ek_subject,
        labels: e.labels,
        added_unix: now,
        added_by: added_by.into(),
    })
}

/// The ADMIN record of one act on a node.
fn admin_record(v: &Verifier, node_id: &str, what: String, by: &str) -> HistoryRecord {
    super::admin_record(
        node_id,
        "an operator's request",
        format!("{what} (by {by})"),
        "Nodes",
        v.policy_of_record(node_id),
    )
}

fn describe(e: &InventoryEntry) -> String {
    let ek = match e.binding {
        EkBinding::Certificate => format!("EK certificate sha256:{}", e.ek_sha256),
        EkBinding::PublicArea => format!("EK public area sha256:{}", e.ek_sha256),
    };
    let subject = if e.ek_subject.is_empty() {
        String::new()
    } else {
        format!(" (subject {})", e.ek_subject)
    };
    let labels = if e.labels.is_empty() {
        String::new()
    } else {
        let l: Vec<String> = e.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!(", labels {}", l.join(","))
    };
    format!("{ek}{subject}{labels}")
}

impl Verifier {
    /// Validates and registers entries, all or none, as `caller_subject`
    /// (kept in each entry), and records one ADMIN record per entry added or
    /// changed, in one append (`by` names the caller there).
    pub fn add_inventory(
        &self,
        inputs: Vec<EntryInput>,
        caller_subject: &str,
        by: &str,
        source: &str,
    ) -> Result<InventoryAdded, ServiceError> {
        if inputs.is_empty() || inputs.len() > MAX_ENTRIES_PER_ADD {
            return Err(bad(format!(
                "{} entries; give 1 to {MAX_ENTRIES_PER_ADD} per request",
                inputs.len()
            )));
        }
        let now = now_unix();
        let entries = inputs
            .into_iter()
            .map(|e| validate_entry(e, caller_subject, now))
            .collect::<Result<Vec<_>, _>>()?;
        let added = self
            .store
            .add_inventory(&entries)?
            .map_err(|c| ServiceError::InventoryConflict(c.0))?;
        let from = if source.is_empty() {
            String::new()
        } else {
            format!(
                " from {}",
                source.chars().take(MAX_SOURCE).collect::<String>()
            )
        };
        // One record per entry written; unchanged entries need none.
        let written: std::collections::HashSet<&str> =
            added.written.iter().map(String::as_str).collect();
        let records: Vec<HistoryRecord> = entries
            .iter()
            .filter(|e| written.contains(e.node_id.as_str()))
            .map(|e| {
                admin_record(
                    self,
                    &e.node_id,
                    format!("registered {}{from}", describe(e)),
                    by,
                )
            })
            .collect();
        if !records.is_empty() {
            self.store.append_history_batch(records)?;
        }
        info!(
            added = added.added,
            updated = added.updated,
            unchanged = added.unchanged,
            by,
            "inventory changed"
        );
        Ok(added)
    }

    /// One node as the verifier knows it; NotEnrolled when it is neither
    /// registered nor enrolled.
    pub fn show_node(&self, node_id: &str) -> Result<NodeView, ServiceError> {
        validate_node_id(node_id)?;
        let view = NodeView {
            node_id: node_id.into(),
            registration: self.store.inventory(node_id)?,
            enrolled: self.store.node(node_id)?,
            quarantine: self.store.quarantine(node_id)?,
            unauthenticated: self.store.attempts(node_id)?,
        };
        if view.registration.is_none() && view.enrolled.is_none() {
            return Err(ServiceError::UnknownNode(node_id.into()));
        }
        Ok(view)
    }

    /// Registered and enrolled nodes in node-id order, after `after`.
    pub fn list_nodes(&self, after: &str, limit: usize) -> Result<Vec<NodeView>, ServiceError> {
        let registered = self.store.list_inventory(after, limit)?;
        let enrolled = self.store.list_nodes(after, limit)?;
        let mut views: BTreeMap<String, NodeView> = BTreeMap::new();
        let view = |id: &str| NodeView {
            node_id: id.into(),
            registration: None,
            enrolled: None,
            quarantine: None,
            unauthenticated: None,
        };
        for e in registered {
            let id = e.node_id.clone();
            views
                .entry(id.clone())
                .or_insert_with(|| view(&id))
                .registration = Some(e);
        }
        for n in enrolled {
            let id = n.node_id.clone();
            views
                .entry(id.clone())
                .or_insert_with(|| view(&id))
                .enrolled = Some(n);
        }
        let mut out: Vec<NodeView> = views.into_values().take(limit).collect();
        // Each page is complete for the ids it holds: fill in the other half.
        for v in &mut out {
            if v.registration.is_none() {
                v.registration = self.store.inventory(&v.node_id)?;
            }
            if v.enrolled.is_none() {
                v.enrolled = self.store.node(&v.node_id)?;
            }
            v.quarantine = self.store.quarantine(&v.node_id)?;
        }
        Ok(out)
    }

    /// Forgets a node: registration, enrollment and unused tokens.
    pub fn remove_node(&self, node_id: &str, by: &str) -> Result<Removed, ServiceError> {
        validate_node_id(node_id)?;
        let registration = self.store.inventory(node_id)?;
        let was_registered = self.store.remove_inventory(node_id)?;
        let was_enrolled = self.store.remove_node(node_id)?;
        if !was_registered && !was_enrolled {
            return Err(ServiceError::UnknownNode(node_id.into()));
        }
        let tokens_revoked = self.store.revoke_node_tokens(node_id)?;
        crate::metrics::tokens_revoked(tokens_revoked);
        let what = format!(
            "removed the node ({}); {tokens_revoked} unused token(s) revoked",
            match (&registration, was_enrolled) {
                (Some(r), true) => format!("registration of {} and enrollment", describe(r)),
                (Some(r), false) => format!("registration of {}", describe(r)),
                (None, _) => "enrollment".into(),
            }
        );
        self.store
            .append_history(admin_record(self, node_id, what, by))?;
        info!(node_id, was_registered, was_enrolled, by, "node removed");
        Ok(Removed {
            was_registered,
            was_enrolled,
            tokens_revoked,
        })
    }

    /// Renames a node (registration, enrollment and quarantine together).
    pub fn move_node(&self, from: &str, to: &str, by: &str) -> Result<(bool, bool), ServiceError> {
        validate_node_id(from)?;
        validate_node_id(to)?;
        if from == to {
            return Err(bad(format!("node {from}: the new id is the same")));
        }
        match self.store.move_node(from, to)? {
            Moved::Unknown => Err(ServiceError::UnknownNode(from.into())),
            Moved::Taken => Err(ServiceError::NodeIdTaken(to.into())),
            Moved::Done {
                enrolled,
                registered,
            } => {
                let what = format!(
                    "renamed node {from} to {to} ({}); on the node run `assay-attestor join \
                     --node-id {to} --rename`",
                    match (registered, enrolled) {
                        (true, true) => "registration and enrollment",
                        (true, false) => "registration",
                        _ => "enrollment",
                    }
                );
                // Under both ids, so each node's history tells the story.
                self.store.append_history_batch(vec![
                    admin_record(self, from, what.clone(), by),
                    admin_record(self, to, what, by),
                ])?;
                info!(from, to, by, "node renamed");
                Ok((registered, enrolled))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(id: &str, cert: &str, public: &str) -> EntryInput {
        EntryInput {
            node_id: id.into(),
            ek_cert_sha256: cert.into(),
            ek_public_sha256: public.into(),
            ..Default::default()
        }
    }

    #[test]
    fn an_entry_names_its_ek_exactly_once_by_a_sha256() {
        let h = "AB".repeat(32);
        let e = validate_entry(input("n1", &h, ""), "op", 1).unwrap();
        assert_eq!(e.binding, EkBinding::Certificate);
        assert_eq!(e.ek_sha256, h.to_ascii_lowercase());
        let e = validate_entry(input("n1", "", &format!("sha256:{h}")), "op", 1).unwrap();
        assert_eq!(e.binding, EkBinding::PublicArea);
        for (c, p) in [
            (&h[..], &h[..]),
            ("", ""),
            ("abc", ""),
            ("", &"zz".repeat(32)[..]),
        ] {
            let err = validate_entry(input("n1", c, p), "op", 1).unwrap_err();
            assert!(matches!(err, ServiceError::BadRequest(_)), "{c}/{p}: {err}");
        }
        assert!(validate_entry(input("../x", &h, ""), "op", 1).is_err());
    }

    #[test]
    fn labels_are_bounded_and_shaped() {
        let h = "ab".repeat(32);
        let with = |k: &str, v: &str| {
            let mut e = input("n1", &h, "");
            e.labels.insert(k.into(), v.into());
            validate_entry(e, "op", 1)
        };
        assert!(with("rack", "r12").is_ok());
        assert!(with("example.com/class", "gpu").is_ok());
        for (k, v) in [
            ("", "x"),
            ("-rack", "x"),
            ("ra ck", "x"),
            (&"k".repeat(64)[..], "x"),
            ("rack", "a\nb"),
            ("rack", &"v".repeat(254)[..]),
        ] {
            assert!(with(k, v).is_err(), "{k:?}={v:?} accepted");
        }
        let mut e = input("n1", &h, "");
        for i in 0..=MAX_LABELS {
            e.labels.insert(format!("k{i}"), "v".into());
        }
        assert!(validate_entry(e, "op", 1).is_err());
    }
}
