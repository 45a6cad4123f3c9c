//! The 3.x follower's lease duties that do not involve the shard consumers: discovering the
//! leases the leader assigned to this worker, measuring per-lease throughput for
//! `throughputKBps`, and publishing this worker's `WorkerMetricStats`.
//!
//! Discovery (Java `DynamoDBLeaseDiscoverer`): query the owner index for `leaseOwner = me`,
//! and for every key not already held, read the lease (consistent) and accept it only if it
//! really names this worker and has no `checkpointOwner` — during a hand-off to this worker
//! the old owner may still checkpoint, so the lease is started only after the old owner
//! completed the transfer (or the leader reassigned it after the hand-off timed out). An
//! accepted lease is held from "now" on the local clock, like a 2.x take.
//!
//! Throughput: an exponential moving average (α = 0.5, Java's default) of the KiB/s each lease
//! delivered between two renewals, rounded to 6 decimals. multilangd publishes no host metrics,
//! so it is a "default metric" worker that the leader balances by these values.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use tokio::time::Instant;
use tracing::debug;

use super::lease_table::Kcl3LeaseTable;
use super::worker_metrics::WorkerMetricsStore;
use super::WorkerMetricStats;
use crate::lease::{Lease, LeaseError, LeaseStore};

/// Java's discovery period: assignment interval / 2 − epsilon (9 975 ms by default).
#[must_use]
pub fn discovery_interval(assignment_interval: Duration) -> Duration {
    (assignment_interval / 2).saturating_sub(Duration::from_millis(25)).max(Duration::from_millis(100))
}

/// The leases assigned to `me` that it does not hold yet (`held`), ready to start.
///
/// # Errors
/// Failures of the index query or of a lease read.
pub async fn discover(
    kcl3: &dyn Kcl3LeaseTable,
    leases: &dyn LeaseStore,
    me: &str,
    held: &HashSet<String>,
) -> Result<Vec<Lease>, LeaseError> {
    discover_listed(leases, me, held, &kcl3.lease_keys_for_worker(me).await?).await
}

/// [`discover`] from the keys the owner index listed for `me` (one query serves both the
/// discovery and the hand-off check).
///
/// # Errors
/// Failures of a lease read.
pub async fn discover_listed(
    leases: &dyn LeaseStore,
    me: &str,
    held: &HashSet<String>,
    listed: &[String],
) -> Result<Vec<Lease>, LeaseError> {
    let mut found = Vec::new();
    for key in listed {
        if held.contains(key) {
            continue;
        }
        match leases.get_lease(key).await? {
            Some(lease) if lease.owner.as_deref() == Some(me) && lease.checkpoint_owner.is_none() => found.push(lease),
            Some(lease) => {
                debug!(lease = %key, owner = ?lease.owner, checkpoint_owner = ?lease.checkpoint_owner,
                    "assigned lease not ready yet (index lag or hand-off in progress)");
            }
            None => {}
        }
    }
    found.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(found)
}

/// Per-lease throughput for the `throughputKBps` attribute.
#[derive(Debug, Default)]
pub struct ThroughputMeter {
    /// key → (bytes since the last sample, EMA in KiB/s, time of the last sample).
    leases: HashMap<String, (u64, Option<f64>, Option<Instant>)>,
    alpha: f64,
}

impl ThroughputMeter {
    /// A meter with EMA weight `alpha` (`workerMetricsEMAAlpha`, default 0.5).
    #[must_use]
    pub fn new(alpha: f64) -> Self {
        Self { leases: HashMap::new(), alpha: alpha.clamp(0.0, 1.0) }
    }

    /// Records `bytes` delivered to the processor of `key`.
    pub fn record(&mut self, key: &str, bytes: u64) {
        let entry = self.leases.entry(key.to_owned()).or_default();
        entry.0 = entry.0.saturating_add(bytes);
    }

