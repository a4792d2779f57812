//! What the ops routes report: readiness of each dependency, and the metrics.

use crate::views::Readiness;
use crate::AppState;

/// Whether the service is ready (database, storage, disk), and the report of each part.
pub async fn readiness(state: &AppState) -> (bool, Readiness) {
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
    (ready, body)
}

/// The metrics in the OpenMetrics text format, with the queue depth read now.
pub async fn metrics_text(state: &AppState) -> Option<String> {
    if let Ok(depth) = state.store().queue_depth(chrono::Utc::now()).await {
        state.metrics().set_queue_depth(depth);
    }
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, state.registry()).ok()?;
    Some(text)
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
