//! Mixed fleets with the reference Java MultiLangDaemon 2.5.8: a lease table written by
//! Java is continued by multilangd and the reverse, with no record lost, and every
//! attribute multilangd writes has the name and type Java uses.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use support::daemon::{self, Daemon, Kind, Props};
use support::emulators;
use support::ledger::{keys, last_per_shard, seq_gt};
use support::sample_apps::{read_ledger, Processor};

const RECORDS: usize = 600;

type Schema = BTreeMap<String, BTreeSet<&'static str>>;

/// attribute name → DynamoDB types seen, over every lease item of the table.
fn schema(items: &[std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>]) -> Schema {
    let mut schema = Schema::new();
    for item in items {
        for (name, value) in item {
            schema.entry(name.clone()).or_default().insert(daemon::type_of(value));
        }
    }
    schema
}

struct Run<'a> {
    dir: &'a Path,
    kinesis: &'a str,
    dynamo: &'a str,
    rt: tokio::runtime::Runtime,
    ddb: aws_sdk_dynamodb::Client,
}

impl Run<'_> {
    fn props(&self, app: &str, stream: &str, ledger: &Path) -> Props {
        Props::local(app, stream, &Processor::PythonV3.executable_name(ledger, None, &[]), self.kinesis, self.dynamo)
            .set("maxRecords", 50)
            .set("failoverTimeMillis", 5_000)
    }

    fn leases(&self, app: &str) -> BTreeMap<String, (Option<String>, String)> {
        self.rt.block_on(daemon::leases(&self.ddb, app))
    }

    /// Runs `first` until it has seen some records and checkpointed, stops it with SIGTERM,
    /// then runs `second` to the end of the stream; checks the hand-over.
    fn hand_over(&self, app: &str, stream: &str, first: Kind, second: Kind) -> (Schema, Schema) {
        let sent_ledger = self.dir.join(format!("{app}-sent.jsonl"));
        daemon::produce(self.kinesis, stream, 2, RECORDS, &sent_ledger);
        let sent = read_ledger(&sent_ledger);
        let last = last_per_shard(&sent);

        let first_ledger = self.dir.join(format!("{app}-first.jsonl"));
        let props = self.props(app, stream, &first_ledger).write(&self.dir.join(format!("{app}-first.properties")));
        let mut d1 = Daemon::start(first, &props, &self.dir.join(format!("{app}-first.log")));
        daemon::wait_for(
            "the first daemon to checkpoint part of the stream",
            Duration::from_secs(120),
            || {
                read_ledger(&first_ledger).len() >= 100
                    && self.leases(app).values().any(|(_, cp)| cp.bytes().all(|c| c.is_ascii_digit()))
            },
            || daemon::tail(&d1.log_text(), 40),
        );
        let status = d1.terminate(Duration::from_secs(60));
        assert!(matches!(status.code(), Some(0 | 1 | 143)), "{first:?} stopped: {status:?}");
        let first_schema = schema(&self.rt.block_on(daemon::items(&self.ddb, app)));
        let checkpoints: BTreeMap<String, String> = self.leases(app).into_iter().map(|(k, (_, cp))| (k, cp)).collect();
        let first_seen = read_ledger(&first_ledger);
        assert!(first_seen.len() < sent.len(), "the first daemon must stop midway");

        let second_ledger = self.dir.join(format!("{app}-second.jsonl"));
        let props = self.props(app, stream, &second_ledger).write(&self.dir.join(format!("{app}-second.properties")));
        let mut d2 = Daemon::start(second, &props, &self.dir.join(format!("{app}-second.log")));
        daemon::wait_for(
            "the second daemon to finish the stream",
            Duration::from_secs(180),
            || {
                let leases = self.leases(app);
                last.iter().all(|(shard, seq)| leases.get(shard).is_some_and(|(_, cp)| cp == seq))
            },
            || format!("leases {:?}\n{}", self.leases(app), daemon::tail(&d2.log_text(), 40)),
        );
        let second_schema = schema(&self.rt.block_on(daemon::items(&self.ddb, app)));
        d2.terminate(Duration::from_secs(60));

        let second_seen = read_ledger(&second_ledger);
        let mut all = keys(&first_seen);
        all.extend(keys(&second_seen));
        let missing: Vec<_> = keys(&sent).difference(&all).take(5).cloned().collect();
        assert!(missing.is_empty(), "{first:?} → {second:?}: lost records, e.g. {missing:?}");
        for (shard, checkpoint) in &checkpoints {
            for e in second_seen.iter().filter(|e| &e.shard_id == shard) {
                assert!(
                    seq_gt(&e.sequence_number, checkpoint),
                    "{second:?} redelivered {} at/below {first:?}'s checkpoint {checkpoint}",
                    e.sequence_number
                );
            }
        }
        (first_schema, second_schema)
    }
}

#[test]
fn java_and_multilangd_continue_each_others_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let kinesis = emulators::start_kinesis_local();
    let dynamo = emulators::start_dynalite();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (_, ddb) = rt.block_on(daemon::clients(&kinesis.endpoint, &dynamo.endpoint));
    let run = Run { dir: dir.path(), kinesis: &kinesis.endpoint, dynamo: &dynamo.endpoint, rt, ddb };

    let (java_written, _) = run.hand_over("java-first", "stream-a", Kind::Java, Kind::Multilangd);
    let (multilangd_written, _) = run.hand_over("multilangd-first", "stream-b", Kind::Multilangd, Kind::Java);

    // Every attribute multilangd writes has the name and type Java uses; `entityType`
    // (KCL 3.5's marker, written on create, ignored by 2.x readers) is the one addition.
    for (name, types) in &multilangd_written {
        if name == "entityType" {
            assert_eq!(*types, BTreeSet::from(["S"]));
            continue;
        }
        let java = java_written
            .get(name)
            .unwrap_or_else(|| panic!("multilangd wrote {name}, Java never does: {java_written:?}"));
        assert_eq!(types, java, "type of {name}");
    }
    for required in
        ["leaseKey", "leaseCounter", "checkpoint", "checkpointSubSequenceNumber", "ownerSwitchesSinceCheckpoint"]
    {
        assert!(multilangd_written.contains_key(required), "{required} missing: {multilangd_written:?}");
    }
}
