//! `/v1/models`

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Tenant;
use crate::state::ModelSummary;
use crate::{AppError, AppState};
use audiomill_core::Scope;

/// The separation models.
#[derive(Serialize, ToSchema)]
pub struct ModelList {
    /// Installed models and those an operator can install, by name.
    pub models: Vec<ModelSummary>,
}

/// Separation models: what is installed (usable by `separate` jobs) and what can be installed
/// (`install_command` says how).
#[utoipa::path(get, path = "/v1/models", tag = "models",
    responses((status = 200, body = ModelList), (status = 401, body = crate::Problem)),
    security(("api_key" = [])))]
pub async fn list(
    State(state): State<AppState>,
    tenant: Tenant,
) -> Result<Json<ModelList>, AppError> {
    tenant.require(Scope::JobsRead)?;
    let models = state
        .models()
        .list()
        .await
        .map_err(|e| AppError::internal(format!("cannot list the models: {e}")))?;
    Ok(Json(ModelList { models }))
}
