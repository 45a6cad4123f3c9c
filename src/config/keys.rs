//! The one table of every property key multilangd knows: name, type, default, meaning,
//! category and whether it has an effect.
//!
//! The table drives unknown-key detection (and near-miss suggestions), value validation of
//! keys that are accepted but not used, the `multilangd validate` report, and the key tables of
//! `docs/configuration.md` (a unit test keeps the document equal to [`markdown_tables`]; run
//! `MULTILANGD_BLESS_DOCS=1 cargo test --lib config::keys` to regenerate it).
//!
//! It is also the only place a default is written: a [`KeyDefault::Value`] is the text a user
//! could have written, and the configuration build parses it exactly like a value from the file
//! (a unit test checks that every such default is valid for its key's type).

use std::fmt;

/// The type of a property value, which decides how it is parsed and what an error says is
/// accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    /// Any text.
    Text,
    /// The child command line (split on runs of spaces).
    Command,
    /// A whole number in `min..=max`.
    Int {
        /// Smallest accepted value.
        min: i64,
        /// Largest accepted value.
        max: i64,
    },
    /// Milliseconds, a whole number `>= min`.
    Millis {
        /// Smallest accepted value.
        min: i64,
    },
    /// Seconds since the Unix epoch.
    EpochSeconds,
    /// `true`/`false` (also `yes`/`no`, `y`/`n`, `on`/`off`, `1`/`0`), any case.
    Bool,
    /// One of the listed names, any case.
    Enum(&'static [&'static str]),
    /// A Kinesis stream ARN.
    StreamArn,
    /// A Kinesis stream-consumer ARN.
    ConsumerArn,
    /// An `http://` or `https://` URL.
    Url,
    /// An AWS region name.
    Region,
    /// A credentials provider chain (see [`super::credentials`]).
    Credentials,
    /// An ISO-8601 duration such as `PT15M` or `P1D`.
    IsoDuration,
    /// A comma-separated list.
    List,
    /// `key=value` pairs separated by commas.
    Tags,
    /// A decimal number.
    Decimal,
    /// A listen address: `IP:PORT`, `[IPv6]:PORT`, `localhost:PORT` or a bare `PORT`
    /// (127.0.0.1).
    ListenAddress,
}

impl ValueType {
    /// A short type name for tables.
    pub fn type_name(&self) -> String {
        match self {
            Self::Text => "string".into(),
            Self::Command => "command line".into(),
            Self::Int { .. } => "integer".into(),
            Self::Millis { .. } => "milliseconds".into(),
            Self::EpochSeconds => "epoch seconds".into(),
            Self::Bool => "boolean".into(),
            Self::Enum(names) => names.join(" / "),
            Self::StreamArn => "stream ARN".into(),
            Self::ConsumerArn => "consumer ARN".into(),
            Self::Url => "URL".into(),
            Self::Region => "region".into(),
            Self::Credentials => "provider chain".into(),
            Self::IsoDuration => "ISO-8601 duration".into(),
            Self::List => "comma list".into(),
            Self::Tags => "k=v,k=v".into(),
            Self::Decimal => "decimal".into(),
            Self::ListenAddress => "HOST:PORT".into(),
        }
    }

    /// What an error message says is accepted.
    pub fn accepted(&self) -> String {
        match self {
            Self::Text => "any text".into(),
            Self::Command => "a program followed by its arguments, separated by spaces".into(),
            Self::Int { min, max } => {
                if *min <= i64::from(i32::MIN) {
                    "a whole number".into()
                } else if *max >= i64::from(i32::MAX) {
                    format!("a whole number >= {min}")
                } else {
                    format!("a whole number from {min} to {max}")
                }
            }
            Self::Millis { min } => format!("a whole number of milliseconds >= {min}"),
            Self::EpochSeconds => "a whole number of seconds since 1970-01-01T00:00:00Z".into(),
            Self::Bool => "true or false (also yes/no, y/n, on/off, 1/0; any case)".into(),
            Self::Enum(names) => format!("one of {} (any case)", names.join(", ")),
            Self::StreamArn => "arn:<partition>:kinesis:<region>:<12-digit account>:stream/<name>".into(),
            Self::ConsumerArn => {
                "arn:<partition>:kinesis:<region>:<12-digit account>:stream/<name>/consumer/<name>:<timestamp>".into()
            }
            Self::Url => "an http:// or https:// URL, e.g. http://localhost:4566".into(),
            Self::Region => "a region name such as us-east-1 (lower-case letters, digits, -)".into(),
            Self::Credentials => "a comma-separated chain of provider names".into(),
            Self::IsoDuration => "an ISO-8601 duration such as PT15M, PT10H or P2D".into(),
            Self::List => "a comma-separated list".into(),
            Self::Tags => "comma-separated key=value pairs".into(),
            Self::Decimal => "a decimal number".into(),
            Self::ListenAddress => {
                "IP:PORT, [IPv6]:PORT, localhost:PORT or a bare PORT (binds 127.0.0.1); no host names".into()
            }
        }
    }
}

