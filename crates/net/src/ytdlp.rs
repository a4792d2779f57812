//! Running the pinned yt-dlp safely: metadata first ([`YtDlp::probe`], `-J`, nothing
//! downloaded), then the download of exactly what was probed ([`YtDlp::download`],
//! `--load-info-json`, no second extraction) under our own byte and time caps.
//!
//! How a run is confined:
//!
//! - an argument vector, never a shell; the URL comes last, after `--`;
//! - `--ignore-config --no-plugin-dirs --no-cache-dir --no-remote-components`, and an empty
//!   environment (`PATH=/usr/bin:/bin`, `HOME` = the work directory, `LANG=C.UTF-8`), so no
//!   user configuration, plugin or proxy variable is read;
//! - every connection yt-dlp makes goes through a [`CheckingProxy`] started for that run on
//!   `127.0.0.1:<ephemeral>` (`--proxy http://127.0.0.1:PORT`) and stopped when the run ends:
//!   HTTPS tunnels (`CONNECT`) and plain-HTTP requests are held to [`YtDlpConfig::policy`]
//!   (ports, every resolved address checked, connection only to the checked addresses), so a
//!   format URL in a site's JSON or a redirect to an internal address (169.254.169.254,
//!   10.x…) is refused (`403`, a `security` `blocked_url` event) and the run fails;
//! - with an operator's proxy ([`YtDlpConfig::proxy`]) yt-dlp uses that one instead, and that
//!   proxy is responsible for where yt-dlp may connect;
//! - the generic extractor is off (`--ies default,-generic`) unless a test turns it on;
//! - its own process group, killed as a whole on timeout, on the byte cap and when the future
//!   is dropped; stdin is null, stdout of `-J` is bounded, stderr is kept as a bounded tail;
//! - the byte cap is counted by us (progress lines and the size of the work directory every
//!   [`SIZE_CHECK_INTERVAL`]); `--max-filesize` is only a first filter, as it trusts headers;
//! - yt-dlp's text never reaches an error's `Display`: failures are classified by
//!   [`classify`] into a [`SiteFailure`] whose message is the public text, and the raw stderr
//!   tail goes to the log.
//!
//! The caller owns the work directory and removes it when done: a dropped `download` future
//! kills yt-dlp but cannot delete its partial files.
//!
//! Limits of the proxy: it judges where yt-dlp connects, not what it asks for there (every URL
//! of an allowed host is allowed). Names are resolved by the proxy, not by yt-dlp. A helper
//! yt-dlp starts gets the proxy from yt-dlp (ffmpeg, used for some stream formats, through
//! `http_proxy`); that path is not covered by the tests.

use crate::proxy::CheckingProxy;
use crate::url_policy::{OutboundUrl, UrlPolicy, MAX_URL_BYTES};
use crate::ytdlp_errors::{classify, SiteFailure};
use serde_json::Value;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};
use tokio::time::Instant;

/// The only `PATH` yt-dlp gets.
const CHILD_PATH: &str = "/usr/bin:/bin";
/// Most bytes of `-J` output accepted.
pub const MAX_JSON_BYTES: usize = 16 << 20;
/// Bytes of stderr kept (the end of it) for [`classify`] and the log.
pub const STDERR_TAIL_BYTES: usize = 16 << 10;
/// Longest title or uploader kept from yt-dlp's JSON, in characters.
pub const MAX_TEXT_CHARS: usize = 300;
/// How often the work directory's size is checked during a download.
pub const SIZE_CHECK_INTERVAL: Duration = Duration::from_millis(200);
/// Longest wait for `yt-dlp --version`.
pub const VERSION_DEADLINE: Duration = Duration::from_secs(20);
/// Longest stdout line kept during a download (longer ones are dropped).
const MAX_LINE_BYTES: usize = 8 << 10;
/// The file `probe` writes and `download` reads, in the work directory.
pub const INFO_JSON: &str = "info.json";
/// The stem of the downloaded file (`media.<ext>`); partial files start with it too.
const MEDIA_STEM: &str = "media";
/// The copy of the operator's cookies file, in the work directory (yt-dlp writes its cookie
/// jar back to the file it is given; the operator's file stays untouched).
const COOKIES_COPY: &str = "cookies.txt";
/// Prefix of our progress lines.
const PROGRESS_PREFIX: &str = "audiomill-progress ";
/// Prefix of the line naming the final file.
const FILE_PREFIX: &str = "audiomill-file ";
/// How yt-dlp marks data smuggled in a URL's fragment.
const SMUGGLE_MARKER: &str = "__youtubedl_smuggle";

