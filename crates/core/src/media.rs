//! What a probe tells about an audio file.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The description of an audio file, read from its container and codec headers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MediaInfo {
    /// Container format found by content sniffing, e.g. `wav`, `flac`, `mp3`, `ogg`, `mp4`.
    pub container: String,
    /// Codec of the audio track, e.g. `pcm_s16le`, `flac`, `mp3`, `vorbis`, `aac`.
    pub codec: String,
    /// Duration in seconds, when known from the headers (or counted, for formats without one).
    pub duration_secs: Option<f64>,
    /// Sample rate in Hz.
    pub sample_rate: u32,
    /// Number of channels.
    pub channels: u16,
    /// Average bit rate in bits per second, when it can be known.
    pub bit_rate: Option<u64>,
}
