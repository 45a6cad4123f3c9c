//! Liveness and readiness, judged from the status snapshot alone.
//!
//! - **Live** (`/healthz`, systemd `WATCHDOG=1`): the worker has not stopped and, once running,
//!   the scheduler keeps publishing snapshots (it does after every dispatch round, every
//!   second). A snapshot older than [`HealthSettings::stale_after`] means the main loop is stuck.
//! - **Ready** (`/readyz`): running, the lease table answered and the last renewal round
//!   succeeded within `failoverTimeMillis`, and no held shard is stalled. A shard is stalled
//!   when its processor has had an action outstanding for longer than the stall threshold, or
//!   when records are waiting (`millisBehindLatest` > 0) and nothing was delivered for that
//!   long.

use std::fmt::Write as _;
use std::time::Duration;

use tokio::time::Instant;

use crate::status::{ShardPhase, ShardStatus, WorkerPhase, WorkerStatus};

/// Thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthSettings {
    /// A running worker whose snapshot is older than this is not live.
    pub stale_after: Duration,
    /// A shard is stalled after this long without progress (`multilangd.stallThresholdMillis`).
    pub stall_threshold: Duration,
}

impl Default for HealthSettings {
    fn default() -> Self {
        Self { stale_after: Duration::from_secs(30), stall_threshold: Duration::from_secs(60) }
    }
}

/// Why a shard is stalled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stall {
    /// The shard.
    pub shard_id: String,
    /// For how long.
    pub for_: Duration,
    /// What is stuck.
    pub what: &'static str,
}

/// The shards of `status` that are stalled at `now`.
#[must_use]
pub fn stalled_shards(status: &WorkerStatus, settings: &HealthSettings, now: Instant) -> Vec<Stall> {
    status.shards.iter().filter_map(|shard| stall_of(shard, settings.stall_threshold, now)).collect()
}

fn stall_of(shard: &ShardStatus, threshold: Duration, now: Instant) -> Option<Stall> {
    if let Some(since) = shard.action_in_flight_since {
        let waited = now.saturating_duration_since(since);
        if waited > threshold {
            return Some(Stall {
                shard_id: shard.shard_id.clone(),
                for_: waited,
                what: "the record processor has not acknowledged an action",
            });
        }
    }
    let waiting = shard.phase == ShardPhase::Processing && shard.millis_behind_latest.is_some_and(|m| m > 0);
    if waiting {
        if let Some(last) = shard.last_delivery {
            let idle = now.saturating_duration_since(last);
            if idle > threshold {
                return Some(Stall {
                    shard_id: shard.shard_id.clone(),
                    for_: idle,
                    what: "records are waiting but none were delivered",
                });
            }
        }
    }
    None
}

/// The liveness verdict: `Ok(())` or the reason.
///
/// # Errors
/// A short plain-text reason when the worker is not live.
pub fn live(status: &WorkerStatus, settings: &HealthSettings, now: Instant) -> Result<(), String> {
    match status.phase {
        WorkerPhase::Stopped => Err("the worker has stopped".to_owned()),
        WorkerPhase::Starting | WorkerPhase::ShuttingDown => Ok(()),
        WorkerPhase::Running => {
            let age = now.saturating_duration_since(status.updated_at);
            if age > settings.stale_after {
                Err(format!("the scheduler has not published a status for {} s", age.as_secs()))
            } else {
                Ok(())
            }
        }
    }
}

/// The readiness verdict: `Ok(())` or every reason, one per line.
///
/// # Errors
/// A short plain-text list of reasons naming the dependency or the shard.
pub fn ready(status: &WorkerStatus, settings: &HealthSettings, now: Instant) -> Result<(), String> {
    live(status, settings, now)?;
    let mut reasons = String::new();
    match status.phase {
        WorkerPhase::Running => {}
        WorkerPhase::Starting => {
            reasons.push_str("starting: the lease table is not ready or the first lease round has not run\n");
        }
        WorkerPhase::ShuttingDown => reasons.push_str("shutting down\n"),
        WorkerPhase::Stopped => reasons.push_str("stopped\n"),
    }
    if status.phase == WorkerPhase::Running {
        let failover = status.failover_time;
        let table = &status.lease_table;
        match &status.last_renewal {
            None => {
                let _ = writeln!(reasons, "lease table {table}: no renewal round yet");
            }
            Some(r) if !r.ok => {
                let _ = writeln!(
                    reasons,
                    "lease table {table}: the last renewal round failed ({} of {} renewals failed)",
                    r.failed,
                    r.failed + r.renewed
                );
            }
            Some(r) if now.saturating_duration_since(r.at) > failover => {
                let _ = writeln!(
                    reasons,
                    "lease table {table}: no successful renewal round for {} ms (failoverTimeMillis {})",
                    now.saturating_duration_since(r.at).as_millis(),
                    failover.as_millis()
                );
            }
            Some(_) => {}
        }
        match status.lease_table_ok_at {
            Some(at) if now.saturating_duration_since(at) <= failover => {}
            Some(at) => {
                let error = status.lease_table_error.as_deref().unwrap_or("no answer");
                let _ = writeln!(
                    reasons,
                    "lease table {table} unreachable for {} ms: {error}",
                    now.saturating_duration_since(at).as_millis()
                );
            }
            None => {
                let error = status.lease_table_error.as_deref().unwrap_or("no successful call yet");
                let _ = writeln!(reasons, "lease table {table} not reached yet: {error}");
            }
        }
        for stall in stalled_shards(status, settings, now) {
            let _ =
                writeln!(reasons, "shard {} stalled for {} s: {}", stall.shard_id, stall.for_.as_secs(), stall.what);
        }
    }
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(reasons)
    }
}

