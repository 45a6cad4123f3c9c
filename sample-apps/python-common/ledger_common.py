"""Shared pieces of the Python ledger record processors (sample-apps/python-v3-ledger, python-v2).

Ledger (--ledger FILE or $LEDGER_FILE; "{shard}" in the path is replaced by the shard id): one
compact JSON line per record handed to the processor, written before any checkpoint covering it:
  {"shardId":..., "sequenceNumber":..., "subSequenceNumber":0, "partitionKey":...,
   "sha256":"<hex of the decoded data>", "processor":"python-v3", "pid":1234}
Several processes (one per shard) may append to one file: each batch is one write(2) on an
O_APPEND descriptor under an exclusive flock, so lines never interleave.

Events (--events FILE or $LEDGER_EVENTS_FILE, optional): one JSON line per lifecycle event
(initialize, checkpoint attempts and their outcome, shard_ended, lease_lost, shutdown_requested).

Only stderr is used for diagnostics: stdout belongs to the multi-language protocol.
"""

import argparse
import fcntl
import hashlib
import json
import os
import sys
import time

from amazon_kclpy.kcl import CheckpointError


def parse_config(processor_name, argv=None):
    env = os.environ
    p = argparse.ArgumentParser(prog=processor_name, description="KCL record processor that writes a ledger")
    p.add_argument("--ledger", default=env.get("LEDGER_FILE"), help="ledger file (default $LEDGER_FILE)")
    p.add_argument("--events", default=env.get("LEDGER_EVENTS_FILE"), help="event file (default $LEDGER_EVENTS_FILE)")
    p.add_argument("--checkpoint-every", type=int, default=int(env.get("CHECKPOINT_EVERY", "0")),
                   help="checkpoint after every N records at that record; 0 = once per batch with no "
                        "sequence number (default $CHECKPOINT_EVERY or 0)")
    p.add_argument("--checkpoint-retries", type=int, default=int(env.get("CHECKPOINT_RETRIES", "10")),
                   help="retries of a checkpoint that failed with ThrottlingException (default 10)")
    p.add_argument("--retry-backoff-ms", type=int, default=int(env.get("CHECKPOINT_BACKOFF_MS", "100")),
                   help="first backoff after ThrottlingException, doubled each retry, max 5 s (default 100)")
    p.add_argument("--process-delay-ms", type=int, default=int(env.get("PROCESS_DELAY_MS", "0")),
                   help="sleep this long per batch (simulates slow processing)")
    p.add_argument("--stall-first-batch-ms", type=int, default=int(env.get("STALL_FIRST_BATCH_MS", "0")),
                   help="sleep this long once, in the first non-empty batch (simulates a stalled child)")
    p.add_argument("--stall-release-file", default=env.get("STALL_RELEASE_FILE"),
                   help="end the stall early once this file exists")
    p.add_argument("--stall-shards", default=env.get("STALL_SHARDS", ""),
                   help="comma-separated shard ids the stall applies to (default: every shard)")
    args = p.parse_args(argv)
    if not args.ledger:
        p.error("no ledger file: pass --ledger FILE or set LEDGER_FILE")
    if args.checkpoint_every < 0:
        p.error("--checkpoint-every must be >= 0")
    args.processor = processor_name
    return args


def log(message):
    sys.stderr.write("ledger-processor[%d]: %s\n" % (os.getpid(), message))
    sys.stderr.flush()


class AppendFile:
    """A file appended to in whole writes under an exclusive flock (safe across processes)."""

    def __init__(self, path):
        self.path = path
        self.fd = None

    def append(self, text):
        if self.fd is None:
            directory = os.path.dirname(os.path.abspath(self.path))
            os.makedirs(directory, exist_ok=True)
            self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        data = text.encode("utf-8")
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        try:
            view = memoryview(data)
            while view:
                written = os.write(self.fd, view)
                view = view[written:]
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)


def dumps(obj):
    return json.dumps(obj, separators=(",", ":"))


