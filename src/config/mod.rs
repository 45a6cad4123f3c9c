//! Configuration: a Java `.properties` file → typed, validated [`Config`].
//!
//! Two stages, as in the Java daemon but stricter:
//! 1. [`properties`] turns the file's bytes (ISO-8859-1, `java.util.Properties` syntax) into
//!    entries that remember their line numbers;
//! 2. [`Config::from_entries`] maps every known key ([`keys::KEYS`]) onto a typed field, with
//!    the Java defaults, and reports each problem with the file, line, key, bad value and what
//!    is accepted. All problems are collected, not only the first. Unknown keys are warnings
//!    (with a near-miss suggestion), never silent.
//!
//! Building AWS clients from a `Config` happens elsewhere (the `aws` module); this module is
//! pure and does no I/O beyond reading the file.

pub mod credentials;
pub mod keys;
pub mod properties;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use credentials::{CredentialsSpec, ProviderSpec};
use keys::{KeySpec, Usage, ValueType};
pub use properties::Entry;

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
    /// `maxActiveThreads` (accepted, no effect: child I/O is asynchronous).
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

/// The multilangd default of `shutdownGraceMillis` (Java's is 0: no wait at all).
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_millis(20_000);

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
    #[error("{}", InvalidDisplay { path, problems })]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Every problem found, in line order (file-level problems last).
        problems: Vec<Problem>,
    },
}

struct InvalidDisplay<'a> {
    path: &'a Path,
    problems: &'a [Problem],
}

impl fmt::Display for InvalidDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(f, "invalid configuration in {} ({n} problem{}):", self.path.display(), if n == 1 { "" } else { "s" })?;
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
        Builder::new(path, problems).build(entries)
    }

    /// Validates parsed entries (in file order; a later duplicate wins with a warning).
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] with every problem found.
    pub fn from_entries(path: impl AsRef<Path>, entries: Vec<Entry>) -> Result<Loaded, ConfigError> {
        Builder::new(path.as_ref(), Vec::new()).build(entries)
    }
}

/// A value as found in the file.
#[derive(Debug, Clone)]
struct Value {
    written: String,
    text: String,
    line: usize,
}

struct Builder {
    path: PathBuf,
    values: HashMap<&'static str, Value>,
    problems: Vec<Problem>,
    warnings: Vec<Warning>,
    resolved: Vec<Resolved>,
    consumed: Vec<&'static str>,
}

/// Parses a whole number the way users expect: surrounding whitespace was trimmed, a leading
/// `+` is allowed, nothing else (no `0x`, no decimals, no overflow).
fn parse_int(text: &str) -> Option<i64> {
    let digits = text.strip_prefix('+').unwrap_or(text);
    if digits.len() != text.len() && digits.starts_with(['+', '-']) {
        return None;
    }
    digits.parse().ok()
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "yes" | "y" | "on" | "1" => Some(true),
        "false" | "no" | "n" | "off" | "0" => Some(false),
        _ => None,
    }
}

fn parse_choice(text: &str, names: &'static [&'static str]) -> Option<&'static str> {
    names.iter().copied().find(|n| n.eq_ignore_ascii_case(text))
}

