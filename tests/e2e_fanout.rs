//! End-to-end enhanced fan-out (issue 10): the real multilangd binary in `retrievalMode`
//! FANOUT (explicit or by default) on kinesis-local + dynalite with real amazon_kclpy record
//! processors. kinesis-local serves SubscribeToShard over HTTP/1.1 on its plain port and over
//! HTTP/2 (ALPN h2) on its TLS port. It never sends ChildShards: shard ends over fan-out are
//! unit-tested against a scripted event stream (src/stream/fanout/tests.rs).
//!
//! The tests of this binary share one kinesis-local and one dynalite while they run
//! concurrently (distinct streams, applications and consumer names).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use support::daemon::{self, Daemon, Kind, Props};
use support::emulators::{self, Emulator};
use support::ledger::{assert_all_delivered, keys, last_per_shard, seq_gt};
use support::sample_apps::{read_ledger, LedgerEntry, Processor};
use support::{python, runtime, testbed_dir};

struct Emulators {
    kinesis: Emulator,
    dynamo: Emulator,
}

/// The emulators shared by the tests running at the same time (stopped with the last user).
fn shared() -> Arc<Emulators> {
    static SHARED: Mutex<Weak<Emulators>> = Mutex::new(Weak::new());
    let mut slot = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(emulators) = slot.upgrade() {
        return emulators;
    }
    let emulators =
        Arc::new(Emulators { kinesis: emulators::start_kinesis_local(), dynamo: emulators::start_dynalite() });
    *slot = Arc::downgrade(&emulators);
    emulators
}

/// Properties for FANOUT on the emulators (the common test keys; the polling key among them
/// is ignored with a warning, as in Java).
fn fanout_props(app: &str, stream: &str, executable: &str, kinesis: &str, dynamo: &str) -> Props {
    Props::local(app, stream, executable, kinesis, dynamo).set("retrievalMode", "FANOUT")
}

fn checkpoints(rt: &tokio::runtime::Runtime, ddb: &aws_sdk_dynamodb::Client, table: &str) -> BTreeMap<String, String> {
    rt.block_on(daemon::leases(ddb, table)).into_iter().map(|(k, (_, cp))| (k, cp)).collect()
}

/// The records handed to processors, from the daemon's last progress report per shard.
fn progress_records(log: &str) -> u64 {
    let mut per_shard = BTreeMap::new();
    for line in log.lines().filter(|l| l.contains("multilangd::scheduler: progress")) {
        let field = |name: &str| line.split_whitespace().find_map(|w| w.strip_prefix(name)).map(str::to_owned);
        if let (Some(shard), Some(records)) = (field("shard_id="), field("records=")) {
            per_shard.insert(shard, records.parse::<u64>().unwrap_or(0));
        }
    }
    per_shard.values().sum()
}

fn stream_arn(stream: &str) -> String {
    format!("arn:aws:kinesis:us-east-1:000000000000:stream/{stream}")
}

/// The consumer's status, or `None` if it does not exist.
fn consumer_status(
    rt: &tokio::runtime::Runtime,
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
    name: &str,
) -> Option<String> {
    rt.block_on(kinesis.describe_stream_consumer().stream_arn(stream_arn(stream)).consumer_name(name).send())
        .ok()
        .and_then(|out| out.consumer_description().map(|d| d.consumer_status().as_str().to_owned()))
}

