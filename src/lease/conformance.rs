//! The shared behaviour suite every [`LeaseStore`] must pass.
//!
//! It runs against the in-memory store (a library unit test) and against DynamoDB on
//! dynalite (`tests/lease_dynamodb.rs`), so the two implementations cannot drift apart.
//! It only uses the trait. Failures panic with a message naming the check, so it is meant
//! for tests only; it lives in the library so that integration tests can call it.

use std::collections::BTreeSet;

use super::{HashKeyRange, Lease, LeaseError, LeaseStore};
use crate::sequence::{ExtendedSequenceNumber, Position, SequenceNumber};

/// Runs every check. `store` and `peer` must be two clients of the same table, which must
/// not exist yet.
///
/// # Panics
/// When the store violates the contract.
pub async fn run_all<S: LeaseStore + ?Sized>(store: &S, peer: &S) {
    table_lifecycle(store, peer).await;
    create_and_get(store).await;
    renew(store).await;
    take(store).await;
    racing_takes(store, peer).await;
    release(store).await;
    checkpoint(store).await;
    meta_updates(store).await;
    delete(store).await;
    list(store).await;
}

fn ok<T>(what: &str, result: Result<T, LeaseError>) -> T {
    result.unwrap_or_else(|e| panic!("{what}: unexpected error {e:?}"))
}

async fn get<S: LeaseStore + ?Sized>(store: &S, key: &str) -> Lease {
    ok("get_lease", store.get_lease(key).await).unwrap_or_else(|| panic!("lease {key} should exist"))
}

fn sequence(digits: &str) -> SequenceNumber {
    SequenceNumber::parse(digits).unwrap_or_else(|| panic!("{digits} is a sequence number"))
}

fn trim_horizon(key: &str) -> Lease {
    Lease::new(key, ExtendedSequenceNumber::new(Position::TrimHorizon))
}

fn owned(key: &str, owner: &str, counter: u64) -> Lease {
    Lease { owner: Some(owner.to_owned()), counter, ..trim_horizon(key) }
}

async fn create<S: LeaseStore + ?Sized>(store: &S, lease: &Lease) {
    assert!(ok("create", store.create_lease_if_absent(lease).await), "create {} should succeed", lease.key);
}

/// Before `ensure_table` everything reports a missing table; afterwards the table is empty
/// and a second `ensure_table` (from any client) creates nothing.
///
/// # Panics
/// When the store violates the contract.
pub async fn table_lifecycle<S: LeaseStore + ?Sized>(store: &S, peer: &S) {
    assert!(matches!(store.get_lease("x").await, Err(LeaseError::TableMissing { .. })), "get before table exists");
    assert!(matches!(store.list_leases().await, Err(LeaseError::TableMissing { .. })), "scan before table exists");
    assert!(ok("ensure_table", store.ensure_table().await), "first ensure_table creates the table");
    assert!(!ok("ensure_table", store.ensure_table().await), "second ensure_table creates nothing");
    assert!(!ok("ensure_table", peer.ensure_table().await), "peer's ensure_table creates nothing");
    let scan = ok("list", store.list_leases().await);
    assert!(scan.leases.is_empty() && scan.malformed.is_empty(), "new table is empty: {scan:?}");
    assert_eq!(ok("migration_state", store.migration_state().await), None, "no migration item");
}

