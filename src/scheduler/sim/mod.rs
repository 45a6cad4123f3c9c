//! Fleet simulation: many workers sharing one lease table, in simulated time.
//!
//! Every simulated worker runs the daemon's real lease code on its own client of one
//! [`InMemoryLeaseStore`]: the [`LeaseRenewer`] loop, the KCL 2.x [`TakerAssignment`] on its
//! cadence (what [`crate::scheduler::Scheduler`] runs), the lease audit ([`Auditor`], a scan
//! every 2 min to learn who leads) and the migration-state check (every minute), and on a
//! graceful stop [`LeaseRenewer::release_all`]. Shard consumers are left out: they do not
//! touch the lease table except to checkpoint, which the cost model adds analytically.
//!
//! Time is tokio's paused clock on a current-thread runtime: it jumps to the next timer
//! whenever every task waits, so an hour of a 200-worker fleet runs in seconds to minutes
//! and nothing sleeps for real. Store latency is simulated with the same clock.
//!
//! The scenario ([`run`]): start-up of `workers` over `leases` unowned leases (staggered
//! starts), steady state, a worker killed (no release), a scale-out, and a rolling restart
//! in batches (graceful stop, new worker id as the MLD's default random `workerId`). Every
//! request is counted by [`meter::MeteredStore`] and priced with [`cost::CostModel`].

pub mod cost;
pub mod meter;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use self::cost::{Cadence, CostModel, UnitsPerMinute};
use self::meter::{Meter, MeteredStore, Usage};
use super::audit::{AuditSettings, Auditor};
use crate::config::InitialPosition;
use crate::lease::assignment::{LeaseAssignment, TakerAssignment};
use crate::lease::memory::{InMemoryLeaseStore, Op};
use crate::lease::recent::RecentScan;
use crate::lease::renewer::{LeaseRenewer, RenewerConfig};
use crate::lease::taker::TakerSettings;
use crate::lease::{Lease, LeaseStore};
use crate::scheduler::MIGRATION_CHECK_INTERVAL;
use crate::sequence::{ExtendedSequenceNumber, Position};
use crate::stream::memory::InMemoryStream;
use crate::stream::shards::{ShardFilter, ShardLister};

/// What to simulate.
#[derive(Debug, Clone, Serialize)]
pub struct SimConfig {
    /// Workers at start-up.
    pub workers: usize,
    /// Leases (shards) in the table.
    pub leases: usize,
    /// `failoverTimeMillis`.
    pub failover_time: Duration,
    /// `maxLeasesForWorker`.
    pub max_leases_for_worker: u32,
    /// `maxLeasesToStealAtOneTime`.
    pub max_leases_to_steal_at_one_time: u32,
    /// `enablePriorityLeaseAssignment`.
    pub enable_priority_lease_assignment: bool,
    /// `maxLeaseRenewalThreads`.
    pub max_lease_renewal_threads: usize,
    /// Latency of one GetItem / UpdateItem / PutItem.
    pub point_latency: Duration,
    /// Latency of one 1 MiB scan page.
    pub scan_page_latency: Duration,
    /// Workers start spread evenly over this window.
    pub start_spread: Duration,
    /// Steady-state window over which the cost per minute is measured (whole minutes).
    pub steady_minutes: u32,
    /// How long each phase may take to balance before it is reported as not balanced.
    pub settle_limit: Duration,
    /// Workers added by the scale-out (0: skip).
    pub scale_out: usize,
    /// Workers restarted at once in the rolling restart (0: skip the restart).
    pub restart_batch: usize,
    /// Pause between stopping a batch and starting its replacements.
    pub restart_downtime: Duration,
    /// Pause between one batch's replacements starting and the next batch stopping.
    pub restart_interval: Duration,
    /// Sizes for pricing.
    pub cost_model: CostModel,
    /// The audit decides leadership from the taker's latest scan, as the daemon does
    /// (`false`: every worker scans for each audit, as before that change).
    pub share_scan_with_audit: bool,
}

