//! Exponential restart backoff for a crashed, hung or misbehaving child.
//!
//! The shard consumer (not this module) decides *whether* to restart a child; it asks a
//! [`Backoff`] *how long to wait* first. Each failure doubles (by default) the delay up to
//! a cap, with random jitter so that many shards failing together (a bad deploy, a full
//! disk) do not restart in lockstep. A child that ran for at least
//! [`BackoffPolicy::healthy_after`] before failing is considered to have been healthy, and
//! the sequence starts again from [`BackoffPolicy::initial`].
//!
//! Time is measured with `tokio::time`, so tests can drive it with paused time.

use std::time::Duration;

/// The shape of a [`Backoff`] sequence.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackoffPolicy {
    /// The delay after the first failure (before jitter).
    pub initial: Duration,
    /// The largest delay (before jitter).
    pub max: Duration,
    /// Growth factor per consecutive failure; values below 1 are treated as 1.
    pub multiplier: f64,
    /// Fraction of each delay that is randomised, in `[0, 1]`: the delay is drawn from
    /// `[base × (1 − jitter), base]`. Out-of-range values are clamped.
    pub jitter: f64,
    /// A child that ran at least this long before failing resets the sequence.
    pub healthy_after: Duration,
}

impl BackoffPolicy {
    /// Default first delay.
    pub const DEFAULT_INITIAL: Duration = Duration::from_secs(1);
    /// Default cap.
    pub const DEFAULT_MAX: Duration = Duration::from_secs(60);
    /// Default growth factor.
    pub const DEFAULT_MULTIPLIER: f64 = 2.0;
    /// Default jitter fraction.
    pub const DEFAULT_JITTER: f64 = 0.2;
    /// Default healthy period.
    pub const DEFAULT_HEALTHY_AFTER: Duration = Duration::from_secs(60);
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        Self {
            initial: Self::DEFAULT_INITIAL,
            max: Self::DEFAULT_MAX,
            multiplier: Self::DEFAULT_MULTIPLIER,
            jitter: Self::DEFAULT_JITTER,
            healthy_after: Self::DEFAULT_HEALTHY_AFTER,
        }
    }
}

/// Consecutive-failure state for one shard's child restarts.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: BackoffPolicy,
    failures: u32,
}

impl Backoff {
    /// A fresh sequence (no failures yet).
    pub fn new(policy: BackoffPolicy) -> Self {
        let policy = BackoffPolicy {
            multiplier: if policy.multiplier.is_finite() { policy.multiplier.max(1.0) } else { 1.0 },
            jitter: if policy.jitter.is_finite() { policy.jitter.clamp(0.0, 1.0) } else { 0.0 },
            ..policy
        };
        Self { policy, failures: 0 }
    }

    /// The policy in use (after clamping).
    pub fn policy(&self) -> &BackoffPolicy {
        &self.policy
    }

    /// Consecutive failures recorded since the last reset.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Forgets all failures.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// Records a failure of a child that had been running for `uptime`, and returns how
    /// long to wait before restarting it.
    pub fn next_delay(&mut self, uptime: Duration) -> Duration {
        if uptime >= self.policy.healthy_after {
            self.failures = 0;
        }
        self.failures = self.failures.saturating_add(1);
        let base = self.base_delay(self.failures);
        let jitter = self.policy.jitter * rand::random::<f64>();
        base.mul_f64(1.0 - jitter)
    }

    /// [`next_delay`](Self::next_delay), then sleeps for it; returns the delay slept.
    ///
    /// Cancel safe: if the sleep is cancelled the failure stays recorded.
    pub async fn wait(&mut self, uptime: Duration) -> Duration {
        let delay = self.next_delay(uptime);
        tokio::time::sleep(delay).await;
        delay
    }