/// A created lease reads back field for field; a second create changes nothing.
///
/// # Panics
/// When the store violates the contract.
pub async fn create_and_get<S: LeaseStore + ?Sized>(store: &S) {
    let full = Lease {
        key: "create-full".into(),
        owner: None,
        counter: 0,
        checkpoint: ExtendedSequenceNumber::at(sequence("49590338271490256608559692538361571095921575989136588898"), 2),
        pending_checkpoint: Some(ExtendedSequenceNumber::at(
            sequence("49590338271490256608559692538361571095921575989136588899"),
            0,
        )),
        pending_checkpoint_state: Some(vec![0, 1, 254, 255]),
        owner_switches_since_checkpoint: 0,
        parent_shard_ids: BTreeSet::from(["shardId-000000000000".to_owned(), "shardId-000000000001".to_owned()]),
        child_shard_ids: BTreeSet::new(),
        hash_key_range: Some(HashKeyRange {
            starting: "0".into(),
            ending: "340282366920938463463374607431768211455".into(),
        }),
        checkpoint_owner: None,
    };
    create(store, &full).await;
    assert_eq!(get(store, &full.key).await, full, "round trip of a full lease");
    let again = Lease { checkpoint: ExtendedSequenceNumber::new(Position::Latest), ..full.clone() };
    assert!(!ok("create", store.create_lease_if_absent(&again).await), "second create reports existing");
    assert_eq!(get(store, &full.key).await, full, "second create must not overwrite");

    let with_owner = Lease {
        child_shard_ids: BTreeSet::from(["shardId-000000000007".to_owned()]),
        checkpoint: ExtendedSequenceNumber::shard_end(),
        checkpoint_owner: Some("w0".into()),
        owner_switches_since_checkpoint: 4,
        ..owned("create-owned", "w1", 9)
    };
    create(store, &with_owner).await;
    assert_eq!(get(store, &with_owner.key).await, with_owner, "round trip of an owned lease");
    assert_eq!(ok("get", store.get_lease("create-missing").await), None, "absent lease");
}

/// Renew: counter-only condition, +1; a retry of our own applied renew succeeds.
///
/// # Panics
/// When the store violates the contract.
pub async fn renew<S: LeaseStore + ?Sized>(store: &S) {
    let lease = owned("renew", "w1", 0);
    create(store, &lease).await;
    assert!(ok("renew", store.renew_lease(&lease).await), "renew with current counter");
    assert_eq!(get(store, "renew").await.counter, 1);
    assert!(ok("renew", store.renew_lease(&lease).await), "retry of an applied renew (owner me, counter seen+1)");
    assert_eq!(get(store, "renew").await.counter, 1, "the recovered retry writes nothing");
    let at1 = Lease { counter: 1, ..lease.clone() };
    assert!(ok("renew", store.renew_lease(&at1).await));
    assert!(!ok("renew", store.renew_lease(&lease).await), "counter moved by two: lost");
    let other = Lease { owner: Some("w2".into()), ..at1.clone() };
    assert!(!ok("renew", store.renew_lease(&other).await), "seen+1 but another owner: lost");
    assert_eq!(get(store, "renew").await, Lease { counter: 2, ..lease }, "only the counter changed");
    assert!(!ok("renew", store.renew_lease(&owned("renew-missing", "w1", 0)).await), "absent lease");

    let unowned = trim_horizon("renew-unowned");
    create(store, &unowned).await;
    assert!(ok("renew", store.renew_lease(&unowned).await), "renew of an unowned lease is counter-only");
    assert!(!ok("renew", store.renew_lease(&unowned).await), "no recovery without an owner");
}

