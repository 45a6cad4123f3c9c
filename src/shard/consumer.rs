//! The shard consumer state machine.
//!
//! ```text
//! WaitingOnParents ──> Initializing ──> Processing ──┬─> ShardEnding  (shardEnded, SHARD_END)
//!                                                    ├─> LeaseLost    (leaseLost)
//!                                                    └─> ShuttingDown (shutdownRequested, leaseLost)
//! ```
//!
//! One consumer owns one lease tenure, one [`ShardReader`] and one record processor. It
//! never outlives its tenure: the lease-lost token is cancelled by the renewer the moment
//! the lease is gone. A processor failure (crash, exit, protocol error, timeout) ends the
//! consumer with [`ConsumerOutcome::Failed`]; the scheduler restarts it from the last
//! checkpoint with backoff, so only this shard is affected and records after the
//! checkpoint are delivered again (at-least-once, like every KCL).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::checkpointer::{CheckpointStore, ShardCheckpointer};
use super::processor::{ProcessorConnection, ProcessorFailure, ProcessorLauncher};
use crate::lease::{Lease, LeaseError, LeaseStore};
use crate::protocol::messages::Action;
use crate::protocol::session::ProtocolErrorKind;
use crate::sequence::{ExtendedSequenceNumber, Position};
use crate::status::{ShardPhase, ShardStatus};
use crate::stream::{ChildShard, RecordBatch, ShardReader, ShardReaderFactory, StartingPosition, StreamError};
use crate::telemetry::{self, ChildOutcome, Event, ProcessorAction};

/// Live counters of one shard, shared with the scheduler for progress reports and the
/// status snapshot ([`crate::status`]).
#[derive(Debug)]
pub struct ShardProgress {
    /// The consumer's current state (the scheduler overrides it while backing off or ended).
    pub phase: Mutex<Option<ShardPhase>>,
    /// Record processors started (all tenures in this process).
    pub child_starts: AtomicU64,
    /// The sequence number of the last record delivered.
    pub last_sequence_delivered: Mutex<Option<String>>,
    /// Since when an action has been outstanding at the processor.
    pub action_since: Mutex<Option<Instant>>,
    /// When the processor last acknowledged a `processRecords`.
    pub last_delivery: Mutex<Option<Instant>>,
    /// Records handed to the processor (all tenures in this process).
    pub records: AtomicU64,
    /// `processRecords` actions completed.
    pub batches: AtomicU64,
    /// Payload bytes handed to the processor.
    pub bytes: AtomicU64,
    /// The last `millisBehindLatest` seen (-1 when unknown).
    pub millis_behind_latest: AtomicI64,
    /// The last stored checkpoint, as text.
    pub checkpoint: Mutex<String>,
    /// Times delivery was paused because the lease was unsafe (all tenures).
    pub pauses: AtomicU64,
}

impl Default for ShardProgress {
    fn default() -> Self {
        Self {
            phase: Mutex::default(),
            child_starts: AtomicU64::default(),
            last_sequence_delivered: Mutex::default(),
            action_since: Mutex::default(),
            last_delivery: Mutex::default(),
            records: AtomicU64::default(),
            batches: AtomicU64::default(),
            bytes: AtomicU64::default(),
            millis_behind_latest: AtomicI64::new(-1),
            checkpoint: Mutex::default(),
            pauses: AtomicU64::default(),
        }
    }
}

impl ShardProgress {
    fn set_checkpoint(&self, checkpoint: &ExtendedSequenceNumber) {
        *lock(&self.checkpoint) = checkpoint.to_string();
    }

    fn set_phase(&self, phase: ShardPhase) {
        *lock(&self.phase) = Some(phase);
    }

    fn set_action_since(&self, since: Option<Instant>) {
        *lock(&self.action_since) = since;
    }

    /// The shard's status as the consumer sees it; `phase` is used when the consumer has
    /// not reported one (the scheduler fills in restarts and failures).
    #[must_use]
    pub fn status(&self, shard_id: &str, phase: ShardPhase) -> ShardStatus {
        let millis = self.millis_behind_latest.load(Ordering::Relaxed);
        ShardStatus {
            shard_id: shard_id.to_owned(),
            phase: lock(&self.phase).clone().unwrap_or(phase),
            records: self.records.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
            last_sequence_delivered: lock(&self.last_sequence_delivered).clone(),
            checkpoint: lock(&self.checkpoint).clone(),
            millis_behind_latest: (millis >= 0).then_some(millis),
            child_starts: self.child_starts.load(Ordering::Relaxed),
            restarts: 0,
            last_failure: None,
            action_in_flight_since: *lock(&self.action_since),
            last_delivery: *lock(&self.last_delivery),
        }
    }

