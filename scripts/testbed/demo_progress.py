#!/usr/bin/env python3
"""Progress of a running demo, one line every --interval seconds (scripts/demo.sh uses it).

  demo_progress.py --sent SENT.jsonl --table LEASE_TABLE --dynamodb-endpoint URL
                   [--ledger LEDGER.jsonl] [--daemon-log FILE] [--interval 2] [--until-complete]
                   [--timeout S]

Per line: records sent (producer ledger), records covered by checkpoints (for each shard: sent
records whose sequence number is <= the lease's checkpoint; SHARD_END covers the whole shard),
records seen by ledger processors (unique), records multilangd reports as delivered to its
processors (--daemon-log: the daemon's periodic `progress` log lines, every 10 s), and the leases
held. Works with any processor,
including the unchanged amazon_kclpy sample (which checkpoints only every 30 s).

--until-complete: exit 0 as soon as every sent record is in the processors' ledger (needs --ledger),
exit 1 after --timeout seconds. Otherwise runs until interrupted.
"""

import argparse
import json
import os
import re
import sys
import time

import boto3


def read_jsonl(path, offset_cache):
    """Incrementally reads complete JSON lines appended to path since the last call."""
    entries = []
    try:
        with open(path, "rb") as f:
            f.seek(offset_cache.get(path, 0))
            data = f.read()
    except FileNotFoundError:
        return entries
    end = data.rfind(b"\n")
    if end < 0:
        return entries
    offset_cache[path] = offset_cache.get(path, 0) + end + 1
    for line in data[: end + 1].splitlines():
        line = line.strip()
        if line:
            try:
                entries.append(json.loads(line))
            except ValueError:
                pass
    return entries


PROGRESS = re.compile(r"progress.*shard_id=(\S+).*records=(\d+)|shard_id=(\S+).*records=(\d+).*progress")


def delivered_from_log(path, offset_cache, per_shard):
    """Updates per_shard from multilangd `progress` lines appended to its log since the last call."""
    try:
        with open(path, "rb") as f:
            f.seek(offset_cache.get(path, 0))
            data = f.read()
    except FileNotFoundError:
        return
    end = data.rfind(b"\n")
    if end < 0:
        return
    offset_cache[path] = offset_cache.get(path, 0) + end + 1
    for line in data[: end + 1].decode("utf-8", "replace").splitlines():
        m = PROGRESS.search(line)
        if m:
            shard = m.group(1) or m.group(3)
            per_shard[shard] = int(m.group(2) or m.group(4))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--sent", required=True)
    p.add_argument("--ledger")
    p.add_argument("--daemon-log", help="multilangd's log: sum the per-shard records= of its progress lines")
    p.add_argument("--table", required=True)
    p.add_argument("--dynamodb-endpoint", required=True)
    p.add_argument("--region", default=os.environ.get("AWS_REGION", "us-east-1"))
    p.add_argument("--interval", type=float, default=2.0)
    p.add_argument("--until-complete", action="store_true")
    p.add_argument("--timeout", type=float, default=180.0)
    args = p.parse_args()

    ddb = boto3.client("dynamodb", endpoint_url=args.dynamodb_endpoint, region_name=args.region,
                       aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "x"),
                       aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "x"))
    offsets = {}
    sent_by_shard = {}  # shard -> sorted list of int sequence numbers (appended in order per call)
    sent_keys = set()
    sent_total = 0
    seen = set()
    delivered = {}
    start = time.monotonic()
    try:
        while True:
            for e in read_jsonl(args.sent, offsets):
                sent_by_shard.setdefault(e["shardId"], []).append(int(e["sequenceNumber"]))
                sent_keys.add((e["shardId"], e["sequenceNumber"]))
                sent_total += 1
            if args.ledger:
                for e in read_jsonl(args.ledger, offsets):
                    seen.add((e["shardId"], e["sequenceNumber"]))
            if args.daemon_log:
                delivered_from_log(args.daemon_log, offsets, delivered)
            leases = []
            try:
                kwargs = {"TableName": args.table, "ConsistentRead": True}
                while True:
                    page = ddb.scan(**kwargs)
                    leases.extend(page.get("Items", []))
                    if "LastEvaluatedKey" not in page:
                        break
                    kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
            except ddb.exceptions.ResourceNotFoundException:
                pass
            covered = 0
            owners = set()
            owned = 0
            for item in leases:
                shard = item["leaseKey"]["S"]
                checkpoint = item.get("checkpoint", {}).get("S", "")
                seqs = sent_by_shard.get(shard, [])
                if checkpoint == "SHARD_END":
                    covered += len(seqs)
                elif checkpoint.isdigit():
                    cp = int(checkpoint)
                    covered += sum(1 for s in seqs if s <= cp)
                if "leaseOwner" in item:
                    owned += 1
                    owners.add(item["leaseOwner"]["S"])
            elapsed = time.monotonic() - start
            line = "demo: %5.0fs  sent %d  checkpointed %d" % (elapsed, sent_total, covered)
            if args.daemon_log:
                line += "  delivered %d" % sum(delivered.values())
            if args.ledger:
                line += "  processed %d" % len(seen)
            line += "  leases %d (%d owned by %d worker%s)" % (len(leases), owned, len(owners),
                                                              "" if len(owners) == 1 else "s")
            print(line, flush=True)
            if args.until_complete:
                if sent_total and sent_keys <= seen:
                    return 0
                if elapsed > args.timeout:
                    print("demo: timed out after %.0f s" % args.timeout, file=sys.stderr)
                    return 1
            time.sleep(args.interval)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
