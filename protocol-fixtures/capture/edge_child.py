#!/usr/bin/env python3
"""A raw multi-language child that answers each daemon action with protocol edge cases.

Usage: edge_child.py SCENARIO      (SCENARIO: edge | mismatch)

It is not a client library: it writes exactly the bytes listed below, so the daemon's
reaction to each edge case can be recorded (through tap.py) from the Java daemon and
replayed against multilangd. Every line it expects back is read before it continues,
like a real client; the daemon's replies are echoed to stderr for the capture log.

edge: non-fatal framing/parsing cases (noise, blank, whitespace-only, BOM, comments,
      trailing comma, missing/unknown/wrong-case action, top-level "record", echoed
      daemon actions, CRLF, lone CR, >64 KiB noise, action not first, duplicate keys,
      two objects on one line, trailing garbage) and checkpoint cases (numeric 56-digit
      sequence number, float/numeric-string/"" sub-sequence numbers, boolean and
      malformed sequence numbers, too-low sequence, repeated checkpoint, requests during
      initialize and leaseLost, an unsolicited request between actions).
mismatch: acknowledges initialize, then answers processRecords with a wrong-case
      responseFor (fatal in Java).
"""
import json
import sys

stdin = sys.stdin.buffer
stdout = sys.stdout.buffer


def log(msg):
    sys.stderr.write("edge_child: %s\n" % msg)
    sys.stderr.flush()


def put(data):
    if isinstance(data, str):
        data = data.encode("utf-8")
    stdout.write(data)
    stdout.flush()


def read_line():
    line = stdin.readline()
    if not line:
        return None
    return line


def read_reply():
    line = read_line()
    log("reply: %r" % (line,))
    return line


def status(action, end="\n"):
    put('{"action":"status","responseFor":"%s"}%s' % (action, end))


def main():
    scenario = sys.argv[1]
    batches = 0
    unsolicited = 0
    while True:
        line = read_line()
        if line is None:
            break
        msg = json.loads(line)
        action = msg["action"]
        if action == "checkpoint":
            log("unexpected reply %r" % (line,))
            continue
        # Replies to an unsolicited request come after the action that served it.
        for _ in range(unsolicited):
            read_reply()
        unsolicited = 0
        if scenario == "mismatch":
            if action == "initialize":
                status("initialize")
            else:
                status(action.lower())
            continue
        if action == "initialize":
            put("this is a debug line printed to stdout\n")
            put("\n")
            put("   \t \n")
            put('\ufeff{"action":"status","responseFor":"initialize"}\n')
            put('{"action":"status", /* comment */ "responseFor":"initialize"}\n')
            put('{"action":"status","responseFor":"initialize",}\n')
            put('{"responseFor":"initialize"}\n')
            put('{"action":"Status","responseFor":"initialize"}\n')
            put('{"action":"bogus","responseFor":"initialize"}\n')
            put('{"action":"record","data":"","partitionKey":"x","sequenceNumber":"1",'
                '"approximateArrivalTimestamp":0,"subSequenceNumber":0}\n')
            put('{"action":"initialize","shardId":"%s","sequenceNumber":null,"subSequenceNumber":null}\n'
                % msg["shardId"])
            put('{"action":"shutdown","reason":"TERMINATE"}\n')
            put('{"action":"checkpoint","sequenceNumber":null,"subSequenceNumber":null}\n')
            read_reply()
            put("x" * 100000 + "\n")
            put('{"responseFor":"initialize","action":"status"}\r\n')
        elif action == "processRecords":
            batches += 1
            records = msg["records"]
            if batches == 1 and len(records) >= 2:
                first = records[0]["sequenceNumber"]
                last = records[-1]["sequenceNumber"]
                put('\n{"action":"checkpoint","sequenceNumber":%s,"subSequenceNumber":0.7}\n' % last)
                read_reply()
                put('{"action":"checkpoint","sequenceNumber":"%s","subSequenceNumber":"0"}\n' % first)
                read_reply()
                put('{"action":"checkpoint","sequenceNumber":"%s","subSequenceNumber":""}\n' % last)
                read_reply()
                put('{"action":"checkpoint","sequenceNumber":true}\n')
                read_reply()
                put('{"action":"checkpoint","sequenceNumber":"1.5e3"}\n')
                read_reply()
                put('{"action":"checkpoint","sequenceNumber":1.5e3,"subSequenceNumber":null}\n')
                read_reply()
                put('{"action":"checkpoint","sequenceNumber":"%s","sequenceNumber":null,"error":"x"}\n' % first)
                read_reply()
                put('noise\r{"action":"checkpoint","subSequenceNumber":0,"sequenceNumber":"%s"}\r' % last)
                read_reply()
                put('{"action":"checkpoint","sequenceNumber":"%s"}{"action":"status","responseFor":"processRecords"}\n'
                    % last)
                read_reply()
                put('{"action":"status","responseFor":"processRecords"} trailing garbage\n')
                put("noise between actions\n")
                put('{"action":"checkpoint","sequenceNumber":null}\n')
                unsolicited = 1
            else:
                put('{"action":"checkpoint","sequenceNumber":null}\n')
                read_reply()
                status("processRecords")
        elif action == "shutdownRequested":
            put('\n{"action": "checkpoint", "sequenceNumber": null, "subSequenceNumber": null}\n')
            read_reply()
            put("\n")
            status("shutdownRequested")
        elif action == "shardEnded":
            put('{"action":"checkpoint","sequenceNumber":null}\n')
            read_reply()
            status("shardEnded")
        elif action == "leaseLost":
            put('{"action":"checkpoint","sequenceNumber":null}\n')
            read_reply()
            status("leaseLost")
        else:
            log("unknown action %r" % action)
    # stdin closed: leftovers the daemon drains (and does not answer).
    put('{"action":"checkpoint","sequenceNumber":null}\n')
    put("leftover noise after EOF\n")
    log("stdin closed, exiting")


if __name__ == "__main__":
    main()
