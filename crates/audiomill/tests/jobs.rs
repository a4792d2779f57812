//! Jobs: convert and analyze end to end, idempotency, tenants, listing, events.

use crate::support::audio::{db, ffprobe, noise, sine, wav};
use crate::support::{assert_problem, create_key, TestServer};
use serde_json::json;
use std::time::Duration;

fn analysis_of(bytes: &[u8], ext: &str) -> audiomill_media::Analysis {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("f.{ext}"));
    std::fs::write(&path, bytes).unwrap();
    let options = audiomill_core::AnalyzeOptions::default();
    audiomill_media::analyze(
        &path,
        &options,
        &audiomill_core::Limits::default(),
        &mut |_| {},
    )
    .unwrap()
}

#[tokio::test]
async fn upload_convert_download_round_trip() {
    let server = TestServer::start().await;
    // 3 s of a 997 Hz sine at -6 dBFS, stereo 44.1 kHz.
    let upload = server
        .upload(wav(
            44_100,
            2,
            &sine(44_100, 2, 3.0, 997.0, db(-6.0)),
            false,
        ))
        .await;
    let cases = [
        (
            json!({"format": "mp3", "bitrate": 128, "sample_rate": 48000, "channels": 1}),
            "mp3",
            48_000,
            1,
        ),
        (json!({"format": "flac"}), "flac", 44_100, 2),
        (
            json!({"format": "wav", "sample_rate": 16000}),
            "pcm_s16le",
            16_000,
            2,
        ),
    ];
    for (options, codec, rate, channels) in cases {
        let job = server
            .submit(json!({"operation": "convert", "input": {"upload": upload["id"]}, "options": options, "output": {"name": "tone"}}))
            .await;
        assert_eq!(job["status"], "queued");
        let done = server.finish(job["id"].as_str().unwrap()).await;
        assert_eq!(done["status"], "succeeded", "{done}");
        assert_eq!(done["progress"], 1.0);
        let artifacts = done["artifacts"].as_array().unwrap();
        assert_eq!(artifacts.len(), 1);
        let artifact = &artifacts[0];
        let ext = options["format"].as_str().unwrap();
        assert_eq!(artifact["name"], format!("tone.{ext}"));
        let bytes = server.download(artifact["url"].as_str().unwrap()).await;
        assert_eq!(bytes.len() as u64, artifact["size"].as_u64().unwrap());
        let (found_codec, found_rate, found_channels, duration) = ffprobe(&bytes);
        assert_eq!(
            (found_codec.as_str(), found_rate, found_channels),
            (codec, rate, channels),
            "{options}"
        );
        assert!(
            (duration - 3.0).abs() < 0.06,
            "duration {duration} for {options}"
        );
        // Level survives: RMS of a -6 dBFS sine is -9.01 dBFS. Lossless formats keep it
        // exactly; a 128 kbit/s MP3 of a pure tone measures about 0.45 dB lower (Debian's
        // ffmpeg encodes and decodes the same file to the same figure), so it gets 0.6 dB.
        let analysis = analysis_of(&bytes, ext);
        let tolerance = if ext == "mp3" { 0.6 } else { 0.02 };
        let rms = analysis.rms_dbfs.unwrap();
        assert!((rms + 9.01).abs() < tolerance, "rms {rms} for {options}");
    }
}

