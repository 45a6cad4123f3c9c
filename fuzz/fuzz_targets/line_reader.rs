//! The child-output line splitter (`LineReader` in src/protocol/codec.rs), differentially
//! against a plain reference splitter.
//!
//! Input: byte 0 picks the line limit (1..=64 bytes, so over-long lines are common), byte 1
//! the pattern of read sizes the fake pipe returns (1 byte up to 64 KiB), the rest is what the
//! child writes. Checks:
//! - the lines equal the reference split (`\n`, `\r\n`, lone `\r`; a final line without a
//!   terminator still counts), also when a `\r\n` is cut between two reads;
//! - a line longer than the limit is reported as over-long with its exact length and a
//!   prefix of it (at most `LOG_PREFIX_BYTES`, at least what the limit allowed to buffer);
//! - the buffer never grows past the limit plus one read chunk.
#![no_main]

use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::task::{Context, Poll, Waker};

use libfuzzer_sys::fuzz_target;
use multilangd_fuzz::protocol::codec::{Line, LineReader, LOG_PREFIX_BYTES};
use tokio::io::{AsyncRead, ReadBuf};

/// The reader's read chunk (private in codec.rs).
const READ_CHUNK: usize = 64 * 1024;

/// A pipe that hands out `data` in reads of the given sizes, in turn.
struct Chunked<'a> {
    data: &'a [u8],
    pos: usize,
    sizes: [usize; 3],
    turn: usize,
}

impl AsyncRead for Chunked<'_> {
    fn poll_read(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let size = self.sizes[self.turn % self.sizes.len()];
        self.turn += 1;
        let n = size.min(buf.remaining()).min(self.data.len() - self.pos);
        buf.put_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Poll::Ready(Ok(()))
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Owned {
    Text(Vec<u8>),
    Overlong { prefix: Vec<u8>, len: u64 },
}

/// Runs a future whose I/O is always ready.
fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

fn reference(data: &[u8]) -> Vec<&[u8]> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < data.len() {
        match data[i] {
            b'\n' => {
                lines.push(&data[start..i]);
                start = i + 1;
            }
            b'\r' => {
                lines.push(&data[start..i]);
                if data.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    if start < data.len() {
        lines.push(&data[start..]);
    }
    lines
}

fuzz_target!(|input: &[u8]| {
    let [limit, pattern, data @ ..] = input else { return };
    let max_line = usize::from(limit % 64) + 1;
    let sizes = [usize::from(pattern % 8) + 1, usize::from(pattern / 8 % 8) * 97 + 1, READ_CHUNK];
    let pipe = Chunked { data, pos: 0, sizes, turn: 0 };
    let mut reader = LineReader::with_limit(pipe, max_line);
    let mut got = Vec::new();
    block_on(async {
        while let Some(line) = reader.next_line().await.expect("in-memory reads do not fail") {
            got.push(match line {
                Line::Text(text) => Owned::Text(text.to_vec()),
                Line::Overlong { prefix, len } => Owned::Overlong { prefix: prefix.to_vec(), len },
            });
            assert!(reader.buffer_capacity() <= max_line + READ_CHUNK, "buffer {}", reader.buffer_capacity());
            assert!(got.len() <= data.len() + 1, "more lines than bytes");
        }
    });
    let expected = reference(data);
    assert_eq!(got.len(), expected.len(), "line count: got {got:?}");
    for (n, (got, want)) in got.iter().zip(&expected).enumerate() {
        match got {
            Owned::Text(text) => {
                assert!(want.len() <= max_line, "line {n}: {} bytes delivered over the limit", want.len());
                assert_eq!(text.as_slice(), *want, "line {n}");
            }
            Owned::Overlong { prefix, len } => {
                assert!(want.len() > max_line, "line {n}: {} bytes reported over-long", want.len());
                assert_eq!(*len, want.len() as u64, "line {n}: length");
                assert!(want.starts_with(prefix), "line {n}: prefix");
                assert!(prefix.len() <= LOG_PREFIX_BYTES, "line {n}: prefix of {}", prefix.len());
                assert!(prefix.len() >= want.len().min(LOG_PREFIX_BYTES).min(max_line + 1), "line {n}: short prefix");
            }
        }
    }
});
