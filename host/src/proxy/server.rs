//! Listeners, TLS, connections and the process lifecycle: `serve` binds the client and
//! admin listeners, serves HTTP/1.1 and HTTP/2 (ALPN with TLS, prior knowledge without),
//! reloads the configuration on SIGHUP (keeping the old one if the new one does not load),
//! and drains in-flight requests on SIGTERM or SIGINT.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, anyhow};
use arc_swap::ArcSwap;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{SignalKind, signal};
use tokio_rustls::TlsAcceptor;

use super::connections::{Activity, Admitted, ConnectionLimits, Refused, Silence, watchdog};
use super::metrics::{CauseLabels, Metrics, RuleLabels};
use super::refusals::{self, Refusal, RefusalCause};
use super::{ConnectionInfo, Gateway, Shared, phases};
use crate::audit::AuditLog;
use crate::config::{self, GatewayConfig, LimitsConfig, TlsFiles};
use crate::engine::PolicyEngine;
use crate::state::GatewayState;

/// Time a client gets to finish the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What `prepare` builds: the configuration, the engine, the gateway and the state
/// partitions behind the engine.
pub struct Prepared {
    pub config: GatewayConfig,
    pub engine: PolicyEngine,
    pub gateway: Gateway,
    pub state: Arc<GatewayState>,
}

/// Loads the configuration, builds the gateway and the engine and state it needs.
pub fn prepare(config_path: &Path) -> anyhow::Result<Prepared> {
    let config = config::load(config_path).map_err(|e| anyhow!("{e}"))?;
    let state = Arc::new(GatewayState::open(
        config.state,
        config.state_redis.as_ref(),
        &config.base_dir,
        &config.state_partitions,
    )?);
    let engine = PolicyEngine::new(config.sandbox.clone(), state.clone())?;
    let gateway = Gateway::build(config.clone(), &engine)
        .map_err(|problems| anyhow!("{}", problems.join("\n")))?;
    Ok(Prepared {
        config,
        engine,
        gateway,
        state,
    })
}

/// Runs the gateway until SIGTERM or SIGINT.
pub async fn serve(config_path: PathBuf) -> anyhow::Result<()> {
    let path = config_path.clone();
    let Prepared {
        config,
        engine,
        gateway,
        state,
    } = tokio::task::spawn_blocking(move || prepare(&path)).await??;
    let tls = match &config.tls {
        Some(files) => Some(tls_acceptor(files)?),
        None => None,
    };
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let audit = match config.audit.clone() {
        Some(settings) => Some(
            tokio::task::spawn_blocking(move || AuditLog::open(&settings))
                .await?
                .context("cannot open the audit log")?,
        ),
        None => None,
    };
    let mut metrics = Metrics::new();
    metrics.watch_engine(engine.clone());
    if let Some(partitions) = state.memory() {
        metrics.watch_state(partitions.clone());
    }
    metrics.watch_state_calls();
    if let Some(redis) = state.redis() {
        match redis.ping().await {
            Ok(()) => tracing::info!(server = redis.describe(), "state on Redis"),
            Err(error) => tracing::error!(
                server = redis.describe(),
                %error,
                "the Redis state server does not answer; every state call fails (policies \
                 refuse) until it does"
            ),
        }
    }
    if let Some(audit) = &audit {
        metrics.watch_audit(audit.watch());
    }
    let (refusals, refusal_writer) = refusals::start(
        config.refusal_bounds,
        tls.is_some(),
        &metrics,
        audit.clone(),
    );
    let shared = Arc::new(Shared {
        gateway: ArcSwap::from_pointee(gateway),
        engine,
        state,
        audit,
        metrics,
        concurrency: Arc::new(tokio::sync::Semaphore::new(
            config.limits.max_concurrent_requests,
        )),
        connections: Arc::new(ConnectionLimits::new(
            config.limits.max_connections,
            config.limits.max_connections_per_peer,
        )),
        refusals,
        ready: std::sync::atomic::AtomicBool::new(true),
    });
    if let Some(admin) = config.admin_listen {
        let admin_listener = TcpListener::bind(admin)
            .await
            .with_context(|| format!("cannot listen on {admin} (admin)"))?;
        tracing::info!(address = %admin, "admin listener ready");
        tokio::spawn(super::admin::serve(admin_listener, shared.clone()));
    }
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    tracing::info!(address = %config.listen, tls = tls.is_some(), routes = config.routes.len(), "gateway listening");

    let graceful = GracefulShutdown::new();
    let mut hangups = signal(SignalKind::hangup())?;
    let mut terminates = signal(SignalKind::terminate())?;
    let mut interrupts = signal(SignalKind::interrupt())?;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => match shared.connections.admit(peer.ip()) {
                    Ok(admitted) => {
                        let limits = shared.gateway.load().config.limits.clone();
                        let connection = ConnectionInfo { peer, tls: tls.is_some() };
                        spawn_connection(stream, connection, admitted, tls.clone(), shared.clone(), &graceful, limits);
                    }
                    Err(refused) => {
                        // Closed at once: a client holding connections open cannot take the
                        // descriptors the admin listener and the upstreams need.
                        drop(stream);
                        shared.metrics.connections_refused.get_or_create(&CauseLabels { cause: refused.label() }).inc();
                        let cause = match refused {
                            Refused::TotalLimit => RefusalCause::TotalLimit,
                            Refused::PeerLimit => RefusalCause::PeerLimit,
                        };
                        shared.refusals.refuse(Refusal::new(peer, cause));
                    }
                },
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = hangups.recv() => reload(&config_path, &shared).await,
            _ = terminates.recv() => break,
            _ = interrupts.recv() => break,
        }
    }

    shared.ready.store(false, Ordering::Relaxed);
    drop(listener);
    let grace = Duration::from_millis(shared.gateway.load().config.limits.shutdown_grace_ms);
    tracing::info!(
        in_flight = graceful.count(),
        grace_ms = grace.as_millis() as u64,
        "draining"
    );
    match tokio::time::timeout(grace, graceful.shutdown()).await {
        Ok(()) => tracing::info!("drained; stopping"),
        Err(_) => tracing::warn!("grace period over; stopping with requests in flight"),
    }
    // Requests whose client went away run on in their own tasks until their record is
    // written; give them one more grace period before the log is sealed.
    let deadline = tokio::time::Instant::now() + grace;
    while shared.metrics.in_flight.get() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let unfinished = shared.metrics.in_flight.get();
    if unfinished > 0 {
        tracing::warn!(
            unfinished,
            "stopping with requests still running; they have no record"
        );
    }
    // The refusals' last records and aggregates go in before the log is sealed.
    refusal_writer.finish().await;
    // After draining: every answered request's record is queued; write them and a final
    // checkpoint. Requests still in flight past the grace period are refused with 503.
    if let Some(audit) = &shared.audit {
        audit.flush_and_close().await;
    }
    Ok(())
}

