//! Encoding daemon messages and reading the child's output.
//!
//! # Writing
//! [`encode_action`] and [`encode_checkpoint_reply`] append one complete line (JSON
//! object + `\n`) to a caller-owned `Vec<u8>`, in the exact bytes the Java daemon writes
//! (see [`super::messages`] for the format). `processRecords` is the hot path (up to
//! 10,000 records, many MiB): the buffer is reserved once for the whole line and record
//! payloads are base64-encoded directly into it, with no intermediate strings.
//!
//! # Reading the child's output
//! [`LineReader`] splits the child's stdout into lines the way Java's `BufferedReader`
//! does: `\n`, `\r\n` and a lone `\r` all end a line, and a final line without a
//! terminator is still delivered at EOF. Memory stays bounded no matter what the child
//! writes: a line longer than the reader's limit ([`MAX_CHILD_LINE_BYTES`] by default;
//! protocol messages from a child are tiny) is not buffered whole but streamed past,
//! keeping only a short prefix for the log ([`Line::Overlong`]).
//!
//! [`parse_line`] classifies one line, leniently, like the Java daemon:
//! - empty and whitespace-only lines are skipped silently ([`ParsedLine::Blank`]);
//! - only the **first JSON value** on a line counts; anything after it (trailing text, a
//!   second object) is ignored;
//! - noise ([`ParsedLine::Noise`]), skipped and logged by the caller: anything that is not
//!   a JSON object (plain text, a UTF-8 BOM prefix, the literal `null` — Java crashes on
//!   it —, other scalars and arrays), JSON with comments or trailing commas, an object
//!   without `action`, with a non-string or duplicated `action`, or with an unknown
//!   `action` (the check is case-sensitive; `"record"` is not a top-level action);
//! - `status` and `checkpoint` become [`ChildMessage`]s; `action` may appear anywhere in
//!   the object; for other duplicated keys the last value wins; **unknown fields are
//!   accepted** (Java skips such a line, which leaves both sides waiting forever);
//! - the daemon-side actions (`initialize`, `processRecords`, `shutdown`,
//!   `shutdownRequested`, `leaseLost`, `shardEnded`) echoed by a child are
//!   [`ChildMessage::Ignored`].
//!
//! Sequence numbers keep their exact text: a JSON number is taken from the raw token,
//! never through `f64`.

use std::fmt;
use std::io;

use base64::Engine as _;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::messages::{Action, CheckpointReply, ChildMessage};
use super::CheckpointRequest;
use crate::stream::Record;

/// Default limit for one line of child output; longer lines are discarded as noise.
pub const MAX_CHILD_LINE_BYTES: usize = 1024 * 1024;

/// How many bytes of a noise line are kept for the log.
pub const LOG_PREFIX_BYTES: usize = 256;

/// How much the reader asks the pipe for at once.
const READ_CHUNK: usize = 64 * 1024;

// ---------------------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------------------

/// Appends the line (`{...}\n`) for `action` to `out`. `shard_id` is used by
/// `initialize` only.
pub fn encode_action(action: &Action<'_>, shard_id: &str, out: &mut Vec<u8>) {
    match action {
        Action::Initialize { checkpoint } => {
            out.extend_from_slice(b"{\"action\":\"initialize\",\"shardId\":");
            write_str(out, shard_id);
            out.extend_from_slice(b",\"sequenceNumber\":");
            match checkpoint {
                Some(c) => write_str(out, c.position.as_str()),
                None => out.extend_from_slice(b"null"),
            }
            out.extend_from_slice(b",\"subSequenceNumber\":");
            match checkpoint {
                Some(c) => write_u64(out, c.sub_sequence),
                None => out.extend_from_slice(b"null"),
            }
            out.extend_from_slice(b"}\n");
        }
        Action::ProcessRecords { records, millis_behind_latest } => {
            out.reserve(process_records_len_hint(records));
            out.extend_from_slice(b"{\"action\":\"processRecords\",\"records\":[");
            for (i, record) in records.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_record(out, record);
            }
            out.extend_from_slice(b"],\"millisBehindLatest\":");
            write_opt_i64(out, *millis_behind_latest);
            out.extend_from_slice(b"}\n");
        }
        Action::ShutdownRequested => out.extend_from_slice(b"{\"action\":\"shutdownRequested\"}\n"),
        Action::LeaseLost => out.extend_from_slice(b"{\"action\":\"leaseLost\"}\n"),
        Action::ShardEnded => out.extend_from_slice(b"{\"action\":\"shardEnded\"}\n"),
    }
}

