//! Classifying Kinesis SDK errors: the one place that decides whether a failed call is
//! retried, backs off, re-creates an iterator, ends the shard, or is surfaced.
//!
//! The retrieval code (polling and fan-out) and the shard lister call [`classify`] (or, for
//! the errors that arrive inside a SubscribeToShard event stream, [`classify_event_stream`])
//! and act on the [`ErrorClass`]; none of them inspects error codes itself.
//! Clients used with this module should have the SDK's own retries turned off
//! ([`super::kinesis::without_sdk_retries`]) so that the KCL-style backoff here is in charge.
//!
//! Emulator note: kinesis-local answers GetRecords with a malformed iterator with an HTTP 500
//! and an empty body (real Kinesis: 400 `InvalidArgumentException`). For GetRecords, a 5xx
//! without an error code is therefore classed [`ErrorClass::InvalidIterator`]: the reader gets a
//! fresh iterator, which is also a harmless reaction to a genuine server error.

use std::error::Error as StdError;

use aws_sdk_kinesis::config::http::HttpResponse;
use aws_sdk_kinesis::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::operation::subscribe_to_shard::SubscribeToShardError;
use aws_sdk_kinesis::types::error::SubscribeToShardEventStreamError;
use aws_smithy_types::event_stream::RawMessage;

/// What to do about a failed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Throttled (`ProvisionedThroughputExceededException`, `LimitExceededException`,
    /// `KMSThrottlingException`, HTTP 429): back off exponentially and retry.
    Throttled,
    /// A transient failure (5xx, `InternalFailureException`, `ResourceInUseException`,
    /// timeouts, connection and I/O errors): back off and retry.
    Transient,
    /// The shard iterator or pagination token expired (`ExpiredIteratorException`,
    /// `ExpiredNextTokenException`): get a new one and retry.
    ExpiredIterator,
    /// The shard iterator was rejected (GetRecords `InvalidArgumentException`, or a 5xx without
    /// an error code from GetRecords, see the module docs): get a new one, after a backoff.
    InvalidIterator,
    /// `ResourceNotFoundException`: the stream or shard is gone.
    NotFound,
    /// Anything else (access denied, KMS errors, invalid arguments, request construction):
    /// retrying will not help by itself; surface it.
    Fatal,
}

/// The Kinesis operation that failed (classification depends on it in a few cases).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `GetShardIterator`.
    GetShardIterator,
    /// `GetRecords`.
    GetRecords,
    /// `ListShards`.
    ListShards,
    /// `SubscribeToShard` (enhanced fan-out).
    SubscribeToShard,
    /// `DescribeStreamSummary` (fan-out consumer registration).
    DescribeStreamSummary,
    /// `DescribeStreamConsumer` (fan-out consumer registration).
    DescribeStreamConsumer,
    /// `RegisterStreamConsumer` (fan-out consumer registration).
    RegisterStreamConsumer,
}

impl Operation {
    /// The API name, for messages.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::GetShardIterator => "GetShardIterator",
            Self::GetRecords => "GetRecords",
            Self::ListShards => "ListShards",
            Self::SubscribeToShard => "SubscribeToShard",
            Self::DescribeStreamSummary => "DescribeStreamSummary",
            Self::DescribeStreamConsumer => "DescribeStreamConsumer",
            Self::RegisterStreamConsumer => "RegisterStreamConsumer",
        }
    }
}

/// Classifies an error returned by a Kinesis call.
#[must_use]
pub fn classify<E>(operation: Operation, error: &SdkError<E, HttpResponse>) -> ErrorClass
where
    E: ProvideErrorMetadata,
{
    match error {
        SdkError::ConstructionFailure(_) => ErrorClass::Fatal,
        SdkError::TimeoutError(_) => ErrorClass::Transient,
        SdkError::DispatchFailure(failure) => {
            if failure.is_user() {
                ErrorClass::Fatal
            } else {
                ErrorClass::Transient
            }
        }
        SdkError::ResponseError(context) => by_status(operation, context.raw().status().as_u16()),
        SdkError::ServiceError(context) => match context.err().code() {
            Some(code) => by_code(operation, code, context.raw().status().as_u16()),
            None => by_status(operation, context.raw().status().as_u16()),
        },
        // `SdkError` is non-exhaustive; a future kind of failure is not known to be retryable.
        _ => ErrorClass::Fatal,
    }
}

