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
