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
