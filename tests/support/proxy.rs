//! A small HTTP/1.1 fault proxy on 127.0.0.1 in front of an emulator (kinesis-local,
//! dynalite): the emulators cannot misbehave on demand, so faults are injected here.
//!
//! Modes ([`Mode`], switchable at any time): pass; reset every connection (closed with the
//! request unread, so the kernel answers with RST); black-hole (requests are read and never
//! answered); HTTP 5xx; slow (every response delayed). Independently, [`FaultProxy::throttle`]
//! answers a share of the calls of one operation with the service's throttling error — a
//! proper AWS JSON error body with status 400 and `x-amzn-ErrorType` — deterministically
//! (every 1/rate-th call). Every request is counted per operation (the `X-Amz-Target`
//! header's part after the dot, e.g. `GetRecords`, `UpdateItem`).
//!
//! Responses are relayed as they arrive: a chunked response (SubscribeToShard's event stream
//! over HTTP/1.1 on kinesis-local's plain port) is passed on chunk by chunk, so a long-lived
//! subscription flows through the proxy; [`FaultProxy::cut_streams`] ends every response still
//! streaming (both connections are shut down), which makes the client resubscribe. Calls
//! whose JSON body names a `ShardId` are also timed per shard ([`FaultProxy::shard_calls`]).
//!
//! Only the AWS JSON protocols are understood (the Rust SDK's); the Java SDK talks CBOR to
//! Kinesis, so Java daemons are not run through the proxy's error injection.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::Shutdown;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the proxy does with every request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Forward to the emulator.
    Pass,
    /// Close each connection as soon as a request arrives, unread (RST).
    Reset,
    /// Read requests and never answer (until the mode changes; then the connection closes).
    BlackHole,
    /// Answer every request with this 5xx status and an AWS JSON error body.
    Status(u16),
    /// Forward, but answer only after this delay.
    Slow(Duration),
}

/// Which service's throttling error to inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttle {
    /// DynamoDB `ProvisionedThroughputExceededException`.
    DynamoDbThroughput,
    /// DynamoDB `ThrottlingException`.
    DynamoDbThrottling,
    /// Kinesis `ProvisionedThroughputExceededException`.
    KinesisThroughput,
    /// Kinesis `LimitExceededException`.
    KinesisLimit,
}

impl Throttle {
    /// (`__type` of the body, `x-amzn-ErrorType` header).
    fn error(self) -> (&'static str, &'static str) {
        match self {
            Self::DynamoDbThroughput => (
                "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
                "ProvisionedThroughputExceededException",
            ),
            Self::DynamoDbThrottling => ("com.amazon.coral.availability#ThrottlingException", "ThrottlingException"),
            Self::KinesisThroughput => {
                ("ProvisionedThroughputExceededException", "ProvisionedThroughputExceededException")
            }
            Self::KinesisLimit => ("LimitExceededException", "LimitExceededException"),
        }
    }
}

/// Calls seen for one operation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Calls {
    /// Requests received.
    pub total: u64,
    /// Answered with an injected throttling error.
    pub throttled: u64,
    /// Answered with an injected fault of the mode (reset, black-hole, 5xx).
    pub faulted: u64,
}

#[derive(Debug)]
struct Rule {
    rate: f64,
    error: Throttle,
    credit: f64,
}

#[derive(Debug)]
struct State {
    mode: Mode,
    throttles: BTreeMap<String, Rule>,
    calls: BTreeMap<String, Calls>,
    /// (operation, shard id) -> when each call arrived.
    shard_calls: BTreeMap<(String, String), Vec<Instant>>,
}