/// How yt-dlp is run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YtDlpConfig {
    /// The yt-dlp executable.
    pub program: PathBuf,
    /// Test-only: let yt-dlp use its generic extractor (otherwise `--ies default,-generic`),
    /// so tests can point it at 127.0.0.1.
    pub allow_generic_extractor: bool,
    /// The operator's cookies file (Netscape format), passed as a copy with `--cookies`.
    pub cookies: Option<PathBuf>,
    /// The operator's proxy (`--proxy`). `None`: every run gets its own [`CheckingProxy`],
    /// which holds each of yt-dlp's connections to [`YtDlpConfig::policy`]. With an operator's
    /// proxy, that proxy alone decides where yt-dlp may connect.
    pub proxy: Option<String>,
    /// The outbound policy yt-dlp's connections are held to (through the [`CheckingProxy`]).
    pub policy: UrlPolicy,
    /// `--socket-timeout`: longest wait on a connection.
    pub socket_timeout: Duration,
}

impl YtDlpConfig {
    /// A configuration with the defaults: no cookies, no operator's proxy (so the checking
    /// proxy, default policy), generic extractor off, 30 s socket timeout.
    pub fn new(program: impl Into<PathBuf>) -> Self {
        YtDlpConfig {
            program: program.into(),
            allow_generic_extractor: false,
            cookies: None,
            proxy: None,
            policy: UrlPolicy::default(),
            socket_timeout: Duration::from_secs(30),
        }
    }
}

/// Why a yt-dlp run failed; `Display` is safe to show to clients (never yt-dlp's text).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum YtDlpError {
    /// The site refused or the media cannot be had; the message is the stable public one.
    #[error("{}", .0.message())]
    Site(SiteFailure),
    /// The media is larger than allowed.
    #[error("the media is larger than allowed")]
    TooLarge,
    /// The run took longer than allowed.
    #[error("the media could not be fetched in the time allowed")]
    Timeout,
    /// The yt-dlp executable does not exist.
    #[error("yt-dlp is not installed")]
    NotInstalled,
    /// yt-dlp could not be started, or its files could not be handled.
    #[error("yt-dlp could not be run")]
    Spawn(#[source] io::Error),
    /// yt-dlp's output could not be read (the text is ours, never yt-dlp's).
    #[error("unreadable yt-dlp output: {0}")]
    Malformed(String),
    /// `download` was called on a work directory without probed media.
    #[error("nothing was probed for download")]
    NotProbed,
    /// yt-dlp failed for a reason not recognized.
    #[error("the media could not be downloaded")]
    Failed,
}

impl YtDlpError {
    /// The stable code of this error, as in job errors.
    pub fn code(&self) -> &'static str {
        match self {
            YtDlpError::Site(failure) => failure.code(),
            YtDlpError::TooLarge => "too_large",
            YtDlpError::Timeout => "timeout",
            YtDlpError::NotInstalled | YtDlpError::Spawn(_) => "downloader_unavailable",
            YtDlpError::Malformed(_) | YtDlpError::NotProbed | YtDlpError::Failed => {
                "download_failed"
            }
        }
    }
}

/// What a probe found.
#[derive(Debug, Clone, PartialEq)]
pub enum Probe {
    /// One media item, ready for [`YtDlp::download`].
    Media(MediaMeta),
    /// A playlist: its entries are URLs to probe one by one.
    Playlist(PlaylistMeta),
}

/// One media item's metadata (strings bounded, control characters removed).
#[derive(Debug, Clone, PartialEq)]
pub struct MediaMeta {
    pub id: String,
    pub title: Option<String>,
    pub uploader: Option<String>,
    /// Seconds, when the site says.
    pub duration: Option<f64>,
    pub webpage_url: Option<String>,
    /// yt-dlp's extractor name, e.g. `youtube`, `generic`.
    pub extractor: String,
}

/// A playlist's metadata and its first entries.
#[derive(Debug, Clone, PartialEq)]
pub struct PlaylistMeta {
    pub id: Option<String>,
    pub title: Option<String>,
    pub uploader: Option<String>,
    /// At most `max_items` entries, each an http(s) URL of at most [`MAX_URL_BYTES`].
    pub entries: Vec<PlaylistEntry>,
    /// The playlist has more than `max_items` entries.
    pub truncated: bool,
}

