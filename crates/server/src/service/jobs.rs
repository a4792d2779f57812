//! Submitting, listing, canceling and deleting jobs.

use audiomill_blob::BlobKey;
use audiomill_core::{InputRef, JobDraft, JobId, JobSpec, JobState, Operation, SeparateOptions};
use audiomill_store::{CancelOutcome, Idempotency, InsertJob, Job, JobFilter, NewJob};
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::HeaderMap;
use chrono::Utc;

use crate::auth::Tenant;
use crate::body;
use crate::client::client_addr_of;
use crate::service::page::{self, PageQuery};
use crate::service::{quota, uploads, url_inputs};
use crate::state::ModelLookupError;
use crate::{AppError, AppState};

/// A submitted job and whether this request created it (false: an idempotent replay).
pub struct Submitted {
    pub job: Job,
    pub created: bool,
}

/// Validates an `Idempotency-Key` header value and binds it to the request's canonical hash.
pub fn idempotency(
    key: Option<&str>,
    canonical_request: &[u8],
) -> Result<Option<Idempotency>, AppError> {
    let Some(key) = key else { return Ok(None) };
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(AppError::bad_request(
            "Idempotency-Key must be 1-255 visible ASCII characters",
        ));
    }
    let request_hash = audiomill_core::digest::sha256_hex(canonical_request);
    Ok(Some(Idempotency {
        key: key.to_owned(),
        request_hash,
    }))
}

/// The `Idempotency-Key` header, when present and readable.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, AppError> {
    headers
        .get("idempotency-key")
        .map(|v| v.to_str().map(str::to_owned))
        .transpose()
        .map_err(|_| AppError::bad_request("Idempotency-Key must be visible ASCII"))
}

/// A job request's JSON, parsed and validated once.
fn parse_draft(json: &[u8]) -> Result<JobDraft, AppError> {
    JobDraft::parse(json).map_err(|e| AppError::unprocessable("invalid_job", e.0))
}

/// `POST /v1/jobs`: a JSON job request, or a multipart form whose `file` part is the input
/// and whose `spec` part is the request without `input`. Both are parsed by the same
/// [`JobDraft::parse`], and a retry with the same `Idempotency-Key` is recognized by the
/// draft's canonical form (plus the file's SHA-256 for a form).
pub async fn submit_request(
    state: &AppState,
    tenant: Tenant,
    request: Request,
) -> Result<Submitted, AppError> {
    let key = idempotency_key(request.headers())?;
    if uploads::is_multipart(&request) {
        return submit_form(state, tenant, request, key.as_deref()).await;
    }
    let client = client_addr_of(&request);
    let limit = state.config().max_json_bytes;
    let body = body::read_capped(request.into_body(), limit, "a job request").await?;
    let draft = parse_draft(&body)?;
    let idem = idempotency(key.as_deref(), &draft.canonical())?;
    let spec = draft
        .into_spec()
        .map_err(|e| AppError::unprocessable("invalid_job", e.0))?;
    submit(state, tenant, &client, spec, idem).await
}

