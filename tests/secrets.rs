//! Security: credentials never appear in what the daemon prints. The real binary runs with
//! secrets in the environment (`AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), in a credentials
//! file named by the properties file (the v1 `ProfileCredentialsProvider|file|profile` form),
//! and in keys a Java user might put in the properties file (`aws.secretAccessKey`, ...);
//! `validate`, a few seconds of the daemon at `RUST_LOG=debug` against the emulators (records
//! flowing), and the start-up failure on a broken credentials file must not print any of them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use support::daemon::{self, Props};
use support::emulators;
use support::multilangd_bin;
use support::sample_apps::{read_ledger, Processor};

const ENV_ACCESS_KEY: &str = "AKIAENVSECRET0000001";
const ENV_SECRET_KEY: &str = "EnvSecretAccessKey/7f3a+9QzXwVb2LmNoPqRsTuV";
const ENV_SESSION_TOKEN: &str = "EnvSessionTokenFwoGZXIvYXdzEJr//////////wEaDC9zZWNyZXQ";
const FILE_SECRET_KEY: &str = "FileSecretAccessKey/Jk8l+Mn0PqRsTuVwXyZ123";
const FILE_SESSION_TOKEN: &str = "FileSessionTokenIQoJb3JpZ2luX2VjEJr//////////";
const PROPS_SECRET_KEY: &str = "PropsSecretAccessKey/AbCdEf+GhIjKl";
const PROPS_SESSION_TOKEN: &str = "PropsSessionTokenMnOpQrStUvWxYz0987";

/// Every value that must never be printed. (Access key ids are not secret, but the ones
/// used here are checked too: nothing needs to print them.)
const SECRETS: [&str; 7] = [
    ENV_ACCESS_KEY,
    ENV_SECRET_KEY,
    ENV_SESSION_TOKEN,
    FILE_SECRET_KEY,
    FILE_SESSION_TOKEN,
    PROPS_SECRET_KEY,
    PROPS_SESSION_TOKEN,
];

fn assert_no_secret(what: &str, text: &str) {
    for secret in SECRETS {
        // Also a recognisable piece of it, in case something truncates or escapes the value.
        let piece = &secret[..16];
        assert!(
            !text.contains(secret) && !text.contains(piece),
            "{what} shows the secret {secret:?}:\n{}",
            daemon::tail(text, 40)
        );
    }
}

/// A credentials file (profile `kcl`) holding a secret key and a session token.
fn credentials_file(dir: &Path) -> String {
    let path = dir.join("credentials");
    std::fs::write(
        &path,
        format!(
            "[kcl]\naws_access_key_id = AKIAFILE000000000001\naws_secret_access_key = {FILE_SECRET_KEY}\n\
             aws_session_token = {FILE_SESSION_TOKEN}\n"
        ),
    )
    .unwrap();
    path.display().to_string()
}

/// Properties for the emulators: Kinesis credentials from the environment, DynamoDB ones
/// from the credentials file, plus secrets under keys the daemon does not know.
fn props(dir: &Path, kinesis: &str, dynamodb: &str, executable: &str) -> std::path::PathBuf {
    let file = credentials_file(dir);
    Props::local("secrets-app", "trips", executable, kinesis, dynamodb)
        .set("AWSCredentialsProvider", "EnvironmentVariableCredentialsProvider")
        .set(
            "AWSCredentialsProviderDynamoDB",
            format!("com.amazonaws.auth.profile.ProfileCredentialsProvider|{file}|kcl"),
        )
        .set("aws.accessKeyId", "AKIAPROPS00000000001")
        .set("aws.secretAccessKey", PROPS_SECRET_KEY)
        .set("aws.sessionToken", PROPS_SESSION_TOKEN)
        .set("secretKey", PROPS_SECRET_KEY)
        .write(&dir.join("app.properties"))
}

fn multilangd(args: &[&str], props: &Path) -> Command {
    let mut c = Command::new(multilangd_bin());
    c.args(args)
        .arg(props)
        .env("RUST_LOG", "debug")
        .env("AWS_ACCESS_KEY_ID", ENV_ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", ENV_SECRET_KEY)
        .env("AWS_SESSION_TOKEN", ENV_SESSION_TOKEN)
        .env("AWS_REGION", "us-east-1")
        .stdin(Stdio::null());
    c
}

fn output_text(output: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

#[test]
fn validate_prints_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let props = props(dir.path(), "http://127.0.0.1:1", "http://127.0.0.1:1", "python3 app.py");
    let output = multilangd(&["validate"], &props).output().unwrap();
    let text = output_text(&output);
    assert!(output.status.success(), "{text}");
    // The report does describe the credentials set-up and the ignored keys...
    assert!(text.contains("aws.secretAccessKey: unknown key ignored"), "{text}");
    assert!(text.contains("EnvironmentVariableCredentialsProvider"), "{text}");
    // ...but none of the values.
    assert_no_secret("validate", &text);
}

/// An assume-role external id is a shared secret too: `validate` says one is set, not which.
#[test]
fn validate_hides_the_assume_role_external_id() {
    let dir = tempfile::tempdir().unwrap();
    let external_id = "ExternalIdSecret-4b1c9e7a";
    let props = Props::local("secrets-app", "trips", "python3 app.py", "http://127.0.0.1:1", "http://127.0.0.1:1")
        .set(
            "AWSCredentialsProvider",
            format!("StsAssumeRoleCredentialsProvider|arn:aws:iam::123456789012:role/kcl|kcl-session|externalId={external_id}"),
        )
        .write(&dir.path().join("app.properties"));
    let output = multilangd(&["validate"], &props).output().unwrap();
    let text = output_text(&output);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("arn:aws:iam::123456789012:role/kcl"), "the role is described: {text}");
    assert!(text.contains("external id set (hidden)"), "{text}");
    assert!(text.contains("externalId=(hidden)"), "{text}");
    assert!(!text.contains(external_id) && !text.contains("ExternalIdSecret"), "{text}");
}

