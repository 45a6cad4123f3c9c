//! Shard sync on a non-empty lease table (lease-coordination.md §7.2), as the Java KCL's
//! `HierarchicalShardSyncer` with its non-empty-table synchronizer does it, so a multilangd
//! worker creates exactly the leases a Java worker would.
//!
//! ListShards without a filter lists every shard in the retention window. Then:
//! - an **open shard whose parent is also open** is inconsistent (a listing raced with a
//!   reshard): the sync fails, unless `ignoreUnexpectedChildShards`, in which case that
//!   shard is skipped;
//! - every open shard without a lease has its ancestry walked (memoised). A shard is a
//!   *descendant* when it or an ancestor has a lease, or when an ancestor must get a lease
//!   because the initial position is `TRIM_HORIZON`/`AT_TIMESTAMP`. For a descendant, the
//!   immediate parents that have no lease get one (at `TRIM_HORIZON`, or `AT_TIMESTAMP`
//!   for that initial position, when the parent is itself a descendant; at the initial
//!   position otherwise); the descendant itself does not: its lease is created when its
//!   parents reach `SHARD_END`. A non-descendant open shard gets a lease at the initial
//!   position;
//! - the new leases are created oldest first (starting sequence number, then shard id),
//!   each with a conditional create, so concurrent syncs by several workers are harmless.
//!
//! With shards 0–5; 6 = merge(0, 1), 7 = merge(2, 3); 8 = merge(6, 7), 9 and 10 = split(5);
//! and leases for {4, 5, 7}, the sync creates {6} for `LATEST` and {0, 1} for
//! `TRIM_HORIZON` and `AT_TIMESTAMP` (the example in the Java source, tested below).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use tracing::{info, warn};

use super::sync::{initial_checkpoint, initial_sync, lease_for_shard, SyncError};
use crate::config::InitialPosition;
use crate::lease::{Lease, LeaseStore};
use crate::sequence::{ExtendedSequenceNumber, Position};
use crate::stream::shards::{Shard, ShardFilter, ShardLister};

/// Open shards (and any other listed shards) whose parent or adjacent parent is listed and
/// still open: the signature of a listing that raced with a reshard.
#[must_use]
pub fn inconsistent_shards(shards: &[Shard]) -> BTreeSet<String> {
    let by_id: HashMap<&str, &Shard> = shards.iter().map(|s| (s.shard_id.as_str(), s)).collect();
    shards
        .iter()
        .filter(|shard| shard.parents().any(|p| by_id.get(p).is_some_and(|parent| !parent.is_closed())))
        .map(|shard| shard.shard_id.clone())
        .collect()
}

/// The leases a sync of a non-empty table creates, oldest first.
///
/// `existing` holds the keys of every lease in the table (whatever its checkpoint).
///
/// # Errors
/// [`SyncError::Inconsistent`] when an open shard has an open parent and
/// `ignore_unexpected_child_shards` is false.
pub fn leases_to_create(
    shards: &[Shard],
    existing: &HashSet<&str>,
    position: InitialPosition,
    ignore_unexpected_child_shards: bool,
) -> Result<Vec<Lease>, SyncError> {
    let inconsistent = inconsistent_shards(shards);
    if !inconsistent.is_empty() && !ignore_unexpected_child_shards {
        return Err(SyncError::Inconsistent(inconsistent.into_iter().collect()));
    }
    let mut walk = Walk::new(shards, existing, position);
    for shard in shards.iter().filter(|s| !s.is_closed()) {
        let id = shard.shard_id.as_str();
        if existing.contains(id) {
            continue;
        }
        if inconsistent.contains(id) {
            info!(shard_id = id, "skipping an open shard whose parent is open (ignoreUnexpectedChildShards)");
            continue;
        }
        if !walk.is_descendant(id) {
            walk.new.insert(id, lease_for_shard(shard, initial_checkpoint(position)));
        }
    }
    let starts: HashMap<&str, &Shard> = shards.iter().map(|s| (s.shard_id.as_str(), s)).collect();
    let mut leases: Vec<Lease> = walk.new.into_values().collect();
    leases.sort_by(|a, b| {
        let start = |l: &Lease| starts.get(l.key.as_str()).map(|s| s.starting_sequence_number.clone());
        start(a).cmp(&start(b)).then_with(|| a.key.cmp(&b.key))
    });
    Ok(leases)
}

/// The ancestry walk of one sync (Java's `checkIfDescendantAndAddNewLeasesForAncestors`
/// with its memoisation context).
struct Walk<'a> {
    by_id: HashMap<&'a str, &'a Shard>,
    existing: &'a HashSet<&'a str>,
    position: InitialPosition,
    descendant: HashMap<&'a str, bool>,
    should_create: HashSet<&'a str>,
    new: HashMap<&'a str, Lease>,
}