/// A multi-line picture of the worker for a person (the `status` command, `GET /status`).
#[must_use]
pub fn render(status: &WorkerStatus, settings: &HealthSettings, now: Instant) -> String {
    let mut out = String::new();
    let uptime = status.started_at.elapsed().map(|d| d.as_secs()).unwrap_or(0);
    let _ = writeln!(out, "worker      {}", status.worker_id);
    let _ =
        writeln!(out, "application {}  (lease table {}, {})", status.application, status.lease_table, protocol(status));
    let _ = writeln!(out, "phase       {}  (up {})", status.phase.as_str(), human(Duration::from_secs(uptime)));
    let live = match live(status, settings, now) {
        Ok(()) => "live".to_owned(),
        Err(reason) => format!("NOT LIVE: {reason}"),
    };
    let ready = match ready(status, settings, now) {
        Ok(()) => "ready".to_owned(),
        Err(reasons) => format!("NOT READY: {}", reasons.trim_end().replace('\n', "; ")),
    };
    let _ = writeln!(out, "health      {live}, {ready}");
    match &status.last_renewal {
        Some(r) => {
            let _ = writeln!(
                out,
                "renewal     {} ago, {} renewed, {} failed",
                human(now.saturating_duration_since(r.at)),
                r.renewed,
                r.failed
            );
        }
        None => out.push_str("renewal     none yet\n"),
    }
    if let Some(error) = &status.lease_table_error {
        let _ = writeln!(out, "lease table last error: {error}");
    }
    let _ = writeln!(out, "shards      {}", status.shards.len());
    if status.shards.is_empty() {
        return out;
    }
    let width = status.shards.iter().map(|s| s.shard_id.len()).max().unwrap_or(8).max(8);
    let _ = writeln!(
        out,
        "  {:<width$}  {:<18}  {:>10}  {:>12}  {:>9}  {:>6}  {:>8}  CHECKPOINT",
        "SHARD", "PHASE", "RECORDS", "BYTES", "BEHIND", "STARTS", "RESTARTS"
    );
    for s in &status.shards {
        let behind = s.millis_behind_latest.map_or_else(|| "-".to_owned(), |m| format!("{m}ms"));
        let _ = writeln!(
            out,
            "  {:<width$}  {:<18}  {:>10}  {:>12}  {:>9}  {:>6}  {:>8}  {}",
            s.shard_id,
            s.phase.as_str(),
            s.records,
            s.bytes,
            behind,
            s.child_starts,
            s.restarts,
            s.checkpoint
        );
        if let Some(failure) = &s.last_failure {
            let _ = writeln!(out, "  {:<width$}  last failure: {failure}", "");
        }
        if let Some(stall) = stall_of(s, settings.stall_threshold, now) {
            let _ = writeln!(out, "  {:<width$}  STALLED {}: {}", "", human(stall.for_), stall.what);
        }
    }
    out
}

fn protocol(status: &WorkerStatus) -> &str {
    if status.lease_protocol.is_empty() {
        "protocol not chosen yet"
    } else {
        &status.lease_protocol
    }
}

