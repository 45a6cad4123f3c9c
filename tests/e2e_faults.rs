//! End-to-end fault scenarios (issue 13): the real binary on the emulators with real
//! amazon_kclpy ledger processors while records keep flowing; the ledgers judge every run.
//!
//! The small sizes run in the test command; `scripts/reliability.sh` runs the full sizes
//! (and the same scenarios with the Java 2.5.8 daemon) through the `#[ignore]`d variants
//! and the environment variables below, and collects the figures into RELIABILITY.md.
//! - `MULTILANGD_FAULT_OUTAGE_SECS`: DynamoDB outage length (default 10 s in the test command).
//! - `MULTILANGD_FAULT_KINESIS_OUTAGE_SECS`: Kinesis outage length (default 8 s).
//! - `MULTILANGD_FAULT_THROTTLE_SECS`: how long throttling lasts (default 10 s).
//! - `MULTILANGD_FAULT_DAEMON`: `multilangd` (default) or `java` for the ignored variants.
//! - `MULTILANGD_RELIABILITY_OUT`: a file the figures are appended to as JSON lines.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use support::daemon::{self, wait_for, Daemon, Kind, Producer, Props};
use support::emulators::{start_dynalite, start_kinesis_local};
use support::ledger::{duplicates, keys, pids_per_shard, Figures};
use support::proxy::{FaultProxy, Mode, Throttle};
use support::sample_apps::{read_ledger, Processor};

const SHARDS: u32 = 4;
/// Records per second while the fault lasts.
const RATE: f64 = 40.0;

fn env_secs(name: &str, default: u64) -> Duration {
    Duration::from_secs(std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default))
}

fn daemon_kind() -> Kind {
    match std::env::var("MULTILANGD_FAULT_DAEMON").as_deref() {
        Ok("java") => Kind::Java,
        _ => Kind::Multilangd,
    }
}

fn daemon_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Multilangd => "multilangd",
        Kind::Java => "java-2.5.8",
        Kind::Java3 => "java-3.1.3",
    }
}

fn signal(pid: u32, signal: Signal) {
    kill(Pid::from_raw(i32::try_from(pid).expect("pid")), signal).expect("signal the emulator");
}

