//! `/v1/uploads`

use audiomill_core::UploadId;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::Json;

use crate::auth::Tenant;
use crate::routes::IdPath;
use crate::service::uploads as svc;
use crate::views::UploadView;
use crate::{AppError, AppState};
use audiomill_core::Scope;

/// Upload an audio file: the raw body, or the first file field of a multipart form.
///
/// The bytes are streamed to disk under the size limit, then probed by content. Not audio:
/// `415`; empty: `400`; too large: `413`; longer, faster or wider than the limits: `422`.
#[utoipa::path(post, path = "/v1/uploads", tag = "uploads",
    request_body(content(("application/octet-stream"), ("multipart/form-data")), description = "The audio file: the raw body, or a multipart form with a `file` field"),
    responses((status = 201, body = UploadView), (status = 400, body = crate::Problem), (status = 401, body = crate::Problem),
        (status = 413, body = crate::Problem), (status = 415, body = crate::Problem), (status = 422, body = crate::Problem)),
    security(("api_key" = [])))]
pub async fn create(
    State(state): State<AppState>,
    tenant: Tenant,
    request: Request,
) -> Result<(StatusCode, Json<UploadView>), AppError> {
    tenant.require(Scope::JobsWrite)?;
    let upload = svc::upload(&state, tenant, request).await?;
    Ok((StatusCode::CREATED, Json(upload.into())))
}

/// An upload and its media description.
#[utoipa::path(get, path = "/v1/uploads/{id}", tag = "uploads",
    params(("id" = String, Path, description = "Upload id (`upl_…`)")),
    responses((status = 200, body = UploadView), (status = 404, body = crate::Problem)),
    security(("api_key" = [])))]
pub async fn get(
    State(state): State<AppState>,
    tenant: Tenant,
    IdPath(id): IdPath<UploadId>,
) -> Result<Json<UploadView>, AppError> {
    tenant.require(Scope::JobsRead)?;
    let upload = state
        .store()
        .get_upload(tenant.account, id)
        .await?
        .ok_or_else(|| AppError::not_found("upload"))?;
    Ok(Json(upload.into()))
}
