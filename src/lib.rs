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

use crate::config::{Config, RetrievalMode};
use crate::lease::dynamodb::DynamoLeaseStore;
use crate::lease::kcl3::coordinator::DynamoCoordinatorStore;
use crate::lease::kcl3::leader::LeaderSettings;
use crate::lease::kcl3::mode::Protocol;
use crate::lease::kcl3::startup::choose_protocol;
use crate::lease::kcl3::upgrade::{UpgradeParticipant, UpgradeSettings};
use crate::lease::kcl3::worker::{Handoffs, Kcl3Assignment, Kcl3LeaseStore, Kcl3Settings};
use crate::lease::kcl3::worker_metrics::DynamoWorkerMetricsStore;
use crate::lease::kcl3::ClientVersion;
use crate::scheduler::{Scheduler, SchedulerError};
use crate::shard::process::ChildLauncher;
use crate::shard::processor::ProcessorLauncher;
use crate::shutdown::Shutdown;
use crate::status::{StatusPublisher, WorkerStatus};
use crate::stream::fanout::{FanOutReaderFactory, FanOutSettings};
use crate::stream::kinesis::StreamRef;
use crate::stream::polling::{PollingReaderFactory, PollingSettings};
use crate::stream::shards::{KinesisShardLister, ListShardsSettings, ShardLister};
use crate::stream::ShardReaderFactory;

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

/// Whether an unset `clientVersionConfig` starts a brand-new application in KCL 3.x mode, as
/// the Java 3.x daemon does (an existing 2.x fleet is still joined in 2.x, with a warning).
/// A new application stays in 2.x with `clientVersionConfig =
/// CLIENT_VERSION_CONFIG_COMPATIBLE_WITH_2X`, the value Java 3.x accepts too.
const NEW_APPLICATIONS_IN_3X: bool = true;
/// How long a 3.x worker waits for the lease table's owner index to become ACTIVE (Java 3.1.3: 600 s).
const OWNER_INDEX_TIMEOUT: Duration = Duration::from_secs(600);

/// The 3.x worker settings from the configuration.
fn kcl3_settings(config: &Config) -> Kcl3Settings {
    let failover = config.failover_time;
    Kcl3Settings {
        leader: LeaderSettings {
            failover_time: failover,
            assignment_interval: config.kcl3.lease_assignment_interval.unwrap_or(failover * 2),
            graceful_handoff: config.kcl3.graceful_handoff_enabled,
            handoff_timeout: config.kcl3.graceful_handoff_timeout,
            max_leases_for_worker: usize::try_from(config.max_leases_for_worker).unwrap_or(usize::MAX),
            metrics_expiry: config.kcl3.worker_metrics_reporter_interval * 2,
            stale_metrics_cleanup: config.kcl3.stale_worker_metrics_cleanup,
        },
        // A lock that expires within two failover times (Java: a fixed 120 s): a dead
        // multilangd leader is replaced within that plus one lock poll.
        lock_duration: failover * 2,
        metrics_interval: config.kcl3.worker_metrics_reporter_interval,
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
            config.kcl3.coordinator_state_table.clone(),
        )
        .with_deletion_protection(config.lease_table_deletion_protection_enabled),
    );
    let coordinator =
        Arc::new(DynamoCoordinatorStore::new(clients.dynamodb.clone(), config.kcl3.coordinator_state_table.clone()));
    let metrics =
        Arc::new(DynamoWorkerMetricsStore::new(clients.dynamodb.clone(), config.kcl3.worker_metrics_table.clone()));
    let stream = StreamRef::from_config(&config);
    let list_settings = ListShardsSettings {
        backoff: config.list_shards_backoff,
        max_attempts: config.max_list_shards_retry_attempts,
        ..ListShardsSettings::default()
    };
    let lister: Arc<dyn ShardLister> =
        Arc::new(KinesisShardLister::new(&clients.kinesis, stream.clone(), list_settings));
    let readers_stop = CancellationToken::new();
    let readers: Arc<dyn ShardReaderFactory> = match config.retrieval_mode {
        RetrievalMode::Polling => Arc::new(
            PollingReaderFactory::new(
                &clients.kinesis,
                stream,
                PollingSettings::from_config(&config),
                readers_stop.clone(),
            )
            .with_kpl_hash_range_check(lister.clone()),
        ),
        RetrievalMode::FanOut => {
            let settings = FanOutSettings::from_config(&config);
            tracing::info!(consumer = %settings.registration.consumer_name, "retrieval mode FANOUT (enhanced fan-out)");
            Arc::new(
                FanOutReaderFactory::new(&clients.kinesis, stream, settings, readers_stop.clone())
                    .with_kpl_hash_range_check(lister.clone()),
            )
        }
    };
    let launcher: Arc<dyn ProcessorLauncher> = Arc::new(
        ChildLauncher::new(config.executable.clone(), config.timeout, CHILD_STOP_GRACE)
            .with_startup_concurrency(usize::try_from(config.child_startup_concurrency).unwrap_or(usize::MAX)),
    );
    let (status, _) =
        StatusPublisher::new(WorkerStatus::starting(&worker_id, &config.application_name, config.table_name.as_str()));
    // Operations (issue 12) start before the worker and finish after it, so that /healthz
    // answers and systemd hears STOPPING=1 during the graceful shutdown.
    let operations = ops::Operations::start(&config, &worker_id, status.subscribe(), shutdown.token().clone()).await?;
    let result = loop {
        // The protocol follows Migration3.0; a switch at run time (2.x -> 3.x, or a rollback)
        // stops the worker gracefully (leases released) and it rejoins here.
        let chosen = tokio::select! {
            () = shutdown.requested() => break Ok(()),
            chosen = choose_protocol(
                config.client_version_config,
                NEW_APPLICATIONS_IN_3X,
                &worker_id,
                &*store,
                &*store,
                &*coordinator,
                &*metrics,
                OWNER_INDEX_TIMEOUT,
            ) => chosen,
        };
        let chosen = match chosen {
            Ok(chosen) => chosen,
            Err(e) => break Err(RunError::Scheduler(SchedulerError::LeaseTable(e))),
        };
        let seams = Seams {
            lister: lister.clone(),
            readers: readers.clone(),
            launcher: launcher.clone(),
            status: status.clone(),
        };
        let scheduler = build_scheduler(&config, &worker_id, chosen.protocol, &store, &coordinator, &metrics, seams);
        let upgrading =
            chosen.protocol == Protocol::Kcl2x && chosen.client_version == Some(ClientVersion::UpgradeFrom2x.as_str());
        let outcome = if upgrading {
            // UPGRADE_FROM_2X: publish worker metrics and, as the 2.x leader, flip the fleet
            // to 3.x once it is ready (the scheduler's migration check then switches).
            let participant = UpgradeParticipant::new(
                &worker_id,
                &*store,
                &*store,
                &*coordinator,
                &*metrics,
                upgrade_settings(&config),
            );
            let stop = shutdown.token().child_token();
            let ((), outcome) = tokio::join!(participant.run(stop.clone()), async {
                let outcome = scheduler.run(shutdown.clone()).await;
                stop.cancel();
                outcome
            });
            outcome
        } else {
            scheduler.run(shutdown.clone()).await
        };
        match outcome {
            Err(SchedulerError::ProtocolSwitch { client_version, table }) if !shutdown.is_requested() => {
                tracing::info!(%client_version, %table, "rejoining the fleet with the lease protocol it switched to");
            }
            other => break other.map_err(RunError::from),
        }
    };
    readers_stop.cancel();
    operations.finish().await;
    result
}

