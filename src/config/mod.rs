//! Configuration: a Java `.properties` file → typed, validated [`Config`].
//!
//! Two stages, as in the Java daemon but stricter:
//! 1. [`properties`] turns the file's bytes (ISO-8859-1, `java.util.Properties` syntax) into
//!    entries that remember their line numbers;
//! 2. [`Config::from_entries`] maps every known key ([`keys::KEYS`]) onto a typed field and
//!    reports each problem with the file, line, key, bad value and what is accepted. All
//!    problems are collected, not only the first. Unknown keys are warnings (with a near-miss
//!    suggestion), never silent.
//!
//! Then [`Config::check_runnable`] refuses what a valid file may ask for but this version
//! cannot run ([`unsupported`]); `multilangd validate` and [`crate::run`] both call it.
//!
//! Inside: `keys` is the table of every key (type, default, meaning) and the only place a
//! default is written; `values` is the syntax of values; `reader` reads one key (file value or
//! table default, problems, the `validate` report); `build` reads the keys section by section
//! (daemon, AWS clients, retrieval, leases, metrics, KCL 3.x) and assembles the [`Config`].
//!
//! Building AWS clients from a `Config` happens elsewhere (the `aws` module); this module is
//! pure and does no I/O beyond reading the file.

mod build;
pub mod credentials;
pub mod keys;
pub mod properties;
mod reader;
pub mod unsupported;
mod values;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use credentials::{CredentialsSpec, ProviderSpec};
pub use properties::Entry;
pub use values::parse_listen_address;

/// Where a resolved value came from (for `multilangd validate`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Set in the properties file at this (1-based) line.
    Line(usize),
    /// The built-in default.
    Default,
    /// Derived from other keys (e.g. `tableName` from `applicationName`).
    Derived(&'static str),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Line(line) => write!(f, "line {line}"),
            Self::Default => f.write_str("default"),
            Self::Derived(from) => write!(f, "derived: {from}"),
        }
    }
}
/// `initialPositionInStream` (+ `initialPositionInStreamExtended`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitialPosition {
    /// `TRIM_HORIZON`.
    TrimHorizon,
    /// `LATEST`.
    Latest,
    /// `AT_TIMESTAMP`, from `initialPositionInStreamExtended` (epoch seconds), stored in ms.
    AtTimestamp {
        /// Epoch milliseconds.
        epoch_millis: i64,
    },
}

/// `retrievalMode` after applying the DEFAULT rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetrievalMode {
    /// GetRecords polling.
    Polling,
    /// Enhanced fan-out (SubscribeToShard).
    FanOut,
}

/// `metricsLevel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsLevel {
    /// No metrics.
    None,
    /// Summary metrics.
    Summary,
    /// Detailed metrics.
    Detailed,
}

/// `clientVersionConfig` (KCL 3.x; accepted, reported as not used).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientVersionConfig {
    /// `CLIENT_VERSION_CONFIG_3X`.
    V3x,
    /// `CLIENT_VERSION_CONFIG_COMPATIBLE_WITH_2X`.
    CompatibleWith2x,
    /// `CLIENT_VERSION_CONFIG_COMPATIBLE_WITH_2X_PHASE1`.
    CompatibleWith2xPhase1,
}

/// KCL 3.x settings (lease assignment, graceful hand-off, worker metrics, side tables).
#[derive(Debug, Clone, PartialEq)]
pub struct Kcl3Config {
    /// `coordinatorStateTableName` (default `<applicationName>-CoordinatorState`, never from
    /// `tableName`, as Java).
    pub coordinator_state_table: String,
    /// `workerMetricsTableName` (default `<applicationName>-WorkerMetricStats`).
    pub worker_metrics_table: String,
    /// `leaseAssignmentIntervalMillis`; `None` = 2 × `failoverTimeMillis`.
    pub lease_assignment_interval: Option<Duration>,
    /// `isGracefulLeaseHandoffEnabled`.
    pub graceful_handoff_enabled: bool,
    /// `gracefulLeaseHandoffTimeoutMillis`.
    pub graceful_handoff_timeout: Duration,
    /// `workerMetricsReporterFreqInMillis` (a worker is inactive after twice this).
    pub worker_metrics_reporter_interval: Duration,
    /// `staleWorkerMetricsEntryCleanupDuration`.
    pub stale_worker_metrics_cleanup: Duration,
    /// `workerMetricsEMAAlpha` (throughputKBps smoothing).
    pub worker_metrics_ema_alpha: f64,
    /// `maxThroughputPerHostKBps`; `None` = unlimited.
    pub max_throughput_per_host_kbps: Option<f64>,
    /// `multilangd.migrationCheckIntervalMillis`: how often `Migration3.0` is re-read.
    pub migration_check_interval: Duration,
    /// `multilangd.upgradeReadinessMillis`: how long the 2.x leader waits, in
    /// `UPGRADE_FROM_2X`, with every lease owner publishing worker metrics before it flips
    /// the fleet to 3.x (Java: 10 min).
    pub upgrade_ready_for: Duration,
}

