//! The `analyze` operation: decode once, measure levels and loudness.

use crate::decode::Decoder;
use crate::loudness::LoudnessMeter;
use crate::progress::Progress;
use crate::MediaError;
use audiomill_core::Limits;
use std::path::Path;

/// What `analyze` reports about an input.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
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
}

/// Decodes `path` and measures it. `progress` gets the fraction of the input decoded.
pub fn analyze(
    path: &Path,
    limits: &Limits,
    progress: &mut dyn FnMut(f64),
) -> Result<Analysis, MediaError> {
    let mut decoder = Decoder::open(path, limits)?;
    let info = decoder.info().clone();
    let mut meter = LoudnessMeter::with_layout(info.channels, info.sample_rate, decoder.layout())?;
    let mut progress = Progress::new(progress, decoder.expected_frames());
    while let Some(chunk) = decoder.next_chunk()? {
        meter.add(chunk)?;
        progress.update(decoder.frames_decoded());
    }
    let levels = meter.levels();
    let duration_secs = decoder.frames_decoded() as f64 / f64::from(info.sample_rate);
    progress.finish();
    Ok(Analysis {
        container: info.container,
        codec: info.codec,
        duration_secs,
        sample_rate: info.sample_rate,
        channels: info.channels,
        bit_rate: info.bit_rate,
        sample_peak_dbfs: levels.sample_peak_dbfs,
        rms_dbfs: levels.rms_dbfs,
        integrated_lufs: levels.integrated_lufs,
        loudness_range_lu: levels.loudness_range_lu,
        true_peak_dbtp: levels.true_peak_dbtp,
    })
}
