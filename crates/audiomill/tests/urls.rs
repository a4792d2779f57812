//! URL inputs: `{"url": …}` on any job and the `download` operation. Every server these tests
//! reach is on 127.0.0.1; the test server reaches them only with `allow_private_networks`,
//! and the same URLs are shown refused without it.

use crate::support::audio::{ffprobe, sine, wav};
use crate::support::origin::{ytdlp_program, Origin, Reply};
use crate::support::{assert_problem, Options, TestServer};
use serde_json::json;

/// Two seconds of a stereo tone, as WAV.
fn tone() -> Vec<u8> {
    wav(44_100, 2, &sine(44_100, 2, 2.0, 440.0, 0.5), false)
}

/// Larger than the 1 MB cap the open server runs with.
fn big() -> Vec<u8> {
    wav(44_100, 2, &sine(44_100, 2, 8.0, 440.0, 0.5), false)
}

fn audio(body: Vec<u8>, length: bool) -> Reply {
    Reply::Body {
        content_type: "audio/wav",
        body,
        length,
    }
}

/// A podcast feed of three items on the origin, which yt-dlp reads as a playlist.
fn feed(port: u16) -> Vec<u8> {
    let items: String = (1..=3)
        .map(|i| {
            format!(
                "<item><title>Episode {i}</title><guid>ep{i}</guid>\
                 <enclosure url=\"http://localhost:{port}/item{i}.wav\" type=\"audio/wav\" length=\"1\"/></item>"
            )
        })
        .collect();
    format!(
        "<?xml version=\"1.0\"?><rss version=\"2.0\"><channel><title>Test Show</title>\
         <link>http://localhost:{port}/</link><description>d</description>{items}</channel></rss>"
    )
    .into_bytes()
}

async fn origin() -> Origin {
    Origin::start(|port| {
        let mut routes = vec![
            ("/a.wav".to_owned(), audio(tone(), true)),
            ("/chunked.wav".to_owned(), audio(tone(), false)),
            ("/big.wav".to_owned(), audio(big(), true)),
            ("/big-chunked.wav".to_owned(), audio(big(), false)),
            ("/slow.wav".to_owned(), Reply::Stall),
            (
                "/to-metadata".to_owned(),
                Reply::Redirect("http://169.254.169.254/latest/meta-data/".into()),
            ),
            (
                "/page.html".to_owned(),
                Reply::Body {
                    content_type: "text/html",
                    body: b"<html><body>not audio</body></html>".to_vec(),
                    length: true,
                },
            ),
            (
                "/feed.xml".to_owned(),
                Reply::Body {
                    content_type: "application/rss+xml",
                    body: feed(port),
                    length: true,
                },
            ),
        ];
        for i in 1..=3 {
            routes.push((format!("/item{i}.wav"), audio(tone(), true)));
        }
        routes
    })
    .await
}

/// A server that may reach the origin: private networks allowed, its port allowed, links to
/// `localhost` routed to the pinned yt-dlp with its generic extractor (test-only settings).
async fn open_server(origin: &Origin) -> TestServer {
    TestServer::start_with(
        Options::default()
            .env("AUDIOMILL_OUTBOUND_ALLOW_PRIVATE_NETWORKS", "true")
            .env("AUDIOMILL_OUTBOUND_ALLOWED_PORTS", &origin.port.to_string())
            .env("AUDIOMILL_OUTBOUND_FETCH_IDLE_SECS", "2")
            .env("AUDIOMILL_LIMITS_MAX_UPLOAD_BYTES", "1000000")
            .env("AUDIOMILL_YTDLP_PROGRAM", &ytdlp_program())
            .env("AUDIOMILL_YTDLP_SITES", "localhost")
            .env("AUDIOMILL_YTDLP_ALLOW_GENERIC_EXTRACTOR", "true"),
    )
    .await
}

fn download(url: &str) -> serde_json::Value {
    json!({"operation": "download", "input": {"url": url}})
}