/// Appends the line for a checkpoint reply to `out`.
pub fn encode_checkpoint_reply(reply: &CheckpointReply<'_>, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"action\":\"checkpoint\",\"sequenceNumber\":");
    match reply.sequence_number {
        Some(s) => write_str(out, s),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"subSequenceNumber\":");
    write_opt_i64(out, reply.sub_sequence_number);
    out.extend_from_slice(b",\"error\":");
    match reply.error {
        Some(e) => write_str(out, e),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b"}\n");
}

/// An upper bound (for ASCII keys, exact up to escapes) of a `processRecords` line.
fn process_records_len_hint(records: &[Record]) -> usize {
    const FIXED: usize = 200;
    records.iter().fold(FIXED, |acc, r| {
        acc.saturating_add(base64_len(r.data.len()))
            .saturating_add(r.partition_key.len())
            .saturating_add(r.sequence_number.as_str().len())
            .saturating_add(FIXED)
    })
}

fn base64_len(n: usize) -> usize {
    n.div_ceil(3).saturating_mul(4)
}

fn write_record(out: &mut Vec<u8>, record: &Record) {
    out.extend_from_slice(b"{\"data\":\"");
    write_base64(out, &record.data);
    out.extend_from_slice(b"\",\"partitionKey\":");
    write_str(out, &record.partition_key);
    out.extend_from_slice(b",\"sequenceNumber\":");
    write_str(out, record.sequence_number.as_str());
    out.extend_from_slice(b",\"approximateArrivalTimestamp\":");
    write_i64(out, record.approximate_arrival_timestamp_ms);
    out.extend_from_slice(b",\"subSequenceNumber\":");
    write_u64(out, record.sub_sequence_number);
    out.extend_from_slice(b",\"action\":\"record\"}");
}

/// Standard base64 with padding, encoded in place at the end of `out`.
fn write_base64(out: &mut Vec<u8>, data: &[u8]) {
    let start = out.len();
    out.resize(start + base64_len(data.len()), 0);
    let written = base64::engine::general_purpose::STANDARD
        .encode_slice(data, &mut out[start..])
        .expect("invariant: the slice was sized with the exact padded base64 length");
    out.truncate(start + written);
}

/// A JSON string escaped exactly like Jackson's default generator: `"` and `\`,
/// `\b \t \n \f \r`, other C0 controls as `\u00XX` (upper-case hex); nothing else.
fn write_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if short.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0x0f)]);
        } else {
            out.extend_from_slice(short);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

fn write_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0_u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        // `n % 10` is below 10, so the cast is lossless.
        #[allow(clippy::cast_possible_truncation)]
        let digit = (n % 10) as u8;
        digits[i] = b'0' + digit;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

fn write_i64(out: &mut Vec<u8>, n: i64) {
    if n < 0 {
        out.push(b'-');
    }
    write_u64(out, n.unsigned_abs());
}

fn write_opt_i64(out: &mut Vec<u8>, n: Option<i64>) {
    match n {
        Some(n) => write_i64(out, n),
        None => out.extend_from_slice(b"null"),
    }
}

// ---------------------------------------------------------------------------------------
// Parsing one line
// ---------------------------------------------------------------------------------------

/// What one line of child output is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParsedLine {
    /// Empty or whitespace-only: skipped silently.
    Blank,
    /// Not a protocol message: skipped and logged.
    Noise(NoiseReason),
    /// A protocol message.
    Message(ChildMessage),
}

/// Why a line was skipped as noise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoiseReason {
    /// The line does not start with a JSON object (text, BOM, scalar, array, `null`).
    NotAnObject,
    /// It starts like an object but is not valid JSON (comments, trailing commas, ...).
    InvalidJson(String),
    /// The object has no `action`.
    MissingAction,
    /// `action` is not a string.
    ActionNotString,
    /// `action` appears twice.
    DuplicateAction,
    /// `action` names no message the daemon accepts from a child.
    UnknownAction(String),
    /// The line exceeded the line-length limit and was discarded.
    Overlong {
        /// Its length in bytes (without terminator).
        len: u64,
    },
}

