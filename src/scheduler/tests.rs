//! Scheduler tests on in-memory seams: the lease table, the stream and the record
//! processors are fakes; everything else (taker, renewer, consumers, checkpointer) is real.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::*;
use crate::config::{properties, Config, InitialPosition};
use crate::lease::memory::InMemoryLeaseStore;
use crate::sequence::Position;
use crate::shard::fake::{FakeBehaviour, FakeEvent, FakeLauncher};
use crate::stream::memory::InMemoryStream;

fn config(extra: &str) -> Config {
    let text = format!(
        "executableName = fake\nstreamName = s\napplicationName = app\n\
         AWSCredentialsProvider = DefaultCredentialsProvider\nretrievalMode = POLLING\n\
         initialPositionInStream = TRIM_HORIZON\nfailoverTimeMillis = 1000\n\
         shutdownGraceMillis = 2000\nparentShardPollIntervalMillis = 100\n{extra}"
    );
    let (entries, errors) = properties::parse(text.as_bytes());
    assert!(errors.is_empty(), "{errors:?}");
    Config::from_entries("test.properties", entries).expect("valid test config").config
}

struct Harness {
    store: InMemoryLeaseStore,
    launcher: FakeLauncher,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), SchedulerError>>,
}

fn start(config: Config, stream: InMemoryStream, launcher: FakeLauncher) -> Harness {
    start_with(config, stream, launcher, InMemoryLeaseStore::new("app"), |s| s)
}

/// Starts a scheduler on `store` (possibly pre-populated), adjusted by `configure`.
fn start_with(
    config: Config,
    stream: InMemoryStream,
    launcher: FakeLauncher,
    store: InMemoryLeaseStore,
    configure: impl FnOnce(Scheduler) -> Scheduler,
) -> Harness {
    let shutdown = CancellationToken::new();
    let scheduler = Scheduler::new(
        Arc::new(config),
        "worker-1".to_owned(),
        Arc::new(store.clone()),
        Arc::new(stream.clone()),
        Arc::new(stream.clone()),
        Arc::new(launcher.clone()),
    );
    let task = tokio::spawn(configure(scheduler).run(shutdown.clone()));
    Harness { store, launcher, shutdown, task }
}

/// Cleanup checks every few milliseconds.
fn fast_cleanup(enabled: bool) -> CleanupSettings {
    CleanupSettings {
        enabled,
        tick: Duration::from_millis(20),
        first_check: Duration::from_millis(50),
        max_check_interval: Duration::from_millis(200),
    }
}

/// Audits every 50 ms, syncing on the third sighting of a hole.
fn fast_audit() -> AuditSettings {
    AuditSettings {
        first_run: Duration::from_millis(50),
        interval: Duration::from_millis(50),
        confidence_threshold: 3,
        min_sync_gap: Duration::ZERO,
    }
}

/// No audit during the test.
fn no_audit() -> AuditSettings {
    AuditSettings { first_run: Duration::from_secs(3600), ..AuditSettings::default() }
}

impl Harness {
    fn records_seen(&self, shard: &str) -> Vec<String> {
        self.launcher
            .events(shard)
            .into_iter()
            .filter_map(|e| match e {
                FakeEvent::Record(seq, _) => Some(seq),
                _ => None,
            })
            .collect()
    }

    async fn wait_until(&self, what: &str, mut done: impl FnMut(&Self) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !done(self) {
            assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop(self) -> (InMemoryLeaseStore, FakeLauncher) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task).await.expect("scheduler stops").unwrap().unwrap();
        (self.store, self.launcher)
    }
}

/// A stream of `shards` shards with `records` records in each, and the shard ids.
fn seeded_stream(shards: u32, records: usize) -> (InMemoryStream, Vec<String>) {
    let stream = InMemoryStream::with_shards(shards).with_max_records(50);
    let ids: Vec<String> = stream.shards().into_iter().map(|s| s.shard_id).collect();
    for id in &ids {
        put(&stream, id, records);
    }
    (stream, ids)
}

fn put(stream: &InMemoryStream, shard: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| stream.put(shard, &format!("pk-{i}"), format!("data-{i}")).sequence_number.to_string()).collect()
}

