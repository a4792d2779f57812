//! The edits of `convert`, as streaming stages over interleaved `f32` chunks at the input
//! rate, after the channel map (channel picking is a [`crate::ChannelMixer`] matrix):
//!
//! trim (`start`, `end`: [`trim`]) → trim silence ([`silence`]) → gain, normalization and
//! fades (one envelope: [`fade`]) → then, outside this module, resample and encode.
//!
//! Stages push their output into the next through a [`Sink`] callback, so that a stage that
//! releases held-back audio (a pause that turned out not to be the trailing silence, the
//! frames of a fade-out once the end is known) hands it on in bounded pieces. Lookahead is
//! held in a [`spill::Fifo`]: a few MiB in memory, the rest in an unlinked temporary file,
//! never the whole track.
//!
//! Normalization ([`normalize`]) runs the same trim and silence stages in a first pass that
//! feeds a loudness meter; that pass also yields the exact range of kept frames, so the second
//! pass trims to it directly and knows the length for the fade-out without holding anything
//! back.

pub(crate) mod fade;
pub(crate) mod normalize;
pub(crate) mod silence;
pub(crate) mod spill;
pub(crate) mod trim;

use crate::MediaError;
use audiomill_core::{ConvertOptions, Normalize};
use fade::Envelope;
use silence::SilenceTrim;
use spill::Fifo;
use std::path::{Path, PathBuf};
use trim::Trim;

/// Where a stage sends its output.
pub(crate) type Sink<'a> = dyn FnMut(&[f32]) -> Result<(), MediaError> + 'a;

/// The edits of a conversion, in frames at the input rate.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EditPlan {
    /// First frame kept.
    pub start: u64,
    /// Frame at which keeping stops; `u64::MAX`: the end of the input.
    pub end: u64,
    /// Threshold of silence trimming, in dBFS.
    pub silence_db: Option<f64>,
    /// Gain, in dB.
    pub gain_db: f64,
    pub normalize: Option<Normalize>,
    pub fade_in: u64,
    pub fade_out: u64,
}

/// Frames in `secs` seconds at `rate` Hz, rounded to nearest.
fn frames(secs: f64, rate: u32) -> u64 {
    (secs * f64::from(rate)).round() as u64
}

impl EditPlan {
    /// The edits `options` ask for, on input at `rate` Hz.
    pub(crate) fn new(options: &ConvertOptions, rate: u32) -> Self {
        let start = options.start.map_or(0, |s| frames(s, rate));
        EditPlan {
            start,
            // `end` is after `start` (validated), but both may round to the same frame: keep
            // at least that one.
            end: options
                .end
                .map_or(u64::MAX, |e| frames(e, rate).max(start + 1)),
            silence_db: options.trim_silence.map(|t| t.threshold_db),
            gain_db: options.gain_db.unwrap_or(0.0),
            normalize: options.normalize,
            fade_in: options.fade_in.map_or(0, |f| frames(f, rate)),
            fade_out: options.fade_out.map_or(0, |f| frames(f, rate)),
        }
    }
}

/// The error for a `start` at or past the end of the input.
pub(crate) fn start_after_end() -> MediaError {
    MediaError::InvalidOptions("start is after the end of the input".into())
}

/// The edit stages of one pass: trim → silence trim → envelope (gain and fades).
#[derive(Debug)]
pub(crate) struct Edits {
    channels: usize,
    trim: Trim,
    silence: Option<SilenceTrim>,
    silence_db: Option<f64>,
    /// `None` in a measuring pass.
    envelope: Option<Envelope>,
    /// Frames out of trim and silence trim.
    kept: u64,
}

impl Edits {
    /// The stages for `plan` on `channels`-channel audio. `total` is the number of frames the
    /// trims keep, when known in advance (then the fades need no lookahead); `gain` is linear.
    /// Lookahead spills to files in `spill_dir`.
    pub(crate) fn new(
        channels: usize,
        plan: &EditPlan,
        gain: f32,
        total: Option<u64>,
        spill_dir: &Path,
    ) -> Self {
        let mut edits = Self::measuring(channels, plan, spill_dir);
        let dir = spill_dir.to_path_buf();
        edits.envelope = Some(Envelope::new(
            channels,
            gain,
            plan.fade_in,
            plan.fade_out,
            total,
            move || Fifo::new(channels, &dir),
        ));
        edits
    }