impl<'a> Walk<'a> {
    fn new(shards: &'a [Shard], existing: &'a HashSet<&'a str>, position: InitialPosition) -> Self {
        Self {
            by_id: shards.iter().map(|s| (s.shard_id.as_str(), s)).collect(),
            existing,
            position,
            descendant: HashMap::new(),
            should_create: HashSet::new(),
            new: HashMap::new(),
        }
    }

    fn processes_history(&self) -> bool {
        matches!(self.position, InitialPosition::TrimHorizon | InitialPosition::AtTimestamp { .. })
    }

    /// Whether `id` is a descendant of a shard that has (or gets) a lease; creates leases
    /// for the parents of descendants on the way.
    fn is_descendant(&mut self, id: &'a str) -> bool {
        if let Some(&known) = self.descendant.get(id) {
            return known;
        }
        let Some(shard) = self.by_id.get(id).copied() else {
            // Not listed (expired): not a descendant of anything we know.
            self.descendant.insert(id, false);
            return false;
        };
        if self.existing.contains(id) {
            self.descendant.insert(id, true);
            return true;
        }
        // Provisional answer: a malformed listing with a parent cycle cannot recurse forever.
        self.descendant.insert(id, false);
        let mut parents: Vec<&'a str> = shard.parents().filter(|p| self.by_id.contains_key(p)).collect();
        parents.dedup();
        let mut descendant_parents = HashSet::new();
        for &parent in &parents {
            if self.is_descendant(parent) || self.should_create.contains(parent) {
                descendant_parents.insert(parent);
            }
        }
        let is_descendant = !descendant_parents.is_empty();
        if is_descendant {
            for &parent in &parents {
                self.add_parent_lease(parent, descendant_parents.contains(parent));
            }
        } else if self.processes_history() {
            self.should_create.insert(id);
        }
        self.descendant.insert(id, is_descendant);
        is_descendant
    }

    /// The lease of `parent` of a descendant, if it has none: created when the parent was
    /// marked for creation (history is processed) or is not itself a descendant.
    fn add_parent_lease(&mut self, parent: &'a str, parent_is_descendant: bool) {
        if self.existing.contains(parent) {
            return;
        }
        if !self.new.contains_key(parent) && (self.should_create.contains(parent) || !parent_is_descendant) {
            if let Some(shard) = self.by_id.get(parent) {
                self.new.insert(parent, lease_for_shard(shard, initial_checkpoint(self.position)));
            }
        }
        let at_timestamp = matches!(self.position, InitialPosition::AtTimestamp { .. });
        let checkpoint = if parent_is_descendant && !at_timestamp {
            ExtendedSequenceNumber::new(Position::TrimHorizon)
        } else {
            initial_checkpoint(self.position)
        };
        if let Some(lease) = self.new.get_mut(parent) {
            lease.checkpoint = checkpoint;
        }
    }
}

/// Shard sync of a non-empty table whose leases are `leases` (a fresh scan): lists every
/// shard and creates the missing leases ([`leases_to_create`]). Returns the keys this call
/// created (a conditional create that lost a race to another worker is not counted).
///
/// # Errors
/// Listing or writing failed, or the listing was inconsistent (see [`leases_to_create`]).
pub async fn non_empty_sync(
    lister: &Arc<dyn ShardLister>,
    store: &Arc<dyn LeaseStore>,
    position: InitialPosition,
    ignore_unexpected_child_shards: bool,
    leases: &[Lease],
) -> Result<Vec<String>, SyncError> {
    let shards = lister.list_shards(ShardFilter::All).await?;
    if shards.is_empty() {
        warn!("shard sync skipped: ListShards returned no shards");
        return Ok(Vec::new());
    }
    let existing: HashSet<&str> = leases.iter().map(|l| l.key.as_str()).collect();
    let to_create = leases_to_create(&shards, &existing, position, ignore_unexpected_child_shards)?;
    let mut created = Vec::new();
    for lease in &to_create {
        if super::sync::create_lease(store, lease, position).await? {
            info!(lease = %lease.key, checkpoint = %lease.checkpoint, parents = ?lease.parent_shard_ids, "shard sync created lease");
            created.push(lease.key.clone());
        }
    }
    info!(shards = shards.len(), leases = leases.len(), created = ?created, "shard sync done (non-empty lease table)");
    Ok(created)
}

