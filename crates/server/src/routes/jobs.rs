//! `/v1/jobs`

use audiomill_core::{JobId, JobRequest, JobSpec, JobState};
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::Stream;
use std::convert::Infallible;
use std::time::Instant;

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
    let idempotency_key = request
        .headers()
        .get("idempotency-key")
        .map(|v| v.to_str().map(str::to_owned))
        .transpose()
        .map_err(|_| AppError::bad_request("Idempotency-Key must be visible ASCII"))?;
    let client = crate::auth::client_addr_of(&request);
    let submitted = if crate::service::uploads::is_multipart(&request) {
        svc::submit_multipart(&state, tenant, request, idempotency_key.as_deref()).await?
    } else {
        let limit = state.config().max_json_bytes;
        let body = axum::body::to_bytes(request.into_body(), limit)
            .await
            .map_err(|_| {
                AppError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    format!("a job request is at most {limit} bytes"),
                )
            })?;
        let spec =
            JobSpec::parse(&body).map_err(|e| AppError::unprocessable("invalid_job", e.0))?;
        let idem = svc::idempotency(idempotency_key.as_deref(), &svc::canonical_json(&body))?;
        svc::submit(&state, tenant, &client, spec, idem).await?
    };
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
    let job = state
        .store()
        .get_job(tenant.account, id)
        .await?
        .ok_or_else(|| AppError::not_found("job"))?;
    Ok(Json(job.into()))
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
    let job = state
        .store()
        .get_job(tenant.account, id)
        .await?
        .ok_or_else(|| AppError::not_found("job"))?;
    let stream = job_events(state, tenant, job);
    let mut response = Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response();
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// What the stream last told the client.
struct Seen {
    state: Option<JobState>,
    attempt: u32,
    progress: f64,
}

/// Polls the job row and turns each change into an event; ends after the terminal event, when
/// the job disappears, or after the configured maximum duration. (A client that disconnects
/// drops the stream, which ends the polling with it.)
fn job_events(
    state: AppState,
    tenant: Tenant,
    first: audiomill_store::Job,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let started = Instant::now();
    let id = first.id;
    let seen = Seen {
        state: None,
        attempt: 0,
        progress: -1.0,
    };
    futures::stream::unfold(
        (Some(first), seen, false),
        move |(mut pending, mut seen, done)| {
            let state = state.clone();
            async move {
                if done {
                    return None;
                }
                loop {
                    let job = match pending.take() {
                        Some(job) => job,
                        None => {
                            if started.elapsed() > state.config().event_max_duration {
                                return None;
                            }
                            tokio::time::sleep(state.config().event_poll).await;
                            match state.store().get_job(tenant.account, id).await {
                                Ok(Some(job)) => job,
                                _ => return None,
                            }
                        }
                    };
                    if let Some((event, last)) = next_event(&job, &mut seen) {
                        // The same row may call for more than one event (a missed `started`
                        // before the terminal one, or progress after `started`): look again.
                        let again = (!last).then_some(job);
                        return Some((Ok(event), (again, seen, last)));
                    }
                }
            }
        },
    )
}

/// The event a job's current row calls for, if anything changed since `seen`, and whether it
/// is the last one of the stream.
fn next_event(job: &audiomill_store::Job, seen: &mut Seen) -> Option<(Event, bool)> {
    let json = |v: serde_json::Value| Event::default().data(v.to_string());
    // Polling can miss a short attempt entirely (queued → running → succeeded between two
    // looks). A client that saw the job waiting is still told that an attempt started, so that
    // every stream reads queued, started, …, terminal.
    if seen.state.is_some() && job.attempt > seen.attempt && job.state != JobState::Running {
        seen.state = Some(JobState::Running);
        seen.attempt = job.attempt;
        seen.progress = -1.0;
        let event =
            json(serde_json::json!({"id": job.id, "attempt": job.attempt})).event("started");
        return Some((event, false));
    }
    let changed_state = seen.state != Some(job.state) || seen.attempt != job.attempt;
    if changed_state {
        seen.state = Some(job.state);
        seen.attempt = job.attempt;
        seen.progress = -1.0;
        let event = match job.state {
            JobState::Queued => {
                json(serde_json::json!({"id": job.id, "attempt": job.attempt})).event("queued")
            }
            JobState::Running => {
                json(serde_json::json!({"id": job.id, "attempt": job.attempt})).event("started")
            }
            terminal => {
                let view = serde_json::to_value(JobView::from(job.clone())).unwrap_or_default();
                json(view).event(terminal.as_str())
            }
        };
        return Some((event, job.state.is_terminal()));
    }
    if job.state == JobState::Running && job.progress > seen.progress {
        seen.progress = job.progress;
        let event =
            json(serde_json::json!({"id": job.id, "fraction": job.progress})).event("progress");
        return Some((event, false));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use audiomill_core::{AccountId, InputRef, OperationKind, OutputSpec, UploadId};
    use chrono::Utc;

    fn job(state: JobState, attempt: u32) -> audiomill_store::Job {
        audiomill_store::Job {
            id: JobId::new(),
            account_id: AccountId::new(),
            operation: OperationKind::Analyze,
            options: serde_json::json!({}),
            input: InputRef::Upload(UploadId::new()),
            output: OutputSpec::default(),
            input_seconds: Some(1.0),
            state,
            progress: 0.0,
            attempt,
            max_attempts: 3,
            cancel_requested: false,
            error: None,
            result: None,
            created_at: Utc::now(),
            run_at: Utc::now(),
            started_at: (attempt > 0).then(Utc::now),
            finished_at: state.is_terminal().then(Utc::now),
            parent_id: None,
            reserved_seconds: 0.0,
            artifacts: vec![],
        }
    }

    /// Runs the stream's logic over the rows a poller would see, returning the event names.
    fn names(rows: &[(JobState, u32, f64)]) -> Vec<String> {
        let mut seen = Seen {
            state: None,
            attempt: 0,
            progress: -1.0,
        };
        let mut out = vec![];
        for &(state, attempt, progress) in rows {
            let mut row = job(state, attempt);
            row.progress = progress;
            while let Some((event, last)) = next_event(&row, &mut seen) {
                // `Event` does not expose its name; its wire form starts with it.
                let wire = format!("{event:?}");
                let name = [
                    "queued",
                    "started",
                    "progress",
                    "succeeded",
                    "failed",
                    "canceled",
                ]
                .into_iter()
                .find(|n| wire.contains(&format!("event: {n}\\n")))
                .unwrap_or("?");
                out.push(name.to_owned());
                if last {
                    return out;
                }
            }
        }
        out
    }

    #[test]
    fn a_missed_attempt_still_reads_started() {
        use JobState::*;
        assert_eq!(
            names(&[(Queued, 0, 0.0), (Succeeded, 1, 1.0)]),
            ["queued", "started", "succeeded"]
        );
        assert_eq!(
            names(&[(Queued, 0, 0.0), (Running, 1, 0.5), (Succeeded, 1, 1.0)]),
            ["queued", "started", "progress", "succeeded"]
        );
        // A retry whose first attempt ran unseen.
        assert_eq!(
            names(&[(Queued, 0, 0.0), (Queued, 1, 0.0), (Failed, 2, 0.0)]),
            ["queued", "started", "queued", "started", "failed"]
        );
        // Canceled before it ran: nothing started.
        assert_eq!(
            names(&[(Queued, 0, 0.0), (Canceled, 0, 0.0)]),
            ["queued", "canceled"]
        );
        // A finished job's stream is its terminal event alone.
        assert_eq!(names(&[(Succeeded, 1, 1.0)]), ["succeeded"]);
    }
}
