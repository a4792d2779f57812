//! Submitting, listing, canceling and deleting jobs.

use audiomill_blob::BlobKey;
use audiomill_core::{InputRef, JobId, JobRequest, JobSpec, JobState, Operation, SeparateOptions};
use audiomill_store::{CancelOutcome, Idempotency, InsertJob, Job, JobFilter, NewJob};
use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Request};
use chrono::Utc;
use sha2::{Digest, Sha256};

use crate::auth::{client_addr_of, Tenant};
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
    let request_hash = Sha256::digest(canonical_request)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(Some(Idempotency {
        key: key.to_owned(),
        request_hash,
    }))
}

/// The canonical form of a JSON job request, for idempotency: parsed and re-serialized, so
/// whitespace and key order do not make a retry look like a different request.
pub fn canonical_json(body: &[u8]) -> Vec<u8> {
    serde_json::from_slice::<serde_json::Value>(body)
        .and_then(|v| serde_json::to_vec(&v))
        .unwrap_or_else(|_| body.to_vec())
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

/// The multipart form of job submission: upload the `file` part, then submit `spec` with it.
pub async fn submit_multipart(
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
    let mut spec_bytes: Option<Bytes> = None;
    let mut file = None;
    while let Some(mut field) = form
        .next_field()
        .await
        .map_err(|e| uploads::refused(state, tenant, &client, uploads::multipart_error(e, cap)))?
    {
        match field.name() {
            Some("spec") if spec_bytes.is_none() => {
                let bytes = field
                    .bytes()
                    .await
                    .map_err(|e| uploads::multipart_error(e, cap))?;
                if bytes.len() > state.config().max_json_bytes {
                    return Err(AppError::bad_request("the spec part is too large"));
                }
                spec_bytes = Some(bytes);
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
    let (Some(spec_bytes), Some((received, filename))) = (spec_bytes, file) else {
        return Err(AppError::bad_request(
            "the form needs a `file` part and a `spec` part",
        ));
    };
    // Validate the spec before storing the file, so a bad spec leaves nothing behind.
    let mut spec_json: serde_json::Value = audiomill_core::json::from_slice(&spec_bytes)
        .map_err(|e| AppError::unprocessable("invalid_job", e.to_string()))?;
    let object = spec_json
        .as_object_mut()
        .ok_or_else(|| AppError::unprocessable("invalid_job", "the spec must be a JSON object"))?;
    if object.contains_key("input") {
        return Err(AppError::unprocessable(
            "invalid_job",
            "with a file part, the spec has no `input`",
        ));
    }
    let placeholder = InputRef::Upload(audiomill_core::UploadId::new());
    object.insert(
        "input".into(),
        serde_json::to_value(placeholder).expect("ids serialize"),
    );
    let request: JobRequest = audiomill_core::json::from_value(spec_json.clone())
        .map_err(|e| AppError::unprocessable("invalid_job", e.to_string()))?;
    let mut spec =
        JobSpec::from_request(request).map_err(|e| AppError::unprocessable("invalid_job", e.0))?;
    // A retry carries the same file and spec: hash both.
    let upload = uploads::store_upload(state, tenant, &plan, received, filename)
        .await
        .map_err(|e| uploads::refused(state, tenant, &client, e))?;
    object_without_input(&mut spec_json);
    let mut canonical = serde_json::to_vec(&spec_json).expect("JSON values serialize");
    canonical.extend_from_slice(upload.sha256.as_bytes());
    let submitted = async {
        let idem = idempotency(idempotency_key, &canonical)?;
        spec.input = InputRef::Upload(upload.id);
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

fn object_without_input(value: &mut serde_json::Value) {
    if let Some(object) = value.as_object_mut() {
        object.remove("input");
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
