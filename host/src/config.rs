//! Loading the gateway configuration: parse the TOML file, check it as a whole, and produce
//! typed, validated settings. `ehrgate check` and `ehrgate serve` run exactly this path.
//! Every problem is collected (not just the first) and names the file, line and key.

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::audit::keys::KeyError;
use crate::audit::settings::RefusalBounds;
use crate::audit::{AuditSettings, Durability};
use crate::engine::response_headers::{self, ResponseHeaderAllowList};
use crate::engine::{CallBudget, Mode, PolicySpec, SandboxSettings};
use crate::request::canonical::canonicalize_target;
use crate::request::fhir::{self, TypeName};
use crate::request::identity::IssuerConfig;
use crate::request::stored::VerifyWriteOwner;
use crate::state::MemoryStateLimits;

pub mod model;
mod upstream_tls;

pub use model::{AuditConfig, LimitsConfig};

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line in the config file, when known.
    pub line: Option<usize>,
    pub message: String,
    pub help: Option<String>,
}

/// Every problem found in a configuration file.
#[derive(Debug, Clone)]
pub struct ConfigErrors {
    pub path: PathBuf,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            match problem.line {
                Some(line) => write!(f, "{}:{line}: {}", self.path.display(), problem.message)?,
                None => write!(f, "{}: {}", self.path.display(), problem.message)?,
            }
            if let Some(help) = &problem.help {
                write!(f, "\n  help: {help}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub path: PathBuf,
    /// The directory relative paths in the file are resolved against.
    pub base_dir: PathBuf,
    pub listen: SocketAddr,
    pub tls: Option<TlsFiles>,
    pub hostnames: Vec<String>,
    pub admin_listen: Option<SocketAddr>,
    pub limits: LimitsConfig,
    pub sandbox: SandboxSettings,
    pub state: MemoryStateLimits,
    /// Where state lives when it is shared: `[state.redis]` with `backend = "redis"`.
    pub state_redis: Option<crate::state::RedisSettings>,
    /// One state partition per policy name, with the policy's own capacities if it gave
    /// some (`[routes.policies.state]`).
    pub state_partitions: Vec<(String, Option<MemoryStateLimits>)>,
    pub issuers: Vec<IssuerConfig>,
    pub upstreams: Vec<UpstreamSettings>,
    pub routes: Vec<RouteSettings>,
    /// The audit log; none without `[audit] dir`.
    pub audit: Option<AuditSettings>,
    /// How many protocol refusals get a record of their own (`[audit] refusal_*`).
    pub refusal_bounds: RefusalBounds,
}

impl GatewayConfig {
    /// What is allowed but probably not meant: printed by `ehrgate check` and logged when the
    /// gateway starts, without stopping either.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.issuers.is_empty() && !self.routes.is_empty() {
            warnings.push(
                "no `[[identity.issuers]]`: every request that needs a token (all paths but a \
                 route's `anonymous_paths`) will be refused with 401"
                    .to_string(),
            );
        }
        for route in &self.routes {
            if route.policies.is_empty() {
                warnings.push(format!(
                    "route `{}` has no policies: any caller with a valid token reaches its \
                     upstream unchecked",
                    route.name
                ));
            } else if route.policies.iter().all(|(_, mode)| *mode == Mode::Shadow) {
                warnings.push(format!(
                    "route `{}` has only shadow policies: their denials are recorded, not \
                     enforced",
                    route.name
                ));
            }
        }
        for route in &self.routes {
            if route.verify_write_owner == VerifyWriteOwner::Off {
                warnings.push(format!(
                    "route `{}` has `verify_write_owner = \"off\"`: updates, patches and \
                     deletes by id are judged without the stored resource, so a patient-bound \
                     token could change another patient's record unless the upstream checks it \
                     (least-privilege refuses such writes unless \
                     `allow_unverified_instance_writes`)",
                    route.name
                ));
            }
        }
        warnings.extend(self.issuers.iter().flat_map(IssuerConfig::warnings));
        if self.audit.is_none() {
            warnings.push(
                "no `[audit] dir`: decisions are only logged, not written to a tamper-evident \
                 audit log"
                    .to_string(),
            );
        }
        warnings
    }
}

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    pub name: String,
    /// `host:port`.
    pub authority: String,
    /// For `https://` upstreams: the CA certificates its certificate must chain to.
    pub tls_roots: Option<Vec<rustls::pki_types::CertificateDer<'static>>>,
    /// The canonical base path (`/fhir`, or empty for the root), prepended to every
    /// forwarded path.
    pub base_path: String,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    pub pool_max_idle: usize,
    pub pool_idle_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct RouteSettings {
    pub name: String,
    pub prefix_segments: Vec<String>,
    pub upstream: String,
    /// Canonical paths below the prefix that need no token, as segments.
    pub anonymous_paths: Vec<Vec<String>>,
    pub resource_types: Vec<String>,
    pub policy_headers: Vec<String>,
    pub policy_body: bool,
    /// Whose writes by id are preceded by a read of the stored resource.
    pub verify_write_owner: VerifyWriteOwner,
    pub policies: Vec<(PolicySpec, Mode)>,
}