/// Where a key belongs (one section of the documentation each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    /// Daemon-level and identity keys.
    Daemon,
    /// Credentials, region and endpoints.
    Aws,
    /// Stream position and retrieval.
    Retrieval,
    /// Leases and coordination.
    Leases,
    /// CloudWatch metrics.
    Metrics,
    /// KCL 3.x keys.
    V3,
    /// Keys of KCL 1.x or keys the Java daemon never honoured.
    Legacy,
}

impl Category {
    /// Every category, in documentation order.
    pub const ALL: [Category; 7] =
        [Self::Daemon, Self::Aws, Self::Retrieval, Self::Leases, Self::Metrics, Self::V3, Self::Legacy];

    /// The section title.
    pub fn title(&self) -> &'static str {
        match self {
            Self::Daemon => "Daemon and identity",
            Self::Aws => "Credentials, region and endpoints",
            Self::Retrieval => "Stream position and retrieval",
            Self::Leases => "Leases and coordination",
            Self::Metrics => "Metrics",
            Self::V3 => "KCL 3.x keys (accepted, not used)",
            Self::Legacy => "Legacy keys",
        }
    }
}

/// Whether a key has an effect in multilangd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// The key is honoured.
    Used,
    /// Accepted (and validated) but has no effect; the text says why.
    NotUsed(&'static str),
    /// Any value is a configuration error; the text says why.
    Rejected(&'static str),
}

/// What applies when a key is not set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyDefault {
    /// A value of the key's own type, read like a value from the file; `note` is shown after
    /// it in brackets (`2147483647 (no limit)`).
    Value {
        /// The value, as a user would write it.
        value: &'static str,
        /// A remark for people, if any.
        note: Option<&'static str>,
    },
    /// There is no default: the key must be set. The text says when (`required unless streamArn`).
    Required(&'static str),
    /// No value: the setting is off, or left to someone else. The text says what happens
    /// (`(none)`, `SDK region chain`).
    Unset(&'static str),
    /// Derived from other keys. The text says how (`= applicationName`).
    Derived(&'static str),
}

impl fmt::Display for KeyDefault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Value { value, note: None } => f.write_str(value),
            Self::Value { value, note: Some(note) } => write!(f, "{value} ({note})"),
            Self::Required(text) | Self::Unset(text) | Self::Derived(text) => f.write_str(text),
        }
    }
}

/// One known key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeySpec {
    /// The key, exactly as in the properties file.
    pub name: &'static str,
    /// The value type.
    pub ty: ValueType,
    /// What applies when the key is not set.
    pub default: KeyDefault,
    /// What it does.
    pub doc: &'static str,
    /// Its documentation section.
    pub category: Category,
    /// Whether it has an effect.
    pub usage: Usage,
}

const fn key(
    name: &'static str,
    ty: ValueType,
    default: KeyDefault,
    doc: &'static str,
    category: Category,
    usage: Usage,
) -> KeySpec {
    KeySpec { name, ty, default, doc, category, usage }
}

const INT: ValueType = ValueType::Int { min: 1, max: i32::MAX as i64 };
const INT0: ValueType = ValueType::Int { min: 0, max: i32::MAX as i64 };
const MS: ValueType = ValueType::Millis { min: 1 };
const MS0: ValueType = ValueType::Millis { min: 0 };
const BILLING: ValueType = ValueType::Enum(&["PAY_PER_REQUEST", "PROVISIONED"]);

const V3: Usage = Usage::NotUsed("KCL 3.x setting; multilangd implements the KCL 2.x lease protocol");
const INERT_CAPACITY: Usage = Usage::NotUsed(
    "the lease table is created with PAY_PER_REQUEST billing (as in Java, where the billing mode cannot be set through properties)",
);
const LEGACY: Usage = Usage::NotUsed("KCL 1.x key; the Java 2.x daemon ignores it too");

/// A default value (see [`KeyDefault::Value`]).
const fn is(value: &'static str) -> KeyDefault {
    KeyDefault::Value { value, note: None }
}

