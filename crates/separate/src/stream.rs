//! Separating a file into stem files in bounded memory: what `demucs.separate` does for a
//! track (`Separator.separate_tensor` + saving each stem), without ever holding the track.
//!
//! 1. **First pass**: decode, map the channels to the model's as `convert_audio_channels`
//!    does (mono is repeated, extra channels are dropped: the first two are separated), and
//!    resample to the model's rate; only the mono mix's mean and standard deviation are
//!    kept ([`MixStats`]) and the frames counted.
//! 2. **Second pass**: decode again (the same deterministic pipeline, so the same frames),
//!    normalize, and run the rolling overlap-add (`stream/engine.rs`), which walks exactly
//!    `apply_model`'s chunk grid — every shift and every network of the bag in lockstep — and
//!    releases each region of the track as soon as no pending chunk touches it.
//! 3. Released regions are de-normalized, mixed into the requested stems (`no_<stem>` is the
//!    sum of the other stems, as `--two-stems`), mapped back to the input's channel count
//!    (mono input gives mono stems: the average of the model's two output channels, as the
//!    stems of a mono track should be mono; stereo and wider inputs give stereo stems),
//!    resampled to the input's rate (then made one the format carries: MP3's nearest, Opus's
//!    48 kHz) and encoded, one encoder per stem, while the track is being processed. Each
//!    stem has exactly the input's length (at the output rate).
//!
//! Memory: the input from the earliest window a pending chunk reads to the latest it has
//! read (≤ 1.5 windows + the lockstep spread), and per pass (network × shift) one
//! accumulator of `sources × channels + 1` rows over at most one segment plus the spread;
//! see [`buffer_bounds`]. Nothing depends on the track's length. On any failure or cancel,
//! the stem files written so far are removed.

mod engine;

use crate::apply::{passes, ApplyOptions, Grid};
use crate::bag::Bag;
use crate::separator::{MixStats, Normalization};
use crate::SeparateError;
use audiomill_core::{AudioFormat, Limits, SampleFormat};
use audiomill_media::encode::{create_encoder, output_rate, Encoder, EncoderSpec};
use audiomill_media::{ChannelMixer, Decoder, Resampler};
use engine::{Block, Engine, MixSource};
use std::path::{Path, PathBuf};

/// How the stems are encoded (the options `convert` takes for its output).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StemEncoding {
    /// Output format.
    pub format: AudioFormat,
    /// PCM sample format (WAV, FLAC); the encoder's default when `None` (see
    /// `audiomill_media::encode::create_encoder`).
    pub sample_format: Option<SampleFormat>,
    /// Bit rate in kbit/s (MP3 CBR, Opus); the format's default when `None`.
    pub bitrate: Option<u32>,
    /// MP3 VBR quality 0 (best) to 9; CBR when `None`.
    pub quality: Option<u8>,
}

impl Default for StemEncoding {
    /// 16-bit WAV, as `demucs.separate` writes by default.
    fn default() -> Self {
        StemEncoding {
            format: AudioFormat::Wav,
            sample_format: None,
            bitrate: None,
            quality: None,
        }
    }
}

/// What to separate and how to write it.
#[derive(Debug, Clone, PartialEq)]
pub struct SeparateParams {
    /// Stems to write, by source name; empty for all of them.
    pub stems: Vec<String>,
    /// Write only this stem and `no_<stem>` (the sum of the others), as `--two-stems`.
    /// Exclusive with `stems`.
    pub two_stems: Option<String>,
    /// How the bag is applied (shifts, overlap, segment…).
    pub apply: ApplyOptions,
    /// Existing directory the stems are written to, as `<stem>.<ext>`.
    pub out_dir: PathBuf,
    /// How the stems are encoded.
    pub encoder: StemEncoding,
}

impl SeparateParams {
    /// The parameters of a `separate` job's options (`audiomill_core::SeparateOptions`), writing
    /// into `out_dir`. `seed` drives the random shifts (with `shifts: 0` it changes nothing).
    pub fn from_options(
        options: &audiomill_core::SeparateOptions,
        out_dir: PathBuf,
        seed: u64,
    ) -> SeparateParams {
        SeparateParams {
            stems: options.stems.iter().map(|s| s.to_string()).collect(),
            two_stems: options.two_stems.as_ref().map(|s| s.to_string()),
            apply: ApplyOptions {
                shifts: options.shifts as usize,
                split: true,
                overlap: options.overlap,
                transition_power: 1.0,
                segment: options.segment,
                offsets: crate::ShiftOffsets::Random { seed },
            },
            out_dir,
            encoder: StemEncoding {
                format: options.format,
                sample_format: options.sample_format,
                bitrate: options.bitrate,
                quality: options.quality,
            },
        }
    }
}

