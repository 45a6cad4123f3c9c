//! `GET /metrics`: Prometheus / OpenMetrics text (prometheus-client).
//!
//! Three sources:
//! - [`PromSink`]: a [`telemetry::Sink`] counting events (lease takes and losses, child
//!   starts and exits, checkpoint latency and failures, AWS call latency and errors);
//! - the status snapshot, read at scrape time (per-shard records, bytes, behind-latest,
//!   leases held, worker phase, readiness);
//! - `/proc/self` at scrape time (the usual `process_*` metrics).
//!
//! Names follow the Prometheus conventions: a `multilangd_` prefix, base units (seconds,
//! bytes), `_total` on counters.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use tokio::time::Instant;

use super::cloudwatch::PublisherStats;
use super::health::{self, HealthSettings};
use super::process;
use crate::status::{StatusReceiver, WorkerPhase};
use crate::telemetry::{Event, Sink, TakeKind};

/// The `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    service: &'static str,
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallErrorLabels {
    service: &'static str,
    operation: &'static str,
    class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabel {
    action: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// 1 ms to ~33 s.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// Event counters, updated by the telemetry recorder.
#[derive(Debug)]
pub struct PromSink {
    lease_takes: Family<KindLabel, Counter>,
    lease_losses: Counter,
    delivery_pauses: Counter,
    renewal_failures: Counter,
    taker_rounds: Family<OutcomeLabel, Counter>,
    shard_syncs: Family<OutcomeLabel, Counter>,
    child_starts: Counter,
    child_exits: Family<OutcomeLabel, Counter>,
    consumer_restarts: Counter,
    checkpoint_duration: Histogram,
    checkpoint_failures: Family<ReasonLabel, Counter>,
    call_duration: HistogramFamily<CallLabels>,
    call_errors: Family<CallErrorLabels, Counter>,
    action_duration: HistogramFamily<ActionLabel>,
    action_failures: Family<ActionLabel, Counter>,
    expired_iterators: Counter,
    stalls: Counter,
    lease_op_duration: HistogramFamily<ActionLabel>,
    lease_op_failures: Family<ActionLabel, Counter>,
}

impl PromSink {
    fn new() -> Self {
        Self {
            lease_takes: Family::default(),
            lease_losses: Counter::default(),
            delivery_pauses: Counter::default(),
            renewal_failures: Counter::default(),
            taker_rounds: Family::default(),
            shard_syncs: Family::default(),
            child_starts: Counter::default(),
            child_exits: Family::default(),
            consumer_restarts: Counter::default(),
            checkpoint_duration: latency_histogram(),
            checkpoint_failures: Family::default(),
            call_duration: Family::new_with_constructor(latency_histogram),
            call_errors: Family::default(),
            action_duration: Family::new_with_constructor(latency_histogram),
            action_failures: Family::default(),
            expired_iterators: Counter::default(),
            stalls: Counter::default(),
            lease_op_duration: Family::new_with_constructor(latency_histogram),
            lease_op_failures: Family::default(),
        }
    }

    fn register(&self, r: &mut Registry) {
        r.register(
            "multilangd_lease_takes",
            "Leases taken by this worker, by kind (expired or stolen)",
            self.lease_takes.clone(),
        );
        r.register(
            "multilangd_lease_losses",
            "Leases this worker lost (taken by another worker)",
            self.lease_losses.clone(),
        );
        r.register(
            "multilangd_delivery_pauses",
            "Times a shard paused delivery because its lease was not renewed within failoverTimeMillis",
            self.delivery_pauses.clone(),
        );
        r.register(
            "multilangd_lease_renewal_failures",
            "Lease renewals that failed while the lease was still held",
            self.renewal_failures.clone(),
        );
        r.register("multilangd_lease_taker_rounds", "Lease taker rounds, by outcome", self.taker_rounds.clone());
        r.register(
            "multilangd_shard_syncs",
            "Shard syncs (lease creation for new shards), by outcome",
            self.shard_syncs.clone(),
        );
        r.register("multilangd_child_starts", "Record processor processes started", self.child_starts.clone());
        r.register(
            "multilangd_child_exits",
            "Record processor processes that ended, by outcome",
            self.child_exits.clone(),
        );
        r.register(
            "multilangd_consumer_restarts",
            "Shard consumers restarted after a failure",
            self.consumer_restarts.clone(),
        );
        r.register(
            "multilangd_checkpoint_duration_seconds",
            "Latency of checkpoint writes to the lease table",
            self.checkpoint_duration.clone(),
        );
        r.register(
            "multilangd_checkpoint_failures",
            "Checkpoint writes that failed, by reason",
            self.checkpoint_failures.clone(),
        );
        r.register(
            "multilangd_aws_call_duration_seconds",
            "Latency of AWS calls, by service and operation",
            self.call_duration.clone(),
        );
        r.register(
            "multilangd_aws_call_errors",
            "Failed AWS calls, by service, operation and error class",
            self.call_errors.clone(),
        );
        r.register(
            "multilangd_processor_action_duration_seconds",
            "Time the record processor took to answer an action",
            self.action_duration.clone(),
        );
        r.register(
            "multilangd_processor_action_failures",
            "Actions the record processor failed (crash, timeout, protocol error)",
            self.action_failures.clone(),
        );
        r.register(
            "multilangd_expired_iterators",
            "GetRecords calls that found their shard iterator expired",
            self.expired_iterators.clone(),
        );
        r.register("multilangd_shard_stalls", "Times a held shard was found stalled", self.stalls.clone());
        r.register(
            "multilangd_lease_operation_duration_seconds",
            "Latency of lease-table operations (DynamoDB): list (Scan), take and renew (UpdateItem), create (PutItem), checkpoint (UpdateItem)",
            self.lease_op_duration.clone(),
        );
        r.register(
            "multilangd_lease_operation_failures",
            "Lease-table operations that failed or lost their condition, by operation",
            self.lease_op_failures.clone(),
        );
    }
}

impl Sink for PromSink {
    fn record(&self, event: &Event<'_>) {
        match *event {
            Event::SdkCall { service, operation, duration, error } => {
                let labels = CallLabels { service: service.as_str(), operation };
                self.call_duration.get_or_create(&labels).observe(duration.as_secs_f64());
                if let Some(class) = error {
                    let labels = CallErrorLabels { service: service.as_str(), operation, class: class.as_str() };
                    self.call_errors.get_or_create(&labels).inc();
                }
            }
            Event::TakeLeasesRound { success, .. } => {
                let outcome = if success { "success" } else { "failure" };
                self.taker_rounds.get_or_create(&OutcomeLabel { outcome }).inc();
            }
            Event::LeaseTaken { kind, .. } => {
                let kind = match kind {
                    TakeKind::Expired => "expired",
                    TakeKind::Stolen => "stolen",
                };
                self.lease_takes.get_or_create(&KindLabel { kind }).inc();
            }
            Event::LeaseLost { .. } => {
                self.lease_losses.inc();
            }
            Event::DeliveryPaused { .. } => {
                self.delivery_pauses.inc();
            }
            Event::RenewalRound { failed, .. } => {
                self.renewal_failures.inc_by(failed as u64);
            }
            Event::ShardSync { success, .. } => {
                let outcome = if success { "success" } else { "failure" };
                self.shard_syncs.get_or_create(&OutcomeLabel { outcome }).inc();
            }
            Event::ChildStarted { .. } => {
                self.child_starts.inc();
            }
            Event::ChildExited { outcome, .. } => {
                self.child_exits.get_or_create(&OutcomeLabel { outcome: outcome.as_str() }).inc();
            }
            Event::ConsumerRestarted { .. } => {
                self.consumer_restarts.inc();
            }
            Event::ProcessorAction { action, duration, success, .. } => {
                let label = ActionLabel { action: action_name(action) };
                self.action_duration.get_or_create(&label).observe(duration.as_secs_f64());
                if !success {
                    self.action_failures.get_or_create(&label).inc();
                }
            }
            Event::Checkpoint { duration, failure, .. } => {
                self.checkpoint_duration.observe(duration.as_secs_f64());
                let label = ActionLabel { action: "checkpoint" };
                self.lease_op_duration.get_or_create(&label).observe(duration.as_secs_f64());
                if failure.is_some() {
                    self.lease_op_failures.get_or_create(&label).inc();
                }
                if let Some(reason) = failure {
                    self.checkpoint_failures.get_or_create(&ReasonLabel { reason }).inc();
                }
            }
            Event::ExpiredIterator { .. } => {
                self.expired_iterators.inc();
            }
            // The reader's per-shard view of a call is for CloudWatch; SdkCall counts every call.
            Event::AwsCall { .. } => {}
            Event::ShardStalled { .. } => {
                self.stalls.inc();
            }
            Event::RecordsProcessed { .. }
            | Event::WorkerInitialized { .. }
            | Event::LeaderChecked { .. }
            | Event::PeriodicShardSync { .. } => {}
            Event::LeaseCall { op, duration, success, .. } => {
                let action = match op {
                    crate::telemetry::LeaseOperation::List => "list",
                    crate::telemetry::LeaseOperation::Take => "take",
                    crate::telemetry::LeaseOperation::Renew => "renew",
                    crate::telemetry::LeaseOperation::Create { .. } => "create",
                };
                let label = ActionLabel { action };
                self.lease_op_duration.get_or_create(&label).observe(duration.as_secs_f64());
                if !success {
                    self.lease_op_failures.get_or_create(&label).inc();
                }
            }
        }
    }
}

fn action_name(action: crate::telemetry::ProcessorAction) -> &'static str {
    use crate::telemetry::ProcessorAction as A;
    match action {
        A::Initialize => "initialize",
        A::ProcessRecords => "process_records",
        A::Shutdown => "shutdown",
    }
}

/// The registry, its event sink, and the scrape-time collectors.
#[derive(Debug)]
pub struct Exporter {
    registry: Registry,
    sink: Arc<PromSink>,
}

impl Exporter {
    /// An exporter reading `status` at scrape time; `cloudwatch` adds the publisher's counters.
    #[must_use]
    pub fn new(status: StatusReceiver, settings: HealthSettings, cloudwatch: Option<Arc<PublisherStats>>) -> Self {
        let mut registry = Registry::default();
        let sink = Arc::new(PromSink::new());
        sink.register(&mut registry);
        registry.register_collector(Box::new(StatusCollector { status, settings }));
        registry.register_collector(Box::new(process::ProcessCollector));
        if let Some(stats) = cloudwatch {
            registry.register_collector(Box::new(CloudWatchCollector(stats)));
        }
        Self { registry, sink }
    }

    /// The sink to install in the telemetry recorder.
    #[must_use]
    pub fn sink(&self) -> Arc<PromSink> {
        self.sink.clone()
    }

    /// The exposition text.
    ///
    /// # Errors
    /// Only if formatting fails (it writes to a `String`).
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::with_capacity(8 * 1024);
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShardLabel {
    shard: String,
}

/// Writes one metric family of constant values.
pub(crate) fn family<L: EncodeLabelSet, M: EncodeMetric>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    kind: MetricType,
    values: impl IntoIterator<Item = (L, M)>,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in values {
        value.encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

/// Writes one unlabelled metric.
pub(crate) fn single<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: M,
) -> Result<(), std::fmt::Error> {
    let kind = value.metric_type();
    let metric = encoder.encode_descriptor(name, help, None, kind)?;
    value.encode(metric)
}

#[derive(Debug)]
struct StatusCollector {
    status: StatusReceiver,
    settings: HealthSettings,
}

impl Collector for StatusCollector {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let status = self.status.borrow().clone();
        let now = Instant::now();
        #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
        struct Info {
            worker_id: String,
            application: String,
            lease_table: String,
            protocol: String,
            version: &'static str,
        }
        let info = Info {
            worker_id: status.worker_id.clone(),
            application: status.application.clone(),
            lease_table: status.lease_table.clone(),
            protocol: status.lease_protocol.clone(),
            version: env!("CARGO_PKG_VERSION"),
        };
        family(
            &mut e,
            "multilangd_worker_info",
            "The worker's identity (value 1)",
            MetricType::Gauge,
            [(info, ConstGauge::new(1_i64))],
        )?;
        #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
        struct Phase {
            phase: &'static str,
        }
        let phases = [WorkerPhase::Starting, WorkerPhase::Running, WorkerPhase::ShuttingDown, WorkerPhase::Stopped]
            .map(|p| (Phase { phase: p.as_str() }, ConstGauge::new(i64::from(p == status.phase))));
        family(&mut e, "multilangd_worker_phase", "1 for the worker's current phase", MetricType::Gauge, phases)?;
        let live = health::live(&status, &self.settings, now).is_ok();
        let ready = health::ready(&status, &self.settings, now).is_ok();
        single(&mut e, "multilangd_worker_live", "1 while /healthz answers 200", ConstGauge::new(i64::from(live)))?;
        single(&mut e, "multilangd_worker_ready", "1 while /readyz answers 200", ConstGauge::new(i64::from(ready)))?;
        single(
            &mut e,
            "multilangd_leases_held",
            "Leases (shards) this worker holds",
            ConstGauge::new(status.shards.len() as i64),
        )?;
        if let Some(renewal) = &status.last_renewal {
            let age = now.saturating_duration_since(renewal.at).as_secs_f64();
            single(
                &mut e,
                "multilangd_lease_renewal_age_seconds",
                "Time since the last lease renewal round",
                ConstGauge::new(age),
            )?;
        }
        let shards = &status.shards;
        let label = |id: &String| ShardLabel { shard: id.clone() };
        family(
            &mut e,
            "multilangd_shard_records_processed",
            "Records delivered to the record processor, per held shard",
            MetricType::Counter,
            shards.iter().map(|s| (label(&s.shard_id), ConstCounter::new(s.records))),
        )?;
        family(
            &mut e,
            "multilangd_shard_bytes_processed",
            "Payload bytes delivered to the record processor, per held shard",
            MetricType::Counter,
            shards.iter().map(|s| (label(&s.shard_id), ConstCounter::new(s.bytes))),
        )?;
        family(
            &mut e,
            "multilangd_shard_behind_latest_seconds",
            "How far the last batch was behind the tip of the shard (millisBehindLatest / 1000)",
            MetricType::Gauge,
            shards.iter().filter_map(|s| {
                s.millis_behind_latest.map(|m| (label(&s.shard_id), ConstGauge::new(m as f64 / 1000.0)))
            }),
        )?;
        family(
            &mut e,
            "multilangd_shard_child_starts",
            "Record processors started, per held shard",
            MetricType::Counter,
            shards.iter().map(|s| (label(&s.shard_id), ConstCounter::new(s.child_starts))),
        )?;
        family(
            &mut e,
            "multilangd_shard_restarts",
            "Consumer restarts after failures, per held shard",
            MetricType::Counter,
            shards.iter().map(|s| (label(&s.shard_id), ConstCounter::new(s.restarts))),
        )?;
        let stalled = health::stalled_shards(&status, &self.settings, now);
        family(
            &mut e,
            "multilangd_shard_stalled",
            "1 when the held shard is stalled (see /readyz)",
            MetricType::Gauge,
            shards.iter().map(|s| {
                let is = stalled.iter().any(|x| x.shard_id == s.shard_id);
                (label(&s.shard_id), ConstGauge::new(i64::from(is)))
            }),
        )?;
        Ok(())
    }
}

#[derive(Debug)]
struct CloudWatchCollector(Arc<PublisherStats>);

impl Collector for CloudWatchCollector {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let s = self.0.snapshot();
        single(
            &mut e,
            "multilangd_cloudwatch_datums_queued",
            "CloudWatch datums accepted into the publish queue",
            ConstCounter::new(s.queued),
        )?;
        single(
            &mut e,
            "multilangd_cloudwatch_datums_dropped",
            "CloudWatch datums dropped because the queue was full",
            ConstCounter::new(s.dropped),
        )?;
        single(
            &mut e,
            "multilangd_cloudwatch_datums_published",
            "CloudWatch datums (aggregated) sent with PutMetricData",
            ConstCounter::new(s.published),
        )?;
        single(
            &mut e,
            "multilangd_cloudwatch_put_failures",
            "PutMetricData requests that failed (their datums are dropped)",
            ConstCounter::new(s.failures),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{ShardPhase, ShardStatus, StatusPublisher, WorkerStatus};
    use crate::telemetry::{CallErrorClass, ChildOutcome, Service};
    use std::time::Duration;

    #[tokio::test]
    async fn events_and_status_show_up_in_the_exposition() {
        let (publisher, rx) = StatusPublisher::new(WorkerStatus::starting("w-1", "app", "app-table"));
        publisher.update(|s| {
            s.phase = WorkerPhase::Running;
            s.shards.push(ShardStatus {
                shard_id: "shardId-000000000003".to_owned(),
                phase: ShardPhase::Processing,
                records: 42,
                bytes: 4200,
                batches: 3,
                last_sequence_delivered: None,
                checkpoint: "49".to_owned(),
                millis_behind_latest: Some(1500),
                child_starts: 1,
                restarts: 0,
                last_failure: None,
                action_in_flight_since: None,
                last_delivery: None,
            });
        });
        let exporter = Exporter::new(rx, HealthSettings::default(), Some(Arc::new(PublisherStats::default())));
        let sink = exporter.sink();
        sink.record(&Event::LeaseTaken { shard_id: "s", kind: TakeKind::Stolen });
        sink.record(&Event::LeaseTaken { shard_id: "s", kind: TakeKind::Expired });
        sink.record(&Event::LeaseTaken { shard_id: "s", kind: TakeKind::Expired });
        sink.record(&Event::ChildExited { shard_id: "s", outcome: ChildOutcome::Killed });
        sink.record(&Event::SdkCall {
            service: Service::Kinesis,
            operation: "GetRecords",
            duration: Duration::from_millis(3),
            error: Some(CallErrorClass::Throttled),
        });
        // The reader's per-shard view of the same call is for CloudWatch only: not counted twice.
        sink.record(&Event::AwsCall {
            service: Service::Kinesis,
            shard_id: Some("s"),
            operation: "GetRecords",
            duration: Duration::from_millis(3),
            error: Some(CallErrorClass::Throttled),
        });
        sink.record(&Event::Checkpoint { shard_id: "s", duration: Duration::from_millis(7), failure: None });
        let text = exporter.encode().expect("encodes");
        for line in [
            "multilangd_lease_takes_total{kind=\"expired\"} 2",
            "multilangd_lease_takes_total{kind=\"stolen\"} 1",
            "multilangd_child_exits_total{outcome=\"killed\"} 1",
            "multilangd_aws_call_errors_total{service=\"kinesis\",operation=\"GetRecords\",class=\"throttled\"} 1",
            "multilangd_aws_call_duration_seconds_count{service=\"kinesis\",operation=\"GetRecords\"} 1",
            "multilangd_checkpoint_duration_seconds_count 1",
            "multilangd_shard_records_processed_total{shard=\"shardId-000000000003\"} 42",
            "multilangd_shard_bytes_processed_total{shard=\"shardId-000000000003\"} 4200",
            "multilangd_shard_behind_latest_seconds{shard=\"shardId-000000000003\"} 1.5",
            "multilangd_leases_held 1",
            "multilangd_worker_phase{phase=\"running\"} 1",
            "multilangd_worker_phase{phase=\"starting\"} 0",
            "multilangd_cloudwatch_datums_dropped_total 0",
            "# EOF",
        ] {
            assert!(text.lines().any(|l| l == line), "missing `{line}` in\n{text}");
        }
        assert!(text.contains("process_resident_memory_bytes "), "{text}");
        assert!(text.contains("process_cpu_seconds_total "), "{text}");
    }
}
