//! The lease taker: the KCL 2.x decentralised balancing protocol, so Java and multilangd
//! workers sharing a table agree on who takes what.
//!
//! One round (Java `DynamoDBLeaseTaker`, see lease-coordination.md §5.2):
//! 1. scan the table; note on the local monotonic clock when each lease's counter last
//!    changed (a lease first seen with an owner counts as "just changed", so a newcomer never
//!    steals a live lease; one first seen without owner as "never");
//! 2. a lease is *available* when unowned, or unchanged for longer than `failoverTime`;
//! 3. count the non-available leases per owner (plus this worker); the target is
//!    `ceil(leases / workers)` (1 when workers ≥ leases), capped at `maxLeasesForWorker`;
//! 4. very old leases (unchanged for 3 × failover, e.g. never owned) are taken first,
//!    ignoring the target, when priority assignment is enabled;
//! 5. otherwise take available leases up to the target; if none are available, steal from
//!    the most loaded worker, at most `maxLeasesToStealAtOneTime`.
//!
//! Every take is conditional on the counter value seen, so a concurrent renewal by the
//! owner always wins.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use rand::seq::SliceRandom;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::recent::RecentScan;
use super::renewer::{HeldLease, LeaseRenewer};
use super::{Lease, LeaseError, LeaseStore};
use crate::telemetry::{self, Event, LeaseOperation, TakeKind};

/// Margin after a suspect lease's expiry before the confirming round runs.
const SUSPECT_MARGIN: Duration = Duration::from_millis(50);

/// Taker settings (from the configuration).
#[derive(Debug, Clone)]
pub struct TakerSettings {
    /// `failoverTimeMillis`.
    pub failover_time: Duration,
    /// `maxLeasesForWorker`.
    pub max_leases_for_worker: u32,
    /// `maxLeasesToStealAtOneTime`.
    pub max_leases_to_steal_at_one_time: u32,
    /// `enablePriorityLeaseAssignment`.
    pub enable_priority_lease_assignment: bool,
}

impl TakerSettings {
    /// The Java taker period: `(failover + epsilon) × 2` (20 050 ms for 10 s).
    #[must_use]
    pub fn interval(&self) -> Duration {
        (self.failover_time + Duration::from_millis(25)) * 2
    }
}

#[derive(Debug, Clone)]
struct Seen {
    counter: u64,
    /// `None` = never seen changing (minus infinity).
    last_change: Option<Instant>,
    /// How much the counter moved since the previous scan (`None` when first seen).
    delta: Option<u64>,
}

/// What one round saw and did (for logs, metrics and tests).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TakeReport {
    /// Leases in the table.
    pub total_leases: usize,
    /// Distinct workers holding non-expired leases (including this one).
    pub workers: usize,
    /// The fair-share target.
    pub target: usize,
    /// Leases this round tried to take (or steal).
    pub attempted: usize,
    /// Leases taken.
    pub taken: Vec<String>,
    /// Whether the attempt was a steal.
    pub stole: bool,
}

/// The taker of one worker.
pub struct LeaseTaker {
    store: Arc<dyn LeaseStore>,
    worker_id: String,
    settings: TakerSettings,
    seen: HashMap<String, Seen>,
    last_scan: Option<Instant>,
    confirm_at: Option<Instant>,
    recent: Option<RecentScan>,
}

impl LeaseTaker {
    /// A taker for `worker_id`.
    #[must_use]
    pub fn new(store: Arc<dyn LeaseStore>, worker_id: impl Into<String>, settings: TakerSettings) -> Self {
        Self {
            store,
            worker_id: worker_id.into(),
            settings,
            seen: HashMap::new(),
            last_scan: None,
            confirm_at: None,
            recent: None,
        }
    }

    /// Publishes every scan's leases to `recent` (for the lease audit's leader check).
    #[must_use]
    pub fn with_recent_scan(mut self, recent: RecentScan) -> Self {
        self.recent = Some(recent);
        self
    }

    /// When an extra round should run to confirm that a lease whose owner seems to have
    /// stopped renewing has expired (see [`LeaseTaker::take_round`]); `None` when no lease
    /// looks suspect.
    #[must_use]
    pub fn confirmation_due(&self) -> Option<Instant> {
        self.confirm_at
    }

    /// How often rounds run.
    #[must_use]
    pub fn interval(&self) -> Duration {
        self.settings.interval()
    }

