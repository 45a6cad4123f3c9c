//! Entries of a properties file → [`Config`], one section of the key table at a time
//! ([`keys::Category`]): daemon and identity, AWS clients, retrieval, leases, metrics, KCL 3.x.
//! Each section reads its keys through a [`Reader`] and returns its part of the
//! configuration; [`build`] puts the parts together once every key has been looked at.

use std::time::Duration;

use std::path::Path;

use super::keys;
use super::reader::{default_text, millis, spec, table_default, to_u32, Reader};
use super::values::{stream_arn_name, FromValue};
use super::{
    ClientVersionConfig, Config, ConfigError, CredentialsSpec, Entry, Executable, FanOutConfig, InitialPosition,
    Kcl3Config, Loaded, MetricsLevel, Origin, PollingConfig, Problem, RetrievalMode,
};

/// Validates `entries` (in file order) of the file at `path`; `problems` are those found
/// before (syntax errors).
pub(super) fn build(path: &Path, problems: Vec<Problem>, entries: Vec<Entry>) -> Result<Loaded, ConfigError> {
    let mut r = Reader::new(path, problems, entries);
    let daemon = daemon(&mut r);
    let aws = aws(&mut r);
    let retrieval = retrieval(&mut r, daemon.application_name.as_deref());
    let leases = leases(&mut r);
    let metrics = metrics(&mut r);
    let (client_version_config, kcl3) = kcl3(&mut r, daemon.application_name.as_deref(), leases.failover_time);
    let unused_keys = r.check_remaining_keys();

    let findings = r.finish();
    let (Some(executable), Some(application_name), Some(stream_name), Some(credentials), true) =
        (daemon.executable, daemon.application_name, daemon.stream_name, aws.credentials, findings.problems.is_empty())
    else {
        return Err(ConfigError::Invalid { path: findings.path, problems: findings.problems });
    };
    let config = Config {
        source: findings.path,
        executable,
        processing_language: daemon.processing_language,
        max_active_threads: daemon.max_active_threads,
        application_name,
        stream_name,
        stream_arn: daemon.stream_arn,
        table_name: daemon.table_name,
        worker_id: daemon.worker_id,
        timeout: daemon.timeout,
        shutdown_grace: daemon.shutdown_grace,
        http_address: daemon.http_address,
        stall_threshold: daemon.stall_threshold,
        child_startup_concurrency: daemon.child_startup_concurrency,
        credentials,
        credentials_dynamodb: aws.credentials_dynamodb,
        credentials_cloudwatch: aws.credentials_cloudwatch,
        region: aws.region,
        kinesis_endpoint: aws.kinesis_endpoint,
        dynamodb_endpoint: aws.dynamodb_endpoint,
        cloudwatch_endpoint: aws.cloudwatch_endpoint,
        kinesis_region: aws.kinesis_region,
        dynamodb_region: aws.dynamodb_region,
        cloudwatch_region: aws.cloudwatch_region,
        initial_position: retrieval.initial_position,
        retrieval_mode: retrieval.mode,
        polling: retrieval.polling,
        fan_out: retrieval.fan_out,
        call_process_records_even_for_empty_record_list: retrieval.call_process_records_even_for_empty_record_list,
        failover_time: leases.failover_time,
        shard_sync_interval: leases.shard_sync_interval,
        cleanup_leases_upon_shard_completion: leases.cleanup_leases_upon_shard_completion,
        ignore_unexpected_child_shards: leases.ignore_unexpected_child_shards,
        max_leases_for_worker: leases.max_leases_for_worker,
        max_leases_to_steal_at_one_time: leases.max_leases_to_steal_at_one_time,
        initial_lease_table_read_capacity: leases.initial_lease_table_read_capacity,
        initial_lease_table_write_capacity: leases.initial_lease_table_write_capacity,
        max_lease_renewal_threads: leases.max_lease_renewal_threads,
        list_shards_backoff: leases.list_shards_backoff,
        max_list_shards_retry_attempts: leases.max_list_shards_retry_attempts,
        parent_shard_poll_interval: leases.parent_shard_poll_interval,
        skip_shard_sync_at_worker_initialization_if_leases_exist: leases
            .skip_shard_sync_at_worker_initialization_if_leases_exist,
        scheduler_initialization_backoff: leases.scheduler_initialization_backoff,
        task_backoff: leases.task_backoff,
        log_warning_for_task_after: leases.log_warning_for_task_after,
        enable_priority_lease_assignment: leases.enable_priority_lease_assignment,
        lease_table_deletion_protection_enabled: leases.lease_table_deletion_protection_enabled,
        lease_table_pitr_enabled: leases.lease_table_pitr_enabled,
        metrics_level: metrics.level,
        metrics_enabled_dimensions: metrics.enabled_dimensions,
        metrics_buffer_time: metrics.buffer_time,
        metrics_max_queue_size: metrics.max_queue_size,
        client_version_config,
        kcl3,
        unused_keys,
        locations: findings.locations,
    };
    Ok(Loaded { config, warnings: findings.warnings, resolved: findings.resolved })
}

