//! Operations end to end, with the real binary on the emulators: the HTTP endpoints
//! (`/healthz`, `/readyz`, `/metrics`, `/status`, `multilangd status`), systemd notify on a
//! real datagram socket, the CloudWatch publisher against moto server, and the shipped
//! systemd unit (`systemd-analyze verify`).

mod support;

use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use multilangd::config::Config;
use multilangd::ops::cloudwatch::{self, CloudWatchClient, CloudWatchSink, Dimensions, Level, Publisher};
use multilangd::telemetry::{Event, LeaseOperation, ProcessorAction, Recorder, Service};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use support::daemon::{wait_for, Daemon, Props};
use support::emulators::{free_port, start_dynalite, start_kinesis_local, start_moto};

fn http_get(address: SocketAddr, path: &str) -> Result<(u16, String), String> {
    support::runtime().block_on(multilangd::ops::http::get(address, path, Duration::from_secs(5)))
}

/// `--http-address` wins over `multilangd.httpAddress`; `/healthz`, `/metrics` (process
/// metrics, worker info) and `/status` answer while the daemon runs; `multilangd status`
/// prints the page; the server is gone after the daemon stops.
#[test]
fn http_endpoints_of_the_real_binary() {
    let dir = tempfile::tempdir().expect("temp dir");
    let kinesis = start_kinesis_local();
    let dynamodb = start_dynalite();
    let stream = "ops-http";
    let ledger = dir.path().join("produced.jsonl");
    support::daemon::produce(&kinesis.endpoint, stream, 2, 50, &ledger);
    let seen = dir.path().join("seen.jsonl");
    let executable = support::sample_apps::Processor::PythonV3.executable_name(&seen, None, &[]);
    let file_port = free_port();
    let cli_port = free_port();
    // CloudWatch unreachable (nothing listens there): processing goes on, one warning.
    let closed = free_port();
    let props = Props::local("ops-http-app", stream, &executable, &kinesis.endpoint, &dynamodb.endpoint)
        .set("multilangd.httpAddress", file_port)
        .set("metricsLevel", "DETAILED")
        .set("metricsBufferTimeMillis", 300)
        .set("cloudWatchClient.endpointOverride", format!("http://127.0.0.1:{closed}"))
        .write(&dir.path().join("app.properties"));
    let cli = SocketAddr::from(([127, 0, 0, 1], cli_port));
    let cli_text = cli.to_string();
    let mut daemon =
        Daemon::start_multilangd_with(&props, &dir.path().join("daemon.log"), &["--http-address", &cli_text], &[]);
    wait_for("the HTTP server", Duration::from_secs(20), || http_get(cli, "/healthz").is_ok(), || daemon.log_text());
    let (code, body) = http_get(cli, "/healthz").expect("healthz");
    assert_eq!((code, body.as_str()), (200, "ok\n"));
    assert!(
        http_get(SocketAddr::from(([127, 0, 0, 1], file_port)), "/healthz").is_err(),
        "the command line's address replaces the file's"
    );
    let (code, metrics) = http_get(cli, "/metrics").expect("metrics");
    assert_eq!(code, 200);
    for needle in [
        "process_resident_memory_bytes ",
        "process_cpu_seconds_total ",
        "multilangd_worker_info{worker_id=",
        "application=\"ops-http-app\"",
        "multilangd_lease_losses_total 0",
        "# EOF",
    ] {
        assert!(metrics.contains(needle), "no `{needle}` in\n{metrics}");
    }
    // Ready once running; the per-shard record counters match the processors' ledger.
    wait_for(
        "all 50 records in the ledger",
        Duration::from_secs(60),
        || support::sample_apps::read_ledger(&seen).len() >= 50,
        || daemon.log_text(),
    );
    wait_for(
        "/readyz 200",
        Duration::from_secs(20),
        || matches!(http_get(cli, "/readyz"), Ok((200, _))),
        || daemon.log_text(),
    );
    let counted = || {
        let (_, metrics) = http_get(cli, "/metrics").expect("metrics");
        metrics
            .lines()
            .filter(|l| l.starts_with("multilangd_shard_records_processed_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum::<u64>()
    };
    wait_for(
        "50 records counted on /metrics",
        Duration::from_secs(10),
        || counted() == 50,
        || format!("{}", counted()),
    );
    let ledger_len = support::sample_apps::read_ledger(&seen).len() as u64;
    assert_eq!(counted(), ledger_len, "/metrics vs the processors' ledger");
    let (_, metrics) = http_get(cli, "/metrics").expect("metrics");
    for needle in ["multilangd_leases_held 2", "multilangd_child_starts_total 2", "multilangd_worker_ready 1"] {
        assert!(metrics.contains(needle), "no `{needle}` in\n{metrics}");
    }
    // Every SDK call is timed by the interceptor: lease renewals (UpdateItem), the taker's Scan,
    // shard listing and reads all show up by service and operation.
    for (service, operation) in
        [("dynamodb", "UpdateItem"), ("dynamodb", "Scan"), ("kinesis", "ListShards"), ("kinesis", "GetRecords")]
    {
        let needle =
            format!("multilangd_aws_call_duration_seconds_count{{service=\"{service}\",operation=\"{operation}\"}}");
        assert!(metrics.contains(&needle), "no `{needle}` in\n{metrics}");
    }
    let failures = || {
        let (_, metrics) = http_get(cli, "/metrics").expect("metrics");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("multilangd_cloudwatch_put_failures_total ")?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    wait_for("3 failed PutMetricData", Duration::from_secs(20), || failures() >= 3, || daemon.log_text());
    let warnings = daemon.log_text().matches("CloudWatch: cannot publish metrics").count();
    assert_eq!(warnings, 1, "one rate-limited warning, not one per failure:\n{}", daemon.log_text());
    let (code, status) = http_get(cli, "/status").expect("status");
    assert_eq!(code, 200);
    assert!(status.contains("application ops-http-app"), "{status}");

    let out = Command::new(support::multilangd_bin())
        .args(["status", "--http-address", &cli.to_string()])
        .arg(&props)
        .output()
        .expect("run multilangd status");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("application ops-http-app"), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "ready: {:?}", out.status);

    let status = daemon.terminate(Duration::from_secs(30));
    assert!(status.success(), "{status:?}\n{}", daemon.log_text());
    assert!(http_get(cli, "/healthz").is_err(), "the server stops with the daemon");

    // Without an address, `status` is a configuration error that says what to do.
    let bare = Props::local("ops-http-app", stream, &executable, &kinesis.endpoint, &dynamodb.endpoint)
        .write(&dir.path().join("bare.properties"));
    let out = Command::new(support::multilangd_bin()).arg("status").arg(&bare).output().expect("run");
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("multilangd.httpAddress"));
}

/// The notify protocol with the real binary: WATCHDOG=1 pings at half WATCHDOG_USEC, STATUS
/// lines, and STOPPING=1 on SIGTERM; nothing when WATCHDOG_PID names another process.
#[test]
fn systemd_notify_on_a_real_socket() {
    let dir = tempfile::tempdir().expect("temp dir");
    let kinesis = start_kinesis_local();
    let dynamodb = start_dynalite();
    let stream = "ops-notify";
    support::daemon::produce(&kinesis.endpoint, stream, 1, 10, &dir.path().join("produced.jsonl"));
    let seen = dir.path().join("seen.jsonl");
    let executable = support::sample_apps::Processor::PythonV3.executable_name(&seen, None, &[]);
    let props = Props::local("ops-notify-app", stream, &executable, &kinesis.endpoint, &dynamodb.endpoint)
        .write(&dir.path().join("app.properties"));
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind the notify socket");
    socket.set_read_timeout(Some(Duration::from_millis(500))).expect("timeout");
    let socket_env = socket_path.to_str().expect("utf-8 path").to_owned();
    let mut daemon = Daemon::start_multilangd_with(
        &props,
        &dir.path().join("daemon.log"),
        &[],
        &[("NOTIFY_SOCKET", socket_env.as_str()), ("WATCHDOG_USEC", "1000000")],
    );
    let mut messages: Vec<String> = Vec::new();
    let receive_until = |what: &str, within: Duration, messages: &mut Vec<String>| {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            let mut buf = [0_u8; 4096];
            if let Ok(n) = socket.recv(&mut buf) {
                let m = String::from_utf8_lossy(&buf[..n]).into_owned();
                let done = m.contains(what);
                messages.push(m);
                if done {
                    return;
                }
            }
        }
        panic!("no `{what}` within {within:?}; got {messages:?}");
    };
    receive_until("READY=1", Duration::from_secs(30), &mut messages);
    receive_until("WATCHDOG=1", Duration::from_secs(10), &mut messages);
    let first_ping = Instant::now();
    receive_until("WATCHDOG=1", Duration::from_secs(3), &mut messages);
    let gap = first_ping.elapsed();
    assert!(gap >= Duration::from_millis(200) && gap <= Duration::from_millis(1500), "ping gap {gap:?}");
    assert!(messages.iter().any(|m| m.starts_with("STATUS=")), "{messages:?}");
    kill(Pid::from_raw(daemon.pid()), Signal::SIGTERM).expect("SIGTERM");
    receive_until("STOPPING=1", Duration::from_secs(10), &mut messages);
    let status = daemon.wait(Duration::from_secs(30));
    assert!(status.success(), "{status:?}\n{}", daemon.log_text());
}

