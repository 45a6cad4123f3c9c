//! Telemetry events: what happened (a lease was taken, a child exited, a checkpoint took
//! 12 ms, a GetRecords call was throttled), as opposed to what *is* (the status snapshot in
//! [`crate::status`]).
//!
//! Lower layers (lease, stream, shard, scheduler) call [`record`] with a typed [`Event`].
//! Nothing is allocated or locked beyond one uncontended read lock when no recorder is
//! installed, so the calls can stay in place in tests and in `metricsLevel = NONE` runs.
//! The daemon installs one [`Recorder`] per run ([`install`]) holding the sinks — the
//! Prometheus registry and the CloudWatch publisher queue in the `ops` module — and each sink
//! turns events into its own representation. A sink must not block: it updates atomics or
//! `try_send`s into a bounded queue.
//!
//! This module depends on nothing else in the crate, so any module may use it.

use std::sync::{Arc, RwLock};
use std::time::Duration;

/// The service an AWS call went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Service {
    /// Amazon Kinesis Data Streams.
    Kinesis,
    /// Amazon DynamoDB (the lease table).
    DynamoDb,
    /// Amazon CloudWatch (metrics publishing).
    CloudWatch,
}

impl Service {
    /// A lower-case label.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Kinesis => "kinesis",
            Self::DynamoDb => "dynamodb",
            Self::CloudWatch => "cloudwatch",
        }
    }
}

/// Why an AWS call failed, coarsely (a metric label, not a decision).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CallErrorClass {
    /// Throttled by the service.
    Throttled,
    /// Network, timeout or 5xx: worth retrying.
    Transient,
    /// A conditional write lost (DynamoDB `ConditionalCheckFailedException`).
    Conflict,
    /// The resource does not exist.
    NotFound,
    /// An expired or rejected iterator or pagination token.
    Iterator,
    /// Anything else (access denied, validation, ...).
    Other,
}

impl CallErrorClass {
    /// A lower-case label.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Throttled => "throttled",
            Self::Transient => "transient",
            Self::Conflict => "conflict",
            Self::NotFound => "not_found",
            Self::Iterator => "iterator",
            Self::Other => "other",
        }
    }
}

/// How a record processor (child process) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChildOutcome {
    /// Exited with status 0 after the daemon closed its stdin.
    Clean,
    /// Exited with a non-zero status, or on its own before being asked to.
    Failed,
    /// Killed by a signal (including the daemon's kill after the stop grace period).
    Killed,
    /// Stopped answering within `timeoutInSeconds`.
    TimedOut,
    /// Broke the protocol (malformed or unexpected message).
    ProtocolError,
}

impl ChildOutcome {
    /// A lower-case label.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Clean => "clean",
            Self::Failed => "failed",
            Self::Killed => "killed",
            Self::TimedOut => "timed_out",
            Self::ProtocolError => "protocol_error",
        }
    }
}

/// How a lease came to this worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TakeKind {
    /// The lease had no owner or its owner stopped renewing it.
    Expired,
    /// Taken from a live worker to balance the fleet.
    Stolen,
}

/// A lease-table operation of the lease protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LeaseOperation {
    /// Scan of the whole table (taker).
    List,
    /// Taking one lease (conditional owner change).
    Take,
    /// Renewing one held lease.
    Renew,
    /// Creating a lease for a new shard; the initial position is the lease's checkpoint.
    Create {
        /// `TRIM_HORIZON`, `LATEST` or `AT_TIMESTAMP`.
        initial_position: &'static str,
    },
}

/// A record-processor action and how long the processor took for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProcessorAction {
    /// `initialize`.
    Initialize,
    /// `processRecords`.
    ProcessRecords,
    /// `leaseLost`, `shardEnded` or `shutdownRequested`.
    Shutdown,
}

