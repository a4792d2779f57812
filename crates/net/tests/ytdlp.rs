//! The yt-dlp runner against the real pinned yt-dlp and a local HTTP server on 127.0.0.1
//! (reached only because the tests turn on the generic extractor).
//!
//! yt-dlp is found through `AUDIOMILL_YTDLP`, else `<workspace>/.tools/ytdlp/bin/yt-dlp`
//! (installed by `scripts/setup-ytdlp`); without it these tests fail, they never skip.

use audiomill_net::{OutboundUrl, Probe, SiteFailure, UrlPolicy, YtDlp, YtDlpConfig, YtDlpError};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The version `tools/ytdlp-requirements.txt` pins.
const PINNED_VERSION: &str = "2026.10.26";
/// Samples per second of the generated WAVs.
const RATE: u32 = 8000;
/// Seconds of the small WAV.
const SMALL_SECONDS: u32 = 3;
/// Bytes of the large WAVs' audio.
const BIG_PCM_BYTES: u32 = 3_000_000;
const LONG: Duration = Duration::from_secs(60);

fn program() -> PathBuf {
    let path = match std::env::var_os("AUDIOMILL_YTDLP") {
        Some(path) => PathBuf::from(path),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.tools/ytdlp/bin/yt-dlp"),
    };
    assert!(
        path.is_file(),
        "yt-dlp not found at {}: run scripts/setup-ytdlp (or set AUDIOMILL_YTDLP)",
        path.display()
    );
    path
}

/// The policy of the tests: loopback allowed, and the test server's port.
fn local_policy(port: u16) -> UrlPolicy {
    UrlPolicy {
        extra_ports: vec![port],
        allow_private_networks: true,
    }
}

/// yt-dlp with the checking proxy allowing the test server on `port`.
fn ytdlp(generic: bool, port: u16) -> YtDlp {
    ytdlp_with(generic, local_policy(port))
}

fn ytdlp_with(generic: bool, policy: UrlPolicy) -> YtDlp {
    YtDlp::new(YtDlpConfig {
        program: program(),
        allow_generic_extractor: generic,
        cookies: None,
        proxy: None,
        policy,
        socket_timeout: Duration::from_secs(10),
    })
}

/// A mono 16-bit WAV: a 440 Hz sine of `pcm_bytes` bytes of samples.
fn wav(pcm_bytes: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(44 + pcm_bytes as usize);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + pcm_bytes).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&RATE.to_le_bytes());
    out.extend_from_slice(&(RATE * 2).to_le_bytes()); // bytes per second
    out.extend_from_slice(&2u16.to_le_bytes()); // block align
    out.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
    out.extend_from_slice(b"data");
    out.extend_from_slice(&pcm_bytes.to_le_bytes());
    for i in 0..pcm_bytes / 2 {
        let t = i as f64 / RATE as f64;
        let s = (t * 440.0 * std::f64::consts::TAU).sin() * 8000.0;
        out.extend_from_slice(&(s as i16).to_le_bytes());
    }
    out
}

fn small_wav() -> Vec<u8> {
    wav(RATE * 2 * SMALL_SECONDS)
}

/// A server answering by path; returns its port.
fn server() -> u16 {
    logged_server().0
}

/// A server answering by path (also as a proxy: absolute-form targets are answered by their
/// path); returns its port and the request targets it saw.
fn logged_server() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let log = log.clone();
            std::thread::spawn(move || answer(stream, port, &log));
        }
    });
    (port, seen)
}

fn feed(port: u16) -> String {
    let items: String = (1..=3)
        .map(|i| {
            format!(
                "<item><title>Episode {i}</title><guid>ep{i}</guid>\
                 <enclosure url=\"http://127.0.0.1:{port}/a.wav?ep={i}\" type=\"audio/wav\" \
                 length=\"{}\"/></item>",
                small_wav().len()
            )
        })
        .collect();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<rss version=\"2.0\"><channel>\
         <title>Test feed</title><link>http://127.0.0.1:{port}/</link>\
         <description>three episodes</description>{items}</channel></rss>"
    )
}