impl SimConfig {
    /// Java's defaults for `workers` over `leases`, with 5 ms point latency and 40 ms per
    /// scan page, a 10 s start spread, a 3-minute steady window, one worker in ten (at
    /// least one) added and restarted at a time.
    #[must_use]
    pub fn defaults(workers: usize, leases: usize) -> Self {
        Self {
            workers,
            leases,
            failover_time: Duration::from_secs(10),
            max_leases_for_worker: u32::MAX,
            max_leases_to_steal_at_one_time: 1,
            enable_priority_lease_assignment: true,
            max_lease_renewal_threads: 20,
            point_latency: Duration::from_millis(5),
            scan_page_latency: Duration::from_millis(40),
            start_spread: Duration::from_secs(10),
            steady_minutes: 3,
            settle_limit: Duration::from_secs(3_600),
            scale_out: (workers / 10).max(1),
            restart_batch: (workers / 10).max(1),
            restart_downtime: Duration::from_secs(10),
            restart_interval: Duration::from_secs(60),
            cost_model: CostModel::default(),
            share_scan_with_audit: true,
        }
    }

    fn taker_settings(&self) -> TakerSettings {
        TakerSettings {
            failover_time: self.failover_time,
            max_leases_for_worker: self.max_leases_for_worker,
            max_leases_to_steal_at_one_time: self.max_leases_to_steal_at_one_time,
            enable_priority_lease_assignment: self.enable_priority_lease_assignment,
        }
    }
}

/// How one phase went.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseReport {
    /// `startup`, `kill`, `scale_out`, `rolling_restart`.
    pub phase: &'static str,
    /// Live workers at the end.
    pub workers: usize,
    /// Simulated seconds from the phase's event (for the rolling restart: its first batch)
    /// until the fleet was balanced; `None` if not within `settle_limit`.
    pub balanced_after_secs: Option<f64>,
    /// `kill`: seconds until every lease of the dead worker had a live holder.
    pub recovered_after_secs: Option<f64>,
    /// Leases that changed owner (successful takes of an owned lease) during the phase.
    pub leases_moved: u64,
    /// Takes of unowned leases (released or new) during the phase.
    pub takes_unowned: u64,
    /// Most leases without a live holder at once (sampled every second).
    pub peak_unheld: usize,
    /// Lease-seconds without a live holder (shards not processed).
    pub unheld_lease_secs: f64,
    /// Largest and smallest holding at the end.
    pub max_held: usize,
    /// See `max_held`.
    pub min_held: usize,
    /// Requests and units of the phase.
    pub usage: Usage,
    /// Simulated seconds the phase lasted.
    pub duration_secs: f64,
}

/// The simulation's result.
#[derive(Debug, Clone, Serialize)]
pub struct SimReport {
    /// The configuration.
    pub config: SimConfig,
    /// One report per phase.
    pub phases: Vec<PhaseReport>,
    /// Steady-state usage per minute (measured on the simulated fleet).
    pub steady: Usage,
    /// Steady-state units per minute (measured), without checkpoints.
    pub steady_units: UnitsPerMinute,
    /// The KCL 2.x analytic model for the same fleet (to check it against the measurement).
    pub kcl2_model: UnitsPerMinute,
    /// The KCL 3.x analytic model for the same fleet (not simulated).
    pub kcl3_model: UnitsPerMinute,
    /// Usage per simulated minute over the whole run.
    pub minutes: Vec<Usage>,
}

