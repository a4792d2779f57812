//! The engine's error type and its mapping to the API's stable error codes.

use audiomill_core::ErrorCode;

/// The inputs the engine reads, for messages.
const SUPPORTED_INPUTS: &str = "WAV, AIFF, CAF, FLAC, MP3, MP2, Ogg Vorbis, Opus (Ogg or \
     WebM/MKV), MP4/M4A with AAC or ALAC, MKV/WebM";

/// Why probing, analyzing or converting failed.
///
/// The `Display` form (and the `detail` fields) may contain library internals and are meant
/// for logs; clients get [`MediaError::public_message`] and [`MediaError::code`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MediaError {
    /// The input is not audio in a container and codec the engine reads.
    #[error("unsupported format: {detail}")]
    UnsupportedFormat {
        /// What was recognized (or not), for the logs.
        detail: String,
        /// What the input was found to be, in a sentence safe to show ("this is a PNG image,
        /// not audio"), when it could be told.
        found: Option<String>,
    },
    /// The input looks like a supported format but is broken: truncated, corrupt, or lying.
    #[error("decode failed: {detail}")]
    DecodeFailed {
        /// What went wrong, for the logs.
        detail: String,
    },
    /// The input is longer than `Limits::max_duration_secs` (from its header or while decoding).
    #[error("input too long: {duration_secs:.3} s > {max_secs} s")]
    InputTooLong {
        /// Duration found so far, in seconds.
        duration_secs: f64,
        /// The limit, in seconds.
        max_secs: u64,
    },
    /// The input's sample rate is above `Limits::max_sample_rate`.
    #[error("sample rate too high: {sample_rate} Hz > {max} Hz")]
    SampleRateTooHigh {
        /// The input's sample rate in Hz.
        sample_rate: u32,
        /// The limit in Hz.
        max: u32,
    },
    /// The input has more channels than `Limits::max_channels`.
    #[error("too many channels: {channels} > {max}")]
    TooManyChannels {
        /// The input's channel count.
        channels: u32,
        /// The limit.
        max: u16,
    },
    /// The conversion asked for cannot be done for this input (e.g. FLAC with 12 channels).
    /// The message is written by this crate and safe to show.
    #[error("invalid options: {0}")]
    InvalidOptions(String),
    /// The input file does not exist.
    #[error("input not found: {0}")]
    InputNotFound(#[source] std::io::Error),
    /// Reading the input or writing the output failed at the OS level.
    #[error("I/O error while {context}: {source}")]
    Io {
        /// What the engine was doing.
        context: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A processing stage (encoder, resampler, loudness meter) failed internally.
    #[error("processing failed: {0}")]
    Processing(String),
}

impl MediaError {
    pub(crate) fn unsupported(detail: impl Into<String>) -> Self {
        MediaError::UnsupportedFormat {
            detail: detail.into(),
            found: None,
        }
    }

    /// `UnsupportedFormat` whose public message is `found`.
    pub(crate) fn unsupported_found(detail: impl Into<String>, found: impl Into<String>) -> Self {
        MediaError::UnsupportedFormat {
            detail: detail.into(),
            found: Some(found.into()),
        }
    }

    pub(crate) fn decode(detail: impl Into<String>) -> Self {
        MediaError::DecodeFailed {
            detail: detail.into(),
        }
    }

    pub(crate) fn io(context: &'static str, source: std::io::Error) -> Self {
        MediaError::Io { context, source }
    }

    /// The stable code clients can match on.
    pub fn code(&self) -> ErrorCode {
        match self {
            MediaError::UnsupportedFormat { .. } => ErrorCode::UnsupportedFormat,
            MediaError::DecodeFailed { .. } => ErrorCode::DecodeFailed,
            MediaError::InputTooLong { .. } => ErrorCode::InputTooLong,
            MediaError::SampleRateTooHigh { .. } => ErrorCode::SampleRateTooHigh,
            MediaError::TooManyChannels { .. } => ErrorCode::TooManyChannels,
            MediaError::InvalidOptions(_) => ErrorCode::InvalidInput,
            MediaError::InputNotFound(_) => ErrorCode::InputNotFound,
            MediaError::Io { .. } | MediaError::Processing(_) => ErrorCode::Internal,
        }
    }

    /// A message safe to show to clients: no paths, no library internals.
    pub fn public_message(&self) -> String {
        match self {
            MediaError::UnsupportedFormat {
                found: Some(found), ..
            } => format!("{found}; supported inputs are {SUPPORTED_INPUTS}"),
            MediaError::UnsupportedFormat { .. } => {
                format!("the input is not audio in a supported format ({SUPPORTED_INPUTS})")
            }
            MediaError::DecodeFailed { .. } => {
                "the input could not be decoded: it is truncated or corrupt".into()
            }
            MediaError::InputTooLong {
                duration_secs,
                max_secs,
            } => format!(
                "the input is longer than the allowed {max_secs} s (at least {:.0} s)",
                duration_secs.floor()
            ),
            MediaError::SampleRateTooHigh { sample_rate, max } => {
                format!("the input's sample rate of {sample_rate} Hz is above the allowed {max} Hz")
            }
            MediaError::TooManyChannels { channels, max } => {
                let allowed = match max {
                    1 => "only 1 is allowed".to_owned(),
                    max => format!("at most {max} are allowed"),
                };
                format!(
                    "the input has {}; {allowed}",
                    audiomill_core::text::count(*channels, "channel", "channels")
                )
            }
            MediaError::InvalidOptions(message) => message.clone(),
            MediaError::InputNotFound(_) => "the input file no longer exists".into(),
            MediaError::Io { .. } | MediaError::Processing(_) => {
                "an internal error occurred while processing the audio".into()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_messages_hide_details() {
        let err = MediaError::decode("/secret/path/file.wav: riff: invalid chunk");
        assert_eq!(err.code(), ErrorCode::DecodeFailed);
        assert!(!err.public_message().contains("secret"));
        let err = MediaError::io(
            "reading the input",
            std::io::Error::other("/var/lib/audiomill/x"),
        );
        assert_eq!(err.code(), ErrorCode::Internal);
        assert!(!err.public_message().contains("/var"));
    }
}
