//! Jobs and the queue.

use super::rows::{self, artifact_columns, job_columns, json, ms, ms_after, size_value};
use super::{SqliteStore, BEGIN_IMMEDIATE};
use crate::model::*;
use crate::{Result, StoreError};
use audiomill_core::{AccountId, ErrorCode, JobError, JobId, JobState};
use chrono::{DateTime, Utc};
use sqlx::SqliteConnection;
use std::collections::HashMap;
use std::time::Duration;

/// The message of a job failed because its lease expired once too often.
const CRASHED_MESSAGE: &str = "the job's worker stopped responding too many times";

/// How many times `insert_job` starts over after losing an idempotency-key race.
const INSERT_ATTEMPTS: usize = 3;

/// The `WHERE` clause fencing a worker's write on its lease; binds id, owner, attempt.
macro_rules! fenced {
    () => {
        " WHERE id = ? AND lease_owner = ? AND attempt = ? AND state = 'running'"
    };
}

/// Binds the three fields of `fenced!()`, in its order.
fn bind_lease<'q>(
    query: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
    lease: &'q Lease,
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>> {
    query
        .bind(lease.job_id.to_string())
        .bind(lease.owner.as_str())
        .bind(i64::from(lease.attempt))
}

/// Runs a fenced `UPDATE … RETURNING account_id` and returns the job's account, or `None` when
/// the lease is no longer held (nothing was updated).
async fn fenced_account<'q>(
    query: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
    lease: &'q Lease,
    conn: &mut SqliteConnection,
) -> Result<Option<String>> {
    Ok(bind_lease(query, lease)
        .fetch_optional(&mut *conn)
        .await?
        .map(|row| sqlx::Row::try_get(&row, 0))
        .transpose()?)
}

/// Loads the artifacts of `jobs` in one query and attaches them, oldest first.
async fn attach_artifacts(conn: &mut SqliteConnection, jobs: &mut [Job]) -> Result<()> {
    if jobs.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = jobs.iter().map(|j| j.id.to_string()).collect();
    let found = sqlx::query(concat!(
        "SELECT ",
        artifact_columns!(),
        " FROM artifacts WHERE job_id IN (SELECT value FROM json_each(?)) \
          ORDER BY created_at, id"
    ))
    .bind(json(&ids)?)
    .fetch_all(&mut *conn)
    .await?;
    let mut by_job: HashMap<JobId, Vec<Artifact>> = HashMap::new();
    for row in &found {
        let artifact = rows::artifact(row)?;
        by_job.entry(artifact.job_id).or_default().push(artifact);
    }
    for job in jobs {
        job.artifacts = by_job.remove(&job.id).unwrap_or_default();
    }
    Ok(())
}

/// An account's job with its artifacts.
async fn fetch_job(
    conn: &mut SqliteConnection,
    account: AccountId,
    id: JobId,
) -> Result<Option<Job>> {
    let Some(row) = sqlx::query(concat!(
        "SELECT ",
        job_columns!(),
        " FROM jobs WHERE id = ? AND account_id = ?"
    ))
    .bind(id.to_string())
    .bind(account.to_string())
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(None);
    };
    let mut job = [rows::job(&row)?];
    attach_artifacts(conn, &mut job).await?;
    let [job] = job;
    Ok(Some(job))
}

/// A job read back right after this transaction wrote it.
async fn fetch_written(conn: &mut SqliteConnection, account: AccountId, id: JobId) -> Result<Job> {
    fetch_job(conn, account, id)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("job {id} vanished inside its transaction")))
}

/// Inserts a new job row, queued.
async fn insert_row(conn: &mut SqliteConnection, job: &NewJob) -> Result<()> {
    let reservation = job.reservation.as_ref();
    sqlx::query(
        "INSERT INTO jobs (id, account_id, operation, options, input, output, input_seconds, \
         state, progress, attempt, max_attempts, cancel_requested, created_at, run_at, \
         parent_id, usage_period, reserved_seconds, holds_slot) \
         VALUES (?, ?, ?, ?, ?, ?, ?, 'queued', 0, 0, ?, 0, ?, ?, ?, ?, ?, ?)",
    )
    .bind(job.id.to_string())
    .bind(job.account_id.to_string())
    .bind(job.operation.as_str())
    .bind(json(&job.options)?)
    .bind(json(&job.input)?)
    .bind(json(&job.output)?)
    .bind(job.input_seconds)
    .bind(i64::from(job.max_attempts))
    .bind(ms(job.created_at))
    .bind(ms(job.created_at))
    .bind(job.parent_id.map(|id| id.to_string()))
    .bind(reservation.map(|r| r.period.as_str()))
    .bind(reservation.map_or(0.0, |r| r.seconds))
    .bind(reservation.is_some_and(|r| r.concurrent_jobs.is_some()))
    .execute(&mut *conn)
    .await
    .map_err(super::conflict("job"))?;
    Ok(())
}

