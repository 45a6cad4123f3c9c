//! Bad configurations against the real binary: every case must exit 78 with a message naming
//! the file, the line and the key (file-level problems name the file and the key or path).
//! The cases rotate through `validate FILE`, the positional run form, `-p FILE` and
//! `--properties-file FILE`, so both the report command and the daemon start-up path are
//! covered. Plus the amazon_kclpy 3.2.0 sample file, which must validate.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BASE: &str = "executableName = python3 app.py\n\
applicationName = app\n\
streamName = s\n\
AWSCredentialsProvider = DefaultCredentialsProvider\n\
regionName = us-east-1\n";

/// The line an appended key lands on.
const NEXT: usize = 6;

/// How the file is given to the binary.
#[derive(Debug, Clone, Copy)]
enum Form {
    Validate,
    Positional,
    ShortP,
    LongP,
}

const FORMS: [Form; 4] = [Form::Validate, Form::Positional, Form::ShortP, Form::LongP];

fn args_for(form: Form, file: &Path) -> Vec<String> {
    let file = file.display().to_string();
    match form {
        Form::Validate => vec!["validate".into(), file],
        Form::Positional => vec![file],
        Form::ShortP => vec!["-p".into(), file],
        Form::LongP => vec!["--properties-file".into(), file],
    }
}

fn run(args: &[String]) -> (Output, String) {
    let out =
        Command::new(support::multilangd_bin()).args(args).env_remove("RUST_LOG").output().expect("spawn multilangd");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out, text)
}

/// What the properties file looks like.
enum Content {
    /// BASE plus these lines (the first one is line 6).
    Append(&'static str),
    /// BASE with one substring replaced.
    Replace(&'static str, &'static str),
    /// Exactly these bytes.
    Raw(&'static [u8]),
}

struct Case {
    name: &'static str,
    content: Content,
    /// `Some(line)`: the message must contain `<file>:<line>: <key>`; `None`: `<file>: <key>`.
    line: Option<usize>,
    key: &'static str,
    /// Further text the message must contain (the bad value, what is accepted, ...).
    also: &'static [&'static str],
}

const fn at(
    name: &'static str,
    content: Content,
    line: usize,
    key: &'static str,
    also: &'static [&'static str],
) -> Case {
    Case { name, content, line: Some(line), key, also }
}

const fn file_level(name: &'static str, content: Content, key: &'static str, also: &'static [&'static str]) -> Case {
    Case { name, content, line: None, key, also }
}

use Content::{Append, Raw, Replace};

