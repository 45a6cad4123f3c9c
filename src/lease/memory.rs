//! An in-memory lease table with the same semantics as [`super::dynamodb`], for tests of the
//! renewer, shard consumer and scheduler.
//!
//! Beyond the [`LeaseStore`] trait it offers fault injection ([`InMemoryLeaseStore::fail_next`],
//! [`InMemoryLeaseStore::set_unreachable`], [`InMemoryLeaseStore::set_latency`]) and a way to act as "another worker"
//! ([`InMemoryLeaseStore::steal`], [`InMemoryLeaseStore::modify`]). Clones share one table,
//! so two clones behave like two workers' clients of the same DynamoDB table.
//!
//! The conditional semantics, including the recovery of writes that were applied but whose
//! response was lost, are checked against the DynamoDB implementation by the shared suite
//! in [`super::conformance`].

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;

use super::{HashKeyRange, Lease, LeaseError, LeaseScan, LeaseStore, MigrationState};
use crate::sequence::ExtendedSequenceNumber;

/// A [`LeaseStore`] operation, for fault injection and call counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// [`LeaseStore::ensure_table`].
    EnsureTable,
    /// [`LeaseStore::list_leases`].
    ListLeases,
    /// [`LeaseStore::get_lease`].
    GetLease,
    /// [`LeaseStore::create_lease_if_absent`].
    CreateLease,
    /// [`LeaseStore::renew_lease`].
    RenewLease,
    /// [`LeaseStore::take_lease`].
    TakeLease,
    /// [`LeaseStore::release_lease`].
    ReleaseLease,
    /// [`LeaseStore::update_checkpoint`].
    UpdateCheckpoint,
    /// [`LeaseStore::update_child_shard_ids`].
    UpdateChildShardIds,
    /// [`LeaseStore::update_hash_key_range`].
    UpdateHashKeyRange,
    /// [`LeaseStore::delete_lease`].
    DeleteLease,
    /// [`LeaseStore::migration_state`].
    MigrationState,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Self::EnsureTable => "ensure_table",
            Self::ListLeases => "scan",
            Self::GetLease => "get_lease",
            Self::CreateLease => "create_lease",
            Self::RenewLease => "renew_lease",
            Self::TakeLease => "take_lease",
            Self::ReleaseLease => "release_lease",
            Self::UpdateCheckpoint => "update_checkpoint",
            Self::UpdateChildShardIds => "update_child_shard_ids",
            Self::UpdateHashKeyRange => "update_hash_key_range",
            Self::DeleteLease => "delete_lease",
            Self::MigrationState => "migration_state",
        }
    }
}

/// An injected failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Fail with [`LeaseError::Throttled`] without applying anything.
    Throttled,
    /// Fail with [`LeaseError::Dependency`] without applying anything.
    Dependency,
    /// Apply the operation, then fail with [`LeaseError::Dependency`], as when the response
    /// of a write that DynamoDB applied is lost (timeout, connection reset).
    AppliedButLost,
}

/// What an item in the table is.
#[derive(Debug, Clone)]
enum Item {
    Lease(Box<Lease>),
    /// A non-lease item (`entityType` present and not `LEASE`).
    Foreign,
    /// An item that cannot be parsed as a lease.
    Malformed(String),
}

#[derive(Debug, Default)]
struct State {
    table_exists: bool,
    items: BTreeMap<String, Item>,
    migration: Option<MigrationState>,
    faults: HashMap<Op, VecDeque<Fault>>,
    latency: HashMap<Op, Duration>,
    response_latency: HashMap<Op, Duration>,
    calls: HashMap<Op, usize>,
    unreachable: bool,
}

/// The in-memory lease table. Cheap to clone; clones share the table.
#[derive(Debug, Clone)]
pub struct InMemoryLeaseStore {
    table: Arc<str>,
    state: Arc<Mutex<State>>,
}

impl InMemoryLeaseStore {
    /// An existing, empty table.
    #[must_use]
    pub fn new(table: &str) -> Self {
        let store = Self::without_table(table);
        store.lock().table_exists = true;
        store
    }

