//! One shard's subscription task: SubscribeToShard, drain events into the [`Queue`],
//! resubscribe when the subscription ends or fails, stop at the shard end.
//!
//! Positions: the first subscription starts where the reader was opened (a checkpoint uses
//! `AT_SEQUENCE_NUMBER` and the checkpoint filter drops what was already processed, so a
//! checkpoint inside a KPL aggregate resumes with the next user record); every later one starts
//! `AFTER_SEQUENCE_NUMBER` the `ContinuationSequenceNumber` of the last event put in the queue.
//! The queue is lossless, so "last queued" is "last delivered" in order. Nothing is ever
//! resubscribed after the shard end (the task ends), so there is no resubscription from a null
//! position (Java KCL before 3.5).

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_kinesis::primitives::DateTime;
use aws_sdk_kinesis::types::{self, ShardIteratorType, SubscribeToShardEvent, SubscribeToShardEventStream};
use aws_sdk_kinesis::Client;
use tokio_util::sync::CancellationToken;

use super::super::errors::{
    classify_event_stream, classify_subscribe, describe, describe_event_stream, is_subscription_in_use, ErrorClass,
};
use super::super::filter::CheckpointFilter;
use super::super::kinesis::{child_shards, convert_records, IteratorPosition};
use super::super::kpl::HashRange;
use super::super::shards::ShardHashRanges;
use super::super::{RecordBatch, StreamError};
use super::queue::Queue;
use super::registration::{ConsumerCheck, ConsumerRegistration};
use super::FanOutSettings;
use crate::backoff::Backoff;
use crate::sequence::SequenceNumber;

/// How one subscription ended.
#[derive(Debug)]
enum Outcome {
    /// Shutdown or the reader was dropped.
    Cancelled,
    /// The shard end was queued.
    ShardEnd,
    /// The service ended the stream normally (every 5 minutes): resubscribe at once.
    Ended,
    /// The queue filled up: the subscription was dropped; resubscribe when there is room.
    Overflow,
    /// Nothing arrived within the idle timeout: the stream is presumed dead.
    Idle,
    /// A failure, classified.
    Failed { class: ErrorClass, message: String, in_use: bool },
}

/// What an event did.
enum Accepted {
    Continue,
    ShardEnd,
}

/// The state of one shard's subscription task.
pub(super) struct Subscription {
    pub(super) shard_id: String,
    pub(super) consumer_arn: String,
    pub(super) registration: Arc<ConsumerRegistration>,
    pub(super) client: Client,
    pub(super) settings: FanOutSettings,
    /// Where the next subscription starts.
    pub(super) position: IteratorPosition,
    pub(super) filter: CheckpointFilter,
    pub(super) ranges: Option<Arc<ShardHashRanges>>,
    pub(super) range: Option<HashRange>,
    pub(super) queue: Arc<Queue>,
    pub(super) cancel: CancellationToken,
    pub(super) backoff: Backoff,
}

impl Subscription {
    /// Runs until the shard end, a fatal error, or cancellation; closes the queue at the end.
    pub(super) async fn run(mut self) {
        self.subscribe_until_done().await;
        self.queue.close();
    }

    async fn sleep(&self, delay: Duration) -> bool {
        tokio::select! {
            () = self.cancel.cancelled() => false,
            () = tokio::time::sleep(delay) => true,
        }
    }

