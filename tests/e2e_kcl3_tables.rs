//! End-to-end: multilangd on lease tables written by KCL 3.x (lease-coordination.md §2.3,
//! §10.4, §10.5). The 3.5 single-table format puts non-lease items into the lease table
//! (`WORKER_METRIC_STATS`, `LEADER`, `CLIENT_VERSION_MIGRATION`); multilangd must skip
//! them (and malformed items) without touching them, remove a leftover `checkpointOwner`
//! when it takes a lease, mark the leases it creates `entityType = LEASE`, and refuse to
//! join a fleet whose `Migration3.0` item says it runs the 3.x protocol.
//! Also `multilangd leases` against such tables.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use support::daemon::{self, Daemon, Kind, Props};
use support::emulators::{self, Emulator};
use support::sample_apps::{read_ledger, LedgerEntry, Processor};

type Item = HashMap<String, AttributeValue>;

const STREAM: &str = "trips";
const FAILOVER_MS: u64 = 1_000;

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn item(pairs: Vec<(&str, AttributeValue)>) -> Item {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// The items a KCL 3.5 worker in `COMPATIBLE_WITH_2X` mode writes into the lease table,
/// in the shapes of lease-coordination.md §2.3.
fn kcl3_items(cv: &str) -> Vec<Item> {
    let metrics = AttributeValue::M(HashMap::from([("CPU".to_owned(), AttributeValue::L(vec![n(12), n(15), n(11)]))]));
    vec![
        item(vec![
            ("leaseKey", s("java3-worker-1")),
            ("entityType", s("WORKER_METRIC_STATS")),
            ("lut", n(1_763_000_000)),
            ("sts", metrics.clone()),
            ("opr", metrics),
            ("properties", AttributeValue::M(HashMap::new())),
            ("sup", n(1)),
            ("slu", n(1_763_000_000)),
        ]),
        item(vec![
            ("leaseKey", s("Leader")),
            ("entityType", s("LEADER")),
            ("ownerName", s("java3-worker-1")),
            ("leaseDuration", s("120000")),
            ("recordVersionNumber", s("0b7a4d1e-8a8f-4c43-9a54-6f1f5f0f6b11")),
            ("data", AttributeValue::B(Blob::new(vec![0, 1, 2]))),
        ]),
        item(vec![
            ("leaseKey", s("Migration3.0")),
            ("entityType", s("CLIENT_VERSION_MIGRATION")),
            ("cv", s(cv)),
            ("mb", s("java3-worker-1")),
            ("mts", n(1_763_000_000_000)),
            (
                "h",
                AttributeValue::L(vec![AttributeValue::M(HashMap::from([
                    ("cv".to_owned(), s("CLIENT_VERSION_2X")),
                    ("mts".to_owned(), n(1_762_000_000_000)),
                ]))]),
            ),
        ]),
    ]
}

/// A lease-looking item that cannot be read as a lease (counter is a string).
fn malformed_item() -> Item {
    item(vec![
        ("leaseKey", s("shardId-000000000999")),
        ("leaseCounter", s("seven")),
        ("checkpoint", s("TRIM_HORIZON")),
        ("leaseOwner", s("someone")),
    ])
}

struct Bed {
    rt: tokio::runtime::Runtime,
    ddb: aws_sdk_dynamodb::Client,
    kinesis: Emulator,
    dynamo: Emulator,
    dir: tempfile::TempDir,
}

impl Bed {
    fn new(shards: u32, records: usize) -> Self {
        let dir = tempfile::Builder::new().prefix("kcl3-").tempdir().unwrap();
        let kinesis = emulators::start_kinesalite();
        let dynamo = emulators::start_dynalite();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (_, ddb) = rt.block_on(daemon::clients(&kinesis.endpoint, &dynamo.endpoint));
        let bed = Self { rt, ddb, kinesis, dynamo, dir };
        bed.produce(shards, records, "sent-0.jsonl");
        bed
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn produce(&self, shards: u32, records: usize, ledger: &str) {
        daemon::produce(&self.kinesis.endpoint, STREAM, shards, records, &self.path(ledger));
    }

    fn props(&self, app: &str, worker: &str) -> PathBuf {
        let ledger = self.path(&format!("{app}-seen.jsonl"));
        let executable = Processor::PythonV3.executable_name(&ledger, None, &[]);
        Props::local(app, STREAM, &executable, &self.kinesis.endpoint, &self.dynamo.endpoint)
            .set("workerId", worker)
            .set("failoverTimeMillis", FAILOVER_MS)
            .write(&self.path(&format!("{app}-{worker}.properties")))
    }

    fn start(&self, app: &str, worker: &str) -> Daemon {
        Daemon::start(Kind::Multilangd, &self.props(app, worker), &self.path(&format!("{app}-{worker}.log")))
    }

    fn create_table(&self, table: &str, key: &str) {
        self.rt
            .block_on(
                self.ddb
                    .create_table()
                    .table_name(table)
                    .key_schema(
                        KeySchemaElement::builder().attribute_name(key).key_type(KeyType::Hash).build().unwrap(),
                    )
                    .attribute_definitions(
                        AttributeDefinition::builder()
                            .attribute_name(key)
                            .attribute_type(ScalarAttributeType::S)
                            .build()
                            .unwrap(),
                    )
                    .billing_mode(BillingMode::PayPerRequest)
                    .send(),
            )
            .unwrap();
        // dynalite answers CREATING first, even with --createTableMs 0.
        daemon::wait_for(
            &format!("table {table} to become ACTIVE"),
            Duration::from_secs(10),
            || {
                self.rt
                    .block_on(self.ddb.describe_table().table_name(table).send())
                    .ok()
                    .and_then(|out| out.table().and_then(|t| t.table_status().cloned()))
                    == Some(aws_sdk_dynamodb::types::TableStatus::Active)
            },
            String::new,
        );
    }

    fn put(&self, table: &str, item: Item) {
        self.rt.block_on(self.ddb.put_item().table_name(table).set_item(Some(item)).send()).unwrap();
    }

    fn items(&self, table: &str) -> BTreeMap<String, Item> {
        self.rt
            .block_on(daemon::items(&self.ddb, table))
            .into_iter()
            .map(|item| {
                let key = item.get("leaseKey").or_else(|| item.get("key")).unwrap().as_s().unwrap().clone();
                (key, item)
            })
            .collect()
    }

    fn update(&self, table: &str, key: &str, expression: &str, values: Vec<(&str, AttributeValue)>) {
        let mut request =
            self.ddb.update_item().table_name(table).key("leaseKey", s(key)).update_expression(expression);
        for (name, value) in values {
            request = request.expression_attribute_values(name, value);
        }
        self.rt.block_on(request.send()).unwrap();
    }

    /// Runs `multilangd leases <props> <args>`; (exit code, stdout, stderr).
    fn leases_command(&self, props: &Path, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(support::multilangd_bin())
            .arg("leases")
            .arg(props)
            .args(args)
            .env("AWS_ACCESS_KEY_ID", "x")
            .env("AWS_SECRET_ACCESS_KEY", "x")
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Bed {
    /// Record processors orphaned by a killed daemon (a failed test) exit on EOF; whatever
    /// still runs from this test's directory after a grace period is killed.
    fn drop(&mut self) {
        let marker = self.dir.path().display().to_string();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !processes_mentioning(&marker).is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        for pid in processes_mentioning(&marker) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// Running processes (other than this one) whose command line contains `marker`.
fn processes_mentioning(marker: &str) -> Vec<i32> {
    let me = std::process::id();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        if pid != me && String::from_utf8_lossy(&cmdline).replace('\0', " ").contains(marker) {
            found.push(i32::try_from(pid).unwrap());
        }
    }
    found
}

fn last_per_shard(sent: &[LedgerEntry]) -> BTreeMap<String, String> {
    let mut last: BTreeMap<String, String> = BTreeMap::new();
    for e in sent {
        let slot = last.entry(e.shard_id.clone()).or_default();
        if (e.sequence_number.len(), &e.sequence_number) > (slot.len(), slot) {
            slot.clone_from(&e.sequence_number);
        }
    }
    last
}

/// Waits until every shard's lease is checkpointed at the last record sent to it.
fn wait_until_checkpointed(bed: &Bed, app: &str, sent: &[LedgerEntry], d: &Daemon) {
    let last = last_per_shard(sent);
    daemon::wait_for(
        "every shard checkpointed at its last record",
        Duration::from_secs(90),
        || {
            let leases = bed.rt.block_on(daemon::leases(&bed.ddb, app));
            last.iter().all(|(shard, seq)| leases.get(shard).is_some_and(|(_, cp)| cp == seq))
        },
        || format!("leases: {:?}\n{}", bed.rt.block_on(daemon::leases(&bed.ddb, app)), daemon::tail(&d.log_text(), 30)),
    );
}

fn assert_all_delivered(sent: &[LedgerEntry], seen: &Path) {
    let seen: std::collections::BTreeSet<(String, String)> =
        read_ledger(seen).into_iter().map(|e| (e.shard_id, e.sequence_number)).collect();
    let missing: Vec<_> =
        sent.iter().filter(|e| !seen.contains(&(e.shard_id.clone(), e.sequence_number.clone()))).take(3).collect();
    assert!(missing.is_empty(), "records never delivered, e.g. {missing:?}");
}

fn stop(d: &mut Daemon) {
    let status = d.terminate(Duration::from_secs(60));
    assert!(status.success(), "exit 0 on SIGTERM: {status:?}\n{}", daemon::tail(&d.log_text(), 30));
}

/// A KCL 3.5 single-table lease table (2.x-compatible mode): multilangd creates and
/// processes the real leases (typed `entityType = LEASE`), leaves the 3.x items and a
/// malformed item byte-for-byte alone, and removes `checkpointOwner` from leases it takes.
/// `multilangd leases` shows the leases, the migration state and the malformed item, and
/// with `--watch` flags a dead owner's lease as expired.
#[test]
fn kcl3_items_are_skipped_untouched_and_checkpoint_owner_is_removed_on_take() {
    let app = "kcl3-app";
    let bed = Bed::new(4, 400);
    bed.create_table(app, "leaseKey");
    let mut foreign: BTreeMap<String, Item> = BTreeMap::new();
    for it in kcl3_items("CLIENT_VERSION_UPGRADE_FROM_2X").into_iter().chain([malformed_item()]) {
        foreign.insert(it["leaseKey"].as_s().unwrap().clone(), it.clone());
        bed.put(app, it);
    }
    let foreign_untouched = |bed: &Bed| {
        let items = bed.items(app);
        for (key, expected) in &foreign {
            assert_eq!(items.get(key), Some(expected), "{key} was changed or removed");
        }
    };

    // Phase 1: multilangd creates the leases (the table has none it can read) and
    // processes everything.
    let mut sent = read_ledger(&bed.path("sent-0.jsonl"));
    let mut d = bed.start(app, "rust-a");
    wait_until_checkpointed(&bed, app, &sent, &d);
    foreign_untouched(&bed);
    let items = bed.items(app);
    let leases: Vec<&Item> = items.values().filter(|i| i.get("leaseCounter").is_some_and(|c| c.is_n())).collect();
    assert_eq!(leases.len(), 4, "{items:?}");
    for lease in &leases {
        assert_eq!(lease.get("entityType"), Some(&s("LEASE")), "lease created by multilangd: {lease:?}");
    }
    assert!(
        d.log_text().contains("shardId-000000000999") && d.log_text().contains("malformed"),
        "the malformed item is reported:\n{}",
        daemon::tail(&d.log_text(), 40)
    );

    let props = bed.props(app, "rust-a");
    let (code, text, stderr) = bed.leases_command(&props, &[]);
    assert_eq!(code, 0, "{stderr}");
    println!("{text}");
    assert!(text.contains("Lease table kcl3-app: 4 lease(s), 4 owned, 0 unowned"), "{text}");
    assert!(text.contains("Owners (leader first): rust-a 4 (2.x leader)"), "{text}");
    assert!(text.contains("KCL 3.x migration state: CLIENT_VERSION_UPGRADE_FROM_2X in kcl3-app"), "{text}");
    assert!(text.contains("Mode: KCL 2.x protocol, preparing the upgrade to 3.x"), "{text}");
    assert!(text.contains("Malformed items (skipped by workers):") && text.contains("shardId-000000000999"), "{text}");
    for not_a_lease in ["java3-worker-1", "Leader", "Migration3.0"] {
        assert!(!text.lines().any(|l| l.starts_with(not_a_lease)), "{not_a_lease} listed as a lease:\n{text}");
    }
    stop(&mut d);
    foreign_untouched(&bed);

    // Phase 2: leftovers of a 3.x graceful hand-off: shard 0 owned by a dead 3.x worker
    // with a pending hand-off, shard 1 released with one.
    let (s0, s1) = ("shardId-000000000000", "shardId-000000000001");
    bed.update(
        app,
        s0,
        "SET leaseOwner = :o, checkpointOwner = :c, leaseCounter = leaseCounter + :one",
        vec![(":o", s("kcl3-dead-worker")), (":c", s("kcl3-leaving-worker")), (":one", n(1))],
    );
    bed.update(app, s1, "SET checkpointOwner = :c", vec![(":c", s("kcl3-leaving-worker"))]);

    // `leases --watch`: the dead worker's lease stands still for longer than failover.
    let (code, json_lines, stderr) = bed.leases_command(&props, &["--json", "--watch", "0.4", "--count", "4"]);
    assert_eq!(code, 0, "{stderr}");
    let reads: Vec<serde_json::Value> = json_lines.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(reads.len(), 4, "{json_lines}");
    let lease = |read: &serde_json::Value, key: &str| {
        read["leases"].as_array().unwrap().iter().find(|l| l["leaseKey"] == key).unwrap().clone()
    };
    assert_eq!(lease(&reads[0], s0)["unchangedForMillis"], serde_json::Value::Null, "first read: unknown");
    let last = lease(&reads[3], s0);
    assert_eq!(last["leaseOwner"], "kcl3-dead-worker");
    assert_eq!(last["checkpointOwner"], "kcl3-leaving-worker");
    assert!(last["unchangedForMillis"].as_u64().unwrap() >= 1_100, "{last}");
    assert_eq!(last["looksExpired"], true, "{last}");
    assert_eq!(lease(&reads[3], s1)["looksExpired"], false, "unowned leases are available, not expired");
    assert_eq!(reads[3]["leader"], "kcl3-dead-worker");
    assert_eq!(reads[3]["migration"]["kcl3xMode"], false);
    // The KCL 3.x items are not leases, and not malformed either.
    let malformed: Vec<&str> = reads[3]["malformed"].as_array().unwrap().iter().map(|m| m.as_str().unwrap()).collect();
    assert!(malformed.len() == 1 && malformed[0].contains("shardId-000000000999"), "{malformed:?}");
    assert_eq!(reads[3]["leases"].as_array().unwrap().len(), 4);

    bed.produce(4, 200, "sent-1.jsonl");
    sent.extend(read_ledger(&bed.path("sent-1.jsonl")));
    let mut d = bed.start(app, "rust-b");
    wait_until_checkpointed(&bed, app, &sent, &d);
    let items = bed.items(app);
    for key in [s0, s1] {
        assert_eq!(items[key].get("leaseOwner"), Some(&s("rust-b")), "{key}: {:?}", items[key]);
        assert_eq!(items[key].get("checkpointOwner"), None, "{key}: checkpointOwner removed on take");
    }
    assert_eq!(items[s0].get("ownerSwitchesSinceCheckpoint"), Some(&n(0)), "checkpointed since the take");
    foreign_untouched(&bed);
    stop(&mut d);
    foreign_untouched(&bed);
    assert_all_delivered(&sent, &bed.path(&format!("{app}-seen.jsonl")));
    drop(d);
    let marker = bed.dir.path().display().to_string();
    daemon::wait_for(
        "every process of the test to exit",
        Duration::from_secs(15),
        || processes_mentioning(&marker).is_empty(),
        || format!("{:?}", processes_mentioning(&marker)),
    );
}

/// Where the `Migration3.0` item is.
#[derive(Clone, Copy, Debug)]
enum Location {
    /// In the lease table (3.5 single-table format), key attribute `leaseKey`.
    LeaseTable,
    /// In `<app>-CoordinatorState` (3.0–3.4), key attribute `key`.
    CoordinatorState,
}

/// `Migration3.0.cv` decides: `CLIENT_VERSION_3X` and `CLIENT_VERSION_3X_WITH_ROLLBACK`
/// (in the lease table or in `<app>-CoordinatorState`) make multilangd refuse to start
/// with exit 78 and a clear message, without creating leases; `CLIENT_VERSION_UPGRADE_FROM_2X`
/// and `CLIENT_VERSION_2X` let it run. `multilangd leases` reports the state.
#[test]
fn migration_state_decides_whether_multilangd_may_join_the_fleet() {
    let bed = Bed::new(2, 50);
    let cases = [
        (Location::LeaseTable, "CLIENT_VERSION_3X", true),
        (Location::LeaseTable, "CLIENT_VERSION_3X_WITH_ROLLBACK", true),
        (Location::CoordinatorState, "CLIENT_VERSION_3X", true),
        (Location::CoordinatorState, "CLIENT_VERSION_3X_WITH_ROLLBACK", true),
        (Location::LeaseTable, "CLIENT_VERSION_UPGRADE_FROM_2X", false),
        (Location::LeaseTable, "CLIENT_VERSION_2X", false),
        (Location::CoordinatorState, "CLIENT_VERSION_UPGRADE_FROM_2X", false),
        (Location::CoordinatorState, "CLIENT_VERSION_2X", false),
    ];
    for (i, (location, cv, refused)) in cases.into_iter().enumerate() {
        let app = format!("gate-{i}");
        let (table, migration) = match location {
            Location::LeaseTable => {
                bed.create_table(&app, "leaseKey");
                let migration = kcl3_items(cv).remove(2);
                bed.put(&app, migration.clone());
                (app.clone(), migration)
            }
            Location::CoordinatorState => {
                let table = format!("{app}-CoordinatorState");
                bed.create_table(&table, "key");
                let migration = item(vec![("key", s("Migration3.0")), ("cv", s(cv)), ("mb", s("java3-worker-1"))]);
                bed.put(&table, migration.clone());
                (table, migration)
            }
        };
        let props = bed.props(&app, "rust");
        let (code, text, stderr) = bed.leases_command(&props, &[]);
        if matches!(location, Location::LeaseTable) {
            assert_eq!(code, 0, "{stderr}");
            let mode = if refused { "Mode: KCL 3.x" } else { "Mode: KCL 2.x protocol" };
            assert!(text.contains(mode), "{location:?} {cv}:\n{text}");
            assert!(text.contains(&format!("KCL 3.x migration state: {cv} in {table}")), "{location:?} {cv}:\n{text}");
        } else {
            // The lease table does not exist yet: reported as such, exit 1.
            assert_eq!(code, 1, "{text}{stderr}");
            assert!(stderr.contains(&format!("lease table {app} does not exist")), "{stderr}");
        }

        let mut d = bed.start(&app, "rust");
        if refused && matches!(location, Location::CoordinatorState) {
            // A 3.x fleet of the 3.0-3.4 format is joined as a 3.x worker, which needs the
            // lease table's owner index: dynalite rejects it (moto hosts it; see
            // tests/e2e_kcl3_fleet.rs), so here the daemon stops with that error.
            let status = d.wait(Duration::from_secs(60));
            let log = d.log_text();
            assert_eq!(status.code(), Some(1), "{location:?} {cv}\n{}", daemon::tail(&log, 20));
            assert!(
                log.contains("create_owner_index") && log.contains("CLIENT_VERSION_CONFIG_COMPATIBLE_WITH_2X"),
                "{location:?} {cv}: names the index and the way out\n{}",
                daemon::tail(&log, 20)
            );
            assert!(!log.contains("must not join"), "{location:?} {cv}: joined, not refused");
        } else if refused {
            let status = d.wait(Duration::from_secs(60));
            let log = d.log_text();
            assert_eq!(status.code(), Some(78), "{location:?} {cv}: exit 78\n{}", daemon::tail(&log, 20));
            assert!(
                log.contains(&format!("KCL 3.x mode ({cv} in {table})")) && log.contains("must not join"),
                "{location:?} {cv}: clear message\n{}",
                daemon::tail(&log, 20)
            );
            let leases = bed.rt.block_on(daemon::leases(&bed.ddb, &app));
            let created: Vec<&String> = leases.keys().filter(|k| k.starts_with("shardId-")).collect();
            assert!(created.is_empty(), "{location:?} {cv}: no lease created, found {created:?}");
        } else {
            daemon::wait_for(
                &format!("{location:?} {cv}: multilangd to take both leases"),
                Duration::from_secs(60),
                || {
                    let leases = bed.rt.block_on(daemon::leases(&bed.ddb, &app));
                    leases.iter().filter(|(_, (owner, _))| owner.as_deref() == Some("rust")).count() == 2
                },
                || daemon::tail(&d.log_text(), 20),
            );
            stop(&mut d);
        }
        assert_eq!(
            bed.items(&table).get("Migration3.0"),
            Some(&migration),
            "{location:?} {cv}: Migration3.0 untouched"
        );
        println!("{location:?} {cv}: {}", if refused { "refused, exit 78" } else { "ran" });
    }
}

/// `multilangd leases` errors: a properties file it cannot load is a configuration error
/// (78); an unreachable DynamoDB is a runtime error (1), with clear messages.
#[test]
fn leases_command_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.properties");
    std::fs::write(&bad, "streamName = s\n").unwrap();
    let out = Command::new(support::multilangd_bin()).arg("leases").arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(78), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("multilangd:"));

    let port = emulators::free_port();
    let props =
        Props::local("app", "s", "/bin/true", &format!("http://127.0.0.1:{port}"), &format!("http://127.0.0.1:{port}"))
            .write(&dir.path().join("down.properties"));
    let out = Command::new(support::multilangd_bin())
        .arg("leases")
        .arg(&props)
        .env("AWS_ACCESS_KEY_ID", "x")
        .env("AWS_SECRET_ACCESS_KEY", "x")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot read the lease table"), "{stderr}");
    assert!(out.stdout.is_empty());
}
