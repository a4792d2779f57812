//! `/healthz`, `/readyz`, `/metrics`: no key needed.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;

/// Liveness answer.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// Always `ok` when the process answers.
    pub status: &'static str,
}

/// Alive: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Readiness: each dependency and its state.
#[derive(Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `unavailable`.
    pub status: &'static str,
    /// `ok` or `error`.
    pub database: &'static str,
    /// `ok` or `error`.
    pub storage: &'static str,
    /// `ok` or `low` (below the configured minimum) or `error`.
    pub disk: &'static str,
    /// Free bytes on the data directory's file system, when known.
    pub disk_free_bytes: Option<u64>,
    /// yt-dlp's version, or `missing` (links to sites fail; everything else works).
    pub yt_dlp: String,
}

/// Ready: the database answers, storage is writable, and the disk has room.
#[utoipa::path(get, path = "/readyz", tag = "ops", responses(
    (status = 200, body = Readiness), (status = 503, body = Readiness)))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    let database = state
        .store()
        .ping()
        .await
        .map_err(|e| tracing::error!(error = %e, "readiness: database"))
        .is_ok();
    let storage = state
        .blob()
        .check()
        .await
        .map_err(|e| tracing::error!(error = %e, "readiness: storage"))
        .is_ok();
    let free = free_bytes(&state.config().data_dir);
    let disk = match free {
        Some(f) if f >= state.config().min_free_disk_bytes => "ok",
        Some(_) => "low",
        None => "error",
    };
    let ready = database && storage && disk == "ok";
    let body = Readiness {
        status: if ready { "ready" } else { "unavailable" },
        database: if database { "ok" } else { "error" },
        storage: if storage { "ok" } else { "error" },
        disk,
        disk_free_bytes: free,
        yt_dlp: state
            .config()
            .ytdlp_version
            .clone()
            .unwrap_or_else(|| "missing".into()),
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// Free space of the file system holding `path` (statvfs).
fn free_bytes(path: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: c_path is a valid NUL-terminated string and stat points to writable memory of
    // the right type; statvfs initializes it when it returns 0.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), stat.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so the struct is initialized.
    let stat = unsafe { stat.assume_init() };
    #[allow(clippy::unnecessary_cast)] // the field types differ between platforms
    Some(stat.f_bavail as u64 * stat.f_frsize as u64)
}

/// Prometheus metrics (OpenMetrics text).
#[utoipa::path(get, path = "/metrics", tag = "ops", responses((status = 200, content_type = "application/openmetrics-text", body = String)))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    if let Ok(depth) = state.store().queue_depth(chrono::Utc::now()).await {
        state.metrics().set_queue_depth(depth);
    }
    let mut text = String::new();
    if prometheus_client::encoding::text::encode(&mut text, state.registry()).is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
