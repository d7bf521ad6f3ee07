//! `audit reverify | export | verify`: the history's tamper evidence.

use std::path::PathBuf;

use anyhow::{bail, Context as _};
use assay_proto::v1 as pb;
use clap::Subcommand;

use super::local::StoreArgs;
use super::output::{claim_json, count, outln, short, word};
use super::remote::{answer, connect, ServerArgs};
use super::Exit;

#[derive(Subcommand)]
pub enum AuditCmd {
    /// Re-run the verification core on a record's kept evidence, under the
    /// policy it names. Exit 0 if it reaches the recorded verdict, 1 if not.
    Reverify {
        #[command(flatten)]
        server: ServerArgs,
        /// The record's sequence number (`history`).
        seq: u64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write the history (or a time range of it), the checkpoints and the JWKS
    /// to a JSON-lines file an auditor can take away.
    Export {
        #[command(flatten)]
        server: ServerArgs,
        /// The file to write (written to FILE.partial, then renamed).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// First record at or after this time, in unix seconds [default: the first record]
        #[arg(long, value_name = "T")]
        from_unix: Option<i64>,
        /// Last record at or before this time, in unix seconds [default: the newest]
        #[arg(long, value_name = "T")]
        to_unix: Option<i64>,
    },
    /// Re-check the hash chain and the checkpoint signatures, naming the first
    /// broken record. Exit 0 intact, 1 broken.
    #[command(group(clap::ArgGroup::new("source").required(true).multiple(true).args(["from_export", "data_dir", "postgres"])))]
    Verify {
        /// A file from `audit export`.
        #[arg(long, conflicts_with_all = ["data_dir", "postgres"], value_name = "FILE")]
        from_export: Option<PathBuf>,
        /// The store (stop the verifier first for sled); with --postgres, the
        /// data directory is read only for the verifier's signing key.
        #[command(flatten)]
        store: StoreArgs,
        /// The verifier's JWKS (`assay-verifier token jwks`), obtained
        /// independently [default: the one in the export, or the data directory's key]
        #[arg(long, value_name = "FILE")]
        jwks: Option<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(c: AuditCmd) -> anyhow::Result<()> {
    match c {
        AuditCmd::Reverify { server, seq, json } => reverify(&server, seq, json).await,
        AuditCmd::Export {
            server,
            out,
            from_unix,
            to_unix,
        } => export(&server, &out, from_unix, to_unix).await,
        AuditCmd::Verify {
            from_export,
            store,
            jwks,
            json,
        } => verify(from_export, &store, jwks, json),
    }
}

async fn reverify(server: &ServerArgs, seq: u64, json: bool) -> anyhow::Result<()> {
    let r = pb::history_client::HistoryClient::new(connect(server).await?)
        .reverify(pb::ReverifyRequest { seq })
        .await
        .map_err(|s| answer("reverify", s))?
        .into_inner();
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "seq": r.seq, "node_id": r.node_id, "policy_name": r.policy_name,
                "policy_version": r.policy_version, "policy_digest": r.policy_digest,
                "recorded": word(r.recorded_passed), "reverified": word(r.reverified_passed),
                "same": r.differences.is_empty(), "differences": r.differences,
                "not_rechecked": r.not_rechecked,
                "claims": r.claims.iter().map(claim_json).collect::<Vec<_>>(),
            }))?
        );
    } else {
        outln!(
            "record {} (node {}, policy {} sha256:{}): recorded {}, reverified {}",
            r.seq,
            r.node_id,
            super::output::policy_ref(&r.policy_name, r.policy_version, &r.policy_digest),
            short(&r.policy_digest),
            word(r.recorded_passed),
            word(r.reverified_passed)
        );
        outln!("taken as recorded: {}", r.not_rechecked.join(", "));
        if r.differences.is_empty() {
            outln!(
                "same verdict, claim by claim ({})",
                count(r.claims.len() as u64, "claim")
            );
        } else {
            for d in &r.differences {
                outln!("DIFFERS: {d}");
            }
        }
    }
    if !r.differences.is_empty() {
        return Err(Exit::Quiet(1).into());
    }
    Ok(())
}

