//! Conversions between records and SQLite values, and the column lists of each table.

use crate::model::*;
use crate::{Result, StoreError};
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;
use std::str::FromStr;
use std::time::Duration;

/// Columns of `jobs` read into a [`Job`], in `SELECT` / `RETURNING` form.
macro_rules! job_columns {
    () => {
        "id, account_id, operation, options, input, output, input_seconds, state, progress, \
         attempt, max_attempts, cancel_requested, error, result, created_at, run_at, started_at, \
         finished_at, parent_id, reserved_seconds"
    };
}
pub(super) use job_columns;

/// Columns of `artifacts` read into an [`Artifact`].
macro_rules! artifact_columns {
    () => {
        "id, account_id, job_id, name, content_type, size, blob_key, created_at, expires_at"
    };
}
pub(super) use artifact_columns;

/// Columns of `uploads` read into an [`Upload`].
macro_rules! upload_columns {
    () => {
        "id, account_id, blob_key, filename, size, sha256, media, created_at, expires_at"
    };
}
pub(super) use upload_columns;

/// Columns of `api_keys` read into a [`KeyRecord`].
macro_rules! key_columns {
    () => {
        "id, account_id, name, display_prefix, hash, created_at, revoked_at, scopes, expires_at"
    };
}
pub(super) use key_columns;

/// A time as stored: unix milliseconds.
pub(super) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// `now + d` in unix milliseconds, saturating.
pub(super) fn ms_after(now: DateTime<Utc>, d: Duration) -> i64 {
    ms(now).saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A size as stored (SQLite integers are signed 64-bit).
pub(super) fn size_value(size: u64) -> Result<i64> {
    i64::try_from(size).map_err(|_| StoreError::Corrupt(format!("size {size} is out of range")))
}

/// A value as stored in a JSON column.
pub(super) fn json<T: Serialize + ?Sized>(value: &T) -> Result<String> {
    serde_json::to_string(value)
        .map_err(|e| StoreError::Corrupt(format!("value cannot be written as JSON: {e}")))
}

fn time(row: &SqliteRow, column: &str) -> Result<DateTime<Utc>> {
    let value: i64 = row.try_get(column)?;
    DateTime::from_timestamp_millis(value)
        .ok_or_else(|| StoreError::Corrupt(format!("{column}: time {value} is out of range")))
}

fn opt_time(row: &SqliteRow, column: &str) -> Result<Option<DateTime<Utc>>> {
    let value: Option<i64> = row.try_get(column)?;
    value
        .map(|v| {
            DateTime::from_timestamp_millis(v)
                .ok_or_else(|| StoreError::Corrupt(format!("{column}: time {v} is out of range")))
        })
        .transpose()
}

/// Parses a TEXT column with `FromStr` (ids, states, operation names).
fn parsed<T: FromStr>(row: &SqliteRow, column: &str) -> Result<T> {
    let text: String = row.try_get(column)?;
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("{column}: cannot parse {text:?}")))
}

fn from_json<T: DeserializeOwned>(row: &SqliteRow, column: &str) -> Result<T> {
    let text: String = row.try_get(column)?;
    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
}

fn opt_from_json<T: DeserializeOwned>(row: &SqliteRow, column: &str) -> Result<Option<T>> {
    let text: Option<String> = row.try_get(column)?;
    text.map(|t| {
        serde_json::from_str(&t).map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
    })
    .transpose()
}

fn unsigned<T: TryFrom<i64>>(row: &SqliteRow, column: &str) -> Result<T> {
    let value: i64 = row.try_get(column)?;
    T::try_from(value)
        .map_err(|_| StoreError::Corrupt(format!("{column}: {value} is out of range")))
}

/// Columns of `accounts` read into an [`Account`].
macro_rules! account_columns {
    () => {
        "id, name, plan, created_at"
    };
}
pub(super) use account_columns;

pub(super) fn account(row: &SqliteRow) -> Result<Account> {
    Ok(Account {
        id: parsed(row, "id")?,
        name: row.try_get("name")?,
        plan: row
            .try_get::<Option<String>, _>("plan")?
            .map(|p| {
                audiomill_core::PlanName::parse(&p)
                    .map_err(|_| StoreError::Corrupt(format!("accounts.plan: {p:?}")))
            })
            .transpose()?,
        created_at: time(row, "created_at")?,
    })
}

pub(super) fn plan(row: &SqliteRow) -> Result<Plan> {
    let name: String = row.try_get("name")?;
    Ok(Plan {
        name: audiomill_core::PlanName::parse(&name)
            .map_err(|_| StoreError::Corrupt(format!("plans.name: {name:?}")))?,
        limits: from_json(row, "limits")?,
        created_at: time(row, "created_at")?,
        updated_at: time(row, "updated_at")?,
    })
}

pub(super) fn key(row: &SqliteRow) -> Result<KeyRecord> {
    Ok(KeyRecord {
        id: parsed(row, "id")?,
        account_id: parsed(row, "account_id")?,
        name: row.try_get("name")?,
        display_prefix: row.try_get("display_prefix")?,
        hash: row.try_get("hash")?,
        created_at: time(row, "created_at")?,
        revoked_at: opt_time(row, "revoked_at")?,
        scopes: from_json(row, "scopes")?,
        expires_at: opt_time(row, "expires_at")?,
    })
}

pub(super) fn upload(row: &SqliteRow) -> Result<Upload> {
    Ok(Upload {
        id: parsed(row, "id")?,
        account_id: parsed(row, "account_id")?,
        blob_key: row.try_get("blob_key")?,
        filename: row.try_get("filename")?,
        size: unsigned(row, "size")?,
        sha256: row.try_get("sha256")?,
        media: from_json(row, "media")?,
        created_at: time(row, "created_at")?,
        expires_at: time(row, "expires_at")?,
    })
}

pub(super) fn artifact(row: &SqliteRow) -> Result<Artifact> {
    Ok(Artifact {
        id: parsed(row, "id")?,
        account_id: parsed(row, "account_id")?,
        job_id: parsed(row, "job_id")?,
        name: row.try_get("name")?,
        content_type: row.try_get("content_type")?,
        size: unsigned(row, "size")?,
        blob_key: row.try_get("blob_key")?,
        created_at: time(row, "created_at")?,
        expires_at: time(row, "expires_at")?,
    })
}

/// A job without its artifacts (loaded separately).
pub(super) fn job(row: &SqliteRow) -> Result<Job> {
    Ok(Job {
        id: parsed(row, "id")?,
        account_id: parsed(row, "account_id")?,
        operation: parsed(row, "operation")?,
        options: from_json(row, "options")?,
        input: from_json(row, "input")?,
        output: from_json(row, "output")?,
        input_seconds: row.try_get("input_seconds")?,
        state: parsed(row, "state")?,
        progress: row.try_get("progress")?,
        attempt: unsigned(row, "attempt")?,
        max_attempts: unsigned(row, "max_attempts")?,
        cancel_requested: row.try_get("cancel_requested")?,
        error: opt_from_json(row, "error")?,
        result: opt_from_json(row, "result")?,
        created_at: time(row, "created_at")?,
        run_at: time(row, "run_at")?,
        started_at: opt_time(row, "started_at")?,
        finished_at: opt_time(row, "finished_at")?,
        parent_id: row
            .try_get::<Option<String>, _>("parent_id")?
            .map(|id| {
                id.parse()
                    .map_err(|_| StoreError::Corrupt(format!("parent_id: cannot parse {id:?}")))
            })
            .transpose()?,
        reserved_seconds: row.try_get("reserved_seconds")?,
        artifacts: Vec::new(),
    })
}