/// A default value with a remark for people.
const fn noted(value: &'static str, note: &'static str) -> KeyDefault {
    KeyDefault::Value { value, note: Some(note) }
}

const fn derived(how: &'static str) -> KeyDefault {
    KeyDefault::Derived(how)
}

const fn unset(what: &'static str) -> KeyDefault {
    KeyDefault::Unset(what)
}

const REQUIRED: KeyDefault = KeyDefault::Required("required");
const NONE: KeyDefault = KeyDefault::Unset("(none)");

use Category::{Aws, Daemon, Leases, Legacy, Metrics, Retrieval, V3 as V3X};
use Usage::Used;
use ValueType::{Bool, Text};

/// The canonical credentials key for Kinesis (and the fallback for the other clients).
pub const CREDENTIALS: &str = "AWSCredentialsProvider";
/// The canonical DynamoDB credentials key.
pub const CREDENTIALS_DYNAMODB: &str = "AWSCredentialsProviderDynamoDB";
/// The canonical CloudWatch credentials key.
pub const CREDENTIALS_CLOUDWATCH: &str = "AWSCredentialsProviderCloudWatch";

/// Polling-only keys: setting any of them makes `retrievalMode = DEFAULT` mean POLLING.
pub const POLLING_KEYS: &[&str] = &[
    "maxRecords",
    "idleTimeBetweenReadsInMillis",
    "retryGetRecordsInSeconds",
    "maxGetRecordsThreadPool",
    "millisBehindLatestThresholdForReducedTps",
];

