//! Start-up: read what the fleet runs, decide the protocol ([`super::mode::decide`]), make the
//! writes the decision needs, and prepare the 3.x tables.

use std::time::Duration;

use tracing::{info, warn};

use super::coordinator::CoordinatorStateStore;
use super::lease_table::{IndexState, Kcl3LeaseTable};
use super::mode::{decide, Decision, FleetSignals, MigrationWrite, Protocol};
use super::worker_metrics::WorkerMetricsStore;
use super::{ClientVersion, MigrationRecord};
use crate::config::ClientVersionConfig;
use crate::lease::{LeaseError, LeaseStore};

/// How long to wait for a KCL 3.x worker that seems to be creating the application.
const WAIT_FOR_STARTING_FLEET: Duration = Duration::from_secs(60);
/// Pause between reads while waiting.
const WAIT_POLL: Duration = Duration::from_secs(2);

/// What start-up decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chosen {
    /// The protocol to run.
    pub protocol: Protocol,
    /// The stored client version after start-up, if any.
    pub client_version: Option<&'static str>,
}

/// Decides the protocol; in 3.x mode also creates the coordinator-state and worker-metrics
/// tables and the owner index (waiting up to `index_timeout` for it to become ACTIVE).
/// `new_applications_in_3x`: whether an unset `clientVersionConfig` starts a brand-new
/// application in 3.x mode (Java's behaviour).
///
/// # Errors
/// DynamoDB failures, or the owner index not becoming ACTIVE in time.
#[allow(clippy::too_many_arguments)]
pub async fn choose_protocol(
    config: Option<ClientVersionConfig>,
    new_applications_in_3x: bool,
    me: &str,
    leases: &dyn LeaseStore,
    table: &dyn Kcl3LeaseTable,
    coordinator: &dyn CoordinatorStateStore,
    metrics: &dyn WorkerMetricsStore,
    index_timeout: Duration,
) -> Result<Chosen, LeaseError> {
    leases.ensure_table().await?;
    let started = tokio::time::Instant::now();
    let protocol = loop {
        let stored = coordinator.migration().await?;
        if stored.is_none() {
            if let Some(single) = leases.migration_state().await?.filter(|m| m.table == leases.table_name()) {
                // The KCL 3.5 single-table format keeps Migration3.0 in the lease table: no
                // write here; the 2.x scheduler's check joins (2X, UPGRADE_FROM_2X) or refuses it.
                info!(client_version = %single.client_version, table = %single.table, "Migration3.0 in the lease table (KCL 3.5 single-table format)");
                break Protocol::Kcl2x;
            }
        }
        let fleet = FleetSignals {
            has_leases: !leases.list_leases().await?.leases.is_empty(),
            owner_index: table.owner_index_state().await? != IndexState::Missing,
            coordinator_table: coordinator.table_exists().await?,
        };
        let effective = match (config, stored.is_some(), fleet.has_leases) {
            // Keep an unset key on a brand-new application in 2.x when asked to.
            (None, false, false) if !new_applications_in_3x => Some(ClientVersionConfig::CompatibleWith2xPhase1),
            _ => config,
        };
        match decide(effective, stored.as_ref(), fleet) {
            Decision::Wait(why) if started.elapsed() < WAIT_FOR_STARTING_FLEET => {
                info!("{why}; reading the migration state again in {WAIT_POLL:?}");
                tokio::time::sleep(WAIT_POLL).await;
            }
            Decision::Wait(why) => {
                warn!("{why}, but no Migration3.0 item appeared within {WAIT_FOR_STARTING_FLEET:?}: joining with the 2.x protocol");
                break Protocol::Kcl2x;
            }
            Decision::Run { protocol, prepare_upgrade, write, warning } => {
                if let Some(warning) = warning {
                    warn!("{warning}");
                }
                match write {
                    Some(MigrationWrite::Create(cv)) => {
                        coordinator.ensure_table().await?;
                        let now_ms = epoch_ms();
                        if coordinator
                            .create_migration_if_absent(&MigrationRecord::initial(cv.clone(), me, now_ms))
                            .await?
                        {
                            info!(client_version = %cv, table = %coordinator.table_name(), "wrote the application's KCL client version");
                        }
                        continue; // decide again from what is stored now
                    }
                    Some(MigrationWrite::Advance(from, to)) => {
                        if let Some(current) = &stored {
                            let next = current.advanced(to.clone(), me, epoch_ms());
                            if coordinator.update_migration(&from, &next).await? {
                                info!(from = %from, to = %to, "finalised the application's KCL client version");
                            }
                        }
                        break protocol;
                    }
                    None => {}
                }
                if prepare_upgrade {
                    // UPGRADE_FROM_2X: prepare the 3.x tables for the flip, best effort (as
                    // Java, which does not wait for the index in this state).
                    if let Err(e) = table.ensure_owner_index().await {
                        warn!(error = %e, "cannot create the lease owner index for the upgrade to KCL 3.x");
                    }
                    if let Err(e) = metrics.ensure_table().await {
                        warn!(error = %e, "cannot create the worker-metrics table for the upgrade to KCL 3.x");
                    }
                }
                break protocol;
            }
        }
    };
    if protocol == Protocol::Kcl3x {
        // Independent tables: prepared together (a new application's start-up waits for them).
        tokio::try_join!(coordinator.ensure_table(), metrics.ensure_table(), table.ensure_owner_index())?;
        let state = table.wait_owner_index_active(index_timeout).await?;
        if state != IndexState::Active {
            return Err(LeaseError::Dependency {
                table: leases.table_name().to_owned(),
                operation: "create_owner_index",
                message: format!("the index {} is {state:?} after {index_timeout:?}", super::OWNER_INDEX),
            });
        }
    }
    let client_version = coordinator
        .migration()
        .await?
        .map(|m| ClientVersion::ALL.into_iter().find(|v| *v == m.client_version).map_or("?", |v| v.as_str()));
    info!(protocol = ?protocol, client_version = ?client_version, "lease protocol chosen");
    Ok(Chosen { protocol, client_version })
}