    /// Runs one round. Leases are taken through `renewer`, which holds them from then on.
    ///
    /// Beyond Java: a lease of another worker whose counter moved much less than its owner's
    /// renewal cadence implies since the previous scan is *suspect* (the owner may have died
    /// during the interval). Instead of waiting for the next regular round (up to
    /// `2 × failover` later), [`LeaseTaker::confirmation_due`] then asks for an extra round
    /// right after the lease would expire, which bounds take-over after a crash by about
    /// `failover + taker interval`. A take that loses its race moves on to the next candidate.
    ///
    /// # Errors
    /// A scan failure aborts the round (like Java); take failures are logged and skipped.
    pub async fn take_round(&mut self, renewer: &LeaseRenewer) -> Result<(Vec<HeldLease>, TakeReport), LeaseError> {
        let round_started = Instant::now();
        let held: HashSet<String> = renewer.held().into_iter().map(|h| h.lease.key).collect();
        let held = &held;
        let scanned = self.store.list_leases().await;
        telemetry::record(Event::LeaseCall {
            op: LeaseOperation::List,
            shard_id: None,
            duration: round_started.elapsed(),
            success: scanned.is_ok(),
        });
        let scan = match scanned {
            Ok(scan) => scan,
            Err(e) => {
                telemetry::record(Event::TakeLeasesRound {
                    worker_id: &self.worker_id,
                    taken: 0,
                    untaken: 0,
                    expired: 0,
                    total: 0,
                    workers: 0,
                    needed: 0,
                    to_take: 0,
                    spillover: 0,
                    very_old: 0,
                    duration: round_started.elapsed(),
                    success: false,
                });
                return Err(e);
            }
        };
        for bad in &scan.malformed {
            warn!(error = %bad, "skipping malformed lease item");
        }
        let now = Instant::now();
        self.observe(&scan.leases, now);
        let choice = self.choose(&scan.leases, held, now);
        let mut report = choice.report;
        let mut taken = Vec::new();
        let expired = scan
            .leases
            .iter()
            .filter(|l| !held.contains(&l.key))
            .filter(|l| match l.owner.as_deref() {
                None => true,
                Some(o) => {
                    o == self.worker_id || self.unchanged_for_longer_than(&l.key, self.settings.failover_time, now)
                }
            })
            .count();
        let very_old = scan
            .leases
            .iter()
            .filter(|l| !held.contains(&l.key))
            .filter(|l| self.unchanged_for_longer_than(&l.key, self.settings.failover_time * 3, now))
            .count();
        let to_take = choice.to_take.len().min(choice.wanted);
        let mine = held.len();
        let max_for_worker = usize::try_from(self.settings.max_leases_for_worker).unwrap_or(usize::MAX);
        for lease in choice.to_take {
            if taken.len() >= choice.wanted {
                break;
            }
            report.attempted += 1;
            let stolen = lease.owner.as_deref().is_some_and(|o| o != self.worker_id)
                && !self.unchanged_for_longer_than(&lease.key, self.settings.failover_time, now);
            match renewer.acquire(&lease).await {
                Ok(Some(held)) => {
                    let kind = if stolen { TakeKind::Stolen } else { TakeKind::Expired };
                    telemetry::record(Event::LeaseTaken { shard_id: &held.lease.key, kind });
                    self.seen.insert(
                        held.lease.key.clone(),
                        Seen { counter: held.lease.counter, last_change: Some(Instant::now()), delta: None },
                    );
                    report.taken.push(held.lease.key.clone());
                    taken.push(held);
                }
                Ok(None) => debug!(lease = %lease.key, "lease changed before we could take it"),
                Err(e) => warn!(lease = %lease.key, error = %e, "could not take lease"),
            }
        }
        let target = report.target;
        telemetry::record(Event::TakeLeasesRound {
            worker_id: &self.worker_id,
            taken: report.taken.len(),
            untaken: to_take.saturating_sub(report.taken.len()),
            expired,
            total: report.total_leases,
            workers: report.workers,
            needed: target.saturating_sub(mine),
            to_take,
            spillover: (target > max_for_worker || mine + to_take > max_for_worker) as usize,
            very_old,
            duration: round_started.elapsed(),
            success: true,
        });
        if let Some(recent) = &self.recent {
            recent.publish(Arc::from(scan.leases), now);
        }
        if !report.taken.is_empty() {
            info!(
                taken = ?report.taken, stole = report.stole, target = report.target,
                workers = report.workers, leases = report.total_leases, "took leases"
            );
        }
        Ok((taken, report))
    }

