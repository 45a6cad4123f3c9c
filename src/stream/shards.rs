//! Listing the shards of a stream (ListShards with paging and ShardFilter), and a cache of
//! shard hash-key ranges.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_kinesis::operation::list_shards::builders::ListShardsFluentBuilder;
use aws_sdk_kinesis::primitives::DateTime;
use aws_sdk_kinesis::types::{self, ShardFilterType};

use super::errors::{classify, describe, ErrorClass, Operation};
use super::kinesis::{hash_key_range, without_sdk_retries, StreamRef};
use super::StreamError;
use crate::model::HashKeyRange;
use crate::sequence::SequenceNumber;

/// A shard as ListShards describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    /// The shard id.
    pub shard_id: String,
    /// `ParentShardId`, if any.
    pub parent_shard_id: Option<String>,
    /// `AdjacentParentShardId` (merges), if any.
    pub adjacent_parent_shard_id: Option<String>,
    /// Its hash-key range.
    pub hash_key_range: HashKeyRange,
    /// `SequenceNumberRange.StartingSequenceNumber`.
    pub starting_sequence_number: SequenceNumber,
    /// `SequenceNumberRange.EndingSequenceNumber`; `Some` when the shard is closed.
    pub ending_sequence_number: Option<SequenceNumber>,
}

impl Shard {
    /// True once the shard is closed (it has an ending sequence number).
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.ending_sequence_number.is_some()
    }

    /// The parent ids (parent and adjacent parent) that are set.
    pub fn parents(&self) -> impl Iterator<Item = &str> {
        self.parent_shard_id.iter().chain(self.adjacent_parent_shard_id.iter()).map(String::as_str)
    }
}

/// The ShardFilter passed to ListShards on the first page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardFilter {
    /// No filter: every shard in the retention window.
    All,
    /// `AT_TRIM_HORIZON`.
    AtTrimHorizon,
    /// `AT_LATEST`.
    AtLatest,
    /// `AT_TIMESTAMP` at epoch milliseconds.
    AtTimestamp(i64),
}

/// Lists the shards of the configured stream.
#[async_trait]
pub trait ShardLister: Send + Sync + 'static {
    /// Every shard matching `filter`, following NextToken pages.
    async fn list_shards(&self, filter: ShardFilter) -> Result<Vec<Shard>, StreamError>;
}

// ---------------------------------------------------------------------------------------
// ListShards against Kinesis.

/// Defaults for [`ListShardsSettings`] (the Java KCL's).
pub mod defaults {
    use std::time::Duration;

    /// `listShardsBackoffTimeInMillis`.
    pub const LIST_SHARDS_BACKOFF: Duration = Duration::from_millis(1500);
    /// `maxListShardsRetryAttempts`.
    pub const MAX_LIST_SHARDS_RETRY_ATTEMPTS: u32 = 50;
    /// ListShards `MaxResults` per page (the API maximum).
    pub const PAGE_SIZE: i32 = 1000;
    /// Time limit for one ListShards call.
    pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
}

/// How [`KinesisShardLister`] pages and retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListShardsSettings {
    /// Wait between attempts (`listShardsBackoffTimeInMillis`, 1500 ms). Fixed, like the KCL.
    pub backoff: Duration,
    /// Attempts before giving up (`maxListShardsRetryAttempts`, 50). Every failed call counts,
    /// across pages of one listing.
    pub max_attempts: u32,
    /// `MaxResults` per page (1000).
    pub page_size: i32,
    /// Time limit for one call; a call that takes longer counts as a transient failure.
    pub request_timeout: Duration,
}

impl Default for ListShardsSettings {
    fn default() -> Self {
        Self {
            backoff: defaults::LIST_SHARDS_BACKOFF,
            max_attempts: defaults::MAX_LIST_SHARDS_RETRY_ATTEMPTS,
            page_size: defaults::PAGE_SIZE,
            request_timeout: defaults::REQUEST_TIMEOUT,
        }
    }
}

