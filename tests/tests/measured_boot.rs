//! Measured boot end to end, on swtpm with real third-party event logs: the test
//! extends a corpus log's sha256 digests into a fresh swtpm's PCRs (as firmware
//! would have), the real attestor sends that log with its quote, and the real
//! verifier judges it under a policy that `assay-verifier policy generate` wrote
//! from the attestor's own evidence bundle. Then one thing at a time is changed —
//! the log (a digest edited, truncated, reordered, an event appended) or the
//! policy (boot application forbidden, Secure Boot required) — and the verdict
//! must FAIL naming the right claim.

use std::path::{Path, PathBuf};
use std::process::Output;

use anyhow::{Context, Result};
use assay_attestor::tpm::Tpm;
use assay_core::eventlog::ima;
use assay_core::eventlog::uefi::{self, encode, Event, EventLog, Limits};
use assay_core::tpm::public::HashAlg;
use assay_tests::{attestor, bin, Swtpm, VerifierOpts, VerifierProc};
use tempfile::TempDir;

fn corpus(rel: &str) -> PathBuf {
    assay_tests::testdata(rel)
}

/// A GCE Ubuntu 21.04 shielded VM's log: 112 events, Secure Boot off, sha1 + sha256.
const GCE_LOG: &str = "eventlogs/tpm2-tools/event-gce-ubuntu-2104-log.bin";
/// Keylime's ima-ng test log (sha256 file digests).
const IMA_LOG: &str = "ima/ima-log-sha256";

/// Extends every extended event's sha256 digest into the swtpm, as firmware would.
fn replay_into_tpm(tpm: &Swtpm, log: &EventLog) -> Result<usize> {
    let mut t = Tpm::open(&tpm.tcti())?;
    let mut n = 0;
    for e in log.events.iter().filter(|e| !e.is_no_action()) {
        let d: [u8; 32] = e
            .digest(HashAlg::Sha256)
            .context("sha256 digest")?
            .try_into()?;
        t.extend_pcr_sha256(e.pcr, &d)?;
        n += 1;
    }
    Ok(n)
}

/// Extends every IMA entry of the log into PCR 10 (sha256 bank).
fn ima_into_tpm(tpm: &Swtpm, log: &ima::ImaLog) -> Result<()> {
    let mut t = Tpm::open(&tpm.tcti())?;
    for e in &log.entries {
        let d: [u8; 32] = e
            .extend_digest(HashAlg::Sha256)?
            .try_into()
            .map_err(|_| anyhow::anyhow!("len"))?;
        t.extend_pcr_sha256(e.pcr, &d)?;
    }
    Ok(())
}

struct Node {
    tpm: Swtpm,
    state: TempDir,
    files: TempDir,
}

impl Node {
    fn new() -> Result<Self> {
        Ok(Self {
            tpm: Swtpm::start()?,
            state: tempfile::tempdir()?,
            files: tempfile::tempdir()?,
        })
    }

    fn file(&self, name: &str, bytes: &[u8]) -> Result<PathBuf> {
        let p = self.files.path().join(name);
        std::fs::write(&p, bytes)?;
        Ok(p)
    }

