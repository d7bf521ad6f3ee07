//! `node add | import | list | show | remove | move`: registered nodes (the
//! inventory) and enrolled nodes, through the running verifier's `Nodes`
//! API (operator role to change, auditor or operator to read). Every change
//! is an ADMIN record in the history.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use assay_proto::v1 as pb;
use clap::Subcommand;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::output::{date, outln, print_list, ListOutput};
use super::remote::{answer, connect, ServerArgs};
use super::Exit;
use assay_verifier::files::read_capped;
use assay_verifier::service::MAX_ENTRIES_PER_ADD;

/// Largest inventory file read.
const MAX_IMPORT_BYTES: u64 = 64 * 1024 * 1024;
/// Largest EK certificate file read.
const MAX_CERT_BYTES: u64 = 64 * 1024;

#[derive(Subcommand)]
pub enum NodeCmd {
    /// Register a node: the EK that may enroll under this node id (in
    /// enrollment mode `inventory` only registered EKs enroll). Give the EK
    /// certificate, its SHA-256, or for a TPM without an EK certificate the
    /// SHA-256 of its EK public area (`assay-attestor ek` prints them).
    #[command(group(clap::ArgGroup::new("ek").required(true).args(["ek_cert", "ek_sha256", "ek_public_sha256"])))]
    Add {
        #[command(flatten)]
        server: ServerArgs,
        /// The node id.
        node: String,
        /// The EK certificate (PEM or DER).
        #[arg(long, value_name = "FILE")]
        ek_cert: Option<PathBuf>,
        /// The SHA-256 (hex) of the DER EK certificate.
        #[arg(long, value_name = "HEX")]
        ek_sha256: Option<String>,
        /// The SHA-256 (hex) of the EK's TPM2B_PUBLIC (TPMs without an EK certificate).
        #[arg(long, value_name = "HEX")]
        ek_public_sha256: Option<String>,
        /// A label, KEY=VALUE (repeatable), e.g. for node groups.
        #[arg(long = "label", value_name = "KEY=VALUE")]
        labels: Vec<String>,
    },
    /// Register many nodes from a hardware inventory, all or none: CSV with a
    /// header (node_id, and ek_cert_sha256, ek_public_sha256 or ek_cert — a
    /// PEM/DER file path relative to FILE — and optionally labels as
    /// `k=v;k2=v2`), or JSON (an array of objects with those keys; labels an
    /// object; ek_cert_pem the certificate inline).
    Import {
        #[command(flatten)]
        server: ServerArgs,
        /// The inventory file (`.csv` or `.json`; `-` reads CSV from stdin).
        file: PathBuf,
    },
    /// List registered and enrolled nodes.
    List {
        #[command(flatten)]
        server: ServerArgs,
        /// Most nodes to list.
        #[arg(long, default_value_t = 1000, value_name = "N")]
        limit: u32,
        /// Start after this node id (paging).
        #[arg(long, default_value = "", value_name = "ID")]
        after: String,
        /// Output form.
        #[arg(long, value_enum, default_value = "table")]
        output: ListOutput,
    },
    /// One node: its registration, enrollment and quarantine.
    Show {
        #[command(flatten)]
        server: ServerArgs,
        /// The node id.
        node: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Forget a node (e.g. after a TPM replacement): its registration, its
    /// enrollment and its unused join tokens. Register and enroll it again after.
    Remove {
        #[command(flatten)]
        server: ServerArgs,
        /// The node id.
        node: String,
    },
    /// Rename a node: its registration, EK, AK, rollback baseline and
    /// quarantine move to the new id (one EK holds one node id, so this is how
    /// a TPM changes name). Then run `assay-attestor join --node-id NEW --rename`.
    Move {
        #[command(flatten)]
        server: ServerArgs,
        /// The node's current id.
        from: String,
        /// The new id; it must be neither registered nor enrolled.
        to: String,
    },
}

pub async fn run(c: NodeCmd) -> anyhow::Result<()> {
    match c {
        NodeCmd::Add {
            server,
            node,
            ek_cert,
            ek_sha256,
            ek_public_sha256,
            labels,
        } => {
            let mut e = pb::InventoryEntry {
                node_id: node.clone(),
                ek_cert_sha256: ek_sha256.unwrap_or_default(),
                ek_public_sha256: ek_public_sha256.unwrap_or_default(),
                labels: parse_labels(&labels.join(";"), "--label")?
                    .into_iter()
                    .collect(),
                ..Default::default()
            };
            if let Some(path) = ek_cert {
                let (hash, subject) = cert_file(&path)?;
                e.ek_cert_sha256 = hash;
                e.ek_subject = subject;
            }
            let r = add(&server, vec![e], String::new()).await?;
            let what = if r.added == 1 {
                "registered"
            } else if r.updated == 1 {
                "registered already; labels updated"
            } else {
                "registered already, unchanged"
            };
            outln!("node {node}: {what}");
            Ok(())
        }
        NodeCmd::Import { server, file } => {
            let (entries, digest) = read_inventory(&file)?;
            let n = entries.len();
            let source = format!("{} (sha256:{})", file.display(), &digest[..16]);
            let r = add(&server, entries, source).await?;
            outln!(
                "{n} entries from {}: {} registered, {} updated, {} unchanged",
                file.display(),
                r.added,
                r.updated,
                r.unchanged
            );
            Ok(())
        }
        NodeCmd::List {
            server,
            limit,
            after,
            output,
        } => {
            let r = pb::nodes_client::NodesClient::new(connect(&server).await?)
                .list(pb::ListNodesRequest { after, limit })
                .await
                .map_err(|s| answer("node list", s))?
                .into_inner();
            print_list(&r.nodes, output, node_json, |nodes| {
                outln!("enrollment mode: {}", r.enrollment_mode);
                outln!(
                    "{:<24} {:<10} {:<8} {:<20} {:<11} LABELS",
                    "NODE",
                    "REGISTERED",
                    "ENROLLED",
                    "EK (SHA-256)",
                    "QUARANTINE"
                );
                for n in nodes {
                    let reg = n.registration.as_ref();
                    let ek = reg
                        .map(|r| {
                            if r.ek_cert_sha256.is_empty() {
                                format!("pub:{}", short16(&r.ek_public_sha256))
                            } else {
                                format!("cert:{}", short16(&r.ek_cert_sha256))
                            }
                        })
                        .unwrap_or_else(|| format!("cert:{}", short16(&n.ek_sha256)));
                    outln!(
                        "{:<24} {:<10} {:<8} {:<20} {:<11} {}",
                        n.node_id,
                        yes(n.registered),
                        yes(n.enrolled),
                        ek,
                        if n.quarantined { "quarantined" } else { "-" },
                        reg.map(|r| labels_text(&r.labels)).unwrap_or_default()
                    );
                }
            })
        }
        NodeCmd::Show { server, node, json } => {
            let n = pb::nodes_client::NodesClient::new(connect(&server).await?)
                .show(pb::ShowNodeRequest { node_id: node })
                .await
                .map_err(|s| answer("node show", s))?
                .into_inner();
            if json {
                outln!("{}", serde_json::to_string_pretty(&node_json(&n))?);
                return Ok(());
            }
            outln!("node {}", n.node_id);
            match &n.registration {
                Some(r) => {
                    outln!(
                        "  registered:   yes, by {} at {}",
                        r.added_by,
                        date(r.added_unix)
                    );
                    if r.ek_cert_sha256.is_empty() {
                        outln!("  EK public area sha256:{}", r.ek_public_sha256);
                    } else {
                        outln!("  EK certificate sha256:{}", r.ek_cert_sha256);
                    }
                    if !r.ek_subject.is_empty() {
                        outln!("  EK subject:   {}", r.ek_subject);
                    }
                    if !r.labels.is_empty() {
                        let l: BTreeMap<_, _> = r.labels.iter().collect();
                        outln!(
                            "  labels:       {}",
                            labels_text(
                                &l.into_iter().map(|(k, v)| (k.clone(), v.clone())).collect()
                            )
                        );
                    }
                }
                None => outln!("  registered:   no"),
            }
            if n.enrolled {
                outln!("  enrolled:     yes, at {}", date(n.activated_unix));
                outln!("  enrolled EK:  sha256:{}", n.ek_sha256);
                outln!("  AK name:      {}", n.ak_name);
                if n.last_pass_unix > 0 {
                    outln!("  last pass:    {}", date(n.last_pass_unix));
                }
            } else {
                outln!("  enrolled:     no");
            }
            if n.quarantined {
                outln!("  quarantined since {}", date(n.quarantined_since_unix));
            }
            if let Some(a) = n.unauthenticated.as_ref().filter(|a| a.count > 0) {
                outln!(
                    "  unauthenticated attempts: {} (not verdicts), first {}, last {}",
                    a.count,
                    date(a.first_unix),
                    date(a.last_unix)
                );
                for s in &a.sources {
                    outln!(
                        "    from {}: {} (last {})",
                        s.address,
                        s.count,
                        date(s.last_unix)
                    );
                }
                if !a.last_failed.is_empty() {
                    outln!("    last failed: {}", a.last_failed.join(", "));
                }
            }
            Ok(())
        }
        NodeCmd::Remove { server, node } => {
            let r = pb::nodes_client::NodesClient::new(connect(&server).await?)
                .remove(pb::RemoveNodeRequest {
                    node_id: node.clone(),
                })
                .await
                .map_err(|s| answer("node remove", s))?
                .into_inner();
            outln!(
                "node {node} removed (registration: {}, enrollment: {}, {} unused token(s) revoked); it may be registered and enroll again",
                yes(r.was_registered),
                yes(r.was_enrolled),
                r.tokens_revoked
            );
            Ok(())
        }
        NodeCmd::Move { server, from, to } => {
            let r = pb::nodes_client::NodesClient::new(connect(&server).await?)
                .r#move(pb::MoveNodeRequest {
                    from: from.clone(),
                    to: to.clone(),
                })
                .await
                .map_err(|s| answer("node move", s))?
                .into_inner();
            outln!(
                "node {from} is now {to} (registration: {}, enrollment with its EK, AK and rollback baseline: {}); on the node run `assay-attestor join --node-id {to} --rename`",
                yes(r.registered),
                yes(r.enrolled)
            );
            Ok(())
        }
    }
}

