//! Loudness normalization: the gain chosen from the first pass's measurement.

use crate::loudness::Levels;
use audiomill_core::Normalize;

/// The gain in dB that brings audio measured at `levels` to `normalize.target_lufs`,
/// lowered so that the true peak after the gain stays at or under
/// `normalize.true_peak_dbtp`. `None` when the loudness cannot be measured: digital
/// silence, or less than one 400 ms gating block of audio.
///
/// `levels` are measured before the `gain_db` option: since gain comes before normalization,
/// it is compensated exactly by the normalization and does not change the result.
pub(crate) fn normalization_gain_db(levels: &Levels, normalize: &Normalize) -> Option<f64> {
    let integrated = levels.integrated_lufs?;
    let true_peak = levels.true_peak_dbtp?;
    let to_target = normalize.target_lufs - integrated;
    let to_ceiling = normalize.true_peak_dbtp - true_peak;
    Some(to_target.min(to_ceiling))
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
        assert!((gain - 7.0).abs() < 1e-12);
        let n = Normalize {
            target_lufs: -9.0,
            true_peak_dbtp: -1.0,
        };
        let gain = normalization_gain_db(&levels(Some(-15.0), Some(-3.0)), &n).unwrap();
        assert!((gain - 2.0).abs() < 1e-12);
        assert_eq!(normalization_gain_db(&levels(None, None), &n), None);
        assert_eq!(normalization_gain_db(&levels(None, Some(-3.0)), &n), None);
    }
}
