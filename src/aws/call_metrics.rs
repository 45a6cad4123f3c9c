//! One SDK interceptor on every client (Kinesis, DynamoDB, CloudWatch) that times each call
//! and classifies its failure, so `/metrics` shows the latency and errors of *every* AWS call —
//! lease renewals, scans, shard listing, fan-out registration, SubscribeToShard — not only the
//! ones a caller chose to report.
//!
//! - A call is timed from the SDK's hook before serialization (`read_before_serialization`,
//!   the first that sees the operation's name) to its last
//!   (`read_after_execution`): serialization, signing, the SDK's own retries and
//!   deserialization included.
//! - A call that its caller abandons (a `tokio::time::timeout` around it, a cancelled task)
//!   never reaches the last hook. A [`CallTimer`] kept in the call's config bag records it on
//!   drop as [`CallErrorClass::Transient`], so timeouts of ours are counted too.
//! - The failure class comes from the service's error code (the modelled error variant, via
//!   [`ProvideErrorMetadata::code`]), else from the kind of failure (timeout, connection,
//!   unparseable response), else from the HTTP status. Never from message text.
//!
//! The interceptor only *records* ([`crate::telemetry::record`], a no-op without a recorder);
//! decisions (retry, back off, end the shard) stay with the callers' own classification.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeSerializationInterceptorContextRef, Error as ErasedError, FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::{Metadata, OrchestratorError};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::telemetry::{self, CallErrorClass, Event, Service};

/// The interceptor; one per client, naming the client's service.
#[derive(Debug, Clone, Copy)]
pub struct CallMetrics {
    service: Service,
}

impl CallMetrics {
    /// An interceptor for `service`'s client.
    #[must_use]
    pub fn new(service: Service) -> Self {
        Self { service }
    }
}

/// The per-call state kept in the call's config bag.
#[derive(Debug)]
struct CallTimer {
    service: Service,
    operation: &'static str,
    started: Instant,
    finished: AtomicBool,
}

impl Storable for CallTimer {
    type Storer = StoreReplace<Self>;
}

impl CallTimer {
    fn finish(&self, error: Option<CallErrorClass>) {
        if !self.finished.swap(true, Ordering::AcqRel) {
            telemetry::record(Event::SdkCall {
                service: self.service,
                operation: self.operation,
                duration: self.started.elapsed(),
                error,
            });
        }
    }
}

impl Drop for CallTimer {
    fn drop(&mut self) {
        // Abandoned by its caller before the SDK finished (our own timeouts, cancellation).
        self.finish(Some(CallErrorClass::Transient));
    }
}

impl Intercept for CallMetrics {
    fn name(&self) -> &'static str {
        "multilangd::CallMetrics"
    }

    // Not `read_before_execution`: a client interceptor runs that hook before the operation's
    // configuration (with its `Metadata`) is in the bag.
    fn read_before_serialization(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let operation = cfg.load::<Metadata>().map_or("Unknown", |m| operation_name(m.name()));
        cfg.interceptor_state().store_put(CallTimer {
            service: self.service,
            operation,
            started: Instant::now(),
            finished: AtomicBool::new(false),
        });
        Ok(())
    }

    fn read_after_execution(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(timer) = cfg.load::<CallTimer>() else { return Ok(()) };
        let status = context.response().map(|r| r.status().as_u16());
        let error = match context.output_or_error() {
            Some(Ok(_)) => None,
            Some(Err(err)) => Some(classify(err, status)),
            // No output and no error: the orchestrator stopped early; count it as a failure.
            None => Some(CallErrorClass::Other),
        };
        timer.finish(error);
        Ok(())
    }
}

/// The class of a failed call (see the module docs for the order of evidence).
fn classify(err: &OrchestratorError<ErasedError>, status: Option<u16>) -> CallErrorClass {
    if let Some(code) = err.as_operation_error().and_then(error_code) {
        return class_of_code(code);
    }
    if err.is_timeout_error() || err.is_connector_error() || err.is_response_error() {
        return CallErrorClass::Transient;
    }
    match status {
        Some(429) => CallErrorClass::Throttled,
        Some(s) if s >= 500 => CallErrorClass::Transient,
        Some(404) => CallErrorClass::NotFound,
        _ => CallErrorClass::Other,
    }
}

