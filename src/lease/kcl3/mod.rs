//! KCL 3.x side of the lease protocol: the coordinator-state table (client-version migration
//! item and the leader lock), the worker-metrics table, and the 3.x writes on the lease table
//! (owner index, renew with the hand-off condition, assign, graceful hand-off).
//!
//! Item shapes are those the Java KCL 3.1.3 MultiLangDaemon writes (captured in
//! `tests/fixtures/kcl3-java-3.1.3/`; see `../shared/reference/lease-coordination.md` §2.3–2.4,
//! §6.2, §10 and `kcl3-fanout-users.md` §2):
//!
//! * `<applicationName>-CoordinatorState`, partition key `key` (S):
//!   * `Migration3.0`: `cv` (S, [`ClientVersion`]), `mb` (S, modified by), `mts` (N, epoch ms),
//!     `h` (L of M `{cv, mb, mts}`, newest first, at most 10; absent when empty);
//!   * `Leader`: the DynamoDB lock-client item `ownerName` (S), `leaseDuration` (S, ms),
//!     `recordVersionNumber` (S, UUID), optionally `isReleased`.
//! * `<applicationName>-WorkerMetricStats`, partition key `wid` (S): `lut` (N, epoch seconds),
//!   `sts` and `opr` (M of metric name → L of N).
//! * The lease table gains the GSI `LeaseOwnerToLeaseKeyIndex` (hash `leaseOwner`, range
//!   `leaseKey`, KEYS_ONLY).
//!
//! The KCL 3.5 single-table format (the same items in the lease table, keyed by `leaseKey`,
//! with `entityType`) is read by pointing a store at the lease table with key attribute
//! `leaseKey`; multilangd writes the 3.0–3.4 multi-table format, which is what the Java
//! MultiLangDaemon of every wrapper runs.
//!
//! Errors are [`LeaseError`]s naming the table; a failed condition is `Ok(false)`/`None`.

pub mod assignment;
pub mod conformance;
pub mod coordinator;
pub mod follower;
pub mod leader;
pub mod lease_table;
pub mod lock;
#[cfg(any(test, feature = "test-support"))]
pub mod memory;
pub mod mode;
pub mod startup;
pub mod tables;
pub mod upgrade;
pub mod worker;
pub mod worker_metrics;

use std::collections::BTreeMap;
use std::fmt;

use super::LeaseError;

/// Suffix of the coordinator-state table name: `<applicationName>-CoordinatorState`.
pub const COORDINATOR_STATE_SUFFIX: &str = "-CoordinatorState";
/// Suffix of the worker-metrics table name: `<applicationName>-WorkerMetricStats`.
pub const WORKER_METRICS_SUFFIX: &str = "-WorkerMetricStats";
/// The lease table's global secondary index from owner to lease keys.
pub const OWNER_INDEX: &str = "LeaseOwnerToLeaseKeyIndex";
/// Key of the client-version migration item.
pub const MIGRATION_KEY: &str = "Migration3.0";
/// Key of the leader lock item.
pub const LEADER_KEY: &str = "Leader";
/// Java's leader-lock duration (`leaseDuration` in its lock items), not settable through the MLD.
pub const JAVA_LEADER_LOCK_DURATION_MS: u64 = 120_000;
/// At most this many history entries are kept in `Migration3.0.h` (as Java).
pub const MAX_MIGRATION_HISTORY: usize = 10;

/// Attribute names of the side-table items.
pub mod attr {
    /// `key` (S): partition key of the coordinator-state table.
    pub const COORDINATOR_KEY: &str = "key";
    /// `cv` (S): client version.
    pub const CLIENT_VERSION: &str = "cv";
    /// `mb` (S): worker that last modified the migration item.
    pub const MODIFIED_BY: &str = "mb";
    /// `mts` (N): epoch milliseconds of the last modification.
    pub const MODIFIED_AT: &str = "mts";
    /// `h` (L of M): history, newest first.
    pub const HISTORY: &str = "h";
    /// `ownerName` (S): lock owner.
    pub const OWNER_NAME: &str = "ownerName";
    /// `leaseDuration` (S, milliseconds): lock duration.
    pub const LEASE_DURATION: &str = "leaseDuration";
    /// `recordVersionNumber` (S): changes with every heartbeat.
    pub const RECORD_VERSION: &str = "recordVersionNumber";
    /// `isReleased` (BOOL or S): set by lock clients that release without deleting.
    pub const IS_RELEASED: &str = "isReleased";
    /// `wid` (S): partition key of the worker-metrics table.
    pub const WORKER_ID: &str = "wid";
    /// `lut` (N): epoch seconds of the last update.
    pub const LAST_UPDATE: &str = "lut";
    /// `sts` (M): metric name → last values.
    pub const STATS: &str = "sts";
    /// `opr` (M): metric name → operating range (first element = maximum).
    pub const OPERATING_RANGE: &str = "opr";
    /// `throughputKBps` (N): per-lease throughput written with every 3.x renewal.
    pub const THROUGHPUT: &str = "throughputKBps";
}

