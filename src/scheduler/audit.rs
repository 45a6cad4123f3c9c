//! The leases recovery auditor (lease-coordination.md §6.1, §7.3): the leader periodically
//! checks that the leases still in progress cover the whole 128-bit hash-key range and runs
//! a shard sync when the same hole shows up on several consecutive audits.
//!
//! As Java's `PeriodicShardSyncManager`: first run 60 s after start, then every 120 s (a
//! run that overruns delays the next one instead of stacking runs). One audit:
//! 1. scans the lease table;
//! 2. stops unless this worker is the leader ([`crate::lease::leader::is_leader`]: the
//!    first of the deterministically shuffled lease owners; everyone while no lease has an
//!    owner). Java elects from a separate scan at the first audit and then every 5 min;
//!    here the leader is computed from each audit's own scan, which costs nothing extra and
//!    is never staler than Java's choice. Java and multilangd workers pick the same leader
//!    from the same owners. In KCL 3.x mode the leader is the holder of the leader lock
//!    instead ([`Auditor::set_leader`], from the 3.x assignment), as Java 3.x runs the shard
//!    sync on the lock holder only;
//! 3. with no lease at all, syncs at once;
//! 4. otherwise takes the leases not at `SHARD_END`, back-fills missing hash-key ranges
//!    from ListShards (pre-2.3 leases; written with no counter change) and looks for a
//!    hole: no range at all, a first range not starting at 0, a last range not ending at
//!    2^128 − 1 (Java looks at the last range in start order, which a range contained in an
//!    earlier one can fake; here the largest end counts), or a gap of more than 1 between
//!    the running end and the next start;
//! 5. the same hole on `confidence_threshold` (3) consecutive audits triggers a shard sync
//!    ([`super::hierarchy::shard_sync`]); an audit without a hole resets the count. A sync
//!    is not started within `shardSyncIntervalMillis` of the previous one (Java's shard
//!    sync task idles that long after a run, refusing new submissions).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::hierarchy::shard_sync;
use super::sync::SyncError;
use crate::config::InitialPosition;
use crate::lease::leader::is_leader;
use crate::lease::recent::RecentScan;
use crate::lease::{HashKeyRange, Lease, LeaseStore};
use crate::sequence::Position;
use crate::stream::shards::{ShardFilter, ShardLister};
use crate::telemetry::{self, Event};

/// When audits run and how sure they must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSettings {
    /// Delay of the first audit after start (Java: 60 s).
    pub first_run: Duration,
    /// Pause between audits (Java `leasesRecoveryAuditorExecutionFrequencyMillis`: 120 s).
    pub interval: Duration,
    /// Consecutive audits that must see the same hole before a sync (Java
    /// `leasesRecoveryAuditorInconsistencyConfidenceThreshold`: 3).
    pub confidence_threshold: u32,
    /// Minimum time between two audit-triggered syncs (`shardSyncIntervalMillis`).
    pub min_sync_gap: Duration,
}

impl Default for AuditSettings {
    /// Java's values, with a 60 s sync gap (the `shardSyncIntervalMillis` default).
    fn default() -> Self {
        Self {
            first_run: Duration::from_secs(60),
            interval: Duration::from_secs(120),
            confidence_threshold: 3,
            min_sync_gap: Duration::from_secs(60),
        }
    }
}

/// A hole in the hash-key coverage of the leases in progress, identified (as in Java) by
/// the ranges on either side of it, so that consecutive audits can tell "the same hole".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hole {
    /// No lease in progress has a hash-key range.
    NoRanges,
    /// The ranges at the start and at the end of the possible hole (inclusive bounds).
    Between {
        /// The range before the hole (for a missing start: the first range).
        before: (u128, u128),
        /// The range after the hole (for a missing end: the last range).
        after: (u128, u128),
    },
}

