//! URL inputs: fetched by the worker process into the job directory before the child starts
//! (the sandboxed child never touches the network).
//!
//! A link to a listed site ([`audiomill_net::SiteList`]) goes through yt-dlp: metadata first,
//! so that live streams and media longer than the limit are refused before a byte is
//! downloaded, then the download under our byte cap. Any other link is fetched directly by the
//! outbound [`Fetcher`], which checks every address and redirect hop. Both paths end with the
//! file at the job's input path; whether it is audio is the child's to find out (it probes it
//! before anything else).

use crate::errors::internal;
use crate::jobdir::JobDir;
use crate::protocol::SourceMeta;
use crate::WorkerConfig;
use audiomill_core::{ErrorCode, InputUrl, JobError, Limits};
use audiomill_net::{
    FetchError, FetchLimits, Fetcher, OutboundUrl, PlaylistMeta, Probe, ResolveRefused,
    SiteFailure, UrlRefused, YtDlp, YtDlpError,
};
use std::time::Duration;

/// Redirects a direct download may follow.
const MAX_REDIRECTS: usize = 5;

/// What a URL input turned into.
pub(crate) enum FetchedInput {
    /// The media is at the job's input path.
    Media(SourceMeta),
    /// The link is a playlist (asked for with `playlist: true`); nothing was downloaded.
    Playlist(PlaylistMeta),
}

/// Fetches `url` into `dir.input()`. `playlist` asks for a playlist's entries rather than one
/// item (at most `max_items`). `progress` gets the fraction downloaded, when it is known.
pub(crate) async fn fetch_input(
    config: &WorkerConfig,
    limits: &Limits,
    url: &InputUrl,
    dir: &JobDir,
    playlist: Option<u32>,
    time_left: Duration,
    progress: &mut (dyn FnMut(f64) + Send),
) -> Result<FetchedInput, JobError> {
    let checked = OutboundUrl::parse(url.as_str(), &config.url_policy).map_err(|e| {
        // Accepted at submission, refused now: the policy changed, or the submission check
        // was skipped. Either way, nothing is fetched.
        blocked(&e.to_string())
    })?;
    let mut report = |done: u64, total: Option<u64>| {
        if let Some(total) = total.filter(|&t| t > 0) {
            progress((done as f64 / total as f64).clamp(0.0, 1.0));
        }
    };
    if config.sites.matches(&checked) {
        let Some(ytdlp) = &config.ytdlp else {
            tracing::error!("a site link was submitted but yt-dlp is not configured");
            return Err(JobError::new(
                ErrorCode::DownloadFailed,
                "downloads from this site are not set up on this server",
            ));
        };
        from_site(
            &YtDlp::new(ytdlp.clone()),
            limits,
            url,
            &checked,
            dir,
            playlist,
            time_left,
            &mut report,
        )
        .await
    } else {
        direct(config, limits, url, &checked, dir, time_left, &mut report).await
    }
}

/// A direct link, through the outbound client.
async fn direct(
    config: &WorkerConfig,
    limits: &Limits,
    url: &InputUrl,
    checked: &OutboundUrl,
    dir: &JobDir,
    time_left: Duration,
    progress: &mut (dyn FnMut(u64, Option<u64>) + Send),
) -> Result<FetchedInput, JobError> {
    let fetch_limits = FetchLimits {
        max_bytes: limits.max_upload_bytes,
        total: time_left,
        idle: config.fetch_idle_timeout,
        max_redirects: MAX_REDIRECTS,
    };
    let fetcher = Fetcher::new(config.url_policy.clone(), fetch_limits).map_err(|e| {
        tracing::error!(error = %e, "cannot build the outbound client");
        internal()
    })?;
    let fetched = fetcher
        .fetch_with_progress(checked, &dir.input(), progress)
        .await
        .map_err(|e| fetch_error(e, limits.max_upload_bytes))?;
    tracing::info!(bytes = fetched.bytes, "URL input fetched");
    Ok(FetchedInput::Media(SourceMeta {
        url: url.as_str().to_owned(),
        webpage_url: (fetched.final_url != url.as_str()).then_some(fetched.final_url),
        ..SourceMeta::default()
    }))
}

/// A site link, through yt-dlp.
#[allow(clippy::too_many_arguments)]
async fn from_site(
    ytdlp: &YtDlp,
    limits: &Limits,
    url: &InputUrl,
    checked: &OutboundUrl,
    dir: &JobDir,
    playlist: Option<u32>,
    time_left: Duration,
    progress: &mut (dyn FnMut(u64, Option<u64>) + Send),
) -> Result<FetchedInput, JobError> {
    let started = tokio::time::Instant::now();
    let workdir = dir.path().join("fetch");
    tokio::fs::create_dir(&workdir).await.map_err(|e| {
        tracing::error!(error = %e, "cannot create the download directory");
        internal()
    })?;
    let max_items = playlist.unwrap_or(1);
    let probe = ytdlp
        .probe(checked, &workdir, playlist.is_some(), max_items, time_left)
        .await
        .map_err(|e| ytdlp_error(e, limits.max_upload_bytes))?;
    let media = match probe {
        Probe::Playlist(list) if playlist.is_some() => return Ok(FetchedInput::Playlist(list)),
        Probe::Playlist(_) => {
            return Err(JobError::new(
                ErrorCode::InvalidInput,
                "the link is a playlist; download it with the options {\"playlist\": true}",
            ))
        }
        Probe::Media(media) => media,
    };
    if let Some(duration) = media.duration {
        if duration > limits.max_duration_secs as f64 {
            return Err(JobError::new(
                ErrorCode::InputTooLong,
                format!(
                    "the media lasts {} s; the limit is {} s",
                    duration.round(),
                    limits.max_duration_secs
                ),
            ));
        }
    }
    let left = time_left.saturating_sub(started.elapsed());
    let downloaded = ytdlp
        .download(&workdir, limits.max_upload_bytes, left, progress)
        .await
        .map_err(|e| ytdlp_error(e, limits.max_upload_bytes))?;
    tokio::fs::rename(&downloaded.path, dir.input())
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "cannot move the download into place");
            internal()
        })?;
    tracing::info!(
        bytes = downloaded.bytes,
        extractor = %media.extractor,
        "site media downloaded"
    );
    Ok(FetchedInput::Media(SourceMeta {
        url: url.as_str().to_owned(),
        webpage_url: media.webpage_url,
        title: media.title,
        uploader: media.uploader,
        duration_secs: media.duration,
        extractor: Some(media.extractor),
    }))
}

