//! MP3 through LAME (`mp3lame-encoder`, which builds LAME from source): constant bit rate, or
//! VBR (LAME's default `mtrh` mode, `-V 0` to `-V 9`), LAME algorithm quality 5 ("good", LAME's
//! own default speed/quality trade-off), with a LAME/Info (VBR: Xing) tag so decoders know the
//! exact length and the encoder delay to trim (gapless playback). Tags and the cover go in an
//! ID3v2.4 tag ahead of the audio.

use super::{write_error, Encoder};
use crate::tags::{id3v2, Tags};
use crate::MediaError;
use audiomill_core::operation::MP3_SAMPLE_RATES;
use mp3lame_encoder::{Builder, FlushGap, InterleavedPcm, Mode, MonoPcm, Quality};
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::Path;

/// Default bit rate in kbit/s.
pub const DEFAULT_BITRATE_KBPS: u32 = 192;
/// Highest bit rate MPEG-2 layer III (16, 22.05 and 24 kHz) can carry.
const MPEG2_MAX_KBPS: u32 = 160;
/// Frames handed to LAME per call.
const FRAMES_PER_CALL: usize = 8192;

/// The sample rate an MP3 of `rate` Hz audio is written at: `rate` itself when MP3 carries it
/// (16, 22.05, 24, 32, 44.1 or 48 kHz), else the nearest of those (96 kHz → 48 kHz,
/// 8 kHz → 16 kHz; ties go to the higher rate). MPEG-2.5 rates (8–12 kHz) are not written:
/// many players handle them poorly.
pub fn mp3_output_rate(rate: u32) -> u32 {
    MP3_SAMPLE_RATES
        .iter()
        .copied()
        .min_by_key(|r| (r.abs_diff(rate), u32::MAX - r))
        .unwrap_or(44_100)
}

/// How the bit rate is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mp3Rate {
    /// Constant bit rate, in kbit/s.
    Cbr(u32),
    /// Variable bit rate at LAME VBR quality 0 (best, largest) to 9.
    Vbr(u8),
}

/// Writes MP3.
pub struct Mp3Encoder {
    lame: mp3lame_encoder::Encoder,
    out: BufWriter<File>,
    /// Where the audio (and the LAME tag frame) starts, after the ID3v2 tag.
    audio_start: u64,
    channels: usize,
    buffer: Vec<u8>,
    clipped: Vec<f32>,
}

impl std::fmt::Debug for Mp3Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mp3Encoder")
            .field("channels", &self.channels)
            .finish_non_exhaustive()
    }
}

fn lame_error(e: impl std::fmt::Debug) -> MediaError {
    MediaError::Processing(format!("lame: {e:?}"))
}

