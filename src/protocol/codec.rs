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
use crate::model::Record;

/// Default limit for one line of child output; longer lines are discarded as noise.
pub const MAX_CHILD_LINE_BYTES: usize = 1024 * 1024;

/// How many bytes of a noise line are kept for the log.
pub const LOG_PREFIX_BYTES: usize = 256;

/// The most the reader asks the pipe for at once (and the growth step of its buffer).
const READ_CHUNK: usize = 64 * 1024;

/// The reader's first buffer size. Children's protocol lines (status, checkpoint) are
/// short, so 1 KiB is enough for most of them; the buffer doubles when a line needs
/// more and goes back to this size once it is empty again (hundreds of idle shards must
/// not each hold a 64 KiB buffer).
const INITIAL_READ_BUFFER: usize = 1024;

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
            encode_process_records_head(out);
            for (i, record) in records.iter().enumerate() {
                encode_process_records_record(out, i, record);
            }
            encode_process_records_tail(out, *millis_behind_latest);
        }
        Action::ShutdownRequested => out.extend_from_slice(b"{\"action\":\"shutdownRequested\"}\n"),
        Action::LeaseLost => out.extend_from_slice(b"{\"action\":\"leaseLost\"}\n"),
        Action::ShardEnded => out.extend_from_slice(b"{\"action\":\"shardEnded\"}\n"),
    }
}

/// Appends the start of a `processRecords` line (up to the records array's `[`).
///
/// With [`encode_process_records_record`] and [`encode_process_records_tail`] a caller can
/// write a large line in pieces instead of building it whole; the bytes are the same as
/// [`encode_action`]'s.
pub fn encode_process_records_head(out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"action\":\"processRecords\",\"records\":[");
}

/// Appends the `index`-th record (0-based) of a `processRecords` line, with its separator.
pub fn encode_process_records_record(out: &mut Vec<u8>, index: usize, record: &Record) {
    if index > 0 {
        out.push(b',');
    }
    write_record(out, record);
}

/// Appends the end of a `processRecords` line (after the last record), newline included.
pub fn encode_process_records_tail(out: &mut Vec<u8>, millis_behind_latest: Option<i64>) {
    out.extend_from_slice(b"],\"millisBehindLatest\":");
    write_opt_i64(out, millis_behind_latest);
    out.extend_from_slice(b"}\n");
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
    truncate_prefix_for_log(bytes, bytes.len())
}

