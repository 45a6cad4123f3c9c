//! `DynamoLeaseStore` against dynalite: the shared conformance suite, the exact KCL 2.x item
//! format (raw attribute names and types), preservation of attributes we do not know,
//! KCL 3.5 non-lease items, `Migration3.0`, table creation, and SDK error classification
//! (against a tiny fake DynamoDB endpoint that returns canned errors).
#![allow(clippy::unwrap_used)] // test code: a failed setup step should panic with its error

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use aws_config::retry::RetryConfig;
use aws_config::BehaviorVersion;
use aws_sdk_dynamodb::config::{Credentials, Region};
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TableStatus,
};
use aws_sdk_dynamodb::Client;
use multilangd::lease::dynamodb::{DynamoLeaseStore, ATTEMPT_TIMEOUT, OPERATION_TIMEOUT};
use multilangd::lease::{conformance, HashKeyRange, Lease, LeaseError, LeaseStore, MigrationState};
use multilangd::sequence::{ExtendedSequenceNumber, Position, SequenceNumber};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use support::emulators::{self, free_port};

async fn client_with(endpoint: &str, retry: RetryConfig) -> Client {
    let config = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("x", "x", None, None, "test"))
        .endpoint_url(endpoint)
        .retry_config(retry)
        .load()
        .await;
    Client::new(&config)
}

async fn client(endpoint: &str) -> Client {
    client_with(endpoint, RetryConfig::standard()).await
}

fn store(client: &Client, table: &str) -> DynamoLeaseStore {
    DynamoLeaseStore::new(client.clone(), table.to_owned(), format!("{table}-CoordinatorState"))
}

/// A store whose table exists.
async fn ready_store(client: &Client, table: &str) -> DynamoLeaseStore {
    let store = store(client, table);
    store.ensure_table().await.unwrap();
    store
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn ss(values: &[&str]) -> AttributeValue {
    AttributeValue::Ss(values.iter().map(|v| (*v).to_owned()).collect())
}

fn seq(digits: &str, sub: u64) -> ExtendedSequenceNumber {
    ExtendedSequenceNumber::at(SequenceNumber::parse(digits).unwrap(), sub)
}

async fn put(client: &Client, table: &str, item: Vec<(&str, AttributeValue)>) {
    let item: HashMap<String, AttributeValue> = item.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    client.put_item().table_name(table).set_item(Some(item)).send().await.unwrap();
}

async fn raw(client: &Client, table: &str, key: &str) -> HashMap<String, AttributeValue> {
    client
        .get_item()
        .table_name(table)
        .key("leaseKey", s(key))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .unwrap_or_else(|| panic!("item {key} exists"))
}

/// Attribute name → DynamoDB type, for asserting the exact wire format.
fn types(item: &HashMap<String, AttributeValue>) -> BTreeMap<&str, &'static str> {
    item.iter()
        .map(|(name, value)| {
            let kind = match value {
                AttributeValue::S(_) => "S",
                AttributeValue::N(_) => "N",
                AttributeValue::B(_) => "B",
                AttributeValue::Ss(_) => "SS",
                AttributeValue::Ns(_) => "NS",
                AttributeValue::Bs(_) => "BS",
                AttributeValue::M(_) => "M",
                AttributeValue::L(_) => "L",
                AttributeValue::Bool(_) => "BOOL",
                AttributeValue::Null(_) => "NULL",
                _ => "?",
            };
            (name.as_str(), kind)
        })
        .collect()
}

#[tokio::test]
async fn conformance_suite_passes_on_dynalite() {
    let dynalite = emulators::start_dynalite();
    // Two independent clients of one table, like two workers.
    let a = store(&client(&dynalite.endpoint).await, "conformance");
    let b = store(&client(&dynalite.endpoint).await, "conformance");
    conformance::run_all(&a, &b).await;
}

