//! `multilangd::aws::clients` against the local emulators: the endpoint overrides, regions and
//! credentials chains from a properties file reach real requests.
mod support;

use multilangd::config::{properties, Config};
use support::emulators;

fn config(text: &str) -> Config {
    let (entries, errors) = properties::parse(text.as_bytes());
    assert!(errors.is_empty());
    Config::from_entries("/test.properties", entries).expect("valid test configuration").config
}

#[tokio::test]
async fn clients_reach_the_configured_endpoints_with_the_configured_credentials_or_fail_clearly() {
    // No region anywhere is a clear error (only checkable when the environment has none).
    let no_region = config(
        "executableName = app.py\napplicationName = app\nstreamName = s\n\
         AWSCredentialsProvider = AnonymousCredentialsProvider\n\
         kinesisClient.region = eu-west-1\n",
    );
    if std::env::var_os("AWS_REGION").is_none() && std::env::var_os("AWS_DEFAULT_REGION").is_none() {
        let err = multilangd::aws::clients(&no_region).await.unwrap_err().to_string();
        assert!(err.contains("no AWS region for the DynamoDB client"), "{err}");
        assert!(err.contains("dynamoDbClient.region"), "{err}");
    }

    let dynalite = emulators::start_dynalite();
    let kinesalite = emulators::start_kinesalite();
    // This test binary has a single test, so changing the environment is safe.
    std::env::set_var("AWS_ACCESS_KEY_ID", "AKIDENVIRONMENT");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "environment-secret");
    let dir = tempfile::tempdir().unwrap();
    let credentials_file = dir.path().join("credentials");
    std::fs::write(
        &credentials_file,
        "[leases]\naws_access_key_id = AKIDPROFILE\naws_secret_access_key = profile-secret\n",
    )
    .unwrap();

    let config = config(&format!(
        "executableName = app.py\n\
         applicationName = app\n\
         streamName = s\n\
         AwsCredentialsProvider = NoSuchProvider, EnvironmentVariableCredentialsProvider\n\
         AwsCredentialsProviderDynamoDB = ProfileCredentialsProvider|{}|leases\n\
         regionName = us-east-1\n\
         kinesisClient.endpointOverride = {}\n\
         dynamoDBEndpoint = {}\n",
        credentials_file.display(),
        kinesalite.endpoint,
        dynalite.endpoint
    ));
    let clients = multilangd::aws::clients(&config).await.unwrap();

    let streams = clients.kinesis.list_streams().send().await.unwrap();
    assert!(streams.stream_names().is_empty());
    clients.kinesis.create_stream().stream_name("s").shard_count(1).send().await.unwrap();
    let tables = clients.dynamodb.list_tables().send().await.unwrap();
    assert!(tables.table_names().is_empty());

    // The identities the clients resolved are the configured ones.
    use aws_sdk_kinesis::config::ProvideCredentials;
    let region = aws_config::Region::new("us-east-1");
    let kinesis = multilangd::aws::credentials_provider(&config.credentials, &region)
        .await
        .unwrap()
        .provide_credentials()
        .await
        .unwrap();
    assert_eq!(kinesis.access_key_id(), "AKIDENVIRONMENT");
    let dynamodb = multilangd::aws::credentials_provider(config.credentials_dynamodb.as_ref().unwrap(), &region)
        .await
        .unwrap()
        .provide_credentials()
        .await
        .unwrap();
    assert_eq!(dynamodb.access_key_id(), "AKIDPROFILE");
}
