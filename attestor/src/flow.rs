//! The node side of the protocol: enroll (EK cert + AK, credential activation),
//! then challenge → quote → verdict (+ join token). Every failure is classified
//! so the binary can exit with a code a bootstrap script can act on; a transient
//! one ([`Transient`]) starts the exchange again ([`with_retries`]).

use std::path::Path;

use assay_proto::v1 as pb;
use serde::Serialize;
use tonic::transport::Channel;
use tonic::Code;
use tracing::{info, warn};

use crate::config::Config;
use crate::logs::{self, LogRead};
use crate::measure;
use crate::retry::Backoff;
pub use crate::retry::Transient;
use crate::tpm::Tpm;
use assay_core::eventlog::cel::Measurement;

/// Why the attestor failed; each kind has its own exit code.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("configuration: {0}")]
    Config(String),
    #[error("not trusted: {0}")]
    Untrusted(String),
    #[error("verifier unreachable: {0}")]
    Unreachable(String),
    /// One exchange with the verifier failed in a way worth repeating (the
    /// connection broke under a request, or the verifier is busy):
    /// [`with_retries`] starts it again, and reports [`Failure::Unreachable`]
    /// once its retries are spent.
    #[error("{0}: {1}")]
    Transient(Transient, String),
    #[error("TPM: {0}")]
    Tpm(String),
    #[error("not enrolled: {0}")]
    NotEnrolled(String),
    #[error("joining the orchestrator: {0}")]
    Join(String),
    #[error("{0}")]
    Internal(String),
}

impl Failure {
    /// Exit codes (documented in README.md): 2 config, 3 not trusted (or not
    /// enrolled), 4 unreachable (or a transient failure, after the retries),
    /// 5 TPM, 6 trusted but the join grant was not issued or the join command
    /// failed, 1 other.
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Config(_) => 2,
            Failure::Untrusted(_) | Failure::NotEnrolled(_) => 3,
            Failure::Unreachable(_) | Failure::Transient(..) => 4,
            Failure::Tpm(_) => 5,
            Failure::Join(_) => 6,
            Failure::Internal(_) => 1,
        }
    }

    fn from_status(what: &str, s: tonic::Status) -> Self {
        if let Some(kind) = Transient::of(&s) {
            return Failure::Transient(kind, format!("{what}: {}", status_cause(&s)));
        }
        let msg = format!("{what}: {}", s.message());
        match s.code() {
            Code::PermissionDenied | Code::Unauthenticated => Failure::Untrusted(msg),
            Code::InvalidArgument => Failure::Config(msg),
            Code::NotFound => Failure::NotEnrolled(msg),
            _ => Failure::Internal(msg),
        }
    }
}

/// A status's message and the transport errors under it, each said once.
fn status_cause(s: &tonic::Status) -> String {
    let msg = s.message();
    match std::error::Error::source(s).map(assay_proto::client::causes) {
        Some(c) if c.contains(msg) => c,
        Some(c) if !msg.contains(&c) => format!("{msg}: {c}"),
        _ => msg.to_string(),
    }
}

fn tpm_err(e: impl std::fmt::Display) -> Failure {
    Failure::Tpm(e.to_string())
}

pub use crate::enrollment::Enrollment;

/// The outcome of one attestation.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub node_id: String,
    pub trusted: bool,
    pub policy_name: String,
    pub policy_digest: String,
    pub history_seq: u64,
    pub claims: Vec<ClaimOut>,
    pub token: Option<String>,
    pub token_expires_unix: Option<i64>,
    /// What the orchestrator issued on a pass (`[join]` in the verifier's config).
    pub grant: Option<Grant>,
    /// Why a pass came without a grant.
    pub join_error: Option<String>,
}

/// A join grant, with the command that uses it.
#[derive(Debug, Clone, Serialize)]
pub struct Grant {
    pub orchestrator: String,
    pub token: String,
    pub endpoint: String,
    pub ca_cert_hash: String,
    pub expires_unix: i64,
    /// argv of the join command (`docker swarm join …`); empty for `token`.
    pub command: Vec<String>,
}

