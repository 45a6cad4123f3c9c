//! Which lease protocol a worker runs, and the 2.x → 3.x migration state machine, with
//! Java's `clientVersionConfig` values and `Migration3.0.cv` states
//! (`lease-coordination.md` §10.4, `kcl3-fanout-users.md` §1.2).
//!
//! | `clientVersionConfig` | `Migration3.0` | protocol | writes |
//! |---|---|---|---|
//! | any | `3X` | 3.x | — |
//! | `3X` | `3X_WITH_ROLLBACK` | 3.x | finalise to `3X` (as Java) |
//! | other / unset | `3X_WITH_ROLLBACK` | 3.x | — |
//! | any | `UPGRADE_FROM_2X` | 2.x taker + WorkerMetricStats + owner index | the leader flips to `3X_WITH_ROLLBACK` once ready for 10 min |
//! | any | `2X` (rolled back) | 2.x | — |
//! | `3X` | absent | 3.x | create `3X` |
//! | `COMPATIBLE_WITH_2X` | absent | as `UPGRADE_FROM_2X` | create `UPGRADE_FROM_2X` |
//! | `COMPATIBLE_WITH_2X_PHASE1` | absent | 2.x | — |
//! | unset | absent, lease table empty (new application) | 3.x | create `3X` (as Java) |
//! | unset | absent, leases exist, no 3.x trace | 2.x, with a warning | — (Java would flip such a fleet to 3.x) |
//! | unset | absent, leases exist, owner index or coordinator-state table exists | wait and read again (a Java 3.x worker is starting the application) | — |
//!
//! Every worker re-reads `Migration3.0` periodically ([`MIGRATION_POLL_INTERVAL`] plus jitter)
//! and [`transition`] says whether to switch protocol live.

use std::collections::HashSet;
use std::time::Duration;

use tokio::time::Instant;

use super::{ClientVersion, MigrationRecord, WorkerMetricStats};
use crate::config::ClientVersionConfig;

/// How often every worker re-reads `Migration3.0` (Java: 60 s plus up to 30 s of jitter).
pub const MIGRATION_POLL_INTERVAL: Duration = Duration::from_secs(60);
/// How long the upgrade readiness must hold before the leader flips to 3.x (Java: 10 min).
pub const UPGRADE_READY_FOR: Duration = Duration::from_secs(600);

/// The lease protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// The KCL 2.x taker (decentralised taking and stealing), deterministic-shuffle leader.
    Kcl2x,
    /// KCL 3.x: lock leader assigns; workers discover, renew and hand off.
    Kcl3x,
}

/// What else exists in DynamoDB, for the decision when no `Migration3.0` item exists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FleetSignals {
    /// The lease table has at least one lease.
    pub has_leases: bool,
    /// The lease table has the `LeaseOwnerToLeaseKeyIndex` GSI.
    pub owner_index: bool,
    /// The coordinator-state table exists.
    pub coordinator_table: bool,
}

/// A write the decision requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MigrationWrite {
    /// Create `Migration3.0` with this client version (conditional: if absent).
    Create(ClientVersion),
    /// Move `cv` from the first to the second version (conditional on the first).
    Advance(ClientVersion, ClientVersion),
}

/// The start-up decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Run `protocol`.
    Run {
        /// The protocol.
        protocol: Protocol,
        /// Also create the owner index and publish WorkerMetricStats (`UPGRADE_FROM_2X`).
        prepare_upgrade: bool,
        /// A write to make first (then decide again from what is stored).
        write: Option<MigrationWrite>,
        /// A warning to log.
        warning: Option<String>,
    },
    /// A KCL 3.x worker seems to be creating the application: read again shortly.
    Wait(String),
}

fn run(protocol: Protocol) -> Decision {
    Decision::Run { protocol, prepare_upgrade: false, write: None, warning: None }
}

