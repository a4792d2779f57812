//! `separate`: split an input into stems with an installed model.

use crate::names::download_name;
use crate::ops::write_failed;
use crate::protocol::{ChildArtifact, ChildMessage, ChildTask};
use audiomill_core::{ErrorCode, JobError, SeparateOptions};
use std::path::{Path, PathBuf};

/// In the parent: the descriptor of the job's model (`.yaml`, checkpoints beside it). A model
/// removed since the job was accepted, or whose files went missing, fails the job for good:
/// retrying cannot bring it back.
pub(crate) fn resolve_model(
    models_dir: Option<&Path>,
    options: &SeparateOptions,
) -> Result<PathBuf, JobError> {
    let not_installed = |detail: String| JobError::new(ErrorCode::ModelNotInstalled, detail);
    let Some(dir) = models_dir else {
        return Err(not_installed(format!(
            "model {} is not installed on this worker",
            options.model
        )));
    };
    let store = audiomill_models::ModelStore::new(dir.to_path_buf());
    match store.resolve(
        options.model.as_str(),
        &audiomill_models::Catalog::official(),
    ) {
        Ok(installed) => Ok(installed.descriptor),
        Err(e @ audiomill_models::ModelsError::NotInstalled { .. }) => {
            Err(not_installed(e.to_string()))
        }
        Err(e) => {
            tracing::error!(error = %e, model = %options.model, "cannot resolve the job's model");
            Err(not_installed(format!(
                "model {} could not be loaded on this worker",
                options.model
            )))
        }
    }
}

/// In the child: loads the model and writes one artifact per stem.
pub(crate) fn run(
    task: &ChildTask,
    options: &SeparateOptions,
    progress: &mut dyn FnMut(f64),
) -> Result<ChildMessage, JobError> {
    let model = task
        .model
        .as_deref()
        .ok_or_else(|| write_failed("task", &"a separate task without a model descriptor"))?;
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
        options,
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
            .ok_or_else(|| write_failed("stem", &"a stem file without a name"))?
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
