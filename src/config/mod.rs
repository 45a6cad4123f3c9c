//! Configuration: a Java `.properties` file → typed, validated [`Config`].
//!
//! Two stages, as in the Java daemon but stricter:
//! 1. [`properties`] turns the file's text (ISO-8859-1, `java.util.Properties` syntax) into
//!    entries that remember their line numbers;
//! 2. [`Config::from_entries`] maps every known key onto a typed field, with the Java
//!    defaults, and reports each problem with the file, line, key, bad value and what is
//!    accepted. Unknown keys are warnings (with a near-miss suggestion), never silent.
//!
//! Building AWS clients from a `Config` happens elsewhere ([`crate::aws`]); this module is
//! pure and does no I/O beyond reading the file.

pub mod credentials;
pub mod keys;
pub mod properties;

use std::path::PathBuf;
use std::time::Duration;

pub use credentials::CredentialsSpec;

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

/// `initialPositionInStream` (+ `initialPositionInStreamExtended`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitialPosition {
    /// `TRIM_HORIZON`.
    TrimHorizon,
    /// `LATEST` (the Java default).
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
    /// Detailed metrics (Java default).
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
    /// `fanoutConfig.consumerName` (default: applicationName).
    pub consumer_name: String,
    /// `fanoutConfig.maxDescribeStreamSummaryRetries` (10).
    pub max_describe_stream_summary_retries: u32,
    /// `fanoutConfig.maxDescribeStreamConsumerRetries` (10).
    pub max_describe_stream_consumer_retries: u32,
    /// `fanoutConfig.registerStreamConsumerRetries` (10).
    pub register_stream_consumer_retries: u32,
    /// `fanoutConfig.retryBackoffMillis` (1000).
    pub retry_backoff: Duration,
}

/// Polling settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollingConfig {
    /// `maxRecords` (10000, at most 10000).
    pub max_records: u32,
    /// `idleTimeBetweenReadsInMillis` (1500).
    pub idle_time_between_reads: Duration,
    /// `retryGetRecordsInSeconds` (unset).
    pub retry_get_records: Option<Duration>,
    /// `maxGetRecordsThreadPool` (unset; accepted, not used: every shard reads on its own task).
    pub max_get_records_thread_pool: Option<u32>,
    /// `millisBehindLatestThresholdForReducedTps` (unset/0 = disabled).
    pub millis_behind_latest_threshold_for_reduced_tps: Option<Duration>,
}

/// The whole, validated configuration. Field docs name the property key and the default.
#[derive(Debug, Clone)]
pub struct Config {
    /// The properties file this came from.
    pub source: PathBuf,
    /// `executableName` (required).
    pub executable: Executable,
    /// `processingLanguage` (informational).
    pub processing_language: Option<String>,
    /// `maxActiveThreads` (accepted; caps concurrently running children when > 0).
    pub max_active_threads: Option<u32>,
    /// `applicationName` (required).
    pub application_name: String,
    /// Stream name: from `streamArn` when set (it wins), else `streamName`.
    pub stream_name: String,
    /// `streamArn`, when set.
    pub stream_arn: Option<String>,
    /// `tableName` (default: applicationName).
    pub table_name: String,
    /// `workerId` / `workerIdentifier` (default: `<hostname>-<random>` per process).
    pub worker_id: Option<String>,
    /// `timeoutInSeconds` (unset or <= 0: no timeout).
    pub timeout: Option<Duration>,
    /// `shutdownGraceMillis` (multilangd default: 20000; Java: 0).
    pub shutdown_grace: Duration,
    /// `AWSCredentialsProvider` / `AwsCredentialsProvider` (required).
    pub credentials: CredentialsSpec,
    /// `AWSCredentialsProviderDynamoDB` (default: the Kinesis provider).
    pub credentials_dynamodb: Option<CredentialsSpec>,
    /// `AWSCredentialsProviderCloudWatch` (default: the Kinesis provider).
    pub credentials_cloudwatch: Option<CredentialsSpec>,
    /// `regionName` (default: the SDK's region chain).
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
    /// `initialPositionInStream` / `initialPositionInStreamExtended` (LATEST).
    pub initial_position: InitialPosition,
    /// `retrievalMode` after the DEFAULT rule.
    pub retrieval_mode: RetrievalMode,
    /// Polling keys.
    pub polling: PollingConfig,
    /// Fan-out keys.
    pub fan_out: FanOutConfig,
    /// `callProcessRecordsEvenForEmptyRecordList` (false).
    pub call_process_records_even_for_empty_record_list: bool,
    /// `failoverTimeMillis` (10000).
    pub failover_time: Duration,
    /// `shardSyncIntervalMillis` (60000).
    pub shard_sync_interval: Duration,
    /// `cleanupLeasesUponShardCompletion` (true; false is honoured, unlike Java).
    pub cleanup_leases_upon_shard_completion: bool,
    /// `ignoreUnexpectedChildShards` (false).
    pub ignore_unexpected_child_shards: bool,
    /// `maxLeasesForWorker` (unlimited).
    pub max_leases_for_worker: u32,
    /// `maxLeasesToStealAtOneTime` (1).
    pub max_leases_to_steal_at_one_time: u32,
    /// `initialLeaseTableReadCapacity` (10; inert: the table is PAY_PER_REQUEST).
    pub initial_lease_table_read_capacity: u32,
    /// `initialLeaseTableWriteCapacity` (10; inert).
    pub initial_lease_table_write_capacity: u32,
    /// `maxLeaseRenewalThreads` (20; caps concurrent renewals).
    pub max_lease_renewal_threads: u32,
    /// `listShardsBackoffTimeInMillis` (1500).
    pub list_shards_backoff: Duration,
    /// `maxListShardsRetryAttempts` (50).
    pub max_list_shards_retry_attempts: u32,
    /// `parentShardPollIntervalMillis` (10000).
    pub parent_shard_poll_interval: Duration,
    /// `skipShardSyncAtWorkerInitializationIfLeasesExist` (false).
    pub skip_shard_sync_at_worker_initialization_if_leases_exist: bool,
    /// `schedulerInitializationBackoffTimeMillis` (1000).
    pub scheduler_initialization_backoff: Duration,
    /// `taskBackoffTimeMillis` (500).
    pub task_backoff: Duration,
    /// `logWarningForTaskAfterMillis` (unset).
    pub log_warning_for_task_after: Option<Duration>,
    /// `enablePriorityLeaseAssignment` (true).
    pub enable_priority_lease_assignment: bool,
    /// `leaseTableDeletionProtectionEnabled` (false).
    pub lease_table_deletion_protection_enabled: bool,
    /// `leaseTablePitrEnabled` (false).
    pub lease_table_pitr_enabled: bool,
    /// `metricsLevel` (DETAILED).
    pub metrics_level: MetricsLevel,
    /// `metricsEnabledDimensions` (ALL).
    pub metrics_enabled_dimensions: Vec<String>,
    /// `metricsBufferTimeMillis` (10000).
    pub metrics_buffer_time: Duration,
    /// `metricsMaxQueueSize` (10000).
    pub metrics_max_queue_size: u32,
    /// `clientVersionConfig` (3.x; accepted, not used).
    pub client_version_config: Option<ClientVersionConfig>,
    /// Every key that was accepted but has no effect in multilangd (3.x keys, inert keys),
    /// with its line, for the startup report.
    pub unused_keys: Vec<(String, usize)>,
}