/// A full shard sync as Java's `ShardSyncTask` runs it: scans the table, then runs the
/// empty-table sync ([`initial_sync`]) or the non-empty one ([`non_empty_sync`]). Returns
/// how many leases this call created.
///
/// # Errors
/// Scanning, listing or writing failed, or the listing was incomplete or inconsistent.
pub async fn shard_sync(
    lister: &Arc<dyn ShardLister>,
    store: &Arc<dyn LeaseStore>,
    position: InitialPosition,
    ignore_unexpected_child_shards: bool,
) -> Result<usize, SyncError> {
    let scan = store.list_leases().await?;
    if scan.leases.is_empty() {
        return initial_sync(lister, store, position).await;
    }
    let created = non_empty_sync(lister, store, position, ignore_unexpected_child_shards, &scan.leases).await?;
    Ok(created.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::memory::InMemoryLeaseStore;
    use crate::lease::HashKeyRange;
    use crate::sequence::SequenceNumber;
    use crate::stream::memory::InMemoryStream;

    /// The Java source's example: shards 0–5; 6 = merge(0, 1), 7 = merge(2, 3);
    /// 8 = merge(6, 7), 9 and 10 = split(5).
    fn example_stream() -> InMemoryStream {
        let stream = InMemoryStream::with_shards(6);
        let id = |n: u32| format!("shardId-{n:012}");
        assert_eq!(stream.merge_shards(&id(0), &id(1)).shard_id, id(6));
        assert_eq!(stream.merge_shards(&id(2), &id(3)).shard_id, id(7));
        assert_eq!(stream.merge_shards(&id(6), &id(7)).shard_id, id(8));
        let [low, high] = stream.split_shard(&id(5));
        assert_eq!((low.shard_id, high.shard_id), (id(9), id(10)));
        stream
    }

    fn id(n: u32) -> String {
        format!("shardId-{n:012}")
    }

    fn example_table() -> InMemoryLeaseStore {
        let store = InMemoryLeaseStore::new("app");
        for n in [4, 5, 7] {
            store.put(Lease::new(id(n), ExtendedSequenceNumber::new(Position::TrimHorizon)));
        }
        store
    }

    async fn sync(position: InitialPosition) -> (Vec<String>, InMemoryLeaseStore, InMemoryStream) {
        let stream = example_stream();
        let store = example_table();
        let lister: Arc<dyn ShardLister> = Arc::new(stream.clone());
        let leases: Arc<dyn LeaseStore> = Arc::new(store.clone());
        let created = shard_sync(&lister, &leases, position, false).await.unwrap();
        let table = store.list_leases().await.unwrap();
        let mut new: Vec<String> =
            table.leases.iter().map(|l| l.key.clone()).filter(|k| ![id(4), id(5), id(7)].contains(k)).collect();
        new.sort();
        assert_eq!(created, new.len());
        (new, store, stream)
    }

    #[tokio::test]
    async fn worked_example_latest_creates_6_at_latest() {
        let (created, store, stream) = sync(InitialPosition::Latest).await;
        assert_eq!(created, [id(6)]);
        let lease = store.lease(&id(6)).unwrap();
        assert_eq!(lease.checkpoint.position, Position::Latest);
        assert_eq!(lease.parent_shard_ids, [id(0), id(1)].into_iter().collect());
        let shard6 = stream.shards().into_iter().find(|s| s.shard_id == id(6)).unwrap();
        assert_eq!(lease.hash_key_range, Some(shard6.hash_key_range));
        assert_eq!((lease.owner, lease.counter), (None, 0));
    }

    #[tokio::test]
    async fn worked_example_trim_horizon_creates_0_and_1_at_trim_horizon() {
        let (created, store, _) = sync(InitialPosition::TrimHorizon).await;
        assert_eq!(created, [id(0), id(1)]);
        for n in [0, 1] {
            let lease = store.lease(&id(n)).unwrap();
            assert_eq!(lease.checkpoint.position, Position::TrimHorizon);
            assert!(lease.parent_shard_ids.is_empty());
            assert!(lease.hash_key_range.is_some());
        }
    }

    #[tokio::test]
    async fn worked_example_at_timestamp_creates_0_and_1_at_at_timestamp() {
        let (created, store, _) = sync(InitialPosition::AtTimestamp { epoch_millis: 200 }).await;
        assert_eq!(created, [id(0), id(1)]);
        for n in [0, 1] {
            assert_eq!(store.lease(&id(n)).unwrap().checkpoint.position, Position::AtTimestamp);
        }
    }

    #[tokio::test]
    async fn leases_are_created_oldest_first() {
        let stream = example_stream();
        let shards = stream.shards();
        let existing: HashSet<&str> = HashSet::new();
        // An empty "existing" set on the non-empty algorithm: every open shard's lineage.
        let leases = leases_to_create(&shards, &existing, InitialPosition::TrimHorizon, false).unwrap();
        let keys: Vec<&str> = leases.iter().map(|l| l.key.as_str()).collect();
        // Roots 0–5 get leases at TRIM_HORIZON (4 is open and not a descendant).
        assert_eq!(keys, [id(0), id(1), id(2), id(3), id(4), id(5)]);
        let starts: Vec<SequenceNumber> = leases
            .iter()
            .map(|l| shards.iter().find(|s| s.shard_id == l.key).unwrap().starting_sequence_number.clone())
            .collect();
        assert!(starts.windows(2).all(|w| w[0] <= w[1]));
    }

    #[tokio::test]
    async fn a_complete_table_creates_nothing() {
        let stream = example_stream();
        let store = InMemoryLeaseStore::new("app");
        for n in [4, 8, 9, 10] {
            store.put(Lease::new(id(n), ExtendedSequenceNumber::new(Position::TrimHorizon)));
        }
        let lister: Arc<dyn ShardLister> = Arc::new(stream);
        let leases: Arc<dyn LeaseStore> = Arc::new(store.clone());
        for position in [InitialPosition::TrimHorizon, InitialPosition::Latest] {
            assert_eq!(shard_sync(&lister, &leases, position, false).await.unwrap(), 0);
        }
        assert_eq!(store.list_leases().await.unwrap().leases.len(), 4);
    }

    #[tokio::test]
    async fn an_empty_table_gets_the_initial_sync() {
        let stream = example_stream();
        let store = InMemoryLeaseStore::new("app");
        let lister: Arc<dyn ShardLister> = Arc::new(stream);
        let leases: Arc<dyn LeaseStore> = Arc::new(store.clone());
        // LATEST on an empty table: the open shards only (ShardFilter AT_LATEST).
        assert_eq!(shard_sync(&lister, &leases, InitialPosition::Latest, false).await.unwrap(), 4);
        let mut keys: Vec<String> = store.list_leases().await.unwrap().leases.into_iter().map(|l| l.key).collect();
        keys.sort();
        assert_eq!(keys, [id(4), id(8), id(9), id(10)]);
    }

    fn shard(id: &str, parents: &[&str], closed: bool, seq: &str) -> Shard {
        Shard {
            shard_id: id.to_owned(),
            parent_shard_id: parents.first().map(|p| (*p).to_owned()),
            adjacent_parent_shard_id: parents.get(1).map(|p| (*p).to_owned()),
            hash_key_range: HashKeyRange { starting: "0".into(), ending: u128::MAX.to_string() },
            starting_sequence_number: SequenceNumber::parse(seq).unwrap(),
            ending_sequence_number: closed.then(|| SequenceNumber::parse("999").unwrap()),
        }
    }

    #[test]
    fn an_open_child_of_an_open_parent_fails_the_sync_unless_ignored() {
        let shards = [shard("p", &[], false, "1"), shard("c", &["p"], false, "2"), shard("q", &[], false, "3")];
        let existing: HashSet<&str> = ["p"].into_iter().collect();
        match leases_to_create(&shards, &existing, InitialPosition::Latest, false) {
            Err(SyncError::Inconsistent(ids)) => assert_eq!(ids, ["c"]),
            other => panic!("expected an inconsistency, got {other:?}"),
        }
        let leases = leases_to_create(&shards, &existing, InitialPosition::Latest, true).unwrap();
        assert_eq!(leases.iter().map(|l| l.key.as_str()).collect::<Vec<_>>(), ["q"], "c is skipped");
    }

    #[test]
    fn a_parent_cycle_in_a_malformed_listing_terminates() {
        let shards = [shard("a", &["b"], false, "1"), shard("b", &["a"], true, "2")];
        let leases = leases_to_create(&shards, &HashSet::new(), InitialPosition::TrimHorizon, true).unwrap();
        assert!(leases.len() <= 2);
    }

    #[test]
    fn expired_parents_are_ignored_and_latest_merge_gets_both_parents() {
        // "x" expired (not listed): "a" is a root for the walk. Merge m = (a, b) where only
        // b's lineage has a lease: with LATEST both parents get leases, a at LATEST (not a
        // descendant) and b is not created (it has a lease).
        let shards = [shard("a", &["x"], true, "1"), shard("b", &[], true, "2"), shard("m", &["a", "b"], false, "3")];
        let existing: HashSet<&str> = ["b"].into_iter().collect();
        let leases = leases_to_create(&shards, &existing, InitialPosition::Latest, false).unwrap();
        assert_eq!(leases.len(), 1);
        assert_eq!(leases[0].key, "a");
        assert_eq!(leases[0].checkpoint.position, Position::Latest);
        assert_eq!(leases[0].parent_shard_ids, ["x".to_owned()].into_iter().collect(), "parents kept even if expired");
        let leases = leases_to_create(&shards, &existing, InitialPosition::TrimHorizon, false).unwrap();
        assert_eq!(leases[0].key, "a");
        assert_eq!(leases[0].checkpoint.position, Position::TrimHorizon);
    }
}