/// The start-up decision from the configuration, the stored item and the other signals.
#[must_use]
pub fn decide(config: Option<ClientVersionConfig>, stored: Option<&MigrationRecord>, fleet: FleetSignals) -> Decision {
    if let Some(record) = stored {
        return match record.client_version {
            ClientVersion::V3x => run(Protocol::Kcl3x),
            ClientVersion::V3xWithRollback => Decision::Run {
                protocol: Protocol::Kcl3x,
                prepare_upgrade: false,
                write: (config == Some(ClientVersionConfig::V3x))
                    .then_some(MigrationWrite::Advance(ClientVersion::V3xWithRollback, ClientVersion::V3x)),
                warning: None,
            },
            ClientVersion::UpgradeFrom2x => {
                Decision::Run { protocol: Protocol::Kcl2x, prepare_upgrade: true, write: None, warning: None }
            }
            ClientVersion::V2x => run(Protocol::Kcl2x),
            ClientVersion::Init => Decision::Run {
                protocol: Protocol::Kcl2x,
                prepare_upgrade: false,
                write: None,
                warning: Some(
                    "Migration3.0 says CLIENT_VERSION_INIT, which no worker should store; running the 2.x protocol"
                        .into(),
                ),
            },
        };
    }
    match config {
        Some(ClientVersionConfig::V3x) => Decision::Run {
            protocol: Protocol::Kcl3x,
            prepare_upgrade: false,
            write: Some(MigrationWrite::Create(ClientVersion::V3x)),
            warning: None,
        },
        Some(ClientVersionConfig::CompatibleWith2x) => Decision::Run {
            protocol: Protocol::Kcl2x,
            prepare_upgrade: true,
            write: Some(MigrationWrite::Create(ClientVersion::UpgradeFrom2x)),
            warning: None,
        },
        Some(ClientVersionConfig::CompatibleWith2xPhase1) => run(Protocol::Kcl2x),
        None if !fleet.has_leases => Decision::Run {
            protocol: Protocol::Kcl3x,
            prepare_upgrade: false,
            write: Some(MigrationWrite::Create(ClientVersion::V3x)),
            warning: None,
        },
        None if fleet.owner_index || fleet.coordinator_table => Decision::Wait(
            "the lease table has leases and no Migration3.0 item, but the KCL 3.x owner index or coordinator-state \
             table exists: a KCL 3.x worker is probably starting the application"
                .into(),
        ),
        None => Decision::Run {
            protocol: Protocol::Kcl2x,
            prepare_upgrade: false,
            write: None,
            warning: Some(
                "joining an existing KCL 2.x fleet (leases but no Migration3.0 item) with the 2.x protocol; set \
                 clientVersionConfig = CLIENT_VERSION_CONFIG_COMPATIBLE_WITH_2X to prepare a migration to 3.x, or \
                 CLIENT_VERSION_CONFIG_3X to move this application to 3.x (the Java 3.x daemon would do that \
                 without asking)"
                    .into(),
            ),
        },
    }
}

/// A live protocol switch found by the periodic re-read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// 2.x → 3.x (`3X_WITH_ROLLBACK` or `3X` written): release every held lease (conditional
    /// evict) so the leader can assign them, stop taking, start the 3.x follower/leader.
    To3x,
    /// 3.x → 2.x (rolled back to `2X` or `UPGRADE_FROM_2X`): stop the 3.x components, keep
    /// the held leases, start the taker.
    To2x,
}

/// Whether the stored state asks for another protocol than `running`.
#[must_use]
pub fn transition(running: Protocol, stored: Option<&MigrationRecord>) -> Option<Transition> {
    let wants_3x = stored.is_some_and(|r| r.client_version.runs_3x_protocol());
    match (running, wants_3x) {
        (Protocol::Kcl2x, true) => Some(Transition::To3x),
        // A vanished item (deleted by hand) leaves a running 3.x fleet alone.
        (Protocol::Kcl3x, false) if stored.is_some() => Some(Transition::To2x),
        _ => None,
    }
}

/// The 2.x leader's readiness monitor in `UPGRADE_FROM_2X`: ready when the owner index is
/// ACTIVE and every distinct lease owner has fresh WorkerMetricStats; after
/// [`UPGRADE_READY_FOR`] of continuous readiness the leader writes `3X_WITH_ROLLBACK`.
#[derive(Debug)]
pub struct UpgradeMonitor {
    ready_since: Option<Instant>,
    ready_for: Duration,
    metrics_expiry_s: u64,
}

impl UpgradeMonitor {
    /// A monitor that flips after `ready_for` of readiness ([`UPGRADE_READY_FOR`]), counting
    /// worker metrics older than `metrics_expiry_s` seconds as missing.
    #[must_use]
    pub fn new(ready_for: Duration, metrics_expiry_s: u64) -> Self {
        Self { ready_since: None, ready_for, metrics_expiry_s }
    }