// ---- Daemon and identity

/// The daemon and identity keys; the required ones are `None` when missing (a problem).
struct Daemon {
    executable: Option<Executable>,
    processing_language: Option<String>,
    max_active_threads: Option<u32>,
    application_name: Option<String>,
    stream_name: Option<String>,
    stream_arn: Option<String>,
    table_name: String,
    worker_id: Option<String>,
    timeout: Option<Duration>,
    shutdown_grace: Duration,
    http_address: Option<std::net::SocketAddr>,
    stall_threshold: Duration,
    child_startup_concurrency: u32,
}

fn daemon(r: &mut Reader) -> Daemon {
    let executable = r.required("executableName", "sample_kclpy_app.py").and_then(|(raw, line)| {
        let mut tokens = raw.split(' ').filter(|t| !t.is_empty()).map(str::to_owned);
        let program = tokens.next()?;
        r.record("executableName", &raw, Origin::Line(line));
        Some(Executable { program, args: tokens.collect(), raw })
    });
    let processing_language = r.optional("processingLanguage");
    let max_active_threads: i64 = r.setting("maxActiveThreads");
    let application_name = r.required("applicationName", "my-kcl-app").map(|(name, line)| {
        r.record("applicationName", &name, Origin::Line(line));
        name
    });
    let (stream_name, stream_arn) = stream(r);
    let table_name = match r.text("tableName") {
        Some((t, line)) => {
            r.record("tableName", &t, Origin::Line(line));
            t
        }
        None => {
            let t = application_name.clone().unwrap_or_default();
            r.record_derived("tableName", &t);
            t
        }
    };
    Daemon {
        executable,
        processing_language,
        max_active_threads: (max_active_threads > 0).then(|| to_u32(max_active_threads)),
        application_name,
        stream_name,
        stream_arn,
        table_name,
        worker_id: worker_id(r),
        timeout: timeout(r),
        shutdown_grace: r.millis_setting("shutdownGraceMillis"),
        http_address: r.optional("multilangd.httpAddress"),
        stall_threshold: r.millis_setting("multilangd.stallThresholdMillis"),
        child_startup_concurrency: r.u32_setting("multilangd.childStartupConcurrency"),
    }
}

/// `streamArn` wins over `streamName`; one of them is required. Returns the stream name and
/// the ARN.
fn stream(r: &mut Reader) -> (Option<String>, Option<String>) {
    let stream_arn = r.get::<String>("streamArn");
    let stream_name = r.text("streamName");
    match (stream_arn, stream_name) {
        (Some((arn, line)), named) => {
            let from_arn = stream_arn_name(&arn).unwrap_or_default().to_owned();
            if let Some((name, name_line)) = named {
                if name != from_arn {
                    r.warn(
                        Some(name_line),
                        Some("streamName"),
                        format!("`{name}` is overridden by the stream name `{from_arn}` of streamArn (line {line})"),
                    );
                }
            }
            r.record("streamArn", &arn, Origin::Line(line));
            r.record("streamName", &from_arn, Origin::Derived("from streamArn"));
            (Some(from_arn), Some(arn))
        }
        (None, Some((name, line))) => {
            r.record_default("streamArn");
            r.record("streamName", &name, Origin::Line(line));
            (Some(name), None)
        }
        (None, None) => {
            // A present-but-invalid streamArn has already been reported.
            if !r.is_set("streamArn") {
                r.problem(
                    None,
                    Some("streamName"),
                    "required key is missing or empty: set `streamName = <stream>` or \
                     `streamArn = arn:aws:kinesis:<region>:<account>:stream/<stream>`",
                );
            }
            (None, None)
        }
    }
}

