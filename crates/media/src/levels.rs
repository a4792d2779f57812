//! Per-channel sample statistics of `analyze`: clipping, DC offset and silent stretches.
//! Everything streams chunk by chunk in a few values per channel (plus the silence list).

use serde::{Deserialize, Serialize};

/// Samples at or beyond this magnitude sit at the ceiling (full scale). 0.9999 is −0.0009 dBFS:
/// it catches `+32767/32768` of 16-bit PCM and float files clipped to exactly ±1.
pub const CLIP_LEVEL: f32 = 0.9999;

/// A run of ceiling samples counts as clipping from this many consecutive samples on.
pub const CLIP_RUN: u32 = 2;

/// Length of the RMS window of silence detection, in seconds.
pub const SILENCE_WINDOW_SECS: f64 = 0.010;

/// Most silent stretches reported; later ones are dropped.
pub const MAX_SILENCE_SEGMENTS: usize = 10_000;

/// Counts clipped samples and sums each channel for its mean (DC offset).
///
/// A sample is clipped when it is part of a run of at least [`CLIP_RUN`] consecutive samples
/// of one channel at or beyond [`CLIP_LEVEL`] with the same sign: a flattened top. A lone
/// sample at full scale (the crest of a full-scale sine, say) is not clipping; every sample of a
/// longer run counts.
#[derive(Debug, Clone)]
pub struct SampleStats {
    channels: usize,
    sums: Vec<f64>,
    frames: u64,
    /// Per channel: sign and length of the current run at the ceiling.
    runs: Vec<(bool, u32)>,
    clipped: u64,
}

impl SampleStats {
    /// Statistics of interleaved audio of `channels` channels.
    pub fn new(channels: u16) -> Self {
        let channels = usize::from(channels.max(1));
        SampleStats {
            channels,
            sums: vec![0.0; channels],
            frames: 0,
            runs: vec![(false, 0); channels],
            clipped: 0,
        }
    }

    /// Adds interleaved frames (a trailing partial frame is ignored).
    pub fn add(&mut self, samples: &[f32]) {
        let channels = self.channels;
        for frame in samples.chunks_exact(channels) {
            for ((&x, sum), run) in frame.iter().zip(&mut self.sums).zip(&mut self.runs) {
                // Non-finite samples (broken float files) would make the mean NaN.
                if x.is_finite() {
                    *sum += f64::from(x);
                }
                if x.abs() >= CLIP_LEVEL {
                    let positive = x > 0.0;
                    if run.1 > 0 && run.0 == positive {
                        run.1 += 1;
                    } else {
                        self.clipped += run_clipped(run.1);
                        *run = (positive, 1);
                    }
                } else if run.1 > 0 {
                    self.clipped += run_clipped(run.1);
                    run.1 = 0;
                }
            }
        }
        self.frames += (samples.len() / channels) as u64;
    }

    /// Clipped samples over all channels, counting the runs still open at the end.
    pub fn clipped_samples(&self) -> u64 {
        self.clipped + self.runs.iter().map(|r| run_clipped(r.1)).sum::<u64>()
    }

    /// Mean of each channel (linear, −1..1); zeros when nothing was added.
    pub fn dc_offset(&self) -> Vec<f64> {
        let frames = self.frames.max(1) as f64;
        self.sums.iter().map(|s| s / frames).collect()
    }
}

fn run_clipped(length: u32) -> u64 {
    if length >= CLIP_RUN {
        u64::from(length)
    } else {
        0
    }
}

/// A stretch of the input, in seconds from its start.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    /// Start, in seconds from the start of the input.
    pub start_secs: f64,
    /// End, in seconds from the start of the input.
    pub end_secs: f64,
}

/// Finds the stretches where every channel stays under a level.
///
/// The signal is cut into consecutive 10 ms windows ([`SILENCE_WINDOW_SECS`]); a window is
/// silent when the RMS of each of its channels is under the threshold. Runs of silent windows
/// lasting at least the minimum are reported, so boundaries fall on the 10 ms grid and a
/// boundary window that holds some sound counts as sound.
#[derive(Debug, Clone)]
pub struct SilenceDetector {
    channels: usize,
    rate: f64,
    window: u64,
    threshold_squared: f64,
    min_secs: f64,
    /// Sum of squares of each channel over the current window.
    squares: Vec<f64>,
    in_window: u64,
    /// Frame at which the current window starts.
    window_start: u64,
    /// Frame at which the current silent run started.
    run_start: Option<u64>,
    segments: Vec<Segment>,
}

