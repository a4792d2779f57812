//! Receiving uploads: stream to disk under a counted cap, hash, probe by content, store.
//!
//! The size cap is counted on the bytes actually received, never taken from `Content-Length`.
//! Until the upload row is committed, the bytes live in a [`TempFile`] that deletes itself on
//! drop, so every early return (too large, empty, not audio, client gone) leaves nothing behind.

use audiomill_blob::BlobKey;
use audiomill_core::{ErrorCode, JobError, UploadId};
use audiomill_store::{Upload, UploadDeletion};
use axum::extract::FromRequest;
use bytes::Bytes;
use chrono::Utc;
use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

use crate::auth::Tenant;
use crate::service::page::{self, PageQuery};
use crate::{AppError, AppState};

/// A file that is deleted when dropped unless [`TempFile::keep`] was called.
#[derive(Debug)]
pub struct TempFile {
    path: Option<PathBuf>,
}

impl TempFile {
    /// The file's path.
    pub fn path(&self) -> &Path {
        self.path
            .as_deref()
            .expect("path is present until keep() consumes the TempFile")
    }

    /// Stops the automatic deletion (the file was moved away) and returns the path.
    pub fn keep(mut self) -> PathBuf {
        self.path
            .take()
            .expect("path is present until keep() consumes the TempFile")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(path) = &self.path {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Bytes received so far: a file on disk, its running hash and length.
pub struct Receiver {
    file: tokio::fs::File,
    temp: TempFile,
    hasher: Sha256,
    len: u64,
    cap: u64,
}

impl Receiver {
    /// A new receiver writing into `dir`, refusing more than `cap` bytes.
    pub async fn create(dir: &Path, cap: u64) -> Result<Self, AppError> {
        let path = dir.join(format!("upload-{}", UploadId::new()));
        let file = tokio::fs::File::create(&path).await?;
        Ok(Self {
            file,
            temp: TempFile { path: Some(path) },
            hasher: Sha256::new(),
            len: 0,
            cap,
        })
    }

    /// Appends a chunk; `413` once the total passes the cap.
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), AppError> {
        self.len += chunk.len() as u64;
        if self.len > self.cap {
            return Err(AppError::payload_too_large(self.cap));
        }
        self.hasher.update(chunk);
        self.file.write_all(chunk).await?;
        Ok(())
    }

    /// Drains a body stream into the file.
    pub async fn write_stream<S, E>(&mut self, mut stream: S) -> Result<(), AppError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                // The body limit layer and a client hang-up both end up here.
                let text = e.to_string();
                if text.contains("length limit") {
                    AppError::payload_too_large(self.cap)
                } else {
                    AppError::bad_request("the request body could not be read")
                }
            })?;
            if let Err(e) = self.write(&chunk).await {
                if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    crate::body::linger(&mut stream).await;
                }
                return Err(e);
            }
        }
        Ok(())
    }

    /// Bytes received so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was received.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Flushes and returns the file with its hex SHA-256.
    pub async fn finish(mut self) -> Result<(TempFile, String, u64), AppError> {
        self.file.flush().await?;
        self.file.sync_all().await?;
        let hash = audiomill_core::digest::hex(&self.hasher.finalize());
        Ok((self.temp, hash, self.len))
    }
}

/// Maps a probe failure to its HTTP answer.
pub fn probe_error(e: JobError) -> AppError {
    match e.code {
        ErrorCode::UnsupportedFormat | ErrorCode::DecodeFailed | ErrorCode::InvalidInput => {
            AppError::unsupported_media(e.message)
        }
        ErrorCode::InputTooLong => AppError::unprocessable("input_too_long", e.message),
        ErrorCode::SampleRateTooHigh => AppError::unprocessable("sample_rate_too_high", e.message),
        ErrorCode::TooManyChannels => AppError::unprocessable("too_many_channels", e.message),
        ErrorCode::ResourceLimit | ErrorCode::Timeout => {
            AppError::unsupported_media("the file could not be probed within the resource limits")
        }
        _ => AppError::internal(format!("probe failed: {}: {}", e.code, e.message)),
    }
}

/// Logs and counts a refused upload (any client error), then passes the error on.
pub fn refused(state: &AppState, tenant: Tenant, client: &str, e: AppError) -> AppError {
    if e.status().is_client_error() {
        state.metrics().security_event("upload_rejected");
        tracing::warn!(
            target: "security",
            event = "upload_rejected",
            account = %tenant.account,
            client,
            kind = e.kind(),
            "upload rejected"
        );
    }
    e
}