/// The proxy; stops (and closes every connection) on drop.
pub struct FaultProxy {
    /// `http://127.0.0.1:<port>`: give this to the daemon as the endpoint.
    pub endpoint: String,
    state: Arc<Mutex<State>>,
    streams: Arc<Mutex<Vec<(u64, TcpStream, TcpStream)>>>,
    stop: Arc<AtomicBool>,
    addr: SocketAddr,
    acceptor: Option<JoinHandle<()>>,
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl FaultProxy {
    /// A proxy in [`Mode::Pass`] in front of `upstream` (`http://127.0.0.1:<port>`).
    pub fn start(upstream: &str) -> Self {
        let upstream: SocketAddr = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .unwrap_or_else(|e| panic!("upstream {upstream}: {e}"));
        assert!(upstream.ip().is_loopback(), "the proxy only fronts loopback emulators");
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let state = Arc::new(Mutex::new(State {
            mode: Mode::Pass,
            throttles: BTreeMap::new(),
            calls: BTreeMap::new(),
            shard_calls: BTreeMap::new(),
        }));
        let streams: Arc<Mutex<Vec<(u64, TcpStream, TcpStream)>>> = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let acceptor = std::thread::spawn({
            let state = Arc::clone(&state);
            let streams = Arc::clone(&streams);
            let stop = Arc::clone(&stop);
            move || {
                let mut connections = Vec::new();
                for client in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(client) = client else { continue };
                    let state = Arc::clone(&state);
                    let streams = Arc::clone(&streams);
                    let stop = Arc::clone(&stop);
                    connections.push(std::thread::spawn(move || serve(client, upstream, &state, &streams, &stop)));
                    connections.retain(|c: &JoinHandle<()>| !c.is_finished());
                }
                for c in connections {
                    let _ = c.join();
                }
            }
        });
        Self { endpoint: format!("http://{addr}"), state, streams, stop, addr, acceptor: Some(acceptor) }
    }

    /// Switches the mode for every later request (and releases black-holed ones).
    pub fn set_mode(&self, mode: Mode) {
        lock(&self.state).mode = mode;
    }

    /// Answers `rate` (0..=1) of the calls of `operation` with `error`; rate 0 removes it.
    pub fn throttle(&self, operation: &str, rate: f64, error: Throttle) {
        let mut state = lock(&self.state);
        if rate <= 0.0 {
            state.throttles.remove(operation);
        } else {
            state.throttles.insert(operation.to_owned(), Rule { rate: rate.min(1.0), error, credit: 0.0 });
        }
    }

    /// Calls per operation so far.
    pub fn calls(&self) -> BTreeMap<String, Calls> {
        lock(&self.state).calls.clone()
    }

    /// When each call of `operation` naming a shard arrived, per shard id.
    pub fn shard_calls(&self, operation: &str) -> BTreeMap<String, Vec<Instant>> {
        lock(&self.state)
            .shard_calls
            .iter()
            .filter(|((op, _), _)| op == operation)
            .map(|((_, shard), at)| (shard.clone(), at.clone()))
            .collect()
    }

    /// Ends every response still streaming (a subscription's event stream): both of its
    /// connections are shut down. Returns how many were cut.
    pub fn cut_streams(&self) -> usize {
        let mut streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        let cut = streams.len();
        for (_, client, upstream) in streams.drain(..) {
            let _ = client.shutdown(Shutdown::Both);
            let _ = upstream.shutdown(Shutdown::Both);
        }
        cut
    }

    /// Calls of one operation so far.
    pub fn calls_of(&self, operation: &str) -> Calls {
        lock(&self.state).calls.get(operation).copied().unwrap_or_default()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// One HTTP message: the head (start line + headers, with the blank line) and the body.
struct Message {
    head: Vec<u8>,
    body: Vec<u8>,
}

impl Message {
    fn header(&self, name: &str) -> Option<String> {
        String::from_utf8_lossy(&self.head).lines().skip(1).find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = self.head.clone();
        out.extend_from_slice(&self.body);
        out
    }
}

/// Reads a message's start line and headers (with the blank line).
fn read_head(reader: &mut BufReader<TcpStream>) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    loop {
        let mut line = Vec::new();
        if reader.read_until(b'\n', &mut line).ok()? == 0 {
            return None;
        }
        let blank = line == b"\r\n" || line == b"\n";
        head.extend_from_slice(&line);
        if blank && head.len() > line.len() {
            return Some(head);
        }
    }
}

/// Reads one message; `None` at a clean end of the connection or on an error.
fn read_message(reader: &mut BufReader<TcpStream>) -> Option<Message> {
    let mut message = Message { head: read_head(reader)?, body: Vec::new() };
    if message.header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        // Keep the chunked framing as is.
        loop {
            let mut size_line = Vec::new();
            reader.read_until(b'\n', &mut size_line).ok()?;
            message.body.extend_from_slice(&size_line);
            let size = usize::from_str_radix(String::from_utf8_lossy(&size_line).trim().split(';').next()?, 16).ok()?;
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).ok()?;
            message.body.extend_from_slice(&chunk);
            if size == 0 {
                break;
            }
        }
    } else if let Some(length) = message.header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        let mut body = vec![0; length];
        reader.read_exact(&mut body).ok()?;
        message.body = body;
    }
    Some(message)
}

