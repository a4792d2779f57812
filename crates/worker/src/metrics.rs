//! Prometheus metrics of the worker.

use audiomill_core::OperationKind;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

/// How an attempt ended, as counted in `audiomill_job_duration_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The job succeeded.
    Succeeded,
    /// The job failed for good.
    Failed,
    /// The job was canceled by its owner while running.
    Canceled,
    /// The attempt failed and the job was queued again for a later retry.
    Retried,
    /// The attempt was stopped by shutdown and the job given back to the queue.
    Requeued,
    /// The lease was lost (or the store refused the final write): another worker owns the job.
    Lost,
}

impl Outcome {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::Canceled => "canceled",
            Outcome::Retried => "retried",
            Outcome::Requeued => "requeued",
            Outcome::Lost => "lost",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    operation: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: &'static str,
}

struct Inner {
    durations: Family<JobLabels, Histogram>,
    busy: Gauge,
    audio_seconds: Family<OperationLabels, Counter<f64, AtomicU64>>,
    claimed: Counter,
}

/// Metrics of the worker. Clones share the same series.
///
/// - `audiomill_job_duration_seconds{operation, outcome}`: histogram of attempt durations;
///   `outcome` is `succeeded`, `failed`, `canceled`, `retried`, `requeued` or `lost`;
/// - `audiomill_workers_busy`: jobs running now in this process;
/// - `audiomill_audio_seconds_processed_total{operation}`: seconds of audio in successful jobs;
/// - `audiomill_jobs_claimed_total`: jobs claimed by this process.
#[derive(Clone)]
pub struct WorkerMetrics {
    inner: Arc<Inner>,
}

impl Default for WorkerMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for WorkerMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerMetrics")
            .field("busy", &self.inner.busy.get())
            .field("claimed", &self.inner.claimed.get())
            .finish()
    }
}

impl WorkerMetrics {
    /// Fresh series, all zero.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                // 0.1 s … about 40 min.
                durations: Family::new_with_constructor(|| {
                    Histogram::new(exponential_buckets(0.1, 2.5, 12))
                }),
                busy: Gauge::default(),
                audio_seconds: Family::default(),
                claimed: Counter::default(),
            }),
        }
    }

    /// Registers the series in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "audiomill_job_duration_seconds",
            "Duration of job attempts, by operation and outcome",
            self.inner.durations.clone(),
        );
        registry.register(
            "audiomill_workers_busy",
            "Jobs running now in this process",
            self.inner.busy.clone(),
        );
        // The client library appends `_total` to counters.
        registry.register(
            "audiomill_audio_seconds_processed",
            "Seconds of audio processed by successful jobs, by operation",
            self.inner.audio_seconds.clone(),
        );
        registry.register(
            "audiomill_jobs_claimed",
            "Jobs claimed by this process",
            self.inner.claimed.clone(),
        );
    }

    pub(crate) fn claimed(&self, n: usize) {
        self.inner.claimed.inc_by(n as u64);
    }

    pub(crate) fn finished(&self, operation: OperationKind, outcome: Outcome, took: Duration) {
        self.inner
            .durations
            .get_or_create(&JobLabels {
                operation: operation.as_str(),
                outcome: outcome.as_str(),
            })
            .observe(took.as_secs_f64());
    }

    pub(crate) fn audio_processed(&self, operation: OperationKind, seconds: f64) {
        if seconds.is_finite() && seconds > 0.0 {
            self.inner
                .audio_seconds
                .get_or_create(&OperationLabels {
                    operation: operation.as_str(),
                })
                .inc_by(seconds);
        }
    }

    /// Counts a running job until the guard is dropped.
    pub(crate) fn busy(&self) -> BusyGuard {
        self.inner.busy.inc();
        BusyGuard(self.clone())
    }
}

/// Decrements `audiomill_workers_busy` when dropped, however the job task ends.
pub(crate) struct BusyGuard(WorkerMetrics);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.inner.busy.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_the_documented_names() {
        let metrics = WorkerMetrics::new();
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        metrics.claimed(2);
        metrics.finished(
            OperationKind::Convert,
            Outcome::Succeeded,
            Duration::from_millis(1500),
        );
        metrics.audio_processed(OperationKind::Convert, 12.5);
        let guard = metrics.busy();
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains(
            r#"audiomill_job_duration_seconds_count{operation="convert",outcome="succeeded"} 1"#
        ));
        assert!(text.contains("audiomill_workers_busy 1"));
        assert!(
            text.contains(r#"audiomill_audio_seconds_processed_total{operation="convert"} 12.5"#)
        );
        assert!(text.contains("audiomill_jobs_claimed_total 2"));
        drop(guard);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("audiomill_workers_busy 0"));
    }
}
