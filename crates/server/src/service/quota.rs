//! Plan quotas at submission: what a job reserves, and the `429`s when it does not fit.
//!
//! The check itself is the store's (guarded updates in the insert's transaction, see
//! `Store::insert_job`); this module estimates the reservation and words the refusals.

use audiomill_core::text::count;
use audiomill_core::{period_end, usage_period, PlanLimits};
use audiomill_store::Reservation;
use chrono::{DateTime, Utc};

use crate::auth::Tenant;
use crate::{AppError, AppState};

/// What a job with an input of `input_seconds` (when known) reserves now. An input of unknown
/// length (a link, an earlier job's file) reserves the longest input the plan allows, or what
/// is left of the period if that is less; the worker then refuses an input longer than the
/// reservation, so the quota holds either way.
pub async fn reservation(
    state: &AppState,
    tenant: Tenant,
    plan: &PlanLimits,
    input_seconds: Option<f64>,
    now: DateTime<Utc>,
) -> Result<Reservation, AppError> {
    let period = usage_period(now);
    let seconds = match input_seconds {
        Some(seconds) if seconds.is_finite() && seconds >= 0.0 => seconds,
        _ => {
            let usage = state.store().usage(tenant.account, &period).await?;
            let left =
                plan.audio_seconds_per_month as f64 - usage.used_seconds - usage.reserved_seconds;
            // At least a second, so that an exhausted quota is refused by the guarded update.
            (plan.max_input_seconds as f64).min(left).max(1.0)
        }
    };
    Ok(Reservation {
        period,
        seconds,
        quota_seconds: plan.audio_seconds_per_month,
        concurrent_jobs: Some(plan.concurrent_jobs),
    })
}

/// `429 quota_exceeded`, with when the quota resets.
pub fn exceeded(
    state: &AppState,
    tenant: Tenant,
    client: &str,
    plan: &PlanLimits,
    used: f64,
    reserved: f64,
    now: DateTime<Utc>,
) -> AppError {
    let reset = period_end(now);
    state.metrics().security_event("quota_exceeded");
    tracing::warn!(
        target: "security",
        event = "quota_exceeded",
        account = %tenant.account,
        client,
        used,
        reserved,
        "job refused: quota exceeded"
    );
    AppError::plan_limit(
        "quota_exceeded",
        format!(
            "this job does not fit in your plan's {} of audio this month ({} used, {} reserved by running jobs); the quota resets at {}",
            count(plan.audio_seconds_per_month as f64, "second", "seconds"),
            used.round(),
            reserved.round(),
            reset.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
        (reset - now).num_seconds().max(1) as u64,
    )
}

/// `429 too_many_jobs`: the plan's concurrent-job limit is reached.
pub fn too_many_jobs(
    state: &AppState,
    tenant: Tenant,
    client: &str,
    plan: &PlanLimits,
) -> AppError {
    state.metrics().security_event("quota_exceeded");
    tracing::warn!(
        target: "security",
        event = "quota_exceeded",
        account = %tenant.account,
        client,
        limit = plan.concurrent_jobs,
        "job refused: too many active jobs"
    );
    AppError::plan_limit(
        "too_many_jobs",
        format!(
            "your plan allows {} queued or running at once; wait for one to finish",
            count(plan.concurrent_jobs, "job", "jobs")
        ),
        5,
    )
}
