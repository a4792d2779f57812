//! Artifact downloads: headers and byte ranges.

use crate::support::audio::{sine, wav};
use crate::support::{assert_problem, TestServer};
use serde_json::json;

#[tokio::test]
async fn files_serve_ranges_with_the_right_headers() {
    let server = TestServer::start().await;
    let upload = server
        .upload(wav(8_000, 1, &sine(8_000, 1, 1.0, 440.0, 0.5), false))
        .await;
    let job = server.submit(json!({"operation": "convert", "input": {"upload": upload["id"]}, "options": {"format": "wav"}, "output": {"name": "my song"}})).await;
    let done = server.finish(job["id"].as_str().unwrap()).await;
    let artifact = &done["artifacts"][0];
    let url = artifact["url"].as_str().unwrap();
    let size = artifact["size"].as_u64().unwrap();

    let full = server.get(url).send().await.unwrap();
    assert_eq!(full.status(), 200);
    assert_eq!(full.headers()["content-type"], "audio/wav");
    assert_eq!(full.headers()["accept-ranges"], "bytes");
    assert_eq!(full.headers()["content-length"], size.to_string().as_str());
    assert_eq!(
        full.headers()["content-disposition"],
        "attachment; filename=\"my song.wav\"; filename*=UTF-8''my%20song.wav"
    );
    let whole = full.bytes().await.unwrap();
    assert_eq!(&whole[..4], b"RIFF");

    let part = server
        .get(url)
        .header("range", "bytes=4-11")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(
        part.headers()["content-range"],
        format!("bytes 4-11/{size}").as_str()
    );
    assert_eq!(part.bytes().await.unwrap(), whole[4..12]);

    let tail = server
        .get(url)
        .header("range", "bytes=-10")
        .send()
        .await
        .unwrap();
    assert_eq!(tail.status(), 206);
    assert_eq!(tail.bytes().await.unwrap(), whole[whole.len() - 10..]);

    let open = server
        .get(url)
        .header("range", format!("bytes={}-", size - 3))
        .send()
        .await
        .unwrap();
    assert_eq!(open.status(), 206);
    assert_eq!(open.bytes().await.unwrap().len(), 3);

    let outside = server
        .get(url)
        .header("range", format!("bytes={size}-"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        outside.headers()["content-range"],
        format!("bytes */{size}").as_str()
    );
    assert_problem(outside, 416, "range_not_satisfiable").await;

    // A malformed range is ignored: the whole file.
    let ignored = server
        .get(url)
        .header("range", "bytes=oops")
        .send()
        .await
        .unwrap();
    assert_eq!(ignored.status(), 200);

    let missing = server
        .get("/v1/files/art_01jd4k7v2m3q8r9s0t1v2w3x4y")
        .send()
        .await
        .unwrap();
    assert_problem(missing, 404, "not_found").await;
    let garbage = server
        .get("/v1/files/..%2F..%2Fetc%2Fpasswd")
        .send()
        .await
        .unwrap();
    assert_problem(garbage, 404, "not_found").await;

    // Deleting the finished job deletes its artifacts, rows and bytes.
    let r = server
        .delete(&format!("/v1/jobs/{}", job["id"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_problem(server.get(url).send().await.unwrap(), 404, "not_found").await;
    assert_eq!(
        server.stored_files().len(),
        1,
        "only the upload is left: {:?}",
        server.stored_files()
    );
}

#[tokio::test]
async fn expired_files_are_reaped_rows_and_bytes_together() {
    let server = TestServer::start_with(
        crate::support::Options::default()
            .env("AUDIOMILL_RETENTION_UPLOAD_HOURS", "0")
            .env("AUDIOMILL_RETENTION_ARTIFACT_HOURS", "0")
            .env("AUDIOMILL_RETENTION_REAP_INTERVAL_SECS", "1"),
    )
    .await;
    let upload = server
        .upload(wav(8_000, 1, &sine(8_000, 1, 0.5, 440.0, 0.5), false))
        .await;
    // Zero retention: the reaper removes the upload within a second or two.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let r = server
            .get(&format!("/v1/uploads/{}", upload["id"].as_str().unwrap()))
            .send()
            .await
            .unwrap();
        if r.status() == 404 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "upload not reaped");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(
        server.stored_files().is_empty(),
        "{:?}",
        server.stored_files()
    );
}