/// The class of a service error code (Kinesis, DynamoDB and CloudWatch codes).
fn class_of_code(code: &str) -> CallErrorClass {
    match code {
        "ProvisionedThroughputExceededException"
        | "ThrottlingException"
        | "Throttling"
        | "LimitExceededException"
        | "RequestLimitExceeded"
        | "KMSThrottlingException"
        | "TooManyRequestsException" => CallErrorClass::Throttled,
        "ConditionalCheckFailedException" | "TransactionConflictException" => CallErrorClass::Conflict,
        "ResourceNotFoundException" => CallErrorClass::NotFound,
        "ExpiredIteratorException" | "ExpiredNextTokenException" => CallErrorClass::Iterator,
        "InternalFailureException"
        | "InternalFailure"
        | "InternalServerError"
        | "ServiceUnavailable"
        | "ServiceUnavailableException"
        | "ResourceInUseException" => CallErrorClass::Transient,
        _ => CallErrorClass::Other,
    }
}

/// The modelled error code of an operation error, for the operations multilangd calls.
fn error_code(err: &ErasedError) -> Option<&str> {
    macro_rules! code_of {
        ($($error:ty),* $(,)?) => {
            $(
                if let Some(e) = err.downcast_ref::<$error>() {
                    return e.code();
                }
            )*
        };
    }
    {
        use aws_sdk_kinesis::operation as k;
        code_of!(
            k::get_records::GetRecordsError,
            k::get_shard_iterator::GetShardIteratorError,
            k::list_shards::ListShardsError,
            k::subscribe_to_shard::SubscribeToShardError,
            k::describe_stream_summary::DescribeStreamSummaryError,
            k::describe_stream_consumer::DescribeStreamConsumerError,
            k::register_stream_consumer::RegisterStreamConsumerError,
        );
    }
    {
        use aws_sdk_dynamodb::operation as d;
        code_of!(
            d::update_item::UpdateItemError,
            d::get_item::GetItemError,
            d::put_item::PutItemError,
            d::delete_item::DeleteItemError,
            d::scan::ScanError,
            d::query::QueryError,
            d::describe_table::DescribeTableError,
            d::create_table::CreateTableError,
            d::update_table::UpdateTableError,
            d::list_tables::ListTablesError,
        );
    }
    code_of!(aws_sdk_cloudwatch::operation::put_metric_data::PutMetricDataError);
    None
}

/// A static label for an operation name (metric labels are `&'static str`); operations
/// multilangd does not call map to `Other`.
fn operation_name(name: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "GetRecords",
        "GetShardIterator",
        "ListShards",
        "SubscribeToShard",
        "DescribeStreamSummary",
        "DescribeStreamConsumer",
        "RegisterStreamConsumer",
        "UpdateItem",
        "GetItem",
        "PutItem",
        "DeleteItem",
        "Scan",
        "Query",
        "DescribeTable",
        "CreateTable",
        "UpdateTable",
        "ListTables",
        "PutMetricData",
    ];
    KNOWN.iter().find(|k| **k == name).copied().unwrap_or("Other")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_classes() {
        assert_eq!(class_of_code("ProvisionedThroughputExceededException"), CallErrorClass::Throttled);
        assert_eq!(class_of_code("LimitExceededException"), CallErrorClass::Throttled);
        assert_eq!(class_of_code("ConditionalCheckFailedException"), CallErrorClass::Conflict);
        assert_eq!(class_of_code("ResourceNotFoundException"), CallErrorClass::NotFound);
        assert_eq!(class_of_code("ExpiredIteratorException"), CallErrorClass::Iterator);
        assert_eq!(class_of_code("InternalFailure"), CallErrorClass::Transient);
        assert_eq!(class_of_code("AccessDeniedException"), CallErrorClass::Other);
    }

    #[test]
    fn unknown_operations_are_other() {
        assert_eq!(operation_name("UpdateItem"), "UpdateItem");
        assert_eq!(operation_name("DeleteStream"), "Other");
    }
}
