//! Authentication: the [`Tenant`] extractor.
//!
//! Every failure — missing header, malformed key, unknown key, revoked key — answers the same
//! `401` and takes the same path through the code: a malformed key is still hashed and looked
//! up, so the response time does not tell which check failed. Failures are logged on the
//! `security` target with the client address and the reason, never the key.

use audiomill_core::{AccountId, KeyId, Scope};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::client::client_addr;
use crate::credentials::{key_hash, presented_key};
use crate::{AppError, AppState};

/// The authenticated caller: the account that owns the key. Handlers that take a `Tenant`
/// require a valid key.
#[derive(Debug, Clone, Copy)]
pub struct Tenant {
    /// The account everything this request touches must belong to.
    pub account: AccountId,
    /// The key used.
    pub key: KeyId,
    /// What the key may do.
    pub scopes: Scopes,
}

/// A key's scopes, as a small set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scopes {
    read: bool,
    write: bool,
    admin: bool,
}

impl Scopes {
    /// The set of `scopes`.
    pub fn of(scopes: &[Scope]) -> Self {
        Self {
            read: scopes.contains(&Scope::JobsRead),
            write: scopes.contains(&Scope::JobsWrite),
            admin: scopes.contains(&Scope::Admin),
        }
    }

    /// Whether `scope` is in the set.
    pub fn has(self, scope: Scope) -> bool {
        match scope {
            Scope::JobsRead => self.read,
            Scope::JobsWrite => self.write,
            Scope::Admin => self.admin,
        }
    }
}

impl Tenant {
    /// `403` unless the key has `scope`.
    pub fn require(&self, scope: Scope) -> Result<(), AppError> {
        if self.scopes.has(scope) {
            Ok(())
        } else {
            tracing::warn!(
                target: "security",
                event = "scope_denied",
                account = %self.account,
                key = %self.key,
                scope = scope.as_str(),
                "request refused: the key lacks a scope"
            );
            Err(AppError::forbidden(
                "insufficient_scope",
                format!("this key does not have the {scope} scope"),
            ))
        }
    }
}

impl FromRequestParts<AppState> for Tenant {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let request_id = parts
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let reject = |reason: &'static str| {
            state.metrics().security_event("auth_failed");
            tracing::warn!(
                target: "security",
                event = "auth_failed",
                reason,
                client = %client_addr(parts),
                %request_id,
                path = %parts.uri.path(),
                "authentication failed"
            );
            AppError::unauthorized()
        };
        let Some(text) = presented_key(&parts.headers) else {
            return Err(reject("missing"));
        };
        // Hash and look up even a malformed key, so every failure costs the same.
        let (hash, well_formed) = key_hash(text);
        let record = state.store().key_by_hash(&hash).await?;
        match record {
            _ if !well_formed => Err(reject("malformed")),
            None => Err(reject("unknown")),
            Some(k) if k.revoked_at.is_some() => Err(reject("revoked")),
            Some(k) if !k.is_active(chrono::Utc::now()) => Err(reject("expired")),
            Some(k) => Ok(Tenant {
                account: k.account_id,
                key: k.id,
                scopes: Scopes::of(&k.scopes),
            }),
        }
    }
}