/// The first hole in `ranges` (inclusive `(start, end)` pairs), if any; sorts `ranges`.
/// Overlapping ranges (a parent and its children both in progress) are merged.
#[must_use]
pub fn find_hole(ranges: &mut [(u128, u128)]) -> Option<Hole> {
    ranges.sort_unstable();
    let (&first, &last) = (ranges.first()?, ranges.last()?);
    // Java compares the end of the last range in (start, end) order; a range contained in
    // an earlier one would then fake a hole at the end. The largest end is what counts.
    let covered_to = ranges.iter().map(|r| r.1).max().unwrap_or(last.1);
    if first.0 != 0 || covered_to != u128::MAX {
        return Some(Hole::Between { before: first, after: last });
    }
    let mut left = first;
    let mut running_end = first.1;
    for &range in &ranges[1..] {
        if range.0 <= running_end {
            running_end = running_end.max(range.1);
        } else if range.0 - running_end == 1 {
            left = range;
            running_end = range.1;
        } else {
            return Some(Hole::Between { before: left, after: range });
        }
    }
    None
}

fn parse_range(range: &HashKeyRange) -> Option<(u128, u128)> {
    Some((range.starting.parse().ok()?, range.ending.parse().ok()?))
}

/// What one audit saw and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditOutcome {
    /// Another worker is the leader; nothing was checked.
    NotLeader,
    /// The leases in progress cover the whole hash-key range.
    Complete,
    /// A hole, seen on `seen` consecutive audits (not yet enough for a sync).
    Hole {
        /// The hole.
        hole: Hole,
        /// Consecutive audits that saw it.
        seen: u32,
    },
    /// A sync was due but the previous one was less than `min_sync_gap` ago.
    SyncDeferred,
    /// A shard sync ran and created `created` leases.
    Synced {
        /// Leases created.
        created: usize,
    },
}

/// The auditor of one worker (state: the hole tracker and the last sync time).
pub struct Auditor {
    worker_id: String,
    store: Arc<dyn LeaseStore>,
    lister: Arc<dyn ShardLister>,
    position: InitialPosition,
    ignore_unexpected_child_shards: bool,
    settings: AuditSettings,
    tracked: Option<(Hole, u32)>,
    last_sync: Option<Instant>,
    recent: Option<RecentScan>,
    /// Leadership decided elsewhere (the KCL 3.x leader lock); `None`: the 2.x leader choice.
    leader: Option<bool>,
}

impl Auditor {
    /// An auditor for `worker_id`.
    #[must_use]
    pub fn new(
        worker_id: impl Into<String>,
        store: Arc<dyn LeaseStore>,
        lister: Arc<dyn ShardLister>,
        position: InitialPosition,
        ignore_unexpected_child_shards: bool,
        settings: AuditSettings,
    ) -> Self {
        Self {
            worker_id: worker_id.into(),
            store,
            lister,
            position,
            ignore_unexpected_child_shards,
            settings,
            tracked: None,
            last_sync: None,
            recent: None,
            leader: None,
        }
    }

    /// Decides leadership from the taker's latest scan when it is at most half an audit
    /// interval old, instead of scanning the table again; only the leader then scans
    /// (a non-leader's audit costs nothing).
    #[must_use]
    pub fn with_recent_scan(mut self, recent: RecentScan) -> Self {
        self.recent = Some(recent);
        self
    }

    /// Sets who leads the shard sync: `Some(_)` from the KCL 3.x leader lock (the lock holder
    /// audits), `None` for the KCL 2.x leader choice from the lease owners.
    pub fn set_leader(&mut self, leader: Option<bool>) {
        self.leader = leader;
    }

    /// The timing settings.
    #[must_use]
    pub fn settings(&self) -> &AuditSettings {
        &self.settings
    }

    /// Runs one audit (see the module docs).
    ///
    /// # Errors
    /// The scan, the ListShards back-fill or the sync failed; the hole tracker is kept.
    pub async fn audit(&mut self) -> Result<AuditOutcome, SyncError> {
        let started = std::time::Instant::now();
        let result = self.audit_once().await;
        let (partial, to_sync, skipped) = match &result {
            Ok(AuditOutcome::NotLeader) => return result,
            Ok(AuditOutcome::Complete) | Err(_) => (0, 0, 0),
            Ok(AuditOutcome::Hole { .. }) => (1, 0, 1),
            Ok(AuditOutcome::SyncDeferred) => (1, 0, 1),
            Ok(AuditOutcome::Synced { .. }) => (1, 1, 0),
        };
        telemetry::record(Event::PeriodicShardSync {
            streams_with_partial_leases: partial,
            streams_to_sync: to_sync,
            skipped,
            duration: started.elapsed(),
            success: result.is_ok(),
        });
        result
    }

