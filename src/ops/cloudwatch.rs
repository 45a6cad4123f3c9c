//! CloudWatch metrics as the KCL MultiLangDaemon publishes them.
//!
//! Telemetry events are mapped onto the KCL's metric names, units and dimensions
//! ([`kcl_datums`]): namespace = `applicationName`, dimension `Operation` always (the KCL
//! "scope": `ProcessTask`, `TakeLeases`, `RenewAllLeases`, ...), `ShardId` on per-shard scopes
//! and `WorkerIdentifier` on worker-level lease scopes, each metric at the KCL's level
//! (SUMMARY or DETAILED). The set was recorded from the Java daemon 2.5.8 against moto
//! (`tests/fixtures/cloudwatch/`) and is compared end to end in `tests/e2e_ops.rs`.
//!
//! Off the hot path, as in Java: the [`CloudWatchSink`] only folds each value into an
//! in-memory statistic set (count, sum, min, max) per (metric, dimensions) under a short
//! mutex; at most `metricsMaxQueueSize` distinct series are kept per window, and values for
//! new series beyond that are dropped and counted. The [`Publisher`] task swaps the window out
//! every `metricsBufferTimeMillis` and sends it with `PutMetricData`, at most
//! [`MAX_DATA_PER_REQUEST`] data per request, each request bounded by a timeout. A failed
//! request drops its data (metrics are not worth delaying the next window for); failures are
//! logged once, then at most once per [`WARN_EVERY`] with a count.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::MetricsLevel;
use crate::telemetry::{Event, LeaseOperation, ProcessorAction, Service, Sink};

/// CloudWatch's limit of data per `PutMetricData` request.
pub const MAX_DATA_PER_REQUEST: usize = 1000;
/// Repeated publish failures are logged at most this often.
pub const WARN_EVERY: Duration = Duration::from_secs(300);
/// Longest wait for one `PutMetricData` request.
pub const PUT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for the final flush at shutdown.
pub const FINAL_FLUSH_TIMEOUT: Duration = Duration::from_secs(3);

/// A CloudWatch unit (the ones the KCL uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unit {
    /// A count.
    Count,
    /// Milliseconds.
    Milliseconds,
    /// Bytes.
    Bytes,
}

/// The KCL's metric levels (a metric is published when its level is at most the configured one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Published at SUMMARY and DETAILED.
    Summary,
    /// Published at DETAILED only.
    Detailed,
}

