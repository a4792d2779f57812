//! Gain and fades: one envelope multiplying the kept audio.

use super::spill::Fifo;
use super::Sink;
use crate::MediaError;

/// Multiplies the kept audio by a constant gain and by linear fades.
///
/// Fades are **linear in amplitude** (ffmpeg's `afade` default): over a fade-in of `F` frames,
/// frame `i` of the kept audio is multiplied by `i / F` (so the first frame is exactly 0); over
/// a fade-out, the frame `d` frames before the last one by `d / F` (so the last frame is 0).
/// A fade longer than the audio is clamped to it (the ramp spans the whole audio); a fade-in
/// and a fade-out that overlap multiply.
///
/// The fades need the length `T` of the kept audio. When it is known beforehand (the first
/// pass of normalization counted it, or a PCM header gives it exactly) frames go straight
/// through. Otherwise frames are held back in a [`Fifo`] until their factor is certain: frame
/// `i` leaves once `fade_out` later frames have arrived (so it is outside the fade-out) and
/// `fade_in` frames have arrived (so the fade-in is not clamped); the rest leaves at the end,
/// when `T` is known. Memory stays bounded (the queue spills to a file past a few MiB).
///
/// The gain is applied in `f32` without clipping: samples may exceed full scale here;
/// integer and lossy encoders clip them, 32-bit float WAV keeps them.
#[derive(Debug)]
pub(crate) struct Envelope {
    channels: usize,
    gain: f32,
    fade_in: u64,
    fade_out: u64,
    /// Frames of kept audio, when known in advance.
    total: Option<u64>,
    /// Frames received.
    seen: u64,
    /// Frames sent on (the index of the next frame to send).
    sent: u64,
    held: Option<Fifo>,
    buffer: Vec<f32>,
}

impl Envelope {
    /// An envelope of `gain` (linear) and fades of `fade_in` and `fade_out` frames over audio
    /// of `total` frames, or of a length learnt at the end, holding frames back in `held`.
    pub(crate) fn new(
        channels: usize,
        gain: f32,
        fade_in: u64,
        fade_out: u64,
        total: Option<u64>,
        held: impl FnOnce() -> Fifo,
    ) -> Self {
        let needs_queue = total.is_none() && (fade_in > 0 || fade_out > 0);
        Envelope {
            channels,
            gain,
            fade_in,
            fade_out,
            total,
            seen: 0,
            sent: 0,
            held: needs_queue.then(held),
            buffer: Vec::new(),
        }
    }

    /// Whether the envelope changes anything.
    pub(crate) fn is_identity(&self) -> bool {
        self.gain == 1.0 && self.fade_in == 0 && self.fade_out == 0
    }

    /// Multiplies `buffer` (frames from index `self.sent` on, with the audio `total` frames
    /// long) and sends it.
    fn send_buffer(&mut self, total: u64, sink: &mut Sink) -> Result<(), MediaError> {
        let frames = (self.buffer.len() / self.channels) as u64;
        let (first, past) = (self.sent, self.sent + frames);
        let fade_in = self.fade_in.min(total);
        let fade_out = self.fade_out.min(total);
        let out_from = total.saturating_sub(fade_out);
        if first >= fade_in && past <= out_from {
            if self.gain != 1.0 {
                self.buffer.iter_mut().for_each(|x| *x *= self.gain);
            }
        } else {
            let gain = f64::from(self.gain);
            for (i, frame) in (first..).zip(self.buffer.chunks_exact_mut(self.channels)) {
                let mut factor = gain;
                if i < fade_in {
                    factor *= i as f64 / fade_in as f64;
                }
                if i >= out_from {
                    // Frames after the end (a stream longer than promised) stay silent.
                    let before_end = total.saturating_sub(i + 1);
                    factor *= before_end as f64 / fade_out as f64;
                }
                let factor = factor as f32;
                frame.iter_mut().for_each(|x| *x *= factor);
            }
        }
        self.sent = past;
        sink(&self.buffer)
    }

