//! The admin listener: `/healthz` (the process is up), `/readyz` (serving and not
//! draining) and `/metrics` (Prometheus text). Kept off the client listener so it is never
//! exposed where clients connect.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use http::{Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use super::connections::{Activity, ConnectionLimits, watchdog};
use super::outcome::full;
use super::{ProxyBody, Shared};

/// Admin connections open at once.
const ADMIN_CONNECTIONS: usize = 64;
/// Time an admin connection has for its first request.
const ADMIN_FIRST_REQUEST: Duration = Duration::from_secs(10);
/// An admin connection with no request for this long is closed.
const ADMIN_IDLE: Duration = Duration::from_secs(60);

pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    // The admin listener has its own connection budget, apart from the client listener's:
    // health checks and scrapes answer while clients flood the public port.
    let limits = Arc::new(ConnectionLimits::new(ADMIN_CONNECTIONS, ADMIN_CONNECTIONS));
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            // Out of descriptors and the like: back off instead of spinning.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Ok(admitted) = limits.admit(peer.ip()) else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let opened = tokio::time::Instant::now();
            let activity = Arc::new(Activity::default());
            let silent = watchdog(activity.clone(), opened, ADMIN_FIRST_REQUEST, ADMIN_IDLE);
            let service = service_fn(move |request| {
                let shared = shared.clone();
                let in_flight = activity.begin(opened);
                async move {
                    let _in_flight = in_flight;
                    let state = match request.uri().path() {
                        "/readyz" => state_backend(&shared).await,
                        _ => Ok(String::new()),
                    };
                    Ok::<_, Infallible>(respond(&shared, &request, state))
                }
            });
            let builder = auto::Builder::new(TokioExecutor::new());
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = connection => {}
                _ = silent => {}
            }
            drop(admitted);
        });
    }
}

/// The state backend's line of `/readyz`: in memory, or whether the shared server answers.
async fn state_backend(shared: &Shared) -> Result<String, String> {
    match shared.state.redis() {
        None => Ok("state: memory\n".to_owned()),
        Some(redis) => match redis.ping().await {
            Ok(()) => Ok(format!("state: redis {} reachable\n", redis.describe())),
            Err(error) => Err(format!("state: redis {}: {error}\n", redis.describe())),
        },
    }
}

fn respond(
    shared: &Shared,
    request: &Request<Incoming>,
    state: Result<String, String>,
) -> Response<ProxyBody> {
    let (status, content_type, body) = match request.uri().path() {
        "/healthz" => (StatusCode::OK, "text/plain", "ok\n".to_owned()),
        "/readyz" if shared.ready.load(Ordering::Relaxed) => match state {
            Ok(line) => (StatusCode::OK, "text/plain", format!("ready\n{line}")),
            // Every state call fails while the shared server is away: the policies refuse
            // (fail closed), so the replica is not ready.
            Err(line) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                format!("state backend unavailable\n{line}"),
            ),
        },
        "/readyz" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "draining\n".to_owned(),
        ),
        "/metrics" => (
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            shared.metrics.render(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found\n".to_owned(),
        ),
    };
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    if let Ok(value) = header::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}