impl Grant {
    fn from_proto(g: assay_proto::v1::JoinGrant) -> Result<Self, Failure> {
        let bad = |what: &str| {
            Failure::Internal(format!(
                "the verifier sent a {} grant with {what}; refusing to build a join command from it",
                g.orchestrator
            ))
        };
        // The command is run without a shell, but an argument that starts with
        // `-` would still be read as an option: never build one from a grant.
        let endpoint_ok = |e: &str| {
            !e.is_empty() && !e.starts_with('-') && e.bytes().all(|b| b.is_ascii_graphic())
        };
        let command = match g.orchestrator.as_str() {
            "token" => Vec::new(),
            "swarm" => {
                if g.token.is_empty() || g.token.starts_with('-') || !endpoint_ok(&g.endpoint) {
                    return Err(bad("no usable token or manager address"));
                }
                vec![
                    "docker".into(),
                    "swarm".into(),
                    "join".into(),
                    "--token".into(),
                    g.token.clone(),
                    g.endpoint.clone(),
                ]
            }
            "kubeadm" => {
                if !is_kubeadm_token(&g.token) {
                    return Err(bad("a token not in kubeadm's [a-z0-9]{6}.[a-z0-9]{16} form"));
                }
                if !endpoint_ok(&g.endpoint) {
                    return Err(bad("no usable API server endpoint"));
                }
                let hash_ok = g.ca_cert_hash.strip_prefix("sha256:").is_some_and(|h| {
                    h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit())
                });
                if !hash_ok {
                    return Err(bad("no sha256:<64 hex> CA certificate hash"));
                }
                vec![
                    "kubeadm".into(),
                    "join".into(),
                    g.endpoint.clone(),
                    "--token".into(),
                    g.token.clone(),
                    "--discovery-token-ca-cert-hash".into(),
                    g.ca_cert_hash.clone(),
                ]
            }
            other => {
                return Err(Failure::Internal(format!(
                    "the verifier sent a grant for orchestrator `{other}`, which this attestor does not know; upgrade it"
                )))
            }
        };
        Ok(Self {
            orchestrator: g.orchestrator,
            token: g.token,
            endpoint: g.endpoint,
            ca_cert_hash: g.ca_cert_hash,
            expires_unix: g.expires_unix,
            command,
        })
    }
}

/// kubeadm's bootstrap token form, `[a-z0-9]{6}.[a-z0-9]{16}`.
pub fn is_kubeadm_token(t: &str) -> bool {
    let ok = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    t.split_once('.')
        .is_some_and(|(id, secret)| ok(id, 6) && ok(secret, 16))
}

#[derive(Debug, Clone, Serialize)]
pub struct ClaimOut {
    pub id: String,
    pub passed: bool,
    pub expected: String,
    pub actual: String,
    pub location: String,
}

/// Connects over TLS (the verifier's certificate must chain to `cfg.ca`), retrying
/// with exponential backoff while the verifier is unreachable. A certificate
/// `--ca` does not vouch for is a configuration error, not retried.
pub async fn connect(cfg: &Config) -> Result<Channel, Failure> {
    connect_within(cfg, &endpoint(cfg)?, &mut Backoff::new(cfg.retries)).await
}

/// Runs `exchange` over a connection to the verifier. After a transient failure
/// ([`Failure::Transient`]: the connection broke under a request, or the
/// verifier is busy) it connects again and runs `exchange` again from its
/// start, so `exchange` must begin where repeating is safe (a new challenge, a
/// new enrollment). Connecting and exchanging share one backoff and one
/// budget of `cfg.retries` retries; once it is spent, the verifier counts as
/// unreachable. Answers (a verdict, a refusal) are returned as they are.
pub async fn with_retries<T>(
    cfg: &Config,
    mut exchange: impl AsyncFnMut(Channel) -> Result<T, Failure>,
) -> Result<T, Failure> {
    let endpoint = endpoint(cfg)?;
    let mut backoff = Backoff::new(cfg.retries);
    loop {
        let ch = connect_within(cfg, &endpoint, &mut backoff).await?;
        let (kind, cause) = match exchange(ch).await {
            Err(Failure::Transient(kind, cause)) => (kind, cause),
            other => return other,
        };
        let Some(delay) = backoff.next_delay() else {
            return Err(Failure::Unreachable(format!(
                "{} after {}: {kind}: {cause}",
                cfg.verifier,
                backoff.attempts()
            )));
        };
        warn!(
            verifier = %cfg.verifier,
            attempt = backoff.retries_done(),
            error = %cause,
            "{kind}; starting the exchange again in {delay:?}"
        );
        tokio::time::sleep(delay).await;
    }
}

