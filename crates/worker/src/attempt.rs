//! One attempt of one job, as its steps see it: what every attempt shares, the context of
//! this one, and how its work ends.

use crate::jobdir::JobDir;
use crate::lease::{LeaseKeeper, LeaseState};
use crate::protocol::ChildArtifact;
use crate::{WorkerConfig, WorkerMetrics};
use audiomill_blob::BlobStore;
use audiomill_core::{ErrorCode, JobError, Limits, Operation};
use audiomill_net::PlaylistMeta;
use audiomill_store::{ClaimedJob, Store};
use std::sync::Arc;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The stores, the settings and the metrics, shared by every attempt.
pub(crate) struct Shared {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) blob: Arc<dyn BlobStore>,
    pub(crate) config: WorkerConfig,
    pub(crate) metrics: WorkerMetrics,
}

/// How an attempt's work ended, before anything is recorded.
pub(crate) enum RunEnd {
    /// The child reported success; its files are still in the job directory.
    Done {
        artifacts: Vec<ChildArtifact>,
        result: Option<serde_json::Value>,
        audio_seconds: f64,
    },
    /// The attempt failed with this error (retried if the code is retryable).
    Failed(JobError),
    /// The owner asked to cancel; the child (if any) is dead.
    Canceled,
    /// The lease is no longer ours; write nothing.
    Lost,
    /// Shutdown: give the job back to the queue.
    Requeue,
    /// The input is a playlist: the job becomes the parent of one job per item.
    Expand(PlaylistMeta),
}

/// The context of one attempt, handed to each of its steps.
pub(crate) struct Attempt<'a> {
    pub(crate) shared: &'a Shared,
    pub(crate) claimed: &'a ClaimedJob,
    /// The job's operation, read once from its row.
    pub(crate) operation: &'a Operation,
    /// The input limits of this job (the worker's, narrowed by the plan and the reservation).
    pub(crate) limits: Limits,
    pub(crate) dir: &'a JobDir,
    pub(crate) keeper: &'a LeaseKeeper,
    /// Progress of the whole attempt, 0..=1, sent with the next heartbeat.
    pub(crate) progress: watch::Sender<Option<f64>>,
    /// Shutdown's end of the grace period: kill the child, requeue the job.
    pub(crate) stop: &'a CancellationToken,
    /// When the attempt's time limit runs out.
    pub(crate) deadline: Instant,
    /// The time limit itself, for messages.
    pub(crate) time_limit: std::time::Duration,
}

impl Attempt<'_> {
    /// How the lease stands now, as an end when it says to stop.
    pub(crate) fn lease_end(&self) -> Option<RunEnd> {
        match self.keeper.state() {
            LeaseState::Held => None,
            LeaseState::CancelRequested => Some(RunEnd::Canceled),
            LeaseState::Lost => Some(RunEnd::Lost),
        }
    }

    /// Runs `work` until it ends, or until the job is canceled, the lease is lost, the deadline
    /// passes or the worker shuts down (then `work` is dropped, which stops it).
    pub(crate) async fn guarded<T>(
        &self,
        work: impl std::future::Future<Output = T>,
    ) -> Result<T, RunEnd> {
        let mut lease_state = self.keeper.subscribe();
        let watch_lease = async {
            loop {
                if lease_state.changed().await.is_err() {
                    return std::future::pending().await;
                }
                let state = *lease_state.borrow_and_update();
                match state {
                    LeaseState::Held => {}
                    LeaseState::CancelRequested => return RunEnd::Canceled,
                    LeaseState::Lost => return RunEnd::Lost,
                }
            }
        };
        tokio::select! {
            done = work => Ok(done),
            end = watch_lease => Err(end),
            _ = tokio::time::sleep_until(self.deadline) => Err(RunEnd::Failed(JobError::new(
                ErrorCode::Timeout,
                "the download did not finish in the job's time limit",
            ))),
            _ = self.stop.cancelled() => Err(RunEnd::Requeue),
        }
    }
}
