#!/usr/bin/env python3
"""Record multi-language protocol transcripts from the real Java MultiLangDaemon 2.5.8.

Usage (from the repository root, with the test bed's venv python):
    $MULTILANGD_TESTBED/venv/bin/python protocol-fixtures/capture/capture.py RUN [RUN...]
RUN is one of: kclpy | edge | mismatch.  Output: protocol-fixtures/java-<RUN>-<shard>.txt
(via to_fixture.py) and the raw tap logs in protocol-fixtures/capture/raw/<RUN>/.

Each run starts its own dynalite and kinesis-local on free loopback ports, creates a
1-shard stream, writes fixed records (binary, empty, newline, non-ASCII and control-char
partition keys, a KPL aggregate), starts the Java daemon with every child wrapped by
tap.py, drives the scenario and stops everything it started (by PID / process group).

  kclpy:    upstream amazon_kclpy 3.2.0 sample processor (from the sdist): initialize,
            processRecords with checkpoint, SplitShard -> shardEnded on the parent and
            initialize/processRecords on both children, SIGTERM -> shutdownRequested +
            leaseLost on the children.
  edge:     edge_child.py edge (parsing and checkpoint edge cases), then SIGTERM.
  mismatch: edge_child.py mismatch (wrong-case responseFor; the daemon exits 1).

Environment: MULTILANGD_TESTBED (default /work/tb) for node_modules, venv and jars;
KCLPY_SAMPLE: path of sample_kclpy_app.py from the amazon_kclpy 3.2.0 sdist (default:
extracted from $MULTILANGD_TESTBED/sdist/amazon_kclpy-3.2.0.tar.gz).
"""
import base64
import glob
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request

import boto3

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.dirname(HERE)
TESTBED = os.environ.get("MULTILANGD_TESTBED", "/work/tb")
NODE_MODULES = os.path.join(TESTBED, "emu/node_modules")
PYTHON = os.path.join(TESTBED, "venv/bin/python")
JARS = os.path.join(TESTBED, "venv/lib/python3.11/site-packages/amazon_kclpy/jars/*")
STREAM = "protocol-capture"
SHARD0 = "shardId-000000000000"

sys.path.insert(0, HERE)
import to_fixture  # noqa: E402

started = []  # Popen objects, each in its own process group


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(name, cmd, log, cwd=None, env=None):
    out = open(log, "wb")
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                            stderr=subprocess.STDOUT, start_new_session=True)
    started.append(proc)
    print("started %s pid %d" % (name, proc.pid), flush=True)
    return proc


def stop_all():
    for proc in reversed(started):
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait()
        print("stopped pid %d" % proc.pid, flush=True)
    started.clear()


