//! The jobs role ([`JobStore`]) on SQLite, and the row helpers the queue shares.

use super::rows::{self, artifact_columns, job_columns, json, ms};
use super::{SqliteStore, BEGIN_IMMEDIATE};
use crate::model::*;
use crate::{JobStore, Result, StoreError};
use async_trait::async_trait;
use audiomill_core::{AccountId, JobId, JobState};
use chrono::Utc;
use sqlx::SqliteConnection;
use std::collections::HashMap;

/// How many times `insert_job` starts over after losing an idempotency-key race.
const INSERT_ATTEMPTS: usize = 3;

/// Loads the artifacts of `jobs` in one query and attaches them, oldest first.
pub(super) async fn attach_artifacts(conn: &mut SqliteConnection, jobs: &mut [Job]) -> Result<()> {
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
pub(super) async fn insert_row(conn: &mut SqliteConnection, job: &NewJob) -> Result<()> {
    let reservation = job.reservation.as_ref();
    sqlx::query(
        "INSERT INTO jobs (id, account_id, operation, options, input, output, input_seconds, \
         state, progress, attempt, max_attempts, cancel_requested, created_at, run_at, \
         parent_id, usage_period, reserved_seconds, holds_slot) \
         VALUES (?, ?, ?, ?, ?, ?, ?, 'queued', 0, 0, ?, 0, ?, ?, ?, ?, ?, ?)",
    )
    .bind(job.id.to_string())
    .bind(job.account_id.to_string())
    .bind(job.operation.kind().as_str())
    .bind(json(&job.operation.options_json())?)
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
pub(super) async fn reserve(
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

#[async_trait]
impl JobStore for SqliteStore {
    async fn insert_job(&self, job: NewJob, idempotency: Option<Idempotency>) -> Result<InsertJob> {
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

    async fn get_job(&self, account: AccountId, id: JobId) -> Result<Option<Job>> {
        // One snapshot for the job and its artifacts.
        let mut tx = self.read.begin().await?;
        let job = fetch_job(&mut tx, account, id).await?;
        tx.commit().await?;
        Ok(job)
    }

    async fn list_jobs(
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

    async fn request_cancel(&self, account: AccountId, id: JobId) -> Result<CancelOutcome> {
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

    async fn delete_job(
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
}
