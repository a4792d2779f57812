//! `HTDemucs._spec` / `_ispec`: the STFT and its inverse exactly as the reference frames them.
//!
//! `_spec` reflect-pads the signal by `3·hop/2` (plus the end up to a whole number of hops),
//! runs `torch.stft(n_fft, hop, hann, normalized=True, center=True)`, drops the Nyquist bin and
//! keeps frames `2 .. 2 + ceil(T / hop)`. Those frames never reach into `stft`'s own centre
//! padding, so frame `j` is simply `padded[j·hop .. j·hop + n_fft]`.
//!
//! `_ispec` puts back a zero Nyquist bin and two zero frames on each side, runs
//! `torch.istft(normalized=True, center=True)` and crops `3·hop/2` samples: overlap-add of the
//! windowed inverse FFTs divided by the overlap-added squared window, output sample `n` at
//! overlap-add position `n + 3·hop/2 + n_fft/2`.

use crate::SeparateError;
use realfft::num_complex::Complex32;
use realfft::RealFftPlanner;

/// A periodic Hann window (`torch.hann_window(n)`).
fn hann(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / n as f64).cos()) as f32)
        .collect()
}

/// `demucs.hdemucs.pad1d(x, (left, right), mode="reflect")` for one channel: reflect padding,
/// with zeros appended first when the signal is too short to reflect (as the reference does).
pub(crate) fn pad_reflect(x: &[f32], left: usize, right: usize) -> Vec<f32> {
    let mut x = x.to_vec();
    let (mut left, mut right) = (left, right);
    let max_pad = left.max(right);
    if x.len() <= max_pad {
        let extra = max_pad - x.len() + 1;
        let extra_right = right.min(extra);
        let extra_left = extra - extra_right;
        let mut grown = vec![0.0; extra_left];
        grown.extend_from_slice(&x);
        grown.resize(grown.len() + extra_right, 0.0);
        x = grown;
        left -= extra_left;
        right -= extra_right;
    }
    let n = x.len() as isize;
    (-(left as isize)..n + right as isize)
        .map(|i| {
            let j = if i < 0 {
                -i
            } else if i >= n {
                2 * (n - 1) - i
            } else {
                i
            };
            // n > max(left, right) here, so j is in range; 0 guards the degenerate n = 1.
            x.get(j as usize).copied().unwrap_or(0.0)
        })
        .collect()
}

/// Spectrogram of one channel: `frames × (n_fft / 2)` complex values (`[frame][bin]`).
pub(crate) struct Stft {
    nfft: usize,
    window: Vec<f32>,
    fft: std::sync::Arc<dyn realfft::RealToComplex<f32>>,
    ifft: std::sync::Arc<dyn realfft::ComplexToReal<f32>>,
}

impl Stft {
    pub(crate) fn new(nfft: usize) -> Stft {
        let mut planner = RealFftPlanner::<f32>::new();
        Stft {
            nfft,
            window: hann(nfft),
            fft: planner.plan_fft_forward(nfft),
            ifft: planner.plan_fft_inverse(nfft),
        }
    }

    fn hop(&self) -> usize {
        self.nfft / 4
    }

    /// `_spec` of one channel of `length` samples: `ceil(length / hop)` frames of `n_fft / 2`
    /// bins, appended to `out` frame by frame.
    pub(crate) fn forward(
        &self,
        x: &[f32],
        out: &mut Vec<Complex32>,
    ) -> Result<usize, SeparateError> {
        let hop = self.hop();
        let frames = x.len().div_ceil(hop);
        let pad = hop / 2 * 3;
        let padded = pad_reflect(x, pad, pad + frames * hop - x.len());
        let bins = self.nfft / 2;
        let norm = 1.0 / (self.nfft as f32).sqrt();
        let mut input = self.fft.make_input_vec();
        let mut spectrum = self.fft.make_output_vec();
        let mut scratch = self.fft.make_scratch_vec();
        for j in 0..frames {
            let frame = &padded[j * hop..j * hop + self.nfft];
            for ((i, &s), &w) in input.iter_mut().zip(frame).zip(&self.window) {
                *i = s * w;
            }
            self.fft
                .process_with_scratch(&mut input, &mut spectrum, &mut scratch)
                .map_err(|e| SeparateError::InvalidOption(format!("stft: {e}")))?;
            out.extend(spectrum[..bins].iter().map(|c| c * norm));
        }
        Ok(frames)
    }

