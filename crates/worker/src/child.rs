//! The job child: `audiomill __run-job`.
//!
//! Runs in a sandboxed process (see [`crate::sandboxed_command`]) and is the only place that
//! feeds untrusted media to the engine. It reads one [`ChildTask`] from stdin and answers with
//! the line protocol of [`crate::protocol`]. It needs no async runtime and no logging setup:
//! call it first thing in `main`, before anything else is started.

use crate::protocol::{ChildArtifact, ChildMessage, ChildTask};
use audiomill_core::{ErrorCode, JobError, Operation};
use std::io::{Read, Write};
use std::panic::AssertUnwindSafe;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Largest task accepted on stdin (it is a few hundred bytes).
const MAX_TASK_BYTES: u64 = 1 << 20;
/// At most this often a progress line (plus one whenever the fraction reaches 1).
const PROGRESS_EVERY: Duration = Duration::from_millis(100);
/// Largest analysis (as compact JSON) sent whole as the job's result. Past it (a waveform of
/// tens of thousands of buckets) the result's `waveform` is null and only `analysis.json` has
/// it: the result travels in one protocol line of at most `MAX_LINE_BYTES` (1 MiB).
const MAX_INLINE_RESULT_BYTES: usize = 256 * 1024;
const _: () = assert!(MAX_INLINE_RESULT_BYTES < crate::protocol::MAX_LINE_BYTES / 2);

/// Exit codes of the child besides success; the parent treats them all as a crash.
const EXIT_BAD_TASK: u8 = 2;
const EXIT_STDOUT_GONE: u8 = 3;

/// Body of the hidden `audiomill __run-job` subcommand.
///
/// Exits 0 whenever it could write its final line, whether the job succeeded or failed; a panic
/// in the engine is reported as `decode_failed` (the engine panicked on the input, so the input is
/// what it could not handle).
pub fn child_main() -> ExitCode {
    let mut text = String::new();
    if let Err(e) = std::io::stdin()
        .take(MAX_TASK_BYTES)
        .read_to_string(&mut text)
    {
        eprintln!("audiomill job child: cannot read the task: {e}");
        return ExitCode::from(EXIT_BAD_TASK);
    }
    let task: ChildTask = match serde_json::from_str(&text) {
        Ok(task) => task,
        Err(e) => {
            eprintln!("audiomill job child: malformed task: {e}");
            return ExitCode::from(EXIT_BAD_TASK);
        }
    };

    let stdout = std::io::stdout();
    let mut throttle = ProgressThrottle::default();
    let mut progress = |fraction: f64| {
        if let Some(fraction) = throttle.admit(fraction, Instant::now()) {
            // A parent that stopped reading will see our exit status; nothing to do here.
            let _ = write_line(&mut stdout.lock(), &ChildMessage::Progress { fraction });
        }
    };
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| run_task(&task, &mut progress)));
    let message = match outcome {
        Ok(Ok(message)) => message,
        Ok(Err(error)) => ChildMessage::Failed { error },
        Err(_) => ChildMessage::Failed {
            error: JobError::new(ErrorCode::DecodeFailed, "the input could not be decoded"),
        },
    };
    match write_line(&mut stdout.lock(), &message) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::from(EXIT_STDOUT_GONE),
    }
}

fn write_line(out: &mut impl Write, message: &ChildMessage) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, message)?;
    out.write_all(b"\n")?;
    out.flush()
}

/// Keeps progress lines few: at most one per [`PROGRESS_EVERY`], only when the value moved.
#[derive(Default)]
struct ProgressThrottle {
    last: Option<(Instant, f64)>,
}

impl ProgressThrottle {
    fn admit(&mut self, fraction: f64, now: Instant) -> Option<f64> {
        if !fraction.is_finite() {
            return None;
        }
        let fraction = fraction.clamp(0.0, 1.0);
        if let Some((at, value)) = self.last {
            let moved = (fraction - value).abs() >= 0.001;
            let due = now.duration_since(at) >= PROGRESS_EVERY || (fraction >= 1.0 && moved);
            if !moved || !due {
                return None;
            }
        }
        self.last = Some((now, fraction));
        Some(fraction)
    }
}

