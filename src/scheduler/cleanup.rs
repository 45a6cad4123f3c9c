//! Lease cleanup (lease-coordination.md §7.6): deleting the leases of finished shards once
//! their children have taken over, as Java's `LeaseCleanupManager` does.
//!
//! A lease this worker saw end (its consumer finished with `SHARD_END`, including a lease
//! taken when it was already at `SHARD_END`) is queued here in memory; a crash loses the
//! queue, and the next owner of the lease queues it again. A queued lease is deleted
//! (unconditional DeleteItem) only when
//! - it is still at `SHARD_END` (Java does not re-check; deleting anything else would lose
//!   data, so a lease found elsewhere is never deleted),
//! - every child lease exists and has moved past its start (checkpoint neither
//!   `TRIM_HORIZON` nor `AT_TIMESTAMP`), and
//! - none of its own parent leases still exists.
//!
//! The children come from the lease's `childShardIds`; when it has none (leases written by
//! old KCL versions, or a shard that ended without children) they are taken from
//! ListShards and written back. A shard that ListShards no longer knows (trimmed, or the
//! stream was deleted) is garbage and its lease is deleted, as Java does on
//! `ResourceNotFoundException`.
//!
//! Cadence. Java checks every minute, but deletes only 5 minutes after start or after its
//! last deletion, and garbage only every 30 minutes. Here each queued lease is checked on
//! its own schedule: first `first_check` (30 s) after it was queued, then after a delay
//! that doubles up to `max_check_interval` (5 min) while it is not ready. A check costs a
//! few GetItems (the lease, its children, its parents), so the steady cost of a lease whose
//! children never move (an idle child shard) is one check per 5 minutes, below Java's one
//! per minute, and a parent whose children start at once is gone within about 30 s.
//! With `cleanupLeasesUponShardCompletion = false` nothing is queued or deleted (the Java
//! MultiLangDaemon cannot turn cleanup off; multilangd honours the setting).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::config::Config;
use crate::lease::{LeaseError, LeaseStore};
use crate::sequence::Position;
use crate::stream::shards::{Shard, ShardFilter, ShardLister};
use crate::stream::StreamError;

/// Cleanup switches and cadence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CleanupSettings {
    /// `cleanupLeasesUponShardCompletion`.
    pub enabled: bool,
    /// How often the scheduler looks for due checks (in-memory; no I/O unless one is due).
    pub tick: Duration,
    /// First check of a lease after it was queued.
    pub first_check: Duration,
    /// Longest wait between two checks of a lease that is not ready.
    pub max_check_interval: Duration,
}

impl CleanupSettings {
    /// The defaults (5 s tick, first check after 30 s, backing off to 5 min) with
    /// `cleanupLeasesUponShardCompletion` from `config`.
    #[must_use]
    pub fn from_config(config: &Config) -> Self {
        Self { enabled: config.cleanup_leases_upon_shard_completion, ..Self::default() }
    }
}

impl Default for CleanupSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            tick: Duration::from_secs(5),
            first_check: Duration::from_secs(30),
            max_check_interval: Duration::from_secs(300),
        }
    }
}

/// Cleanup failures (the lease stays queued and is checked again later).
#[derive(Debug, thiserror::Error)]
pub enum CleanupError {
    /// The lease table failed.
    #[error(transparent)]
    Lease(#[from] LeaseError),
    /// ListShards failed.
    #[error(transparent)]
    Stream(#[from] StreamError),
}

/// The result of one check of a queued lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CleanupOutcome {
    /// The finished lease was deleted.
    Deleted,
    /// The lease's shard no longer exists; the lease was deleted.
    DeletedGarbage,
    /// The lease is no longer in the table (another worker cleaned it up).
    Gone,
    /// Not yet: why.
    NotReady(String),
}

#[derive(Debug)]
struct Pending {
    due: Instant,
    delay: Duration,
}

/// The cleanup queue of one worker.
pub struct LeaseCleaner {
    store: Arc<dyn LeaseStore>,
    lister: Arc<dyn ShardLister>,
    settings: CleanupSettings,
    pending: BTreeMap<String, Pending>,
}

impl LeaseCleaner {
    /// An empty queue.
    #[must_use]
    pub fn new(store: Arc<dyn LeaseStore>, lister: Arc<dyn ShardLister>, settings: CleanupSettings) -> Self {
        Self { store, lister, settings, pending: BTreeMap::new() }
    }

    /// The settings.
    #[must_use]
    pub fn settings(&self) -> &CleanupSettings {
        &self.settings
    }

