//! Assay's side of the side-by-side benchmark with Keylime (`tests/keylime/run.sh`).
//!
//! Reads the evidence directory run.sh makes on swtpm (quotes from `tpm2_quote`,
//! AKs from `tpm2_createak`, the UEFI logs, the IMA log and its allowlist), times
//! assay-core on each step Keylime's side (`tests/keylime/compare.py`) times on
//! the same bytes, checks that good evidence passes and bad evidence fails, and
//! prints JSON. Without an evidence directory (e.g. under a plain `cargo bench`)
//! it says so and exits 0.
//!
//! `side_by_side EVIDENCE_DIR` (or `ASSAY_SIDE_BY_SIDE_EVIDENCE=DIR`)

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use assay_core::eventlog::ima;
use assay_core::eventlog::uefi::{self, EventLog, Limits};
use assay_core::policy::reference::{self, toml_str};
use assay_core::policy::Policy;
use assay_core::tpm::public::{parse_tpm2b_public, HashAlg};
use assay_core::verdict::Verdict;
use assay_core::verify::testutil::{replayed_pcrs_of, shared_rsa_ak, Scenario};
use assay_core::verify::{verify_quote, QuoteCheck, QuoteEvidence};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// PCRs the measured-boot policy replays (Keylime's "example" policy judges the same).
const MB_PCRS: [u32; 11] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 14];
/// Every PCR of the whole-verification quote, as `tpm2_pcrread` wrote them.
const ALL_PCRS: [u32; 12] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 14];
/// A kernel command line the boot did not have (the bad measured-boot policy).
const OTHER_CMDLINE: &str = "console=ttyS0";

/// Median time of `f` in µs and the run count: at most `MAX_N` runs, stopping
/// after `BUDGET` once `MIN_N` are done.
fn timed<T>(mut f: impl FnMut() -> T) -> (f64, usize) {
    const MAX_N: usize = 20_000;
    const MIN_N: usize = 10;
    const BUDGET: Duration = Duration::from_secs(1);
    let mut times = Vec::new();
    let start = Instant::now();
    while times.len() < MAX_N {
        let t = Instant::now();
        black_box(f());
        times.push(t.elapsed().as_secs_f64());
        if times.len() >= MIN_N && start.elapsed() > BUDGET {
            break;
        }
    }
    times.sort_by(f64::total_cmp);
    let mid = times.len() / 2;
    let median = if times.len() % 2 == 1 {
        times[mid]
    } else {
        (times[mid - 1] + times[mid]) / 2.0
    };
    (median * 1e6, times.len())
}

/// The PCR values of a `tpm2_quote -o` file (tpm2-tools' default `-F serialized`:
/// TPML_PCR_SELECTION then the TPML_DIGESTs, as the structs lie in memory,
/// little-endian), sha256 bank, in selection order: what Keylime's
/// `tpm_util.__get_pcrs_from_blob` reads.
fn parse_pcr_file(b: &[u8]) -> Result<Vec<(u32, Vec<u8>)>, String> {
    let u16_at = |o: usize| -> Result<u16, String> {
        b.get(o..o + 2)
            .map(|s| u16::from_le_bytes([s[0], s[1]]))
            .ok_or_else(|| "short PCR file".to_string())
    };
    let u32_at = |o: usize| -> Result<u32, String> {
        b.get(o..o + 4)
            .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
            .ok_or_else(|| "short PCR file".to_string())
    };
    let count = u32_at(0)? as usize;
    if count > 16 {
        return Err(format!("{count} PCR selections"));
    }
    let mut indices = Vec::new();
    for i in 0..count {
        let o = 4 + 8 * i;
        let (alg, size) = (u16_at(o)?, b.get(o + 2).copied().unwrap_or(0) as usize);
        if alg != HashAlg::Sha256.to_tpm() {
            return Err(format!("bank {alg:#06x} is not sha256"));
        }
        let select = b.get(o + 3..o + 3 + size.min(4)).ok_or("short PCR file")?;
        for (byte, bits) in select.iter().enumerate() {
            for bit in 0..8 {
                if bits & (1 << bit) != 0 {
                    indices.push((byte * 8 + bit) as u32);
                }
            }
        }
    }
    let mut o = 4 + 16 * 8;
    let lists = u32_at(o)? as usize;
    o += 4;
    let mut values = Vec::new();
    for _ in 0..lists {
        o += 4; // TPML_DIGEST.count
        for _ in 0..8 {
            let size = u16_at(o)? as usize;
            if size > 0 {
                values.push(b.get(o + 2..o + 2 + size).ok_or("short PCR file")?.to_vec());
            }
            o += 2 + 64;
        }
    }
    if o != b.len() || values.len() != indices.len() {
        return Err(format!(
            "PCR file: {} selected, {} values, {} of {} bytes read",
            indices.len(),
            values.len(),
            o,
            b.len()
        ));
    }
    Ok(indices.into_iter().zip(values).collect())
}