/// A refused address or URL: a security event, and a job that fails for good.
fn blocked(reason: &str) -> JobError {
    tracing::warn!(target: "security", event = "blocked_url", reason, "URL input refused by the worker");
    JobError::new(
        ErrorCode::BlockedUrl,
        format!("the url cannot be fetched: {reason}"),
    )
}

fn too_large(limit: u64) -> JobError {
    JobError::new(
        ErrorCode::InputTooLarge,
        format!(
            "the download is larger than the limit of {} MB",
            limit / 1_000_000
        ),
    )
}

/// The job error of a failed direct download; every message is ours, never upstream text.
fn fetch_error(error: FetchError, limit: u64) -> JobError {
    match error {
        FetchError::Refused(UrlRefused::Address(what))
        | FetchError::Resolve(ResolveRefused::Address(what)) => {
            blocked(&format!("it leads to a {what}, which is not allowed"))
        }
        FetchError::Refused(e) => blocked(&e.to_string()),
        FetchError::Resolve(ResolveRefused::NoAddress) => JobError::new(
            ErrorCode::FetchFailed,
            "the url's host name does not resolve",
        ),
        FetchError::TooManyRedirects => {
            JobError::new(ErrorCode::FetchFailed, "the url redirects too many times")
        }
        FetchError::TooLarge { .. } => too_large(limit),
        FetchError::Timeout => JobError::new(
            ErrorCode::Timeout,
            "the download did not finish in the time allowed",
        ),
        FetchError::Status(status) => JobError::new(
            ErrorCode::FetchFailed,
            format!("the url's server answered with status {status}"),
        ),
        FetchError::Network => JobError::new(
            ErrorCode::FetchFailed,
            "the url's server could not be reached",
        ),
        FetchError::Io(e) => {
            tracing::error!(error = %e, "cannot write the download");
            internal()
        }
    }
}

/// The job error of a failed yt-dlp run.
fn ytdlp_error(error: YtDlpError, limit: u64) -> JobError {
    match error {
        YtDlpError::Site(failure) => {
            let code = match failure {
                SiteFailure::Unavailable => ErrorCode::MediaUnavailable,
                SiteFailure::Private => ErrorCode::MediaPrivate,
                SiteFailure::AgeRestricted => ErrorCode::AgeRestricted,
                SiteFailure::GeoBlocked => ErrorCode::GeoBlocked,
                SiteFailure::Live => ErrorCode::LiveStream,
                SiteFailure::LoginRequired => ErrorCode::LoginRequired,
                SiteFailure::RateLimited => ErrorCode::UpstreamRateLimited,
                SiteFailure::UnsupportedSite => ErrorCode::UnsupportedSite,
                SiteFailure::Failed => ErrorCode::DownloadFailed,
            };
            JobError::new(code, failure.message())
        }
        YtDlpError::TooLarge => too_large(limit),
        YtDlpError::Timeout => JobError::new(
            ErrorCode::Timeout,
            "the download did not finish in the time allowed",
        ),
        YtDlpError::NotInstalled | YtDlpError::Spawn(_) => {
            tracing::error!(error = %error, "yt-dlp cannot be run");
            JobError::new(
                ErrorCode::DownloadFailed,
                "downloads from this site are not available on this server right now",
            )
        }
        other => {
            tracing::warn!(error = %other, "yt-dlp run failed");
            JobError::new(ErrorCode::DownloadFailed, SiteFailure::Failed.message())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_map_to_stable_codes() {
        let cases = [
            (FetchError::TooLarge { limit: 10 }, ErrorCode::InputTooLarge),
            (FetchError::Status(404), ErrorCode::FetchFailed),
            (FetchError::Timeout, ErrorCode::Timeout),
            (
                FetchError::Resolve(ResolveRefused::Address("private address")),
                ErrorCode::BlockedUrl,
            ),
            (FetchError::TooManyRedirects, ErrorCode::FetchFailed),
        ];
        for (error, code) in cases {
            assert_eq!(fetch_error(error, 10).code, code);
        }
        assert_eq!(
            ytdlp_error(YtDlpError::Site(SiteFailure::GeoBlocked), 1).code,
            ErrorCode::GeoBlocked
        );
        assert_eq!(
            ytdlp_error(YtDlpError::TooLarge, 1).code,
            ErrorCode::InputTooLarge
        );
    }
}
