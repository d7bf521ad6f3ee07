//! `verify-bundle FILE --policy P`: an evidence bundle judged offline, exactly
//! as the service would judge it (minus the nonce's single use, which needs
//! the store).

use std::path::PathBuf;

use anyhow::{bail, Context as _};
use assay_core::policy::Policy;
use assay_core::tpm::public::parse_tpm2b_public;
use assay_core::verdict::Verdict;
use assay_core::verify::{verify_quote, QuoteCheck, QuoteEvidence};
use assay_proto::v1 as pb;
use clap::Args;
use prost::Message as _;

use super::local::StoreArgs;
use super::output::{out, outln, Output};
use super::Exit;

#[derive(Args)]
pub struct VerifyBundleArgs {
    /// The bundle (`assay-attestor collect`).
    file: PathBuf,
    /// The policy to judge it under.
    #[arg(long, value_name = "FILE")]
    policy: PathBuf,
    /// The nonce the quote must carry (hex) [default: the bundle's own nonce,
    /// freshness not checked]
    #[arg(long, value_name = "HEX")]
    nonce: Option<String>,
    /// Take the node's enrolled AK from this store (--data-dir or --postgres);
    /// the AK in the bundle must be the same.
    #[command(flatten)]
    store: StoreArgs,
    /// Trust the AK inside the bundle without an enrollment (reference boots in a lab).
    #[arg(long, conflicts_with_all = ["data_dir", "postgres"])]
    trust_bundle_ak: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

pub fn run(a: VerifyBundleArgs) -> anyhow::Result<()> {
    let bundle = read_bundle(&a.file)?;
    let p = assay_verifier::files::read_policy(&a.policy)?;
    let nonce = a
        .nonce
        .map(|n| hex::decode(n.trim()))
        .transpose()
        .map_err(|e| Exit::Usage(format!("--nonce: not hex ({e})")))?;
    let ak = if a.store.given() {
        let node_id = bundle
            .evidence
            .as_ref()
            .map(|e| e.node_id.clone())
            .unwrap_or_default();
        let store = a.store.open()?;
        let node = store
            .node(&node_id)?
            .with_context(|| format!("node {node_id} is not enrolled in {}", a.store.describe()))?;
        AkSource::Enrolled(hex::decode(&node.ak_public)?)
    } else if a.trust_bundle_ak {
        AkSource::Bundle
    } else {
        return Err(Exit::Usage(
            "say which AK to trust: --data-dir DIR / --postgres URL (the node's enrolled AK) \
             or --trust-bundle-ak"
                .into(),
        )
        .into());
    };
    if nonce.is_none() {
        eprintln!("warning: no --nonce given: the quote's freshness is not checked");
    }
    let verdict = verify_bundle(&bundle, &p, nonce.as_deref(), &ak)?;
    match a.output {
        Output::Json => outln!("{}", serde_json::to_string_pretty(&verdict)?),
        Output::Text => out!("{}", verdict_text(&verdict, &p)),
    }
    if !verdict.passed {
        return Err(Exit::Quiet(3).into());
    }
    Ok(())
}

/// Largest bundle read (a quote, two logs and some certificates).
const MAX_BUNDLE_BYTES: u64 = 64 << 20;

/// Reads and decodes an evidence bundle.
pub fn read_bundle(path: &std::path::Path) -> anyhow::Result<pb::EvidenceBundle> {
    let bytes = assay_verifier::files::read_capped(path, MAX_BUNDLE_BYTES)?;
    let b = pb::EvidenceBundle::decode(bytes.as_slice())
        .with_context(|| format!("{}: not an Assay evidence bundle", path.display()))?;
    if b.version != 1 {
        bail!(
            "{}: bundle version {} (this verifier reads version 1)",
            path.display(),
            b.version
        );
    }
    if b.evidence.is_none() {
        bail!("{}: the bundle holds no evidence", path.display());
    }
    Ok(b)
}

/// Where the AK that verifies a bundle comes from.
enum AkSource {
    /// The AK a verifier enrolled for the node (credential activation proved it).
    Enrolled(Vec<u8>),
    /// The bundle's own AK, on the operator's word (reference boots in a lab).
    Bundle,
}

/// Verifies a bundle's evidence with the core, exactly as the service would
/// (minus nonce single-use, which needs the store).
fn verify_bundle(
    bundle: &pb::EvidenceBundle,
    policy: &Policy,
    expected_nonce: Option<&[u8]>,
    ak: &AkSource,
) -> anyhow::Result<Verdict> {
    let ev = bundle
        .evidence
        .as_ref()
        .context("the bundle holds no evidence")?;
    let ak_bytes = match ak {
        AkSource::Enrolled(b) => b.as_slice(),
        AkSource::Bundle => bundle.ak_public.as_slice(),
    };
    let ak = parse_tpm2b_public(ak_bytes).context("AK public area")?;
    let pcrs: Vec<(u32, Vec<u8>)> = ev
        .pcrs_sha256
        .iter()
        .map(|p| (p.index, p.digest.clone()))
        .collect();
    let check = QuoteCheck {
        ak: &ak,
        expected_nonce: expected_nonce.unwrap_or(&ev.nonce),
        previous_clock: None,
        policy,
        cache: None,
        ima_state: None,
    };
    let evidence = QuoteEvidence {
        attest: &ev.attest,
        signature: &ev.signature,
        pcrs_sha256: &pcrs,
        uefi_log: ev.uefi_log.as_deref(),
        ima_log: ev.ima_log.as_deref(),
        cel_log: ev.cel_log.as_deref(),
        ima_first_entry: 0,
    };
    Ok(verify_quote(&check, &evidence).verdict)
}

/// Prints a verdict for a person.
fn verdict_text(v: &Verdict, policy: &Policy) -> String {
    let mut out = format!(
        "verdict: {} under policy `{}`{} (sha256:{})\n",
        if v.passed { "PASS" } else { "FAIL" },
        policy.name,
        policy
            .version
            .as_ref()
            .map(|v| format!(" version {v}"))
            .unwrap_or_default(),
        v.policy_digest
    );
    for c in &v.claims {
        out.push_str(&format!("  {c}\n"));
    }
    out.push_str(&format!("evidence digest: sha256:{}\n", v.evidence_digest));
    out
}
