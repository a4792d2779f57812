//! The `convert` operation: decode → channel map → edits → resample → encode, chunk by chunk.

use crate::channels::ChannelMixer;
use crate::decode::Decoder;
use crate::edit::normalize::{normalization_gain_db, Normalization};
use crate::edit::{start_after_end, EditPlan, Edits};
use crate::encode::{create_encoder, output_rate, EncoderSpec};
use crate::loudness::LoudnessMeter;
use crate::probe::probe;
use crate::progress::Progress;
use crate::resample::Resampler;
use crate::tags::Tags;
use crate::MediaError;
use audiomill_core::{AudioFormat, ConvertOptions, Limits, MediaInfo};
use std::path::{Path, PathBuf};

/// The output's shape, decided from the input and the options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Target {
    pub sample_rate: u32,
    pub channels: u16,
}

/// Output rate: the requested one, else the input's, made one the format can carry
/// ([`output_rate`]: nearest MP3 rate, always 48 kHz for Opus). Output channels: the
/// requested count, else the input's (one when a `channel` is picked), except that MP3 and
/// Opus (1–2 channels) get a stereo downmix of anything wider.
pub(crate) fn target(options: &ConvertOptions, rate: u32, channels: u16) -> Target {
    let sample_rate = output_rate(options.format, options.sample_rate.unwrap_or(rate));
    let source_channels = if options.channel.is_some() {
        1
    } else {
        channels
    };
    let mut out_channels = options.channels.unwrap_or(source_channels);
    if matches!(options.format, AudioFormat::Mp3 | AudioFormat::Opus) {
        out_channels = out_channels.min(2);
    }
    Target {
        sample_rate,
        channels: out_channels,
    }
}

/// What a conversion wrote.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Converted {
    /// The probe of the output.
    #[serde(flatten)]
    pub media: MediaInfo,
    /// What normalization did, when it was asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub normalization: Option<Normalization>,
}

/// Whether the headers give the exact number of frames the decoder will return: PCM in WAV
/// or AIFF, whose data size is checked against the file (`iff.rs`).
fn has_exact_length(info: &MediaInfo) -> bool {
    info.codec.starts_with("pcm_") && matches!(info.container.as_str(), "wav" | "aiff")
}

/// Converts `input` into `output` as `options` say, and returns the probe of the output (with
/// the normalization's report when one was asked for). On failure the partial output is
/// removed.
///
/// The pipeline streams: each decoded packet is channel-mapped ([`ChannelMixer`], which also
/// picks a `channel`), edited (trim, silence trim, gain or normalization, fades, in that order;
/// normalization first measures in a separate decoding pass: see the crate doc), resampled
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
) -> Result<Converted, MediaError> {
    convert_tagged(input, output, options, limits, &Tags::default(), progress)
}