impl ListShardsSettings {
    /// The settings of a daemon configuration.
    #[must_use]
    pub fn from_config(config: &crate::config::Config) -> Self {
        Self {
            backoff: config.list_shards_backoff,
            max_attempts: config.max_list_shards_retry_attempts.max(1),
            ..Self::default()
        }
    }
}

/// Lists shards with `ListShards`: stream (name or ARN) and ShardFilter on the first page,
/// only `NextToken` on later pages (the API rejects both together). Throttling
/// (`LimitExceededException`), transient errors and `ResourceInUseException` (stream being
/// created or updated) are retried after a fixed backoff up to the attempt limit; an expired
/// `NextToken` restarts the listing from the first page. A missing stream is
/// [`StreamError::NotFound`].
///
/// Note: kinesis-local drops the ShardFilter after the first page, so a filtered listing
/// that spans several pages returns more shards there than real Kinesis would.
#[derive(Debug, Clone)]
pub struct KinesisShardLister {
    client: aws_sdk_kinesis::Client,
    stream: StreamRef,
    settings: ListShardsSettings,
}

impl KinesisShardLister {
    /// A lister for `stream`. `client`'s own retries are switched off (this type retries).
    #[must_use]
    pub fn new(client: &aws_sdk_kinesis::Client, stream: StreamRef, settings: ListShardsSettings) -> Self {
        Self { client: without_sdk_retries(client), stream, settings }
    }

    fn request(&self, filter: &ShardFilter, next_token: Option<&str>) -> ListShardsFluentBuilder {
        let request = self.client.list_shards().max_results(self.settings.page_size);
        match next_token {
            Some(token) => request.next_token(token),
            None => request
                .set_stream_name(self.stream.name_param())
                .set_stream_arn(self.stream.arn_param())
                .set_shard_filter(sdk_filter(filter)),
        }
    }

    fn dependency(&self, message: String) -> StreamError {
        StreamError::Dependency { shard_id: String::new(), operation: Operation::ListShards.name(), message }
    }
}

fn sdk_filter(filter: &ShardFilter) -> Option<types::ShardFilter> {
    let (kind, timestamp) = match filter {
        ShardFilter::All => return None,
        ShardFilter::AtTrimHorizon => (ShardFilterType::AtTrimHorizon, None),
        ShardFilter::AtLatest => (ShardFilterType::AtLatest, None),
        ShardFilter::AtTimestamp(ms) => (ShardFilterType::AtTimestamp, Some(DateTime::from_millis(*ms))),
    };
    types::ShardFilter::builder().r#type(kind).set_timestamp(timestamp).build().ok()
}

/// Maps a ListShards shard.
///
/// # Errors
/// A message when the shard lacks its hash-key range or sequence-number range.
pub fn shard_from_sdk(shard: &types::Shard) -> Result<Shard, String> {
    let id = shard.shard_id();
    let range = shard.hash_key_range().ok_or_else(|| format!("shard {id} has no HashKeyRange"))?;
    let seq = shard.sequence_number_range().ok_or_else(|| format!("shard {id} has no SequenceNumberRange"))?;
    let starting = SequenceNumber::parse(seq.starting_sequence_number())
        .ok_or_else(|| format!("shard {id}: invalid StartingSequenceNumber {:?}", seq.starting_sequence_number()))?;
    let ending = match seq.ending_sequence_number() {
        Some(text) => Some(
            SequenceNumber::parse(text).ok_or_else(|| format!("shard {id}: invalid EndingSequenceNumber {text:?}"))?,
        ),
        None => None,
    };
    Ok(Shard {
        shard_id: id.to_owned(),
        parent_shard_id: shard.parent_shard_id().map(str::to_owned),
        adjacent_parent_shard_id: shard.adjacent_parent_shard_id().map(str::to_owned),
        hash_key_range: hash_key_range(range),
        starting_sequence_number: starting,
        ending_sequence_number: ending,
    })
}

