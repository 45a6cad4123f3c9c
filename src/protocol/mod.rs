//! The multi-language protocol: JSON lines over the child's stdin/stdout.
//!
//! - [`messages`]: the message types of both directions and the wire format ("# Format").
//! - [`codec`]: byte-exact encoding of daemon messages; line splitting and lenient
//!   parsing of the child's output.
//! - [`session`]: [`ProtocolSession`], one child's exchange (action → checkpoints →
//!   status), with a continuously reading stdout task and `timeoutInSeconds`.
//!
//! Checkpoint requests are handed to a [`Checkpointer`] (implemented by the shard
//! consumer); its [`CheckpointError`] becomes the reply's `error` string.

pub mod codec;
pub mod messages;
pub mod session;

pub use messages::{Action, ActionKind, ChildMessage};
pub use session::{ProtocolError, ProtocolErrorKind, ProtocolSession};

use async_trait::async_trait;

pub use crate::model::CheckpointError;

/// A checkpoint request exactly as the child sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointRequest {
    /// `sequenceNumber`: `None` when null or absent ("largest permitted position"); else
    /// the exact text (a JSON number keeps its digits; a boolean becomes "true"/"false").
    pub sequence_number: Option<String>,
    /// `subSequenceNumber`: `None` when null, absent or `""`; floats are truncated.
    pub sub_sequence_number: Option<i64>,
}

/// Serves the child's checkpoint requests during one action.
#[async_trait]
pub trait Checkpointer: Send {
    /// Validates and stores the requested position.
    async fn checkpoint(&mut self, request: &CheckpointRequest) -> Result<(), CheckpointError>;
}