def wait_http(port, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            urllib.request.urlopen("http://127.0.0.1:%d/" % port, timeout=1)
            return
        except urllib.error.HTTPError:
            return
        except Exception:
            time.sleep(0.1)
    raise RuntimeError("port %d not answering" % port)


def kpl_aggregate(keys, payloads):
    """A KPL aggregated record: magic, protobuf AggregatedRecord, md5 of the protobuf."""
    def varint(n):
        out = b""
        while True:
            b = n & 0x7F
            n >>= 7
            if n:
                out += bytes([b | 0x80])
            else:
                return out + bytes([b])

    def field(num, wire, payload):
        return varint((num << 3) | wire) + payload

    def ld(num, data):
        return field(num, 2, varint(len(data)) + data)

    body = b"".join(ld(1, k.encode()) for k in keys)
    for i, data in enumerate(payloads):
        rec = field(1, 0, varint(i % len(keys))) + ld(3, data)
        body += ld(3, rec)
    return b"\xf3\x89\x9a\xc2" + body + hashlib.md5(body).digest()


FIRST_RECORDS = [
    ("pk-ascii", b"hello, world"),
    ("pk-empty", b""),
    ("pk-binary", bytes(range(256))),
    ("pk-newlines", b"line1\nline2\r\nline3\r"),
    ("\u043a\u043b\u044e\u0447-\u00e9-\U0001f980", "\u00fcnic\u00f8de \u2603 payload".encode()),
    ("ctl-\x01\x1f\t\n\"\\/-end", b"control chars in key"),
    ("sep-\u2028\u2029-del-\x7f-nbsp-\u00a0", b"line and paragraph separators"),
    ("pk-kpl", kpl_aggregate(["agg-a", "agg-\u00df"], [b"user-0", b"", b"user-2"])),
    ("pk-large", bytes((i * 7) % 256 for i in range(100_000))),
]
SECOND_RECORDS = [("pk-after-split-%d" % i, ("after split %d" % i).encode()) for i in range(6)]


def kinesis_client(port):
    return boto3.client("kinesis", endpoint_url="http://127.0.0.1:%d" % port, region_name="us-east-1",
                        aws_access_key_id="x", aws_secret_access_key="x")


def put(kinesis, records):
    for key, data in records:
        kinesis.put_record(StreamName=STREAM, PartitionKey=key, Data=data)


def wait_for(predicate, what, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise RuntimeError("timed out waiting for " + what)


def tap_lines(logdir):
    """All D lines (decoded) of all taps so far, as (file, json) pairs."""
    out = []
    for path in glob.glob(os.path.join(logdir, "tap-*.jsonl")):
        with open(path) as f:
            for raw in f:
                try:
                    ev = json.loads(raw)
                except ValueError:
                    continue
                if ev.get("dir") == "D" and "b64" in ev:
                    try:
                        out.append((path, json.loads(base64.b64decode(ev["b64"]))))
                    except ValueError:
                        pass
    return out


def seen(logdir, action, shard=None):
    def pred():
        shards = {}
        hits = []
        for path, msg in tap_lines(logdir):
            if msg.get("action") == "initialize":
                shards[path] = msg.get("shardId")
            if msg.get("action") == action:
                hits.append(path)
        return any(shard is None or shards.get(p) == shard for p in hits)
    return pred


def kclpy_sample():
    path = os.environ.get("KCLPY_SAMPLE")
    if path:
        return path
    dest = os.path.join(tempfile.mkdtemp(prefix="kclpy-sdist-"), "sample_kclpy_app.py")
    with tarfile.open(os.path.join(TESTBED, "sdist/amazon_kclpy-3.2.0.tar.gz")) as tar:
        member = tar.getmember("amazon_kclpy-3.2.0/samples/sample_kclpy_app.py")
        with tar.extractfile(member) as src, open(dest, "wb") as dst:
            dst.write(src.read())
    return dest


def run(name):
    raw = os.path.join(HERE, "raw", name)
    shutil.rmtree(raw, ignore_errors=True)
    os.makedirs(raw)
    work = tempfile.mkdtemp(prefix="capture-%s-" % name)
    dyn_port, kin_port, kin_tls = free_port(), free_port(), free_port()
    start("dynalite", ["node", os.path.join(NODE_MODULES, "dynalite/cli.js"), "--host", "127.0.0.1",
                       "--port", str(dyn_port), "--createTableMs", "0", "--deleteTableMs", "0",
                       "--updateTableMs", "0"], os.path.join(work, "dynalite.log"))
    env = dict(os.environ, KINESIS_MOCK_PLAIN_PORT=str(kin_port), KINESIS_MOCK_TLS_PORT=str(kin_tls),
               LOG_LEVEL="WARN", SHARD_LIMIT="50")
    for k in ["CREATE_STREAM_DURATION", "DELETE_STREAM_DURATION", "SPLIT_SHARD_DURATION",
              "MERGE_SHARDS_DURATION", "UPDATE_SHARD_COUNT_DURATION"]:
        env[k] = "100ms"
    start("kinesis-local", ["node", "main.js"], os.path.join(work, "kinesis-local.log"),
          cwd=os.path.join(NODE_MODULES, "kinesis-local"), env=env)
    wait_http(dyn_port)
    wait_http(kin_port)

    kinesis = kinesis_client(kin_port)
    kinesis.create_stream(StreamName=STREAM, ShardCount=1)
    wait_for(lambda: kinesis.describe_stream_summary(StreamName=STREAM)["StreamDescriptionSummary"]
             ["StreamStatus"] == "ACTIVE", "stream active", 30)
    put(kinesis, FIRST_RECORDS)

    if name == "kclpy":
        child = "%s %s" % (PYTHON, kclpy_sample())
    else:
        child = "%s %s %s" % (PYTHON, os.path.join(HERE, "edge_child.py"), name)
    props = os.path.join(work, "capture.properties")
    with open(props, "w") as f:
        f.write("\n".join([
            "executableName = %s %s %s %s" % (PYTHON, os.path.join(HERE, "tap.py"), raw, child),
            "streamName = " + STREAM,
            "applicationName = capture-" + name,
            "AWSCredentialsProvider = DefaultAWSCredentialsProviderChain",
            "processingLanguage = python/3.11",
            "initialPositionInStream = TRIM_HORIZON",
            "regionName = us-east-1",
            "kinesisEndpoint = http://127.0.0.1:%d" % kin_port,
            "dynamoDBEndpoint = http://127.0.0.1:%d" % dyn_port,
            "metricsLevel = NONE",
            "retrievalMode = POLLING",
            "maxRecords = 10000",
            "idleTimeBetweenReadsInMillis = 200",
            "shardSyncIntervalMillis = 1000",
            "parentShardPollIntervalMillis = 1000",
            "failoverTimeMillis = 10000",
            "shutdownGraceMillis = 20000",
            "",
        ]))
    jenv = dict(os.environ, AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="x", AWS_REGION="us-east-1")
    java = start("java", ["java", "-cp", JARS, "software.amazon.kinesis.multilang.MultiLangDaemon",
                          "--properties-file", props], os.path.join(raw, "daemon.log"), cwd=work, env=jenv)

    wait_for(seen(raw, "processRecords"), "first processRecords", 120)
    if name == "kclpy":
        time.sleep(2)
        kinesis.split_shard(StreamName=STREAM, ShardToSplit=SHARD0,
                            NewStartingHashKey=str(2 ** 127))
        wait_for(lambda: kinesis.describe_stream_summary(StreamName=STREAM)["StreamDescriptionSummary"]
                 ["StreamStatus"] == "ACTIVE", "stream active after split", 30)
        time.sleep(0.5)
        put(kinesis, SECOND_RECORDS)
        wait_for(seen(raw, "shardEnded"), "shardEnded", 120)
        wait_for(lambda: len({m.get("shardId") for _, m in tap_lines(raw)
                              if m.get("action") == "initialize"}) >= 3, "children initialized", 120)
        def both_children_processed():
            shards, done = {}, set()
            for path, m in tap_lines(raw):
                if m.get("action") == "initialize":
                    shards[path] = m.get("shardId")
                if m.get("action") == "processRecords":
                    done.add(shards.get(path))
            return {"shardId-000000000001", "shardId-000000000002"} <= done
        wait_for(both_children_processed, "records on both child shards", 120)
    if name != "mismatch":
        time.sleep(2)
        os.kill(java.pid, signal.SIGTERM)
    try:
        java.wait(timeout=60)
    except subprocess.TimeoutExpired:
        print("java did not exit within 60 s after SIGTERM; killing", flush=True)
    print("java exit code:", java.poll(), flush=True)
    time.sleep(1)
    stop_all()
    to_fixture.convert_run(name, raw, FIXTURES)


def main():
    runs = sys.argv[1:] or ["kclpy", "edge", "mismatch"]
    try:
        for name in runs:
            run(name)
            stop_all()
    finally:
        stop_all()


if __name__ == "__main__":
    main()