/// Takes a job's reservation from its account, or says why it does not fit. Both checks are
/// guarded updates (`… WHERE active_jobs < limit`, `… WHERE used + reserved + seconds <=
/// quota`), so two transactions can never both take the last slot or the last seconds; the
/// caller rolls back on a refusal, which gives back anything taken here.
async fn reserve(
    conn: &mut SqliteConnection,
    account: AccountId,
    reservation: &Reservation,
) -> Result<Option<InsertJob>> {
    if let Some(limit) = reservation.concurrent_jobs {
        let took = sqlx::query(
            "UPDATE accounts SET active_jobs = active_jobs + 1 WHERE id = ? AND active_jobs < ?",
        )
        .bind(account.to_string())
        .bind(i64::from(limit))
        .execute(&mut *conn)
        .await?;
        if took.rows_affected() == 0 {
            return Ok(Some(InsertJob::TooManyActiveJobs));
        }
    }
    sqlx::query(
        "INSERT INTO usage (account_id, period) VALUES (?, ?) \
         ON CONFLICT (account_id, period) DO NOTHING",
    )
    .bind(account.to_string())
    .bind(&reservation.period)
    .execute(&mut *conn)
    .await?;
    let quota = i64::try_from(reservation.quota_seconds).unwrap_or(i64::MAX) as f64;
    let took = sqlx::query(
        "UPDATE usage SET reserved_seconds = reserved_seconds + ?1 \
         WHERE account_id = ?2 AND period = ?3 AND used_seconds + reserved_seconds + ?1 <= ?4",
    )
    .bind(reservation.seconds)
    .bind(account.to_string())
    .bind(&reservation.period)
    .bind(quota)
    .execute(&mut *conn)
    .await?;
    if took.rows_affected() == 0 {
        let (used, reserved): (f64, f64) = sqlx::query_as(
            "SELECT used_seconds, reserved_seconds FROM usage WHERE account_id = ? AND period = ?",
        )
        .bind(account.to_string())
        .bind(&reservation.period)
        .fetch_one(&mut *conn)
        .await?;
        return Ok(Some(InsertJob::QuotaExceeded { used, reserved }));
    }
    Ok(None)
}

/// The lease owner of a playlist job waiting for its children (see `0002_playlists.sql`).
const CHILDREN_OWNER: &str = "children";
/// Its lease's expiry: never (the end of year 9999).
const NEVER_MS: i64 = 253_402_300_799_999;

impl SqliteStore {
    pub(super) async fn insert_job_impl(
        &self,
        job: NewJob,
        idempotency: Option<Idempotency>,
    ) -> Result<InsertJob> {
        // `BEGIN IMMEDIATE` serializes writers, so the look-up and the insert cannot interleave
        // with another submission. Should the idempotency insert still find the key taken (a
        // writer that does not take the lock first), start over: the look-up then sees it.
        for _ in 0..INSERT_ATTEMPTS {
            let mut tx = self.write.begin_with(BEGIN_IMMEDIATE).await?;
            if let Some(idem) = &idempotency {
                let previous: Option<(String, String)> = sqlx::query_as(
                    "SELECT request_hash, job_id FROM idempotency_keys \
                     WHERE account_id = ? AND key = ?",
                )
                .bind(job.account_id.to_string())
                .bind(&idem.key)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some((hash, job_id)) = previous {
                    let outcome = if hash == idem.request_hash {
                        let id = job_id.parse().map_err(|_| {
                            StoreError::Corrupt(format!("idempotency_keys.job_id: {job_id:?}"))
                        })?;
                        InsertJob::Existing(fetch_written(&mut tx, job.account_id, id).await?)
                    } else {
                        InsertJob::IdempotencyMismatch
                    };
                    tx.rollback().await?;
                    return Ok(outcome);
                }
            }

            if let Some(reservation) = &job.reservation {
                if let Some(refused) = reserve(&mut tx, job.account_id, reservation).await? {
                    tx.rollback().await?;
                    return Ok(refused);
                }
            }
            insert_row(&mut tx, &job).await?;

            if let Some(idem) = &idempotency {
                let inserted = sqlx::query(
                    "INSERT INTO idempotency_keys (account_id, key, request_hash, job_id, \
                     created_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (account_id, key) DO NOTHING",
                )
                .bind(job.account_id.to_string())
                .bind(&idem.key)
                .bind(&idem.request_hash)
                .bind(job.id.to_string())
                .bind(ms(job.created_at))
                .execute(&mut *tx)
                .await?;
                if inserted.rows_affected() == 0 {
                    tx.rollback().await?;
                    continue;
                }
            }

            let created = fetch_written(&mut tx, job.account_id, job.id).await?;
            tx.commit().await?;
            return Ok(InsertJob::Created(created));
        }
        Err(StoreError::Conflict("idempotency key"))
    }