/// Pass/fail and a short account of a verdict.
fn judge(v: &Verdict) -> (bool, String) {
    if v.passed {
        return (true, format!("accepted ({} claims)", v.claims.len()));
    }
    let failed: Vec<String> = v
        .failed()
        .take(4)
        .map(|c| {
            let actual: String = c.actual.chars().take(90).collect();
            format!("{}: {actual}", c.id)
        })
        .collect();
    (false, failed.join("; "))
}

/// `[measured_boot]` for a known-good log as `assay-verifier policy generate`
/// writes it (`assay_core::policy::reference`), judging `MB_PCRS` (what
/// Keylime's policy judges). `cmdline` replaces the kernel command lines (the
/// bad policy).
fn measured_boot_section(log: &EventLog, cmdline: Option<&str>) -> String {
    let generated = reference::measured_boot_section(log);
    let mut t: toml::Table = toml::from_str(&generated).expect("a generated section parses");
    let mb = t
        .get_mut("measured_boot")
        .and_then(toml::Value::as_table_mut)
        .expect("[measured_boot]");
    let pcrs = MB_PCRS.iter().map(|i| toml::Value::from(i64::from(*i)));
    mb.insert("pcrs".into(), toml::Value::Array(pcrs.collect()));
    if let Some(c) = cmdline {
        mb.insert("kernel_cmdlines".into(), toml::Value::Array(vec![c.into()]));
    }
    toml::to_string(&t).expect("a section serializes")
}

/// `[ima]` allowing exactly the (path, sha256) pairs of an allowlist TSV.
fn ima_section(tsv: &str) -> String {
    let mut out = String::from("[ima]\n[ima.allowlist]\n");
    for line in tsv.lines() {
        let (path, digest) = line.split_once('\t').expect("path TAB digest");
        let _ = writeln!(out, "{} = [\"sha256:{digest}\"]", toml_str(path));
    }
    out
}

fn policy(sections: &[&str]) -> Policy {
    let text = format!("schema = 1\nname = \"side-by-side\"\n{}", sections.concat());
    Policy::parse("side-by-side.toml", &text).unwrap_or_else(|e| panic!("policy: {e}"))
}

/// Replayed sha256 values of `pcrs` (the reset value for a PCR the log does not extend).
fn replayed(log: &EventLog, pcrs: &[u32]) -> BTreeMap<String, String> {
    replayed_pcrs_of(log, pcrs)
        .into_iter()
        .map(|(i, v)| (i.to_string(), hex::encode(v)))
        .collect()
}

struct Evidence {
    dir: PathBuf,
    nonce: Vec<u8>,
    /// `tpm2_pcrread` of ALL_PCRS, by index.
    tpm_pcrs: BTreeMap<u32, Vec<u8>>,
}

impl Evidence {
    fn read(&self, name: &str) -> Vec<u8> {
        let p = self.dir.join(name);
        std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }
}

/// One quote from the evidence dir, verified as the verifier would on receiving
/// it: AK public area (TPM2B_PUBLIC) and PCR file parsed, then `verify_quote`.
struct QuoteFiles {
    ak: Vec<u8>,
    attest: Vec<u8>,
    signature: Vec<u8>,
    pcrs: Vec<u8>,
}

impl QuoteFiles {
    fn load(ev: &Evidence, ak: &str, prefix: &str, pcrs: Option<&str>) -> Self {
        Self {
            ak: ev.read(ak),
            attest: ev.read(&format!("{prefix}.msg")),
            signature: ev.read(&format!("{prefix}.sig")),
            pcrs: ev.read(pcrs.unwrap_or(&format!("{prefix}.pcrs"))),
        }
    }

