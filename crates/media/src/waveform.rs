//! Waveform overview of `analyze` (min/max per channel per bucket) and its PNG rendering.

use serde::{Deserialize, Serialize};

/// Width of the PNG the worker renders, in pixels.
pub const PNG_WIDTH: u32 = 1200;
/// Height of one channel's lane in the PNG, in pixels.
pub const PNG_LANE_HEIGHT: u32 = 100;
/// Smallest and largest height of the whole PNG, in pixels.
pub const PNG_HEIGHT_RANGE: (u32, u32) = (200, 800);
/// Largest width or height [`render_waveform_png`] draws; larger requests are clamped.
pub const PNG_MAX_SIDE: u32 = 8192;

/// Values are rounded to 1/SCALE, which keeps the JSON small (1e-4 is −80 dBFS, far below a
/// pixel).
const SCALE: f64 = 1e4;
/// Values are clamped to ±this (float input may go beyond full scale, but not to infinity).
const MAX_VALUE: f32 = 1000.0;

/// Bars of the PNG (opaque blue) and the zero line of each lane (translucent grey), RGBA.
const BAR: [u8; 4] = [0x1f, 0x5f, 0xbf, 0xff];
const AXIS: [u8; 4] = [0x80, 0x80, 0x80, 0x60];

/// A waveform overview: the input cut into `buckets` equal stretches, with the lowest and
/// highest sample of each channel in each.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Waveform {
    /// Number of buckets (stretches of equal length) per channel.
    pub buckets: u32,
    /// Number of channels.
    pub channels: u16,
    /// Lowest sample of each bucket, per channel (`min[channel][bucket]`), linear full scale
    /// (−1..1; beyond for float input that overshoots, clamped to ±1000), rounded to 1e-4.
    pub min: Vec<Vec<f32>>,
    /// Highest sample of each bucket, per channel (`max[channel][bucket]`), as `min`.
    pub max: Vec<Vec<f32>>,
}

/// Builds a [`Waveform`] while streaming.
///
/// Bucket `b` holds frames `ceil(b·T/N) .. ceil((b+1)·T/N)` where `T` is the frame count the
/// headers promise and `N` the bucket count. Frames past `T` (headers that under-promise) go to
/// the last bucket. Buckets that get no frames take the values of the bucket before them when
/// there are fewer frames than buckets, and are 0 past the end of a stream shorter than its
/// headers said.
#[derive(Debug, Clone)]
pub struct WaveformBuilder {
    channels: usize,
    buckets: u64,
    total: u64,
    /// Frames seen so far.
    position: u64,
    /// Current bucket and the frame at which the next one starts (`u64::MAX` for the last).
    bucket: u64,
    bucket_end: u64,
    min: Vec<Vec<f32>>,
    max: Vec<Vec<f32>>,
}

impl WaveformBuilder {
    /// An overview of `buckets` buckets (at least 1) of audio of `channels` channels, expected
    /// to be `expected_frames` long.
    pub fn new(channels: u16, buckets: u32, expected_frames: u64) -> Self {
        let channels = usize::from(channels.max(1));
        let n = usize::try_from(buckets.max(1)).unwrap_or(usize::MAX);
        let mut builder = WaveformBuilder {
            channels,
            buckets: n as u64,
            total: expected_frames.max(1),
            position: 0,
            bucket: 0,
            bucket_end: 0,
            min: vec![vec![f32::INFINITY; n]; channels],
            max: vec![vec![f32::NEG_INFINITY; n]; channels],
        };
        builder.bucket_end = builder.start_of(1);
        builder
    }

    /// First frame of bucket `b`: `ceil(b·T/N)`, or `u64::MAX` past the last bucket.
    fn start_of(&self, b: u64) -> u64 {
        if b >= self.buckets {
            return u64::MAX;
        }
        let product = u128::from(b) * u128::from(self.total);
        let n = u128::from(self.buckets);
        u64::try_from(product.div_ceil(n)).unwrap_or(u64::MAX)
    }