#[tokio::test]
async fn delivers_every_record_checkpoints_the_last_and_releases_on_shutdown() {
    let stream = InMemoryStream::with_shards(4).with_max_records(100);
    let shards: Vec<String> = stream.shards().into_iter().map(|s| s.shard_id).collect();
    let sent: Vec<Vec<String>> = shards.iter().map(|s| put(&stream, s, 500)).collect();
    let h = start(config(""), stream, FakeLauncher::new(FakeBehaviour::default()));
    h.wait_until("all records", |h| shards.iter().zip(&sent).all(|(s, sent)| h.records_seen(s).len() >= sent.len()))
        .await;
    h.wait_until("final checkpoints", |h| {
        shards.iter().zip(&sent).all(|(s, sent)| {
            h.store.lease(s).is_some_and(|l| l.checkpoint.position.as_str() == sent.last().unwrap().as_str())
        })
    })
    .await;
    let (store, launcher) = h.stop().await;
    for (shard, sent) in shards.iter().zip(&sent) {
        assert_eq!(launcher.records_seen_ordered(shard), *sent, "{shard}: exactly once, in order");
        let events = launcher.events(shard);
        assert!(matches!(events.first(), Some(FakeEvent::Initialize(c)) if c == "TRIM_HORIZON"));
        let tail: Vec<&FakeEvent> = events.iter().rev().take(3).collect();
        assert_eq!(*tail[0], FakeEvent::LeaseLost);
        assert_eq!(*tail[2], FakeEvent::ShutdownRequested);
        let lease = store.lease(shard).unwrap();
        assert_eq!(lease.owner, None, "released on shutdown");
    }
}

#[tokio::test]
async fn a_failing_processor_restarts_only_its_shard_from_the_checkpoint() {
    let stream = InMemoryStream::with_shards(2).with_max_records(10);
    let shards: Vec<String> = stream.shards().into_iter().map(|s| s.shard_id).collect();
    let sent: Vec<Vec<String>> = shards.iter().map(|s| put(&stream, s, 100)).collect();
    let behaviour = FakeBehaviour { fail_after_batches: Some(3), fail_times: 1, ..FakeBehaviour::default() };
    let h = start(config(""), stream, FakeLauncher::new(behaviour));
    h.wait_until("all records", |h| shards.iter().zip(&sent).all(|(s, sent)| h.records_seen(s).len() >= sent.len()))
        .await;
    let (_store, launcher) = h.stop().await;
    for (shard, sent) in shards.iter().zip(&sent) {
        // First instance: 3 batches (30 records), checkpointed; the 4th batch was lost with
        // the process. The restart resumes after the checkpoint: no loss, no duplicates here
        // because every delivered batch was checkpointed before the failure.
        assert_eq!(launcher.launches(shard), 2, "{shard}");
        assert_eq!(launcher.records_seen_ordered(shard), *sent, "{shard}");
        let inits: Vec<FakeEvent> =
            launcher.events(shard).into_iter().filter(|e| matches!(e, FakeEvent::Initialize(_))).collect();
        assert_eq!(inits[1], FakeEvent::Initialize(sent[29].clone()));
    }
}

#[tokio::test]
async fn split_parent_ends_then_children_are_processed() {
    let stream = InMemoryStream::with_shards(1).with_max_records(50);
    let parent = stream.shards()[0].shard_id.clone();
    let before = put(&stream, &parent, 20);
    let children = stream.split_shard(&parent);
    let child_ids: Vec<String> = children.iter().map(|c| c.shard_id.clone()).collect();
    let after: Vec<Vec<String>> = child_ids.iter().map(|c| put(&stream, c, 7)).collect();
    let h = start(config(""), stream, FakeLauncher::new(FakeBehaviour::default()));
    h.wait_until("children processed", |h| child_ids.iter().all(|c| h.records_seen(c).len() >= 7)).await;
    let (store, launcher) = h.stop().await;
    assert_eq!(launcher.records_seen_ordered(&parent), before);
    assert!(launcher.events(&parent).contains(&FakeEvent::ShardEnded));
    let parent_lease = store.lease(&parent).unwrap();
    assert_eq!(parent_lease.checkpoint.position, Position::ShardEnd);
    assert_eq!(parent_lease.child_shard_ids.iter().cloned().collect::<Vec<_>>(), {
        let mut ids = child_ids.clone();
        ids.sort();
        ids
    });
    for (child, sent) in child_ids.iter().zip(&after) {
        let lease = store.lease(child).unwrap();
        assert!(lease.parent_shard_ids.contains(&parent));
        assert_eq!(launcher.records_seen_ordered(child), *sent);
    }
}

