//! Execution: cancel, crashes of the job child and of the server, hostile files, shutdown,
//! and temp files.

use crate::support::audio::{noise, sine, wav};
use crate::support::{Options, TestServer};
use serde_json::json;
use std::time::{Duration, Instant};

/// A job that takes several seconds: 5 minutes of stereo noise to 320 kbit/s MP3 at 48 kHz.
async fn slow_job(server: &TestServer) -> String {
    let upload = server
        .upload(wav(32_000, 2, &noise(32_000, 2, 300.0, 0.3), false))
        .await;
    let job = server
        .submit(json!({"operation": "convert", "input": {"upload": upload["id"]}, "options": {"format": "mp3", "bitrate": 320, "sample_rate": 48000}}))
        .await;
    job["id"].as_str().unwrap().to_owned()
}

async fn wait_running(server: &TestServer, id: &str) {
    server
        .wait_job(id, Duration::from_secs(60), |j| {
            j["status"] == "running" && j["progress"].as_f64().unwrap_or(0.0) > 0.0
        })
        .await;
}

#[tokio::test]
async fn a_running_job_cancels_within_two_seconds() {
    let server = TestServer::start().await;
    let id = slow_job(&server).await;
    wait_running(&server, &id).await;
    let r = server
        .delete(&format!("/v1/jobs/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let asked = Instant::now();
    let done = server
        .wait_job(&id, Duration::from_secs(5), |j| j["status"] != "running")
        .await;
    assert_eq!(done["status"], "canceled", "{done}");
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "took {:?}",
        asked.elapsed()
    );
    assert!(done["artifacts"].as_array().unwrap().is_empty());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(server.job_children().is_empty(), "the child was stopped");
    assert!(server.temp_files().is_empty(), "{:?}", server.temp_files());
    // Canceling a queued job is immediate.
    let r = server
        .delete(&format!("/v1/jobs/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204, "a canceled job can then be deleted");
}

#[tokio::test]
async fn a_killed_job_child_is_retried_and_succeeds_once() {
    let server = TestServer::start().await;
    let id = slow_job(&server).await;
    wait_running(&server, &id).await;
    let children = server.job_children();
    assert_eq!(children.len(), 1, "one job child: {children:?}");
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(children[0], libc::SIGKILL) };
    let done = server
        .wait_job(&id, Duration::from_secs(120), |j| {
            matches!(
                j["status"].as_str(),
                Some("succeeded" | "failed" | "canceled")
            )
        })
        .await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["attempt"], 2);
    assert_eq!(done["artifacts"].as_array().unwrap().len(), 1);
    // One set of artifacts: the upload and one MP3 on disk.
    assert_eq!(
        server.stored_files().len(),
        2,
        "{:?}",
        server.stored_files()
    );
    assert!(server.temp_files().is_empty(), "{:?}", server.temp_files());
}

#[tokio::test]
async fn a_job_survives_the_server_being_killed() {
    let options = Options::default().env("AUDIOMILL_WORKER_LEASE_SECS", "3");
    let mut server = TestServer::start_with(options.clone()).await;
    let id = slow_job(&server).await;
    wait_running(&server, &id).await;
    let child = server.job_children()[0];
    server.signal(libc::SIGKILL);
    server
        .wait_exit(Duration::from_secs(5))
        .expect("server died");
    // The job child dies with its parent (PR_SET_PDEATHSIG).
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::path::Path::new(&format!("/proc/{child}")).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
    assert!(
        status.is_empty() || status.contains(") Z "),
        "job child outlived the server"
    );
    let dir = server.keep_dir();
    let restarted = TestServer::spawn(
        server.data_dir.clone(),
        server.key.clone(),
        options.env.clone(),
    );
    drop(server);
    let done = restarted.finish(&id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["artifacts"].as_array().unwrap().len(), 1);
    assert!(
        restarted.temp_files().is_empty(),
        "{:?}",
        restarted.temp_files()
    );
    drop(restarted);
    drop(dir);
}

#[tokio::test]
async fn hostile_files_fail_their_job_and_the_server_keeps_serving() {
    let server = TestServer::start().await;
    // A WAV whose header promises an hour of audio but holds a quarter second, and whose
    // data is then cut mid-sample.
    let mut truncated = wav(8_000, 1, &sine(8_000, 1, 0.25, 440.0, 0.5), false);
    truncated[40..44].copy_from_slice(&(8_000u32 * 2 * 3600).to_le_bytes());
    truncated.pop();
    // An MP3 cut in half and with bytes flipped in the middle.
    let mp3 = crate::support::audio::ffmpeg_encode(
        &wav(44_100, 2, &sine(44_100, 2, 2.0, 440.0, 0.5), false),
        "mp3",
        &[],
    );
    let mut damaged = mp3[..mp3.len() / 2].to_vec();
    for i in (damaged.len() / 3..damaged.len()).step_by(97) {
        damaged[i] ^= 0x5a;
    }
    // A FLAC cut to a fifth of its length: its header declares 10 s, so it probes fine and
    // reaches a job, and that job must fail cleanly.
    let r = server
        .post("/v1/uploads")
        .body(crate::support::audio::truncated_flac())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "the header is intact: it probes as FLAC");
    let upload: serde_json::Value = r.json().await.unwrap();
    let doomed = server
        .submit(json!({"operation": "convert", "input": {"upload": upload["id"]}, "options": {"format": "wav"}}))
        .await;
    let doomed = server.finish(doomed["id"].as_str().unwrap()).await;
    assert_eq!(doomed["status"], "failed", "{doomed}");
    assert_eq!(doomed["error"]["code"], "decode_failed", "{doomed}");
    assert_eq!(doomed["attempt"], 1, "a bad file is not retried");

    let mut ids = Vec::new();
    let mut truncated_accepted = false;
    for (i, bytes) in [truncated, damaged].into_iter().enumerate() {
        let r = server.post("/v1/uploads").body(bytes).send().await.unwrap();
        if r.status() != 201 {
            // Refused at probe time is a fine outcome too: never a crash.
            assert!(matches!(r.status().as_u16(), 415 | 422), "{}", r.status());
            continue;
        }
        truncated_accepted |= i == 0;
        let upload: serde_json::Value = r.json().await.unwrap();
        for spec in [
            json!({"operation": "analyze", "input": {"upload": upload["id"]}}),
            json!({"operation": "convert", "input": {"upload": upload["id"]}, "options": {"format": "mp3"}}),
        ] {
            ids.push(server.submit(spec).await["id"].as_str().unwrap().to_owned());
        }
    }
    assert!(!ids.is_empty(), "at least one hostile file reached a job");
    for id in &ids {
        let done = server.finish(id).await;
        let status = done["status"].as_str().unwrap();
        assert!(status == "failed" || status == "succeeded", "{done}");
        if status == "failed" {
            let code = done["error"]["code"].as_str().unwrap();
            assert!(
                ["decode_failed", "unsupported_format", "resource_limit"].contains(&code),
                "{done}"
            );
            assert!(
                !done["error"]["message"].as_str().unwrap().contains('/'),
                "no paths in errors: {done}"
            );
        }
    }
    if truncated_accepted {
        // A WAV whose data size overruns the file is read at its real size (recorders leave
        // such sizes): the analysis sees the quarter second that is there, not an hour.
        let job = server.job(&ids[0]).await;
        assert_eq!(job["status"], "succeeded", "{job}");
        let secs = job["result"]["duration_secs"].as_f64().unwrap();
        assert!((secs - 0.25).abs() < 0.01, "{job}");
    }
    assert_eq!(
        server
            .http
            .get(server.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert!(server.temp_files().is_empty(), "{:?}", server.temp_files());
}

#[tokio::test]
async fn temp_dir_is_empty_after_a_mixed_batch() {
    let server = TestServer::start().await;
    let good = server
        .upload(wav(16_000, 1, &sine(16_000, 1, 1.0, 440.0, 0.5), false))
        .await;
    let bad = server.upload(crate::support::audio::truncated_flac()).await;
    let slow = slow_job(&server).await;
    let mut ids = vec![];
    for i in 0..6 {
        let input = if i % 2 == 0 { &good } else { &bad };
        let job = server.submit(json!({"operation": "convert", "input": {"upload": input["id"]}, "options": {"format": "flac"}})).await;
        ids.push(job["id"].as_str().unwrap().to_owned());
    }
    let r = server
        .delete(&format!("/v1/jobs/{slow}"))
        .send()
        .await
        .unwrap();
    assert!(r.status() == 200 || r.status() == 202);
    let mut outcomes = std::collections::BTreeSet::new();
    for id in ids.iter().chain([&slow]) {
        outcomes.insert(
            server.finish(id).await["status"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(
        outcomes.into_iter().collect::<Vec<_>>(),
        ["canceled", "failed", "succeeded"]
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(server.temp_files().is_empty(), "{:?}", server.temp_files());
}

#[tokio::test]
async fn sigterm_requeues_running_jobs_after_the_grace_period() {
    let options = Options::default().env("AUDIOMILL_WORKER_GRACE_PERIOD_SECS", "1");
    let mut server = TestServer::start_with(options.clone()).await;
    let id = slow_job(&server).await;
    wait_running(&server, &id).await;
    server.signal(libc::SIGTERM);
    let status = server
        .wait_exit(Duration::from_secs(15))
        .expect("server stopped after its grace period");
    assert!(status.success());
    let dir = server.keep_dir();
    let restarted = TestServer::spawn(
        server.data_dir.clone(),
        server.key.clone(),
        options.env.clone(),
    );
    drop(server);
    let job = restarted.job(&id).await;
    assert!(
        matches!(
            job["status"].as_str(),
            Some("queued" | "running" | "succeeded")
        ),
        "{job}"
    );
    let done = restarted.finish(&id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(
        done["attempt"], 1,
        "a requeue on shutdown does not use up an attempt: {done}"
    );
    drop(restarted);
    drop(dir);
    let _ = sine(1, 1, 0.0, 0.0, 0.0);
}

/// Regression: a helper task that never ended made every shutdown wait out its full deadline.
#[tokio::test]
async fn an_idle_server_stops_promptly_on_sigterm() {
    let mut server =
        TestServer::start_with(Options::default().env("AUDIOMILL_WORKER_GRACE_PERIOD_SECS", "20"))
            .await;
    let asked = Instant::now();
    server.signal(libc::SIGTERM);
    let status = server
        .wait_exit(Duration::from_secs(25))
        .expect("server stopped");
    assert!(status.success());
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "took {:?}",
        asked.elapsed()
    );
}