/// Every known key.
pub static KEYS: &[KeySpec] = &[
    // ---- Daemon and identity
    key("executableName", ValueType::Command, REQUIRED,
        "The record processor's command line, split on runs of spaces (no shell, no quoting); one child per shard.", Daemon, Used),
    key("processingLanguage", Text, NONE,
        "Informational (logged at startup).", Daemon, Used),
    key("maxActiveThreads", ValueType::Int { min: i32::MIN as i64, max: i32::MAX as i64 }, noted("0", "no limit"),
        "Java's thread-pool size for child I/O (a small pool can deadlock Java).", Daemon,
        Usage::NotUsed("child I/O is asynchronous in multilangd: there is no pool to size or starve")),
    key("applicationName", Text, REQUIRED,
        "The KCL application name: default lease table name and fan-out consumer name.", Daemon, Used),
    key("streamName", Text, KeyDefault::Required("required unless streamArn"),
        "The Kinesis stream to consume.", Daemon, Used),
    key("streamArn", ValueType::StreamArn, NONE,
        "The stream as an ARN; wins over streamName. Its region is not used for the clients.", Daemon, Used),
    key("tableName", Text, derived("= applicationName"),
        "The DynamoDB lease table.", Daemon, Used),
    key("workerId", Text, unset("generated per process"),
        "This worker's identity in the lease table; must be unique per worker.", Daemon, Used),
    key("workerIdentifier", Text, derived("= workerId"),
        "Alias of workerId (workerId wins when both are set).", Daemon, Used),
    key("timeoutInSeconds", ValueType::Int { min: i32::MIN as i64, max: i32::MAX as i64 }, unset("(none: wait forever)"),
        "Longest wait for a child's reply to one message; <= 0 disables the timeout (with a warning).", Daemon, Used),
    key("shutdownGraceMillis", MS0, noted("20000", "Java: 0"),
        "How long a SIGTERM/SIGINT waits for the graceful shutdown of the children.", Daemon, Used),
    key("multilangd.httpAddress", ValueType::ListenAddress, unset("(off)"),
        "Serve /metrics (Prometheus), /healthz, /readyz and /status here; --http-address wins. The Java daemon ignores multilangd.* keys.", Daemon, Used),
    key("multilangd.stallThresholdMillis", MS, is("60000"),
        "A held shard whose processor has not answered, or whose waiting records were not delivered, for this long is stalled: logged, and /readyz answers 503.", Daemon, Used),
    key("multilangd.childStartupConcurrency", ValueType::Int { min: 1, max: 1024 }, is("32"),
        "How many record processors may be starting at once (from launch until they acknowledge initialize, at most 30 s each); spreads out the start of hundreds of children so the daemon's lease renewals keep their cadence.", Daemon, Used),
    // ---- Credentials, region and endpoints
    key(CREDENTIALS, ValueType::Credentials, REQUIRED,
        "Credentials for Kinesis, and for DynamoDB/CloudWatch unless set separately. Any case of the AWSCredentialsProvider prefix is accepted (AwsCredentialsProvider, ...).", Aws, Used),
    key(CREDENTIALS_DYNAMODB, ValueType::Credentials, derived("= AWSCredentialsProvider"),
        "Credentials for the DynamoDB lease table.", Aws, Used),
    key(CREDENTIALS_CLOUDWATCH, ValueType::Credentials, derived("= AWSCredentialsProvider"),
        "Credentials for CloudWatch metrics.", Aws, Used),
    key("regionName", ValueType::Region, unset("SDK region chain"),
        "Region of all clients (AWS_REGION, profile, instance metadata when unset; no us-east-1 fallback).", Aws, Used),
    key("kinesisEndpoint", ValueType::Url, NONE,
        "Endpoint override for Kinesis.", Aws, Used),
    key("kinesisClient.endpointOverride", ValueType::Url, derived("= kinesisEndpoint"),
        "Endpoint override for Kinesis; wins over kinesisEndpoint.", Aws, Used),
    key("kinesisClient.region", ValueType::Region, derived("= regionName"),
        "Region of the Kinesis client; wins over regionName.", Aws, Used),
    key("dynamoDBEndpoint", ValueType::Url, NONE,
        "Endpoint override for DynamoDB (note the upper-case DB).", Aws, Used),
    key("dynamoDbClient.endpointOverride", ValueType::Url, derived("= dynamoDBEndpoint"),
        "Endpoint override for DynamoDB; wins over dynamoDBEndpoint.", Aws, Used),
    key("dynamoDbClient.region", ValueType::Region, derived("= regionName"),
        "Region of the DynamoDB client; wins over regionName.", Aws, Used),
    key("cloudWatchEndpoint", ValueType::Url, NONE,
        "Endpoint override for CloudWatch (multilangd spelling; the Java daemon only knows cloudWatchClient.endpointOverride).", Aws, Used),
    key("cloudWatchClient.endpointOverride", ValueType::Url, derived("= cloudWatchEndpoint"),
        "Endpoint override for CloudWatch; wins over cloudWatchEndpoint. AWS_ENDPOINT_URL_CLOUDWATCH is ignored, as in Java.", Aws, Used),
    key("cloudWatchClient.region", ValueType::Region, derived("= regionName"),
        "Region of the CloudWatch client; wins over regionName.", Aws, Used),
    // ---- Stream position and retrieval
    key("initialPositionInStream", ValueType::Enum(&["TRIM_HORIZON", "LATEST"]), is("LATEST"),
        "Where leases for new shards start. For AT_TIMESTAMP use initialPositionInStreamExtended.", Retrieval, Used),
    key("initialPositionInStreamExtended", ValueType::EpochSeconds, NONE,
        "Start new shards AT_TIMESTAMP at this time; wins over initialPositionInStream.", Retrieval, Used),
    key("retrievalMode", ValueType::Enum(&["FANOUT", "POLLING", "DEFAULT"]), is("DEFAULT"),
        "DEFAULT means POLLING when any polling key is set, otherwise FANOUT (enhanced fan-out).", Retrieval, Used),
    key("maxRecords", ValueType::Int { min: 1, max: 10_000 }, is("10000"),
        "Records per GetRecords call (polling).", Retrieval, Used),
    key("idleTimeBetweenReadsInMillis", MS0, is("1500"),
        "Wait between GetRecords calls (polling).", Retrieval, Used),
    key("retryGetRecordsInSeconds", INT, NONE,
        "Delay before retrying a GetRecords call (polling).", Retrieval,
        Usage::NotUsed("failed GetRecords calls are retried with exponential backoff and jitter")),
    key("maxGetRecordsThreadPool", INT, NONE,
        "Java's GetRecords thread pool size (polling).", Retrieval,
        Usage::NotUsed("every shard reads on its own task")),
    key("millisBehindLatestThresholdForReducedTps", MS0, noted("0", "disabled"),
        "Polling slows down when this close to the tip of the stream.", Retrieval, Used),
    key("fanoutConfig.consumerArn", ValueType::ConsumerArn, NONE,
        "Use this existing enhanced fan-out consumer instead of registering one.", Retrieval, Used),
    key("fanoutConfig.consumerName", Text, derived("= applicationName"),
        "Name of the enhanced fan-out consumer to register.", Retrieval, Used),
    key("fanoutConfig.maxDescribeStreamSummaryRetries", INT0, is("10"),
        "Retries of DescribeStreamSummary (fan-out).", Retrieval, Used),
    key("fanoutConfig.maxDescribeStreamConsumerRetries", INT0, is("10"),
        "Retries of DescribeStreamConsumer (fan-out).", Retrieval, Used),
    key("fanoutConfig.registerStreamConsumerRetries", INT0, is("10"),
        "Retries of RegisterStreamConsumer (fan-out).", Retrieval, Used),
    key("fanoutConfig.retryBackoffMillis", MS0, is("1000"),
        "Backoff between those retries (fan-out).", Retrieval, Used),
    key("callProcessRecordsEvenForEmptyRecordList", Bool, is("false"),
        "Send processRecords with an empty record list too.", Retrieval, Used),
    // ---- Leases and coordination
    key("failoverTimeMillis", MS, is("10000"),
        "A lease not renewed within this time is expired and may be taken.", Leases, Used),
    key("shardSyncIntervalMillis", MS, is("60000"),
        "Time between shard syncs.", Leases, Used),
    key("cleanupLeasesUponShardCompletion", Bool, is("true"),
        "Delete the leases of finished shards (false is honoured, unlike Java).", Leases, Used),
    key("ignoreUnexpectedChildShards", Bool, is("false"),
        "Ignore child shards whose parents are not known.", Leases, Used),
    key("maxLeasesForWorker", INT, noted("2147483647", "no limit"),
        "Most leases this worker holds.", Leases, Used),
    key("maxLeasesToStealAtOneTime", INT, is("1"),
        "Most leases taken from other workers per balancing round.", Leases, Used),
    key("initialLeaseTableReadCapacity", INT, is("10"),
        "Read capacity of a PROVISIONED lease table.", Leases, INERT_CAPACITY),
    key("initialLeaseTableWriteCapacity", INT, is("10"),
        "Write capacity of a PROVISIONED lease table.", Leases, INERT_CAPACITY),
    key("maxLeaseRenewalThreads", INT, is("20"),
        "Most lease renewals in flight at once.", Leases, Used),
    key("listShardsBackoffTimeInMillis", MS0, is("1500"),
        "Backoff between ListShards retries.", Leases, Used),
    key("maxListShardsRetryAttempts", INT, is("50"),
        "Attempts of ListShards before giving up.", Leases, Used),
    key("parentShardPollIntervalMillis", MS, is("10000"),
        "How often to check whether parent shards are finished.", Leases, Used),
    key("skipShardSyncAtWorkerInitializationIfLeasesExist", Bool, is("false"),
        "Skip the startup shard sync when the lease table has leases.", Leases, Used),
    key("schedulerInitializationBackoffTimeMillis", MS0, is("1000"),
        "Backoff between failed initialisation attempts.", Leases, Used),
    key("taskBackoffTimeMillis", MS0, is("500"),
        "Backoff after a failed task.", Leases, Used),
    key("logWarningForTaskAfterMillis", MS, NONE,
        "Warn when one child call takes longer than this.", Leases, Used),
    key("enablePriorityLeaseAssignment", Bool, is("true"),
        "Take very-expired leases first.", Leases, Used),
    key("leaseTableDeletionProtectionEnabled", Bool, is("false"),
        "Create the lease table with deletion protection.", Leases, Used),
    key("leaseTablePitrEnabled", Bool, is("false"),
        "Enable point-in-time recovery on the lease table.", Leases,
        Usage::NotUsed("multilangd does not call UpdateContinuousBackups; enable PITR on the table itself")),
    key("shardPrioritization", Text, NONE,
        "Java's shard prioritisation object.", Leases,
        Usage::Rejected("it cannot be set through properties; the Java daemon fails on every value too. Remove the key")),
    // ---- Metrics
    key("metricsLevel", ValueType::Enum(&["NONE", "SUMMARY", "DETAILED"]), is("DETAILED"),
        "CloudWatch metrics as the KCL publishes them: NONE publishes nothing, SUMMARY the main per-operation metrics, DETAILED adds per-call metrics.", Metrics, Used),
    key("metricsEnabledDimensions", ValueType::List, is("ALL"),
        "Metric dimensions (Operation, ShardId, WorkerIdentifier, StreamId); Operation is always kept, a disabled dimension is dropped from the metrics that had it.", Metrics, Used),
    key("metricsBufferTimeMillis", MS, is("10000"),
        "Aggregate metrics this long, then publish them with PutMetricData.", Metrics, Used),
    key("metricsMaxQueueSize", INT, is("10000"),
        "Most distinct metric series buffered per window; values of further series are dropped (and counted on /metrics).", Metrics, Used),
    // ---- KCL 3.x
    key("clientVersionConfig", ValueType::Enum(&["CLIENT_VERSION_CONFIG_3X", "CLIENT_VERSION_CONFIG_COMPATIBLE_WITH_2X", "CLIENT_VERSION_CONFIG_COMPATIBLE_WITH_2X_PHASE1"]),
        unset("the stored Migration3.0 state; a new application: 3.x (as Java); an existing 2.x fleet: 2.x, with a warning"),
        "KCL 2.x to 3.x migration mode (CLIENT_VERSION_CONFIG_3X runs the 3.x protocol).", V3X, Used),
    key("leaseAssignmentIntervalMillis", MS, derived("2 x failoverTimeMillis"), "How often the 3.x lease assignment runs.", V3X, Used),
    key("multilangd.migrationCheckIntervalMillis", MS, is("60000"),
        "How often the worker re-reads Migration3.0 and switches between the 2.x and 3.x lease protocols live (Java: 60 s, not settable). The Java daemon ignores multilangd.* keys.", V3X, Used),
    key("multilangd.upgradeReadinessMillis", MS, is("600000"),
        "In CLIENT_VERSION_UPGRADE_FROM_2X, how long the 2.x leader waits with the owner index ACTIVE and fresh worker metrics from every lease owner before it flips the fleet to CLIENT_VERSION_3X_WITH_ROLLBACK (Java: 10 min, not settable; its readiness is checked every multilangd.migrationCheckIntervalMillis).", V3X, Used),
    key("leaseTableScanTotalSegments", INT, unset("automatic"), "Parallel-scan segments of the lease table.", V3X, V3),
    key("migrateAllEntitiesToLeaseTable", Bool, is("false"), "Phase 2 of the single-table migration.", V3X, V3),
    key("tableMigrationCompleteBakeTimeSeconds", INT, is("86400"), "Bake time of the table migration.", V3X, V3),
    key("gracefulLeaseHandoffTimeoutMillis", MS, is("30000"), "Graceful lease handoff timeout.", V3X, Used),
    key("isGracefulLeaseHandoffEnabled", Bool, is("true"), "Graceful lease handoff.", V3X, Used),
    key("inMemoryWorkerMetricsCaptureFrequencyMillis", MS, is("1000"), "Worker metrics capture frequency.", V3X, V3),
    key("workerMetricsReporterFreqInMillis", MS, is("30000"), "Worker metrics reporting frequency.", V3X, Used),
    key("noOfPersistedMetricsPerWorkerMetrics", INT, is("10"), "Persisted metric values per worker metric.", V3X, V3),
    key("disableWorkerMetrics", Bool, is("false"), "Balance on throughput instead of worker metrics.", V3X, V3),
    key("maxThroughputPerHostKBps", ValueType::Decimal, unset("unlimited"), "Throughput cap per host.", V3X, V3),
    key("dampeningPercentage", INT, is("60"), "Dampening of rebalanced load.", V3X, V3),
    key("reBalanceThresholdPercentage", INT, is("10"), "Allowed utilisation variance.", V3X, V3),
    key("allowThroughputOvershoot", Bool, is("true"), "Allow throughput overshoot when rebalancing.", V3X, V3),
    key("varianceBalancingFrequency", INT, is("3"), "Rebalance every N assignment rounds.", V3X, V3),
    key("workerMetricsEMAAlpha", ValueType::Decimal, is("0.5"), "EMA alpha of worker metrics.", V3X, Used),
    key("staleWorkerMetricsEntryCleanupDuration", ValueType::IsoDuration, is("P1D"), "Cleanup age of stale worker metrics.", V3X, Used),
    key("workerMetricsTableName", Text, derived("<applicationName>-WorkerMetricStats"), "Worker metrics table.", V3X, Used),
    key("workerMetricsBillingMode", BILLING, is("PAY_PER_REQUEST"), "Worker metrics table billing.", V3X, V3),
    key("workerMetricsReadCapacity", INT, NONE, "Worker metrics table read capacity.", V3X, V3),
    key("workerMetricsWriteCapacity", INT, NONE, "Worker metrics table write capacity.", V3X, V3),
    key("workerMetricsPointInTimeRecoveryEnabled", Bool, is("false"), "Worker metrics table PITR.", V3X, V3),
    key("workerMetricsDeletionProtectionEnabled", Bool, is("false"), "Worker metrics table deletion protection.", V3X, V3),
    key("workerMetricsTags", ValueType::Tags, NONE, "Worker metrics table tags.", V3X, V3),
    key("coordinatorStateTableName", Text, derived("<applicationName>-CoordinatorState"), "Coordinator state table.", V3X, Used),
    key("coordinatorStateBillingMode", BILLING, is("PAY_PER_REQUEST"), "Coordinator state table billing.", V3X, V3),
    key("coordinatorStateReadCapacity", INT, NONE, "Coordinator state table read capacity.", V3X, V3),
    key("coordinatorStateWriteCapacity", INT, NONE, "Coordinator state table write capacity.", V3X, V3),
    key("coordinatorStatePointInTimeRecoveryEnabled", Bool, is("false"), "Coordinator state table PITR.", V3X, V3),
    key("coordinatorStateDeletionProtectionEnabled", Bool, is("false"), "Coordinator state table deletion protection.", V3X, V3),
    key("coordinatorStateTags", ValueType::Tags, NONE, "Coordinator state table tags.", V3X, V3),
    // ---- Legacy
    key("validateSequenceNumberBeforeCheckpointing", Bool, NONE,
        "KCL 1.x checkpoint validation.", Legacy,
        Usage::NotUsed("parsed but unused by the Java 2.x daemon as well")),
    key("http.proxyHost", Text, NONE, "KCL 1.x proxy host.", Legacy, LEGACY),
    key("http.proxyPort", INT, NONE, "KCL 1.x proxy port.", Legacy, LEGACY),
    key("billingMode", Text, NONE, "Lease table billing mode (not settable in Java 2.x).", Legacy, LEGACY),
    key("kinesisClientConfig", Text, NONE, "KCL 1.x client configuration.", Legacy, LEGACY),
    key("userAgent", Text, NONE, "KCL 1.x user agent suffix.", Legacy, LEGACY),
    key("shardPrioritizationStrategy", Text, NONE, "KCL 1.x shard prioritisation.", Legacy, LEGACY),
];