    fn observe(&mut self, leases: &[Lease], now: Instant) {
        let present: HashSet<&str> = leases.iter().map(|l| l.key.as_str()).collect();
        self.seen.retain(|k, _| present.contains(k.as_str()));
        for lease in leases {
            let entry = match self.seen.get(&lease.key) {
                Some(s) if s.counter == lease.counter => Seen { delta: Some(0), ..s.clone() },
                Some(s) => Seen {
                    counter: lease.counter,
                    last_change: Some(now),
                    delta: Some(lease.counter.saturating_sub(s.counter)),
                },
                None => Seen { counter: lease.counter, last_change: lease.owner.as_ref().map(|_| now), delta: None },
            };
            self.seen.insert(lease.key.clone(), entry);
        }
        self.confirm_at = self.suspect_expiry(leases, now);
        self.last_scan = Some(now);
    }

    /// The earliest time a suspect lease of another worker expires (plus a margin).
    fn suspect_expiry(&self, leases: &[Lease], now: Instant) -> Option<Instant> {
        let since_last_scan = now.saturating_duration_since(self.last_scan?);
        let renew_period = (self.settings.failover_time / 3).saturating_sub(Duration::from_millis(25));
        let expected = since_last_scan.as_secs_f64() / renew_period.as_secs_f64().max(0.001);
        let failover = self.settings.failover_time;
        leases
            .iter()
            .filter(|l| l.owner.as_deref().is_some_and(|o| o != self.worker_id))
            .filter_map(|l| {
                let seen = self.seen.get(&l.key)?;
                let (delta, changed) = (seen.delta?, seen.last_change?);
                #[allow(clippy::cast_precision_loss)]
                let suspect = expected >= 1.5 && (delta as f64) < expected * 2.0 / 3.0;
                let expires = changed + failover + SUSPECT_MARGIN;
                (suspect && expires > now).then_some(expires)
            })
            .min()
    }

    fn unchanged_for_longer_than(&self, key: &str, limit: Duration, now: Instant) -> bool {
        match self.seen.get(key).and_then(|s| s.last_change) {
            None => true,
            Some(t) => now.saturating_duration_since(t) > limit,
        }
    }

    fn choose(&self, leases: &[Lease], held: &HashSet<String>, now: Instant) -> Choice {
        let me = self.worker_id.as_str();
        let failover = self.settings.failover_time;
        let available: Vec<&Lease> = leases
            .iter()
            .filter(|l| !held.contains(&l.key))
            .filter(|l| match l.owner.as_deref() {
                None => true,
                // Our own id on a lease we do not hold: left over from a previous run with
                // the same workerId; re-acquire at once.
                Some(o) if o == me => true,
                Some(_) => self.unchanged_for_longer_than(&l.key, failover, now),
            })
            .collect();
        let available_keys: HashSet<&str> = available.iter().map(|l| l.key.as_str()).collect();
        let mut counts: HashMap<&str, usize> = HashMap::new();
        counts.insert(me, 0);
        for lease in leases {
            if available_keys.contains(lease.key.as_str()) {
                continue;
            }
            let owner = if held.contains(&lease.key) { Some(me) } else { lease.owner.as_deref() };
            if let Some(owner) = owner {
                *counts.entry(owner).or_insert(0) += 1;
            }
        }
        let total = leases.len();
        let workers = counts.len();
        let max_for_worker = usize::try_from(self.settings.max_leases_for_worker).unwrap_or(usize::MAX);
        let mut target = if workers >= total { 1 } else { total.div_ceil(workers) };
        if target > max_for_worker {
            warn!(
                target,
                max_for_worker, "fair share exceeds maxLeasesForWorker; some shards stay unprocessed (LeaseSpillover)"
            );
            target = max_for_worker;
        }
        let mine = counts.get(me).copied().unwrap_or(0);
        let mut report = TakeReport { total_leases: total, workers, target, ..TakeReport::default() };
        if total == 0 {
            return Choice { to_take: Vec::new(), wanted: 0, report };
        }
        let mut rng = rand::rng();

        if self.settings.enable_priority_lease_assignment {
            let mut very_old: Vec<&Lease> = available
                .iter()
                .copied()
                .filter(|l| self.unchanged_for_longer_than(&l.key, failover * 3, now))
                .collect();
            if !very_old.is_empty() {
                very_old.shuffle(&mut rng);
                let wanted = max_for_worker.saturating_sub(mine);
                return Choice { to_take: very_old.into_iter().cloned().collect(), wanted, report };
            }
        }

        let needed = target.saturating_sub(mine);
        if needed == 0 {
            return Choice { to_take: Vec::new(), wanted: 0, report };
        }
        if !available.is_empty() {
            let mut pick = available;
            pick.shuffle(&mut rng);
            return Choice { to_take: pick.into_iter().cloned().collect(), wanted: needed, report };
        }
        // Steal from the most loaded other worker.
        let Some((victim, victim_count)) =
            counts.iter().filter(|(w, _)| **w != me).max_by_key(|(_, c)| **c).map(|(w, c)| (*w, *c))
        else {
            return Choice { to_take: Vec::new(), wanted: 0, report };
        };
        if victim_count < target {
            return Choice { to_take: Vec::new(), wanted: 0, report };
        }
        let mut steal = needed.min(victim_count - target);
        if steal == 0 && needed > 1 {
            steal = 1;
        }
        steal = steal.min(usize::try_from(self.settings.max_leases_to_steal_at_one_time).unwrap_or(1));
        let mut candidates: Vec<&Lease> =
            leases.iter().filter(|l| l.owner.as_deref() == Some(victim) && !held.contains(&l.key)).collect();
        candidates.shuffle(&mut rng);
        report.stole = steal > 0 && !candidates.is_empty();
        Choice { to_take: candidates.into_iter().cloned().collect(), wanted: steal, report }
    }
}