/// One thing that happened. Shard ids and worker ids are borrowed: sinks copy what they keep.
#[derive(Debug, Clone, PartialEq)]
pub enum Event<'a> {
    /// A call to an AWS service finished (after the SDK, before any retry of ours), reported by
    /// the caller with the shard it was for. Feeds the KCL's per-shard CloudWatch metrics;
    /// Prometheus counts [`Event::SdkCall`] instead, which covers every call.
    AwsCall {
        /// The service.
        service: Service,
        /// The shard the call was for, if any (GetRecords, GetShardIterator, a checkpoint).
        shard_id: Option<&'a str>,
        /// The API name, e.g. `GetRecords`, `UpdateItem`.
        operation: &'static str,
        /// How long the call took.
        duration: Duration,
        /// `None` when it succeeded.
        error: Option<CallErrorClass>,
    },
    /// An AWS SDK call finished, as seen by the interceptor on every client (one per call,
    /// the SDK's own retries included; a call abandoned by its caller counts as `Transient`).
    /// This is the source of the per-call latency and error metrics; [`Event::AwsCall`] is
    /// the reader's per-shard view of its own calls (for the KCL's per-shard metrics).
    SdkCall {
        /// The service.
        service: Service,
        /// The API name, e.g. `UpdateItem`; `Other` for an operation multilangd does not call.
        operation: &'static str,
        /// From the SDK's hook before serialization to its last.
        duration: Duration,
        /// `None` when it succeeded.
        error: Option<CallErrorClass>,
    },
    /// One taker round (KCL `TakeLeases`).
    TakeLeasesRound {
        /// This worker's id.
        worker_id: &'a str,
        /// Leases taken in this round.
        taken: usize,
        /// Leases the round wanted but did not get (lost races, failures).
        untaken: usize,
        /// Expired leases seen.
        expired: usize,
        /// Leases in the table.
        total: usize,
        /// Workers seen in the table (with at least one live lease).
        workers: usize,
        /// Leases this worker should hold for a fair share.
        needed: usize,
        /// Leases the round decided to take.
        to_take: usize,
        /// Leases not taken because `maxLeasesForWorker` was reached.
        spillover: usize,
        /// Leases expired for a long time (KCL `VeryOldLeases`, with priority assignment).
        very_old: usize,
        /// How long the round took.
        duration: Duration,
        /// False when the round failed (e.g. the table scan failed).
        success: bool,
    },
    /// A lease was taken by this worker.
    LeaseTaken {
        /// The shard id.
        shard_id: &'a str,
        /// How.
        kind: TakeKind,
    },
    /// A lease held by this worker was lost (another worker took it, or it was dropped).
    LeaseLost {
        /// The shard id.
        shard_id: &'a str,
    },
    /// A shard consumer paused delivery: its lease was not renewed within the failover time
    /// and may have expired elsewhere (it resumes after a successful renewal).
    DeliveryPaused {
        /// The shard id.
        shard_id: &'a str,
    },
    /// One renewal round (KCL `RenewAllLeases`).
    RenewalRound {
        /// This worker's id.
        worker_id: &'a str,
        /// Leases held after the round.
        current: usize,
        /// Leases lost in the round.
        lost: usize,
        /// Renewals that failed without losing the lease.
        failed: usize,
        /// How long the round took.
        duration: Duration,
    },
    /// One lease-table operation of the lease protocol (KCL `ListLeases`, `TakeLease`,
    /// `RenewLease`, `CreateLease`), whatever DynamoDB calls it took. Checkpoint writes
    /// (KCL `UpdateLease`) are [`Event::Checkpoint`].
    LeaseCall {
        /// Which operation.
        op: LeaseOperation,
        /// The lease (shard) it was for, if one.
        shard_id: Option<&'a str>,
        /// How long it took.
        duration: Duration,
        /// Whether it succeeded (a lost conditional write is a failure).
        success: bool,
    },
    /// The leader's periodic shard-sync check (KCL `PeriodicShardSyncManager`).
    PeriodicShardSync {
        /// Streams whose leases have holes (0 or 1: one stream per daemon).
        streams_with_partial_leases: usize,
        /// Streams a sync was started for.
        streams_to_sync: usize,
        /// Syncs skipped because the holes have not persisted long enough.
        skipped: usize,
        /// How long the check took.
        duration: Duration,
        /// Whether it succeeded.
        success: bool,
    },
    /// A shard sync (list shards, create missing leases) finished.
    ShardSync {
        /// Leases created.
        created: usize,
        /// How long it took.
        duration: Duration,
        /// Whether it succeeded.
        success: bool,
    },
    /// The worker finished (or failed) its initialisation.
    WorkerInitialized {
        /// How long it took.
        duration: Duration,
        /// Whether it succeeded.
        success: bool,
    },
    /// Whether this worker is the KCL 2.x leader (checked by the audit).
    LeaderChecked {
        /// This worker's id.
        worker_id: &'a str,
        /// True when it is the leader.
        is_leader: bool,
    },
    /// A record processor was started for a shard.
    ChildStarted {
        /// The shard id.
        shard_id: &'a str,
    },
    /// A record processor ended.
    ChildExited {
        /// The shard id.
        shard_id: &'a str,
        /// How.
        outcome: ChildOutcome,
    },
    /// A shard consumer is restarted after a failure.
    ConsumerRestarted {
        /// The shard id.
        shard_id: &'a str,
    },
    /// A record processor answered an action.
    ProcessorAction {
        /// The shard id.
        shard_id: &'a str,
        /// Which action.
        action: ProcessorAction,
        /// From sending the action to the processor's `status` reply.
        duration: Duration,
        /// False when the processor failed the action (crash, timeout, protocol error).
        success: bool,
    },
    /// A batch of records was fetched and delivered to the processor (KCL `ProcessTask`).
    RecordsProcessed {
        /// The shard id.
        shard_id: &'a str,
        /// Records delivered (after de-aggregation).
        records: u64,
        /// Payload bytes delivered.
        bytes: u64,
        /// The batch's `millisBehindLatest`, when the service sent one.
        millis_behind_latest: Option<i64>,
        /// How long the whole task took (fetch, delivery, reply).
        duration: Duration,
    },
    /// A GetRecords call found its iterator expired.
    ExpiredIterator {
        /// The shard id.
        shard_id: &'a str,
    },
    /// A checkpoint write to the lease table finished.
    Checkpoint {
        /// The shard id.
        shard_id: &'a str,
        /// How long the write took.
        duration: Duration,
        /// `None` when it succeeded; else the failure class (`lease_lost`, `throttled`, ...).
        failure: Option<&'static str>,
    },
    /// A held shard is stalled: the processor has not answered, or records wait undelivered.
    ShardStalled {
        /// The shard id.
        shard_id: &'a str,
        /// For how long.
        for_: Duration,
    },
}

