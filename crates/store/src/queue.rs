//! The queue role: what workers do with jobs.
//!
//! Queue rules (every backend):
//! - `claim_jobs` takes jobs that are `queued` with `run_at <= now`, and jobs that are `running`
//!   whose lease expired (their worker died); it sets `running`, a new lease (`owner`,
//!   `lease_expires_at = now + lease`), increments `attempt`, and returns a [`Lease`] per job.
//!   An expired job that already used `max_attempts` is failed with `worker_crashed` instead; an
//!   expired job whose cancel was requested is canceled instead.
//! - Every later write from a worker (`heartbeat`, `succeed_job`, `fail_job`, `cancel_running`,
//!   `requeue`, `expand_job`) is fenced on `(id, lease_owner, attempt, state = running)`: a
//!   worker that lost its lease changes nothing and is told so (`false` /
//!   [`Heartbeat::Lost`]). Lease owners must therefore be unique per worker process run.
//! - A cancel request wins over running again: `fail_job` with a retry and `requeue` end a job
//!   whose cancel was requested as `canceled` instead of queuing it, and `claim_jobs` cancels a
//!   queued job that carries a cancel request rather than run it.
//! - Every way a job ends settles its quota reservation and active-job slot, and a playlist
//!   item's end settles its parent, in the same transaction.

use crate::model::{Artifact, ClaimedJob, Heartbeat, Lease, NewJob};
use crate::Result;
use async_trait::async_trait;
use audiomill_core::JobError;
use chrono::{DateTime, Utc};
use std::time::Duration;

/// The queue, as workers use it.
#[async_trait]
pub trait QueueStore: Send + Sync + 'static {
    /// Claims up to `limit` runnable jobs for `owner`. See the module docs for the rules.
    async fn claim_jobs(
        &self,
        owner: &str,
        limit: u32,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Vec<ClaimedJob>>;
    /// Extends the lease to `now + lease`, records progress (0..=1) if given, and reports
    /// whether the owner asked to cancel.
    async fn heartbeat(
        &self,
        lease: &Lease,
        extend: Duration,
        progress: Option<f64>,
        now: DateTime<Utc>,
    ) -> Result<Heartbeat>;
    /// Marks the job succeeded and inserts its artifacts, atomically. The artifacts are stored
    /// under the job's id and account, whatever their records say. `charged_seconds` (the audio
    /// processed) settles the job's quota reservation.
    async fn succeed_job(
        &self,
        lease: &Lease,
        artifacts: &[Artifact],
        result: Option<serde_json::Value>,
        charged_seconds: f64,
        now: DateTime<Utc>,
    ) -> Result<bool>;
    /// Turns a running job into the parent of `children` (a playlist's items), atomically:
    /// the children are queued with `parent_id` set, and the parent waits, `running` under a
    /// lease no worker holds, until its last child ends (see the migration `0002_playlists`).
    /// `result` describes the expansion. False when the lease is no longer held.
    async fn expand_job(
        &self,
        lease: &Lease,
        children: &[NewJob],
        result: serde_json::Value,
    ) -> Result<bool>;
    /// Records a failed attempt: back to `queued` at `retry_at` if given (and attempts remain),
    /// else `failed` for good. The error is kept either way.
    async fn fail_job(
        &self,
        lease: &Lease,
        error: &JobError,
        retry_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<bool>;
    /// Confirms that a running job stopped because its cancel was requested.
    async fn cancel_running(&self, lease: &Lease, now: DateTime<Utc>) -> Result<bool>;
    /// Gives a running job back to the queue, runnable at `now`, without counting the attempt
    /// (graceful shutdown).
    async fn requeue(&self, lease: &Lease, now: DateTime<Utc>) -> Result<bool>;
    /// Jobs queued and runnable now (for metrics).
    async fn queue_depth(&self, now: DateTime<Utc>) -> Result<u64>;
}
