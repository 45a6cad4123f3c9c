//! The KCL 3.x test bed: moto server as DynamoDB and the reference Java MultiLangDaemon 3.1.3.
//!
//! * moto accepts what the 3.x daemon does to the lease table (an on-demand table gaining the
//!   `LeaseOwnerToLeaseKeyIndex` GSI through UpdateTable), which dynalite rejects.
//! * Java 3.1.3 starts a brand-new application on kinesis-local + moto, processes every record,
//!   and leaves the 3.x side tables behind. The shapes of everything it wrote (key schemas, the
//!   GSI, attribute names and types, constant values) are compared with the fixtures in
//!   `tests/fixtures/kcl3-java-3.1.3/`, which multilangd's 3.x writers are checked against too.
//!   `MULTILANGD_UPDATE_FIXTURES=1` rewrites the fixtures from the run instead.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndexUpdate, KeySchemaElement, KeyType,
    Projection, ProjectionType, ScalarAttributeType,
};
use serde_json::{json, Value};
use support::daemon::{self, Daemon, Kind, Props};
use support::emulators;
use support::sample_apps::{read_ledger, Processor};

const STREAM: &str = "trips";
const GSI: &str = "LeaseOwnerToLeaseKeyIndex";

fn fixtures_dir() -> PathBuf {
    support::repo_dir().join("tests/fixtures/kcl3-java-3.1.3")
}

/// The type structure of an attribute value: `"S"`, `"N"`, `{"M": {name: shape}}`,
/// `{"L": [distinct element shapes]}`.
fn shape(value: &AttributeValue) -> Value {
    match value {
        AttributeValue::M(map) => {
            json!({ "M": map.iter().map(|(k, v)| (k.clone(), shape(v))).collect::<BTreeMap<_, _>>() })
        }
        AttributeValue::L(list) => {
            let mut shapes: Vec<Value> = Vec::new();
            for element in list {
                let s = shape(element);
                if !shapes.contains(&s) {
                    shapes.push(s);
                }
            }
            json!({ "L": shapes })
        }
        other => json!(daemon::type_of(other)),
    }
}

/// Attribute name → shape, merged over `items` (an attribute missing from some items is
/// listed under `optional`).
fn item_shapes(items: &[HashMap<String, AttributeValue>]) -> Value {
    let mut shapes: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for item in items {
        for (name, value) in item {
            shapes.entry(name.clone()).or_default().insert(shape(value).to_string());
            *counts.entry(name.clone()).or_default() += 1;
        }
    }
    let attributes: BTreeMap<String, Value> = shapes
        .into_iter()
        .map(|(name, set)| {
            let parsed: Vec<Value> = set.iter().map(|s| serde_json::from_str(s).unwrap()).collect();
            (name, if parsed.len() == 1 { parsed[0].clone() } else { Value::Array(parsed) })
        })
        .collect();
    let optional: Vec<&String> = counts.iter().filter(|(_, n)| **n < items.len()).map(|(k, _)| k).collect();
    json!({ "attributes": attributes, "optional": optional })
}

async fn table_shape(ddb: &aws_sdk_dynamodb::Client, table: &str) -> Value {
    let description = ddb.describe_table().table_name(table).send().await.unwrap();
    let t = description.table().unwrap();
    let keys: Vec<Value> = t.key_schema().iter().map(|k| json!([k.attribute_name(), k.key_type().as_str()])).collect();
    let mut definitions: Vec<Value> =
        t.attribute_definitions().iter().map(|d| json!([d.attribute_name(), d.attribute_type().as_str()])).collect();
    definitions.sort_by_key(ToString::to_string);
    let indexes: Vec<Value> = t
        .global_secondary_indexes()
        .iter()
        .map(|g| {
            json!({
                "name": g.index_name(),
                "keys": g.key_schema().iter().map(|k| json!([k.attribute_name(), k.key_type().as_str()])).collect::<Vec<_>>(),
                "projection": g.projection().and_then(|p| p.projection_type()).map(|p| p.as_str().to_owned()),
            })
        })
        .collect();
    let billing = t.billing_mode_summary().and_then(|b| b.billing_mode()).map(|b| b.as_str().to_owned());
    json!({ "keys": keys, "attributeDefinitions": definitions, "globalSecondaryIndexes": indexes, "billingMode": billing })
}

