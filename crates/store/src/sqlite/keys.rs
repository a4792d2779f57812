//! The keys role ([`KeyStore`]) on SQLite.

use super::rows::{self, key_columns, ms};
use super::{conflict, SqliteStore};
use crate::model::*;
use crate::{KeyStore, Result};
use async_trait::async_trait;
use audiomill_core::KeyId;
use chrono::{DateTime, Utc};

#[async_trait]
impl KeyStore for SqliteStore {
    async fn insert_key(&self, key: &KeyRecord) -> Result<()> {
        sqlx::query(concat!(
            "INSERT INTO api_keys (",
            key_columns!(),
            ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ))
        .bind(key.id.to_string())
        .bind(key.account_id.to_string())
        .bind(&key.name)
        .bind(&key.display_prefix)
        .bind(&key.hash)
        .bind(ms(key.created_at))
        .bind(key.revoked_at.map(ms))
        .bind(rows::json(&key.scopes)?)
        .bind(key.expires_at.map(ms))
        .execute(&self.write)
        .await
        .map_err(conflict("key"))?;
        Ok(())
    }

    async fn key_by_hash(&self, hash: &str) -> Result<Option<KeyRecord>> {
        sqlx::query(concat!(
            "SELECT ",
            key_columns!(),
            " FROM api_keys WHERE hash = ?"
        ))
        .bind(hash)
        .fetch_optional(&self.read)
        .await?
        .map(|row| rows::key(&row))
        .transpose()
    }

    async fn list_keys(&self) -> Result<Vec<KeyRecord>> {
        sqlx::query(concat!(
            "SELECT ",
            key_columns!(),
            " FROM api_keys ORDER BY created_at, id"
        ))
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(rows::key)
        .collect()
    }

    async fn revoke_key(&self, id: KeyId, at: DateTime<Utc>) -> Result<bool> {
        let done =
            sqlx::query("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
                .bind(ms(at))
                .bind(id.to_string())
                .execute(&self.write)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn expire_key(&self, id: KeyId, at: DateTime<Utc>) -> Result<bool> {
        let done = sqlx::query("UPDATE api_keys SET expires_at = ? WHERE id = ?")
            .bind(ms(at))
            .bind(id.to_string())
            .execute(&self.write)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn count_active_keys(&self) -> Result<u64> {
        let count: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM api_keys WHERE revoked_at IS NULL")
                .fetch_one(&self.read)
                .await?;
        Ok(u64::try_from(count).unwrap_or(0))
    }
}
