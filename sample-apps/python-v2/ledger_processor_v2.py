#!/usr/bin/env python3
"""amazon_kclpy v2-interface record processor (amazon_kclpy.v2.processor) writing a ledger.

Same ledger, events and options as ../python-v3-ledger/ledger_processor.py, but on the older v2
interface, which the client adapts to the 2.x protocol: leaseLost arrives as
shutdown(reason="ZOMBIE") with a checkpointer that refuses locally, shardEnded as
shutdown(reason="TERMINATE") with the real checkpointer.

  executableName = <repo>/.testbed/venv/bin/python <repo>/sample-apps/python-v2/ledger_processor_v2.py --ledger /tmp/ledger.jsonl
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python-common"))

from amazon_kclpy import kcl  # noqa: E402
from amazon_kclpy.v2 import processor  # noqa: E402

import ledger_common as lc  # noqa: E402


class LedgerProcessorV2(processor.RecordProcessorBase):
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

    def shutdown(self, shutdown_input):
        if shutdown_input.reason == "TERMINATE":
            self.ledger.event("shard_ended")
            lc.checkpoint(self.ledger, self.config, shutdown_input.checkpointer, "shardEnded")
        else:  # ZOMBIE: the lease is gone, checkpointing is not allowed
            self.ledger.event("lease_lost")

    def shutdown_requested(self, shutdown_requested_input):
        self.ledger.event("shutdown_requested")
        lc.checkpoint(self.ledger, self.config, shutdown_requested_input.checkpointer, "shutdownRequested")


if __name__ == "__main__":
    kcl.KCLProcess(LedgerProcessorV2(lc.parse_config("python-v2"))).run()
