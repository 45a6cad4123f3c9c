//! The child's stderr drain: bounded line splitting and logging.
//!
//! A child that writes to a full stderr pipe blocks, so stderr must be read all the time
//! whatever its content. Each line is logged through `tracing` at INFO under the target
//! [`STDERR_LOG_TARGET`], with the fields `shard_id` and `pid`. Lines are split like Java's
//! `BufferedReader.readLine` (used by the Java daemon): `\n`, `\r` and `\r\n` each end a
//! line, so progress bars drawn with bare `\r` become separate lines instead of control
//! characters in the daemon's log. A final line without a terminator is still logged at EOF.
//!
//! Memory is bounded: each line keeps at most [`MAX_STDERR_LINE_BYTES`]; the rest of an
//! over-long line is counted (`discarded_bytes`) and thrown away as it is read, never
//! buffered. Non-UTF-8 bytes are replaced with U+FFFD. Empty lines are not logged.

use std::sync::Arc;

use tokio::io::AsyncReadExt;
use tokio::process::ChildStderr;

/// The `tracing` target of every child stderr line, so operators can filter or raise it
/// (`RUST_LOG=multilangd::child::stderr=off`, `=info`, ...).
pub const STDERR_LOG_TARGET: &str = "multilangd::child::stderr";

/// The target of this module's own events, which must not match [`STDERR_LOG_TARGET`]
/// (this module's path *is* `multilangd::child::stderr`).
const DAEMON_TARGET: &str = "multilangd::child";

/// The most bytes of one stderr line that are logged; the rest of the line is discarded.
pub const MAX_STDERR_LINE_BYTES: usize = 64 * 1024;

/// First size of the read buffer. Most children write little to stderr, and hundreds of
/// idle shards must not each hold a pipe-sized buffer; it doubles while reads fill it.
const INITIAL_READ_BYTES: usize = 1024;

/// Largest size of the read buffer (one pipe buffer's worth on Linux).
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// What the drain saw over the child's life (logged at DEBUG when it ends).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct StderrStats {
    /// Bytes read from the pipe.
    pub bytes: u64,
    /// Lines logged (empty lines excluded).
    pub lines: u64,
    /// Lines cut at [`MAX_STDERR_LINE_BYTES`].
    pub truncated_lines: u64,
}

/// Splits a byte stream into lines of bounded length.
///
/// `\n`, `\r` and `\r\n` are terminators (also when `\r` and `\n` arrive in different
/// chunks). A line longer than `max` keeps its first `max` bytes; the number of bytes
/// dropped is reported with the line.
#[derive(Debug)]
pub(crate) struct LineSplitter {
    line: Vec<u8>,
    max: usize,
    discarded: u64,
    /// The previous chunk ended with `\r`: a `\n` starting the next chunk belongs to it.
    skip_lf: bool,
}

impl LineSplitter {
    pub(crate) fn new(max: usize) -> Self {
        Self { line: Vec::new(), max, discarded: 0, skip_lf: false }
    }

    /// Feeds one chunk; `emit(line, discarded_bytes)` is called for each completed line.
    pub(crate) fn feed(&mut self, mut chunk: &[u8], emit: &mut impl FnMut(&[u8], u64)) {
        if self.skip_lf && !chunk.is_empty() {
            self.skip_lf = false;
            if let Some(rest) = chunk.strip_prefix(b"\n") {
                chunk = rest;
            }
        }
        while let Some(i) = chunk.iter().position(|&b| b == b'\n' || b == b'\r') {
            self.append(&chunk[..i]);
            self.emit_line(emit);
            let terminator = chunk[i];
            chunk = &chunk[i + 1..];
            if terminator == b'\r' {
                match chunk.first() {
                    Some(b'\n') => chunk = &chunk[1..],
                    Some(_) => {}
                    None => self.skip_lf = true,
                }
            }
        }
        self.append(chunk);
    }

    /// Flushes a final unterminated line at EOF.
    pub(crate) fn finish(&mut self, emit: &mut impl FnMut(&[u8], u64)) {
        if !self.line.is_empty() || self.discarded > 0 {
            self.emit_line(emit);
        }
        self.skip_lf = false;
    }

    fn append(&mut self, bytes: &[u8]) {
        let room = self.max.saturating_sub(self.line.len());
        let kept = room.min(bytes.len());
        self.line.extend_from_slice(&bytes[..kept]);
        self.discarded += (bytes.len() - kept) as u64;
    }

    fn emit_line(&mut self, emit: &mut impl FnMut(&[u8], u64)) {
        emit(&self.line, self.discarded);
        if self.line.capacity() > INITIAL_READ_BYTES * 4 {
            // Release a long line's memory instead of keeping it per child.
            self.line = Vec::new();
        }
        self.line.clear();
        self.discarded = 0;
    }
}

