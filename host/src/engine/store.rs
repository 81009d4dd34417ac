//! What a guest's store holds: its resource limiter, the module's state partition (keys
//! namespaced to the module), the request's clock, why the call was stopped, and its
//! captured log. The host side of the WIT imports lives here. State imports are async, so a
//! backend that waits on the network holds no thread; epoch deadlines do not interrupt host
//! calls, so each import is bounded on its own.

use std::sync::Arc;

use super::bindings::ehrgate::policy::{log, state, types};
use super::bindings::{GuestBucketStatus, GuestLogLevel};
use crate::state::{
    BucketSpec, BucketStatus, MAX_BATCH, MAX_KEY_BYTES, MAX_TAKE_ALL, StateCall, StateHandle,
    StateReply, check_length,
};

/// The longest log message kept from a guest, in bytes.
const MAX_LOG_MESSAGE_BYTES: usize = 1024;

/// Per-store data.
pub(crate) struct StoreData {
    pub(crate) limiter: GuestLimiter,
    pub(crate) state: StateHandle,
    /// `<module>/`: prefixed to every state key so modules cannot touch each other's state.
    pub(crate) namespace: Arc<str>,
    pub(crate) module: Arc<str>,
    pub(crate) request_id: Arc<str>,
    pub(crate) now_ms: u64,
    pub(crate) log: GuestLog,
    /// Set by the epoch callback when it stops the guest, so the trap names the limit.
    pub(crate) stopped: Option<Stop>,
    key_buffer: String,
}

/// Which limit stopped a guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// Its own running time reached the deadline.
    Deadline,
    /// The call's wall-clock time reached `wall_limit_ms`.
    WallLimit,
}

impl StoreData {
    pub(crate) fn new(
        limiter: GuestLimiter,
        state: StateHandle,
        module: Arc<str>,
        namespace: Arc<str>,
        request_id: Arc<str>,
        now_ms: u64,
        max_log_messages: usize,
    ) -> Self {
        StoreData {
            limiter,
            state,
            namespace,
            module,
            request_id,
            now_ms,
            log: GuestLog::new(max_log_messages),
            stopped: None,
            key_buffer: String::new(),
        }
    }

    /// The guest's key behind the module's namespace, after checking the guest's length.
    fn namespaced(&mut self, key: &str) -> Result<&str, String> {
        check_length(key, MAX_KEY_BYTES).map_err(|e| e.to_string())?;
        self.key_buffer.clear();
        self.key_buffer.push_str(&self.namespace);
        self.key_buffer.push_str(key);
        Ok(&self.key_buffer)
    }
}

/// Memory and table limits with a record of whether a limit was hit, so a trap that follows
/// a refused `memory.grow` is reported as the memory limit rather than as a bare trap.
pub(crate) struct GuestLimiter {
    max_memory_bytes: usize,
    max_table_elements: usize,
    pub(crate) memory_refused: bool,
}

impl GuestLimiter {
    pub(crate) fn new(max_memory_bytes: usize, max_table_elements: usize) -> Self {
        GuestLimiter {
            max_memory_bytes,
            max_table_elements,
            memory_refused: false,
        }
    }
}

/// The error that turns a refused memory growth into a trap.
#[derive(Debug, thiserror::Error)]
#[error("memory limit of {limit} bytes reached (asked for {desired})")]
pub(crate) struct MemoryLimitReached {
    pub(crate) limit: usize,
    pub(crate) desired: usize,
}

impl wasmtime::ResourceLimiter for GuestLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_memory_bytes {
            self.memory_refused = true;
            // Trap rather than return -1: a guest that ignores a failed grow would otherwise
            // carry on with less memory than it thinks it has.
            return Err(wasmtime::Error::new(MemoryLimitReached {
                limit: self.max_memory_bytes,
                desired,
            }));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= self.max_table_elements)
    }

    fn instances(&self) -> usize {
        16
    }

    fn tables(&self) -> usize {
        16
    }

    fn memories(&self) -> usize {
        2
    }
}

