#!/usr/bin/env bash
# metrics_overhead.sh [RECORDS] [RUNS] — daemon CPU and RSS with metricsLevel NONE vs DETAILED
# (to moto) vs DETAILED with CloudWatch unreachable, and /metrics scraped every second.
#
# Uses private emulators (scripts/emulators.sh --dir), moto from $MULTILANGD_TESTBED/venv-moto,
# the release binary (target/release/multilangd; built if missing) and the python-v3-ledger
# processor. Per run: fresh application, RECORDS records (default 3000) on 2 shards at
# TRIM_HORIZON; the time from launch until the ledger has every record, the daemon's CPU time
# (utime+stime of the daemon process only, from /proc) and its peak RSS (VmHWM). Prints a
# Markdown table on stdout.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TB=${MULTILANGD_TESTBED:-"$REPO/.testbed"}
N=${1:-3000}; RUNS=${2:-3}
BIN=$REPO/target/release/multilangd
[[ -x $BIN ]] || (cd "$REPO" && cargo build --release --bin multilangd >&2)
work=$(mktemp -d); trap 'kill $(cat $work/moto.pid 2>/dev/null) 2>/dev/null; "$REPO/scripts/emulators.sh" stop --dir "$work/emu" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
"$REPO/scripts/emulators.sh" start --dir "$work/emu" >&2
. "$work/emu/endpoints.env"
mport=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
"$TB/venv-moto/bin/moto_server" -H 127.0.0.1 -p "$mport" >"$work/moto.log" 2>&1 & echo $! > "$work/moto.pid"
sleep 2
export AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x AWS_REGION=us-east-1
"$TB/venv/bin/python" "$REPO/sample-apps/producer/taxi_producer.py" --endpoint "$KINESIS_ENDPOINT" --stream bench-metrics \
  --create-stream 2 --count "$N" >/dev/null 2>&1
echo "| mode | run | time to all $N records (s) | daemon CPU (s) | peak RSS (MiB) |"
echo "|---|---|---|---|---|"
for mode in none detailed-moto detailed-unreachable detailed-moto+scrape; do
  for run in $(seq 1 "$RUNS"); do
    app="bm-${mode//+/-}-$run"; ledger="$work/$app.jsonl"; props="$work/$app.properties"
    cat > "$props" <<P
executableName = $TB/venv/bin/python $REPO/sample-apps/python-v3-ledger/ledger_processor.py --ledger $ledger
streamName = bench-metrics
applicationName = $app
AWSCredentialsProvider = DefaultAWSCredentialsProviderChain
initialPositionInStream = TRIM_HORIZON
regionName = us-east-1
kinesisEndpoint = $KINESIS_ENDPOINT
dynamoDBEndpoint = $DYNAMODB_ENDPOINT
retrievalMode = POLLING
clientVersionConfig = CLIENT_VERSION_CONFIG_COMPATIBLE_WITH_2X
idleTimeBetweenReadsInMillis = 200
multilangd.httpAddress = 0
P
    case $mode in
      none) echo "metricsLevel = NONE" >> "$props" ;;
      detailed-moto*) printf 'metricsLevel = DETAILED\ncloudWatchClient.endpointOverride = http://127.0.0.1:%s\n' "$mport" >> "$props" ;;
      detailed-unreachable) printf 'metricsLevel = DETAILED\ncloudWatchClient.endpointOverride = http://127.0.0.1:9\n' >> "$props" ;;
    esac
    hport=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
    sed -i "s/^multilangd.httpAddress = 0/multilangd.httpAddress = $hport/" "$props"
    start=$(date +%s.%N)
    "$BIN" "$props" 2>"$work/$app.log" & pid=$!
    while [[ $( (wc -l < "$ledger") 2>/dev/null || echo 0) -lt $N ]]; do
      [[ $mode == *scrape ]] && curl -s "http://127.0.0.1:$hport/metrics" >/dev/null
      sleep 1
      [[ $(echo "$(date +%s.%N) - $start > 120" | bc) == 1 ]] && { echo "timeout in $mode" >&2; break; }
    done
    took=$(echo "$(date +%s.%N) - $start" | bc)
    read -r ut st < <(awk '{print $14, $15}' "/proc/$pid/stat")
    hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
    kill -TERM $pid; wait $pid || true
    printf '| %s | %s | %.1f | %.2f | %.1f |\n' "$mode" "$run" "$took" "$(echo "($ut + $st) / 100" | bc -l)" "$(echo "$hwm / 1024" | bc -l)"
  done
done
