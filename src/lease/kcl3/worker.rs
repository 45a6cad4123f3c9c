//! A worker in a KCL 3.x fleet: the [`LeaseAssignment`] the scheduler runs in 3.x mode, and
//! the lease store the renewer uses in 3.x mode.
//!
//! [`Kcl3Assignment`] (one round every few seconds, [`Kcl3Assignment::next_round`]):
//! - publishes this worker's `WorkerMetricStats` (a default-metric worker) every
//!   `workerMetricsReporterFreqInMillis`;
//! - polls the leader lock ([`LeaderLock`]); while it holds the lock it runs the
//!   [`LeaseAssigner`] every `leaseAssignmentIntervalMillis` and gives the lock up after three
//!   failed assignment runs;
//! - discovers the leases assigned to it through the owner index ([`discover_listed`]; one
//!   index query per discovery) and adds them to the renewer's held set; a held lease that
//!   the index no longer lists under this worker and whose `checkpointOwner` names it is a
//!   graceful hand-off, announced to the scheduler in
//!   [`AssignmentRound::hand_off`];
//! - when the scheduler reports the consumer of a handed-off lease stopped
//!   ([`LeaseAssignment::handed_off`]), completes the transfer with `assign` (`REMOVE
//!   checkpointOwner`, counter + 1) and stops holding the lease without releasing it.
//!
//! [`Kcl3LeaseStore`] wraps the lease table for the renewer: a renewal is the 3.x renewal
//! (`attribute_not_exists(checkpointOwner)` unless a hand-off is known, `throughputKBps` from
//! the bytes the worker status reports per shard); a failed condition that shows a hand-off
//! registers it (so the next round announces it) and renews again without the condition, so
//! the old owner keeps the lease alive while its processor checkpoints. Taking never happens.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;
use tracing::{info, warn};

use super::coordinator::CoordinatorStateStore;
use super::follower::{discover_listed, discovery_interval, publish_metrics, ThroughputMeter};
use super::leader::{LeaderSettings, LeaseAssigner};
use super::lease_table::{Kcl3LeaseTable, Renewal};
use super::lock::{LeaderLock, Leadership};
use super::worker_metrics::WorkerMetricsStore;
use crate::lease::assignment::{AssignmentRound, LeaseAssignment};
use crate::lease::renewer::LeaseRenewer;
use crate::lease::{HashKeyRange, Lease, LeaseError, LeaseScan, LeaseStore, MigrationState};
use crate::sequence::ExtendedSequenceNumber;
use crate::status::StatusReceiver;

/// Hand-offs this worker was asked to make: key → the lease as stored when it was noticed
/// (`leaseOwner` = the new owner, `checkpointOwner` = this worker).
#[derive(Debug, Clone, Default)]
pub struct Handoffs(Arc<Mutex<HashMap<String, Lease>>>);

impl Handoffs {
    fn map(&self) -> MutexGuard<'_, HashMap<String, Lease>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a hand-off request.
    pub fn insert(&self, lease: Lease) {
        self.map().insert(lease.key.clone(), lease);
    }

    /// The registered hand-off of `key`.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<Lease> {
        self.map().get(key).cloned()
    }

    /// Removes and returns the hand-off of `key`.
    pub fn remove(&self, key: &str) -> Option<Lease> {
        self.map().remove(key)
    }

    /// Keys with a registered hand-off.
    #[must_use]
    pub fn keys(&self) -> Vec<String> {
        self.map().keys().cloned().collect()
    }
}

/// The lease table as the renewer uses it in 3.x mode (see the module docs).
pub struct Kcl3LeaseStore {
    inner: Arc<dyn LeaseStore>,
    table: Arc<dyn Kcl3LeaseTable>,
    me: String,
    handoffs: Handoffs,
    status: OnceLock<StatusReceiver>,
    /// key → (bytes reported at the previous renewal, meter).
    meter: Mutex<(HashMap<String, u64>, ThroughputMeter)>,
}