async fn add(
    server: &ServerArgs,
    entries: Vec<pb::InventoryEntry>,
    source: String,
) -> anyhow::Result<pb::AddNodesResponse> {
    Ok(pb::nodes_client::NodesClient::new(connect(server).await?)
        .add(pb::AddNodesRequest { entries, source })
        .await
        .map_err(|s| answer("node add", s))?
        .into_inner())
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn short16(h: &str) -> &str {
    h.get(..16).unwrap_or(h)
}

fn labels_text(l: &std::collections::HashMap<String, String>) -> String {
    let sorted: BTreeMap<_, _> = l.iter().collect();
    sorted
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn node_json(n: &pb::NodeInfo) -> serde_json::Value {
    let reg = n.registration.as_ref().map(|r| {
        serde_json::json!({
            "ek_cert_sha256": r.ek_cert_sha256,
            "ek_public_sha256": r.ek_public_sha256,
            "ek_subject": r.ek_subject,
            "labels": r.labels.iter().collect::<BTreeMap<_, _>>(),
            "added_unix": r.added_unix,
            "added_by": r.added_by,
        })
    });
    serde_json::json!({
        "node_id": n.node_id,
        "registered": n.registered,
        "registration": reg,
        "enrolled": n.enrolled,
        "ek_sha256": n.ek_sha256,
        "ak_name": n.ak_name,
        "activated_unix": n.activated_unix,
        "last_pass_unix": n.last_pass_unix,
        "quarantined": n.quarantined,
        "quarantined_since_unix": n.quarantined_since_unix,
        "unauthenticated": n.unauthenticated.as_ref().map(|a| serde_json::json!({
            "count": a.count,
            "first_unix": a.first_unix,
            "last_unix": a.last_unix,
            "sources": a.sources.iter().map(|s| serde_json::json!({
                "address": s.address, "count": s.count, "last_unix": s.last_unix,
            })).collect::<Vec<_>>(),
            "last_failed": a.last_failed,
        })),
    })
}

/// `k=v;k2=v2` (empty: none).
fn parse_labels(text: &str, what: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((k, v)) = part.split_once('=') else {
            return Err(Exit::Usage(format!("{what}: `{part}` is not KEY=VALUE")).into());
        };
        if out
            .insert(k.trim().to_string(), v.trim().to_string())
            .is_some()
        {
            return Err(Exit::Usage(format!("{what}: label `{}` given twice", k.trim())).into());
        }
    }
    Ok(out)
}

/// The SHA-256 (hex) of the DER certificate and its subject, from PEM or DER.
fn cert_der(bytes: &[u8], what: &str) -> anyhow::Result<(String, String)> {
    let der = if bytes.starts_with(b"-----BEGIN") {
        let (_, pem) = x509_parser::pem::parse_x509_pem(bytes)
            .map_err(|e| anyhow::anyhow!("{what}: not a PEM certificate: {e}"))?;
        pem.contents
    } else {
        bytes.to_vec()
    };
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| anyhow::anyhow!("{what}: not an X.509 certificate: {e}"))?;
    Ok((
        hex::encode(Sha256::digest(&der)),
        cert.subject().to_string(),
    ))
}