/// The child command line, `executableName` split on runs of spaces (no shell, no quoting).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Executable {
    /// The program (resolved on PATH when it has no `/`).
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// The raw `executableName` value.
    pub raw: String,
}

/// Enhanced fan-out settings (`fanoutConfig.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FanOutConfig {
    /// `fanoutConfig.consumerArn`: use an existing consumer.
    pub consumer_arn: Option<String>,
    /// `fanoutConfig.consumerName`.
    pub consumer_name: String,
    /// `fanoutConfig.maxDescribeStreamSummaryRetries`.
    pub max_describe_stream_summary_retries: u32,
    /// `fanoutConfig.maxDescribeStreamConsumerRetries`.
    pub max_describe_stream_consumer_retries: u32,
    /// `fanoutConfig.registerStreamConsumerRetries`.
    pub register_stream_consumer_retries: u32,
    /// `fanoutConfig.retryBackoffMillis`.
    pub retry_backoff: Duration,
}

/// Polling settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollingConfig {
    /// `maxRecords` (at most 10000).
    pub max_records: u32,
    /// `idleTimeBetweenReadsInMillis`.
    pub idle_time_between_reads: Duration,
    /// `retryGetRecordsInSeconds` (accepted, not used).
    pub retry_get_records: Option<Duration>,
    /// `maxGetRecordsThreadPool` (accepted, not used: every shard reads on its own task).
    pub max_get_records_thread_pool: Option<u32>,
    /// `millisBehindLatestThresholdForReducedTps` (`None`: disabled).
    pub millis_behind_latest_threshold_for_reduced_tps: Option<Duration>,
}