/// The verifier's endpoint, trusting `cfg.ca`.
fn endpoint(cfg: &Config) -> Result<tonic::transport::Endpoint, Failure> {
    let ca = std::fs::read(&cfg.ca)
        .map_err(|e| Failure::Config(format!("--ca {}: {e}", cfg.ca.display())))?;
    assay_proto::client::endpoint(&cfg.verifier, ca, None)
        .map_err(|e| Failure::Config(format!("--verifier {}: {e}", cfg.verifier)))
}

/// Connects, retrying while the verifier is unreachable for as long as
/// `backoff` allows.
async fn connect_within(
    cfg: &Config,
    endpoint: &tonic::transport::Endpoint,
    backoff: &mut Backoff,
) -> Result<Channel, Failure> {
    use assay_proto::client::{self, ConnectError};
    loop {
        let cause = match client::connect(&cfg.verifier, endpoint).await {
            Ok(ch) => return Ok(ch),
            Err(e @ ConnectError::Certificate { .. }) => {
                return Err(Failure::Config(format!(
                    "{e}: check --ca {} (the verifier's ca.pem) and --verifier",
                    cfg.ca.display()
                )))
            }
            Err(ConnectError::Setup(e)) => return Err(Failure::Config(e)),
            Err(ConnectError::Unreachable { cause, .. }) => cause,
        };
        let Some(delay) = backoff.next_delay() else {
            return Err(Failure::Unreachable(format!(
                "{} after {}: {cause} (check --verifier and that the verifier runs)",
                cfg.verifier,
                backoff.attempts()
            )));
        };
        warn!(verifier = %cfg.verifier, attempt = backoff.retries_done(), error = %cause, "verifier unreachable; retrying in {delay:?}");
        tokio::time::sleep(delay).await;
    }
}

/// Enrolls: sends EK certificate, EK public and AK public; activates the credential
/// the verifier protected to the EK; records the enrollment in the state dir.
/// The EK certificate the TPM's vendor publishes: the one kept in the state dir,
/// else fetched from the service (and kept).
async fn vendor_certificate(
    cfg: &Config,
    settings: &crate::ekfetch::FetchSettings,
    tpm: &mut Tpm,
    ek_public: &[u8],
) -> Result<Vec<u8>, Failure> {
    use crate::ekfetch;
    if let Some(der) = ekfetch::cached(&cfg.state_dir, ek_public) {
        return Ok(der);
    }
    let vendor = match settings.vendor {
        Some(v) => v,
        None => {
            let id = tpm.manufacturer().map_err(tpm_err)?;
            ekfetch::Vendor::from_manufacturer(id).ok_or_else(|| {
                Failure::Config(format!(
                    "the TPM's manufacturer `{}` has no known EK certificate service (Intel and AMD \
                     have); set ek_cert_service = \"intel\" or \"amd\" with ek_cert_service_url, or \
                     turn fetch_ek_certificate off",
                    String::from_utf8_lossy(&id.to_be_bytes()).trim_end_matches(['\0', ' '])
                ))
            })?
        }
    };
    let der = ekfetch::fetch(settings, vendor, ek_public, &cfg.state_dir)
        .await
        .map_err(|e| Failure::Unreachable(format!("EK certificate service: {e}")))?;
    tracing::info!(
        bytes = der.len(),
        "fetched this TPM's EK certificate from its vendor's service"
    );
    Ok(der)
}

