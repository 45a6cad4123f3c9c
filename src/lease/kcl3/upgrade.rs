//! Taking part in a KCL 2.x → 3.x upgrade while the worker runs the 2.x protocol
//! (`Migration3.0.cv = CLIENT_VERSION_UPGRADE_FROM_2X`, `lease-coordination.md` §10.4,
//! `kcl3-fanout-users.md` §2.1), as a Java 3.x worker in `COMPATIBLE_WITH_2X` mode does:
//!
//! - every worker publishes its WorkerMetricStats item (default-metric shape: `lut`, empty
//!   `sts` and `opr`) every `workerMetricsReporterFreqInMillis` (30 s), so that a Java 3.x
//!   leader's readiness monitor counts it;
//! - the 2.x leader (deterministic shuffle of the lease owners) runs the readiness monitor
//!   ([`super::mode::UpgradeMonitor`]): owner index ACTIVE, every lease owned, and fresh
//!   metrics for every lease owner, continuously for 10 min (Java's `MigrationReadyMonitor`;
//!   unlike Java, a table without any owned lease never counts as ready), then it writes `CLIENT_VERSION_3X_WITH_ROLLBACK`
//!   conditioned on `UPGRADE_FROM_2X`. Every worker's periodic migration check then switches
//!   to the 3.x protocol.
//!
//! Best effort: a failed write or read is logged and retried at the next tick; it never
//! stops the worker. Only the coordinator-state-table layout (KCL 3.0–3.4) is handled; a
//! KCL 3.5 single-table `Migration3.0` is not participated in.

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::coordinator::CoordinatorStateStore;
use super::lease_table::{IndexState, Kcl3LeaseTable};
use super::mode::{UpgradeMonitor, MIGRATION_POLL_INTERVAL, UPGRADE_READY_FOR};
use super::worker_metrics::WorkerMetricsStore;
use super::{ClientVersion, WorkerMetricStats};
use crate::lease::leader::is_leader;
use crate::lease::{LeaseError, LeaseStore};

/// Cadences of the upgrade participation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpgradeSettings {
    /// How often the WorkerMetricStats item is written (`workerMetricsReporterFreqInMillis`);
    /// metrics older than twice this count as missing.
    pub publish_interval: Duration,
    /// How often the readiness is checked (Java: 60 s).
    pub check_interval: Duration,
    /// How long the readiness must hold before the flip (Java: 10 min).
    pub ready_for: Duration,
}

impl Default for UpgradeSettings {
    fn default() -> Self {
        Self {
            publish_interval: Duration::from_secs(30),
            check_interval: MIGRATION_POLL_INTERVAL,
            ready_for: UPGRADE_READY_FOR,
        }
    }
}

impl UpgradeSettings {
    /// Metrics older than this many seconds count as missing (Java: 2 × the reporter interval).
    #[must_use]
    pub fn metrics_expiry_s(&self) -> u64 {
        (self.publish_interval * 2).as_secs().max(1)
    }
}

/// What one readiness check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckOutcome {
    /// `Migration3.0` is not `UPGRADE_FROM_2X` (absent, rolled back, or already flipped).
    NotUpgrading,
    /// Another worker is the 2.x leader.
    Follower,
    /// This worker leads; the fleet is not ready yet, or not for long enough.
    Waiting,
    /// This worker wrote `CLIENT_VERSION_3X_WITH_ROLLBACK`.
    Flipped,
    /// The flip was due, but `cv` had changed meanwhile (another writer won).
    LostRace,
}

/// One worker's part in the upgrade.
pub struct UpgradeParticipant<'a> {
    me: String,
    leases: &'a dyn LeaseStore,
    table: &'a dyn Kcl3LeaseTable,
    coordinator: &'a dyn CoordinatorStateStore,
    metrics: &'a dyn WorkerMetricsStore,
    settings: UpgradeSettings,
    monitor: UpgradeMonitor,
    publishing: bool,
}

impl<'a> UpgradeParticipant<'a> {
    /// The participant of worker `me`, started in `UPGRADE_FROM_2X`.
    #[must_use]
    pub fn new(
        me: &str,
        leases: &'a dyn LeaseStore,
        table: &'a dyn Kcl3LeaseTable,
        coordinator: &'a dyn CoordinatorStateStore,
        metrics: &'a dyn WorkerMetricsStore,
        settings: UpgradeSettings,
    ) -> Self {
        Self {
            me: me.to_owned(),
            leases,
            table,
            coordinator,
            metrics,
            settings,
            monitor: UpgradeMonitor::new(settings.ready_for, settings.metrics_expiry_s()),
            publishing: true,
        }
    }

