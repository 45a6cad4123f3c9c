//! The per-shard checkpointer: validates a child's checkpoint request against the window
//! the KCL allows and writes it through a [`CheckpointStore`].
//!
//! Window (Java `ShardRecordProcessorCheckpointer`): `last checkpoint <= requested <=
//! largest permitted`, where "largest permitted" is the last record delivered to the child
//! (or `SHARD_END` while `shardEnded` is in progress). A request without a sequence number
//! means "largest permitted". Re-checkpointing the current value is a successful no-op.
//! Checkpointing exactly the last record of an ended shard stores `SHARD_END`.
//!
//! This is what guarantees that a checkpoint never moves past a record the processor has
//! not been given.

use std::sync::Arc;

use async_trait::async_trait;

pub use crate::model::CheckpointFailure;
use crate::protocol::{CheckpointError, CheckpointRequest, Checkpointer};
use crate::sequence::{ExtendedSequenceNumber, Position};

/// Persists checkpoints for the leases this worker holds.
#[async_trait]
pub trait CheckpointStore: Send + Sync + 'static {
    /// Writes `checkpoint` for `shard_id`, conditioned on this worker's current tenure.
    async fn write_checkpoint(
        &self,
        shard_id: &str,
        checkpoint: &ExtendedSequenceNumber,
    ) -> Result<(), CheckpointFailure>;

    /// Whether records may be delivered under this tenure now. False while the lease may
    /// have expired elsewhere (not renewed within the failover time): the shard consumer
    /// then pauses delivery, keeping its record processor, until this is true again or the
    /// tenure ends. Always true unless a store knows better.
    fn delivery_allowed(&self, _shard_id: &str) -> bool {
        true
    }
}

/// The checkpoint window of one shard consumer, shared by every action of its child.
#[derive(Debug)]
pub struct ShardCheckpointer {
    shard_id: String,
    store: Arc<dyn CheckpointStore>,
    last_checkpoint: ExtendedSequenceNumber,
    largest_delivered: Option<ExtendedSequenceNumber>,
    shard_ended: bool,
}

impl std::fmt::Debug for dyn CheckpointStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CheckpointStore")
    }
}

impl ShardCheckpointer {
    /// A checkpointer starting from the lease's stored checkpoint.
    #[must_use]
    pub fn new(
        shard_id: impl Into<String>,
        store: Arc<dyn CheckpointStore>,
        last_checkpoint: ExtendedSequenceNumber,
    ) -> Self {
        Self { shard_id: shard_id.into(), store, last_checkpoint, largest_delivered: None, shard_ended: false }
    }

    /// The last successfully stored checkpoint.
    #[must_use]
    pub fn last_checkpoint(&self) -> &ExtendedSequenceNumber {
        &self.last_checkpoint
    }

    /// Records that `esn` (the last record of a batch) has been handed to the child.
    pub fn delivered(&mut self, esn: ExtendedSequenceNumber) {
        if self.largest_delivered.as_ref().is_none_or(|d| esn > *d) {
            self.largest_delivered = Some(esn);
        }
    }

    /// Marks the shard as ended: from now on the largest permitted position is `SHARD_END`.
    pub fn mark_shard_ended(&mut self) {
        self.shard_ended = true;
    }

    /// True once `SHARD_END` has been stored.
    #[must_use]
    pub fn is_at_shard_end(&self) -> bool {
        self.last_checkpoint.position == Position::ShardEnd
    }

    fn largest_permitted(&self) -> ExtendedSequenceNumber {
        if self.shard_ended {
            return ExtendedSequenceNumber::shard_end();
        }
        match &self.largest_delivered {
            Some(d) if *d > self.last_checkpoint => d.clone(),
            _ => self.last_checkpoint.clone(),
        }
    }

    fn target(&self, request: &CheckpointRequest) -> Result<ExtendedSequenceNumber, CheckpointError> {
        let Some(text) = &request.sequence_number else {
            return Ok(self.largest_permitted());
        };
        let position = Position::parse(text).ok_or_else(|| {
            CheckpointError::IllegalArgument(format!("sequence number {text:?} is neither digits nor a sentinel"))
        })?;
        let sub = request.sub_sequence_number.unwrap_or(0);
        let sub_sequence = u64::try_from(sub)
            .map_err(|_| CheckpointError::IllegalArgument(format!("negative subSequenceNumber {sub}")))?;
        Ok(ExtendedSequenceNumber { position, sub_sequence })
    }

    fn validate(&self, target: &ExtendedSequenceNumber) -> Result<(), CheckpointError> {
        if *target < self.last_checkpoint {
            return Err(CheckpointError::IllegalArgument(format!(
                "{target} is before the last checkpoint {}",
                self.last_checkpoint
            )));
        }
        let largest = self.largest_permitted();
        if *target > largest {
            return Err(CheckpointError::IllegalArgument(format!(
                "{target} is after the largest permitted position {largest}"
            )));
        }
        Ok(())
    }
}

