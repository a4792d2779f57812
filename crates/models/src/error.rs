//! Errors of model management. Every message is one line, meant for the operator (CLI) or
//! an API client, and says what to do when there is something to do.

use std::path::Path;

/// Everything that can go wrong managing models.
#[derive(Debug, thiserror::Error)]
pub enum ModelsError {
    /// A model name that is not `^[a-z0-9][a-z0-9_.-]{0,63}$`: refused before any path is
    /// built from it.
    #[error(
        "invalid model name {name:?}: use 1 to 64 lowercase letters, digits, '_', '.' or '-', \
         starting with a letter or digit"
    )]
    InvalidName {
        /// The name as given.
        name: String,
    },
    /// The default name of an import (the file's stem) is not a valid name.
    #[error(
        "cannot name the model after {stem:?}: give a name with --name (1 to 64 lowercase \
         letters, digits, '_', '.' or '-')"
    )]
    NeedsName {
        /// The file stem that could not be used.
        stem: String,
    },
    /// The model is not installed.
    #[error("model {name:?} is not installed; install it with: {install_command}")]
    NotInstalled {
        /// The model asked for.
        name: String,
        /// The command that installs it (`audiomill models pull <name>` for a catalog model).
        install_command: String,
    },
    /// `rm` of a model that is not there.
    #[error("model {name:?} is not installed; nothing to remove")]
    NothingToRemove {
        /// The model.
        name: String,
    },
    /// A model of that name is already installed; installs never overwrite.
    #[error(
        "model {name:?} is already installed; remove it first with: audiomill models rm {name}"
    )]
    AlreadyInstalled {
        /// The model.
        name: String,
    },
    /// A pull of a name the catalog does not have.
    #[error(
        "no model named {name:?} in the catalog; see `audiomill models list`, or install your \
         own with `audiomill models import PATH --name {name}`"
    )]
    UnknownModel {
        /// The name asked for.
        name: String,
    },
    /// A catalog model the separation engine cannot run (yet).
    #[error("model {name:?} is not supported: {reason}")]
    Unsupported {
        /// The model.
        name: String,
        /// Why.
        reason: String,
    },
    /// Another process (or task) is downloading the same file right now.
    #[error("model {name:?} is being downloaded by another process; wait for it to finish")]
    Busy {
        /// The model.
        name: String,
    },
    /// The download failed: connection, HTTP status, interrupted transfer.
    #[error("download of {file} failed: {message}")]
    Download {
        /// The file being downloaded.
        file: String,
        /// What happened, and whether running the command again resumes it.
        message: String,
    },
    /// The downloaded (or imported) file does not hash to the checksum in its name.
    #[error(
        "{file} is corrupt: its name says SHA-256 {expected}…, its content hashes to {actual}…; \
         the download was discarded, run the command again"
    )]
    Checksum {
        /// The file.
        file: String,
        /// The checksum from the file name (a prefix of the hex SHA-256).
        expected: String,
        /// The same number of leading hex digits of the content's SHA-256.
        actual: String,
    },
    /// The server's sizes do not add up (declared length vs. bytes received, or a range that
    /// does not continue the partial file).
    #[error("download of {file} has the wrong size: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// The file.
        file: String,
        /// The size the server declared (or the offset we asked for).
        expected: u64,
        /// What was received (or what the server answered).
        actual: u64,
    },
    /// A file larger than the hard cap: no model is that large, the server is wrong.
    #[error("{file} is {bytes} bytes, more than the limit of {limit} bytes for a model file")]
    TooLarge {
        /// The file.
        file: String,
        /// Its declared or received size.
        bytes: u64,
        /// The cap.
        limit: u64,
    },
    /// The files do not load as a model (what separation would fail with later).
    #[error("the model does not load: {0}")]
    Invalid(String),
    /// An installed model whose files are missing or unreadable.
    #[error("model {name:?} is damaged ({reason}); remove it with `audiomill models rm {name}` and install it again")]
    Damaged {
        /// The model.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// A file system operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the path.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

impl ModelsError {
    /// An [`Io`](ModelsError::Io) error with a short description and the path involved.
    pub(crate) fn io(what: &str, path: &Path, source: std::io::Error) -> ModelsError {
        ModelsError::Io {
            context: format!("cannot {what} {}", path.display()),
            source,
        }
    }
}

impl From<audiomill_separate::SeparateError> for ModelsError {
    fn from(e: audiomill_separate::SeparateError) -> ModelsError {
        ModelsError::Invalid(e.to_string())
    }
}

/// Result of model management.
pub type Result<T, E = ModelsError> = std::result::Result<T, E>;