impl fmt::Display for NoiseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAnObject => f.write_str("not a JSON object"),
            Self::InvalidJson(e) => write!(f, "invalid JSON: {e}"),
            Self::MissingAction => f.write_str("no \"action\""),
            Self::ActionNotString => f.write_str("\"action\" is not a string"),
            Self::DuplicateAction => f.write_str("duplicate \"action\""),
            Self::UnknownAction(a) => write!(f, "unknown action {a:?}"),
            Self::Overlong { len } => write!(f, "line of {len} bytes exceeds the limit"),
        }
    }
}

/// Daemon-side actions a child may echo; parsed and ignored (Java's `Message` subtypes).
const ECHOED_ACTIONS: [&str; 6] =
    ["initialize", "processRecords", "shutdown", "shutdownRequested", "leaseLost", "shardEnded"];

/// Classifies one line of child output (without its terminator).
#[must_use]
pub fn parse_line(line: &[u8]) -> ParsedLine {
    let Some(first) = line.iter().position(|b| !matches!(b, b' ' | b'\t' | b'\x0b' | b'\x0c')) else {
        return ParsedLine::Blank;
    };
    if line[first] != b'{' {
        return ParsedLine::Noise(NoiseReason::NotAnObject);
    }
    let mut values = serde_json::Deserializer::from_slice(line).into_iter::<Fields<'_>>();
    let fields = match values.next() {
        Some(Ok(fields)) => fields,
        Some(Err(e)) => return ParsedLine::Noise(NoiseReason::InvalidJson(e.to_string())),
        None => return ParsedLine::Blank,
    };
    classify(&fields)
}

fn classify(fields: &Fields<'_>) -> ParsedLine {
    if fields.duplicate_action {
        return ParsedLine::Noise(NoiseReason::DuplicateAction);
    }
    let Some(action) = fields.action else {
        return ParsedLine::Noise(NoiseReason::MissingAction);
    };
    let action = match json_string(action) {
        Some(Ok(a)) => a,
        _ => return ParsedLine::Noise(NoiseReason::ActionNotString),
    };
    match action.as_str() {
        "status" => {
            let response_for = fields.response_for.and_then(|raw| match json_string(raw) {
                Some(Ok(s)) => Some(s),
                Some(Err(())) => None,
                None => (raw.get() != "null").then(|| raw.get().to_owned()),
            });
            ParsedLine::Message(ChildMessage::Status { response_for })
        }
        "checkpoint" => ParsedLine::Message(checkpoint_message(fields)),
        other => match ECHOED_ACTIONS.iter().find(|a| **a == other) {
            Some(echoed) => ParsedLine::Message(ChildMessage::Ignored { action: echoed }),
            None => ParsedLine::Noise(NoiseReason::UnknownAction(other.to_owned())),
        },
    }
}

fn checkpoint_message(fields: &Fields<'_>) -> ChildMessage {
    let sequence_number = match fields.sequence_number.map(sequence_text) {
        None => None,
        Some(Ok(text)) => text,
        Some(Err(problem)) => return ChildMessage::InvalidCheckpoint { sequence_number: None, problem },
    };
    match fields.sub_sequence_number.map(sub_sequence) {
        None => ChildMessage::Checkpoint(CheckpointRequest { sequence_number, sub_sequence_number: None }),
        Some(Ok(sub_sequence_number)) => {
            ChildMessage::Checkpoint(CheckpointRequest { sequence_number, sub_sequence_number })
        }
        Some(Err(problem)) => ChildMessage::InvalidCheckpoint { sequence_number, problem },
    }
}

/// `Some(Ok(s))` for a JSON string (decoded), `Some(Err(()))` for `null`, `None` for
/// any other value.
fn json_string(raw: &RawValue) -> Option<Result<String, ()>> {
    let text = raw.get();
    match text.as_bytes().first() {
        Some(b'"') => serde_json::from_str::<String>(text).ok().map(Ok),
        Some(b'n') => Some(Err(())),
        _ => None,
    }
}

/// The text of a `sequenceNumber`: strings decoded, numbers and booleans verbatim (as
/// Jackson coerces scalars to `String`), `null` → `None`.
fn sequence_text(raw: &RawValue) -> Result<Option<String>, String> {
    let text = raw.get();
    match text.as_bytes().first() {
        Some(b'"') => serde_json::from_str::<String>(text).map(Some).map_err(|e| e.to_string()),
        Some(b'n') => Ok(None),
        Some(b'{' | b'[') => Err(format!("sequenceNumber is not a scalar: {}", truncate_str(text))),
        _ => Ok(Some(text.to_owned())),
    }
}