/// One entry of a playlist.
#[derive(Debug, Clone, PartialEq)]
pub struct PlaylistEntry {
    pub url: String,
    pub title: Option<String>,
    pub duration: Option<f64>,
}

/// A finished download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloaded {
    /// The file, inside the work directory.
    pub path: PathBuf,
    /// Its size.
    pub bytes: u64,
}

/// The yt-dlp runner.
#[derive(Debug, Clone)]
pub struct YtDlp {
    config: YtDlpConfig,
}

impl YtDlp {
    pub fn new(config: YtDlpConfig) -> Self {
        YtDlp { config }
    }

    /// The configuration.
    pub fn config(&self) -> &YtDlpConfig {
        &self.config
    }

    /// `yt-dlp --version`, trimmed (for `/readyz` and `doctor`).
    pub async fn version(&self) -> Result<String, YtDlpError> {
        let dir = std::env::temp_dir();
        let args = vec!["--ignore-config".to_owned(), "--version".to_owned()];
        let out = self
            .run_collect(&args, &dir, VERSION_DEADLINE, 4096)
            .await?;
        if !out.status.success() {
            return Err(self.failure(&out.stderr));
        }
        let text = String::from_utf8(out.stdout)
            .map_err(|_| YtDlpError::Malformed("version is not UTF-8".into()))?;
        Ok(clean_text(text.trim(), 64))
    }

    /// Metadata first (`-J`), nothing downloaded. With `playlist: false` uses
    /// `--no-playlist`; with true `--flat-playlist --yes-playlist -I 1:{max_items+1}` (the one
    /// extra item tells truncation).
    ///
    /// A media item's JSON is written to `workdir/info.json` for [`YtDlp::download`] (a
    /// playlist's is not: its entries are probed one by one). Refuses a live stream
    /// (`is_live`, or `live_status` `is_live`/`is_upcoming`/`post_live`) with
    /// `Site(SiteFailure::Live)`.
    pub async fn probe(
        &self,
        url: &OutboundUrl,
        workdir: &Path,
        playlist: bool,
        max_items: u32,
        deadline: Duration,
    ) -> Result<Probe, YtDlpError> {
        let info_path = workdir.join(INFO_JSON);
        remove_if_exists(&info_path).await?;
        // The proxy lives as long as this run (dropped at the end of the function).
        let (mut args, _proxy) = self.common_args(workdir).await?;
        args.extend(["-J".to_owned(), "--no-progress".to_owned()]);
        if playlist {
            args.extend([
                "--flat-playlist".to_owned(),
                "--yes-playlist".to_owned(),
                "-I".to_owned(),
                format!("1:{}", max_items.saturating_add(1)),
            ]);
        } else {
            args.push("--no-playlist".to_owned());
        }
        args.extend(["--".to_owned(), url.as_url().as_str().to_owned()]);
        let out = self
            .run_collect(&args, workdir, deadline, MAX_JSON_BYTES)
            .await;
        self.remove_cookies_copy(workdir).await;
        let out = out?;
        if !out.status.success() {
            return Err(self.failure(&out.stderr));
        }
        let json: Value = serde_json::from_slice(&out.stdout).map_err(|e| {
            // Position only: serde's message is ours, but keep yt-dlp's bytes out of it.
            YtDlpError::Malformed(format!(
                "invalid JSON at line {}, column {}",
                e.line(),
                e.column()
            ))
        })?;
        let probe = parse_probe(&json, max_items)?;
        if let Probe::Media(_) = probe {
            tokio::fs::write(&info_path, &out.stdout)
                .await
                .map_err(YtDlpError::Spawn)?;
        }
        Ok(probe)
    }

    /// Downloads the media probed into `workdir` (`--load-info-json`, no second extraction)
    /// as `workdir/media.<ext>`.
    ///
    /// Over `max_bytes` (counted from progress lines and the work directory's size, or
    /// announced by the server) the process group is killed, partial files are deleted and
    /// the result is `TooLarge`; past `deadline`, the same with `Timeout`. `progress` gets
    /// `(downloaded_bytes, total_bytes)` as yt-dlp reports them.
    pub async fn download(
        &self,
        workdir: &Path,
        max_bytes: u64,
        deadline: Duration,
        progress: &mut (dyn FnMut(u64, Option<u64>) + Send),
    ) -> Result<Downloaded, YtDlpError> {
        if !workdir.join(INFO_JSON).is_file() {
            return Err(YtDlpError::NotProbed);
        }
        let result = self
            .download_inner(workdir, max_bytes, deadline, progress)
            .await;
        self.remove_cookies_copy(workdir).await;
        if result.is_err() {
            remove_media_files(workdir).await;
        }
        result
    }

