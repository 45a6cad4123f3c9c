//! multilangd: a native, JVM-free drop-in replacement for the Amazon KCL MultiLangDaemon.
//!
//! # Layout
//! - [`config`]: `.properties` → typed, validated [`config::Config`].
//! - [`protocol`]: the JSON-lines multi-language protocol spoken with each child.
//! - [`child`]: spawning and supervising one record-processor process per shard.
//! - [`lease`]: the KCL 2.x DynamoDB lease table ([`lease::LeaseStore`]).
//! - [`stream`]: reading shards ([`stream::ShardReader`]) and listing them.
//! - [`shard`]: the per-shard consumer state machine and its checkpointer.
//! - [`scheduler`]: owns leases, starts and stops shard consumers, shard sync, shutdown.
//! - [`sequence`]: sequence numbers, sentinels and their ordering.
//! - [`aws`]: SDK clients from the configuration.

pub mod aws;
pub mod child;
pub mod config;
pub mod lease;
pub mod protocol;
pub mod scheduler;
pub mod sequence;
pub mod shard;
pub mod stream;

use tokio_util::sync::CancellationToken;

/// Why the daemon stopped with a failure (exit code 1).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Placeholder while the engine is being built.
    #[error("the engine is not wired yet")]
    NotWired,
}

/// Runs the daemon until `shutdown` is cancelled (graceful stop) or a fatal error occurs.
///
/// # Errors
/// A [`RunError`] when the daemon cannot continue.
pub async fn run(config: config::Config, shutdown: CancellationToken) -> Result<(), RunError> {
    let _ = (config, shutdown);
    Err(RunError::NotWired)
}
