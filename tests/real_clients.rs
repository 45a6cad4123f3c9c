//! Acceptance tests of the multi-language protocol engine and the per-shard child supervision
//! with REAL child processes and REAL client libraries, fed from the in-memory stream (no
//! emulators):
//!
//! 1. three clients — the unchanged upstream `sample_kclpy_app.py` of amazon_kclpy 3.2.0 (v3
//!    interface), the v2-interface Python ledger processor and the Node (aws-kcl 2.3.2) ledger
//!    processor — through two lifecycles each: initialize → processRecords ×3 (one checkpoint
//!    answered with `ThrottlingException` and retried) → shutdownRequested → shardEnded
//!    (`SHARD_END` stored); and initialize → processRecords → leaseLost, after which the child
//!    exits 0 on EOF;
//! 2. the real scheduler over four shards: one child SIGKILLed mid-batch restarts from its
//!    checkpoint while the other three keep their process and keep processing;
//! 3. a child writing 100 MB to stdout and 100 MB to stderr neither stalls the exchange nor
//!    grows the daemon's memory;
//! 4. a 10,000-record batch and a 10 MiB record reach the child intact (sha256 per record);
//! 5. 120 children (a minimal sh processor, slow to initialize) start at most
//!    `multilangd.childStartupConcurrency` at a time while every lease keeps being renewed.
//!
//! The tests share one process (its RSS is measured, its child processes are counted), so they
//! run one at a time. Each checks at the end that no child process of the test is left.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Once, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use multilangd::child::STDERR_LOG_TARGET;
use multilangd::config::{properties, Config, Executable};
use multilangd::lease::memory::InMemoryLeaseStore;
use multilangd::protocol::messages::Action;
use multilangd::protocol::{CheckpointError, CheckpointRequest, Checkpointer};
use multilangd::scheduler::Scheduler;
use multilangd::sequence::{ExtendedSequenceNumber, Position};
use multilangd::shard::checkpointer::{CheckpointFailure, CheckpointStore, ShardCheckpointer};
use multilangd::shard::process::ChildLauncher;
use multilangd::shard::processor::{ProcessorConnection, ProcessorLauncher};
use multilangd::stream::memory::InMemoryStream;
use multilangd::stream::{Record, ShardReaderFactory, StartingPosition};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use sha2::{Digest, Sha256};
use support::sample_apps::{read_ledger, LedgerEntry, Processor};
use tokio_util::sync::CancellationToken;
use tracing::field::{Field, Visit};
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

/// Longest any single action may take before the test fails.
const ACTION_TIMEOUT: Duration = Duration::from_secs(30);
/// `stop_grace` of the launchers: a child that exits on EOF is gone long before this.
const STOP_GRACE: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------
// Harness: serialisation, tracing capture, runtime, process accounting

/// What the daemon logged about one shard's child (captured from `tracing`).
#[derive(Debug, Default, Clone)]
struct ShardCapture {
    /// `(pid, exit)` of each exit the supervisor observed, e.g. "exited with code 0".
    exits: Vec<(u64, String)>,
    /// Child stderr lines logged.
    stderr_lines: u64,
    /// The first 20 of them (each cut at 8 KiB).
    stderr_first: Vec<String>,
    /// Lines of the child's stdout skipped as noise.
    stdout_noise: u64,
}

fn captured() -> &'static Mutex<HashMap<String, ShardCapture>> {
    static CAPTURED: OnceLock<Mutex<HashMap<String, ShardCapture>>> = OnceLock::new();
    CAPTURED.get_or_init(Default::default)
}

fn capture(shard: &str) -> ShardCapture {
    captured().lock().unwrap().get(shard).cloned().unwrap_or_default()
}

/// A `String` that stops accepting text after 8 KiB (formatting a 64 KiB stderr line a
/// hundred thousand times must stay cheap).
#[derive(Default)]
struct Bounded(String);

impl std::fmt::Write for Bounded {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        const LIMIT: usize = 8 * 1024;
        let room = LIMIT.saturating_sub(self.0.len());
        if s.len() <= room {
            self.0.push_str(s);
            return Ok(());
        }
        let mut end = room;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        self.0.push_str(&s[..end]);
        Err(std::fmt::Error)
    }
}

#[derive(Default)]
struct Fields {
    message: Bounded,
    shard_id: Option<String>,
    pid: Option<u64>,
    exit: Option<String>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => {
                let _ = write!(self.message, "{value:?}");
            }
            "shard_id" => self.shard_id = Some(format!("{value:?}")),
            "exit" => self.exit = Some(format!("{value:?}")),
            _ => {}
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "shard_id" {
            self.shard_id = Some(value.to_owned());
        } else {
            self.record_debug(field, &value);
        }
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "pid" {
            self.pid = Some(value);
        }
    }
}

const SESSION_TARGET: &str = "multilangd::protocol::session";
const CHILD_TARGET: &str = "multilangd::child";

struct Capture;

impl<S: tracing::Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let target = event.metadata().target();
        let mut f = Fields::default();
        event.record(&mut f);
        let Some(shard) = f.shard_id else { return };
        let mut all = captured().lock().unwrap();
        let entry = all.entry(shard).or_default();
        if target == STDERR_LOG_TARGET {
            entry.stderr_lines += 1;
            if entry.stderr_first.len() < 20 {
                entry.stderr_first.push(f.message.0);
            }
        } else if target == SESSION_TARGET && f.message.0.starts_with("skipping unexpected line") {
            entry.stdout_noise += 1;
        } else if target == CHILD_TARGET {
            if let (Some(pid), Some(exit)) = (f.pid, f.exit) {
                entry.exits.push((pid, exit));
            }
        }
    }
}

fn init_tracing() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let capture = Capture.with_filter(filter_fn(|meta| {
            meta.is_event()
                && *meta.level() <= tracing::Level::INFO
                && matches!(meta.target(), STDERR_LOG_TARGET | SESSION_TARGET | CHILD_TARGET)
        }));
        let fmt = std::env::var_os("RUST_LOG").map(|_| {
            tracing_subscriber::fmt::layer()
                .with_test_writer()
                .with_filter(tracing_subscriber::EnvFilter::from_default_env())
        });
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(capture).with(fmt)).unwrap();
    });
}

