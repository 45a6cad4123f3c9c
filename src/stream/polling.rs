//! Polling retrieval: GetShardIterator + a GetRecords loop per shard.
//!
//! [`PollingReaderFactory::open`] starts one reader task per shard. The task owns the
//! iterator and fetches **one batch ahead**: it reserves a slot in a capacity-1 channel
//! before each GetRecords, so at most two batches exist per shard (the one the consumer is
//! processing and the one waiting). Dropping the [`PollingReader`] aborts the task.
//!
//! Behaviour, following the Java KCL's `PrefetchRecordsPublisher` / `KinesisDataFetcher`:
//!
//! * **Start:** TRIM_HORIZON / LATEST / AT_TIMESTAMP map to the iterator types of the same
//!   name; a checkpoint ([`StartingPosition::AfterCheckpoint`]) uses `AT_SEQUENCE_NUMBER` and
//!   drops deaggregated records `<=` the checkpoint ([`super::filter`]).
//! * **Pacing:** at least `idleTimeBetweenReadsInMillis` passes between the end of one
//!   successful GetRecords and the start of the next, whether or not the last batch had
//!   records or the reader is behind (`millisBehindLatest > 0`). This is the Java
//!   behaviour (its `millisBehindLatestThresholdForReducedTps` refinement is not
//!   implemented). The wait overlaps with the consumer's processing of the previous batch.
//! * **Failures** are classified in [`super::errors`]: throttling and transient errors back
//!   off exponentially with jitter ([`crate::backoff`]) and retry the same iterator; an
//!   expired or rejected iterator is re-created with `AFTER_SEQUENCE_NUMBER` from the last
//!   Kinesis record read (or from the start position if none was read yet);
//!   `ResourceNotFoundException` ends the shard without children; other errors are returned
//!   from [`ShardReader::next_batch`] as [`StreamError::Dependency`], and the next call
//!   retries after a backoff (the caller may keep calling, as the KCL does, or give up).
//!   The SDK's own retries are off for this client ([`super::kinesis::without_sdk_retries`]).
//! * **Shard end:** a response without `NextShardIterator` ends the shard; its records and
//!   ChildShards come in that last batch (`shard_end: Some(children)`). Like the Java KCL,
//!   a response with neither a next iterator nor child shards, or with both, is rejected as
//!   invalid and GetRecords is retried with the same iterator (after a backoff). Emulators
//!   that never send ChildShards (kinesalite) therefore never reach shard end, as with Java.
//! * **Records:** `data` as [`bytes::Bytes`], partition key, sequence number, arrival time in
//!   epoch ms (0 if Kinesis sent none), sub-sequence 0 or the KPL index; KPL aggregates are
//!   deaggregated ([`super::kpl`]), optionally with the KCL's shard hash-range check
//!   ([`PollingReaderFactory::with_kpl_hash_range_check`]).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_kinesis::Client;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::errors::{classify, describe, ErrorClass, Operation};
use super::filter::CheckpointFilter;
use super::kinesis::{child_shards, convert_records, without_sdk_retries, IteratorPosition, StreamRef};
use super::kpl::HashRange;
use super::shards::{ShardHashRanges, ShardLister};
use super::{RecordBatch, ShardReader, ShardReaderFactory, StartingPosition, StreamError};
use crate::backoff::{Backoff, BackoffPolicy};
use crate::sequence::SequenceNumber;
use crate::telemetry::{self, CallErrorClass, Event, Service};

/// `maxRecords` default and upper limit.
pub const MAX_RECORDS_LIMIT: u32 = 10_000;
/// `idleTimeBetweenReadsInMillis` default.
pub const DEFAULT_IDLE_TIME: Duration = Duration::from_millis(1500);
/// Time limit for one Kinesis call (the KCL's `kinesisRequestTimeout` default).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Default first backoff delay after a throttled or transient GetRecords failure.
pub const DEFAULT_BACKOFF_BASE: std::time::Duration = std::time::Duration::from_millis(200);
/// Default longest backoff delay.
pub const DEFAULT_BACKOFF_MAX: std::time::Duration = std::time::Duration::from_secs(10);

/// Settings of the polling readers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollingSettings {
    /// GetRecords `Limit` (`maxRecords`, 1..=10000).
    pub max_records: u32,
    /// Minimum time between the end of a successful GetRecords and the next call
    /// (`idleTimeBetweenReadsInMillis`).
    pub idle_time_between_reads: Duration,
    /// Time limit for one call; a call that takes longer is a transient failure.
    pub request_timeout: Duration,
    /// First backoff delay after a throttled or failed call.
    pub backoff_base: Duration,
    /// Longest backoff delay.
    pub backoff_max: Duration,
}

