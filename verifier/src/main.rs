//! `assay-verifier`: serve the attestation API, and the operator and auditor
//! commands around it (`cli/`, one file per command family).

mod cli;

use std::process::ExitCode;

use clap::Parser as _;

/// mimalloc: a verdict allocates and frees many small objects (parsed IMA
/// logs, claims), which glibc's malloc makes a third of the judgement.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    // ASSAY_LOG: a tracing filter (default `info`).
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ASSAY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour only on a terminal: never escape codes in the journal or a file.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match cli.log_format {
        cli::LogFormat::Text => logs.init(),
        cli::LogFormat::Json => logs.json().flatten_event(true).init(),
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(cli::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let (code, print) = cli::exit_code(&e);
            if print {
                eprintln!("error: {}", cli::error_text(&e));
            }
            ExitCode::from(code)
        }
    }
}