#[tokio::test]
async fn internal_addresses_are_refused_at_submission() {
    let origin = origin().await;
    let server = TestServer::start().await;
    let reachable_when_allowed = origin.url("/a.wav");
    let refused = [
        reachable_when_allowed.as_str(),
        "http://127.0.0.1/a.wav",
        "http://2130706433/",
        "http://0x7f.1/",
        "http://0177.0.0.1/",
        "http://[::ffff:7f00:1]/",
        "http://[::1]/",
        "http://localhost/a.wav",
        "http://a.localhost/",
        "http://0.0.0.0/",
        "http://10.1.2.3/",
        "http://172.16.0.1/",
        "http://192.168.1.1/",
        "http://100.64.0.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/",
        "http://[fc00::1]/",
        "http://224.0.0.1/",
        "http://240.0.0.1/",
        "http://192.0.2.10/",
        "http://[2001:db8::1]/",
        "http://[64:ff9b::a00:1]/",
        "http://[2002:a00:1::]/",
        "http://user:secret@example.com/a.mp3",
        "http://example.com:22/a.mp3",
    ];
    for url in refused {
        let r = server
            .post("/v1/jobs")
            .json(&download(url))
            .send()
            .await
            .unwrap();
        assert_problem(r, 422, "blocked_url").await;
    }
    for url in [
        "file:///etc/passwd",
        "ftp://example.com/a.mp3",
        "gopher://x/",
    ] {
        let r = server
            .post("/v1/jobs")
            .json(&download(url))
            .send()
            .await
            .unwrap();
        assert_problem(r, 422, "invalid_job").await;
    }
    // Nothing was queued, and each refusal is a security event.
    let jobs = server.get_json("/v1/jobs").await;
    assert_eq!(jobs["jobs"].as_array().unwrap().len(), 0);
    let events = server
        .logs()
        .iter()
        .filter(|l| l.contains("\"security\"") && l.contains("blocked_url"))
        .count();
    assert_eq!(events, refused.len(), "{:?}", server.logs());
    // Each names the request, the account and the client.
    for line in server
        .logs()
        .iter()
        .filter(|l| l.contains("\"security\"") && l.contains("blocked_url"))
    {
        for field in ["request_id", "account", "client"] {
            assert!(line.contains(field), "{field} missing: {line}");
        }
    }
    let metrics = server
        .get("/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("blocked_url"), "{metrics}");

    // The switch opens private networks only: metadata addresses stay closed.
    let open = open_server(&origin).await;
    for url in [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/",
        "http://224.0.0.1/",
        "http://127.0.0.1:1/a.wav",
    ] {
        let r = open
            .post("/v1/jobs")
            .json(&download(url))
            .send()
            .await
            .unwrap();
        assert_problem(r, 422, "blocked_url").await;
    }
}

#[tokio::test]
async fn direct_links_are_downloaded_as_they_are_or_converted() {
    let origin = origin().await;
    let server = open_server(&origin).await;

    let job = server.submit(download(&origin.url("/a.wav"))).await;
    let done = server.finish(job["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["result"]["source"]["url"], origin.url("/a.wav"));
    assert_eq!(done["result"]["media"]["container"], "wav");
    assert_eq!(done["progress"], 1.0);
    let artifact = &done["artifacts"][0];
    assert_eq!(artifact["content_type"], "audio/wav");
    // Named after the linked file.
    assert_eq!(artifact["name"], "a.wav");
    assert_eq!(
        server.download(artifact["url"].as_str().unwrap()).await,
        tone()
    );

    // Any operation takes a URL: without Content-Length, converted to MP3.
    let job = server
        .submit(json!({
            "operation": "convert",
            "input": {"url": origin.url("/chunked.wav")},
            "options": {"format": "mp3", "bitrate": 128},
            "output": {"name": "tone"}
        }))
        .await;
    let done = server.finish(job["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let artifact = &done["artifacts"][0];
    assert_eq!(artifact["name"], "tone.mp3");
    let (codec, rate, channels, duration) =
        ffprobe(&server.download(artifact["url"].as_str().unwrap()).await);
    assert_eq!((codec.as_str(), rate, channels), ("mp3", 44_100, 2));
    assert!((duration - 2.0).abs() < 0.1, "{duration}");
    assert!(server.temp_files().is_empty(), "{:?}", server.temp_files());
}

#[tokio::test]
async fn direct_downloads_that_go_wrong_fail_cleanly() {
    let origin = origin().await;
    let server = open_server(&origin).await;
    let cases = [
        ("/big.wav", "input_too_large"),
        ("/big-chunked.wav", "input_too_large"),
        ("/slow.wav", "timeout"),
        ("/to-metadata", "blocked_url"),
        ("/page.html", "unsupported_format"),
        ("/missing.wav", "fetch_failed"),
    ];
    for (path, code) in cases {
        let job = server.submit(download(&origin.url(path))).await;
        let done = server.finish(job["id"].as_str().unwrap()).await;
        assert_eq!(done["status"], "failed", "{path}: {done}");
        assert_eq!(done["error"]["code"], code, "{path}: {done}");
        assert_eq!(done["artifacts"].as_array().unwrap().len(), 0);
        // Messages are ours: no upstream address or text.
        let message = done["error"]["message"].as_str().unwrap();
        assert!(
            !message.contains("127.0.0.1") && !message.contains("169.254"),
            "{message}"
        );
    }
    assert!(server.temp_files().is_empty(), "{:?}", server.temp_files());
    assert!(
        server.stored_files().is_empty(),
        "{:?}",
        server.stored_files()
    );
    assert!(server
        .logs()
        .iter()
        .any(|l| l.contains("\"security\"") && l.contains("blocked_url")));
}

#[tokio::test]
async fn site_links_go_through_ytdlp_with_metadata_and_the_byte_cap() {
    let origin = origin().await;
    let server = open_server(&origin).await;
    let ready = server.get_json("/readyz").await;
    assert_eq!(ready["yt_dlp"], "2026.10.26", "{ready}");

    let url = format!("http://localhost:{}/a.wav", origin.port);
    let job = server
        .submit(json!({
            "operation": "download",
            "input": {"url": url},
            "options": {"format": "flac"}
        }))
        .await;
    let done = server.finish(job["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let source = &done["result"]["source"];
    assert_eq!(source["url"], url);
    assert_eq!(source["extractor"], "generic");
    assert_eq!(source["title"], "a", "{source}");
    let artifact = &done["artifacts"][0];
    // Named after the title; the title is written into the file's tags.
    assert_eq!(artifact["name"], "a.flac");
    let bytes = server.download(artifact["url"].as_str().unwrap()).await;
    let (codec, rate, channels, duration) = ffprobe(&bytes);
    assert_eq!((codec.as_str(), rate, channels), ("flac", 44_100, 2));
    assert!((duration - 2.0).abs() < 0.05, "{duration}");
    assert!(
        bytes.windows(7).any(|w| w == b"TITLE=a"),
        "title tag missing"
    );

    let big = server
        .submit(download(&format!(
            "http://localhost:{}/big-chunked.wav",
            origin.port
        )))
        .await;
    let done = server.finish(big["id"].as_str().unwrap()).await;
    assert_eq!(done["error"]["code"], "input_too_large", "{done}");

    let missing = server
        .submit(download(&format!(
            "http://localhost:{}/nothing.wav",
            origin.port
        )))
        .await;
    let done = server.finish(missing["id"].as_str().unwrap()).await;
    assert_eq!(done["error"]["code"], "media_unavailable", "{done}");
    assert!(server.temp_files().is_empty(), "{:?}", server.temp_files());
}

#[tokio::test]
async fn playlists_expand_into_one_job_per_item() {
    let origin = origin().await;
    let server = open_server(&origin).await;
    let url = format!("http://localhost:{}/feed.xml", origin.port);

    // Without `playlist: true`, a playlist link is refused with a hint.
    let job = server.submit(download(&url)).await;
    let done = server.finish(job["id"].as_str().unwrap()).await;
    assert_eq!(done["error"]["code"], "invalid_input", "{done}");

    let job = server
        .submit(json!({
            "operation": "download",
            "input": {"url": url},
            "options": {"playlist": true, "max_items": 2, "format": "mp3"}
        }))
        .await;
    let id = job["id"].as_str().unwrap();
    let done = server.finish(id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["progress"], 1.0);
    let result = &done["result"];
    assert_eq!(result["playlist"]["title"], "Test Show", "{result}");
    assert_eq!(result["playlist"]["truncated"], true);
    let items = result["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    for (i, item) in items.iter().enumerate() {
        let child = server.job(item["job"].as_str().unwrap()).await;
        assert_eq!(child["status"], "succeeded", "{child}");
        assert_eq!(child["parent"], id);
        assert_eq!(child["operation"], "download");
        assert_eq!(child["options"], json!({"format": "mp3"}));
        assert_eq!(child["artifacts"][0]["content_type"], "audio/mpeg");
        assert_eq!(
            child["artifacts"][0]["name"],
            format!("Episode {}.mp3", i + 1),
            "{child}"
        );
    }
    // The parent and its two items; the third item was never queued.
    let listed = server.get_json("/v1/jobs?limit=100").await;
    assert_eq!(listed["jobs"].as_array().unwrap().len(), 4);
}

#[test]
fn doctor_reports_the_pinned_ytdlp_and_the_url_policy() {
    let dir = tempfile::tempdir().unwrap();
    let run = |program: &str| {
        let out = std::process::Command::new(crate::support::BIN)
            .args(["doctor", "--data-dir"])
            .arg(dir.path())
            .env("AUDIOMILL_YTDLP_PROGRAM", program)
            .output()
            .unwrap();
        (
            out.status,
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (status, stdout) = run(&ytdlp_program());
    assert!(status.success(), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("ok") && l.contains("yt-dlp") && l.contains("2026.10.26")),
        "{stdout}"
    );
    assert!(stdout.contains("public addresses only"), "{stdout}");
    // A missing yt-dlp is a warning: everything else still works.
    let (status, stdout) = run("/nonexistent/yt-dlp");
    assert!(status.success(), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("warn") && l.contains("yt-dlp")),
        "{stdout}"
    );
}

/// A stand-in for yt-dlp that answers as yt-dlp does for media the tests cannot reach here:
/// metadata of over-long media and live streams, and yt-dlp's own error lines. It fails any
/// download: a refusal must come from the metadata, before a byte is fetched.
fn fake_ytdlp(dir: &std::path::Path) -> String {
    let script = dir.join("yt-dlp");
    std::fs::write(
        &script,
        r#"#!/bin/sh
for a in "$@"; do last="$a"; done
case "$*" in *--version*) echo 2026.10.26; exit 0;; esac
case "$*" in *--load-info-json*) echo "ERROR: the download must not start" >&2; exit 1;; esac
case "$last" in
  *v=long*) echo '{"id":"long","title":"Four Hours","duration":14400,"extractor":"youtube","extractor_key":"Youtube","webpage_url":"https://www.youtube.com/watch?v=long"}';;
  *v=live*) echo '{"id":"live","title":"On Air","is_live":true,"live_status":"is_live","extractor":"youtube","extractor_key":"Youtube"}';;
  *v=private*) echo "ERROR: [youtube] private: Private video. Sign in if you've been granted access to this video" >&2; exit 1;;
  *v=geo*) echo "ERROR: [youtube] geo: The uploader has not made this video available in your country" >&2; exit 1;;
  *v=age*) echo "ERROR: [youtube] age: Sign in to confirm your age. This video may be inappropriate for some users." >&2; exit 1;;
  *v=gone*) echo "ERROR: [youtube] gone: Video unavailable. This video has been removed by the uploader" >&2; exit 1;;
  *v=bot*) echo "ERROR: [youtube] bot: Sign in to confirm you're not a bot. Use --cookies-from-browser or --cookies for the authentication." >&2; exit 1;;
  *) echo "ERROR: unexpected" >&2; exit 1;;
