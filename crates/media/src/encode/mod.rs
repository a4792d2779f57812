//! Encoders writing interleaved `f32` audio to files, chunk by chunk.

mod flac;
mod mp3;
mod wav;

pub use flac::FlacEncoder;
pub use mp3::{mp3_output_rate, Mp3Encoder, DEFAULT_BITRATE_KBPS as DEFAULT_MP3_BITRATE_KBPS};
pub use wav::WavEncoder;

use crate::MediaError;

/// A streaming encoder: feed interleaved frames with [`Encoder::write`], then call
/// [`Encoder::finish`] to flush and fix up the headers. Dropping an encoder without finishing
/// leaves an incomplete file.
pub trait Encoder {
    /// Encodes interleaved frames (samples in `[-1, 1]`; louder samples are clipped).
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
