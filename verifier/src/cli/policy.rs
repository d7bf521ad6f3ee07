//! `policy validate | generate | explain | sign | verify-signature`, and the
//! verifier's named policies (`policies.rs`): `apply | list | show | diff |
//! rollback | retire | assign | test`.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use assay_proto::v1 as pb;
use clap::Subcommand;
use serde_json::json;

use super::output::{claim_json, outln, word, Output};
use super::remote::{answer, connect, ServerArgs};
use super::Exit;

#[derive(Subcommand)]
pub enum PolicyCmd {
    /// Check a policy file; prints its name, digest and PCR selection.
    Validate {
        /// The policy file (TOML; schema in policies/README.md).
        file: PathBuf,
    },
    /// Write a reference policy from known-good nodes' evidence: bundles from
    /// `assay-attestor collect`, or the evidence kept with enrolled nodes' newest
    /// authentic verdicts; with several, one policy passing each of them, and
    /// the values on which they differ.
    Generate(super::generate::GenerateArgs),
    /// Convert a Keylime runtime policy (JSON, Keylime 7.14; a DSSE envelope
    /// is unwrapped, its signature not checked) into an Assay policy with an
    /// `[ima]` section: digests become the allowlist, excludes are rewritten
    /// with the same meaning, keyrings and ima-buf become [ima.buffers],
    /// verification-keys [ima.keyrings.keylime]. Refuses what Keylime's schema
    /// refuses or Assay cannot say alike; prints, on standard error, every
    /// place where the meaning changes.
    ImportKeylime(super::keylime_import::ImportArgs),
    /// Sign a policy file with an operator's minisign secret key (`minisign -G`;
    /// encrypted or, with -W, not): writes a detached minisign signature that
    /// `verify-signature`, the verifier and `minisign -V` check. The password
    /// of an encrypted key comes from --password-file or the environment
    /// variable ASSAY_POLICY_KEY_PASSWORD, never from the command line.
    Sign {
        /// The policy file (it must be a valid policy).
        file: PathBuf,
        /// The minisign secret key file.
        #[arg(long, value_name = "SECRET_KEY_FILE")]
        key: PathBuf,
        /// Write the signature here [default: FILE.minisig]
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// The trusted comment, covered by the signature [default:
        /// timestamp:<unix seconds>\tfile:<file name>\thashed, as minisign writes]
        #[arg(long, value_name = "TEXT")]
        trusted_comment: Option<String>,
        /// A file holding the secret key's password (its first line); takes
        /// precedence over ASSAY_POLICY_KEY_PASSWORD.
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
    },
    /// Check a policy file's minisign signature against operator public keys,
    /// offline: prints the signing key's id and the trusted comment. Exit 0
    /// good, 3 refused.
    VerifySignature {
        /// The policy file.
        file: PathBuf,
        /// The signature file [default: FILE.minisig]
        #[arg(long, value_name = "FILE")]
        signature: Option<PathBuf>,
        /// A trusted minisign public key file (`minisign.pub`); repeat for several.
        #[arg(long = "key", value_name = "PUBKEY_FILE", required = true)]
        keys: Vec<PathBuf>,
    },
    /// Apply a policy file as a new version of a named policy on the verifier
    /// (operator role): it is in force for the next attestation on every
    /// replica. Its signature FILE.minisig is sent when it exists.
    Apply {
        /// The policy file.
        file: PathBuf,
        /// The policy's name in the verifier (`default` serves every node no
        /// assignment names).
        #[arg(long, value_name = "NAME")]
        name: String,
        /// Why (kept with the version and in the history).
        #[arg(long, default_value = "", value_name = "TEXT")]
        reason: String,
        /// The detached minisign signature [default: FILE.minisig, if it exists]
        #[arg(long, value_name = "FILE", conflicts_with = "unsigned")]
        signature: Option<PathBuf>,
        /// Send no signature even if FILE.minisig exists.
        #[arg(long)]
        unsigned: bool,
        /// Accept it alongside the current version (a rollout): nodes pass
        /// under either until one is retired (`policy retire NAME@VERSION`).
        #[arg(long)]
        alongside: bool,
        #[command(flatten)]
        server: ServerArgs,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// List the verifier's policies: every version with its status, and which
    /// node groups use which name.
    List {
        /// Only this name.
        name: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Print one version of a policy (NAME: the current one; NAME@VERSION).
    Show {
        /// The policy, NAME (its current version) or NAME@VERSION.
        #[arg(value_name = "NAME[@VERSION]")]
        reference: String,
        /// Only the policy's text (no header lines).
        #[arg(long)]
        text: bool,
        #[command(flatten)]
        server: ServerArgs,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// What changes from one policy to another, claim by claim. Each side is
    /// NAME@VERSION (or NAME, the current version) on the verifier, or a
    /// policy file.
    Diff {
        /// The first policy (NAME@VERSION, NAME or a file).
        #[arg(value_name = "FROM")]
        from: String,
        /// The second policy (NAME@VERSION, NAME or a file).
        #[arg(value_name = "TO")]
        to: String,
        #[command(flatten)]
        server: ServerArgs,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Make an earlier version current again (a new version with its text and
    /// signature).
    Rollback {
        /// The policy's name.
        name: String,
        /// The version to restore.
        #[arg(long, value_name = "VERSION")]
        to: u64,
        /// Why (kept with the version and in the history).
        #[arg(long, default_value = "", value_name = "TEXT")]
        reason: String,
        #[command(flatten)]
        server: ServerArgs,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// End a rollout: take NAME@VERSION (current or alongside) out; the other
    /// accepted version stays (becoming current if needed).
    Retire {
        /// The version to retire.
        #[arg(value_name = "NAME@VERSION")]
        reference: String,
        /// Why (kept with the version and in the history).
        #[arg(long, default_value = "", value_name = "TEXT")]
        reason: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// A node group uses a policy: GROUP is a [join.groups] group or
    /// label:KEY=VALUE (nodes whose registration carries that label); NAME
    /// `default` removes the assignment.
    Assign {
        /// A [join.groups] group, or label:KEY=VALUE.
        group: String,
        /// The policy's name (`default`: remove the assignment).
        name: String,
        /// Why (kept in the history).
        #[arg(long, default_value = "", value_name = "TEXT")]
        reason: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Dry run: judge a candidate policy on the evidence kept with each
    /// affected node's newest authentic verdict (nodes whose policy is
    /// --name); prints per node pass/fail and the failed claims. Nothing is
    /// written. Exit 0 when none would fail, 3 when some would.
    Test {
        /// The candidate policy file.
        file: PathBuf,
        /// The policy it would become a version of: its nodes are judged.
        #[arg(long, value_name = "NAME")]
        name: String,
        #[command(flatten)]
        server: ServerArgs,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
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
        PolicyCmd::Generate(args) => super::generate::generate_policy(args),
        PolicyCmd::ImportKeylime(args) => super::keylime_import::run(args),
        PolicyCmd::Explain {
            node,
            server,
            output,
        } => explain(&node, &server, output).await,
        PolicyCmd::Apply {
            file,
            name,
            reason,
            signature,
            unsigned,
            alongside,
            server,
            output,
        } => {
            super::policies::apply(
                super::policies::ApplyArgs {
                    file: &file,
                    name: &name,
                    reason: &reason,
                    signature,
                    unsigned,
                    alongside,
                },
                &server,
                output,
            )
            .await
        }
        PolicyCmd::List {
            name,
            server,
            output,
        } => super::policies::list(name.as_deref(), &server, output).await,
        PolicyCmd::Show {
            reference,
            text,
            server,
            output,
        } => super::policies::show(&reference, text, &server, output).await,
        PolicyCmd::Diff {
            from,
            to,
            server,
            output,
        } => super::policies::diff(&from, &to, &server, output).await,
        PolicyCmd::Rollback {
            name,
            to,
            reason,
            server,
            output,
        } => super::policies::rollback(&name, to, &reason, &server, output).await,
        PolicyCmd::Retire {
            reference,
            reason,
            server,
        } => super::policies::retire(&reference, &reason, &server).await,
        PolicyCmd::Assign {
            group,
            name,
            reason,
            server,
        } => super::policies::assign(&group, &name, &reason, &server).await,
        PolicyCmd::Test {
            file,
            name,
            server,
            output,
        } => super::policies::test(&file, &name, &server, output).await,
        PolicyCmd::Sign {
            file,
            key,
            output,
            trusted_comment,
            password_file,
        } => sign(
            &file,
            &key,
            output,
            trusted_comment,
            password_file.as_deref(),
        ),
        PolicyCmd::VerifySignature {
            file,
            signature,
            keys,
        } => verify_signature(&file, signature, &keys),
    }
}

/// The environment variable `policy sign` reads an encrypted key's password from.
const PASSWORD_ENV: &str = "ASSAY_POLICY_KEY_PASSWORD";

/// `FILE.minisig`, beside the file.
pub(super) fn default_signature_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".minisig");
    PathBuf::from(name)
}

fn sign(
    file: &Path,
    key: &Path,
    output: Option<PathBuf>,
    trusted_comment: Option<String>,
    password_file: Option<&Path>,
) -> anyhow::Result<()> {
    use assay_verifier::policy_signature as ps;
    let (policy, text) = assay_verifier::files::read_policy_with_text(file)?;
    let password = match password_file {
        Some(path) => {
            let bytes = assay_verifier::files::read_capped(path, ps::MAX_PASSWORD_BYTES as u64 + 2)
                .context("password file")?;
            let text = String::from_utf8(bytes)
                .map_err(|_| anyhow::anyhow!("password file {}: not UTF-8 text", path.display()))?;
            // Its first line, without the line break.
            Some(text.lines().next().unwrap_or_default().to_string())
        }
        None => match std::env::var(PASSWORD_ENV) {
            Ok(p) => Some(p),
            Err(std::env::VarError::NotPresent) => None,
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(Exit::Usage(format!("{PASSWORD_ENV} is not UTF-8")).into())
            }
        },
    };
    let trusted_comment = trusted_comment.unwrap_or_else(|| {
        let now = assay_verifier::clock::now_unix();
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        format!("timestamp:{now}\tfile:{name}\thashed")
    });
    let no_password = password.is_none();
    let signed = ps::sign(text.as_bytes(), key, password, Some(&trusted_comment)).map_err(|e| {
        if no_password && e.ends_with("no password was given") {
            anyhow::anyhow!("{e} (give it with --password-file FILE or {PASSWORD_ENV})")
        } else {
            anyhow::Error::msg(e)
        }
    })?;
    let output = output.unwrap_or_else(|| default_signature_path(file));
    if std::fs::canonicalize(&output).ok() == Some(std::fs::canonicalize(file)?) {
        return Err(Exit::Usage(format!(
            "--output {} is the policy file itself",
            output.display()
        ))
        .into());
    }
    std::fs::write(&output, &signed.minisig)
        .with_context(|| format!("writing {}", output.display()))?;
    outln!(
        "signed policy `{}` (sha256:{}) with key {}",
        policy.name,
        policy.digest_hex(),
        signed.key_id
    );
    outln!("wrote {}", output.display());
    Ok(())
}

fn verify_signature(
    file: &Path,
    signature: Option<PathBuf>,
    keys: &[PathBuf],
) -> anyhow::Result<()> {
    use assay_verifier::policy_signature as ps;
    let keys = ps::PolicyKeys::load(keys).map_err(anyhow::Error::msg)?;
    let cap = assay_core::policy::MAX_POLICY_BYTES as u64;
    let text = assay_verifier::files::read_capped(file, cap)
        .with_context(|| format!("policy {}", file.display()))?;
    let sig_path = signature.unwrap_or_else(|| default_signature_path(file));
    // At most one byte over the cap: `verify` refuses an oversized signature
    // as such (exit 3), as it refuses any other malformed one.
    let mut sig = Vec::new();
    std::fs::File::open(&sig_path)
        .and_then(|f| {
            use std::io::Read as _;
            f.take(ps::MAX_SIGNATURE_BYTES as u64 + 1)
                .read_to_end(&mut sig)
        })
        .with_context(|| format!("reading {}", sig_path.display()))?;
    let sig = String::from_utf8_lossy(&sig);
    let v = keys.verify(&text, &sig).map_err(|e| {
        Exit::Refused(format!(
            "{} (signature {}): {e}",
            file.display(),
            sig_path.display()
        ))
    })?;
    outln!("{}: good signature by key {}", file.display(), v.key_id);
    outln!("trusted comment: {}", v.trusted_comment);
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
                "policy_name": rec.policy_name, "policy_version": rec.policy_version,
                "policy_digest": rec.policy_digest,
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
        super::output::policy_ref(&rec.policy_name, rec.policy_version, &rec.policy_digest),
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
