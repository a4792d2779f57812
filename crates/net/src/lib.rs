//! audiomill's outbound network policy (work in progress for issue 5, URL inputs).
//!
//! Every request audiomill makes on behalf of a user (URL inputs now, webhooks later) goes
//! through this policy: the URL is parsed and checked before anything is resolved
//! ([`OutboundUrl::parse`]), and every address a name resolves to, on every redirect hop, is
//! checked before a connection is made ([`address::check`]).
//!
//! Built so far: the address policy, the URL checks and checked name resolution. Still to come (see the issue): the
//! client that resolves names itself and connects only to checked addresses, redirects, byte
//! and time caps, and yt-dlp.

pub mod address;
mod resolve;
mod url_policy;

pub use address::Refused;
pub use resolve::{resolve_checked, Resolve, ResolveRefused, SystemResolver};
pub use url_policy::{OutboundUrl, UrlPolicy, UrlRefused, MAX_URL_BYTES};
