//! The 3.x leader's lease assignment run (Java's `LeaseAssignmentManager`, with the
//! `LEASE_COUNT_BASED` strategy of [`super::assignment`]).
//!
//! [`LeaseAssigner::round`] runs on the lock holder every `leaseAssignmentIntervalMillis`:
//! scan leases and worker metrics, observe expiry, plan, and write each action with the 3.x
//! conditional writes (a failed condition just means the lease changed since the scan; the
//! next round sees the new state). Stale worker-metrics items are deleted, conditioned on
//! the `lut` seen. Three failed rounds in a row mean the caller should release the lock (as
//! Java does), so a leader cut off from DynamoDB does not block the fleet.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::assignment::{plan_lease_count, Action, ExpiryTracker, PlanSettings};
use super::lease_table::Kcl3LeaseTable;
use super::worker_metrics::WorkerMetricsStore;
use crate::lease::{LeaseError, LeaseStore};

/// At most this many assignment writes in flight at once.
const WRITE_CONCURRENCY: usize = 16;

/// After this many failed rounds in a row the leader gives up the lock (Java: 3).
pub const MAX_FAILED_ROUNDS: u32 = 3;

/// Leader settings (from the configuration).
#[derive(Debug, Clone)]
pub struct LeaderSettings {
    /// `failoverTimeMillis`.
    pub failover_time: Duration,
    /// `leaseAssignmentIntervalMillis` (default 2 × failover).
    pub assignment_interval: Duration,
    /// `isGracefulLeaseHandoffEnabled`.
    pub graceful_handoff: bool,
    /// `gracefulLeaseHandoffTimeoutMillis`.
    pub handoff_timeout: Duration,
    /// `maxLeasesForWorker`.
    pub max_leases_for_worker: usize,
    /// Worker metrics older than this (wall clock) mean an inactive worker: 2 ×
    /// `workerMetricsReporterFreqInMillis`.
    pub metrics_expiry: Duration,
    /// `staleWorkerMetricsEntryCleanupDuration` (default 1 day).
    pub stale_metrics_cleanup: Duration,
}

/// What one round saw and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AssignmentReport {
    /// Leases in the table.
    pub leases: usize,
    /// Active workers (fresh, valid WorkerMetricStats, no expired lease of their own).
    pub active_workers: Vec<String>,
    /// Leases assigned (`key → worker`).
    pub assigned: Vec<(String, String)>,
    /// Hand-offs started (`key → worker`).
    pub handoffs: Vec<(String, String)>,
    /// Writes whose condition failed (the lease changed since the scan).
    pub conflicts: usize,
    /// Stale worker-metrics items deleted.
    pub stale_metrics_deleted: usize,
}

/// The leader's assignment state; create one when becoming leader, drop it when not.
pub struct LeaseAssigner {
    leases: Arc<dyn LeaseStore>,
    kcl3: Arc<dyn Kcl3LeaseTable>,
    metrics: Arc<dyn WorkerMetricsStore>,
    settings: LeaderSettings,
    tracker: ExpiryTracker,
    failed_rounds: u32,
}

impl LeaseAssigner {
    /// A fresh assigner (its first round treats every owned lease as just renewed).
    #[must_use]
    pub fn new(
        leases: Arc<dyn LeaseStore>,
        kcl3: Arc<dyn Kcl3LeaseTable>,
        metrics: Arc<dyn WorkerMetricsStore>,
        settings: LeaderSettings,
    ) -> Self {
        Self { leases, kcl3, metrics, settings, tracker: ExpiryTracker::new(), failed_rounds: 0 }
    }

    /// The settings.
    #[must_use]
    pub fn settings(&self) -> &LeaderSettings {
        &self.settings
    }

    /// True when [`MAX_FAILED_ROUNDS`] rounds in a row failed: release the lock.
    #[must_use]
    pub fn should_resign(&self) -> bool {
        self.failed_rounds >= MAX_FAILED_ROUNDS
    }

    /// One assignment run at monotonic `now` and wall-clock `now_s` (epoch seconds).
    ///
    /// # Errors
    /// A failed scan of either table (counted towards [`Self::should_resign`]).
    pub async fn round(&mut self, now: Instant, now_s: u64) -> Result<AssignmentReport, LeaseError> {
        match self.try_round(now, now_s).await {
            Ok(report) => {
                self.failed_rounds = 0;
                Ok(report)
            }
            Err(e) => {
                self.failed_rounds += 1;
                warn!(error = %e, failed_rounds = self.failed_rounds, "lease assignment round failed");
                Err(e)
            }
        }
    }

