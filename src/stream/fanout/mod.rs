//! Enhanced fan-out retrieval: one SubscribeToShard subscription per held shard, behind the
//! same [`ShardReader`] seam as polling.
//!
//! * **Consumer:** registered (or found) once per stream per worker, lazily at the first
//!   reader ([`registration`]); never deregistered.
//! * **Subscriptions:** [`FanOutReaderFactory::open`] starts one task per shard
//!   ([`subscription`]). It drains the event stream continuously into a small bounded queue
//!   ([`queue`], [`FanOutSettings::queue_capacity`] batches); the reader pops from it. When the
//!   queue is full (a slow record processor), the subscription is cancelled rather than left
//!   unread — an unread HTTP/2 stream would hold the shared connection's flow-control window
//!   and stall every other shard — and resumed from the last queued event once half the queue
//!   has drained.
//! * **Liveness:** a subscription that delivers nothing (not even the empty events the service
//!   sends on idle shards) for [`FanOutSettings::idle_timeout`] (60 s, as Java) is cancelled and
//!   resubscribed: the SDK does not detect a dead HTTP/2 stream.
//! * **Errors** are classified in [`super::errors`] by variant: the 5-minute end of a
//!   subscription resubscribes at once; `ResourceInUseException` (a lease moved between
//!   workers and the old owner's subscription is still open), `LimitExceededException`,
//!   connection failures, `GOAWAY` and dispatch failures resubscribe after a backoff with
//!   jitter; `ResourceNotFoundException` ends the shard without children — unless the consumer
//!   itself is gone (deregistered), which registers it again and resubscribes (Java would mark
//!   every held shard `SHARD_END`); anything else is returned from [`ShardReader::next_batch`]
//!   (the shard consumer restarts).
//! * **Shard end:** the event with ChildShards and no continuation sequence number is the last
//!   batch, with `shard_end: Some(children)`; nothing is resubscribed after it.
//! * **Connections:** subscriptions are spread over several SDK clients, each with its own
//!   HTTP connection pool ([`FanOutSettings::subscriptions_per_connection`] per client), so
//!   neither one HTTP/2 connection's stream limit nor one `GOAWAY` affects every shard.
//!   SubscribeToShard over `https://` negotiates HTTP/2 by ALPN, as real Kinesis requires;
//!   a plain `http://` endpoint (emulators) is served over HTTP/1.1.

pub mod queue;
pub mod registration;
mod subscription;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_kinesis::Client;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use self::queue::{Popped, Queue};
use self::registration::{ConsumerRegistration, RegistrationError, RegistrationSettings};
use self::subscription::Subscription;
use super::filter::CheckpointFilter;
use super::kinesis::{without_sdk_retries, IteratorPosition, StreamRef};
use super::shards::{ShardHashRanges, ShardLister};
use super::{RecordBatch, ShardReader, ShardReaderFactory, StartingPosition, StreamError};
use crate::backoff::{Backoff, BackoffPolicy};

/// Default [`FanOutSettings::queue_capacity`] (Java: a delivery queue of 10 events).
pub const DEFAULT_QUEUE_CAPACITY: usize = 10;
/// Default [`FanOutSettings::idle_timeout`] (Java: `MAX_TIME_BETWEEN_REQUEST_RESPONSE`).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default [`FanOutSettings::subscriptions_per_connection`].
pub const DEFAULT_SUBSCRIPTIONS_PER_CONNECTION: usize = 16;

/// Settings of the fan-out readers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FanOutSettings {
    /// Consumer registration (`fanoutConfig.*`).
    pub registration: RegistrationSettings,
    /// Undelivered batches held per shard before the subscription is paused.
    pub queue_capacity: usize,
    /// A subscription silent this long is cancelled and resubscribed.
    pub idle_timeout: Duration,
    /// Subscriptions sharing one SDK client (one HTTP/2 connection).
    pub subscriptions_per_connection: usize,
    /// First resubscribe delay after a failure (doubles, with jitter, up to `backoff_max`).
    /// SubscribeToShard allows one call per second per consumer and shard.
    pub backoff_base: Duration,
    /// Longest resubscribe delay.
    pub backoff_max: Duration,
}