/// amazon_kclpy 3.2.0's `samples/sample.properties` as shipped — only the stream ARN changed
/// (the sample's is in the fictional us-east-5) and the two endpoint keys and 2.x mode added — runs the
/// unchanged `sample_kclpy_app.py`, found on PATH as a user's shell finds it. The file sets
/// neither `retrievalMode` nor a polling key (so FANOUT) nor `metricsLevel` (so DETAILED).
#[test]
fn amazon_kclpy_sample_properties_as_shipped() {
    let emus = shared();
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let sdist = testbed_dir().join("sdist/amazon_kclpy-3.2.0.tar.gz");
    let status = Command::new("tar")
        .arg("-xzf")
        .arg(&sdist)
        .arg("-C")
        .arg(dir.path())
        .arg("amazon_kclpy-3.2.0/samples")
        .status()
        .unwrap();
    assert!(status.success(), "cannot extract the samples from {}", sdist.display());
    let samples = dir.path().join("amazon_kclpy-3.2.0/samples");
    let app = samples.join("sample_kclpy_app.py");
    let mut perms = std::fs::metadata(&app).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&app, perms).unwrap();

    let shipped = std::fs::read_to_string(samples.join("sample.properties")).unwrap();
    let fictional = "arn:aws:kinesis:us-east-5:000000000000:stream/kclpysample";
    assert!(shipped.contains(&format!("streamArn = {fictional}")), "the sample changed: {shipped}");
    for absent in ["\nretrievalMode", "\nmetricsLevel", "\nmaxRecords", "\nidleTimeBetweenReadsInMillis"] {
        assert!(!shipped.contains(absent), "the sample now sets {absent}");
    }
    // The 2.x lease protocol: dynalite cannot host the lease-table index of the 3.x mode
    // that a new application with `clientVersionConfig` unset starts in.
    let text = format!(
        "{}\nkinesisEndpoint = {}\ndynamoDBEndpoint = {}\nclientVersionConfig = CLIENT_VERSION_CONFIG_COMPATIBLE_WITH_2X\n",
        shipped.replace(fictional, &stream_arn("kclpysample")),
        emus.kinesis.endpoint,
        emus.dynamo.endpoint
    );
    let props = dir.path().join("sample.properties");
    std::fs::write(&props, text).unwrap();

    let sent_ledger = dir.path().join("sent.jsonl");
    daemon::produce(&emus.kinesis.endpoint, "kclpysample", 2, 300, &sent_ledger);
    let sent = read_ledger(&sent_ledger);
    let venv_bin = python().parent().unwrap().to_owned();
    let path = format!("{}:{}:{}", samples.display(), venv_bin.display(), std::env::var("PATH").unwrap_or_default());
    let mut d = Daemon::start_with_env(Kind::Multilangd, &props, &dir.path().join("daemon.log"), &[("PATH", path)]);
    let (kinesis, ddb) = rt.block_on(daemon::clients(&emus.kinesis.endpoint, &emus.dynamo.endpoint));
    // The sample logs records to stderr without a line end: the daemon (like Java's readLine)
    // logs that line when the child exits. Until then, its own progress report counts them.
    daemon::wait_for(
        "300 records handed to sample_kclpy_app.py",
        Duration::from_secs(90),
        || progress_records(&d.log_text()) == 300,
        || daemon::tail(&d.log_text(), 30),
    );
    assert_eq!(consumer_status(&rt, &kinesis, "kclpysample", "PythonKCLSample").as_deref(), Some("ACTIVE"));
    let status = d.terminate(Duration::from_secs(30));
    let log = d.log_text();
    assert!(status.success(), "SIGTERM ends it cleanly: {status:?}\n{}", daemon::tail(&log, 40));
    let not_logged: Vec<&str> = sent
        .iter()
        .map(|e| e.sequence_number.as_str())
        .filter(|seq| !log.contains(&format!("Sequence Number: {seq},")))
        .collect();
    assert!(not_logged.is_empty(), "{} records not logged by the sample", not_logged.len());
    // The sample checkpoints in shutdownRequested: its checkpoints are the last records.
    let last = last_per_shard(&sent);
    assert_eq!(checkpoints(&rt, &ddb, "PythonKCLSample"), last, "{}", daemon::tail(&log, 40));
    assert!(log.matches("Shutdown has been requested").count() == 2, "{}", daemon::tail(&log, 40));
    // Metrics DETAILED (the default) neither stops processing nor floods the log.
    let daemon_lines: Vec<&str> = log.lines().filter(|l| !l.contains("Sequence Number:")).collect();
    let metric_lines = daemon_lines.iter().filter(|l| l.to_lowercase().contains("metric")).count();
    assert!(metric_lines <= 3, "metrics lines: {metric_lines}\n{}", daemon_lines.join("\n"));
    assert!(daemon_lines.len() < 400, "{} log lines for 300 records", daemon_lines.len());
    // The consumer is shared by every worker of the application: never deregistered.
    assert_eq!(consumer_status(&rt, &kinesis, "kclpysample", "PythonKCLSample").as_deref(), Some("ACTIVE"));
}

/// One user record the KPL producer sent: (shard, Kinesis sequence number, sub-sequence).
type UserRecordKey = (String, String, i64);