/// Classifies a failed `SubscribeToShard` call (the HTTP exchange before the first event), by
/// the modelled error variant; unmodelled errors fall back to [`classify`].
///
/// `ResourceInUseException` (another subscription to the same consumer and shard is active, e.g.
/// the previous owner's after a lease moved, or the consumer is not ACTIVE yet) is
/// [`ErrorClass::Transient`]; `LimitExceededException` (1 subscribe per second per consumer and
/// shard) is [`ErrorClass::Throttled`].
#[must_use]
pub fn classify_subscribe(error: &SdkError<SubscribeToShardError, HttpResponse>) -> ErrorClass {
    let SdkError::ServiceError(context) = error else {
        return classify(Operation::SubscribeToShard, error);
    };
    match context.err() {
        SubscribeToShardError::ResourceNotFoundException(_) => ErrorClass::NotFound,
        SubscribeToShardError::ResourceInUseException(_) | SubscribeToShardError::InternalFailureException(_) => {
            ErrorClass::Transient
        }
        SubscribeToShardError::LimitExceededException(_) | SubscribeToShardError::KmsThrottlingException(_) => {
            ErrorClass::Throttled
        }
        SubscribeToShardError::AccessDeniedException(_)
        | SubscribeToShardError::DryRunOperationException(_)
        | SubscribeToShardError::InvalidArgumentException(_)
        | SubscribeToShardError::KmsDisabledException(_)
        | SubscribeToShardError::KmsInvalidStateException(_)
        | SubscribeToShardError::KmsAccessDeniedException(_)
        | SubscribeToShardError::KmsNotFoundException(_)
        | SubscribeToShardError::KmsOptInRequired(_) => ErrorClass::Fatal,
        _ => classify(Operation::SubscribeToShard, error),
    }
}

/// Classifies an error received from a SubscribeToShard event stream (`recv()`), by variant:
/// in-stream exceptions carry no error code (`code()` is `None`), so codes cannot be used.
///
/// Transport failures (connection reset, HTTP/2 `GOAWAY`, dispatch failures), timeouts and
/// undecodable messages are [`ErrorClass::Transient`]: the subscription is re-established.
#[must_use]
pub fn classify_event_stream(error: &SdkError<SubscribeToShardEventStreamError, RawMessage>) -> ErrorClass {
    match error {
        SdkError::ServiceError(context) => match context.err() {
            SubscribeToShardEventStreamError::ResourceNotFoundException(_) => ErrorClass::NotFound,
            SubscribeToShardEventStreamError::ResourceInUseException(_)
            | SubscribeToShardEventStreamError::InternalFailureException(_) => ErrorClass::Transient,
            SubscribeToShardEventStreamError::KmsThrottlingException(_) => ErrorClass::Throttled,
            SubscribeToShardEventStreamError::KmsDisabledException(_)
            | SubscribeToShardEventStreamError::KmsInvalidStateException(_)
            | SubscribeToShardEventStreamError::KmsAccessDeniedException(_)
            | SubscribeToShardEventStreamError::KmsNotFoundException(_)
            | SubscribeToShardEventStreamError::KmsOptInRequired(_) => ErrorClass::Fatal,
            // An exception this SDK does not model: the service's problem, worth another try.
            _ => ErrorClass::Transient,
        },
        SdkError::ConstructionFailure(_) => ErrorClass::Fatal,
        SdkError::DispatchFailure(failure) if failure.is_user() => ErrorClass::Fatal,
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => ErrorClass::Transient,
        _ => ErrorClass::Transient,
    }
}

/// True for `ResourceInUseException` from SubscribeToShard, before or inside the event stream:
/// the normal sign of a subscription handed over between workers (logged quietly).
#[must_use]
pub fn is_subscription_in_use(
    subscribe: Option<&SdkError<SubscribeToShardError, HttpResponse>>,
    in_stream: Option<&SdkError<SubscribeToShardEventStreamError, RawMessage>>,
) -> bool {
    let before =
        subscribe.and_then(SdkError::as_service_error).is_some_and(SubscribeToShardError::is_resource_in_use_exception);
    let inside = in_stream
        .and_then(SdkError::as_service_error)
        .is_some_and(SubscribeToShardEventStreamError::is_resource_in_use_exception);
    before || inside
}

/// An event-stream error and its sources on one line.
#[must_use]
pub fn describe_event_stream(error: &SdkError<SubscribeToShardEventStreamError, RawMessage>) -> String {
    DisplayErrorContext(error).to_string()
}

