//! `assay-verifier policy import-keylime` with Keylime 7.14.3 as the oracle.
//!
//! Keylime's own runtime policies (`tests/data/keylime-policies`, copied
//! from its repository) and a generated one with excludes are imported with
//! the real binary; IMA logs are made for each (every file allowed or
//! excluded; one file with a wrong digest; a path not in the policy; excluded
//! paths with any digest; paths that only look excluded), and each log is
//! judged twice: by Keylime's own `ima.process_measurement_list`
//! (`tests/keylime/import_compare.py`, in the venv `tests/keylime/venv.sh`
//! makes, which this test creates if missing, and fails if it cannot) and by
//! `assay_core::verify::verify_quote` over a software-AK quote of the log's
//! replayed PCR 10. Their verdicts and failing paths must be the same.
//! Random exclude patterns are checked the same way against Keylime's own
//! exclude check, path by path.
//!
//! Most policies are judged as Keylime's verifier judges them without a
//! measured-boot log: the log's `boot_aggregate` must be listed, so each
//! variant lists this boot's, imported with `--boot-aggregate allowlist`.
//! Keylime's policies as published are also imported as they are, with the
//! default `--boot-aggregate recompute`, and judged against Keylime given the
//! boot aggregate its verifier takes from a measured-boot log.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use assay_core::policy::Policy;
use assay_core::tpm::public::HashAlg;
use assay_core::verify::testutil::{shared_rsa_ak, Scenario};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A file of `tests/data/keylime-policies` (Keylime's, see its MANIFEST.tsv).
fn keylime_policy(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data/keylime-policies")
        .join(name)
}

/// The Keylime venv's python, made by `tests/keylime/venv.sh` if missing
/// (as `tests/keylime/run.sh` makes it); the test fails if it cannot be.
fn keylime_python() -> &'static Path {
    static PY: OnceLock<PathBuf> = OnceLock::new();
    PY.get_or_init(|| {
        let out = Command::new("bash")
            .arg(repo().join("tests/keylime/venv.sh"))
            .output()
            .expect("running tests/keylime/venv.sh");
        assert!(
            out.status.success(),
            "the Keylime 7.14.3 venv could not be made (tests/keylime/venv.sh):\n{}",
            assay_tests::output_text(&out)
        );
        let py = String::from_utf8(out.stdout).unwrap();
        PathBuf::from(py.lines().last().expect("venv.sh prints the python").trim())
    })
}

// --- IMA logs -------------------------------------------------------------

/// The simulated boot's PCRs 0-9 (sha256 bank).
fn boot_pcrs() -> Vec<Vec<u8>> {
    (0u8..10)
        .map(|i| Sha256::digest([b'p', i]).to_vec())
        .collect()
}

/// The kernel's boot_aggregate for the sha256 bank: SHA-256 over PCRs 0-9.
fn boot_aggregate() -> Vec<u8> {
    Sha256::digest(boot_pcrs().concat()).to_vec()
}

#[derive(Clone)]
struct Measurement {
    path: String,
    alg: String,
    digest: Vec<u8>,
    /// An `ima-buf` entry's buffer (`path` is then the buffer's name).
    buf: Option<Vec<u8>>,
}

fn m(path: &str, alg: &str, digest: Vec<u8>) -> Measurement {
    Measurement {
        path: path.into(),
        alg: alg.into(),
        digest,
        buf: None,
    }
}

/// An `ima-buf` measurement of `buf` (sha256) named `name`.
fn buffer(name: &str, buf: &[u8]) -> Measurement {
    Measurement {
        path: name.into(),
        alg: "sha256".into(),
        digest: Sha256::digest(buf).to_vec(),
        buf: Some(buf.to_vec()),
    }
}

