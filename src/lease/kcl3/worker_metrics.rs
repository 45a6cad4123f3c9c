//! The worker-metrics table `<applicationName>-WorkerMetricStats` (partition key `wid`).
//!
//! Followers publish their item every 30 s with an unconditional attribute-level UpdateItem
//! (as Java's reporter); the leader reads them all to know the active workers and deletes
//! items stale for a day with a delete conditioned on the `lut` it saw.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use tracing::warn;

use super::{attr, malformed, tables, WorkerMetricStats};
use crate::lease::dynamodb::{conditional, unconditional};
use crate::lease::LeaseError;

/// All worker-metrics items of a scan, and the ones that could not be read.
#[derive(Debug, Default)]
pub struct WorkerMetricsScan {
    /// Readable items.
    pub workers: Vec<WorkerMetricStats>,
    /// Unreadable items (reported, never fatal).
    pub malformed: Vec<LeaseError>,
}

/// The worker-metrics table.
#[async_trait]
pub trait WorkerMetricsStore: Send + Sync + 'static {
    /// The table name.
    fn table_name(&self) -> &str;

    /// Creates the table (key `wid` S, on-demand) if missing and waits until ACTIVE.
    async fn ensure_table(&self) -> Result<bool, LeaseError>;

    /// Unconditional update of `lut`, `sts`, `opr` of the worker's item.
    async fn publish(&self, stats: &WorkerMetricStats) -> Result<(), LeaseError>;

    /// Every item (empty if the table does not exist).
    async fn list(&self) -> Result<WorkerMetricsScan, LeaseError>;

    /// Deletes the worker's item if its `lut` is still `last_update_s`.
    async fn delete_if_unchanged(&self, worker_id: &str, last_update_s: u64) -> Result<bool, LeaseError>;
}

/// [`WorkerMetricsStore`] in DynamoDB.
#[derive(Debug, Clone)]
pub struct DynamoWorkerMetricsStore {
    client: Client,
    table: String,
    table_active_timeout: Duration,
}

impl DynamoWorkerMetricsStore {
    /// The store for `table`.
    #[must_use]
    pub fn new(client: Client, table: String) -> Self {
        Self { client, table, table_active_timeout: crate::lease::dynamodb::DEFAULT_TABLE_ACTIVE_TIMEOUT }
    }
}

fn metric_map(metrics: &BTreeMap<String, Vec<f64>>) -> AttributeValue {
    AttributeValue::M(
        metrics
            .iter()
            .map(|(name, values)| {
                (name.clone(), AttributeValue::L(values.iter().map(|v| AttributeValue::N(format_number(*v))).collect()))
            })
            .collect(),
    )
}

/// A DynamoDB number without a needless fraction (`12` rather than `12.0`).
#[must_use]
pub fn format_number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else {
        format!("{value}")
    }
}

/// The attributes written by [`WorkerMetricsStore::publish`] (without the key).
#[must_use]
pub fn stats_to_attributes(stats: &WorkerMetricStats) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (attr::LAST_UPDATE.to_owned(), AttributeValue::N(stats.last_update_s.to_string())),
        (attr::STATS.to_owned(), metric_map(&stats.stats)),
        (attr::OPERATING_RANGE.to_owned(), metric_map(&stats.operating_range)),
    ])
}

fn read_metric_map(
    table: &str,
    key: &str,
    name: &str,
    value: Option<&AttributeValue>,
) -> Result<BTreeMap<String, Vec<f64>>, LeaseError> {
    let map = match value {
        None | Some(AttributeValue::Null(_)) => return Ok(BTreeMap::new()),
        Some(AttributeValue::M(map)) => map,
        Some(other) => return Err(malformed(table, key, format!("{name} must be M, found {other:?}"))),
    };
    map.iter()
        .map(|(metric, values)| match values {
            AttributeValue::L(list) => list
                .iter()
                .map(|v| match v {
                    AttributeValue::N(text) => text
                        .trim()
                        .parse::<f64>()
                        .map_err(|_| malformed(table, key, format!("{name}.{metric}: {text:?} is not a number"))),
                    other => Err(malformed(table, key, format!("{name}.{metric} values must be N, found {other:?}"))),
                })
                .collect::<Result<Vec<f64>, _>>()
                .map(|values| (metric.clone(), values)),
            other => Err(malformed(table, key, format!("{name}.{metric} must be L, found {other:?}"))),
        })
        .collect()
}