fn s(item: &HashMap<String, AttributeValue>, name: &str) -> String {
    item.get(name).and_then(|v| v.as_s().ok()).cloned().unwrap_or_else(|| panic!("{name} missing in {item:?}"))
}

/// Compares `actual` with the fixture `name` (or rewrites it under MULTILANGD_UPDATE_FIXTURES).
fn check_fixture(name: &str, actual: &Value) {
    let path = fixtures_dir().join(name);
    let text = serde_json::to_string_pretty(actual).unwrap() + "\n";
    if std::env::var_os("MULTILANGD_UPDATE_FIXTURES").is_some() {
        std::fs::create_dir_all(fixtures_dir()).unwrap();
        std::fs::write(&path, text).unwrap();
        return;
    }
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display())),
    )
    .unwrap();
    assert_eq!(&expected, actual, "Java 3.1.3 wrote something else than {}:\n{text}", path.display());
}

#[test]
fn moto_accepts_the_gsi_on_an_on_demand_lease_table() {
    let moto = emulators::start_moto();
    let rt = support::runtime();
    let (_, ddb) = rt.block_on(daemon::clients("http://127.0.0.1:9", &moto.endpoint));
    rt.block_on(async {
        ddb.create_table()
            .table_name("app")
            .key_schema(KeySchemaElement::builder().attribute_name("leaseKey").key_type(KeyType::Hash).build().unwrap())
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("leaseKey")
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .unwrap(),
            )
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await
            .unwrap();
        let index = aws_sdk_dynamodb::types::CreateGlobalSecondaryIndexAction::builder()
            .index_name(GSI)
            .key_schema(
                KeySchemaElement::builder().attribute_name("leaseOwner").key_type(KeyType::Hash).build().unwrap(),
            )
            .key_schema(
                KeySchemaElement::builder().attribute_name("leaseKey").key_type(KeyType::Range).build().unwrap(),
            )
            .projection(Projection::builder().projection_type(ProjectionType::KeysOnly).build())
            .build()
            .unwrap();
        ddb.update_table()
            .table_name("app")
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("leaseOwner")
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .unwrap(),
            )
            .global_secondary_index_updates(GlobalSecondaryIndexUpdate::builder().create(index).build())
            .send()
            .await
            .unwrap();
        let shape = table_shape(&ddb, "app").await;
        assert_eq!(shape["globalSecondaryIndexes"][0]["name"], GSI, "{shape}");
    });
    let pid = moto.pid();
    drop(moto);
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "moto pid {pid} still running");
}

