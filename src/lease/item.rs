//! The [`Lease`] model and its table item format, with no dependency on the AWS SDK.
//!
//! [`decode_lease`] turns the attributes of one lease-table item into a [`Lease`]; it sees
//! the item only through a lookup function returning borrowed [`Attr`] views, so the
//! DynamoDB store ([`super::dynamodb::lease_from_item`]), tests and the fuzz targets
//! (`fuzz/`) all run the same decoder. This module depends on nothing in the crate but
//! [`crate::model`] and [`crate::sequence`].

use std::collections::BTreeSet;

use crate::model::HashKeyRange;
use crate::sequence::{ExtendedSequenceNumber, Position};

/// Attribute names, exactly as the Java KCL writes them.
pub mod attr {
    /// `leaseKey` (S), the table's partition key.
    pub const LEASE_KEY: &str = "leaseKey";
    /// `leaseOwner` (S).
    pub const LEASE_OWNER: &str = "leaseOwner";
    /// `leaseCounter` (N).
    pub const LEASE_COUNTER: &str = "leaseCounter";
    /// `checkpoint` (S).
    pub const CHECKPOINT: &str = "checkpoint";
    /// `checkpointSubSequenceNumber` (N).
    pub const CHECKPOINT_SUB_SEQUENCE: &str = "checkpointSubSequenceNumber";
    /// `pendingCheckpoint` (S).
    pub const PENDING_CHECKPOINT: &str = "pendingCheckpoint";
    /// `pendingCheckpointSubSequenceNumber` (N).
    pub const PENDING_CHECKPOINT_SUB_SEQUENCE: &str = "pendingCheckpointSubSequenceNumber";
    /// `pendingCheckpointState` (B).
    pub const PENDING_CHECKPOINT_STATE: &str = "pendingCheckpointState";
    /// `ownerSwitchesSinceCheckpoint` (N).
    pub const OWNER_SWITCHES: &str = "ownerSwitchesSinceCheckpoint";
    /// `parentShardId` (SS; singular name).
    pub const PARENT_SHARD_IDS: &str = "parentShardId";
    /// `childShardIds` (SS).
    pub const CHILD_SHARD_IDS: &str = "childShardIds";
    /// `startingHashKey` (S).
    pub const STARTING_HASH_KEY: &str = "startingHashKey";
    /// `endingHashKey` (S).
    pub const ENDING_HASH_KEY: &str = "endingHashKey";
    /// `checkpointOwner` (S, KCL 3.x hand-off).
    pub const CHECKPOINT_OWNER: &str = "checkpointOwner";
    /// `entityType` (S, KCL 3.5 single-table format).
    pub const ENTITY_TYPE: &str = "entityType";
    /// `key` (S): partition key of `<app>-CoordinatorState`.
    pub const COORDINATOR_KEY: &str = "key";
    /// `cv` (S): client version in the `Migration3.0` item.
    pub const CLIENT_VERSION: &str = "cv";
}

/// The `entityType` value of lease items.
pub const ENTITY_TYPE_LEASE: &str = "LEASE";

/// One lease item (KCL 2.x format; 3.x-only attributes are kept where the protocol needs them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// `leaseKey` (S): the shard id.
    pub key: String,
    /// `leaseOwner` (S): worker id of the holder; absent when unassigned.
    pub owner: Option<String>,
    /// `leaseCounter` (N): optimistic-lock counter.
    pub counter: u64,
    /// `checkpoint` (S) + `checkpointSubSequenceNumber` (N).
    pub checkpoint: ExtendedSequenceNumber,
    /// `pendingCheckpoint` (S) + `pendingCheckpointSubSequenceNumber` (N), if present.
    pub pending_checkpoint: Option<ExtendedSequenceNumber>,
    /// `pendingCheckpointState` (B), if present.
    pub pending_checkpoint_state: Option<Vec<u8>>,
    /// `ownerSwitchesSinceCheckpoint` (N).
    pub owner_switches_since_checkpoint: u64,
    /// `parentShardId` (SS); empty set = attribute absent.
    pub parent_shard_ids: BTreeSet<String>,
    /// `childShardIds` (SS); empty set = attribute absent.
    pub child_shard_ids: BTreeSet<String>,
    /// `startingHashKey` / `endingHashKey` (S), if present.
    pub hash_key_range: Option<HashKeyRange>,
    /// `checkpointOwner` (S, KCL 3.x graceful hand-off), if present.
    pub checkpoint_owner: Option<String>,
}

impl Lease {
    /// A new, unowned lease at `checkpoint` with counter 0 (what shard sync creates).
    #[must_use]
    pub fn new(key: impl Into<String>, checkpoint: ExtendedSequenceNumber) -> Self {
        Self {
            key: key.into(),
            owner: None,
            counter: 0,
            checkpoint,
            pending_checkpoint: None,
            pending_checkpoint_state: None,
            owner_switches_since_checkpoint: 0,
            parent_shard_ids: BTreeSet::new(),
            child_shard_ids: BTreeSet::new(),
            hash_key_range: None,
            checkpoint_owner: None,
        }
    }
}