/// Reads a worker-metrics item keyed by `key_attribute` (`wid`, or `leaseKey` in a 3.5 lease table).
///
/// # Errors
/// [`LeaseError::Malformed`] naming the first problem.
pub fn stats_from_item(
    table: &str,
    key_attribute: &str,
    item: &HashMap<String, AttributeValue>,
) -> Result<WorkerMetricStats, LeaseError> {
    let key = match item.get(key_attribute) {
        Some(AttributeValue::S(k)) => k.clone(),
        other => return Err(malformed(table, &format!("{other:?}"), format!("{key_attribute} must be S"))),
    };
    let last_update_s = match item.get(attr::LAST_UPDATE) {
        Some(AttributeValue::N(text)) => {
            // Java writes whole seconds; tolerate a fraction.
            text.trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v >= 0.0)
                .map(|v| v as u64)
                .ok_or_else(|| malformed(table, &key, format!("lut {text:?} is not a time in seconds")))?
        }
        other => return Err(malformed(table, &key, format!("lut must be N, found {other:?}"))),
    };
    Ok(WorkerMetricStats {
        stats: read_metric_map(table, &key, attr::STATS, item.get(attr::STATS))?,
        operating_range: read_metric_map(table, &key, attr::OPERATING_RANGE, item.get(attr::OPERATING_RANGE))?,
        worker_id: key,
        last_update_s,
    })
}

#[async_trait]
impl WorkerMetricsStore for DynamoWorkerMetricsStore {
    fn table_name(&self) -> &str {
        &self.table
    }

    async fn ensure_table(&self) -> Result<bool, LeaseError> {
        tables::ensure_table(&self.client, &self.table, attr::WORKER_ID, self.table_active_timeout).await
    }

    async fn publish(&self, stats: &WorkerMetricStats) -> Result<(), LeaseError> {
        let values = stats_to_attributes(stats);
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(attr::WORKER_ID, AttributeValue::S(stats.worker_id.clone()))
            .update_expression("SET #lut = :lut, #sts = :sts, #opr = :opr");
        for (name, value) in values {
            request = request
                .expression_attribute_names(format!("#{name}"), &name)
                .expression_attribute_values(format!(":{name}"), value);
        }
        request.send().await.map(|_| ()).map_err(|e| unconditional(&self.table, "publish_worker_metrics", e))
    }

    async fn list(&self) -> Result<WorkerMetricsScan, LeaseError> {
        let mut scan = WorkerMetricsScan::default();
        let mut start = None;
        loop {
            let page = match self.client.scan().table_name(&self.table).set_exclusive_start_key(start).send().await {
                Ok(page) => page,
                Err(e) => match unconditional(&self.table, "scan_worker_metrics", e) {
                    LeaseError::TableMissing { .. } => return Ok(scan),
                    e => return Err(e),
                },
            };
            for item in page.items() {
                match stats_from_item(&self.table, attr::WORKER_ID, item) {
                    Ok(stats) => scan.workers.push(stats),
                    Err(e) => {
                        warn!(error = %e, "skipping unreadable WorkerMetricStats item");
                        scan.malformed.push(e);
                    }
                }
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(scan),
            }
        }
    }

    async fn delete_if_unchanged(&self, worker_id: &str, last_update_s: u64) -> Result<bool, LeaseError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(attr::WORKER_ID, AttributeValue::S(worker_id.to_owned()))
            .condition_expression("#lut = :lut")
            .expression_attribute_names("#lut", attr::LAST_UPDATE)
            .expression_attribute_values(":lut", AttributeValue::N(last_update_s.to_string()))
            .send()
            .await;
        conditional(&self.table, "delete_worker_metrics", result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_worker_item_has_javas_shape() {
        let stats = WorkerMetricStats::default_metric("w1", 1_764_000_000);
        let item = stats_to_attributes(&stats);
        assert_eq!(item.get("sts"), Some(&AttributeValue::M(HashMap::new())));
        assert_eq!(item.get("opr"), Some(&AttributeValue::M(HashMap::new())));
        assert_eq!(item.get("lut"), Some(&AttributeValue::N("1764000000".into())));
        let mut with_key = item;
        with_key.insert("wid".into(), AttributeValue::S("w1".into()));
        assert_eq!(stats_from_item("t", "wid", &with_key).ok(), Some(stats));
    }

    #[test]
    fn metrics_round_trip_and_errors_name_the_metric() {
        let mut stats = WorkerMetricStats::default_metric("w1", 5);
        stats.stats.insert("C".into(), vec![12.0, 15.5, -1.0]);
        stats.operating_range.insert("C".into(), vec![100.0]);
        let mut item = stats_to_attributes(&stats);
        item.insert("wid".into(), AttributeValue::S("w1".into()));
        assert_eq!(stats_from_item("t", "wid", &item).ok(), Some(stats));
        item.insert("sts".into(), AttributeValue::M(HashMap::from([("C".into(), AttributeValue::S("x".into()))])));
        let err = stats_from_item("t", "wid", &item).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("sts.C must be L"), "{err}");
    }

    #[test]
    fn numbers_have_no_needless_fraction() {
        assert_eq!(format_number(12.0), "12");
        assert_eq!(format_number(12.25), "12.25");
        assert_eq!(format_number(-1.0), "-1");
    }
}
