//! In-memory 3.x stores with the DynamoDB semantics, for unit tests of the follower, leader
//! and migration logic. Clones share state (two clones = two workers' clients). The shared
//! suites in [`super::conformance`] check them against DynamoDB (moto).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;

use super::coordinator::CoordinatorStateStore;
use super::lease_table::{classify_failed_renewal, IndexState, Kcl3LeaseTable, Renewal};
use super::worker_metrics::{WorkerMetricsScan, WorkerMetricsStore};
use super::{ClientVersion, LockItem, MigrationRecord, WorkerMetricStats};
use crate::lease::memory::InMemoryLeaseStore;
use crate::lease::{Lease, LeaseError, LeaseStore};

fn guard<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug, Default)]
struct CoordinatorState {
    exists: bool,
    migration: Option<MigrationRecord>,
    lock: Option<LockItem>,
}

/// In-memory [`CoordinatorStateStore`].
#[derive(Debug, Clone)]
pub struct InMemoryCoordinatorStore {
    table: Arc<str>,
    state: Arc<Mutex<CoordinatorState>>,
}

impl InMemoryCoordinatorStore {
    /// An existing, empty table.
    #[must_use]
    pub fn new(table: &str) -> Self {
        let store = Self::without_table(table);
        guard(&store.state).exists = true;
        store
    }

    /// A table that does not exist yet (reads return nothing; writes fail as DynamoDB would).
    #[must_use]
    pub fn without_table(table: &str) -> Self {
        Self { table: Arc::from(table), state: Arc::new(Mutex::new(CoordinatorState::default())) }
    }

    fn missing(&self) -> LeaseError {
        LeaseError::TableMissing { table: self.table.to_string() }
    }
}

#[async_trait]
impl CoordinatorStateStore for InMemoryCoordinatorStore {
    fn table_name(&self) -> &str {
        &self.table
    }

    async fn ensure_table(&self) -> Result<bool, LeaseError> {
        let mut state = guard(&self.state);
        let created = !state.exists;
        state.exists = true;
        Ok(created)
    }

    async fn table_exists(&self) -> Result<bool, LeaseError> {
        Ok(guard(&self.state).exists)
    }

    async fn migration(&self) -> Result<Option<MigrationRecord>, LeaseError> {
        Ok(guard(&self.state).migration.clone())
    }

    async fn create_migration_if_absent(&self, record: &MigrationRecord) -> Result<bool, LeaseError> {
        let mut state = guard(&self.state);
        if !state.exists {
            return Err(self.missing());
        }
        if state.migration.is_some() {
            return Ok(false);
        }
        state.migration = Some(record.clone());
        Ok(true)
    }

