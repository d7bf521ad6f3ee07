//! Peer oracle: for every UEFI event log in tests/data/eventlogs, the PCRs
//! `assay-verifier eventlog FILE --replay --output json` prints equal what
//! tpm2-tools' `tpm2_eventlog` (run live) computes, bank by bank. Logs that
//! tpm2_eventlog rejects or crashes on (see the corpus MANIFEST) must still give
//! Assay a replay or a clear error, never a crash.
//!
//! One known difference: tpm2-tools 5.4 ignores the `StartupLocality` event
//! (PFP §10.4.5.3: a TPM started from locality 3 or 4 resets PCR 0 to
//! `00…0L`), so for such logs PCR 0 is checked against tpm2_eventlog's own
//! event digests folded from that initial value, here, with sha2.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};
use sha2::Digest as _;

fn corpus_dir() -> PathBuf {
    assay_tests::testdata("eventlogs")
}

type Banks = BTreeMap<String, BTreeMap<u32, String>>;

/// The last `pcrs:` block of tpm2_eventlog's YAML: `  sha256:` then `    0  : 0x…`.
fn tpm2_eventlog_pcrs(file: &PathBuf) -> Result<Option<Banks>> {
    let out = Command::new("tpm2_eventlog")
        .arg(file)
        .output()
        .context("running tpm2_eventlog (Debian package tpm2-tools)")?;
    if !out.status.success() {
        return Ok(None);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let block = text
        .rsplit_once("\npcrs:\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    let mut banks = Banks::new();
    let mut bank = None;
    for line in block.lines() {
        if let Some(name) = line.strip_prefix("  ").and_then(|l| l.strip_suffix(':')) {
            if !name.starts_with(' ') {
                bank = Some(name.to_string());
                banks.entry(name.to_string()).or_default();
                continue;
            }
        }
        let Some((idx, value)) = line.trim().split_once(':') else {
            continue;
        };
        let (Some(b), Ok(i)) = (&bank, idx.trim().parse::<u32>()) else {
            continue;
        };
        let value = value.trim().trim_start_matches("0x").to_lowercase();
        banks.get_mut(b).map(|m| m.insert(i, value));
    }
    Ok(Some(banks))
}

/// PCR 0 per bank, folded from tpm2_eventlog's printed digests, starting from
/// the value a TPM started at `locality` holds.
fn pcr0_from_locality(file: &PathBuf, locality: u8) -> Result<BTreeMap<String, String>> {
    let out = Command::new("tpm2_eventlog").arg(file).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let events = text.split("\npcrs:\n").next().unwrap_or_default();
    let (mut pcr, mut no_action, mut alg) = (None, false, None);
    let mut banks: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for line in events.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("PCRIndex: ") {
            pcr = v.parse::<i64>().ok();
        } else if let Some(v) = line.strip_prefix("EventType: ") {
            no_action = v == "EV_NO_ACTION";
        } else if let Some(v) = line.strip_prefix("- AlgorithmId: ") {
            alg = Some(v.to_string());
        } else if let Some(v) = line.strip_prefix("Digest: ") {
            let (Some(0), false, Some(a)) = (pcr, no_action, alg.as_ref()) else {
                continue;
            };
            let digest = hex::decode(v.trim_matches('"'))?;
            let len = digest.len();
            let value = banks.entry(a.clone()).or_insert_with(|| {
                let mut init = vec![0u8; len];
                init[len - 1] = locality;
                init
            });
            let joined = [value.as_slice(), &digest].concat();
            *value = match a.as_str() {
                "sha1" => sha1_digest(&joined),
                "sha256" => sha2::Sha256::digest(&joined).to_vec(),
                "sha384" => sha2::Sha384::digest(&joined).to_vec(),
                other => bail!("bank {other}"),
            };
        }
    }
    Ok(banks
        .into_iter()
        .map(|(b, v)| (b, hex::encode(v)))
        .collect())
}

/// SHA-1 through openssl (sha2 has no SHA-1; this is an oracle, not product code).
fn sha1_digest(data: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha1", "-binary"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("openssl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(data)
        .expect("write");
    child.wait_with_output().expect("openssl output").stdout
}

/// The startup locality `assay-verifier eventlog` reports, if any.
fn startup_locality(file: &PathBuf) -> Result<Option<u8>> {
    let bin = assay_tests::bin("assay-verifier")?;
    let out = Command::new(bin).arg("eventlog").arg(file).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .next()
        .and_then(|l| l.split_once("startup locality "))
        .and_then(|(_, l)| l.trim().parse().ok()))
}

