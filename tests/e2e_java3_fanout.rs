//! Enhanced fan-out in a mixed fleet (issue 10): multilangd and the real Java KCL 3.1.3
//! MultiLangDaemon, both in `retrievalMode = FANOUT`, share ONE lease table (KCL 3.x protocol,
//! on moto) and ONE registered stream consumer (named after the application) on kinesis-local.
//!
//! The scenario is the one a user of the current Java line meets when moving a fleet to
//! multilangd one host at a time: the Java 3.x daemon's defaults are fan-out and the 3.x lease
//! protocol, so multilangd runs both too (`clientVersionConfig = CLIENT_VERSION_CONFIG_3X`; it
//! starts first here and leads, so the lease moves happen on a schedule the test controls).
//!
//! 1. multilangd starts the application, registers the consumer and subscribes to all 4 shards.
//! 2. Java 3.1.3 joins: the multilangd leader gives it its share by graceful hand-off, and Java's
//!    subscriptions take over from multilangd's on the same consumer (kinesis-local answers
//!    ResourceInUse while the old subscription's slot is still held; Java retries).
//! 3. Records flow through both daemons' subscriptions.
//! 4. The Java worker freezes (SIGSTOP) with its subscriptions open: the multilangd leader
//!    reassigns the expired leases to itself, and its subscriptions on the shared consumer are
//!    refused with ResourceInUse and retried with backoff until Java is killed with kill -9;
//!    then they take over from Java's checkpoints.
//! 5. The ledgers prove that no record was lost, that each processor saw its shard in sequence
//!    order (so every partition key in order), and after a graceful stop the checkpoints are at
//!    every shard's last record.
//!
//! Java 3.1.3 reaches kinesis-local's plain port over HTTP/2 cleartext (prior knowledge, its
//! Netty client's default for an `http://` endpoint); no TLS trust store is needed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::daemon::{self, Daemon, Kind, Props};
use support::emulators;
use support::ledger::{assert_all_delivered, keys, last_per_shard, seq_gt};
use support::sample_apps::{read_ledger, LedgerEntry, Processor};

const STREAM: &str = "trips";
const APP: &str = "efo-mixed";
const FAILOVER_MS: u64 = 5_000;
const RECORDS: usize = 200;

fn props(dir: &Path, worker: &str, kind: Kind, kinesis: &str, moto: &str) -> PathBuf {
    let ledger = dir.join(format!("{worker}.ledger"));
    let events = dir.join(format!("{worker}.events"));
    let base = Props::local(
        APP,
        STREAM,
        &Processor::PythonV3.executable_name(&ledger, Some(&events), &["--checkpoint-every", "5"]),
        kinesis,
        moto,
    )
    .set("retrievalMode", "FANOUT")
    .set("workerId", worker)
    .set("failoverTimeMillis", FAILOVER_MS)
    .set("leaseAssignmentIntervalMillis", 4_000)
    .set("shutdownGraceMillis", 10_000);
    let props = match kind {
        Kind::Java3 => base.for_java3(),
        _ => {
            base.set("clientVersionConfig", "CLIENT_VERSION_CONFIG_3X").set("workerMetricsReporterFreqInMillis", 5_000)
        }
    };
    props.write(&dir.join(format!("{worker}.properties")))
}

/// Leases per owner; a lease in a hand-off counts as `pending` until the old owner completes it.
fn owners(rt: &tokio::runtime::Runtime, ddb: &aws_sdk_dynamodb::Client) -> BTreeMap<String, usize> {
    let mut count = BTreeMap::new();
    for item in rt.block_on(daemon::items(ddb, APP)) {
        let s = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
        let owner = if s("checkpointOwner").is_some() {
            "pending".to_owned()
        } else {
            s("leaseOwner").unwrap_or_else(|| "-".into())
        };
        *count.entry(owner).or_default() += 1;
    }
    count
}

fn ledgers(dir: &Path, workers: &[&str]) -> Vec<LedgerEntry> {
    workers.iter().flat_map(|w| read_ledger(&dir.join(format!("{w}.ledger")))).collect()
}

/// Each processor (one pid: one shard's lease term on one worker) saw its records in strictly
/// increasing sequence order: per shard, hence per partition key, nothing out of order and no
/// duplicate within a lease term.
fn assert_in_order(entries: &[LedgerEntry]) {
    let mut last: BTreeMap<(u32, &str), (&str, i64)> = BTreeMap::new();
    for e in entries {
        let sub = e.sub_sequence_number.unwrap_or(0);
        let slot = (e.pid.unwrap_or(0), e.shard_id.as_str());
        if let Some((seq, prev_sub)) = last.get(&slot) {
            let later = seq_gt(&e.sequence_number, seq) || (e.sequence_number == *seq && sub > *prev_sub);
            assert!(later, "{} pid {:?}: {} after {seq}", e.shard_id, e.pid, e.sequence_number);
        }
        last.insert(slot, (e.sequence_number.as_str(), sub));
    }
}