/// The whole, validated configuration. Field docs name the property key; its default and
/// meaning are in the key table ([`keys::KEYS`], rendered in docs/configuration.md).
#[derive(Debug, Clone)]
pub struct Config {
    /// The properties file this came from.
    pub source: PathBuf,
    /// `executableName` (required).
    pub executable: Executable,
    /// `processingLanguage` (informational).
    pub processing_language: Option<String>,
    /// `maxActiveThreads` (accepted, no effect: child I/O is asynchronous).
    pub max_active_threads: Option<u32>,
    /// `applicationName` (required).
    pub application_name: String,
    /// Stream name: from `streamArn` when set (it wins), else `streamName`.
    pub stream_name: String,
    /// `streamArn`, when set.
    pub stream_arn: Option<String>,
    /// `tableName`.
    pub table_name: String,
    /// `workerId` / `workerIdentifier` (`None`: generated per process, [`crate::default_worker_id`]).
    pub worker_id: Option<String>,
    /// `timeoutInSeconds` (`None`: no timeout).
    pub timeout: Option<Duration>,
    /// `shutdownGraceMillis`.
    pub shutdown_grace: Duration,
    /// `multilangd.httpAddress` (`None`: no operations HTTP server). The command line's
    /// `--http-address` replaces it.
    pub http_address: Option<std::net::SocketAddr>,
    /// `multilangd.stallThresholdMillis`.
    pub stall_threshold: Duration,
    /// `multilangd.childStartupConcurrency`: record processors starting at once.
    pub child_startup_concurrency: u32,
    /// `AWSCredentialsProvider` / `AwsCredentialsProvider` (required).
    pub credentials: CredentialsSpec,
    /// `AWSCredentialsProviderDynamoDB` (`None`: the Kinesis provider).
    pub credentials_dynamodb: Option<CredentialsSpec>,
    /// `AWSCredentialsProviderCloudWatch` (`None`: the Kinesis provider).
    pub credentials_cloudwatch: Option<CredentialsSpec>,
    /// `regionName` (`None`: the SDK's region chain).
    pub region: Option<String>,
    /// `kinesisEndpoint` / `kinesisClient.endpointOverride`.
    pub kinesis_endpoint: Option<String>,
    /// `dynamoDBEndpoint` / `dynamoDbClient.endpointOverride`.
    pub dynamodb_endpoint: Option<String>,
    /// `cloudWatchClient.endpointOverride` / `cloudWatchEndpoint`.
    pub cloudwatch_endpoint: Option<String>,
    /// `kinesisClient.region` (overrides regionName for Kinesis).
    pub kinesis_region: Option<String>,
    /// `dynamoDbClient.region`.
    pub dynamodb_region: Option<String>,
    /// `cloudWatchClient.region`.
    pub cloudwatch_region: Option<String>,
    /// `initialPositionInStream` / `initialPositionInStreamExtended`.
    pub initial_position: InitialPosition,
    /// `retrievalMode` after the DEFAULT rule.
    pub retrieval_mode: RetrievalMode,
    /// Polling keys.
    pub polling: PollingConfig,
    /// Fan-out keys.
    pub fan_out: FanOutConfig,
    /// `callProcessRecordsEvenForEmptyRecordList`.
    pub call_process_records_even_for_empty_record_list: bool,
    /// `failoverTimeMillis`.
    pub failover_time: Duration,
    /// `shardSyncIntervalMillis`.
    pub shard_sync_interval: Duration,
    /// `cleanupLeasesUponShardCompletion` (false is honoured, unlike Java).
    pub cleanup_leases_upon_shard_completion: bool,
    /// `ignoreUnexpectedChildShards`.
    pub ignore_unexpected_child_shards: bool,
    /// `maxLeasesForWorker`.
    pub max_leases_for_worker: u32,
    /// `maxLeasesToStealAtOneTime`.
    pub max_leases_to_steal_at_one_time: u32,
    /// `initialLeaseTableReadCapacity` (inert: the table is PAY_PER_REQUEST).
    pub initial_lease_table_read_capacity: u32,
    /// `initialLeaseTableWriteCapacity` (inert).
    pub initial_lease_table_write_capacity: u32,
    /// `maxLeaseRenewalThreads` (caps concurrent renewals).
    pub max_lease_renewal_threads: u32,
    /// `listShardsBackoffTimeInMillis`.
    pub list_shards_backoff: Duration,
    /// `maxListShardsRetryAttempts`.
    pub max_list_shards_retry_attempts: u32,
    /// `parentShardPollIntervalMillis`.
    pub parent_shard_poll_interval: Duration,
    /// `skipShardSyncAtWorkerInitializationIfLeasesExist`.
    pub skip_shard_sync_at_worker_initialization_if_leases_exist: bool,
    /// `schedulerInitializationBackoffTimeMillis`.
    pub scheduler_initialization_backoff: Duration,
    /// `taskBackoffTimeMillis`.
    pub task_backoff: Duration,
    /// `logWarningForTaskAfterMillis`.
    pub log_warning_for_task_after: Option<Duration>,
    /// `enablePriorityLeaseAssignment`.
    pub enable_priority_lease_assignment: bool,
    /// `leaseTableDeletionProtectionEnabled`.
    pub lease_table_deletion_protection_enabled: bool,
    /// `leaseTablePitrEnabled` (accepted, not used).
    pub lease_table_pitr_enabled: bool,
    /// `metricsLevel`.
    pub metrics_level: MetricsLevel,
    /// `metricsEnabledDimensions`.
    pub metrics_enabled_dimensions: Vec<String>,
    /// `metricsBufferTimeMillis`.
    pub metrics_buffer_time: Duration,
    /// `metricsMaxQueueSize`.
    pub metrics_max_queue_size: u32,
    /// `clientVersionConfig` as set in the file (`None`: not set).
    pub client_version_config: Option<ClientVersionConfig>,
    /// The other KCL 3.x settings.
    pub kcl3: Kcl3Config,
    /// Every key that was accepted but has no effect in multilangd (3.x keys, inert keys),
    /// with its line, for the startup report.
    pub unused_keys: Vec<(String, usize)>,
    /// Where each known key set in the file is, by canonical name (so that checks after
    /// loading, such as [`Config::check_runnable`], can name the line).
    pub locations: BTreeMap<&'static str, KeyLocation>,
}

/// Where a key is set in the properties file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLocation {
    /// The key as written (credentials keys may differ from the canonical name in case).
    pub written: String,
    /// Its (first) line.
    pub line: usize,
}

/// A configuration problem that is not fatal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The properties file.
    pub path: PathBuf,
    /// The line it concerns, if any.
    pub line: Option<usize>,
    /// The key as written, if any.
    pub key: Option<String>,
    /// What is wrong and what happens instead.
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_located(f, &self.path, self.line, self.key.as_deref(), &self.message)
    }
}

/// One fatal configuration problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The line it concerns; `None` for file-level problems such as a missing key.
    pub line: Option<usize>,
    /// The key as written, if any.
    pub key: Option<String>,
    /// What is wrong and what is accepted.
    pub message: String,
}

fn write_located(
    f: &mut fmt::Formatter<'_>,
    path: &Path,
    line: Option<usize>,
    key: Option<&str>,
    message: &str,
) -> fmt::Result {
    write!(f, "{}", path.display())?;
    if let Some(line) = line {
        write!(f, ":{line}")?;
    }
    if let Some(key) = key {
        write!(f, ": {key}")?;
    }
    write!(f, ": {message}")
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read (missing, a directory, no permission, ...).
    #[error("cannot read properties file {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file was read but has one or more problems (all of them are listed).
    #[error("{}", ProblemsDisplay { heading: "invalid configuration in", path, problems })]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Every problem found, in line order (file-level problems last).
        problems: Vec<Problem>,
    },
    /// The file is valid but asks for something this version cannot run
    /// ([`Config::check_runnable`]).
    #[error("{}", ProblemsDisplay { heading: "unsupported configuration in", path, problems })]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// Every refusal.
        problems: Vec<Problem>,
    },
}