    async fn download_inner(
        &self,
        workdir: &Path,
        max_bytes: u64,
        deadline: Duration,
        progress: &mut (dyn FnMut(u64, Option<u64>) + Send),
    ) -> Result<Downloaded, YtDlpError> {
        let end = Instant::now() + deadline;
        // The proxy lives as long as this run (dropped at the end of the function).
        let (mut args, _proxy) = self.common_args(workdir).await?;
        args.extend(
            [
                "--load-info-json",
                INFO_JSON,
                "--no-playlist",
                "-f",
                "bestaudio/best",
                "-o",
                "media.%(ext)s",
                "--no-write-info-json",
                "--no-write-playlist-metafiles",
                "--no-write-thumbnail",
                "--no-write-subs",
                "--no-write-comments",
                "--no-mtime",
                "--force-overwrites",
                "--print",
            ]
            .map(str::to_owned),
        );
        args.push(format!("after_move:{FILE_PREFIX}%(filepath)s"));
        args.extend(["--progress", "--newline", "--progress-template"].map(str::to_owned));
        args.push(format!(
            "download:{PROGRESS_PREFIX}%(progress.downloaded_bytes)s \
             %(progress.total_bytes)s %(progress.total_bytes_estimate)s"
        ));
        args.extend(["--max-filesize".to_owned(), max_bytes.to_string()]);

        let mut running = self.spawn(&args, workdir)?;
        let mut stdout = running.child.stdout.take().expect("stdout is piped");
        let mut stderr = running.child.stderr.take().expect("stderr is piped");
        let mut tail = Tail::default();
        let mut lines = Lines::default();
        let mut file: Option<String> = None;
        let mut out_buf = [0u8; 4096];
        let mut err_buf = [0u8; 4096];
        let (mut out_open, mut err_open) = (true, true);
        let mut check = tokio::time::interval(SIZE_CHECK_INTERVAL);
        let mut over = false;
        while out_open || err_open {
            tokio::select! {
                read = stdout.read(&mut out_buf), if out_open => match read {
                    Ok(0) | Err(_) => out_open = false,
                    Ok(n) => {
                        for line in lines.push(&out_buf[..n]) {
                            if let Some(rest) = line.strip_prefix(PROGRESS_PREFIX) {
                                let (done, total) = parse_progress(rest);
                                if let Some(done) = done {
                                    progress(done, total);
                                    over |= done > max_bytes;
                                }
                            } else if let Some(path) = line.strip_prefix(FILE_PREFIX) {
                                file = Some(path.to_owned());
                            }
                        }
                    }
                },
                read = stderr.read(&mut err_buf), if err_open => match read {
                    Ok(0) | Err(_) => err_open = false,
                    Ok(n) => tail.push(&err_buf[..n]),
                },
                _ = check.tick() => {
                    over |= media_bytes(workdir).await > max_bytes;
                }
                _ = tokio::time::sleep_until(end) => {
                    running.kill().await;
                    return Err(YtDlpError::Timeout);
                }
            }
            if over {
                running.kill().await;
                return Err(YtDlpError::TooLarge);
            }
        }
        let status = match tokio::time::timeout_at(end, running.child.wait()).await {
            Ok(status) => status.map_err(YtDlpError::Spawn)?,
            Err(_) => {
                running.kill().await;
                return Err(YtDlpError::Timeout);
            }
        };
        running.kill().await;
        let stderr = tail.into_string();
        if !status.success() {
            return Err(self.failure(&stderr));
        }
        // A clean exit with no file: `--max-filesize` skipped it (the only skip our options
        // allow).
        let Some(file) = file else {
            return Err(YtDlpError::TooLarge);
        };
        let path = checked_media_path(workdir, &file).await?;
        let bytes = tokio::fs::metadata(&path)
            .await
            .map_err(YtDlpError::Spawn)?
            .len();
        if bytes > max_bytes {
            return Err(YtDlpError::TooLarge);
        }
        Ok(Downloaded { path, bytes })
    }

