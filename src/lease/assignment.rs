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
}

/// The KCL 2.x protocol: the [`LeaseTaker`] on its fixed cadence (`2 × (failover + 25 ms)`),
/// plus an extra round when a lease of another worker looks abandoned.
pub struct TakerAssignment {
    taker: LeaseTaker,
    next_regular: Instant,
}

impl TakerAssignment {
    /// A 2.x assignment for `worker_id`; the first round is due at once.
    #[must_use]
    pub fn new(store: Arc<dyn LeaseStore>, worker_id: impl Into<String>, settings: TakerSettings) -> Self {
        Self { taker: LeaseTaker::new(store, worker_id, settings), next_regular: Instant::now() }
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
}
