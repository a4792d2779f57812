//! The check a URL input passes before its job is accepted.
//!
//! The URL goes through the outbound policy (`audiomill-net`): scheme, credentials, port,
//! length, literal addresses in every numeric form, and the addresses its host name resolves
//! to now. A refusal is `422 blocked_url` and a `security` event. The worker checks again at
//! every connection and every redirect hop: a name that resolves to a public address now may
//! not later (DNS rebinding), so this check is the early, friendly answer, not the guard.

use audiomill_core::InputUrl;
use audiomill_net::{resolve_checked, OutboundUrl, ResolveRefused, SystemResolver};
use std::time::Duration;

use crate::auth::Tenant;
use crate::{AppError, AppState};

/// How long the name lookup of a submitted URL may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Refuses a URL the outbound policy refuses.
pub async fn check(
    state: &AppState,
    tenant: Tenant,
    client: &str,
    url: &InputUrl,
) -> Result<(), AppError> {
    let policy = &state.config().url_policy;
    let blocked = |reason: String| {
        state.metrics().security_event("blocked_url");
        tracing::warn!(
            target: "security",
            event = "blocked_url",
            account = %tenant.account,
            client,
            reason = %reason,
            "URL input refused"
        );
        AppError::unprocessable(
            "blocked_url",
            format!("the url cannot be fetched: {reason}"),
        )
    };
    let parsed = OutboundUrl::parse(url.as_str(), policy).map_err(|e| blocked(e.to_string()))?;
    let Some(host) = parsed.domain() else {
        // A literal address was checked by the parse.
        return Ok(());
    };
    let (host, port) = (host.to_owned(), parsed.port());
    let allow_private = policy.allow_private_networks;
    let lookup = tokio::task::spawn_blocking(move || {
        resolve_checked(&SystemResolver, &host, port, allow_private)
    });
    match tokio::time::timeout(LOOKUP_TIMEOUT, lookup).await {
        Ok(Ok(Err(e @ ResolveRefused::Address(_)))) => Err(blocked(e.to_string())),
        // A name that does not resolve (now) is the worker's to report, with the job.
        Ok(Ok(Ok(_) | Err(ResolveRefused::NoAddress))) | Err(_) => Ok(()),
        Ok(Err(e)) => Err(AppError::internal(format!("name lookup task: {e}"))),
    }
}
