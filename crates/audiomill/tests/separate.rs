//! Stem separation end to end: models installed with the CLI, `separate` jobs over HTTP and
//! offline, stems checked with Debian's `ffprobe`. The model is the tiny HTDemucs fixture of
//! the `separate` crate (official checkpoint format, random weights, 8 kHz).

use crate::support::audio::{db, ffprobe, ffprobe_path, noise, sine, wav};
use crate::support::{assert_problem, cli, cli_in, Options, TestServer};
use serde_json::json;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../separate/tests/fixtures")
        .join(name)
}

/// Installs the tiny 4-stem model as `tiny` into `data_dir` with `audiomill models import`.
fn import_tiny(data_dir: &Path) {
    let yaml = fixture("tiny.yaml");
    let (status, stdout, stderr) = cli(
        &["models", "import", yaml.to_str().unwrap(), "--name", "tiny"],
        data_dir,
    );
    assert!(status.success(), "models import: {stderr}");
    assert!(stdout.contains("installed tiny"), "{stdout}");
}

/// A few seconds of music-like audio: two tones over noise.
fn mix(rate: u32, channels: u16, secs: f64) -> Vec<u8> {
    let a = sine(rate, channels, secs, 220.0, db(-12.0));
    let b = sine(rate, channels, secs, 1760.0, db(-18.0));
    let n = noise(rate, channels, secs, db(-30.0));
    let samples: Vec<f64> = (0..a.len()).map(|i| a[i] + b[i] + n[i]).collect();
    wav(rate, channels, &samples, false)
}

#[tokio::test]
async fn a_separate_job_gives_one_decodable_stem_per_source_at_the_input_rate() {
    let server = TestServer::start().await;
    import_tiny(&server.data_dir);

    let models = server.get_json("/v1/models").await;
    let models = models["models"].as_array().unwrap();
    let by_name = |n: &str| models.iter().find(|m| m["name"] == n).cloned();
    let tiny = by_name("tiny").expect("the imported model is listed");
    assert_eq!(tiny["installed"], true, "{tiny}");
    assert_eq!(tiny["stems"], json!(["drums", "bass", "other", "vocals"]));
    let official = by_name("htdemucs").expect("the catalog is listed");
    assert_eq!(official["installed"], false);
    assert_eq!(
        official["install_command"],
        "audiomill models pull htdemucs"
    );

    let upload = server.upload(mix(44_100, 2, 3.0)).await;
    let job = server
        .submit(
            json!({"operation": "separate", "input": {"upload": upload["id"]},
                       "options": {"model": "tiny", "shifts": 0, "format": "flac"},
                       "output": {"name": "song"}}),
        )
        .await;
    let done = server.finish(job["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["progress"], 1.0);
    let artifacts = done["artifacts"].as_array().unwrap();
    let names: Vec<&str> = artifacts
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "song-drums.flac",
            "song-bass.flac",
            "song-other.flac",
            "song-vocals.flac"
        ]
    );
    for artifact in artifacts {
        assert_eq!(artifact["content_type"], "audio/flac");
        let bytes = server.download(artifact["url"].as_str().unwrap()).await;
        let (codec, rate, channels, duration) = ffprobe(&bytes);
        assert_eq!((codec.as_str(), rate, channels), ("flac", 44_100, 2));
        assert!((duration - 3.0).abs() < 1e-3, "duration {duration}");
    }
    assert_eq!(done["result"]["model"], "tiny");
    assert_eq!(done["result"]["stems"][3]["stem"], "vocals");
}

