//! The seam between a shard consumer and its record processor.
//!
//! In production a processor is a child process spoken to with the multi-language protocol
//! ([`crate::child`] + [`crate::protocol::session`]); tests can substitute an in-process
//! processor. The consumer only needs to perform actions, notice an unexpected exit while
//! idle, and shut the processor down.

use async_trait::async_trait;

use crate::protocol::messages::Action;
use crate::protocol::Checkpointer;

/// Why a processor could not be used any more. Affects only its own shard.
#[derive(Debug, thiserror::Error)]
pub enum ProcessorFailure {
    /// The process could not be started.
    #[error("could not start the record processor: {0}")]
    Launch(String),
    /// The process exited or was killed.
    #[error("record processor {0}")]
    Exited(String),
    /// The process broke the protocol (wrong status, closed stdout, write failure, timeout).
    #[error("protocol failure: {0}")]
    Protocol(String),
}

/// Starts a record processor for a shard.
#[async_trait]
pub trait ProcessorLauncher: Send + Sync + 'static {
    /// Starts a processor for `shard_id`.
    async fn launch(&self, shard_id: &str) -> Result<Box<dyn ProcessorConnection>, ProcessorFailure>;
}

/// A running record processor.
#[async_trait]
pub trait ProcessorConnection: Send {
    /// Sends `action`, serves checkpoint requests with `checkpointer` (or answers
    /// `InvalidStateException` when `None`), and returns once the matching status arrived.
    async fn perform(
        &mut self,
        action: Action<'_>,
        checkpointer: Option<&mut (dyn Checkpointer + '_)>,
    ) -> Result<(), ProcessorFailure>;

    /// Resolves when the processor exits on its own (cancel-safe; for use in `select!`
    /// while no action is outstanding).
    async fn exited(&mut self) -> ProcessorFailure;

    /// Ends the processor: close its input, drain its output, wait for it with a grace
    /// period, then terminate and kill it.
    async fn shutdown(self: Box<Self>);
}
