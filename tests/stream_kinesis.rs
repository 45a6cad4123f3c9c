//! The polling reader and the shard lister against kinesis-local (kinesis-mock).
//!
//! Each test starts its own emulator (`MULTILANGD_TESTBED` must point at the test bed).
//! Waits are short: readers idle 50 ms between GetRecords calls.
// Test helpers outside #[test] functions unwrap too (a failure is a test failure).
#![allow(clippy::unwrap_used)]
mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_sdk_kinesis::config::interceptors::{
    BeforeSerializationInterceptorContextMut, BeforeTransmitInterceptorContextRef,
};
use aws_sdk_kinesis::config::{ConfigBag, Credentials, Intercept, RuntimeComponents};
use aws_sdk_kinesis::error::BoxError;
use aws_sdk_kinesis::operation::get_records::GetRecordsInput;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::Client;
use md5::{Digest, Md5};
use multilangd::sequence::{ExtendedSequenceNumber, SequenceNumber};
use multilangd::stream::kinesis::StreamRef;
use multilangd::stream::polling::{PollingReaderFactory, PollingSettings};
use multilangd::stream::shards::{KinesisShardLister, ListShardsSettings, Shard, ShardFilter, ShardLister};
use multilangd::stream::{Record, RecordBatch, ShardReader, ShardReaderFactory, StartingPosition, StreamError};
use support::emulators::{self, Emulator};
use tokio_util::sync::CancellationToken;

const SHARD0: &str = "shardId-000000000000";
const SHARD1: &str = "shardId-000000000001";
const MAX_HASH: &str = "340282366920938463463374607431768211455";

// ---------------------------------------------------------------------------------------
// Helpers

async fn client(emulator: &Emulator, interceptor: Option<Tamper>) -> Client {
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .region("us-east-1")
        .credentials_provider(Credentials::new("x", "x", None, None, "test"))
        .endpoint_url(&emulator.endpoint)
        .load()
        .await;
    let mut config = aws_sdk_kinesis::config::Builder::from(&sdk);
    if let Some(interceptor) = interceptor {
        config = config.interceptor(interceptor);
    }
    Client::from_conf(config.build())
}

async fn create_stream(client: &Client, name: &str, shards: i32) {
    client.create_stream().stream_name(name).shard_count(shards).send().await.unwrap();
    wait_active(client, name).await;
}

