//! The coordinator-state table: the `Migration3.0` client-version item and the `Leader` lock
//! item of the DynamoDB lock client.
//!
//! Lock operations have the lock client's conditions (`kcl3-fanout-users.md` §2.4), so a Java
//! worker and multilangd contend for one lock:
//!
//! | operation | request | condition |
//! |---|---|---|
//! | acquire, no item | PutItem | `attribute_not_exists(key)` |
//! | acquire, expired or released item | PutItem | `attribute_exists(key) AND recordVersionNumber = :seen` |
//! | heartbeat | UpdateItem `SET leaseDuration, recordVersionNumber = :new` | `attribute_exists(key) AND recordVersionNumber = :rvn AND ownerName = :me` |
//! | release | DeleteItem (KCL's lock client deletes on release) | same as heartbeat |

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;

use super::{
    attr, malformed, tables, ClientVersion, LockItem, MigrationHistoryEntry, MigrationRecord, LEADER_KEY, MIGRATION_KEY,
};
use crate::lease::dynamodb::{conditional, unconditional};
use crate::lease::LeaseError;

/// The coordinator-state table (or, read-only, the 3.5 single-table location of its items).
#[async_trait]
pub trait CoordinatorStateStore: Send + Sync + 'static {
    /// The table name (for logs and `multilangd leases`).
    fn table_name(&self) -> &str;

    /// Creates the table (key `key` S, on-demand) if missing and waits until ACTIVE. Returns
    /// true if this call created it.
    async fn ensure_table(&self) -> Result<bool, LeaseError>;

    /// Whether the table exists (a 3.x fleet is, or is becoming, active).
    async fn table_exists(&self) -> Result<bool, LeaseError>;

    /// The `Migration3.0` item; `None` if absent or the table does not exist.
    async fn migration(&self) -> Result<Option<MigrationRecord>, LeaseError>;

    /// PutItem of `Migration3.0` if absent. `Ok(false)` when it already existed.
    async fn create_migration_if_absent(&self, record: &MigrationRecord) -> Result<bool, LeaseError>;

    /// Replaces `cv`, `mb`, `mts`, `h` if the stored `cv` is still `expected`.
    async fn update_migration(&self, expected: &ClientVersion, record: &MigrationRecord) -> Result<bool, LeaseError>;

    /// The `Leader` lock item; `None` if absent or the table does not exist.
    async fn lock(&self) -> Result<Option<LockItem>, LeaseError>;

    /// Writes `item` as the lock: if no lock exists (`replacing = None`), or if the stored
    /// lock still has record version `replacing`.
    async fn put_lock(&self, item: &LockItem, replacing: Option<&str>) -> Result<bool, LeaseError>;

    /// Heartbeat: `SET leaseDuration, recordVersionNumber = new_version` if the lock is
    /// still `owner`'s at `version`.
    async fn heartbeat_lock(
        &self,
        owner: &str,
        version: &str,
        new_version: &str,
        lease_duration_ms: u64,
    ) -> Result<bool, LeaseError>;

    /// Release: delete the lock if it is still `owner`'s at `version`.
    async fn delete_lock(&self, owner: &str, version: &str) -> Result<bool, LeaseError>;
}

/// [`CoordinatorStateStore`] in DynamoDB.
#[derive(Debug, Clone)]
pub struct DynamoCoordinatorStore {
    client: Client,
    table: String,
    key_attribute: String,
    table_active_timeout: Duration,
}

impl DynamoCoordinatorStore {
    /// The 3.0–3.4 table `<applicationName>-CoordinatorState` (partition key `key`).
    #[must_use]
    pub fn new(client: Client, table: String) -> Self {
        Self::with_key_attribute(client, table, attr::COORDINATOR_KEY)
    }

    /// A table whose partition key is `key_attribute`: `leaseKey` reads the items of a KCL 3.5
    /// single-table lease table.
    #[must_use]
    pub fn with_key_attribute(client: Client, table: String, key_attribute: &str) -> Self {
        Self {
            client,
            table,
            key_attribute: key_attribute.to_owned(),
            table_active_timeout: crate::lease::dynamodb::DEFAULT_TABLE_ACTIVE_TIMEOUT,
        }
    }

