//! The 3.x writes on the lease table (`lease-coordination.md` §3, `kcl3-fanout-users.md` §2.2):
//! the owner index, renewal with the hand-off condition and `throughputKBps`, the leader's
//! `assign` and `initiateGracefulHandoff`, and the old owner completing a hand-off.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, CreateGlobalSecondaryIndexAction, GlobalSecondaryIndexUpdate, IndexStatus,
    KeySchemaElement, KeyType, Projection, ProjectionType, ReturnValue, ReturnValuesOnConditionCheckFailure,
    ScalarAttributeType,
};
use tracing::{debug, info};

use super::worker_metrics::format_number;
use super::{attr, OWNER_INDEX};
use crate::lease::dynamodb::{
    attr as lease_attr, build_error, classify, lease_from_item, next_counter, number, unconditional, DynamoLeaseStore,
    Expressions, Failure,
};
use crate::lease::{Lease, LeaseError};

/// State of the owner index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexState {
    /// No such index.
    Missing,
    /// Being built (`CREATING`, or backfilling).
    Creating,
    /// Queryable.
    Active,
    /// Anything else (`UPDATING`, `DELETING`).
    Other(String),
}

/// The outcome of a 3.x renewal.
#[derive(Debug, Clone, PartialEq)]
pub enum Renewal {
    /// Counter incremented; the lease is still this worker's.
    Renewed,
    /// The leader started a graceful hand-off of this lease: `leaseOwner` names the new owner
    /// and `checkpointOwner` this worker. The lease (as stored) is returned so the caller can
    /// adopt the new owner fields, keep renewing it without the hand-off condition, let the
    /// processor checkpoint, then complete the transfer with [`Kcl3LeaseTable::assign_lease`].
    HandoffRequested(Box<Lease>),
    /// Someone else changed the counter or owner: the lease is lost.
    Lost,
}

/// The 3.x operations on the lease table.
#[async_trait]
pub trait Kcl3LeaseTable: Send + Sync + 'static {
    /// Adds the `LeaseOwnerToLeaseKeyIndex` GSI (KEYS_ONLY) unless it exists; returns its state.
    async fn ensure_owner_index(&self) -> Result<IndexState, LeaseError>;

    /// The state of the owner index.
    async fn owner_index_state(&self) -> Result<IndexState, LeaseError>;

    /// Waits up to `timeout` for the owner index to become ACTIVE; returns the last state.
    async fn wait_owner_index_active(&self, timeout: Duration) -> Result<IndexState, LeaseError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut pause = Duration::from_millis(100);
        loop {
            let state = self.owner_index_state().await?;
            if state == IndexState::Active || tokio::time::Instant::now() + pause > deadline {
                return Ok(state);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(5));
        }
    }

    /// The lease keys the owner index lists for `worker` (eventually consistent: the caller
    /// re-reads each lease before acting on it).
    async fn lease_keys_for_worker(&self, worker: &str) -> Result<Vec<String>, LeaseError>;

    /// Renew: `SET leaseCounter = counter + 1` (and `throughputKBps` if given) if the counter
    /// is unchanged and — unless `lease.checkpoint_owner` shows this worker already knows of a
    /// hand-off — no `checkpointOwner` is set. A failed condition is examined: a hand-off
    /// naming this worker as `checkpointOwner` is [`Renewal::HandoffRequested`]; our own
    /// already-applied retry is [`Renewal::Renewed`]; anything else [`Renewal::Lost`].
    /// `me` is this worker (the lease's `leaseOwner`, or its `checkpointOwner` mid hand-off).
    async fn renew_lease_3x(
        &self,
        lease: &Lease,
        me: &str,
        throughput_kbps: Option<f64>,
    ) -> Result<Renewal, LeaseError>;

    /// Assign (leader) or complete a hand-off (old owner): if `leaseOwner` and
    /// `checkpointOwner` still have the values in `lease` (absent when `None`):
    /// `SET leaseOwner = new_owner`, `REMOVE checkpointOwner`, `ADD leaseCounter 1`, and
    /// `ADD ownerSwitchesSinceCheckpoint 1` when the owner changes. Returns the lease as
    /// written, `None` when the condition failed.
    async fn assign_lease(&self, lease: &Lease, new_owner: &str) -> Result<Option<Lease>, LeaseError>;

    /// Leader: start a graceful hand-off: if `leaseOwner = lease.owner` and no
    /// `checkpointOwner`: `SET leaseOwner = new_owner, checkpointOwner = old owner`, counter
    /// unchanged (the old owner keeps renewing). Returns the lease as written.
    async fn initiate_handoff(&self, lease: &Lease, new_owner: &str) -> Result<Option<Lease>, LeaseError>;
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn index_state(status: Option<&IndexStatus>, backfilling: bool) -> IndexState {
    match status {
        Some(IndexStatus::Active) if !backfilling => IndexState::Active,
        Some(IndexStatus::Creating) | Some(IndexStatus::Active) => IndexState::Creating,
        Some(other) => IndexState::Other(other.as_str().to_owned()),
        None => IndexState::Other("UNKNOWN".to_owned()),
    }
}