/// Runs the tests of this file one at a time (RSS and child processes are per process), with
/// tracing captured and the test bed checked.
fn setup() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    let guard = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    init_tracing();
    for needed in [support::python(), sample_app(), support::testbed_dir().join("emu/node_modules/aws-kcl")] {
        assert!(
            needed.exists(),
            "test bed incomplete: {} is missing (set MULTILANGD_TESTBED or run scripts/install-testbed.sh)",
            needed.display()
        );
    }
    reap_leftovers();
    // The captured log events are keyed by shard id, and every test names its shards the same
    // way: start each (serialized) test with an empty capture.
    captured().lock().unwrap_or_else(PoisonError::into_inner).clear();
    guard
}

/// A test that failed may have left child processes behind (a panic drops a running child:
/// it is killed but nobody reaps it). Kill and reap them so the next test starts clean.
fn reap_leftovers() {
    for (pid, state, command) in children_of_this_process() {
        eprintln!("reaping a child left by an earlier failed test: {pid} ({command}, state {state})");
        let pid = Pid::from_raw(i32::try_from(pid).unwrap());
        if state != 'Z' {
            let _ = kill(pid, Signal::SIGKILL);
        }
        let _ = nix::sys::wait::waitpid(pid, None);
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// Processes whose parent is this test process: `(pid, state, command)`.
fn children_of_this_process() -> Vec<(u32, char, String)> {
    let me = std::process::id();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let Some((head, rest)) = stat.rsplit_once(") ") else { continue };
        let mut fields = rest.split_whitespace();
        let state = fields.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let ppid: u32 = fields.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        if ppid == me {
            let comm = head.split_once(" (").map_or("", |(_, c)| c).to_owned();
            found.push((pid, state, comm));
        }
    }
    found
}

/// Every child process this test started is gone (and reaped).
fn assert_no_children(when: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = children_of_this_process();
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "child processes left {when}: {left:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn assert_gone(pid: u64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Path::new(&format!("/proc/{pid}")).exists() {
        assert!(Instant::now() < deadline, "process {pid} still exists");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn vm_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Samples this process's VmRSS every 2 ms on its own thread; `stop` returns the peak.
struct RssSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl RssSampler {
    fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(vm_rss_kib()));
        let thread = std::thread::spawn({
            let (stop, peak) = (Arc::clone(&stop), Arc::clone(&peak));
            move || {
                while !stop.load(Ordering::Relaxed) {
                    peak.fetch_max(vm_rss_kib(), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        });
        Self { stop, peak, thread }
    }

    fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap();
        self.peak.load(Ordering::Relaxed).max(vm_rss_kib())
    }
}

// ---------------------------------------------------------------------------------------
// Records

/// xorshift64*: deterministic payloads without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(len);
        out
    }
}

/// Puts `count` records of 0..=`max_len` random bytes (record 1 is empty; every 7th
/// partition key is non-ASCII).
fn put_records(stream: &InMemoryStream, shard: &str, count: usize, max_len: u64, rng: &mut Rng) -> Vec<Record> {
    (0..count)
        .map(|i| {
            let len = if i == 1 { 0 } else { usize::try_from(rng.below(max_len + 1)).unwrap() };
            let key = if i % 7 == 3 { format!("ключ-{i}-✓") } else { format!("pk-{i}") };
            stream.put(shard, &key, rng.bytes(len))
        })
        .collect()
}

/// Reads `shard` from TRIM_HORIZON until `records` records came out; returns the non-empty
/// batches.
async fn read_batches(stream: &InMemoryStream, shard: &str, records: usize) -> Vec<Vec<Record>> {
    let mut reader = stream.open(shard, StartingPosition::TrimHorizon).await.unwrap();
    let mut batches = Vec::new();
    let mut seen = 0;
    while seen < records {
        let batch = reader.next_batch().await.unwrap();
        if !batch.records.is_empty() {
            seen += batch.records.len();
            batches.push(batch.records);
        }
    }
    assert_eq!(seen, records);
    batches
}

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data).iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn esn(record: &Record) -> ExtendedSequenceNumber {
    record.extended_sequence_number()
}

/// The processor ledger holds exactly `sent`, in order, for `shard`, written by `processor`
/// with one pid; returns that pid.
fn assert_ledger_matches(ledger: &[LedgerEntry], sent: &[Record], shard: &str, processor: &str) -> u32 {
    assert_eq!(ledger.len(), sent.len(), "{processor}: ledger length");
    for (i, (seen, sent)) in ledger.iter().zip(sent).enumerate() {
        assert_eq!(seen.shard_id, shard, "{processor}: record {i}");
        assert_eq!(seen.sequence_number, sent.sequence_number.as_str(), "{processor}: record {i}");
        assert_eq!(seen.sub_sequence_number, Some(0), "{processor}: record {i}");
        assert_eq!(seen.partition_key, sent.partition_key, "{processor}: record {i}");
        assert_eq!(seen.sha256, sha256_hex(&sent.data), "{processor}: record {i} ({} bytes)", sent.data.len());
        assert_eq!(seen.processor.as_deref(), Some(processor), "{processor}: record {i}");
    }
    let pid = ledger[0].pid.expect("ledger lines carry the pid");
    assert!(ledger.iter().all(|e| e.pid == Some(pid)), "{processor}: one process wrote the ledger");
    pid
}

/// The lifecycle events (not checkpoints) in a ledger processor's events file.
fn lifecycle_events(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter_map(|v| v["event"].as_str().map(str::to_owned))
        .filter(|e| e != "checkpoint")
        .collect()
}

// ---------------------------------------------------------------------------------------
// Checkpoints: a recording store that can throttle, and a checkpointer that audits requests

#[derive(Default)]
struct RecordingStore {
    /// Every write attempt: (shard, checkpoint, stored?).
    attempts: Mutex<Vec<(String, ExtendedSequenceNumber, bool)>>,
    throttle_next: AtomicUsize,
}

impl RecordingStore {
    fn throttle(&self, writes: usize) {
        self.throttle_next.store(writes, Ordering::SeqCst);
    }