    /// Options of every extraction and download run, and the checking proxy the run goes
    /// through (none with an operator's proxy); the run must keep it until it ends.
    async fn common_args(
        &self,
        workdir: &Path,
    ) -> Result<(Vec<String>, Option<CheckingProxy>), YtDlpError> {
        let mut args: Vec<String> = [
            "--ignore-config",
            "--no-plugin-dirs",
            "--no-cache-dir",
            "--no-remote-components",
            "--no-exec",
            "--no-batch-file",
            "--restrict-filenames",
            "--color",
            "never",
            "--socket-timeout",
        ]
        .map(str::to_owned)
        .into();
        args.push(format!(
            "{:.3}",
            self.config.socket_timeout.as_secs_f64().max(0.001)
        ));
        let (proxy, checking) = match &self.config.proxy {
            Some(operator) => (operator.clone(), None),
            None => {
                let checking = CheckingProxy::start(self.config.policy.clone())
                    .await
                    .map_err(YtDlpError::Spawn)?;
                (checking.url(), Some(checking))
            }
        };
        args.extend(["--proxy".to_owned(), proxy]);
        if !self.config.allow_generic_extractor {
            args.extend(["--ies".to_owned(), "default,-generic".to_owned()]);
        }
        if let Some(cookies) = &self.config.cookies {
            let copy = workdir.join(COOKIES_COPY);
            tokio::fs::copy(cookies, &copy)
                .await
                .map_err(YtDlpError::Spawn)?;
            args.extend(["--cookies".to_owned(), COOKIES_COPY.to_owned()]);
        }
        Ok((args, checking))
    }

    async fn remove_cookies_copy(&self, workdir: &Path) {
        if self.config.cookies.is_some() {
            let _ = tokio::fs::remove_file(workdir.join(COOKIES_COPY)).await;
        }
    }

    /// Starts yt-dlp confined (see the module documentation).
    fn spawn(&self, args: &[String], workdir: &Path) -> Result<Running, YtDlpError> {
        let mut command = Command::new(&self.config.program);
        command
            .args(args)
            .env_clear()
            .env("PATH", CHILD_PATH)
            .env("HOME", workdir)
            .env("LANG", "C.UTF-8")
            .current_dir(workdir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let child = command.spawn().map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                YtDlpError::NotInstalled
            } else {
                YtDlpError::Spawn(e)
            }
        })?;
        Ok(Running {
            pid: child.id(),
            child,
        })
    }

    /// Runs to the end, keeping stdout (at most `max_stdout` bytes, else `Malformed`) and the
    /// tail of stderr.
    async fn run_collect(
        &self,
        args: &[String],
        workdir: &Path,
        deadline: Duration,
        max_stdout: usize,
    ) -> Result<Collected, YtDlpError> {
        let mut running = self.spawn(args, workdir)?;
        let stdout = running.child.stdout.take().expect("stdout is piped");
        let stderr = running.child.stderr.take().expect("stderr is piped");
        let pid = running.pid;
        let work = async {
            let (out, err) = tokio::join!(
                async {
                    let out = read_bounded(stdout, max_stdout).await;
                    if out.is_none() {
                        // Stop it at once rather than wait for stderr to end.
                        kill_group(pid);
                    }
                    out
                },
                read_tail(stderr)
            );
            let status = running.child.wait().await;
            (out, err, status)
        };
        let (stdout, stderr, status) = match tokio::time::timeout(deadline, work).await {
            Ok(done) => done,
            Err(_) => {
                running.kill().await;
                return Err(YtDlpError::Timeout);
            }
        };
        running.kill().await;
        let Some(stdout) = stdout else {
            return Err(YtDlpError::Malformed(format!(
                "output larger than {max_stdout} bytes"
            )));
        };
        Ok(Collected {
            status: status.map_err(YtDlpError::Spawn)?,
            stdout,
            stderr,
        })
    }

    /// The error a failed run's stderr describes; the raw tail goes to the log only.
    fn failure(&self, stderr: &str) -> YtDlpError {
        let failure = classify(stderr);
        tracing::warn!(
            code = failure.code(),
            stderr = %stderr,
            "yt-dlp failed"
        );
        match failure {
            SiteFailure::Failed => YtDlpError::Failed,
            other => YtDlpError::Site(other),
        }
    }
}

