//! The queue role ([`QueueStore`]) on SQLite: claims, heartbeats and fenced writes.

use super::jobs::{attach_artifacts, insert_row, reserve};
use super::rows::{self, artifact_columns, job_columns, json, ms, ms_after, size_value};
use super::{SqliteStore, BEGIN_IMMEDIATE};
use crate::model::*;
use crate::{QueueStore, Result, StoreError};
use async_trait::async_trait;
use audiomill_core::{ErrorCode, JobError};
use chrono::{DateTime, Utc};
use sqlx::SqliteConnection;
use std::time::Duration;

/// The message of a job failed because its lease expired once too often.
const CRASHED_MESSAGE: &str = "the job's worker stopped responding too many times";

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

/// The lease owner of a playlist job waiting for its children (see `0002_playlists.sql`).
const CHILDREN_OWNER: &str = "children";
/// Its lease's expiry: never (the end of year 9999).
const NEVER_MS: i64 = 253_402_300_799_999;

#[async_trait]
impl QueueStore for SqliteStore {
    async fn claim_jobs(
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

    async fn heartbeat(
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

    async fn succeed_job(
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

    async fn expand_job(
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

    async fn fail_job(
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

    async fn cancel_running(&self, lease: &Lease, now: DateTime<Utc>) -> Result<bool> {
        let query = sqlx::query(concat!(
            "UPDATE jobs SET state = 'canceled', finished_at = ?, lease_owner = NULL, \
             lease_expires_at = NULL",
            fenced!()
        ))
        .bind(ms(now));
        let done = bind_lease(query, lease).execute(&self.write).await?;
        Ok(done.rows_affected() == 1)
    }

    async fn requeue(&self, lease: &Lease, now: DateTime<Utc>) -> Result<bool> {
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

    async fn queue_depth(&self, now: DateTime<Utc>) -> Result<u64> {
        let count: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE state = 'queued' AND run_at <= ?")
                .bind(ms(now))
                .fetch_one(&self.read)
                .await?;
        Ok(u64::try_from(count).unwrap_or(0))
    }
}
