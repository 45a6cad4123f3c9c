//! Shared behaviour suites for the 3.x stores. They run against the in-memory stores (unit
//! tests) and against DynamoDB on moto (`tests/kcl3_stores.rs`), so the two cannot drift apart.
//! Failures panic naming the check; meant for tests only.

use super::coordinator::CoordinatorStateStore;
use super::lease_table::{IndexState, Kcl3LeaseTable, Renewal};
use super::worker_metrics::WorkerMetricsStore;
use super::{ClientVersion, LockItem, MigrationRecord, WorkerMetricStats};
use crate::lease::{Lease, LeaseError, LeaseStore};
use crate::sequence::{ExtendedSequenceNumber, Position};

fn ok<T>(what: &str, result: Result<T, LeaseError>) -> T {
    result.unwrap_or_else(|e| panic!("{what}: unexpected error {e:?}"))
}

/// The coordinator-state store: table creation, the migration item's conditional writes and
/// the lock's conditional writes. The table must not exist yet.
///
/// # Panics
/// When the store violates the contract.
pub async fn coordinator<S: CoordinatorStateStore + ?Sized>(store: &S) {
    assert!(!ok("table_exists", store.table_exists().await), "no table yet");
    assert_eq!(ok("migration without table", store.migration().await), None);
    assert_eq!(ok("lock without table", store.lock().await), None);
    assert!(ok("ensure_table", store.ensure_table().await), "first ensure_table creates");
    assert!(!ok("ensure_table again", store.ensure_table().await), "second ensure_table finds it");
    assert!(ok("table_exists", store.table_exists().await));

    // Migration3.0: create once, then compare-and-set on cv.
    let initial = MigrationRecord::initial(ClientVersion::UpgradeFrom2x, "w1", 1_000);
    assert!(ok("create_migration", store.create_migration_if_absent(&initial).await));
    let other = MigrationRecord::initial(ClientVersion::V3x, "w2", 2_000);
    assert!(!ok("second create_migration", store.create_migration_if_absent(&other).await), "create is conditional");
    assert_eq!(ok("migration", store.migration().await), Some(initial.clone()));
    let upgraded = initial.advanced(ClientVersion::V3xWithRollback, "w2", 3_000);
    assert!(!ok("update with a stale cv", store.update_migration(&ClientVersion::V2x, &upgraded).await));
    assert!(ok("update_migration", store.update_migration(&ClientVersion::UpgradeFrom2x, &upgraded).await));
    assert_eq!(ok("migration", store.migration().await), Some(upgraded.clone()));
    let no_history = MigrationRecord { history: Vec::new(), ..upgraded.advanced(ClientVersion::V3x, "w1", 4_000) };
    assert!(ok("update without history", store.update_migration(&ClientVersion::V3xWithRollback, &no_history).await));
    assert_eq!(ok("migration", store.migration().await), Some(no_history), "an empty history removes h");

    // The lock: create if absent, heartbeat by owner+version, replace by version, delete.
    let a = LockItem { owner: "a".into(), lease_duration_ms: 20_000, record_version: "v1".into(), released: false };
    assert!(ok("put_lock", store.put_lock(&a, None).await));
    let b = LockItem { owner: "b".into(), lease_duration_ms: 120_000, record_version: "v9".into(), released: false };
    assert!(!ok("put_lock over a lock", store.put_lock(&b, None).await), "only if absent");
    assert!(!ok("put_lock replacing a wrong version", store.put_lock(&b, Some("v0")).await));
    assert!(!ok("heartbeat by another owner", store.heartbeat_lock("b", "v1", "v2", 1).await));
    assert!(!ok("heartbeat of a stale version", store.heartbeat_lock("a", "v0", "v2", 1).await));
    assert!(ok("heartbeat", store.heartbeat_lock("a", "v1", "v2", 30_000).await));
    let beaten = LockItem { record_version: "v2".into(), lease_duration_ms: 30_000, ..a.clone() };
    assert_eq!(ok("lock", store.lock().await), Some(beaten));
    assert!(
        ok("put_lock replacing the seen version", store.put_lock(&b, Some("v2")).await),
        "take-over of an expired lock"
    );
    assert_eq!(ok("lock", store.lock().await), Some(b.clone()));
    assert!(!ok("delete by the old owner", store.delete_lock("a", "v2").await));
    assert!(ok("delete", store.delete_lock("b", "v9").await));
    assert_eq!(ok("lock after delete", store.lock().await), None);
    assert!(!ok("put_lock replacing a deleted lock", store.put_lock(&a, Some("v9")).await));
}