/// `workerId`, or its alias `workerIdentifier`.
fn worker_id(r: &mut Reader) -> Option<String> {
    let worker_id = r.text("workerId");
    let worker_identifier = r.text("workerIdentifier");
    match (worker_id, worker_identifier) {
        (Some((id, line)), other) => {
            if let Some((other, other_line)) = other {
                if other != id {
                    r.warn(
                        Some(other_line),
                        Some("workerIdentifier"),
                        format!("overridden by `workerId` on line {line}"),
                    );
                }
            }
            r.record("workerId", &id, Origin::Line(line));
            Some(id)
        }
        (None, Some((id, line))) => {
            r.record("workerId", &id, Origin::Line(line));
            Some(id)
        }
        (None, None) => {
            r.record_default("workerId");
            None
        }
    }
}

/// `timeoutInSeconds`: a value <= 0 disables the timeout, with a warning.
fn timeout(r: &mut Reader) -> Option<Duration> {
    match r.get::<i64>("timeoutInSeconds") {
        Some((secs, line)) if secs > 0 => {
            r.record("timeoutInSeconds", secs, Origin::Line(line));
            Some(Duration::from_secs(secs.unsigned_abs()))
        }
        Some((secs, line)) => {
            r.warn(
                Some(line),
                Some("timeoutInSeconds"),
                format!("{secs} disables the timeout (the Java daemon would halt at once)"),
            );
            r.record("timeoutInSeconds", "(none)", Origin::Line(line));
            None
        }
        None => {
            r.record_default("timeoutInSeconds");
            None
        }
    }
}

// ---- Credentials, region and endpoints

/// The AWS client keys; `credentials` is `None` when missing or invalid (a problem).
struct Aws {
    credentials: Option<CredentialsSpec>,
    credentials_dynamodb: Option<CredentialsSpec>,
    credentials_cloudwatch: Option<CredentialsSpec>,
    region: Option<String>,
    kinesis_region: Option<String>,
    dynamodb_region: Option<String>,
    cloudwatch_region: Option<String>,
    kinesis_endpoint: Option<String>,
    dynamodb_endpoint: Option<String>,
    cloudwatch_endpoint: Option<String>,
}