    /// How long [`CoordinatorStateStore::ensure_table`] waits for ACTIVE.
    #[must_use]
    pub fn with_table_active_timeout(mut self, timeout: Duration) -> Self {
        self.table_active_timeout = timeout;
        self
    }

    fn key(&self, key: &str) -> HashMap<String, AttributeValue> {
        HashMap::from([(self.key_attribute.clone(), AttributeValue::S(key.to_owned()))])
    }

    async fn get(
        &self,
        key: &str,
        operation: &'static str,
    ) -> Result<Option<HashMap<String, AttributeValue>>, LeaseError> {
        match self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(self.key(key)))
            .consistent_read(true)
            .send()
            .await
        {
            Ok(out) => Ok(out.item),
            Err(e) => match unconditional(&self.table, operation, e) {
                LeaseError::TableMissing { .. } => Ok(None),
                e => Err(e),
            },
        }
    }
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn history_value(history: &[MigrationHistoryEntry]) -> AttributeValue {
    AttributeValue::L(
        history
            .iter()
            .map(|h| {
                AttributeValue::M(HashMap::from([
                    (attr::CLIENT_VERSION.to_owned(), s(h.client_version.as_str())),
                    (attr::MODIFIED_BY.to_owned(), s(&h.modified_by)),
                    (attr::MODIFIED_AT.to_owned(), n(h.modified_at_ms)),
                ]))
            })
            .collect(),
    )
}

/// The item attributes of `Migration3.0` (without the key), exactly as Java 3.1.3 writes them.
#[must_use]
pub fn migration_to_attributes(record: &MigrationRecord) -> HashMap<String, AttributeValue> {
    let mut item = HashMap::from([
        (attr::CLIENT_VERSION.to_owned(), s(record.client_version.as_str())),
        (attr::MODIFIED_BY.to_owned(), s(&record.modified_by)),
        (attr::MODIFIED_AT.to_owned(), n(record.modified_at_ms)),
    ]);
    if !record.history.is_empty() {
        item.insert(attr::HISTORY.to_owned(), history_value(&record.history));
    }
    item
}

fn string_attr<'a>(
    table: &str,
    key: &str,
    item: &'a HashMap<String, AttributeValue>,
    name: &str,
) -> Result<&'a str, LeaseError> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Ok(v),
        other => Err(malformed(table, key, format!("{name} must be S, found {other:?}"))),
    }
}

fn number_attr(table: &str, key: &str, item: &HashMap<String, AttributeValue>, name: &str) -> Result<u64, LeaseError> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => {
            v.trim().parse().map_err(|_| malformed(table, key, format!("{name} {v:?} is not a non-negative integer")))
        }
        other => Err(malformed(table, key, format!("{name} must be N, found {other:?}"))),
    }
}

fn client_version(table: &str, key: &str, text: &str) -> Result<ClientVersion, LeaseError> {
    ClientVersion::parse(text).ok_or_else(|| malformed(table, key, format!("unknown client version cv = {text:?}")))
}