#[async_trait]
impl ShardLister for KinesisShardLister {
    async fn list_shards(&self, filter: ShardFilter) -> Result<Vec<Shard>, StreamError> {
        let mut failures = 0_u32;
        let mut shards = Vec::new();
        let mut next_token: Option<String> = None;
        loop {
            let call = self.request(&filter, next_token.as_deref()).send();
            let (class, message) = match tokio::time::timeout(self.settings.request_timeout, call).await {
                Ok(Ok(page)) => {
                    for shard in page.shards() {
                        shards.push(shard_from_sdk(shard).map_err(|m| self.dependency(m))?);
                    }
                    match page.next_token() {
                        Some(token) => next_token = Some(token.to_owned()),
                        None => return Ok(shards),
                    }
                    continue;
                }
                Ok(Err(error)) => (classify(Operation::ListShards, &error), describe(&error)),
                Err(_) => (ErrorClass::Transient, format!("timed out after {:?}", self.settings.request_timeout)),
            };
            match class {
                ErrorClass::NotFound => {
                    return Err(StreamError::NotFound { shard_id: String::new(), message });
                }
                ErrorClass::Fatal | ErrorClass::InvalidIterator => return Err(self.dependency(message)),
                ErrorClass::Throttled | ErrorClass::Transient | ErrorClass::ExpiredIterator => {}
            }
            failures += 1;
            if failures >= self.settings.max_attempts {
                return Err(self.dependency(format!("giving up after {failures} attempts: {message}")));
            }
            if class == ErrorClass::ExpiredIterator {
                tracing::info!(stream = %self.stream.name, "ListShards NextToken expired; listing again from the start");
                shards.clear();
                next_token = None;
            } else {
                tracing::warn!(
                    stream = %self.stream.name, ?class, attempt = failures, error = %message,
                    "ListShards failed; retrying in {:?}", self.settings.backoff
                );
            }
            tokio::time::sleep(self.settings.backoff).await;
        }
    }
}

/// Hash-key ranges of the stream's shards, looked up through a [`ShardLister`] and cached;
/// a shard not in the cache triggers one full listing. Used for the KCL's KPL hash-range
/// check (see [`super::kpl`]).
pub struct ShardHashRanges {
    lister: Arc<dyn ShardLister>,
    /// Known ranges; locked only to read or replace, never across a call.
    cache: std::sync::Mutex<HashMap<String, HashKeyRange>>,
    /// Held while a listing runs, so concurrent misses wait for one listing instead of each
    /// starting their own; lookups of cached shards never wait for it.
    refresh: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for ShardHashRanges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardHashRanges").finish_non_exhaustive()
    }
}

impl ShardHashRanges {
    /// An empty cache over `lister`.
    #[must_use]
    pub fn new(lister: Arc<dyn ShardLister>) -> Self {
        Self { lister, cache: std::sync::Mutex::default(), refresh: tokio::sync::Mutex::new(()) }
    }

    fn cached(&self, shard_id: &str) -> Option<HashKeyRange> {
        self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(shard_id).cloned()
    }