/// One value of one KCL metric, before dimension filtering.
#[derive(Debug, Clone, PartialEq)]
pub struct KclDatum {
    /// The KCL operation (`Operation` dimension).
    pub operation: &'static str,
    /// The metric name.
    pub name: Cow<'static, str>,
    /// The `ShardId` dimension, on per-shard scopes.
    pub shard_id: Option<String>,
    /// Whether the scope carries the `WorkerIdentifier` dimension.
    pub worker: bool,
    /// The value.
    pub value: f64,
    /// Its unit.
    pub unit: Unit,
    /// Its level.
    pub level: Level,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn flag(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

/// The KCL metrics an event stands for (all levels; the sink filters).
#[must_use]
pub fn kcl_datums(event: &Event<'_>) -> Vec<KclDatum> {
    let mut out = Vec::new();
    let mut push = |operation: &'static str,
                    name: Cow<'static, str>,
                    shard: Option<&str>,
                    worker: bool,
                    value: f64,
                    unit: Unit,
                    level: Level| {
        out.push(KclDatum { operation, name, shard_id: shard.map(str::to_owned), worker, value, unit, level });
    };
    use Level::{Detailed as D, Summary as S};
    use Unit::{Bytes, Count, Milliseconds as Ms};
    match *event {
        Event::AwsCall { service: Service::Kinesis, operation, shard_id: Some(shard), duration, error } => {
            let (success, time) = match operation {
                "GetRecords" => ("KinesisDataFetcher.getRecords.Success", "KinesisDataFetcher.getRecords.Time"),
                "GetShardIterator" => {
                    ("KinesisDataFetcher.getShardIterator.Success", "KinesisDataFetcher.getShardIterator.Time")
                }
                _ => return out,
            };
            push("ProcessTask", success.into(), Some(shard), false, flag(error.is_none()), Count, D);
            push("ProcessTask", time.into(), Some(shard), false, ms(duration), Ms, D);
        }
        // The KCL publishes no per-call metrics beyond the per-shard reader ones above.
        Event::AwsCall { .. } | Event::SdkCall { .. } => {}
        Event::LeaseCall { op, duration, success, .. } => {
            let (operation, worker, prefix) = match op {
                LeaseOperation::List => ("TakeLeases", true, "ListLeases"),
                LeaseOperation::Take => ("TakeLeases", true, "TakeLease"),
                LeaseOperation::Renew => ("RenewAllLeases", true, "RenewLease"),
                LeaseOperation::Create { .. } => ("ShardSyncTask", false, "CreateLease"),
            };
            push(operation, format!("{prefix}.Success").into(), None, worker, flag(success), Count, D);
            push(operation, format!("{prefix}.Time").into(), None, worker, ms(duration), Ms, D);
            if let LeaseOperation::Create { initial_position } = op {
                let name = format!("CreateLease_{initial_position}.Success");
                push(operation, name.into(), None, false, flag(success), Count, D);
            }
        }
        Event::TakeLeasesRound {
            taken,
            untaken,
            expired,
            total,
            workers,
            needed,
            to_take,
            spillover,
            very_old,
            duration,
            success,
            ..
        } => {
            let op = "TakeLeases";
            for (name, value, level) in [
                ("TakenLeases", taken, S),
                ("UntakenLeases", untaken, S),
                ("ExpiredLeases", expired, S),
                ("LeaseSpillover", spillover, S),
                ("NumWorkers", workers, S),
                ("VeryOldLeases", very_old, S),
                ("LeasesToTake", to_take, D),
                ("NeededLeases", needed, D),
                ("TotalLeases", total, D),
            ] {
                push(op, name.into(), None, true, value as f64, Count, level);
            }
            push(op, "Success".into(), None, true, flag(success), Count, S);
            push(op, "Time".into(), None, true, ms(duration), Ms, S);
        }
        Event::RenewalRound { current, lost, failed, duration, .. } => {
            let op = "RenewAllLeases";
            push(op, "LostLeases".into(), None, true, lost as f64, Count, S);
            push(op, "CurrentLeases".into(), None, true, current as f64, Count, S);
            push(op, "Success".into(), None, true, flag(failed == 0), Count, S);
            push(op, "Time".into(), None, true, ms(duration), Ms, S);
        }
        Event::ShardSync { duration, success, .. } => {
            let op = "ShardSyncTask";
            push(op, "SyncShards.Success".into(), None, false, flag(success), Count, D);
            push(op, "Success".into(), None, false, flag(success), Count, S);
            push(op, "Time".into(), None, false, ms(duration), Ms, S);
        }
        Event::PeriodicShardSync { streams_with_partial_leases, streams_to_sync, skipped, duration, success } => {
            let op = "PeriodicShardSyncManager";
            push(op, "NumStreamsWithPartialLeases".into(), None, false, streams_with_partial_leases as f64, Count, S);
            push(op, "NumStreamsToSync".into(), None, false, streams_to_sync as f64, Count, S);
            push(op, "NumSkippedShardSyncTask".into(), None, false, skipped as f64, Count, S);
            push(op, "Success".into(), None, false, flag(success), Count, S);
            push(op, "Time".into(), None, false, ms(duration), Ms, S);
        }
        Event::ProcessorAction { shard_id, action, duration, .. } => match action {
            ProcessorAction::Initialize => {
                push("InitializeTask", "RecordProcessor.initialize.Time".into(), None, false, ms(duration), Ms, S);
            }
            ProcessorAction::ProcessRecords => {
                let name = "RecordProcessor.processRecords.Time";
                push("ProcessTask", name.into(), Some(shard_id), false, ms(duration), Ms, S);
            }
            ProcessorAction::Shutdown => {
                push("ShutdownTask", "RecordProcessor.shutdown.Time".into(), None, false, ms(duration), Ms, S);
            }
        },
        Event::RecordsProcessed { shard_id, records, bytes, millis_behind_latest, duration } => {
            let op = "ProcessTask";
            let shard = Some(shard_id);
            push(op, "RecordsProcessed".into(), shard, false, records as f64, Count, S);
            push(op, "DataBytesProcessed".into(), shard, false, bytes as f64, Bytes, S);
            if let Some(behind) = millis_behind_latest {
                push(op, "MillisBehindLatest".into(), shard, false, behind as f64, Ms, S);
                push("ApplicationTracker", "MillisBehindLatest".into(), None, false, behind as f64, Ms, S);
            }
            push(op, "Success".into(), shard, false, 1.0, Count, S);
            push(op, "Time".into(), shard, false, ms(duration), Ms, S);
        }
        Event::ExpiredIterator { shard_id } => {
            push("ProcessTask", "ExpiredIterator".into(), Some(shard_id), false, 1.0, Count, S);
        }
        Event::Checkpoint { shard_id, duration, failure } => {
            let shard = Some(shard_id);
            push("ProcessTask", "UpdateLease.Success".into(), shard, false, flag(failure.is_none()), Count, D);
            push("ProcessTask", "UpdateLease.Time".into(), shard, false, ms(duration), Ms, D);
        }
        Event::LeaseTaken { .. }
        | Event::LeaseLost { .. }
        | Event::DeliveryPaused { .. }
        | Event::WorkerInitialized { .. }
        | Event::LeaderChecked { .. }
        | Event::ChildStarted { .. }
        | Event::ChildExited { .. }
        | Event::ConsumerRestarted { .. }
        | Event::ShardStalled { .. } => {}
    }
    out
}

/// Which dimensions are published (`metricsEnabledDimensions`). `Operation` is always kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dimensions {
    /// Keep `ShardId`.
    pub shard_id: bool,
    /// Keep `WorkerIdentifier`.
    pub worker_identifier: bool,
}

impl Dimensions {
    /// From the `metricsEnabledDimensions` list (`ALL` enables every dimension).
    #[must_use]
    pub fn from_list(list: &[String]) -> Self {
        let all = list.iter().any(|d| d.eq_ignore_ascii_case("ALL"));
        Self {
            shard_id: all || list.iter().any(|d| d == "ShardId"),
            worker_identifier: all || list.iter().any(|d| d == "WorkerIdentifier"),
        }
    }
}

/// One series within a window.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SeriesKey {
    /// `Operation`.
    pub operation: &'static str,
    /// Metric name.
    pub name: Cow<'static, str>,
    /// `ShardId`, when enabled and present.
    pub shard_id: Option<String>,
    /// `WorkerIdentifier`, when enabled and present.
    pub worker_id: Option<Arc<str>>,
    /// Unit.
    pub unit: Unit,
}