    /// Queues the finished lease `key` (first check after `first_check`). Returns false when
    /// cleanup is disabled or the lease is already queued.
    pub fn enqueue(&mut self, key: &str) -> bool {
        if !self.settings.enabled || self.pending.contains_key(key) {
            return false;
        }
        let delay = self.settings.first_check;
        debug!(lease = key, first_check = ?delay, "queued finished lease for cleanup");
        self.pending.insert(key.to_owned(), Pending { due: Instant::now() + delay, delay });
        true
    }

    /// The queued lease keys.
    #[must_use]
    pub fn pending(&self) -> Vec<String> {
        self.pending.keys().cloned().collect()
    }

    /// Checks every queued lease that is due. Returns the keys that are no longer in the
    /// table (deleted here or by someone else): the worker must stop holding them.
    pub async fn run_due(&mut self) -> Vec<String> {
        let now = Instant::now();
        let due: Vec<String> = self.pending.iter().filter(|(_, p)| p.due <= now).map(|(k, _)| k.clone()).collect();
        let mut removed = Vec::new();
        let mut shards = None;
        for key in due {
            let outcome = self.check(&key, &mut shards).await;
            match outcome {
                Ok(CleanupOutcome::Deleted) => {
                    info!(lease = %key, "deleted the lease of a finished shard: its children have started");
                }
                Ok(CleanupOutcome::DeletedGarbage) => {
                    info!(lease = %key, "deleted the lease of a shard that no longer exists");
                }
                Ok(CleanupOutcome::Gone) => debug!(lease = %key, "finished lease already removed"),
                Ok(CleanupOutcome::NotReady(reason)) => {
                    let retry_in = self.back_off(&key);
                    debug!(lease = %key, %reason, ?retry_in, "finished lease not ready for cleanup");
                    continue;
                }
                Err(error) => {
                    let retry_in = self.back_off(&key);
                    warn!(lease = %key, %error, ?retry_in, "lease cleanup failed; will retry");
                    continue;
                }
            }
            self.pending.remove(&key);
            removed.push(key);
        }
        removed
    }

    fn back_off(&mut self, key: &str) -> Duration {
        let max = self.settings.max_check_interval;
        let Some(pending) = self.pending.get_mut(key) else { return max };
        pending.delay = pending.delay.saturating_mul(2).min(max).max(self.settings.first_check.min(max));
        pending.due = Instant::now() + pending.delay;
        pending.delay
    }

