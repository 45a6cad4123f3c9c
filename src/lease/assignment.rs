//! The lease-assignment seam: which leases should this worker hold?
//!
//! The scheduler runs consumers for the leases in the [`LeaseRenewer`]'s held set; a
//! [`LeaseAssignment`] decides how that set grows and shrinks, on its own cadence:
//!
//! - KCL 2.x ([`TakerAssignment`]): every worker scans the table and takes expired or
//!   unowned leases, and steals from the most loaded worker, towards a fair share
//!   ([`super::taker`]). A lease only leaves the held set when it is lost.
//! - KCL 3.x (follower/leader, later beside it): a leader assigns leases; a follower
//!   discovers its assigned leases, and a lease the leader moves elsewhere is handed off
//!   gracefully — the round names it in [`AssignmentRound::hand_off`], the scheduler stops
//!   that one shard (`shutdownRequested`, the processor may checkpoint), and then calls
//!   [`LeaseAssignment::handed_off`] so the assignment can complete the transfer.
//!
//! The consumer code never sees which protocol runs.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::recent::RecentScan;
use super::renewer::{HeldLease, LeaseRenewer};
use super::taker::{LeaseTaker, TakeReport, TakerSettings};
use super::{LeaseError, LeaseStore};

/// What one assignment round decided.
#[derive(Debug, Default)]
pub struct AssignmentRound {
    /// Leases this worker newly holds (already in the renewer's held set).
    pub acquired: Vec<HeldLease>,
    /// Held leases to stop gracefully and give up (a hand-off requested by a leader).
    pub hand_off: Vec<String>,
    /// What a 2.x taker round saw (for logs and metrics), if this was one.
    pub take: Option<TakeReport>,
}

/// Decides which leases this worker holds.
#[async_trait]
pub trait LeaseAssignment: Send + Sync {
    /// A short name for logs and status, e.g. `KCL 2.x`.
    fn protocol(&self) -> &'static str;

    /// When the next round is due.
    fn next_round(&self) -> Instant;

    /// Runs one round. Leases acquired are added to `held` (the renewer keeps them alive).
    ///
    /// # Errors
    /// A failure of the round as a whole (e.g. the table scan); the scheduler logs it and
    /// tries again at [`LeaseAssignment::next_round`].
    async fn round(&mut self, held: &LeaseRenewer) -> Result<AssignmentRound, LeaseError>;

    /// The consumer of `key`, named in [`AssignmentRound::hand_off`], has stopped (its
    /// processor was told `shutdownRequested` and could checkpoint). Completes the hand-off;
    /// the default releases the lease so its new owner can take it at once.
    ///
    /// # Errors
    /// When the lease table cannot be written; the lease then expires instead.
    async fn handed_off(&mut self, held: &LeaseRenewer, key: &str) -> Result<(), LeaseError> {
        held.release(key).await.map(|_| ())
    }

    /// Whether this worker runs the periodic shard-sync audit: `None` lets the auditor choose
    /// the KCL 2.x leader (deterministic shuffle of the lease owners); a KCL 3.x assignment
    /// answers from the leader lock (`Some(true)` while this worker holds it), as the 3.x
    /// shard sync runs on the lock holder only.
    fn leads_shard_sync(&self) -> Option<bool> {
        None
    }

    /// The worker stopped (its consumers are shut down): give up fleet-wide roles, e.g. a
    /// leader lock, so another worker takes over at once. The default does nothing.
    ///
    /// # Errors
    /// When the table cannot be written; the role then expires instead.
    async fn stopped(&mut self) -> Result<(), LeaseError> {
        Ok(())
    }

    /// This worker's consumer of `parent` has checkpointed `SHARD_END` (its child leases
    /// exist). An assignment may take the children now rather than at its next round, so
    /// they start within moments of the parent's end. Leases acquired are added to `held`.
    /// The default takes nothing.
    ///
    /// # Errors
    /// When the lease table cannot be read or written; the children are then left to the
    /// regular rounds.
    async fn shard_ended(&mut self, held: &LeaseRenewer, parent: &str) -> Result<Vec<HeldLease>, LeaseError> {
        let _ = (held, parent);
        Ok(Vec::new())
    }
}

