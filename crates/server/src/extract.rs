//! Typed request bodies: JSON parsed at the edge, with a problem+json answer naming what is
//! wrong (axum's own `Json` answers with plain text).

use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::{AppError, AppState};

/// A JSON body of at most `max_json_bytes`, parsed into `T` (unknown fields refused where `T`
/// says so).
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = AppError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, AppError> {
        let limit = state.config().max_json_bytes;
        let bytes = axum::body::to_bytes(request.into_body(), limit)
            .await
            .map_err(|_| {
                AppError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    format!("the body is at most {limit} bytes"),
                )
            })?;
        audiomill_core::json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| AppError::unprocessable("invalid_request", e.to_string()))
    }
}
