//! The operations HTTP server (`multilangd.httpAddress`): `/metrics`, `/healthz`, `/readyz`,
//! `/status`. HTTP/1.1 only (hyper), GET and HEAD only, at most [`MAX_CONNECTIONS`]
//! connections at a time, each in the server's own task set (nothing detached); stops with
//! its cancellation token.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::health::{self, HealthSettings};
use super::prometheus::{Exporter, CONTENT_TYPE as METRICS_CONTENT_TYPE};
use crate::status::StatusReceiver;

/// Connections served at once; more wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 32;
/// A client must send its request headers within this time.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// `multilangd.httpAddress` / `--http-address` is not `HOST:PORT` or `PORT`.
    #[error("invalid HTTP address `{0}`: expected HOST:PORT, [IPv6]:PORT or a bare PORT (binds 127.0.0.1)")]
    Address(String),
    /// The address could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// Parses `HOST:PORT`, `[V6]:PORT` or a bare `PORT` (→ `127.0.0.1:PORT`). Host names are
/// not resolved: an IP address is required.
///
/// # Errors
/// [`HttpError::Address`] for anything else.
pub fn parse_address(text: &str) -> Result<SocketAddr, HttpError> {
    let text = text.trim();
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    if let Some(port) = text.strip_prefix("localhost:").and_then(|p| p.parse::<u16>().ok()) {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    text.parse::<SocketAddr>().map_err(|_| HttpError::Address(text.to_owned()))
}

/// What the handlers read.
#[derive(Debug)]
pub struct HttpState {
    /// The status snapshot.
    pub status: StatusReceiver,
    /// Liveness and readiness thresholds.
    pub settings: HealthSettings,
    /// The Prometheus exporter.
    pub exporter: Exporter,
}

/// A bound server, ready to [`serve`](Server::serve).
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    state: Arc<HttpState>,
}

impl Server {
    /// Binds `address` (so a bad address fails at start-up, before any lease is taken).
    ///
    /// # Errors
    /// [`HttpError::Bind`].
    pub async fn bind(address: SocketAddr, state: HttpState) -> Result<Self, HttpError> {
        let listener = TcpListener::bind(address).await.map_err(|source| HttpError::Bind { address, source })?;
        Ok(Self { listener, state: Arc::new(state) })
    }

    /// The bound address (the port is chosen by the system for port 0).
    ///
    /// # Errors
    /// When the socket has no local address (not expected).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `stop` is cancelled, then lets open requests finish (bounded).
    pub async fn serve(self, stop: CancellationToken) {
        if let Ok(address) = self.listener.local_addr() {
            info!(%address, "operations HTTP server listening (/metrics, /healthz, /readyz, /status)");
        }
        let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let mut connections = JoinSet::new();
        loop {
            let permit = tokio::select! {
                () = stop.cancelled() => break,
                permit = permits.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
            };
            let accepted = tokio::select! {
                () = stop.cancelled() => break,
                accepted = self.listener.accept() => accepted,
                Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            };
            let (stream, peer) = match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    warn!(error = %e, "operations HTTP server: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let state = self.state.clone();
            let stop = stop.clone();
            connections.spawn(async move {
                let _permit = permit;
                let service = service_fn(move |request| {
                    let state = state.clone();
                    async move { Ok::<_, Infallible>(handle(&state, &request)) }
                });
                let mut builder = hyper::server::conn::http1::Builder::new();
                builder.timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT);
                let connection = builder.serve_connection(TokioIo::new(stream), service);
                tokio::pin!(connection);
                tokio::select! {
                    result = connection.as_mut() => {
                        if let Err(e) = result {
                            debug!(%peer, error = %e, "operations HTTP connection ended with an error");
                        }
                    }
                    () = stop.cancelled() => {
                        connection.as_mut().graceful_shutdown();
                        let _ = tokio::time::timeout(Duration::from_secs(2), connection).await;
                    }
                }
            });
            // Reap finished connections without waiting.
            while connections.try_join_next().is_some() {}
        }
        let _ =
            tokio::time::timeout(Duration::from_secs(3), async { while connections.join_next().await.is_some() {} })
                .await;
        connections.abort_all();
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn handle(state: &HttpState, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n".to_owned());
        r.headers_mut().insert(hyper::header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let status = state.status.borrow().clone();
    let now = Instant::now();
    match request.uri().path() {
        "/metrics" => match state.exporter.encode() {
            Ok(body) => {
                let mut r = text(StatusCode::OK, body);
                r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(METRICS_CONTENT_TYPE));
                r
            }
            Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot encode metrics: {e}\n")),
        },
        "/healthz" => match health::live(&status, &state.settings, now) {
            Ok(()) => text(StatusCode::OK, "ok\n".to_owned()),
            Err(reason) => text(StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")),
        },
        "/readyz" => match health::ready(&status, &state.settings, now) {
            Ok(()) => text(StatusCode::OK, "ready\n".to_owned()),
            Err(reasons) => text(StatusCode::SERVICE_UNAVAILABLE, reasons),
        },
        "/status" | "/" => text(StatusCode::OK, health::render(&status, &state.settings, now)),
        _ => text(StatusCode::NOT_FOUND, "not found: try /metrics, /healthz, /readyz or /status\n".to_owned()),
    }
}

/// Fetches `path` from a running daemon's server with a plain HTTP/1.0 request (for the
/// `status` command). Returns the status code and the body.
///
/// # Errors
/// I/O errors and malformed answers, as text.
pub async fn get(address: SocketAddr, path: &str, within: Duration) -> Result<(u16, String), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut stream =
            tokio::net::TcpStream::connect(address).await.map_err(|e| format!("cannot connect to {address}: {e}"))?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: {address}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.map_err(|e| format!("cannot send to {address}: {e}"))?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.map_err(|e| format!("cannot read from {address}: {e}"))?;
        let raw = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = raw.split_once("\r\n\r\n").ok_or_else(|| format!("{address}: not an HTTP answer"))?;
        let code = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse::<u16>().ok())
            .ok_or_else(|| format!("{address}: not an HTTP answer"))?;
        Ok((code, body.to_owned()))
    };
    tokio::time::timeout(within, exchange).await.map_err(|_| format!("{address}: no answer within {within:?}"))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{StatusPublisher, WorkerPhase, WorkerStatus};

