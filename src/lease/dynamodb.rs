//! The lease table in DynamoDB, in exactly the KCL 2.x item format.
//!
//! Every write is an attribute-level `UpdateItem` with a condition expression, except the
//! conditional create (`PutItem` + `attribute_not_exists(leaseKey)`) and the lease-cleanup
//! `DeleteItem`. Attributes this daemon does not know (`throughputKBps`, `entityType`,
//! future ones) therefore survive every write. The conditions are those of the Java KCL
//! (see `lease-coordination.md` §3), written as expressions instead of the legacy
//! `Expected`/`AttributeUpdates` form; the stored result is identical.
//!
//! SDK errors are classified in one place (`classify`): a failed condition is
//! `Ok(false)`, throttling is [`LeaseError::Throttled`], a missing table
//! [`LeaseError::TableMissing`], everything else [`LeaseError::Dependency`] with the
//! flattened error chain.
//!
//! # Timeouts
//! The client handed to [`DynamoLeaseStore::new`] gets per-call timeouts where it has none:
//! [`ATTEMPT_TIMEOUT`] per HTTP attempt and [`OPERATION_TIMEOUT`] per call including the
//! SDK's retries. The Java KCL bounds calls at 60 s; that is longer than the default
//! failover time (10 s), so a hung call would outlive the lease it is trying to renew.
//! 10 s per attempt still leaves a full-page `Scan` of a large table plenty of time; the
//! renewer bounds each renewal more tightly on its own (see [`super::renewer`]).

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TableStatus,
};
use aws_sdk_dynamodb::Client;
use tracing::{debug, info, warn};

use super::{item, HashKeyRange, Lease, LeaseError, LeaseScan, LeaseStore, MigrationState};
use crate::sequence::ExtendedSequenceNumber;

/// Per-HTTP-attempt timeout applied to the DynamoDB client unless it already has one.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Per-call timeout (all attempts) applied to the DynamoDB client unless it already has one.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);
/// Default bound on waiting for a table to become ACTIVE (Java: 600 s).
pub const DEFAULT_TABLE_ACTIVE_TIMEOUT: Duration = Duration::from_secs(600);
/// First pause between DescribeTable polls while waiting for ACTIVE; doubles up to
/// [`TABLE_POLL_MAX`].
const TABLE_POLL_INITIAL: Duration = Duration::from_millis(50);
/// Longest pause between DescribeTable polls.
const TABLE_POLL_MAX: Duration = Duration::from_secs(1);

/// The key of the KCL 3.x client-version migration item.
pub const MIGRATION_KEY: &str = "Migration3.0";

pub use super::item::{attr, ENTITY_TYPE_LEASE};

/// The lease table in DynamoDB.
#[derive(Debug, Clone)]
pub struct DynamoLeaseStore {
    client: Client,
    table: String,
    coordinator_state_table: String,
    deletion_protection: bool,
    table_active_timeout: Duration,
    scan_page_limit: Option<i32>,
}

impl DynamoLeaseStore {
    /// A store for lease table `table`. `coordinator_state_table` is the KCL 3.x
    /// `<applicationName>-CoordinatorState` table, only read for the `Migration3.0` item.
    /// The client gets [`ATTEMPT_TIMEOUT`] / [`OPERATION_TIMEOUT`] unless it sets its own.
    #[must_use]
    pub fn new(client: Client, table: String, coordinator_state_table: String) -> Self {
        let ours =
            TimeoutConfig::builder().operation_attempt_timeout(ATTEMPT_TIMEOUT).operation_timeout(OPERATION_TIMEOUT);
        let timeouts = match client.config().timeout_config() {
            Some(existing) => existing.to_builder().take_unset_from(ours).build(),
            None => ours.build(),
        };
        let client = Client::from_conf(client.config().to_builder().timeout_config(timeouts).build());
        Self {
            client,
            table,
            coordinator_state_table,
            deletion_protection: false,
            table_active_timeout: DEFAULT_TABLE_ACTIVE_TIMEOUT,
            scan_page_limit: None,
        }
    }

    /// Creates the table with deletion protection (`leaseTableDeletionProtectionEnabled`).
    #[must_use]
    pub fn with_deletion_protection(mut self, enabled: bool) -> Self {
        self.deletion_protection = enabled;
        self
    }

