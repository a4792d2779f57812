//! The audio formats the engine writes, and the encoder options every operation that writes
//! audio shares (bit rate or VBR quality, PCM sample format, sample rates).

use crate::validate::SpecError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An output audio format the engine can write. Formats it cannot write (AAC, Vorbis, …) are
/// refused when the job is submitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AudioFormat {
    /// RIFF WAVE: 16- or 24-bit integer or 32-bit float PCM.
    Wav,
    /// FLAC, lossless (16 or 24 bits).
    Flac,
    /// MPEG-1/2 Layer III, CBR (`bitrate`) or VBR (`quality`).
    Mp3,
    /// Opus in Ogg, always at 48 kHz.
    Opus,
}

impl AudioFormat {
    /// Every format, in the order help texts list them.
    pub const ALL: [AudioFormat; 4] = [
        AudioFormat::Wav,
        AudioFormat::Flac,
        AudioFormat::Mp3,
        AudioFormat::Opus,
    ];

    /// The format a file name's extension stands for (any case): its own extension, and `ogg`
    /// or `oga` for Opus, the only audio written in Ogg.
    pub fn from_extension(ext: &str) -> Option<Self> {
        match ext.to_ascii_lowercase().as_str() {
            "ogg" | "oga" => Some(AudioFormat::Opus),
            ext => Self::ALL.into_iter().find(|f| f.extension() == ext),
        }
    }

    /// File extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            AudioFormat::Wav => "wav",
            AudioFormat::Flac => "flac",
            AudioFormat::Mp3 => "mp3",
            AudioFormat::Opus => "opus",
        }
    }

    /// MIME type of files in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            AudioFormat::Wav => "audio/wav",
            AudioFormat::Flac => "audio/flac",
            AudioFormat::Mp3 => "audio/mpeg",
            AudioFormat::Opus => "audio/ogg; codecs=opus",
        }
    }
}

/// Sample format of PCM output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SampleFormat {
    /// 16-bit signed integer.
    S16,
    /// 24-bit signed integer.
    S24,
    /// 32-bit IEEE float (WAV only).
    F32,
}

/// MP3 bit rates (kbit/s) that LAME can write in CBR mode for MPEG-1 and MPEG-2 layer III.
pub const MP3_BITRATES: [u32; 14] = [
    32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320,
];

/// Opus bit rates (kbit/s) accepted: libopus's range.
pub const OPUS_BITRATES: std::ops::RangeInclusive<u32> = 6..=510;

/// Sample rates (Hz) an output may be resampled to.
pub const OUTPUT_SAMPLE_RATES: [u32; 9] = [
    8_000, 11_025, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000, 96_000,
];

/// Sample rates MP3 can carry (MPEG-1 and MPEG-2).
pub const MP3_SAMPLE_RATES: [u32; 6] = [16_000, 22_050, 24_000, 32_000, 44_100, 48_000];

/// Checks the encoder options of an output in `format`: bit rate or VBR quality for the lossy
/// formats, sample format for the PCM ones. Shared by every operation that writes audio.
pub(crate) fn check_encoding(
    format: AudioFormat,
    bitrate: Option<u32>,
    quality: Option<u8>,
    sample_format: Option<SampleFormat>,
) -> Result<(), SpecError> {
    let ext = format.extension();
    match (format, bitrate, quality) {
        (_, Some(_), Some(_)) => {
            return Err(SpecError(
                "give bitrate (CBR) or quality (VBR), not both".into(),
            ))
        }
        (AudioFormat::Mp3, Some(b), None) if !MP3_BITRATES.contains(&b) => {
            return Err(SpecError(format!(
                "bitrate {b} is not an MP3 bit rate; expected one of {MP3_BITRATES:?} (kbit/s)"
            )))
        }
        (AudioFormat::Mp3, None, Some(q)) if q > 9 => {
            return Err(SpecError("quality must be 0 (best) to 9 for mp3".into()))
        }
        (AudioFormat::Opus, Some(b), None) if !OPUS_BITRATES.contains(&b) => {
            return Err(SpecError(format!(
                "bitrate {b} is outside Opus's range of 6 to 510 kbit/s"
            )))
        }
        (AudioFormat::Opus, None, Some(_)) => {
            return Err(SpecError("opus takes bitrate, not quality".into()))
        }
        (AudioFormat::Wav | AudioFormat::Flac, Some(_), _)
        | (AudioFormat::Wav | AudioFormat::Flac, _, Some(_)) => {
            return Err(SpecError(format!(
                "bitrate and quality apply to mp3 and opus; {ext} is lossless"
            )))
        }
        _ => {}
    }
    match (format, sample_format) {
        (AudioFormat::Wav, _) | (_, None) => Ok(()),
        (AudioFormat::Flac, Some(SampleFormat::S16 | SampleFormat::S24)) => Ok(()),
        (_, Some(_)) => Err(SpecError(format!(
            "sample_format applies to wav (s16, s24, f32) and flac (s16, s24), not {ext}"
        ))),
    }
}
