//! Accounts and API keys.

use super::plans::ensure_plan_row;
use super::rows::{self, account_columns, key_columns, ms};
use super::{conflict, SqliteStore, BEGIN_IMMEDIATE};
use crate::model::*;
use crate::Result;
use audiomill_core::{AccountId, KeyId, PlanName};
use chrono::{DateTime, Utc};

impl SqliteStore {
    pub(super) async fn create_account_impl(
        &self,
        name: &str,
        plan: Option<&PlanName>,
    ) -> Result<Account> {
        let mut tx = self.write.begin_with(BEGIN_IMMEDIATE).await?;
        // The default plan needs no row; any other must exist.
        let plan = plan.filter(|p| p.as_str() != PlanName::DEFAULT);
        if let Some(plan) = plan {
            ensure_plan_row(&mut tx, plan).await?;
        }
        let row = sqlx::query(concat!(
            "INSERT INTO accounts (id, name, plan, created_at) VALUES (?, ?, ?, ?) RETURNING ",
            account_columns!()
        ))
        .bind(AccountId::new().to_string())
        .bind(name)
        .bind(plan.map(PlanName::as_str))
        .bind(ms(Utc::now()))
        .fetch_one(&mut *tx)
        .await
        .map_err(conflict("account"))?;
        let account = rows::account(&row)?;
        tx.commit().await?;
        Ok(account)
    }

    pub(super) async fn account_by_name_impl(&self, name: &str) -> Result<Option<Account>> {
        sqlx::query(concat!(
            "SELECT ",
            account_columns!(),
            " FROM accounts WHERE name = ?"
        ))
        .bind(name)
        .fetch_optional(&self.read)
        .await?
        .map(|row| rows::account(&row))
        .transpose()
    }

    pub(super) async fn insert_key_impl(&self, key: &KeyRecord) -> Result<()> {
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

    pub(super) async fn key_by_hash_impl(&self, hash: &str) -> Result<Option<KeyRecord>> {
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

    pub(super) async fn list_keys_impl(&self) -> Result<Vec<KeyRecord>> {
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

    pub(super) async fn revoke_key_impl(&self, id: KeyId, at: DateTime<Utc>) -> Result<bool> {
        let done =
            sqlx::query("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
                .bind(ms(at))
                .bind(id.to_string())
                .execute(&self.write)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(super) async fn expire_key_impl(&self, id: KeyId, at: DateTime<Utc>) -> Result<bool> {
        let done = sqlx::query("UPDATE api_keys SET expires_at = ? WHERE id = ?")
            .bind(ms(at))
            .bind(id.to_string())
            .execute(&self.write)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(super) async fn count_active_keys_impl(&self) -> Result<u64> {
        let count: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM api_keys WHERE revoked_at IS NULL")
                .fetch_one(&self.read)
                .await?;
        Ok(u64::try_from(count).unwrap_or(0))
    }
}
