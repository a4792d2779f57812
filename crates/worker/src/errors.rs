//! The job errors the worker itself records (the child's own come through the protocol).
//! Their messages are fixed sentences: no paths, no upstream text.

use audiomill_core::{ErrorCode, JobError};

/// Something on our side failed (storage, a task): retried.
pub(crate) fn internal() -> JobError {
    JobError::new(
        ErrorCode::Internal,
        "an internal error interrupted the job; it will be retried",
    )
}

/// The child died or broke the protocol: retried, it may have been the machine.
pub(crate) fn crashed() -> JobError {
    JobError::new(
        ErrorCode::WorkerCrashed,
        "the process running the job stopped unexpectedly",
    )
}

/// The upload or artifact the job reads is gone (expired, deleted): not retried.
pub(crate) fn input_not_found() -> JobError {
    JobError::new(ErrorCode::InputNotFound, "the job's input no longer exists")
}
