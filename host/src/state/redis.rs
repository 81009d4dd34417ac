//! State on a Redis 7 or Valkey server, shared by every gateway replica that points at it:
//! the same token buckets, distinct windows and counters as the in-memory backend, each
//! call one server-side script (one round trip), every key namespaced by prefix, kind and
//! module and given a TTL, so the server's memory is bounded by the configured windows.
//!
//! Arithmetic: the scripts keep the in-memory backend's units (a bucket's level in units of
//! `1 / refill_period_ms` of a token) and its sixteen-slot counters, so both backends give
//! the same answers. Lua numbers are doubles, exact for integers up to 2^53: a bucket whose
//! `capacity * refill_period_ms` exceeds that is refused (`InvalidArgument`), and a
//! counter saturates at 2^53 instead of `u64::MAX`.
//!
//! Caps: as in memory, each module has at most its share of buckets, counters and
//! distinct windows (an index per module and kind, scored by last use, evicts the least
//! recently used key past the cap) and `distinct_members_per_key` members per window. The
//! in-memory `distinct_member_budget` is not enforced across windows here; the key and
//! member caps bound the total (see the README's estimate).
//!
//! Failures: a call that cannot reach the server, times out (`timeout_ms`) or gets an error
//! reply is a [`StateError::Unavailable`], which the shipped policies turn into a refusal
//! (fail closed). Connections reconnect by themselves.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::Deserialize;

use super::batch::{check_batch, check_take_all};
use super::handle::StateHandle;
use super::metrics::{Backend, Operation, record_call};
use super::{
    BucketSpec, BucketStatus, MemoryStateLimits, StateCall, StateError, StateProvider, StateReply,
    check_key, check_member, check_window, even_share,
};

/// The largest integer Lua's doubles hold exactly.
const EXACT_LIMIT: u64 = 1 << 53;

/// `[state.redis]`: where the shared state lives and how to reach it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    /// `redis://host:port/db` or `rediss://host:port/db` (TLS). Credentials do not belong
    /// in the URL: use `username` and `password_file`.
    pub url: String,
    /// PEM file of the CA that signed the server's certificate (`rediss://`); the system's
    /// roots without it. Relative to the config file.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// ACL user name (Redis 6+ `AUTH user password`).
    #[serde(default)]
    pub username: Option<String>,
    /// File holding the password (its first line); relative to the config file.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Connections, each multiplexing many calls; calls are spread over them.
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// How long connecting may take.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// How long one call may wait for its reply; must stay below the sandbox's
    /// `wall_limit_ms` so a slow server fails the call, not the policy.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Prefixed to every key, so several gateways (or other users) can share a server.
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
}

fn default_pool_size() -> usize {
    2
}

fn default_connect_timeout_ms() -> u64 {
    1000
}

fn default_timeout_ms() -> u64 {
    250
}

fn default_key_prefix() -> String {
    "ehrgate:".to_string()
}

impl RedisSettings {
    /// What is wrong with the settings, for `check`.
    pub fn problems(&self, wall_limit_ms: u64) -> Vec<String> {
        let mut problems = Vec::new();
        let scheme = self.url.split_once("://").map(|(scheme, _)| scheme);
        if !matches!(scheme, Some("redis" | "rediss")) {
            problems.push(format!(
                "`url` `{}` is not a `redis://` or `rediss://` URL",
                redact(&self.url)
            ));
        }
        if self
            .url
            .split_once("://")
            .is_some_and(|(_, rest)| rest.split('/').next().unwrap_or("").contains('@'))
        {
            problems.push(
                "`url` holds credentials; give `username` and `password_file` instead".into(),
            );
        }
        if self.ca_file.is_some() && scheme != Some("rediss") {
            problems.push("`ca_file` is set but `url` is not `rediss://`".into());
        }
        if !(1..=64).contains(&self.pool_size) {
            problems.push(format!("`pool_size` is {}; use 1 to 64", self.pool_size));
        }
        if self.connect_timeout_ms == 0 {
            problems.push("`connect_timeout_ms` must be above 0".into());
        }
        if self.timeout_ms == 0 || self.timeout_ms >= wall_limit_ms {
            problems.push(format!(
                "`timeout_ms` is {}; it must be above 0 and below the sandbox's \
                 `wall_limit_ms` ({wall_limit_ms})",
                self.timeout_ms
            ));
        }
        if self.key_prefix.len() > 64 || self.key_prefix.chars().any(char::is_whitespace) {
            problems.push("`key_prefix` must be at most 64 bytes without whitespace".into());
        }
        problems
    }
}

