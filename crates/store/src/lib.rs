//! Persistence for audiomill behind one trait, [`Store`].
//!
//! Owns: accounts, API key records, uploads, jobs (the jobs table *is* the queue: claims with
//! leases, heartbeats, fenced completion, retry with `run_at`), artifacts and idempotency keys.
//! Main types: [`Store`], [`SqliteStore`], the records in [`model`].
//!
//! Leaves to others: deciding *what* to retry and when (the worker computes backoff and passes
//! `retry_at`), storing bytes (the `blob` crate), HTTP. Must not depend on the server, the worker
//! or the engines.
//!
//! Why one trait and per-dialect SQL rather than `sqlx::Any`: PostgreSQL will claim with
//! `FOR UPDATE SKIP LOCKED` and wake workers with `LISTEN/NOTIFY`, SQLite claims in a single
//! `UPDATE … RETURNING` under its one writer; the state machine and its fencing rules are the same
//! and are written down here, on the trait, so both implementations honour them.

pub mod model;
mod sqlite;

pub use model::*;
pub use sqlite::SqliteStore;

use async_trait::async_trait;
use audiomill_core::{
    AccountId, ArtifactId, JobError, JobId, KeyId, PlanLimits, PlanName, UploadId,
};
use chrono::{DateTime, Utc};
use std::time::Duration;