/// A failure of the simulation itself.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The in-memory stream could not list its shards.
    #[error("listing the simulated shards failed: {0}")]
    Shards(#[from] crate::stream::StreamError),
    /// The in-memory table refused the setup.
    #[error("setting up the simulated lease table failed: {0}")]
    Table(#[from] crate::lease::LeaseError),
    /// The tokio runtime could not be built.
    #[error("building the simulation runtime failed: {0}")]
    Runtime(String),
}

struct Worker {
    renewer: LeaseRenewer,
    stop: CancellationToken,
    alive: bool,
}

struct Fleet {
    config: SimConfig,
    table: Arc<dyn LeaseStore>,
    lister: Arc<dyn ShardLister>,
    meter: Meter,
    workers: Vec<Worker>,
    tasks: JoinSet<()>,
    generation: usize,
}

impl Fleet {
    fn start_worker(&mut self, id: String) {
        let store: Arc<dyn LeaseStore> = Arc::new(MeteredStore::new(self.table.clone(), self.meter.clone()));
        let renewer = LeaseRenewer::new(
            store.clone(),
            id.clone(),
            RenewerConfig {
                failover_time: self.config.failover_time,
                max_concurrent_renewals: self.config.max_lease_renewal_threads,
            },
        );
        let stop = CancellationToken::new();
        let recent = RecentScan::new();
        let mut assignment = TakerAssignment::new(store.clone(), id.clone(), self.config.taker_settings());
        if self.config.share_scan_with_audit {
            assignment = assignment.with_recent_scan(recent.clone());
        }
        let auditor = Auditor::new(
            id,
            store.clone(),
            self.lister.clone(),
            InitialPosition::TrimHorizon,
            false,
            AuditSettings::default(),
        )
        .with_recent_scan(recent);
        self.tasks.spawn(worker_loop(store, renewer.clone(), assignment, auditor, stop.clone()));
        self.workers.push(Worker { renewer, stop, alive: true });
    }

    fn next_id(&mut self) -> String {
        self.generation += 1;
        format!("worker-{:05}", self.generation)
    }

    /// Stops a worker: at once like a crash (`graceful = false`), or like the scheduler's
    /// shutdown (stop renewing, release every held lease).
    async fn stop_worker(&mut self, index: usize, graceful: bool) {
        let worker = &mut self.workers[index];
        worker.alive = false;
        worker.stop.cancel();
        // Let the worker's tasks see the cancellation before releasing.
        tokio::task::yield_now().await;
        if graceful {
            worker.renewer.release_all().await;
        }
    }

    fn live(&self) -> impl Iterator<Item = &Worker> {
        self.workers.iter().filter(|w| w.alive)
    }

    /// (distinct leases held by live workers, max, min) right now.
    fn holdings(&self) -> (HashSet<String>, usize, usize) {
        let mut held = HashSet::new();
        let (mut max, mut min) = (0, usize::MAX);
        for w in self.live() {
            let mine = w.renewer.held();
            max = max.max(mine.len());
            min = min.min(mine.len());
            held.extend(mine.into_iter().map(|h| h.lease.key));
        }
        (held, max, if min == usize::MAX { 0 } else { min })
    }

    fn balanced(&self, held: usize, max: usize, min: usize) -> bool {
        let workers = self.live().count();
        if workers == 0 {
            return false;
        }
        let cap = usize::try_from(self.config.max_leases_for_worker).unwrap_or(usize::MAX);
        let target = self.config.leases.div_ceil(workers).min(cap);
        let expected = self.config.leases.min(cap.saturating_mul(workers));
        held == expected && max <= target && min + 1 >= target
    }
}

async fn worker_loop(
    store: Arc<dyn LeaseStore>,
    renewer: LeaseRenewer,
    mut assignment: TakerAssignment,
    mut auditor: Auditor,
    stop: CancellationToken,
) {
    let renew = renewer.run(stop.clone());
    let assign = async {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep_until(assignment.next_round()) => {}
            }
            tokio::select! {
                () = stop.cancelled() => return,
                _ = assignment.round(&renewer) => {}
            }
        }
    };
    let audit = async {
        let settings = auditor.settings().clone();
        let mut ticks = tokio::time::interval_at(Instant::now() + settings.first_run, settings.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = ticks.tick() => {}
            }
            tokio::select! {
                () = stop.cancelled() => return,
                _ = auditor.audit() => {}
            }
        }
    };
    let migration = async {
        let mut ticks = tokio::time::interval_at(Instant::now() + MIGRATION_CHECK_INTERVAL, MIGRATION_CHECK_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = ticks.tick() => {}
            }
            tokio::select! {
                () = stop.cancelled() => return,
                _ = store.migration_state() => {}
            }
        }
    };
    tokio::join!(renew, assign, audit, migration);
}

/// Samples holdings every second until `done` says so or `limit` passes; returns when it
/// ended (`None` on the limit) and the unheld statistics.
struct Watch {
    peak_unheld: usize,
    unheld_lease_secs: f64,
}

impl Watch {
    fn new() -> Self {
        Self { peak_unheld: 0, unheld_lease_secs: 0.0 }
    }

    async fn until(
        &mut self,
        fleet: &Fleet,
        limit: Duration,
        mut done: impl FnMut(&HashSet<String>, usize, usize) -> bool,
    ) -> Option<Duration> {
        let started = Instant::now();
        loop {
            let (held, max, min) = fleet.holdings();
            let expected = fleet.config.leases;
            let unheld = expected.saturating_sub(held.len());
            self.peak_unheld = self.peak_unheld.max(unheld);
            if done(&held, max, min) {
                return Some(started.elapsed());
            }
            if started.elapsed() >= limit {
                return None;
            }
            tokio::time::sleep(SAMPLE).await;
            #[allow(clippy::cast_precision_loss)]
            {
                self.unheld_lease_secs += unheld as f64 * SAMPLE.as_secs_f64();
            }
        }
    }
}

