//! RIFF WAVE: 16- or 24-bit integer or 32-bit float PCM, with tags in a `LIST`/`INFO` chunk.
//!
//! Written here rather than through `hound`, which cannot add chunks. The layout is the one
//! `hound` (and most tools) write: `fmt ` as plain `PCMWAVEFORMAT` for 16-bit mono or stereo,
//! `WAVEFORMATEXTENSIBLE` for more bits or channels, then `LIST`/`INFO` (when there are tags)
//! and `data`; the RIFF and data sizes are patched in by [`Encoder::finish`].

use super::{to_int, write_error, Encoder};
use crate::tags::{riff_info, Tags};
use crate::MediaError;
use audiomill_core::SampleFormat;
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::Path;

/// RIFF sizes are 32-bit: the data chunk must leave room for the header under 4 GiB.
const MAX_DATA_BYTES: u64 = u32::MAX as u64 - 1024;

const SUBTYPE_PCM: [u8; 16] = [
    0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xaa, 0x00, 0x38, 0x9b, 0x71,
];
const SUBTYPE_FLOAT: [u8; 16] = [
    0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xaa, 0x00, 0x38, 0x9b, 0x71,
];

/// Writes PCM WAV.
pub struct WavEncoder {
    out: BufWriter<File>,
    format: SampleFormat,
    /// Offset of the data chunk's size field.
    data_size_at: u64,
    data_bytes: u64,
    bytes: Vec<u8>,
}

impl std::fmt::Debug for WavEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WavEncoder")
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

fn bytes_per_sample(format: SampleFormat) -> u16 {
    match format {
        SampleFormat::S16 => 2,
        SampleFormat::S24 => 3,
        SampleFormat::F32 => 4,
    }
}

impl WavEncoder {
    /// Creates `path` for `channels` channels at `sample_rate` Hz in `format`, with the text
    /// of `tags` (title, artist, album, track, date) in a `LIST`/`INFO` chunk.
    pub fn create(
        path: &Path,
        sample_rate: u32,
        channels: u16,
        format: SampleFormat,
        tags: &Tags,
    ) -> Result<Self, MediaError> {
        if channels == 0 || sample_rate == 0 {
            return Err(MediaError::InvalidOptions(
                "WAV needs at least one channel and a sample rate".into(),
            ));
        }
        let bytes = bytes_per_sample(format);
        let bits = bytes * 8;
        let block_align = u32::from(bytes) * u32::from(channels);
        let block_align = u16::try_from(block_align).map_err(|_| {
            MediaError::InvalidOptions(format!("WAV cannot hold {channels} channels"))
        })?;
        let byte_rate = sample_rate
            .checked_mul(u32::from(block_align))
            .ok_or_else(|| MediaError::InvalidOptions("WAV byte rate overflows".into()))?;
        let extensible = channels > 2 || bits > 16;
        let mut header = Vec::with_capacity(128);
        header.extend_from_slice(b"RIFF\0\0\0\0WAVEfmt ");
        header.extend_from_slice(&(if extensible { 40u32 } else { 16 }).to_le_bytes());
        header.extend_from_slice(&(if extensible { 0xfffe_u16 } else { 1 }).to_le_bytes());
        header.extend_from_slice(&channels.to_le_bytes());
        header.extend_from_slice(&sample_rate.to_le_bytes());
        header.extend_from_slice(&byte_rate.to_le_bytes());
        header.extend_from_slice(&block_align.to_le_bytes());
        header.extend_from_slice(&bits.to_le_bytes());
        if extensible {
            header.extend_from_slice(&22u16.to_le_bytes()); // cbSize
            header.extend_from_slice(&bits.to_le_bytes()); // valid bits
            let mask = if channels >= 18 {
                0x3ffff
            } else {
                (1u32 << channels) - 1
            };
            header.extend_from_slice(&mask.to_le_bytes());
            header.extend_from_slice(if format == SampleFormat::F32 {
                &SUBTYPE_FLOAT
            } else {
                &SUBTYPE_PCM
            });
        }
        header.extend_from_slice(&riff_info(tags));
        header.extend_from_slice(b"data\0\0\0\0");
        let data_size_at = header.len() as u64 - 4;
        let file = File::create(path).map_err(write_error)?;
        let mut out = BufWriter::new(file);
        out.write_all(&header).map_err(write_error)?;
        Ok(WavEncoder {
            out,
            format,
            data_size_at,
            data_bytes: 0,
            bytes: Vec::new(),
        })
    }
}

impl Encoder for WavEncoder {
    fn write(&mut self, frames: &[f32]) -> Result<(), MediaError> {
        let size = u64::from(bytes_per_sample(self.format));
        self.data_bytes += size * frames.len() as u64;
        if self.data_bytes > MAX_DATA_BYTES {
            return Err(MediaError::InvalidOptions(
                "the output would exceed the 4 GiB size limit of WAV files; use FLAC".into(),
            ));
        }
        self.bytes.clear();
        match self.format {
            SampleFormat::S16 => {
                for &sample in frames {
                    self.bytes
                        .extend_from_slice(&(to_int(sample, 16) as i16).to_le_bytes());
                }
            }
            SampleFormat::S24 => {
                for &sample in frames {
                    self.bytes
                        .extend_from_slice(&to_int(sample, 24).to_le_bytes()[..3]);
                }
            }
            SampleFormat::F32 => {
                // Float keeps samples beyond full scale; only NaN is replaced (by silence).
                for &sample in frames {
                    let sample = if sample.is_nan() { 0.0 } else { sample };
                    self.bytes.extend_from_slice(&sample.to_le_bytes());
                }
            }
        }
        self.out.write_all(&self.bytes).map_err(write_error)
    }

    fn finish(mut self: Box<Self>) -> Result<(), MediaError> {
        if self.data_bytes % 2 == 1 {
            // Chunks are padded to an even size.
            self.out.write_all(&[0]).map_err(write_error)?;
        }
        let end = self.out.stream_position().map_err(write_error)?;
        let riff_size = u32::try_from(end - 8).unwrap_or(u32::MAX);
        self.out.seek(SeekFrom::Start(4)).map_err(write_error)?;
        self.out
            .write_all(&riff_size.to_le_bytes())
            .map_err(write_error)?;
        self.out
            .seek(SeekFrom::Start(self.data_size_at))
            .map_err(write_error)?;
        self.out
            .write_all(&(self.data_bytes as u32).to_le_bytes())
            .map_err(write_error)?;
        self.out.flush().map_err(write_error)
    }
}
