//! `/v1/uploads`

use audiomill_core::UploadId;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{header, StatusCode};
use axum::Json;

use crate::auth::{client_addr_of, Tenant};
use crate::routes::IdPath;
use crate::service::uploads as svc;
use crate::views::UploadView;
use crate::{AppError, AppState};

/// Whether a request carries a multipart form.
pub fn is_multipart(request: &Request) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("multipart/form-data")
        })
}

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
    let client = client_addr_of(&request);
    let (received, filename) = if is_multipart(&request) {
        let mut form = Multipart::from_request(request, &state)
            .await
            .map_err(|_| AppError::bad_request("malformed multipart body"))?;
        let cap = state.config().limits.max_upload_bytes;
        let mut field = loop {
            match form
                .next_field()
                .await
                .map_err(|e| svc::multipart_error(e, cap))?
            {
                Some(field) if field.file_name().is_some() || field.name() == Some("file") => {
                    break field
                }
                Some(_) => continue,
                None => return Err(AppError::bad_request("the form has no file field")),
            }
        };
        let filename = field.file_name().map(str::to_owned);
        (svc::receive_field(&state, &mut field).await?, filename)
    } else {
        (svc::receive_body(&state, request.into_body()).await?, None)
    };
    let upload = svc::store_upload(&state, tenant, received, filename, &client).await?;
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
    let upload = state
        .store()
        .get_upload(tenant.account, id)
        .await?
        .ok_or_else(|| AppError::not_found("upload"))?;
    Ok(Json(upload.into()))
}