/// Count, sum, min and max of the values of one series in a window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Statistics {
    /// Values.
    pub count: u64,
    /// Their sum.
    pub sum: f64,
    /// The smallest.
    pub min: f64,
    /// The largest.
    pub max: f64,
    /// When the first value came.
    pub first_at: SystemTime,
}

impl Statistics {
    fn new(value: f64, at: SystemTime) -> Self {
        Self { count: 1, sum: value, min: value, max: value, first_at: at }
    }

    fn add(&mut self, value: f64) {
        self.count += 1;
        self.sum += value;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
    }
}

/// Counters of the publisher, for `/metrics`.
#[derive(Debug, Default)]
pub struct PublisherStats {
    queued: AtomicU64,
    dropped: AtomicU64,
    published: AtomicU64,
    failures: AtomicU64,
    last_error: Mutex<Option<String>>,
}

/// A copy of [`PublisherStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PublisherCounts {
    /// Values accepted.
    pub queued: u64,
    /// Values dropped (window full).
    pub dropped: u64,
    /// Aggregated data sent successfully.
    pub published: u64,
    /// Failed requests.
    pub failures: u64,
}

impl PublisherStats {
    /// The current counts.
    #[must_use]
    pub fn snapshot(&self) -> PublisherCounts {
        PublisherCounts {
            queued: self.queued.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            published: self.published.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
        }
    }

    /// The last publishing error, if any.
    #[must_use]
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }
}

type Window = HashMap<SeriesKey, Statistics>;