/// Loads and validates the file at `path`.
pub fn load(path: &Path) -> Result<GatewayConfig, ConfigErrors> {
    let fail = |message: String, help: Option<String>| ConfigErrors {
        path: path.to_owned(),
        problems: vec![Problem {
            line: None,
            message,
            help,
        }],
    };
    let source = std::fs::read_to_string(path).map_err(|e| {
        fail(
            format!("cannot read the config file: {e}"),
            Some("pass the gateway's TOML file with `--config`".into()),
        )
    })?;
    parse(&source, path)
}

/// Parses and validates `source`, read from `path`.
pub fn parse(source: &str, path: &Path) -> Result<GatewayConfig, ConfigErrors> {
    let file: model::ConfigFile = toml::from_str(source).map_err(|e| ConfigErrors {
        path: path.to_owned(),
        problems: vec![Problem {
            line: e.span().map(|span| line_of(source, span.start)),
            message: e.message().trim().to_owned(),
            help: None,
        }],
    })?;
    let base_dir = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let mut check = Checker {
        source,
        base_dir: &base_dir,
        problems: Vec::new(),
    };
    let config = check.validate(file, path);
    if check.problems.is_empty() {
        Ok(config)
    } else {
        Err(ConfigErrors {
            path: path.to_owned(),
            problems: check.problems,
        })
    }
}

fn line_of(source: &str, offset: usize) -> usize {
    source[..offset.min(source.len())].matches('\n').count() + 1
}

struct Checker<'a> {
    source: &'a str,
    base_dir: &'a Path,
    problems: Vec<Problem>,
}

