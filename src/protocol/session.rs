//! One child's protocol exchange: send an action, serve checkpoints, await the status.
//!
//! A [`ProtocolSession`] owns the child's stdin and stdout. Stdout is read
//! **continuously** by a reader task owned by the session (aborted when the session is
//! dropped): it splits lines ([`LineReader`]), skips and logs noise, and queues only
//! protocol messages in a bounded channel, so a child printing debug output never blocks
//! on a full pipe, even between actions.
//!
//! # The exchange ([`ProtocolSession::perform`])
//! 1. The action's line is written and flushed.
//! 2. Queued messages are taken in order until a `status` arrives:
//!    - a checkpoint request is served and its reply written and flushed before the next
//!      message is looked at. Without a checkpointer (`initialize`, `leaseLost`: pass
//!      `None`) the reply is `InvalidStateException`; otherwise the checkpointer decides
//!      (the session does not validate positions) and the reply carries
//!      [`CheckpointError::wire_name`] or `null`. A request whose fields cannot be read
//!      (e.g. `"subSequenceNumber":"abc"`) is answered with `IllegalArgumentException`
//!      without calling the checkpointer (Java skips such a line and the child then waits
//!      forever for its reply);
//!    - echoed daemon actions are ignored;
//!    - a `status` whose `responseFor` is exactly the action's name ends the action;
//!      anything else (another action, wrong case, missing or `null`) is
//!      [`ProtocolErrorKind::StatusMismatch`].
//! 3. EOF on stdout while waiting is [`ProtocolErrorKind::ChildClosedStdout`]; a failed
//!    write is [`ProtocolErrorKind::WriteFailed`].
//!
//! # Unsolicited lines between actions
//! Messages the child writes while no action is outstanding stay queued and are consumed
//! by the next action's wait, exactly like Java (which only reads during a wait): an
//! unsolicited checkpoint request is served in the next action's context (so it gets
//! `InvalidStateException` if that action is `leaseLost`), and a stray `status` becomes
//! the next action's answer (and then usually mismatches).
//!
//! # Timeouts
//! With `timeoutInSeconds` set, each wait for the next *protocol message* is bounded by
//! it; noise does not reset the clock (the reader never forwards noise), every parsed
//! message does. The checkpointer call itself is not bounded. Writing a line (the action,
//! or a checkpoint reply) is bounded by the same duration, so a child that stops reading
//! its stdin cannot stall the daemon forever either.
//!
//! # Closing
//! [`ProtocolSession::close`] closes stdin (the child sees EOF) and drains stdout to EOF,
//! logging leftover messages without answering them. Bounding the drain in time is the
//! caller's job.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::process::ChildStdin;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::codec::{self, parse_line, truncate_for_log, Line, LineReader, NoiseReason, ParsedLine};
use super::messages::{Action, ActionKind, CheckpointReply, ChildMessage};
use super::{CheckpointError, Checkpointer};

/// How many parsed protocol messages may wait in the queue before the reader stops
/// reading (noise never takes a slot).
pub const QUEUE_CAPACITY: usize = 256;

/// A `processRecords` line is written to the pipe in pieces of about this size instead of
/// being built whole (a 10,000-record batch is megabytes of base64): the write buffer stays
/// this small per shard, and the child starts reading while the rest is encoded.
pub const WRITE_CHUNK_BYTES: usize = 64 * 1024;

/// Above this capacity the write buffer is released after a `processRecords` line was
/// written: an idle shard keeps only a small buffer (checkpoint replies and the other
/// actions fit in it), a busy one allocates its pieces again per batch.
const KEEP_WRITE_BUFFER: usize = 4 * 1024;

/// A protocol failure of one shard's child.
#[derive(Debug, thiserror::Error)]
#[error("shard {shard_id}: {action}: {kind} (last sent: {}; last received: {})",
    .last_sent.as_deref().unwrap_or("nothing"), .last_received.as_deref().unwrap_or("nothing"))]