fn cert_file(path: &Path) -> anyhow::Result<(String, String)> {
    let bytes = read_capped(path, MAX_CERT_BYTES)?;
    cert_der(&bytes, &path.display().to_string())
}

/// One row of an inventory file, CSV or JSON.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Row {
    node_id: String,
    #[serde(default)]
    ek_cert_sha256: String,
    #[serde(default)]
    ek_public_sha256: String,
    /// A certificate file, relative to the inventory file.
    #[serde(default)]
    ek_cert: String,
    /// JSON only: the certificate inline, PEM.
    #[serde(default)]
    ek_cert_pem: String,
    #[serde(default)]
    labels: Labels,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Labels {
    Text(String),
    Map(BTreeMap<String, String>),
}

impl Default for Labels {
    fn default() -> Self {
        Labels::Text(String::new())
    }
}

/// The entries of an inventory file and the file's SHA-256 (hex).
fn read_inventory(path: &Path) -> anyhow::Result<(Vec<pb::InventoryEntry>, String)> {
    let bytes = if path == Path::new("-") {
        use std::io::Read as _;
        let mut buf = Vec::new();
        std::io::stdin()
            .take(MAX_IMPORT_BYTES + 1)
            .read_to_end(&mut buf)?;
        anyhow::ensure!(
            buf.len() as u64 <= MAX_IMPORT_BYTES,
            "stdin holds more than {MAX_IMPORT_BYTES} bytes"
        );
        buf
    } else {
        read_capped(path, MAX_IMPORT_BYTES)?
    };
    let digest = hex::encode(Sha256::digest(&bytes));
    let json = path.extension().is_some_and(|e| e == "json")
        || bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
    let rows: Vec<(usize, Row)> = if json {
        let rows: Vec<Row> = serde_json::from_slice(&bytes)
            .map_err(|e| Exit::Usage(format!("{}: {e}", path.display())))?;
        rows.into_iter()
            .enumerate()
            .map(|(i, r)| (i + 1, r))
            .collect()
    } else {
        let mut rd = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .from_reader(bytes.as_slice());
        let mut rows = Vec::new();
        for (i, r) in rd.deserialize::<Row>().enumerate() {
            // Line numbers count the header.
            let r = r.map_err(|e| Exit::Usage(format!("{}: {e}", path.display())))?;
            rows.push((i + 2, r));
            if rows.len() > MAX_ENTRIES_PER_ADD {
                break;
            }
        }
        rows
    };
    if rows.is_empty() {
        return Err(Exit::Usage(format!("{}: no entries", path.display())).into());
    }
    if rows.len() > MAX_ENTRIES_PER_ADD {
        return Err(Exit::Usage(format!(
            "{}: more than {MAX_ENTRIES_PER_ADD} entries; split the file (each import is all or none)",
            path.display()
        ))
        .into());
    }
    let base = path.parent().unwrap_or(Path::new("."));
    let mut out = Vec::with_capacity(rows.len());
    for (line, r) in rows {
        let at = format!("{} entry {line} ({})", path.display(), r.node_id);
        let mut e = pb::InventoryEntry {
            node_id: r.node_id,
            ek_cert_sha256: r.ek_cert_sha256,
            ek_public_sha256: r.ek_public_sha256,
            labels: match r.labels {
                Labels::Text(t) => parse_labels(&t, &at)?,
                Labels::Map(m) => m,
            }
            .into_iter()
            .collect(),
            ..Default::default()
        };
        let cert = match (r.ek_cert.is_empty(), r.ek_cert_pem.is_empty()) {
            (true, true) => None,
            (false, true) => Some(read_capped(&base.join(&r.ek_cert), MAX_CERT_BYTES)?),
            (true, false) => Some(r.ek_cert_pem.into_bytes()),
            (false, false) => {
                return Err(
                    Exit::Usage(format!("{at}: give ek_cert or ek_cert_pem, not both")).into(),
                )
            }
        };
        if let Some(c) = cert {
            if !e.ek_cert_sha256.is_empty() {
                return Err(Exit::Usage(format!(
                    "{at}: give the EK certificate or its SHA-256, not both"
                ))
                .into());
            }
            let (hash, subject) = cert_der(&c, &at)?;
            e.ek_cert_sha256 = hash;
            e.ek_subject = subject;
        }
        out.push(e);
    }
    Ok((out, digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(name);
        std::fs::write(&p, text).unwrap();
        (d, p)
    }

    #[test]
    fn csv_and_json_inventories_read_alike() {
        let h = "ab".repeat(32);
        let (_d, csv) = write(
            "inv.csv",
            &format!("node_id,ek_cert_sha256,ek_public_sha256,labels\nn1,{h},,rack=r1;class=gpu\nn2,,{h},\n"),
        );
        let (_e, json) = write(
            "inv.json",
            &format!(
                r#"[{{"node_id":"n1","ek_cert_sha256":"{h}","labels":{{"rack":"r1","class":"gpu"}}}},{{"node_id":"n2","ek_public_sha256":"{h}"}}]"#
            ),
        );
        let (a, _) = read_inventory(&csv).unwrap();
        let (b, _) = read_inventory(&json).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].labels.get("class").map(String::as_str), Some("gpu"));
        assert_eq!(a[1].ek_public_sha256, h);
    }

    #[test]
    fn a_bad_inventory_names_the_entry_and_sends_nothing() {
        for (name, text, want) in [
            ("a.csv", "node_id,ek_sha\nn1,ab\n", "ek_sha"),
            ("b.csv", "node_id,labels\nn1,rack\n", "n1"),
            ("c.csv", "node_id\n", "no entries"),
            ("d.json", "[{\"node\":\"n1\"}]", "node"),
            ("e.json", "{", "expected a sequence"),
            ("f.csv", "node_id,ek_cert\nn1,missing.pem\n", "missing.pem"),
        ] {
            let (_d, p) = write(name, text);
            let e = read_inventory(&p).unwrap_err().to_string();
            assert!(e.contains(want), "{name}: {e}");
        }
    }
}
