#!/usr/bin/env python3
"""Test child for tests/real_clients.rs: a record processor that speaks the multi-language
protocol correctly (plain JSON lines, no client library) while flooding stdout AND stderr.

  noisy_processor.py --result FILE --burst-bytes N --marker-dir DIR

Per processRecords: writes N bytes of noise to stdout and N bytes to stderr (interleaved in
64 KiB slices, so a daemon that drains only one of the pipes stalls it), checkpoints with no
sequence number, writes another N + N bytes, and answers with its status. Right after that
status, while no action is outstanding, it writes 2N + 2N more bytes and then creates
DIR/between-<batch> (a daemon that stops reading between actions never lets it get there).
So each batch costs 4N bytes of stdout noise and 4N bytes of stderr noise.

Noise on stdout: plain text lines, JSON lines that are not protocol messages, and one line of
3 MiB per burst (longer than the daemon's 1 MiB line limit). Noise on stderr: text lines and one
line of 1 MiB per burst (longer than the 64 KiB stderr line limit). No line is empty and none
contains a carriage return, so the line counts in the result are exact.

At EOF on stdin it writes FILE: {"pid", "records": [[sequenceNumber, sha256], ...],
"checkpointErrors": [...], "stdoutLines", "stderrLines", "stdoutBytes", "stderrBytes",
"actions": [...]} and exits 0.
"""

import argparse
import base64
import hashlib
import json
import os
import sys

SLICE = 64 * 1024


def build_block(kind):
    """About 1 MiB of complete noise lines of one stream; returns (bytes, line count)."""
    lines = []
    i = 0
    size = 0
    while size < 1024 * 1024:
        if kind == "stdout" and i % 3 == 1:
            # JSON, but not a protocol message ("record" is not a top-level action).
            line = json.dumps({"action": "record", "note": "noise", "i": i, "pad": "x" * 700})
        elif kind == "stdout" and i % 3 == 2:
            line = json.dumps({"debug": True, "i": i, "pad": "y" * 500})
        else:
            line = "%s noise line %d %s" % (kind, i, "z" * (300 + (i * 37) % 900))
        data = (line + "\n").encode()
        lines.append(data)
        size += len(data)
        i += 1
    return b"".join(lines), len(lines)


class Noise:
    def __init__(self):
        self.out = sys.stdout.buffer
        self.err = sys.stderr.buffer
        self.blocks = {k: build_block(k) for k in ("stdout", "stderr")}
        self.long = {"stdout": b"L" * (3 * 1024 * 1024) + b"\n", "stderr": b"E" * (1024 * 1024) + b"\n"}
        self.lines = {"stdout": 0, "stderr": 0}
        self.bytes = {"stdout": 0, "stderr": 0}

    def _chunks(self, kind, total):
        """Yields byte slices adding up to exactly `total` bytes of whole lines (the last
        line is padded to end exactly at `total`)."""
        long_line = self.long[kind]
        block, block_lines = self.blocks[kind]
        emitted = 0
        # One over-long line per burst.
        if total > len(long_line) + 1024:
            yield long_line
            emitted += len(long_line)
            self.lines[kind] += 1
        while total - emitted >= len(block) + 1024:
            yield block
            emitted += len(block)
            self.lines[kind] += block_lines
        rest = total - emitted
        if rest >= 2:
            yield b"r" * (rest - 1) + b"\n"
            self.lines[kind] += 1
        elif rest == 1:
            yield b"\n"  # a blank line: skipped by the daemon, so not counted
        emitted += rest
        self.bytes[kind] += emitted

    def _slices(self, kind, total):
        for chunk in self._chunks(kind, total):
            view = memoryview(chunk)
            for start in range(0, len(view), SLICE):
                yield view[start:start + SLICE]

    def burst(self, total):
        """Writes `total` bytes to stdout and to stderr, alternating 64 KiB slices."""
        streams = [(self.out, self._slices("stdout", total)), (self.err, self._slices("stderr", total))]
        while streams:
            for entry in list(streams):
                out, slices = entry
                piece = next(slices, None)
                if piece is None:
                    streams.remove(entry)
                    continue
                out.write(piece)
                out.flush()


def send(obj):
    sys.stdout.buffer.write((json.dumps(obj) + "\n").encode())
    sys.stdout.buffer.flush()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--result", required=True)
    p.add_argument("--burst-bytes", type=int, required=True)
    p.add_argument("--marker-dir", required=True)
    args = p.parse_args()

    noise = Noise()
    stdin = sys.stdin.buffer
    records = []
    errors = []
    actions = []
    batch = 0

    def checkpoint():
        send({"action": "checkpoint", "sequenceNumber": None})
        reply = json.loads(stdin.readline())
        assert reply["action"] == "checkpoint", reply
        errors.append(reply["error"])

    while True:
        line = stdin.readline()
        if not line:
            break
        message = json.loads(line)
        action = message["action"]
        actions.append(action)
        if action == "processRecords":
            batch += 1
            for r in message["records"]:
                records.append([r["sequenceNumber"], hashlib.sha256(base64.b64decode(r["data"])).hexdigest()])
            noise.burst(args.burst_bytes)
            checkpoint()
            noise.burst(args.burst_bytes)
            send({"action": "status", "responseFor": action})
            noise.burst(2 * args.burst_bytes)
            open(os.path.join(args.marker_dir, "between-%d" % batch), "w").close()
            continue
        if action in ("shardEnded", "shutdownRequested"):
            checkpoint()
        send({"action": "status", "responseFor": action})

    with open(args.result, "w") as f:
        json.dump({
            "pid": os.getpid(),
            "records": records,
            "checkpointErrors": errors,
            "stdoutLines": noise.lines["stdout"],
            "stderrLines": noise.lines["stderr"],
            "stdoutBytes": noise.bytes["stdout"],
            "stderrBytes": noise.bytes["stderr"],
            "actions": actions,
        }, f)


if __name__ == "__main__":
    main()