    /// The value to write with this renewal of `key` at `now` (`None` on the first call,
    /// which only starts the measurement).
    pub fn sample(&mut self, key: &str, now: Instant) -> Option<f64> {
        let entry = self.leases.entry(key.to_owned()).or_default();
        let previous = entry.2.replace(now)?;
        let seconds = now.duration_since(previous).as_secs_f64();
        if seconds <= 0.0 {
            return entry.1;
        }
        let kbps = std::mem::take(&mut entry.0) as f64 / 1024.0 / seconds;
        let ema = match entry.1 {
            Some(old) => self.alpha * kbps + (1.0 - self.alpha) * old,
            None => kbps,
        };
        let rounded = (ema * 1e6).round() / 1e6;
        entry.1 = Some(rounded);
        Some(rounded)
    }

    /// Forgets a lease that is no longer held.
    pub fn forget(&mut self, key: &str) {
        self.leases.remove(key);
    }
}

/// Publishes this worker's `WorkerMetricStats` (a default-metric worker: empty `sts`/`opr`).
///
/// # Errors
/// The DynamoDB write failed.
pub async fn publish_metrics(store: &dyn WorkerMetricsStore, me: &str, now_s: u64) -> Result<(), LeaseError> {
    store.publish(&WorkerMetricStats::default_metric(me, now_s)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::kcl3::memory::{InMemoryKcl3LeaseTable, InMemoryWorkerMetricsStore};
    use crate::lease::memory::InMemoryLeaseStore;
    use crate::sequence::{ExtendedSequenceNumber, Position};

    fn lease(key: &str, owner: &str, checkpoint_owner: Option<&str>) -> Lease {
        let mut l = Lease::new(key, ExtendedSequenceNumber::new(Position::TrimHorizon));
        l.owner = Some(owner.to_owned());
        l.checkpoint_owner = checkpoint_owner.map(str::to_owned);
        l
    }

    #[tokio::test]
    async fn discovery_skips_held_leases_and_hand_offs_in_progress() {
        let leases = InMemoryLeaseStore::new("app");
        leases.put(lease("s1", "me", None));
        leases.put(lease("s2", "me", None));
        leases.put(lease("s3", "me", Some("old")));
        leases.put(lease("s4", "other", None));
        let kcl3 = InMemoryKcl3LeaseTable::new(leases.clone());
        kcl3.ensure_owner_index().await.unwrap();
        let held = HashSet::from(["s1".to_owned()]);
        let found = discover(&kcl3, &leases, "me", &held).await.unwrap();
        assert_eq!(found.iter().map(|l| l.key.as_str()).collect::<Vec<_>>(), ["s2"]);
        // The old owner completes the transfer: now it is ready.
        let s3 = leases.lease("s3").unwrap();
        kcl3.assign_lease(&s3, "me").await.unwrap();
        let found = discover(&kcl3, &leases, "me", &held).await.unwrap();
        assert_eq!(found.iter().map(|l| l.key.as_str()).collect::<Vec<_>>(), ["s2", "s3"]);
    }

    #[test]
    fn throughput_is_an_ema_in_kib_per_second() {
        let t0 = Instant::now();
        let mut m = ThroughputMeter::new(0.5);
        assert_eq!(m.sample("s", t0), None, "the first renewal starts the measurement");
        m.record("s", 10 * 1024);
        assert_eq!(m.sample("s", t0 + Duration::from_secs(2)), Some(5.0));
        m.record("s", 2 * 1024);
        assert_eq!(m.sample("s", t0 + Duration::from_secs(4)), Some(3.0), "0.5 × 1 + 0.5 × 5");
        assert_eq!(m.sample("s", t0 + Duration::from_secs(6)), Some(1.5));
        m.forget("s");
        assert_eq!(m.sample("s", t0 + Duration::from_secs(8)), None);
    }

    #[tokio::test]
    async fn published_metrics_make_an_active_default_worker() {
        let store = InMemoryWorkerMetricsStore::new("t");
        publish_metrics(&store, "me", 1_000).await.unwrap();
        let listed = store.list().await.unwrap().workers;
        assert_eq!(listed.len(), 1);
        assert!(listed[0].is_default_metric() && listed[0].is_active(1_030, 60));
    }

    #[test]
    fn discovery_runs_twice_per_assignment_interval() {
        assert_eq!(discovery_interval(Duration::from_secs(20)), Duration::from_millis(9_975));
    }
}
