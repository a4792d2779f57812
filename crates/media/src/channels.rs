//! Channel maps: keeping, picking, averaging, duplicating or downmixing channels.

use crate::MediaError;
use symphonia::core::audio::Channels;

const MINUS_3DB: f32 = std::f32::consts::FRAC_1_SQRT_2;

/// Maps interleaved frames of `input` channels to `output` channels with a fixed matrix.
///
/// - same count: passed through untouched;
/// - stereo → mono: the average of the two channels;
/// - mono → stereo: the channel duplicated;
/// - more than two → stereo: an ITU-R BS.775-style downmix. Left-side speakers go to the
///   left, right-side to the right; the centre (and other centred speakers) goes to both at
///   −3 dB, surrounds (rear, side, top, wide) go to their side at −3 dB, the LFE is dropped.
///   The matrix is then scaled so that no output row sums above 1 (as ffmpeg does for
///   integer output), so a full-scale input cannot clip;
/// - more than two → mono: that stereo downmix, averaged.
///
/// Speaker positions come from the container's channel mask; without one, the WAVE default
/// order (FL, FR, FC, LFE, BL, BR, FLC, FRC, BC, SL, SR, …) is assumed.
#[derive(Debug, Clone)]
pub struct ChannelMixer {
    input: usize,
    output: usize,
    /// `output` rows of `input` coefficients; empty for the identity.
    matrix: Vec<f32>,
    out: Vec<f32>,
}

impl ChannelMixer {
    /// A mixer from `input` to `output` channels; `layout` names the input's speakers.
    pub fn new(input: usize, output: usize, layout: Option<Channels>) -> Result<Self, MediaError> {
        if input == 0 || output == 0 {
            return Err(MediaError::InvalidOptions(
                "a channel count cannot be zero".into(),
            ));
        }
        let matrix = if input == output {
            Vec::new()
        } else if input == 1 {
            vec![1.0; output]
        } else if output <= 2 {
            let stereo = if input == 2 {
                vec![1.0, 0.0, 0.0, 1.0]
            } else {
                downmix_to_stereo(input, layout)
            };
            if output == 2 {
                stereo
            } else {
                (0..input)
                    .map(|c| 0.5 * (stereo[c] + stereo[input + c]))
                    .collect()
            }
        } else {
            return Err(MediaError::InvalidOptions(format!(
                "cannot map {input} channels to {output}"
            )));
        };
        Ok(ChannelMixer {
            input,
            output,
            matrix,
            out: Vec::new(),
        })
    }

    /// A mixer that keeps only input channel `channel` (0-based) of `input`, copied to each
    /// of the `output` channels. Fails, naming the channel count, if there is no such channel.
    pub fn pick(input: usize, channel: usize, output: usize) -> Result<Self, MediaError> {
        if channel >= input {
            let plural = if input == 1 { "" } else { "s" };
            return Err(MediaError::InvalidOptions(format!(
                "channel {channel} does not exist: the input has {input} channel{plural}"
            )));
        }
        if output == 0 {
            return Err(MediaError::InvalidOptions(
                "a channel count cannot be zero".into(),
            ));
        }
        let mut row = vec![0.0; input];
        row[channel] = 1.0;
        let matrix = if input == 1 && output == 1 {
            Vec::new()
        } else {
            row.repeat(output)
        };
        Ok(ChannelMixer {
            input,
            output,
            matrix,
            out: Vec::new(),
        })
    }

    /// Output channel count.
    pub fn output_channels(&self) -> usize {
        self.output
    }

    /// Maps the interleaved `frames`; the result is valid until the next call.
    pub fn process<'a>(&'a mut self, frames: &'a [f32]) -> &'a [f32] {
        if self.matrix.is_empty() {
            return frames;
        }
        self.out.clear();
        self.out.reserve(frames.len() / self.input * self.output);
        for frame in frames.chunks_exact(self.input) {
            for row in self.matrix.chunks_exact(self.input) {
                let sample: f32 = row.iter().zip(frame).map(|(c, x)| c * x).sum();
                self.out.push(sample);
            }
        }
        &self.out
    }
}