/// Produces `rounds` rounds of KPL aggregates into `stream`, one aggregate of `per_aggregate`
/// user records per shard and round, every user record routed to its shard by an explicit
/// hash key (the shard's starting hash key, so the KCL's KPL hash-range check keeps it).
/// Returns every user record's key and payload digest.
async fn produce_kpl(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
    rounds: usize,
    aggregates_per_round: usize,
    per_aggregate: usize,
    pause: Duration,
) -> BTreeMap<UserRecordKey, String> {
    use aws_sdk_kinesis::primitives::Blob;
    use aws_sdk_kinesis::types::PutRecordsRequestEntry;
    use multilangd::stream::kpl::test_encoder::aggregate;
    use sha2::{Digest, Sha256};

    let shards = kinesis.list_shards().stream_name(stream).send().await.unwrap();
    let starts: Vec<String> =
        shards.shards().iter().map(|s| s.hash_key_range().unwrap().starting_hash_key().to_owned()).collect();
    let mut sent = BTreeMap::new();
    for round in 0..rounds {
        let mut entries = Vec::new();
        let mut payloads = Vec::new();
        for (shard, start) in starts.iter().enumerate() {
            for a in 0..aggregates_per_round {
                let data: Vec<Vec<u8>> = (0..per_aggregate)
                    .map(|i| {
                        format!("round {round} shard {shard} aggregate {a} user record {i} {:0>60}", i).into_bytes()
                    })
                    .collect();
                let records: Vec<(u64, Option<u64>, &[u8])> = data.iter().map(|d| (0, Some(0), d.as_slice())).collect();
                let blob = aggregate(&[&format!("pk-{shard}")], &[start], &records);
                entries.push(
                    PutRecordsRequestEntry::builder()
                        .data(Blob::new(blob))
                        .partition_key(format!("pk-{shard}"))
                        .explicit_hash_key(start)
                        .build()
                        .unwrap(),
                );
                payloads.push(data);
            }
        }
        let out = kinesis.put_records().stream_name(stream).set_records(Some(entries)).send().await.unwrap();
        assert_eq!(out.failed_record_count(), Some(0));
        for (result, data) in out.records().iter().zip(payloads) {
            let (shard, seq) = (result.shard_id().unwrap().to_owned(), result.sequence_number().unwrap().to_owned());
            for (i, d) in data.iter().enumerate() {
                let digest: String = Sha256::digest(d).iter().map(|b| format!("{b:02x}")).collect();
                sent.insert((shard.clone(), seq.clone(), i64::try_from(i).unwrap()), digest);
            }
        }
        tokio::time::sleep(pause).await;
    }
    sent
}

fn user_keys(entries: &[LedgerEntry]) -> BTreeSet<UserRecordKey> {
    entries
        .iter()
        .map(|e| (e.shard_id.clone(), e.sequence_number.clone(), e.sub_sequence_number.unwrap_or(0)))
        .collect()
}

/// (sequence number, sub-sequence) of `a` > that of `b` (numeric sequence order).
fn after(a: (&str, i64), b: (&str, i64)) -> bool {
    seq_gt(a.0, b.0) || (a.0 == b.0 && a.1 > b.1)
}

/// `leaseKey` → (checkpoint, checkpointSubSequenceNumber).
fn sub_checkpoints(
    rt: &tokio::runtime::Runtime,
    ddb: &aws_sdk_dynamodb::Client,
    table: &str,
) -> BTreeMap<String, (String, i64)> {
    rt.block_on(daemon::items(ddb, table))
        .into_iter()
        .filter_map(|item| {
            let key = item.get("leaseKey")?.as_s().ok()?.clone();
            let cp = item.get("checkpoint")?.as_s().ok()?.clone();
            let sub = item.get("checkpointSubSequenceNumber").and_then(|v| v.as_n().ok()).and_then(|n| n.parse().ok());
            Some((key, (cp, sub.unwrap_or(0))))
        })
        .collect()
}