/// The fleet's client version (`Migration3.0.cv`), with Java's names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ClientVersion {
    /// `CLIENT_VERSION_INIT`: only ever found in history entries.
    Init,
    /// `CLIENT_VERSION_2X`: rolled back; the 2.x protocol.
    V2x,
    /// `CLIENT_VERSION_UPGRADE_FROM_2X`: 2.x protocol while the fleet prepares for 3.x.
    UpgradeFrom2x,
    /// `CLIENT_VERSION_3X_WITH_ROLLBACK`: 3.x protocol; a rollback is still possible.
    V3xWithRollback,
    /// `CLIENT_VERSION_3X`: 3.x protocol, final.
    V3x,
}

impl ClientVersion {
    /// Every version, for parsing.
    pub const ALL: [ClientVersion; 5] = [Self::Init, Self::V2x, Self::UpgradeFrom2x, Self::V3xWithRollback, Self::V3x];

    /// Java's enum name, as stored.
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Init => "CLIENT_VERSION_INIT",
            Self::V2x => "CLIENT_VERSION_2X",
            Self::UpgradeFrom2x => "CLIENT_VERSION_UPGRADE_FROM_2X",
            Self::V3xWithRollback => "CLIENT_VERSION_3X_WITH_ROLLBACK",
            Self::V3x => "CLIENT_VERSION_3X",
        }
    }

    /// Parses a stored name.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == text)
    }

    /// True when workers run the 3.x protocol (lock leader, assignment, no taking).
    #[must_use]
    pub fn runs_3x_protocol(&self) -> bool {
        matches!(self, Self::V3xWithRollback | Self::V3x)
    }
}

impl fmt::Display for ClientVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of `Migration3.0.h`: a state the item had before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationHistoryEntry {
    /// `cv`.
    pub client_version: ClientVersion,
    /// `mb`.
    pub modified_by: String,
    /// `mts` (epoch ms).
    pub modified_at_ms: u64,
}

/// The `Migration3.0` item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationRecord {
    /// `cv`.
    pub client_version: ClientVersion,
    /// `mb`.
    pub modified_by: String,
    /// `mts` (epoch ms).
    pub modified_at_ms: u64,
    /// `h`, newest first.
    pub history: Vec<MigrationHistoryEntry>,
}

impl MigrationRecord {
    /// The item a brand-new application writes (as Java: history holds the `INIT` state).
    #[must_use]
    pub fn initial(client_version: ClientVersion, worker_id: &str, now_ms: u64) -> Self {
        Self {
            client_version,
            modified_by: worker_id.to_owned(),
            modified_at_ms: now_ms,
            history: vec![MigrationHistoryEntry {
                client_version: ClientVersion::Init,
                modified_by: worker_id.to_owned(),
                modified_at_ms: now_ms,
            }],
        }
    }

    /// This record moved to `client_version` by `worker_id`: the current state goes to the
    /// front of the history (capped at [`MAX_MIGRATION_HISTORY`]).
    #[must_use]
    pub fn advanced(&self, client_version: ClientVersion, worker_id: &str, now_ms: u64) -> Self {
        let mut history = Vec::with_capacity(self.history.len() + 1);
        history.push(MigrationHistoryEntry {
            client_version: self.client_version.clone(),
            modified_by: self.modified_by.clone(),
            modified_at_ms: self.modified_at_ms,
        });
        history.extend(self.history.iter().cloned());
        history.truncate(MAX_MIGRATION_HISTORY);
        Self { client_version, modified_by: worker_id.to_owned(), modified_at_ms: now_ms, history }
    }
}

/// The leader lock item, as the DynamoDB lock client writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockItem {
    /// `ownerName`.
    pub owner: String,
    /// `leaseDuration` in ms (stored as a string).
    pub lease_duration_ms: u64,
    /// `recordVersionNumber`.
    pub record_version: String,
    /// `isReleased` present and true-ish.
    pub released: bool,
}

/// One worker's `WorkerMetricStats` item.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerMetricStats {
    /// `wid`.
    pub worker_id: String,
    /// `lut`: epoch seconds of the last update.
    pub last_update_s: u64,
    /// `sts`: metric short name (`C`, `M`, `NI`, `NO`, `T`, or `THROUGHPUT`) → values, oldest first.
    pub stats: BTreeMap<String, Vec<f64>>,
    /// `opr`: metric → operating range; the first element is the maximum utilisation.
    pub operating_range: BTreeMap<String, Vec<f64>>,
}

impl WorkerMetricStats {
    /// What a worker without host metrics publishes (as Java off EC2/ECS/EKS): empty `sts` and
    /// `opr`, which makes it a "default metric" worker balanced by lease throughput.
    #[must_use]
    pub fn default_metric(worker_id: &str, now_s: u64) -> Self {
        Self {
            worker_id: worker_id.to_owned(),
            last_update_s: now_s,
            stats: BTreeMap::new(),
            operating_range: BTreeMap::new(),
        }
    }