    /// Adds interleaved frames (a trailing partial frame is ignored).
    pub fn add(&mut self, samples: &[f32]) {
        let channels = self.channels;
        let mut frames = &samples[..samples.len() - samples.len() % channels];
        while !frames.is_empty() {
            let available = (frames.len() / channels) as u64;
            let take = available.min(self.bucket_end - self.position);
            let (now, rest) = frames.split_at(take as usize * channels);
            let b = self.bucket as usize;
            for frame in now.chunks_exact(channels) {
                for (c, &x) in frame.iter().enumerate() {
                    // NaN never wins a comparison, so it leaves the bucket as it was.
                    if x < self.min[c][b] {
                        self.min[c][b] = x;
                    }
                    if x > self.max[c][b] {
                        self.max[c][b] = x;
                    }
                }
            }
            self.position += take;
            frames = rest;
            if self.position >= self.bucket_end {
                // The bucket the next frame falls in: floor(position·N/T), skipping empty ones.
                let next =
                    u128::from(self.position) * u128::from(self.buckets) / u128::from(self.total);
                self.bucket = u64::try_from(next)
                    .unwrap_or(u64::MAX)
                    .clamp(self.bucket + 1, self.buckets - 1);
                self.bucket_end = self.start_of(self.bucket + 1);
            }
        }
    }

    /// The overview.
    pub fn finish(self) -> Waveform {
        // Infinite samples (broken float files) would not survive JSON.
        let round = |x: f32| {
            let x = f64::from(x).clamp(-f64::from(MAX_VALUE), f64::from(MAX_VALUE));
            ((x * SCALE).round() / SCALE) as f32
        };
        // A stream shorter than its headers promised: buckets from here on saw no audio.
        let cut_short = self.position < self.total;
        let starts: Vec<u64> = (0..self.buckets).map(|b| self.start_of(b)).collect();
        let mut min = self.min;
        let mut max = self.max;
        for (lows, highs) in min.iter_mut().zip(&mut max) {
            let mut previous = (0.0, 0.0);
            for ((low, high), &start) in lows.iter_mut().zip(highs.iter_mut()).zip(&starts) {
                if *low <= *high {
                    previous = (round(*low), round(*high));
                } else if cut_short && start >= self.position {
                    previous = (0.0, 0.0);
                }
                (*low, *high) = previous;
            }
        }
        Waveform {
            buckets: self.buckets as u32,
            channels: self.channels as u16,
            min,
            max,
        }
    }
}

/// The PNG size the worker uses for `channels` channels: [`PNG_WIDTH`] wide,
/// [`PNG_LANE_HEIGHT`] per channel within [`PNG_HEIGHT_RANGE`].
pub fn default_png_size(channels: u16) -> (u32, u32) {
    let (low, high) = PNG_HEIGHT_RANGE;
    let height = (u32::from(channels) * PNG_LANE_HEIGHT).clamp(low, high);
    (PNG_WIDTH, height)
}

