//! The scheduler: owns this worker's leases and runs one shard consumer per held lease.
//!
//! Tasks (all owned here; nothing is detached):
//! - the lease renewer ([`crate::lease::renewer`]) renews held leases every
//!   `failover/3` and cancels a lease's token the moment it is lost;
//! - the taker ([`crate::lease::taker`]) runs one round at start and then every
//!   `2 × (failover + 25 ms)`; leases it takes are handed to the renewer and get a consumer
//!   at once;
//! - one consumer task per held lease ([`crate::shard::consumer`]). A consumer that fails
//!   (processor crash, protocol error, stream error) is restarted from the lease's stored
//!   checkpoint with exponential backoff while the lease is still held; other shards are
//!   not affected;
//! - the leases recovery audit ([`audit`], tick): on the leader, checks that the leases in
//!   progress cover the hash-key range and runs a shard sync ([`hierarchy`]) when the same
//!   hole persists;
//! - lease cleanup ([`cleanup`], tick): deletes the leases of shards this worker finished
//!   once their children have started, and stops holding them.
//!
//! Start-up: an empty lease table gets the initial shard sync ([`sync`]); a non-empty one the
//! non-empty-table sync ([`hierarchy`]) unless
//! `skipShardSyncAtWorkerInitializationIfLeasesExist`, so shards created while no worker
//! ran get leases at once rather than after the audit's three rounds. (Java 2.5.8 skips the
//! sync when it finds the table non-empty; the sync is idempotent, so running it is safe.)
//!
//! Shutdown (the token passed to [`Scheduler::run`] is cancelled): stop taking, ask every
//! consumer to shut down gracefully (`shutdownRequested`, then `leaseLost`) within
//! `shutdownGraceMillis`, kill what is left, then release the held leases in DynamoDB
//! (owner removed, conditioned on the counter) so other workers — Java or multilangd —
//! can take them at once instead of waiting `failoverTimeMillis`.

pub mod audit;
pub mod cleanup;
pub mod hierarchy;
pub mod sync;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use self::audit::{AuditSettings, Auditor};
use self::cleanup::{CleanupSettings, LeaseCleaner};
use crate::backoff::{Backoff, BackoffPolicy};
use crate::config::{Config, InitialPosition};
use crate::lease::renewer::{ConcurrencyToken, LeaseRenewer, RenewerConfig};
use crate::lease::taker::{LeaseTaker, TakerSettings};
use crate::lease::{LeaseError, LeaseStore};
use crate::shard::checkpointer::{CheckpointFailure, CheckpointStore};
use crate::shard::consumer::{run_consumer, ConsumerContext, ConsumerOutcome, ConsumerSettings, ShardProgress};
use crate::shard::processor::ProcessorLauncher;
use crate::stream::shards::ShardLister;
use crate::stream::ShardReaderFactory;

/// How often held leases are compared with running consumers (Java: 1 s).
const DISPATCH_INTERVAL: Duration = Duration::from_secs(1);
/// How often per-shard progress is logged.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(10);
/// Start-up attempts before giving up (Java: `maxInitializationAttempts` = 20).
const MAX_INITIALIZATION_ATTEMPTS: u32 = 20;
/// How often the KCL 3.x migration state is re-read.
const MIGRATION_CHECK_INTERVAL: Duration = Duration::from_secs(60);
/// The shortest period of a configurable tick (a zero period would panic).
const MIN_TICK: Duration = Duration::from_millis(1);

/// Fatal scheduler errors.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// The lease table could not be prepared.
    #[error("cannot prepare the lease table: {0}")]
    LeaseTable(#[source] LeaseError),
    /// The initial shard sync failed.
    #[error("initial shard sync failed: {0}")]
    Sync(#[from] sync::SyncError),
    /// The fleet runs the KCL 3.x protocol, which multilangd does not join.
    #[error(
        "the application's fleet is in KCL 3.x mode ({client_version} in {table}); multilangd runs the KCL 2.x \
         lease protocol and must not join it. Roll the fleet back to 2.x compatibility \
         (CLIENT_VERSION_CONFIG_COMPATIBLE_WITH_2X) or run the Java daemon"
    )]
    Fleet3x {
        /// The `cv` value.
        client_version: String,
        /// Where it was found.
        table: String,
    },
}

