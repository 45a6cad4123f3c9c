//! A point-in-time picture of the worker, for operations.
//!
//! The scheduler publishes a [`WorkerStatus`] through a [`StatusPublisher`] (a
//! `tokio::sync::watch` channel) after every dispatch round and on every change of a shard's
//! state; readers — the Prometheus endpoint, `/readyz`, systemd status lines, the `status`
//! command — hold a [`StatusReceiver`] and never reach into the scheduler. The types here
//! depend on nothing else in the crate, so any module may use them.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::time::Instant;

/// Where the worker is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WorkerPhase {
    /// Preparing the lease table and the first shard sync.
    #[default]
    Starting,
    /// Initialised: the lease table is ready and the first lease round has run.
    Running,
    /// A shutdown was requested; record processors are being stopped.
    ShuttingDown,
    /// The scheduler returned.
    Stopped,
}

impl WorkerPhase {
    /// A lower-case name for text output.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Running => "running",
            Self::ShuttingDown => "shutting-down",
            Self::Stopped => "stopped",
        }
    }
}

/// The state of one shard's consumer as the scheduler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardPhase {
    /// The lease is held; its consumer has not started yet.
    Pending,
    /// Waiting for the parent shards to reach `SHARD_END`.
    WaitingOnParents,
    /// Starting the record processor (`initialize`).
    Initializing,
    /// Reading records and delivering them.
    Processing,
    /// Delivery paused: the lease was not renewed within `failoverTimeMillis` (the lease
    /// table cannot be reached), so it may have expired elsewhere. The record processor
    /// stays up; delivery resumes after the next successful renewal.
    Paused,
    /// The consumer is stopping (shutdown requested, hand-off or lease lost).
    ShuttingDown,
    /// The consumer failed and is restarted from the last checkpoint at `retry_at`.
    BackingOff {
        /// When the next attempt is due.
        retry_at: Instant,
    },
    /// The shard is closed and `SHARD_END` was checkpointed.
    Ended,
}

impl ShardPhase {
    /// A lower-case name for text output and metric labels.
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::WaitingOnParents => "waiting-on-parents",
            Self::Initializing => "initializing",
            Self::Processing => "processing",
            Self::Paused => "paused",
            Self::ShuttingDown => "shutting-down",
            Self::BackingOff { .. } => "backing-off",
            Self::Ended => "ended",
        }
    }
}

/// One held shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardStatus {
    /// The shard id (= lease key).
    pub shard_id: String,
    /// The consumer's state.
    pub phase: ShardPhase,
    /// Records handed to the processor (all tenures in this process).
    pub records: u64,
    /// Payload bytes handed to the processor.
    pub bytes: u64,
    /// `processRecords` actions completed.
    pub batches: u64,
    /// The sequence number of the last record delivered, if any.
    pub last_sequence_delivered: Option<String>,
    /// The last stored checkpoint, as text.
    pub checkpoint: String,
    /// The last `millisBehindLatest` seen, if any.
    pub millis_behind_latest: Option<i64>,
    /// Record processors started for this shard (all tenures).
    pub child_starts: u64,
    /// Consumer restarts after failures.
    pub restarts: u64,
    /// The last failure, if the consumer failed since it last ran cleanly.
    pub last_failure: Option<String>,
    /// Since when an action (`processRecords`, …) has been outstanding at the processor.
    pub action_in_flight_since: Option<Instant>,
    /// When the processor last acknowledged a `processRecords`.
    pub last_delivery: Option<Instant>,
}

/// The last lease renewal round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenewalStatus {
    /// When the round finished.
    pub at: Instant,
    /// True when every held lease was renewed (or there was none to renew).
    pub ok: bool,
    /// Leases renewed.
    pub renewed: usize,
    /// Renewals that failed (errors, throttling) while the lease is still held.
    pub failed: usize,
}

/// The worker as a whole.
#[derive(Debug, Clone)]
pub struct WorkerStatus {
    /// This worker's id.
    pub worker_id: String,
    /// `applicationName`.
    pub application: String,
    /// The lease table.
    pub lease_table: String,
    /// Which lease protocol the worker runs (e.g. `KCL 2.x`).
    pub lease_protocol: String,
    /// Where the worker is in its life.
    pub phase: WorkerPhase,
    /// When the process started (wall clock, for display).
    pub started_at: SystemTime,
    /// `failoverTimeMillis`.
    pub failover_time: Duration,
    /// The last renewal round, once one ran.
    pub last_renewal: Option<RenewalStatus>,
    /// When a call to the lease table last succeeded (renewal, scan or checkpoint).
    pub lease_table_ok_at: Option<Instant>,
    /// The last lease-table error since then, if any.
    pub lease_table_error: Option<String>,
    /// Every shard this worker holds or works on, sorted by id.
    pub shards: Vec<ShardStatus>,
    /// When this snapshot was taken.
    pub updated_at: Instant,
}

impl WorkerStatus {
    /// A status for a worker that has not started yet.
    #[must_use]
    pub fn starting(
        worker_id: impl Into<String>,
        application: impl Into<String>,
        lease_table: impl Into<String>,
    ) -> Self {
        Self {
            worker_id: worker_id.into(),
            application: application.into(),
            lease_table: lease_table.into(),
            lease_protocol: String::new(),
            phase: WorkerPhase::Starting,
            started_at: SystemTime::now(),
            failover_time: Duration::ZERO,
            last_renewal: None,
            lease_table_ok_at: None,
            lease_table_error: None,
            shards: Vec::new(),
            updated_at: Instant::now(),
        }
    }

    /// The shard with `shard_id`, if held.
    #[must_use]
    pub fn shard(&self, shard_id: &str) -> Option<&ShardStatus> {
        self.shards.iter().find(|s| s.shard_id == shard_id)
    }
}

/// The reading side: cheap to clone; `borrow()` gives the newest snapshot.
pub type StatusReceiver = watch::Receiver<Arc<WorkerStatus>>;

/// The writing side, owned by the scheduler.
#[derive(Debug, Clone)]
pub struct StatusPublisher {
    tx: Arc<watch::Sender<Arc<WorkerStatus>>>,
}

impl StatusPublisher {
    /// A publisher starting from `initial`, and a receiver of it.
    #[must_use]
    pub fn new(initial: WorkerStatus) -> (Self, StatusReceiver) {
        let (tx, rx) = watch::channel(Arc::new(initial));
        (Self { tx: Arc::new(tx) }, rx)
    }

    /// Another receiver.
    #[must_use]
    pub fn subscribe(&self) -> StatusReceiver {
        self.tx.subscribe()
    }

    /// The newest snapshot.
    #[must_use]
    pub fn current(&self) -> Arc<WorkerStatus> {
        self.tx.borrow().clone()
    }

    /// Replaces the snapshot by `f(current)` and notifies the receivers.
    pub fn update(&self, f: impl FnOnce(&mut WorkerStatus)) {
        self.tx.send_modify(|status| {
            let mut next = WorkerStatus::clone(status);
            f(&mut next);
            next.updated_at = Instant::now();
            *status = Arc::new(next);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn receivers_see_updates() {
        let (publisher, mut rx) = StatusPublisher::new(WorkerStatus::starting("w1", "app", "app"));
        assert_eq!(rx.borrow().phase, WorkerPhase::Starting);
        publisher.update(|s| s.phase = WorkerPhase::Running);
        rx.changed().await.expect("publisher alive");
        assert_eq!(rx.borrow_and_update().phase, WorkerPhase::Running);
        assert_eq!(publisher.current().worker_id, "w1");
        assert!(publisher.current().shard("shardId-0").is_none());
    }
}