fn assay_replay(file: &PathBuf) -> Result<std::result::Result<Banks, String>> {
    let bin = assay_tests::bin("assay-verifier")?;
    let out = Command::new(bin)
        .args(["eventlog", "--replay", "--output", "json"])
        .arg(file)
        .output()?;
    if out.status.code().is_none() {
        bail!(
            "assay-verifier was killed by a signal on {}",
            file.display()
        );
    }
    if !out.status.success() {
        return Ok(Err(String::from_utf8_lossy(&out.stderr).to_string()));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let mut banks = Banks::new();
    for (bank, pcrs) in v["pcrs"].as_object().context("pcrs object")? {
        let m = banks.entry(bank.clone()).or_default();
        for (i, value) in pcrs.as_object().context("bank object")? {
            m.insert(i.parse()?, value.as_str().context("hex")?.to_string());
        }
    }
    Ok(Ok(banks))
}

fn uefi_logs() -> Result<Vec<PathBuf>> {
    let mut logs = Vec::new();
    for dir in ["tpm2-tools", "go-attestation", "keylime"] {
        for entry in std::fs::read_dir(corpus_dir().join(dir))? {
            let path = entry?.path();
            if path.file_name().is_some_and(|n| n != "LICENSE") {
                logs.push(path);
            }
        }
    }
    logs.sort();
    Ok(logs)
}

#[test]
fn replay_agrees_with_tpm2_eventlog_on_every_corpus_log() -> Result<()> {
    let logs = uefi_logs()?;
    assert!(logs.len() >= 22, "corpus has {} logs", logs.len());
    let (mut agreed, mut pcr_values, mut oracle_refused) = (0, 0, vec![]);
    let mut with_locality = vec![];
    for file in &logs {
        let name = file.strip_prefix(corpus_dir())?.display().to_string();
        let ours = assay_replay(file)?;
        match (tpm2_eventlog_pcrs(file)?, ours) {
            (Some(mut theirs), Ok(mut ours)) => {
                // Banks the Spec ID event lists but no event extends: tpm2_eventlog omits them.
                ours.retain(|_, pcrs| !pcrs.is_empty());
                theirs.retain(|_, pcrs| !pcrs.is_empty());
                if let Some(locality) = startup_locality(file)?.filter(|l| *l != 0) {
                    for (bank, value) in pcr0_from_locality(file, locality)? {
                        theirs.entry(bank).or_default().insert(0, value);
                    }
                    with_locality.push(name.clone());
                }
                assert_eq!(
                    ours, theirs,
                    "{name}: replayed PCRs differ from tpm2_eventlog's"
                );
                agreed += 1;
                pcr_values += ours.values().map(BTreeMap::len).sum::<usize>();
            }
            (Some(theirs), Err(e)) => {
                panic!("{name}: we refused ({e}), tpm2_eventlog gave {theirs:?}");
            }
            (None, ours) => {
                // tpm2_eventlog rejects or crashes: we must replay or explain.
                match ours {
                    Ok(banks) => assert!(!banks.is_empty(), "{name}"),
                    Err(e) => assert!(e.contains("error:"), "{name}: unclear error {e}"),
                }
                oracle_refused.push(name);
            }
        }
    }
    eprintln!(
        "{agreed} logs agree with tpm2_eventlog ({pcr_values} PCR values compared); \
         tpm2_eventlog refused or crashed on {oracle_refused:?}; \
         PCR 0 from a startup locality in {with_locality:?}"
    );
    assert!(agreed >= 19, "only {agreed} logs compared");
    Ok(())
}

#[test]
fn logs_tpm2_eventlog_cannot_read_are_replayed_or_refused_clearly() -> Result<()> {
    // option_rom_eventlog: tpm2_eventlog 5.4 segfaults; it has Windows-style
    // EV_NO_ACTION events on "PCR -1", which are never extended.
    let option_rom = corpus_dir().join("go-attestation/option_rom_eventlog");
    let banks = assay_replay(&option_rom)?.map_err(anyhow::Error::msg)?;
    assert!(
        banks.len() == 1 && banks["sha1"].contains_key(&0) && banks["sha1"].contains_key(&7),
        "{banks:?}"
    );
    // short_no_action_eventlog: only a StartupLocality event; nothing is extended.
    let short = corpus_dir().join("go-attestation/short_no_action_eventlog");
    let banks = assay_replay(&short)?.map_err(anyhow::Error::msg)?;
    assert!(banks.values().all(BTreeMap::is_empty), "{banks:?}");
    // Keylime's bogus log is ASCII text: a clear error.
    let bogus = corpus_dir().join("keylime/binary_bios_measurements-bogus");
    let e = assay_replay(&bogus)?.expect_err("bogus log must be refused");
    assert!(e.contains("not a TCG PC Client event log"), "{e}");
    Ok(())
}
