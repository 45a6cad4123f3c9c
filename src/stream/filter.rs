//! Dropping records at or below the checkpoint a reader resumes from.
//!
//! A reader that resumes after a checkpoint asks Kinesis for `AT_SEQUENCE_NUMBER` (the
//! checkpointed record is fetched again, as in the Java KCL) and, after KPL deaggregation,
//! drops every user record whose extended sequence number is `<=` the checkpoint. That is
//! what makes a checkpoint in the middle of an aggregate resume with the next user record.

use crate::sequence::ExtendedSequenceNumber;

use super::{Record, StartingPosition};

/// Drops records up to and including a checkpoint; a no-op for other starting positions.
#[derive(Debug, Clone, Default)]
pub struct CheckpointFilter {
    after: Option<ExtendedSequenceNumber>,
}

impl CheckpointFilter {
    /// The filter for a reader starting at `start`. Only a checkpoint at a real sequence
    /// number filters anything.
    #[must_use]
    pub fn new(start: &StartingPosition) -> Self {
        let after = match start {
            StartingPosition::AfterCheckpoint(esn) if esn.sequence().is_some() => Some(esn.clone()),
            _ => None,
        };
        Self { after }
    }

    /// True while records may still be dropped.
    #[must_use]
    pub fn is_active(&self) -> bool {
        self.after.is_some()
    }

    /// Removes records `<=` the checkpoint. Records in a shard come in increasing order, so
    /// once one record passes the filter switches itself off.
    pub fn apply(&mut self, records: &mut Vec<Record>) {
        let Some(after) = &self.after else { return };
        let before = records.len();
        records.retain(|r| r.extended_sequence_number() > *after);
        if records.len() < before {
            tracing::debug!(checkpoint = %after, dropped = before - records.len(), "dropped records at or below the checkpoint");
        }
        if !records.is_empty() {
            self.after = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::sequence::{Position, SequenceNumber};

    fn rec(seq: &str, sub: u64) -> Record {
        Record {
            data: Bytes::new(),
            partition_key: "pk".into(),
            sequence_number: SequenceNumber::parse(seq).unwrap(),
            sub_sequence_number: sub,
            approximate_arrival_timestamp_ms: 0,
        }
    }

    fn esn(seq: &str, sub: u64) -> ExtendedSequenceNumber {
        ExtendedSequenceNumber::at(SequenceNumber::parse(seq).unwrap(), sub)
    }

    #[test]
    fn drops_up_to_and_including_the_checkpoint() {
        let mut f = CheckpointFilter::new(&StartingPosition::AfterCheckpoint(esn("20", 1)));
        let mut batch = vec![rec("10", 0), rec("20", 0), rec("20", 1), rec("20", 2), rec("30", 0)];
        f.apply(&mut batch);
        let left: Vec<_> = batch.iter().map(|r| (r.sequence_number.to_string(), r.sub_sequence_number)).collect();
        assert_eq!(left, vec![("20".to_string(), 2), ("30".to_string(), 0)]);
        assert!(!f.is_active());
    }

    #[test]
    fn stays_active_across_fully_filtered_batches() {
        let mut f = CheckpointFilter::new(&StartingPosition::AfterCheckpoint(esn("20", 0)));
        let mut first = vec![rec("20", 0)];
        f.apply(&mut first);
        assert!(first.is_empty());
        assert!(f.is_active());
        let mut second = vec![rec("21", 0)];
        f.apply(&mut second);
        assert_eq!(second.len(), 1);
        assert!(!f.is_active());
    }

    #[test]
    fn numeric_order_not_text_order() {
        let mut f = CheckpointFilter::new(&StartingPosition::AfterCheckpoint(esn("9", 0)));
        let mut batch = vec![rec("9", 0), rec("10", 0)];
        f.apply(&mut batch);
        assert_eq!(batch.len(), 1);
        assert_eq!(batch[0].sequence_number.as_str(), "10");
    }

    #[test]
    fn other_positions_filter_nothing() {
        for start in [
            StartingPosition::TrimHorizon,
            StartingPosition::Latest,
            StartingPosition::AtTimestamp(5),
            StartingPosition::AfterCheckpoint(ExtendedSequenceNumber::new(Position::TrimHorizon)),
        ] {
            let mut f = CheckpointFilter::new(&start);
            assert!(!f.is_active());
            let mut batch = vec![rec("1", 0)];
            f.apply(&mut batch);
            assert_eq!(batch.len(), 1);
        }
    }
}