/// A stem written by [`separate_file`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StemFile {
    /// Its name: a source of the model, or `no_<source>`.
    pub stem: String,
    /// Where it was written: `out_dir/<stem>.<ext>`.
    pub path: PathBuf,
    /// Frames written (the input's length at `sample_rate`).
    pub frames: u64,
    /// Sample rate of the file, in Hz.
    pub sample_rate: u32,
    /// Channels of the file.
    pub channels: u16,
}

/// Peak buffer sizes of a streaming run, in frames: what its memory is made of beyond the
/// network itself. Independent of the track's length (see [`buffer_bounds`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamStats {
    /// Most model-rate input frames buffered at once (× channels × 4 bytes).
    pub peak_input_frames: usize,
    /// Longest accumulator of a pass (× (stems asked × channels + 1) × 4 bytes × passes).
    pub peak_accumulator_frames: usize,
    /// Passes run (networks not skipped × max(shifts, 1)).
    pub passes: usize,
    /// Chunks the networks ran on.
    pub chunks: usize,
}

/// Upper bounds of the streaming buffers, in frames at the model's rate, for a bag and
/// options: whatever the track's length (see [`buffer_bounds`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferBounds {
    /// Bound of [`StreamStats::peak_input_frames`], not counting the one read of the decoded
    /// source that may overshoot what a chunk needs (a codec packet resampled to the model's
    /// rate: about a thousand frames for MP3/AAC/WAV, at most 65 535 for FLAC before
    /// resampling).
    pub input_frames: usize,
    /// Bound of [`StreamStats::peak_accumulator_frames`].
    pub accumulator_frames: usize,
}

/// The buffer bounds of `bag` under `options` (split only: without split, a pass is one
/// chunk as long as the track, which only the transformer's window bounds).
///
/// With `W` the longest window a network sees, `S` the longest segment and `D` the spread of
/// the passes' next chunk starts (at most the largest stride, or `int(0.5 * samplerate)`
/// with shifts if larger): an accumulator spans at most `S + D` (from the emitted frontier to
/// the end of the last chunk added), the input at most `W / 2 + D + W` (from the start of the
/// earliest pending window, which reaches at most half a window before its chunk, to the end
/// of the last window read).
pub fn buffer_bounds(bag: &Bag, options: &ApplyOptions) -> Result<BufferBounds, SeparateError> {
    let mut window = 0;
    let mut segment = 0;
    let mut stride = 0;
    for member in bag.members() {
        let grid = Grid::new(member, options, bag.samplerate())?;
        let (s, t) = grid.segment_and_stride().ok_or_else(|| {
            SeparateError::InvalidOption("without split, memory grows with the track".into())
        })?;
        window = window.max(grid.max_window(s));
        segment = segment.max(s);
        stride = stride.max(t);
    }
    let spread = if options.shifts > 0 {
        stride.max(crate::apply::max_shift(bag.samplerate()))
    } else {
        stride
    };
    Ok(BufferBounds {
        input_frames: window / 2 + spread + window,
        accumulator_frames: segment + spread,
    })
}

/// One output file: a stem or the sum of the others.
#[derive(Debug, Clone)]
enum Output {
    Source(usize),
    AllBut(usize),
}

/// Separates `input` into stem files in `params.out_dir`, in memory that does not grow with
/// the track (see the module doc). `progress` gets the fraction of network chunks done;
/// `cancel` is polled between chunks (and while measuring the track) and stops with
/// [`SeparateError::Canceled`]. On any error the stem files written so far are removed.
pub fn separate_file(
    bag: &Bag,
    input: &Path,
    params: &SeparateParams,
    limits: &Limits,
    progress: &mut dyn FnMut(f64),
    cancel: &dyn Fn() -> bool,
) -> Result<Vec<StemFile>, SeparateError> {
    separate_file_with_stats(bag, input, params, limits, progress, cancel).map(|(files, _)| files)
}

