//! Exponential backoff with jitter: the one delay policy of the crate.
//!
//! Used for retried calls (Kinesis reads back off from throttling and transient failures:
//! [`BackoffPolicy::calls`]) and for restarts (a crashed, hung or misbehaving shard consumer
//! is restarted from its checkpoint: [`BackoffPolicy::restarts`]). The caller decides
//! *whether* to retry; a [`Backoff`] says *how long to wait* first. Each failure multiplies
//! the delay up to a cap, with random jitter so that many shards failing together (a bad
//! deploy, a throttled stream) do not retry in lockstep. For restarts, a run that lasted at
//! least [`BackoffPolicy::healthy_after`] before failing counts as healthy and the sequence
//! starts again from [`BackoffPolicy::initial`].
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
    /// A run that lasted at least this long before failing resets the sequence
    /// (see [`Backoff::next_delay_after`]).
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

impl BackoffPolicy {
    /// Restarts of a failed shard consumer: 1 s doubling to 60 s, 20 % jitter, reset after a
    /// healthy minute.
    #[must_use]
    pub fn restarts() -> Self {
        Self {
            initial: Self::DEFAULT_INITIAL,
            max: Self::DEFAULT_MAX,
            multiplier: Self::DEFAULT_MULTIPLIER,
            jitter: Self::DEFAULT_JITTER,
            healthy_after: Self::DEFAULT_HEALTHY_AFTER,
        }
    }

    /// Retried calls: `initial` doubling up to `max`, each delay drawn from the upper half of
    /// its step ("equal jitter"), so the expected delay still grows.
    #[must_use]
    pub fn calls(initial: Duration, max: Duration) -> Self {
        Self { initial, max: max.max(initial), multiplier: 2.0, jitter: 0.5, healthy_after: Duration::MAX }
    }
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        Self::restarts()
    }
}

/// Consecutive-failure state of one retried call or restarted consumer.
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

    /// The un-jittered delay the next failure will get.
    #[must_use]
    pub fn current_ceiling(&self) -> Duration {
        self.base_delay(self.failures.saturating_add(1))
    }

    /// Records a failure and returns how long to wait before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let base = self.base_delay(self.failures);
        let jitter = self.policy.jitter * rand::random::<f64>();
        base.mul_f64(1.0 - jitter)
    }

    /// Records a failure of something that had been running for `uptime` (a run of at least
    /// [`BackoffPolicy::healthy_after`] resets the sequence first) and returns how long to
    /// wait before restarting it.
    pub fn next_delay_after(&mut self, uptime: Duration) -> Duration {
        if uptime >= self.policy.healthy_after {
            self.failures = 0;
        }
        self.next_delay()
    }

    /// [`next_delay_after`](Self::next_delay_after), then sleeps for it; returns the delay
    /// slept.
    ///
    /// Cancel safe: if the sleep is cancelled the failure stays recorded.
    pub async fn wait(&mut self, uptime: Duration) -> Duration {
        let delay = self.next_delay_after(uptime);
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
        let delays: Vec<u128> = (0..8).map(|_| b.next_delay_after(Duration::from_millis(10)).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 2000, 2000, 2000]);
        assert_eq!(b.failures(), 8);
    }

    #[test]
    fn many_failures_saturate_at_the_cap() {
        let mut b = Backoff::new(no_jitter());
        for _ in 0..5000 {
            b.next_delay_after(Duration::ZERO);
        }
        assert_eq!(b.next_delay_after(Duration::ZERO), Duration::from_secs(2));
    }

    #[test]
    fn healthy_run_resets_the_sequence() {
        let mut b = Backoff::new(no_jitter());
        for _ in 0..4 {
            b.next_delay_after(Duration::from_secs(1));
        }
        assert_eq!(b.next_delay_after(Duration::from_secs(29)), Duration::from_millis(1600));
        assert_eq!(b.next_delay_after(Duration::from_secs(30)), Duration::from_millis(100));
        assert_eq!(b.failures(), 1);
        b.reset();
        assert_eq!(b.failures(), 0);
        assert_eq!(b.next_delay_after(Duration::ZERO), Duration::from_millis(100));
    }

    #[test]
    fn jitter_stays_within_bounds_and_varies() {
        let policy = BackoffPolicy { jitter: 0.5, ..no_jitter() };
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let mut b = Backoff::new(policy);
            b.next_delay_after(Duration::ZERO);
            let d = b.next_delay_after(Duration::ZERO); // base 200 ms
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
        assert_eq!(b.next_delay_after(Duration::ZERO), Duration::from_millis(200));
    }

    #[test]
    fn call_policy_doubles_with_jitter_in_the_upper_half() {
        let mut b = Backoff::new(BackoffPolicy::calls(Duration::from_millis(100), Duration::from_millis(1000)));
        for ceiling in [100, 200, 400, 800, 1000, 1000] {
            let ceiling = Duration::from_millis(ceiling);
            assert_eq!(b.current_ceiling(), ceiling);
            let d = b.next_delay();
            assert!(d >= ceiling / 2 && d <= ceiling, "{d:?} not in [{:?}, {ceiling:?}]", ceiling / 2);
        }
        assert_eq!(b.failures(), 6);
        b.reset();
        assert_eq!(b.current_ceiling(), Duration::from_millis(100));
        // A call policy never resets on uptime.
        b.next_delay();
        b.next_delay_after(Duration::from_secs(86_400));
        assert_eq!(b.failures(), 2);
    }

    #[test]
    fn call_policy_with_zero_delays_and_many_failures() {
        let mut b = Backoff::new(BackoffPolicy::calls(Duration::from_secs(1), Duration::from_secs(30)));
        for _ in 0..100 {
            assert!(b.next_delay() <= Duration::from_secs(30));
        }
        let mut zero = Backoff::new(BackoffPolicy::calls(Duration::ZERO, Duration::ZERO));
        assert_eq!(zero.next_delay(), Duration::ZERO);
    }
}