    /// The un-jittered delay for the `n`th consecutive failure (`n` ≥ 1).
    fn base_delay(&self, n: u32) -> Duration {
        let exponent = i32::try_from(n.saturating_sub(1)).unwrap_or(i32::MAX);
        let secs = self.policy.initial.as_secs_f64() * self.policy.multiplier.powi(exponent);
        let cap = self.policy.max.as_secs_f64();
        // `secs` may be +inf after many failures; `min` brings it back to the finite cap.
        Duration::from_secs_f64(secs.min(cap))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    fn no_jitter() -> BackoffPolicy {
        BackoffPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
            multiplier: 2.0,
            jitter: 0.0,
            healthy_after: Duration::from_secs(30),
        }
    }

    #[test]
    fn doubles_up_to_the_cap() {
        let mut b = Backoff::new(no_jitter());
        let delays: Vec<u128> = (0..8).map(|_| b.next_delay(Duration::from_millis(10)).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 2000, 2000, 2000]);
        assert_eq!(b.failures(), 8);
    }

    #[test]
    fn many_failures_saturate_at_the_cap() {
        let mut b = Backoff::new(no_jitter());
        for _ in 0..5000 {
            b.next_delay(Duration::ZERO);
        }
        assert_eq!(b.next_delay(Duration::ZERO), Duration::from_secs(2));
    }

    #[test]
    fn healthy_run_resets_the_sequence() {
        let mut b = Backoff::new(no_jitter());
        for _ in 0..4 {
            b.next_delay(Duration::from_secs(1));
        }
        assert_eq!(b.next_delay(Duration::from_secs(29)), Duration::from_millis(1600));
        assert_eq!(b.next_delay(Duration::from_secs(30)), Duration::from_millis(100));
        assert_eq!(b.failures(), 1);
        b.reset();
        assert_eq!(b.failures(), 0);
        assert_eq!(b.next_delay(Duration::ZERO), Duration::from_millis(100));
    }

    #[test]
    fn jitter_stays_within_bounds_and_varies() {
        let policy = BackoffPolicy { jitter: 0.5, ..no_jitter() };
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let mut b = Backoff::new(policy);
            b.next_delay(Duration::ZERO);
            let d = b.next_delay(Duration::ZERO); // base 200 ms
            assert!(d >= Duration::from_millis(100) && d <= Duration::from_millis(200), "{d:?}");
            seen.insert(d);
        }
        assert!(seen.len() > 10, "jitter produced only {} distinct delays", seen.len());
    }

    #[test]
    fn out_of_range_policy_values_are_clamped() {
        let b = Backoff::new(BackoffPolicy { multiplier: 0.1, jitter: 7.0, ..no_jitter() });
        assert_eq!(b.policy().multiplier, 1.0);
        assert_eq!(b.policy().jitter, 1.0);
        let b = Backoff::new(BackoffPolicy { multiplier: f64::NAN, jitter: f64::NAN, ..no_jitter() });
        assert_eq!(b.policy().multiplier, 1.0);
        assert_eq!(b.policy().jitter, 0.0);
    }

    #[tokio::test(start_paused = true)]
    async fn wait_sleeps_for_the_delay_and_resets_after_healthy_uptime() {
        let mut b = Backoff::new(no_jitter());

        // The child crashes 5 ms after each start, three times in a row.
        for expected in [100, 200, 400] {
            let started = Instant::now();
            tokio::time::advance(Duration::from_millis(5)).await;
            let before = Instant::now();
            let slept = b.wait(started.elapsed()).await;
            assert_eq!(slept, Duration::from_millis(expected));
            assert_eq!(Instant::now() - before, Duration::from_millis(expected));
        }

        // The restarted child then runs healthily for a minute before failing.
        let restarted = Instant::now();
        tokio::time::advance(Duration::from_secs(60)).await;
        let before = Instant::now();
        let slept = b.wait(restarted.elapsed()).await;
        assert_eq!(slept, Duration::from_millis(100));
        assert_eq!(Instant::now() - before, Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn cancelled_wait_keeps_the_failure() {
        let mut b = Backoff::new(no_jitter());
        let r = tokio::time::timeout(Duration::from_millis(10), b.wait(Duration::ZERO)).await;
        assert!(r.is_err());
        assert_eq!(b.failures(), 1);
        assert_eq!(b.next_delay(Duration::ZERO), Duration::from_millis(200));
    }
}
