//! The gateway's TOML configuration as written by the operator. Every table rejects unknown
//! keys, so a typo is an error that names the key and line instead of a silently ignored
//! setting. Fields whose values are checked against the rest of the file after parsing are
//! `Spanned`, so those problems can name the line too.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use crate::audit::Durability;
use crate::audit::settings;
use crate::engine::{Mode, SandboxSettings};
use crate::request::identity::IssuerConfig;
use crate::request::stored::VerifyWriteOwner;
use crate::state::{MemoryStateLimits, RedisSettings};

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub server: ServerConfig,
    #[serde(default)]
    pub admin: Option<AdminConfig>,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub sandbox: SandboxSettings,
    #[serde(default)]
    pub state: StateSection,
    #[serde(default)]
    pub identity: IdentityConfig,
    #[serde(default)]
    pub upstreams: Vec<UpstreamConfig>,
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    #[serde(default)]
    pub audit: AuditConfig,
}

/// `[state]`: the capacities (`buckets`, `counters`, ... as [`MemoryStateLimits`]), and
/// where state lives: `backend = "memory"` (the default, in this process) or `"redis"`
/// with `[state.redis]` (shared by every replica).
#[derive(Debug, Default)]
pub struct StateSection {
    pub limits: MemoryStateLimits,
    pub redis: Option<RedisSettings>,
}

impl<'de> Deserialize<'de> for StateSection {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut table = toml::Table::deserialize(deserializer)?;
        let backend = match table.remove("backend") {
            None => "memory".to_string(),
            Some(toml::Value::String(name)) => name,
            Some(_) => {
                return Err(D::Error::custom(
                    "`backend` must be \"memory\" or \"redis\"",
                ));
            }
        };
        let redis = table
            .remove("redis")
            .map(|value| value.try_into::<RedisSettings>())
            .transpose()
            .map_err(|error| D::Error::custom(format!("in `[state.redis]`: {error}")))?;
        let limits = toml::Value::Table(table)
            .try_into::<MemoryStateLimits>()
            .map_err(D::Error::custom)?;
        let redis = match (backend.as_str(), redis) {
            ("memory", None) => None,
            ("memory", Some(_)) => {
                return Err(D::Error::custom(
                    "`[state.redis]` is given but `backend` is \"memory\"; set \
                     `backend = \"redis\"` or remove the table",
                ));
            }
            ("redis", Some(settings)) => Some(settings),
            ("redis", None) => {
                return Err(D::Error::custom(
                    "`backend = \"redis\"` needs a `[state.redis]` table with at least `url`",
                ));
            }
            (other, _) => {
                return Err(D::Error::custom(format!(
                    "`backend` is `{other}`; use \"memory\" or \"redis\""
                )));
            }
        };
        Ok(StateSection { limits, redis })
    }
}

/// `[server]`: the client-facing listener.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address and port, for example `127.0.0.1:8443`.
    pub listen: SocketAddr,
    /// Serve TLS (HTTP/1.1 and HTTP/2 by ALPN) with this certificate; plain HTTP without it.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Host names clients may address (`Host` / `:authority`, port ignored). Empty: any.
    #[serde(default)]
    pub hostnames: Vec<String>,
}

/// `[server.tls]`: PEM files, paths relative to the config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: Spanned<PathBuf>,
    pub key: Spanned<PathBuf>,
}

/// `[admin]`: health, readiness and metrics, on their own listener so they are never
/// exposed where clients connect.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    pub listen: SocketAddr,
}

/// `[limits]`: what one client may ask of the gateway.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Request headers; more is a 431.
    pub max_header_count: usize,
    /// Bytes of all request header names and values; more is a 431.
    pub max_header_bytes: usize,
    /// Request body bytes; more is a 413. Request bodies are read whole (policies and the
    /// classifier inspect writes and bundles), so this also bounds memory per request.
    pub max_body_bytes: usize,
    /// Entries in a batch or transaction Bundle; more is a 413.
    pub max_batch_entries: usize,
    /// Response body bytes buffered for policies that inspect responses. A larger response
    /// is shown to them without its body.
    pub max_inspect_bytes: usize,
    /// Time to receive a request's headers.
    pub header_read_timeout_ms: u64,
    /// Time to receive a request's body.
    pub body_read_timeout_ms: u64,
    /// Requests handled at once; more are refused with 503 and `Retry-After`.
    pub max_concurrent_requests: usize,
    /// Time in-flight requests get to finish on shutdown.
    pub shutdown_grace_ms: u64,
    /// Time a new connection has to deliver its first request (a silent client, a partial
    /// HTTP/2 preface or a preface and then nothing is closed after it).
    pub first_request_timeout_ms: u64,
    /// A keep-alive or HTTP/2 connection with no request in flight for this long is closed.
    pub idle_timeout_ms: u64,
    /// Open client connections at most; more are closed at accept. 0: three quarters of
    /// the process's descriptor limit, so the admin listener, upstreams and the audit log
    /// keep descriptors.
    pub max_connections: usize,
    /// Open client connections from one address at most; more are closed at accept.
    pub max_connections_per_peer: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_header_count: 64,
            max_header_bytes: 16 << 10,
            max_body_bytes: 1 << 20,
            max_batch_entries: 100,
            max_inspect_bytes: 4 << 20,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 30_000,
            max_concurrent_requests: 1024,
            shutdown_grace_ms: 10_000,
            first_request_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            max_connections: 0,
            max_connections_per_peer: 256,
        }
    }
}

