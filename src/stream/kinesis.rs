//! Kinesis-specific pieces shared by the retrieval modes (polling now, fan-out later): how
//! requests name the stream, iterator positions, turning SDK records into delivered
//! [`Record`]s (KPL deaggregation + checkpoint filtering), and mapping ChildShards.

use aws_sdk_kinesis::config::retry::RetryConfig;
use aws_sdk_kinesis::primitives::DateTime;
use aws_sdk_kinesis::types::{self, ShardIteratorType};
use bytes::Bytes;

use super::filter::CheckpointFilter;
use super::kpl::{self, HashRange};
use super::{ChildShard, Record, StartingPosition};
use crate::model::HashKeyRange;
use crate::sequence::{Position, SequenceNumber};

/// How requests name the stream: by ARN when one is configured (`streamArn`), else by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRef {
    /// The stream name (also derived from the ARN by the configuration).
    pub name: String,
    /// The stream ARN, if configured; requests then carry only `StreamARN`.
    pub arn: Option<String>,
}

impl StreamRef {
    /// A stream addressed by name.
    #[must_use]
    pub fn by_name(name: impl Into<String>) -> Self {
        Self { name: name.into(), arn: None }
    }

    /// The stream of a daemon configuration.
    #[must_use]
    pub fn from_config(config: &crate::config::Config) -> Self {
        Self { name: config.stream_name.clone(), arn: config.stream_arn.clone() }
    }

    /// The `StreamName` request parameter (absent when the ARN is used).
    #[must_use]
    pub fn name_param(&self) -> Option<String> {
        if self.arn.is_some() {
            None
        } else {
            Some(self.name.clone())
        }
    }

    /// The `StreamARN` request parameter.
    #[must_use]
    pub fn arn_param(&self) -> Option<String> {
        self.arn.clone()
    }
}

/// A copy of `client` whose operations make exactly one attempt, so that this module's
/// classification and backoff decide about retries (the SDK's standard retry would otherwise
/// retry throttling and 5xx inside `send()`, 3 attempts by default).
#[must_use]
pub fn without_sdk_retries(client: &aws_sdk_kinesis::Client) -> aws_sdk_kinesis::Client {
    let config = client.config().to_builder().retry_config(RetryConfig::standard().with_max_attempts(1)).build();
    aws_sdk_kinesis::Client::from_conf(config)
}

/// Where GetShardIterator should point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IteratorPosition {
    /// `TRIM_HORIZON`.
    TrimHorizon,
    /// `LATEST`.
    Latest,
    /// `AT_TIMESTAMP` (epoch milliseconds).
    AtTimestamp(i64),
    /// `AT_SEQUENCE_NUMBER` (resuming from a checkpoint).
    AtSequence(SequenceNumber),
    /// `AFTER_SEQUENCE_NUMBER` (re-creating an iterator after the last record read).
    AfterSequence(SequenceNumber),
}

impl IteratorPosition {
    /// The position a reader opened at `start` begins at.
    ///
    /// # Errors
    /// A message for positions a reader cannot start from: `SHARD_END` (nothing left to read)
    /// and an `AT_TIMESTAMP` checkpoint sentinel (the timestamp is not stored in the lease;
    /// open with [`StartingPosition::AtTimestamp`] instead).
    pub fn for_start(start: &StartingPosition) -> Result<Self, String> {
        match start {
            StartingPosition::TrimHorizon => Ok(Self::TrimHorizon),
            StartingPosition::Latest => Ok(Self::Latest),
            StartingPosition::AtTimestamp(ms) => Ok(Self::AtTimestamp(*ms)),
            StartingPosition::AfterCheckpoint(esn) => match &esn.position {
                Position::Sequence(s) => Ok(Self::AtSequence(s.clone())),
                Position::TrimHorizon => Ok(Self::TrimHorizon),
                Position::Latest => Ok(Self::Latest),
                Position::AtTimestamp => Err(
                    "cannot resume from the AT_TIMESTAMP sentinel: open the reader with StartingPosition::AtTimestamp"
                        .to_owned(),
                ),
                Position::ShardEnd => Err("the checkpoint is SHARD_END: there is nothing left to read".to_owned()),
            },
        }
    }

