//! A scripted fan-out endpoint behind the SDK (unit tests): the unary calls are answered by a
//! [`FakeKinesis`]; each SubscribeToShard call takes the next scripted [`Session`] and answers
//! with a real `application/vnd.amazon.eventstream` body, frame by frame, so the SDK's own
//! event-stream decoding (records, continuation, ChildShards, in-stream exceptions) is what
//! the reader sees. Kinesis emulators cannot produce shard ends or most errors; this can.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use aws_sdk_kinesis::config::http::HttpRequest;
use aws_smithy_runtime_api::client::http::{HttpConnector, HttpConnectorFuture};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use base64::Engine;
use bytes::Bytes;
use serde_json::{json, Value};

use crate::stream::fake_kinesis::FakeKinesis;

/// One step of a scripted event stream.
#[derive(Debug, Clone)]
pub(crate) enum Step {
    /// A `SubscribeToShardEvent` with this JSON payload.
    Event(Value),
    /// An in-stream exception of this type.
    Exception(&'static str),
    /// Nothing for this long.
    Wait(Duration),
    /// A transport error (connection reset, GOAWAY).
    Reset,
    /// Never anything again (a dead connection).
    Hang,
}

/// The answer to one SubscribeToShard call.
#[derive(Debug, Clone)]
pub(crate) enum Session {
    /// HTTP 200 and an event stream; after the last step the stream ends normally.
    Stream(Vec<Step>),
    /// An HTTP error response with this status and error code.
    HttpError(u16, &'static str),
    /// The connection fails before any response.
    DispatchFailure,
}

#[derive(Debug, Default)]
struct State {
    sessions: VecDeque<Session>,
    /// Request bodies of the SubscribeToShard calls, with the time.
    subscribes: Vec<(Value, tokio::time::Instant)>,
    /// Event-stream bodies currently open (dropped bodies are closed subscriptions).
    open_streams: usize,
}

/// The scripted endpoint; clones share state.
#[derive(Debug, Clone, Default)]
pub(crate) struct FakeFanOut {
    pub(crate) unary: FakeKinesis,
    state: Arc<Mutex<State>>,
}

impl FakeFanOut {
    pub(crate) fn session(&self, session: Session) -> &Self {
        self.state.lock().unwrap().sessions.push_back(session);
        self
    }

    pub(crate) fn subscribes(&self) -> Vec<(Value, tokio::time::Instant)> {
        self.state.lock().unwrap().subscribes.clone()
    }

    pub(crate) fn open_streams(&self) -> usize {
        self.state.lock().unwrap().open_streams
    }

    pub(crate) fn client(&self) -> aws_sdk_kinesis::Client {
        crate::stream::fake_kinesis::client_over(self.clone())
    }
}

impl HttpConnector for FakeFanOut {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let target = request.headers().get("x-amz-target").unwrap_or_default();
        if !target.ends_with(".SubscribeToShard") {
            return self.unary.call(request);
        }
        let body: Value = request.body().bytes().and_then(|b| serde_json::from_slice(b).ok()).unwrap_or(Value::Null);
        let session = {
            let mut state = self.state.lock().unwrap();
            state.subscribes.push((body, tokio::time::Instant::now()));
            state.sessions.pop_front().unwrap_or(Session::HttpError(500, "NoScript"))
        };
        let response = match session {
            Session::DispatchFailure => {
                return HttpConnectorFuture::ready(Err(ConnectorError::io(
                    std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "scripted connect failure").into(),
                )))
            }
            Session::HttpError(status, code) => HttpResponse::new(
                StatusCode::try_from(status).unwrap(),
                SdkBody::from(json!({"__type": code, "message": format!("scripted {code}")}).to_string()),
            ),
            Session::Stream(steps) => {
                self.state.lock().unwrap().open_streams += 1;
                let body = ScriptedBody { steps: steps.into(), sleep: None, state: self.state.clone() };
                let mut response = HttpResponse::new(StatusCode::try_from(200).unwrap(), SdkBody::from_body_1_x(body));
                response.headers_mut().insert("content-type", "application/vnd.amazon.eventstream");
                response
            }
        };
        HttpConnectorFuture::ready(Ok(response))
    }
}

/// The streaming body of one scripted subscription.
struct ScriptedBody {
    steps: VecDeque<Step>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    state: Arc<Mutex<State>>,
}

impl Drop for ScriptedBody {
    fn drop(&mut self) {
        if let Ok(mut state) = self.state.lock() {
            state.open_streams -= 1;
        }
    }
}

