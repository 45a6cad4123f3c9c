//! Enhanced fan-out consumer registration: the consumer ARN every subscription of this worker
//! uses, found or registered once per stream.
//!
//! Sequence (as the Java KCL's `FanOutConsumerRegistration`, with real backoff):
//! 1. `fanoutConfig.consumerArn` set → used as is; nothing is called.
//! 2. The stream ARN: `streamArn` when configured, else `DescribeStreamSummary`.
//! 3. `DescribeStreamConsumer(streamARN, consumerName)`; if it does not exist,
//!    `RegisterStreamConsumer`. `ResourceInUseException` from the register call means another
//!    worker registered the same name at the same moment: describe again.
//! 4. Until the consumer is `ACTIVE`: `DescribeStreamConsumer` again, up to
//!    `fanoutConfig.maxDescribeStreamConsumerRetries` times.
//!
//! Throttled and transient failures are retried with exponential backoff and jitter starting
//! at `fanoutConfig.retryBackoffMillis` (Java retries `LimitExceededException` from
//! RegisterStreamConsumer without sleeping), each call at most its `fanoutConfig.*Retries`
//! times. A failed registration is not cached: the next shard that opens a reader tries again.
//!
//! The consumer is never deregistered: every worker of the application shares it. To remove it
//! after the application is retired: `aws kinesis deregister-stream-consumer --stream-arn <ARN>
//! --consumer-name <name>` (see docs/operations.md).

use std::time::Duration;

use aws_sdk_kinesis::types::ConsumerStatus;
use aws_sdk_kinesis::Client;
use tokio::sync::Mutex;

use super::super::errors::{classify, describe, ErrorClass, Operation};
use super::super::kinesis::{without_sdk_retries, StreamRef};
use crate::backoff::{Backoff, BackoffPolicy};

/// Registration settings (`fanoutConfig.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationSettings {
    /// `fanoutConfig.consumerArn`: skip registration and use this consumer.
    pub consumer_arn: Option<String>,
    /// `fanoutConfig.consumerName` (default: applicationName).
    pub consumer_name: String,
    /// `fanoutConfig.maxDescribeStreamSummaryRetries`.
    pub max_describe_stream_summary_retries: u32,
    /// `fanoutConfig.maxDescribeStreamConsumerRetries` (also the number of ACTIVE checks).
    pub max_describe_stream_consumer_retries: u32,
    /// `fanoutConfig.registerStreamConsumerRetries`.
    pub register_stream_consumer_retries: u32,
    /// `fanoutConfig.retryBackoffMillis`: first retry delay, and the pace of ACTIVE checks.
    pub retry_backoff: Duration,
}

impl RegistrationSettings {
    /// The settings of a daemon configuration.
    #[must_use]
    pub fn from_config(config: &crate::config::Config) -> Self {
        let f = &config.fan_out;
        Self {
            consumer_arn: f.consumer_arn.clone(),
            consumer_name: f.consumer_name.clone(),
            max_describe_stream_summary_retries: f.max_describe_stream_summary_retries,
            max_describe_stream_consumer_retries: f.max_describe_stream_consumer_retries,
            register_stream_consumer_retries: f.register_stream_consumer_retries,
            retry_backoff: f.retry_backoff,
        }
    }
}

/// Why no consumer ARN could be obtained.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RegistrationError {
    /// A call failed for good (non-retryable, or retries exhausted).
    #[error("enhanced fan-out consumer {consumer:?}: {operation} failed after {attempts} attempt(s): {message}")]
    Call {
        /// The consumer name.
        consumer: String,
        /// The API call.
        operation: &'static str,
        /// Attempts made.
        attempts: u32,
        /// The last error.
        message: String,
    },
    /// The consumer did not become ACTIVE in time.
    #[error(
        "enhanced fan-out consumer {consumer:?} is still {status} after {checks} checks; \
         raise fanoutConfig.maxDescribeStreamConsumerRetries or fanoutConfig.retryBackoffMillis"
    )]
    NotActive {
        /// The consumer name.
        consumer: String,
        /// Its last status.
        status: String,
        /// Checks made.
        checks: u32,
    },
}

/// The consumer ARN of one stream, looked up or registered once and then shared.
#[derive(Debug)]
pub struct ConsumerRegistration {
    client: Client,
    stream: StreamRef,
    settings: RegistrationSettings,
    /// The consumer ARN once obtained.
    arn: Mutex<Option<String>>,
}