pub async fn enroll(cfg: &Config, tpm: &mut Tpm, ch: Channel) -> Result<Enrollment, Failure> {
    // A TPM without an EK certificate in NV sends none: a verifier in
    // inventory mode enrolls it if an operator registered its EK public area.
    tpm.select_ek(&cfg.state_dir, cfg.ek).map_err(tpm_err)?;
    let ek_public = tpm.ek_public().map_err(tpm_err)?;
    let mut ek_cert = tpm.ek_certificate_if_any().map_err(tpm_err)?;
    if ek_cert.is_none() {
        if let Some(settings) = &cfg.ek_fetch {
            ek_cert = Some(vendor_certificate(cfg, settings, tpm, &ek_public).await?);
        }
    }
    if ek_cert.is_none() {
        warn!("this TPM holds no EK certificate in NV; enrolling with the EK public area only");
    }
    let ek_cert = ek_cert.unwrap_or_default();
    let ek_chain = tpm.ek_chain().map_err(tpm_err)?;
    let ak = tpm.load_or_create_ak(&cfg.state_dir).map_err(tpm_err)?;
    let mut c = pb::attestation_client::AttestationClient::new(ch);
    let r = c
        .enroll(pb::EnrollRequest {
            node_id: cfg.node_id.clone(),
            ek_certificate: ek_cert,
            ek_public,
            ak_public: ak.public.clone(),
            ek_chain,
        })
        .await
        .map_err(|s| Failure::from_status("enrollment", s))?
        .into_inner();
    let credential = tpm
        .activate_credential(&cfg.state_dir, &r.credential_blob, &r.encrypted_secret)
        .map_err(tpm_err)?;
    let a = c
        .activate(pb::ActivateRequest {
            node_id: cfg.node_id.clone(),
            enrollment_id: r.enrollment_id,
            credential,
        })
        .await
        .map_err(|s| Failure::from_status("credential activation", s))?
        .into_inner();
    let e = Enrollment {
        verifier: cfg.verifier.clone(),
        node_id: cfg.node_id.clone(),
        ak_name: a.ak_name,
    };
    crate::enrollment::store(&cfg.state_dir, &e).map_err(|e| Failure::Config(e.to_string()))?;
    info!(node_id = %e.node_id, ak_name = %e.ak_name, "enrolled: AK bound to EK");
    Ok(e)
}

/// One attestation: challenge, quote, verdict.
pub async fn attest(cfg: &Config, tpm: &mut Tpm, ch: Channel) -> Result<Outcome, Failure> {
    attest_with(cfg, tpm, ch, true).await
}

