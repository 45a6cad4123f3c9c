//! The KCL 3.x stores against DynamoDB emulators: the shared conformance suites of
//! `multilangd::lease::kcl3::conformance` on moto (everything) and dynalite (the side tables;
//! dynalite rejects the on-demand GSI), and the items multilangd writes compared with what the
//! Java KCL 3.1.3 daemon wrote (`tests/fixtures/kcl3-java-3.1.3/`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use multilangd::lease::dynamodb::DynamoLeaseStore;
use multilangd::lease::kcl3::coordinator::{CoordinatorStateStore, DynamoCoordinatorStore};
use multilangd::lease::kcl3::lease_table::{IndexState, Kcl3LeaseTable, Renewal};
use multilangd::lease::kcl3::lock::{LeaderLock, Leadership};
use multilangd::lease::kcl3::worker_metrics::{DynamoWorkerMetricsStore, WorkerMetricsStore};
use multilangd::lease::kcl3::{conformance, ClientVersion, MigrationRecord, WorkerMetricStats};
use multilangd::lease::{Lease, LeaseStore};
use multilangd::sequence::{ExtendedSequenceNumber, Position};
use serde_json::Value;
use support::daemon;
use support::emulators;

async fn client(endpoint: &str) -> Client {
    daemon::clients("http://127.0.0.1:9", endpoint).await.1
}

fn lease_store(client: &Client, table: &str) -> DynamoLeaseStore {
    DynamoLeaseStore::new(client.clone(), table.to_owned(), format!("{table}-CoordinatorState"))
}

fn fixture(name: &str) -> Value {
    let path = support::repo_dir().join("tests/fixtures/kcl3-java-3.1.3").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// Attribute name → DynamoDB type letter (maps/lists as `M`/`L`).
fn types(item: &HashMap<String, AttributeValue>) -> BTreeMap<String, String> {
    item.iter().map(|(k, v)| (k.clone(), daemon::type_of(v).to_owned())).collect()
}

/// The same from a fixture's `attributes` (shape values `"S"`, `{"M": ..}`, `{"L": ..}`).
fn fixture_types(shapes: &Value) -> BTreeMap<String, String> {
    shapes["attributes"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let t = match v {
                Value::String(t) => t.clone(),
                Value::Object(o) => o.keys().next().unwrap().clone(),
                other => panic!("unexpected shape {other}"),
            };
            (k.clone(), t)
        })
        .collect()
}

#[test]
fn conformance_on_moto() {
    let moto = emulators::start_moto();
    support::runtime().block_on(async {
        let client = client(&moto.endpoint).await;
        conformance::coordinator(&DynamoCoordinatorStore::new(client.clone(), "app-CoordinatorState".into())).await;
        conformance::worker_metrics(&DynamoWorkerMetricsStore::new(client.clone(), "app-WorkerMetricStats".into()))
            .await;
        let leases = lease_store(&client, "app");
        leases.ensure_table().await.unwrap();
        conformance::lease_table(&leases, &leases).await;
    });
}

#[test]
fn side_table_conformance_on_dynalite() {
    let dynalite = emulators::start_dynalite();
    support::runtime().block_on(async {
        let client = client(&dynalite.endpoint).await;
        conformance::coordinator(&DynamoCoordinatorStore::new(client.clone(), "app-CoordinatorState".into())).await;
        conformance::worker_metrics(&DynamoWorkerMetricsStore::new(client.clone(), "app-WorkerMetricStats".into()))
            .await;
    });
}

