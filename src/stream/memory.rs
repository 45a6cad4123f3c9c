//! An in-memory stream for tests: shards of records, resharding, and fault injection.
//!
//! [`InMemoryStream`] implements both [`ShardReaderFactory`] and [`ShardLister`], with the
//! same observable contract as the Kinesis implementations:
//!
//! * readers honour [`StartingPosition`] (a checkpoint inside a KPL aggregate resumes with
//!   the next user record) and `max_records` (counted in user records here);
//! * a closed shard's last batch carries `shard_end: Some(children)`; a deleted shard ends
//!   with no children, and so does a shard that does not exist (as with Kinesis'
//!   `ResourceNotFoundException`); reading after the end is an error;
//! * readers see records put after they were opened (reads are live);
//! * every read after the first waits the configured idle time (default 10 ms), so a
//!   consumer loop over empty batches does not spin.
//!
//! Faults are queued per shard (or for any shard) and consumed one per read:
//! [`Fault::Dependency`] and [`Fault::NotFound`] make `next_batch` fail (the reader stays
//! usable, as the polling reader does after a surfaced error), [`Fault::Throttle`] delays
//! the read, as a real reader's internal backoff would.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use super::kinesis::IteratorPosition;
use super::shards::{Shard, ShardFilter, ShardLister};
use super::{ChildShard, Record, RecordBatch, ShardReader, ShardReaderFactory, StartingPosition, StreamError};
use crate::model::HashKeyRange;
use crate::sequence::SequenceNumber;

/// Arrival time of the first record put (epoch ms); each later put is 1 ms later.
pub const FIRST_ARRIVAL_MS: i64 = 1_700_000_000_000;

/// An injected failure, consumed by one read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The read fails with [`StreamError::Dependency`] carrying this message.
    Dependency(String),
    /// The read fails with [`StreamError::NotFound`].
    NotFound,
    /// The read is served after this delay (what a throttled reader's backoff looks like).
    Throttle(Duration),
}

#[derive(Debug)]
struct MemShard {
    shard: Shard,
    records: Vec<Record>,
    /// `Some` once closed.
    children: Option<Vec<ChildShard>>,
    /// Creation time (ms) for AT_TIMESTAMP listing; `None` for shards that existed from the
    /// start.
    created_ms: Option<i64>,
    closed_ms: Option<i64>,
    deleted: bool,
}

#[derive(Debug, Default)]
struct State {
    shards: BTreeMap<String, MemShard>,
    shards_created: u64,
    next_sequence: u128,
    clock_ms: i64,
    /// Faults for one shard (key = shard id) or any shard (key = "").
    faults: HashMap<String, VecDeque<Fault>>,
    list_faults: VecDeque<Fault>,
    reads: HashMap<String, u64>,
    opened: Vec<(String, StartingPosition)>,
}

impl State {
    fn next_sequence(&mut self) -> SequenceNumber {
        self.next_sequence += 1;
        let text = format!("49{:054}", self.next_sequence);
        SequenceNumber::parse(&text).expect("invariant: formatted digits")
    }

    fn tick(&mut self) -> i64 {
        let now = self.clock_ms;
        self.clock_ms += 1;
        now
    }

    fn new_shard_id(&mut self) -> String {
        let id = format!("shardId-{:012}", self.shards_created);
        self.shards_created += 1;
        id
    }

    fn insert(&mut self, shard: Shard, created_ms: Option<i64>) {
        let id = shard.shard_id.clone();
        self.shards.insert(
            id,
            MemShard { shard, records: Vec::new(), children: None, created_ms, closed_ms: None, deleted: false },
        );
    }

    fn take_fault(&mut self, shard_id: &str) -> Option<Fault> {
        for key in [shard_id, ""] {
            if let Some(fault) = self.faults.get_mut(key).and_then(VecDeque::pop_front) {
                return Some(fault);
            }
        }
        None
    }
}

/// An in-memory stream (see the module docs). Clones share the same stream.
#[derive(Debug, Clone)]
pub struct InMemoryStream {
    state: Arc<Mutex<State>>,
    max_records: usize,
    idle_time: Duration,
}

impl Default for InMemoryStream {
    fn default() -> Self {
        Self::new()
    }
}

fn full_range() -> (u128, u128) {
    (0, u128::MAX)
}

fn range_strings(start: u128, end: u128) -> HashKeyRange {
    HashKeyRange { starting: start.to_string(), ending: end.to_string() }
}

