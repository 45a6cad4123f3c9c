#!/usr/bin/env python3
"""Taxi-trip producer for Kinesis (demos, benchmarks and end-to-end tests).

Generates deterministic taxi-trip-like JSON records (trip id, vendor, pickup/dropoff time and
coordinates, distance, passengers, fare, tip, total, payment type) and sends them to a stream with
PutRecords (default; <= 500 records and <= 5 MiB per call, per-record failures retried with
exponential backoff and counted) or PutRecord (--mode put-record).

Progress goes to stderr; the last line on stdout is a JSON summary:
  {"sent": N, "failed_retried": R, "failed": F, "elapsed_s": T, ...}
With --ledger FILE every acknowledged record is appended to FILE as one JSON line:
  {"shardId": "...", "sequenceNumber": "...", "partitionKey": "...", "sha256": "<hex of the data>"}
so a test can compare what was sent with what the record processors saw
(sample-apps/*: same keys, plus subSequenceNumber).

Run it with the test bed's Python (boto3 1.44.5):
  .testbed/venv/bin/python sample-apps/producer/taxi_producer.py \\
      --endpoint http://127.0.0.1:4568 --stream trips --create-stream 4 --count 2000 --rate 500

Credentials: the usual boto3 chain; when no AWS credentials are configured and --endpoint is
given, dummy ones are used (emulators accept anything). Exit status 0 when every record was sent,
1 when some records could not be sent after --max-retries, 2 on usage errors.
"""

import argparse
import hashlib
import json
import os
import random
import signal
import sys
import time

import boto3
import botocore.config
import botocore.exceptions

MAX_RECORDS_PER_CALL = 500
MAX_BYTES_PER_CALL = 5 * 1024 * 1024
MAX_RECORD_BYTES = 1024 * 1024  # data + partition key
# A fixed epoch for the generated trip times, so that --seed alone decides every payload.
BASE_EPOCH = 1704067200  # 2024-01-01T00:00:00Z
RETRYABLE_CODES = {
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "LimitExceededException",
    "InternalFailure",
    "InternalFailureException",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "KMSThrottlingException",
}

# Rough NYC bounding box and a few vendors/payment types for realistic-looking records.
LON_MIN, LON_MAX = -74.05, -73.75
LAT_MIN, LAT_MAX = 40.58, 40.90
VENDORS = ["CMT", "VTS", "DDS"]
PAYMENT_TYPES = ["card", "cash", "no_charge", "dispute"]


def log(message):
    sys.stderr.write("taxi-producer: %s\n" % message)
    sys.stderr.flush()


def iso(ts):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


class TripGenerator:
    """Deterministic stream of trip records for a seed."""

    def __init__(self, seed, record_size):
        self.rng = random.Random(seed)
        self.seed = seed
        self.record_size = record_size
        self.index = 0

    def next(self):
        """Returns (partition_key, data_bytes) of the next trip."""
        rng = self.rng
        i = self.index
        self.index += 1
        trip_id = "%016x-%06d" % (rng.getrandbits(64), i)
        pickup = BASE_EPOCH + i * 7 + rng.randint(0, 6)
        minutes = rng.uniform(2.0, 55.0)
        distance = round(max(0.1, minutes * rng.uniform(0.08, 0.45)), 2)
        fare = round(3.0 + distance * 2.5 + minutes * 0.5, 2)
        payment = rng.choice(PAYMENT_TYPES)
        tip = round(fare * rng.choice([0.0, 0.1, 0.15, 0.2, 0.25]), 2) if payment == "card" else 0.0
        trip = {
            "trip_id": trip_id,
            "seq": i,
            "vendor_id": rng.choice(VENDORS),
            "pickup_datetime": iso(pickup),
            "dropoff_datetime": iso(pickup + int(minutes * 60)),
            "passenger_count": rng.choices([1, 2, 3, 4, 5, 6], weights=[70, 15, 5, 4, 4, 2])[0],
            "trip_distance": distance,
            "pickup_longitude": round(rng.uniform(LON_MIN, LON_MAX), 6),
            "pickup_latitude": round(rng.uniform(LAT_MIN, LAT_MAX), 6),
            "dropoff_longitude": round(rng.uniform(LON_MIN, LON_MAX), 6),
            "dropoff_latitude": round(rng.uniform(LAT_MIN, LAT_MAX), 6),
            "payment_type": payment,
            "fare_amount": fare,
            "tip_amount": tip,
            "total_amount": round(fare + tip + 0.5, 2),
        }
        data = json.dumps(trip, separators=(",", ":")).encode("utf-8")
        if self.record_size and len(data) < self.record_size:
            # Pad inside the JSON so the record stays valid JSON of exactly record_size bytes.
            overhead = len(b',"pad":""')
            pad = max(0, self.record_size - len(data) - overhead)
            trip["pad"] = "x" * pad
            data = json.dumps(trip, separators=(",", ":")).encode("utf-8")
        return trip_id, data