/// One attestation; with `measure`, the runtime files are measured first when
/// the policy judges containers (the agent, which holds the log, measures itself).
pub async fn attest_with(
    cfg: &Config,
    tpm: &mut Tpm,
    ch: Channel,
    measure: bool,
) -> Result<Outcome, Failure> {
    // The AK loads only under the EK it was made under.
    tpm.select_ek(&cfg.state_dir, cfg.ek).map_err(tpm_err)?;
    let mut c = pb::attestation_client::AttestationClient::new(ch);
    let chal = c
        .challenge(pb::ChallengeRequest {
            node_id: cfg.node_id.clone(),
        })
        .await
        .map_err(|s| Failure::from_status("challenge", s))?
        .into_inner();
    // Container runtime files are measured (once each) before the quote covers them.
    let measure_note = if measure && chal.want_cel_log {
        measure_runtime(cfg, tpm).err()
    } else {
        None
    };
    let q = tpm
        .quote(&cfg.state_dir, &chal.nonce, &chal.pcrs_sha256)
        .map_err(tpm_err)?;
    // Logs are read after the quote: they may then run ahead of the quoted PCRs
    // (the verifier finds the quoted prefix), never behind them.
    // Only the IMA entries after the verifier's kept state, if this quote
    // is of the boot that state was kept for.
    let resume = chal
        .ima_resume
        .as_ref()
        .filter(|r| {
            assay_core::tpm::attest::parse_quote_attest(&q.attest).is_ok_and(|a| {
                a.clock_info.reset_count == r.reset_count
                    && a.clock_info.restart_count == r.restart_count
            })
        })
        .map(|r| logs::ImaResume {
            from_entry: r.from_entry,
            first_template_hash: r.first_template_hash.clone(),
        });
    let mut logs = read_logs(
        cfg,
        chal.want_uefi_log,
        chal.want_ima_log,
        chal.want_cel_log,
        resume.as_ref(),
    );
    logs.notes.extend(measure_note);
    let r = c
        .attest(attest_request(cfg, chal.nonce, q, logs))
        .await
        .map_err(|s| Failure::from_status("attestation", s))?
        .into_inner();
    let v = r
        .verdict
        .ok_or_else(|| Failure::Internal("the verifier answered without a verdict".into()))?;
    Ok(Outcome {
        node_id: cfg.node_id.clone(),
        trusted: v.passed,
        policy_name: v.policy_name,
        policy_digest: v.policy_digest,
        history_seq: v.history_seq,
        claims: v
            .claims
            .into_iter()
            .map(|c| ClaimOut {
                id: c.id,
                passed: c.passed,
                expected: c.expected,
                actual: c.actual,
                location: c.location,
            })
            .collect(),
        token_expires_unix: r.join_token.as_ref().map(|t| t.expires_unix),
        token: r.join_token.map(|t| t.token),
        grant: r.grant.map(Grant::from_proto).transpose()?,
        join_error: (!r.join_error.is_empty()).then_some(r.join_error),
    })
}

/// The logs to send, and notes on those that could not be read.
#[derive(Default)]
pub struct Logs {
    pub uefi: Option<Vec<u8>>,
    pub ima: Option<Vec<u8>>,
    /// The index of `ima`'s first entry (0: the whole log).
    pub ima_first_entry: u64,
    pub cel: Option<Vec<u8>>,
    pub notes: Vec<String>,
}

/// Measures the configured container runtime files that exist into the CEL
/// log (once each). An error (a tampered log, a TPM failure) is returned as a
/// note for the verdict: the attestation goes on, and the verifier judges.
pub fn measure_runtime(cfg: &Config, tpm: &mut Tpm) -> Result<usize, String> {
    let mut log = open_measurement_log(cfg, tpm).map_err(|e| {
        warn!(error = %e, "container measurement log");
        format!("cel_log: {e}")
    })?;
    measure_runtime_into(cfg, &mut log, tpm)
}

/// Opens (and reconciles) this node's container measurement log.
pub fn open_measurement_log(
    cfg: &Config,
    tpm: &mut Tpm,
) -> Result<measure::MeasurementLog, measure::MeasureError> {
    let boot = measure::boot_value(&cfg.uefi_log, cfg.max_uefi_log_bytes, cfg.cel_pcr);
    measure::MeasurementLog::open(&cfg.cel_log, cfg.cel_pcr, boot, tpm).map(|(log, _)| log)
}

/// Measures the configured runtime files that exist into `log`; the number of
/// new records.
pub fn measure_runtime_into(
    cfg: &Config,
    log: &mut measure::MeasurementLog,
    tpm: &mut Tpm,
) -> Result<usize, String> {
    let mut added = 0;
    for path in &cfg.runtime_files {
        let sha256 = match measure::hash_file(path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(format!("runtime file {}: {e}", path.display())),
        };
        let text = path.display().to_string();
        let m = if path.starts_with("/etc") {
            Measurement::RuntimeConfig { path: text, sha256 }
        } else {
            Measurement::RuntimeBinary { path: text, sha256 }
        };
        if log
            .measure(&m, tpm)
            .map_err(|e| format!("cel_log: {e}"))?
            .is_some()
        {
            added += 1;
        }
    }
    Ok(added)
}

