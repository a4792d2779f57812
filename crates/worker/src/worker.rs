//! The queue loop.

use crate::attempt::Shared;
use crate::runner::run_job;
use crate::{WorkerConfig, WorkerMetrics};
use audiomill_blob::BlobStore;
use audiomill_store::Store;
use chrono::Utc;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::{JoinError, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Shortest wait between claims, whatever the configuration says.
const MIN_POLL: Duration = Duration::from_millis(10);

/// Claims jobs from the store and runs each in a sandboxed child, up to `concurrency` at once.
pub struct Worker {
    shared: Arc<Shared>,
    waker: Arc<Notify>,
}

impl Worker {
    /// A worker over `store` and `blob`. Nothing runs until [`Worker::run`].
    pub fn new(
        store: Arc<dyn Store>,
        blob: Arc<dyn BlobStore>,
        config: WorkerConfig,
        metrics: WorkerMetrics,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                store,
                blob,
                config,
                metrics,
            }),
            waker: Arc::new(Notify::new()),
        }
    }

    /// Poke this (`notify_one`) after queuing a job so it is claimed at once; without it the
    /// worker still finds the job at its next poll.
    pub fn waker(&self) -> Arc<Notify> {
        self.waker.clone()
    }

    /// Runs until `shutdown` is cancelled, then stops claiming, lets running jobs finish for up
    /// to the grace period, kills the rest and gives their jobs back to the queue. Returns when
    /// every job it claimed is finished or requeued.
    pub async fn run(self, shutdown: CancellationToken) {
        let shared = self.shared;
        let config = &shared.config;
        let concurrency = config.concurrency.max(1);
        // Cancelled at the end of the grace period: kills children, requeues their jobs.
        let stop = CancellationToken::new();
        let mut running: JoinSet<()> = JoinSet::new();
        if let Err(e) = tokio::fs::create_dir_all(&config.temp_dir).await {
            tracing::error!(error = %e, dir = %config.temp_dir.display(), "cannot create the job temp directory");
        }
        tracing::info!(owner = %config.owner, concurrency, "worker started");

        while !shutdown.is_cancelled() {
            let free = concurrency.saturating_sub(running.len());
            if free > 0 {
                let limit = u32::try_from(free).unwrap_or(u32::MAX);
                match shared
                    .store
                    .claim_jobs(&config.owner, limit, config.lease, Utc::now())
                    .await
                {
                    Ok(jobs) => {
                        shared.metrics.claimed(jobs.len());
                        for claimed in jobs {
                            let span = tracing::info_span!(
                                "job",
                                job_id = %claimed.job.id,
                                attempt = claimed.lease.attempt,
                                operation = %claimed.job.operation,
                            );
                            let shared = shared.clone();
                            let stop = stop.clone();
                            running.spawn(
                                async move {
                                    let _busy = shared.metrics.busy();
                                    run_job(shared, claimed, stop).await;
                                }
                                .instrument(span),
                            );
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot claim jobs"),
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.waker.notified() => {}
                Some(done) = running.join_next(), if !running.is_empty() => log_join(done),
                _ = tokio::time::sleep(config.poll.max(MIN_POLL)) => {}
            }
        }

        if !running.is_empty() {
            tracing::info!(
                running = running.len(),
                grace_secs = config.grace_period.as_secs_f64(),
                "worker stopping: waiting for running jobs"
            );
        }
        let grace = tokio::time::sleep(config.grace_period);
        tokio::pin!(grace);
        loop {
            tokio::select! {
                done = running.join_next() => match done {
                    Some(done) => log_join(done),
                    None => break,
                },
                _ = &mut grace => {
                    tracing::warn!(running = running.len(), "grace period over: requeueing running jobs");
                    stop.cancel();
                    break;
                }
            }
        }
        while let Some(done) = running.join_next().await {
            log_join(done);
        }
        tracing::info!("worker stopped");
    }
}

fn log_join(done: Result<(), JoinError>) {
    if let Err(e) = done {
        // The job's directory and child are cleaned up by their guards; its lease expires and
        // the job is claimed again.
        tracing::error!(error = %e, "job task panicked");
    }
}
