//! Audio engine of audiomill (work in progress).

use audiomill_core::{ConvertOptions, ErrorCode, Limits, MediaInfo};
use std::path::Path;

/// Measurements of an audio file.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Analysis {
    /// Container format, e.g. `wav`.
    pub container: String,
    /// Codec, e.g. `pcm_s16le`.
    pub codec: String,
    /// Duration of the decoded audio in seconds.
    pub duration_secs: f64,
    /// Sample rate in Hz.
    pub sample_rate: u32,
    /// Number of channels.
    pub channels: u16,
    /// Average bit rate in bits per second.
    pub bit_rate: Option<u64>,
    /// Sample peak in dBFS.
    pub sample_peak_dbfs: Option<f64>,
    /// RMS level in dBFS.
    pub rms_dbfs: Option<f64>,
    /// Integrated loudness in LUFS.
    pub integrated_lufs: Option<f64>,
    /// Loudness range in LU.
    pub loudness_range_lu: Option<f64>,
    /// True peak in dBTP.
    pub true_peak_dbtp: Option<f64>,
}

/// Why the engine failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MediaError {
    /// Not implemented yet.
    #[error("not implemented")]
    Internal(String),
}

impl MediaError {
    /// The stable code.
    pub fn code(&self) -> ErrorCode {
        ErrorCode::Internal
    }
    /// A message safe for clients.
    pub fn public_message(&self) -> String {
        "internal error".into()
    }
}

/// Probes a file.
pub fn probe(_path: &Path, _limits: &Limits) -> Result<MediaInfo, MediaError> {
    Err(MediaError::Internal("todo".into()))
}

/// Analyzes a file.
pub fn analyze(
    _path: &Path,
    _limits: &Limits,
    _progress: &mut dyn FnMut(f64),
) -> Result<Analysis, MediaError> {
    Err(MediaError::Internal("todo".into()))
}

/// Converts a file.
pub fn convert(
    _input: &Path,
    _output: &Path,
    _options: &ConvertOptions,
    _limits: &Limits,
    _progress: &mut dyn FnMut(f64),
) -> Result<MediaInfo, MediaError> {
    Err(MediaError::Internal("todo".into()))
}