fn parse_range(range: &HashKeyRange) -> (u128, u128) {
    (range.starting.parse().unwrap_or(0), range.ending.parse().unwrap_or(u128::MAX))
}

impl InMemoryStream {
    /// An empty stream (no shards), 10000 records per read, 10 ms idle time.
    #[must_use]
    pub fn new() -> Self {
        let state = State { clock_ms: FIRST_ARRIVAL_MS, ..State::default() };
        Self { state: Arc::new(Mutex::new(state)), max_records: 10_000, idle_time: Duration::from_millis(10) }
    }

    /// A stream with `count` open shards `shardId-000000000000`… splitting the hash-key space
    /// evenly.
    #[must_use]
    pub fn with_shards(count: u32) -> Self {
        let stream = Self::new();
        let count = u128::from(count.max(1));
        let width = u128::MAX / count;
        let mut start = 0_u128;
        for i in 0..count {
            let end = if i + 1 == count { u128::MAX } else { (i + 1) * width };
            stream.add_root_shard(range_strings(start, end));
            start = end.saturating_add(1);
        }
        stream
    }

    /// Sets the most records a read returns (user records).
    #[must_use]
    pub fn with_max_records(mut self, max_records: usize) -> Self {
        self.max_records = max_records.max(1);
        self
    }

