//! The KCL 3.x pieces of multilangd against the real Java KCL 3.1.3 MultiLangDaemon (moto +
//! kinesis-local), driven from the test through the library, before the daemon runs them:
//!
//! * multilangd as the 3.x leader (lock item + LEASE_COUNT_BASED assignment): a Java 3.1.3
//!   worker joining the application accepts it as leader (never takes the lock), is assigned
//!   every lease and processes every record;
//! * multilangd as a 3.x follower identity: a Java 3.1.3 leader sees its WorkerMetricStats as
//!   an active worker and moves leases to it by graceful hand-off; the follower discovers them
//!   through the owner index (only after Java completed each transfer) and renews them with
//!   the 3.x conditions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use multilangd::lease::dynamodb::DynamoLeaseStore;
use multilangd::lease::kcl3::coordinator::{CoordinatorStateStore, DynamoCoordinatorStore};
use multilangd::lease::kcl3::follower::discover;
use multilangd::lease::kcl3::leader::{LeaderSettings, LeaseAssigner};
use multilangd::lease::kcl3::lease_table::{Kcl3LeaseTable, Renewal};
use multilangd::lease::kcl3::lock::{LeaderLock, Leadership};
use multilangd::lease::kcl3::worker_metrics::{DynamoWorkerMetricsStore, WorkerMetricsStore};
use multilangd::lease::kcl3::{ClientVersion, MigrationRecord, WorkerMetricStats};
use multilangd::lease::{HashKeyRange, Lease, LeaseStore};
use multilangd::sequence::{ExtendedSequenceNumber, Position};
use support::daemon::{self, Daemon, Kind, Props};
use support::emulators;
use support::sample_apps::{read_ledger, Processor};

const STREAM: &str = "trips";

fn epoch_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

struct Stores {
    leases: Arc<DynamoLeaseStore>,
    coordinator: Arc<DynamoCoordinatorStore>,
    metrics: Arc<DynamoWorkerMetricsStore>,
}

fn stores(ddb: &aws_sdk_dynamodb::Client, app: &str) -> Stores {
    Stores {
        leases: Arc::new(DynamoLeaseStore::new(ddb.clone(), app.to_owned(), format!("{app}-CoordinatorState"))),
        coordinator: Arc::new(DynamoCoordinatorStore::new(ddb.clone(), format!("{app}-CoordinatorState"))),
        metrics: Arc::new(DynamoWorkerMetricsStore::new(ddb.clone(), format!("{app}-WorkerMetricStats"))),
    }
}

fn java_props(dir: &std::path::Path, app: &str, worker: &str, kinesis: &str, moto: &str) -> std::path::PathBuf {
    let ledger = dir.join(format!("{worker}.ledger"));
    Props::local(app, STREAM, &Processor::PythonV3.executable_name(&ledger, None, &[]), kinesis, moto)
        .for_java3()
        .unset("clientVersionConfig") // Java's default: a new application in 3.x mode
        .set("workerId", worker)
        .set("leaseAssignmentIntervalMillis", 5000)
        .set("shutdownGraceMillis", 10000)
        .write(&dir.join(format!("{worker}.properties")))
}

