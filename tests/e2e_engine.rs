//! End-to-end: the real multilangd binary on the emulators with real amazon_kclpy record
//! processors (issue: single-worker engine). Every record is checked against the
//! producer's ledger.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use support::daemon::{self, Daemon, Kind, Props};
use support::emulators;
use support::ledger::{assert_digests_match, keys, last_per_shard, seq_gt};
use support::runtime;
use support::sample_apps::{read_ledger, LedgerEntry, Processor};

fn ledger_processor(ledger: &Path) -> String {
    Processor::PythonV3.executable_name(ledger, None, &[])
}

/// 4 shards, 100,000 records: every record reaches the Python processor, and the final
/// checkpoints equal each shard's last sequence number. kinesalite (bulk throughput).
#[test]
fn four_shards_100k_records_all_delivered_and_checkpointed() {
    let dir = tempfile::tempdir().unwrap();
    let kinesis = emulators::start_kinesalite();
    let dynamo = emulators::start_dynalite();
    let rt = runtime();
    let sent_ledger = dir.path().join("sent.jsonl");
    daemon::produce(&kinesis.endpoint, "trips", 4, 100_000, &sent_ledger);
    let sent = read_ledger(&sent_ledger);
    assert_eq!(sent.len(), 100_000);
    let last = last_per_shard(&sent);
    assert_eq!(last.len(), 4);

    let ledger = dir.path().join("seen.jsonl");
    let props = Props::local("bulk-app", "trips", &ledger_processor(&ledger), &kinesis.endpoint, &dynamo.endpoint)
        .set("maxRecords", 10_000)
        .write(&dir.path().join("app.properties"));
    let mut d = Daemon::start(Kind::Multilangd, &props, &dir.path().join("daemon.log"));
    let (_, ddb) = rt.block_on(daemon::clients(&kinesis.endpoint, &dynamo.endpoint));
    daemon::wait_for(
        "every shard checkpointed at its last record",
        Duration::from_secs(240),
        || {
            let leases = rt.block_on(daemon::leases(&ddb, "bulk-app"));
            last.iter().all(|(shard, seq)| leases.get(shard).is_some_and(|(_, cp)| cp == seq))
        },
        || {
            format!(
                "leases: {:?}\nlog:\n{}",
                rt.block_on(daemon::leases(&ddb, "bulk-app")),
                daemon::tail(&d.log_text(), 40)
            )
        },
    );
    let status = d.terminate(Duration::from_secs(30));
    assert!(status.success(), "graceful stop exits 0: {status:?}\n{}", daemon::tail(&d.log_text(), 40));
    let seen = read_ledger(&ledger);
    let missing: Vec<_> = keys(&sent).difference(&keys(&seen)).take(5).cloned().collect();
    assert!(missing.is_empty(), "records never delivered, e.g. {missing:?}");
    assert_digests_match(&sent, &seen);
    // Released on shutdown: no owner left.
    for (shard, (owner, _)) in rt.block_on(daemon::leases(&ddb, "bulk-app")) {
        assert_eq!(owner, None, "{shard} released");
    }
}

/// kill -9 of multilangd midway, then a restart: no record lost, and the restarted worker
/// redelivers only records after the last checkpoint.
#[test]
fn kill_9_midway_then_restart_loses_nothing_and_resumes_after_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let kinesis = emulators::start_kinesalite();
    let dynamo = emulators::start_dynalite();
    let rt = runtime();
    let sent_ledger = dir.path().join("sent.jsonl");
    daemon::produce(&kinesis.endpoint, "trips", 2, 6_000, &sent_ledger);
    let sent = read_ledger(&sent_ledger);
    let (_, ddb) = rt.block_on(daemon::clients(&kinesis.endpoint, &dynamo.endpoint));

    let first_ledger = dir.path().join("first.jsonl");
    let slow = Processor::PythonV3.executable_name(&first_ledger, None, &["--process-delay-ms", "150"]);
    let props = |executable: &str| {
        Props::local("crash-app", "trips", executable, &kinesis.endpoint, &dynamo.endpoint)
            .set("maxRecords", 200)
            .set("workerId", "worker-a")
    };
    let mut first = Daemon::start(
        Kind::Multilangd,
        &props(&slow).write(&dir.path().join("a.properties")),
        &dir.path().join("a.log"),
    );
    daemon::wait_for(
        "some progress",
        Duration::from_secs(60),
        || read_ledger(&first_ledger).len() >= 1_000,
        || daemon::tail(&first.log_text(), 30),
    );
    first.kill9();
    // The checkpoints cannot move any more: only the daemon writes them.
    let checkpoints: BTreeMap<String, String> =
        rt.block_on(daemon::leases(&ddb, "crash-app")).into_iter().map(|(k, (_, cp))| (k, cp)).collect();
    assert!(checkpoints.values().any(|cp| cp.chars().all(|c| c.is_ascii_digit())), "{checkpoints:?}");
    let before = read_ledger(&first_ledger).len();
    assert!(before < sent.len(), "killed midway ({before} of {})", sent.len());

    let second_ledger = dir.path().join("second.jsonl");
    let fast = ledger_processor(&second_ledger);
    let mut second = Daemon::start(
        Kind::Multilangd,
        &props(&fast).write(&dir.path().join("b.properties")),
        &dir.path().join("b.log"),
    );
    let last = last_per_shard(&sent);
    daemon::wait_for(
        "the restarted worker finishes",
        Duration::from_secs(120),
        || {
            let leases = rt.block_on(daemon::leases(&ddb, "crash-app"));
            last.iter().all(|(shard, seq)| leases.get(shard).is_some_and(|(_, cp)| cp == seq))
        },
        || daemon::tail(&second.log_text(), 30),
    );
    assert!(second.terminate(Duration::from_secs(30)).success());

    let first_seen = read_ledger(&first_ledger);
    let second_seen = read_ledger(&second_ledger);
    let mut all = keys(&first_seen);
    all.extend(keys(&second_seen));
    let missing: Vec<_> = keys(&sent).difference(&all).take(5).cloned().collect();
    assert!(missing.is_empty(), "lost records, e.g. {missing:?}");
    assert_digests_match(&sent, &second_seen);
    // The second run starts strictly after each shard's checkpoint and misses nothing after it.
    for (shard, checkpoint) in &checkpoints {
        let redelivered: Vec<&LedgerEntry> = second_seen.iter().filter(|e| &e.shard_id == shard).collect();
        for e in &redelivered {
            assert!(
                seq_gt(&e.sequence_number, checkpoint),
                "{shard}: {} redelivered at/below checkpoint {checkpoint}",
                e.sequence_number
            );
        }
        let expected: BTreeSet<&str> = sent
            .iter()
            .filter(|e| &e.shard_id == shard && seq_gt(&e.sequence_number, checkpoint))
            .map(|e| e.sequence_number.as_str())
            .collect();
        let got: BTreeSet<&str> = redelivered.iter().map(|e| e.sequence_number.as_str()).collect();
        assert_eq!(got, expected, "{shard}: exactly the records after the checkpoint");
    }
}

