//! What a failed yt-dlp run means: its `ERROR:` lines mapped to stable codes, so that a job
//! fails with a clear, fixed message and never with yt-dlp's own text (which can carry URLs,
//! cookies paths or upstream wording).

/// Why yt-dlp could not get the media.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SiteFailure {
    /// Removed, deleted, or never existed.
    Unavailable,
    /// Private media.
    Private,
    /// Behind an age check that needs an account.
    AgeRestricted,
    /// Not available from this server's country.
    GeoBlocked,
    /// A live stream or a premiere that has not started: nothing fixed to download.
    Live,
    /// Needs an account (members-only, paid, login wall).
    LoginRequired,
    /// The site refused us for now (rate limiting, bot checks).
    RateLimited,
    /// No extractor for this site.
    UnsupportedSite,
    /// Anything else.
    Failed,
}

impl SiteFailure {
    /// The stable code, as it appears in job errors.
    pub fn code(self) -> &'static str {
        match self {
            SiteFailure::Unavailable => "media_unavailable",
            SiteFailure::Private => "media_private",
            SiteFailure::AgeRestricted => "age_restricted",
            SiteFailure::GeoBlocked => "geo_blocked",
            SiteFailure::Live => "live_stream",
            SiteFailure::LoginRequired => "login_required",
            SiteFailure::RateLimited => "upstream_rate_limited",
            SiteFailure::UnsupportedSite => "unsupported_site",
            SiteFailure::Failed => "download_failed",
        }
    }

    /// A message safe to show to clients.
    pub fn message(self) -> &'static str {
        match self {
            SiteFailure::Unavailable => {
                "the media is unavailable: removed, deleted or never published"
            }
            SiteFailure::Private => "the media is private",
            SiteFailure::AgeRestricted => {
                "the media is age-restricted and needs a signed-in account"
            }
            SiteFailure::GeoBlocked => "the media is not available from this server's country",
            SiteFailure::Live => {
                "live streams and premieres that have not ended cannot be downloaded"
            }
            SiteFailure::LoginRequired => {
                "the media needs a signed-in account (members-only or paid)"
            }
            SiteFailure::RateLimited => {
                "the site is limiting requests from this server; try again later"
            }
            SiteFailure::UnsupportedSite => "this site is not supported",
            SiteFailure::Failed => "the media could not be downloaded",
        }
    }

    /// Whether retrying later may help.
    pub fn is_retryable(self) -> bool {
        matches!(self, SiteFailure::RateLimited)
    }
}

/// Patterns in yt-dlp's `ERROR:` lines, most specific first (a bot check says "Sign in"
/// too, but is rate limiting, not a login wall; an age check says "Sign in" and is its own
/// case).
const PATTERNS: &[(&str, SiteFailure)] = &[
    ("not a bot", SiteFailure::RateLimited),
    ("http error 429", SiteFailure::RateLimited),
    ("too many requests", SiteFailure::RateLimited),
    ("rate-limited", SiteFailure::RateLimited),
    ("confirm your age", SiteFailure::AgeRestricted),
    ("age-restricted", SiteFailure::AgeRestricted),
    ("inappropriate for some users", SiteFailure::AgeRestricted),
    ("not available in your country", SiteFailure::GeoBlocked),
    ("available in your country", SiteFailure::GeoBlocked),
    ("geo restriction", SiteFailure::GeoBlocked),
    ("geo-restricted", SiteFailure::GeoBlocked),
    ("private video", SiteFailure::Private),
    ("this video is private", SiteFailure::Private),
    ("this live event will begin", SiteFailure::Live),
    ("premieres in", SiteFailure::Live),
    ("is currently live", SiteFailure::Live),
    ("live stream", SiteFailure::Live),
    ("members-only", SiteFailure::LoginRequired),
    ("join this channel", SiteFailure::LoginRequired),
    (
        "only available for registered users",
        SiteFailure::LoginRequired,
    ),
    ("requires payment", SiteFailure::LoginRequired),
    ("login required", SiteFailure::LoginRequired),
    ("use --cookies", SiteFailure::LoginRequired),
    ("unsupported url", SiteFailure::UnsupportedSite),
    ("no suitable extractor", SiteFailure::UnsupportedSite),
    ("video unavailable", SiteFailure::Unavailable),
    ("this video is unavailable", SiteFailure::Unavailable),
    ("has been removed", SiteFailure::Unavailable),
    ("does not exist", SiteFailure::Unavailable),
    ("http error 404", SiteFailure::Unavailable),
    ("http error 410", SiteFailure::Unavailable),
];

