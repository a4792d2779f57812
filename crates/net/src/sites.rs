//! Which links go through yt-dlp: pages of the sites it knows (YouTube, SoundCloud, …), named
//! by an allowlist of host names. Every other link is fetched directly by the [`crate::Fetcher`].
//!
//! Routing by host, rather than by asking yt-dlp whether it has an extractor, keeps yt-dlp away
//! from anything not on the list: it is never handed an arbitrary host (its generic extractor
//! is off as well, see [`crate::ytdlp`]).

use crate::OutboundUrl;

/// Hosts of the supported sites; a host matches itself and its subdomains
/// (`music.youtube.com`, `artist.bandcamp.com`).
pub const DEFAULT_SITES: &[&str] = &[
    "youtube.com",
    "youtu.be",
    "youtube-nocookie.com",
    "soundcloud.com",
    "bandcamp.com",
    "vimeo.com",
    "mixcloud.com",
];

/// The hosts routed to yt-dlp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteList {
    hosts: Vec<String>,
}

impl Default for SiteList {
    fn default() -> Self {
        Self::new(&[])
    }
}

impl SiteList {
    /// The default sites plus the operator's `extra` hosts (lower-cased, without a trailing dot).
    pub fn new(extra: &[String]) -> Self {
        let mut hosts: Vec<String> = DEFAULT_SITES.iter().map(|s| (*s).to_owned()).collect();
        for host in extra {
            let host = host.trim().trim_end_matches('.').to_ascii_lowercase();
            if !host.is_empty() && !hosts.contains(&host) {
                hosts.push(host);
            }
        }
        Self { hosts }
    }

    /// Whether `url` is a page of a listed site.
    pub fn matches(&self, url: &OutboundUrl) -> bool {
        let Some(host) = url.as_url().host_str() else {
            return false;
        };
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.hosts.iter().any(|site| {
            host == *site
                || host
                    .strip_suffix(site.as_str())
                    .is_some_and(|prefix| prefix.ends_with('.'))
        })
    }

    /// The listed hosts.
    pub fn hosts(&self) -> &[String] {
        &self.hosts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::UrlPolicy;

    fn url(text: &str) -> OutboundUrl {
        OutboundUrl::parse(text, &UrlPolicy::default()).unwrap()
    }

    #[test]
    fn matches_sites_and_their_subdomains_only() {
        let sites = SiteList::new(&["Example.ORG.".into()]);
        for yes in [
            "https://www.youtube.com/watch?v=abc",
            "https://music.youtube.com/watch?v=abc",
            "https://youtu.be/abc",
            "https://soundcloud.com/artist/track",
            "https://artist.bandcamp.com/track/x",
            "https://vimeo.com/123",
            "https://www.mixcloud.com/a/b/",
            "https://example.org/page",
            "https://YOUTUBE.COM./watch?v=1",
        ] {
            assert!(sites.matches(&url(yes)), "{yes}");
        }
        for no in [
            "https://notyoutube.com/watch?v=abc",
            "https://youtube.com.evil.net/x",
            "https://example.com/a.mp3",
            "https://8.8.8.8/a.mp3",
        ] {
            assert!(!sites.matches(&url(no)), "{no}");
        }
    }
}