#[tokio::test]
async fn table_and_created_item_have_exactly_the_java_format() {
    let dynalite = emulators::start_dynalite();
    let client = client(&dynalite.endpoint).await;
    let store = store(&client, "format");
    assert!(store.ensure_table().await.unwrap());

    let table = client.describe_table().table_name("format").send().await.unwrap().table.unwrap();
    assert_eq!(table.table_status(), Some(&TableStatus::Active));
    let keys: Vec<_> = table.key_schema().iter().map(|k| (k.attribute_name(), k.key_type().clone())).collect();
    assert_eq!(keys, [("leaseKey", KeyType::Hash)]);
    let definitions: Vec<_> =
        table.attribute_definitions().iter().map(|d| (d.attribute_name(), d.attribute_type().clone())).collect();
    assert_eq!(definitions, [("leaseKey", ScalarAttributeType::S)]);
    assert_eq!(table.billing_mode_summary().and_then(|b| b.billing_mode()), Some(&BillingMode::PayPerRequest));

    // A child lease as shard sync creates it: unowned, TRIM_HORIZON, parent and hash keys.
    let child = Lease {
        parent_shard_ids: BTreeSet::from(["shardId-000000000000".to_owned()]),
        hash_key_range: Some(HashKeyRange {
            starting: "0".into(),
            ending: "170141183460469231731687303715884105727".into(),
        }),
        ..Lease::new("shardId-000000000002", ExtendedSequenceNumber::new(Position::TrimHorizon))
    };
    assert!(store.create_lease_if_absent(&child).await.unwrap());
    let item = raw(&client, "format", "shardId-000000000002").await;
    assert_eq!(
        types(&item),
        BTreeMap::from([
            ("checkpoint", "S"),
            ("checkpointSubSequenceNumber", "N"),
            ("endingHashKey", "S"),
            ("entityType", "S"),
            ("leaseCounter", "N"),
            ("leaseKey", "S"),
            ("ownerSwitchesSinceCheckpoint", "N"),
            ("parentShardId", "SS"),
            ("startingHashKey", "S"),
        ])
    );
    assert_eq!(item["checkpoint"], s("TRIM_HORIZON"));
    assert_eq!(item["leaseCounter"], n(0));
    assert_eq!(item["checkpointSubSequenceNumber"], n(0));
    assert_eq!(item["ownerSwitchesSinceCheckpoint"], n(0));
    assert_eq!(item["entityType"], s("LEASE"));
    assert_eq!(item["parentShardId"], ss(&["shardId-000000000000"]));
    assert_eq!(item["startingHashKey"], s("0"));

    // After take, checkpoint and SHARD_END bookkeeping: still only Java's names and types.
    assert!(store.take_lease(&child, "worker-1").await.unwrap());
    let taken = store.get_lease("shardId-000000000002").await.unwrap().unwrap();
    assert!(store
        .update_checkpoint(&taken, &seq("49590338271490256608559692538361571095921575989136588898", 4))
        .await
        .unwrap());
    let children = BTreeSet::from(["shardId-000000000005".to_owned(), "shardId-000000000006".to_owned()]);
    assert!(store.update_child_shard_ids("shardId-000000000002", &children).await.unwrap());
    let item = raw(&client, "format", "shardId-000000000002").await;
    let kinds = types(&item);
    assert_eq!(kinds.get("leaseOwner"), Some(&"S"));
    assert_eq!(kinds.get("childShardIds"), Some(&"SS"));
    assert_eq!(kinds.len(), 11, "{kinds:?}");
    assert_eq!(item["leaseOwner"], s("worker-1"));
    assert_eq!(item["leaseCounter"], n(2));
    assert_eq!(item["checkpoint"], s("49590338271490256608559692538361571095921575989136588898"));
    assert_eq!(item["checkpointSubSequenceNumber"], n(4));

    // Pending checkpoint fields as Java writes them (pendingCheckpointState is B).
    let pending = Lease {
        pending_checkpoint: Some(seq("12", 1)),
        pending_checkpoint_state: Some(vec![1, 2, 3]),
        ..Lease::new("shardId-000000000009", ExtendedSequenceNumber::new(Position::Latest))
    };
    assert!(store.create_lease_if_absent(&pending).await.unwrap());
    let item = raw(&client, "format", "shardId-000000000009").await;
    let kinds = types(&item);
    assert_eq!(
        (kinds["pendingCheckpoint"], kinds["pendingCheckpointSubSequenceNumber"], kinds["pendingCheckpointState"]),
        ("S", "N", "B")
    );
    assert_eq!(item["pendingCheckpointState"], AttributeValue::B(Blob::new(vec![1, 2, 3])));
}