/// Runs the task with the engine; the files go to `task.output_dir` under fixed names.
pub(crate) fn run_task(
    task: &ChildTask,
    progress: &mut dyn FnMut(f64),
) -> Result<ChildMessage, JobError> {
    let operation = Operation::from_parts(task.operation, &task.options)
        .map_err(|e| JobError::new(ErrorCode::InvalidInput, e.0))?;
    let engine_error = |e: audiomill_media::MediaError| JobError::new(e.code(), e.public_message());
    let internal = |what: &str, e: &dyn std::fmt::Display| {
        eprintln!("audiomill job child: {what}: {e}");
        JobError::new(ErrorCode::Internal, "the result could not be written")
    };
    match operation {
        Operation::Convert(options) => {
            let ext = options.format.extension();
            let file = format!("output.{ext}");
            let info = audiomill_media::convert(
                &task.input,
                &task.output_dir.join(&file),
                &options,
                &task.limits,
                progress,
            )
            .map_err(engine_error)?;
            let result = serde_json::to_value(&info).map_err(|e| internal("result", &e))?;
            Ok(ChildMessage::Succeeded {
                artifacts: vec![ChildArtifact {
                    file,
                    name: download_name(&task.output_name, ext),
                    content_type: options.format.content_type().into(),
                }],
                result: Some(result),
                audio_seconds: info.media.duration_secs.unwrap_or(0.0),
            })
        }
        Operation::Separate(options) => {
            let model = task
                .model
                .as_deref()
                .ok_or_else(|| internal("task", &"a separate task without a model descriptor"))?;
            let separate_error = |e: audiomill_separate::SeparateError| {
                if e.code() == ErrorCode::Internal {
                    eprintln!("audiomill job child: separation: {e}");
                }
                JobError::new(e.code(), e.public_message())
            };
            // The parent checked the model's files before starting us; one that still does
            // not load (a file removed or changed meanwhile) will not load on a retry either.
            let bag = audiomill_separate::load_model(model, &audiomill_separate::default_device())
                .map_err(|e| {
                    eprintln!("audiomill job child: loading model {}: {e}", options.model);
                    JobError::new(
                        ErrorCode::ModelNotInstalled,
                        format!(
                            "model {} could not be loaded on this worker; its files are missing or damaged",
                            options.model
                        ),
                    )
                })?;
            let params = audiomill_separate::SeparateParams::from_options(
                &options,
                task.output_dir.clone(),
                rand::random(),
            );
            let ext = options.format.extension();
            let stems = audiomill_separate::separate_file(
                &bag,
                &task.input,
                &params,
                &task.limits,
                progress,
                // A canceled job's child is killed by the parent: nothing to poll here.
                &|| false,
            )
            .map_err(separate_error)?;
            let mut artifacts = Vec::with_capacity(stems.len());
            let mut described = Vec::with_capacity(stems.len());
            for stem in &stems {
                let file = stem
                    .path
                    .file_name()
                    .and_then(|f| f.to_str())
                    .ok_or_else(|| internal("stem", &"a stem file without a name"))?
                    .to_owned();
                artifacts.push(ChildArtifact {
                    file,
                    name: download_name(&format!("{}-{}", task.output_name, stem.stem), ext),
                    content_type: options.format.content_type().into(),
                });
                described.push(serde_json::json!({
                    "stem": stem.stem,
                    "sample_rate": stem.sample_rate,
                    "channels": stem.channels,
                    "frames": stem.frames,
                    "duration_secs": stem.frames as f64 / f64::from(stem.sample_rate.max(1)),
                }));
            }
            let audio_seconds = stems
                .first()
                .map_or(0.0, |s| s.frames as f64 / f64::from(s.sample_rate.max(1)));
            Ok(ChildMessage::Succeeded {
                artifacts,
                result: Some(serde_json::json!({
                    "model": options.model,
                    "stems": described,
                })),
                audio_seconds,
            })
        }
        Operation::Download(options) => {
            let source = task.source.clone().unwrap_or_default();
            let described = serde_json::to_value(&source).map_err(|e| internal("result", &e))?;
            match &options.convert {
                Some(convert) => {
                    let ext = convert.format.extension();
                    let file = format!("output.{ext}");
                    let tags = audiomill_media::tags::Tags {
                        title: source.title.clone(),
                        artist: source.uploader.clone(),
                        ..Default::default()
                    };
                    let info = audiomill_media::convert_tagged(
                        &task.input,
                        &task.output_dir.join(&file),
                        convert,
                        &task.limits,
                        &tags,
                        progress,
                    )
                    .map_err(engine_error)?;
                    Ok(ChildMessage::Succeeded {
                        artifacts: vec![ChildArtifact {
                            file,
                            name: download_name(&task.output_name, ext),
                            content_type: convert.format.content_type().into(),
                        }],
                        result: Some(serde_json::json!({
                            "source": described,
                            "media": info.media,
                            "normalization": info.normalization,
                        })),
                        audio_seconds: info.media.duration_secs.unwrap_or(0.0),
                    })
                }
                None => {
                    // Kept as it came, once it probes as audio the engine reads.
                    let info =
                        audiomill_media::probe(&task.input, &task.limits).map_err(engine_error)?;
                    let (ext, content_type) =
                        audiomill_core::media::stored_type(&info.container, &info.codec)
                            .ok_or_else(|| {
                                JobError::new(
                                    ErrorCode::UnsupportedFormat,
                                    format!(
                                "{} audio cannot be kept as it is; give a format to convert it",
                                info.container
                            ),
                                )
                            })?;
                    let file = format!("output.{ext}");
                    std::fs::rename(&task.input, task.output_dir.join(&file))
                        .map_err(|e| internal("moving the download", &e))?;
                    progress(1.0);
                    Ok(ChildMessage::Succeeded {
                        artifacts: vec![ChildArtifact {
                            file,
                            name: download_name(&task.output_name, ext),
                            content_type: content_type.into(),
                        }],
                        result: Some(serde_json::json!({ "source": described, "media": info })),
                        audio_seconds: info.duration_secs.unwrap_or(0.0),
                    })
                }
            }
        }
        Operation::Analyze(options) => {
            let analysis = audiomill_media::analyze(&task.input, &options, &task.limits, progress)
                .map_err(engine_error)?;
            // The JSON text, not `to_value`: f32 waveform values print short from the text.
            let compact = serde_json::to_vec(&analysis).map_err(|e| internal("result", &e))?;
            let mut result: serde_json::Value =
                serde_json::from_slice(&compact).map_err(|e| internal("result", &e))?;
            let large = compact.len() > MAX_INLINE_RESULT_BYTES;
            let mut bytes = if large {
                compact
            } else {
                serde_json::to_vec_pretty(&result).map_err(|e| internal("result", &e))?
            };
            bytes.push(b'\n');
            let file = "analysis.json".to_owned();
            std::fs::write(task.output_dir.join(&file), bytes)
                .map_err(|e| internal("writing the report", &e))?;
            if large {
                // The overview stays in the file; the job's result line must stay small.
                result["waveform"] = serde_json::Value::Null;
            }
            let mut artifacts = vec![ChildArtifact {
                file,
                name: download_name(&task.output_name, "json"),
                content_type: "application/json".into(),
            }];
            if let (true, Some(waveform)) = (options.waveform_png, &analysis.waveform) {
                let (width, height) =
                    audiomill_media::waveform::default_png_size(waveform.channels);
                let png = audiomill_media::render_waveform_png(waveform, width, height);
                let file = "waveform.png".to_owned();
                std::fs::write(task.output_dir.join(&file), png)
                    .map_err(|e| internal("writing the waveform", &e))?;
                artifacts.push(ChildArtifact {
                    file,
                    name: download_name(&task.output_name, "png"),
                    content_type: "image/png".into(),
                });
            }
            Ok(ChildMessage::Succeeded {
                artifacts,
                result: Some(result),
                audio_seconds: analysis.duration_secs,
            })
        }
    }
}

