//! `analyze`: measure an input (levels, loudness, tempo, waveform) into a JSON report, and
//! optionally a PNG of the waveform.

use crate::names::download_name;
use crate::ops::{engine_error, write_failed};
use crate::protocol::{ChildArtifact, ChildMessage, ChildTask};
use audiomill_core::{AnalyzeOptions, JobError};

/// Largest analysis (as compact JSON) sent whole as the job's result. Past it (a waveform of
/// tens of thousands of buckets) the result's `waveform` is null and only `analysis.json` has
/// it: the result travels in one protocol line of at most `MAX_LINE_BYTES` (1 MiB).
const MAX_INLINE_RESULT_BYTES: usize = 256 * 1024;
const _: () = assert!(MAX_INLINE_RESULT_BYTES < crate::protocol::MAX_LINE_BYTES / 2);

/// In the child: analyzes the input; the report is the result and `analysis.json`.
pub(crate) fn run(
    task: &ChildTask,
    options: &AnalyzeOptions,
    progress: &mut dyn FnMut(f64),
) -> Result<ChildMessage, JobError> {
    let analysis = audiomill_media::analyze(&task.input, options, &task.limits, progress)
        .map_err(engine_error)?;
    // The JSON text, not `to_value`: f32 waveform values print short from the text.
    let compact = serde_json::to_vec(&analysis).map_err(|e| write_failed("result", &e))?;
    let mut result: serde_json::Value =
        serde_json::from_slice(&compact).map_err(|e| write_failed("result", &e))?;
    let large = compact.len() > MAX_INLINE_RESULT_BYTES;
    let mut bytes = if large {
        compact
    } else {
        serde_json::to_vec_pretty(&result).map_err(|e| write_failed("result", &e))?
    };
    bytes.push(b'\n');
    let file = "analysis.json".to_owned();
    std::fs::write(task.output_dir.join(&file), bytes)
        .map_err(|e| write_failed("writing the report", &e))?;
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
        let (width, height) = audiomill_media::waveform::default_png_size(waveform.channels);
        let png = audiomill_media::render_waveform_png(waveform, width, height);
        let file = "waveform.png".to_owned();
        std::fs::write(task.output_dir.join(&file), png)
            .map_err(|e| write_failed("writing the waveform", &e))?;
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
