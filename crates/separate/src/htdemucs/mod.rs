//! Hybrid Transformer Demucs (`demucs.htdemucs.HTDemucs`), inference only.
//!
//! The mix goes two ways: a spectrogram (complex values as channels) through frequency-axis
//! encoder layers, and the waveform through time-axis encoder layers; a cross-domain transformer
//! joins them at the bottom; mirrored decoders bring each back, the spectrogram through an
//! inverse STFT; the two estimates are summed. Each piece follows the reference module of the
//! same name: [`spec`] (`_spec`/`_ispec`), [`layers`] (`HEncLayer`, `HDecLayer`, `DConv`),
//! [`transformer`] (`CrossTransformerEncoder`).

mod config;
mod kernels;
mod layers;
mod spec;
mod transformer;

pub use config::Config;

use crate::checkpoint::Weights;
use crate::{ModelInfo, Network, SeparateError};
use candle_core::{Device, Tensor};
use layers::{Conv1d, FreqDecoder, FreqEncoder, LayerSpec, TimeDecoder, TimeEncoder};
use realfft::num_complex::Complex32;
use spec::Stft;
use transformer::CrossTransformer;

type Result<T> = std::result::Result<T, SeparateError>;

/// A loaded HTDemucs network.
pub struct HTDemucs {
    info: ModelInfo,
    config: Config,
    device: Device,
    stft: Stft,
    encoder: Vec<FreqEncoder>,
    tencoder: Vec<TimeEncoder>,
    decoder: Vec<FreqDecoder>,
    tdecoder: Vec<TimeDecoder>,
    /// `freq_emb.embedding.weight · emb_scale · freq_emb`, shaped `[1, C, F, 1]`.
    freq_emb: Option<Tensor>,
    /// `channel_upsampler(_t)` / `channel_downsampler(_t)` when `bottom_channels > 0`.
    bottom: Option<[Conv1d; 4]>,
    transformer: Option<CrossTransformer>,
}

impl HTDemucs {
    /// Builds the network of `config`, taking every weight from `w` (which checks names and
    /// shapes). Mirrors the loop of `HTDemucs.__init__`.
    pub(crate) fn load(config: Config, info: ModelInfo, w: &mut Weights) -> Result<HTDemucs> {
        let c = &config;
        if info.audio_channels != c.audio_channels {
            return Err(SeparateError::Checkpoint("audio_channels disagree".into()));
        }
        let mut encoder = Vec::new();
        let mut tencoder = Vec::new();
        let mut decoder = Vec::new();
        let mut tdecoder = Vec::new();
        let mut freq_emb = None;
        let (mut chin, mut chin_z) = (c.audio_channels, 2 * c.audio_channels);
        let (mut chout, mut chout_z) = (c.channels, c.channels);
        let mut freqs = c.nfft / 2;
        for index in 0..c.depth {
            let norm_groups = (index >= c.norm_starts).then_some(c.norm_groups);
            let spec = |chin, chout, context| LayerSpec {
                chin,
                chout,
                kernel: c.kernel_size,
                stride: c.stride,
                norm_groups,
                context,
                dconv_depth: c.dconv_depth,
                dconv_comp: c.dconv_comp,
            };
            encoder.push(FreqEncoder::load(
                w,
                &format!("encoder.{index}"),
                &spec(chin_z, chout_z, c.context_enc),
            )?);
            tencoder.push(TimeEncoder::load(
                w,
                &format!("tencoder.{index}"),
                &spec(chin, chout, c.context_enc),
            )?);
            if index == 0 {
                chin = c.audio_channels * c.sources;
                chin_z = 2 * chin;
            }
            // The decoders are listed deepest first in the checkpoint (`insert(0, …)`).
            let di = c.depth - 1 - index;
            let last = index == 0;
            decoder.push(FreqDecoder::load(
                w,
                &format!("decoder.{di}"),
                &spec(chout_z, chin_z, c.context),
                last,
            )?);
            tdecoder.push(TimeDecoder::load(
                w,
                &format!("tdecoder.{di}"),
                &spec(chout, chin, c.context),
                last,
            )?);
            chin = chout;
            chin_z = chout_z;
            chout *= c.growth;
            chout_z *= c.growth;
            freqs /= c.stride;
            if index == 0 && c.freq_emb > 0.0 {
                let weight = w.take("freq_emb.embedding.weight", &[freqs, chin_z])?;
                let emb = (weight.t()? * (c.emb_scale * c.freq_emb))?;
                freq_emb = Some(emb.reshape((1, chin_z, freqs, 1))?);
            }
        }
        decoder.reverse();
        tdecoder.reverse();
        let width = chin_z;
        let bottom = if c.bottom_channels > 0 {
            let b = c.bottom_channels;
            Some([
                Conv1d::load(w, "channel_upsampler", width, b, 1, 1, 0, 1)?,
                Conv1d::load(w, "channel_upsampler_t", width, b, 1, 1, 0, 1)?,
                Conv1d::load(w, "channel_downsampler", b, width, 1, 1, 0, 1)?,
                Conv1d::load(w, "channel_downsampler_t", b, width, 1, 1, 0, 1)?,
            ])
        } else {
            None
        };
        let transformer = if c.t_layers > 0 {
            Some(CrossTransformer::load(w, "crosstransformer", c)?)
        } else {
            None
        };
        let device = w.device().clone();
        Ok(HTDemucs {
            info,
            stft: Stft::new(c.nfft),
            config,
            device,
            encoder,
            tencoder,
            decoder,
            tdecoder,
            freq_emb,
            bottom,
            transformer,
        })
    }

