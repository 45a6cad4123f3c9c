//! Replays every transcript in `protocol-fixtures/` (format: protocol-fixtures/README.md)
//! through the real [`ProtocolSession`] over in-memory pipes, both ways:
//!
//! - a scripted *child* task writes the recorded child bytes (`C>`, `C=`, `C*`) and reads
//!   the daemon's output, asserting that every `D>` line arrives byte for byte, in place;
//! - a *driver* plays the daemon's caller: it rebuilds each action from its recorded `D>`
//!   line (records, timestamps and positions taken from the transcript), calls
//!   [`ProtocolSession::perform`] with a scripted checkpointer (`@checkpointer`), and
//!   checks the outcome of the last action (`@expect`) and the drained leftovers.
//!
//! The `java-*` fixtures were recorded from the Java MultiLangDaemon 2.5.8
//! (protocol-fixtures/capture/), so passing them means multilangd writes the same bytes
//! and reacts to the same child output the same way. Time is paused (Tokio test clock),
//! so `@sleep` and `@timeout` cost nothing.

// Test code: a malformed fixture should fail loudly (clippy's allow-unwrap-in-tests only
// covers `#[test]` functions, not the harness helpers below).
#![allow(clippy::unwrap_used)]

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use bytes::Bytes;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, DuplexStream};

use multilangd::protocol::{
    Action, ActionKind, CheckpointError, CheckpointRequest, Checkpointer, ProtocolErrorKind, ProtocolSession,
};
use multilangd::sequence::{ExtendedSequenceNumber, Position, SequenceNumber};
use multilangd::stream::Record;

/// Pipe buffer size of the in-memory pipes (like a Linux pipe).
const PIPE: usize = 64 * 1024;

#[derive(Debug, Clone)]
enum Step {
    /// The daemon must write exactly these bytes next.
    Daemon(Vec<u8>),
    /// An action the driver performs whose line the child never reads (`D!`).
    Unread(Vec<u8>),
    /// The child writes these bytes.
    Child(Vec<u8>),
    /// The child pauses.
    Sleep(Duration),
    /// The daemon closes the child's stdin here (the child reads EOF).
    Eof,
    /// The child closes its stdout.
    CloseStdout,
    /// The child closes its stdin (the daemon's next write fails).
    CloseStdin,
}

#[derive(Debug, Clone, PartialEq)]
enum Expect {
    Ok,
    Mismatch(Option<String>),
    Eof,
    Timeout,
    WriteFailed,
}

#[derive(Debug)]
struct Fixture {
    name: String,
    shard: String,
    timeout: Option<Duration>,
    checkpointer: Vec<Result<(), CheckpointError>>,
    expect: Expect,
    drained: Option<usize>,
    steps: Vec<Step>,
}

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("protocol-fixtures")
}

fn checkpoint_result(name: &str) -> Result<(), CheckpointError> {
    let why = "scripted".to_owned();
    match name {
        "ok" => Ok(()),
        "InvalidStateException" => Err(CheckpointError::InvalidState(why)),
        "IllegalArgumentException" => Err(CheckpointError::IllegalArgument(why)),
        "ShutdownException" => Err(CheckpointError::Shutdown(why)),
        "ThrottlingException" => Err(CheckpointError::Throttling(why)),
        "KinesisClientLibDependencyException" => Err(CheckpointError::Dependency(why)),
        other => panic!("unknown checkpointer result {other:?}"),
    }
}

