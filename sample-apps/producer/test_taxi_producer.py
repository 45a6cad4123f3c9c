"""Offline tests of taxi_producer.py (no emulator needed): batching limits, per-record retry
accounting, determinism, padding and the ledger. Run with the test bed's Python:
  .testbed/venv/bin/python -m unittest discover -s sample-apps/producer -v
"""

import hashlib
import io
import json
import os
import sys
import tempfile
import unittest
from unittest import mock

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import botocore.exceptions  # noqa: E402

import taxi_producer as tp  # noqa: E402


class FakeKinesis:
    """Records calls; fails the first `fail_first` records of each of the first `fail_calls` calls."""

    def __init__(self, fail_calls=0, fail_first=0, throttle_put_record=0):
        self.calls = []
        self.fail_calls = fail_calls
        self.fail_first = fail_first
        self.throttle_put_record = throttle_put_record
        self.seq = 1000

    def _next_seq(self):
        self.seq += 1
        return str(self.seq).zfill(56)

    def put_records(self, StreamName, Records):  # noqa: N803 - boto3 argument names
        self.calls.append(Records)
        out = []
        failing = self.fail_first if len(self.calls) <= self.fail_calls else 0
        for i, _ in enumerate(Records):
            if i < failing:
                out.append({"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "slow down"})
            else:
                out.append({"ShardId": "shardId-000000000000", "SequenceNumber": self._next_seq()})
        return {"FailedRecordCount": failing, "Records": out}

    def put_record(self, StreamName, Data, PartitionKey):  # noqa: N803
        self.calls.append([{"Data": Data, "PartitionKey": PartitionKey}])
        if self.throttle_put_record > 0:
            self.throttle_put_record -= 1
            raise botocore.exceptions.ClientError(
                {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow"}}, "PutRecord")
        return {"ShardId": "shardId-000000000001", "SequenceNumber": self._next_seq()}


def run(argv, client):
    out = io.StringIO()
    with mock.patch.object(tp, "make_client", return_value=client), \
            mock.patch.object(tp.time, "sleep"), \
            mock.patch.object(sys, "stdout", out), \
            mock.patch.object(sys, "stderr", io.StringIO()):
        rc = tp.main(argv)
    return rc, json.loads(out.getvalue().strip().splitlines()[-1])


class ProducerTest(unittest.TestCase):
    def test_batches_respect_500_records(self):
        client = FakeKinesis()
        rc, summary = run(["--stream", "s", "--count", "1201"], client)
        self.assertEqual(rc, 0)
        self.assertEqual([len(c) for c in client.calls], [500, 500, 201])
        self.assertEqual(summary["sent"], 1201)
        self.assertEqual(summary["failed_retried"], 0)

    def test_batches_respect_5_mib(self):
        client = FakeKinesis()
        rc, summary = run(["--stream", "s", "--count", "30", "--record-size", str(400 * 1024)], client)
        self.assertEqual(rc, 0)
        for call in client.calls:
            size = sum(len(r["Data"]) + len(r["PartitionKey"]) for r in call)
            self.assertLessEqual(size, tp.MAX_BYTES_PER_CALL)
        self.assertEqual(sum(len(c) for c in client.calls), 30)
        self.assertEqual(summary["sent"], 30)
        self.assertGreater(len(client.calls), 2)

    def test_failed_records_are_retried_and_counted(self):
        client = FakeKinesis(fail_calls=2, fail_first=3)
        with tempfile.TemporaryDirectory() as tmp:
            ledger = os.path.join(tmp, "ledger.jsonl")
            rc, summary = run(["--stream", "s", "--count", "10", "--ledger", ledger], client)
            with open(ledger, encoding="utf-8") as f:
                lines = [json.loads(line) for line in f]
        self.assertEqual(rc, 0)
        # call 1: 3 of 10 fail; call 2 (the 3 retried): all 3 fail; call 3: ok.
        self.assertEqual([len(c) for c in client.calls], [10, 3, 3])
        self.assertEqual(summary["failed_retried"], 6)
        self.assertEqual(summary["sent"], 10)
        self.assertEqual(summary["failed"], 0)
        self.assertEqual(len(lines), 10)
        self.assertEqual(len({line["sequenceNumber"] for line in lines}), 10)
        sent = {r["PartitionKey"]: hashlib.sha256(r["Data"]).hexdigest() for c in client.calls for r in c}
        for line in lines:
            self.assertEqual(sent[line["partitionKey"]], line["sha256"])
            self.assertEqual(set(line), {"shardId", "sequenceNumber", "partitionKey", "sha256"})

    def test_gives_up_after_max_retries(self):
        client = FakeKinesis(fail_calls=100, fail_first=2)
        rc, summary = run(["--stream", "s", "--count", "5", "--max-retries", "3"], client)
        self.assertEqual(rc, 1)
        self.assertEqual(summary["sent"], 3)
        self.assertEqual(summary["failed"], 2)
        self.assertEqual(summary["failed_retried"], 6)

    def test_put_record_mode_retries_throttling(self):
        client = FakeKinesis(throttle_put_record=2)
        rc, summary = run(["--stream", "s", "--count", "4", "--mode", "put-record"], client)
        self.assertEqual(rc, 0)
        self.assertEqual(len(client.calls), 6)
        self.assertEqual(summary["sent"], 4)
        self.assertEqual(summary["failed_retried"], 2)

    def test_same_seed_same_records(self):
        a, b, c = tp.TripGenerator(7, 0), tp.TripGenerator(7, 0), tp.TripGenerator(8, 0)
        first = [a.next() for _ in range(50)]
        self.assertEqual(first, [b.next() for _ in range(50)])
        self.assertNotEqual(first, [c.next() for _ in range(50)])
        trip = json.loads(first[0][1])
        for key in ("trip_id", "pickup_datetime", "dropoff_datetime", "pickup_longitude", "pickup_latitude",
                    "dropoff_longitude", "dropoff_latitude", "fare_amount", "passenger_count"):
            self.assertIn(key, trip)
        self.assertEqual(first[0][0], trip["trip_id"])

    def test_record_size_padding_is_exact_and_valid_json(self):
        gen = tp.TripGenerator(1, 2048)
        for _ in range(20):
            _, data = gen.next()
            self.assertEqual(len(data), 2048)
            self.assertIn("pad", json.loads(data))


if __name__ == "__main__":
    unittest.main()
