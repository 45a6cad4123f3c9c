//! The most recent full scan of the lease table, shared within one worker.
//!
//! The KCL 2.x taker scans the whole table every round (20 s by default). The lease audit
//! (every 2 min) only needs the lease owners to learn whether this worker leads, and a
//! scan a few seconds old answers that as well as a new one: sharing it saves every
//! non-leader one full scan per audit (a sixth of a 2.x worker's reads; the fleet
//! simulation in `scheduler::sim` measures it). Nothing is written, so Java peers see no
//! difference.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::Lease;

/// A scan's leases and when it finished.
type Stamped = (Instant, Arc<[Lease]>);

/// A shared slot for one worker's latest scan. Cheap to clone; clones share the slot.
#[derive(Debug, Clone, Default)]
pub struct RecentScan {
    slot: Arc<Mutex<Option<Stamped>>>,
}

impl RecentScan {
    /// An empty slot.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores the leases of a scan that finished at `at`.
    pub fn publish(&self, leases: Arc<[Lease]>, at: Instant) {
        *self.slot.lock().unwrap_or_else(PoisonError::into_inner) = Some((at, leases));
    }

    /// The latest scan if it finished no longer than `max_age` ago.
    #[must_use]
    pub fn fresh(&self, max_age: Duration) -> Option<Arc<[Lease]>> {
        let slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        let (at, leases) = slot.as_ref()?;
        (at.elapsed() <= max_age).then(|| Arc::clone(leases))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sequence::{ExtendedSequenceNumber, Position};

    #[tokio::test(start_paused = true)]
    async fn a_scan_is_fresh_until_it_is_older_than_the_limit() {
        let recent = RecentScan::new();
        assert!(recent.fresh(Duration::from_secs(60)).is_none());
        let lease = Lease::new("shardId-000000000000", ExtendedSequenceNumber::new(Position::TrimHorizon));
        recent.clone().publish(Arc::from(vec![lease]), Instant::now());
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(recent.fresh(Duration::from_secs(60)).map(|l| l.len()), Some(1));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(recent.fresh(Duration::from_secs(60)).is_none());
    }
}
