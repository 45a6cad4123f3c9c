//! The running shard consumers: one [`ShardHandle`] per shard this worker works on, and the
//! task set that owns their futures.
//!
//! A handle carries what the scheduler needs to steer one shard — its stop token (graceful:
//! `shutdownRequested`, then `leaseLost`), the lease tenure's lost token, the consumer's
//! live [`ShardProgress`], restart backoff and failures — so one shard can be stopped on
//! its own (a KCL 3.x hand-off) and every shard's state can be read as a [`ShardStatus`]
//! without touching the consumers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::{Id, JoinError, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::backoff::{Backoff, BackoffPolicy};
use crate::shard::consumer::{run_consumer, ConsumerContext, ConsumerError, ConsumerOutcome, ShardProgress};
use crate::status::{ShardPhase, ShardStatus};
use crate::telemetry::{self, Event};

/// A consumer that runs now.
#[derive(Debug)]
struct Running {
    task: Id,
    started: Instant,
    stop: CancellationToken,
    lost: CancellationToken,
    /// Asked to stop for a hand-off (not for the worker's shutdown).
    handing_off: bool,
}

/// Everything the scheduler knows about one shard.
#[derive(Debug, Default)]
pub struct ShardHandle {
    running: Option<Running>,
    progress: Arc<ShardProgress>,
    backoff: Option<Backoff>,
    retry_at: Option<Instant>,
    ended: bool,
    restarts: u64,
    last_failure: Option<String>,
    /// The lease is in the held set (as of the last dispatch round).
    held: bool,
}

impl ShardHandle {
    /// Whether a consumer runs for this shard.
    #[must_use]
    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// Whether the shard was processed to its end (`SHARD_END` checkpointed).
    #[must_use]
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// The shard's live counters.
    #[must_use]
    pub fn progress(&self) -> &Arc<ShardProgress> {
        &self.progress
    }

    fn status(&self, shard_id: &str) -> ShardStatus {
        let phase = if self.ended {
            ShardPhase::Ended
        } else if let (None, Some(retry_at)) = (&self.running, self.retry_at) {
            ShardPhase::BackingOff { retry_at }
        } else {
            ShardPhase::Pending
        };
        let mut status = self.progress.status(shard_id, phase.clone());
        if !self.is_running() {
            status.phase = phase;
        }
        status.restarts = self.restarts;
        status.last_failure.clone_from(&self.last_failure);
        status
    }
}

/// How a consumer's end was handled, for the scheduler's follow-up.
#[derive(Debug)]
pub struct Finished {
    /// The shard.
    pub shard_id: String,
    /// How it ended.
    pub outcome: ConsumerOutcome,
    /// It was stopped for a hand-off ([`ConsumerSet::stop_one`]).
    pub handed_off: bool,
}

/// The set of shard consumers. Owns their tasks: dropping it aborts them (and so kills
/// their record processors).
pub struct ConsumerSet {
    tasks: JoinSet<(String, ConsumerOutcome)>,
    shards: BTreeMap<String, ShardHandle>,
    /// Parent of every consumer's stop token.
    stop_all: CancellationToken,
}

impl Default for ConsumerSet {
    fn default() -> Self {
        Self::new()
    }
}

impl ConsumerSet {
    /// An empty set.
    #[must_use]
    pub fn new() -> Self {
        Self { tasks: JoinSet::new(), shards: BTreeMap::new(), stop_all: CancellationToken::new() }
    }

    /// Consumers running now.
    #[must_use]
    pub fn running(&self) -> usize {
        self.tasks.len()
    }

    /// The handle of `shard_id`, if known.
    #[must_use]
    pub fn get(&self, shard_id: &str) -> Option<&ShardHandle> {
        self.shards.get(shard_id)
    }

    /// The shards whose consumers reached `SHARD_END`.
    pub fn ended(&self) -> impl Iterator<Item = &str> {
        self.shards.iter().filter(|(_, h)| h.ended).map(|(k, _)| k.as_str())
    }

    /// Whether a consumer for `shard_id` may start now: none runs, the shard has not ended
    /// and it is not backing off after a failure.
    #[must_use]
    pub fn may_start(&self, shard_id: &str, now: Instant) -> bool {
        self.shards.get(shard_id).is_none_or(|h| !h.ended && h.running.is_none() && h.retry_at.is_none_or(|t| t <= now))
    }

    /// The progress counters a new consumer of `shard_id` reports into (kept across tenures).
    pub fn progress(&mut self, shard_id: &str) -> Arc<ShardProgress> {
        self.shards.entry(shard_id.to_owned()).or_default().progress.clone()
    }

    /// A stop token for a new consumer (child of the set's; see [`ConsumerSet::start`]).
    #[must_use]
    pub fn new_stop_token(&self) -> CancellationToken {
        self.stop_all.child_token()
    }

    /// Starts the consumer described by `ctx` (whose `shutdown` token must come from
    /// [`ConsumerSet::new_stop_token`] and whose `progress` from [`ConsumerSet::progress`]).
    pub fn start(&mut self, ctx: ConsumerContext) {
        let shard_id = ctx.lease.key.clone();
        let stop = ctx.shutdown.clone();
        let lost = ctx.lease_lost.clone();
        let handle = self.shards.entry(shard_id.clone()).or_default();
        handle.progress.clear_phase();
        handle.held = true;
        info!(shard_id = %shard_id, checkpoint = %ctx.lease.checkpoint, "starting shard consumer");
        let task = self.tasks.spawn({
            let shard_id = shard_id.clone();
            async move { (shard_id, run_consumer(ctx).await) }
        });
        handle.running = Some(Running { task: task.id(), started: Instant::now(), stop, lost, handing_off: false });
    }

