//! The messages of the multi-language protocol, in both directions.
//!
//! Daemon → child messages borrow their data ([`Action`], [`CheckpointReply`]) because
//! they are encoded straight into a byte buffer by [`super::codec::encode_action`] and
//! [`super::codec::encode_checkpoint_reply`]. Child → daemon messages ([`ChildMessage`])
//! are produced by the lenient line parser [`super::codec::parse_line`].
//!
//! # Format
//!
//! Every message is one compact JSON object on one line, UTF-8, terminated by `\n`. The
//! object's string field `action` names the message (case-sensitive). The daemon writes
//! the fields in the order shown (the Java daemon's order, so output can be compared
//! byte for byte); `null` fields are always written. Strings are escaped like Jackson does:
//! only `"`, `\` and control characters below U+0020 (`\b \t \n \f \r` in short form, the
//! rest as `\u00XX` with upper-case hex); everything else, including non-ASCII, DEL,
//! U+2028 and U+2029, is written as raw UTF-8. The daemon never writes a blank line.
//!
//! ## `initialize` (daemon → child)
//! Sent once, first. `sequenceNumber` is the lease's checkpoint (a sentinel such as
//! `TRIM_HORIZON`, `LATEST`, `AT_TIMESTAMP`, `SHARD_END`, or digits), `null` only when
//! the lease has no checkpoint; `subSequenceNumber` its sub-sequence number or `null`.
//! ```text
//! {"action":"initialize","shardId":"shardId-000000000000","sequenceNumber":"TRIM_HORIZON","subSequenceNumber":0}
//! ```
//!
//! ## `processRecords` (daemon → child)
//! One batch. `millisBehindLatest` is an integer or `null`. Each record carries `data`
//! (standard base64 with padding, `""` for an empty payload), `partitionKey`,
//! `sequenceNumber` (a string of digits), `approximateArrivalTimestamp` (epoch
//! milliseconds), `subSequenceNumber` (0, or the index in a KPL aggregate) and, always
//! last, `"action":"record"`.
//! ```text
//! {"action":"processRecords","records":[{"data":"aGVsbG8=","partitionKey":"pk","sequenceNumber":"4968","approximateArrivalTimestamp":1700000000001,"subSequenceNumber":0,"action":"record"}],"millisBehindLatest":0}
//! ```
//!
//! ## `shutdownRequested`, `leaseLost`, `shardEnded` (daemon → child)
//! No other fields. (The KCL 1.x `shutdown` message is never sent: current clients crash
//! on it.)
//! ```text
//! {"action":"shutdownRequested"}
//! {"action":"leaseLost"}
//! {"action":"shardEnded"}
//! ```
//!
//! ## `checkpoint` reply (daemon → child)
//! Exactly one per checkpoint request, in request order, before the next child line is
//! handled. `sequenceNumber` echoes the request as a string (a JSON number is echoed as
//! its exact digits), `subSequenceNumber` echoes the parsed sub-sequence number, and
//! `error` is `null` on success or the Java simple class name of the failure.
//! ```text
//! {"action":"checkpoint","sequenceNumber":"4968","subSequenceNumber":0,"error":null}
//! {"action":"checkpoint","sequenceNumber":null,"subSequenceNumber":null,"error":"ThrottlingException"}
//! ```
//!
//! ## `status` (child → daemon)
//! Ends the current action; `responseFor` must equal that action's name exactly.
//! ```text
//! {"action": "status", "responseFor": "processRecords"}
//! ```
//!
//! ## `checkpoint` request (child → daemon)
//! `sequenceNumber` null or absent means "the largest permitted position"; a JSON number
//! keeps its exact text; a boolean becomes `"true"`/`"false"` (and then fails
//! validation). `subSequenceNumber` may be absent, null, an integer, a float (truncated
//! toward zero), a numeric string, or `""` (= absent). Any other `subSequenceNumber`
//! (non-numeric string, boolean, out of the 64-bit range) or an object/array
//! `sequenceNumber` is answered with `IllegalArgumentException` (Java would skip the line
//! and leave the child waiting for a reply forever).
//! ```text
//! {"action": "checkpoint", "sequenceNumber": "4968", "subSequenceNumber": 0}
//! {"action":"checkpoint","sequenceNumber":null}
//! ```
//!
//! ## Everything else the child writes
//! See [`super::codec`] ("Reading the child's output") for what is skipped as noise.

