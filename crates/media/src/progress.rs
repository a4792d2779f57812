//! Throttled progress reporting.

use std::time::{Duration, Instant};

/// Shortest interval between two reports (so at most ~50 calls per second).
const MIN_INTERVAL: Duration = Duration::from_millis(20);

/// Reports the fraction of an input processed, computed from the position (frames done out
/// of frames expected), never from elapsed time. Time only throttles how often the callback
/// runs. With no expected length (zero or unknown) it stays silent until [`Progress::finish`].
pub(crate) struct Progress<'a> {
    callback: &'a mut dyn FnMut(f64),
    total: u64,
    last_fraction: f64,
    last_call: Option<Instant>,
}

impl<'a> Progress<'a> {
    pub(crate) fn new(callback: &'a mut dyn FnMut(f64), total: u64) -> Self {
        Progress {
            callback,
            total,
            last_fraction: 0.0,
            last_call: None,
        }
    }

    /// Notes that `done` of the expected frames have been processed.
    pub(crate) fn update(&mut self, done: u64) {
        if self.total == 0 {
            return;
        }
        // Headers may under-promise: never report past 1, and never go backwards.
        let fraction = (done as f64 / self.total as f64).clamp(0.0, 1.0);
        if fraction <= self.last_fraction {
            return;
        }
        if self.last_call.is_some_and(|t| t.elapsed() < MIN_INTERVAL) {
            return;
        }
        self.last_call = Some(Instant::now());
        self.last_fraction = fraction;
        (self.callback)(fraction);
    }

    /// Reports completion.
    pub(crate) fn finish(&mut self) {
        self.last_fraction = 1.0;
        (self.callback)(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_length_reports_only_completion() {
        let mut seen = Vec::new();
        let mut record = |f: f64| seen.push(f);
        let mut progress = Progress::new(&mut record, 0);
        progress.update(100);
        progress.finish();
        assert_eq!(seen, vec![1.0]);
    }

    #[test]
    fn fractions_are_bounded_monotonic_and_throttled() {
        let mut seen = Vec::new();
        let mut record = |f: f64| seen.push(f);
        let mut progress = Progress::new(&mut record, 1000);
        for done in (0..=5000).step_by(10) {
            progress.update(done);
        }
        progress.finish();
        assert!(seen.len() <= 3, "{seen:?}");
        assert!(seen.windows(2).all(|w| w[0] <= w[1]));
        assert!(seen.iter().all(|f| (0.0..=1.0).contains(f)));
        assert_eq!(seen.last(), Some(&1.0));
    }
}
