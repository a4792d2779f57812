//! Level and loudness measurement: sample peak, RMS, and EBU R128 / ITU-R BS.1770-4
//! loudness (integrated, range, true peak) through the `ebur128` crate.

use crate::channels::positions;
use crate::MediaError;
use ebur128::{Channel, EbuR128, Mode};
use symphonia::core::audio::Channels;

/// Shortest input for which a loudness range is defined (one 3 s short-term block).
const MIN_LRA_SECS: f64 = 3.0;

/// Levels of a whole signal. `None` means minus infinity (digital silence) or not measurable
/// (e.g. integrated loudness of less than 400 ms of audio).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Levels {
    /// Highest absolute sample value over all channels, in dBFS.
    pub sample_peak_dbfs: Option<f64>,
    /// RMS over all samples of all channels, in dBFS (a full-scale sine is −3.01 dBFS).
    pub rms_dbfs: Option<f64>,
    /// Integrated loudness (gated), in LUFS.
    pub integrated_lufs: Option<f64>,
    /// Loudness range, in LU.
    pub loudness_range_lu: Option<f64>,
    /// Highest true peak over all channels (4× oversampled or more), in dBTP.
    pub true_peak_dbtp: Option<f64>,
}

/// Accumulates levels chunk by chunk, in bounded memory.
pub struct LoudnessMeter {
    ebu: EbuR128,
    channels: usize,
    rate: u32,
    peak: f32,
    sum_squares: f64,
    samples: u64,
}

impl std::fmt::Debug for LoudnessMeter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoudnessMeter")
            .field("channels", &self.channels)
            .field("rate", &self.rate)
            .field("samples", &self.samples)
            .finish_non_exhaustive()
    }
}

fn ebu_error(e: ebur128::Error) -> MediaError {
    MediaError::Processing(format!("loudness meter: {e:?}"))
}

/// BS.1770 weighting of a speaker: surrounds count +1.5 dB, the LFE not at all, the rest 1.0.
fn ebu_channel(position: Channels) -> Channel {
    match position {
        p if p == Channels::FRONT_LEFT => Channel::Left,
        p if p == Channels::FRONT_RIGHT => Channel::Right,
        p if p == Channels::FRONT_CENTRE => Channel::Center,
        p if p == Channels::LFE1 || p == Channels::LFE2 => Channel::Unused,
        p if p == Channels::REAR_LEFT || p == Channels::SIDE_LEFT => Channel::LeftSurround,
        p if p == Channels::REAR_RIGHT || p == Channels::SIDE_RIGHT => Channel::RightSurround,
        _ => Channel::Center,
    }
}

impl LoudnessMeter {
    /// A meter for interleaved audio of `channels` channels at `rate` Hz.
    pub fn new(channels: u16, rate: u32) -> Result<Self, MediaError> {
        Self::with_layout(channels, rate, None)
    }

    pub(crate) fn with_layout(
        channels: u16,
        rate: u32,
        layout: Option<Channels>,
    ) -> Result<Self, MediaError> {
        let count = usize::from(channels);
        let mode = Mode::I | Mode::LRA | Mode::TRUE_PEAK | Mode::SAMPLE_PEAK;
        let mut ebu = EbuR128::new(u32::from(channels), rate, mode).map_err(|_| {
            MediaError::unsupported(format!(
                "cannot measure loudness of {channels} channels at {rate} Hz"
            ))
        })?;
        if count > 1 {
            let map: Vec<Channel> = positions(count, layout)
                .into_iter()
                .map(ebu_channel)
                .collect();
            ebu.set_channel_map(&map).map_err(ebu_error)?;
        }
        Ok(LoudnessMeter {
            ebu,
            channels: count,
            rate,
            peak: 0.0,
            sum_squares: 0.0,
            samples: 0,
        })
    }

    /// Adds interleaved frames.
    pub fn add(&mut self, frames: &[f32]) -> Result<(), MediaError> {
        let frames = &frames[..frames.len() - frames.len() % self.channels];
        self.ebu.add_frames_f32(frames).map_err(ebu_error)?;
        let mut squares = 0.0f64;
        let mut peak = self.peak;
        for &x in frames {
            peak = peak.max(x.abs());
            squares += f64::from(x) * f64::from(x);
        }
        self.peak = peak;
        self.sum_squares += squares;
        self.samples += frames.len() as u64;
        Ok(())
    }

    /// The levels of everything added so far.
    pub fn levels(&self) -> Levels {
        let db = |linear: f64| (linear > 0.0 && linear.is_finite()).then(|| 20.0 * linear.log10());
        let finite = |x: f64| x.is_finite().then_some(x);
        let integrated = self.ebu.loudness_global().ok().and_then(finite);
        let duration = self.samples as f64 / self.channels as f64 / f64::from(self.rate);
        let range = self
            .ebu
            .loudness_range()
            .ok()
            .and_then(finite)
            .filter(|_| integrated.is_some() && duration >= MIN_LRA_SECS);
        let true_peak = (0..self.channels as u32)
            .filter_map(|c| self.ebu.true_peak(c).ok())
            .fold(0.0f64, f64::max);
        let rms = if self.samples > 0 {
            (self.sum_squares / self.samples as f64).sqrt()
        } else {
            0.0
        };
        Levels {
            sample_peak_dbfs: db(f64::from(self.peak)),
            rms_dbfs: db(rms),
            integrated_lufs: integrated,
            loudness_range_lu: range,
            true_peak_dbtp: db(true_peak),
        }
    }
}