    /// Sets the wait before every read but a reader's first.
    #[must_use]
    pub fn with_idle_time(mut self, idle_time: Duration) -> Self {
        self.idle_time = idle_time;
        self
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock only happens in a failing test; keep going.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds an open shard with no parents and returns its id.
    pub fn add_root_shard(&self, hash_key_range: HashKeyRange) -> String {
        let mut state = self.lock();
        let shard_id = state.new_shard_id();
        let starting_sequence_number = state.next_sequence();
        let shard = Shard {
            shard_id: shard_id.clone(),
            parent_shard_id: None,
            adjacent_parent_shard_id: None,
            hash_key_range,
            starting_sequence_number,
            ending_sequence_number: None,
        };
        state.insert(shard, None);
        shard_id
    }

    /// Appends a plain record and returns it as readers will see it.
    ///
    /// # Panics
    /// If the shard does not exist or is closed (a test bug).
    pub fn put(&self, shard_id: &str, partition_key: &str, data: impl Into<Bytes>) -> Record {
        self.put_user_records(shard_id, vec![(partition_key.to_owned(), data.into())]).remove(0)
    }

    /// Appends one Kinesis record holding a KPL aggregate of `user_records` (partition key,
    /// data): they share a sequence number and get sub-sequence numbers 0, 1, …
    ///
    /// # Panics
    /// If the shard does not exist or is closed, or `user_records` is empty (a test bug).
    pub fn put_aggregate(&self, shard_id: &str, user_records: Vec<(String, Bytes)>) -> Vec<Record> {
        assert!(!user_records.is_empty(), "an aggregate needs user records");
        self.put_user_records(shard_id, user_records)
    }

    fn put_user_records(&self, shard_id: &str, user_records: Vec<(String, Bytes)>) -> Vec<Record> {
        let mut state = self.lock();
        let sequence_number = state.next_sequence();
        let arrival = state.tick();
        let shard = state.shards.get_mut(shard_id).unwrap_or_else(|| panic!("no shard {shard_id}"));
        assert!(shard.children.is_none() && !shard.deleted, "shard {shard_id} is closed");
        let records: Vec<Record> = (0_u64..)
            .zip(user_records)
            .map(|(sub, (partition_key, data))| Record {
                data,
                partition_key,
                sequence_number: sequence_number.clone(),
                sub_sequence_number: sub,
                approximate_arrival_timestamp_ms: arrival,
            })
            .collect();
        shard.records.extend(records.iter().cloned());
        records
    }

    /// The current clock (epoch ms): the arrival time the next put gets.
    #[must_use]
    pub fn now_ms(&self) -> i64 {
        self.lock().clock_ms
    }

    /// Moves the clock forward (for AT_TIMESTAMP tests).
    pub fn advance_clock(&self, by_ms: i64) {
        self.lock().clock_ms += by_ms;
    }

    fn close(state: &mut State, shard_id: &str, children: Vec<ChildShard>) {
        let ending = state.next_sequence();
        let now = state.tick();
        let shard = state.shards.get_mut(shard_id).unwrap_or_else(|| panic!("no shard {shard_id}"));
        assert!(shard.children.is_none(), "shard {shard_id} is already closed");
        let ending = shard.records.last().map_or(ending, |r| r.sequence_number.clone());
        shard.shard.ending_sequence_number = Some(ending);
        shard.children = Some(children);
        shard.closed_ms = Some(now);
    }

    fn add_child(state: &mut State, parents: &[&str], range: HashKeyRange) -> ChildShard {
        let shard_id = state.new_shard_id();
        let starting_sequence_number = state.next_sequence();
        let now = state.clock_ms;
        let shard = Shard {
            shard_id: shard_id.clone(),
            parent_shard_id: parents.first().map(|p| (*p).to_owned()),
            adjacent_parent_shard_id: parents.get(1).map(|p| (*p).to_owned()),
            hash_key_range: range.clone(),
            starting_sequence_number,
            ending_sequence_number: None,
        };
        state.insert(shard, Some(now));
        ChildShard { shard_id, parent_shards: parents.iter().map(|p| (*p).to_owned()).collect(), hash_key_range: range }
    }

    /// Splits an open shard in the middle of its hash range: closes it and creates two
    /// children, which readers of the parent get at its end.
    ///
    /// # Panics
    /// If the shard does not exist or is closed.
    pub fn split_shard(&self, shard_id: &str) -> [ChildShard; 2] {
        let mut state = self.lock();
        let range = state.shards.get(shard_id).map(|s| s.shard.hash_key_range.clone());
        let (start, end) = range.as_ref().map_or_else(full_range, parse_range);
        let mid = start + (end - start) / 2;
        let low = Self::add_child(&mut state, &[shard_id], range_strings(start, mid));
        let high = Self::add_child(&mut state, &[shard_id], range_strings(mid + 1, end));
        Self::close(&mut state, shard_id, vec![low.clone(), high.clone()]);
        [low, high]
    }

    /// Merges two open shards (adjacent ranges) into one child.
    ///
    /// # Panics
    /// If a shard does not exist or is closed.
    pub fn merge_shards(&self, shard_id: &str, adjacent_shard_id: &str) -> ChildShard {
        let mut state = self.lock();
        let range_of = |state: &State, id: &str| state.shards.get(id).map(|s| parse_range(&s.shard.hash_key_range));
        let (a, b) = (range_of(&state, shard_id), range_of(&state, adjacent_shard_id));
        let (a, b) = (a.unwrap_or_else(full_range), b.unwrap_or_else(full_range));
        let range = range_strings(a.0.min(b.0), a.1.max(b.1));
        let child = Self::add_child(&mut state, &[shard_id, adjacent_shard_id], range);
        Self::close(&mut state, shard_id, vec![child.clone()]);
        Self::close(&mut state, adjacent_shard_id, vec![child.clone()]);
        child
    }

    /// Closes a shard with the given children (which are not created as shards).
    ///
    /// # Panics
    /// If the shard does not exist or is already closed.
    pub fn close_shard(&self, shard_id: &str, children: Vec<ChildShard>) {
        Self::close(&mut self.lock(), shard_id, children);
    }

    /// Deletes a shard (as if the stream were deleted or the shard trimmed): readers get a
    /// shard end without children, listings leave it out.
    pub fn delete_shard(&self, shard_id: &str) {
        if let Some(shard) = self.lock().shards.get_mut(shard_id) {
            shard.deleted = true;
        }
    }

    /// Queues faults for reads of `shard_id` (or any shard if `None`); shard-specific faults
    /// are consumed first.
    pub fn inject(&self, shard_id: Option<&str>, faults: impl IntoIterator<Item = Fault>) {
        let mut state = self.lock();
        state.faults.entry(shard_id.unwrap_or_default().to_owned()).or_default().extend(faults);
    }

    /// The next `count` reads of `shard_id` (or any shard) fail with a dependency error.
    pub fn fail_next_reads(&self, shard_id: Option<&str>, count: usize) {
        let faults = (0..count).map(|i| Fault::Dependency(format!("injected failure {}", i + 1)));
        self.inject(shard_id, faults);
    }

    /// The next `count` reads of `shard_id` (or any shard) are throttled for `delay` each.
    pub fn throttle_next_reads(&self, shard_id: Option<&str>, count: usize, delay: Duration) {
        self.inject(shard_id, std::iter::repeat_n(Fault::Throttle(delay), count));
    }

    /// The next `count` listings fail with a dependency error.
    pub fn fail_next_list_shards(&self, count: usize) {
        let mut state = self.lock();
        state
            .list_faults
            .extend((0..count).map(|i| Fault::Dependency(format!("injected ListShards failure {}", i + 1))));
    }

    /// How many reads reached `shard_id` (including failed ones).
    #[must_use]
    pub fn reads(&self, shard_id: &str) -> u64 {
        self.lock().reads.get(shard_id).copied().unwrap_or(0)
    }

    /// Every `open` so far, in order.
    #[must_use]
    pub fn opened(&self) -> Vec<(String, StartingPosition)> {
        self.lock().opened.clone()
    }

    /// The records stored in a shard (user records, in order).
    #[must_use]
    pub fn records(&self, shard_id: &str) -> Vec<Record> {
        self.lock().shards.get(shard_id).map(|s| s.records.clone()).unwrap_or_default()
    }

    /// The shards as ListShards would describe them (deleted ones left out).
    #[must_use]
    pub fn shards(&self) -> Vec<Shard> {
        self.lock().shards.values().filter(|s| !s.deleted).map(|s| s.shard.clone()).collect()
    }
}

#[async_trait]
impl ShardReaderFactory for InMemoryStream {
    async fn open(&self, shard_id: &str, start: StartingPosition) -> Result<Box<dyn ShardReader>, StreamError> {
        let position = IteratorPosition::for_start(&start).map_err(|message| StreamError::Dependency {
            shard_id: shard_id.to_owned(),
            operation: "GetShardIterator",
            message,
        })?;
        let mut state = self.lock();
        state.opened.push((shard_id.to_owned(), start.clone()));
        let records: &[Record] = state.shards.get(shard_id).map_or(&[], |s| &s.records);
        let cursor = match (&start, position) {
            (StartingPosition::AfterCheckpoint(esn), IteratorPosition::AtSequence(_)) => {
                records.iter().position(|r| r.extended_sequence_number() > *esn).unwrap_or(records.len())
            }
            (_, IteratorPosition::TrimHorizon) => 0,
            (_, IteratorPosition::AtTimestamp(ms)) => {
                records.iter().position(|r| r.approximate_arrival_timestamp_ms >= ms).unwrap_or(records.len())
            }
            _ => records.len(), // LATEST
        };
        Ok(Box::new(InMemoryReader {
            stream: self.clone(),
            shard_id: shard_id.to_owned(),
            cursor,
            first: true,
            finished: false,
        }))
    }
}

/// A reader over an [`InMemoryStream`] shard.
#[derive(Debug)]
pub struct InMemoryReader {
    stream: InMemoryStream,
    shard_id: String,
    cursor: usize,
    first: bool,
    finished: bool,
}

#[async_trait]
impl ShardReader for InMemoryReader {
    async fn next_batch(&mut self) -> Result<RecordBatch, StreamError> {
        if self.finished {
            return Err(StreamError::Dependency {
                shard_id: self.shard_id.clone(),
                operation: "GetRecords",
                message: "the shard end was already delivered; the reader is finished".to_owned(),
            });
        }
        if !self.first && !self.stream.idle_time.is_zero() {
            tokio::time::sleep(self.stream.idle_time).await;
        }
        self.first = false;
        let fault = {
            let mut state = self.stream.lock();
            *state.reads.entry(self.shard_id.clone()).or_default() += 1;
            state.take_fault(&self.shard_id)
        };
        match fault {
            Some(Fault::Dependency(message)) => {
                return Err(StreamError::Dependency {
                    shard_id: self.shard_id.clone(),
                    operation: "GetRecords",
                    message,
                })
            }
            Some(Fault::NotFound) => {
                return Err(StreamError::NotFound {
                    shard_id: self.shard_id.clone(),
                    message: "injected ResourceNotFoundException".to_owned(),
                })
            }
            Some(Fault::Throttle(delay)) => tokio::time::sleep(delay).await,
            None => {}
        }
        let state = self.stream.lock();
        let Some(shard) = state.shards.get(&self.shard_id).filter(|s| !s.deleted) else {
            self.finished = true;
            return Ok(RecordBatch { shard_end: Some(Vec::new()), ..RecordBatch::default() });
        };
        let end = shard.records.len().min(self.cursor.saturating_add(self.stream.max_records));
        let records = shard.records.get(self.cursor..end).map(<[Record]>::to_vec).unwrap_or_default();
        self.cursor = end.max(self.cursor);
        let newest = shard.records.last().map(|r| r.approximate_arrival_timestamp_ms);
        let millis_behind_latest = match (records.last(), newest) {
            (Some(last), Some(newest)) => Some(newest - last.approximate_arrival_timestamp_ms),
            _ => Some(0),
        };
        let shard_end = if self.cursor >= shard.records.len() { shard.children.clone() } else { None };
        self.finished = shard_end.is_some();
        let payload_bytes = records.iter().map(|r| r.data.len()).sum();
        Ok(RecordBatch { records, millis_behind_latest, shard_end, payload_bytes })
    }
}

#[async_trait]
impl ShardLister for InMemoryStream {
    async fn list_shards(&self, filter: ShardFilter) -> Result<Vec<Shard>, StreamError> {
        let mut state = self.lock();
        match state.list_faults.pop_front() {
            Some(Fault::Dependency(message)) => {
                return Err(StreamError::Dependency { shard_id: String::new(), operation: "ListShards", message })
            }
            Some(Fault::NotFound) => {
                return Err(StreamError::NotFound {
                    shard_id: String::new(),
                    message: "injected ResourceNotFoundException".to_owned(),
                })
            }
            Some(Fault::Throttle(_)) | None => {}
        }
        let keep = |s: &MemShard| match filter {
            ShardFilter::All | ShardFilter::AtTrimHorizon => true,
            ShardFilter::AtLatest => s.children.is_none(),
            ShardFilter::AtTimestamp(t) => {
                s.created_ms.is_none_or(|created| created <= t) && s.closed_ms.is_none_or(|closed| closed >= t)
            }
        };
        Ok(state.shards.values().filter(|s| !s.deleted && keep(s)).map(|s| s.shard.clone()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sequence::{ExtendedSequenceNumber, Position};

    fn data(batch: &RecordBatch) -> Vec<String> {
        batch.records.iter().map(|r| String::from_utf8_lossy(&r.data).into_owned()).collect()
    }

    async fn read(stream: &InMemoryStream, shard: &str, start: StartingPosition) -> RecordBatch {
        stream.open(shard, start).await.unwrap().next_batch().await.unwrap()
    }

    #[test]
    fn shards_cover_the_hash_space() {
        for count in [1_u32, 2, 3, 7] {
            let shards = InMemoryStream::with_shards(count).shards();
            assert_eq!(shards.len(), count as usize);
            let ranges: Vec<(u128, u128)> = shards.iter().map(|s| parse_range(&s.hash_key_range)).collect();
            assert_eq!(ranges[0].0, 0);
            assert_eq!(ranges.last().unwrap().1, u128::MAX);
            for pair in ranges.windows(2) {
                assert_eq!(pair[0].1 + 1, pair[1].0, "{count}: {ranges:?}");
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn starting_positions() {
        let stream = InMemoryStream::with_shards(1);
        let shard = "shardId-000000000000";
        let a = stream.put(shard, "k", "a");
        stream.advance_clock(1000);
        let t = stream.now_ms();
        let agg = stream.put_aggregate(
            shard,
            vec![("k".into(), Bytes::from("b0")), ("k".into(), Bytes::from("b1")), ("k".into(), Bytes::from("b2"))],
        );
        stream.put(shard, "k", "c");

        assert_eq!(data(&read(&stream, shard, StartingPosition::TrimHorizon).await), ["a", "b0", "b1", "b2", "c"]);
        assert_eq!(data(&read(&stream, shard, StartingPosition::AtTimestamp(t)).await), ["b0", "b1", "b2", "c"]);
        assert!(read(&stream, shard, StartingPosition::Latest).await.records.is_empty());
        let after_a = StartingPosition::AfterCheckpoint(a.extended_sequence_number());
        assert_eq!(data(&read(&stream, shard, after_a).await), ["b0", "b1", "b2", "c"]);
        let inside = StartingPosition::AfterCheckpoint(agg[1].extended_sequence_number());
        let batch = read(&stream, shard, inside).await;
        assert_eq!(data(&batch), ["b2", "c"]);
        assert_eq!(batch.records[0].sub_sequence_number, 2);
        let sentinel = StartingPosition::AfterCheckpoint(ExtendedSequenceNumber::new(Position::TrimHorizon));
        assert_eq!(read(&stream, shard, sentinel).await.records.len(), 5);
        let end = StartingPosition::AfterCheckpoint(ExtendedSequenceNumber::shard_end());
        assert!(stream.open(shard, end).await.is_err());
        assert_eq!(stream.opened().len(), 6, "a rejected open is not recorded");
    }

    #[tokio::test(start_paused = true)]
    async fn max_records_live_reads_and_shard_end() {
        let stream = InMemoryStream::with_shards(1).with_max_records(2);
        let shard = "shardId-000000000000";
        let mut reader = stream.open(shard, StartingPosition::Latest).await.unwrap();
        assert!(reader.next_batch().await.unwrap().records.is_empty());
        for x in ["1", "2", "3"] {
            stream.put(shard, "k", x);
        }
        let first = reader.next_batch().await.unwrap();
        assert_eq!(data(&first), ["1", "2"]);
        assert_eq!(first.millis_behind_latest, Some(1));
        assert_eq!(first.payload_bytes, 2);
        let [low, high] = stream.split_shard(shard);
        let last = reader.next_batch().await.unwrap();
        assert_eq!(data(&last), ["3"]);
        assert_eq!(last.shard_end, Some(vec![low.clone(), high.clone()]));
        assert!(reader.next_batch().await.is_err());

        let shards = stream.shards();
        assert_eq!(shards.len(), 3);
        assert!(shards[0].is_closed());
        assert_eq!(shards[1].parent_shard_id.as_deref(), Some(shard));
        assert_eq!(parse_range(&low.hash_key_range).1 + 1, parse_range(&high.hash_key_range).0);
        let open = stream.list_shards(ShardFilter::AtLatest).await.unwrap();
        assert_eq!(open.iter().map(|s| s.shard_id.as_str()).collect::<Vec<_>>(), [low.shard_id, high.shard_id]);
    }

    #[tokio::test(start_paused = true)]
    async fn merge_and_delete() {
        let stream = InMemoryStream::with_shards(2);
        let child = stream.merge_shards("shardId-000000000000", "shardId-000000000001");
        assert_eq!(child.parent_shards.len(), 2);
        assert_eq!(parse_range(&child.hash_key_range), full_range());
        let batch = read(&stream, "shardId-000000000001", StartingPosition::TrimHorizon).await;
        assert_eq!(batch.shard_end, Some(vec![child.clone()]));
        stream.delete_shard(&child.shard_id);
        let batch = read(&stream, &child.shard_id, StartingPosition::TrimHorizon).await;
        assert_eq!(batch.shard_end, Some(Vec::new()));
        let batch = read(&stream, "no-such-shard", StartingPosition::TrimHorizon).await;
        assert_eq!(batch.shard_end, Some(Vec::new()));
        assert_eq!(stream.list_shards(ShardFilter::All).await.unwrap().len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn at_timestamp_listing() {
        let stream = InMemoryStream::with_shards(1);
        let before = stream.now_ms();
        stream.advance_clock(10);
        stream.split_shard("shardId-000000000000");
        stream.advance_clock(10);
        let after = stream.now_ms();
        let ids = |shards: Vec<Shard>| shards.into_iter().map(|s| s.shard_id).collect::<Vec<_>>();
        assert_eq!(ids(stream.list_shards(ShardFilter::AtTimestamp(before)).await.unwrap()), ["shardId-000000000000"]);
        assert_eq!(
            ids(stream.list_shards(ShardFilter::AtTimestamp(after)).await.unwrap()),
            ["shardId-000000000001", "shardId-000000000002"]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn injected_faults() {
        let stream = InMemoryStream::with_shards(2);
        let (s0, s1) = ("shardId-000000000000", "shardId-000000000001");
        stream.put(s0, "k", "x");
        stream.fail_next_reads(Some(s0), 2);
        stream.inject(None, [Fault::NotFound]);
        let mut r0 = stream.open(s0, StartingPosition::TrimHorizon).await.unwrap();
        let mut r1 = stream.open(s1, StartingPosition::TrimHorizon).await.unwrap();
        assert!(matches!(r1.next_batch().await, Err(StreamError::NotFound { .. })));
        assert!(matches!(r0.next_batch().await, Err(StreamError::Dependency { .. })));
        assert!(matches!(r0.next_batch().await, Err(StreamError::Dependency { .. })));
        assert_eq!(data(&r0.next_batch().await.unwrap()), ["x"]);
        assert_eq!(stream.reads(s0), 3);

        stream.throttle_next_reads(Some(s1), 1, Duration::from_secs(3));
        let started = tokio::time::Instant::now();
        assert!(r1.next_batch().await.unwrap().records.is_empty());
        assert!(started.elapsed() >= Duration::from_secs(3));

        stream.fail_next_list_shards(1);
        assert!(stream.list_shards(ShardFilter::All).await.is_err());
        assert_eq!(stream.list_shards(ShardFilter::All).await.unwrap().len(), 2);
    }
}