/// A `subSequenceNumber`: `null` and `""` → `None`; integers as they are; floats truncated
/// toward zero; numeric strings parsed. Anything else (or outside the `i64` range) is
/// an error.
fn sub_sequence(raw: &RawValue) -> Result<Option<i64>, String> {
    let text = raw.get();
    let problem = || format!("subSequenceNumber is not a 64-bit integer: {}", truncate_str(text));
    match text.as_bytes().first() {
        Some(b'n') => Ok(None),
        Some(b'"') => {
            let s: String = serde_json::from_str(text).map_err(|_| problem())?;
            let s = s.trim();
            if s.is_empty() {
                Ok(None)
            } else {
                s.parse::<i64>().map(Some).map_err(|_| problem())
            }
        }
        Some(b'-' | b'0'..=b'9') => {
            if let Ok(n) = text.parse::<i64>() {
                return Ok(Some(n));
            }
            if !text.bytes().any(|b| matches!(b, b'.' | b'e' | b'E')) {
                return Err(problem());
            }
            let f: f64 = text.parse().map_err(|_| problem())?;
            let t = f.trunc();
            // i64::MIN is exactly representable; i64::MAX + 1 = 2^63 is the first value
            // out of range.
            #[allow(clippy::cast_precision_loss)]
            let (lo, hi) = (i64::MIN as f64, -(i64::MIN as f64));
            if t.is_finite() && t >= lo && t < hi {
                // In range and integral after the checks above.
                #[allow(clippy::cast_possible_truncation)]
                Ok(Some(t as i64))
            } else {
                Err(problem())
            }
        }
        _ => Err(problem()),
    }
}

fn truncate_str(s: &str) -> String {
    truncate_for_log(s.as_bytes())
}

/// The first [`LOG_PREFIX_BYTES`] of `bytes` as text (lossy UTF-8), with a marker when
/// cut.
#[must_use]
pub fn truncate_for_log(bytes: &[u8]) -> String {
    if bytes.len() <= LOG_PREFIX_BYTES {
        String::from_utf8_lossy(bytes).into_owned()
    } else {
        format!("{}... ({} bytes)", String::from_utf8_lossy(&bytes[..LOG_PREFIX_BYTES]), bytes.len())
    }
}

/// The fields of a child object the daemon looks at, as raw JSON tokens.
#[derive(Default)]
struct Fields<'a> {
    action: Option<&'a RawValue>,
    duplicate_action: bool,
    response_for: Option<&'a RawValue>,
    sequence_number: Option<&'a RawValue>,
    sub_sequence_number: Option<&'a RawValue>,
}

impl<'de: 'a, 'a> Deserialize<'de> for Fields<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(FieldsVisitor)
    }
}

struct FieldsVisitor;

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = Fields<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = Fields::default();
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Action => {
                    let value = map.next_value()?;
                    fields.duplicate_action |= fields.action.replace(value).is_some();
                }
                Key::ResponseFor => fields.response_for = Some(map.next_value()?),
                Key::SequenceNumber => fields.sequence_number = Some(map.next_value()?),
                Key::SubSequenceNumber => fields.sub_sequence_number = Some(map.next_value()?),
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(fields)
    }
}

enum Key {
    Action,
    ResponseFor,
    SequenceNumber,
    SubSequenceNumber,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(match v {
                    "action" => Key::Action,
                    "responseFor" => Key::ResponseFor,
                    "sequenceNumber" => Key::SequenceNumber,
                    "subSequenceNumber" => Key::SubSequenceNumber,
                    _ => Key::Other,
                })
            }
        }
        deserializer.deserialize_identifier(KeyVisitor)
    }
}

// ---------------------------------------------------------------------------------------
// Splitting lines
// ---------------------------------------------------------------------------------------

/// One line of child output.
#[derive(Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// A complete line, without its terminator.
    Text(&'a [u8]),
    /// A line longer than the limit, discarded without being buffered; only its first
    /// [`LOG_PREFIX_BYTES`] are kept.
    Overlong {
        /// The line's first bytes.
        prefix: &'a [u8],
        /// The line's full length (without terminator).
        len: u64,
    },
}