/// The X.509 certificate (ECDSA P-256) Keylime's test_ima_verification.py
/// measures into the `.ima` keyring (its `KEYRINGS` entry), DER in hex.
const IMA_KEYRING_CERT: &str = concat!(
    "308201d130820178a003020102020101300906072a8648ce3d0401301b3119301706035504030c1054657374696e672d",
    "45434453412d4341301e170d3231303631313133353831365a170d3232303631313133353831365a3021311f301d0603",
    "5504030c1665636473612d63612d7369676e65642d65632d6b65793059301306072a8648ce3d020106082a8648ce3d03",
    "0107034200044ce55be36765b59de2767f6d6721be8bea8e3db4ccc25ab76c30f5d1c11752ae1699cc39d31b378f69fe",
    "cbe65ce1eb09e075f840fe4c052bafb9039742b76202a381a73081a430090603551d1304023000301d0603551d0e0416",
    "0414b6fb3c083d19695be441c5f59afb95742cb6058c30560603551d23044f304d80140a51da379e45bd7ac623c3f765",
    "b53e1e2dde5195a11fa41d301b3119301706035504030c1054657374696e672d45434453412d434182142bb351b0d645",
    "e4d8594316ac3c96fc6d9c83791530130603551d25040c300a06082b06010505070302300b0603551d0f040403020780",
    "300906072a8648ce3d04010348003045022033d47b623c9feefab7d6e68b001ac6463433f99b61ce7b951a32da065a5d",
    "17af022100f3d73e38070053aec63a941ed36ae0dcfa25ed9cd538c459732a7e782132a4ca",
);

/// The RSA-2048 public key (SubjectPublicKeyInfo) of that test's verification keys.
const RSA_SPKI_B64: &str = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA1cD7bW5tX5qIVgWskS5tzY+XpqWzcW6HFq5npj8dHFIWsAJJCUdoSU631hkyY8HP/RfXDPq/J4IeKvx35EVXj49t1Z1FTJBgUlEbkKvqm0rY6jo7PnJ6BsDRrauXtiEXVKNXcWXDk8ES+9v9Cz26BJYAr+5Xgm2aEyAbj8GhicxUZfsjDm8eJ7ZnQKuhF7jejG5dYAYxnBVu99bQJHI5Fsu3dAjGbys9v7ToNbonS+1bJXdHyEE0swhxBOPvvV6vx5CzRNw1Sou3rT19T4j8wpsFOyYXVcbbRVBAmBE2Qy2UHvojFqaJN/A9lztllyER1S5heGG6CxK3GoR6pkOXAQIDAQAB";

const KEXEC_CMDLINE: &[u8] = b"root=/dev/vda1 ro console=ttyS0";

/// A digest of `len` bytes made from `seed`.
fn fake_digest(seed: &str, len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0u8;
    while out.len() < len {
        out.extend(Sha256::digest([seed.as_bytes(), &[i]].concat()));
        i += 1;
    }
    out.truncate(len);
    out
}

fn alg_of_len(len: usize) -> &'static str {
    match len {
        20 => "sha1",
        32 => "sha256",
        48 => "sha384",
        64 => "sha512",
        n => panic!("no algorithm for {n} bytes"),
    }
}

/// An ascii `ima-ng` log: boot_aggregate, then `files`; and the PCR 10 it
/// replays to (sha256 bank: SHA-256 of each entry's template data).
struct Log {
    paths: Vec<String>,
    text: String,
    pcr10: Vec<u8>,
}

fn ima_log(files: &[Measurement]) -> Log {
    ima_log_booted(boot_aggregate(), files)
}

/// [`ima_log`] with another boot_aggregate.
fn ima_log_booted(aggregate: Vec<u8>, files: &[Measurement]) -> Log {
    let mut all = vec![m("boot_aggregate", "sha256", aggregate)];
    all.extend_from_slice(files);
    let mut pcr = vec![0u8; 32];
    let mut text = String::new();
    for e in &all {
        // d-ng: "alg:" NUL digest; n-ng: name NUL; each u32-LE length prefixed.
        let d = [e.alg.as_bytes(), b":\0", &e.digest].concat();
        // ima-buf: then buf, u32-LE length prefixed.
        let n = [e.path.as_bytes(), b"\0"].concat();
        let mut data = [
            &(d.len() as u32).to_le_bytes()[..],
            &d,
            &(n.len() as u32).to_le_bytes(),
            &n,
        ]
        .concat();
        let (template, buf_field) = match &e.buf {
            Some(b) => {
                data.extend((b.len() as u32).to_le_bytes());
                data.extend(b);
                ("ima-buf", format!(" {}", hex::encode(b)))
            }
            None => ("ima-ng", String::new()),
        };
        text.push_str(&format!(
            "10 {} {template} {}:{} {}{buf_field}\n",
            hex::encode(HashAlg::Sha1.digest(&data)),
            e.alg,
            hex::encode(&e.digest),
            e.path
        ));
        pcr = Sha256::digest([pcr, Sha256::digest(&data).to_vec()].concat()).to_vec();
    }
    Log {
        paths: all.into_iter().map(|e| e.path).collect(),
        text,
        pcr10: pcr,
    }
}