async fn wait_active(client: &Client, name: &str) {
    for _ in 0..200 {
        let summary = client.describe_stream_summary().stream_name(name).send().await.unwrap();
        let status = summary.stream_description_summary().map(|s| s.stream_status().as_str().to_owned());
        if status.as_deref() == Some("ACTIVE") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("stream {name} did not become ACTIVE");
}

/// Puts one record routed by explicit hash key; returns (shard id, sequence number).
async fn put(client: &Client, stream: &str, hash_key: &str, partition_key: &str, data: &[u8]) -> (String, String) {
    let out = client
        .put_record()
        .stream_name(stream)
        .partition_key(partition_key)
        .explicit_hash_key(hash_key)
        .data(Blob::new(data))
        .send()
        .await
        .unwrap();
    (out.shard_id().to_owned(), out.sequence_number().to_owned())
}

fn settings(max_records: u32) -> PollingSettings {
    PollingSettings {
        max_records,
        idle_time_between_reads: Duration::from_millis(50),
        request_timeout: Duration::from_secs(5),
        backoff_base: Duration::from_millis(50),
        backoff_max: Duration::from_millis(500),
    }
}

fn factory(client: &Client, stream: &str, max_records: u32) -> PollingReaderFactory {
    PollingReaderFactory::new(client, StreamRef::by_name(stream), settings(max_records), CancellationToken::new())
}

async fn next(reader: &mut Box<dyn ShardReader>) -> Result<RecordBatch, StreamError> {
    tokio::time::timeout(Duration::from_secs(20), reader.next_batch()).await.expect("next_batch took too long")
}

/// Reads until `count` records arrived or the shard ended; returns the records and the
/// batches.
async fn read_records(reader: &mut Box<dyn ShardReader>, count: usize) -> (Vec<Record>, Vec<RecordBatch>) {
    let mut records = Vec::new();
    let mut batches = Vec::new();
    for _ in 0..200 {
        let batch = next(reader).await.unwrap();
        records.extend(batch.records.iter().cloned());
        let end = batch.shard_end.is_some();
        batches.push(batch);
        if records.len() >= count || end {
            return (records, batches);
        }
    }
    panic!("only {} of {count} records arrived", records.len());
}

async fn read_from(factory: &PollingReaderFactory, shard: &str, start: StartingPosition, count: usize) -> Vec<Record> {
    let mut reader = factory.open(shard, start).await.unwrap();
    read_records(&mut reader, count).await.0
}

fn texts(records: &[Record]) -> Vec<String> {
    records.iter().map(|r| String::from_utf8_lossy(&r.data).into_owned()).collect()
}

fn esn(seq: &str, sub: u64) -> ExtendedSequenceNumber {
    ExtendedSequenceNumber::at(SequenceNumber::parse(seq).unwrap(), sub)
}

fn now_ms() -> i64 {
    i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

/// A KPL aggregate (magic + protobuf + MD5) of (partition key index, data) user records.
fn kpl_aggregate(partition_keys: &[&str], records: &[(u64, &[u8])]) -> Vec<u8> {
    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    fn len_field(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
        varint(out, (field << 3) | 2);
        varint(out, bytes.len() as u64);
        out.extend_from_slice(bytes);
    }
    let mut body = Vec::new();
    for pk in partition_keys {
        len_field(&mut body, 1, pk.as_bytes());
    }
    for (index, data) in records {
        let mut record = Vec::new();
        varint(&mut record, 1 << 3);
        varint(&mut record, *index);
        len_field(&mut record, 3, data);
        len_field(&mut body, 3, &record);
    }
    let mut out = vec![0xF3, 0x89, 0x9A, 0xC2];
    out.extend_from_slice(&body);
    out.extend_from_slice(&Md5::digest(&body));
    out
}

/// An SDK interceptor that corrupts the shard iterator of chosen GetRecords calls (1-based
/// per client) and counts the HTTP attempts per operation.
#[derive(Debug, Clone, Default)]
struct Tamper {
    corrupt: Vec<usize>,
    get_records_calls: Arc<AtomicUsize>,
    attempts: Arc<Mutex<Vec<String>>>,
}

impl Tamper {
    fn corrupting(calls: &[usize]) -> Self {
        Self { corrupt: calls.to_vec(), ..Self::default() }
    }

    fn attempts(&self, operation: &str) -> usize {
        self.attempts.lock().unwrap().iter().filter(|o| o.as_str() == operation).count()
    }
}

impl Intercept for Tamper {
    fn name(&self) -> &'static str {
        "Tamper"
    }

    fn modify_before_serialization(
        &self,
        context: &mut BeforeSerializationInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(input) = context.input_mut().downcast_mut::<GetRecordsInput>() {
            let call = self.get_records_calls.fetch_add(1, Ordering::SeqCst) + 1;
            if self.corrupt.contains(&call) {
                input.shard_iterator = Some("AAAAAAAAAAGarbageIteratorThatKinesisCannotDecode==".to_owned());
            }
        }
        Ok(())
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let target = context.request().headers().get("x-amz-target").unwrap_or_default();
        self.attempts.lock().unwrap().push(target.rsplit('.').next().unwrap_or_default().to_owned());
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Tests

#[tokio::test]
async fn reads_from_every_starting_position() {
    let emulator = emulators::start_kinesis_local();
    let client = client(&emulator, None).await;
    let stream = "positions";
    create_stream(&client, stream, 2).await;
    let before = now_ms();

    // Shard 0: five plain records, a KPL aggregate of three, one more plain record. Puts are
    // 20 ms apart so arrival timestamps differ.
    let mut seqs = Vec::new();
    for i in 0..5 {
        let (shard, seq) = put(&client, stream, "0", &format!("pk-{i}"), format!("s0-{i}").as_bytes()).await;
        assert_eq!(shard, SHARD0);
        seqs.push(seq);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let aggregate = kpl_aggregate(&["ka", "kb"], &[(0, b"kpl-0"), (1, b"kpl-1"), (0, b"kpl-2")]);
    let (_, agg_seq) = put(&client, stream, "0", "agg", &aggregate).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let (_, tail_seq) = put(&client, stream, "0", "tail", b"s0-tail").await;
    for i in 0..3 {
        let (shard, _) = put(&client, stream, MAX_HASH, &format!("q-{i}"), format!("s1-{i}").as_bytes()).await;
        assert_eq!(shard, SHARD1);
    }
    let after = now_ms();

    let polling = factory(&client, stream, 10_000);
    let all_expected = ["s0-0", "s0-1", "s0-2", "s0-3", "s0-4", "kpl-0", "kpl-1", "kpl-2", "s0-tail"];

    // TRIM_HORIZON: everything, deaggregated, with the Kinesis fields.
    let mut reader = polling.open(SHARD0, StartingPosition::TrimHorizon).await.unwrap();
    let (all, batches) = read_records(&mut reader, 9).await;
    assert_eq!(texts(&all), all_expected);
    let ids: Vec<(String, u64)> = all.iter().map(|r| (r.sequence_number.to_string(), r.sub_sequence_number)).collect();
    let mut expected_ids: Vec<(String, u64)> = seqs.iter().map(|s| (s.clone(), 0)).collect();
    expected_ids.extend((0..3).map(|i| (agg_seq.clone(), i)));
    expected_ids.push((tail_seq.clone(), 0));
    assert_eq!(ids, expected_ids);
    assert_eq!(all[0].partition_key, "pk-0");
    assert_eq!((all[5].partition_key.as_str(), all[6].partition_key.as_str()), ("ka", "kb"));
    assert_eq!(all[5].approximate_arrival_timestamp_ms, all[7].approximate_arrival_timestamp_ms);
    for record in &all {
        let ts = record.approximate_arrival_timestamp_ms;
        assert!(ts >= before - 5_000 && ts <= after + 5_000, "arrival {ts} not near [{before}, {after}]");
    }
    let payload: usize = batches.iter().map(|b| b.payload_bytes).sum();
    assert_eq!(payload, all.iter().map(|r| r.data.len()).sum::<usize>());
    assert!(batches.iter().all(|b| b.millis_behind_latest.is_some() && b.shard_end.is_none()));
    drop(reader);

    // The other shard holds only its own records.
    assert_eq!(texts(&read_from(&polling, SHARD1, StartingPosition::TrimHorizon, 3).await), ["s1-0", "s1-1", "s1-2"]);

    // maxRecords caps the Kinesis records per GetRecords (an aggregate counts once).
    let mut small = factory(&client, stream, 2).open(SHARD0, StartingPosition::TrimHorizon).await.unwrap();
    let (limited, limited_batches) = read_records(&mut small, 9).await;
    assert_eq!(texts(&limited), all_expected);
    for batch in &limited_batches {
        let mut containers: Vec<_> = batch.records.iter().map(|r| r.sequence_number.clone()).collect();
        containers.dedup();
        assert!(containers.len() <= 2, "a batch held {} Kinesis records", containers.len());
    }
    drop(small);

    // After a checkpoint: AT_SEQUENCE_NUMBER plus filtering.
    let after_2 = StartingPosition::AfterCheckpoint(esn(&seqs[2], 0));
    assert_eq!(texts(&read_from(&polling, SHARD0, after_2, 6).await), all_expected[3..]);
    // A sub-sequence checkpoint inside the aggregate resumes with the next user record.
    let inside = StartingPosition::AfterCheckpoint(esn(&agg_seq, 1));
    let resumed = read_from(&polling, SHARD0, inside, 2).await;
    assert_eq!(texts(&resumed), ["kpl-2", "s0-tail"]);
    assert_eq!(resumed[0].sub_sequence_number, 2);
    let last_user = StartingPosition::AfterCheckpoint(esn(&agg_seq, 2));
    assert_eq!(texts(&read_from(&polling, SHARD0, last_user, 1).await), ["s0-tail"]);

    // AT_TIMESTAMP: from the first record that arrived at or after the timestamp.
    let t = all[3].approximate_arrival_timestamp_ms;
    let expected: Vec<String> = texts(&all)
        .into_iter()
        .zip(&all)
        .filter(|(_, r)| r.approximate_arrival_timestamp_ms >= t)
        .map(|(s, _)| s)
        .collect();
    assert_eq!(expected.first().map(String::as_str), Some("s0-3"));
    assert_eq!(texts(&read_from(&polling, SHARD0, StartingPosition::AtTimestamp(t), expected.len()).await), expected);

    // LATEST: only records put after the reader's first (empty) read.
    let mut latest = polling.open(SHARD0, StartingPosition::Latest).await.unwrap();
    let first = next(&mut latest).await.unwrap();
    assert!(first.records.is_empty());
    put(&client, stream, "0", "late", b"late-0").await;
    put(&client, stream, "0", "late", b"late-1").await;
    assert_eq!(texts(&read_records(&mut latest, 2).await.0), ["late-0", "late-1"]);
}

#[tokio::test]
async fn split_shard_ends_the_parent_with_its_children() {
    let emulator = emulators::start_kinesis_local();
    let client = client(&emulator, None).await;
    let stream = "splitting";
    create_stream(&client, stream, 2).await;
    for i in 0..3 {
        put(&client, stream, "0", "pk", format!("parent-{i}").as_bytes()).await;
    }
    let polling = factory(&client, stream, 10_000);

    // A reader that is mid-shard when the split happens.
    let mut reader = polling.open(SHARD0, StartingPosition::TrimHorizon).await.unwrap();
    let (early, _) = read_records(&mut reader, 3).await;
    assert_eq!(texts(&early), ["parent-0", "parent-1", "parent-2"]);

    let lister = KinesisShardLister::new(&client, StreamRef::by_name(stream), ListShardsSettings::default());
    let before: Vec<Shard> = lister.list_shards(ShardFilter::All).await.unwrap();
    let parent = before.iter().find(|s| s.shard_id == SHARD0).unwrap();
    let start: u128 = parent.hash_key_range.starting.parse().unwrap();
    let end: u128 = parent.hash_key_range.ending.parse().unwrap();
    let mid = start + (end - start) / 2 + 1;
    client
        .split_shard()
        .stream_name(stream)
        .shard_to_split(SHARD0)
        .new_starting_hash_key(mid.to_string())
        .send()
        .await
        .unwrap();
    wait_active(&client, stream).await;
    // A record for the low half now goes to a child, not to the closed parent.
    let (child_shard, _) = put(&client, stream, "0", "pk", b"child-0").await;
    assert_ne!(child_shard, SHARD0);

    // The live reader sees no more records and then the shard end with both children.
    let (rest, batches) = read_records(&mut reader, usize::MAX).await;
    assert!(rest.is_empty(), "unexpected {:?}", texts(&rest));
    let children = batches.last().unwrap().shard_end.clone().expect("shard end");
    assert_eq!(children.len(), 2);
    for child in &children {
        assert_eq!(child.parent_shards, vec![SHARD0.to_owned()]);
    }
    let mut ranges: Vec<(u128, u128)> = children
        .iter()
        .map(|c| (c.hash_key_range.starting.parse().unwrap(), c.hash_key_range.ending.parse().unwrap()))
        .collect();
    ranges.sort_unstable();
    assert_eq!(ranges, vec![(start, mid - 1), (mid, end)]);
    assert!(matches!(next(&mut reader).await, Err(StreamError::Dependency { .. })), "reads after the end must fail");

    // A fresh reader gets the parent's records, then the shard end, in order.
    let mut fresh = polling.open(SHARD0, StartingPosition::TrimHorizon).await.unwrap();
    let (records, batches) = read_records(&mut fresh, usize::MAX).await;
    assert_eq!(texts(&records), ["parent-0", "parent-1", "parent-2"]);
    assert_eq!(batches.last().unwrap().shard_end.as_ref().map(Vec::len), Some(2));
    // The child that took the new record serves it.
    assert!(children.iter().any(|c| c.shard_id == child_shard));
    assert_eq!(texts(&read_from(&polling, &child_shard, StartingPosition::TrimHorizon, 1).await), ["child-0"]);

    // ListShards, one shard per page: all four, with the lineage.
    let paged = KinesisShardLister::new(
        &client,
        StreamRef::by_name(stream),
        ListShardsSettings { page_size: 1, ..ListShardsSettings::default() },
    );
    let all = paged.list_shards(ShardFilter::All).await.unwrap();
    let mut ids: Vec<&str> = all.iter().map(|s| s.shard_id.as_str()).collect();
    ids.sort_unstable();
    let mut expected = vec![SHARD0, SHARD1, children[0].shard_id.as_str(), children[1].shard_id.as_str()];
    expected.sort_unstable();
    assert_eq!(ids, expected);
    let parent = all.iter().find(|s| s.shard_id == SHARD0).unwrap();
    assert!(parent.is_closed());
    for child in &children {
        let shard = all.iter().find(|s| s.shard_id == child.shard_id).unwrap();
        assert_eq!(shard.parent_shard_id.as_deref(), Some(SHARD0));
        assert!(!shard.is_closed());
    }
    // Filters (kinesis-local applies them on the first page only, so one page here).
    let open = lister.list_shards(ShardFilter::AtLatest).await.unwrap();
    let mut open_ids: Vec<&str> = open.iter().map(|s| s.shard_id.as_str()).collect();
    open_ids.sort_unstable();
    let mut expected_open = vec![SHARD1, children[0].shard_id.as_str(), children[1].shard_id.as_str()];
    expected_open.sort_unstable();
    assert_eq!(open_ids, expected_open);
    assert_eq!(lister.list_shards(ShardFilter::AtTrimHorizon).await.unwrap().len(), 4);
    // The stream can also be named by ARN.
    let arn = client.describe_stream_summary().stream_name(stream).send().await.unwrap();
    let arn = arn.stream_description_summary().unwrap().stream_arn().to_owned();
    let by_arn = StreamRef { name: stream.to_owned(), arn: Some(arn) };
    let listed = KinesisShardLister::new(&client, by_arn, ListShardsSettings::default())
        .list_shards(ShardFilter::All)
        .await
        .unwrap();
    assert_eq!(listed.len(), 4);
    // A missing stream is NotFound, not retried for a minute.
    let missing = KinesisShardLister::new(&client, StreamRef::by_name("no-such-stream"), ListShardsSettings::default());
    let started = std::time::Instant::now();
    assert!(matches!(missing.list_shards(ShardFilter::All).await, Err(StreamError::NotFound { .. })));
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn invalid_iterators_recover_and_a_deleted_stream_ends_the_shard() {
    let emulator = emulators::start_kinesis_local();
    let setup = client(&emulator, None).await;
    let stream = "tampered";
    create_stream(&setup, stream, 1).await;
    let mut seqs = Vec::new();
    for i in 0..3 {
        seqs.push(put(&setup, stream, "0", "pk", format!("r-{i}").as_bytes()).await.1);
    }

    // The second GetRecords carries a corrupt iterator: kinesis-local answers HTTP 500 with
    // an empty body; the reader gets a new iterator after the last record it read.
    let tamper = Tamper::corrupting(&[2]);
    let tampered = client(&emulator, Some(tamper.clone())).await;
    let polling = factory(&tampered, stream, 10_000);
    let mut reader = polling.open(SHARD0, StartingPosition::TrimHorizon).await.unwrap();
    let (first, _) = read_records(&mut reader, 3).await;
    assert_eq!(texts(&first), ["r-0", "r-1", "r-2"]);
    for i in 3..5 {
        seqs.push(put(&setup, stream, "0", "pk", format!("r-{i}").as_bytes()).await.1);
    }
    let (rest, _) = read_records(&mut reader, 2).await;
    assert_eq!(texts(&rest), ["r-3", "r-4"], "each record exactly once, in order");
    assert!(tamper.get_records_calls.load(Ordering::SeqCst) >= 3);
    assert_eq!(tamper.attempts("GetShardIterator"), 2, "one iterator at open, one after the bad one");
    assert_eq!(
        tamper.attempts("GetRecords"),
        tamper.get_records_calls.load(Ordering::SeqCst),
        "the SDK must not retry GetRecords by itself"
    );
    drop(reader);

    // A corrupt iterator on the very first read restarts from the checkpoint (AT_SEQUENCE_NUMBER
    // again, with the filter still applied).
    let tamper = Tamper::corrupting(&[1]);
    let tampered = client(&emulator, Some(tamper.clone())).await;
    let polling = factory(&tampered, stream, 10_000);
    let after_first = StartingPosition::AfterCheckpoint(esn(&seqs[0], 0));
    assert_eq!(texts(&read_from(&polling, SHARD0, after_first, 4).await), ["r-1", "r-2", "r-3", "r-4"]);
    assert_eq!(tamper.attempts("GetShardIterator"), 2);

    // Deleting the stream ends the shard without children.
    let polling = factory(&setup, stream, 10_000);
    let mut reader = polling.open(SHARD0, StartingPosition::Latest).await.unwrap();
    assert!(next(&mut reader).await.unwrap().records.is_empty());
    setup.delete_stream().stream_name(stream).send().await.unwrap();
    let (records, batches) = read_records(&mut reader, usize::MAX).await;
    assert!(records.is_empty());
    assert_eq!(batches.last().unwrap().shard_end, Some(Vec::new()));
}