fn error_response(status: u16, type_: &str, error_type: &str, message: &str) -> Vec<u8> {
    let reason = match status {
        400 => "Bad Request",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let body = serde_json::json!({ "__type": type_, "message": message }).to_string();
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/x-amz-json-1.1\r\nx-amzn-ErrorType: {error_type}\r\n\
         x-amzn-RequestId: fault-proxy\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

enum Verdict {
    Forward(Option<Duration>),
    Answer(Vec<u8>),
    Reset,
    BlackHole,
}

fn decide(state: &Mutex<State>, operation: &str, shard: Option<String>) -> Verdict {
    let mut state = lock(state);
    if let Some(shard) = shard {
        state.shard_calls.entry((operation.to_owned(), shard)).or_default().push(Instant::now());
    }
    let mode = state.mode.clone();
    let throttled = state.throttles.get_mut(operation).and_then(|rule| {
        rule.credit += rule.rate;
        (rule.credit >= 1.0).then(|| {
            rule.credit -= 1.0;
            rule.error
        })
    });
    let calls = state.calls.entry(operation.to_owned()).or_default();
    calls.total += 1;
    let verdict = match mode {
        Mode::Reset => Verdict::Reset,
        Mode::BlackHole => Verdict::BlackHole,
        Mode::Status(status) => {
            Verdict::Answer(error_response(status, "InternalFailure", "InternalFailure", "injected by the fault proxy"))
        }
        Mode::Pass | Mode::Slow(_) => {
            if let Some(error) = throttled {
                calls.throttled += 1;
                let (type_, header) = error.error();
                return Verdict::Answer(error_response(
                    400,
                    type_,
                    header,
                    "Rate exceeded (injected by the fault proxy)",
                ));
            }
            return Verdict::Forward(match mode {
                Mode::Slow(delay) => Some(delay),
                _ => None,
            });
        }
    };
    calls.faulted += 1;
    verdict
}

type Streams = Mutex<Vec<(u64, TcpStream, TcpStream)>>;

fn serve(client: TcpStream, upstream: SocketAddr, state: &Mutex<State>, streams: &Streams, stop: &AtomicBool) {
    let Ok(reader_side) = client.try_clone() else { return };
    let mut reader = BufReader::new(reader_side);
    let mut writer = client;
    let mut upstream_conn: Option<(TcpStream, BufReader<TcpStream>)> = None;
    loop {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        // In reset mode, close with the request unread so that the kernel sends RST.
        if lock(state).mode == Mode::Reset {
            let mut byte = [0u8; 1];
            if writer.peek(&mut byte).unwrap_or(0) == 0 {
                return;
            }
            if lock(state).mode == Mode::Reset {
                let mut state = lock(state);
                let calls = state.calls.entry("(reset before reading)".to_owned()).or_default();
                calls.total += 1;
                calls.faulted += 1;
                return;
            }
        }
        let Some(request) = read_message(&mut reader) else { return };
        let operation = request
            .header("x-amz-target")
            .map_or_else(|| "(none)".to_owned(), |t| t.rsplit('.').next().unwrap_or(&t).to_owned());
        let shard = serde_json::from_slice::<serde_json::Value>(&request.body)
            .ok()
            .and_then(|body| body.get("ShardId").and_then(|s| s.as_str()).map(str::to_owned));
        match decide(state, &operation, shard) {
            Verdict::Reset => return,
            Verdict::BlackHole => {
                while lock(state).mode == Mode::BlackHole && !stop.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(50));
                }
                return;
            }
            Verdict::Answer(bytes) => {
                if writer.write_all(&bytes).is_err() {
                    return;
                }
            }
            Verdict::Forward(delay) => {
                if !forward(&mut upstream_conn, upstream, &request, delay, &mut writer, streams) {
                    return;
                }
            }
        }
    }
}

