//! Prometheus metrics for the admin listener's `/metrics`: requests by route, decision and
//! status; denials by rule; policy and upstream latency; requests in flight.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

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
    pub upstream_seconds: HistogramFamily<UpstreamLabels>,
    pub in_flight: Gauge,
    pub reloads: Family<RuleLabels, Counter>,
}

fn policy_histogram() -> Histogram {
    // 2 µs to about 1 s.
    Histogram::new(exponential_buckets(0.000_002, 2.0, 20))
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
        let upstream_seconds: HistogramFamily<UpstreamLabels> =
            Family::new_with_constructor(upstream_histogram);
        let in_flight = Gauge::default();
        let reloads = Family::<RuleLabels, Counter>::default();
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
            "Time to evaluate one policy module (fresh instance, init, evaluate)",
            policy_seconds.clone(),
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
            upstream_seconds,
            in_flight,
            reloads,
        }
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

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