fn aws(r: &mut Reader) -> Aws {
    let credentials = r.credentials(keys::CREDENTIALS).map(|(c, line)| {
        r.record(keys::CREDENTIALS, &c.raw, Origin::Line(line));
        c
    });
    // A present but invalid value has already been reported.
    if credentials.is_none() && !r.is_set(keys::CREDENTIALS) {
        r.problem(
            None,
            Some(keys::CREDENTIALS),
            "required key is missing or empty, e.g. `AWSCredentialsProvider = DefaultCredentialsProvider` \
             (any case of the AWSCredentialsProvider prefix is accepted)",
        );
    }
    let credentials_dynamodb = match r.credentials(keys::CREDENTIALS_DYNAMODB) {
        Some((c, line)) => {
            r.record(keys::CREDENTIALS_DYNAMODB, &c.raw, Origin::Line(line));
            Some(c)
        }
        None => {
            let inherited = credentials.as_ref().map(|c| c.raw.clone()).unwrap_or_default();
            r.record_derived(keys::CREDENTIALS_DYNAMODB, inherited);
            None
        }
    };
    let credentials_cloudwatch = match r.credentials(keys::CREDENTIALS_CLOUDWATCH) {
        Some((c, line)) => {
            r.record(keys::CREDENTIALS_CLOUDWATCH, &c.raw, Origin::Line(line));
            Some(c)
        }
        None => {
            let inherited = credentials.as_ref().map(|c| c.raw.clone()).unwrap_or_default();
            r.record_derived(keys::CREDENTIALS_CLOUDWATCH, inherited);
            None
        }
    };

    let region = r.optional::<String>("regionName");
    let inherited_region = region.clone().unwrap_or_else(|| default_text("regionName"));
    let kinesis_region = r.client_override("kinesisClient.region", &inherited_region);
    let dynamodb_region = r.client_override("dynamoDbClient.region", &inherited_region);
    let cloudwatch_region = r.client_override("cloudWatchClient.region", &inherited_region);

    let kinesis_endpoint = endpoint(r, "kinesisClient.endpointOverride", "kinesisEndpoint");
    let dynamodb_endpoint = endpoint(r, "dynamoDbClient.endpointOverride", "dynamoDBEndpoint");
    let cloudwatch_endpoint = endpoint(r, "cloudWatchClient.endpointOverride", "cloudWatchEndpoint");
    Aws {
        credentials,
        credentials_dynamodb,
        credentials_cloudwatch,
        region,
        kinesis_region,
        dynamodb_region,
        cloudwatch_region,
        kinesis_endpoint,
        dynamodb_endpoint,
        cloudwatch_endpoint,
    }
}

/// An endpoint set by two keys (the specific one wins), reported under the general key.
fn endpoint(r: &mut Reader, specific: &'static str, general: &'static str) -> Option<String> {
    match r.either(specific, general) {
        Some((v, line, _)) => {
            r.record(general, &v, Origin::Line(line));
            Some(v)
        }
        None => {
            r.record_default(general);
            None
        }
    }
}

// ---- Stream position and retrieval

struct Retrieval {
    initial_position: InitialPosition,
    mode: RetrievalMode,
    polling: PollingConfig,
    fan_out: FanOutConfig,
    call_process_records_even_for_empty_record_list: bool,
}

fn retrieval(r: &mut Reader, application_name: Option<&str>) -> Retrieval {
    Retrieval {
        initial_position: initial_position(r),
        mode: retrieval_mode(r),
        polling: PollingConfig {
            max_records: r.u32_setting("maxRecords"),
            idle_time_between_reads: r.millis_setting("idleTimeBetweenReadsInMillis"),
            retry_get_records: r
                .optional::<i64>("retryGetRecordsInSeconds")
                .map(|s| Duration::from_secs(s.unsigned_abs())),
            max_get_records_thread_pool: r.get::<i64>("maxGetRecordsThreadPool").map(|(v, _)| to_u32(v)),
            millis_behind_latest_threshold_for_reduced_tps: {
                let ms: i64 = r.setting("millisBehindLatestThresholdForReducedTps");
                (ms > 0).then(|| millis(ms))
            },
        },
        fan_out: FanOutConfig {
            consumer_arn: r.optional("fanoutConfig.consumerArn"),
            consumer_name: match r.text("fanoutConfig.consumerName") {
                Some((name, line)) => {
                    r.record("fanoutConfig.consumerName", &name, Origin::Line(line));
                    name
                }
                None => {
                    let name = application_name.unwrap_or_default().to_owned();
                    r.record_derived("fanoutConfig.consumerName", &name);
                    name
                }
            },
            max_describe_stream_summary_retries: r.u32_setting("fanoutConfig.maxDescribeStreamSummaryRetries"),
            max_describe_stream_consumer_retries: r.u32_setting("fanoutConfig.maxDescribeStreamConsumerRetries"),
            register_stream_consumer_retries: r.u32_setting("fanoutConfig.registerStreamConsumerRetries"),
            retry_backoff: r.millis_setting("fanoutConfig.retryBackoffMillis"),
        },
        call_process_records_even_for_empty_record_list: r.setting("callProcessRecordsEvenForEmptyRecordList"),
    }
}