    /// Fills in a GetShardIterator request.
    #[must_use]
    pub fn apply(
        &self,
        request: aws_sdk_kinesis::operation::get_shard_iterator::builders::GetShardIteratorFluentBuilder,
    ) -> aws_sdk_kinesis::operation::get_shard_iterator::builders::GetShardIteratorFluentBuilder {
        match self {
            Self::TrimHorizon => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
            Self::Latest => request.shard_iterator_type(ShardIteratorType::Latest),
            Self::AtTimestamp(ms) => {
                request.shard_iterator_type(ShardIteratorType::AtTimestamp).timestamp(DateTime::from_millis(*ms))
            }
            Self::AtSequence(s) => {
                request.shard_iterator_type(ShardIteratorType::AtSequenceNumber).starting_sequence_number(s.as_str())
            }
            Self::AfterSequence(s) => {
                request.shard_iterator_type(ShardIteratorType::AfterSequenceNumber).starting_sequence_number(s.as_str())
            }
        }
    }
}

/// Records of one response, ready for delivery.
#[derive(Debug, Default)]
pub struct Converted {
    /// Deaggregated, checkpoint-filtered records.
    pub records: Vec<Record>,
    /// Payload bytes of `records`.
    pub payload_bytes: usize,
    /// Sequence number of the last *Kinesis* record in the response (even if its user
    /// records were filtered out): where an iterator is re-created after.
    pub last_sequence_number: Option<SequenceNumber>,
}

/// Turns SDK records into delivered records: KPL deaggregation (with the shard's hash range
/// when known), then the checkpoint filter.
///
/// # Errors
/// A message if a record's sequence number is not a digit string (the response is unusable).
pub fn convert_records(
    raw: Vec<types::Record>,
    range: Option<HashRange>,
    filter: &mut CheckpointFilter,
) -> Result<Converted, String> {
    let mut out = Converted::default();
    for record in raw {
        let Some(sequence_number) = SequenceNumber::parse(&record.sequence_number) else {
            return Err(format!("record with an invalid sequence number {:?}", record.sequence_number));
        };
        let arrival = record.approximate_arrival_timestamp.and_then(|t| t.to_millis().ok()).unwrap_or(0);
        let data = Bytes::from(record.data.into_inner());
        let partition_key = record.partition_key.unwrap_or_default();
        out.records.extend(kpl::expand(data, partition_key, &sequence_number, arrival, range));
        out.last_sequence_number = Some(sequence_number);
    }
    filter.apply(&mut out.records);
    out.payload_bytes = out.records.iter().map(|r| r.data.len()).sum();
    Ok(out)
}

/// Maps the ChildShards of a GetRecords response (or fan-out event).
#[must_use]
pub fn child_shards(children: &[types::ChildShard]) -> Vec<ChildShard> {
    children
        .iter()
        .map(|c| ChildShard {
            shard_id: c.shard_id().to_owned(),
            parent_shards: c.parent_shards().to_vec(),
            hash_key_range: c
                .hash_key_range()
                .map(hash_key_range)
                .unwrap_or_else(|| HashKeyRange { starting: String::new(), ending: String::new() }),
        })
        .collect()
}

/// Maps an SDK hash-key range.
#[must_use]
pub fn hash_key_range(range: &types::HashKeyRange) -> HashKeyRange {
    HashKeyRange { starting: range.starting_hash_key().to_owned(), ending: range.ending_hash_key().to_owned() }
}

#[cfg(test)]
mod tests {
    use aws_sdk_kinesis::primitives::Blob;

    use super::*;
    use crate::sequence::ExtendedSequenceNumber;

