//! `/v1/uploads`

use audiomill_core::UploadId;
use axum::extract::{Query, Request, State};
use axum::http::StatusCode;
use axum::Json;

use crate::auth::Tenant;
use crate::routes::{created_at, IdPath};
use crate::service::uploads as svc;
use crate::views::{UploadPage, UploadView};
use crate::{AppError, AppState};
use audiomill_core::Scope;
use axum::response::Response;

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
) -> Result<Response, AppError> {
    tenant.require(Scope::JobsWrite)?;
    let upload = svc::upload(&state, tenant, request).await?;
    let location = format!("/v1/uploads/{}", upload.id);
    Ok(created_at(
        StatusCode::CREATED,
        location,
        UploadView::from(upload),
    ))
}

/// List uploads, newest first. `limit` is 1-100 (default 20); `cursor` is the previous
/// page's `next_cursor`.
#[utoipa::path(get, path = "/v1/uploads", tag = "uploads",
    params(("limit" = Option<u32>, Query, description = "Page size, 1-100"),
           ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page")),
    responses((status = 200, body = UploadPage), (status = 400, body = crate::Problem)),
    security(("api_key" = [])))]
pub async fn list(
    State(state): State<AppState>,
    tenant: Tenant,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<UploadPage>, AppError> {
    tenant.require(Scope::JobsRead)?;
    let (uploads, next_cursor) = svc::list(&state, tenant, &pairs).await?;
    Ok(Json(UploadPage {
        uploads: uploads.into_iter().map(UploadView::from).collect(),
        next_cursor,
    }))
}

/// Delete an upload and its bytes (`204`). An upload a queued or running job still reads is
/// kept (`409`).
#[utoipa::path(delete, path = "/v1/uploads/{id}", tag = "uploads",
    params(("id" = String, Path, description = "Upload id (`upl_…`)")),
    responses((status = 204, description = "Deleted"), (status = 404, body = crate::Problem),
        (status = 409, body = crate::Problem)),
    security(("api_key" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    tenant: Tenant,
    IdPath(id): IdPath<UploadId>,
) -> Result<StatusCode, AppError> {
    tenant.require(Scope::JobsWrite)?;
    svc::delete(&state, tenant, id).await?;
    Ok(StatusCode::NO_CONTENT)
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
    Ok(Json(svc::get(&state, tenant, id).await?.into()))
}