impl Default for PollingSettings {
    fn default() -> Self {
        Self {
            max_records: MAX_RECORDS_LIMIT,
            idle_time_between_reads: DEFAULT_IDLE_TIME,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            backoff_base: DEFAULT_BACKOFF_BASE,
            backoff_max: DEFAULT_BACKOFF_MAX,
        }
    }
}

impl PollingSettings {
    /// The settings of a daemon configuration (`maxRecords`, `idleTimeBetweenReadsInMillis`).
    #[must_use]
    pub fn from_config(config: &crate::config::Config) -> Self {
        Self {
            max_records: config.polling.max_records,
            idle_time_between_reads: config.polling.idle_time_between_reads,
            ..Self::default()
        }
    }

    fn limit(&self) -> i32 {
        let clamped = self.max_records.clamp(1, MAX_RECORDS_LIMIT);
        i32::try_from(clamped).unwrap_or(10_000)
    }
}

/// Opens [`PollingReader`]s on shards of one stream.
#[derive(Debug, Clone)]
pub struct PollingReaderFactory {
    client: Client,
    stream: StreamRef,
    settings: PollingSettings,
    cancel: CancellationToken,
    ranges: Option<Arc<ShardHashRanges>>,
}

impl PollingReaderFactory {
    /// A factory reading `stream` with `client` (its SDK retries are switched off for the
    /// readers). Cancelling `cancel` stops every reader it opened.
    #[must_use]
    pub fn new(client: &Client, stream: StreamRef, settings: PollingSettings, cancel: CancellationToken) -> Self {
        Self { client: without_sdk_retries(client), stream, settings, cancel, ranges: None }
    }

    /// Enables the KCL's KPL hash-range check: a KPL aggregate holding a user record outside
    /// the shard's hash-key range is dropped (see [`super::kpl`]). The Java KCL does this
    /// unless `skipShardSyncAtWorkerInitializationIfLeasesExist` is set. Ranges are looked up
    /// once per shard through `lister` (cached; unknown shards are read without the check).
    #[must_use]
    pub fn with_kpl_hash_range_check(mut self, lister: Arc<dyn ShardLister>) -> Self {
        self.ranges = Some(Arc::new(ShardHashRanges::new(lister)));
        self
    }
}

#[async_trait]
impl ShardReaderFactory for PollingReaderFactory {
    async fn open(&self, shard_id: &str, start: StartingPosition) -> Result<Box<dyn ShardReader>, StreamError> {
        let position = IteratorPosition::for_start(&start).map_err(|message| StreamError::Dependency {
            shard_id: shard_id.to_owned(),
            operation: Operation::GetShardIterator.name(),
            message,
        })?;
        let cancel = self.cancel.child_token();
        let fetcher = Fetcher {
            client: self.client.clone(),
            stream: self.stream.clone(),
            shard_id: shard_id.to_owned(),
            settings: self.settings.clone(),
            start: position,
            filter: CheckpointFilter::new(&start),
            ranges: self.ranges.clone(),
            range: None,
            iterator: None,
            last_sequence: None,
            last_success: None,
            backoff: Backoff::new(BackoffPolicy::calls(self.settings.backoff_base, self.settings.backoff_max)),
            pending_delay: None,
            cancel: cancel.clone(),
        };
        tracing::debug!(shard_id, ?start, "opening polling reader");
        let (tx, rx) = mpsc::channel(1);
        let task = tokio::spawn(fetcher.run(tx));
        Ok(Box::new(PollingReader { shard_id: shard_id.to_owned(), rx, task, cancel, finished: false }))
    }
}

/// What the reader task hands over.
enum Step {
    Batch(RecordBatch),
    Error(StreamError),
}

/// Reads one shard by polling; see the module docs. Dropping it stops its task.
#[derive(Debug)]
pub struct PollingReader {
    shard_id: String,
    rx: mpsc::Receiver<Step>,
    task: JoinHandle<()>,
    cancel: CancellationToken,
    finished: bool,
}

impl Drop for PollingReader {
    fn drop(&mut self) {
        self.cancel.cancel();
        self.task.abort();
    }
}

#[async_trait]
impl ShardReader for PollingReader {
    async fn next_batch(&mut self) -> Result<RecordBatch, StreamError> {
        if self.finished {
            return Err(StreamError::Dependency {
                shard_id: self.shard_id.clone(),
                operation: Operation::GetRecords.name(),
                message: "the shard end was already delivered; the reader is finished".to_owned(),
            });
        }
        let step = tokio::select! {
            biased;
            () = self.cancel.cancelled() => None,
            step = self.rx.recv() => step,
        };
        match step {
            Some(Step::Batch(batch)) => {
                self.finished = batch.shard_end.is_some();
                Ok(batch)
            }
            Some(Step::Error(error)) => Err(error),
            None if self.cancel.is_cancelled() => Err(StreamError::Cancelled { shard_id: self.shard_id.clone() }),
            None => Err(StreamError::Dependency {
                shard_id: self.shard_id.clone(),
                operation: Operation::GetRecords.name(),
                message: "the reader task ended unexpectedly".to_owned(),
            }),
        }
    }
}