/// [`separate_file`], also returning the peak buffer sizes of the run.
pub fn separate_file_with_stats(
    bag: &Bag,
    input: &Path,
    params: &SeparateParams,
    limits: &Limits,
    progress: &mut dyn FnMut(f64),
    cancel: &dyn Fn() -> bool,
) -> Result<(Vec<StemFile>, StreamStats), SeparateError> {
    let outputs = plan_outputs(bag, params)?;
    params.apply.validate(bag)?;
    if !params.out_dir.is_dir() {
        return Err(SeparateError::InvalidOption(format!(
            "the output directory {} does not exist",
            params.out_dir.display()
        )));
    }
    let channels = bag.channels();

    // Pass 1: the mono mix's statistics and the length at the model's rate.
    let mut reader = ModelRateReader::open(input, limits, channels, bag.samplerate())?;
    let mut stats = MixStats::default();
    let mut length = 0usize;
    while reader.next(&mut |frames| {
        stats.add_interleaved(frames, channels);
        length += frames.len() / channels;
    })? {
        if cancel() {
            return Err(SeparateError::Canceled);
        }
    }
    if length == 0 {
        return Err(SeparateError::InvalidOption(
            "the input has no audio".into(),
        ));
    }
    let input_frames = reader.decoder.frames_decoded();
    let input_rate = reader.decoder.sample_rate();
    let input_channels = reader.decoder.channels();
    let tags = reader.decoder.tags().clone();
    let source_bits = reader.decoder.source_bits_per_sample();
    drop(reader);

    // Pass 2: separate and write.
    let needed = needed_sources(bag, &outputs);
    let grids = bag
        .members()
        .iter()
        .map(|m| Grid::new(m, &params.apply, bag.samplerate()))
        .collect::<Result<Vec<_>, _>>()?;
    let passes = passes(bag, &params.apply)?;
    let norm = stats.normalization();
    let engine = Engine::new(
        bag,
        grids,
        &passes,
        params.apply.shifts,
        length,
        needed,
        norm,
    );
    let mut source = FileMix {
        reader: ModelRateReader::open(input, limits, channels, bag.samplerate())?,
        norm,
    };
    let out_channels: u16 = if input_channels == 1 {
        1
    } else {
        channels as u16
    };
    let out_rate = output_rate(params.encoder.format, input_rate);
    let target_frames =
        (input_frames as f64 * f64::from(out_rate) / f64::from(input_rate)).round() as u64;
    let mut files = CreatedFiles::default();
    let mut writers = Vec::with_capacity(outputs.len());
    for (name, output) in &outputs {
        let path = params
            .out_dir
            .join(format!("{name}.{}", params.encoder.format.extension()));
        let spec = EncoderSpec {
            format: params.encoder.format,
            sample_rate: out_rate,
            channels: out_channels,
            bitrate: params.encoder.bitrate,
            quality: params.encoder.quality,
            sample_format: params.encoder.sample_format,
            source_bits,
            tags: tags.clone(),
        };
        // A file that was already there is only removed once it has been replaced.
        let existed = path.exists();
        let writer = StemWriter::create(
            name.clone(),
            output.clone(),
            path.clone(),
            &spec,
            channels,
            bag.samplerate(),
            target_frames,
        );
        if writer.is_ok() || !existed {
            files.paths.push(path);
        }
        writers.push(writer?);
    }
    let mut interleaved = Vec::new();
    let mut sink = |block: Block<'_>| -> Result<(), SeparateError> {
        for writer in &mut writers {
            mix_output(&writer.output, &block, channels, &mut interleaved);
            writer.write(&interleaved)?;
        }
        Ok(())
    };
    let peaks = engine.run(&mut source, &mut sink, progress, cancel)?;
    let mut stems = Vec::with_capacity(writers.len());
    for writer in writers {
        stems.push(writer.finish(out_rate, out_channels)?);
    }
    files.keep();
    progress(1.0);
    Ok((
        stems,
        StreamStats {
            peak_input_frames: peaks.input_frames,
            peak_accumulator_frames: peaks.accumulator_frames,
            passes: peaks.passes,
            chunks: peaks.chunks,
        },
    ))
}

