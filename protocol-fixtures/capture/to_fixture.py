#!/usr/bin/env python3
"""Convert tap.py logs into protocol fixtures (format: protocol-fixtures/README.md).

Usage: to_fixture.py RUN RAWDIR OUTDIR   (capture.py calls convert_run itself)

One fixture per tapped child, named java-<RUN>-<shardId>.txt. D lines become `D>` lines
(byte-exact); the child's output between two daemon events is joined and split on "\\n";
lines that are plain printable text become `C>`, anything else (CR, BOM, control or
leading/trailing whitespace, no final newline) becomes `C=` with a JSON string, and long
runs of one character become `C*`. The `@checkpointer` header lists, in call order, the
result the Java checkpointer produced for each reply the daemon sent while an action with
a checkpointer (processRecords, shutdownRequested, shardEnded) was in progress.
"""
import base64
import glob
import json
import os
import sys

NO_CHECKPOINTER = {"initialize", "leaseLost"}
EXPECT = {"mismatch": "mismatch processrecords"}


def load(path):
    events = []
    with open(path) as f:
        for raw in f:
            raw = raw.strip()
            if raw:
                events.append(json.loads(raw))
    return events


def is_plain(text):
    if text == "":
        return True
    if text != text.strip() or text.startswith("\ufeff"):
        return False
    return all(ch >= " " and ch != "\x7f" and ch not in "\u2028\u2029" for ch in text)


def child_lines(data):
    out = []
    while data:
        cut = data.find(b"\n")
        seg, data = (data, b"") if cut < 0 else (data[:cut + 1], data[cut + 1:])
        body = seg[:-1] if seg.endswith(b"\n") else None
        try:
            text = body.decode("utf-8") if body is not None else None
        except UnicodeDecodeError:
            text = None
        if text is not None and len(text) >= 1000 and len(set(text)) == 1:
            out.append("C* %d %s" % (len(text), text[0]))
        elif text is not None and is_plain(text):
            out.append(("C> " + text) if text else "C>")
        else:
            out.append("C= " + json.dumps(seg.decode("utf-8", "surrogateescape"), ensure_ascii=True))
    return out


def convert(events, run):
    body, results = [], []
    shard, action, cbuf, exit_code = None, None, b"", None

    def flush():
        nonlocal cbuf
        body.extend(child_lines(cbuf))
        cbuf = b""

    for ev in events:
        if ev.get("dir") == "C" and "b64" in ev:
            cbuf += base64.b64decode(ev["b64"])
        elif ev.get("dir") == "D" and "b64" in ev:
            flush()
            line = base64.b64decode(ev["b64"])
            assert line.endswith(b"\n") and b"\n" not in line[:-1], line
            text = line[:-1].decode("utf-8")
            msg = json.loads(text)
            if msg["action"] == "checkpoint":
                if action not in NO_CHECKPOINTER:
                    results.append(msg["error"] or "ok")
            else:
                action = msg["action"]
                if action == "initialize":
                    shard = msg["shardId"]
            body.append("D> " + text)
        elif ev.get("dir") == "D" and ev.get("eof"):
            flush()
            body.append("@eof")
        elif "exit" in ev:
            exit_code = ev["exit"]
    flush()
    head = [
        "# Recorded from the Java MultiLangDaemon 2.5.8 (amazon-kinesis-client-multilang-2.5.8.jar)",
        "# by protocol-fixtures/capture/capture.py %s (tap.py); child exit code: %s." % (run, exit_code),
        "# Do not edit: re-run the capture instead.",
        "@shard " + str(shard),
    ]
    if results:
        head.append("@checkpointer " + " ".join(results))
    if run in EXPECT:
        head.append("@expect " + EXPECT[run])
    return shard, "\n".join(head + body) + "\n"


def convert_run(run, rawdir, outdir):
    for old in glob.glob(os.path.join(outdir, "java-%s-*.txt" % run)):
        os.remove(old)
    for path in sorted(glob.glob(os.path.join(rawdir, "tap-*.jsonl"))):
        shard, text = convert(load(path), run)
        if shard is None:
            continue
        out = os.path.join(outdir, "java-%s-%s.txt" % (run, shard))
        with open(out, "w") as f:
            f.write(text)
        print("wrote", out)


if __name__ == "__main__":
    convert_run(sys.argv[1], sys.argv[2], sys.argv[3])