fn by_code(operation: Operation, code: &str, status: u16) -> ErrorClass {
    match code {
        "ProvisionedThroughputExceededException"
        | "LimitExceededException"
        | "KMSThrottlingException"
        | "ThrottlingException"
        | "Throttling"
        | "TooManyRequestsException"
        | "RequestLimitExceeded" => ErrorClass::Throttled,
        "ExpiredIteratorException" | "ExpiredNextTokenException" => ErrorClass::ExpiredIterator,
        "ResourceNotFoundException" => ErrorClass::NotFound,
        "InvalidArgumentException" if operation == Operation::GetRecords => ErrorClass::InvalidIterator,
        "ResourceInUseException"
        | "InternalFailureException"
        | "InternalFailure"
        | "ServiceUnavailable"
        | "ServiceUnavailableException"
        | "InternalServerError"
        | "RequestTimeout"
        | "RequestTimeoutException" => ErrorClass::Transient,
        _ if status >= 500 => ErrorClass::Transient,
        _ if status == 429 => ErrorClass::Throttled,
        _ => ErrorClass::Fatal,
    }
}

fn by_status(operation: Operation, status: u16) -> ErrorClass {
    match status {
        500..=599 if operation == Operation::GetRecords => ErrorClass::InvalidIterator,
        429 => ErrorClass::Throttled,
        // 5xx, or a body that could not be read/parsed: worth another try.
        _ => ErrorClass::Transient,
    }
}