impl Checker<'_> {
    fn problem(
        &mut self,
        span: Option<std::ops::Range<usize>>,
        message: String,
        help: Option<&str>,
    ) {
        self.problems.push(Problem {
            line: span.map(|s| line_of(self.source, s.start)),
            message,
            help: help.map(str::to_owned),
        });
    }

    fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_owned()
        } else {
            self.base_dir.join(path)
        }
    }

    fn validate(&mut self, file: model::ConfigFile, path: &Path) -> GatewayConfig {
        let tls = file.server.tls.as_ref().map(|tls| {
            for (key, file_path) in [("cert", &tls.cert), ("key", &tls.key)] {
                let resolved = self.resolve(file_path.get_ref());
                if !resolved.is_file() {
                    self.problem(
                        Some(file_path.span()),
                        format!("`server.tls.{key}`: no file at `{}`", resolved.display()),
                        Some("give a PEM file, relative to the config file"),
                    );
                }
            }
            TlsFiles {
                cert: self.resolve(tls.cert.get_ref()),
                key: self.resolve(tls.key.get_ref()),
            }
        });
        let admin_listen = file.admin.as_ref().map(|a| a.listen);
        if admin_listen == Some(file.server.listen) {
            self.problem(
                None,
                "`admin.listen` is the same address as `server.listen`".into(),
                Some("the admin listener must be separate from the client listener"),
            );
        }
        self.check_limits(&file.limits);
        for problem in file.sandbox.problems() {
            self.problem(None, format!("`sandbox`: {problem}"), None);
        }
        let upstreams = self.check_upstreams(&file.upstreams);
        let upstream_names: Vec<String> = file
            .upstreams
            .iter()
            .map(|u| u.name.get_ref().clone())
            .collect();
        let routes = self.check_routes(&file.routes, &upstream_names, &file.sandbox);
        let state_partitions = self.check_state_partitions(&file.routes);
        for problem in crate::state::limits_problems(&file.state.limits) {
            self.problem(None, format!("`state`: {problem}"), None);
        }
        if let Some(redis) = &file.state.redis {
            for problem in redis.problems(file.sandbox.wall_limit_ms) {
                self.problem(None, format!("`state.redis`: {problem}"), None);
            }
        }
        self.check_instance_slots(&routes, &file.sandbox);
        if routes.is_empty() {
            self.problem(
                None,
                "no `[[routes]]`: the gateway would refuse every request".into(),
                Some("add a route with a `prefix`, an `upstream` and its `[[routes.policies]]`"),
            );
        }
        GatewayConfig {
            path: path.to_owned(),
            base_dir: self.base_dir.to_owned(),
            listen: file.server.listen,
            tls,
            hostnames: file
                .server
                .hostnames
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            admin_listen,
            limits: file.limits,
            sandbox: SandboxSettings {
                cache_dir: file.sandbox.cache_dir.as_ref().map(|d| self.resolve(d)),
                trusted_signers: file
                    .sandbox
                    .trusted_signers
                    .iter()
                    .map(|p| self.resolve(p))
                    .collect(),
                ..file.sandbox
            },
            state: file.state.limits,
            state_redis: file.state.redis.clone(),
            state_partitions,
            issuers: file.identity.issuers,
            upstreams,
            routes,
            audit: self.check_audit(&file.audit),
            refusal_bounds: self.check_refusal_bounds(&file.audit),
        }
    }

    fn check_audit(&mut self, audit: &AuditConfig) -> Option<AuditSettings> {
        let Some(dir) = &audit.dir else {
            if let Some(key) = &audit.signing_key {
                self.problem(
                    Some(key.span()),
                    "`audit.signing_key` is set but `audit.dir` is not, so nothing is audited to a file".into(),
                    Some("add `dir = \"audit\"` to `[audit]`, or remove the `[audit]` settings"),
                );
            }
            return None;
        };
        let checks: [(&str, u64, u64, u64); 5] = [
            ("checkpoint_every", audit.checkpoint_every, 1, 10_000_000),
            ("checkpoint_secs", audit.checkpoint_secs, 1, 86_400),
            ("rotate_bytes", audit.rotate_bytes, 4096, 1 << 40),
            ("queue_capacity", audit.queue_capacity, 1, 1_000_000),
            ("review_risk_threshold", audit.review_risk_threshold, 0, 100),
        ];
        for (key, value, min, max) in checks {
            if !(min..=max).contains(&value) {
                self.problem(
                    None,
                    format!("`audit.{key}` is {value}; expected {min} to {max}"),
                    None,
                );
            }
        }
        match (audit.mode, audit.fsync_interval_ms) {
            (Durability::Strict, Some(_)) => self.problem(
                None,
                "`audit.fsync_interval_ms` is set but `audit.mode` is `strict`, which fsyncs every record before the response".into(),
                Some("remove it, or set `mode = \"buffered\"`"),
            ),
            (Durability::Buffered, Some(interval)) if !(1..=60_000).contains(&interval) => {
                self.problem(
                    None,
                    format!("`audit.fsync_interval_ms` is {interval}; expected 1 to 60000"),
                    None,
                )
            }
            _ => {}
        }
        let signing_key = match &audit.signing_key {
            Some(key) => {
                let path = self.resolve(key.get_ref());
                let unusable = match crate::audit::keys::read_signing_key(&path) {
                    Ok(_) => None,
                    Err(KeyError::Read { reason, .. }) => {
                        Some(format!("cannot read `{}`: {reason}", path.display()))
                    }
                    Err(_) => Some(format!(
                        "`{}` is not an Ed25519 private key in PKCS#8 PEM form",
                        path.display()
                    )),
                };
                if let Some(reason) = unusable {
                    self.problem(
                        Some(key.span()),
                        format!("`audit.signing_key`: {reason}"),
                        Some("make a key pair with `ehrgate keygen --out DIR` and set `signing_key` to its `audit-signing.key`"),
                    );
                }
                path
            }
            None => {
                self.problem(
                    Some(dir.span()),
                    "`audit.dir` is set but `audit.signing_key` is not: checkpoints must be signed".into(),
                    Some("make a key pair with `ehrgate keygen --out DIR` and set `signing_key = \"DIR/audit-signing.key\"`"),
                );
                PathBuf::new()
            }
        };
        Some(AuditSettings {
            dir: self.resolve(dir.get_ref()),
            durability: audit.mode,
            checkpoint_every: audit.checkpoint_every,
            checkpoint_interval: Duration::from_secs(audit.checkpoint_secs),
            signing_key,
            rotate_bytes: audit.rotate_bytes,
            fsync_interval: Duration::from_millis(
                audit
                    .fsync_interval_ms
                    .unwrap_or(crate::audit::settings::DEFAULT_FSYNC_INTERVAL_MS),
            ),
            queue_capacity: usize::try_from(audit.queue_capacity).unwrap_or(usize::MAX),
            review_risk_threshold: u8::try_from(audit.review_risk_threshold).unwrap_or(u8::MAX),
        })
    }

    fn check_refusal_bounds(&mut self, audit: &AuditConfig) -> RefusalBounds {
        let checks: [(&str, u64, u64, u64); 4] = [
            (
                "refusal_interval_secs",
                audit.refusal_interval_secs,
                1,
                86_400,
            ),
            (
                "refusal_records_per_peer",
                audit.refusal_records_per_peer,
                0,
                1_000_000,
            ),
            (
                "refusal_records_per_interval",
                audit.refusal_records_per_interval,
                0,
                1_000_000,
            ),
            ("refusal_peers", audit.refusal_peers, 1, 1_000_000),
        ];
        for (key, value, min, max) in checks {
            if !(min..=max).contains(&value) {
                self.problem(
                    None,
                    format!("`audit.{key}` is {value}; expected {min} to {max}"),
                    Some("these bound how many protocol refusals get an audit record of their own; the rest are counted in one aggregate per peer and interval"),
                );
            }
        }
        let clamp = |value: u64| u32::try_from(value).unwrap_or(u32::MAX);
        RefusalBounds {
            interval: Duration::from_secs(audit.refusal_interval_secs.max(1)),
            records_per_peer: clamp(audit.refusal_records_per_peer),
            records_per_interval: clamp(audit.refusal_records_per_interval),
            peers: usize::try_from(audit.refusal_peers.max(1)).unwrap_or(usize::MAX),
        }
    }

    fn check_limits(&mut self, limits: &LimitsConfig) {
        let checks: [(&str, u64, u64, u64); 13] = [
            ("max_header_count", limits.max_header_count as u64, 8, 1000),
            (
                "max_header_bytes",
                limits.max_header_bytes as u64,
                1024,
                1 << 20,
            ),
            (
                "max_body_bytes",
                limits.max_body_bytes as u64,
                1024,
                1 << 30,
            ),
            (
                "max_batch_entries",
                limits.max_batch_entries as u64,
                1,
                10_000,
            ),
            (
                "max_inspect_bytes",
                limits.max_inspect_bytes as u64,
                0,
                1 << 30,
            ),
            (
                "header_read_timeout_ms",
                limits.header_read_timeout_ms,
                100,
                600_000,
            ),
            (
                "body_read_timeout_ms",
                limits.body_read_timeout_ms,
                100,
                3_600_000,
            ),
            (
                "max_concurrent_requests",
                limits.max_concurrent_requests as u64,
                1,
                1_000_000,
            ),
            ("shutdown_grace_ms", limits.shutdown_grace_ms, 0, 600_000),
            (
                "first_request_timeout_ms",
                limits.first_request_timeout_ms,
                100,
                600_000,
            ),
            ("idle_timeout_ms", limits.idle_timeout_ms, 100, 3_600_000),
            (
                "max_connections",
                limits.max_connections as u64,
                0,
                1_000_000,
            ),
            (
                "max_connections_per_peer",
                limits.max_connections_per_peer as u64,
                1,
                1_000_000,
            ),
        ];
        for (key, value, min, max) in checks {
            if !(min..=max).contains(&value) {
                self.problem(
                    None,
                    format!("`limits.{key}` is {value}; expected {min} to {max}"),
                    None,
                );
            }
        }
    }

    fn check_upstreams(&mut self, upstreams: &[model::UpstreamConfig]) -> Vec<UpstreamSettings> {
        let mut names = HashSet::new();
        let mut settings = Vec::new();
        for upstream in upstreams {
            let name = upstream.name.get_ref();
            if !is_name(name) {
                self.problem(
                    Some(upstream.name.span()),
                    format!("upstream name `{name}` is not 1-64 characters of [a-z0-9_-]"),
                    None,
                );
            }
            if !names.insert(name.clone()) {
                self.problem(
                    Some(upstream.name.span()),
                    format!("upstream `{name}` is defined twice"),
                    None,
                );
            }
            let url = upstream.url.get_ref();
            let ca_file = upstream
                .ca_file
                .as_ref()
                .map(|f| (self.resolve(f.get_ref()), f.span()));
            match parse_upstream_url(url) {
                Ok((https, authority, base_path)) => settings.push(UpstreamSettings {
                    name: name.clone(),
                    authority,
                    tls_roots: self.upstream_trust(name, https, ca_file, upstream.url.span()),
                    base_path,
                    connect_timeout: Duration::from_millis(upstream.connect_timeout_ms),
                    timeout: Duration::from_millis(upstream.timeout_ms),
                    pool_max_idle: upstream.pool_max_idle,
                    pool_idle_timeout: Duration::from_millis(upstream.pool_idle_timeout_ms),
                }),
                Err(reason) => self.problem(
                    Some(upstream.url.span()),
                    format!("upstream `{name}`: url `{url}` {reason}"),
                    Some(
                        "write it as `http://host:port/base/path` or `https://host:port/base/path`",
                    ),
                ),
            }
            if upstream.timeout_ms == 0 || upstream.connect_timeout_ms == 0 {
                self.problem(
                    Some(upstream.name.span()),
                    format!("upstream `{name}`: timeouts must be above 0"),
                    None,
                );
            }
        }
        settings
    }

    /// The trust roots of an `https://` upstream, from its `ca_file` or the system store;
    /// none for `http://`, where a `ca_file` is a mistake worth reporting.
    fn upstream_trust(
        &mut self,
        name: &str,
        https: bool,
        ca_file: Option<(PathBuf, std::ops::Range<usize>)>,
        url_span: std::ops::Range<usize>,
    ) -> Option<Vec<rustls::pki_types::CertificateDer<'static>>> {
        match (https, ca_file) {
            (false, None) => None,
            (false, Some((_, span))) => {
                self.problem(
                    Some(span),
                    format!("upstream `{name}`: `ca_file` is set but the url is `http://`"),
                    Some("use an `https://` url, or remove `ca_file`"),
                );
                None
            }
            (true, ca_file) => {
                let span = ca_file.as_ref().map_or(url_span, |(_, span)| span.clone());
                match upstream_tls::trust_roots(ca_file.as_ref().map(|(path, _)| path.as_path())) {
                    Ok(roots) => Some(roots),
                    Err(reason) => {
                        self.problem(
                            Some(span),
                            format!("upstream `{name}`: {reason}"),
                            Some("set `ca_file` to the PEM file of the CA that signed the upstream's certificate"),
                        );
                        None
                    }
                }
            }
        }
    }

    /// One partition per policy name; a name on several routes shares its partition, so its
    /// routes must agree on its capacities.
    fn check_state_partitions(
        &mut self,
        routes: &[model::RouteConfig],
    ) -> Vec<(String, Option<MemoryStateLimits>)> {
        let mut partitions: Vec<(String, Option<MemoryStateLimits>)> = Vec::new();
        for policy in routes.iter().flat_map(|r| &r.policies) {
            let name = policy.name.get_ref();
            let limits = policy
                .state
                .as_ref()
                .map(|l| MemoryStateLimits::from(*l.get_ref()));
            if let Some(limits) = limits {
                for problem in crate::state::limits_problems(&limits) {
                    self.problem(
                        policy.state.as_ref().map(|l| l.span()),
                        format!("policy `{name}`: `state`: {problem}"),
                        None,
                    );
                }
            }
            match partitions.iter().find(|(known, _)| known == name) {
                Some((_, known)) if *known != limits => self.problem(
                    Some(policy.name.span()),
                    format!(
                        "policy `{name}` has different `state` capacities on different routes, \
                         but a name has one state partition"
                    ),
                    Some("give every use of the name the same `state` table, or none"),
                ),
                Some(_) => {}
                None => partitions.push((name.clone(), limits)),
            }
        }
        partitions
    }

    /// Every policy's slots must fit in the instance pool, so no policy waits for another's.
    fn check_instance_slots(&mut self, routes: &[RouteSettings], sandbox: &SandboxSettings) {
        let wanted = instance_slots_wanted(routes, sandbox);
        if wanted > u64::from(sandbox.max_concurrent_instances) {
            self.problem(
                None,
                format!(
                    "`sandbox.max_concurrent_instances` is {}, but the policies' \
                     `max_concurrent_calls` add up to {wanted}: policies would wait for each \
                     other's instance slots",
                    sandbox.max_concurrent_instances
                ),
                Some(&format!(
                    "raise `max_concurrent_instances` to at least {wanted}, or lower some \
                     policy's `max_concurrent_calls`"
                )),
            );
        }
    }

    fn check_routes(
        &mut self,
        routes: &[model::RouteConfig],
        upstreams: &[String],
        file_sandbox: &SandboxSettings,
    ) -> Vec<RouteSettings> {
        let mut names = HashSet::new();
        let mut prefixes = HashSet::new();
        let mut settings = Vec::new();
        for route in routes {
            let name = route.name.get_ref().clone();
            if !is_name(&name) {
                self.problem(
                    Some(route.name.span()),
                    format!("route name `{name}` is not 1-64 characters of [a-z0-9_-]"),
                    None,
                );
            }
            if !names.insert(name.clone()) {
                self.problem(
                    Some(route.name.span()),
                    format!("route `{name}` is defined twice"),
                    None,
                );
            }
            let prefix_segments = match canonical_segments(route.prefix.get_ref()) {
                Ok(segments) => segments,
                Err(reason) => {
                    self.problem(
                        Some(route.prefix.span()),
                        format!(
                            "route `{name}`: prefix `{}` {reason}",
                            route.prefix.get_ref()
                        ),
                        Some("write a canonical path such as `/fhir`"),
                    );
                    Vec::new()
                }
            };
            if !prefixes.insert(prefix_segments.clone()) {
                self.problem(
                    Some(route.prefix.span()),
                    format!(
                        "route `{name}`: another route has the prefix `{}`",
                        route.prefix.get_ref()
                    ),
                    None,
                );
            }
            let upstream = route.upstream.get_ref();
            if !upstreams.contains(upstream) {
                let defined: Vec<String> = upstreams.iter().map(|u| format!("`{u}`")).collect();
                self.problem(
                    Some(route.upstream.span()),
                    format!("route `{name}`: upstream `{upstream}` is not defined"),
                    Some(&format!(
                        "defined upstreams: {}",
                        if defined.is_empty() {
                            "none".to_owned()
                        } else {
                            defined.join(", ")
                        }
                    )),
                );
            }
            let mut anonymous_paths = Vec::new();
            for anonymous in &route.anonymous_paths {
                match canonical_segments(anonymous) {
                    Ok(segments) => anonymous_paths.push(segments),
                    Err(reason) => self.problem(
                        Some(route.name.span()),
                        format!("route `{name}`: anonymous path `{anonymous}` {reason}"),
                        None,
                    ),
                }
            }
            for resource_type in &route.resource_types {
                match fhir::resource_type(resource_type.get_ref()) {
                    TypeName::Known(_) => {}
                    TypeName::WrongCase(right) => self.problem(
                        Some(resource_type.span()),
                        format!(
                            "route `{name}`: resource type `{}` is spelled `{right}`",
                            resource_type.get_ref()
                        ),
                        None,
                    ),
                    TypeName::Unknown => self.problem(
                        Some(resource_type.span()),
                        format!(
                            "route `{name}`: `{}` is not a FHIR R4 resource type",
                            resource_type.get_ref()
                        ),
                        None,
                    ),
                }
            }
            let allow_list = self.check_response_headers(&name, &route.policy_response_headers);
            let policies = self.check_policies(&name, &route.policies, &allow_list, file_sandbox);
            settings.push(RouteSettings {
                name,
                prefix_segments,
                upstream: upstream.clone(),
                anonymous_paths,
                resource_types: route
                    .resource_types
                    .iter()
                    .map(|t| t.get_ref().clone())
                    .collect(),
                policy_headers: route
                    .policy_headers
                    .iter()
                    .map(|h| h.to_ascii_lowercase())
                    .collect(),
                policy_body: route.policy_body,
                verify_write_owner: route.verify_write_owner,
                policies,
            });
        }
        for header in routes.iter().flat_map(|r| &r.policy_headers) {
            let lower = header.to_ascii_lowercase();
            if lower == "authorization" || lower == "cookie" || lower == "proxy-authorization" {
                self.problem(
                    None,
                    format!("`policy_headers` lists `{header}`, which is never shown to policies"),
                    Some("credentials stay out of policies and the audit log"),
                );
            }
        }
        settings
    }

    /// The route's `policy_response_headers`, each a header name no route may refuse.
    fn check_response_headers(
        &mut self,
        route: &str,
        names: &[toml::Spanned<String>],
    ) -> ResponseHeaderAllowList {
        let mut allowed = Vec::new();
        for name in names {
            let lower = name.get_ref().to_ascii_lowercase();
            if !response_headers::is_header_name(&lower) {
                self.problem(
                    Some(name.span()),
                    format!(
                        "route `{route}`: `policy_response_headers` lists `{}`, which is not a header name",
                        name.get_ref().escape_debug()
                    ),
                    None,
                );
            } else if let Some(why) = response_headers::never_allowed(&lower) {
                self.problem(
                    Some(name.span()),
                    format!(
                        "route `{route}`: `policy_response_headers` lists `{lower}`, a {why} header that policies may never set"
                    ),
                    Some("list only headers that describe the decision, for example `x-policy-notice`"),
                );
            } else {
                allowed.push(lower);
            }
        }
        ResponseHeaderAllowList::new(&allowed)
    }

    fn check_policies(
        &mut self,
        route: &str,
        policies: &[model::PolicyConfig],
        allow_list: &ResponseHeaderAllowList,
        sandbox: &SandboxSettings,
    ) -> Vec<(PolicySpec, Mode)> {
        let mut names = HashSet::new();
        let mut specs = Vec::new();
        for policy in policies {
            let name = policy.name.get_ref();
            if !is_name(name) {
                self.problem(
                    Some(policy.name.span()),
                    format!(
                        "route `{route}`: policy name `{name}` is not 1-64 characters of [a-z0-9_-]"
                    ),
                    None,
                );
            }
            if !names.insert(name.clone()) {
                self.problem(
                    Some(policy.name.span()),
                    format!("route `{route}`: policy `{name}` appears twice in the chain"),
                    None,
                );
            }
            let module = self.resolve(policy.module.get_ref());
            if !module.is_file() {
                self.problem(
                    Some(policy.module.span()),
                    format!("route `{route}`: policy `{name}`: no module at `{}`", module.display()),
                    Some("build the guest policies (`cargo build` does) or fix the path, relative to the config file"),
                );
            }
            let config = match (&policy.config, &policy.config_file) {
                (Some(_), Some(file)) => {
                    self.problem(
                        Some(file.span()),
                        format!(
                            "route `{route}`: policy `{name}` has both `config` and `config_file`"
                        ),
                        Some("keep one of them"),
                    );
                    String::new()
                }
                (None, Some(file)) => {
                    let resolved = self.resolve(file.get_ref());
                    match std::fs::read_to_string(&resolved) {
                        Ok(text) => match serde_json::from_str::<serde_json::Value>(&text) {
                            Ok(json) if json.is_object() => json.to_string(),
                            Ok(_) => {
                                self.problem(
                                    Some(file.span()),
                                    format!("route `{route}`: policy `{name}`: `{}` is not a JSON object", resolved.display()),
                                    None,
                                );
                                String::new()
                            }
                            Err(e) => {
                                self.problem(
                                    Some(file.span()),
                                    format!("route `{route}`: policy `{name}`: `{}` is not valid JSON: {e}", resolved.display()),
                                    None,
                                );
                                String::new()
                            }
                        },
                        Err(e) => {
                            self.problem(
                                Some(file.span()),
                                format!(
                                    "route `{route}`: policy `{name}`: cannot read `{}`: {e}",
                                    resolved.display()
                                ),
                                None,
                            );
                            String::new()
                        }
                    }
                }
                (table, None) => match table {
                    None => "{}".to_owned(),
                    Some(table) => match serde_json::to_string(table.get_ref()) {
                        Ok(json) => json,
                        Err(e) => {
                            self.problem(
                            Some(table.span()),
                            format!("route `{route}`: policy `{name}`: config cannot be expressed as JSON: {e}"),
                            Some("TOML dates have no JSON form; write them as strings"),
                        );
                            String::new()
                        }
                    },
                },
            };
            let defaults = sandbox.default_budget();
            let budget = CallBudget {
                max_concurrent_calls: policy
                    .max_concurrent_calls
                    .unwrap_or(defaults.max_concurrent_calls),
                max_queued_calls: policy.max_queued_calls.unwrap_or(defaults.max_queued_calls),
                queue_timeout_ms: policy.queue_timeout_ms.unwrap_or(defaults.queue_timeout_ms),
            };
            for problem in budget.problems() {
                self.problem(
                    Some(policy.name.span()),
                    format!("route `{route}`: policy `{name}`: {problem}"),
                    None,
                );
            }
            specs.push((
                PolicySpec {
                    name: name.clone(),
                    path: module,
                    config,
                    budget: Some(budget),
                    response_headers: allow_list.clone(),
                },
                policy.mode,
            ));
        }
        specs
    }
}