/// `initialPositionInStreamExtended` (AT_TIMESTAMP) wins over `initialPositionInStream`.
fn initial_position(r: &mut Reader) -> InitialPosition {
    const KEY: &str = "initialPositionInStream";
    let extended = r.get::<i64>("initialPositionInStreamExtended");
    let position = r.raw(KEY);
    match (extended, position) {
        (Some((secs, line)), position) => {
            if let Some(p) = position {
                if !p.text.eq_ignore_ascii_case("AT_TIMESTAMP") {
                    r.warn(
                        Some(p.line),
                        Some(KEY),
                        format!("overridden by initialPositionInStreamExtended (line {line}): starting AT_TIMESTAMP"),
                    );
                }
            }
            r.record(KEY, format!("AT_TIMESTAMP {secs}"), Origin::Line(line));
            InitialPosition::AtTimestamp { epoch_millis: secs.saturating_mul(1000) }
        }
        (None, Some(p)) if p.text.eq_ignore_ascii_case("AT_TIMESTAMP") => {
            r.problem(
                Some(p.line),
                Some(&p.written),
                "AT_TIMESTAMP needs a time: remove this key and set \
                 `initialPositionInStreamExtended = <epoch seconds>` instead",
            );
            InitialPosition::Latest
        }
        (None, Some(p)) => match <&str>::from_value(spec(KEY).ty, &p.text) {
            Some(name) => {
                r.record(KEY, name, Origin::Line(p.line));
                named_position(name)
            }
            None => {
                r.invalid(
                    &p,
                    "one of TRIM_HORIZON, LATEST (any case); for AT_TIMESTAMP set initialPositionInStreamExtended",
                );
                InitialPosition::Latest
            }
        },
        (None, None) => {
            r.record_default(KEY);
            named_position(table_default(KEY))
        }
    }
}

fn named_position(name: &str) -> InitialPosition {
    if name == "TRIM_HORIZON" {
        InitialPosition::TrimHorizon
    } else {
        InitialPosition::Latest
    }
}

/// `retrievalMode`; DEFAULT means POLLING when a polling key is set, else FANOUT. Keys of the
/// other mode are ignored with a warning.
fn retrieval_mode(r: &mut Reader) -> RetrievalMode {
    const KEY: &str = "retrievalMode";
    let polling_set: Vec<&'static str> = keys::POLLING_KEYS.iter().copied().filter(|k| r.is_set(k)).collect();
    let fanout_set: Vec<&'static str> =
        keys::KEYS.iter().map(|k| k.name).filter(|k| k.starts_with("fanoutConfig.") && r.is_set(k)).collect();
    let (name, line) = match r.get::<&str>(KEY) {
        Some((name, line)) => (name, Some(line)),
        None => (table_default(KEY), None),
    };
    let mode = match (name, line) {
        ("FANOUT", Some(line)) => {
            if !polling_set.is_empty() {
                r.warn(Some(line), Some(KEY), format!("FANOUT ignores the polling keys {}", polling_set.join(", ")));
            }
            r.record(KEY, "FANOUT", Origin::Line(line));
            RetrievalMode::FanOut
        }
        ("POLLING", Some(line)) => {
            r.record(KEY, "POLLING", Origin::Line(line));
            RetrievalMode::Polling
        }
        _ if !polling_set.is_empty() => {
            r.record(KEY, "POLLING", Origin::Derived("DEFAULT, and a polling key is set"));
            RetrievalMode::Polling
        }
        _ => {
            r.record(KEY, "FANOUT", Origin::Derived("DEFAULT, and no polling key is set"));
            RetrievalMode::FanOut
        }
    };
    if mode == RetrievalMode::Polling && !fanout_set.is_empty() {
        let line = fanout_set.iter().filter_map(|k| r.line_of(k)).min();
        r.warn(line, None, format!("POLLING ignores the fan-out keys {}", fanout_set.join(", ")));
    }
    mode
}

// ---- Leases and coordination