/// Draws `w` as an RGBA PNG of `width` × `height` pixels (each clamped to 1..=[`PNG_MAX_SIDE`]):
/// one horizontal lane per channel, top to bottom, on a transparent background; in each column
/// a bar from the lowest to the highest sample of the buckets under it (at least one pixel, so
/// silence shows as a thin line), over a faint zero line. Full scale fills the lane.
pub fn render_waveform_png(w: &Waveform, width: u32, height: u32) -> Vec<u8> {
    let width = width.clamp(1, PNG_MAX_SIDE);
    let height = height.clamp(1, PNG_MAX_SIDE);
    let (wu, hu) = (width as usize, height as usize);
    let mut pixels = vec![0u8; wu * hu * 4];
    let lanes = w.min.len().min(w.max.len()).min(usize::from(w.channels));
    let buckets = w.min.iter().chain(&w.max).map(Vec::len).min().unwrap_or(0);
    if lanes > 0 && buckets > 0 {
        let mut put = |x: usize, y: usize, color: [u8; 4]| {
            let at = (y * wu + x) * 4;
            pixels[at..at + 4].copy_from_slice(&color);
        };
        for lane in 0..lanes {
            // Lane `lane` covers rows top..bottom (the last one takes the remainder).
            let top = lane * hu / lanes;
            let bottom = (lane + 1) * hu / lanes;
            if bottom <= top {
                continue;
            }
            let rows = (bottom - top) as f32;
            // Row of a value: +1 at the top row, −1 at the bottom one.
            let row = |v: f32| {
                let v = if v.is_finite() {
                    v.clamp(-1.0, 1.0)
                } else {
                    0.0
                };
                let y = ((1.0 - v) * 0.5 * (rows - 1.0)).round() as usize;
                top + y.min(bottom - top - 1)
            };
            let zero = row(0.0);
            for x in 0..wu {
                put(x, zero, AXIS);
                let first = x * buckets / wu;
                let last = ((x + 1) * buckets / wu).max(first + 1).min(buckets);
                let low = w.min[lane][first..last]
                    .iter()
                    .copied()
                    .fold(f32::INFINITY, f32::min);
                let high = w.max[lane][first..last]
                    .iter()
                    .copied()
                    .fold(f32::NEG_INFINITY, f32::max);
                let (y_high, y_low) = (row(high.max(low)), row(low.min(high)));
                for y in y_high..=y_low {
                    put(x, y, BAR);
                }
            }
        }
    }
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Rgba);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::Fast);
    // Sizes are clamped and the buffer matches them, so encoding into memory cannot fail.
    let mut writer = encoder
        .write_header()
        .expect("PNG header of a clamped size");
    writer
        .write_image_data(&pixels)
        .expect("PNG data of the declared size");
    writer.finish().expect("PNG written to memory");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(
        channels: u16,
        buckets: u32,
        expected: u64,
        samples: &[f32],
        chunk: usize,
    ) -> Waveform {
        let mut builder = WaveformBuilder::new(channels, buckets, expected);
        for c in samples.chunks(chunk * usize::from(channels)) {
            builder.add(c);
        }
        builder.finish()
    }

    #[test]
    fn buckets_split_the_expected_length() {
        // 10 frames, 4 buckets: frames 0-2, 3-4, 5-7, 8-9.
        let samples: Vec<f32> = (0..10).map(|i| i as f32 / 10.0).collect();
        let w = build(1, 4, 10, &samples, 3);
        assert_eq!(w.min, vec![vec![0.0, 0.3, 0.5, 0.8]]);
        assert_eq!(w.max, vec![vec![0.2, 0.4, 0.7, 0.9]]);
        assert_eq!((w.buckets, w.channels), (4, 1));
    }

    #[test]
    fn lengths_other_than_promised_are_clamped() {
        let samples: Vec<f32> = (0..10).map(|i| i as f32 / 10.0).collect();
        // Longer than promised: the rest lands in the last bucket.
        let w = build(1, 2, 4, &samples, 4);
        assert_eq!(w.max, vec![vec![0.1, 0.9]]);
        // Shorter than promised: buckets past the end are 0.
        let w = build(1, 4, 20, &samples, 4);
        assert_eq!(w.max, vec![vec![0.4, 0.9, 0.0, 0.0]]);
        // Fewer frames than buckets: empty buckets repeat the one before.
        let w = build(1, 5, 2, &[0.5, -0.5], 1);
        assert_eq!(w.min, vec![vec![0.5, 0.5, -0.5, -0.5, -0.5]]);
    }

    #[test]
    fn png_has_the_asked_size() {
        let w = build(2, 8, 8, &[0.0, 1.0, 0.0, -1.0].repeat(4), 3);
        let png = render_waveform_png(&w, 40, 30);
        let decoder = png::Decoder::new(std::io::Cursor::new(png));
        let reader = decoder.read_info().unwrap();
        assert_eq!((reader.info().width, reader.info().height), (40, 30));
        assert_eq!(default_png_size(1), (1200, 200));
        assert_eq!(default_png_size(8), (1200, 800));
    }
}
