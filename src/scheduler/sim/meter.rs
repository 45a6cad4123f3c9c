//! A [`LeaseStore`] wrapper that counts every request the fleet makes and prices it with
//! the [`CostModel`], per simulated minute.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use serde::Serialize;
use tokio::time::Instant;

use super::cost::CostModel;
use crate::lease::{HashKeyRange, Lease, LeaseError, LeaseScan, LeaseStore, MigrationState};
use crate::sequence::ExtendedSequenceNumber;

/// Requests and units of one simulated minute (or of a sum of minutes).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Usage {
    /// Requests by DynamoDB operation name (`Scan` counts pages).
    pub requests: BTreeMap<&'static str, u64>,
    /// Requests by lease-layer purpose (`renew`, `take`, `scan`, `migration_check`, …).
    pub by_purpose: BTreeMap<&'static str, u64>,
    /// Items returned by scans.
    pub scanned_items: u64,
    /// Read request units.
    pub rru: f64,
    /// Write request units.
    pub wru: f64,
    /// Successful takes of a lease another worker owned (ownership moves).
    pub moves: u64,
    /// Successful takes of an unowned lease.
    pub takes_unowned: u64,
}

impl Usage {
    /// What happened between `earlier` (a snapshot of a running total) and `self`.
    #[must_use]
    pub fn since(&self, earlier: &Usage) -> Usage {
        let diff = |a: &BTreeMap<&'static str, u64>, b: &BTreeMap<&'static str, u64>| {
            a.iter().map(|(k, v)| (*k, v.saturating_sub(b.get(k).copied().unwrap_or(0)))).collect()
        };
        Usage {
            requests: diff(&self.requests, &earlier.requests),
            by_purpose: diff(&self.by_purpose, &earlier.by_purpose),
            scanned_items: self.scanned_items.saturating_sub(earlier.scanned_items),
            rru: self.rru - earlier.rru,
            wru: self.wru - earlier.wru,
            moves: self.moves.saturating_sub(earlier.moves),
            takes_unowned: self.takes_unowned.saturating_sub(earlier.takes_unowned),
        }
    }

    fn add(&mut self, other: &Usage) {
        for (k, v) in &other.requests {
            *self.requests.entry(k).or_default() += v;
        }
        for (k, v) in &other.by_purpose {
            *self.by_purpose.entry(k).or_default() += v;
        }
        self.scanned_items += other.scanned_items;
        self.rru += other.rru;
        self.wru += other.wru;
        self.moves += other.moves;
        self.takes_unowned += other.takes_unowned;
    }
}

#[derive(Debug)]
struct MeterState {
    start: Instant,
    minutes: Vec<Usage>,
    total: Usage,
}

/// Usage of the whole fleet, bucketed by simulated minute since the meter was made.
#[derive(Debug, Clone)]
pub struct Meter {
    model: CostModel,
    state: Arc<Mutex<MeterState>>,
}