#[tokio::test]
async fn two_stems_over_http_and_a_mono_input_give_mono_stems() {
    let server = TestServer::start().await;
    import_tiny(&server.data_dir);
    let upload = server.upload(mix(22_050, 1, 2.0)).await;
    let job = server
        .submit(
            json!({"operation": "separate", "input": {"upload": upload["id"]},
                       "options": {"model": "tiny", "two_stems": "vocals", "format": "mp3",
                                   "bitrate": 128}}),
        )
        .await;
    let done = server.finish(job["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let artifacts = done["artifacts"].as_array().unwrap();
    assert_eq!(artifacts.len(), 2);
    assert_eq!(artifacts[1]["name"], "output-no_vocals.mp3");
    for artifact in artifacts {
        let bytes = server.download(artifact["url"].as_str().unwrap()).await;
        let (codec, rate, channels, duration) = ffprobe(&bytes);
        assert_eq!((codec.as_str(), rate, channels), ("mp3", 22_050, 1));
        // ffprobe counts whole MP3 frames (576 samples at 22.05 kHz) with the encoder delay.
        assert!(
            (0.0..0.08).contains(&(duration - 2.0)),
            "duration {duration}"
        );
    }
}

/// The README's path: `serve` on the default, relative data directory, a model imported with
/// `models import` on the same relative directory, then a multipart `separate` job. The job
/// child runs in its job directory, so any relative path handed to it would stop resolving.
#[tokio::test]
async fn stems_work_through_the_server_on_a_relative_data_directory() {
    let server = TestServer::start_with(Options::default().relative_data_dir()).await;
    let cwd = server.data_dir.parent().unwrap().to_owned();
    let yaml = fixture("tiny.yaml");
    let (status, stdout, stderr) = cli_in(
        &cwd,
        &["models", "import", yaml.to_str().unwrap(), "--name", "tiny"],
    );
    assert!(status.success(), "models import: {stderr}");
    assert!(stdout.contains("installed tiny"), "{stdout}");

    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(mix(44_100, 2, 2.0)).file_name("my song.wav"),
        )
        .part(
            "spec",
            reqwest::multipart::Part::text(
                json!({"operation": "separate",
                       "options": {"model": "tiny", "shifts": 0, "two_stems": "vocals",
                                   "format": "mp3", "bitrate": 128}})
                .to_string(),
            ),
        );
    let r = server
        .post("/v1/jobs")
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let job: serde_json::Value = r.json().await.unwrap();
    let done = server.finish(job["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["attempt"], 1, "{done}");
    let artifacts = done["artifacts"].as_array().unwrap();
    assert_eq!(artifacts.len(), 2, "{done}");
    for artifact in artifacts {
        let bytes = server.download(artifact["url"].as_str().unwrap()).await;
        let (codec, rate, channels, duration) = ffprobe(&bytes);
        assert_eq!((codec.as_str(), rate, channels), ("mp3", 44_100, 2));
        assert!((duration - 2.0).abs() < 0.1, "duration {duration}");
    }
    assert!(server.temp_files().is_empty(), "{:?}", server.temp_files());
}

/// A model whose files went missing after it was installed fails its jobs at once with
/// `model_not_installed` (retrying cannot bring the files back), is refused at submission
/// with the command that reinstalls it, and `doctor` names it.
#[tokio::test]
async fn a_model_with_missing_files_is_model_not_installed_not_retried() {
    let server = TestServer::start_with(Options::default().arg("--no-worker")).await;
    import_tiny(&server.data_dir);
    let upload = server.upload(mix(44_100, 2, 1.0)).await;
    // Accepted while the model is whole; its files vanish before a worker runs it.
    let job = server
        .submit(
            json!({"operation": "separate", "input": {"upload": upload["id"]},
                       "options": {"model": "tiny", "shifts": 0}}),
        )
        .await;
    let model_dir = server.data_dir.join("models/tiny");
    let checkpoints: Vec<PathBuf> = std::fs::read_dir(&model_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "th"))
        .collect();
    assert!(!checkpoints.is_empty());
    std::fs::remove_file(&checkpoints[0]).unwrap();

    let refused = server
        .post("/v1/jobs")
        .json(
            &json!({"operation": "separate", "input": {"upload": upload["id"]},
                      "options": {"model": "tiny"}}),
        )
        .send()
        .await
        .unwrap();
    let problem = assert_problem(refused, 422, "model_not_installed").await;
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("tiny") && detail.contains("audiomill models"),
        "{detail}"
    );
    assert!(
        !detail.contains(server.data_dir.to_str().unwrap()),
        "{detail}"
    );

    let (status, stdout, _) = cli(&["doctor"], &server.data_dir);
    assert!(status.success(), "a broken model is a warning: {stdout}");
    let line = stdout
        .lines()
        .find(|l| l.contains("tiny"))
        .unwrap_or_default();
    assert!(line.starts_with("warn"), "{stdout}");

    let mut worker = std::process::Command::new(crate::support::BIN)
        .args(["worker", "--data-dir"])
        .arg(&server.data_dir)
        .env("AUDIOMILL_WORKER_BACKOFF_BASE_SECS", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let done = server.finish(job["id"].as_str().unwrap()).await;
    let _ = worker.kill();
    let _ = worker.wait();
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["error"]["code"], "model_not_installed", "{done}");
    assert_eq!(done["attempt"], 1, "not retried: {done}");
}

#[tokio::test]
async fn a_model_that_is_not_installed_is_refused_with_the_install_command() {
    let server = TestServer::start().await;
    let upload = server.upload(mix(44_100, 2, 1.0)).await;
    let refused = server
        .post("/v1/jobs")
        .json(
            &json!({"operation": "separate", "input": {"upload": upload["id"]},
                      "options": {"model": "htdemucs"}}),
        )
        .send()
        .await
        .unwrap();
    let problem = assert_problem(refused, 422, "model_not_installed").await;
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("audiomill models pull htdemucs"),
        "{detail}"
    );

    import_tiny(&server.data_dir);
    for (options, says) in [
        (
            json!({"model": "tiny", "stems": ["guitar"]}),
            "no stem guitar",
        ),
        (json!({"model": "tiny", "segment": 2.0}), "at most 1.2 s"),
        (json!({"model": "../tiny"}), "model name"),
        (json!({"model": "tiny", "shifts": 99}), "shifts"),
    ] {
        let refused = server
            .post("/v1/jobs")
            .json(
                &json!({"operation": "separate", "input": {"upload": upload["id"]},
                          "options": options}),
            )
            .send()
            .await
            .unwrap();
        let problem = assert_problem(refused, 422, "invalid_job").await;
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains(says), "{options}: {detail}");
    }
    // Nothing was queued by the refused requests.
    let jobs = server.get_json("/v1/jobs").await;
    assert_eq!(jobs["jobs"].as_array().unwrap().len(), 0, "{jobs}");
}

