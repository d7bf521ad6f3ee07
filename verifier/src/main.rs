//! `assay-verifier`: serve the attestation API, and the operator/auditor commands around it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use assay_core::policy::Policy;
use assay_proto::v1 as pb;
use assay_verifier::config::{Config, Overrides};
use assay_verifier::offline;
use clap::{Args, Parser, Subcommand};
use serde_json::json;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

/// Writes to stdout, ending the process quietly when stdout is a closed pipe
/// (`assay-verifier eventlog LOG | head`) instead of panicking as `print!` does.
fn emit(args: std::fmt::Arguments<'_>, newline: bool) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    let result = stdout.write_fmt(args).and_then(|()| {
        if newline {
            stdout.write_all(b"\n")
        } else {
            Ok(())
        }
    });
    if let Err(e) = result {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: writing to stdout: {e}");
        std::process::exit(1);
    }
}

macro_rules! out {
    ($($arg:tt)*) => { emit(format_args!($($arg)*), false) };
}

macro_rules! outln {
    () => { emit(format_args!(""), true) };
    ($($arg:tt)*) => { emit(format_args!($($arg)*), true) };
}

#[derive(Parser)]
#[command(
    name = "assay-verifier",
    version,
    about = "Assay verifier: checks TPM evidence against golden values and issues join tokens"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create TLS material (a private CA and a server certificate) for a new verifier.
    Init {
        /// Directory to write ca.pem, server.pem and server.key into.
        #[arg(long, default_value = "/var/lib/assay-verifier/tls")]
        dir: PathBuf,
        /// DNS names or IP addresses the server certificate is valid for.
        #[arg(long = "name", default_values_t = ["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()])]
        names: Vec<String>,
    },
    /// Run the verifier.
    Serve(ServeArgs),
    /// Golden-value policies.
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// Show the verdict history (most recent first).
    History {
        #[command(flatten)]
        server: ServerArgs,
        /// Only this node.
        #[arg(long)]
        node: Option<String>,
        /// Records at or after this time (unix seconds).
        #[arg(long)]
        from_unix: Option<i64>,
        /// Records at or before this time (unix seconds).
        #[arg(long)]
        to_unix: Option<i64>,
        /// pass, fail, verdict (either), stale, webhook, admin.
        #[arg(long)]
        verdict: Option<String>,
        /// Records under this policy (a prefix of its digest).
        #[arg(long)]
        policy_digest: Option<String>,
        /// Records in which this claim failed, e.g. pcr.sha256.7.
        #[arg(long)]
        failed_claim: Option<String>,
        /// Page: records older than this seq (printed as `next page:` by the previous one).
        #[arg(long)]
        before_seq: Option<u64>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[arg(long, value_enum, default_value_t = HistoryOutput::Table)]
        output: HistoryOutput,
        /// Same as --output json.
        #[arg(long)]
        json: bool,
    },
    /// Each node's standing at a moment: its last verdict (or stale mark) at or before it.
    Fleet {
        #[command(flatten)]
        server: ServerArgs,
        /// Unix seconds (default: now).
        #[arg(long)]
        at_unix: Option<i64>,
        #[arg(long, value_enum, default_value_t = HistoryOutput::Table)]
        output: HistoryOutput,
    },
    /// Issue a client certificate carrying a role, signed by the clients CA
    /// that `init` made (roles: operator, auditor, orchestrator, node).
    ClientCert {
        /// The directory `init` wrote (clients-ca.pem, clients-ca.key).
        #[arg(long, default_value = "/var/lib/assay-verifier/tls")]
        dir: PathBuf,
        #[arg(long)]
        role: String,
        /// For --role node: the node id the certificate may act as.
        #[arg(long)]
        node: Option<String>,
        /// The holder (the certificate's common name, recorded with admin actions).
        #[arg(long)]
        name: String,
        /// Output prefix (default <dir>/<name>): writes PREFIX.pem, PREFIX.key.
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long, default_value_t = 365)]
        days: u32,
    },
    /// Join tokens: verify, list, revoke, the JWKS (also `tokens`).
    #[command(subcommand, visible_alias = "tokens")]
    Token(TokenCmd),
    /// Enrolled nodes (operates on the data directory directly; stop the verifier first).
    #[command(subcommand)]
    Node(NodeCmd),
    /// Tamper evidence: export the history with its signed checkpoints, and
    /// re-check chain and signatures offline.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Print a UEFI event log (binary_bios_measurements), or replay it into PCRs.
    Eventlog {
        file: PathBuf,
        /// Print the replayed PCRs instead of the events.
        #[arg(long)]
        replay: bool,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Verify an evidence bundle (`assay-attestor collect`) against a policy, offline.
    /// Exit code 0 on PASS, 3 on FAIL.
    VerifyBundle {
        file: PathBuf,
        #[arg(long)]
        policy: PathBuf,
        /// The nonce the quote must carry (hex). Without it the bundle's own nonce is
        /// used and freshness is not checked.
        #[arg(long)]
        nonce: Option<String>,
        /// Take the node's enrolled AK from this verifier data directory (stop the
        /// verifier first); the AK in the bundle must be the same.
        #[arg(long, conflicts_with = "trust_bundle_ak")]
        data_dir: Option<PathBuf>,
        /// A PostgreSQL store instead of sled (`[storage] url` form).
        #[arg(long, env = "ASSAY_POSTGRES_URL")]
        postgres: Option<String>,
        /// Trust the AK inside the bundle without an enrollment (reference boots in a lab).
        #[arg(long)]
        trust_bundle_ak: bool,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
}

#[derive(Clone, Copy, clap::ValueEnum, PartialEq, Eq)]
enum Output {
    Text,
    Json,
}

#[derive(Subcommand)]
enum PolicyCmd {
    /// Check a policy file; prints its name, digest and PCR selection.
    Validate { file: PathBuf },
    /// Write a reference policy from a known-good node's evidence: a bundle from
    /// `assay-attestor collect`, or the last authentic evidence an enrolled node sent.
    Generate {
        /// An evidence bundle.
        #[arg(long, conflicts_with = "node")]
        from_evidence: Option<PathBuf>,
        /// An enrolled node whose last authentic evidence to use (needs --data-dir).
        #[arg(long, requires = "data_dir")]
        node: Option<String>,
        #[arg(long, env = "ASSAY_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// A PostgreSQL store instead of sled (`[storage] url` form).
        #[arg(long, env = "ASSAY_POSTGRES_URL")]
        postgres: Option<String>,
        /// The policy's name.
        #[arg(long, default_value = "reference")]
        name: String,
        /// Write here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Show a node's last verdict claim by claim.
    Explain {
        node: String,
        #[command(flatten)]
        server: ServerArgs,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Check a join token presented by a node, and consume it (tokens are single use).
    Verify {
        #[command(flatten)]
        server: ServerArgs,
        #[arg(long)]
        token: String,
        /// The node presenting the token.
        #[arg(long)]
        node: String,
        #[arg(long)]
        json: bool,
    },
    /// Print the JSON Web Key Set that verifies join tokens.
    Jwks {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List issued tokens by id (the SHA-256 of the token; tokens themselves are
    /// never stored). Unused ones unless --all.
    List {
        #[command(flatten)]
        server: ServerArgs,
        #[arg(long)]
        node: Option<String>,
        /// Also used, revoked and expired tokens.
        #[arg(long)]
        all: bool,
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// Revoke one unused token (--id, a prefix from `list`, or --token-file
    /// holding the token), or every unused token of a node and its
    /// orchestrator grants (--node).
    #[command(group(clap::ArgGroup::new("which").required(true).args(["id", "token_file", "node"])))]
    Revoke {
        #[command(flatten)]
        server: ServerArgs,
        #[arg(long)]
        id: Option<String>,
        /// A file holding the token (`-`: stdin); only its SHA-256 is sent.
        #[arg(long)]
        token_file: Option<PathBuf>,
        #[arg(long)]
        node: Option<String>,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum HistoryOutput {
    Table,
    Json,
    Jsonl,
}

#[derive(Subcommand)]
enum AuditCmd {
    /// Re-run the verification core on a record's kept evidence, under the
    /// policy it names; exit 0 if it reaches the recorded verdict, 1 if not.
    Reverify {
        #[command(flatten)]
        server: ServerArgs,
        /// The record's sequence number (`history`).
        seq: u64,
        #[arg(long)]
        json: bool,
    },
    /// Write the history (or a time range of it), the checkpoints and the JWKS
    /// to a JSON-lines file an auditor can take away.
    Export {
        #[command(flatten)]
        server: ServerArgs,
        #[arg(long)]
        out: PathBuf,
        /// First record at or after this time (default: the first record).
        #[arg(long)]
        from_unix: Option<i64>,
        /// Last record at or before this time (default: the newest).
        #[arg(long)]
        to_unix: Option<i64>,
    },
    /// Re-check the hash chain and the checkpoint signatures, naming the first
    /// broken record. Exit 0 intact, 1 broken.
    #[command(group(clap::ArgGroup::new("source").required(true).multiple(true).args(["from_export", "data_dir", "postgres"])))]
    Verify {
        /// A file from `audit export`.
        #[arg(long, conflicts_with_all = ["data_dir", "postgres"])]
        from_export: Option<PathBuf>,
        /// The verifier's data directory (stop the verifier first: sled is
        /// single-process); with --postgres, only its signing key is read.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// The PostgreSQL store the verifier replicas share (`[storage] url` form);
        /// give --jwks or --data-dir for the keys.
        #[arg(long, env = "ASSAY_POSTGRES_URL")]
        postgres: Option<String>,
        /// The verifier's JWKS (`assay-verifier token jwks`), obtained
        /// independently; default: the one in the export / the data directory's key.
        #[arg(long)]
        jwks: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum NodeCmd {
    /// Forget a node (e.g. after a TPM replacement) so it can enroll again.
    Remove {
        node: String,
        #[arg(long, env = "ASSAY_DATA_DIR", default_value = assay_verifier::config::DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
        /// A PostgreSQL store instead of sled (`[storage] url` form).
        #[arg(long, env = "ASSAY_POSTGRES_URL")]
        postgres: Option<String>,
    },
}

#[derive(Args)]
struct ServerArgs {
    /// Verifier address.
    #[arg(long, env = "ASSAY_VERIFIER", default_value = "https://127.0.0.1:7443")]
    server: String,
    /// CA certificate (PEM) that signed the verifier's TLS certificate.
    #[arg(long, env = "ASSAY_CA")]
    ca: PathBuf,
    /// Client certificate carrying your role (`assay-verifier client-cert`).
    #[arg(long, env = "ASSAY_CLIENT_CERT", requires = "key")]
    cert: Option<PathBuf>,
    /// Its private key.
    #[arg(long, env = "ASSAY_CLIENT_KEY", requires = "cert")]
    key: Option<PathBuf>,
}

#[derive(Args)]
struct ServeArgs {
    /// TOML config file (keys: listen, data_dir, policy, nonce_ttl_secs, token_ttl_secs,
    /// enrollment_ttl_secs, stale_after_secs, [tls] cert/key/client_ca/no_client_auth, [trust]
    /// ek_roots/ek_intermediates, [join], [webhook] url/ca; see README.md).
    #[arg(long, env = "ASSAY_CONFIG")]
    config: Option<PathBuf>,
    #[arg(long, env = "ASSAY_LISTEN")]
    listen: Option<std::net::SocketAddr>,
    #[arg(long, env = "ASSAY_DATA_DIR")]
    data_dir: Option<PathBuf>,
    #[arg(long, env = "ASSAY_POLICY")]
    policy: Option<PathBuf>,
    #[arg(long, env = "ASSAY_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    #[arg(long, env = "ASSAY_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// CA of role-carrying client certificates (default <data-dir>/tls/clients-ca.pem).
    #[arg(long, env = "ASSAY_CLIENT_CA")]
    client_ca: Option<PathBuf>,
    /// PEM file of a trusted EK root CA (repeatable).
    #[arg(long = "ek-root", env = "ASSAY_EK_ROOTS", value_delimiter = ',')]
    ek_roots: Vec<PathBuf>,
    /// PEM file of an EK intermediate CA (repeatable).
    #[arg(
        long = "ek-intermediate",
        env = "ASSAY_EK_INTERMEDIATES",
        value_delimiter = ','
    )]
    ek_intermediates: Vec<PathBuf>,
    #[arg(long, env = "ASSAY_NONCE_TTL_SECS")]
    nonce_ttl_secs: Option<u64>,
    #[arg(long, env = "ASSAY_TOKEN_TTL_SECS")]
    token_ttl_secs: Option<u64>,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ASSAY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<NotTrusted>() => ExitCode::from(3),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The evidence was judged and failed: exit code 3, the verdict already printed.
#[derive(Debug, thiserror::Error)]
#[error("verdict: FAIL")]
struct NotTrusted;

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        Cmd::Init { dir, names } => {
            assay_verifier::tls::init_tls(&dir, &names)?;
            outln!(
                "wrote {0}/ca.pem, {0}/server.pem, {0}/server.key, {0}/clients-ca.pem, {0}/clients-ca.key",
                dir.display()
            );
            outln!("give {}/ca.pem to attestors (--ca)", dir.display());
            outln!(
                "make role certificates with `assay-verifier client-cert --dir {} --role operator|auditor|orchestrator --name NAME`",
                dir.display()
            );
        }
        Cmd::ClientCert {
            dir,
            role,
            node,
            name,
            out,
            days,
        } => {
            let uri = assay_verifier::roles::san_uri(&role, node.as_deref())
                .map_err(anyhow::Error::msg)?;
            let out = out.unwrap_or_else(|| dir.join(&name));
            assay_verifier::tls::client_cert(&dir, &name, &uri, days, &out)?;
            outln!(
                "wrote {0}.pem and {0}.key ({uri}, valid {days} days): use them as --cert/--key (ASSAY_CLIENT_CERT/ASSAY_CLIENT_KEY)",
                out.display()
            );
        }
        Cmd::Serve(a) => {
            let overrides = Overrides {
                listen: a.listen,
                data_dir: a.data_dir,
                policy: a.policy,
                tls_cert: a.tls_cert,
                tls_key: a.tls_key,
                client_ca: a.client_ca,
                ek_roots: a.ek_roots,
                ek_intermediates: a.ek_intermediates,
                nonce_ttl_secs: a.nonce_ttl_secs,
                token_ttl_secs: a.token_ttl_secs,
            };
            let config = Config::load(a.config.as_deref(), overrides)?;
            let verifier = assay_verifier::server::build(config)?;
            assay_verifier::server::serve(verifier).await?;
        }
        Cmd::Policy(PolicyCmd::Validate { file }) => {
            let p = assay_verifier::files::read_policy(&file)?;
            outln!("{}: valid policy `{}`", file.display(), p.name);
            outln!("digest: sha256:{}", p.digest_hex());
            outln!("quotes PCRs (sha256): {:?}", p.pcr_selection());
        }
        Cmd::Policy(PolicyCmd::Generate {
            from_evidence,
            node,
            data_dir,
            postgres,
            name,
            out,
        }) => {
            // PCR values, and the [UEFI, IMA, CEL] logs.
            let (pcrs, logs): (Vec<(u32, Vec<u8>)>, assay_verifier::store::Logs) =
                match (from_evidence, node, data_dir) {
                    (Some(path), _, _) => {
                        let e = offline::read_bundle(&path)?.evidence.unwrap_or_default();
                        (
                            e.pcrs_sha256
                                .into_iter()
                                .map(|p| (p.index, p.digest))
                                .collect(),
                            [e.uefi_log, e.ima_log, e.cel_log],
                        )
                    }
                    (None, Some(node), Some(dir)) => {
                        let store = offline_store(&dir, postgres)?;
                        let (rec, ev, logs) = assay_verifier::store::latest_authentic_evidence(
                            store.as_ref(),
                            &node,
                        )?
                        .with_context(|| {
                            format!(
                                "node {node}: no authentic verdict with kept evidence \
                                         (it has not attested yet, or [evidence] retention \
                                         dropped or never kept it)"
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
                    _ => bail!("give --from-evidence BUNDLE, or --node NODE with --data-dir DIR"),
                };
            let [uefi, ima, cel] = logs;
            let text = offline::generate_policy(
                &name,
                uefi.as_deref(),
                ima.as_deref(),
                cel.as_deref(),
                &pcrs,
            )?;
            // What we write must be a valid policy.
            Policy::parse("generated policy", &text)?;
            match out {
                Some(path) => {
                    std::fs::write(&path, &text)
                        .with_context(|| format!("writing {}", path.display()))?;
                    eprintln!("wrote {}", path.display());
                }
                None => out!("{text}"),
            }
        }
        Cmd::Policy(PolicyCmd::Explain {
            node,
            server,
            output,
        }) => {
            let ch = connect(&server).await?;
            let rec = pb::history_client::HistoryClient::new(ch)
                .query(pb::HistoryRequest {
                    node_id: node.clone(),
                    limit: 1,
                    verdict: "verdict".into(),
                    ..Default::default()
                })
                .await
                .map_err(|s| anyhow::anyhow!("{}", s.message()))?
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
                        "verdict": if rec.passed { "PASS" } else { "FAIL" },
                        "policy_name": rec.policy_name, "policy_digest": rec.policy_digest,
                        "claims": rec.claims.iter().map(claim_json).collect::<Vec<_>>(),
                    }))?
                );
            } else {
                outln!(
                    "node {} verdict #{} at {}: {} under policy {} (sha256:{})",
                    rec.node_id,
                    rec.seq,
                    rec.time_unix,
                    if rec.passed { "PASS" } else { "FAIL" },
                    rec.policy_name,
                    rec.policy_digest
                );
                for c in &rec.claims {
                    outln!(
                        "  {} {} ({}): expected {}, got {}",
                        if c.passed { "PASS" } else { "FAIL" },
                        c.id,
                        c.location,
                        c.expected,
                        c.actual
                    );
                }
            }
        }
        Cmd::Eventlog {
            file,
            replay,
            output,
        } => {
            let bytes = assay_verifier::files::read_capped(&file, 64 << 20)?;
            let log = assay_core::eventlog::uefi::parse(&bytes, &Default::default())
                .with_context(|| format!("{}", file.display()))?;
            match (replay, output) {
                (true, Output::Json) => outln!(
                    "{}",
                    serde_json::to_string_pretty(&offline::replay_json(&log))?
                ),
                (true, Output::Text) => {
                    let v = offline::replay_json(&log);
                    for (bank, pcrs) in v["pcrs"].as_object().into_iter().flatten() {
                        outln!("{bank}:");
                        let mut pcrs: Vec<(u32, &serde_json::Value)> = pcrs
                            .as_object()
                            .into_iter()
                            .flatten()
                            .filter_map(|(k, v)| Some((k.parse().ok()?, v)))
                            .collect();
                        pcrs.sort_by_key(|(k, _)| *k);
                        for (i, value) in pcrs {
                            outln!("  {i:<2} : 0x{}", value.as_str().unwrap_or_default());
                        }
                    }
                }
                (false, Output::Json) => outln!(
                    "{}",
                    serde_json::to_string_pretty(&offline::eventlog_json(&log))?
                ),
                (false, Output::Text) => out!("{}", offline::eventlog_text(&log)),
            }
        }
        Cmd::VerifyBundle {
            file,
            policy,
            nonce,
            data_dir,
            postgres,
            trust_bundle_ak,
            output,
        } => {
            let bundle = offline::read_bundle(&file)?;
            let p = assay_verifier::files::read_policy(&policy)?;
            let nonce = nonce
                .map(|n| hex::decode(n.trim()))
                .transpose()
                .context("--nonce: not hex")?;
            let ak = match (data_dir, trust_bundle_ak) {
                (Some(dir), _) => {
                    let node_id = &bundle.evidence.as_ref().map(|e| e.node_id.clone()).unwrap_or_default();
                    let store = offline_store(&dir, postgres)?;
                    let node = store.node(node_id)?.with_context(|| format!("node {node_id} is not enrolled in {}", dir.display()))?;
                    offline::AkSource::Enrolled(hex::decode(&node.ak_public)?)
                }
                (None, true) => offline::AkSource::Bundle,
                (None, false) => bail!("say which AK to trust: --data-dir DIR (the node's enrolled AK) or --trust-bundle-ak"),
            };
            if nonce.is_none() {
                eprintln!("warning: no --nonce given: the quote's freshness is not checked");
            }
            let verdict = offline::verify_bundle(&bundle, &p, nonce.as_deref(), &ak)?;
            match output {
                Output::Json => outln!("{}", serde_json::to_string_pretty(&verdict)?),
                Output::Text => out!("{}", offline::verdict_text(&verdict, &p)),
            }
            if !verdict.passed {
                return Err(NotTrusted.into());
            }
        }
        Cmd::History {
            server,
            node,
            from_unix,
            to_unix,
            verdict,
            policy_digest,
            failed_claim,
            before_seq,
            limit,
            output,
            json,
        } => {
            let ch = connect(&server).await?;
            let mut c = pb::history_client::HistoryClient::new(ch);
            let r = c
                .query(pb::HistoryRequest {
                    node_id: node.unwrap_or_default(),
                    limit,
                    from_unix: from_unix.unwrap_or(0),
                    to_unix: to_unix.unwrap_or(0),
                    verdict: verdict.unwrap_or_default(),
                    policy_digest: policy_digest.unwrap_or_default(),
                    failed_claim: failed_claim.unwrap_or_default(),
                    before_seq: before_seq.unwrap_or(0),
                })
                .await
                .map_err(|s| anyhow::anyhow!("{}", s.message()))?
                .into_inner();
            let recs = r.records;
            match if json { HistoryOutput::Json } else { output } {
                HistoryOutput::Json => outln!(
                    "{}",
                    serde_json::to_string_pretty(
                        &recs.iter().map(record_json).collect::<Vec<_>>()
                    )?
                ),
                HistoryOutput::Jsonl => {
                    for rec in &recs {
                        outln!("{}", record_json(rec));
                    }
                }
                HistoryOutput::Table => {
                    print_history(&recs);
                    if r.next_before_seq != 0 {
                        outln!("next page: --before-seq {}", r.next_before_seq);
                    }
                }
            }
        }
        Cmd::Fleet {
            server,
            at_unix,
            output,
        } => {
            let ch = connect(&server).await?;
            let nodes = pb::history_client::HistoryClient::new(ch)
                .fleet(pb::FleetRequest {
                    at_unix: at_unix.unwrap_or(0),
                })
                .await
                .map_err(|s| anyhow::anyhow!("{}", s.message()))?
                .into_inner()
                .nodes;
            let j = |n: &pb::FleetEntry| {
                serde_json::json!({"node_id": n.node_id, "state": n.state, "seq": n.seq,
                    "time_unix": n.time_unix, "policy_name": n.policy_name, "policy_digest": n.policy_digest})
            };
            match output {
                HistoryOutput::Json => outln!(
                    "{}",
                    serde_json::to_string_pretty(&nodes.iter().map(j).collect::<Vec<_>>())?
                ),
                HistoryOutput::Jsonl => {
                    for n in &nodes {
                        outln!("{}", j(n));
                    }
                }
                HistoryOutput::Table => {
                    outln!(
                        "{:<24}  {:<8}  {:>6}  {:<12}  policy",
                        "node",
                        "state",
                        "seq",
                        "time_unix"
                    );
                    for n in &nodes {
                        outln!(
                            "{:<24}  {:<8}  {:>6}  {:<12}  {}@{}",
                            n.node_id,
                            n.state,
                            n.seq,
                            n.time_unix,
                            n.policy_name,
                            n.policy_digest.get(..8).unwrap_or_default()
                        );
                    }
                }
            }
        }
        Cmd::Token(TokenCmd::Verify {
            server,
            token,
            node,
            json,
        }) => {
            let ch = connect(&server).await?;
            let mut c = pb::tokens_client::TokensClient::new(ch);
            match c
                .redeem(pb::RedeemRequest {
                    token,
                    node_id: node,
                })
                .await
            {
                Ok(r) => {
                    let r = r.into_inner();
                    if json {
                        outln!(
                            "{}",
                            serde_json::json!({"valid": true, "node_id": r.node_id, "ak_name": r.ak_name, "expires_unix": r.expires_unix})
                        );
                    } else {
                        outln!(
                            "valid: token issued to node {} (AK {}), expires at {}; now consumed",
                            r.node_id,
                            r.ak_name,
                            r.expires_unix
                        );
                    }
                }
                Err(s) => {
                    if json {
                        outln!(
                            "{}",
                            serde_json::json!({"valid": false, "reason": s.message()})
                        );
                    }
                    bail!("{}", s.message());
                }
            }
        }
        Cmd::Token(TokenCmd::List {
            server,
            node,
            all,
            limit,
            json,
        }) => {
            let ch = connect(&server).await?;
            let toks = pb::tokens_client::TokensClient::new(ch)
                .list(pb::ListTokensRequest {
                    node_id: node.unwrap_or_default(),
                    all,
                    limit,
                })
                .await
                .map_err(|s| anyhow::anyhow!("{}", s.message()))?
                .into_inner()
                .tokens;
            if json {
                let v: Vec<_> = toks
                    .iter()
                    .map(|t| {
                        serde_json::json!({
                            "id": t.id, "node_id": t.node_id, "ak_name": t.ak_name,
                            "issued_unix": t.issued_unix, "expires_unix": t.expires_unix,
                            "state": t.state,
                        })
                    })
                    .collect();
                outln!("{}", serde_json::to_string_pretty(&v)?);
            } else if toks.is_empty() {
                outln!(
                    "no tokens{}",
                    if all {
                        ""
                    } else {
                        " unused (--all shows every one)"
                    }
                );
            } else {
                outln!(
                    "{:<16}  {:<8}  {:<12}  {:<12}  NODE",
                    "ID",
                    "STATE",
                    "ISSUED_UNIX",
                    "EXPIRES_UNIX"
                );
                for t in &toks {
                    outln!(
                        "{:<16}  {:<8}  {:<12}  {:<12}  {}",
                        t.id.get(..16).unwrap_or(&t.id),
                        t.state,
                        t.issued_unix,
                        t.expires_unix,
                        t.node_id
                    );
                }
            }
        }
        Cmd::Token(TokenCmd::Revoke {
            server,
            id,
            token_file,
            node,
        }) => {
            let id = match (id, token_file) {
                (Some(id), _) => id,
                (None, Some(f)) => {
                    use std::io::Read as _;
                    let mut text = String::new();
                    let r: Box<dyn std::io::Read> = if f.as_os_str() == "-" {
                        Box::new(std::io::stdin())
                    } else {
                        Box::new(std::fs::File::open(&f).with_context(|| f.display().to_string())?)
                    };
                    r.take(64 * 1024)
                        .read_to_string(&mut text)
                        .with_context(|| format!("reading the token from {}", f.display()))?;
                    assay_verifier::store::token_id(text.trim())
                }
                (None, None) => String::new(),
            };
            let ch = connect(&server).await?;
            let r = pb::tokens_client::TokensClient::new(ch)
                .revoke(pb::RevokeTokensRequest {
                    id,
                    node_id: node.unwrap_or_default(),
                })
                .await
                .map_err(|s| anyhow::anyhow!("{}", s.message()))?
                .into_inner();
            outln!("{} token(s) revoked", r.revoked);
            for a in r.actions {
                outln!("{a}");
            }
        }
        Cmd::Token(TokenCmd::Jwks { server }) => {
            let ch = connect(&server).await?;
            let r = pb::tokens_client::TokensClient::new(ch)
                .jwks(pb::JwksRequest {})
                .await
                .map_err(|s| anyhow::anyhow!("{}", s.message()))?;
            outln!("{}", r.into_inner().jwks_json);
        }
        Cmd::Audit(AuditCmd::Reverify { server, seq, json }) => {
            let ch = connect(&server).await?;
            let r = pb::history_client::HistoryClient::new(ch)
                .reverify(pb::ReverifyRequest { seq })
                .await
                .map_err(|s| anyhow::anyhow!("{}", s.message()))?
                .into_inner();
            let word = |p: bool| if p { "PASS" } else { "FAIL" };
            if json {
                outln!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "seq": r.seq, "node_id": r.node_id, "policy_name": r.policy_name,
                        "policy_digest": r.policy_digest,
                        "recorded": word(r.recorded_passed), "reverified": word(r.reverified_passed),
                        "same": r.differences.is_empty(), "differences": r.differences,
                        "not_rechecked": r.not_rechecked,
                        "claims": r.claims.iter().map(claim_json).collect::<Vec<_>>(),
                    }))?
                );
            } else {
                outln!(
                    "record {} (node {}, policy {}@{}): recorded {}, reverified {}",
                    r.seq,
                    r.node_id,
                    r.policy_name,
                    r.policy_digest.get(..8).unwrap_or_default(),
                    word(r.recorded_passed),
                    word(r.reverified_passed)
                );
                outln!("taken as recorded: {}", r.not_rechecked.join(", "));
                if r.differences.is_empty() {
                    outln!("same verdict, claim by claim ({} claims)", r.claims.len());
                } else {
                    for d in &r.differences {
                        outln!("DIFFERS: {d}");
                    }
                }
            }
            if !r.differences.is_empty() {
                std::process::exit(1);
            }
        }
        Cmd::Audit(AuditCmd::Export {
            server,
            out,
            from_unix,
            to_unix,
        }) => {
            use std::io::Write as _;
            let ch = connect(&server).await?;
            let mut c = pb::history_client::HistoryClient::new(ch);
            let tmp = out.with_extension("partial");
            let mut f = std::io::BufWriter::new(
                std::fs::File::create(&tmp).with_context(|| format!("--out {}", tmp.display()))?,
            );
            let (mut from_seq, mut records, mut checkpoints, mut jwks_written) =
                (0, 0u64, 0u64, false);
            loop {
                let page = c
                    .export(pb::ExportRequest {
                        from_seq,
                        from_unix: if from_seq == 0 {
                            from_unix.unwrap_or(0)
                        } else {
                            0
                        },
                        to_unix: to_unix.unwrap_or(0),
                        limit: 0,
                    })
                    .await
                    .map_err(|s| anyhow::anyhow!("{}", s.message()))?
                    .into_inner();
                if !jwks_written {
                    let jwks: serde_json::Value = serde_json::from_str(&page.jwks_json)?;
                    writeln!(f, "{}", serde_json::json!({"type": "jwks", "jwks": jwks}))?;
                    jwks_written = true;
                }
                for r in &page.records_json {
                    let v: serde_json::Value = serde_json::from_str(r)?;
                    writeln!(f, "{}", serde_json::json!({"type": "record", "record": v}))?;
                    records += 1;
                }
                for cp in &page.checkpoints_json {
                    let v: serde_json::Value = serde_json::from_str(cp)?;
                    writeln!(
                        f,
                        "{}",
                        serde_json::json!({"type": "checkpoint", "checkpoint": v})
                    )?;
                    checkpoints += 1;
                }
                if page.next_seq == 0 {
                    break;
                }
                from_seq = page.next_seq;
            }
            f.flush()?;
            f.into_inner()?.sync_all()?;
            std::fs::rename(&tmp, &out)?;
            outln!(
                "wrote {records} records and {checkpoints} checkpoints to {}",
                out.display()
            );
        }
        Cmd::Audit(AuditCmd::Verify {
            from_export,
            data_dir,
            postgres,
            jwks,
            json,
        }) => {
            let pinned = match &jwks {
                Some(p) => Some(serde_json::from_slice::<serde_json::Value>(
                    &std::fs::read(p).with_context(|| format!("--jwks {}", p.display()))?,
                )?),
                None => None,
            };
            let (report, source) = match (from_export, data_dir, postgres) {
                (Some(path), _, _) => {
                    let mut e = offline::read_export(&path)?;
                    let keys = pinned.clone().unwrap_or(e.jwks);
                    let report =
                        assay_verifier::audit::verify(&mut e.records, &e.checkpoints, &keys);
                    if let Some(err) = e.records.error {
                        bail!("{}: {err}", path.display());
                    }
                    (report, format!("export {}", path.display()))
                }
                (None, dir, postgres) => {
                    let source = match (&postgres, &dir) {
                        (Some(_), _) => "PostgreSQL store".to_string(),
                        (None, d) => format!(
                            "data directory {}",
                            d.as_deref().unwrap_or(Path::new(".")).display()
                        ),
                    };
                    let store = match (&postgres, &dir) {
                        (Some(url), _) => open_postgres(url)?,
                        (None, d) => offline_store(d.as_deref().unwrap_or(Path::new(".")), None)?,
                    };
                    let keys = match pinned.clone() {
                        Some(k) => k,
                        None => {
                            let Some(dir) = &dir else {
                                bail!("give --jwks (or --data-dir for the verifier's key)");
                            };
                            let key = dir.join("token-signing-key.pem");
                            anyhow::ensure!(
                                key.exists(),
                                "{} is missing: give --jwks",
                                key.display()
                            );
                            serde_json::from_str(
                                &assay_verifier::token::TokenSigner::load_or_create(&key)?
                                    .jwks_json(),
                            )?
                        }
                    };
                    let checkpoints = store.checkpoints()?;
                    let mut err = None;
                    let recs = store.history_iter().map_while(|r| match r {
                        Ok(f) => Some(f),
                        Err(e) => {
                            err = Some(e);
                            None
                        }
                    });
                    let report = assay_verifier::audit::verify(recs, &checkpoints, &keys);
                    if let Some(e) = err {
                        bail!("reading the history: {e}");
                    }
                    (report, source)
                }
            };
            if json {
                outln!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                outln!(
                    "{source}: {} records ({}..={}), {} checkpoints verified (signed through record {})",
                    report.records,
                    report.first_seq,
                    report.last_seq,
                    report.checkpoints_verified,
                    report.checkpointed_through
                );
                for n in &report.notes {
                    outln!("note: {n}");
                }
                if pinned.is_none() {
                    outln!("note: checked against the key that came with the history; pin the verifier's JWKS with --jwks");
                }
                match &report.broken {
                    None => outln!("intact"),
                    Some(b) => outln!("BROKEN at record {}: {}", b.seq, b.reason),
                }
            }
            if report.broken.is_some() {
                std::process::exit(1);
            }
        }
        Cmd::Node(NodeCmd::Remove {
            node,
            data_dir,
            postgres,
        }) => {
            let store = offline_store(&data_dir, postgres)?;
            if store.remove_node(&node)? {
                outln!("node {node} removed; it may enroll again");
            } else {
                bail!("node {node} is not enrolled");
            }
        }
    }
    Ok(())
}

/// The store offline commands read: PostgreSQL when a URL is given, else
/// sled in `data_dir` (the verifier must be stopped: sled is single-process).
fn offline_store(
    data_dir: &Path,
    postgres: Option<String>,
) -> anyhow::Result<Box<dyn assay_verifier::store::Storage>> {
    match postgres {
        Some(url) => open_postgres(&url),
        None => Ok(Box::new(assay_verifier::store::SledStore::open(
            &data_dir.join("db"),
        )?)),
    }
}

fn open_postgres(url: &str) -> anyhow::Result<Box<dyn assay_verifier::store::Storage>> {
    Ok(Box::new(assay_verifier::store::PgStore::open(
        &assay_verifier::store::PgConfig {
            url: url.to_string(),
            password_file: None,
            pool_size: 2,
        },
    )?))
}

async fn connect(a: &ServerArgs) -> anyhow::Result<Channel> {
    let ca = std::fs::read(&a.ca).with_context(|| format!("--ca: reading {}", a.ca.display()))?;
    let uri: tonic::transport::Uri = a
        .server
        .parse()
        .with_context(|| format!("--server {}", a.server))?;
    let host = uri
        .host()
        .unwrap_or("localhost")
        .trim_matches(['[', ']'])
        .to_string();
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name(host);
    if let (Some(c), Some(k)) = (&a.cert, &a.key) {
        let cert = std::fs::read(c).with_context(|| format!("--cert: reading {}", c.display()))?;
        let key = std::fs::read(k).with_context(|| format!("--key: reading {}", k.display()))?;
        tls = tls.identity(tonic::transport::Identity::from_pem(cert, key));
    }
    Channel::builder(uri)
        .tls_config(tls)?
        .connect_timeout(std::time::Duration::from_secs(5))
        .timeout(std::time::Duration::from_secs(30))
        .connect()
        .await
        .with_context(|| format!("connecting to the verifier at {}", a.server))
}

fn claim_json(c: &pb::Claim) -> serde_json::Value {
    serde_json::json!({"id": c.id, "passed": c.passed, "expected": c.expected, "actual": c.actual, "location": c.location})
}

/// What a history record says, in one word: a verdict's PASS/FAIL, STALE for a
/// node that missed its window, SENT/UNSENT for a webhook delivery, ADMIN for
/// an operator's action.
fn record_label(r: &pb::HistoryRecord) -> &'static str {
    match (r.kind.as_str(), r.passed) {
        ("stale", _) => "STALE",
        ("admin", _) => "ADMIN",
        ("webhook", true) => "SENT",
        ("webhook", false) => "UNSENT",
        (_, true) => "PASS",
        (_, false) => "FAIL",
    }
}

fn record_json(r: &pb::HistoryRecord) -> serde_json::Value {
    serde_json::json!({
        "seq": r.seq, "node_id": r.node_id, "time_unix": r.time_unix,
        "kind": if r.kind.is_empty() { "verdict" } else { r.kind.as_str() },
        "verdict": record_label(r),
        "failed_claims": r.failed_claims.iter().map(claim_json).collect::<Vec<_>>(),
        "details": if r.kind.is_empty() { Vec::new() } else { r.claims.iter().map(claim_json).collect::<Vec<_>>() },
        "policy_name": r.policy_name, "policy_digest": r.policy_digest,
        "evidence_digest": r.evidence_digest, "prev_hash": r.prev_hash,
    })
}

fn print_history(recs: &[pb::HistoryRecord]) {
    if recs.is_empty() {
        outln!("no verdicts recorded");
        return;
    }
    outln!(
        "{:>6}  {:<20}  {:<24}  {:<7}  {:<16}  failed claims / details",
        "seq",
        "time (UTC, unix)",
        "node",
        "verdict",
        "policy"
    );
    for r in recs {
        let failed: Vec<String> = if r.kind.is_empty() {
            r.failed_claims
                .iter()
                .map(|c| format!("{} (expected {}, got {})", c.id, c.expected, c.actual))
                .collect()
        } else {
            // Not a verdict: what happened.
            r.claims
                .iter()
                .map(|c| format!("{}: {}", c.id, c.actual))
                .collect()
        };
        outln!(
            "{:>6}  {:<20}  {:<24}  {:<7}  {:<16}  {}",
            r.seq,
            r.time_unix,
            r.node_id,
            record_label(r),
            format!(
                "{}@{}",
                r.policy_name,
                r.policy_digest.get(..8).unwrap_or_default()
            ),
            if failed.is_empty() {
                "-".to_string()
            } else {
                failed.join("; ")
            }
        );
    }
}
