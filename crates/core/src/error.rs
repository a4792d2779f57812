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
}

impl ErrorCode {
    /// Whether a job failing with this code should be tried again (with backoff).
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorCode::WorkerCrashed | ErrorCode::Internal)
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