    fn attempts(&self, shard: &str) -> Vec<(ExtendedSequenceNumber, bool)> {
        let attempts = self.attempts.lock().unwrap();
        attempts.iter().filter(|(s, _, _)| s == shard).map(|(_, c, ok)| (c.clone(), *ok)).collect()
    }
}

#[async_trait]
impl CheckpointStore for RecordingStore {
    async fn write_checkpoint(
        &self,
        shard_id: &str,
        checkpoint: &ExtendedSequenceNumber,
    ) -> Result<(), CheckpointFailure> {
        let throttled =
            self.throttle_next.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
        self.attempts.lock().unwrap().push((shard_id.to_owned(), checkpoint.clone(), !throttled));
        if throttled {
            Err(CheckpointFailure::Throttled { key: "test store: throttled".into() })
        } else {
            Ok(())
        }
    }
}

/// One checkpoint request the child made, and the answer it got.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    during: &'static str,
    sequence_number: Option<String>,
    error: Option<&'static str>,
}

fn seen(during: &'static str, sequence_number: Option<&Record>, error: Option<&'static str>) -> Seen {
    Seen { during, sequence_number: sequence_number.map(|r| r.sequence_number.as_str().to_owned()), error }
}

/// The real [`ShardCheckpointer`], with every request and its answer recorded.
struct Audited {
    inner: ShardCheckpointer,
    during: &'static str,
    seen: Vec<Seen>,
}

#[async_trait]
impl Checkpointer for Audited {
    async fn checkpoint(&mut self, request: &CheckpointRequest) -> Result<(), CheckpointError> {
        let result = self.inner.checkpoint(request).await;
        assert!(request.sub_sequence_number.is_none_or(|s| s == 0), "plain records have sub-sequence 0: {request:?}");
        self.seen.push(Seen {
            during: self.during,
            sequence_number: request.sequence_number.clone(),
            error: result.as_ref().err().map(CheckpointError::wire_name),
        });
        result
    }
}

// ---------------------------------------------------------------------------------------
// Driving one child through the protocol with the production launcher

struct Driven {
    shard: String,
    conn: Box<dyn ProcessorConnection>,
    cp: Audited,
}

impl Driven {
    /// Launches `exe` for `shard` with [`ChildLauncher`] and performs `initialize`
    /// (TRIM_HORIZON).
    async fn start(exe: &Executable, shard: &str, store: Arc<RecordingStore>) -> Self {
        let launcher = ChildLauncher::new(exe.clone(), None, STOP_GRACE);
        let conn = launcher.launch(shard).await.unwrap_or_else(|e| panic!("{shard}: launch failed: {e}"));
        let start = ExtendedSequenceNumber::new(Position::TrimHorizon);
        let cp = Audited { inner: ShardCheckpointer::new(shard, store, start.clone()), during: "", seen: Vec::new() };
        let mut driven = Self { shard: shard.to_owned(), conn, cp };
        driven.perform(Action::Initialize { checkpoint: Some(&start) }, false).await;
        driven
    }

    async fn perform(&mut self, action: Action<'_>, with_checkpointer: bool) {
        let name = action.kind().wire_name();
        self.cp.during = name;
        let checkpointer: Option<&mut (dyn Checkpointer + '_)> =
            if with_checkpointer { Some(&mut self.cp) } else { None };
        let shard = &self.shard;
        tokio::time::timeout(ACTION_TIMEOUT, self.conn.perform(action, checkpointer))
            .await
            .unwrap_or_else(|_| panic!("{shard}: {name} not acknowledged within {ACTION_TIMEOUT:?}"))
            .unwrap_or_else(|e| panic!("{shard}: {name} failed: {e}"));
    }

    /// `processRecords` for `batch` (the checkpointer learns its last record first).
    async fn process(&mut self, batch: &[Record]) {
        self.cp.inner.delivered(esn(batch.last().unwrap()));
        self.perform(Action::ProcessRecords { records: batch, millis_behind_latest: Some(0) }, true).await;
    }

    /// Closes the child's stdin and waits for it; returns the checkpoint requests seen and how
    /// long the stop took.
    async fn shutdown(self) -> (Vec<Seen>, Duration) {
        let started = Instant::now();
        tokio::time::timeout(STOP_GRACE * 4, self.conn.shutdown()).await.expect("shutdown finishes");
        (self.cp.seen, started.elapsed())
    }
}

/// The supervisor saw `shard`'s only child exit with status 0 (not by a signal); returns its
/// pid after checking it is gone.
fn assert_exited_zero(shard: &str, stop_took: Duration) -> u64 {
    let exits = capture(shard).exits;
    assert_eq!(exits.len(), 1, "{shard}: one child, one exit: {exits:?}");
    let (pid, exit) = &exits[0];
    assert_eq!(exit, "exited with code 0", "{shard}");
    assert!(stop_took < STOP_GRACE, "{shard}: the child exited on EOF (no SIGTERM needed); took {stop_took:?}");
    assert_gone(*pid);
    *pid
}

fn executable(argv: Vec<String>) -> Executable {
    let raw = argv.join(" ");
    let mut argv = argv.into_iter();
    Executable { program: argv.next().unwrap(), args: argv.collect(), raw }
}

fn sample_app() -> std::path::PathBuf {
    support::testbed_dir().join("venv/bin/sample_kclpy_app.py")
}

/// The three clients of the lifecycle tests.
#[derive(Clone, Copy, Debug)]
enum Client {
    /// `sample_kclpy_app.py` of amazon_kclpy 3.2.0, unchanged (v3 interface).
    UpstreamSample,
    /// A ledger processor (`sample-apps/`).
    Ledger(Processor),
}

impl Client {
    const ALL: [Client; 3] =
        [Client::UpstreamSample, Client::Ledger(Processor::PythonV2), Client::Ledger(Processor::Node)];

    fn name(self) -> &'static str {
        match self {
            Client::UpstreamSample => "upstream-sample",
            Client::Ledger(p) => p.name(),
        }
    }

    fn executable(self, ledger: &Path, events: &Path, extra: &[&str]) -> Executable {
        match self {
            Client::UpstreamSample => executable(vec![sample_app().display().to_string()]),
            Client::Ledger(p) => executable(p.argv(ledger, Some(events), extra)),
        }
    }
}

