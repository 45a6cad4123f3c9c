//! Spawning and supervising one record-processor child process per shard.
//!
//! [`ChildProcess::spawn`] starts the configured `executableName` for one shard exactly the
//! way the Java MultiLangDaemon does, and hands the child's stdin and stdout ([`ChildPipes`])
//! to the caller: the protocol session (`crate::protocol`) owns them and speaks the JSON-lines
//! protocol. This module never reads or writes the protocol; it owns the process itself.
//!
//! # Theory of operation
//!
//! ## What a [`ChildProcess`] owns
//! - The OS process (a `tokio::process::Child`, spawned with `kill_on_drop`), which is the
//!   leader of its **own process group** (`process_group(0)`, so pgid = pid).
//! - The stderr pipe and the task draining it into `tracing` (see below). The task's
//!   `JoinHandle` is held, awaited by [`stop`](ChildProcess::stop) and aborted on drop; it is
//!   never detached.
//! - Its identity: shard id, pid, spawn time and the resolved program path.
//!
//! The caller owns stdin and stdout. Closing stdin (dropping [`ChildPipes::stdin`]) is how
//! the protocol tells the child to finish; a caller that stops reading stdout should drop
//! [`ChildPipes::stdout`] so that a chatty child gets `EPIPE` instead of blocking.
//!
//! ## Launching (Java compatibility, see `multilang-protocol.md` §2.1)
//! - No shell, no quoting: the program and arguments come from [`Executable`].
//! - A program containing `/` is resolved against the daemon's current directory.
//! - A bare name is looked up on `PATH` only; the current directory is **not** searched
//!   (unless `PATH` itself names it: like the JDK and POSIX `execvp`, an empty `PATH` entry
//!   means `.`, and an unset `PATH` means `:/bin:/usr/bin`). Directories where the name
//!   exists but cannot be executed are skipped, and reported if nothing better is found.
//! - `argv[0]` is the program name as written; the environment and working directory are
//!   inherited unchanged; no arguments are added.
//! - The pipes are created close-on-exec, so one shard's child never inherits another
//!   child's pipe ends (which would keep that child's stdin open after the daemon closed it).
//! - A file the kernel cannot execute (`ENOEXEC`: typically a script without a `#!` line)
//!   is run as `/bin/sh <path> <args>`, as the JDK does.
//! - Every failure is a [`SpawnError`] naming the shard, the program, the resolved path and
//!   (for bare names) the `PATH` searched.
//!
//! ## Stderr
//! One task per child reads stderr for the child's whole life, so the child can never block
//! on a full stderr pipe. Each line becomes one `tracing` event at **INFO** with target
//! [`STDERR_LOG_TARGET`] and the fields `shard_id` and `pid`. Java logs these lines at ERROR,
//! but children commonly use stderr as their *only* log channel (stdout is the protocol,
//! and Python's `logging` writes to stderr by default), so the daemon cannot know a line's
//! severity; INFO under a dedicated target lets operators filter or raise it. Lines are
//! **not** echoed raw to the daemon's stderr as Java does: the daemon's own log already goes
//! to stderr, so echoing would print every line twice. `\n`, `\r` and `\r\n` end lines
//! (as `BufferedReader.readLine` in Java); a final line without a newline is logged at EOF;
//! each line is capped at [`MAX_STDERR_LINE_BYTES`] and the remainder is discarded as it is
//! read (the event then carries `discarded_bytes`), so memory stays bounded whatever the
//! child writes.
//!
//! ## Exit detection and stopping
//! [`wait`](ChildProcess::wait) resolves as soon as the child exits (tokio reaps it via
//! `SIGCHLD`/pidfd, not by polling) and is cancel safe, so the shard consumer can put it in
//! a `tokio::select!` next to protocol I/O and notice a crash even while idle. The exit is
//! typed ([`ChildExit`]) before anything logs it or acts on it.
//!
//! [`stop`](ChildProcess::stop) is the graceful path after `leaseLost`/`shardEnded` (the
//! caller has closed stdin): wait up to `grace` for the child to exit on EOF; then `SIGTERM`
//! to the group and wait up to `grace` again; then `SIGKILL` to the group. Java waits forever
//! instead, so one child ignoring EOF blocks its shard for good; bounding this is deliberate.
//! The stderr drain is then given a moment to reach EOF and log the last lines.
//! [`kill`](ChildProcess::kill) is the immediate path.
//!
//! The group lives and dies with its leader: as soon as the leader's exit is observed (by
//! any of `wait`, `try_wait`, `kill`, `stop`), whatever is left in its group gets `SIGKILL`.
//! This is also the only moment that is safe from pid reuse: the kernel keeps a group id
//! reserved while the group has members, but once it is empty the number can be handed to a
//! new process, quite possibly another shard's child, which is a group leader too. So the
//! group is never signalled after the exit has been observed, and `Drop` only signals it if
//! the exit has not been observed (the unreaped leader still holds the id).
//!
//! ## Why a process group
//! Record processors are often wrappers (`sh` → `python`, `npm` → `node`), and children can
//! fork helpers of their own. Signalling only the pid we spawned would orphan those
//! grandchildren, which keep running, keep the stderr pipe open, and may keep processing a
//! shard the daemon no longer owns. Signals therefore go to the whole group with `killpg`.
//! A second benefit: a terminal's Ctrl-C (`SIGINT` to the foreground group) reaches only the
//! daemon, which then shuts its children down in order instead of having them die mid-batch.
//! Processes that leave the group on purpose (`setsid`, `setpgid`) escape this; if the leader
//! itself did so, it is still signalled directly by pid.
//!
//! ## Failure modes
//! - *Spawn fails*: [`SpawnError`]; Java exits the daemon with status 1; what to do is the
//!   caller's decision.
//! - *Child crashes or exits early*: [`wait`](ChildProcess::wait) returns at once; the
//!   protocol session also sees EOF on stdout.
//! - *Child hangs*: the protocol timeout (caller) detects it; [`kill`](ChildProcess::kill) or
//!   dropping the supervisor ends it.
//! - *Child ignores EOF and `SIGTERM`*: [`stop`](ChildProcess::stop) escalates to `SIGKILL`
//!   after `2 × grace`.
//! - *`waitpid` itself fails* (only if something else reaped the child, i.e. a daemon bug):
//!   logged at ERROR and reported as [`ChildExit::Unknown`].
//! - *Supervisor dropped while the child runs* (task aborted, shard consumer panicked):
//!   `Drop` sends `SIGKILL` to the group and `kill_on_drop` kills the leader; tokio reaps it
//!   in the background, so no zombie is left.
//!
//! ## When the daemon itself dies
//! If the daemon is killed (`SIGKILL`, OOM, abort) no destructor runs, exactly as with the
//! Java daemon: the children are orphaned. Their stdin pipe closes, so they read EOF, and the
//! stock client libraries (amazon_kclpy, aws-kcl, aws-kclrb) then leave their read loop and
//! exit. A child that ignores EOF keeps running; `PR_SET_PDEATHSIG` would catch that but
//! needs an `unsafe` `pre_exec` hook, which this crate forbids. `std::process::exit` skips
//! destructors too, so the daemon must stop its shard consumers before exiting.
//!
//! ## Restarts are not done here
//! A crashed, hung or misbehaving child must only affect its own shard: the shard consumer
//! decides to restart it from the last checkpoint, after a delay from
//! [`crate::backoff::Backoff`] (exponential with a cap and jitter, reset after a healthy
//! period). This module supplies the mechanism (spawn, observe, stop), not the policy.

