#!/usr/bin/env python3
"""The ledger record processor (sample-apps/python-v3-ledger) with a fault on chosen shards,
for tests/e2e_child_faults.rs. FAULTS="shardId-000000000000=crash,shardId-000000000001=hang"
names a mode per shard; other shards behave normally. Modes, at the first processRecords:
  crash     exit(3) (a crash loop: every restart crashes again)
  hang      never answer (the daemon's timeoutInSeconds must end it)
  garbage   write a line that is not JSON to the protocol channel, then carry on
  overlong  write a 3 MiB line (no JSON) to the protocol channel, then carry on
  closeout  close stdout (the protocol pipe), then carry on
  beyond    checkpoint a sequence number far past the last record received (the daemon must
            refuse it), then carry on normally
"""

import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
APPS = os.path.join(HERE, "..", "..", "sample-apps")
sys.path.insert(0, os.path.join(APPS, "python-common"))
sys.path.insert(0, os.path.join(APPS, "python-v3-ledger"))

from amazon_kclpy import kcl  # noqa: E402
from amazon_kclpy.checkpoint_error import CheckpointError  # noqa: E402

import ledger_common as lc  # noqa: E402
import ledger_processor as lp  # noqa: E402

FAULTS = dict(item.split("=", 1) for item in os.environ.get("FAULTS", "").split(",") if "=" in item)


class FaultyProcessor(lp.LedgerProcessor):
    def initialize(self, initialize_input):
        self.shard = initialize_input.shard_id
        self.mode = FAULTS.get(self.shard)
        super().initialize(initialize_input)

    def process_records(self, process_records_input):
        mode, self.mode = self.mode, (None if self.mode in ("beyond",) else self.mode)
        if mode == "crash":
            os._exit(3)
        if mode == "hang":
            time.sleep(3600)
        if mode in ("garbage", "overlong"):
            line = "this is not a protocol message" if mode == "garbage" else "x" * (3 * 1024 * 1024)
            os.write(1, (line + "\n").encode())
        if mode == "closeout":
            # Close the protocol pipe; /dev/null takes fd 1 so that no file opened later
            # becomes "stdout" by accident.
            os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
        if mode == "beyond" and process_records_input.records:
            last = process_records_input.records[-1].sequence_number
            try:
                process_records_input.checkpointer.checkpoint(str(int(last) + 10 ** 20), 0)
                self.ledger.event("beyond", error=None)
            except CheckpointError as err:
                self.ledger.event("beyond", error=err.value)
        super().process_records(process_records_input)


if __name__ == "__main__":
    kcl.KCLProcess(FaultyProcessor(lc.parse_config("python-v3"))).run()