#[tokio::test]
async fn items_written_by_the_java_daemon_parse() {
    let dynalite = emulators::start_dynalite();
    let client = client(&dynalite.endpoint).await;
    let store = ready_store(&client, "java").await;
    // Exactly the shape KCL 2.5.8 leaves (testbed README, "Lease table"): no entityType.
    put(
        &client,
        "java",
        vec![
            ("leaseKey", s("shardId-000000000000")),
            ("leaseOwner", s("6f1c1e0a-5a8e-4a59-9c55-0d6a7f0f4b1e")),
            ("leaseCounter", n(57)),
            ("checkpoint", s("SHARD_END")),
            ("checkpointSubSequenceNumber", n(0)),
            ("ownerSwitchesSinceCheckpoint", n(0)),
            ("startingHashKey", s("0")),
            ("endingHashKey", s("340282366920938463463374607431768211455")),
            ("childShardIds", ss(&["shardId-000000000002", "shardId-000000000003"])),
        ],
    )
    .await;
    put(
        &client,
        "java",
        vec![
            ("leaseKey", s("shardId-000000000002")),
            ("leaseCounter", n(0)),
            ("checkpoint", s("TRIM_HORIZON")),
            ("checkpointSubSequenceNumber", n(0)),
            ("ownerSwitchesSinceCheckpoint", n(0)),
            ("startingHashKey", s("0")),
            ("endingHashKey", s("170141183460469231731687303715884105727")),
            ("parentShardId", ss(&["shardId-000000000000"])),
        ],
    )
    .await;
    let parent = store.get_lease("shardId-000000000000").await.unwrap().unwrap();
    assert_eq!(
        parent,
        Lease {
            owner: Some("6f1c1e0a-5a8e-4a59-9c55-0d6a7f0f4b1e".into()),
            counter: 57,
            child_shard_ids: BTreeSet::from(["shardId-000000000002".to_owned(), "shardId-000000000003".to_owned()]),
            hash_key_range: Some(HashKeyRange {
                starting: "0".into(),
                ending: "340282366920938463463374607431768211455".into()
            }),
            ..Lease::new("shardId-000000000000", ExtendedSequenceNumber::shard_end())
        }
    );
    let child = store.get_lease("shardId-000000000002").await.unwrap().unwrap();
    assert_eq!(child.owner, None);
    assert_eq!(child.parent_shard_ids, BTreeSet::from(["shardId-000000000000".to_owned()]));
    assert_eq!(child.checkpoint, ExtendedSequenceNumber::new(Position::TrimHorizon));
    let scan = store.list_leases().await.unwrap();
    assert_eq!(scan.leases.len(), 2);
    assert!(scan.malformed.is_empty());
    // Our writes to a Java lease add nothing Java does not know.
    assert!(store.take_lease(&child, "rust-worker").await.unwrap());
    let item = raw(&client, "java", "shardId-000000000002").await;
    assert!(!item.contains_key("entityType"), "only creation writes entityType");
    assert_eq!(item["ownerSwitchesSinceCheckpoint"], n(0), "unowned → owned is not an owner switch");
}