/// Receives an upload request (raw body or the first file field of a multipart form), probes
/// it and stores it. Every refusal is a security event.
pub async fn upload(
    state: &AppState,
    tenant: Tenant,
    request: axum::extract::Request,
) -> Result<Upload, AppError> {
    let client = crate::client::client_addr_of(&request);
    let result = async {
        let plan = TenantLimits::of(state, tenant).await?;
        let (received, filename) = if is_multipart(&request) {
            let cap = plan.upload_cap;
            let mut form = axum::extract::Multipart::from_request(request, state)
                .await
                .map_err(|_| AppError::bad_request("malformed multipart body"))?;
            let mut field = loop {
                match form
                    .next_field()
                    .await
                    .map_err(|e| multipart_error(e, cap))?
                {
                    Some(field) if field.file_name().is_some() || field.name() == Some("file") => {
                        break field
                    }
                    Some(_) => continue,
                    None => return Err(AppError::bad_request("the form has no file field")),
                }
            };
            let filename = field.file_name().map(str::to_owned);
            (receive_field(state, &plan, &mut field).await?, filename)
        } else {
            let filename = raw_body_filename(&request);
            (
                receive_body(state, &plan, request.into_body()).await?,
                filename,
            )
        };
        store_upload(state, tenant, &plan, received, filename).await
    }
    .await;
    result.map_err(|e| refused(state, tenant, &client, e))
}

/// The file name of a raw-body upload: the `filename` query parameter, else the `filename`
/// of a `Content-Disposition` header. Display only, like a form's file name.
fn raw_body_filename(request: &axum::extract::Request) -> Option<String> {
    let from_query = request.uri().query().and_then(|query| {
        query.split('&').find_map(|pair| {
            let (name, value) = pair.split_once('=')?;
            (name == "filename").then(|| audiomill_core::text::percent_decoded(value, true))
        })
    });
    from_query.or_else(|| {
        let header = request
            .headers()
            .get(axum::http::header::CONTENT_DISPOSITION)?
            .to_str()
            .ok()?;
        header.split(';').find_map(|param| {
            let (name, value) = param.trim().split_once('=')?;
            (name.trim().eq_ignore_ascii_case("filename"))
                .then(|| value.trim().trim_matches('"').to_owned())
        })
    })
}

/// Whether a request carries a multipart form.
pub fn is_multipart(request: &axum::extract::Request) -> bool {
    request
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("multipart/form-data")
        })
}

/// Probes received bytes and, if they are acceptable audio, stores them as an upload.
pub async fn store_upload(
    state: &AppState,
    tenant: Tenant,
    plan: &TenantLimits,
    received: Receiver,
    filename: Option<String>,
) -> Result<Upload, AppError> {
    if received.is_empty() {
        return Err(AppError::bad_request("the upload is empty"));
    }
    let (temp, sha256, size) = received.finish().await?;
    let limits = plan.limits;
    let media = state
        .prober()
        .probe(temp.path(), &limits)
        .await
        .map_err(probe_error)?;
    let id = UploadId::new();
    let key = BlobKey::upload(id);
    // The guard keeps watch until the bytes have moved: a failed move leaves no temp file.
    state.blob().put_file(&key, temp.path()).await?;
    temp.keep();
    let now = Utc::now();
    let upload = Upload {
        id,
        account_id: tenant.account,
        blob_key: key.as_str().to_owned(),
        filename: filename
            .map(|f| sanitize_filename(&f))
            .filter(|f| !f.is_empty()),
        size,
        sha256,
        media,
        created_at: now,
        expires_at: now + plan.retention,
    };
    if let Err(e) = state.store().insert_upload(&upload).await {
        // No row: remove the bytes too, so nothing is left behind.
        let _ = state.blob().delete(&key).await;
        return Err(e.into());
    }
    Ok(upload)
}

/// One of the tenant's uploads (`404` for another's).
pub async fn get(state: &AppState, tenant: Tenant, id: UploadId) -> Result<Upload, AppError> {
    state
        .store()
        .get_upload(tenant.account, id)
        .await?
        .ok_or_else(|| AppError::not_found("upload"))
}

/// A page of the tenant's uploads, newest first, and the cursor of the next page. Takes
/// `limit` and `cursor`; anything else is a `400`.
pub async fn list(
    state: &AppState,
    tenant: Tenant,
    pairs: &[(String, String)],
) -> Result<(Vec<Upload>, Option<UploadId>), AppError> {
    let mut query = PageQuery::<UploadId>::default();
    for (name, value) in pairs {
        if !query.take(name, value, "upload")? {
            return Err(page::unknown_parameter(name, "limit, cursor"));
        }
    }
    let uploads = state
        .store()
        .list_uploads(tenant.account, query.store_page())
        .await?;
    Ok(query.split(uploads, |u| u.id))
}

