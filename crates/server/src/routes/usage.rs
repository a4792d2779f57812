//! `GET /v1/usage`: the account's quota in the current period.

use audiomill_core::Scope;
use axum::extract::State;
use axum::Json;

use crate::auth::Tenant;
use crate::service::usage;
use crate::views::UsageView;
use crate::{AppError, AppState};

/// The account's quota: used, reserved and remaining seconds this period, per operation too.
#[utoipa::path(get, path = "/v1/usage", tag = "usage",
    responses((status = 200, body = UsageView), (status = 401, body = crate::Problem)),
    security(("api_key" = [])))]
pub async fn get(
    State(state): State<AppState>,
    tenant: Tenant,
) -> Result<Json<UsageView>, AppError> {
    tenant.require(Scope::JobsRead)?;
    Ok(Json(usage::of(&state, tenant).await?))
}