pub struct ProtocolError {
    /// The shard whose child failed.
    pub shard_id: String,
    /// The action in progress.
    pub action: ActionKind,
    /// What went wrong.
    #[source]
    pub kind: ProtocolErrorKind,
    /// The last line written to the child (truncated).
    pub last_sent: Option<String>,
    /// The last protocol message received from the child (truncated).
    pub last_received: Option<String>,
}

/// The kinds of [`ProtocolError`].
#[derive(Debug, thiserror::Error)]
pub enum ProtocolErrorKind {
    /// The child's `status` does not acknowledge the action in progress.
    #[error("status mismatch: expected responseFor {:?}, got {}", .expected.wire_name(),
        .got.as_deref().map_or_else(|| "none".to_owned(), |g| format!("{g:?}")))]
    StatusMismatch {
        /// The action that was sent.
        expected: ActionKind,
        /// The child's `responseFor` (`None` when missing or null).
        got: Option<String>,
    },
    /// EOF on the child's stdout before the status (the child exited or closed it).
    #[error("the child closed its stdout")]
    ChildClosedStdout,
    /// Reading the child's stdout failed.
    #[error("reading the child's stdout failed")]
    ReadFailed(#[source] std::io::Error),
    /// Writing to the child's stdin failed (e.g. broken pipe: the child exited).
    #[error("writing to the child's stdin failed")]
    WriteFailed(#[source] std::io::Error),
    /// `timeoutInSeconds` expired.
    #[error("timed out after {after:?} waiting for {waiting_for}")]
    Timeout {
        /// The configured timeout.
        after: Duration,
        /// What the daemon was waiting for.
        waiting_for: &'static str,
    },
    /// The session was already closed.
    #[error("the session is closed")]
    Closed,
}

/// What the reader task hands to the session.
#[derive(Debug)]
enum Incoming {
    Message { message: ChildMessage, line: String },
    Eof,
    ReadFailed(std::io::Error),
}

/// The protocol exchange with one child (see the module docs).
///
/// Generic over the stream types so tests can use in-memory pipes; the defaults are the
/// child process's pipes. Must be created inside a Tokio runtime (it spawns its reader).
#[derive(Debug)]
pub struct ProtocolSession<W = ChildStdin> {
    shard_id: Arc<str>,
    stdin: Option<W>,
    incoming: mpsc::Receiver<Incoming>,
    reader: JoinHandle<()>,
    timeout: Option<Duration>,
    buf: Vec<u8>,
    last_sent: Option<String>,
    last_received: Option<String>,
}

impl<W> Drop for ProtocolSession<W> {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl<W: AsyncWrite + Unpin + Send> ProtocolSession<W> {
    /// Starts a session on a child's pipes. `timeout` is `timeoutInSeconds` (`None` or
    /// zero: wait forever).
    pub fn new<R>(shard_id: impl Into<String>, stdin: W, stdout: R, timeout: Option<Duration>) -> Self
    where
        R: AsyncRead + Unpin + Send + 'static,
    {
        let shard_id: Arc<str> = Arc::from(shard_id.into());
        let (tx, incoming) = mpsc::channel(QUEUE_CAPACITY);
        let reader = tokio::spawn(read_child_stdout(Arc::clone(&shard_id), stdout, tx));
        Self {
            shard_id,
            stdin: Some(stdin),
            incoming,
            reader,
            timeout: timeout.filter(|t| !t.is_zero()),
            buf: Vec::new(),
            last_sent: None,
            last_received: None,
        }
    }

    /// The shard this session serves.
    #[must_use]
    pub fn shard_id(&self) -> &str {
        &self.shard_id
    }

    /// Sends `action` and runs the exchange until the child acknowledges it (see the
    /// module docs). Pass `checkpointer: None` for `initialize` and `leaseLost` (Java
    /// semantics: requests are answered with `InvalidStateException`).
    ///
    /// # Errors
    /// A [`ProtocolError`] when the child answers with the wrong status, closes its
    /// stdout, cannot be written to, or the timeout expires. The session is unusable
    /// afterwards except for [`close`](Self::close).
    pub async fn perform(
        &mut self,
        action: Action<'_>,
        mut checkpointer: Option<&mut (dyn Checkpointer + '_)>,
    ) -> Result<(), ProtocolError> {
        let kind = action.kind();
        self.write_action(&action).await?;
        loop {
            match self.next_message(kind).await? {
                ChildMessage::Status { response_for } => {
                    if response_for.as_deref() == Some(kind.wire_name()) {
                        debug!(shard_id = %self.shard_id, action = %kind, "child acknowledged");
                        return Ok(());
                    }
                    return Err(
                        self.error(kind, ProtocolErrorKind::StatusMismatch { expected: kind, got: response_for })
                    );
                }
                ChildMessage::Checkpoint(request) => {
                    let result = match checkpointer.as_deref_mut() {
                        Some(checkpointer) => checkpointer.checkpoint(&request).await,
                        None => {
                            warn!(shard_id = %self.shard_id, action = %kind,
                                sequence_number = ?request.sequence_number,
                                "was asked to checkpoint but no checkpointer was provided");
                            Err(CheckpointError::InvalidState(format!("no checkpointer during {kind}")))
                        }
                    };
                    if let Err(error) = &result {
                        debug!(shard_id = %self.shard_id, action = %kind, %error, "checkpoint failed");
                    }
                    let reply = CheckpointReply {
                        sequence_number: request.sequence_number.as_deref(),
                        sub_sequence_number: request.sub_sequence_number,
                        error: result.as_ref().err().map(CheckpointError::wire_name),
                    };
                    self.send_reply(kind, &reply).await?;
                }
                ChildMessage::InvalidCheckpoint { sequence_number, problem } => {
                    warn!(shard_id = %self.shard_id, action = %kind, %problem, "unreadable checkpoint request");
                    let reply = CheckpointReply {
                        sequence_number: sequence_number.as_deref(),
                        sub_sequence_number: None,
                        error: Some(CheckpointError::IllegalArgument(String::new()).wire_name()),
                    };
                    self.send_reply(kind, &reply).await?;
                }
                ChildMessage::Ignored { action: echoed } => {
                    debug!(shard_id = %self.shard_id, action = %kind, echoed, "ignoring daemon action echoed by the child");
                }
            }
        }
    }

    /// Closes the child's stdin, then reads its stdout until EOF, logging leftover
    /// protocol messages (they are not answered). Returns how many there were. Noise is
    /// logged by the reader as usual. Does not bound the time: wrap it in a timeout.
    pub async fn close(mut self) -> usize {
        if let Some(mut stdin) = self.stdin.take() {
            if let Err(error) = stdin.shutdown().await {
                debug!(shard_id = %self.shard_id, %error, "closing the child's stdin");
            }
        }
        let mut drained = 0;
        while let Some(incoming) = self.incoming.recv().await {
            match incoming {
                Incoming::Message { line, .. } => {
                    info!(shard_id = %self.shard_id, %line, "drained line from the child's stdout");
                    drained += 1;
                }
                Incoming::Eof => break,
                Incoming::ReadFailed(error) => {
                    warn!(shard_id = %self.shard_id, %error, "reading the child's stdout failed while draining");
                    break;
                }
            }
        }
        drained
    }

    /// Writes and flushes the line of `action`, bounded by the timeout. A `processRecords`
    /// line goes out in pieces of [`WRITE_CHUNK_BYTES`] (the bytes are those of
    /// `codec::encode_action`).
    async fn write_action(&mut self, action: &Action<'_>) -> Result<(), ProtocolError> {
        let kind = action.kind();
        let Action::ProcessRecords { records, millis_behind_latest } = action else {
            self.buf.clear();
            codec::encode_action(action, &self.shard_id, &mut self.buf);
            debug!(shard_id = %self.shard_id, action = %kind, bytes = self.buf.len(), "sending action");
            return self.write_buf(kind).await;
        };
        let Some(stdin) = self.stdin.as_mut() else {
            return Err(self.error(kind, ProtocolErrorKind::Closed));
        };
        let buf = &mut self.buf;
        let mut head: Vec<u8> = Vec::new();
        let mut total = 0_usize;
        let write = async {
            buf.clear();
            codec::encode_process_records_head(buf);
            for (i, record) in records.iter().enumerate() {
                codec::encode_process_records_record(buf, i, record);
                if buf.len() >= WRITE_CHUNK_BYTES {
                    if head.is_empty() {
                        head.extend_from_slice(&buf[..buf.len().min(codec::LOG_PREFIX_BYTES)]);
                    }
                    total += buf.len();
                    stdin.write_all(buf).await?;
                    buf.clear();
                }
            }
            codec::encode_process_records_tail(buf, *millis_behind_latest);
            if head.is_empty() {
                head.extend_from_slice(&buf[..buf.len().min(codec::LOG_PREFIX_BYTES)]);
            }
            total += buf.len();
            stdin.write_all(buf).await?;
            stdin.flush().await
        };
        let result = match self.timeout {
            Some(after) => tokio::time::timeout(after, write).await.map_err(|_| after),
            None => Ok(write.await),
        };
        // `total` counts the newline; the logged line leaves it out, like `write_buf`.
        let line_len = total.saturating_sub(1);
        self.last_sent = Some(codec::truncate_prefix_for_log(&head[..head.len().min(line_len)], line_len));
        debug!(shard_id = %self.shard_id, action = %kind, records = records.len(), bytes = total, "sent action");
        if self.buf.capacity() > KEEP_WRITE_BUFFER {
            self.buf = Vec::new();
        }
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.error(kind, ProtocolErrorKind::WriteFailed(e))),
            Err(after) => {
                Err(self.error(kind, ProtocolErrorKind::Timeout { after, waiting_for: "the child to read its stdin" }))
            }
        }
    }

    async fn send_reply(&mut self, kind: ActionKind, reply: &CheckpointReply<'_>) -> Result<(), ProtocolError> {
        self.buf.clear();
        codec::encode_checkpoint_reply(reply, &mut self.buf);
        self.write_buf(kind).await
    }

    /// Writes and flushes `self.buf` (one line), bounded by the timeout.
    async fn write_buf(&mut self, kind: ActionKind) -> Result<(), ProtocolError> {
        self.last_sent = Some(truncate_for_log(self.buf.strip_suffix(b"\n").unwrap_or(&self.buf)));
        let Some(stdin) = self.stdin.as_mut() else {
            return Err(self.error(kind, ProtocolErrorKind::Closed));
        };
        let write = async {
            stdin.write_all(&self.buf).await?;
            stdin.flush().await
        };
        let result = match self.timeout {
            Some(after) => match tokio::time::timeout(after, write).await {
                Ok(result) => result,
                Err(_) => {
                    return Err(self
                        .error(kind, ProtocolErrorKind::Timeout { after, waiting_for: "the child to read its stdin" }))
                }
            },
            None => write.await,
        };
        result.map_err(|e| self.error(kind, ProtocolErrorKind::WriteFailed(e)))
    }

    /// The next queued protocol message, bounded by the timeout.
    async fn next_message(&mut self, kind: ActionKind) -> Result<ChildMessage, ProtocolError> {
        let received = match self.timeout {
            Some(after) => match tokio::time::timeout(after, self.incoming.recv()).await {
                Ok(received) => received,
                Err(_) => {
                    warn!(shard_id = %self.shard_id, action = %kind, ?after,
                        "timed out waiting for the child's status message");
                    return Err(
                        self.error(kind, ProtocolErrorKind::Timeout { after, waiting_for: "the child's next message" })
                    );
                }
            },
            None => self.incoming.recv().await,
        };
        match received {
            Some(Incoming::Message { message, line }) => {
                self.last_received = Some(line);
                Ok(message)
            }
            Some(Incoming::Eof) | None => Err(self.error(kind, ProtocolErrorKind::ChildClosedStdout)),
            Some(Incoming::ReadFailed(e)) => Err(self.error(kind, ProtocolErrorKind::ReadFailed(e))),
        }
    }

    fn error(&self, action: ActionKind, kind: ProtocolErrorKind) -> ProtocolError {
        ProtocolError {
            shard_id: self.shard_id.to_string(),
            action,
            kind,
            last_sent: self.last_sent.clone(),
            last_received: self.last_received.clone(),
        }
    }
}

/// The reader task: lines → parsed messages → queue; noise is logged and dropped.
async fn read_child_stdout<R: AsyncRead + Unpin>(shard_id: Arc<str>, stdout: R, tx: mpsc::Sender<Incoming>) {
    let mut lines = LineReader::new(stdout);
    loop {
        let incoming = match lines.next_line().await {
            Ok(Some(Line::Text(bytes))) => match parse_line(bytes) {
                ParsedLine::Blank => continue,
                ParsedLine::Noise(reason) => {
                    log_noise(&shard_id, &reason, bytes);
                    continue;
                }
                ParsedLine::Message(message) => Incoming::Message { message, line: truncate_for_log(bytes) },
            },
            Ok(Some(Line::Overlong { prefix, len })) => {
                log_noise(&shard_id, &NoiseReason::Overlong { len }, prefix);
                continue;
            }
            Ok(None) => Incoming::Eof,
            Err(e) => Incoming::ReadFailed(e),
        };
        let last = !matches!(incoming, Incoming::Message { .. });
        if tx.send(incoming).await.is_err() || last {
            return;
        }
    }
}

fn log_noise(shard_id: &str, reason: &NoiseReason, bytes: &[u8]) {
    info!(shard_id, %reason, line = %truncate_for_log(bytes), "skipping unexpected line on the child's stdout");
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use async_trait::async_trait;
    use tokio::io::{AsyncBufReadExt, BufReader, DuplexStream};

    use super::*;
    use crate::model::Record;
    use crate::protocol::codec::tests::NoiseStream;
    use crate::protocol::CheckpointRequest;
    use crate::sequence::SequenceNumber;

    const SHARD: &str = "shardId-000000000003";
    const STATUS_INIT: &[u8] = b"{\"action\":\"status\",\"responseFor\":\"initialize\"}\n";

    fn pipes(capacity: usize) -> (DuplexStream, DuplexStream, DuplexStream, DuplexStream) {
        let (daemon_stdin, child_stdin) = tokio::io::duplex(capacity);
        let (child_stdout, daemon_stdout) = tokio::io::duplex(capacity);
        (daemon_stdin, daemon_stdout, child_stdin, child_stdout)
    }

    fn big_record(len: usize) -> Record {
        Record {
            data: bytes::Bytes::from(vec![7_u8; len]),
            partition_key: "pk".to_owned(),
            sequence_number: SequenceNumber::parse("1").unwrap(),
            sub_sequence_number: 0,
            approximate_arrival_timestamp_ms: 1,
        }
    }

    struct Accept(Vec<CheckpointRequest>);

    #[async_trait]
    impl Checkpointer for Accept {
        async fn checkpoint(&mut self, request: &CheckpointRequest) -> Result<(), CheckpointError> {
            self.0.push(request.clone());
            Ok(())
        }
    }

    #[tokio::test]
    async fn noise_between_actions_never_blocks_the_child() {
        let (stdin, stdout, child_in, mut child_out) = pipes(64 * 1024);
        let mut session = ProtocolSession::new(SHARD, stdin, stdout, None);
        // 4 MiB of noise (64 pipe buffers) with no action outstanding: the reader drains it.
        let noise = [b"debug output that nobody asked for\n".repeat(1000), vec![b'x'; 2 * 1024 * 1024], b"\n".to_vec()]
            .concat()
            .repeat(2);
        tokio::time::timeout(Duration::from_secs(60), child_out.write_all(&noise))
            .await
            .expect("the child's writes complete while the daemon is idle")
            .unwrap();
        let child = tokio::spawn(async move {
            let mut lines = BufReader::new(child_in);
            let mut line = String::new();
            lines.read_line(&mut line).await.unwrap();
            child_out.write_all(STATUS_INIT).await.unwrap();
            (line, child_out)
        });
        session.perform(Action::Initialize { checkpoint: None }, None).await.unwrap();
        let (line, _child_out) = child.await.unwrap();
        assert!(line.starts_with("{\"action\":\"initialize\""));
    }

    #[tokio::test]
    async fn a_hundred_mb_of_stdout_noise_does_not_stall() {
        let groups = [(1_000_000, 60), (400, 100_000), (3, 5_000_000), (1, 20_000_000)];
        let mut tail = b"{\"action\":\"checkpoint\",\"sequenceNumber\":\"5\"}\n".to_vec();
        tail.extend_from_slice(b"{\"action\":\"status\",\"responseFor\":\"processRecords\"}\n");
        assert!(NoiseStream::total(&groups, &tail) > 100_000_000);
        let (stdin, _child_in) = tokio::io::duplex(1024 * 1024);
        let mut session = ProtocolSession::new(SHARD, stdin, NoiseStream::new(&groups, &tail), None);
        let mut checkpointer = Accept(Vec::new());
        let started = Instant::now();
        tokio::time::timeout(
            Duration::from_secs(300),
            session
                .perform(Action::ProcessRecords { records: &[], millis_behind_latest: None }, Some(&mut checkpointer)),
        )
        .await
        .expect("the session gets through 100 MB of noise")
        .unwrap();
        assert_eq!(
            checkpointer.0,
            vec![CheckpointRequest { sequence_number: Some("5".to_owned()), sub_sequence_number: None }]
        );
        eprintln!("100 MB of noise read in {:?}", started.elapsed());
    }

    #[tokio::test(start_paused = true)]
    async fn a_child_that_stops_reading_stdin_times_out_the_write() {
        let (stdin, stdout, _child_in, _child_out) = pipes(1024);
        let mut session = ProtocolSession::new(SHARD, stdin, stdout, Some(Duration::from_secs(5)));
        let records = [big_record(100_000)];
        let err = session
            .perform(Action::ProcessRecords { records: &records, millis_behind_latest: Some(1) }, None)
            .await
            .unwrap_err();
        assert!(
            matches!(err.kind, ProtocolErrorKind::Timeout { after, waiting_for } if after == Duration::from_secs(5) && waiting_for.contains("stdin")),
            "{err}"
        );
    }

    /// A large processRecords line goes out in pieces: the child reads exactly the bytes
    /// `encode_action` builds, the session's buffer stays near one piece, and the logged
    /// line names the full length.
    #[tokio::test]
    async fn a_large_process_records_line_is_streamed_byte_identical() {
        let (stdin, stdout, child_in, mut child_out) = pipes(16 * 1024);
        let mut session = ProtocolSession::new(SHARD, stdin, stdout, None);
        let records: Vec<Record> = (0..300).map(|i| big_record(1000 + i)).collect();
        let mut expected = Vec::new();
        codec::encode_action(
            &Action::ProcessRecords { records: &records, millis_behind_latest: Some(7) },
            SHARD,
            &mut expected,
        );
        assert!(expected.len() > 4 * WRITE_CHUNK_BYTES, "the line spans several pieces");
        let child = tokio::spawn(async move {
            let mut line = Vec::new();
            let mut reader = BufReader::new(child_in);
            reader.read_until(b'\n', &mut line).await.unwrap();
            child_out.write_all(b"{\"action\":\"status\",\"responseFor\":\"processRecords\"}\n").await.unwrap();
            (line, reader, child_out)
        });
        session
            .perform(Action::ProcessRecords { records: &records, millis_behind_latest: Some(7) }, None)
            .await
            .unwrap();
        assert!(session.buf.capacity() <= KEEP_WRITE_BUFFER, "write buffer grew to {}", session.buf.capacity());
        let (line, _reader, _out) = child.await.unwrap();
        assert_eq!(line.len(), expected.len());
        assert!(line == expected, "the streamed line differs from encode_action's");
        let logged = session.last_sent.clone().unwrap();
        assert!(logged.starts_with("{\"action\":\"processRecords\",\"records\":[{\"data\":"), "{logged}");
        assert!(logged.ends_with(&format!("... ({} bytes)", expected.len() - 1)), "{logged}");
    }

    #[tokio::test(start_paused = true)]
    async fn errors_name_the_shard_the_action_and_the_last_lines() {
        let (stdin, stdout, child_in, mut child_out) = pipes(64 * 1024);
        let mut session = ProtocolSession::new(SHARD, stdin, stdout, None);
        child_out.write_all(b"{\"action\":\"status\",\"responseFor\":\"initialise\"}\n").await.unwrap();
        let err = session.perform(Action::Initialize { checkpoint: None }, None).await.unwrap_err();
        let text = err.to_string();
        assert!(text.contains(SHARD), "{text}");
        assert!(
            text.contains("initialize: status mismatch: expected responseFor \"initialize\", got \"initialise\""),
            "{text}"
        );
        assert!(text.contains("last sent: {\"action\":\"initialize\""), "{text}");
        assert!(text.contains("last received: {\"action\":\"status\",\"responseFor\":\"initialise\"}"), "{text}");
        assert_eq!(err.action, ActionKind::Initialize);

        // EOF: the child closes its stdout; later actions fail the same way.
        drop(child_out);
        let err = session.perform(Action::LeaseLost, None).await.unwrap_err();
        assert!(matches!(err.kind, ProtocolErrorKind::ChildClosedStdout), "{err}");
        let err = session.perform(Action::LeaseLost, None).await.unwrap_err();
        assert!(matches!(err.kind, ProtocolErrorKind::ChildClosedStdout), "{err}");
        drop(child_in);
        assert_eq!(session.close().await, 0);
    }

    #[tokio::test]
    async fn dropping_the_session_stops_its_reader() {
        let (stdin, stdout, _child_in, mut child_out) = pipes(1024);
        let session = ProtocolSession::new(SHARD, stdin, stdout, None);
        child_out.write_all(b"hello\n").await.unwrap();
        drop(session);
        // The aborted reader drops the read end: the child's writes fail with EPIPE.
        let result = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let Err(e) = child_out.write_all(&[b'x'; 4096]).await {
                    return e;
                }
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("reader task stopped");
        assert_eq!(result.kind(), std::io::ErrorKind::BrokenPipe);
    }

    /// The default stream types: a real child process; closing the session closes its
    /// stdin (dropping `ChildStdin`, whose shutdown is a no-op) so the child exits.
    #[tokio::test]
    async fn works_with_a_real_child_process() {
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(
                "read line; printf '\\n{\"action\": \"checkpoint\", \"sequenceNumber\": null}\\n'; read reply; \
                 case \"$reply\" in *'\"error\":null}') ;; *) exit 3;; esac; printf '\\n{\"action\": \"status\", \"responseFor\": \"shardEnded\"}\\n'; \
                 cat >/dev/null; echo '{\"action\":\"checkpoint\"}'",
            )
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut session: ProtocolSession = ProtocolSession::new(SHARD, stdin, stdout, Some(Duration::from_secs(30)));
        let mut checkpointer = Accept(Vec::new());
        session.perform(Action::ShardEnded, Some(&mut checkpointer)).await.unwrap();
        assert_eq!(checkpointer.0.len(), 1);
        let drained = tokio::time::timeout(Duration::from_secs(30), session.close()).await.expect("child saw EOF");
        assert_eq!(drained, 1);
        assert!(child.wait().await.unwrap().success());
    }
}
