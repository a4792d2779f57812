//! Loudness normalization: the gain chosen from the first pass's measurement, and the report
//! of what it reached.

use crate::loudness::Levels;
use audiomill_core::Normalize;
use serde::Serialize;

/// What a normalization did, reported with the job's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Normalization {
    /// Loudness asked for, in LUFS.
    pub target_lufs: f64,
    /// True-peak ceiling asked for, in dBTP.
    pub true_peak_ceiling_dbtp: f64,
    /// Integrated loudness of the input (after the trims), in LUFS; `None` when it cannot be
    /// measured (digital silence, or under 0.4 s of audio).
    pub input_lufs: Option<f64>,
    /// True peak of the input (after the trims), in dBTP.
    pub input_true_peak_dbtp: Option<f64>,
    /// Gain applied, in dB (0 when nothing could be measured).
    pub gain_db: f64,
    /// Integrated loudness of the output, measured on the audio sent to the encoder (after
    /// the gain and the fades), in LUFS.
    pub output_lufs: Option<f64>,
    /// True peak of the output, measured the same way, in dBTP.
    pub output_true_peak_dbtp: Option<f64>,
    /// Whether the ceiling held the gain below what the target needs: the output is then
    /// quieter than `target_lufs`.
    pub limited_by_true_peak: bool,
    /// One sentence on the outcome, for people.
    pub summary: String,
}

/// The gain to apply and whether the ceiling chose it; `None` when the loudness cannot be
/// measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ChosenGain {
    pub gain_db: f64,
    pub limited_by_true_peak: bool,
}

impl Normalization {
    /// The report of a normalization to `normalize` of audio measured at `input`, with
    /// `chosen` gain, whose output measured `output`.
    pub(crate) fn report(
        normalize: &Normalize,
        input: &Levels,
        chosen: Option<ChosenGain>,
        output: &Levels,
    ) -> Self {
        let (gain_db, limited) =
            chosen.map_or((0.0, false), |c| (c.gain_db, c.limited_by_true_peak));
        let reached = output.integrated_lufs;
        let summary = match (chosen, reached) {
            (None, _) | (_, None) => {
                "the loudness could not be measured (digital silence, or under 0.4 s of audio): no gain was applied".to_owned()
            }
            (Some(_), Some(reached)) if limited => format!(
                "the true-peak ceiling of {:.1} dBTP held the gain at {gain_db:+.1} dB: the output reaches {reached:.1} LUFS, short of the {:.1} LUFS target",
                normalize.true_peak_dbtp, normalize.target_lufs
            ),
            (Some(_), Some(reached)) => format!(
                "a gain of {gain_db:+.1} dB brought the output to {reached:.1} LUFS (target {:.1} LUFS)",
                normalize.target_lufs
            ),
        };
        Normalization {
            target_lufs: normalize.target_lufs,
            true_peak_ceiling_dbtp: normalize.true_peak_dbtp,
            input_lufs: input.integrated_lufs,
            input_true_peak_dbtp: input.true_peak_dbtp,
            gain_db,
            output_lufs: reached,
            output_true_peak_dbtp: output.true_peak_dbtp,
            limited_by_true_peak: limited,
            summary,
        }
    }
}

/// The gain in dB that brings audio measured at `levels` to `normalize.target_lufs`,
/// lowered so that the true peak after the gain stays at or under
/// `normalize.true_peak_dbtp`. `None` when the loudness cannot be measured: digital
/// silence, or less than one 400 ms gating block of audio.
///
/// `levels` are measured before the `gain_db` option: since gain comes before normalization,
/// it is compensated exactly by the normalization and does not change the result.
pub(crate) fn normalization_gain_db(levels: &Levels, normalize: &Normalize) -> Option<ChosenGain> {
    let integrated = levels.integrated_lufs?;
    let true_peak = levels.true_peak_dbtp?;
    let to_target = normalize.target_lufs - integrated;
    let to_ceiling = normalize.true_peak_dbtp - true_peak;
    Some(ChosenGain {
        gain_db: to_target.min(to_ceiling),
        limited_by_true_peak: to_ceiling < to_target,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn levels(integrated: Option<f64>, true_peak: Option<f64>) -> Levels {
        Levels {
            sample_peak_dbfs: true_peak,
            rms_dbfs: integrated,
            integrated_lufs: integrated,
            loudness_range_lu: None,
            true_peak_dbtp: true_peak,
        }
    }

    #[test]
    fn target_unless_the_ceiling_binds() {
        let n = Normalize {
            target_lufs: -23.0,
            true_peak_dbtp: -1.0,
        };
        let gain = normalization_gain_db(&levels(Some(-30.0), Some(-20.0)), &n).unwrap();
        assert!((gain.gain_db - 7.0).abs() < 1e-12);
        assert!(!gain.limited_by_true_peak);
        let n = Normalize {
            target_lufs: -9.0,
            true_peak_dbtp: -1.0,
        };
        let gain = normalization_gain_db(&levels(Some(-15.0), Some(-3.0)), &n).unwrap();
        assert!((gain.gain_db - 2.0).abs() < 1e-12);
        assert!(gain.limited_by_true_peak);
        assert_eq!(normalization_gain_db(&levels(None, None), &n), None);
        assert_eq!(normalization_gain_db(&levels(None, Some(-3.0)), &n), None);
    }
}
