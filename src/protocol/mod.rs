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

pub use messages::{Action, ActionKind, CheckpointRequest, ChildMessage};
pub use session::{ProtocolError, ProtocolErrorKind, ProtocolSession};

use async_trait::async_trait;

pub use crate::model::CheckpointError;

/// Serves the child's checkpoint requests during one action.
#[async_trait]
pub trait Checkpointer: Send {
    /// Validates and stores the requested position.
    async fn checkpoint(&mut self, request: &CheckpointRequest) -> Result<(), CheckpointError>;
}
