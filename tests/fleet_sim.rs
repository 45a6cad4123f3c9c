//! Smoke run of the fleet simulation (`multilangd::scheduler::sim`, full runs in
//! scripts/simulate.sh): a small fleet through start-up, a kill, a scale-out and a rolling
//! restart, on the real renewer/taker/audit code in simulated time.

use std::time::Duration;

use multilangd::scheduler::sim::{run, SimConfig, SimReport};

const TAKER_INTERVAL_SECS: f64 = 20.05;
const RENEWALS_PER_LEASE_MINUTE: f64 = 60.0 / 3.308;

async fn small_fleet(configure: impl FnOnce(&mut SimConfig)) -> SimReport {
    let mut config = SimConfig::defaults(4, 48);
    config.steady_minutes = 2;
    config.settle_limit = Duration::from_secs(40 * 60);
    config.scale_out = 1;
    config.restart_batch = 2;
    configure(&mut config);
    run(config).await.expect("simulation")
}

#[tokio::test(start_paused = true)]
async fn a_small_fleet_balances_recovers_and_costs_what_the_model_says() {
    let report = small_fleet(|_| {}).await;
    let phase = |name: &str| report.phases.iter().find(|p| p.phase == name).expect(name);
    for p in &report.phases {
        eprintln!(
            "{:>16}: workers {:>2} balanced after {:?} s, recovered after {:?} s, moved {}, unheld peak {}, held {}..{}",
            p.phase, p.workers, p.balanced_after_secs, p.recovered_after_secs, p.leases_moved, p.peak_unheld,
            p.min_held, p.max_held
        );
    }
    eprintln!("steady: {:?}", report.steady.by_purpose);

    // Start-up (Java defaults): the first worker takes every never-owned lease (priority
    // assignment); the others steal one per round until each holds 12.
    let startup = phase("startup");
    let secs = startup.balanced_after_secs.expect("start-up balanced");
    assert!(secs <= 40.0 * TAKER_INTERVAL_SECS, "{secs}");
    assert_eq!((startup.min_held, startup.max_held), (12, 12));
    assert!(startup.leases_moved >= 30, "others stole their share: {}", startup.leases_moved);

    // The dead worker's leases cannot move before they expire (failover, 10 s) and are
    // taken within failover + two taker rounds.
    let kill = phase("kill");
    let recovered = kill.recovered_after_secs.expect("dead worker's leases recovered");
    assert!((10.0..=10.0 + 2.0 * TAKER_INTERVAL_SECS + 5.0).contains(&recovered), "{recovered}");
    assert!(kill.balanced_after_secs.is_some());
    assert_eq!(kill.peak_unheld, 12);
    assert_eq!(kill.workers, 3);

    let scale_out = phase("scale_out");
    assert!(scale_out.balanced_after_secs.is_some());
    assert_eq!((scale_out.min_held, scale_out.max_held), (12, 12));
    assert_eq!(scale_out.leases_moved, 12, "the new worker stole exactly its share");

    // A graceful restart releases leases; the replacements take them unowned at once.
    let restart = phase("rolling_restart");
    assert!(restart.balanced_after_secs.is_some());
    assert!(restart.usage.by_purpose.get("release").copied().unwrap_or(0) >= 48);
    assert!(restart.takes_unowned >= 48);

    // Steady state: every lease renewed at Java's cadence, one scan per worker per taker
    // round plus the audit's, nothing moves; the measurement matches the analytic model.
    let steady = &report.steady;
    let renew = steady.by_purpose["renew"] as f64;
    assert!((renew / (48.0 * RENEWALS_PER_LEASE_MINUTE) - 1.0).abs() < 0.05, "{renew}");
    let scans = steady.by_purpose["scan"] as f64;
    let expected_scans = 4.0 * 60.0 / TAKER_INTERVAL_SECS;
    assert!(scans >= expected_scans - 1.0 && scans <= expected_scans * 1.4 + 1.0, "{scans}");
    assert_eq!(steady.moves, 0);
    assert!((report.steady_units.wru / report.kcl2_model.wru - 1.0).abs() < 0.05, "{report:?}");
    assert!((report.steady_units.rru / report.kcl2_model.rru - 1.0).abs() < 0.25, "{report:?}");
    assert!(report.kcl3_model.rru < report.kcl2_model.rru);
}

#[tokio::test(start_paused = true)]
async fn capping_leases_per_worker_balances_start_up_without_steals() {
    let report = small_fleet(|c| {
        c.max_leases_for_worker = 15;
        c.max_leases_to_steal_at_one_time = 4;
        c.restart_batch = 0;
    })
    .await;
    let startup = &report.phases[0];
    let secs = startup.balanced_after_secs.expect("balanced");
    // Each worker takes at most 15; a few steals level 15/15/15/3 out within a few rounds.
    assert!(secs <= 8.0 * TAKER_INTERVAL_SECS, "{secs}");
    assert!(startup.leases_moved <= 12, "{}", startup.leases_moved);
}