#[tokio::test]
async fn a_processor_that_skips_the_shard_end_checkpoint_keeps_the_shard_open() {
    let stream = InMemoryStream::with_shards(1).with_max_records(50);
    let parent = stream.shards()[0].shard_id.clone();
    put(&stream, &parent, 5);
    let children = stream.split_shard(&parent);
    let behaviour = FakeBehaviour { checkpoint_at_shard_end: false, ..FakeBehaviour::default() };
    let h = start(config(""), stream, FakeLauncher::new(behaviour));
    h.wait_until("two shardEnded attempts", |h| {
        h.launcher.events(&parent).iter().filter(|e| **e == FakeEvent::ShardEnded).count() >= 2
    })
    .await;
    let (store, launcher) = h.stop().await;
    assert_ne!(store.lease(&parent).unwrap().checkpoint.position, Position::ShardEnd);
    for child in &children {
        assert!(launcher.events(&child.shard_id).is_empty(), "children wait for their parent");
    }
}

#[tokio::test]
async fn a_stolen_lease_gets_lease_lost() {
    let stream = InMemoryStream::with_shards(1).with_max_records(50);
    let shard = stream.shards()[0].shard_id.clone();
    put(&stream, &shard, 5);
    let h = start(config(""), stream, FakeLauncher::new(FakeBehaviour::default()));
    h.wait_until("records", |h| h.records_seen(&shard).len() == 5).await;
    h.store.steal(&shard, "other-worker");
    h.wait_until("leaseLost", |h| h.launcher.events(&shard).contains(&FakeEvent::LeaseLost)).await;
    let (store, launcher) = h.stop().await;
    assert_eq!(store.lease(&shard).unwrap().owner.as_deref(), Some("other-worker"));
    assert!(!launcher.events(&shard).contains(&FakeEvent::ShutdownRequested));
}

/// A parent that reached SHARD_END loses its lease once both children have checkpointed
/// past TRIM_HORIZON; the worker stops holding (renewing) it; the children keep theirs.
#[tokio::test]
async fn a_finished_parent_lease_is_deleted_after_its_children_started() {
    let stream = InMemoryStream::with_shards(1).with_max_records(50);
    let parent = stream.shards()[0].shard_id.clone();
    put(&stream, &parent, 20);
    let children: Vec<String> = stream.split_shard(&parent).iter().map(|c| c.shard_id.clone()).collect();
    for child in &children {
        put(&stream, child, 7);
    }
    let store = InMemoryLeaseStore::new("app");
    let h = start_with(config(""), stream, FakeLauncher::new(FakeBehaviour::default()), store, |s| {
        s.with_cleanup_settings(fast_cleanup(true)).with_audit_settings(no_audit())
    });
    h.wait_until("parent at SHARD_END", |h| {
        h.store.lease(&parent).is_some_and(|l| l.checkpoint.position == Position::ShardEnd)
    })
    .await;
    h.wait_until("parent lease deleted", |h| h.store.lease(&parent).is_none()).await;
    for child in &children {
        let lease = h.store.lease(child).unwrap();
        assert!(!lease.checkpoint.position.is_initial_sentinel(), "{child} started before the delete: {lease:?}");
    }
    // It stays deleted while the children's leases are still renewed.
    let renews = h.store.calls(crate::lease::memory::Op::RenewLease);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(h.store.lease(&parent).is_none());
    let (store, launcher) = h.stop().await;
    assert!(store.calls(crate::lease::memory::Op::RenewLease) > renews, "children still renewed");
    assert!(launcher.events(&parent).contains(&FakeEvent::ShardEnded));
    for child in &children {
        assert_eq!(launcher.records_seen_ordered(child).len(), 7);
    }
}