async fn export(
    server: &ServerArgs,
    out: &std::path::Path,
    from_unix: Option<i64>,
    to_unix: Option<i64>,
) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut c = pb::history_client::HistoryClient::new(connect(server).await?);
    let tmp = out.with_extension("partial");
    let mut f = std::io::BufWriter::new(
        std::fs::File::create(&tmp).with_context(|| format!("--out {}", tmp.display()))?,
    );
    let (mut from_seq, mut records, mut checkpoints, mut jwks_written) = (0, 0u64, 0u64, false);
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
            .map_err(|s| answer("export", s))?
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
    std::fs::rename(&tmp, out)?;
    outln!(
        "wrote {} and {} to {}",
        count(records, "record"),
        count(checkpoints, "checkpoint"),
        out.display()
    );
    Ok(())
}

fn verify(
    from_export: Option<PathBuf>,
    store: &StoreArgs,
    jwks: Option<PathBuf>,
    json: bool,
) -> anyhow::Result<()> {
    let pinned = match &jwks {
        Some(p) => Some(serde_json::from_slice::<serde_json::Value>(
            &std::fs::read(p).with_context(|| format!("--jwks {}", p.display()))?,
        )?),
        None => None,
    };
    let (report, source) = match from_export {
        Some(path) => {
            let mut e = read_export(&path)?;
            let keys = pinned.clone().unwrap_or(e.jwks);
            let report = assay_verifier::audit::verify(&mut e.records, &e.checkpoints, &keys);
            if let Some(err) = e.records.error {
                bail!("{}: {err}", path.display());
            }
            (report, format!("export {}", path.display()))
        }
        None => {
            let s = store.open()?;
            let keys = match pinned.clone() {
                Some(k) => k,
                None => {
                    let Some(dir) = &store.data_dir else {
                        return Err(Exit::Usage(
                            "give --jwks (or --data-dir for the verifier's key)".into(),
                        )
                        .into());
                    };
                    let key = dir.join("token-signing-key.pem");
                    anyhow::ensure!(key.exists(), "{} is missing: give --jwks", key.display());
                    serde_json::from_str(
                        &assay_verifier::token::TokenSigner::load_or_create(&key)?.jwks_json(),
                    )?
                }
            };
            let checkpoints = s.checkpoints()?;
            let mut err = None;
            let recs = s.history_iter().map_while(|r| match r {
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
            (report, store.describe())
        }
    };
    if json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        outln!(
            "{source}: {} ({}..={}), {} verified (signed through record {})",
            count(report.records, "record"),
            report.first_seq,
            report.last_seq,
            count(report.checkpoints_verified, "checkpoint"),
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
        return Err(Exit::Quiet(1).into());
    }
    Ok(())
}

/// Longest line `audit verify` reads from an export (one record).
const MAX_EXPORT_LINE: usize = 1 << 20;

/// An `audit export` file: its JWKS and checkpoints (read up front: small),
/// and its records, streamed (an export may hold millions).
struct Export {
    pub jwks: serde_json::Value,
    pub checkpoints: Vec<assay_verifier::store::Checkpoint>,
    pub records: ExportRecords,
}

/// The records of an export, in file order; stops at the first bad line
/// (see [`ExportRecords::error`]).
struct ExportRecords {
    lines: std::io::BufReader<std::fs::File>,
    line_no: usize,
    pub error: Option<String>,
}

/// One bounded line, or None at the end.
fn next_line(
    r: &mut impl std::io::BufRead,
    line_no: &mut usize,
) -> Result<Option<serde_json::Value>, String> {
    use std::io::{BufRead as _, Read as _};
    let mut buf = Vec::new();
    let n = (&mut *r)
        .take(MAX_EXPORT_LINE as u64 + 1)
        .read_until(b'\n', &mut buf)
        .map_err(|e| e.to_string())?;
    if n == 0 {
        return Ok(None);
    }
    *line_no += 1;
    if buf.len() > MAX_EXPORT_LINE {
        return Err(format!(
            "line {line_no}: longer than {MAX_EXPORT_LINE} bytes"
        ));
    }
    serde_json::from_slice(&buf)
        .map(Some)
        .map_err(|e| format!("line {line_no}: {e}"))
}

impl Iterator for ExportRecords {
    type Item = assay_verifier::store::Found;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.error.is_some() {
                return None;
            }
            let v = match next_line(&mut self.lines, &mut self.line_no) {
                Ok(Some(v)) => v,
                Ok(None) => return None,
                Err(e) => {
                    self.error = Some(e);
                    return None;
                }
            };
            if v["type"] != "record" {
                continue;
            }
            match serde_json::from_value::<assay_verifier::store::HistoryRecord>(
                v["record"].clone(),
            ) {
                Ok(record) => {
                    return Some(assay_verifier::store::Found {
                        key_seq: record.seq,
                        record,
                    })
                }
                Err(e) => self.error = Some(format!("line {}: not a record: {e}", self.line_no)),
            }
        }
    }
}

