//! Local emulators on free loopback ports, one private instance per test.
//!
//! Each [`Emulator`] is a child process in its own process group; dropping it kills the
//! group and reaps it, so a failing test leaves nothing running. Start-up waits until the
//! emulator answers an HTTP request (not merely accepts TCP).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use super::testbed_dir;

/// How long an emulator may take to answer its first request.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running emulator. Killed (whole process group) and reaped on drop.
pub struct Emulator {
    /// What it is, for messages.
    pub name: &'static str,
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    /// The port.
    pub port: u16,
    /// The log file (stdout and stderr).
    pub log: PathBuf,
    child: Child,
}

impl Emulator {
    /// The emulator's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind an ephemeral loopback port");
    listener.local_addr().expect("local addr").port()
}

fn node_modules() -> PathBuf {
    let dir = testbed_dir().join("emu/node_modules");
    assert!(dir.is_dir(), "test bed not installed: {} is missing; run scripts/install-testbed.sh", dir.display());
    dir
}

fn log_path(name: &str, port: u16) -> PathBuf {
    let dir = std::env::temp_dir().join("multilangd-emulators");
    std::fs::create_dir_all(&dir).expect("create emulator log dir");
    dir.join(format!("{name}-{port}.log"))
}

fn spawn(name: &'static str, port: u16, mut command: Command) -> Emulator {
    let log = log_path(name, port);
    let out = std::fs::File::create(&log).expect("create emulator log");
    let err = out.try_clone().expect("clone log handle");
    command.stdin(Stdio::null()).stdout(out).stderr(err).process_group(0);
    let child = command.spawn().unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
    let emulator = Emulator { name, endpoint: format!("http://127.0.0.1:{port}"), port, log, child };
    wait_until_answering(&emulator);
    emulator
}

/// Sends a minimal HTTP request and waits for any HTTP status line back.
fn answers_http(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!(
        "POST / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/x-amz-json-1.1\r\n\
         X-Amz-Target: Kinesis_20131202.ListStreams\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    );
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0_u8; 12];
    matches!(stream.read(&mut head), Ok(n) if n >= 5 && head.starts_with(b"HTTP/"))
}

fn wait_until_answering(emulator: &Emulator) {
    let deadline = Instant::now() + START_TIMEOUT;
    while Instant::now() < deadline {
        if answers_http(emulator.port) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = std::fs::read_to_string(&emulator.log).unwrap_or_default();
    panic!("{} did not answer on port {} within {START_TIMEOUT:?}; log:\n{log}", emulator.name, emulator.port);
}

/// dynalite (DynamoDB) with instant table state changes.
pub fn start_dynalite() -> Emulator {
    let port = free_port();
    let mut command = Command::new("node");
    command.arg(node_modules().join("dynalite/cli.js")).args([
        "--host",
        "127.0.0.1",
        "--port",
        &port.to_string(),
        "--createTableMs",
        "0",
        "--deleteTableMs",
        "0",
        "--updateTableMs",
        "0",
    ]);
    spawn("dynalite", port, command)
}

/// kinesis-local (kinesis-mock) on a plain-HTTP port, with 100 ms control-plane durations.
/// It also opens a TLS port (unused here); both are chosen free.
pub fn start_kinesis_local() -> Emulator {
    let port = free_port();
    let tls_port = free_port();
    let package = node_modules().join("kinesis-local");
    let mut command = Command::new("node");
    command.arg(package.join("main.js")).current_dir(&package);
    command
        .env("KINESIS_MOCK_PLAIN_PORT", port.to_string())
        .env("KINESIS_MOCK_TLS_PORT", tls_port.to_string())
        .env("SHARD_LIMIT", "200")
        .env("LOG_LEVEL", "WARN");
    for key in [
        "CREATE_STREAM_DURATION",
        "DELETE_STREAM_DURATION",
        "REGISTER_STREAM_CONSUMER_DURATION",
        "DEREGISTER_STREAM_CONSUMER_DURATION",
        "MERGE_SHARDS_DURATION",
        "SPLIT_SHARD_DURATION",
        "UPDATE_SHARD_COUNT_DURATION",
    ] {
        command.env(key, "100ms");
    }
    spawn("kinesis-local", port, command)
}

/// moto server (`moto[server]` 5.2.5 from the test bed's `venv-moto`), bound to 127.0.0.1.
///
/// One endpoint serves every AWS service moto emulates; the tests use it for DynamoDB where
/// the KCL 3.x daemon needs it (dynalite rejects the on-demand lease-table GSI) and for
/// CloudWatch. Tables are created ACTIVE at once; a GSI added with UpdateTable is ACTIVE at once.
pub fn start_moto() -> Emulator {
    let server = moto_server();
    let port = free_port();
    let mut command = Command::new(server);
    command.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
    spawn("moto", port, command)
}

/// The test bed's `moto_server` executable.
pub fn moto_server() -> PathBuf {
    let server = testbed_dir().join("venv-moto/bin/moto_server");
    assert!(
        server.is_file(),
        "test bed part venv-moto not installed: {} is missing; run scripts/install-testbed.sh",
        server.display()
    );
    server
}

/// kinesalite (bulk throughput), bound to 127.0.0.1.
pub fn start_kinesalite() -> Emulator {
    let port = free_port();
    let script = format!(
        "require('kinesalite')({{createStreamMs:50,deleteStreamMs:50,updateStreamMs:50,shardLimit:200}})\
         .listen({port},'127.0.0.1')"
    );
    let mut command = Command::new("node");
    command.arg("-e").arg(script).current_dir(node_modules().parent().expect("emu dir"));
    spawn("kinesalite", port, command)
}