/// Take: counter-only condition; owner switches counted; `checkpointOwner` removed.
///
/// # Panics
/// When the store violates the contract.
pub async fn take<S: LeaseStore + ?Sized>(store: &S) {
    let unowned = trim_horizon("take");
    create(store, &unowned).await;
    assert!(ok("take", store.take_lease(&unowned, "w1").await), "take an unowned lease");
    let taken = get(store, "take").await;
    assert_eq!((taken.owner.as_deref(), taken.counter, taken.owner_switches_since_checkpoint), (Some("w1"), 1, 0));
    assert!(!ok("take", store.take_lease(&unowned, "w2").await), "stale counter: not taken");
    assert!(ok("take", store.take_lease(&unowned, "w1").await), "retry of our own applied take");
    assert!(ok("take", store.take_lease(&taken, "w2").await), "steal with the current counter");
    let stolen = get(store, "take").await;
    assert_eq!((stolen.owner.as_deref(), stolen.counter, stolen.owner_switches_since_checkpoint), (Some("w2"), 2, 1));
    assert!(ok("take", store.take_lease(&stolen, "w2").await), "re-take by the same owner");
    let again = get(store, "take").await;
    assert_eq!((again.counter, again.owner_switches_since_checkpoint), (3, 1), "same owner: no switch counted");

    let handoff = Lease { checkpoint_owner: Some("w9".into()), ..owned("take-handoff", "w8", 4) };
    create(store, &handoff).await;
    assert!(ok("take", store.take_lease(&handoff, "w1").await));
    let after = get(store, "take-handoff").await;
    assert_eq!(after.checkpoint_owner, None, "take removes checkpointOwner");
    assert_eq!((after.owner.as_deref(), after.counter), (Some("w1"), 5));
    assert!(!ok("take", store.take_lease(&trim_horizon("take-missing"), "w1").await), "absent lease");
}

/// Two clients take the same lease at once: exactly one wins, the counter moves by one.
///
/// # Panics
/// When the store violates the contract.
pub async fn racing_takes<S: LeaseStore + ?Sized>(store: &S, peer: &S) {
    for round in 0..5 {
        let lease = trim_horizon(&format!("race-{round}"));
        create(store, &lease).await;
        let (a, b) = tokio::join!(store.take_lease(&lease, "racer-a"), peer.take_lease(&lease, "racer-b"));
        let (a, b) = (ok("take a", a), ok("take b", b));
        assert!(a ^ b, "round {round}: exactly one take wins (a={a}, b={b})");
        let after = get(store, &lease.key).await;
        assert_eq!(after.counter, 1, "round {round}: counter advanced by exactly one");
        assert_eq!(after.owner.as_deref(), Some(if a { "racer-a" } else { "racer-b" }));
    }
}

/// Release (evict): counter and owner condition; owner removed, counter +1.
///
/// # Panics
/// When the store violates the contract.
pub async fn release<S: LeaseStore + ?Sized>(store: &S) {
    let lease = owned("release", "w1", 3);
    create(store, &lease).await;
    let wrong_owner = Lease { owner: Some("w2".into()), ..lease.clone() };
    assert!(!ok("release", store.release_lease(&wrong_owner).await), "other owner: not released");
    let stale = Lease { counter: 2, ..lease.clone() };
    assert!(!ok("release", store.release_lease(&stale).await), "stale counter: not released");
    assert!(ok("release", store.release_lease(&lease).await));
    let released = get(store, "release").await;
    assert_eq!((released.owner, released.counter), (None, 4));
    assert!(!ok("release", store.release_lease(&lease).await), "already released");
    let unowned = Lease { counter: 4, owner: None, ..lease };
    assert!(ok("release", store.release_lease(&unowned).await), "release of an unowned lease (owner absent)");
    assert_eq!(get(store, "release").await.counter, 5);
}