#[test]
fn a_broken_credentials_file_is_reported_without_its_contents() {
    let dir = tempfile::tempdir().unwrap();
    let kinesis = emulators::start_kinesis_local();
    let dynamo = emulators::start_dynalite();
    let props = props(dir.path(), &kinesis.endpoint, &dynamo.endpoint, "python3 app.py");
    // Lines the profile parser rejects, each holding a secret.
    std::fs::write(
        dir.path().join("credentials"),
        format!("aws_secret_access_key = {FILE_SECRET_KEY}\n[kcl\n{FILE_SESSION_TOKEN}\n"),
    )
    .unwrap();
    let log = dir.path().join("daemon.log");
    let out = std::fs::File::create(&log).unwrap();
    let mut child =
        multilangd(&["--properties-file"], &props).stdout(out.try_clone().unwrap()).stderr(out).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = kill(Pid::from_raw(i32::try_from(child.id()).unwrap()), Signal::SIGTERM);
    child.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    // The failure is reported (and names the file and line), without the line's contents.
    assert!(text.contains("could not parse profile file"), "the failure is reported:\n{}", daemon::tail(&text, 20));
    assert_no_secret("the daemon with a broken credentials file", &text);
}

#[test]
fn daemon_at_debug_level_prints_no_secret_while_records_flow() {
    let dir = tempfile::tempdir().unwrap();
    let kinesis = emulators::start_kinesis_local();
    let dynamo = emulators::start_dynalite();
    let sent = dir.path().join("sent.jsonl");
    daemon::produce(&kinesis.endpoint, "trips", 2, 200, &sent);
    let ledger = dir.path().join("ledger.jsonl");
    let executable = Processor::PythonV3.executable_name(&ledger, None, &[]);
    let props = props(dir.path(), &kinesis.endpoint, &dynamo.endpoint, &executable);
    // The operations endpoint as a bare port: it must listen on loopback only.
    let http_port = emulators::free_port();
    let mut text = std::fs::read_to_string(&props).unwrap();
    text.push_str(&format!("multilangd.httpAddress = {http_port}\n"));
    std::fs::write(&props, text).unwrap();
    let log = dir.path().join("daemon.log");
    let out = std::fs::File::create(&log).unwrap();
    let mut child = multilangd(&["--properties-file"], &props)
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .process_group(0)
        .spawn()
        .unwrap();
    let pid = Pid::from_raw(i32::try_from(child.id()).unwrap());
    // Until the processor has seen every record (so leases, reads, checkpoints all ran).
    let deadline = Instant::now() + Duration::from_secs(60);
    while read_ledger(&ledger).len() < 200 && Instant::now() < deadline {
        assert!(child.try_wait().unwrap().is_none(), "daemon exited:\n{}", std::fs::read_to_string(&log).unwrap());
        std::thread::sleep(Duration::from_millis(200));
    }
    let listening = listeners(http_port);
    let _ = kill(pid, Signal::SIGTERM);
    let status = child.wait().unwrap();
    let _ = nix::sys::signal::killpg(pid, Signal::SIGKILL);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(read_ledger(&ledger).len() >= 200, "records did not flow:\n{}", daemon::tail(&text, 60));
    assert!(status.success(), "{status:?}:\n{}", daemon::tail(&text, 40));
    // A debug log of a real run is long; it must still show none of the secrets.
    assert!(text.lines().count() > 50, "expected a debug log:\n{text}");
    assert_no_secret("the daemon log at RUST_LOG=debug", &text);
    assert_eq!(listening, ["127.0.0.1"], "multilangd.httpAddress = PORT listens on loopback only");
}

/// The local addresses listening on TCP `port` (from /proc/net/tcp and tcp6), e.g.
/// `["127.0.0.1"]`; an IPv6 or wildcard listener shows as its hex address.
fn listeners(port: u16) -> Vec<String> {
    let mut found = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // local_address is ADDR:PORT in hex; state 0A is LISTEN.
            let (Some(local), Some(state)) = (fields.get(1), fields.get(3)) else { continue };
            let Some((addr, p)) = local.split_once(':') else { continue };
            if *state != "0A" || u16::from_str_radix(p, 16).ok() != Some(port) {
                continue;
            }
            found.push(match u32::from_str_radix(addr, 16) {
                Ok(v) if addr.len() == 8 => std::net::Ipv4Addr::from(v.swap_bytes()).to_string(),
                _ => addr.to_owned(),
            });
        }
    }
    found
}
