//! Retry delays.

use rand::Rng;
use std::time::Duration;

/// Delay before retrying after failed attempt number `attempt` (1 for the first attempt).
///
/// Exponential with "equal jitter": the ceiling is `base * 2^(attempt - 1)`, capped at `max`,
/// and the delay is drawn uniformly from `[ceiling / 2, ceiling]`. Half the ceiling keeps the
/// delay growing with every attempt; the random half spreads retries of jobs that failed
/// together (e.g. during a storage outage) so they do not come back all at once.
pub fn backoff(attempt: u32, base: Duration, max: Duration) -> Duration {
    let ceiling = ceiling(attempt, base, max);
    let half = ceiling / 2;
    let spread = (ceiling - half).as_nanos() as u64;
    let jitter = if spread == 0 {
        0
    } else {
        rand::thread_rng().gen_range(0..=spread)
    };
    half + Duration::from_nanos(jitter)
}

/// `min(max, base * 2^(attempt - 1))`, without overflow.
fn ceiling(attempt: u32, base: Duration, max: Duration) -> Duration {
    let exponent = attempt.saturating_sub(1);
    if exponent >= 32 {
        return max;
    }
    base.checked_mul(1u32 << exponent)
        .map_or(max, |d| d.min(max))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Duration = Duration::from_secs(2);
    const MAX: Duration = Duration::from_secs(300);

    #[test]
    fn grows_exponentially_within_jitter_bounds() {
        for attempt in 1..=7 {
            let ceiling = BASE * 2u32.pow(attempt - 1);
            for _ in 0..200 {
                let d = backoff(attempt, BASE, MAX);
                assert!(d >= ceiling / 2 && d <= ceiling, "attempt {attempt}: {d:?}");
            }
        }
        // The lower bound of one attempt is the upper bound of the one before: it never shrinks.
        for attempt in 1..=6 {
            assert!(backoff(attempt + 1, BASE, MAX) >= BASE * 2u32.pow(attempt - 1));
        }
    }

    #[test]
    fn is_capped() {
        for attempt in [9, 10, 31, 32, 33, 64, 1000, u32::MAX] {
            for _ in 0..50 {
                let d = backoff(attempt, BASE, MAX);
                assert!(d >= MAX / 2 && d <= MAX, "attempt {attempt}: {d:?}");
            }
        }
    }

    #[test]
    fn jitter_actually_varies() {
        let samples: std::collections::HashSet<Duration> =
            (0..50).map(|_| backoff(6, BASE, MAX)).collect();
        assert!(samples.len() > 10);
    }

    #[test]
    fn degenerate_inputs() {
        let first = backoff(0, BASE, MAX);
        assert!(first >= BASE / 2 && first <= BASE);
        assert_eq!(backoff(3, Duration::ZERO, MAX), Duration::ZERO);
        assert_eq!(backoff(3, BASE, Duration::ZERO), Duration::ZERO);
    }
}
