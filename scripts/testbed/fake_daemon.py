#!/usr/bin/env python3
"""A tiny scripted stand-in for the MultiLangDaemon, to exercise a record processor by hand.

It starts CMD as the child, speaks the KCL 2.x multi-language protocol with it over stdin/stdout
(one compact JSON object per line, checkpoint replies echoing the request, statuses checked) and
plays a fixed script:

  initialize(shard, TRIM_HORIZON)
  processRecords x --batches (--records records in total, 56-digit sequence numbers)
  then --end: shardEnded (default) | leaseLost | shutdownRequested (then leaseLost) | none
  close stdin, wait for the child to exit

Checkpoint requests are answered like the Java daemon: InvalidStateException during initialize and
leaseLost; otherwise success, except that the first --throttle requests get ThrottlingException.
A null sequence number means "the last record delivered" (SHARD_END during shardEnded); an
explicit one must be a delivered record (else IllegalArgumentException).

With --ledger FILE it also checks that FILE holds exactly one line per record sent with matching
shardId / sequenceNumber / subSequenceNumber / partitionKey / sha256.
The summary (JSON) goes to stdout; exit status 0 = protocol followed (and ledger matched).

  python3 scripts/testbed/fake_daemon.py --records 5 --ledger /tmp/l.jsonl -- \\
      .testbed/venv/bin/python sample-apps/python-v3-ledger/ledger_processor.py --ledger /tmp/l.jsonl
"""

import argparse
import base64
import hashlib
import json
import os
import queue
import subprocess
import sys
import threading
import time


class ProtocolError(Exception):
    pass