    /// Writes this worker's WorkerMetricStats item, unless the last check found the fleet
    /// rolled back to 2.x. Returns whether it wrote.
    ///
    /// # Errors
    /// The DynamoDB write failed.
    pub async fn publish(&self) -> Result<bool, LeaseError> {
        if !self.publishing {
            return Ok(false);
        }
        self.metrics.publish(&WorkerMetricStats::default_metric(&self.me, epoch_s())).await?;
        Ok(true)
    }

    /// One readiness check at `now`; the leader flips the fleet when the readiness has held
    /// long enough.
    ///
    /// # Errors
    /// A DynamoDB read or the conditional write failed.
    pub async fn check(&mut self, now: Instant) -> Result<CheckOutcome, LeaseError> {
        let stored = match self.coordinator.migration().await? {
            Some(m) if m.client_version == ClientVersion::UpgradeFrom2x => m,
            other => {
                // Publish on while the fleet moves on to 3.x (a Java leader needs the metrics
                // to assign), stop after a rollback.
                self.publishing = other.is_some_and(|m| m.client_version.runs_3x_protocol());
                self.reset();
                return Ok(CheckOutcome::NotUpgrading);
            }
        };
        self.publishing = true;
        let leases = self.leases.list_leases().await?.leases;
        let unowned = leases.iter().filter(|lease| lease.owner.is_none()).count();
        let owners: HashSet<String> = leases.into_iter().filter_map(|lease| lease.owner).collect();
        if owners.is_empty() || !is_leader(&self.me, owners.iter().map(String::as_str)) {
            self.reset();
            return Ok(CheckOutcome::Follower);
        }
        if unowned > 0 {
            // Java's monitor counts "no owner" as an owner without metrics: not ready.
            debug!(unowned, "KCL 3.x upgrade readiness: waiting for every lease to have an owner");
            self.reset();
            return Ok(CheckOutcome::Waiting);
        }
        let index_active = self.table.owner_index_state().await? == IndexState::Active;
        let workers = self.metrics.list().await?.workers;
        let now_s = epoch_s();
        if !self.monitor.observe(now, index_active, &owners, &workers, now_s) {
            let missing: Vec<&str> = owners
                .iter()
                .filter(|o| {
                    !workers.iter().any(|w| &w.worker_id == *o && w.is_fresh(now_s, self.settings.metrics_expiry_s()))
                })
                .map(String::as_str)
                .collect();
            debug!(index_active, ?missing, "KCL 3.x upgrade readiness: waiting");
            return Ok(CheckOutcome::Waiting);
        }
        let next = stored.advanced(ClientVersion::V3xWithRollback, &self.me, epoch_s() * 1_000);
        if self.coordinator.update_migration(&ClientVersion::UpgradeFrom2x, &next).await? {
            info!(
                owners = owners.len(),
                ready_for = ?self.settings.ready_for,
                "every lease owner has published worker metrics: flipped the fleet to CLIENT_VERSION_3X_WITH_ROLLBACK"
            );
            Ok(CheckOutcome::Flipped)
        } else {
            self.reset();
            Ok(CheckOutcome::LostRace)
        }
    }

    fn reset(&mut self) {
        self.monitor = UpgradeMonitor::new(self.settings.ready_for, self.settings.metrics_expiry_s());
    }

    /// Publishes and checks on their cadences until `cancel` (both first at once).
    pub async fn run(mut self, cancel: CancellationToken) {
        let floor = Duration::from_millis(100);
        let mut publish = tokio::time::interval(self.settings.publish_interval.max(floor));
        publish.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut check = tokio::time::interval(self.settings.check_interval.max(floor));
        check.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = cancel.cancelled() => return,
                _ = publish.tick() => {
                    if let Err(e) = self.publish().await {
                        warn!(error = %e, "cannot publish worker metrics for the KCL 3.x upgrade");
                    }
                }
                _ = check.tick() => match self.check(Instant::now()).await {
                    Ok(outcome) => debug!(?outcome, "KCL 3.x upgrade check"),
                    Err(e) => warn!(error = %e, "KCL 3.x upgrade readiness check failed"),
                },
            }
        }
    }
}