/// Java 3.1.3 on a brand-new application: every record processed; the three tables and their
/// items have the shapes of the fixtures.
#[test]
fn java_3_1_3_new_application_writes_the_3x_tables() {
    const RECORDS: usize = 200;
    let dir = tempfile::Builder::new().prefix("java3-").tempdir().unwrap();
    let kinesis = emulators::start_kinesis_local();
    let moto = emulators::start_moto();
    let rt = support::runtime();
    let (_, ddb) = rt.block_on(daemon::clients(&kinesis.endpoint, &moto.endpoint));
    let sent = dir.path().join("sent.jsonl");
    daemon::produce(&kinesis.endpoint, STREAM, 2, RECORDS, &sent);

    let app = "java3app";
    let ledger = dir.path().join("java3.ledger");
    let props = Props::local(
        app,
        STREAM,
        &Processor::PythonV3.executable_name(&ledger, None, &[]),
        &kinesis.endpoint,
        &moto.endpoint,
    )
    .for_java3()
    .unset("clientVersionConfig") // Java's default: a new application in 3.x mode
    .set("workerId", "java3-worker-1")
    .write(&dir.path().join("java3.properties"));
    let mut java = Daemon::start(Kind::Java3, &props, &dir.path().join("java3.log"));
    let started = Instant::now();

    let context = || daemon::tail(&java.log_text(), 60);
    // The 3.x start-up (lease table, random empty-table wait, coordinator state, GSI wait of
    // 10 s polls, leader election) takes about a minute before the first record.
    daemon::wait_for(
        "Java 3.1.3 to process every record",
        Duration::from_secs(150),
        || read_ledger(&ledger).len() >= RECORDS,
        context,
    );
    let first_record_after = started.elapsed();
    // Renewals (every failover/3) add throughputKBps; the reporter publishes WorkerMetricStats.
    daemon::wait_for(
        "renewals with throughputKBps and a WorkerMetricStats item",
        Duration::from_secs(60),
        || {
            rt.block_on(async {
                let leases = daemon::items(&ddb, app).await;
                let metrics = daemon::items(&ddb, &format!("{app}-WorkerMetricStats")).await;
                leases.len() == 2 && leases.iter().all(|l| l.contains_key("throughputKBps")) && !metrics.is_empty()
            })
        },
        context,
    );
    let (leases, coordinator, metrics, shapes) = rt.block_on(async {
        let leases = daemon::items(&ddb, app).await;
        let coordinator = daemon::items(&ddb, &format!("{app}-CoordinatorState")).await;
        let metrics = daemon::items(&ddb, &format!("{app}-WorkerMetricStats")).await;
        let shapes = json!({
            "leaseTable": table_shape(&ddb, app).await,
            "coordinatorState": table_shape(&ddb, &format!("{app}-CoordinatorState")).await,
            "workerMetricStats": table_shape(&ddb, &format!("{app}-WorkerMetricStats")).await,
        });
        (leases, coordinator, metrics, shapes)
    });
    java.kill9();
    eprintln!("Java 3.1.3: all {RECORDS} records processed {first_record_after:?} after launch (upper bound of time to first record)");

    check_fixture("tables.json", &shapes);

    // The lease items: 2.x attributes plus throughputKBps; owned by the one worker.
    assert_eq!(leases.len(), 2, "{leases:?}");
    for lease in &leases {
        assert_eq!(s(lease, "leaseOwner"), "java3-worker-1");
        assert!(lease.contains_key("throughputKBps"), "{lease:?}");
        assert!(!lease.contains_key("checkpointOwner"), "{lease:?}");
    }
    let mut lease_shapes = item_shapes(&leases);
    // Hash keys and checkpoints differ per shard; only names and types are compared.
    lease_shapes["count"] = json!(leases.len());
    check_fixture("lease-items.json", &lease_shapes);

    let by_key: BTreeMap<String, &HashMap<String, AttributeValue>> =
        coordinator.iter().map(|item| (s(item, "key"), item)).collect();
    let migration = by_key.get("Migration3.0").expect("Migration3.0 item");
    let leader = by_key.get("Leader").expect("Leader lock item");
    assert_eq!(s(migration, "cv"), "CLIENT_VERSION_3X");
    assert_eq!(s(migration, "mb"), "java3-worker-1");
    assert_eq!(s(leader, "ownerName"), "java3-worker-1");
    assert_eq!(s(leader, "leaseDuration"), "120000");
    let history = migration.get("h").and_then(|h| h.as_l().ok()).expect("h is a list");
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].as_m().unwrap().get("cv").and_then(|v| v.as_s().ok()).unwrap(), "CLIENT_VERSION_INIT");
    check_fixture(
        "coordinator-state-items.json",
        &json!({
            "Migration3.0": item_shapes(&[(*migration).clone()]),
            "Leader": item_shapes(&[(*leader).clone()]),
            "keys": by_key.keys().collect::<Vec<_>>(),
        }),
    );

    assert_eq!(metrics.len(), 1, "{metrics:?}");
    let worker = &metrics[0];
    assert_eq!(s(worker, "wid"), "java3-worker-1");
    // Off EC2/ECS/EKS Java publishes no metric: a "default metric" worker with empty maps.
    assert_eq!(worker.get("sts"), Some(&AttributeValue::M(HashMap::new())), "{worker:?}");
    assert_eq!(worker.get("opr"), Some(&AttributeValue::M(HashMap::new())), "{worker:?}");
    check_fixture("worker-metric-stats-items.json", &item_shapes(&metrics));
}