mod stderr;

use std::ffi::OsStr;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::Executable;

pub use stderr::{MAX_STDERR_LINE_BYTES, STDERR_LOG_TARGET};

/// The search path used when `PATH` is unset (the JDK's choice; the empty entry is `.`).
pub const DEFAULT_PATH: &str = ":/bin:/usr/bin";

/// The interpreter for executable files without a `#!` line.
const FALLBACK_SHELL: &str = "/bin/sh";

/// How long [`ChildProcess::stop`] waits, after the child exited, for stderr to reach EOF so
/// the last lines are logged. Only a process outside the group holding stderr makes it last.
const STDERR_EOF_TIMEOUT: Duration = Duration::from_secs(2);

/// How a child process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChildExit {
    /// Exited with status 0.
    Success,
    /// Exited with this non-zero status.
    Code(i32),
    /// Terminated by this signal number.
    Signal(i32),
    /// The exit status could not be collected (`waitpid` failed, which only happens if
    /// something else reaped the process). The process is gone.
    Unknown,
}

impl ChildExit {
    /// Whether the child exited with status 0.
    pub fn is_success(self) -> bool {
        self == ChildExit::Success
    }
}

impl From<ExitStatus> for ChildExit {
    fn from(status: ExitStatus) -> Self {
        match (status.code(), status.signal()) {
            (Some(0), _) => ChildExit::Success,
            (Some(code), _) => ChildExit::Code(code),
            (None, Some(signal)) => ChildExit::Signal(signal),
            // Stopped/continued statuses: `wait` does not request them, so never reported.
            (None, None) => ChildExit::Unknown,
        }
    }
}