    /// How long [`LeaseStore::ensure_table`] waits for the table to become ACTIVE.
    #[must_use]
    pub fn with_table_active_timeout(mut self, timeout: Duration) -> Self {
        self.table_active_timeout = timeout;
        self
    }

    /// Caps the items per Scan page (`Limit`); default: none (1 MB pages, like Java).
    #[must_use]
    pub fn with_scan_page_limit(mut self, limit: Option<i32>) -> Self {
        self.scan_page_limit = limit;
        self
    }

    /// The DynamoDB client (with the timeouts applied).
    #[must_use]
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// One DescribeTable: `Ok(None)` when the table does not exist.
    async fn table_status(&self) -> Result<Option<TableStatus>, LeaseError> {
        match self.client.describe_table().table_name(&self.table).send().await {
            Ok(out) => Ok(Some(
                out.table().and_then(|t| t.table_status().cloned()).unwrap_or_else(|| TableStatus::from("UNKNOWN")),
            )),
            Err(e) => match classify(&self.table, "describe_table", e) {
                Failure::Error(LeaseError::TableMissing { .. }) => Ok(None),
                Failure::Error(e) => Err(e),
                Failure::ConditionFailed => Err(unexpected_condition(&self.table, "describe_table")),
            },
        }
    }

    /// CreateTable; `Ok(false)` when someone else created it first (ResourceInUse).
    async fn create_table(&self) -> Result<bool, LeaseError> {
        let key = KeySchemaElement::builder()
            .attribute_name(attr::LEASE_KEY)
            .key_type(KeyType::Hash)
            .build()
            .map_err(|e| build_error(&self.table, "create_table", &e))?;
        let definition = AttributeDefinition::builder()
            .attribute_name(attr::LEASE_KEY)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(|e| build_error(&self.table, "create_table", &e))?;
        let mut request = self
            .client
            .create_table()
            .table_name(&self.table)
            .key_schema(key)
            .attribute_definitions(definition)
            .billing_mode(BillingMode::PayPerRequest);
        if self.deletion_protection {
            request = request.deletion_protection_enabled(true);
        }
        match request.send().await {
            Ok(_) => {
                info!(table = %self.table, "created lease table");
                Ok(true)
            }
            Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_in_use_exception()) => {
                debug!(table = %self.table, "lease table is being created by another worker");
                Ok(false)
            }
            Err(e) => Err(unconditional(&self.table, "create_table", e)),
        }
    }

    fn key(&self, key: &str) -> HashMap<String, AttributeValue> {
        HashMap::from([(attr::LEASE_KEY.to_owned(), AttributeValue::S(key.to_owned()))])
    }

    /// GetItem (consistent) of the raw item.
    pub(super) async fn get_item(
        &self,
        key: &str,
        operation: &'static str,
    ) -> Result<Option<HashMap<String, AttributeValue>>, LeaseError> {
        self.client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(self.key(key)))
            .consistent_read(true)
            .send()
            .await
            .map(|out| out.item)
            .map_err(|e| unconditional(&self.table, operation, e))
    }

    /// Sends one conditional UpdateItem; `Ok(false)` when the condition failed.
    async fn conditional_update(
        &self,
        key: &str,
        operation: &'static str,
        update: String,
        condition: String,
        expr: Expressions,
    ) -> Result<bool, LeaseError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(self.key(key)))
            .update_expression(update)
            .condition_expression(condition)
            .set_expression_attribute_names(Some(expr.names))
            .set_expression_attribute_values((!expr.values.is_empty()).then_some(expr.values))
            .send()
            .await;
        conditional(&self.table, operation, result)
    }

    /// The condition of a write failed: was it our own earlier attempt that already applied
    /// (`leaseOwner = expected_owner` and `leaseCounter = seen + 1`, plus `extra`)?
    async fn was_applied(
        &self,
        lease: &Lease,
        expected_owner: Option<&str>,
        operation: &'static str,
        extra: impl FnOnce(&Lease) -> bool,
    ) -> Result<bool, LeaseError> {
        let Some(expected_owner) = expected_owner else { return Ok(false) };
        let Some(item) = self.get_item(&lease.key, operation).await? else { return Ok(false) };
        let current = match lease_from_item(&self.table, &item) {
            Ok(Some(current)) => current,
            Ok(None) | Err(_) => return Ok(false),
        };
        let applied = current.owner.as_deref() == Some(expected_owner)
            && Some(current.counter) == lease.counter.checked_add(1)
            && extra(&current);
        if applied {
            info!(table = %self.table, lease = %lease.key, operation, "conditional write failed but had already been applied (retried request); treating as success");
        }
        Ok(applied)
    }

    async fn get_migration_item(
        &self,
        table: &str,
        key_attr: &str,
    ) -> Result<Option<HashMap<String, AttributeValue>>, LeaseError> {
        self.client
            .get_item()
            .table_name(table)
            .key(key_attr, AttributeValue::S(MIGRATION_KEY.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map(|out| out.item)
            .map_err(|e| unconditional(table, "migration_state", e))
    }
}

/// Builds expression attribute names/values, registering only what is used (DynamoDB
/// rejects unused placeholders).
#[derive(Default)]
pub(super) struct Expressions {
    pub(super) names: HashMap<String, String>,
    pub(super) values: HashMap<String, AttributeValue>,
}

impl Expressions {
    /// `#<attribute>` for an attribute name.
    pub(super) fn name(&mut self, attribute: &str) -> String {
        let placeholder = format!("#{attribute}");
        self.names.insert(placeholder.clone(), attribute.to_owned());
        placeholder
    }

    /// `:<label>` for a value.
    pub(super) fn value(&mut self, label: &str, value: AttributeValue) -> String {
        let placeholder = format!(":{label}");
        self.values.insert(placeholder.clone(), value);
        placeholder
    }
}

pub(super) fn number(n: u64) -> AttributeValue {
    AttributeValue::N(n.to_string())
}

fn string_set(set: &BTreeSet<String>) -> AttributeValue {
    AttributeValue::Ss(set.iter().cloned().collect())
}

pub(super) fn next_counter(table: &str, lease: &Lease) -> Result<u64, LeaseError> {
    lease.counter.checked_add(1).ok_or_else(|| LeaseError::Malformed {
        table: table.to_owned(),
        key: lease.key.clone(),
        reason: "leaseCounter is at u64::MAX".to_owned(),
    })
}

#[async_trait]
impl LeaseStore for DynamoLeaseStore {
    fn table_name(&self) -> &str {
        &self.table
    }

    async fn ensure_table(&self) -> Result<bool, LeaseError> {
        let deadline = tokio::time::Instant::now() + self.table_active_timeout;
        let mut created = false;
        let mut pause = TABLE_POLL_INITIAL;
        loop {
            match self.table_status().await? {
                None => created |= self.create_table().await?,
                Some(TableStatus::Active | TableStatus::Updating) => return Ok(created),
                Some(status) => debug!(table = %self.table, ?status, "waiting for the lease table to become ACTIVE"),
            }
            if tokio::time::Instant::now() + pause > deadline {
                return Err(LeaseError::Dependency {
                    table: self.table.clone(),
                    operation: "ensure_table",
                    message: format!("table did not become ACTIVE within {:?}", self.table_active_timeout),
                });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(TABLE_POLL_MAX);
        }
    }

    async fn list_leases(&self) -> Result<LeaseScan, LeaseError> {
        let mut scan = LeaseScan::default();
        let mut start_key = None;
        loop {
            let out = self
                .client
                .scan()
                .table_name(&self.table)
                .set_limit(self.scan_page_limit)
                .set_exclusive_start_key(start_key)
                .send()
                .await
                .map_err(|e| unconditional(&self.table, "scan", e))?;
            for item in out.items() {
                match lease_from_item(&self.table, item) {
                    Ok(Some(lease)) => scan.leases.push(lease),
                    Ok(None) => {}
                    Err(e) => {
                        warn!(error = %e, "skipping malformed lease item");
                        scan.malformed.push(e);
                    }
                }
            }
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start_key = Some(key),
                _ => return Ok(scan),
            }
        }
    }

    async fn get_lease(&self, key: &str) -> Result<Option<Lease>, LeaseError> {
        match self.get_item(key, "get_lease").await? {
            Some(item) => lease_from_item(&self.table, &item),
            None => Ok(None),
        }
    }

    async fn create_lease_if_absent(&self, lease: &Lease) -> Result<bool, LeaseError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(lease_to_item(lease)))
            .condition_expression("attribute_not_exists(#leaseKey)")
            .expression_attribute_names("#leaseKey", attr::LEASE_KEY)
            .send()
            .await;
        conditional(&self.table, "create_lease", result)
    }

    async fn renew_lease(&self, lease: &Lease) -> Result<bool, LeaseError> {
        let mut e = Expressions::default();
        let counter = e.name(attr::LEASE_COUNTER);
        let seen = e.value("seen", number(lease.counter));
        let next = e.value("next", number(next_counter(&self.table, lease)?));
        let update = format!("SET {counter} = {next}");
        let condition = format!("{counter} = {seen}");
        if self.conditional_update(&lease.key, "renew_lease", update, condition, e).await? {
            return Ok(true);
        }
        self.was_applied(lease, lease.owner.as_deref(), "renew_lease", |_| true).await
    }

    async fn take_lease(&self, lease: &Lease, owner: &str) -> Result<bool, LeaseError> {
        let mut e = Expressions::default();
        let counter = e.name(attr::LEASE_COUNTER);
        let owner_name = e.name(attr::LEASE_OWNER);
        let checkpoint_owner = e.name(attr::CHECKPOINT_OWNER);
        let seen = e.value("seen", number(lease.counter));
        let next = e.value("next", number(next_counter(&self.table, lease)?));
        let new_owner = e.value("owner", AttributeValue::S(owner.to_owned()));
        let mut update = format!("SET {counter} = {next}, {owner_name} = {new_owner}");
        if lease.owner.as_deref().is_some_and(|previous| previous != owner) {
            let switches = e.name(attr::OWNER_SWITCHES);
            let one = e.value("one", number(1));
            update.push_str(&format!(" ADD {switches} {one}"));
        }
        update.push_str(&format!(" REMOVE {checkpoint_owner}"));
        let condition = format!("{counter} = {seen}");
        if self.conditional_update(&lease.key, "take_lease", update, condition, e).await? {
            return Ok(true);
        }
        self.was_applied(lease, Some(owner), "take_lease", |_| true).await
    }

    async fn release_lease(&self, lease: &Lease) -> Result<bool, LeaseError> {
        let mut e = Expressions::default();
        let counter = e.name(attr::LEASE_COUNTER);
        let owner_name = e.name(attr::LEASE_OWNER);
        let seen = e.value("seen", number(lease.counter));
        let next = e.value("next", number(next_counter(&self.table, lease)?));
        let update = format!("REMOVE {owner_name} SET {counter} = {next}");
        let owner_condition = match &lease.owner {
            Some(owner) => format!("{owner_name} = {}", e.value("owner", AttributeValue::S(owner.clone()))),
            None => format!("attribute_not_exists({owner_name})"),
        };
        let condition = format!("{counter} = {seen} AND {owner_condition}");
        self.conditional_update(&lease.key, "release_lease", update, condition, e).await
    }

    async fn update_checkpoint(&self, lease: &Lease, checkpoint: &ExtendedSequenceNumber) -> Result<bool, LeaseError> {
        let mut e = Expressions::default();
        let counter = e.name(attr::LEASE_COUNTER);
        let seen = e.value("seen", number(lease.counter));
        let next = e.value("next", number(next_counter(&self.table, lease)?));
        let mut sets = vec![
            format!("{counter} = {next}"),
            format!(
                "{} = {}",
                e.name(attr::CHECKPOINT),
                e.value("cp", AttributeValue::S(checkpoint.position.as_str().to_owned()))
            ),
            format!(
                "{} = {}",
                e.name(attr::CHECKPOINT_SUB_SEQUENCE),
                e.value("cpsub", number(checkpoint.sub_sequence))
            ),
            format!("{} = {}", e.name(attr::OWNER_SWITCHES), e.value("zero", number(0))),
        ];
        if !lease.child_shard_ids.is_empty() {
            sets.push(format!(
                "{} = {}",
                e.name(attr::CHILD_SHARD_IDS),
                e.value("children", string_set(&lease.child_shard_ids))
            ));
        }
        if let Some(range) = &lease.hash_key_range {
            sets.push(format!(
                "{} = {}",
                e.name(attr::STARTING_HASH_KEY),
                e.value("start", AttributeValue::S(range.starting.clone()))
            ));
            sets.push(format!(
                "{} = {}",
                e.name(attr::ENDING_HASH_KEY),
                e.value("end", AttributeValue::S(range.ending.clone()))
            ));
        }
        let removes = [attr::PENDING_CHECKPOINT, attr::PENDING_CHECKPOINT_SUB_SEQUENCE, attr::PENDING_CHECKPOINT_STATE]
            .map(|name| e.name(name))
            .join(", ");
        let update = format!("SET {} REMOVE {removes}", sets.join(", "));
        let condition = format!("{counter} = {seen}");
        if self.conditional_update(&lease.key, "update_checkpoint", update, condition, e).await? {
            return Ok(true);
        }
        self.was_applied(lease, lease.owner.as_deref(), "update_checkpoint", |current| {
            current.checkpoint == *checkpoint && current.pending_checkpoint.is_none()
        })
        .await
    }

    async fn update_child_shard_ids(&self, key: &str, children: &BTreeSet<String>) -> Result<bool, LeaseError> {
        let mut e = Expressions::default();
        let lease_key = e.name(attr::LEASE_KEY);
        let name = e.name(attr::CHILD_SHARD_IDS);
        let update = if children.is_empty() {
            format!("REMOVE {name}")
        } else {
            format!("SET {name} = {}", e.value("children", string_set(children)))
        };
        let condition = format!("attribute_exists({lease_key})");
        self.conditional_update(key, "update_child_shard_ids", update, condition, e).await
    }

    async fn update_hash_key_range(&self, key: &str, range: &HashKeyRange) -> Result<bool, LeaseError> {
        let mut e = Expressions::default();
        let lease_key = e.name(attr::LEASE_KEY);
        let start = e.name(attr::STARTING_HASH_KEY);
        let end = e.name(attr::ENDING_HASH_KEY);
        let start_value = e.value("start", AttributeValue::S(range.starting.clone()));
        let end_value = e.value("end", AttributeValue::S(range.ending.clone()));
        let update = format!("SET {start} = {start_value}, {end} = {end_value}");
        let condition = format!("attribute_exists({lease_key})");
        self.conditional_update(key, "update_hash_key_range", update, condition, e).await
    }

    async fn delete_lease(&self, key: &str) -> Result<(), LeaseError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(self.key(key)))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| unconditional(&self.table, "delete_lease", e))
    }

    async fn migration_state(&self) -> Result<Option<MigrationState>, LeaseError> {
        if let Some(item) = self.get_migration_item(&self.table, attr::LEASE_KEY).await? {
            return migration_from_item(&self.table, &item).map(Some);
        }
        match self.get_migration_item(&self.coordinator_state_table, attr::COORDINATOR_KEY).await {
            Ok(Some(item)) => migration_from_item(&self.coordinator_state_table, &item).map(Some),
            Ok(None) | Err(LeaseError::TableMissing { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

fn migration_from_item(table: &str, item: &HashMap<String, AttributeValue>) -> Result<MigrationState, LeaseError> {
    match item.get(attr::CLIENT_VERSION) {
        Some(AttributeValue::S(cv)) => Ok(MigrationState { client_version: cv.clone(), table: table.to_owned() }),
        other => Err(LeaseError::Malformed {
            table: table.to_owned(),
            key: MIGRATION_KEY.to_owned(),
            reason: format!("attribute cv must be a string, found {other:?}"),
        }),
    }
}

/// The outcome of a failed SDK call, after classification.
pub(crate) enum Failure {
    /// `ConditionalCheckFailedException`: someone else changed the item.
    ConditionFailed,
    /// Anything else.
    Error(LeaseError),
}

/// The single place where SDK errors become lease errors.
pub(crate) fn classify<E>(table: &str, operation: &'static str, err: SdkError<E>) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let code = err.as_service_error().and_then(ProvideErrorMetadata::code);
    match code {
        Some("ConditionalCheckFailedException") => Failure::ConditionFailed,
        Some("ProvisionedThroughputExceededException" | "RequestLimitExceeded" | "ThrottlingException") => {
            Failure::Error(LeaseError::Throttled { table: table.to_owned(), operation })
        }
        Some("ResourceNotFoundException") => Failure::Error(LeaseError::TableMissing { table: table.to_owned() }),
        _ => Failure::Error(LeaseError::Dependency {
            table: table.to_owned(),
            operation,
            message: DisplayErrorContext(&err).to_string(),
        }),
    }
}

/// `Ok(true)` on success, `Ok(false)` on a failed condition, else the classified error.
pub(crate) fn conditional<T, E>(
    table: &str,
    operation: &'static str,
    result: Result<T, SdkError<E>>,
) -> Result<bool, LeaseError>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match result {
        Ok(_) => Ok(true),
        Err(e) => match classify(table, operation, e) {
            Failure::ConditionFailed => Ok(false),
            Failure::Error(e) => Err(e),
        },
    }
}

/// For calls without a condition: a condition failure cannot happen, but is still an error.
pub(crate) fn unconditional<E>(table: &str, operation: &'static str, err: SdkError<E>) -> LeaseError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match classify(table, operation, err) {
        Failure::Error(e) => e,
        Failure::ConditionFailed => unexpected_condition(table, operation),
    }
}

pub(crate) fn unexpected_condition(table: &str, operation: &'static str) -> LeaseError {
    LeaseError::Dependency {
        table: table.to_owned(),
        operation,
        message: "unexpected ConditionalCheckFailedException".to_owned(),
    }
}

pub(crate) fn build_error(table: &str, operation: &'static str, err: &dyn std::error::Error) -> LeaseError {
    LeaseError::Dependency { table: table.to_owned(), operation, message: err.to_string() }
}

/// The full item written by [`LeaseStore::create_lease_if_absent`] (Java's create format
/// plus `entityType = LEASE`, as KCL 3.5 writes).
#[must_use]
pub fn lease_to_item(lease: &Lease) -> HashMap<String, AttributeValue> {
    let mut item = HashMap::new();
    let s = |v: &str| AttributeValue::S(v.to_owned());
    item.insert(attr::LEASE_KEY.to_owned(), s(&lease.key));
    item.insert(attr::LEASE_COUNTER.to_owned(), number(lease.counter));
    item.insert(attr::OWNER_SWITCHES.to_owned(), number(lease.owner_switches_since_checkpoint));
    item.insert(attr::CHECKPOINT.to_owned(), s(lease.checkpoint.position.as_str()));
    item.insert(attr::CHECKPOINT_SUB_SEQUENCE.to_owned(), number(lease.checkpoint.sub_sequence));
    item.insert(attr::ENTITY_TYPE.to_owned(), s(ENTITY_TYPE_LEASE));
    if let Some(owner) = &lease.owner {
        item.insert(attr::LEASE_OWNER.to_owned(), s(owner));
    }
    if !lease.parent_shard_ids.is_empty() {
        item.insert(attr::PARENT_SHARD_IDS.to_owned(), string_set(&lease.parent_shard_ids));
    }
    if !lease.child_shard_ids.is_empty() {
        item.insert(attr::CHILD_SHARD_IDS.to_owned(), string_set(&lease.child_shard_ids));
    }
    if let Some(range) = &lease.hash_key_range {
        item.insert(attr::STARTING_HASH_KEY.to_owned(), s(&range.starting));
        item.insert(attr::ENDING_HASH_KEY.to_owned(), s(&range.ending));
    }
    if let Some(pending) = &lease.pending_checkpoint {
        item.insert(attr::PENDING_CHECKPOINT.to_owned(), s(pending.position.as_str()));
        item.insert(attr::PENDING_CHECKPOINT_SUB_SEQUENCE.to_owned(), number(pending.sub_sequence));
    }
    if let Some(state) = &lease.pending_checkpoint_state {
        item.insert(attr::PENDING_CHECKPOINT_STATE.to_owned(), AttributeValue::B(Blob::new(state.clone())));
    }
    if let Some(checkpoint_owner) = &lease.checkpoint_owner {
        item.insert(attr::CHECKPOINT_OWNER.to_owned(), s(checkpoint_owner));
    }
    item
}

/// Reads a lease item. `Ok(None)` for non-lease items (`entityType` present and not
/// `LEASE`); `Err(Malformed)` when a lease attribute is missing or has the wrong type.
/// The decoding itself is [`item::decode_lease`], which does not depend on the SDK.
///
/// # Errors
/// [`LeaseError::Malformed`] describing the first problem found.
pub fn lease_from_item(table: &str, item: &HashMap<String, AttributeValue>) -> Result<Option<Lease>, LeaseError> {
    item::decode_lease(|name| item.get(name).map(attr_view))
        .map_err(|item::Malformed { key, reason }| LeaseError::Malformed { table: table.to_owned(), key, reason })
}

/// The SDK's attribute value as the SDK-free decoder sees it.
fn attr_view(value: &AttributeValue) -> item::Attr<'_> {
    use item::Attr;
    match value {
        AttributeValue::S(s) => Attr::S(s),
        AttributeValue::N(n) => Attr::N(n),
        AttributeValue::B(blob) => Attr::B(blob.as_ref()),
        AttributeValue::Ss(values) => Attr::Ss(values),
        AttributeValue::Null(_) => Attr::Null,
        AttributeValue::Bool(_) => Attr::Other("BOOL"),
        AttributeValue::L(_) => Attr::Other("L"),
        AttributeValue::M(_) => Attr::Other("M"),
        AttributeValue::Ns(_) => Attr::Other("NS"),
        AttributeValue::Bs(_) => Attr::Other("BS"),
        _ => Attr::Other("an unknown type"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sequence::{Position, SequenceNumber};

    fn full_lease() -> Lease {
        Lease {
            key: "shardId-000000000002".into(),
            owner: Some("worker-a".into()),
            counter: 17,
            checkpoint: ExtendedSequenceNumber::at(SequenceNumber::parse("4959").unwrap(), 3),
            pending_checkpoint: Some(ExtendedSequenceNumber::at(SequenceNumber::parse("4960").unwrap(), 0)),
            pending_checkpoint_state: Some(vec![1, 2, 3]),
            owner_switches_since_checkpoint: 2,
            parent_shard_ids: BTreeSet::from(["shardId-000000000000".to_owned()]),
            child_shard_ids: BTreeSet::from(["shardId-000000000005".to_owned(), "shardId-000000000006".to_owned()]),
            hash_key_range: Some(HashKeyRange {
                starting: "0".into(),
                ending: "170141183460469231731687303715884105727".into(),
            }),
            checkpoint_owner: Some("worker-b".into()),
        }
    }

    #[test]
    fn item_round_trip_keeps_every_field() {
        let lease = full_lease();
        let item = lease_to_item(&lease);
        assert_eq!(item.get("entityType"), Some(&AttributeValue::S("LEASE".into())));
        assert_eq!(lease_from_item("t", &item).unwrap(), Some(lease));
    }

    #[test]
    fn minimal_item_omits_optional_attributes() {
        let item = lease_to_item(&Lease::new("shardId-1", ExtendedSequenceNumber::new(Position::TrimHorizon)));
        let mut names: Vec<_> = item.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "checkpoint",
                "checkpointSubSequenceNumber",
                "entityType",
                "leaseCounter",
                "leaseKey",
                "ownerSwitchesSinceCheckpoint"
            ]
        );
    }

    #[test]
    fn non_lease_entity_types_are_skipped() {
        let mut item = lease_to_item(&full_lease());
        item.insert("entityType".into(), AttributeValue::S("WORKER_METRIC_STATS".into()));
        assert_eq!(lease_from_item("t", &item).unwrap(), None);
    }

    #[test]
    fn malformed_items_name_the_problem() {
        let base = lease_to_item(&full_lease());
        let cases: [(&str, Option<AttributeValue>, &str); 6] = [
            ("leaseCounter", None, "missing leaseCounter"),
            ("leaseCounter", Some(AttributeValue::S("1".into())), "leaseCounter must be N"),
            ("leaseCounter", Some(AttributeValue::N("-1".into())), "not a non-negative integer"),
            ("checkpoint", Some(AttributeValue::S("1.5".into())), "neither a sequence number"),
            ("parentShardId", Some(AttributeValue::S("shardId-0".into())), "parentShardId must be SS"),
            ("entityType", Some(AttributeValue::N("1".into())), "entityType must be S"),
        ];
        for (name, value, expected) in cases {
            let mut item = base.clone();
            match value {
                Some(v) => item.insert(name.into(), v),
                None => item.remove(name),
            };
            match lease_from_item("t", &item) {
                Err(LeaseError::Malformed { key, reason, .. }) => {
                    assert_eq!(key, "shardId-000000000002");
                    assert!(reason.contains(expected), "{name}: {reason}");
                }
                other => panic!("{name}: expected Malformed, got {other:?}"),
            }
        }
    }

    #[test]
    fn absent_optional_numbers_default_to_zero() {
        let mut item = lease_to_item(&full_lease());
        item.remove("checkpointSubSequenceNumber");
        item.remove("ownerSwitchesSinceCheckpoint");
        item.remove("entityType");
        let lease = lease_from_item("t", &item).unwrap().unwrap();
        assert_eq!(lease.checkpoint.sub_sequence, 0);
        assert_eq!(lease.owner_switches_since_checkpoint, 0);
    }
}