/// `[identity]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    #[serde(default)]
    pub issuers: Vec<IssuerConfig>,
}

/// `[[upstreams]]`: an API the gateway forwards to.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    pub name: Spanned<String>,
    /// The base URL, `http://host:port/path` or `https://host:port/path`; the route's path
    /// below its prefix is appended.
    pub url: Spanned<String>,
    /// For `https://`: the PEM file of the CA(s) the upstream's certificate must chain to
    /// (relative to the config file); without it, the system's trust store.
    #[serde(default)]
    pub ca_file: Option<Spanned<PathBuf>>,
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Time for the upstream's response headers; past it the client gets a 504.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Idle connections kept open to this upstream.
    #[serde(default = "default_pool_idle")]
    pub pool_max_idle: usize,
    #[serde(default = "default_pool_idle_timeout_ms")]
    pub pool_idle_timeout_ms: u64,
}

fn default_connect_timeout_ms() -> u64 {
    2_000
}
fn default_timeout_ms() -> u64 {
    30_000
}
fn default_pool_idle() -> usize {
    32
}
fn default_pool_idle_timeout_ms() -> u64 {
    90_000
}

/// `[[routes]]`: a path prefix, the upstream it goes to, and the policies that guard it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub name: Spanned<String>,
    /// Canonical path prefix, for example `/fhir`. The longest matching prefix wins.
    pub prefix: Spanned<String>,
    pub upstream: Spanned<String>,
    /// Paths below the prefix that may be called without a token (for example
    /// `/metadata`, `/.well-known/smart-configuration`). Everything else needs one.
    #[serde(default)]
    pub anonymous_paths: Vec<String>,
    /// Resource types this route serves; others are a 404. Empty: all.
    #[serde(default)]
    pub resource_types: Vec<Spanned<String>>,
    /// Request headers shown to policies (lower case). Authorization and cookies never are.
    #[serde(default = "default_policy_headers")]
    pub policy_headers: Vec<String>,
    /// Show request bodies (writes, bundles) to policies.
    #[serde(default = "default_true")]
    pub policy_body: bool,
    /// Response headers this route's policies may set, besides the rate-limit fields and
    /// `Retry-After` that every policy may set. Hop-by-hop, framing, security, caching,
    /// cookie and gateway-owned headers cannot be listed.
    #[serde(default)]
    pub policy_response_headers: Vec<Spanned<String>>,
    /// Whose updates, patches and deletes by id are preceded by a read of the stored
    /// resource, so that policies judge whose record the write changes and the write is
    /// forwarded on condition that it is still that version (`request::stored`).
    #[serde(default)]
    pub verify_write_owner: VerifyWriteOwner,
    /// The policy chain, in order.
    #[serde(default)]
    pub policies: Vec<PolicyConfig>,
}

fn default_policy_headers() -> Vec<String> {
    vec!["accept".into(), "user-agent".into(), "prefer".into()]
}
fn default_true() -> bool {
    true
}