fn answer(mut stream: TcpStream, port: u16, log: &Mutex<Vec<String>>) {
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&request);
    let target = text.split_whitespace().nth(1).unwrap_or("/").to_owned();
    log.lock().unwrap().push(target.clone());
    let origin_form = match target.strip_prefix("http://") {
        Some(rest) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => &target,
    };
    let path = origin_form.split('?').next().unwrap_or("/");
    let head = |status: &str, extra: &str| {
        format!("HTTP/1.1 {status}\r\n{extra}Connection: close\r\n\r\n")
    };
    let with_length = |body: &[u8], kind: &str| {
        let mut out = head(
            "200 OK",
            &format!("Content-Type: {kind}\r\nContent-Length: {}\r\n", body.len()),
        )
        .into_bytes();
        out.extend_from_slice(body);
        out
    };
    let _ = match path {
        "/a.wav" => stream.write_all(&with_length(&small_wav(), "audio/wav")),
        "/big.wav" => stream.write_all(&with_length(&wav(BIG_PCM_BYTES), "audio/wav")),
        // Paced (about a second for the whole body), as a real server is: on loopback the
        // whole body would otherwise arrive before the cap's next check can see it grow.
        "/big-no-length.wav" => stream
            .write_all(head("200 OK", "Content-Type: audio/wav\r\n").as_bytes())
            .and_then(|_| {
                for chunk in wav(BIG_PCM_BYTES).chunks(64 * 1024) {
                    stream.write_all(chunk)?;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Ok(())
            }),
        "/feed.xml" => stream.write_all(&with_length(
            feed(port).as_bytes(),
            "application/rss+xml; charset=utf-8",
        )),
        // Cloud metadata behind a redirect: only the checking proxy can see where it goes.
        "/to-metadata.wav" => stream.write_all(
            head(
                "302 Found",
                "Location: http://169.254.169.254/latest/meta-data/x.wav\r\nContent-Length: 0\r\n",
            )
            .as_bytes(),
        ),
        // The media the first time (the probe), then a redirect to cloud metadata (the
        // download).
        "/then-metadata.wav" => {
            let earlier = log
                .lock()
                .unwrap()
                .iter()
                .filter(|t| t.contains("/then-metadata.wav"))
                .count();
            if earlier <= 1 {
                stream.write_all(&with_length(&small_wav(), "audio/wav"))
            } else {
                stream.write_all(
                    head(
                        "302 Found",
                        "Location: http://169.254.169.254/latest/meta-data/x.wav\r\n\
                         Content-Length: 0\r\n",
                    )
                    .as_bytes(),
                )
            }
        }
        "/slow" => {
            std::thread::sleep(Duration::from_secs(30));
            Ok(())
        }
        "/slow-body.wav" => {
            let body = small_wav();
            let _ = stream.write_all(
                head(
                    "200 OK",
                    &format!(
                        "Content-Type: audio/wav\r\nContent-Length: {}\r\n",
                        body.len()
                    ),
                )
                .as_bytes(),
            );
            for chunk in body.chunks(512) {
                if stream.write_all(chunk).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(300));
            }
            Ok(())
        }
        _ => stream.write_all(head("404 Not Found", "Content-Length: 0\r\n").as_bytes()),
    };
}

fn url(port: u16, path: &str) -> OutboundUrl {
    let policy = UrlPolicy {
        extra_ports: vec![port],
        allow_private_networks: true,
    };
    OutboundUrl::parse(&format!("http://127.0.0.1:{port}{path}"), &policy).unwrap()
}

