//! Listing the shards of a stream (ListShards with paging and ShardFilter).

use async_trait::async_trait;

use super::StreamError;
use crate::lease::HashKeyRange;
use crate::sequence::SequenceNumber;

/// A shard as ListShards describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    /// The shard id.
    pub shard_id: String,
    /// `ParentShardId`, if any.
    pub parent_shard_id: Option<String>,
    /// `AdjacentParentShardId` (merges), if any.
    pub adjacent_parent_shard_id: Option<String>,
    /// Its hash-key range.
    pub hash_key_range: HashKeyRange,
    /// `SequenceNumberRange.StartingSequenceNumber`.
    pub starting_sequence_number: SequenceNumber,
    /// `SequenceNumberRange.EndingSequenceNumber`; `Some` when the shard is closed.
    pub ending_sequence_number: Option<SequenceNumber>,
}

impl Shard {
    /// True once the shard is closed (it has an ending sequence number).
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.ending_sequence_number.is_some()
    }

    /// The parent ids (parent and adjacent parent) that are set.
    pub fn parents(&self) -> impl Iterator<Item = &str> {
        self.parent_shard_id.iter().chain(self.adjacent_parent_shard_id.iter()).map(String::as_str)
    }
}

/// The ShardFilter passed to ListShards on the first page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardFilter {
    /// No filter: every shard in the retention window.
    All,
    /// `AT_TRIM_HORIZON`.
    AtTrimHorizon,
    /// `AT_LATEST`.
    AtLatest,
    /// `AT_TIMESTAMP` at epoch milliseconds.
    AtTimestamp(i64),
}

/// Lists the shards of the configured stream.
#[async_trait]
pub trait ShardLister: Send + Sync + 'static {
    /// Every shard matching `filter`, following NextToken pages.
    async fn list_shards(&self, filter: ShardFilter) -> Result<Vec<Shard>, StreamError>;
}