    fn verify(
        &self,
        nonce: &[u8],
        policy: &Policy,
        uefi_log: Option<&[u8]>,
        ima_log: Option<&[u8]>,
    ) -> Verdict {
        let ak = parse_tpm2b_public(&self.ak).expect("AK public area");
        let pcrs = parse_pcr_file(&self.pcrs).expect("PCR file");
        let check = QuoteCheck {
            ak: &ak,
            expected_nonce: nonce,
            previous_clock: None,
            policy,
            // No measured-boot cache: every run judges the log (as Keylime does).
            cache: None,
            ima_state: None,
        };
        let evidence = QuoteEvidence {
            attest: &self.attest,
            signature: &self.signature,
            pcrs_sha256: &pcrs,
            uefi_log,
            ima_log,
            cel_log: None,
            ima_first_entry: 0,
        };
        verify_quote(&check, &evidence).verdict
    }
}

fn step(good: &Verdict, bad: &Verdict, (us, n): (f64, usize)) -> Value {
    let (good_pass, good_detail) = judge(good);
    let (bad_pass, bad_detail) = judge(bad);
    json!({
        "median_us": us, "n": n,
        "good_pass": good_pass, "good_detail": good_detail,
        "bad_pass": bad_pass, "bad_detail": bad_detail,
    })
}