/// A guest's log for one call: forwarded to tracing, capped, and the last error kept so a
/// panic's message can name the cause of the trap that follows it.
pub(crate) struct GuestLog {
    max_messages: usize,
    pub(crate) written: usize,
    pub(crate) dropped: usize,
    pub(crate) last_error: Option<String>,
}

impl GuestLog {
    fn new(max_messages: usize) -> Self {
        GuestLog {
            max_messages,
            written: 0,
            dropped: 0,
            last_error: None,
        }
    }
}

fn truncate_to_boundary(message: &str, max: usize) -> &str {
    if message.len() <= max {
        return message;
    }
    let mut end = max;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    &message[..end]
}

impl types::Host for StoreData {}

/// A guest's text made safe for any log format: control characters (a newline would start
/// a forged line in the text format) and Unicode line and paragraph separators are escaped.
fn escape_log_text(message: &str) -> std::borrow::Cow<'_, str> {
    let needs_escape = |c: char| c.is_control() || c == '\u{2028}' || c == '\u{2029}';
    if !message.chars().any(needs_escape) {
        return std::borrow::Cow::Borrowed(message);
    }
    let mut escaped = String::with_capacity(message.len() + 8);
    for c in message.chars() {
        if needs_escape(c) {
            escaped.extend(c.escape_default());
        } else {
            escaped.push(c);
        }
    }
    std::borrow::Cow::Owned(escaped)
}

impl log::Host for StoreData {
    fn log(&mut self, level: GuestLogLevel, message: String) {
        let message = truncate_to_boundary(&message, MAX_LOG_MESSAGE_BYTES);
        let escaped = escape_log_text(message);
        let message = &*escaped;
        if matches!(level, GuestLogLevel::Error) {
            self.log.last_error = Some(message.to_owned());
        }
        if self.log.written >= self.log.max_messages {
            self.log.dropped += 1;
            return;
        }
        self.log.written += 1;
        let (module, request_id) = (&*self.module, &*self.request_id);
        match level {
            GuestLogLevel::Debug => {
                tracing::debug!(target: "ehrgate::guest", module, request_id, "{message}")
            }
            GuestLogLevel::Info => {
                tracing::info!(target: "ehrgate::guest", module, request_id, "{message}")
            }
            GuestLogLevel::Warn => {
                tracing::warn!(target: "ehrgate::guest", module, request_id, "{message}")
            }
            GuestLogLevel::Error => {
                tracing::error!(target: "ehrgate::guest", module, request_id, "{message}")
            }
        }
    }
}

impl state::Host for StoreData {
    async fn take(
        &mut self,
        key: String,
        capacity: u64,
        refill_tokens: u64,
        refill_period_ms: u64,
        cost: u64,
    ) -> Result<GuestBucketStatus, String> {
        let spec = BucketSpec {
            capacity,
            refill_tokens,
            refill_period_ms,
        };
        let (state, now_ms) = (self.state.clone(), self.now_ms);
        let status = state
            .take(self.namespaced(&key)?, spec, cost, now_ms)
            .await
            .map_err(|e| e.to_string())?;
        Ok(guest_status(status))
    }

    async fn distinct_add(
        &mut self,
        key: String,
        member: String,
        window_ms: u64,
    ) -> Result<u32, String> {
        let (state, now_ms) = (self.state.clone(), self.now_ms);
        state
            .distinct_add(self.namespaced(&key)?, &member, window_ms, now_ms)
            .await
            .map_err(|e| e.to_string())
    }

    async fn distinct_count(&mut self, key: String, window_ms: u64) -> Result<u32, String> {
        let (state, now_ms) = (self.state.clone(), self.now_ms);
        state
            .distinct_count(self.namespaced(&key)?, window_ms, now_ms)
            .await
            .map_err(|e| e.to_string())
    }

    async fn counter_add(
        &mut self,
        key: String,
        amount: u64,
        window_ms: u64,
    ) -> Result<u64, String> {
        let (state, now_ms) = (self.state.clone(), self.now_ms);
        state
            .counter_add(self.namespaced(&key)?, amount, window_ms, now_ms)
            .await
            .map_err(|e| e.to_string())
    }