/// Checks the input exists for this tenant and inserts the job (with its idempotency key).
pub async fn submit(
    state: &AppState,
    tenant: Tenant,
    client: &str,
    spec: JobSpec,
    idempotency: Option<Idempotency>,
) -> Result<Submitted, AppError> {
    let input_seconds = match spec.input {
        InputRef::Upload(id) => {
            let upload = state.store().get_upload(tenant.account, id).await?;
            let upload = upload.ok_or_else(|| {
                AppError::unprocessable("input_not_found", format!("upload {id} not found"))
            })?;
            // What the probe knows already decides options that would fail on this input.
            spec.operation
                .check_input(&upload.media)
                .map_err(|e| AppError::unprocessable("invalid_job", e.0))?;
            upload.media.duration_secs
        }
        InputRef::Artifact(id) => {
            state
                .store()
                .get_artifact(tenant.account, id)
                .await?
                .ok_or_else(|| {
                    AppError::unprocessable("input_not_found", format!("artifact {id} not found"))
                })?;
            None
        }
        // The duration is known once the worker has looked at the link.
        InputRef::Url(ref url) => {
            url_inputs::check(state, tenant, client, url).await?;
            None
        }
    };
    let (_, plan) = state.store().account_limits(tenant.account).await?;
    let operation = spec.operation.kind();
    if !plan.allows(operation) {
        return Err(AppError::forbidden(
            "operation_not_allowed",
            format!("your plan does not include {operation}"),
        ));
    }
    if let Operation::Separate(options) = &spec.operation {
        if !plan.allows_model(options.model.as_str()) {
            return Err(AppError::forbidden(
                "model_not_allowed",
                format!("your plan does not include model {}", options.model),
            ));
        }
        check_model(state, options).await?;
    }
    if let Some(seconds) = input_seconds {
        if seconds > plan.max_input_seconds as f64 {
            return Err(AppError::unprocessable(
                "input_too_long",
                format!(
                    "the input lasts {} s; your plan allows {} s",
                    seconds.round(),
                    plan.max_input_seconds
                ),
            ));
        }
    }
    let now = Utc::now();
    let reservation = quota::reservation(state, tenant, &plan, input_seconds, now).await?;
    let new = NewJob {
        id: JobId::new(),
        account_id: tenant.account,
        operation: spec.operation,
        input: spec.input,
        output: spec.output,
        input_seconds,
        max_attempts: state.config().max_attempts,
        created_at: now,
        parent_id: None,
        reservation: Some(reservation),
    };
    match state.store().insert_job(new, idempotency).await? {
        InsertJob::Created(job) => {
            tracing::info!(job = %job.id, account = %tenant.account, operation = %job.operation, "job queued");
            state.wake_workers();
            Ok(Submitted { job, created: true })
        }
        InsertJob::Existing(job) => Ok(Submitted {
            job,
            created: false,
        }),
        InsertJob::IdempotencyMismatch => Err(AppError::unprocessable(
            "idempotency_mismatch",
            "this Idempotency-Key was already used with a different request",
        )),
        InsertJob::QuotaExceeded { used, reserved } => Err(quota::exceeded(
            state, tenant, client, &plan, used, reserved, now,
        )),
        InsertJob::TooManyActiveJobs => Err(quota::too_many_jobs(state, tenant, client, &plan)),
    }
}

/// Refuses a `separate` job whose model is not installed (with the command that installs it)
/// or does not fit its options, before anything is queued.
async fn check_model(state: &AppState, options: &SeparateOptions) -> Result<(), AppError> {
    let model = match state.models().lookup(&options.model).await {
        Ok(model) => model,
        Err(e @ ModelLookupError::NotInstalled { .. }) => {
            return Err(AppError::unprocessable(
                "model_not_installed",
                e.to_string(),
            ))
        }
        Err(
            ref e @ ModelLookupError::Unusable {
                ref name,
                ref reason,
                ..
            },
        ) => {
            tracing::warn!(model = %name, reason, "an installed model's files are unusable");
            return Err(AppError::unprocessable(
                "model_not_installed",
                e.to_string(),
            ));
        }
        Err(ModelLookupError::Failed(e)) => {
            return Err(AppError::internal(format!("model lookup: {e}")))
        }
    };
    options
        .output_stems(&model.stems)
        .map_err(|e| AppError::unprocessable("invalid_job", e.0))?;
    if let Some(segment) = options.segment {
        if segment > model.max_segment_secs {
            return Err(AppError::unprocessable(
                "invalid_job",
                format!(
                    "segment {segment} s is longer than model {} accepts: at most {} s",
                    options.model, model.max_segment_secs
                ),
            ));
        }
    }
    Ok(())
}

/// The multipart form of job submission: the `spec` part (read with the JSON cap, parsed as
/// soon as it arrives) and the `file` part (streamed under the upload cap), then the upload
/// stored and the job submitted with it. A refused spec stores nothing.
async fn submit_form(
    state: &AppState,
    tenant: Tenant,
    request: Request,
    idempotency_key: Option<&str>,
) -> Result<Submitted, AppError> {
    let client = client_addr_of(&request);
    let plan = uploads::TenantLimits::of(state, tenant).await?;
    let cap = plan.upload_cap;
    let mut form = Multipart::from_request(request, state)
        .await
        .map_err(|_| AppError::bad_request("malformed multipart body"))?;
    let mut draft: Option<JobDraft> = None;
    let mut file = None;
    while let Some(mut field) = form
        .next_field()
        .await
        .map_err(|e| uploads::refused(state, tenant, &client, uploads::multipart_error(e, cap)))?
    {
        match field.name() {
            Some("spec") if draft.is_none() => {
                let limit = state.config().max_json_bytes;
                let bytes = body::read_field_capped(&mut field, limit, "the spec part").await?;
                let parsed = parse_draft(&bytes)?;
                if parsed.input.is_some() {
                    return Err(AppError::unprocessable(
                        "invalid_job",
                        "with a file part, the spec has no `input`",
                    ));
                }
                draft = Some(parsed);
            }
            Some("file") if file.is_none() => {
                let name = field.file_name().map(str::to_owned);
                let received = uploads::receive_field(state, &plan, &mut field)
                    .await
                    .map_err(|e| uploads::refused(state, tenant, &client, e))?;
                file = Some((received, name));
            }
            _ => {
                return Err(AppError::bad_request(
                    "the form takes one `file` part and one `spec` part",
                ))
            }
        }
    }
    let (Some(draft), Some((received, filename))) = (draft, file) else {
        return Err(AppError::bad_request(
            "the form needs a `file` part and a `spec` part",
        ));
    };
    let upload = uploads::store_upload(state, tenant, &plan, received, filename)
        .await
        .map_err(|e| uploads::refused(state, tenant, &client, e))?;
    // A retry carries the same file and spec: hash both.
    let mut canonical = draft.canonical();
    canonical.extend_from_slice(upload.sha256.as_bytes());
    let submitted = async {
        let idem = idempotency(idempotency_key, &canonical)?;
        let spec = draft
            .with_input(InputRef::Upload(upload.id))
            .map_err(|e| AppError::unprocessable("invalid_job", e.0))?;
        submit(state, tenant, &client, spec, idem).await
    }
    .await;
    match submitted {
        Ok(s) if s.created => Ok(s),
        other => {
            // No job uses this file: a replay returns the original job (with the upload of the
            // first request), and a refusal creates none. Nothing is left behind.
            uploads::discard(state, &upload).await;
            other
        }
    }
}