/// One attribute value of an item, borrowed from whatever holds the item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attr<'a> {
    /// `S`.
    S(&'a str),
    /// `N` (the number's text as stored).
    N(&'a str),
    /// `B`.
    B(&'a [u8]),
    /// `SS`.
    Ss(&'a [String]),
    /// `NULL`.
    Null,
    /// Any other type (`BOOL`, `L`, `M`, `NS`, `BS`, ...), by its DynamoDB type name.
    Other(&'static str),
}

/// Why an item is not a valid lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    /// The item's `leaseKey` if it is a string, else a description of what is there.
    pub key: String,
    /// The first problem found.
    pub reason: String,
}

/// Reads a lease item whose attributes `get` returns by name. `Ok(None)` for non-lease
/// items (`entityType` present and not `LEASE`).
///
/// # Errors
/// [`Malformed`] when a lease attribute is missing or has the wrong type or value.
pub fn decode_lease<'a>(get: impl Fn(&str) -> Option<Attr<'a>>) -> Result<Option<Lease>, Malformed> {
    let key = match get(attr::LEASE_KEY) {
        Some(Attr::S(key)) => key.to_owned(),
        other => format!("{other:?}"),
    };
    let reader = Reader { get };
    let malformed = |reason: String| Malformed { key: key.clone(), reason };
    match reader.string(attr::ENTITY_TYPE).map_err(malformed)? {
        Some(entity) if entity != ENTITY_TYPE_LEASE => return Ok(None),
        _ => {}
    }
    parse_lease(&reader, &key).map(Some).map_err(malformed)
}

fn parse_lease<'a, F: Fn(&str) -> Option<Attr<'a>>>(r: &Reader<F>, key: &str) -> Result<Lease, String> {
    if r.string(attr::LEASE_KEY)?.is_none() {
        return Err("missing leaseKey".to_owned());
    }
    let counter = r.number(attr::LEASE_COUNTER)?.ok_or("missing leaseCounter")?;
    let position = r.string(attr::CHECKPOINT)?.ok_or("missing checkpoint")?;
    let checkpoint = ExtendedSequenceNumber {
        position: parse_position(attr::CHECKPOINT, position)?,
        sub_sequence: r.number(attr::CHECKPOINT_SUB_SEQUENCE)?.unwrap_or(0),
    };
    let pending_checkpoint = match r.string(attr::PENDING_CHECKPOINT)? {
        Some(text) => Some(ExtendedSequenceNumber {
            position: parse_position(attr::PENDING_CHECKPOINT, text)?,
            sub_sequence: r.number(attr::PENDING_CHECKPOINT_SUB_SEQUENCE)?.unwrap_or(0),
        }),
        None => None,
    };
    let hash_key_range = match (r.string(attr::STARTING_HASH_KEY)?, r.string(attr::ENDING_HASH_KEY)?) {
        (Some(starting), Some(ending)) if !starting.is_empty() && !ending.is_empty() => {
            Some(HashKeyRange { starting: starting.to_owned(), ending: ending.to_owned() })
        }
        _ => None,
    };
    Ok(Lease {
        key: key.to_owned(),
        owner: r.string(attr::LEASE_OWNER)?.map(str::to_owned),
        counter,
        checkpoint,
        pending_checkpoint,
        pending_checkpoint_state: r.binary(attr::PENDING_CHECKPOINT_STATE)?.map(<[u8]>::to_vec),
        owner_switches_since_checkpoint: r.number(attr::OWNER_SWITCHES)?.unwrap_or(0),
        parent_shard_ids: r.string_set(attr::PARENT_SHARD_IDS)?,
        child_shard_ids: r.string_set(attr::CHILD_SHARD_IDS)?,
        hash_key_range,
        checkpoint_owner: r.string(attr::CHECKPOINT_OWNER)?.map(str::to_owned),
    })
}

fn parse_position(name: &str, text: &str) -> Result<Position, String> {
    Position::parse(text).ok_or_else(|| format!("{name} {text:?} is neither a sequence number nor a sentinel"))
}

/// Typed, optional attribute access with "wrong type" errors.
struct Reader<F> {
    get: F,
}

impl<'a, F: Fn(&str) -> Option<Attr<'a>>> Reader<F> {
    fn string(&self, name: &str) -> Result<Option<&'a str>, String> {
        match (self.get)(name) {
            None | Some(Attr::Null) => Ok(None),
            Some(Attr::S(s)) => Ok(Some(s)),
            Some(other) => Err(format!("{name} must be S, found {other:?}")),
        }
    }

    fn number(&self, name: &str) -> Result<Option<u64>, String> {
        match (self.get)(name) {
            None | Some(Attr::Null) => Ok(None),
            Some(Attr::N(n)) => {
                n.trim().parse::<u64>().map(Some).map_err(|_| format!("{name} {n:?} is not a non-negative integer"))
            }
            Some(other) => Err(format!("{name} must be N, found {other:?}")),
        }
    }

    fn string_set(&self, name: &str) -> Result<BTreeSet<String>, String> {
        match (self.get)(name) {
            None | Some(Attr::Null) => Ok(BTreeSet::new()),
            Some(Attr::Ss(values)) => Ok(values.iter().cloned().collect()),
            Some(other) => Err(format!("{name} must be SS, found {other:?}")),
        }
    }

    fn binary(&self, name: &str) -> Result<Option<&'a [u8]>, String> {
        match (self.get)(name) {
            None | Some(Attr::Null) => Ok(None),
            Some(Attr::B(bytes)) => Ok(Some(bytes)),
            Some(other) => Err(format!("{name} must be B, found {other:?}")),
        }
    }
}