/// Per partition key, the delivery order across every worker: each record of a key is either
/// after the previous one of that key, or a redelivery of one already seen (after a lease move
/// from a worker that processed past its last checkpoint). Never a gap filled later.
fn assert_keys_in_order(sent: &[LedgerEntry], entries: &[LedgerEntry]) {
    let mut per_key: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for e in sent {
        per_key.entry(e.partition_key.as_str()).or_default().push(e.sequence_number.as_str());
    }
    for seqs in per_key.values_mut() {
        seqs.sort_by(|a, b| (a.len(), a).cmp(&(b.len(), b)));
    }
    let mut next_index: BTreeMap<&str, usize> = BTreeMap::new();
    let mut seen: BTreeSet<(&str, &str)> = BTreeSet::new();
    for e in entries {
        let key = e.partition_key.as_str();
        let Some(order) = per_key.get(key) else { continue };
        if !seen.insert((key, e.sequence_number.as_str())) {
            continue;
        }
        let index = next_index.entry(key).or_insert(0);
        assert_eq!(
            order.get(*index).copied(),
            Some(e.sequence_number.as_str()),
            "partition key {key}: first delivery of {} out of order",
            e.sequence_number
        );
        *index += 1;
    }
}

/// multilangd (3.x leader, fan-out) and Java 3.1.3 (fan-out) share one lease table and one
/// consumer; leases move both ways (graceful hand-off to Java; a frozen, then killed Java
/// worker back to multilangd, through ResourceInUse) with no loss, in order, checkpoints at the last records.
#[test]
fn java_3_1_3_and_multilangd_share_one_consumer_and_hand_over() {
    let dir = tempfile::Builder::new().prefix("java3-efo-").tempdir().unwrap();
    let d = dir.path();
    let kinesis = emulators::start_kinesis_local();
    let moto = emulators::start_moto();
    let rt = support::runtime();
    let (kc, ddb) = rt.block_on(daemon::clients(&kinesis.endpoint, &moto.endpoint));
    // Every record goes into one ledger file, in the order the producer sent it (the records
    // of the three phases of this test).
    let sent = d.join("sent.jsonl");
    daemon::produce(&kinesis.endpoint, STREAM, 4, RECORDS, &sent);

    let mut rust = Daemon::start(
        Kind::Multilangd,
        &props(d, "rust-1", Kind::Multilangd, &kinesis.endpoint, &moto.endpoint),
        &d.join("rust-1.log"),
    );
    daemon::wait_for(
        "multilangd to deliver the first records over fan-out",
        Duration::from_secs(60),
        || keys(&ledgers(d, &["rust-1"])).len() == RECORDS,
        || daemon::tail(&rust.log_text(), 40),
    );
    assert!(rust.log_text().contains("enhanced fan-out consumer is ACTIVE"), "{}", daemon::tail(&rust.log_text(), 40));

    let mut java = Daemon::start(
        Kind::Java3,
        &props(d, "java-1", Kind::Java3, &kinesis.endpoint, &moto.endpoint),
        &d.join("java-1.log"),
    );
    let java_started = Instant::now();
    let context = |rust: &Daemon, java: &Daemon| {
        format!(
            "{:?}\n--- multilangd\n{}\n--- java\n{}",
            owners(&rt, &ddb),
            daemon::tail(&rust.log_text(), 30),
            daemon::tail(&java.log_text(), 30)
        )
    };
    daemon::wait_for(
        "the multilangd leader to give Java 3.1.3 its share",
        Duration::from_secs(120),
        || owners(&rt, &ddb).get("java-1").copied().unwrap_or(0) == 2,
        || context(&rust, &java),
    );
    let java_share_after = java_started.elapsed();

    // Records produced now reach both daemons' subscriptions.
    daemon::produce_seeded(&kinesis.endpoint, STREAM, 4, RECORDS, 2, &sent);
    daemon::wait_for(
        "every record delivered through both daemons",
        Duration::from_secs(90),
        || keys(&read_ledger(&sent)).is_subset(&keys(&ledgers(d, &["rust-1", "java-1"]))),
        || context(&rust, &java),
    );
    let java_seen = read_ledger(&d.join("java-1.ledger"));
    assert!(!java_seen.is_empty(), "Java 3.1.3 processed records");
    let java_shards: BTreeSet<String> = java_seen.iter().map(|e| e.shard_id.clone()).collect();
    let java_log = java.log_text();
    // Java's fan-out path ran: its consumer registration (package retrieval.fanout) looked up
    // the consumer multilangd had registered.
    assert!(
        java_log.contains("s.a.k.r.f.FanOutConsumerRegistration")
            && java_log.contains(&format!("StreamConsumer {APP}")),
        "{}",
        daemon::tail(&java_log, 60)
    );

    let rust_before_kill = read_ledger(&d.join("rust-1.ledger")).len();
    // The Java worker freezes (SIGSTOP: a long GC pause, a frozen VM): it stops renewing, and
    // the multilangd leader reassigns its expired leases to itself. Java's subscriptions are
    // still open (its sockets are alive), so multilangd's new subscriptions on the shared
    // consumer are refused with ResourceInUse and retried with backoff. On real Kinesis a
    // second SubscribeToShard at least 5 s after the first takes the slot over by itself;
    // kinesis-local frees it only when a write to the old connection fails, so the freeze ends
    // with kill -9 (the socket closes) and multilangd's next retry takes over.
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(java.pid()), nix::sys::signal::Signal::SIGSTOP);
    let frozen = Instant::now();
    daemon::wait_for(
        "multilangd to take every lease from the frozen Java worker",
        Duration::from_secs(60),
        || owners(&rt, &ddb).get("rust-1").copied() == Some(4),
        || context(&rust, &java),
    );
    let reassigned = frozen.elapsed();
    daemon::wait_for(
        "multilangd's subscriptions to be refused while Java's are open (ResourceInUse, retried)",
        Duration::from_secs(30),
        || rust.log_text().contains("another subscription to this shard is active"),
        || context(&rust, &java),
    );
    java.kill9();
    let killed = Instant::now();
    daemon::produce_seeded(&kinesis.endpoint, STREAM, 4, RECORDS, 3, &sent);
    let all_sent = read_ledger(&sent);
    let delivered_on_java_shards = || {
        read_ledger(&d.join("rust-1.ledger")).iter().skip(rust_before_kill).any(|e| java_shards.contains(&e.shard_id))
    };
    daemon::wait_for(
        "multilangd's subscriptions to take over Java's shards after the kill",
        Duration::from_secs(60),
        delivered_on_java_shards,
        || context(&rust, &java),
    );
    let takeover = killed.elapsed();
    daemon::wait_for(
        "every record delivered after the take-over",
        Duration::from_secs(90),
        || keys(&all_sent).is_subset(&keys(&ledgers(d, &["rust-1", "java-1"]))),
        || context(&rust, &java),
    );
    // The shards Java had were consumed again by multilangd after the kill.
    let rust_after: BTreeSet<String> =
        read_ledger(&d.join("rust-1.ledger")).iter().skip(rust_before_kill).map(|e| e.shard_id.clone()).collect();
    assert!(java_shards.is_subset(&rust_after), "{java_shards:?} ⊄ {rust_after:?}");

    let status = rust.terminate(Duration::from_secs(30));
    let rust_log = rust.log_text();
    assert!(status.success(), "{}", daemon::tail(&rust_log, 40));
    let seen = ledgers(d, &["rust-1", "java-1"]);
    assert_all_delivered(&all_sent, &seen);
    assert_in_order(&seen);
    assert_keys_in_order(&all_sent, &ledgers(d, &["rust-1"]));
    let checkpoints: BTreeMap<String, String> =
        rt.block_on(daemon::leases(&ddb, APP)).into_iter().map(|(k, (_, cp))| (k, cp)).collect();
    assert_eq!(checkpoints, last_per_shard(&all_sent), "checkpoints at every shard's last record");
    // One consumer served both daemons; it is still registered.
    let arn = format!("arn:aws:kinesis:us-east-1:000000000000:stream/{STREAM}");
    let consumers = rt.block_on(kc.list_stream_consumers().stream_arn(&arn).send()).unwrap();
    let names: Vec<&str> = consumers.consumers().iter().map(|c| c.consumer_name()).collect();
    assert_eq!(names, vec![APP]);
    assert!(!rust_log.contains(" ERROR "), "{}", daemon::tail(&rust_log, 40));
    let in_use = rust_log.matches("another subscription to this shard is active").count();
    eprintln!(
        "fan-out, mixed fleet: Java 3.1.3 given its share {java_share_after:?} after it started; the frozen Java \
         worker's leases reassigned to multilangd {reassigned:?} after SIGSTOP; ResourceInUse retried {in_use} \
         time(s); Java's shards delivering again {takeover:?} after kill -9"
    );
}