/// Parsed query of `GET /v1/jobs`.
#[derive(Debug, Default)]
pub struct ListQuery {
    pub status: Option<JobState>,
    pub page: PageQuery<JobId>,
}

impl ListQuery {
    /// Parses `status`, `limit` and `cursor`; anything else, or a bad value, is a `400`.
    pub fn parse(pairs: &[(String, String)]) -> Result<Self, AppError> {
        let mut query = ListQuery::default();
        for (name, value) in pairs {
            if query.page.take(name, value, "job")? {
                continue;
            }
            match name.as_str() {
                "status" => {
                    query.status = Some(value.parse().map_err(
                        |e: audiomill_core::ParseStateError| {
                            AppError::bad_request(format!("status: {e}"))
                        },
                    )?)
                }
                other => return Err(page::unknown_parameter(other, "status, limit, cursor")),
            }
        }
        Ok(query)
    }
}

/// A page of the tenant's jobs and the cursor of the next one.
pub async fn list(
    state: &AppState,
    tenant: Tenant,
    query: ListQuery,
) -> Result<(Vec<Job>, Option<JobId>), AppError> {
    let jobs = state
        .store()
        .list_jobs(
            tenant.account,
            JobFilter {
                state: query.status,
            },
            query.page.store_page(),
        )
        .await?;
    Ok(query.page.split(jobs, |j| j.id))
}

/// One of the tenant's jobs (`404` for another's, as for one that does not exist).
pub async fn get(state: &AppState, tenant: Tenant, id: JobId) -> Result<Job, AppError> {
    state
        .store()
        .get_job(tenant.account, id)
        .await?
        .ok_or_else(|| AppError::not_found("job"))
}

/// What `DELETE /v1/jobs/{id}` did.
pub enum Deleted {
    /// A queued job was canceled.
    Canceled(Job),
    /// A running job was asked to stop; its worker stops it within seconds.
    CancelRequested(Job),
    /// A finished job was deleted with its artifacts.
    Removed,
}

/// Cancels a queued or running job, or deletes a finished one with its artifacts.
pub async fn cancel_or_delete(
    state: &AppState,
    tenant: Tenant,
    id: JobId,
) -> Result<Deleted, AppError> {
    match state.store().request_cancel(tenant.account, id).await? {
        CancelOutcome::NotFound => Err(AppError::not_found("job")),
        CancelOutcome::Canceled(job) => Ok(Deleted::Canceled(job)),
        CancelOutcome::Requested(job) => Ok(Deleted::CancelRequested(job)),
        CancelOutcome::AlreadyFinished(_) => {
            match state.store().delete_job(tenant.account, id).await? {
                None => Err(AppError::not_found("job")),
                Some(Err(state)) => {
                    Err(AppError::conflict(format!("the job is {state}; try again")))
                }
                Some(Ok(artifacts)) => {
                    for artifact in artifacts {
                        match BlobKey::from_stored(&artifact.blob_key) {
                            Some(key) => state.blob().delete(&key).await?,
                            None => {
                                tracing::error!(artifact = %artifact.id, "stored blob key is invalid")
                            }
                        }
                    }
                    Ok(Deleted::Removed)
                }
            }
        }
    }
}
