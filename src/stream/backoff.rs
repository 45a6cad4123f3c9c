//! Exponential backoff with jitter for retried Kinesis calls.

use std::time::Duration;

use rand::Rng;

/// Default first delay after a throttled or transient failure.
pub const DEFAULT_BASE: Duration = Duration::from_millis(200);
/// Default longest delay.
pub const DEFAULT_MAX: Duration = Duration::from_secs(10);

/// Delays that double per consecutive failure, from `base` up to `max`, each drawn uniformly
/// from the upper half of the current step ("equal jitter"), so a fleet of readers throttled
/// together does not retry in lock-step while the expected delay still grows.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    /// A backoff starting at `base` and capped at `max` (`max` is raised to `base` if lower).
    #[must_use]
    pub fn new(base: Duration, max: Duration) -> Self {
        Self { base, max: max.max(base), failures: 0 }
    }

    /// The ceiling of the current step, without jitter.
    #[must_use]
    pub fn current_ceiling(&self) -> Duration {
        let factor = 1_u32.checked_shl(self.failures.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// Records a failure and returns how long to wait before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.current_ceiling();
        self.failures = self.failures.saturating_add(1);
        let half = ceiling / 2;
        let jitter_nanos = u64::try_from((ceiling - half).as_nanos()).unwrap_or(u64::MAX);
        let extra = if jitter_nanos == 0 { 0 } else { rand::rng().random_range(0..=jitter_nanos) };
        half + Duration::from_nanos(extra)
    }

    /// Consecutive failures recorded since the last [`Backoff::reset`].
    #[must_use]
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Forgets past failures (after a success).
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(DEFAULT_BASE, DEFAULT_MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_with_jitter_up_to_max() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(1000));
        let ceilings = [100, 200, 400, 800, 1000, 1000];
        for ceiling in ceilings {
            let ceiling = Duration::from_millis(ceiling);
            assert_eq!(b.current_ceiling(), ceiling);
            let d = b.next_delay();
            assert!(d >= ceiling / 2 && d <= ceiling, "{d:?} not in [{:?}, {ceiling:?}]", ceiling / 2);
        }
        assert_eq!(b.failures(), 6);
        b.reset();
        assert_eq!(b.current_ceiling(), Duration::from_millis(100));
    }

    #[test]
    fn many_failures_do_not_overflow() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        for _ in 0..100 {
            assert!(b.next_delay() <= Duration::from_secs(30));
        }
        let mut zero = Backoff::new(Duration::ZERO, Duration::ZERO);
        assert_eq!(zero.next_delay(), Duration::ZERO);
    }
}
