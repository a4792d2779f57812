//! The job child: `audiomill __run-job`.
//!
//! Runs in a sandboxed process (see [`crate::sandboxed_command`]) and is the only place that
//! feeds untrusted media to the engine. It reads one [`ChildTask`] from stdin and answers with
//! the line protocol of [`crate::protocol`]. It needs no async runtime and no logging setup:
//! call it first thing in `main`, before anything else is started.

use crate::protocol::{ChildMessage, ChildTask};
use audiomill_core::{ErrorCode, JobError};
use std::io::{Read, Write};
use std::panic::AssertUnwindSafe;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Largest task accepted on stdin (it is a few hundred bytes).
const MAX_TASK_BYTES: u64 = 1 << 20;
/// At most this often a progress line (plus one whenever the fraction reaches 1).
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

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
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
        crate::ops::run_in_child(&task, &mut progress)
    }));
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

#[cfg(test)]
mod tests {
    use super::*;
    use audiomill_core::{Limits, OperationKind};

    fn task(operation: OperationKind, options: serde_json::Value) -> ChildTask {
        ChildTask {
            operation: audiomill_core::Operation::from_parts(operation, &options).unwrap(),
            input: "/nonexistent/input".into(),
            output_dir: "/nonexistent/out".into(),
            output_name: "output".into(),
            limits: Limits::default(),
            model: None,
            source: None,
        }
    }

    #[test]
    fn engine_errors_are_reported_not_thrown() {
        // Whatever the engine says about a missing input, it is a reported error, never a panic,
        // and its message carries no path.
        let missing = task(OperationKind::Analyze, serde_json::Value::Null);
        let error = crate::ops::run_in_child(&missing, &mut |_| {}).unwrap_err();
        assert!(!error.message.contains("/nonexistent"), "{error:?}");
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
    use crate::protocol::ChildArtifact;
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
            operation: audiomill_core::Operation::from_parts(operation, &options).unwrap(),
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
        let message = crate::ops::run_in_child(&task, &mut |f| fractions.push(f)).unwrap();
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
        let message = crate::ops::run_in_child(&task, &mut |_| {}).unwrap();
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
        let message = crate::ops::run_in_child(&task, &mut |_| {}).unwrap();
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
        let message = crate::ops::run_in_child(&task, &mut |_| {}).unwrap();
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
        let error = crate::ops::run_in_child(&task, &mut |_| {}).unwrap_err();
        assert!(!error.code.is_retryable(), "{error:?}");
    }
}