fn epoch_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::kcl3::memory::{InMemoryCoordinatorStore, InMemoryKcl3LeaseTable, InMemoryWorkerMetricsStore};
    use crate::lease::memory::InMemoryLeaseStore;
    use crate::lease::Lease;
    use crate::sequence::{ExtendedSequenceNumber, Position};

    struct Bed {
        leases: InMemoryLeaseStore,
        table: InMemoryKcl3LeaseTable,
        coordinator: InMemoryCoordinatorStore,
        metrics: InMemoryWorkerMetricsStore,
    }

    fn bed() -> Bed {
        let leases = InMemoryLeaseStore::new("app");
        Bed {
            table: InMemoryKcl3LeaseTable::new(leases.clone()),
            leases,
            coordinator: InMemoryCoordinatorStore::without_table("app-CoordinatorState"),
            metrics: InMemoryWorkerMetricsStore::without_table("app-WorkerMetricStats"),
        }
    }

    async fn choose(b: &Bed, config: Option<ClientVersionConfig>, new_in_3x: bool) -> Chosen {
        choose_protocol(
            config,
            new_in_3x,
            "me",
            &b.leases,
            &b.table,
            &b.coordinator,
            &b.metrics,
            Duration::from_secs(1),
        )
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn a_new_application_in_3x_writes_the_state_and_prepares_the_tables() {
        let b = bed();
        let chosen = choose(&b, None, true).await;
        assert_eq!(chosen, Chosen { protocol: Protocol::Kcl3x, client_version: Some("CLIENT_VERSION_3X") });
        let stored = b.coordinator.migration().await.unwrap().unwrap();
        assert_eq!(stored.modified_by, "me");
        assert_eq!(b.table.owner_index_state().await.unwrap(), IndexState::Active);
        assert!(!b.metrics.ensure_table().await.unwrap(), "the metrics table exists");
    }

    #[tokio::test]
    async fn an_existing_2x_fleet_is_joined_in_2x_without_writes() {
        let b = bed();
        b.leases.put(Lease::new("s0", ExtendedSequenceNumber::new(Position::TrimHorizon)));
        let chosen = choose(&b, None, true).await;
        assert_eq!(chosen, Chosen { protocol: Protocol::Kcl2x, client_version: None });
        assert!(!b.coordinator.table_exists().await.unwrap());
        assert_eq!(b.table.owner_index_state().await.unwrap(), IndexState::Missing);
    }

    #[tokio::test]
    async fn a_stored_3x_state_is_joined_and_with_rollback_is_finalised_by_a_3x_config() {
        let b = bed();
        b.coordinator.ensure_table().await.unwrap();
        let record = MigrationRecord::initial(ClientVersion::V3xWithRollback, "java", 1);
        b.coordinator.create_migration_if_absent(&record).await.unwrap();
        b.leases.put(Lease::new("s0", ExtendedSequenceNumber::new(Position::TrimHorizon)));
        let chosen = choose(&b, None, false).await;
        assert_eq!(chosen.protocol, Protocol::Kcl3x);
        assert_eq!(chosen.client_version, Some("CLIENT_VERSION_3X_WITH_ROLLBACK"));
        let chosen = choose(&b, Some(ClientVersionConfig::V3x), false).await;
        assert_eq!(chosen.client_version, Some("CLIENT_VERSION_3X"));
        let stored = b.coordinator.migration().await.unwrap().unwrap();
        assert_eq!(stored.history[0].client_version, ClientVersion::V3xWithRollback);
    }

    #[tokio::test]
    async fn a_single_table_migration_item_is_left_to_the_2x_check_without_writes() {
        let b = bed();
        b.leases.set_migration_state(Some(crate::lease::MigrationState {
            client_version: "CLIENT_VERSION_UPGRADE_FROM_2X".into(),
            table: "app".into(),
        }));
        for config in [None, Some(ClientVersionConfig::CompatibleWith2x), Some(ClientVersionConfig::V3x)] {
            assert_eq!(choose(&b, config, true).await.protocol, Protocol::Kcl2x);
        }
        assert!(!b.coordinator.table_exists().await.unwrap(), "nothing written beside the 3.5 fleet");
    }

    #[tokio::test]
    async fn new_applications_can_be_kept_in_2x() {
        let b = bed();
        assert_eq!(choose(&b, None, false).await.protocol, Protocol::Kcl2x);
        assert_eq!(choose(&b, Some(ClientVersionConfig::V3x), false).await.protocol, Protocol::Kcl3x);
    }
}
