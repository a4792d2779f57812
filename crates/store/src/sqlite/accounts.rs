//! The accounts role ([`AccountStore`]) on SQLite: accounts, plans and usage.

use super::rows::{self, account_columns, json, ms};
use super::{conflict, SqliteStore, BEGIN_IMMEDIATE};
use crate::model::*;
use crate::{AccountStore, Result, StoreError};
use async_trait::async_trait;
use audiomill_core::{AccountId, OperationKind, PlanLimits, PlanName};
use chrono::Utc;
use sqlx::SqliteConnection;

/// Makes sure `plan` has a row: the default plan gets one with the built-in limits; any other
/// plan must exist already.
async fn ensure_plan_row(conn: &mut SqliteConnection, plan: &PlanName) -> Result<()> {
    if plan.as_str() == PlanName::DEFAULT {
        let now = ms(Utc::now());
        sqlx::query(
            "INSERT INTO plans (name, limits, created_at, updated_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(plan.as_str())
        .bind(json(&PlanLimits::default())?)
        .bind(now)
        .bind(now)
        .execute(&mut *conn)
        .await?;
        return Ok(());
    }
    let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM plans WHERE name = ?")
        .bind(plan.as_str())
        .fetch_optional(&mut *conn)
        .await?;
    found.map(|_| ()).ok_or(StoreError::NotFound("plan"))
}

#[async_trait]
impl AccountStore for SqliteStore {
    async fn create_account(&self, name: &str, plan: Option<&PlanName>) -> Result<Account> {
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

    async fn account_by_name(&self, name: &str) -> Result<Option<Account>> {
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

    async fn create_plan(&self, name: &PlanName, limits: &PlanLimits) -> Result<Plan> {
        let now = ms(Utc::now());
        let row = sqlx::query(
            "INSERT INTO plans (name, limits, created_at, updated_at) VALUES (?, ?, ?, ?) \
             RETURNING name, limits, created_at, updated_at",
        )
        .bind(name.as_str())
        .bind(json(limits)?)
        .bind(now)
        .bind(now)
        .fetch_one(&self.write)
        .await
        .map_err(conflict("plan"))?;
        rows::plan(&row)
    }

    async fn update_plan(&self, name: &PlanName, limits: &PlanLimits) -> Result<bool> {
        let mut tx = self.write.begin_with(BEGIN_IMMEDIATE).await?;
        match ensure_plan_row(&mut tx, name).await {
            Ok(()) => {}
            Err(StoreError::NotFound(_)) => {
                tx.rollback().await?;
                return Ok(false);
            }
            Err(e) => return Err(e),
        }
        sqlx::query("UPDATE plans SET limits = ?, updated_at = ? WHERE name = ?")
            .bind(json(limits)?)
            .bind(ms(Utc::now()))
            .bind(name.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn list_plans(&self) -> Result<Vec<Plan>> {
        let mut plans =
            sqlx::query("SELECT name, limits, created_at, updated_at FROM plans ORDER BY name")
                .fetch_all(&self.read)
                .await?
                .iter()
                .map(rows::plan)
                .collect::<Result<Vec<_>>>()?;
        if !plans.iter().any(|p| p.name.as_str() == PlanName::DEFAULT) {
            let epoch = chrono::DateTime::<Utc>::UNIX_EPOCH;
            plans.push(Plan {
                name: PlanName::default_plan(),
                limits: PlanLimits::default(),
                created_at: epoch,
                updated_at: epoch,
            });
            plans.sort_by(|a, b| a.name.as_str().cmp(b.name.as_str()));
        }
        Ok(plans)
    }

    async fn set_account_plan(&self, account: AccountId, plan: &PlanName) -> Result<bool> {
        let mut tx = self.write.begin_with(BEGIN_IMMEDIATE).await?;
        ensure_plan_row(&mut tx, plan).await?;
        let done = sqlx::query("UPDATE accounts SET plan = ? WHERE id = ?")
            .bind(plan.as_str())
            .bind(account.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn list_accounts(&self) -> Result<Vec<Account>> {
        sqlx::query(concat!(
            "SELECT ",
            account_columns!(),
            " FROM accounts ORDER BY name"
        ))
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(rows::account)
        .collect()
    }

    async fn account_limits(&self, account: AccountId) -> Result<(PlanName, PlanLimits)> {
        let stored: Option<(String, Option<String>)> = sqlx::query_as(
            "SELECT COALESCE(a.plan, 'default'), p.limits FROM accounts a \
             LEFT JOIN plans p ON p.name = COALESCE(a.plan, 'default') WHERE a.id = ?",
        )
        .bind(account.to_string())
        .fetch_optional(&self.read)
        .await?;
        let Some((name, limits)) = stored else {
            return Ok((PlanName::default_plan(), PlanLimits::default()));
        };
        let name = PlanName::parse(&name)
            .map_err(|_| StoreError::Corrupt(format!("accounts.plan: {name:?}")))?;
        let limits = match limits {
            Some(text) => serde_json::from_str(&text)
                .map_err(|e| StoreError::Corrupt(format!("plans.limits: {e}")))?,
            None => PlanLimits::default(),
        };
        Ok((name, limits))
    }

    async fn usage(&self, account: AccountId, period: &str) -> Result<Usage> {
        let mut tx = self.read.begin().await?;
        let totals: Option<(f64, f64)> = sqlx::query_as(
            "SELECT used_seconds, reserved_seconds FROM usage WHERE account_id = ? AND period = ?",
        )
        .bind(account.to_string())
        .bind(period)
        .fetch_optional(&mut *tx)
        .await?;
        let active: Option<i64> =
            sqlx::query_scalar("SELECT active_jobs FROM accounts WHERE id = ?")
                .bind(account.to_string())
                .fetch_optional(&mut *tx)
                .await?;
        let rows: Vec<(String, f64, i64)> = sqlx::query_as(
            "SELECT operation, SUM(COALESCE(charged_seconds, 0)), COUNT(*) FROM jobs \
             WHERE account_id = ? AND usage_period = ? AND state = 'succeeded' \
             GROUP BY operation ORDER BY operation",
        )
        .bind(account.to_string())
        .bind(period)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let mut by_operation = Vec::with_capacity(rows.len());
        for (operation, seconds, jobs) in rows {
            let operation: OperationKind = operation
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("jobs.operation: {operation:?}")))?;
            by_operation.push((operation, seconds, u64::try_from(jobs).unwrap_or(0)));
        }
        let (used_seconds, reserved_seconds) = totals.unwrap_or((0.0, 0.0));
        Ok(Usage {
            used_seconds,
            reserved_seconds,
            active_jobs: active.and_then(|n| u32::try_from(n).ok()).unwrap_or(0),
            by_operation,
        })
    }
}
