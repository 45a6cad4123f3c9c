//! Shard sync: creating leases for the shards of the stream.
//!
//! Initial sync (empty lease table, lease-coordination.md §7.1): ListShards with the
//! ShardFilter matching the initial position, check that the shards cover the whole
//! 128-bit hash-key range (retry otherwise), and create one unowned lease per shard at the
//! initial-position sentinel, oldest first, each with a conditional create. Concurrent
//! workers race harmlessly on that condition, so unlike Java there is no random 1–30 s
//! wait before syncing.

use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use crate::config::InitialPosition;
use crate::lease::{HashKeyRange, Lease, LeaseError, LeaseStore};
use crate::sequence::{ExtendedSequenceNumber, Position};
use crate::stream::shards::{Shard, ShardFilter, ShardLister};
use crate::stream::StreamError;
use crate::telemetry::{self, Event, LeaseOperation};

/// Attempts at getting a complete hash-key range before giving up (Java: 3, 1 s apart).
const COVERAGE_ATTEMPTS: u32 = 3;

/// Shard sync failures.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Listing shards failed.
    #[error(transparent)]
    Stream(#[from] StreamError),
    /// Writing leases failed.
    #[error(transparent)]
    Lease(#[from] LeaseError),
    /// The listed shards do not cover the hash-key range (a reshard in progress?).
    #[error("the shards listed do not cover the whole hash-key range: {0}")]
    Incomplete(String),
    /// Open shards whose parent is also open: the listing raced with a reshard
    /// (set `ignoreUnexpectedChildShards` to skip them instead).
    #[error("open shards with an open parent (listing raced with a reshard?): {}", .0.join(", "))]
    Inconsistent(Vec<String>),
}

/// The lease checkpoint sentinel for an initial position.
#[must_use]
pub fn initial_checkpoint(position: InitialPosition) -> ExtendedSequenceNumber {
    ExtendedSequenceNumber::new(match position {
        InitialPosition::TrimHorizon => Position::TrimHorizon,
        InitialPosition::Latest => Position::Latest,
        InitialPosition::AtTimestamp { .. } => Position::AtTimestamp,
    })
}

fn filter_for(position: InitialPosition) -> ShardFilter {
    match position {
        InitialPosition::TrimHorizon => ShardFilter::AtTrimHorizon,
        InitialPosition::Latest => ShardFilter::AtLatest,
        InitialPosition::AtTimestamp { epoch_millis } => ShardFilter::AtTimestamp(epoch_millis),
    }
}

/// Checks that `shards` cover 0 ..= 2^128-1 without holes. Overlaps are fine.
///
/// # Errors
/// A description of the first hole, or of an unparseable hash key.
pub fn check_coverage(shards: &[Shard]) -> Result<(), String> {
    let mut ranges = Vec::with_capacity(shards.len());
    for shard in shards {
        let parse =
            |s: &str| s.parse::<u128>().map_err(|_| format!("shard {} has an invalid hash key {s:?}", shard.shard_id));
        ranges.push((parse(&shard.hash_key_range.starting)?, parse(&shard.hash_key_range.ending)?));
    }
    ranges.sort_unstable();
    let Some(&(first, _)) = ranges.first() else {
        return Err("no shards".to_owned());
    };
    if first != 0 {
        return Err(format!("no shard starts at hash key 0 (first starts at {first})"));
    }
    let mut covered_to = 0_u128;
    for (start, end) in ranges {
        if start > covered_to.saturating_add(1) {
            return Err(format!("hole between hash keys {covered_to} and {start}"));
        }
        covered_to = covered_to.max(end);
    }
    if covered_to != u128::MAX {
        return Err(format!("no shard reaches the last hash key (coverage ends at {covered_to})"));
    }
    Ok(())
}

/// A new, unowned lease for `shard` at `checkpoint`, with its parents and hash range.
#[must_use]
pub fn lease_for_shard(shard: &Shard, checkpoint: ExtendedSequenceNumber) -> Lease {
    let mut lease = Lease::new(shard.shard_id.clone(), checkpoint);
    lease.parent_shard_ids = shard.parents().map(str::to_owned).collect();
    lease.hash_key_range = Some(HashKeyRange {
        starting: shard.hash_key_range.starting.clone(),
        ending: shard.hash_key_range.ending.clone(),
    });
    lease
}

/// Creates the initial leases of an empty table. Returns how many this call created.
///
/// # Errors
/// Listing or writing failed, or the hash-key range stayed incomplete.
pub async fn initial_sync(
    lister: &Arc<dyn ShardLister>,
    store: &Arc<dyn LeaseStore>,
    position: InitialPosition,
) -> Result<usize, SyncError> {
    let started = std::time::Instant::now();
    let mut attempt = 0;
    let mut shards = loop {
        attempt += 1;
        let shards = lister.list_shards(filter_for(position)).await?;
        match check_coverage(&shards) {
            Ok(()) => break shards,
            Err(hole) if attempt < COVERAGE_ATTEMPTS => {
                warn!(%hole, attempt, "incomplete shard list; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(hole) => return Err(SyncError::Incomplete(hole)),
        }
    };
    shards.sort_by(|a, b| {
        a.starting_sequence_number.cmp(&b.starting_sequence_number).then_with(|| a.shard_id.cmp(&b.shard_id))
    });
    let checkpoint = initial_checkpoint(position);
    let mut created = 0;
    for shard in &shards {
        if create_lease(store, &lease_for_shard(shard, checkpoint.clone()), position).await? {
            created += 1;
        }
    }
    telemetry::record(Event::ShardSync { created, duration: started.elapsed(), success: true });
    info!(shards = shards.len(), created, checkpoint = %checkpoint, "initial shard sync done");
    Ok(created)
}

/// `create_lease_if_absent`, recorded as the KCL's `CreateLease` (telemetry).
pub(crate) async fn create_lease(
    store: &Arc<dyn LeaseStore>,
    lease: &Lease,
    position: InitialPosition,
) -> Result<bool, LeaseError> {
    let started = std::time::Instant::now();
    let result = store.create_lease_if_absent(lease).await;
    let initial_position = match position {
        InitialPosition::TrimHorizon => "TRIM_HORIZON",
        InitialPosition::Latest => "LATEST",
        InitialPosition::AtTimestamp { .. } => "AT_TIMESTAMP",
    };
    telemetry::record(Event::LeaseCall {
        op: LeaseOperation::Create { initial_position },
        shard_id: Some(&lease.key),
        duration: started.elapsed(),
        success: result.is_ok(),
    });
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sequence::SequenceNumber;

    fn shard(id: &str, start: u128, end: u128) -> Shard {
        Shard {
            shard_id: id.to_owned(),
            parent_shard_id: None,
            adjacent_parent_shard_id: None,
            hash_key_range: HashKeyRange { starting: start.to_string(), ending: end.to_string() },
            starting_sequence_number: SequenceNumber::parse("1").unwrap(),
            ending_sequence_number: None,
        }
    }

    #[test]
    fn coverage_accepts_complete_and_overlapping_ranges() {
        let half = u128::MAX / 2;
        assert!(check_coverage(&[shard("a", 0, half), shard("b", half + 1, u128::MAX)]).is_ok());
        assert!(check_coverage(&[shard("p", 0, u128::MAX), shard("c", 0, half)]).is_ok());
    }

    #[test]
    fn coverage_reports_holes() {
        let half = u128::MAX / 2;
        assert!(check_coverage(&[]).is_err());
        assert!(check_coverage(&[shard("a", 0, half)]).is_err());
        assert!(check_coverage(&[shard("a", 1, u128::MAX)]).is_err());
        assert!(check_coverage(&[shard("a", 0, half), shard("b", half + 2, u128::MAX)]).is_err());
    }
}
