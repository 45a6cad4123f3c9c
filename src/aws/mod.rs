//! Building AWS SDK clients from the configuration.
//!
//! - **Region** of each client: its own `kinesisClient.region` / `dynamoDbClient.region`, else
//!   `regionName`, else the SDK's default region chain (`AWS_REGION`, profile, instance
//!   metadata). No region anywhere is an error ([`AwsError::NoRegion`]); there is no us-east-1
//!   fallback, as in Java.
//! - **Endpoint** overrides come from the configuration (already resolved there).
//! - **Credentials**: the [`CredentialsSpec`] chain maps onto `aws-config` providers, tried in
//!   order. `SystemProperties` (the JVM's `aws.accessKeyId` …) reads the same environment
//!   variables as `Environment`, since there is no JVM. `AnonymousCredentialsProvider` sends
//!   unsigned requests. Assume-role uses the default chain for its own STS calls, as the Java
//!   `KclStsAssumeRoleCredentialsProvider` does.
//! - DynamoDB uses `AWSCredentialsProviderDynamoDB` when set, else the Kinesis chain.
//!
//! - Every client carries the [`call_metrics::CallMetrics`] interceptor: the latency and error
//!   class of every call go to the telemetry recorder (`/metrics`).
//!
//! The CloudWatch client is built by the ops module from the same credentials code.

use aws_config::default_provider::credentials::DefaultCredentialsChain;
use aws_config::default_provider::region::DefaultRegionChain;
use aws_config::ecs::EcsCredentialsProvider;
use aws_config::environment::credentials::EnvironmentVariableCredentialsProvider;
use aws_config::imds::credentials::ImdsCredentialsProvider;
use aws_config::meta::credentials::CredentialsProviderChain;
use aws_config::profile::ProfileFileCredentialsProvider;
use aws_config::provider_config::ProviderConfig;
use aws_config::sts::AssumeRoleProvider;
use aws_config::web_identity_token::WebIdentityTokenCredentialsProvider;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_kinesis::config::SharedCredentialsProvider;

pub mod call_metrics;

use crate::config::credentials::AssumeRoleSpec;
use crate::config::{Config, CredentialsSpec, ProviderSpec};
use crate::telemetry::Service;
use call_metrics::CallMetrics;

/// The SDK clients the daemon needs.
#[derive(Debug, Clone)]
pub struct AwsClients {
    /// Kinesis (shard listing, GetRecords, SubscribeToShard).
    pub kinesis: aws_sdk_kinesis::Client,
    /// DynamoDB (the lease table).
    pub dynamodb: aws_sdk_dynamodb::Client,
}

/// Why the clients could not be built.
#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    /// No region in the configuration and none from the SDK's region chain.
    #[error(
        "no AWS region for the {client} client: set `regionName` (or `{key}`) in the \
         properties file, or AWS_REGION in the environment"
    )]
    NoRegion {
        /// `Kinesis` or `DynamoDB`.
        client: &'static str,
        /// The per-client region key.
        key: &'static str,
    },
}

/// Builds the Kinesis and DynamoDB clients for `config`.
///
/// # Errors
/// [`AwsError::NoRegion`] when a client has no region from the configuration or the SDK
/// default chain.
pub async fn clients(config: &Config) -> Result<AwsClients, AwsError> {
    let needs_chain = config.region.is_none() && (config.kinesis_region.is_none() || config.dynamodb_region.is_none());
    let chain_region = if needs_chain { DefaultRegionChain::builder().build().region().await } else { None };
    let pick = |own: &Option<String>, client, key| {
        own.as_ref()
            .or(config.region.as_ref())
            .map(|r| Region::new(r.clone()))
            .or_else(|| chain_region.clone())
            .ok_or(AwsError::NoRegion { client, key })
    };
    let kinesis_region = pick(&config.kinesis_region, "Kinesis", "kinesisClient.region")?;
    let dynamodb_region = pick(&config.dynamodb_region, "DynamoDB", "dynamoDbClient.region")?;

    let kinesis_credentials = credentials_provider(&config.credentials, &kinesis_region).await;
    let dynamodb_spec = config.credentials_dynamodb.as_ref().unwrap_or(&config.credentials);
    let dynamodb_credentials = credentials_provider(dynamodb_spec, &dynamodb_region).await;

    let kinesis_conf = sdk_config(kinesis_region, config.kinesis_endpoint.as_deref(), kinesis_credentials).await;
    let dynamodb_conf = sdk_config(dynamodb_region, config.dynamodb_endpoint.as_deref(), dynamodb_credentials).await;
    tracing::debug!(
        kinesis_region = ?kinesis_conf.region(),
        kinesis_endpoint = ?config.kinesis_endpoint,
        dynamodb_region = ?dynamodb_conf.region(),
        dynamodb_endpoint = ?config.dynamodb_endpoint,
        "AWS clients configured"
    );
    let kinesis =
        aws_sdk_kinesis::config::Builder::from(&kinesis_conf).interceptor(CallMetrics::new(Service::Kinesis)).build();
    let dynamodb = aws_sdk_dynamodb::config::Builder::from(&dynamodb_conf)
        .interceptor(CallMetrics::new(Service::DynamoDb))
        .build();
    Ok(AwsClients {
        kinesis: aws_sdk_kinesis::Client::from_conf(kinesis),
        dynamodb: aws_sdk_dynamodb::Client::from_conf(dynamodb),
    })
}