struct Leases {
    failover_time: Duration,
    shard_sync_interval: Duration,
    cleanup_leases_upon_shard_completion: bool,
    ignore_unexpected_child_shards: bool,
    max_leases_for_worker: u32,
    max_leases_to_steal_at_one_time: u32,
    initial_lease_table_read_capacity: u32,
    initial_lease_table_write_capacity: u32,
    max_lease_renewal_threads: u32,
    list_shards_backoff: Duration,
    max_list_shards_retry_attempts: u32,
    parent_shard_poll_interval: Duration,
    skip_shard_sync_at_worker_initialization_if_leases_exist: bool,
    scheduler_initialization_backoff: Duration,
    task_backoff: Duration,
    log_warning_for_task_after: Option<Duration>,
    enable_priority_lease_assignment: bool,
    lease_table_deletion_protection_enabled: bool,
    lease_table_pitr_enabled: bool,
}

fn leases(r: &mut Reader) -> Leases {
    Leases {
        failover_time: r.millis_setting("failoverTimeMillis"),
        shard_sync_interval: r.millis_setting("shardSyncIntervalMillis"),
        cleanup_leases_upon_shard_completion: r.setting("cleanupLeasesUponShardCompletion"),
        ignore_unexpected_child_shards: r.setting("ignoreUnexpectedChildShards"),
        max_leases_for_worker: r.u32_setting("maxLeasesForWorker"),
        max_leases_to_steal_at_one_time: r.u32_setting("maxLeasesToStealAtOneTime"),
        initial_lease_table_read_capacity: to_u32(r.value("initialLeaseTableReadCapacity")),
        initial_lease_table_write_capacity: to_u32(r.value("initialLeaseTableWriteCapacity")),
        max_lease_renewal_threads: r.u32_setting("maxLeaseRenewalThreads"),
        list_shards_backoff: r.millis_setting("listShardsBackoffTimeInMillis"),
        max_list_shards_retry_attempts: r.u32_setting("maxListShardsRetryAttempts"),
        parent_shard_poll_interval: r.millis_setting("parentShardPollIntervalMillis"),
        skip_shard_sync_at_worker_initialization_if_leases_exist: r
            .setting("skipShardSyncAtWorkerInitializationIfLeasesExist"),
        scheduler_initialization_backoff: r.millis_setting("schedulerInitializationBackoffTimeMillis"),
        task_backoff: r.millis_setting("taskBackoffTimeMillis"),
        log_warning_for_task_after: r.optional("logWarningForTaskAfterMillis").map(millis),
        enable_priority_lease_assignment: r.setting("enablePriorityLeaseAssignment"),
        lease_table_deletion_protection_enabled: r.setting("leaseTableDeletionProtectionEnabled"),
        lease_table_pitr_enabled: r.setting("leaseTablePitrEnabled"),
    }
}

// ---- Metrics

struct Metrics {
    level: MetricsLevel,
    enabled_dimensions: Vec<String>,
    buffer_time: Duration,
    max_queue_size: u32,
}

fn metrics(r: &mut Reader) -> Metrics {
    let level = match r.setting::<&str>("metricsLevel") {
        "NONE" => MetricsLevel::None,
        "SUMMARY" => MetricsLevel::Summary,
        _ => MetricsLevel::Detailed,
    };
    let dimensions: String = r.setting("metricsEnabledDimensions");
    Metrics {
        level,
        enabled_dimensions: dimensions.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect(),
        buffer_time: r.millis_setting("metricsBufferTimeMillis"),
        max_queue_size: r.u32_setting("metricsMaxQueueSize"),
    }
}

// ---- KCL 3.x