fn epoch_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::kcl3::memory::{InMemoryCoordinatorStore, InMemoryKcl3LeaseTable, InMemoryWorkerMetricsStore};
    use crate::lease::kcl3::MigrationRecord;
    use crate::lease::leader::shuffled_owners;
    use crate::lease::memory::InMemoryLeaseStore;
    use crate::lease::Lease;
    use crate::sequence::{ExtendedSequenceNumber, Position};

    struct Bed {
        leases: InMemoryLeaseStore,
        table: InMemoryKcl3LeaseTable,
        coordinator: InMemoryCoordinatorStore,
        metrics: InMemoryWorkerMetricsStore,
    }

    async fn bed(cv: ClientVersion, owners: &[&str]) -> Bed {
        let leases = InMemoryLeaseStore::new("app");
        for (i, owner) in owners.iter().enumerate() {
            let mut lease = Lease::new(format!("shardId-{i:012}"), ExtendedSequenceNumber::new(Position::TrimHorizon));
            lease.owner = Some((*owner).to_owned());
            leases.put(lease);
        }
        let table = InMemoryKcl3LeaseTable::new(leases.clone());
        table.set_index_state(IndexState::Active);
        let coordinator = InMemoryCoordinatorStore::new("app-CoordinatorState");
        assert!(coordinator.create_migration_if_absent(&MigrationRecord::initial(cv, "x", 1)).await.unwrap());
        Bed { leases, table, coordinator, metrics: InMemoryWorkerMetricsStore::new("app-WorkerMetricStats") }
    }

    fn settings() -> UpgradeSettings {
        UpgradeSettings {
            publish_interval: Duration::from_secs(30),
            check_interval: Duration::from_secs(60),
            ready_for: Duration::from_secs(600),
        }
    }

    fn participant<'a>(bed: &'a Bed, me: &str) -> UpgradeParticipant<'a> {
        UpgradeParticipant::new(me, &bed.leases, &bed.table, &bed.coordinator, &bed.metrics, settings())
    }

    async fn cv(bed: &Bed) -> ClientVersion {
        bed.coordinator.migration().await.unwrap().unwrap().client_version
    }

    #[tokio::test]
    async fn a_worker_publishes_default_metric_stats_a_java_leader_counts() {
        let bed = bed(ClientVersion::UpgradeFrom2x, &["a"]).await;
        let p = participant(&bed, "a");
        assert!(p.publish().await.unwrap());
        let listed = bed.metrics.list().await.unwrap().workers;
        assert_eq!(listed.len(), 1);
        let item = &listed[0];
        assert_eq!(item.worker_id, "a");
        assert!(item.stats.is_empty() && item.operating_range.is_empty(), "default-metric worker: empty sts and opr");
        assert!(item.is_fresh(epoch_s(), 60), "lut is now, in epoch seconds");
    }

    #[tokio::test]
    async fn the_2x_leader_flips_after_continuous_readiness_and_followers_never_do() {
        let order = shuffled_owners(["a", "b"]);
        let (leader, follower) = (order[0].as_str(), order[1].as_str());
        let bed = bed(ClientVersion::UpgradeFrom2x, &["a", "b"]).await;
        let mut l = participant(&bed, leader);
        let mut f = participant(&bed, follower);
        let t0 = Instant::now();
        // Only the leader has published: the follower (say a Java 2.x worker) blocks readiness.
        l.publish().await.unwrap();
        assert_eq!(l.check(t0).await.unwrap(), CheckOutcome::Waiting);
        assert_eq!(l.check(t0 + Duration::from_secs(700)).await.unwrap(), CheckOutcome::Waiting);
        f.publish().await.unwrap();
        assert_eq!(f.check(t0 + Duration::from_secs(700)).await.unwrap(), CheckOutcome::Follower);
        assert_eq!(l.check(t0 + Duration::from_secs(760)).await.unwrap(), CheckOutcome::Waiting, "ready since now");
        assert_eq!(l.check(t0 + Duration::from_secs(1_300)).await.unwrap(), CheckOutcome::Waiting);
        assert_eq!(cv(&bed).await, ClientVersion::UpgradeFrom2x);
        assert_eq!(f.check(t0 + Duration::from_secs(1_360)).await.unwrap(), CheckOutcome::Follower);
        assert_eq!(l.check(t0 + Duration::from_secs(1_360)).await.unwrap(), CheckOutcome::Flipped);
        let stored = bed.coordinator.migration().await.unwrap().unwrap();
        assert_eq!(stored.client_version, ClientVersion::V3xWithRollback);
        assert_eq!(stored.modified_by, leader);
        assert_eq!(stored.history[0].client_version, ClientVersion::UpgradeFrom2x);
        // After the flip: no more checks act, publishing goes on for the 3.x leader.
        assert_eq!(l.check(t0 + Duration::from_secs(1_420)).await.unwrap(), CheckOutcome::NotUpgrading);
        assert!(l.publish().await.unwrap());
    }

    #[tokio::test]
    async fn no_flip_without_an_active_owner_index_and_none_after_a_rollback() {
        let bed = bed(ClientVersion::UpgradeFrom2x, &["a"]).await;
        bed.table.set_index_state(IndexState::Creating);
        let mut p = UpgradeParticipant::new(
            "a",
            &bed.leases,
            &bed.table,
            &bed.coordinator,
            &bed.metrics,
            UpgradeSettings { ready_for: Duration::ZERO, ..settings() },
        );
        p.publish().await.unwrap();
        let t0 = Instant::now();
        assert_eq!(p.check(t0).await.unwrap(), CheckOutcome::Waiting);
        // Rolled back (KclMigrationTool): stop publishing, never flip.
        let current = bed.coordinator.migration().await.unwrap().unwrap();
        let rolled = current.advanced(ClientVersion::V2x, "tool", 2);
        assert!(bed.coordinator.update_migration(&ClientVersion::UpgradeFrom2x, &rolled).await.unwrap());
        bed.table.set_index_state(IndexState::Active);
        assert_eq!(p.check(t0).await.unwrap(), CheckOutcome::NotUpgrading);
        assert!(!p.publish().await.unwrap());
        assert_eq!(cv(&bed).await, ClientVersion::V2x);
        // Rolled forward again: publishing resumes and the leader flips.
        let forward = rolled.advanced(ClientVersion::UpgradeFrom2x, "tool", 3);
        assert!(bed.coordinator.update_migration(&ClientVersion::V2x, &forward).await.unwrap());
        assert!(!p.publish().await.unwrap(), "off until a check sees the roll-forward");
        assert_eq!(p.check(t0).await.unwrap(), CheckOutcome::Flipped, "the item written before the rollback is fresh");
        assert!(p.publish().await.unwrap());
    }

    #[tokio::test]
    async fn a_stale_owner_or_an_unowned_table_keeps_the_fleet_in_2x() {
        let order = shuffled_owners(["a", "b"]);
        let (me, other) = (order[0].as_str(), order[1].as_str());
        let bed = bed(ClientVersion::UpgradeFrom2x, &[]).await;
        let zero = UpgradeSettings { ready_for: Duration::ZERO, ..settings() };
        let mut p = UpgradeParticipant::new(me, &bed.leases, &bed.table, &bed.coordinator, &bed.metrics, zero);
        p.publish().await.unwrap();
        assert_eq!(p.check(Instant::now()).await.unwrap(), CheckOutcome::Follower, "no owners: nothing to check");
        for (key, owner) in [("shardId-000000000009", me), ("shardId-000000000010", other)] {
            let mut lease = Lease::new(key, ExtendedSequenceNumber::new(Position::TrimHorizon));
            lease.owner = Some(owner.to_owned());
            bed.leases.put(lease);
        }
        let mut unowned = Lease::new("shardId-000000000011", ExtendedSequenceNumber::new(Position::TrimHorizon));
        bed.leases.put(unowned.clone());
        bed.metrics.publish(&WorkerMetricStats::default_metric(other, epoch_s())).await.unwrap();
        assert_eq!(p.check(Instant::now()).await.unwrap(), CheckOutcome::Waiting, "a lease without an owner");
        unowned.owner = Some(me.to_owned());
        bed.leases.put(unowned);
        bed.metrics.publish(&WorkerMetricStats::default_metric(other, epoch_s() - 61)).await.unwrap();
        assert_eq!(
            p.check(Instant::now()).await.unwrap(),
            CheckOutcome::Waiting,
            "the other owner's metrics are stale"
        );
        bed.metrics.publish(&WorkerMetricStats::default_metric(other, epoch_s())).await.unwrap();
        assert_eq!(p.check(Instant::now()).await.unwrap(), CheckOutcome::Flipped);
    }

    #[tokio::test]
    async fn run_publishes_at_once_and_stops_on_cancel() {
        let bed = bed(ClientVersion::UpgradeFrom2x, &["a"]).await;
        let fast = UpgradeSettings {
            publish_interval: Duration::from_millis(20),
            check_interval: Duration::from_millis(20),
            ready_for: Duration::from_millis(100),
        };
        let p = UpgradeParticipant::new("a", &bed.leases, &bed.table, &bed.coordinator, &bed.metrics, fast);
        let cancel = CancellationToken::new();
        let run = p.run(cancel.clone());
        let watch = async {
            let deadline = Instant::now() + Duration::from_secs(10);
            while cv(&bed).await != ClientVersion::V3xWithRollback && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            cancel.cancel();
        };
        tokio::join!(run, watch);
        assert_eq!(cv(&bed).await, ClientVersion::V3xWithRollback, "the only worker flips its own fleet");
        assert_eq!(bed.metrics.list().await.unwrap().workers.len(), 1);
    }
}
