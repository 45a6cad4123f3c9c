//! The seam between a shard consumer and its record processor.
//!
//! In production a processor is a child process spoken to with the multi-language protocol
//! ([`crate::child`] + [`crate::protocol::session`]); tests can substitute an in-process
//! processor. The consumer only needs to perform actions, notice an unexpected exit while
//! idle, and shut the processor down.

use async_trait::async_trait;

use crate::child::{ChildExit, SpawnError};
use crate::protocol::messages::Action;
use crate::protocol::{ActionKind, Checkpointer, ProtocolError};

/// Why a processor could not be used any more. Affects only its own shard.
#[derive(Debug, thiserror::Error)]
pub enum ProcessorFailure {
    /// The process could not be started (see [`ProcessorFailure::is_persistent`]).
    #[error(transparent)]
    Launch(Box<SpawnError>),
    /// The process exited or was killed.
    #[error("record processor {exit} {}{}", during_text(.during), .protocol.as_ref().map(|e| format!(" ({e})")).unwrap_or_default())]
    Exited {
        /// How it ended.
        exit: ChildExit,
        /// The action in progress; `None` when it exited between actions.
        during: Option<ActionKind>,
        /// The protocol error the exit caused, if the exchange noticed it first.
        protocol: Option<Box<ProtocolError>>,
    },
    /// The process broke the protocol (wrong status, closed stdout, write failure, timeout).
    #[error("protocol failure: {0}")]
    Protocol(Box<ProtocolError>),
}

impl From<SpawnError> for ProcessorFailure {
    fn from(e: SpawnError) -> Self {
        Self::Launch(Box::new(e))
    }
}

impl From<ProtocolError> for ProcessorFailure {
    fn from(e: ProtocolError) -> Self {
        Self::Protocol(Box::new(e))
    }
}

fn during_text(during: &Option<ActionKind>) -> String {
    during.map_or_else(|| "between actions".to_owned(), |kind| format!("during {kind}"))
}

impl ProcessorFailure {
    /// True when restarting at once cannot help: the program is missing, not executable or
    /// has no interpreter. The scheduler then retries slowly and reports it instead of
    /// restarting in a hot loop.
    #[must_use]
    pub fn is_persistent(&self) -> bool {
        matches!(
            self,
            Self::Launch(e) if matches!(
                **e,
                SpawnError::EmptyProgram { .. }
                    | SpawnError::NotOnPath { .. }
                    | SpawnError::NotFound { .. }
                    | SpawnError::NotExecutable { .. }
                    | SpawnError::InterpreterNotFound { .. }
            )
        )
    }
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
