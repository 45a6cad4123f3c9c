//! Fleet simulation of the KCL 2.x lease protocol (see `multilangd::scheduler::sim`): runs
//! the daemon's real renewer, taker, audit and migration check for every simulated worker
//! over one in-memory lease table in simulated time, and prints one JSON report.
//!
//! `cargo run --release --features test-support --example fleet_sim -- --workers 50 --leases 5000`

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use multilangd::scheduler::sim::{run_blocking, SimConfig};

/// Simulates a fleet of workers sharing one lease table.
#[derive(Debug, Parser)]
struct Args {
    /// Workers at start-up.
    #[arg(long)]
    workers: usize,
    /// Leases (shards).
    #[arg(long)]
    leases: usize,
    /// failoverTimeMillis.
    #[arg(long, default_value_t = 10_000)]
    failover_ms: u64,
    /// maxLeasesForWorker (default: unlimited).
    #[arg(long)]
    max_leases_for_worker: Option<u32>,
    /// maxLeasesToStealAtOneTime.
    #[arg(long, default_value_t = 1)]
    steal: u32,
    /// enablePriorityLeaseAssignment = false.
    #[arg(long)]
    no_priority: bool,
    /// Steady-state minutes measured.
    #[arg(long, default_value_t = 3)]
    steady_minutes: u32,
    /// Longest wait for each phase to balance, in simulated minutes.
    #[arg(long, default_value_t = 60)]
    settle_minutes: u64,
    /// Workers added in the scale-out (default: a tenth, at least 1).
    #[arg(long)]
    scale_out: Option<usize>,
    /// Workers restarted per batch (default: a tenth, at least 1; 0 skips the restart).
    #[arg(long)]
    restart_batch: Option<usize>,
    /// Every worker scans for each audit (the daemon before it shared the taker's scan).
    #[arg(long)]
    no_shared_scan: bool,
    /// A label copied into the report (`"label"`), e.g. the settings' name.
    #[arg(long, default_value = "")]
    label: String,
    /// Leave the per-minute usage out of the report.
    #[arg(long)]
    no_minutes: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut config = SimConfig::defaults(args.workers, args.leases);
    config.failover_time = Duration::from_millis(args.failover_ms);
    if let Some(max) = args.max_leases_for_worker {
        config.max_leases_for_worker = max;
    }
    config.max_leases_to_steal_at_one_time = args.steal;
    config.enable_priority_lease_assignment = !args.no_priority;
    config.steady_minutes = args.steady_minutes;
    config.settle_limit = Duration::from_secs(args.settle_minutes * 60);
    if let Some(n) = args.scale_out {
        config.scale_out = n;
    }
    if let Some(n) = args.restart_batch {
        config.restart_batch = n;
    }
    config.share_scan_with_audit = !args.no_shared_scan;
    match run_blocking(config) {
        Ok(mut report) => {
            if args.no_minutes {
                report.minutes.clear();
            }
            let labelled = serde_json::to_value(&report).map(|mut value| {
                if let Some(object) = value.as_object_mut() {
                    object.insert("label".to_owned(), serde_json::Value::String(args.label.clone()));
                }
                value
            });
            match labelled.and_then(|value| serde_json::to_string(&value)) {
                Ok(json) => {
                    println!("{json}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("fleet_sim: cannot encode the report: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(e) => {
            eprintln!("fleet_sim: {e}");
            ExitCode::FAILURE
        }
    }
}