    /// Forgets the consumer's own phase (its task ended).
    pub fn clear_phase(&self) {
        *lock(&self.phase) = None;
        self.set_action_since(None);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// How often a paused consumer checks whether its lease is safe again.
const PAUSE_POLL: Duration = Duration::from_millis(100);

/// Settings a consumer needs from the configuration.
#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    /// `parentShardPollIntervalMillis`.
    pub parent_shard_poll_interval: Duration,
    /// `callProcessRecordsEvenForEmptyRecordList`.
    pub call_process_records_even_for_empty_record_list: bool,
    /// `initialPositionInStreamExtended` in epoch ms, for `AT_TIMESTAMP` leases.
    pub at_timestamp_millis: Option<i64>,
    /// Backoff after a failed store call (`taskBackoffTimeMillis`).
    pub task_backoff: Duration,
    /// Warn when one processor action takes longer (`logWarningForTaskAfterMillis`).
    pub log_warning_for_task_after: Option<Duration>,
}

/// Everything one consumer works with.
pub struct ConsumerContext {
    /// The lease as taken (its checkpoint is where processing resumes).
    pub lease: Lease,
    /// The lease table (parents, child leases).
    pub leases: Arc<dyn LeaseStore>,
    /// Where checkpoints are written (the held-lease set).
    pub checkpoints: Arc<dyn CheckpointStore>,
    /// Opens the shard reader.
    pub readers: Arc<dyn ShardReaderFactory>,
    /// Starts the record processor.
    pub launcher: Arc<dyn ProcessorLauncher>,
    /// Settings.
    pub settings: ConsumerSettings,
    /// Cancelled when this worker lost the lease.
    pub lease_lost: CancellationToken,
    /// Cancelled when the worker shuts down gracefully.
    pub shutdown: CancellationToken,
    /// Counters for reports.
    pub progress: Arc<ShardProgress>,
}

/// How a consumer ended.
#[derive(Debug)]
pub enum ConsumerOutcome {
    /// The shard is closed and `SHARD_END` is checkpointed; child leases exist.
    ShardEnded,
    /// The lease was lost; the processor got `leaseLost`.
    LeaseLost,
    /// Graceful shutdown finished (`shutdownRequested`, then `leaseLost`).
    ShutdownComplete,
    /// Processing failed; the scheduler restarts the shard from its last checkpoint.
    Failed(ConsumerError),
}

/// Why a consumer failed.
#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    /// The record processor failed.
    #[error(transparent)]
    Processor(#[from] ProcessorFailure),
    /// Reading the shard failed.
    #[error(transparent)]
    Stream(#[from] StreamError),
    /// The lease table failed.
    #[error(transparent)]
    Lease(#[from] LeaseError),
    /// The consumer task panicked (a bug); the shard is restarted.
    #[error("shard consumer panicked: {0}")]
    Panicked(String),
    /// The processor returned from `shardEnded` without checkpointing `SHARD_END`.
    #[error(
        "the record processor did not checkpoint at shardEnded (last checkpoint {0}); \
         the shard stays open and its children wait; the processor will be restarted"
    )]
    NoShardEndCheckpoint(String),
}

impl ConsumerError {
    /// True when restarting at once cannot help (e.g. the record processor's program is
    /// missing); see [`ProcessorFailure::is_persistent`].
    #[must_use]
    pub fn is_persistent(&self) -> bool {
        matches!(self, Self::Processor(failure) if failure.is_persistent())
    }
}

enum Next {
    Stop(ConsumerOutcome),
    ShardEnd(Vec<ChildShard>),
}

/// Runs one lease tenure of one shard to its end.
pub async fn run_consumer(ctx: ConsumerContext) -> ConsumerOutcome {
    let shard_id = ctx.lease.key.clone();
    let span = tracing::info_span!("shard", shard_id = %shard_id);
    tracing::Instrument::instrument(Consumer::new(ctx).run(), span).await
}

struct Consumer {
    ctx: ConsumerContext,
    checkpointer: ShardCheckpointer,
}

impl Consumer {
    fn new(ctx: ConsumerContext) -> Self {
        let checkpointer =
            ShardCheckpointer::new(ctx.lease.key.clone(), ctx.checkpoints.clone(), ctx.lease.checkpoint.clone());
        ctx.progress.set_checkpoint(&ctx.lease.checkpoint);
        Self { ctx, checkpointer }
    }