/// The failure a yt-dlp run's stderr describes: the last `ERROR:` line that matches a
/// pattern decides (warnings and earlier retries do not).
pub fn classify(stderr: &str) -> SiteFailure {
    stderr
        .lines()
        .rev()
        .filter(|line| line.trim_start().starts_with("ERROR:"))
        .find_map(|line| {
            let line = line.to_lowercase();
            PATTERNS
                .iter()
                .find(|(pattern, _)| line.contains(pattern))
                .map(|(_, failure)| *failure)
        })
        .unwrap_or(SiteFailure::Failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yt_dlp_error_lines_map_to_stable_codes() {
        let table = [
            ("ERROR: [youtube] dQw4w9WgXcQ: Video unavailable. This video is no longer available because the YouTube account associated with this video has been terminated.", SiteFailure::Unavailable),
            ("ERROR: [youtube] xxxxxxxxxxx: Video unavailable. This video has been removed by the uploader", SiteFailure::Unavailable),
            ("ERROR: [youtube] xxxxxxxxxxx: Private video. Sign in if you've been granted access to this video. Use --cookies-from-browser or --cookies for the authentication.", SiteFailure::Private),
            ("ERROR: [youtube] xxxxxxxxxxx: Sign in to confirm your age. This video may be inappropriate for some users. Use --cookies-from-browser or --cookies for the authentication.", SiteFailure::AgeRestricted),
            ("ERROR: [youtube] xxxxxxxxxxx: Sign in to confirm you’re not a bot. Use --cookies-from-browser or --cookies for the authentication.", SiteFailure::RateLimited),
            ("ERROR: [youtube] xxxxxxxxxxx: The uploader has not made this video available in your country", SiteFailure::GeoBlocked),
            ("ERROR: [vimeo] 123456: This video is not available in your country due to a geo restriction", SiteFailure::GeoBlocked),
            ("ERROR: [youtube] xxxxxxxxxxx: This live event will begin in 3 hours.", SiteFailure::Live),
            ("ERROR: [youtube] xxxxxxxxxxx: Premieres in 2 days", SiteFailure::Live),
            ("ERROR: [youtube] xxxxxxxxxxx: Join this channel to get access to members-only content like this video, and other exclusive perks.", SiteFailure::LoginRequired),
            ("ERROR: [soundcloud] 123: Unable to download JSON metadata: HTTP Error 404: Not Found (caused by <HTTPError 404: Not Found>)", SiteFailure::Unavailable),
            ("ERROR: [youtube] xxxxxxxxxxx: Unable to download API page: HTTP Error 429: Too Many Requests (caused by <HTTPError 429: Too Many Requests>)", SiteFailure::RateLimited),
            ("ERROR: Unsupported URL: https://example.com/page", SiteFailure::UnsupportedSite),
            // What yt-dlp 2026.10.26 says with `--ies default,-generic` (tests/ytdlp.rs).
            ("ERROR: No suitable extractor found for URL http://127.0.0.1:8080/a.wav", SiteFailure::UnsupportedSite),
            ("ERROR: [generic] Unable to download webpage: [Errno -2] Name or service not known", SiteFailure::Failed),
        ];
        for (stderr, failure) in table {
            assert_eq!(classify(stderr), failure, "{stderr}");
        }
    }

    #[test]
    fn warnings_are_ignored_and_the_last_error_decides() {
        let stderr = "WARNING: [youtube] Video unavailable in one client, retrying\n\
                      ERROR: [youtube] abc: Private video. Sign in if you've been granted access\n";
        assert_eq!(classify(stderr), SiteFailure::Private);
        assert_eq!(classify(""), SiteFailure::Failed);
        assert_eq!(classify("WARNING: HTTP Error 429"), SiteFailure::Failed);
        assert!(SiteFailure::RateLimited.is_retryable());
        assert!(!SiteFailure::Private.is_retryable());
        assert_eq!(SiteFailure::GeoBlocked.code(), "geo_blocked");
    }
}