/// [`convert`], with the tags set in `overrides` written in place of the input's (a download
/// names its title and uploader, which the downloaded file rarely carries).
pub fn convert_tagged(
    input: &Path,
    output: &Path,
    options: &ConvertOptions,
    limits: &Limits,
    overrides: &Tags,
    progress: &mut dyn FnMut(f64),
) -> Result<Converted, MediaError> {
    if let (Ok(a), Ok(b)) = (input.canonicalize(), output.canonicalize()) {
        if a == b {
            // Checked before anything is written: the cleanup below would delete the input.
            return Err(MediaError::InvalidOptions(
                "the output cannot be the input file".into(),
            ));
        }
    }
    let result = run(input, output, options, limits, overrides, progress);
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
    overrides: &Tags,
    progress: &mut dyn FnMut(f64),
) -> Result<Converted, MediaError> {
    let mut decoder = Decoder::open(input, limits)?;
    let (in_rate, in_channels) = (decoder.sample_rate(), decoder.channels());
    let target = target(options, in_rate, in_channels);
    let channels = usize::from(target.channels);
    // A picked channel is checked against the probe, before anything is decoded.
    let mut mixer = match options.channel {
        Some(channel) => {
            ChannelMixer::pick(usize::from(in_channels), usize::from(channel), channels)?
        }
        None => ChannelMixer::new(usize::from(in_channels), channels, decoder.layout())?,
    };
    // Lookahead of the edits (trailing silence, fade-out) spills next to the output.
    let spill_dir = match output.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut plan = EditPlan::new(options, in_rate);
    let exact_frames = has_exact_length(decoder.info()).then(|| decoder.expected_frames());
    if exact_frames.is_some_and(|frames| plan.start >= frames) {
        return Err(start_after_end());
    }
    // Frames kept by the trims, when known before the pass that writes.
    let mut kept_frames = None;
    let mut gain_db = plan.gain_db;
    // With normalization: what the first pass measured and the gain it chose.
    let mut measured = None;
    // Progress: with normalization, the measuring pass is the first half.
    let (offset, scale) = if plan.normalize.is_some() {
        (0.5, 0.5)
    } else {
        (0.0, 1.0)
    };
    if let Some(normalize) = plan.normalize {
        let layout = (options.channel.is_none() && target.channels == in_channels)
            .then(|| decoder.layout())
            .flatten();
        let mut meter = LoudnessMeter::with_layout(target.channels, in_rate, layout)?;
        let mut edits = Edits::measuring(channels, &plan, &spill_dir);
        let mut halved = |f: f64| progress(0.5 * f);
        let mut first_pass = Progress::new(&mut halved, decoder.expected_frames().min(edits.end()));
        let mut measure = |frames: &[f32]| meter.add(frames);
        while let Some(chunk) = decoder.next_chunk()? {
            edits.process(mixer.process(chunk), &mut measure)?;
            first_pass.update(decoder.frames_decoded());
            if edits.is_done() {
                break;
            }
        }
        edits.finish(&mut measure)?;
        let levels = meter.levels();
        let chosen = normalization_gain_db(&levels, &normalize);
        match chosen {
            Some(chosen) => gain_db = chosen.gain_db,
            None => tracing::warn!(
                ?levels,
                "loudness not measurable (digital silence or under 0.4 s): not normalized"
            ),
        }
        tracing::debug!(?levels, gain_db, "normalization measured");
        let output_meter = LoudnessMeter::with_layout(target.channels, in_rate, layout)?;
        measured = Some((normalize, levels, chosen, output_meter));
        // The second pass keeps exactly what the first kept, so it needs no silence
        // detection and knows the length.
        plan.start = edits.kept_start();
        plan.end = plan.start + edits.kept_frames();
        plan.silence_db = None;
        kept_frames = Some(edits.kept_frames());
        decoder = Decoder::open(input, limits)?;
    } else if plan.silence_db.is_none() {
        if let Some(frames) = exact_frames {
            plan.end = plan.end.min(frames);
            kept_frames = Some(plan.end - plan.start);
        }
    }
    let gain = 10f64.powf(gain_db / 20.0) as f32;
    let mut edits = Edits::new(channels, &plan, gain, kept_frames, &spill_dir);
    let mut resampler = if target.sample_rate != in_rate {
        Some(Resampler::new(channels, in_rate, target.sample_rate)?)
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
            tags: decoder.tags().clone().overridden_by(overrides),
        },
    )?;
    let mut mapped = |f: f64| progress(offset + scale * f);
    let mut progress = Progress::new(&mut mapped, decoder.expected_frames().min(edits.end()));
    // Normalized audio is measured again as it goes to the encoder: the report says what
    // the output reaches (fades included), not what the gain should give.
    let mut output_meter = measured.as_mut().map(|(_, _, _, meter)| meter);
    let mut write = |frames: &[f32]| {
        if let Some(meter) = output_meter.as_mut() {
            meter.add(frames)?;
        }
        match resampler.as_mut() {
            Some(resampler) => encoder.write(resampler.process(frames)?),
            None => encoder.write(frames),
        }
    };
    while let Some(chunk) = decoder.next_chunk()? {
        edits.process(mixer.process(chunk), &mut write)?;
        progress.update(decoder.frames_decoded());
        if edits.is_done() {
            break;
        }
    }
    edits.finish(&mut write)?;
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
    let media = probe(output, &unlimited)
        .map_err(|e| MediaError::Processing(format!("the written output does not probe: {e}")))?;
    progress.finish();
    let normalization = measured.map(|(normalize, input, chosen, meter)| {
        Normalization::report(&normalize, &input, chosen, &meter.levels())
    });
    Ok(Converted {
        media,
        normalization,
    })
}
