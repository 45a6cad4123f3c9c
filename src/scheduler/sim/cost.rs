//! The DynamoDB on-demand cost model of the lease table.
//!
//! On-demand capacity is billed per request:
//! - a write (PutItem, UpdateItem, DeleteItem) costs 1 write request unit (WRU) per started
//!   KiB of the larger of the old and new item; a conditional write whose condition fails
//!   is billed the same;
//! - a GetItem costs 1 read request unit (RRU) per started 4 KiB when strongly consistent,
//!   half that when eventually consistent;
//! - a Scan is billed on the data it reads, not per item: the item sizes of a page (at most
//!   1 MiB) are summed and rounded up to 4 KiB, half a unit each (eventually consistent).
//!
//! A KCL lease item is about 300-400 bytes (key, owner, counter, checkpoint, hash keys,
//! parents), so every lease write is 1 WRU and a scan costs about `leases × 350 / 8192` RRU.
//! Prices are the AWS list prices for on-demand tables in us-east-1 (November 2024 onwards);
//! other regions cost more, the ratios stay.

use serde::Serialize;

/// US dollars per million write request units (us-east-1, on-demand).
pub const USD_PER_MILLION_WRU: f64 = 0.625;
/// US dollars per million read request units (us-east-1, on-demand).
pub const USD_PER_MILLION_RRU: f64 = 0.125;
/// Minutes in a 30-day month.
pub const MINUTES_PER_MONTH: f64 = 30.0 * 24.0 * 60.0;
/// Bytes of one page of a Scan.
pub const SCAN_PAGE_BYTES: usize = 1024 * 1024;

/// Sizes that decide request units.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CostModel {
    /// Bytes of one lease item (DynamoDB size: attribute names plus values).
    pub lease_item_bytes: usize,
    /// Bytes of one item of the KCL 3.x `LeaseOwnerToLeaseKeyIndex` (keys only).
    pub gsi_item_bytes: usize,
}

impl Default for CostModel {
    fn default() -> Self {
        Self { lease_item_bytes: 350, gsi_item_bytes: 80 }
    }
}

impl CostModel {
    /// Scan requests (pages) and RRU of an eventually consistent scan returning `items`.
    #[must_use]
    pub fn scan(&self, items: usize) -> (u64, f64) {
        scan_cost(items, self.lease_item_bytes)
    }

    /// WRU of one lease write.
    #[must_use]
    pub fn write_units(&self) -> f64 {
        units(self.lease_item_bytes, 1024) as f64
    }

    /// RRU of one strongly consistent GetItem of a lease.
    #[must_use]
    pub fn consistent_get_units(&self) -> f64 {
        units(self.lease_item_bytes, 4096) as f64
    }
}

fn units(bytes: usize, unit: usize) -> u64 {
    u64::try_from(bytes.div_ceil(unit).max(1)).unwrap_or(u64::MAX)
}

/// Pages and RRU of an eventually consistent scan or query returning `items` of
/// `item_bytes` each (every page is rounded up to 4 KiB separately).
#[must_use]
pub fn scan_cost(items: usize, item_bytes: usize) -> (u64, f64) {
    let item_bytes = item_bytes.max(1);
    let per_page = (SCAN_PAGE_BYTES / item_bytes).max(1);
    let full_pages = items / per_page;
    let rest = items % per_page;
    let page_units = units(per_page * item_bytes, 4096);
    let mut pages = u64::try_from(full_pages).unwrap_or(u64::MAX);
    #[allow(clippy::cast_precision_loss)]
    let mut rru = pages as f64 * page_units as f64 * 0.5;
    if rest > 0 || items == 0 {
        pages += 1;
        #[allow(clippy::cast_precision_loss)]
        let last = units(rest * item_bytes, 4096) as f64;
        rru += last * 0.5;
    }
    (pages, rru)
}

/// Request units per minute, and their price.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct UnitsPerMinute {
    /// Read request units per minute.
    pub rru: f64,
    /// Write request units per minute.
    pub wru: f64,
}

impl UnitsPerMinute {
    /// US dollars per 30-day month at the on-demand list price.
    #[must_use]
    pub fn usd_per_month(&self) -> f64 {
        (self.rru * USD_PER_MILLION_RRU + self.wru * USD_PER_MILLION_WRU) / 1e6 * MINUTES_PER_MONTH
    }
}

/// Protocol cadences for the analytic model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cadence {
    /// `failoverTimeMillis` in seconds.
    pub failover_secs: f64,
    /// Checkpoints per lease per minute written by the record processors (application
    /// dependent; 0 leaves them out).
    pub checkpoints_per_lease_minute: f64,
}

impl Cadence {
    /// Renewals per lease per minute: one every `failover/3 − 25 ms`.
    #[must_use]
    pub fn renewals_per_lease_minute(&self) -> f64 {
        60.0 / (self.failover_secs / 3.0 - 0.025)
    }

    /// 2.x taker scans per worker per minute: one every `2 × (failover + 25 ms)`.
    #[must_use]
    pub fn taker_scans_per_worker_minute(&self) -> f64 {
        60.0 / (2.0 * (self.failover_secs + 0.025))
    }
}

