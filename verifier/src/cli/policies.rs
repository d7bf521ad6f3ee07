//! `policy apply | list | show | diff | rollback | retire | assign | test`:
//! the named, versioned policies of a running verifier (operator role;
//! `list` and `show` also auditor).

use std::path::{Path, PathBuf};

use assay_core::policy::Policy;
use assay_proto::v1 as pb;
use serde_json::json;

use super::output::{claim_json, outln, short, Output};
use super::remote::{answer, connect, ServerArgs};
use super::Exit;

/// Largest dry-run answer read (one entry per affected node).
const MAX_ANSWER_BYTES: usize = 256 * 1024 * 1024;

async fn client(
    server: &ServerArgs,
) -> anyhow::Result<pb::policies_client::PoliciesClient<tonic::transport::Channel>> {
    Ok(
        pb::policies_client::PoliciesClient::new(connect(server).await?)
            .max_decoding_message_size(MAX_ANSWER_BYTES)
            .max_encoding_message_size(assay_verifier::server::MAX_MESSAGE_BYTES),
    )
}

fn version_json(v: &pb::PolicyVersionInfo) -> serde_json::Value {
    json!({
        "name": v.name, "version": v.version, "digest": v.digest,
        "applied_unix": v.applied_unix, "subject": v.subject, "reason": v.reason,
        "signed": !v.signature.is_empty(),
        "signed_by": (!v.signed_by.is_empty()).then_some(&v.signed_by), "status": v.status,
        "rollback_of": (v.rollback_of != 0).then_some(v.rollback_of),
    })
}

fn version_line(v: &pb::PolicyVersionInfo) -> String {
    let mut s = format!(
        "{}@{}  {:<10}  sha256:{}  {}  by {}",
        v.name,
        v.version,
        v.status,
        short(&v.digest),
        super::output::date(v.applied_unix),
        v.subject
    );
    if v.rollback_of != 0 {
        s.push_str(&format!("  (rollback to {})", v.rollback_of));
    }
    match (v.signature.is_empty(), v.signed_by.is_empty()) {
        (false, false) => s.push_str(&format!("  signed by key {}", v.signed_by)),
        (false, true) => s.push_str("  signature not checked (no policy_signing_keys then)"),
        _ => {}
    }
    if !v.reason.is_empty() {
        s.push_str(&format!("  — {}", v.reason));
    }
    s
}

/// `NAME@VERSION` (or `NAME`: the current version).
pub fn parse_ref(s: &str) -> anyhow::Result<(String, u64)> {
    match s.split_once('@') {
        None => Ok((s.to_string(), 0)),
        Some((n, v)) => {
            let v: u64 = v.parse().map_err(|_| {
                Exit::Usage(format!("`{s}`: expected NAME@VERSION, VERSION a number"))
            })?;
            if v == 0 {
                return Err(Exit::Usage(format!("`{s}`: versions start at 1")).into());
            }
            Ok((n.to_string(), v))
        }
    }
}

/// A policy file's text, read bounded and checked here for a readable error
/// (the verifier checks again).
fn read_text(file: &Path) -> anyhow::Result<String> {
    Ok(assay_verifier::files::read_policy_with_text(file)?.1)
}

pub struct ApplyArgs<'a> {
    pub file: &'a Path,
    pub name: &'a str,
    pub reason: &'a str,
    pub signature: Option<PathBuf>,
    pub unsigned: bool,
    pub alongside: bool,
}

pub async fn apply(a: ApplyArgs<'_>, server: &ServerArgs, output: Output) -> anyhow::Result<()> {
    let text = read_text(a.file)?;
    // The signature beside the file is sent when there is one.
    let sig_path = a
        .signature
        .clone()
        .unwrap_or_else(|| super::policy::default_signature_path(a.file));
    let signature = if a.unsigned {
        String::new()
    } else {
        match std::fs::read_to_string(&sig_path) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && a.signature.is_none() => {
                String::new()
            }
            Err(e) => return Err(anyhow::anyhow!("reading {}: {e}", sig_path.display())),
        }
    };
    let r = client(server)
        .await?
        .apply(pb::ApplyPolicyRequest {
            name: a.name.to_string(),
            text,
            reason: a.reason.to_string(),
            signature,
            alongside: a.alongside,
            rollback_to: 0,
        })
        .await
        .map_err(|s| answer("policy apply", s))?
        .into_inner();
    print_applied(&r, output)
}

pub async fn rollback(
    name: &str,
    to: u64,
    reason: &str,
    server: &ServerArgs,
    output: Output,
) -> anyhow::Result<()> {
    let r = client(server)
        .await?
        .apply(pb::ApplyPolicyRequest {
            name: name.to_string(),
            reason: reason.to_string(),
            rollback_to: to,
            ..Default::default()
        })
        .await
        .map_err(|s| answer("policy rollback", s))?
        .into_inner();
    print_applied(&r, output)
}

