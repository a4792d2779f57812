//! The separation models of audiomill: which exist (the [`Catalog`] of official Demucs v4
//! models), which are installed in the data directory ([`ModelStore`]), installing them by
//! download ([`pull`]) or from local files ([`ModelStore::import`]), removing them, and
//! resolving a name to a descriptor the engine loads ([`ModelStore::resolve`]).
//!
//! Installed models are laid out as Demucs repositories (a bag `.yaml` beside its `.th`
//! checkpoints), so the engine's `audiomill_separate::load_model` loads every one of them
//! the same way, verifying the checksums in the file names. Every install is validated by
//! loading it before it becomes visible, and becomes visible atomically (a rename), so the
//! worker never sees a half-installed or unloadable model.
//!
//! Model names are the only user input that becomes a path: they are checked once, at the
//! edge, against `^[a-z0-9][a-z0-9_.-]{0,63}$`.

mod catalog;
mod error;
mod name;
mod pull;
mod store;

pub use catalog::{
    Catalog, CatalogEntry, CatalogFile, HDEMUCS_MMI_YAML, HTDEMUCS_6S_YAML, HTDEMUCS_FT_YAML,
    HTDEMUCS_YAML, OFFICIAL_BASE_URL,
};
pub use error::{ModelsError, Result};
pub use name::{is_valid_name, ModelName};
pub use pull::{pull, pull_with, PullOptions, PullProgress, MAX_FILE_BYTES};
pub use store::{
    InstalledModel, Manifest, ManifestFile, ModelStatus, ModelStore, Origin, MANIFEST_FILE,
};