#[tokio::test]
async fn analyze_measures_known_signals() {
    let server = TestServer::start().await;
    // A full-scale 997 Hz sine: RMS -3.01 dBFS, peak 0 dBFS.
    let full = server
        .upload(wav(48_000, 1, &sine(48_000, 1, 2.0, 997.0, 1.0), true))
        .await;
    // EBU Tech 3341 cases 1 and 2: stereo 1 kHz at -23 and -33 dBFS read -23 and -33 LUFS.
    let case1 = server
        .upload(wav(
            48_000,
            2,
            &sine(48_000, 2, 20.0, 1000.0, db(-23.0)),
            true,
        ))
        .await;
    let case2 = server
        .upload(wav(
            48_000,
            2,
            &sine(48_000, 2, 20.0, 1000.0, db(-33.0)),
            true,
        ))
        .await;
    // Case 3: -36, -23, -36 dBFS for 10, 60, 10 s: the gate leaves -23 LUFS.
    let mut case3 = sine(48_000, 2, 10.0, 1000.0, db(-36.0));
    case3.extend(sine(48_000, 2, 60.0, 1000.0, db(-23.0)));
    case3.extend(sine(48_000, 2, 10.0, 1000.0, db(-36.0)));
    let case3 = server.upload(wav(48_000, 2, &case3, true)).await;
    let mut results = Vec::new();
    for upload in [&full, &case1, &case2, &case3] {
        let job = server
            .submit(json!({"operation": "analyze", "input": {"upload": upload["id"]}}))
            .await;
        let done = server.finish(job["id"].as_str().unwrap()).await;
        assert_eq!(done["status"], "succeeded", "{done}");
        assert_eq!(done["artifacts"][0]["content_type"], "application/json");
        results.push(done["result"].clone());
    }
    let r = &results[0];
    assert!((r["rms_dbfs"].as_f64().unwrap() + 3.01).abs() < 0.01, "{r}");
    assert!(r["sample_peak_dbfs"].as_f64().unwrap().abs() < 0.01, "{r}");
    assert!(r["true_peak_dbtp"].as_f64().unwrap() > -0.1, "{r}");
    assert_eq!(r["container"], "wav");
    assert_eq!(r["codec"], "pcm_f32le");
    assert_eq!(r["sample_rate"], 48_000);
    assert_eq!(r["channels"], 1);
    assert!((r["duration_secs"].as_f64().unwrap() - 2.0).abs() < 1e-6);
    // The crests of a full-scale sine are single samples: no clipping. No DC, no silence, and
    // the default overview of 1000 buckets reaching full scale.
    assert_eq!(r["clipped_samples"], 0, "{r}");
    assert!(r["dc_offset"][0].as_f64().unwrap().abs() < 1e-3, "{r}");
    assert_eq!(r["silence"], json!([]));
    assert_eq!(r["waveform"]["buckets"], 1000);
    assert!(r["waveform"]["max"][0][500].as_f64().unwrap() > 0.99, "{r}");
    for (result, expected) in [
        (&results[1], -23.0),
        (&results[2], -33.0),
        (&results[3], -23.0),
    ] {
        let lufs = result["integrated_lufs"].as_f64().unwrap();
        assert!(
            (lufs - expected).abs() <= 0.1,
            "integrated {lufs} LUFS, expected {expected}: {result}"
        );
    }
    // A steady tone has (almost) no loudness range.
    assert!(results[1]["loudness_range_lu"].as_f64().unwrap() < 0.5);
}