/// The worker: leases in, shard consumers out.
pub struct Scheduler {
    config: Arc<Config>,
    worker_id: String,
    store: Arc<dyn LeaseStore>,
    lister: Arc<dyn ShardLister>,
    readers: Arc<dyn ShardReaderFactory>,
    launcher: Arc<dyn ProcessorLauncher>,
    audit: AuditSettings,
    cleanup: CleanupSettings,
}

struct Running {
    task: tokio::task::Id,
    started: Instant,
}

#[derive(Default)]
struct ShardState {
    backoff: Option<Backoff>,
    retry_at: Option<Instant>,
    ended: bool,
    progress: Arc<ShardProgress>,
}

impl Scheduler {
    /// A scheduler for `worker_id` over the given seams.
    #[must_use]
    pub fn new(
        config: Arc<Config>,
        worker_id: String,
        store: Arc<dyn LeaseStore>,
        lister: Arc<dyn ShardLister>,
        readers: Arc<dyn ShardReaderFactory>,
        launcher: Arc<dyn ProcessorLauncher>,
    ) -> Self {
        let audit = AuditSettings { min_sync_gap: config.shard_sync_interval, ..AuditSettings::default() };
        let cleanup = CleanupSettings::from_config(&config);
        Self { config, worker_id, store, lister, readers, launcher, audit, cleanup }
    }

    /// Replaces the audit timing (defaults: Java's 60 s / 120 s / 3 audits).
    #[must_use]
    pub fn with_audit_settings(mut self, audit: AuditSettings) -> Self {
        self.audit = audit;
        self
    }

    /// Replaces the lease cleanup settings (defaults: [`CleanupSettings::from_config`]).
    #[must_use]
    pub fn with_cleanup_settings(mut self, cleanup: CleanupSettings) -> Self {
        self.cleanup = cleanup;
        self
    }

    fn taker_settings(&self) -> TakerSettings {
        TakerSettings {
            failover_time: self.config.failover_time,
            max_leases_for_worker: self.config.max_leases_for_worker,
            max_leases_to_steal_at_one_time: self.config.max_leases_to_steal_at_one_time,
            enable_priority_lease_assignment: self.config.enable_priority_lease_assignment,
        }
    }

    fn consumer_settings(&self) -> ConsumerSettings {
        ConsumerSettings {
            parent_shard_poll_interval: self.config.parent_shard_poll_interval,
            call_process_records_even_for_empty_record_list: self
                .config
                .call_process_records_even_for_empty_record_list,
            at_timestamp_millis: match self.config.initial_position {
                InitialPosition::AtTimestamp { epoch_millis } => Some(epoch_millis),
                _ => None,
            },
            task_backoff: self.config.task_backoff,
            log_warning_for_task_after: self.config.log_warning_for_task_after,
        }
    }

    async fn check_migration_state(&self) -> Result<(), SchedulerError> {
        match self.store.migration_state().await {
            Ok(Some(state)) if state.is_3x_mode() => {
                Err(SchedulerError::Fleet3x { client_version: state.client_version, table: state.table })
            }
            Ok(_) => Ok(()),
            Err(e) => {
                warn!(error = %e, "cannot read the KCL 3.x migration state; assuming 2.x");
                Ok(())
            }
        }
    }

    async fn prepare(&self) -> Result<(), SchedulerError> {
        let created = self.store.ensure_table().await.map_err(SchedulerError::LeaseTable)?;
        if created {
            info!(table = %self.store.table_name(), "created the lease table");
        }
        self.check_migration_state().await?;
        let existing = self.store.list_leases().await.map_err(SchedulerError::LeaseTable)?;
        if existing.leases.is_empty() {
            sync::initial_sync(&self.lister, &self.store, self.config.initial_position).await?;
        } else if self.config.skip_shard_sync_at_worker_initialization_if_leases_exist {
            info!("skipping the start-up shard sync: the lease table has leases (skipShardSyncAtWorkerInitializationIfLeasesExist)");
        } else {
            self.startup_sync(&existing.leases).await;
        }
        Ok(())
    }

