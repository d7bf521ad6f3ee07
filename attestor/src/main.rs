//! `assay-attestor`: the node agent's command line, for people and bootstrap scripts.
//!
//! Exit codes: 0 trusted (token printed), 1 internal error, 2 bad configuration or
//! usage, 3 not trusted (verdict FAIL, enrollment refused, or not enrolled),
//! 4 verifier unreachable (after the retries: at connect time, mid-exchange or
//! busy), 5 TPM error, 6 trusted but not joined.

use std::path::PathBuf;
use std::process::ExitCode;

use assay_attestor::config::{Config, Overrides};
use assay_attestor::flow::{self, Failure, Outcome};
use clap::{Args, Parser, Subcommand, ValueEnum};

/// Writes to stdout, ending the process quietly when stdout is a closed pipe
/// (`assay-verifier eventlog LOG | head`) instead of panicking as `print!` does.
fn emit(args: std::fmt::Arguments<'_>, newline: bool) {
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

macro_rules! outln {
    () => { emit(format_args!(""), true) };
    ($($arg:tt)*) => { emit(format_args!($($arg)*), true) };
}

#[derive(Parser)]
#[command(
    name = "assay-attestor",
    version,
    about = "Assay node agent: proves this node's boot state with its TPM"
)]
struct Cli {
    /// Log lines on stderr as `text` or as `json` (one object a line, with
    /// stable field names: node_id, seq, claim, error).
    #[arg(long, global = true, env = "ASSAY_LOG_FORMAT", value_name = "FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    cmd: Cmd,
}

/// How log lines are written (`--log-format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Cmd {
    /// Enroll if needed, attest, and print the join token (the bootstrap-script command).
    Join(JoinArgs),
    /// Enroll this node's TPM with the verifier (EK certificate, AK, credential activation).
    Enroll(Common),
    /// Print this TPM's EK identity, for registering the node with the
    /// verifier (`assay-verifier node add`): the SHA-256 of its EK certificate
    /// and of its EK public area. Needs no verifier.
    Ek(Common),
    /// Attest once and print the verdict.
    Attest(Common),
    /// Write an evidence bundle (quote, PCRs, logs, AK, EK certificate) for offline
    /// verification (`assay-verifier verify-bundle`) or a reference policy
    /// (`assay-verifier policy generate --from-evidence`). Needs no verifier.
    Collect(CollectArgs),
    /// Measure an image into the container measurement log (CEL) and its PCR, once:
    /// for OCI hooks and runtimes the agent does not watch.
    MeasureImage(MeasureImageArgs),
    /// Measure the configured container runtime binaries and configs (once each).
    MeasureRuntime(Common),
    /// The container measurement log.
    #[command(subcommand)]
    Log(LogCmd),
    /// Run as the node's agent: measure the runtime, images and container starts
    /// from containerd as they happen, and re-attest after each new measurement
    /// and every `attest_interval_secs`. One JSON line per attestation on stdout.
    Agent(AgentArgs),
}

#[derive(Args)]
struct JoinArgs {
    #[command(flatten)]
    common: Common,
    /// The orchestrator this node expects to join; a different grant from the
    /// verifier is an error (exit 6).
    #[arg(long, value_enum)]
    orchestrator: Option<Orchestrator>,
    /// Run the join command (e.g. `docker swarm join …`) once trusted; its output
    /// goes to stderr. Exit 6 if it fails.
    #[arg(long)]
    exec: bool,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Orchestrator {
    Token,
    Swarm,
    Kubeadm,
}

impl Orchestrator {
    fn name(self) -> &'static str {
        match self {
            Orchestrator::Token => "token",
            Orchestrator::Swarm => "swarm",
            Orchestrator::Kubeadm => "kubeadm",
        }
    }
}