#[tokio::test]
async fn unknown_attributes_survive_every_write() {
    let dynalite = emulators::start_dynalite();
    let client = client(&dynalite.endpoint).await;
    let store = ready_store(&client, "preserve").await;
    put(
        &client,
        "preserve",
        vec![
            ("leaseKey", s("shardId-000000000001")),
            ("leaseOwner", s("java-3x-worker")),
            ("leaseCounter", n(10)),
            ("checkpoint", s("4959")),
            ("checkpointSubSequenceNumber", n(0)),
            ("ownerSwitchesSinceCheckpoint", n(2)),
            ("entityType", s("LEASE")),
            ("throughputKBps", AttributeValue::N("12.345678".into())),
            ("checkpointOwner", s("java-3x-worker")),
            ("someFutureAttr", AttributeValue::M(HashMap::from([("x".to_owned(), n(1))]))),
        ],
    )
    .await;
    let foreign = ["throughputKBps", "someFutureAttr", "entityType"];
    let assert_kept = |item: &HashMap<String, AttributeValue>, step: &str| {
        for name in foreign {
            assert!(item.contains_key(name), "{name} lost after {step}: {item:?}");
        }
        assert_eq!(item["throughputKBps"], AttributeValue::N("12.345678".into()), "after {step}");
    };

    let lease = store.get_lease("shardId-000000000001").await.unwrap().unwrap();
    assert_eq!(lease.checkpoint_owner.as_deref(), Some("java-3x-worker"), "checkpointOwner is kept in the model");
    assert!(store.renew_lease(&lease).await.unwrap());
    let item = raw(&client, "preserve", "shardId-000000000001").await;
    assert_kept(&item, "renew");
    assert_eq!(item["checkpointOwner"], s("java-3x-worker"), "renew leaves checkpointOwner alone");

    let lease = store.get_lease("shardId-000000000001").await.unwrap().unwrap();
    assert!(store.update_checkpoint(&lease, &seq("5000", 0)).await.unwrap());
    assert_kept(&raw(&client, "preserve", "shardId-000000000001").await, "checkpoint");
    assert!(store.update_child_shard_ids("shardId-000000000001", &BTreeSet::from(["c".to_owned()])).await.unwrap());
    let range = HashKeyRange { starting: "1".into(), ending: "2".into() };
    assert!(store.update_hash_key_range("shardId-000000000001", &range).await.unwrap());
    assert_kept(&raw(&client, "preserve", "shardId-000000000001").await, "meta updates");

    let lease = store.get_lease("shardId-000000000001").await.unwrap().unwrap();
    assert!(store.take_lease(&lease, "rust-worker").await.unwrap());
    let item = raw(&client, "preserve", "shardId-000000000001").await;
    assert_kept(&item, "take");
    assert!(!item.contains_key("checkpointOwner"), "take removes checkpointOwner");
    assert_eq!(item["leaseOwner"], s("rust-worker"));
    assert_eq!(item["ownerSwitchesSinceCheckpoint"], n(1), "checkpoint reset it, the take counted one switch");

    let lease = store.get_lease("shardId-000000000001").await.unwrap().unwrap();
    assert!(store.release_lease(&lease).await.unwrap());
    let item = raw(&client, "preserve", "shardId-000000000001").await;
    assert_kept(&item, "release");
    assert!(!item.contains_key("leaseOwner"));
    assert_eq!(item["leaseCounter"], n(14));
}