impl FanOutSettings {
    /// The settings of a daemon configuration.
    #[must_use]
    pub fn from_config(config: &crate::config::Config) -> Self {
        Self::new(RegistrationSettings::from_config(config))
    }

    /// Defaults around `registration`.
    #[must_use]
    pub fn new(registration: RegistrationSettings) -> Self {
        Self {
            registration,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            subscriptions_per_connection: DEFAULT_SUBSCRIPTIONS_PER_CONNECTION,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(10),
        }
    }
}

/// SDK clients for subscriptions, each with its own connection pool, handed out so that no
/// client carries more than `per_client` live subscriptions.
#[derive(Debug)]
struct ClientPool {
    config: aws_sdk_kinesis::Config,
    per_client: usize,
    slots: Mutex<Vec<(Client, usize)>>,
}

/// A client lent for one subscription; returned on drop.
#[derive(Debug)]
struct PooledClient {
    pool: Arc<ClientPool>,
    index: usize,
    client: Client,
}

impl ClientPool {
    fn acquire(self: &Arc<Self>) -> PooledClient {
        let mut slots = self.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let index = match slots.iter().position(|(_, active)| *active < self.per_client) {
            Some(index) => index,
            None => {
                // A new client gets a new HTTP client, hence its own connection(s).
                slots.push((Client::from_conf(self.config.clone()), 0));
                slots.len() - 1
            }
        };
        slots[index].1 += 1;
        PooledClient { pool: self.clone(), index, client: slots[index].0.clone() }
    }

    fn clients(&self) -> usize {
        self.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len()
    }
}

impl Drop for PooledClient {
    fn drop(&mut self) {
        let mut slots = self.pool.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(slot) = slots.get_mut(self.index) {
            slot.1 = slot.1.saturating_sub(1);
        }
    }
}

/// Opens [`FanOutReader`]s on shards of one stream.
#[derive(Debug, Clone)]
pub struct FanOutReaderFactory {
    registration: Arc<ConsumerRegistration>,
    pool: Arc<ClientPool>,
    settings: FanOutSettings,
    cancel: CancellationToken,
    ranges: Option<Arc<ShardHashRanges>>,
}

impl FanOutReaderFactory {
    /// A factory reading `stream` with clients configured like `client` (SDK retries off).
    /// Cancelling `cancel` stops every reader it opened.
    #[must_use]
    pub fn new(client: &Client, stream: StreamRef, settings: FanOutSettings, cancel: CancellationToken) -> Self {
        let registration = Arc::new(ConsumerRegistration::new(client, stream, settings.registration.clone()));
        let config = without_sdk_retries(client).config().clone();
        let pool = Arc::new(ClientPool {
            config,
            per_client: settings.subscriptions_per_connection.max(1),
            slots: Mutex::new(Vec::new()),
        });
        Self { registration, pool, settings, cancel, ranges: None }
    }

    /// Enables the KCL's KPL hash-range check (as [`super::polling::PollingReaderFactory`]).
    #[must_use]
    pub fn with_kpl_hash_range_check(mut self, lister: Arc<dyn ShardLister>) -> Self {
        self.ranges = Some(Arc::new(ShardHashRanges::new(lister)));
        self
    }

    /// The consumer ARN (registering the consumer if needed). Readers call this themselves;
    /// calling it at start-up surfaces registration problems early.
    ///
    /// # Errors
    /// See [`ConsumerRegistration::consumer_arn`].
    pub async fn consumer_arn(&self) -> Result<String, RegistrationError> {
        self.registration.consumer_arn().await
    }

    /// How many SDK clients (connection pools) subscriptions have used so far.
    #[must_use]
    pub fn connections(&self) -> usize {
        self.pool.clients()
    }
}