use crate::model::Record;
use crate::sequence::ExtendedSequenceNumber;

/// A checkpoint request exactly as the child sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointRequest {
    /// `sequenceNumber`: `None` when null or absent ("largest permitted position"); else
    /// the exact text (a JSON number keeps its digits; a boolean becomes "true"/"false").
    pub sequence_number: Option<String>,
    /// `subSequenceNumber`: `None` when null, absent or `""`; floats are truncated.
    pub sub_sequence_number: Option<i64>,
}

/// Which of the five daemon actions a message is (each is acknowledged by a `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActionKind {
    /// `initialize`.
    Initialize,
    /// `processRecords`.
    ProcessRecords,
    /// `shutdownRequested`.
    ShutdownRequested,
    /// `leaseLost`.
    LeaseLost,
    /// `shardEnded`.
    ShardEnded,
}

impl ActionKind {
    /// The `action` value on the wire (and the `responseFor` the child must answer with).
    #[must_use]
    pub fn wire_name(self) -> &'static str {
        match self {
            Self::Initialize => "initialize",
            Self::ProcessRecords => "processRecords",
            Self::ShutdownRequested => "shutdownRequested",
            Self::LeaseLost => "leaseLost",
            Self::ShardEnded => "shardEnded",
        }
    }

    /// Whether the Java daemon attaches a checkpointer to this action. Checkpoint
    /// requests during `initialize` and `leaseLost` are answered with
    /// `InvalidStateException`.
    #[must_use]
    pub fn has_checkpointer(self) -> bool {
        !matches!(self, Self::Initialize | Self::LeaseLost)
    }
}

impl std::fmt::Display for ActionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.wire_name())
    }
}

/// A daemon → child action: one line written to the child, answered by a `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action<'a> {
    /// `initialize` for the session's shard.
    Initialize {
        /// The lease's checkpoint (`None` only when the lease has none: both fields are
        /// then written as `null`).
        checkpoint: Option<&'a ExtendedSequenceNumber>,
    },
    /// `processRecords` with one batch.
    ProcessRecords {
        /// The records, in shard order (may be empty).
        records: &'a [Record],
        /// `millisBehindLatest` (`null` when `None`).
        millis_behind_latest: Option<i64>,
    },
    /// `shutdownRequested`.
    ShutdownRequested,
    /// `leaseLost`.
    LeaseLost,
    /// `shardEnded`.
    ShardEnded,
}

impl Action<'_> {
    /// Which action this is.
    #[must_use]
    pub fn kind(&self) -> ActionKind {
        match self {
            Self::Initialize { .. } => ActionKind::Initialize,
            Self::ProcessRecords { .. } => ActionKind::ProcessRecords,
            Self::ShutdownRequested => ActionKind::ShutdownRequested,
            Self::LeaseLost => ActionKind::LeaseLost,
            Self::ShardEnded => ActionKind::ShardEnded,
        }
    }
}

/// The daemon's answer to one checkpoint request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointReply<'a> {
    /// Echo of the request's `sequenceNumber` (its text).
    pub sequence_number: Option<&'a str>,
    /// Echo of the request's parsed `subSequenceNumber`.
    pub sub_sequence_number: Option<i64>,
    /// `None` on success, else the Java simple class name of the failure.
    pub error: Option<&'a str>,
}

/// A protocol message read from the child's stdout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChildMessage {
    /// `status`: the child finished the current action.
    Status {
        /// `responseFor` as text: a string's value, a number's or boolean's literal text,
        /// or the raw JSON of an object/array; `None` when missing or `null`. Anything
        /// but the exact current action name is a protocol failure.
        response_for: Option<String>,
    },
    /// A well-formed checkpoint request.
    Checkpoint(CheckpointRequest),
    /// A checkpoint request whose fields cannot be interpreted; it is answered with
    /// `IllegalArgumentException` without calling the checkpointer.
    InvalidCheckpoint {
        /// The `sequenceNumber` text to echo, when it could be read.
        sequence_number: Option<String>,
        /// What is wrong, for the log.
        problem: String,
    },
    /// A daemon-side action echoed by the child (`initialize`, `processRecords`,
    /// `shutdown`, `shutdownRequested`, `leaseLost`, `shardEnded`): parsed and ignored,
    /// like Java does.
    Ignored {
        /// The echoed action name.
        action: &'static str,
    },
}
