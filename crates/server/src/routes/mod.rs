//! All routes, in one place. Modules mirror URLs.

pub mod admin;
pub mod docs;
pub mod files;
pub mod health;
pub mod jobs;
pub mod models;
pub mod uploads;
pub mod usage;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::str::FromStr;

use crate::{AppError, AppState};

/// A typed id from the last path segment. An id that does not parse cannot exist, so it is a
/// `404`, like another tenant's id.
pub struct IdPath<T>(pub T);

impl<T: FromStr + Send> FromRequestParts<AppState> for IdPath<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let axum::extract::Path(text) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|_| AppError::not_found("resource"))?;
        text.parse()
            .map(IdPath)
            .map_err(|_| AppError::not_found("resource"))
    }
}

/// A `201 Created` or `202 Accepted` answer: the resource as JSON, and its address in
/// `Location` (paths built from server ids and validated names only).
pub fn created_at(status: StatusCode, location: String, body: impl serde::Serialize) -> Response {
    let mut response = (status, Json(body)).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}