fn parse_fixture(path: &Path) -> Fixture {
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let text = std::fs::read_to_string(path).unwrap();
    let mut fixture = Fixture {
        name: name.clone(),
        shard: String::new(),
        timeout: None,
        checkpointer: Vec::new(),
        expect: Expect::Ok,
        drained: None,
        steps: Vec::new(),
    };
    for (n, line) in text.lines().enumerate() {
        let at = || format!("{name}:{}", n + 1);
        let (tag, rest) = match line.find(' ') {
            Some(i) => (&line[..i], &line[i + 1..]),
            None => (line, ""),
        };
        match tag {
            "" => {}
            t if t.starts_with('#') => {}
            "@shard" => fixture.shard = rest.to_owned(),
            "@timeout" => fixture.timeout = Some(Duration::from_secs_f64(rest.parse().unwrap())),
            "@checkpointer" => fixture.checkpointer = rest.split_whitespace().map(checkpoint_result).collect(),
            "@drained" => fixture.drained = Some(rest.parse().unwrap()),
            "@expect" => {
                let mut words = rest.split_whitespace();
                fixture.expect = match words.next() {
                    Some("ok") => Expect::Ok,
                    Some("mismatch") => Expect::Mismatch(match words.next() {
                        Some("-") | None => None,
                        Some(got) => Some(got.to_owned()),
                    }),
                    Some("eof") => Expect::Eof,
                    Some("timeout") => Expect::Timeout,
                    Some("write-failed") => Expect::WriteFailed,
                    other => panic!("{}: bad @expect {other:?}", at()),
                };
            }
            "@sleep" => fixture.steps.push(Step::Sleep(Duration::from_secs_f64(rest.parse().unwrap()))),
            "@eof" => fixture.steps.push(Step::Eof),
            "@close-stdout" => fixture.steps.push(Step::CloseStdout),
            "@close-stdin" => fixture.steps.push(Step::CloseStdin),
            "D>" => fixture.steps.push(Step::Daemon(format!("{rest}\n").into_bytes())),
            "D!" => fixture.steps.push(Step::Unread(format!("{rest}\n").into_bytes())),
            "C>" => fixture.steps.push(Step::Child(format!("{rest}\n").into_bytes())),
            "C=" => {
                let s: String = serde_json::from_str(rest).unwrap_or_else(|e| panic!("{}: {e}", at()));
                fixture.steps.push(Step::Child(s.into_bytes()));
            }
            "C*" => {
                let (count, unit) = rest.split_once(' ').unwrap_or_else(|| panic!("{}: C* N TEXT", at()));
                let mut bytes = unit.repeat(count.parse().unwrap()).into_bytes();
                bytes.push(b'\n');
                fixture.steps.push(Step::Child(bytes));
            }
            other => panic!("{}: unknown tag {other:?}", at()),
        }
    }
    assert!(!fixture.shard.is_empty(), "{name}: no @shard");
    fixture
}

/// An action rebuilt from its recorded line (owned data).
#[derive(Debug)]
enum OwnedAction {
    Initialize(Option<ExtendedSequenceNumber>),
    ProcessRecords(Vec<Record>, Option<i64>),
    ShutdownRequested,
    LeaseLost,
    ShardEnded,
}

impl OwnedAction {
    fn from_line(line: &[u8], shard: &str) -> Option<Self> {
        let v: Value = serde_json::from_slice(line).unwrap();
        Some(match v["action"].as_str().unwrap() {
            "checkpoint" => return None,
            "initialize" => {
                assert_eq!(v["shardId"], shard, "initialize for another shard");
                Self::Initialize(v["sequenceNumber"].as_str().map(|s| ExtendedSequenceNumber {
                    position: Position::parse(s).unwrap(),
                    sub_sequence: v["subSequenceNumber"].as_u64().unwrap(),
                }))
            }
            "processRecords" => {
                let records = v["records"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| Record {
                        data: Bytes::from(
                            base64::engine::general_purpose::STANDARD.decode(r["data"].as_str().unwrap()).unwrap(),
                        ),
                        partition_key: r["partitionKey"].as_str().unwrap().to_owned(),
                        sequence_number: SequenceNumber::parse(r["sequenceNumber"].as_str().unwrap()).unwrap(),
                        sub_sequence_number: r["subSequenceNumber"].as_u64().unwrap(),
                        approximate_arrival_timestamp_ms: r["approximateArrivalTimestamp"].as_i64().unwrap(),
                    })
                    .collect();
                Self::ProcessRecords(records, v["millisBehindLatest"].as_i64())
            }
            "shutdownRequested" => Self::ShutdownRequested,
            "leaseLost" => Self::LeaseLost,
            "shardEnded" => Self::ShardEnded,
            other => panic!("unexpected daemon action {other:?}"),
        })
    }

    fn action(&self) -> Action<'_> {
        match self {
            Self::Initialize(c) => Action::Initialize { checkpoint: c.as_ref() },
            Self::ProcessRecords(records, millis) => Action::ProcessRecords { records, millis_behind_latest: *millis },
            Self::ShutdownRequested => Action::ShutdownRequested,
            Self::LeaseLost => Action::LeaseLost,
            Self::ShardEnded => Action::ShardEnded,
        }
    }
}

/// Returns the scripted results in order and records every request.
struct ScriptedCheckpointer {
    results: VecDeque<Result<(), CheckpointError>>,
    calls: Vec<CheckpointRequest>,
    unexpected: usize,
}

