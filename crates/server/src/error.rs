//! The one mapping from errors to HTTP responses.
//!
//! Handlers return [`AppError`]. Its response carries a [`Problem`] as an extension and no body
//! yet; the [`render_problems`] middleware, which knows the request id, writes the RFC 9457
//! `application/problem+json` body and logs the internal detail of 5xx errors. The same
//! middleware turns any other error response (an axum rejection, a 404 from the fallback, a
//! panic caught by tower) into problem+json, so no plain-text error ever leaves the server.

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// An API error: a status, a stable problem type, and a message safe to show.
#[derive(Debug)]
pub struct AppError {
    status: StatusCode,
    kind: &'static str,
    detail: String,
    /// Extra headers (e.g. `WWW-Authenticate`).
    headers: Vec<(header::HeaderName, HeaderValue)>,
    /// What went wrong inside, for the log only.
    internal: Option<String>,
}

/// The body of every error response (RFC 9457).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// Stable problem type, e.g. `not_found`, `unsupported_media`, `payload_too_large`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary of the problem type.
    pub title: String,
    /// HTTP status code.
    pub status: u16,
    /// Human-readable explanation of this occurrence.
    pub detail: String,
    /// The request id, also sent in the `X-Request-Id` header; quote it when reporting a problem.
    pub request_id: String,
}

/// Carried from the handler to [`render_problems`] in the response extensions.
#[derive(Debug, Clone)]
struct PendingProblem {
    kind: &'static str,
    detail: String,
    internal: Option<String>,
}

impl AppError {
    /// An error with an explicit status and type.
    pub fn new(status: StatusCode, kind: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            detail: detail.into(),
            headers: Vec::new(),
            internal: None,
        }
    }

    /// 400: the request is malformed.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", detail)
    }

    /// 401: no valid key. The detail is the same for every cause, on purpose.
    pub fn unauthorized() -> Self {
        let mut e = Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid API key is required (Authorization: Bearer am_… or X-API-Key)",
        );
        e.headers.push((
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"audiomill\""),
        ));
        e
    }

    /// 404: no such resource *for this tenant* (others' resources are not found either).
    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    /// 409: the resource is not in a state that allows this.
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", detail)
    }

    /// 413: an upload is larger than allowed.
    pub fn payload_too_large(limit: u64) -> Self {
        Self::too_large(format!("the upload exceeds the limit of {limit} bytes"))
    }

    /// 413: a body (or a part of one) is larger than `limit` bytes.
    pub fn body_too_large(what: &str, limit: u64) -> Self {
        Self::too_large(format!("{what} is at most {limit} bytes"))
    }

    fn too_large(detail: String) -> Self {
        let mut e = Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", detail);
        // We stop reading the body here; the rest of it is still on the wire, so the
        // connection cannot carry another request.
        e.headers
            .push((header::CONNECTION, HeaderValue::from_static("close")));
        e
    }

    /// 415: the content is not audio we can decode.
    pub fn unsupported_media(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media",
            detail,
        )
    }

    /// 422: well-formed but unacceptable (invalid options, limits, idempotency mismatch).
    pub fn unprocessable(kind: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, kind, detail)
    }

    /// 429 for a plan limit (quota, active jobs), with `Retry-After` in seconds.
    pub fn plan_limit(
        kind: &'static str,
        detail: impl Into<String>,
        retry_after_secs: u64,
    ) -> Self {
        let mut e = Self::new(StatusCode::TOO_MANY_REQUESTS, kind, detail);
        e.headers.push((
            header::RETRY_AFTER,
            HeaderValue::from(retry_after_secs.max(1)),
        ));
        e
    }

    /// 403: the key or the plan does not allow this.
    pub fn forbidden(kind: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, kind, detail)
    }

    /// 416: the requested range is outside the file.
    pub fn range_not_satisfiable(size: u64) -> Self {
        let mut e = Self::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "range_not_satisfiable",
            "the requested range is outside the file",
        );
        if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
            e.headers.push((header::CONTENT_RANGE, v));
        }
        e
    }

    /// 429: the caller's rate limit is spent; `retry_after_secs` (at least 1) is when to retry.
    pub fn rate_limited(retry_after_secs: u64) -> Self {
        let retry_after_secs = retry_after_secs.max(1);
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many requests; retry in {retry_after_secs} s"),
        );
        e.headers
            .push((header::RETRY_AFTER, HeaderValue::from(retry_after_secs)));
        e
    }

    /// 503: a dependency is down.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", detail)
    }

    /// 500: something broke inside. `internal` goes to the log, never to the client.
    pub fn internal(internal: impl std::fmt::Display) -> Self {
        let mut e = Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the server failed to handle this request",
        );
        e.internal = Some(internal.to_string());
        e
    }

    /// The status this error answers with.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The problem type.
    pub fn kind(&self) -> &'static str {
        self.kind
    }
}