    pub(super) async fn get_job_impl(&self, account: AccountId, id: JobId) -> Result<Option<Job>> {
        // One snapshot for the job and its artifacts.
        let mut tx = self.read.begin().await?;
        let job = fetch_job(&mut tx, account, id).await?;
        tx.commit().await?;
        Ok(job)
    }

    pub(super) async fn list_jobs_impl(
        &self,
        account: AccountId,
        filter: JobFilter,
        page: Page,
    ) -> Result<Vec<Job>> {
        if page.limit == 0 {
            return Ok(Vec::new());
        }
        // One static statement per combination, so that SQLite sees plain constraints it can
        // use the (account_id, id) index for.
        let sql = match (page.before.is_some(), filter.state.is_some()) {
            (false, false) => concat!(
                "SELECT ",
                job_columns!(),
                " FROM jobs WHERE account_id = ? ORDER BY id DESC LIMIT ?"
            ),
            (true, false) => concat!(
                "SELECT ",
                job_columns!(),
                " FROM jobs WHERE account_id = ? AND id < ? ORDER BY id DESC LIMIT ?"
            ),
            (false, true) => concat!(
                "SELECT ",
                job_columns!(),
                " FROM jobs WHERE account_id = ? AND state = ? ORDER BY id DESC LIMIT ?"
            ),
            (true, true) => concat!(
                "SELECT ",
                job_columns!(),
                " FROM jobs WHERE account_id = ? AND id < ? AND state = ? \
                  ORDER BY id DESC LIMIT ?"
            ),
        };
        let mut query = sqlx::query(sql).bind(account.to_string());
        if let Some(before) = page.before {
            query = query.bind(before.to_string());
        }
        if let Some(state) = filter.state {
            query = query.bind(state.as_str());
        }
        query = query.bind(i64::from(page.limit));

        let mut tx = self.read.begin().await?;
        let mut jobs = query
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(rows::job)
            .collect::<Result<Vec<_>>>()?;
        attach_artifacts(&mut tx, &mut jobs).await?;
        tx.commit().await?;
        Ok(jobs)
    }

