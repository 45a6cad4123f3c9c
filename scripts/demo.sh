#!/usr/bin/env bash
# demo.sh — end-to-end local demo: emulators + stream + daemon + sample processor + producer.
#
#   scripts/demo.sh [--daemon multilangd|java] [--processor python-v3|python-v2|node]
#                   [--shards N] [--count N] [--rate R] [--timeout S] [--dir DIR]
#
#   1. starts kinesis-local + dynalite (scripts/emulators.sh, free loopback ports)
#   2. creates a stream with --shards shards (default 2)
#   3. renders properties/demo.properties (endpoints, stream, application, processor command)
#   4. starts the daemon: multilangd ($MULTILANGD_BIN, default <repo>/target/debug/multilangd,
#      given the properties file as its last argument) or --daemon java (scripts/run-java-daemon.sh)
#   5. sends --count taxi trips (default 1000) with sample-apps/producer at --rate records/s (default 500)
#   6. waits until the processors' ledger holds every record sent (at most --timeout s, default 180)
#   7. stops the daemon (SIGTERM, then SIGKILL after 30 s) and the emulators, by PID
# Prints a JSON summary on stdout; exit 0 when every record was processed. Files stay in DIR
# (default $MULTILANGD_TESTBED/run/demo-<time>): demo.properties, daemon.log, sent.jsonl,
# ledger.jsonl, events.jsonl, emulators/.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export MULTILANGD_TESTBED=${MULTILANGD_TESTBED:-"$REPO/.testbed"}
TB=$MULTILANGD_TESTBED
PY="$TB/venv/bin/python"

die() { echo "demo: error: $*" >&2; exit 1; }
say() { echo "demo: $*" >&2; }

daemon=multilangd processor=python-v3 shards=2 count=1000 rate=500 timeout=180 dir=""
while [[ $# -gt 0 ]]; do
  [[ $# -ge 2 || "$1" == -h || "$1" == --help ]] || die "$1 needs a value"
  case "$1" in
    --daemon) daemon=$2; shift 2 ;;
    --processor) processor=$2; shift 2 ;;
    --shards) shards=$2; shift 2 ;;
    --count) count=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --timeout) timeout=$2; shift 2 ;;
    --dir) dir=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done

"$REPO/scripts/install-testbed.sh" --check >/dev/null 2>&1 \
  || die "the test bed at $TB is not installed or out of date; run scripts/install-testbed.sh"
dir=${dir:-"$TB/run/demo-$(date +%Y%m%d-%H%M%S)"}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
# executableName is split on spaces by the daemon: no spaces in the paths it contains.
[[ "$dir$REPO$TB" != *" "* ]] || die "paths with spaces cannot be used in executableName ($dir, $REPO, $TB)"

case "$processor" in
  python-v3) exe="$PY $REPO/sample-apps/python-v3-ledger/ledger_processor.py" ;;
  python-v2) exe="$PY $REPO/sample-apps/python-v2/ledger_processor_v2.py" ;;
  node) exe="$REPO/sample-apps/node/run.sh" ;;
  *) die "unknown processor $processor (python-v3|python-v2|node)" ;;
esac
exe="$exe --ledger $dir/ledger.jsonl --events $dir/events.jsonl"

case "$daemon" in
  java) daemon_cmd=("$REPO/scripts/run-java-daemon.sh" "$dir/demo.properties") ;;
  multilangd)
    bin=${MULTILANGD_BIN:-"$REPO/target/debug/multilangd"}
    [[ -x "$bin" ]] || die "$bin not found; run cargo build (or set MULTILANGD_BIN)"
    daemon_cmd=("$bin" "$dir/demo.properties") ;;
  *) die "unknown daemon $daemon (multilangd|java)" ;;
esac

