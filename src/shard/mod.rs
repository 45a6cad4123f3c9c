//! The per-shard consumer: one lease, one reader, one child process.
//!
//! States (as in the Java KCL's `ConsumerStates`): waiting on parents → initializing →
//! processing → shutting down. See [`consumer`] for the state machine and
//! [`checkpointer`] for the checkpoint window that keeps checkpoints from ever moving past
//! a record the processor has not been given.

pub mod checkpointer;
pub mod consumer;
#[cfg(any(test, feature = "test-support"))]
pub mod fake;
pub mod process;
pub mod processor;