class Ledger:
    def __init__(self, config):
        self.config = config
        self.shard_id = None
        self.ledger = None
        self.events = AppendFile(config.events) if config.events else None
        self.pid = os.getpid()

    def start(self, shard_id):
        self.shard_id = shard_id
        self.ledger = AppendFile(self.config.ledger.replace("{shard}", shard_id))

    def records(self, records):
        """records: iterable of (sequence_number, sub_sequence_number, partition_key, data_bytes)."""
        lines = []
        for seq, subseq, pk, data in records:
            lines.append(dumps({
                "shardId": self.shard_id,
                "sequenceNumber": seq,
                "subSequenceNumber": subseq,
                "partitionKey": pk,
                "sha256": hashlib.sha256(data).hexdigest(),
                "processor": self.config.processor,
                "pid": self.pid,
            }))
        if lines:
            if self.ledger is None:
                # processRecords before initialize never happens with a correct daemon.
                self.start(self.shard_id or "unknown-shard")
            self.ledger.append("\n".join(lines) + "\n")

    def event(self, name, **fields):
        if self.events is None:
            return
        entry = {"event": name, "shardId": self.shard_id, "processor": self.config.processor,
                 "pid": self.pid, "time": round(time.time(), 3)}
        entry.update(fields)
        self.events.append(dumps(entry) + "\n")


def checkpoint(ledger, config, checkpointer, during, sequence_number=None, sub_sequence_number=None):
    """Checkpoints with the stock client's checkpointer, retrying ThrottlingException with
    exponential backoff. Returns True on success, False when the checkpoint was given up."""
    backoff = config.retry_backoff_ms / 1000.0
    attempt = 0
    while True:
        attempt += 1
        try:
            checkpointer.checkpoint(sequence_number, sub_sequence_number)
            ledger.event("checkpoint", during=during, sequenceNumber=sequence_number,
                         subSequenceNumber=sub_sequence_number, attempt=attempt, error=None)
            return True
        except CheckpointError as err:
            code = err.value
            ledger.event("checkpoint", during=during, sequenceNumber=sequence_number,
                         subSequenceNumber=sub_sequence_number, attempt=attempt, error=code)
            if code == "ThrottlingException" and attempt <= config.checkpoint_retries:
                log("checkpoint throttled (%s, attempt %d); retrying in %.2f s" % (during, attempt, backoff))
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if code == "ShutdownException":
                log("checkpoint refused, lease lost (ShutdownException); not retrying")
            elif code == "InvalidStateException":
                log("checkpoint failed: InvalidStateException (no checkpointer for %s?)" % during)
            else:
                log("checkpoint failed during %s: %s (attempt %d)" % (during, code, attempt))
            return False


def process_batch(ledger, config, checkpointer, records):
    """Writes the ledger lines of a batch, then checkpoints per the configured policy.
    records: list of (sequence_number, sub_sequence_number, partition_key, data_bytes)."""
    ledger.records(records)
    if records and config.stall_first_batch_ms > 0 and not getattr(ledger, "stalled", False):
        ledger.stalled = True
        if not config.stall_shards or ledger.shard_id in config.stall_shards.split(","):
            ledger.event("stall", ms=config.stall_first_batch_ms)
            until = time.monotonic() + config.stall_first_batch_ms / 1000.0
            while time.monotonic() < until:
                if config.stall_release_file and os.path.exists(config.stall_release_file):
                    break
                time.sleep(min(0.1, max(0.0, until - time.monotonic())))
    if config.process_delay_ms > 0:
        time.sleep(config.process_delay_ms / 1000.0)
    if not records:
        return
    if config.checkpoint_every == 0:
        checkpoint(ledger, config, checkpointer, "processRecords")
        return
    since = getattr(ledger, "since_checkpoint", 0)
    for seq, subseq, _, _ in records:
        since += 1
        if since >= config.checkpoint_every:
            if not checkpoint(ledger, config, checkpointer, "processRecords", seq, subseq):
                break
            since = 0
    ledger.since_checkpoint = since