struct Choice {
    /// Candidates in the order to try them (already shuffled).
    to_take: Vec<Lease>,
    /// How many to take; a lost race moves on to the next candidate.
    wanted: usize,
    report: TakeReport,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::memory::InMemoryLeaseStore;
    use crate::lease::renewer::RenewerConfig;
    use crate::sequence::{ExtendedSequenceNumber, Position};

    const FAILOVER: Duration = Duration::from_secs(10);

    fn settings() -> TakerSettings {
        TakerSettings {
            failover_time: FAILOVER,
            max_leases_for_worker: u32::MAX,
            max_leases_to_steal_at_one_time: 1,
            enable_priority_lease_assignment: true,
        }
    }

    struct Worker {
        taker: LeaseTaker,
        renewer: LeaseRenewer,
    }

    fn worker(store: &InMemoryLeaseStore, id: &str, settings: TakerSettings) -> Worker {
        let store: Arc<dyn LeaseStore> = Arc::new(store.clone());
        let renewer = LeaseRenewer::new(
            store.clone(),
            id,
            RenewerConfig { failover_time: FAILOVER, max_concurrent_renewals: 20 },
        );
        Worker { taker: LeaseTaker::new(store, id, settings), renewer }
    }

    fn table(n: usize) -> InMemoryLeaseStore {
        let store = InMemoryLeaseStore::new("app");
        for i in 0..n {
            store.put(Lease::new(format!("shardId-{i:012}"), ExtendedSequenceNumber::new(Position::TrimHorizon)));
        }
        store
    }

    fn counts(workers: &[Worker]) -> Vec<usize> {
        workers.iter().map(|w| w.renewer.held().len()).collect()
    }