fn registration_failed(shard_id: &str, error: &RegistrationError) -> StreamError {
    let operation = match error {
        RegistrationError::Call { operation, .. } => operation,
        RegistrationError::NotActive { .. } => "DescribeStreamConsumer",
    };
    StreamError::Dependency { shard_id: shard_id.to_owned(), operation, message: error.to_string() }
}

#[async_trait]
impl ShardReaderFactory for FanOutReaderFactory {
    async fn open(&self, shard_id: &str, start: StartingPosition) -> Result<Box<dyn ShardReader>, StreamError> {
        let position = IteratorPosition::for_start(&start).map_err(|message| StreamError::Dependency {
            shard_id: shard_id.to_owned(),
            operation: "SubscribeToShard",
            message,
        })?;
        let consumer_arn = tokio::select! {
            () = self.cancel.cancelled() => return Err(StreamError::Cancelled { shard_id: shard_id.to_owned() }),
            arn = self.registration.consumer_arn() => arn.map_err(|e| registration_failed(shard_id, &e))?,
        };
        let cancel = self.cancel.child_token();
        let queue = Arc::new(Queue::new(self.settings.queue_capacity));
        let pooled = self.pool.acquire();
        let subscription = Subscription {
            shard_id: shard_id.to_owned(),
            consumer_arn,
            registration: self.registration.clone(),
            client: pooled.client.clone(),
            settings: self.settings.clone(),
            position,
            filter: CheckpointFilter::new(&start),
            ranges: self.ranges.clone(),
            range: None,
            queue: queue.clone(),
            cancel: cancel.clone(),
            backoff: Backoff::new(BackoffPolicy::calls(self.settings.backoff_base, self.settings.backoff_max)),
        };
        tracing::debug!(shard_id, ?start, "opening fan-out reader");
        let span = tracing::info_span!(parent: tracing::Span::current(), "subscription", shard_id);
        let task = tokio::spawn(
            async move {
                subscription.run().await;
                drop(pooled);
            }
            .instrument(span),
        );
        Ok(Box::new(FanOutReader { shard_id: shard_id.to_owned(), queue, task, cancel, finished: false }))
    }
}

/// Reads one shard over enhanced fan-out; see the module docs. Dropping it stops its task.
#[derive(Debug)]
pub struct FanOutReader {
    shard_id: String,
    queue: Arc<Queue>,
    task: JoinHandle<()>,
    cancel: CancellationToken,
    finished: bool,
}

impl Drop for FanOutReader {
    fn drop(&mut self) {
        self.cancel.cancel();
        self.task.abort();
    }
}

#[async_trait]
impl ShardReader for FanOutReader {
    async fn next_batch(&mut self) -> Result<RecordBatch, StreamError> {
        if self.finished {
            return Err(StreamError::Dependency {
                shard_id: self.shard_id.clone(),
                operation: "SubscribeToShard",
                message: "the shard end was already delivered; the reader is finished".to_owned(),
            });
        }
        loop {
            // Register interest before looking, so a push in between is not missed.
            let notified = self.queue.notified();
            match self.queue.pop() {
                Popped::Batch(batch) => {
                    self.finished = batch.shard_end.is_some();
                    return Ok(batch);
                }
                Popped::Error(error) => return Err(error),
                Popped::Closed if self.cancel.is_cancelled() => {
                    return Err(StreamError::Cancelled { shard_id: self.shard_id.clone() })
                }
                Popped::Closed => {
                    return Err(StreamError::Dependency {
                        shard_id: self.shard_id.clone(),
                        operation: "SubscribeToShard",
                        message: "the subscription task ended unexpectedly".to_owned(),
                    })
                }
                Popped::Empty => {}
            }
            tokio::select! {
                biased;
                () = self.cancel.cancelled() => return Err(StreamError::Cancelled { shard_id: self.shard_id.clone() }),
                () = notified => {}
            }
        }
    }
}

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;