/// The telemetry sink: folds KCL data into the current window.
#[derive(Debug)]
pub struct CloudWatchSink {
    level: Level,
    dimensions: Dimensions,
    worker_id: Arc<str>,
    max_series: usize,
    window: Mutex<Window>,
    stats: Arc<PublisherStats>,
}

impl CloudWatchSink {
    /// A sink for `level` (`None` for `metricsLevel = NONE`: then nothing should be built).
    #[must_use]
    pub fn new(level: Level, dimensions: Dimensions, worker_id: &str, max_series: usize) -> Self {
        Self {
            level,
            dimensions,
            worker_id: Arc::from(worker_id),
            max_series: max_series.max(1),
            window: Mutex::new(HashMap::new()),
            stats: Arc::new(PublisherStats::default()),
        }
    }

    /// The counters.
    #[must_use]
    pub fn stats(&self) -> Arc<PublisherStats> {
        self.stats.clone()
    }

    /// Takes the current window, leaving an empty one.
    pub fn take_window(&self) -> Window {
        match self.window.lock() {
            Ok(mut w) => std::mem::take(&mut *w),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        }
    }

    fn add(&self, datum: KclDatum, now: SystemTime) {
        let key = SeriesKey {
            operation: datum.operation,
            name: datum.name,
            shard_id: datum.shard_id.filter(|_| self.dimensions.shard_id),
            worker_id: (datum.worker && self.dimensions.worker_identifier).then(|| self.worker_id.clone()),
            unit: datum.unit,
        };
        let mut window = match self.window.lock() {
            Ok(w) => w,
            Err(poisoned) => poisoned.into_inner(),
        };
        let full = window.len() >= self.max_series;
        match window.get_mut(&key) {
            Some(stats) => stats.add(datum.value),
            None if full => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            None => {
                window.insert(key, Statistics::new(datum.value, now));
            }
        }
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
    }
}

impl Sink for CloudWatchSink {
    fn record(&self, event: &Event<'_>) {
        let data = kcl_datums(event);
        if data.is_empty() {
            return;
        }
        let now = SystemTime::now();
        for datum in data {
            if datum.level <= self.level {
                self.add(datum, now);
            }
        }
    }
}

/// The level for `metricsLevel`, `None` for NONE.
#[must_use]
pub fn level_of(level: MetricsLevel) -> Option<Level> {
    match level {
        MetricsLevel::None => None,
        MetricsLevel::Summary => Some(Level::Summary),
        MetricsLevel::Detailed => Some(Level::Detailed),
    }
}

/// Why a `PutMetricData` request failed.
#[derive(Debug, thiserror::Error)]
pub enum PutError {
    /// The service or the network failed.
    #[error("PutMetricData failed: {0}")]
    Service(String),
    /// No answer within [`PUT_TIMEOUT`].
    #[error("PutMetricData timed out after {0:?}")]
    Timeout(Duration),
}

/// Where windows go (CloudWatch, or a test double).
#[async_trait]
pub trait MetricsClient: Send + Sync {
    /// Sends one request's worth of data.
    async fn put(&self, namespace: &str, data: &[(SeriesKey, Statistics)]) -> Result<(), PutError>;
}

/// The CloudWatch client.
#[derive(Debug, Clone)]
pub struct CloudWatchClient {
    client: aws_sdk_cloudwatch::Client,
}

impl CloudWatchClient {
    /// Wraps an SDK client.
    #[must_use]
    pub fn new(client: aws_sdk_cloudwatch::Client) -> Self {
        Self { client }
    }
}

fn datum(key: &SeriesKey, s: &Statistics) -> aws_sdk_cloudwatch::types::MetricDatum {
    use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit, StatisticSet};
    let mut builder = MetricDatum::builder()
        .metric_name(key.name.as_ref())
        .dimensions(Dimension::builder().name("Operation").value(key.operation).build());
    if let Some(shard) = &key.shard_id {
        builder = builder.dimensions(Dimension::builder().name("ShardId").value(shard).build());
    }
    if let Some(worker) = &key.worker_id {
        builder = builder.dimensions(Dimension::builder().name("WorkerIdentifier").value(worker.as_ref()).build());
    }
    let unit = match key.unit {
        Unit::Count => StandardUnit::Count,
        Unit::Milliseconds => StandardUnit::Milliseconds,
        Unit::Bytes => StandardUnit::Bytes,
    };
    builder
        .unit(unit)
        .timestamp(aws_sdk_cloudwatch::primitives::DateTime::from(s.first_at))
        .statistic_values(
            StatisticSet::builder().sample_count(s.count as f64).sum(s.sum).minimum(s.min).maximum(s.max).build(),
        )
        .build()
}

