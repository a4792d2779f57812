//! Encoders writing interleaved `f32` audio to files, chunk by chunk, and the factory that
//! picks one for an output format ([`create_encoder`]).
//!
//! | format | encoder | what is written |
//! | --- | --- | --- |
//! | WAV | ours | 16-bit (default), 24-bit or 32-bit float PCM; tags as `LIST`/`INFO` text |
//! | FLAC | `flacenc` | 16 or 24 bits; Vorbis comments and a `PICTURE` block |
//! | MP3 | LAME | CBR (192 kbit/s default) or VBR `-V 0..9`; LAME tag; ID3v2.4 with cover |
//! | Opus | libopus | Ogg Opus at 48 kHz, VBR (128 kbit/s default); `OpusTags` with cover |
//!
//! Samples arrive as `f32` in `[-1, 1]`; integer and lossy outputs clip louder samples, by
//! rounding without dither, while 32-bit float WAV keeps them as they are.

mod flac;
mod mp3;
mod ogg;
mod opus;
mod wav;

pub use flac::FlacEncoder;
pub use mp3::{
    mp3_output_rate, Mp3Encoder, Mp3Rate, DEFAULT_BITRATE_KBPS as DEFAULT_MP3_BITRATE_KBPS,
};
pub use opus::{OpusEncoder, DEFAULT_BITRATE_KBPS as DEFAULT_OPUS_BITRATE_KBPS};
pub use wav::WavEncoder;

use crate::tags::Tags;
use crate::MediaError;
use audiomill_core::{AudioFormat, SampleFormat};
use std::path::Path;

/// What to write: everything [`create_encoder`] needs to pick and configure an encoder.
#[derive(Debug, Clone, PartialEq)]
pub struct EncoderSpec {
    /// Output format.
    pub format: AudioFormat,
    /// Sample rate of the frames handed to the encoder (see [`output_rate`]).
    pub sample_rate: u32,
    /// Channels of the frames handed to the encoder.
    pub channels: u16,
    /// Bit rate in kbit/s (MP3 CBR, Opus); the format's default when `None`.
    pub bitrate: Option<u32>,
    /// MP3 VBR quality 0 (best) to 9; MP3 is CBR when `None`.
    pub quality: Option<u8>,
    /// PCM sample format (WAV, FLAC); see [`create_encoder`] for the defaults.
    pub sample_format: Option<SampleFormat>,
    /// Bits per sample of the source, when it has such a thing (PCM, FLAC, ALAC).
    pub source_bits: Option<u32>,
    /// Tags to write, where the format holds them.
    pub tags: Tags,
}

/// The sample rate `format` is written at when `rate` Hz (the requested rate, else the
/// input's) is wanted: MP3 takes the nearest MP3 rate ([`mp3_output_rate`]), Opus is always
/// 48 kHz, WAV and FLAC take `rate` as is.
pub fn output_rate(format: AudioFormat, rate: u32) -> u32 {
    match format {
        AudioFormat::Mp3 => mp3_output_rate(rate),
        AudioFormat::Opus => 48_000,
        AudioFormat::Wav | AudioFormat::Flac => rate,
    }
}

/// Creates `output` and the encoder writing `spec`'s format into it.
///
/// Defaults: WAV is 16-bit; FLAC is 24-bit when the source has more than 16 bits per sample
/// (or is float), else 16; MP3 is CBR at 192 kbit/s unless `quality` asks for VBR; Opus is
/// 128 kbit/s. `spec.tags` are written where the format holds them (WAV: text only).
pub fn create_encoder(output: &Path, spec: &EncoderSpec) -> Result<Box<dyn Encoder>, MediaError> {
    let tags = &spec.tags;
    Ok(match spec.format {
        AudioFormat::Wav => Box::new(WavEncoder::create(
            output,
            spec.sample_rate,
            spec.channels,
            spec.sample_format.unwrap_or(SampleFormat::S16),
            tags,
        )?),
        AudioFormat::Flac => {
            let bits = match (spec.sample_format, spec.source_bits) {
                (Some(SampleFormat::S16), _) => 16,
                (Some(SampleFormat::S24), _) => 24,
                (Some(SampleFormat::F32), _) => {
                    return Err(MediaError::InvalidOptions(
                        "FLAC output is 16 or 24 bits, not float".into(),
                    ))
                }
                (None, Some(bits)) if bits > 16 => 24,
                (None, _) => 16,
            };
            Box::new(FlacEncoder::create(
                output,
                spec.sample_rate,
                spec.channels,
                bits,
                tags,
            )?)
        }
        AudioFormat::Mp3 => {
            let rate = match (spec.quality, spec.bitrate) {
                (Some(quality), _) => Mp3Rate::Vbr(quality),
                (None, bitrate) => Mp3Rate::Cbr(bitrate.unwrap_or(DEFAULT_MP3_BITRATE_KBPS)),
            };
            Box::new(Mp3Encoder::create(
                output,
                spec.sample_rate,
                spec.channels,
                rate,
                tags,
            )?)
        }
        AudioFormat::Opus => Box::new(OpusEncoder::create(
            output,
            spec.sample_rate,
            spec.channels,
            spec.bitrate.unwrap_or(DEFAULT_OPUS_BITRATE_KBPS),
            tags,
        )?),
    })
}

/// A streaming encoder: feed interleaved frames with [`Encoder::write`], then call
/// [`Encoder::finish`] to flush and fix up the headers. Dropping an encoder without finishing
/// leaves an incomplete file.
pub trait Encoder {
    /// Encodes interleaved frames (samples in `[-1, 1]`; louder samples are clipped, except
    /// by 32-bit float WAV).
    fn write(&mut self, frames: &[f32]) -> Result<(), MediaError>;
    /// Flushes the encoder and completes the file.
    fn finish(self: Box<Self>) -> Result<(), MediaError>;
}

/// Converts a float sample to a signed integer of `bits` bits: scaled by 2^(bits−1), rounded
/// to nearest, clipped. No dither, so 16-bit input decoded to float converts back exactly.
#[inline]
pub(crate) fn to_int(sample: f32, bits: u32) -> i32 {
    let scale = (1u32 << (bits - 1)) as f32;
    // NaN turns into 0 through the saturating cast.
    (sample * scale).round().clamp(-scale, scale - 1.0) as i32
}

pub(crate) fn write_error(e: std::io::Error) -> MediaError {
    MediaError::io("writing the output", e)
}

#[cfg(test)]
mod tests {
    use super::to_int;

    #[test]
    fn float_to_int_rounds_and_clips() {
        assert_eq!(to_int(0.0, 16), 0);
        assert_eq!(to_int(1.0, 16), 32767);
        assert_eq!(to_int(-1.0, 16), -32768);
        assert_eq!(to_int(2.0, 16), 32767);
        assert_eq!(to_int(f32::NAN, 16), 0);
        for s in [-32768i32, -1, 0, 1, 12345, 32767] {
            assert_eq!(to_int(s as f32 / 32768.0, 16), s);
        }
        for s in [-8_388_608i32, -1, 0, 1, 8_388_607] {
            assert_eq!(to_int(s as f32 / 8_388_608.0, 24), s);
        }
    }
}
