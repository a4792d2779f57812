//! The offline CLI and configuration commands.

use crate::support::audio::{db, ffprobe_path, sine, wav};
use crate::support::BIN;
use std::process::Command;

fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn analyze_and_convert_offline() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("tone.wav");
    std::fs::write(
        &input,
        wav(44_100, 2, &sine(44_100, 2, 2.0, 997.0, db(-6.0)), false),
    )
    .unwrap();
    let (ok, stdout, stderr) = run(&["analyze", input.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(
        (report["rms_dbfs"].as_f64().unwrap() + 9.01).abs() < 0.05,
        "{report}"
    );

    let output = dir.path().join("tone.mp3");
    let (ok, _, stderr) = run(&[
        "convert",
        input.to_str().unwrap(),
        output.to_str().unwrap(),
        "--bitrate",
        "192",
        "--channels",
        "1",
    ]);
    assert!(ok, "{stderr}");
    let (codec, rate, channels, duration) = ffprobe_path(&output);
    assert_eq!((codec.as_str(), rate, channels), ("mp3", 44_100, 1));
    assert!((duration - 2.0).abs() < 0.06);

    let flac = dir.path().join("out.bin");
    let (ok, _, stderr) = run(&[
        "convert",
        input.to_str().unwrap(),
        flac.to_str().unwrap(),
        "--format",
        "flac",
        "--sample-rate",
        "48000",
    ]);
    assert!(ok, "{stderr}");
    assert_eq!(ffprobe_path(&flac).0, "flac");
}

#[test]
fn offline_convert_names_every_format_it_writes_and_takes_ogg_for_opus() {
    let (ok, help, _) = run(&["convert", "--help"]);
    assert!(ok);
    for format in ["wav", "flac", "mp3", "opus", ".ogg"] {
        assert!(help.contains(format), "{format} missing from: {help}");
    }
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("tone.wav");
    std::fs::write(
        &input,
        wav(44_100, 2, &sine(44_100, 2, 2.0, 997.0, db(-20.0)), false),
    )
    .unwrap();
    for name in ["tone.ogg", "tone.opus", "TONE.OGG"] {
        let output = dir.path().join(name);
        let (ok, _, stderr) = run(&["convert", input.to_str().unwrap(), output.to_str().unwrap()]);
        assert!(ok, "{name}: {stderr}");
        let (codec, rate, channels, duration) = ffprobe_path(&output);
        assert_eq!(
            (codec.as_str(), rate, channels),
            ("opus", 48_000, 2),
            "{name}"
        );
        assert!((duration - 2.0).abs() < 0.05, "{name}: {duration}");
    }
    let (ok, _, stderr) = run(&[
        "convert",
        input.to_str().unwrap(),
        dir.path().join("x.aac").to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(
        stderr.contains("wav, flac, mp3 or opus") && stderr.contains(".ogg"),
        "{stderr}"
    );
    // Edits and normalization, with what normalization reached.
    let output = dir.path().join("loud.flac");
    let (ok, _, stderr) = run(&[
        "convert",
        input.to_str().unwrap(),
        output.to_str().unwrap(),
        "--start",
        "0.5",
        "--normalize",
        "-16",
        "--fade-out",
        "0.2",
    ]);
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("normalized:") && stderr.contains("LUFS"),
        "{stderr}"
    );
    let (codec, _, _, duration) = ffprobe_path(&output);
    assert_eq!(codec, "flac");
    assert!((duration - 1.5).abs() < 0.01, "{duration}");
    // A bad value is the API's sentence, not a Rust type.
    let (ok, _, stderr) = run(&[
        "convert",
        input.to_str().unwrap(),
        output.to_str().unwrap(),
        "--format",
        "wav",
        "--quality",
        "3",
    ]);
    assert!(!ok);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("mp3"), "{stderr}");
}

#[test]
fn bad_cli_input_is_one_line_and_a_failure_exit() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "not audio").unwrap();
    let out = dir.path().join("x.mp3");
    let cases: Vec<Vec<String>> = vec![
        vec!["analyze".into(), text.display().to_string()],
        vec![
            "analyze".into(),
            dir.path().join("missing.wav").display().to_string(),
        ],
        vec![
            "convert".into(),
            text.display().to_string(),
            out.display().to_string(),
        ],
        vec![
            "convert".into(),
            text.display().to_string(),
            dir.path().join("x.aac").display().to_string(),
        ],
        vec![
            "convert".into(),
            text.display().to_string(),
            out.display().to_string(),
            "--bitrate".into(),
            "999".into(),
        ],
    ];
    for args in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, stdout, stderr) = run(&args);
        assert!(!ok, "{args:?} succeeded");
        assert!(stdout.is_empty(), "{args:?}: {stdout}");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("audiomill: "), "{stderr}");
    }
    assert!(!out.exists(), "a failed convert leaves no output");
}

#[test]
fn config_prints_the_effective_settings() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audiomill.toml");
    std::fs::write(&file, "[worker]\nconcurrency = 3\n").unwrap();
    let out = Command::new(BIN)
        .args(["config", "--config", file.to_str().unwrap()])
        .env("AUDIOMILL_LISTEN", "127.0.0.1:9999")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let parsed: toml::Value = toml::from_str(&text).unwrap();
    assert_eq!(parsed["listen"].as_str(), Some("127.0.0.1:9999"));
    assert_eq!(parsed["worker"]["concurrency"].as_integer(), Some(3));
    let out = Command::new(BIN)
        .args(["config"])
        .env("AUDIOMILL_WORKER_CONCURRENCY", "many")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("AUDIOMILL_WORKER_CONCURRENCY"));
}
