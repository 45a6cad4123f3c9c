//! The sample record processors (used by end-to-end tests as `executableName`) speak the
//! protocol correctly with the stock client libraries: each is driven through a scripted
//! exchange by `scripts/testbed/fake_daemon.py`, which checks statuses, answers checkpoints
//! (throttling some) and compares the processor's ledger with the records it sent.
mod support;

use std::path::Path;
use std::process::Command;

use support::sample_apps::{self, Processor};

/// Runs the fake daemon against `processor`; returns its JSON summary.
fn drive(processor: Processor, dir: &Path, daemon_args: &[&str], processor_args: &[&str]) -> serde_json::Value {
    let ledger = dir.join(format!("{}.jsonl", processor.name()));
    let events = dir.join(format!("{}-events.jsonl", processor.name()));
    let output = Command::new(support::python())
        .arg(sample_apps::fake_daemon_script())
        .args(daemon_args)
        .arg("--ledger")
        .arg(&ledger)
        .arg("--stderr")
        .arg(dir.join(format!("{}.stderr", processor.name())))
        .arg("--")
        .args(processor.argv(&ledger, Some(&events), processor_args))
        .output()
        .expect("run fake_daemon.py");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!("fake daemon printed no summary ({e}): {stdout} {}", String::from_utf8_lossy(&output.stderr))
    });
    assert!(summary["ok"].as_bool().unwrap_or(false), "{processor:?}: {summary:#}");
    let entries = sample_apps::read_ledger(&ledger);
    assert_eq!(Some(entries.len() as u64), summary["records"].as_u64(), "{processor:?}: ledger length");
    assert!(entries.iter().all(|e| e.processor.as_deref() == Some(processor.name())));
    summary
}

fn checkpoints(summary: &serde_json::Value) -> Vec<(String, Option<String>, Option<String>)> {
    summary["checkpoints"]
        .as_array()
        .expect("checkpoints array")
        .iter()
        .map(|c| {
            (
                c["during"].as_str().expect("during").to_string(),
                c["sequenceNumber"].as_str().map(str::to_string),
                c["error"].as_str().map(str::to_string),
            )
        })
        .collect()
}

#[test]
fn processors_checkpoint_each_batch_retry_throttling_and_end_the_shard() {
    for processor in Processor::ALL {
        let dir = tempfile::tempdir().unwrap();
        let summary = drive(
            processor,
            dir.path(),
            &["--records", "9", "--batches", "3", "--throttle", "2", "--end", "shardEnded"],
            &["--retry-backoff-ms", "5"],
        );
        let statuses: Vec<&str> = summary["statuses"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
        assert_eq!(statuses, ["initialize", "processRecords", "processRecords", "processRecords", "shardEnded"]);
        let cps = checkpoints(&summary);
        // Two throttled attempts, then one successful null checkpoint per batch, then shardEnded.
        let throttled = cps.iter().filter(|c| c.2.as_deref() == Some("ThrottlingException")).count();
        assert_eq!(throttled, 2, "{processor:?}: {cps:?}");
        let ok: Vec<_> = cps.iter().filter(|c| c.2.is_none()).collect();
        assert_eq!(ok.len(), 4, "{processor:?}: {cps:?}");
        assert!(ok.iter().all(|c| c.1.is_none()), "batch checkpoints carry no sequence number: {cps:?}");
        assert_eq!(ok[3].0, "shardEnded");
        assert_eq!(summary["final_checkpoint"][0], "SHARD_END", "{processor:?}");
    }
}

#[test]
fn processors_checkpoint_every_n_records_at_that_record() {
    for processor in Processor::ALL {
        let dir = tempfile::tempdir().unwrap();
        let summary = drive(
            processor,
            dir.path(),
            &["--records", "10", "--batches", "2", "--end", "leaseLost"],
            &["--checkpoint-every", "3"],
        );
        let cps = checkpoints(&summary);
        // Records 3, 6 and 9 (1-based) of 10: explicit sequence numbers, nothing during leaseLost.
        let seqs: Vec<String> = cps.iter().map(|c| c.1.clone().expect("explicit sequence number")).collect();
        assert_eq!(seqs.len(), 3, "{processor:?}: {cps:?}");
        assert!(cps.iter().all(|c| c.0 == "processRecords" && c.2.is_none()), "{processor:?}: {cps:?}");
        let ledger = sample_apps::read_ledger(&dir.path().join(format!("{}.jsonl", processor.name())));
        let expected: Vec<String> = [2, 5, 8].iter().map(|&i| ledger[i].sequence_number.clone()).collect();
        assert_eq!(seqs, expected, "{processor:?}");
        assert_eq!(summary["statuses"].as_array().unwrap().last().unwrap(), "leaseLost");
    }
}

#[test]
fn processors_checkpoint_on_shutdown_requested() {
    for processor in Processor::ALL {
        let dir = tempfile::tempdir().unwrap();
        let summary = drive(processor, dir.path(), &["--records", "4", "--end", "shutdownRequested"], &[]);
        let cps = checkpoints(&summary);
        assert_eq!(cps.last().map(|c| c.0.as_str()), Some("shutdownRequested"), "{processor:?}: {cps:?}");
        let statuses = summary["statuses"].as_array().unwrap();
        assert_eq!(statuses[statuses.len() - 2], "shutdownRequested");
        assert_eq!(statuses[statuses.len() - 1], "leaseLost");
    }
}
