//! Job execution for audiomill.
//!
//! Owns:
//! - the queue loop ([`Worker::run`]): claims runnable jobs from the [`Store`] with leases, up to
//!   `concurrency` at a time, woken by the API through [`Worker::waker`] or by polling;
//! - the sandboxed job runner: every attempt runs in a child process (`audiomill __run-job`,
//!   see [`child_main`]) with an empty environment, its own process group, `PR_SET_PDEATHSIG`
//!   and rlimits on address space, CPU time, file size and core dumps ([`sandboxed_command`]),
//!   inside a per-attempt temp directory that is removed on every exit path;
//! - the parent/child line protocol ([`protocol`]);
//! - progress → store (sent with the heartbeat that keeps the lease), cancellation within about
//!   a second, the wall-clock timeout, and the mapping of a child's death to an [`ErrorCode`];
//! - artifacts → blob storage (moved in under server-generated keys, then recorded atomically
//!   with the job's success; fenced on the lease);
//! - retry with exponential backoff and jitter ([`backoff`]) for retryable errors;
//! - graceful shutdown: stop claiming, let running jobs finish for a grace period, then kill the
//!   children and give their jobs back to the queue;
//! - the retention reaper ([`reap_expired`]): expired uploads and artifacts, bytes then rows;
//! - worker metrics ([`WorkerMetrics`]).
//!
//! Leaves to others: *what* a job does (the `media` engine, called only in the child), SQL (only
//! the [`Store`] trait is used), byte storage (the [`BlobStore`] trait), HTTP (none here).
//!
//! Security rules kept here: no user string ever becomes a path (the input is always `input`,
//! outputs have fixed file names, blob keys are built from ids); the child gets none of the
//! server's environment; file names reported by the child are checked to be plain regular files
//! in its output directory; messages stored on a job never contain paths or the child's stderr
//! (those are logged with `tracing`).
//!
//! [`ErrorCode`]: audiomill_core::ErrorCode
//! [`Store`]: audiomill_store::Store
//! [`BlobStore`]: audiomill_blob::BlobStore

mod attempt;
mod backoff;
mod child;
mod conclude;
mod config;
mod errors;
mod fetch;
mod input;
mod jobdir;
mod lease;
mod metrics;
mod names;
mod ops;
pub mod protocol;
mod reaper;
mod runner;
mod sandbox;
mod supervise;
mod worker;

#[cfg(test)]
mod tests;

pub use backoff::backoff;
pub use child::child_main;
pub use config::{ChildLimits, OperationTimeouts, WorkerConfig};
pub use metrics::WorkerMetrics;
pub use reaper::reap_expired;
pub use sandbox::sandboxed_command;
pub use worker::Worker;
