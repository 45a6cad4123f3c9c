//! Running daemons (multilangd or the reference Java MultiLangDaemon) against private
//! emulators, and reading the lease table, for end-to-end tests.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

use super::{multilangd_bin, repo_dir};

/// Properties for a daemon on local emulators, in the Java daemon's syntax.
#[derive(Clone, Debug)]
pub struct Props {
    entries: BTreeMap<String, String>,
}

impl Props {
    /// The keys every test needs: polling, TRIM_HORIZON, local endpoints, no metrics, and the
    /// KCL 2.x lease protocol spelled as Java 3.x accepts it
    /// (`clientVersionConfig = CLIENT_VERSION_CONFIG_COMPATIBLE_WITH_2X`; Java 2.5.8 ignores the
    /// key): with it unset a new application starts in 3.x mode, whose lease-table index
    /// dynalite cannot host. KCL 3.x tests set `CLIENT_VERSION_CONFIG_3X` or [`Props::unset`] it.
    pub fn local(app: &str, stream: &str, executable: &str, kinesis: &str, dynamodb: &str) -> Self {
        let mut entries = BTreeMap::new();
        for (k, v) in [
            ("executableName", executable),
            ("streamName", stream),
            ("applicationName", app),
            ("AWSCredentialsProvider", "DefaultAWSCredentialsProviderChain"),
            ("processingLanguage", "python/3.11"),
            ("initialPositionInStream", "TRIM_HORIZON"),
            ("regionName", "us-east-1"),
            ("kinesisEndpoint", kinesis),
            ("dynamoDBEndpoint", dynamodb),
            ("metricsLevel", "NONE"),
            ("retrievalMode", "POLLING"),
            ("idleTimeBetweenReadsInMillis", "200"),
            ("shardSyncIntervalMillis", "1000"),
            ("parentShardPollIntervalMillis", "1000"),
            ("clientVersionConfig", "CLIENT_VERSION_CONFIG_COMPATIBLE_WITH_2X"),
        ] {
            entries.insert(k.to_owned(), v.to_owned());
        }
        Self { entries }
    }

    /// The same file for the Java 3.x daemon, which rejects the SDK v1 credential names: the
    /// credentials key is spelled as the 3.x samples do (`AwsCredentialsProvider =
    /// DefaultCredentialsProvider`; multilangd accepts both spellings).
    #[must_use]
    pub fn for_java3(mut self) -> Self {
        self.entries.remove("AWSCredentialsProvider");
        self.set("AwsCredentialsProvider", "DefaultCredentialsProvider")
    }

    /// Sets (or replaces) a key.
    #[must_use]
    pub fn set(mut self, key: &str, value: impl ToString) -> Self {
        self.entries.insert(key.to_owned(), value.to_string());
        self
    }

    /// Removes a key (the daemon's default applies).
    #[must_use]
    pub fn unset(mut self, key: &str) -> Self {
        self.entries.remove(key);
        self
    }

    /// Writes the file.
    pub fn write(&self, path: &Path) -> PathBuf {
        let mut text = String::new();
        for (k, v) in &self.entries {
            let _ = writeln!(text, "{k} = {v}");
        }
        std::fs::write(path, text).expect("write properties");
        path.to_owned()
    }
}

/// Which daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// This repository's binary.
    Multilangd,
    /// The reference Java MultiLangDaemon 2.5.8.
    Java,
    /// The reference Java MultiLangDaemon 3.1.3 (the current Java line; needs moto as DynamoDB,
    /// and properties from [`Props::for_java3`]).
    Java3,
}

/// A running daemon in its own process group; killed (group) on drop.
pub struct Daemon {
    /// Which daemon.
    pub kind: Kind,
    /// Its stderr+stdout log.
    pub log: PathBuf,
    /// When it was started.
    pub started: Instant,
    child: Child,
    exited: Option<ExitStatus>,
}

impl Daemon {
    /// Starts `kind` with `props`, logging to `log`.
    pub fn start(kind: Kind, props: &Path, log: &Path) -> Self {
        Self::start_with_env(kind, props, log, &[])
    }