    async fn update_migration(&self, expected: &ClientVersion, record: &MigrationRecord) -> Result<bool, LeaseError> {
        let mut state = guard(&self.state);
        if !state.exists {
            return Err(self.missing());
        }
        match &mut state.migration {
            Some(current) if current.client_version == *expected => {
                *current = record.clone();
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn lock(&self) -> Result<Option<LockItem>, LeaseError> {
        Ok(guard(&self.state).lock.clone())
    }

    async fn put_lock(&self, item: &LockItem, replacing: Option<&str>) -> Result<bool, LeaseError> {
        let mut state = guard(&self.state);
        if !state.exists {
            return Err(self.missing());
        }
        let allowed = match (&state.lock, replacing) {
            (None, None) => true,
            (Some(current), Some(version)) => current.record_version == version,
            _ => false,
        };
        if allowed {
            state.lock = Some(item.clone());
        }
        Ok(allowed)
    }

    async fn heartbeat_lock(
        &self,
        owner: &str,
        version: &str,
        new_version: &str,
        lease_duration_ms: u64,
    ) -> Result<bool, LeaseError> {
        let mut state = guard(&self.state);
        match &mut state.lock {
            Some(lock) if lock.owner == owner && lock.record_version == version => {
                lock.record_version = new_version.to_owned();
                lock.lease_duration_ms = lease_duration_ms;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn delete_lock(&self, owner: &str, version: &str) -> Result<bool, LeaseError> {
        let mut state = guard(&self.state);
        match &state.lock {
            Some(lock) if lock.owner == owner && lock.record_version == version => {
                state.lock = None;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

/// In-memory [`WorkerMetricsStore`].
#[derive(Debug, Clone)]
pub struct InMemoryWorkerMetricsStore {
    table: Arc<str>,
    state: Arc<Mutex<(bool, BTreeMap<String, WorkerMetricStats>)>>,
}

impl InMemoryWorkerMetricsStore {
    /// An existing, empty table.
    #[must_use]
    pub fn new(table: &str) -> Self {
        Self { table: Arc::from(table), state: Arc::new(Mutex::new((true, BTreeMap::new()))) }
    }

    /// A table that does not exist yet.
    #[must_use]
    pub fn without_table(table: &str) -> Self {
        Self { table: Arc::from(table), state: Arc::new(Mutex::new((false, BTreeMap::new()))) }
    }
}

#[async_trait]
impl WorkerMetricsStore for InMemoryWorkerMetricsStore {
    fn table_name(&self) -> &str {
        &self.table
    }

    async fn ensure_table(&self) -> Result<bool, LeaseError> {
        let mut state = guard(&self.state);
        let created = !state.0;
        state.0 = true;
        Ok(created)
    }

    async fn publish(&self, stats: &WorkerMetricStats) -> Result<(), LeaseError> {
        let mut state = guard(&self.state);
        if !state.0 {
            return Err(LeaseError::TableMissing { table: self.table.to_string() });
        }
        state.1.insert(stats.worker_id.clone(), stats.clone());
        Ok(())
    }

    async fn list(&self) -> Result<WorkerMetricsScan, LeaseError> {
        let state = guard(&self.state);
        Ok(WorkerMetricsScan { workers: state.1.values().cloned().collect(), malformed: Vec::new() })
    }

    async fn delete_if_unchanged(&self, worker_id: &str, last_update_s: u64) -> Result<bool, LeaseError> {
        let mut state = guard(&self.state);
        if state.1.get(worker_id).is_some_and(|w| w.last_update_s == last_update_s) {
            state.1.remove(worker_id);
            return Ok(true);
        }
        Ok(false)
    }
}

/// [`Kcl3LeaseTable`] over an [`InMemoryLeaseStore`] (which keeps the leases; clones share them).
#[derive(Debug, Clone)]
pub struct InMemoryKcl3LeaseTable {
    leases: InMemoryLeaseStore,
    index: Arc<Mutex<IndexState>>,
}

impl InMemoryKcl3LeaseTable {
    /// The 3.x operations on `leases` (no owner index yet).
    #[must_use]
    pub fn new(leases: InMemoryLeaseStore) -> Self {
        Self { leases, index: Arc::new(Mutex::new(IndexState::Missing)) }
    }

    /// The underlying lease table.
    #[must_use]
    pub fn leases(&self) -> &InMemoryLeaseStore {
        &self.leases
    }

    /// Sets the index state (e.g. `Creating`, to test waiting).
    pub fn set_index_state(&self, state: IndexState) {
        *guard(&self.index) = state;
    }

    /// A conditional change of one lease: applies `write` if `condition` holds.
    fn conditional(
        &self,
        key: &str,
        condition: impl FnOnce(&Lease) -> bool,
        write: impl FnOnce(&mut Lease),
    ) -> Option<Lease> {
        let mut applied = false;
        let after = self.leases.modify(key, |lease| {
            if condition(lease) {
                write(lease);
                applied = true;
            }
        });
        after.filter(|_| applied)
    }
}

#[async_trait]
impl Kcl3LeaseTable for InMemoryKcl3LeaseTable {
    async fn ensure_owner_index(&self) -> Result<IndexState, LeaseError> {
        let mut state = guard(&self.index);
        if *state == IndexState::Missing {
            *state = IndexState::Active;
        }
        Ok(state.clone())
    }

    async fn owner_index_state(&self) -> Result<IndexState, LeaseError> {
        Ok(guard(&self.index).clone())
    }

    async fn lease_keys_for_worker(&self, worker: &str) -> Result<Vec<String>, LeaseError> {
        if *guard(&self.index) != IndexState::Active {
            return Err(LeaseError::Dependency {
                table: self.leases.table_name().to_owned(),
                operation: "query_owner_index",
                message: "the owner index is not active".to_owned(),
            });
        }
        let scan = self.leases.list_leases().await?;
        let mut keys: Vec<String> =
            scan.leases.into_iter().filter(|l| l.owner.as_deref() == Some(worker)).map(|l| l.key).collect();
        keys.sort();
        Ok(keys)
    }

    async fn renew_lease_3x(
        &self,
        lease: &Lease,
        me: &str,
        throughput_kbps: Option<f64>,
    ) -> Result<Renewal, LeaseError> {
        let _ = throughput_kbps; // the in-memory lease model does not keep throughput
        let handoff_known = lease.checkpoint_owner.as_deref() == Some(me);
        let renewed = self.conditional(
            &lease.key,
            |current| current.counter == lease.counter && (handoff_known || current.checkpoint_owner.is_none()),
            |current| current.counter += 1,
        );
        if renewed.is_some() {
            return Ok(Renewal::Renewed);
        }
        Ok(classify_failed_renewal(lease, me, self.leases.lease(&lease.key)))
    }

    async fn assign_lease(&self, lease: &Lease, new_owner: &str) -> Result<Option<Lease>, LeaseError> {
        let previous = lease.checkpoint_owner.clone().or_else(|| lease.owner.clone());
        Ok(self.conditional(
            &lease.key,
            |current| current.owner == lease.owner && current.checkpoint_owner == lease.checkpoint_owner,
            |current| {
                current.owner = Some(new_owner.to_owned());
                current.checkpoint_owner = None;
                current.counter += 1;
                if previous.as_deref().is_some_and(|p| p != new_owner) {
                    current.owner_switches_since_checkpoint += 1;
                }
            },
        ))
    }

    async fn initiate_handoff(&self, lease: &Lease, new_owner: &str) -> Result<Option<Lease>, LeaseError> {
        let Some(current_owner) = lease.owner.clone() else { return Ok(None) };
        Ok(self.conditional(
            &lease.key,
            |current| current.owner.as_deref() == Some(current_owner.as_str()) && current.checkpoint_owner.is_none(),
            |current| {
                current.checkpoint_owner = current.owner.take();
                current.owner = Some(new_owner.to_owned());
            },
        ))
    }
}