    fn sdk_record(seq: &str, data: &[u8]) -> types::Record {
        types::Record::builder()
            .sequence_number(seq)
            .data(Blob::new(data))
            .partition_key("pk")
            .approximate_arrival_timestamp(DateTime::from_millis(1_700_000_000_456))
            .build()
            .unwrap()
    }

    #[test]
    fn start_positions_map_to_iterator_types() {
        let seq = SequenceNumber::parse("42").unwrap();
        let cases = [
            (StartingPosition::TrimHorizon, IteratorPosition::TrimHorizon),
            (StartingPosition::Latest, IteratorPosition::Latest),
            (StartingPosition::AtTimestamp(7), IteratorPosition::AtTimestamp(7)),
            (
                StartingPosition::AfterCheckpoint(ExtendedSequenceNumber::at(seq.clone(), 3)),
                IteratorPosition::AtSequence(seq),
            ),
            (
                StartingPosition::AfterCheckpoint(ExtendedSequenceNumber::new(Position::TrimHorizon)),
                IteratorPosition::TrimHorizon,
            ),
            (
                StartingPosition::AfterCheckpoint(ExtendedSequenceNumber::new(Position::Latest)),
                IteratorPosition::Latest,
            ),
        ];
        for (start, expected) in cases {
            assert_eq!(IteratorPosition::for_start(&start), Ok(expected));
        }
        for bad in [Position::ShardEnd, Position::AtTimestamp] {
            let start = StartingPosition::AfterCheckpoint(ExtendedSequenceNumber::new(bad));
            assert!(IteratorPosition::for_start(&start).is_err());
        }
    }

    #[test]
    fn converts_deaggregates_and_filters() {
        let agg =
            kpl::test_encoder::aggregate(&["a", "b"], &[], &[(0, None, b"u0"), (1, None, b"u1"), (0, None, b"u2")]);
        let raw = vec![sdk_record("100", b"plain"), sdk_record("200", &agg), sdk_record("300", b"last")];
        let seq200 = SequenceNumber::parse("200").unwrap();
        let mut filter =
            CheckpointFilter::new(&StartingPosition::AfterCheckpoint(ExtendedSequenceNumber::at(seq200, 1)));
        let out = convert_records(raw, None, &mut filter).unwrap();
        let got: Vec<_> = out.records.iter().map(|r| (r.sequence_number.to_string(), r.sub_sequence_number)).collect();
        assert_eq!(got, vec![("200".to_string(), 2), ("300".to_string(), 0)]);
        assert_eq!(out.payload_bytes, 2 + 4);
        assert_eq!(out.last_sequence_number.unwrap().as_str(), "300");
        assert_eq!(out.records[0].approximate_arrival_timestamp_ms, 1_700_000_000_456);
        assert_eq!(&out.records[0].data[..], b"u2");
        assert_eq!(out.records[0].partition_key, "a");
    }

    #[test]
    fn fully_filtered_response_still_reports_last_sequence() {
        let raw = vec![sdk_record("100", b"x")];
        let seq = SequenceNumber::parse("100").unwrap();
        let mut filter = CheckpointFilter::new(&StartingPosition::AfterCheckpoint(ExtendedSequenceNumber::at(seq, 0)));
        let out = convert_records(raw, None, &mut filter).unwrap();
        assert!(out.records.is_empty());
        assert_eq!(out.last_sequence_number.unwrap().as_str(), "100");
    }

    #[test]
    fn bad_sequence_number_is_an_error() {
        let raw = vec![sdk_record("12a", b"x")];
        assert!(convert_records(raw, None, &mut CheckpointFilter::default()).is_err());
    }

    #[test]
    fn stream_ref_prefers_arn() {
        let by_name = StreamRef::by_name("s");
        assert_eq!((by_name.name_param(), by_name.arn_param()), (Some("s".into()), None));
        let by_arn = StreamRef { name: "s".into(), arn: Some("arn:aws:kinesis:us-east-1:1:stream/s".into()) };
        assert_eq!(by_arn.name_param(), None);
        assert!(by_arn.arn_param().is_some());
    }
}
