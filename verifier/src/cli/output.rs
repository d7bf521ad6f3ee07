//! How commands print: stdout that ends quietly on a closed pipe, the output
//! formats, and the JSON and table forms shared by several commands.

use assay_proto::v1 as pb;

/// Writes to stdout, ending the process quietly when stdout is a closed pipe
/// (`assay-verifier eventlog LOG | head`) instead of panicking as `print!` does.
pub fn emit(args: std::fmt::Arguments<'_>, newline: bool) {
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
    ($($arg:tt)*) => { $crate::cli::output::emit(format_args!($($arg)*), false) };
}

macro_rules! outln {
    () => { $crate::cli::output::emit(format_args!(""), true) };
    ($($arg:tt)*) => { $crate::cli::output::emit(format_args!($($arg)*), true) };
}

pub(crate) use {out, outln};

/// Text for a person, or JSON for a program.
#[derive(Clone, Copy, clap::ValueEnum, PartialEq, Eq)]
pub enum Output {
    Text,
    Json,
}

/// Lists of records: a table, one JSON array, or one JSON object per line.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ListOutput {
    Table,
    Json,
    Jsonl,
}

/// `PASS` or `FAIL`.
pub fn word(passed: bool) -> &'static str {
    if passed {
        "PASS"
    } else {
        "FAIL"
    }
}

/// `n thing` or `n things`.
pub fn count(n: u64, thing: &str) -> String {
    if n == 1 {
        format!("1 {thing}")
    } else {
        format!("{n} {thing}s")
    }
}

/// A time as tables show it: a date in UTC (`2024-05-03 14:00:00Z`), or
/// `-` for none (0). JSON output keeps unix seconds.
pub fn date(unix: i64) -> String {
    if unix == 0 {
        "-".into()
    } else {
        assay_verifier::web::utc(unix)
    }
}

/// The first 8 hex digits of a digest, as tables show it.
pub fn short(digest: &str) -> &str {
    digest.get(..8).unwrap_or(digest)
}

/// A policy as verdicts name it: `NAME@VERSION`, or `NAME@DIGEST` for a
/// record from before policies had versions.
pub fn policy_ref(name: &str, version: u64, digest: &str) -> String {
    if version > 0 {
        format!("{name}@{version}")
    } else {
        format!("{name}@{}", short(digest))
    }
}

pub fn claim_json(c: &pb::Claim) -> serde_json::Value {
    serde_json::json!({"id": c.id, "passed": c.passed, "expected": c.expected, "actual": c.actual, "location": c.location})
}

/// Prints a list in the chosen form: `table` prints the rows itself.
pub fn print_list<T>(
    items: &[T],
    output: ListOutput,
    json: impl Fn(&T) -> serde_json::Value,
    table: impl FnOnce(&[T]),
) -> anyhow::Result<()> {
    match output {
        ListOutput::Json => outln!(
            "{}",
            serde_json::to_string_pretty(&items.iter().map(json).collect::<Vec<_>>())?
        ),
        ListOutput::Jsonl => {
            for i in items {
                outln!("{}", json(i));
            }
        }
        ListOutput::Table => table(items),
    }
    Ok(())
}