/// The upgrade participation's cadences from the configuration.
fn upgrade_settings(config: &Config) -> UpgradeSettings {
    UpgradeSettings {
        publish_interval: config.kcl3.worker_metrics_reporter_interval,
        check_interval: config.kcl3.migration_check_interval,
        ready_for: config.kcl3.upgrade_ready_for,
    }
}

/// The reading and processing seams a scheduler runs on (shared across protocol switches).
struct Seams {
    lister: Arc<dyn ShardLister>,
    readers: Arc<dyn ShardReaderFactory>,
    launcher: Arc<dyn ProcessorLauncher>,
    status: StatusPublisher,
}

/// The worker for `protocol`: the 2.x taker on the lease table, or the 3.x follower/leader.
fn build_scheduler(
    config: &Arc<Config>,
    worker_id: &str,
    protocol: Protocol,
    store: &Arc<DynamoLeaseStore>,
    coordinator: &Arc<DynamoCoordinatorStore>,
    metrics: &Arc<DynamoWorkerMetricsStore>,
    seams: Seams,
) -> Scheduler {
    let Seams { lister, readers, launcher, status } = seams;
    let scheduler = if protocol == Protocol::Kcl3x {
        let handoffs = Handoffs::default();
        let renewing = Arc::new(Kcl3LeaseStore::new(
            store.clone(),
            store.clone(),
            worker_id,
            handoffs.clone(),
            config.kcl3.worker_metrics_ema_alpha,
        ));
        let assignment = Kcl3Assignment::new(
            worker_id,
            renewing.clone(),
            store.clone(),
            coordinator.clone(),
            metrics.clone(),
            handoffs,
            kcl3_settings(config),
        );
        let scheduler =
            Scheduler::new(config.clone(), worker_id.to_owned(), renewing.clone(), lister, readers, launcher)
                .with_kcl3_assignment(Box::new(assignment))
                .with_status_publisher(status);
        renewing.set_status(scheduler.status());
        scheduler
    } else {
        Scheduler::new(config.clone(), worker_id.to_owned(), store.clone(), lister, readers, launcher)
            .with_status_publisher(status)
    };
    scheduler.with_migration_check_interval(config.kcl3.migration_check_interval)
}
