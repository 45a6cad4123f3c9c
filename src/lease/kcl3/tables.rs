//! Creating the 3.x side tables: one string partition key, on-demand (as Java's defaults),
//! waiting until ACTIVE. `ResourceInUseException` on create means another worker created it.

use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TableStatus,
};
use aws_sdk_dynamodb::Client;
use tracing::{debug, info};

use crate::lease::dynamodb::{build_error, classify, unconditional, Failure};
use crate::lease::LeaseError;

/// First pause between DescribeTable polls; doubles up to [`POLL_MAX`].
const POLL_INITIAL: Duration = Duration::from_millis(50);
/// Longest pause between DescribeTable polls.
const POLL_MAX: Duration = Duration::from_secs(1);

/// DescribeTable: `Ok(None)` when the table does not exist.
///
/// # Errors
/// Throttling or any other DynamoDB failure.
pub async fn table_status(client: &Client, table: &str) -> Result<Option<TableStatus>, LeaseError> {
    match client.describe_table().table_name(table).send().await {
        Ok(out) => Ok(Some(
            out.table().and_then(|t| t.table_status().cloned()).unwrap_or_else(|| TableStatus::from("UNKNOWN")),
        )),
        Err(e) => match classify(table, "describe_table", e) {
            Failure::Error(LeaseError::TableMissing { .. }) => Ok(None),
            Failure::Error(e) => Err(e),
            Failure::ConditionFailed => Err(crate::lease::dynamodb::unexpected_condition(table, "describe_table")),
        },
    }
}

/// Creates `table` (partition key `key_attribute` S, PAY_PER_REQUEST) unless it exists, and
/// waits until it is ACTIVE (or UPDATING). Returns true if this call created it.
///
/// # Errors
/// DynamoDB failures, or the table not becoming ACTIVE within `timeout`.
pub async fn ensure_table(
    client: &Client,
    table: &str,
    key_attribute: &str,
    timeout: Duration,
) -> Result<bool, LeaseError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut created = false;
    let mut pause = POLL_INITIAL;
    loop {
        match table_status(client, table).await? {
            None => created |= create_table(client, table, key_attribute).await?,
            Some(TableStatus::Active | TableStatus::Updating) => return Ok(created),
            Some(status) => debug!(table, ?status, "waiting for the table to become ACTIVE"),
        }
        if tokio::time::Instant::now() + pause > deadline {
            return Err(LeaseError::Dependency {
                table: table.to_owned(),
                operation: "ensure_table",
                message: format!("table did not become ACTIVE within {timeout:?}"),
            });
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(POLL_MAX);
    }
}

async fn create_table(client: &Client, table: &str, key_attribute: &str) -> Result<bool, LeaseError> {
    let key = KeySchemaElement::builder()
        .attribute_name(key_attribute)
        .key_type(KeyType::Hash)
        .build()
        .map_err(|e| build_error(table, "create_table", &e))?;
    let definition = AttributeDefinition::builder()
        .attribute_name(key_attribute)
        .attribute_type(ScalarAttributeType::S)
        .build()
        .map_err(|e| build_error(table, "create_table", &e))?;
    let result = client
        .create_table()
        .table_name(table)
        .key_schema(key)
        .attribute_definitions(definition)
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await;
    match result {
        Ok(_) => {
            info!(table, "created table");
            Ok(true)
        }
        Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_in_use_exception()) => Ok(false),
        Err(e) => Err(unconditional(table, "create_table", e)),
    }
}