/// The publisher's `PutMetricData` reaches a real CloudWatch API (moto server) through
/// `cloudWatchClient.endpointOverride`, with the KCL's namespace, names and dimensions, and
/// the values folded into statistic sets.
#[test]
fn cloudwatch_publisher_reaches_moto_through_the_endpoint_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let moto = start_moto();
    // Dummy keys from a file: this test process has no AWS_* variables, and the default
    // chain would end at instance metadata (not loopback).
    let credentials = dir.path().join("credentials");
    std::fs::write(&credentials, "[default]\naws_access_key_id = x\naws_secret_access_key = x\n").expect("write");
    let provider = format!("com.amazonaws.auth.profile.ProfileCredentialsProvider|{}|default", credentials.display());
    let file = Props::local("ops-cw-app", "s", "/bin/cat", "http://127.0.0.1:9", "http://127.0.0.1:9")
        .set("AWSCredentialsProviderCloudWatch", provider)
        .set("metricsLevel", "DETAILED")
        .set("cloudWatchClient.endpointOverride", &moto.endpoint)
        .set("cloudWatchClient.region", "eu-west-1")
        .write(&dir.path().join("app.properties"));
    let config = Config::load(&file).expect("valid").config;
    let runtime = support::runtime();
    runtime.block_on(async {
        let client = cloudwatch::client(&config).await.expect("client");
        let sink = Arc::new(CloudWatchSink::new(
            Level::Detailed,
            Dimensions::from_list(&config.metrics_enabled_dimensions),
            "w-1",
            10_000,
        ));
        let recorder = Recorder::new(vec![sink.clone()]);
        let d = Duration::from_millis(12);
        for records in [10, 20] {
            recorder.record(&Event::RecordsProcessed {
                shard_id: "shardId-000000000000",
                records,
                bytes: records * 100,
                millis_behind_latest: Some(0),
                duration: d,
            });
        }
        recorder.record(&Event::LeaseCall {
            op: LeaseOperation::Renew,
            shard_id: Some("shardId-000000000000"),
            duration: d,
            success: true,
        });
        recorder.record(&Event::AwsCall {
            service: Service::Kinesis,
            shard_id: Some("shardId-000000000000"),
            operation: "GetRecords",
            duration: d,
            error: None,
        });
        recorder.record(&Event::ProcessorAction {
            shard_id: "shardId-000000000000",
            action: ProcessorAction::Initialize,
            duration: d,
            success: true,
        });
        let mut publisher = Publisher::new(
            sink.clone(),
            Arc::new(CloudWatchClient::new(client)),
            config.application_name.clone(),
            Duration::from_secs(1),
        );
        publisher.flush().await;
        let counts = sink.stats().snapshot();
        assert_eq!(counts.failures, 0, "{counts:?}: {:?}", sink.stats().last_error());
        assert!(counts.published >= 10, "{counts:?}");
    });
    let listed = list_cloudwatch(&moto.endpoint, "ops-cw-app", "eu-west-1");
    let shapes = listed["metrics"].as_array().expect("metrics").clone();
    let has = |name: &str, dims: &[&str]| {
        shapes.iter().any(|m| {
            m[0] == name
                && m[1].as_array().is_some_and(|d| d.iter().map(|v| v.as_str().unwrap_or("")).eq(dims.iter().copied()))
        })
    };
    assert!(has("RecordsProcessed", &["Operation", "ShardId"]), "{listed}");
    assert!(has("MillisBehindLatest", &["Operation"]), "ApplicationTracker: {listed}");
    assert!(has("RenewLease.Time", &["Operation", "WorkerIdentifier"]), "{listed}");
    assert!(has("KinesisDataFetcher.getRecords.Success", &["Operation", "ShardId"]), "{listed}");
    assert!(has("RecordProcessor.initialize.Time", &["Operation"]), "{listed}");
    let detail = listed["detail"].as_array().expect("detail");
    assert!(
        detail.iter().any(|m| m[0] == "RecordsProcessed" && m[1].to_string().contains("ProcessTask")),
        "Operation=ProcessTask: {listed}"
    );
    let records = &listed["datapoints"]["RecordsProcessed"];
    assert_eq!(records["sum"].as_f64(), Some(30.0), "10 + 20 records in one statistic set: {listed}");
}