/// Instance slots the routes' policies may hold at once: the sum of their
/// `max_concurrent_calls`.
pub fn instance_slots_wanted(routes: &[RouteSettings], sandbox: &SandboxSettings) -> u64 {
    routes
        .iter()
        .flat_map(|r| &r.policies)
        .map(|(spec, _)| {
            u64::from(
                spec.budget
                    .map_or(sandbox.max_concurrent_calls, |b| b.max_concurrent_calls),
            )
        })
        .sum()
}

fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// The segments of a path that must already be canonical.
fn canonical_segments(path: &str) -> Result<Vec<String>, String> {
    canonical_path(path).map(|target| target.segments)
}

fn canonical_path(path: &str) -> Result<crate::request::canonical::CanonicalTarget, String> {
    let target =
        canonicalize_target(path).map_err(|r| format!("is not a canonical path: {}", r.message))?;
    let trimmed = if path == "/" {
        path
    } else {
        path.trim_end_matches('/')
    };
    if target.path != trimmed {
        return Err(format!(
            "is not canonical (canonical form: `{}`)",
            target.path
        ));
    }
    if !target.params.is_empty() {
        return Err("has a query".into());
    }
    Ok(target)
}

/// `http(s)://host:port/base` → (whether https, `host:port`, canonical base path or empty).
fn parse_upstream_url(url: &str) -> Result<(bool, String, String), String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("is not a URL: {e}"))?;
    let (https, default_port) = match uri.scheme_str() {
        Some("http") => (false, 80),
        Some("https") => (true, 443),
        _ => return Err("needs the `http://` or `https://` scheme".into()),
    };
    let authority = uri.authority().ok_or("has no host")?;
    if uri.query().is_some() {
        return Err("has a query".into());
    }
    let authority = if authority.port().is_some() {
        authority.as_str().to_owned()
    } else {
        format!("{}:{default_port}", authority.host())
    };
    let base = canonical_path(if uri.path().is_empty() {
        "/"
    } else {
        uri.path()
    })?;
    let base_path = if base.segments.is_empty() {
        String::new()
    } else {
        base.path
    };
    Ok((https, authority, base_path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_follows_the_schema() {
        let example = include_str!("../../examples/gateway.toml");
        let parsed: Result<model::ConfigFile, _> = toml::from_str(example);
        assert!(parsed.is_ok(), "{:?}", parsed.err());
    }

    #[test]
    fn problems_name_their_line() {
        let source = "[server]\nlisten = \"127.0.0.1:1\"\n\n[[upstreams]]\nname = \"ehr\"\nurl = \"ftp://x\"\n";
        let errors = parse(source, Path::new("g.toml"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            errors.contains(
                "g.toml:6: upstream `ehr`: url `ftp://x` needs the `http://` or `https://` scheme"
            ),
            "{errors}"
        );
        assert!(errors.contains("no `[[routes]]`"), "{errors}");
    }

    /// The problems of a config with one route `ehr` and `route_extra` / `policies` added.
    fn route_problems(route_extra: &str, policies: &str, sandbox: &str) -> String {
        let source = format!(
            "[server]\nlisten = \"127.0.0.1:1\"\n\n[sandbox]\n{sandbox}\n\n[[upstreams]]\n\
             name = \"ehr\"\nurl = \"http://127.0.0.1:2/fhir\"\n\n[[routes]]\nname = \"ehr\"\n\
             prefix = \"/fhir\"\nupstream = \"ehr\"\n{route_extra}\n{policies}"
        );
        parse(&source, Path::new("g.toml"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn response_headers_that_reshape_the_response_cannot_be_allowed() {
        for name in [
            "refresh",
            "Access-Control-Allow-Origin",
            "strict-transport-security",
            "cache-control",
            "set-cookie",
            "x-ehrgate-subject",
            "x_ehrgate_subject",
            "transfer-encoding",
            "content-disposition",
        ] {
            let errors = route_problems(&format!("policy_response_headers = [\"{name}\"]"), "", "");
            assert!(
                errors.contains("policy_response_headers` lists")
                    && errors.contains("that policies may never set"),
                "{name}: {errors}"
            );
        }
        assert_eq!(
            route_problems("policy_response_headers = [\"x-policy-notice\"]", "", ""),
            ""
        );
    }

    #[test]
    fn policy_budgets_must_fit_in_the_instance_pool() {
        let policy = |name: &str| {
            format!(
                "[[routes.policies]]\nname = \"{name}\"\nmodule = \"g.toml\"\n\
                 max_concurrent_calls = 6\n"
            )
        };
        let errors = route_problems(
            "",
            &format!("{}{}", policy("a"), policy("b")),
            "max_concurrent_instances = 10",
        );
        assert!(
            errors.contains("the policies' `max_concurrent_calls` add up to 12"),
            "{errors}"
        );
        let errors = route_problems(
            "",
            &policy("a").replace("max_concurrent_calls = 6", "max_concurrent_calls = 0"),
            "",
        );
        assert!(errors.contains("`max_concurrent_calls` is 0"), "{errors}");
    }

    #[test]
    fn verify_write_owner_takes_one_of_three_modes() {
        for mode in ["patient-bound", "all", "off"] {
            assert_eq!(
                route_problems(&format!("verify_write_owner = \"{mode}\""), "", ""),
                "",
                "{mode}"
            );
        }
        let errors = route_problems("verify_write_owner = \"patients\"", "", "");
        assert!(
            errors.contains("g.toml:15")
                && errors.contains("unknown variant `patients`")
                && errors.contains("`patient-bound`, `all`, `off`"),
            "{errors}"
        );
    }

    #[test]
    fn a_route_that_does_not_read_stored_resources_is_a_warning() {
        let source = "[server]\nlisten = \"127.0.0.1:1\"\n\n[[upstreams]]\nname = \"ehr\"\n\
                      url = \"http://127.0.0.1:2/fhir\"\n\n[[routes]]\nname = \"ehr\"\n\
                      prefix = \"/fhir\"\nupstream = \"ehr\"\nverify_write_owner = \"off\"\n";
        let config = parse(source, Path::new("g.toml")).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            config
                .warnings()
                .iter()
                .any(|w| w.starts_with("route `ehr` has `verify_write_owner = \"off\"`")),
            "{:#?}",
            config.warnings()
        );
    }

    #[test]
    fn likely_mistakes_are_warnings_not_problems() {
        let source = "[server]\nlisten = \"127.0.0.1:1\"\n\n[[upstreams]]\nname = \"ehr\"\n\
                      url = \"http://127.0.0.1:2/fhir\"\n\n[[routes]]\nname = \"ehr\"\n\
                      prefix = \"/fhir\"\nupstream = \"ehr\"\n";
        let config = parse(source, Path::new("g.toml")).unwrap_or_else(|e| panic!("{e}"));
        let warnings = config.warnings();
        assert_eq!(warnings.len(), 3, "{warnings:#?}");
        assert!(warnings[0].starts_with("no `[[identity.issuers]]`"));
        assert!(warnings[1].starts_with("route `ehr` has no policies"));
        assert!(warnings[2].starts_with("no `[audit] dir`"));
    }

    #[test]
    fn https_upstreams_need_a_readable_ca_and_http_ones_none() {
        let errors = |upstream: &str| {
            let source = format!(
                "[server]\nlisten = \"127.0.0.1:1\"\n\n[[upstreams]]\nname = \"ehr\"\n{upstream}\n"
            );
            parse(&source, Path::new("g.toml"))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        let missing = errors("url = \"https://ehr.internal/fhir\"\nca_file = \"nowhere/ca.pem\"");
        assert!(
            missing.contains("g.toml:7: upstream `ehr`: cannot read `nowhere/ca.pem`"),
            "{missing}"
        );
        let plain = errors("url = \"http://ehr.internal/fhir\"\nca_file = \"ca.pem\"");
        assert!(
            plain.contains("g.toml:7: upstream `ehr`: `ca_file` is set but the url is `http://`"),
            "{plain}"
        );
        let ca = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tls/ca.cert.pem");
        let good = errors(&format!(
            "url = \"https://ehr.internal/fhir\"\nca_file = \"{}\"",
            ca.display()
        ));
        assert!(!good.contains("upstream `ehr`"), "{good}");
    }
}
