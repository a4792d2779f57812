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

/// How a file kept as it came (a `download` without conversion) is named and served: its
/// extension and content type, from the probed container and codec. `None` for a container
/// the engine reads but that is not served as is.
pub fn stored_type(container: &str, codec: &str) -> Option<(&'static str, &'static str)> {
    Some(match container {
        "mp3" => ("mp3", "audio/mpeg"),
        "mp4" => ("m4a", "audio/mp4"),
        "webm" => ("webm", "audio/webm"),
        "mkv" => ("mka", "audio/x-matroska"),
        "ogg" if codec == "opus" => ("opus", "audio/ogg"),
        "ogg" => ("ogg", "audio/ogg"),
        "flac" => ("flac", "audio/flac"),
        "wav" => ("wav", "audio/wav"),
        "aiff" => ("aiff", "audio/aiff"),
        "caf" => ("caf", "audio/x-caf"),
        "adts" | "aac" => ("aac", "audio/aac"),
        _ => return None,
    })
}

/// Every content type [`stored_type`] gives.
pub const STORED_CONTENT_TYPES: &[&str] = &[
    "audio/mpeg",
    "audio/mp4",
    "audio/webm",
    "audio/x-matroska",
    "audio/ogg",
    "audio/flac",
    "audio/wav",
    "audio/aiff",
    "audio/x-caf",
    "audio/aac",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_types_are_listed() {
        for (container, codec) in [
            ("mp3", "mp3"),
            ("mp4", "aac"),
            ("webm", "opus"),
            ("mkv", "vorbis"),
            ("ogg", "opus"),
            ("ogg", "vorbis"),
            ("flac", "flac"),
            ("wav", "pcm_s16le"),
            ("aiff", "pcm_s16be"),
            ("caf", "alac"),
            ("adts", "aac"),
        ] {
            let (_, content_type) = stored_type(container, codec).unwrap();
            assert!(
                STORED_CONTENT_TYPES.contains(&content_type),
                "{content_type}"
            );
        }
        assert_eq!(stored_type("html", "none"), None);
    }
}