/// FANOUT, 4 shards × 20,000 user records (KPL aggregates of 250, produced in rounds while the
/// daemon runs: kinesis-local's PutRecords is too slow for 80,000 plain records in a test):
/// a worker is killed with kill -9 mid-stream, a second one resumes after each checkpoint —
/// inside an aggregate (AT_SEQUENCE_NUMBER + sub-sequence) — with no loss and no redelivery at
/// or below a checkpoint, ends with checkpoints at every shard's last user record, and stops
/// on SIGTERM with `shutdownRequested` for every child and exit 0.
#[test]
fn four_shards_20k_each_kill_9_restart_and_graceful_stop() {
    const ROUNDS: usize = 16;
    const AGGREGATES: usize = 5;
    const PER_AGGREGATE: usize = 250; // 16 × 5 × 250 = 20,000 user records per shard
    let emus = shared();
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let (kinesis_endpoint, dynamo_endpoint) = (emus.kinesis.endpoint.clone(), emus.dynamo.endpoint.clone());
    let (kinesis, ddb) = rt.block_on(daemon::clients(&kinesis_endpoint, &dynamo_endpoint));
    rt.block_on(async {
        kinesis.create_stream().stream_name("bulk").shard_count(4).send().await.unwrap();
        while kinesis
            .describe_stream_summary()
            .stream_name("bulk")
            .send()
            .await
            .unwrap()
            .stream_description_summary()
            .unwrap()
            .stream_status()
            .as_str()
            != "ACTIVE"
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    // The producer runs on its own runtime thread with its own client (a pooled connection is
    // driven by the runtime that opened it), a round every 400 ms.
    let producer = std::thread::spawn({
        let (kinesis_endpoint, dynamo_endpoint) = (kinesis_endpoint.clone(), dynamo_endpoint.clone());
        move || {
            runtime().block_on(async {
                let (kinesis, _) = daemon::clients(&kinesis_endpoint, &dynamo_endpoint).await;
                produce_kpl(&kinesis, "bulk", ROUNDS, AGGREGATES, PER_AGGREGATE, Duration::from_millis(400)).await
            })
        }
    });

    let first_ledger = dir.path().join("first.jsonl");
    let slow = Processor::PythonV3.executable_name(
        &first_ledger,
        None,
        &["--process-delay-ms", "300", "--checkpoint-every", "333"],
    );
    let props = |executable: &str, name: &str| {
        fanout_props("bulk-app", "bulk", executable, &kinesis_endpoint, &dynamo_endpoint)
            .set("workerId", "worker-a")
            .write(&dir.path().join(name))
    };
    let mut first = Daemon::start(Kind::Multilangd, &props(&slow, "a.properties"), &dir.path().join("a.log"));
    daemon::wait_for(
        "checkpoints on every shard",
        Duration::from_secs(120),
        || {
            let cps = checkpoints(&rt, &ddb, "bulk-app");
            cps.len() == 4 && cps.values().all(|cp| cp.bytes().all(|c| c.is_ascii_digit()))
        },
        || daemon::tail(&first.log_text(), 30),
    );
    first.kill9();
    let at_kill = sub_checkpoints(&rt, &ddb, "bulk-app");

    let second_ledger = dir.path().join("second.jsonl");
    let events = dir.path().join("events.jsonl");
    let fast = Processor::PythonV3.executable_name(&second_ledger, Some(&events), &["--checkpoint-every", "2000"]);
    let mut second = Daemon::start(Kind::Multilangd, &props(&fast, "b.properties"), &dir.path().join("b.log"));
    let sent = producer.join().unwrap();
    assert_eq!(sent.len(), 4 * ROUNDS * AGGREGATES * PER_AGGREGATE);
    let mut last: BTreeMap<String, (String, i64)> = BTreeMap::new();
    for (shard, seq, sub) in sent.keys() {
        let slot = last.entry(shard.clone()).or_insert_with(|| (seq.clone(), *sub));
        if after((seq, *sub), (&slot.0, slot.1)) {
            *slot = (seq.clone(), *sub);
        }
    }
    let expected: BTreeSet<UserRecordKey> = sent.keys().cloned().collect();
    daemon::wait_for(
        "every user record delivered",
        Duration::from_secs(180),
        || {
            let mut seen = user_keys(&read_ledger(&first_ledger));
            seen.extend(user_keys(&read_ledger(&second_ledger)));
            expected.is_subset(&seen)
        },
        || daemon::tail(&second.log_text(), 30),
    );
    let status = second.terminate(Duration::from_secs(60));
    let log = second.log_text();
    assert!(status.success(), "graceful stop exits 0: {status:?}\n{}", daemon::tail(&log, 40));
    assert_eq!(sub_checkpoints(&rt, &ddb, "bulk-app"), last, "checkpoints at the last user records");
    let shutdowns =
        std::fs::read_to_string(&events).unwrap().lines().filter(|l| l.contains("shutdown_requested")).count();
    assert_eq!(shutdowns, 4, "every child got shutdownRequested");

    let first_seen = read_ledger(&first_ledger);
    let second_seen = read_ledger(&second_ledger);
    assert!(user_keys(&first_seen).len() < expected.len(), "killed mid-stream");
    for e in first_seen.iter().chain(&second_seen) {
        let key = (e.shard_id.clone(), e.sequence_number.clone(), e.sub_sequence_number.unwrap_or(0));
        assert_eq!(sent.get(&key), Some(&e.sha256), "{key:?}: unknown record or payload changed");
    }
    for (shard, (cp, cp_sub)) in &at_kill {
        let redelivered: BTreeSet<(String, i64)> = second_seen
            .iter()
            .filter(|e| &e.shard_id == shard)
            .map(|e| (e.sequence_number.clone(), e.sub_sequence_number.unwrap_or(0)))
            .collect();
        for (seq, sub) in &redelivered {
            assert!(
                after((seq, *sub), (cp, *cp_sub)),
                "{shard}: {seq}/{sub} redelivered at/below checkpoint {cp}/{cp_sub}"
            );
        }
        let want: BTreeSet<(String, i64)> = expected
            .iter()
            .filter(|(s, seq, sub)| s == shard && after((seq, *sub), (cp, *cp_sub)))
            .map(|(_, seq, sub)| (seq.clone(), *sub))
            .collect();
        assert_eq!(redelivered, want, "{shard}: exactly the user records after the checkpoint");
    }
    assert_eq!(user_keys(&second_seen).len(), second_seen.len(), "no duplicates within the second run");
}

fn owners(
    rt: &tokio::runtime::Runtime,
    ddb: &aws_sdk_dynamodb::Client,
    table: &str,
) -> BTreeMap<String, Option<String>> {
    rt.block_on(daemon::leases(ddb, table)).into_iter().map(|(k, (owner, _))| (k, owner)).collect()
}

/// Two multilangd workers share one application and one consumer: they balance 4 shards 2/2
/// (the second worker's subscriptions take over from the first's: ResourceInUse is expected
/// and retried), then one is killed with kill -9 and the other takes its shards over.
#[test]
fn two_workers_share_one_consumer_balance_and_take_over() {
    let emus = shared();
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let (kinesis_endpoint, dynamo_endpoint) = (emus.kinesis.endpoint.clone(), emus.dynamo.endpoint.clone());
    let sent_ledger = dir.path().join("sent.jsonl");
    daemon::produce(&kinesis_endpoint, "fleet", 4, 2_000, &sent_ledger);
    let (kinesis, ddb) = rt.block_on(daemon::clients(&kinesis_endpoint, &dynamo_endpoint));
    let ledger = dir.path().join("seen.jsonl");
    let executable = Processor::PythonV3.executable_name(&ledger, None, &["--checkpoint-every", "100"]);
    let worker = |id: &str| -> (PathBuf, PathBuf) {
        let props = fanout_props("fleet-app", "fleet", &executable, &kinesis_endpoint, &dynamo_endpoint)
            .set("workerId", id)
            .set("failoverTimeMillis", 4000)
            .write(&dir.path().join(format!("{id}.properties")));
        (props, dir.path().join(format!("{id}.log")))
    };
    let (a_props, a_log) = worker("worker-a");
    let (b_props, b_log) = worker("worker-b");
    let mut a = Daemon::start(Kind::Multilangd, &a_props, &a_log);
    daemon::wait_for(
        "worker-a holds every shard",
        Duration::from_secs(60),
        || owners(&rt, &ddb, "fleet-app").values().filter(|o| o.as_deref() == Some("worker-a")).count() == 4,
        || daemon::tail(&a.log_text(), 30),
    );
    let mut b = Daemon::start(Kind::Multilangd, &b_props, &b_log);
    let count = |who: &str| owners(&rt, &ddb, "fleet-app").values().filter(|o| o.as_deref() == Some(who)).count();
    daemon::wait_for(
        "a 2/2 balance",
        Duration::from_secs(90),
        || count("worker-a") == 2 && count("worker-b") == 2,
        || format!("{:?}\n{}", owners(&rt, &ddb, "fleet-app"), daemon::tail(&b.log_text(), 30)),
    );
    // New records after the balance reach worker-b's subscriptions.
    let more_ledger = dir.path().join("more.jsonl");
    daemon::produce_seeded(&kinesis_endpoint, "fleet", 4, 400, 2, &more_ledger);
    let b_shards: BTreeSet<String> = owners(&rt, &ddb, "fleet-app")
        .into_iter()
        .filter(|(_, o)| o.as_deref() == Some("worker-b"))
        .map(|(k, _)| k)
        .collect();
    let more = read_ledger(&more_ledger);
    daemon::wait_for(
        "worker-b's shards deliver the new records",
        Duration::from_secs(60),
        || {
            let seen = keys(&read_ledger(&ledger));
            more.iter()
                .filter(|e| b_shards.contains(&e.shard_id))
                .all(|e| seen.contains(&(e.shard_id.clone(), e.sequence_number.clone())))
        },
        || daemon::tail(&b.log_text(), 40),
    );
    a.kill9();
    daemon::wait_for(
        "worker-b takes over every shard",
        Duration::from_secs(60),
        || count("worker-b") == 4,
        || format!("{:?}\n{}", owners(&rt, &ddb, "fleet-app"), daemon::tail(&b.log_text(), 30)),
    );
    let last_ledger = dir.path().join("last.jsonl");
    daemon::produce_seeded(&kinesis_endpoint, "fleet", 4, 400, 3, &last_ledger);
    let mut sent = read_ledger(&sent_ledger);
    sent.extend(read_ledger(&more_ledger));
    sent.extend(read_ledger(&last_ledger));
    daemon::wait_for(
        "every record delivered",
        Duration::from_secs(90),
        || keys(&sent).is_subset(&keys(&read_ledger(&ledger))),
        || daemon::tail(&b.log_text(), 30),
    );
    assert_all_delivered(&sent, &read_ledger(&ledger));
    assert!(b.terminate(Duration::from_secs(30)).success(), "{}", daemon::tail(&b.log_text(), 30));
    // One consumer, named after the application, served both workers.
    let consumers = rt.block_on(kinesis.list_stream_consumers().stream_arn(stream_arn("fleet")).send()).unwrap();
    let names: Vec<&str> = consumers.consumers().iter().map(|c| c.consumer_name()).collect();
    assert_eq!(names, vec!["fleet-app"]);
    let b_text = b.log_text();
    assert!(!b_text.contains(" ERROR "), "{}", daemon::tail(&b_text, 40));
}

fn openssl(args: &[&str], dir: &Path) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("run openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A private CA and a server certificate it signed for `localhost` and 127.0.0.1 (as SANs:
/// rustls never falls back to the CN), written as kinesis-local's `server.json`. Returns
/// (server.json, CA certificate PEM).
fn test_certificate(dir: &Path) -> (PathBuf, PathBuf) {
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=multilangd test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
        dir,
    );
    openssl(
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
        dir,
    );
    std::fs::write(dir.join("san.ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
        .unwrap();
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "san.ext",
            "-out",
            "server.pem",
        ],
        dir,
    );
    let json = serde_json::json!({"server": {
        "key": std::fs::read_to_string(dir.join("server.key")).unwrap(),
        "cert": std::fs::read_to_string(dir.join("server.pem")).unwrap(),
    }});
    let server_json = dir.join("server.json");
    std::fs::write(&server_json, json.to_string()).unwrap();
    (server_json, dir.join("ca.pem"))
}

/// Real Kinesis serves SubscribeToShard over HTTP/2 only: multilangd's stock client negotiates
/// h2 by ALPN with kinesis-local's TLS port (certificate trusted through SSL_CERT_FILE, as a
/// user would add a private CA) and consumes over it. The connection's protocol is checked
/// with the peer's ALPN answer, read by `openssl s_client`.
#[test]
fn http2_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (server_json, cert) = test_certificate(dir.path());
    let (kinesis_local, tls_port) = emulators::start_kinesis_local_tls(&server_json);
    let dynamo = emulators::start_dynalite();
    let alpn = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{tls_port}"), "-alpn", "h2", "-servername", "localhost"])
        .arg("-CAfile")
        .arg(&cert)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let alpn = String::from_utf8_lossy(&alpn.stdout).to_string();
    assert!(alpn.contains("ALPN protocol: h2"), "kinesis-local's TLS port does not offer h2:\n{alpn}");
    assert!(alpn.contains("Verify return code: 0 (ok)"), "{alpn}");

    let sent_ledger = dir.path().join("sent.jsonl");
    daemon::produce(&kinesis_local.endpoint, "tls", 2, 200, &sent_ledger);
    let sent = read_ledger(&sent_ledger);
    let ledger = dir.path().join("seen.jsonl");
    let https = format!("https://localhost:{tls_port}");
    let props = fanout_props(
        "tls-app",
        "tls",
        &Processor::PythonV3.executable_name(&ledger, None, &[]),
        &https,
        &dynamo.endpoint,
    )
    .write(&dir.path().join("app.properties"));
    let mut d = Daemon::start_with_env(
        Kind::Multilangd,
        &props,
        &dir.path().join("daemon.log"),
        &[("SSL_CERT_FILE", cert.display().to_string()), ("RUST_LOG", "info,h2=debug".to_owned())],
    );
    daemon::wait_for(
        "every record over HTTP/2",
        Duration::from_secs(60),
        || keys(&sent).is_subset(&keys(&read_ledger(&ledger))),
        || daemon::tail(&d.log_text(), 30),
    );
    assert!(d.terminate(Duration::from_secs(30)).success());
    let log = d.log_text();
    // hyper's h2 layer logs its frames at debug: the subscription data came as HTTP/2 frames.
    assert!(log.contains("h2::"), "no HTTP/2 activity in the log:\n{}", daemon::tail(&log, 30));
    assert_all_delivered(&sent, &read_ledger(&ledger));
    drop(kinesis_local);
}

/// A stalled record processor must not stall the other shards, even when every subscription
/// shares one HTTP/2 connection (kinesis-local's TLS port, ALPN h2; 4 shards are below
/// `subscriptions_per_connection`, so one connection): three children stall in their first
/// batch (until the test releases them) while ~2.4 MB more arrive on each of their shards — more than hyper's 2 MiB
/// stream window each, and together more than its 5 MiB connection window, so a reader that
/// left their streams unread would stall the fourth shard's stream too. multilangd keeps
/// draining into the bounded per-shard queues (and pauses a subscription whose queue is full),
/// so the fourth shard's records are delivered while the others are still stalled; afterwards
/// the stalled shards catch up with no loss.
#[test]
fn stalled_children_do_not_stall_other_shards_on_one_http2_connection() {
    use aws_sdk_kinesis::primitives::Blob;
    use aws_sdk_kinesis::types::PutRecordsRequestEntry;

    const STALL_MS: u64 = 150_000;
    let dir = tempfile::tempdir().unwrap();
    let (server_json, cert) = test_certificate(dir.path());
    let (kinesis_local, tls_port) = emulators::start_kinesis_local_tls(&server_json);
    let emus = shared();
    let rt = runtime();
    let (kinesis, _) = rt.block_on(daemon::clients(&kinesis_local.endpoint, &emus.dynamo.endpoint));
    // One small record per shard: each child's first batch (the stalled ones stall in it).
    let first_ledger = dir.path().join("first.jsonl");
    daemon::produce(&kinesis_local.endpoint, "stall", 4, 40, &first_ledger);
    let shards: Vec<(String, String)> = rt
        .block_on(kinesis.list_shards().stream_name("stall").send())
        .unwrap()
        .shards()
        .iter()
        .map(|s| (s.shard_id().to_owned(), s.hash_key_range().unwrap().starting_hash_key().to_owned()))
        .collect();
    let (stalled, fast): (Vec<_>, Vec<_>) = shards.iter().cloned().partition(|(id, _)| !id.ends_with('3'));
    let stalled_ids: Vec<String> = stalled.iter().map(|(id, _)| id.clone()).collect();

    let ledger = dir.path().join("seen.jsonl");
    let events = dir.path().join("events.jsonl");
    let stall = STALL_MS.to_string();
    let ids = stalled_ids.join(",");
    let release = dir.path().join("release");
    let release_arg = release.display().to_string();
    let executable = Processor::PythonV3.executable_name(
        &ledger,
        Some(&events),
        &["--stall-first-batch-ms", &stall, "--stall-shards", &ids, "--stall-release-file", &release_arg],
    );
    let props = fanout_props(
        "stall-app",
        "stall",
        &executable,
        &format!("https://localhost:{tls_port}"),
        &emus.dynamo.endpoint,
    )
    .write(&dir.path().join("app.properties"));
    let mut d = Daemon::start_with_env(
        Kind::Multilangd,
        &props,
        &dir.path().join("daemon.log"),
        &[("SSL_CERT_FILE", cert.display().to_string())],
    );
    let stall_events = || {
        std::fs::read_to_string(&events)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(r#""event":"stall""#))
            .count()
    };
    daemon::wait_for(
        "the three stalled children to be in their first batch",
        Duration::from_secs(60),
        || stall_events() == 3,
        || daemon::tail(&d.log_text(), 30),
    );
    // The stalled children checkpoint only after their stall: a checkpoint event of theirs
    // means the stall is over.
    let stalled_checkpoints = || {
        std::fs::read_to_string(&events)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(r#""event":"checkpoint""#) && stalled_ids.iter().any(|id| l.contains(id.as_str())))
            .count()
    };

    let stall_started = std::time::Instant::now();
    // While they stall: 5 rounds of 8 × 60 KB records to each stalled shard (2.4 MB each) and
    // 4 small records to the fast shard, then 10 more small ones.
    let mut sent_fast: BTreeSet<(String, String)> = BTreeSet::new();
    let mut sent_stalled: BTreeSet<(String, String)> = BTreeSet::new();
    let big = vec![b'x'; 60_000];
    let fast_entry = |name: String| {
        PutRecordsRequestEntry::builder()
            .data(Blob::new(name.clone().into_bytes()))
            .partition_key(name)
            .explicit_hash_key(&fast[0].1)
            .build()
            .unwrap()
    };
    rt.block_on(async {
        let mut rounds: Vec<Vec<PutRecordsRequestEntry>> = Vec::new();
        for round in 0..5 {
            let mut entries = Vec::new();
            for (_, hash) in &stalled {
                for i in 0..8 {
                    entries.push(
                        PutRecordsRequestEntry::builder()
                            .data(Blob::new(big.clone()))
                            .partition_key(format!("big-{round}-{i}"))
                            .explicit_hash_key(hash)
                            .build()
                            .unwrap(),
                    );
                }
            }
            entries.extend((0..4).map(|i| fast_entry(format!("fast-{round}-{i}"))));
            rounds.push(entries);
        }
        rounds.push((0..10).map(|i| fast_entry(format!("fast-last-{i}"))).collect());
        for entries in rounds {
            let out = kinesis.put_records().stream_name("stall").set_records(Some(entries)).send().await.unwrap();
            assert_eq!(out.failed_record_count(), Some(0));
            for r in out.records() {
                let key = (r.shard_id().unwrap().to_owned(), r.sequence_number().unwrap().to_owned());
                if key.0 == fast[0].0 {
                    sent_fast.insert(key);
                } else {
                    sent_stalled.insert(key);
                }
            }
        }
    });
    let produced_in = stall_started.elapsed();
    assert_eq!((sent_fast.len(), sent_stalled.len()), (30, 3 * 40));
    daemon::wait_for(
        "the fast shard's records, while the other three children stall",
        Duration::from_secs(30),
        || sent_fast.is_subset(&keys(&read_ledger(&ledger))),
        || daemon::tail(&d.log_text(), 30),
    );
    assert_eq!(
        stalled_checkpoints(),
        0,
        "the fast shard's records arrived only after the stall ended: they were held up\n{}",
        daemon::tail(&d.log_text(), 30)
    );
    let fast_delivered_in = stall_started.elapsed();
    std::fs::write(&release, b"").unwrap();
    let mut all = keys(&read_ledger(&first_ledger));
    all.extend(sent_fast);
    all.extend(sent_stalled);
    daemon::wait_for(
        "every record, after the stall",
        Duration::from_secs(90),
        || all.is_subset(&keys(&read_ledger(&ledger))),
        || daemon::tail(&d.log_text(), 30),
    );
    assert!(stalled_checkpoints() > 0);
    eprintln!(
        "stalled children: 7.2 MB put for them in {produced_in:?}; the fast shard's 30 records delivered \
         {fast_delivered_in:?} into the stall"
    );
    assert!(d.terminate(Duration::from_secs(30)).success(), "{}", daemon::tail(&d.log_text(), 30));
    drop(kinesis_local);
}
