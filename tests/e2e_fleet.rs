//! End-to-end: fleets of real multilangd processes (and the reference Java daemon) sharing
//! one lease table on the emulators, with the ledger record processor. Every test checks
//! the processors' ledgers against the producers' ledgers: no record may be lost.
//!
//! # Timing
//! Everything scales with `failoverTimeMillis` (F), set small here so that the tests are
//! fast. The taker runs every `I = 2 × (F + 25 ms)` (first round at start), renewals every
//! `F/3 − 25 ms`. Expiry is observed, not computed from stored times: a lease becomes
//! takeable for a peer when the peer's scans have seen its counter unchanged for longer than
//! F. With Java's regular rounds alone, the scan after a kill -9 sees the final counter and
//! the next one, I later, takes the lease: up to `2 × I`. multilangd's taker also notices
//! that a lease's counter moved much less than its owner's renewal cadence implies since the
//! previous scan and runs an extra round right after that lease expires; a take that loses
//! its race to another survivor moves on to the next available lease in the same round. The
//! take-over bound is therefore about `F + I`, plus the new record processor's start-up.
//! Leases released on a graceful stop are unowned and taken at the peers' next round,
//! within I.
//!
//! Figures measured by these tests are printed (`cargo test --test e2e_fleet -- --nocapture`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use support::daemon::{self, Daemon, Kind, Props};
use support::emulators::{self, Emulator};
use support::sample_apps::{self, read_ledger, Processor};

const STREAM: &str = "trips";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn epoch_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

/// One line of a processor's `--events` file.
#[derive(Debug, Clone)]
struct Event {
    event: String,
    shard: String,
    pid: u32,
    /// Wall clock, epoch seconds (ms resolution).
    time: f64,
    /// For `checkpoint`: where it was called (`processRecords`, `shutdownRequested`, ...).
    during: Option<String>,
    /// For `checkpoint`: the error code, `None` on success.
    error: Option<String>,
    /// For `process_records`: how many records the batch had.
    records: u64,
}

fn read_events(path: &Path) -> Vec<Event> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("bad event {line}: {e}"));
            Event {
                event: v["event"].as_str().unwrap().to_owned(),
                shard: v["shardId"].as_str().unwrap_or_default().to_owned(),
                pid: u32::try_from(v["pid"].as_u64().unwrap()).unwrap(),
                time: v["time"].as_f64().unwrap(),
                during: v["during"].as_str().map(str::to_owned),
                error: v["error"].as_str().map(str::to_owned),
                records: v["records"].as_u64().unwrap_or(0),
            }
        })
        .collect()
}

/// A producer running in the background (killed on drop).
struct Producer {
    child: Child,
}

impl Producer {
    fn start(kinesis: &str, count: usize, rate: u32, seed: u32, ledger: &Path) -> Self {
        let child = Command::new(support::python())
            .arg(sample_apps::producer_script())
            .args(["--endpoint", kinesis, "--stream", STREAM, "--count", &count.to_string()])
            .args(["--rate", &rate.to_string(), "--batch-size", "25", "--seed", &seed.to_string()])
            .args(["--progress-interval", "60", "--ledger"])
            .arg(ledger)
            .env("AWS_ACCESS_KEY_ID", "x")
            .env("AWS_SECRET_ACCESS_KEY", "x")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the producer");
        Self { child }
    }