/// The sample logs each record to stderr ("... Sequence Number: S, Subsequence Number: 0,
/// Data Size: N") without line breaks; checks every record of `sent` is there with its size.
fn assert_sample_logged(shard: &str, sent: &[Record], also: &[&str]) {
    let stderr = capture(shard).stderr_first.concat();
    for record in sent {
        let needle = format!(
            "Sequence Number: {}, Subsequence Number: 0, Data Size: {}",
            record.sequence_number.as_str(),
            record.data.len()
        );
        assert!(stderr.contains(&needle), "{shard}: the sample did not log {needle:?}; stderr: {stderr}");
    }
    for text in also {
        assert!(stderr.contains(text), "{shard}: the sample did not log {text:?}; stderr: {stderr}");
    }
}

// ---------------------------------------------------------------------------------------
// 1. Three real clients, two lifecycles each

async fn lifecycle_a(client: Client, dir: &Path, seed: u64) {
    let name = client.name();
    let shard = format!("shardId-lifecycle-a-{name}");
    let stream = InMemoryStream::with_shards(1).with_max_records(5);
    let source = stream.shards()[0].shard_id.clone();
    let sent = put_records(&stream, &source, 15, 700, &mut Rng(seed));
    let batches = read_batches(&stream, &source, 15).await;
    assert_eq!(batches.iter().map(Vec::len).collect::<Vec<_>>(), [5, 5, 5]);

    let store = Arc::new(RecordingStore::default());
    let ledger = dir.join(format!("{name}-a.jsonl"));
    let events = dir.join(format!("{name}-a-events.jsonl"));
    let exe = client.executable(&ledger, &events, &["--checkpoint-every", "4"]);
    let mut driven = Driven::start(&exe, &shard, Arc::clone(&store)).await;
    store.throttle(1);
    for batch in &batches {
        driven.process(batch).await;
    }
    driven.perform(Action::ShutdownRequested, true).await;
    driven.cp.inner.mark_shard_ended();
    driven.perform(Action::ShardEnded, true).await;
    assert!(driven.cp.inner.is_at_shard_end(), "{name}: SHARD_END stored");
    let (requests, stop_took) = driven.shutdown().await;

    let shard_end = ExtendedSequenceNumber::shard_end();
    const THROTTLED: Option<&str> = Some("ThrottlingException");
    match client {
        Client::UpstreamSample => {
            // The sample checkpoints its first batch at its largest record (then only every
            // 30 s), retrying throttling after 5 s; shutdownRequested and shardEnded
            // checkpoint with no sequence number.
            assert_eq!(
                requests,
                [
                    seen("processRecords", Some(&sent[4]), THROTTLED),
                    seen("processRecords", Some(&sent[4]), None),
                    seen("shutdownRequested", None, None),
                    seen("shardEnded", None, None),
                ],
                "{name}"
            );
            assert_eq!(
                store.attempts(&shard),
                [(esn(&sent[4]), false), (esn(&sent[4]), true), (esn(&sent[14]), true), (shard_end, true)],
                "{name}"
            );
            assert_sample_logged(
                &shard,
                &sent,
                &["Shutdown has been requested, checkpointing.", "Shard has ended checkpointing"],
            );
            // Its "Was throttled ..." print() went to stdout, between protocol lines: skipped.
            assert_eq!(capture(&shard).stdout_noise, 1, "{name}: the sample's print() on stdout");
        }
        Client::Ledger(processor) => {
            // --checkpoint-every 4: records 4, 8, 12 (the first attempt throttled and
            // retried); record 15 by shutdownRequested; SHARD_END by shardEnded.
            assert_eq!(
                requests,
                [
                    seen("processRecords", Some(&sent[3]), THROTTLED),
                    seen("processRecords", Some(&sent[3]), None),
                    seen("processRecords", Some(&sent[7]), None),
                    seen("processRecords", Some(&sent[11]), None),
                    seen("shutdownRequested", None, None),
                    seen("shardEnded", None, None),
                ],
                "{name}"
            );
            assert_eq!(
                store.attempts(&shard),
                [
                    (esn(&sent[3]), false),
                    (esn(&sent[3]), true),
                    (esn(&sent[7]), true),
                    (esn(&sent[11]), true),
                    (esn(&sent[14]), true),
                    (shard_end, true),
                ],
                "{name}"
            );
            let pid = assert_ledger_matches(&read_ledger(&ledger), &sent, &shard, processor.name());
            assert_eq!(
                lifecycle_events(&events),
                [
                    "initialize",
                    "process_records",
                    "process_records",
                    "process_records",
                    "shutdown_requested",
                    "shard_ended"
                ],
                "{name}"
            );
            assert_eq!(capture(&shard).exits[0].0, u64::from(pid), "{name}: the ledger's pid is the child's");
        }
    }
    assert_exited_zero(&shard, stop_took);
}

async fn lifecycle_b(client: Client, dir: &Path, seed: u64) {
    let name = client.name();
    let shard = format!("shardId-lifecycle-b-{name}");
    let stream = InMemoryStream::with_shards(1).with_max_records(6);
    let source = stream.shards()[0].shard_id.clone();
    let sent = put_records(&stream, &source, 6, 700, &mut Rng(seed));
    let batches = read_batches(&stream, &source, 6).await;
    assert_eq!(batches.len(), 1);

    let store = Arc::new(RecordingStore::default());
    let ledger = dir.join(format!("{name}-b.jsonl"));
    let events = dir.join(format!("{name}-b-events.jsonl"));
    let exe = client.executable(&ledger, &events, &[]);
    let mut driven = Driven::start(&exe, &shard, Arc::clone(&store)).await;
    driven.process(&batches[0]).await;
    driven.perform(Action::LeaseLost, false).await;
    let (requests, stop_took) = driven.shutdown().await;

    // One checkpoint, during processRecords; nothing during leaseLost.
    let expected_request = match client {
        Client::UpstreamSample => seen("processRecords", Some(&sent[5]), None),
        Client::Ledger(_) => seen("processRecords", None, None),
    };
    assert_eq!(requests, [expected_request], "{name}");
    assert_eq!(store.attempts(&shard), [(esn(&sent[5]), true)], "{name}");
    match client {
        Client::UpstreamSample => assert_sample_logged(&shard, &sent, &["Lease has been lost"]),
        Client::Ledger(processor) => {
            assert_ledger_matches(&read_ledger(&ledger), &sent, &shard, processor.name());
            assert_eq!(lifecycle_events(&events), ["initialize", "process_records", "lease_lost"], "{name}");
        }
    }
    assert_exited_zero(&shard, stop_took);
}