/// The `AttestRequest` for a quote and the logs read after it.
fn attest_request(
    cfg: &Config,
    nonce: Vec<u8>,
    q: crate::tpm::QuoteResult,
    logs: Logs,
) -> pb::AttestRequest {
    let Logs {
        uefi: uefi_log,
        ima: ima_log,
        ima_first_entry,
        cel: cel_log,
        notes: log_notes,
    } = logs;
    pb::AttestRequest {
        node_id: cfg.node_id.clone(),
        nonce,
        attest: q.attest,
        signature: q.signature,
        pcrs_sha256: q
            .pcrs_sha256
            .into_iter()
            .map(|(index, digest)| pb::PcrValue { index, digest })
            .collect(),
        uefi_log,
        ima_log,
        cel_log,
        log_notes,
        ima_first_entry,
    }
}

/// Reads the logs that were asked for; a log that cannot be sent gets a note.
fn read_logs(
    cfg: &Config,
    want_uefi: bool,
    want_ima: bool,
    want_cel: bool,
    ima_resume: Option<&logs::ImaResume>,
) -> Logs {
    let mut notes = Vec::new();
    let (ima, ima_first_entry) = if want_ima {
        match logs::read_ima_log(&cfg.ima_log, cfg.max_ima_log_bytes, ima_resume) {
            (LogRead::Present(b), first) => (Some(b), first),
            (LogRead::Absent(note), _) => {
                warn!(log = "ima_log", %note, "log not sent");
                notes.push(format!("ima_log: {note}"));
                (None, 0)
            }
        }
    } else {
        (None, 0)
    };
    let mut read = |want: bool, path: &Path, cap: u64, key: &str| {
        if !want {
            return None;
        }
        match logs::read_log(path, cap, key) {
            LogRead::Present(b) => Some(b),
            LogRead::Absent(note) => {
                warn!(log = key, %note, "log not sent");
                notes.push(format!("{key}: {note}"));
                None
            }
        }
    };
    let uefi = read(want_uefi, &cfg.uefi_log, cfg.max_uefi_log_bytes, "uefi_log");
    // The CEL log lives under /run: no file means nothing was measured since boot.
    // An empty log is valid too: the agent created it, nothing is measured yet.
    let cel = match std::fs::metadata(&cfg.cel_log) {
        _ if !want_cel => None,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(Vec::new()),
        Ok(m) if m.len() == 0 => Some(Vec::new()),
        _ => read(true, &cfg.cel_log, measure::MAX_CEL_LOG_BYTES, "cel_log"),
    };
    Logs {
        uefi,
        ima,
        ima_first_entry,
        cel,
        notes,
    }
}

/// Offline evidence: a quote over `pcrs` with `nonce`, the logs, the AK and the
/// EK certificate, for `assay-verifier verify-bundle` and `policy generate`.
pub fn collect(
    cfg: &Config,
    tpm: &mut Tpm,
    nonce: &[u8],
    pcrs: &[u32],
    want_uefi: bool,
    want_ima: bool,
    want_cel: bool,
) -> Result<pb::EvidenceBundle, Failure> {
    tpm.select_ek(&cfg.state_dir, cfg.ek).map_err(tpm_err)?;
    let ek_certificate = tpm.ek_certificate().map_err(tpm_err)?;
    let ek_chain = tpm.ek_chain().map_err(tpm_err)?;
    let ek_public = tpm.ek_public().map_err(tpm_err)?;
    let ak = tpm.load_or_create_ak(&cfg.state_dir).map_err(tpm_err)?;
    let q = tpm.quote(&cfg.state_dir, nonce, pcrs).map_err(tpm_err)?;
    let logs = read_logs(cfg, want_uefi, want_ima, want_cel, None);
    let collected_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    Ok(pb::EvidenceBundle {
        version: 1,
        ak_public: ak.public,
        ek_certificate,
        ek_public,
        evidence: Some(attest_request(cfg, nonce.to_vec(), q, logs)),
        collected_unix,
        ek_chain,
    })
}

/// Enrolls if this node has no enrollment with this verifier (or the verifier
/// no longer knows it), then attests.
pub async fn join(cfg: &Config) -> Result<Outcome, Failure> {
    let mut tpm = Tpm::open(&cfg.tcti).map_err(tpm_err)?;
    join_with(cfg, &mut tpm, true).await
}