/// The worker-metrics store. The table must not exist yet.
///
/// # Panics
/// When the store violates the contract.
pub async fn worker_metrics<S: WorkerMetricsStore + ?Sized>(store: &S) {
    assert!(ok("list without table", store.list().await).workers.is_empty());
    assert!(ok("ensure_table", store.ensure_table().await));
    assert!(!ok("ensure_table again", store.ensure_table().await));
    let w1 = WorkerMetricStats::default_metric("w1", 1_764_000_000);
    let mut w2 = WorkerMetricStats::default_metric("w2", 1_764_000_010);
    w2.stats.insert("C".into(), vec![10.0, 12.5]);
    w2.operating_range.insert("C".into(), vec![100.0]);
    ok("publish w1", store.publish(&w1).await);
    ok("publish w2", store.publish(&w2).await);
    let w1_later = WorkerMetricStats::default_metric("w1", 1_764_000_030);
    ok("publish w1 again", store.publish(&w1_later).await);
    let mut listed = ok("list", store.list().await).workers;
    listed.sort_by(|x, y| x.worker_id.cmp(&y.worker_id));
    assert_eq!(listed, vec![w1_later.clone(), w2.clone()]);
    assert!(!ok("delete with a stale lut", store.delete_if_unchanged("w1", 1_764_000_000).await));
    assert!(ok("delete", store.delete_if_unchanged("w1", 1_764_000_030).await));
    assert_eq!(ok("list", store.list().await).workers, vec![w2]);
}

async fn put_lease<L: LeaseStore + ?Sized>(leases: &L, key: &str, owner: Option<&str>) -> Lease {
    let mut lease = Lease::new(key, ExtendedSequenceNumber::new(Position::TrimHorizon));
    lease.owner = owner.map(str::to_owned);
    assert!(ok("create_lease", leases.create_lease_if_absent(&lease).await));
    lease
}

async fn get<L: LeaseStore + ?Sized>(leases: &L, key: &str) -> Lease {
    ok("get_lease", leases.get_lease(key).await).unwrap_or_else(|| panic!("lease {key} should exist"))
}