/// multilangd leads a new 3.x application; Java 3.1.3 joins as a follower, is assigned every
/// lease and processes every record; it never takes the lock from a live multilangd leader.
#[test]
fn java_3_1_3_follows_a_multilangd_leader() {
    const RECORDS: usize = 200;
    let dir = tempfile::Builder::new().prefix("java3-peer-").tempdir().unwrap();
    let kinesis = emulators::start_kinesis_local();
    let moto = emulators::start_moto();
    let rt = support::runtime();
    let (kc, ddb) = rt.block_on(daemon::clients(&kinesis.endpoint, &moto.endpoint));
    let sent = dir.path().join("sent.jsonl");
    daemon::produce(&kinesis.endpoint, STREAM, 4, RECORDS, &sent);
    let app = "rustleads";
    let s = stores(&ddb, app);

    // What a multilangd worker starting a new 3.x application writes before anyone else.
    let mut lock = LeaderLock::new("rust-leader", 20_000);
    rt.block_on(async {
        s.coordinator.ensure_table().await.unwrap();
        let record = MigrationRecord::initial(ClientVersion::V3x, "rust-leader", epoch_s() * 1000);
        assert!(s.coordinator.create_migration_if_absent(&record).await.unwrap());
        assert_eq!(lock.poll(&*s.coordinator, tokio::time::Instant::now()).await.unwrap(), Leadership::Leader);
        s.leases.ensure_table().await.unwrap();
        s.leases.ensure_owner_index().await.unwrap();
        s.metrics.ensure_table().await.unwrap();
        let shards = kc.list_shards().stream_name(STREAM).send().await.unwrap();
        for shard in shards.shards() {
            let mut lease = Lease::new(shard.shard_id(), ExtendedSequenceNumber::new(Position::TrimHorizon));
            let range = shard.hash_key_range().unwrap();
            lease.hash_key_range = Some(HashKeyRange {
                starting: range.starting_hash_key().to_owned(),
                ending: range.ending_hash_key().to_owned(),
            });
            assert!(s.leases.create_lease_if_absent(&lease).await.unwrap());
        }
    });

    let props = java_props(dir.path(), app, "java-1", &kinesis.endpoint, &moto.endpoint);
    let mut java = Daemon::start(Kind::Java3, &props, &dir.path().join("java-1.log"));
    let settings = LeaderSettings {
        failover_time: Duration::from_secs(10),
        assignment_interval: Duration::from_secs(2),
        graceful_handoff: true,
        handoff_timeout: Duration::from_secs(30),
        max_leases_for_worker: usize::MAX,
        metrics_expiry: Duration::from_secs(60),
        stale_metrics_cleanup: Duration::from_secs(86_400),
    };
    let mut assigner = LeaseAssigner::new(s.leases.clone(), s.leases.clone(), s.metrics.clone(), settings);
    let ledger = dir.path().join("java-1.ledger");
    let started = Instant::now();
    let mut first_assigned = None;
    // The leader loop: heartbeat the lock and assign every 2 s until Java processed everything.
    while read_ledger(&ledger).len() < RECORDS {
        assert!(
            started.elapsed() < Duration::from_secs(170),
            "Java did not process every record under the multilangd leader; log:\n{}",
            daemon::tail(&java.log_text(), 60)
        );
        rt.block_on(async {
            assert_eq!(
                lock.poll(&*s.coordinator, tokio::time::Instant::now()).await.unwrap(),
                Leadership::Leader,
                "the multilangd leader kept the lock"
            );
            let report = assigner.round(tokio::time::Instant::now(), epoch_s()).await.unwrap();
            if !report.assigned.is_empty() && first_assigned.is_none() {
                first_assigned = Some(started.elapsed());
                assert!(report.assigned.iter().all(|(_, to)| to == "java-1"), "{report:?}");
            }
        });
        std::thread::sleep(Duration::from_secs(2));
    }
    let all_processed = started.elapsed();
    let owners = rt.block_on(daemon::leases(&ddb, app));
    assert!(owners.values().all(|(o, _)| o.as_deref() == Some("java-1")), "{owners:?}");
    let leader = rt.block_on(s.coordinator.lock()).unwrap().unwrap();
    assert_eq!(leader.owner, "rust-leader", "Java 3.1.3 accepted the multilangd lock item");
    support::ledger::assert_all_delivered(&read_ledger(&sent), &read_ledger(&ledger));
    eprintln!(
        "multilangd leader, Java 3.1.3 follower: leases assigned {:?} and all {RECORDS} records processed {all_processed:?} after Java started",
        first_assigned.unwrap()
    );
    java.kill9();
}

