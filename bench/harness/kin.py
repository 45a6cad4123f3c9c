"""boto3 helpers: streams, producers, lease-table seeding (KCL 2.x format)."""
import threading
import time

import boto3
from botocore.config import Config

_CFG = Config(region_name="us-east-1", retries={"max_attempts": 10, "mode": "standard"},
              max_pool_connections=16, connect_timeout=5, read_timeout=60)


def _client(service, endpoint):
    return boto3.session.Session(aws_access_key_id="x", aws_secret_access_key="x", region_name="us-east-1").client(
        service, endpoint_url=endpoint, config=_CFG)


def kinesis(endpoint):
    return _client("kinesis", endpoint)


def dynamodb(endpoint):
    return _client("dynamodb", endpoint)


def create_stream(kin, name, shards, timeout=30):
    kin.create_stream(StreamName=name, ShardCount=shards)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        d = kin.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
        if d["StreamStatus"] == "ACTIVE":
            return list_shards(kin, name)
        time.sleep(0.1)
    raise TimeoutError(f"stream {name} not ACTIVE after {timeout} s")


def list_shards(kin, name):
    shards, token = [], None
    while True:
        r = kin.list_shards(NextToken=token) if token else kin.list_shards(StreamName=name)
        shards.extend(r["Shards"])
        token = r.get("NextToken")
        if not token:
            return shards


def payload(send_ts, i, size):
    head = b"%.6f %d " % (send_ts, i)
    return head + b"x" * max(0, size - len(head))


def put_records(kin, stream, start, count, size):
    """Puts records start..start+count-1 with PutRecords (500 per call), retrying failed ones."""
    i = start
    end = start + count
    while i < end:
        n = min(500, end - i)
        now = time.time()
        entries = [{"Data": payload(now, j, size), "PartitionKey": f"pk-{j}"} for j in range(i, i + n)]
        for _attempt in range(20):
            r = kin.put_records(StreamName=stream, Records=entries)
            if not r.get("FailedRecordCount"):
                break
            entries = [e for e, res in zip(entries, r["Records"]) if "ErrorCode" in res]
            time.sleep(0.05)
        else:
            raise RuntimeError(f"PutRecords kept failing for {len(entries)} records")
        i += n


def preload(endpoint, stream, count, size, threads=2):
    """Puts `count` records of `size` bytes, split over `threads` boto3 clients. Returns seconds."""
    t0 = time.monotonic()
    per = (count + threads - 1) // threads
    errors = []

    def work(k):
        try:
            put_records(kinesis(endpoint), stream, k * per, max(0, min(per, count - k * per)), size)
        except Exception as e:  # reported below
            errors.append(e)

    ts = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise errors[0]
    return time.monotonic() - t0


class RateProducer(threading.Thread):
    """Puts one record at a time (PutRecord) at `rate` per second for at most `count` records or
    `seconds`, whichever comes first; records each send time (taken just before the call)."""

    def __init__(self, endpoint, stream, rate, seconds, size=100, max_count=None):
        super().__init__(name="producer", daemon=True)
        self.kin = kinesis(endpoint)
        self.stream, self.rate, self.seconds, self.size = stream, rate, seconds, size
        self.max_count = max_count or int(rate * seconds)
        self.sent = []          # (send_ts, put_duration_s)
        self.error = None
        self._halt = threading.Event()

    def run(self):
        start = time.monotonic()
        try:
            for i in range(self.max_count):
                due = start + i / self.rate
                if due - start > self.seconds or self._halt.is_set():
                    break
                delay = due - time.monotonic()
                if delay > 0 and self._halt.wait(delay):
                    break
                ts = time.time()
                self.kin.put_record(StreamName=self.stream, Data=payload(ts, i, self.size), PartitionKey=f"pk-{i}")
                self.sent.append((ts, time.time() - ts))
        except Exception as e:  # reported by the scenario
            self.error = e

    def stop(self):
        self._halt.set()
        self.join(timeout=30)


def seed_leases(ddb, table, shards, checkpoint="TRIM_HORIZON", timeout=30):
    """Creates a KCL 2.x lease table with one unowned lease per shard (as KCL's shard sync does)."""
    ddb.create_table(TableName=table, KeySchema=[{"AttributeName": "leaseKey", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "leaseKey", "AttributeType": "S"}],
                     BillingMode="PAY_PER_REQUEST")
    deadline = time.monotonic() + timeout
    while ddb.describe_table(TableName=table)["Table"]["TableStatus"] != "ACTIVE":
        if time.monotonic() > deadline:
            raise TimeoutError(f"table {table} not ACTIVE after {timeout} s")
        time.sleep(0.05)
    for sh in shards:
        item = {
            "leaseKey": {"S": sh["ShardId"]},
            "leaseCounter": {"N": "0"},
            "checkpoint": {"S": checkpoint},
            "checkpointSubSequenceNumber": {"N": "0"},
            "ownerSwitchesSinceCheckpoint": {"N": "0"},
            "startingHashKey": {"S": sh["HashKeyRange"]["StartingHashKey"]},
            "endingHashKey": {"S": sh["HashKeyRange"]["EndingHashKey"]},
        }
        if sh.get("ParentShardId"):
            item["parentShardId"] = {"SS": [sh["ParentShardId"]]}
        ddb.put_item(TableName=table, Item=item, ConditionExpression="attribute_not_exists(leaseKey)")


def lease_owners(ddb, table):
    items = ddb.scan(TableName=table, ConsistentRead=True)["Items"]
    return {it["leaseKey"]["S"]: it.get("leaseOwner", {}).get("S") for it in items}
