//! `assay-verifier`: serve the attestation API, and the operator/auditor commands around it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use assay_core::policy::Policy;
use assay_proto::v1 as pb;
use assay_verifier::config::{Config, Overrides};
use clap::{Args, Parser, Subcommand};
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

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
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// JSON output (one array).
        #[arg(long)]
        json: bool,
    },
    /// Join tokens.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Enrolled nodes (operates on the data directory directly; stop the verifier first).
    #[command(subcommand)]
    Node(NodeCmd),
}

#[derive(Subcommand)]
enum PolicyCmd {
    /// Check a policy file; prints its name, digest and PCR selection.
    Validate { file: PathBuf },
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
}

#[derive(Subcommand)]
enum NodeCmd {
    /// Forget a node (e.g. after a TPM replacement) so it can enroll again.
    Remove {
        node: String,
        #[arg(long, env = "ASSAY_DATA_DIR", default_value = assay_verifier::config::DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
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
}

#[derive(Args)]
struct ServeArgs {
    /// TOML config file (keys: listen, data_dir, policy, nonce_ttl_secs, token_ttl_secs,
    /// enrollment_ttl_secs, [tls] cert/key, [trust] ek_roots/ek_intermediates).
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
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        Cmd::Init { dir, names } => {
            assay_verifier::tls::init_tls(&dir, &names)?;
            println!(
                "wrote {0}/ca.pem, {0}/server.pem, {0}/server.key",
                dir.display()
            );
            println!("give {}/ca.pem to attestors (--ca)", dir.display());
        }
        Cmd::Serve(a) => {
            let overrides = Overrides {
                listen: a.listen,
                data_dir: a.data_dir,
                policy: a.policy,
                tls_cert: a.tls_cert,
                tls_key: a.tls_key,
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
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let p = Policy::parse(&file.display().to_string(), &text)?;
            println!("{}: valid policy `{}`", file.display(), p.name);
            println!("digest: sha256:{}", p.digest_hex());
            println!("quotes PCRs (sha256): {:?}", p.pcr_selection());
        }
        Cmd::History {
            server,
            node,
            limit,
            json,
        } => {
            let ch = connect(&server).await?;
            let mut c = pb::history_client::HistoryClient::new(ch);
            let recs = c
                .query(pb::HistoryRequest {
                    node_id: node.unwrap_or_default(),
                    limit,
                })
                .await
                .map_err(|s| anyhow::anyhow!("{}", s.message()))?
                .into_inner()
                .records;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &recs.iter().map(record_json).collect::<Vec<_>>()
                    )?
                );
            } else {
                print_history(&recs);
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
                        println!(
                            "{}",
                            serde_json::json!({"valid": true, "node_id": r.node_id, "ak_name": r.ak_name, "expires_unix": r.expires_unix})
                        );
                    } else {
                        println!(
                            "valid: token issued to node {} (AK {}), expires at {}; now consumed",
                            r.node_id, r.ak_name, r.expires_unix
                        );
                    }
                }
                Err(s) => {
                    if json {
                        println!(
                            "{}",
                            serde_json::json!({"valid": false, "reason": s.message()})
                        );
                    }
                    bail!("{}", s.message());
                }
            }
        }
        Cmd::Token(TokenCmd::Jwks { server }) => {
            let ch = connect(&server).await?;
            let r = pb::tokens_client::TokensClient::new(ch)
                .jwks(pb::JwksRequest {})
                .await
                .map_err(|s| anyhow::anyhow!("{}", s.message()))?;
            println!("{}", r.into_inner().jwks_json);
        }
        Cmd::Node(NodeCmd::Remove { node, data_dir }) => {
            let store = assay_verifier::store::Store::open(&data_dir.join("db"))?;
            if store.remove_node(&node)? {
                println!("node {node} removed; it may enroll again");
            } else {
                bail!("node {node} is not enrolled");
            }
        }
    }
    Ok(())
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
    Channel::builder(uri)
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(ca))
                .domain_name(host),
        )?
        .connect_timeout(std::time::Duration::from_secs(5))
        .timeout(std::time::Duration::from_secs(30))
        .connect()
        .await
        .with_context(|| format!("connecting to the verifier at {}", a.server))
}

fn claim_json(c: &pb::Claim) -> serde_json::Value {
    serde_json::json!({"id": c.id, "passed": c.passed, "expected": c.expected, "actual": c.actual, "location": c.location})
}

fn record_json(r: &pb::HistoryRecord) -> serde_json::Value {
    serde_json::json!({
        "seq": r.seq, "node_id": r.node_id, "time_unix": r.time_unix,
        "verdict": if r.passed { "PASS" } else { "FAIL" },
        "failed_claims": r.failed_claims.iter().map(claim_json).collect::<Vec<_>>(),
        "policy_name": r.policy_name, "policy_digest": r.policy_digest,
        "evidence_digest": r.evidence_digest, "prev_hash": r.prev_hash,
    })
}

fn print_history(recs: &[pb::HistoryRecord]) {
    if recs.is_empty() {
        println!("no verdicts recorded");
        return;
    }
    println!(
        "{:>6}  {:<20}  {:<24}  {:<7}  {:<16}  failed claims",
        "seq", "time (UTC, unix)", "node", "verdict", "policy"
    );
    for r in recs {
        let failed: Vec<String> = r
            .failed_claims
            .iter()
            .map(|c| format!("{} (expected {}, got {})", c.id, c.expected, c.actual))
            .collect();
        println!(
            "{:>6}  {:<20}  {:<24}  {:<7}  {:<16}  {}",
            r.seq,
            r.time_unix,
            r.node_id,
            if r.passed { "PASS" } else { "FAIL" },
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
