//! Opus in Ogg (RFC 7845) through libopus (the `opus` crate over `opusic-sys`, which builds the
//! bundled libopus with cmake and links it statically).
//!
//! 48 kHz only (the engine resamples first), 1 or 2 channels (mapping family 0), 20 ms frames,
//! application "audio", VBR at the requested bit rate, complexity 10. The Ogg stream is written
//! here ([`super::ogg`]): `OpusHead` with the encoder's lookahead as pre-skip, `OpusTags` with
//! the vendor string, tags and cover, then the audio pages. The input is padded with silence
//! to whole frames covering the lookahead, and the last page's granule position cuts the
//! padding off, so decoders return exactly the input's length.

use super::ogg::OggWriter;
use super::{write_error, Encoder};
use crate::tags::{flac_picture, vorbis_comment_block, Tags};
use crate::MediaError;
use base64::Engine as _;
use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

/// Default bit rate in kbit/s.
pub const DEFAULT_BITRATE_KBPS: u32 = 128;
/// Samples per channel in a 20 ms frame at 48 kHz.
const FRAME: usize = 960;
/// Room for one encoded frame (a 20 ms frame is at most 1275 bytes per stream).
const MAX_PACKET_BYTES: usize = 4000;
/// The Ogg stream's serial number. Any value will do; a fixed one keeps outputs reproducible.
const SERIAL: u32 = 0x6175_646d;

/// Writes Ogg Opus.
pub struct OpusEncoder {
    opus: opus::Encoder,
    ogg: OggWriter<BufWriter<File>>,
    channels: usize,
    pre_skip: u64,
    /// Interleaved samples waiting for a whole frame.
    pending: Vec<f32>,
    packet: Vec<u8>,
    /// Frames (per channel) received.
    input_frames: u64,
    /// Samples (per channel) encoded, padding included.
    encoded: u64,
}

impl std::fmt::Debug for OpusEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusEncoder")
            .field("channels", &self.channels)
            .field("pre_skip", &self.pre_skip)
            .finish_non_exhaustive()
    }
}

fn opus_error(e: opus::Error) -> MediaError {
    MediaError::Processing(format!("opus: {e}"))
}

impl OpusEncoder {
    /// Creates `path` for `channels` (1 or 2) channels at 48 kHz, `kbps` kbit/s (6 to 510),
    /// with `tags` in the `OpusTags` header.
    pub fn create(
        path: &Path,
        sample_rate: u32,
        channels: u16,
        kbps: u32,
        tags: &Tags,
    ) -> Result<Self, MediaError> {
        let mode = match channels {
            1 => opus::Channels::Mono,
            2 => opus::Channels::Stereo,
            _ => {
                return Err(MediaError::InvalidOptions(format!(
                    "Opus output holds 1 or 2 channels, not {channels}"
                )))
            }
        };
        if sample_rate != 48_000 {
            return Err(MediaError::InvalidOptions(format!(
                "Opus is written at 48000 Hz, not {sample_rate}"
            )));
        }
        if !(6..=510).contains(&kbps) {
            return Err(MediaError::InvalidOptions(format!(
                "Opus bit rates are 6 to 510 kbit/s, not {kbps}"
            )));
        }
        let mut opus =
            opus::Encoder::new(48_000, mode, opus::Application::Audio).map_err(opus_error)?;
        opus.set_bitrate(opus::Bitrate::Bits(kbps as i32 * 1000))
            .map_err(opus_error)?;
        opus.set_vbr(true).map_err(opus_error)?;
        opus.set_complexity(10).map_err(opus_error)?;
        let pre_skip = u64::try_from(opus.get_lookahead().map_err(opus_error)?).unwrap_or(0);
        let file = File::create(path).map_err(write_error)?;
        let mut ogg = OggWriter::new(BufWriter::new(file), SERIAL);
        // Identification header, alone on the first page.
        let mut head = Vec::with_capacity(19);
        head.extend_from_slice(b"OpusHead");
        head.push(1); // version
        head.push(channels as u8);
        head.extend_from_slice(&(pre_skip as u16).to_le_bytes());
        head.extend_from_slice(&sample_rate.to_le_bytes()); // the encoder's input rate
        head.extend_from_slice(&0i16.to_le_bytes()); // output gain
        head.push(0); // mapping family 0: mono or stereo
        ogg.write_packet(&head, 0)?;
        ogg.flush_page()?;
        // Comment header, on its own page(s).
        ogg.write_packet(&opus_tags(tags), 0)?;
        ogg.flush_page()?;
        Ok(OpusEncoder {
            opus,
            ogg,
            channels: usize::from(channels),
            pre_skip,
            pending: Vec::with_capacity(FRAME * usize::from(channels)),
            packet: vec![0; MAX_PACKET_BYTES],
            input_frames: 0,
            encoded: 0,
        })
    }

    /// Encodes the full frame in `pending` and queues its packet, ending at granule position
    /// `granule` (or at the running count when `None`).
    fn encode_pending(&mut self, granule: Option<u64>) -> Result<(), MediaError> {
        let len = self
            .opus
            .encode_float(&self.pending, &mut self.packet)
            .map_err(opus_error)?;
        self.pending.clear();
        self.encoded += FRAME as u64;
        let granule = granule.unwrap_or(self.encoded);
        self.ogg.write_packet(&self.packet[..len], granule as i64)
    }
}

/// The `OpusTags` packet: vendor string (libopus's version), tags as Vorbis comments, the cover
/// as a base64 `METADATA_BLOCK_PICTURE`.
fn opus_tags(tags: &Tags) -> Vec<u8> {
    let extra: Vec<String> = tags
        .cover
        .iter()
        .map(|cover| {
            let block = base64::engine::general_purpose::STANDARD.encode(flac_picture(cover));
            format!("METADATA_BLOCK_PICTURE={block}")
        })
        .collect();
    let mut packet = b"OpusTags".to_vec();
    packet.extend_from_slice(&vorbis_comment_block(opus::version(), tags, &extra));
    packet
}

impl Encoder for OpusEncoder {
    fn write(&mut self, frames: &[f32]) -> Result<(), MediaError> {
        let frames = &frames[..frames.len() - frames.len() % self.channels];
        self.input_frames += (frames.len() / self.channels) as u64;
        let whole = FRAME * self.channels;
        for &sample in frames {
            // Clipped like the other encoders; NaN becomes silence.
            let sample = if sample.is_nan() {
                0.0
            } else {
                sample.clamp(-1.0, 1.0)
            };
            self.pending.push(sample);
            if self.pending.len() == whole {
                self.encode_pending(None)?;
            }
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<(), MediaError> {
        // Pad with silence until the encoded samples cover the input plus the lookahead; the
        // last page's granule position (pre-skip + input length) trims the rest.
        let end = self.pre_skip + self.input_frames;
        let whole = FRAME * self.channels;
        loop {
            self.pending.resize(whole, 0.0);
            let last = self.encoded + FRAME as u64 >= end;
            self.encode_pending(last.then_some(end))?;
            if last {
                break;
            }
        }
        self.ogg.finish()?;
        Ok(())
    }
}
