//! The jobs role: jobs as clients see them — submitted, read, listed, canceled, deleted.

use crate::model::{Artifact, CancelOutcome, Idempotency, InsertJob, Job, JobFilter, NewJob, Page};
use crate::Result;
use async_trait::async_trait;
use audiomill_core::{AccountId, JobId, JobState};

/// Jobs, on behalf of their account.
#[async_trait]
pub trait JobStore: Send + Sync + 'static {
    /// Inserts a job, and its idempotency key if given, in one transaction, with its quota
    /// reservation (see [`NewJob::reservation`]). With an idempotency key already used by
    /// this account, returns the existing job (same request hash) or `IdempotencyMismatch`
    /// (different hash) and inserts nothing.
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
    ) -> Result<Option<Result<Vec<Artifact>, JobState>>>;
}
