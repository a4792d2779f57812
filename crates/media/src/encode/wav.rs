//! RIFF WAVE, 16-bit PCM, through `hound` (which writes the RIFF and data sizes on finish).

use super::{to_int, Encoder};
use crate::MediaError;
use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

/// Writes 16-bit PCM WAV.
pub struct WavEncoder {
    writer: hound::WavWriter<BufWriter<File>>,
    data_bytes: u64,
}

/// RIFF sizes are 32-bit: the data chunk must leave room for the header under 4 GiB.
const MAX_DATA_BYTES: u64 = u32::MAX as u64 - 1024;

impl std::fmt::Debug for WavEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WavEncoder").finish_non_exhaustive()
    }
}

fn hound_error(e: hound::Error) -> MediaError {
    match e {
        hound::Error::IoError(e) => super::write_error(e),
        other => MediaError::Processing(format!("wav: {other}")),
    }
}

impl WavEncoder {
    /// Creates `path` for `channels` channels at `sample_rate` Hz.
    pub fn create(path: &Path, sample_rate: u32, channels: u16) -> Result<Self, MediaError> {
        let spec = hound::WavSpec {
            channels,
            sample_rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let writer = hound::WavWriter::create(path, spec).map_err(hound_error)?;
        Ok(WavEncoder {
            writer,
            data_bytes: 0,
        })
    }
}

impl Encoder for WavEncoder {
    fn write(&mut self, frames: &[f32]) -> Result<(), MediaError> {
        self.data_bytes += 2 * frames.len() as u64;
        if self.data_bytes > MAX_DATA_BYTES {
            return Err(MediaError::InvalidOptions(
                "the output would exceed the 4 GiB size limit of WAV files; use FLAC".into(),
            ));
        }
        let mut writer = self.writer.get_i16_writer(frames.len() as u32);
        for &sample in frames {
            writer.write_sample(to_int(sample, 16) as i16);
        }
        writer.flush().map_err(hound_error)
    }

    fn finish(self: Box<Self>) -> Result<(), MediaError> {
        self.writer.finalize().map_err(hound_error)
    }
}