/// Lifecycle A for each client: initialize → processRecords ×3 with checkpoints (the first
/// write throttled, the client retries) → shutdownRequested (checkpoint) → shardEnded
/// (checkpoint → SHARD_END), then EOF → exit 0.
#[test]
fn real_clients_process_checkpoint_through_throttling_and_end_the_shard() {
    let _serial = setup();
    let dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let [a, b, c] = Client::ALL;
        tokio::join!(lifecycle_a(a, dir.path(), 11), lifecycle_a(b, dir.path(), 12), lifecycle_a(c, dir.path(), 13));
    });
    assert_no_children("after lifecycle A");
}

/// Lifecycle B for each client: initialize → processRecords → leaseLost; the child exits 0
/// once its stdin is closed.
#[test]
fn real_clients_handle_lease_lost_and_exit_on_eof() {
    let _serial = setup();
    let dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let [a, b, c] = Client::ALL;
        tokio::join!(lifecycle_b(a, dir.path(), 21), lifecycle_b(b, dir.path(), 22), lifecycle_b(c, dir.path(), 23));
    });
    assert_no_children("after lifecycle B");
}

// ---------------------------------------------------------------------------------------
// 2. SIGKILL of one child mid-batch under the real scheduler

fn scheduler_config(executable: &str) -> Config {
    let text = format!(
        "executableName = {executable}\nstreamName = s\napplicationName = app\n\
         AWSCredentialsProvider = DefaultCredentialsProvider\nretrievalMode = POLLING\n\
         initialPositionInStream = TRIM_HORIZON\nfailoverTimeMillis = 1000\n\
         shutdownGraceMillis = 5000\nparentShardPollIntervalMillis = 100\n"
    );
    let (entries, errors) = properties::parse(text.as_bytes());
    assert!(errors.is_empty(), "{errors:?}");
    Config::from_entries("real_clients.properties", entries).expect("valid test config").config
}

/// Ledger entries per shard, in file order.
fn by_shard(entries: Vec<LedgerEntry>) -> BTreeMap<String, Vec<LedgerEntry>> {
    let mut map: BTreeMap<String, Vec<LedgerEntry>> = BTreeMap::new();
    for entry in entries {
        map.entry(entry.shard_id.clone()).or_default().push(entry);
    }
    map
}

fn pids(entries: &[LedgerEntry]) -> Vec<u32> {
    let mut pids: Vec<u32> = Vec::new();
    for pid in entries.iter().filter_map(|e| e.pid) {
        if !pids.contains(&pid) {
            pids.push(pid);
        }
    }
    pids
}

