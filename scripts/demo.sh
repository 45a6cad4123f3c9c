#!/usr/bin/env bash
# demo.sh — the local end-to-end demo: emulators, a stream, a taxi-trip producer, the daemon and a
# record processor, with live progress.
#
#   scripts/demo.sh [--daemon multilangd|java] [--processor sample|python-v3|python-v2|node]
#                   [--shards N] [--rate R] [--duration S | --count N] [--timeout S] [--dir DIR]
#
#   1. installs the test bed if needed (scripts/install-testbed.sh) and, for multilangd, builds it
#      (cargo build; or set MULTILANGD_BIN to a binary)
#   2. starts kinesis-local + dynalite on free loopback ports (scripts/emulators.sh)
#   3. creates a stream with --shards shards (default 4)
#   4. renders properties/demo.properties and starts the daemon with it: multilangd (properties
#      file as its last argument) or --daemon java (scripts/run-java-daemon.sh, KCL 2.5.8)
#   5. runs the producer (sample-apps/producer) at --rate records/s (default 100)
#   6. prints progress every 2 s: records sent, records covered by checkpoints in the lease
#      table, records seen by ledger processors, leases held
#   7. on Ctrl-C (or after --duration seconds) stops producer, daemon (SIGTERM; SIGKILL after
#      30 s) and emulators, all by PID
#
# Processors: `sample` (default) is the UNCHANGED sample_kclpy_app.py of amazon_kclpy 3.2.0 (it
# checkpoints every 30 s, so "checkpointed" trails); python-v3 / python-v2 / node are the ledger
# processors of sample-apps/ (they also fill the "processed" column).
# --count N: send exactly N records, wait until the processors' ledger holds all of them (at most
# --timeout s, default 180), print a JSON summary and exit 0/1. Needs a ledger processor.
# Files stay in DIR (default $MULTILANGD_TESTBED/run/demo-<time>): demo.properties, daemon.log,
# producer.log, sent.jsonl, ledger.jsonl, events.jsonl, emulators/.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export MULTILANGD_TESTBED=${MULTILANGD_TESTBED:-"$REPO/.testbed"}
TB=$MULTILANGD_TESTBED
PY="$TB/venv/bin/python"

die() { echo "demo: error: $*" >&2; exit 1; }
say() { echo "demo: $*" >&2; }

daemon=multilangd processor=sample shards=4 rate=100 count="" duration="" timeout=180 dir=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
  esac
  [[ $# -ge 2 ]] || die "$1 needs a value"
  case "$1" in
    --daemon) daemon=$2 ;;
    --processor) processor=$2 ;;
    --shards) shards=$2 ;;
    --rate) rate=$2 ;;
    --count) count=$2 ;;
    --duration) duration=$2 ;;
    --timeout) timeout=$2 ;;
    --dir) dir=$2 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
  shift 2
done
[[ -z "$count" || "$processor" != sample ]] \
  || die "--count needs a ledger processor (--processor python-v3|python-v2|node): the sample app keeps no ledger"
[[ -z "$count" || -z "$duration" ]] || die "--count and --duration exclude each other"

"$REPO/scripts/install-testbed.sh" >&2
dir=${dir:-"$TB/run/demo-$(date +%Y%m%d-%H%M%S)"}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
# executableName is split on spaces by the daemon: no spaces in the paths it contains.
[[ "$dir$REPO$TB" != *" "* ]] || die "paths with spaces cannot be used in executableName ($dir, $REPO, $TB)"

ledger_args="--ledger $dir/ledger.jsonl --events $dir/events.jsonl"
case "$processor" in
  sample) exe="$PY $TB/venv/bin/sample_kclpy_app.py"
          [[ -f "$TB/venv/bin/sample_kclpy_app.py" ]] || die "sample_kclpy_app.py missing from $TB/venv/bin" ;;
  python-v3) exe="$PY $REPO/sample-apps/python-v3-ledger/ledger_processor.py $ledger_args" ;;
  python-v2) exe="$PY $REPO/sample-apps/python-v2/ledger_processor_v2.py $ledger_args" ;;
  node) exe="$REPO/sample-apps/node/run.sh $ledger_args" ;;
  *) die "unknown processor $processor (sample|python-v3|python-v2|node)" ;;
esac

case "$daemon" in
  java) daemon_cmd=("$REPO/scripts/run-java-daemon.sh" "$dir/demo.properties") ;;
  multilangd)
    if [[ -n "${MULTILANGD_BIN:-}" ]]; then
      bin=$MULTILANGD_BIN
    else
      say "building multilangd (cargo build --bin multilangd)"
      (cd "$REPO" && cargo build --quiet --bin multilangd) || die "cargo build failed"
      bin="$REPO/target/debug/multilangd"
    fi
    [[ -x "$bin" ]] || die "$bin is not an executable"
    daemon_cmd=("$bin" "$dir/demo.properties") ;;
  *) die "unknown daemon $daemon (multilangd|java)" ;;