/// What multilangd writes has the names and types Java 3.1.3 wrote, and the tables the same
/// key schemas and index.
#[test]
fn items_match_the_java_3_1_3_fixtures() {
    let moto = emulators::start_moto();
    support::runtime().block_on(async {
        let client = client(&moto.endpoint).await;
        let coordinator = DynamoCoordinatorStore::new(client.clone(), "app-CoordinatorState".into());
        coordinator.ensure_table().await.unwrap();
        coordinator
            .create_migration_if_absent(&MigrationRecord::initial(ClientVersion::V3x, "w1", 1_764_000_000_000))
            .await
            .unwrap();
        let mut lock = LeaderLock::new("w1", 20_000);
        assert_eq!(lock.poll(&coordinator, tokio::time::Instant::now()).await.unwrap(), Leadership::Leader);
        let metrics = DynamoWorkerMetricsStore::new(client.clone(), "app-WorkerMetricStats".into());
        metrics.ensure_table().await.unwrap();
        metrics.publish(&WorkerMetricStats::default_metric("w1", 1_764_000_000)).await.unwrap();
        let leases = lease_store(&client, "app");
        leases.ensure_table().await.unwrap();
        leases.ensure_owner_index().await.unwrap();
        let mut lease = Lease::new("shardId-000000000000", ExtendedSequenceNumber::new(Position::TrimHorizon));
        lease.hash_key_range = Some(multilangd::lease::HashKeyRange {
            starting: "0".into(),
            ending: "340282366920938463463374607431768211455".into(),
        });
        leases.create_lease_if_absent(&lease).await.unwrap();
        let lease = leases.assign_lease(&lease, "w1").await.unwrap().unwrap();
        assert_eq!(leases.renew_lease_3x(&lease, "w1", Some(0.5)).await.unwrap(), Renewal::Renewed);

        let items = |table: &'static str| {
            let client = client.clone();
            async move { daemon::items(&client, table).await }
        };
        let coordinator_items: BTreeMap<String, HashMap<String, AttributeValue>> =
            items("app-CoordinatorState").await.into_iter().map(|i| (i["key"].as_s().unwrap().clone(), i)).collect();
        let expected = fixture("coordinator-state-items.json");
        for key in ["Migration3.0", "Leader"] {
            assert_eq!(types(&coordinator_items[key]), fixture_types(&expected[key]), "{key}");
        }
        let history = coordinator_items["Migration3.0"]["h"].as_l().unwrap();
        assert_eq!(history[0].as_m().unwrap()["cv"].as_s().unwrap(), "CLIENT_VERSION_INIT", "as Java's first item");

        let worker = items("app-WorkerMetricStats").await;
        assert_eq!(types(&worker[0]), fixture_types(&fixture("worker-metric-stats-items.json")));
        assert_eq!(worker[0]["sts"], AttributeValue::M(HashMap::new()));

        let lease_items = items("app").await;
        let mut written = types(&lease_items[0]);
        // multilangd marks its leases entityType = LEASE (the 3.5 format; Java ≤ 3.4 ignores it).
        assert_eq!(written.remove("entityType").as_deref(), Some("S"));
        assert_eq!(written, fixture_types(&fixture("lease-items.json")));

        let tables = fixture("tables.json");
        let index = &tables["leaseTable"]["globalSecondaryIndexes"][0];
        assert_eq!(index["name"], "LeaseOwnerToLeaseKeyIndex");
        let described = client.describe_table().table_name("app").send().await.unwrap();
        let gsi = &described.table().unwrap().global_secondary_indexes()[0];
        assert_eq!(gsi.index_name(), Some("LeaseOwnerToLeaseKeyIndex"));
        let keys: Vec<Value> =
            gsi.key_schema().iter().map(|k| serde_json::json!([k.attribute_name(), k.key_type().as_str()])).collect();
        assert_eq!(Value::Array(keys), index["keys"]);
        assert_eq!(
            gsi.projection().and_then(|p| p.projection_type()).map(|p| p.as_str()),
            index["projection"].as_str()
        );
        assert_eq!(leases.owner_index_state().await.unwrap(), IndexState::Active);
        for (table, name) in
            [("app-CoordinatorState", "coordinatorState"), ("app-WorkerMetricStats", "workerMetricStats")]
        {
            let described = client.describe_table().table_name(table).send().await.unwrap();
            let key = &described.table().unwrap().key_schema()[0];
            assert_eq!(serde_json::json!([key.attribute_name(), key.key_type().as_str()]), tables[name]["keys"][0]);
        }
    });
}