    #[test]
    fn addresses() {
        assert_eq!(parse_address("9090").ok(), Some(SocketAddr::from(([127, 0, 0, 1], 9090))));
        assert_eq!(parse_address("0.0.0.0:80").ok(), Some(SocketAddr::from(([0, 0, 0, 0], 80))));
        assert_eq!(parse_address("localhost:81").ok(), Some(SocketAddr::from(([127, 0, 0, 1], 81))));
        assert!(parse_address("[::1]:9").is_ok());
        assert!(parse_address("example.com:80").is_err());
        assert!(parse_address("99999").is_err());
    }

    #[tokio::test]
    async fn serves_the_endpoints_and_stops() {
        let (publisher, rx) = StatusPublisher::new(WorkerStatus::starting("w", "app", "app"));
        let exporter = Exporter::new(rx.clone(), HealthSettings::default(), None);
        let state = HttpState { status: rx, settings: HealthSettings::default(), exporter };
        let server = Server::bind(SocketAddr::from(([127, 0, 0, 1], 0)), state).await.expect("binds");
        let address = server.local_addr().expect("address");
        let stop = CancellationToken::new();
        let task = tokio::spawn(server.serve(stop.clone()));
        let within = Duration::from_secs(5);

        let (code, body) = get(address, "/healthz", within).await.expect("healthz");
        assert_eq!((code, body.as_str()), (200, "ok\n"));
        let (code, body) = get(address, "/readyz", within).await.expect("readyz");
        assert_eq!(code, 503, "{body}");
        assert!(body.starts_with("starting"), "{body}");
        let (code, body) = get(address, "/metrics", within).await.expect("metrics");
        assert_eq!(code, 200);
        assert!(body.contains("multilangd_worker_phase{phase=\"starting\"} 1"), "{body}");
        let (code, _) = get(address, "/nope", within).await.expect("404");
        assert_eq!(code, 404);

        publisher.update(|s| s.phase = WorkerPhase::Stopped);
        let (code, body) = get(address, "/healthz", within).await.expect("healthz");
        assert_eq!((code, body.as_str()), (503, "the worker has stopped\n"));

        stop.cancel();
        tokio::time::timeout(Duration::from_secs(5), task).await.expect("stops").expect("no panic");
        assert!(get(address, "/healthz", Duration::from_secs(1)).await.is_err(), "closed after stop");
    }
}