    fn shard_id(&self) -> &str {
        &self.ctx.lease.key
    }

    async fn run(mut self) -> ConsumerOutcome {
        if self.ctx.lease.checkpoint.position == Position::ShardEnd {
            info!("lease is already at SHARD_END; nothing to process");
            return ConsumerOutcome::ShardEnded;
        }
        if let Some(outcome) = self.wait_on_parents().await {
            return outcome;
        }
        self.ctx.progress.set_phase(ShardPhase::Initializing);
        let mut processor = match self.initialize().await {
            Ok(p) => p,
            Err(outcome) => return outcome,
        };
        self.ctx.progress.set_phase(ShardPhase::Processing);
        let next = self.process(processor.as_mut()).await;
        self.ctx.progress.set_phase(ShardPhase::ShuttingDown);
        let outcome = match next {
            Next::Stop(outcome) => self.finish(processor.as_mut(), outcome).await,
            Next::ShardEnd(children) => self.end_shard(processor.as_mut(), children).await,
        };
        processor.shutdown().await;
        telemetry::record(Event::ChildExited { shard_id: self.shard_id(), outcome: child_outcome(&outcome) });
        outcome
    }

    /// WaitingOnParents: every parent lease must be at `SHARD_END` or gone.
    async fn wait_on_parents(&self) -> Option<ConsumerOutcome> {
        let parents: Vec<String> = self.ctx.lease.parent_shard_ids.iter().cloned().collect();
        if parents.is_empty() {
            return None;
        }
        self.ctx.progress.set_phase(ShardPhase::WaitingOnParents);
        loop {
            let mut blocked = None;
            let mut failed = false;
            for parent in &parents {
                match self.ctx.leases.get_lease(parent).await {
                    Ok(Some(lease)) if lease.checkpoint.position != Position::ShardEnd => {
                        blocked = Some(parent.clone());
                        break;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        warn!(error = %e, parent = %parent, "cannot read parent lease; retrying");
                        failed = true;
                        break;
                    }
                }
            }
            if blocked.is_none() && !failed {
                return None;
            }
            if let Some(parent) = &blocked {
                debug!(parent = %parent, "waiting for parent shard to reach SHARD_END");
            }
            let pause =
                if failed { self.ctx.settings.task_backoff } else { self.ctx.settings.parent_shard_poll_interval };
            tokio::select! {
                () = self.ctx.lease_lost.cancelled() => return Some(ConsumerOutcome::LeaseLost),
                () = self.ctx.shutdown.cancelled() => return Some(ConsumerOutcome::ShutdownComplete),
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// Initializing: start the processor and send `initialize`.
    async fn initialize(&mut self) -> Result<Box<dyn ProcessorConnection>, ConsumerOutcome> {
        let mut processor =
            self.ctx.launcher.launch(self.shard_id()).await.map_err(|e| ConsumerOutcome::Failed(e.into()))?;
        self.ctx.progress.child_starts.fetch_add(1, Ordering::Relaxed);
        telemetry::record(Event::ChildStarted { shard_id: self.shard_id() });
        let checkpoint = self.ctx.lease.checkpoint.clone();
        let action = Action::Initialize { checkpoint: Some(&checkpoint) };
        let started = Instant::now();
        let result = processor.perform(action, None).await;
        telemetry::record(Event::ProcessorAction {
            shard_id: self.shard_id(),
            action: ProcessorAction::Initialize,
            duration: started.elapsed(),
            success: result.is_ok(),
        });
        if let Err(e) = result {
            processor.shutdown().await;
            let outcome = ConsumerOutcome::Failed(e.into());
            telemetry::record(Event::ChildExited { shard_id: self.shard_id(), outcome: child_outcome(&outcome) });
            return Err(outcome);
        }
        info!(checkpoint = %checkpoint, "record processor initialized");
        Ok(processor)
    }

    fn starting_position(&self) -> StartingPosition {
        let checkpoint = &self.ctx.lease.checkpoint;
        match &checkpoint.position {
            Position::TrimHorizon => StartingPosition::TrimHorizon,
            Position::Latest => StartingPosition::Latest,
            Position::AtTimestamp => match self.ctx.settings.at_timestamp_millis {
                Some(ms) => StartingPosition::AtTimestamp(ms),
                None => {
                    warn!("lease is at AT_TIMESTAMP but initialPositionInStreamExtended is not configured; using TRIM_HORIZON");
                    StartingPosition::TrimHorizon
                }
            },
            Position::Sequence(_) | Position::ShardEnd => StartingPosition::AfterCheckpoint(checkpoint.clone()),
        }
    }

    /// Processing: read batches and deliver them until the shard ends or the tenure stops.
    async fn process(&mut self, processor: &mut dyn ProcessorConnection) -> Next {
        let start = self.starting_position();
        let mut reader: Box<dyn ShardReader> = tokio::select! {
            () = self.ctx.lease_lost.cancelled() => return Next::Stop(ConsumerOutcome::LeaseLost),
            () = self.ctx.shutdown.cancelled() => return Next::Stop(ConsumerOutcome::ShutdownComplete),
            opened = self.ctx.readers.open(&self.ctx.lease.key, start) => match opened {
                Ok(reader) => reader,
                Err(e) => return Next::Stop(ConsumerOutcome::Failed(e.into())),
            },
        };
        loop {
            let batch = tokio::select! {
                biased;
                () = self.ctx.lease_lost.cancelled() => return Next::Stop(ConsumerOutcome::LeaseLost),
                () = self.ctx.shutdown.cancelled() => return Next::Stop(ConsumerOutcome::ShutdownComplete),
                failure = processor.exited() => return Next::Stop(ConsumerOutcome::Failed(failure.into())),
                batch = reader.next_batch() => batch,
            };
            let batch = match batch {
                Ok(batch) => batch,
                Err(e) => return Next::Stop(ConsumerOutcome::Failed(e.into())),
            };
            if let Some(outcome) = self.pause_while_unsafe(processor).await {
                return Next::Stop(outcome);
            }
            if let Err(e) = self.deliver(processor, &batch).await {
                return Next::Stop(ConsumerOutcome::Failed(e.into()));
            }
            if let Some(children) = batch.shard_end {
                return Next::ShardEnd(children);
            }
        }
    }

    /// Holds the next delivery while the lease may have expired elsewhere (not renewed
    /// within the failover time, e.g. DynamoDB unreachable). The record processor stays up
    /// and nothing is replayed: delivery resumes with this batch once a renewal succeeds on
    /// the unchanged counter. `Some` when the tenure ends meanwhile.
    async fn pause_while_unsafe(&mut self, processor: &mut dyn ProcessorConnection) -> Option<ConsumerOutcome> {
        if self.ctx.checkpoints.delivery_allowed(self.shard_id()) {
            return None;
        }
        let paused = Instant::now();
        warn!("lease not renewed within failoverTimeMillis (lease table unreachable?): pausing delivery until a renewal succeeds");
        self.ctx.progress.set_phase(ShardPhase::Paused);
        self.ctx.progress.pauses.fetch_add(1, Ordering::Relaxed);
        telemetry::record(Event::DeliveryPaused { shard_id: self.shard_id() });
        loop {
            tokio::select! {
                biased;
                () = self.ctx.lease_lost.cancelled() => return Some(ConsumerOutcome::LeaseLost),
                () = self.ctx.shutdown.cancelled() => return Some(ConsumerOutcome::ShutdownComplete),
                failure = processor.exited() => return Some(ConsumerOutcome::Failed(failure.into())),
                () = tokio::time::sleep(PAUSE_POLL) => {}
            }
            if self.ctx.checkpoints.delivery_allowed(self.shard_id()) {
                let paused_for = paused.elapsed();
                info!(paused_for = ?paused_for, "lease renewed: resuming delivery with the same record processor");
                self.ctx.progress.set_phase(ShardPhase::Processing);
                return None;
            }
        }
    }

    async fn deliver(
        &mut self,
        processor: &mut dyn ProcessorConnection,
        batch: &RecordBatch,
    ) -> Result<(), ProcessorFailure> {
        if let Some(ms) = batch.millis_behind_latest {
            self.ctx.progress.millis_behind_latest.store(ms, Ordering::Relaxed);
        }
        if batch.records.is_empty() && !self.ctx.settings.call_process_records_even_for_empty_record_list {
            return Ok(());
        }
        if let Some(last) = batch.records.last() {
            self.checkpointer.delivered(last.extended_sequence_number());
            *lock(&self.ctx.progress.last_sequence_delivered) = Some(last.sequence_number.to_string());
        }
        let action =
            Action::ProcessRecords { records: &batch.records, millis_behind_latest: batch.millis_behind_latest };
        let started = Instant::now();
        self.ctx.progress.set_action_since(Some(started));
        let result = processor.perform(action, Some(&mut self.checkpointer)).await;
        self.ctx.progress.set_action_since(None);
        let took = started.elapsed();
        if self.ctx.settings.log_warning_for_task_after.is_some_and(|limit| took > limit) {
            warn!(took = ?took, records = batch.records.len(), "processRecords took longer than logWarningForTaskAfterMillis");
        }
        self.ctx.progress.set_checkpoint(self.checkpointer.last_checkpoint());
        let shard_id = self.ctx.lease.key.as_str();
        let action = ProcessorAction::ProcessRecords;
        telemetry::record(Event::ProcessorAction { shard_id, action, duration: took, success: result.is_ok() });
        result?;
        telemetry::record(Event::RecordsProcessed {
            shard_id,
            records: batch.records.len() as u64,
            bytes: batch.payload_bytes as u64,
            millis_behind_latest: batch.millis_behind_latest,
            duration: took,
        });
        let progress = &self.ctx.progress;
        progress.records.fetch_add(batch.records.len() as u64, Ordering::Relaxed);
        progress.bytes.fetch_add(batch.payload_bytes as u64, Ordering::Relaxed);
        progress.batches.fetch_add(1, Ordering::Relaxed);
        *lock(&progress.last_delivery) = Some(Instant::now());
        Ok(())
    }

    /// ShuttingDown: graceful (`shutdownRequested` then `leaseLost`) or lease lost.
    async fn finish(&mut self, processor: &mut dyn ProcessorConnection, outcome: ConsumerOutcome) -> ConsumerOutcome {
        match outcome {
            ConsumerOutcome::ShutdownComplete => {
                let started = Instant::now();
                let result = processor.perform(Action::ShutdownRequested, Some(&mut self.checkpointer)).await;
                telemetry::record(Event::ProcessorAction {
                    shard_id: &self.ctx.lease.key,
                    action: ProcessorAction::Shutdown,
                    duration: started.elapsed(),
                    success: result.is_ok(),
                });
                if let Err(e) = result {
                    warn!(error = %e, "record processor failed during shutdownRequested");
                    self.ctx.progress.set_checkpoint(self.checkpointer.last_checkpoint());
                    return ConsumerOutcome::ShutdownComplete;
                }
                self.ctx.progress.set_checkpoint(self.checkpointer.last_checkpoint());
                if let Err(e) = processor.perform(Action::LeaseLost, None).await {
                    warn!(error = %e, "record processor failed during leaseLost");
                }
                info!(checkpoint = %self.checkpointer.last_checkpoint(), "shard shut down gracefully");
                ConsumerOutcome::ShutdownComplete
            }
            ConsumerOutcome::LeaseLost => {
                info!("lease lost; telling the record processor");
                if let Err(e) = processor.perform(Action::LeaseLost, None).await {
                    warn!(error = %e, "record processor failed during leaseLost");
                }
                ConsumerOutcome::LeaseLost
            }
            other => other,
        }
    }

    /// ShardEnding: create child leases, `shardEnded`, verify `SHARD_END` was checkpointed.
    async fn end_shard(
        &mut self,
        processor: &mut dyn ProcessorConnection,
        children: Vec<ChildShard>,
    ) -> ConsumerOutcome {
        if let Err(e) = self.create_child_leases(&children).await {
            return ConsumerOutcome::Failed(e.into());
        }
        self.checkpointer.mark_shard_ended();
        let result = processor.perform(Action::ShardEnded, Some(&mut self.checkpointer)).await;
        self.ctx.progress.set_checkpoint(self.checkpointer.last_checkpoint());
        if let Err(e) = result {
            return ConsumerOutcome::Failed(e.into());
        }
        if !self.checkpointer.is_at_shard_end() {
            let last = self.checkpointer.last_checkpoint().to_string();
            error!(checkpoint = %last, "record processor did not checkpoint at shardEnded");
            return ConsumerOutcome::Failed(ConsumerError::NoShardEndCheckpoint(last));
        }
        info!(children = children.len(), "shard ended; SHARD_END checkpointed");
        ConsumerOutcome::ShardEnded
    }

    async fn create_child_leases(&self, children: &[ChildShard]) -> Result<(), LeaseError> {
        if children.is_empty() {
            return Ok(());
        }
        for child in children {
            let mut lease = Lease::new(child.shard_id.clone(), ExtendedSequenceNumber::new(Position::TrimHorizon));
            lease.parent_shard_ids = child.parent_shards.iter().cloned().collect();
            lease.hash_key_range = Some(child.hash_key_range.clone());
            if self.ctx.leases.create_lease_if_absent(&lease).await? {
                info!(child = %child.shard_id, "created child lease");
            }
        }
        let ids = children.iter().map(|c| c.shard_id.clone()).collect();
        self.ctx.leases.update_child_shard_ids(self.shard_id(), &ids).await?;
        Ok(())
    }
}

/// The consumer on its own: in-memory lease table and stream, in-process processors, a
/// recording checkpoint store; no scheduler.
/// How the record processor of a finished tenure ended, for telemetry.
fn child_outcome(outcome: &ConsumerOutcome) -> ChildOutcome {
    match outcome {
        ConsumerOutcome::Failed(ConsumerError::Processor(failure)) => match failure {
            ProcessorFailure::Exited { exit: crate::child::ChildExit::Signal(_), .. } => ChildOutcome::Killed,
            ProcessorFailure::Exited { .. } | ProcessorFailure::Launch(_) => ChildOutcome::Failed,
            ProcessorFailure::Protocol(e) if matches!(e.kind, ProtocolErrorKind::Timeout { .. }) => {
                ChildOutcome::TimedOut
            }
            ProcessorFailure::Protocol(_) => ChildOutcome::ProtocolError,
        },
        _ => ChildOutcome::Clean,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::lease::memory::InMemoryLeaseStore;
    use crate::model::CheckpointFailure;
    use crate::shard::fake::{FakeBehaviour, FakeEvent, FakeLauncher};
    use crate::stream::memory::InMemoryStream;

    struct Recorder(Mutex<Vec<String>>, std::sync::atomic::AtomicBool);

    impl Default for Recorder {
        fn default() -> Self {
            Self(Mutex::default(), std::sync::atomic::AtomicBool::new(true))
        }
    }

    /// The child outcome for telemetry is read from the failure's type, not its message.
    #[test]
    fn child_outcomes_are_typed() {
        use crate::protocol::messages::ActionKind;
        use crate::protocol::ProtocolError;
        let protocol = |kind| {
            ConsumerOutcome::Failed(ConsumerError::Processor(ProcessorFailure::Protocol(Box::new(ProtocolError {
                shard_id: "shardId-0".into(),
                action: ActionKind::ProcessRecords,
                kind,
                last_sent: None,
                last_received: None,
            }))))
        };
        let timeout = ProtocolErrorKind::Timeout { after: Duration::from_secs(1), waiting_for: "a status" };
        assert_eq!(child_outcome(&protocol(timeout)), ChildOutcome::TimedOut);
        let mismatch = ProtocolErrorKind::StatusMismatch { expected: ActionKind::ProcessRecords, got: None };
        assert_eq!(child_outcome(&protocol(mismatch)), ChildOutcome::ProtocolError);
        assert_eq!(child_outcome(&protocol(ProtocolErrorKind::ChildClosedStdout)), ChildOutcome::ProtocolError);
        assert_eq!(child_outcome(&ConsumerOutcome::LeaseLost), ChildOutcome::Clean);
    }

    #[async_trait::async_trait]
    impl CheckpointStore for Recorder {
        async fn write_checkpoint(
            &self,
            _: &str,
            checkpoint: &ExtendedSequenceNumber,
        ) -> Result<(), CheckpointFailure> {
            self.0.lock().unwrap().push(checkpoint.to_string());
            Ok(())
        }

        fn delivery_allowed(&self, _: &str) -> bool {
            self.1.load(Ordering::SeqCst)
        }
    }

    struct Setup {
        stream: InMemoryStream,
        store: InMemoryLeaseStore,
        launcher: FakeLauncher,
        checkpoints: Arc<Recorder>,
        lost: CancellationToken,
        shutdown: CancellationToken,
        progress: Arc<ShardProgress>,
    }

    impl Setup {
        fn new(shards: u32) -> Self {
            Self {
                stream: InMemoryStream::with_shards(shards).with_max_records(10),
                store: InMemoryLeaseStore::new("app"),
                launcher: FakeLauncher::new(FakeBehaviour::default()),
                checkpoints: Arc::default(),
                lost: CancellationToken::new(),
                shutdown: CancellationToken::new(),
                progress: Arc::default(),
            }
        }

        fn shard(&self, i: usize) -> String {
            self.stream.shards()[i].shard_id.clone()
        }

        fn spawn(&self, lease: Lease) -> tokio::task::JoinHandle<ConsumerOutcome> {
            let ctx = ConsumerContext {
                lease,
                leases: Arc::new(self.store.clone()),
                checkpoints: self.checkpoints.clone(),
                readers: Arc::new(self.stream.clone()),
                launcher: Arc::new(self.launcher.clone()),
                settings: ConsumerSettings {
                    parent_shard_poll_interval: Duration::from_millis(20),
                    call_process_records_even_for_empty_record_list: false,
                    at_timestamp_millis: None,
                    task_backoff: Duration::from_millis(20),
                    log_warning_for_task_after: None,
                },
                lease_lost: self.lost.clone(),
                shutdown: self.shutdown.clone(),
                progress: self.progress.clone(),
            };
            tokio::spawn(run_consumer(ctx))
        }

        async fn wait(&self, what: &str, done: impl Fn(&Self) -> bool) {
            tokio::time::timeout(Duration::from_secs(10), async {
                while !done(self) {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
        }
    }

    fn lease(key: &str) -> Lease {
        Lease::new(key, ExtendedSequenceNumber::new(Position::TrimHorizon))
    }

    #[tokio::test]
    async fn delivers_then_shuts_down_gracefully() {
        let s = Setup::new(1);
        let shard = s.shard(0);
        for i in 0..25 {
            s.stream.put(&shard, "pk", format!("r{i}"));
        }
        let task = s.spawn(lease(&shard));
        s.wait("25 records", |s| s.launcher.records_seen_ordered(&shard).len() == 25).await;
        s.wait("processing", |s| *s.progress.phase.lock().unwrap() == Some(ShardPhase::Processing)).await;
        s.shutdown.cancel();
        let outcome = task.await.unwrap();
        assert!(matches!(outcome, ConsumerOutcome::ShutdownComplete), "{outcome:?}");
        let events = s.launcher.events(&shard);
        let tail: Vec<&FakeEvent> = events.iter().rev().take(3).collect();
        assert_eq!(tail, [&FakeEvent::LeaseLost, &FakeEvent::Checkpoint(None), &FakeEvent::ShutdownRequested]);
        let last = s.stream.records(&shard).last().unwrap().sequence_number.to_string();
        assert_eq!(s.checkpoints.0.lock().unwrap().last(), Some(&last));
        assert_eq!(s.progress.records.load(Ordering::Relaxed), 25);
        assert_eq!(s.progress.child_starts.load(Ordering::Relaxed), 1);
        assert_eq!(*s.progress.last_sequence_delivered.lock().unwrap(), Some(last));
    }

    #[tokio::test]
    async fn a_lost_lease_ends_with_lease_lost_only() {
        let s = Setup::new(1);
        let shard = s.shard(0);
        s.stream.put(&shard, "pk", "r");
        let task = s.spawn(lease(&shard));
        s.wait("the record", |s| s.launcher.records_seen_ordered(&shard).len() == 1).await;
        s.lost.cancel();
        assert!(matches!(task.await.unwrap(), ConsumerOutcome::LeaseLost));
        let events = s.launcher.events(&shard);
        assert_eq!(events.last(), Some(&FakeEvent::LeaseLost));
        assert!(!events.contains(&FakeEvent::ShutdownRequested));
    }

    #[tokio::test]
    async fn an_unsafe_lease_pauses_delivery_and_resumes_the_same_processor() {
        let s = Setup::new(1);
        let shard = s.shard(0);
        s.stream.put(&shard, "pk", "r0");
        let task = s.spawn(lease(&shard));
        s.wait("the first record", |s| s.launcher.records_seen_ordered(&shard).len() == 1).await;
        s.checkpoints.1.store(false, Ordering::SeqCst);
        for i in 1..=5 {
            s.stream.put(&shard, "pk", format!("r{i}"));
        }
        s.wait("paused", |s| *s.progress.phase.lock().unwrap() == Some(ShardPhase::Paused)).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(s.launcher.records_seen_ordered(&shard).len(), 1, "nothing delivered under an unsafe lease");
        assert_eq!(s.progress.pauses.load(Ordering::Relaxed), 1);
        s.checkpoints.1.store(true, Ordering::SeqCst);
        s.wait("the rest", |s| s.launcher.records_seen_ordered(&shard).len() == 6).await;
        assert_eq!(*s.progress.phase.lock().unwrap(), Some(ShardPhase::Processing));
        let records = s.launcher.events(&shard).iter().filter(|e| matches!(e, FakeEvent::Record(..))).count();
        assert_eq!(records, 6, "no replay");
        assert_eq!(s.launcher.launches(&shard), 1, "the same processor");
        // Paused again, then the lease is lost: leaseLost, nothing more delivered.
        s.checkpoints.1.store(false, Ordering::SeqCst);
        s.stream.put(&shard, "pk", "r6");
        s.wait("paused again", |s| *s.progress.phase.lock().unwrap() == Some(ShardPhase::Paused)).await;
        s.lost.cancel();
        assert!(matches!(task.await.unwrap(), ConsumerOutcome::LeaseLost));
        assert_eq!(s.launcher.records_seen_ordered(&shard).len(), 6);
        assert_eq!(s.launcher.events(&shard).last(), Some(&FakeEvent::LeaseLost));
    }

    #[tokio::test]
    async fn a_child_waits_for_its_parent_then_a_split_ends_the_parent() {
        let s = Setup::new(1);
        let parent = s.shard(0);
        s.stream.put(&parent, "pk", "before");
        let children = s.stream.split_shard(&parent);
        s.store.put(lease(&parent));
        let mut child_lease = lease(&children[0].shard_id);
        child_lease.parent_shard_ids.insert(parent.clone());
        let child = s.spawn(child_lease);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(s.launcher.launches(&children[0].shard_id), 0, "waits on the parent");
        assert_eq!(*s.progress.phase.lock().unwrap(), Some(ShardPhase::WaitingOnParents));

        let parent_outcome = clone_setup(&s).spawn(lease(&parent)).await.unwrap();
        assert!(matches!(parent_outcome, ConsumerOutcome::ShardEnded), "{parent_outcome:?}");
        assert_eq!(s.checkpoints.0.lock().unwrap().last().map(String::as_str), Some("SHARD_END"));
        for c in &children {
            let created = s.store.lease(&c.shard_id).expect("child lease created at the parent's end");
            assert!(created.parent_shard_ids.contains(&parent));
        }
        // The recorder does not write the table: mark the parent's end there, as the lease
        // layer would, and the child starts.
        s.store.modify(&parent, |l| l.checkpoint = ExtendedSequenceNumber::shard_end());
        s.wait("the child's processor", |s| s.launcher.launches(&children[0].shard_id) == 1).await;
        s.shutdown.cancel();
        assert!(matches!(child.await.unwrap(), ConsumerOutcome::ShutdownComplete));
    }

    #[tokio::test]
    async fn a_lease_at_shard_end_starts_no_processor() {
        let s = Setup::new(1);
        let shard = s.shard(0);
        let outcome = s.spawn(Lease::new(&shard, ExtendedSequenceNumber::shard_end())).await.unwrap();
        assert!(matches!(outcome, ConsumerOutcome::ShardEnded));
        assert_eq!(s.launcher.launches(&shard), 0);
    }

    fn clone_setup(s: &Setup) -> Setup {
        Setup {
            stream: s.stream.clone(),
            store: s.store.clone(),
            launcher: s.launcher.clone(),
            checkpoints: s.checkpoints.clone(),
            lost: CancellationToken::new(),
            shutdown: CancellationToken::new(),
            progress: Arc::default(),
        }
    }
}