/// Looks up a key by its exact (canonical) name.
pub fn lookup(name: &str) -> Option<&'static KeySpec> {
    KEYS.iter().find(|k| k.name == name)
}

/// Maps a key as written to its known spec: exact match, or (credentials keys) any case of the
/// `AWSCredentialsProvider` prefix followed by exactly ``, `DynamoDB` or `CloudWatch`.
pub fn canonical(written: &str) -> Option<&'static KeySpec> {
    if let Some(spec) = lookup(written) {
        return Some(spec);
    }
    let prefix = CREDENTIALS.len();
    let (head, tail) = (written.get(..prefix)?, written.get(prefix..)?);
    if !head.eq_ignore_ascii_case(CREDENTIALS) {
        return None;
    }
    match tail {
        "" => lookup(CREDENTIALS),
        "DynamoDB" => lookup(CREDENTIALS_DYNAMODB),
        "CloudWatch" => lookup(CREDENTIALS_CLOUDWATCH),
        _ => None,
    }
}

/// A near-miss suggestion for an unknown key: a case-insensitive match, a dotted key whose
/// last part is a known key, or a small edit distance.
pub fn suggest(written: &str) -> Option<&'static str> {
    let lower = written.to_ascii_lowercase();
    if let Some(k) = KEYS.iter().find(|k| k.name.to_ascii_lowercase() == lower) {
        return Some(k.name);
    }
    if let Some(tail) = lower.strip_prefix("awscredentialsprovider") {
        return match tail {
            "dynamodb" => Some(CREDENTIALS_DYNAMODB),
            "cloudwatch" => Some(CREDENTIALS_CLOUDWATCH),
            _ => Some(CREDENTIALS),
        };
    }
    if let Some((_, last)) = lower.rsplit_once('.') {
        if let Some(k) = KEYS.iter().find(|k| k.name.to_ascii_lowercase() == last) {
            return Some(k.name);
        }
    }
    let limit = if lower.chars().count() < 8 { 1 } else { 2 };
    KEYS.iter()
        .map(|k| (edit_distance(&lower, &k.name.to_ascii_lowercase()), k.name))
        .filter(|&(d, _)| d <= limit)
        .min_by_key(|&(d, _)| d)
        .map(|(_, name)| name)
}

