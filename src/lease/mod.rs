//! Leases: the KCL 2.x DynamoDB lease table, shared with Java workers.
//!
//! One item per shard, keyed by `leaseKey` (the shard id). Ownership is an optimistic lock
//! on `leaseCounter`: every renew, take, checkpoint and release is a conditional write
//! "the counter still equals the value I last saw" that increments it. Expiry is never
//! computed from stored wall-clock times; each worker notes on its own monotonic clock when
//! it last saw a lease's counter change (see `../shared/reference/lease-coordination.md`).
//!
//! This module owns the [`Lease`] model and the [`LeaseStore`] trait. The DynamoDB
//! implementation lives in [`dynamodb`]; an in-memory one for tests in [`memory`]; both
//! pass the shared suite in [`conformance`]. [`renewer`] keeps a worker's held leases alive.
//! Writes are attribute-level updates only, so attributes written by other KCL versions
//! (`throughputKBps`, `checkpointOwner`, `entityType`, future ones) survive.

pub mod assignment;
#[cfg(any(test, feature = "test-support"))]
pub mod conformance;
pub mod dynamodb;
pub mod item;
pub mod kcl3;
pub mod leader;
#[cfg(any(test, feature = "test-support"))]
pub mod memory;
pub mod recent;
pub mod renewer;
pub mod taker;

use std::collections::BTreeSet;

use async_trait::async_trait;

pub use crate::model::HashKeyRange;
use crate::sequence::ExtendedSequenceNumber;
pub use item::Lease;

/// The fleet's KCL 3.x client-version state, read from the `Migration3.0` item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationState {
    /// The `cv` attribute, e.g. `CLIENT_VERSION_UPGRADE_FROM_2X` or `CLIENT_VERSION_3X`.
    pub client_version: String,
    /// Where the item was found (table name).
    pub table: String,
}

impl MigrationState {
    /// True when the fleet runs the 3.x protocol, which a 2.x worker must not join.
    #[must_use]
    pub fn is_3x_mode(&self) -> bool {
        matches!(self.client_version.as_str(), "CLIENT_VERSION_3X" | "CLIENT_VERSION_3X_WITH_ROLLBACK")
    }
}

/// Errors from the lease store. A failed *condition* is not an error: operations that are
/// conditional return `Ok(false)` for "someone else changed the lease".
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// DynamoDB throttled the request (`ProvisionedThroughputExceededException`,
    /// `RequestLimitExceeded`, `ThrottlingException`).
    #[error("lease table {table}: throttled during {operation}")]
    Throttled {
        /// Table name.
        table: String,
        /// The operation, e.g. `renew`.
        operation: &'static str,
    },
    /// The lease table does not exist.
    #[error("lease table {table} does not exist")]
    TableMissing {
        /// Table name.
        table: String,
    },
    /// An item that should be a lease could not be read as one.
    #[error("lease table {table}: item {key:?} is not a valid lease: {reason}")]
    Malformed {
        /// Table name.
        table: String,
        /// The item's `leaseKey`.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// Any other failure talking to DynamoDB (network, 5xx, auth, validation).
    #[error("lease table {table}: {operation} failed: {message}")]
    Dependency {
        /// Table name.
        table: String,
        /// The operation, e.g. `scan`.
        operation: &'static str,
        /// The SDK error chain, flattened.
        message: String,
    },
}

/// A page of leases from a full-table scan.
#[derive(Debug, Default)]
pub struct LeaseScan {
    /// Every lease item (items whose `entityType` is present and not `LEASE` are skipped).
    pub leases: Vec<Lease>,
    /// Items that looked like leases but could not be parsed; reported, never fatal.
    pub malformed: Vec<LeaseError>,
}

/// The lease table. Every conditional operation returns `Ok(true)` when the write was
/// applied and `Ok(false)` when its condition failed.
#[async_trait]
pub trait LeaseStore: Send + Sync + 'static {
    /// The table name (for logs).
    fn table_name(&self) -> &str;

    /// Creates the table (key `leaseKey` S, PAY_PER_REQUEST) if missing and waits until it
    /// is ACTIVE. Returns true if this call created it.
    async fn ensure_table(&self) -> Result<bool, LeaseError>;

    /// Full, paginated scan of the lease items.
    async fn list_leases(&self) -> Result<LeaseScan, LeaseError>;

    /// Reads one lease (consistent read). `None` if absent or not a lease item.
    async fn get_lease(&self, key: &str) -> Result<Option<Lease>, LeaseError>;

    /// PutItem with `attribute_not_exists(leaseKey)`; writes `entityType = LEASE`.
    /// `Ok(false)` when the lease already existed.
    async fn create_lease_if_absent(&self, lease: &Lease) -> Result<bool, LeaseError>;

    /// Renew: `SET leaseCounter = counter + 1` if `leaseCounter = lease.counter`.
    /// On condition failure, re-reads the item: if the owner is `lease.owner` and the counter
    /// is `lease.counter + 1` it was a spurious retry of our own write and counts as success.
    async fn renew_lease(&self, lease: &Lease) -> Result<bool, LeaseError>;

    /// Take: if `leaseCounter = lease.counter`: counter + 1, `leaseOwner = owner`,
    /// `ADD ownerSwitchesSinceCheckpoint 1` when the previous owner was set and different,
    /// `REMOVE checkpointOwner`. On condition failure a re-read showing `owner` at
    /// `lease.counter + 1` is our own retried write and counts as success.
    async fn take_lease(&self, lease: &Lease, owner: &str) -> Result<bool, LeaseError>;

    /// Release (evict): if `leaseCounter = lease.counter` and `leaseOwner = lease.owner`:
    /// `REMOVE leaseOwner`, counter + 1. Used on graceful shutdown so peers take it at once.
    async fn release_lease(&self, lease: &Lease) -> Result<bool, LeaseError>;

    /// Checkpoint: if `leaseCounter = lease.counter` (counter only, as Java):
    /// counter + 1, `checkpoint`, `checkpointSubSequenceNumber`,
    /// `ownerSwitchesSinceCheckpoint = 0`, `REMOVE pendingCheckpoint,
    /// pendingCheckpointSubSequenceNumber, pendingCheckpointState`; also `SET childShardIds`
    /// and the hash keys when `lease` knows them (as Java's update does). On condition
    /// failure a re-read showing `lease.owner`, `lease.counter + 1` and exactly this
    /// checkpoint is our own retried write and counts as success.
    async fn update_checkpoint(&self, lease: &Lease, checkpoint: &ExtendedSequenceNumber) -> Result<bool, LeaseError>;

    /// `SET childShardIds` if the item exists; no counter change (updateWithMetaInfo).
    async fn update_child_shard_ids(&self, key: &str, children: &BTreeSet<String>) -> Result<bool, LeaseError>;

    /// `SET startingHashKey, endingHashKey` if the item exists; no counter change.
    async fn update_hash_key_range(&self, key: &str, range: &HashKeyRange) -> Result<bool, LeaseError>;

    /// Unconditional DeleteItem (lease cleanup).
    async fn delete_lease(&self, key: &str) -> Result<(), LeaseError>;

    /// Reads the `Migration3.0` item from the lease table and, if it exists,
    /// `<table>-CoordinatorState` (key attribute `key`).
    async fn migration_state(&self) -> Result<Option<MigrationState>, LeaseError>;
}