/// `[[routes.policies]]`: one module of a route's chain.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// The name used in logs, metrics and the audit record.
    pub name: Spanned<String>,
    /// The `.wasm` component, relative to the config file.
    pub module: Spanned<PathBuf>,
    #[serde(default)]
    pub mode: Mode,
    /// The module's configuration, passed to its `init` as JSON.
    #[serde(default)]
    pub config: Option<Spanned<toml::Table>>,
    /// The module's configuration as a JSON file (relative to the config file), for
    /// configurations too large to write inline (care-team lists, VIP lists). Read at load
    /// and on every reload. Exclusive with `config`.
    #[serde(default)]
    pub config_file: Option<Spanned<PathBuf>>,
    /// Calls of this policy that may run at once; default `[sandbox] max_concurrent_calls`.
    #[serde(default)]
    pub max_concurrent_calls: Option<u32>,
    /// Calls that may wait for a slot; default `[sandbox] max_queued_calls`.
    #[serde(default)]
    pub max_queued_calls: Option<u32>,
    /// How long a call may wait for a slot; default `[sandbox] queue_timeout_ms`.
    #[serde(default)]
    pub queue_timeout_ms: Option<u64>,
    /// This policy's own state capacities (all five keys); default: an even share of
    /// `[state]` among the policies without their own.
    #[serde(default)]
    pub state: Option<Spanned<PolicyStateLimits>>,
}

/// `[routes.policies.state]`: a policy's own state capacities, every key given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyStateLimits {
    pub buckets: std::num::NonZeroUsize,
    pub counters: std::num::NonZeroUsize,
    pub distinct_keys: std::num::NonZeroUsize,
    pub distinct_members_per_key: std::num::NonZeroUsize,
    pub distinct_member_budget: std::num::NonZeroUsize,
}

impl From<PolicyStateLimits> for MemoryStateLimits {
    fn from(limits: PolicyStateLimits) -> Self {
        MemoryStateLimits {
            buckets: limits.buckets,
            counters: limits.counters,
            distinct_keys: limits.distinct_keys,
            distinct_members_per_key: limits.distinct_members_per_key,
            distinct_member_budget: limits.distinct_member_budget,
        }
    }
}

/// `[audit]`: the tamper-evident audit log (see `ehrgate::audit`). Without `dir`, decisions
/// are only written to the process log.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Directory for the log files, relative to the config file; created if missing.
    pub dir: Option<Spanned<PathBuf>>,
    /// `strict`: the record is fsynced before the response is released, and a log that
    /// cannot be written refuses requests with 503. `buffered`: records are fsynced every
    /// `fsync_interval_ms`; a crash can lose that much.
    pub mode: Durability,
    /// A signed checkpoint after this many records.
    pub checkpoint_every: u64,
    /// A signed checkpoint after this many seconds when records are waiting for one.
    pub checkpoint_secs: u64,
    /// The Ed25519 private key (PKCS#8 PEM from `ehrgate keygen`) that signs checkpoints,
    /// relative to the config file. Required with `dir`.
    pub signing_key: Option<Spanned<PathBuf>>,
    /// A file is rotated before it grows past this many bytes (and at the UTC day change).
    pub rotate_bytes: u64,
    /// Buffered mode: how often the log is fsynced. Default 1000.
    pub fsync_interval_ms: Option<u64>,
    /// Records waiting for the writer at most; requests wait while it is full.
    pub queue_capacity: u64,
    /// Records with this risk score (0-100) or more are flagged for review.
    pub review_risk_threshold: u64,
    /// Protocol refusals (connections and requests refused below the request handler): the
    /// interval their records are bounded over.
    pub refusal_interval_secs: u64,
    /// Protocol refusals with a record of their own per peer address and interval; more are
    /// counted in one aggregate record per peer at the interval's end.
    pub refusal_records_per_peer: u64,
    /// Protocol refusals with a record of their own per interval, all peers together.
    pub refusal_records_per_interval: u64,
    /// Peer addresses tracked per interval (least recently refused evicted first; the
    /// counts of evicted peers go into one aggregate without an address).
    pub refusal_peers: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            dir: None,
            mode: Durability::Strict,
            checkpoint_every: settings::DEFAULT_CHECKPOINT_EVERY,
            checkpoint_secs: settings::DEFAULT_CHECKPOINT_SECS,
            signing_key: None,
            rotate_bytes: settings::DEFAULT_ROTATE_BYTES,
            fsync_interval_ms: None,
            queue_capacity: settings::DEFAULT_QUEUE_CAPACITY as u64,
            review_risk_threshold: u64::from(settings::DEFAULT_REVIEW_RISK_THRESHOLD),
            refusal_interval_secs: settings::DEFAULT_REFUSAL_INTERVAL_SECS,
            refusal_records_per_peer: settings::DEFAULT_REFUSAL_RECORDS_PER_PEER,
            refusal_records_per_interval: settings::DEFAULT_REFUSAL_RECORDS_PER_INTERVAL,
            refusal_peers: settings::DEFAULT_REFUSAL_PEERS,
        }
    }
}
