//! End-to-end child faults (issue 13): on one worker with 8 shards, six shards' record
//! processors misbehave in six ways (tests/children/faulty_processor.py: crash loop, hang past
//! timeoutInSeconds, a garbage line, an overlong line, stdout closed, a checkpoint beyond
//! what it received) while two shards stay healthy.
//! - The healthy shards keep up with the producer.
//! - Like Java, a line that is not a protocol message (garbage, or longer than the line
//!   limit) is logged and skipped, and a checkpoint beyond the last record is refused: those
//!   shards keep going with their first processor.
//! - A crash loop, a hang and a closed stdout restart the shard from its checkpoint with
//!   growing backoff (a persistent fault does not spin), reported in the log and /metrics.
//! - No checkpoint ever passes what its shard delivered.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::daemon::{self, wait_for, Daemon, Kind, Producer, Props};
use support::emulators::{free_port, start_dynalite, start_kinesis_local};
use support::ledger::{keys, seq_gt};
use support::sample_apps::read_ledger;

const SHARDS: u32 = 8;
const MODES: [&str; 6] = ["crash", "hang", "garbage", "overlong", "closeout", "beyond"];

fn shard(i: u32) -> String {
    format!("shardId-{i:012}")
}

fn events(path: &std::path::Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

#[test]
fn a_faulty_processor_restarts_its_shard_with_backoff_and_the_others_keep_up() {
    let dir = tempfile::tempdir().unwrap();
    let kinesis = start_kinesis_local();
    let dynamodb = start_dynalite();
    let app = "child-faults";
    let sent_ledger = dir.path().join("sent.jsonl");
    let mut producer = Producer::start(&kinesis.endpoint, app, SHARDS, 1_000_000, 40.0, &sent_ledger);
    let seen_ledger = dir.path().join("seen.jsonl");
    let events_file = dir.path().join("events.jsonl");
    let executable = format!(
        "{} {} --ledger {} --events {}",
        support::python().display(),
        support::repo_dir().join("tests/children/faulty_processor.py").display(),
        seen_ledger.display(),
        events_file.display()
    );
    let port = free_port();
    let props = Props::local(app, app, &executable, &kinesis.endpoint, &dynamodb.endpoint)
        .set("timeoutInSeconds", 3)
        .set("multilangd.httpAddress", port)
        .write(&dir.path().join("app.properties"));
    let faults: Vec<String> = MODES.iter().enumerate().map(|(i, m)| format!("{}={m}", shard(i as u32))).collect();
    let mut d = Daemon::start_with_env(
        Kind::Multilangd,
        &props,
        &dir.path().join("daemon.log"),
        &[("FAULTS", faults.join(","))],
    );
    let healthy: Vec<String> = (MODES.len() as u32..SHARDS).map(shard).collect();
    wait_for(
        "the healthy shards delivering",
        Duration::from_secs(120),
        || {
            let seen = read_ledger(&seen_ledger);
            healthy.iter().all(|s| seen.iter().any(|e| &e.shard_id == s))
        },
        || daemon::tail(&d.log_text(), 40),
    );
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(15));
    let metrics = support::runtime()
        .block_on(multilangd::ops::http::get(
            SocketAddr::from(([127, 0, 0, 1], port)),
            "/metrics",
            Duration::from_secs(5),
        ))
        .map(|(_, body)| body)
        .unwrap_or_default();
    producer.stop();
    let window = started.elapsed();
    let sent = read_ledger(&sent_ledger);
    // The healthy shards (and the one whose bad checkpoint was refused) deliver everything.
    let mut keeps_up: Vec<String> = healthy.clone();
    keeps_up.extend([shard(2), shard(3), shard(5)]);
    let sent_to = |s: &str| sent.iter().filter(|e| e.shard_id == s).cloned().collect::<Vec<_>>();
    let caught_up = Instant::now();
    wait_for(
        "the healthy shards caught up",
        Duration::from_secs(30),
        || {
            let seen = keys(&read_ledger(&seen_ledger));
            keeps_up.iter().all(|s| keys(&sent_to(s)).is_subset(&seen))
        },
        || daemon::tail(&d.log_text(), 40),
    );
    let lag = caught_up.elapsed();
    let rt = support::runtime();
    let (_, ddb) = rt.block_on(daemon::clients(&kinesis.endpoint, &dynamodb.endpoint));
    let leases = rt.block_on(daemon::leases(&ddb, app));
    let log = d.log_text();
    let status = d.terminate(Duration::from_secs(30));
    assert!(status.success(), "{status:?}\n{}", daemon::tail(&log, 40));

    let seen = read_ledger(&seen_ledger);
    let launches: BTreeMap<String, usize> = events(&events_file)
        .iter()
        .filter(|e| e["event"] == "initialize")
        .filter_map(|e| e["shardId"].as_str().map(str::to_owned))
        .fold(BTreeMap::new(), |mut m, s| {
            *m.entry(s).or_default() += 1;
            m
        });
    let throughput: Vec<String> =
        keeps_up.iter().map(|s| format!("{s}: {} records", seen.iter().filter(|e| &e.shard_id == s).count())).collect();
    let report = format!(
        "launches {launches:?}; window {window:?}; caught up {lag:?} after the producer stopped; {throughput:?}"
    );
    let lost = keeps_up.iter().map(|s| keys(&sent_to(s)).difference(&keys(&seen)).count()).sum();
    support::ledger::Figures {
        scenario: "child-faults".into(),
        daemon: "multilangd".into(),
        fault: "8 shards, 1 worker: crash loop, hang past timeoutInSeconds 3, garbage line, 3 MiB line, \
                stdout closed, checkpoint beyond the last record (one shard each), 2 healthy shards"
            .into(),
        records: sent.len(),
        lost,
        duplicates: support::ledger::duplicates(&seen),
        unsafe_deliveries: None,
        recovery_ms: None,
        notes: format!(
            "processor launches per shard {:?} in {} s; shards that keep going: {} (lost counts only them); \
             caught up {} ms after the producer stopped",
            launches.values().collect::<Vec<_>>(),
            window.as_secs(),
            throughput.join(", "),
            lag.as_millis()
        ),
    }
    .publish();
    assert!(lag < Duration::from_secs(15), "{report}");
    for (i, mode) in MODES.iter().enumerate() {
        let s = shard(i as u32);
        let n = launches.get(&s).copied().unwrap_or(0);
        if *mode == "beyond" {
            assert_eq!(n, 1, "{mode}: a refused checkpoint is not a failure: {report}");
            let refused = events(&events_file).iter().any(|e| e["event"] == "beyond" && !e["error"].is_null());
            assert!(refused, "{mode}: the checkpoint beyond the last record was refused");
        } else if matches!(*mode, "garbage" | "overlong") {
            assert_eq!(n, 1, "{mode}: the line is skipped, the processor kept: {report}");
            assert!(
                log.lines().any(|l| l.contains("skipping unexpected line") && l.contains(&s)),
                "{mode}: the skipped line is logged\n{}",
                daemon::tail(&log, 40)
            );
        } else {
            // Restarted from its checkpoint, with backoff: a few restarts in ~15 s, not hundreds.
            assert!((2..=10).contains(&n), "{mode} on {s}: {n} launches: {report}");
            assert!(
                log.lines().any(|l| l.contains("restarting this shard") && l.contains(&s)),
                "{mode}: the failure is logged\n{}",
                daemon::tail(&log, 40)
            );
        }
        // No checkpoint past what the shard delivered.
        if let Some((_, checkpoint)) = leases.get(&s) {
            if checkpoint.bytes().all(|c| c.is_ascii_digit()) && !checkpoint.is_empty() {
                let delivered = seen.iter().filter(|e| e.shard_id == s).map(|e| e.sequence_number.as_str());
                let max = delivered.fold("", |a, b| if a.is_empty() || seq_gt(b, a) { b } else { a });
                assert!(!max.is_empty() && !seq_gt(checkpoint, max), "{mode}: checkpoint {checkpoint} past {max}");
            }
        }
    }
    let restarts = metrics
        .lines()
        .find(|l| l.starts_with("multilangd_consumer_restarts"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(restarts >= 3.0, "/metrics reports the restarts:\n{metrics}");
}