    async fn take_all(
        &mut self,
        buckets: Vec<state::BucketTake>,
        cost: u64,
    ) -> Result<Vec<GuestBucketStatus>, String> {
        if buckets.len() > MAX_TAKE_ALL {
            return Err(format!(
                "take-all names {} buckets; at most {MAX_TAKE_ALL} are allowed",
                buckets.len()
            ));
        }
        let buckets = buckets
            .into_iter()
            .map(|bucket| Ok((self.namespaced(&bucket.key)?.to_owned(), spec_of(&bucket))))
            .collect::<Result<Vec<_>, String>>()?;
        let (state, now_ms) = (self.state.clone(), self.now_ms);
        let statuses = state
            .take_all(&buckets, cost, now_ms)
            .await
            .map_err(|e| e.to_string())?;
        Ok(statuses.into_iter().map(guest_status).collect())
    }

    async fn batch(
        &mut self,
        calls: Vec<state::Call>,
    ) -> Result<Vec<Result<state::Reply, String>>, String> {
        if calls.len() > MAX_BATCH {
            return Err(format!(
                "the batch holds {} calls; at most {MAX_BATCH} are allowed",
                calls.len()
            ));
        }
        // A call whose key the host refuses keeps its error; the others run together.
        let prepared: Vec<Result<StateCall, String>> =
            calls.into_iter().map(|call| self.prepare(call)).collect();
        let valid: Vec<StateCall> = prepared.iter().flatten().cloned().collect();
        let (state, now_ms) = (self.state.clone(), self.now_ms);
        let mut replies = state
            .batch(&valid, now_ms)
            .await
            .map_err(|e| e.to_string())?
            .into_iter();
        Ok(prepared
            .into_iter()
            .map(|prepared| {
                prepared?;
                match replies.next() {
                    Some(Ok(StateReply::Bucket(status))) => {
                        Ok(state::Reply::Bucket(guest_status(status)))
                    }
                    Some(Ok(StateReply::Count(count))) => Ok(state::Reply::Count(count)),
                    Some(Err(error)) => Err(error.to_string()),
                    None => Err("the state backend returned too few replies".to_owned()),
                }
            })
            .collect())
    }
}

impl StoreData {
    /// A guest's batch call with its key behind the module's namespace.
    fn prepare(&mut self, call: state::Call) -> Result<StateCall, String> {
        Ok(match call {
            state::Call::Take((bucket, cost)) => StateCall::Take {
                key: self.namespaced(&bucket.key)?.to_owned(),
                spec: spec_of(&bucket),
                cost,
            },
            state::Call::DistinctAdd((key, member, window_ms)) => StateCall::DistinctAdd {
                key: self.namespaced(&key)?.to_owned(),
                member,
                window_ms,
            },
            state::Call::DistinctCount((key, window_ms)) => StateCall::DistinctCount {
                key: self.namespaced(&key)?.to_owned(),
                window_ms,
            },
            state::Call::CounterAdd((key, amount, window_ms)) => StateCall::CounterAdd {
                key: self.namespaced(&key)?.to_owned(),
                amount,
                window_ms,
            },
        })
    }
}

fn spec_of(bucket: &state::BucketTake) -> BucketSpec {
    BucketSpec {
        capacity: bucket.capacity,
        refill_tokens: bucket.refill_tokens,
        refill_period_ms: bucket.refill_period_ms,
    }
}

fn guest_status(status: BucketStatus) -> GuestBucketStatus {
    GuestBucketStatus {
        allowed: status.allowed,
        limit: status.limit,
        remaining: status.remaining,
        retry_after_ms: status.retry_after_ms,
        reset_ms: status.reset_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_log_text_cannot_forge_lines() {
        assert_eq!(escape_log_text("plain text é"), "plain text é");
        assert_eq!(
            escape_log_text("ok\n2026-12-04T00:00:00Z INFO forged\r\u{2028}"),
            "ok\\n2026-12-04T00:00:00Z INFO forged\\r\\u{2028}"
        );
    }
}