esac

daemon_pid="" producer_pid=""
stop_pid() { # pid seconds
  local i
  kill -0 "$1" 2>/dev/null || return 0
  kill -TERM "$1" 2>/dev/null || true
  for ((i = 0; i < $2 * 10; i++)); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$1" 2>/dev/null; then
    say "pid $1 still running after $2 s: SIGKILL"
    kill -KILL -- "-$1" 2>/dev/null || kill -KILL "$1" 2>/dev/null || true
  fi
  wait "$1" 2>/dev/null || true
}
cleanup() {
  local rc=$?
  trap - INT TERM
  if [[ -n "$producer_pid" ]]; then stop_pid "$producer_pid" 10; fi
  if [[ -n "$daemon_pid" ]]; then
    say "stopping the daemon (pid $daemon_pid)"
    stop_pid "$daemon_pid" 30
    # Processors left behind by a daemon that died abruptly share its process group.
    kill -KILL -- "-$daemon_pid" 2>/dev/null || true
  fi
  "$REPO/scripts/emulators.sh" stop --dir "$dir/emulators" || true
  say "files: $dir"
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
for name in ["EXECUTABLE", "STREAM_NAME", "APPLICATION_NAME", "KINESIS_ENDPOINT", "DYNAMODB_ENDPOINT", "REGION"]:
    text = text.replace("${%s}" % name, os.environ[name])
body = "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("#"))
left = re.findall(r"\$\{[A-Z_]+\}", body)
if left:
    sys.exit("demo.properties: unsubstituted placeholders %s" % sorted(set(left)))
open(sys.argv[2], "w", encoding="latin-1").write(text)
EOF

producer=("$PY" "$REPO/sample-apps/producer/taxi_producer.py" --endpoint "$KINESIS_ENDPOINT" --stream "$STREAM_NAME")
"${producer[@]}" --create-stream "$shards" --count 0 >/dev/null 2>"$dir/producer.log" \
  || die "could not create stream $STREAM_NAME (see $dir/producer.log)"

say "daemon $daemon, processor $processor, stream $STREAM_NAME ($shards shards), ${count:-continuous} records at $rate/s"
start=$(date +%s.%N)
setsid "${daemon_cmd[@]}" >"$dir/daemon.log" 2>&1 &
daemon_pid=$!
say "daemon pid $daemon_pid, log $dir/daemon.log"
progress=("$PY" "$REPO/scripts/testbed/demo_progress.py" --sent "$dir/sent.jsonl" --table "$APPLICATION_NAME"
          --dynamodb-endpoint "$DYNAMODB_ENDPOINT")
[[ "$processor" == sample ]] || progress+=(--ledger "$dir/ledger.jsonl")
[[ "$daemon" == multilangd ]] && progress+=(--daemon-log "$dir/daemon.log")

if [[ -z "$count" ]]; then
  # Continuous: producer in the background, progress in the foreground until Ctrl-C / --duration.
  "${producer[@]}" --forever --rate "$rate" --ledger "$dir/sent.jsonl" --progress-interval 3600 \
    >"$dir/producer.json" 2>>"$dir/producer.log" &
  producer_pid=$!
  if [[ -n "$duration" ]]; then
    say "running for $duration s"
    timeout --foreground "$duration" "${progress[@]}" || true
  else
    say "running; Ctrl-C to stop"
    "${progress[@]}" || true
  fi
  kill -0 "$daemon_pid" 2>/dev/null || { tail -n 30 "$dir/daemon.log" >&2; die "the daemon exited early"; }
  exit 0
fi

"${producer[@]}" --count "$count" --rate "$rate" --ledger "$dir/sent.jsonl" --progress-interval 5 \
  >"$dir/producer.json" 2>>"$dir/producer.log" || die "producer failed: $(cat "$dir/producer.json")"
if ! "${progress[@]}" --until-complete --timeout "$timeout" >&2; then
  kill -0 "$daemon_pid" 2>/dev/null || tail -n 30 "$dir/daemon.log" >&2
  die "not every record was processed within $timeout s"
fi
result=$("$PY" "$REPO/scripts/testbed/compare_ledgers.py" "$dir/sent.jsonl" "$dir/ledger.jsonl") \
  || die "ledger mismatch: $result"
elapsed=$("$PY" -c "import sys,time; print(round(time.time()-float(sys.argv[1]),1))" "$start")
first=$("$PY" -c '
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
t = [e["time"] for e in ev if e["event"] == "process_records" and e.get("records")]
print(round(min(t) - float(sys.argv[2]), 1) if t else "null")' "$dir/events.jsonl" "$start")
say "all $count records processed ${elapsed} s after the daemon started (first record after ${first} s)"
echo "{\"daemon\":\"$daemon\",\"processor\":\"$processor\",\"elapsed_s\":$elapsed,\"first_record_s\":$first,\"ledger\":$result,\"producer\":$(tail -n1 "$dir/producer.json")}"