impl Kcl3LeaseStore {
    /// Wraps the lease table `inner` (and its 3.x operations `table`) for worker `me`, sharing
    /// `handoffs` with its [`Kcl3Assignment`].
    #[must_use]
    pub fn new(
        inner: Arc<dyn LeaseStore>,
        table: Arc<dyn Kcl3LeaseTable>,
        me: &str,
        handoffs: Handoffs,
        ema_alpha: f64,
    ) -> Self {
        Self {
            inner,
            table,
            me: me.to_owned(),
            handoffs,
            status: OnceLock::new(),
            meter: Mutex::new((HashMap::new(), ThroughputMeter::new(ema_alpha))),
        }
    }

    /// Where to read the bytes delivered per shard (for `throughputKBps`); without it the
    /// renewals write no throughput.
    pub fn set_status(&self, status: StatusReceiver) {
        let _ = self.status.set(status);
    }

    fn throughput(&self, key: &str) -> Option<f64> {
        let status = self.status.get()?;
        let bytes = status.borrow().shard(key).map_or(0, |s| s.bytes);
        let mut guard = self.meter.lock().unwrap_or_else(PoisonError::into_inner);
        let (last, meter) = &mut *guard;
        let previous = last.insert(key.to_owned(), bytes).unwrap_or(bytes);
        meter.record(key, bytes.saturating_sub(previous));
        // Before the first measurement window closes, report 0 (Java writes a value with
        // every renewal once it has one).
        Some(meter.sample(key, Instant::now()).unwrap_or(0.0))
    }
}

#[async_trait]
impl LeaseStore for Kcl3LeaseStore {
    fn table_name(&self) -> &str {
        self.inner.table_name()
    }
    async fn ensure_table(&self) -> Result<bool, LeaseError> {
        self.inner.ensure_table().await
    }
    async fn list_leases(&self) -> Result<LeaseScan, LeaseError> {
        self.inner.list_leases().await
    }
    async fn get_lease(&self, key: &str) -> Result<Option<Lease>, LeaseError> {
        self.inner.get_lease(key).await
    }
    async fn create_lease_if_absent(&self, lease: &Lease) -> Result<bool, LeaseError> {
        self.inner.create_lease_if_absent(lease).await
    }
    async fn renew_lease(&self, lease: &Lease) -> Result<bool, LeaseError> {
        let throughput = self.throughput(&lease.key);
        let mut view = lease.clone();
        if self.handoffs.get(&lease.key).is_some() {
            view.checkpoint_owner = Some(self.me.clone());
        }
        match self.table.renew_lease_3x(&view, &self.me, throughput).await? {
            Renewal::Renewed => Ok(true),
            Renewal::HandoffRequested(stored) => {
                info!(lease = %lease.key, to = ?stored.owner, "the leader asked for a graceful hand-off of this lease");
                self.handoffs.insert(*stored);
                view.checkpoint_owner = Some(self.me.clone());
                Ok(matches!(self.table.renew_lease_3x(&view, &self.me, throughput).await?, Renewal::Renewed))
            }
            Renewal::Lost => {
                self.handoffs.remove(&lease.key);
                Ok(false)
            }
        }
    }
    async fn take_lease(&self, lease: &Lease, owner: &str) -> Result<bool, LeaseError> {
        self.inner.take_lease(lease, owner).await
    }
    async fn release_lease(&self, lease: &Lease) -> Result<bool, LeaseError> {
        self.inner.release_lease(lease).await
    }
    async fn update_checkpoint(&self, lease: &Lease, checkpoint: &ExtendedSequenceNumber) -> Result<bool, LeaseError> {
        self.inner.update_checkpoint(lease, checkpoint).await
    }
    async fn update_child_shard_ids(
        &self,
        key: &str,
        children: &std::collections::BTreeSet<String>,
    ) -> Result<bool, LeaseError> {
        self.inner.update_child_shard_ids(key, children).await
    }
    async fn update_hash_key_range(&self, key: &str, range: &HashKeyRange) -> Result<bool, LeaseError> {
        self.inner.update_hash_key_range(key, range).await
    }
    async fn delete_lease(&self, key: &str) -> Result<(), LeaseError> {
        self.inner.delete_lease(key).await
    }
    async fn migration_state(&self) -> Result<Option<MigrationState>, LeaseError> {
        self.inner.migration_state().await
    }
}