/// Reads a `Migration3.0` item.
///
/// # Errors
/// [`LeaseError::Malformed`] naming the first problem.
pub fn migration_from_item(table: &str, item: &HashMap<String, AttributeValue>) -> Result<MigrationRecord, LeaseError> {
    let key = MIGRATION_KEY;
    let cv = client_version(table, key, string_attr(table, key, item, attr::CLIENT_VERSION)?)?;
    // `mb`/`mts` are always written by Java; tolerate their absence (hand-edited items).
    let modified_by = string_attr(table, key, item, attr::MODIFIED_BY).map(str::to_owned).unwrap_or_default();
    let modified_at_ms = number_attr(table, key, item, attr::MODIFIED_AT).unwrap_or(0);
    let history = match item.get(attr::HISTORY) {
        None => Vec::new(),
        Some(AttributeValue::L(entries)) => entries
            .iter()
            .map(|entry| match entry {
                AttributeValue::M(m) => Ok(MigrationHistoryEntry {
                    client_version: client_version(table, key, string_attr(table, key, m, attr::CLIENT_VERSION)?)?,
                    modified_by: string_attr(table, key, m, attr::MODIFIED_BY)?.to_owned(),
                    modified_at_ms: number_attr(table, key, m, attr::MODIFIED_AT)?,
                }),
                other => Err(malformed(table, key, format!("history entries must be M, found {other:?}"))),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(malformed(table, key, format!("h must be L, found {other:?}"))),
    };
    Ok(MigrationRecord { client_version: cv, modified_by, modified_at_ms, history })
}

/// The item attributes of the lock (without the key), as the lock client writes them.
#[must_use]
pub fn lock_to_attributes(lock: &LockItem) -> HashMap<String, AttributeValue> {
    let mut item = HashMap::from([
        (attr::OWNER_NAME.to_owned(), s(&lock.owner)),
        (attr::LEASE_DURATION.to_owned(), s(&lock.lease_duration_ms.to_string())),
        (attr::RECORD_VERSION.to_owned(), s(&lock.record_version)),
    ]);
    if lock.released {
        item.insert(attr::IS_RELEASED.to_owned(), s("1"));
    }
    item
}

/// Reads a `Leader` lock item.
///
/// # Errors
/// [`LeaseError::Malformed`] naming the first problem.
pub fn lock_from_item(table: &str, item: &HashMap<String, AttributeValue>) -> Result<LockItem, LeaseError> {
    let key = LEADER_KEY;
    let duration = string_attr(table, key, item, attr::LEASE_DURATION)?;
    let lease_duration_ms = duration
        .trim()
        .parse()
        .map_err(|_| malformed(table, key, format!("leaseDuration {duration:?} is not a number of milliseconds")))?;
    let released = match item.get(attr::IS_RELEASED) {
        None | Some(AttributeValue::Null(_)) => false,
        Some(AttributeValue::Bool(b)) => *b,
        Some(AttributeValue::S(v)) => !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"),
        Some(_) => true,
    };
    Ok(LockItem {
        owner: string_attr(table, key, item, attr::OWNER_NAME)?.to_owned(),
        lease_duration_ms,
        record_version: string_attr(table, key, item, attr::RECORD_VERSION)?.to_owned(),
        released,
    })
}

#[async_trait]
impl CoordinatorStateStore for DynamoCoordinatorStore {
    fn table_name(&self) -> &str {
        &self.table
    }

    async fn ensure_table(&self) -> Result<bool, LeaseError> {
        tables::ensure_table(&self.client, &self.table, &self.key_attribute, self.table_active_timeout).await
    }

    async fn table_exists(&self) -> Result<bool, LeaseError> {
        Ok(tables::table_status(&self.client, &self.table).await?.is_some())
    }

    async fn migration(&self) -> Result<Option<MigrationRecord>, LeaseError> {
        match self.get(MIGRATION_KEY, "get_migration").await? {
            Some(item) => migration_from_item(&self.table, &item).map(Some),
            None => Ok(None),
        }
    }

    async fn create_migration_if_absent(&self, record: &MigrationRecord) -> Result<bool, LeaseError> {
        let mut item = migration_to_attributes(record);
        item.extend(self.key(MIGRATION_KEY));
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#k)")
            .expression_attribute_names("#k", &self.key_attribute)
            .send()
            .await;
        conditional(&self.table, "create_migration", result)
    }

    async fn update_migration(&self, expected: &ClientVersion, record: &MigrationRecord) -> Result<bool, LeaseError> {
        let mut update = "SET #cv = :cv, #mb = :mb, #mts = :mts".to_owned();
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(self.key(MIGRATION_KEY)))
            .expression_attribute_names("#cv", attr::CLIENT_VERSION)
            .expression_attribute_names("#mb", attr::MODIFIED_BY)
            .expression_attribute_names("#mts", attr::MODIFIED_AT)
            .expression_attribute_values(":cv", s(record.client_version.as_str()))
            .expression_attribute_values(":mb", s(&record.modified_by))
            .expression_attribute_values(":mts", n(record.modified_at_ms))
            .expression_attribute_values(":expected", s(expected.as_str()));
        if record.history.is_empty() {
            update.push_str(" REMOVE #h");
        } else {
            update.push_str(", #h = :h");
            request = request.expression_attribute_values(":h", history_value(&record.history));
        }
        let result = request
            .expression_attribute_names("#h", attr::HISTORY)
            .update_expression(update)
            .condition_expression("#cv = :expected")
            .send()
            .await;
        conditional(&self.table, "update_migration", result)
    }

    async fn lock(&self) -> Result<Option<LockItem>, LeaseError> {
        match self.get(LEADER_KEY, "get_lock").await? {
            Some(item) => lock_from_item(&self.table, &item).map(Some),
            None => Ok(None),
        }
    }

    async fn put_lock(&self, item: &LockItem, replacing: Option<&str>) -> Result<bool, LeaseError> {
        let mut attributes = lock_to_attributes(item);
        attributes.extend(self.key(LEADER_KEY));
        let request = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(attributes))
            .expression_attribute_names("#k", &self.key_attribute);
        let request = match replacing {
            None => request.condition_expression("attribute_not_exists(#k)"),
            Some(version) => request
                .condition_expression("attribute_exists(#k) AND #rvn = :rvn")
                .expression_attribute_names("#rvn", attr::RECORD_VERSION)
                .expression_attribute_values(":rvn", s(version)),
        };
        conditional(&self.table, "acquire_lock", request.send().await)
    }

    async fn heartbeat_lock(
        &self,
        owner: &str,
        version: &str,
        new_version: &str,
        lease_duration_ms: u64,
    ) -> Result<bool, LeaseError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(self.key(LEADER_KEY)))
            .update_expression("SET #ld = :ld, #rvn = :new")
            .condition_expression("attribute_exists(#k) AND #rvn = :rvn AND #on = :on")
            .expression_attribute_names("#k", &self.key_attribute)
            .expression_attribute_names("#ld", attr::LEASE_DURATION)
            .expression_attribute_names("#rvn", attr::RECORD_VERSION)
            .expression_attribute_names("#on", attr::OWNER_NAME)
            .expression_attribute_values(":ld", s(&lease_duration_ms.to_string()))
            .expression_attribute_values(":new", s(new_version))
            .expression_attribute_values(":rvn", s(version))
            .expression_attribute_values(":on", s(owner))
            .send()
            .await;
        conditional(&self.table, "heartbeat_lock", result)
    }

    async fn delete_lock(&self, owner: &str, version: &str) -> Result<bool, LeaseError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(self.key(LEADER_KEY)))
            .condition_expression("attribute_exists(#k) AND #rvn = :rvn AND #on = :on")
            .expression_attribute_names("#k", &self.key_attribute)
            .expression_attribute_names("#rvn", attr::RECORD_VERSION)
            .expression_attribute_names("#on", attr::OWNER_NAME)
            .expression_attribute_values(":rvn", s(version))
            .expression_attribute_values(":on", s(owner))
            .send()
            .await;
        conditional(&self.table, "release_lock", result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migration_item_round_trips_in_java_shape() {
        let record = MigrationRecord::initial(ClientVersion::V3x, "w1", 1_764_000_000_000).advanced(
            ClientVersion::V3x,
            "w2",
            1_764_000_000_500,
        );
        let item = migration_to_attributes(&record);
        let mut names: Vec<&str> = item.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["cv", "h", "mb", "mts"]);
        assert_eq!(migration_from_item("t", &item).ok(), Some(record));
    }

    #[test]
    fn migration_item_errors_name_the_attribute() {
        let mut item = migration_to_attributes(&MigrationRecord::initial(ClientVersion::V3x, "w", 1));
        item.insert("cv".into(), s("CLIENT_VERSION_9X"));
        let err = migration_from_item("t", &item).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("CLIENT_VERSION_9X"), "{err}");
        item.insert("cv".into(), n(3));
        let err = migration_from_item("t", &item).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("cv must be S"), "{err}");
    }

    #[test]
    fn lock_item_round_trips_and_reads_released_flags() {
        let lock =
            LockItem { owner: "w".into(), lease_duration_ms: 20_000, record_version: "v1".into(), released: false };
        let mut item = lock_to_attributes(&lock);
        assert_eq!(item.get("leaseDuration"), Some(&s("20000")), "the lock client stores the duration as S");
        assert_eq!(lock_from_item("t", &item).ok(), Some(lock.clone()));
        item.insert("isReleased".into(), AttributeValue::Bool(true));
        assert!(lock_from_item("t", &item).is_ok_and(|l| l.released));
        item.insert("leaseDuration".into(), s("soon"));
        assert!(lock_from_item("t", &item).is_err());
    }
}
