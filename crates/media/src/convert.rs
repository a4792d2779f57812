//! The `convert` operation: decode → channel map → resample → encode, chunk by chunk.

use crate::channels::ChannelMixer;
use crate::decode::Decoder;
use crate::encode::{create_encoder, output_rate, EncoderSpec};
use crate::probe::probe;
use crate::progress::Progress;
use crate::resample::Resampler;
use crate::MediaError;
use audiomill_core::{AudioFormat, ConvertOptions, Limits, MediaInfo};
use std::path::Path;

/// The output's shape, decided from the input and the options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Target {
    pub sample_rate: u32,
    pub channels: u16,
}

/// Output rate: the requested one, else the input's, made one the format can carry
/// ([`output_rate`]: nearest MP3 rate, always 48 kHz for Opus). Output channels: the
/// requested count, else the input's, except that MP3 and Opus (1–2 channels) get a stereo
/// downmix of anything wider.
pub(crate) fn target(options: &ConvertOptions, rate: u32, channels: u16) -> Target {
    let sample_rate = output_rate(options.format, options.sample_rate.unwrap_or(rate));
    let mut out_channels = options.channels.unwrap_or(channels);
    if matches!(options.format, AudioFormat::Mp3 | AudioFormat::Opus) {
        out_channels = out_channels.min(2);
    }
    Target {
        sample_rate,
        channels: out_channels,
    }
}

/// Converts `input` into `output` as `options` say, and returns the probe of the output.
/// On failure the partial output is removed.
///
/// The pipeline streams: each decoded packet is channel-mapped ([`ChannelMixer`]), resampled
/// if the rate changes ([`crate::Resampler`]) and handed to the encoder, so memory does not
/// grow with the input's length. Samples are converted to integers by rounding, without
/// dither. The encoder and its defaults come from [`crate::encode::create_encoder`]: WAV
/// 16-bit unless `sample_format` says otherwise; FLAC at 24 bits when the source has more than
/// 16 (24/32-bit or float PCM, 24-bit FLAC/ALAC), else at 16; MP3 CBR at `bitrate` (192 kbit/s
/// by default, capped at 160 for the MPEG-2 rates below 32 kHz) or VBR at `quality`; Opus at
/// 48 kHz and `bitrate` (128 kbit/s by default). The input's tags and cover are written where
/// the output format holds them ([`crate::tags`]).
pub fn convert(
    input: &Path,
    output: &Path,
    options: &ConvertOptions,
    limits: &Limits,
    progress: &mut dyn FnMut(f64),
) -> Result<MediaInfo, MediaError> {
    if let (Ok(a), Ok(b)) = (input.canonicalize(), output.canonicalize()) {
        if a == b {
            // Checked before anything is written: the cleanup below would delete the input.
            return Err(MediaError::InvalidOptions(
                "the output cannot be the input file".into(),
            ));
        }
    }
    let result = run(input, output, options, limits, progress);
    if result.is_err() {
        let _ = std::fs::remove_file(output);
    }
    result
}

fn run(
    input: &Path,
    output: &Path,
    options: &ConvertOptions,
    limits: &Limits,
    progress: &mut dyn FnMut(f64),
) -> Result<MediaInfo, MediaError> {
    let mut decoder = Decoder::open(input, limits)?;
    let (in_rate, in_channels) = (decoder.sample_rate(), decoder.channels());
    let target = target(options, in_rate, in_channels);
    let mut mixer = ChannelMixer::new(
        usize::from(in_channels),
        usize::from(target.channels),
        decoder.layout(),
    )?;
    let mut resampler = if target.sample_rate != in_rate {
        Some(Resampler::new(
            usize::from(target.channels),
            in_rate,
            target.sample_rate,
        )?)
    } else {
        None
    };
    let mut encoder = create_encoder(
        output,
        &EncoderSpec {
            format: options.format,
            sample_rate: target.sample_rate,
            channels: target.channels,
            bitrate: options.bitrate,
            quality: options.quality,
            sample_format: options.sample_format,
            source_bits: decoder.source_bits_per_sample(),
            tags: decoder.tags().clone(),
        },
    )?;
    let mut progress = Progress::new(progress, decoder.expected_frames());
    while let Some(chunk) = decoder.next_chunk()? {
        let mixed = mixer.process(chunk);
        match resampler.as_mut() {
            Some(resampler) => encoder.write(resampler.process(mixed)?)?,
            None => encoder.write(mixed)?,
        }
        progress.update(decoder.frames_decoded());
    }
    if let Some(resampler) = resampler.as_mut() {
        encoder.write(resampler.finish()?)?;
    }
    encoder.finish()?;
    // The output may legitimately exceed the input limits (e.g. upsampled): probe it with
    // the limits lifted.
    let unlimited = Limits {
        max_duration_secs: u64::MAX,
        max_sample_rate: u32::MAX,
        max_channels: u16::MAX,
        ..*limits
    };
    let info = probe(output, &unlimited)
        .map_err(|e| MediaError::Processing(format!("the written output does not probe: {e}")))?;
    progress.finish();
    Ok(info)
}