    fn wait(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "producer did not finish within {within:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Emulators, the stream, the lease table client and the file layout of one fleet.
struct Fleet {
    app: String,
    failover_ms: u64,
    rt: tokio::runtime::Runtime,
    ddb: aws_sdk_dynamodb::Client,
    sent: Vec<PathBuf>,
    /// Per-worker `(key, value)` property overrides.
    extra: Vec<(String, String)>,
    kinesis: Emulator,
    dynamo: Emulator,
    /// Last: removed after the emulators are gone.
    dir: tempfile::TempDir,
}

impl Fleet {
    /// Starts the emulators and creates the stream with `shards` shards, writing
    /// `initial_records` records into it.
    fn new(java: bool, app: &str, shards: u32, initial_records: usize, failover_ms: u64) -> Self {
        // MULTILANGD_KEEP_TEST_DIRS=1 keeps the logs, ledgers and event files for a post-mortem.
        let keep = std::env::var_os("MULTILANGD_KEEP_TEST_DIRS").is_some();
        let dir = tempfile::Builder::new().prefix("fleet-").disable_cleanup(keep).tempdir().unwrap();
        if keep {
            println!("test files kept in {}", dir.path().display());
        }
        let kinesis = if java { emulators::start_kinesis_local() } else { emulators::start_kinesalite() };
        let dynamo = emulators::start_dynalite();
        let rt = runtime();
        let (_, ddb) = rt.block_on(daemon::clients(&kinesis.endpoint, &dynamo.endpoint));
        let first = dir.path().join("sent-0.jsonl");
        daemon::produce(&kinesis.endpoint, STREAM, shards, initial_records, &first);
        Self { dir, app: app.to_owned(), failover_ms, rt, ddb, sent: vec![first], extra: Vec::new(), kinesis, dynamo }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The taker interval I = 2 × (F + 25 ms).
    fn interval(&self) -> Duration {
        Duration::from_millis(2 * (self.failover_ms + 25))
    }

    fn failover(&self) -> Duration {
        Duration::from_millis(self.failover_ms)
    }

    fn ledger(&self) -> PathBuf {
        self.path("seen.jsonl")
    }

    fn events(&self, worker: &str) -> PathBuf {
        self.path(&format!("events-{worker}.jsonl"))
    }

    fn props(&self, worker: &str) -> PathBuf {
        let executable = Processor::PythonV3.executable_name(&self.ledger(), Some(&self.events(worker)), &[]);
        let mut props = Props::local(&self.app, STREAM, &executable, &self.kinesis.endpoint, &self.dynamo.endpoint)
            .set("workerId", worker)
            .set("failoverTimeMillis", self.failover_ms)
            .set("maxRecords", 100);
        for (k, v) in &self.extra {
            props = props.set(k, v);
        }
        props.write(&self.path(&format!("{worker}.properties")))
    }

    fn start(&self, kind: Kind, worker: &str) -> Daemon {
        Daemon::start(kind, &self.props(worker), &self.path(&format!("{worker}.log")))
    }

    fn producer(&mut self, count: usize, rate: u32) -> Producer {
        let seed = u32::try_from(self.sent.len() + 1).unwrap();
        let ledger = self.path(&format!("sent-{seed}.jsonl"));
        self.sent.push(ledger.clone());
        Producer::start(&self.kinesis.endpoint, count, rate, seed, &ledger)
    }

    /// shard → owner.
    fn owners(&self) -> BTreeMap<String, Option<String>> {
        self.rt.block_on(daemon::leases(&self.ddb, &self.app)).into_iter().map(|(k, (owner, _))| (k, owner)).collect()
    }

    /// owner → number of leases (unowned leases under "").
    fn counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for owner in self.owners().into_values() {
            *counts.entry(owner.unwrap_or_default()).or_insert(0) += 1;
        }
        counts
    }

    /// Sorted lease counts of `workers` if every lease is owned by one of them, else `None`.
    fn balance(&self, workers: &[&str]) -> Option<Vec<usize>> {
        let counts = self.counts();
        if counts.keys().any(|owner| !workers.contains(&owner.as_str())) {
            return None;
        }
        let mut balance: Vec<usize> = workers.iter().map(|w| counts.get(*w).copied().unwrap_or(0)).collect();
        balance.sort_unstable();
        Some(balance)
    }

    /// Polls until `check` holds; returns how long that took. Panics after `within`.
    fn until(&self, what: &str, within: Duration, mut check: impl FnMut(&Self) -> bool) -> Duration {
        let started = Instant::now();
        while !check(self) {
            assert!(
                started.elapsed() < within,
                "timed out after {within:?} waiting for {what}; leases: {:?}",
                self.owners()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        started.elapsed()
    }

    fn sent_keys(&self) -> BTreeSet<(String, String)> {
        self.sent.iter().flat_map(|p| read_ledger(p)).map(|e| (e.shard_id, e.sequence_number)).collect()
    }

    fn seen_keys(&self) -> BTreeSet<(String, String)> {
        read_ledger(&self.ledger()).into_iter().map(|e| (e.shard_id, e.sequence_number)).collect()
    }

    /// Waits until every record any producer sent is in the processors' ledger.
    fn assert_nothing_lost(&self, within: Duration) {
        let sent = self.sent_keys();
        assert!(!sent.is_empty());
        let deadline = Instant::now() + within;
        loop {
            let seen = self.seen_keys();
            let missing: Vec<_> = sent.difference(&seen).collect();
            if missing.is_empty() {
                println!("all {} records delivered ({} ledger lines)", sent.len(), read_ledger(&self.ledger()).len());
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {} records never delivered, e.g. {:?}; leases: {:?}",
                missing.len(),
                sent.len(),
                &missing[..missing.len().min(3)],
                self.owners()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Processes still running from this fleet (daemons and record processors: their
    /// command lines name the fleet's directory).
    fn leftover_processes(&self) -> Vec<(i32, String)> {
        processes_mentioning(&self.dir.path().display().to_string())
    }

    /// Every process this fleet started is gone (after the daemons were dropped).
    fn assert_no_leftovers(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let left = self.leftover_processes();
            if left.is_empty() {
                return;
            }
            assert!(Instant::now() < deadline, "processes left running: {left:#?}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Fleet {
    /// Also when a test fails: record processors orphaned by a killed daemon exit on EOF;
    /// whatever is still running after a grace period is killed before the directory goes.
    fn drop(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.leftover_processes().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        for (pid, _) in self.leftover_processes() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// Running processes (other than this one) whose command line contains `marker`.
fn processes_mentioning(marker: &str) -> Vec<(i32, String)> {
    let me = std::process::id();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        if pid == me {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(marker) {
            found.push((i32::try_from(pid).unwrap(), cmdline));
        }
    }
    found
}

/// The tests of this file run one at a time: they measure timings, and a fleet of daemons
/// and record processors fully uses a small machine.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn stop(d: &mut Daemon) {
    let status = d.terminate(Duration::from_secs(60));
    assert!(status.success(), "{:?} exits 0 on SIGTERM: {status:?}\n{}", d.kind, daemon::tail(&d.log_text(), 30));
}

/// 8 shards: three workers started together converge to 3/3/2 within three taker rounds
/// and stay there; a fourth worker then steals one lease per round (the stolen-from
/// processors get `leaseLost`) until the fleet is at 2/2/2/2.
#[test]
fn three_workers_converge_to_3_3_2_and_a_fourth_steals_its_share() {
    let _serial = serial();
    let fleet = Fleet::new(false, "fleet-balance", 8, 800, 1_000);
    let interval = fleet.interval();
    let mut workers: Vec<Daemon> = ["w1", "w2", "w3"].iter().map(|w| fleet.start(Kind::Multilangd, w)).collect();
    // Rounds are counted from the start of the last worker; its first round runs as soon as
    // it has read the table (well under a second here).
    let took = fleet.until("3/3/2", interval * 3 + Duration::from_secs(2), |f| {
        f.balance(&["w1", "w2", "w3"]) == Some(vec![2, 3, 3])
    });
    println!(
        "3 workers / 8 shards: 3/3/2 after {took:?} = {:.2} taker intervals of {interval:?}",
        took.as_secs_f64() / interval.as_secs_f64()
    );
    // Balanced means no more stealing: unchanged for two more rounds.
    let settled = fleet.owners();
    std::thread::sleep(interval * 2);
    assert_eq!(fleet.owners(), settled, "a balanced fleet keeps its leases");

    workers.push(fleet.start(Kind::Multilangd, "w4"));
    let took = fleet.until("2/2/2/2", interval * 3 + Duration::from_secs(2), |f| {
        f.balance(&["w1", "w2", "w3", "w4"]) == Some(vec![2, 2, 2, 2])
    });
    println!(
        "4th worker: 2/2/2/2 after {took:?} = {:.2} taker intervals (one steal per round)",
        took.as_secs_f64() / interval.as_secs_f64()
    );
    // The two stolen leases were lost by their previous owners' processors (each notices at
    // its next renewal, within F/3, then tells its processor).
    let lost = |f: &Fleet| -> usize {
        ["w1", "w2", "w3"]
            .iter()
            .map(|w| read_events(&f.events(w)).iter().filter(|e| e.event == "lease_lost").count())
            .sum()
    };
    fleet.until("the stolen-from processors to get leaseLost", fleet.failover() * 3, |f| lost(f) >= 2);
    fleet.assert_nothing_lost(Duration::from_secs(60));
    for d in &mut workers {
        stop(d);
    }
    drop(workers);
    fleet.assert_no_leftovers();
}

/// kill -9 of one of three workers while records flow: its shards are owned by the others
/// and processed again within `failoverTimeMillis` plus one taker interval (see the module
/// doc) plus the start of a processor, and every record is delivered.
#[test]
fn kill_9_of_a_worker_hands_its_shards_to_the_others_without_losing_records() {
    let _serial = serial();
    let mut fleet = Fleet::new(false, "fleet-kill", 8, 400, 1_000);
    fleet.extra.push(("callProcessRecordsEvenForEmptyRecordList".into(), "true".into()));
    let interval = fleet.interval();
    let ids = ["k1", "k2", "k3"];
    let mut workers: Vec<Daemon> = ids.iter().map(|w| fleet.start(Kind::Multilangd, w)).collect();
    fleet.until("3/3/2", interval * 4, |f| f.balance(&ids) == Some(vec![2, 3, 3]));
    let mut producer = fleet.producer(3_000, 200);
    std::thread::sleep(Duration::from_secs(3));

    let owners = fleet.owners();
    let victim = "k1";
    let victim_shards: Vec<String> =
        owners.iter().filter(|(_, o)| o.as_deref() == Some(victim)).map(|(k, _)| k.clone()).collect();
    assert!(!victim_shards.is_empty(), "{owners:?}");
    workers[0].kill9();
    let killed_at = epoch_now();
    let killed = Instant::now();

    let bound = fleet.failover() + interval + Duration::from_secs(4);
    let owned = fleet
        .until("the survivors own every lease", bound + Duration::from_secs(5), |f| f.balance(&ids[1..]).is_some());
    // Processing again: the first processRecords of a survivor's processor for each shard.
    let deadline = killed + bound + Duration::from_secs(10);
    let mut resumed: BTreeMap<String, f64> = BTreeMap::new();
    while resumed.len() < victim_shards.len() {
        assert!(Instant::now() < deadline, "shards not processed again: {victim_shards:?}, resumed {resumed:?}");
        std::thread::sleep(Duration::from_millis(100));
        for survivor in &ids[1..] {
            for e in read_events(&fleet.events(survivor)) {
                if e.event == "process_records" && e.time > killed_at && victim_shards.contains(&e.shard) {
                    resumed.entry(e.shard.clone()).or_insert(e.time - killed_at);
                }
            }
        }
    }
    let worst = resumed.values().copied().fold(0.0_f64, f64::max);
    println!(
        "kill -9 with F = {} ms, I = {interval:?}: leases owned by survivors after {owned:?}; processing again \
         after {resumed:?} (worst {worst:.2} s; F + I = {:.2} s, bound F + I + 4 s = {:.2} s)",
        fleet.failover_ms,
        (fleet.failover() + interval).as_secs_f64(),
        bound.as_secs_f64()
    );
    for (i, survivor) in ids[1..].iter().enumerate() {
        for line in workers[i + 1].log_text().lines().filter(|l| l.contains("took leases")) {
            println!("{survivor}: {line}");
        }
    }
    assert!(worst > fleet.failover().as_secs_f64(), "taken only after failover of observed inactivity");
    assert!(worst <= bound.as_secs_f64(), "takeover took {worst:.2} s > {bound:?}");

    assert!(producer.wait(Duration::from_secs(120)).success(), "producer failed");
    fleet.assert_nothing_lost(Duration::from_secs(90));
    for d in &mut workers[1..] {
        stop(d);
    }
    drop(workers);
    fleet.assert_no_leftovers();
}

/// Per shard, the longest pause between consecutive `processRecords` calls (any worker's
/// processors) among calls made in `[from, to]`: (shard, gap in s, time of the call that
/// ended the pause).
fn processing_gaps(events: &[Event], from: f64, to: f64) -> BTreeMap<String, (f64, f64)> {
    let mut times: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for e in events.iter().filter(|e| e.event == "process_records") {
        times.entry(e.shard.as_str()).or_default().push(e.time);
    }
    let mut gaps = BTreeMap::new();
    for (shard, mut t) in times {
        t.sort_by(f64::total_cmp);
        let worst = t
            .windows(2)
            .filter(|w| w[1] >= from && w[1] <= to)
            .map(|w| (w[1] - w[0], w[1]))
            .fold((0.0, 0.0), |a, b| if b.0 > a.0 { b } else { a });
        gaps.insert(shard.to_owned(), worst);
    }
    gaps
}

/// Rolling restart of a 3-worker fleet with SIGTERM, one worker after the other, each
/// replaced by a new process at once (while records flow): every daemon exits 0; every
/// processor it was running gets `shutdownRequested` and checkpoints successfully in it
/// (the lease is still held then); no shard pauses for 2 s or more; nothing is lost. Then
/// one worker stops for good and the other two take its released leases at their next
/// taker round.
///
/// The gap depends on `failoverTimeMillis` (F = 600 ms here): a stopping worker releases its
/// leases once its processors have finished; a released lease is taken at the next taker
/// round of a peer (every I = 2 × (F + 25 ms) = 1.25 s) or by the replacement's first round
/// (which takes every unowned lease it finds), whichever comes first; then a new processor
/// starts. Gap ≈ shutdown (≈ 0.3 s) + at most I + processor start-up (≈ 0.3 s). With the
/// default F = 10 s a lease released without a replacement waits up to 20 s (and with the
/// Java daemon, which does not release leases on shutdown, F plus up to 2 × I). Smaller F
/// makes renewals (every F/3 − 25 ms, each bounded by that period) fragile on a loaded host.
#[test]
fn rolling_restart_with_sigterm_hands_every_shard_over_in_under_two_seconds() {
    let _serial = serial();
    let mut fleet = Fleet::new(false, "fleet-rolling", 8, 400, 600);
    fleet.extra.push(("callProcessRecordsEvenForEmptyRecordList".into(), "true".into()));
    let interval = fleet.interval();
    let mut live: Vec<String> = vec!["r1".into(), "r2".into(), "r3".into()];
    let mut daemons: BTreeMap<String, Daemon> =
        live.iter().map(|w| (w.clone(), fleet.start(Kind::Multilangd, w))).collect();
    let balanced = |f: &Fleet, live: &[String]| {
        f.balance(&live.iter().map(String::as_str).collect::<Vec<_>>()) == Some(vec![2, 3, 3])
    };
    fleet.until("3/3/2", interval * 8, |f| balanced(f, &live));
    let mut producer = fleet.producer(4_000, 150);
    std::thread::sleep(Duration::from_secs(2));

    let window_start = epoch_now();
    // (worker, SIGTERM time, shards it held then)
    let mut stopped: Vec<(String, f64, Vec<String>)> = Vec::new();
    for i in 0..3 {
        let old = live.remove(0);
        let mut d = daemons.remove(&old).unwrap();
        let held: Vec<String> =
            fleet.owners().into_iter().filter(|(_, o)| o.as_deref() == Some(old.as_str())).map(|(k, _)| k).collect();
        let sigterm = epoch_now();
        let started = Instant::now();
        stop(&mut d);
        let stopped_in = started.elapsed();
        // Released before the exit: none of its leases still names it.
        let still_owned: Vec<String> =
            fleet.owners().into_iter().filter(|(_, o)| o.as_deref() == Some(old.as_str())).map(|(k, _)| k).collect();
        assert!(still_owned.is_empty(), "{old} exited without releasing {still_owned:?}");
        let new = format!("{old}-restarted-{i}");
        daemons.insert(new.clone(), fleet.start(Kind::Multilangd, &new));
        live.push(new.clone());
        let mut takers = BTreeMap::new();
        let taken = fleet.until("the released leases to be taken", interval * 4, |f| {
            let owners = f.owners();
            takers = held.iter().filter_map(|k| owners[k].clone().map(|o| (k.clone(), o))).collect();
            takers.len() == held.len() && takers.values().all(|o| o != &old)
        });
        println!(
            "{old}: SIGTERM → exit 0 in {stopped_in:?}; its {} leases taken {taken:?} after the exit by {:?}",
            held.len(),
            takers.values().map(|o| if *o == new { "the replacement" } else { "a survivor" }).collect::<Vec<_>>()
        );
        stopped.push((old, sigterm, held));
        let took = fleet.until("the fleet to rebalance", interval * 10, |f| balanced(f, &live));
        println!("  rebalanced to 3/3/2 {took:?} later");
        // Let stolen-from workers notice their loss before the next SIGTERM.
        std::thread::sleep(interval);
    }
    let window_end = epoch_now();

    // Every processor of a stopped worker that was running when the SIGTERM came got
    // shutdownRequested and could still checkpoint in it.
    for (worker, sigterm, held) in &stopped {
        let events = read_events(&fleet.events(worker));
        let mut asked = 0;
        for shard in held {
            // The worker's last processor for this shard, if it had been initialized.
            let Some(pid) = events
                .iter()
                .filter(|e| &e.shard == shard && e.event == "initialize" && e.time < *sigterm)
                .max_by(|a, b| a.time.total_cmp(&b.time))
                .map(|e| e.pid)
            else {
                continue;
            };
            let of_pid: Vec<&Event> = events.iter().filter(|e| e.pid == pid).collect();
            assert!(
                of_pid.iter().any(|e| e.event == "shutdown_requested" && e.time >= *sigterm),
                "{worker}: processor {pid} of {shard} never got shutdownRequested: {of_pid:#?}"
            );
            assert!(
                of_pid.iter().any(|e| e.event == "checkpoint"
                    && e.during.as_deref() == Some("shutdownRequested")
                    && e.error.is_none()),
                "{worker}: processor {pid} of {shard} could not checkpoint at shutdownRequested: {of_pid:#?}"
            );
            asked += 1;
        }
        assert!(asked >= 1, "{worker} was running processors when stopped (held {held:?})");
    }

    let all: Vec<Event> =
        daemons.keys().chain(stopped.iter().map(|(w, _, _)| w)).flat_map(|w| read_events(&fleet.events(w))).collect();
    let gaps = processing_gaps(&all, window_start, window_end);
    assert_eq!(gaps.len(), 8, "every shard processed: {gaps:?}");
    let (worst_shard, (worst, _)) =
        gaps.iter().max_by(|a, b| a.1 .0.total_cmp(&b.1 .0)).map(|(k, v)| (k.clone(), *v)).unwrap();
    println!(
        "rolling restart, F = {} ms, I = {interval:?}: longest processing gap per shard (s): {:?}",
        fleet.failover_ms,
        gaps.iter()
            .map(|(k, (g, _))| (k.trim_start_matches("shardId-00000000").to_owned(), (g * 1000.0).round() / 1000.0))
            .collect::<Vec<_>>()
    );
    // Typically 0.2–1.5 s (printed above); the bound is generous for a loaded 2-core machine.
    assert!(worst < 6.0, "{worst_shard} paused for {worst:.2} s during the rolling restart: {gaps:?}");

    // Scale-in: one worker stops for good. Its released leases need no expiry: the other
    // two take them at their next taker round (within I; 2 × I if both pick the same
    // lease in the same moment and one take loses).
    let leaving = live.remove(0);
    let held: Vec<String> =
        fleet.owners().into_iter().filter(|(_, o)| o.as_deref() == Some(leaving.as_str())).map(|(k, _)| k).collect();
    let mut d = daemons.remove(&leaving).unwrap();
    stop(&mut d);
    let taken = fleet.until("the survivors to take the released leases", interval * 4, |f| {
        let owners = f.owners();
        held.iter().all(|k| owners[k].as_ref().is_some_and(|o| live.contains(o)))
    });
    println!("scale-in: {leaving}'s {} released leases taken by the survivors {taken:?} after its exit", held.len());
    assert!(taken <= interval * 2 + Duration::from_secs(3), "released leases taken after {taken:?}");
    drop(d);

    assert!(producer.wait(Duration::from_secs(120)).success(), "producer failed");
    fleet.assert_nothing_lost(Duration::from_secs(90));
    for d in daemons.values_mut() {
        stop(d);
    }
    drop(daemons);
    fleet.assert_no_leftovers();
}

/// `processRecords` calls with at least one record made to `worker`'s processors.
fn records_processed_by(fleet: &Fleet, worker: &str) -> usize {
    read_events(&fleet.events(worker)).iter().filter(|e| e.event == "process_records" && e.records > 0).count()
}

/// Mixed fleet: the reference Java MultiLangDaemon 2.5.8 and multilangd on one application
/// (same `failoverTimeMillis`, F = 2 s, so both takers run every 4.05 s) share the leases;
/// kill -9 of the Java daemon hands everything to multilangd, and after a new Java daemon
/// has stolen its share, kill -9 of multilangd hands everything to Java. No record is lost.
/// kinesis-local (the Java SDK needs HTTP/2 cleartext), at most ~2,000 records.
#[test]
fn java_and_multilangd_share_leases_and_take_over_from_each_other_after_kill_9() {
    let _serial = serial();
    if sample_apps::java_jars_dir().is_none() {
        panic!("the Java daemon is not installed in the test bed (scripts/install-testbed.sh)");
    }
    let mut fleet = Fleet::new(true, "fleet-mixed", 4, 200, 2_000);
    let interval = fleet.interval();
    let both_own_some = |f: &Fleet, a: &str, b: &str| {
        let counts = f.counts();
        counts.get(a).copied().unwrap_or(0) >= 1
            && counts.get(b).copied().unwrap_or(0) >= 1
            && f.balance(&[a, b]).is_some()
    };
    let mut rust = fleet.start(Kind::Multilangd, "rust-1");
    let mut java = fleet.start(Kind::Java, "java-1");
    let took = fleet.until("Java and multilangd to share the leases", Duration::from_secs(120), |f| {
        both_own_some(f, "rust-1", "java-1")
    });
    println!("shared after {took:?}: {:?}", fleet.counts());
    let mut producer = fleet.producer(1_200, 40);
    fleet.until("Java's processors to receive records", Duration::from_secs(60), |f| {
        records_processed_by(f, "java-1") > 0
    });

    // kill -9 Java: multilangd takes everything.
    java.kill9();
    let bound = interval * 3 + Duration::from_secs(3);
    let took = fleet.until("multilangd to own every lease", bound, |f| f.balance(&["rust-1"]) == Some(vec![4]));
    println!("Java killed: multilangd owns all 4 leases after {took:?} (I = {interval:?})");
    assert!(took > fleet.failover(), "taken only after failover of observed inactivity ({took:?})");

    // A new Java worker steals its share back, then multilangd is killed: Java takes over.
    let mut java = fleet.start(Kind::Java, "java-2");
    let took = fleet.until("the new Java worker to steal its share", Duration::from_secs(120), |f| {
        both_own_some(f, "rust-1", "java-2")
    });
    println!("java-2 stole its share after {took:?}: {:?}", fleet.counts());
    fleet.until("the new Java worker's processors to receive records", Duration::from_secs(60), |f| {
        records_processed_by(f, "java-2") > 0
    });
    rust.kill9();
    // Java 2.5.8's taker, and its stale-steal and expiry rules, are those of the module
    // doc; give it the same bound.
    let took = fleet.until("Java to own every lease", bound, |f| f.balance(&["java-2"]) == Some(vec![4]));
    println!("multilangd killed: Java owns all 4 leases after {took:?}");
    assert!(took > fleet.failover(), "taken only after failover of observed inactivity ({took:?})");

    assert!(producer.wait(Duration::from_secs(120)).success(), "producer failed");
    fleet.assert_nothing_lost(Duration::from_secs(120));
    for worker in ["rust-1", "java-1", "java-2"] {
        assert!(records_processed_by(&fleet, worker) > 0, "{worker}'s processors received records");
    }
    let status = java.terminate(Duration::from_secs(60));
    println!("Java daemon stopped with {status:?}");
    drop(java);
    drop(rust);
    fleet.assert_no_leftovers();
}