async fn poll_ledger<T>(
    ledger: &Path,
    what: &str,
    within: Duration,
    mut done: impl FnMut(&BTreeMap<String, Vec<LedgerEntry>>) -> Option<T>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        let entries = by_shard(read_ledger(ledger));
        if let Some(found) = done(&entries) {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out after {within:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Four shards on the real scheduler, each with its own Python v3 ledger processor (slow
/// batches). One is SIGKILLed right after it logged a batch (before checkpointing it): it is
/// restarted from the lease's checkpoint with a new process while the other three keep theirs
/// and keep processing; in the end every record of every shard is in the ledger.
#[test]
fn sigkill_of_one_child_restarts_only_its_shard_from_the_checkpoint() {
    const PER_SHARD: usize = 600;
    const BATCH: usize = 20;
    let _serial = setup();
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.jsonl");
    let events = dir.path().join("events.jsonl");
    let argv = Processor::PythonV3.argv(&ledger, Some(&events), &["--process-delay-ms", "80"]);
    let exe = executable(argv);

    runtime().block_on(async {
        let stream = InMemoryStream::with_shards(4).with_max_records(BATCH);
        let shards: Vec<String> = stream.shards().into_iter().map(|s| s.shard_id).collect();
        let mut rng = Rng(31);
        let sent: BTreeMap<String, Vec<Record>> =
            shards.iter().map(|s| (s.clone(), put_records(&stream, s, PER_SHARD, 200, &mut rng))).collect();
        let store = InMemoryLeaseStore::new("app");
        let shutdown = CancellationToken::new();
        let scheduler = Scheduler::new(
            Arc::new(scheduler_config(&exe.raw)),
            "worker-1".to_owned(),
            Arc::new(store.clone()),
            Arc::new(stream.clone()),
            Arc::new(stream.clone()),
            Arc::new(ChildLauncher::new(exe.clone(), None, STOP_GRACE)),
        );
        let task = tokio::spawn(scheduler.run(shutdown.clone()));
        let victim = shards[1].clone();
        let others: Vec<String> = shards.iter().filter(|s| **s != victim).cloned().collect();

        // Kill the victim right after it logged its third batch: it is then sleeping in
        // --process-delay-ms, before that batch's checkpoint.
        let (victim_pid, written_at_kill, counts_at_kill) =
            poll_ledger(&ledger, "the victim's third batch", Duration::from_secs(30), |ledger| {
                let victim_entries = ledger.get(&victim)?;
                (victim_entries.len() >= 3 * BATCH).then(|| {
                    let counts: HashMap<String, usize> = ledger.iter().map(|(s, e)| (s.clone(), e.len())).collect();
                    (victim_entries[0].pid.unwrap(), victim_entries.len(), counts)
                })
            })
            .await;
        kill(Pid::from_raw(i32::try_from(victim_pid).unwrap()), Signal::SIGKILL).unwrap();
        let checkpoint_at_kill = store.lease(&victim).unwrap().checkpoint;
        let victim_sent = &sent[&victim];
        let last_written = esn(&victim_sent[written_at_kill - 1]);
        assert!(
            checkpoint_at_kill < last_written,
            "the kill must land mid-batch (records delivered but not checkpointed): checkpoint \
             {checkpoint_at_kill}, last delivered {last_written}"
        );
        let resume_index = victim_sent
            .iter()
            .position(|r| esn(r) == checkpoint_at_kill)
            .map_or_else(|| panic!("checkpoint {checkpoint_at_kill} is not a record of {victim}"), |i| i + 1);

        // The victim comes back with a new process; the others are not disturbed meanwhile.
        let counts_at_restart = poll_ledger(&ledger, "the victim's restart", Duration::from_secs(30), |ledger| {
            (pids(&ledger[&victim]).len() >= 2).then(|| {
                others.iter().map(|s| (s.clone(), ledger.get(s).map_or(0, Vec::len))).collect::<HashMap<_, _>>()
            })
        })
        .await;
        let complete = |ledger: &BTreeMap<String, Vec<LedgerEntry>>| {
            sent.iter().all(|(shard, records)| {
                let last_seen = ledger.get(shard).and_then(|seen| seen.last()).map(|e| e.sequence_number.as_str());
                last_seen == records.last().map(|r| r.sequence_number.as_str())
            })
        };
        poll_ledger(&ledger, "every record of every shard", Duration::from_secs(40), |ledger| {
            complete(ledger).then_some(())
        })
        .await;
        // Let the last checkpoints land, then shut down (shutdownRequested, leaseLost, EOF).
        let deadline = Instant::now() + Duration::from_secs(10);
        while !sent.iter().all(|(s, r)| store.lease(s).unwrap().checkpoint == esn(r.last().unwrap())) {
            assert!(Instant::now() < deadline, "final checkpoints not stored");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(20), task).await.expect("scheduler stops").unwrap().unwrap();

        let ledger = by_shard(read_ledger(&ledger));
        // The victim: two processes; the second starts exactly after the checkpoint at kill
        // time and goes on in order to the end.
        let victim_entries = &ledger[&victim];
        let victim_pids = pids(victim_entries);
        assert_eq!(victim_pids.len(), 2, "{victim}: {victim_pids:?}");
        assert_eq!(victim_pids[0], victim_pid);
        let second: Vec<&str> = victim_entries
            .iter()
            .filter(|e| e.pid == Some(victim_pids[1]))
            .map(|e| e.sequence_number.as_str())
            .collect();
        let expected: Vec<&str> = victim_sent[resume_index..].iter().map(|r| r.sequence_number.as_str()).collect();
        assert_eq!(second.first(), expected.first(), "{victim}: the restart's first record follows the checkpoint");
        assert_eq!(second, expected, "{victim}: the restart delivers the rest in order, once");
        let first: Vec<&LedgerEntry> = victim_entries.iter().filter(|e| e.pid == Some(victim_pid)).collect();
        assert_eq!(first.len(), written_at_kill, "{victim}: nothing more from the killed process");
        let restart_init = lifecycle_init_checkpoints(&events, &victim);
        assert_eq!(
            restart_init,
            ["TRIM_HORIZON".to_owned(), checkpoint_at_kill.position.as_str().to_owned()],
            "{victim}: initialize of each process"
        );
        let victim_exits = capture(&victim).exits;
        assert_eq!(victim_exits.len(), 2, "{victim_exits:?}");
        assert_eq!(victim_exits[0], (u64::from(victim_pid), "killed by SIGKILL".to_owned()));
        assert_eq!(victim_exits[1], (u64::from(victim_pids[1]), "exited with code 0".to_owned()));

        // The others: one process each, never restarted, progressing while the victim was
        // down, every record exactly once and intact.
        for shard in &others {
            let entries = &ledger[shard];
            assert_eq!(pids(entries).len(), 1, "{shard}: never restarted");
            assert!(
                counts_at_kill.get(shard).copied().unwrap_or(0) < counts_at_restart[shard],
                "{shard}: kept processing while the victim was down ({:?} at kill, {} at restart)",
                counts_at_kill.get(shard),
                counts_at_restart[shard]
            );
            assert_ledger_matches(entries, &sent[shard], shard, "python-v3");
            let exits = capture(shard).exits;
            assert_eq!(exits.len(), 1, "{shard}: {exits:?}");
            assert_eq!(exits[0].1, "exited with code 0", "{shard}");
        }
        // Every record of every shard is in the ledger, the victim's redelivered ones
        // included, each with the right digest.
        for (shard, records) in &sent {
            let digests: HashMap<&str, String> =
                records.iter().map(|r| (r.sequence_number.as_str(), sha256_hex(&r.data))).collect();
            let mut missing: std::collections::BTreeSet<&str> = digests.keys().copied().collect();
            for entry in &ledger[shard] {
                let digest = digests.get(entry.sequence_number.as_str());
                assert_eq!(digest, Some(&entry.sha256), "{shard}: {}", entry.sequence_number);
                missing.remove(entry.sequence_number.as_str());
            }
            assert!(missing.is_empty(), "{shard}: records never processed: {missing:?}");
        }
    });
    assert_no_children("after the SIGKILL test");
}

/// The `sequenceNumber` of each `initialize` event of `shard`, in order.
fn lifecycle_init_checkpoints(events: &Path, shard: &str) -> Vec<String> {
    std::fs::read_to_string(events)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|v| v["event"] == "initialize" && v["shardId"] == shard)
        .map(|v| v["sequenceNumber"].as_str().unwrap_or("null").to_owned())
        .collect()
}

// ---------------------------------------------------------------------------------------
// 3. 100 MB of stdout noise and 100 MB of stderr

/// A child that writes 100 MB of noise to stdout and 100 MB to stderr (during processRecords,
/// around its checkpoint, and between actions) while answering the protocol correctly: the
/// exchange completes in bounded time, the noise is all read and skipped, and this process's
/// memory does not grow by more than a few tens of MiB.
#[test]
fn hundred_megabytes_of_noise_on_stdout_and_stderr_neither_stall_nor_grow_memory() {
    const BURST: usize = 12_500_000; // 2 batches × 4 bursts = 100 MB per stream
    const MAX_GROWTH_KIB: u64 = 32 * 1024;
    const TIME_BOUND: Duration = Duration::from_secs(45);
    let _serial = setup();
    let dir = tempfile::tempdir().unwrap();
    let result = dir.path().join("result.json");
    let script = support::repo_dir().join("tests/children/noisy_processor.py");
    let exe = executable(vec![
        support::python().display().to_string(),
        script.display().to_string(),
        "--result".into(),
        result.display().to_string(),
        "--burst-bytes".into(),
        BURST.to_string(),
        "--marker-dir".into(),
        dir.path().display().to_string(),
    ]);
    let shard = "shardId-noise";

    runtime().block_on(async {
        let stream = InMemoryStream::with_shards(1).with_max_records(200);
        let source = stream.shards()[0].shard_id.clone();
        let sent = put_records(&stream, &source, 400, 2048, &mut Rng(41));
        let batches = read_batches(&stream, &source, 400).await;
        assert_eq!(batches.len(), 2);
        let store = Arc::new(RecordingStore::default());

        let mut driven = Driven::start(&exe, shard, Arc::clone(&store)).await;
        let started = Instant::now();
        let baseline = vm_rss_kib();
        let sampler = RssSampler::start();
        for (i, batch) in batches.iter().enumerate() {
            driven.process(batch).await;
            // The child now writes 2 × BURST to each pipe with no action outstanding, then
            // drops a marker: only a daemon that keeps reading both pipes lets it get there.
            let marker = dir.path().join(format!("between-{}", i + 1));
            while !marker.exists() {
                assert!(started.elapsed() < TIME_BOUND, "the child stalled between actions (batch {})", i + 1);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        driven.cp.inner.mark_shard_ended();
        driven.perform(Action::ShardEnded, true).await;
        let (requests, stop_took) = driven.shutdown().await;
        let elapsed = started.elapsed();
        let peak = sampler.stop();
        let growth = peak.saturating_sub(baseline);
        eprintln!("noise test: {elapsed:?}, RSS baseline {baseline} KiB, peak {peak} KiB, growth {growth} KiB");

        assert!(elapsed < TIME_BOUND, "200 MB of noise took {elapsed:?}");
        assert!(
            growth <= MAX_GROWTH_KIB,
            "RSS grew by {growth} KiB (baseline {baseline} KiB, peak {peak} KiB) while 200 MB of noise went by"
        );
        assert_eq!(
            requests,
            [seen("processRecords", None, None), seen("processRecords", None, None), seen("shardEnded", None, None)]
        );
        assert_eq!(
            store.attempts(shard),
            [(esn(&sent[199]), true), (esn(&sent[399]), true), (ExtendedSequenceNumber::shard_end(), true)]
        );
        assert_exited_zero(shard, stop_took);

        let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&result).unwrap()).unwrap();
        assert_eq!(report["stdoutBytes"], 4 * 2 * BURST, "{report}");
        assert_eq!(report["stderrBytes"], 4 * 2 * BURST, "{report}");
        assert_eq!(report["checkpointErrors"], serde_json::json!([null, null, null]));
        assert_eq!(
            report["actions"],
            serde_json::json!(["initialize", "processRecords", "processRecords", "shardEnded"])
        );
        let records = report["records"].as_array().unwrap();
        assert_eq!(records.len(), sent.len());
        for (got, sent) in records.iter().zip(&sent) {
            assert_eq!(got[0], sent.sequence_number.as_str());
            assert_eq!(got[1], sha256_hex(&sent.data));
        }
        // Every noise line was read and skipped (stdout) or logged (stderr).
        let seen_by_daemon = capture(shard);
        assert_eq!(Some(seen_by_daemon.stdout_noise), report["stdoutLines"].as_u64(), "stdout noise lines");
        assert_eq!(Some(seen_by_daemon.stderr_lines), report["stderrLines"].as_u64(), "stderr lines");
    });
    assert_no_children("after the noise test");
}

// ---------------------------------------------------------------------------------------
// 4. Large batches and large records

async fn large_batches(processor: Processor, dir: &Path, batches: &[Vec<Record>], sent: &[Record]) {
    let name = processor.name();
    let shard = format!("shardId-large-{name}");
    let ledger = dir.join(format!("{name}-large.jsonl"));
    let events = dir.join(format!("{name}-large-events.jsonl"));
    let store = Arc::new(RecordingStore::default());
    let exe = executable(processor.argv(&ledger, Some(&events), &[]));
    let mut driven = Driven::start(&exe, &shard, Arc::clone(&store)).await;
    for batch in batches {
        driven.process(batch).await;
    }
    driven.perform(Action::LeaseLost, false).await;
    let (requests, stop_took) = driven.shutdown().await;
    assert_eq!(requests, [seen("processRecords", None, None), seen("processRecords", None, None)], "{name}");
    assert_eq!(store.attempts(&shard), [(esn(&sent[9_999]), true), (esn(&sent[10_000]), true)], "{name}");
    assert_ledger_matches(&read_ledger(&ledger), sent, &shard, name);
    assert_exited_zero(&shard, stop_took);
}

/// One batch of 10,000 records, then one record of 10 MiB: every record reaches each ledger
/// processor (Python v3, Python v2, Node) with the right sha256.
#[test]
fn ten_thousand_records_and_a_ten_mib_record_arrive_intact() {
    let _serial = setup();
    let dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let stream = InMemoryStream::with_shards(1).with_max_records(10_000);
        let source = stream.shards()[0].shard_id.clone();
        let mut rng = Rng(51);
        let mut sent = put_records(&stream, &source, 10_000, 400, &mut rng);
        sent.push(stream.put(&source, "big-record", rng.bytes(10 * 1024 * 1024)));
        let batches = read_batches(&stream, &source, sent.len()).await;
        assert_eq!(batches.iter().map(Vec::len).collect::<Vec<_>>(), [10_000, 1]);
        assert_eq!(batches[1][0].data.len(), 10 * 1024 * 1024);
        let d = dir.path();
        tokio::join!(
            large_batches(Processor::PythonV3, d, &batches, &sent),
            large_batches(Processor::PythonV2, d, &batches, &sent),
            large_batches(Processor::Node, d, &batches, &sent),
        );
    });
    assert_no_children("after the large-batch test");
}

// ---------------------------------------------------------------------------------------
// 5. Start-up spread: 120 children starting, renewals keep their cadence

/// A minimal protocol-speaking child (POSIX sh, no client library: what is tested is the
/// daemon's start-up spread, not a client). It logs `start` when it runs and `init` just
/// before acknowledging `initialize`, which it answers after `$2` seconds (a slow start-up).
const SLOW_START_CHILD: &str = r#"#!/bin/sh
log="$1"; delay="$2"
echo "start $$" >> "$log"
while IFS= read -r line; do
  case "$line" in
    *'"action":"initialize"'*) sleep "$delay"; echo "init $$" >> "$log"
      echo '{"action":"status","responseFor":"initialize"}' ;;
    *'"action":"processRecords"'*) echo '{"action":"status","responseFor":"processRecords"}' ;;
    *'"action":"shutdownRequested"'*) echo '{"action":"status","responseFor":"shutdownRequested"}' ;;
    *'"action":"leaseLost"'*) echo '{"action":"status","responseFor":"leaseLost"}' ;;
    *'"action":"shardEnded"'*) echo '{"action":"status","responseFor":"shardEnded"}' ;;
  esac