    pub(super) async fn request_cancel_impl(
        &self,
        account: AccountId,
        id: JobId,
    ) -> Result<CancelOutcome> {
        let now = ms(Utc::now());
        let mut tx = self.write.begin_with(BEGIN_IMMEDIATE).await?;
        let state: Option<String> =
            sqlx::query_scalar("SELECT state FROM jobs WHERE id = ? AND account_id = ?")
                .bind(id.to_string())
                .bind(account.to_string())
                .fetch_optional(&mut *tx)
                .await?;
        let Some(state) = state else {
            tx.rollback().await?;
            return Ok(CancelOutcome::NotFound);
        };
        let state: JobState = state
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("jobs.state: {state:?}")))?;
        let outcome = match state {
            JobState::Queued => {
                sqlx::query(
                    "UPDATE jobs SET state = 'canceled', cancel_requested = 1, finished_at = ? \
                     WHERE id = ?",
                )
                .bind(now)
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
                CancelOutcome::Canceled
            }
            JobState::Running => {
                sqlx::query("UPDATE jobs SET cancel_requested = 1 WHERE id = ?")
                    .bind(id.to_string())
                    .execute(&mut *tx)
                    .await?;
                // A playlist's items go with it: queued ones end now, running ones are asked
                // to stop; the last one to end settles the parent as canceled.
                sqlx::query(
                    "UPDATE jobs SET cancel_requested = 1, \
                       state = CASE WHEN state = 'queued' THEN 'canceled' ELSE state END, \
                       finished_at = CASE WHEN state = 'queued' THEN ?1 ELSE finished_at END \
                     WHERE parent_id = ?2 AND state IN ('queued', 'running')",
                )
                .bind(now)
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
                CancelOutcome::Requested
            }
            _ => CancelOutcome::AlreadyFinished,
        };
        let job = fetch_written(&mut tx, account, id).await?;
        tx.commit().await?;
        Ok(outcome(job))
    }

    pub(super) async fn delete_job_impl(
        &self,
        account: AccountId,
        id: JobId,
    ) -> Result<Option<Result<Vec<Artifact>, JobState>>> {
        let mut tx = self.write.begin_with(BEGIN_IMMEDIATE).await?;
        let state: Option<String> =
            sqlx::query_scalar("SELECT state FROM jobs WHERE id = ? AND account_id = ?")
                .bind(id.to_string())
                .bind(account.to_string())
                .fetch_optional(&mut *tx)
                .await?;
        let Some(state) = state else {
            tx.rollback().await?;
            return Ok(None);
        };
        let state: JobState = state
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("jobs.state: {state:?}")))?;
        if !state.is_terminal() {
            tx.rollback().await?;
            return Ok(Some(Err(state)));
        }
        let artifacts = sqlx::query(concat!(
            "DELETE FROM artifacts WHERE job_id = ? RETURNING ",
            artifact_columns!()
        ))
        .bind(id.to_string())
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(rows::artifact)
        .collect::<Result<Vec<_>>>()?;
        sqlx::query("DELETE FROM idempotency_keys WHERE job_id = ?")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM jobs WHERE id = ?")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(Ok(artifacts)))
    }

    pub(super) async fn claim_jobs_impl(
        &self,
        owner: &str,
        limit: u32,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Vec<ClaimedJob>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let now_ms = ms(now);
        let mut tx = self.write.begin_with(BEGIN_IMMEDIATE).await?;

        // Jobs whose cancel was requested end here rather than run (again): queued ones (a
        // running job flagged and then requeued) and those whose worker died.
        sqlx::query(
            "UPDATE jobs SET state = 'canceled', finished_at = ?1, lease_owner = NULL, \
             lease_expires_at = NULL \
             WHERE cancel_requested = 1 \
               AND (state = 'queued' OR (state = 'running' AND lease_expires_at <= ?1))",
        )
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;

        // Jobs whose worker died on their last allowed attempt fail for good.
        sqlx::query(
            "UPDATE jobs SET state = 'failed', finished_at = ?1, error = ?2, lease_owner = NULL, \
             lease_expires_at = NULL \
             WHERE state = 'running' AND lease_expires_at <= ?1 AND attempt >= max_attempts",
        )
        .bind(now_ms)
        .bind(json(&JobError::new(
            ErrorCode::WorkerCrashed,
            CRASHED_MESSAGE,
        ))?)
        .execute(&mut *tx)
        .await?;

        let claimed = sqlx::query(concat!(
            "UPDATE jobs SET state = 'running', lease_owner = ?1, lease_expires_at = ?2, \
             attempt = attempt + 1, started_at = ?3, progress = 0 \
             WHERE id IN (SELECT id FROM jobs \
                          WHERE (state = 'queued' AND run_at <= ?3) \
                             OR (state = 'running' AND lease_expires_at <= ?3) \
                          ORDER BY run_at, id LIMIT ?4) \
             RETURNING ",
            job_columns!()
        ))
        .bind(owner)
        .bind(ms_after(now, lease))
        .bind(now_ms)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        let mut jobs = claimed.iter().map(rows::job).collect::<Result<Vec<_>>>()?;
        // RETURNING gives no order; hand jobs out in queue order.
        jobs.sort_by_key(|job| (job.run_at, job.id));
        attach_artifacts(&mut tx, &mut jobs).await?;
        tx.commit().await?;

        Ok(jobs
            .into_iter()
            .map(|job| ClaimedJob {
                lease: Lease {
                    job_id: job.id,
                    owner: owner.to_owned(),
                    attempt: job.attempt,
                },
                job,
            })
            .collect())
    }

    pub(super) async fn heartbeat_impl(
        &self,
        lease: &Lease,
        extend: Duration,
        progress: Option<f64>,
        now: DateTime<Utc>,
    ) -> Result<Heartbeat> {
        let progress = progress
            .filter(|p| p.is_finite())
            .map(|p| p.clamp(0.0, 1.0));
        let query = sqlx::query(concat!(
            "UPDATE jobs SET lease_expires_at = ?, progress = COALESCE(?, progress)",
            fenced!(),
            " RETURNING cancel_requested"
        ))
        .bind(ms_after(now, extend))
        .bind(progress);
        let cancel: Option<bool> = bind_lease(query, lease)
            .fetch_optional(&self.write)
            .await?
            .map(|row| sqlx::Row::try_get(&row, 0))
            .transpose()?;
        Ok(match cancel {
            Some(cancel_requested) => Heartbeat::Held { cancel_requested },
            None => Heartbeat::Lost,
        })
    }

    pub(super) async fn succeed_job_impl(
        &self,
        lease: &Lease,
        artifacts: &[Artifact],
        result: Option<serde_json::Value>,
        charged_seconds: f64,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let result = result.as_ref().map(json).transpose()?;
        let charged = if charged_seconds.is_finite() {
            charged_seconds.max(0.0)
        } else {
            0.0
        };
        let mut tx = self.write.begin_with(BEGIN_IMMEDIATE).await?;
        // `charged_seconds` is read by the settlement trigger as the state changes.
        let query = sqlx::query(concat!(
            "UPDATE jobs SET state = 'succeeded', progress = 1, finished_at = ?, result = ?, \
             charged_seconds = ?, error = NULL, lease_owner = NULL, lease_expires_at = NULL",
            fenced!(),
            " RETURNING account_id"
        ))
        .bind(ms(now))
        .bind(result)
        .bind(charged);
        let Some(account) = fenced_account(query, lease, &mut tx).await? else {
            tx.rollback().await?;
            return Ok(false);
        };
        for artifact in artifacts {
            if artifact.job_id != lease.job_id || artifact.account_id.to_string() != account {
                tracing::warn!(
                    artifact = %artifact.id,
                    job = %lease.job_id,
                    "artifact record names another job or account; storing it under the job's"
                );
            }
            // The owner and job come from the job row, not the record: an artifact can only
            // ever be visible to the account that ran the job.
            sqlx::query(concat!(
                "INSERT INTO artifacts (",
                artifact_columns!(),
                ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
            ))
            .bind(artifact.id.to_string())
            .bind(&account)
            .bind(lease.job_id.to_string())
            .bind(&artifact.name)
            .bind(&artifact.content_type)
            .bind(size_value(artifact.size)?)
            .bind(&artifact.blob_key)
            .bind(ms(artifact.created_at))
            .bind(ms(artifact.expires_at))
            .execute(&mut *tx)
            .await
            .map_err(super::conflict("artifact"))?;
        }
        tx.commit().await?;
        Ok(true)
    }

    pub(super) async fn expand_job_impl(
        &self,
        lease: &Lease,
        children: &[NewJob],
        result: serde_json::Value,
    ) -> Result<bool> {
        let mut tx = self.write.begin_with(BEGIN_IMMEDIATE).await?;
        let query = sqlx::query(concat!(
            "UPDATE jobs SET lease_owner = ?, lease_expires_at = ?, progress = 0, result = ?",
            fenced!(),
            " RETURNING account_id"
        ))
        .bind(CHILDREN_OWNER)
        .bind(NEVER_MS)
        .bind(json(&result)?);
        let Some(account) = fenced_account(query, lease, &mut tx).await? else {
            tx.rollback().await?;
            return Ok(false);
        };
        // The parent's own estimate gives way to its items' reservations.
        sqlx::query(
            "UPDATE usage SET reserved_seconds = MAX(0, reserved_seconds - \
               (SELECT reserved_seconds FROM jobs WHERE id = ?1)) \
             WHERE account_id = ?2 \
               AND period = (SELECT usage_period FROM jobs WHERE id = ?1)",
        )
        .bind(lease.job_id.to_string())
        .bind(&account)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE jobs SET reserved_seconds = 0 WHERE id = ?")
            .bind(lease.job_id.to_string())
            .execute(&mut *tx)
            .await?;
        for child in children {
            if child.account_id.to_string() != account || child.parent_id != Some(lease.job_id) {
                tx.rollback().await?;
                return Err(StoreError::Corrupt(format!(
                    "child job {} does not belong to job {}",
                    child.id, lease.job_id
                )));
            }
            let refused = match &child.reservation {
                Some(reservation) => reserve(&mut tx, child.account_id, reservation).await?,
                None => None,
            };
            if refused.is_none() {
                insert_row(&mut tx, child).await?;
                continue;
            }
            // An item the quota cannot hold is recorded as failed, so the playlist shows it;
            // the update (not the insert) lets the trigger count it for the parent.
            let unreserved = NewJob {
                reservation: None,
                ..child.clone()
            };
            insert_row(&mut tx, &unreserved).await?;
            sqlx::query(
                "UPDATE jobs SET state = 'failed', finished_at = ?, error = ? WHERE id = ?",
            )
            .bind(ms(Utc::now()))
            .bind(json(&JobError::new(
                ErrorCode::QuotaExceeded,
                "the plan's audio seconds for this month do not cover this item",
            ))?)
            .bind(child.id.to_string())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    pub(super) async fn fail_job_impl(
        &self,
        lease: &Lease,
        error: &JobError,
        retry_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        // A retry needs `retry_at`, an attempt left, and no cancel request (a cancel turns the
        // planned retry into `canceled`). SET expressions see the row as it was.
        let query = sqlx::query(
            "UPDATE jobs SET \
               state = CASE WHEN ?1 IS NULL OR attempt >= max_attempts THEN 'failed' \
                            WHEN cancel_requested = 1 THEN 'canceled' \
                            ELSE 'queued' END, \
               run_at = CASE WHEN ?1 IS NULL OR attempt >= max_attempts OR cancel_requested = 1 \
                             THEN run_at ELSE ?1 END, \
               finished_at = CASE WHEN ?1 IS NULL OR attempt >= max_attempts \
                                       OR cancel_requested = 1 \
                                  THEN ?2 ELSE NULL END, \
               error = ?3, lease_owner = NULL, lease_expires_at = NULL \
             WHERE id = ?4 AND lease_owner = ?5 AND attempt = ?6 AND state = 'running'",
        )
        .bind(retry_at.map(ms))
        .bind(ms(now))
        .bind(json(error)?);
        let done = bind_lease(query, lease).execute(&self.write).await?;
        Ok(done.rows_affected() == 1)
    }

    pub(super) async fn cancel_running_impl(
        &self,
        lease: &Lease,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let query = sqlx::query(concat!(
            "UPDATE jobs SET state = 'canceled', finished_at = ?, lease_owner = NULL, \
             lease_expires_at = NULL",
            fenced!()
        ))
        .bind(ms(now));
        let done = bind_lease(query, lease).execute(&self.write).await?;
        Ok(done.rows_affected() == 1)
    }

    pub(super) async fn requeue_impl(&self, lease: &Lease, now: DateTime<Utc>) -> Result<bool> {
        // The attempt is given back. A job whose cancel was requested is canceled instead.
        let query = sqlx::query(
            "UPDATE jobs SET \
               state = CASE WHEN cancel_requested = 1 THEN 'canceled' ELSE 'queued' END, \
               finished_at = CASE WHEN cancel_requested = 1 THEN ?1 ELSE NULL END, \
               run_at = ?1, attempt = attempt - 1, progress = 0, \
               lease_owner = NULL, lease_expires_at = NULL \
             WHERE id = ?2 AND lease_owner = ?3 AND attempt = ?4 AND state = 'running'",
        )
        .bind(ms(now));
        let done = bind_lease(query, lease).execute(&self.write).await?;
        Ok(done.rows_affected() == 1)
    }

    pub(super) async fn queue_depth_impl(&self, now: DateTime<Utc>) -> Result<u64> {
        let count: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE state = 'queued' AND run_at <= ?")
                .bind(ms(now))
                .fetch_one(&self.read)
                .await?;
        Ok(u64::try_from(count).unwrap_or(0))
    }
}