    /// [`Network::forward`] recording the output of every layer (debugging aid).
    #[doc(hidden)]
    pub fn forward_traced(
        &self,
        mix: &Tensor,
        trace: &mut Vec<(String, Tensor)>,
    ) -> Result<Tensor> {
        self.run(mix, Some(trace))
    }

    /// The configuration read from the checkpoint.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// `HTDemucs.forward` on `[B, C, L]` with `L` at most the training length.
    fn run(&self, mix: &Tensor, mut trace: Option<&mut Vec<(String, Tensor)>>) -> Result<Tensor> {
        let mut record = |name: String, t: &Tensor| {
            if let Some(tr) = trace.as_mut() {
                tr.push((name, t.clone()));
            }
        };
        let c = &self.config;
        let (batch, channels, length) = mix.dims3()?;
        if channels != c.audio_channels {
            return Err(SeparateError::InvalidOption(format!(
                "the model takes {} channels, the mix has {channels}",
                c.audio_channels
            )));
        }
        let training = c.training_length;
        if length > training || length == 0 {
            return Err(SeparateError::InvalidOption(format!(
                "the network takes 1 to {training} samples at a time, not {length}"
            )));
        }
        // Padded with zeros to the training length (use_train_segment), cropped at the end.
        let mix = mix
            .to_device(&Device::Cpu)?
            .to_dtype(candle_core::DType::F32)?
            .pad_with_zeros(2, 0, training - length)?;
        let wave: Vec<Vec<Vec<f32>>> = mix.to_vec3()?;

        // Spectrogram, complex as channels: [B, 2C, F, T], channel 2c + (re, im).
        let bins = c.nfft / 2;
        let mut frames = 0;
        let mut mag = Vec::with_capacity(batch * 2 * channels * bins * training.div_ceil(c.hop()));
        let mut spec = Vec::new();
        for b in wave.iter() {
            for ch in b {
                spec.clear();
                frames = self.stft.forward(ch, &mut spec)?;
                for part in 0..2 {
                    for f in 0..bins {
                        mag.extend((0..frames).map(|t| {
                            let z = spec[t * bins + f];
                            if part == 0 {
                                z.re
                            } else {
                                z.im
                            }
                        }));
                    }
                }
            }
        }
        // Normalization of both branches: mean and unbiased std per batch item, computed in
        // f64 (torch's reductions are pairwise: a naive f32 sum would drift from them).
        let per_item = 2 * channels * bins * frames;
        let (mut x_data, stats) = normalize(mag, per_item)?;
        let per_item_t = channels * training;
        let flat: Vec<f32> = wave.into_iter().flatten().flatten().collect();
        let (xt_data, stats_t) = normalize(flat, per_item_t)?;

        let dev = &self.device;
        let mut x = Tensor::from_vec(
            std::mem::take(&mut x_data),
            (batch, 2 * channels, bins, frames),
            dev,
        )?;
        let mut xt = Tensor::from_vec(xt_data, (batch, channels, training), dev)?;

        let mut saved = Vec::with_capacity(c.depth);
        let mut saved_t = Vec::with_capacity(c.depth);
        let mut lengths_t = Vec::with_capacity(c.depth);
        for (idx, (enc, tenc)) in self.encoder.iter().zip(&self.tencoder).enumerate() {
            lengths_t.push(xt.dim(2)?);
            xt = tenc.forward(&xt)?;
            record(format!("tenc{idx}"), &xt);
            saved_t.push(xt.clone());
            x = enc.forward(&x)?;
            record(format!("enc{idx}"), &x);
            if idx == 0 {
                if let Some(emb) = &self.freq_emb {
                    x = x.broadcast_add(emb)?;
                }
            }
            saved.push(x.clone());
        }

        if let Some(transformer) = &self.transformer {
            let (b, ch, f, t) = x.dims4()?;
            if let Some([up, up_t, _, _]) = &self.bottom {
                x = up
                    .forward(&x.reshape((b, ch, f * t))?)?
                    .reshape((b, (), f, t))?;
                xt = up_t.forward(&xt)?;
            }
            record("tr_in_x".into(), &x);
            record("tr_in_xt".into(), &xt);
            (x, xt) = transformer.forward(&x, &xt)?;
            record("tr_x".into(), &x);
            record("tr_xt".into(), &xt);
            if let Some([_, _, down, down_t]) = &self.bottom {
                let bc = x.dim(1)?;
                x = down
                    .forward(&x.reshape((b, bc, f * t))?)?
                    .reshape((b, ch, f, t))?;
                xt = down_t.forward(&xt)?;
            }
        }

        for (idx, (dec, tdec)) in self.decoder.iter().zip(&self.tdecoder).enumerate() {
            let skip = saved.pop().ok_or_else(|| internal("skip"))?;
            x = dec.forward(&x, &skip)?;
            record(format!("dec{idx}"), &x);
            let skip_t = saved_t.pop().ok_or_else(|| internal("skip_t"))?;
            let length_t = lengths_t.pop().ok_or_else(|| internal("length_t"))?;
            xt = tdec.forward(&xt, &skip_t, length_t)?;
            record(format!("tdec{idx}"), &xt);
        }

        // Frequency estimate: de-normalize, channels back to complex, inverse STFT.
        let sources = c.sources;
        let x = x.to_device(&Device::Cpu)?;
        let (_, xc, xf, xtt) = x.dims4()?;
        if xc != sources * 2 * channels || xf != bins || xtt != frames {
            return Err(internal("decoder output shape"));
        }
        let x_data: Vec<f32> = x.flatten_all()?.to_vec1()?;
        let xt_data: Vec<f32> = xt.to_device(&Device::Cpu)?.flatten_all()?.to_vec1()?;
        if xt_data.len() != batch * sources * channels * training {
            return Err(internal("time decoder output shape"));
        }
        let mut out = Vec::with_capacity(batch * sources * channels * length);
        let plane = bins * frames;
        let mut z = vec![Complex32::new(0.0, 0.0); plane];
        for b in 0..batch {
            let (mean, std) = stats[b];
            let (mean_t, std_t) = stats_t[b];
            for s in 0..sources {
                for ch in 0..channels {
                    let base = ((b * sources + s) * channels + ch) * 2 * plane;
                    let re = &x_data[base..base + plane];
                    let im = &x_data[base + plane..base + 2 * plane];
                    for f in 0..bins {
                        for t in 0..frames {
                            let i = f * frames + t;
                            z[t * bins + f] =
                                Complex32::new(re[i] * std + mean, im[i] * std + mean);
                        }
                    }
                    let wave = self.stft.inverse(&z, frames, training)?;
                    let tbase = ((b * sources + s) * channels + ch) * training;
                    let time = &xt_data[tbase..tbase + length];
                    out.extend(
                        wave[..length]
                            .iter()
                            .zip(time)
                            .map(|(&w, &t)| w + (t * std_t + mean_t)),
                    );
                }
            }
        }
        Ok(Tensor::from_vec(
            out,
            (batch, sources, channels, length),
            &self.device,
        )?)
    }
}

fn internal(what: &str) -> SeparateError {
    SeparateError::Unsupported(format!("internal shape error ({what})"))
}

/// Mean and (unbiased) standard deviation of one batch item.
type Moments = (f32, f32);

/// Normalizes each of the `data.len() / per_item` items as the reference does,
/// `(x - mean) / (1e-5 + std)` with the unbiased std, and returns the `(mean, std)` used.
fn normalize(mut data: Vec<f32>, per_item: usize) -> Result<(Vec<f32>, Vec<Moments>)> {
    if per_item < 2 {
        return Err(SeparateError::InvalidOption(
            "too few samples to normalize".into(),
        ));
    }
    let mut stats = Vec::new();
    for item in data.chunks_mut(per_item) {
        let n = item.len() as f64;
        let mean = item.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let var = item
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / (n - 1.0);
        let (mean, std) = (mean as f32, var.sqrt() as f32);
        let denom = 1e-5 + std;
        for v in item.iter_mut() {
            *v = (*v - mean) / denom;
        }
        stats.push((mean, std));
    }
    Ok((data, stats))
}

impl Network for HTDemucs {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn forward(&self, mix: &Tensor) -> Result<Tensor> {
        self.run(mix, None)
    }
}