    async fn try_round(&mut self, now: Instant, now_s: u64) -> Result<AssignmentReport, LeaseError> {
        let scan = self.leases.list_leases().await?;
        let workers = self.metrics.list().await?;
        let expiry_s = self.settings.metrics_expiry.as_secs();
        let mut active: Vec<String> =
            workers.workers.iter().filter(|w| w.is_active(now_s, expiry_s)).map(|w| w.worker_id.clone()).collect();
        active.sort();
        let mut report =
            AssignmentReport { leases: scan.leases.len(), active_workers: active.clone(), ..Default::default() };

        let cleanup_s = self.settings.stale_metrics_cleanup.as_secs();
        for stale in workers.workers.iter().filter(|w| !w.is_fresh(now_s, cleanup_s)) {
            if self.metrics.delete_if_unchanged(&stale.worker_id, stale.last_update_s).await? {
                info!(worker = %stale.worker_id, "deleted stale WorkerMetricStats item");
                report.stale_metrics_deleted += 1;
            }
        }

        let views = self.tracker.observe(scan.leases, now, self.settings.failover_time, self.settings.handoff_timeout);
        // A worker that stopped renewing a lease it owns is dead (or lost the lease): its
        // WorkerMetricStats stay fresh for up to a minute, but it gets nothing more meanwhile,
        // so its expired leases do not bounce back to it.
        let stalled: HashSet<&str> = views
            .iter()
            .filter(|v| v.expired && v.lease.checkpoint_owner.is_none())
            .filter_map(|v| v.lease.owner.as_deref())
            .collect();
        if !stalled.is_empty() {
            debug!(?stalled, "workers with expired leases get no assignments this round");
        }
        active.retain(|w| !stalled.contains(w.as_str()));
        report.active_workers.clone_from(&active);
        let plan_settings = PlanSettings {
            max_leases_for_worker: self.settings.max_leases_for_worker,
            graceful_handoff: self.settings.graceful_handoff,
        };
        // The writes touch distinct leases: up to WRITE_CONCURRENCY at a time (a new
        // application's first round assigns every lease at once).
        let actions = plan_lease_count(&views, &active, plan_settings);
        for chunk in actions.chunks(WRITE_CONCURRENCY) {
            let mut writes = tokio::task::JoinSet::new();
            for (i, action) in chunk.iter().cloned().enumerate() {
                let kcl3 = self.kcl3.clone();
                writes.spawn(async move {
                    let written = match &action {
                        Action::Assign { lease, to } => kcl3.assign_lease(lease, to).await,
                        Action::Handoff { lease, to } => kcl3.initiate_handoff(lease, to).await,
                    };
                    (i, action, written)
                });
            }
            let mut done = Vec::with_capacity(chunk.len());
            while let Some(joined) = writes.join_next().await {
                done.push(joined.map_err(|e| LeaseError::Dependency {
                    table: self.leases.table_name().to_owned(),
                    operation: "assign_lease",
                    message: e.to_string(),
                })?);
            }
            done.sort_by_key(|(i, _, _)| *i);
            for (_, action, written) in done {
                match (action, written?) {
                    (Action::Assign { lease, to }, Some(_)) => {
                        debug!(lease = %lease.key, from = ?lease.owner, to = %to, "assigned lease");
                        report.assigned.push((lease.key, to));
                    }
                    (Action::Handoff { lease, to }, Some(_)) => {
                        debug!(lease = %lease.key, from = ?lease.owner, to = %to, "started graceful hand-off");
                        report.handoffs.push((lease.key, to));
                    }
                    (_, None) => report.conflicts += 1,
                }
            }
        }
        if !report.assigned.is_empty() || !report.handoffs.is_empty() {
            info!(
                assigned = report.assigned.len(),
                handoffs = report.handoffs.len(),
                workers = active.len(),
                leases = report.leases,
                "lease assignment round"
            );
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::kcl3::memory::{InMemoryKcl3LeaseTable, InMemoryWorkerMetricsStore};
    use crate::lease::kcl3::WorkerMetricStats;
    use crate::lease::memory::InMemoryLeaseStore;
    use crate::lease::Lease;
    use crate::sequence::{ExtendedSequenceNumber, Position};

    const NOW_S: u64 = 1_764_000_000;

    fn settings() -> LeaderSettings {
        LeaderSettings {
            failover_time: Duration::from_secs(10),
            assignment_interval: Duration::from_secs(20),
            graceful_handoff: true,
            handoff_timeout: Duration::from_secs(30),
            max_leases_for_worker: usize::MAX,
            metrics_expiry: Duration::from_secs(60),
            stale_metrics_cleanup: Duration::from_secs(86_400),
        }
    }

    struct Bed {
        leases: InMemoryLeaseStore,
        metrics: InMemoryWorkerMetricsStore,
        assigner: LeaseAssigner,
    }

    fn bed(shards: usize) -> Bed {
        let leases = InMemoryLeaseStore::new("app");
        for i in 0..shards {
            leases.put(Lease::new(format!("shardId-{i:012}"), ExtendedSequenceNumber::new(Position::TrimHorizon)));
        }
        let metrics = InMemoryWorkerMetricsStore::new("app-WorkerMetricStats");
        let assigner = LeaseAssigner::new(
            Arc::new(leases.clone()),
            Arc::new(InMemoryKcl3LeaseTable::new(leases.clone())),
            Arc::new(metrics.clone()),
            settings(),
        );
        Bed { leases, metrics, assigner }
    }

    fn owners(leases: &InMemoryLeaseStore, shards: usize) -> Vec<Option<String>> {
        (0..shards).map(|i| leases.lease(&format!("shardId-{i:012}")).and_then(|l| l.owner)).collect()
    }

    #[tokio::test]
    async fn assigns_new_leases_to_workers_with_fresh_metrics_only() {
        let mut b = bed(4);
        let t0 = Instant::now();
        assert!(b.assigner.round(t0, NOW_S).await.unwrap().assigned.is_empty(), "no active worker yet");
        b.metrics.publish(&WorkerMetricStats::default_metric("a", NOW_S)).await.unwrap();
        b.metrics.publish(&WorkerMetricStats::default_metric("b", NOW_S)).await.unwrap();
        b.metrics.publish(&WorkerMetricStats::default_metric("old", NOW_S - 61)).await.unwrap();
        let report = b.assigner.round(t0, NOW_S).await.unwrap();
        assert_eq!(report.active_workers, ["a", "b"]);
        assert_eq!(report.assigned.len(), 4);
        let owners = owners(&b.leases, 4);
        assert_eq!(owners.iter().filter(|o| o.as_deref() == Some("a")).count(), 2);
        assert_eq!(owners.iter().filter(|o| o.as_deref() == Some("b")).count(), 2);
    }

    fn renew_a(leases: &InMemoryLeaseStore) {
        for i in 0..4 {
            leases.modify(&format!("shardId-{i:012}"), |l| {
                if l.owner.as_deref() == Some("a") {
                    l.counter += 1;
                }
            });
        }
    }

    #[tokio::test]
    async fn a_dead_workers_leases_move_after_the_failover_time() {
        let mut b = bed(4);
        let t0 = Instant::now();
        for w in ["a", "b"] {
            b.metrics.publish(&WorkerMetricStats::default_metric(w, NOW_S)).await.unwrap();
        }
        b.assigner.round(t0, NOW_S).await.unwrap();
        // b dies: its metrics stop and its leases are no longer renewed; a keeps renewing.
        let t1 = t0 + Duration::from_secs(20);
        b.metrics.publish(&WorkerMetricStats::default_metric("a", NOW_S + 20)).await.unwrap();
        renew_a(&b.leases);
        let report = b.assigner.round(t0 + Duration::from_secs(5), NOW_S + 5).await.unwrap();
        assert!(report.assigned.is_empty(), "not expired yet: {report:?}");
        renew_a(&b.leases);
        let report = b.assigner.round(t1, NOW_S + 20).await.unwrap();
        assert_eq!(report.assigned.len(), 2, "{report:?}");
        assert_eq!(report.active_workers, ["a"], "b's metrics are still fresh, but it stopped renewing");
        assert!(owners(&b.leases, 4).iter().all(|o| o.as_deref() == Some("a")));
    }

    #[tokio::test]
    async fn a_joining_worker_gets_leases_by_graceful_hand_off() {
        let mut b = bed(4);
        let t0 = Instant::now();
        b.metrics.publish(&WorkerMetricStats::default_metric("a", NOW_S)).await.unwrap();
        b.assigner.round(t0, NOW_S).await.unwrap();
        b.metrics.publish(&WorkerMetricStats::default_metric("c", NOW_S)).await.unwrap();
        let report = b.assigner.round(t0 + Duration::from_secs(1), NOW_S + 1).await.unwrap();
        assert_eq!(report.handoffs.len(), 2, "{report:?}");
        for (key, to) in &report.handoffs {
            let lease = b.leases.lease(key).unwrap();
            assert_eq!(lease.owner.as_deref(), Some(to.as_str()));
            assert_eq!(lease.checkpoint_owner.as_deref(), Some("a"));
        }
        // Nothing moves again while the hand-offs are pending.
        let report = b.assigner.round(t0 + Duration::from_secs(2), NOW_S + 2).await.unwrap();
        assert!(report.handoffs.is_empty() && report.assigned.is_empty(), "{report:?}");
    }

    #[tokio::test]
    async fn three_failed_rounds_mean_resign() {
        let mut b = bed(1);
        b.leases.fail_next(crate::lease::memory::Op::ListLeases, crate::lease::memory::Fault::Dependency, 3);
        for _ in 0..3 {
            assert!(!b.assigner.should_resign());
            assert!(b.assigner.round(Instant::now(), NOW_S).await.is_err());
        }
        assert!(b.assigner.should_resign());
    }

    #[tokio::test]
    async fn stale_metrics_are_deleted() {
        let mut b = bed(0);
        b.metrics.publish(&WorkerMetricStats::default_metric("gone", NOW_S - 86_401)).await.unwrap();
        b.metrics.publish(&WorkerMetricStats::default_metric("here", NOW_S)).await.unwrap();
        let report = b.assigner.round(Instant::now(), NOW_S).await.unwrap();
        assert_eq!(report.stale_metrics_deleted, 1);
        assert_eq!(b.metrics.list().await.unwrap().workers.len(), 1);
    }
}