/// An error of the storage layer. Its text may hold SQL detail: log it, never return it to a
/// client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database failed or refused the operation.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Migrations could not be applied.
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A row held a value this version cannot read (a bug or a hand-edited database).
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// A uniqueness rule was broken (e.g. an account name already taken).
    #[error("{0} already exists")]
    Conflict(&'static str),
    /// A row the operation needs does not exist (e.g. the plan an account is put on).
    #[error("{0} not found")]
    NotFound(&'static str),
}

/// Result of the storage layer.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The storage interface. Every method is one transaction.
///
/// Queue rules (both backends):
/// - `claim_jobs` takes jobs that are `queued` with `run_at <= now`, and jobs that are `running`
///   whose lease expired (their worker died); it sets `running`, a new lease (`owner`,
///   `lease_expires_at = now + lease`), increments `attempt`, and returns a [`Lease`] per job.
///   An expired job that already used `max_attempts` is failed with `worker_crashed` instead; an
///   expired job whose cancel was requested is canceled instead.
/// - Every later write from a worker (`heartbeat`, `succeed_job`, `fail_job`, `cancel_running`,
///   `requeue`) is fenced on `(id, lease_owner, attempt, state = running)`: a worker that lost
///   its lease changes nothing and is told so (`false` / [`Heartbeat::Lost`]). Lease owners must
///   therefore be unique per worker process run.
/// - A cancel request wins over running again: `fail_job` with a retry and `requeue` end a job
///   whose cancel was requested as `canceled` instead of queuing it, and `claim_jobs` cancels a
///   queued job that carries a cancel request rather than run it.
/// - Times are stored with millisecond precision.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Checks that the database answers.
    async fn ping(&self) -> Result<()>;

    // ----- accounts and keys -----

    /// Creates an account on `plan` (`None`: the default plan); `Conflict` if the name is
    /// taken, `NotFound` if the plan does not exist.
    async fn create_account(&self, name: &str, plan: Option<&PlanName>) -> Result<Account>;
    /// Moves an account to another plan; `false` if there is no such account.
    async fn set_account_plan(&self, account: AccountId, plan: &PlanName) -> Result<bool>;
    /// Every account, by name.
    async fn list_accounts(&self) -> Result<Vec<Account>>;
    /// The plan that applies to an account and its limits (the default plan's when the account
    /// has none or the default plan has no row).
    async fn account_limits(&self, account: AccountId) -> Result<(PlanName, PlanLimits)>;

    // ----- plans and usage -----

    /// Creates a plan; `Conflict` if the name is taken.
    async fn create_plan(&self, name: &PlanName, limits: &PlanLimits) -> Result<Plan>;
    /// Replaces a plan's limits (the default plan is created on its first update); `false` if
    /// there is no such plan.
    async fn update_plan(&self, name: &PlanName, limits: &PlanLimits) -> Result<bool>;
    /// Every stored plan, by name (the default plan too, with its built-in limits if it has no
    /// row).
    async fn list_plans(&self) -> Result<Vec<Plan>>;
    /// An account's usage in `period` (`YYYY-MM`).
    async fn usage(&self, account: AccountId, period: &str) -> Result<Usage>;
    /// Sets when a key stops working (rotation); `false` if there is no such key.
    async fn expire_key(&self, id: KeyId, at: DateTime<Utc>) -> Result<bool>;
    /// The account with this name.
    async fn account_by_name(&self, name: &str) -> Result<Option<Account>>;
    /// Stores a new key record (the hash, never the key).
    async fn insert_key(&self, key: &KeyRecord) -> Result<()>;
    /// The key with this SHA-256 hash (revoked or not: the caller decides).
    async fn key_by_hash(&self, hash: &str) -> Result<Option<KeyRecord>>;
    /// All keys, oldest first.
    async fn list_keys(&self) -> Result<Vec<KeyRecord>>;
    /// Revokes a key; `false` if there is no such key or it was already revoked.
    async fn revoke_key(&self, id: KeyId, at: DateTime<Utc>) -> Result<bool>;
    /// Number of keys not revoked.
    async fn count_active_keys(&self) -> Result<u64>;

    // ----- uploads -----

    /// Records an upload whose bytes are already in blob storage.
    async fn insert_upload(&self, upload: &Upload) -> Result<()>;
    /// An account's upload.
    async fn get_upload(&self, account: AccountId, id: UploadId) -> Result<Option<Upload>>;
    /// An account's uploads, newest first. `page.before` is the cursor: the id of the last
    /// upload of the previous page.
    async fn list_uploads(&self, account: AccountId, page: Page<UploadId>) -> Result<Vec<Upload>>;
    /// Deletes an account's upload row unless a queued or running job reads it, in one
    /// transaction (the bytes are the caller's to delete after).
    async fn delete_unused_upload(
        &self,
        account: AccountId,
        id: UploadId,
    ) -> Result<UploadDeletion>;

    // ----- jobs -----

    /// Inserts a job, and its idempotency key if given, in one transaction. With an idempotency
    /// key already used by this account, returns the existing job (same request hash) or
    /// `IdempotencyMismatch` (different hash) and inserts nothing.
    async fn insert_job(&self, job: NewJob, idempotency: Option<Idempotency>) -> Result<InsertJob>;
    /// An account's job, with its artifacts.
    async fn get_job(&self, account: AccountId, id: JobId) -> Result<Option<Job>>;
    /// An account's jobs, newest first, with artifacts. `page.before` is the cursor: the id of
    /// the last job of the previous page.
    async fn list_jobs(
        &self,
        account: AccountId,
        filter: JobFilter,
        page: Page,
    ) -> Result<Vec<Job>>;
    /// Cancels a queued job at once (→ `canceled`), or flags a running one for its worker.
    async fn request_cancel(&self, account: AccountId, id: JobId) -> Result<CancelOutcome>;
    /// Deletes a finished job with its artifact rows, returning the artifacts so the caller can
    /// delete their bytes. `None` if there is no such job; `Some(Err(state))` if not finished.
    async fn delete_job(
        &self,
        account: AccountId,
        id: JobId,
    ) -> Result<Option<Result<Vec<Artifact>, audiomill_core::JobState>>>;

    // ----- queue (workers) -----

    /// Claims up to `limit` runnable jobs for `owner`. See the trait docs for the rules.
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

    // ----- files and retention -----

    /// An account's artifact.
    async fn get_artifact(&self, account: AccountId, id: ArtifactId) -> Result<Option<Artifact>>;
    /// Uploads whose `expires_at` has passed (`<= now`), earliest expiry first.
    async fn expired_uploads(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<Upload>>;
    /// Artifacts whose `expires_at` has passed (`<= now`), earliest expiry first.
    async fn expired_artifacts(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<Artifact>>;
    /// Deletes an upload row.
    async fn delete_upload(&self, id: UploadId) -> Result<()>;
    /// Deletes an artifact row.
    async fn delete_artifact(&self, id: ArtifactId) -> Result<()>;
    /// Every blob key the database refers to (uploads and artifacts), for the orphan sweeper.
    async fn all_blob_keys(&self) -> Result<Vec<String>>;
}