#[tokio::test]
async fn scan_skips_non_lease_items_and_reports_malformed_ones() {
    let dynalite = emulators::start_dynalite();
    let client = client(&dynalite.endpoint).await;
    // Small pages so the items are spread over several Scan calls.
    let store = ready_store(&client, "mixed").await.with_scan_page_limit(Some(2));
    for i in 0..3 {
        let lease = Lease::new(format!("shardId-00000000000{i}"), ExtendedSequenceNumber::new(Position::Latest));
        assert!(store.create_lease_if_absent(&lease).await.unwrap());
    }
    // KCL 3.5 single-table items.
    put(
        &client,
        "mixed",
        vec![
            ("leaseKey", s("worker-a")),
            ("entityType", s("WORKER_METRIC_STATS")),
            ("lut", n(1_790_000_000)),
            ("sts", AttributeValue::M(HashMap::from([("CPU".to_owned(), AttributeValue::L(vec![n(10), n(20)]))]))),
            ("sup", n(1)),
        ],
    )
    .await;
    put(
        &client,
        "mixed",
        vec![
            ("leaseKey", s("Leader")),
            ("entityType", s("LEADER")),
            ("ownerName", s("worker-a")),
            ("leaseDuration", s("120000")),
            ("recordVersionNumber", s("5f0e1c3a-0000-4000-8000-000000000000")),
        ],
    )
    .await;
    put(
        &client,
        "mixed",
        vec![
            ("leaseKey", s("Migration3.0")),
            ("entityType", s("CLIENT_VERSION_MIGRATION")),
            ("cv", s("CLIENT_VERSION_UPGRADE_FROM_2X")),
            ("mb", s("worker-a")),
            ("mts", n(1_790_000_000_000)),
        ],
    )
    .await;
    // Items that claim to be leases but are broken (KCL <= 2.7 would abort its scan).
    put(&client, "mixed", vec![("leaseKey", s("broken-no-counter")), ("checkpoint", s("LATEST"))]).await;
    put(
        &client,
        "mixed",
        vec![("leaseKey", s("broken-counter-type")), ("leaseCounter", s("7")), ("checkpoint", s("LATEST"))],
    )
    .await;

    let scan = store.list_leases().await.unwrap();
    let mut keys: Vec<_> = scan.leases.iter().map(|l| l.key.clone()).collect();
    keys.sort();
    assert_eq!(keys, ["shardId-000000000000", "shardId-000000000001", "shardId-000000000002"]);
    let mut broken: Vec<_> = scan
        .malformed
        .iter()
        .map(|e| match e {
            LeaseError::Malformed { key, reason, .. } => (key.clone(), reason.clone()),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    broken.sort();
    assert_eq!(broken.len(), 2, "{broken:?}");
    assert_eq!(broken[0].0, "broken-counter-type");
    assert!(broken[0].1.contains("leaseCounter must be N"), "{}", broken[0].1);
    assert_eq!(broken[1], ("broken-no-counter".to_owned(), "missing leaseCounter".to_owned()));

    assert_eq!(store.get_lease("worker-a").await.unwrap(), None);
    assert_eq!(store.get_lease("Leader").await.unwrap(), None);
    assert!(matches!(store.get_lease("broken-no-counter").await, Err(LeaseError::Malformed { .. })));
    // The migration item in the lease table is read by migration_state.
    assert_eq!(
        store.migration_state().await.unwrap(),
        Some(MigrationState { client_version: "CLIENT_VERSION_UPGRADE_FROM_2X".into(), table: "mixed".into() })
    );
}

async fn create_coordinator_table(client: &Client, table: &str) {
    client
        .create_table()
        .table_name(table)
        .key_schema(KeySchemaElement::builder().attribute_name("key").key_type(KeyType::Hash).build().unwrap())
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("key")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn migration_state_is_read_from_the_lease_table_or_coordinator_state() {
    let dynalite = emulators::start_dynalite();
    let client = client(&dynalite.endpoint).await;
    let store = ready_store(&client, "app").await;
    assert_eq!(store.migration_state().await.unwrap(), None, "no CoordinatorState table, no item");

    create_coordinator_table(&client, "app-CoordinatorState").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(store.migration_state().await.unwrap(), None, "table without the item");
    client
        .put_item()
        .table_name("app-CoordinatorState")
        .item("key", s("Migration3.0"))
        .item("cv", s("CLIENT_VERSION_3X_WITH_ROLLBACK"))
        .item("mb", s("worker-x"))
        .send()
        .await
        .unwrap();
    let state = store.migration_state().await.unwrap().unwrap();
    assert_eq!(
        state,
        MigrationState {
            client_version: "CLIENT_VERSION_3X_WITH_ROLLBACK".into(),
            table: "app-CoordinatorState".into()
        }
    );
    assert!(state.is_3x_mode());

    // 3.5 single-table: the lease table's item wins.
    put(
        &client,
        "app",
        vec![
            ("leaseKey", s("Migration3.0")),
            ("entityType", s("CLIENT_VERSION_MIGRATION")),
            ("cv", s("CLIENT_VERSION_2X")),
        ],
    )
    .await;
    let state = store.migration_state().await.unwrap().unwrap();
    assert_eq!(state, MigrationState { client_version: "CLIENT_VERSION_2X".into(), table: "app".into() });
    assert!(!state.is_3x_mode());

    put(&client, "app", vec![("leaseKey", s("Migration3.0")), ("cv", n(3))]).await;
    assert!(matches!(store.migration_state().await, Err(LeaseError::Malformed { .. })), "cv must be a string");
}

/// dynalite with slow table creation, started here because the shared helper uses 0 ms.
struct SlowDynalite {
    endpoint: String,
    child: Child,
}

impl SlowDynalite {
    fn start(create_table_ms: u32) -> Self {
        let port = free_port();
        let cli = support::testbed_dir().join("emu/node_modules/dynalite/cli.js");
        let child = Command::new("node")
            .arg(cli)
            .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--createTableMs", &create_table_ms.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start dynalite");
        let started = Instant::now();
        while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(30), "dynalite did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { endpoint: format!("http://127.0.0.1:{port}"), child }
    }
}

impl Drop for SlowDynalite {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn ensure_table_waits_for_active_and_tolerates_concurrent_creators() {
    let dynalite = SlowDynalite::start(700);
    let client = client(&dynalite.endpoint).await;
    let a = store(&client, "slow");
    let b = store(&client, "slow");
    let started = Instant::now();
    let (created_a, created_b) = tokio::join!(a.ensure_table(), b.ensure_table());
    let waited = started.elapsed();
    let (created_a, created_b) = (created_a.unwrap(), created_b.unwrap());
    assert!(created_a ^ created_b, "exactly one creator (a={created_a}, b={created_b})");
    assert!(waited >= Duration::from_millis(700), "returned before ACTIVE: {waited:?}");
    // Java polls every 10 s; our backoff (50 ms doubling to 1 s) finishes well within 5 s.
    assert!(waited < Duration::from_secs(5), "polls quickly: {waited:?}");
    let status = client.describe_table().table_name("slow").send().await.unwrap().table.unwrap().table_status;
    assert_eq!(status, Some(TableStatus::Active));
    assert!(!a.ensure_table().await.unwrap());

    let impatient = store(&client, "slow-2").with_table_active_timeout(Duration::from_millis(200));
    match impatient.ensure_table().await {
        Err(LeaseError::Dependency { message, .. }) => assert!(message.contains("ACTIVE"), "{message}"),
        other => panic!("expected a timeout error, got {other:?}"),
    }
}

/// A fake DynamoDB endpoint answering every request with one canned HTTP response.
struct FakeDynamo {
    endpoint: String,
    requests: Arc<std::sync::atomic::AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeDynamo {
    fn start(status: u16, body: &'static str) -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let thread = std::thread::spawn({
            let stop = Arc::clone(&stop);
            let requests = Arc::clone(&requests);
            move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            requests.fetch_add(1, Ordering::Relaxed);
                            answer(stream, status, body);
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            }
        });
        Self { endpoint, requests, stop, thread: Some(thread) }
    }
}

fn answer(mut stream: TcpStream, status: u16, body: &str) {
    stream.set_nonblocking(false).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut request = Vec::new();
    let mut buf = [0_u8; 4096];
    let header_end = loop {
        let read = stream.read(&mut buf).unwrap_or(0);
        if read == 0 {
            return;
        }
        request.extend_from_slice(&buf[..read]);
        if let Some(pos) = request.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
    };
    let headers = String::from_utf8_lossy(&request[..header_end]).to_ascii_lowercase();
    let length: usize = headers
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap_or(0));
    while request.len() < header_end + length {
        let read = stream.read(&mut buf).unwrap_or(0);
        if read == 0 {
            break;
        }
        request.extend_from_slice(&buf[..read]);
    }
    let response = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/x-amz-json-1.0\r\nx-amzn-RequestId: fake\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes());
}

