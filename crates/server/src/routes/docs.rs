//! `/openapi.json` and the human docs page.

use axum::http::header;
use axum::response::{Html, IntoResponse, Response};

/// The human guide to the API (static; the reference is `/openapi.json`).
pub async fn page() -> Response {
    (
        [(
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        )],
        Html(include_str!("../../../../docs/api.html")),
    )
        .into_response()
}
