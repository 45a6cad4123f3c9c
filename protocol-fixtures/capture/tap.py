#!/usr/bin/env python3
"""stdin/stdout tap for a multi-language protocol child.

Usage: tap.py LOGDIR CHILD_COMMAND [ARGS...]

Runs CHILD_COMMAND with piped stdin/stdout (stderr inherited), forwards the daemon's
bytes to the child and the child's bytes to the daemon unchanged, and records both
directions in LOGDIR/tap-<pid>.jsonl, one JSON object per event, in causal order:

  {"dir": "D", "b64": "<raw bytes of one daemon line incl. its terminator>"}
  {"dir": "C", "b64": "<raw bytes of one read() chunk of the child's stdout>"}
  {"dir": "D", "eof": true}           daemon closed the child's stdin
  {"dir": "C", "eof": true}           child closed its stdout
  {"exit": <code>}                    child exit status

Daemon lines are split on b"\\n" only. Child output is recorded as raw chunks, forwarded
as soon as they are read (so a message ended by a lone CR is not held back); the
converter joins them. Nothing is interpreted.
"""
import base64
import json
import os
import subprocess
import sys
import threading
import time

def main():
    logdir = sys.argv[1]
    cmd = sys.argv[2:]
    os.makedirs(logdir, exist_ok=True)
    log = open(os.path.join(logdir, "tap-%d.jsonl" % os.getpid()), "w", buffering=1)
    lock = threading.Lock()

    def record(event):
        event["t"] = time.time()
        with lock:
            log.write(json.dumps(event) + "\n")

    child = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)

    def daemon_to_child():
        src = sys.stdin.buffer
        while True:
            line = src.readline()
            if not line:
                record({"dir": "D", "eof": True})
                try:
                    child.stdin.close()
                except OSError:
                    pass
                return
            # Log before forwarding: every child reaction is logged after its cause.
            record({"dir": "D", "b64": base64.b64encode(line).decode()})
            try:
                child.stdin.write(line)
                child.stdin.flush()
            except OSError as e:
                record({"dir": "D", "write_error": str(e)})

    def child_to_daemon():
        out = sys.stdout.buffer
        while True:
            chunk = os.read(child.stdout.fileno(), 65536)
            if not chunk:
                record({"dir": "C", "eof": True})
                out.close()
                return
            # Log before forwarding: the daemon's answer is logged after this chunk.
            record({"dir": "C", "b64": base64.b64encode(chunk).decode()})
            out.write(chunk)
            out.flush()

    t_in = threading.Thread(target=daemon_to_child, daemon=True)
    t_out = threading.Thread(target=child_to_daemon)
    t_in.start()
    t_out.start()
    code = child.wait()
    t_out.join()
    record({"exit": code})
    # The daemon may still hold our stdin open; the input thread is a daemon thread.
    os._exit(0)

if __name__ == "__main__":
    main()
