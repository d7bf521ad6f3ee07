//! `policy validate | generate | explain`.

use std::path::PathBuf;

use anyhow::Context as _;
use assay_core::policy::Policy;
use assay_proto::v1 as pb;
use clap::Subcommand;
use serde_json::json;

use super::local::StoreArgs;
use super::output::{claim_json, out, outln, word, Output};
use super::remote::{answer, connect, ServerArgs};
use super::Exit;

#[derive(Subcommand)]
pub enum PolicyCmd {
    /// Check a policy file; prints its name, digest and PCR selection.
    Validate {
        /// The policy file (TOML; schema in policies/README.md).
        file: PathBuf,
    },
    /// Write a reference policy from a known-good node's evidence: a bundle from
    /// `assay-attestor collect`, or the evidence kept with an enrolled node's
    /// newest authentic verdict.
    #[command(group(clap::ArgGroup::new("source").required(true).args(["from_evidence", "node"])))]
    Generate {
        /// An evidence bundle (`assay-attestor collect`).
        #[arg(long, value_name = "FILE")]
        from_evidence: Option<PathBuf>,
        /// An enrolled node whose newest authentic evidence to use (read from the store).
        #[arg(long, value_name = "ID")]
        node: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
        /// The policy's name.
        #[arg(long, default_value = "reference", value_name = "NAME")]
        name: String,
        /// Write here [default: standard output]
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Show a node's last verdict claim by claim.
    Explain {
        /// The node id.
        node: String,
        #[command(flatten)]
        server: ServerArgs,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
}

pub async fn run(c: PolicyCmd) -> anyhow::Result<()> {
    match c {
        PolicyCmd::Validate { file } => {
            let p = assay_verifier::files::read_policy(&file)?;
            outln!("{}: valid policy `{}`", file.display(), p.name);
            outln!("digest: sha256:{}", p.digest_hex());
            outln!("quotes PCRs (sha256): {:?}", p.pcr_selection());
            Ok(())
        }
        PolicyCmd::Generate {
            from_evidence,
            node,
            store,
            name,
            out,
        } => generate(from_evidence, node, &store, &name, out),
        PolicyCmd::Explain {
            node,
            server,
            output,
        } => explain(&node, &server, output).await,
    }
}

fn generate(
    from_evidence: Option<PathBuf>,
    node: Option<String>,
    store: &StoreArgs,
    name: &str,
    out: Option<PathBuf>,
) -> anyhow::Result<()> {
    // PCR values, and the UEFI, IMA and CEL logs.
    let (pcrs, logs): (Vec<(u32, Vec<u8>)>, assay_verifier::store::Logs) =
        match (from_evidence, node) {
            (Some(path), _) => {
                let e = super::bundle::read_bundle(&path)?
                    .evidence
                    .unwrap_or_default();
                (
                    e.pcrs_sha256
                        .into_iter()
                        .map(|p| (p.index, p.digest))
                        .collect(),
                    assay_verifier::store::Logs {
                        uefi: e.uefi_log,
                        ima: e.ima_log,
                        cel: e.cel_log,
                    },
                )
            }
            (None, Some(node)) => {
                let s = store.open()?;
                let (rec, ev, logs) =
                    assay_verifier::store::latest_authentic_evidence(s.as_ref(), &node)?
                        .with_context(|| {
                            format!(
                                "node {node}: no authentic verdict with kept evidence in {} \
                                 (it has not attested yet, or [evidence] retention dropped \
                                 or never kept it)",
                                store.describe()
                            )
                        })?;
                eprintln!(
                    "from the evidence of record {} ({})",
                    rec.seq, rec.time_unix
                );
                let pcrs = ev
                    .pcrs_sha256
                    .iter()
                    .map(|(i, d)| Ok((*i, hex::decode(d)?)))
                    .collect::<Result<_, hex::FromHexError>>()
                    .context("kept evidence: PCR values")?;
                (pcrs, logs)
            }
            (None, None) => {
                return Err(Exit::Usage("give --from-evidence FILE or --node ID".into()).into())
            }
        };
    let text = assay_core::policy::reference::generate(
        name,
        logs.uefi.as_deref(),
        logs.ima.as_deref(),
        logs.cel.as_deref(),
        &pcrs,
    )?;
    // What we write must be a valid policy.
    Policy::parse("generated policy", &text)?;
    match out {
        Some(path) => {
            std::fs::write(&path, &text).with_context(|| format!("writing {}", path.display()))?;
            eprintln!("wrote {}", path.display());
        }
        None => out!("{text}"),
    }
    Ok(())
}

async fn explain(node: &str, server: &ServerArgs, output: Output) -> anyhow::Result<()> {
    let ch = connect(server).await?;
    let rec = pb::history_client::HistoryClient::new(ch)
        .query(pb::HistoryRequest {
            node_id: node.to_string(),
            limit: 1,
            verdict: "verdict".into(),
            ..Default::default()
        })
        .await
        .map_err(|s| answer("history", s))?
        .into_inner()
        .records
        .into_iter()
        .next()
        .with_context(|| format!("no verdict recorded for node {node}"))?;
    if output == Output::Json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "seq": rec.seq, "node_id": rec.node_id, "time_unix": rec.time_unix,
                "verdict": word(rec.passed),
                "policy_name": rec.policy_name, "policy_digest": rec.policy_digest,
                "claims": rec.claims.iter().map(claim_json).collect::<Vec<_>>(),
            }))?
        );
        return Ok(());
    }
    outln!(
        "node {} verdict #{} at {}: {} under policy {} (sha256:{})",
        rec.node_id,
        rec.seq,
        rec.time_unix,
        word(rec.passed),
        rec.policy_name,
        rec.policy_digest
    );
    for c in &rec.claims {
        outln!(
            "  {} {} ({}): expected {}, got {}",
            word(c.passed),
            c.id,
            c.location,
            c.expected,
            c.actual
        );
    }
    Ok(())
}
