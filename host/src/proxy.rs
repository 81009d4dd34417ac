//! The HTTP side of the gateway: listeners and TLS (`server`), the request phases
//! (`phases`), forwarding (`forward`), the admin endpoints (`admin`), metrics, the
//! per-request record (`record`) and the refusals below the request handler (`refusals`).
//!
//! A [`Gateway`] is one immutable snapshot of the configuration with its policies loaded and
//! its upstream pools built. Requests read the current snapshot; a reload builds a new one
//! off the request path and swaps it in atomically, so in-flight requests finish on the one
//! they started with.

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;

use crate::audit::AuditLog;
use crate::config::{GatewayConfig, RouteSettings};
use crate::engine::{ChainLink, PolicyChain, PolicyEngine};
use crate::request::canonical::CanonicalTarget;
use crate::request::identity::Verifier;

pub mod admin;
pub mod connections;
pub mod context;
pub mod forward;
pub mod metrics;
pub mod outcome;
mod phases;
mod pre_read;
mod record;
pub mod refusals;
pub mod server;

pub use forward::Upstream;

/// Body type of every response the gateway sends.
pub type ProxyBody = UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// What the server knows about a connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionInfo {
    pub peer: SocketAddr,
    pub tls: bool,
}

/// A configuration with everything built: policies loaded, keys read, pools created.
pub struct Gateway {
    pub config: GatewayConfig,
    /// Longest prefix first.
    routes: Vec<Route>,
    verifier: Verifier,
}

/// A route ready to serve.
pub struct Route {
    pub settings: RouteSettings,
    pub chain: PolicyChain,
    pub upstream: Arc<Upstream>,
}

impl Route {
    /// Whether a request without a token may pass: only reads (GET, HEAD) of a listed path.
    /// The paths worth opening (`/metadata`, `/.well-known/smart-configuration`) are
    /// documents; a write to them has no anonymous meaning and must not reach the upstream.
    fn is_anonymous(&self, method: &http::Method, segments: &[String]) -> bool {
        (method == http::Method::GET || method == http::Method::HEAD)
            && self.settings.anonymous_paths.iter().any(|p| p == segments)
    }
}

impl Gateway {
    /// Builds everything the configuration describes. Returns every problem found.
    pub fn build(config: GatewayConfig, engine: &PolicyEngine) -> Result<Gateway, Vec<String>> {
        let mut problems = Vec::new();
        let verifier = match Verifier::from_config(&config.issuers, &config.base_dir) {
            Ok(verifier) => Some(verifier),
            Err(found) => {
                problems.extend(found.into_iter().map(|p| format!("identity: {p}")));
                None
            }
        };
        let mut upstreams: Vec<Arc<Upstream>> = Vec::with_capacity(config.upstreams.len());
        for settings in &config.upstreams {
            match Upstream::new(settings.clone()) {
                Ok(upstream) => upstreams.push(Arc::new(upstream)),
                Err(problem) => problems.push(problem),
            }
        }
        // The instance pool is sized when the engine starts; a reload cannot grow it.
        let sandbox = engine.settings();
        let wanted = crate::config::instance_slots_wanted(&config.routes, sandbox);
        if wanted > u64::from(sandbox.max_concurrent_instances) {
            problems.push(format!(
                "the policies' `max_concurrent_calls` add up to {wanted}, more than the {} \
                 instance slots of the running engine (`sandbox.max_concurrent_instances` \
                 takes effect at a restart)",
                sandbox.max_concurrent_instances
            ));
        }
        let mut routes = Vec::new();
        for settings in &config.routes {
            let mut links = Vec::new();
            for (spec, mode) in &settings.policies {
                match engine.load(spec) {
                    Ok(policy) => links.push(ChainLink {
                        policy,
                        mode: *mode,
                    }),
                    Err(error) => problems.push(format!("route `{}`: {error}", settings.name)),
                }
            }
            let Some(upstream) = upstreams
                .iter()
                .find(|u| u.settings.name == settings.upstream)
            else {
                problems.push(format!(
                    "route `{}`: upstream `{}` is not defined",
                    settings.name, settings.upstream
                ));
                continue;
            };
            routes.push(Route {
                settings: settings.clone(),
                chain: PolicyChain::new(links),
                upstream: upstream.clone(),
            });
        }
        routes.sort_by_key(|r| std::cmp::Reverse(r.settings.prefix_segments.len()));
        match verifier {
            Some(verifier) if problems.is_empty() => Ok(Gateway {
                config,
                routes,
                verifier,
            }),
            _ => Err(problems),
        }
    }

    /// The route whose prefix matches `target` (longest first), and the target below it.
    fn route_for(&self, target: &CanonicalTarget) -> Option<(&Route, CanonicalTarget)> {
        self.routes.iter().find_map(|route| {
            target
                .strip_prefix(&route.settings.prefix_segments)
                .map(|below| (route, below))
        })
    }
}

/// State shared by every connection: the current gateway, metrics, the concurrency limit,
/// and the audit log (opened once at startup and kept across reloads).
pub struct Shared {
    pub gateway: ArcSwap<Gateway>,
    pub engine: PolicyEngine,
    pub state: Arc<crate::state::GatewayState>,
    pub audit: Option<AuditLog>,
    pub metrics: metrics::Metrics,
    pub concurrency: Arc<tokio::sync::Semaphore>,
    /// Open client connections, in total and per peer (set at start).
    pub connections: Arc<connections::ConnectionLimits>,
    /// Refusals below the request handler: counted, and audited within their bounds.
    pub refusals: Arc<refusals::Refusals>,
    pub ready: std::sync::atomic::AtomicBool,
}