    /// One check of `key` (see the module docs). `shards` caches one ListShards per run.
    ///
    /// # Errors
    /// A lease-table or ListShards failure.
    pub async fn check(&self, key: &str, shards: &mut Option<Vec<Shard>>) -> Result<CleanupOutcome, CleanupError> {
        let Some(lease) = self.store.get_lease(key).await? else {
            return Ok(CleanupOutcome::Gone);
        };
        if lease.checkpoint.position != Position::ShardEnd {
            return Ok(CleanupOutcome::NotReady(format!("checkpoint is {}, not SHARD_END", lease.checkpoint)));
        }
        let mut children = lease.child_shard_ids.clone();
        if children.is_empty() {
            let listed = match shards {
                Some(listed) => listed,
                None => match self.lister.list_shards(ShardFilter::All).await {
                    Ok(listed) => shards.insert(listed),
                    Err(StreamError::NotFound { message, .. }) => {
                        info!(lease = key, %message, "the stream no longer exists");
                        shards.insert(Vec::new())
                    }
                    Err(e) => return Err(e.into()),
                },
            };
            if !listed.iter().any(|s| s.shard_id == key) {
                self.store.delete_lease(key).await?;
                return Ok(CleanupOutcome::DeletedGarbage);
            }
            children = listed
                .iter()
                .filter(|s| s.parents().any(|p| p == key))
                .map(|s| s.shard_id.clone())
                .collect::<BTreeSet<String>>();
            if children.is_empty() {
                return Ok(CleanupOutcome::NotReady("the shard has no child shards".to_owned()));
            }
            if let Err(e) = self.store.update_child_shard_ids(key, &children).await {
                warn!(lease = key, error = %e, "cannot record the child shards on the lease");
            }
        }
        for child in &children {
            match self.store.get_lease(child).await? {
                None => return Ok(CleanupOutcome::NotReady(format!("child lease {child} does not exist"))),
                Some(c) if matches!(c.checkpoint.position, Position::TrimHorizon | Position::AtTimestamp) => {
                    return Ok(CleanupOutcome::NotReady(format!("child {child} has not started ({})", c.checkpoint)));
                }
                Some(_) => {}
            }
        }
        for parent in &lease.parent_shard_ids {
            if self.store.get_lease(parent).await?.is_some() {
                return Ok(CleanupOutcome::NotReady(format!("parent lease {parent} still exists")));
            }
        }
        self.store.delete_lease(key).await?;
        Ok(CleanupOutcome::Deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::memory::{Fault, InMemoryLeaseStore, Op};
    use crate::lease::Lease;
    use crate::scheduler::sync::lease_for_shard;
    use crate::sequence::{ExtendedSequenceNumber, SequenceNumber};
    use crate::stream::memory::InMemoryStream;

    const FIRST: Duration = Duration::from_secs(30);

    fn settings() -> CleanupSettings {
        CleanupSettings::default()
    }

    struct Bed {
        stream: InMemoryStream,
        store: InMemoryLeaseStore,
        cleaner: LeaseCleaner,
    }

    fn bed(settings: CleanupSettings) -> Bed {
        let stream = InMemoryStream::with_shards(1);
        let store = InMemoryLeaseStore::new("app");
        let cleaner = LeaseCleaner::new(Arc::new(store.clone()), Arc::new(stream.clone()), settings);
        Bed { stream, store, cleaner }
    }

    fn at(position: Position) -> ExtendedSequenceNumber {
        ExtendedSequenceNumber::new(position)
    }

    fn started() -> ExtendedSequenceNumber {
        ExtendedSequenceNumber::at(SequenceNumber::parse("42").unwrap(), 0)
    }

    impl Bed {
        /// Splits shard 0 and writes the leases as a finished split leaves them: the parent
        /// at SHARD_END with childShardIds, the children at TRIM_HORIZON.
        fn finished_split(&self) -> (String, [String; 2]) {
            let parent = self.stream.shards()[0].clone();
            let children = self.stream.split_shard(&parent.shard_id);
            let mut lease = lease_for_shard(&parent, at(Position::ShardEnd));
            lease.child_shard_ids = children.iter().map(|c| c.shard_id.clone()).collect();
            self.store.put(lease);
            for child in &children {
                let shard = self.stream.shards().into_iter().find(|s| s.shard_id == child.shard_id).unwrap();
                self.store.put(lease_for_shard(&shard, at(Position::TrimHorizon)));
            }
            (parent.shard_id, children.map(|c| c.shard_id))
        }

        fn start(&self, key: &str) {
            self.store.modify(key, |l| l.checkpoint = started());
        }

        async fn after(&mut self, wait: Duration) -> Vec<String> {
            tokio::time::advance(wait).await;
            self.cleaner.run_due().await
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_parent_is_deleted_once_both_children_have_started() {
        let mut bed = bed(settings());
        let (parent, [low, high]) = bed.finished_split();
        assert!(bed.cleaner.enqueue(&parent));
        assert!(!bed.cleaner.enqueue(&parent), "queued once");
        assert!(bed.after(FIRST - Duration::from_secs(1)).await.is_empty(), "not due yet");
        assert_eq!(bed.store.calls(Op::GetLease), 0);
        assert!(bed.after(Duration::from_secs(1)).await.is_empty(), "children at TRIM_HORIZON");
        bed.start(&low);
        // Backed off: next check 60 s after the first.
        assert!(bed.after(Duration::from_secs(59)).await.is_empty());
        let reads = bed.store.calls(Op::GetLease);
        assert!(bed.after(Duration::from_secs(1)).await.is_empty(), "one child still at TRIM_HORIZON");
        assert!(bed.store.calls(Op::GetLease) > reads);
        bed.start(&high);
        assert_eq!(bed.after(Duration::from_secs(120)).await, vec![parent.clone()]);
        assert_eq!(bed.store.lease(&parent), None);
        assert!(bed.store.lease(&low).is_some() && bed.store.lease(&high).is_some());
        assert!(bed.cleaner.pending().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn checks_back_off_to_the_maximum_interval() {
        let mut bed = bed(settings());
        let (parent, _) = bed.finished_split();
        bed.cleaner.enqueue(&parent);
        let mut checks = Vec::new();
        let started = Instant::now();
        for _ in 0..(20 * 60) {
            let before = bed.store.calls(Op::GetLease);
            bed.after(Duration::from_secs(1)).await;
            if bed.store.calls(Op::GetLease) > before {
                checks.push(started.elapsed().as_secs());
            }
        }
        assert_eq!(checks, [30, 90, 210, 450, 750, 1050]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_missing_child_lease_or_a_remaining_parent_lease_blocks_deletion() {
        let mut bed = bed(CleanupSettings { first_check: Duration::ZERO, ..settings() });
        let (parent, [low, high]) = bed.finished_split();
        bed.start(&low);
        bed.store.delete_lease(&high).await.unwrap();
        bed.cleaner.enqueue(&parent);
        let mut none = None;
        assert!(
            matches!(bed.cleaner.check(&parent, &mut none).await.unwrap(), CleanupOutcome::NotReady(r) if r.contains("does not exist"))
        );
        let shard = bed.stream.shards().into_iter().find(|s| s.shard_id == high).unwrap();
        let mut child = lease_for_shard(&shard, started());
        // The child is itself finished (and its own child has started): it still waits for
        // its parent's lease to go first.
        child.checkpoint = at(Position::ShardEnd);
        child.child_shard_ids = ["grandchild".to_owned()].into_iter().collect();
        bed.store.put(child);
        bed.store.put(Lease::new("grandchild", started()));
        assert!(
            matches!(bed.cleaner.check(&high, &mut none).await.unwrap(), CleanupOutcome::NotReady(r) if r.contains("parent lease"))
        );
        assert_eq!(bed.cleaner.check(&parent, &mut none).await.unwrap(), CleanupOutcome::Deleted);
        assert!(bed.store.lease(&high).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn at_timestamp_children_have_not_started_and_leases_not_at_shard_end_are_never_deleted() {
        let bed = bed(settings());
        let (parent, [low, high]) = bed.finished_split();
        bed.store.modify(&low, |l| l.checkpoint = at(Position::AtTimestamp));
        bed.start(&high);
        let mut none = None;
        assert!(matches!(bed.cleaner.check(&parent, &mut none).await.unwrap(), CleanupOutcome::NotReady(_)));
        bed.start(&low);
        bed.store.modify(&parent, |l| l.checkpoint = started());
        assert!(
            matches!(bed.cleaner.check(&parent, &mut none).await.unwrap(), CleanupOutcome::NotReady(r) if r.contains("not SHARD_END"))
        );
        assert!(bed.store.lease(&parent).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn children_missing_from_the_lease_come_from_list_shards_and_are_written_back() {
        let bed = bed(settings());
        let (parent, [low, high]) = bed.finished_split();
        bed.store.modify(&parent, |l| l.child_shard_ids.clear());
        bed.start(&low);
        let mut shards = None;
        assert!(matches!(bed.cleaner.check(&parent, &mut shards).await.unwrap(), CleanupOutcome::NotReady(_)));
        assert_eq!(bed.store.lease(&parent).unwrap().child_shard_ids, [low, high.clone()].into_iter().collect());
        assert!(shards.is_some(), "the listing is cached for the run");
        bed.start(&high);
        assert_eq!(bed.cleaner.check(&parent, &mut None).await.unwrap(), CleanupOutcome::Deleted);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_whose_shard_no_longer_exists_is_garbage() {
        let mut bed = bed(CleanupSettings { first_check: Duration::ZERO, ..settings() });
        let shard = bed.stream.shards()[0].clone();
        bed.store.put(lease_for_shard(&shard, at(Position::ShardEnd)));
        bed.cleaner.enqueue(&shard.shard_id);
        assert!(
            matches!(bed.cleaner.check(&shard.shard_id, &mut None).await.unwrap(), CleanupOutcome::NotReady(r) if r.contains("no child"))
        );
        bed.stream.delete_shard(&shard.shard_id);
        assert_eq!(bed.after(Duration::ZERO).await, vec![shard.shard_id.clone()]);
        assert_eq!(bed.store.lease(&shard.shard_id), None);
    }

    #[tokio::test(start_paused = true)]
    async fn failures_are_retried_and_vanished_leases_are_reported() {
        let mut bed = bed(CleanupSettings { first_check: Duration::from_secs(1), ..settings() });
        let (parent, [low, high]) = bed.finished_split();
        bed.start(&low);
        bed.start(&high);
        bed.cleaner.enqueue(&parent);
        bed.store.fail_next(Op::DeleteLease, Fault::Dependency, 1);
        assert!(bed.after(Duration::from_secs(1)).await.is_empty());
        assert!(bed.store.lease(&parent).is_some());
        assert_eq!(bed.after(Duration::from_secs(2)).await, vec![parent.clone()]);
        // Another worker deleted a queued lease first.
        let other = Lease::new("gone", at(Position::ShardEnd));
        bed.store.put(other);
        bed.cleaner.enqueue("gone");
        bed.store.delete_lease("gone").await.unwrap();
        assert_eq!(bed.after(Duration::from_secs(1)).await, ["gone"]);
    }

    #[tokio::test(start_paused = true)]
    async fn disabled_cleanup_queues_nothing() {
        let mut bed = bed(CleanupSettings { enabled: false, ..settings() });
        let (parent, [low, high]) = bed.finished_split();
        bed.start(&low);
        bed.start(&high);
        assert!(!bed.cleaner.enqueue(&parent));
        assert!(bed.after(Duration::from_secs(3600)).await.is_empty());
        assert!(bed.store.lease(&parent).is_some());
    }
}