#[async_trait]
impl MetricsClient for CloudWatchClient {
    async fn put(&self, namespace: &str, data: &[(SeriesKey, Statistics)]) -> Result<(), PutError> {
        let request = self
            .client
            .put_metric_data()
            .namespace(namespace)
            .set_metric_data(Some(data.iter().map(|(k, s)| datum(k, s)).collect()));
        match tokio::time::timeout(PUT_TIMEOUT, request.send()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(PutError::Service(aws_sdk_cloudwatch::error::DisplayErrorContext(e).to_string())),
            Err(_) => Err(PutError::Timeout(PUT_TIMEOUT)),
        }
    }
}

/// Builds the CloudWatch SDK client: region `cloudWatchClient.region`, else `regionName`, else
/// the SDK region chain; endpoint `cloudWatchClient.endpointOverride` / `cloudWatchEndpoint`
/// only (`AWS_ENDPOINT_URL*` is ignored, as by the Java daemon); credentials
/// `AWSCredentialsProviderCloudWatch`, else `AWSCredentialsProvider`. Short timeouts and one
/// retry: a window that cannot be sent is dropped.
///
/// # Errors
/// [`AwsError::NoRegion`] when no region is found.
pub async fn client(config: &crate::config::Config) -> Result<aws_sdk_cloudwatch::Client, crate::aws::AwsError> {
    use aws_config::{BehaviorVersion, Region};
    let region = match config.cloudwatch_region.as_ref().or(config.region.as_ref()) {
        Some(r) => Some(Region::new(r.clone())),
        None => aws_config::default_provider::region::DefaultRegionChain::builder().build().region().await,
    };
    let region =
        region.ok_or(crate::aws::AwsError::NoRegion { client: "CloudWatch", key: "cloudWatchClient.region" })?;
    let spec = config.credentials_cloudwatch.as_ref().unwrap_or(&config.credentials);
    let credentials = crate::aws::credentials_provider(spec, &region).await;
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(3))
        .operation_attempt_timeout(Duration::from_secs(4))
        .operation_timeout(PUT_TIMEOUT)
        .build();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(region)
        .timeout_config(timeouts)
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(2));
    loader = match credentials {
        Some(provider) => loader.credentials_provider(provider),
        None => loader.no_credentials(),
    };
    let shared = loader.load().await;
    // Setting the endpoint on the service config (to the key's value or to nothing) drops
    // what AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_CLOUDWATCH said.
    let mut service = aws_sdk_cloudwatch::config::Builder::from(&shared)
        .interceptor(crate::aws::call_metrics::CallMetrics::new(crate::telemetry::Service::CloudWatch));
    service.set_endpoint_url(config.cloudwatch_endpoint.clone());
    let service = service.build();
    Ok(aws_sdk_cloudwatch::Client::from_conf(service))
}

/// The publishing task.
pub struct Publisher {
    sink: Arc<CloudWatchSink>,
    client: Arc<dyn MetricsClient>,
    namespace: String,
    every: Duration,
    failures_since_warning: u64,
    last_warning: Option<Instant>,
    failing: bool,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher").field("namespace", &self.namespace).field("every", &self.every).finish()
    }
}

impl Publisher {
    /// A publisher flushing `sink` to `client` every `every` under `namespace`.
    #[must_use]
    pub fn new(sink: Arc<CloudWatchSink>, client: Arc<dyn MetricsClient>, namespace: String, every: Duration) -> Self {
        Self {
            sink,
            client,
            namespace,
            every: every.max(Duration::from_millis(10)),
            failures_since_warning: 0,
            last_warning: None,
            failing: false,
        }
    }

