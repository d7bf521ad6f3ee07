//! `assay-attestor`: the node agent's command line, for people and bootstrap scripts.
//!
//! Exit codes: 0 trusted (token printed), 1 internal error, 2 bad configuration or
//! usage, 3 not trusted (verdict FAIL, enrollment refused, or not enrolled),
//! 4 verifier unreachable, 5 TPM error.

use std::path::PathBuf;
use std::process::ExitCode;

use assay_attestor::config::{Config, Overrides};
use assay_attestor::flow::{self, Failure, Outcome};
use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "assay-attestor",
    version,
    about = "Assay node agent: proves this node's boot state with its TPM"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Enroll if needed, attest, and print the join token (the bootstrap-script command).
    Join(Common),
    /// Enroll this node's TPM with the verifier (EK certificate, AK, credential activation).
    Enroll(Common),
    /// Attest once and print the verdict.
    Attest(Common),
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Output {
    Text,
    Json,
    Env,
}

#[derive(Args)]
struct Common {
    /// TOML config file (keys: tcti, state_dir, verifier, ca, node_id, retries).
    #[arg(long, env = "ASSAY_ATTESTOR_CONFIG")]
    config: Option<PathBuf>,
    /// Verifier URL, e.g. https://verifier.example:7443.
    #[arg(long, env = "ASSAY_VERIFIER")]
    verifier: Option<String>,
    /// CA certificate (PEM) the verifier's TLS certificate must chain to.
    #[arg(long, env = "ASSAY_CA")]
    ca: Option<PathBuf>,
    /// TPM connection: device:/dev/tpmrm0 (default), swtpm:host=127.0.0.1,port=2321, mssim:…
    #[arg(long, env = "ASSAY_TCTI")]
    tcti: Option<String>,
    /// Where the AK blobs and enrollment record live (default /var/lib/assay-attestor).
    #[arg(long, env = "ASSAY_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// This node's id (default: the host name).
    #[arg(long, env = "ASSAY_NODE_ID")]
    node_id: Option<String>,
    /// Connection retries, with exponential backoff, while the verifier is unreachable.
    #[arg(long, env = "ASSAY_RETRIES")]
    retries: Option<u32>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

impl Common {
    fn config(&self) -> Result<Config, Failure> {
        Config::load(
            self.config.as_deref(),
            Overrides {
                tcti: self.tcti.clone(),
                state_dir: self.state_dir.clone(),
                verifier: self.verifier.clone(),
                ca: self.ca.clone(),
                node_id: self.node_id.clone(),
                retries: self.retries,
            },
        )
        .map_err(Failure::Config)
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ASSAY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let (common, result) = match &cli.cmd {
        Cmd::Join(c) | Cmd::Attest(c) => (
            c,
            rt.block_on(run_attest(c, matches!(cli.cmd, Cmd::Join(_)))),
        ),
        Cmd::Enroll(c) => (c, rt.block_on(run_enroll(c))),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            match common.output {
                Output::Json => println!(
                    "{}",
                    serde_json::json!({"result": "error", "exit_code": f.exit_code(), "error": f.to_string()})
                ),
                Output::Env => println!(
                    "ASSAY_RESULT=error\nASSAY_ERROR={}",
                    shell_quote(&f.to_string())
                ),
                Output::Text => {}
            }
            eprintln!("error: {f}");
            ExitCode::from(f.exit_code())
        }
    }
}

async fn run_enroll(c: &Common) -> Result<u8, Failure> {
    let cfg = c.config()?;
    let mut tpm =
        assay_attestor::tpm::Tpm::open(&cfg.tcti).map_err(|e| Failure::Tpm(e.to_string()))?;
    let ch = flow::connect(&cfg).await?;
    let e = flow::enroll(&cfg, &mut tpm, ch).await?;
    match c.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&e).unwrap_or_default()),
        Output::Env => println!(
            "ASSAY_NODE_ID={}\nASSAY_AK_NAME={}",
            shell_quote(&e.node_id),
            e.ak_name
        ),
        Output::Text => println!(
            "enrolled node {} with {}: AK {} is bound to this TPM's EK",
            e.node_id, e.verifier, e.ak_name
        ),
    }
    Ok(0)
}

async fn run_attest(c: &Common, join: bool) -> Result<u8, Failure> {
    let cfg = c.config()?;
    let o = if join {
        flow::join(&cfg).await?
    } else {
        let mut tpm =
            assay_attestor::tpm::Tpm::open(&cfg.tcti).map_err(|e| Failure::Tpm(e.to_string()))?;
        let ch = flow::connect(&cfg).await?;
        flow::attest(&cfg, &mut tpm, ch).await?
    };
    print_outcome(&o, c.output);
    Ok(if o.trusted {
        0
    } else {
        Failure::Untrusted(String::new()).exit_code()
    })
}

fn print_outcome(o: &Outcome, out: Output) {
    match out {
        Output::Json => println!("{}", serde_json::to_string_pretty(o).unwrap_or_default()),
        Output::Env => {
            println!("ASSAY_NODE_ID={}", shell_quote(&o.node_id));
            println!(
                "ASSAY_RESULT={}",
                if o.trusted { "trusted" } else { "untrusted" }
            );
            println!("ASSAY_HISTORY_SEQ={}", o.history_seq);
            if let (Some(t), Some(exp)) = (&o.token, o.token_expires_unix) {
                println!("ASSAY_JOIN_TOKEN={t}\nASSAY_JOIN_TOKEN_EXPIRES={exp}");
            }
        }
        Output::Text => {
            let verdict = if o.trusted { "TRUSTED" } else { "NOT TRUSTED" };
            println!(
                "{verdict}: node {} under policy {} (sha256:{}), history #{}",
                o.node_id, o.policy_name, o.policy_digest, o.history_seq
            );
            for c in &o.claims {
                let mark = if c.passed { "pass" } else { "FAIL" };
                if c.passed {
                    println!("  {mark} {}", c.id);
                } else {
                    println!(
                        "  {mark} {} at {}: expected {}, got {}",
                        c.id, c.location, c.expected, c.actual
                    );
                }
            }
            if let (Some(t), Some(exp)) = (&o.token, o.token_expires_unix) {
                println!("join token (single use, expires at {exp}):\n{t}");
            }
        }
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}