    /// The trim stages only, for a pass that measures what the edits keep.
    pub(crate) fn measuring(channels: usize, plan: &EditPlan, spill_dir: &Path) -> Self {
        let dir: PathBuf = spill_dir.to_path_buf();
        Edits {
            channels,
            trim: Trim::new(channels, plan.start, plan.end),
            silence: plan
                .silence_db
                .map(|db| SilenceTrim::new(channels, db, Fifo::new(channels, &dir))),
            silence_db: plan.silence_db,
            envelope: None,
            kept: 0,
        }
    }

    /// Feeds the next decoded (and channel-mapped) frames; the edited audio goes to `sink`.
    pub(crate) fn process(&mut self, frames: &[f32], sink: &mut Sink) -> Result<(), MediaError> {
        let frames = self.trim.apply(frames);
        if frames.is_empty() {
            return Ok(());
        }
        let Edits {
            channels,
            silence,
            envelope,
            kept,
            ..
        } = self;
        let mut next = |x: &[f32]| -> Result<(), MediaError> {
            *kept += (x.len() / *channels) as u64;
            match envelope.as_mut() {
                Some(envelope) => envelope.process(x, sink),
                None => sink(x),
            }
        };
        match silence.as_mut() {
            Some(silence) => silence.process(frames, &mut next),
            None => next(frames),
        }
    }

    /// Whether the trim's end has been reached: the rest of the input need not be decoded.
    pub(crate) fn is_done(&self) -> bool {
        self.trim.is_done()
    }

    /// The frame after which decoding can stop (`u64::MAX`: none), for progress.
    pub(crate) fn end(&self) -> u64 {
        self.trim.end()
    }

    /// First kept frame of the input (after trim and leading silence).
    pub(crate) fn kept_start(&self) -> u64 {
        self.trim.start() + self.silence.as_ref().map_or(0, |s| s.leading_frames())
    }

    /// Frames kept by the trims (final once [`Edits::finish`] has run).
    pub(crate) fn kept_frames(&self) -> u64 {
        self.kept
    }

    /// Ends the stream: drops the trailing silence, sends what the envelope held back.
    /// Fails if nothing was kept: `start` past the end of the input, or all silence.
    pub(crate) fn finish(&mut self, sink: &mut Sink) -> Result<(), MediaError> {
        if self.trim.position() <= self.trim.start() {
            return Err(start_after_end());
        }
        if let Some(silence) = self.silence.as_mut() {
            silence.finish();
        }
        if self.kept == 0 {
            return Err(MediaError::InvalidOptions(match self.silence_db {
                Some(db) => format!(
                    "the audio is all silence (no sample above {db} dBFS): trim_silence would leave nothing"
                ),
                None => "the edits leave no audio".into(),
            }));
        }
        if let Some(envelope) = self.envelope.as_mut() {
            envelope.finish(sink)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use audiomill_core::AudioFormat;

    #[test]
    fn plan_counts_frames_at_the_input_rate() {
        let options = ConvertOptions {
            start: Some(1.5),
            end: Some(2.25),
            fade_in: Some(0.5),
            fade_out: Some(0.0001),
            gain_db: Some(-3.0),
            ..ConvertOptions::to_format(AudioFormat::Wav)
        };
        let plan = EditPlan::new(&options, 8_000);
        assert_eq!(
            (plan.start, plan.end, plan.fade_in, plan.fade_out),
            (12_000, 18_000, 4_000, 1)
        );
        assert_eq!(plan.gain_db, -3.0);
        // Distinct seconds that round to the same frame still keep one frame.
        let options = ConvertOptions {
            start: Some(0.00001),
            end: Some(0.00002),
            ..ConvertOptions::to_format(AudioFormat::Wav)
        };
        let plan = EditPlan::new(&options, 8_000);
        assert_eq!((plan.start, plan.end), (0, 1));
    }
}