class Ledger:
    """Appends one JSON line per acknowledged record."""

    def __init__(self, path):
        self.file = open(path, "a", encoding="utf-8") if path else None

    def write(self, entries):
        if not self.file or not entries:
            return
        lines = []
        for shard_id, seq, pk, data in entries:
            lines.append(json.dumps({
                "shardId": shard_id,
                "sequenceNumber": seq,
                "partitionKey": pk,
                "sha256": hashlib.sha256(data).hexdigest(),
            }, separators=(",", ":")))
        self.file.write("\n".join(lines) + "\n")
        self.file.flush()

    def close(self):
        if self.file:
            self.file.close()


class Stats:
    def __init__(self):
        self.sent = 0
        self.failed_retried = 0  # record failures (per record, per attempt) that were retried
        self.failed = 0  # records given up on
        self.calls = 0
        self.bytes = 0
        self.retry_sleeps = 0


def backoff_delay(attempt, jitter_rng, base=0.05, cap=2.0):
    return min(cap, base * (2 ** attempt)) * (0.5 + jitter_rng.random() / 2)


def error_code(exc):
    if isinstance(exc, botocore.exceptions.ClientError):
        return exc.response.get("Error", {}).get("Code", "")
    return type(exc).__name__


def is_retryable(exc):
    if isinstance(exc, (botocore.exceptions.ConnectionError, botocore.exceptions.ReadTimeoutError,
                        botocore.exceptions.EndpointConnectionError)):
        return True
    return error_code(exc) in RETRYABLE_CODES


def send_put_records(client, args, batch, ledger, stats, jitter_rng):
    """Sends batch [(pk, data)], retrying failed records. Returns records given up on."""
    pending = list(batch)
    attempt = 0
    while pending:
        try:
            stats.calls += 1
            response = client.put_records(
                StreamName=args.stream,
                Records=[{"Data": data, "PartitionKey": pk} for pk, data in pending],
            )
        except Exception as exc:  # noqa: BLE001 - decide below
            if not is_retryable(exc) or attempt >= args.max_retries:
                raise
            stats.failed_retried += len(pending)
            time.sleep(backoff_delay(attempt, jitter_rng))
            stats.retry_sleeps += 1
            attempt += 1
            continue
        acked, retry = [], []
        for (pk, data), result in zip(pending, response["Records"]):
            if "ErrorCode" in result and result["ErrorCode"]:
                retry.append((pk, data))
            else:
                acked.append((result["ShardId"], result["SequenceNumber"], pk, data))
        ledger.write(acked)
        stats.sent += len(acked)
        stats.bytes += sum(len(d) for _, _, _, d in acked)
        if not retry:
            return 0
        if attempt >= args.max_retries:
            log("giving up on %d records after %d retries" % (len(retry), attempt))
            return len(retry)
        stats.failed_retried += len(retry)
        time.sleep(backoff_delay(attempt, jitter_rng))
        stats.retry_sleeps += 1
        attempt += 1
        pending = retry
    return 0


