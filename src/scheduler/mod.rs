//! The scheduler: owns this worker's leases and runs one shard consumer per held lease.
//!
//! Tasks (all owned here; nothing is detached):
//! - the lease renewer ([`crate::lease::renewer`]) renews held leases every
//!   `failover/3` and cancels a lease's token the moment it is lost;
//! - the lease assignment ([`crate::lease::assignment`]; KCL 2.x: the taker, one round at
//!   start and then every `2 × (failover + 25 ms)`) decides which leases this worker holds;
//!   leases it acquires are in the renewer's held set and get a consumer at once, leases it
//!   hands off are stopped gracefully one by one;
//! - one consumer task per held lease ([`crate::shard::consumer`]), owned by the
//!   [`ConsumerSet`] with a [`consumers::ShardHandle`] per shard. A consumer that fails
//!   (processor crash, protocol error, stream error) is restarted from the lease's stored
//!   checkpoint with exponential backoff while the lease is still held; other shards are
//!   not affected; a processor that cannot start at all (missing program) is retried
//!   slowly and reported;
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
//! Shutdown ([`Shutdown::request`]): stop taking, ask every consumer to shut down gracefully
//! (`shutdownRequested`, then `leaseLost`) within `shutdownGraceMillis`, kill what is left,
//! then release the held leases in DynamoDB (owner removed, conditioned on the counter) so
//! other workers — Java or multilangd — can take them at once instead of waiting
//! `failoverTimeMillis`. [`Shutdown::force`] (a second signal) at any point kills every
//! record processor at once and makes one release attempt bounded by
//! [`FORCED_RELEASE_TIMEOUT`].
//!
//! The scheduler publishes a [`WorkerStatus`] snapshot ([`Scheduler::status`]) after every
//! dispatch round and every change; operations read it and never reach in here.

pub mod audit;
pub mod cleanup;
pub mod consumers;
pub mod hierarchy;
#[cfg(any(test, feature = "test-support"))]
pub mod sim;
pub mod sync;

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use self::audit::{AuditSettings, Auditor};
use self::cleanup::{CleanupSettings, LeaseCleaner};
pub use self::consumers::ConsumerSet;
use self::consumers::Finished;
use crate::config::{Config, InitialPosition};
use crate::lease::assignment::{LeaseAssignment, TakerAssignment};
use crate::lease::recent::RecentScan;
use crate::lease::renewer::{ConcurrencyToken, LeaseRenewer, RenewerConfig};
use crate::lease::taker::TakerSettings;
use crate::lease::{LeaseError, LeaseStore};
use crate::shard::checkpointer::{CheckpointFailure, CheckpointStore};
use crate::shard::consumer::{ConsumerContext, ConsumerOutcome, ConsumerSettings};
use crate::shard::processor::ProcessorLauncher;
use crate::shutdown::Shutdown;
use crate::status::{RenewalStatus, StatusPublisher, StatusReceiver, WorkerPhase, WorkerStatus};
use crate::stream::shards::ShardLister;
use crate::stream::ShardReaderFactory;