/// Polls the ledger until it grows past `len`; returns when it did (or `None` after `within`).
fn first_growth(ledger: &Path, len: usize, within: Duration) -> Option<Instant> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if read_ledger(ledger).len() > len {
            return Some(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// DynamoDB frozen (SIGSTOP to dynalite) for `outage`, longer than `failover`, on one
/// worker with 4 shards while records flow. Measures what was delivered while every lease
/// was unsafe (from `freeze + failover + 1.5 s` to the thaw: a peer could have taken every
/// lease by then), the duplicates, the loss and the time from the thaw to the next delivery.
fn dynamodb_freeze(kind: Kind, outage: Duration, failover: Duration) -> (Figures, String, usize) {
    let dir = tempfile::tempdir().unwrap();
    let kinesis = start_kinesis_local();
    let dynamodb = start_dynalite();
    let stream = "fault-ddb";
    let sent_ledger = dir.path().join("sent.jsonl");
    let count = (RATE * (outage.as_secs_f64() + 15.0)) as usize;
    let mut producer = Producer::start(&kinesis.endpoint, stream, SHARDS, count, RATE, &sent_ledger);
    let seen_ledger = dir.path().join("seen.jsonl");
    let executable = Processor::PythonV3.executable_name(&seen_ledger, None, &[]);
    let props = Props::local("fault-ddb-app", stream, &executable, &kinesis.endpoint, &dynamodb.endpoint)
        .set("failoverTimeMillis", failover.as_millis())
        .write(&dir.path().join("app.properties"));
    let mut d = Daemon::start(kind, &props, &dir.path().join("daemon.log"));
    wait_for(
        "every shard delivering",
        Duration::from_secs(120),
        || pids_per_shard(&read_ledger(&seen_ledger)).len() == SHARDS as usize,
        || daemon::tail(&d.log_text(), 40),
    );
    std::thread::sleep(Duration::from_secs(3));

    signal(dynamodb.pid(), Signal::SIGSTOP);
    let frozen = Instant::now();
    std::thread::sleep(failover + Duration::from_millis(1500));
    let unsafe_from = read_ledger(&seen_ledger).len();
    std::thread::sleep(outage.saturating_sub(frozen.elapsed()));
    let unsafe_to = read_ledger(&seen_ledger).len();
    signal(dynamodb.pid(), Signal::SIGCONT);
    let thawed = Instant::now();
    let recovered = first_growth(&seen_ledger, unsafe_to, Duration::from_secs(60));

    producer.finish(Duration::from_secs(180));
    let sent = read_ledger(&sent_ledger);
    wait_for(
        "every record delivered",
        Duration::from_secs(90),
        || keys(&sent).is_subset(&keys(&read_ledger(&seen_ledger))),
        || daemon::tail(&d.log_text(), 40),
    );
    let log = d.log_text();
    let status = d.terminate(Duration::from_secs(30));
    assert!(status.success() || kind != Kind::Multilangd, "{status:?}\n{}", daemon::tail(&log, 40));
    let seen = read_ledger(&seen_ledger);
    let lost = keys(&sent).difference(&keys(&seen)).count();
    let restarts = pids_per_shard(&seen).values().map(|p| p.len() - 1).sum::<usize>();
    let figures = Figures {
        scenario: "dynamodb-freeze".into(),
        daemon: daemon_name(kind).into(),
        fault: format!(
            "dynalite SIGSTOP for {} s (failoverTimeMillis {}), 1 worker, {SHARDS} shards, {RATE} records/s",
            outage.as_secs(),
            failover.as_millis()
        ),
        records: sent.len(),
        lost,
        duplicates: duplicates(&seen),
        unsafe_deliveries: Some(unsafe_to - unsafe_from),
        recovery_ms: recovered.map(|at| at.duration_since(thawed).as_millis()),
        notes: format!("{restarts} record processor restarts"),
    };
    figures.publish();
    (figures, log, restarts)
}

fn assert_paused_not_dropped(figures: &Figures, log: &str, restarts: usize) {
    assert_eq!(figures.lost, 0, "{figures:?}");
    assert_eq!(figures.unsafe_deliveries, Some(0), "records delivered under unsafe leases: {figures:?}");
    assert_eq!(figures.duplicates, 0, "{figures:?}");
    assert_eq!(restarts, 0, "the record processors stay up: {figures:?}");
    assert!(log.contains("pausing delivery"), "{}", daemon::tail(log, 60));
    assert!(!log.contains("lost lease"), "{}", daemon::tail(log, 60));
    let recovery = figures.recovery_ms.expect("delivery resumed");
    assert!(recovery < 15_000, "delivery resumed {recovery} ms after the thaw");
}

/// A 10 s DynamoDB freeze (failoverTimeMillis 3000): delivery pauses once the leases may
/// have expired elsewhere and resumes with the same processors; nothing lost or repeated.
#[test]
fn a_dynamodb_freeze_pauses_delivery_without_duplicates() {
    let outage = env_secs("MULTILANGD_FAULT_OUTAGE_SECS", 10);
    let (figures, log, restarts) = dynamodb_freeze(Kind::Multilangd, outage, Duration::from_millis(3000));
    assert_paused_not_dropped(&figures, &log, restarts);
}

/// The full-size variant for scripts/reliability.sh: a 30 s freeze (failoverTimeMillis
/// 10000), either daemon (`MULTILANGD_FAULT_DAEMON`); asserts only for multilangd.
#[test]
#[ignore = "full size; run by scripts/reliability.sh"]
fn full_dynamodb_freeze() {
    let kind = daemon_kind();
    let outage = env_secs("MULTILANGD_FAULT_OUTAGE_SECS", 30);
    let (figures, log, restarts) = dynamodb_freeze(kind, outage, Duration::from_millis(10_000));
    if kind == Kind::Multilangd {
        assert_paused_not_dropped(&figures, &log, restarts);
    }
}

/// A daemon (multilangd) reading through fault proxies in front of both emulators while the
/// producer writes straight to Kinesis.
struct ProxiedRun {
    dir: tempfile::TempDir,
    _kinesis: support::emulators::Emulator,
    _dynamodb: support::emulators::Emulator,
    kinesis_proxy: FaultProxy,
    dynamodb_proxy: FaultProxy,
    producer: Producer,
    sent_ledger: std::path::PathBuf,
    seen_ledger: std::path::PathBuf,
    daemon: Daemon,
}

impl ProxiedRun {
    /// `before` runs on (kinesis proxy, dynamodb proxy) before the daemon starts.
    fn start(app: &str, produce_for: Duration, before: impl FnOnce(&FaultProxy, &FaultProxy)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let kinesis = start_kinesis_local();
        let dynamodb = start_dynalite();
        let kinesis_proxy = FaultProxy::start(&kinesis.endpoint);
        let dynamodb_proxy = FaultProxy::start(&dynamodb.endpoint);
        let sent_ledger = dir.path().join("sent.jsonl");
        let count = (RATE * produce_for.as_secs_f64()) as usize;
        let producer = Producer::start(&kinesis.endpoint, app, SHARDS, count, RATE, &sent_ledger);
        let seen_ledger = dir.path().join("seen.jsonl");
        before(&kinesis_proxy, &dynamodb_proxy);
        let executable = Processor::PythonV3.executable_name(&seen_ledger, None, &[]);
        let props = Props::local(app, app, &executable, &kinesis_proxy.endpoint, &dynamodb_proxy.endpoint)
            .set("failoverTimeMillis", 3000)
            .write(&dir.path().join("app.properties"));
        let daemon = Daemon::start(Kind::Multilangd, &props, &dir.path().join("daemon.log"));
        wait_for(
            "every shard delivering",
            Duration::from_secs(120),
            || pids_per_shard(&read_ledger(&seen_ledger)).len() == SHARDS as usize,
            || daemon::tail(&daemon.log_text(), 40),
        );
        Self {
            dir,
            _kinesis: kinesis,
            _dynamodb: dynamodb,
            kinesis_proxy,
            dynamodb_proxy,
            producer,
            sent_ledger,
            seen_ledger,
            daemon,
        }
    }

    fn delivered(&self) -> usize {
        read_ledger(&self.seen_ledger).len()
    }

    /// Runs `fault` on `proxy` for `length`, then passes again; returns (records delivered
    /// from `unsafe_after` into the fault to its end, time from its end to the next delivery).
    fn outage(
        &self,
        proxy: &FaultProxy,
        mode: Mode,
        length: Duration,
        unsafe_after: Duration,
    ) -> (usize, Option<u128>) {
        proxy.set_mode(mode);
        let started = Instant::now();
        std::thread::sleep(unsafe_after.min(length));
        let from = self.delivered();
        std::thread::sleep(length.saturating_sub(started.elapsed()));
        let to = self.delivered();
        proxy.set_mode(Mode::Pass);
        let ended = Instant::now();
        let recovered = first_growth(&self.seen_ledger, to, Duration::from_secs(60));
        (to - from, recovered.map(|at| at.duration_since(ended).as_millis()))
    }

    /// Waits for the producer and every record, stops the daemon; (sent, lost, duplicates,
    /// processor restarts, log).
    fn finish(mut self) -> (usize, usize, usize, usize, String) {
        self.producer.finish(Duration::from_secs(180));
        let sent = read_ledger(&self.sent_ledger);
        let seen_ledger = self.seen_ledger.clone();
        wait_for(
            "every record delivered",
            Duration::from_secs(90),
            || keys(&sent).is_subset(&keys(&read_ledger(&seen_ledger))),
            || daemon::tail(&self.daemon.log_text(), 40),
        );
        let log = self.daemon.log_text();
        let status = self.daemon.terminate(Duration::from_secs(30));
        assert!(status.success(), "{status:?}\n{}", daemon::tail(&log, 40));
        let seen = read_ledger(&self.seen_ledger);
        let lost = keys(&sent).difference(&keys(&seen)).count();
        let restarts = pids_per_shard(&seen).values().map(|p| p.len() - 1).sum::<usize>();
        let _ = &self.dir;
        (sent.len(), lost, duplicates(&seen), restarts, log)
    }
}

fn warnings(log: &str) -> usize {
    log.lines().filter(|l| l.contains(" WARN ") || l.contains(" ERROR ")).count()
}

/// Through the fault proxies, one after the other while records flow: Kinesis black-holed,
/// DynamoDB connections reset (longer than failoverTimeMillis 3000: delivery pauses), then
/// Kinesis answering HTTP 500 while DynamoDB answers slowly. Nothing is lost; no record is
/// delivered under an unsafe lease; the record processors are never restarted.
#[test]
fn outages_through_the_fault_proxy() {
    let kinesis_outage = env_secs("MULTILANGD_FAULT_KINESIS_OUTAGE_SECS", 8);
    let dynamodb_outage = env_secs("MULTILANGD_FAULT_OUTAGE_SECS", 8);
    let produce_for = kinesis_outage + dynamodb_outage + Duration::from_secs(25);
    let run = ProxiedRun::start("fault-proxy", produce_for, |_, _| {});
    std::thread::sleep(Duration::from_secs(2));
    let (_, kinesis_recovery) = run.outage(&run.kinesis_proxy, Mode::BlackHole, kinesis_outage, kinesis_outage);
    std::thread::sleep(Duration::from_secs(2));
    let unsafe_after = Duration::from_millis(3000 + 1500);
    let (unsafe_deliveries, dynamodb_recovery) =
        run.outage(&run.dynamodb_proxy, Mode::Reset, dynamodb_outage, unsafe_after);
    std::thread::sleep(Duration::from_secs(2));
    run.dynamodb_proxy.set_mode(Mode::Slow(Duration::from_millis(800)));
    let (_, status_recovery) =
        run.outage(&run.kinesis_proxy, Mode::Status(500), Duration::from_secs(5), Duration::ZERO);
    run.dynamodb_proxy.set_mode(Mode::Pass);
    let calls = format!("kinesis {:?}; dynamodb {:?}", run.kinesis_proxy.calls(), run.dynamodb_proxy.calls());
    let (records, lost, dups, restarts, log) = run.finish();
    let base = Figures { daemon: "multilangd".into(), records, lost, duplicates: dups, ..Figures::default() };
    Figures {
        scenario: "kinesis-blackhole".into(),
        fault: format!("fault proxy: Kinesis black-holed for {} s", kinesis_outage.as_secs()),
        recovery_ms: kinesis_recovery,
        notes: format!("{restarts} processor restarts in the whole run; counts are for the whole run"),
        ..base.clone()
    }
    .publish();
    Figures {
        scenario: "dynamodb-reset".into(),
        fault: format!(
            "fault proxy: DynamoDB connections reset for {} s (failoverTimeMillis 3000)",
            dynamodb_outage.as_secs()
        ),
        unsafe_deliveries: Some(unsafe_deliveries),
        recovery_ms: dynamodb_recovery,
        notes: "same run as kinesis-blackhole".into(),
        ..base.clone()
    }
    .publish();
    Figures {
        scenario: "kinesis-500-dynamodb-slow".into(),
        fault: "fault proxy: Kinesis HTTP 500 for 5 s while DynamoDB answers 800 ms late".into(),
        recovery_ms: status_recovery,
        notes: "same run as kinesis-blackhole".into(),
        ..base
    }
    .publish();
    assert_eq!(lost, 0, "{calls}");
    assert_eq!(unsafe_deliveries, 0, "records delivered under unsafe leases");
    assert_eq!(restarts, 0, "record processors restarted\n{}", daemon::tail(&log, 80));
    assert_eq!(dups, 0, "duplicates\n{}", daemon::tail(&log, 80));
    for (what, recovery) in [("kinesis", kinesis_recovery), ("dynamodb", dynamodb_recovery), ("500", status_recovery)] {
        let recovery = recovery.unwrap_or_else(|| panic!("{what}: delivery never resumed"));
        assert!(recovery < 20_000, "{what}: delivery resumed {recovery} ms after the fault");
    }
    assert!(log.contains("pausing delivery"), "{}", daemon::tail(&log, 60));
}

/// Throttling injected at high rates on GetRecords, ListShards, UpdateItem and Scan while
/// records flow: nothing lost, the call rates stay bounded (backoff), the log is not flooded.
#[test]
fn throttling_is_absorbed_with_bounded_calls_and_a_quiet_log() {
    let length = env_secs("MULTILANGD_FAULT_THROTTLE_SECS", 10);
    // Start-up too: most ListShards calls are made then.
    let run = ProxiedRun::start("fault-throttle", length + Duration::from_secs(15), |kinesis, _| {
        kinesis.throttle("ListShards", 0.8, Throttle::KinesisLimit);
    });
    let startup_list_shards = run.kinesis_proxy.calls_of("ListShards");
    let before_k = run.kinesis_proxy.calls();
    let before_d = run.dynamodb_proxy.calls();
    let log_before = warnings(&run.daemon.log_text());
    run.kinesis_proxy.throttle("GetRecords", 0.8, Throttle::KinesisThroughput);
    run.kinesis_proxy.throttle("ListShards", 0.8, Throttle::KinesisLimit);
    run.dynamodb_proxy.throttle("UpdateItem", 0.5, Throttle::DynamoDbThroughput);
    run.dynamodb_proxy.throttle("Scan", 0.8, Throttle::DynamoDbThrottling);
    std::thread::sleep(length);
    for op in ["GetRecords", "ListShards"] {
        run.kinesis_proxy.throttle(op, 0.0, Throttle::KinesisThroughput);
    }
    for op in ["UpdateItem", "Scan"] {
        run.dynamodb_proxy.throttle(op, 0.0, Throttle::DynamoDbThroughput);
    }
    let delta = |proxy: &FaultProxy, before: &std::collections::BTreeMap<String, support::proxy::Calls>, op: &str| {
        let now = proxy.calls_of(op);
        let then = before.get(op).copied().unwrap_or_default();
        (now.total - then.total, now.throttled - then.throttled)
    };
    let get_records = delta(&run.kinesis_proxy, &before_k, "GetRecords");
    let list_shards = delta(&run.kinesis_proxy, &before_k, "ListShards");
    let update_item = delta(&run.dynamodb_proxy, &before_d, "UpdateItem");
    let scan = delta(&run.dynamodb_proxy, &before_d, "Scan");
    let warned = warnings(&run.daemon.log_text()) - log_before;
    let (records, lost, dups, restarts, log) = run.finish();
    let secs = length.as_secs();
    let per_sec = |calls: u64| calls as f64 / secs as f64;
    Figures {
        scenario: "throttling".into(),
        daemon: "multilangd".into(),
        fault: format!(
            "fault proxy, {secs} s: GetRecords 80 % ProvisionedThroughputExceeded, ListShards 80 % LimitExceeded, \
             UpdateItem 50 % ProvisionedThroughputExceeded, Scan 80 % ThrottlingException"
        ),
        records,
        lost,
        duplicates: dups,
        unsafe_deliveries: None,
        recovery_ms: None,
        notes: format!(
            "calls/s during the fault (throttled): GetRecords {:.1} ({}), ListShards {:.1} ({}), UpdateItem {:.1} ({}), \
             Scan {:.1} ({}); {warned} warning lines; {restarts} processor restarts; at start-up ListShards \
             {} calls, {} throttled",
            per_sec(get_records.0),
            get_records.1,
            per_sec(list_shards.0),
            list_shards.1,
            per_sec(update_item.0),
            update_item.1,
            per_sec(scan.0),
            scan.1,
            startup_list_shards.total,
            startup_list_shards.throttled
        ),
    }
    .publish();
    assert_eq!(lost, 0);
    assert!(startup_list_shards.throttled > 0, "{startup_list_shards:?}");
    assert!(get_records.1 > 0 && update_item.1 > 0, "throttling was injected: {get_records:?} {update_item:?}");
    // Unthrottled: one GetRecords per shard every 200 ms (idleTimeBetweenReadsInMillis).
    assert!(per_sec(get_records.0) <= f64::from(SHARDS) * 10.0, "GetRecords {get_records:?} in {secs} s");
    assert!(per_sec(list_shards.0) <= 10.0, "ListShards {list_shards:?} in {secs} s");
    assert!(per_sec(scan.0) <= 5.0, "Scan {scan:?} in {secs} s");
    assert!(per_sec(update_item.0) <= f64::from(SHARDS) * 20.0, "UpdateItem {update_item:?} in {secs} s");
    assert!(warned <= 10 * secs as usize, "{warned} warning lines in {secs} s:\n{}", daemon::tail(&log, 60));
}