/// The state of one shard's reader task.
struct Fetcher {
    client: Client,
    stream: StreamRef,
    shard_id: String,
    settings: PollingSettings,
    /// Where to (re)start while no record has been read.
    start: IteratorPosition,
    filter: CheckpointFilter,
    ranges: Option<Arc<ShardHashRanges>>,
    /// The shard's hash range for the KPL check (looked up before the first read).
    range: Option<HashRange>,
    iterator: Option<String>,
    /// Sequence number of the last Kinesis record read: iterators are re-created after it.
    last_sequence: Option<SequenceNumber>,
    last_success: Option<Instant>,
    backoff: Backoff,
    /// Wait before the next attempt (set by a failure).
    pending_delay: Option<Duration>,
    cancel: CancellationToken,
}

/// A failed call: its class and a message.
type CallError = (ErrorClass, String);

impl Fetcher {
    async fn run(mut self, tx: mpsc::Sender<Step>) {
        if let Some(ranges) = self.ranges.take() {
            let lookup = tokio::select! {
                () = self.cancel.cancelled() => return,
                range = ranges.get(&self.shard_id) => range,
            };
            self.range = lookup.as_ref().and_then(HashRange::parse);
        }
        loop {
            // Fetch only when the consumer has room: bounds memory to ~2 batches.
            let permit = tokio::select! {
                () = self.cancel.cancelled() => return,
                permit = tx.reserve() => match permit {
                    Ok(permit) => permit,
                    Err(_) => return, // reader dropped
                },
            };
            let Some(step) = self.fetch().await else { return };
            let end = matches!(&step, Step::Batch(b) if b.shard_end.is_some());
            permit.send(step);
            if end {
                return;
            }
        }
    }

    /// Waits for `delay` unless cancelled first (then false).
    async fn sleep(&self, delay: Duration) -> bool {
        tokio::select! {
            () = self.cancel.cancelled() => false,
            () = tokio::time::sleep(delay) => true,
        }
    }

    fn fail_later(&mut self) {
        self.pending_delay = Some(self.backoff.next_delay());
    }

    fn dependency(&self, operation: Operation, message: String) -> StreamError {
        StreamError::Dependency { shard_id: self.shard_id.clone(), operation: operation.name(), message }
    }

    fn shard_gone(&self, operation: Operation, message: &str) -> Step {
        tracing::info!(shard_id = %self.shard_id, operation = operation.name(), error = %message,
            "shard not found; treating it as ended without children");
        Step::Batch(RecordBatch { shard_end: Some(Vec::new()), ..RecordBatch::default() })
    }

    /// Produces the next batch or error to hand over; `None` when cancelled.
    async fn fetch(&mut self) -> Option<Step> {
        loop {
            if let Some(delay) = self.pending_delay.take() {
                if !self.sleep(delay).await {
                    return None;
                }
            }
            if self.iterator.is_none() {
                match self.get_shard_iterator().await? {
                    Ok(Some(iterator)) => self.iterator = Some(iterator),
                    Ok(None) => {
                        // The KCL treats a missing iterator as the end of the shard.
                        tracing::info!(shard_id = %self.shard_id, "GetShardIterator returned no iterator; shard end");
                        return Some(Step::Batch(RecordBatch {
                            shard_end: Some(Vec::new()),
                            ..RecordBatch::default()
                        }));
                    }
                    Err((class, message)) => match class {
                        ErrorClass::NotFound => return Some(self.shard_gone(Operation::GetShardIterator, &message)),
                        ErrorClass::Throttled | ErrorClass::Transient => {
                            self.log_retry(Operation::GetShardIterator, class, &message);
                            self.fail_later();
                            continue;
                        }
                        ErrorClass::ExpiredIterator | ErrorClass::InvalidIterator | ErrorClass::Fatal => {
                            self.fail_later();
                            return Some(Step::Error(self.dependency(Operation::GetShardIterator, message)));
                        }
                    },
                }
            }
            if let Some(last) = self.last_success {
                let due = last + self.settings.idle_time_between_reads;
                if due > Instant::now() && !self.sleep(due - Instant::now()).await {
                    return None;
                }
            }
            match self.get_records().await? {
                Ok(batch) => return Some(Step::Batch(batch)),
                Err((class, message)) => match class {
                    ErrorClass::Throttled | ErrorClass::Transient => {
                        self.log_retry(Operation::GetRecords, class, &message);
                        self.fail_later();
                    }
                    ErrorClass::ExpiredIterator => {
                        tracing::info!(shard_id = %self.shard_id, error = %message, "shard iterator expired; getting a new one");
                        self.iterator = None;
                        // The first expiry is re-created at once; repeated ones back off.
                        let delay = self.backoff.next_delay();
                        if self.backoff.failures() > 1 {
                            self.pending_delay = Some(delay);
                        }
                    }
                    ErrorClass::InvalidIterator => {
                        tracing::warn!(shard_id = %self.shard_id, error = %message, "shard iterator rejected; getting a new one");
                        self.iterator = None;
                        self.fail_later();
                    }
                    ErrorClass::NotFound => return Some(self.shard_gone(Operation::GetRecords, &message)),
                    ErrorClass::Fatal => {
                        self.fail_later();
                        return Some(Step::Error(self.dependency(Operation::GetRecords, message)));
                    }
                },
            }
        }
    }