fn cases() -> Vec<Case> {
    vec![
        // ---- missing required keys (file level)
        file_level("missing executableName", Replace("executableName = python3 app.py\n", ""), "executableName", &["required"]),
        file_level("empty executableName", Replace("python3 app.py", ""), "executableName", &["required"]),
        file_level("missing applicationName", Replace("applicationName = app\n", ""), "applicationName", &["required"]),
        file_level("missing streamName and streamArn", Replace("streamName = s\n", ""), "streamName", &["streamArn"]),
        file_level("missing credentials", Replace("AWSCredentialsProvider = DefaultCredentialsProvider\n", ""), "AWSCredentialsProvider", &["required"]),
        file_level("only a wrong-case suffix credentials key", Replace("AWSCredentialsProvider =", "AwsCredentialsProviderDynamoDb ="), "AWSCredentialsProvider", &["required"]),
        file_level("all required keys missing", Raw(b"# nothing here\n"), "executableName", &["applicationName", "streamName", "AWSCredentialsProvider", "4 problems"]),
        // ---- numbers
        at("maxRecords not a number", Append("maxRecords = abc\n"), NEXT, "maxRecords", &["`abc`", "from 1 to 10000"]),
        at("maxRecords above 10000", Append("maxRecords = 10001\n"), NEXT, "maxRecords", &["`10001`", "from 1 to 10000"]),
        at("maxRecords zero", Append("maxRecords = 0\n"), NEXT, "maxRecords", &["`0`"]),
        at("failoverTimeMillis decimal", Append("failoverTimeMillis = 5.5\n"), NEXT, "failoverTimeMillis", &["`5.5`", "milliseconds"]),
        at("failoverTimeMillis negative", Append("failoverTimeMillis = -5\n"), NEXT, "failoverTimeMillis", &["`-5`"]),
        at("shardSyncIntervalMillis hex", Append("shardSyncIntervalMillis = 0x10\n"), NEXT, "shardSyncIntervalMillis", &["`0x10`"]),
        at("maxLeasesForWorker overflow", Append("maxLeasesForWorker = 99999999999\n"), NEXT, "maxLeasesForWorker", &["`99999999999`"]),
        at("maxActiveThreads word", Append("maxActiveThreads = many\n"), NEXT, "maxActiveThreads", &["`many`", "whole number"]),
        at("timeoutInSeconds letter O", Append("timeoutInSeconds = 1O\n"), NEXT, "timeoutInSeconds", &["`1O`"]),
        at("shutdownGraceMillis with unit", Append("shutdownGraceMillis = 20s\n"), NEXT, "shutdownGraceMillis", &["`20s`"]),
        at("idleTimeBetweenReadsInMillis with comma", Append("idleTimeBetweenReadsInMillis = 1,000\n"), NEXT, "idleTimeBetweenReadsInMillis", &["`1,000`"]),
        at("fanoutConfig.retryBackoffMillis word", Append("fanoutConfig.retryBackoffMillis = soon\n"), NEXT, "fanoutConfig.retryBackoffMillis", &["`soon`"]),
        at("initialPositionInStreamExtended date", Append("initialPositionInStreamExtended = 2021-11-11\n"), NEXT, "initialPositionInStreamExtended", &["`2021-11-11`", "seconds since 1970"]),
        at("maxLeaseRenewalThreads zero", Append("maxLeaseRenewalThreads = 0\n"), NEXT, "maxLeaseRenewalThreads", &["`0`", ">= 1"]),
        // ---- booleans
        at("cleanupLeases maybe", Append("cleanupLeasesUponShardCompletion = maybe\n"), NEXT, "cleanupLeasesUponShardCompletion", &["`maybe`", "true or false"]),
        at("callProcessRecords typo", Append("callProcessRecordsEvenForEmptyRecordList = ture\n"), NEXT, "callProcessRecordsEvenForEmptyRecordList", &["`ture`"]),
        at("leaseTablePitrEnabled word", Append("leaseTablePitrEnabled = enabled\n"), NEXT, "leaseTablePitrEnabled", &["`enabled`"]),
        // ---- enums
        at("initialPositionInStream unknown", Append("initialPositionInStream = EARLIEST\n"), NEXT, "initialPositionInStream", &["`EARLIEST`", "TRIM_HORIZON, LATEST"]),
        at("initialPositionInStream AT_TIMESTAMP alone", Append("initialPositionInStream = AT_TIMESTAMP\n"), NEXT, "initialPositionInStream", &["initialPositionInStreamExtended"]),
        at("retrievalMode unknown", Append("retrievalMode = streaming\n"), NEXT, "retrievalMode", &["`streaming`", "FANOUT, POLLING, DEFAULT"]),
        at("metricsLevel unknown", Append("metricsLevel = VERBOSE\n"), NEXT, "metricsLevel", &["`VERBOSE`", "NONE, SUMMARY, DETAILED"]),
        at("clientVersionConfig unknown", Append("clientVersionConfig = 3X\n"), NEXT, "clientVersionConfig", &["`3X`", "CLIENT_VERSION_CONFIG_3X"]),
        at("workerMetricsBillingMode unknown", Append("workerMetricsBillingMode = cheap\n"), NEXT, "workerMetricsBillingMode", &["PAY_PER_REQUEST"]),
        // ---- ARNs
        at("streamArn short account", Append("streamArn = arn:aws:kinesis:us-east-1:123:stream/s\n"), NEXT, "streamArn", &["arn:<partition>:kinesis:"]),
        at("streamArn other service", Append("streamArn = arn:aws:sqs:us-east-1:123456789012:queue\n"), NEXT, "streamArn", &["`arn:aws:sqs"]),
        at("consumerArn not an ARN", Append("fanoutConfig.consumerArn = consumer-1\n"), NEXT, "fanoutConfig.consumerArn", &["`consumer-1`", "/consumer/"]),
        // ---- URLs and regions
        at("kinesisEndpoint without scheme", Append("kinesisEndpoint = localhost:4566\n"), NEXT, "kinesisEndpoint", &["`localhost:4566`", "http://"]),
        at("dynamoDBEndpoint ftp", Append("dynamoDBEndpoint = ftp://x\n"), NEXT, "dynamoDBEndpoint", &["`ftp://x`"]),
        at("kinesisClient.endpointOverride no host", Append("kinesisClient.endpointOverride = http://\n"), NEXT, "kinesisClient.endpointOverride", &["`http://`"]),
        at("cloudWatchClient.endpointOverride garbage", Append("cloudWatchClient.endpointOverride = not a url\n"), NEXT, "cloudWatchClient.endpointOverride", &["`not a url`"]),
        at("regionName upper case", Replace("regionName = us-east-1", "regionName = US-EAST-1"), 5, "regionName", &["`US-EAST-1`", "region name"]),
        at("dynamoDbClient.region with spaces", Append("dynamoDbClient.region = us east 1\n"), NEXT, "dynamoDbClient.region", &["`us east 1`"]),
        // ---- credentials
        at("credentials unknown provider only", Replace("= DefaultCredentialsProvider", "= NoSuchProvider"), 4, "AWSCredentialsProvider", &["NoSuchProvider", "no usable credentials provider"]),
        at("credentials lower-case key, bad role ARN", Replace("AWSCredentialsProvider = DefaultCredentialsProvider", "awscredentialsprovider = StsAssumeRoleCredentialsProvider|not-an-arn|s1"), 4, "awscredentialsprovider", &["role ARN", "`not-an-arn`"]),
        at("credentials assume role missing session", Replace("= DefaultCredentialsProvider", "= KclStsAssumeRoleCredentialsProvider|arn:aws:iam::123456789012:role/r"), 4, "AWSCredentialsProvider", &["session name"]),
        at("credentials assume role bad endpoint", Replace("= DefaultCredentialsProvider", "= KclSTSAssumeRoleSessionCredentialsProvider|arn:aws:iam::123456789012:role/r|s1|endpoint=https://sts.example.com"), 4, "AWSCredentialsProvider", &["URL^signingRegion"]),
        at("DynamoDB credentials empty chain", Append("AWSCredentialsProviderDynamoDB = , ,\n"), NEXT, "AWSCredentialsProviderDynamoDB", &["no usable credentials provider"]),
        at("anonymous in a chain", Replace("= DefaultCredentialsProvider", "= AnonymousCredentialsProvider,DefaultCredentialsProvider"), 4, "AWSCredentialsProvider", &["cannot be combined"]),
        // ---- other keys and syntax
        at("shardPrioritization is rejected", Append("shardPrioritization = anything\n"), NEXT, "shardPrioritization", &["not supported"]),
        at("ISO duration malformed", Append("staleWorkerMetricsEntryCleanupDuration = 1 day\n"), NEXT, "staleWorkerMetricsEntryCleanupDuration", &["`1 day`", "PT15M"]),
        at("tags malformed", Append("workerMetricsTags = a\n"), NEXT, "workerMetricsTags", &["key=value"]),
        at("decimal malformed", Append("workerMetricsEMAAlpha = half\n"), NEXT, "workerMetricsEMAAlpha", &["`half`", "decimal"]),
        at("malformed unicode escape", Append("processingLanguage = py\\u12\n"), NEXT, "", &["malformed \\uXXXX escape"]),
        at("second of several problems is reported too", Append("maxRecords = 5\nfailoverTimeMillis = x\ntaskBackoffTimeMillis = y\n"), NEXT + 2, "taskBackoffTimeMillis", &["failoverTimeMillis", "2 problems"]),
        at("continuation line keeps the first line number", Append("maxRecords = 1\\\n   0001\n"), NEXT, "maxRecords", &["`10001`"]),
    ]
}

