#!/usr/bin/env python3
"""amazon_kclpy v3 record processor that writes a ledger of every record it receives.

  executableName = <repo>/.testbed/venv/bin/python <repo>/sample-apps/python-v3-ledger/ledger_processor.py --ledger /tmp/ledger.jsonl

Per record: one JSON line {shardId, sequenceNumber, subSequenceNumber, partitionKey, sha256 of the
data, processor, pid} in the ledger (see ../python-common/ledger_common.py). Checkpoints with the
stock checkpointer once per batch (no sequence number = "the last record of this batch") or, with
--checkpoint-every N, after every N records at that record's (sequence, sub-sequence) number;
ThrottlingException is retried with backoff. shard_ended and shutdown_requested checkpoint too.
Options: --ledger FILE, --events FILE, --checkpoint-every N, --checkpoint-retries N,
--retry-backoff-ms MS, --process-delay-ms MS, --stall-first-batch-ms MS, --stall-shards IDS, --stall-release-file F (or the env
vars named in --help).
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python-common"))

from amazon_kclpy import kcl  # noqa: E402
from amazon_kclpy.v3 import processor  # noqa: E402

import ledger_common as lc  # noqa: E402


class LedgerProcessor(processor.RecordProcessorBase):
    def __init__(self, config):
        self.config = config
        self.ledger = lc.Ledger(config)

    def initialize(self, initialize_input):
        self.ledger.start(initialize_input.shard_id)
        self.ledger.event("initialize", sequenceNumber=initialize_input.sequence_number,
                          subSequenceNumber=initialize_input.sub_sequence_number)

    def process_records(self, process_records_input):
        records = [(r.sequence_number, r.sub_sequence_number, r.partition_key, r.binary_data)
                   for r in process_records_input.records]
        self.ledger.event("process_records", records=len(records),
                          millisBehindLatest=process_records_input.millis_behind_latest)
        lc.process_batch(self.ledger, self.config, process_records_input.checkpointer, records)

    def lease_lost(self, lease_lost_input):
        self.ledger.event("lease_lost")

    def shard_ended(self, shard_ended_input):
        self.ledger.event("shard_ended")
        lc.checkpoint(self.ledger, self.config, shard_ended_input.checkpointer, "shardEnded")

    def shutdown_requested(self, shutdown_requested_input):
        self.ledger.event("shutdown_requested")
        lc.checkpoint(self.ledger, self.config, shutdown_requested_input.checkpointer, "shutdownRequested")


if __name__ == "__main__":
    kcl.KCLProcess(LedgerProcessor(lc.parse_config("python-v3"))).run()
