//! `policy generate`: one reference policy from the evidence of one or more
//! known-good nodes — evidence bundles, enrolled nodes' kept evidence, or
//! every enrolled node whose id matches a pattern. The policy passes each
//! sample; the values on which they differ are listed on stderr (see
//! `assay_core::policy::reference::generate_many`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use assay_core::policy::reference::{self, Difference, ReferenceError, Sample, MAX_SAMPLES};
use assay_core::policy::Policy;
use assay_verifier::store::{Logs, Storage};
use clap::Args;

use super::local::StoreArgs;
use super::output::out;
use super::Exit;

/// Write a reference policy from known-good nodes' evidence: bundles from
/// `assay-attestor collect`, or the evidence kept with enrolled nodes' newest
/// authentic verdicts. With several, the policy passes each of them and the
/// values on which they differ are listed.
#[derive(Args)]
#[command(group(
    clap::ArgGroup::new("source")
        .required(true)
        .multiple(true)
        .args(["from_evidence", "node", "nodes"])
))]
pub struct GenerateArgs {
    /// An evidence bundle (`assay-attestor collect`); repeat for several nodes.
    #[arg(long, value_name = "FILE")]
    pub from_evidence: Vec<PathBuf>,
    /// An enrolled node whose newest authentic evidence to use (read from the
    /// store); repeat for several.
    #[arg(long, value_name = "ID")]
    pub node: Vec<String>,
    /// Every enrolled node whose id matches this regular expression (anchored
    /// at both ends, as `[join.groups]` patterns are); nodes without kept
    /// authentic evidence are skipped with a warning.
    #[arg(long, value_name = "REGEX", conflicts_with = "group")]
    pub nodes: Option<String>,
    /// Every enrolled node of this `[join.groups]` group (its `nodes`
    /// pattern, read from the verifier's --config file).
    #[arg(long, value_name = "GROUP", requires = "config")]
    pub group: Option<String>,
    /// The verifier's configuration file, for --group.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub store: StoreArgs,
    /// The policy's name.
    #[arg(long, default_value = "reference", value_name = "NAME")]
    pub name: String,
    /// Write here [default: standard output]
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// One sample's evidence, owned.
struct Evidence {
    label: String,
    pcrs: Vec<(u32, Vec<u8>)>,
    logs: Logs,
}

/// Enrolled nodes read per store call while matching `--nodes`.
const PAGE: usize = 500;

pub fn generate_policy(args: GenerateArgs) -> anyhow::Result<()> {
    let mut args = args;
    if let Some(group) = &args.group {
        args.nodes = Some(group_pattern(group, args.config.as_deref())?);
    }
    if args.from_evidence.is_empty() && args.node.is_empty() && args.nodes.is_none() {
        return Err(Exit::Usage(
            "give at least one source: --from-evidence FILE, --node ID, --nodes REGEX or \
             --group GROUP"
                .into(),
        )
        .into());
    }
    let pattern = args
        .nodes
        .as_deref()
        .map(|p| {
            assay_verifier::join::groups::node_pattern(p).map_err(|e| {
                Exit::Usage(format!(
                    "--nodes: `{p}` is not a usable regular expression: {e}"
                ))
            })
        })
        .transpose()?;
    if args.from_evidence.len() + args.node.len() > MAX_SAMPLES {
        return Err(too_many(args.from_evidence.len() + args.node.len()));
    }

    let mut evidence = Vec::new();
    for path in &args.from_evidence {
        evidence.push(from_bundle(path)?);
    }
    if !args.node.is_empty() || pattern.is_some() {
        let store = args.store.open()?;
        // --node first, in the order given, then --nodes' matches in id order.
        let mut seen = BTreeSet::new();
        let named: Vec<&String> = args.node.iter().filter(|id| seen.insert(*id)).collect();
        let mut matched = Vec::new();
        if let Some(re) = &pattern {
            let mut after = String::new();
            loop {
                let page = store.list_nodes(&after, PAGE)?;
                for n in &page {
                    if re.is_match(&n.node_id) && !seen.contains(&n.node_id) {
                        matched.push(n.node_id.clone());
                    }
                }
                if evidence.len() + named.len() + matched.len() > MAX_SAMPLES {
                    return Err(too_many(evidence.len() + named.len() + matched.len()));
                }
                match page.last() {
                    // Stop on a short page, or on a store that does not move on.
                    Some(last) if page.len() == PAGE && last.node_id > after => {
                        after = last.node_id.clone();
                    }
                    _ => break,
                }
            }
            if matched.is_empty() {
                let none = format!(
                    "--nodes: no enrolled node in {} matches `{}`",
                    args.store.describe(),
                    args.nodes.as_deref().unwrap_or_default()
                );
                if named.is_empty() && args.from_evidence.is_empty() {
                    anyhow::bail!(none);
                }
                eprintln!("warning: {none}");
            }
        }
        for id in named {
            let e = from_store(store.as_ref(), id)?.with_context(|| {
                format!(
                    "node {id}: no authentic verdict with kept evidence in {} \
                     (it has not attested yet, or [evidence] retention dropped \
                     or never kept it)",
                    args.store.describe()
                )
            })?;
            evidence.push(e);
        }
        for id in &matched {
            match from_store(store.as_ref(), id)? {
                Some(e) => evidence.push(e),
                None => eprintln!(
                    "warning: node {id} matches --nodes but has no authentic verdict with kept \
                     evidence; skipped"
                ),
            }
        }
    }
    if evidence.is_empty() {
        anyhow::bail!("no evidence to generate a policy from (every matching node was skipped)");
    }

    eprintln!(
        "from {} sample{}:",
        evidence.len(),
        if evidence.len() == 1 { "" } else { "s" }
    );
    for e in &evidence {
        eprintln!("  {} ({})", e.label, carries(&e.logs));
    }
    let samples: Vec<Sample<'_>> = evidence
        .iter()
        .map(|e| Sample {
            label: &e.label,
            uefi_log: e.logs.uefi.as_deref(),
            ima_log: e.logs.ima.as_deref(),
            cel_log: e.logs.cel.as_deref(),
            pcrs: &e.pcrs,
        })
        .collect();
    let generated = match reference::generate_many(&args.name, &samples) {
        Ok(g) => g,
        Err(ReferenceError::NothingInCommon { differences }) => {
            print_differences(&differences);
            anyhow::bail!(
                "the samples agree on no claim: a policy passing all of them would judge \
                 nothing; generate one per kind of node"
            );
        }
        Err(e) => return Err(e.into()),
    };
    if samples.len() > 1 {
        if generated.differences.is_empty() {
            eprintln!("the samples agree on every claim");
        } else {
            print_differences(&generated.differences);
        }
    }
    // What we write must be a valid policy.
    Policy::parse("generated policy", &generated.text)?;
    match &args.out {
        Some(path) => {
            std::fs::write(path, &generated.text)
                .with_context(|| format!("writing {}", path.display()))?;
            eprintln!("wrote {}", path.display());
        }
        None => out!("{}", generated.text),
    }
    Ok(())
}

/// A `[join.groups]` group's `nodes` pattern, from the verifier's config file.
fn group_pattern(group: &str, config: Option<&Path>) -> anyhow::Result<String> {
    let path = config.ok_or_else(|| Exit::Usage("--group needs --config FILE".into()))?;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let file: assay_verifier::config::FileConfig =
        toml::from_str(&text).with_context(|| format!("{}", path.display()))?;
    let groups = file
        .join
        .groups()
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    groups
        .into_iter()
        .find(|g| g.name == group)
        .map(|g| g.nodes)
        .ok_or_else(|| {
            Exit::Usage(format!(
                "no group `{group}` in the [join.groups] of {}",
                path.display()
            ))
            .into()
        })
}

fn too_many(n: usize) -> anyhow::Error {
    Exit::Usage(format!(
        "{n} samples: at most {MAX_SAMPLES} are merged into one policy"
    ))
    .into()
}

fn print_differences(differences: &[Difference]) {
    eprintln!(
        "{} difference{} between the samples:",
        differences.len(),
        if differences.len() == 1 { "" } else { "s" }
    );
    for d in differences {
        eprintln!("  {d}");
    }
}

/// Which logs a sample carries, for people.
fn carries(logs: &Logs) -> String {
    let kinds: Vec<&str> = [
        (logs.uefi.is_some(), "UEFI log"),
        (logs.ima.is_some(), "IMA log"),
        (logs.cel.is_some(), "container log"),
    ]
    .into_iter()
    .filter_map(|(has, name)| has.then_some(name))
    .collect();
    if kinds.is_empty() {
        "PCR values only".to_string()
    } else {
        kinds.join(", ")
    }
}

fn from_bundle(path: &Path) -> anyhow::Result<Evidence> {
    let e = super::bundle::read_bundle(path)?
        .evidence
        .unwrap_or_default();
    Ok(Evidence {
        label: path.display().to_string(),
        pcrs: e
            .pcrs_sha256
            .into_iter()
            .map(|p| (p.index, p.digest))
            .collect(),
        logs: Logs {
            uefi: e.uefi_log,
            ima: e.ima_log,
            cel: e.cel_log,
        },
    })
}

/// The evidence kept with `node`'s newest authentic verdict, if any.
fn from_store(store: &dyn Storage, node: &str) -> anyhow::Result<Option<Evidence>> {
    let Some((rec, ev, logs)) = assay_verifier::store::latest_authentic_evidence(store, node)?
    else {
        return Ok(None);
    };
    let pcrs = ev
        .pcrs_sha256
        .iter()
        .map(|(i, d)| Ok((*i, hex::decode(d)?)))
        .collect::<Result<_, hex::FromHexError>>()
        .with_context(|| {
            format!(
                "node {node}: kept evidence (record {}): PCR values",
                rec.seq
            )
        })?;
    Ok(Some(Evidence {
        label: format!("node {node} (record {})", rec.seq),
        pcrs,
        logs,
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use clap::Parser as _;

    use super::GenerateArgs;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: GenerateArgs,
    }

    #[test]
    fn sources_repeat_and_one_is_required() {
        let c = Cli::try_parse_from([
            "x",
            "--from-evidence",
            "a.pb",
            "--from-evidence",
            "b.pb",
            "--node",
            "n1",
            "--node",
            "n2",
            "--nodes",
            "web-[0-9]+",
        ])
        .unwrap();
        assert_eq!(c.args.from_evidence.len(), 2);
        assert_eq!(c.args.node, ["n1", "n2"]);
        assert_eq!(c.args.nodes.as_deref(), Some("web-[0-9]+"));
        assert_eq!(c.args.name, "reference");
        // Today's forms still parse.
        Cli::try_parse_from(["x", "--from-evidence", "a.pb", "--out", "p.toml"]).unwrap();
        Cli::try_parse_from(["x", "--node", "n1", "--data-dir", "/d", "--name", "r"]).unwrap();
        let e = Cli::try_parse_from(["x", "--name", "r"]).err().unwrap();
        assert_eq!(e.kind(), clap::error::ErrorKind::MissingRequiredArgument);
    }
}