    /// Asks the consumer of `shard_id` to stop gracefully (`shutdownRequested`, the
    /// processor may checkpoint, then `leaseLost`) without touching the others; its end
    /// comes out of [`ConsumerSet::join_next`] with `handed_off` set. Returns false when no
    /// consumer runs for it.
    pub fn stop_one(&mut self, shard_id: &str) -> bool {
        let Some(running) = self.shards.get_mut(shard_id).and_then(|h| h.running.as_mut()) else {
            return false;
        };
        running.handing_off = true;
        running.stop.cancel();
        true
    }

    /// Asks every consumer to stop gracefully.
    pub fn stop_all(&self) {
        self.stop_all.cancel();
    }

    /// Forgets a shard that is no longer held and has no consumer (e.g. cleaned up).
    pub fn forget(&mut self, shard_id: &str) {
        if self.shards.get(shard_id).is_some_and(|h| h.running.is_none()) {
            self.shards.remove(shard_id);
        }
    }

    /// Records which shards' leases this worker holds now (per `held`); the status lists
    /// those and the ones whose consumers still run. Counters of a shard survive a lost and
    /// re-taken lease (they count for the whole process).
    pub fn mark_held(&mut self, held: impl Fn(&str) -> bool) {
        for (key, handle) in &mut self.shards {
            handle.held = held(key);
        }
    }

    /// Waits for the next consumer to end and records how it ended (restart backoff on
    /// failure). Cancel safe. `None` when no consumer runs.
    pub async fn join_next(&mut self) -> Option<Finished> {
        let joined = self.tasks.join_next_with_id().await?;
        Some(self.on_done(joined))
    }

    fn on_done(&mut self, joined: Result<(Id, (String, ConsumerOutcome)), JoinError>) -> Finished {
        let (shard_id, outcome) = match joined {
            Ok((_, done)) => done,
            Err(e) => {
                // A panic in a consumer is a bug; the shard is restarted like a failure.
                let id = e.id();
                let key = self
                    .shards
                    .iter()
                    .find(|(_, h)| h.running.as_ref().is_some_and(|r| r.task == id))
                    .map(|(k, _)| k.clone())
                    .unwrap_or_default();
                error!(error = %e, shard_id = %key, "a shard consumer task panicked");
                (key, ConsumerOutcome::Failed(ConsumerError::Panicked(e.to_string())))
            }
        };
        let handle = self.shards.entry(shard_id.clone()).or_default();
        handle.progress.clear_phase();
        let running = handle.running.take();
        let uptime = running.as_ref().map_or(Duration::ZERO, |r| r.started.elapsed());
        let handed_off = running.as_ref().is_some_and(|r| r.handing_off);
        match &outcome {
            ConsumerOutcome::ShardEnded => {
                handle.ended = true;
                handle.backoff = None;
                handle.retry_at = None;
                handle.last_failure = None;
            }
            ConsumerOutcome::LeaseLost | ConsumerOutcome::ShutdownComplete => {
                handle.backoff = None;
                handle.retry_at = None;
            }
            ConsumerOutcome::Failed(error) => {
                let backoff = handle.backoff.get_or_insert_with(|| Backoff::new(BackoffPolicy::restarts()));
                let persistent = error.is_persistent();
                let delay = if persistent {
                    // Restarting at once cannot help (the program is missing): wait the
                    // longest restart delay and keep the failure visible in the status.
                    backoff.next_delay();
                    backoff.policy().max
                } else {
                    backoff.next_delay_after(uptime)
                };
                handle.retry_at = Some(Instant::now() + delay);
                handle.restarts += 1;
                telemetry::record(Event::ConsumerRestarted { shard_id: &shard_id });
                handle.last_failure = Some(error.to_string());
                if persistent {
                    error!(
                        shard_id = %shard_id, %error, retry_in = ?delay,
                        "cannot start the record processor; fix executableName (retrying slowly)"
                    );
                } else {
                    error!(
                        shard_id = %shard_id, %error, retry_in = ?delay,
                        "shard consumer failed; restarting this shard from its last checkpoint"
                    );
                }
            }
        }
        Finished { shard_id, outcome, handed_off }
    }

    /// Graceful stop of every consumer within `grace`; what is left then is aborted (its
    /// record processor is killed with its process group).
    pub async fn shut_down(&mut self, grace: Duration) {
        self.stop_all();
        let deadline = tokio::time::sleep(grace);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                joined = self.tasks.join_next_with_id() => match joined {
                    Some(joined) => { self.on_done(joined); }
                    None => break,
                },
                () = &mut deadline => {
                    warn!(remaining = self.tasks.len(), "shutdownGraceMillis expired; killing the remaining record processors");
                    self.abort_all().await;
                    break;
                }
            }
        }
    }

    /// Aborts every consumer at once: their record processors are killed with their
    /// process groups (the child handle's drop) and their leases' tokens cancelled.
    pub async fn abort_all(&mut self) {
        for handle in self.shards.values() {
            if let Some(running) = &handle.running {
                running.lost.cancel();
            }
        }
        self.tasks.shutdown().await;
        for handle in self.shards.values_mut() {
            handle.running = None;
            handle.progress.clear_phase();
        }
    }

    /// The status of every known shard, sorted by id.
    #[must_use]
    pub fn statuses(&self) -> Vec<ShardStatus> {
        self.shards.iter().filter(|(_, h)| h.held || h.running.is_some()).map(|(k, h)| h.status(k)).collect()
    }
}

impl std::fmt::Debug for ConsumerSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerSet").field("running", &self.tasks.len()).field("shards", &self.shards.len()).finish()
    }
}