/// Left and right coefficients of a speaker position.
fn stereo_weights(position: Channels) -> (f32, f32) {
    const LEFT: Channels = Channels::FRONT_LEFT;
    const RIGHT: Channels = Channels::FRONT_RIGHT;
    match position {
        p if p == LEFT || p == Channels::FRONT_LEFT_CENTRE => (1.0, 0.0),
        p if p == RIGHT || p == Channels::FRONT_RIGHT_CENTRE => (0.0, 1.0),
        p if p == Channels::LFE1 || p == Channels::LFE2 => (0.0, 0.0),
        p if p == Channels::FRONT_CENTRE
            || p == Channels::REAR_CENTRE
            || p == Channels::TOP_CENTRE
            || p == Channels::TOP_FRONT_CENTRE
            || p == Channels::TOP_REAR_CENTRE
            || p == Channels::FRONT_CENTRE_HIGH =>
        {
            (MINUS_3DB, MINUS_3DB)
        }
        p if p == Channels::REAR_LEFT
            || p == Channels::SIDE_LEFT
            || p == Channels::TOP_FRONT_LEFT
            || p == Channels::TOP_REAR_LEFT
            || p == Channels::REAR_LEFT_CENTRE
            || p == Channels::FRONT_LEFT_WIDE
            || p == Channels::FRONT_LEFT_HIGH =>
        {
            (MINUS_3DB, 0.0)
        }
        p if p == Channels::REAR_RIGHT
            || p == Channels::SIDE_RIGHT
            || p == Channels::TOP_FRONT_RIGHT
            || p == Channels::TOP_REAR_RIGHT
            || p == Channels::REAR_RIGHT_CENTRE
            || p == Channels::FRONT_RIGHT_WIDE
            || p == Channels::FRONT_RIGHT_HIGH =>
        {
            (0.0, MINUS_3DB)
        }
        // Unknown positions: spread evenly.
        _ => (MINUS_3DB, MINUS_3DB),
    }
}

/// The speaker of each interleaved channel, in order.
pub(crate) fn positions(count: usize, layout: Option<Channels>) -> Vec<Channels> {
    let layout = layout
        .filter(|l| l.count() == count)
        .unwrap_or_else(|| Channels::from_bits_truncate(((1u64 << count.min(32)) - 1) as u32));
    let mut positions: Vec<Channels> = layout.iter().collect();
    // Beyond the 26 named positions: unknown speakers.
    positions.resize(count, Channels::empty());
    positions
}

fn downmix_to_stereo(input: usize, layout: Option<Channels>) -> Vec<f32> {
    let weights: Vec<(f32, f32)> = positions(input, layout)
        .into_iter()
        .map(stereo_weights)
        .collect();
    let left_sum: f32 = weights.iter().map(|w| w.0).sum();
    let right_sum: f32 = weights.iter().map(|w| w.1).sum();
    let scale = 1.0 / left_sum.max(right_sum).max(1.0);
    let mut matrix = Vec::with_capacity(2 * input);
    matrix.extend(weights.iter().map(|w| w.0 * scale));
    matrix.extend(weights.iter().map(|w| w.1 * scale));
    matrix
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stereo_to_mono_averages_and_mono_to_stereo_duplicates() {
        let mut mono = ChannelMixer::new(2, 1, None).unwrap();
        assert_eq!(mono.process(&[1.0, 0.0, 0.5, 0.5]), &[0.5, 0.5]);
        let mut stereo = ChannelMixer::new(1, 2, None).unwrap();
        assert_eq!(stereo.process(&[0.25, -1.0]), &[0.25, 0.25, -1.0, -1.0]);
        let mut same = ChannelMixer::new(2, 2, None).unwrap();
        assert_eq!(same.process(&[0.1, 0.2]), &[0.1, 0.2]);
    }

    #[test]
    fn picking_keeps_one_channel_once_or_twice() {
        let mut mono = ChannelMixer::pick(3, 1, 1).unwrap();
        assert_eq!(mono.process(&[0.1, 0.2, 0.3, 0.4, 0.5, 0.6]), &[0.2, 0.5]);
        let mut both = ChannelMixer::pick(2, 0, 2).unwrap();
        assert_eq!(both.process(&[0.1, 0.2, 0.3, 0.4]), &[0.1, 0.1, 0.3, 0.3]);
        let mut same = ChannelMixer::pick(1, 0, 1).unwrap();
        assert_eq!(same.process(&[0.7]), &[0.7]);
        let err = ChannelMixer::pick(2, 3, 1).unwrap_err();
        assert_eq!(
            err.public_message(),
            "channel 3 does not exist: the input has 2 channels"
        );
    }

    #[test]
    fn surround_downmix_drops_lfe_and_cannot_clip() {
        // 5.1 in WAVE order: FL FR FC LFE BL BR.
        let mut mixer = ChannelMixer::new(6, 2, None).unwrap();
        let out = mixer.process(&[1.0, 0.0, 0.0, 1.0, 0.0, 0.0]).to_vec();
        assert!(out[0] > 0.4 && out[1] == 0.0, "{out:?}");
        let full = mixer.process(&[1.0; 6]).to_vec();
        assert!(full.iter().all(|x| *x <= 1.0 + 1e-6), "{full:?}");
        let centre = mixer.process(&[0.0, 0.0, 1.0, 0.0, 0.0, 0.0]).to_vec();
        assert!((centre[0] - centre[1]).abs() < 1e-6 && centre[0] > 0.0);
    }
}