/// `attr = :label` if `value` is set, else `attribute_not_exists(attr)`.
fn equals_or_absent(e: &mut Expressions, attribute: &str, label: &str, value: Option<&str>) -> String {
    let name = e.name(attribute);
    match value {
        Some(v) => format!("{name} = {}", e.value(label, s(v))),
        None => format!("attribute_not_exists({name})"),
    }
}

impl DynamoLeaseStore {
    async fn update_returning_new(
        &self,
        key: &str,
        operation: &'static str,
        update: String,
        condition: String,
        e: Expressions,
    ) -> Result<Option<Lease>, LeaseError> {
        let table = self.table_name_owned();
        let result = self
            .client()
            .update_item()
            .table_name(&table)
            .key(lease_attr::LEASE_KEY, s(key))
            .update_expression(update)
            .condition_expression(condition)
            .set_expression_attribute_names(Some(e.names))
            .set_expression_attribute_values((!e.values.is_empty()).then_some(e.values))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match result {
            Ok(out) => match out.attributes {
                Some(item) => lease_from_item(&table, &item),
                None => Ok(None),
            },
            Err(err) => match classify(&table, operation, err) {
                Failure::ConditionFailed => Ok(None),
                Failure::Error(e) => Err(e),
            },
        }
    }

    fn table_name_owned(&self) -> String {
        crate::lease::LeaseStore::table_name(self).to_owned()
    }
}