/// Sends `request` upstream (reconnecting once if the kept-alive connection was closed) and
/// relays the response to `client` as it arrives (after `delay`, if any); a chunked response
/// chunk by chunk, registered in `streams` meanwhile so that it can be cut. False if either
/// connection must be closed.
fn forward(
    conn: &mut Option<(TcpStream, BufReader<TcpStream>)>,
    upstream: SocketAddr,
    request: &Message,
    delay: Option<Duration>,
    client: &mut TcpStream,
    streams: &Streams,
) -> bool {
    let mut head = None;
    for _ in 0..2 {
        if conn.is_none() {
            let Ok(stream) = TcpStream::connect_timeout(&upstream, Duration::from_secs(5)) else { return false };
            let Ok(reader) = stream.try_clone().map(BufReader::new) else { return false };
            *conn = Some((stream, reader));
        }
        let Some((stream, reader)) = conn.as_mut() else { return false };
        if stream.write_all(&request.bytes()).is_ok() {
            if let Some(h) = read_head(reader) {
                head = Some(h);
                break;
            }
        }
        *conn = None;
    }
    let Some(head) = head else { return false };
    let Some((stream, reader)) = conn.as_mut() else { return false };
    if let Some(delay) = delay {
        std::thread::sleep(delay);
    }
    let response = Message { head, body: Vec::new() };
    let chunked = response.header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    let length = response.header("content-length").and_then(|v| v.parse::<usize>().ok());
    if client.write_all(&response.head).is_err() {
        return false;
    }
    if let Some(length) = length {
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() || client.write_all(&body).is_err() {
            *conn = None;
            return false;
        }
        return true;
    }
    let status = String::from_utf8_lossy(&response.head).split_whitespace().nth(1).unwrap_or("").to_owned();
    if !chunked && (status.starts_with('1') || status == "204" || status == "304") {
        return true;
    }
    // A streamed body: chunked, or (without framing) up to the end of the connection.
    static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let id = NEXT_ID.fetch_add(1, Ordering::SeqCst);
    if let (Ok(c), Ok(u)) = (client.try_clone(), stream.try_clone()) {
        streams.lock().unwrap_or_else(PoisonError::into_inner).push((id, c, u));
    }
    let complete = if chunked {
        relay_chunks(reader, client)
    } else {
        let _ = std::io::copy(reader, client);
        false
    };
    streams.lock().unwrap_or_else(PoisonError::into_inner).retain(|(i, _, _)| *i != id);
    if !complete {
        *conn = None;
    }
    complete
}

/// Relays a chunked body chunk by chunk; true once the last chunk passed.
fn relay_chunks(reader: &mut BufReader<TcpStream>, client: &mut TcpStream) -> bool {
    loop {
        let mut size_line = Vec::new();
        if reader.read_until(b'\n', &mut size_line).unwrap_or(0) == 0 {
            return false;
        }
        let Some(size) = String::from_utf8_lossy(&size_line)
            .trim()
            .split(';')
            .next()
            .and_then(|s| usize::from_str_radix(s, 16).ok())
        else {
            return false;
        };
        let mut chunk = vec![0; size + 2];
        if reader.read_exact(&mut chunk).is_err() {
            return false;
        }
        size_line.extend_from_slice(&chunk);
        if client.write_all(&size_line).is_err() || client.flush().is_err() {
            return false;
        }
        if size == 0 {
            return true;
        }
    }
}
