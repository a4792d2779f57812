//! FLAC through `flacenc` (pure Rust), one block at a time.
//!
//! flacenc's convenience API encodes a whole in-memory source; to stream, this encoder fills
//! one block, encodes it as a frame and writes it out, then rewrites the STREAMINFO block at
//! the start of the file (sizes, sample count, MD5) once the stream is complete. Tags follow
//! STREAMINFO as a `VORBIS_COMMENT` block and the cover as a `PICTURE` block.

use super::{to_int, write_error, Encoder};
use crate::tags::{flac_picture, vorbis_comment_block, Tags};
use crate::MediaError;
use flacenc::bitsink::MemSink;
use flacenc::component::{BitRepr, StreamInfo};
use flacenc::error::Verify;
use flacenc::source::{Context, Fill, FrameBuf};
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::Path;

/// Frames per FLAC block (the reference encoder's default at 44.1/48 kHz).
const BLOCK_SIZE: usize = 4096;
/// Largest metadata block body (24-bit length).
const MAX_BLOCK_BYTES: usize = (1 << 24) - 1;

/// Writes FLAC at 16 or 24 bits per sample.
pub struct FlacEncoder {
    out: BufWriter<File>,
    config: flacenc::error::Verified<flacenc::config::Encoder>,
    stream_info: StreamInfo,
    frame_buf: FrameBuf,
    context: Context,
    bits: u32,
    channels: usize,
    block: Vec<i32>,
    frame_number: usize,
    sink: MemSink<u8>,
    /// Whether metadata blocks follow STREAMINFO (which then is not the last one).
    more_blocks: bool,
}

impl std::fmt::Debug for FlacEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlacEncoder")
            .field("bits", &self.bits)
            .field("channels", &self.channels)
            .finish_non_exhaustive()
    }
}

fn flac_error(e: impl std::fmt::Display) -> MediaError {
    MediaError::Processing(format!("flac: {e}"))
}

impl FlacEncoder {
    /// Creates `path` for `channels` channels (1 to 8) at `sample_rate` Hz with `bits` (16 or
    /// 24) bits per sample, and `tags` in its metadata.
    pub fn create(
        path: &Path,
        sample_rate: u32,
        channels: u16,
        bits: u32,
        tags: &Tags,
    ) -> Result<Self, MediaError> {
        let channels = usize::from(channels);
        if !(1..=8).contains(&channels) {
            return Err(MediaError::InvalidOptions(format!(
                "FLAC holds 1 to 8 channels, not {channels}"
            )));
        }
        if bits != 16 && bits != 24 {
            return Err(MediaError::InvalidOptions(format!(
                "FLAC output is 16 or 24 bits, not {bits}"
            )));
        }
        let stream_info =
            StreamInfo::new(sample_rate as usize, channels, bits as usize).map_err(|_| {
                MediaError::InvalidOptions(format!("FLAC cannot store {sample_rate} Hz audio"))
            })?;
        let mut config = flacenc::config::Encoder::default();
        config.block_size = BLOCK_SIZE;
        config.multithread = false;
        let config = config.into_verified().map_err(|(_, e)| flac_error(e))?;
        let frame_buf = FrameBuf::with_size(channels, BLOCK_SIZE).map_err(flac_error)?;
        let file = File::create(path).map_err(write_error)?;
        let mut encoder = FlacEncoder {
            out: BufWriter::new(file),
            config,
            stream_info,
            frame_buf,
            context: Context::new(bits as usize, channels),
            bits,
            channels,
            block: Vec::with_capacity(BLOCK_SIZE * channels),
            frame_number: 0,
            sink: MemSink::new(),
            more_blocks: false,
        };
        let mut blocks: Vec<(u8, Vec<u8>)> = Vec::new();
        if !tags.is_empty() {
            blocks.push((4, vorbis_comment_block("audiomill", tags, &[])));
        }
        if let Some(cover) = &tags.cover {
            let picture = flac_picture(cover);
            if picture.len() <= MAX_BLOCK_BYTES {
                blocks.push((6, picture));
            } else {
                tracing::warn!(bytes = picture.len(), "cover too large for a FLAC block");
            }
        }
        encoder.more_blocks = !blocks.is_empty();
        // Placeholder STREAMINFO, rewritten by `finish`.
        encoder.write_header()?;
        let count = blocks.len();
        for (i, (kind, body)) in blocks.into_iter().enumerate() {
            let last = if i + 1 == count { 0x80 } else { 0 };
            let len = (body.len() as u32).to_be_bytes();
            encoder
                .out
                .write_all(&[last | kind, len[1], len[2], len[3]])
                .map_err(write_error)?;
            encoder.out.write_all(&body).map_err(write_error)?;
        }
        Ok(encoder)
    }

    fn write_header(&mut self) -> Result<(), MediaError> {
        let mut header = Vec::with_capacity(42);
        header.extend_from_slice(b"fLaC");
        // Metadata block header: type 0 (STREAMINFO), 34 bytes, last unless tags follow.
        let last = if self.more_blocks { 0 } else { 0x80 };
        header.extend_from_slice(&[last, 0, 0, 34]);
        self.sink.clear();
        self.stream_info.write(&mut self.sink).map_err(flac_error)?;
        header.extend_from_slice(self.sink.as_slice());
        self.out.write_all(&header).map_err(write_error)
    }

    fn encode_block(&mut self) -> Result<(), MediaError> {
        if self.block.is_empty() {
            return Ok(());
        }
        self.frame_buf
            .fill_interleaved(&self.block)
            .map_err(flac_error)?;
        self.context
            .fill_interleaved(&self.block)
            .map_err(flac_error)?;
        let frame = flacenc::encode_fixed_size_frame(
            &self.config,
            &self.frame_buf,
            self.frame_number,
            &self.stream_info,
        )
        .map_err(flac_error)?;
        self.stream_info.update_frame_info(&frame);
        self.sink.clear();
        frame.write(&mut self.sink).map_err(flac_error)?;
        self.out
            .write_all(self.sink.as_slice())
            .map_err(write_error)?;
        self.frame_number += 1;
        self.block.clear();
        Ok(())
    }
}

impl Encoder for FlacEncoder {
    fn write(&mut self, frames: &[f32]) -> Result<(), MediaError> {
        let block_samples = BLOCK_SIZE * self.channels;
        for &sample in frames {
            self.block.push(to_int(sample, self.bits));
            if self.block.len() == block_samples {
                self.encode_block()?;
            }
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<(), MediaError> {
        // A final partial block (whole frames only).
        let whole = self.block.len() - self.block.len() % self.channels;
        self.block.truncate(whole);
        if !self.block.is_empty() {
            self.frame_buf.resize(self.block.len() / self.channels);
            self.encode_block()?;
        }
        self.stream_info.set_md5_digest(&self.context.md5_digest());
        self.stream_info
            .set_total_samples(self.context.total_samples());
        // A fixed-block-size stream declares its nominal block size (the last block may be
        // shorter), as the reference encoder does.
        self.stream_info
            .set_block_sizes(BLOCK_SIZE, BLOCK_SIZE)
            .map_err(flac_error)?;
        self.out.seek(SeekFrom::Start(0)).map_err(write_error)?;
        self.write_header()?;
        self.out.flush().map_err(write_error)
    }
}