/// The files to write, in order, with their names; checks the requested stems.
fn plan_outputs(
    bag: &Bag,
    params: &SeparateParams,
) -> Result<Vec<(String, Output)>, SeparateError> {
    let index_of = |name: &str| {
        bag.sources().iter().position(|s| s == name).ok_or_else(|| {
            SeparateError::InvalidOption(format!(
                "the model has no stem {name:?}: it has {}",
                bag.sources().join(", ")
            ))
        })
    };
    let outputs = match &params.two_stems {
        Some(stem) => {
            if !params.stems.is_empty() {
                return Err(SeparateError::InvalidOption(
                    "two_stems and stems cannot be combined".into(),
                ));
            }
            let k = index_of(stem)?;
            vec![
                (stem.clone(), Output::Source(k)),
                (format!("no_{stem}"), Output::AllBut(k)),
            ]
        }
        None if params.stems.is_empty() => bag
            .sources()
            .iter()
            .enumerate()
            .map(|(k, s)| (s.clone(), Output::Source(k)))
            .collect(),
        None => {
            let mut outputs: Vec<(String, Output)> = Vec::new();
            for stem in &params.stems {
                let k = index_of(stem)?;
                if outputs.iter().any(|(name, _)| name == stem) {
                    return Err(SeparateError::InvalidOption(format!(
                        "stem {stem:?} is asked for twice"
                    )));
                }
                outputs.push((stem.clone(), Output::Source(k)));
            }
            outputs
        }
    };
    // Names come from the checkpoint and become file names.
    for (name, _) in &outputs {
        let safe = !name.is_empty()
            && !name.starts_with('.')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !safe {
            return Err(SeparateError::Unsupported(format!(
                "stem name {name:?} cannot be a file name"
            )));
        }
    }
    Ok(outputs)
}

/// Which sources the outputs read.
fn needed_sources(bag: &Bag, outputs: &[(String, Output)]) -> Vec<bool> {
    let mut needed = vec![false; bag.sources().len()];
    for (_, output) in outputs {
        match output {
            Output::Source(k) => needed[*k] = true,
            Output::AllBut(_) => needed.iter_mut().for_each(|n| *n = true),
        }
    }
    needed
}

/// Interleaves one output's frames of `block` at the model's channel count into `out`.
fn mix_output(output: &Output, block: &Block<'_>, channels: usize, out: &mut Vec<f32>) {
    out.clear();
    out.reserve(block.frames * channels);
    for t in 0..block.frames {
        for c in 0..channels {
            let sample = match output {
                Output::Source(k) => block.rows[k * channels + c][t],
                // `--two-stems`: zeros plus every other stem, in source order.
                Output::AllBut(skip) => (0..block.rows.len() / channels)
                    .filter(|k| k != skip)
                    .fold(0f32, |sum, k| sum + block.rows[k * channels + c][t]),
            };
            out.push(sample);
        }
    }
}

/// Removes the files it lists when dropped, unless told to keep them.
#[derive(Default)]
struct CreatedFiles {
    paths: Vec<PathBuf>,
}

impl CreatedFiles {
    fn keep(&mut self) {
        self.paths.clear();
    }
}

