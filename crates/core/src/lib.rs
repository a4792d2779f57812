//! Shared vocabulary of audiomill.
//!
//! Owns: prefixed ids ([`JobId`], [`UploadId`], …), the typed operations and their options
//! ([`Operation`], [`JobSpec`]), job states ([`JobState`]) and stable error codes
//! ([`ErrorCode`]), the limits every engine enforces ([`Limits`]), the description of a probed
//! file ([`MediaInfo`]) and the API key format ([`key`]).
//!
//! Must not depend on: any other audiomill crate, an async runtime, a database or HTTP. Every
//! other crate depends on this one, so it stays small and free of I/O. User input is parsed into
//! these types at the edge (HTTP, CLI); past that point the rest of the code trusts them.

pub mod digest;
pub mod error;
pub mod format;
pub mod id;
pub mod job;
pub mod json;
pub mod key;
pub mod limits;
pub mod media;
pub mod operation;
pub mod plan;
pub mod separation;
pub mod source;
pub mod text;
pub mod validate;

pub use error::{ErrorCode, JobError};
pub use id::{AccountId, ArtifactId, IdError, JobId, KeyId, UploadId};
pub use job::{JobState, ParseStateError};
pub use limits::Limits;
pub use media::MediaInfo;
pub use operation::{
    AnalyzeOptions, AudioFormat, ConvertOptions, DownloadOptions, InputRef, JobDraft, JobRequest,
    JobSpec, Normalize, Operation, OperationKind, OutputSpec, SampleFormat, SpecError, TrimSilence,
};
pub use plan::{period_end, usage_period, PlanError, PlanLimits, PlanName, Retention, Scope};
pub use separation::{ModelName, SeparateOptions, StemName};
pub use source::{InputUrl, InputUrlError, MAX_INPUT_URL_BYTES};