    /// One observation; true when the flip is due.
    pub fn observe(
        &mut self,
        now: Instant,
        index_active: bool,
        owners: &HashSet<String>,
        metrics: &[WorkerMetricStats],
        now_s: u64,
    ) -> bool {
        let fresh: HashSet<&str> =
            metrics.iter().filter(|m| m.is_fresh(now_s, self.metrics_expiry_s)).map(|m| m.worker_id.as_str()).collect();
        let ready = index_active && !owners.is_empty() && owners.iter().all(|o| fresh.contains(o.as_str()));
        if !ready {
            self.ready_since = None;
            return false;
        }
        let since = *self.ready_since.get_or_insert(now);
        now.duration_since(since) >= self.ready_for
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(cv: ClientVersion) -> MigrationRecord {
        MigrationRecord::initial(cv, "w", 1)
    }

    fn protocol(d: &Decision) -> Option<Protocol> {
        match d {
            Decision::Run { protocol, .. } => Some(*protocol),
            Decision::Wait(_) => None,
        }
    }

    #[test]
    fn the_stored_state_wins_over_the_configuration() {
        for config in [None, Some(ClientVersionConfig::V3x), Some(ClientVersionConfig::CompatibleWith2x)] {
            let any = FleetSignals::default();
            assert_eq!(protocol(&decide(config, Some(&stored(ClientVersion::V3x)), any)), Some(Protocol::Kcl3x));
            assert_eq!(protocol(&decide(config, Some(&stored(ClientVersion::V2x)), any)), Some(Protocol::Kcl2x));
            let upgrade = decide(config, Some(&stored(ClientVersion::UpgradeFrom2x)), any);
            assert!(matches!(
                upgrade,
                Decision::Run { protocol: Protocol::Kcl2x, prepare_upgrade: true, write: None, .. }
            ));
        }
        let finalise = decide(
            Some(ClientVersionConfig::V3x),
            Some(&stored(ClientVersion::V3xWithRollback)),
            FleetSignals::default(),
        );
        assert!(matches!(
            finalise,
            Decision::Run {
                protocol: Protocol::Kcl3x,
                write: Some(MigrationWrite::Advance(ClientVersion::V3xWithRollback, ClientVersion::V3x)),
                ..
            }
        ));
        let keep = decide(None, Some(&stored(ClientVersion::V3xWithRollback)), FleetSignals::default());
        assert!(matches!(keep, Decision::Run { protocol: Protocol::Kcl3x, write: None, .. }));
    }

    #[test]
    fn without_a_stored_state_the_configuration_decides() {
        let existing = FleetSignals { has_leases: true, ..FleetSignals::default() };
        assert!(matches!(
            decide(Some(ClientVersionConfig::V3x), None, existing),
            Decision::Run { protocol: Protocol::Kcl3x, write: Some(MigrationWrite::Create(ClientVersion::V3x)), .. }
        ));
        assert!(matches!(
            decide(Some(ClientVersionConfig::CompatibleWith2x), None, existing),
            Decision::Run {
                protocol: Protocol::Kcl2x,
                prepare_upgrade: true,
                write: Some(MigrationWrite::Create(ClientVersion::UpgradeFrom2x)),
                ..
            }
        ));
        assert!(matches!(
            decide(Some(ClientVersionConfig::CompatibleWith2xPhase1), None, existing),
            Decision::Run { protocol: Protocol::Kcl2x, prepare_upgrade: false, write: None, .. }
        ));
    }

    #[test]
    fn unset_configuration_starts_new_applications_in_3x_and_joins_2x_fleets_in_2x() {
        assert!(matches!(
            decide(None, None, FleetSignals::default()),
            Decision::Run { protocol: Protocol::Kcl3x, write: Some(MigrationWrite::Create(ClientVersion::V3x)), .. }
        ));
        let fleet_2x = FleetSignals { has_leases: true, ..FleetSignals::default() };
        assert!(matches!(
            decide(None, None, fleet_2x),
            Decision::Run { protocol: Protocol::Kcl2x, write: None, warning: Some(_), .. }
        ));
        for starting in [
            FleetSignals { has_leases: true, owner_index: true, coordinator_table: false },
            FleetSignals { has_leases: true, owner_index: false, coordinator_table: true },
        ] {
            assert!(matches!(decide(None, None, starting), Decision::Wait(_)));
        }
    }

    #[test]
    fn transitions_follow_the_stored_state() {
        assert_eq!(transition(Protocol::Kcl2x, Some(&stored(ClientVersion::V3xWithRollback))), Some(Transition::To3x));
        assert_eq!(transition(Protocol::Kcl2x, Some(&stored(ClientVersion::V3x))), Some(Transition::To3x));
        assert_eq!(transition(Protocol::Kcl2x, Some(&stored(ClientVersion::UpgradeFrom2x))), None);
        assert_eq!(transition(Protocol::Kcl3x, Some(&stored(ClientVersion::V2x))), Some(Transition::To2x));
        assert_eq!(transition(Protocol::Kcl3x, Some(&stored(ClientVersion::UpgradeFrom2x))), Some(Transition::To2x));
        assert_eq!(transition(Protocol::Kcl3x, None), None);
        assert_eq!(transition(Protocol::Kcl3x, Some(&stored(ClientVersion::V3x))), None);
    }

    #[test]
    fn upgrade_flips_after_continuous_readiness() {
        let t0 = Instant::now();
        let ready_for = Duration::from_secs(600);
        let owners: HashSet<String> = ["a".to_owned(), "b".to_owned()].into();
        let both = vec![WorkerMetricStats::default_metric("a", 1_000), WorkerMetricStats::default_metric("b", 1_000)];
        let mut m = UpgradeMonitor::new(ready_for, 60);
        assert!(!m.observe(t0, true, &owners, &both, 1_000));
        assert!(!m.observe(t0 + Duration::from_secs(599), true, &owners, &both, 1_000));
        // One owner without metrics (a Java 2.x worker) resets the clock.
        assert!(!m.observe(t0 + Duration::from_secs(600), true, &owners, &both[..1], 1_000));
        assert!(!m.observe(t0 + Duration::from_secs(700), true, &owners, &both, 1_000));
        assert!(m.observe(t0 + Duration::from_secs(1_300), true, &owners, &both, 1_000));
        let mut stale = UpgradeMonitor::new(Duration::ZERO, 60);
        assert!(!stale.observe(t0, true, &owners, &both, 1_061), "stale metrics");
        let mut no_index = UpgradeMonitor::new(Duration::ZERO, 60);
        assert!(!no_index.observe(t0, false, &owners, &both, 1_000));
        assert!(no_index.observe(t0, true, &owners, &both, 1_000));
    }
}