/// The CLI with `--data-dir`: (success, stdout, stderr).
fn run(args: &[&str], data_dir: &Path) -> (bool, String, String) {
    let (status, stdout, stderr) = cli(args, data_dir);
    (status.success(), stdout, stderr)
}

#[test]
fn offline_separate_with_shifts_0_is_deterministic_and_models_cli_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    import_tiny(&data);
    let input = dir.path().join("in.wav");
    std::fs::write(&input, mix(48_000, 2, 2.5)).unwrap();

    let separate = |out: &Path| {
        run(
            &[
                "separate",
                input.to_str().unwrap(),
                "--model",
                "tiny",
                "--out-dir",
                out.to_str().unwrap(),
                "--stems",
                "vocals,drums",
                "--shifts",
                "0",
                "--sample-format",
                "s24",
            ],
            &data,
        )
    };
    let (first, second) = (dir.path().join("a"), dir.path().join("b"));
    for out in [&first, &second] {
        let (ok, _, stderr) = separate(out);
        assert!(ok, "{stderr}");
    }
    let mut written: Vec<String> = std::fs::read_dir(&first)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    written.sort();
    assert_eq!(written, ["drums.wav", "vocals.wav"]);
    for name in &written {
        let (a, b) = (
            std::fs::read(first.join(name)).unwrap(),
            std::fs::read(second.join(name)).unwrap(),
        );
        assert!(a == b, "{name} differs between two runs with --shifts 0");
        let (codec, rate, channels, duration) = ffprobe_path(&first.join(name));
        assert_eq!((codec.as_str(), rate, channels), ("pcm_s24le", 48_000, 2));
        assert!((duration - 2.5).abs() < 1e-3, "duration {duration}");
    }

    // list / rm / a model that is gone.
    let (ok, stdout, stderr) = run(&["models", "list"], &data);
    assert!(ok, "{stderr}");
    let line = |name: &str| {
        stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .map(str::to_owned)
            .unwrap_or_default()
    };
    assert!(line("tiny").contains("installed"), "{stdout}");
    assert!(line("htdemucs_ft").contains("available"), "{stdout}");
    let (ok, _, stderr) = run(&["models", "rm", "tiny"], &data);
    assert!(ok, "{stderr}");
    let out = dir.path().join("c");
    let (ok, _, stderr) = separate(&out);
    assert!(!ok);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("not installed"), "{stderr}");
    assert!(!out.exists(), "nothing is left behind");
}

