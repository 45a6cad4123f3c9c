//! Child supervision against real processes: spawn rules (Java-compatible lookup), stderr
//! draining under load, exit detection, graceful stop escalation and process-group cleanup.
#![allow(clippy::unwrap_used)] // tests may unwrap

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::sync::{Arc, Mutex, Once, OnceLock};
use std::time::{Duration, Instant};

use multilangd::child::{ChildExit, ChildPipes, ChildProcess, SpawnError, MAX_STDERR_LINE_BYTES, STDERR_LOG_TARGET};
use multilangd::config::Executable;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

// ---------------------------------------------------------------------------------------
// Harness: a global tracing layer that records child stderr events per shard id.

#[derive(Debug, Default, Clone)]
struct ShardLog {
    count: u64,
    /// The first 100 lines (message, discarded_bytes).
    first: Vec<(String, Option<u64>)>,
    last: Option<String>,
    pids: Vec<u64>,
}

fn logs() -> &'static Mutex<HashMap<String, ShardLog>> {
    static LOGS: OnceLock<Mutex<HashMap<String, ShardLog>>> = OnceLock::new();
    LOGS.get_or_init(Default::default)
}

fn shard_log(shard: &str) -> ShardLog {
    logs().lock().unwrap().get(shard).cloned().unwrap_or_default()
}

#[derive(Default)]
struct Fields {
    shard_id: String,
    pid: Option<u64>,
    message: String,
    discarded: Option<u64>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => self.message = format!("{value:?}"),
            "shard_id" => self.shard_id = format!("{value:?}"),
            _ => {}
        }
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        match field.name() {
            "pid" => self.pid = Some(value),
            "discarded_bytes" => self.discarded = Some(value),
            _ => {}
        }
    }
}

struct Capture;

impl<S: tracing::Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        if event.metadata().target() != STDERR_LOG_TARGET {
            return;
        }
        let mut f = Fields::default();
        event.record(&mut f);
        let mut logs = logs().lock().unwrap();
        let log = logs.entry(f.shard_id).or_default();
        log.count += 1;
        if log.first.len() < 100 {
            log.first.push((f.message.clone(), f.discarded));
        }
        if let Some(pid) = f.pid {
            if !log.pids.contains(&pid) {
                log.pids.push(pid);
            }
        }
        log.last = Some(f.message);
    }
}

fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let fmt = std::env::var_os("RUST_LOG").map(|_| {
            tracing_subscriber::fmt::layer()
                .with_test_writer()
                .with_filter(tracing_subscriber::EnvFilter::from_default_env())
        });
        let subscriber = tracing_subscriber::registry().with(Capture).with(fmt);
        tracing::subscriber::set_global_default(subscriber).unwrap();
    });
}

// ---------------------------------------------------------------------------------------
// Helpers

fn exe(program: &str, args: &[&str]) -> Executable {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let raw = std::iter::once(program.to_owned()).chain(args.iter().cloned()).collect::<Vec<_>>().join(" ");
    Executable { program: program.to_owned(), args, raw }
}

fn sh(script: &str) -> Executable {
    exe("sh", &["-c", script])
}

fn spawn(executable: &Executable, shard: &str) -> (ChildProcess, ChildPipes) {
    init();
    ChildProcess::spawn(executable, shard).unwrap()
}

async fn read_all(pipes: ChildPipes) -> Vec<u8> {
    let ChildPipes { stdin, mut stdout } = pipes;
    drop(stdin);
    let mut out = Vec::new();
    stdout.read_to_end(&mut out).await.unwrap();
    out
}

async fn first_line(stdout: &mut BufReader<tokio::process::ChildStdout>) -> String {
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(5), stdout.read_line(&mut line)).await.unwrap().unwrap();
    line.trim_end().to_owned()
}

/// Gone, or a zombie nobody has reaped yet (PID 1 here may not reap orphans).
fn is_dead(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z')),
    }
}