/// Checkpoint: counter-only condition, +1; resets owner switches; clears pending fields.
///
/// # Panics
/// When the store violates the contract.
pub async fn checkpoint<S: LeaseStore + ?Sized>(store: &S) {
    let lease = Lease {
        pending_checkpoint: Some(ExtendedSequenceNumber::at(sequence("777"), 1)),
        pending_checkpoint_state: Some(vec![9, 9]),
        owner_switches_since_checkpoint: 3,
        ..owned("checkpoint", "w1", 5)
    };
    create(store, &lease).await;
    let target = ExtendedSequenceNumber::at(sequence("12345678901234567890123456789"), 7);
    let stale = Lease { counter: 4, ..lease.clone() };
    assert!(!ok("checkpoint", store.update_checkpoint(&stale, &target).await), "stale counter");
    assert_eq!(get(store, "checkpoint").await, lease, "failed checkpoint writes nothing");
    assert!(ok("checkpoint", store.update_checkpoint(&lease, &target).await));
    let expected = Lease {
        counter: 6,
        checkpoint: target.clone(),
        pending_checkpoint: None,
        pending_checkpoint_state: None,
        owner_switches_since_checkpoint: 0,
        ..lease.clone()
    };
    assert_eq!(get(store, "checkpoint").await, expected);
    assert!(ok("checkpoint", store.update_checkpoint(&lease, &target).await), "retry of an applied checkpoint");
    let other = ExtendedSequenceNumber::at(sequence("99"), 0);
    assert!(!ok("checkpoint", store.update_checkpoint(&lease, &other).await), "a different checkpoint at seen+1");
    assert_eq!(get(store, "checkpoint").await, expected);

    let ending = Lease {
        child_shard_ids: BTreeSet::from(["shardId-000000000004".to_owned()]),
        hash_key_range: Some(HashKeyRange { starting: "10".into(), ending: "20".into() }),
        ..expected
    };
    assert!(ok("checkpoint", store.update_checkpoint(&ending, &ExtendedSequenceNumber::shard_end()).await));
    let ended = get(store, "checkpoint").await;
    assert_eq!(ended.checkpoint, ExtendedSequenceNumber::shard_end());
    assert_eq!(ended.child_shard_ids, ending.child_shard_ids, "known child ids are written");
    assert_eq!(ended.hash_key_range, ending.hash_key_range, "known hash range is written");
    assert_eq!(ended.counter, 7);
}

/// Child ids and hash range: only on existing leases, counter untouched.
///
/// # Panics
/// When the store violates the contract.
pub async fn meta_updates<S: LeaseStore + ?Sized>(store: &S) {
    let lease = owned("meta", "w1", 2);
    create(store, &lease).await;
    let children = BTreeSet::from(["shardId-000000000010".to_owned(), "shardId-000000000011".to_owned()]);
    assert!(!ok("children", store.update_child_shard_ids("meta-missing", &children).await), "absent lease");
    assert!(ok("children", store.update_child_shard_ids("meta", &children).await));
    let range = HashKeyRange { starting: "5".into(), ending: "6".into() };
    assert!(!ok("hash range", store.update_hash_key_range("meta-missing", &range).await), "absent lease");
    assert!(ok("hash range", store.update_hash_key_range("meta", &range).await));
    let after = get(store, "meta").await;
    assert_eq!(after, Lease { child_shard_ids: children, hash_key_range: Some(range), ..lease });
    assert_eq!(ok("get", store.get_lease("meta-missing").await), None, "meta updates never create items");
}

/// Delete is unconditional and idempotent.
///
/// # Panics
/// When the store violates the contract.
pub async fn delete<S: LeaseStore + ?Sized>(store: &S) {
    create(store, &owned("delete", "w1", 8)).await;
    ok("delete", store.delete_lease("delete").await);
    assert_eq!(ok("get", store.get_lease("delete").await), None);
    ok("delete missing", store.delete_lease("delete").await);
}

/// The scan returns every lease exactly as `get_lease` does.
///
/// # Panics
/// When the store violates the contract.
pub async fn list<S: LeaseStore + ?Sized>(store: &S) {
    let mut expected = Vec::new();
    for i in 0..7 {
        let lease = Lease {
            checkpoint: ExtendedSequenceNumber::at(sequence(&format!("{i}000")), i),
            ..owned(&format!("list-{i}"), &format!("w{}", i % 3), i)
        };
        create(store, &lease).await;
        expected.push(lease);
    }
    let scan = ok("list", store.list_leases().await);
    assert!(scan.malformed.is_empty(), "no malformed items: {:?}", scan.malformed);
    let mut listed: Vec<Lease> = scan.leases.iter().filter(|l| l.key.starts_with("list-")).cloned().collect();
    listed.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(listed, expected);
    for lease in &scan.leases {
        assert_eq!(&get(store, &lease.key).await, lease, "scan and get agree on {}", lease.key);
    }
}