    /// The start-up sync of a non-empty table. Not fatal: the periodic audit repairs what a
    /// failed sync leaves out.
    async fn startup_sync(&self, leases: &[crate::lease::Lease]) {
        let synced = hierarchy::non_empty_sync(
            &self.lister,
            &self.store,
            self.config.initial_position,
            self.config.ignore_unexpected_child_shards,
            leases,
        )
        .await;
        if let Err(e) = synced {
            warn!(error = %e, "start-up shard sync failed; the lease audit will retry");
        }
    }

    /// Runs until `shutdown` is cancelled, then shuts down gracefully.
    ///
    /// # Errors
    /// Only start-up failures are fatal; at run time failures are per shard and retried.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), SchedulerError> {
        info!(worker_id = %self.worker_id, table = %self.store.table_name(), "worker starting");
        let mut attempt = 1;
        loop {
            let prepared = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                prepared = self.prepare() => prepared,
            };
            match prepared {
                Ok(()) => break,
                Err(e @ SchedulerError::Fleet3x { .. }) => return Err(e),
                Err(e) if attempt >= MAX_INITIALIZATION_ATTEMPTS => return Err(e),
                Err(e) => {
                    let pause = self.config.scheduler_initialization_backoff;
                    warn!(error = %e, attempt, retry_in = ?pause, "worker initialization failed; retrying");
                    attempt += 1;
                    tokio::select! {
                        () = shutdown.cancelled() => return Ok(()),
                        () = tokio::time::sleep(pause) => {}
                    }
                }
            }
        }
        let renewer =
            LeaseRenewer::new(self.store.clone(), self.worker_id.clone(), RenewerConfig::from_config(&self.config));
        let renewer_stop = CancellationToken::new();
        let mut background = JoinSet::new();
        background.spawn({
            let renewer = renewer.clone();
            let stop = renewer_stop.clone();
            async move { renewer.run(stop).await }
        });

        let result = self.main_loop(&renewer, &shutdown).await;

        renewer_stop.cancel();
        while background.join_next().await.is_some() {}
        result
    }

    async fn main_loop(&self, renewer: &LeaseRenewer, shutdown: &CancellationToken) -> Result<(), SchedulerError> {
        let mut taker = LeaseTaker::new(self.store.clone(), self.worker_id.clone(), self.taker_settings());
        let mut consumers: JoinSet<(String, ConsumerOutcome)> = JoinSet::new();
        let mut running: HashMap<String, Running> = HashMap::new();
        let mut shards: HashMap<String, ShardState> = HashMap::new();
        let consumers_stop = CancellationToken::new();

        let mut take_tick = tokio::time::interval(taker.interval());
        take_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut dispatch_tick = tokio::time::interval(DISPATCH_INTERVAL);
        dispatch_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut progress_tick = tokio::time::interval_at(Instant::now() + PROGRESS_INTERVAL, PROGRESS_INTERVAL);
        let mut migration_tick =
            tokio::time::interval_at(Instant::now() + MIGRATION_CHECK_INTERVAL, MIGRATION_CHECK_INTERVAL);
        let mut auditor = Auditor::new(
            self.worker_id.clone(),
            self.store.clone(),
            self.lister.clone(),
            self.config.initial_position,
            self.config.ignore_unexpected_child_shards,
            self.audit.clone(),
        );
        let audit_interval = self.audit.interval.max(MIN_TICK);
        let mut audit_tick = tokio::time::interval_at(Instant::now() + self.audit.first_run, audit_interval);
        audit_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut cleaner = LeaseCleaner::new(self.store.clone(), self.lister.clone(), self.cleanup.clone());
        let mut cleanup_tick = tokio::time::interval(self.cleanup.tick.max(MIN_TICK));
        cleanup_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut fatal = None;

        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = sleep_until_some(taker.confirmation_due()) => {
                    // A lease of another worker looks abandoned: confirm its expiry now rather
                    // than at the next regular round.
                    match taker.take_round(renewer).await {
                        Ok(_) => self.dispatch(renewer, &mut consumers, &mut running, &mut shards, &consumers_stop),
                        Err(e) => warn!(error = %e, "lease taker round failed"),
                    }
                }
                _ = take_tick.tick() => {
                    match taker.take_round(renewer).await {
                        Ok(_) => {
                            self.dispatch(renewer, &mut consumers, &mut running, &mut shards, &consumers_stop);
                        }
                        Err(e) => warn!(error = %e, "lease taker round failed"),
                    }
                }
                _ = dispatch_tick.tick() => {
                    self.dispatch(renewer, &mut consumers, &mut running, &mut shards, &consumers_stop);
                }
                Some(joined) = consumers.join_next() => {
                    self.on_consumer_done(joined, &mut running, &mut shards);
                    self.dispatch(renewer, &mut consumers, &mut running, &mut shards, &consumers_stop);
                }
                _ = progress_tick.tick() => log_progress(&shards, &running),
                _ = audit_tick.tick() => self.run_audit(&mut auditor, shutdown).await,
                _ = cleanup_tick.tick() => self.clean_up(&mut cleaner, renewer, &mut shards, shutdown).await,
                _ = migration_tick.tick() => {
                    if let Err(e) = self.check_migration_state().await {
                        error!(error = %e, "stopping: the fleet switched to KCL 3.x");
                        fatal = Some(e);
                        break;
                    }
                }
            }
        }
        self.shut_down(renewer, &mut consumers, &mut running, &mut shards, &consumers_stop).await;
        log_progress(&shards, &running);
        fatal.map_or(Ok(()), Err)
    }

    /// One lease audit (a no-op unless this worker is the leader); cut short by shutdown.
    async fn run_audit(&self, auditor: &mut Auditor, shutdown: &CancellationToken) {
        tokio::select! {
            () = shutdown.cancelled() => {}
            audited = auditor.audit() => {
                if let Err(e) = audited {
                    warn!(error = %e, "lease audit failed");
                }
            }
        }
    }

    /// Queues the leases of shards this worker finished for cleanup, runs the due checks and
    /// stops holding the leases that are gone; cut short by shutdown.
    async fn clean_up(
        &self,
        cleaner: &mut LeaseCleaner,
        renewer: &LeaseRenewer,
        shards: &mut HashMap<String, ShardState>,
        shutdown: &CancellationToken,
    ) {
        for (key, state) in shards.iter() {
            if state.ended {
                cleaner.enqueue(key);
            }
        }
        let removed = tokio::select! {
            () = shutdown.cancelled() => return,
            removed = cleaner.run_due() => removed,
        };
        for key in removed {
            renewer.drop_lease(&key);
            shards.remove(&key);
        }
    }

    /// Starts a consumer for every held lease that has none (and is not backing off).
    fn dispatch(
        &self,
        renewer: &LeaseRenewer,
        consumers: &mut JoinSet<(String, ConsumerOutcome)>,
        running: &mut HashMap<String, Running>,
        shards: &mut HashMap<String, ShardState>,
        consumers_stop: &CancellationToken,
    ) {
        let now = Instant::now();
        for held in renewer.held() {
            let key = held.lease.key.clone();
            if running.contains_key(&key) {
                continue;
            }
            let state = shards.entry(key.clone()).or_default();
            if state.ended || state.retry_at.is_some_and(|t| t > now) {
                continue;
            }
            let stop = consumers_stop.child_token();
            let ctx = ConsumerContext {
                lease: held.lease.clone(),
                leases: self.store.clone(),
                checkpoints: Arc::new(TenureCheckpoints { renewer: renewer.clone(), token: held.concurrency_token }),
                readers: self.readers.clone(),
                launcher: self.launcher.clone(),
                settings: self.consumer_settings(),
                lease_lost: held.lost.clone(),
                shutdown: stop.clone(),
                progress: state.progress.clone(),
            };
            info!(shard_id = %key, checkpoint = %held.lease.checkpoint, "starting shard consumer");
            let task = consumers.spawn({
                let key = key.clone();
                async move { (key, run_consumer(ctx).await) }
            });
            running.insert(key, Running { task: task.id(), started: Instant::now() });
        }
    }

    fn on_consumer_done(
        &self,
        joined: Result<(String, ConsumerOutcome), tokio::task::JoinError>,
        running: &mut HashMap<String, Running>,
        shards: &mut HashMap<String, ShardState>,
    ) {
        let (key, outcome) = match joined {
            Ok(done) => done,
            Err(e) => {
                // A panic in a consumer is a bug; the shard is restarted like a failure.
                let key = running.iter().find(|(_, r)| r.task == e.id()).map(|(k, _)| k.clone());
                error!(error = %e, shard_id = ?key, "a shard consumer task panicked");
                let Some(key) = key else { return };
                (key, ConsumerOutcome::Failed(crate::shard::consumer::ConsumerError::Panicked(e.to_string())))
            }
        };
        let uptime = running.remove(&key).map_or(Duration::ZERO, |r| r.started.elapsed());
        let state = shards.entry(key.clone()).or_default();
        match outcome {
            ConsumerOutcome::ShardEnded => {
                state.ended = true;
                state.backoff = None;
            }
            ConsumerOutcome::LeaseLost | ConsumerOutcome::ShutdownComplete => {
                state.backoff = None;
                state.retry_at = None;
            }
            ConsumerOutcome::Failed(error) => {
                let backoff = state.backoff.get_or_insert_with(|| Backoff::new(BackoffPolicy::restarts()));
                let delay = backoff.next_delay_after(uptime);
                state.retry_at = Some(Instant::now() + delay);
                error!(
                    shard_id = %key, %error, retry_in = ?delay,
                    "shard consumer failed; restarting this shard from its last checkpoint"
                );
            }
        }
    }

    async fn shut_down(
        &self,
        renewer: &LeaseRenewer,
        consumers: &mut JoinSet<(String, ConsumerOutcome)>,
        running: &mut HashMap<String, Running>,
        shards: &mut HashMap<String, ShardState>,
        consumers_stop: &CancellationToken,
    ) {
        info!(shards = running.len(), grace = ?self.config.shutdown_grace, "shutting down: asking record processors to finish");
        consumers_stop.cancel();
        let deadline = tokio::time::sleep(self.config.shutdown_grace);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                joined = consumers.join_next() => match joined {
                    Some(joined) => self.on_consumer_done(joined, running, shards),
                    None => break,
                },
                () = &mut deadline => {
                    warn!(remaining = consumers.len(), "shutdownGraceMillis expired; killing the remaining record processors");
                    consumers.shutdown().await;
                    break;
                }
            }
        }
        let released = renewer.release_all().await;
        info!(released, "released leases");
    }
}