async fn assert_dies(pid: i32, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(3);
    while !is_dead(pid) {
        assert!(Instant::now() < deadline, "{what} (pid {pid}) is still alive");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn status_kib(key: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(key)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Runs `fut` while sampling VmRSS every 5 ms; returns its output and the peak growth in KiB
/// over the RSS measured just before.
async fn with_peak_rss_growth<T>(fut: impl std::future::Future<Output = T>) -> (T, u64) {
    let before = status_kib("VmRSS:");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = tokio::spawn({
        let stop = Arc::clone(&stop);
        async move {
            let mut peak = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(status_kib("VmRSS:"));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            peak.max(status_kib("VmRSS:"))
        }
    });
    let out = fut.await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.await.unwrap();
    (out, peak.saturating_sub(before))
}

const MEMORY_SLACK_KIB: u64 = 8 * 1024;

// ---------------------------------------------------------------------------------------
// Spawning

#[tokio::test]
async fn bare_name_is_found_on_path() {
    let (mut child, pipes) = spawn(&exe("echo", &["hello", "world"]), "spawn-path");
    assert_eq!(read_all(pipes).await, b"hello world\n");
    assert_eq!(child.wait().await, ChildExit::Success);
    assert_eq!(child.exit(), Some(ChildExit::Success));
    let program = child.program().to_owned();
    assert!(program.is_absolute() && program.ends_with("echo"), "{program:?}");
    let path = std::env::var_os("PATH").unwrap();
    assert!(std::env::split_paths(&path).any(|d| d.join("echo") == program), "{program:?} not from PATH");
    assert_eq!(child.shard_id(), "spawn-path");
}

#[tokio::test]
async fn argv0_is_the_configured_name() {
    let (mut child, pipes) = spawn(&sh("echo $0"), "spawn-argv0");
    assert_eq!(read_all(pipes).await, b"sh\n");
    assert_eq!(child.wait().await, ChildExit::Success);
}

#[tokio::test]
async fn bare_name_is_not_looked_up_in_cwd() {
    init();
    // The test's CWD is the package root, where `Cargo.toml` exists (and would be reported
    // as "not executable" if the CWD were searched).
    assert!(std::path::Path::new("Cargo.toml").is_file());
    let err = ChildProcess::spawn(&exe("Cargo.toml", &[]), "spawn-cwd").unwrap_err();
    assert!(matches!(err, SpawnError::NotOnPath { .. }), "{err:?}");
}

#[tokio::test]
async fn relative_paths_resolve_against_cwd_and_args_pass_verbatim() {
    for program in ["./tests/children/print_args.sh", "tests/children/print_args.sh"] {
        let (mut child, pipes) = spawn(&exe(program, &["a", "'b", "c'", ""]), "spawn-relative");
        assert_eq!(read_all(pipes).await, b"a\n'b\nc'\n\n");
        assert_eq!(child.wait().await, ChildExit::Success);
        assert_eq!(child.program(), std::env::current_dir().unwrap().join(program));
    }
}

#[tokio::test]
async fn script_without_shebang_runs_under_sh() {
    let (mut child, pipes) = spawn(&exe("./tests/children/no_shebang.sh", &["x", "y"]), "spawn-noshebang");
    assert_eq!(read_all(pipes).await, b"no-shebang ran with: x y\n");
    assert_eq!(child.wait().await, ChildExit::Success);
}

#[tokio::test]
async fn non_executable_file_is_a_typed_error() {
    init();
    let err = ChildProcess::spawn(&exe("tests/children/not_executable.sh", &[]), "shard-noexec").unwrap_err();
    match &err {
        SpawnError::NotExecutable { shard_id, program, resolved, path } => {
            assert_eq!(shard_id, "shard-noexec");
            assert_eq!(program, "tests/children/not_executable.sh");
            assert_eq!(resolved, &std::env::current_dir().unwrap().join(program));
            assert_eq!(path, &None);
        }
        other => panic!("unexpected {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("shard-noexec") && msg.contains("not_executable.sh") && msg.contains("not executable"),
        "{msg}"
    );
}

#[tokio::test]
async fn missing_programs_are_typed_errors() {
    init();
    let err = ChildProcess::spawn(&exe("multilangd-no-such-program", &["x"]), "shard-missing").unwrap_err();
    let path = std::env::var("PATH").unwrap();
    match &err {
        SpawnError::NotOnPath { shard_id, program, path: searched } => {
            assert_eq!((shard_id.as_str(), program.as_str()), ("shard-missing", "multilangd-no-such-program"));
            assert_eq!(searched, &path);
        }
        other => panic!("unexpected {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("shard-missing") && msg.contains("multilangd-no-such-program") && msg.contains(&path),
        "{msg}"
    );

    let err = ChildProcess::spawn(&exe("./tests/children/missing.sh", &[]), "shard-missing").unwrap_err();
    assert!(matches!(err, SpawnError::NotFound { .. }), "{err:?}");
    assert!(err.to_string().contains("does not exist"), "{err}");

    let err = ChildProcess::spawn(&exe("", &[]), "shard-missing").unwrap_err();
    assert!(matches!(err, SpawnError::EmptyProgram { .. }), "{err:?}");
}

#[tokio::test]
async fn environment_and_cwd_are_inherited_unchanged() {
    let (mut child, pipes) = spawn(&exe("env", &["-0"]), "spawn-env");
    let out = read_all(pipes).await;
    assert_eq!(child.wait().await, ChildExit::Success);
    let child_env: BTreeMap<OsString, OsString> = out
        .split(|&b| b == 0)
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let eq = kv.iter().position(|&b| b == b'=').unwrap();
            (OsString::from_vec(kv[..eq].to_vec()), OsString::from_vec(kv[eq + 1..].to_vec()))
        })
        .collect();
    let ours: BTreeMap<OsString, OsString> = std::env::vars_os().collect();
    assert_eq!(child_env, ours);

    let (mut child, pipes) = spawn(&exe("pwd", &[]), "spawn-cwd");
    let out = String::from_utf8(read_all(pipes).await).unwrap();
    assert_eq!(child.wait().await, ChildExit::Success);
    assert_eq!(std::path::PathBuf::from(out.trim_end()), std::env::current_dir().unwrap());
}

// ---------------------------------------------------------------------------------------
// Stderr

#[tokio::test]
async fn stderr_lines_are_logged_with_shard_and_pid() {
    let script = r"printf 'one\r\ntwo\rthree\n\n\nfour\nlast-without-newline' >&2";
    let (mut child, pipes) = spawn(&sh(script), "stderr-lines");
    let pid = u64::from(child.pid());
    read_all(pipes).await;
    assert_eq!(child.wait().await, ChildExit::Success);
    child.stop(Duration::from_millis(100)).await; // waits for the drain to reach EOF
    let log = shard_log("stderr-lines");
    let lines: Vec<&str> = log.first.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(lines, ["one", "two", "three", "four", "last-without-newline"]);
    assert_eq!(log.pids, [pid]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stderr_flood_of_100mb_is_drained_in_bounded_memory() {
    // 990_099 lines of 100 chars, then a final "0" without newline: 100_000_000 bytes.
    let line = "0123456789".repeat(10);
    let script = format!("yes {line} | head -c 100000000 >&2; echo done");
    let (mut child, pipes) = spawn(&sh(&script), "stderr-flood");
    let (exit, growth_kib) = with_peak_rss_growth(async {
        let out = tokio::time::timeout(Duration::from_secs(120), read_all(pipes)).await.expect("child stalled");
        assert_eq!(out, b"done\n");
        let exit = child.wait().await;
        (exit, child.stop(Duration::from_millis(100)).await)
    })
    .await;
    assert_eq!(exit, (ChildExit::Success, ChildExit::Success));
    let log = shard_log("stderr-flood");
    assert_eq!(log.count, 990_100);
    assert_eq!(log.first[0], (line.clone(), None));
    assert_eq!(log.last.as_deref(), Some("0"));
    assert!(growth_kib < MEMORY_SLACK_KIB, "RSS grew by {growth_kib} KiB while draining 100 MB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_50mb_stderr_line_is_truncated_not_buffered() {
    let script = "head -c 50000000 /dev/zero | tr '\\0' x >&2; printf '\\nafter\\n' >&2; echo done";
    let (mut child, pipes) = spawn(&sh(script), "stderr-longline");
    let (exit, growth_kib) = with_peak_rss_growth(async {
        let out = tokio::time::timeout(Duration::from_secs(120), read_all(pipes)).await.expect("child stalled");
        assert_eq!(out, b"done\n");
        child.wait().await;
        child.stop(Duration::from_millis(100)).await
    })
    .await;
    assert_eq!(exit, ChildExit::Success);
    let log = shard_log("stderr-longline");
    assert_eq!(log.count, 2);
    let (first, discarded) = &log.first[0];
    assert_eq!(first.len(), MAX_STDERR_LINE_BYTES);
    assert!(first.bytes().all(|b| b == b'x'));
    assert_eq!(*discarded, Some(50_000_000 - MAX_STDERR_LINE_BYTES as u64));
    assert_eq!(log.first[1], ("after".to_owned(), None));
    assert!(growth_kib < MEMORY_SLACK_KIB, "RSS grew by {growth_kib} KiB while draining a 50 MB line");
}

// ---------------------------------------------------------------------------------------
// Exit detection

#[tokio::test]
async fn sigkill_is_seen_promptly_while_idle_inside_select() {
    let (mut child, pipes) = spawn(&exe("sleep", &["30"]), "exit-sigkill");
    let mut stdout = BufReader::new(pipes.stdout);
    assert_eq!(child.try_wait(), None);
    let pid = Pid::from_raw(child.pid() as i32);
    tokio::time::sleep(Duration::from_millis(50)).await;

    let killed_at = Instant::now();
    kill(pid, Signal::SIGKILL).unwrap();
    let mut line = String::new();
    let exit = tokio::time::timeout(Duration::from_secs(1), async {
        loop {
            tokio::select! {
                exit = child.wait() => break exit,
                n = stdout.read_line(&mut line) => assert_eq!(n.unwrap(), 0, "unexpected stdout {line:?}"),
            }
        }
    })
    .await
    .expect("exit not seen within 1 s");
    println!("SIGKILL seen after {:?}", killed_at.elapsed());
    assert_eq!(exit, ChildExit::Signal(9));
    assert_eq!(exit.to_string(), "killed by SIGKILL");
    assert!(killed_at.elapsed() < SLACK, "{:?}", killed_at.elapsed());
    assert_eq!(child.try_wait(), Some(ChildExit::Signal(9)));
    drop(pipes.stdin);
}

#[tokio::test]
async fn exit_codes_are_typed() {
    let (mut child, _pipes) = spawn(&sh("exit 3"), "exit-code");
    let exit = child.wait().await;
    assert_eq!(exit, ChildExit::Code(3));
    assert_eq!(exit.to_string(), "exited with code 3");
    assert_eq!(child.wait().await, ChildExit::Code(3), "wait is repeatable");
}

#[tokio::test]
async fn observed_exit_kills_what_the_child_left_in_its_group() {
    let (mut child, pipes) = spawn(&sh("sleep 300 & echo $!; read _; exit 4"), "exit-leftover");
    let mut stdout = BufReader::new(pipes.stdout);
    let grandchild: i32 = first_line(&mut stdout).await.parse().unwrap();
    drop(pipes.stdin);
    assert_eq!(child.wait().await, ChildExit::Code(4));
    // The supervisor is still alive: the leftover dies because the exit was observed.
    assert_dies(grandchild, "grandchild").await;
    assert_eq!(child.kill().await, ChildExit::Code(4), "kill after exit reports the exit");
}

#[tokio::test]
async fn kill_sends_sigkill_to_the_group() {
    let (mut child, _pipes) = spawn(&sh("trap '' TERM; sleep 300"), "exit-kill");
    let started = Instant::now();
    assert_eq!(child.kill().await, ChildExit::Signal(9));
    println!("killed after {:?}", started.elapsed());
    assert!(started.elapsed() < SLACK, "took {:?}", started.elapsed());
}

// ---------------------------------------------------------------------------------------
// Graceful stop

const GRACE: Duration = Duration::from_millis(200);
/// Upper bounds on a shared 2-core machine are generous; the figures are printed.
const SLACK: Duration = Duration::from_secs(5);
/// For children expected to exit on their own: long enough never to escalate on a loaded
/// machine, and never actually waited for.
const LONG_GRACE: Duration = Duration::from_secs(5);

#[tokio::test]
async fn stop_child_that_exits_on_eof_is_quick_and_successful() {
    let (child, pipes) = spawn(&exe("cat", &[]), "stop-eof");
    drop(pipes.stdin);
    let started = Instant::now();
    assert_eq!(child.stop(LONG_GRACE).await, ChildExit::Success);
    println!("stopped after {:?}", started.elapsed());
    assert!(started.elapsed() < SLACK, "took {:?}", started.elapsed());
}

#[tokio::test]
async fn stop_escalates_to_sigkill_for_a_child_ignoring_eof_and_sigterm() {
    let (child, pipes) = spawn(&sh("trap '' TERM; while :; do sleep 0.05; done"), "stop-stubborn");
    drop(pipes.stdin);
    let started = Instant::now();
    assert_eq!(child.stop(GRACE).await, ChildExit::Signal(9));
    let took = started.elapsed();
    println!("escalated to SIGKILL after {took:?} (2 × grace = {:?})", 2 * GRACE);
    assert!(took >= 2 * GRACE && took < 2 * GRACE + SLACK, "took {took:?}");
}

#[tokio::test]
async fn stop_child_that_traps_sigterm_and_exits_zero() {
    let (child, pipes) = spawn(&sh("trap 'exit 0' TERM; while :; do sleep 0.05; done"), "stop-trap");
    drop(pipes.stdin);
    let started = Instant::now();
    // Success (not SIGKILL) shows it exited within the second grace period.
    assert_eq!(child.stop(GRACE).await, ChildExit::Success);
    let took = started.elapsed();
    assert!(took >= GRACE, "took {took:?}");
}

#[tokio::test]
async fn stop_kills_grandchildren_when_escalating() {
    // The grandchild ignores SIGTERM too (ignored signals survive exec).
    let script = "trap '' TERM; sleep 300 & echo $!; while :; do sleep 0.05; done";
    let (child, pipes) = spawn(&sh(script), "stop-grandchild");
    let mut stdout = BufReader::new(pipes.stdout);
    let grandchild: i32 = first_line(&mut stdout).await.parse().unwrap();
    assert!(!is_dead(grandchild));
    drop(pipes.stdin);
    assert_eq!(child.stop(GRACE).await, ChildExit::Signal(9));
    assert_dies(grandchild, "grandchild").await;
}

#[tokio::test]
async fn stop_kills_grandchildren_left_behind_by_a_clean_exit() {
    let script = "sleep 300 & echo $!; read _; exit 0";
    let (child, pipes) = spawn(&sh(script), "stop-leftover");
    let mut stdout = BufReader::new(pipes.stdout);
    let grandchild: i32 = first_line(&mut stdout).await.parse().unwrap();
    drop(pipes.stdin);
    let started = Instant::now();
    assert_eq!(child.stop(LONG_GRACE).await, ChildExit::Success);
    println!("stopped after {:?}", started.elapsed());
    assert!(started.elapsed() < SLACK, "took {:?}", started.elapsed());
    assert_dies(grandchild, "grandchild").await;
}

// ---------------------------------------------------------------------------------------
// Drop

#[tokio::test]
async fn drop_kills_the_whole_group() {
    let (child, pipes) = spawn(&sh("sleep 300 & echo $!; sleep 300"), "drop-group");
    let mut stdout = BufReader::new(pipes.stdout);
    let grandchild: i32 = first_line(&mut stdout).await.parse().unwrap();
    let leader = child.pid() as i32;
    assert!(!is_dead(leader) && !is_dead(grandchild));
    drop(child);
    assert_dies(leader, "child").await;
    assert_dies(grandchild, "grandchild").await;
    // tokio reaps the killed leader in the background: it must not stay a zombie.
    let deadline = Instant::now() + Duration::from_secs(3);
    while std::path::Path::new(&format!("/proc/{leader}")).exists() {
        assert!(Instant::now() < deadline, "child {leader} was never reaped");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---------------------------------------------------------------------------------------
// Security: `executableName` never goes through a shell.

/// Arguments a shell would act on: command separators, substitutions, pipes, redirections,
/// globs, quotes, expansions and comments. `MARK` is replaced by a marker path that a shell
/// would create.
const SHELL_METACHARACTERS: &[&str] = &[
    ";",
    "touch",
    "MARK-semicolon",
    "$(touch${IFS}MARK-subst)",
    "`touch${IFS}MARK-backtick`",
    "|",
    "tee",
    "MARK-pipe",
    "&&",
    "touch",
    "MARK-and",
    "||",
    ">MARK-redirect",
    "*",
    "tests/*.rs",
    "?",
    "[a-z]*",
    "{a,b}",
    "~",
    "$HOME",
    "${PATH}",
    "\"double\"",
    "'single'",
    "back\\slash",
    "#not-a-comment",
    "&",
    "!",
];

/// Loads `executableName = <program> <args>` through the real configuration reader and
/// returns what the child should see as its arguments.
fn executable_from_properties(program: &str, marker_dir: &std::path::Path) -> (Executable, Vec<String>) {
    let args: Vec<String> = SHELL_METACHARACTERS
        .iter()
        .map(|a| a.replace("MARK", &marker_dir.join("pwned").display().to_string()))
        .collect();
    let value = std::iter::once(program.to_owned()).chain(args.iter().cloned()).collect::<Vec<_>>().join(" ");
    let file = marker_dir.join("app.properties");
    std::fs::write(
        &file,
        format!(
            "executableName = {}\napplicationName = app\nstreamName = s\nAWSCredentialsProvider = DefaultCredentialsProvider\n",
            // A backslash escapes the next character in a .properties value: double it.
            value.replace('\\', "\\\\")
        ),
    )
    .unwrap();
    let loaded = multilangd::config::Config::load(&file).unwrap();
    (loaded.config.executable, args)
}

async fn assert_arguments_reach_child_verbatim(program: &str, shard: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (executable, args) = executable_from_properties(program, dir.path());
    assert_eq!(executable.program, program);
    assert_eq!(executable.args, args, "the configuration splits on spaces only");
    let (mut child, pipes) = spawn(&executable, shard);
    let out = String::from_utf8(read_all(pipes).await).unwrap();
    let expected: String = args.iter().map(|a| format!("{a}\n")).collect();
    assert_eq!(out, expected, "arguments as the child received them");
    assert_eq!(child.wait().await, ChildExit::Success);
    let created: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name != "app.properties")
        .collect();
    assert!(created.is_empty(), "a shell ran something: {created:?}");
}

#[tokio::test]
async fn shell_metacharacters_in_arguments_reach_the_child_verbatim() {
    assert_arguments_reach_child_verbatim("./tests/children/print_args.sh", "spawn-metachar").await;
}

#[tokio::test]
async fn shell_metacharacters_reach_a_script_without_shebang_verbatim() {
    // The one case where /bin/sh is involved (Java's ENOEXEC fallback): sh runs the script
    // file with the arguments as positional parameters; it never parses them as commands.
    assert_arguments_reach_child_verbatim("./tests/children/print_args_no_shebang.sh", "spawn-metachar-sh").await;
}

#[tokio::test]
async fn shell_metacharacters_in_the_program_name_are_a_missing_program_not_a_command() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("pwned");
    for program in [format!("true;touch${{IFS}}{}", marker.display()), format!("$(touch${{IFS}}{})", marker.display())]
    {
        // Both contain a `/` (the marker path), so they are paths that do not exist.
        let err = ChildProcess::spawn(&exe(&program, &[]), "spawn-metachar-program").unwrap_err();
        assert!(err.to_string().contains(&program), "{program}: {err}");
    }
    assert!(!marker.exists(), "a shell ran the program name");
}