fn main() {
    let dir = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .or_else(|| std::env::var("ASSAY_SIDE_BY_SIDE_EVIDENCE").ok());
    let Some(dir) = dir else {
        eprintln!("side_by_side: no evidence directory given; run tests/keylime/run.sh");
        return;
    };
    let mut ev = Evidence {
        dir: PathBuf::from(dir),
        nonce: Vec::new(),
        tpm_pcrs: BTreeMap::new(),
    };
    ev.nonce = hex::decode(String::from_utf8(ev.read("nonce.hex")).unwrap().trim()).unwrap();
    let pcrread = ev.read("pcrread_all.bin");
    assert_eq!(pcrread.len(), 32 * ALL_PCRS.len(), "pcrread_all.bin");
    ev.tpm_pcrs = ALL_PCRS
        .iter()
        .zip(pcrread.chunks(32))
        .map(|(i, v)| (*i, v.to_vec()))
        .collect();
    let out = run(&ev);
    println!("{}", serde_json::to_string_pretty(&out).unwrap());
    let mut problems = Vec::new();
    for (id, r) in out.as_object().unwrap() {
        if r.get("median_us").is_some() && r["good_pass"] != json!(true) {
            problems.push(format!("{id}: good evidence failed: {}", r["good_detail"]));
        }
        if r["bad_pass"] != json!(false) {
            problems.push(format!("{id}: bad evidence passed: {}", r["bad_detail"]));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

fn run(ev: &Evidence) -> Value {
    let mut out = serde_json::Map::new();
    let limits = Limits::default();

    // 1. Quote check (parse AK + PCR file, signature, format, nonce, selection,
    // digest), judged against the TPM's PCR values as golden values.
    let mut golden = String::from("schema = 0\nname = \"golden\"\n[pcrs.sha256]\n");
    for (i, v) in &ev.tpm_pcrs {
        let _ = writeln!(golden, "{i} = \"{}\"", hex::encode(v));
    }
    let golden = Policy::parse("golden.toml", &golden).expect("golden policy");
    for (id, ak, prefix) in [
        ("quote_rsa", "ak_rsa.pub", "q_all_rsa"),
        ("quote_ecdsa", "ak_ecc.pub", "q_all_ecc"),
    ] {
        let q = QuoteFiles::load(ev, ak, prefix, None);
        let bad = QuoteFiles::load(ev, ak, prefix, Some(&format!("{prefix}.pcrs.bad")));
        let good_v = q.verify(&ev.nonce, &golden, None, None);
        let bad_v = bad.verify(&ev.nonce, &golden, None, None);
        let t = timed(|| q.verify(black_box(&ev.nonce), &golden, None, None));
        out.insert(id.into(), step(&good_v, &bad_v, t));
    }

    // 2. UEFI logs.
    let gce = ev.read("uefi_gce.bin");
    let gce_bad = ev.read("uefi_gce.bad.bin");
    let sb = ev.read("uefi_sb.bin");
    let sb_bad = ev.read("uefi_sb.bad.bin");
    let parse = |b: &[u8]| uefi::parse(b, &limits).expect("UEFI log parses");

    // 2a. GCE log: parse + replay.
    let gce_log = parse(&gce);
    let gce_vals = replayed(&gce_log, &MB_PCRS);
    let gce_bad_vals = replayed(&parse(&gce_bad), &MB_PCRS);
    let diff: Vec<&String> = gce_vals
        .keys()
        .filter(|k| gce_bad_vals[*k] != gce_vals[*k])
        .collect();
    let t = timed(|| uefi::replay(&uefi::parse(black_box(&gce), &limits).unwrap()));
    out.insert(
        "uefi_gce_replay".into(),
        json!({
            "median_us": t.0, "n": t.1,
            "good_pass": true, "good_detail": "parsed and replayed",
            "bad_pass": diff.is_empty(),
            "bad_detail": format!("replay differs from the good log's in PCR {diff:?}"),
            "replay": gce_vals, "events": gce_log.events.len(),
        }),
    );

    // 2b. GCE log under a measured-boot policy: no TPM booted this log, so the
    // quote is a software AK's (testutil), over the log's replayed PCRs.
    let quoted: Vec<(u32, Vec<u8>)> = gce_vals
        .iter()
        .map(|(i, v)| (i.parse().unwrap(), hex::decode(v).unwrap()))
        .collect::<BTreeMap<u32, Vec<u8>>>()
        .into_iter()
        .collect();
    let good_s = Scenario::with(
        shared_rsa_ak(),
        quoted.clone(),
        policy(&[&measured_boot_section(&gce_log, None)]),
    );
    let bad_s = Scenario::with(
        shared_rsa_ak(),
        quoted,
        policy(&[&measured_boot_section(&gce_log, Some(OTHER_CMDLINE))]),
    );
    let (attest, sig) = good_s.signed();
    let good_v = good_s
        .verify_signed_with_logs(&attest, &sig, Some(&gce), None)
        .verdict;
    let bad_v = bad_s
        .verify_signed_with_logs(&attest, &sig, Some(&gce), None)
        .verdict;
    let t = timed(|| good_s.verify_signed_with_logs(&attest, &sig, Some(black_box(&gce)), None));
    out.insert("uefi_gce_policy".into(), step(&good_v, &bad_v, t));

    // 2c. The secure-boot log the TPM replayed: parse + replay, against the TPM.
    let sb_log = parse(&sb);
    let sb_vals = replayed(&sb_log, &MB_PCRS);
    let sb_bad_vals = replayed(&parse(&sb_bad), &MB_PCRS);
    let off = |vals: &BTreeMap<String, String>| -> Vec<u32> {
        MB_PCRS
            .iter()
            .filter(|i| vals[&i.to_string()] != hex::encode(&ev.tpm_pcrs[i]))
            .copied()
            .collect()
    };
    let (good_off, bad_off) = (off(&sb_vals), off(&sb_bad_vals));
    let t = timed(|| uefi::replay(&uefi::parse(black_box(&sb), &limits).unwrap()));
    out.insert(
        "uefi_sb_replay".into(),
        json!({
            "median_us": t.0, "n": t.1,
            "good_pass": good_off.is_empty(),
            "good_detail": if good_off.is_empty() { "replay equals the TPM's PCRs".to_string() }
                else { format!("replay differs from the TPM in PCR {good_off:?}") },
            "bad_pass": bad_off.is_empty(),
            "bad_detail": format!("replay differs from the TPM in PCR {bad_off:?}"),
            "replay": sb_vals, "events": sb_log.events.len(),
        }),
    );

    // 2d. Quote over PCR 0-9, 14 + the log + the measured-boot policy.
    let mb_good = measured_boot_section(&sb_log, None);
    let mb_bad = measured_boot_section(&sb_log, Some(OTHER_CMDLINE));
    let (p_good, p_bad) = (policy(&[&mb_good]), policy(&[&mb_bad]));
    let q_mb = QuoteFiles::load(ev, "ak_rsa.pub", "q_mb_rsa", None);
    let good_v = q_mb.verify(&ev.nonce, &p_good, Some(&sb), None);
    let bad_v = q_mb.verify(&ev.nonce, &p_bad, Some(&sb), None);
    let t = timed(|| q_mb.verify(&ev.nonce, &p_good, Some(black_box(&sb)), None));
    out.insert("uefi_sb_policy".into(), step(&good_v, &bad_v, t));

    // 3. IMA.
    let ima_text = ev.read("ima.ascii");
    let ima_bad = ev.read("ima.bad.ascii");
    let ima_limits = ima::Limits::default();
    let ima_replay = |b: &[u8]| ima::replay(&ima::parse(b, &ima_limits).unwrap(), HashAlg::Sha256);
    let pcr10 = |b: &[u8]| {
        let r = ima_replay(b).expect("IMA replay");
        let clean = r.mismatched.is_empty() && r.violations.is_empty();
        (hex::encode(&r.pcrs[&10]), clean)
    };
    let ((good10, clean), (bad10, _)) = (pcr10(&ima_text), pcr10(&ima_bad));
    let tpm10 = hex::encode(&ev.tpm_pcrs[&10]);
    let t = timed(|| ima_replay(black_box(&ima_text)));
    out.insert(
        "ima_replay".into(),
        json!({
            "median_us": t.0, "n": t.1,
            "good_pass": clean && good10 == tpm10,
            "good_detail": if good10 == tpm10 { "replay equals the TPM's PCR 10" } else { "replay differs from the TPM's PCR 10" },
            "bad_pass": bad10 == tpm10,
            "bad_detail": if bad10 == tpm10 { "replay equals the TPM's PCR 10" } else { "replay differs from the TPM's PCR 10" },
            "replay": {"10": good10}, "bad_replay": {"10": bad10},
        }),
    );

    // 3b. Quote over PCR 10 + IMA log + allowlist.
    let allow = String::from_utf8(ev.read("allowlist.tsv")).unwrap();
    let allow_bad = String::from_utf8(ev.read("allowlist.bad.tsv")).unwrap();
    let (ima_good, ima_badp) = (ima_section(&allow), ima_section(&allow_bad));
    let (p_good, p_bad) = (policy(&[&ima_good]), policy(&[&ima_badp]));
    let q_ima = QuoteFiles::load(ev, "ak_rsa.pub", "q_ima_rsa", None);
    let good_v = q_ima.verify(&ev.nonce, &p_good, None, Some(&ima_text));
    let bad_v = q_ima.verify(&ev.nonce, &p_bad, None, Some(&ima_text));
    let t = timed(|| q_ima.verify(&ev.nonce, &p_good, None, Some(black_box(&ima_text))));
    out.insert("ima_policy".into(), step(&good_v, &bad_v, t));

    // 4. Whole: quote over PCR 0-10, 14 + UEFI log + measured-boot policy + IMA
    // log + allowlist. Bad: another nonce than the one the quote was made for.
    let whole = policy(&[&mb_good, &ima_good]);
    let q_all = QuoteFiles::load(ev, "ak_rsa.pub", "q_all_rsa", None);
    let other_nonce = Sha256::digest(&ev.nonce).to_vec();
    let good_v = q_all.verify(&ev.nonce, &whole, Some(&sb), Some(&ima_text));
    let bad_v = q_all.verify(&other_nonce, &whole, Some(&sb), Some(&ima_text));
    let t = timed(|| q_all.verify(&ev.nonce, &whole, Some(black_box(&sb)), Some(&ima_text)));
    out.insert("whole".into(), step(&good_v, &bad_v, t));

    // 1c. Probe: the PCR file relabeled (PCR 14's value reported as PCR 15).
    let relabeled = QuoteFiles::load(
        ev,
        "ak_rsa.pub",
        "q_all_rsa",
        Some("q_all_rsa.pcrs.relabel"),
    );
    let (bad_pass, bad_detail) = judge(&relabeled.verify(&ev.nonce, &golden, None, None));
    let (whole_pass, whole_detail) =
        judge(&relabeled.verify(&ev.nonce, &whole, Some(&sb), Some(&ima_text)));
    out.insert(
        "quote_relabel".into(),
        json!({
            "bad_pass": bad_pass, "bad_detail": bad_detail,
            "whole_pass": whole_pass, "whole_detail": whole_detail,
        }),
    );
    Value::Object(out)
}