/// Splits a byte stream into lines on `\n`, `\r\n` or a lone `\r`, in bounded memory.
///
/// The internal buffer never grows beyond the line limit plus one read chunk (64 KiB).
#[derive(Debug)]
pub struct LineReader<R> {
    inner: R,
    buf: Vec<u8>,
    /// Unconsumed data is `buf[start..end]`.
    start: usize,
    end: usize,
    /// `buf[start..scanned]` holds no terminator.
    scanned: usize,
    /// The previous line ended with `\r`: a `\n` right after it belongs to it.
    skip_lf: bool,
    max_line: usize,
    prefix: Vec<u8>,
    eof: bool,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    /// A reader with the default limit ([`MAX_CHILD_LINE_BYTES`]).
    pub fn new(inner: R) -> Self {
        Self::with_limit(inner, MAX_CHILD_LINE_BYTES)
    }

    /// A reader that discards lines longer than `max_line` bytes.
    pub fn with_limit(inner: R, max_line: usize) -> Self {
        Self {
            inner,
            buf: Vec::new(),
            start: 0,
            end: 0,
            scanned: 0,
            skip_lf: false,
            max_line: max_line.max(1),
            prefix: Vec::new(),
            eof: false,
        }
    }

    /// The buffer's current allocation in bytes (for memory-bound tests and metrics).
    #[must_use]
    pub fn buffer_capacity(&self) -> usize {
        self.buf.capacity().max(self.prefix.capacity())
    }

    /// The next line; `Ok(None)` at EOF.
    ///
    /// # Errors
    /// Read errors of the underlying stream.
    pub async fn next_line(&mut self) -> io::Result<Option<Line<'_>>> {
        loop {
            if self.skip_lf && self.start < self.end {
                if self.buf[self.start] == b'\n' {
                    self.start += 1;
                }
                self.skip_lf = false;
                self.scanned = self.start;
            }
            if let Some(pos) = find_terminator(&self.buf[self.scanned..self.end]) {
                let at = self.scanned + pos;
                let line_start = self.start;
                self.skip_lf = self.buf[at] == b'\r';
                self.start = at + 1;
                self.scanned = self.start;
                return Ok(Some(Line::Text(&self.buf[line_start..at])));
            }
            self.scanned = self.end;
            if self.end - self.start > self.max_line {
                return self.discard_overlong().await.map(Some);
            }
            if self.eof {
                self.skip_lf = false;
                if self.start < self.end {
                    let line_start = self.start;
                    self.start = self.end;
                    self.scanned = self.end;
                    return Ok(Some(Line::Text(&self.buf[line_start..self.end])));
                }
                return Ok(None);
            }
            self.fill().await?;
        }
    }

    /// Reads more data into the buffer, compacting or growing it first.
    async fn fill(&mut self) -> io::Result<()> {
        if self.start > 0 && (self.end == self.buf.len() || self.start == self.end) {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.scanned -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            let cap = self.max_line + READ_CHUNK;
            let grown = (self.buf.len() * 2).clamp(READ_CHUNK.min(cap), cap);
            self.buf.resize(grown.max(self.end + 1), 0);
        }
        let n = self.inner.read(&mut self.buf[self.end..]).await?;
        if n == 0 {
            self.eof = true;
        }
        self.end += n;
        Ok(())
    }

    /// Streams past the rest of an over-long line, reusing the buffer for each chunk.
    async fn discard_overlong(&mut self) -> io::Result<Line<'_>> {
        let head = &self.buf[self.start..self.end];
        self.prefix.clear();
        self.prefix.extend_from_slice(&head[..head.len().min(LOG_PREFIX_BYTES)]);
        let mut len = (self.end - self.start) as u64;
        self.start = 0;
        self.end = 0;
        self.scanned = 0;
        loop {
            if self.eof {
                break;
            }
            let n = self.inner.read(&mut self.buf[..]).await?;
            if n == 0 {
                self.eof = true;
                break;
            }
            if let Some(pos) = find_terminator(&self.buf[..n]) {
                len += pos as u64;
                self.skip_lf = self.buf[pos] == b'\r';
                self.start = pos + 1;
                self.end = n;
                self.scanned = self.start;
                break;
            }
            len += n as u64;
        }
        Ok(Line::Overlong { prefix: &self.prefix, len })
    }
}

/// Position of the first `\n` or `\r`.
fn find_terminator(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == b'\n' || b == b'\r')
}
