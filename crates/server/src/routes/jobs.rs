//! `/v1/jobs`

use audiomill_core::{JobId, JobRequest, JobState};
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::auth::Tenant;
use crate::routes::{created_at, IdPath};
use crate::service::jobs::{self as svc, Deleted, ListQuery};
use crate::views::{JobPage, JobView};
use crate::{AppError, AppState};
use audiomill_core::Scope;

/// Submit a job. JSON body `{operation, input, options, output}`, or a multipart form with a
/// `file` part (uploaded first, then used as the input) and a `spec` part (the same JSON,
/// without `input`). With `Idempotency-Key`, a retried request returns the same job.
#[utoipa::path(post, path = "/v1/jobs", tag = "jobs",
    request_body(content = JobRequest, description = "The job; or multipart with `file` and `spec` parts"),
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: the same key and body return the same job")),
    responses((status = 202, body = JobView), (status = 400, body = crate::Problem), (status = 401, body = crate::Problem),
        (status = 413, body = crate::Problem), (status = 415, body = crate::Problem), (status = 422, body = crate::Problem)),
    security(("api_key" = [])))]
pub async fn create(
    State(state): State<AppState>,
    tenant: Tenant,
    request: Request,
) -> Result<Response, AppError> {
    tenant.require(Scope::JobsWrite)?;
    let submitted = svc::submit_request(&state, tenant, request).await?;
    let location = format!("/v1/jobs/{}", submitted.job.id);
    let mut response = created_at(StatusCode::ACCEPTED, location, JobView::from(submitted.job));
    if !submitted.created {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// List jobs, newest first. `status` filters (`queued`, `running`, `succeeded`, `failed`,
/// `canceled`); `limit` is 1-100 (default 20); `cursor` is the previous page's `next_cursor`.
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs",
    params(("status" = Option<JobState>, Query, description = "Only jobs in this state"),
           ("limit" = Option<u32>, Query, description = "Page size, 1-100"),
           ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page")),
    responses((status = 200, body = JobPage), (status = 400, body = crate::Problem)),
    security(("api_key" = [])))]
pub async fn list(
    State(state): State<AppState>,
    tenant: Tenant,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<JobPage>, AppError> {
    tenant.require(Scope::JobsRead)?;
    let query = ListQuery::parse(&pairs)?;
    let (jobs, next_cursor) = svc::list(&state, tenant, query).await?;
    Ok(Json(JobPage {
        jobs: jobs.into_iter().map(JobView::from).collect(),
        next_cursor,
    }))
}

/// A job, with its progress, result and artifacts.
#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs",
    params(("id" = String, Path, description = "Job id (`job_…`)")),
    responses((status = 200, body = JobView), (status = 404, body = crate::Problem)),
    security(("api_key" = [])))]
pub async fn get(
    State(state): State<AppState>,
    tenant: Tenant,
    IdPath(id): IdPath<JobId>,
) -> Result<Json<JobView>, AppError> {
    tenant.require(Scope::JobsRead)?;
    Ok(Json(svc::get(&state, tenant, id).await?.into()))
}

/// Cancel a queued (`200`) or running (`202`; it stops within seconds) job, or delete a
/// finished one with its artifacts (`204`).
#[utoipa::path(delete, path = "/v1/jobs/{id}", tag = "jobs",
    params(("id" = String, Path, description = "Job id (`job_…`)")),
    responses((status = 200, body = JobView, description = "Canceled"), (status = 202, body = JobView, description = "Cancel requested"),
        (status = 204, description = "Deleted"), (status = 404, body = crate::Problem)),
    security(("api_key" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    tenant: Tenant,
    IdPath(id): IdPath<JobId>,
) -> Result<Response, AppError> {
    tenant.require(Scope::JobsWrite)?;
    Ok(match svc::cancel_or_delete(&state, tenant, id).await? {
        Deleted::Canceled(job) => (StatusCode::OK, Json(JobView::from(job))).into_response(),
        Deleted::CancelRequested(job) => {
            (StatusCode::ACCEPTED, Json(JobView::from(job))).into_response()
        }
        Deleted::Removed => StatusCode::NO_CONTENT.into_response(),
    })
}

/// Server-Sent Events of a job: `queued`, `started`, `progress` (`{"fraction": …}`), then one
/// of `succeeded`, `failed`, `canceled` (with the job), after which the stream ends.
#[utoipa::path(get, path = "/v1/jobs/{id}/events", tag = "jobs",
    params(("id" = String, Path, description = "Job id (`job_…`)")),
    responses((status = 200, content_type = "text/event-stream", body = String), (status = 404, body = crate::Problem)),
    security(("api_key" = [])))]
pub async fn events(
    State(state): State<AppState>,
    tenant: Tenant,
    IdPath(id): IdPath<JobId>,
    _headers: HeaderMap,
) -> Result<Response, AppError> {
    tenant.require(Scope::JobsRead)?;
    let stream = crate::service::events::stream(&state, tenant, id).await?;
    let mut response = Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response();
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}
