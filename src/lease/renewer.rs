//! The set of leases this worker holds, kept alive by periodic conditional renewals.
//!
//! Mirrors the Java KCL's `DynamoDBLeaseRenewer`: every `failover/3 − 25 ms` (3 308 ms for
//! the default 10 s) all held leases are renewed concurrently (at most
//! `maxLeaseRenewalThreads` at a time). A lease is dropped, and its [`HeldLease::lost`]
//! token cancelled so that its shard consumer learns at once, only when a renew or
//! checkpoint finds the counter changed (another worker took it).
//!
//! A lease that has gone without a successful write for longer than the failover time
//! (e.g. DynamoDB unreachable) is *unsafe*: another worker may have taken it, so no record
//! may be delivered under it ([`LeaseRenewer::is_safe`]; the shard consumer pauses), but it
//! stays held and renewals go on. A renewal that later succeeds on the unchanged counter
//! proves nobody took it meanwhile: the lease is safe again and the same record processor
//! resumes with no replay. If another worker did take it, the renewal's condition fails
//! and the lease is lost as above. (Java drops a locally expired lease, and its record
//! processor starts again from the checkpoint, re-delivering what came after it.)
//!
//! Writes to one lease are serialized (renew vs. checkpoint), as Java does by
//! synchronizing on the lease, so a renewal never makes a concurrent checkpoint fail its
//! counter condition.
//!
//! Deliberate differences from Java, all on the safe side:
//! - The "last renewed" instant is taken when the write is *sent*, not when its response
//!   arrives, so this worker never believes it holds a lease longer than a peer waits
//!   before taking it.
//! - Each renewal is bounded by the renewal interval, so one hung request cannot hold up
//!   the next round for every other lease.
//! - When the outcome of a write is unknown (error or timeout after sending), a later
//!   checkpoint whose condition fails re-reads the lease: if it is still ours at exactly
//!   one increment past what we hold, that increment was our own and the checkpoint is
//!   retried once with the adopted counter (instead of reporting a spurious lease loss).
//! - [`LeaseRenewer::release_all`] releases leases on graceful shutdown (a conditional
//!   "evict" that bumps the counter), so peers can take them at once.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{Lease, LeaseError, LeaseStore};
use crate::config::Config;
pub use crate::model::CheckpointFailure;
use crate::sequence::ExtendedSequenceNumber;
use crate::telemetry::{self, Event, LeaseOperation};

/// Java's `epsilonMillis`: slack subtracted from the renewal period.
pub const EPSILON: Duration = Duration::from_millis(25);
/// Attempts per renewal when throttled (Java `RENEWAL_RETRIES`: two attempts in total).
pub const RENEW_ATTEMPTS: u32 = 2;
/// Attempts per take when throttled (Java `TAKE_RETRIES`: three attempts in total).
pub const TAKE_ATTEMPTS: u32 = 3;

/// Renewer timing and concurrency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenewerConfig {
    /// `failoverTimeMillis`: a lease not renewed for this long is considered lost.
    pub failover_time: Duration,
    /// `maxLeaseRenewalThreads`: renewals in flight at once (at least 1).
    pub max_concurrent_renewals: usize,
}

impl RenewerConfig {
    /// From the daemon configuration (`failoverTimeMillis`, `maxLeaseRenewalThreads`).
    #[must_use]
    pub fn from_config(config: &Config) -> Self {
        Self {
            failover_time: config.failover_time,
            max_concurrent_renewals: usize::try_from(config.max_lease_renewal_threads).unwrap_or(usize::MAX),
        }
    }

    /// The renewal period: `failover/3 − epsilon` in whole milliseconds, like Java
    /// (3 308 ms for 10 s), but at least 1 ms.
    #[must_use]
    pub fn renew_interval(&self) -> Duration {
        let third = u64::try_from(self.failover_time.as_millis() / 3).unwrap_or(u64::MAX);
        let epsilon = u64::try_from(EPSILON.as_millis()).unwrap_or(0);
        Duration::from_millis(third.saturating_sub(epsilon).max(1))
    }
}

impl Default for RenewerConfig {
    /// Java's defaults: 10 s failover, 20 renewal threads.
    fn default() -> Self {
        Self { failover_time: Duration::from_secs(10), max_concurrent_renewals: 20 }
    }
}

/// Identifies one tenure of a lease on this worker; a checkpoint from an earlier tenure
/// (the lease was lost and re-acquired meanwhile) is refused without a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConcurrencyToken(u64);

impl ConcurrencyToken {
    fn random() -> Self {
        Self(rand::random())
    }
}

impl fmt::Display for ConcurrencyToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// A snapshot of one held lease.
#[derive(Debug, Clone)]
pub struct HeldLease {
    /// The lease as this worker last wrote it (`counter` is the value in the table).
    pub lease: Lease,
    /// This tenure's token; pass it to [`LeaseRenewer::checkpoint`].
    pub concurrency_token: ConcurrencyToken,
    /// Cancelled when this tenure ends (lease lost, dropped or released).
    pub lost: CancellationToken,
    /// When the last successful write of this lease was sent.
    pub last_renewed: Instant,
}

/// What one renewal round did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RenewRound {
    /// Leases renewed.
    pub renewed: usize,
    /// Leases dropped this round (taken by another worker).
    pub lost: Vec<String>,
    /// Leases whose renewal failed (error, throttling, timeout) but that are still held.
    pub failed: usize,
}

enum RenewOutcome {
    Renewed,
    Lost(String),
    Failed,
    Gone,
}

struct Entry {
    token: ConcurrencyToken,
    lost: CancellationToken,
    /// Serializes writes of this lease (renew, checkpoint, release).
    write: tokio::sync::Mutex<()>,
    state: Mutex<EntryState>,
}