fn print_applied(r: &pb::ApplyPolicyResponse, output: Output) -> anyhow::Result<()> {
    let v = r.version.clone().unwrap_or_default();
    if output == Output::Json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "version": version_json(&v),
                "previous": r.previous.as_ref().map(version_json),
                "superseded": r.superseded.iter().map(version_json).collect::<Vec<_>>(),
                "signed_by": (!r.signed_by.is_empty()).then_some(&r.signed_by),
                "history_seq": r.history_seq,
            }))?
        );
        return Ok(());
    }
    outln!(
        "applied {}@{} ({}), sha256:{}; history record {}",
        v.name,
        v.version,
        v.status,
        v.digest,
        r.history_seq
    );
    if let Some(p) = &r.previous {
        if v.status == "alongside" {
            outln!(
                "  {}@{} stays current: nodes pass under either until one is retired",
                p.name,
                p.version
            );
        } else {
            outln!(
                "  replaces {}@{} (sha256:{})",
                p.name,
                p.version,
                short(&p.digest)
            );
        }
    }
    for s in &r.superseded {
        if r.previous.as_ref().is_none_or(|p| p.version != s.version) {
            outln!("  supersedes {}@{}", s.name, s.version);
        }
    }
    if !r.signed_by.is_empty() {
        outln!("  signed by key {}", r.signed_by);
    }
    Ok(())
}

pub async fn list(name: Option<&str>, server: &ServerArgs, output: Output) -> anyhow::Result<()> {
    let r = client(server)
        .await?
        .list(pb::ListPoliciesRequest {
            name: name.unwrap_or_default().to_string(),
        })
        .await
        .map_err(|s| answer("policy list", s))?
        .into_inner();
    if output == Output::Json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "versions": r.versions.iter().map(version_json).collect::<Vec<_>>(),
                "assignments": r.assignments.iter().map(|a| json!({"group": a.group, "name": a.name})).collect::<Vec<_>>(),
                "groups": r.groups,
            }))?
        );
        return Ok(());
    }
    if r.versions.is_empty() {
        outln!("no policies");
    }
    for v in &r.versions {
        outln!("{}", version_line(v));
    }
    outln!();
    if r.assignments.is_empty() {
        outln!("assignments: none (every node uses `default`)");
    } else {
        outln!("assignments (a node not in an assigned group uses `default`):");
        for a in &r.assignments {
            outln!("  {} → {}", a.group, a.name);
        }
    }
    let unassigned: Vec<&String> = r
        .groups
        .iter()
        .filter(|g| !r.assignments.iter().any(|a| &a.group == *g))
        .collect();
    if !unassigned.is_empty() {
        outln!(
            "node groups using `default`: {}",
            unassigned
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}

async fn fetch(
    c: &mut pb::policies_client::PoliciesClient<tonic::transport::Channel>,
    name: &str,
    version: u64,
) -> anyhow::Result<pb::ShowPolicyResponse> {
    Ok(c.show(pb::ShowPolicyRequest {
        name: name.to_string(),
        version,
    })
    .await
    .map_err(|s| answer("policy show", s))?
    .into_inner())
}

pub async fn show(
    reference: &str,
    text_only: bool,
    server: &ServerArgs,
    output: Output,
) -> anyhow::Result<()> {
    let (name, version) = parse_ref(reference)?;
    let r = fetch(&mut client(server).await?, &name, version).await?;
    let v = r.version.clone().unwrap_or_default();
    if output == Output::Json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "version": version_json(&v), "signature": v.signature, "text": r.text,
            }))?
        );
        return Ok(());
    }
    if !text_only {
        outln!("# {}", version_line(&v));
        outln!("# sha256:{}", v.digest);
    }
    super::output::out!("{}", r.text);
    Ok(())
}

/// One side of a diff: `NAME@VERSION` from the verifier, or a policy file.
async fn side(s: &str, server: &ServerArgs) -> anyhow::Result<(String, Policy)> {
    let path = Path::new(s);
    if !s.contains('@') && path.exists() {
        let (policy, _) = assay_verifier::files::read_policy_with_text(path)?;
        return Ok((s.to_string(), policy));
    }
    let (name, version) = parse_ref(s)?;
    let r = fetch(&mut client(server).await?, &name, version).await?;
    let v = r.version.unwrap_or_default();
    Ok((
        format!("{}@{}", v.name, v.version),
        Policy::parse(&name, &r.text)?,
    ))
}

pub async fn diff(a: &str, b: &str, server: &ServerArgs, output: Output) -> anyhow::Result<()> {
    let (la, pa) = side(a, server).await?;
    let (lb, pb_) = side(b, server).await?;
    let changes = assay_core::policy::diff::diff(&pa, &pb_);
    if output == Output::Json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "from": la, "to": lb,
                "changes": changes.iter().map(|c| json!({
                    "key": c.key, "change": c.to_string(),
                    "metadata": assay_core::policy::diff::is_metadata(c),
                })).collect::<Vec<_>>(),
            }))?
        );
        return Ok(());
    }
    outln!("--- {la} (sha256:{})", short(&pa.digest_hex()));
    outln!("+++ {lb} (sha256:{})", short(&pb_.digest_hex()));
    if changes.is_empty() {
        outln!("no differences");
    }
    let judged = changes
        .iter()
        .filter(|c| !assay_core::policy::diff::is_metadata(c))
        .count();
    for c in &changes {
        outln!("{c}");
    }
    if !changes.is_empty() && judged == 0 {
        outln!("(metadata only: what a node must show is the same)");
    }
    Ok(())
}

