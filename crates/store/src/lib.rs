//! Persistence for audiomill behind one interface, [`Store`], made of one trait per role.
//!
//! Owns: accounts, plans and usage ([`AccountStore`]), API key records ([`KeyStore`]), uploads,
//! artifacts and retention ([`FileStore`]), jobs as clients see them ([`JobStore`]) and the
//! queue workers run ([`QueueStore`]: the jobs table *is* the queue — claims with leases,
//! heartbeats, fenced completion, retry with `run_at`). Main types: [`Store`], [`SqliteStore`],
//! the records in [`model`].
//!
//! Each backend implements each role in a file of its own (`sqlite/accounts.rs`, …): a new
//! backend is one file per role, and a caller that needs one role can ask for just it.
//!
//! Leaves to others: deciding *what* to retry and when (the worker computes backoff and passes
//! `retry_at`), storing bytes (the `blob` crate), HTTP. Must not depend on the server, the worker
//! or the engines.
//!
//! Why one trait and per-dialect SQL rather than `sqlx::Any`: PostgreSQL will claim with
//! `FOR UPDATE SKIP LOCKED` and wake workers with `LISTEN/NOTIFY`, SQLite claims in a single
//! `UPDATE … RETURNING` under its one writer; the state machine and its fencing rules are the same
//! and are written down here, on the trait, so both implementations honour them.

mod accounts;
mod files;
mod jobs;
mod keys;
pub mod model;
mod queue;
mod sqlite;

pub use accounts::AccountStore;
pub use files::FileStore;
pub use jobs::JobStore;
pub use keys::KeyStore;
pub use model::*;
pub use queue::QueueStore;
pub use sqlite::SqliteStore;

use async_trait::async_trait;

/// An error of the storage layer. Its text may hold SQL detail: log it, never return it to a
/// client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database failed or refused the operation.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Migrations could not be applied.
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A row held a value this version cannot read (a bug or a hand-edited database).
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// A uniqueness rule was broken (e.g. an account name already taken).
    #[error("{0} already exists")]
    Conflict(&'static str),
    /// A row the operation needs does not exist (e.g. the plan an account is put on).
    #[error("{0} not found")]
    NotFound(&'static str),
}

/// Result of the storage layer.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The whole storage interface: every role, on one database. Every method is one transaction.
/// Times are stored with millisecond precision.
#[async_trait]
pub trait Store: AccountStore + KeyStore + FileStore + JobStore + QueueStore {
    /// Checks that the database answers.
    async fn ping(&self) -> Result<()>;
}