    /// [`Daemon::start`] with extra environment variables (e.g. `PATH`, `SSL_CERT_FILE`).
    pub fn start_with_env(kind: Kind, props: &Path, log: &Path, env: &[(&str, String)]) -> Self {
        let out = std::fs::File::create(log).expect("create daemon log");
        let err = out.try_clone().expect("clone log");
        let mut command = match kind {
            Kind::Multilangd => {
                let mut c = Command::new(multilangd_bin());
                c.arg("--properties-file").arg(props).env("RUST_LOG", "info");
                c
            }
            Kind::Java => {
                let mut c = Command::new("bash");
                c.arg(repo_dir().join("scripts/run-java-daemon.sh")).arg(props);
                c
            }
            Kind::Java3 => {
                let mut c = Command::new("bash");
                c.arg(repo_dir().join("scripts/run-java3-daemon.sh")).arg(props);
                c
            }
        };
        command
            .env("AWS_ACCESS_KEY_ID", "x")
            .env("AWS_SECRET_ACCESS_KEY", "x")
            .env("AWS_REGION", "us-east-1")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        let child = command.spawn().unwrap_or_else(|e| panic!("cannot start {kind:?}: {e}"));
        Self { kind, log: log.to_owned(), started: Instant::now(), child, exited: None }
    }

