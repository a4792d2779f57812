//! Uploads: probing by content, the byte cap, limits, and nothing left behind on refusal.

use crate::support::audio::{self, db, sine, wav};
use crate::support::{assert_problem, Options, TestServer};

/// Upload rows and stored bytes: a refused upload must leave neither.
async fn assert_nothing_stored(server: &TestServer) {
    let store = audiomill_store::SqliteStore::open(&server.data_dir.join("audiomill.db"))
        .await
        .unwrap();
    use audiomill_store::FileStore;
    assert!(
        store.all_blob_keys().await.unwrap().is_empty(),
        "rows left behind"
    );
    assert!(
        server.stored_files().is_empty(),
        "files left behind: {:?}",
        server.stored_files()
    );
    assert!(
        server.temp_files().is_empty(),
        "temp files left behind: {:?}",
        server.temp_files()
    );
}

#[tokio::test]
async fn a_wav_upload_is_probed_and_described() {
    let server = TestServer::start().await;
    let bytes = wav(44_100, 2, &sine(44_100, 2, 1.5, 440.0, 0.5), false);
    let size = bytes.len();
    let upload = server.upload(bytes).await;
    assert!(upload["id"].as_str().unwrap().starts_with("upl_"));
    assert_eq!(upload["container"], "wav");
    assert_eq!(upload["codec"], "pcm_s16le");
    assert_eq!(upload["sample_rate"], 44_100);
    assert_eq!(upload["channels"], 2);
    assert!((upload["duration_secs"].as_f64().unwrap() - 1.5).abs() < 1e-3);
    assert_eq!(upload["bit_rate"], 44_100 * 2 * 16);
    assert_eq!(upload["size"], size);
    assert_eq!(upload["sha256"].as_str().unwrap().len(), 64);
    let id = upload["id"].as_str().unwrap();
    let again: serde_json::Value = server
        .get(&format!("/v1/uploads/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again["id"], id);
}

#[tokio::test]
async fn probing_is_by_content_for_foreign_encoders_and_multipart() {
    let server = TestServer::start().await;
    let source = wav(48_000, 1, &sine(48_000, 1, 2.0, 1000.0, 0.3), false);
    for (ext, codec) in [("mp3", "mp3"), ("flac", "flac"), ("ogg", "vorbis")] {
        let encoded = audio::ffmpeg_encode(&source, ext, &[]);
        // Sent as multipart with a misleading name and type: the content decides.
        let part = reqwest::multipart::Part::bytes(encoded)
            .file_name("notes.txt")
            .mime_str("text/plain")
            .unwrap();
        let form = reqwest::multipart::Form::new().part("file", part);
        let r = server
            .post("/v1/uploads")
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{ext}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["codec"], codec, "{body}");
        assert_eq!(body["filename"], "notes.txt");
        assert!(
            (body["duration_secs"].as_f64().unwrap() - 2.0).abs() < 0.06,
            "{body}"
        );
    }
}

#[tokio::test]
async fn refused_uploads_leave_nothing_behind() {
    let server = TestServer::start_with(
        Options::default().env("AUDIOMILL_LIMITS_MAX_UPLOAD_BYTES", "100000"),
    )
    .await;
    // Empty body.
    let r = server
        .post("/v1/uploads")
        .body(Vec::<u8>::new())
        .send()
        .await
        .unwrap();
    assert_problem(r, 400, "bad_request").await;
    // Not audio (a text file, random bytes, a PNG header).
    for junk in [
        b"hello, this is not audio at all".to_vec(),
        (0..5000u32).map(|i| (i * 7919 % 251) as u8).collect(),
        b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec(),
    ] {
        let r = server
            .post("/v1/uploads")
            .header("content-type", "audio/wav")
            .body(junk)
            .send()
            .await
            .unwrap();
        assert_problem(r, 415, "unsupported_media").await;
    }
    // Too large, counted while streaming: a chunked body with no Content-Length.
    let big = wav(48_000, 2, &sine(48_000, 2, 2.0, 440.0, 0.5), false);
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        big.chunks(8192).map(|c| Ok(c.to_vec())).collect();
    let body = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    let r = server.post("/v1/uploads").body(body).send().await.unwrap();
    assert_problem(r, 413, "payload_too_large").await;
    // Too large with an honest Content-Length.
    let r = server.post("/v1/uploads").body(big).send().await.unwrap();
    assert_problem(r, 413, "payload_too_large").await;
    // A multipart form without a file.
    let form = reqwest::multipart::Form::new().text("note", "no file here");
    let r = server
        .post("/v1/uploads")
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_problem(r, 400, "bad_request").await;
    assert_nothing_stored(&server).await;
    let security = server
        .logs()
        .iter()
        .filter(|l| l.contains("\"event\":\"upload_rejected\""))
        .count();
    assert!(security >= 6, "rejected uploads are security events");
}

#[tokio::test]
async fn limits_are_checked_at_probe_time() {
    let server = TestServer::start_with(
        Options::default()
            .env("AUDIOMILL_LIMITS_MAX_DURATION_SECS", "2")
            .env("AUDIOMILL_LIMITS_MAX_SAMPLE_RATE", "48000")
            .env("AUDIOMILL_LIMITS_MAX_CHANNELS", "2"),
    )
    .await;
    let long = wav(8_000, 1, &sine(8_000, 1, 3.0, 440.0, 0.5), false);
    assert_problem(
        server.post("/v1/uploads").body(long).send().await.unwrap(),
        422,
        "input_too_long",
    )
    .await;
    let fast = wav(96_000, 1, &sine(96_000, 1, 0.2, 440.0, 0.5), false);
    assert_problem(
        server.post("/v1/uploads").body(fast).send().await.unwrap(),
        422,
        "sample_rate_too_high",
    )
    .await;
    let wide = wav(8_000, 6, &sine(8_000, 6, 0.2, 440.0, 0.5), false);
    assert_problem(
        server.post("/v1/uploads").body(wide).send().await.unwrap(),
        422,
        "too_many_channels",
    )
    .await;
    assert_nothing_stored(&server).await;
    // A header that declares hours of audio in a tiny file: the declared size is not
    // trusted beyond the bytes that are there.
    let mut lying = wav(8_000, 1, &sine(8_000, 1, 0.5, 440.0, 0.5), false);
    lying[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
    let r = server.post("/v1/uploads").body(lying).send().await.unwrap();
    match r.status().as_u16() {
        201 => {
            let upload: serde_json::Value = r.json().await.unwrap();
            assert!(upload["duration_secs"].as_f64().unwrap() < 1.0, "{upload}");
            let id = upload["id"].as_str().unwrap();
            let job = server
                .submit(serde_json::json!({"operation": "analyze", "input": {"upload": id}}))
                .await;
            let done = server.finish(job["id"].as_str().unwrap()).await;
            assert_eq!(done["status"], "succeeded", "{done}");
            return;
        }
        status => assert!(matches!(status, 415 | 422), "{status}"),
    }
    let _ = db(0.0);
}

#[tokio::test]
async fn a_stalled_upload_is_cut_off_by_the_request_timeout() {
    use std::io::{Read, Write};
    let server = TestServer::start_with(
        crate::support::Options::default().env("AUDIOMILL_HTTP_UPLOAD_TIMEOUT_SECS", "1"),
    )
    .await;
    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "POST /v1/uploads HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\n\
         Content-Type: audio/wav\r\nContent-Length: 100000\r\n\r\nRIFF",
        server.key
    )
    .unwrap();
    let started = std::time::Instant::now();
    let mut answer = vec![0u8; 4096];
    let n = stream.read(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("\"timeout\""), "{answer}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert!(server.temp_files().is_empty(), "{:?}", server.temp_files());
}
