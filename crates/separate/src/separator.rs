//! `Separator.separate_tensor` of the reference (`demucs/api.py`): the mix is normalized by
//! the mean and standard deviation of its mono downmix before [`apply_model`], and the
//! stems are scaled back after.

use crate::apply::{apply_model, ApplyOptions};
use crate::bag::Bag;
use crate::SeparateError;
use candle_core::{DType, Tensor};

/// Running mean and variance of the mono mix (`wav.mean(0)`), over a whole track.
///
/// Welford's update in `f64`: exact enough over hours of audio (a naive `f32` sum of squares
/// would lose the variance of quiet tracks), and the same whether the track arrives in one
/// piece or in chunks, so the streaming path and [`separate_tensor`] agree bit for bit.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MixStats {
    count: u64,
    mean: f64,
    m2: f64,
}

impl MixStats {
    /// Adds interleaved frames of `channels` channels.
    pub fn add_interleaved(&mut self, frames: &[f32], channels: usize) {
        for frame in frames.chunks_exact(channels) {
            self.add(mono(frame.iter().copied(), channels));
        }
    }

    /// Adds one sample of the mono mix.
    pub fn add(&mut self, x: f32) {
        let x = f64::from(x);
        self.count += 1;
        let delta = x - self.mean;
        self.mean += delta / self.count as f64;
        self.m2 += delta * (x - self.mean);
    }

    /// Samples added.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// `mean = ref.mean()`, `std = ref.std() + 1e-8` (unbiased), as `f32`. A track of fewer
    /// than two samples has no unbiased deviation (NaN in the reference): 0 is used.
    pub fn normalization(&self) -> Normalization {
        let std = if self.count > 1 {
            (self.m2 / (self.count - 1) as f64).max(0.0).sqrt()
        } else {
            0.0
        };
        Normalization {
            mean: self.mean as f32,
            std: std as f32 + 1e-8,
        }
    }
}

/// The mono mix of one frame: the channels' mean, in `f32` like `wav.mean(0)`.
fn mono(frame: impl Iterator<Item = f32>, channels: usize) -> f32 {
    frame.sum::<f32>() / channels as f32
}

/// The affine map between the mix and what the networks see.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalization {
    /// Mean of the mono mix.
    pub mean: f32,
    /// Standard deviation of the mono mix, plus 1e-8.
    pub std: f32,
}

impl Normalization {
    /// `(wav - mean) / std`.
    #[inline]
    pub fn normalize(&self, x: f32) -> f32 {
        (x - self.mean) / self.std
    }

    /// `out * std + mean` (two roundings, as the reference: no fused multiply-add).
    #[inline]
    pub fn denormalize(&self, y: f32) -> f32 {
        y * self.std + self.mean
    }
}

/// `Separator.separate_tensor(wav)`: `wav` is `[channels, length]` at the bag's sample rate
/// and channel count; returns `[sources, channels, length]`. Everything in memory.
pub fn separate_tensor(
    bag: &Bag,
    wav: &Tensor,
    options: &ApplyOptions,
    progress: &mut dyn FnMut(f64),
) -> Result<Tensor, SeparateError> {
    let (channels, length) = wav.dims2()?;
    if channels != bag.channels() {
        return Err(SeparateError::InvalidOption(format!(
            "the mix has {channels} channels, the model takes {}",
            bag.channels()
        )));
    }
    let data = wav.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let mut stats = MixStats::default();
    for t in 0..length {
        stats.add(mono((0..channels).map(|c| data[c * length + t]), channels));
    }
    let norm = stats.normalization();
    let normalized: Vec<f32> = data.iter().map(|x| norm.normalize(*x)).collect();
    let mix = Tensor::from_vec(normalized, (1, channels, length), wav.device())?;
    let out = apply_model(bag, &mix, options, progress)?;
    let sources = bag.sources().len();
    let values: Vec<f32> = out
        .flatten_all()?
        .to_vec1::<f32>()?
        .into_iter()
        .map(|y| norm.denormalize(y))
        .collect();
    Ok(Tensor::from_vec(
        values,
        (sources, channels, length),
        wav.device(),
    )?)
}