    /// A table that does not exist yet: every operation but `ensure_table` fails with
    /// [`LeaseError::TableMissing`].
    #[must_use]
    pub fn without_table(table: &str) -> Self {
        Self { table: Arc::from(table), state: Arc::new(Mutex::new(State::default())) }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next `count` calls of `op` fail with `fault` (queued after earlier injections).
    pub fn fail_next(&self, op: Op, fault: Fault, count: usize) {
        self.lock().faults.entry(op).or_default().extend(std::iter::repeat_n(fault, count));
    }

    /// While `unreachable`, every call (counted) fails with [`LeaseError::Dependency`] without
    /// applying anything, like a DynamoDB endpoint that cannot be reached; queued faults
    /// are kept for later.
    pub fn set_unreachable(&self, unreachable: bool) {
        self.lock().unreachable = unreachable;
    }

    /// Every later call of `op` first sleeps `latency` (tokio time; `Duration::ZERO` clears).
    pub fn set_latency(&self, op: Op, latency: Duration) {
        self.lock().latency.insert(op, latency);
    }

    /// Every later call of `op` is applied at once but answers only after `latency` (tokio
    /// time; `Duration::ZERO` clears), like a DynamoDB write whose response is slow.
    pub fn set_response_latency(&self, op: Op, latency: Duration) {
        self.lock().response_latency.insert(op, latency);
    }

    /// How many times `op` was called (including failed calls).
    #[must_use]
    pub fn calls(&self, op: Op) -> usize {
        self.lock().calls.get(&op).copied().unwrap_or(0)
    }

    /// The stored lease, read without counting a call or injecting faults.
    #[must_use]
    pub fn lease(&self, key: &str) -> Option<Lease> {
        match self.lock().items.get(key) {
            Some(Item::Lease(lease)) => Some(lease.as_ref().clone()),
            _ => None,
        }
    }

    /// Stores `lease` as is (unconditional put, for test setup).
    pub fn put(&self, lease: Lease) {
        self.lock().items.insert(lease.key.clone(), Item::Lease(Box::new(lease)));
    }

    /// Another worker takes the lease: `owner` set, counter + 1, owner switches + 1 when the
    /// owner changes, `checkpointOwner` removed. Returns the new lease.
    pub fn steal(&self, key: &str, owner: &str) -> Option<Lease> {
        self.modify(key, |lease| {
            if lease.owner.as_deref().is_some_and(|previous| previous != owner) {
                lease.owner_switches_since_checkpoint += 1;
            }
            lease.owner = Some(owner.to_owned());
            lease.counter += 1;
            lease.checkpoint_owner = None;
        })
    }

    /// Changes a stored lease arbitrarily (e.g. another worker's renew: `counter += 1`).
    pub fn modify(&self, key: &str, change: impl FnOnce(&mut Lease)) -> Option<Lease> {
        match self.lock().items.get_mut(key) {
            Some(Item::Lease(lease)) => {
                change(lease);
                Some(lease.as_ref().clone())
            }
            _ => None,
        }
    }

    /// Stores a non-lease item (what KCL 3.5 keeps in the lease table), skipped by scans.
    pub fn insert_foreign(&self, key: &str) {
        self.lock().items.insert(key.to_owned(), Item::Foreign);
    }

    /// Stores an item that scans report in [`LeaseScan::malformed`].
    pub fn insert_malformed(&self, key: &str, reason: &str) {
        self.lock().items.insert(key.to_owned(), Item::Malformed(reason.to_owned()));
    }

    /// What [`LeaseStore::migration_state`] returns.
    pub fn set_migration_state(&self, state: Option<MigrationState>) {
        self.lock().migration = state;
    }

    /// Runs one operation: counts it, applies latency and injected faults, checks the
    /// table exists, then applies `apply` under the lock.
    async fn call<T>(&self, op: Op, apply: impl FnOnce(&mut State) -> Result<T, LeaseError>) -> Result<T, LeaseError> {
        let latency = {
            let mut state = self.lock();
            *state.calls.entry(op).or_default() += 1;
            state.latency.get(&op).copied()
        };
        if let Some(latency) = latency.filter(|l| !l.is_zero()) {
            tokio::time::sleep(latency).await;
        }
        let (result, response_latency) = {
            let mut state = self.lock();
            let table = self.table.to_string();
            let injected = |message: &str| LeaseError::Dependency {
                table: table.clone(),
                operation: op.name(),
                message: format!("injected fault: {message}"),
            };
            if state.unreachable {
                return Err(injected("unreachable"));
            }
            let fault = state.faults.get_mut(&op).and_then(VecDeque::pop_front);
            match fault {
                Some(Fault::Throttled) => return Err(LeaseError::Throttled { table, operation: op.name() }),
                Some(Fault::Dependency) => return Err(injected("dependency failure")),
                Some(Fault::AppliedButLost) | None => {}
            }
            if !state.table_exists && op != Op::EnsureTable {
                return Err(LeaseError::TableMissing { table });
            }
            let result = apply(&mut state);
            if fault == Some(Fault::AppliedButLost) {
                return Err(injected("response lost after the write was applied"));
            }
            (result, state.response_latency.get(&op).copied().filter(|l| !l.is_zero()))
        };
        if let Some(latency) = response_latency {
            // Applied; the answer is slow (a caller that gives up now never learns of it).
            tokio::time::sleep(latency).await;
        }
        result
    }

    /// A conditional write on a lease item: `write` returns `true` when its condition held
    /// (and applied the change). When it did not, `applied` decides whether the stored
    /// lease shows our own earlier write (the recovery rule shared with DynamoDB).
    async fn conditional(
        &self,
        op: Op,
        key: &str,
        write: impl FnOnce(&mut Lease) -> bool,
        applied: impl FnOnce(&Lease) -> bool,
    ) -> Result<bool, LeaseError> {
        self.call(op, |state| {
            Ok(match state.items.get_mut(key) {
                Some(Item::Lease(lease)) => write(lease) || applied(lease),
                _ => false,
            })
        })
        .await
    }
}

/// True when `current` shows the write `seen → seen + 1` by `owner` already applied.
fn shows_own_write(current: &Lease, seen: &Lease, owner: Option<&str>) -> bool {
    owner.is_some() && current.owner.as_deref() == owner && Some(current.counter) == seen.counter.checked_add(1)
}

#[async_trait]
impl LeaseStore for InMemoryLeaseStore {
    fn table_name(&self) -> &str {
        &self.table
    }

