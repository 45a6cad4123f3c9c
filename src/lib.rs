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
//! - [`model`]: model types shared across layers (records, hash-key ranges, checkpoint errors).
//! - [`sequence`]: sequence numbers, sentinels and their ordering.
//! - [`status`]: the worker status snapshot the scheduler publishes for operations.
//! - [`telemetry`]: typed events (lease takes, child exits, call latencies) lower layers record.
//! - [`ops`]: operations — Prometheus `/metrics`, `/healthz`, `/readyz`, CloudWatch metrics,
//!   systemd notify — reading the status snapshot and the telemetry events.
//! - [`aws`]: SDK clients from the configuration.
//! - [`backoff`]: exponential backoff with jitter (retried calls, consumer restarts).

pub mod aws;
pub mod backoff;
pub mod child;
pub mod config;
pub mod lease;
pub mod leases_report;
pub mod model;
pub mod ops;
pub mod protocol;
pub mod scheduler;
pub mod sequence;
pub mod shard;
pub mod shutdown;
pub mod status;
pub mod stream;
pub mod telemetry;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::lease::dynamodb::DynamoLeaseStore;
use crate::scheduler::{Scheduler, SchedulerError};
use crate::shard::process::ChildLauncher;
use crate::shutdown::Shutdown;
use crate::stream::kinesis::StreamRef;
use crate::stream::polling::{PollingReaderFactory, PollingSettings};
use crate::stream::shards::{KinesisShardLister, ListShardsSettings, ShardLister};

/// How long a record processor may take to exit after its stdin is closed, and again
/// after SIGTERM, before it is killed.
const CHILD_STOP_GRACE: Duration = Duration::from_secs(5);

/// Why the daemon stopped with a failure.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The AWS clients could not be built (e.g. no region).
    #[error(transparent)]
    Aws(#[from] aws::AwsError),
    /// The worker failed (start-up or a fleet-level condition).
    #[error(transparent)]
    Scheduler(#[from] SchedulerError),
    /// The configuration asks for something this version cannot do
    /// ([`Config::check_runnable`]).
    #[error(transparent)]
    Unsupported(#[from] config::ConfigError),
    /// Operations (HTTP server, CloudWatch client) could not start.
    #[error(transparent)]
    Ops(#[from] ops::OpsError),
}

impl RunError {
    /// True when the failure is the configuration's (exit code 78, not worth restarting).
    #[must_use]
    pub fn is_config_error(&self) -> bool {
        matches!(
            self,
            Self::Aws(aws::AwsError::NoRegion { .. })
                | Self::Unsupported(_)
                | Self::Ops(ops::OpsError::CloudWatch(aws::AwsError::NoRegion { .. }))
        ) || matches!(self, Self::Scheduler(SchedulerError::Fleet3x { .. }))
    }
}

/// The default worker id: the host name plus a short random part, unique per process and
/// readable in logs (Java uses a bare random UUID).
#[must_use]
pub fn default_worker_id() -> String {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".to_owned());
    format!("{host}-{:08x}", rand::random::<u32>())
}

/// Runs the daemon until `shutdown` is cancelled (graceful stop) or a fatal error occurs.
///
/// # Errors
/// A [`RunError`] when the daemon cannot start or must stop.
pub async fn run(config: Config, shutdown: impl Into<Shutdown>) -> Result<(), RunError> {
    let shutdown = shutdown.into();
    config.check_runnable()?;
    let config = Arc::new(config);
    let clients = aws::clients(&config).await?;
    let worker_id = config.worker_id.clone().unwrap_or_else(default_worker_id);
    let store = Arc::new(
        DynamoLeaseStore::new(
            clients.dynamodb.clone(),
            config.table_name.clone(),
            format!("{}-CoordinatorState", config.application_name),
        )
        .with_deletion_protection(config.lease_table_deletion_protection_enabled),
    );
    let stream = StreamRef::from_config(&config);
    let list_settings = ListShardsSettings {
        backoff: config.list_shards_backoff,
        max_attempts: config.max_list_shards_retry_attempts,
        ..ListShardsSettings::default()
    };
    let lister: Arc<dyn ShardLister> =
        Arc::new(KinesisShardLister::new(&clients.kinesis, stream.clone(), list_settings));
    let readers_stop = CancellationToken::new();
    let readers = PollingReaderFactory::new(
        &clients.kinesis,
        stream,
        PollingSettings::from_config(&config),
        readers_stop.clone(),
    )
    .with_kpl_hash_range_check(lister.clone());
    let launcher = ChildLauncher::new(config.executable.clone(), config.timeout, CHILD_STOP_GRACE);
    let scheduler =
        Scheduler::new(config.clone(), worker_id.clone(), store, lister, Arc::new(readers), Arc::new(launcher));
    // Operations (issue 12) start before the worker and finish after it, so that /healthz
    // answers and systemd hears STOPPING=1 during the graceful shutdown.
    let operations = ops::Operations::start(&config, &worker_id, scheduler.status(), shutdown.token().clone()).await?;
    let result = scheduler.run(shutdown).await;
    readers_stop.cancel();
    operations.finish().await;
    result.map_err(RunError::from)
}