/// Settings of a 3.x worker.
#[derive(Debug, Clone)]
pub struct Kcl3Settings {
    /// The leader's settings (also the assignment interval).
    pub leader: LeaderSettings,
    /// `leaseDuration` written into the lock this worker holds.
    pub lock_duration: Duration,
    /// `workerMetricsReporterFreqInMillis`.
    pub metrics_interval: Duration,
}

/// The 3.x [`LeaseAssignment`] (see the module docs).
pub struct Kcl3Assignment {
    me: String,
    leases: Arc<dyn LeaseStore>,
    table: Arc<dyn Kcl3LeaseTable>,
    coordinator: Arc<dyn CoordinatorStateStore>,
    metrics: Arc<dyn WorkerMetricsStore>,
    handoffs: Handoffs,
    announced: HashSet<String>,
    lock: LeaderLock,
    assigner: Option<LeaseAssigner>,
    settings: Kcl3Settings,
    next_metrics: Instant,
    next_lock: Instant,
    next_assignment: Instant,
    next_discovery: Instant,
}

impl Kcl3Assignment {
    /// A 3.x worker `me`; every duty is due at once.
    #[must_use]
    pub fn new(
        me: &str,
        leases: Arc<dyn LeaseStore>,
        table: Arc<dyn Kcl3LeaseTable>,
        coordinator: Arc<dyn CoordinatorStateStore>,
        metrics: Arc<dyn WorkerMetricsStore>,
        handoffs: Handoffs,
        settings: Kcl3Settings,
    ) -> Self {
        let now = Instant::now();
        let lock_ms = u64::try_from(settings.lock_duration.as_millis()).unwrap_or(u64::MAX);
        Self {
            me: me.to_owned(),
            leases,
            table,
            coordinator,
            metrics,
            handoffs,
            announced: HashSet::new(),
            lock: LeaderLock::new(me, lock_ms),
            assigner: None,
            settings,
            next_metrics: now,
            next_lock: now,
            next_assignment: now,
            next_discovery: now,
        }
    }

    fn lock_poll_interval(&self) -> Duration {
        (self.settings.lock_duration / 6).clamp(Duration::from_millis(200), Duration::from_secs(30))
    }

    fn discovery_interval(&self) -> Duration {
        discovery_interval(self.settings.leader.assignment_interval).min(Duration::from_secs(10))
    }

    fn epoch_s() -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
    }

    async fn lead(&mut self, now: Instant) -> Result<(), LeaseError> {
        if now >= self.next_lock {
            self.next_lock = now + self.lock_poll_interval();
            match self.lock.poll(&*self.coordinator, now).await? {
                Leadership::Leader if self.assigner.is_none() => {
                    info!(worker = %self.me, "this worker is the KCL 3.x leader: assigning leases");
                    self.assigner = Some(LeaseAssigner::new(
                        self.leases.clone(),
                        self.table.clone(),
                        self.metrics.clone(),
                        self.settings.leader.clone(),
                    ));
                    self.next_assignment = now;
                }
                Leadership::Leader => {}
                _ => self.assigner = None,
            }
        }
        if let Some(assigner) = &mut self.assigner {
            if now >= self.next_assignment {
                self.next_assignment = now + self.settings.leader.assignment_interval;
                if let Err(e) = assigner.round(now, Self::epoch_s()).await {
                    warn!(error = %e, "lease assignment failed");
                }
                if assigner.should_resign() {
                    warn!("three lease assignment runs failed: giving up the leader lock");
                    self.assigner = None;
                    self.lock.release(&*self.coordinator).await?;
                }
            }
        }
        Ok(())
    }

    async fn publish(&mut self, now: Instant) -> Result<(), LeaseError> {
        if now >= self.next_metrics {
            self.next_metrics = now + self.settings.metrics_interval;
            publish_metrics(&*self.metrics, &self.me, Self::epoch_s()).await?;
        }
        Ok(())
    }

    async fn follow(
        &mut self,
        now: Instant,
        held: &LeaseRenewer,
        round: &mut AssignmentRound,
    ) -> Result<(), LeaseError> {
        if now >= self.next_discovery {
            self.next_discovery = now + self.discovery_interval();
            let held_keys: HashSet<String> = held.held().into_iter().map(|h| h.lease.key).collect();
            let listed_keys = self.table.lease_keys_for_worker(&self.me).await?;
            for lease in discover_listed(&*self.leases, &self.me, &held_keys, &listed_keys).await? {
                info!(lease = %lease.key, "the leader assigned this lease to this worker");
                round.acquired.push(held.add(lease, Instant::now()));
            }
            // A held lease the leader moved away while we still renew it: a hand-off.
            let listed: HashSet<String> = listed_keys.into_iter().collect();
            for key in held_keys.difference(&listed) {
                if self.handoffs.get(key).is_some() {
                    continue;
                }
                if let Some(stored) = self.leases.get_lease(key).await? {
                    if stored.checkpoint_owner.as_deref() == Some(self.me.as_str())
                        && stored.owner.as_deref() != Some(&self.me)
                    {
                        self.handoffs.insert(stored);
                    }
                }
            }
        }
        for key in self.handoffs.keys() {
            if self.announced.insert(key.clone()) {
                round.hand_off.push(key);
            }
        }
        Ok(())
    }
}