/// `url` without anything between `://` and `@`, for messages.
fn redact(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, _)), Some(at)) => format!("{scheme}://…{}", &url[at..]),
        _ => url.to_string(),
    }
}

/// The connections to the shared server, and each module's caps.
pub struct RedisState {
    /// The runtime the connections live on (the gateway's I/O runtime): calls are run there,
    /// whichever thread the policy that makes them runs on.
    runtime: tokio::runtime::Handle,
    connections: Vec<ConnectionManager>,
    next: AtomicUsize,
    prefix: String,
    timeout: Duration,
    described: String,
    modules: RwLock<Modules>,
    /// [`STATE`], sent by its digest (`EVALSHA`) and loaded when the server lacks it.
    script: redis::Script,
}

struct Modules {
    totals: MemoryStateLimits,
    limits: BTreeMap<String, MemoryStateLimits>,
}

impl RedisState {
    /// Connects (lazily: the connections are made on first use and remade after a failure,
    /// so `serve` starts while the server is down and recovers when it returns). Call
    /// [`RedisState::ping`] to find out now whether the server answers.
    pub fn open(
        settings: &RedisSettings,
        base_dir: &Path,
        totals: MemoryStateLimits,
    ) -> anyhow::Result<Arc<Self>> {
        let password = match &settings.password_file {
            Some(path) => {
                let path = base_dir.join(path);
                let text = std::fs::read_to_string(&path).with_context(|| {
                    format!("cannot read the Redis password file {}", path.display())
                })?;
                Some(text.lines().next().unwrap_or_default().to_string())
            }
            None => None,
        };
        let mut info: redis::ConnectionInfo =
            redis::IntoConnectionInfo::into_connection_info(settings.url.as_str())
                .with_context(|| format!("`url` `{}` is not a Redis URL", redact(&settings.url)))?;
        let mut redis_settings = info.redis_settings().clone();
        if let Some(username) = &settings.username {
            redis_settings = redis_settings.set_username(username);
        }
        if let Some(password) = password {
            redis_settings = redis_settings.set_password(password);
        }
        info = info.set_redis_settings(redis_settings);
        let client = match &settings.ca_file {
            Some(ca) => {
                let path = base_dir.join(ca);
                let root_cert = std::fs::read(&path)
                    .with_context(|| format!("cannot read `ca_file` {}", path.display()))?;
                redis::Client::build_with_tls(
                    info,
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(root_cert),
                    },
                )
            }
            None => redis::Client::open(info),
        }
        .context("cannot set up the Redis client")?;
        let timeout = Duration::from_millis(settings.timeout_ms);
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(settings.connect_timeout_ms)))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(2));
        let connections = (0..settings.pool_size.max(1))
            .map(|_| ConnectionManager::new_lazy_with_config(client.clone(), config.clone()))
            .collect::<Result<Vec<_>, _>>()
            .context("cannot set up the Redis connections")?;
        let runtime = tokio::runtime::Handle::try_current()
            .context("the Redis client needs a Tokio runtime to live on")?;
        Ok(Arc::new(RedisState {
            runtime,
            connections,
            next: AtomicUsize::new(0),
            prefix: settings.key_prefix.clone(),
            timeout,
            described: redact(&settings.url),
            modules: RwLock::new(Modules {
                totals,
                limits: BTreeMap::new(),
            }),
            script: redis::Script::new(STATE),
        }))
    }

    /// The server's URL without credentials, for logs and `/readyz`.
    pub fn describe(&self) -> &str {
        &self.described
    }

    /// Whether the server answers a `PING` now.
    pub async fn ping(&self) -> Result<(), StateError> {
        let mut connection = self.connection();
        let timeout = self.timeout;
        let reply = self
            .runtime
            .spawn(async move {
                tokio::time::timeout(
                    timeout,
                    redis::cmd("PING").query_async::<String>(&mut connection),
                )
                .await
            })
            .await
            .map_err(|_| StateError::Unavailable("the Redis call was cancelled".into()))?
            .map_err(|_| {
                StateError::Unavailable("the Redis server did not answer in time".into())
            })?;
        match reply {
            Ok(pong) if pong == "PONG" => Ok(()),
            Ok(other) => Err(StateError::Unavailable(format!(
                "the Redis server answered `{other}` to PING"
            ))),
            Err(error) => Err(unavailable(&error)),
        }
    }

    /// Sets each module's caps, as [`super::MemoryPartitions::configure_with_totals`] does:
    /// the operator's limits, or an even share of `totals`.
    pub fn configure_with_totals(
        &self,
        totals: MemoryStateLimits,
        modules: &[(String, Option<MemoryStateLimits>)],
    ) {
        let listed: BTreeMap<&str, Option<MemoryStateLimits>> = modules
            .iter()
            .map(|(name, explicit)| (name.as_str(), *explicit))
            .collect();
        let share = even_share(
            &totals,
            listed
                .values()
                .filter(|explicit| explicit.is_none())
                .count(),
        );
        let mut inner = self
            .modules
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        inner.totals = totals;
        inner.limits = listed
            .into_iter()
            .map(|(name, explicit)| (name.to_string(), explicit.unwrap_or(share)))
            .collect();
    }

    /// [`RedisState::configure_with_totals`] with the current totals.
    pub fn configure(&self, modules: &[(String, Option<MemoryStateLimits>)]) {
        let totals = self
            .modules
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .totals;
        self.configure_with_totals(totals, modules);
    }

    fn limits_of(&self, module: &str) -> MemoryStateLimits {
        let inner = self
            .modules
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        inner
            .limits
            .get(module)
            .copied()
            .unwrap_or_else(|| even_share(&inner.totals, inner.limits.len() + 1))
    }

    fn connection(&self) -> ConnectionManager {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.connections.len();
        // `connections` is never empty (`open` makes at least one).
        self.connections[index].clone()
    }

    /// Runs [`STATE`] on the connections' runtime with `call`'s keys and arguments.
    async fn run(
        self: &Arc<Self>,
        operation: Operation,
        call: ScriptCall,
    ) -> Result<redis::Value, StateError> {
        let started = Instant::now();
        let state = self.clone();
        let reply = self.runtime.spawn(async move {
            let mut invocation = state.script.prepare_invoke();
            for key in &call.keys {
                invocation.key(key);
            }
            for arg in &call.args {
                invocation.arg(arg);
            }
            let mut connection = state.connection();
            tokio::time::timeout(
                state.timeout,
                invocation.invoke_async::<redis::Value>(&mut connection),
            )
            .await
        });
        let result = match reply.await {
            Ok(Ok(Ok(value))) => Ok(value),
            Ok(Ok(Err(error))) => Err(unavailable(&error)),
            Ok(Err(_)) => Err(StateError::Unavailable(
                "the Redis server did not answer in time".into(),
            )),
            Err(_) => Err(StateError::Unavailable(
                "the Redis call was cancelled".into(),
            )),
        };
        record_call(
            Backend::Redis,
            operation,
            started.elapsed(),
            result.is_err(),
        );
        result
    }
}

