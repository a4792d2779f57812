//! The SQLite implementation of [`Store`].
//!
//! SQLite has one writer. Every write goes through `write`, a pool of exactly one connection, and
//! every multi-statement write runs in a `BEGIN IMMEDIATE` transaction, which takes the write lock
//! up front: a deferred transaction that reads and then writes can fail with `SQLITE_BUSY` when
//! another connection (another process, e.g. the CLI) wrote in between, and `busy_timeout` cannot
//! help with that. Reads go through `read`, a pool of read-only connections that WAL lets run
//! beside the writer.

mod files;
mod jobs;
mod keys;
mod plans;
mod rows;

use crate::model::*;
use crate::{Result, Store, StoreError};
use async_trait::async_trait;
use audiomill_core::{
    AccountId, ArtifactId, JobError, JobId, JobState, KeyId, PlanLimits, PlanName, UploadId,
};
use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use std::path::Path;
use std::time::Duration;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// How long a statement waits for another connection's lock before failing with `SQLITE_BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections of the read pool.
const READ_CONNECTIONS: u32 = 4;
/// The statement that opens every multi-statement write transaction.
const BEGIN_IMMEDIATE: &str = "BEGIN IMMEDIATE";

/// A [`Store`] on an SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// One connection: all writes and write transactions.
    write: SqlitePool,
    /// Read-only connections: single reads and read snapshots.
    read: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating it if needed) the database at `path` and applies pending migrations.
    pub async fn open(path: &Path) -> Result<Self> {
        let base = SqliteConnectOptions::new()
            .filename(path)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT)
            .synchronous(SqliteSynchronous::Normal);
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            // Keep the writer open for the life of the store, so the WAL stays in place for
            // the read-only connections.
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(
                base.clone()
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal),
            )
            .await?;
        let store = SqliteStore {
            write,
            read: SqlitePoolOptions::new()
                .max_connections(READ_CONNECTIONS)
                .connect_lazy_with(base.read_only(true)),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Applies the migrations not applied yet (a no-op on an up-to-date database).
    pub async fn migrate(&self) -> Result<()> {
        MIGRATOR.run(&self.write).await?;
        Ok(())
    }

    /// Closes both pools, waiting for connections in use to be returned.
    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }
}