/// Steady-state cost of the KCL 2.x protocol, analytically: renewals and checkpoints of
/// every lease, a full scan per worker per taker round, and `extra_scans_per_worker_minute`
/// (e.g. leader checks) and `gets_per_worker_minute` (consistent GetItems, e.g. the
/// migration-state check).
#[must_use]
pub fn kcl2_steady(
    model: &CostModel,
    cadence: &Cadence,
    workers: usize,
    leases: usize,
    extra_scans_per_worker_minute: f64,
    gets_per_worker_minute: f64,
) -> UnitsPerMinute {
    #[allow(clippy::cast_precision_loss)]
    let (w, l) = (workers as f64, leases as f64);
    let writes = l * (cadence.renewals_per_lease_minute() + cadence.checkpoints_per_lease_minute);
    let scans = w * (cadence.taker_scans_per_worker_minute() + extra_scans_per_worker_minute);
    UnitsPerMinute {
        rru: scans * model.scan(leases).1 + w * gets_per_worker_minute * model.consistent_get_units(),
        wru: writes * model.write_units(),
    }
}

/// Steady-state cost of the KCL 3.x protocol (lease-coordination.md §10), **analytically**
/// (not simulated: the 3.x leader/follower is not on this branch):
/// - renewals and checkpoints as in 2.x (the renew also sets `throughputKBps`: same 1 WRU;
///   `leaseOwner` does not change, so the keys-only GSI is not written);
/// - the leader's assignment run every `2 × failover`: one full lease scan plus a scan of
///   the `workers` WorkerMetricStats items (~1 KiB each);
/// - each worker's lease discovery every `assignment interval / 2 − 25 ms` (= `failover −
///   25 ms` = 9 975 ms with the defaults): a GSI query returning its own `leases / workers`
///   keys;
/// - each worker's WorkerMetricStats UpdateItem every 30 s (1-2 KiB: 2 WRU);
/// - the leader lock: the holder heartbeats every 30 s (1 WRU); every other worker reads
///   the lock item every 30 s (consistent GetItem: 1 RRU);
/// - the migration-state poll every 60 s per worker (consistent GetItem).
#[must_use]
pub fn kcl3_steady(model: &CostModel, cadence: &Cadence, workers: usize, leases: usize) -> UnitsPerMinute {
    #[allow(clippy::cast_precision_loss)]
    let (w, l) = (workers as f64, leases as f64);
    let assignment_runs = 60.0 / (2.0 * cadence.failover_secs);
    let discovery_runs = 60.0 / (cadence.failover_secs - 0.025);
    let per_worker = leases.div_ceil(workers.max(1));
    let leader_scan = model.scan(leases).1 + scan_cost(workers, 1024).1;
    let query = scan_cost(per_worker, model.gsi_item_bytes).1;
    let rru = assignment_runs * leader_scan + w * discovery_runs * query + (w - 1.0).max(0.0) * 2.0 + w * 1.0;
    let wru = l * (cadence.renewals_per_lease_minute() + cadence.checkpoints_per_lease_minute) * model.write_units()
        + w * 2.0 * 2.0
        + 2.0;
    UnitsPerMinute { rru, wru }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_are_billed_by_bytes_per_page_not_per_item() {
        // 1 000 items of 350 B = 350 000 B in one page: 86 × 4 KiB, half a unit each.
        assert_eq!(scan_cost(1_000, 350), (1, 43.0));
        // An empty scan still is one request of one (half) unit.
        assert_eq!(scan_cost(0, 350), (1, 0.5));
        // 20 000 items = 7 MB: 7 pages.
        let (pages, rru) = scan_cost(20_000, 350);
        assert_eq!(pages, 7);
        assert!((850.0..=860.0).contains(&rru), "{rru}");
    }

    #[test]
    fn renewals_dominate_the_2x_bill_until_the_fleet_is_large() {
        let model = CostModel::default();
        let cadence = Cadence { failover_secs: 10.0, checkpoints_per_lease_minute: 0.0 };
        let small = kcl2_steady(&model, &cadence, 10, 1_000, 0.0, 0.0);
        // 1 000 leases × 18.14 renewals per minute.
        assert!((small.wru - 18_138.0).abs() < 5.0, "{small:?}");
        // 10 workers × 2.99 scans × 43 RRU.
        assert!((small.rru - 1_286.0).abs() < 5.0, "{small:?}");
        assert!(small.wru * USD_PER_MILLION_WRU > small.rru * USD_PER_MILLION_RRU * 10.0);
        // The 3.x bill does not grow with workers × leases.
        let big2 = kcl2_steady(&model, &cadence, 200, 20_000, 0.0, 0.0);
        let big3 = kcl3_steady(&model, &cadence, 200, 20_000);
        assert!(big3.rru * 20.0 < big2.rru, "{big2:?} {big3:?}");
        assert!(big3.usd_per_month() < big2.usd_per_month());
    }
}
