//! Prometheus metrics for the admin listener's `/metrics`: requests by route, decision and
//! status; denials by rule; policy and upstream latency; requests in flight; each policy
//! module's calls running and waiting, its dropped log messages and its state partition;
//! connections and protocol refusals by cause; and the audit log's writer (records, fsyncs,
//! checkpoints, failures, queue depth).

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::audit::stats::AuditWatch;
use std::sync::Arc;

use crate::engine::PolicyEngine;
use crate::state::MemoryPartitions;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: String,
    pub decision: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabels {
    pub rule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModuleLabels {
    pub module: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FaultLabels {
    pub module: String,
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CauseLabels {
    pub cause: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    pub upstream: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub denials: Family<RuleLabels, Counter>,
    pub policy_faults: Family<FaultLabels, Counter>,
    pub policy_seconds: HistogramFamily<ModuleLabels>,
    pub policy_running_seconds: HistogramFamily<ModuleLabels>,
    pub upstream_seconds: HistogramFamily<UpstreamLabels>,
    pub in_flight: Gauge,
    pub reloads: Family<RuleLabels, Counter>,
    pub open_connections: Gauge,
    pub connections_refused: Family<CauseLabels, Counter>,
    pub connections_closed: Family<CauseLabels, Counter>,
    pub protocol_refusals: Family<CauseLabels, Counter>,
    pub protocol_refusals_aggregated: Family<CauseLabels, Counter>,
    pub protocol_refusal_records_lost: Counter,
}

fn policy_histogram() -> Histogram {
    // 2 µs to about 1 s.
    Histogram::new(exponential_buckets(0.000_002, 2.0, 20))
}

fn running_histogram() -> Histogram {
    // 2 µs to 1 ms doubling, then every millisecond to 20 ms (deadlines are whole
    // milliseconds, and whether a stopped module overran its deadline is read here), then
    // coarser to 10 s.
    let fine = exponential_buckets(0.000_002, 2.0, 9);
    let per_ms = (1..=20).map(|ms| f64::from(ms) / 1000.0);
    let coarse = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
    Histogram::new(fine.chain(per_ms).chain(coarse))
}

fn upstream_histogram() -> Histogram {
    // 100 µs to about 100 s.
    Histogram::new(exponential_buckets(0.000_1, 2.0, 20))
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("ehrgate");
        let requests = Family::<RequestLabels, Counter>::default();
        let denials = Family::<RuleLabels, Counter>::default();
        let policy_faults = Family::<FaultLabels, Counter>::default();
        let policy_seconds: HistogramFamily<ModuleLabels> =
            Family::new_with_constructor(policy_histogram);
        let policy_running_seconds: HistogramFamily<ModuleLabels> =
            Family::new_with_constructor(running_histogram);
        let upstream_seconds: HistogramFamily<UpstreamLabels> =
            Family::new_with_constructor(upstream_histogram);
        let in_flight = Gauge::default();
        let reloads = Family::<RuleLabels, Counter>::default();
        let open_connections = Gauge::default();
        let connections_refused = Family::<CauseLabels, Counter>::default();
        let connections_closed = Family::<CauseLabels, Counter>::default();
        let protocol_refusals = Family::<CauseLabels, Counter>::default();
        let protocol_refusals_aggregated = Family::<CauseLabels, Counter>::default();
        let protocol_refusal_records_lost = Counter::default();
        registry.register(
            "open_connections",
            "Client connections open now",
            open_connections.clone(),
        );
        registry.register(
            "connections_refused",
            "Client connections closed at accept, by cause (total-limit, peer-limit)",
            connections_refused.clone(),
        );
        registry.register(
            "connections_closed",
            "Client connections closed for saying nothing, by cause (first-request-timeout, \
             idle-timeout)",
            connections_closed.clone(),
        );
        registry.register(
            "protocol_refusals",
            "Connections and requests refused below the request handler, by cause (total-limit, \
             peer-limit, first-request-timeout, tls-handshake, tls-handshake-timeout, \
             http1-malformed, http1-head-too-large, http1-header-timeout, http2-stream-reset, \
             http2-goaway)",
            protocol_refusals.clone(),
        );
        registry.register(
            "protocol_refusals_aggregated",
            "Protocol refusals beyond the per-peer or per-interval bound, counted in an \
             aggregate audit record instead of a record of their own, by cause",
            protocol_refusals_aggregated.clone(),
        );
        registry.register(
            "protocol_refusal_records_lost",
            "Protocol-refusal records the audit log could not take (written to the process \
             log instead)",
            protocol_refusal_records_lost.clone(),
        );
        registry.register(
            "requests",
            "Requests by route, decision (allow, deny, reject, error) and status",
            requests.clone(),
        );
        registry.register("denials", "Refused requests by rule id", denials.clone());
        registry.register(
            "policy_faults",
            "Policy module failures by module and kind",
            policy_faults.clone(),
        );
        registry.register(
            "policy_duration_seconds",
            "Wall-clock time of one policy module call, from asking for a slot to its decision \
             (queueing included)",
            policy_seconds.clone(),
        );
        registry.register(
            "policy_running_seconds",
            "Running time of one policy module call (fresh instance, init, evaluate): the CPU \
             time its deadline counts",
            policy_running_seconds.clone(),
        );
        registry.register(
            "upstream_duration_seconds",
            "Time until the upstream's response headers",
            upstream_seconds.clone(),
        );
        registry.register(
            "in_flight_requests",
            "Requests being handled",
            in_flight.clone(),
        );
        registry.register(
            "config_reloads",
            "Configuration reloads by result (rule = ok or failed)",
            reloads.clone(),
        );
        Metrics {
            registry,
            requests,
            denials,
            policy_faults,
            policy_seconds,
            policy_running_seconds,
            upstream_seconds,
            in_flight,
            reloads,
            open_connections,
            connections_refused,
            connections_closed,
            protocol_refusals,
            protocol_refusals_aggregated,
            protocol_refusal_records_lost,
        }
    }

    /// Adds the audit log's writer metrics, read from `watch` at every scrape.
    pub fn watch_audit(&mut self, watch: AuditWatch) {
        self.registry
            .register_collector(Box::new(AuditCollector { watch }));
    }

    /// Adds the policy modules' live counters, read from `engine` at every scrape.
    pub fn watch_engine(&mut self, engine: PolicyEngine) {
        self.registry
            .register_collector(Box::new(EngineCollector { engine }));
    }

    /// Adds the state partitions' entries, capacities and estimated bytes, read at every
    /// scrape.
    pub fn watch_state(&mut self, state: Arc<MemoryPartitions>) {
        self.registry
            .register_collector(Box::new(StateCollector { state }));
    }

    /// Adds the state imports' calls, errors and latency by backend and operation.
    pub fn watch_state_calls(&mut self) {
        let calls = crate::state::state_call_metrics();
        self.registry.register(
            "state_calls",
            "State import calls by backend and operation",
            calls.calls.clone(),
        );
        self.registry.register(
            "state_call_errors",
            "State import calls that failed (backend unreachable, timed out, refused)",
            calls.errors.clone(),
        );
        self.registry.register(
            "state_call_seconds",
            "Time a state import call took, by backend",
            calls.seconds.clone(),
        );
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text
    }
}

#[derive(Debug)]
struct AuditCollector {
    watch: AuditWatch,
}

impl Collector for AuditCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let now = self.watch.snapshot();
        let counters = [
            (
                "audit_records_written",
                "Audit records written to the log file",
                now.records_written,
            ),
            (
                "audit_fsyncs",
                "fsync calls on the audit log (strict mode: one per group of records)",
                now.fsyncs,
            ),
            (
                "audit_checkpoints",
                "Signed checkpoints written",
                now.checkpoints,
            ),
            (
                "audit_files_started",
                "Audit log files started (rotation, recovery after a failure)",
                now.files_started,
            ),
            (
                "audit_write_failures",
                "Failed writes or fsyncs of the audit log (strict mode refuses the requests with 503)",
                now.write_failures,
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(
                name,
                help,
                None,
                counter.metric_type(),
            )?)?;
        }
        let gauges = [
            (
                "audit_failing",
                "1 while the audit log's last write failed and none has succeeded since",
                i64::from(now.failing),
            ),
            (
                "audit_queue_depth",
                "Audit records queued or being written",
                clamp(now.queue_depth),
            ),
            (
                "audit_queue_capacity",
                "Audit records the queue holds before appenders wait",
                clamp(now.queue_capacity),
            ),
            (
                "audit_durable_seq",
                "Sequence number of the last record known to be on disk (fsynced)",
                clamp(now.durable_seq),
            ),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        Ok(())
    }
}

struct EngineCollector {
    engine: PolicyEngine,
}

impl std::fmt::Debug for EngineCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EngineCollector")
    }
}

