//! Leader election through the lock item, compatible with the DynamoDB lock client.
//!
//! Unlike KCL's `DynamoDBLockBasedLeaderDecider` (KCL#1803: a killed leader is never
//! replaced, because a freshly read lock never looks expired), a [`LeaderLock`] remembers the
//! lock's `recordVersionNumber` and when it first saw it on the local monotonic clock; when the
//! same version has been seen for the item's own `leaseDuration`, the holder stopped
//! heartbeating and the lock is taken over with a put conditioned on that version — the lock
//! client's own expiry rule, so Java workers see an ordinary lock change.
//!
//! Call [`LeaderLock::poll`] every heartbeat period (at most a third of the lease duration).

use tokio::time::Instant;
use tracing::{info, warn};

use super::coordinator::CoordinatorStateStore;
use super::LockItem;
use crate::lease::LeaseError;

/// What [`LeaderLock::poll`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leadership {
    /// This worker holds the lock.
    Leader,
    /// Another worker holds the lock.
    Follower {
        /// Its `ownerName`.
        leader: String,
    },
    /// No lock and this worker could not write one (a race with another worker, which will
    /// be seen at the next poll).
    Unknown,
}

/// One worker's view of the leader lock.
#[derive(Debug)]
pub struct LeaderLock {
    owner: String,
    lease_duration_ms: u64,
    /// The record version of the lock this worker holds.
    held: Option<String>,
    /// Another worker's lock: its version and when this worker first saw that version.
    observed: Option<(String, Instant)>,
}

impl LeaderLock {
    /// A lock contender named `owner` writing `lease_duration_ms` into the locks it holds.
    #[must_use]
    pub fn new(owner: &str, lease_duration_ms: u64) -> Self {
        Self { owner: owner.to_owned(), lease_duration_ms, held: None, observed: None }
    }

    /// True if the last poll found this worker holding the lock.
    #[must_use]
    pub fn is_leader(&self) -> bool {
        self.held.is_some()
    }

    fn new_item(&self) -> LockItem {
        LockItem {
            owner: self.owner.clone(),
            lease_duration_ms: self.lease_duration_ms,
            record_version: new_record_version(),
            released: false,
        }
    }

    /// Heartbeats the held lock, or tries to acquire a missing, released or expired one.
    ///
    /// # Errors
    /// DynamoDB failures. A failed heartbeat of a held lock due to an error keeps the lock
    /// (the caller decides when to give up, as the lock client does within the lease duration).
    pub async fn poll<S: CoordinatorStateStore + ?Sized>(
        &mut self,
        store: &S,
        now: Instant,
    ) -> Result<Leadership, LeaseError> {
        if let Some(version) = self.held.clone() {
            let next = new_record_version();
            if store.heartbeat_lock(&self.owner, &version, &next, self.lease_duration_ms).await? {
                self.held = Some(next);
                return Ok(Leadership::Leader);
            }
            warn!(owner = %self.owner, "lost the leader lock (another worker replaced it)");
            self.held = None;
        }
        let Some(current) = store.lock().await? else {
            self.observed = None;
            return self.acquire(store, None).await;
        };
        if current.owner == self.owner || current.released {
            // Our own lock from a previous run with the same worker id, or a released lock.
            return self.acquire(store, Some(&current.record_version)).await;
        }
        let first_seen = match &self.observed {
            Some((version, seen)) if *version == current.record_version => *seen,
            _ => {
                self.observed = Some((current.record_version.clone(), now));
                now
            }
        };
        let expiry = std::time::Duration::from_millis(current.lease_duration_ms);
        if now.duration_since(first_seen) >= expiry {
            info!(owner = %self.owner, dead_leader = %current.owner, lease_duration_ms = current.lease_duration_ms,
                "the leader lock was not heartbeated for its lease duration; taking it over");
            return match self.acquire(store, Some(&current.record_version)).await? {
                Leadership::Leader => Ok(Leadership::Leader),
                _ => Ok(Leadership::Follower { leader: current.owner }),
            };
        }
        Ok(Leadership::Follower { leader: current.owner })
    }

    async fn acquire<S: CoordinatorStateStore + ?Sized>(
        &mut self,
        store: &S,
        replacing: Option<&str>,
    ) -> Result<Leadership, LeaseError> {
        let item = self.new_item();
        if store.put_lock(&item, replacing).await? {
            info!(owner = %self.owner, "acquired the leader lock");
            self.held = Some(item.record_version);
            self.observed = None;
            return Ok(Leadership::Leader);
        }
        Ok(match store.lock().await? {
            Some(lock) if lock.owner != self.owner => {
                self.observed = Some((lock.record_version, Instant::now()));
                Leadership::Follower { leader: lock.owner }
            }
            _ => Leadership::Unknown,
        })
    }

    /// Releases a held lock (deletes it, as KCL's lock client does), so another worker takes
    /// over at once.
    ///
    /// # Errors
    /// DynamoDB failures.
    pub async fn release<S: CoordinatorStateStore + ?Sized>(&mut self, store: &S) -> Result<bool, LeaseError> {
        match self.held.take() {
            Some(version) => store.delete_lock(&self.owner, &version).await,
            None => Ok(false),
        }
    }
}