/// One measurement per listed path, with its first digest (algorithm by length).
fn allowed_files(policy: &Value) -> Vec<Measurement> {
    policy["digests"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(p, _)| p.starts_with('/'))
        .map(|(p, d)| {
            let digest = hex::decode(d[0].as_str().unwrap()).unwrap();
            m(p, alg_of_len(digest.len()), digest)
        })
        .collect()
}

// --- The two judges ---------------------------------------------------------

#[derive(Debug, PartialEq, Eq)]
struct Judgement {
    pass: bool,
    /// Paths of the failing entries, in log order (and failed claims that are
    /// about no entry, as `claim:ID`).
    failing: Vec<String>,
}

/// Assay: the policy parsed as the verifier parses it, a software-AK quote
/// over PCRs 0-10 (PCR 10 as the log replays), `verify_quote`.
fn assay_judge(toml: &str, log: &Log) -> Judgement {
    let policy = Policy::parse("imported.toml", toml).unwrap_or_else(|e| panic!("{e}\n{toml}"));
    let mut pcrs: Vec<(u32, Vec<u8>)> = boot_pcrs()
        .into_iter()
        .enumerate()
        .map(|(i, v)| (i as u32, v))
        .collect();
    pcrs.push((10, log.pcr10.clone()));
    let outcome = Scenario::with(shared_rsa_ak(), pcrs, policy)
        .verify_with_logs(None, Some(log.text.as_bytes()));
    let mut failing = Vec::new();
    for c in outcome.verdict.claims.iter().filter(|c| !c.passed) {
        let entry = c
            .location
            .strip_prefix("IMA entry #")
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse::<usize>().ok());
        let path = match entry {
            Some(i) if c.id.starts_with("ima.") => log.paths[i].clone(),
            _ => format!("claim:{} ({})", c.id, c.actual),
        };
        if failing.last() != Some(&path) {
            failing.push(path);
        }
    }
    Judgement {
        pass: outcome.verdict.passed,
        failing,
    }
}

/// Keylime: every (policy, log) at once, in one Python.
fn keylime_judge(dir: &Path, cases: &[(PathBuf, &Log)]) -> Vec<Value> {
    let cases: Vec<_> = cases.iter().map(|(p, l)| (p.clone(), *l, false)).collect();
    keylime_judge_booted(dir, &cases)
}

/// [`keylime_judge`]; with `true`, Keylime is also given this boot's
/// aggregate, as its verifier takes it from a measured-boot log.
fn keylime_judge_booted(dir: &Path, cases: &[(PathBuf, &Log, bool)]) -> Vec<Value> {
    let mut list = Vec::new();
    for (i, (policy, log, booted)) in cases.iter().enumerate() {
        let path = dir.join(format!("log-{i}.ascii"));
        std::fs::write(&path, &log.text).unwrap();
        let mut case = json!({"policy": policy, "log": path, "pcr10": hex::encode(&log.pcr10)});
        if *booted {
            case["boot_aggregates"] = json!({"sha256": [hex::encode(boot_aggregate())]});
        }
        list.push(case);
    }
    let cases_file = dir.join("cases.json");
    std::fs::write(&cases_file, serde_json::to_vec(&list).unwrap()).unwrap();
    let out = Command::new(keylime_python())
        .arg(repo().join("tests/keylime/import_compare.py"))
        .arg("judge-many")
        .arg(&cases_file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "import_compare.py: {}",
        assay_tests::output_text(&out)
    );
    let v: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v.len(), cases.len());
    v
}

fn keylime_judgement(v: &Value) -> Judgement {
    assert!(
        v["valid"].as_bool().unwrap(),
        "Keylime refuses the policy: {}",
        v["error"]
    );
    Judgement {
        pass: v["pass"].as_bool().unwrap(),
        failing: v["failing"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap_or("<unparsable>").to_string())
            .collect(),
    }
}

/// `assay-verifier policy import-keylime FILE ARGS…`.
fn import(file: &Path, args: &[&str]) -> Output {
    Command::new(assay_tests::bin("assay-verifier").unwrap())
        .args(["policy", "import-keylime"])
        .arg(file)
        .args(args)
        .output()
        .unwrap()
}