/// A Java 3.1.3 leader balances leases onto a multilangd follower identity by graceful hand-off;
/// the follower discovers them through the owner index and keeps them by 3.x renewals.
#[test]
fn a_java_3_1_3_leader_hands_leases_to_a_multilangd_follower() {
    let dir = tempfile::Builder::new().prefix("java3-peer-").tempdir().unwrap();
    let kinesis = emulators::start_kinesis_local();
    let moto = emulators::start_moto();
    let rt = support::runtime();
    let (_, ddb) = rt.block_on(daemon::clients(&kinesis.endpoint, &moto.endpoint));
    daemon::produce(&kinesis.endpoint, STREAM, 4, 40, &dir.path().join("sent.jsonl"));
    let app = "javaleads";
    let s = stores(&ddb, app);
    let props = java_props(dir.path(), app, "java-1", &kinesis.endpoint, &moto.endpoint);
    let mut java = Daemon::start(Kind::Java3, &props, &dir.path().join("java-1.log"));
    let context = || daemon::tail(&java.log_text(), 60);
    daemon::wait_for(
        "Java 3.1.3 to lead and own every lease",
        Duration::from_secs(150),
        || {
            rt.block_on(async {
                let leases = daemon::leases(&ddb, app).await;
                let lock = s.coordinator.lock().await.ok().flatten();
                leases.len() == 4
                    && leases.values().all(|(o, _)| o.as_deref() == Some("java-1"))
                    && lock.is_some_and(|l| l.owner == "java-1")
            })
        },
        context,
    );

    // The follower: publish metrics, discover, renew (every 2 s).
    let me = "rust-1";
    let mut held: BTreeMap<String, Lease> = BTreeMap::new();
    let mut handoffs_seen = Vec::new();
    let joined = Instant::now();
    let mut given_share = None;
    while joined.elapsed() < Duration::from_secs(120) {
        rt.block_on(async {
            s.metrics.publish(&WorkerMetricStats::default_metric(me, epoch_s())).await.unwrap();
            for lease in held.values_mut() {
                match s.leases.renew_lease_3x(lease, me, Some(0.0)).await.unwrap() {
                    Renewal::Renewed => lease.counter += 1,
                    other => panic!("renewal of {} by the follower: {other:?}", lease.key),
                }
            }
            // Leases in a hand-off to us are visible in the index but not accepted yet.
            for (key, (owner, _)) in daemon::leases(&ddb, app).await {
                let lease = s.leases.get_lease(&key).await.unwrap().unwrap();
                if owner.as_deref() == Some(me) && lease.checkpoint_owner.is_some() && !handoffs_seen.contains(&key) {
                    handoffs_seen.push(key);
                }
            }
            let keys = held.keys().cloned().collect();
            for lease in discover(&*s.leases, &*s.leases, me, &keys).await.unwrap() {
                assert_eq!(lease.checkpoint_owner, None);
                held.insert(lease.key.clone(), lease);
            }
        });
        if held.len() >= 2 && given_share.is_none() {
            // From here on the share must stay ours for 20 s (every renewal above asserts it).
            given_share = Some(joined.elapsed());
        }
        if given_share.is_some_and(|t| joined.elapsed() > t + Duration::from_secs(20)) {
            break;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    let given_share = given_share.unwrap_or_else(|| {
        panic!("the Java leader never gave the follower its share (held {:?}); log:\n{}", held.keys(), context())
    });
    // Java 3.1.3 balances by throughput (variance-based), not by count: the follower reports
    // little throughput for its leases, so it may get more than half.
    assert!(held.len() >= 2 && held.len() < 4, "at least a fair share, kept for 20 s: {:?}", held.keys());
    let owners = rt.block_on(daemon::leases(&ddb, app));
    for key in held.keys() {
        assert_eq!(owners[key].0.as_deref(), Some(me));
    }
    eprintln!(
        "Java 3.1.3 leader: follower given {} leases {given_share:?} after it published metrics; hand-offs seen in progress: {handoffs_seen:?}",
        held.len()
    );
    java.kill9();
}