impl Meter {
    /// A meter starting now (tokio time).
    #[must_use]
    pub fn new(model: CostModel) -> Self {
        Self {
            model,
            state: Arc::new(Mutex::new(MeterState {
                start: Instant::now(),
                minutes: Vec::new(),
                total: Usage::default(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, MeterState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn record(&self, f: impl Fn(&mut Usage, &CostModel)) {
        let mut state = self.lock();
        let minute = usize::try_from(state.start.elapsed().as_secs() / 60).unwrap_or(usize::MAX);
        if state.minutes.len() <= minute {
            state.minutes.resize_with(minute + 1, Usage::default);
        }
        f(&mut state.minutes[minute], &self.model);
        f(&mut state.total, &self.model);
    }

    fn read(&self, operation: &'static str, purpose: &'static str) {
        self.record(|u, m| {
            *u.requests.entry(operation).or_default() += 1;
            *u.by_purpose.entry(purpose).or_default() += 1;
            u.rru += m.consistent_get_units();
        });
    }

    fn write(&self, purpose: &'static str) {
        self.record(|u, m| {
            let operation = match purpose {
                "create" => "PutItem",
                "delete" => "DeleteItem",
                _ => "UpdateItem",
            };
            *u.requests.entry(operation).or_default() += 1;
            *u.by_purpose.entry(purpose).or_default() += 1;
            u.wru += m.write_units();
        });
    }

    fn scan(&self, items: usize) {
        self.record(|u, m| {
            let (pages, rru) = m.scan(items);
            *u.requests.entry("Scan").or_default() += pages;
            *u.by_purpose.entry("scan").or_default() += 1;
            u.scanned_items += u64::try_from(items).unwrap_or(u64::MAX);
            u.rru += rru;
        });
    }

    /// The running total since the meter was made.
    #[must_use]
    pub fn total(&self) -> Usage {
        self.lock().total.clone()
    }

    /// Per-minute usage so far (minute 0 first).
    #[must_use]
    pub fn minutes(&self) -> Vec<Usage> {
        self.lock().minutes.clone()
    }

    /// The index of the current minute.
    #[must_use]
    pub fn current_minute(&self) -> usize {
        usize::try_from(self.lock().start.elapsed().as_secs() / 60).unwrap_or(usize::MAX)
    }

    /// Usage summed over the whole minutes `from..to`.
    #[must_use]
    pub fn sum(&self, from: usize, to: usize) -> Usage {
        let state = self.lock();
        let mut total = Usage::default();
        for minute in state.minutes.iter().take(to).skip(from) {
            total.add(minute);
        }
        total
    }
}

/// One worker's client of the shared table: forwards to `inner` and records every request
/// on the fleet's [`Meter`].
pub struct MeteredStore {
    inner: Arc<dyn LeaseStore>,
    meter: Meter,
}

impl MeteredStore {
    /// Wraps `inner`.
    #[must_use]
    pub fn new(inner: Arc<dyn LeaseStore>, meter: Meter) -> Self {
        Self { inner, meter }
    }
}

#[async_trait]
impl LeaseStore for MeteredStore {
    fn table_name(&self) -> &str {
        self.inner.table_name()
    }

    async fn ensure_table(&self) -> Result<bool, LeaseError> {
        // DescribeTable / CreateTable are control-plane calls: not billed.
        self.inner.ensure_table().await
    }

    async fn list_leases(&self) -> Result<LeaseScan, LeaseError> {
        let scan = self.inner.list_leases().await?;
        self.meter.scan(scan.leases.len() + scan.malformed.len());
        Ok(scan)
    }

    async fn get_lease(&self, key: &str) -> Result<Option<Lease>, LeaseError> {
        self.meter.read("GetItem", "get_lease");
        self.inner.get_lease(key).await
    }

    async fn create_lease_if_absent(&self, lease: &Lease) -> Result<bool, LeaseError> {
        self.meter.write("create");
        self.inner.create_lease_if_absent(lease).await
    }

    async fn renew_lease(&self, lease: &Lease) -> Result<bool, LeaseError> {
        self.meter.write("renew");
        self.inner.renew_lease(lease).await
    }

    async fn take_lease(&self, lease: &Lease, owner: &str) -> Result<bool, LeaseError> {
        self.meter.write("take");
        let taken = self.inner.take_lease(lease, owner).await?;
        if taken {
            let moved = lease.owner.as_deref().is_some_and(|o| o != owner);
            self.meter.record(|u, _| if moved { u.moves += 1 } else { u.takes_unowned += 1 });
        }
        Ok(taken)
    }

    async fn release_lease(&self, lease: &Lease) -> Result<bool, LeaseError> {
        self.meter.write("release");
        self.inner.release_lease(lease).await
    }

    async fn update_checkpoint(&self, lease: &Lease, checkpoint: &ExtendedSequenceNumber) -> Result<bool, LeaseError> {
        self.meter.write("checkpoint");
        self.inner.update_checkpoint(lease, checkpoint).await
    }

    async fn update_child_shard_ids(&self, key: &str, children: &BTreeSet<String>) -> Result<bool, LeaseError> {
        self.meter.write("update_child_shard_ids");
        self.inner.update_child_shard_ids(key, children).await
    }

    async fn update_hash_key_range(&self, key: &str, range: &HashKeyRange) -> Result<bool, LeaseError> {
        self.meter.write("update_hash_key_range");
        self.inner.update_hash_key_range(key, range).await
    }

    async fn delete_lease(&self, key: &str) -> Result<(), LeaseError> {
        self.meter.write("delete");
        self.inner.delete_lease(key).await
    }

    async fn migration_state(&self) -> Result<Option<MigrationState>, LeaseError> {
        // GetItem of `Migration3.0` in the lease table, then of `<table>-CoordinatorState`
        // when it is not there (a 2.x fleet: always both).
        let state = self.inner.migration_state().await?;
        self.meter.read("GetItem", "migration_check");
        if state.is_none() {
            self.meter.read("GetItem", "migration_check");
        }
        Ok(state)
    }
}