    /// `assay-attestor collect` with this log (no verifier needed).
    fn collect(&self, uefi: &Path, ima: Option<&Path>) -> Result<PathBuf> {
        let out = self.files.path().join("bundle.pb");
        let mut cmd = std::process::Command::new(bin("assay-attestor")?);
        cmd.args(["collect", "--no-cel-log", "--nonce", "00112233", "--tcti"])
            .arg(self.tpm.tcti())
            .arg("--state-dir")
            .arg(self.state.path())
            .arg("--node-id")
            .arg("ref")
            .arg("--uefi-log")
            .arg(uefi)
            .arg("--out")
            .arg(&out);
        match ima {
            Some(p) => cmd.arg("--ima-log").arg(p),
            None => cmd.arg("--no-ima-log"),
        };
        let o = cmd.output()?;
        assert!(
            o.status.success(),
            "collect: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        Ok(out)
    }

    fn attest(&self, v: &VerifierProc, uefi: &Path, ima: Option<&Path>) -> Result<Output> {
        let mut extra = vec![
            "--uefi-log".to_string(),
            uefi.display().to_string(),
            "--output".into(),
            "json".into(),
        ];
        if let Some(p) = ima {
            extra.extend(["--ima-log".to_string(), p.display().to_string()]);
        }
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        attestor(&self.tpm, v, self.state.path(), "node-mb", "join", &extra)
    }
}

/// `assay-verifier policy generate --from-evidence BUNDLE`, checked and returned.
fn generate_policy(bundle: &Path) -> Result<String> {
    let o = std::process::Command::new(bin("assay-verifier")?)
        .args([
            "policy",
            "generate",
            "--name",
            "gce-reference",
            "--from-evidence",
        ])
        .arg(bundle)
        .output()?;
    assert!(
        o.status.success(),
        "policy generate: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    Ok(String::from_utf8(o.stdout)?)
}

/// (verdict passed, failed claims as (id, actual, location)) from `join --output json`.
fn verdict(o: &Output) -> (bool, Vec<(String, String, String)>) {
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    });
    let failed = v["claims"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .filter(|c| c["passed"] == false)
                .map(|c| {
                    (
                        c["id"].as_str().unwrap_or_default().to_string(),
                        c["actual"].as_str().unwrap_or_default().to_string(),
                        c["location"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    (v["trusted"] == true, failed)
}

fn assert_fails_with(o: &Output, claim: &str, what: &str) -> Vec<(String, String, String)> {
    let (passed, failed) = verdict(o);
    assert!(!passed, "{what}: expected FAIL");
    assert_eq!(
        o.status.code(),
        Some(3),
        "{what}: exit code 3 (not trusted)"
    );
    assert!(
        failed.iter().any(|(id, _, _)| id == claim),
        "{what}: expected failed claim {claim}, got {failed:#?}"
    );
    failed
}

#[test]
fn real_log_passes_under_generated_policy_and_each_tampering_fails() -> Result<()> {
    let bytes = std::fs::read(corpus(GCE_LOG))?;
    let log = uefi::parse(&bytes, &Limits::default())?;
    let node = Node::new()?;
    let extended = replay_into_tpm(&node.tpm, &log)?;
    assert!(extended > 100);
    let good = node.file("good.bin", &bytes)?;

    let policy = generate_policy(&node.collect(&good, None)?)?;
    assert!(
        policy.contains("secure_boot = false") && policy.contains("boot_applications"),
        "{policy}"
    );
    let v = VerifierProc::start(&VerifierOpts::new(policy.clone()))?;

    let o = node.attest(&v, &good, None)?;
    let (passed, failed) = verdict(&o);
    assert!(
        passed,
        "real log under its reference policy: {failed:#?}\n{}",
        v.log()
    );

    // 1a. One image digest changed (the first PCR 4 boot application's sha256
    //     digest: nothing in the log can show which event it was).
    let mut edited = log.clone();
    edit_first_sha256(&mut edited, |e| e.pcr == 4 && e.event_type == 0x8000_0003)?;
    let o = node.attest(&v, &node.file("edited.bin", &encode(&edited))?, None)?;
    let failed = assert_fails_with(&o, "eventlog.uefi.replay.4", "digest edited");
    assert!(
        failed
            .iter()
            .any(|(_, actual, _)| actual.contains("changed, removed, reordered")),
        "{failed:#?}"
    );
    // 1b. The digest of an event whose data it hashes (EV_EFI_ACTION): named.
    let mut edited = log.clone();
    let num = edit_first_sha256(&mut edited, |e| e.pcr == 4 && e.event_type == 0x8000_0007)?;
    let o = node.attest(&v, &node.file("edited-action.bin", &encode(&edited))?, None)?;
    let failed = assert_fails_with(&o, "eventlog.uefi.replay.4", "action digest edited");
    assert!(
        failed.iter().any(|(_, actual, _)| actual.contains(&format!(
            "event #{num} (EV_EFI_ACTION) carries a digest that is not the hash of its data"
        ))),
        "{failed:#?}"
    );

    // 2. Truncated mid-event: the log no longer parses.
    let o = node.attest(&v, &node.file("cut.bin", &bytes[..bytes.len() - 7])?, None)?;
    let failed = assert_fails_with(&o, "eventlog.uefi.format", "truncated");
    assert!(failed[0].1.contains("truncated"), "{failed:#?}");

    // 3. Two events of one PCR swapped.
    let mut reordered = log.clone();
    let idx: Vec<usize> = reordered
        .events
        .iter()
        .enumerate()
        .filter(|(_, e)| e.pcr == 7 && !e.is_no_action())
        .map(|(i, _)| i)
        .take(2)
        .collect();
    reordered.events.swap(idx[0], idx[1]);
    let o = node.attest(&v, &node.file("reordered.bin", &encode(&reordered))?, None)?;
    assert_fails_with(&o, "eventlog.uefi.replay.7", "reordered");

    // 4. An event appended that the TPM never saw: named as the first unmeasured one.
    let mut appended = log.clone();
    let mut extra = appended
        .events
        .iter()
        .rev()
        .find(|e| e.pcr == 4)
        .context("PCR 4")?
        .clone();
    extra.num = u32::try_from(appended.events.len())?;
    appended.events.push(extra.clone());
    let o = node.attest(&v, &node.file("appended.bin", &encode(&appended))?, None)?;
    let failed = assert_fails_with(&o, "eventlog.uefi.replay.4", "appended");
    assert!(
        failed
            .iter()
            .any(|(_, actual, _)| actual.contains(&format!("before event #{}", extra.num))),
        "{failed:#?}"
    );

    // 5. The policy forbids the boot application this node booted.
    let app = log
        .events
        .iter()
        .find(|e| e.pcr == 4 && e.event_type == 0x8000_0003)
        .context("boot application")?;
    let app_hex = hex::encode(app.digest(HashAlg::Sha256).context("sha256")?);
    let forbidding = policy.replace(
        &format!("\"sha256:{app_hex}\""),
        "\"sha256:0000000000000000000000000000000000000000000000000000000000000000\"",
    );
    assert_ne!(forbidding, policy);
    let v2 = VerifierProc::start(&VerifierOpts::new(forbidding))?;
    let o = node.attest(&v2, &good, None)?;
    let failed = assert_fails_with(&o, "measured_boot.boot_application", "boot app forbidden");
    assert!(
        failed
            .iter()
            .any(|(id, actual, loc)| id == "measured_boot.boot_application"
                && actual.contains(&app_hex)
                && loc.contains(&format!("#{}", app.num))),
        "{failed:#?}"
    );

    // 6. The policy requires Secure Boot, which is off on this node.
    let v3 = VerifierProc::start(&VerifierOpts::new(
        policy.replace("secure_boot = false", "secure_boot = true"),
    ))?;
    let o = node.attest(&v3, &good, None)?;
    let failed = assert_fails_with(&o, "measured_boot.secure_boot", "Secure Boot required");
    assert!(
        failed
            .iter()
            .any(|(_, actual, _)| actual == "SecureBoot disabled"),
        "{failed:#?}"
    );
    Ok(())
}

/// Flips a bit of the sha256 digest of the first event `select` picks; returns its number.
fn edit_first_sha256(log: &mut EventLog, select: impl Fn(&Event) -> bool) -> Result<u32> {
    let ev = log
        .events
        .iter_mut()
        .find(|e| select(e))
        .context("no such event")?;
    ev.digests
        .iter_mut()
        .filter(|d| d.alg_id == 0x000b)
        .for_each(|d| d.digest[0] ^= 1);
    Ok(ev.num)
}

#[test]
fn ima_log_passes_its_allowlist_and_an_unlisted_file_fails() -> Result<()> {
    let uefi_bytes = std::fs::read(corpus(GCE_LOG))?;
    let uefi = uefi::parse(&uefi_bytes, &Limits::default())?;
    let ima_bytes = std::fs::read(corpus(IMA_LOG))?;
    let ima_log = ima::parse(&ima_bytes, &ima::Limits::default())?;
    let node = Node::new()?;
    replay_into_tpm(&node.tpm, &uefi)?;
    ima_into_tpm(&node.tpm, &ima_log)?;
    let uefi_path = node.file("uefi.bin", &uefi_bytes)?;
    let ima_path = node.file("ima.txt", &ima_bytes)?;

    let policy = generate_policy(&node.collect(&uefi_path, Some(&ima_path))?)?;
    assert!(policy.contains("[ima.allowlist]"), "{policy}");
    let v = VerifierProc::start(&VerifierOpts::new(policy.clone()))?;
    let o = node.attest(&v, &uefi_path, Some(&ima_path))?;
    let (passed, failed) = verdict(&o);
    assert!(passed, "{failed:#?}\n{}", v.log());

    // Drop one file from the allowlist: that entry, and only entries of that path, fail.
    let entry = ima_log
        .entries
        .iter()
        .filter_map(|e| e.file())
        .next_back()
        .context("a file entry")?;
    let path = entry.path.clone();
    let line = policy
        .lines()
        .find(|l| l.starts_with(&format!("{:?} =", path)))
        .context("allowlist line")?;
    let narrowed = policy.replace(&format!("{line}\n"), "");
    let v2 = VerifierProc::start(&VerifierOpts::new(narrowed))?;
    let o = node.attest(&v2, &uefi_path, Some(&ima_path))?;
    let failed = assert_fails_with(&o, "ima.file", "file not in the allowlist");
    assert!(
        failed
            .iter()
            .all(|(id, actual, _)| id != "ima.file" || actual.starts_with(&path)),
        "{failed:#?}"
    );
    Ok(())
}

#[test]
fn absent_logs_explain_verify_bundle_and_policy_from_an_enrolled_node() -> Result<()> {
    let bytes = std::fs::read(corpus(GCE_LOG))?;
    let log = uefi::parse(&bytes, &Limits::default())?;
    let node = Node::new()?;
    let uefi_path = node.file("uefi.bin", &bytes)?;
    // A reference from a log the TPM never measured is refused.
    let inconsistent = node.collect(&uefi_path, None)?;
    let o = std::process::Command::new(bin("assay-verifier")?)
        .args(["policy", "generate", "--from-evidence"])
        .arg(&inconsistent)
        .output()?;
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("not the one this TPM measured"),
        "{err}"
    );

    replay_into_tpm(&node.tpm, &log)?;
    let reference = node.collect(&uefi_path, None)?;
    let policy = generate_policy(&reference)?;
    let policy_path = node.file("policy.toml", policy.as_bytes())?;
    let mut v = VerifierProc::start(&VerifierOpts::new(policy.clone()))?;

    // An absent log is reported as absent (not an error) and the claim says why.
    let missing = node.files.path().join("no-such-log");
    let o = node.attest(&v, &missing, None)?;
    let failed = assert_fails_with(&o, "eventlog.uefi.present", "log absent");
    assert!(
        failed
            .iter()
            .any(|(_, actual, _)| actual.contains("absent") && actual.contains("no-such-log")),
        "{failed:#?}"
    );

    // The real log passes; `policy explain` shows that verdict claim by claim.
    let o = node.attest(&v, &uefi_path, None)?;
    assert!(verdict(&o).0, "{:#?}", verdict(&o).1);
    let explain = v.cli(&["policy", "explain", "node-mb"])?;
    let text = String::from_utf8_lossy(&explain.stdout);
    assert!(
        explain.status.success(),
        "{}",
        String::from_utf8_lossy(&explain.stderr)
    );
    for want in [
        "PASS",
        // The verifier's name and version of the policy (the file's own
        // `name`, gce-reference, is its metadata).
        "default@1",
        "eventlog.uefi.replay.4",
        "measured_boot.boot_application",
    ] {
        assert!(text.contains(want), "explain lacks {want}:\n{text}");
    }

    // A bundle collected on the enrolled node, with a verifier's nonce.
    let bundle = node.files.path().join("node.bundle");
    let collect = std::process::Command::new(bin("assay-attestor")?)
        .args(["collect", "--no-cel-log", "--nonce", "a1b2c3d4", "--tcti"])
        .arg(node.tpm.tcti())
        .arg("--state-dir")
        .arg(node.state.path())
        .args([
            "--node-id",
            "node-mb",
            "--no-ima-log",
            "--pcrs",
            "0,1,2,3,4,5,6,7,8,9,14",
        ])
        .arg("--uefi-log")
        .arg(&uefi_path)
        .arg("--out")
        .arg(&bundle)
        .output()?;
    assert!(
        collect.status.success(),
        "{}",
        String::from_utf8_lossy(&collect.stderr)
    );

    // Offline tools read the store: sled is single-process, so stop the verifier.
    v.kill();
    let verify_bundle = |nonce: &str, policy: &Path| -> Result<Output> {
        Ok(std::process::Command::new(bin("assay-verifier")?)
            .arg("verify-bundle")
            .arg(&bundle)
            .arg("--policy")
            .arg(policy)
            .args(["--nonce", nonce, "--data-dir"])
            .arg(&v.data_dir)
            .output()?)
    };
    let ok = verify_bundle("a1b2c3d4", &policy_path)?;
    let text = String::from_utf8_lossy(&ok.stdout);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{text}\n{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(text.starts_with("verdict: PASS"), "{text}");
    // Another nonce (a replayed bundle): FAIL, exit 3, naming the nonce claim.
    let replayed = verify_bundle("ffff", &policy_path)?;
    let text = String::from_utf8_lossy(&replayed.stdout);
    assert_eq!(replayed.status.code(), Some(3), "{text}");
    assert!(text.contains("FAIL quote.nonce"), "{text}");
    // A policy requiring Secure Boot: FAIL naming it.
    let strict = node.file(
        "strict.toml",
        policy
            .replace("secure_boot = false", "secure_boot = true")
            .as_bytes(),
    )?;
    let o = verify_bundle("a1b2c3d4", &strict)?;
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(3), "{text}");
    assert!(text.contains("FAIL measured_boot.secure_boot"), "{text}");

    // `policy generate --node` from the last authentic evidence: the same rules as
    // the reference bundle gave (same log).
    let o = std::process::Command::new(bin("assay-verifier")?)
        .args([
            "policy",
            "generate",
            "--name",
            "gce-reference",
            "--node",
            "node-mb",
            "--data-dir",
        ])
        .arg(&v.data_dir)
        .output()?;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let from_node = String::from_utf8(o.stdout)?;
    let section = |p: &str| p[p.find("[measured_boot]").unwrap_or(0)..].to_string();
    assert_eq!(section(&from_node), section(&policy));
    Ok(())
}