    /// Feeds interleaved frames of the kept audio.
    pub(crate) fn process(&mut self, frames: &[f32], sink: &mut Sink) -> Result<(), MediaError> {
        if frames.is_empty() {
            return Ok(());
        }
        self.seen += (frames.len() / self.channels) as u64;
        if let Some(total) = self.total {
            if self.is_identity() {
                self.sent = self.seen;
                return sink(frames);
            }
            self.buffer.clear();
            self.buffer.extend_from_slice(frames);
            return self.send_buffer(total, sink);
        }
        let Some(held) = self.held.as_mut() else {
            // No fades: the gain alone needs no length.
            self.buffer.clear();
            self.buffer.extend_from_slice(frames);
            return self.send_buffer(u64::MAX, sink);
        };
        held.push(frames)?;
        // Frames whose factor is already certain (see the type's doc).
        let ready = if self.seen < self.fade_in {
            0
        } else {
            self.seen.saturating_sub(self.fade_out)
        };
        self.drain(ready, u64::MAX, sink)
    }

    /// Sends held frames up to index `until`, for audio `total` frames long.
    fn drain(&mut self, until: u64, total: u64, sink: &mut Sink) -> Result<(), MediaError> {
        while self.sent < until {
            self.buffer.clear();
            let Some(held) = self.held.as_mut() else {
                break;
            };
            if held.pop(until - self.sent, &mut self.buffer)? == 0 {
                break;
            }
            self.send_buffer(total, sink)?;
        }
        Ok(())
    }

    /// Ends the stream: held frames go out with the length now known. Returns the frames
    /// sent in all.
    pub(crate) fn finish(&mut self, sink: &mut Sink) -> Result<u64, MediaError> {
        if let Some(total) = self.total {
            if self.seen < total {
                tracing::warn!(
                    expected = total,
                    got = self.seen,
                    "the input ended before its declared length: the fade-out is cut short"
                );
            }
        }
        let total = self.seen;
        self.drain(total, total, sink)?;
        Ok(self.sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(
        input: &[f32],
        channels: usize,
        fades: (u64, u64),
        known: bool,
        piece: usize,
    ) -> Vec<f32> {
        let dir = tempfile::tempdir().unwrap();
        let total = known.then_some((input.len() / channels) as u64);
        let mut envelope = Envelope::new(channels, 0.5, fades.0, fades.1, total, || {
            Fifo::with_memory_cap(channels, dir.path(), 6)
        });
        let mut out = Vec::new();
        let mut sink = |x: &[f32]| {
            out.extend_from_slice(x);
            Ok(())
        };
        for chunk in input.chunks(piece) {
            envelope.process(chunk, &mut sink).unwrap();
        }
        envelope.finish(&mut sink).unwrap();
        out
    }

    #[test]
    fn linear_fades_with_gain_known_or_not() {
        let input = vec![1.0f32; 2 * 20];
        let expected: Vec<f32> = (0..20u64)
            .flat_map(|i| {
                let fade_in = if i < 4 { i as f64 / 4.0 } else { 1.0 };
                let fade_out = if i >= 15 { (19 - i) as f64 / 5.0 } else { 1.0 };
                let x = (0.5 * fade_in * fade_out) as f32;
                [x, x]
            })
            .collect();
        for known in [true, false] {
            for piece in [2, 6, 40] {
                let out = run(&input, 2, (4, 5), known, piece);
                assert_eq!(out, expected, "known {known}, piece {piece}");
            }
        }
    }

    #[test]
    fn fades_longer_than_the_audio_are_clamped() {
        let input = vec![1.0f32; 10];
        for known in [true, false] {
            let out = run(&input, 1, (100, 0), known, 3);
            let expected: Vec<f32> = (0..10).map(|i| 0.5 * i as f32 / 10.0).collect();
            assert_eq!(out, expected);
            let out = run(&input, 1, (0, 1000), known, 3);
            let expected: Vec<f32> = (0..10).map(|i| 0.5 * (9 - i) as f32 / 10.0).collect();
            assert_eq!(out, expected);
        }
    }
}