def send_put_record(client, args, pk, data, ledger, stats, jitter_rng):
    attempt = 0
    while True:
        try:
            stats.calls += 1
            result = client.put_record(StreamName=args.stream, Data=data, PartitionKey=pk)
        except Exception as exc:  # noqa: BLE001 - decide below
            if not is_retryable(exc):
                raise
            if attempt >= args.max_retries:
                log("giving up on a record after %d retries: %s" % (attempt, error_code(exc)))
                return 1
            stats.failed_retried += 1
            time.sleep(backoff_delay(attempt, jitter_rng))
            stats.retry_sleeps += 1
            attempt += 1
            continue
        ledger.write([(result["ShardId"], result["SequenceNumber"], pk, data)])
        stats.sent += 1
        stats.bytes += len(data)
        return 0


def create_stream(client, stream, shards, timeout=60.0):
    try:
        client.create_stream(StreamName=stream, ShardCount=shards)
        log("creating stream %s with %d shards" % (stream, shards))
    except botocore.exceptions.ClientError as exc:
        if error_code(exc) != "ResourceInUseException":
            raise
        log("stream %s already exists" % stream)
    deadline = time.monotonic() + timeout
    while True:
        summary = client.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]
        if summary["StreamStatus"] == "ACTIVE":
            if summary.get("OpenShardCount") not in (None, shards):
                log("note: stream %s has %s open shards (asked for %d)" % (stream, summary["OpenShardCount"], shards))
            return
        if time.monotonic() > deadline:
            raise SystemExit("taxi-producer: stream %s not ACTIVE after %.0f s" % (stream, timeout))
        time.sleep(0.1)