impl Drop for CreatedFiles {
    fn drop(&mut self) {
        for path in &self.paths {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Decodes a file to interleaved frames at the model's rate and channel count.
struct ModelRateReader {
    decoder: Decoder,
    source_channels: usize,
    channels: usize,
    resampler: Option<Resampler>,
    mapped: Vec<f32>,
    finished: bool,
}

impl ModelRateReader {
    fn open(
        path: &Path,
        limits: &Limits,
        channels: usize,
        rate: u32,
    ) -> Result<Self, SeparateError> {
        let decoder = Decoder::open(path, limits)?;
        let source_channels = usize::from(decoder.channels());
        if source_channels > 1 && source_channels < channels {
            return Err(SeparateError::Unsupported(format!(
                "cannot map {source_channels} channels to the model's {channels}"
            )));
        }
        let resampler = if decoder.sample_rate() != rate {
            Some(Resampler::new(channels, decoder.sample_rate(), rate)?)
        } else {
            None
        };
        Ok(ModelRateReader {
            decoder,
            source_channels,
            channels,
            resampler,
            mapped: Vec::new(),
            finished: false,
        })
    }

    /// Hands the next frames to `f`; false once the stream is over.
    fn next(&mut self, f: &mut dyn FnMut(&[f32])) -> Result<bool, SeparateError> {
        if self.finished {
            return Ok(false);
        }
        match self.decoder.next_chunk()? {
            Some(chunk) => {
                convert_channels(chunk, self.source_channels, self.channels, &mut self.mapped);
                match self.resampler.as_mut() {
                    Some(resampler) => f(resampler.process(&self.mapped)?),
                    None => f(&self.mapped),
                }
            }
            None => {
                if let Some(resampler) = self.resampler.as_mut() {
                    f(resampler.finish()?);
                }
                self.finished = true;
            }
        }
        Ok(true)
    }
}

/// `convert_audio_channels`: same count kept; to mono, the channels' mean; from mono,
/// repeated; from more channels, the first ones.
fn convert_channels(frames: &[f32], from: usize, to: usize, out: &mut Vec<f32>) {
    out.clear();
    if from == to {
        out.extend_from_slice(frames);
        return;
    }
    out.reserve(frames.len() / from * to);
    for frame in frames.chunks_exact(from) {
        if to == 1 {
            out.push(frame.iter().sum::<f32>() / from as f32);
        } else if from == 1 {
            out.extend(std::iter::repeat_n(frame[0], to));
        } else {
            out.extend_from_slice(&frame[..to]);
        }
    }
}

/// The second pass's source: decoded frames, normalized, split into channel rows.
struct FileMix {
    reader: ModelRateReader,
    norm: Normalization,
}

impl MixSource for FileMix {
    fn read(&mut self, rows: &mut [Vec<f32>]) -> Result<usize, SeparateError> {
        let channels = rows.len();
        let norm = self.norm;
        let mut appended = 0;
        while appended == 0 {
            let more = self.reader.next(&mut |frames| {
                for frame in frames.chunks_exact(channels) {
                    for (row, x) in rows.iter_mut().zip(frame) {
                        row.push(norm.normalize(*x));
                    }
                }
                appended += frames.len() / channels;
            })?;
            if !more {
                break;
            }
        }
        Ok(appended)
    }
}

/// One stem file being written: model channels → output channels → output rate → encoder,
/// cut or padded to the input's exact length.
struct StemWriter {
    name: String,
    output: Output,
    path: PathBuf,
    mixer: ChannelMixer,
    resampler: Option<Resampler>,
    encoder: Box<dyn Encoder>,
    written: u64,
    target: u64,
}

impl StemWriter {
    fn create(
        name: String,
        output: Output,
        path: PathBuf,
        spec: &EncoderSpec,
        model_channels: usize,
        model_rate: u32,
        target: u64,
    ) -> Result<Self, SeparateError> {
        let mixer = ChannelMixer::new(model_channels, usize::from(spec.channels), None)?;
        let resampler = if spec.sample_rate != model_rate {
            Some(Resampler::new(
                usize::from(spec.channels),
                model_rate,
                spec.sample_rate,
            )?)
        } else {
            None
        };
        let encoder = create_encoder(&path, spec)?;
        Ok(StemWriter {
            name,
            output,
            path,
            mixer,
            resampler,
            encoder,
            written: 0,
            target,
        })
    }

    fn write(&mut self, frames: &[f32]) -> Result<(), SeparateError> {
        let channels = self.mixer.output_channels();
        let mapped = self.mixer.process(frames);
        let out = match self.resampler.as_mut() {
            Some(resampler) => resampler.process(mapped)?,
            None => mapped,
        };
        write_capped(
            self.encoder.as_mut(),
            out,
            channels,
            &mut self.written,
            self.target,
        )
    }

    fn finish(mut self, sample_rate: u32, channels: u16) -> Result<StemFile, SeparateError> {
        let width = usize::from(channels);
        if let Some(resampler) = self.resampler.as_mut() {
            let tail = resampler.finish()?;
            write_capped(
                self.encoder.as_mut(),
                tail,
                width,
                &mut self.written,
                self.target,
            )?;
        }
        // Two resamplings may leave the length one frame short of the input's.
        if self.written < self.target {
            let missing = (self.target - self.written) as usize;
            let silence = vec![0f32; missing * width];
            write_capped(
                self.encoder.as_mut(),
                &silence,
                width,
                &mut self.written,
                self.target,
            )?;
        }
        self.encoder.finish()?;
        Ok(StemFile {
            stem: self.name,
            path: self.path,
            frames: self.written,
            sample_rate,
            channels,
        })
    }
}

/// Writes interleaved `frames`, dropping whatever would go past `target` frames.
fn write_capped(
    encoder: &mut dyn Encoder,
    frames: &[f32],
    channels: usize,
    written: &mut u64,
    target: u64,
) -> Result<(), SeparateError> {
    let room = target.saturating_sub(*written);
    let n = ((frames.len() / channels) as u64).min(room) as usize;
    if n > 0 {
        encoder.write(&frames[..n * channels])?;
        *written += n as u64;
    }
    Ok(())
}