/// A consumer of events. Implementations must be cheap and must never block.
pub trait Sink: Send + Sync {
    /// Takes one event.
    fn record(&self, event: &Event<'_>);
}

/// A set of sinks; cheap to clone.
#[derive(Clone, Default)]
pub struct Recorder {
    sinks: Arc<[Arc<dyn Sink>]>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder").field("sinks", &self.sinks.len()).finish()
    }
}

impl Recorder {
    /// A recorder feeding `sinks`.
    #[must_use]
    pub fn new(sinks: Vec<Arc<dyn Sink>>) -> Self {
        Self { sinks: sinks.into() }
    }

    /// True when there is no sink.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.sinks.is_empty()
    }

    /// Hands `event` to every sink.
    pub fn record(&self, event: &Event<'_>) {
        for sink in self.sinks.iter() {
            sink.record(event);
        }
    }
}

static GLOBAL: RwLock<Option<Recorder>> = RwLock::new(None);

/// Hands `event` to the installed recorder, if any.
pub fn record(event: Event<'_>) {
    // A poisoned lock only means a sink panicked once; events are best effort.
    let guard = match GLOBAL.read() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    };
    if let Some(recorder) = guard.as_ref() {
        recorder.record(&event);
    }
}

/// Records an AWS call that started `started` ago.
pub fn aws_call(service: Service, operation: &'static str, started: std::time::Instant, error: Option<CallErrorClass>) {
    record(Event::AwsCall { service, shard_id: None, operation, duration: started.elapsed(), error });
}

/// Installs `recorder` as the process-wide recorder until the returned guard is dropped.
/// A second install replaces the first (the first guard's drop then removes the second:
/// the daemon installs one recorder per run).
#[must_use = "the recorder is removed when the guard is dropped"]
pub fn install(recorder: Recorder) -> InstallGuard {
    let mut guard = match GLOBAL.write() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    };
    *guard = Some(recorder);
    InstallGuard { _private: () }
}

/// Removes the installed recorder on drop.
#[derive(Debug)]
pub struct InstallGuard {
    _private: (),
}

impl Drop for InstallGuard {
    fn drop(&mut self) {
        let mut guard = match GLOBAL.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        *guard = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Collect(Mutex<Vec<String>>);

    impl Sink for Collect {
        fn record(&self, event: &Event<'_>) {
            if let Ok(mut v) = self.0.lock() {
                v.push(format!("{event:?}"));
            }
        }
    }

    #[test]
    fn recorder_fans_out_and_global_install_is_scoped() {
        let a = Arc::new(Collect::default());
        let b = Arc::new(Collect::default());
        let recorder = Recorder::new(vec![a.clone(), b.clone()]);
        recorder.record(&Event::LeaseLost { shard_id: "shardId-1" });
        assert_eq!(a.0.lock().map(|v| v.len()).unwrap_or(0), 1);
        assert_eq!(b.0.lock().map(|v| v.len()).unwrap_or(0), 1);

        // Global: only while installed. (The only test in the crate that installs one.)
        record(Event::ChildStarted { shard_id: "before" });
        {
            let _guard = install(Recorder::new(vec![a.clone()]));
            record(Event::ChildStarted { shard_id: "during" });
        }
        record(Event::ChildStarted { shard_id: "after" });
        let seen = a.0.lock().map(|v| v.clone()).unwrap_or_default();
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert!(seen[1].contains("during"));
    }
}