def parse_args(argv):
    p = argparse.ArgumentParser(description="Send taxi-trip JSON records to a Kinesis stream.")
    p.add_argument("--endpoint", default=os.environ.get("KINESIS_ENDPOINT"),
                   help="Kinesis endpoint URL, e.g. http://127.0.0.1:4568 (default: $KINESIS_ENDPOINT, else AWS)")
    p.add_argument("--region", default=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1")
    p.add_argument("--stream", required=True, help="stream name")
    p.add_argument("--create-stream", type=int, metavar="N", default=0,
                   help="create the stream with N shards (if missing) and wait until it is ACTIVE")
    p.add_argument("--count", type=int, default=1000, help="records to send (default 1000; 0 = none, e.g. "
                                                         "with --create-stream only)")
    p.add_argument("--forever", action="store_true",
                   help="ignore --count and send until interrupted (SIGINT/SIGTERM), then print the summary")
    p.add_argument("--rate", type=float, default=0.0, help="records per second (default 0 = as fast as possible)")
    p.add_argument("--mode", choices=["put-records", "put-record"], default="put-records")
    p.add_argument("--batch-size", type=int, default=MAX_RECORDS_PER_CALL,
                   help="records per PutRecords call (1..500, default 500; also capped at 5 MiB)")
    p.add_argument("--record-size", type=int, default=0,
                   help="pad each JSON record to at least this many bytes (max 1 MiB)")
    p.add_argument("--seed", type=int, default=1, help="random seed; same seed, same records (default 1)")
    p.add_argument("--ledger", metavar="FILE", help="append one JSON line per acknowledged record")
    p.add_argument("--max-retries", type=int, default=10, help="retries per record/call (default 10)")
    p.add_argument("--progress-interval", type=float, default=1.0, help="seconds between progress lines")
    args = p.parse_args(argv)
    if args.forever:
        args.count = sys.maxsize
    if args.count < 0:
        p.error("--count must be >= 0")
    if args.rate < 0:
        p.error("--rate must be >= 0")
    if not 1 <= args.batch_size <= MAX_RECORDS_PER_CALL:
        p.error("--batch-size must be within 1..500")
    if args.record_size < 0 or args.record_size > MAX_RECORD_BYTES - 64:
        p.error("--record-size must be within 0..%d" % (MAX_RECORD_BYTES - 64))
    if args.create_stream < 0:
        p.error("--create-stream must be >= 1")
    return args


def make_client(args):
    session = boto3.session.Session()
    kwargs = {}
    if args.endpoint:
        kwargs["endpoint_url"] = args.endpoint
        if session.get_credentials() is None:
            kwargs.update(aws_access_key_id="x", aws_secret_access_key="x")
    config = botocore.config.Config(retries={"max_attempts": 2, "mode": "standard"},
                                    connect_timeout=5, read_timeout=30, max_pool_connections=4)
    return session.client("kinesis", region_name=args.region, config=config, **kwargs)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv=None):
    args = parse_args(argv if argv is not None else sys.argv[1:])
    signal.signal(signal.SIGTERM, _interrupt)
    client = make_client(args)
    if args.create_stream:
        create_stream(client, args.stream, args.create_stream)

    generator = TripGenerator(args.seed, args.record_size)
    jitter_rng = random.Random(args.seed ^ 0x5EED)  # backoff jitter never disturbs the payloads
    ledger = Ledger(args.ledger)
    stats = Stats()
    # Bursts of at most ~100 ms worth of records when rate-limited.
    per_call = args.batch_size if args.mode == "put-records" else 1
    if args.rate > 0:
        per_call = max(1, min(per_call, int(args.rate / 10) or 1))

    start = time.monotonic()
    next_progress = start + args.progress_interval
    produced = 0  # records generated so far
    carry = None  # a generated record that did not fit in the previous call (5 MiB cap)
    try:
        while produced < args.count or carry is not None:
            if args.rate > 0:
                due = start + (produced - (carry is not None)) / args.rate
                now = time.monotonic()
                if due > now:
                    time.sleep(due - now)
            batch, size = [], 0
            if carry is not None:
                batch.append(carry)
                size += len(carry[1]) + len(carry[0].encode())
                carry = None
            while produced < args.count and len(batch) < per_call:
                pk, data = generator.next()
                produced += 1
                rec_size = len(data) + len(pk.encode())
                if batch and size + rec_size > MAX_BYTES_PER_CALL:
                    carry = (pk, data)
                    break
                batch.append((pk, data))
                size += rec_size
            if args.mode == "put-records":
                stats.failed += send_put_records(client, args, batch, ledger, stats, jitter_rng)
            else:
                for pk, data in batch:
                    stats.failed += send_put_record(client, args, pk, data, ledger, stats, jitter_rng)
            now = time.monotonic()
            if now >= next_progress:
                elapsed = now - start
                log("sent %d/%s (%.0f rec/s, %d retried, %d failed)"
                    % (stats.sent, "inf" if args.forever else args.count, stats.sent / elapsed if elapsed else 0.0,
                       stats.failed_retried, stats.failed))
                next_progress = now + args.progress_interval
    except KeyboardInterrupt:
        if not args.forever:
            log("interrupted")
    except botocore.exceptions.ClientError as exc:
        log("fatal: %s" % exc)
        stats.failed += args.count - stats.sent - stats.failed
    finally:
        ledger.close()
    elapsed = time.monotonic() - start
    summary = {
        "sent": stats.sent,
        "failed_retried": stats.failed_retried,
        "failed": stats.failed,
        "elapsed_s": round(elapsed, 3),
        "records_per_s": round(stats.sent / elapsed, 1) if elapsed > 0 else None,
        "calls": stats.calls,
        "bytes": stats.bytes,
        "stream": args.stream,
        "mode": args.mode,
        "seed": args.seed,
    }
    log("done: sent %d in %.2f s" % (stats.sent, elapsed))
    sys.stdout.write(json.dumps(summary, separators=(",", ":")) + "\n")
    sys.stdout.flush()
    if args.forever:
        return 0 if stats.failed == 0 else 1
    return 0 if stats.failed == 0 and stats.sent == args.count else 1


if __name__ == "__main__":
    sys.exit(main())