    /// `_ispec` of one channel: `spec` is `frames × (n_fft / 2)` (`[frame][bin]`), the output
    /// `length` samples (`length <= frames · hop`).
    pub(crate) fn inverse(
        &self,
        spec: &[Complex32],
        frames: usize,
        length: usize,
    ) -> Result<Vec<f32>, SeparateError> {
        let hop = self.hop();
        let bins = self.nfft / 2;
        // Output sample n sits at overlap-add position n + offset; real frame j starts at
        // (j + 2) · hop (two zero frames were prepended).
        let offset = hop / 2 * 3 + self.nfft / 2;
        let total_frames = frames + 4;
        let ola_len = self.nfft + hop * (total_frames - 1);
        if offset + length > ola_len {
            return Err(SeparateError::InvalidOption(format!(
                "istft: {length} samples from {frames} frames"
            )));
        }
        // Squared-window envelope over all frames, zero ones included (as torch.istft).
        let mut envelope = vec![0.0f64; ola_len];
        for k in 0..total_frames {
            for (i, &w) in self.window.iter().enumerate() {
                envelope[k * hop + i] += f64::from(w) * f64::from(w);
            }
        }
        let mut ola = vec![0.0f32; ola_len];
        let norm = 1.0 / (self.nfft as f32).sqrt();
        let mut input = self.ifft.make_input_vec();
        let mut output = self.ifft.make_output_vec();
        let mut scratch = self.ifft.make_scratch_vec();
        for j in 0..frames {
            input[..bins].copy_from_slice(&spec[j * bins..(j + 1) * bins]);
            // Nyquist bin re-inserted as zero; the imaginary part of DC is ignored by a
            // real inverse FFT (pocketfft's c2r does the same).
            input[bins] = Complex32::new(0.0, 0.0);
            input[0].im = 0.0;
            self.ifft
                .process_with_scratch(&mut input, &mut output, &mut scratch)
                .map_err(|e| SeparateError::InvalidOption(format!("istft: {e}")))?;
            let start = (j + 2) * hop;
            for (i, (&v, &w)) in output.iter().zip(&self.window).enumerate() {
                ola[start + i] += v * norm * w;
            }
        }
        Ok((0..length)
            .map(|n| {
                let e = envelope[n + offset];
                if e > 1e-11 {
                    (f64::from(ola[n + offset]) / e) as f32
                } else {
                    0.0
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflect_padding_matches_torch() {
        assert_eq!(
            pad_reflect(&[1.0, 2.0, 3.0], 2, 1),
            vec![3.0, 2.0, 1.0, 2.0, 3.0, 2.0]
        );
        // Too short to reflect: a zero is appended first (pad1d).
        assert_eq!(pad_reflect(&[1.0, 2.0], 2, 2).len(), 6);
    }

    #[test]
    fn round_trip() {
        let stft = Stft::new(64);
        // Band-limited (nothing at the dropped Nyquist bin): exact away from the ends, where
        // the zero frames `_ispec` adds are counted in the window envelope (as in torch).
        let x: Vec<f32> = (0..600)
            .map(|i| (0.05 * i as f32).sin() + 0.3 * (0.31 * i as f32).cos())
            .collect();
        let mut spec = Vec::new();
        let frames = stft.forward(&x, &mut spec).unwrap();
        assert_eq!(frames, 600usize.div_ceil(16));
        let y = stft.inverse(&spec, frames, x.len()).unwrap();
        let err = x[128..472]
            .iter()
            .zip(&y[128..472])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(err < 1e-4, "{err}");
    }
}