    /// Java's `isUsingDefaultWorkerMetric`: no stats and no operating range, or a stat named
    /// `THROUGHPUT`.
    #[must_use]
    pub fn is_default_metric(&self) -> bool {
        (self.stats.is_empty() && self.operating_range.is_empty()) || self.stats.contains_key("THROUGHPUT")
    }

    /// Java's validity filter (without expiry): default-metric workers are valid; others need an
    /// operating range for every stat whose first element is non-zero.
    #[must_use]
    pub fn is_valid(&self) -> bool {
        if self.is_default_metric() {
            return true;
        }
        self.stats.keys().all(|name| self.operating_range.contains_key(name))
            && self.operating_range.values().all(|range| range.first().is_some_and(|max| *max != 0.0))
    }

    /// A worker whose latest sample of any metric is `-1` (nothing captured) gets no leases.
    #[must_use]
    pub fn is_failing(&self) -> bool {
        self.stats.values().any(|values| values.last().is_some_and(|v| *v == -1.0))
    }

    /// Updated within `expiry_s` seconds of `now_s` (wall clock; Java: 2 × reporter period = 60 s).
    #[must_use]
    pub fn is_fresh(&self, now_s: u64, expiry_s: u64) -> bool {
        now_s.saturating_sub(self.last_update_s) <= expiry_s
    }

    /// Valid, fresh and not failing: the leader may assign leases to this worker.
    #[must_use]
    pub fn is_active(&self, now_s: u64, expiry_s: u64) -> bool {
        self.is_valid() && self.is_fresh(now_s, expiry_s) && !self.is_failing()
    }
}

/// The names of the 3.x side tables of an application (`coordinatorStateTableName` /
/// `workerMetricsTableName` override them; they never derive from `tableName`).
#[must_use]
pub fn default_side_table_names(application_name: &str) -> (String, String) {
    (format!("{application_name}{COORDINATOR_STATE_SUFFIX}"), format!("{application_name}{WORKER_METRICS_SUFFIX}"))
}

fn malformed(table: &str, key: &str, reason: impl Into<String>) -> LeaseError {
    LeaseError::Malformed { table: table.to_owned(), key: key.to_owned(), reason: reason.into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_versions_round_trip_with_java_names() {
        for v in ClientVersion::ALL {
            assert_eq!(ClientVersion::parse(v.as_str()), Some(v.clone()));
        }
        assert_eq!(ClientVersion::parse("CLIENT_VERSION_3X").map(|v| v.runs_3x_protocol()), Some(true));
        assert_eq!(ClientVersion::parse("CLIENT_VERSION_UPGRADE_FROM_2X").map(|v| v.runs_3x_protocol()), Some(false));
        assert_eq!(ClientVersion::parse("3X"), None);
    }

    #[test]
    fn history_is_newest_first_and_capped() {
        let mut record = MigrationRecord::initial(ClientVersion::UpgradeFrom2x, "w1", 1);
        assert_eq!(record.history[0].client_version, ClientVersion::Init);
        record = record.advanced(ClientVersion::V3xWithRollback, "w2", 2);
        assert_eq!(record.client_version, ClientVersion::V3xWithRollback);
        assert_eq!(record.modified_by, "w2");
        assert_eq!(record.history[0].client_version, ClientVersion::UpgradeFrom2x);
        assert_eq!(record.history[0].modified_at_ms, 1);
        assert_eq!(record.history[1].client_version, ClientVersion::Init);
        for i in 0..20 {
            record = record.advanced(ClientVersion::V2x, "w", 3 + i);
        }
        assert_eq!(record.history.len(), MAX_MIGRATION_HISTORY);
        assert_eq!(record.history[0].modified_at_ms, 21);
    }

    #[test]
    fn worker_metric_validity_follows_java() {
        let default = WorkerMetricStats::default_metric("w", 100);
        assert!(default.is_default_metric() && default.is_valid() && !default.is_failing());
        assert!(default.is_active(160, 60));
        assert!(!default.is_active(161, 60), "older than the expiry");

        let mut cpu = default.clone();
        cpu.stats.insert("C".into(), vec![10.0, 20.0]);
        assert!(!cpu.is_default_metric());
        assert!(!cpu.is_valid(), "a stat without operating range");
        cpu.operating_range.insert("C".into(), vec![100.0]);
        assert!(cpu.is_valid());
        cpu.operating_range.insert("C".into(), vec![0.0]);
        assert!(!cpu.is_valid(), "a zero maximum");
        cpu.operating_range.insert("C".into(), vec![100.0]);
        cpu.stats.insert("C".into(), vec![10.0, -1.0]);
        assert!(cpu.is_failing() && !cpu.is_active(100, 60));

        let mut throughput = default;
        throughput.stats.insert("THROUGHPUT".into(), vec![5.0]);
        assert!(throughput.is_default_metric());
        throughput.stats.clear();
        throughput.stats.insert("T".into(), vec![5.0]);
        assert!(!throughput.is_default_metric(), "the short name T does not make a default worker");
    }
}
