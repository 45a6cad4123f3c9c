//! `multilangd leases`: a read-only view of an application's lease table for operators.
//!
//! One [`Snapshot`] is one full scan ([`LeaseStore::list_leases`], which skips the KCL 3.x
//! non-lease items and reports malformed ones) plus the `Migration3.0` state. It shows per
//! lease the owner, `leaseCounter`, checkpoint, parent and child shards, and for the fleet
//! the lease count per owner and the KCL 2.x leader (the Java deterministic shuffle,
//! [`crate::lease::leader::shuffled_owners`]).
//!
//! Liveness cannot be read from one scan: a lease is alive while its counter keeps changing
//! (every renewal increments it; see `lease-coordination.md` §4.1). A [`ChangeTracker`] fed
//! with consecutive snapshots (`--watch`) tells for each lease how long its counter has
//! stayed the same *between this tool's reads* — a lower bound, measured on this host's
//! monotonic clock exactly as a worker's taker measures it — and flags owned leases
//! unchanged for longer than `failoverTimeMillis`: peers consider those expired and take
//! them at their next taker round.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::lease::kcl3::coordinator::CoordinatorStateStore;
use crate::lease::kcl3::lease_table::{IndexState, Kcl3LeaseTable};
use crate::lease::kcl3::worker_metrics::WorkerMetricsStore;
use crate::lease::kcl3::{LockItem, MigrationRecord, WorkerMetricStats};
use crate::lease::leader::shuffled_owners;
use crate::lease::{Lease, LeaseError, LeaseStore, MigrationState};

/// Worker metrics older than this are not counted as active by a 3.x leader (2 × the 30 s
/// reporter period).
const METRICS_EXPIRY_S: u64 = 60;

/// The KCL 3.x side of an application: the coordinator state, worker metrics and owner index.
#[derive(Debug, Clone, Default)]
pub struct Kcl3View {
    /// The coordinator-state table.
    pub coordinator_table: String,
    /// The full `Migration3.0` item, if present.
    pub migration: Option<MigrationRecord>,
    /// The leader lock, if present.
    pub lock: Option<LockItem>,
    /// The worker-metrics table.
    pub metrics_table: String,
    /// Every worker's `WorkerMetricStats`.
    pub workers: Vec<WorkerMetricStats>,
    /// The lease table's owner index.
    pub owner_index: Option<IndexState>,
    /// Parts that could not be read.
    pub errors: Vec<String>,
}

/// Where [`Snapshot::read_kcl3`] reads the 3.x state.
pub struct Kcl3Sources<'a> {
    /// The coordinator-state table.
    pub coordinator: &'a dyn CoordinatorStateStore,
    /// The worker-metrics table.
    pub metrics: &'a dyn WorkerMetricsStore,
    /// The lease table's 3.x side (owner index).
    pub lease_table: &'a dyn Kcl3LeaseTable,
}

/// How long a lease's counter has stayed the same, as seen by consecutive reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// First read of this lease: nothing to compare with.
    Unknown,
    /// The counter changed since the previous read (the lease is being renewed or written).
    Changed,
    /// The counter has had the same value in every read for at least this long.
    UnchangedFor(Duration),
}

/// Remembers, per lease, the counter value last read and since when it has been seen.
#[derive(Debug, Default)]
pub struct ChangeTracker {
    seen: HashMap<String, (u64, Instant)>,
}

impl ChangeTracker {
    /// An empty tracker (every lease [`Change::Unknown`] on the first read).
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the leases read at `now` and says how each changed since the previous read.
    /// Leases no longer present are forgotten.
    pub fn observe(&mut self, leases: &[Lease], now: Instant) -> HashMap<String, Change> {
        let mut changes = HashMap::new();
        let mut next = HashMap::new();
        for lease in leases {
            let (change, since) = match self.seen.get(&lease.key) {
                None => (Change::Unknown, now),
                Some(&(counter, since)) if counter == lease.counter => {
                    (Change::UnchangedFor(now.saturating_duration_since(since)), since)
                }
                Some(_) => (Change::Changed, now),
            };
            changes.insert(lease.key.clone(), change);
            next.insert(lease.key.clone(), (lease.counter, since));
        }
        self.seen = next;
        changes
    }
}

/// One lease as shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRow {
    /// The lease as read.
    pub lease: Lease,
    /// Counter change since the previous read.
    pub change: Change,
}

