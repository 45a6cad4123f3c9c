//! An in-process record processor for tests of the consumer and the scheduler.
//!
//! It behaves like a well-written KCL client: it records every record it is given in a
//! shared ledger, checkpoints after every batch (configurable) and at `shardEnded`, and can
//! be told to fail after a number of batches to exercise restarts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;

use super::processor::{ProcessorConnection, ProcessorFailure, ProcessorLauncher};
use crate::child::{ChildExit, SpawnError};
use crate::protocol::messages::Action;
use crate::protocol::{ActionKind, CheckpointError, CheckpointRequest, Checkpointer};

/// One event a fake processor saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FakeEvent {
    /// `initialize` with the checkpoint text.
    Initialize(String),
    /// A record: (sequence number, sub-sequence).
    Record(String, u64),
    /// A checkpoint attempt and its outcome (`None` = success, else the Java error name).
    Checkpoint(Option<&'static str>),
    /// `shutdownRequested`.
    ShutdownRequested,
    /// `leaseLost`.
    LeaseLost,
    /// `shardEnded`.
    ShardEnded,
}

/// How fake processors behave.
#[derive(Debug, Clone)]
pub struct FakeBehaviour {
    /// Checkpoint after every batch.
    pub checkpoint_each_batch: bool,
    /// Checkpoint at `shardEnded`.
    pub checkpoint_at_shard_end: bool,
    /// Fail (as if the process died) when this many batches were seen by one instance.
    pub fail_after_batches: Option<usize>,
    /// Only fail in the first `fail_times` instances per shard.
    pub fail_times: usize,
    /// Every launch fails as if the program were not on `PATH`.
    pub missing_program: bool,
    /// Never answer `shutdownRequested` (a processor that hangs while shutting down).
    pub hang_on_shutdown: bool,
}

impl Default for FakeBehaviour {
    fn default() -> Self {
        Self {
            checkpoint_each_batch: true,
            checkpoint_at_shard_end: true,
            fail_after_batches: None,
            fail_times: 0,
            missing_program: false,
            hang_on_shutdown: false,
        }
    }
}

/// Launches fake processors and keeps the ledger of what each shard saw.
#[derive(Debug, Default, Clone)]
pub struct FakeLauncher {
    /// Behaviour of new instances.
    pub behaviour: Arc<Mutex<FakeBehaviour>>,
    /// Events per shard, in order, across instances.
    pub events: Arc<Mutex<HashMap<String, Vec<FakeEvent>>>>,
    launches: Arc<Mutex<HashMap<String, usize>>>,
}

impl FakeLauncher {
    /// A launcher with the given behaviour.
    #[must_use]
    pub fn new(behaviour: FakeBehaviour) -> Self {
        Self { behaviour: Arc::new(Mutex::new(behaviour)), ..Self::default() }
    }

    /// The events of one shard.
    #[must_use]
    pub fn events(&self, shard_id: &str) -> Vec<FakeEvent> {
        self.events.lock().map(|e| e.get(shard_id).cloned().unwrap_or_default()).unwrap_or_default()
    }

    /// The sequence numbers of the records a shard's processors saw, without the
    /// redeliveries after a restart that were already seen (first occurrence order).
    #[must_use]
    pub fn records_seen_ordered(&self, shard_id: &str) -> Vec<String> {
        let mut seen = std::collections::HashSet::new();
        self.events(shard_id)
            .into_iter()
            .filter_map(|e| match e {
                FakeEvent::Record(seq, sub) => seen.insert((seq.clone(), sub)).then_some(seq),
                _ => None,
            })
            .collect()
    }

    /// How many processors were started for a shard.
    #[must_use]
    pub fn launches(&self, shard_id: &str) -> usize {
        self.launches.lock().map(|l| l.get(shard_id).copied().unwrap_or(0)).unwrap_or(0)
    }
}

#[async_trait]
impl ProcessorLauncher for FakeLauncher {
    async fn launch(&self, shard_id: &str) -> Result<Box<dyn ProcessorConnection>, ProcessorFailure> {
        let instance = {
            let mut launches = self.launches.lock().unwrap_or_else(PoisonError::into_inner);
            let n = launches.entry(shard_id.to_owned()).or_insert(0);
            *n += 1;
            *n
        };
        let behaviour = self.behaviour.lock().unwrap_or_else(PoisonError::into_inner).clone();
        if behaviour.missing_program {
            return Err(ProcessorFailure::from(SpawnError::NotOnPath {
                shard_id: shard_id.to_owned(),
                program: "fake-processor".to_owned(),
                path: "/nonexistent".to_owned(),
            }));
        }
        let fail_after = behaviour.fail_after_batches.filter(|_| instance <= behaviour.fail_times);
        Ok(Box::new(FakeProcessor {
            shard_id: shard_id.to_owned(),
            behaviour,
            fail_after,
            batches: 0,
            events: self.events.clone(),
        }))
    }
}

struct FakeProcessor {
    shard_id: String,
    behaviour: FakeBehaviour,
    fail_after: Option<usize>,
    batches: usize,
    events: Arc<Mutex<HashMap<String, Vec<FakeEvent>>>>,
}

impl FakeProcessor {
    fn push(&self, event: FakeEvent) {
        if let Ok(mut events) = self.events.lock() {
            events.entry(self.shard_id.clone()).or_default().push(event);
        }
    }

    async fn checkpoint(&self, checkpointer: Option<&mut (dyn Checkpointer + '_)>) {
        let request = CheckpointRequest { sequence_number: None, sub_sequence_number: None };
        let outcome = match checkpointer {
            Some(c) => c.checkpoint(&request).await.err().map(|e: CheckpointError| e.wire_name()),
            None => Some("InvalidStateException"),
        };
        self.push(FakeEvent::Checkpoint(outcome));
    }
}

#[async_trait]
impl ProcessorConnection for FakeProcessor {
    async fn perform(
        &mut self,
        action: Action<'_>,
        checkpointer: Option<&mut (dyn Checkpointer + '_)>,
    ) -> Result<(), ProcessorFailure> {
        match action {
            Action::Initialize { checkpoint } => {
                self.push(FakeEvent::Initialize(checkpoint.map(ToString::to_string).unwrap_or_default()));
            }
            Action::ProcessRecords { records, .. } => {
                self.batches += 1;
                if self.fail_after.is_some_and(|n| self.batches > n) {
                    return Err(ProcessorFailure::Exited {
                        exit: ChildExit::Signal(9),
                        during: Some(ActionKind::ProcessRecords),
                        protocol: None,
                    });
                }
                for r in records {
                    self.push(FakeEvent::Record(r.sequence_number.to_string(), r.sub_sequence_number));
                }
                if self.behaviour.checkpoint_each_batch {
                    self.checkpoint(checkpointer).await;
                }
            }
            Action::ShutdownRequested => {
                self.push(FakeEvent::ShutdownRequested);
                if self.behaviour.hang_on_shutdown {
                    std::future::pending::<()>().await;
                }
                self.checkpoint(checkpointer).await;
            }
            Action::LeaseLost => self.push(FakeEvent::LeaseLost),
            Action::ShardEnded => {
                self.push(FakeEvent::ShardEnded);
                if self.behaviour.checkpoint_at_shard_end {
                    self.checkpoint(checkpointer).await;
                }
            }
        }
        Ok(())
    }

    async fn exited(&mut self) -> ProcessorFailure {
        std::future::pending::<ProcessorFailure>().await
    }

    async fn shutdown(self: Box<Self>) {}
}