/// What a finished run left.
struct Collected {
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: String,
}

/// A started yt-dlp; dropping it kills its whole process group.
struct Running {
    child: Child,
    pid: Option<u32>,
}

impl Running {
    /// Kills the process group and reaps the leader.
    async fn kill(&mut self) {
        kill_group(self.pid);
        let _ = self.child.kill().await;
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        kill_group(self.pid);
    }
}

/// Sends `SIGKILL` to the process group led by `pid` (yt-dlp and anything it started).
fn kill_group(pid: Option<u32>) {
    let Some(pid) = pid.and_then(|pid| libc::pid_t::try_from(pid).ok()) else {
        return;
    };
    if pid <= 1 {
        return;
    }
    // SAFETY: a plain system call; ESRCH (the group is already gone) is fine.
    unsafe {
        libc::kill(-pid, libc::SIGKILL);
    }
}

/// All of `reader`, or `None` past `max` bytes.
async fn read_bounded(reader: impl AsyncRead + Unpin, max: usize) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut limited = reader.take(max as u64 + 1);
    if limited.read_to_end(&mut out).await.is_err() || out.len() > max {
        return None;
    }
    Some(out)
}

/// The last [`STDERR_TAIL_BYTES`] of `reader`.
async fn read_tail(mut reader: impl AsyncRead + Unpin) -> String {
    let mut tail = Tail::default();
    let mut buf = [0u8; 4096];
    while let Ok(n) = reader.read(&mut buf).await {
        if n == 0 {
            break;
        }
        tail.push(&buf[..n]);
    }
    tail.into_string()
}

/// The end of a stream, at most [`STDERR_TAIL_BYTES`].
#[derive(Default)]
struct Tail(Vec<u8>);

impl Tail {
    fn push(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
        if self.0.len() > STDERR_TAIL_BYTES {
            let cut = self.0.len() - STDERR_TAIL_BYTES;
            self.0.drain(..cut);
        }
    }

    fn into_string(self) -> String {
        String::from_utf8_lossy(&self.0).into_owned()
    }
}

/// Splits a byte stream into lines of at most [`MAX_LINE_BYTES`] (longer ones are dropped).
#[derive(Default)]
struct Lines {
    partial: Vec<u8>,
    overlong: bool,
}

impl Lines {
    fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut done = Vec::new();
        for &b in bytes {
            if b == b'\n' {
                if !self.overlong {
                    let line = String::from_utf8_lossy(&self.partial);
                    done.push(line.trim_end_matches('\r').to_owned());
                }
                self.partial.clear();
                self.overlong = false;
            } else if self.partial.len() < MAX_LINE_BYTES {
                self.partial.push(b);
            } else {
                self.overlong = true;
            }
        }
        done
    }
}

/// `downloaded total estimate` of a progress line (`NA` for unknown fields).
fn parse_progress(rest: &str) -> (Option<u64>, Option<u64>) {
    let number = |s: Option<&str>| -> Option<u64> {
        let v: f64 = s?.trim().parse().ok()?;
        (v.is_finite() && v >= 0.0).then_some(v as u64)
    };
    let mut fields = rest.split_whitespace();
    let done = number(fields.next());
    let total = number(fields.next());
    let estimate = number(fields.next());
    (done, total.or(estimate))
}

/// Whether `name` is the media file or one of its partial files.
fn is_media_file(name: &str) -> bool {
    name.starts_with(MEDIA_STEM)
}

/// Bytes of media (and partial media) files in `workdir`.
async fn media_bytes(workdir: &Path) -> u64 {
    let mut total = 0;
    let Ok(mut dir) = tokio::fs::read_dir(workdir).await else {
        return 0;
    };
    while let Ok(Some(entry)) = dir.next_entry().await {
        if entry.file_name().to_str().is_some_and(is_media_file) {
            if let Ok(meta) = entry.metadata().await {
                total += meta.len();
            }
        }
    }
    total
}

/// Deletes the media and partial files of `workdir`.
async fn remove_media_files(workdir: &Path) {
    let Ok(mut dir) = tokio::fs::read_dir(workdir).await else {
        return;
    };
    while let Ok(Some(entry)) = dir.next_entry().await {
        if entry.file_name().to_str().is_some_and(is_media_file) {
            let _ = tokio::fs::remove_file(entry.path()).await;
        }
    }
}

