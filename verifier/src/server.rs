//! Start-up: load trust anchors, policy, store and token key from the config,
//! then serve the gRPC API over TLS until SIGINT/SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use assay_proto::v1 as pb;
use tonic::transport::{Identity, Server, ServerTlsConfig};
use tracing::{info, warn};

use crate::api::Api;
use crate::config::Config;
use crate::service::{ServiceError, Verifier};
use crate::token::TokenSigner;

/// Largest gRPC message accepted: a quote is a few KiB, a UEFI log tens of KiB, an
/// IMA log of a busy host a few MiB (100,000 ima-ng entries are ~15 MiB in ascii).
pub const MAX_MESSAGE_BYTES: usize = 32 * 1024 * 1024;
/// Largest header block accepted (gRPC requests carry a handful of headers).
pub const MAX_HEADER_LIST_BYTES: u32 = 16 * 1024;

/// Builds the verifier from its configuration, checking every file it names.
pub fn build(config: Config) -> anyhow::Result<Verifier> {
    let anchors =
        crate::trust::load_anchors(&config.ek_roots, &config.ek_intermediates, &config.ek_crls)?;
    let policy_file = match &config.policy {
        Some(path) => Some((crate::files::read_policy_with_text(path)?, path.clone())),
        None => None,
    };
    let policy_keys = if config.policy_signing_keys.is_empty() {
        None
    } else {
        Some(
            crate::policy_signature::PolicyKeys::load(&config.policy_signing_keys)
                .map_err(|e| anyhow::anyhow!("policy_signing_keys: {e}"))?,
        )
    };
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("data_dir {}", config.data_dir.display()))?;
    let store = crate::store::open(&config.storage, &config.data_dir)?;
    let tokens = TokenSigner::load_or_create(&config.data_dir.join("token-signing-key.pem"))?;
    let policies = Verifier::seed_default_policy(
        &*store,
        policy_file
            .as_ref()
            .map(|((p, text), path)| (p, text.as_str(), path.as_path())),
    )?;
    if let (true, Some(keys)) = (config.require_signed_policies, &policy_keys) {
        for v in crate::service::policies::unverified_in_force(&*store, &policies, keys)? {
            warn!(
                version = %v,
                "require_signed_policies: a version in force has no signature that verifies \
                 under policy_signing_keys; apply it again signed (`policy sign`, `policy apply`)"
            );
        }
    }
    let join =
        crate::join::issuer(&config.join, &config.join_groups).map_err(anyhow::Error::msg)?;
    let webhook = match &config.webhook {
        Some(w) => Some(Arc::new(
            crate::webhook::Webhook::new(w).map_err(anyhow::Error::msg)?,
        )),
        None => None,
    };
    let (nonces, enrollments) = Verifier::outstanding(&config.limits);
    Ok(Verifier {
        rate_limits: crate::limits::RateLimits::new(&config.limits),
        nonces,
        enrollments,
        attempts: Default::default(),
        isolating: Default::default(),
        join,
        webhook,
        config,
        anchors: std::sync::RwLock::new(Arc::new(anchors)),
        policies: std::sync::RwLock::new(Arc::new(policies)),
        policy_keys,
        store,
        tokens,
        measured_boot_cache: assay_core::verify::MeasuredBootCache::new(
            MEASURED_BOOT_CACHE_ENTRIES,
        ),
    })
}

/// Distinct measured-boot judgements kept (each a few KiB).
const MEASURED_BOOT_CACHE_ENTRIES: usize = 4096;