/// What moto holds for `namespace` (scripts/testbed/cloudwatch_metrics.py).
fn list_cloudwatch(endpoint: &str, namespace: &str, region: &str) -> serde_json::Value {
    let out = Command::new(support::python())
        .arg(support::repo_dir().join("scripts/testbed/cloudwatch_metrics.py"))
        .args(["--endpoint", endpoint, "--namespace", namespace, "--region", region, "--values"])
        .output()
        .expect("run cloudwatch_metrics.py");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("json")
}

/// `dist/systemd/multilangd.service` passes `systemd-analyze verify` (Debian's systemd
/// package), with the binary path pointed at the built binary.
#[test]
fn the_systemd_unit_verifies() {
    let analyze = Path::new("/usr/bin/systemd-analyze");
    assert!(analyze.is_file(), "systemd-analyze missing: apt-get install systemd");
    let unit = std::fs::read_to_string(support::repo_dir().join("dist/systemd/multilangd.service")).expect("unit");
    for needle in [
        "Type=notify",
        "WatchdogSec=",
        "KillMode=mixed",
        "TimeoutStopSec=45",
        "ExecStartPre=/usr/bin/multilangd validate",
    ] {
        assert!(unit.contains(needle), "unit lacks {needle}");
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let bin = support::multilangd_bin();
    let path = dir.path().join("multilangd.service");
    std::fs::write(&path, unit.replace("/usr/bin/multilangd", bin.to_str().expect("utf-8"))).expect("write");
    let out = Command::new(analyze).arg("verify").arg(&path).output().expect("run systemd-analyze");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.trim().is_empty(), "systemd-analyze verify: {:?}\n{stderr}", out.status);
}