fn unavailable(error: &redis::RedisError) -> StateError {
    StateError::Unavailable(format!("Redis: {error}"))
}

impl StateProvider for RedisState {
    fn partition(self: Arc<Self>, module: &str) -> StateHandle {
        let limits = self.limits_of(module);
        let prefix = &self.prefix;
        StateHandle::Redis(Arc::new(RedisPartition {
            index_prefix: format!("{prefix}i:{module}/"),
            limits,
            state: self,
        }))
    }
}

/// One module's view of the shared server: its caps and its key-index names.
pub struct RedisPartition {
    state: Arc<RedisState>,
    limits: MemoryStateLimits,
    /// `<prefix>i:<module>/`, followed by the kind: the index of the module's keys.
    index_prefix: String,
}

impl RedisPartition {
    fn key(&self, kind: char, key: &str) -> String {
        format!("{}{kind}:{key}", self.state.prefix)
    }

    fn index(&self, kind: char) -> String {
        format!("{}{kind}", self.index_prefix)
    }

    /// Runs `calls` in one round trip (one script, atomic on the server); each call gets
    /// its own result, and a call the host refuses (an over-long key) is never sent.
    pub(crate) async fn batch(
        &self,
        calls: &[StateCall],
        now_ms: u64,
    ) -> Result<Vec<Result<StateReply, StateError>>, StateError> {
        check_batch(calls.len())?;
        let mut script = ScriptCall::new(now_ms);
        let checked: Vec<Result<(), StateError>> = calls
            .iter()
            .map(|call| self.push(&mut script, call))
            .collect();
        let sent = checked.iter().filter(|c| c.is_ok()).count();
        let operation = match calls {
            [single] => operation_of(single),
            _ => Operation::Batch,
        };
        let value = if sent == 0 {
            // Every call was refused here: nothing to send.
            redis::Value::Array(Vec::new())
        } else {
            self.state.run(operation, script).await?
        };
        let mut replies = items(&value, sent)?.iter();
        Ok(calls
            .iter()
            .zip(checked)
            .map(|(call, checked)| {
                checked?;
                replies.next().map_or_else(
                    || Err(malformed("too few replies")),
                    |r| read_reply(call, r),
                )
            })
            .collect())
    }