fn spawn_connection(
    stream: TcpStream,
    connection: ConnectionInfo,
    admitted: Admitted,
    tls: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    graceful: &GracefulShutdown,
    limits: LimitsConfig,
) {
    let watcher = graceful.watcher();
    let opened = tokio::time::Instant::now();
    let activity = Arc::new(Activity::default());
    let silent = watchdog(
        activity.clone(),
        opened,
        Duration::from_millis(limits.first_request_timeout_ms),
        Duration::from_millis(limits.idle_timeout_ms),
    );
    let metrics_shared = shared.clone();
    metrics_shared.metrics.open_connections.inc();
    let serve = serve_connection(
        stream, connection, tls, shared, watcher, limits, activity, opened,
    );
    tokio::spawn(async move {
        tokio::select! {
            () = serve => {}
            silence = silent => {
                // Dropping the connection closes it; nothing is in flight on it.
                metrics_shared
                    .metrics
                    .connections_closed
                    .get_or_create(&CauseLabels { cause: silence.label() })
                    .inc();
                tracing::debug!(peer = %connection.peer, cause = silence.label(), "silent connection closed");
                // A connection that never delivered a request was refused; one closed idle
                // after its requests was served.
                if silence == Silence::NoFirstRequest {
                    metrics_shared
                        .refusals
                        .refuse(Refusal::new(connection.peer, RefusalCause::FirstRequestTimeout));
                }
            }
        }
        metrics_shared.metrics.open_connections.dec();
        drop(admitted);
    });
}