daemon_pid=""
cleanup() {
  local rc=$? i
  if [[ -n "$daemon_pid" ]] && kill -0 "$daemon_pid" 2>/dev/null; then
    say "stopping the daemon (pid $daemon_pid)"
    kill -TERM "$daemon_pid" 2>/dev/null || true
    for ((i = 0; i < 300; i++)); do kill -0 "$daemon_pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$daemon_pid" 2>/dev/null; then
      say "daemon still running after 30 s: SIGKILL to its process group"
      kill -KILL -- "-$daemon_pid" 2>/dev/null || kill -KILL "$daemon_pid" 2>/dev/null || true
    fi
    wait "$daemon_pid" 2>/dev/null || true
  fi
  # Processors left behind by a daemon that died abruptly share its process group.
  if [[ -n "$daemon_pid" ]]; then kill -KILL -- "-$daemon_pid" 2>/dev/null || true; fi
  "$REPO/scripts/emulators.sh" stop --dir "$dir/emulators" || true
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$REPO/scripts/emulators.sh" start --dir "$dir/emulators" >/dev/null
set -a
# shellcheck disable=SC1091 # written by emulators.sh just above
. "$dir/emulators/endpoints.env"
set +a
export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-x} AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-x}
export AWS_REGION=${AWS_REGION:-us-east-1}

suffix="$(date +%H%M%S)-$$"
export EXECUTABLE="$exe" STREAM_NAME="demo-trips-$suffix" APPLICATION_NAME="demo-app-$suffix" \
  REGION="$AWS_REGION"
"$PY" - "$REPO/properties/demo.properties" "$dir/demo.properties" <<'EOF'
import os, re, sys
text = open(sys.argv[1], encoding="latin-1").read()
names = ["EXECUTABLE", "STREAM_NAME", "APPLICATION_NAME", "KINESIS_ENDPOINT", "DYNAMODB_ENDPOINT", "REGION"]
for name in names:
    text = text.replace("${%s}" % name, os.environ[name])
body = "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("#"))
left = re.findall(r"\$\{[A-Z_]+\}", body)
if left:
    sys.exit("demo.properties: unsubstituted placeholders %s" % sorted(set(left)))
open(sys.argv[2], "w", encoding="latin-1").write(text)
EOF

"$PY" "$REPO/sample-apps/producer/taxi_producer.py" --endpoint "$KINESIS_ENDPOINT" --stream "$STREAM_NAME" \
  --create-stream "$shards" --count 0 >/dev/null 2>&1 || die "could not create stream $STREAM_NAME"

say "daemon: $daemon, processor: $processor, stream $STREAM_NAME ($shards shards), $count records at $rate/s"
say "files in $dir"
start=$(date +%s.%N)
setsid "${daemon_cmd[@]}" >"$dir/daemon.log" 2>&1 &
daemon_pid=$!
say "daemon pid $daemon_pid (log $dir/daemon.log)"

"$PY" "$REPO/sample-apps/producer/taxi_producer.py" --endpoint "$KINESIS_ENDPOINT" --stream "$STREAM_NAME" \
  --count "$count" --rate "$rate" --ledger "$dir/sent.jsonl" --progress-interval 5 >"$dir/producer.json" \
  || die "producer failed: $(cat "$dir/producer.json")"

deadline=$((SECONDS + timeout))
while :; do
  if result=$("$PY" "$REPO/scripts/testbed/compare_ledgers.py" "$dir/sent.jsonl" "$dir/ledger.jsonl"); then
    break
  fi
  kill -0 "$daemon_pid" 2>/dev/null || { tail -n 30 "$dir/daemon.log" >&2; die "the daemon exited early: $result"; }
  [[ $SECONDS -lt $deadline ]] || { say "timed out after $timeout s: $result"; exit 1; }
  sleep 0.5
done
elapsed=$(python3 -c "import sys,time; print(round(time.time()-float(sys.argv[1]),1))" "$start")
first=$("$PY" -c '
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
t = [e["time"] for e in ev if e["event"] == "process_records" and e.get("records")]
print(round(min(t) - float(sys.argv[2]), 1) if t else "null")' "$dir/events.jsonl" "$start")
say "all $count records processed in ${elapsed} s (first record after ${first} s)"
echo "{\"daemon\":\"$daemon\",\"processor\":\"$processor\",\"elapsed_s\":$elapsed,\"first_record_s\":$first,\"ledger\":$result,\"producer\":$(tail -n1 "$dir/producer.json")}"