/// An AWS region name: lower-case letters, digits and dashes, starting with a letter.
pub(crate) fn is_region(text: &str) -> bool {
    text.len() <= 64
        && text.starts_with(|c: char| c.is_ascii_lowercase())
        && text.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// An `http://` or `https://` URL with a host and no whitespace.
pub(crate) fn is_http_url(text: &str) -> bool {
    let rest = text.strip_prefix("http://").or_else(|| text.strip_prefix("https://"));
    match rest {
        Some(rest) => {
            let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
            !host.is_empty() && !host.starts_with(':') && !text.chars().any(|c| c.is_whitespace() || c.is_control())
        }
        None => false,
    }
}

/// `arn:aws[^:]*:kinesis:<region>:<12 digits>:stream/<name>`; returns the stream name.
fn stream_arn_name(text: &str) -> Option<&str> {
    let parts: Vec<&str> = text.splitn(6, ':').collect();
    let ["arn", partition, "kinesis", region, account, resource] = parts.as_slice() else {
        return None;
    };
    let name = resource.strip_prefix("stream/")?;
    let name_ok =
        (1..=128).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    (partition.starts_with("aws")
        && is_region(region)
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && name_ok)
        .then_some(name)
}

/// `<stream ARN>/consumer/<name>:<creation timestamp>`.
fn is_consumer_arn(text: &str) -> bool {
    let Some((stream, consumer)) = text.split_once("/consumer/") else {
        return false;
    };
    let Some((name, timestamp)) = consumer.rsplit_once(':') else {
        return false;
    };
    stream_arn_name(stream).is_some()
        && !name.is_empty()
        && !timestamp.is_empty()
        && timestamp.bytes().all(|b| b.is_ascii_digit())
}

/// ISO-8601 duration as `java.time.Duration.parse` accepts it (days, hours, minutes, seconds;
/// no negative values).
fn is_iso_duration(text: &str) -> bool {
    let upper = text.to_ascii_uppercase();
    let Some(rest) = upper.strip_prefix('P') else {
        return false;
    };
    let (date, time) = match rest.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (rest, None),
    };
    let units_ok = |s: &str, units: &[char], allow_fraction_last: bool| -> Option<usize> {
        let mut count = 0;
        let mut number = String::new();
        let mut next_unit = 0;
        for c in s.chars() {
            if c.is_ascii_digit() || (allow_fraction_last && c == '.') {
                number.push(c);
                continue;
            }
            let pos = units[next_unit..].iter().position(|&u| u == c)? + next_unit;
            if number.is_empty() || number.starts_with('.') || number.ends_with('.') {
                return None;
            }
            if number.contains('.') && c != 'S' {
                return None;
            }
            number.clear();
            next_unit = pos + 1;
            count += 1;
        }
        number.is_empty().then_some(count)
    };
    let Some(date_units) = units_ok(date, &['D'], false) else {
        return false;
    };
    match time {
        None => date_units > 0,
        Some(t) => units_ok(t, &['H', 'M', 'S'], true).is_some_and(|n| n > 0),
    }
}

fn is_tags(text: &str) -> bool {
    text.split(',').all(|pair| {
        let mut kv = pair.splitn(2, '=');
        matches!((kv.next(), kv.next()), (Some(k), Some(v)) if !k.trim().is_empty() && !v.contains('='))
    })
}

/// Whether `text` is acceptable for `ty` (used for keys that are validated but not used).
fn valid_for(ty: ValueType, text: &str) -> bool {
    match ty {
        ValueType::Text | ValueType::Command | ValueType::List => true,
        ValueType::Int { min, max } => parse_int(text).is_some_and(|v| (min..=max).contains(&v)),
        ValueType::Millis { min } => parse_int(text).is_some_and(|v| v >= min),
        ValueType::EpochSeconds => parse_int(text).is_some_and(|v| (0..=i64::MAX / 1000).contains(&v)),
        ValueType::Bool => parse_bool(text).is_some(),
        ValueType::Enum(names) => parse_choice(text, names).is_some(),
        ValueType::StreamArn => stream_arn_name(text).is_some(),
        ValueType::ConsumerArn => is_consumer_arn(text),
        ValueType::Url => is_http_url(text),
        ValueType::Region => is_region(text),
        ValueType::Credentials => CredentialsSpec::parse(text).is_ok(),
        ValueType::IsoDuration => is_iso_duration(text),
        ValueType::Tags => is_tags(text),
        ValueType::Decimal => text.parse::<f64>().is_ok_and(|v| v.is_finite() && v >= 0.0),
    }
}