/// Sleeps until `at`, or forever when `None` (for an optional `select!` branch).
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn log_progress(shards: &HashMap<String, ShardState>, running: &HashMap<String, Running>) {
    use std::sync::atomic::Ordering::Relaxed;
    let mut keys: Vec<&String> = shards.keys().collect();
    keys.sort();
    for key in keys {
        let p = &shards[key].progress;
        let checkpoint = p.checkpoint.lock().map(|c| c.clone()).unwrap_or_default();
        info!(
            shard_id = %key,
            running = running.contains_key(key),
            records = p.records.load(Relaxed),
            batches = p.batches.load(Relaxed),
            millis_behind_latest = p.millis_behind_latest.load(Relaxed),
            checkpoint = %checkpoint,
            "progress"
        );
    }
}

/// Checkpoints of one lease tenure, written through the renewer (conditioned on the held
/// counter; refused without a write once the tenure is over).
struct TenureCheckpoints {
    renewer: LeaseRenewer,
    token: ConcurrencyToken,
}

#[async_trait::async_trait]
impl CheckpointStore for TenureCheckpoints {
    async fn write_checkpoint(
        &self,
        shard_id: &str,
        checkpoint: &crate::sequence::ExtendedSequenceNumber,
    ) -> Result<(), CheckpointFailure> {
        self.renewer.checkpoint(shard_id, self.token, checkpoint).await
    }
}

#[cfg(test)]
mod tests;
