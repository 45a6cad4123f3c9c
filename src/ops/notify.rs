//! systemd's notify protocol (`Type=notify`), spoken over the datagram socket named by
//! `NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace).
//!
//! - `READY=1` once the worker is initialised (the scheduler's phase becomes `running`:
//!   lease table ready, first lease round done);
//! - `STATUS=…` when the picture changes (at most every [`STATUS_EVERY`]): phase, leases,
//!   running record processors, the largest `millisBehindLatest`;
//! - `WATCHDOG=1` every half `WATCHDOG_USEC` while the worker is live (see
//!   [`super::health::live`]); a stuck main loop stops the pings and systemd restarts the
//!   service. `WATCHDOG_PID`, when set, must be this process;
//! - `STOPPING=1` on the first SIGTERM/SIGINT.

use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::health::{self, HealthSettings};
use crate::status::{ShardPhase, StatusReceiver, WorkerPhase, WorkerStatus};

/// `STATUS=` lines are sent at most this often.
pub const STATUS_EVERY: Duration = Duration::from_secs(2);

/// Why the notify socket cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// `NOTIFY_SOCKET` is not an absolute path or `@name`.
    #[error("NOTIFY_SOCKET `{0}` is neither an absolute path nor @abstract-name")]
    Address(String),
    /// Creating or addressing the socket failed.
    #[error("notify socket: {0}")]
    Io(#[from] std::io::Error),
}

/// A connection to the service manager.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    address: UnixAddr,
    /// Half the watchdog period, when the watchdog is enabled for this process.
    pub watchdog_every: Option<Duration>,
}

impl Notifier {
    /// From the environment: `None` when `NOTIFY_SOCKET` is unset (not run by systemd).
    ///
    /// # Errors
    /// A malformed `NOTIFY_SOCKET` or socket errors.
    pub fn from_env() -> Result<Option<Self>, NotifyError> {
        let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else { return Ok(None) };
        let socket = socket.to_string_lossy().into_owned();
        let watchdog = watchdog_period(
            std::env::var("WATCHDOG_USEC").ok().as_deref(),
            std::env::var("WATCHDOG_PID").ok().as_deref(),
            std::process::id(),
        );
        Self::connect(&socket, watchdog).map(Some)
    }

    /// A notifier for the socket `name` (path or `@abstract`), with `watchdog` = the full
    /// watchdog period when enabled.
    ///
    /// # Errors
    /// A malformed name or socket errors.
    pub fn connect(name: &str, watchdog: Option<Duration>) -> Result<Self, NotifyError> {
        let address = if let Some(abstract_name) = name.strip_prefix('@') {
            use std::os::linux::net::SocketAddrExt;
            UnixAddr::from_abstract_name(abstract_name.as_bytes())?
        } else if name.starts_with('/') {
            UnixAddr::from_pathname(name)?
        } else {
            return Err(NotifyError::Address(name.to_owned()));
        };
        let socket = UnixDatagram::unbound()?;
        socket.set_nonblocking(true)?;
        Ok(Self { socket, address, watchdog_every: watchdog.map(|w| w / 2) })
    }

    /// Sends one message (`KEY=VALUE` lines).
    ///
    /// # Errors
    /// Socket errors (a full socket buffer included: the message is dropped).
    pub fn send(&self, message: &str) -> std::io::Result<()> {
        self.socket.send_to_addr(message.as_bytes(), &self.address).map(|_| ())
    }

    fn send_logged(&self, message: &str) {
        if let Err(e) = self.send(message) {
            warn!(error = %e, message, "cannot notify the service manager");
        } else {
            debug!(message, "notified the service manager");
        }
    }
}

/// The watchdog period from `WATCHDOG_USEC`, when set, positive and meant for `pid`.
#[must_use]
pub fn watchdog_period(usec: Option<&str>, watchdog_pid: Option<&str>, pid: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|&u| u > 0)?;
    if let Some(for_pid) = watchdog_pid {
        if for_pid.trim().parse::<u32>().ok() != Some(pid) {
            return None;
        }
    }
    Some(Duration::from_micros(usec))
}

/// The `STATUS=` text for a snapshot.
#[must_use]
pub fn status_line(status: &WorkerStatus) -> String {
    let children = status
        .shards
        .iter()
        .filter(|s| {
            matches!(
                s.phase,
                ShardPhase::Initializing | ShardPhase::Processing | ShardPhase::Paused | ShardPhase::ShuttingDown
            )
        })
        .count();
    let behind = status.shards.iter().filter_map(|s| s.millis_behind_latest).max();
    let mut line = format!("{}: {} leases, {} processors", status.phase.as_str(), status.shards.len(), children);
    if let Some(behind) = behind {
        line.push_str(&format!(", max {behind} ms behind latest"));
    }
    line
}