impl LeaseRow {
    /// True when the lease has an owner and its counter has not changed for longer than
    /// `failover`: other workers consider it expired and may take it.
    #[must_use]
    pub fn looks_expired(&self, failover: Duration) -> bool {
        self.lease.owner.is_some() && matches!(self.change, Change::UnchangedFor(d) if d > failover)
    }
}

/// One read of the lease table.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The lease table.
    pub table: String,
    /// `failoverTimeMillis` of the configuration (to judge expiry).
    pub failover_time: Duration,
    /// When the scan finished (wall clock, for JSON consumers).
    pub read_at: SystemTime,
    /// Every lease, sorted by key.
    pub leases: Vec<LeaseRow>,
    /// Items that look like leases but cannot be read (workers skip them too).
    pub malformed: Vec<String>,
    /// The `Migration3.0` state, if the item exists.
    pub migration: Option<MigrationState>,
    /// Why the migration state could not be read, if it could not.
    pub migration_error: Option<String>,
    /// The KCL 3.x state, when read ([`Snapshot::read_kcl3`]).
    pub kcl3: Option<Kcl3View>,
}

impl Snapshot {
    /// Reads the table once. `tracker` supplies the change since its previous read.
    ///
    /// # Errors
    /// The scan's [`LeaseError`] (table missing, throttled, unreachable). A failure to read
    /// the migration state is recorded in [`Snapshot::migration_error`] instead.
    pub async fn read(
        store: &dyn LeaseStore,
        failover_time: Duration,
        tracker: &mut ChangeTracker,
    ) -> Result<Self, LeaseError> {
        let scan = store.list_leases().await?;
        let now = Instant::now();
        let read_at = SystemTime::now();
        let changes = tracker.observe(&scan.leases, now);
        let mut leases: Vec<LeaseRow> = scan
            .leases
            .into_iter()
            .map(|lease| {
                let change = changes.get(&lease.key).copied().unwrap_or(Change::Unknown);
                LeaseRow { lease, change }
            })
            .collect();
        leases.sort_by(|a, b| a.lease.key.cmp(&b.lease.key));
        let (migration, migration_error) = match store.migration_state().await {
            Ok(state) => (state, None),
            Err(e) => (None, Some(e.to_string())),
        };
        Ok(Self {
            table: store.table_name().to_owned(),
            failover_time,
            read_at,
            leases,
            malformed: scan.malformed.iter().map(ToString::to_string).collect(),
            migration,
            migration_error,
            kcl3: None,
        })
    }

    /// Adds the KCL 3.x state (mode, leader lock, worker metrics, owner index). Read failures
    /// are recorded in [`Kcl3View::errors`], never fatal.
    pub async fn read_kcl3(&mut self, sources: &Kcl3Sources<'_>) {
        let mut view = Kcl3View {
            coordinator_table: sources.coordinator.table_name().to_owned(),
            metrics_table: sources.metrics.table_name().to_owned(),
            ..Kcl3View::default()
        };
        match sources.coordinator.migration().await {
            Ok(m) => view.migration = m,
            Err(e) => view.errors.push(e.to_string()),
        }
        match sources.coordinator.lock().await {
            Ok(l) => view.lock = l,
            Err(e) => view.errors.push(e.to_string()),
        }
        match sources.metrics.list().await {
            Ok(scan) => {
                view.workers = scan.workers;
                view.workers.sort_by(|a, b| a.worker_id.cmp(&b.worker_id));
                view.errors.extend(scan.malformed.iter().map(ToString::to_string));
            }
            Err(e) => view.errors.push(e.to_string()),
        }
        match sources.lease_table.owner_index_state().await {
            Ok(state) => view.owner_index = Some(state),
            Err(e) => view.errors.push(e.to_string()),
        }
        self.kcl3 = Some(view);
    }