/// `1h02m`, `3m05s`, `12.3s`.
fn human(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 3600 {
        format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60)
    } else if secs >= 60 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::RenewalStatus;

    fn shard(id: &str) -> ShardStatus {
        ShardStatus {
            shard_id: id.to_owned(),
            phase: ShardPhase::Processing,
            records: 10,
            bytes: 100,
            batches: 1,
            last_sequence_delivered: None,
            checkpoint: "TRIM_HORIZON".to_owned(),
            millis_behind_latest: Some(0),
            child_starts: 1,
            restarts: 0,
            last_failure: None,
            action_in_flight_since: None,
            last_delivery: None,
        }
    }

    fn running(now: Instant) -> WorkerStatus {
        let mut s = WorkerStatus::starting("w", "app", "app");
        s.phase = WorkerPhase::Running;
        s.failover_time = Duration::from_secs(10);
        s.last_renewal = Some(RenewalStatus { at: now, ok: true, renewed: 2, failed: 0 });
        s.lease_table_ok_at = Some(now);
        s.updated_at = now;
        s.shards = vec![shard("shardId-000000000000"), shard("shardId-000000000001")];
        s
    }

    #[tokio::test(start_paused = true)]
    async fn a_healthy_running_worker_is_live_and_ready() {
        let now = Instant::now();
        let s = running(now);
        let settings = HealthSettings::default();
        assert_eq!(live(&s, &settings, now), Ok(()));
        assert_eq!(ready(&s, &settings, now), Ok(()));
        let text = render(&s, &settings, now);
        assert!(text.contains("live, ready"), "{text}");
        assert!(text.contains("shardId-000000000001"), "{text}");
    }

    #[tokio::test(start_paused = true)]
    async fn starting_is_live_but_not_ready() {
        let now = Instant::now();
        let s = WorkerStatus::starting("w", "app", "app");
        let settings = HealthSettings::default();
        assert_eq!(live(&s, &settings, now), Ok(()));
        assert!(ready(&s, &settings, now).is_err_and(|r| r.starts_with("starting")));
    }

    #[tokio::test(start_paused = true)]
    async fn an_old_renewal_or_unreachable_table_is_not_ready_and_says_so() {
        let start = Instant::now();
        let mut s = running(start);
        let later = start + Duration::from_secs(11);
        s.updated_at = later;
        s.lease_table_error = Some("dispatch failure: connection timed out".to_owned());
        let reasons = ready(&s, &HealthSettings::default(), later).expect_err("not ready");
        assert!(reasons.contains("no successful renewal round for 11000 ms"), "{reasons}");
        assert!(reasons.contains("unreachable for 11000 ms: dispatch failure"), "{reasons}");
        // Within failoverTimeMillis it is still ready.
        assert_eq!(ready(&s, &HealthSettings::default(), start + Duration::from_secs(9)), Ok(()));
        // A failed round is reported at once.
        let mut failed = running(start);
        failed.last_renewal = Some(RenewalStatus { at: start, ok: false, renewed: 1, failed: 1 });
        let reasons = ready(&failed, &HealthSettings::default(), start).expect_err("not ready");
        assert!(reasons.contains("1 of 2 renewals failed"), "{reasons}");
    }

    #[tokio::test(start_paused = true)]
    async fn stalled_shards_are_named() {
        let start = Instant::now();
        let settings = HealthSettings { stall_threshold: Duration::from_secs(5), ..HealthSettings::default() };
        let mut s = running(start);
        s.shards[0].action_in_flight_since = Some(start);
        s.shards[1].millis_behind_latest = Some(5_000);
        s.shards[1].last_delivery = Some(start);
        let now = start + Duration::from_secs(6);
        s.updated_at = now;
        s.last_renewal = Some(RenewalStatus { at: now, ok: true, renewed: 2, failed: 0 });
        s.lease_table_ok_at = Some(now);
        let stalls = stalled_shards(&s, &settings, now);
        assert_eq!(stalls.len(), 2, "{stalls:?}");
        let reasons = ready(&s, &settings, now).expect_err("stalled");
        assert!(reasons.contains("shard shardId-000000000000 stalled for 6 s: the record processor"), "{reasons}");
        assert!(reasons.contains("shard shardId-000000000001 stalled for 6 s: records are waiting"), "{reasons}");
        // Caught up: not stalled, even without deliveries.
        s.shards[1].millis_behind_latest = Some(0);
        s.shards[0].action_in_flight_since = None;
        assert_eq!(ready(&s, &settings, now), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stuck_main_loop_is_not_live() {
        let start = Instant::now();
        let s = running(start);
        let settings = HealthSettings::default();
        let later = start + Duration::from_secs(31);
        assert!(live(&s, &settings, later).is_err_and(|r| r.contains("31 s")));
        let mut stopped = running(start);
        stopped.phase = WorkerPhase::Stopped;
        assert!(live(&stopped, &settings, start).is_err());
    }
}
