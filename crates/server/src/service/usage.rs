//! An account's use of its plan in the current period.

use audiomill_core::{period_end, usage_period};

use crate::auth::Tenant;
use crate::views::{OperationUsage, UsageView};
use crate::{AppError, AppState};

/// The tenant's quota: used, reserved and remaining seconds this period, per operation too.
pub async fn of(state: &AppState, tenant: Tenant) -> Result<UsageView, AppError> {
    let now = chrono::Utc::now();
    let period = usage_period(now);
    let (plan_name, plan) = state.store().account_limits(tenant.account).await?;
    let usage = state.store().usage(tenant.account, &period).await?;
    let remaining =
        (plan.audio_seconds_per_month as f64 - usage.used_seconds - usage.reserved_seconds)
            .max(0.0);
    Ok(UsageView {
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
    })
}
