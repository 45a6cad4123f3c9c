//! Model types shared across layers, with no dependencies inside the crate except
//! [`crate::sequence`].
//!
//! They sit here so that the layers that use them do not import each other: a [`Record`] is
//! produced by `stream` and encoded by `protocol`; a [`HashKeyRange`] is read from Kinesis by
//! `stream` and stored in the lease table by `lease`; a [`CheckpointFailure`] is raised by
//! the lease layer and becomes the [`CheckpointError`] the record processor receives.

use bytes::Bytes;

use crate::sequence::{ExtendedSequenceNumber, SequenceNumber};

/// One (user) record as delivered to a processor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The payload (after KPL deaggregation, the user record's payload).
    pub data: Bytes,
    /// The partition key (the user record's key for deaggregated records).
    pub partition_key: String,
    /// The Kinesis sequence number (shared by all user records of one KPL aggregate).
    pub sequence_number: SequenceNumber,
    /// Index in the KPL aggregate; 0 for plain records.
    pub sub_sequence_number: u64,
    /// `ApproximateArrivalTimestamp` in epoch milliseconds.
    pub approximate_arrival_timestamp_ms: i64,
}

impl Record {
    /// The record's extended sequence number.
    #[must_use]
    pub fn extended_sequence_number(&self) -> ExtendedSequenceNumber {
        ExtendedSequenceNumber::at(self.sequence_number.clone(), self.sub_sequence_number)
    }
}

/// The inclusive 128-bit hash-key range of a shard, as decimal strings (the table format).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashKeyRange {
    /// `startingHashKey`.
    pub starting: String,
    /// `endingHashKey`.
    pub ending: String,
}

/// Why a checkpoint failed; the child receives [`CheckpointError::wire_name`] in `error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// No checkpointer for the current action (`initialize`, `leaseLost`) or bad lease state.
    #[error("InvalidStateException: {0}")]
    InvalidState(String),
    /// Malformed or out-of-range position.
    #[error("IllegalArgumentException: {0}")]
    IllegalArgument(String),
    /// The lease is no longer held by this worker.
    #[error("ShutdownException: {0}")]
    Shutdown(String),
    /// The lease table throttled the write.
    #[error("ThrottlingException: {0}")]
    Throttling(String),
    /// Any other dependency failure.
    #[error("KinesisClientLibDependencyException: {0}")]
    Dependency(String),
}

impl CheckpointError {
    /// The Java simple class name sent to the child in the reply's `error` field.
    #[must_use]
    pub fn wire_name(&self) -> &'static str {
        match self {
            Self::InvalidState(_) => "InvalidStateException",
            Self::IllegalArgument(_) => "IllegalArgumentException",
            Self::Shutdown(_) => "ShutdownException",
            Self::Throttling(_) => "ThrottlingException",
            Self::Dependency(_) => "KinesisClientLibDependencyException",
        }
    }
}

/// Why a checkpoint write to the lease table failed (the lease layer's view).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointFailure {
    /// This worker no longer holds the lease (or the token is from an earlier tenure).
    #[error("lease {key} is not held by this worker")]
    LeaseLost {
        /// The lease key.
        key: String,
    },
    /// The lease table throttled the write; the lease is still held.
    #[error("lease table throttled the checkpoint of {key}")]
    Throttled {
        /// The lease key.
        key: String,
    },
    /// Any other failure; the lease is still held.
    #[error("checkpoint of {key} failed: {message}")]
    Dependency {
        /// The lease key.
        key: String,
        /// The underlying error.
        message: String,
    },
}

impl From<CheckpointFailure> for CheckpointError {
    /// Lost → `ShutdownException`, throttled → `ThrottlingException`, other →
    /// `KinesisClientLibDependencyException`.
    fn from(failure: CheckpointFailure) -> Self {
        let message = failure.to_string();
        match failure {
            CheckpointFailure::LeaseLost { .. } => Self::Shutdown(message),
            CheckpointFailure::Throttled { .. } => Self::Throttling(message),
            CheckpointFailure::Dependency { .. } => Self::Dependency(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_failures_map_to_the_java_exception_names() {
        let key = || "s".to_owned();
        let cases = [
            (CheckpointFailure::LeaseLost { key: key() }, "ShutdownException"),
            (CheckpointFailure::Throttled { key: key() }, "ThrottlingException"),
            (
                CheckpointFailure::Dependency { key: key(), message: "boom".into() },
                "KinesisClientLibDependencyException",
            ),
        ];
        for (failure, name) in cases {
            assert_eq!(CheckpointError::from(failure).wire_name(), name);
        }
    }
}