    /// The daemon's pid.
    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pid fits")
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM to the daemon only (not its children: like systemd's KillMode=mixed)
    /// and waits for it to exit.
    pub fn terminate(&mut self, within: Duration) -> ExitStatus {
        let _ = kill(Pid::from_raw(self.pid()), Signal::SIGTERM);
        self.wait(within)
    }

    /// SIGKILL to the daemon process only, as `kill -9` would; its children are orphaned.
    pub fn kill9(&mut self) {
        let _ = kill(Pid::from_raw(self.pid()), Signal::SIGKILL);
        self.exited = Some(self.child.wait().expect("reap"));
    }

    /// Waits for the exit.
    pub fn wait(&mut self, within: Duration) -> ExitStatus {
        if let Some(status) = self.exited {
            return status;
        }
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                self.exited = Some(status);
                return status;
            }
            if Instant::now() > deadline {
                panic!("{:?} did not exit within {within:?}; log:\n{}", self.kind, tail(&self.log_text(), 60));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts multilangd with `props`, extra command-line `args` (before the file) and extra
    /// environment variables, logging to `log`.
    pub fn start_multilangd_with(props: &Path, log: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        let out = std::fs::File::create(log).expect("create daemon log");
        let err = out.try_clone().expect("clone log");
        let mut command = Command::new(multilangd_bin());
        command.args(args).arg("--properties-file").arg(props).env("RUST_LOG", "info");
        command
            .env("AWS_ACCESS_KEY_ID", "x")
            .env("AWS_SECRET_ACCESS_KEY", "x")
            .env("AWS_REGION", "us-east-1")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        let child = command.spawn().unwrap_or_else(|e| panic!("cannot start multilangd: {e}"));
        Self { kind: Kind::Multilangd, log: log.to_owned(), started: Instant::now(), child, exited: None }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = killpg(Pid::from_raw(self.pid()), Signal::SIGKILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Polls `check` every 100 ms until it returns true or `within` passes (then panics with
/// `what` and `context()`).
pub fn wait_for(what: &str, within: Duration, mut check: impl FnMut() -> bool, context: impl Fn() -> String) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "timed out after {within:?} waiting for {what}\n{}", context());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// SDK clients for the emulators.
pub async fn clients(kinesis: &str, dynamodb: &str) -> (aws_sdk_kinesis::Client, aws_sdk_dynamodb::Client) {
    let creds = aws_sdk_dynamodb::config::Credentials::new("x", "x", None, None, "test");
    let base = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(creds)
        .load()
        .await;
    let k = aws_sdk_kinesis::config::Builder::from(&base).endpoint_url(kinesis).build();
    let d = aws_sdk_dynamodb::config::Builder::from(&base).endpoint_url(dynamodb).build();
    (aws_sdk_kinesis::Client::from_conf(k), aws_sdk_dynamodb::Client::from_conf(d))
}

/// Every item of a table (empty if the table does not exist).
pub async fn items(
    ddb: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Vec<std::collections::HashMap<String, AttributeValue>> {
    let mut out = Vec::new();
    let mut start = None;
    loop {
        let page = match ddb.scan().table_name(table).set_exclusive_start_key(start).send().await {
            Ok(page) => page,
            Err(_) => return out,
        };
        out.extend(page.items().iter().cloned());
        match page.last_evaluated_key() {
            Some(k) if !k.is_empty() => start = Some(k.clone()),
            _ => return out,
        }
    }
}

/// `leaseKey` → (`leaseOwner`, `checkpoint`) of every lease item.
pub async fn leases(ddb: &aws_sdk_dynamodb::Client, table: &str) -> BTreeMap<String, (Option<String>, String)> {
    items(ddb, table)
        .await
        .into_iter()
        .filter_map(|item| {
            let key = item.get("leaseKey")?.as_s().ok()?.clone();
            let owner = item.get("leaseOwner").and_then(|v| v.as_s().ok()).cloned();
            let checkpoint = item.get("checkpoint").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
            Some((key, (owner, checkpoint)))
        })
        .collect()
}

/// The DynamoDB type letter of an attribute value (S, N, SS, B, ...).
pub fn type_of(value: &AttributeValue) -> &'static str {
    match value {
        AttributeValue::S(_) => "S",
        AttributeValue::N(_) => "N",
        AttributeValue::B(_) => "B",
        AttributeValue::Ss(_) => "SS",
        AttributeValue::Ns(_) => "NS",
        AttributeValue::Bs(_) => "BS",
        AttributeValue::Bool(_) => "BOOL",
        AttributeValue::Null(_) => "NULL",
        AttributeValue::L(_) => "L",
        AttributeValue::M(_) => "M",
        _ => "?",
    }
}

/// Runs the producer: `count` records into `stream` (created with `shards` shards if
/// missing), appending its ledger to `ledger`.
pub fn produce(kinesis: &str, stream: &str, shards: u32, count: usize, ledger: &Path) {
    produce_seeded(kinesis, stream, shards, count, 1, ledger);
}

/// [`produce`] with the producer's `--seed` (different seeds, different records).
pub fn produce_seeded(kinesis: &str, stream: &str, shards: u32, count: usize, seed: u32, ledger: &Path) {
    let output = Command::new(super::python())
        .arg(repo_dir().join("sample-apps/producer/taxi_producer.py"))
        .args(["--endpoint", kinesis, "--stream", stream, "--create-stream", &shards.to_string()])
        .args(["--count", &count.to_string(), "--seed", &seed.to_string(), "--progress-interval", "30", "--ledger"])
        .arg(ledger)
        .env("AWS_ACCESS_KEY_ID", "x")
        .env("AWS_SECRET_ACCESS_KEY", "x")
        .output()
        .expect("run the producer");
    assert!(
        output.status.success(),
        "producer failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The producer running in the background (records keep flowing during a fault); killed
/// (process group) on drop.
pub struct Producer {
    child: Child,
}

impl Producer {
    /// Starts the producer: `count` records at `rate` per second into `stream` (created
    /// with `shards` shards if missing), appending its ledger to `ledger`.
    pub fn start(kinesis: &str, stream: &str, shards: u32, count: usize, rate: f64, ledger: &Path) -> Self {
        let child = Command::new(super::python())
            .arg(repo_dir().join("sample-apps/producer/taxi_producer.py"))
            .args(["--endpoint", kinesis, "--stream", stream, "--create-stream", &shards.to_string()])
            .args(["--count", &count.to_string(), "--rate", &rate.to_string(), "--progress-interval", "30"])
            .args(["--batch-size", "10", "--ledger"])
            .arg(ledger)
            .env("AWS_ACCESS_KEY_ID", "x")
            .env("AWS_SECRET_ACCESS_KEY", "x")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start the producer");
        Self { child }
    }

    /// Stops the producer now (SIGKILL): its ledger holds what Kinesis acknowledged (an
    /// unterminated last line is ignored by the ledger reader).
    pub fn stop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let _ = self.child.wait();
    }

    /// Waits for the producer to finish all its records; panics if it fails or takes longer.
    pub fn finish(&mut self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                assert!(status.success(), "producer failed: {status:?}");
                return;
            }
            assert!(Instant::now() < deadline, "the producer did not finish within {within:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let _ = self.child.wait();
    }
}
