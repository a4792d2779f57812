//! `convert`: decode, edit, resample and encode one input into one audio artifact.

use crate::names::download_name;
use crate::ops::{engine_error, write_failed};
use crate::protocol::{ChildArtifact, ChildMessage, ChildTask};
use audiomill_core::{ConvertOptions, JobError};

/// In the child: converts the input; the result is the output's media description (and the
/// normalization's report).
pub(crate) fn run(
    task: &ChildTask,
    options: &ConvertOptions,
    progress: &mut dyn FnMut(f64),
) -> Result<ChildMessage, JobError> {
    let ext = options.format.extension();
    let file = format!("output.{ext}");
    let converted = audiomill_media::convert(
        &task.input,
        &task.output_dir.join(&file),
        options,
        &task.limits,
        progress,
    )
    .map_err(engine_error)?;
    let result = serde_json::to_value(&converted).map_err(|e| write_failed("result", &e))?;
    Ok(ChildMessage::Succeeded {
        artifacts: vec![ChildArtifact {
            file,
            name: download_name(&task.output_name, ext),
            content_type: options.format.content_type().into(),
        }],
        result: Some(result),
        audio_seconds: converted.media.duration_secs.unwrap_or(0.0),
    })
}
