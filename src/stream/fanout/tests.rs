//! Fan-out reader and registration against the scripted endpoint ([`super::fake`]).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::json;

use super::fake::{active_consumer, child, consumer, end_event, event, FakeFanOut, Session, Step, CONSUMER_ARN};
use super::registration::{ConsumerRegistration, RegistrationError, RegistrationSettings};
use super::*;
use crate::sequence::{ExtendedSequenceNumber, SequenceNumber};

const SHARD: &str = "shardId-000000000000";

fn registration_settings() -> RegistrationSettings {
    RegistrationSettings {
        consumer_arn: None,
        consumer_name: "app".into(),
        max_describe_stream_summary_retries: 3,
        max_describe_stream_consumer_retries: 3,
        register_stream_consumer_retries: 3,
        retry_backoff: Duration::from_millis(1000),
    }
}

fn settings() -> FanOutSettings {
    FanOutSettings::new(registration_settings())
}

fn factory(fake: &FakeFanOut, settings: FanOutSettings) -> FanOutReaderFactory {
    FanOutReaderFactory::new(&fake.client(), StreamRef::by_name("s"), settings, CancellationToken::new())
}

async fn open(fake: &FakeFanOut, start: StartingPosition) -> Box<dyn ShardReader> {
    factory(fake, settings()).open(SHARD, start).await.unwrap()
}

async fn next(reader: &mut Box<dyn ShardReader>) -> Result<RecordBatch, StreamError> {
    tokio::time::timeout(Duration::from_secs(600), reader.next_batch()).await.expect("next_batch hangs")
}

fn seqs(batch: &RecordBatch) -> Vec<String> {
    batch.records.iter().map(|r| r.sequence_number.to_string()).collect()
}

fn position(call: &serde_json::Value) -> (String, Option<String>) {
    let p = &call["StartingPosition"];
    (p["Type"].as_str().unwrap().to_owned(), p["SequenceNumber"].as_str().map(str::to_owned))
}

fn checkpoint(seq: &str, sub: u64) -> StartingPosition {
    StartingPosition::AfterCheckpoint(ExtendedSequenceNumber::at(SequenceNumber::parse(seq).unwrap(), sub))
}

// ---- registration