/// `base.ext`, unless `base` already ends in `.ext`.
fn download_name(base: &str, ext: &str) -> String {
    let suffix = format!(".{ext}");
    if base.len() > suffix.len() && base.to_ascii_lowercase().ends_with(&suffix) {
        base.to_owned()
    } else {
        format!("{base}{suffix}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use audiomill_core::{Limits, OperationKind};

    fn task(operation: OperationKind, options: serde_json::Value) -> ChildTask {
        ChildTask {
            operation,
            options,
            input: "/nonexistent/input".into(),
            output_dir: "/nonexistent/out".into(),
            output_name: "output".into(),
            limits: Limits::default(),
            model: None,
            source: None,
        }
    }

    #[test]
    fn invalid_options_are_invalid_input() {
        let bad = task(
            OperationKind::Convert,
            serde_json::json!({"format": "wav", "bitrate": 128}),
        );
        let error = run_task(&bad, &mut |_| {}).unwrap_err();
        assert_eq!(error.code, ErrorCode::InvalidInput);
        assert!(error.message.contains("bitrate"));
    }

    #[test]
    fn engine_errors_are_reported_not_thrown() {
        // Whatever the engine says about a missing input, it is a reported error, never a panic,
        // and its message carries no path.
        let missing = task(OperationKind::Analyze, serde_json::Value::Null);
        let error = run_task(&missing, &mut |_| {}).unwrap_err();
        assert!(!error.message.contains("/nonexistent"), "{error:?}");
    }

    #[test]
    fn download_names() {
        assert_eq!(download_name("output", "mp3"), "output.mp3");
        assert_eq!(download_name("song.MP3", "mp3"), "song.MP3");
        assert_eq!(download_name("song.wav", "mp3"), "song.wav.mp3");
        assert_eq!(
            download_name("my (live) take", "json"),
            "my (live) take.json"
        );
    }

    #[test]
    fn progress_is_throttled() {
        let mut t = ProgressThrottle::default();
        let start = Instant::now();
        assert_eq!(t.admit(0.1, start), Some(0.1));
        assert_eq!(t.admit(0.2, start + Duration::from_millis(10)), None);
        assert_eq!(t.admit(0.2, start + Duration::from_millis(150)), Some(0.2));
        assert_eq!(t.admit(0.2, start + Duration::from_millis(400)), None);
        assert_eq!(t.admit(f64::NAN, start + Duration::from_millis(600)), None);
        assert_eq!(t.admit(7.0, start + Duration::from_millis(610)), Some(1.0));
    }
}

#[cfg(test)]
mod engine_tests {
    //! The child against the real engine, on a generated WAV file.
    use super::*;
    use audiomill_core::{Limits, OperationKind};

    /// One second of a 440 Hz sine, 16-bit mono at 8 kHz.
    fn write_wav(path: &std::path::Path) {
        let rate = 8000u32;
        let samples: Vec<i16> = (0..rate)
            .map(|i| {
                let t = i as f64 / rate as f64;
                ((t * 440.0 * std::f64::consts::TAU).sin() * 8000.0) as i16
            })
            .collect();
        let data_len = samples.len() as u32 * 2;
        let mut bytes = Vec::new();
        bytes.extend_from_slice(b"RIFF");
        bytes.extend_from_slice(&(36 + data_len).to_le_bytes());
        bytes.extend_from_slice(b"WAVEfmt ");
        bytes.extend_from_slice(&16u32.to_le_bytes());
        bytes.extend_from_slice(&1u16.to_le_bytes()); // PCM
        bytes.extend_from_slice(&1u16.to_le_bytes()); // mono
        bytes.extend_from_slice(&rate.to_le_bytes());
        bytes.extend_from_slice(&(rate * 2).to_le_bytes());
        bytes.extend_from_slice(&2u16.to_le_bytes());
        bytes.extend_from_slice(&16u16.to_le_bytes());
        bytes.extend_from_slice(b"data");
        bytes.extend_from_slice(&data_len.to_le_bytes());
        for s in samples {
            bytes.extend_from_slice(&s.to_le_bytes());
        }
        std::fs::write(path, bytes).unwrap();
    }

    fn task_in(
        dir: &std::path::Path,
        operation: OperationKind,
        options: serde_json::Value,
    ) -> ChildTask {
        std::fs::create_dir_all(dir.join("out")).unwrap();
        write_wav(&dir.join("input"));
        ChildTask {
            operation,
            options,
            input: dir.join("input"),
            output_dir: dir.join("out"),
            output_name: "tone".into(),
            limits: Limits::default(),
            model: None,
            source: None,
        }
    }

    #[test]
    fn converts() {
        let dir = tempfile::tempdir().unwrap();
        let task = task_in(
            dir.path(),
            OperationKind::Convert,
            serde_json::json!({"format": "flac"}),
        );
        let mut fractions = Vec::new();
        let message = run_task(&task, &mut |f| fractions.push(f)).unwrap();
        let ChildMessage::Succeeded {
            artifacts,
            result,
            audio_seconds,
        } = message
        else {
            panic!("{message:?}")
        };
        assert_eq!(
            artifacts,
            vec![ChildArtifact {
                file: "output.flac".into(),
                name: "tone.flac".into(),
                content_type: "audio/flac".into(),
            }]
        );
        assert!(dir.path().join("out/output.flac").metadata().unwrap().len() > 0);
        assert!((audio_seconds - 1.0).abs() < 0.05, "{audio_seconds}");
        assert_eq!(result.unwrap()["sample_rate"], 8000);
    }

    #[test]
    fn analyzes() {
        let dir = tempfile::tempdir().unwrap();
        let task = task_in(dir.path(), OperationKind::Analyze, serde_json::Value::Null);
        let message = run_task(&task, &mut |_| {}).unwrap();
        let ChildMessage::Succeeded {
            artifacts, result, ..
        } = message
        else {
            panic!("{message:?}")
        };
        assert_eq!(artifacts[0].file, "analysis.json");
        assert_eq!(artifacts[0].name, "tone.json");
        assert_eq!(artifacts[0].content_type, "application/json");
        let written: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("out/analysis.json")).unwrap())
                .unwrap();
        // Same report (floats may differ in the last bit through JSON text).
        let result = result.unwrap();
        assert_eq!(written["duration_secs"], result["duration_secs"]);
        assert_eq!(written["sample_rate"], 8000);
        let lufs = written["integrated_lufs"].as_f64().unwrap();
        assert!((lufs - result["integrated_lufs"].as_f64().unwrap()).abs() < 1e-9);
    }

    #[test]
    fn analyzes_with_a_waveform_png() {
        let dir = tempfile::tempdir().unwrap();
        let options = serde_json::json!({"waveform_buckets": 100, "waveform_png": true});
        let task = task_in(dir.path(), OperationKind::Analyze, options);
        let message = run_task(&task, &mut |_| {}).unwrap();
        let ChildMessage::Succeeded {
            artifacts, result, ..
        } = message
        else {
            panic!("{message:?}")
        };
        assert_eq!(artifacts.len(), 2);
        assert_eq!(
            artifacts[1],
            ChildArtifact {
                file: "waveform.png".into(),
                name: "tone.png".into(),
                content_type: "image/png".into(),
            }
        );
        let png = std::fs::read(dir.path().join("out/waveform.png")).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let result = result.unwrap();
        assert_eq!(result["waveform"]["buckets"], 100);
        // Values travel as their short decimal form, not as widened f32.
        let text = serde_json::to_string(&result["waveform"]["max"]).unwrap();
        let numbers = text.split(['[', ']', ',']).filter(|n| !n.is_empty());
        assert!(numbers.clone().all(|n| n.len() <= 7), "{text}");
        assert!(numbers.clone().any(|n| n.starts_with("0.24")), "{text}");
    }

    #[test]
    fn a_large_waveform_stays_out_of_the_result_line() {
        let dir = tempfile::tempdir().unwrap();
        let options = serde_json::json!({"waveform_buckets": 100_000});
        let task = task_in(dir.path(), OperationKind::Analyze, options);
        let message = run_task(&task, &mut |_| {}).unwrap();
        let line = serde_json::to_string(&message).unwrap();
        assert!(
            line.len() < crate::protocol::MAX_LINE_BYTES,
            "{}",
            line.len()
        );
        let ChildMessage::Succeeded { result, .. } = message else {
            panic!("{message:?}")
        };
        let result = result.unwrap();
        assert!(result["waveform"].is_null());
        assert!(result["integrated_lufs"].is_number());
        let written: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("out/analysis.json")).unwrap())
                .unwrap();
        assert_eq!(written["waveform"]["buckets"], 100_000);
        assert_eq!(
            written["waveform"]["max"][0].as_array().unwrap().len(),
            100_000
        );
    }

    #[test]
    fn garbage_is_a_reported_failure() {
        let dir = tempfile::tempdir().unwrap();
        let task = task_in(dir.path(), OperationKind::Analyze, serde_json::Value::Null);
        std::fs::write(&task.input, b"this is not audio at all").unwrap();
        let error = run_task(&task, &mut |_| {}).unwrap_err();
        assert!(!error.code.is_retryable(), "{error:?}");
    }
}