/// PIDs of live processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else { continue };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        if String::from_utf8_lossy(&cmdline).contains(needle) {
            found.push(pid);
        }
    }
    found
}

/// Two SIGTERMs 0.3 s apart while four record processors are mid-batch: the daemon exits at
/// once (128 + SIGTERM), no record processor outlives it, the leases are released, and a
/// restart loses nothing.
#[test]
fn two_sigterms_kill_every_processor_release_the_leases_and_a_restart_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let kinesis = emulators::start_kinesalite();
    let dynamo = emulators::start_dynalite();
    let rt = runtime();
    let sent_ledger = dir.path().join("sent.jsonl");
    daemon::produce(&kinesis.endpoint, "trips", 4, 8_000, &sent_ledger);
    let sent = read_ledger(&sent_ledger);
    let (_, ddb) = rt.block_on(daemon::clients(&kinesis.endpoint, &dynamo.endpoint));

    let first_ledger = dir.path().join("first.jsonl");
    // 3 s per batch: a processor is almost always inside processRecords, and a graceful stop
    // cannot finish before the second signal 0.3 s later.
    let slow = Processor::PythonV3.executable_name(&first_ledger, None, &["--process-delay-ms", "3000"]);
    let props = |executable: &str, name: &str| {
        Props::local("sigterm-app", "trips", executable, &kinesis.endpoint, &dynamo.endpoint)
            .set("maxRecords", 100)
            .set("shutdownGraceMillis", 60_000)
            .write(&dir.path().join(name))
    };
    let mut first = Daemon::start(Kind::Multilangd, &props(&slow, "a.properties"), &dir.path().join("a.log"));
    daemon::wait_for(
        "all four processors busy",
        Duration::from_secs(60),
        || {
            let seen = read_ledger(&first_ledger);
            seen.iter().map(|e| e.shard_id.clone()).collect::<BTreeSet<_>>().len() == 4
        },
        || daemon::tail(&first.log_text(), 30),
    );
    let ledger_path = first_ledger.display().to_string();
    assert_eq!(processes_mentioning(&ledger_path).len(), 4, "four record processors running");
    let pid = nix::unistd::Pid::from_raw(first.pid());
    let signalled = std::time::Instant::now();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = first.wait(Duration::from_secs(10));
    let took = signalled.elapsed();
    eprintln!("exited {took:?} after the first SIGTERM: {status:?}");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.code(), Some(128 + 15), "{status:?}\n{}", daemon::tail(&first.log_text(), 30));
    assert!(took < Duration::from_secs(5), "exits within a second or two of the second signal: {took:?}");
    assert!(status.signal().is_none());
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(processes_mentioning(&ledger_path), Vec::<u32>::new(), "no record processor left alive");
    for (shard, (owner, _)) in rt.block_on(daemon::leases(&ddb, "sigterm-app")) {
        assert_eq!(owner, None, "{shard}: released by the forced stop\n{}", daemon::tail(&first.log_text(), 30));
    }

    let second_ledger = dir.path().join("second.jsonl");
    let fast = ledger_processor(&second_ledger);
    let mut second = Daemon::start(Kind::Multilangd, &props(&fast, "b.properties"), &dir.path().join("b.log"));
    let last = last_per_shard(&sent);
    daemon::wait_for(
        "the restarted worker finishes",
        Duration::from_secs(120),
        || {
            let leases = rt.block_on(daemon::leases(&ddb, "sigterm-app"));
            last.iter().all(|(shard, seq)| leases.get(shard).is_some_and(|(_, cp)| cp == seq))
        },
        || daemon::tail(&second.log_text(), 30),
    );
    assert!(second.terminate(Duration::from_secs(30)).success());
    let mut all = keys(&read_ledger(&first_ledger));
    all.extend(keys(&read_ledger(&second_ledger)));
    let missing: Vec<_> = keys(&sent).difference(&all).take(5).cloned().collect();
    assert!(missing.is_empty(), "lost records, e.g. {missing:?}");
}