/// Takes the unowned child leases of `parent` whose parents have all ended (for a merge:
/// the worker that finishes the *last* parent takes the child, which can then start at once).
/// Children owned by anyone, or with a parent still being processed, are left to the regular
/// rounds; the taker rebalances over-allocation later, as usual.
///
/// # Errors
/// The store's error for a failed read or take.
pub async fn take_ended_children(
    store: &dyn LeaseStore,
    held: &LeaseRenewer,
    parent: &str,
) -> Result<Vec<HeldLease>, LeaseError> {
    let Some(parent_lease) = store.get_lease(parent).await? else { return Ok(Vec::new()) };
    let mut taken = Vec::new();
    'children: for child in &parent_lease.child_shard_ids {
        let Some(lease) = store.get_lease(child).await? else { continue };
        if lease.owner.is_some() || lease.checkpoint.position == crate::sequence::Position::ShardEnd {
            continue;
        }
        for other in lease.parent_shard_ids.iter().filter(|p| p.as_str() != parent) {
            let ended = match store.get_lease(other).await? {
                Some(other) => other.checkpoint.position == crate::sequence::Position::ShardEnd,
                None => true,
            };
            if !ended {
                continue 'children;
            }
        }
        if let Some(acquired) = held.acquire(&lease).await? {
            tracing::info!(parent, child = %acquired.lease.key, "took the child lease of a shard this worker finished");
            taken.push(acquired);
        }
    }
    Ok(taken)
}

/// The KCL 2.x protocol: the [`LeaseTaker`] on its fixed cadence (`2 × (failover + 25 ms)`),
/// plus an extra round when a lease of another worker looks abandoned.
pub struct TakerAssignment {
    taker: LeaseTaker,
    store: Arc<dyn LeaseStore>,
    next_regular: Instant,
}

impl TakerAssignment {
    /// A 2.x assignment for `worker_id`; the first round is due at once.
    #[must_use]
    pub fn new(store: Arc<dyn LeaseStore>, worker_id: impl Into<String>, settings: TakerSettings) -> Self {
        Self { taker: LeaseTaker::new(store.clone(), worker_id, settings), store, next_regular: Instant::now() }
    }

    /// Shares every round's scan with the lease audit ([`RecentScan`]).
    #[must_use]
    pub fn with_recent_scan(mut self, recent: RecentScan) -> Self {
        self.taker = self.taker.with_recent_scan(recent);
        self
    }

    /// The regular interval between rounds.
    #[must_use]
    pub fn interval(&self) -> Duration {
        self.taker.interval()
    }
}

#[async_trait]
impl LeaseAssignment for TakerAssignment {
    fn protocol(&self) -> &'static str {
        "KCL 2.x"
    }

    fn next_round(&self) -> Instant {
        match self.taker.confirmation_due() {
            Some(confirm) => confirm.min(self.next_regular),
            None => self.next_regular,
        }
    }

    async fn round(&mut self, held: &LeaseRenewer) -> Result<AssignmentRound, LeaseError> {
        let now = Instant::now();
        if now >= self.next_regular {
            // A regular round; a late one does not make the next one early (like
            // `MissedTickBehavior::Delay`).
            self.next_regular = now + self.taker.interval();
        }
        let (acquired, report) = self.taker.take_round(held).await?;
        Ok(AssignmentRound { acquired, hand_off: Vec::new(), take: Some(report) })
    }

    /// KCL 2.x lets any worker take an unowned lease: the worker that finished a parent takes
    /// its children at once instead of at the next taker round (up to `2 × failover` later;
    /// Java's children start 17–21 s after the parent's end).
    async fn shard_ended(&mut self, held: &LeaseRenewer, parent: &str) -> Result<Vec<HeldLease>, LeaseError> {
        take_ended_children(self.store.as_ref(), held, parent).await
    }
}