    /// The range of `shard_id`; `None` if the shard is unknown even after a fresh listing, or
    /// the listing failed (logged; the caller then skips the range check, as the KCL does
    /// when it does not know the shard).
    pub async fn get(&self, shard_id: &str) -> Option<HashKeyRange> {
        if let Some(range) = self.cached(shard_id) {
            return Some(range);
        }
        let _refresh = self.refresh.lock().await;
        // Another lookup may have listed the shards while this one waited.
        if let Some(range) = self.cached(shard_id) {
            return Some(range);
        }
        match self.lister.list_shards(ShardFilter::All).await {
            Ok(shards) => {
                let fresh: HashMap<String, HashKeyRange> =
                    shards.into_iter().map(|s| (s.shard_id, s.hash_key_range)).collect();
                let range = fresh.get(shard_id).cloned();
                *self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = fresh;
                range
            }
            Err(error) => {
                tracing::warn!(shard_id, %error, "cannot look up the shard's hash-key range; KPL range check skipped");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::stream::fake_kinesis::FakeKinesis;

    fn shard(id: &str, parent: Option<&str>, end: Option<&str>) -> Value {
        let mut range = json!({"StartingSequenceNumber": "100"});
        if let Some(end) = end {
            range["EndingSequenceNumber"] = json!(end);
        }
        let mut s = json!({"ShardId": id, "HashKeyRange": {"StartingHashKey": "0", "EndingHashKey": "99"},
                           "SequenceNumberRange": range});
        if let Some(parent) = parent {
            s["ParentShardId"] = json!(parent);
        }
        s
    }

    fn page(shards: Vec<Value>, next: Option<&str>) -> Value {
        match next {
            Some(token) => json!({"Shards": shards, "NextToken": token}),
            None => json!({"Shards": shards}),
        }
    }

    fn lister(fake: &FakeKinesis, max_attempts: u32) -> KinesisShardLister {
        let settings = ListShardsSettings {
            backoff: Duration::from_millis(1500),
            max_attempts,
            page_size: 2,
            request_timeout: Duration::from_secs(5),
        };
        KinesisShardLister::new(&fake.client(), StreamRef::by_name("s"), settings)
    }

    fn ids(shards: &[Shard]) -> Vec<&str> {
        shards.iter().map(|s| s.shard_id.as_str()).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn pages_send_the_filter_only_on_the_first_request() {
        let fake = FakeKinesis::default();
        fake.push(
            "ListShards",
            200,
            page(vec![shard("a", None, Some("150")), shard("b", Some("a"), None)], Some("t1")),
        )
        .push("ListShards", 200, page(vec![shard("c", Some("a"), None)], None));
        let shards = lister(&fake, 50).list_shards(ShardFilter::AtLatest).await.unwrap();
        assert_eq!(ids(&shards), ["a", "b", "c"]);
        assert!(shards[0].is_closed());
        assert_eq!(shards[0].ending_sequence_number.as_ref().unwrap().as_str(), "150");
        assert_eq!(shards[1].parents().collect::<Vec<_>>(), ["a"]);
        assert_eq!(shards[2].hash_key_range.ending, "99");

        let calls = fake.calls("ListShards");
        assert_eq!(calls[0].body["StreamName"], "s");
        assert_eq!(calls[0].body["ShardFilter"]["Type"], "AT_LATEST");
        assert_eq!(calls[0].body["MaxResults"], 2);
        assert!(calls[0].body.get("NextToken").is_none());
        assert_eq!(calls[1].body["NextToken"], "t1");
        assert_eq!(calls[1].body["MaxResults"], 2);
        assert!(calls[1].body.get("StreamName").is_none() && calls[1].body.get("ShardFilter").is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn filters_map_to_the_api() {
        let cases = [
            (ShardFilter::AtTrimHorizon, json!({"Type": "AT_TRIM_HORIZON"})),
            (ShardFilter::AtTimestamp(1_700_000_000_000), json!({"Type": "AT_TIMESTAMP", "Timestamp": 1_700_000_000})),
        ];
        for (filter, expected) in cases {
            let fake = FakeKinesis::default();
            fake.push("ListShards", 200, page(vec![], None));
            lister(&fake, 1).list_shards(filter).await.unwrap();
            assert_eq!(fake.calls("ListShards")[0].body["ShardFilter"], expected);
        }
        let fake = FakeKinesis::default();
        fake.push("ListShards", 200, page(vec![], None));
        let arn = "arn:aws:kinesis:us-east-1:000000000000:stream/s";
        let by_arn = StreamRef { name: "s".into(), arn: Some(arn.into()) };
        KinesisShardLister::new(&fake.client(), by_arn, ListShardsSettings::default())
            .list_shards(ShardFilter::All)
            .await
            .unwrap();
        let body = &fake.calls("ListShards")[0].body;
        assert_eq!(body["StreamARN"], arn);
        assert!(body.get("StreamName").is_none() && body.get("ShardFilter").is_none());
        assert_eq!(body["MaxResults"], 1000);
    }

    #[tokio::test(start_paused = true)]
    async fn throttling_and_resource_in_use_are_retried_after_the_backoff() {
        let fake = FakeKinesis::default();
        fake.push("ListShards", 200, page(vec![shard("a", None, None)], Some("t1")))
            .error("ListShards", 400, "LimitExceededException")
            .error("ListShards", 400, "ResourceInUseException")
            .push("ListShards", 200, page(vec![shard("b", None, None)], None));
        let started = tokio::time::Instant::now();
        let shards = lister(&fake, 50).list_shards(ShardFilter::All).await.unwrap();
        assert_eq!(ids(&shards), ["a", "b"]);
        assert!(started.elapsed() >= Duration::from_millis(3000));
        let calls = fake.calls("ListShards");
        assert_eq!(calls.len(), 4);
        // The retried page is the same page: NextToken again, not the first page.
        assert!(calls[1..].iter().all(|c| c.body["NextToken"] == "t1"));
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_max_attempts() {
        let fake = FakeKinesis::default();
        fake.fallback("ListShards", 400, json!({"__type": "LimitExceededException", "message": "slow down"}));
        let error = lister(&fake, 3).list_shards(ShardFilter::All).await.unwrap_err();
        match error {
            StreamError::Dependency { operation, message, .. } => {
                assert_eq!(operation, "ListShards");
                assert!(message.contains("3 attempts") && message.contains("LimitExceededException"), "{message}");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(fake.calls("ListShards").len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn missing_stream_and_fatal_errors_are_not_retried() {
        let fake = FakeKinesis::default();
        fake.error("ListShards", 400, "ResourceNotFoundException");
        assert!(matches!(lister(&fake, 50).list_shards(ShardFilter::All).await, Err(StreamError::NotFound { .. })));
        let fake = FakeKinesis::default();
        fake.error("ListShards", 400, "AccessDeniedException");
        assert!(matches!(lister(&fake, 50).list_shards(ShardFilter::All).await, Err(StreamError::Dependency { .. })));
        assert_eq!(fake.calls("ListShards").len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn expired_next_token_restarts_the_listing() {
        let fake = FakeKinesis::default();
        fake.push("ListShards", 200, page(vec![shard("a", None, None)], Some("t1")))
            .error("ListShards", 400, "ExpiredNextTokenException")
            .push("ListShards", 200, page(vec![shard("a", None, None)], Some("t2")))
            .push("ListShards", 200, page(vec![shard("b", None, None)], None));
        let shards = lister(&fake, 50).list_shards(ShardFilter::AtLatest).await.unwrap();
        assert_eq!(ids(&shards), ["a", "b"]);
        let calls = fake.calls("ListShards");
        assert_eq!(calls[2].body["StreamName"], "s");
        assert_eq!(calls[2].body["ShardFilter"]["Type"], "AT_LATEST");
    }

    #[tokio::test(start_paused = true)]
    async fn hash_ranges_are_cached_and_refreshed_on_a_miss() {
        let fake = FakeKinesis::default();
        fake.push("ListShards", 200, page(vec![shard("a", None, None)], None)).push(
            "ListShards",
            200,
            page(vec![shard("a", None, None), shard("b", None, None)], None),
        );
        let ranges = ShardHashRanges::new(Arc::new(lister(&fake, 1)));
        assert_eq!(ranges.get("a").await.unwrap().ending, "99");
        assert!(ranges.get("a").await.is_some());
        assert_eq!(fake.calls("ListShards").len(), 1);
        assert!(ranges.get("b").await.is_some());
        assert_eq!(fake.calls("ListShards").len(), 2);
        // A failed lookup is not fatal: no range, no check.
        assert!(ranges.get("c").await.is_none());
    }
}