/// Deletes one of the tenant's uploads with its bytes, unless a queued or running job still
/// reads it (`409`, naming the job).
pub async fn delete(state: &AppState, tenant: Tenant, id: UploadId) -> Result<(), AppError> {
    match state
        .store()
        .delete_unused_upload(tenant.account, id)
        .await?
    {
        UploadDeletion::NotFound => Err(AppError::not_found("upload")),
        UploadDeletion::InUse(job) => Err(AppError::conflict(format!(
            "job {job} still reads this upload; cancel it or wait for it to end"
        ))),
        UploadDeletion::Deleted(upload) => {
            // The row is gone, so nothing can read the bytes any more; a failure here leaves
            // an orphan for the retention sweep, never a row without bytes.
            if let Some(key) = BlobKey::from_stored(&upload.blob_key) {
                if let Err(e) = state.blob().delete(&key).await {
                    tracing::error!(upload = %upload.id, error = %e, "could not delete a deleted upload's bytes");
                }
            }
            Ok(())
        }
    }
}

/// Deletes an upload that no job will use (bytes, then row). Failures are logged: the
/// retention reaper gets what is left.
pub async fn discard(state: &AppState, upload: &Upload) {
    if let Err(e) = state.blob().delete(&BlobKey::upload(upload.id)).await {
        tracing::error!(upload = %upload.id, error = %e, "could not delete an unused upload's bytes");
        return;
    }
    if let Err(e) = state.store().delete_upload(upload.id).await {
        tracing::error!(upload = %upload.id, error = %e, "could not delete an unused upload");
    }
}

/// Keeps a client's file name for display only: the last path component, printable, short.
pub fn sanitize_filename(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or("");
    base.chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect::<String>()
        .trim()
        .to_owned()
}

/// What an account's plan narrows in the server's own limits, for one request.
#[derive(Debug, Clone, Copy)]
pub struct TenantLimits {
    /// Largest upload, in bytes.
    pub upload_cap: u64,
    /// Limits the probe applies (the plan's longest input).
    pub limits: audiomill_core::Limits,
    /// How long an upload is kept.
    pub retention: std::time::Duration,
}

impl TenantLimits {
    /// The limits for `tenant`: the server's, narrowed by the account's plan.
    pub async fn of(state: &AppState, tenant: Tenant) -> Result<Self, AppError> {
        let (_, plan) = state.store().account_limits(tenant.account).await?;
        let config = state.config();
        let mut limits = config.limits;
        limits.max_upload_bytes = limits.max_upload_bytes.min(plan.max_upload_bytes);
        limits.max_duration_secs = limits.max_duration_secs.min(plan.max_input_seconds);
        Ok(Self {
            upload_cap: limits.max_upload_bytes,
            limits,
            retention: plan.retention(config.retention).uploads,
        })
    }
}

/// Receives a raw request body.
pub async fn receive_body(
    state: &AppState,
    plan: &TenantLimits,
    body: axum::body::Body,
) -> Result<Receiver, AppError> {
    let config = state.config();
    let mut receiver = Receiver::create(&config.upload_temp_dir, plan.upload_cap).await?;
    receiver.write_stream(body.into_data_stream()).await?;
    Ok(receiver)
}

/// Receives one multipart field.
pub async fn receive_field(
    state: &AppState,
    plan: &TenantLimits,
    field: &mut axum::extract::multipart::Field<'_>,
) -> Result<Receiver, AppError> {
    let config = state.config();
    let mut receiver = Receiver::create(&config.upload_temp_dir, plan.upload_cap).await?;
    loop {
        match field.chunk().await {
            Ok(Some(chunk)) => receiver.write(&chunk).await?,
            Ok(None) => break,
            Err(e) => return Err(multipart_error(e, plan.upload_cap)),
        }
    }
    Ok(receiver)
}

/// Maps a multipart parse error.
pub fn multipart_error(e: axum::extract::multipart::MultipartError, cap: u64) -> AppError {
    if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        AppError::payload_too_large(cap)
    } else {
        AppError::bad_request("malformed multipart body")
    }
}

#[cfg(test)]
mod tests {
    use super::sanitize_filename;

    #[test]
    fn filenames_lose_paths_and_controls() {
        assert_eq!(sanitize_filename("../../etc/passwd"), "passwd");
        assert_eq!(sanitize_filename("C:\\x\\song.mp3"), "song.mp3");
        assert_eq!(sanitize_filename("a\u{0}b\nc.wav"), "abc.wav");
    }
}