    async fn ensure_table(&self) -> Result<bool, LeaseError> {
        self.call(Op::EnsureTable, |state| Ok(!std::mem::replace(&mut state.table_exists, true))).await
    }

    async fn list_leases(&self) -> Result<LeaseScan, LeaseError> {
        let table = self.table.to_string();
        self.call(Op::ListLeases, |state| {
            let mut scan = LeaseScan::default();
            for (key, item) in &state.items {
                match item {
                    Item::Lease(lease) => scan.leases.push(lease.as_ref().clone()),
                    Item::Foreign => {}
                    Item::Malformed(reason) => scan.malformed.push(LeaseError::Malformed {
                        table: table.clone(),
                        key: key.clone(),
                        reason: reason.clone(),
                    }),
                }
            }
            Ok(scan)
        })
        .await
    }

    async fn get_lease(&self, key: &str) -> Result<Option<Lease>, LeaseError> {
        let table = self.table.to_string();
        self.call(Op::GetLease, |state| match state.items.get(key) {
            Some(Item::Lease(lease)) => Ok(Some(lease.as_ref().clone())),
            Some(Item::Foreign) | None => Ok(None),
            Some(Item::Malformed(reason)) => {
                Err(LeaseError::Malformed { table, key: key.to_owned(), reason: reason.clone() })
            }
        })
        .await
    }