    async fn audit_once(&mut self) -> Result<AuditOutcome, SyncError> {
        if self.leader == Some(false) {
            debug!("not the KCL 3.x leader; skipping the lease audit");
            return Ok(AuditOutcome::NotLeader);
        }
        let by_owners = self.leader.is_none();
        let recent = self.recent.as_ref().and_then(|r| r.fresh(self.settings.interval / 2)).filter(|_| by_owners);
        if let Some(leases) = recent {
            if !is_leader(&self.worker_id, leases.iter().filter_map(|l| l.owner.as_deref())) {
                debug!("not the leader (by the latest taker scan); skipping the lease audit");
                return Ok(AuditOutcome::NotLeader);
            }
        }
        let scan = self.store.list_leases().await?;
        if by_owners && !is_leader(&self.worker_id, scan.leases.iter().filter_map(|l| l.owner.as_deref())) {
            debug!("not the leader; skipping the lease audit");
            return Ok(AuditOutcome::NotLeader);
        }
        if scan.leases.is_empty() {
            info!("lease audit: the lease table is empty; running a shard sync");
            return self.sync().await;
        }
        let active: Vec<&Lease> = scan.leases.iter().filter(|l| l.checkpoint.position != Position::ShardEnd).collect();
        let mut ranges = self.ranges_with_backfill(&active).await?;
        let Some(hole) = find_hole(&mut ranges) else {
            if self.tracked.take().is_some() {
                info!("lease audit: the hash-key range is complete again");
            }
            debug!(leases = active.len(), "lease audit: hash-key range complete");
            return Ok(AuditOutcome::Complete);
        };
        let seen = match self.tracked.take() {
            Some((tracked, seen)) if tracked == hole => seen + 1,
            _ => 1,
        };
        self.tracked = Some((hole.clone(), seen));
        let threshold = self.settings.confidence_threshold;
        warn!(?hole, seen, threshold, "lease audit: the leases in progress do not cover the hash-key range");
        if seen < threshold {
            return Ok(AuditOutcome::Hole { hole, seen });
        }
        self.sync().await
    }

    async fn sync(&mut self) -> Result<AuditOutcome, SyncError> {
        if self.last_sync.is_some_and(|t| t.elapsed() < self.settings.min_sync_gap) {
            info!(gap = ?self.settings.min_sync_gap, "lease audit: a shard sync ran recently; deferring");
            return Ok(AuditOutcome::SyncDeferred);
        }
        let created = shard_sync(&self.lister, &self.store, self.position, self.ignore_unexpected_child_shards).await?;
        self.last_sync = Some(Instant::now());
        info!(created, "lease audit: shard sync done");
        Ok(AuditOutcome::Synced { created })
    }