#[async_trait]
impl Checkpointer for ScriptedCheckpointer {
    async fn checkpoint(&mut self, request: &CheckpointRequest) -> Result<(), CheckpointError> {
        self.calls.push(request.clone());
        self.results.pop_front().unwrap_or_else(|| {
            self.unexpected += 1;
            Ok(())
        })
    }
}

fn show(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    if s.len() > 400 {
        format!("{}...({} bytes)", &s[..s.floor_char_boundary(400)], bytes.len())
    } else {
        s.into_owned()
    }
}

fn first_difference(a: &[u8], b: &[u8]) -> String {
    let i = a.iter().zip(b).position(|(x, y)| x != y).unwrap_or(a.len().min(b.len()));
    let from = i.saturating_sub(60);
    format!(
        "first difference at byte {i}:\n  expected ...{}\n  actual   ...{}",
        show(&a[from..a.len().min(i + 60)]),
        show(&b[from..b.len().min(i + 60)])
    )
}

/// The child side: plays the script; returns an error message on the first deviation.
///
/// When the daemon is expected to fail, a child write into the closed pipe ends the
/// script (the child, like a real one, would get EPIPE).
async fn run_child(
    steps: Vec<Step>,
    stdin: DuplexStream,
    stdout: DuplexStream,
    expect_failure: bool,
) -> Result<(), String> {
    let mut stdin = Some(BufReader::new(stdin));
    let mut stdout = Some(stdout);
    for (i, step) in steps.into_iter().enumerate() {
        match step {
            Step::Daemon(expected) => {
                let reader = stdin.as_mut().ok_or("script reads after @close-stdin")?;
                let mut actual = Vec::new();
                reader.read_until(b'\n', &mut actual).await.map_err(|e| e.to_string())?;
                if actual != expected {
                    return Err(format!(
                        "step {i}: daemon wrote\n  {}\nexpected\n  {}\n{}",
                        show(&actual),
                        show(&expected),
                        first_difference(&expected, &actual)
                    ));
                }
            }
            Step::Child(bytes) => {
                let writer = stdout.as_mut().ok_or("script writes after @close-stdout")?;
                if let Err(e) = writer.write_all(&bytes).await {
                    if expect_failure && e.kind() == std::io::ErrorKind::BrokenPipe {
                        return Ok(());
                    }
                    return Err(format!("step {i}: child write: {e}"));
                }
            }
            Step::Sleep(d) => tokio::time::sleep(d).await,
            Step::Eof => {
                let reader = stdin.as_mut().ok_or("script reads after @close-stdin")?;
                let mut rest = Vec::new();
                reader.read_to_end(&mut rest).await.map_err(|e| e.to_string())?;
                if !rest.is_empty() {
                    return Err(format!("step {i}: expected EOF, daemon wrote {}", show(&rest)));
                }
            }
            Step::Unread(_) => {}
            Step::CloseStdout => stdout = None,
            Step::CloseStdin => stdin = None,
        }
    }
    drop(stdout);
    // Anything the daemon writes after the script ended is a deviation, unless it closed.
    if let Some(mut reader) = stdin {
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(3600), reader.read_to_end(&mut rest)).await;
        if !rest.is_empty() {
            return Err(format!("daemon wrote after the end of the script: {}", show(&rest)));
        }
        drop(read);
    }
    Ok(())
}

struct Outcome {
    result: Expect,
    drained: Option<usize>,
    checkpointer: ScriptedCheckpointer,
    actions: usize,
}

