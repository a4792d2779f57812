//! JSON shapes of the API, built from store records. Field names here are the public
//! contract; the store's records can change without changing them.

use audiomill_core::{
    ArtifactId, InputRef, JobError, JobId, JobState, MediaInfo, OperationKind, OutputSpec, UploadId,
};
use audiomill_store::{Artifact, Job, Upload};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use utoipa::ToSchema;

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// An uploaded file and what the probe found in it.
#[derive(Debug, Serialize, ToSchema)]
pub struct UploadView {
    pub id: UploadId,
    /// File name sent by the client (display only).
    pub filename: Option<String>,
    /// Size in bytes.
    pub size: u64,
    /// Hex SHA-256 of the bytes.
    pub sha256: String,
    #[serde(flatten)]
    pub media: MediaInfo,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// When the upload and its bytes are deleted (RFC 3339 UTC).
    pub expires_at: String,
}

impl From<Upload> for UploadView {
    fn from(u: Upload) -> Self {
        Self {
            id: u.id,
            filename: u.filename,
            size: u.size,
            sha256: u.sha256,
            media: u.media,
            created_at: rfc3339(u.created_at),
            expires_at: rfc3339(u.expires_at),
        }
    }
}

/// How long files are kept, in hours.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct RetentionView {
    /// Uploads are deleted this long after they were received.
    pub upload_hours: u64,
    /// Artifacts are deleted this long after their job ended.
    pub artifact_hours: u64,
}

impl From<audiomill_core::Retention> for RetentionView {
    fn from(r: audiomill_core::Retention) -> Self {
        Self {
            upload_hours: r.uploads.as_secs() / 3600,
            artifact_hours: r.artifacts.as_secs() / 3600,
        }
    }
}

/// A page of uploads.
#[derive(Debug, Serialize, ToSchema)]
pub struct UploadPage {
    pub uploads: Vec<UploadView>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<UploadId>,
}

/// A file produced by a job.
#[derive(Debug, Serialize, ToSchema)]
pub struct ArtifactView {
    pub id: ArtifactId,
    /// Download file name.
    pub name: String,
    pub content_type: String,
    /// Size in bytes.
    pub size: u64,
    /// Path to download it from (with the same API key).
    pub url: String,
    /// When it is deleted (RFC 3339 UTC).
    pub expires_at: String,
}

impl From<Artifact> for ArtifactView {
    fn from(a: Artifact) -> Self {
        Self {
            url: format!("/v1/files/{}", a.id),
            id: a.id,
            name: a.name,
            content_type: a.content_type,
            size: a.size,
            expires_at: rfc3339(a.expires_at),
        }
    }
}

/// A job.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobView {
    pub id: JobId,
    pub status: JobState,
    pub operation: OperationKind,
    pub input: InputRef,
    /// The validated options.
    #[schema(value_type = Object)]
    pub options: serde_json::Value,
    pub output: OutputSpec,
    /// Fraction done, 0 to 1.
    pub progress: f64,
    /// Attempts started so far.
    pub attempt: u32,
    pub max_attempts: u32,
    /// Whether a cancel was asked for and the worker has not stopped yet.
    pub cancel_requested: bool,
    /// Why the job failed (or why the last attempt failed, for a job queued for retry).
    pub error: Option<JobError>,
    /// The operation's result: the analysis for `analyze`, the output's media info for
    /// `convert`, the source (url, title, uploader, duration) and media info for `download`;
    /// for a playlist, the playlist and one job per item.
    #[schema(value_type = Option<Object>)]
    pub result: Option<serde_json::Value>,
    /// The playlist job this job is an item of.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<JobId>,
    /// Files produced (on success).
    pub artifacts: Vec<ArtifactView>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
}

impl From<Job> for JobView {
    fn from(j: Job) -> Self {
        Self {
            id: j.id,
            status: j.state,
            operation: j.operation,
            input: j.input,
            options: j.options,
            output: j.output,
            progress: j.progress,
            attempt: j.attempt,
            max_attempts: j.max_attempts,
            cancel_requested: j.cancel_requested && !j.state.is_terminal(),
            error: j.error,
            result: j.result,
            parent: j.parent_id,
            artifacts: j.artifacts.into_iter().map(ArtifactView::from).collect(),
            created_at: rfc3339(j.created_at),
            started_at: j.started_at.map(rfc3339),
            finished_at: j.finished_at.map(rfc3339),
        }
    }
}

/// A page of jobs.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobPage {
    pub jobs: Vec<JobView>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<JobId>,
}

/// Readiness: each dependency and its state.
#[derive(Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `unavailable`.
    pub status: &'static str,
    /// `ok` or `error`.
    pub database: &'static str,
    /// `ok` or `error`.
    pub storage: &'static str,
    /// `ok` or `low` (below the configured minimum) or `error`.
    pub disk: &'static str,
    /// Free bytes on the data directory's file system, when known.
    pub disk_free_bytes: Option<u64>,
    /// yt-dlp's version, or `missing` (links to sites fail; everything else works).
    pub yt_dlp: String,
}

/// Usage of one operation in the period.
#[derive(Debug, Serialize, ToSchema)]
pub struct OperationUsage {
    pub operation: OperationKind,
    /// Seconds charged for jobs of this operation that succeeded.
    pub used_seconds: f64,
    /// Jobs of this operation that succeeded.
    pub jobs: u64,
}

/// The account's usage of its plan in the current period (a calendar month, UTC).
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageView {
    /// The plan the account is on.
    pub plan: String,
    /// `YYYY-MM`.
    pub period: String,
    /// When the period ends and the quota resets (RFC 3339).
    pub period_end: String,
    /// Seconds of audio per period the plan allows.
    pub quota_seconds: u64,
    /// Seconds charged for jobs that succeeded.
    pub used_seconds: f64,
    /// Seconds held by jobs queued or running (settled when they end).
    pub reserved_seconds: f64,
    /// What new jobs may still reserve.
    pub remaining_seconds: f64,
    /// Jobs queued or running, and the plan's limit.
    pub active_jobs: u32,
    pub concurrent_jobs_limit: u32,
    pub by_operation: Vec<OperationUsage>,
    /// How long the account's files are kept.
    pub retention: RetentionView,
}
