//! Records the store reads and writes.

use audiomill_core::{
    AccountId, ArtifactId, InputRef, JobError, JobId, JobState, KeyId, MediaInfo, Operation,
    OperationKind, OutputSpec, PlanLimits, PlanName, Scope, UploadId,
};
use chrono::{DateTime, Utc};

/// A tenant: owns keys, uploads, jobs and artifacts.
#[derive(Debug, Clone, PartialEq)]
pub struct Account {
    pub id: AccountId,
    /// Unique, human-chosen name.
    pub name: String,
    /// The account's plan; `None`: the default plan.
    pub plan: Option<PlanName>,
    pub created_at: DateTime<Utc>,
}

/// A plan as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub name: PlanName,
    pub limits: PlanLimits,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What accepting a job takes from its account, checked and taken in the insert's
/// transaction by guarded updates, so that concurrent submissions cannot overrun either.
#[derive(Debug, Clone, PartialEq)]
pub struct Reservation {
    /// The usage period (`YYYY-MM`, UTC) the seconds count in.
    pub period: String,
    /// Estimated seconds of audio the job will process.
    pub seconds: f64,
    /// The plan's seconds per period.
    pub quota_seconds: u64,
    /// The plan's limit of jobs queued or running at once; `None` for a job that takes no
    /// slot (a playlist item: its parent holds one).
    pub concurrent_jobs: Option<u32>,
}

/// An account's usage in one period.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Usage {
    pub used_seconds: f64,
    pub reserved_seconds: f64,
    /// Jobs queued or running now.
    pub active_jobs: u32,
    /// Per operation: seconds charged and jobs succeeded in the period.
    pub by_operation: Vec<(OperationKind, f64, u64)>,
}

/// A stored API key: never the key itself.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyRecord {
    pub id: KeyId,
    pub account_id: AccountId,
    /// Human label given at creation.
    pub name: String,
    /// First characters of the key, for listings.
    pub display_prefix: String,
    /// Hex SHA-256 of the key; unique.
    pub hash: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// What the key may do.
    pub scopes: Vec<Scope>,
    /// When the key stops working (set when it is rotated out).
    pub expires_at: Option<DateTime<Utc>>,
}

impl KeyRecord {
    /// Whether the key works at `now`: not revoked, not expired.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|at| at > now)
    }
}

/// An uploaded input.
#[derive(Debug, Clone, PartialEq)]
pub struct Upload {
    pub id: UploadId,
    pub account_id: AccountId,
    /// Where the bytes are in blob storage (server-generated).
    pub blob_key: String,
    /// File name the client sent, for display only (never a path).
    pub filename: Option<String>,
    pub size: u64,
    /// Hex SHA-256 of the bytes.
    pub sha256: String,
    pub media: MediaInfo,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// A file a job produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Artifact {
    pub id: ArtifactId,
    pub account_id: AccountId,
    pub job_id: JobId,
    /// Download file name, e.g. `song.mp3`.
    pub name: String,
    pub content_type: String,
    pub size: u64,
    pub blob_key: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// A job to insert.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    pub id: JobId,
    pub account_id: AccountId,
    /// The operation with its validated options; stored as its name and the options'
    /// canonical JSON (`Operation::options_json`).
    pub operation: Operation,
    pub input: InputRef,
    pub output: OutputSpec,
    /// Duration of the input in seconds, when known (for quotas and progress).
    pub input_seconds: Option<f64>,
    pub max_attempts: u32,
    pub created_at: DateTime<Utc>,
    /// The playlist job this job is an item of.
    pub parent_id: Option<JobId>,
    /// Quota and slot to take; `None` takes nothing (tests, internal jobs).
    pub reservation: Option<Reservation>,
}

/// A job as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: JobId,
    pub account_id: AccountId,
    pub operation: OperationKind,
    pub options: serde_json::Value,
    pub input: InputRef,
    pub output: OutputSpec,
    pub input_seconds: Option<f64>,
    pub state: JobState,
    /// Latest progress, 0..=1.
    pub progress: f64,
    /// Attempts started so far (0 before the first claim).
    pub attempt: u32,
    pub max_attempts: u32,
    pub cancel_requested: bool,
    /// Last error: set on `failed`, and kept on a job queued for retry.
    pub error: Option<JobError>,
    /// Operation result (e.g. the analysis report), on success.
    pub result: Option<serde_json::Value>,
    pub created_at: DateTime<Utc>,
    /// When the job may next be claimed.
    pub run_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The playlist job this job is an item of.
    pub parent_id: Option<JobId>,
    /// Seconds of quota the job holds until it ends.
    pub reserved_seconds: f64,
    pub artifacts: Vec<Artifact>,
}

/// Idempotency key sent with a job submission.
#[derive(Debug, Clone, PartialEq)]
pub struct Idempotency {
    /// The client's `Idempotency-Key` header value.
    pub key: String,
    /// Hash of the request body, to tell a retry from a different request.
    pub request_hash: String,
}

/// Outcome of [`crate::Store::insert_job`].
#[derive(Debug, Clone, PartialEq)]
pub enum InsertJob {
    /// The job was inserted.
    Created(Job),
    /// The idempotency key was used before with the same request: here is that job.
    Existing(Job),
    /// The idempotency key was used before with a different request.
    IdempotencyMismatch,
    /// The job does not fit in the period's quota; nothing was inserted.
    QuotaExceeded { used: f64, reserved: f64 },
    /// The account already has as many jobs queued or running as its plan allows.
    TooManyActiveJobs,
}

/// Filter of job listings.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct JobFilter {
    pub state: Option<JobState>,
}

/// A page of a listing, newest first; `C` is the id of the rows listed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Page<C = JobId> {
    /// At most this many rows (the caller bounds it).
    pub limit: u32,
    /// Rows strictly older than this id.
    pub before: Option<C>,
}

/// Outcome of [`crate::Store::delete_unused_upload`].
#[derive(Debug, Clone, PartialEq)]
pub enum UploadDeletion {
    /// No such upload in this account.
    NotFound,
    /// A queued or running job still reads it; nothing was deleted.
    InUse(JobId),
    /// The row is gone; its bytes are the caller's to delete.
    Deleted(Box<Upload>),
}

/// Outcome of [`crate::Store::request_cancel`].
#[derive(Debug, Clone, PartialEq)]
pub enum CancelOutcome {
    NotFound,
    /// It was queued and is now canceled.
    Canceled(Job),
    /// It is running; its worker will stop it.
    Requested(Job),
    /// It had already ended; nothing changed.
    AlreadyFinished(Job),
}

/// A worker's hold on a running job. Every write it makes is fenced on all three fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub job_id: JobId,
    pub owner: String,
    pub attempt: u32,
}

/// A job just claimed.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedJob {
    pub job: Job,
    pub lease: Lease,
}

/// Outcome of [`crate::Store::heartbeat`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heartbeat {
    /// Lease extended; `cancel_requested` tells whether to stop.
    Held { cancel_requested: bool },
    /// The lease is no longer ours: stop without writing anything.
    Lost,
}