#[async_trait]
impl Kcl3LeaseTable for DynamoLeaseStore {
    async fn ensure_owner_index(&self) -> Result<IndexState, LeaseError> {
        let state = self.owner_index_state().await?;
        if state != IndexState::Missing {
            return Ok(state);
        }
        let table = self.table_name_owned();
        let key = |name: &str, kind: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
                .map_err(|e| build_error(&table, "create_owner_index", &e))
        };
        let index = CreateGlobalSecondaryIndexAction::builder()
            .index_name(OWNER_INDEX)
            .key_schema(key(lease_attr::LEASE_OWNER, KeyType::Hash)?)
            .key_schema(key(lease_attr::LEASE_KEY, KeyType::Range)?)
            .projection(Projection::builder().projection_type(ProjectionType::KeysOnly).build())
            .build()
            .map_err(|e| build_error(&table, "create_owner_index", &e))?;
        let owner_definition = AttributeDefinition::builder()
            .attribute_name(lease_attr::LEASE_OWNER)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(|e| build_error(&table, "create_owner_index", &e))?;
        let key_definition = AttributeDefinition::builder()
            .attribute_name(lease_attr::LEASE_KEY)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(|e| build_error(&table, "create_owner_index", &e))?;
        let result = self
            .client()
            .update_table()
            .table_name(&table)
            .attribute_definitions(owner_definition)
            .attribute_definitions(key_definition)
            .global_secondary_index_updates(GlobalSecondaryIndexUpdate::builder().create(index).build())
            .send()
            .await;
        match result {
            Ok(_) => info!(table = %table, index = OWNER_INDEX, "creating the lease owner index"),
            // Another worker is creating it (or the table is being updated): look again.
            Err(err)
                if matches!(err.code(), Some("ResourceInUseException" | "ValidationException"))
                    && self.owner_index_state().await? != IndexState::Missing =>
            {
                debug!(table = %table, "the owner index is being created by another worker");
            }
            // The endpoint cannot create the index at all (dynalite refuses any GSI update).
            Err(err) if err.code() == Some("ValidationException") => {
                return Err(LeaseError::Dependency {
                    table: table.clone(),
                    operation: "create_owner_index",
                    message: format!(
                        "the DynamoDB endpoint refused to create the lease owner index {OWNER_INDEX} that the \
                         KCL 3.x lease protocol needs ({}). Use DynamoDB (or moto) for 3.x, or set \
                         `clientVersionConfig = CLIENT_VERSION_CONFIG_COMPATIBLE_WITH_2X` to run the 2.x \
                         protocol (dynalite cannot create secondary indexes)",
                        err.message().unwrap_or("ValidationException")
                    ),
                });
            }
            Err(err) => return Err(unconditional(&table, "create_owner_index", err)),
        }
        self.owner_index_state().await
    }

    async fn owner_index_state(&self) -> Result<IndexState, LeaseError> {
        let table = self.table_name_owned();
        let out = self
            .client()
            .describe_table()
            .table_name(&table)
            .send()
            .await
            .map_err(|e| unconditional(&table, "describe_table", e))?;
        Ok(out
            .table()
            .and_then(|t| t.global_secondary_indexes().iter().find(|g| g.index_name() == Some(OWNER_INDEX)))
            .map_or(IndexState::Missing, |g| index_state(g.index_status(), g.backfilling().unwrap_or(false))))
    }

    async fn lease_keys_for_worker(&self, worker: &str) -> Result<Vec<String>, LeaseError> {
        let table = self.table_name_owned();
        let mut keys = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client()
                .query()
                .table_name(&table)
                .index_name(OWNER_INDEX)
                .key_condition_expression("#o = :o")
                .expression_attribute_names("#o", lease_attr::LEASE_OWNER)
                .expression_attribute_values(":o", s(worker))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| unconditional(&table, "query_owner_index", e))?;
            keys.extend(page.items().iter().filter_map(|item| match item.get(lease_attr::LEASE_KEY) {
                Some(AttributeValue::S(k)) => Some(k.clone()),
                _ => None,
            }));
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(keys),
            }
        }
    }

    async fn renew_lease_3x(
        &self,
        lease: &Lease,
        me: &str,
        throughput_kbps: Option<f64>,
    ) -> Result<Renewal, LeaseError> {
        let table = self.table_name_owned();
        let handoff_known = lease.checkpoint_owner.as_deref() == Some(me);
        let mut e = Expressions::default();
        let counter = e.name(lease_attr::LEASE_COUNTER);
        let seen = e.value("seen", number(lease.counter));
        let next = e.value("next", number(next_counter(&table, lease)?));
        let mut update = format!("SET {counter} = {next}");
        if let Some(kbps) = throughput_kbps {
            let name = e.name(attr::THROUGHPUT);
            let value = e.value("tp", AttributeValue::N(format_number((kbps * 1e6).round() / 1e6)));
            update.push_str(&format!(", {name} = {value}"));
        }
        let mut condition = format!("{counter} = {seen}");
        if !handoff_known {
            let checkpoint_owner = e.name(lease_attr::CHECKPOINT_OWNER);
            condition.push_str(&format!(" AND attribute_not_exists({checkpoint_owner})"));
        }
        let result = self
            .client()
            .update_item()
            .table_name(&table)
            .key(lease_attr::LEASE_KEY, s(&lease.key))
            .update_expression(update)
            .condition_expression(condition)
            .set_expression_attribute_names(Some(e.names))
            .set_expression_attribute_values(Some(e.values))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let old_item = match result {
            Ok(_) => return Ok(Renewal::Renewed),
            Err(err) => {
                let returned = match err.as_service_error() {
                    Some(
                        aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(c),
                    ) => c.item().cloned(),
                    _ => None,
                };
                match classify(&table, "renew_lease", err) {
                    Failure::ConditionFailed => returned,
                    Failure::Error(e) => return Err(e),
                }
            }
        };
        // Not every DynamoDB returns the old item on a failed condition: read it then.
        let current = match old_item {
            Some(item) if !item.is_empty() => lease_from_item(&table, &item)?,
            _ => crate::lease::LeaseStore::get_lease(self, &lease.key).await?,
        };
        Ok(classify_failed_renewal(lease, me, current))
    }

    async fn assign_lease(&self, lease: &Lease, new_owner: &str) -> Result<Option<Lease>, LeaseError> {
        let mut e = Expressions::default();
        let lease_key = e.name(lease_attr::LEASE_KEY);
        let owner_condition = equals_or_absent(&mut e, lease_attr::LEASE_OWNER, "cur", lease.owner.as_deref());
        let checkpoint_owner_condition =
            equals_or_absent(&mut e, lease_attr::CHECKPOINT_OWNER, "cpo", lease.checkpoint_owner.as_deref());
        let owner = e.name(lease_attr::LEASE_OWNER);
        let checkpoint_owner = e.name(lease_attr::CHECKPOINT_OWNER);
        let counter = e.name(lease_attr::LEASE_COUNTER);
        let new = e.value("new", s(new_owner));
        let one = e.value("one", number(1));
        let mut update = format!("SET {owner} = {new} REMOVE {checkpoint_owner} ADD {counter} {one}");
        // The owner changes from the worker that last processed the lease: the old owner
        // (`checkpointOwner` mid hand-off, else `leaseOwner`).
        let previous = lease.checkpoint_owner.as_deref().or(lease.owner.as_deref());
        if previous.is_some_and(|p| p != new_owner) {
            let switches = e.name(lease_attr::OWNER_SWITCHES);
            update.push_str(&format!(", {switches} {one}"));
        }
        let condition = format!("attribute_exists({lease_key}) AND {owner_condition} AND {checkpoint_owner_condition}");
        self.update_returning_new(&lease.key, "assign_lease", update, condition, e).await
    }

    async fn initiate_handoff(&self, lease: &Lease, new_owner: &str) -> Result<Option<Lease>, LeaseError> {
        let Some(current) = lease.owner.as_deref() else { return Ok(None) };
        let mut e = Expressions::default();
        let lease_key = e.name(lease_attr::LEASE_KEY);
        let owner = e.name(lease_attr::LEASE_OWNER);
        let checkpoint_owner = e.name(lease_attr::CHECKPOINT_OWNER);
        let cur = e.value("cur", s(current));
        let new = e.value("new", s(new_owner));
        let update = format!("SET {owner} = {new}, {checkpoint_owner} = {cur}");
        let condition =
            format!("attribute_exists({lease_key}) AND {owner} = {cur} AND attribute_not_exists({checkpoint_owner})");
        self.update_returning_new(&lease.key, "initiate_handoff", update, condition, e).await
    }
}