fn write_case(dir: &Path, content: &Content) -> PathBuf {
    let path = dir.join("app.properties");
    let bytes: Vec<u8> = match content {
        Content::Append(extra) => format!("{BASE}{extra}").into_bytes(),
        Content::Replace(from, to) => {
            assert!(BASE.contains(from), "{from}");
            BASE.replacen(from, to, 1).into_bytes()
        }
        Content::Raw(bytes) => bytes.to_vec(),
    };
    std::fs::write(&path, bytes).expect("write properties");
    path
}

#[test]
fn bad_configurations_exit_78_naming_file_line_and_key() {
    let cases = cases();
    assert!(cases.len() >= 40, "only {} cases", cases.len());
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let case_dir = dir.path().join(format!("case{i}"));
        std::fs::create_dir(&case_dir).unwrap();
        let file = write_case(&case_dir, &case.content);
        let form = FORMS[i % FORMS.len()];
        let (out, text) = run(&args_for(form, &file));
        let located = match case.line {
            Some(line) if case.key.is_empty() => format!("{}:{line}: ", file.display()),
            Some(line) => format!("{}:{line}: {}: ", file.display(), case.key),
            None => format!("{}: {}: ", file.display(), case.key),
        };
        let mut missing: Vec<&str> = case.also.iter().copied().filter(|s| !text.contains(s)).collect();
        if !text.contains(&located) {
            missing.push(&located);
        }
        if out.status.code() != Some(78) || !missing.is_empty() {
            failures.push(format!(
                "case `{}` ({form:?}): exit {:?}, missing {missing:?}\n{text}",
                case.name,
                out.status.code()
            ));
        }
        if !matches!(form, Form::Validate) {
            assert!(out.stdout.is_empty(), "run form wrote to stdout: {}", case.name);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n---\n"));
}

/// A valid file that this version cannot run ([`Config::check_runnable`]) is refused by
/// `validate FILE` and by the daemon alike: exit 78, the same message naming file, line and
/// key. A runnable file validates.
///
/// [`Config::check_runnable`]: multilangd::config::Config::check_runnable
#[test]
fn validate_and_the_daemon_refuse_the_same_files() {
    struct Refused {
        name: &'static str,
        extra: &'static str,
        /// `Some(line)`: `<file>:<line>: retrievalMode: `; `None`: `<file>: retrievalMode: `.
        line: Option<usize>,
    }
    // No refusal is left: FANOUT (set, or DEFAULT without a polling key) runs since enhanced
    // fan-out is implemented. Add a case here with each new entry in config::unsupported.
    let refused: Vec<Refused> = Vec::new();
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for (i, case) in refused.iter().enumerate() {
        let file = dir.path().join(format!("refused{i}.properties"));
        std::fs::write(&file, format!("{BASE}{}", case.extra)).unwrap();
        let located = match case.line {
            Some(line) => format!("{}:{line}: retrievalMode: resolves to FANOUT", file.display()),
            None => format!("{}: retrievalMode: resolves to FANOUT", file.display()),
        };
        let message = match multilangd::config::Config::load(&file).unwrap().config.check_runnable() {
            Err(refusal) => refusal.to_string(),
            Ok(()) => {
                failures.push(format!("case `{}`: the library does not refuse it", case.name));
                continue;
            }
        };
        for form in [Form::Validate, Form::Positional, Form::LongP] {
            let (out, text) = run(&args_for(form, &file));
            if out.status.code() != Some(78) || !text.contains(&message) || !text.contains(&located) {
                failures.push(format!(
                    "case `{}` ({form:?}): exit {:?}; want 78 and\n{message}\n(with {located:?})\ngot\n{text}",
                    case.name,
                    out.status.code()
                ));
            }
            assert!(out.stdout.is_empty(), "case `{}` ({form:?}) wrote to stdout:\n{text}", case.name);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n---\n"));

    for (name, extra, mode) in [
        ("POLLING set", "retrievalMode = POLLING\n", "POLLING"),
        ("DEFAULT with a polling key", "maxRecords = 5\n", "POLLING"),
        ("FANOUT set", "retrievalMode = fanout\n", "FANOUT"),
        ("nothing set: DEFAULT, no polling key", "", "FANOUT"),
    ] {
        let file = dir.path().join("runnable.properties");
        std::fs::write(&file, format!("{BASE}{extra}")).unwrap();
        assert!(multilangd::config::Config::load(&file).unwrap().config.check_runnable().is_ok(), "{name}");
        let (out, text) = run(&["validate".into(), file.display().to_string()]);
        assert_eq!(out.status.code(), Some(0), "{name}: {text}");
        assert!(text.contains(&format!("retrievalMode = {mode}")), "{name}: {text}");
    }
}

/// Problems with the file itself or the command line.
#[test]
fn file_and_command_line_problems_exit_78() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.properties");
    std::fs::write(&good, BASE).unwrap();
    let bad = dir.path().join("bad.properties");
    std::fs::write(&bad, format!("{BASE}maxRecords = lots\n")).unwrap();
    let missing = dir.path().join("nope.properties");
    let directory = dir.path().join("a-directory.properties");
    std::fs::create_dir(&directory).unwrap();
    let s = |p: &Path| p.display().to_string();

    let cases: Vec<(&str, Vec<String>, Vec<String>)> = vec![
        (
            "nonexistent file (validate)",
            vec!["validate".into(), s(&missing)],
            vec![format!("cannot read properties file {}", s(&missing)), "No such file".into()],
        ),
        ("nonexistent file (run)", vec![s(&missing)], vec![format!("cannot read properties file {}", s(&missing))]),
        (
            "nonexistent file (-p)",
            vec!["-p".into(), s(&missing)],
            vec![format!("cannot read properties file {}", s(&missing))],
        ),
        (
            "unreadable: a directory (validate)",
            vec!["validate".into(), s(&directory)],
            vec![format!("cannot read properties file {}", s(&directory))],
        ),
        (
            "unreadable: a directory (run)",
            vec!["--properties-file".into(), s(&directory)],
            vec![format!("cannot read properties file {}", s(&directory))],
        ),
        (
            "two positional files",
            vec![s(&good), s(&bad)],
            vec!["expected a single properties file".into(), s(&good), s(&bad)],
        ),
        (
            "-p wins over the positional file",
            vec!["-p".into(), s(&bad), s(&good)],
            vec![format!("{}:6: maxRecords", s(&bad)), "overriding the properties file".into()],
        ),
        ("no file at all", vec![], vec!["no properties file given".into()]),
        ("-p without a value", vec!["-p".into()], vec!["FILE".into()]),
        ("unknown option", vec!["--frobnicate".into(), s(&good)], vec!["--frobnicate".into()]),
        ("validate without a file", vec!["validate".into()], vec!["FILE".into()]),
        ("bad --log-level", vec!["--log-level".into(), "info,=x=y".into(), s(&good)], vec!["--log-level".into()]),
    ];
    let mut failures = Vec::new();
    for (name, args, needles) in &cases {
        let (out, text) = run(args);
        let missing: Vec<&String> = needles.iter().filter(|n| !text.contains(n.as_str())).collect();
        if out.status.code() != Some(78) || !missing.is_empty() {
            failures.push(format!("`{name}`: exit {:?}, missing {missing:?}\n{text}", out.status.code()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n---\n"));
}

#[test]
fn valid_file_validates_and_reports_origins() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ok.properties");
    std::fs::write(&file, format!("{BASE}dynamoDbEndpoint = http://localhost:8000\nmaxRecords = 100\n")).unwrap();
    let (out, text) = run(&["validate".into(), file.display().to_string()]);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "applicationName = app",
        "# line 2",
        "failoverTimeMillis = 10000",
        "# default",
        "retrievalMode = POLLING",
        "maxRecords = 100",
        "tableName = app",
        "Warnings (1):",
        ":6: dynamoDbEndpoint: unknown key ignored (did you mean `dynamoDBEndpoint`?",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?} in\n{stdout}");
    }
}

#[test]
fn run_form_logs_to_stderr_only_and_accepts_log_configuration() {
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ok.properties");
    // Loopback endpoints on the discard port and anonymous credentials: whatever the engine
    // does with them, nothing leaves the machine.
    std::fs::write(
        &file,
        "executableName = /bin/cat\napplicationName = app\nstreamName = s\n\
         AWSCredentialsProvider = AnonymousCredentialsProvider\nregionName = us-east-1\n\
         retrievalMode = POLLING\nkinesisEndpoint = http://127.0.0.1:9\ndynamoDBEndpoint = http://127.0.0.1:9\n\
         cloudWatchClient.endpointOverride = http://127.0.0.1:9\n",
    )
    .unwrap();
    let mut child = Command::new(support::multilangd_bin())
        .args(["-l", "/no/such/logback.xml", "--log-format", "json"])
        .arg(&file)
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The run() outcome belongs to the engine; stop it with SIGTERM if it is still running.
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() && started.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    if child.try_wait().unwrap().is_none() {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let started = Instant::now();
        while child.try_wait().unwrap().is_none() && started.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(50));
        }
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.stdout.is_empty(), "stdout: {}", String::from_utf8_lossy(&out.stdout));
    assert!(stderr.contains("--log-configuration is ignored"), "{stderr}");
    for line in stderr.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(v.get("level").is_some(), "{line}");
    }
    assert_ne!(out.status.code(), Some(78), "{stderr}");
}