done
"#;

/// 120 shards on the real scheduler, each child slow to acknowledge `initialize`: at most
/// `multilangd.childStartupConcurrency` (4) children are starting at any moment, so the
/// start-ups are spread over time, and meanwhile every held lease keeps being renewed well
/// within the failover time (the renewer does not wait for start-ups).
#[test]
fn a_hundred_and_twenty_children_start_a_few_at_a_time_while_renewals_keep_their_cadence() {
    use std::os::unix::fs::PermissionsExt as _;
    const SHARDS: u32 = 120;
    const LIMIT: usize = 4;
    const INIT_DELAY_S: f64 = 0.1;
    const FAILOVER: Duration = Duration::from_millis(3000);
    let _serial = setup();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("slow_start.sh");
    std::fs::write(&script, SLOW_START_CHILD).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let log = dir.path().join("starts.log");
    let exe = executable(vec![script.display().to_string(), log.display().to_string(), INIT_DELAY_S.to_string()]);
    let text = format!(
        "executableName = {}\nstreamName = s\napplicationName = app\n\
         AWSCredentialsProvider = DefaultCredentialsProvider\nretrievalMode = POLLING\n\
         initialPositionInStream = TRIM_HORIZON\nfailoverTimeMillis = {}\n\
         shutdownGraceMillis = 5000\nmultilangd.childStartupConcurrency = {LIMIT}\n",
        exe.raw,
        FAILOVER.as_millis()
    );
    let (entries, errors) = properties::parse(text.as_bytes());
    assert!(errors.is_empty(), "{errors:?}");
    let config = Config::from_entries("startup.properties", entries).expect("valid test config").config;
    assert_eq!(config.child_startup_concurrency as usize, LIMIT);
    let launcher = ChildLauncher::new(exe.clone(), None, STOP_GRACE)
        .with_startup_concurrency(config.child_startup_concurrency as usize);

    let read_log = |log: &Path| -> Vec<(String, String)> {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once(' ').map(|(a, b)| (a.to_owned(), b.to_owned())))
            .collect()
    };
    runtime().block_on(async {
        let stream = InMemoryStream::with_shards(SHARDS);
        let keys: Vec<String> = stream.shards().into_iter().map(|s| s.shard_id).collect();
        let store = InMemoryLeaseStore::new("app");
        let shutdown = CancellationToken::new();
        let scheduler = Scheduler::new(
            Arc::new(config),
            "worker-1".to_owned(),
            Arc::new(store.clone()),
            Arc::new(stream.clone()),
            Arc::new(stream.clone()),
            Arc::new(launcher),
        );
        let task = tokio::spawn(scheduler.run(shutdown.clone()));

        // Sample every lease's counter until every child acknowledged initialize.
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut last_change: HashMap<String, (u64, Instant)> = HashMap::new();
        let mut max_gap = Duration::ZERO;
        let mut renewals = 0_u64;
        loop {
            let now = Instant::now();
            for key in &keys {
                let Some(lease) = store.lease(key) else { continue };
                if lease.owner.as_deref() != Some("worker-1") {
                    continue;
                }
                match last_change.get(key) {
                    Some(&(counter, at)) if counter == lease.counter => max_gap = max_gap.max(now - at),
                    Some(_) => {
                        renewals += 1;
                        last_change.insert(key.clone(), (lease.counter, now));
                    }
                    None => {
                        last_change.insert(key.clone(), (lease.counter, now));
                    }
                }
            }
            let inits = read_log(&log).iter().filter(|(what, _)| what == "init").count();
            if inits >= SHARDS as usize {
                break;
            }
            assert!(now < deadline, "only {inits} of {SHARDS} children initialized in time");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(60), task).await.expect("scheduler stops").unwrap().unwrap();

        let events = read_log(&log);
        let (mut starting, mut most) = (0_usize, 0_usize);
        for (what, _) in &events {
            match what.as_str() {
                "start" => starting += 1,
                "init" => starting -= 1,
                other => panic!("unexpected log line {other}"),
            }
            most = most.max(starting);
        }
        eprintln!(
            "{SHARDS} children: at most {most} starting at once; {renewals} renewals seen, longest \
             gap between renewals of a held lease {max_gap:?}"
        );
        assert_eq!(events.iter().filter(|(w, _)| w == "start").count(), SHARDS as usize, "one child per shard");
        assert!(most <= LIMIT, "{most} children were starting at once (limit {LIMIT})");
        assert!(most >= 2, "start-ups overlap up to the limit (saw {most})");
        assert_eq!(last_change.len(), SHARDS as usize, "every lease was held");
        // The renewer runs every failover/3; a lease at risk would go a whole failover time
        // without renewal. Wide bound: under two thirds of it.
        assert!(renewals >= SHARDS as u64, "leases were renewed during the start-ups ({renewals})");
        assert!(max_gap < FAILOVER * 2 / 3, "a held lease went {max_gap:?} without renewal");
    });
    assert_no_children("after the start-up spread test");
}
