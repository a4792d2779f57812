//! Typed request bodies: JSON parsed at the edge, with a problem+json answer naming what is
//! wrong (axum's own `Json` answers with plain text).

use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

use crate::{AppError, AppState};

/// A JSON body of at most `max_json_bytes`, parsed into `T` (unknown fields refused where `T`
/// says so).
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = AppError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, AppError> {
        let limit = state.config().max_json_bytes;
        let bytes = crate::body::read_capped(request.into_body(), limit, "the body").await?;
        audiomill_core::json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| AppError::unprocessable("invalid_request", e.to_string()))
    }
}