#[async_trait]
impl LeaseAssignment for Kcl3Assignment {
    fn leads_shard_sync(&self) -> Option<bool> {
        Some(self.assigner.is_some())
    }

    fn protocol(&self) -> &'static str {
        "KCL 3.x"
    }

    fn next_round(&self) -> Instant {
        let mut next = self.next_metrics.min(self.next_lock).min(self.next_discovery);
        if self.assigner.is_some() {
            next = next.min(self.next_assignment);
        }
        next
    }

    async fn round(&mut self, held: &LeaseRenewer) -> Result<AssignmentRound, LeaseError> {
        let now = Instant::now();
        let mut round = AssignmentRound::default();
        // Metrics first, so that a worker starting a new application is an active worker for
        // its own first assignment run; discovery last, to pick up what that run assigned.
        let published = self.publish(now).await;
        let led = self.lead(now).await;
        let followed = self.follow(now, held, &mut round).await;
        published.and(led).and(followed).map(|()| round)
    }

    async fn stopped(&mut self) -> Result<(), LeaseError> {
        self.assigner = None;
        if self.lock.release(&*self.coordinator).await? {
            info!(worker = %self.me, "released the leader lock");
        }
        Ok(())
    }

    async fn handed_off(&mut self, held: &LeaseRenewer, key: &str) -> Result<(), LeaseError> {
        self.announced.remove(key);
        let Some(stored) = self.handoffs.remove(key) else {
            // Not a 3.x hand-off (should not happen): let the lease go as 2.x would.
            return held.release(key).await.map(|_| ());
        };
        let to = stored.owner.clone().unwrap_or_default();
        held.drop_lease(key);
        match self.table.assign_lease(&stored, &to).await? {
            Some(_) => info!(lease = %key, to = %to, "completed the graceful hand-off"),
            None => warn!(lease = %key, "the hand-off changed meanwhile (the leader reassigned the lease)"),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::kcl3::memory::{InMemoryCoordinatorStore, InMemoryKcl3LeaseTable, InMemoryWorkerMetricsStore};
    use crate::lease::memory::InMemoryLeaseStore;
    use crate::lease::renewer::RenewerConfig;
    use crate::sequence::Position;

    fn settings() -> Kcl3Settings {
        Kcl3Settings {
            leader: LeaderSettings {
                failover_time: Duration::from_secs(10),
                assignment_interval: Duration::from_secs(20),
                graceful_handoff: true,
                handoff_timeout: Duration::from_secs(30),
                max_leases_for_worker: usize::MAX,
                metrics_expiry: Duration::from_secs(60),
                stale_metrics_cleanup: Duration::from_secs(86_400),
            },
            lock_duration: Duration::from_secs(20),
            metrics_interval: Duration::from_secs(30),
        }
    }

    struct Worker {
        assignment: Kcl3Assignment,
        renewer: LeaseRenewer,
    }

    fn worker(
        me: &str,
        leases: &InMemoryLeaseStore,
        coordinator: &InMemoryCoordinatorStore,
        metrics: &InMemoryWorkerMetricsStore,
        table: &InMemoryKcl3LeaseTable,
    ) -> Worker {
        let handoffs = Handoffs::default();
        let renewing =
            Arc::new(Kcl3LeaseStore::new(Arc::new(leases.clone()), Arc::new(table.clone()), me, handoffs.clone(), 0.5));
        let assignment = Kcl3Assignment::new(
            me,
            Arc::new(leases.clone()),
            Arc::new(table.clone()),
            Arc::new(coordinator.clone()),
            Arc::new(metrics.clone()),
            handoffs,
            settings(),
        );
        Worker { assignment, renewer: LeaseRenewer::new(renewing, me, RenewerConfig::default()) }
    }

    #[tokio::test]
    async fn a_lone_worker_leads_assigns_itself_discovers_and_releases_the_lock_on_stop() {
        let leases = InMemoryLeaseStore::new("app");
        for i in 0..2 {
            leases.put(Lease::new(format!("s{i}"), ExtendedSequenceNumber::new(Position::TrimHorizon)));
        }
        let table = InMemoryKcl3LeaseTable::new(leases.clone());
        table.ensure_owner_index().await.unwrap();
        let coordinator = InMemoryCoordinatorStore::new("c");
        let metrics = InMemoryWorkerMetricsStore::new("m");
        let mut w = worker("me", &leases, &coordinator, &metrics, &table);
        assert_eq!(w.assignment.leads_shard_sync(), Some(false), "no lock yet: no shard-sync audit");
        let round = w.assignment.round(&w.renewer).await.unwrap();
        let mut acquired: Vec<String> = round.acquired.iter().map(|h| h.lease.key.clone()).collect();
        acquired.sort();
        assert_eq!(acquired, ["s0", "s1"], "metrics, lock, assignment and discovery in one round");
        assert_eq!(coordinator.lock().await.unwrap().map(|l| l.owner), Some("me".into()));
        assert_eq!(w.assignment.leads_shard_sync(), Some(true), "the lock holder runs the shard-sync audit");
        // The renewer's 3.x renewals go through the wrapper.
        assert!(w.renewer.renew_all().await.renewed >= 2 || leases.lease("s0").unwrap().counter >= 2);
        w.assignment.stopped().await.unwrap();
        assert_eq!(coordinator.lock().await.unwrap(), None, "the lock is released on shutdown");
        assert_eq!(w.assignment.leads_shard_sync(), Some(false));
    }

    #[tokio::test]
    async fn a_hand_off_is_announced_and_completed_by_assign() {
        let leases = InMemoryLeaseStore::new("app");
        let mut lease = Lease::new("s0", ExtendedSequenceNumber::new(Position::TrimHorizon));
        lease.owner = Some("me".into());
        leases.put(lease);
        let table = InMemoryKcl3LeaseTable::new(leases.clone());
        table.ensure_owner_index().await.unwrap();
        let coordinator = InMemoryCoordinatorStore::new("c");
        let metrics = InMemoryWorkerMetricsStore::new("m");
        let mut w = worker("me", &leases, &coordinator, &metrics, &table);
        let round = w.assignment.round(&w.renewer).await.unwrap();
        assert_eq!(round.acquired.len(), 1);
        // The leader (another worker) starts a hand-off to "other".
        let stored = leases.lease("s0").unwrap();
        table.initiate_handoff(&stored, "other").await.unwrap().unwrap();
        // The renewal notices it and keeps the lease alive without the hand-off condition.
        w.renewer.renew_all().await;
        assert!(w.renewer.get("s0").is_some(), "still held while the processor checkpoints");
        w.assignment.next_discovery = Instant::now();
        let round = w.assignment.round(&w.renewer).await.unwrap();
        assert_eq!(round.hand_off, ["s0"]);
        w.assignment.handed_off(&w.renewer, "s0").await.unwrap();
        let done = leases.lease("s0").unwrap();
        assert_eq!(done.owner.as_deref(), Some("other"));
        assert_eq!(done.checkpoint_owner, None);
        assert!(w.renewer.get("s0").is_none());
    }
}