/// Opens an export: a first pass for the JWKS and checkpoints, then the records.
fn read_export(path: &std::path::Path) -> anyhow::Result<Export> {
    let open = || -> anyhow::Result<std::io::BufReader<std::fs::File>> {
        Ok(std::io::BufReader::new(
            std::fs::File::open(path).with_context(|| format!("{}", path.display()))?,
        ))
    };
    let mut r = open()?;
    let (mut line_no, mut jwks, mut checkpoints) = (0, None, Vec::new());
    while let Some(v) =
        next_line(&mut r, &mut line_no).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
    {
        match v["type"].as_str() {
            Some("jwks") => jwks = Some(v["jwks"].clone()),
            Some("checkpoint") => checkpoints.push(
                serde_json::from_value(v["checkpoint"].clone()).with_context(|| {
                    format!("{}: line {line_no}: not a checkpoint", path.display())
                })?,
            ),
            Some("record") => {}
            _ => bail!(
                "{}: line {line_no}: not an Assay history export line",
                path.display()
            ),
        }
    }
    Ok(Export {
        jwks: jwks.with_context(|| format!("{}: no JWKS line", path.display()))?,
        checkpoints,
        records: ExportRecords {
            lines: open()?,
            line_no: 0,
            error: None,
        },
    })
}

#[cfg(test)]
mod export_tests {
    use super::*;
    use proptest::prelude::*;

    fn run(bytes: &[u8]) -> Result<assay_verifier::audit::Report, String> {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.jsonl");
        std::fs::write(&p, bytes).unwrap();
        let mut e = read_export(&p).map_err(|e| e.to_string())?;
        let jwks = e.jwks.clone();
        let r = assay_verifier::audit::verify(&mut e.records, &e.checkpoints, &jwks);
        match e.records.error {
            Some(err) => Err(err),
            None => Ok(r),
        }
    }

    #[test]
    fn malformed_truncated_and_oversized_exports_are_errors() {
        let jwks = "{\"type\":\"jwks\",\"jwks\":{\"keys\":[]}}\n";
        assert!(run(b"").unwrap_err().contains("no JWKS"));
        assert!(run(b"{\"type\":\"nope\"}\n")
            .unwrap_err()
            .contains("line 1"));
        assert!(run(format!("{jwks}{{\"type\":\"rec").as_bytes())
            .unwrap_err()
            .contains("line 2"));
        assert!(run(
            format!("{jwks}{{\"type\":\"record\",\"record\":{{\"seq\":\"x\"}}}}\n").as_bytes()
        )
        .unwrap_err()
        .contains("not a record"));
        let long = format!("{jwks}{}\n", " ".repeat(MAX_EXPORT_LINE + 10));
        assert!(run(long.as_bytes()).unwrap_err().contains("longer than"));
        let r = run(jwks.as_bytes()).unwrap();
        assert_eq!((r.records, r.broken), (0, None));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn arbitrary_lines_never_panic(lines in proptest::collection::vec(
            prop_oneof![
                Just("{\"type\":\"jwks\",\"jwks\":{\"keys\":[{\"kid\":\"k\",\"crv\":\"Ed25519\",\"x\":\"AAAA\"}]}}".to_string()),
                Just("{\"type\":\"checkpoint\",\"checkpoint\":{\"seq\":2,\"head_hash\":\"h\",\"time_unix\":1,\"signature\":\"e30..AA\"}}".to_string()),
                (0u64..5, "[a-f0-9]{0,4}").prop_map(|(s, h)| format!(
                    "{{\"type\":\"record\",\"record\":{{\"seq\":{s},\"node_id\":\"n\",\"time_unix\":1,\"passed\":true,\"claims\":[],\"policy_name\":\"p\",\"policy_digest\":\"d\",\"evidence_digest\":\"\",\"prev_hash\":\"{h}\"}}}}")),
                ".{0,40}",
            ],
            0..12,
        )) {
            let _ = run(lines.join("\n").as_bytes());
        }
    }
}