/// `clientVersionConfig` as set in the file (`None` when not set), and the 3.x settings.
fn kcl3(
    r: &mut Reader,
    application_name: Option<&str>,
    failover: Duration,
) -> (Option<ClientVersionConfig>, Kcl3Config) {
    let client_version = r.optional::<&str>("clientVersionConfig").map(|v| match v {
        "CLIENT_VERSION_CONFIG_COMPATIBLE_WITH_2X" => ClientVersionConfig::CompatibleWith2x,
        "CLIENT_VERSION_CONFIG_COMPATIBLE_WITH_2X_PHASE1" => ClientVersionConfig::CompatibleWith2xPhase1,
        _ => ClientVersionConfig::V3x,
    });
    let app = application_name.unwrap_or_default();
    let table = |r: &mut Reader, key: &'static str, suffix: &str| match r.text(key) {
        Some((t, line)) => {
            r.record(key, &t, Origin::Line(line));
            t
        }
        None => {
            let t = format!("{app}{suffix}");
            r.record_derived(key, &t);
            t
        }
    };
    let coordinator_state_table = table(r, "coordinatorStateTableName", "-CoordinatorState");
    let worker_metrics_table = table(r, "workerMetricsTableName", "-WorkerMetricStats");
    let lease_assignment_interval = match r.get::<i64>("leaseAssignmentIntervalMillis") {
        Some((ms, line)) => {
            r.record("leaseAssignmentIntervalMillis", ms, Origin::Line(line));
            Some(millis(ms))
        }
        None => {
            r.record_derived("leaseAssignmentIntervalMillis", (failover * 2).as_millis());
            None
        }
    };
    let stale: String = r.setting("staleWorkerMetricsEntryCleanupDuration");
    let alpha: String = r.setting("workerMetricsEMAAlpha");
    let max_throughput: Option<String> = r.get::<String>("maxThroughputPerHostKBps").map(|(v, _)| v);
    let kcl3 = Kcl3Config {
        coordinator_state_table,
        worker_metrics_table,
        lease_assignment_interval,
        graceful_handoff_enabled: r.setting("isGracefulLeaseHandoffEnabled"),
        graceful_handoff_timeout: r.millis_setting("gracefulLeaseHandoffTimeoutMillis"),
        worker_metrics_reporter_interval: r.millis_setting("workerMetricsReporterFreqInMillis"),
        stale_worker_metrics_cleanup: iso_duration(&stale).unwrap_or(Duration::from_secs(86_400)),
        worker_metrics_ema_alpha: alpha.parse().unwrap_or(0.5),
        max_throughput_per_host_kbps: max_throughput.and_then(|v| v.parse().ok()),
        migration_check_interval: r.millis_setting("multilangd.migrationCheckIntervalMillis"),
        upgrade_ready_for: r.millis_setting("multilangd.upgradeReadinessMillis"),
    };
    (client_version, kcl3)
}

/// An ISO-8601 duration of days, hours, minutes and seconds (`P1D`, `PT15M`, `PT1.5S`), as
/// validated by the key table; `None` for anything else.
fn iso_duration(text: &str) -> Option<Duration> {
    let rest = text.trim().strip_prefix(['P', 'p'])?;
    let (date, time) = match rest.split_once(['T', 't']) {
        Some((d, t)) => (d, Some(t)),
        None => (rest, None),
    };
    let mut seconds = 0.0_f64;
    let mut add = |part: &str, units: &[(char, f64)]| -> Option<()> {
        let mut number = String::new();
        for c in part.chars() {
            if c.is_ascii_digit() || c == '.' {
                number.push(c);
            } else {
                let factor = units.iter().find(|(u, _)| u.eq_ignore_ascii_case(&c))?.1;
                seconds += number.parse::<f64>().ok()? * factor;
                number.clear();
            }
        }
        number.is_empty().then_some(())
    };
    add(date, &[('D', 86_400.0)])?;
    if let Some(time) = time {
        add(time, &[('H', 3_600.0), ('M', 60.0), ('S', 1.0)])?;
    }
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod kcl3_tests {
    use super::iso_duration;
    use std::time::Duration;

    #[test]
    fn iso_durations_of_days_and_times() {
        assert_eq!(iso_duration("P1D"), Some(Duration::from_secs(86_400)));
        assert_eq!(iso_duration("PT15M"), Some(Duration::from_secs(900)));
        assert_eq!(iso_duration("P1DT2H3M4.5S"), Some(Duration::from_secs_f64(93_784.5)));
        assert_eq!(iso_duration("15M"), None);
        assert_eq!(iso_duration("P1X"), None);
    }
}
