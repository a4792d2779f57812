//! `GET /v1/usage`: the account's quota in the current period.

use audiomill_core::{period_end, usage_period, OperationKind, Scope};
use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Tenant;
use crate::{AppError, AppState};

/// Usage of one operation in the period.
#[derive(Debug, Serialize, ToSchema)]
pub struct OperationUsage {
    pub operation: OperationKind,
    /// Seconds charged for jobs of this operation that succeeded.
    pub used_seconds: f64,
    /// Jobs of this operation that succeeded.
    pub jobs: u64,
}

/// The account's usage of its plan in the current period (a calendar month, UTC).
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageView {
    /// The plan the account is on.
    pub plan: String,
    /// `YYYY-MM`.
    pub period: String,
    /// When the period ends and the quota resets (RFC 3339).
    pub period_end: String,
    /// Seconds of audio per period the plan allows.
    pub quota_seconds: u64,
    /// Seconds charged for jobs that succeeded.
    pub used_seconds: f64,
    /// Seconds held by jobs queued or running (settled when they end).
    pub reserved_seconds: f64,
    /// What new jobs may still reserve.
    pub remaining_seconds: f64,
    /// Jobs queued or running, and the plan's limit.
    pub active_jobs: u32,
    pub concurrent_jobs_limit: u32,
    pub by_operation: Vec<OperationUsage>,
    /// How long the account's files are kept.
    pub retention: crate::views::RetentionView,
}

/// The account's quota: used, reserved and remaining seconds this period, per operation too.
#[utoipa::path(get, path = "/v1/usage", tag = "usage",
    responses((status = 200, body = UsageView), (status = 401, body = crate::Problem)),
    security(("api_key" = [])))]
pub async fn get(
    State(state): State<AppState>,
    tenant: Tenant,
) -> Result<Json<UsageView>, AppError> {
    tenant.require(Scope::JobsRead)?;
    let now = chrono::Utc::now();
    let period = usage_period(now);
    let (plan_name, plan) = state.store().account_limits(tenant.account).await?;
    let usage = state.store().usage(tenant.account, &period).await?;
    let remaining =
        (plan.audio_seconds_per_month as f64 - usage.used_seconds - usage.reserved_seconds)
            .max(0.0);
    Ok(Json(UsageView {
        plan: plan_name.to_string(),
        period,
        period_end: period_end(now).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        quota_seconds: plan.audio_seconds_per_month,
        used_seconds: usage.used_seconds,
        reserved_seconds: usage.reserved_seconds,
        remaining_seconds: remaining,
        active_jobs: usage.active_jobs,
        concurrent_jobs_limit: plan.concurrent_jobs,
        retention: plan.retention(state.config().retention).into(),
        by_operation: usage
            .by_operation
            .into_iter()
            .map(|(operation, used_seconds, jobs)| OperationUsage {
                operation,
                used_seconds,
                jobs,
            })
            .collect(),
    }))
}