impl Collector for EngineCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let modules = self.engine.module_stats();
        type Read = fn(&crate::engine::ModuleStatsSnapshot) -> u64;
        let gauges: [(&str, &str, Read); 2] = [
            (
                "policy_calls_running",
                "Calls of a policy module running now (at most its max_concurrent_calls)",
                |s| s.running,
            ),
            (
                "policy_calls_waiting",
                "Calls of a policy module waiting for a slot now (at most its max_queued_calls)",
                |s| s.waiting,
            ),
        ];
        for (name, help, read) in gauges {
            let mut family =
                encoder.encode_descriptor(name, help, None, ConstGauge::new(0i64).metric_type())?;
            for (module, stats) in &modules {
                let labels = ModuleLabels {
                    module: module.clone(),
                };
                ConstGauge::new(clamp(read(stats))).encode(family.encode_family(&labels)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "policy_guest_log_dropped",
            "Guest log messages dropped over max_log_messages per call",
            None,
            ConstCounter::new(0u64).metric_type(),
        )?;
        for (module, stats) in &modules {
            let labels = ModuleLabels {
                module: module.clone(),
            };
            ConstCounter::new(stats.log_dropped).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

struct StateCollector {
    state: Arc<MemoryPartitions>,
}

impl std::fmt::Debug for StateCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateCollector")
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TableLabels {
    module: String,
    table: &'static str,
}

impl Collector for StateCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let partitions = self.state.stats();
        let gauge_type = ConstGauge::new(0i64).metric_type();
        let mut entries = encoder.encode_descriptor(
            "state_entries",
            "Entries held in a policy module's state partition, by table (buckets, counters, \
             distinct_windows, distinct_members)",
            None,
            gauge_type,
        )?;
        for (module, stats) in &partitions {
            for (table, held) in [
                ("buckets", stats.buckets),
                ("counters", stats.counters),
                ("distinct_windows", stats.distinct_windows),
                ("distinct_members", stats.distinct_members),
            ] {
                let labels = TableLabels {
                    module: module.clone(),
                    table,
                };
                ConstGauge::new(clamp(held as u64)).encode(entries.encode_family(&labels)?)?;
            }
        }
        let mut capacity = encoder.encode_descriptor(
            "state_capacity",
            "Capacity of a policy module's state partition, by table (distinct_members is the \
             member budget)",
            None,
            gauge_type,
        )?;
        for (module, stats) in &partitions {
            let limits = &stats.limits;
            for (table, cap) in [
                ("buckets", limits.buckets.get()),
                ("counters", limits.counters.get()),
                ("distinct_windows", limits.distinct_keys.get()),
                ("distinct_members", limits.distinct_member_budget.get()),
            ] {
                let labels = TableLabels {
                    module: module.clone(),
                    table,
                };
                ConstGauge::new(clamp(cap as u64)).encode(capacity.encode_family(&labels)?)?;
            }
        }
        for (name, help, read) in [
            (
                "state_estimated_bytes",
                "Estimated heap bytes of a policy module's state partition now",
                (|s| s.estimated_bytes) as fn(&crate::state::StateStats) -> usize,
            ),
            (
                "state_max_estimated_bytes",
                "Estimated heap bytes of a policy module's state partition when full",
                |s| s.max_estimated_bytes,
            ),
        ] {
            let mut family = encoder.encode_descriptor(name, help, None, gauge_type)?;
            for (module, stats) in &partitions {
                let labels = ModuleLabels {
                    module: module.clone(),
                };
                ConstGauge::new(clamp(read(stats) as u64))
                    .encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

fn clamp(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