esac
"#,
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script.to_string_lossy().into_owned()
}

#[tokio::test]
async fn site_refusals_come_from_the_metadata_and_map_to_stable_codes() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(
        Options::default()
            .env("AUDIOMILL_YTDLP_PROGRAM", &fake_ytdlp(dir.path()))
            .env("AUDIOMILL_WORKER_MAX_ATTEMPTS", "1"),
    )
    .await;
    let cases = [
        ("long", "input_too_long"),
        ("live", "live_stream"),
        ("private", "media_private"),
        ("geo", "geo_blocked"),
        ("age", "age_restricted"),
        ("gone", "media_unavailable"),
        ("bot", "upstream_rate_limited"),
    ];
    for (video, code) in cases {
        let url = format!("https://www.youtube.com/watch?v={video}");
        let job = server.submit(download(&url)).await;
        let done = server.finish(job["id"].as_str().unwrap()).await;
        assert_eq!(done["status"], "failed", "{video}: {done}");
        assert_eq!(done["error"]["code"], code, "{video}: {done}");
        // The message is ours, never yt-dlp's words.
        let message = done["error"]["message"].as_str().unwrap();
        assert!(
            !message.contains("ERROR") && !message.contains("Sign in"),
            "{message}"
        );
    }
    assert!(server.temp_files().is_empty(), "{:?}", server.temp_files());
}