/// Whether `e` is the violation of a `UNIQUE` or `PRIMARY KEY` constraint.
fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// Maps a unique violation to `Conflict(what)`, anything else to a database error.
fn conflict(what: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |e| {
        if is_unique_violation(&e) {
            StoreError::Conflict(what)
        } else {
            StoreError::Database(e)
        }
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.read).await?;
        Ok(())
    }

    async fn create_account(&self, name: &str, plan: Option<&PlanName>) -> Result<Account> {
        self.create_account_impl(name, plan).await
    }

    async fn set_account_plan(&self, account: AccountId, plan: &PlanName) -> Result<bool> {
        self.set_account_plan_impl(account, plan).await
    }

    async fn list_accounts(&self) -> Result<Vec<Account>> {
        self.list_accounts_impl().await
    }

    async fn account_limits(&self, account: AccountId) -> Result<(PlanName, PlanLimits)> {
        self.account_limits_impl(account).await
    }

    async fn create_plan(&self, name: &PlanName, limits: &PlanLimits) -> Result<Plan> {
        self.create_plan_impl(name, limits).await
    }

    async fn update_plan(&self, name: &PlanName, limits: &PlanLimits) -> Result<bool> {
        self.update_plan_impl(name, limits).await
    }

    async fn list_plans(&self) -> Result<Vec<Plan>> {
        self.list_plans_impl().await
    }

    async fn usage(&self, account: AccountId, period: &str) -> Result<Usage> {
        self.usage_impl(account, period).await
    }

    async fn expire_key(&self, id: KeyId, at: DateTime<Utc>) -> Result<bool> {
        self.expire_key_impl(id, at).await
    }

    async fn account_by_name(&self, name: &str) -> Result<Option<Account>> {
        self.account_by_name_impl(name).await
    }

    async fn insert_key(&self, key: &KeyRecord) -> Result<()> {
        self.insert_key_impl(key).await
    }

    async fn key_by_hash(&self, hash: &str) -> Result<Option<KeyRecord>> {
        self.key_by_hash_impl(hash).await
    }

    async fn list_keys(&self) -> Result<Vec<KeyRecord>> {
        self.list_keys_impl().await
    }

    async fn revoke_key(&self, id: KeyId, at: DateTime<Utc>) -> Result<bool> {
        self.revoke_key_impl(id, at).await
    }

    async fn count_active_keys(&self) -> Result<u64> {
        self.count_active_keys_impl().await
    }

    async fn insert_upload(&self, upload: &Upload) -> Result<()> {
        self.insert_upload_impl(upload).await
    }

    async fn get_upload(&self, account: AccountId, id: UploadId) -> Result<Option<Upload>> {
        self.get_upload_impl(account, id).await
    }

    async fn list_uploads(&self, account: AccountId, page: Page<UploadId>) -> Result<Vec<Upload>> {
        self.list_uploads_impl(account, page).await
    }

    async fn delete_unused_upload(
        &self,
        account: AccountId,
        id: UploadId,
    ) -> Result<UploadDeletion> {
        self.delete_unused_upload_impl(account, id).await
    }

    async fn insert_job(&self, job: NewJob, idempotency: Option<Idempotency>) -> Result<InsertJob> {
        self.insert_job_impl(job, idempotency).await
    }

    async fn get_job(&self, account: AccountId, id: JobId) -> Result<Option<Job>> {
        self.get_job_impl(account, id).await
    }

    async fn list_jobs(
        &self,
        account: AccountId,
        filter: JobFilter,
        page: Page,
    ) -> Result<Vec<Job>> {
        self.list_jobs_impl(account, filter, page).await
    }

    async fn request_cancel(&self, account: AccountId, id: JobId) -> Result<CancelOutcome> {
        self.request_cancel_impl(account, id).await
    }

    async fn delete_job(
        &self,
        account: AccountId,
        id: JobId,
    ) -> Result<Option<Result<Vec<Artifact>, JobState>>> {
        self.delete_job_impl(account, id).await
    }

    async fn claim_jobs(
        &self,
        owner: &str,
        limit: u32,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Vec<ClaimedJob>> {
        self.claim_jobs_impl(owner, limit, lease, now).await
    }

    async fn heartbeat(
        &self,
        lease: &Lease,
        extend: Duration,
        progress: Option<f64>,
        now: DateTime<Utc>,
    ) -> Result<Heartbeat> {
        self.heartbeat_impl(lease, extend, progress, now).await
    }

    async fn succeed_job(
        &self,
        lease: &Lease,
        artifacts: &[Artifact],
        result: Option<serde_json::Value>,
        charged_seconds: f64,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        self.succeed_job_impl(lease, artifacts, result, charged_seconds, now)
            .await
    }

    async fn expand_job(
        &self,
        lease: &Lease,
        children: &[NewJob],
        result: serde_json::Value,
    ) -> Result<bool> {
        self.expand_job_impl(lease, children, result).await
    }

    async fn fail_job(
        &self,
        lease: &Lease,
        error: &JobError,
        retry_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        self.fail_job_impl(lease, error, retry_at, now).await
    }

    async fn cancel_running(&self, lease: &Lease, now: DateTime<Utc>) -> Result<bool> {
        self.cancel_running_impl(lease, now).await
    }

    async fn requeue(&self, lease: &Lease, now: DateTime<Utc>) -> Result<bool> {
        self.requeue_impl(lease, now).await
    }

    async fn queue_depth(&self, now: DateTime<Utc>) -> Result<u64> {
        self.queue_depth_impl(now).await
    }

    async fn get_artifact(&self, account: AccountId, id: ArtifactId) -> Result<Option<Artifact>> {
        self.get_artifact_impl(account, id).await
    }

    async fn expired_uploads(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<Upload>> {
        self.expired_uploads_impl(now, limit).await
    }

    async fn expired_artifacts(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<Artifact>> {
        self.expired_artifacts_impl(now, limit).await
    }

    async fn delete_upload(&self, id: UploadId) -> Result<()> {
        self.delete_upload_impl(id).await
    }

    async fn delete_artifact(&self, id: ArtifactId) -> Result<()> {
        self.delete_artifact_impl(id).await
    }

    async fn all_blob_keys(&self) -> Result<Vec<String>> {
        self.all_blob_keys_impl().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connections_are_configured() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db.sqlite"))
            .await
            .unwrap();
        for pool in [&store.write, &store.read] {
            let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
                .fetch_one(pool)
                .await
                .unwrap();
            assert_eq!(mode, "wal");
            let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
                .fetch_one(pool)
                .await
                .unwrap();
            assert_eq!(fk, 1);
            // NORMAL is 1.
            let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
                .fetch_one(pool)
                .await
                .unwrap();
            assert_eq!(sync, 1);
            let busy: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
                .fetch_one(pool)
                .await
                .unwrap();
            assert_eq!(busy, 5000);
        }
        // The read pool cannot write.
        assert!(
            sqlx::query("INSERT INTO accounts (id, name, created_at) VALUES ('x', 'x', 0)")
                .execute(&store.read)
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn queue_queries_use_their_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db.sqlite"))
            .await
            .unwrap();
        let plan = |sql: &'static str| {
            let pool = store.read.clone();
            async move {
                let rows: Vec<(i64, i64, i64, String)> =
                    sqlx::query_as(sql).fetch_all(&pool).await.unwrap();
                rows.into_iter().map(|r| r.3).collect::<Vec<_>>().join("\n")
            }
        };
        let claim = plan(
            "EXPLAIN QUERY PLAN SELECT id FROM jobs WHERE (state = 'queued' AND run_at <= 5) \
             OR (state = 'running' AND lease_expires_at <= 5) ORDER BY run_at, id LIMIT 3",
        )
        .await;
        assert!(claim.contains("jobs_state_run_at"), "{claim}");
        assert!(claim.contains("jobs_state_lease"), "{claim}");
        let list = plan(
            "EXPLAIN QUERY PLAN SELECT id FROM jobs WHERE account_id = 'a' AND id < 'b' \
             ORDER BY id DESC LIMIT 3",
        )
        .await;
        assert!(list.contains("jobs_account_id"), "{list}");
        assert!(!list.contains("TEMP B-TREE"), "{list}");
    }
}