    fn log_retry(&self, operation: Operation, class: ErrorClass, message: &str) {
        let attempt = self.backoff.failures() + 1;
        if class == ErrorClass::Throttled {
            tracing::info!(shard_id = %self.shard_id, operation = operation.name(), attempt, error = %message, "throttled; backing off");
        } else {
            tracing::warn!(shard_id = %self.shard_id, operation = operation.name(), attempt, error = %message, "call failed; backing off");
        }
    }

    /// Runs one call under the request timeout; `None` when cancelled.
    async fn call<T, E>(
        &self,
        operation: Operation,
        call: impl std::future::Future<
            Output = Result<T, aws_sdk_kinesis::error::SdkError<E, aws_sdk_kinesis::config::http::HttpResponse>>,
        >,
    ) -> Option<Result<T, CallError>>
    where
        E: aws_sdk_kinesis::error::ProvideErrorMetadata + std::error::Error + 'static,
    {
        let timeout = self.settings.request_timeout;
        let started = std::time::Instant::now();
        let outcome = tokio::select! {
            () = self.cancel.cancelled() => return None,
            outcome = tokio::time::timeout(timeout, call) => outcome,
        };
        let result = match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err((classify(operation, &error), describe(&error))),
            Err(_) => Err((ErrorClass::Transient, format!("no response within {timeout:?}"))),
        };
        let error = result.as_ref().err().map(|(class, _)| match class {
            ErrorClass::Throttled => CallErrorClass::Throttled,
            ErrorClass::Transient => CallErrorClass::Transient,
            ErrorClass::ExpiredIterator | ErrorClass::InvalidIterator => CallErrorClass::Iterator,
            ErrorClass::NotFound => CallErrorClass::NotFound,
            ErrorClass::Fatal => CallErrorClass::Other,
        });
        telemetry::record(Event::AwsCall {
            service: Service::Kinesis,
            shard_id: Some(&self.shard_id),
            operation: operation.name(),
            duration: started.elapsed(),
            error,
        });
        if matches!(result, Err((ErrorClass::ExpiredIterator, _))) && operation == Operation::GetRecords {
            telemetry::record(Event::ExpiredIterator { shard_id: &self.shard_id });
        }
        Some(result)
    }

    async fn get_shard_iterator(&mut self) -> Option<Result<Option<String>, CallError>> {
        let position = match &self.last_sequence {
            Some(seq) => IteratorPosition::AfterSequence(seq.clone()),
            None => self.start.clone(),
        };
        tracing::debug!(shard_id = %self.shard_id, ?position, "GetShardIterator");
        let request = position.apply(
            self.client
                .get_shard_iterator()
                .set_stream_name(self.stream.name_param())
                .set_stream_arn(self.stream.arn_param())
                .shard_id(&self.shard_id),
        );
        // Boxed: the SDK's request future is ~11 KiB; inline it would make every shard's
        // reader task that big for its whole life instead of only during a call.
        let result = self.call(Operation::GetShardIterator, Box::pin(request.send())).await?;
        Some(result.map(|out| out.shard_iterator))
    }

    async fn get_records(&mut self) -> Option<Result<RecordBatch, CallError>> {
        let iterator = self.iterator.clone().unwrap_or_default();
        let request = self.client.get_records().shard_iterator(iterator).limit(self.settings.limit());
        let mut out = match self.call(Operation::GetRecords, Box::pin(request.send())).await? {
            Ok(out) => out,
            Err(error) => return Some(Err(error)),
        };
        let children = out.child_shards.take().unwrap_or_default();
        if out.next_shard_iterator.is_none() == children.is_empty() {
            // Neither (or both) of next iterator and child shards: the KCL rejects the
            // response and retries with the same iterator.
            let message = format!(
                "invalid GetRecords response: next iterator {}, {} child shards",
                if out.next_shard_iterator.is_some() { "present" } else { "absent" },
                children.len()
            );
            return Some(Err((ErrorClass::Transient, message)));
        }
        let converted = match convert_records(std::mem::take(&mut out.records), self.range, &mut self.filter) {
            Ok(converted) => converted,
            Err(message) => return Some(Err((ErrorClass::Transient, message))),
        };
        self.last_success = Some(Instant::now());
        self.backoff.reset();
        if let Some(seq) = converted.last_sequence_number {
            self.last_sequence = Some(seq);
        }
        self.iterator = out.next_shard_iterator.take();
        let shard_end = if self.iterator.is_none() { Some(child_shards(&children)) } else { None };
        if let Some(children) = &shard_end {
            let ids: Vec<&str> = children.iter().map(|c| c.shard_id.as_str()).collect();
            tracing::info!(shard_id = %self.shard_id, children = ?ids, "reached shard end");
        }
        Some(Ok(RecordBatch {
            records: converted.records,
            millis_behind_latest: out.millis_behind_latest,
            shard_end,
            payload_bytes: converted.payload_bytes,
        }))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::sequence::ExtendedSequenceNumber;
    use crate::stream::fake_kinesis::{iterator, record, records, FakeKinesis};

    fn settings(idle_ms: u64) -> PollingSettings {
        PollingSettings {
            max_records: 7,
            idle_time_between_reads: Duration::from_millis(idle_ms),
            request_timeout: Duration::from_secs(5),
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_secs(2),
        }
    }

    async fn open(fake: &FakeKinesis, start: StartingPosition, idle_ms: u64) -> Box<dyn ShardReader> {
        let factory = PollingReaderFactory::new(
            &fake.client(),
            StreamRef::by_name("s"),
            settings(idle_ms),
            CancellationToken::new(),
        );
        factory.open("shardId-000000000000", start).await.unwrap()
    }

    /// `next_batch` with a (virtual) time limit, so a retry loop cannot hang a test.
    async fn next(reader: &mut Box<dyn ShardReader>) -> Result<RecordBatch, StreamError> {
        tokio::time::timeout(Duration::from_secs(600), reader.next_batch()).await.expect("next_batch timed out")
    }

    fn seqs(batch: &RecordBatch) -> Vec<(String, u64)> {
        batch.records.iter().map(|r| (r.sequence_number.to_string(), r.sub_sequence_number)).collect()
    }

    fn esn(seq: &str, sub: u64) -> ExtendedSequenceNumber {
        ExtendedSequenceNumber::at(SequenceNumber::parse(seq).unwrap(), sub)
    }

    #[tokio::test(start_paused = true)]
    async fn reads_from_trim_horizon_with_limit_and_fields() {
        let fake = FakeKinesis::default();
        fake.push("GetShardIterator", 200, iterator("it-1"));
        fake.push("GetRecords", 200, records(vec![record("1", b"a"), record("2", b"bcd")], "it-2", 42));
        let mut reader = open(&fake, StartingPosition::TrimHorizon, 100).await;
        let batch = next(&mut reader).await.unwrap();
        assert_eq!(seqs(&batch), vec![("1".into(), 0), ("2".into(), 0)]);
        assert_eq!(batch.millis_behind_latest, Some(42));
        assert_eq!(batch.payload_bytes, 4);
        assert_eq!(batch.shard_end, None);
        assert_eq!(&batch.records[1].data[..], b"bcd");
        assert_eq!(batch.records[1].partition_key, "pk-2");
        assert_eq!(batch.records[1].approximate_arrival_timestamp_ms, 1_700_000_000_250);

        let gsi = fake.calls("GetShardIterator");
        assert_eq!(gsi[0].body["ShardIteratorType"], "TRIM_HORIZON");
        assert_eq!(gsi[0].body["StreamName"], "s");
        assert_eq!(gsi[0].body["ShardId"], "shardId-000000000000");
        let gr = fake.calls("GetRecords");
        assert_eq!(gr[0].body["ShardIterator"], "it-1");
        assert_eq!(gr[0].body["Limit"], 7);
    }

    #[tokio::test(start_paused = true)]
    async fn waits_idle_time_between_calls_and_prefetches_one_batch() {
        let fake = FakeKinesis::default();
        fake.push("GetShardIterator", 200, iterator("it-1"));
        fake.fallback("GetRecords", 200, records(vec![record("5", b"x")], "it-n", 1000));
        let mut reader = open(&fake, StartingPosition::TrimHorizon, 500).await;
        // Without consumption the task fetches exactly one batch ahead.
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(fake.calls("GetRecords").len(), 1);
        next(&mut reader).await.unwrap();
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(fake.calls("GetRecords").len(), 2);
        for _ in 0..3 {
            next(&mut reader).await.unwrap();
        }
        let calls = fake.calls("GetRecords");
        for pair in calls.windows(2) {
            assert!(
                pair[1].at - pair[0].at >= Duration::from_millis(500),
                "calls too close: {:?}",
                pair[1].at - pair[0].at
            );
        }
        // Dropping the reader stops the task: no more calls.
        let before = fake.calls("GetRecords").len();
        drop(reader);
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(fake.calls("GetRecords").len(), before);
    }

    #[tokio::test(start_paused = true)]
    async fn throttling_backs_off_and_retries_the_same_iterator() {
        let fake = FakeKinesis::default();
        fake.push("GetShardIterator", 200, iterator("it-1"));
        fake.error("GetRecords", 400, "ProvisionedThroughputExceededException")
            .error("GetRecords", 400, "ProvisionedThroughputExceededException")
            .error("GetRecords", 503, "ServiceUnavailable")
            .push("GetRecords", 200, records(vec![record("1", b"a")], "it-2", 0));
        let mut reader = open(&fake, StartingPosition::TrimHorizon, 0).await;
        let start = tokio::time::Instant::now();
        let batch = next(&mut reader).await.unwrap();
        assert_eq!(seqs(&batch), vec![("1".into(), 0)]);
        let calls = fake.calls("GetRecords");
        assert_eq!(calls.len(), 4, "SDK retries must be off: one HTTP call per attempt");
        assert!(calls.iter().all(|c| c.body["ShardIterator"] == "it-1"));
        // Backoff ceilings 100, 200, 400 ms with jitter in the upper half: at least 350 ms.
        // (A 5xx *without* an error code would instead re-create the iterator, see errors.rs.)
        assert!(calls[3].at - start >= Duration::from_millis(350), "{:?}", calls[3].at - start);
        assert!(calls[1].at - calls[0].at >= Duration::from_millis(50));
        assert_eq!(fake.calls("GetShardIterator").len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn expired_iterator_is_recreated_after_the_last_record() {
        let fake = FakeKinesis::default();
        fake.push("GetShardIterator", 200, iterator("it-1")).push("GetShardIterator", 200, iterator("it-3"));
        fake.push("GetRecords", 200, records(vec![record("10", b"a"), record("11", b"b")], "it-2", 0))
            .error("GetRecords", 400, "ExpiredIteratorException")
            .push("GetRecords", 200, records(vec![record("12", b"c")], "it-4", 0));
        let mut reader = open(&fake, StartingPosition::Latest, 0).await;
        assert_eq!(seqs(&next(&mut reader).await.unwrap()), vec![("10".into(), 0), ("11".into(), 0)]);
        assert_eq!(seqs(&next(&mut reader).await.unwrap()), vec![("12".into(), 0)]);
        let gsi = fake.calls("GetShardIterator");
        assert_eq!(gsi[0].body["ShardIteratorType"], "LATEST");
        assert_eq!(gsi[1].body["ShardIteratorType"], "AFTER_SEQUENCE_NUMBER");
        assert_eq!(gsi[1].body["StartingSequenceNumber"], "11");
        let gr = fake.calls("GetRecords");
        assert_eq!(gr[2].body["ShardIterator"], "it-3");
    }

    #[tokio::test(start_paused = true)]
    async fn invalid_iterator_before_any_record_restarts_from_the_checkpoint() {
        let fake = FakeKinesis::default();
        fake.push("GetShardIterator", 200, iterator("it-1")).push("GetShardIterator", 200, iterator("it-2"));
        // kinesis-local's answer to a bad iterator: HTTP 500 with an empty body.
        fake.push_raw("GetRecords", 500, "").push(
            "GetRecords",
            200,
            records(vec![record("20", b"old"), record("21", b"new")], "it-3", 0),
        );
        let mut reader = open(&fake, StartingPosition::AfterCheckpoint(esn("20", 0)), 0).await;
        let batch = next(&mut reader).await.unwrap();
        assert_eq!(seqs(&batch), vec![("21".into(), 0)]);
        assert_eq!(batch.payload_bytes, 3);
        let gsi = fake.calls("GetShardIterator");
        assert_eq!(gsi.len(), 2);
        for call in gsi {
            assert_eq!(call.body["ShardIteratorType"], "AT_SEQUENCE_NUMBER");
            assert_eq!(call.body["StartingSequenceNumber"], "20");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn sub_sequence_checkpoint_resumes_inside_an_aggregate() {
        let agg = crate::stream::kpl::test_encoder::aggregate(
            &["a"],
            &[],
            &[(0, None, b"u0"), (0, None, b"u1"), (0, None, b"u2")],
        );
        let fake = FakeKinesis::default();
        fake.push("GetShardIterator", 200, iterator("it-1"));
        fake.push("GetRecords", 200, records(vec![record("30", &agg), record("31", b"plain")], "it-2", 0));
        let mut reader = open(&fake, StartingPosition::AfterCheckpoint(esn("30", 1)), 0).await;
        let batch = next(&mut reader).await.unwrap();
        assert_eq!(seqs(&batch), vec![("30".into(), 2), ("31".into(), 0)]);
        assert_eq!(&batch.records[0].data[..], b"u2");
        assert_eq!(batch.records[0].partition_key, "a");
    }

    #[tokio::test(start_paused = true)]
    async fn kpl_hash_range_check_drops_foreign_aggregates() {
        use crate::stream::kpl::test_encoder::aggregate;
        let lister = crate::stream::memory::InMemoryStream::new();
        let shard_id = lister.add_root_shard(crate::model::HashKeyRange { starting: "0".into(), ending: "10".into() });
        let foreign = aggregate(&["a"], &[], &[(0, None, b"md5 of a is far above 10")]);
        let own = aggregate(&["a"], &["5"], &[(0, Some(0), b"explicit hash key 5")]);
        let fake = FakeKinesis::default();
        fake.push("GetShardIterator", 200, iterator("it-1"));
        fake.push(
            "GetRecords",
            200,
            records(
                vec![record("1", &foreign), record("2", b"plain records are never dropped"), record("3", &own)],
                "it-2",
                0,
            ),
        );
        let factory =
            PollingReaderFactory::new(&fake.client(), StreamRef::by_name("s"), settings(0), CancellationToken::new())
                .with_kpl_hash_range_check(Arc::new(lister));
        let mut reader = factory.open(&shard_id, StartingPosition::TrimHorizon).await.unwrap();
        let batch = next(&mut reader).await.unwrap();
        assert_eq!(seqs(&batch), vec![("2".into(), 0), ("3".into(), 0)]);
        assert_eq!(&batch.records[1].data[..], b"explicit hash key 5");
    }

    #[tokio::test(start_paused = true)]
    async fn shard_end_delivers_last_records_with_children() {
        let fake = FakeKinesis::default();
        fake.push("GetShardIterator", 200, iterator("it-1"));
        let child = |id: &str, lo: &str, hi: &str| {
            json!({"ShardId": id, "ParentShards": ["shardId-000000000000"],
                   "HashKeyRange": {"StartingHashKey": lo, "EndingHashKey": hi}})
        };
        // First an invalid response (neither next iterator nor children): retried.
        fake.push("GetRecords", 200, json!({"Records": [record("1", b"dropped")], "MillisBehindLatest": 0}));
        fake.push(
            "GetRecords",
            200,
            json!({"Records": [record("1", b"last")], "MillisBehindLatest": 0,
                   "ChildShards": [child("shardId-000000000001", "0", "9"), child("shardId-000000000002", "10", "99")]}),
        );
        let mut reader = open(&fake, StartingPosition::TrimHorizon, 0).await;
        let batch = next(&mut reader).await.unwrap();
        assert_eq!(seqs(&batch), vec![("1".into(), 0)]);
        assert_eq!(&batch.records[0].data[..], b"last");
        let children = batch.shard_end.expect("shard end");
        assert_eq!(children.len(), 2);
        assert_eq!(children[1].shard_id, "shardId-000000000002");
        assert_eq!(children[1].parent_shards, vec!["shardId-000000000000".to_string()]);
        assert_eq!(
            (children[1].hash_key_range.starting.as_str(), children[1].hash_key_range.ending.as_str()),
            ("10", "99")
        );
        assert_eq!(fake.calls("GetRecords").len(), 2);
        assert!(fake.calls("GetRecords").iter().all(|c| c.body["ShardIterator"] == "it-1"));
        // Polling again after the end is an error, not a hang.
        assert!(matches!(next(&mut reader).await, Err(StreamError::Dependency { .. })));
    }

    #[tokio::test(start_paused = true)]
    async fn next_iterator_with_children_is_invalid_too() {
        let fake = FakeKinesis::default();
        fake.push("GetShardIterator", 200, iterator("it-1"));
        fake.push(
            "GetRecords",
            200,
            json!({"Records": [], "NextShardIterator": "it-2", "ChildShards": [
                {"ShardId": "c", "ParentShards": ["p"], "HashKeyRange": {"StartingHashKey": "0", "EndingHashKey": "1"}}]}),
        );
        fake.push("GetRecords", 200, records(vec![record("3", b"ok")], "it-2", 0));
        let mut reader = open(&fake, StartingPosition::TrimHorizon, 0).await;
        let batch = next(&mut reader).await.unwrap();
        assert_eq!(seqs(&batch), vec![("3".into(), 0)]);
        assert_eq!(batch.shard_end, None);
    }

    #[tokio::test(start_paused = true)]
    async fn resource_not_found_ends_the_shard_without_children() {
        for operation in ["GetShardIterator", "GetRecords"] {
            let fake = FakeKinesis::default();
            if operation == "GetRecords" {
                fake.push("GetShardIterator", 200, iterator("it-1"));
            }
            fake.error(operation, 400, "ResourceNotFoundException");
            let mut reader = open(&fake, StartingPosition::TrimHorizon, 0).await;
            let batch = next(&mut reader).await.unwrap();
            assert_eq!(batch.shard_end, Some(Vec::new()), "{operation}");
            assert!(batch.records.is_empty());
        }
    }

    #[tokio::test(start_paused = true)]
    async fn fatal_errors_are_surfaced_then_retried() {
        let fake = FakeKinesis::default();
        fake.error("GetShardIterator", 400, "AccessDeniedException").push("GetShardIterator", 200, iterator("it-1"));
        fake.error("GetRecords", 400, "KMSAccessDeniedException").push(
            "GetRecords",
            200,
            records(vec![record("1", b"a")], "it-2", 0),
        );
        let mut reader = open(&fake, StartingPosition::TrimHorizon, 0).await;
        match next(&mut reader).await {
            Err(StreamError::Dependency { operation, message, .. }) => {
                assert_eq!(operation, "GetShardIterator");
                assert!(message.contains("AccessDeniedException"), "{message}");
            }
            other => panic!("unexpected {other:?}"),
        }
        match next(&mut reader).await {
            Err(StreamError::Dependency { operation, .. }) => assert_eq!(operation, "GetRecords"),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(seqs(&next(&mut reader).await.unwrap()), vec![("1".into(), 0)]);
    }

    #[tokio::test(start_paused = true)]
    async fn cancellation_ends_reads() {
        let fake = FakeKinesis::default();
        fake.push("GetShardIterator", 200, iterator("it-1"));
        fake.fallback("GetRecords", 200, records(vec![], "it-1", 0));
        let cancel = CancellationToken::new();
        let factory =
            PollingReaderFactory::new(&fake.client(), StreamRef::by_name("s"), settings(1000), cancel.clone());
        let mut reader = factory.open("shardId-000000000000", StartingPosition::TrimHorizon).await.unwrap();
        next(&mut reader).await.unwrap();
        let waiter = tokio::spawn(async move { next(&mut reader).await });
        tokio::time::sleep(Duration::from_millis(10)).await;
        cancel.cancel();
        assert!(matches!(waiter.await.unwrap(), Err(StreamError::Cancelled { .. })));
    }

    #[tokio::test]
    async fn unreadable_start_positions_are_rejected_at_open() {
        let fake = FakeKinesis::default();
        let factory =
            PollingReaderFactory::new(&fake.client(), StreamRef::by_name("s"), settings(0), CancellationToken::new());
        let start = StartingPosition::AfterCheckpoint(ExtendedSequenceNumber::shard_end());
        assert!(factory.open("shardId-000000000000", start).await.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn at_timestamp_and_arn_are_sent() {
        let fake = FakeKinesis::default();
        fake.push("GetShardIterator", 200, iterator("it-1"));
        fake.push("GetRecords", 200, records(vec![], "it-2", 0));
        let stream =
            StreamRef { name: "s".into(), arn: Some("arn:aws:kinesis:us-east-1:000000000000:stream/s".into()) };
        let factory = PollingReaderFactory::new(&fake.client(), stream, settings(0), CancellationToken::new());
        let mut reader =
            factory.open("shardId-000000000000", StartingPosition::AtTimestamp(1_700_000_000_500)).await.unwrap();
        next(&mut reader).await.unwrap();
        let gsi = &fake.calls("GetShardIterator")[0].body;
        assert_eq!(gsi["ShardIteratorType"], "AT_TIMESTAMP");
        assert_eq!(gsi["Timestamp"].as_f64(), Some(1_700_000_000.5));
        assert_eq!(gsi["StreamARN"], "arn:aws:kinesis:us-east-1:000000000000:stream/s");
        assert!(gsi.get("StreamName").is_none());
    }
}
