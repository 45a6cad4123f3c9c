//! A scripted Kinesis endpoint: an SDK HTTP connector that answers each operation from a
//! queue of canned responses and records the requests (for unit tests).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use aws_sdk_kinesis::config::http::HttpRequest;
use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};
use aws_smithy_runtime_api::client::http::{http_client_fn, HttpConnector, HttpConnectorFuture, SharedHttpConnector};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use base64::Engine;
use serde_json::{json, Value};

/// One recorded request.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub(crate) operation: String,
    pub(crate) body: Value,
    pub(crate) at: tokio::time::Instant,
}

#[derive(Debug, Default)]
struct State {
    responses: HashMap<String, VecDeque<(u16, String)>>,
    /// Answer given when an operation's queue is empty.
    fallback: HashMap<String, (u16, String)>,
    calls: Vec<Call>,
}

/// The scripted endpoint; clones share state.
#[derive(Debug, Clone, Default)]
pub(crate) struct FakeKinesis {
    state: Arc<Mutex<State>>,
}

impl FakeKinesis {
    pub(crate) fn push(&self, operation: &str, status: u16, body: Value) -> &Self {
        let mut state = self.state.lock().unwrap();
        state.responses.entry(operation.to_owned()).or_default().push_back((status, body.to_string()));
        self
    }

    pub(crate) fn push_raw(&self, operation: &str, status: u16, body: &str) -> &Self {
        let mut state = self.state.lock().unwrap();
        state.responses.entry(operation.to_owned()).or_default().push_back((status, body.to_owned()));
        self
    }

    pub(crate) fn error(&self, operation: &str, status: u16, code: &str) -> &Self {
        self.push(operation, status, json!({"__type": code, "message": format!("scripted {code}")}))
    }

    pub(crate) fn fallback(&self, operation: &str, status: u16, body: Value) {
        self.state.lock().unwrap().fallback.insert(operation.to_owned(), (status, body.to_string()));
    }

    pub(crate) fn calls(&self, operation: &str) -> Vec<Call> {
        self.state.lock().unwrap().calls.iter().filter(|c| c.operation == operation).cloned().collect()
    }

    pub(crate) fn client(&self) -> aws_sdk_kinesis::Client {
        client_over(self.clone())
    }
}

/// A Kinesis client whose every request goes to `connector` (a scripted fake), with fixed
/// credentials and a loopback endpoint that is never dialled.
pub(crate) fn client_over(connector: impl HttpConnector + 'static) -> aws_sdk_kinesis::Client {
    let connector = SharedHttpConnector::new(connector);
    let config = aws_sdk_kinesis::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("x", "x", None, None, "fake"))
        .endpoint_url("http://127.0.0.1:9")
        .http_client(http_client_fn(move |_, _| connector.clone()))
        .build();
    aws_sdk_kinesis::Client::from_conf(config)
}

impl HttpConnector for FakeKinesis {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let target = request.headers().get("x-amz-target").unwrap_or_default();
        let operation = target.rsplit('.').next().unwrap_or_default().to_owned();
        let body: Value = request.body().bytes().and_then(|b| serde_json::from_slice(b).ok()).unwrap_or(Value::Null);
        let mut state = self.state.lock().unwrap();
        state.calls.push(Call { operation: operation.clone(), body, at: tokio::time::Instant::now() });
        let (status, text) = state
            .responses
            .get_mut(&operation)
            .and_then(VecDeque::pop_front)
            .or_else(|| state.fallback.get(&operation).cloned())
            .unwrap_or_else(|| {
                (500, format!("{{\"__type\":\"NoScript\",\"message\":\"no response for {operation}\"}}"))
            });
        let response = HttpResponse::new(StatusCode::try_from(status).unwrap(), SdkBody::from(text));
        HttpConnectorFuture::ready(Ok(response))
    }
}

/// A GetRecords record object.
pub(crate) fn record(seq: &str, data: &[u8]) -> Value {
    json!({
        "SequenceNumber": seq,
        "Data": base64::engine::general_purpose::STANDARD.encode(data),
        "PartitionKey": format!("pk-{seq}"),
        "ApproximateArrivalTimestamp": 1_700_000_000.25,
    })
}

/// A GetRecords response with a next iterator.
pub(crate) fn records(records: Vec<Value>, next: &str, behind: i64) -> Value {
    json!({"Records": records, "NextShardIterator": next, "MillisBehindLatest": behind})
}

/// A GetShardIterator response.
pub(crate) fn iterator(it: &str) -> Value {
    json!({"ShardIterator": it})
}