/// Like [`truncate_for_log`] for a text of `total` bytes of which only the beginning,
/// `prefix`, is at hand (a line written in pieces).
#[must_use]
pub fn truncate_prefix_for_log(prefix: &[u8], total: usize) -> String {
    if total <= LOG_PREFIX_BYTES && prefix.len() >= total {
        String::from_utf8_lossy(&prefix[..total]).into_owned()
    } else {
        let kept = &prefix[..prefix.len().min(LOG_PREFIX_BYTES).min(total)];
        format!("{}... ({total} bytes)", String::from_utf8_lossy(kept))
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
/// The internal buffer starts at 1 KiB, doubles as a line needs it, never grows beyond the
/// line limit plus one read chunk (64 KiB), and shrinks back once it is drained.
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
                let len = at - line_start;
                if len > self.max_line {
                    self.prefix.clear();
                    self.prefix.extend_from_slice(&self.buf[line_start..line_start + LOG_PREFIX_BYTES.min(len)]);
                    return Ok(Some(Line::Overlong { prefix: &self.prefix, len: len as u64 }));
                }
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
        if self.start == self.end && self.buf.len() > INITIAL_READ_BUFFER {
            // Drained after a long line: give the memory back.
            self.buf = Vec::new();
            self.start = 0;
            self.end = 0;
            self.scanned = 0;
        }
        if self.start > 0 && (self.end == self.buf.len() || self.start == self.end) {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.scanned -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            let cap = self.max_line + READ_CHUNK;
            let grown = (self.buf.len() * 2).clamp(INITIAL_READ_BUFFER.min(cap), cap);
            let target = grown.max(self.end + 1);
            // Exact, so the allocation never exceeds the bound by Vec's doubling.
            self.buf.reserve_exact(target - self.buf.len());
            self.buf.resize(target, 0);
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

#[cfg(test)]
pub(crate) mod tests {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use bytes::Bytes;
    use serde_json::Value;
    use tokio::io::ReadBuf;

    use super::*;
    use crate::protocol::messages::ActionKind;
    use crate::sequence::{ExtendedSequenceNumber, Position, SequenceNumber};

    const SEQ: &str = "49590338271490256608559692538361571095921575989136588898";

    fn record(data: &[u8], key: &str, sub: u64) -> Record {
        Record {
            data: Bytes::copy_from_slice(data),
            partition_key: key.to_owned(),
            sequence_number: SequenceNumber::parse(SEQ).unwrap(),
            sub_sequence_number: sub,
            approximate_arrival_timestamp_ms: 1_700_000_000_001,
        }
    }

    fn encode(action: Action<'_>) -> String {
        let mut out = Vec::new();
        encode_action(&action, "shardId-000000000001", &mut out);
        String::from_utf8(out).unwrap()
    }

    fn parsed(line: &str) -> ParsedLine {
        parse_line(line.as_bytes())
    }

    fn checkpoint(seq: Option<&str>, sub: Option<i64>) -> ParsedLine {
        ParsedLine::Message(ChildMessage::Checkpoint(CheckpointRequest {
            sequence_number: seq.map(str::to_owned),
            sub_sequence_number: sub,
        }))
    }

    fn status(response_for: Option<&str>) -> ParsedLine {
        ParsedLine::Message(ChildMessage::Status { response_for: response_for.map(str::to_owned) })
    }

    #[test]
    fn encodes_every_daemon_message_exactly() {
        let position = ExtendedSequenceNumber::new(Position::TrimHorizon);
        assert_eq!(
            encode(Action::Initialize { checkpoint: Some(&position) }),
            "{\"action\":\"initialize\",\"shardId\":\"shardId-000000000001\",\"sequenceNumber\":\"TRIM_HORIZON\",\"subSequenceNumber\":0}\n"
        );
        assert_eq!(
            encode(Action::Initialize { checkpoint: None }),
            "{\"action\":\"initialize\",\"shardId\":\"shardId-000000000001\",\"sequenceNumber\":null,\"subSequenceNumber\":null}\n"
        );
        let at = ExtendedSequenceNumber::at(SequenceNumber::parse(SEQ).unwrap(), 7);
        assert!(encode(Action::Initialize { checkpoint: Some(&at) })
            .ends_with(&format!("\"sequenceNumber\":\"{SEQ}\",\"subSequenceNumber\":7}}\n")));
        let records = [record(b"hello", "pk", 0), record(b"", "k\u{e9}y", 2)];
        assert_eq!(
            encode(Action::ProcessRecords { records: &records, millis_behind_latest: Some(0) }),
            format!(
                "{{\"action\":\"processRecords\",\"records\":[\
                 {{\"data\":\"aGVsbG8=\",\"partitionKey\":\"pk\",\"sequenceNumber\":\"{SEQ}\",\"approximateArrivalTimestamp\":1700000000001,\"subSequenceNumber\":0,\"action\":\"record\"}},\
                 {{\"data\":\"\",\"partitionKey\":\"k\u{e9}y\",\"sequenceNumber\":\"{SEQ}\",\"approximateArrivalTimestamp\":1700000000001,\"subSequenceNumber\":2,\"action\":\"record\"}}\
                 ],\"millisBehindLatest\":0}}\n"
            )
        );
        assert_eq!(
            encode(Action::ProcessRecords { records: &[], millis_behind_latest: None }),
            "{\"action\":\"processRecords\",\"records\":[],\"millisBehindLatest\":null}\n"
        );
        assert_eq!(encode(Action::ShutdownRequested), "{\"action\":\"shutdownRequested\"}\n");
        assert_eq!(encode(Action::LeaseLost), "{\"action\":\"leaseLost\"}\n");
        assert_eq!(encode(Action::ShardEnded), "{\"action\":\"shardEnded\"}\n");

        let mut out = Vec::new();
        encode_checkpoint_reply(
            &CheckpointReply { sequence_number: Some(SEQ), sub_sequence_number: Some(-3), error: None },
            &mut out,
        );
        encode_checkpoint_reply(
            &CheckpointReply { sequence_number: None, sub_sequence_number: None, error: Some("ThrottlingException") },
            &mut out,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!(
                "{{\"action\":\"checkpoint\",\"sequenceNumber\":\"{SEQ}\",\"subSequenceNumber\":-3,\"error\":null}}\n\
                 {{\"action\":\"checkpoint\",\"sequenceNumber\":null,\"subSequenceNumber\":null,\"error\":\"ThrottlingException\"}}\n"
            )
        );
    }

    #[test]
    fn strings_are_escaped_like_jackson() {
        // Output of protocol-fixtures/capture/JacksonStrings.java (Jackson 2.13.5).
        let mut input: String = (0_u8..0x20).map(char::from).collect();
        input.push_str("\"\\/\u{7f}\u{80}\u{a0}\u{2028}\u{2029}\u{1f980}\u{feff}");
        let mut out = Vec::new();
        write_str(&mut out, &input);
        let expected = "\"\\u0000\\u0001\\u0002\\u0003\\u0004\\u0005\\u0006\\u0007\\b\\t\\n\\u000B\\f\\r\\u000E\\u000F\
                        \\u0010\\u0011\\u0012\\u0013\\u0014\\u0015\\u0016\\u0017\\u0018\\u0019\\u001A\\u001B\\u001C\\u001D\\u001E\\u001F\
                        \\\"\\\\/\u{7f}\u{80}\u{a0}\u{2028}\u{2029}\u{1f980}\u{feff}\"";
        assert_eq!(String::from_utf8(out.clone()).unwrap(), expected);
        // And it is valid JSON for the same string.
        assert_eq!(serde_json::from_slice::<String>(&out).unwrap(), input);
        // serde_json agrees except for the hex case of \u00XX.
        assert_eq!(serde_json::to_string(&input).unwrap().to_uppercase(), expected.to_uppercase());
    }

    #[test]
    fn integers_cover_the_full_range() {
        for (n, text) in
            [(0_i64, "0"), (-1, "-1"), (i64::MIN, "-9223372036854775808"), (i64::MAX, "9223372036854775807")]
        {
            let mut out = Vec::new();
            write_i64(&mut out, n);
            assert_eq!(out, text.as_bytes());
        }
        let mut out = Vec::new();
        write_u64(&mut out, u64::MAX);
        assert_eq!(out, b"18446744073709551615");
    }

    fn decode_records(line: &[u8]) -> Vec<Record> {
        assert_eq!(line.last(), Some(&b'\n'));
        assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1, "exactly one line");
        let v: Value = serde_json::from_slice(line).unwrap();
        assert_eq!(v["action"], "processRecords");
        v["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let keys: Vec<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
                assert_eq!(keys.len(), 6);
                Record {
                    data: Bytes::from(
                        base64::engine::general_purpose::STANDARD.decode(r["data"].as_str().unwrap()).unwrap(),
                    ),
                    partition_key: r["partitionKey"].as_str().unwrap().to_owned(),
                    sequence_number: SequenceNumber::parse(r["sequenceNumber"].as_str().unwrap()).unwrap(),
                    sub_sequence_number: r["subSequenceNumber"].as_u64().unwrap(),
                    approximate_arrival_timestamp_ms: r["approximateArrivalTimestamp"].as_i64().unwrap(),
                }
            })
            .collect()
    }

    #[test]
    fn ten_thousand_records_round_trip() {
        let records: Vec<Record> = (0..10_000_u32)
            .map(|i| Record {
                data: Bytes::from((0..(i % 300)).map(|b| (b * 31 + i) as u8).collect::<Vec<u8>>()),
                partition_key: format!("pk-{i}-\u{e9}\n\u{1}"),
                sequence_number: SequenceNumber::parse(&format!("{SEQ}{i}")).unwrap(),
                sub_sequence_number: u64::from(i % 7),
                approximate_arrival_timestamp_ms: 1_700_000_000_000 + i64::from(i),
            })
            .collect();
        let mut out = Vec::new();
        encode_action(&Action::ProcessRecords { records: &records, millis_behind_latest: Some(42) }, "s", &mut out);
        let reserved = out.capacity();
        assert_eq!(decode_records(&out), records);
        // One reservation for the whole line: the hint is an upper bound.
        assert!(process_records_len_hint(&records) >= out.len());
        assert_eq!(out.capacity(), reserved);
        // Re-encoding into the reused buffer gives the same bytes.
        let first = out.clone();
        out.clear();
        encode_action(&Action::ProcessRecords { records: &records, millis_behind_latest: Some(42) }, "s", &mut out);
        assert_eq!(out, first);
    }

    #[test]
    fn a_ten_mib_record_round_trips() {
        let data: Vec<u8> = (0..10 * 1024 * 1024_u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        let records = [record(&data, "big", 0)];
        let mut out = Vec::new();
        encode_action(&Action::ProcessRecords { records: &records, millis_behind_latest: None }, "s", &mut out);
        assert!(out.len() > 13 * 1024 * 1024);
        assert_eq!(decode_records(&out), records);
    }

    #[test]
    fn blank_and_noise_lines() {
        assert_eq!(parsed(""), ParsedLine::Blank);
        assert_eq!(parsed(" \t \x0b\x0c"), ParsedLine::Blank);
        for noise in [
            "hello",
            "null",
            "  null  ",
            "42",
            "\"x\"",
            "true",
            "[]",
            "[{\"action\":\"status\",\"responseFor\":\"initialize\"}]",
            "\u{feff}{\"action\":\"status\",\"responseFor\":\"initialize\"}",
            "xx {\"action\":\"status\",\"responseFor\":\"initialize\"}",
        ] {
            assert_eq!(parsed(noise), ParsedLine::Noise(NoiseReason::NotAnObject), "{noise:?}");
        }
        for invalid in [
            "{\"action\":\"status\", /* c */ \"responseFor\":\"initialize\"}",
            "{\"action\":\"status\",\"responseFor\":\"initialize\",}",
            "{\"action\":\"status\",\"responseFor\":\"initialize\"",
            "{action:\"status\"}",
            "{\"action\":\"status\",\"responseFor\":\"x\u{1}\"}",
        ] {
            assert!(matches!(parsed(invalid), ParsedLine::Noise(NoiseReason::InvalidJson(_))), "{invalid:?}");
        }
        assert!(matches!(parse_line(b"{\"action\":\"status\",\"responseFor\":\"\xff\"}"), ParsedLine::Noise(_)));
        assert_eq!(parsed("{\"responseFor\":\"initialize\"}"), ParsedLine::Noise(NoiseReason::MissingAction));
        assert_eq!(parsed("{}"), ParsedLine::Noise(NoiseReason::MissingAction));
        assert_eq!(parsed("{\"action\":null}"), ParsedLine::Noise(NoiseReason::ActionNotString));
        assert_eq!(parsed("{\"action\":5}"), ParsedLine::Noise(NoiseReason::ActionNotString));
        assert_eq!(
            parsed("{\"action\":\"status\",\"action\":\"status\",\"responseFor\":\"initialize\"}"),
            ParsedLine::Noise(NoiseReason::DuplicateAction)
        );
        for unknown in ["Status", "STATUS", "bogus", "record", "Checkpoint", ""] {
            assert_eq!(
                parsed(&format!("{{\"action\":\"{unknown}\",\"responseFor\":\"initialize\"}}")),
                ParsedLine::Noise(NoiseReason::UnknownAction(unknown.to_owned()))
            );
        }
    }

    #[test]
    fn status_lines() {
        assert_eq!(parsed("{\"action\": \"status\", \"responseFor\": \"initialize\"}"), status(Some("initialize")));
        assert_eq!(parsed("  {\"responseFor\":\"leaseLost\",\"action\":\"status\"}  "), status(Some("leaseLost")));
        assert_eq!(
            parsed("{\"action\":\"status\",\"responseFor\":\"shardEnded\"} trailing"),
            status(Some("shardEnded"))
        );
        assert_eq!(
            parsed("{\"action\":\"status\",\"responseFor\":\"a\"}{\"action\":\"status\",\"responseFor\":\"b\"}"),
            status(Some("a"))
        );
        assert_eq!(parsed("{\"action\":\"status\"}"), status(None));
        assert_eq!(parsed("{\"action\":\"status\",\"responseFor\":null}"), status(None));
        assert_eq!(parsed("{\"action\":\"status\",\"responseFor\":42}"), status(Some("42")));
        assert_eq!(parsed("{\"action\":\"status\",\"responseFor\":[1]}"), status(Some("[1]")));
        assert_eq!(
            parsed("{\"action\":\"status\",\"responseFor\":\"x\",\"responseFor\":\"processRecords\"}"),
            status(Some("processRecords"))
        );
        assert_eq!(
            parsed("{\"act\\u0069on\":\"st\\u0061tus\",\"responseFor\":\"init\\u0069alize\",\"x\":{\"action\":1}}"),
            status(Some("initialize"))
        );
        assert_eq!(
            parsed("{\"action\":\"status\",\"responseFor\":\"initialize\",\"extra\":[{}]}"),
            status(Some("initialize"))
        );
    }

    #[test]
    fn checkpoint_lines() {
        let seq = Some(SEQ);
        assert_eq!(
            parsed(&format!("{{\"action\": \"checkpoint\", \"sequenceNumber\": \"{SEQ}\", \"subSequenceNumber\": 0}}")),
            checkpoint(seq, Some(0))
        );
        assert_eq!(parsed("{\"action\":\"checkpoint\"}"), checkpoint(None, None));
        assert_eq!(parsed("{\"action\":\"checkpoint\",\"sequenceNumber\":null}"), checkpoint(None, None));
        // A 56-digit JSON number keeps its digits (no f64).
        assert_eq!(parsed(&format!("{{\"action\":\"checkpoint\",\"sequenceNumber\":{SEQ}}}")), checkpoint(seq, None));
        assert_eq!(parsed("{\"action\":\"checkpoint\",\"sequenceNumber\":1.5e3}"), checkpoint(Some("1.5e3"), None));
        assert_eq!(parsed("{\"action\":\"checkpoint\",\"sequenceNumber\":-0}"), checkpoint(Some("-0"), None));
        assert_eq!(parsed("{\"action\":\"checkpoint\",\"sequenceNumber\":true}"), checkpoint(Some("true"), None));
        assert_eq!(parsed("{\"action\":\"checkpoint\",\"sequenceNumber\":\"\"}"), checkpoint(Some(""), None));
        assert_eq!(parsed("{\"action\":\"checkpoint\",\"sequenceNumber\":\"1\\u0032\"}"), checkpoint(Some("12"), None));
        let sub = |raw: &str| {
            parsed(&format!("{{\"action\":\"checkpoint\",\"sequenceNumber\":\"1\",\"subSequenceNumber\":{raw}}}"))
        };
        assert_eq!(sub("null"), checkpoint(Some("1"), None));
        assert_eq!(sub("\"\""), checkpoint(Some("1"), None));
        assert_eq!(sub("\"  \""), checkpoint(Some("1"), None));
        assert_eq!(sub("7"), checkpoint(Some("1"), Some(7)));
        assert_eq!(sub("-7"), checkpoint(Some("1"), Some(-7)));
        assert_eq!(sub("\"12\""), checkpoint(Some("1"), Some(12)));
        assert_eq!(sub("\" 12 \""), checkpoint(Some("1"), Some(12)));
        assert_eq!(sub("5.7"), checkpoint(Some("1"), Some(5)));
        assert_eq!(sub("-5.7"), checkpoint(Some("1"), Some(-5)));
        assert_eq!(sub("0.7"), checkpoint(Some("1"), Some(0)));
        assert_eq!(sub("1e2"), checkpoint(Some("1"), Some(100)));
        assert_eq!(sub("9223372036854775807"), checkpoint(Some("1"), Some(i64::MAX)));
        assert_eq!(sub("-9223372036854775808"), checkpoint(Some("1"), Some(i64::MIN)));
        assert_eq!(sub("-9.223372036854775808e18"), checkpoint(Some("1"), Some(i64::MIN)));
        for bad in [
            "\"abc\"",
            "\"1.5\"",
            "true",
            "9223372036854775808",
            "-9223372036854775809",
            "1e19",
            "9.3e18",
            "{}",
            "[0]",
            "1e999",
        ] {
            match sub(bad) {
                ParsedLine::Message(ChildMessage::InvalidCheckpoint { sequence_number, problem }) => {
                    assert_eq!(sequence_number.as_deref(), Some("1"), "{bad}");
                    assert!(problem.contains("subSequenceNumber"), "{problem}");
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
        for bad in ["{}", "[\"1\"]"] {
            let line = format!("{{\"action\":\"checkpoint\",\"sequenceNumber\":{bad},\"subSequenceNumber\":1}}");
            assert!(
                matches!(
                    parsed(&line),
                    ParsedLine::Message(ChildMessage::InvalidCheckpoint { sequence_number: None, .. })
                ),
                "{bad}"
            );
        }
        // Known daemon-side actions echoed by the child are ignored, not noise.
        for echoed in ECHOED_ACTIONS {
            assert_eq!(
                parsed(&format!("{{\"action\":\"{echoed}\",\"anything\":[1,2]}}")),
                ParsedLine::Message(ChildMessage::Ignored { action: echoed })
            );
        }
        assert!(ActionKind::ShardEnded.has_checkpointer() && !ActionKind::LeaseLost.has_checkpointer());
    }

    /// Yields the given chunks one `read` at a time.
    struct Chunks(std::collections::VecDeque<Vec<u8>>);

    impl AsyncRead for Chunks {
        fn poll_read(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
            if let Some(mut chunk) = self.0.pop_front() {
                let n = chunk.len().min(buf.remaining());
                buf.put_slice(&chunk[..n]);
                if n < chunk.len() {
                    self.0.push_front(chunk.split_off(n));
                }
            }
            Poll::Ready(Ok(()))
        }
    }

    #[derive(Debug, PartialEq, Eq)]
    enum Got {
        Text(Vec<u8>),
        Overlong(Vec<u8>, u64),
    }

    async fn lines_of(chunks: &[&[u8]], limit: usize) -> Vec<Got> {
        let mut reader = LineReader::with_limit(Chunks(chunks.iter().map(|c| c.to_vec()).collect()), limit);
        let mut out = Vec::new();
        while let Some(line) = reader.next_line().await.unwrap() {
            out.push(match line {
                Line::Text(t) => Got::Text(t.to_vec()),
                Line::Overlong { prefix, len } => Got::Overlong(prefix.to_vec(), len),
            });
            assert!(reader.buffer_capacity() <= limit.max(1) + READ_CHUNK);
        }
        out
    }

    /// Idle shards hold a small buffer: it starts at one page, grows for a long line and
    /// goes back to one page once drained.
    #[tokio::test]
    async fn line_buffer_starts_small_and_shrinks_after_a_long_line() {
        let long = [vec![b'x'; 200 * 1024], b"\n".to_vec()].concat();
        let chunks: Vec<Vec<u8>> = vec![b"short\n".to_vec(), long, b"after\n".to_vec()];
        let mut reader = LineReader::new(Chunks(chunks.into_iter().collect()));
        assert!(matches!(reader.next_line().await.unwrap(), Some(Line::Text(b"short"))));
        assert!(reader.buffer_capacity() <= INITIAL_READ_BUFFER, "{}", reader.buffer_capacity());
        assert!(matches!(reader.next_line().await.unwrap(), Some(Line::Text(t)) if t.len() == 200 * 1024));
        assert!(reader.buffer_capacity() >= 200 * 1024);
        assert!(matches!(reader.next_line().await.unwrap(), Some(Line::Text(b"after"))));
        assert!(reader.buffer_capacity() <= INITIAL_READ_BUFFER, "{}", reader.buffer_capacity());
        assert!(reader.next_line().await.unwrap().is_none());
    }

    fn texts(lines: &[&str]) -> Vec<Got> {
        lines.iter().map(|l| Got::Text(l.as_bytes().to_vec())).collect()
    }

    #[tokio::test]
    async fn lines_end_at_lf_crlf_and_lone_cr() {
        let expected = texts(&["a", "b", "", "c", "d", "", "e", "", "f"]);
        let input: &[u8] = b"a\nb\r\n\nc\rd\r\re\n\r\nf";
        assert_eq!(lines_of(&[input], 1024).await, expected);
        // The same bytes delivered one at a time (CR and LF in different reads).
        let single: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(lines_of(&single, 1024).await, expected);
        assert_eq!(lines_of(&[b"x\r", b"\ny\r", b"z"], 1024).await, texts(&["x", "y", "z"]));
        assert_eq!(lines_of(&[b"x\r"], 1024).await, texts(&["x"]));
        assert_eq!(lines_of(&[], 1024).await, texts(&[]));
        assert_eq!(lines_of(&[b"\n"], 1024).await, texts(&[""]));
    }

    fn assert_overlong(got: &Got, byte: u8, len: u64) {
        match got {
            Got::Overlong(prefix, l) => {
                assert_eq!(*l, len);
                assert!(!prefix.is_empty() && prefix.len() <= LOG_PREFIX_BYTES, "{}", prefix.len());
                assert!(prefix.iter().all(|b| *b == byte));
            }
            Got::Text(t) => panic!("expected an overlong line of {len}, got text of {}", t.len()),
        }
    }

    #[tokio::test]
    async fn overlong_lines_are_streamed_past() {
        let limit = 100;
        let mut input = vec![b'x'; 250];
        input.extend_from_slice(b"\r\nok\n");
        input.extend_from_slice(&[b'y'; 101]);
        input.extend_from_slice(b"\r");
        input.extend_from_slice(&[b'z'; 100]);
        input.extend_from_slice(b"\n");
        input.extend_from_slice(&[b'w'; 500]);
        for chunk in [1_usize, 7, 64, 100, 101, 102, 100_000] {
            let chunks: Vec<&[u8]> = input.chunks(chunk).collect();
            let got = lines_of(&chunks, limit).await;
            assert_eq!(got.len(), 5, "chunk size {chunk}: {got:?}");
            assert_overlong(&got[0], b'x', 250);
            assert_eq!(got[1], Got::Text(b"ok".to_vec()), "chunk size {chunk}");
            assert_overlong(&got[2], b'y', 101);
            assert_eq!(got[3], Got::Text(vec![b'z'; 100]), "chunk size {chunk}");
            assert_overlong(&got[4], b'w', 500);
        }
    }

    /// A generated stream of noise: `(count, line_len)` groups of lines of `'n'`, then
    /// `tail`; produced lazily so the test itself holds no big buffer.
    pub(crate) struct NoiseStream {
        groups: std::collections::VecDeque<(u64, u64)>,
        line_left: u64,
        newline_pending: bool,
        tail: std::collections::VecDeque<u8>,
        /// Bytes produced so far.
        pub(crate) produced: u64,
    }

    impl NoiseStream {
        pub(crate) fn new(groups: &[(u64, u64)], tail: &[u8]) -> Self {
            Self {
                groups: groups.iter().copied().collect(),
                line_left: 0,
                newline_pending: false,
                tail: tail.iter().copied().collect(),
                produced: 0,
            }
        }

        pub(crate) fn total(groups: &[(u64, u64)], tail: &[u8]) -> u64 {
            groups.iter().map(|(c, l)| c * (l + 1)).sum::<u64>() + tail.len() as u64
        }
    }

    impl AsyncRead for NoiseStream {
        fn poll_read(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
            let start = buf.filled().len();
            while buf.remaining() > 0 {
                if self.line_left > 0 {
                    let n = usize::try_from(self.line_left).unwrap_or(usize::MAX).min(buf.remaining());
                    buf.initialize_unfilled_to(n).fill(b'n');
                    buf.advance(n);
                    self.line_left -= n as u64;
                    continue;
                }
                if self.newline_pending {
                    buf.put_slice(b"\n");
                    self.newline_pending = false;
                    continue;
                }
                match self.groups.front_mut() {
                    Some((count, len)) => {
                        let len = *len;
                        *count -= 1;
                        if *count == 0 {
                            self.groups.pop_front();
                        }
                        self.line_left = len;
                        self.newline_pending = true;
                    }
                    None => match self.tail.pop_front() {
                        Some(b) => buf.put_slice(&[b]),
                        None => break,
                    },
                }
            }
            self.produced += (buf.filled().len() - start) as u64;
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn a_hundred_mb_of_noise_keeps_the_buffer_bounded() {
        // 100 MB: many short lines, 64 KiB+ lines, lines just under and over the limit,
        // and huge lines (one of 40 MB), then a status.
        let groups = [
            (100_000, 20),
            (200, 70_000),
            (10, MAX_CHILD_LINE_BYTES as u64 - 1),
            (10, MAX_CHILD_LINE_BYTES as u64 + 1),
            (2, 12_000_000),
            (1, 40_000_000),
            (50_000, 0),
        ];
        let tail = b"{\"action\":\"status\",\"responseFor\":\"initialize\"}";
        let total = NoiseStream::total(&groups, tail);
        assert!(total > 100_000_000, "{total}");
        let mut reader = LineReader::new(NoiseStream::new(&groups, tail));
        let (mut lines, mut overlong, mut max_capacity) = (0_u64, 0_u64, 0);
        let mut last = None;
        while let Some(line) = reader.next_line().await.unwrap() {
            match line {
                Line::Text(t) => {
                    lines += 1;
                    last = Some(parse_line(t));
                }
                Line::Overlong { prefix, len } => {
                    overlong += 1;
                    assert_eq!(prefix.len(), LOG_PREFIX_BYTES);
                    assert!(len > MAX_CHILD_LINE_BYTES as u64);
                }
            }
            max_capacity = max_capacity.max(reader.buffer_capacity());
        }
        assert_eq!(reader.inner.produced, total);
        assert_eq!(overlong, 13);
        assert_eq!(lines, 100_000 + 200 + 10 + 50_000 + 1);
        assert_eq!(last, Some(status(Some("initialize"))));
        assert!(max_capacity <= MAX_CHILD_LINE_BYTES + READ_CHUNK, "buffer grew to {max_capacity}");
    }
}