async fn remove_if_exists(path: &Path) -> Result<(), YtDlpError> {
    match tokio::fs::remove_file(path).await {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(YtDlpError::Spawn(e)),
        _ => Ok(()),
    }
}

/// The file yt-dlp reported, if it is a media file directly inside `workdir`.
async fn checked_media_path(workdir: &Path, reported: &str) -> Result<PathBuf, YtDlpError> {
    let reported = Path::new(reported);
    let path = if reported.is_absolute() {
        reported.to_owned()
    } else {
        workdir.join(reported)
    };
    let bad = || YtDlpError::Malformed("the downloaded file is not where expected".into());
    let real = tokio::fs::canonicalize(&path).await.map_err(|_| bad())?;
    let dir = tokio::fs::canonicalize(workdir)
        .await
        .map_err(YtDlpError::Spawn)?;
    let named_right = real
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("media.") && !n.ends_with(".part"));
    if real.parent() != Some(dir.as_path()) || !named_right || !real.is_file() {
        return Err(bad());
    }
    Ok(real)
}

/// Reads a probe's JSON.
fn parse_probe(json: &Value, max_items: u32) -> Result<Probe, YtDlpError> {
    if !json.is_object() {
        return Err(YtDlpError::Malformed("JSON is not an object".into()));
    }
    let kind = json.get("_type").and_then(Value::as_str).unwrap_or("video");
    if matches!(kind, "playlist" | "multi_video") {
        let entries: Vec<PlaylistEntry> = json
            .get("entries")
            .and_then(Value::as_array)
            .map(|a| a.as_slice())
            .unwrap_or_default()
            .iter()
            .filter_map(parse_entry)
            .collect();
        let max = max_items as usize;
        let truncated = entries.len() > max
            || json
                .get("playlist_count")
                .and_then(Value::as_u64)
                .is_some_and(|n| n > max_items as u64);
        return Ok(Probe::Playlist(PlaylistMeta {
            id: text(json, "id"),
            title: text(json, "title"),
            uploader: text(json, "uploader"),
            entries: entries.into_iter().take(max).collect(),
            truncated,
        }));
    }
    if is_live(json) {
        return Err(YtDlpError::Site(SiteFailure::Live));
    }
    let id = text(json, "id").ok_or_else(|| YtDlpError::Malformed("no media id".into()))?;
    let extractor = text(json, "extractor")
        .or_else(|| text(json, "extractor_key"))
        .unwrap_or_default();
    Ok(Probe::Media(MediaMeta {
        id,
        title: text(json, "title"),
        uploader: text(json, "uploader"),
        duration: duration(json),
        webpage_url: json
            .get("webpage_url")
            .and_then(Value::as_str)
            .and_then(web_url),
        extractor,
    }))
}

/// Whether the JSON describes a live stream or a premiere not yet over.
fn is_live(json: &Value) -> bool {
    json.get("is_live").and_then(Value::as_bool) == Some(true)
        || matches!(
            json.get("live_status").and_then(Value::as_str),
            Some("is_live" | "is_upcoming" | "post_live")
        )
}

fn parse_entry(entry: &Value) -> Option<PlaylistEntry> {
    let url = ["url", "webpage_url"]
        .iter()
        .filter_map(|key| entry.get(*key).and_then(Value::as_str))
        .find_map(web_url)?;
    Some(PlaylistEntry {
        url,
        title: text(entry, "title"),
        duration: duration(entry),
    })
}

/// `url` if it is an http(s) URL of at most [`MAX_URL_BYTES`], without yt-dlp's smuggled
/// data (a `#__youtubedl_smuggle=` fragment: yt-dlp-internal options that a site's page
/// would otherwise hand to the next yt-dlp run through the entry's URL).
fn web_url(url: &str) -> Option<String> {
    let mut parsed = url::Url::parse(url).ok()?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return None;
    }
    if parsed
        .fragment()
        .is_some_and(|f| f.contains(SMUGGLE_MARKER))
    {
        parsed.set_fragment(None);
    }
    let url = parsed.to_string();
    (url.len() <= MAX_URL_BYTES).then_some(url)
}

fn duration(json: &Value) -> Option<f64> {
    json.get("duration")
        .and_then(Value::as_f64)
        .filter(|d| d.is_finite() && *d >= 0.0)
}