    async fn create_lease_if_absent(&self, lease: &Lease) -> Result<bool, LeaseError> {
        self.call(Op::CreateLease, |state| {
            if state.items.contains_key(&lease.key) {
                return Ok(false);
            }
            state.items.insert(lease.key.clone(), Item::Lease(Box::new(lease.clone())));
            Ok(true)
        })
        .await
    }

    async fn renew_lease(&self, lease: &Lease) -> Result<bool, LeaseError> {
        self.conditional(
            Op::RenewLease,
            &lease.key,
            |current| {
                let holds = current.counter == lease.counter;
                if holds {
                    current.counter += 1;
                }
                holds
            },
            |current| shows_own_write(current, lease, lease.owner.as_deref()),
        )
        .await
    }

    async fn take_lease(&self, lease: &Lease, owner: &str) -> Result<bool, LeaseError> {
        self.conditional(
            Op::TakeLease,
            &lease.key,
            |current| {
                let holds = current.counter == lease.counter;
                if holds {
                    current.counter += 1;
                    current.owner = Some(owner.to_owned());
                    if lease.owner.as_deref().is_some_and(|previous| previous != owner) {
                        current.owner_switches_since_checkpoint += 1;
                    }
                    current.checkpoint_owner = None;
                }
                holds
            },
            |current| shows_own_write(current, lease, Some(owner)),
        )
        .await
    }

    async fn release_lease(&self, lease: &Lease) -> Result<bool, LeaseError> {
        self.conditional(
            Op::ReleaseLease,
            &lease.key,
            |current| {
                let holds = current.counter == lease.counter && current.owner == lease.owner;
                if holds {
                    current.owner = None;
                    current.counter += 1;
                }
                holds
            },
            |_| false,
        )
        .await
    }

    async fn update_checkpoint(&self, lease: &Lease, checkpoint: &ExtendedSequenceNumber) -> Result<bool, LeaseError> {
        self.conditional(
            Op::UpdateCheckpoint,
            &lease.key,
            |current| {
                let holds = current.counter == lease.counter;
                if holds {
                    current.counter += 1;
                    current.checkpoint = checkpoint.clone();
                    current.owner_switches_since_checkpoint = 0;
                    current.pending_checkpoint = None;
                    current.pending_checkpoint_state = None;
                    if !lease.child_shard_ids.is_empty() {
                        current.child_shard_ids.clone_from(&lease.child_shard_ids);
                    }
                    if lease.hash_key_range.is_some() {
                        current.hash_key_range.clone_from(&lease.hash_key_range);
                    }
                }
                holds
            },
            |current| {
                shows_own_write(current, lease, lease.owner.as_deref())
                    && current.checkpoint == *checkpoint
                    && current.pending_checkpoint.is_none()
            },
        )
        .await
    }

    async fn update_child_shard_ids(&self, key: &str, children: &BTreeSet<String>) -> Result<bool, LeaseError> {
        self.call(Op::UpdateChildShardIds, |state| {
            Ok(match state.items.get_mut(key) {
                Some(Item::Lease(lease)) => {
                    lease.child_shard_ids.clone_from(children);
                    true
                }
                Some(_) => true,
                None => false,
            })
        })
        .await
    }

    async fn update_hash_key_range(&self, key: &str, range: &HashKeyRange) -> Result<bool, LeaseError> {
        self.call(Op::UpdateHashKeyRange, |state| {
            Ok(match state.items.get_mut(key) {
                Some(Item::Lease(lease)) => {
                    lease.hash_key_range = Some(range.clone());
                    true
                }
                Some(_) => true,
                None => false,
            })
        })
        .await
    }

    async fn delete_lease(&self, key: &str) -> Result<(), LeaseError> {
        self.call(Op::DeleteLease, |state| {
            state.items.remove(key);
            Ok(())
        })
        .await
    }

