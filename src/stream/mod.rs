//! Reading shards: the [`ShardReader`] seam and its Kinesis implementations.
//!
//! A shard consumer asks its reader for the next [`RecordBatch`]; the reader hides how
//! records are fetched (polling GetRecords in [`polling`], SubscribeToShard in [`fanout`]), retries
//! and backs off on throttling and transient errors, recreates expired iterators, and marks
//! the end of a closed shard with its child shards. Records come out deaggregated (KPL) and
//! already filtered: nothing at or below the starting checkpoint is returned.
//!
//! [`memory`] holds an in-memory reader for tests; [`shards`] lists shards (ListShards with
//! paging and ShardFilter) for shard sync. Shared by the retrieval modes: [`kinesis`] (SDK
//! mapping), [`kpl`] (deaggregation), [`filter`] (checkpoint filtering), [`errors`] (error
//! classification); delays come from [`crate::backoff`].

pub mod errors;
#[cfg(test)]
pub(crate) mod fake_kinesis;
pub mod fanout;
pub mod filter;
pub mod kinesis;
pub mod kpl;
#[cfg(any(test, feature = "test-support"))]
pub mod memory;
pub mod polling;
pub mod shards;

use async_trait::async_trait;

pub use crate::model::{HashKeyRange, Record};
use crate::sequence::ExtendedSequenceNumber;

/// A child shard reported at the end of a closed shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildShard {
    /// The child's shard id.
    pub shard_id: String,
    /// Its parents (1 for a split, 2 for a merge).
    pub parent_shards: Vec<String>,
    /// Its hash-key range.
    pub hash_key_range: HashKeyRange,
}

/// What one read produced.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecordBatch {
    /// Records in shard order (may be empty).
    pub records: Vec<Record>,
    /// `MillisBehindLatest` from the service, if it sent one.
    pub millis_behind_latest: Option<i64>,
    /// `Some` when the shard is closed and this batch holds its last records. The vector
    /// is empty when the shard ended without children (e.g. stream deleted).
    pub shard_end: Option<Vec<ChildShard>>,
    /// Bytes of record payload in this batch (for metrics).
    pub payload_bytes: usize,
}

/// Where a reader starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartingPosition {
    /// `TRIM_HORIZON`.
    TrimHorizon,
    /// `LATEST`.
    Latest,
    /// `AT_TIMESTAMP` at this many epoch milliseconds.
    AtTimestamp(i64),
    /// Resume after a checkpoint: the reader fetches `AT_SEQUENCE_NUMBER` and drops every
    /// (deaggregated) record whose extended sequence number is `<=` the checkpoint, so a
    /// checkpoint inside a KPL aggregate resumes with the next user record.
    AfterCheckpoint(ExtendedSequenceNumber),
}

/// Errors a reader could not handle itself.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The stream or shard does not exist.
    #[error("shard {shard_id}: not found: {message}")]
    NotFound {
        /// The shard.
        shard_id: String,
        /// Service message.
        message: String,
    },
    /// Retries exhausted or a non-retryable failure.
    #[error("shard {shard_id}: {operation} failed: {message}")]
    Dependency {
        /// The shard ("" for stream-level calls).
        shard_id: String,
        /// The operation, e.g. `GetRecords`.
        operation: &'static str,
        /// The SDK error chain, flattened.
        message: String,
    },
    /// The reader was cancelled (shutdown).
    #[error("shard {shard_id}: cancelled")]
    Cancelled {
        /// The shard.
        shard_id: String,
    },
}

/// Reads one shard from a starting position, one batch at a time.
#[async_trait]
pub trait ShardReader: Send {
    /// The next batch. Blocks as long as the retrieval mode requires (e.g. polling waits
    /// `idleTimeBetweenReadsInMillis` between calls). An empty batch is returned when the
    /// shard had nothing new, so callers can deliver empty batches if configured to.
    /// After a batch with `shard_end: Some(..)` the reader must not be polled again.
    async fn next_batch(&mut self) -> Result<RecordBatch, StreamError>;
}

/// Opens readers for shards of the configured stream.
#[async_trait]
pub trait ShardReaderFactory: Send + Sync + 'static {
    /// Opens a reader on `shard_id` at `start`.
    async fn open(&self, shard_id: &str, start: StartingPosition) -> Result<Box<dyn ShardReader>, StreamError>;
}