async fn sdk_config(
    region: Region,
    endpoint: Option<&str>,
    credentials: Option<SharedCredentialsProvider>,
) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).region(region);
    loader = match credentials {
        Some(provider) => loader.credentials_provider(provider),
        None => loader.no_credentials(),
    };
    if let Some(endpoint) = endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    loader.load().await
}

/// Maps a credentials spec onto an `aws-config` provider (a chain when it names several).
/// `None` means anonymous (unsigned requests).
pub async fn credentials_provider(spec: &CredentialsSpec, region: &Region) -> Option<SharedCredentialsProvider> {
    let mut chain: Option<CredentialsProviderChain> = None;
    let mut single: Option<SharedCredentialsProvider> = None;
    for provider in &spec.providers {
        let (name, built) = match provider {
            ProviderSpec::Anonymous => return None,
            ProviderSpec::DefaultChain => (
                "DefaultChain",
                SharedCredentialsProvider::new(DefaultCredentialsChain::builder().region(region.clone()).build().await),
            ),
            ProviderSpec::Environment => {
                ("Environment", SharedCredentialsProvider::new(EnvironmentVariableCredentialsProvider::new()))
            }
            ProviderSpec::SystemProperties => {
                ("SystemProperties", SharedCredentialsProvider::new(EnvironmentVariableCredentialsProvider::new()))
            }
            ProviderSpec::Profile { name, file } => ("Profile", profile_provider(name.as_deref(), file.as_deref())),
            ProviderSpec::InstanceProfile => {
                ("InstanceProfile", SharedCredentialsProvider::new(ImdsCredentialsProvider::builder().build()))
            }
            ProviderSpec::Container => {
                ("Container", SharedCredentialsProvider::new(EcsCredentialsProvider::builder().build()))
            }
            ProviderSpec::WebIdentity => (
                "WebIdentity",
                SharedCredentialsProvider::new(
                    WebIdentityTokenCredentialsProvider::builder()
                        .configure(&ProviderConfig::default().with_region(Some(region.clone())))
                        .build(),
                ),
            ),
            ProviderSpec::AssumeRole(role) => ("AssumeRole", assume_role(role, region).await),
        };
        chain = Some(match chain {
            None => CredentialsProviderChain::first_try(name, built.clone()),
            Some(chain) => chain.or_else(name, built.clone()),
        });
        single = Some(built);
    }
    match (spec.providers.len(), single, chain) {
        (1, Some(single), _) => Some(single),
        (_, _, Some(chain)) => Some(SharedCredentialsProvider::new(chain)),
        // A CredentialsSpec is never empty; anonymous is the only sensible reading otherwise.
        _ => None,
    }
}

#[allow(deprecated)] // The aliases in aws_config::profile::profile_file are the only path to
                     // EnvConfigFiles without a direct aws-runtime dependency.
fn profile_provider(name: Option<&str>, file: Option<&str>) -> SharedCredentialsProvider {
    use aws_config::profile::profile_file::{ProfileFileKind, ProfileFiles};
    let mut builder = ProfileFileCredentialsProvider::builder();
    if let Some(name) = name {
        builder = builder.profile_name(name);
    }
    if let Some(file) = file {
        builder = builder.profile_files(
            ProfileFiles::builder()
                .include_default_config_file(true)
                .with_file(ProfileFileKind::Credentials, file)
                .build(),
        );
    }
    SharedCredentialsProvider::new(builder.build())
}

