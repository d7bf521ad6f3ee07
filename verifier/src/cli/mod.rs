//! The command line: one file per command family, each with its clap
//! arguments and its `run`; shared here are the command tree, the dispatch
//! and the exit codes.
//!
//! | code | meaning |
//! | --- | --- |
//! | 0 | done (a verdict: PASS; a token: valid; a check: intact) |
//! | 1 | failed: an error (file, store, configuration, internal), or a check that found a difference (`audit verify`, `audit reverify`) |
//! | 2 | bad usage: refused by the argument parser or by the verifier as invalid |
//! | 3 | refused: a FAIL verdict, a refused token, a role that may not call |
//! | 4 | the verifier could not be reached |

mod audit;
mod bundle;
mod eventlog;
mod generate;
mod history;
mod init;
mod keylime_import;
mod local;
mod node;
pub(crate) mod output;
mod policies;
mod policy;
mod remote;
mod serve;
mod token;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "assay-verifier",
    version,
    about = "Assay verifier: checks TPM evidence against golden values and issues join tokens",
    after_help = "Exit codes: 0 done, 1 error or a check that failed, 2 bad usage, 3 refused \
                  (FAIL verdict, refused token or role), 4 verifier unreachable."
)]
pub struct Cli {
    /// Log lines on stderr as `text` or as `json` (one object a line, with
    /// stable field names: node_id, verdict, seq, claim, policy, error).
    #[arg(
        long,
        global = true,
        env = "ASSAY_LOG_FORMAT",
        value_name = "FORMAT",
        default_value = "text"
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    cmd: Cmd,
}

/// How log lines are written (`--log-format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create TLS material (a private CA, a server certificate, a clients CA) for a new verifier.
    Init(init::InitArgs),
    /// Issue a client certificate carrying a role, signed by the clients CA
    /// that `init` made (roles: operator, auditor, orchestrator, node).
    ClientCert(init::ClientCertArgs),
    /// Run the verifier.
    Serve(serve::ServeArgs),
    /// Golden-value policies: validate, generate from known-good evidence, explain a verdict,
    /// sign (minisign) and verify a signature; the verifier's named policies: apply, list,
    /// show, diff, rollback, retire, assign, test (dry run).
    #[command(subcommand)]
    Policy(policy::PolicyCmd),
    /// Show the verdict history (most recent first).
    History(history::HistoryArgs),
    /// Each node's standing at a moment: its last verdict (or stale mark) at or before it.
    Fleet(history::FleetArgs),
    /// Join tokens: verify, list, revoke, and the JWKS that verifies them.
    #[command(subcommand, alias = "tokens")]
    Token(token::TokenCmd),
    /// Registered and enrolled nodes: add, import (a hardware inventory), list,
    /// show, remove, move (rename).
    #[command(subcommand)]
    Node(node::NodeCmd),
    /// Tamper evidence: export the history with its signed checkpoints, re-check
    /// chain and signatures offline, re-run the core on kept evidence.
    #[command(subcommand)]
    Audit(audit::AuditCmd),
    /// Print a UEFI event log (binary_bios_measurements), or replay it into PCRs.
    Eventlog(eventlog::EventlogArgs),
    /// Verify an evidence bundle (`assay-attestor collect`) against a policy,
    /// offline. Exit 0 on PASS, 3 on FAIL.
    VerifyBundle(bundle::VerifyBundleArgs),
}

/// Runs one command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        Cmd::Init(a) => init::init(a),
        Cmd::ClientCert(a) => init::client_cert(a),
        Cmd::Serve(a) => serve::run(a).await,
        Cmd::Policy(c) => policy::run(c).await,
        Cmd::History(a) => history::history(a).await,
        Cmd::Fleet(a) => history::fleet(a).await,
        Cmd::Token(c) => token::run(c).await,
        Cmd::Node(c) => node::run(c).await,
        Cmd::Audit(c) => audit::run(c).await,
        Cmd::Eventlog(a) => eventlog::run(a),
        Cmd::VerifyBundle(a) => bundle::run(a),
    }
}

/// A failure whose kind sets the exit code (see the module's table); any
/// other error exits 1.
#[derive(Debug, thiserror::Error)]
pub enum Exit {
    /// 3: judged and refused.
    #[error("{0}")]
    Refused(String),
    /// 4: the verifier could not be reached.
    #[error("{0}")]
    Unreachable(String),
    /// 2: bad usage found after parsing (by the command or the verifier).
    #[error("{0}")]
    Usage(String),
    /// The outcome is printed already; exit with this code, say nothing more.
    #[error("exit {0}")]
    Quiet(u8),
}

/// The exit code for a failed command, and whether its error still needs printing.
pub fn exit_code(e: &anyhow::Error) -> (u8, bool) {
    match e.downcast_ref::<Exit>() {
        Some(Exit::Refused(_)) => (3, true),
        Some(Exit::Unreachable(_)) => (4, true),
        Some(Exit::Usage(_)) => (2, true),
        Some(Exit::Quiet(code)) => (*code, false),
        None => (1, true),
    }
}

/// An error and its causes in one line, each said once.
pub fn error_text(e: &anyhow::Error) -> String {
    assay_proto::client::causes(e.as_ref())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::Cli;

    /// Every option and argument of every command says what it is.
    #[test]
    fn every_argument_has_a_help_line() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for a in cmd.get_arguments() {
                let id = a.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                if a.get_help().is_none_or(|h| h.to_string().trim().is_empty()) {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "assay-verifier", &mut missing);
        assert!(missing.is_empty(), "no help: {missing:?}");
    }

    /// The defaults `serve --help` states are the ones the config applies.
    #[test]
    fn serve_help_states_the_real_defaults() {
        use assay_verifier::config as c;
        let help = Cli::command()
            .find_subcommand_mut("serve")
            .expect("serve")
            .render_help()
            .to_string();
        for d in [
            c::DEFAULT_LISTEN.to_string(),
            c::DEFAULT_DATA_DIR.to_string(),
            c::DEFAULT_NONCE_TTL_SECS.to_string(),
            c::DEFAULT_TOKEN_TTL_SECS.to_string(),
        ] {
            assert!(help.contains(&format!("[default: {d}]")), "{d} in {help}");
        }
    }

    #[test]
    fn the_command_tree_is_consistent() {
        Cli::command().debug_assert();
    }
}