    /// Takes `cost` from every bucket or from none, in one atomic step on the server.
    pub(crate) async fn take_all(
        &self,
        buckets: &[(String, BucketSpec)],
        cost: u64,
        now_ms: u64,
    ) -> Result<Vec<BucketStatus>, StateError> {
        check_take_all(buckets)?;
        let mut script = ScriptCall::new(now_ms);
        script.op("a");
        script.number(buckets.len() as u64);
        script.number(capped_cost(cost, buckets.iter().map(|(_, spec)| spec)));
        script.number(self.limits.buckets.get() as u64);
        for (key, spec) in buckets {
            check_exact(spec)?;
            script.key(self.key('b', key));
            for number in [spec.capacity, spec.refill_tokens, spec.refill_period_ms] {
                script.number(number);
            }
        }
        script.key(self.index('b'));
        let value = self.state.run(Operation::TakeAll, script).await?;
        let statuses = items(&items(&value, 1)?[0], buckets.len())?;
        buckets
            .iter()
            .zip(statuses)
            .map(|((_, spec), status)| bucket_status(spec, status))
            .collect()
    }

    /// Adds `call` to `script`, or says why the host refuses it.
    fn push(&self, script: &mut ScriptCall, call: &StateCall) -> Result<(), StateError> {
        match call {
            StateCall::Take { key, spec, cost } => {
                check_key(key)?;
                spec.validate().map_err(StateError::InvalidArgument)?;
                check_exact(spec)?;
                script.op("t");
                script.key(self.key('b', key));
                script.key(self.index('b'));
                for number in [
                    spec.capacity,
                    spec.refill_tokens,
                    spec.refill_period_ms,
                    capped_cost(*cost, [spec]),
                    self.limits.buckets.get() as u64,
                ] {
                    script.number(number);
                }
            }
            StateCall::DistinctAdd {
                key,
                member,
                window_ms,
            } => {
                check_key(key)?;
                check_member(member)?;
                check_window(*window_ms)?;
                script.op("d");
                script.key(self.key('d', key));
                script.key(self.index('d'));
                script.text(member);
                for number in [
                    *window_ms,
                    self.limits.distinct_members_per_key.get() as u64,
                    self.limits.distinct_keys.get() as u64,
                ] {
                    script.number(number);
                }
            }
            StateCall::DistinctCount { key, window_ms } => {
                check_key(key)?;
                check_window(*window_ms)?;
                script.op("n");
                script.key(self.key('d', key));
                script.number(*window_ms);
            }
            StateCall::CounterAdd {
                key,
                amount,
                window_ms,
            } => {
                check_key(key)?;
                check_window(*window_ms)?;
                script.op("c");
                script.key(self.key('c', key));
                script.key(self.index('c'));
                for number in [*amount, *window_ms, self.limits.counters.get() as u64] {
                    script.number(number);
                }
            }
        }
        Ok(())
    }

    /// One call on its own (a batch of one).
    async fn single(&self, call: StateCall, now_ms: u64) -> Result<StateReply, StateError> {
        self.batch(std::slice::from_ref(&call), now_ms)
            .await?
            .pop()
            .unwrap_or_else(|| Err(malformed("no reply")))
    }

