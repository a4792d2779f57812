//! The SQLite implementation of [`Store`].
//!
//! SQLite has one writer. Every write goes through `write`, a pool of exactly one connection, and
//! every multi-statement write runs in a `BEGIN IMMEDIATE` transaction, which takes the write lock
//! up front: a deferred transaction that reads and then writes can fail with `SQLITE_BUSY` when
//! another connection (another process, e.g. the CLI) wrote in between, and `busy_timeout` cannot
//! help with that. Reads go through `read`, a pool of read-only connections that WAL lets run
//! beside the writer.

mod accounts;
mod files;
mod jobs;
mod keys;
mod queue;
mod rows;

use crate::{Result, Store, StoreError};
use async_trait::async_trait;
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
