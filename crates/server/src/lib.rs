//! The HTTP API of audiomill.
//!
//! Owns: the routes ([`build_router`], all listed in one place), authentication ([`Tenant`]),
//! the one mapping from errors to `application/problem+json` ([`AppError`]), the OpenAPI
//! document (generated from the handlers with `utoipa`, so routes and spec cannot drift),
//! Server-Sent Events of job progress, ranged file downloads, and rate limits per key or
//! client address ([`RateLimiter`], in memory per API node).
//!
//! Handlers are thin: they extract typed input (a [`Tenant`], a typed id, a parsed body), call
//! one function of [`service`], and map its result. The server knows nothing of DSP: uploads are
//! probed through the [`Prober`] the binary plugs in, jobs are run by the worker.
//!
//! Must not depend on: the media engine, the worker, SQL (only the `Store` trait).

mod auth;
mod body;
mod client;
mod credentials;
mod error;
mod extract;
mod http;
mod metrics;
mod ratelimit;
pub mod routes;
pub mod service;
mod state;
pub mod views;

pub use auth::Tenant;
pub use client::{CidrError, ClientAddr, IpCidr};
pub use error::{AppError, Problem};
pub use metrics::HttpMetrics;
pub use ratelimit::{Decision, RateLimiter, Subject};
pub use state::{
    AppState, InstalledModel, ModelLookupError, ModelRegistry, ModelSummary, NoModels, Prober,
    ServerConfig,
};

use axum::http::{header, HeaderName, HeaderValue, Method};
use axum::routing::get;
use axum::Router;
use tower_http::cors::{AllowOrigin, CorsLayer};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

#[derive(OpenApi)]
#[openapi(
    info(title = "audiomill", description = "Self-hosted audio processing: upload, convert, analyze, separate into stems.", license(name = "AGPL-3.0-or-later")),
    modifiers(&SecuritySchemes),
    components(schemas(audiomill_core::ConvertOptions, audiomill_core::AnalyzeOptions, audiomill_core::SeparateOptions, audiomill_core::DownloadOptions)),
    tags((name = "uploads", description = "Input files"), (name = "jobs", description = "Processing jobs"),
         (name = "files", description = "Results"), (name = "models", description = "Separation models"), (name = "usage", description = "Quota of the account's plan"), (name = "admin", description = "Plans, accounts and keys (admin scope)"), (name = "ops", description = "Health and metrics"))
)]
struct ApiDoc;

struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("am_…")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "api_key_header",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
    }
}

fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(routes::health::healthz))
        .routes(routes!(routes::health::readyz))
        .routes(routes!(routes::health::metrics))
        .routes(routes!(routes::uploads::create, routes::uploads::list))
        .routes(routes!(routes::uploads::get, routes::uploads::delete))
        .routes(routes!(routes::jobs::create, routes::jobs::list))
        .routes(routes!(routes::jobs::get, routes::jobs::delete))
        .routes(routes!(routes::jobs::events))
        .routes(routes!(routes::files::get))
        .routes(routes!(routes::models::list))
        .routes(routes!(routes::usage::get))
        .routes(routes!(
            routes::admin::list_plans,
            routes::admin::create_plan
        ))
        .routes(routes!(routes::admin::update_plan))
        .routes(routes!(
            routes::admin::list_accounts,
            routes::admin::create_account
        ))
        .routes(routes!(routes::admin::set_account_plan))
        .routes(routes!(routes::admin::list_keys, routes::admin::create_key))
        .routes(routes!(routes::admin::revoke_key))
        .routes(routes!(routes::admin::rotate_key))
}

/// The OpenAPI document of the API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_routes().split_for_parts().1
}

/// The whole application: every route with its middleware. Tests build the same router.
pub fn build_router(state: AppState) -> Router {
    let (router, api) = api_routes().split_for_parts();
    let spec = api
        .to_pretty_json()
        .expect("the OpenAPI document serializes");
    let mut router = router
        .route(
            "/openapi.json",
            get(move || async move { ([(header::CONTENT_TYPE, "application/json")], spec) }),
        )
        .route("/docs", get(routes::docs::page))
        .fallback(|| async { AppError::not_found("route") })
        // Uploads and multipart jobs count their own bytes; JSON bodies are capped in handlers.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(tower_http::catch_panic::CatchPanicLayer::new())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            http::request_timeout,
        ))
        // Inside the request-id, problem, metrics and security-header layers (a 429 has an id,
        // a problem+json body, is counted and has the headers) and inside CORS (preflights are
        // free, and browsers may read a 429).
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            ratelimit::limit,
        ));
    if let Some(cors) = cors_layer(&state.config().cors_origins) {
        router = router.layer(cors);
    }
    router
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            http::trusted_hosts,
        ))
        .layer(axum::middleware::from_fn(http::security_headers))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .layer(axum::middleware::from_fn(http::access_log))
        .layer(axum::middleware::from_fn(error::render_problems))
        .layer(axum::middleware::from_fn(http::request_id))
        .with_state(state)
}

/// CORS for the configured origins only; no layer at all (so no CORS headers) when none are.
fn cors_layer(origins: &[String]) -> Option<CorsLayer> {
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    if origins.is_empty() {
        return None;
    }
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::GET, Method::POST, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::RANGE,
                HeaderName::from_static("x-api-key"),
                HeaderName::from_static("idempotency-key"),
            ])
            .expose_headers([
                HeaderName::from_static("x-request-id"),
                header::CONTENT_RANGE,
                header::CONTENT_DISPOSITION,
            ])
            .max_age(std::time::Duration::from_secs(600)),
    )
}