/// Imports `file` with `--boot-aggregate MODE` and returns the policy text.
fn import_ok(file: &Path, mode: &str) -> String {
    let out = import(file, &["--boot-aggregate", mode]);
    assert!(
        out.status.success(),
        "{}: {}",
        file.display(),
        assay_tests::output_text(&out)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `policy` with this boot's boot_aggregate listed.
fn with_this_boot(mut policy: Value) -> Value {
    let agg = Value::String(hex::encode(boot_aggregate()));
    let digests = policy["digests"].as_object_mut().unwrap();
    let list = digests.entry("boot_aggregate").or_insert_with(|| json!([]));
    list.as_array_mut().unwrap().push(agg);
    policy
}

fn read_json(path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A policy with excludes that use Python's `re` the way real ones do, and
/// paths that need TOML escaping.
fn generated_policy() -> Value {
    let d = |seed: &str, len: usize| json!([hex::encode(fake_digest(seed, len))]);
    json!({
        "meta": {"version": 1, "generator": 0, "timestamp": "generated by tests/tests/keylime_import.rs"},
        "release": 2,
        "digests": {
            "/usr/bin/bash": d("bash", 32),
            "/usr/lib/x86_64-linux-gnu/libc.so.6": [hex::encode(fake_digest("libc-a", 32)), hex::encode(fake_digest("libc-b", 32))],
            "/etc/ld.so.cache": d("ld.so.cache", 20),
            "/usr/sbin/sshd": d("sshd", 48),
            "/usr/lib/modules/6.1.0/kernel/fs/ext4.ko": d("ext4", 64),
            "/opt/ünïcødé/bin": d("unicode", 32),
            "/opt/quote\"and\\backslash": d("quote", 32),
            "/opt/hash#and'apostrophe": d("hash", 32),
        },
        "excludes": [
            "/tmp/.*",
            "/var/log",
            "^/proc/[0-9]+/",
            r".*\.pyc$",
            r"/home/[^/]+/\.cache/",
            "(?i:/media/usb/)",
            r"/run/user/\d+/",
            "/srv/(?:a|b)c{2,}",
            r"/dev/shm\Z",
            "/mnt/x{,2}y",
            r"/data/[\w.-]+\.tmp$",
            r"/x\x41\101$",
        ],
        "keyrings": {},
        "ima": {"ignored_keyrings": [], "log_hash_alg": "sha1", "dm_policy": null},
        "ima-buf": {},
        "verification-keys": "",
    })
}

/// Paths the generated policy's excludes match (at the start, as `re.match`).
const EXCLUDED: &[&str] = &[
    "/tmp/build/x.o",
    "/var/log/syslog",
    "/var/logger",
    "/proc/1234/status",
    "/usr/lib/python3/dist-packages/a.pyc",
    "/home/alice/.cache/thumb",
    "/MEDIA/USB/photo",
    "/run/user/1000/bus",
    "/srv/bccc/data",
    "/dev/shm",
    "/mnt/y",
    "/mnt/xxy/z",
    "/data/foo_bar-1.tmp",
    "/xAA",
];

/// Paths that look excluded but are not.
const NEAR_MISSES: &[&str] = &[
    "/tm/x",
    "/var/lo",
    "/proc/self/status",
    "/usr/lib/x.pyc.bak",
    "/home/alice/cache/x",
    "/media/us/x",
    "/run/user/abc/x",
    "/srv/ac",
    "/dev/shm/x",
    "/mnt/xxxy",
    "/data/foo+bar.tmp",
    "/xAAA",
];

/// The generated policy's buffers: a key measured into `.ima` (listed under
/// `keyrings`) and a kexec command line (listed under `ima-buf`).
fn generated_buffers() -> Vec<Measurement> {
    vec![
        buffer(".ima", &hex::decode(IMA_KEYRING_CERT).unwrap()),
        buffer("kexec-cmdline", KEXEC_CMDLINE),
    ]
}

/// One log to judge, and the verdict both judges must give.
struct Case {
    what: String,
    policy: PathBuf,
    toml: String,
    log: Log,
    /// Keylime is given this boot's aggregate (a measured-boot log's).
    booted: bool,
    expected: Judgement,
}

/// Judges every case with both; the differences (and unexpected verdicts).
fn differences(dir: &Path, cases: &[Case]) -> Vec<String> {
    let keylime = keylime_judge_booted(
        dir,
        &cases
            .iter()
            .map(|c| (c.policy.clone(), &c.log, c.booted))
            .collect::<Vec<_>>(),
    );
    let mut problems = Vec::new();
    for (c, k) in cases.iter().zip(&keylime) {
        let k = keylime_judgement(k);
        let a = assay_judge(&c.toml, &c.log);
        if a != k {
            problems.push(format!("{}: Assay {a:?}, Keylime {k:?}", c.what));
        } else if a != c.expected {
            problems.push(format!("{}: both {a:?}, expected {:?}", c.what, c.expected));
        }
    }
    problems
}

/// Keylime's own policies Keylime 7.14.3 accepts.
const KEYLIME_POLICIES: &[&str] = &[
    "create-runtime-policy-policy-sha1.json",
    "create-runtime-policy-policy-sha256.json",
    "create-runtime-policy-policy-sha384.json",
    "create-runtime-policy-policy-sha512.json",
    "create-runtime-policy-policy-sm3_256.json",
    "sign-runtime-policy-runtime-policy.json",
    "sign-runtime-policy-runtime-policy-empty.json",
    "test_ima_verification-RUNTIME_POLICY_WITH_VERIFICATION_KEYS.json",
];

/// Each policy, each log, both judges: the same verdict and failing paths;
/// and each verdict the expected one.
#[test]
fn keylime_and_assay_judge_imported_policies_alike() {
    let dir = tempfile::tempdir().unwrap();
    let mut sources: Vec<(String, Value)> = KEYLIME_POLICIES
        .iter()
        .map(|n| (n.to_string(), with_this_boot(read_json(&keylime_policy(n)))))
        .collect();
    let mut generated = generated_policy();
    generated["keyrings"] =
        json!({".ima": [hex::encode(Sha256::digest(hex::decode(IMA_KEYRING_CERT).unwrap()))]});
    generated["ima-buf"] = json!({"kexec-cmdline": [hex::encode(Sha256::digest(KEXEC_CMDLINE))]});
    sources.push((
        "generated-with-excludes.json".into(),
        with_this_boot(generated),
    ));

    let mut cases = Vec::new();
    let mut add =
        |what: String, policy: &Path, toml: &str, log: Log, booted: bool, failing: Vec<&str>| {
            cases.push(Case {
                what,
                policy: policy.to_path_buf(),
                toml: toml.to_string(),
                log,
                booted,
                expected: Judgement {
                    pass: failing.is_empty(),
                    failing: failing.into_iter().map(String::from).collect(),
                },
            })
        };
    for (name, policy) in &sources {
        let file = dir.path().join(name);
        std::fs::write(&file, serde_json::to_vec(policy).unwrap()).unwrap();
        let toml = import_ok(&file, "allowlist");
        let mut files = allowed_files(policy);
        let generated = name.starts_with("generated");
        if generated {
            files.extend(generated_buffers());
        }
        add(
            format!("{name}: every file allowed"),
            &file,
            &toml,
            ima_log(&files),
            false,
            vec![],
        );
        if let Some(i) = files
            .iter()
            .position(|f| f.buf.is_none() && f.path != "boot_aggregate")
        {
            let mut bad = files.clone();
            let len = bad[i].digest.len();
            bad[i].digest = fake_digest("tampered", len);
            let what = format!("{name}: {} with a wrong digest", bad[i].path);
            add(
                what,
                &file,
                &toml,
                ima_log(&bad),
                false,
                vec![&files[i].path],
            );
        }
        let mut extra = files.clone();
        extra.push(m(
            "/usr/bin/not-in-the-policy",
            "sha256",
            fake_digest("extra", 32),
        ));
        let what = format!("{name}: a path not in the policy");
        add(
            what,
            &file,
            &toml,
            ima_log(&extra),
            false,
            vec!["/usr/bin/not-in-the-policy"],
        );
        if !generated {
            continue;
        }
        let mut excluded = files.clone();
        for (i, p) in EXCLUDED.iter().enumerate() {
            let len = [20, 32, 48, 64][i % 4];
            excluded.push(m(p, alg_of_len(len), fake_digest(p, len)));
        }
        let what = format!("{name}: excluded paths, any digest");
        add(what, &file, &toml, ima_log(&excluded), false, vec![]);
        let mut near = files.clone();
        for p in NEAR_MISSES {
            near.push(m(p, "sha256", fake_digest(p, 32)));
        }
        let what = format!("{name}: paths that only look excluded");
        add(
            what,
            &file,
            &toml,
            ima_log(&near),
            false,
            NEAR_MISSES.to_vec(),
        );
        // Buffers: another key into .ima, another kexec command line.
        let mut bufs = files.clone();
        bufs.push(buffer(
            ".ima",
            &base64::Engine::decode(&base64::engine::general_purpose::STANDARD, RSA_SPKI_B64)
                .unwrap(),
        ));
        bufs.push(buffer("kexec-cmdline", b"root=/dev/vda1 rw init=/bin/sh"));
        let what = format!("{name}: a key and a command line not listed");
        add(
            what,
            &file,
            &toml,
            ima_log(&bufs),
            false,
            vec![".ima", "kexec-cmdline"],
        );
    }
    // A DSSE envelope around one of Keylime's policies (signature not checked by either).
    let (_, inner) = &sources[5];
    let envelope = json!({
        "payload": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, serde_json::to_vec(inner).unwrap()),
        "payloadType": "application/vnd.keylime+json",
        "signatures": [{"keyid": "", "sig": ""}],
    });
    let file = dir.path().join("dsse-envelope.json");
    std::fs::write(&file, serde_json::to_vec(&envelope).unwrap()).unwrap();
    let toml = import_ok(&file, "allowlist");
    let files = allowed_files(inner);
    add(
        "dsse-envelope.json: every file allowed".into(),
        &file,
        &toml,
        ima_log(&files),
        false,
        vec![],
    );
    // Keylime's policies as published. With `allowlist`, the log's
    // boot_aggregate fails (no value listed). With `recompute`, Assay checks
    // it against the quoted PCRs 0-9, as Keylime checks it against a
    // measured-boot log's: both pass this boot's and fail another's.
    for name in KEYLIME_POLICIES {
        let file = keylime_policy(name);
        let files = allowed_files(&read_json(&file));
        let toml = import_ok(&file, "allowlist");
        let what = format!("{name} as published, allowlist: this boot's aggregate not listed");
        add(
            what,
            &file,
            &toml,
            ima_log(&files),
            false,
            vec!["boot_aggregate"],
        );
        let toml = import_ok(&file, "recompute");
        let what = format!("{name} as published, recompute: this boot");
        add(what, &file, &toml, ima_log(&files), true, vec![]);
        let other_boot = Sha256::digest(b"another boot").to_vec();
        let what = format!("{name} as published, recompute: another boot's aggregate");
        add(
            what,
            &file,
            &toml,
            ima_log_booted(other_boot, &files),
            true,
            vec!["boot_aggregate"],
        );
    }

    let problems = differences(dir.path(), &cases);
    assert!(
        problems.is_empty(),
        "{} of {} cases differ:\n{}",
        problems.len(),
        cases.len(),
        problems.join("\n")
    );
    assert!(cases.len() >= 50, "{} cases", cases.len());
}

/// What Keylime refuses, the import refuses; and a digest Keylime accepts
/// but can never match is refused with the reason.
#[test]
fn import_refuses_what_keylime_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let log = ima_log(&[m("/rootfs_data", "sha256", fake_digest("rootfs", 32))]);
    let unknown = dir.path().join("policy-unknown-with-boot.json");
    std::fs::write(
        &unknown,
        serde_json::to_vec(&with_this_boot(read_json(&keylime_policy(
            "create-runtime-policy-policy-unknown.json",
        ))))
        .unwrap(),
    )
    .unwrap();
    let cases: Vec<(PathBuf, &str, bool)> = vec![
        // (policy, what the import says, Keylime accepts the policy)
        (
            keylime_policy("sign-runtime-policy-runtime-policy-bogus.json"),
            "not a Keylime runtime policy: key must be a string at line 2 column 1",
            false,
        ),
        (
            keylime_policy("runtime-policy-test.json"),
            "RUNTIME_POLICY_SCHEMA refuses it: `digests.\"boot_aggregate\"[0]` = \"sha256:4309",
            false,
        ),
        (
            keylime_policy("runtime-policy-test-signed.json"),
            "RUNTIME_POLICY_SCHEMA refuses it: `digests.\"boot_aggregate\"[0]` = \"sha256:4309",
            false,
        ),
        (
            unknown.clone(),
            "has 62 hex digits: no digest has that length",
            true,
        ),
    ];
    let keylime = keylime_judge(
        dir.path(),
        &cases
            .iter()
            .map(|(p, _, _)| (p.clone(), &log))
            .collect::<Vec<_>>(),
    );
    for ((policy, said, keylime_valid), k) in cases.iter().zip(&keylime) {
        let out = import(policy, &[]);
        let text = assay_tests::output_text(&out);
        assert_eq!(out.status.code(), Some(1), "{}: {text}", policy.display());
        assert!(text.contains(said), "{}: {text}", policy.display());
        assert_eq!(
            k["valid"].as_bool(),
            Some(*keylime_valid),
            "{}: {k}",
            policy.display()
        );
    }
    // The 62-digit digest Keylime accepts fails every measurement of its path.
    let k = keylime_judgement(&keylime[3]);
    assert_eq!(
        k,
        Judgement {
            pass: false,
            failing: vec!["/rootfs_data".into()]
        }
    );
}

/// Exclude lists Keylime 7.14.3 cannot compile as one Python regex are
/// ignored by Keylime at attestation, wholly: the import refuses them, and
/// says why, rather than exclude what Keylime would judge.
#[test]
fn excludes_keylime_ignores_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut cases = Vec::new();
    for (name, excludes, said) in [
        (
            "global-flag",
            json!(["(?i)/tmp/.*"]),
            "Python 3.11 refuses global flags",
        ),
        (
            "group-twice",
            json!(["/a(?P<x>b)", "/tmp(?P<x>/)"]),
            "group name \"x\" is also used by excludes[0]",
        ),
        (
            "lookahead",
            json!(["/tmp/(?!keep)"]),
            "lookahead at position 5",
        ),
        (
            "backreference",
            json!([r"/tmp/(a)\1"]),
            "backreference at position 8",
        ),
    ] {
        let mut policy = with_this_boot(generated_policy());
        policy["excludes"] = excludes;
        let file = dir.path().join(format!("{name}.json"));
        std::fs::write(&file, serde_json::to_vec(&policy).unwrap()).unwrap();
        let out = import(&file, &[]);
        let text = assay_tests::output_text(&out);
        assert_eq!(out.status.code(), Some(1), "{name}: {text}");
        assert!(text.contains(said), "{name}: {text}");
        cases.push((name, file, policy));
    }
    let logs: Vec<Log> = cases
        .iter()
        .map(|(_, _, p)| {
            let mut files = allowed_files(p);
            files.push(m("/tmp/x", "sha256", fake_digest("tmp", 32)));
            ima_log(&files)
        })
        .collect();
    let keylime = keylime_judge(
        dir.path(),
        &cases
            .iter()
            .zip(&logs)
            .map(|((_, f, _), l)| (f.clone(), l))
            .collect::<Vec<_>>(),
    );
    // Keylime: the global flag and the repeated name make it drop every exclude.
    for (i, expected_failing) in [(0, true), (1, true), (2, false), (3, true)] {
        let k = keylime_judgement(&keylime[i]);
        assert_eq!(
            k.failing.contains(&"/tmp/x".to_string()),
            expected_failing,
            "{}: {k:?}",
            cases[i].0
        );
    }
}