    /// The hash-key ranges of `active`; leases without one (or with an unreadable one) get
    /// it from ListShards, written back without a counter change. Leases whose shard is no
    /// longer listed are left out, as in Java.
    async fn ranges_with_backfill(&self, active: &[&Lease]) -> Result<Vec<(u128, u128)>, SyncError> {
        let mut ranges = Vec::with_capacity(active.len());
        let mut missing = Vec::new();
        for lease in active {
            match lease.hash_key_range.as_ref().and_then(parse_range) {
                Some(range) => ranges.push(range),
                None => missing.push(lease.key.as_str()),
            }
        }
        if missing.is_empty() {
            return Ok(ranges);
        }
        let shards = self.lister.list_shards(ShardFilter::All).await?;
        let by_id: HashMap<&str, &HashKeyRange> =
            shards.iter().map(|s| (s.shard_id.as_str(), &s.hash_key_range)).collect();
        for key in missing {
            let Some(range) = by_id.get(key) else {
                debug!(lease = key, "lease without hash-key range and no such shard listed");
                continue;
            };
            match self.store.update_hash_key_range(key, range).await {
                Ok(_) => info!(lease = key, "back-filled the lease's hash-key range"),
                Err(e) => warn!(lease = key, error = %e, "cannot back-fill the lease's hash-key range"),
            }
            if let Some(parsed) = parse_range(range) {
                ranges.push(parsed);
            }
        }
        Ok(ranges)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::leader::shuffled_owners;
    use crate::lease::memory::{InMemoryLeaseStore, Op};
    use crate::scheduler::sync::lease_for_shard;
    use crate::sequence::ExtendedSequenceNumber;
    use crate::stream::memory::InMemoryStream;

    const MAX: u128 = u128::MAX;

    #[test]
    fn holes() {
        let half = MAX / 2;
        assert_eq!(find_hole(&mut []), None);
        assert_eq!(find_hole(&mut [(0, MAX)]), None);
        assert_eq!(find_hole(&mut [(half + 1, MAX), (0, half)]), None, "adjacent, any order");
        assert_eq!(find_hole(&mut [(0, MAX), (0, half), (half + 1, MAX)]), None, "parent and children overlap");
        assert_eq!(find_hole(&mut [(0, half), (10, 20), (half + 1, MAX)]), None, "contained range");
        assert_eq!(
            find_hole(&mut [(0, half), (half + 2, MAX)]),
            Some(Hole::Between { before: (0, half), after: (half + 2, MAX) })
        );
        assert_eq!(find_hole(&mut [(1, MAX)]), Some(Hole::Between { before: (1, MAX), after: (1, MAX) }));
        assert_eq!(find_hole(&mut [(0, half)]), Some(Hole::Between { before: (0, half), after: (0, half) }));
        // As in Java, the range reported before a hole is the last one that started exactly
        // one past the coverage so far (overlapping ranges only extend it).
        assert_eq!(
            find_hole(&mut [(0, 10), (5, 20), (11, 30), (40, MAX)]),
            Some(Hole::Between { before: (0, 10), after: (40, MAX) })
        );
        assert_eq!(
            find_hole(&mut [(0, 10), (11, 30), (40, MAX)]),
            Some(Hole::Between { before: (11, 30), after: (40, MAX) })
        );
        // A range contained in an earlier one does not fake a hole at the end.
        assert_eq!(find_hole(&mut [(0, MAX), (5, 10)]), None);
    }

    struct Bed {
        stream: InMemoryStream,
        store: InMemoryLeaseStore,
        auditor: Auditor,
    }

    fn bed(shards: u32, worker: &str) -> Bed {
        let stream = InMemoryStream::with_shards(shards);
        let store = InMemoryLeaseStore::new("app");
        let settings = AuditSettings { min_sync_gap: Duration::ZERO, ..AuditSettings::default() };
        let auditor = Auditor::new(
            worker,
            Arc::new(store.clone()),
            Arc::new(stream.clone()),
            InitialPosition::TrimHorizon,
            false,
            settings,
        );
        Bed { stream, store, auditor }
    }

    impl Bed {
        fn lease_for(&self, n: usize, owner: Option<&str>) -> Lease {
            let shard = self.stream.shards()[n].clone();
            let mut lease = lease_for_shard(&shard, ExtendedSequenceNumber::new(Position::TrimHorizon));
            lease.owner = owner.map(str::to_owned);
            self.store.put(lease.clone());
            lease
        }

        fn keys(&self) -> Vec<String> {
            let mut keys: Vec<String> = self.stream.shards().into_iter().map(|s| s.shard_id).collect();
            keys.retain(|k| self.store.lease(k).is_some());
            keys
        }
    }

    #[tokio::test]
    async fn the_same_hole_three_times_triggers_a_sync_that_fills_it() {
        let mut bed = bed(3, "me");
        bed.lease_for(0, Some("me"));
        bed.lease_for(2, None);
        for seen in 1..=2 {
            match bed.auditor.audit().await.unwrap() {
                AuditOutcome::Hole { seen: s, .. } => assert_eq!(s, seen),
                other => panic!("audit {seen}: {other:?}"),
            }
            assert_eq!(bed.store.calls(Op::CreateLease), 0, "no sync before the threshold");
        }
        assert_eq!(bed.auditor.audit().await.unwrap(), AuditOutcome::Synced { created: 1 });
        assert_eq!(bed.keys().len(), 3);
        let created = bed.store.lease("shardId-000000000001").unwrap();
        assert_eq!(created.checkpoint.position, Position::TrimHorizon);
        assert_eq!(bed.auditor.audit().await.unwrap(), AuditOutcome::Complete);
    }

    #[tokio::test]
    async fn a_closed_hole_resets_the_count_and_a_different_hole_starts_over() {
        let mut bed = bed(4, "me");
        bed.lease_for(0, Some("me"));
        bed.lease_for(2, None);
        bed.lease_for(3, None);
        assert!(matches!(bed.auditor.audit().await.unwrap(), AuditOutcome::Hole { seen: 1, .. }));
        assert!(matches!(bed.auditor.audit().await.unwrap(), AuditOutcome::Hole { seen: 2, .. }));
        let filled = bed.lease_for(1, None);
        assert_eq!(bed.auditor.audit().await.unwrap(), AuditOutcome::Complete);
        bed.store.delete_lease(&filled.key).await.unwrap();
        assert!(matches!(bed.auditor.audit().await.unwrap(), AuditOutcome::Hole { seen: 1, .. }));
        // A different hole (shard 0 gone too: nothing starts at 0) starts a new count.
        bed.store.delete_lease("shardId-000000000000").await.unwrap();
        assert!(matches!(bed.auditor.audit().await.unwrap(), AuditOutcome::Hole { seen: 1, .. }));
        assert!(matches!(bed.auditor.audit().await.unwrap(), AuditOutcome::Hole { seen: 2, .. }));
        assert_eq!(bed.auditor.audit().await.unwrap(), AuditOutcome::Synced { created: 2 });
    }

    #[tokio::test]
    async fn shard_end_leases_do_not_count_as_coverage() {
        let mut bed = bed(2, "me");
        bed.lease_for(0, Some("me"));
        let mut done = bed.lease_for(1, None);
        done.checkpoint = ExtendedSequenceNumber::shard_end();
        bed.store.put(done);
        assert!(matches!(bed.auditor.audit().await.unwrap(), AuditOutcome::Hole { seen: 1, .. }));
    }

    /// In 3.x mode the lock decides: the lock holder audits whoever the 2.x shuffle would
    /// pick, and a worker without the lock never does.
    #[tokio::test]
    async fn in_3x_mode_the_lock_holder_audits() {
        let owners = ["worker-a", "worker-b", "worker-c"];
        let shuffle_leader = shuffled_owners(owners).remove(0);
        let other = owners.into_iter().find(|w| *w != shuffle_leader).unwrap();
        for (worker, holds_lock) in [(other, true), (shuffle_leader.as_str(), false)] {
            let mut bed = bed(4, worker);
            for (n, owner) in owners.iter().enumerate() {
                bed.lease_for(n, Some(owner));
            }
            bed.auditor.set_leader(Some(holds_lock));
            let outcome = bed.auditor.audit().await.unwrap();
            if holds_lock {
                assert!(matches!(outcome, AuditOutcome::Hole { .. }), "{worker}: {outcome:?}");
            } else {
                assert_eq!(outcome, AuditOutcome::NotLeader, "{worker}");
            }
        }
    }

    #[tokio::test]
    async fn only_the_leader_audits() {
        let owners = ["worker-a", "worker-b", "worker-c"];
        let leader = shuffled_owners(owners).remove(0);
        for worker in owners {
            let mut bed = bed(4, worker);
            for (n, owner) in owners.iter().enumerate() {
                bed.lease_for(n, Some(owner));
            }
            // Shard 3 has no lease: a hole. Only the leader sees it.
            let outcome = bed.auditor.audit().await.unwrap();
            if worker == leader {
                assert!(matches!(outcome, AuditOutcome::Hole { .. }), "{worker}: {outcome:?}");
            } else {
                assert_eq!(outcome, AuditOutcome::NotLeader, "{worker}");
            }
        }
        // No owner at all: everyone is leader.
        let mut anyone = bed(2, "anyone");
        anyone.lease_for(0, None);
        assert!(matches!(anyone.auditor.audit().await.unwrap(), AuditOutcome::Hole { .. }));
        // A worker holding nothing while others hold leases is not.
        let mut idle = bed(2, "idle");
        idle.lease_for(0, Some("busy"));
        assert_eq!(idle.auditor.audit().await.unwrap(), AuditOutcome::NotLeader);
    }

    #[tokio::test(start_paused = true)]
    async fn a_fresh_taker_scan_answers_the_leader_check_without_another_scan() {
        let owners = ["worker-a", "worker-b", "worker-c"];
        let leader = shuffled_owners(owners).remove(0);
        let follower = owners.into_iter().find(|w| *w != leader).unwrap();
        for worker in [leader.as_str(), follower] {
            let recent = RecentScan::new();
            let mut bed = bed(4, worker);
            bed.auditor = bed.auditor.with_recent_scan(recent.clone());
            for (n, owner) in owners.iter().enumerate() {
                bed.lease_for(n, Some(owner));
            }
            let leases = bed.store.list_leases().await.unwrap().leases;
            let scans = bed.store.calls(Op::ListLeases);
            recent.publish(Arc::from(leases), Instant::now());
            let outcome = bed.auditor.audit().await.unwrap();
            if worker == leader {
                // The leader still audits a table of now.
                assert!(matches!(outcome, AuditOutcome::Hole { .. }), "{outcome:?}");
                assert_eq!(bed.store.calls(Op::ListLeases), scans + 1);
            } else {
                assert_eq!(outcome, AuditOutcome::NotLeader);
                assert_eq!(bed.store.calls(Op::ListLeases), scans, "a follower's audit costs no scan");
                // A stale scan is not trusted: the audit scans again.
                tokio::time::advance(AuditSettings::default().interval).await;
                assert_eq!(bed.auditor.audit().await.unwrap(), AuditOutcome::NotLeader);
                assert_eq!(bed.store.calls(Op::ListLeases), scans + 1);
            }
        }
    }

    #[tokio::test]
    async fn an_empty_table_is_synced_at_once() {
        let mut bed = bed(2, "me");
        assert_eq!(bed.auditor.audit().await.unwrap(), AuditOutcome::Synced { created: 2 });
        assert_eq!(bed.keys().len(), 2);
    }

    #[tokio::test]
    async fn missing_hash_ranges_are_back_filled_without_a_counter_change() {
        let mut bed = bed(2, "me");
        for n in 0..2 {
            let mut lease = bed.lease_for(n, Some("me"));
            lease.hash_key_range = None;
            lease.counter = 7;
            bed.store.put(lease);
        }
        assert_eq!(bed.auditor.audit().await.unwrap(), AuditOutcome::Complete);
        for shard in bed.stream.shards() {
            let lease = bed.store.lease(&shard.shard_id).unwrap();
            assert_eq!(lease.hash_key_range, Some(shard.hash_key_range));
            assert_eq!(lease.counter, 7);
        }
        // Second audit: nothing left to back-fill, no ListShards.
        let writes = bed.store.calls(Op::UpdateHashKeyRange);
        assert_eq!(writes, 2);
        bed.stream.fail_next_list_shards(1);
        assert_eq!(bed.auditor.audit().await.unwrap(), AuditOutcome::Complete);
        assert_eq!(bed.store.calls(Op::UpdateHashKeyRange), 2);
    }

    #[tokio::test]
    async fn syncs_are_spaced_by_the_minimum_gap() {
        let mut bed = bed(2, "me");
        bed.auditor.settings.min_sync_gap = Duration::from_secs(3600);
        bed.auditor.settings.confidence_threshold = 1;
        bed.lease_for(0, Some("me"));
        assert_eq!(bed.auditor.audit().await.unwrap(), AuditOutcome::Synced { created: 1 });
        bed.store.delete_lease("shardId-000000000001").await.unwrap();
        assert_eq!(bed.auditor.audit().await.unwrap(), AuditOutcome::SyncDeferred);
    }

    #[tokio::test]
    async fn a_failed_listing_fails_the_audit_but_keeps_the_count() {
        let mut bed = bed(3, "me");
        bed.lease_for(0, Some("me"));
        bed.lease_for(2, None);
        assert!(matches!(bed.auditor.audit().await.unwrap(), AuditOutcome::Hole { seen: 1, .. }));
        assert!(matches!(bed.auditor.audit().await.unwrap(), AuditOutcome::Hole { seen: 2, .. }));
        bed.stream.fail_next_list_shards(1);
        assert!(bed.auditor.audit().await.is_err(), "the sync's ListShards failed");
        // The next audit syncs (count still at the threshold).
        assert_eq!(bed.auditor.audit().await.unwrap(), AuditOutcome::Synced { created: 1 });
    }
}