/// The error and its sources on one line, for logs and [`super::StreamError`] messages.
#[must_use]
pub fn describe<E>(error: &SdkError<E, HttpResponse>) -> String
where
    E: StdError + 'static,
{
    let status = error.raw_response().map(|r| r.status().as_u16());
    let text = DisplayErrorContext(error).to_string();
    match status {
        Some(status) => format!("HTTP {status}: {text}"),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_kinesis::error::ErrorMetadata;
    use aws_sdk_kinesis::operation::get_records::GetRecordsError;
    use aws_sdk_kinesis::operation::list_shards::ListShardsError;
    use aws_smithy_runtime_api::client::result::ConnectorError;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;

    use super::*;

    fn response(status: u16) -> HttpResponse {
        HttpResponse::new(StatusCode::try_from(status).unwrap(), SdkBody::from(""))
    }

    fn service<E>(err: E, status: u16) -> SdkError<E, HttpResponse> {
        SdkError::service_error(err, response(status))
    }

    fn get_records_error(code: &str) -> GetRecordsError {
        GetRecordsError::generic(ErrorMetadata::builder().code(code).message("m").build())
    }

    #[test]
    fn service_error_codes() {
        let cases = [
            ("ProvisionedThroughputExceededException", 400, ErrorClass::Throttled),
            ("LimitExceededException", 400, ErrorClass::Throttled),
            ("KMSThrottlingException", 400, ErrorClass::Throttled),
            ("ExpiredIteratorException", 400, ErrorClass::ExpiredIterator),
            ("InvalidArgumentException", 400, ErrorClass::InvalidIterator),
            ("ResourceNotFoundException", 400, ErrorClass::NotFound),
            ("ResourceInUseException", 400, ErrorClass::Transient),
            ("InternalFailureException", 500, ErrorClass::Transient),
            ("SomethingNew", 503, ErrorClass::Transient),
            ("SomethingNew", 429, ErrorClass::Throttled),
            ("AccessDeniedException", 400, ErrorClass::Fatal),
            ("KMSAccessDeniedException", 400, ErrorClass::Fatal),
        ];
        for (code, status, class) in cases {
            let err = service(get_records_error(code), status);
            assert_eq!(classify(Operation::GetRecords, &err), class, "{code}");
        }
    }

    #[test]
    fn invalid_argument_is_an_iterator_problem_only_for_get_records() {
        let err = ListShardsError::generic(ErrorMetadata::builder().code("InvalidArgumentException").build());
        assert_eq!(classify(Operation::ListShards, &service(err, 400)), ErrorClass::Fatal);
        let err = ListShardsError::generic(ErrorMetadata::builder().code("ExpiredNextTokenException").build());
        assert_eq!(classify(Operation::ListShards, &service(err, 400)), ErrorClass::ExpiredIterator);
    }

    #[test]
    fn codeless_server_errors() {
        // kinesis-local's answer to a malformed iterator: HTTP 500, empty body.
        let err = service(GetRecordsError::generic(ErrorMetadata::builder().build()), 500);
        assert_eq!(classify(Operation::GetRecords, &err), ErrorClass::InvalidIterator);
        let err = ListShardsError::generic(ErrorMetadata::builder().build());
        assert_eq!(classify(Operation::ListShards, &service(err, 500)), ErrorClass::Transient);
        let err: SdkError<GetRecordsError, HttpResponse> = SdkError::response_error("unparsable", response(502));
        assert_eq!(classify(Operation::GetRecords, &err), ErrorClass::InvalidIterator);
        assert_eq!(classify(Operation::GetShardIterator, &err), ErrorClass::Transient);
    }

    #[test]
    fn transport_failures() {
        let io: SdkError<GetRecordsError, HttpResponse> =
            SdkError::dispatch_failure(ConnectorError::io(std::io::Error::other("reset").into()));
        assert_eq!(classify(Operation::GetRecords, &io), ErrorClass::Transient);
        let timeout: SdkError<GetRecordsError, HttpResponse> = SdkError::timeout_error("slow");
        assert_eq!(classify(Operation::GetRecords, &timeout), ErrorClass::Transient);
        let user: SdkError<GetRecordsError, HttpResponse> =
            SdkError::dispatch_failure(ConnectorError::user("bad endpoint".into()));
        assert_eq!(classify(Operation::GetRecords, &user), ErrorClass::Fatal);
        let build: SdkError<GetRecordsError, HttpResponse> = SdkError::construction_failure("missing field");
        assert_eq!(classify(Operation::GetRecords, &build), ErrorClass::Fatal);
    }

    #[test]
    fn event_stream_errors_by_variant_not_code() {
        use aws_sdk_kinesis::types::error::{
            InternalFailureException, KmsAccessDeniedException, ResourceInUseException, ResourceNotFoundException,
        };
        type E = SubscribeToShardEventStreamError;
        let in_stream = |e: E| SdkError::<E, RawMessage>::service_error(e, RawMessage::invalid(None));
        let cases = [
            (in_stream(E::ResourceInUseException(ResourceInUseException::builder().build())), ErrorClass::Transient),
            (
                in_stream(E::ResourceNotFoundException(ResourceNotFoundException::builder().build())),
                ErrorClass::NotFound,
            ),
            (
                in_stream(E::InternalFailureException(InternalFailureException::builder().build())),
                ErrorClass::Transient,
            ),
            (in_stream(E::KmsAccessDeniedException(KmsAccessDeniedException::builder().build())), ErrorClass::Fatal),
            (
                SdkError::dispatch_failure(ConnectorError::io(std::io::Error::other("GOAWAY").into())),
                ErrorClass::Transient,
            ),
            (SdkError::response_error("bad frame", RawMessage::invalid(None)), ErrorClass::Transient),
        ];
        for (error, class) in cases {
            // In-stream exceptions carry no error code: the variant decides.
            assert_eq!(classify_event_stream(&error), class, "{error:?}");
        }
        let in_use = in_stream(E::ResourceInUseException(ResourceInUseException::builder().build()));
        assert!(is_subscription_in_use(None, Some(&in_use)));
        let other = in_stream(E::InternalFailureException(InternalFailureException::builder().build()));
        assert!(!is_subscription_in_use(None, Some(&other)));
    }

    #[test]
    fn subscribe_errors_by_variant() {
        use aws_sdk_kinesis::types::error::{LimitExceededException, ResourceInUseException};
        let limit = SubscribeToShardError::LimitExceededException(LimitExceededException::builder().build());
        assert_eq!(classify_subscribe(&service(limit, 400)), ErrorClass::Throttled);
        let in_use =
            service(SubscribeToShardError::ResourceInUseException(ResourceInUseException::builder().build()), 400);
        assert_eq!(classify_subscribe(&in_use), ErrorClass::Transient);
        assert!(is_subscription_in_use(Some(&in_use), None));
        let unmodelled = SubscribeToShardError::generic(ErrorMetadata::builder().code("AccessDeniedException").build());
        assert_eq!(classify_subscribe(&service(unmodelled, 400)), ErrorClass::Fatal);
        let io: SdkError<SubscribeToShardError, HttpResponse> =
            SdkError::dispatch_failure(ConnectorError::io(std::io::Error::other("reset").into()));
        assert_eq!(classify_subscribe(&io), ErrorClass::Transient);
    }

    #[test]
    fn describe_includes_status_and_message() {
        let err = service(get_records_error("ExpiredIteratorException"), 400);
        let text = describe(&err);
        assert!(text.starts_with("HTTP 400"), "{text}");
        assert!(text.contains("ExpiredIteratorException"), "{text}");
    }
}