    async fn subscribe_until_done(&mut self) {
        if let Some(ranges) = self.ranges.take() {
            let lookup = tokio::select! {
                () = self.cancel.cancelled() => return,
                range = ranges.get(&self.shard_id) => range,
            };
            self.range = lookup.as_ref().and_then(HashRange::parse);
        }
        let mut delay: Option<Duration> = None;
        loop {
            if let Some(delay) = delay.take() {
                if !self.sleep(delay).await {
                    return;
                }
            }
            if self.queue.is_full() {
                tokio::select! {
                    () = self.cancel.cancelled() => return,
                    () = self.queue.wait_for_room() => {}
                }
            }
            match self.subscribe_once().await {
                Outcome::Cancelled | Outcome::ShardEnd => return,
                Outcome::Ended => {
                    tracing::debug!(shard_id = %self.shard_id, position = ?self.position, "subscription ended; resubscribing");
                }
                Outcome::Overflow => {
                    tracing::debug!(shard_id = %self.shard_id, queued = self.queue.len(),
                        "record processor is behind; subscription paused until the queue drains");
                }
                Outcome::Idle => {
                    let wait = self.settings.idle_timeout;
                    tracing::warn!(shard_id = %self.shard_id, ?wait, "no event from the subscription; cancelling and resubscribing");
                    delay = Some(self.backoff.next_delay());
                }
                Outcome::Failed { class, message, in_use } => {
                    let attempt = self.backoff.failures() + 1;
                    match class {
                        ErrorClass::NotFound => {
                            let check = tokio::select! {
                                () = self.cancel.cancelled() => return,
                                check = self.registration.check(&self.consumer_arn) => check,
                            };
                            match check {
                                ConsumerCheck::Exists => {
                                    tracing::info!(shard_id = %self.shard_id, error = %message,
                                        "shard not found; treating it as ended without children");
                                    self.queue
                                        .push(RecordBatch { shard_end: Some(Vec::new()), ..RecordBatch::default() });
                                    return;
                                }
                                ConsumerCheck::Missing => {
                                    tracing::warn!(shard_id = %self.shard_id, consumer_arn = %self.consumer_arn,
                                        "the fan-out consumer was deregistered; registering it again");
                                    let arn = tokio::select! {
                                        () = self.cancel.cancelled() => return,
                                        arn = self.registration.consumer_arn() => arn,
                                    };
                                    match arn {
                                        Ok(arn) => self.consumer_arn = arn,
                                        Err(e) => {
                                            tracing::warn!(shard_id = %self.shard_id, error = %e, "registration failed; retrying")
                                        }
                                    }
                                }
                                ConsumerCheck::Unknown => {}
                            }
                            delay = Some(self.backoff.next_delay());
                        }
                        ErrorClass::Fatal => {
                            self.queue.fail(StreamError::Dependency {
                                shard_id: self.shard_id.clone(),
                                operation: "SubscribeToShard",
                                message,
                            });
                            return;
                        }
                        ErrorClass::Throttled
                        | ErrorClass::Transient
                        | ErrorClass::ExpiredIterator
                        | ErrorClass::InvalidIterator => {
                            let wait = self.backoff.next_delay();
                            if in_use {
                                // Expected while a lease moves between workers: the other
                                // owner's subscription is still open (or the consumer is new).
                                tracing::info!(shard_id = %self.shard_id, attempt, ?wait, error = %message,
                                    "another subscription to this shard is active; retrying");
                            } else if class == ErrorClass::Throttled {
                                tracing::info!(shard_id = %self.shard_id, attempt, ?wait, error = %message,
                                    "SubscribeToShard throttled; backing off");
                            } else {
                                tracing::warn!(shard_id = %self.shard_id, attempt, ?wait, error = %message,
                                    "subscription failed; resubscribing");
                            }
                            delay = Some(wait);
                        }
                    }
                }
            }
        }
    }

    fn starting_position(&self) -> Result<types::StartingPosition, String> {
        let builder = types::StartingPosition::builder();
        let builder = match &self.position {
            IteratorPosition::TrimHorizon => builder.r#type(ShardIteratorType::TrimHorizon),
            IteratorPosition::Latest => builder.r#type(ShardIteratorType::Latest),
            IteratorPosition::AtTimestamp(ms) => {
                builder.r#type(ShardIteratorType::AtTimestamp).timestamp(DateTime::from_millis(*ms))
            }
            IteratorPosition::AtSequence(s) => {
                builder.r#type(ShardIteratorType::AtSequenceNumber).sequence_number(s.as_str())
            }
            IteratorPosition::AfterSequence(s) => {
                builder.r#type(ShardIteratorType::AfterSequenceNumber).sequence_number(s.as_str())
            }
        };
        builder.build().map_err(|e| format!("cannot build the starting position: {e}"))
    }