/// Names of the files in `dir`.
fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Whether any process still works in `dir` (its current directory), waiting up to 2 s for
/// killed ones to go.
fn process_in(dir: &Path) -> bool {
    let dir = dir.canonicalize().unwrap();
    let until = Instant::now() + Duration::from_secs(2);
    loop {
        let found = std::fs::read_dir("/proc").unwrap().any(|entry| {
            let Ok(entry) = entry else { return false };
            std::fs::read_link(entry.path().join("cwd")).is_ok_and(|cwd| cwd == dir)
        });
        if !found || Instant::now() > until {
            return found;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

async fn probe_media(yt: &YtDlp, url: &OutboundUrl, dir: &Path) -> audiomill_net::MediaMeta {
    match yt.probe(url, dir, false, 10, LONG).await {
        Ok(Probe::Media(meta)) => meta,
        other => panic!("expected media, got {other:?}"),
    }
}

#[tokio::test]
async fn version_is_the_pinned_one() {
    assert_eq!(ytdlp(false, 0).version().await.unwrap(), PINNED_VERSION);
}

#[tokio::test]
async fn a_missing_program_is_not_installed() {
    let yt = YtDlp::new(YtDlpConfig::new("/nonexistent/yt-dlp"));
    assert!(matches!(yt.version().await, Err(YtDlpError::NotInstalled)));
}

#[tokio::test]
async fn probe_then_download_a_direct_link() {
    let port = server();
    let yt = ytdlp(true, port);
    let dir = tempfile::tempdir().unwrap();
    let meta = probe_media(&yt, &url(port, "/a.wav"), dir.path()).await;
    assert_eq!(meta.extractor, "generic");
    assert_eq!(meta.id, "a");
    assert_eq!(meta.title.as_deref(), Some("a"));
    // yt-dlp reports no duration for a direct link without ffprobe: nothing asserted on it.
    assert_eq!(
        meta.webpage_url.as_deref(),
        Some(format!("http://127.0.0.1:{port}/a.wav").as_str())
    );
    assert_eq!(files(dir.path()), ["info.json"]);

    let mut calls = Vec::new();
    let got = yt
        .download(dir.path(), 1_000_000, LONG, &mut |done, total| {
            calls.push((done, total))
        })
        .await
        .unwrap();
    let size = small_wav().len() as u64;
    assert_eq!(got.bytes, size);
    assert_eq!(std::fs::read(&got.path).unwrap(), small_wav());
    assert_eq!(got.path.file_name().unwrap(), "media.wav");
    assert_eq!(calls.last(), Some(&(size, Some(size))));
    assert!(calls.len() >= 2, "{calls:?}");
    assert!(calls.windows(2).all(|w| w[0].0 <= w[1].0), "{calls:?}");
    assert_eq!(files(dir.path()), ["info.json", "media.wav"]);
    assert!(!process_in(dir.path()));
}

#[tokio::test]
async fn without_the_generic_extractor_a_plain_url_is_unsupported() {
    let port = server();
    let dir = tempfile::tempdir().unwrap();
    let got = ytdlp(false, port)
        .probe(&url(port, "/a.wav"), dir.path(), false, 10, LONG)
        .await;
    assert!(
        matches!(got, Err(YtDlpError::Site(SiteFailure::UnsupportedSite))),
        "{got:?}"
    );
    assert_eq!(files(dir.path()), Vec::<String>::new());
}

#[tokio::test]
async fn not_found_is_unavailable_and_says_nothing_of_yt_dlp() {
    let port = server();
    let dir = tempfile::tempdir().unwrap();
    let err = ytdlp(true, port)
        .probe(&url(port, "/missing.wav"), dir.path(), false, 10, LONG)
        .await
        .unwrap_err();
    assert!(
        matches!(err, YtDlpError::Site(SiteFailure::Unavailable)),
        "{err:?}"
    );
    let shown = err.to_string();
    assert_eq!(shown, SiteFailure::Unavailable.message());
    assert!(!shown.contains("127.0.0.1") && !shown.contains("404"));
}

#[tokio::test]
async fn download_without_a_probe_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let got = ytdlp(true, 0)
        .download(dir.path(), 1_000_000, LONG, &mut |_, _| {})
        .await;
    assert!(matches!(got, Err(YtDlpError::NotProbed)), "{got:?}");
}

/// Announced too large: yt-dlp's `--max-filesize` skips it, and that is `TooLarge`.
#[tokio::test]
async fn a_declared_size_over_the_cap_is_too_large() {
    let port = server();
    let yt = ytdlp(true, port);
    let dir = tempfile::tempdir().unwrap();
    probe_media(&yt, &url(port, "/big.wav"), dir.path()).await;
    let got = yt
        .download(dir.path(), 1_000_000, LONG, &mut |_, _| {})
        .await;
    assert!(matches!(got, Err(YtDlpError::TooLarge)), "{got:?}");
    assert_eq!(files(dir.path()), ["info.json"]);
    assert!(!process_in(dir.path()));
}

/// No length announced: our own count stops it, kills yt-dlp and deletes the partial file.
#[tokio::test]
async fn an_undeclared_size_over_the_cap_is_stopped() {
    let port = server();
    let yt = ytdlp(true, port);
    let dir = tempfile::tempdir().unwrap();
    probe_media(&yt, &url(port, "/big-no-length.wav"), dir.path()).await;
    let mut most = 0;
    let got = yt
        .download(dir.path(), 1_000_000, LONG, &mut |done, _| {
            most = most.max(done)
        })
        .await;
    assert!(matches!(got, Err(YtDlpError::TooLarge)), "{got:?}");
    assert!(most < u64::from(BIG_PCM_BYTES), "stopped early, at {most}");
    assert_eq!(files(dir.path()), ["info.json"]);
    assert!(!process_in(dir.path()));
}

#[tokio::test]
async fn a_podcast_feed_is_a_playlist() {
    let port = server();
    let yt = ytdlp(true, port);
    let dir = tempfile::tempdir().unwrap();
    let feed = url(port, "/feed.xml");
    let Probe::Playlist(all) = yt.probe(&feed, dir.path(), true, 10, LONG).await.unwrap() else {
        panic!("expected a playlist")
    };
    assert_eq!(all.title.as_deref(), Some("Test feed"));
    assert!(!all.truncated);
    let urls: Vec<String> = (1..=3)
        .map(|i| format!("http://127.0.0.1:{port}/a.wav?ep={i}"))
        .collect();
    assert_eq!(
        all.entries
            .iter()
            .map(|e| e.url.clone())
            .collect::<Vec<_>>(),
        urls
    );
    assert_eq!(all.entries[1].title.as_deref(), Some("Episode 2"));
    // A playlist's JSON is not kept: its entries are probed one by one.
    assert_eq!(files(dir.path()), Vec::<String>::new());

    let Probe::Playlist(two) = yt.probe(&feed, dir.path(), true, 2, LONG).await.unwrap() else {
        panic!("expected a playlist")
    };
    assert_eq!(two.entries.len(), 2);
    assert!(two.truncated);
    assert_eq!(two.entries[0].url, urls[0]);
}

#[tokio::test]
async fn a_slow_site_times_out_and_yt_dlp_is_gone() {
    let port = server();
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let got = ytdlp(true, port)
        .probe(
            &url(port, "/slow"),
            dir.path(),
            false,
            10,
            Duration::from_secs(3),
        )
        .await;
    assert!(matches!(got, Err(YtDlpError::Timeout)), "{got:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(!process_in(dir.path()));
}

#[tokio::test]
async fn a_slow_download_times_out_and_leaves_nothing() {
    let port = server();
    let yt = ytdlp(true, port);
    let dir = tempfile::tempdir().unwrap();
    probe_media(&yt, &url(port, "/slow-body.wav"), dir.path()).await;
    let started = Instant::now();
    let got = yt
        .download(
            dir.path(),
            1_000_000,
            Duration::from_secs(4),
            &mut |_, _| {},
        )
        .await;
    assert!(matches!(got, Err(YtDlpError::Timeout)), "{got:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(files(dir.path()), ["info.json"]);
    assert!(!process_in(dir.path()));
}

#[tokio::test]
async fn dropping_a_download_kills_yt_dlp() {
    let port = server();
    let yt = ytdlp(true, port);
    let dir = tempfile::tempdir().unwrap();
    probe_media(&yt, &url(port, "/slow-body.wav"), dir.path()).await;
    let mut calls = 0;
    let mut count = |_, _| calls += 1;
    let download = yt.download(dir.path(), 1_000_000, LONG, &mut count);
    let cut = tokio::time::timeout(Duration::from_millis(2500), download).await;
    assert!(cut.is_err(), "the slow download cannot finish in time");
    assert!(!process_in(dir.path()));
}

/// yt-dlp writes its cookie jar back to the file it is given: it gets a copy, removed after.
#[tokio::test]
async fn the_cookies_file_is_passed_as_a_copy() {
    let port = server();
    let dir = tempfile::tempdir().unwrap();
    let operator = tempfile::tempdir().unwrap();
    let cookies = operator.path().join("cookies.txt");
    let content = "# Netscape HTTP Cookie File\n\
                   127.0.0.1\tFALSE\t/\tFALSE\t0\tsession\tabc\n";
    std::fs::write(&cookies, content).unwrap();
    let mut config = YtDlpConfig::new(program());
    config.allow_generic_extractor = true;
    config.cookies = Some(cookies.clone());
    config.policy = local_policy(port);
    let yt = YtDlp::new(config);
    probe_media(&yt, &url(port, "/a.wav"), dir.path()).await;
    assert_eq!(files(dir.path()), ["info.json"]);
    let got = yt
        .download(dir.path(), 1_000_000, LONG, &mut |_, _| {})
        .await
        .unwrap();
    assert_eq!(got.bytes, small_wav().len() as u64);
    assert_eq!(files(dir.path()), ["info.json", "media.wav"]);
    assert_eq!(std::fs::read_to_string(&cookies).unwrap(), content);
}

/// Captures the log of the current thread (the tests' runtime runs the proxy there too).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn start() -> (Captured, tracing::subscriber::DefaultGuard) {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        (captured, tracing::subscriber::set_default(subscriber))
    }

    /// The `blocked_url` security events logged so far.
    fn blocked(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .filter(|l| l.contains("security") && l.contains("blocked_url"))
            .map(str::to_owned)
            .collect()
    }
}

/// The proxy refused a connection to 169.254.169.254 (and logged no path of it).
fn assert_metadata_blocked(log: &Captured) {
    let blocked = log.blocked();
    assert!(
        blocked
            .iter()
            .any(|l| l.contains("169.254.169.254") && l.contains("link-local")),
        "{blocked:?}"
    );
    assert!(
        !blocked.iter().any(|l| l.contains("meta-data")),
        "{blocked:?}"
    );
}

/// Without an operator's proxy yt-dlp goes through the checking proxy: with the default
/// policy it cannot reach the loopback server at all, whatever the URL check let through.
#[tokio::test]
async fn yt_dlp_connections_are_held_to_the_policy() {
    let (port, seen) = logged_server();
    let dir = tempfile::tempdir().unwrap();
    let policy = UrlPolicy {
        extra_ports: vec![port],
        allow_private_networks: false,
    };
    let (log, _guard) = Captured::start();
    let started = Instant::now();
    let got = ytdlp_with(true, policy)
        .probe(&url(port, "/a.wav"), dir.path(), false, 10, LONG)
        .await;
    assert!(
        matches!(got, Err(YtDlpError::Site(_) | YtDlpError::Failed)),
        "{got:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(
        seen.lock().unwrap().is_empty(),
        "the server was never reached"
    );
    let blocked = log.blocked();
    assert!(
        blocked.iter().any(|l| l.contains("loopback")),
        "{blocked:?}"
    );
}

/// A redirect to cloud metadata is refused by the proxy: the probe fails at once (no hang on
/// an address that is never connected to).
#[tokio::test]
async fn a_redirect_to_cloud_metadata_is_refused() {
    let port = server();
    let dir = tempfile::tempdir().unwrap();
    let (log, _guard) = Captured::start();
    let started = Instant::now();
    let got = ytdlp(true, port)
        .probe(
            &url(port, "/to-metadata.wav"),
            dir.path(),
            false,
            10,
            Duration::from_secs(20),
        )
        .await;
    assert!(
        matches!(got, Err(YtDlpError::Site(_) | YtDlpError::Failed)),
        "{got:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(15));
    assert_eq!(files(dir.path()), Vec::<String>::new());
    assert_metadata_blocked(&log);
}

/// The same redirect met by the download (after a clean probe) fails the download.
#[tokio::test]
async fn a_download_redirected_to_cloud_metadata_fails() {
    let (port, seen) = logged_server();
    let yt = ytdlp(true, port);
    let dir = tempfile::tempdir().unwrap();
    let (log, _guard) = Captured::start();
    probe_media(&yt, &url(port, "/then-metadata.wav"), dir.path()).await;
    assert!(log.blocked().is_empty(), "the probe met no redirect");
    let started = Instant::now();
    let got = yt
        .download(
            dir.path(),
            1_000_000,
            Duration::from_secs(20),
            &mut |_, _| {},
        )
        .await;
    assert!(
        matches!(got, Err(YtDlpError::Site(_) | YtDlpError::Failed)),
        "{got:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(15));
    assert!(seen.lock().unwrap().len() >= 2, "the download asked again");
    assert_metadata_blocked(&log);
    assert_eq!(files(dir.path()), ["info.json"]);
    assert!(!process_in(dir.path()));
}

/// The operator's proxy carries every request (and no proxy means direct, whatever the
/// environment says: yt-dlp gets none of ours).
#[tokio::test]
async fn the_operator_proxy_is_used() {
    let (proxy_port, seen) = logged_server();
    let dir = tempfile::tempdir().unwrap();
    let mut config = YtDlpConfig::new(program());
    config.allow_generic_extractor = true;
    config.proxy = Some(format!("http://127.0.0.1:{proxy_port}"));
    let yt = YtDlp::new(config);
    // Nothing listens on the target port: only the proxy can answer.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let target_port = closed.local_addr().unwrap().port();
    drop(closed);
    let meta = probe_media(&yt, &url(target_port, "/a.wav"), dir.path()).await;
    assert_eq!(meta.extractor, "generic");
    let seen = seen.lock().unwrap().clone();
    let expected = format!("http://127.0.0.1:{target_port}/a.wav");
    assert!(seen.contains(&expected), "{seen:?}");
}

// The confinement itself, checked with stand-in programs (shell scripts in place of yt-dlp).

/// A stand-in for yt-dlp: `script` run by `/bin/sh`, in a directory kept alive by the
/// returned guard.
fn stand_in(script: &str) -> (tempfile::TempDir, YtDlp) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("yt-dlp");
    std::fs::write(&program, format!("#!/bin/sh\n{script}\n")).unwrap();
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    (dir, YtDlp::new(YtDlpConfig::new(program)))
}

#[tokio::test]
async fn yt_dlp_gets_an_argument_vector_and_an_empty_environment() {
    let (_program, yt) = stand_in(
        "env > env.txt\n\
         printf '%s\\n' \"$@\" > args.txt\n\
         if read line; then echo stdin-open > stdin.txt; fi\n\
         echo '{\"id\": \"x\", \"extractor\": \"stand-in\"}'",
    );
    let dir = tempfile::tempdir().unwrap();
    let policy = UrlPolicy::default();
    let url = OutboundUrl::parse("https://example.com/a;b$(touch pwned)&c=`id`", &policy).unwrap();
    let meta = probe_media(&yt, &url, dir.path()).await;
    assert_eq!(meta.extractor, "stand-in");

    let env = std::fs::read_to_string(dir.path().join("env.txt")).unwrap();
    let mut vars: Vec<&str> = env
        .lines()
        .map(|l| l.split('=').next().unwrap())
        .filter(|name| !matches!(*name, "PWD" | "SHLVL" | "_" | "OLDPWD"))
        .collect();
    vars.sort();
    assert_eq!(vars, ["HOME", "LANG", "PATH"], "{env}");
    let home = format!("HOME={}", dir.path().display());
    assert!(env.lines().any(|l| l == home), "{env}");
    assert!(env.lines().any(|l| l == "PATH=/usr/bin:/bin"), "{env}");

    let args = std::fs::read_to_string(dir.path().join("args.txt")).unwrap();
    let args: Vec<&str> = args.lines().collect();
    let n = args.len();
    assert_eq!(args[n - 2], "--");
    assert_eq!(args[n - 1], url.as_url().as_str());
    for flag in [
        "--ignore-config",
        "--no-plugin-dirs",
        "--no-cache-dir",
        "--no-remote-components",
        "--restrict-filenames",
        "--no-playlist",
        "-J",
    ] {
        assert!(args.contains(&flag), "{flag} missing: {args:?}");
    }
    let after = |flag: &str| args[args.iter().position(|a| *a == flag).unwrap() + 1];
    assert_eq!(after("--ies"), "default,-generic");
    // No operator's proxy: the run's own checking proxy, on loopback.
    assert!(
        after("--proxy").starts_with("http://127.0.0.1:"),
        "{args:?}"
    );
    assert!(!dir.path().join("pwned").exists());
    assert!(!dir.path().join("stdin.txt").exists(), "stdin is null");
}

#[tokio::test]
async fn oversized_or_broken_json_is_malformed() {
    let dir = tempfile::tempdir().unwrap();
    let url = OutboundUrl::parse("https://example.com/a", &UrlPolicy::default()).unwrap();
    let (_p, yt) = stand_in("head -c 17000000 /dev/zero; sleep 30");
    let started = Instant::now();
    let got = yt.probe(&url, dir.path(), false, 10, LONG).await;
    assert!(matches!(got, Err(YtDlpError::Malformed(_))), "{got:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "killed at once"
    );
    let (_p, yt) = stand_in("echo '{\"id\": '");
    let got = yt.probe(&url, dir.path(), false, 10, LONG).await;
    assert!(matches!(got, Err(YtDlpError::Malformed(_))), "{got:?}");
    let (_p, yt) = stand_in("echo '{\"id\": \"x\", \"live_status\": \"is_live\"}'");
    let got = yt.probe(&url, dir.path(), false, 10, LONG).await;
    assert!(
        matches!(got, Err(YtDlpError::Site(SiteFailure::Live))),
        "{got:?}"
    );
    assert_eq!(files(dir.path()), Vec::<String>::new());
}

#[tokio::test]
async fn unclassified_failures_are_failed_and_classified_ones_site() {
    let dir = tempfile::tempdir().unwrap();
    let url = OutboundUrl::parse("https://example.com/a", &UrlPolicy::default()).unwrap();
    let (_p, yt) = stand_in("echo 'ERROR: something new /secret/path' >&2; exit 1");
    let err = yt
        .probe(&url, dir.path(), false, 10, LONG)
        .await
        .unwrap_err();
    assert!(matches!(err, YtDlpError::Failed), "{err:?}");
    assert!(!err.to_string().contains("secret"));
    let (_p, yt) = stand_in("echo 'ERROR: [site] x: Private video' >&2; exit 1");
    let err = yt
        .probe(&url, dir.path(), false, 10, LONG)
        .await
        .unwrap_err();
    assert!(
        matches!(err, YtDlpError::Site(SiteFailure::Private)),
        "{err:?}"
    );
}

/// Regression guard for the process group: what yt-dlp starts dies with it.
#[tokio::test]
async fn a_timeout_kills_the_whole_process_group() {
    let (_p, yt) = stand_in("sleep 300 &\nsleep 300");
    let dir = tempfile::tempdir().unwrap();
    let url = OutboundUrl::parse("https://example.com/a", &UrlPolicy::default()).unwrap();
    let got = yt
        .probe(&url, dir.path(), false, 10, Duration::from_secs(1))
        .await;
    assert!(matches!(got, Err(YtDlpError::Timeout)), "{got:?}");
    assert!(!process_in(dir.path()), "the background child is gone too");
}
