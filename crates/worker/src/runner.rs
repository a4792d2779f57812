//! One attempt of one job, step by step: read the operation and the plan, prepare the input
//! (`input`), prepare what the operation needs (`ops`), run the child (`supervise`), then
//! store its files and record the end (`conclude`), or expand a playlist (`ops::download`).
//! Each step is a function of its own module; this one only says their order.

use crate::attempt::{Attempt, RunEnd, Shared};
use crate::conclude::{self, Final};
use crate::errors::internal;
use crate::jobdir::JobDir;
use crate::lease::LeaseKeeper;
use crate::metrics::Outcome;
use crate::protocol::ChildTask;
use crate::{input, ops, supervise, WorkerConfig};
use audiomill_core::{ErrorCode, JobError, Limits, Operation, OperationKind, PlanLimits};
use audiomill_store::{ClaimedJob, Job};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Runs one claimed job to the end of this attempt and records the outcome. `stop` kills the
/// child and requeues the job (the end of the shutdown grace period).
pub(crate) async fn run_job(
    shared: Arc<Shared>,
    claimed: ClaimedJob,
    stop: CancellationToken,
) -> Outcome {
    let started = Instant::now();
    tracing::info!("job attempt started");
    let outcome = attempt(&shared, &claimed, &stop, started).await;
    let took = started.elapsed();
    shared
        .metrics
        .finished(claimed.job.operation, outcome, took);
    tracing::info!(
        outcome = outcome.as_str(),
        duration_ms = took.as_millis() as u64,
        "job attempt finished"
    );
    outcome
}

async fn attempt(
    shared: &Shared,
    claimed: &ClaimedJob,
    stop: &CancellationToken,
    started: Instant,
) -> Outcome {
    let job = &claimed.job;
    // The operation, read once: every step below gets it typed. Its values were checked when
    // the job was accepted, so only its shape is read (a tightened rule spares queued jobs).
    let operation = match Operation::from_stored(job.operation, &job.options) {
        Ok(operation) => operation,
        Err(e) => {
            tracing::warn!(error = %e, "the job's stored options do not read");
            let error = JobError::new(ErrorCode::InvalidInput, e.0);
            return conclude::record(shared, claimed, Final::Failed(error)).await;
        }
    };
    // The account's plan, read once: it narrows the job's limits, its artifacts' retention and
    // a playlist's items.
    let plan = match shared.store.account_limits(job.account_id).await {
        Ok((_, plan)) => plan,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the account's plan");
            return conclude::record(shared, claimed, Final::Failed(internal())).await;
        }
    };
    let name = format!("{}-{}", job.id, claimed.lease.attempt);
    let dir = match JobDir::create(&shared.config.temp_dir, &name) {
        Ok(dir) => dir,
        Err(e) => {
            tracing::error!(error = %e, dir = %shared.config.temp_dir.display(), "cannot create job directory");
            return conclude::record(shared, claimed, Final::Failed(internal())).await;
        }
    };
    let (progress, progress_rx) = watch::channel(None);
    let keeper = LeaseKeeper::spawn(
        shared.store.clone(),
        claimed.lease.clone(),
        shared.config.heartbeat,
        shared.config.lease,
        progress_rx,
    );
    let time_limit = time_limit(&shared.config, job.operation);
    let at = Attempt {
        shared,
        claimed,
        operation: &operation,
        limits: job_limits(&shared.config, &plan, job),
        dir: &dir,
        keeper: &keeper,
        progress,
        stop,
        deadline: started
            .checked_add(time_limit)
            .unwrap_or_else(|| started + Duration::from_secs(100 * 365 * 86_400)),
        time_limit,
    };
    let end = work(&at).await;
    // Artifacts move into blob storage while the directory still exists; the directory is
    // gone before the job is released (a requeued job may be claimed again at once, with the
    // same directory name).
    let end = match end {
        RunEnd::Expand(list) => Err(list),
        end => Ok(Final::of(end, shared, claimed, &plan, &dir).await),
    };
    drop(at);
    drop(dir);
    drop(keeper);
    match (end, &operation) {
        (Ok(end), _) => conclude::record(shared, claimed, end).await,
        (Err(list), Operation::Download(options)) => {
            ops::download::expand(shared, claimed, options, &plan, list).await
        }
        (Err(_), _) => {
            tracing::error!("a playlist came from a job that is not a download");
            conclude::record(shared, claimed, Final::Failed(internal())).await
        }
    }
}

/// The attempt's work: the input, what the operation needs, then the child.
async fn work(at: &Attempt<'_>) -> RunEnd {
    let input = match input::prepare(at).await {
        Ok(input) => input,
        Err(end) => return end,
    };
    let prepared = match ops::prepare(at.operation, &at.shared.config).await {
        Ok(prepared) => prepared,
        Err(error) => return RunEnd::Failed(error),
    };
    let job = &at.claimed.job;
    let task = ChildTask {
        operation: at.operation.clone(),
        input: at.dir.input(),
        output_dir: at.dir.output_dir(),
        // Named after the input (its file name, or a link's title) unless the job names it.
        output_name: job
            .output
            .name
            .clone()
            .or(input.name)
            .unwrap_or_else(|| "output".to_owned()),
        limits: at.limits,
        model: prepared.model,
        source: input.source,
    };
    let offset = ops::fetch_share(at.operation, &job.input);
    supervise::run_child(at, &task, offset).await
}

/// The limits of this job: the worker's, narrowed by the account's plan, and for an input
/// whose length was unknown when it was accepted (a link, an artifact) by the seconds it
/// reserved, so that no job can process more than its account was charged for.
fn job_limits(config: &WorkerConfig, plan: &PlanLimits, job: &Job) -> Limits {
    let mut limits = config.limits;
    limits.max_upload_bytes = limits.max_upload_bytes.min(plan.max_upload_bytes);
    limits.max_duration_secs = limits.max_duration_secs.min(plan.max_input_seconds);
    limits.max_playlist_items = limits.max_playlist_items.min(plan.max_playlist_items);
    if job.input_seconds.is_none() && job.reserved_seconds > 0.0 {
        let reserved = job.reserved_seconds.ceil() as u64;
        limits.max_duration_secs = limits.max_duration_secs.min(reserved.max(1));
    }
    limits
}

/// How long one attempt of an `operation` job may run.
fn time_limit(config: &WorkerConfig, operation: OperationKind) -> Duration {
    config
        .job_timeout
        .min(config.operation_timeouts.of(operation))
}