#[tokio::test(start_paused = true)]
async fn registers_a_missing_consumer_and_waits_until_active() {
    let fake = FakeFanOut::default();
    active_consumer(&fake);
    fake.unary.error("DescribeStreamConsumer", 400, "ResourceNotFoundException").push(
        "DescribeStreamConsumer",
        200,
        consumer("CREATING"),
    );
    fake.unary.error("RegisterStreamConsumer", 400, "LimitExceededException").push(
        "RegisterStreamConsumer",
        200,
        json!({"Consumer": {"ConsumerName": "app", "ConsumerARN": CONSUMER_ARN, "ConsumerStatus": "CREATING",
               "ConsumerCreationTimestamp": 1.7e9}}),
    );
    let registration = ConsumerRegistration::new(&fake.client(), StreamRef::by_name("s"), registration_settings());
    let start = tokio::time::Instant::now();
    assert_eq!(registration.consumer_arn().await.unwrap(), CONSUMER_ARN);
    let registers = fake.unary.calls("RegisterStreamConsumer");
    assert_eq!(registers.len(), 2);
    assert_eq!(registers[0].body["ConsumerName"], "app");
    assert_eq!(registers[0].body["StreamARN"], super::fake::STREAM_ARN);
    // LimitExceeded is retried after a real backoff (Java retries without sleeping).
    assert!(registers[1].at - registers[0].at >= Duration::from_millis(500), "{:?}", registers[1].at - start);
    // CREATING → ACTIVE: described twice more after the register.
    assert_eq!(fake.unary.calls("DescribeStreamConsumer").len(), 3);
    assert_eq!(fake.unary.calls("DescribeStreamSummary").len(), 1);
    // Cached: no more calls.
    assert_eq!(registration.consumer_arn().await.unwrap(), CONSUMER_ARN);
    assert_eq!(fake.unary.calls("DescribeStreamConsumer").len(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_concurrent_registration_by_another_worker_is_normal() {
    let fake = FakeFanOut::default();
    active_consumer(&fake);
    fake.unary.error("DescribeStreamConsumer", 400, "ResourceNotFoundException");
    fake.unary.error("RegisterStreamConsumer", 400, "ResourceInUseException");
    let registration = ConsumerRegistration::new(&fake.client(), StreamRef::by_name("s"), registration_settings());
    assert_eq!(registration.consumer_arn().await.unwrap(), CONSUMER_ARN);
    assert_eq!(fake.unary.calls("RegisterStreamConsumer").len(), 1);
}

#[tokio::test(start_paused = true)]
async fn configured_consumer_arn_skips_registration_and_stream_arn_skips_the_summary() {
    let fake = FakeFanOut::default();
    let mut settings = registration_settings();
    settings.consumer_arn = Some("arn:given".into());
    let registration = ConsumerRegistration::new(&fake.client(), StreamRef::by_name("s"), settings);
    assert_eq!(registration.consumer_arn().await.unwrap(), "arn:given");
    assert!(fake.unary.calls("DescribeStreamSummary").is_empty());
    assert!(fake.unary.calls("DescribeStreamConsumer").is_empty());

    active_consumer(&fake);
    let stream = StreamRef { name: "s".into(), arn: Some(super::fake::STREAM_ARN.into()) };
    let registration = ConsumerRegistration::new(&fake.client(), stream, registration_settings());
    assert_eq!(registration.consumer_arn().await.unwrap(), CONSUMER_ARN);
    assert!(fake.unary.calls("DescribeStreamSummary").is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_consumer_that_stays_creating_fails_and_is_retried_later() {
    let fake = FakeFanOut::default();
    active_consumer(&fake);
    fake.unary.fallback("DescribeStreamConsumer", 200, consumer("CREATING"));
    let registration = ConsumerRegistration::new(&fake.client(), StreamRef::by_name("s"), registration_settings());
    match registration.consumer_arn().await {
        Err(RegistrationError::NotActive { status, checks, .. }) => {
            assert_eq!((status.as_str(), checks), ("CREATING", 3))
        }
        other => panic!("{other:?}"),
    }
    fake.unary.fallback("DescribeStreamConsumer", 200, consumer("ACTIVE"));
    assert_eq!(registration.consumer_arn().await.unwrap(), CONSUMER_ARN);
}

#[tokio::test(start_paused = true)]
async fn access_denied_is_not_retried() {
    let fake = FakeFanOut::default();
    active_consumer(&fake);
    fake.unary.error("DescribeStreamConsumer", 400, "AccessDeniedException");
    let f = factory(&fake, settings());
    match f.open(SHARD, StartingPosition::TrimHorizon).await {
        Err(StreamError::Dependency { operation, message, .. }) => {
            assert_eq!(operation, "DescribeStreamConsumer");
            assert!(message.contains("AccessDeniedException"), "{message}");
        }
        Ok(_) => panic!("opened"),
        Err(other) => panic!("{other:?}"),
    }
    assert_eq!(fake.unary.calls("DescribeStreamConsumer").len(), 1);
}

// ---- subscriptions

#[tokio::test(start_paused = true)]
async fn checkpoint_start_then_resubscribe_after_the_last_delivered_event() {
    let fake = FakeFanOut::default();
    active_consumer(&fake);
    fake.session(Session::Stream(vec![
        Step::Event(event(&["10", "11", "12"], "12", 5)),
        Step::Event(event(&["13"], "13", 0)),
    ]));
    fake.session(Session::Stream(vec![Step::Event(event(&["14"], "14", 0)), Step::Hang]));
    let mut reader = open(&fake, checkpoint("11", 0)).await;
    let first = next(&mut reader).await.unwrap();
    assert_eq!(seqs(&first), vec!["12"], "records at or below the checkpoint are dropped");
    assert_eq!(first.millis_behind_latest, Some(5));
    assert_eq!(seqs(&next(&mut reader).await.unwrap()), vec!["13"]);
    assert_eq!(seqs(&next(&mut reader).await.unwrap()), vec!["14"]);
    let subscribes = fake.subscribes();
    assert_eq!(subscribes.len(), 2);
    assert_eq!(subscribes[0].0["ConsumerARN"], CONSUMER_ARN);
    assert_eq!(subscribes[0].0["ShardId"], SHARD);
    assert_eq!(position(&subscribes[0].0), ("AT_SEQUENCE_NUMBER".into(), Some("11".into())));
    // The normal end of a subscription (every 5 minutes) resubscribes at once.
    assert_eq!(position(&subscribes[1].0), ("AFTER_SEQUENCE_NUMBER".into(), Some("13".into())));
    assert!(subscribes[1].1 - subscribes[0].1 < Duration::from_millis(10));
}

#[tokio::test(start_paused = true)]
async fn start_positions_map_to_subscribe_types() {
    for (start, expected) in [
        (StartingPosition::TrimHorizon, "TRIM_HORIZON"),
        (StartingPosition::Latest, "LATEST"),
        (StartingPosition::AtTimestamp(1_700_000_000_500), "AT_TIMESTAMP"),
    ] {
        let fake = FakeFanOut::default();
        active_consumer(&fake);
        fake.session(Session::Stream(vec![Step::Event(event(&[], "1", 0)), Step::Hang]));
        let mut reader = open(&fake, start).await;
        next(&mut reader).await.unwrap();
        let call = &fake.subscribes()[0].0;
        assert_eq!(call["StartingPosition"]["Type"], expected);
        if expected == "AT_TIMESTAMP" {
            assert_eq!(call["StartingPosition"]["Timestamp"].as_f64(), Some(1_700_000_000.5));
        }
    }
}

#[tokio::test(start_paused = true)]
async fn kpl_sub_sequence_checkpoint_resumes_inside_the_aggregate() {
    use base64::Engine;
    let agg = crate::stream::kpl::test_encoder::aggregate(
        &["a"],
        &[],
        &[(0, None, b"u0"), (0, None, b"u1"), (0, None, b"u2")],
    );
    let fake = FakeFanOut::default();
    active_consumer(&fake);
    let record = json!({"SequenceNumber": "30", "PartitionKey": "a", "ApproximateArrivalTimestamp": 1.7e9,
                        "Data": base64::engine::general_purpose::STANDARD.encode(&agg)});
    fake.session(Session::Stream(vec![
        Step::Event(json!({"Records": [record], "ContinuationSequenceNumber": "30", "MillisBehindLatest": 0})),
        Step::Hang,
    ]));
    let mut reader = open(&fake, checkpoint("30", 1)).await;
    let batch = next(&mut reader).await.unwrap();
    assert_eq!(batch.records.len(), 1);
    assert_eq!((batch.records[0].sub_sequence_number, &batch.records[0].data[..]), (2, &b"u2"[..]));
    assert_eq!(position(&fake.subscribes()[0].0), ("AT_SEQUENCE_NUMBER".into(), Some("30".into())));
}

#[tokio::test(start_paused = true)]
async fn resource_in_use_and_throttling_back_off_then_resubscribe_from_the_same_place() {
    let fake = FakeFanOut::default();
    active_consumer(&fake);
    fake.session(Session::Stream(vec![Step::Event(event(&["1"], "1", 0)), Step::Reset]));
    // In-stream ResourceInUse (the previous owner's subscription), then the HTTP variants.
    fake.session(Session::Stream(vec![Step::Exception("ResourceInUseException")]));
    fake.session(Session::HttpError(400, "ResourceInUseException"));
    fake.session(Session::HttpError(400, "LimitExceededException"));
    fake.session(Session::DispatchFailure);
    fake.session(Session::Stream(vec![Step::Event(event(&["2"], "2", 0)), Step::Hang]));
    let mut reader = open(&fake, StartingPosition::TrimHorizon).await;
    assert_eq!(seqs(&next(&mut reader).await.unwrap()), vec!["1"]);
    assert_eq!(seqs(&next(&mut reader).await.unwrap()), vec!["2"]);
    let subscribes = fake.subscribes();
    assert_eq!(subscribes.len(), 6);
    for call in &subscribes[1..] {
        assert_eq!(position(&call.0), ("AFTER_SEQUENCE_NUMBER".into(), Some("1".into())));
    }
    // Backoff with jitter: ceilings 1, 2, 4, 8, 10 s; each delay at least half its ceiling.
    let gaps: Vec<Duration> = subscribes.windows(2).map(|w| w[1].1 - w[0].1).collect();
    for (gap, ceiling) in gaps.iter().zip([1000_u64, 2000, 4000, 8000, 10000]) {
        assert!(*gap >= Duration::from_millis(ceiling / 2) && *gap <= Duration::from_millis(ceiling), "{gaps:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_silent_subscription_is_cancelled_after_the_idle_timeout() {
    let fake = FakeFanOut::default();
    active_consumer(&fake);
    fake.session(Session::Stream(vec![Step::Event(event(&["1"], "1", 0)), Step::Hang]));
    fake.session(Session::Stream(vec![Step::Event(event(&["2"], "2", 0)), Step::Hang]));
    let mut reader = open(&fake, StartingPosition::TrimHorizon).await;
    let start = tokio::time::Instant::now();
    assert_eq!(seqs(&next(&mut reader).await.unwrap()), vec!["1"]);
    assert_eq!(seqs(&next(&mut reader).await.unwrap()), vec!["2"]);
    let subscribes = fake.subscribes();
    assert_eq!(subscribes.len(), 2);
    let gap = subscribes[1].1 - start;
    assert!(gap >= Duration::from_secs(60) && gap <= Duration::from_secs(62), "{gap:?}");
    assert_eq!(fake.open_streams(), 1, "the silent stream was dropped");
    assert_eq!(position(&subscribes[1].0), ("AFTER_SEQUENCE_NUMBER".into(), Some("1".into())));
}

#[tokio::test(start_paused = true)]
async fn split_shard_end_delivers_last_records_with_children_and_never_resubscribes() {
    let fake = FakeFanOut::default();
    active_consumer(&fake);
    fake.session(Session::Stream(vec![
        Step::Event(event(&["1"], "1", 0)),
        Step::Event(end_event(
            &["2"],
            vec![
                child("shardId-000000000001", &[SHARD], "0", "9"),
                child("shardId-000000000002", &[SHARD], "10", "99"),
            ],
        )),
        Step::Hang,
    ]));
    let mut reader = open(&fake, StartingPosition::TrimHorizon).await;
    assert_eq!(seqs(&next(&mut reader).await.unwrap()), vec!["1"]);
    let last = next(&mut reader).await.unwrap();
    assert_eq!(seqs(&last), vec!["2"]);
    let children = last.shard_end.expect("shard end");
    assert_eq!(children.len(), 2);
    assert_eq!(children[1].shard_id, "shardId-000000000002");
    assert_eq!(children[1].parent_shards, vec![SHARD.to_owned()]);
    assert_eq!(children[1].hash_key_range.starting, "10");
    assert!(matches!(next(&mut reader).await, Err(StreamError::Dependency { .. })));
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(fake.subscribes().len(), 1);
    assert_eq!(fake.open_streams(), 0, "the subscription is closed after the shard end");
}

#[tokio::test(start_paused = true)]
async fn merge_shard_end_names_both_parents() {
    let fake = FakeFanOut::default();
    active_consumer(&fake);
    let other = "shardId-000000000001";
    fake.session(Session::Stream(vec![Step::Event(end_event(
        &[],
        vec![child("shardId-000000000002", &[SHARD, other], "0", "99")],
    ))]));
    let mut reader = open(&fake, StartingPosition::TrimHorizon).await;
    let last = next(&mut reader).await.unwrap();
    let children = last.shard_end.unwrap();
    assert_eq!(children[0].parent_shards, vec![SHARD.to_owned(), other.to_owned()]);
    assert!(last.records.is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_error_just_before_the_shard_end_resubscribes_from_the_last_event_not_from_null() {
    let fake = FakeFanOut::default();
    active_consumer(&fake);
    fake.session(Session::Stream(vec![Step::Event(event(&["1", "2"], "2", 0)), Step::Reset]));
    fake.session(Session::Stream(vec![Step::Exception("InternalFailureException")]));
    fake.session(Session::Stream(vec![Step::Event(end_event(
        &["3"],
        vec![child("shardId-000000000001", &[SHARD], "0", "99")],
    ))]));
    let mut reader = open(&fake, StartingPosition::TrimHorizon).await;
    assert_eq!(seqs(&next(&mut reader).await.unwrap()), vec!["1", "2"]);
    let last = next(&mut reader).await.unwrap();
    assert_eq!(seqs(&last), vec!["3"]);
    assert_eq!(last.shard_end.unwrap().len(), 1);
    let subscribes = fake.subscribes();
    assert_eq!(subscribes.len(), 3);
    for call in &subscribes[1..] {
        assert_eq!(position(&call.0), ("AFTER_SEQUENCE_NUMBER".into(), Some("2".into())));
    }
}

#[tokio::test(start_paused = true)]
async fn invalid_events_are_rejected_and_resubscribed() {
    let fake = FakeFanOut::default();
    active_consumer(&fake);
    // Both a continuation and children; then a child without parents.
    let mut both = event(&["1"], "1", 0);
    both["ChildShards"] = json!([child("c", &[SHARD], "0", "1")]);
    fake.session(Session::Stream(vec![Step::Event(both)]));
    fake.session(Session::Stream(vec![Step::Event(end_event(&[], vec![child("c", &[], "0", "1")]))]));
    fake.session(Session::Stream(vec![Step::Event(event(&["1"], "1", 0)), Step::Hang]));
    let mut reader = open(&fake, StartingPosition::TrimHorizon).await;
    let batch = next(&mut reader).await.unwrap();
    assert_eq!((seqs(&batch), batch.shard_end), (vec!["1".to_owned()], None));
    assert_eq!(fake.subscribes().len(), 3);
}

#[tokio::test(start_paused = true)]
async fn resource_not_found_ends_the_shard_without_children() {
    for session in [
        Session::HttpError(400, "ResourceNotFoundException"),
        Session::Stream(vec![Step::Event(event(&["1"], "1", 0)), Step::Exception("ResourceNotFoundException")]),
    ] {
        let fake = FakeFanOut::default();
        active_consumer(&fake);
        fake.session(session);
        let mut reader = open(&fake, StartingPosition::TrimHorizon).await;
        let mut batch = next(&mut reader).await.unwrap();
        if batch.shard_end.is_none() {
            batch = next(&mut reader).await.unwrap();
        }
        assert_eq!(batch.shard_end, Some(Vec::new()));
    }
}

#[tokio::test(start_paused = true)]
async fn fatal_errors_are_returned() {
    let fake = FakeFanOut::default();
    active_consumer(&fake);
    fake.session(Session::HttpError(400, "AccessDeniedException"));
    let mut reader = open(&fake, StartingPosition::TrimHorizon).await;
    match next(&mut reader).await {
        Err(StreamError::Dependency { operation, message, .. }) => {
            assert_eq!(operation, "SubscribeToShard");
            assert!(message.contains("AccessDeniedException"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_slow_processor_pauses_the_subscription_instead_of_leaving_it_unread() {
    let fake = FakeFanOut::default();
    active_consumer(&fake);
    let burst: Vec<Step> = (1..=20).map(|i| Step::Event(event(&[&i.to_string()], &i.to_string(), 0))).collect();
    fake.session(Session::Stream(burst));
    // The resubscription streams at the reader's pace (one event per 100 ms).
    let rest: Vec<Step> = (7..=20)
        .flat_map(|i| {
            [Step::Wait(Duration::from_millis(100)), Step::Event(event(&[&i.to_string()], &i.to_string(), 0))]
        })
        .collect();
    fake.session(Session::Stream(rest.into_iter().chain([Step::Hang]).collect()));
    let mut s = settings();
    s.queue_capacity = 6;
    let mut reader = factory(&fake, s).open(SHARD, StartingPosition::TrimHorizon).await.unwrap();
    // Nobody reads: the task queues 6 events, then drops the subscription.
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(fake.open_streams(), 0, "the full queue cancelled the subscription");
    assert_eq!(fake.subscribes().len(), 1, "no resubscription while the queue is full");
    let mut seen = Vec::new();
    while seen.len() < 20 {
        seen.extend(seqs(&next(&mut reader).await.unwrap()));
    }
    let expected: Vec<String> = (1..=20).map(|i| i.to_string()).collect();
    assert_eq!(seen, expected, "nothing lost or repeated");
    let subscribes = fake.subscribes();
    assert_eq!(subscribes.len(), 2);
    assert_eq!(position(&subscribes[1].0), ("AFTER_SEQUENCE_NUMBER".into(), Some("6".into())));
}

#[tokio::test(start_paused = true)]
async fn empty_events_are_delivered_but_do_not_pile_up() {
    let fake = FakeFanOut::default();
    active_consumer(&fake);
    let mut steps: Vec<Step> = (0..50).map(|_| Step::Event(event(&[], "5", 0))).collect();
    steps.push(Step::Event(event(&["6"], "6", 0)));
    steps.push(Step::Hang);
    fake.session(Session::Stream(steps));
    let mut reader = open(&fake, StartingPosition::TrimHorizon).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let empty = next(&mut reader).await.unwrap();
    assert!(empty.records.is_empty() && empty.shard_end.is_none());
    assert_eq!(seqs(&next(&mut reader).await.unwrap()), vec!["6"]);
    assert_eq!(fake.subscribes().len(), 1, "50 empty events did not overflow the queue");
}

#[tokio::test(start_paused = true)]
async fn cancellation_and_drop_end_the_subscription() {
    let fake = FakeFanOut::default();
    active_consumer(&fake);
    fake.session(Session::Stream(vec![Step::Event(event(&["1"], "1", 0)), Step::Hang]));
    let cancel = CancellationToken::new();
    let f = FanOutReaderFactory::new(&fake.client(), StreamRef::by_name("s"), settings(), cancel.clone());
    let mut reader = f.open(SHARD, StartingPosition::TrimHorizon).await.unwrap();
    next(&mut reader).await.unwrap();
    assert_eq!(fake.open_streams(), 1);
    let waiter = tokio::spawn(async move { reader.next_batch().await });
    tokio::time::sleep(Duration::from_millis(10)).await;
    cancel.cancel();
    assert!(matches!(waiter.await.unwrap(), Err(StreamError::Cancelled { .. })));
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(fake.open_streams(), 0);
}

#[tokio::test(start_paused = true)]
async fn subscriptions_are_spread_over_connections() {
    let fake = FakeFanOut::default();
    active_consumer(&fake);
    for _ in 0..5 {
        fake.session(Session::Stream(vec![Step::Hang]));
    }
    let mut s = settings();
    s.subscriptions_per_connection = 2;
    let f = factory(&fake, s);
    let mut readers = Vec::new();
    for i in 0..5 {
        readers.push(f.open(&format!("shardId-00000000000{i}"), StartingPosition::TrimHorizon).await.unwrap());
    }
    assert_eq!(f.connections(), 3);
    // Dropped readers give their slot back.
    readers.truncate(1);
    tokio::time::sleep(Duration::from_millis(10)).await;
    fake.session(Session::Stream(vec![Step::Hang]));
    let _again = f.open("shardId-000000000009", StartingPosition::TrimHorizon).await.unwrap();
    assert_eq!(f.connections(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_deregistered_consumer_is_registered_again_instead_of_ending_the_shard() {
    let fake = FakeFanOut::default();
    active_consumer(&fake);
    // Registration finds the consumer; the check after ResourceNotFound does not.
    fake.unary.push("DescribeStreamConsumer", 200, consumer("ACTIVE"));
    fake.unary.error("DescribeStreamConsumer", 400, "ResourceNotFoundException");
    fake.session(Session::Stream(vec![
        Step::Event(event(&["1"], "1", 0)),
        Step::Exception("ResourceNotFoundException"),
    ]));
    fake.session(Session::Stream(vec![Step::Event(event(&["2"], "2", 0)), Step::Hang]));
    let mut reader = open(&fake, StartingPosition::TrimHorizon).await;
    let first = next(&mut reader).await.unwrap();
    let second = next(&mut reader).await.unwrap();
    assert_eq!((seqs(&first), seqs(&second)), (vec!["1".to_owned()], vec!["2".to_owned()]));
    assert_eq!(second.shard_end, None, "the shard did not end");
    let describes = fake.unary.calls("DescribeStreamConsumer");
    assert_eq!(describes.len(), 3, "register, check (missing), register again");
    assert_eq!(describes[1].body["ConsumerARN"], CONSUMER_ARN);
    assert_eq!(position(&fake.subscribes()[1].0), ("AFTER_SEQUENCE_NUMBER".into(), Some("1".into())));
}