#[tokio::test]
async fn analyze_writes_a_waveform_png_when_asked() {
    let server = TestServer::start().await;
    let upload = server
        .upload(wav(
            44_100,
            2,
            &sine(44_100, 2, 2.0, 440.0, db(-6.0)),
            false,
        ))
        .await;
    let job = server
        .submit(
            json!({"operation": "analyze", "input": {"upload": upload["id"]},
                       "options": {"waveform_buckets": 200, "waveform_png": true, "tempo": false},
                       "output": {"name": "tone"}}),
        )
        .await;
    let done = server.finish(job["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["result"]["waveform"]["buckets"], 200);
    assert!(done["result"]["tempo_bpm"].is_null());
    let artifacts = done["artifacts"].as_array().unwrap();
    assert_eq!(artifacts.len(), 2, "{done}");
    // Artifacts made in the same millisecond have no defined order: find them by type.
    let by_type = |t: &str| artifacts.iter().find(|a| a["content_type"] == t);
    assert!(by_type("application/json").is_some(), "{done}");
    let png = by_type("image/png").expect("a PNG artifact");
    assert_eq!(png["name"], "tone.png");
    let bytes = server.download(png["url"].as_str().unwrap()).await;
    assert_eq!(bytes.len() as u64, png["size"].as_u64().unwrap());
    // PNG signature, then the IHDR chunk: 1200 × 200 pixels for two channels.
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(&bytes[12..16], b"IHDR");
    let be = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    assert_eq!((be(16), be(20)), (1200, 200));

    // Without waveform_png there is only the report.
    let job = server
        .submit(
            json!({"operation": "analyze", "input": {"upload": upload["id"]},
                       "options": {"waveform_buckets": 0}}),
        )
        .await;
    let done = server.finish(job["id"].as_str().unwrap()).await;
    assert_eq!(done["artifacts"].as_array().unwrap().len(), 1, "{done}");
    assert!(done["result"]["waveform"].is_null());
}

#[tokio::test]
async fn silence_and_noise_analyze_without_nonsense() {
    let server = TestServer::start().await;
    let silent = server
        .upload(wav(16_000, 1, &vec![0.0; 16_000], false))
        .await;
    let job = server
        .submit(json!({"operation": "analyze", "input": {"upload": silent["id"]}}))
        .await;
    let done = server.finish(job["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert!(done["result"]["rms_dbfs"].is_null());
    assert!(done["result"]["integrated_lufs"].is_null());
    let noisy = server
        .upload(wav(16_000, 1, &noise(16_000, 1, 1.0, 0.5), false))
        .await;
    let job = server
        .submit(json!({"operation": "analyze", "input": {"upload": noisy["id"]}}))
        .await;
    let done = server.finish(job["id"].as_str().unwrap()).await;
    // Uniform noise at 0.5 peak has RMS 0.5/sqrt(3): -10.79 dBFS.
    assert!(
        (done["result"]["rms_dbfs"].as_f64().unwrap() + 10.79).abs() < 0.1,
        "{done}"
    );
}

#[tokio::test]
async fn one_request_with_multipart_and_chained_inputs() {
    let server = TestServer::start().await;
    let file =
        reqwest::multipart::Part::bytes(wav(22_050, 1, &sine(22_050, 1, 1.0, 440.0, 0.5), false))
            .file_name("a.wav");
    let spec = reqwest::multipart::Part::text(
        json!({"operation": "convert", "options": {"format": "flac"}}).to_string(),
    );
    let form = reqwest::multipart::Form::new()
        .part("file", file)
        .part("spec", spec);
    let r = server
        .post("/v1/jobs")
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let job: serde_json::Value = r.json().await.unwrap();
    assert!(job["input"]["upload"].as_str().unwrap().starts_with("upl_"));
    let done = server.finish(job["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    // An artifact is a valid input of the next job.
    let artifact = done["artifacts"][0]["id"].as_str().unwrap();
    let next = server
        .submit(json!({"operation": "analyze", "input": {"artifact": artifact}}))
        .await;
    let analyzed = server.finish(next["id"].as_str().unwrap()).await;
    assert_eq!(analyzed["result"]["codec"], "flac", "{analyzed}");
    // A bad spec in a multipart request stores nothing.
    let file =
        reqwest::multipart::Part::bytes(wav(22_050, 1, &sine(22_050, 1, 1.0, 440.0, 0.5), false))
            .file_name("a.wav");
    let spec = reqwest::multipart::Part::text(
        json!({"operation": "convert", "options": {"format": "aac"}}).to_string(),
    );
    let form = reqwest::multipart::Form::new()
        .part("spec", spec)
        .part("file", file);
    assert_problem(
        server
            .post("/v1/jobs")
            .multipart(form)
            .send()
            .await
            .unwrap(),
        422,
        "invalid_job",
    )
    .await;
    assert_eq!(
        server.stored_files().len(),
        3,
        "the upload, the FLAC and the analysis, nothing from the refused request: {:?}",
        server.stored_files()
    );
}

#[tokio::test]
async fn invalid_jobs_are_refused_with_clear_errors() {
    let server = TestServer::start().await;
    let upload = server
        .upload(wav(8_000, 1, &sine(8_000, 1, 0.5, 440.0, 0.5), false))
        .await;
    let bad = [
        json!({"operation": "explode", "input": {"upload": upload["id"]}}),
        json!({"operation": "convert", "input": {"upload": upload["id"]}, "options": {"format": "wav", "bitrate": 128}}),
        json!({"operation": "convert", "input": {"upload": upload["id"]}, "options": {"format": "mp3", "bitrate": 4294967296u64}}),
        json!({"operation": "convert", "input": {"upload": upload["id"]}, "options": {"format": "mp3"}, "extra": 1}),
        json!({"operation": "analyze", "input": {"upload": "../../etc/passwd"}}),
        json!({"operation": "analyze", "input": {"url": "file:///etc/passwd"}}),
    ];
    for spec in bad {
        let r = server.post("/v1/jobs").json(&spec).send().await.unwrap();
        assert_problem(r, 422, "invalid_job").await;
    }
    let missing =
        json!({"operation": "analyze", "input": {"upload": audiomill_core::UploadId::new()}});
    assert_problem(
        server.post("/v1/jobs").json(&missing).send().await.unwrap(),
        422,
        "input_not_found",
    )
    .await;
    let r = server
        .post("/v1/jobs")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_problem(r, 422, "invalid_job").await;
    let r = server
        .post("/v1/jobs")
        .header("content-type", "application/json")
        .body(vec![b' '; 100_000])
        .send()
        .await
        .unwrap();
    assert_problem(r, 413, "payload_too_large").await;
    let list: serde_json::Value = server
        .get("/v1/jobs")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        list["jobs"].as_array().unwrap().is_empty(),
        "refused jobs leave no rows"
    );
}

#[tokio::test]
async fn idempotent_retries_return_the_same_job() {
    let server = TestServer::start().await;
    let upload = server
        .upload(wav(8_000, 1, &sine(8_000, 1, 0.5, 440.0, 0.5), false))
        .await;
    let spec = json!({"operation": "convert", "input": {"upload": upload["id"]}, "options": {"format": "flac"}});
    let send = |spec: serde_json::Value, key: &'static str| {
        let request = server
            .post("/v1/jobs")
            .header("idempotency-key", key)
            .json(&spec);
        async move { request.send().await.unwrap() }
    };
    let first = send(spec.clone(), "retry-1").await;
    assert_eq!(first.status(), 202);
    let first: serde_json::Value = first.json().await.unwrap();
    // Concurrent retries of the same request all get the same job.
    let retries = futures::future::join_all((0..8).map(|_| send(spec.clone(), "retry-1"))).await;
    for r in retries {
        assert_eq!(r.status(), 202);
        assert_eq!(r.headers()["idempotent-replayed"], "true");
        let job: serde_json::Value = r.json().await.unwrap();
        assert_eq!(job["id"], first["id"]);
    }
    // The same key with a different body is refused.
    let other = json!({"operation": "convert", "input": {"upload": upload["id"]}, "options": {"format": "wav"}});
    assert_problem(send(other, "retry-1").await, 422, "idempotency_mismatch").await;
    let list: serde_json::Value = server
        .get("/v1/jobs")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["jobs"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn tenants_see_only_their_own_things() {
    let server = TestServer::start().await;
    let other_key = create_key(&server.data_dir, "other", Some("other-account"));
    let upload = server
        .upload(wav(8_000, 1, &sine(8_000, 1, 0.5, 440.0, 0.5), false))
        .await;
    let job = server.submit(json!({"operation": "convert", "input": {"upload": upload["id"]}, "options": {"format": "wav"}})).await;
    let done = server.finish(job["id"].as_str().unwrap()).await;
    let file_url = done["artifacts"][0]["url"].as_str().unwrap().to_owned();
    let as_other = |path: String| server.http.get(server.url(&path)).bearer_auth(&other_key);
    for path in [
        format!("/v1/jobs/{}", job["id"].as_str().unwrap()),
        format!("/v1/uploads/{}", upload["id"].as_str().unwrap()),
        file_url.clone(),
        format!("/v1/jobs/{}/events", job["id"].as_str().unwrap()),
    ] {
        assert_problem(as_other(path).send().await.unwrap(), 404, "not_found").await;
    }
    let r = server
        .http
        .delete(server.url(&format!("/v1/jobs/{}", job["id"].as_str().unwrap())))
        .bearer_auth(&other_key)
        .send()
        .await
        .unwrap();
    assert_problem(r, 404, "not_found").await;
    // Using another tenant's upload as input is as if it did not exist.
    let spec = json!({"operation": "analyze", "input": {"upload": upload["id"]}});
    let r = server
        .http
        .post(server.url("/v1/jobs"))
        .bearer_auth(&other_key)
        .json(&spec)
        .send()
        .await
        .unwrap();
    assert_problem(r, 422, "input_not_found").await;
    let list: serde_json::Value = as_other("/v1/jobs".into())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(list["jobs"].as_array().unwrap().is_empty());
    // The owner still has everything.
    assert_eq!(server.get(&file_url).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn listing_paginates_and_validates_filters() {
    let server = TestServer::start_with(
        crate::support::Options::default().env("AUDIOMILL_WORKER_CONCURRENCY", "1"),
    )
    .await;
    let upload = server
        .upload(wav(8_000, 1, &sine(8_000, 1, 0.2, 440.0, 0.5), false))
        .await;
    let mut ids = Vec::new();
    for _ in 0..7 {
        let job = server
            .submit(json!({"operation": "analyze", "input": {"upload": upload["id"]}}))
            .await;
        ids.push(job["id"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        server.finish(id).await;
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/jobs?limit=3&status=succeeded&cursor={c}"),
            None => "/v1/jobs?limit=3&status=succeeded".to_owned(),
        };
        let page: serde_json::Value = server
            .get(&path)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for job in page["jobs"].as_array().unwrap() {
            seen.push(job["id"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    ids.reverse();
    assert_eq!(seen, ids, "newest first, every job once");
    let empty: serde_json::Value = server
        .get("/v1/jobs?status=failed")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(empty["jobs"].as_array().unwrap().is_empty());
    for bad in [
        "/v1/jobs?status=done",
        "/v1/jobs?status=queued'%20OR%20'1'='1",
        "/v1/jobs?limit=0",
        "/v1/jobs?limit=1000",
        "/v1/jobs?cursor=abc",
        "/v1/jobs?sort=id",
    ] {
        assert_problem(server.get(bad).send().await.unwrap(), 400, "bad_request").await;
    }
}

#[tokio::test]
async fn events_stream_from_queued_to_succeeded_then_end() {
    let server = TestServer::start().await;
    let upload = server
        .upload(wav(44_100, 2, &noise(44_100, 2, 20.0, 0.3), false))
        .await;
    let job = server.submit(json!({"operation": "convert", "input": {"upload": upload["id"]}, "options": {"format": "mp3", "bitrate": 320}})).await;
    let id = job["id"].as_str().unwrap();
    let response = server
        .get(&format!("/v1/jobs/{id}/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    // The stream ends by itself after the terminal event.
    let text = tokio::time::timeout(Duration::from_secs(120), response.text())
        .await
        .expect("stream ended")
        .unwrap();
    let events: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert!(
        matches!(events.first(), Some(&"queued") | Some(&"started")),
        "{events:?}"
    );
    assert!(events.contains(&"started"), "{events:?}");
    assert_eq!(events.last(), Some(&"succeeded"), "{events:?}");
    let fractions: Vec<f64> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .filter_map(|v| v["fraction"].as_f64())
        .collect();
    assert!(
        fractions.windows(2).all(|w| w[0] < w[1]),
        "progress only grows: {fractions:?}"
    );
    assert!(fractions.iter().all(|f| (0.0..=1.0).contains(f)));
    // A finished job's stream is just its terminal event.
    let again = server
        .get(&format!("/v1/jobs/{id}/events"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events: Vec<&str> = again
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert_eq!(events, ["succeeded"]);
}

#[tokio::test]
async fn a_replayed_multipart_job_stores_its_file_once() {
    let server = TestServer::start().await;
    let audio = wav(22_050, 1, &sine(22_050, 1, 0.5, 440.0, 0.5), false);
    let send = |spec: serde_json::Value| {
        let file = reqwest::multipart::Part::bytes(audio.clone()).file_name("a.wav");
        let form = reqwest::multipart::Form::new()
            .part("file", file)
            .part("spec", reqwest::multipart::Part::text(spec.to_string()));
        server
            .post("/v1/jobs")
            .header("idempotency-key", "upload-once")
            .multipart(form)
            .send()
    };
    let spec = json!({"operation": "convert", "options": {"format": "flac"}});
    let first: serde_json::Value = send(spec.clone()).await.unwrap().json().await.unwrap();
    let replay = send(spec).await.unwrap();
    assert_eq!(replay.status(), 202);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    let replay: serde_json::Value = replay.json().await.unwrap();
    assert_eq!(replay["id"], first["id"]);
    assert_eq!(replay["input"], first["input"]);
    let other = send(json!({"operation": "convert", "options": {"format": "wav"}}))
        .await
        .unwrap();
    assert_problem(other, 422, "idempotency_mismatch").await;
    server.finish(first["id"].as_str().unwrap()).await;
    // One upload and one FLAC: neither the replay nor the refused request left a file.
    assert_eq!(
        server.stored_files().len(),
        2,
        "{:?}",
        server.stored_files()
    );
    let store = audiomill_store::SqliteStore::open(&server.data_dir.join("audiomill.db"))
        .await
        .unwrap();
    use audiomill_store::FileStore;
    assert_eq!(store.all_blob_keys().await.unwrap().len(), 2);
}

/// Peak resident memory of a process, in bytes (`VmHWM`).
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// A multipart `spec` part far over the JSON cap is refused with `413` as it streams in:
/// the server never holds it (its peak memory does not grow by the part's size), and nothing
/// is stored.
#[tokio::test]
async fn an_oversized_spec_part_is_refused_without_buffering_it() {
    use std::io::{Read, Write};
    let server = TestServer::start().await;
    // Warm up the paths a job submission takes.
    let r = server.get("/v1/jobs").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let pid = server.child.id();
    let before = peak_rss(pid);

    const PART: usize = 64 << 20;
    let boundary = "audiomill-test-boundary";
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"spec\"\r\n\r\n{{\"operation\":\"analyze\",\"output\":{{\"name\":\""
    );
    let tail = format!("\"}}}}\r\n--{boundary}--\r\n");
    let length = head.len() + PART + tail.len();
    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    let request = format!(
        "POST /v1/jobs HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {length}\r\n\r\n",
        server.key
    );
    let mut writer = stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let chunk = vec![b'a'; 64 * 1024];
        let _ = writer.write_all(request.as_bytes());
        let _ = writer.write_all(head.as_bytes());
        let mut sent = 0;
        while sent < PART {
            if writer.write_all(&chunk).is_err() {
                return sent;
            }
            sent += chunk.len();
        }
        let _ = writer.write_all(tail.as_bytes());
        sent
    });
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "connection closed before an answer");
        answer.extend_from_slice(&buf[..n]);
    }
    let status_line = String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap()
        .to_owned();
    assert!(status_line.contains(" 413 "), "{status_line}");
    drop(stream);
    let sent = sender.join().unwrap();
    assert!(sent < PART, "the server read the whole part");
    let grew = peak_rss(pid).saturating_sub(before);
    assert!(grew < 16 << 20, "peak memory grew by {grew} bytes");
    assert!(server.stored_files().is_empty());
    assert!(server.temp_files().is_empty(), "{:?}", server.temp_files());
}