#[test]
fn offline_separate_refuses_bad_options_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    import_tiny(&data);
    let input = dir.path().join("in.wav");
    std::fs::write(&input, mix(8_000, 2, 1.0)).unwrap();
    let out = dir.path().join("out");
    for (extra, says) in [
        (vec!["--model", "tiny", "--stems", "guitar"], "no stem"),
        (vec!["--model", "tiny", "--overlap", "1.5"], "overlap"),
        (vec!["--model", "tiny", "--format", "aac"], "aac"),
        (vec!["--model", "Bad/Name"], "model name"),
    ] {
        let mut args = vec![
            "separate",
            input.to_str().unwrap(),
            "--out-dir",
            out.to_str().unwrap(),
        ];
        args.extend(extra.iter().copied());
        let (ok, _, stderr) = run(&args, &data);
        assert!(!ok, "{extra:?} was accepted");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(says), "{extra:?}: {stderr}");
        assert!(!out.exists(), "{extra:?} left {out:?} behind");
    }
}

/// Serves `body` for every request on 127.0.0.1 until the test ends; returns the base URL.
fn serve_file(body: Vec<u8>) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}/", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
        }
    });
    base
}

#[test]
fn models_pull_refuses_a_download_whose_checksum_does_not_match() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // The tiny fixture served under htdemucs's official name: a valid checkpoint, but not the
    // file whose SHA-256 the name carries.
    let base = serve_file(std::fs::read(fixture("tiny0001-813ac4c4.th")).unwrap());
    let (ok, _, stderr) = run(&["models", "pull", "htdemucs", "--from", &base], &data);
    assert!(!ok, "a corrupt download was installed");
    let last = stderr.trim().lines().last().unwrap_or_default();
    assert!(last.starts_with("audiomill: "), "{stderr}");
    assert!(
        last.contains("corrupt") && last.contains("SHA-256"),
        "{stderr}"
    );
    let (ok, stdout, _) = run(&["models", "list"], &data);
    assert!(ok);
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("htdemucs ") && l.contains("available")),
        "{stdout}"
    );
    let leftovers: Vec<_> = walk(&data.join("models"))
        .into_iter()
        .filter(|p| {
            p.extension()
                .is_some_and(|e| e == "th" || e == "part" || e == "lock")
        })
        .collect();
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
    let (ok, _, stderr) = run(&["models", "pull", "nosuchmodel"], &data);
    assert!(!ok);
    assert!(stderr.contains("no model named"), "{stderr}");
}

/// A pull that cannot reach its server (an offline machine) says how to install the model
/// from files instead, and leaves no lock behind to block the next try.
#[test]
fn a_pull_that_cannot_connect_suggests_import_and_leaves_no_lock() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // A port nothing listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}/");
    for _ in 0..2 {
        let (ok, _, stderr) = run(&["models", "pull", "htdemucs", "--from", &base], &data);
        assert!(!ok);
        let last = stderr.trim().lines().last().unwrap_or_default();
        assert!(
            last.contains("audiomill models import PATH --name htdemucs"),
            "{stderr}"
        );
        // A second try fails the same way, not with "being downloaded by another process".
        assert!(!last.contains("another process"), "{stderr}");
    }
    let locks: Vec<_> = walk(&data.join("models"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "lock"))
        .collect();
    assert!(locks.is_empty(), "left behind: {locks:?}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                found.extend(walk(&path));
            } else {
                found.push(path);
            }
        }
    }
    found
}
