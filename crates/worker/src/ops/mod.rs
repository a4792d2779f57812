//! One module per operation: what the job child runs for it (the engine call, and the
//! artifacts and result it reports), and what the parent prepares for it before the child
//! starts. The rest of the worker (claiming, the sandbox, leases, storing artifacts) is the
//! same for every operation.
//!
//! A new operation is: its options type and a variant of `Operation` in `core`, an engine
//! function, a module here with `run` (and a parent-side step in [`prepare`] if it needs
//! one), and an arm in [`run_in_child`].

pub(crate) mod analyze;
pub(crate) mod convert;
pub(crate) mod download;
pub(crate) mod separate;

use crate::protocol::{ChildMessage, ChildTask};
use crate::WorkerConfig;
use audiomill_core::{ErrorCode, InputRef, JobError, Operation};
use std::path::PathBuf;

/// Runs `task` in the job child: the files go to `task.output_dir` under fixed names.
pub(crate) fn run_in_child(
    task: &ChildTask,
    progress: &mut dyn FnMut(f64),
) -> Result<ChildMessage, JobError> {
    match &task.operation {
        Operation::Analyze(options) => analyze::run(task, options, progress),
        Operation::Convert(options) => convert::run(task, options, progress),
        Operation::Separate(options) => separate::run(task, options, progress),
        Operation::Download(options) => download::run(task, options, progress),
    }
}

/// What an operation needs prepared by the parent, besides its input.
#[derive(Debug, Default)]
pub(crate) struct Prepared {
    /// A `separate` job's model descriptor, resolved from the installed models.
    pub(crate) model: Option<PathBuf>,
}

/// The parent's step before the child starts (reading the file system off the async
/// threads): a `separate` job's model is resolved; other operations need nothing.
pub(crate) async fn prepare(
    operation: &Operation,
    config: &WorkerConfig,
) -> Result<Prepared, JobError> {
    let Operation::Separate(options) = operation else {
        return Ok(Prepared::default());
    };
    let (dir, options) = (config.models_dir.clone(), options.clone());
    let resolved =
        tokio::task::spawn_blocking(move || separate::resolve_model(dir.as_deref(), &options))
            .await;
    match resolved {
        Ok(model) => Ok(Prepared {
            model: Some(model?),
        }),
        Err(e) => {
            tracing::error!(error = %e, "model lookup task failed");
            Err(crate::errors::internal())
        }
    }
}

/// The share of the progress bar the download of a URL input takes (0 for stored inputs).
pub(crate) fn fetch_share(operation: &Operation, input: &InputRef) -> f64 {
    match (input, operation) {
        (InputRef::Url(_), Operation::Download(o)) if o.convert.is_none() => 0.95,
        (InputRef::Url(_), Operation::Download(_)) => 0.5,
        (InputRef::Url(_), _) => 0.3,
        _ => 0.0,
    }
}

/// An engine failure as the job records it: its stable code and public message.
pub(crate) fn engine_error(e: audiomill_media::MediaError) -> JobError {
    JobError::new(e.code(), e.public_message())
}

/// A result the child could not write: logged (to the child's stderr, which the parent
/// logs), recorded as internal.
pub(crate) fn write_failed(what: &str, e: &dyn std::fmt::Display) -> JobError {
    eprintln!("audiomill job child: {what}: {e}");
    JobError::new(ErrorCode::Internal, "the result could not be written")
}