impl Drop for FakeDynamo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn fake_store(fake: &FakeDynamo) -> DynamoLeaseStore {
    fake_store_at(&fake.endpoint).await
}

#[tokio::test]
async fn sdk_errors_are_classified() {
    let lease = Lease { owner: Some("me".into()), ..Lease::new("s", ExtendedSequenceNumber::new(Position::Latest)) };
    for code in ["ProvisionedThroughputExceededException", "RequestLimitExceeded", "ThrottlingException"] {
        let body = Box::leak(
            format!(r#"{{"__type":"com.amazonaws.dynamodb.v20120810#{code}","message":"slow down"}}"#).into_boxed_str(),
        );
        let fake = FakeDynamo::start(400, body);
        let store = fake_store(&fake).await;
        match store.renew_lease(&lease).await {
            Err(LeaseError::Throttled { table, operation }) => {
                assert_eq!((table.as_str(), operation), ("fake", "renew_lease"))
            }
            other => panic!("{code}: expected Throttled, got {other:?}"),
        }
        assert!(matches!(store.list_leases().await, Err(LeaseError::Throttled { operation: "scan", .. })), "{code}");
    }

    let fake = FakeDynamo::start(
        400,
        r#"{"__type":"com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException","message":"The conditional request failed"}"#,
    );
    let store = fake_store(&fake).await;
    assert!(!store.release_lease(&lease).await.unwrap(), "condition failure is Ok(false)");
    assert_eq!(fake.requests.load(Ordering::Relaxed), 1, "condition failures are not retried");

    let fake = FakeDynamo::start(
        400,
        r#"{"__type":"com.amazonaws.dynamodb.v20120810#ResourceNotFoundException","message":"Requested resource not found"}"#,
    );
    let store = fake_store(&fake).await;
    assert!(matches!(store.get_lease("s").await, Err(LeaseError::TableMissing { .. })));
    assert_eq!(
        store.migration_state().await.err().map(|e| e.to_string()),
        Some("lease table fake does not exist".into())
    );

    let fake = FakeDynamo::start(
        400,
        r#"{"__type":"com.amazon.coral.validate#ValidationException","message":"One or more parameter values were invalid"}"#,
    );
    let store = fake_store(&fake).await;
    match store.take_lease(&lease, "me").await {
        Err(LeaseError::Dependency { operation, message, .. }) => {
            assert_eq!(operation, "take_lease");
            assert!(message.contains("ValidationException") && message.contains("parameter values"), "{message}");
        }
        other => panic!("expected Dependency, got {other:?}"),
    }

    let fake =
        FakeDynamo::start(500, r#"{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"oops"}"#);
    let store = fake_store(&fake).await;
    assert!(matches!(store.delete_lease("s").await, Err(LeaseError::Dependency { operation: "delete_lease", .. })));
    assert_eq!(fake.requests.load(Ordering::Relaxed), 2, "server errors are retried by the SDK");
}

#[tokio::test]
async fn unreachable_endpoint_is_a_dependency_error_and_timeouts_are_set() {
    let port = free_port(); // nothing listens here
    let store = fake_store_at(&format!("http://127.0.0.1:{port}")).await;
    match store.get_lease("s").await {
        Err(LeaseError::Dependency { operation: "get_lease", message, .. }) => {
            assert!(message.to_lowercase().contains("connect") || message.contains("dispatch"), "{message}");
        }
        other => panic!("expected Dependency, got {other:?}"),
    }
    let timeouts = store.client().config().timeout_config().unwrap();
    assert_eq!(timeouts.operation_attempt_timeout(), Some(ATTEMPT_TIMEOUT));
    assert_eq!(timeouts.operation_timeout(), Some(OPERATION_TIMEOUT));
}

async fn fake_store_at(endpoint: &str) -> DynamoLeaseStore {
    let retry = RetryConfig::standard().with_max_attempts(2).with_initial_backoff(Duration::from_millis(1));
    store(&client_with(endpoint, retry).await, "fake")
}