/// Whether a consumer still exists (see [`ConsumerRegistration::check`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumerCheck {
    /// It exists.
    Exists,
    /// It is gone (deregistered); the cached ARN was forgotten, so the next
    /// [`ConsumerRegistration::consumer_arn`] registers it again.
    Missing,
    /// It could not be told (the call failed).
    Unknown,
}

/// A consumer as described.
struct Described {
    arn: String,
    status: ConsumerStatus,
}

impl ConsumerRegistration {
    /// Registration for `stream` with `client` (its SDK retries are switched off).
    #[must_use]
    pub fn new(client: &Client, stream: StreamRef, settings: RegistrationSettings) -> Self {
        Self { client: without_sdk_retries(client), stream, settings, arn: Mutex::new(None) }
    }

    /// The consumer name.
    #[must_use]
    pub fn consumer_name(&self) -> &str {
        &self.settings.consumer_name
    }

    /// The consumer ARN: cached after the first success; otherwise found or registered now.
    /// Concurrent callers wait for one registration.
    ///
    /// # Errors
    /// A [`RegistrationError`] when the calls fail or the consumer does not become ACTIVE.
    pub async fn consumer_arn(&self) -> Result<String, RegistrationError> {
        let mut cached = self.arn.lock().await;
        if let Some(arn) = cached.as_ref() {
            return Ok(arn.clone());
        }
        let arn = self.obtain().await?;
        *cached = Some(arn.clone());
        Ok(arn)
    }

    /// Whether the consumer `arn` still exists. A subscription's `ResourceNotFoundException`
    /// means either that the shard is gone or that the consumer is: only the first may end the
    /// shard (Java ends it either way, so deregistering the consumer would mark every held
    /// shard `SHARD_END`).
    pub async fn check(&self, arn: &str) -> ConsumerCheck {
        match self.client.describe_stream_consumer().consumer_arn(arn).send().await {
            Ok(_) => ConsumerCheck::Exists,
            Err(error) if classify(Operation::DescribeStreamConsumer, &error) == ErrorClass::NotFound => {
                let mut cached = self.arn.lock().await;
                if cached.as_deref() == Some(arn) {
                    *cached = None;
                }
                if self.settings.consumer_arn.is_some() {
                    tracing::error!(consumer_arn = arn, "the configured fanoutConfig.consumerArn does not exist");
                    return ConsumerCheck::Unknown;
                }
                ConsumerCheck::Missing
            }
            Err(error) => {
                tracing::warn!(error = %describe(&error), "cannot tell whether the fan-out consumer exists");
                ConsumerCheck::Unknown
            }
        }
    }

    async fn obtain(&self) -> Result<String, RegistrationError> {
        if let Some(arn) = &self.settings.consumer_arn {
            tracing::info!(consumer_arn = %arn, "using the configured enhanced fan-out consumer");
            return Ok(arn.clone());
        }
        let stream_arn = match &self.stream.arn {
            Some(arn) => arn.clone(),
            None => self.describe_stream_summary().await?,
        };
        let name = &self.settings.consumer_name;
        let described = match self.describe_consumer(&stream_arn).await? {
            Some(found) => found,
            None => self.register(&stream_arn).await?,
        };
        let arn = self.wait_active(&stream_arn, described).await?;
        tracing::info!(consumer = %name, consumer_arn = %arn, "enhanced fan-out consumer is ACTIVE");
        Ok(arn)
    }

    fn backoff(&self) -> Backoff {
        Backoff::new(BackoffPolicy::calls(self.settings.retry_backoff, self.settings.retry_backoff.saturating_mul(10)))
    }

    fn failed(&self, operation: Operation, attempts: u32, message: String) -> RegistrationError {
        RegistrationError::Call {
            consumer: self.settings.consumer_name.clone(),
            operation: operation.name(),
            attempts,
            message,
        }
    }