#[derive(Args)]
struct AgentArgs {
    #[command(flatten)]
    common: Common,
    /// containerd's socket (default /run/containerd/containerd.sock).
    #[arg(long, env = "ASSAY_CONTAINERD_SOCKET")]
    containerd_socket: Option<PathBuf>,
    /// Seconds between interval attestations, jittered ±10 % (default 300;
    /// config key attest_interval_secs).
    #[arg(long, env = "ASSAY_ATTEST_INTERVAL_SECS")]
    interval_secs: Option<u64>,
    /// Stop after this many attestations (tests, one-off runs).
    #[arg(long)]
    max_attestations: Option<u64>,
    /// Serve Prometheus metrics (plain HTTP, `/metrics`) on this address, e.g.
    /// 127.0.0.1:9465 (config key metrics_listen; default: none).
    #[arg(long, env = "ASSAY_METRICS_LISTEN", value_name = "ADDR")]
    metrics_listen: Option<std::net::SocketAddr>,
}

#[derive(Args)]
struct MeasureImageArgs {
    #[command(flatten)]
    common: Common,
    /// Image reference, e.g. docker.io/library/busybox:1.36.
    #[arg(long = "ref")]
    reference: String,
    /// Manifest digest, sha256:<64 hex>.
    #[arg(long)]
    digest: String,
    /// Config digest, sha256:<64 hex>, when known.
    #[arg(long)]
    config_digest: Option<String>,
}

#[derive(Subcommand)]
enum LogCmd {
    /// Print the records (text, or --output json), checking each digest.
    Show(Common),
}

#[derive(Args)]
struct CollectArgs {
    #[command(flatten)]
    common: Common,
    /// Qualifying data for the quote, hex (at most 64 bytes), e.g. a nonce from the verifier.
    #[arg(long)]
    nonce: String,
    /// Where to write the bundle (protobuf `EvidenceBundle`).
    #[arg(long)]
    out: PathBuf,
    /// sha256 PCRs to quote.
    #[arg(long, value_delimiter = ',', default_values_t = [0u32, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 14])]
    pcrs: Vec<u32>,
    /// Leave the UEFI event log out.
    #[arg(long)]
    no_uefi_log: bool,
    /// Leave the IMA log out.
    #[arg(long)]
    no_ima_log: bool,
    /// Leave the container measurement log out.
    #[arg(long)]
    no_cel_log: bool,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Output {
    Text,
    Json,
    Env,
}

#[derive(Args)]
struct Common {
    /// TOML config file (keys: tcti, ek, state_dir, verifier, ca, node_id, retries, attest_interval_secs, uefi_log,
    /// ima_log, max_uefi_log_bytes, max_ima_log_bytes).
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
    /// Which endorsement key to enroll with: auto (default: the first with a certificate in
    /// NV, in the order rsa2048, ecc-p256, rsa3072, ecc-p384, rsa4096), or one of those.
    /// Kept in the state dir at enrollment; later runs use the kept one.
    #[arg(long, env = "ASSAY_EK")]
    ek: Option<String>,
    /// When the TPM holds no EK certificate in NV, fetch it from the TPM vendor's
    /// service (Intel PTT, AMD fTPM), check it is for this EK and keep it in the state dir.
    #[arg(long, env = "ASSAY_FETCH_EK_CERTIFICATE")]
    fetch_ek_certificate: bool,
    /// The service: auto (from the TPM's manufacturer, default), intel or amd.
    #[arg(long, env = "ASSAY_EK_CERT_SERVICE")]
    ek_cert_service: Option<String>,
    /// The service's base URL (default the vendor's: https://ekop.intel.com/ekcertservice/,
    /// https://ftpm.amd.com/pki/aia/); the EK's path is appended.
    #[arg(long, env = "ASSAY_EK_CERT_SERVICE_URL")]
    ek_cert_service_url: Option<String>,
    /// PEM CA certificates for the service's TLS certificate (default the system's).
    #[arg(long, env = "ASSAY_EK_CERT_SERVICE_CA")]
    ek_cert_service_ca: Option<PathBuf>,
    /// Where the AK blobs and enrollment record live (default /var/lib/assay-attestor).
    #[arg(long, env = "ASSAY_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// This node's id (default: the one the state dir keeps since enrollment, else the host name).
    #[arg(long, env = "ASSAY_NODE_ID")]
    node_id: Option<String>,
    /// Enroll as --node-id although the state dir holds another node id (after the operator's
    /// `assay-verifier node move OLD NEW`).
    #[arg(long)]
    rename: bool,
    /// Retries, with exponential backoff, while the verifier is unreachable, the
    /// connection fails mid-exchange or the verifier is busy (the exchange starts
    /// again: a new challenge, a new enrollment); then exit 4.
    #[arg(long, env = "ASSAY_RETRIES")]
    retries: Option<u32>,
    /// UEFI event log to send when the policy asks (default the kernel's binary_bios_measurements).
    #[arg(long, env = "ASSAY_UEFI_LOG")]
    uefi_log: Option<PathBuf>,
    /// IMA log to send when the policy asks (default the kernel's binary_runtime_measurements).
    #[arg(long, env = "ASSAY_IMA_LOG")]
    ima_log: Option<PathBuf>,
    /// Container measurement log (default /run/assay-attestor/measurements.cel).
    #[arg(long, env = "ASSAY_CEL_LOG")]
    cel_log: Option<PathBuf>,
    /// PCR for container measurements (default 13).
    #[arg(long, env = "ASSAY_CEL_PCR")]
    cel_pcr: Option<u32>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

impl Common {
    fn config(&self) -> Result<Config, Failure> {
        Config::load(self.config.as_deref(), self.overrides()).map_err(Failure::Config)
    }