impl std::fmt::Display for ChildExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            ChildExit::Success => f.write_str("exited with code 0"),
            ChildExit::Code(code) => write!(f, "exited with code {code}"),
            ChildExit::Signal(n) => match Signal::try_from(n) {
                Ok(signal) => write!(f, "killed by {}", signal.as_str()),
                Err(_) => write!(f, "killed by signal {n}"),
            },
            ChildExit::Unknown => f.write_str("exit status unknown"),
        }
    }
}

/// Why a child could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// `executableName` yields an empty program name (e.g. it starts with an escaped space).
    #[error("shard {shard_id}: cannot start the record processor: executableName {raw:?} has an empty program name")]
    EmptyProgram {
        /// The shard the child was for.
        shard_id: String,
        /// The raw `executableName`.
        raw: String,
    },
    /// A bare program name was not found in any `PATH` directory.
    #[error("shard {shard_id}: cannot start the record processor: `{program}` was not found on PATH ({path})")]
    NotOnPath {
        /// The shard the child was for.
        shard_id: String,
        /// The program as configured.
        program: String,
        /// The `PATH` searched.
        path: String,
    },
    /// A program given as a path does not exist.
    #[error("shard {shard_id}: cannot start the record processor: `{program}` ({resolved}) does not exist", resolved = resolved.display())]
    NotFound {
        /// The shard the child was for.
        shard_id: String,
        /// The program as configured.
        program: String,
        /// The absolute path tried.
        resolved: PathBuf,
    },
    /// The program exists but may not be executed (no execute permission, a directory, a
    /// `noexec` mount).
    #[error("shard {shard_id}: cannot start the record processor: `{program}` ({resolved}) is not executable (permission denied){}", searched_suffix(.path))]
    NotExecutable {
        /// The shard the child was for.
        shard_id: String,
        /// The program as configured.
        program: String,
        /// The file that could not be executed.
        resolved: PathBuf,
        /// The `PATH` searched, for a bare program name.
        path: Option<String>,
    },
    /// The program exists but the kernel reported "not found": its `#!` interpreter (or ELF
    /// loader) is missing.
    #[error("shard {shard_id}: cannot start the record processor: `{program}` ({resolved}) exists but its #! interpreter was not found", resolved = resolved.display())]
    InterpreterNotFound {
        /// The shard the child was for.
        shard_id: String,
        /// The program as configured.
        program: String,
        /// The file whose interpreter is missing.
        resolved: PathBuf,
    },
    /// Any other failure to start the process.
    #[error("shard {shard_id}: cannot start the record processor `{program}` ({resolved}): {source}", resolved = resolved.display())]
    Io {
        /// The shard the child was for.
        shard_id: String,
        /// The program as configured.
        program: String,
        /// The path that was being executed.
        resolved: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

fn searched_suffix(path: &Option<String>) -> String {
    path.as_ref().map(|p| format!(" (searched PATH {p})")).unwrap_or_default()
}

/// The child's protocol pipes, owned by the protocol session.
#[derive(Debug)]
pub struct ChildPipes {
    /// The child's stdin: the daemon writes actions here; dropping it sends EOF.
    pub stdin: ChildStdin,
    /// The child's stdout: the daemon reads the child's messages here, continuously.
    pub stdout: ChildStdout,
}

/// A running (or exited) record-processor child for one shard. See the [module
/// docs](self) for what it owns and how it stops.
///
/// Dropping it while the child runs sends `SIGKILL` to the child's whole process group.
#[derive(Debug)]
pub struct ChildProcess {
    child: Child,
    pid: u32,
    pgid: Pid,
    shard_id: Arc<str>,
    program: PathBuf,
    spawned_at: Instant,
    exit: Option<ChildExit>,
    stderr_drain: Option<JoinHandle<stderr::StderrStats>>,
}

impl ChildProcess {
    /// Starts `executable` for `shard_id` (see the module docs for the lookup rules) and
    /// returns the supervisor and the child's stdin/stdout.
    ///
    /// # Errors
    /// A [`SpawnError`] naming the program, the shard and where it was looked for.
    ///
    /// # Panics
    /// Outside a tokio runtime (the stderr drain is a tokio task).
    #[tracing::instrument(name = "child_spawn", skip_all, fields(shard_id = %shard_id, program = %executable.program))]
    pub fn spawn(executable: &Executable, shard_id: &str) -> Result<(Self, ChildPipes), SpawnError> {
        let started = start_here(executable, shard_id)?;
        Ok(Self::supervise(executable, shard_id, started))
    }

    /// [`ChildProcess::spawn`] without blocking the async runtime: the `PATH` search (file
    /// system look-ups) and the fork/exec run on the blocking pool.
    ///
    /// # Errors
    /// As [`ChildProcess::spawn`].
    pub async fn spawn_async(executable: &Executable, shard_id: &str) -> Result<(Self, ChildPipes), SpawnError> {
        let (exe, shard) = (executable.clone(), shard_id.to_owned());
        let started = match tokio::task::spawn_blocking(move || start_here(&exe, &shard)).await {
            Ok(started) => started?,
            Err(e) => {
                return Err(SpawnError::Io {
                    shard_id: shard_id.to_owned(),
                    program: executable.program.clone(),
                    resolved: PathBuf::from(&executable.program),
                    source: io::Error::other(e.to_string()),
                })
            }
        };
        Ok(Self::supervise(executable, shard_id, started))
    }

    fn supervise(executable: &Executable, shard_id: &str, started: (Child, PathBuf)) -> (Self, ChildPipes) {
        let (mut child, program) = started;

        let pid = child.id().expect("invariant: a freshly spawned child has not been reaped");
        let pgid = Pid::from_raw(i32::try_from(pid).expect("invariant: Linux pids fit in i32"));
        let stdin = child.stdin.take().expect("invariant: stdin is piped");
        let stdout = child.stdout.take().expect("invariant: stdout is piped");
        let stderr = child.stderr.take().expect("invariant: stderr is piped");
        let shard_id: Arc<str> = Arc::from(shard_id);
        let stderr_drain = tokio::spawn(stderr::drain(stderr, Arc::clone(&shard_id), pid));

        tracing::info!(pid, path = %program.display(), args = ?executable.args, "started record processor");
        let supervisor = ChildProcess {
            child,
            pid,
            pgid,
            shard_id,
            program,
            spawned_at: Instant::now(),
            exit: None,
            stderr_drain: Some(stderr_drain),
        };
        (supervisor, ChildPipes { stdin, stdout })
    }

    /// The child's pid (also its process group id).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The shard this child processes.
    pub fn shard_id(&self) -> &str {
        &self.shard_id
    }

    /// The program actually executed (absolute path; `/bin/sh` runs it if it had no `#!`).
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// When the child was started.
    pub fn spawned_at(&self) -> Instant {
        self.spawned_at
    }

    /// How long the child has been (or was, until now) running.
    pub fn uptime(&self) -> Duration {
        self.spawned_at.elapsed()
    }

    /// The exit, if it has already been observed by [`wait`](Self::wait),
    /// [`try_wait`](Self::try_wait), [`kill`](Self::kill) or [`stop`](Self::stop).
    pub fn exit(&self) -> Option<ChildExit> {
        self.exit
    }

    /// Waits until the child exits and returns how. Returns at once if it already has.
    ///
    /// When the exit is first observed, any processes left in the child's group are killed.
    ///
    /// # Cancel safety
    /// Cancel safe: use it in `tokio::select!` alongside protocol I/O.
    pub async fn wait(&mut self) -> ChildExit {
        if let Some(exit) = self.exit {
            return exit;
        }
        let exit = match self.child.wait().await {
            Ok(status) => ChildExit::from(status),
            Err(e) => self.wait_failed(&e),
        };
        self.record_exit(exit)
    }

    /// The exit if the child has exited, without waiting.
    pub fn try_wait(&mut self) -> Option<ChildExit> {
        if self.exit.is_some() {
            return self.exit;
        }
        let exit = match self.child.try_wait() {
            Ok(None) => return None,
            Ok(Some(status)) => ChildExit::from(status),
            Err(e) => self.wait_failed(&e),
        };
        Some(self.record_exit(exit))
    }

    /// Sends `SIGKILL` to the child's process group and waits for the child to exit.
    #[tracing::instrument(name = "child_kill", skip_all, fields(shard_id = %self.shard_id, pid = self.pid))]
    pub async fn kill(&mut self) -> ChildExit {
        self.signal_group(Signal::SIGKILL);
        self.wait().await
    }

    /// Stops the child gracefully; the caller must already have closed its stdin.
    ///
    /// Waits up to `grace` for the child to exit; then sends `SIGTERM` to its process group
    /// and waits up to `grace` again; then sends `SIGKILL` to the group. Once the child has
    /// exited, anything left in its group is killed and the stderr drain is given up to 2 s
    /// to log the last lines. Returns how the child exited.
    #[tracing::instrument(name = "child_stop", skip_all, fields(shard_id = %self.shard_id, pid = self.pid, ?grace))]
    pub async fn stop(mut self, grace: Duration) -> ChildExit {
        let exit = self.escalate(grace).await;
        self.finish().await;
        exit
    }

    async fn escalate(&mut self, grace: Duration) -> ChildExit {
        if let Ok(exit) = tokio::time::timeout(grace, self.wait()).await {
            return exit;
        }
        tracing::warn!(
            "child still running {grace:?} after its stdin was closed; sending SIGTERM to its process group"
        );
        self.signal_group(Signal::SIGTERM);
        if let Ok(exit) = tokio::time::timeout(grace, self.wait()).await {
            return exit;
        }
        tracing::warn!("child still running {grace:?} after SIGTERM; sending SIGKILL to its process group");
        self.signal_group(Signal::SIGKILL);
        self.wait().await
    }

    /// After the leader's exit (its group was already killed): let stderr reach EOF.
    async fn finish(&mut self) {
        if let Some(mut drain) = self.stderr_drain.take() {
            if tokio::time::timeout(STDERR_EOF_TIMEOUT, &mut drain).await.is_err() {
                tracing::warn!(
                    "child stderr still open {STDERR_EOF_TIMEOUT:?} after exit (held by a process outside its group); no longer logging it"
                );
                drain.abort();
            }
        }
    }

    /// Sends `signal` to the child's process group; if the group is gone but the leader is
    /// still our unreaped child (it left the group), to the leader directly. Does nothing
    /// once the exit has been observed (the group was killed then; see `record_exit`).
    fn signal_group(&mut self, signal: Signal) {
        if self.exit.is_some() {
            return;
        }
        match signal::killpg(self.pgid, signal) {
            Ok(()) => tracing::debug!(signal = signal.as_str(), "signalled the child's process group"),
            Err(Errno::ESRCH) => {
                // An unreaped pid cannot be reused, so signalling it by pid is safe here.
                if self.try_wait().is_none() {
                    if let Err(e) = signal::kill(self.pgid, signal) {
                        tracing::warn!(signal = signal.as_str(), error = %e, "could not signal the child");
                    }
                }
            }
            Err(e) => {
                tracing::warn!(signal = signal.as_str(), error = %e, "could not signal the child's process group");
            }
        }
    }

    fn wait_failed(&self, e: &io::Error) -> ChildExit {
        tracing::error!(shard_id = %self.shard_id, pid = self.pid, error = %e, "could not collect the child's exit status");
        ChildExit::Unknown
    }

    /// Called right after the leader was reaped: the group lives and dies with its leader,
    /// so anything left in it is killed now. Now is also the only safe moment: while members
    /// remain, the kernel keeps the group id reserved; once the group is empty the number may
    /// be reused (possibly by another shard's child, which is a group leader too), so the
    /// group is never signalled again after this.
    fn record_exit(&mut self, exit: ChildExit) -> ChildExit {
        self.exit = Some(exit);
        let uptime_ms = u64::try_from(self.uptime().as_millis()).unwrap_or(u64::MAX);
        tracing::info!(shard_id = %self.shard_id, pid = self.pid, %exit, uptime_ms, "record processor {exit}");
        match signal::killpg(self.pgid, Signal::SIGKILL) {
            Ok(()) => tracing::info!(
                shard_id = %self.shard_id,
                pid = self.pid,
                "killed processes the record processor left running in its process group"
            ),
            Err(Errno::ESRCH) => {}
            Err(e) => {
                tracing::warn!(shard_id = %self.shard_id, pid = self.pid, error = %e, "could not kill the child's process group")
            }
        }
        exit
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        // `kill_on_drop` covers the leader; this covers the rest of its group. Once the exit
        // has been observed the group was already killed (and its id may have been reused).
        if self.exit.is_none() {
            match signal::killpg(self.pgid, Signal::SIGKILL) {
                Ok(()) => tracing::warn!(
                    shard_id = %self.shard_id,
                    pid = self.pid,
                    "record processor dropped while running; killed its process group"
                ),
                Err(Errno::ESRCH) => {}
                Err(e) => tracing::warn!(
                    shard_id = %self.shard_id,
                    pid = self.pid,
                    error = %e,
                    "could not kill the child's process group"
                ),
            }
        }
        if let Some(drain) = self.stderr_drain.take() {
            drain.abort();
        }
    }
}

/// Where a program name leads.
#[derive(Debug, PartialEq, Eq)]
enum Lookup {
    /// A name with `/`: this one file.
    Direct(PathBuf),
    /// A bare name: these candidates in `PATH` order, and the `PATH` shown in errors.
    Search { candidates: Vec<PathBuf>, path: String },
}

fn lookup(program: &str, path_var: Option<&OsStr>, cwd: &Path) -> Lookup {
    if program.contains('/') {
        return Lookup::Direct(cwd.join(program));
    }
    let dirs = path_var.unwrap_or_else(|| OsStr::new(DEFAULT_PATH));
    let candidates = std::env::split_paths(dirs)
        .map(|dir| if dir.as_os_str().is_empty() { cwd.join(program) } else { cwd.join(dir).join(program) })
        .collect();
    let path = match path_var {
        Some(p) => p.to_string_lossy().into_owned(),
        None => format!("{DEFAULT_PATH} (PATH is unset)"),
    };
    Lookup::Search { candidates, path }
}

/// Resolves and starts the program; returns the child and the path executed.
/// [`start`] with this process's working directory and `PATH` (blocking: file system look-ups
/// and fork/exec).
fn start_here(executable: &Executable, shard_id: &str) -> Result<(Child, PathBuf), SpawnError> {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let path_var = std::env::var_os("PATH");
    start(executable, shard_id, path_var.as_deref(), &cwd)
}

fn start(
    executable: &Executable,
    shard_id: &str,
    path_var: Option<&OsStr>,
    cwd: &Path,
) -> Result<(Child, PathBuf), SpawnError> {
    let program = executable.program.as_str();
    if program.is_empty() {
        return Err(SpawnError::EmptyProgram { shard_id: shard_id.to_owned(), raw: executable.raw.clone() });
    }
    let io_error = |resolved: &Path, source| SpawnError::Io {
        shard_id: shard_id.to_owned(),
        program: program.to_owned(),
        resolved: resolved.to_path_buf(),
        source,
    };
    match lookup(program, path_var, cwd) {
        Lookup::Direct(path) => match exec(&path, program, &executable.args) {
            Ok(started) => Ok(started),
            Err(e) => Err(match Errno::from_raw(e.raw_os_error().unwrap_or(0)) {
                Errno::EACCES => SpawnError::NotExecutable {
                    shard_id: shard_id.to_owned(),
                    program: program.to_owned(),
                    resolved: path,
                    path: None,
                },
                Errno::ENOENT if path.is_file() => SpawnError::InterpreterNotFound {
                    shard_id: shard_id.to_owned(),
                    program: program.to_owned(),
                    resolved: path,
                },
                Errno::ENOENT | Errno::ENOTDIR => {
                    SpawnError::NotFound { shard_id: shard_id.to_owned(), program: program.to_owned(), resolved: path }
                }
                _ => io_error(&path, e),
            }),
        },
        Lookup::Search { candidates, path: searched } => {
            // Like the JDK's execvpe: try each entry; EACCES is remembered, "not found"
            // moves on, anything else is final.
            let mut denied = None;
            let mut bad_interpreter = None;
            for candidate in candidates {
                let Ok(meta) = std::fs::metadata(&candidate) else { continue };
                if meta.is_dir() {
                    denied.get_or_insert(candidate);
                    continue;
                }
                match exec(&candidate, program, &executable.args) {
                    Ok(started) => return Ok(started),
                    Err(e) => match Errno::from_raw(e.raw_os_error().unwrap_or(0)) {
                        Errno::EACCES => {
                            denied.get_or_insert(candidate);
                        }
                        Errno::ENOENT | Errno::ENOTDIR => {
                            bad_interpreter.get_or_insert(candidate);
                        }
                        _ => return Err(io_error(&candidate, e)),
                    },
                }
            }
            Err(match (denied, bad_interpreter) {
                (Some(resolved), _) => SpawnError::NotExecutable {
                    shard_id: shard_id.to_owned(),
                    program: program.to_owned(),
                    resolved,
                    path: Some(searched),
                },
                (None, Some(resolved)) => SpawnError::InterpreterNotFound {
                    shard_id: shard_id.to_owned(),
                    program: program.to_owned(),
                    resolved,
                },
                (None, None) => {
                    SpawnError::NotOnPath { shard_id: shard_id.to_owned(), program: program.to_owned(), path: searched }
                }
            })
        }
    }
}

/// Executes `path` (falling back to `/bin/sh path` on `ENOEXEC`).
fn exec(path: &Path, arg0: &str, args: &[String]) -> io::Result<(Child, PathBuf)> {
    match command(path, arg0, args).spawn() {
        Err(e) if e.raw_os_error() == Some(Errno::ENOEXEC as i32) => {
            tracing::debug!(path = %path.display(), "not directly executable (no #! line?); running it with {FALLBACK_SHELL}");
            let shell = Path::new(FALLBACK_SHELL);
            let mut cmd = command(shell, FALLBACK_SHELL, &[]);
            cmd.arg(path).args(args);
            Ok((cmd.spawn()?, path.to_path_buf()))
        }
        result => Ok((result?, path.to_path_buf())),
    }
}

fn command(path: &Path, arg0: &str, args: &[String]) -> Command {
    let mut cmd = Command::new(path);
    cmd.arg0(arg0)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_display() {
        assert_eq!(ChildExit::Success.to_string(), "exited with code 0");
        assert_eq!(ChildExit::Code(3).to_string(), "exited with code 3");
        assert_eq!(ChildExit::Signal(9).to_string(), "killed by SIGKILL");
        assert_eq!(ChildExit::Signal(15).to_string(), "killed by SIGTERM");
        assert_eq!(ChildExit::Signal(99).to_string(), "killed by signal 99");
        assert_eq!(ChildExit::Unknown.to_string(), "exit status unknown");
    }

    #[test]
    fn exit_from_status() {
        assert_eq!(ChildExit::from(ExitStatus::from_raw(0)), ChildExit::Success);
        assert_eq!(ChildExit::from(ExitStatus::from_raw(3 << 8)), ChildExit::Code(3));
        assert_eq!(ChildExit::from(ExitStatus::from_raw(9)), ChildExit::Signal(9));
        assert!(ChildExit::Success.is_success() && !ChildExit::Code(1).is_success());
    }

    #[test]
    fn slash_names_resolve_against_cwd() {
        let cwd = Path::new("/srv/app");
        assert_eq!(lookup("./run.sh", None, cwd), Lookup::Direct("/srv/app/./run.sh".into()));
        assert_eq!(lookup("bin/run", None, cwd), Lookup::Direct("/srv/app/bin/run".into()));
        assert_eq!(lookup("/usr/bin/env", None, cwd), Lookup::Direct("/usr/bin/env".into()));
    }

    #[test]
    fn bare_names_search_path_only() {
        let cwd = Path::new("/srv/app");
        let Lookup::Search { candidates, path } = lookup("app.py", Some(OsStr::new("/a:/b/c")), cwd) else {
            panic!("expected a PATH search")
        };
        assert_eq!(candidates, [PathBuf::from("/a/app.py"), PathBuf::from("/b/c/app.py")]);
        assert_eq!(path, "/a:/b/c");
    }

    #[test]
    fn empty_and_relative_path_entries_are_relative_to_cwd() {
        let cwd = Path::new("/srv/app");
        let Lookup::Search { candidates, .. } = lookup("x", Some(OsStr::new("/a::rel:")), cwd) else {
            panic!("expected a PATH search")
        };
        let expected = ["/a/x", "/srv/app/x", "/srv/app/rel/x", "/srv/app/x"].map(PathBuf::from);
        assert_eq!(candidates, expected);
    }

    fn script(dir: &Path, name: &str, mode: u32) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(name);
        std::fs::write(&path, "#!/bin/sh\necho \"$0\"\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    fn exe(program: &str) -> Executable {
        Executable { program: program.to_owned(), args: vec![], raw: program.to_owned() }
    }

    #[tokio::test]
    async fn path_search_skips_non_executable_entries_and_reports_them() {
        let (a, b, cwd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let denied = script(a.path(), "proc", 0o644);
        let path_var = std::env::join_paths([a.path(), b.path()]).unwrap();

        let err = start(&exe("proc"), "s-1", Some(&path_var), cwd.path()).unwrap_err();
        match err {
            SpawnError::NotExecutable { resolved, path: Some(searched), .. } => {
                assert_eq!(resolved, denied);
                assert_eq!(searched, path_var.to_string_lossy());
            }
            other => panic!("unexpected {other:?}"),
        }

        let runnable = script(b.path(), "proc", 0o755);
        let (mut child, used) = start(&exe("proc"), "s-1", Some(&path_var), cwd.path()).unwrap();
        assert_eq!(used, runnable);
        assert!(child.wait().await.unwrap().success());
    }

    #[tokio::test]
    async fn cwd_is_searched_only_through_an_empty_path_entry() {
        let (bin, cwd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let in_cwd = script(cwd.path(), "here", 0o755);
        let only_bin = bin.path().as_os_str().to_owned();
        let err = start(&exe("here"), "s-2", Some(&only_bin), cwd.path()).unwrap_err();
        assert!(matches!(err, SpawnError::NotOnPath { .. }), "{err:?}");

        let mut with_empty = only_bin.clone();
        with_empty.push(":");
        let (mut child, used) = start(&exe("here"), "s-2", Some(&with_empty), cwd.path()).unwrap();
        assert_eq!(used, in_cwd);
        assert!(child.wait().await.unwrap().success());
    }

    #[tokio::test]
    async fn missing_interpreter_is_reported_as_such() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad");
        std::fs::write(&path, "#!/nonexistent/interpreter\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = start(&exe("./bad"), "s-3", None, dir.path()).unwrap_err();
        assert!(matches!(err, SpawnError::InterpreterNotFound { .. }), "{err:?}");
        let err = start(&exe("bad"), "s-3", Some(dir.path().as_os_str()), dir.path()).unwrap_err();
        assert!(matches!(err, SpawnError::InterpreterNotFound { .. }), "{err:?}");
    }

    #[test]
    fn unset_path_uses_the_jdk_default() {
        let Lookup::Search { candidates, path } = lookup("x", None, Path::new("/w")) else {
            panic!("expected a PATH search")
        };
        assert_eq!(candidates, ["/w/x", "/bin/x", "/usr/bin/x"].map(PathBuf::from));
        assert!(path.contains("PATH is unset"), "{path}");
    }
}