/// Reads `stderr` until EOF (or a read error), logging each line. Runs as the supervisor's
/// drain task; it holds no other resources, so aborting it at any await point is safe.
pub(crate) async fn drain(mut stderr: ChildStderr, shard_id: Arc<str>, pid: u32) -> StderrStats {
    let mut stats = StderrStats::default();
    let mut splitter = LineSplitter::new(MAX_STDERR_LINE_BYTES);
    let mut buf = vec![0u8; INITIAL_READ_BYTES];
    let mut log_line = |line: &[u8], discarded: u64| {
        if line.is_empty() && discarded == 0 {
            return;
        }
        stats.lines += 1;
        let text = String::from_utf8_lossy(line);
        if discarded == 0 {
            tracing::info!(target: STDERR_LOG_TARGET, shard_id = %shard_id, pid, "{text}");
        } else {
            stats.truncated_lines += 1;
            tracing::info!(
                target: STDERR_LOG_TARGET,
                shard_id = %shard_id,
                pid,
                discarded_bytes = discarded,
                "{text}"
            );
        }
    };
    let mut bytes = 0u64;
    loop {
        match stderr.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => {
                bytes += n as u64;
                splitter.feed(&buf[..n], &mut log_line);
                if n == buf.len() && buf.len() < READ_CHUNK_BYTES {
                    // A busy stderr: read more per call.
                    buf.resize(buf.len() * 2, 0);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::warn!(target: DAEMON_TARGET, shard_id = %shard_id, pid, error = %e, "reading the child's stderr failed; no more stderr will be logged");
                break;
            }
        }
    }
    splitter.finish(&mut log_line);
    stats.bytes = bytes;
    tracing::debug!(
        target: DAEMON_TARGET,
        shard_id = %shard_id,
        pid,
        bytes = stats.bytes,
        lines = stats.lines,
        truncated_lines = stats.truncated_lines,
        "child stderr reached EOF"
    );
    stats
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]], max: usize) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        let mut s = LineSplitter::new(max);
        let mut emit = |l: &[u8], d: u64| out.push((String::from_utf8_lossy(l).into_owned(), d));
        for c in chunks {
            s.feed(c, &mut emit);
        }
        s.finish(&mut emit);
        out
    }

    fn lines(v: &[(String, u64)]) -> Vec<&str> {
        v.iter().map(|(l, _)| l.as_str()).collect()
    }

    #[test]
    fn lf_crlf_and_cr_terminate_lines() {
        let out = split(&[b"a\nb\r\nc\rd\n"], 100);
        assert_eq!(lines(&out), ["a", "b", "c", "d"]);
    }

    #[test]
    fn crlf_split_across_chunks_is_one_terminator() {
        let out = split(&[b"a\r", b"\nb\r", b"", b"\n", b"c"], 100);
        assert_eq!(lines(&out), ["a", "b", "c"]);
    }

    #[test]
    fn cr_at_chunk_end_followed_by_text_is_a_terminator() {
        let out = split(&[b"a\r", b"b\n"], 100);
        assert_eq!(lines(&out), ["a", "b"]);
    }

    #[test]
    fn blank_lines_are_reported_to_the_callback() {
        let out = split(&[b"\n\n", b"x\r\r\n"], 100);
        assert_eq!(lines(&out), ["", "", "x", ""]);
    }

    #[test]
    fn final_line_without_terminator_is_delivered() {
        let out = split(&[b"first\nlast"], 100);
        assert_eq!(lines(&out), ["first", "last"]);
        assert!(split(&[b"done\n"], 100).len() == 1);
        assert!(split(&[], 100).is_empty());
    }

    #[test]
    fn long_lines_are_truncated_and_the_rest_counted() {
        let out = split(&[b"0123456", b"789abc\nok\n"], 4);
        assert_eq!(out, [("0123".to_owned(), 9), ("ok".to_owned(), 0)]);
    }

    #[test]
    fn truncated_unterminated_line_is_delivered_at_eof() {
        let out = split(&[b"abcdef", b"gh"], 3);
        assert_eq!(out, [("abc".to_owned(), 5)]);
    }

    #[test]
    fn a_long_line_does_not_keep_its_memory() {
        let mut s = LineSplitter::new(MAX_STDERR_LINE_BYTES);
        let mut seen = Vec::new();
        s.feed(&[vec![b'y'; 40 * 1024], b"\nshort\n".to_vec()].concat(), &mut |l: &[u8], _| seen.push(l.len()));
        assert_eq!(seen, [40 * 1024, 5]);
        assert!(s.line.capacity() <= INITIAL_READ_BYTES * 4, "line buffer kept {}", s.line.capacity());
    }

    #[test]
    fn memory_stays_bounded_for_a_huge_line() {
        let mut s = LineSplitter::new(8);
        let chunk = vec![b'x'; 4096];
        let mut seen = Vec::new();
        for _ in 0..1000 {
            s.feed(&chunk, &mut |l: &[u8], d| seen.push((l.len(), d)));
        }
        assert!(s.line.capacity() <= 64, "line buffer grew to {}", s.line.capacity());
        s.finish(&mut |l: &[u8], d| seen.push((l.len(), d)));
        assert_eq!(seen, [(8, 4096 * 1000 - 8)]);
    }
}
