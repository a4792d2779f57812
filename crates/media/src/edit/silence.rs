//! Removal of leading and trailing silence, streaming.

use super::spill::Fifo;
use super::Sink;
use crate::MediaError;

/// Drops the frames before the first *loud* frame and after the last one. A frame is loud
/// when any of its samples has an absolute value above the threshold (`10^(dB/20)`), so the
/// kept audio runs from the first loud frame to the last, inclusive.
///
/// Leading silence is simply dropped. Trailing silence cannot be told from a pause before the
/// stream has ended, so the current run of silent frames is held back in a [`Fifo`] (memory
/// up to a few MiB, then a temporary file: bounded memory, exact samples) and released when a
/// loud frame follows, or discarded at the end.
#[derive(Debug)]
pub(crate) struct SilenceTrim {
    channels: usize,
    threshold: f32,
    started: bool,
    leading: u64,
    held: Fifo,
    scratch: Vec<f32>,
}

impl SilenceTrim {
    pub(crate) fn new(channels: usize, threshold_db: f64, held: Fifo) -> Self {
        SilenceTrim {
            channels,
            threshold: 10f64.powf(threshold_db / 20.0) as f32,
            started: false,
            leading: 0,
            held,
            scratch: Vec::new(),
        }
    }

    fn is_loud(&self, frame: &[f32]) -> bool {
        frame.iter().any(|x| x.abs() > self.threshold)
    }

    /// Frames dropped before the first loud frame.
    pub(crate) fn leading_frames(&self) -> u64 {
        self.leading
    }

    /// Feeds interleaved frames; kept frames go to `sink`, in order.
    pub(crate) fn process(&mut self, frames: &[f32], sink: &mut Sink) -> Result<(), MediaError> {
        let mut frames = frames;
        if !self.started {
            match frames
                .chunks_exact(self.channels)
                .position(|f| self.is_loud(f))
            {
                None => {
                    self.leading += (frames.len() / self.channels) as u64;
                    return Ok(());
                }
                Some(first) => {
                    self.leading += first as u64;
                    self.started = true;
                    frames = &frames[first * self.channels..];
                }
            }
        }
        match frames
            .chunks_exact(self.channels)
            .rposition(|f| self.is_loud(f))
        {
            None => self.held.push(frames),
            Some(last) => {
                // The held run turned out to be a pause: release it first.
                loop {
                    self.scratch.clear();
                    if self.held.pop(u64::MAX, &mut self.scratch)? == 0 {
                        break;
                    }
                    sink(&self.scratch)?;
                }
                let split = (last + 1) * self.channels;
                sink(&frames[..split])?;
                self.held.push(&frames[split..])
            }
        }
    }

    /// Ends the stream: the held trailing silence is dropped.
    pub(crate) fn finish(&mut self) {
        self.held.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[f32], channels: usize, piece: usize, cap: usize) -> (Vec<f32>, u64) {
        let dir = tempfile::tempdir().unwrap();
        let fifo = Fifo::with_memory_cap(channels, dir.path(), cap);
        let mut trim = SilenceTrim::new(channels, -40.0, fifo);
        let mut out = Vec::new();
        for chunk in input.chunks(piece) {
            trim.process(chunk, &mut |x| {
                out.extend_from_slice(x);
                Ok(())
            })
            .unwrap();
        }
        trim.finish();
        (out, trim.leading_frames())
    }

    #[test]
    fn keeps_first_to_last_loud_frame_with_pauses() {
        // -40 dB is 0.01. Stereo: loud frames are those with any channel above it.
        let mut input = vec![0.0f32; 2 * 1000];
        input[2 * 100 + 1] = 0.02; // first loud frame: 100 (right channel)
        input[2 * 400] = -0.5; // after a long pause of quiet noise
        for i in 101..400 {
            input[2 * i] = 0.005;
        }
        input[2 * 700] = 0.011; // last loud frame: 700
        for i in 701..1000 {
            input[2 * i + 1] = -0.009;
        }
        for (piece, cap) in [(2, 4), (64, 10), (2000, 100_000)] {
            let (out, leading) = run(&input, 2, piece, cap);
            assert_eq!(leading, 100);
            assert_eq!(out, &input[200..1402], "piece {piece}, cap {cap}");
        }
    }

    #[test]
    fn all_silence_keeps_nothing() {
        let (out, leading) = run(&[0.001; 300], 3, 30, 9);
        assert!(out.is_empty());
        assert_eq!(leading, 100);
    }
}