/// A string field, bounded and cleaned; `None` when absent or empty after cleaning. Numbers
/// are accepted too (some extractors give numeric ids).
fn text(json: &Value, key: &str) -> Option<String> {
    let value = json.get(key)?;
    let cleaned = match value {
        Value::String(s) => clean_text(s, MAX_TEXT_CHARS),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let cleaned = cleaned.trim().to_owned();
    (!cleaned.is_empty()).then_some(cleaned)
}

/// `s` without control characters, at most `max` characters.
fn clean_text(s: &str, max: usize) -> String {
    s.chars().filter(|c| !c.is_control()).take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_is_bounded_and_cleaned() {
        let long = "a".repeat(1000);
        let j = json!({"title": format!("x\u{1b}[31my\n\t{long}"), "uploader": "", "id": 7});
        let title = text(&j, "title").unwrap();
        assert!(title.starts_with("x[31my"));
        assert_eq!(title.chars().count(), MAX_TEXT_CHARS);
        assert_eq!(text(&j, "uploader"), None);
        assert_eq!(text(&j, "id").as_deref(), Some("7"));
    }

    #[test]
    fn playlist_entries_keep_only_web_urls() {
        let j = json!({
            "_type": "playlist", "id": "p", "title": "P",
            "entries": [
                {"url": "https://example.com/1", "title": "one", "duration": 3.5},
                {"url": "file:///etc/passwd"},
                {"url": "javascript:alert(1)", "webpage_url": "http://example.com/2"},
                {"url": format!("https://example.com/{}", "a".repeat(MAX_URL_BYTES))},
                {"title": "no url"},
                {"url": "https://example.com/3"}
            ]
        });
        let Probe::Playlist(p) = parse_probe(&j, 2).unwrap() else {
            panic!("not a playlist")
        };
        let urls: Vec<_> = p.entries.iter().map(|e| e.url.as_str()).collect();
        assert_eq!(urls, ["https://example.com/1", "http://example.com/2"]);
        assert!(p.truncated);
        assert_eq!(p.entries[0].duration, Some(3.5));
        assert_eq!(
            web_url("http://a.example/x?q=1#__youtubedl_smuggle=%7B%22http_headers%22%3A1%7D")
                .as_deref(),
            Some("http://a.example/x?q=1")
        );
        assert_eq!(
            web_url("http://a.example/x#t=10").as_deref(),
            Some("http://a.example/x#t=10")
        );
    }

    #[test]
    fn live_streams_are_refused() {
        for j in [
            json!({"id": "a", "is_live": true}),
            json!({"id": "a", "live_status": "is_upcoming"}),
            json!({"id": "a", "live_status": "post_live"}),
        ] {
            assert!(matches!(
                parse_probe(&j, 10),
                Err(YtDlpError::Site(SiteFailure::Live))
            ));
        }
        let j = json!({"id": "a", "live_status": "was_live", "extractor": "x"});
        assert!(matches!(parse_probe(&j, 10), Ok(Probe::Media(_))));
        assert!(matches!(
            parse_probe(&json!({"title": "no id"}), 10),
            Err(YtDlpError::Malformed(_))
        ));
        assert!(matches!(
            parse_probe(&json!([1]), 10),
            Err(YtDlpError::Malformed(_))
        ));
    }

    #[test]
    fn progress_lines() {
        assert_eq!(parse_progress("1024 48044 NA"), (Some(1024), Some(48044)));
        assert_eq!(parse_progress("1024 NA 5000.5"), (Some(1024), Some(5000)));
        assert_eq!(parse_progress("NA NA NA"), (None, None));
        let mut lines = Lines::default();
        assert!(lines.push(b"ab").is_empty());
        assert_eq!(lines.push(b"c\r\nd\n"), ["abc", "d"]);
        let long = vec![b'x'; MAX_LINE_BYTES + 10];
        assert!(lines.push(&long).is_empty());
        assert_eq!(lines.push(b"\nok\n"), ["ok"]);
    }

    #[test]
    fn stderr_tail_is_bounded() {
        let mut tail = Tail::default();
        tail.push(&vec![b'a'; STDERR_TAIL_BYTES]);
        tail.push(b"ERROR: end");
        let s = tail.into_string();
        assert_eq!(s.len(), STDERR_TAIL_BYTES);
        assert!(s.ends_with("ERROR: end"));
    }
}
