//! The API key a request presents, and the hash it is looked up (and rate-limited) by.

use audiomill_core::key::ApiKey;
use axum::http::HeaderMap;

/// The key text presented, from `Authorization: Bearer` or `X-API-Key`.
pub(crate) fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(value) = headers.get(axum::http::header::AUTHORIZATION) {
        let value = value.to_str().ok()?;
        let (scheme, token) = value.split_once(' ')?;
        return scheme.eq_ignore_ascii_case("bearer").then(|| token.trim());
    }
    headers.get("x-api-key")?.to_str().ok().map(str::trim)
}

/// The stored hash of a presented key text, and whether the text is a well-formed key: the
/// key's own hash when it is, else the hash of the text (which matches nothing).
pub(crate) fn key_hash(text: &str) -> (String, bool) {
    match ApiKey::parse(text) {
        Ok(key) => (key.hash(), true),
        Err(_) => (audiomill_core::digest::sha256_hex(text.as_bytes()), false),
    }
}