    /// The protocol the fleet runs, from `Migration3.0` (the 3.x view's, else the lease store's).
    #[must_use]
    pub fn mode(&self) -> &'static str {
        let cv = self
            .kcl3
            .as_ref()
            .and_then(|k| k.migration.as_ref())
            .map(|m| m.client_version.as_str().to_owned())
            .or_else(|| self.migration.as_ref().map(|m| m.client_version.clone()));
        match cv.as_deref() {
            Some("CLIENT_VERSION_3X") => "KCL 3.x",
            Some("CLIENT_VERSION_3X_WITH_ROLLBACK") => "KCL 3.x (rollback still possible)",
            Some("CLIENT_VERSION_UPGRADE_FROM_2X") => "KCL 2.x protocol, preparing the upgrade to 3.x",
            Some("CLIENT_VERSION_2X") => "KCL 2.x protocol (rolled back from 3.x)",
            Some(_) => "unknown client version",
            None => "KCL 2.x (no Migration3.0 item)",
        }
    }

    /// Leases in a graceful hand-off: (key, old owner = `checkpointOwner`, new owner).
    #[must_use]
    pub fn handoffs(&self) -> Vec<(String, String, String)> {
        self.leases
            .iter()
            .filter_map(|row| {
                let from = row.lease.checkpoint_owner.clone()?;
                Some((row.lease.key.clone(), from, row.lease.owner.clone().unwrap_or_else(|| "-".to_owned())))
            })
            .collect()
    }

    fn render_kcl3(&self, out: &mut String) {
        let _ = writeln!(out, "Mode: {}", self.mode());
        let handoffs = self.handoffs();
        if !handoffs.is_empty() {
            let listed: Vec<String> = handoffs.iter().map(|(k, from, to)| format!("{k} {from} -> {to}")).collect();
            let _ = writeln!(out, "Hand-offs in progress: {}", listed.join(", "));
        }
        let Some(view) = &self.kcl3 else { return };
        if let Some(m) = &view.migration {
            let history: Vec<&str> = m.history.iter().map(|h| h.client_version.as_str()).collect();
            let _ = writeln!(
                out,
                "Migration3.0 in {}: {} (by {}, at {} ms; before: {})",
                view.coordinator_table,
                m.client_version,
                m.modified_by,
                m.modified_at_ms,
                if history.is_empty() { "-".to_owned() } else { history.join(", ") }
            );
        }
        match &view.lock {
            Some(lock) => {
                let _ = writeln!(
                    out,
                    "3.x leader: {} (lock leaseDuration {} ms, recordVersionNumber {}{})",
                    lock.owner,
                    lock.lease_duration_ms,
                    lock.record_version,
                    if lock.released { ", released" } else { "" }
                );
            }
            None if view.migration.is_some() => {
                let _ = writeln!(out, "3.x leader: none (no Leader lock item)");
            }
            None => {}
        }
        if !view.workers.is_empty() {
            let now_s = self.read_at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
            let listed: Vec<String> = view
                .workers
                .iter()
                .map(|w| {
                    let age = now_s.saturating_sub(w.last_update_s);
                    let kind = if w.is_default_metric() { "throughput" } else { "metrics" };
                    let state = if w.is_active(now_s, METRICS_EXPIRY_S) { "active" } else { "INACTIVE" };
                    format!("{} ({kind}, updated {age}s ago, {state})", w.worker_id)
                })
                .collect();
            let _ = writeln!(out, "Worker metrics in {}: {}", view.metrics_table, listed.join(", "));
        }
        if let Some(index) = &view.owner_index {
            let _ = writeln!(out, "Owner index LeaseOwnerToLeaseKeyIndex: {index:?}");
        }
        for e in &view.errors {
            let _ = writeln!(out, "KCL 3.x state unreadable: {e}");
        }
    }

    fn kcl3_json(&self) -> Value {
        let handoffs: Vec<Value> = self
            .handoffs()
            .into_iter()
            .map(|(k, from, to)| json!({ "leaseKey": k, "checkpointOwner": from, "leaseOwner": to }))
            .collect();
        let Some(view) = &self.kcl3 else {
            return json!({ "mode": self.mode(), "handoffs": handoffs });
        };
        let now_s = self.read_at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        json!({
            "mode": self.mode(),
            "handoffs": handoffs,
            "coordinatorStateTable": view.coordinator_table,
            "clientVersion": view.migration.as_ref().map(|m| m.client_version.as_str()),
            "migrationHistory": view.migration.as_ref().map(|m| m.history.iter().map(|h| h.client_version.as_str()).collect::<Vec<_>>()),
            "leader": view.lock.as_ref().map(|l| json!({
                "ownerName": l.owner, "leaseDuration": l.lease_duration_ms,
                "recordVersionNumber": l.record_version, "released": l.released,
            })),
            "workerMetricsTable": view.metrics_table,
            "workers": view.workers.iter().map(|w| json!({
                "workerId": w.worker_id, "lastUpdateSeconds": w.last_update_s,
                "defaultMetric": w.is_default_metric(), "active": w.is_active(now_s, METRICS_EXPIRY_S),
                "stats": w.stats, "operatingRange": w.operating_range,
            })).collect::<Vec<_>>(),
            "ownerIndex": view.owner_index.as_ref().map(|i| format!("{i:?}")),
            "errors": view.errors,
        })
    }

    /// Lease count per owner (owned leases only).
    #[must_use]
    pub fn owners(&self) -> BTreeMap<String, usize> {
        let mut owners = BTreeMap::new();
        for row in &self.leases {
            if let Some(owner) = &row.lease.owner {
                *owners.entry(owner.clone()).or_insert(0) += 1;
            }
        }
        owners
    }

    /// The owners in the KCL 2.x leader order (first = the leader that runs the periodic
    /// shard-sync audit). Empty when no lease has an owner: then every worker leads.
    #[must_use]
    pub fn leader_order(&self) -> Vec<String> {
        shuffled_owners(self.leases.iter().filter_map(|row| row.lease.owner.as_deref()))
    }

    /// Leases without an owner.
    #[must_use]
    pub fn unowned(&self) -> usize {
        self.leases.iter().filter(|row| row.lease.owner.is_none()).count()
    }

    /// The human-readable report.
    #[must_use]
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Lease table {}: {} lease(s), {} owned, {} unowned",
            self.table,
            self.leases.len(),
            self.leases.len() - self.unowned(),
            self.unowned()
        );
        let mut rows: Vec<[String; 7]> =
            vec![["SHARD", "OWNER", "COUNTER", "CHECKPOINT", "UNCHANGED", "PARENTS", "CHILDREN"].map(str::to_owned)];
        for row in &self.leases {
            let lease = &row.lease;
            let mut owner = lease.owner.clone().unwrap_or_else(|| "-".to_owned());
            if let Some(from) = &lease.checkpoint_owner {
                let _ = write!(owner, " (checkpointOwner {from})");
            }
            let mut unchanged = match row.change {
                Change::Unknown => "?".to_owned(),
                Change::Changed => "changed".to_owned(),
                Change::UnchangedFor(d) => format!("{:.1}s", d.as_secs_f64()),
            };
            if row.looks_expired(self.failover_time) {
                unchanged.push_str(" EXPIRED");
            }
            rows.push([
                lease.key.clone(),
                owner,
                lease.counter.to_string(),
                lease.checkpoint.to_string(),
                unchanged,
                join_or_dash(lease.parent_shard_ids.iter()),
                join_or_dash(lease.child_shard_ids.iter()),
            ]);
        }
        let mut widths = [0_usize; 7];
        for row in &rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        for row in &rows {
            let mut line = String::new();
            for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
                if i + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    let _ = write!(line, "{cell:<width$}  ");
                }
            }
            let _ = writeln!(out, "{}", line.trim_end());
        }

        let owners = self.owners();
        let order = self.leader_order();
        let _ = writeln!(out);
        if order.is_empty() {
            let _ = writeln!(out, "Owners: none (no lease has an owner: every worker considers itself the 2.x leader)");
        } else {
            let listed: Vec<String> = order
                .iter()
                .enumerate()
                .map(|(i, owner)| {
                    let count = owners.get(owner).copied().unwrap_or(0);
                    if i == 0 {
                        format!("{owner} {count} (2.x leader)")
                    } else {
                        format!("{owner} {count}")
                    }
                })
                .collect();
            let _ = writeln!(out, "Owners (leader first): {}", listed.join(", "));
        }
        let expired = self.leases.iter().filter(|row| row.looks_expired(self.failover_time)).count();
        if expired > 0 {
            let _ = writeln!(
                out,
                "{expired} owned lease(s) unchanged for longer than failoverTimeMillis ({} ms): their owner looks \
                 dead; peers take them at their next taker round",
                self.failover_time.as_millis()
            );
        }
        self.render_kcl3(&mut out);
        match (&self.migration, &self.migration_error) {
            (Some(state), _) if self.kcl3.as_ref().is_none_or(|k| k.migration.is_none()) => {
                let _ = writeln!(out, "KCL 3.x migration state: {} in {}", state.client_version, state.table);
            }
            (Some(_), _) => {}
            (None, Some(error)) => {
                let _ = writeln!(out, "KCL 3.x migration state: unreadable: {error}");
            }
            (None, None) => {}
        }
        if !self.malformed.is_empty() {
            let _ = writeln!(out, "Malformed items (skipped by workers):");
            for problem in &self.malformed {
                let _ = writeln!(out, "  {problem}");
            }
        }
        out
    }

    /// The machine-readable report (attribute names as in the table).
    #[must_use]
    pub fn to_json(&self) -> Value {
        let leases: Vec<Value> = self
            .leases
            .iter()
            .map(|row| {
                let l = &row.lease;
                let (unchanged_ms, changed) = match row.change {
                    Change::Unknown => (Value::Null, Value::Null),
                    Change::Changed => (json!(0), json!(true)),
                    Change::UnchangedFor(d) => (json!(millis(d)), json!(false)),
                };
                json!({
                    "leaseKey": l.key,
                    "leaseOwner": l.owner,
                    "leaseCounter": l.counter,
                    "checkpoint": l.checkpoint.position.as_str(),
                    "checkpointSubSequenceNumber": l.checkpoint.sub_sequence,
                    "pendingCheckpoint": l.pending_checkpoint.as_ref().map(|p| p.position.as_str()),
                    "ownerSwitchesSinceCheckpoint": l.owner_switches_since_checkpoint,
                    "parentShardIds": l.parent_shard_ids,
                    "childShardIds": l.child_shard_ids,
                    "checkpointOwner": l.checkpoint_owner,
                    "changedSincePreviousRead": changed,
                    "unchangedForMillis": unchanged_ms,
                    "looksExpired": row.looks_expired(self.failover_time),
                })
            })
            .collect();
        let migration = self
            .migration
            .as_ref()
            .map(|m| json!({ "clientVersion": m.client_version, "table": m.table, "kcl3xMode": m.is_3x_mode() }));
        json!({
            "table": self.table,
            "readAtMillis": self.read_at.duration_since(UNIX_EPOCH).map_or(0, millis),
            "failoverTimeMillis": millis(self.failover_time),
            "leases": leases,
            "owners": self.owners(),
            "leaderOrder": self.leader_order(),
            "leader": self.leader_order().first(),
            "unowned": self.unowned(),
            "malformed": self.malformed,
            "migration": migration,
            "migrationError": self.migration_error,
            "kcl3": self.kcl3_json(),
        })
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn join_or_dash<'a>(ids: impl Iterator<Item = &'a String>) -> String {
    let ids: Vec<&str> = ids.map(String::as_str).collect();
    if ids.is_empty() {
        "-".to_owned()
    } else {
        ids.join(",")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::lease::memory::InMemoryLeaseStore;
    use crate::sequence::{ExtendedSequenceNumber, Position, SequenceNumber};

    fn lease(key: &str, owner: Option<&str>, counter: u64) -> Lease {
        let mut lease = Lease::new(key, ExtendedSequenceNumber::new(Position::TrimHorizon));
        lease.owner = owner.map(str::to_owned);
        lease.counter = counter;
        lease
    }

    #[tokio::test]
    async fn kcl3_view_shows_mode_leader_metrics_and_hand_offs() {
        use crate::lease::kcl3::coordinator::CoordinatorStateStore;
        use crate::lease::kcl3::memory::{
            InMemoryCoordinatorStore, InMemoryKcl3LeaseTable, InMemoryWorkerMetricsStore,
        };
        use crate::lease::kcl3::{ClientVersion, LockItem, MigrationRecord, WorkerMetricStats};

        let store = InMemoryLeaseStore::new("app");
        store.put(lease("shardId-0", Some("a"), 3));
        let mut moving = lease("shardId-1", Some("b"), 4);
        moving.checkpoint_owner = Some("a".into());
        store.put(moving);
        let coordinator = InMemoryCoordinatorStore::new("app-CoordinatorState");
        let record = MigrationRecord::initial(ClientVersion::V3x, "a", 1);
        assert!(coordinator.create_migration_if_absent(&record).await.unwrap_or(false));
        let lock =
            LockItem { owner: "a".into(), lease_duration_ms: 20_000, record_version: "rv".into(), released: false };
        assert!(coordinator.put_lock(&lock, None).await.unwrap_or(false));
        let metrics = InMemoryWorkerMetricsStore::new("app-WorkerMetricStats");
        let now_s = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        metrics.publish(&WorkerMetricStats::default_metric("a", now_s)).await.ok();
        metrics.publish(&WorkerMetricStats::default_metric("gone", now_s - 3_600)).await.ok();
        let lease_table = InMemoryKcl3LeaseTable::new(store.clone());

        let mut snapshot = Snapshot::read(&store, Duration::from_secs(10), &mut ChangeTracker::new()).await.unwrap();
        snapshot
            .read_kcl3(&Kcl3Sources { coordinator: &coordinator, metrics: &metrics, lease_table: &lease_table })
            .await;
        let text = snapshot.render_text();
        for expected in [
            "Mode: KCL 3.x",
            "Hand-offs in progress: shardId-1 a -> b",
            "Migration3.0 in app-CoordinatorState: CLIENT_VERSION_3X (by a, at 1 ms; before: CLIENT_VERSION_INIT)",
            "3.x leader: a (lock leaseDuration 20000 ms, recordVersionNumber rv)",
            "a (throughput, updated 0s ago, active)",
            "gone (throughput, updated 3600s ago, INACTIVE)",
            "Owner index LeaseOwnerToLeaseKeyIndex: Missing",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
        let json = snapshot.to_json();
        assert_eq!(json["kcl3"]["leader"]["ownerName"], "a");
        assert_eq!(json["kcl3"]["clientVersion"], "CLIENT_VERSION_3X");
        assert_eq!(json["kcl3"]["handoffs"][0]["checkpointOwner"], "a");
        assert_eq!(json["kcl3"]["workers"][1]["active"], false);
    }

    #[test]
    fn tracker_reports_unknown_then_changed_or_unchanged_durations() {
        let mut tracker = ChangeTracker::new();
        let t0 = Instant::now();
        let first = tracker.observe(&[lease("a", Some("w"), 1), lease("b", Some("w"), 1)], t0);
        assert_eq!(first["a"], Change::Unknown);
        let t1 = t0 + Duration::from_secs(2);
        let second = tracker.observe(&[lease("a", Some("w"), 2), lease("b", Some("w"), 1)], t1);
        assert_eq!(second["a"], Change::Changed);
        assert_eq!(second["b"], Change::UnchangedFor(Duration::from_secs(2)));
        let t2 = t1 + Duration::from_secs(3);
        let third = tracker.observe(&[lease("a", Some("w"), 2)], t2);
        assert_eq!(third["a"], Change::UnchangedFor(Duration::from_secs(3)));
        // "b" vanished and is forgotten: if it comes back it is new again.
        let fourth = tracker.observe(&[lease("b", Some("w"), 1)], t2);
        assert_eq!(fourth["b"], Change::Unknown);
    }

    #[test]
    fn only_owned_leases_unchanged_past_failover_look_expired() {
        let failover = Duration::from_secs(10);
        let row = |owner: Option<&str>, change| LeaseRow { lease: lease("a", owner, 1), change };
        assert!(row(Some("w"), Change::UnchangedFor(Duration::from_secs(11))).looks_expired(failover));
        assert!(!row(Some("w"), Change::UnchangedFor(Duration::from_secs(9))).looks_expired(failover));
        assert!(!row(None, Change::UnchangedFor(Duration::from_secs(60))).looks_expired(failover));
        assert!(!row(Some("w"), Change::Unknown).looks_expired(failover));
        assert!(!row(Some("w"), Change::Changed).looks_expired(failover));
    }

    #[tokio::test]
    async fn snapshot_shows_owners_leader_checkpoints_and_lineage() {
        let store = InMemoryLeaseStore::new("app");
        let mut parent = lease("shardId-000000000000", Some("worker-b"), 12);
        parent.checkpoint = ExtendedSequenceNumber::shard_end();
        parent.child_shard_ids = BTreeSet::from(["shardId-000000000002".to_owned()]);
        let mut child = lease("shardId-000000000002", Some("worker-a"), 7);
        child.parent_shard_ids = BTreeSet::from(["shardId-000000000000".to_owned()]);
        child.checkpoint = ExtendedSequenceNumber::at(SequenceNumber::parse("4959").unwrap(), 3);
        child.checkpoint_owner = Some("worker-c".to_owned());
        store.put(parent);
        store.put(child);
        store.put(lease("shardId-000000000001", None, 0));
        store.insert_foreign("worker-a");
        store.insert_malformed("shardId-000000000999", "leaseCounter must be N");
        store.set_migration_state(Some(MigrationState {
            client_version: "CLIENT_VERSION_UPGRADE_FROM_2X".into(),
            table: "app".into(),
        }));
        let mut tracker = ChangeTracker::new();
        let snapshot = Snapshot::read(&store, Duration::from_secs(10), &mut tracker).await.unwrap();

        let keys: Vec<&str> = snapshot.leases.iter().map(|r| r.lease.key.as_str()).collect();
        assert_eq!(keys, ["shardId-000000000000", "shardId-000000000001", "shardId-000000000002"]);
        assert_eq!(snapshot.unowned(), 1);
        let expected_order = shuffled_owners(["worker-a", "worker-b"]);
        assert_eq!(snapshot.leader_order(), expected_order);

        let text = snapshot.render_text();
        assert!(text.contains("3 lease(s), 2 owned, 1 unowned"), "{text}");
        assert!(text.contains("4959/3"), "sub-sequence shown: {text}");
        assert!(text.contains("SHARD_END"), "{text}");
        assert!(text.contains("worker-a (checkpointOwner worker-c)"), "{text}");
        assert!(text.contains(&format!("{} 1 (2.x leader)", expected_order[0])), "{text}");
        assert!(text.contains("KCL 3.x migration state: CLIENT_VERSION_UPGRADE_FROM_2X in app"), "{text}");
        assert!(text.contains("Mode: KCL 2.x protocol, preparing the upgrade to 3.x"), "{text}");
        assert!(text.contains("Hand-offs in progress: shardId-000000000002 worker-c -> worker-a"), "{text}");
        assert!(text.contains("Malformed items (skipped by workers):"), "{text}");
        assert!(text.contains("shardId-000000000999"), "{text}");
        let child_line = text.lines().find(|l| l.starts_with("shardId-000000000002")).unwrap();
        assert!(child_line.contains("shardId-000000000000"), "parent shown: {child_line}");

        let json = snapshot.to_json();
        assert_eq!(json["leases"][2]["checkpoint"], "4959");
        assert_eq!(json["leases"][2]["checkpointSubSequenceNumber"], 3);
        assert_eq!(json["leases"][0]["childShardIds"][0], "shardId-000000000002");
        assert_eq!(json["leases"][1]["leaseOwner"], Value::Null);
        assert_eq!(json["leader"], expected_order[0].as_str());
        assert_eq!(json["owners"]["worker-a"], 1);
        assert_eq!(json["leases"][0]["unchangedForMillis"], Value::Null);
        assert_eq!(json["migration"]["kcl3xMode"], false);
        assert_eq!(json["malformed"].as_array().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_second_read_flags_leases_whose_counter_stood_still_past_failover() {
        let store = InMemoryLeaseStore::new("app");
        store.put(lease("live", Some("w1"), 1));
        store.put(lease("dead", Some("w2"), 1));
        let mut tracker = ChangeTracker::new();
        let failover = Duration::from_millis(30);
        Snapshot::read(&store, failover, &mut tracker).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        store.modify("live", |l| l.counter += 1);
        let snapshot = Snapshot::read(&store, failover, &mut tracker).await.unwrap();
        let row = |key: &str| snapshot.leases.iter().find(|r| r.lease.key == key).unwrap().clone();
        assert_eq!(row("live").change, Change::Changed);
        assert!(row("dead").looks_expired(failover));
        let text = snapshot.render_text();
        assert!(text.contains("EXPIRED"), "{text}");
        assert!(text.contains("1 owned lease(s) unchanged for longer than failoverTimeMillis"), "{text}");
        assert_eq!(snapshot.to_json()["leases"][0]["looksExpired"], true);
    }

    #[tokio::test]
    async fn empty_table_has_no_leader() {
        let store = InMemoryLeaseStore::new("app");
        let snapshot = Snapshot::read(&store, Duration::from_secs(10), &mut ChangeTracker::new()).await.unwrap();
        assert!(snapshot.render_text().contains("every worker considers itself the 2.x leader"));
        assert_eq!(snapshot.to_json()["leader"], Value::Null);
    }
}
