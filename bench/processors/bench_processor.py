#!/usr/bin/env python
"""Benchmark record processor (amazon_kclpy v3 API), used only by bench/run.py.

One process per shard, started by the daemon under test via `executableName`:

    python bench_processor.py --out DIR [--mode count|latency]

It writes, under DIR:

* ``first-<shardId>``: created (O_EXCL) when the first processRecords with at least one record
  reaches this process; contains the epoch time (time.time()) of receipt.
* ``shard-<shardId>-<pid>.log``: one line per processRecords call, ``b <recv_epoch> <n>``; in
  latency mode additionally one line per record, ``r <recv_epoch> <send_epoch>``, where
  send_epoch is the first space-separated field of the record payload (the producer's time).

It checkpoints once per non-empty batch (at the last record delivered, i.e. checkpoint() with no
argument) and answers every other action as the kclpy base class does. The record loop is kept
minimal (count mode does not even decode the payload) so that child CPU stays small compared to
the daemon's.
"""
import argparse
import os
import sys
import time

from amazon_kclpy import kcl
from amazon_kclpy.v3 import processor

CHECKPOINT_RETRIES = 5
RETRY_SLEEP_S = 0.2


class BenchProcessor(processor.RecordProcessorBase):
    def __init__(self, out_dir, mode):
        self.out_dir = out_dir
        self.mode = mode
        self.shard_id = "unknown"
        self.log = None
        self.seen_first = False

    def initialize(self, initialize_input):
        self.shard_id = initialize_input.shard_id
        path = os.path.join(self.out_dir, "shard-%s-%d.log" % (self.shard_id, os.getpid()))
        self.log = open(path, "a", buffering=1 << 16)

    def _mark_first(self, t):
        self.seen_first = True
        path = os.path.join(self.out_dir, "first-%s" % self.shard_id)
        try:
            fd = os.open(path + ".tmp%d" % os.getpid(), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError:
            return
        os.write(fd, b"%.6f\n" % t)
        os.close(fd)
        try:
            os.link(path + ".tmp%d" % os.getpid(), path)  # atomic; fails if another run wrote it
        except OSError:
            pass
        os.unlink(path + ".tmp%d" % os.getpid())

    def process_records(self, process_records_input):
        t = time.time()
        records = process_records_input.records
        n = len(records)
        if n == 0:
            return
        if not self.seen_first:
            self._mark_first(t)
        if self.mode == "latency":
            lines = []
            for r in records:
                data = r.binary_data
                lines.append("r %.6f %s\n" % (t, data.split(b" ", 1)[0].decode("ascii", "replace")))
            self.log.write("".join(lines))
        self.log.write("b %.6f %d\n" % (t, n))
        self.log.flush()
        self.checkpoint(process_records_input.checkpointer)

    def checkpoint(self, checkpointer):
        for attempt in range(CHECKPOINT_RETRIES):
            try:
                checkpointer.checkpoint()
                return
            except kcl.CheckpointError as e:
                if e.value == "ShutdownException":
                    return
                sys.stderr.write("bench_processor %s: checkpoint error %s (attempt %d)\n"
                                 % (self.shard_id, e.value, attempt + 1))
            time.sleep(RETRY_SLEEP_S)

    def lease_lost(self, lease_lost_input):
        if self.log:
            self.log.flush()

    def shard_ended(self, shard_ended_input):
        self.checkpoint(shard_ended_input.checkpointer)
        if self.log:
            self.log.flush()

    def shutdown_requested(self, shutdown_requested_input):
        self.checkpoint(shutdown_requested_input.checkpointer)
        if self.log:
            self.log.flush()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--mode", choices=["count", "latency"], default="count")
    args = parser.parse_args()
    kcl.KCLProcess(BenchProcessor(args.out, args.mode)).run()


if __name__ == "__main__":
    main()
