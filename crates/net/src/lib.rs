//! audiomill's outbound network: which addresses a request may reach, and the clients that
//! hold every request to that.
//!
//! Every request audiomill makes on behalf of a user (URL inputs now, webhooks later) goes
//! through this policy: the URL is parsed and checked before anything is resolved
//! ([`OutboundUrl::parse`]), and every address a name resolves to, on every redirect hop, is
//! checked before a connection is made ([`address::check`]).
//!
//! Here: the address policy, the URL checks, checked name resolution, the
//! [`Fetcher`] (redirects re-checked, byte and time caps), the hosts routed to yt-dlp
//! ([`SiteList`]), the confined yt-dlp runner
//! ([`YtDlp`]: metadata first, then the download under our byte and time caps, playlists as
//! flat entry lists), the mapping of yt-dlp's errors to stable codes ([`ytdlp_errors`]), and
//! the [`CheckingProxy`] every yt-dlp run goes through, which keeps yt-dlp's own connections
//! (format URLs, redirects) inside the address policy.

pub mod address;
mod client;
pub mod proxy;
mod resolve;
mod sites;
mod url_policy;
pub mod ytdlp;
pub mod ytdlp_errors;

pub use address::Refused;
pub use client::{FetchError, FetchLimits, Fetched, Fetcher};
pub use proxy::CheckingProxy;
pub use resolve::{resolve_checked, Resolve, ResolveRefused, SystemResolver};
pub use sites::{SiteList, DEFAULT_SITES};
pub use url_policy::{OutboundUrl, UrlPolicy, UrlRefused, MAX_URL_BYTES};
pub use ytdlp::{
    Downloaded, MediaMeta, PlaylistEntry, PlaylistMeta, Probe, YtDlp, YtDlpConfig, YtDlpError,
};
pub use ytdlp_errors::SiteFailure;