/// [`join`] with an open TPM; `measure` as in [`attest_with`]. A transient
/// failure starts the join again ([`with_retries`]): an enrollment cut short
/// is made again (the verifier allows one try per enrollment), an attestation
/// from a new challenge.
pub async fn join_with(cfg: &Config, tpm: &mut Tpm, measure: bool) -> Result<Outcome, Failure> {
    with_retries(cfg, async |ch| join_over(cfg, tpm, ch, measure).await).await
}

/// One join over `ch`: enroll if needed, then attest.
async fn join_over(
    cfg: &Config,
    tpm: &mut Tpm,
    ch: Channel,
    measure: bool,
) -> Result<Outcome, Failure> {
    let enrolled = crate::enrollment::load(&cfg.state_dir)
        .map_err(|e| Failure::Config(e.to_string()))?
        .is_some_and(|e| e.verifier == cfg.verifier && e.node_id == cfg.node_id);
    if !enrolled {
        enroll(cfg, tpm, ch.clone()).await?;
    }
    match attest_with(cfg, tpm, ch.clone(), measure).await {
        Err(Failure::NotEnrolled(_)) if enrolled => {
            info!("the verifier does not know this node; enrolling again");
            enroll(cfg, tpm, ch.clone()).await?;
            attest_with(cfg, tpm, ch, measure).await
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use assay_proto::v1::JoinGrant;

    fn grant(orch: &str, token: &str, endpoint: &str, hash: &str) -> JoinGrant {
        JoinGrant {
            orchestrator: orch.into(),
            token: token.into(),
            endpoint: endpoint.into(),
            ca_cert_hash: hash.into(),
            expires_unix: 1,
        }
    }

    const HASH: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn kubeadm_tokens_have_kubeadm_s_form() {
        assert!(is_kubeadm_token("abcdef.0123456789abcdef"));
        assert!(is_kubeadm_token("07401b.f395accd246ae52d"));
        for bad in [
            "",
            "abcdef",
            "abcdef.",
            "ABCDEF.0123456789abcdef",
            "abcde.0123456789abcdef",
            "abcdef.0123456789abcde",
            "abcdef.0123456789abcdef0",
            "abcdef:0123456789abcdef",
            "abc-ef.0123456789abcdef",
            "abcdef.0123456789abcdef.x",
        ] {
            assert!(!is_kubeadm_token(bad), "{bad}");
        }
    }

    #[test]
    fn a_kubeadm_grant_becomes_the_exact_kubeadm_join_command() {
        let g = Grant::from_proto(grant(
            "kubeadm",
            "abcdef.0123456789abcdef",
            "10.0.0.1:6443",
            HASH,
        ))
        .unwrap();
        assert_eq!(
            g.command,
            [
                "kubeadm",
                "join",
                "10.0.0.1:6443",
                "--token",
                "abcdef.0123456789abcdef",
                "--discovery-token-ca-cert-hash",
                HASH
            ]
        );
    }

    #[test]
    fn malformed_grants_never_become_commands() {
        for g in [
            grant("kubeadm", "abcdef.0123456789abcdef", "", HASH),
            grant("kubeadm", "abcdef.0123456789abcdef", "--config=/x", HASH),
            grant("kubeadm", "abcdef.0123456789abcdef", "a b", HASH),
            grant("kubeadm", "--token", "10.0.0.1:6443", HASH),
            grant(
                "kubeadm",
                "abcdef.0123456789abcdef",
                "10.0.0.1:6443",
                "sha256:00",
            ),
            grant("kubeadm", "abcdef.0123456789abcdef", "10.0.0.1:6443", ""),
            grant("swarm", "SWMTKN-1-x", "-H", ""),
            grant("swarm", "", "10.0.0.1:2377", ""),
            grant("nomad", "t", "e", ""),
        ] {
            let what = format!("{g:?}");
            assert!(
                matches!(Grant::from_proto(g), Err(Failure::Internal(_))),
                "{what}"
            );
        }
    }
}