struct EntryState {
    lease: Lease,
    last_renewed: Instant,
    /// A write of ours may have been applied without us learning so (error or timeout).
    unconfirmed_write: bool,
}

impl Entry {
    fn state(&self) -> MutexGuard<'_, EntryState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn snapshot(&self) -> HeldLease {
        let state = self.state();
        HeldLease {
            lease: state.lease.clone(),
            concurrency_token: self.token,
            lost: self.lost.clone(),
            last_renewed: state.last_renewed,
        }
    }
}

struct Inner {
    store: Arc<dyn LeaseStore>,
    worker_id: String,
    config: RenewerConfig,
    leases: Mutex<HashMap<String, Arc<Entry>>>,
    last_round: Mutex<Option<(Instant, RenewRound)>>,
}

/// The held-lease set of one worker. Cheap to clone; clones share the set.
#[derive(Clone)]
pub struct LeaseRenewer {
    inner: Arc<Inner>,
}

impl fmt::Debug for LeaseRenewer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeaseRenewer")
            .field("worker_id", &self.inner.worker_id)
            .field("table", &self.inner.store.table_name())
            .field("held", &self.leases().keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl LeaseRenewer {
    /// An empty held set for worker `worker_id`.
    #[must_use]
    pub fn new(store: Arc<dyn LeaseStore>, worker_id: impl Into<String>, config: RenewerConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                worker_id: worker_id.into(),
                config,
                leases: Mutex::new(HashMap::new()),
                last_round: Mutex::new(None),
            }),
        }
    }

    /// This worker's id (the `leaseOwner` it writes).
    #[must_use]
    pub fn worker_id(&self) -> &str {
        &self.inner.worker_id
    }

    /// The timing configuration.
    #[must_use]
    pub fn config(&self) -> &RenewerConfig {
        &self.inner.config
    }

    fn leases(&self) -> MutexGuard<'_, HashMap<String, Arc<Entry>>> {
        self.inner.leases.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn is_expired(&self, last_renewed: Instant, now: Instant) -> bool {
        now.saturating_duration_since(last_renewed) > self.inner.config.failover_time
    }

    /// Whether records may be delivered under tenure `token` of lease `key` now: the tenure
    /// is current and its last successful write was sent at most the failover time ago (so
    /// no other worker can have taken the lease yet). False while DynamoDB cannot be
    /// reached for longer than that; true again after the next successful renewal.
    #[must_use]
    pub fn is_safe(&self, key: &str, token: ConcurrencyToken) -> bool {
        self.entry(key)
            .filter(|entry| entry.token == token)
            .is_some_and(|entry| !self.is_expired(entry.state().last_renewed, Instant::now()))
    }

    /// Starts a new tenure for `lease`, which this worker has just written successfully
    /// (take or renew): `lease` must be the item as it now is in the table (owner = this
    /// worker, counter = the value written), `written_at` when that write was sent.
    /// Replaces (and ends) an earlier tenure of the same lease.
    pub fn add(&self, lease: Lease, written_at: Instant) -> HeldLease {
        let entry = Arc::new(Entry {
            token: ConcurrencyToken::random(),
            lost: CancellationToken::new(),
            write: tokio::sync::Mutex::new(()),
            state: Mutex::new(EntryState { lease, last_renewed: written_at, unconfirmed_write: false }),
        });
        let held = entry.snapshot();
        let previous = self.leases().insert(held.lease.key.clone(), entry);
        if let Some(previous) = previous {
            previous.lost.cancel();
        }
        debug!(lease = %held.lease.key, counter = held.lease.counter, token = %held.concurrency_token, "holding lease");
        held
    }

    /// Takes `lease` (as last seen in a scan) for this worker and holds it. `Ok(None)` when
    /// another worker changed it first. Throttled takes are retried ([`TAKE_ATTEMPTS`]).
    ///
    /// # Errors
    /// The store's error when every attempt failed.
    pub async fn acquire(&self, lease: &Lease) -> Result<Option<HeldLease>, LeaseError> {
        let me = self.worker_id().to_owned();
        let started = Instant::now();
        let mut attempt = 1;
        loop {
            let call = Instant::now();
            let result = self.inner.store.take_lease(lease, &me).await;
            telemetry::record(Event::LeaseCall {
                op: LeaseOperation::Take,
                shard_id: Some(&lease.key),
                duration: call.elapsed(),
                success: matches!(result, Ok(true)),
            });
            match result {
                Ok(true) => break,
                Ok(false) => return Ok(None),
                Err(LeaseError::Throttled { .. }) if attempt < TAKE_ATTEMPTS => attempt += 1,
                Err(e) => return Err(e),
            }
        }
        let mut taken = lease.clone();
        if taken.owner.as_deref().is_some_and(|previous| previous != me) {
            taken.owner_switches_since_checkpoint += 1;
        }
        taken.owner = Some(me);
        taken.counter += 1;
        taken.checkpoint_owner = None;
        info!(lease = %taken.key, counter = taken.counter, "took lease");
        Ok(Some(self.add(taken, started)))
    }

    /// Re-acquires a lease the table already names this worker as owner of (start-up with
    /// a stable worker id): renews it regardless of local expiry and holds it on success.
    /// `Ok(None)` when the lease is owned by someone else or the renew condition failed.
    ///
    /// # Errors
    /// The store's error when every attempt failed.
    pub async fn reacquire(&self, lease: &Lease) -> Result<Option<HeldLease>, LeaseError> {
        if lease.owner.as_deref() != Some(self.worker_id()) {
            return Ok(None);
        }
        let started = Instant::now();
        let mut attempt = 1;
        loop {
            match self.inner.store.renew_lease(lease).await {
                Ok(true) => break,
                Ok(false) => return Ok(None),
                Err(LeaseError::Throttled { .. }) if attempt < RENEW_ATTEMPTS => attempt += 1,
                Err(e) => return Err(e),
            }
        }
        let renewed = Lease { counter: lease.counter + 1, ..lease.clone() };
        info!(lease = %renewed.key, counter = renewed.counter, "re-acquired own lease");
        Ok(Some(self.add(renewed, started)))
    }

    /// The held leases, sorted by key, including unsafe ones (not renewed within the
    /// failover time, see [`LeaseRenewer::is_safe`]): this worker must neither take them
    /// again nor count them as free while it still renews them.
    #[must_use]
    pub fn held(&self) -> Vec<HeldLease> {
        let mut held: Vec<HeldLease> = self.leases().values().map(|entry| entry.snapshot()).collect();
        held.sort_by(|a, b| a.lease.key.cmp(&b.lease.key));
        held
    }

    /// One held lease (safe or not).
    #[must_use]
    pub fn get(&self, key: &str) -> Option<HeldLease> {
        Some(self.leases().get(key)?.snapshot())
    }

    /// Stops holding `key` without writing anything (its `lost` token is cancelled).
    /// Returns whether it was held.
    pub fn drop_lease(&self, key: &str) -> bool {
        let removed = self.leases().remove(key);
        if let Some(entry) = &removed {
            entry.lost.cancel();
            info!(lease = %key, "stopped holding lease");
        }
        removed.is_some()
    }

    fn entry(&self, key: &str) -> Option<Arc<Entry>> {
        self.leases().get(key).cloned()
    }

    fn is_current(&self, entry: &Arc<Entry>) -> bool {
        let key = entry.state().lease.key.clone();
        self.leases().get(&key).is_some_and(|current| Arc::ptr_eq(current, entry))
    }

    /// Ends the tenure of `entry` (if still current) and cancels its token.
    fn lose(&self, entry: &Arc<Entry>, reason: &str) {
        let key = entry.state().lease.key.clone();
        {
            let mut leases = self.leases();
            if leases.get(&key).is_some_and(|current| Arc::ptr_eq(current, entry)) {
                leases.remove(&key);
            }
        }
        entry.lost.cancel();
        warn!(lease = %key, reason, "lost lease");
        telemetry::record(Event::LeaseLost { shard_id: &key });
    }

    /// Writes `checkpoint` for the held lease `key`, conditioned on the counter this worker
    /// holds; counts as a renewal. A token from an earlier tenure is refused without a
    /// write. An unsafe lease is written too: the counter condition fails if another worker
    /// took it meanwhile.
    ///
    /// # Errors
    /// [`CheckpointFailure::LeaseLost`] (the lease is dropped), `Throttled` or `Dependency`
    /// (the lease stays held).
    pub async fn checkpoint(
        &self,
        key: &str,
        token: ConcurrencyToken,
        checkpoint: &ExtendedSequenceNumber,
    ) -> Result<(), CheckpointFailure> {
        let started = Instant::now();
        let result = self.write_checkpoint(key, token, checkpoint).await;
        let failure = result.as_ref().err().map(|f| match f {
            CheckpointFailure::LeaseLost { .. } => "lease_lost",
            CheckpointFailure::Throttled { .. } => "throttled",
            _ => "dependency",
        });
        telemetry::record(Event::Checkpoint { shard_id: key, duration: started.elapsed(), failure });
        result
    }

    async fn write_checkpoint(
        &self,
        key: &str,
        token: ConcurrencyToken,
        checkpoint: &ExtendedSequenceNumber,
    ) -> Result<(), CheckpointFailure> {
        let lost = || CheckpointFailure::LeaseLost { key: key.to_owned() };
        let entry = self.entry(key).filter(|entry| entry.token == token).ok_or_else(lost)?;
        let _write = entry.write.lock().await;
        if !self.is_current(&entry) {
            return Err(lost());
        }
        let (mut lease, mut unconfirmed) = {
            let state = entry.state();
            (state.lease.clone(), state.unconfirmed_write)
        };
        let started = Instant::now();
        loop {
            match self.inner.store.update_checkpoint(&lease, checkpoint).await {
                Ok(true) => {
                    let mut state = entry.state();
                    state.lease.counter = lease.counter + 1;
                    state.lease.checkpoint = checkpoint.clone();
                    state.lease.owner_switches_since_checkpoint = 0;
                    state.lease.pending_checkpoint = None;
                    state.lease.pending_checkpoint_state = None;
                    state.last_renewed = started;
                    state.unconfirmed_write = false;
                    return Ok(());
                }
                Ok(false) if unconfirmed => {
                    unconfirmed = false;
                    if self.adopt_own_increment(&entry, &mut lease).await {
                        continue;
                    }
                    self.lose(&entry, "checkpoint condition failed: another worker changed the lease");
                    return Err(lost());
                }
                Ok(false) => {
                    self.lose(&entry, "checkpoint condition failed: another worker changed the lease");
                    return Err(lost());
                }
                Err(LeaseError::Throttled { .. }) => return Err(CheckpointFailure::Throttled { key: key.to_owned() }),
                Err(e) => {
                    entry.state().unconfirmed_write = true;
                    return Err(CheckpointFailure::Dependency { key: key.to_owned(), message: e.to_string() });
                }
            }
        }
    }

    /// After an unconfirmed write: if the table shows the lease still ours at exactly one
    /// increment past `lease.counter`, that increment was ours; adopt it.
    async fn adopt_own_increment(&self, entry: &Entry, lease: &mut Lease) -> bool {
        match self.inner.store.get_lease(&lease.key).await {
            Ok(Some(current))
                if current.owner.as_deref() == Some(self.worker_id())
                    && Some(current.counter) == lease.counter.checked_add(1) =>
            {
                info!(lease = %lease.key, counter = current.counter, "an earlier unconfirmed write of ours was applied; adopting its counter");
                lease.counter = current.counter;
                let mut state = entry.state();
                state.lease.counter = current.counter;
                state.unconfirmed_write = false;
                true
            }
            Ok(_) => false,
            Err(e) => {
                warn!(lease = %lease.key, error = %e, "could not re-read lease after a failed checkpoint condition");
                false
            }
        }
    }

    /// Renews one lease; the caller bounds it with a timeout.
    async fn renew_one(&self, entry: &Arc<Entry>) -> RenewOutcome {
        let _write = entry.write.lock().await;
        if !self.is_current(entry) {
            return RenewOutcome::Gone;
        }
        let (lease, last_renewed) = {
            let state = entry.state();
            (state.lease.clone(), state.last_renewed)
        };
        let started = Instant::now();
        let was_unsafe = self.is_expired(last_renewed, started);
        let mut attempt = 1;
        loop {
            let call = Instant::now();
            let result = self.inner.store.renew_lease(&lease).await;
            telemetry::record(Event::LeaseCall {
                op: LeaseOperation::Renew,
                shard_id: Some(&lease.key),
                duration: call.elapsed(),
                success: matches!(result, Ok(true)),
            });
            match result {
                Ok(true) => {
                    let mut state = entry.state();
                    state.lease.counter = lease.counter + 1;
                    state.last_renewed = started;
                    state.unconfirmed_write = false;
                    drop(state);
                    if was_unsafe {
                        info!(
                            lease = %lease.key, unrenewed_for = ?started.saturating_duration_since(last_renewed),
                            "renewed a lease that had gone unrenewed past failoverTimeMillis; nobody took it, delivery resumes"
                        );
                    }
                    return RenewOutcome::Renewed;
                }
                Ok(false) => {
                    self.lose(entry, "renew condition failed: another worker took the lease");
                    return RenewOutcome::Lost(lease.key);
                }
                Err(LeaseError::Throttled { .. }) if attempt < RENEW_ATTEMPTS => {
                    debug!(lease = %lease.key, attempt, "renew throttled; retrying");
                    attempt += 1;
                }
                Err(e) => {
                    if !matches!(e, LeaseError::Throttled { .. }) {
                        entry.state().unconfirmed_write = true;
                    }
                    warn!(lease = %lease.key, error = %e, "could not renew lease");
                    return RenewOutcome::Failed;
                }
            }
        }
    }

    /// One renewal round over every held lease, at most `max_concurrent_renewals` at once,
    /// each bounded by the renewal interval.
    pub async fn renew_all(&self) -> RenewRound {
        let round_started = Instant::now();
        let entries: Vec<Arc<Entry>> = self.leases().values().cloned().collect();
        let permits = Arc::new(Semaphore::new(self.inner.config.max_concurrent_renewals.max(1)));
        let deadline = self.inner.config.renew_interval();
        let mut tasks = JoinSet::new();
        for entry in entries {
            let this = self.clone();
            let permits = Arc::clone(&permits);
            tasks.spawn(async move {
                let Ok(_permit) = permits.acquire_owned().await else { return RenewOutcome::Failed };
                match tokio::time::timeout(deadline, this.renew_one(&entry)).await {
                    Ok(outcome) => outcome,
                    Err(_) => {
                        entry.state().unconfirmed_write = true;
                        warn!(lease = %entry.state().lease.key, timeout = ?deadline, "lease renewal timed out");
                        RenewOutcome::Failed
                    }
                }
            });
        }
        let mut round = RenewRound::default();
        while let Some(result) = tasks.join_next().await {
            match result {
                Ok(RenewOutcome::Renewed) => round.renewed += 1,
                Ok(RenewOutcome::Lost(key)) => round.lost.push(key),
                Ok(RenewOutcome::Gone) => {}
                Ok(RenewOutcome::Failed) => round.failed += 1,
                Err(e) => {
                    warn!(error = %e, "lease renewal task failed");
                    round.failed += 1;
                }
            }
        }
        round.lost.sort();
        telemetry::record(Event::RenewalRound {
            worker_id: self.worker_id(),
            current: self.leases().len(),
            lost: round.lost.len(),
            failed: round.failed,
            duration: round_started.elapsed(),
        });
        *self.inner.last_round.lock().unwrap_or_else(PoisonError::into_inner) = Some((Instant::now(), round.clone()));
        round
    }

    /// When the last renewal round finished and what it did (`None` before the first).
    #[must_use]
    pub fn last_round(&self) -> Option<(Instant, RenewRound)> {
        self.inner.last_round.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Renews every `renew_interval` (first round at once) until `cancel` is cancelled.
    /// A round that overruns delays the next one rather than stacking rounds.
    pub async fn run(&self, cancel: CancellationToken) {
        let mut ticks = tokio::time::interval(self.inner.config.renew_interval());
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = ticks.tick() => {}
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                round = self.renew_all() => {
                    if !round.lost.is_empty() || round.failed > 0 {
                        info!(renewed = round.renewed, lost = ?round.lost, failed = round.failed, "lease renewal round");
                    }
                }
            }
        }
    }

    /// Graceful shutdown: stops holding every lease and releases each one in the table
    /// (conditional on counter and owner; removes `leaseOwner`, bumps the counter) so peers
    /// can take it at once. Waits for in-flight checkpoints first. Call after stopping
    /// [`LeaseRenewer::run`] and the shard consumers. Returns how many were released.
    pub async fn release_all(&self) -> usize {
        let entries: Vec<Arc<Entry>> = self.leases().drain().map(|(_, entry)| entry).collect();
        let permits = Arc::new(Semaphore::new(self.inner.config.max_concurrent_renewals.max(1)));
        let mut tasks = JoinSet::new();
        for entry in entries {
            let store = Arc::clone(&self.inner.store);
            let permits = Arc::clone(&permits);
            tasks.spawn(async move {
                let Ok(_permit) = permits.acquire_owned().await else { return false };
                matches!(release_entry(store.as_ref(), &entry).await, Ok(true))
            });
        }
        let mut released = 0;
        while let Some(result) = tasks.join_next().await {
            if matches!(result, Ok(true)) {
                released += 1;
            }
        }
        released
    }

    /// Stops holding `key` and releases it in the table (owner removed, conditioned on the
    /// counter) so its next owner can take it at once. Returns whether the release was
    /// written; `Ok(false)` when the lease was not held or changed meanwhile.
    ///
    /// # Errors
    /// When the table cannot be written (the lease then expires instead).
    pub async fn release(&self, key: &str) -> Result<bool, LeaseError> {
        let Some(entry) = self.leases().remove(key) else { return Ok(false) };
        release_entry(self.inner.store.as_ref(), &entry).await
    }
}