#[async_trait]
impl Checkpointer for ShardCheckpointer {
    async fn checkpoint(&mut self, request: &CheckpointRequest) -> Result<(), CheckpointError> {
        let mut target = self.target(request)?;
        // The last record of an ended shard is stored as SHARD_END (Java behaviour).
        if self.shard_ended && self.largest_delivered.as_ref() == Some(&target) {
            target = ExtendedSequenceNumber::shard_end();
        }
        self.validate(&target)?;
        if target == self.last_checkpoint {
            return Ok(());
        }
        match self.store.write_checkpoint(&self.shard_id, &target).await {
            Ok(()) => {
                tracing::debug!(shard_id = %self.shard_id, checkpoint = %target, "checkpoint stored");
                self.last_checkpoint = target;
                Ok(())
            }
            Err(failure) => Err(failure.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::sequence::SequenceNumber;

    #[derive(Default)]
    struct Recorder {
        writes: Mutex<Vec<ExtendedSequenceNumber>>,
        fail_with: Mutex<Option<CheckpointFailure>>,
    }

    #[async_trait]
    impl CheckpointStore for Recorder {
        async fn write_checkpoint(
            &self,
            _shard_id: &str,
            checkpoint: &ExtendedSequenceNumber,
        ) -> Result<(), CheckpointFailure> {
            if let Some(e) = self.fail_with.lock().unwrap().take() {
                return Err(e);
            }
            self.writes.lock().unwrap().push(checkpoint.clone());
            Ok(())
        }
    }

    fn esn(seq: &str, sub: u64) -> ExtendedSequenceNumber {
        ExtendedSequenceNumber::at(SequenceNumber::parse(seq).unwrap(), sub)
    }

    fn req(seq: Option<&str>, sub: Option<i64>) -> CheckpointRequest {
        CheckpointRequest { sequence_number: seq.map(str::to_owned), sub_sequence_number: sub }
    }

    fn setup() -> (Arc<Recorder>, ShardCheckpointer) {
        let store = Arc::new(Recorder::default());
        let cp = ShardCheckpointer::new("shardId-0", store.clone(), ExtendedSequenceNumber::new(Position::TrimHorizon));
        (store, cp)
    }

    #[tokio::test]
    async fn null_sequence_checkpoints_the_last_delivered_record() {
        let (store, mut cp) = setup();
        cp.delivered(esn("100", 0));
        cp.checkpoint(&req(None, None)).await.unwrap();
        assert_eq!(*store.writes.lock().unwrap(), vec![esn("100", 0)]);
        // Same value again is a no-op without a write.
        cp.checkpoint(&req(Some("100"), None)).await.unwrap();
        assert_eq!(store.writes.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn refuses_positions_outside_the_window() {
        let (store, mut cp) = setup();
        cp.delivered(esn("100", 0));
        let err = cp.checkpoint(&req(Some("101"), None)).await.unwrap_err();
        assert_eq!(err.wire_name(), "IllegalArgumentException");
        cp.checkpoint(&req(Some("50"), None)).await.unwrap();
        let err = cp.checkpoint(&req(Some("49"), None)).await.unwrap_err();
        assert_eq!(err.wire_name(), "IllegalArgumentException");
        for bad in ["", "1.5e3", "abc", "-1"] {
            let err = cp.checkpoint(&req(Some(bad), None)).await.unwrap_err();
            assert_eq!(err.wire_name(), "IllegalArgumentException", "{bad:?}");
        }
        let err = cp.checkpoint(&req(Some("60"), Some(-1))).await.unwrap_err();
        assert_eq!(err.wire_name(), "IllegalArgumentException");
        // Before any delivery nothing is permitted beyond the stored checkpoint.
        assert_eq!(*store.writes.lock().unwrap(), vec![esn("50", 0)]);
    }

    #[tokio::test]
    async fn nothing_delivered_means_nothing_to_checkpoint() {
        let (store, mut cp) = setup();
        cp.checkpoint(&req(None, None)).await.unwrap();
        assert!(store.writes.lock().unwrap().is_empty());
        let err = cp.checkpoint(&req(Some("1"), None)).await.unwrap_err();
        assert_eq!(err.wire_name(), "IllegalArgumentException");
    }

    #[tokio::test]
    async fn sub_sequence_positions_are_ordered() {
        let (store, mut cp) = setup();
        cp.delivered(esn("100", 4));
        cp.checkpoint(&req(Some("100"), Some(2))).await.unwrap();
        cp.checkpoint(&req(Some("100"), Some(4))).await.unwrap();
        assert!(cp.checkpoint(&req(Some("100"), Some(5))).await.is_err());
        assert_eq!(*store.writes.lock().unwrap(), vec![esn("100", 2), esn("100", 4)]);
    }

    #[tokio::test]
    async fn shard_end_is_stored_for_null_or_the_last_record() {
        let (store, mut cp) = setup();
        cp.delivered(esn("100", 0));
        cp.mark_shard_ended();
        cp.checkpoint(&req(Some("100"), None)).await.unwrap();
        assert!(cp.is_at_shard_end());
        assert_eq!(*store.writes.lock().unwrap(), vec![ExtendedSequenceNumber::shard_end()]);

        let (store, mut cp) = setup();
        cp.mark_shard_ended();
        cp.checkpoint(&req(None, None)).await.unwrap();
        assert_eq!(*store.writes.lock().unwrap(), vec![ExtendedSequenceNumber::shard_end()]);
    }

    #[tokio::test]
    async fn store_failures_map_to_java_exception_names() {
        let (store, mut cp) = setup();
        cp.delivered(esn("100", 0));
        for (failure, name) in [
            (CheckpointFailure::LeaseLost { key: "x".into() }, "ShutdownException"),
            (CheckpointFailure::Throttled { key: "x".into() }, "ThrottlingException"),
            (
                CheckpointFailure::Dependency { key: "x".into(), message: "x".into() },
                "KinesisClientLibDependencyException",
            ),
        ] {
            *store.fail_with.lock().unwrap() = Some(failure);
            let err = cp.checkpoint(&req(None, None)).await.unwrap_err();
            assert_eq!(err.wire_name(), name);
        }
        // A failed write does not move the checkpoint.
        assert_eq!(*cp.last_checkpoint(), ExtendedSequenceNumber::new(Position::TrimHorizon));
    }

    /// A checkpoint the child writes between actions is served in the next action's
    /// context (as Java does): against the window as it is then. A position beyond every
    /// record delivered by then is refused; the last delivered record is accepted.
    #[tokio::test]
    async fn an_unsolicited_checkpoint_is_held_to_the_window_of_the_next_action() {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

        use crate::model::Record;
        use crate::protocol::{Action, ProtocolSession};

        fn record(seq: &str) -> Record {
            Record {
                data: bytes::Bytes::from_static(b"x"),
                partition_key: "pk".to_owned(),
                sequence_number: SequenceNumber::parse(seq).unwrap(),
                sub_sequence_number: 0,
                approximate_arrival_timestamp_ms: 1,
            }
        }

        let (daemon_stdin, child_stdin) = tokio::io::duplex(64 * 1024);
        let (mut child_stdout, daemon_stdout) = tokio::io::duplex(64 * 1024);
        let mut session = ProtocolSession::new("shardId-0", daemon_stdin, daemon_stdout, None);
        let (store, mut cp) = setup();
        let child = tokio::spawn(async move {
            let mut lines = BufReader::new(child_stdin).lines();
            let mut replies = Vec::new();
            // First batch: acknowledge, then (between actions) ask for two checkpoints: one
            // beyond anything delivered so far or in the next batch, one at the last record.
            assert!(lines.next_line().await.unwrap().unwrap().contains("processRecords"));
            child_stdout.write_all(b"{\"action\":\"status\",\"responseFor\":\"processRecords\"}\n").await.unwrap();
            child_stdout
                .write_all(b"{\"action\":\"checkpoint\",\"sequenceNumber\":\"250\"}\n{\"action\":\"checkpoint\",\"sequenceNumber\":\"200\"}\n")
                .await
                .unwrap();
            // Second batch: both requests are served before it; read the two replies.
            assert!(lines.next_line().await.unwrap().unwrap().contains("processRecords"));
            for _ in 0..2 {
                replies.push(lines.next_line().await.unwrap().unwrap());
            }
            child_stdout.write_all(b"{\"action\":\"status\",\"responseFor\":\"processRecords\"}\n").await.unwrap();
            (replies, child_stdout, lines)
        });
        let first = [record("100")];
        cp.delivered(first[0].extended_sequence_number());
        session
            .perform(Action::ProcessRecords { records: &first, millis_behind_latest: None }, Some(&mut cp))
            .await
            .unwrap();
        let second = [record("150"), record("200")];
        cp.delivered(second[1].extended_sequence_number());
        session
            .perform(Action::ProcessRecords { records: &second, millis_behind_latest: None }, Some(&mut cp))
            .await
            .unwrap();
        let (replies, _out, _in) = child.await.unwrap();
        assert!(replies[0].contains("\"error\":\"IllegalArgumentException\""), "{replies:?}");
        assert!(replies[1].contains("\"error\":null"), "{replies:?}");
        assert_eq!(*store.writes.lock().unwrap(), vec![esn("200", 0)], "never past a delivered record");
    }
}