    async fn describe_stream_summary(&self) -> Result<String, RegistrationError> {
        let mut backoff = self.backoff();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = self.client.describe_stream_summary().stream_name(&self.stream.name).send().await;
            match result {
                Ok(out) => {
                    return out.stream_description_summary().map(|s| s.stream_arn().to_owned()).ok_or_else(|| {
                        self.failed(Operation::DescribeStreamSummary, attempt, "the response has no stream ARN".into())
                    })
                }
                Err(error) => {
                    let class = classify(Operation::DescribeStreamSummary, &error);
                    let message = describe(&error);
                    if !retryable(class) || attempt > self.settings.max_describe_stream_summary_retries {
                        return Err(self.failed(Operation::DescribeStreamSummary, attempt, message));
                    }
                    let delay = backoff.next_delay();
                    tracing::info!(attempt, ?delay, error = %message, "DescribeStreamSummary failed; retrying");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// The consumer, or `None` when it does not exist.
    async fn describe_consumer(&self, stream_arn: &str) -> Result<Option<Described>, RegistrationError> {
        let mut backoff = self.backoff();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = self
                .client
                .describe_stream_consumer()
                .stream_arn(stream_arn)
                .consumer_name(&self.settings.consumer_name)
                .send()
                .await;
            match result {
                Ok(out) => {
                    let Some(d) = out.consumer_description() else {
                        return Err(self.failed(
                            Operation::DescribeStreamConsumer,
                            attempt,
                            "the response has no consumer description".into(),
                        ));
                    };
                    return Ok(Some(Described {
                        arn: d.consumer_arn().to_owned(),
                        status: d.consumer_status().clone(),
                    }));
                }
                Err(error) => match classify(Operation::DescribeStreamConsumer, &error) {
                    ErrorClass::NotFound => return Ok(None),
                    class => {
                        let message = describe(&error);
                        if !retryable(class) || attempt > self.settings.max_describe_stream_consumer_retries {
                            return Err(self.failed(Operation::DescribeStreamConsumer, attempt, message));
                        }
                        let delay = backoff.next_delay();
                        tracing::info!(attempt, ?delay, error = %message, "DescribeStreamConsumer failed; retrying");
                        tokio::time::sleep(delay).await;
                    }
                },
            }
        }
    }

    async fn register(&self, stream_arn: &str) -> Result<Described, RegistrationError> {
        let mut backoff = self.backoff();
        let mut attempt = 0;
        loop {
            attempt += 1;
            tracing::info!(consumer = %self.settings.consumer_name, stream_arn, "registering the enhanced fan-out consumer");
            let result = self
                .client
                .register_stream_consumer()
                .stream_arn(stream_arn)
                .consumer_name(&self.settings.consumer_name)
                .send()
                .await;
            let error = match result {
                Ok(out) => {
                    let Some(c) = out.consumer() else {
                        return Err(self.failed(
                            Operation::RegisterStreamConsumer,
                            attempt,
                            "the response has no consumer".into(),
                        ));
                    };
                    return Ok(Described { arn: c.consumer_arn().to_owned(), status: c.consumer_status().clone() });
                }
                Err(error) => error,
            };
            let in_use = error.as_service_error().is_some_and(|e| e.is_resource_in_use_exception());
            if in_use {
                // Registered by another worker meanwhile (or being deleted): look again.
                tracing::info!(consumer = %self.settings.consumer_name, "consumer registered concurrently; describing it");
                if let Some(found) = self.describe_consumer(stream_arn).await? {
                    return Ok(found);
                }
            }
            let class =
                if in_use { ErrorClass::Transient } else { classify(Operation::RegisterStreamConsumer, &error) };
            let message = describe(&error);
            if !retryable(class) || attempt > self.settings.register_stream_consumer_retries {
                return Err(self.failed(Operation::RegisterStreamConsumer, attempt, message));
            }
            let delay = backoff.next_delay();
            tracing::info!(attempt, ?delay, error = %message, "RegisterStreamConsumer failed; retrying");
            tokio::time::sleep(delay).await;
        }
    }

    async fn wait_active(&self, stream_arn: &str, mut described: Described) -> Result<String, RegistrationError> {
        let mut checks = 0;
        while described.status != ConsumerStatus::Active {
            if checks >= self.settings.max_describe_stream_consumer_retries {
                return Err(RegistrationError::NotActive {
                    consumer: self.settings.consumer_name.clone(),
                    status: described.status.as_str().to_owned(),
                    checks,
                });
            }
            checks += 1;
            tracing::debug!(status = described.status.as_str(), checks, "waiting for the consumer to become ACTIVE");
            tokio::time::sleep(self.settings.retry_backoff).await;
            described = match self.describe_consumer(stream_arn).await? {
                Some(d) => d,
                None => {
                    // Deleted meanwhile (e.g. deregistered by an operator): register again.
                    self.register(stream_arn).await?
                }
            };
        }
        Ok(described.arn)
    }
}

fn retryable(class: ErrorClass) -> bool {
    matches!(class, ErrorClass::Throttled | ErrorClass::Transient)
}
