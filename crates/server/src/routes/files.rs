//! `/v1/files/{id}`

use audiomill_core::ArtifactId;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;

use crate::auth::Tenant;
use crate::routes::IdPath;
use crate::{AppError, AppState};
use audiomill_core::Scope;

/// Download an artifact. Supports a single `Range` (`206`, or `416` outside the file).
#[utoipa::path(get, path = "/v1/files/{id}", tag = "files",
    params(("id" = String, Path, description = "Artifact id (`art_…`)"),
           ("Range" = Option<String>, Header, description = "e.g. `bytes=0-1023`")),
    responses((status = 200, description = "The file", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 206, description = "Part of the file"), (status = 404, body = crate::Problem), (status = 416, body = crate::Problem)),
    security(("api_key" = [])))]
pub async fn get(
    State(state): State<AppState>,
    tenant: Tenant,
    IdPath(id): IdPath<ArtifactId>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    tenant.require(Scope::JobsRead)?;
    crate::service::files::download(&state, tenant, id, &headers).await
}