async fn assume_role(role: &AssumeRoleSpec, region: &Region) -> SharedCredentialsProvider {
    let sts_region = role
        .endpoint
        .as_ref()
        .map(|e| e.signing_region.clone())
        .or_else(|| role.endpoint_region.clone())
        .map(Region::new)
        .unwrap_or_else(|| region.clone());
    let base = DefaultCredentialsChain::builder().region(sts_region.clone()).build().await;
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).region(sts_region).credentials_provider(base);
    if let Some(endpoint) = &role.endpoint {
        loader = loader.endpoint_url(&endpoint.url);
    }
    let sts_conf = loader.load().await;
    let mut builder = AssumeRoleProvider::builder(&role.role_arn).session_name(&role.session_name).configure(&sts_conf);
    if let Some(id) = &role.external_id {
        builder = builder.external_id(id);
    }
    SharedCredentialsProvider::new(builder.build().await)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::properties;
    use aws_sdk_kinesis::config::ProvideCredentials;

    fn config(extra: &str) -> Config {
        let text = format!("executableName = app.py\napplicationName = app\nstreamName = s\n{extra}");
        let (entries, _) = properties::parse(text.as_bytes());
        Config::from_entries("/t.properties", entries).unwrap().config
    }

    /// Builds clients for a local-endpoint configuration and checks region, endpoint and
    /// credentials end up where the configuration says. (The environment-variable provider is
    /// exercised against the emulators in tests/aws_clients.rs, a single-test binary where
    /// setting the environment is safe.)
    #[tokio::test]
    async fn local_endpoints_regions_and_profile_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("credentials");
        std::fs::write(&file, "[local]\naws_access_key_id = AKIDLOCALTEST\naws_secret_access_key = local-secret\n")
            .unwrap();
        let config = config(&format!(
            "AWSCredentialsProvider = ProfileCredentialsProvider|{}|local\n\
             regionName = us-west-2\n\
             dynamoDbClient.region = eu-central-1\n\
             kinesisEndpoint = http://127.0.0.1:9\n\
             dynamoDBEndpoint = http://127.0.0.1:9\n",
            file.display()
        ));
        let clients = clients(&config).await.unwrap();
        let kc = clients.kinesis.config();
        assert_eq!(kc.region().map(Region::as_ref), Some("us-west-2"));
        let dc = clients.dynamodb.config();
        assert_eq!(dc.region().map(Region::as_ref), Some("eu-central-1"));

        let creds = credentials_provider(&config.credentials, &Region::new("us-west-2"))
            .await
            .unwrap()
            .provide_credentials()
            .await
            .unwrap();
        assert_eq!(creds.access_key_id(), "AKIDLOCALTEST");
        assert_eq!(creds.secret_access_key(), "local-secret");

        // The endpoint override is used: the request goes to the closed local port (discard,
        // 9) and fails to connect, rather than resolving the AWS host name.
        let err = clients.dynamodb.list_tables().send().await.expect_err("nothing listens on 127.0.0.1:9");
        let text = format!("{err:?}");
        assert!(text.contains("127.0.0.1:9") || text.contains("onnect"), "{text}");
    }

    #[tokio::test]
    async fn chains_and_anonymous() {
        let (spec, _) =
            CredentialsSpec::parse("NoSuch,EnvironmentVariableCredentialsProvider,ProfileCredentialsProvider|x")
                .unwrap();
        assert!(credentials_provider(&spec, &Region::new("us-east-1")).await.is_some());
        let (anon, _) = CredentialsSpec::parse("AnonymousCredentialsProvider").unwrap();
        assert!(credentials_provider(&anon, &Region::new("us-east-1")).await.is_none());
    }

    #[tokio::test]
    async fn per_client_region_overrides_without_region_name() {
        let config = config(
            "AWSCredentialsProvider = AnonymousCredentialsProvider\n\
             kinesisClient.region = ap-south-1\n\
             dynamoDbClient.region = sa-east-1\n",
        );
        let clients = clients(&config).await.unwrap();
        assert_eq!(clients.kinesis.config().region().map(Region::as_ref), Some("ap-south-1"));
        assert_eq!(clients.dynamodb.config().region().map(Region::as_ref), Some("sa-east-1"));
    }
}
