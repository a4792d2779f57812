//! Stable error codes for failed jobs.
//!
//! A job that fails carries a [`JobError`]: a code from this closed list, which clients can
//! match on, and a message written for humans that never contains paths, SQL or the text of
//! an upstream error (those go to the logs).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Why a job failed. The string forms are part of the API and never change meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The input or options are invalid; retrying the same job cannot help.
    InvalidInput,
    /// The input is not audio in a format the engine can read.
    UnsupportedFormat,
    /// The input is audio but broken (truncated, corrupt) and could not be decoded.
    DecodeFailed,
    /// The input is longer than the plan allows.
    InputTooLong,
    /// The input's sample rate is above the plan's limit.
    SampleRateTooHigh,
    /// The input has more channels than the plan allows.
    TooManyChannels,
    /// The input named by the job no longer exists (expired or deleted).
    InputNotFound,
    /// The separation model named by the job is not installed (or was removed since).
    ModelNotInstalled,
    /// The job hit a resource limit (memory, CPU time, output size) while running.
    ResourceLimit,
    /// The job ran longer than its time limit.
    Timeout,
    /// The process running the job died; retried automatically until attempts run out.
    WorkerCrashed,
    /// An error on the server's side (storage, I/O); retried automatically.
    Internal,
    /// A URL input leads somewhere the server may not fetch from (a private or reserved
    /// address, on a redirect or after name resolution).
    BlockedUrl,
    /// A URL input's download is larger than the plan allows.
    InputTooLarge,
    /// A URL input could not be fetched: the server answered with an error status, or the
    /// connection failed.
    FetchFailed,
    /// The linked media was removed, deleted or never published.
    MediaUnavailable,
    /// The linked media is private.
    MediaPrivate,
    /// The linked media is age-restricted.
    AgeRestricted,
    /// The linked media is not available from the server's country.
    GeoBlocked,
    /// The link is a live stream (or a premiere not yet ended).
    LiveStream,
    /// The linked media needs a signed-in account.
    LoginRequired,
    /// The site is limiting the server's requests; retried automatically.
    UpstreamRateLimited,
    /// The link's site is not supported.
    UnsupportedSite,
    /// The site download failed for another reason.
    DownloadFailed,
    /// The account's plan has no seconds left in this period for the job.
    QuotaExceeded,
}

impl ErrorCode {
    /// Whether a job failing with this code should be tried again (with backoff).
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::WorkerCrashed | ErrorCode::Internal | ErrorCode::UpstreamRateLimited
        )
    }

    /// The code as it appears in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidInput => "invalid_input",
            ErrorCode::UnsupportedFormat => "unsupported_format",
            ErrorCode::DecodeFailed => "decode_failed",
            ErrorCode::InputTooLong => "input_too_long",
            ErrorCode::SampleRateTooHigh => "sample_rate_too_high",
            ErrorCode::TooManyChannels => "too_many_channels",
            ErrorCode::InputNotFound => "input_not_found",
            ErrorCode::ModelNotInstalled => "model_not_installed",
            ErrorCode::ResourceLimit => "resource_limit",
            ErrorCode::Timeout => "timeout",
            ErrorCode::WorkerCrashed => "worker_crashed",
            ErrorCode::Internal => "internal",
            ErrorCode::BlockedUrl => "blocked_url",
            ErrorCode::InputTooLarge => "input_too_large",
            ErrorCode::FetchFailed => "fetch_failed",
            ErrorCode::MediaUnavailable => "media_unavailable",
            ErrorCode::MediaPrivate => "media_private",
            ErrorCode::AgeRestricted => "age_restricted",
            ErrorCode::GeoBlocked => "geo_blocked",
            ErrorCode::LiveStream => "live_stream",
            ErrorCode::LoginRequired => "login_required",
            ErrorCode::UpstreamRateLimited => "upstream_rate_limited",
            ErrorCode::UnsupportedSite => "unsupported_site",
            ErrorCode::DownloadFailed => "download_failed",
            ErrorCode::QuotaExceeded => "quota_exceeded",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error recorded on a failed job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobError {
    /// Stable, machine-readable code.
    pub code: ErrorCode,
    /// Human-readable explanation, safe to show to the client.
    pub message: String,
}

impl JobError {
    /// An error with the given code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}
