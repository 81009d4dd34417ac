//! Calls, errors and latency of the state imports by backend and operation, for
//! `/metrics`. One set per process: the gateway serves one state backend at a time.

use std::sync::OnceLock;
use std::time::Duration;

use std::fmt::Write;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

/// Where a call went.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Backend {
    Memory,
    Redis,
}

/// Which import.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Operation {
    Take,
    DistinctAdd,
    DistinctCount,
    CounterAdd,
    TakeAll,
    /// Several calls in one round trip.
    Batch,
}

impl EncodeLabelValue for Backend {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.write_str(match self {
            Backend::Memory => "memory",
            Backend::Redis => "redis",
        })
    }
}

impl EncodeLabelValue for Operation {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.write_str(match self {
            Operation::Take => "take",
            Operation::DistinctAdd => "distinct_add",
            Operation::DistinctCount => "distinct_count",
            Operation::CounterAdd => "counter_add",
            Operation::TakeAll => "take_all",
            Operation::Batch => "batch",
        })
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub backend: Backend,
    pub operation: Operation,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabels {
    pub backend: Backend,
}

/// The families `/metrics` registers.
pub struct StateCallMetrics {
    pub calls: Family<CallLabels, Counter>,
    pub errors: Family<CallLabels, Counter>,
    pub seconds: Family<BackendLabels, Histogram, fn() -> Histogram>,
}

/// Latency buckets, in seconds: from a few microseconds (in memory) to the Redis timeout.
const BUCKETS: [f64; 12] = [
    0.000_01, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.1, 0.25,
];

fn new_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// The process's state call metrics.
pub fn state_call_metrics() -> &'static StateCallMetrics {
    static METRICS: OnceLock<StateCallMetrics> = OnceLock::new();
    METRICS.get_or_init(|| StateCallMetrics {
        calls: Family::default(),
        errors: Family::default(),
        seconds: Family::new_with_constructor(new_histogram as fn() -> Histogram),
    })
}

/// Counts one call.
pub(crate) fn record_call(backend: Backend, operation: Operation, took: Duration, failed: bool) {
    let metrics = state_call_metrics();
    let labels = CallLabels { backend, operation };
    metrics.calls.get_or_create(&labels).inc();
    if failed {
        metrics.errors.get_or_create(&labels).inc();
    }
    metrics
        .seconds
        .get_or_create(&BackendLabels { backend })
        .observe(took.as_secs_f64());
}