    /// Runs one taker round on every worker, renewing held leases in between so that
    /// nothing live looks expired, and advances time by one taker interval.
    async fn round(workers: &mut [Worker]) {
        for w in workers.iter_mut() {
            w.taker.take_round(&w.renewer).await.unwrap();
        }
        for _ in 0..6 {
            tokio::time::advance(Duration::from_millis(3_341)).await;
            for w in workers.iter() {
                w.renewer.renew_all().await;
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn three_workers_on_eight_shards_converge_to_3_3_2_within_three_rounds() {
        let store = table(8);
        let mut workers: Vec<Worker> = ["w1", "w2", "w3"].iter().map(|id| worker(&store, id, settings())).collect();
        for _ in 0..3 {
            round(&mut workers).await;
        }
        let mut c = counts(&workers);
        c.sort_unstable();
        assert_eq!(c, [2, 3, 3]);
        // Every lease is owned by exactly one worker.
        let total: usize = counts(&workers).iter().sum();
        assert_eq!(total, 8);
    }

    #[tokio::test(start_paused = true)]
    async fn a_fourth_worker_gets_its_share_by_stealing_one_at_a_time() {
        let store = table(8);
        let mut workers: Vec<Worker> = ["w1", "w2", "w3"].iter().map(|id| worker(&store, id, settings())).collect();
        for _ in 0..3 {
            round(&mut workers).await;
        }
        workers.push(worker(&store, "w4", settings()));
        // w4 must see the others' leases change before they count as live; it steals at
        // most one lease per round (maxLeasesToStealAtOneTime = 1) until it holds 2.
        for expected in [1, 2] {
            round(&mut workers).await;
            assert_eq!(workers[3].renewer.held().len(), expected);
        }
        // Stolen-from workers notice the loss at their next renewal.
        for w in &workers {
            w.renewer.renew_all().await;
        }
        let mut c = counts(&workers);
        c.sort_unstable();
        assert_eq!(c, [2, 2, 2, 2]);
    }

    #[tokio::test(start_paused = true)]
    async fn leases_of_a_dead_worker_are_taken_after_failover() {
        let store = table(4);
        let mut live = vec![worker(&store, "live", settings())];
        let dead = worker(&store, "dead", settings());
        // The dead worker took everything once and then stopped renewing.
        let mut dead = dead;
        dead.taker.take_round(&dead.renewer).await.unwrap();
        assert_eq!(dead.renewer.held().len(), 4);
        // First sight: owned leases count as just changed, so none is available; the
        // newcomer only steals one from the most loaded worker (fair share 2 of 4).
        let w = &mut live[0];
        let (_, report) = w.taker.take_round(&w.renewer).await.unwrap();
        assert!(report.stole);
        assert_eq!(live[0].renewer.held().len(), 1);
        // After failover of seeing no change they are available.
        tokio::time::advance(FAILOVER + Duration::from_millis(1)).await;
        round(&mut live).await;
        assert_eq!(live[0].renewer.held().len(), 4);
        for key in live[0].renewer.held().iter().map(|h| h.lease.key.clone()) {
            let lease = store.lease(&key).unwrap();
            assert_eq!(lease.owner.as_deref(), Some("live"));
            assert_eq!(lease.owner_switches_since_checkpoint, 1);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn max_leases_for_worker_caps_taking() {
        let store = table(5);
        let mut s = settings();
        s.max_leases_for_worker = 2;
        let mut workers = vec![worker(&store, "w1", s)];
        round(&mut workers).await;
        round(&mut workers).await;
        assert_eq!(workers[0].renewer.held().len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn own_leases_from_a_previous_run_are_reacquired_at_once() {
        let store = table(2);
        store.modify("shardId-000000000000", |l| {
            l.owner = Some("me".into());
            l.counter = 7;
        });
        let mut w = worker(&store, "me", settings());
        let mut s = settings();
        s.enable_priority_lease_assignment = false;
        w.taker = LeaseTaker::new(Arc::new(store.clone()), "me", s);
        w.taker.take_round(&w.renewer).await.unwrap();
        let held: Vec<String> = w.renewer.held().into_iter().map(|h| h.lease.key).collect();
        assert!(held.contains(&"shardId-000000000000".to_owned()), "{held:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_dead_owner_is_taken_over_within_failover_plus_one_interval() {
        let store = table(4);
        let mut workers: Vec<Worker> = ["w1", "w2"].iter().map(|id| worker(&store, id, settings())).collect();
        for _ in 0..3 {
            round(&mut workers).await;
        }
        assert_eq!(counts(&workers), [2, 2]);
        // Live owners renew at their cadence: nothing is suspect.
        assert_eq!(workers[1].taker.confirmation_due(), None);

        // Regular round of w2 at T; w1 renews once more, then dies.
        let w2 = &mut workers[1];
        w2.taker.take_round(&w2.renewer).await.unwrap();
        tokio::time::advance(Duration::from_millis(500)).await;
        workers[0].renewer.renew_all().await;
        let died = Instant::now();
        let interval = settings().interval();
        // w2 renews its own leases until its next regular round at T + interval.
        let mut elapsed = Duration::from_millis(500);
        while elapsed < interval {
            tokio::time::advance(Duration::from_millis(250)).await;
            elapsed += Duration::from_millis(250);
            workers[1].renewer.renew_all().await;
        }
        let w2 = &mut workers[1];
        w2.taker.take_round(&w2.renewer).await.unwrap();
        assert_eq!(w2.renewer.held().len(), 2, "not expired yet");
        let due = w2.taker.confirmation_due().expect("w1's leases moved too little: suspect");
        // The confirming round runs right after expiry instead of a whole interval later.
        while Instant::now() < due {
            tokio::time::advance(Duration::from_millis(250)).await;
            workers[1].renewer.renew_all().await;
        }
        let w2 = &mut workers[1];
        w2.taker.take_round(&w2.renewer).await.unwrap();
        assert_eq!(w2.renewer.held().len(), 4);
        assert!(died.elapsed() <= FAILOVER + interval, "took over {:?} after the death", died.elapsed());
        assert_eq!(w2.taker.confirmation_due(), None);
    }
}