    /// Flushes every `metricsBufferTimeMillis` until `stop`, then once more (bounded).
    pub async fn run(mut self, stop: CancellationToken) {
        let mut tick = tokio::time::interval_at(Instant::now() + self.every, self.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = tick.tick() => self.flush().await,
            }
        }
        if tokio::time::timeout(FINAL_FLUSH_TIMEOUT, self.flush()).await.is_err() {
            warn!("CloudWatch: the final metrics flush did not finish within {FINAL_FLUSH_TIMEOUT:?}; dropped");
        }
    }

    /// Sends the current window.
    pub async fn flush(&mut self) {
        let window: Vec<(SeriesKey, Statistics)> = self.sink.take_window().into_iter().collect();
        for chunk in window.chunks(MAX_DATA_PER_REQUEST) {
            match self.client.put(&self.namespace, chunk).await {
                Ok(()) => {
                    self.sink.stats.published.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                    if self.failing {
                        info!(failures = self.failures_since_warning, "CloudWatch: publishing metrics works again");
                        self.failing = false;
                        self.failures_since_warning = 0;
                    }
                }
                Err(e) => {
                    self.sink.stats.failures.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut last) = self.sink.stats.last_error.lock() {
                        *last = Some(e.to_string());
                    }
                    self.failures_since_warning += 1;
                    self.failing = true;
                    let now = Instant::now();
                    if self.last_warning.is_none_or(|at| now.duration_since(at) >= WARN_EVERY) {
                        warn!(
                            failures = self.failures_since_warning,
                            dropped_data = chunk.len(),
                            "CloudWatch: cannot publish metrics ({e}); record processing is not affected; \
                             next warning in {} s at the earliest",
                            WARN_EVERY.as_secs()
                        );
                        self.last_warning = Some(now);
                        self.failures_since_warning = 0;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::Recorder;
    use std::collections::BTreeSet;

    fn sink(level: Level, dims: &[&str]) -> Arc<CloudWatchSink> {
        let dims: Vec<String> = dims.iter().map(|d| (*d).to_owned()).collect();
        Arc::new(CloudWatchSink::new(level, Dimensions::from_list(&dims), "worker-1", 10_000))
    }

    fn all_events() -> Vec<Event<'static>> {
        let d = Duration::from_millis(5);
        vec![
            Event::AwsCall {
                service: Service::Kinesis,
                shard_id: Some("s-0"),
                operation: "GetRecords",
                duration: d,
                error: None,
            },
            Event::AwsCall {
                service: Service::Kinesis,
                shard_id: Some("s-0"),
                operation: "GetShardIterator",
                duration: d,
                error: None,
            },
            Event::LeaseCall { op: LeaseOperation::List, shard_id: None, duration: d, success: true },
            Event::LeaseCall { op: LeaseOperation::Take, shard_id: Some("s-0"), duration: d, success: true },
            Event::LeaseCall { op: LeaseOperation::Renew, shard_id: Some("s-0"), duration: d, success: true },
            Event::LeaseCall {
                op: LeaseOperation::Create { initial_position: "TRIM_HORIZON" },
                shard_id: Some("s-0"),
                duration: d,
                success: true,
            },
            Event::TakeLeasesRound {
                worker_id: "worker-1",
                taken: 2,
                untaken: 0,
                expired: 2,
                total: 2,
                workers: 1,
                needed: 2,
                to_take: 2,
                spillover: 0,
                very_old: 0,
                duration: d,
                success: true,
            },
            Event::RenewalRound { worker_id: "worker-1", current: 2, lost: 0, failed: 0, duration: d },
            Event::ShardSync { created: 2, duration: d, success: true },
            Event::PeriodicShardSync {
                streams_with_partial_leases: 0,
                streams_to_sync: 0,
                skipped: 0,
                duration: d,
                success: true,
            },
            Event::ProcessorAction { shard_id: "s-0", action: ProcessorAction::Initialize, duration: d, success: true },
            Event::ProcessorAction {
                shard_id: "s-0",
                action: ProcessorAction::ProcessRecords,
                duration: d,
                success: true,
            },
            Event::RecordsProcessed {
                shard_id: "s-0",
                records: 10,
                bytes: 1000,
                millis_behind_latest: Some(0),
                duration: d,
            },
            Event::Checkpoint { shard_id: "s-0", duration: d, failure: None },
        ]
    }

    fn shapes(window: &Window) -> BTreeSet<String> {
        window
            .keys()
            .map(|k| {
                let mut dims = vec!["Operation"];
                if k.shard_id.is_some() {
                    dims.push("ShardId");
                }
                if k.worker_id.is_some() {
                    dims.push("WorkerIdentifier");
                }
                format!("{} {} {}", k.operation, k.name, dims.join(","))
            })
            .collect()
    }

    fn fixture(name: &str) -> BTreeSet<String> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cloudwatch").join(name);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()).map(str::to_owned).collect()
    }

    /// Every (Operation, metric, dimensions) the Java daemon published in the recorded runs is
    /// produced by the mapping, at the same level and with the same dimension filtering.
    #[test]
    fn the_mapping_covers_what_java_publishes() {
        for (level, dims, file) in [
            (Level::Detailed, vec!["ALL"], "java-2.5.8-detailed.txt"),
            (Level::Summary, vec!["Operation", "ShardId"], "java-2.5.8-summary.txt"),
        ] {
            let sink = sink(level, &dims);
            let recorder = Recorder::new(vec![sink.clone()]);
            for e in all_events() {
                // The SUMMARY run of the Java daemon ended before its first periodic shard-sync
                // check (about 2 minutes in); see the fixture's header.
                if level == Level::Summary && matches!(e, Event::PeriodicShardSync { .. }) {
                    continue;
                }
                recorder.record(&e);
            }
            let ours = shapes(&sink.take_window());
            let java = fixture(file);
            let missing: Vec<_> = java.difference(&ours).collect();
            let extra: Vec<_> = ours.difference(&java).collect();
            assert!(missing.is_empty(), "{file}: not produced: {missing:?}");
            assert!(extra.is_empty(), "{file}: produced but not by Java: {extra:?}");
        }
    }

    #[test]
    fn values_fold_into_statistic_sets_and_the_window_is_bounded() {
        let sink = Arc::new(CloudWatchSink::new(Level::Summary, Dimensions::from_list(&["ALL".into()]), "w", 3));
        for (shard, records) in [("a", 5), ("a", 7), ("b", 1), ("c", 1)] {
            sink.record(&Event::RecordsProcessed {
                shard_id: shard,
                records,
                bytes: 10,
                millis_behind_latest: None,
                duration: Duration::from_millis(1),
            });
        }
        let window = sink.take_window();
        assert_eq!(window.len(), 3, "bounded to 3 series: {:?}", window.keys().collect::<Vec<_>>());
        let key = SeriesKey {
            operation: "ProcessTask",
            name: "RecordsProcessed".into(),
            shard_id: Some("a".into()),
            worker_id: None,
            unit: Unit::Count,
        };
        let s = window.get(&key).expect("series a");
        assert_eq!((s.count, s.sum, s.min, s.max), (2, 12.0, 5.0, 7.0));
        let counts = sink.stats().snapshot();
        assert!(counts.dropped > 0, "{counts:?}");
        assert!(sink.take_window().is_empty(), "the window was taken");
    }

    struct Failing(AtomicU64);

    #[async_trait]
    impl MetricsClient for Failing {
        async fn put(&self, _: &str, _: &[(SeriesKey, Statistics)]) -> Result<(), PutError> {
            self.0.fetch_add(1, Ordering::Relaxed);
            Err(PutError::Service("connection refused".into()))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn failures_drop_data_and_are_counted() {
        let sink = sink(Level::Detailed, &["ALL"]);
        let client = Arc::new(Failing(AtomicU64::new(0)));
        let mut publisher = Publisher::new(sink.clone(), client.clone(), "app".into(), Duration::from_secs(1));
        for e in all_events() {
            sink.record(&e);
        }
        publisher.flush().await;
        publisher.flush().await; // empty window: no request
        assert_eq!(client.0.load(Ordering::Relaxed), 1);
        let counts = sink.stats().snapshot();
        assert_eq!((counts.failures, counts.published), (1, 0));
        assert!(publisher.failing);
    }
}