class Child:
    def __init__(self, cmd, transcript, stderr_path):
        self.transcript = open(transcript, "w", encoding="utf-8") if transcript else None
        self.stderr_file = open(stderr_path, "wb") if stderr_path else None
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.stderr_file or None, start_new_session=True)
        self.lines = queue.Queue()
        self.noise = 0
        reader = threading.Thread(target=self._read, daemon=True)
        reader.start()

    def _read(self):
        for raw in self.proc.stdout:
            self.lines.put(raw.decode("utf-8", "replace").rstrip("\r\n"))
        self.lines.put(None)

    def log(self, direction, line):
        if self.transcript:
            self.transcript.write("%.3f %s %s\n" % (time.time(), direction, line))
            self.transcript.flush()

    def send(self, message):
        line = json.dumps(message, separators=(",", ":"))
        self.log("D>C", line)
        try:
            self.proc.stdin.write(line.encode("utf-8") + b"\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise ProtocolError("child closed its stdin (exited?) before %s" % message["action"])

    def receive(self, timeout):
        """The next parsed protocol message (blank lines and noise are skipped, like Java does)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ProtocolError("no message from the child within %.0f s" % timeout)
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise ProtocolError("child closed stdout (exit code %s)" % self.proc.poll())
            self.log("C>D", line)
            if line.strip() == "":
                continue
            try:
                message = json.loads(line)
            except ValueError:
                self.noise += 1
                continue
            if not isinstance(message, dict) or not isinstance(message.get("action"), str):
                self.noise += 1
                continue
            return message

    def close(self, timeout):
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise ProtocolError("child did not exit within %.0f s after stdin was closed" % timeout)
        finally:
            if self.transcript:
                self.transcript.close()
            if self.stderr_file:
                self.stderr_file.close()


class FakeDaemon:
    def __init__(self, args, child):
        self.args = args
        self.child = child
        self.throttles_left = args.throttle
        self.delivered = []  # (seq, subseq, pk, data)
        self.batch_last = None  # (seq, subseq) of the last record of the current batch
        self.checkpoint = None  # last successful checkpoint (seq or sentinel, subseq)
        self.checkpoints = []  # every request and our answer
        self.statuses = []

    def _reply(self, request, during):
        seq = request.get("sequenceNumber")
        subseq = request.get("subSequenceNumber")
        if seq is not None and not isinstance(seq, str):
            seq = str(seq)
        error = None
        if during in ("initialize", "leaseLost"):
            error = "InvalidStateException"
        elif self.throttles_left > 0:
            self.throttles_left -= 1
            error = "ThrottlingException"
        elif seq is None:
            if during == "shardEnded":
                self.checkpoint = ("SHARD_END", 0)
            elif self.batch_last is not None:
                self.checkpoint = self.batch_last
        else:
            known = {(s, ss) for s, ss, _, _ in self.delivered}
            if (seq, subseq if subseq is not None else 0) not in known:
                error = "IllegalArgumentException"
            else:
                self.checkpoint = (seq, subseq if subseq is not None else 0)
        self.checkpoints.append({"during": during, "sequenceNumber": seq, "subSequenceNumber": subseq,
                                 "error": error, "keys": sorted(request)})
        self.child.send({"action": "checkpoint", "sequenceNumber": seq, "subSequenceNumber": subseq,
                         "error": error})

    def act(self, message):
        """Sends one action and serves checkpoints until the matching status arrives."""
        action = message["action"]
        self.child.send(message)
        while True:
            reply = self.child.receive(self.args.timeout)
            if reply["action"] == "checkpoint":
                self._reply(reply, action)
            elif reply["action"] == "status":
                self.statuses.append(reply.get("responseFor"))
                if reply.get("responseFor") != action:
                    raise ProtocolError("status responseFor=%r while waiting for %r" % (reply.get("responseFor"), action))
                extra = set(reply) - {"action", "responseFor"}
                if extra:
                    raise ProtocolError("status has unknown fields %s (Java would skip the line)" % sorted(extra))
                return
            # Other known actions from a child are ignored by the Java daemon.

    def run(self):
        a = self.args
        self.act({"action": "initialize", "shardId": a.shard, "sequenceNumber": "TRIM_HORIZON",
                  "subSequenceNumber": 0})
        base = 49650000000000000000000000000000000000000000000000000000
        per_batch = max(1, -(-a.records // a.batches)) if a.records else 0
        sent = 0
        now_ms = int(time.time() * 1000)
        for _ in range(a.batches):
            records = []
            while sent < a.records and len(records) < per_batch:
                seq = str(base + 1000 * sent)
                pk = "pk-%d" % sent
                # UTF-8 text plus raw binary bytes: processors must hash the decoded bytes.
                data = ("record %d \u00e9\u20ac " % sent).encode("utf-8") + bytes([0, 255, sent % 256])
                self.delivered.append((seq, 0, pk, data))
                records.append({"data": base64.b64encode(data).decode("ascii"), "partitionKey": pk,
                                "sequenceNumber": seq, "approximateArrivalTimestamp": now_ms + sent,
                                "subSequenceNumber": 0, "action": "record"})
                sent += 1
            if not records:
                break
            self.batch_last = (records[-1]["sequenceNumber"], 0)
            self.act({"action": "processRecords", "records": records, "millisBehindLatest": 0})
        if a.end == "shardEnded":
            self.act({"action": "shardEnded"})
        elif a.end == "leaseLost":
            self.act({"action": "leaseLost"})
        elif a.end == "shutdownRequested":
            self.act({"action": "shutdownRequested"})
            self.act({"action": "leaseLost"})


def check_ledger(path, delivered):
    problems = []
    try:
        with open(path, encoding="utf-8") as f:
            lines = [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return ["ledger %s was not written" % path], 0
    expected = {seq: (subseq, pk, hashlib.sha256(data).hexdigest()) for seq, subseq, pk, data in delivered}
    seen = set()
    for entry in lines:
        seq = entry.get("sequenceNumber")
        if seq not in expected:
            problems.append("unexpected ledger line %s" % entry)
            continue
        if seq in seen:
            problems.append("duplicate ledger line for %s" % seq)
        seen.add(seq)
        subseq, pk, digest = expected[seq]
        if (entry.get("subSequenceNumber"), entry.get("partitionKey"), entry.get("sha256")) != (subseq, pk, digest):
            problems.append("ledger line %s does not match the record sent" % entry)
    missing = set(expected) - seen
    if missing:
        problems.append("%d records missing from the ledger" % len(missing))
    return problems, len(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--records", type=int, default=5)
    p.add_argument("--batches", type=int, default=1)
    p.add_argument("--throttle", type=int, default=0, help="answer the first K checkpoints with ThrottlingException")
    p.add_argument("--end", choices=["shardEnded", "leaseLost", "shutdownRequested", "none"], default="shardEnded")
    p.add_argument("--shard", default="shardId-000000000000")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for each child message")
    p.add_argument("--transcript", help="write every protocol line (D>C / C>D) here")
    p.add_argument("--stderr", help="write the child's stderr here (default: inherit)")
    p.add_argument("--ledger", help="check this ledger file against the records sent")
    p.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD ARGS...")
    args = p.parse_args()
    cmd = args.cmd[1:] if args.cmd and args.cmd[0] == "--" else args.cmd
    if not cmd:
        p.error("no child command (put it after --)")
    if args.batches < 1 or args.records < 0:
        p.error("--batches must be >= 1 and --records >= 0")

    child = Child(cmd, args.transcript, args.stderr)
    daemon = FakeDaemon(args, child)
    summary = {"ok": True, "error": None}
    try:
        daemon.run()
    except ProtocolError as exc:
        summary.update(ok=False, error=str(exc))
    try:
        summary["exit_code"] = child.close(args.timeout)
    except ProtocolError as exc:
        summary.update(ok=False, error=summary["error"] or str(exc), exit_code=None)
    if summary["ok"] and summary["exit_code"] != 0:
        summary.update(ok=False, error="child exited with %s" % summary["exit_code"])
    summary.update(records=len(daemon.delivered), statuses=daemon.statuses, checkpoints=daemon.checkpoints,
                   final_checkpoint=list(daemon.checkpoint) if daemon.checkpoint else None,
                   noise_lines=child.noise)
    if args.ledger:
        problems, lines = check_ledger(args.ledger, daemon.delivered)
        summary["ledger_lines"] = lines
        if problems:
            summary.update(ok=False, error=summary["error"] or "; ".join(problems[:5]))
    sys.stdout.write(json.dumps(summary) + "\n")
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