    pub(crate) async fn take(
        &self,
        key: &str,
        spec: BucketSpec,
        cost: u64,
        now_ms: u64,
    ) -> Result<BucketStatus, StateError> {
        let call = StateCall::Take {
            key: key.to_owned(),
            spec,
            cost,
        };
        match self.single(call, now_ms).await? {
            StateReply::Bucket(status) => Ok(status),
            StateReply::Count(_) => Err(malformed("a count for a take")),
        }
    }

    pub(crate) async fn distinct_add(
        &self,
        key: &str,
        member: &str,
        window_ms: u64,
        now_ms: u64,
    ) -> Result<u32, StateError> {
        let call = StateCall::DistinctAdd {
            key: key.to_owned(),
            member: member.to_owned(),
            window_ms,
        };
        count(self.single(call, now_ms).await?).map(saturate_u32)
    }

    pub(crate) async fn distinct_count(
        &self,
        key: &str,
        window_ms: u64,
        now_ms: u64,
    ) -> Result<u32, StateError> {
        let call = StateCall::DistinctCount {
            key: key.to_owned(),
            window_ms,
        };
        count(self.single(call, now_ms).await?).map(saturate_u32)
    }

    pub(crate) async fn counter_add(
        &self,
        key: &str,
        amount: u64,
        window_ms: u64,
        now_ms: u64,
    ) -> Result<u64, StateError> {
        let call = StateCall::CounterAdd {
            key: key.to_owned(),
            amount,
            window_ms,
        };
        count(self.single(call, now_ms).await?)
    }
}

/// The keys and arguments of one run of [`STATE`]: the time first, then each operation's
/// letter and numbers; the keys in the order the operations read them.
pub(crate) struct ScriptCall {
    keys: Vec<String>,
    args: Vec<String>,
}

impl ScriptCall {
    fn new(now_ms: u64) -> Self {
        ScriptCall {
            keys: Vec::new(),
            args: vec![now_ms.min(EXACT_LIMIT).to_string()],
        }
    }

    fn op(&mut self, letter: &str) {
        self.args.push(letter.to_owned());
    }

    fn key(&mut self, key: String) {
        self.keys.push(key);
    }

    fn text(&mut self, text: &str) {
        self.args.push(text.to_owned());
    }

    /// A number the script reads with `tonumber`, capped where Lua's doubles stay exact.
    fn number(&mut self, number: u64) {
        self.args.push(number.min(EXACT_LIMIT).to_string());
    }
}

fn operation_of(call: &StateCall) -> Operation {
    match call {
        StateCall::Take { .. } => Operation::Take,
        StateCall::DistinctAdd { .. } => Operation::DistinctAdd,
        StateCall::DistinctCount { .. } => Operation::DistinctCount,
        StateCall::CounterAdd { .. } => Operation::CounterAdd,
    }
}

/// Refuses a bucket whose arithmetic would leave the integers Lua's doubles hold exactly.
fn check_exact(spec: &BucketSpec) -> Result<(), StateError> {
    let exact = spec
        .capacity
        .checked_mul(spec.refill_period_ms)
        .and_then(|full| full.checked_add(spec.refill_tokens))
        .is_some_and(|sum| sum <= EXACT_LIMIT);
    if exact {
        Ok(())
    } else {
        Err(StateError::InvalidArgument(
            "capacity * refill-period-ms is too large for the shared (Redis) backend",
        ))
    }
}

/// A cost above a bucket's capacity is never granted; the script needs no exact value for
/// it, only one above the largest capacity.
fn capped_cost<'a>(cost: u64, specs: impl IntoIterator<Item = &'a BucketSpec>) -> u64 {
    let largest = specs
        .into_iter()
        .map(|spec| spec.capacity)
        .max()
        .unwrap_or(0);
    cost.min(largest.saturating_add(1))
}

fn read_reply(call: &StateCall, value: &redis::Value) -> Result<StateReply, StateError> {
    match call {
        StateCall::Take { spec, .. } => bucket_status(spec, value).map(StateReply::Bucket),
        _ => Ok(StateReply::Count(non_negative(integer(value)?))),
    }
}