/// `/readyz` turns 503 within failoverTimeMillis (plus one renewal period) when DynamoDB is
/// frozen (SIGSTOP to dynalite), naming the lease table; 200 again after SIGCONT.
#[test]
fn readyz_follows_the_lease_table() {
    let dir = tempfile::tempdir().expect("temp dir");
    let kinesis = start_kinesis_local();
    let dynamodb = start_dynalite();
    let stream = "ops-ready";
    support::daemon::produce(&kinesis.endpoint, stream, 1, 10, &dir.path().join("produced.jsonl"));
    let seen = dir.path().join("seen.jsonl");
    let executable = support::sample_apps::Processor::PythonV3.executable_name(&seen, None, &[]);
    let port = free_port();
    let failover = Duration::from_millis(3000);
    let props = Props::local("ops-ready-app", stream, &executable, &kinesis.endpoint, &dynamodb.endpoint)
        .set("multilangd.httpAddress", port)
        .set("failoverTimeMillis", failover.as_millis())
        .write(&dir.path().join("app.properties"));
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let mut daemon = Daemon::start(support::daemon::Kind::Multilangd, &props, &dir.path().join("daemon.log"));
    wait_for(
        "/readyz 200",
        Duration::from_secs(40),
        || matches!(http_get(address, "/readyz"), Ok((200, _))),
        || format!("{:?}\n{}", http_get(address, "/readyz"), daemon.log_text()),
    );
    let dynalite = Pid::from_raw(i32::try_from(dynamodb.pid()).expect("pid"));
    kill(dynalite, Signal::SIGSTOP).expect("SIGSTOP dynalite");
    let frozen = Instant::now();
    let mut reason = String::new();
    while frozen.elapsed() < failover * 3 {
        if let Ok((503, body)) = http_get(address, "/readyz") {
            reason = body;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let took = frozen.elapsed();
    kill(dynalite, Signal::SIGCONT).expect("SIGCONT dynalite");
    assert!(!reason.is_empty(), "/readyz stayed 200 for {took:?} with DynamoDB frozen");
    // Renewals every failover/3: the last one may have finished up to that long before the freeze.
    assert!(took <= failover + failover / 3 + Duration::from_millis(1500), "503 after {took:?}");
    assert!(reason.contains("lease table ops-ready-app"), "{reason}");
    assert_eq!(http_get(address, "/healthz").map(|r| r.0), Ok(200), "still live");
    wait_for(
        "/readyz 200 after SIGCONT",
        Duration::from_secs(30),
        || matches!(http_get(address, "/readyz"), Ok((200, _))),
        || format!("{:?}\n{}", http_get(address, "/readyz"), support::daemon::tail(&daemon.log_text(), 30)),
    );
    let status = daemon.terminate(Duration::from_secs(30));
    assert!(status.success(), "{status:?}");
}

/// The reference Java daemon 2.5.8 and multilangd, on the same stream and the same moto
/// CloudWatch (each through `cloudWatchClient.endpointOverride`, default `metricsLevel`
/// DETAILED), publish the same set of (Operation, metric name, dimension names). Allowed
/// differences, documented in docs/metrics.md: `PeriodicShardSyncManager` (the leader's
/// periodic check; each daemon publishes it only once its first check ran) and `ShutdownTask`
/// (published on a graceful shutdown, which multilangd does by default and Java 2.5.8 with
/// its default `shutdownGraceMillis = 0` never does). Both properties files carry a
/// `multilangd.httpAddress` key: the Java daemon ignores `multilangd.` keys, so one file serves
/// both daemons during a migration.
#[test]
fn cloudwatch_metric_set_matches_the_java_daemon() {
    if support::sample_apps::java_jars_dir().is_none() {
        panic!("the KCL 2.5.8 jars are missing from the test bed: run scripts/install-testbed.sh");
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let kinesis = start_kinesis_local();
    let dynamodb = start_dynalite();
    let moto = start_moto();
    let stream = "ops-cw-compare";
    support::daemon::produce(&kinesis.endpoint, stream, 2, 60, &dir.path().join("produced.jsonl"));
    let mut daemons = Vec::new();
    for (kind, app) in [(support::daemon::Kind::Java, "cw-java"), (support::daemon::Kind::Multilangd, "cw-rust")] {
        let seen = dir.path().join(format!("{app}.jsonl"));
        let executable = support::sample_apps::Processor::PythonV3.executable_name(&seen, None, &[]);
        let props = Props::local(app, stream, &executable, &kinesis.endpoint, &dynamodb.endpoint)
            .set("metricsLevel", "DETAILED")
            .set("metricsBufferTimeMillis", 1000)
            .set("cloudWatchClient.endpointOverride", &moto.endpoint)
            .set("workerId", format!("{app}-worker"))
            // One properties file serves both daemons: Java ignores the `multilangd.` keys.
            .set("multilangd.httpAddress", free_port())
            .write(&dir.path().join(format!("{app}.properties")));
        let daemon = Daemon::start(kind, &props, &dir.path().join(format!("{app}.log")));
        daemons.push((app, seen, daemon));
    }
    for (app, seen, daemon) in &daemons {
        wait_for(
            &format!("{app}: 60 records processed"),
            Duration::from_secs(120),
            || support::sample_apps::read_ledger(seen).len() >= 60,
            || support::daemon::tail(&daemon.log_text(), 40),
        );
    }
    // A few publishing windows after the last delivery (checkpoints, renewals, taker rounds).
    std::thread::sleep(Duration::from_secs(6));
    for (_, _, daemon) in &mut daemons {
        let _ = daemon.terminate(Duration::from_secs(40));
    }
    let shapes = |app: &str| -> std::collections::BTreeSet<String> {
        let listed = list_cloudwatch(&moto.endpoint, app, "us-east-1");
        let detail = listed["detail"].as_array().cloned().unwrap_or_default();
        detail
            .iter()
            .map(|m| {
                let dims: Vec<(String, String)> = m[1]
                    .as_array()
                    .map(|d| {
                        d.iter()
                            .map(|p| (p[0].as_str().unwrap_or("").to_owned(), p[1].as_str().unwrap_or("").to_owned()))
                            .collect()
                    })
                    .unwrap_or_default();
                let operation = dims.iter().find(|(k, _)| k == "Operation").map(|(_, v)| v.clone()).unwrap_or_default();
                let mut names: Vec<&str> = dims.iter().map(|(k, _)| k.as_str()).filter(|k| *k != "Operation").collect();
                names.sort_unstable();
                names.insert(0, "Operation");
                format!("{operation} {} {}", m[0].as_str().unwrap_or(""), names.join(","))
            })
            .filter(|s| !s.starts_with("PeriodicShardSyncManager ") && !s.starts_with("ShutdownTask "))
            .collect()
    };
    let java = shapes("cw-java");
    let ours = shapes("cw-rust");
    assert!(java.len() >= 30, "the Java daemon published too little to compare: {java:?}");
    let missing: Vec<&String> = java.difference(&ours).collect();
    let extra: Vec<&String> = ours.difference(&java).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "published by Java only: {missing:?}\npublished by multilangd only: {extra:?}"
    );
}

/// `scripts/package-deb.sh` builds a package with the binary (stripped), the unit, the manual
/// page, the docs and the example properties; `--version` names the commit; `dpkg -i` installs
/// it (into a throwaway root), reinstalls it and purges it.
#[test]
fn the_debian_package_has_the_files() {
    let version = Command::new(support::multilangd_bin()).arg("--version").output().expect("run --version");
    let version = String::from_utf8_lossy(&version.stdout).into_owned();
    assert!(version.starts_with(&format!("multilangd {} (commit ", env!("CARGO_PKG_VERSION"))), "{version}");
    let dir = tempfile::tempdir().expect("temp dir");
    let out = Command::new("bash")
        .arg(support::repo_dir().join("scripts/package-deb.sh"))
        .arg("--binary")
        .arg(support::multilangd_bin())
        .arg("--out")
        .arg(dir.path())
        .arg("--fast")
        .output()
        .expect("run package-deb.sh");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let deb = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let contents = Command::new("dpkg-deb").args(["--contents", &deb]).output().expect("dpkg-deb");
    let listing = String::from_utf8_lossy(&contents.stdout);
    for path in [
        "./usr/bin/multilangd",
        "./lib/systemd/system/multilangd.service",
        "./usr/share/man/man1/multilangd.1.gz",
        "./usr/share/doc/multilangd/examples/multilangd.properties",
        "./usr/share/doc/multilangd/migrating.md",
        "./usr/share/doc/multilangd/copyright",
    ] {
        assert!(listing.lines().any(|l| l.ends_with(path)), "{path} missing from\n{listing}");
    }
    let x = dir.path().join("x");
    let status = Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&x).status().expect("dpkg-deb -x");
    assert!(status.success());
    let file = Command::new("file").arg(x.join("usr/bin/multilangd")).output();
    if let Ok(file) = file {
        let text = String::from_utf8_lossy(&file.stdout);
        assert!(text.contains("stripped") && !text.contains("not stripped"), "{text}");
    }
    let packaged = Command::new(x.join("usr/bin/multilangd")).arg("--version").output().expect("packaged binary runs");
    assert_eq!(String::from_utf8_lossy(&packaged.stdout), version);

    // A real `dpkg -i` into a throwaway root with its own dpkg database, the maintainer scripts
    // run outside a chroot with DPKG_ROOT set (how dpkg installs into another root without
    // privileges). `--force-depends`: that root's database has no libc6 or adduser.
    let root = dir.path().join("root");
    for d in ["var/lib/dpkg/info", "var/lib/dpkg/updates", "etc"] {
        std::fs::create_dir_all(root.join(d)).expect("mkdir");
    }
    for (file, text) in [
        ("var/lib/dpkg/status", ""),
        ("var/lib/dpkg/available", ""),
        ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
        ("etc/group", "root:x:0:\n"),
        ("etc/shadow", "root:*:19000:0:99999:7:::\n"),
        ("etc/gshadow", "root:*::\n"),
    ] {
        std::fs::write(root.join(file), text).expect("write");
    }
    let host_passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let dpkg = |args: &[&str]| {
        let out = Command::new("dpkg")
            .arg(format!("--root={}", root.display()))
            .args(["--force-script-chrootless", "--force-depends", "--force-not-root"])
            .args(args)
            .output()
            .expect("run dpkg");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "dpkg {args:?} failed:\n{text}");
        text
    };
    dpkg(&["-i", &deb]);
    let status = dpkg(&["-s", "multilangd"]);
    assert!(status.contains("Status: install ok installed"), "{status}");
    let installed = Command::new(root.join("usr/bin/multilangd")).arg("--version").output().expect("installed binary");
    assert_eq!(String::from_utf8_lossy(&installed.stdout), version);
    assert!(root.join("lib/systemd/system/multilangd.service").is_file());
    assert!(root.join("etc/multilangd").is_dir(), "postinst creates /etc/multilangd");
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).expect("passwd");
    assert!(passwd.lines().any(|l| l.starts_with("multilangd:") && l.contains(":/var/lib/multilangd:")), "{passwd}");
    assert_eq!(std::fs::read_to_string("/etc/passwd").unwrap_or_default(), host_passwd, "the host is left alone");
    // Reinstalling is idempotent (the user exists already); purging removes every file.
    dpkg(&["-i", &deb]);
    dpkg(&["--purge", "multilangd"]);
    assert!(!root.join("usr/bin/multilangd").exists());
    assert!(!root.join("lib/systemd/system/multilangd.service").exists());
    let status = Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .args(["-s", "multilangd"])
        .output()
        .expect("dpkg -s");
    assert!(!status.status.success(), "purged: dpkg -s no longer knows the package");
}
