//! The `analyze` operation: decode once, measure levels and loudness, clipping, DC offset,
//! silence, tempo and a waveform overview, all in the same pass and in bounded memory.

use crate::decode::Decoder;
use crate::levels::{SampleStats, Segment, SilenceDetector};
use crate::loudness::LoudnessMeter;
use crate::progress::Progress;
use crate::tempo::TempoTracker;
use crate::waveform::{Waveform, WaveformBuilder};
use crate::MediaError;
use audiomill_core::{AnalyzeOptions, Limits};
use std::path::Path;

/// Least confidence at which a tempo is reported: click tracks and music with a steady beat
/// score above 0.9, white noise about 0.03.
pub const MIN_TEMPO_CONFIDENCE: f64 = 0.2;

/// What `analyze` reports about an input.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Analysis {
    /// Container format recognized from the content, e.g. `wav`, `flac`, `mp3`, `ogg`, `mp4`.
    pub container: String,
    /// Codec of the audio track, e.g. `pcm_s16le`, `flac`, `mp3`, `vorbis`, `aac`, `alac`.
    pub codec: String,
    /// Duration of the audio actually decoded, in seconds (decoded frames / sample rate).
    pub duration_secs: f64,
    /// Sample rate in Hz.
    pub sample_rate: u32,
    /// Number of channels.
    pub channels: u16,
    /// Average bit rate in bits per second: exact for PCM, else file size × 8 / duration.
    pub bit_rate: Option<u64>,
    /// Sample peak: the largest absolute sample value over all channels, in dBFS (0 dBFS is
    /// full scale). `None` for digital silence.
    pub sample_peak_dbfs: Option<f64>,
    /// RMS level over all samples of all channels, in dBFS (a full-scale sine is −3.01 dBFS).
    /// `None` for digital silence.
    pub rms_dbfs: Option<f64>,
    /// Integrated (programme) loudness per EBU R128 / ITU-R BS.1770-4, in LUFS. `None` for
    /// silence or input shorter than one 400 ms gating block.
    pub integrated_lufs: Option<f64>,
    /// Loudness range per EBU Tech 3342, in LU. `None` for silence or input shorter than one
    /// 3 s short-term window.
    pub loudness_range_lu: Option<f64>,
    /// True peak per ITU-R BS.1770-4 (oversampled), the largest over all channels, in dBTP.
    /// `None` for digital silence.
    pub true_peak_dbtp: Option<f64>,
    /// Clipped samples over all channels: samples of a channel in runs of at least 2
    /// consecutive samples of the same sign at or beyond 0.9999 of full scale (a flattened
    /// top, as level meters count it; a lone full-scale crest is not clipping).
    pub clipped_samples: u64,
    /// DC offset: the mean of each channel, linear (−1..1; 0.1 is a tenth of full scale).
    pub dc_offset: Vec<f64>,
    /// Silent stretches: every channel's RMS over consecutive 10 ms windows stays under
    /// `silence_threshold_db` for at least `silence_min_secs`. Boundaries fall on the 10 ms
    /// grid. At most the first 10000 are listed.
    pub silence: Vec<Segment>,
    /// Estimated tempo, in beats per minute (40-220). `None` when not asked for, for input
    /// under 5 s, without onsets (silence, steady tones), or when no beat is clear enough:
    /// a confidence under [`MIN_TEMPO_CONFIDENCE`] (white noise scores about 0.03).
    pub tempo_bpm: Option<f64>,
    /// Confidence of the tempo estimate, 0 (no periodicity, e.g. noise) to 1 (a metronome);
    /// given whenever a tempo was estimated, also when it was too weak to report.
    pub tempo_confidence: Option<f64>,
    /// Waveform overview (lowest and highest sample per channel per bucket); `None` when
    /// `waveform_buckets` is 0. In a job's `result` it is also null when the analysis would
    /// exceed 256 KiB of JSON (tens of thousands of buckets): the `analysis.json` artifact
    /// always has it.
    pub waveform: Option<Waveform>,
}

/// Decodes `path` once and measures it as `options` ask. `progress` gets the fraction of the
/// input decoded.
pub fn analyze(
    path: &Path,
    options: &AnalyzeOptions,
    limits: &Limits,
    progress: &mut dyn FnMut(f64),
) -> Result<Analysis, MediaError> {
    let mut decoder = Decoder::open(path, limits)?;
    let info = decoder.info().clone();
    let (channels, rate) = (info.channels, info.sample_rate);
    let mut meter = LoudnessMeter::with_layout(channels, rate, decoder.layout())?;
    let mut stats = SampleStats::new(channels);
    let mut silence = SilenceDetector::new(
        channels,
        rate,
        options.silence_threshold_db,
        options.silence_min_secs,
    );
    let mut tempo = options.tempo.then(|| TempoTracker::new(channels, rate));
    let mut waveform = (options.waveform_buckets > 0).then(|| {
        WaveformBuilder::new(
            channels,
            options.waveform_buckets,
            decoder.expected_frames(),
        )
    });
    let mut progress = Progress::new(progress, decoder.expected_frames());
    while let Some(chunk) = decoder.next_chunk()? {
        meter.add(chunk)?;
        stats.add(chunk);
        silence.add(chunk);
        if let Some(tempo) = &mut tempo {
            tempo.add(chunk);
        }
        if let Some(waveform) = &mut waveform {
            waveform.add(chunk);
        }
        progress.update(decoder.frames_decoded());
    }
    let levels = meter.levels();
    let duration_secs = decoder.frames_decoded() as f64 / f64::from(rate);
    let tempo = tempo.and_then(TempoTracker::finish);
    progress.finish();
    Ok(Analysis {
        container: info.container,
        codec: info.codec,
        duration_secs,
        sample_rate: rate,
        channels,
        bit_rate: info.bit_rate,
        sample_peak_dbfs: levels.sample_peak_dbfs,
        rms_dbfs: levels.rms_dbfs,
        integrated_lufs: levels.integrated_lufs,
        loudness_range_lu: levels.loudness_range_lu,
        true_peak_dbtp: levels.true_peak_dbtp,
        clipped_samples: stats.clipped_samples(),
        dc_offset: stats.dc_offset(),
        silence: silence.finish(),
        tempo_bpm: tempo
            .filter(|t| t.confidence >= MIN_TEMPO_CONFIDENCE)
            .map(|t| t.bpm),
        tempo_confidence: tempo.map(|t| t.confidence),
        waveform: waveform.map(WaveformBuilder::finish),
    })
}
