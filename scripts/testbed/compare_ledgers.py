#!/usr/bin/env python3
"""Compare the producer's ledger with the record processors' ledger(s).

  compare_ledgers.py SENT.jsonl RECEIVED.jsonl [RECEIVED2.jsonl ...]

SENT lines (sample-apps/producer/taxi_producer.py --ledger):
  {"shardId","sequenceNumber","partitionKey","sha256"}
RECEIVED lines (sample-apps/* ledger processors):
  {"shardId","sequenceNumber","subSequenceNumber","partitionKey","sha256","processor","pid"}
Records are matched on (shardId, sequenceNumber). Prints one JSON line:
  {"sent", "received_lines", "received_unique", "duplicates", "missing", "unexpected", "mismatched"}
Exit status 0 when nothing is missing and nothing mismatched (duplicates are allowed: KCL delivery
is at-least-once), 1 otherwise. Partial last lines (a writer still running) are ignored.
"""

import json
import sys


def read(path):
    entries = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if not line.endswith("\n"):
                    break  # being written
                line = line.strip()
                if line:
                    entries.append(json.loads(line))
    except FileNotFoundError:
        pass
    return entries


def compare(sent_path, received_paths):
    sent = {(e["shardId"], e["sequenceNumber"]): e for e in read(sent_path)}
    received = [e for path in received_paths for e in read(path)]
    seen = {}
    mismatched = 0
    unexpected = 0
    for entry in received:
        key = (entry["shardId"], entry["sequenceNumber"])
        seen[key] = seen.get(key, 0) + 1
        want = sent.get(key)
        if want is None:
            unexpected += 1
        elif (want["partitionKey"], want["sha256"]) != (entry["partitionKey"], entry["sha256"]):
            mismatched += 1
    return {
        "sent": len(sent),
        "received_lines": len(received),
        "received_unique": len(seen),
        "duplicates": sum(n - 1 for n in seen.values()),
        "missing": sum(1 for key in sent if key not in seen),
        "unexpected": unexpected,
        "mismatched": mismatched,
    }


def main(argv):
    if len(argv) < 3:
        sys.stderr.write(__doc__)
        return 2
    result = compare(argv[1], argv[2:])
    sys.stdout.write(json.dumps(result) + "\n")
    return 0 if result["missing"] == 0 and result["mismatched"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