    fn overrides(&self) -> Overrides {
        Overrides {
            tcti: self.tcti.clone(),
            ek: self.ek.clone(),
            fetch_ek_certificate: self.fetch_ek_certificate,
            ek_cert_service: self.ek_cert_service.clone(),
            ek_cert_service_url: self.ek_cert_service_url.clone(),
            ek_cert_service_ca: self.ek_cert_service_ca.clone(),
            state_dir: self.state_dir.clone(),
            verifier: self.verifier.clone(),
            ca: self.ca.clone(),
            node_id: self.node_id.clone(),
            rename: self.rename,
            retries: self.retries,
            uefi_log: self.uefi_log.clone(),
            ima_log: self.ima_log.clone(),
            cel_log: self.cel_log.clone(),
            cel_pcr: self.cel_pcr,
            containerd_socket: None,
            attest_interval_secs: None,
            metrics_listen: None,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // ASSAY_LOG: a tracing filter (default `warn`).
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ASSAY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        // Colour only on a terminal: never escape codes in the journal or a file.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match cli.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
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
        Cmd::Join(j) => (&j.common, rt.block_on(run_join(j))),
        Cmd::Attest(c) => (c, rt.block_on(run_attest(c))),
        Cmd::Enroll(c) => (c, rt.block_on(run_enroll(c))),
        Cmd::Collect(a) => (&a.common, run_collect(a)),
        Cmd::MeasureImage(a) => (&a.common, run_measure_image(a)),
        Cmd::MeasureRuntime(c) => (c, run_measure_runtime(c)),
        Cmd::Ek(c) => (c, run_ek(c)),
        Cmd::Log(LogCmd::Show(c)) => (c, run_log_show(c)),
        Cmd::Agent(a) => (&a.common, rt.block_on(run_agent(a))),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            match common.output {
                Output::Json => outln!(
                    "{}",
                    serde_json::json!({"result": "error", "exit_code": f.exit_code(), "error": f.to_string()})
                ),
                Output::Env => outln!(
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

fn measure_failure(e: assay_attestor::measure::MeasureError) -> Failure {
    use assay_attestor::measure::MeasureError as E;
    match e {
        E::Tampered { .. } => Failure::Untrusted(e.to_string()),
        E::Tpm(t) => Failure::Tpm(t.to_string()),
        other => Failure::Internal(other.to_string()),
    }
}

fn run_measure_image(a: &MeasureImageArgs) -> Result<u8, Failure> {
    use assay_attestor::measure::{boot_value, MeasurementLog};
    use assay_core::eventlog::cel::{is_oci_sha256, Measurement};
    let cfg = Config::load_offline(a.common.config.as_deref(), a.common.overrides())
        .map_err(Failure::Config)?;
    for (flag, d) in [
        ("--digest", Some(&a.digest)),
        ("--config-digest", a.config_digest.as_ref()),
    ] {
        if let Some(d) = d.filter(|d| !is_oci_sha256(d)) {
            return Err(Failure::Config(format!(
                "{flag}: `{d}` is not sha256:<64 lowercase hex>"
            )));
        }
    }
    if a.reference.is_empty()
        || a.reference.len() > assay_core::eventlog::cel::MAX_FIELD
        || a.reference.contains(char::is_control)
    {
        return Err(Failure::Config(
            "--ref: empty, too long or with control characters".into(),
        ));
    }
    let mut tpm =
        assay_attestor::tpm::Tpm::open(&cfg.tcti).map_err(|e| Failure::Tpm(e.to_string()))?;
    let boot = boot_value(&cfg.uefi_log, cfg.max_uefi_log_bytes, cfg.cel_pcr);
    let (mut log, _) =
        MeasurementLog::open(&cfg.cel_log, cfg.cel_pcr, boot, &mut tpm).map_err(measure_failure)?;
    let m = Measurement::Image {
        reference: a.reference.clone(),
        manifest_digest: a.digest.clone(),
        config_digest: a.config_digest.clone(),
    };
    let added = log.measure(&m, &mut tpm).map_err(measure_failure)?;
    match (a.common.output, added) {
        (Output::Json, _) => outln!(
            "{}",
            serde_json::json!({"result": "measured", "record": added, "already_measured": added.is_none()})
        ),
        (_, Some(n)) => outln!(
            "measured {} as CEL record #{n} into PCR {}",
            a.digest,
            cfg.cel_pcr
        ),
        (_, None) => outln!("{} was already measured", a.digest),
    }
    Ok(0)
}

fn run_ek(c: &Common) -> Result<u8, Failure> {
    use sha2::{Digest, Sha256};
    let cfg = Config::load_offline(c.config.as_deref(), c.overrides()).map_err(Failure::Config)?;
    let mut tpm =
        assay_attestor::tpm::Tpm::open(&cfg.tcti).map_err(|e| Failure::Tpm(e.to_string()))?;
    let tpm_err = |e: assay_attestor::tpm::TpmError| Failure::Tpm(e.to_string());
    let kind = tpm.select_ek(&cfg.state_dir, cfg.ek).map_err(tpm_err)?;
    let cert = tpm.ek_certificate_if_any().map_err(tpm_err)?;
    let public = tpm.ek_public().map_err(tpm_err)?;
    let cert_sha256 = cert.as_ref().map(|c| hex::encode(Sha256::digest(c)));
    let public_sha256 = hex::encode(Sha256::digest(&public));
    match c.output {
        Output::Json => outln!(
            "{}",
            serde_json::json!({
                "ek": kind.name(),
                "ek_cert_nv_index": format!("{:#010x}", kind.certificate_index()),
                "ek_cert_sha256": cert_sha256,
                "ek_public_sha256": public_sha256,
                "ek_certificate_der_base64": cert.as_ref().map(|c| {
                    use base64::Engine as _;
                    base64::engine::general_purpose::STANDARD.encode(c)
                }),
            })
        ),
        Output::Env => {
            outln!(
                "ASSAY_EK_CERT_SHA256={}",
                cert_sha256.as_deref().unwrap_or("")
            );
            outln!("ASSAY_EK_PUBLIC_SHA256={public_sha256}");
            outln!("ASSAY_EK={kind}");
        }
        Output::Text => {
            outln!(
                "EK: {kind} (certificate at NV {:#010x})",
                kind.certificate_index()
            );
            match &cert_sha256 {
                Some(h) => outln!("EK certificate sha256: {h}"),
                None => {
                    outln!("EK certificate sha256: (none: this TPM holds no EK certificate in NV)")
                }
            }
            outln!("EK public area sha256: {public_sha256}");
            let node = cfg.node_id.as_str();
            match &cert_sha256 {
                Some(h) => outln!("register with: assay-verifier node add {node} --ek-sha256 {h}"),
                None => outln!(
                    "register with: assay-verifier node add {node} --ek-public-sha256 {public_sha256}"
                ),
            }
        }
    }
    Ok(0)
}

fn run_measure_runtime(c: &Common) -> Result<u8, Failure> {
    let cfg = Config::load_offline(c.config.as_deref(), c.overrides()).map_err(Failure::Config)?;
    let mut tpm =
        assay_attestor::tpm::Tpm::open(&cfg.tcti).map_err(|e| Failure::Tpm(e.to_string()))?;
    let added = flow::measure_runtime(&cfg, &mut tpm).map_err(Failure::Internal)?;
    match c.output {
        Output::Json => outln!(
            "{}",
            serde_json::json!({"result": "measured", "new_records": added})
        ),
        _ => outln!("{added} new runtime measurements"),
    }
    Ok(0)
}

fn run_log_show(c: &Common) -> Result<u8, Failure> {
    use assay_core::eventlog::cel;
    let cfg = Config::load_offline(c.config.as_deref(), c.overrides()).map_err(Failure::Config)?;
    let bytes = match std::fs::read(&cfg.cel_log) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            return Err(Failure::Config(format!(
                "cel_log {}: {e}",
                cfg.cel_log.display()
            )))
        }
    };
    let log = cel::parse(&bytes, &cel::Limits::default())
        .map_err(|e| Failure::Internal(format!("{}: {e}", cfg.cel_log.display())))?;
    match c.output {
        Output::Json => {
            let records: Vec<serde_json::Value> = log
                .records
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "recnum": r.recnum,
                        "pcr": r.pcr,
                        "digests": r.digests,
                        "content_proven": r.content_proven(),
                        "measurement": r.measurement().map_or_else(|e| serde_json::json!({"error": e}), |m| serde_json::to_value(m).unwrap_or_default()),
                    })
                })
                .collect();
            outln!(
                "{}",
                serde_json::json!({"log": cfg.cel_log, "records": records})
            );
        }
        _ => {
            outln!("{}: {} records", cfg.cel_log.display(), log.records.len());
            for r in &log.records {
                let m = r
                    .measurement()
                    .map_or_else(|e| format!("(undecodable: {e})"), |m| format!("{m:?}"));
                outln!(
                    "#{:<4} PCR {:<2} sha256:{}{} {m}",
                    r.recnum,
                    r.pcr,
                    r.digest(assay_core::tpm::public::HashAlg::Sha256)
                        .map(hex::encode)
                        .unwrap_or_default(),
                    if r.content_proven() {
                        ""
                    } else {
                        " [CONTENT DOES NOT MATCH DIGEST]"
                    }
                );
            }
        }
    }
    Ok(0)
}

async fn run_agent(a: &AgentArgs) -> Result<u8, Failure> {
    let mut o = a.common.overrides();
    o.containerd_socket = a.containerd_socket.clone();
    o.attest_interval_secs = a.interval_secs;
    o.metrics_listen = a.metrics_listen;
    let cfg = Config::load(a.common.config.as_deref(), o).map_err(Failure::Config)?;
    if let Some(addr) = cfg.metrics_listen {
        assay_attestor::metrics::install(addr).map_err(Failure::Config)?;
    }
    assay_attestor::agent::run(&cfg, a.max_attestations).await?;
    Ok(0)
}

fn run_collect(a: &CollectArgs) -> Result<u8, Failure> {
    use prost::Message;
    let cfg = Config::load_offline(a.common.config.as_deref(), a.common.overrides())
        .map_err(Failure::Config)?;
    let nonce = hex::decode(a.nonce.trim())
        .map_err(|e| Failure::Config(format!("--nonce: not hex ({e})")))?;
    let mut tpm =
        assay_attestor::tpm::Tpm::open(&cfg.tcti).map_err(|e| Failure::Tpm(e.to_string()))?;
    let bundle = flow::collect(
        &cfg,
        &mut tpm,
        &nonce,
        &a.pcrs,
        !a.no_uefi_log,
        !a.no_ima_log,
        !a.no_cel_log,
    )?;
    let bytes = bundle.encode_to_vec();
    std::fs::write(&a.out, &bytes)
        .map_err(|e| Failure::Config(format!("--out {}: {e}", a.out.display())))?;
    let ev = bundle.evidence.unwrap_or_default();
    let describe = |log: &Option<Vec<u8>>, key: &str| match log {
        Some(b) => format!("{} bytes", b.len()),
        None => ev
            .log_notes
            .iter()
            .find(|n| n.starts_with(key))
            .cloned()
            .unwrap_or_else(|| "not collected".into()),
    };
    match a.common.output {
        Output::Json => outln!(
            "{}",
            serde_json::json!({"result": "collected", "out": a.out, "bytes": bytes.len(),
                "pcrs_sha256": a.pcrs, "uefi_log": describe(&ev.uefi_log, "uefi_log"),
                "ima_log": describe(&ev.ima_log, "ima_log")})
        ),
        _ => outln!(
            "wrote {} ({} bytes): quote over sha256 PCRs {:?}; UEFI log: {}; IMA log: {}",
            a.out.display(),
            bytes.len(),
            a.pcrs,
            describe(&ev.uefi_log, "uefi_log"),
            describe(&ev.ima_log, "ima_log")
        ),
    }
    Ok(0)
}

async fn run_enroll(c: &Common) -> Result<u8, Failure> {
    let cfg = c.config()?;
    let mut tpm =
        assay_attestor::tpm::Tpm::open(&cfg.tcti).map_err(|e| Failure::Tpm(e.to_string()))?;
    let e = flow::with_retries(&cfg, async |ch| flow::enroll(&cfg, &mut tpm, ch).await).await?;
    match c.output {
        Output::Json => outln!("{}", serde_json::to_string_pretty(&e).unwrap_or_default()),
        Output::Env => outln!(
            "ASSAY_NODE_ID={}\nASSAY_AK_NAME={}",
            shell_quote(&e.node_id),
            e.ak_name
        ),
        Output::Text => outln!(
            "enrolled node {} with {}: AK {} is bound to this TPM's EK",
            e.node_id,
            e.verifier,
            e.ak_name
        ),
    }
    Ok(0)
}

async fn run_attest(c: &Common) -> Result<u8, Failure> {
    let cfg = c.config()?;
    let mut tpm =
        assay_attestor::tpm::Tpm::open(&cfg.tcti).map_err(|e| Failure::Tpm(e.to_string()))?;
    let o = flow::with_retries(&cfg, async |ch| flow::attest(&cfg, &mut tpm, ch).await).await?;
    print_outcome(&o, c.output);
    Ok(if o.trusted {
        0
    } else {
        Failure::Untrusted(String::new()).exit_code()
    })
}

async fn run_join(j: &JoinArgs) -> Result<u8, Failure> {
    let cfg = j.common.config()?;
    let o = flow::join(&cfg).await?;
    print_outcome(&o, j.common.output);
    if !o.trusted {
        return Ok(Failure::Untrusted(String::new()).exit_code());
    }
    if let Some(e) = &o.join_error {
        eprintln!("warning: {e}");
    }
    let wanted = j.orchestrator.map(Orchestrator::name);
    if wanted.is_none() && !j.exec {
        return Ok(0);
    }
    let grant = o.grant.as_ref().ok_or_else(|| {
        Failure::Join(
            o.join_error
                .clone()
                .unwrap_or_else(|| "the verifier issued no join grant".into()),
        )
    })?;
    if let Some(w) = wanted {
        if grant.orchestrator != w {
            return Err(Failure::Join(format!(
                "expected a `{w}` grant, the verifier issued `{}`: check `[join] orchestrator` in the verifier's config",
                grant.orchestrator
            )));
        }
    }
    if j.exec {
        let Some((prog, args)) = grant.command.split_first() else {
            return Err(Failure::Join(format!(
                "`{}` grants have no join command to run; hand the token to your orchestrator",
                grant.orchestrator
            )));
        };
        // The command's own output goes to stderr: stdout stays this tool's answer.
        let status = std::process::Command::new(prog)
            .args(args)
            .stdout(std::io::stderr())
            .status()
            .map_err(|e| Failure::Join(format!("running `{prog}`: {e}")))?;
        if !status.success() {
            // Never the arguments: they hold the secret.
            return Err(Failure::Join(format!(
                "the `{prog}` join command failed: {status}"
            )));
        }
        eprintln!("joined the {} orchestrator", grant.orchestrator);
    }
    Ok(0)
}

fn print_outcome(o: &Outcome, out: Output) {
    match out {
        Output::Json => outln!("{}", serde_json::to_string_pretty(o).unwrap_or_default()),
        Output::Env => {
            outln!("ASSAY_NODE_ID={}", shell_quote(&o.node_id));
            outln!(
                "ASSAY_RESULT={}",
                if o.trusted { "trusted" } else { "untrusted" }
            );
            outln!("ASSAY_HISTORY_SEQ={}", o.history_seq);
            if let (Some(t), Some(exp)) = (&o.token, o.token_expires_unix) {
                outln!("ASSAY_JOIN_TOKEN={t}\nASSAY_JOIN_TOKEN_EXPIRES={exp}");
            }
            if let Some(g) = &o.grant {
                outln!("ASSAY_JOIN_ORCHESTRATOR={}", g.orchestrator);
                outln!("ASSAY_JOIN_SECRET={}", shell_quote(&g.token));
                outln!("ASSAY_JOIN_ENDPOINT={}", shell_quote(&g.endpoint));
                outln!("ASSAY_JOIN_CA_CERT_HASH={}", shell_quote(&g.ca_cert_hash));
                outln!("ASSAY_JOIN_EXPIRES={}", g.expires_unix);
                let cmd: Vec<String> = g.command.iter().map(|a| shell_quote(a)).collect();
                outln!("ASSAY_JOIN_COMMAND={}", shell_quote(&cmd.join(" ")));
            }
        }
        Output::Text => {
            let verdict = if o.trusted { "TRUSTED" } else { "NOT TRUSTED" };
            // Seq 0: the verifier could not authenticate the evidence (quote
            // signature, AK or nonce), so it counted it and recorded nothing.
            let recorded = match o.history_seq {
                0 => "not recorded: the quote's signature, AK or nonce did not verify".to_string(),
                seq => format!("history #{seq}"),
            };
            outln!(
                "{verdict}: node {} under policy {} (sha256:{}), {recorded}",
                o.node_id,
                o.policy_name,
                o.policy_digest,
            );
            for c in &o.claims {
                let mark = if c.passed { "pass" } else { "FAIL" };
                if c.passed {
                    outln!("  {mark} {}", c.id);
                } else {
                    outln!(
                        "  {mark} {} at {}: expected {}, got {}",
                        c.id,
                        c.location,
                        c.expected,
                        c.actual
                    );
                }
            }
            if let (Some(t), Some(exp)) = (&o.token, o.token_expires_unix) {
                outln!("join token (single use, expires at {exp}):\n{t}");
            }
            if let Some(g) = o.grant.as_ref().filter(|g| !g.command.is_empty()) {
                let cmd: Vec<String> = g.command.iter().map(|a| shell_quote(a)).collect();
                outln!(
                    "join command ({}, valid until {}):\n{}",
                    g.orchestrator,
                    g.expires_unix,
                    cmd.join(" ")
                );
            }
        }
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}