impl SilenceDetector {
    /// Silence under `threshold_db` dBFS (RMS) lasting at least `min_secs`, in interleaved
    /// audio of `channels` channels at `rate` Hz.
    pub fn new(channels: u16, rate: u32, threshold_db: f64, min_secs: f64) -> Self {
        let channels = usize::from(channels.max(1));
        let rate = f64::from(rate.max(1));
        let threshold = 10f64.powf(threshold_db / 20.0);
        SilenceDetector {
            channels,
            rate,
            window: ((rate * SILENCE_WINDOW_SECS).round() as u64).max(1),
            threshold_squared: threshold * threshold,
            min_secs,
            squares: vec![0.0; channels],
            in_window: 0,
            window_start: 0,
            run_start: None,
            segments: Vec::new(),
        }
    }

    /// Adds interleaved frames (a trailing partial frame is ignored).
    pub fn add(&mut self, samples: &[f32]) {
        let mut frames = samples.chunks_exact(self.channels);
        loop {
            let wanted = (self.window - self.in_window) as usize;
            let mut taken = 0;
            for frame in frames.by_ref().take(wanted) {
                for (&x, sum) in frame.iter().zip(&mut self.squares) {
                    *sum += f64::from(x) * f64::from(x);
                }
                taken += 1;
            }
            self.in_window += taken as u64;
            if self.in_window < self.window {
                break;
            }
            self.close_window();
        }
    }

    /// Judges the current window and starts the next.
    fn close_window(&mut self) {
        let length = self.in_window as f64;
        let limit = self.threshold_squared * length;
        let silent = self.squares.iter().all(|&s| s < limit);
        let end = self.window_start + self.in_window;
        match (silent, self.run_start) {
            (true, None) => self.run_start = Some(self.window_start),
            (false, Some(start)) => self.close_run(start, self.window_start),
            _ => {}
        }
        self.squares.iter_mut().for_each(|s| *s = 0.0);
        self.in_window = 0;
        self.window_start = end;
    }

    fn close_run(&mut self, start: u64, end: u64) {
        self.run_start = None;
        let (start_secs, end_secs) = (start as f64 / self.rate, end as f64 / self.rate);
        // Tolerance for min_secs values that are not a whole number of windows in floating point.
        if end_secs - start_secs >= self.min_secs - 1e-9
            && self.segments.len() < MAX_SILENCE_SEGMENTS
        {
            self.segments.push(Segment {
                start_secs,
                end_secs,
            });
        }
    }

    /// The silent stretches, in order (at most [`MAX_SILENCE_SEGMENTS`]); a last partial
    /// window is judged on the frames it has.
    pub fn finish(mut self) -> Vec<Segment> {
        if self.in_window > 0 {
            self.close_window();
        }
        if let Some(start) = self.run_start {
            self.close_run(start, self.window_start);
        }
        self.segments
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clipping_needs_a_run_at_the_ceiling() {
        let mut stats = SampleStats::new(2);
        // Left: a lone crest, a run of 3 at +1 split across chunks, a lone −1 (a change of
        // sign ends a run); right: a run of 2 at −1.
        stats.add(&[1.0, -1.0, 0.5, -1.0, 1.0, 0.0]);
        stats.add(&[1.0, 0.0, 1.0, 0.0, -1.0, 0.0]);
        assert_eq!(stats.clipped_samples(), 3 + 2);
        let mut open = SampleStats::new(1);
        open.add(&[0.0, 1.0, 1.0]);
        assert_eq!(open.clipped_samples(), 2);
    }

    #[test]
    fn dc_is_the_mean_per_channel() {
        let mut stats = SampleStats::new(2);
        stats.add(&[0.5, -0.25, 0.5, -0.25]);
        stats.add(&[0.5, -0.25, 0.5]);
        assert_eq!(stats.dc_offset(), vec![0.5, -0.25]);
        assert_eq!(SampleStats::new(1).dc_offset(), vec![0.0]);
    }

    #[test]
    fn silence_runs_are_found_on_the_window_grid() {
        // 1000 Hz: 10-frame windows. 0.1 s sound, 0.3 s silence, 0.05 s sound, 0.05 s silence.
        let mut detector = SilenceDetector::new(1, 1000, -60.0, 0.1);
        let mut signal = vec![0.5f32; 100];
        signal.extend(vec![0.0; 300]);
        signal.extend(vec![0.5; 50]);
        signal.extend(vec![0.0; 50]);
        for chunk in signal.chunks(7) {
            detector.add(chunk);
        }
        let segments = detector.finish();
        assert_eq!(
            segments,
            vec![Segment {
                start_secs: 0.1,
                end_secs: 0.4
            }]
        );
        // Trailing silence long enough is closed at the end.
        let mut detector = SilenceDetector::new(1, 1000, -60.0, 0.05);
        detector.add(&signal);
        assert_eq!(detector.finish().len(), 2);
    }
}