    /// One subscription, drained until it ends.
    async fn subscribe_once(&mut self) -> Outcome {
        let idle = self.settings.idle_timeout;
        tracing::debug!(shard_id = %self.shard_id, position = ?self.position, "SubscribeToShard");
        let start = match self.starting_position() {
            Ok(start) => start,
            Err(message) => return Outcome::Failed { class: ErrorClass::Fatal, message, in_use: false },
        };
        let request = self
            .client
            .subscribe_to_shard()
            .consumer_arn(&self.consumer_arn)
            .shard_id(&self.shard_id)
            .starting_position(start);
        // `send()` returns once the first message (initial-response or first event) arrived.
        let sent = tokio::select! {
            () = self.cancel.cancelled() => return Outcome::Cancelled,
            sent = tokio::time::timeout(idle, request.send()) => sent,
        };
        let mut events = match sent {
            Err(_) => return Outcome::Idle,
            Ok(Err(error)) => {
                return Outcome::Failed {
                    class: classify_subscribe(&error),
                    message: describe(&error),
                    in_use: is_subscription_in_use(Some(&error), None),
                }
            }
            Ok(Ok(output)) => output.event_stream,
        };
        loop {
            let received = tokio::select! {
                () = self.cancel.cancelled() => return Outcome::Cancelled,
                received = tokio::time::timeout(idle, events.recv()) => received,
            };
            match received {
                Err(_) => return Outcome::Idle,
                Ok(Ok(None)) => return Outcome::Ended,
                Ok(Err(error)) => {
                    return Outcome::Failed {
                        class: classify_event_stream(&error),
                        message: describe_event_stream(&error),
                        in_use: is_subscription_in_use(None, Some(&error)),
                    }
                }
                Ok(Ok(Some(SubscribeToShardEventStream::SubscribeToShardEvent(event)))) => match self.accept(event) {
                    Ok(Accepted::ShardEnd) => return Outcome::ShardEnd,
                    Ok(Accepted::Continue) => {
                        self.backoff.reset();
                        if self.queue.is_full() {
                            return Outcome::Overflow;
                        }
                    }
                    Err(message) => {
                        return Outcome::Failed { class: ErrorClass::Transient, message, in_use: false };
                    }
                },
                Ok(Ok(Some(other))) => {
                    tracing::debug!(shard_id = %self.shard_id, event = ?other, "ignoring an unknown event type");
                }
            }
        }
    }

    /// Validates and queues one event (as the Java KCL: exactly one of a continuation
    /// sequence number and child shards; every child names its parents).
    fn accept(&mut self, event: SubscribeToShardEvent) -> Result<Accepted, String> {
        let SubscribeToShardEvent {
            records,
            continuation_sequence_number,
            millis_behind_latest,
            child_shards: children,
            ..
        } = event;
        let children = children.unwrap_or_default();
        let at_end = continuation_sequence_number.is_empty();
        if at_end == children.is_empty() {
            return Err(format!(
                "invalid SubscribeToShard event: continuation sequence number {}, {} child shards",
                if at_end { "absent" } else { "present" },
                children.len()
            ));
        }
        if let Some(orphan) = children.iter().find(|c| c.parent_shards().is_empty()) {
            return Err(format!("invalid SubscribeToShard event: child shard {} lists no parents", orphan.shard_id()));
        }
        let next = if at_end {
            None
        } else {
            Some(SequenceNumber::parse(&continuation_sequence_number).ok_or_else(|| {
                format!("invalid SubscribeToShard event: continuation sequence number {continuation_sequence_number:?}")
            })?)
        };
        let converted = convert_records(records, self.range, &mut self.filter)?;
        let batch = RecordBatch {
            records: converted.records,
            millis_behind_latest: Some(millis_behind_latest),
            shard_end: at_end.then(|| child_shards(&children)),
            payload_bytes: converted.payload_bytes,
        };
        self.queue.push(batch);
        match next {
            Some(seq) => {
                self.position = IteratorPosition::AfterSequence(seq);
                Ok(Accepted::Continue)
            }
            None => {
                tracing::info!(shard_id = %self.shard_id, children = children.len(), "shard end reached over the subscription");
                Ok(Accepted::ShardEnd)
            }
        }
    }
}