/// The unchanged `samples/sample.properties` of amazon_kclpy 3.2.0 loads (warnings allowed),
/// resolves FANOUT and validates (tests/e2e_fanout.rs runs it); with
/// `maxRecords = 100` added it resolves POLLING and validates.
#[test]
fn amazon_kclpy_sample_properties() {
    let sdist = support::testbed_dir().join("sdist/amazon_kclpy-3.2.0.tar.gz");
    let out = Command::new("tar")
        .arg("-xzOf")
        .arg(&sdist)
        .arg("amazon_kclpy-3.2.0/samples/sample.properties")
        .output()
        .unwrap();
    assert!(out.status.success(), "cannot extract from {}: {}", sdist.display(), String::from_utf8_lossy(&out.stderr));
    let sample = out.stdout;
    assert!(sample.starts_with(b"# The script that abides"));

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sample.properties");
    std::fs::write(&file, &sample).unwrap();
    let loaded = multilangd::config::Config::load(&file).unwrap();
    assert_eq!(loaded.config.retrieval_mode, multilangd::config::RetrievalMode::FanOut);
    assert_eq!(loaded.config.stream_name, "kclpysample");
    assert_eq!(loaded.config.executable.program, "sample_kclpy_app.py");
    assert_eq!(loaded.config.initial_position, multilangd::config::InitialPosition::TrimHorizon);
    // `validate` accepts the sample: the daemon runs it (enhanced fan-out).
    assert!(loaded.config.check_runnable().is_ok());
    let (out, text) = run(&["validate".into(), file.display().to_string()]);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("retrievalMode = FANOUT"), "{text}");

    let mut polling = sample.clone();
    polling.extend_from_slice(b"\nmaxRecords = 100\n");
    std::fs::write(&file, &polling).unwrap();
    let loaded = multilangd::config::Config::load(&file).unwrap();
    assert_eq!(loaded.config.retrieval_mode, multilangd::config::RetrievalMode::Polling);
    assert_eq!(loaded.config.polling.max_records, 100);
    let (out, text) = run(&["validate".into(), file.display().to_string()]);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("retrievalMode = POLLING"), "{text}");
}