/// The daemon side: performs every recorded action in order.
async fn run_driver(fixture: &Fixture, stdin: DuplexStream, stdout: DuplexStream) -> Outcome {
    let actions: Vec<OwnedAction> = fixture
        .steps
        .iter()
        .filter_map(|s| match s {
            Step::Daemon(line) | Step::Unread(line) => OwnedAction::from_line(line, &fixture.shard),
            _ => None,
        })
        .collect();
    let mut checkpointer =
        ScriptedCheckpointer { results: fixture.checkpointer.clone().into(), calls: Vec::new(), unexpected: 0 };
    let mut session = ProtocolSession::new(fixture.shard.clone(), stdin, stdout, fixture.timeout);
    let mut result = Expect::Ok;
    for owned in &actions {
        let action = owned.action();
        let cp: Option<&mut (dyn Checkpointer + '_)> =
            if action.kind().has_checkpointer() { Some(&mut checkpointer) } else { None };
        if let Err(e) = session.perform(action, cp).await {
            assert_eq!(e.shard_id, fixture.shard);
            assert_eq!(e.action, action.kind());
            result = match e.kind {
                ProtocolErrorKind::StatusMismatch { expected, got } => {
                    assert_eq!(expected, action.kind());
                    Expect::Mismatch(got)
                }
                ProtocolErrorKind::ChildClosedStdout => Expect::Eof,
                ProtocolErrorKind::Timeout { after, .. } => {
                    assert_eq!(Some(after), fixture.timeout);
                    Expect::Timeout
                }
                ProtocolErrorKind::WriteFailed(_) => Expect::WriteFailed,
                other => panic!("{}: unexpected error kind {other:?}", fixture.name),
            };
            break;
        }
    }
    let drained = if fixture.steps.iter().any(|s| matches!(s, Step::Eof)) {
        Some(session.close().await)
    } else {
        drop(session);
        None
    };
    Outcome { result, drained, checkpointer, actions: actions.len() }
}

fn replay(fixture: &Fixture) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
    runtime.block_on(async {
        let (daemon_stdin, child_stdin) = tokio::io::duplex(PIPE);
        let (child_stdout, daemon_stdout) = tokio::io::duplex(PIPE);
        let child =
            tokio::spawn(run_child(fixture.steps.clone(), child_stdin, child_stdout, fixture.expect != Expect::Ok));
        let outcome = run_driver(fixture, daemon_stdin, daemon_stdout).await;
        let child = child.await.map_err(|e| format!("child task: {e}"))?;
        child?;
        if outcome.result != fixture.expect {
            return Err(format!("outcome {:?}, expected {:?}", outcome.result, fixture.expect));
        }
        let cp = &outcome.checkpointer;
        if cp.unexpected > 0 || !cp.results.is_empty() {
            return Err(format!(
                "checkpointer called {} times ({:?}); {} scripted results left, {} calls beyond the script",
                cp.calls.len(),
                cp.calls,
                cp.results.len(),
                cp.unexpected
            ));
        }
        if let (Some(expected), Some(actual)) = (fixture.drained, outcome.drained) {
            if expected != actual {
                return Err(format!("drained {actual} leftover messages, expected {expected}"));
            }
        } else if fixture.drained.is_some() {
            return Err("@drained without @eof".to_owned());
        }
        if outcome.actions == 0 {
            return Err("no actions".to_owned());
        }
        Ok(())
    })
}

fn all_fixtures() -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    paths.sort();
    paths
}

#[test]
fn every_fixture_replays() {
    let paths = all_fixtures();
    assert!(paths.len() >= 25, "expected the fixture set, found {}", paths.len());
    let mut failures = Vec::new();
    for path in &paths {
        let fixture = parse_fixture(path);
        if let Err(e) = replay(&fixture) {
            failures.push(format!("{}: {e}", fixture.name));
        }
    }
    assert!(failures.is_empty(), "{} of {} fixtures failed:\n{}", failures.len(), paths.len(), failures.join("\n\n"));
}

#[test]
fn java_captures_are_present_and_cover_every_action() {
    let mut seen = std::collections::BTreeSet::new();
    let mut java = 0;
    for path in all_fixtures() {
        if !path.file_name().unwrap().to_string_lossy().starts_with("java-") {
            continue;
        }
        java += 1;
        for step in parse_fixture(&path).steps {
            if let Step::Daemon(line) = step {
                let v: Value = serde_json::from_slice(&line).unwrap();
                seen.insert(v["action"].as_str().unwrap().to_owned());
            }
        }
    }
    assert!(java >= 5, "Java captures missing");
    for action in ["initialize", "processRecords", "checkpoint", "shutdownRequested", "leaseLost", "shardEnded"] {
        assert!(seen.contains(action), "no Java capture of {action}");
    }
    assert_eq!(ActionKind::ShardEnded.wire_name(), "shardEnded");
}

/// A fixture that deviates must fail: the harness itself is checked.
#[test]
fn a_wrong_daemon_line_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.txt");
    std::fs::write(
        &path,
        "@shard shardId-000000000000\n\
         D> {\"action\":\"initialize\",\"shardId\":\"shardId-000000000000\",\"sequenceNumber\":\"LATEST\",\"subSequenceNumber\":0}\n\
         C> {\"action\":\"status\",\"responseFor\":\"initialize\"}\n\
         D> {\"action\":\"leaseLost\" }\n\
         C> {\"action\":\"status\",\"responseFor\":\"leaseLost\"}\n",
    )
    .unwrap();
    let fixture = parse_fixture(&path);
    // The driver rebuilds leaseLost from the line and encodes it without the space.
    let err = replay(&fixture).unwrap_err();
    assert!(err.contains("daemon wrote"), "{err}");
}
