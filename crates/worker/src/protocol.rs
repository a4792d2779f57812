//! The line protocol between the worker and its job child.
//!
//! The parent writes one JSON [`ChildTask`] to the child's stdin and closes it. The child writes
//! JSON lines ([`ChildMessage`]) to stdout: any number of `progress` lines, then exactly one
//! final `succeeded` or `failed` line, and exits 0.
//!
//! ```text
//! {"type":"progress","fraction":0.42}
//! {"type":"succeeded","artifacts":[{"file":"output.mp3","name":"song.mp3","content_type":"audio/mpeg"}],"result":{…},"audio_seconds":12.5}
//! {"type":"failed","error":{"code":"decode_failed","message":"…"}}
//! ```
//!
//! `file` is a plain file name inside `output_dir` (the parent refuses anything else); `name`
//! is the download name shown to the client. Anything the child does not say this way (a
//! signal, a non-zero exit, no final line, a malformed line) is judged by the parent from the
//! exit status.

use audiomill_core::{JobError, Limits, Operation};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Longest line the parent accepts from the child, in bytes.
pub const MAX_LINE_BYTES: usize = 1 << 20;
/// Most artifacts one job may produce.
pub const MAX_ARTIFACTS: usize = 16;

/// What the child is asked to do.
///
/// The operation travels typed, as `"operation": "convert", "options": {…}`: the worker read
/// it once from the job's row, and the child reads it from here, without checking the values
/// again (they were validated when the job was accepted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChildTask {
    /// The operation with its options.
    #[serde(flatten)]
    pub operation: Operation,
    /// The input file (inside the job directory, always named `input`).
    pub input: PathBuf,
    /// Where outputs go (an empty directory inside the job directory).
    pub output_dir: PathBuf,
    /// Base of the download names, without extension: the job's `output.name`, else `output`.
    pub output_name: String,
    /// Input limits for the engine.
    pub limits: Limits,
    /// The model descriptor (`.yaml`, checkpoints beside it) of a `separate` job, resolved by
    /// the parent from the installed models.
    #[serde(default)]
    pub model: Option<PathBuf>,
    /// Where a URL input came from (fetched by the parent before the child starts).
    #[serde(default)]
    pub source: Option<SourceMeta>,
}

/// What is known of a URL input's origin: written into a `download`'s tags and result.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceMeta {
    /// The URL the job was given.
    pub url: String,
    /// The media's page, as the site names it (yt-dlp's `webpage_url`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webpage_url: Option<String>,
    /// Title, from the site.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Uploader or artist, from the site.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uploader: Option<String>,
    /// Duration in seconds, as the site states it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_secs: Option<f64>,
    /// yt-dlp's extractor (`youtube`, `soundcloud`, …); absent for a direct link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extractor: Option<String>,
}

/// One line the child writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ChildMessage {
    /// Work done so far, 0..=1.
    Progress {
        /// Fraction done.
        fraction: f64,
    },
    /// The job is done; its files are in `output_dir`.
    Succeeded {
        /// Files produced.
        artifacts: Vec<ChildArtifact>,
        /// Operation result (e.g. the analysis report or the output's media info).
        #[serde(default)]
        result: Option<serde_json::Value>,
        /// Seconds of audio processed (for metrics).
        #[serde(default)]
        audio_seconds: f64,
    },
    /// The job failed; the error is safe to show to the client.
    Failed {
        /// Code and message.
        error: JobError,
    },
}

/// A file the child produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChildArtifact {
    /// File name inside `output_dir` (no directories).
    pub file: String,
    /// Download name, e.g. `song.mp3`.
    pub name: String,
    /// MIME type.
    pub content_type: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use audiomill_core::ErrorCode;
    use serde_json::json;

    #[test]
    fn task_round_trips() {
        let task = ChildTask {
            operation: Operation::from_parts(
                audiomill_core::OperationKind::Convert,
                &json!({"format": "mp3", "bitrate": 320}),
            )
            .unwrap(),
            input: "/tmp/jobs/job_x-1/input".into(),
            output_dir: "/tmp/jobs/job_x-1/out".into(),
            output_name: "my song".into(),
            limits: Limits::default(),
            model: None,
            source: None,
        };
        let text = serde_json::to_string(&task).unwrap();
        assert!(text.contains(r#""operation":"convert""#));
        assert!(text.contains(r#""options":{"#), "{text}");
        assert_eq!(serde_json::from_str::<ChildTask>(&text).unwrap(), task);
    }

    #[test]
    fn messages_have_the_documented_wire_form() {
        let progress = ChildMessage::Progress { fraction: 0.42 };
        assert_eq!(
            serde_json::to_value(&progress).unwrap(),
            json!({"type": "progress", "fraction": 0.42})
        );
        let succeeded = ChildMessage::Succeeded {
            artifacts: vec![ChildArtifact {
                file: "output.mp3".into(),
                name: "song.mp3".into(),
                content_type: "audio/mpeg".into(),
            }],
            result: None,
            audio_seconds: 1.5,
        };
        assert_eq!(
            serde_json::to_value(&succeeded).unwrap(),
            json!({"type": "succeeded", "artifacts": [{"file": "output.mp3", "name": "song.mp3",
                   "content_type": "audio/mpeg"}], "result": null, "audio_seconds": 1.5})
        );
        let failed = ChildMessage::Failed {
            error: JobError::new(ErrorCode::DecodeFailed, "the input could not be decoded"),
        };
        assert_eq!(
            serde_json::to_value(&failed).unwrap(),
            json!({"type": "failed", "error": {"code": "decode_failed",
                   "message": "the input could not be decoded"}})
        );
        for message in [progress, succeeded, failed] {
            let line = serde_json::to_string(&message).unwrap();
            assert!(!line.contains('\n'));
            assert_eq!(
                serde_json::from_str::<ChildMessage>(&line).unwrap(),
                message
            );
        }
    }

    #[test]
    fn refuses_unknown_messages() {
        assert!(serde_json::from_str::<ChildMessage>(r#"{"type":"exploded"}"#).is_err());
        assert!(serde_json::from_str::<ChildMessage>(r#"{"fraction":0.1}"#).is_err());
        assert!(serde_json::from_str::<ChildMessage>(
            r#"{"type":"failed","error":{"code":"no_such_code","message":"x"}}"#
        )
        .is_err());
    }
}