fn bucket_status(spec: &BucketSpec, value: &redis::Value) -> Result<BucketStatus, StateError> {
    let numbers = integers(value, 4)?;
    let [allowed, remaining, retry_after, reset] = [numbers[0], numbers[1], numbers[2], numbers[3]];
    Ok(BucketStatus {
        allowed: allowed == 1,
        limit: spec.capacity,
        remaining: non_negative(remaining),
        retry_after_ms: if retry_after < 0 {
            u64::MAX
        } else {
            non_negative(retry_after)
        },
        reset_ms: non_negative(reset),
    })
}

fn count(reply: StateReply) -> Result<u64, StateError> {
    match reply {
        StateReply::Count(count) => Ok(count),
        StateReply::Bucket(_) => Err(malformed("a bucket for a count")),
    }
}

fn saturate_u32(count: u64) -> u32 {
    u32::try_from(count).unwrap_or(u32::MAX)
}

fn malformed(what: &str) -> StateError {
    StateError::Unavailable(format!("Redis answered a state script with {what}"))
}

fn non_negative(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

fn integer(value: &redis::Value) -> Result<i64, StateError> {
    match value {
        redis::Value::Int(number) => Ok(*number),
        _ => Err(malformed("something other than an integer")),
    }
}

fn items(value: &redis::Value, count: usize) -> Result<&[redis::Value], StateError> {
    let redis::Value::Array(items) = value else {
        return Err(malformed("something other than a list"));
    };
    if items.len() != count {
        return Err(malformed(&format!(
            "{} values instead of {count}",
            items.len()
        )));
    }
    Ok(items)
}

fn integers(value: &redis::Value, count: usize) -> Result<Vec<i64>, StateError> {
    items(value, count)?.iter().map(integer).collect()
}

/// Every state call on the shared server, as one script: `ARGV[1]` is the request's time,
/// then each operation's letter and arguments; `KEYS` in the order the operations read them.
/// Returns one reply per operation. The arithmetic is the in-memory backend's, step for step:
/// a bucket's level in units of `1 / refill_period_ms` of a token (`bucket.rs`), distinct
/// windows scored by when each member was last seen (`distinct.rs`), and sixteen-slot
/// counters (`counter.rs`).
///
/// - `t` take. KEYS bucket, index. ARGV capacity, refill tokens, refill period, cost, key
///   cap. Replies allowed (0/1), remaining, retry-after (-1: never), reset.
/// - `a` take-all. ARGV n, cost, key cap, then per bucket capacity, refill tokens, refill
///   period. KEYS the n buckets, then the index. Replies n take replies; writes only when
///   every bucket pays.
/// - `d` distinct-add. KEYS window, index. ARGV member, window, member cap, key cap. Replies
///   the count. Expired members go first, then the member is added (a later time only), then
///   the oldest past the cap.
/// - `n` distinct-count. KEYS window. ARGV window. Replies the members seen after
///   `now - window`.
/// - `c` counter-add. KEYS counter, index. ARGV amount, window, key cap. Replies the
///   window's total. Fields `w` (the window), `n<i>` (the absolute slot number slot i holds)
///   and `c<i>` (its count).
///
/// `floor_div` is exact integer division of doubles holding integers below 2^53 (a plain
/// `a / b` may round a quotient just above an integer down onto it). `touch` keeps a module
/// within its cap of keys of one kind, evicting the least recently used, before the key is
/// written; every key gets a TTL past which it holds nothing the arithmetic needs.
const STATE: &str = r#"
local function floor_div(a, b)
  local q = math.floor(a / b)
  if q * b > a then q = q - 1 elseif (q + 1) * b <= a then q = q + 1 end
  return q
end
local function ceil_div(a, b)
  local q = floor_div(a, b)
  if q * b < a then q = q + 1 end
  return q
end
local function touch(index, key, now, cap, ttl)
  if not redis.call('ZSCORE', index, key) then
    local held = redis.call('ZCARD', index)
    if held >= cap then
      local oldest = redis.call('ZPOPMIN', index, held - cap + 1)
      for i = 1, #oldest, 2 do redis.call('DEL', oldest[i]) end
    end
  end
  redis.call('ZADD', index, now, key)
  if redis.call('PTTL', index) < ttl then redis.call('PEXPIRE', index, ttl) end
end

-- A bucket refilled up to `now`: its level and the time it was last updated.
local function bucket_level(key, capacity, rate, period, now)
  local full = capacity * period
  local stored = redis.call('HMGET', key, 'u', 't', 'c', 'r', 'p')
  local units, updated
  if stored[1] then
    units, updated = tonumber(stored[1]), tonumber(stored[2])
    local old_capacity, old_rate, old_period = tonumber(stored[3]), tonumber(stored[4]), tonumber(stored[5])
    if old_capacity ~= capacity or old_rate ~= rate or old_period ~= period then
      units = math.min(floor_div(units, old_period) * period, full)
    end
  else
    units, updated = full, now
  end
  local elapsed = now - updated
  if elapsed < 0 then elapsed = 0 end
  if now > updated then updated = now end
  -- Refilling for longer than an empty bucket takes changes nothing; capping the time
  -- keeps every product below 2^53.
  elapsed = math.min(elapsed, ceil_div(full, rate))
  return math.min(units + elapsed * rate, full), updated
end

local function bucket_reply(units, capacity, rate, period, cost, allowed)
  local retry = 0
  if cost > capacity then retry = -1 elseif not allowed then retry = ceil_div(cost * period - units, rate) end
  return {allowed and 1 or 0, floor_div(units, period), retry, ceil_div(capacity * period - units, rate)}
end

-- Past this long without a take a bucket is full again, so its key may expire.
local function bucket_ttl(capacity, rate, period)
  return ceil_div(capacity * period, rate) + 1000
end

local function bucket_store(key, index, units, updated, capacity, rate, period, now, cap)
  local ttl = bucket_ttl(capacity, rate, period)
  touch(index, key, now, cap, ttl)
  redis.call('HSET', key, 'u', units, 't', updated, 'c', capacity, 'r', rate, 'p', period)
  redis.call('PEXPIRE', key, ttl)
end

local function take(key, index, capacity, rate, period, cost, now, cap)
  local units, updated = bucket_level(key, capacity, rate, period, now)
  local allowed = cost <= capacity and units >= cost * period
  if allowed then units = units - cost * period end
  bucket_store(key, index, units, updated, capacity, rate, period, now, cap)
  return bucket_reply(units, capacity, rate, period, cost, allowed)
end

local function take_all(keys, index, specs, cost, now, cap)
  local levels, all = {}, true
  for i, key in ipairs(keys) do
    local s = specs[i]
    local units, updated = bucket_level(key, s[1], s[2], s[3], now)
    local enough = cost <= s[1] and units >= cost * s[3]
    levels[i] = {units, updated, enough}
    all = all and enough
  end
  local replies = {}
  for i, key in ipairs(keys) do
    local s, level = specs[i], levels[i]
    local units = level[1]
    if all then
      units = units - cost * s[3]
      bucket_store(key, index, units, level[2], s[1], s[2], s[3], now, cap)
    end
    local reply = bucket_reply(units, s[1], s[2], s[3], cost, level[3])
    if not all then reply[1] = 0 end
    replies[i] = reply
  end
  return replies
end

local function distinct_add(key, index, member, window, now, members, cap)
  touch(index, key, now, cap, window)
  if now >= window then redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window) end
  redis.call('ZADD', key, 'GT', now, member)
  local count = redis.call('ZCARD', key)
  if count > members then
    redis.call('ZPOPMIN', key, count - members)
    count = members
  end
  redis.call('PEXPIRE', key, window)
  return count