/// The 3.x lease-table operations. `leases` and `kcl3` work on the same existing, empty lease table.
///
/// # Panics
/// When the store violates the contract.
pub async fn lease_table<L: LeaseStore + ?Sized, K: Kcl3LeaseTable + ?Sized>(leases: &L, kcl3: &K) {
    assert_eq!(ok("owner_index_state", kcl3.owner_index_state().await), IndexState::Missing);
    assert_ne!(ok("ensure_owner_index", kcl3.ensure_owner_index().await), IndexState::Missing);
    assert_ne!(ok("ensure_owner_index again", kcl3.ensure_owner_index().await), IndexState::Missing);
    let state = ok("wait", kcl3.wait_owner_index_active(std::time::Duration::from_secs(60)).await);
    assert_eq!(state, IndexState::Active);

    let a1 = put_lease(leases, "shardId-000000000001", Some("a")).await;
    put_lease(leases, "shardId-000000000002", Some("b")).await;
    put_lease(leases, "shardId-000000000003", Some("a")).await;
    let free = put_lease(leases, "shardId-000000000004", None).await;
    let mut keys = ok("lease_keys_for_worker", kcl3.lease_keys_for_worker("a").await);
    keys.sort();
    assert_eq!(keys, ["shardId-000000000001", "shardId-000000000003"]);
    assert!(ok("keys of nobody", kcl3.lease_keys_for_worker("z").await).is_empty());

    // Renew with throughput.
    assert_eq!(ok("renew", kcl3.renew_lease_3x(&a1, "a", Some(12.345_678_9)).await), Renewal::Renewed);
    let a1 = get(leases, &a1.key).await;
    assert_eq!(a1.counter, 1);
    assert_eq!(
        ok("renew a stale view", kcl3.renew_lease_3x(&Lease { counter: 0, ..a1.clone() }, "a", None).await),
        Renewal::Renewed,
        "our own applied write (counter + 1, still ours) counts as renewed"
    );
    // b renews its lease; a view from before that (or of another owner) has lost it.
    let b2 = get(leases, "shardId-000000000002").await;
    assert_eq!(ok("renew by b", kcl3.renew_lease_3x(&b2, "b", None).await), Renewal::Renewed);
    assert_eq!(ok("renew a stale view", kcl3.renew_lease_3x(&b2, "a", None).await), Renewal::Lost);
    let b2_now = get(leases, "shardId-000000000002").await;
    assert_eq!(ok("renew by b again", kcl3.renew_lease_3x(&b2_now, "b", None).await), Renewal::Renewed);
    assert_eq!(ok("renew a view two renewals old", kcl3.renew_lease_3x(&b2, "b", None).await), Renewal::Lost);

    // Assign an unowned lease; the condition is on the stored owner fields.
    let assigned = ok("assign", kcl3.assign_lease(&free, "c").await).expect("assign applies");
    assert_eq!(assigned.owner.as_deref(), Some("c"));
    assert_eq!(assigned.counter, free.counter + 1);
    assert_eq!(assigned.owner_switches_since_checkpoint, 0, "no switch from nobody");
    assert_eq!(ok("assign again with the old view", kcl3.assign_lease(&free, "d").await), None);
    let reassigned = ok("reassign", kcl3.assign_lease(&assigned, "d").await).expect("assign applies");
    assert_eq!(reassigned.owner_switches_since_checkpoint, 1);

    // Graceful hand-off a → b of a1.
    let started = ok("initiate_handoff", kcl3.initiate_handoff(&a1, "b").await).expect("hand-off starts");
    assert_eq!(started.owner.as_deref(), Some("b"));
    assert_eq!(started.checkpoint_owner.as_deref(), Some("a"));
    assert_eq!(started.counter, a1.counter, "the counter is not changed");
    assert_eq!(ok("second hand-off", kcl3.initiate_handoff(&a1, "c").await), None, "one hand-off at a time");
    // The old owner's next renewal notices the hand-off.
    match ok("renew during hand-off", kcl3.renew_lease_3x(&a1, "a", Some(1.0)).await) {
        Renewal::HandoffRequested(stored) => assert_eq!(*stored, started),
        other => panic!("expected HandoffRequested, got {other:?}"),
    }
    // It adopts the stored fields and keeps renewing (condition on the counter only).
    assert_eq!(ok("renew after adopting", kcl3.renew_lease_3x(&started, "a", None).await), Renewal::Renewed);
    let renewed = get(leases, &a1.key).await;
    assert_eq!(renewed.counter, started.counter + 1);
    assert_eq!(renewed.checkpoint_owner.as_deref(), Some("a"));
    // The new owner does not see it through the index as assignable while checkpointOwner is
    // set (discovery re-reads), and completes only through the old owner's assign.
    let done = ok("complete the hand-off", kcl3.assign_lease(&renewed, "b").await).expect("transfer applies");
    assert_eq!(done.owner.as_deref(), Some("b"));
    assert_eq!(done.checkpoint_owner, None);
    assert_eq!(done.counter, renewed.counter + 1);
    assert_eq!(done.owner_switches_since_checkpoint, 1);
    assert_eq!(
        ok("old owner renews after the transfer", kcl3.renew_lease_3x(&renewed, "a", None).await),
        Renewal::Lost
    );
    assert_eq!(ok("new owner renews", kcl3.renew_lease_3x(&done, "b", None).await), Renewal::Renewed);
}

#[cfg(test)]
mod tests {
    use crate::lease::kcl3::memory::{InMemoryCoordinatorStore, InMemoryKcl3LeaseTable, InMemoryWorkerMetricsStore};
    use crate::lease::memory::InMemoryLeaseStore;

    #[tokio::test]
    async fn in_memory_coordinator_store_conforms() {
        super::coordinator(&InMemoryCoordinatorStore::without_table("app-CoordinatorState")).await;
    }

    #[tokio::test]
    async fn in_memory_worker_metrics_store_conforms() {
        super::worker_metrics(&InMemoryWorkerMetricsStore::without_table("app-WorkerMetricStats")).await;
    }

    #[tokio::test]
    async fn in_memory_lease_table_conforms() {
        let leases = InMemoryLeaseStore::new("app");
        super::lease_table(&leases, &InMemoryKcl3LeaseTable::new(leases.clone())).await;
    }
}