const SAMPLE: Duration = Duration::from_secs(1);

/// Runs the scenario on the current tokio runtime, which must have paused time
/// (`start_paused = true`, current-thread): otherwise it runs in real time.
///
/// # Errors
/// When the simulated table or stream cannot be set up.
pub async fn run(config: SimConfig) -> Result<SimReport, SimError> {
    let table = InMemoryLeaseStore::new("sim");
    let stream = InMemoryStream::with_shards(u32::try_from(config.leases).unwrap_or(u32::MAX));
    for shard in stream.list_shards(ShardFilter::All).await? {
        let mut lease = Lease::new(shard.shard_id, ExtendedSequenceNumber::new(Position::TrimHorizon));
        lease.hash_key_range = Some(shard.hash_key_range);
        table.create_lease_if_absent(&lease).await?;
    }
    for op in [
        Op::GetLease,
        Op::CreateLease,
        Op::RenewLease,
        Op::TakeLease,
        Op::ReleaseLease,
        Op::UpdateCheckpoint,
        Op::DeleteLease,
        Op::MigrationState,
    ] {
        table.set_latency(op, config.point_latency);
    }
    let pages = config.cost_model.scan(config.leases).0;
    table.set_latency(Op::ListLeases, config.scan_page_latency * u32::try_from(pages).unwrap_or(u32::MAX));

    let meter = Meter::new(config.cost_model);
    let mut fleet = Fleet {
        config: config.clone(),
        table: Arc::new(table),
        lister: Arc::new(stream),
        meter: meter.clone(),
        workers: Vec::new(),
        tasks: JoinSet::new(),
        generation: 0,
    };
    let mut phases = Vec::new();

    // Start-up.
    let started = Instant::now();
    let phase_start = meter.total();
    let mut watch = Watch::new();
    let gap = config.start_spread / u32::try_from(config.workers.max(1)).unwrap_or(u32::MAX);
    for _ in 0..config.workers {
        let id = fleet.next_id();
        fleet.start_worker(id);
        tokio::time::sleep(gap).await;
    }
    let limit = config.settle_limit.saturating_sub(started.elapsed());
    let balanced = watch.until(&fleet, limit, |h, max, min| fleet.balanced(h.len(), max, min)).await;
    phases.push(phase_report(
        "startup",
        &fleet,
        started,
        balanced.map(|_| started.elapsed()),
        None,
        watch,
        &phase_start,
    ));

    // Steady state: whole minutes after a settling minute.
    tokio::time::sleep(Duration::from_secs(60)).await;
    let first = meter.current_minute() + 1;
    let last = first + usize::try_from(config.steady_minutes.max(1)).unwrap_or(1);
    while meter.current_minute() < last {
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
    let steady = average(&meter.sum(first, last), last - first);

    // A worker dies (the first one still alive).
    if let Some(victim) = fleet.workers.iter().position(|w| w.alive) {
        let orphans: HashSet<String> = fleet.workers[victim].renewer.held().into_iter().map(|h| h.lease.key).collect();
        let phase_start = meter.total();
        let killed = Instant::now();
        fleet.stop_worker(victim, false).await;
        let mut watch = Watch::new();
        let recovered = watch.until(&fleet, config.settle_limit, |h, _, _| orphans.iter().all(|k| h.contains(k))).await;
        let balanced = watch.until(&fleet, config.settle_limit, |h, max, min| fleet.balanced(h.len(), max, min)).await;
        let balanced = balanced.map(|_| killed.elapsed());
        phases.push(phase_report("kill", &fleet, killed, balanced, recovered, watch, &phase_start));
    }

    // Scale-out.
    if config.scale_out > 0 {
        let phase_start = meter.total();
        let added = Instant::now();
        for _ in 0..config.scale_out {
            let id = fleet.next_id();
            fleet.start_worker(id);
        }
        let mut watch = Watch::new();
        let balanced = watch.until(&fleet, config.settle_limit, |h, max, min| fleet.balanced(h.len(), max, min)).await;
        phases.push(phase_report(
            "scale_out",
            &fleet,
            added,
            balanced.map(|_| added.elapsed()),
            None,
            watch,
            &phase_start,
        ));
    }

    // Rolling restart in batches.
    if config.restart_batch > 0 {
        let phase_start = meter.total();
        let began = Instant::now();
        let mut watch = Watch::new();
        let originals: Vec<usize> = (0..fleet.workers.len()).filter(|&i| fleet.workers[i].alive).collect();
        for batch in originals.chunks(config.restart_batch) {
            for &i in batch {
                fleet.stop_worker(i, true).await;
            }
            watch.until(&fleet, config.restart_downtime, |_, _, _| false).await;
            for _ in batch {
                let id = fleet.next_id();
                fleet.start_worker(id);
            }
            watch.until(&fleet, config.restart_interval, |_, _, _| false).await;
        }
        let balanced = watch.until(&fleet, config.settle_limit, |h, max, min| fleet.balanced(h.len(), max, min)).await;
        phases.push(phase_report(
            "rolling_restart",
            &fleet,
            began,
            balanced.map(|_| began.elapsed()),
            None,
            watch,
            &phase_start,
        ));
    }

    for w in &fleet.workers {
        w.stop.cancel();
    }
    while fleet.tasks.join_next().await.is_some() {}

    let cadence = Cadence { failover_secs: config.failover_time.as_secs_f64(), checkpoints_per_lease_minute: 0.0 };
    let live = config.workers;
    #[allow(clippy::cast_precision_loss)]
    let audit_scans = 60.0
        / AuditSettings::default().interval.as_secs_f64()
        / if config.share_scan_with_audit { live.max(1) as f64 } else { 1.0 };
    let migration_gets = 2.0 * 60.0 / MIGRATION_CHECK_INTERVAL.as_secs_f64();
    let kcl2_model = cost::kcl2_steady(&config.cost_model, &cadence, live, config.leases, audit_scans, migration_gets);
    let kcl3_model = cost::kcl3_steady(&config.cost_model, &cadence, live, config.leases);
    Ok(SimReport {
        steady_units: UnitsPerMinute { rru: steady.rru, wru: steady.wru },
        steady,
        kcl2_model,
        kcl3_model,
        minutes: meter.minutes(),
        phases,
        config,
    })
}

fn average(total: &Usage, minutes: usize) -> Usage {
    #[allow(clippy::cast_precision_loss)]
    let n = minutes.max(1) as f64;
    let div = |v: u64| {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
        let r = (v as f64 / n).round() as u64;
        r
    };
    Usage {
        requests: total.requests.iter().map(|(k, v)| (*k, div(*v))).collect::<BTreeMap<_, _>>(),
        by_purpose: total.by_purpose.iter().map(|(k, v)| (*k, div(*v))).collect::<BTreeMap<_, _>>(),
        scanned_items: div(total.scanned_items),
        rru: total.rru / n,
        wru: total.wru / n,
        moves: div(total.moves),
        takes_unowned: div(total.takes_unowned),
    }
}

fn phase_report(
    phase: &'static str,
    fleet: &Fleet,
    began: Instant,
    balanced: Option<Duration>,
    recovered: Option<Duration>,
    watch: Watch,
    from: &Usage,
) -> PhaseReport {
    let (_, max_held, min_held) = fleet.holdings();
    let usage = fleet.meter.total().since(from);
    PhaseReport {
        phase,
        workers: fleet.live().count(),
        balanced_after_secs: balanced.map(|d| d.as_secs_f64()),
        recovered_after_secs: recovered.map(|d| d.as_secs_f64()),
        leases_moved: usage.moves,
        takes_unowned: usage.takes_unowned,
        peak_unheld: watch.peak_unheld,
        unheld_lease_secs: watch.unheld_lease_secs,
        max_held,
        min_held,
        usage,
        duration_secs: began.elapsed().as_secs_f64(),
    }
}

/// Runs [`run`] on a fresh current-thread runtime with paused time.
///
/// # Errors
/// As [`run`]; also when the runtime cannot be built.
pub fn run_blocking(config: SimConfig) -> Result<SimReport, SimError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .map_err(|e| SimError::Runtime(e.to_string()))?;
    runtime.block_on(run(config))
}