/// Ends the tenure of an entry already removed from the held set and releases its lease.
///
/// After a write of ours whose outcome is unknown (a renewal that timed out but was applied),
/// the held counter may be one behind the table: if the table shows the lease still ours at
/// exactly one increment more, the release is retried once with that counter.
async fn release_entry(store: &dyn LeaseStore, entry: &Entry) -> Result<bool, LeaseError> {
    let _write = entry.write.lock().await;
    let (mut lease, unconfirmed) = {
        let state = entry.state();
        (state.lease.clone(), state.unconfirmed_write)
    };
    entry.lost.cancel();
    let mut result = store.release_lease(&lease).await;
    if matches!(result, Ok(false)) && unconfirmed {
        if let Ok(Some(current)) = store.get_lease(&lease.key).await {
            if current.owner == lease.owner && Some(current.counter) == lease.counter.checked_add(1) {
                debug!(lease = %lease.key, counter = current.counter, "an unconfirmed write of ours was applied; releasing at its counter");
                lease.counter = current.counter;
                result = store.release_lease(&lease).await;
            }
        }
    }
    match result {
        Ok(true) => {
            info!(lease = %lease.key, "released lease");
            Ok(true)
        }
        Ok(false) => {
            debug!(lease = %lease.key, "lease changed before release; not released");
            Ok(false)
        }
        Err(e) => {
            warn!(lease = %lease.key, error = %e, "could not release lease");
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::memory::{Fault, InMemoryLeaseStore, Op};
    use crate::sequence::{Position, SequenceNumber};

    const ME: &str = "worker-me";

    fn setup(keys: &[&str]) -> (InMemoryLeaseStore, LeaseRenewer) {
        setup_with(keys, RenewerConfig::default())
    }

    fn setup_with(keys: &[&str], config: RenewerConfig) -> (InMemoryLeaseStore, LeaseRenewer) {
        let store = InMemoryLeaseStore::new("app");
        for key in keys {
            store.put(Lease::new(*key, ExtendedSequenceNumber::new(Position::TrimHorizon)));
        }
        let renewer = LeaseRenewer::new(Arc::new(store.clone()), ME, config);
        (store, renewer)
    }

    async fn acquire(store: &InMemoryLeaseStore, renewer: &LeaseRenewer, key: &str) -> HeldLease {
        renewer.acquire(&store.lease(key).unwrap()).await.unwrap().expect("lease taken")
    }

    fn seq(n: u64, sub: u64) -> ExtendedSequenceNumber {
        ExtendedSequenceNumber::at(SequenceNumber::parse(&n.to_string()).unwrap(), sub)
    }

    #[test]
    fn renew_interval_matches_java() {
        assert_eq!(RenewerConfig::default().renew_interval(), Duration::from_millis(3308));
        let short = RenewerConfig { failover_time: Duration::from_millis(50), max_concurrent_renewals: 1 };
        assert_eq!(short.renew_interval(), Duration::from_millis(1));
    }

    #[tokio::test(start_paused = true)]
    async fn acquire_takes_and_holds_with_a_fresh_token_per_tenure() {
        let (store, renewer) = setup(&["s"]);
        store.modify("s", |l| l.owner = Some("old".into()));
        let first = acquire(&store, &renewer, "s").await;
        assert_eq!((first.lease.owner.as_deref(), first.lease.counter), (Some(ME), 1));
        assert_eq!(first.lease.owner_switches_since_checkpoint, 1);
        assert_eq!(store.lease("s").unwrap(), first.lease, "held copy equals the table");
        assert!(renewer.drop_lease("s"));
        assert!(first.lost.is_cancelled());
        let second = acquire(&store, &renewer, "s").await;
        assert_ne!(first.concurrency_token, second.concurrency_token);
        let calls = store.calls(Op::UpdateCheckpoint);
        let refused = renewer.checkpoint("s", first.concurrency_token, &seq(1, 0)).await;
        assert_eq!(refused, Err(CheckpointFailure::LeaseLost { key: "s".into() }));
        assert_eq!(store.calls(Op::UpdateCheckpoint), calls, "stale token refused without a write");
        renewer.checkpoint("s", second.concurrency_token, &seq(1, 0)).await.unwrap();
        assert!(!second.lost.is_cancelled());
    }

    #[tokio::test(start_paused = true)]
    async fn acquire_retries_throttled_takes_and_reports_lost_races() {
        let (store, renewer) = setup(&["a", "b", "c"]);
        store.fail_next(Op::TakeLease, Fault::Throttled, 2);
        assert!(renewer.acquire(&store.lease("a").unwrap()).await.unwrap().is_some());
        assert_eq!(store.calls(Op::TakeLease), 3);
        store.fail_next(Op::TakeLease, Fault::Throttled, 3);
        assert!(matches!(renewer.acquire(&store.lease("b").unwrap()).await, Err(LeaseError::Throttled { .. })));
        let seen = store.lease("c").unwrap();
        store.steal("c", "other");
        assert!(renewer.acquire(&seen).await.unwrap().is_none());
        assert_eq!(renewer.held().iter().map(|h| h.lease.key.as_str()).collect::<Vec<_>>(), ["a"]);
    }

    #[tokio::test(start_paused = true)]
    async fn reacquire_renews_only_own_leases() {
        let (store, renewer) = setup(&["mine", "theirs"]);
        let mine = store.modify("mine", |l| (l.owner, l.counter) = (Some(ME.into()), 7)).unwrap();
        let theirs = store.modify("theirs", |l| l.owner = Some("other".into())).unwrap();
        let held = renewer.reacquire(&mine).await.unwrap().unwrap();
        assert_eq!(held.lease.counter, 8);
        assert_eq!(store.lease("mine").unwrap().counter, 8);
        assert!(renewer.reacquire(&theirs).await.unwrap().is_none());
        assert_eq!(store.calls(Op::RenewLease), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn run_renews_every_interval_starting_at_once() {
        let (store, renewer) = setup(&["a", "b"]);
        acquire(&store, &renewer, "a").await;
        acquire(&store, &renewer, "b").await;
        let cancel = CancellationToken::new();
        let task = tokio::spawn({
            let renewer = renewer.clone();
            let cancel = cancel.clone();
            async move { renewer.run(cancel).await }
        });
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(store.calls(Op::RenewLease), 2, "first round at once");
        tokio::time::sleep(Duration::from_millis(3306)).await;
        assert_eq!(store.calls(Op::RenewLease), 2, "nothing before 3308 ms");
        tokio::time::sleep(Duration::from_millis(2)).await;
        assert_eq!(store.calls(Op::RenewLease), 4);
        tokio::time::sleep(Duration::from_millis(3308 * 3)).await;
        assert_eq!(store.calls(Op::RenewLease), 10);
        assert_eq!(store.lease("a").unwrap().counter, 1 + 5);
        assert_eq!(renewer.get("a").unwrap().lease.counter, 6, "held counter follows the table");
        cancel.cancel();
        task.await.unwrap();
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(store.calls(Op::RenewLease), 10, "no renewals after cancel");
    }

    #[tokio::test(start_paused = true)]
    async fn a_stolen_lease_is_dropped_at_the_next_round() {
        let (store, renewer) = setup(&["a", "b"]);
        let a = acquire(&store, &renewer, "a").await;
        acquire(&store, &renewer, "b").await;
        store.steal("a", "thief");
        let round = renewer.renew_all().await;
        assert_eq!(round, RenewRound { renewed: 1, lost: vec!["a".into()], failed: 0 });
        assert!(a.lost.is_cancelled());
        assert_eq!(renewer.held().iter().map(|h| h.lease.key.as_str()).collect::<Vec<_>>(), ["b"]);
        let result = renewer.checkpoint("a", a.concurrency_token, &seq(5, 0)).await;
        assert_eq!(result, Err(CheckpointFailure::LeaseLost { key: "a".into() }));
        assert_eq!(store.lease("a").unwrap().owner.as_deref(), Some("thief"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_unrenewed_past_the_failover_time_is_unsafe_but_kept() {
        let (store, renewer) = setup(&["a"]);
        let a = acquire(&store, &renewer, "a").await;
        store.fail_next(Op::RenewLease, Fault::Dependency, 100);
        let cancel = CancellationToken::new();
        let run = renewer.run(cancel.clone());
        let probe = async {
            tokio::time::sleep(Duration::from_millis(9_999)).await;
            assert!(renewer.is_safe("a", a.concurrency_token), "safe just before the failover time");
            tokio::time::sleep(Duration::from_millis(2)).await;
            assert!(!renewer.is_safe("a", a.concurrency_token), "unsafe as soon as it may have expired elsewhere");
            assert_eq!(renewer.held().len(), 1, "still held: this worker must not take it again");
            assert!(renewer.get("a").is_some());
            assert!(!a.lost.is_cancelled(), "not lost: nobody is known to have taken it");
            tokio::time::sleep(Duration::from_secs(20)).await;
            assert!(!a.lost.is_cancelled() && !renewer.is_safe("a", a.concurrency_token));
            cancel.cancel();
        };
        tokio::join!(run, probe);
        assert_eq!(store.calls(Op::RenewLease), 10, "renewals go on every 3.3 s during the outage");
    }

    #[tokio::test(start_paused = true)]
    async fn a_renewal_on_the_unchanged_counter_makes_an_unsafe_lease_safe_again() {
        let (store, renewer) = setup(&["a"]);
        let a = acquire(&store, &renewer, "a").await;
        store.set_unreachable(true);
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_millis(3308)).await;
            assert_eq!(renewer.renew_all().await.failed, 1);
        }
        assert!(!renewer.is_safe("a", a.concurrency_token));
        store.set_unreachable(false);
        let round = renewer.renew_all().await;
        assert_eq!(round, RenewRound { renewed: 1, lost: vec![], failed: 0 });
        assert!(renewer.is_safe("a", a.concurrency_token), "the same tenure resumes");
        assert!(!a.lost.is_cancelled());
        assert_eq!(renewer.get("a").unwrap().concurrency_token, a.concurrency_token);
        renewer.checkpoint("a", a.concurrency_token, &seq(3, 0)).await.unwrap();
        assert_eq!(store.lease("a").unwrap().checkpoint, seq(3, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn an_unsafe_lease_taken_elsewhere_is_lost_at_the_first_answer() {
        let (store, renewer) = setup(&["a", "b"]);
        let a = acquire(&store, &renewer, "a").await;
        let b = acquire(&store, &renewer, "b").await;
        store.set_unreachable(true);
        tokio::time::sleep(Duration::from_secs(15)).await;
        renewer.renew_all().await;
        assert!(!renewer.is_safe("a", a.concurrency_token) && !renewer.is_safe("b", b.concurrency_token));
        store.steal("a", "thief");
        store.set_unreachable(false);
        let round = renewer.renew_all().await;
        assert_eq!(round, RenewRound { renewed: 1, lost: vec!["a".into()], failed: 0 });
        assert!(a.lost.is_cancelled() && !renewer.is_safe("a", a.concurrency_token));
        assert!(!b.lost.is_cancelled() && renewer.is_safe("b", b.concurrency_token));
        assert_eq!(store.lease("a").unwrap().owner.as_deref(), Some("thief"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_checkpoint_under_an_unsafe_lease_is_conditional_not_refused() {
        let (store, renewer) = setup(&["a"]);
        let a = acquire(&store, &renewer, "a").await;
        tokio::time::sleep(Duration::from_secs(11)).await;
        assert!(!renewer.is_safe("a", a.concurrency_token));
        renewer.checkpoint("a", a.concurrency_token, &seq(1, 0)).await.unwrap();
        assert!(renewer.is_safe("a", a.concurrency_token), "the checkpoint write renewed it");
        tokio::time::sleep(Duration::from_secs(11)).await;
        store.steal("a", "thief");
        let lost = renewer.checkpoint("a", a.concurrency_token, &seq(2, 0)).await;
        assert_eq!(lost, Err(CheckpointFailure::LeaseLost { key: "a".into() }));
        assert!(a.lost.is_cancelled());
        assert_eq!(store.lease("a").unwrap().checkpoint, seq(1, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn throttled_renewals_are_retried_once() {
        let (store, renewer) = setup(&["a"]);
        acquire(&store, &renewer, "a").await;
        store.fail_next(Op::RenewLease, Fault::Throttled, 1);
        assert_eq!(renewer.renew_all().await.renewed, 1);
        assert_eq!(store.calls(Op::RenewLease), 2);
        store.fail_next(Op::RenewLease, Fault::Throttled, 2);
        assert_eq!(renewer.renew_all().await, RenewRound { renewed: 0, lost: vec![], failed: 1 });
        assert_eq!(store.calls(Op::RenewLease), 4);
        assert_eq!(renewer.held().len(), 1, "throttling does not lose the lease");
        assert_eq!(renewer.renew_all().await.renewed, 1);
        assert_eq!(store.lease("a").unwrap().counter, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_renewal_times_out_without_blocking_the_others() {
        let (store, renewer) = setup(&["a"]);
        acquire(&store, &renewer, "a").await;
        store.set_latency(Op::RenewLease, Duration::from_secs(60));
        let start = Instant::now();
        let round = renewer.renew_all().await;
        assert_eq!(round.failed, 1);
        assert_eq!(start.elapsed(), Duration::from_millis(3308), "bounded by the renewal interval");
        assert_eq!(renewer.held().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn renewals_run_concurrently_up_to_the_limit() {
        let config = RenewerConfig { max_concurrent_renewals: 2, ..RenewerConfig::default() };
        let keys = ["a", "b", "c", "d", "e"];
        let (store, renewer) = setup_with(&keys, config);
        for key in keys {
            acquire(&store, &renewer, key).await;
        }
        store.set_latency(Op::RenewLease, Duration::from_millis(500));
        let start = Instant::now();
        assert_eq!(renewer.renew_all().await.renewed, 5);
        assert_eq!(start.elapsed(), Duration::from_millis(1500), "three waves of two");
    }

    #[tokio::test(start_paused = true)]
    async fn checkpoint_writes_with_the_held_counter_and_counts_as_renewal() {
        let (store, renewer) = setup(&["a"]);
        let a = acquire(&store, &renewer, "a").await;
        store.modify("a", |l| {
            l.pending_checkpoint = Some(seq(3, 0));
            l.owner_switches_since_checkpoint = 2;
        });
        tokio::time::sleep(Duration::from_secs(9)).await;
        renewer.checkpoint("a", a.concurrency_token, &seq(42, 3)).await.unwrap();
        let stored = store.lease("a").unwrap();
        assert_eq!((stored.counter, stored.checkpoint.clone(), stored.pending_checkpoint), (2, seq(42, 3), None));
        assert_eq!(stored.owner_switches_since_checkpoint, 0);
        let held = renewer.get("a").unwrap();
        assert_eq!((held.lease.counter, held.lease.checkpoint), (2, seq(42, 3)));
        tokio::time::sleep(Duration::from_secs(9)).await;
        assert!(renewer.get("a").is_some(), "the checkpoint renewed the lease (18 s after the take)");
        renewer.checkpoint("a", a.concurrency_token, &seq(43, 0)).await.unwrap();
        assert_eq!(store.lease("a").unwrap().counter, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn checkpoint_errors_keep_the_lease_unless_it_was_lost() {
        let (store, renewer) = setup(&["a"]);
        let a = acquire(&store, &renewer, "a").await;
        store.fail_next(Op::UpdateCheckpoint, Fault::Throttled, 1);
        let throttled = renewer.checkpoint("a", a.concurrency_token, &seq(1, 0)).await;
        assert_eq!(throttled, Err(CheckpointFailure::Throttled { key: "a".into() }));
        store.fail_next(Op::UpdateCheckpoint, Fault::Dependency, 1);
        let failed = renewer.checkpoint("a", a.concurrency_token, &seq(1, 0)).await;
        assert!(matches!(failed, Err(CheckpointFailure::Dependency { .. })), "{failed:?}");
        assert!(renewer.get("a").is_some() && !a.lost.is_cancelled());
        store.steal("a", "thief");
        let lost = renewer.checkpoint("a", a.concurrency_token, &seq(1, 0)).await;
        assert_eq!(lost, Err(CheckpointFailure::LeaseLost { key: "a".into() }));
        assert!(a.lost.is_cancelled() && renewer.held().is_empty());
        assert_eq!(store.lease("a").unwrap().checkpoint, ExtendedSequenceNumber::new(Position::TrimHorizon));
    }

    #[tokio::test(start_paused = true)]
    async fn an_unconfirmed_renewal_does_not_fail_the_next_checkpoint() {
        let (store, renewer) = setup(&["a"]);
        let a = acquire(&store, &renewer, "a").await;
        store.fail_next(Op::RenewLease, Fault::AppliedButLost, 1);
        assert_eq!(renewer.renew_all().await.failed, 1);
        assert_eq!(store.lease("a").unwrap().counter, 2, "the renewal was applied");
        assert_eq!(renewer.get("a").unwrap().lease.counter, 1, "but the renewer does not know");
        renewer.checkpoint("a", a.concurrency_token, &seq(7, 0)).await.unwrap();
        assert_eq!(store.lease("a").unwrap().counter, 3);
        assert_eq!(renewer.get("a").unwrap().lease.counter, 3);
        assert_eq!(store.lease("a").unwrap().checkpoint, seq(7, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn an_unconfirmed_renewal_is_recovered_by_the_next_renewal() {
        let (store, renewer) = setup(&["a"]);
        acquire(&store, &renewer, "a").await;
        store.fail_next(Op::RenewLease, Fault::AppliedButLost, 1);
        assert_eq!(renewer.renew_all().await.failed, 1);
        assert_eq!(renewer.renew_all().await.renewed, 1, "store-level recovery: owner me, counter seen+1");
        assert_eq!(renewer.get("a").unwrap().lease.counter, 2);
        assert_eq!(renewer.renew_all().await.renewed, 1);
        assert_eq!(store.lease("a").unwrap().counter, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_steal_an_unconfirmed_write_is_not_adopted() {
        let (store, renewer) = setup(&["a"]);
        let a = acquire(&store, &renewer, "a").await;
        store.fail_next(Op::RenewLease, Fault::Dependency, 1);
        renewer.renew_all().await;
        store.steal("a", "thief");
        let lost = renewer.checkpoint("a", a.concurrency_token, &seq(7, 0)).await;
        assert_eq!(lost, Err(CheckpointFailure::LeaseLost { key: "a".into() }));
        assert_eq!(store.lease("a").unwrap().owner.as_deref(), Some("thief"));
    }

    #[tokio::test(start_paused = true)]
    async fn release_all_releases_what_is_still_ours() {
        let (store, renewer) = setup(&["a", "b", "c"]);
        let mut held = Vec::new();
        for key in ["a", "b", "c"] {
            held.push(acquire(&store, &renewer, key).await);
        }
        store.steal("b", "thief");
        assert_eq!(renewer.release_all().await, 2);
        assert!(renewer.held().is_empty());
        assert!(held.iter().all(|h| h.lost.is_cancelled()));
        for key in ["a", "c"] {
            let lease = store.lease(key).unwrap();
            assert_eq!((lease.owner, lease.counter), (None, 2), "{key} released");
        }
        assert_eq!(store.lease("b").unwrap().owner.as_deref(), Some("thief"));
        let refused = renewer.checkpoint("a", held[0].concurrency_token, &seq(1, 0)).await;
        assert_eq!(refused, Err(CheckpointFailure::LeaseLost { key: "a".into() }));
    }

    #[tokio::test(start_paused = true)]
    async fn release_after_an_unconfirmed_renewal_still_releases() {
        let (store, renewer) = setup(&["a", "b"]);
        acquire(&store, &renewer, "a").await;
        acquire(&store, &renewer, "b").await;
        store.fail_next(Op::RenewLease, Fault::AppliedButLost, 1);
        let round = renewer.renew_all().await;
        assert_eq!((round.renewed, round.failed), (1, 1));
        assert_eq!(renewer.release_all().await, 2, "the applied-but-unconfirmed renewal is adopted");
        for key in ["a", "b"] {
            assert_eq!(store.lease(key).unwrap().owner, None, "{key} released");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_checkpoint_and_a_renewal_of_the_same_lease_do_not_race() {
        let (store, renewer) = setup(&["a"]);
        let a = acquire(&store, &renewer, "a").await;
        store.set_latency(Op::UpdateCheckpoint, Duration::from_millis(200));
        store.set_latency(Op::RenewLease, Duration::from_millis(100));
        let target = seq(9, 0);
        let (checkpoint, round) =
            tokio::join!(renewer.checkpoint("a", a.concurrency_token, &target), renewer.renew_all());
        checkpoint.unwrap();
        assert_eq!(round.renewed, 1, "the renewal waited for the checkpoint");
        assert_eq!(store.lease("a").unwrap().counter, 3);
        assert!(!a.lost.is_cancelled());
    }

    #[tokio::test(start_paused = true)]
    async fn adding_a_lease_again_ends_the_previous_tenure() {
        let (store, renewer) = setup(&["a"]);
        let first = acquire(&store, &renewer, "a").await;
        let current = store.lease("a").unwrap();
        let second = renewer.add(current, Instant::now());
        assert!(first.lost.is_cancelled());
        assert!(!second.lost.is_cancelled());
        assert_eq!(renewer.held().len(), 1);
    }
}