/// Levenshtein distance over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = Vec::with_capacity(b.len() + 1);
        cur.push(i + 1);
        for (j, &cb) in b.iter().enumerate() {
            let substitute = prev[j] + usize::from(ca != cb);
            cur.push(substitute.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The key tables of `docs/configuration.md`, one section per [`Category`].
pub fn markdown_tables() -> String {
    let mut out = String::new();
    for category in Category::ALL {
        out.push_str(&format!("### {}\n\n", category.title()));
        out.push_str("| key | type | default | meaning |\n|---|---|---|---|\n");
        for k in KEYS.iter().filter(|k| k.category == category) {
            let meaning = match k.usage {
                Usage::Used => k.doc.to_owned(),
                Usage::NotUsed(why) => format!("{} **Not used:** {why}.", k.doc),
                Usage::Rejected(why) => format!("{} **Rejected:** {why}.", k.doc),
            };
            out.push_str(&format!(
                "| `{}` | {} | {} | {} |\n",
                k.name,
                k.ty.type_name(),
                k.default,
                meaning.replace('|', "\\|")
            ));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique() {
        let mut names: Vec<&str> = KEYS.iter().map(|k| k.name).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len());
    }

    /// The build reads these defaults like values from the file: each must be one.
    #[test]
    fn default_values_are_valid_for_their_types() {
        for k in KEYS {
            if let KeyDefault::Value { value, .. } = k.default {
                assert!(
                    super::super::values::valid_for(k.ty, value),
                    "{}: default `{value}` is not a {:?}",
                    k.name,
                    k.ty
                );
            }
        }
    }

    #[test]
    fn polling_keys_are_known() {
        for k in POLLING_KEYS {
            assert_eq!(lookup(k).map(|s| s.category), Some(Category::Retrieval));
        }
    }

    #[test]
    fn credentials_key_spellings() {
        for written in
            ["AWSCredentialsProvider", "AwsCredentialsProvider", "awscredentialsprovider", "AWSCREDENTIALSPROVIDER"]
        {
            assert_eq!(canonical(written).map(|k| k.name), Some(CREDENTIALS), "{written}");
        }
        assert_eq!(canonical("AwsCredentialsProviderDynamoDB").map(|k| k.name), Some(CREDENTIALS_DYNAMODB));
        assert_eq!(canonical("awsCredentialsProviderCloudWatch").map(|k| k.name), Some(CREDENTIALS_CLOUDWATCH));
        // The suffix keeps its exact case, as in Java.
        assert_eq!(canonical("AwsCredentialsProviderDynamoDb"), None);
        assert_eq!(suggest("AwsCredentialsProviderDynamoDb"), Some(CREDENTIALS_DYNAMODB));
    }

    #[test]
    fn suggestions_for_near_misses() {
        for (written, want) in [
            ("dynamoDbEndpoint", "dynamoDBEndpoint"),
            ("StreamName", "streamName"),
            ("streamname", "streamName"),
            ("applicationNam", "applicationName"),
            ("maxRecord", "maxRecords"),
            ("pollingConfig.maxRecords", "maxRecords"),
            ("regionname", "regionName"),
            ("intialPositionInStream", "initialPositionInStream"),
        ] {
            assert_eq!(suggest(written), Some(want), "{written}");
        }
        assert_eq!(suggest("somethingElseEntirely"), None);
        assert_eq!(suggest("foo"), None);
    }

    #[test]
    fn edit_distance_basics() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }

    /// docs/configuration.md must contain exactly the generated tables between the markers,
    /// so every key is documented with its type and default.
    #[test]
    fn docs_list_every_key_with_its_default() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md");
        let doc = std::fs::read_to_string(&path).unwrap();
        let (begin, end) = ("<!-- keys:begin -->\n", "<!-- keys:end -->");
        let start = doc.find(begin).expect("begin marker") + begin.len();
        let stop = doc.find(end).expect("end marker");
        let generated = markdown_tables();
        if doc[start..stop] != generated {
            if std::env::var_os("MULTILANGD_BLESS_DOCS").is_some() {
                let updated = format!("{}{}{}", &doc[..start], generated, &doc[stop..]);
                std::fs::write(&path, updated).unwrap();
            } else {
                panic!(
                    "docs/configuration.md key tables are out of date; run \
                     MULTILANGD_BLESS_DOCS=1 cargo test --lib config::keys"
                );
            }
        }
        let doc = std::fs::read_to_string(&path).unwrap();
        for k in KEYS {
            let row = format!("| `{}` | {} | {} |", k.name, k.ty.type_name(), k.default);
            assert!(doc.contains(&row), "{} is not documented as {row}", k.name);
        }
    }
}