fn frame(headers: Vec<Header>, payload: Value) -> Bytes {
    let message = Message::new_from_parts(headers, Bytes::from(payload.to_string()));
    let mut buffer = Vec::new();
    aws_smithy_eventstream::frame::write_message_to(&message, &mut buffer).unwrap();
    Bytes::from(buffer)
}

fn header(name: &'static str, value: &'static str) -> Header {
    Header::new(name, HeaderValue::String(value.into()))
}

impl http_body::Body for ScriptedBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        loop {
            if let Some(sleep) = self.sleep.as_mut() {
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.sleep = None;
            }
            let Some(step) = self.steps.pop_front() else { return Poll::Ready(None) };
            let bytes = match step {
                Step::Event(payload) => frame(
                    vec![
                        header(":message-type", "event"),
                        header(":event-type", "SubscribeToShardEvent"),
                        header(":content-type", "application/json"),
                    ],
                    payload,
                ),
                Step::Exception(kind) => frame(
                    vec![
                        header(":message-type", "exception"),
                        header(":exception-type", kind),
                        header(":content-type", "application/json"),
                    ],
                    json!({"message": format!("scripted {kind}")}),
                ),
                Step::Wait(duration) => {
                    self.sleep = Some(Box::pin(tokio::time::sleep(duration)));
                    continue;
                }
                Step::Reset => {
                    return Poll::Ready(Some(Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionReset,
                        "scripted connection reset",
                    ))))
                }
                Step::Hang => {
                    self.steps.push_front(Step::Hang);
                    return Poll::Pending;
                }
            };
            return Poll::Ready(Some(Ok(http_body::Frame::data(bytes))));
        }
    }
}

use std::future::Future as _;

/// A SubscribeToShardEvent payload with records `seqs` and a continuation.
pub(crate) fn event(seqs: &[&str], continuation: &str, behind: i64) -> Value {
    json!({
        "Records": seqs.iter().map(|s| record(s)).collect::<Vec<_>>(),
        "ContinuationSequenceNumber": continuation,
        "MillisBehindLatest": behind,
    })
}

/// The last event of a shard: records, no continuation, child shards.
pub(crate) fn end_event(seqs: &[&str], children: Vec<Value>) -> Value {
    json!({
        "Records": seqs.iter().map(|s| record(s)).collect::<Vec<_>>(),
        "MillisBehindLatest": 0,
        "ChildShards": children,
    })
}

/// A ChildShards entry.
pub(crate) fn child(id: &str, parents: &[&str], lo: &str, hi: &str) -> Value {
    json!({"ShardId": id, "ParentShards": parents, "HashKeyRange": {"StartingHashKey": lo, "EndingHashKey": hi}})
}

/// A record with a payload derived from its sequence number.
pub(crate) fn record(seq: &str) -> Value {
    json!({
        "SequenceNumber": seq,
        "Data": base64::engine::general_purpose::STANDARD.encode(format!("data-{seq}")),
        "PartitionKey": format!("pk-{seq}"),
        "ApproximateArrivalTimestamp": 1_700_000_000.25,
    })
}

/// Scripts an ACTIVE consumer for the registration calls (stream addressed by name).
pub(crate) fn active_consumer(fake: &FakeFanOut) {
    fake.unary.fallback(
        "DescribeStreamSummary",
        200,
        json!({"StreamDescriptionSummary": {
            "StreamName": "s", "StreamARN": STREAM_ARN, "StreamStatus": "ACTIVE",
            "RetentionPeriodHours": 24, "StreamCreationTimestamp": 1.7e9,
            "EnhancedMonitoring": [], "OpenShardCount": 1}}),
    );
    fake.unary.fallback("DescribeStreamConsumer", 200, consumer("ACTIVE"));
}

/// The scripted stream ARN.
pub(crate) const STREAM_ARN: &str = "arn:aws:kinesis:us-east-1:000000000000:stream/s";
/// The scripted consumer ARN.
pub(crate) const CONSUMER_ARN: &str = "arn:aws:kinesis:us-east-1:000000000000:stream/s/consumer/app:1";

/// A DescribeStreamConsumer response.
pub(crate) fn consumer(status: &str) -> Value {
    json!({"ConsumerDescription": {
        "ConsumerName": "app", "ConsumerARN": CONSUMER_ARN, "ConsumerStatus": status,
        "ConsumerCreationTimestamp": 1.7e9, "StreamARN": STREAM_ARN}})
}
