//! Operations: everything that watches the worker from outside and never steers it.
//!
//! - [`http`]: `multilangd.httpAddress` → `/metrics` ([`prometheus`]), `/healthz`, `/readyz`
//!   ([`health`]) and `/status`;
//! - [`cloudwatch`]: the KCL's CloudWatch metrics (`metricsLevel` …);
//! - [`notify`]: systemd `Type=notify` (READY, STATUS, WATCHDOG, STOPPING);
//! - a stall monitor that logs shards without progress.
//!
//! Inputs are the scheduler's [`StatusReceiver`] (state) and the [`crate::telemetry`] events
//! (things that happened); nothing here calls into the scheduler. [`Operations::start`] runs
//! before the worker and [`Operations::finish`] after it, so that `/healthz` answers and
//! systemd hears `STOPPING=1` during the graceful shutdown, and the last CloudWatch window is
//! flushed. The tasks live in one `JoinSet` and stop with one token ([`Operations::finish`]);
//! the daemon's shutdown token is only watched (for `STOPPING=1`).

pub mod cloudwatch;
pub mod health;
pub mod http;
pub mod notify;
pub mod process;
pub mod prometheus;

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use self::cloudwatch::{CloudWatchClient, CloudWatchSink, Dimensions, Publisher};
use self::health::HealthSettings;
use crate::aws::AwsError;
use crate::config::Config;
use crate::status::StatusReceiver;
use crate::telemetry::{self, Event, InstallGuard, Recorder, Sink};

/// How often the stall monitor looks at the snapshot.
const STALL_CHECK_EVERY: Duration = Duration::from_secs(1);
/// A shard that stays stalled is logged again after this long.
const STALL_REPEAT: Duration = Duration::from_secs(300);

/// Why operations could not start.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// The HTTP server could not start.
    #[error(transparent)]
    Http(#[from] http::HttpError),
    /// The CloudWatch client could not be built (no region).
    #[error(transparent)]
    CloudWatch(#[from] AwsError),
}

/// The running operations tasks.
#[derive(Debug)]
pub struct Operations {
    tasks: JoinSet<()>,
    stop: CancellationToken,
    _telemetry: InstallGuard,
    http_address: Option<std::net::SocketAddr>,
}

impl Operations {
    /// Starts what `config` asks for: the HTTP server (`http_address`), the CloudWatch
    /// publisher (unless `metricsLevel = NONE`), the systemd notifier (when `NOTIFY_SOCKET` is
    /// set), and the stall monitor; installs the telemetry recorder.
    ///
    /// # Errors
    /// A bad or busy HTTP address; no region for the CloudWatch client.
    pub async fn start(
        config: &Config,
        worker_id: &str,
        status: StatusReceiver,
        shutdown: CancellationToken,
    ) -> Result<Self, OpsError> {
        let settings = HealthSettings { stall_threshold: config.stall_threshold, ..HealthSettings::default() };
        let stop = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let mut sinks: Vec<Arc<dyn Sink>> = Vec::new();

        let mut cloudwatch_stats = None;
        if let Some(level) = cloudwatch::level_of(config.metrics_level) {
            let dimensions = Dimensions::from_list(&config.metrics_enabled_dimensions);
            let max_series = usize::try_from(config.metrics_max_queue_size).unwrap_or(usize::MAX);
            let sink = Arc::new(CloudWatchSink::new(level, dimensions, worker_id, max_series));
            let client = cloudwatch::client(config).await?;
            cloudwatch_stats = Some(sink.stats());
            sinks.push(sink.clone());
            let publisher = Publisher::new(
                sink,
                Arc::new(CloudWatchClient::new(client)),
                config.application_name.clone(),
                config.metrics_buffer_time,
            );
            info!(
                level = ?config.metrics_level,
                namespace = %config.application_name,
                endpoint = config.cloudwatch_endpoint.as_deref().unwrap_or("(AWS)"),
                buffer_ms = config.metrics_buffer_time.as_millis() as u64,
                "publishing KCL metrics to CloudWatch"
            );
            tasks.spawn(publisher.run(stop.clone()));
        }

        let mut http_address = None;
        if let Some(address) = config.http_address {
            let exporter = prometheus::Exporter::new(status.clone(), settings, cloudwatch_stats);
            sinks.push(exporter.sink());
            let state = http::HttpState { status: status.clone(), settings, exporter };
            let server = http::Server::bind(address, state).await?;
            http_address = server.local_addr().ok();
            tasks.spawn(server.serve(stop.clone()));
        }

        match notify::Notifier::from_env() {
            Ok(Some(notifier)) => {
                info!(watchdog = ?notifier.watchdog_every, "systemd notify socket found");
                tasks.spawn(notify::run(notifier, status.clone(), settings, shutdown, stop.clone()));
            }
            Ok(None) => {}
            Err(e) => warn!(error = %e, "systemd notification disabled"),
        }

        tasks.spawn(monitor_stalls(status, settings, stop.clone()));
        let guard = telemetry::install(Recorder::new(sinks));
        Ok(Self { tasks, stop, _telemetry: guard, http_address })
    }

    /// The bound HTTP address, if the server runs.
    #[must_use]
    pub fn http_address(&self) -> Option<std::net::SocketAddr> {
        self.http_address
    }

    /// Stops every task: the HTTP server closes, the last CloudWatch window is flushed
    /// (bounded), the recorder is removed.
    pub async fn finish(mut self) {
        self.stop.cancel();
        while let Some(result) = self.tasks.join_next().await {
            if let Err(e) = result {
                if e.is_panic() {
                    warn!(error = %e, "an operations task panicked");
                }
            }
        }
    }
}

/// Logs a warning (and counts a stall) when a held shard becomes stalled, again every
/// [`STALL_REPEAT`] while it stays stalled, and an info line when it recovers.
async fn monitor_stalls(status: StatusReceiver, settings: HealthSettings, stop: CancellationToken) {
    let mut logged: std::collections::HashMap<String, Instant> = std::collections::HashMap::new();
    let mut tick = tokio::time::interval(STALL_CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let snapshot = status.borrow().clone();
        let now = Instant::now();
        let stalls = health::stalled_shards(&snapshot, &settings, now);
        for stall in &stalls {
            let due = logged.get(&stall.shard_id).is_none_or(|at| now.duration_since(*at) >= STALL_REPEAT);
            if due {
                warn!(
                    shard = %stall.shard_id,
                    stalled_for_s = stall.for_.as_secs(),
                    "shard stalled: {}",
                    stall.what
                );
                telemetry::record(Event::ShardStalled { shard_id: &stall.shard_id, for_: stall.for_ });
                logged.insert(stall.shard_id.clone(), now);
            }
        }
        logged.retain(|shard, _| {
            let still = stalls.iter().any(|s| &s.shard_id == shard);
            if !still {
                info!(shard = %shard, "shard no longer stalled");
            }
            still
        });
    }
}
