//! TEMPORARY (lead): placeholder for the protocol helper's session; replaced at merge.
use crate::sequence::ExtendedSequenceNumber;
use crate::stream::Record;

/// An action sent to the child.
#[derive(Debug, Clone, Copy)]
pub enum Action<'a> {
    /// initialize
    Initialize {
        /// shard
        shard_id: &'a str,
        /// checkpoint
        checkpoint: &'a ExtendedSequenceNumber,
    },
    /// processRecords
    ProcessRecords {
        /// records
        records: &'a [Record],
        /// lag
        millis_behind_latest: Option<i64>,
    },
    /// shutdownRequested
    ShutdownRequested,
    /// leaseLost
    LeaseLost,
    /// shardEnded
    ShardEnded,
}