fn spec(key: &'static str) -> &'static KeySpec {
    keys::lookup(key).unwrap_or_else(|| panic!("invariant: `{key}` is in keys::KEYS"))
}

fn millis(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

fn to_u32(v: i64) -> u32 {
    u32::try_from(v.clamp(0, i64::from(u32::MAX))).unwrap_or(u32::MAX)
}

impl Builder {
    fn new(path: &Path, problems: Vec<Problem>) -> Self {
        Self {
            path: path.to_owned(),
            values: HashMap::new(),
            problems,
            warnings: Vec::new(),
            resolved: Vec::new(),
            consumed: Vec::new(),
        }
    }

    fn warn(&mut self, line: Option<usize>, key: Option<&str>, message: impl Into<String>) {
        self.warnings.push(Warning {
            path: self.path.clone(),
            line,
            key: key.map(str::to_owned),
            message: message.into(),
        });
    }

    fn problem(&mut self, line: Option<usize>, key: Option<&str>, message: impl Into<String>) {
        self.problems.push(Problem { line, key: key.map(str::to_owned), message: message.into() });
    }

    /// Files every entry under its canonical key; unknown keys and duplicates are warnings.
    fn ingest(&mut self, entries: Vec<Entry>) {
        for entry in entries {
            if entry.key.is_empty() {
                self.warn(
                    Some(entry.line),
                    None,
                    format!("entry without a key ignored (value `{}`)", entry.value.trim()),
                );
                continue;
            }
            let Some(spec) = keys::canonical(&entry.key) else {
                let hint = keys::suggest(&entry.key)
                    .map(|s| format!(" (did you mean `{s}`? keys are case-sensitive)"))
                    .unwrap_or_default();
                self.warn(Some(entry.line), Some(&entry.key), format!("unknown key ignored{hint}"));
                continue;
            };
            let value = Value { written: entry.key, text: entry.value.trim().to_owned(), line: entry.line };
            if let Some(old) = self.values.insert(spec.name, value.clone()) {
                let message = if old.written == value.written {
                    format!("set again; this value wins over line {}", old.line)
                } else {
                    format!("sets the same key as `{}` on line {}; this later value wins", old.written, old.line)
                };
                self.warn(Some(value.line), Some(&value.written), message);
            }
        }
    }

    /// Whether a key is set to a non-empty value.
    fn is_set(&self, key: &str) -> bool {
        self.values.get(key).is_some_and(|v| !v.text.is_empty())
    }

    /// The trimmed value of a key, marking it consumed. An empty value counts as not set
    /// (with a warning).
    fn raw(&mut self, key: &'static str) -> Option<Value> {
        self.consumed.push(key);
        let value = self.values.get(key)?.clone();
        if value.text.is_empty() {
            self.warn(Some(value.line), Some(&value.written), "empty value; treated as not set");
            return None;
        }
        Some(value)
    }

    fn invalid(&mut self, value: &Value, expected: impl fmt::Display) {
        self.problem(
            Some(value.line),
            Some(&value.written),
            format!("invalid value `{}`: expected {expected}", value.text),
        );
    }

    fn record(&mut self, key: &'static str, value: impl fmt::Display, origin: Origin) {
        self.resolved.push(Resolved { key, value: value.to_string(), origin });
    }

    /// Reads a key with `parse`; a failure is a problem naming the accepted values.
    fn parsed<T>(&mut self, key: &'static str, parse: impl FnOnce(&str) -> Option<T>) -> Option<(T, usize)> {
        let value = self.raw(key)?;
        match parse(&value.text) {
            Some(v) => Some((v, value.line)),
            None => {
                self.invalid(&value, spec(key).ty.accepted());
                None
            }
        }
    }

    fn int(&mut self, key: &'static str) -> Option<(i64, usize)> {
        let ty = spec(key).ty;
        self.parsed(key, |t| parse_int(t).filter(|&v| valid_for(ty, &v.to_string())))
    }

    fn boolean(&mut self, key: &'static str) -> Option<(bool, usize)> {
        self.parsed(key, parse_bool)
    }

    fn choice(&mut self, key: &'static str) -> Option<(&'static str, usize)> {
        let ValueType::Enum(names) = spec(key).ty else {
            return None;
        };
        self.parsed(key, |t| parse_choice(t, names))
    }

    fn text(&mut self, key: &'static str) -> Option<(String, usize)> {
        self.raw(key).map(|v| (v.text, v.line))
    }

    fn checked(&mut self, key: &'static str) -> Option<(String, usize)> {
        let ty = spec(key).ty;
        self.parsed(key, |t| valid_for(ty, t).then(|| t.to_owned()))
    }

    /// Records and returns a value or its default.
    fn or_default<T: fmt::Display>(&mut self, key: &'static str, got: Option<(T, usize)>, default: T) -> T {
        match got {
            Some((v, line)) => {
                self.record(key, &v, Origin::Line(line));
                v
            }
            None => {
                self.record(key, &default, Origin::Default);
                default
            }
        }
    }

    fn int_or(&mut self, key: &'static str, default: i64) -> i64 {
        let got = self.int(key);
        self.or_default(key, got, default)
    }

    fn u32_or(&mut self, key: &'static str, default: u32) -> u32 {
        to_u32(self.int_or(key, i64::from(default)))
    }

    fn millis_or(&mut self, key: &'static str, default: u64) -> Duration {
        let default = i64::try_from(default).unwrap_or(i64::MAX);
        millis(self.int_or(key, default))
    }

    fn bool_or(&mut self, key: &'static str, default: bool) -> bool {
        let got = self.boolean(key);
        self.or_default(key, got, default)
    }

    fn optional<T: fmt::Display>(&mut self, key: &'static str, got: Option<(T, usize)>) -> Option<T> {
        match got {
            Some((v, line)) => {
                self.record(key, &v, Origin::Line(line));
                Some(v)
            }
            None => {
                self.record(key, "(none)", Origin::Default);
                None
            }
        }
    }

    fn required(&mut self, key: &'static str, example: &str) -> Option<(String, usize)> {
        let got = self.text(key);
        if got.is_none() {
            self.problem(None, Some(key), format!("required key is missing or empty, e.g. `{key} = {example}`"));
        }
        got
    }

    fn credentials(&mut self, key: &'static str) -> Option<(CredentialsSpec, usize)> {
        let value = self.raw(key)?;
        match CredentialsSpec::parse(&value.text) {
            Ok((spec, warnings)) => {
                for w in warnings {
                    self.warn(Some(value.line), Some(&value.written), w);
                }
                if spec.providers.contains(&ProviderSpec::SystemProperties) {
                    self.warn(
                        Some(value.line),
                        Some(&value.written),
                        "there are no JVM system properties: the system-properties provider reads \
                         AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN from the environment",
                    );
                }
                Some((spec, value.line))
            }
            Err(e) => {
                self.problem(Some(value.line), Some(&value.written), format!("invalid value `{}`: {e}", value.text));
                None
            }
        }
    }

    /// Two keys for one setting: the specific one wins (with a warning when they differ).
    fn either(&mut self, specific: &'static str, general: &'static str) -> Option<(String, usize, &'static str)> {
        let s = self.checked(specific);
        let g = self.checked(general);
        match (s, g) {
            (Some((sv, sl)), Some((gv, gl))) => {
                if sv != gv {
                    self.warn(Some(gl), Some(general), format!("overridden by `{specific}` on line {sl}"));
                }
                Some((sv, sl, specific))
            }
            (Some((v, l)), None) => Some((v, l, specific)),
            (None, Some((v, l))) => Some((v, l, general)),
            (None, None) => None,
        }
    }

    fn record_either(&mut self, key: &'static str, got: &Option<(String, usize, &'static str)>) {
        match got {
            Some((v, line, _)) => self.record(key, v, Origin::Line(*line)),
            None => self.record(key, "(none)", Origin::Default),
        }
    }

    fn build(mut self, entries: Vec<Entry>) -> Result<Loaded, ConfigError> {
        self.ingest(entries);

        // ---- Daemon and identity
        let executable = self.required("executableName", "sample_kclpy_app.py").and_then(|(raw, line)| {
            let mut tokens = raw.split(' ').filter(|t| !t.is_empty()).map(str::to_owned);
            let program = tokens.next()?;
            self.record("executableName", &raw, Origin::Line(line));
            Some(Executable { program, args: tokens.collect(), raw })
        });
        let processing_language = self.text("processingLanguage");
        let processing_language = self.optional("processingLanguage", processing_language);
        let max_active_threads = self.int("maxActiveThreads");
        let max_active_threads = match max_active_threads {
            Some((v, line)) => {
                self.record("maxActiveThreads", v, Origin::Line(line));
                (v > 0).then(|| to_u32(v))
            }
            None => {
                self.record("maxActiveThreads", "0 (no limit)", Origin::Default);
                None
            }
        };
        let application_name = self.required("applicationName", "my-kcl-app");
        if let Some((name, line)) = &application_name {
            self.record("applicationName", name.clone(), Origin::Line(*line));
        }

        let stream_arn = self.checked("streamArn");
        let stream_name_key = self.text("streamName");
        let stream_name = match (&stream_arn, &stream_name_key) {
            (Some((arn, line)), named) => {
                let from_arn = stream_arn_name(arn).unwrap_or_default().to_owned();
                if let Some((name, name_line)) = named {
                    if *name != from_arn {
                        self.warn(
                            Some(*name_line),
                            Some("streamName"),
                            format!(
                                "`{name}` is overridden by the stream name `{from_arn}` of streamArn (line {line})"
                            ),
                        );
                    }
                }
                self.record("streamArn", arn, Origin::Line(*line));
                self.record("streamName", &from_arn, Origin::Derived("from streamArn"));
                Some(from_arn)
            }
            (None, Some((name, line))) => {
                self.record("streamArn", "(none)", Origin::Default);
                self.record("streamName", name, Origin::Line(*line));
                Some(name.clone())
            }
            (None, None) => {
                // A present-but-invalid streamArn has already been reported.
                if !self.is_set("streamArn") {
                    self.problem(
                        None,
                        Some("streamName"),
                        "required key is missing or empty: set `streamName = <stream>` or \
                         `streamArn = arn:aws:kinesis:<region>:<account>:stream/<stream>`",
                    );
                }
                None
            }
        };
        let table_name = match self.text("tableName") {
            Some((t, line)) => {
                self.record("tableName", &t, Origin::Line(line));
                t
            }
            None => {
                let t = application_name.as_ref().map(|a| a.0.clone()).unwrap_or_default();
                self.record("tableName", &t, Origin::Derived("= applicationName"));
                t
            }
        };
        let worker_id = self.text("workerId");
        let worker_identifier = self.text("workerIdentifier");
        let worker_id = match (worker_id, worker_identifier) {
            (Some((id, line)), other) => {
                if let Some((other, other_line)) = other {
                    if other != id {
                        self.warn(
                            Some(other_line),
                            Some("workerIdentifier"),
                            format!("overridden by `workerId` on line {line}"),
                        );
                    }
                }
                self.record("workerId", &id, Origin::Line(line));
                Some(id)
            }
            (None, Some((id, line))) => {
                self.record("workerId", &id, Origin::Line(line));
                Some(id)
            }
            (None, None) => {
                self.record("workerId", "(generated at startup)", Origin::Default);
                None
            }
        };
        let timeout = match self.int("timeoutInSeconds") {
            Some((secs, line)) if secs > 0 => {
                self.record("timeoutInSeconds", secs, Origin::Line(line));
                Some(Duration::from_secs(secs.unsigned_abs()))
            }
            Some((secs, line)) => {
                self.warn(
                    Some(line),
                    Some("timeoutInSeconds"),
                    format!("{secs} disables the timeout (the Java daemon would halt at once)"),
                );
                self.record("timeoutInSeconds", "(none)", Origin::Line(line));
                None
            }
            None => {
                self.record("timeoutInSeconds", "(none)", Origin::Default);
                None
            }
        };
        let shutdown_grace =
            self.millis_or("shutdownGraceMillis", u64::try_from(DEFAULT_SHUTDOWN_GRACE.as_millis()).unwrap_or(20_000));

        // ---- Credentials, region, endpoints
        let credentials = self.credentials(keys::CREDENTIALS);
        match &credentials {
            Some((c, line)) => self.record(keys::CREDENTIALS, &c.raw, Origin::Line(*line)),
            // A present but invalid value has already been reported.
            None if !self.is_set(keys::CREDENTIALS) => {
                self.problem(
                    None,
                    Some(keys::CREDENTIALS),
                    "required key is missing or empty, e.g. `AWSCredentialsProvider = DefaultCredentialsProvider` \
                     (any case of the AWSCredentialsProvider prefix is accepted)",
                );
            }
            None => {}
        }
        let credentials_dynamodb = self.credentials(keys::CREDENTIALS_DYNAMODB);
        let credentials_dynamodb = credentials_dynamodb.map(|(c, line)| {
            self.record(keys::CREDENTIALS_DYNAMODB, &c.raw, Origin::Line(line));
            c
        });
        if credentials_dynamodb.is_none() {
            self.record(keys::CREDENTIALS_DYNAMODB, "(as AWSCredentialsProvider)", Origin::Default);
        }
        let credentials_cloudwatch = self.credentials(keys::CREDENTIALS_CLOUDWATCH).map(|(c, _)| c);

        let region = self.checked("regionName");
        let region = self.optional("regionName", region);
        let kinesis_region = self.checked("kinesisClient.region");
        let kinesis_region = self.optional("kinesisClient.region", kinesis_region);
        let dynamodb_region = self.checked("dynamoDbClient.region");
        let dynamodb_region = self.optional("dynamoDbClient.region", dynamodb_region);
        let cloudwatch_region = self.checked("cloudWatchClient.region").map(|(v, _)| v);
        let kinesis_endpoint = self.either("kinesisClient.endpointOverride", "kinesisEndpoint");
        self.record_either("kinesisEndpoint", &kinesis_endpoint);
        let dynamodb_endpoint = self.either("dynamoDbClient.endpointOverride", "dynamoDBEndpoint");
        self.record_either("dynamoDBEndpoint", &dynamodb_endpoint);
        let cloudwatch_endpoint = self.either("cloudWatchClient.endpointOverride", "cloudWatchEndpoint");

        // ---- Stream position and retrieval
        let extended = self.parsed("initialPositionInStreamExtended", |t| {
            parse_int(t).filter(|&v| valid_for(ValueType::EpochSeconds, &v.to_string()))
        });
        let position = self.raw("initialPositionInStream");
        let initial_position = match (extended, position) {
            (Some((secs, line)), position) => {
                if let Some(p) = position {
                    if !p.text.eq_ignore_ascii_case("AT_TIMESTAMP") {
                        self.warn(
                            Some(p.line),
                            Some("initialPositionInStream"),
                            format!(
                                "overridden by initialPositionInStreamExtended (line {line}): starting AT_TIMESTAMP"
                            ),
                        );
                    }
                }
                self.record("initialPositionInStream", format!("AT_TIMESTAMP {secs}"), Origin::Line(line));
                InitialPosition::AtTimestamp { epoch_millis: secs.saturating_mul(1000) }
            }
            (None, Some(p)) if p.text.eq_ignore_ascii_case("AT_TIMESTAMP") => {
                self.problem(
                    Some(p.line),
                    Some(&p.written),
                    "AT_TIMESTAMP needs a time: remove this key and set \
                     `initialPositionInStreamExtended = <epoch seconds>` instead",
                );
                InitialPosition::Latest
            }
            (None, Some(p)) => {
                let ValueType::Enum(names) = spec("initialPositionInStream").ty else {
                    unreachable!("invariant: initialPositionInStream is an enum")
                };
                match parse_choice(&p.text, names) {
                    Some(name) => {
                        self.record("initialPositionInStream", name, Origin::Line(p.line));
                        if name == "TRIM_HORIZON" {
                            InitialPosition::TrimHorizon
                        } else {
                            InitialPosition::Latest
                        }
                    }
                    None => {
                        self.invalid(&p, "one of TRIM_HORIZON, LATEST (any case); for AT_TIMESTAMP set initialPositionInStreamExtended");
                        InitialPosition::Latest
                    }
                }
            }
            (None, None) => {
                self.record("initialPositionInStream", "LATEST", Origin::Default);
                InitialPosition::Latest
            }
        };

        let polling_set: Vec<&'static str> = keys::POLLING_KEYS.iter().copied().filter(|k| self.is_set(k)).collect();
        let fanout_set: Vec<&'static str> =
            keys::KEYS.iter().map(|k| k.name).filter(|k| k.starts_with("fanoutConfig.") && self.is_set(k)).collect();
        let mode = self.choice("retrievalMode");
        let retrieval_mode = match mode {
            Some(("FANOUT", line)) => {
                if !polling_set.is_empty() {
                    self.warn(
                        Some(line),
                        Some("retrievalMode"),
                        format!("FANOUT ignores the polling keys {}", polling_set.join(", ")),
                    );
                }
                self.record("retrievalMode", "FANOUT", Origin::Line(line));
                RetrievalMode::FanOut
            }
            Some(("POLLING", line)) => {
                self.record("retrievalMode", "POLLING", Origin::Line(line));
                RetrievalMode::Polling
            }
            _ if !polling_set.is_empty() => {
                self.record("retrievalMode", "POLLING", Origin::Derived("DEFAULT, and a polling key is set"));
                RetrievalMode::Polling
            }
            _ => {
                self.record("retrievalMode", "FANOUT", Origin::Derived("DEFAULT, and no polling key is set"));
                RetrievalMode::FanOut
            }
        };
        if retrieval_mode == RetrievalMode::Polling && !fanout_set.is_empty() {
            let line = fanout_set.iter().filter_map(|k| self.values.get(*k).map(|v| v.line)).min();
            self.warn(line, None, format!("POLLING ignores the fan-out keys {}", fanout_set.join(", ")));
        }

        let polling = PollingConfig {
            max_records: self.u32_or("maxRecords", 10_000),
            idle_time_between_reads: self.millis_or("idleTimeBetweenReadsInMillis", 1500),
            retry_get_records: {
                let got = self.int("retryGetRecordsInSeconds");
                self.optional("retryGetRecordsInSeconds", got).map(|s| Duration::from_secs(s.unsigned_abs()))
            },
            max_get_records_thread_pool: self.int("maxGetRecordsThreadPool").map(|(v, _)| to_u32(v)),
            millis_behind_latest_threshold_for_reduced_tps: {
                let got = self.int("millisBehindLatestThresholdForReducedTps");
                self.optional("millisBehindLatestThresholdForReducedTps", got).filter(|&ms| ms > 0).map(millis)
            },
        };
        let fan_out = FanOutConfig {
            consumer_arn: {
                let got = self.checked("fanoutConfig.consumerArn");
                self.optional("fanoutConfig.consumerArn", got)
            },
            consumer_name: match self.text("fanoutConfig.consumerName") {
                Some((name, line)) => {
                    self.record("fanoutConfig.consumerName", &name, Origin::Line(line));
                    name
                }
                None => {
                    let name = application_name.as_ref().map(|a| a.0.clone()).unwrap_or_default();
                    self.record("fanoutConfig.consumerName", &name, Origin::Derived("= applicationName"));
                    name
                }
            },
            max_describe_stream_summary_retries: self.u32_or("fanoutConfig.maxDescribeStreamSummaryRetries", 10),
            max_describe_stream_consumer_retries: self.u32_or("fanoutConfig.maxDescribeStreamConsumerRetries", 10),
            register_stream_consumer_retries: self.u32_or("fanoutConfig.registerStreamConsumerRetries", 10),
            retry_backoff: self.millis_or("fanoutConfig.retryBackoffMillis", 1000),
        };
        let call_process_records_even_for_empty_record_list =
            self.bool_or("callProcessRecordsEvenForEmptyRecordList", false);

        // ---- Leases
        let failover_time = self.millis_or("failoverTimeMillis", 10_000);
        let shard_sync_interval = self.millis_or("shardSyncIntervalMillis", 60_000);
        let cleanup_leases_upon_shard_completion = self.bool_or("cleanupLeasesUponShardCompletion", true);
        let ignore_unexpected_child_shards = self.bool_or("ignoreUnexpectedChildShards", false);
        let max_leases_for_worker = self.u32_or("maxLeasesForWorker", i32::MAX.unsigned_abs());
        let max_leases_to_steal_at_one_time = self.u32_or("maxLeasesToStealAtOneTime", 1);
        let initial_lease_table_read_capacity =
            self.int("initialLeaseTableReadCapacity").map_or(10, |(v, _)| to_u32(v));
        let initial_lease_table_write_capacity =
            self.int("initialLeaseTableWriteCapacity").map_or(10, |(v, _)| to_u32(v));
        let max_lease_renewal_threads = self.u32_or("maxLeaseRenewalThreads", 20);
        let list_shards_backoff = self.millis_or("listShardsBackoffTimeInMillis", 1500);
        let max_list_shards_retry_attempts = self.u32_or("maxListShardsRetryAttempts", 50);
        let parent_shard_poll_interval = self.millis_or("parentShardPollIntervalMillis", 10_000);
        let skip_shard_sync_at_worker_initialization_if_leases_exist =
            self.bool_or("skipShardSyncAtWorkerInitializationIfLeasesExist", false);
        let scheduler_initialization_backoff = self.millis_or("schedulerInitializationBackoffTimeMillis", 1000);
        let task_backoff = self.millis_or("taskBackoffTimeMillis", 500);
        let log_warning_for_task_after = {
            let got = self.int("logWarningForTaskAfterMillis");
            self.optional("logWarningForTaskAfterMillis", got).map(millis)
        };
        let enable_priority_lease_assignment = self.bool_or("enablePriorityLeaseAssignment", true);
        let lease_table_deletion_protection_enabled = self.bool_or("leaseTableDeletionProtectionEnabled", false);
        let lease_table_pitr_enabled = self.bool_or("leaseTablePitrEnabled", false);

        // ---- Metrics (validated; not used)
        let metrics_level = match self.choice("metricsLevel") {
            Some(("NONE", _)) => MetricsLevel::None,
            Some(("SUMMARY", _)) => MetricsLevel::Summary,
            _ => MetricsLevel::Detailed,
        };
        let metrics_enabled_dimensions = self
            .text("metricsEnabledDimensions")
            .map(|(t, _)| t.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect())
            .unwrap_or_else(|| vec!["ALL".to_owned()]);
        let metrics_buffer_time =
            self.int("metricsBufferTimeMillis").map_or(Duration::from_millis(10_000), |(v, _)| millis(v));
        let metrics_max_queue_size = self.int("metricsMaxQueueSize").map_or(10_000, |(v, _)| to_u32(v));
        let client_version_config = self.choice("clientVersionConfig").map(|(v, _)| match v {
            "CLIENT_VERSION_CONFIG_COMPATIBLE_WITH_2X" => ClientVersionConfig::CompatibleWith2x,
            "CLIENT_VERSION_CONFIG_COMPATIBLE_WITH_2X_PHASE1" => ClientVersionConfig::CompatibleWith2xPhase1,
            _ => ClientVersionConfig::V3x,
        });

        // ---- Everything else that is set: validate, report rejected and unused keys.
        let mut present: Vec<(&'static str, Value)> = self.values.iter().map(|(k, v)| (*k, v.clone())).collect();
        present.sort_by_key(|(_, v)| v.line);
        let mut unused_keys = Vec::new();
        for (key, value) in present {
            let spec = spec(key);
            match spec.usage {
                Usage::Used => {}
                Usage::Rejected(why) => {
                    self.problem(Some(value.line), Some(&value.written), format!("not supported: {why}"));
                    continue;
                }
                Usage::NotUsed(why) => {
                    if !value.text.is_empty() {
                        self.warn(Some(value.line), Some(&value.written), format!("accepted but has no effect: {why}"));
                        unused_keys.push((value.written.clone(), value.line));
                    }
                }
            }
            if !self.consumed.contains(&key) && !value.text.is_empty() && !valid_for(spec.ty, &value.text) {
                self.invalid(&value, spec.ty.accepted());
            }
        }

        self.problems.sort_by_key(|p| (p.line.is_none(), p.line));
        self.warnings.sort_by_key(|w| (w.line.is_none(), w.line));
        let (Some(executable), Some((application_name, _)), Some(stream_name), Some((credentials, _)), true) =
            (executable, application_name, stream_name, credentials, self.problems.is_empty())
        else {
            return Err(ConfigError::Invalid { path: self.path, problems: self.problems });
        };

        let config = Config {
            source: self.path.clone(),
            executable,
            processing_language,
            max_active_threads,
            application_name,
            stream_name,
            stream_arn: stream_arn.map(|(a, _)| a),
            table_name,
            worker_id,
            timeout,
            shutdown_grace,
            credentials,
            credentials_dynamodb,
            credentials_cloudwatch,
            region,
            kinesis_endpoint: kinesis_endpoint.map(|(v, _, _)| v),
            dynamodb_endpoint: dynamodb_endpoint.map(|(v, _, _)| v),
            cloudwatch_endpoint: cloudwatch_endpoint.map(|(v, _, _)| v),
            kinesis_region,
            dynamodb_region,
            cloudwatch_region,
            initial_position,
            retrieval_mode,
            polling,
            fan_out,
            call_process_records_even_for_empty_record_list,
            failover_time,
            shard_sync_interval,
            cleanup_leases_upon_shard_completion,
            ignore_unexpected_child_shards,
            max_leases_for_worker,
            max_leases_to_steal_at_one_time,
            initial_lease_table_read_capacity,
            initial_lease_table_write_capacity,
            max_lease_renewal_threads,
            list_shards_backoff,
            max_list_shards_retry_attempts,
            parent_shard_poll_interval,
            skip_shard_sync_at_worker_initialization_if_leases_exist,
            scheduler_initialization_backoff,
            task_backoff,
            log_warning_for_task_after,
            enable_priority_lease_assignment,
            lease_table_deletion_protection_enabled,
            lease_table_pitr_enabled,
            metrics_level,
            metrics_enabled_dimensions,
            metrics_buffer_time,
            metrics_max_queue_size,
            client_version_config,
            unused_keys,
        };
        let order: BTreeMap<&str, usize> = keys::KEYS.iter().enumerate().map(|(i, k)| (k.name, i)).collect();
        self.resolved.sort_by_key(|r| order.get(r.key).copied().unwrap_or(usize::MAX));
        Ok(Loaded { config, warnings: self.warnings, resolved: self.resolved })
    }
}

#[cfg(test)]
mod tests {
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
    fn unused_and_rejected_keys() {
        let loaded = with("clientVersionConfig = client_version_config_compatible_with_2x\nmetricsLevel = NONE\nvalidateSequenceNumberBeforeCheckpointing = true\nstaleWorkerMetricsEntryCleanupDuration = PT15M\n").unwrap();
        let c = &loaded.config;
        assert_eq!(c.client_version_config, Some(ClientVersionConfig::CompatibleWith2x));
        assert_eq!(c.metrics_level, MetricsLevel::None);
        assert_eq!(
            c.unused_keys,
            vec![
                ("clientVersionConfig".to_owned(), 5),
                ("metricsLevel".to_owned(), 6),
                ("validateSequenceNumberBeforeCheckpointing".to_owned(), 7),
                ("staleWorkerMetricsEntryCleanupDuration".to_owned(), 8),
            ]
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
