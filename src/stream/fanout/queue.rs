//! The bounded hand-over queue between a shard's subscription task and its reader.
//!
//! The task pushes converted events; the reader pops them. The queue never blocks the
//! pusher (the task must keep draining the HTTP/2 stream, or a stalled shard would hold the
//! connection's flow-control window for every other shard); instead the task checks
//! [`Queue::is_full`] after each push and, when full, cancels its subscription and waits with
//! [`Queue::wait_for_room`] before it resubscribes. Empty events are merged into a waiting
//! batch, so an idle but slow shard does not fill the queue with nothing.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

use tokio::sync::Notify;

use super::super::{RecordBatch, StreamError};

#[derive(Debug, Default)]
struct State {
    batches: VecDeque<RecordBatch>,
    /// A failure to hand over after the queued batches (the task has stopped).
    error: Option<StreamError>,
    /// The task has stopped (after a shard end, an error, or cancellation).
    closed: bool,
}

/// What [`Queue::pop`] found.
#[derive(Debug)]
pub(super) enum Popped {
    /// The next batch.
    Batch(RecordBatch),
    /// The task's final error.
    Error(StreamError),
    /// Nothing now; wait for [`Queue::notified`].
    Empty,
    /// Nothing ever again.
    Closed,
}

/// See the module docs.
#[derive(Debug)]
pub(super) struct Queue {
    state: Mutex<State>,
    capacity: usize,
    /// Signalled when a batch, an error or the close arrives.
    available: Notify,
    /// Signalled when a batch is taken.
    room: Notify,
}

impl Queue {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            capacity: capacity.max(1),
            available: Notify::new(),
            room: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the queue inconsistent (every
        // critical section is a single push or pop), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Appends a batch. An empty batch (no records, not the shard end) is merged into the last
    /// waiting batch instead, if there is one (its `millisBehindLatest` is updated).
    pub(super) fn push(&self, batch: RecordBatch) {
        {
            let mut state = self.lock();
            let mergeable = batch.records.is_empty() && batch.shard_end.is_none();
            match state.batches.back_mut() {
                Some(last) if mergeable && last.shard_end.is_none() => {
                    last.millis_behind_latest = batch.millis_behind_latest.or(last.millis_behind_latest);
                }
                _ => state.batches.push_back(batch),
            }
        }
        self.available.notify_one();
    }

    /// True when the queue holds `capacity` batches or more.
    pub(super) fn is_full(&self) -> bool {
        self.lock().batches.len() >= self.capacity
    }

    /// Number of waiting batches.
    pub(super) fn len(&self) -> usize {
        self.lock().batches.len()
    }

    /// Waits until at most `capacity / 2` batches are waiting (resubscribing earlier would
    /// only overflow again at once).
    pub(super) async fn wait_for_room(&self) {
        loop {
            let room = self.room.notified();
            if self.len() <= self.capacity / 2 {
                return;
            }
            room.await;
        }
    }

    /// Ends the queue with a final error (delivered after the waiting batches).
    pub(super) fn fail(&self, error: StreamError) {
        {
            let mut state = self.lock();
            state.error = Some(error);
            state.closed = true;
        }
        self.available.notify_one();
    }

    /// Marks the queue closed (the task has stopped).
    pub(super) fn close(&self) {
        self.lock().closed = true;
        self.available.notify_one();
    }

    /// Takes the next batch, the final error, or reports empty/closed.
    pub(super) fn pop(&self) -> Popped {
        let popped = {
            let mut state = self.lock();
            if let Some(batch) = state.batches.pop_front() {
                Popped::Batch(batch)
            } else if let Some(error) = state.error.take() {
                Popped::Error(error)
            } else if state.closed {
                Popped::Closed
            } else {
                Popped::Empty
            }
        };
        if matches!(popped, Popped::Batch(_)) {
            self.room.notify_one();
        }
        popped
    }

    /// Completes after the next push, error or close (or at once if one happened since the
    /// last wait).
    pub(super) async fn notified(&self) {
        self.available.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::Record;

    fn batch(records: usize) -> RecordBatch {
        let record = Record {
            data: bytes::Bytes::from_static(b"x"),
            partition_key: "k".into(),
            sequence_number: crate::sequence::SequenceNumber::parse("1").unwrap(),
            sub_sequence_number: 0,
            approximate_arrival_timestamp_ms: 0,
        };
        RecordBatch {
            records: vec![record; records],
            millis_behind_latest: Some(records as i64),
            ..RecordBatch::default()
        }
    }

    #[test]
    fn empty_batches_merge_into_a_waiting_batch() {
        let q = Queue::new(4);
        q.push(batch(0)); // nothing waiting: kept (the reader may deliver empty batches)
        q.push(batch(0));
        q.push(batch(2));
        q.push(RecordBatch { millis_behind_latest: Some(7), ..RecordBatch::default() });
        assert_eq!(q.len(), 2);
        match q.pop() {
            Popped::Batch(b) => assert!(b.records.is_empty()),
            other => panic!("{other:?}"),
        }
        match q.pop() {
            Popped::Batch(b) => assert_eq!((b.records.len(), b.millis_behind_latest), (2, Some(7))),
            other => panic!("{other:?}"),
        }
        assert!(matches!(q.pop(), Popped::Empty));
    }

    #[test]
    fn fills_and_ends_with_the_error_after_the_batches() {
        let q = Queue::new(2);
        q.push(batch(1));
        assert!(!q.is_full());
        q.push(batch(1));
        assert!(q.is_full());
        q.fail(StreamError::Cancelled { shard_id: "s".into() });
        assert!(matches!(q.pop(), Popped::Batch(_)));
        assert!(matches!(q.pop(), Popped::Batch(_)));
        assert!(matches!(q.pop(), Popped::Error(_)));
        assert!(matches!(q.pop(), Popped::Closed));
    }

    #[tokio::test]
    async fn room_is_signalled_at_half_capacity() {
        let q = std::sync::Arc::new(Queue::new(4));
        for _ in 0..4 {
            q.push(batch(1));
        }
        let waiter = tokio::spawn({
            let q = q.clone();
            async move { q.wait_for_room().await }
        });
        q.pop();
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        q.pop();
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter).await.unwrap().unwrap();
    }
}