impl Mp3Encoder {
    /// Creates `path` for 1 or 2 channels at `sample_rate` Hz (one of the MP3 rates), at
    /// `rate` (CBR bit rates are capped at 160 kbit/s for the MPEG-2 rates below 32 kHz),
    /// with `tags` in an ID3v2.4 tag.
    pub fn create(
        path: &Path,
        sample_rate: u32,
        channels: u16,
        rate: Mp3Rate,
        tags: &Tags,
    ) -> Result<Self, MediaError> {
        if !(1..=2).contains(&channels) {
            return Err(MediaError::InvalidOptions(format!(
                "MP3 holds 1 or 2 channels, not {channels}"
            )));
        }
        if !MP3_SAMPLE_RATES.contains(&sample_rate) {
            return Err(MediaError::InvalidOptions(format!(
                "MP3 cannot be written at {sample_rate} Hz"
            )));
        }
        let mut builder = Builder::new().ok_or_else(|| lame_error("cannot allocate"))?;
        builder
            .set_num_channels(channels as u8)
            .map_err(lame_error)?;
        builder.set_sample_rate(sample_rate).map_err(lame_error)?;
        // LAME must not resample on its own: the engine already chose a writable rate.
        builder
            .set_output_sample_rate(std::num::NonZeroU32::new(sample_rate))
            .map_err(lame_error)?;
        builder
            .set_mode(if channels == 1 {
                Mode::Mono
            } else {
                Mode::JointStereo
            })
            .map_err(lame_error)?;
        builder.set_quality(Quality::Good).map_err(lame_error)?;
        builder.set_to_write_vbr_tag(true).map_err(lame_error)?;
        match rate {
            Mp3Rate::Cbr(kbps) => {
                let kbps = if sample_rate < 32_000 {
                    kbps.min(MPEG2_MAX_KBPS)
                } else {
                    kbps
                };
                builder
                    .set_vbr_mode(mp3lame_encoder::VbrMode::Off)
                    .map_err(lame_error)?;
                // The wrapper's `Bitrate` enum lacks some valid rates (56 kbit/s); LAME takes
                // any number and snaps it to the nearest legal one.
                // SAFETY: the pointer is the builder's live LAME context, used on this thread
                // only.
                let status = unsafe {
                    mp3lame_encoder::ffi::lame_set_brate(builder.as_ptr(), kbps.min(320) as i32)
                };
                if status != 0 {
                    return Err(lame_error(format!("bit rate {kbps} refused")));
                }
            }
            Mp3Rate::Vbr(quality) => {
                if quality > 9 {
                    return Err(MediaError::InvalidOptions(format!(
                        "MP3 VBR quality is 0 to 9, not {quality}"
                    )));
                }
                builder
                    .set_vbr_mode(mp3lame_encoder::VbrMode::Mtrh)
                    .map_err(lame_error)?;
                // SAFETY: as above.
                let status = unsafe {
                    mp3lame_encoder::ffi::lame_set_VBR_q(builder.as_ptr(), i32::from(quality))
                };
                if status != 0 {
                    return Err(lame_error(format!("VBR quality {quality} refused")));
                }
            }
        }
        let lame = builder.build().map_err(lame_error)?;
        let file = File::create(path).map_err(write_error)?;
        let mut out = BufWriter::new(file);
        let id3 = id3v2(tags);
        out.write_all(&id3).map_err(write_error)?;
        Ok(Mp3Encoder {
            lame,
            out,
            audio_start: id3.len() as u64,
            channels: usize::from(channels),
            buffer: Vec::new(),
            clipped: Vec::new(),
        })
    }
}

impl Encoder for Mp3Encoder {
    fn write(&mut self, frames: &[f32]) -> Result<(), MediaError> {
        let frames = &frames[..frames.len() - frames.len() % self.channels];
        for piece in frames.chunks(FRAMES_PER_CALL * self.channels) {
            // LAME takes floats in [-1, 1]; out-of-range values would wrap in its integer
            // conversion, so clip first.
            self.clipped.clear();
            self.clipped
                .extend(piece.iter().map(|x| x.clamp(-1.0, 1.0)));
            let (clipped, count) = (&self.clipped, piece.len() / self.channels);
            self.buffer.clear();
            self.buffer
                .reserve(mp3lame_encoder::max_required_buffer_size(count));
            let written = if self.channels == 1 {
                self.lame.encode_to_vec(MonoPcm(clipped), &mut self.buffer)
            } else {
                self.lame
                    .encode_to_vec(InterleavedPcm(clipped), &mut self.buffer)
            }
            .map_err(lame_error)?;
            self.out
                .write_all(&self.buffer[..written])
                .map_err(write_error)?;
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<(), MediaError> {
        self.buffer.clear();
        self.buffer.reserve(16 * 1024);
        let written = self
            .lame
            .flush_to_vec::<FlushGap>(&mut self.buffer)
            .map_err(lame_error)?;
        self.out
            .write_all(&self.buffer[..written])
            .map_err(write_error)?;
        // LAME wrote a blank first frame to hold the LAME/Info tag; fill it in now that the
        // frame count, delay and padding are known.
        let mut tag = Vec::with_capacity(self.lame.lame_tag_size().max(1));
        if self.lame.lame_tag_encode_to_vec(&mut tag).is_some() {
            self.out
                .seek(SeekFrom::Start(self.audio_start))
                .map_err(write_error)?;
            self.out.write_all(&tag).map_err(write_error)?;
        }
        self.out.flush().map_err(write_error)
    }
}

#[cfg(test)]
mod tests {
    use super::mp3_output_rate;

    #[test]
    fn unwritable_rates_go_to_the_nearest_mp3_rate() {
        assert_eq!(mp3_output_rate(44_100), 44_100);
        assert_eq!(mp3_output_rate(96_000), 48_000);
        assert_eq!(mp3_output_rate(192_000), 48_000);
        assert_eq!(mp3_output_rate(8_000), 16_000);
        assert_eq!(mp3_output_rate(11_025), 16_000);
        assert_eq!(mp3_output_rate(88_200), 48_000);
    }
}