end

local function distinct_count(key, window, now)
  if now < window then return redis.call('ZCARD', key) end
  return redis.call('ZCOUNT', key, '(' .. string.format('%.0f', now - window), '+inf')
end

local function counter_add(key, index, amount, window, now, cap)
  local slots, most = 16, 9007199254740992
  local slot_ms = math.max(floor_div(window, slots), 1)
  touch(index, key, now, cap, window + slot_ms)
  local fields = {'w'}
  for i = 0, slots - 1 do
    fields[#fields + 1] = 'n' .. i
    fields[#fields + 1] = 'c' .. i
  end
  local stored = redis.call('HMGET', key, unpack(fields))
  local numbers, counts = {}, {}
  if tonumber(stored[1]) == window then
    for i = 0, slots - 1 do
      numbers[i] = tonumber(stored[2 + 2 * i])
      counts[i] = tonumber(stored[3 + 2 * i]) or 0
    end
  else
    redis.call('DEL', key)
    for i = 0, slots - 1 do counts[i] = 0 end
  end
  local current = floor_div(now, slot_ms)
  local slot = current % slots
  if numbers[slot] ~= current then
    numbers[slot], counts[slot] = current, 0
  end
  counts[slot] = math.min(counts[slot] + amount, most)
  redis.call('HSET', key, 'w', window, 'n' .. slot, current, 'c' .. slot, counts[slot])
  local in_window = math.min(math.max(floor_div(window, slot_ms), 1), slots)
  local oldest = math.max(current - in_window + 1, 0)
  local total = 0
  for i = 0, slots - 1 do
    local number = numbers[i]
    if number and number >= oldest and number <= current then
      total = math.min(total + counts[i], most)
    end
  end
  redis.call('PEXPIRE', key, window + slot_ms)
  return total
end

local now = tonumber(ARGV[1])
local arg, key = 2, 1
local function next_number()
  local value = tonumber(ARGV[arg])
  arg = arg + 1
  return value
end
local function next_key()
  local value = KEYS[key]
  key = key + 1
  return value
end
local replies = {}
while arg <= #ARGV do
  local op = ARGV[arg]
  arg = arg + 1
  if op == 't' then
    local bucket, index = next_key(), next_key()
    local capacity, rate, period = next_number(), next_number(), next_number()
    local cost, cap = next_number(), next_number()
    replies[#replies + 1] = take(bucket, index, capacity, rate, period, cost, now, cap)
  elseif op == 'a' then
    local n, cost, cap = next_number(), next_number(), next_number()
    local keys, specs = {}, {}
    for i = 1, n do
      keys[i] = next_key()
      specs[i] = {next_number(), next_number(), next_number()}
    end
    replies[#replies + 1] = take_all(keys, next_key(), specs, cost, now, cap)
  elseif op == 'd' then
    local window_key, index = next_key(), next_key()
    local member = ARGV[arg]
    arg = arg + 1
    local window, members, cap = next_number(), next_number(), next_number()
    replies[#replies + 1] = distinct_add(window_key, index, member, window, now, members, cap)
  elseif op == 'n' then
    replies[#replies + 1] = distinct_count(next_key(), next_number(), now)
  elseif op == 'c' then
    local counter, index = next_key(), next_key()
    local amount, window, cap = next_number(), next_number(), next_number()
    replies[#replies + 1] = counter_add(counter, index, amount, window, now, cap)
  else
    return redis.error_reply('unknown state operation ' .. tostring(op))
  end
end
return replies
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(url: &str) -> RedisSettings {
        RedisSettings {
            url: url.to_string(),
            ca_file: None,
            username: None,
            password_file: None,
            pool_size: default_pool_size(),
            connect_timeout_ms: default_connect_timeout_ms(),
            timeout_ms: default_timeout_ms(),
            key_prefix: default_key_prefix(),
        }
    }

    #[test]
    fn settings_problems_are_named() {
        assert!(
            settings("redis://127.0.0.1:6379/0")
                .problems(1000)
                .is_empty()
        );
        assert!(
            settings("rediss://cache.internal:6380")
                .problems(1000)
                .is_empty()
        );
        let problems = settings("http://127.0.0.1:6379").problems(1000);
        assert!(problems[0].contains("not a `redis://`"), "{problems:?}");
        let problems = settings("redis://user:secret@127.0.0.1:6379").problems(1000);
        assert!(
            problems.iter().any(|p| p.contains("credentials")),
            "{problems:?}"
        );
        assert!(
            problems.iter().all(|p| !p.contains("secret")),
            "{problems:?}"
        );
        let mut slow = settings("redis://127.0.0.1");
        slow.timeout_ms = 1000;
        assert!(slow.problems(1000)[0].contains("wall_limit_ms"));
        let mut tls = settings("redis://127.0.0.1");
        tls.ca_file = Some("ca.pem".into());
        assert!(tls.problems(1000)[0].contains("rediss"));
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(redact("redis://u:p@host:1/0"), "redis://…@host:1/0");
        assert_eq!(redact("redis://host:1/0"), "redis://host:1/0");
    }
}