/// How often held leases are compared with running consumers (Java: 1 s).
const DISPATCH_INTERVAL: Duration = Duration::from_secs(1);
/// How often per-shard progress is logged.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(10);
/// Start-up attempts before giving up (Java: `maxInitializationAttempts` = 20).
const MAX_INITIALIZATION_ATTEMPTS: u32 = 20;
/// How often the KCL 3.x migration state is re-read (by default).
pub const MIGRATION_CHECK_INTERVAL: Duration = Duration::from_secs(60);
/// How long a forced stop (second signal) may spend releasing the held leases.
pub const FORCED_RELEASE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long an assignment round in flight may still run once a stop is requested.
pub const ROUND_GRACE_AT_SHUTDOWN: Duration = Duration::from_secs(2);
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
    /// At run time the fleet's `Migration3.0` changed to a state that runs the other lease
    /// protocol (2.x → 3.x: `3X_WITH_ROLLBACK`/`3X`; 3.x → 2.x: a rollback). The worker stopped
    /// its record processors gracefully and released its leases; the caller rejoins the fleet
    /// with the protocol the state now asks for.
    #[error("the application's fleet switched its lease protocol ({client_version} in {table}); rejoining")]
    ProtocolSwitch {
        /// The new `cv` value.
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
    migration_check_interval: Duration,
    /// The worker runs the KCL 3.x protocol: a fleet in 3.x mode is joined, not refused.
    kcl3: bool,
    status: StatusPublisher,
    assignment: Option<Box<dyn LeaseAssignment>>,
    /// The taker's latest scan, reused by the audit's leader check.
    recent_scan: RecentScan,
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
        let mut initial = WorkerStatus::starting(&worker_id, &config.application_name, store.table_name());
        initial.failover_time = config.failover_time;
        let (status, _) = StatusPublisher::new(initial);
        Self {
            config,
            worker_id,
            store,
            lister,
            readers,
            launcher,
            audit,
            cleanup,
            migration_check_interval: MIGRATION_CHECK_INTERVAL,
            kcl3: false,
            status,
            assignment: None,
            recent_scan: RecentScan::new(),
        }
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

    /// Replaces how often the KCL 3.x migration state is re-read (default
    /// [`MIGRATION_CHECK_INTERVAL`]).
    #[must_use]
    pub fn with_migration_check_interval(mut self, interval: Duration) -> Self {
        self.migration_check_interval = interval.max(MIN_TICK);
        self
    }

    /// Runs the KCL 3.x protocol through `assignment`: a fleet whose `Migration3.0` says 3.x
    /// is joined instead of refused.
    #[must_use]
    pub fn with_kcl3_assignment(mut self, assignment: Box<dyn LeaseAssignment>) -> Self {
        self.kcl3 = true;
        self.with_assignment(assignment)
    }

    /// Publishes the worker's status through `status` (a worker that rejoins after a
    /// protocol switch keeps one publisher for operations).
    #[must_use]
    pub fn with_status_publisher(mut self, status: StatusPublisher) -> Self {
        let fresh = self.status.current();
        status.update(|s| *s = (*fresh).clone());
        self.status = status;
        self
    }

    /// Replaces the lease assignment (default: the KCL 2.x [`TakerAssignment`]).
    #[must_use]
    pub fn with_assignment(mut self, assignment: Box<dyn LeaseAssignment>) -> Self {
        self.assignment = Some(assignment);
        self
    }

    /// The worker's status snapshots, from start to stop.
    #[must_use]
    pub fn status(&self) -> StatusReceiver {
        self.status.subscribe()
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

    /// At start-up (`running` false) a 2.x worker refuses a fleet in 3.x mode; at run time a
    /// `Migration3.0` asking for the other protocol than this worker runs is a switch (a 3.x
    /// worker switches on a rollback state, not on a vanished item, as Java).
    async fn check_migration_state(&self, running: bool) -> Result<(), SchedulerError> {
        match self.store.migration_state().await {
            Ok(Some(state)) if running && state.is_3x_mode() != self.kcl3 => {
                Err(SchedulerError::ProtocolSwitch { client_version: state.client_version, table: state.table })
            }
            Ok(Some(state)) if !self.kcl3 && state.is_3x_mode() => {
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
        self.check_migration_state(false).await?;
        let existing = self.store.list_leases().await.map_err(SchedulerError::LeaseTable)?;
        self.lease_table_ok();
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

    /// Runs until a stop is requested, then shuts down gracefully (or at once when forced).
    ///
    /// # Errors
    /// Only start-up failures and a fleet switching to KCL 3.x are fatal; at run time
    /// failures are per shard and retried.
    pub async fn run(mut self, shutdown: impl Into<Shutdown>) -> Result<(), SchedulerError> {
        let shutdown = shutdown.into();
        info!(worker_id = %self.worker_id, table = %self.store.table_name(), "worker starting");
        let assignment = self.assignment.take().unwrap_or_else(|| {
            Box::new(
                TakerAssignment::new(self.store.clone(), self.worker_id.clone(), self.taker_settings())
                    .with_recent_scan(self.recent_scan.clone()),
            )
        });
        let result = self.run_inner(assignment, &shutdown).await;
        self.status.update(|s| s.phase = WorkerPhase::Stopped);
        result
    }

    async fn run_inner(&self, assignment: Box<dyn LeaseAssignment>, shutdown: &Shutdown) -> Result<(), SchedulerError> {
        let mut attempt = 1;
        loop {
            let prepared = tokio::select! {
                () = shutdown.requested() => return Ok(()),
                prepared = self.prepare() => prepared,
            };
            match prepared {
                Ok(()) => break,
                Err(e @ SchedulerError::Fleet3x { .. }) => return Err(e),
                Err(e) if attempt >= MAX_INITIALIZATION_ATTEMPTS => return Err(e),
                Err(e) => {
                    let pause = self.config.scheduler_initialization_backoff;
                    warn!(error = %e, attempt, retry_in = ?pause, "worker initialization failed; retrying");
                    self.lease_table_error(&e);
                    attempt += 1;
                    tokio::select! {
                        () = shutdown.requested() => return Ok(()),
                        () = tokio::time::sleep(pause) => {}
                    }
                }
            }
        }
        let renewer =
            LeaseRenewer::new(self.store.clone(), self.worker_id.clone(), RenewerConfig::from_config(&self.config));
        let renewer_stop = CancellationToken::new();
        let mut background = tokio::task::JoinSet::new();
        background.spawn({
            let renewer = renewer.clone();
            let stop = renewer_stop.clone();
            async move { renewer.run(stop).await }
        });

        let result = self.main_loop(assignment, &renewer, shutdown).await;

        renewer_stop.cancel();
        while background.join_next().await.is_some() {}
        result
    }

    async fn main_loop(
        &self,
        mut assignment: Box<dyn LeaseAssignment>,
        renewer: &LeaseRenewer,
        shutdown: &Shutdown,
    ) -> Result<(), SchedulerError> {
        self.status.update(|s| s.lease_protocol = assignment.protocol().to_owned());
        let mut consumers = ConsumerSet::new();

        let mut dispatch_tick = tokio::time::interval(DISPATCH_INTERVAL);
        dispatch_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut progress_tick = tokio::time::interval_at(Instant::now() + PROGRESS_INTERVAL, PROGRESS_INTERVAL);
        let mut migration_tick =
            tokio::time::interval_at(Instant::now() + self.migration_check_interval, self.migration_check_interval);
        migration_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut auditor = Auditor::new(
            self.worker_id.clone(),
            self.store.clone(),
            self.lister.clone(),
            self.config.initial_position,
            self.config.ignore_unexpected_child_shards,
            self.audit.clone(),
        )
        .with_recent_scan(self.recent_scan.clone());
        let audit_interval = self.audit.interval.max(MIN_TICK);
        let mut audit_tick = tokio::time::interval_at(Instant::now() + self.audit.first_run, audit_interval);
        audit_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut cleaner = LeaseCleaner::new(self.store.clone(), self.lister.clone(), self.cleanup.clone());
        let mut cleanup_tick = tokio::time::interval(self.cleanup.tick.max(MIN_TICK));
        cleanup_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut fatal = None;

        loop {
            tokio::select! {
                () = shutdown.requested() => break,
                () = tokio::time::sleep_until(assignment.next_round()) => {
                    self.assign(assignment.as_mut(), renewer, &mut consumers, shutdown).await;
                }
                _ = dispatch_tick.tick() => self.dispatch(renewer, &mut consumers),
                Some(finished) = consumers.join_next() => {
                    self.on_finished(finished, assignment.as_mut(), renewer, shutdown).await;
                    self.dispatch(renewer, &mut consumers);
                }
                _ = progress_tick.tick() => log_progress(&consumers),
                _ = audit_tick.tick() => {
                    auditor.set_leader(assignment.leads_shard_sync());
                    self.run_audit(&mut auditor, shutdown).await;
                }
                _ = cleanup_tick.tick() => self.clean_up(&mut cleaner, renewer, &mut consumers, shutdown).await,
                _ = migration_tick.tick() => {
                    let checked = tokio::select! {
                        () = shutdown.requested() => Ok(()),
                        checked = self.check_migration_state(true) => checked,
                    };
                    if let Err(e) = checked {
                        warn!(error = %e, "stopping the record processors and releasing the leases: the fleet switched its lease protocol");
                        fatal = Some(e);
                        break;
                    }
                }
            }
        }
        self.shut_down(renewer, &mut consumers, shutdown).await;
        if let Err(e) = assignment.stopped().await {
            warn!(error = %e, protocol = assignment.protocol(), "could not give up the worker's fleet role on shutdown");
        }
        log_progress(&consumers);
        fatal.map_or(Ok(()), Err)
    }

    /// One assignment round; starts consumers for acquired leases and stops the ones to
    /// hand off.
    ///
    /// A round is not dropped midway when a stop is requested: a take that DynamoDB applied
    /// but the renewer never recorded would leave a lease owned in the table that this
    /// worker neither renews nor releases. It gets [`ROUND_GRACE_AT_SHUTDOWN`] to finish
    /// (its leases are then released with the others); a round still stuck after that is
    /// abandoned like a crashed worker's (the lease expires after `failoverTimeMillis`).
    async fn assign(
        &self,
        assignment: &mut dyn LeaseAssignment,
        renewer: &LeaseRenewer,
        consumers: &mut ConsumerSet,
        shutdown: &Shutdown,
    ) {
        let round = {
            let round = assignment.round(renewer);
            tokio::pin!(round);
            tokio::select! {
                round = &mut round => round,
                () = shutdown.requested() => {
                    match tokio::time::timeout(ROUND_GRACE_AT_SHUTDOWN, round).await {
                        Ok(Ok(_)) => info!("finished the lease assignment round before stopping"),
                        Ok(Err(e)) => warn!(error = %e, "lease assignment round failed while stopping"),
                        Err(_) => warn!(grace = ?ROUND_GRACE_AT_SHUTDOWN, "abandoned a lease assignment round at shutdown"),
                    }
                    return;
                }
            }
        };
        match round {
            Ok(round) => {
                self.lease_table_ok();
                for key in &round.hand_off {
                    if consumers.stop_one(key) {
                        info!(shard_id = %key, "handing the lease off: stopping its record processor gracefully");
                    } else if let Err(e) = assignment.handed_off(renewer, key).await {
                        warn!(shard_id = %key, error = %e, "lease hand-off failed; the lease will expire instead");
                    }
                }
                self.dispatch(renewer, consumers);
            }
            Err(e) => {
                warn!(error = %e, protocol = assignment.protocol(), "lease assignment round failed");
                self.lease_table_error(&e);
            }
        }
    }

    /// Follows up on a consumer that ended: completes a hand-off; after a shard end, lets the
    /// assignment take the children at once (the caller dispatches them).
    ///
    /// Neither is raced with shutdown: a take or a transfer cut short after DynamoDB applied
    /// it would leave a lease owned but neither renewed nor released.
    async fn on_finished(
        &self,
        finished: Finished,
        assignment: &mut dyn LeaseAssignment,
        renewer: &LeaseRenewer,
        shutdown: &Shutdown,
    ) {
        if matches!(finished.outcome, ConsumerOutcome::ShardEnded) && !shutdown.is_requested() {
            if let Err(e) = assignment.shard_ended(renewer, &finished.shard_id).await {
                warn!(shard_id = %finished.shard_id, error = %e, "could not take the child leases now; the next round will");
            }
        }
        if finished.handed_off && !matches!(finished.outcome, ConsumerOutcome::ShardEnded) {
            if let Err(e) = assignment.handed_off(renewer, &finished.shard_id).await {
                warn!(shard_id = %finished.shard_id, error = %e, "lease hand-off failed; the lease will expire instead");
            }
        }
    }

    /// One lease audit (a no-op unless this worker is the leader); cut short by shutdown.
    async fn run_audit(&self, auditor: &mut Auditor, shutdown: &Shutdown) {
        tokio::select! {
            () = shutdown.requested() => {}
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
        consumers: &mut ConsumerSet,
        shutdown: &Shutdown,
    ) {
        for key in consumers.ended() {
            cleaner.enqueue(key);
        }
        let removed = tokio::select! {
            () = shutdown.requested() => return,
            removed = cleaner.run_due() => removed,
        };
        for key in removed {
            renewer.drop_lease(&key);
            consumers.forget(&key);
        }
    }

    /// Starts a consumer for every held lease that has none (and is not backing off), then
    /// publishes the status.
    fn dispatch(&self, renewer: &LeaseRenewer, consumers: &mut ConsumerSet) {
        let now = Instant::now();
        let held = renewer.held();
        for held in &held {
            let key = &held.lease.key;
            // An unsafe lease (not renewed within the failover time) gets no new consumer
            // until a renewal succeeds; a running one pauses by itself.
            if !consumers.may_start(key, now) || !renewer.is_safe(key, held.concurrency_token) {
                continue;
            }
            let ctx = ConsumerContext {
                lease: held.lease.clone(),
                leases: self.store.clone(),
                checkpoints: Arc::new(TenureCheckpoints { renewer: renewer.clone(), token: held.concurrency_token }),
                readers: self.readers.clone(),
                launcher: self.launcher.clone(),
                settings: self.consumer_settings(),
                lease_lost: held.lost.clone(),
                shutdown: consumers.new_stop_token(),
                progress: consumers.progress(key),
            };
            consumers.start(ctx);
        }
        let held: std::collections::HashSet<&str> = held.iter().map(|h| h.lease.key.as_str()).collect();
        consumers.mark_held(|key| held.contains(key));
        self.publish_consumers(renewer, consumers);
    }

    async fn shut_down(&self, renewer: &LeaseRenewer, consumers: &mut ConsumerSet, shutdown: &Shutdown) {
        self.status.update(|s| s.phase = WorkerPhase::ShuttingDown);
        info!(shards = consumers.running(), grace = ?self.config.shutdown_grace, "shutting down: asking record processors to finish");
        let forced = tokio::select! {
            () = consumers.shut_down(self.config.shutdown_grace) => false,
            () = shutdown.forced() => true,
        };
        if forced {
            warn!(remaining = consumers.running(), "second signal: killing every record processor now");
            consumers.abort_all().await;
            match tokio::time::timeout(FORCED_RELEASE_TIMEOUT, renewer.release_all()).await {
                Ok(released) => info!(released, "released leases"),
                Err(_) => {
                    warn!(timeout = ?FORCED_RELEASE_TIMEOUT, "releasing the leases took too long; the rest will expire")
                }
            }
        } else {
            let released = tokio::select! {
                released = renewer.release_all() => Some(released),
                () = shutdown.forced() => tokio::time::timeout(FORCED_RELEASE_TIMEOUT, renewer.release_all()).await.ok(),
            };
            info!(released = ?released, "released leases");
        }
        self.publish_consumers(renewer, consumers);
    }

    fn publish_consumers(&self, renewer: &LeaseRenewer, consumers: &ConsumerSet) {
        let shards = consumers.statuses();
        let renewal = renewer.last_round().map(|(at, round)| RenewalStatus {
            at,
            ok: round.failed == 0,
            renewed: round.renewed,
            failed: round.failed,
        });
        self.status.update(|s| {
            if s.phase == WorkerPhase::Starting {
                s.phase = WorkerPhase::Running;
            }
            if let Some(renewal) = renewal {
                if renewal.ok {
                    s.lease_table_ok_at = Some(s.lease_table_ok_at.map_or(renewal.at, |t| t.max(renewal.at)));
                }
                s.last_renewal = Some(renewal);
            }
            s.shards = shards;
        });
    }

    fn lease_table_ok(&self) {
        self.status.update(|s| {
            s.lease_table_ok_at = Some(Instant::now());
            s.lease_table_error = None;
        });
    }

    fn lease_table_error(&self, error: &dyn std::fmt::Display) {
        let message = error.to_string();
        self.status.update(|s| s.lease_table_error = Some(message));
    }
}

fn log_progress(consumers: &ConsumerSet) {
    for status in consumers.statuses() {
        info!(
            shard_id = %status.shard_id,
            state = status.phase.as_str(),
            records = status.records,
            batches = status.batches,
            millis_behind_latest = status.millis_behind_latest.unwrap_or(-1),
            checkpoint = %status.checkpoint,
            restarts = status.restarts,
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

    fn delivery_allowed(&self, shard_id: &str) -> bool {
        self.renewer.is_safe(shard_id, self.token)
    }
}

#[cfg(test)]
mod tests;