struct ProblemsDisplay<'a> {
    heading: &'static str,
    path: &'a Path,
    problems: &'a [Problem],
}

impl fmt::Display for ProblemsDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(f, "{} {} ({n} problem{}):", self.heading, self.path.display(), if n == 1 { "" } else { "s" })?;
        for p in self.problems {
            f.write_str("\n  ")?;
            write_located(f, self.path, p.line, p.key.as_deref(), &p.message)?;
        }
        Ok(())
    }
}

/// One resolved key for the `validate` report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The canonical key name.
    pub key: &'static str,
    /// The effective value, as text.
    pub value: String,
    /// Where it came from.
    pub origin: Origin,
}

/// A successfully loaded configuration with everything worth telling the operator.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The configuration.
    pub config: Config,
    /// Non-fatal problems (unknown keys, duplicates, keys without effect, ...), in line order.
    pub warnings: Vec<Warning>,
    /// Every used key with its effective value and origin, in table order.
    pub resolved: Vec<Resolved>,
}

impl Config {
    /// Reads and validates a properties file.
    ///
    /// # Errors
    /// [`ConfigError::Read`] when the file cannot be read, [`ConfigError::Invalid`] with every
    /// problem found otherwise.
    pub fn load(path: impl AsRef<Path>) -> Result<Loaded, ConfigError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        let (entries, syntax) = properties::parse(&bytes);
        let problems = syntax
            .into_iter()
            .map(|e| Problem { line: Some(e.line), key: None, message: e.problem.to_string() })
            .collect();
        build::build(path, problems, entries)
    }

    /// Validates parsed entries (in file order; a later duplicate wins with a warning).
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] with every problem found.
    pub fn from_entries(path: impl AsRef<Path>, entries: Vec<Entry>) -> Result<Loaded, ConfigError> {
        build::build(path.as_ref(), Vec::new(), entries)
    }

    /// Refuses what this version of multilangd cannot run although the file is valid (every
    /// check of [`unsupported::UNSUPPORTED`]). `multilangd validate` and [`crate::run`] both
    /// call it, so they refuse the same files.
    ///
    /// # Errors
    /// [`ConfigError::Unsupported`] naming the file, line and key of each refusal.
    pub fn check_runnable(&self) -> Result<(), ConfigError> {
        let problems = unsupported::refusals(self);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Unsupported { path: self.source.clone(), problems })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::keys::Usage;
    use super::values::{is_consumer_arn, is_http_url, is_iso_duration, is_region, parse_int};
    use super::*;

    const MINIMAL: &str = "executableName = python3 app.py --flag\n\
        applicationName = app\n\
        streamName = s\n\
        AWSCredentialsProvider = DefaultCredentialsProvider\n";

    fn load(text: &str) -> Result<Loaded, ConfigError> {
        let (entries, syntax) = properties::parse(text.as_bytes());
        assert!(syntax.is_empty());
        Config::from_entries("/etc/app.properties", entries)
    }

    fn with(extra: &str) -> Result<Loaded, ConfigError> {
        load(&format!("{MINIMAL}{extra}"))
    }

    fn problems(extra: &str) -> Vec<Problem> {
        match with(extra) {
            Err(ConfigError::Invalid { problems, .. }) => problems,
            other => panic!("expected problems, got {other:?}"),
        }
    }

    fn warnings(loaded: &Loaded) -> Vec<String> {
        loaded.warnings.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn minimal_config_gets_the_java_defaults() {
        let loaded = with("").unwrap();
        let c = &loaded.config;
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        assert_eq!(
            c.executable,
            Executable {
                program: "python3".into(),
                args: vec!["app.py".into(), "--flag".into()],
                raw: "python3 app.py --flag".into()
            }
        );
        assert_eq!(c.table_name, "app");
        assert_eq!(c.fan_out.consumer_name, "app");
        assert_eq!(c.initial_position, InitialPosition::Latest);
        assert_eq!(c.retrieval_mode, RetrievalMode::FanOut);
        assert_eq!(c.shutdown_grace, Duration::from_millis(20_000));
        assert_eq!(c.failover_time, Duration::from_millis(10_000));
        assert_eq!(c.shard_sync_interval, Duration::from_millis(60_000));
        assert_eq!(c.polling.max_records, 10_000);
        assert_eq!(c.polling.idle_time_between_reads, Duration::from_millis(1500));
        assert_eq!(c.max_leases_for_worker, 2_147_483_647);
        assert_eq!(c.max_leases_to_steal_at_one_time, 1);
        assert_eq!(c.max_lease_renewal_threads, 20);
        assert!(c.cleanup_leases_upon_shard_completion);
        assert!(c.enable_priority_lease_assignment);
        assert_eq!(c.metrics_level, MetricsLevel::Detailed);
        assert_eq!(c.metrics_enabled_dimensions, vec!["ALL".to_owned()]);
        assert_eq!(c.timeout, None);
        assert_eq!(c.worker_id, None);
        assert_eq!(c.credentials.providers, vec![ProviderSpec::DefaultChain]);
        assert!(c.unused_keys.is_empty());
        let origin = |k: &str| loaded.resolved.iter().find(|r| r.key == k).map(|r| r.origin.clone());
        assert_eq!(origin("applicationName"), Some(Origin::Line(2)));
        assert_eq!(origin("failoverTimeMillis"), Some(Origin::Default));
        assert_eq!(origin("tableName"), Some(Origin::Derived("= applicationName")));
    }

    /// The `validate` report shows the key table's defaults and derivation rules, nothing else.
    #[test]
    fn reported_defaults_are_the_key_tables() {
        let loaded = with("").unwrap();
        let mut defaults = 0;
        for r in &loaded.resolved {
            let table = keys::lookup(r.key).unwrap().default;
            match (&r.origin, table) {
                (Origin::Default, _) => {
                    defaults += 1;
                    assert_eq!(r.value, table.to_string(), "{}", r.key);
                }
                (Origin::Derived(how), keys::KeyDefault::Derived(rule)) => assert_eq!(*how, rule, "{}", r.key),
                _ => {}
            }
        }
        assert!(defaults > 30, "{defaults}");
    }

    #[test]
    fn executable_splits_on_spaces_only() {
        let loaded = load(&MINIMAL.replace("python3 app.py --flag", "  run\tme   'a b'  ")).unwrap();
        assert_eq!(loaded.config.executable.program, "run\tme");
        assert_eq!(loaded.config.executable.args, vec!["'a", "b'"]);
    }

    #[test]
    fn values_are_trimmed() {
        let c = with("maxRecords = 100   \ncleanupLeasesUponShardCompletion = false \t\nmetricsLevel = summary \n")
            .unwrap()
            .config;
        assert_eq!(c.polling.max_records, 100);
        assert!(!c.cleanup_leases_upon_shard_completion);
        assert_eq!(c.metrics_level, MetricsLevel::Summary);
    }

    #[test]
    fn every_bad_value_is_reported_with_line_key_value_and_what_is_accepted() {
        let ps = problems(
            "maxRecords = abc\nfailoverTimeMillis = 5.5\ncleanupLeasesUponShardCompletion = maybe\nmetricsLevel = VERBOSE\nkinesisEndpoint = localhost:4566\nregionName = US East\n",
        );
        let lines: Vec<Option<usize>> = ps.iter().map(|p| p.line).collect();
        assert_eq!(lines, vec![Some(5), Some(6), Some(7), Some(8), Some(9), Some(10)]);
        let text = ConfigError::Invalid { path: "/etc/app.properties".into(), problems: ps }.to_string();
        for needle in [
            "6 problems",
            "/etc/app.properties:5: maxRecords: invalid value `abc`: expected a whole number from 1 to 10000",
            "/etc/app.properties:6: failoverTimeMillis: invalid value `5.5`",
            "cleanupLeasesUponShardCompletion: invalid value `maybe`: expected true or false",
            "metricsLevel: invalid value `VERBOSE`: expected one of NONE, SUMMARY, DETAILED",
            "kinesisEndpoint: invalid value `localhost:4566`: expected an http:// or https:// URL",
            "regionName: invalid value `US East`",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
    }

    #[test]
    fn numbers_accept_plus_and_reject_overflow_hex_and_empty_is_unset() {
        assert_eq!(with("maxRecords = +50\n").unwrap().config.polling.max_records, 50);
        for bad in ["99999999999", "0x10", "1e3", "++5", "-1", "0", "10001"] {
            let ps = problems(&format!("maxRecords = {bad}\n"));
            assert_eq!(ps.len(), 1, "{bad}");
        }
        let loaded = with("maxRecords =\n").unwrap();
        assert_eq!(loaded.config.polling.max_records, 10_000);
        assert_eq!(loaded.config.retrieval_mode, RetrievalMode::FanOut);
        assert!(warnings(&loaded)[0].contains("empty value; treated as not set"));
    }

    #[test]
    fn missing_required_keys_are_file_level_problems_naming_the_key() {
        let ps = match load("") {
            Err(ConfigError::Invalid { problems, .. }) => problems,
            other => panic!("{other:?}"),
        };
        let keys: Vec<_> = ps.iter().map(|p| (p.line, p.key.clone().unwrap())).collect();
        assert_eq!(
            keys,
            vec![
                (None, "executableName".to_owned()),
                (None, "applicationName".to_owned()),
                (None, "streamName".to_owned()),
                (None, "AWSCredentialsProvider".to_owned()),
            ]
        );
    }

    #[test]
    fn unknown_keys_warn_with_suggestions() {
        let loaded = with("dynamoDbEndpoint = http://localhost:8000\nStreamName = x\nfoo.bar = 1\n").unwrap();
        let w = warnings(&loaded);
        assert_eq!(w.len(), 3);
        assert!(w[0].contains(":5: dynamoDbEndpoint: unknown key ignored (did you mean `dynamoDBEndpoint`?"), "{w:?}");
        assert!(w[1].contains(":6: StreamName: unknown key ignored (did you mean `streamName`?"));
        assert!(w[2].contains(":7: foo.bar: unknown key ignored"));
        assert_eq!(loaded.config.dynamodb_endpoint, None);
    }

    #[test]
    fn duplicates_later_wins_with_a_warning() {
        let loaded =
            with("maxRecords = 10\nmaxRecords = 20\nawsCredentialsProvider = EnvironmentVariableCredentialsProvider\n")
                .unwrap();
        assert_eq!(loaded.config.polling.max_records, 20);
        assert_eq!(loaded.config.credentials.providers, vec![ProviderSpec::Environment]);
        let w = warnings(&loaded);
        assert!(w[0].contains(":6: maxRecords: set again; this value wins over line 5"), "{w:?}");
        assert!(w[1].contains("sets the same key as `AWSCredentialsProvider` on line 4"));
    }

    #[test]
    fn credential_key_spellings_and_per_client_specs() {
        let text = MINIMAL.replace("AWSCredentialsProvider", "AwsCredentialsProvider");
        let loaded = load(&format!(
            "{text}AwsCredentialsProviderDynamoDB = ProfileCredentialsProvider|ddb\nawscredentialsproviderCloudWatch = AnonymousCredentialsProvider\n"
        ))
        .unwrap();
        let c = loaded.config;
        assert_eq!(c.credentials.providers, vec![ProviderSpec::DefaultChain]);
        assert_eq!(
            c.credentials_dynamodb.unwrap().providers,
            vec![ProviderSpec::Profile { name: Some("ddb".into()), file: None }]
        );
        assert_eq!(c.credentials_cloudwatch.unwrap().providers, vec![ProviderSpec::Anonymous]);
    }

    #[test]
    fn credential_problems() {
        let ps = load(&MINIMAL.replace("DefaultCredentialsProvider", "NoSuchThing, AlsoNot")).unwrap_err();
        let text = ps.to_string();
        assert!(
            text.contains(
                ":4: AWSCredentialsProvider: invalid value `NoSuchThing, AlsoNot`: no usable credentials provider"
            ),
            "{text}"
        );
        let loaded = with("").unwrap();
        assert!(loaded.warnings.is_empty());
        let loaded =
            load(&MINIMAL.replace("DefaultCredentialsProvider", "Bogus,SystemPropertyCredentialsProvider")).unwrap();
        let w = warnings(&loaded);
        assert!(w.iter().any(|w| w.contains("unknown credentials provider `Bogus` skipped")));
        assert!(w.iter().any(|w| w.contains("AWS_ACCESS_KEY_ID")));
    }

    #[test]
    fn stream_arn_wins_and_is_validated() {
        let loaded = with("streamArn = arn:aws:kinesis:us-west-2:123456789012:stream/from-arn\n").unwrap();
        assert_eq!(loaded.config.stream_name, "from-arn");
        assert!(warnings(&loaded)[0].contains("overridden by the stream name `from-arn`"));
        let ps = problems("streamArn = arn:aws:kinesis:us-west-2:1234:stream/x\n");
        assert!(ps[0].message.contains("expected arn:<partition>:kinesis:"));
        let only_arn = load(
            &MINIMAL.replace("streamName = s", "streamArn = arn:aws-cn:kinesis:cn-north-1:123456789012:stream/cn"),
        )
        .unwrap();
        assert_eq!(only_arn.config.stream_name, "cn");
        assert_eq!(only_arn.config.stream_arn.as_deref(), Some("arn:aws-cn:kinesis:cn-north-1:123456789012:stream/cn"));
        // An invalid ARN without streamName reports only the ARN, not a missing stream.
        let e = load(&MINIMAL.replace("streamName = s", "streamArn = nope")).unwrap_err().to_string();
        assert!(e.contains("1 problem"), "{e}");
    }

    #[test]
    fn initial_position_rules() {
        let c = with("initialPositionInStream = trim_horizon\n").unwrap().config;
        assert_eq!(c.initial_position, InitialPosition::TrimHorizon);
        let loaded =
            with("initialPositionInStream = TRIM_HORIZON\ninitialPositionInStreamExtended = 1636609142\n").unwrap();
        assert_eq!(loaded.config.initial_position, InitialPosition::AtTimestamp { epoch_millis: 1_636_609_142_000 });
        assert!(warnings(&loaded)[0].contains("overridden by initialPositionInStreamExtended"));
        let c = with("initialPositionInStream = AT_TIMESTAMP\ninitialPositionInStreamExtended = 10\n").unwrap();
        assert!(c.warnings.is_empty());
        let ps = problems("initialPositionInStream = AT_TIMESTAMP\n");
        assert!(ps[0].message.contains("initialPositionInStreamExtended"));
        let ps = problems("initialPositionInStreamExtended = yesterday\n");
        assert!(ps[0].message.contains("seconds since 1970"));
    }

    #[test]
    fn retrieval_mode_default_rule() {
        assert_eq!(with("").unwrap().config.retrieval_mode, RetrievalMode::FanOut);
        for key in keys::POLLING_KEYS {
            let c = with(&format!("{key} = 5\n")).unwrap().config;
            assert_eq!(c.retrieval_mode, RetrievalMode::Polling, "{key}");
        }
        assert_eq!(
            with("retrievalMode = default\nmaxRecords = 5\n").unwrap().config.retrieval_mode,
            RetrievalMode::Polling
        );
        let loaded = with("retrievalMode = fanout\nmaxRecords = 5\n").unwrap();
        assert_eq!(loaded.config.retrieval_mode, RetrievalMode::FanOut);
        assert!(warnings(&loaded)[0].contains("FANOUT ignores the polling keys maxRecords"));
        let loaded = with("retrievalMode = POLLING\nfanoutConfig.consumerName = c\n").unwrap();
        assert_eq!(loaded.config.retrieval_mode, RetrievalMode::Polling);
        assert!(warnings(&loaded)[0].contains("POLLING ignores the fan-out keys"));
        assert!(problems("retrievalMode = streaming\n")[0].message.contains("FANOUT, POLLING, DEFAULT"));
    }

    #[test]
    fn endpoint_and_region_precedence() {
        let loaded = with(
            "regionName = us-east-1\nkinesisClient.region = eu-west-1\nkinesisEndpoint = http://a:1\nkinesisClient.endpointOverride = http://b:2\ndynamoDBEndpoint = http://d:3\n",
        )
        .unwrap();
        let c = &loaded.config;
        assert_eq!(c.region.as_deref(), Some("us-east-1"));
        assert_eq!(c.kinesis_region.as_deref(), Some("eu-west-1"));
        assert_eq!(c.dynamodb_region, None);
        assert_eq!(c.kinesis_endpoint.as_deref(), Some("http://b:2"));
        assert_eq!(c.dynamodb_endpoint.as_deref(), Some("http://d:3"));
        assert!(warnings(&loaded)[0]
            .contains(":7: kinesisEndpoint: overridden by `kinesisClient.endpointOverride` on line 8"));
    }

    #[test]
    fn timeout_and_max_active_threads() {
        let c = with("timeoutInSeconds = 30\nmaxActiveThreads = 4\n").unwrap().config;
        assert_eq!(c.timeout, Some(Duration::from_secs(30)));
        assert_eq!(c.max_active_threads, Some(4));
        let loaded = with("timeoutInSeconds = 0\nmaxActiveThreads = -1\n").unwrap();
        assert_eq!(loaded.config.timeout, None);
        assert_eq!(loaded.config.max_active_threads, None);
        assert!(warnings(&loaded)[0].contains("disables the timeout"));
    }

    #[test]
    fn worker_id_alias() {
        assert_eq!(with("workerIdentifier = w2\n").unwrap().config.worker_id.as_deref(), Some("w2"));
        let loaded = with("workerIdentifier = w2\nworkerId = w1\n").unwrap();
        assert_eq!(loaded.config.worker_id.as_deref(), Some("w1"));
        assert!(warnings(&loaded)[0].contains("overridden by `workerId`"));
    }

    #[test]
    fn kcl3_settings_defaults_and_values() {
        let c = with("").unwrap().config;
        assert_eq!(c.client_version_config, None);
        let app = &c.application_name;
        assert_eq!(c.kcl3.coordinator_state_table, format!("{app}-CoordinatorState"));
        assert_eq!(c.kcl3.worker_metrics_table, format!("{app}-WorkerMetricStats"));
        assert_eq!(c.kcl3.lease_assignment_interval, None);
        assert!(c.kcl3.graceful_handoff_enabled);
        assert_eq!(c.kcl3.graceful_handoff_timeout, Duration::from_secs(30));
        assert_eq!(c.kcl3.worker_metrics_reporter_interval, Duration::from_secs(30));
        assert_eq!(c.kcl3.stale_worker_metrics_cleanup, Duration::from_secs(86_400));
        assert_eq!(c.kcl3.max_throughput_per_host_kbps, None);

        let c = with(
            "tableName = leases\ncoordinatorStateTableName = coord\nworkerMetricsTableName = wm\n\
             leaseAssignmentIntervalMillis = 5000\nisGracefulLeaseHandoffEnabled = false\n\
             gracefulLeaseHandoffTimeoutMillis = 7000\nstaleWorkerMetricsEntryCleanupDuration = PT15M\n\
             workerMetricsEMAAlpha = 0.25\nmaxThroughputPerHostKBps = 1024\n",
        )
        .unwrap()
        .config;
        assert_eq!(c.kcl3.coordinator_state_table, "coord");
        assert_eq!(c.kcl3.worker_metrics_table, "wm");
        assert_eq!(c.kcl3.lease_assignment_interval, Some(Duration::from_secs(5)));
        assert!(!c.kcl3.graceful_handoff_enabled);
        assert_eq!(c.kcl3.graceful_handoff_timeout, Duration::from_secs(7));
        assert_eq!(c.kcl3.stale_worker_metrics_cleanup, Duration::from_secs(900));
        assert_eq!(c.kcl3.worker_metrics_ema_alpha, 0.25);
        assert_eq!(c.kcl3.max_throughput_per_host_kbps, Some(1024.0));
        // tableName never renames the side tables (as Java).
        let c = with("tableName = leases\n").unwrap().config;
        assert!(c.kcl3.coordinator_state_table.ends_with("-CoordinatorState"));
        assert!(!c.kcl3.coordinator_state_table.starts_with("leases"));
    }

    #[test]
    fn unused_and_rejected_keys() {
        let loaded = with("clientVersionConfig = client_version_config_compatible_with_2x\nmetricsLevel = NONE\nvalidateSequenceNumberBeforeCheckpointing = true\ndampeningPercentage = 50\n").unwrap();
        let c = &loaded.config;
        assert_eq!(c.client_version_config, Some(ClientVersionConfig::CompatibleWith2x));
        assert_eq!(c.metrics_level, MetricsLevel::None);
        assert_eq!(
            c.unused_keys,
            vec![("validateSequenceNumberBeforeCheckpointing".to_owned(), 7), ("dampeningPercentage".to_owned(), 8),]
        );
        assert!(warnings(&loaded).iter().all(|w| w.contains("has no effect")));
        // Unused keys are still validated.
        for bad in [
            "dampeningPercentage = lots",
            "staleWorkerMetricsEntryCleanupDuration = 15 minutes",
            "workerMetricsTags = a=b,c",
            "workerMetricsBillingMode = cheap",
            "workerMetricsEMAAlpha = x",
        ] {
            assert_eq!(problems(&format!("{bad}\n")).len(), 1, "{bad}");
        }
        let ps = problems("shardPrioritization = anything\n");
        assert!(ps[0].message.contains("not supported"));
    }

    #[test]
    fn every_used_key_is_read() {
        // Keys that are resolved under another key's name in the report.
        let aliases = [
            ("workerIdentifier", "workerId"),
            ("initialPositionInStreamExtended", "initialPositionInStream"),
            ("kinesisClient.endpointOverride", "kinesisEndpoint"),
            ("dynamoDbClient.endpointOverride", "dynamoDBEndpoint"),
            ("cloudWatchClient.endpointOverride", "cloudWatchEndpoint"),
        ];
        let loaded = with("").unwrap();
        for k in keys::KEYS.iter().filter(|k| k.usage == Usage::Used) {
            let name = aliases.iter().find(|(alias, _)| *alias == k.name).map_or(k.name, |(_, target)| *target);
            assert!(loaded.resolved.iter().any(|r| r.key == name), "{} is not resolved", k.name);
        }
    }

    #[test]
    fn plus_minus_and_keyless_entries() {
        assert_eq!(parse_int("+5"), Some(5));
        assert_eq!(parse_int("-5"), Some(-5));
        assert_eq!(parse_int("+-5"), None);
        assert_eq!(parse_int("++5"), None);
        let loaded = with("= orphan\n").unwrap();
        assert!(warnings(&loaded)[0].contains(":5: entry without a key ignored (value `orphan`)"));
    }

    #[test]
    fn iso_durations() {
        for ok in ["P1D", "PT15M", "PT10H", "P2DT3H", "PT1.5S", "pt1m"] {
            assert!(is_iso_duration(ok), "{ok}");
        }
        for bad in ["P", "PT", "1D", "P1H", "PT1D", "-P1D", "PT1.5M", "P1DT"] {
            assert!(!is_iso_duration(bad), "{bad}");
        }
    }

    #[test]
    fn urls_regions_and_arns() {
        for ok in ["http://localhost:4566", "https://kinesis.us-east-1.amazonaws.com", "http://127.0.0.1:8000/"] {
            assert!(is_http_url(ok), "{ok}");
        }
        for bad in ["localhost:4566", "http://", "ftp://x", "http:// x", "http://:80"] {
            assert!(!is_http_url(bad), "{bad}");
        }
        assert!(is_region("us-east-1") && is_region("local"));
        assert!(!is_region("US-EAST-1") && !is_region("") && !is_region("1abc"));
        assert!(is_consumer_arn("arn:aws:kinesis:us-east-1:123456789012:stream/s/consumer/c:1636609142"));
        assert!(!is_consumer_arn("arn:aws:kinesis:us-east-1:123456789012:stream/s"));
    }
}