pub async fn retire(reference: &str, reason: &str, server: &ServerArgs) -> anyhow::Result<()> {
    let (name, version) = parse_ref(reference)?;
    if version == 0 {
        return Err(Exit::Usage(format!("`{reference}`: give NAME@VERSION")).into());
    }
    let r = client(server)
        .await?
        .retire(pb::RetirePolicyRequest {
            name,
            version,
            reason: reason.to_string(),
        })
        .await
        .map_err(|s| answer("policy retire", s))?
        .into_inner();
    let v = r.retired.unwrap_or_default();
    outln!(
        "retired {}@{}; history record {}",
        v.name,
        v.version,
        r.history_seq
    );
    if let Some(p) = r.promoted {
        outln!("  {}@{} is current", p.name, p.version);
    }
    Ok(())
}

pub async fn assign(
    group: &str,
    name: &str,
    reason: &str,
    server: &ServerArgs,
) -> anyhow::Result<()> {
    let r = client(server)
        .await?
        .assign(pb::AssignPolicyRequest {
            group: group.to_string(),
            name: name.to_string(),
            reason: reason.to_string(),
        })
        .await
        .map_err(|s| answer("policy assign", s))?
        .into_inner();
    outln!(
        "node group {group} uses policy `{name}`; history record {}",
        r.history_seq
    );
    Ok(())
}

/// The dry run. Exit 0 when every affected node would pass (or cannot be
/// judged on kept evidence), 3 when some would fail.
pub async fn test(
    file: &Path,
    name: &str,
    server: &ServerArgs,
    output: Output,
) -> anyhow::Result<()> {
    let text = read_text(file)?;
    let r = client(server)
        .await?
        .test(pb::TestPolicyRequest {
            name: name.to_string(),
            text,
        })
        .await
        .map_err(|s| answer("policy test", s))?
        .into_inner();
    if r.nodes.is_empty() {
        eprintln!(
            "note: no enrolled node uses policy `{name}`: nothing was judged (a new name is used \
             once `policy assign GROUP {name}` names it)"
        );
    }
    let count = |o: &str| r.nodes.iter().filter(|n| n.outcome == o).count();
    let (pass, fail, none, undetermined) = (
        count("pass"),
        count("fail"),
        count("no-evidence"),
        count("undetermined"),
    );
    let newly_failing = r
        .nodes
        .iter()
        .filter(|n| n.outcome == "fail" && n.recorded_passed)
        .count();
    if output == Output::Json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "name": name, "candidate_digest": r.digest,
                "current": r.current.as_ref().map(version_json),
                "nodes": r.nodes.iter().map(|n| json!({
                    "node_id": n.node_id, "outcome": n.outcome, "note": n.note,
                    "seq": n.seq, "time_unix": n.time_unix,
                    "recorded": super::output::word(n.recorded_passed),
                    "failed_claims": n.failed_claims.iter().map(claim_json).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
                "summary": {
                    "nodes": r.nodes.len(), "pass": pass, "fail": fail,
                    "no_evidence": none, "undetermined": undetermined,
                    "newly_failing": newly_failing,
                },
            }))?
        );
    } else {
        outln!(
            "dry run of {} (sha256:{}) as policy `{name}`{}; nothing is written",
            file.display(),
            short(&r.digest),
            match &r.current {
                Some(c) => format!(
                    ", now {}@{} (sha256:{})",
                    c.name,
                    c.version,
                    short(&c.digest)
                ),
                None => " (a new name)".into(),
            }
        );
        for n in &r.nodes {
            match n.outcome.as_str() {
                "no-evidence" => outln!(
                    "  {:<8} {}: no authentic verdict with kept evidence",
                    "UNKNOWN",
                    n.node_id
                ),
                "undetermined" => outln!("  {:<8} {}: {}", "UNKNOWN", n.node_id, n.note),
                o => {
                    outln!(
                        "  {:<8} {} (evidence of record {}, recorded {}){}",
                        o.to_uppercase(),
                        n.node_id,
                        n.seq,
                        super::output::word(n.recorded_passed),
                        if o == "fail" && n.recorded_passed {
                            ": would be quarantined"
                        } else {
                            ""
                        }
                    );
                    for c in &n.failed_claims {
                        outln!(
                            "           FAIL {} ({}): expected {}, got {}",
                            c.id,
                            c.location,
                            c.expected,
                            c.actual
                        );
                    }
                }
            }
        }
        outln!(
            "{} nodes: {pass} pass, {fail} fail ({newly_failing} passing now), {undetermined} undetermined, {none} without kept evidence",
            r.nodes.len()
        );
    }
    if fail > 0 {
        return Err(Exit::Refused(format!(
            "{fail} of {} nodes would fail under the candidate",
            r.nodes.len()
        ))
        .into());
    }
    Ok(())
}
