//! Errors of the separation engine.

use audiomill_media::MediaError;

/// Everything that can go wrong loading a model or separating a track.
#[derive(Debug, thiserror::Error)]
pub enum SeparateError {
    /// The file is not a checkpoint this crate can load (not a zip, not a Demucs pickle, a
    /// quantized model, missing or mis-shaped weights…). The message says which.
    #[error("invalid model file: {0}")]
    Checkpoint(String),
    /// A bag-of-models descriptor (`.yaml`) that cannot be used.
    #[error("invalid model descriptor: {0}")]
    Descriptor(String),
    /// A model class or hyperparameter this implementation does not support.
    #[error("unsupported model: {0}")]
    Unsupported(String),
    /// Options that do not fit the model (an unknown stem, a segment longer than the model's…).
    #[error("{0}")]
    InvalidOption(String),
    /// Decoding the input or encoding a stem failed.
    #[error(transparent)]
    Media(#[from] MediaError),
    /// A tensor operation failed (shape mismatch, out of memory…): a bug or a resource problem.
    #[error("tensor error: {0}")]
    Tensor(#[from] candle_core::Error),
    /// Reading a model file or writing a temporary file failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The caller asked to stop (job canceled).
    #[error("canceled")]
    Canceled,
}

impl SeparateError {
    /// The stable error code of a job that failed with this error.
    pub fn code(&self) -> audiomill_core::ErrorCode {
        use audiomill_core::ErrorCode;
        match self {
            SeparateError::Media(e) => e.code(),
            SeparateError::InvalidOption(_) => ErrorCode::InvalidInput,
            // An installed model that does not load is the operator's problem, not the
            // client's: reported as internal, with the cause in the worker's log.
            SeparateError::Checkpoint(_)
            | SeparateError::Descriptor(_)
            | SeparateError::Unsupported(_)
            | SeparateError::Tensor(_)
            | SeparateError::Io(_)
            | SeparateError::Canceled => ErrorCode::Internal,
        }
    }

    /// A message safe to show to clients: no paths, no library internals.
    pub fn public_message(&self) -> String {
        match self {
            SeparateError::Media(e) => e.public_message(),
            SeparateError::InvalidOption(message) => message.clone(),
            SeparateError::Checkpoint(_)
            | SeparateError::Descriptor(_)
            | SeparateError::Unsupported(_) => "the separation model could not be loaded".into(),
            SeparateError::Tensor(_) | SeparateError::Io(_) => "separation failed".into(),
            SeparateError::Canceled => "canceled".into(),
        }
    }
}