/// What a failed renew condition means, given the lease as stored now (`None`: deleted).
#[must_use]
pub fn classify_failed_renewal(lease: &Lease, me: &str, current: Option<Lease>) -> Renewal {
    let Some(current) = current else { return Renewal::Lost };
    let handoff_to_other = current.checkpoint_owner.as_deref() == Some(me) && current.owner.as_deref() != Some(me);
    if handoff_to_other && current.counter == lease.counter {
        return Renewal::HandoffRequested(Box::new(current));
    }
    let actual_owner = current.checkpoint_owner.as_deref().or(current.owner.as_deref());
    if actual_owner == Some(me) && Some(current.counter) == lease.counter.checked_add(1) {
        // Our own renewal applied, its response lost and the SDK retried.
        return Renewal::Renewed;
    }
    Renewal::Lost
}

/// Attribute map helper for tests and fakes: the lease as an item.
#[must_use]
pub fn lease_item(lease: &Lease) -> HashMap<String, AttributeValue> {
    crate::lease::dynamodb::lease_to_item(lease)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sequence::{ExtendedSequenceNumber, Position};

    fn lease(owner: Option<&str>, checkpoint_owner: Option<&str>, counter: u64) -> Lease {
        let mut l = Lease::new("shardId-1", ExtendedSequenceNumber::new(Position::TrimHorizon));
        l.owner = owner.map(str::to_owned);
        l.checkpoint_owner = checkpoint_owner.map(str::to_owned);
        l.counter = counter;
        l
    }

    #[test]
    fn failed_renewals_are_classified_like_java() {
        let mine = lease(Some("a"), None, 5);
        let handoff = lease(Some("b"), Some("a"), 5);
        assert_eq!(
            classify_failed_renewal(&mine, "a", Some(handoff.clone())),
            Renewal::HandoffRequested(Box::new(handoff))
        );
        assert_eq!(classify_failed_renewal(&mine, "a", Some(lease(Some("a"), None, 6))), Renewal::Renewed);
        assert_eq!(classify_failed_renewal(&mine, "a", Some(lease(Some("b"), None, 6))), Renewal::Lost);
        assert_eq!(classify_failed_renewal(&mine, "a", Some(lease(Some("a"), None, 9))), Renewal::Lost);
        assert_eq!(classify_failed_renewal(&mine, "a", None), Renewal::Lost);
        // Mid hand-off, our renewals are conditioned on the counter only; a retried one that
        // applied shows us as checkpointOwner at counter + 1.
        let adopted = lease(Some("b"), Some("a"), 6);
        assert_eq!(classify_failed_renewal(&adopted, "a", Some(lease(Some("b"), Some("a"), 7))), Renewal::Renewed);
    }
}