/// A fresh random record version (a UUID v4 in the lock client's text form).
#[must_use]
pub fn new_record_version() -> String {
    let bytes: [u8; 16] = rand::random();
    let mut b = bytes;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::lease::kcl3::memory::InMemoryCoordinatorStore;

    #[test]
    fn record_versions_are_uuids() {
        let v = new_record_version();
        assert_eq!(v.len(), 36);
        assert_eq!(v.as_bytes()[14], b'4');
        assert_ne!(v, new_record_version());
    }

    #[tokio::test]
    async fn first_contender_leads_and_heartbeats_change_the_version() {
        let store = InMemoryCoordinatorStore::new("app-CoordinatorState");
        let now = Instant::now();
        let mut a = LeaderLock::new("a", 20_000);
        let mut b = LeaderLock::new("b", 20_000);
        assert_eq!(a.poll(&store, now).await.ok(), Some(Leadership::Leader));
        let v1 = store.lock().await.ok().flatten().map(|l| l.record_version);
        assert_eq!(b.poll(&store, now).await.ok(), Some(Leadership::Follower { leader: "a".into() }));
        assert_eq!(a.poll(&store, now).await.ok(), Some(Leadership::Leader));
        let v2 = store.lock().await.ok().flatten().map(|l| l.record_version);
        assert_ne!(v1, v2, "a heartbeat writes a new record version");
        assert_eq!(store.lock().await.ok().flatten().map(|l| l.lease_duration_ms), Some(20_000));
    }

    #[tokio::test]
    async fn a_dead_leader_is_replaced_after_its_items_lease_duration() {
        let store = InMemoryCoordinatorStore::new("t");
        let t0 = Instant::now();
        // A Java leader's lock: 120 s, then it dies (no more heartbeats).
        let java =
            LockItem { owner: "java".into(), lease_duration_ms: 120_000, record_version: "v".into(), released: false };
        assert!(store.put_lock(&java, None).await.unwrap_or(false));
        let mut b = LeaderLock::new("b", 20_000);
        let follower = Some(Leadership::Follower { leader: "java".into() });
        assert_eq!(b.poll(&store, t0).await.ok(), follower);
        // Our own (shorter) duration does not matter: the item's 120 s does.
        assert_eq!(b.poll(&store, t0 + Duration::from_secs(60)).await.ok(), follower);
        assert_eq!(b.poll(&store, t0 + Duration::from_secs(119)).await.ok(), follower);
        assert_eq!(b.poll(&store, t0 + Duration::from_secs(120)).await.ok(), Some(Leadership::Leader));
        assert_eq!(store.lock().await.ok().flatten().map(|l| l.owner), Some("b".into()));
    }

    #[tokio::test]
    async fn a_live_leader_is_never_replaced() {
        let store = InMemoryCoordinatorStore::new("t");
        let t0 = Instant::now();
        let mut a = LeaderLock::new("a", 1_000);
        let mut b = LeaderLock::new("b", 1_000);
        assert_eq!(a.poll(&store, t0).await.ok(), Some(Leadership::Leader));
        for step in 1..10 {
            let now = t0 + Duration::from_millis(400 * step);
            assert_eq!(b.poll(&store, now).await.ok(), Some(Leadership::Follower { leader: "a".into() }));
            assert_eq!(a.poll(&store, now).await.ok(), Some(Leadership::Leader));
        }
    }

    #[tokio::test]
    async fn a_replaced_leader_notices_and_follows() {
        let store = InMemoryCoordinatorStore::new("t");
        let t0 = Instant::now();
        let mut a = LeaderLock::new("a", 1_000);
        let mut b = LeaderLock::new("b", 1_000);
        assert_eq!(a.poll(&store, t0).await.ok(), Some(Leadership::Leader));
        assert!(b.poll(&store, t0).await.is_ok());
        // a is paused for longer than the lease duration: b takes over.
        assert_eq!(b.poll(&store, t0 + Duration::from_millis(1_000)).await.ok(), Some(Leadership::Leader));
        assert_eq!(
            a.poll(&store, t0 + Duration::from_millis(1_100)).await.ok(),
            Some(Leadership::Follower { leader: "b".into() })
        );
        assert!(!a.is_leader());
    }

    #[tokio::test]
    async fn release_deletes_the_lock_and_a_follower_takes_it_at_once() {
        let store = InMemoryCoordinatorStore::new("t");
        let t0 = Instant::now();
        let mut a = LeaderLock::new("a", 120_000);
        let mut b = LeaderLock::new("b", 120_000);
        assert!(a.poll(&store, t0).await.is_ok());
        assert!(b.poll(&store, t0).await.is_ok());
        assert_eq!(a.release(&store).await.ok(), Some(true));
        assert_eq!(store.lock().await.ok().flatten(), None);
        assert_eq!(b.poll(&store, t0).await.ok(), Some(Leadership::Leader));
    }

    #[tokio::test]
    async fn a_restart_with_the_same_worker_id_reclaims_its_lock() {
        let store = InMemoryCoordinatorStore::new("t");
        let t0 = Instant::now();
        let mut before = LeaderLock::new("a", 120_000);
        assert!(before.poll(&store, t0).await.is_ok());
        let mut after = LeaderLock::new("a", 120_000);
        assert_eq!(after.poll(&store, t0).await.ok(), Some(Leadership::Leader));
    }
}
