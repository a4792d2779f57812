//! Cross-cutting HTTP middleware: request ids, security headers, trusted hosts, access log.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::time::Instant;

use crate::{AppError, AppState};

/// Header carrying the request id, in and out.
pub const REQUEST_ID: &str = "x-request-id";

/// Accepts a client's request id if it is short and plain, else makes one; puts it on the
/// request (for handlers and logs) and on the response.
pub async fn request_id(mut request: Request, next: Next) -> Response {
    let valid = |v: &HeaderValue| {
        let b = v.as_bytes();
        !b.is_empty()
            && b.len() <= 64
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(c))
    };
    let id = match request.headers().get(REQUEST_ID) {
        Some(v) if valid(v) => v.clone(),
        _ => HeaderValue::from_str(&format!("req_{}", ulid_text()))
            .expect("a ulid is a valid header value"),
    };
    request.headers_mut().insert(REQUEST_ID, id.clone());
    // Every event logged while the request is handled (security events among them) carries
    // the request id through this span.
    let span = tracing::info_span!(
        "request",
        request_id = %String::from_utf8_lossy(id.as_bytes())
    );
    let mut response = tracing::Instrument::instrument(next.run(request), span).await;
    response.headers_mut().insert(REQUEST_ID, id);
    response
}

fn ulid_text() -> String {
    // Reuse the id generator: a job id's random part is as good as any.
    let id = audiomill_core::JobId::new().to_string();
    id["job_".len()..].to_owned()
}

/// Adds the headers every response should carry.
pub async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(
            "default-src 'none'; frame-ancestors 'none'",
        ));
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// Refuses requests whose `Host` is not one the operator listed (loopback names by default).
pub async fn trusted_hosts(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| request.uri().host())
        .unwrap_or("");
    if host_allowed(host, &state.config().trusted_hosts) {
        return next.run(request).await;
    }
    state.metrics().security_event("untrusted_host");
    tracing::warn!(target: "security", event = "untrusted_host", "request for an untrusted Host refused");
    AppError::bad_request("this server does not answer to that host name").into_response()
}

fn host_allowed(host: &str, trusted: &[String]) -> bool {
    // Strip the port: `[::1]:8080` → `::1`, `example.com:443` → `example.com`.
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    if trusted.is_empty() {
        return matches!(name.as_str(), "localhost" | "127.0.0.1" | "::1");
    }
    trusted
        .iter()
        .any(|t| t.eq_ignore_ascii_case(&name) || t == "*")
}

/// One structured log line per request: method, route template, status, latency, request id.
pub async fn access_log(request: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let request_id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let response = next.run(request).await;
    tracing::info!(
        target: "http",
        %method,
        route,
        status = response.status().as_u16(),
        latency_ms = start.elapsed().as_secs_f64() * 1000.0,
        request_id,
        "request"
    );
    response
}

/// Middleware: a handler that has not answered in time is cut off with `503 timeout`. Routes
/// that receive files (uploads, multipart jobs) get the longer upload limit; streamed answers
/// (downloads, event streams) are not affected, since their handler answers at once and the
/// body streams after.
pub async fn request_timeout(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let config = state.config();
    let receives_files = request.method() == axum::http::Method::POST
        && matches!(request.uri().path(), "/v1/uploads" | "/v1/jobs");
    let limit = if receives_files {
        config.upload_timeout
    } else {
        config.request_timeout
    };
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => AppError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!("the request was not answered within {} s", limit.as_secs()),
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::host_allowed;

    #[test]
    fn hosts() {
        assert!(host_allowed("localhost:8080", &[]));
        assert!(host_allowed("127.0.0.1", &[]));
        assert!(host_allowed("[::1]:80", &[]));
        assert!(!host_allowed("evil.example:8080", &[]));
        assert!(!host_allowed("", &[]));
        let list = vec!["api.example.com".to_owned()];
        assert!(host_allowed("API.example.com:443", &list));
        assert!(!host_allowed("localhost", &list));
    }
}