/// Runs the notify protocol until `stop`; sends `STOPPING=1` when `shutdown` is cancelled.
pub async fn run(
    notifier: Notifier,
    mut status: StatusReceiver,
    settings: HealthSettings,
    shutdown: CancellationToken,
    stop: CancellationToken,
) {
    let mut ready_sent = false;
    let mut stopping_sent = false;
    let mut last_status = String::new();
    let mut last_status_at: Option<Instant> = None;
    let far = Duration::from_secs(3600 * 24 * 365);
    let mut watchdog = tokio::time::interval(notifier.watchdog_every.unwrap_or(far));
    watchdog.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut status_tick = tokio::time::interval(STATUS_EVERY);
    status_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut status_open = true;
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            () = shutdown.cancelled(), if !stopping_sent => {
                stopping_sent = true;
                notifier.send_logged("STOPPING=1\nSTATUS=shutting down: stopping record processors, releasing leases");
            }
            changed = status.changed(), if status_open => {
                if changed.is_err() {
                    status_open = false;
                }
            }
            _ = watchdog.tick(), if notifier.watchdog_every.is_some() => {
                let snapshot = status.borrow().clone();
                match health::live(&snapshot, &settings, Instant::now()) {
                    Ok(()) => notifier.send_logged("WATCHDOG=1"),
                    Err(reason) => warn!(%reason, "not pinging the systemd watchdog: the worker is not live"),
                }
                continue;
            }
            _ = status_tick.tick() => {}
        }
        let snapshot = status.borrow_and_update().clone();
        if !ready_sent && snapshot.phase == WorkerPhase::Running {
            ready_sent = true;
            let line = status_line(&snapshot);
            notifier.send_logged(&format!("READY=1\nSTATUS={line}"));
            last_status = line;
            last_status_at = Some(Instant::now());
            continue;
        }
        if stopping_sent {
            continue;
        }
        let line = status_line(&snapshot);
        let due = last_status_at.is_none_or(|at| at.elapsed() >= STATUS_EVERY);
        if line != last_status && due {
            notifier.send_logged(&format!("STATUS={line}"));
            last_status = line;
            last_status_at = Some(Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::StatusPublisher;

    #[test]
    fn watchdog_settings() {
        assert_eq!(watchdog_period(Some("20000000"), None, 7), Some(Duration::from_secs(20)));
        assert_eq!(watchdog_period(Some("20000000"), Some("7"), 7), Some(Duration::from_secs(20)));
        assert_eq!(watchdog_period(Some("20000000"), Some("8"), 7), None, "meant for another process");
        assert_eq!(watchdog_period(Some("0"), None, 7), None);
        assert_eq!(watchdog_period(None, Some("7"), 7), None);
        assert!(Notifier::connect("relative/path", None).is_err());
    }

    fn receive(socket: &UnixDatagram) -> String {
        let mut buf = [0_u8; 4096];
        let n = socket.recv(&mut buf).expect("a datagram");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    /// The protocol on a real datagram socket: READY once running, watchdog pings at half the
    /// period, STOPPING on shutdown.
    #[tokio::test]
    async fn ready_watchdog_and_stopping_on_a_real_socket() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("notify.sock");
        let server = UnixDatagram::bind(&path).expect("bind");
        server.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        let notifier =
            Notifier::connect(path.to_str().expect("utf-8"), Some(Duration::from_millis(400))).expect("connect");
        assert_eq!(notifier.watchdog_every, Some(Duration::from_millis(200)));
        let (publisher, rx) = StatusPublisher::new(WorkerStatus::starting("w", "app", "app"));
        let shutdown = CancellationToken::new();
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(notifier, rx, HealthSettings::default(), shutdown.clone(), stop.clone()));

        // Starting is live: watchdog pings come, but no READY.
        let early = tokio::task::spawn_blocking({
            let server = server.try_clone().expect("clone");
            move || {
                let mut seen = Vec::new();
                loop {
                    let m = receive(&server);
                    let done = m == "WATCHDOG=1";
                    seen.push(m);
                    if done {
                        return seen;
                    }
                }
            }
        })
        .await
        .expect("join");
        assert!(early.iter().all(|m| !m.contains("READY=1")), "{early:?}");
        publisher.update(|s| s.phase = WorkerPhase::Running);
        let server2 = server.try_clone().expect("clone");
        let ready = tokio::task::spawn_blocking(move || loop {
            // Skipping pings and the STATUS lines sent while starting.
            let m = receive(&server2);
            if m.starts_with("READY=1") {
                return m;
            }
        })
        .await
        .expect("join");
        assert_eq!(ready, "READY=1\nSTATUS=running: 0 leases, 0 processors");
        shutdown.cancel();
        let server3 = server.try_clone().expect("clone");
        let stopping = tokio::task::spawn_blocking(move || loop {
            let m = receive(&server3);
            if m.starts_with("STOPPING=1") {
                return m;
            }
        })
        .await
        .expect("join");
        assert!(stopping.starts_with("STOPPING=1\n"), "{stopping}");
        stop.cancel();
        task.await.expect("no panic");
    }
}