/// Serves until SIGINT or SIGTERM. Prints `listening on ADDR` once bound.
pub async fn serve(verifier: Verifier) -> anyhow::Result<()> {
    let cert = std::fs::read(&verifier.config.tls_cert).with_context(|| {
        format!(
            "tls.cert: reading {} (create it with `assay-verifier init`)",
            verifier.config.tls_cert.display()
        )
    })?;
    let key = std::fs::read(&verifier.config.tls_key)
        .with_context(|| format!("tls.key: reading {}", verifier.config.tls_key.display()))?;
    let limits = verifier.config.limits.clone();
    // A client that opens a connection and never finishes the handshake is
    // dropped after `limits.handshake_timeout_secs`.
    let mut tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(cert, key))
        .timeout(limits.handshake_timeout);
    match &verifier.config.client_ca {
        Some(path) => {
            let ca = std::fs::read(path).with_context(|| {
                format!(
                    "tls.client_ca: reading {} (`assay-verifier init` makes one; \
                     or set tls.no_client_auth = true to leave every RPC open)",
                    path.display()
                )
            })?;
            // Optional at the handshake: nodes prove themselves with their TPM;
            // every other role is checked per RPC (`roles`).
            tls = tls
                .client_ca_root(tonic::transport::Certificate::from_pem(ca))
                .client_auth_optional(true);
        }
        None => warn!(
            "tls.no_client_auth: every RPC (history, token listing and revocation) is open to any TLS client"
        ),
    }
    let listener = tokio::net::TcpListener::bind(verifier.config.listen)
        .await
        .with_context(|| format!("listen: binding {}", verifier.config.listen))?;
    let addr = listener.local_addr()?;
    let metrics = match &verifier.config.metrics {
        Some(m) => {
            let handle = crate::metrics::install().map_err(anyhow::Error::msg)?;
            let l = tokio::net::TcpListener::bind(m.listen)
                .await
                .with_context(|| format!("metrics.listen: binding {}", m.listen))?;
            println!("metrics on {}", l.local_addr()?);
            Some((l, handle))
        }
        None => None,
    };
    let web = crate::web::bind(&verifier.config).await?;
    info!(policies = ?verifier.policy_set().in_force(), %addr, "assay-verifier serving");
    println!("listening on {addr}");
    let verifier = Arc::new(verifier);
    let (health, health_service) = tonic_health::server::health_reporter();
    let store_watch = tokio::spawn(watch_store(verifier.clone(), health.clone()));
    let stop_watching = store_watch.abort_handle();
    let stopping = Arc::new(tokio::sync::Notify::new());
    let stopping_tx = stopping.clone();
    let metrics_server =
        metrics.map(|(l, handle)| tokio::spawn(crate::metrics::serve(l, handle, verifier.clone())));
    // Server reflection, v1 and v1alpha (grpcurl and the grpcio clients still
    // ask v1alpha): the API's shape only, to any TLS client, as health.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let (reflection_v1, reflection_v1alpha) = if verifier.config.reflection {
        (
            Some(reflection().build_v1()?),
            Some(reflection().build_v1alpha()?),
        )
    } else {
        (None, None)
    };
    let sweeper = tokio::spawn(sweep(verifier.clone()));
    let upkeep = tokio::spawn(join_upkeep(verifier.clone()));
    let checkpointer = tokio::spawn(checkpoints(verifier.clone()));
    let crl_reloader = tokio::spawn(reload_crls(verifier.clone()));
    let guard = tokio::spawn(limits_upkeep(verifier.clone()));
    let policy_reloader = tokio::spawn(reload_policies(verifier.clone()));
    let web_server = web.map(|w| tokio::spawn(crate::web::serve(w, verifier.clone())));
    let verifier_for_exit = verifier.clone();
    let api = Api(verifier);
    let served = Server::builder()
        // Every request ends within the timeout (DEADLINE_EXCEEDED past it),
        // however slowly its client sends; a connection carries at most so
        // many streams, is pinged when idle (and dropped when the ping goes
        // unanswered) and is closed after its maximum age.
        .timeout(limits.request_timeout)
        .max_concurrent_streams(limits.max_streams_per_connection)
        .concurrency_limit_per_connection(limits.max_streams_per_connection as usize)
        .http2_keepalive_interval(Some(limits.keepalive_interval))
        .http2_keepalive_timeout(Some(limits.keepalive_timeout))
        .max_connection_age(limits.max_connection_age)
        .max_connection_age_grace(SHUTDOWN_DRAIN)
        .tcp_keepalive(Some(Duration::from_secs(60)))
        .http2_max_header_list_size(MAX_HEADER_LIST_BYTES)
        .http2_max_pending_accept_reset_streams(Some(64))
        .tls_config(tls)?
        .add_service(health_service)
        .add_optional_service(reflection_v1)
        .add_optional_service(reflection_v1alpha)
        .add_service(
            pb::attestation_server::AttestationServer::new(api.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            pb::tokens_server::TokensServer::new(api.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            pb::nodes_server::NodesServer::new(api.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            pb::policies_server::PoliciesServer::new(api.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            pb::history_server::HistoryServer::new(api)
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .serve_with_incoming_shutdown(
            // No Nagle: an answer waiting for a delayed ACK costs 40 ms.
            crate::limits::bounded_incoming(
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
                limits.max_connections,
            ),
            async move {
                shutdown().await;
                // Health watchers see NOT_SERVING, then their streams end
                // (a Watch stream lasts as long as its status is kept).
                stop_watching.abort();
                let mut health = health;
                for name in health_names() {
                    health
                        .set_service_status(name, tonic_health::ServingStatus::NotServing)
                        .await;
                    health.clear_service_status(name).await;
                }
                info!(
                    drain_secs = SHUTDOWN_DRAIN.as_secs(),
                    "stopping: health NOT_SERVING, finishing requests in flight"
                );
                stopping_tx.notify_one();
            },
        );
    // Graceful shutdown waits for every connection to close: a client that
    // keeps a stream open (reflection, a health watch) must not hold the
    // stop, and what follows it (the last checkpoint), forever.
    tokio::pin!(served);
    let served = tokio::select! {
        r = &mut served => r,
        () = async {
            stopping.notified().await;
            tokio::time::sleep(SHUTDOWN_DRAIN).await;
        } => {
            warn!(
                drain_secs = SHUTDOWN_DRAIN.as_secs(),
                "connections still open after the drain: stopping without them"
            );
            Ok(())
        }
    };
    store_watch.abort();
    if let Some(m) = metrics_server {
        m.abort();
    }
    sweeper.abort();
    upkeep.abort();
    checkpointer.abort();
    crl_reloader.abort();
    guard.abort();
    policy_reloader.abort();
    if let Some(w) = web_server {
        w.abort();
    }
    if let Err(e) = verifier_for_exit.flush_attempts() {
        warn!(error = %e, "recording unauthenticated attempts failed");
    }
    // A last checkpoint over everything recorded, so a clean stop leaves the
    // whole history signed.
    if let Err(e) = checkpoint(&verifier_for_exit) {
        warn!(error = %e, "final history checkpoint failed");
    }
    served?;
    info!("assay-verifier stopped");
    Ok(())
}

/// How long a stop waits for requests in flight (and a connection past its
/// maximum age for its streams) before it closes what is left.
pub const SHUTDOWN_DRAIN: Duration = Duration::from_secs(10);

/// How often the store is asked whether it answers (gRPC health).
pub const STORE_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// A store that has not answered within this is down.
pub const STORE_CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// The names gRPC health answers for: the server as a whole ("") and each
/// of Assay's services.
fn health_names() -> [&'static str; 6] {
    use tonic::server::NamedService as _;
    [
        "",
        pb::attestation_server::AttestationServer::<Api>::NAME,
        pb::tokens_server::TokensServer::<Api>::NAME,
        pb::nodes_server::NodesServer::<Api>::NAME,
        pb::policies_server::PoliciesServer::<Api>::NAME,
        pb::history_server::HistoryServer::<Api>::NAME,
    ]
}

/// gRPC health (grpc.health.v1): SERVING while the store answers, NOT_SERVING
/// while it does not (every answer needs it). Each change is logged once.
async fn watch_store(verifier: Arc<Verifier>, health: tonic_health::server::HealthReporter) {
    use tonic_health::ServingStatus;
    let mut tick = tokio::time::interval(STORE_CHECK_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut up = None::<bool>;
    // One check at a time: a store that hangs holds one blocking thread (and
    // one connection), not one more every second.
    let mut pending: Option<tokio::task::JoinHandle<Result<(), crate::store::StoreError>>> = None;
    loop {
        tick.tick().await;
        let mut check = match pending.take() {
            Some(c) => c,
            None => {
                let v = verifier.clone();
                tokio::task::spawn_blocking(move || v.store.policy_epoch().map(drop))
            }
        };
        let (now_up, why) = match tokio::time::timeout(STORE_CHECK_TIMEOUT, &mut check).await {
            Ok(Ok(Ok(()))) => (true, String::new()),
            Ok(Ok(Err(e))) => (false, e.to_string()),
            Ok(Err(e)) => (false, e.to_string()),
            Err(_) => {
                pending = Some(check);
                (
                    false,
                    format!("no answer within {}s", STORE_CHECK_TIMEOUT.as_secs()),
                )
            }
        };
        if up == Some(now_up) {
            continue;
        }
        let status = if now_up {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        for name in health_names() {
            health.set_service_status(name, status).await;
        }
        crate::metrics::store_up(now_up);
        match (up, now_up) {
            (None, true) => {}
            (_, true) => info!("the store answers again: health SERVING"),
            (_, false) => warn!(error = %why, "the store does not answer: health NOT_SERVING"),
        }
        up = Some(now_up);
    }
}

/// Signs a checkpoint over the history head if it moved since the last one.
pub fn checkpoint(v: &Verifier) -> anyhow::Result<Option<crate::store::Checkpoint>> {
    let Some(head) = v.store.history_head()? else {
        return Ok(None);
    };
    if v.store
        .last_checkpoint()?
        .is_some_and(|c| c.seq >= head.seq)
    {
        return Ok(None);
    }
    let time_unix = crate::clock::now_unix();
    let head_hash = head.hash();
    let payload = crate::store::Checkpoint::payload(head.seq, &head_hash, time_unix);
    let c = crate::store::Checkpoint {
        seq: head.seq,
        head_hash,
        time_unix,
        signature: v
            .tokens
            .sign_detached_typ(&payload, "assay-checkpoint+jws")?,
    };
    v.store.add_checkpoint(&c)?;
    Ok(Some(c))
}

async fn checkpoints(verifier: Arc<Verifier>) {
    let mut tick = tokio::time::interval(verifier.config.checkpoint_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let v = verifier.clone();
        match tokio::task::spawn_blocking(move || checkpoint(&v)).await {
            Ok(Ok(Some(c))) => info!(seq = c.seq, "history checkpoint signed"),
            Ok(Ok(None)) => {}
            Ok(Err(e)) => warn!(error = %e, "history checkpoint failed"),
            Err(e) => warn!(error = %e, "checkpoint task failed"),
        }
    }
}

/// Every [`crate::service::POLICY_POLL`]: picks up policy changes made by
/// another replica (the store's policy epoch moved). One warning per
/// distinct failure; the policies in force stay until a load succeeds.
async fn reload_policies(verifier: Arc<Verifier>) {
    let mut tick = tokio::time::interval(crate::service::POLICY_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_warning = None::<String>;
    loop {
        tick.tick().await;
        let v = verifier.clone();
        match tokio::task::spawn_blocking(move || v.refresh_policies()).await {
            Ok(Ok(_)) => last_warning = None,
            Ok(Err(e)) if last_warning.as_deref() != Some(e.to_string().as_str()) => {
                warn!(error = %e, "policies not reloaded; the ones in force stay");
                last_warning = Some(e.to_string());
            }
            Ok(Err(_)) => {}
            Err(e) => warn!(error = %e, "policy reload task failed"),
        }
    }
}

/// Reloads the EK trust anchors when a CRL file changes (an operator or a
/// cron job dropping in the CA's new CRL). A file that cannot be read or is
/// refused keeps the anchors as they were, and is logged once per change.
async fn reload_crls(verifier: Arc<Verifier>) {
    let c = &verifier.config;
    if c.ek_crls.is_empty() {
        return;
    }
    let mut seen = crate::trust::crl_stamps(&c.ek_crls);
    let mut tick = tokio::time::interval(crate::trust::CRL_CHECK_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = crate::trust::crl_stamps(&c.ek_crls);
        if now == seen {
            continue;
        }
        seen = now;
        let v = verifier.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            let c = &v.config;
            crate::trust::load_anchors(&c.ek_roots, &c.ek_intermediates, &c.ek_crls)
        })
        .await;
        match loaded {
            Ok(Ok(a)) => {
                verifier.set_anchors(a);
                info!("EK CRLs reloaded");
            }
            Ok(Err(e)) => {
                warn!(error = %format!("{e:#}"), "EK CRLs not reloaded; the previous ones stay in force")
            }
            Err(e) => warn!(error = %e, "CRL reload task failed"),
        }
    }
}

use crate::limits::{SWEEP_GRACE_SECS, SWEEP_INTERVAL};

/// Keeps the store bounded: without this, every challenge that is never answered
/// would leave a nonce behind forever.
async fn sweep(verifier: Arc<Verifier>) {
    let mut tick = tokio::time::interval(SWEEP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let v = verifier.clone();
        let cutoff = crate::clock::now_unix() - SWEEP_GRACE_SECS;
        match tokio::task::spawn_blocking(move || v.store.purge_expired(cutoff)).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => info!(removed = n, "purged expired nonces, enrollments and tokens"),
            Ok(Err(e)) => warn!(error = %e, "purging expired records failed"),
            Err(e) => warn!(error = %e, "purge task failed"),
        }
        let v = verifier.clone();
        let r = tokio::task::spawn_blocking(move || {
            let e = &v.config.evidence;
            let before = match e.keep {
                Some(keep) => crate::clock::now_unix() - keep.as_secs() as i64,
                None => i64::MAX,
            };
            v.store.prune_evidence(before, e.max_records, e.max_bytes)
        })
        .await;
        match r {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => info!(removed = n, "pruned evidence past its retention"),
            Ok(Err(e)) => warn!(error = %e, "pruning evidence failed"),
            Err(e) => warn!(error = %e, "prune task failed"),
        }
    }
}

/// Every second: unauthenticated attempts counted since the last second are
/// written to the store (one summary line logged); every few seconds rate
/// state back to full is forgotten, quiet bursts are logged and the caps'
/// expired entries dropped.
async fn limits_upkeep(verifier: Arc<Verifier>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n = 0u64;
    loop {
        tick.tick().await;
        n += 1;
        let v = verifier.clone();
        let r = tokio::task::spawn_blocking(move || {
            let flushed = v.flush_attempts();
            if n.is_multiple_of(5) {
                v.rate_limits.sweep();
                let now = crate::clock::now_unix();
                v.nonces.sweep(now);
                v.enrollments.sweep(now);
            }
            flushed
        })
        .await;
        match r {
            Ok(Ok((0, _))) => {}
            Ok(Ok((attempts, nodes))) => warn!(
                attempts,
                nodes,
                "unauthenticated attestation attempts (signature, AK or nonce did not verify): \
                 counted per node, not recorded as verdicts"
            ),
            Ok(Err(e)) => warn!(error = %e, "recording unauthenticated attempts failed"),
            Err(e) => warn!(error = %e, "limits upkeep failed"),
        }
    }
}

/// Every second: expiry-driven orchestrator upkeep (rotating a Swarm token
/// whose window ended), retrying isolations the orchestrator has not
/// confirmed, and isolating nodes that went stale.
async fn join_upkeep(verifier: Arc<Verifier>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_warning = None::<String>;
    let mut last_stale_scan = None;
    loop {
        tick.tick().await;
        let mut result = verifier
            .join
            .tick(crate::clock::now_unix())
            .await
            .map_err(ServiceError::from);
        if result.is_ok() {
            result = crate::membership::retry_quarantines(&verifier).await;
        }
        if result.is_ok() {
            result = crate::membership::mark_stale(&verifier, &mut last_stale_scan).await;
        }
        // One warning per distinct problem, not one a second.
        if let Err(ServiceError::Join(_)) = &result {
            crate::metrics::join_error(verifier.join.name());
        }
        match result {
            Ok(()) => last_warning = None,
            Err(e) if last_warning.as_deref() != Some(e.to_string().as_str()) => {
                warn!(error = %e, orchestrator = verifier.join.name(), "join upkeep failed; retrying every second");
                last_warning = Some(e.to_string());
            }
            Err(_) => {}
        }
    }
}

async fn shutdown() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