    async fn migration_state(&self) -> Result<Option<MigrationState>, LeaseError> {
        self.call(Op::MigrationState, |state| Ok(state.migration.clone())).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::conformance;
    use crate::sequence::Position;

    #[tokio::test]
    async fn conforms_to_the_shared_lease_store_suite() {
        let store = InMemoryLeaseStore::without_table("app");
        conformance::run_all(&store, &store.clone()).await;
    }

    fn lease(key: &str) -> Lease {
        Lease::new(key, ExtendedSequenceNumber::new(Position::TrimHorizon))
    }

    #[tokio::test]
    async fn scan_skips_foreign_items_and_reports_malformed_ones() {
        let store = InMemoryLeaseStore::new("app");
        store.put(lease("shardId-0"));
        store.insert_foreign("worker-1");
        store.insert_malformed("shardId-9", "missing leaseCounter");
        let scan = store.list_leases().await.unwrap();
        assert_eq!(scan.leases.iter().map(|l| l.key.as_str()).collect::<Vec<_>>(), ["shardId-0"]);
        assert!(matches!(&scan.malformed[..], [LeaseError::Malformed { key, .. }] if key == "shardId-9"));
        assert_eq!(store.get_lease("worker-1").await.unwrap(), None);
        assert!(matches!(store.get_lease("shardId-9").await, Err(LeaseError::Malformed { .. })));
    }

    #[tokio::test]
    async fn injected_faults_apply_to_the_next_calls_only() {
        let store = InMemoryLeaseStore::new("app");
        store.put(lease("s"));
        store.fail_next(Op::RenewLease, Fault::Throttled, 1);
        store.fail_next(Op::RenewLease, Fault::Dependency, 1);
        let l = store.lease("s").unwrap();
        assert!(matches!(store.renew_lease(&l).await, Err(LeaseError::Throttled { operation: "renew_lease", .. })));
        assert!(matches!(store.renew_lease(&l).await, Err(LeaseError::Dependency { .. })));
        assert_eq!(store.lease("s").unwrap().counter, 0, "failed calls must not apply");
        assert!(store.renew_lease(&l).await.unwrap());
        assert_eq!(store.calls(Op::RenewLease), 3);
        assert_eq!(store.calls(Op::TakeLease), 0);
    }

    #[tokio::test]
    async fn applied_but_lost_write_is_recovered_by_the_retry() {
        let store = InMemoryLeaseStore::new("app");
        store.put(lease("s"));
        let unowned = store.lease("s").unwrap();
        store.fail_next(Op::TakeLease, Fault::AppliedButLost, 1);
        assert!(store.take_lease(&unowned, "me").await.is_err());
        assert_eq!(store.lease("s").unwrap().owner.as_deref(), Some("me"));
        // The retry of the same request fails its condition but sees its own write.
        assert!(store.take_lease(&unowned, "me").await.unwrap());
        // Somebody else's retry does not.
        assert!(!store.take_lease(&unowned, "other").await.unwrap());
    }

    #[tokio::test]
    async fn steal_acts_like_another_workers_take() {
        let store = InMemoryLeaseStore::new("app");
        let mut l = lease("s");
        l.owner = Some("a".into());
        l.checkpoint_owner = Some("a".into());
        store.put(l.clone());
        let stolen = store.steal("s", "b").unwrap();
        assert_eq!(
            (stolen.owner.as_deref(), stolen.counter, stolen.owner_switches_since_checkpoint),
            (Some("b"), 1, 1)
        );
        assert_eq!(stolen.checkpoint_owner, None);
        assert!(!store.renew_lease(&l).await.unwrap(), "the old holder's renew must fail");
        assert!(store.steal("missing", "b").is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn latency_is_applied_in_tokio_time() {
        let store = InMemoryLeaseStore::new("app");
        store.set_latency(Op::GetLease, Duration::from_secs(5));
        let start = tokio::time::Instant::now();
        assert_eq!(store.get_lease("x").await.unwrap(), None);
        assert_eq!(start.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test]
    async fn migration_state_is_settable() {
        let store = InMemoryLeaseStore::new("app");
        let state = MigrationState { client_version: "CLIENT_VERSION_3X".into(), table: "app".into() };
        store.set_migration_state(Some(state.clone()));
        assert_eq!(store.migration_state().await.unwrap(), Some(state));
    }
}