impl From<audiomill_store::StoreError> for AppError {
    fn from(e: audiomill_store::StoreError) -> Self {
        AppError::internal(e)
    }
}

impl From<crate::service::admin::AdminError> for AppError {
    fn from(e: crate::service::admin::AdminError) -> Self {
        use crate::service::admin::AdminError;
        match e {
            AdminError::Invalid(detail) => AppError::unprocessable("invalid_request", detail),
            AdminError::NotFound(what) => AppError::not_found(what),
            AdminError::Conflict(what) => AppError::conflict(format!("{what} already exists")),
            AdminError::Store(e) => e.into(),
        }
    }
}

impl From<audiomill_blob::BlobError> for AppError {
    fn from(e: audiomill_blob::BlobError) -> Self {
        AppError::internal(e)
    }
}

impl From<std::io::Error> for AppError {
    fn from(e: std::io::Error) -> Self {
        AppError::internal(e)
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let mut response = self.status.into_response();
        response.headers_mut().extend(self.headers);
        response.extensions_mut().insert(PendingProblem {
            kind: self.kind,
            detail: self.detail,
            internal: self.internal,
        });
        response
    }
}

fn title(status: StatusCode) -> String {
    status.canonical_reason().unwrap_or("Error").to_string()
}

/// Generic problem type for error responses that did not come from an [`AppError`].
fn kind_for(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media",
        StatusCode::UNPROCESSABLE_ENTITY => "unprocessable",
        StatusCode::REQUEST_TIMEOUT => "timeout",
        StatusCode::TOO_MANY_REQUESTS => "rate_limited",
        s if s.is_server_error() => "internal",
        _ => "error",
    }
}

/// Middleware: renders problem+json bodies with the request id and logs server errors.
pub async fn render_problems(request: Request, next: Next) -> Response {
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let mut response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let pending = response.extensions_mut().remove::<PendingProblem>();
    // A handler that answers an error status with its own JSON body (e.g. `/readyz`) meant
    // it; only bodies from elsewhere (framework rejections, plain text) are replaced.
    let deliberate_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| {
            v.as_bytes().starts_with(b"application/problem+json")
                || v.as_bytes().starts_with(b"application/json")
        });
    if pending.is_none() && deliberate_json {
        return response;
    }
    let (kind, detail) = match pending {
        Some(p) => {
            if let Some(internal) = &p.internal {
                tracing::error!(%request_id, %method, %path, error = %internal, "request failed");
            }
            (p.kind.to_owned(), p.detail)
        }
        // A rejection or fallback response: its body may hold framework text; keep only the
        // status. Known rejections that matter get their own AppError in the handlers.
        None => {
            let detail = match status {
                StatusCode::NOT_FOUND => "no such route".to_owned(),
                StatusCode::METHOD_NOT_ALLOWED => "method not allowed on this route".to_owned(),
                StatusCode::PAYLOAD_TOO_LARGE => "the request body is too large".to_owned(),
                s if s.is_server_error() => {
                    tracing::error!(%request_id, %method, %path, status = s.as_u16(), "request failed");
                    "the server failed to handle this request".to_owned()
                }
                _ => "the request could not be processed".to_owned(),
            };
            (kind_for(status).to_owned(), detail)
        }
    };
    let problem = Problem {
        kind,
        title: title(status),
        status: status.as_u16(),
        detail,
        request_id,
    };
    let body = serde_json::to_vec(&problem).unwrap_or_default();
    let (mut parts, _) = response.into_parts();
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(body))
}