/// Serves one connection (TLS handshake, then HTTP/1.1 or HTTP/2) until it ends.
#[allow(clippy::too_many_arguments)]
async fn serve_connection(
    stream: TcpStream,
    connection: ConnectionInfo,
    tls: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    watcher: hyper_util::server::graceful::Watcher,
    limits: LimitsConfig,
    activity: Arc<Activity>,
    opened: tokio::time::Instant,
) {
    {
        let _ = stream.set_nodelay(true);
        let peer = connection.peer;
        let refusals = shared.refusals.clone();
        let activity_seen = activity.clone();
        let service = service_fn(move |request| {
            let shared = shared.clone();
            let in_flight = activity.begin(opened);
            async move {
                let _in_flight = in_flight;
                // The request runs in a task of its own: hyper drops this future when the
                // client closes the connection or resets the stream, and a request already
                // forwarded (a DELETE, say) must still reach its audit record.
                let handled = tokio::spawn(phases::handle(shared, request, connection)).await;
                Ok::<_, Infallible>(handled.unwrap_or_else(|error| {
                    tracing::error!(%error, "request task failed");
                    super::outcome::refusal_response(
                        &super::outcome::Refusal {
                            status: 500,
                            rule_id: "gateway.internal-error",
                            message: "the gateway failed while handling this request",
                            retry_after_secs: None,
                            headers: &[],
                        },
                        "",
                    )
                }))
            }
        });
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_millis(limits.header_read_timeout_ms))
            // hyper refuses far-too-large heads itself; the phase driver refuses anything over
            // the configured limits with a 431 OperationOutcome.
            .max_headers(limits.max_header_count.saturating_mul(2).max(16))
            .max_buf_size((limits.max_header_bytes.saturating_mul(2)).max(8192));
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(
                u32::try_from(limits.max_header_bytes.saturating_mul(2)).unwrap_or(u32::MAX),
            )
            .max_concurrent_streams(128);
        let result = match tls {
            Some(acceptor) => {
                match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => {
                        let connection = builder.serve_connection(
                            TokioIo::new(refusals::watch(stream, refusals.clone(), peer)),
                            service,
                        );
                        watcher.watch(connection.into_owned()).await
                    }
                    Ok(Err(error)) => {
                        tracing::debug!(%peer, %error, "TLS handshake failed");
                        if let Some(refusal) = refusals::of_tls_error(&error, peer) {
                            refusals.refuse(refusal);
                        }
                        return;
                    }
                    Err(_) => {
                        refusals.refuse(Refusal::new(peer, RefusalCause::TlsHandshakeTimeout));
                        return;
                    }
                }
            }
            None => {
                let connection = builder.serve_connection(
                    TokioIo::new(refusals::watch(stream, refusals.clone(), peer)),
                    service,
                );
                watcher.watch(connection.into_owned()).await
            }
        };
        if let Err(error) = result {
            tracing::debug!(%peer, %error, "connection ended with an error");
            if let Some(refusal) =
                refusals::of_connection_error(&*error, peer, activity_seen.has_started())
            {
                refusals.refuse(refusal);
            }
        }
    }
}

/// Builds a new gateway from the file and swaps it in; on any problem keeps the old one.
async fn reload(config_path: &Path, shared: &Arc<Shared>) {
    let path = config_path.to_owned();
    let engine = shared.engine.clone();
    let current_listen = shared.gateway.load().config.listen;
    let current_audit = shared.audit.as_ref().map(|audit| audit.settings().clone());
    let state = shared.state.clone();
    let built = tokio::task::spawn_blocking(move || -> anyhow::Result<Gateway> {
        let config = config::load(&path).map_err(|e| anyhow!("{e}"))?;
        if config.listen != current_listen {
            tracing::warn!("`server.listen` changed; the new address takes effect on restart");
        }
        if config.audit != current_audit {
            // The log's chain and files belong to one writer for the process's life.
            tracing::warn!("`[audit]` changed; the new settings take effect on restart");
        }
        if config.state_redis.is_some() != state.redis().is_some() {
            anyhow::bail!("`[state] backend` changed; the state backend changes only on restart");
        }
        let (totals, partitions) = (config.state, config.state_partitions.clone());
        let gateway = Gateway::build(config, &engine)
            .map_err(|problems| anyhow!("{}", problems.join("\n")))?;
        // Only a configuration that loaded resizes the partitions: a failed reload must
        // not shrink (and so evict) the running modules' state.
        state.configure_with_totals(totals, &partitions);
        Ok(gateway)
    })
    .await;
    let outcome = match built {
        Ok(Ok(gateway)) => {
            shared.gateway.store(Arc::new(gateway));
            tracing::info!("configuration reloaded");
            "ok"
        }
        Ok(Err(error)) => {
            tracing::error!(error = %error, "reload failed; keeping the running configuration");
            "failed"
        }
        Err(error) => {
            tracing::error!(error = %error, "reload failed; keeping the running configuration");
            "failed"
        }
    };
    shared
        .metrics
        .reloads
        .get_or_create(&RuleLabels {
            rule: outcome.into(),
        })
        .inc();
}

/// A TLS acceptor for the certificate chain and key, offering HTTP/2 and HTTP/1.1.
pub fn tls_acceptor(files: &TlsFiles) -> anyhow::Result<TlsAcceptor> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .with_context(|| format!("cannot read certificate `{}`", files.cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("bad certificate PEM in `{}`", files.cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .with_context(|| format!("cannot read private key `{}`", files.key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the certificate and key do not make a usable TLS identity")?;
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(tls)))
}
