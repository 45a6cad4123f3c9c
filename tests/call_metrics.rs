//! The SDK interceptor on every client (`multilangd::aws::call_metrics`) against real
//! emulators: each call is reported once with its service, operation, latency and error class
//! — taken from the service's error code (dynalite, kinesis-local), from the failure kind
//! (connection refused) and, for a call abandoned by its caller's own timeout, on drop.
//! One test per binary: the telemetry recorder is process-wide.
mod support;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeDefinition, AttributeValue, KeySchemaElement, KeyType, ScalarAttributeType};
use multilangd::config::{properties, Config};
use multilangd::telemetry::{self, CallErrorClass, Event, Recorder, Service, Sink};
use support::emulators;

type Call = (Service, &'static str, Duration, Option<CallErrorClass>);

#[derive(Default)]
struct Calls(Mutex<Vec<Call>>);

impl Sink for Calls {
    fn record(&self, event: &Event<'_>) {
        if let Event::SdkCall { service, operation, duration, error } = *event {
            self.0.lock().unwrap_or_else(PoisonError::into_inner).push((service, operation, duration, error));
        }
    }
}

impl Calls {
    fn take(&self) -> Vec<(Service, &'static str, Option<CallErrorClass>)> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).drain(..).map(|(s, o, _, e)| (s, o, e)).collect()
    }
}

fn config(kinesis: &str, dynamodb: &str) -> Config {
    let text = format!(
        "executableName = app.py\napplicationName = app\nstreamName = s\n\
         AWSCredentialsProvider = EnvironmentVariableCredentialsProvider\nregionName = us-east-1\n\
         kinesisEndpoint = {kinesis}\ndynamoDBEndpoint = {dynamodb}\n"
    );
    let (entries, errors) = properties::parse(text.as_bytes());
    assert!(errors.is_empty());
    Config::from_entries("/test.properties", entries).expect("valid").config
}

#[tokio::test]
async fn every_sdk_call_is_timed_and_classified_once() {
    let dynalite = emulators::start_dynalite();
    let kinesis = emulators::start_kinesis_local();
    // This binary has a single test, so changing the environment is safe.
    std::env::set_var("AWS_ACCESS_KEY_ID", "AKIDTEST");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "test-secret");
    let calls = Arc::new(Calls::default());
    let _guard = telemetry::install(Recorder::new(vec![calls.clone()]));
    let clients = multilangd::aws::clients(&config(&kinesis.endpoint, &dynalite.endpoint)).await.unwrap();
    let ddb = &clients.dynamodb;

    // Success, then a missing table (ResourceNotFoundException).
    ddb.list_tables().send().await.unwrap();
    ddb.describe_table().table_name("missing").send().await.unwrap_err();
    assert_eq!(
        calls.take(),
        vec![
            (Service::DynamoDb, "ListTables", None),
            (Service::DynamoDb, "DescribeTable", Some(CallErrorClass::NotFound)),
        ]
    );

    // A conditional write that loses (ConditionalCheckFailedException) is a conflict.
    ddb.create_table()
        .table_name("calls")
        .attribute_definitions(
            AttributeDefinition::builder().attribute_name("k").attribute_type(ScalarAttributeType::S).build().unwrap(),
        )
        .key_schema(KeySchemaElement::builder().attribute_name("k").key_type(KeyType::Hash).build().unwrap())
        .billing_mode(aws_sdk_dynamodb::types::BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap();
    let put = || {
        ddb.put_item()
            .table_name("calls")
            .item("k", AttributeValue::S("a".into()))
            .condition_expression("attribute_not_exists(k)")
    };
    put().send().await.unwrap();
    put().send().await.unwrap_err();
    let seen = calls.take();
    assert_eq!(
        &seen[1..],
        &[(Service::DynamoDb, "PutItem", None), (Service::DynamoDb, "PutItem", Some(CallErrorClass::Conflict))]
    );

    // Kinesis: an unknown stream is NotFound.
    clients.kinesis.list_shards().stream_name("nope").send().await.unwrap_err();
    assert_eq!(calls.take(), vec![(Service::Kinesis, "ListShards", Some(CallErrorClass::NotFound))]);

    // A call abandoned by its caller's timeout (a server that accepts and never answers) is
    // reported once, on drop, as transient, with the time it was allowed.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    let hung = multilangd::aws::clients(&config(&silent_url, &silent_url)).await.unwrap();
    let abandoned = tokio::time::timeout(Duration::from_millis(300), hung.dynamodb.list_tables().send()).await;
    assert!(abandoned.is_err(), "the silent server cannot answer");
    let recorded = calls.0.lock().unwrap().drain(..).collect::<Vec<_>>();
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    let (service, operation, duration, error) = recorded[0];
    assert_eq!((service, operation, error), (Service::DynamoDb, "ListTables", Some(CallErrorClass::Transient)));
    assert!(duration >= Duration::from_millis(250), "{duration:?}");
    drop(silent);

    // Connection refused (nothing listens) is transient: the SDK's retries are inside one call.
    let closed = format!("http://127.0.0.1:{}", emulators::free_port());
    let refused = multilangd::aws::clients(&config(&closed, &closed)).await.unwrap();
    refused.kinesis.list_shards().stream_name("s").send().await.unwrap_err();
    assert_eq!(calls.take(), vec![(Service::Kinesis, "ListShards", Some(CallErrorClass::Transient))]);
}