/// The differences the import warns about, shown: Keylime matches digests
/// without their algorithm and accepts relative names Assay cannot list
/// (Assay is stricter); Keylime fails an ima-buf entry no list names, Assay
/// judges only the buffers it lists (Assay is looser).
#[test]
fn known_differences_are_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let mut policy = with_this_boot(read_json(&keylime_policy(
        "create-runtime-policy-policy-sm3_256.json",
    )));
    policy["digests"]["relative-name"] = json!([hex::encode(fake_digest("relative", 32))]);
    let file = dir.path().join("sm3-and-relative.json");
    std::fs::write(&file, serde_json::to_vec(&policy).unwrap()).unwrap();
    let out = import(&file, &["--boot-aggregate", "allowlist"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    for warning in [
        "(sm3, sha3-256, streebog, …) and the same hex passes Keylime and fails Assay",
        "digests: 1 names are not absolute paths and are left out (\"relative-name\")",
        "Assay judges only the names [ima.buffers] lists and passes the others",
    ] {
        assert!(stderr.contains(warning), "{warning}: {stderr}");
    }
    let toml = String::from_utf8(out.stdout).unwrap();
    let sm3 = hex::decode(policy["digests"]["/rootfs_data"][0].as_str().unwrap()).unwrap();
    let pass = || Judgement {
        pass: true,
        failing: vec![],
    };
    let fail = |p: &str| Judgement {
        pass: false,
        failing: vec![p.into()],
    };
    let cases = [
        (
            ima_log(&[m("/rootfs_data", "sm3", sm3)]),
            pass(),
            fail("/rootfs_data"),
        ),
        (
            ima_log(&[m("relative-name", "sha256", fake_digest("relative", 32))]),
            pass(),
            fail("relative-name"),
        ),
        (
            ima_log(&[buffer("kexec-cmdline", KEXEC_CMDLINE)]),
            fail("kexec-cmdline"),
            pass(),
        ),
    ];
    let keylime = keylime_judge(
        dir.path(),
        &cases
            .iter()
            .map(|(l, _, _)| (file.clone(), l))
            .collect::<Vec<_>>(),
    );
    for ((log, keylime_says, assay_says), k) in cases.iter().zip(&keylime) {
        assert_eq!(&keylime_judgement(k), keylime_says, "{}", log.text);
        assert_eq!(&assay_judge(&toml, log), assay_says, "{}", log.text);
    }
}

/// Random exclude patterns (the syntax real ones use), each with random
/// paths: every pattern the import takes excludes exactly the paths Keylime's
/// own exclude check excludes (`validators.valid_exclude_list`, then
/// `re.match`), as the verifier compiles it.
#[test]
fn imported_excludes_exclude_what_keylime_excludes() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(keylime_python())
        .arg(repo().join("tests/keylime/import_compare.py"))
        .args(["regex-oracle", "20261204", "600"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "regex-oracle: {}",
        assay_tests::output_text(&out)
    );
    let oracle: Vec<(String, Vec<(String, bool)>)> = serde_json::from_slice(&out.stdout).unwrap();
    let refused_at = regex::Regex::new(r"excludes\[(\d+)\] ").unwrap();
    let (mut refused, mut checked, mut mismatches) = (Vec::new(), 0, Vec::new());
    for (n, chunk) in oracle.chunks(150).enumerate() {
        let mut batch: Vec<&(String, Vec<(String, bool)>)> = chunk.iter().collect();
        let file = dir.path().join(format!("excludes-{n}.json"));
        // Refused patterns are taken out one at a time, until the rest imports.
        let rules = loop {
            let mut policy = generated_policy();
            policy["excludes"] = json!(batch.iter().map(|(p, _)| p).collect::<Vec<_>>());
            std::fs::write(&file, serde_json::to_vec(&policy).unwrap()).unwrap();
            let out = import(&file, &["--boot-aggregate", "allowlist"]);
            let text = assay_tests::output_text(&out);
            if out.status.success() {
                let toml = String::from_utf8(out.stdout).unwrap();
                break Policy::parse("excludes.toml", &toml)
                    .unwrap()
                    .ima()
                    .unwrap()
                    .clone();
            }
            let i: usize = refused_at
                .captures(&text)
                .and_then(|c| c[1].parse().ok())
                .unwrap_or_else(|| panic!("not an exclude refusal: {text}"));
            refused.push(text.trim().to_string());
            batch.remove(i);
        };
        assert_eq!(rules.excludes.len(), batch.len());
        for ((pattern, paths), assay) in batch.iter().zip(&rules.excludes) {
            for (path, excluded) in paths {
                checked += 1;
                if assay.is_match(path) != *excluded {
                    mismatches.push(format!(
                        "{pattern:?} as {:?} on {path:?}: Keylime excludes it: {excluded}",
                        assay.as_str()
                    ));
                }
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {checked} differ:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    // Most are imported; the rest are refused with a reason (printed).
    eprintln!(
        "{} of {} patterns refused:\n{}",
        refused.len(),
        oracle.len(),
        refused.join("\n")
    );
    assert!(
        refused.len() * 10 < oracle.len(),
        "{} refused",
        refused.len()
    );
    assert!(checked > 20_000, "{checked}");
}