#[tokio::test]
async fn cleanup_disabled_keeps_the_finished_parent_lease() {
    let stream = InMemoryStream::with_shards(1).with_max_records(50);
    let parent = stream.shards()[0].shard_id.clone();
    put(&stream, &parent, 3);
    let children: Vec<String> = stream.split_shard(&parent).iter().map(|c| c.shard_id.clone()).collect();
    for child in &children {
        put(&stream, child, 2);
    }
    let h = start_with(
        config("cleanupLeasesUponShardCompletion = false\n"),
        stream,
        FakeLauncher::new(FakeBehaviour::default()),
        InMemoryLeaseStore::new("app"),
        |s| {
            let from_config = CleanupSettings::from_config(&s.config);
            assert!(!from_config.enabled);
            s.with_cleanup_settings(CleanupSettings { enabled: false, ..fast_cleanup(false) })
        },
    );
    h.wait_until("children checkpointed", |h| {
        children.iter().all(|c| h.store.lease(c).is_some_and(|l| !l.checkpoint.position.is_initial_sentinel()))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (store, _) = h.stop().await;
    assert_eq!(store.lease(&parent).unwrap().checkpoint.position, Position::ShardEnd);
    assert_eq!(store.calls(crate::lease::memory::Op::DeleteLease), 0);
}

/// Two shards, but the table only has a lease for the first (e.g. the second was added
/// while no worker ran and its lineage is unknown to the table): the start-up sync creates
/// the missing lease at once.
#[tokio::test]
async fn the_start_up_sync_creates_leases_missing_from_a_non_empty_table() {
    let stream = InMemoryStream::with_shards(2).with_max_records(50);
    let shards: Vec<String> = stream.shards().into_iter().map(|s| s.shard_id).collect();
    let sent = put(&stream, &shards[1], 5);
    let store = InMemoryLeaseStore::new("app");
    store.put(sync::lease_for_shard(&stream.shards()[0], sync::initial_checkpoint(InitialPosition::TrimHorizon)));
    let h = start_with(config(""), stream, FakeLauncher::new(FakeBehaviour::default()), store, |s| {
        s.with_audit_settings(no_audit())
    });
    h.wait_until("records of the second shard", |h| h.records_seen(&shards[1]).len() == 5).await;
    let (store, launcher) = h.stop().await;
    assert_eq!(launcher.records_seen_ordered(&shards[1]), sent);
    assert!(store.lease(&shards[1]).unwrap().hash_key_range.is_some());
}

#[tokio::test]
async fn with_skip_shard_sync_the_audit_creates_the_missing_lease_after_three_sightings() {
    let stream = InMemoryStream::with_shards(2).with_max_records(50);
    let shards: Vec<String> = stream.shards().into_iter().map(|s| s.shard_id).collect();
    put(&stream, &shards[1], 5);
    let seed = |stream: &InMemoryStream| {
        let store = InMemoryLeaseStore::new("app");
        store.put(sync::lease_for_shard(&stream.shards()[0], sync::initial_checkpoint(InitialPosition::TrimHorizon)));
        store
    };
    let skip = "skipShardSyncAtWorkerInitializationIfLeasesExist = true\n";

    // No audit: the missing lease stays missing.
    let h = start_with(config(skip), stream.clone(), FakeLauncher::new(FakeBehaviour::default()), seed(&stream), |s| {
        s.with_audit_settings(no_audit())
    });
    h.wait_until("first shard processed", |h| h.launcher.launches(&shards[0]) == 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (store, _) = h.stop().await;
    assert!(store.lease(&shards[1]).is_none(), "skipped at start-up");

    // With audits: created after the third audit that sees the hole, then processed.
    let h = start_with(config(skip), stream.clone(), FakeLauncher::new(FakeBehaviour::default()), seed(&stream), |s| {
        s.with_audit_settings(fast_audit())
    });
    h.wait_until("records of the second shard", |h| h.records_seen(&shards[1]).len() == 5).await;
    let (store, _) = h.stop().await;
    let lists = store.calls(crate::lease::memory::Op::ListLeases);
    assert!(lists >= 4, "three audits and the sync's own scan: {lists}");
}

fn start_forceable(
    config: Config,
    stream: InMemoryStream,
    launcher: FakeLauncher,
    configure: impl FnOnce(Scheduler) -> Scheduler,
) -> (Harness, Shutdown, StatusReceiver) {
    let store = InMemoryLeaseStore::new("app");
    let shutdown = Shutdown::new();
    let scheduler = configure(Scheduler::new(
        Arc::new(config),
        "worker-1".to_owned(),
        Arc::new(store.clone()),
        Arc::new(stream.clone()),
        Arc::new(stream.clone()),
        Arc::new(launcher.clone()),
    ));
    let status = scheduler.status();
    let task = tokio::spawn(scheduler.run(shutdown.clone()));
    (Harness { store, launcher, shutdown: shutdown.token().clone(), task }, shutdown, status)
}

/// A record processor that never answers `shutdownRequested` is killed when
/// `shutdownGraceMillis` expires; the leases are still released.
#[tokio::test]
async fn the_grace_period_kills_a_processor_that_hangs_in_shutdown() {
    let (stream, shards) = seeded_stream(2, 5);
    let behaviour = FakeBehaviour { hang_on_shutdown: true, ..FakeBehaviour::default() };
    let h = start(config("shutdownGraceMillis = 400\n"), stream, FakeLauncher::new(behaviour));
    h.wait_until("records", |h| shards.iter().all(|s| h.records_seen(s).len() == 5)).await;
    let started = tokio::time::Instant::now();
    let (store, launcher) = h.stop().await;
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(400), "waited the grace period: {took:?}");
    assert!(took < Duration::from_secs(5), "then killed: {took:?}");
    for s in &shards {
        let events = launcher.events(s);
        assert_eq!(events.last(), Some(&FakeEvent::ShutdownRequested), "{s}: hung, never got leaseLost");
        assert_eq!(store.lease(s).unwrap().owner, None, "{s}: released after the kill");
    }
}

/// A second signal while processors hang in `shutdownRequested`: they are killed at once
/// (no waiting for the 60 s grace) and the leases are released.
#[tokio::test]
async fn a_forced_stop_kills_at_once_and_releases_the_leases() {
    let (stream, shards) = seeded_stream(3, 5);
    let behaviour = FakeBehaviour { hang_on_shutdown: true, ..FakeBehaviour::default() };
    let (h, shutdown, _) =
        start_forceable(config("shutdownGraceMillis = 60000\n"), stream, FakeLauncher::new(behaviour), |s| s);
    h.wait_until("records", |h| shards.iter().all(|s| h.records_seen(s).len() == 5)).await;
    shutdown.request();
    h.wait_until("shutdownRequested everywhere", |h| {
        shards.iter().all(|s| h.launcher.events(s).contains(&FakeEvent::ShutdownRequested))
    })
    .await;
    let started = tokio::time::Instant::now();
    shutdown.force();
    let Harness { store, task, .. } = h;
    tokio::time::timeout(Duration::from_secs(5), task).await.expect("stops at once").unwrap().unwrap();
    let took = started.elapsed();
    assert!(took < FORCED_RELEASE_TIMEOUT + Duration::from_secs(2), "{took:?}");
    for s in &shards {
        assert_eq!(store.lease(s).unwrap().owner, None, "{s}: released");
    }
}

/// The fleet switches to KCL 3.x while the worker runs: it stops gracefully (processors get
/// `shutdownRequested`, leases are released) and reports the fatal condition.
#[tokio::test]
async fn a_fleet_switching_to_kcl_3x_stops_the_worker_gracefully() {
    let (stream, shards) = seeded_stream(2, 5);
    let h = start_with(
        config(""),
        stream,
        FakeLauncher::new(FakeBehaviour::default()),
        InMemoryLeaseStore::new("app"),
        |s| s.with_migration_check_interval(Duration::from_millis(100)).with_audit_settings(no_audit()),
    );
    h.wait_until("records", |h| shards.iter().all(|s| h.records_seen(s).len() == 5)).await;
    h.store.set_migration_state(Some(crate::lease::MigrationState {
        client_version: "CLIENT_VERSION_3X".to_owned(),
        table: "app-CoordinatorState".to_owned(),
    }));
    let result = tokio::time::timeout(Duration::from_secs(10), h.task).await.expect("stops").unwrap();
    assert!(
        matches!(&result, Err(SchedulerError::ProtocolSwitch { client_version, .. }) if client_version == "CLIENT_VERSION_3X"),
        "{result:?}"
    );
    for s in &shards {
        assert!(h.launcher.events(s).contains(&FakeEvent::ShutdownRequested), "{s}");
        assert_eq!(h.store.lease(s).unwrap().owner, None, "{s}: released for the 3.x leader to assign");
    }
}

/// A 2.x worker does not start in a fleet whose `Migration3.0` says 3.x (the KCL 3.5
/// single-table format, which multilangd does not run in 3.x mode): exit 78.
#[tokio::test]
async fn a_2x_worker_refuses_to_start_in_a_3x_fleet() {
    let (stream, _) = seeded_stream(1, 1);
    let store = InMemoryLeaseStore::new("app");
    store.set_migration_state(Some(crate::lease::MigrationState {
        client_version: "CLIENT_VERSION_3X".to_owned(),
        table: "app".to_owned(),
    }));
    let h = start_with(config(""), stream, FakeLauncher::new(FakeBehaviour::default()), store, |s| {
        s.with_audit_settings(no_audit())
    });
    let result = tokio::time::timeout(Duration::from_secs(10), h.task).await.expect("stops").unwrap();
    assert!(matches!(result, Err(SchedulerError::Fleet3x { .. })), "{result:?}");
}

/// A 3.x worker whose fleet is rolled back (`CLIENT_VERSION_2X`, or `UPGRADE_FROM_2X` again)
/// stops its processors gracefully and releases its leases, to rejoin with the 2.x taker; a
/// vanished item or a 3.x state leaves it running.
#[tokio::test]
async fn a_3x_worker_stops_gracefully_on_a_rollback() {
    let (stream, shards) = seeded_stream(2, 5);
    let store = InMemoryLeaseStore::new("app");
    let assignment = TakerAssignment::new(
        Arc::new(store.clone()),
        "worker-1",
        TakerSettings {
            failover_time: Duration::from_secs(1),
            max_leases_for_worker: u32::MAX,
            max_leases_to_steal_at_one_time: 1,
            enable_priority_lease_assignment: true,
        },
    );
    let h = start_with(config(""), stream, FakeLauncher::new(FakeBehaviour::default()), store, |s| {
        // The taker stands in for the 3.x follower: what matters is the mode flag.
        s.with_kcl3_assignment(Box::new(assignment))
            .with_migration_check_interval(Duration::from_millis(100))
            .with_audit_settings(no_audit())
    });
    h.wait_until("records", |h| shards.iter().all(|s| h.records_seen(s).len() == 5)).await;
    let state = |cv: &str| {
        Some(crate::lease::MigrationState { client_version: cv.to_owned(), table: "app-CoordinatorState".to_owned() })
    };
    h.store.set_migration_state(state("CLIENT_VERSION_3X_WITH_ROLLBACK"));
    tokio::time::sleep(Duration::from_millis(400)).await;
    h.store.set_migration_state(None);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!h.task.is_finished(), "a 3.x state or a vanished item keeps the 3.x worker running");
    h.store.set_migration_state(state("CLIENT_VERSION_2X"));
    let result = tokio::time::timeout(Duration::from_secs(10), h.task).await.expect("stops").unwrap();
    assert!(
        matches!(&result, Err(SchedulerError::ProtocolSwitch { client_version, .. }) if client_version == "CLIENT_VERSION_2X"),
        "{result:?}"
    );
    for s in &shards {
        assert!(h.launcher.events(s).contains(&FakeEvent::ShutdownRequested), "{s}");
        assert_eq!(h.store.lease(s).unwrap().owner, None, "{s}: released for the 2.x taker");
    }
}

/// A record processor whose program is missing is not restarted in a hot loop: the shard
/// backs off to the longest restart delay and its status names the failure.
#[tokio::test]
async fn a_missing_program_is_reported_and_retried_slowly() {
    let stream = InMemoryStream::with_shards(1).with_max_records(50);
    let shard = stream.shards()[0].shard_id.clone();
    let behaviour = FakeBehaviour { missing_program: true, ..FakeBehaviour::default() };
    let (h, _shutdown, mut status) =
        start_forceable(config(""), stream, FakeLauncher::new(behaviour), |s| s.with_audit_settings(no_audit()));
    h.wait_until("a launch attempt", |h| h.launcher.launches(&shard) >= 1).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(h.launcher.launches(&shard), 1, "no hot loop");
    let snapshot = status.borrow_and_update().clone();
    let shard_status = snapshot.shard(&shard).expect("held shard in the status");
    assert!(matches!(shard_status.phase, crate::status::ShardPhase::BackingOff { .. }), "{shard_status:?}");
    assert!(shard_status.last_failure.as_deref().is_some_and(|f| f.contains("not found on PATH")), "{shard_status:?}");
    assert_eq!(shard_status.restarts, 1);
    h.stop().await;
}

/// The status snapshot follows the shards: processing, records delivered, checkpoints.
#[tokio::test]
async fn the_status_snapshot_shows_every_held_shard() {
    let stream = InMemoryStream::with_shards(2).with_max_records(50);
    let shards: Vec<String> = stream.shards().into_iter().map(|s| s.shard_id).collect();
    let sent: Vec<Vec<String>> = shards.iter().map(|s| put(&stream, s, 30)).collect();
    let (h, _shutdown, mut status) =
        start_forceable(config(""), stream, FakeLauncher::new(FakeBehaviour::default()), |s| s);
    h.wait_until("records", |h| shards.iter().all(|s| h.records_seen(s).len() == 30)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let snapshot = status.borrow_and_update().clone();
        let done = shards.iter().zip(&sent).all(|(s, sent)| {
            snapshot.shard(s).is_some_and(|st| {
                st.records == 30
                    && st.checkpoint == *sent.last().unwrap()
                    && st.last_sequence_delivered.as_deref() == sent.last().map(String::as_str)
                    && st.phase == crate::status::ShardPhase::Processing
                    && st.child_starts == 1
            })
        });
        let renewed = snapshot.last_renewal.as_ref().is_some_and(|r| r.ok && r.renewed == 2);
        if done && renewed {
            assert_eq!(snapshot.phase, WorkerPhase::Running);
            assert_eq!(snapshot.lease_protocol, "KCL 2.x");
            assert!(snapshot.lease_table_ok_at.is_some());
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "status never caught up: {snapshot:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, _) = h.stop().await;
    assert_eq!(status.borrow().phase, WorkerPhase::Stopped);
}

/// An assignment that takes like the 2.x taker and, from its third round on, hands one
/// lease off (as a KCL 3.x leader would move it to another worker).
struct HandOffOne {
    inner: TakerAssignment,
    key: String,
    rounds: usize,
    handed: Arc<std::sync::Mutex<Vec<String>>>,
}

#[async_trait::async_trait]
impl LeaseAssignment for HandOffOne {
    fn protocol(&self) -> &'static str {
        "test"
    }

    fn next_round(&self) -> Instant {
        self.inner.next_round().min(Instant::now() + Duration::from_millis(100))
    }

    async fn round(&mut self, held: &LeaseRenewer) -> Result<crate::lease::assignment::AssignmentRound, LeaseError> {
        self.rounds += 1;
        let mut round = self.inner.round(held).await?;
        if self.rounds >= 3 && self.handed.lock().unwrap().is_empty() && held.get(&self.key).is_some() {
            round.hand_off.push(self.key.clone());
        }
        Ok(round)
    }

    async fn handed_off(&mut self, held: &LeaseRenewer, key: &str) -> Result<(), LeaseError> {
        self.handed.lock().unwrap().push(key.to_owned());
        held.release(key).await.map(|_| ())
    }
}

/// Stopping one shard for a hand-off: its processor gets `shutdownRequested` (and
/// checkpoints), the assignment completes the hand-off, the other shards run on untouched.
#[tokio::test]
async fn one_shard_is_handed_off_gracefully_while_the_others_keep_running() {
    let (stream, shards) = seeded_stream(3, 10);
    let handed = Arc::new(std::sync::Mutex::new(Vec::new()));
    let store = InMemoryLeaseStore::new("app");
    let assignment = HandOffOne {
        inner: TakerAssignment::new(
            Arc::new(store.clone()),
            "worker-1",
            TakerSettings {
                failover_time: Duration::from_secs(1),
                max_leases_for_worker: u32::MAX,
                max_leases_to_steal_at_one_time: 1,
                enable_priority_lease_assignment: true,
            },
        ),
        key: shards[0].clone(),
        rounds: 0,
        handed: handed.clone(),
    };
    let moved = shards[0].clone();
    let new_owner = store.clone();
    let h = start_with(config(""), stream, FakeLauncher::new(FakeBehaviour::default()), store, move |s| {
        s.with_assignment(Box::new(assignment)).with_audit_settings(no_audit())
    });
    h.wait_until("hand-off", |_| !handed.lock().unwrap().is_empty()).await;
    // The new owner takes the released lease (what the leader's assignee does).
    new_owner.modify(&moved, |l| {
        l.owner = Some("worker-2".to_owned());
        l.counter += 1;
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (store, launcher) = h.stop().await;
    let events = launcher.events(&moved);
    let shutdown_at = events.iter().position(|e| *e == FakeEvent::ShutdownRequested).expect("shutdownRequested");
    assert_eq!(events.get(shutdown_at + 1), Some(&FakeEvent::Checkpoint(None)), "checkpointed at the hand-off");
    assert_eq!(store.lease(&moved).unwrap().owner.as_deref(), Some("worker-2"));
    assert_eq!(store.lease(&moved).unwrap().checkpoint.position.as_str(), launcher.records_seen_ordered(&moved)[9]);
    assert_eq!(*handed.lock().unwrap(), vec![moved.clone()]);
    for other in &shards[1..] {
        let events = launcher.events(other);
        assert_eq!(launcher.launches(other), 1, "{other}: never restarted");
        assert_eq!(
            events.iter().filter(|e| **e == FakeEvent::ShutdownRequested).count(),
            1,
            "{other}: only at the end"
        );
    }
}

/// A stop requested while a take is in flight: the round finishes, and the lease it took
/// is released with the others instead of being left owned but unrenewed.
#[tokio::test]
async fn a_stop_during_a_take_still_releases_the_taken_lease() {
    let stream = InMemoryStream::with_shards(1).with_max_records(50);
    let shard = stream.shards()[0].shard_id.clone();
    let store = InMemoryLeaseStore::new("app");
    store.set_response_latency(crate::lease::memory::Op::TakeLease, Duration::from_millis(500));
    let h = start_with(config(""), stream, FakeLauncher::new(FakeBehaviour::default()), store, |s| {
        s.with_audit_settings(no_audit())
    });
    h.wait_until("the take is applied, its answer in flight", |h| {
        h.store.lease(&shard).is_some_and(|l| l.owner.as_deref() == Some("worker-1"))
    })
    .await;
    let (store, _) = h.stop().await;
    let lease = store.lease(&shard).unwrap();
    assert_eq!(lease.owner, None, "taken during the stop, then released: {lease:?}");
    assert_eq!(store.calls(crate::lease::memory::Op::ReleaseLease), 1);
}

/// The worker that finished a parent takes the unowned children at once instead of at the
/// next taker round (20 s apart here): a split's children and, after both parents ended, a
/// merge's child deliver records within seconds, parents first.
#[tokio::test]
async fn children_are_taken_as_soon_as_their_parents_end() {
    let stream = InMemoryStream::with_shards(1).with_max_records(50);
    let parent = stream.shards()[0].shard_id.clone();
    put(&stream, &parent, 5);
    // failoverTimeMillis = 10 s: taker rounds 20 s apart; the only one in this test is at start.
    let h = start(config("failoverTimeMillis = 10000\n"), stream.clone(), FakeLauncher::new(FakeBehaviour::default()));
    h.wait_until("the parent's records", |h| h.records_seen(&parent).len() >= 5).await;
    // Resharded while the worker runs: the child leases appear at the parent's shard end.
    let children: Vec<String> = stream.split_shard(&parent).iter().map(|c| c.shard_id.clone()).collect();
    for child in &children {
        put(&stream, child, 3);
    }
    let started = tokio::time::Instant::now();
    h.wait_until("the split's children deliver", |h| children.iter().all(|c| h.records_seen(c).len() >= 3)).await;
    let merged = stream.merge_shards(&children[0], &children[1]).shard_id.clone();
    put(&stream, &merged, 4);
    h.wait_until("the merged child delivers", |h| h.records_seen(&merged).len() >= 4).await;
    assert!(started.elapsed() < Duration::from_secs(10), "children waited for a taker round: {:?}", started.elapsed());
    let (store, launcher) = h.stop().await;
    for child in &children {
        assert_eq!(launcher.records_seen_ordered(child).len(), 3);
        assert_eq!(store.lease(child).unwrap().checkpoint.position, Position::ShardEnd);
    }
    assert!(launcher.events(&parent).contains(&FakeEvent::ShardEnded));
}

/// A lease-table outage longer than failoverTimeMillis pauses delivery (no record under a
/// lease that may have expired elsewhere) and resumes the same processors without replay;
/// a lease another worker took meanwhile is lost at the first answer.
#[tokio::test]
async fn a_lease_table_outage_pauses_delivery_and_resumes_without_replay() {
    let (stream, shards) = seeded_stream(2, 20);
    let h = start_with(
        config(""),
        stream.clone(),
        FakeLauncher::new(FakeBehaviour::default()),
        InMemoryLeaseStore::new("app"),
        |s| s.with_audit_settings(no_audit()),
    );
    h.wait_until("first records", |h| shards.iter().all(|s| h.records_seen(s).len() == 20)).await;
    h.store.set_unreachable(true);
    // failoverTimeMillis is 1000: after 1.5 s every lease may have expired elsewhere.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for shard in &shards {
        put(&stream, shard, 10);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for shard in &shards {
        assert_eq!(h.records_seen(shard).len(), 20, "{shard}: no delivery under an unsafe lease");
        assert_eq!(h.launcher.launches(shard), 1, "{shard}: the processor stays up");
        assert!(!h.launcher.events(shard).contains(&FakeEvent::LeaseLost), "{shard}");
    }
    // Meanwhile another worker took the second lease.
    h.store.steal(&shards[1], "worker-2");
    h.store.set_unreachable(false);
    h.wait_until("delivery resumed", |h| h.records_seen(&shards[0]).len() == 30).await;
    h.wait_until("the stolen lease lost", |h| h.launcher.events(&shards[1]).contains(&FakeEvent::LeaseLost)).await;
    let last = stream.records(&shards[0])[29].sequence_number.to_string();
    h.wait_until("the last checkpoint", |h| h.store.lease(&shards[0]).unwrap().checkpoint.position.as_str() == last)
        .await;
    assert_eq!(h.launcher.launches(&shards[0]), 1, "resumed with the same processor");
    assert_eq!(h.records_seen(&shards[0]).len(), 30, "no replay");
    let first_tenure = h.launcher.events(&shards[1]);
    let first_tenure = first_tenure.split(|e| *e == FakeEvent::LeaseLost).next().unwrap_or_default();
    let delivered = first_tenure.iter().filter(|e| matches!(e, FakeEvent::Record(..))).count();
    assert_eq!(delivered, 20, "nothing delivered under the stolen lease");
    h.stop().await;
}
