#!/usr/bin/env bash
# emulators.sh — run the local Kinesis/DynamoDB emulators by hand (demos, benchmarks, debugging).
#
#   scripts/emulators.sh start  [--dir DIR] [--kinesalite] [NAME...]
#   scripts/emulators.sh stop   [--dir DIR] [NAME...]
#   scripts/emulators.sh status [--dir DIR] [NAME...]
#
# NAME is kinesis-local, dynalite or kinesalite. `start` without names starts kinesis-local and
# dynalite (add --kinesalite, or name it, for kinesalite too). Each emulator gets a free port on
# 127.0.0.1 (override with KINESIS_LOCAL_PORT / DYNALITE_PORT / KINESALITE_PORT), its own process
# group, and these files in DIR (default $MULTILANGD_TESTBED/run/emulators, i.e.
# <repo>/.testbed/run/emulators):
#   NAME.pid  NAME.port  NAME.log
#   endpoints.env   KINESIS_ENDPOINT=http://127.0.0.1:P  DYNAMODB_ENDPOINT=...  KINESALITE_ENDPOINT=...
#                   (source it:  . DIR/endpoints.env)
# `start` returns once every emulator answers HTTP (at most 30 s each); `stop` stops them by PID
# (SIGTERM to the process group, SIGKILL after 5 s). Starting what already runs is a no-op.
# Rust tests do not use this script: they start private instances via tests/support/emulators.rs.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TB=${MULTILANGD_TESTBED:-"$REPO/.testbed"}
# Absolute: the emulators are started from their own working directories.
TB=$(cd "$TB" 2>/dev/null && pwd -P || echo "$TB")
NM="$TB/emu/node_modules"
ALL=(kinesis-local dynalite kinesalite)

die() { echo "emulators: error: $*" >&2; exit 1; }
say() { echo "emulators: $*" >&2; }

[[ $# -ge 1 ]] || die "usage: $0 start|stop|status [--dir DIR] [--kinesalite] [NAME...]"
cmd=$1; shift
dir="$TB/run/emulators"
names=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dir) [[ $# -ge 2 ]] || die "--dir needs a directory"; dir=$2; shift 2 ;;
    --kinesalite) names+=(kinesalite); shift ;;
    kinesis-local|dynalite|kinesalite) names+=("$1"); shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1" ;;
  esac
done

# Which emulators a command applies to.
explicit=${#names[@]}
if [[ ${#names[@]} -eq 0 ]]; then
  if [[ $cmd == start ]]; then names=(kinesis-local dynalite); else names=("${ALL[@]}"); fi
elif [[ $cmd == start && ${#names[@]} -eq 1 && ${names[0]} == kinesalite ]]; then
  names=(kinesis-local dynalite kinesalite)   # `start --kinesalite` = the default set + kinesalite
fi

# The string that must appear in /proc/PID/cmdline for the PID file to still be ours.
marker() {
  case "$1" in
    kinesis-local) echo "kinesis-local/main.js" ;;
    dynalite) echo "dynalite/cli.js" ;;
    kinesalite) echo "require('kinesalite')" ;;
  esac
}

# pid of NAME if its PID file names a live process that is still that emulator.
live_pid() {
  local name=$1 pid
  [[ -f "$dir/$name.pid" ]] || return 1
  pid=$(cat "$dir/$name.pid")
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [[ -r /proc/$pid/cmdline ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$(marker "$name")" || return 1
  echo "$pid"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# True once something on 127.0.0.1:PORT answers an HTTP request with a status line.
answers_http() {
  local port=$1 line=""
  # shellcheck disable=SC2094
  { exec 3<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null || return 1
  printf 'POST / HTTP/1.1\r\nHost: 127.0.0.1:%s\r\nContent-Type: application/x-amz-json-1.1\r\nX-Amz-Target: Kinesis_20131202.ListStreams\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}' "$port" >&3 2>/dev/null || { exec 3>&-; return 1; }
  IFS= read -r -t 3 line <&3 || true
  exec 3>&-
  [[ "$line" == HTTP/* ]]
}

write_endpoints() {
  local tmp="$dir/endpoints.env.tmp" name port var
  : >"$tmp"
  for name in "${ALL[@]}"; do
    live_pid "$name" >/dev/null || continue
    port=$(cat "$dir/$name.port")
    case "$name" in
      kinesis-local) var=KINESIS_ENDPOINT ;;
      dynalite) var=DYNAMODB_ENDPOINT ;;
      kinesalite) var=KINESALITE_ENDPOINT ;;
    esac
    echo "$var=http://127.0.0.1:$port" >>"$tmp"
  done
  mv "$tmp" "$dir/endpoints.env"
}

start_one() {
  local name=$1 pid port var log
  if pid=$(live_pid "$name"); then
    say "$name already running (pid $pid, http://127.0.0.1:$(cat "$dir/$name.port"))"
    return 0
  fi
  rm -f "$dir/$name.pid" "$dir/$name.port"
  case "$name" in
    kinesis-local) var=${KINESIS_LOCAL_PORT:-} ;;
    dynalite) var=${DYNALITE_PORT:-} ;;
    kinesalite) var=${KINESALITE_PORT:-} ;;
  esac
  port=${var:-$(free_port)}
  log="$dir/$name.log"
  case "$name" in
    kinesis-local)
      # kinesis-local reads server.json from its working directory. Its CLI listens on all
      # interfaces; only 127.0.0.1 is ever used. 100 ms control-plane delays keep demos quick.
      local tls_port; tls_port=$(free_port)
      ( cd "$NM/kinesis-local" && exec env KINESIS_MOCK_PLAIN_PORT="$port" KINESIS_MOCK_TLS_PORT="$tls_port" \
          SHARD_LIMIT=200 LOG_LEVEL=WARN CREATE_STREAM_DURATION=100ms DELETE_STREAM_DURATION=100ms \
          REGISTER_STREAM_CONSUMER_DURATION=100ms DEREGISTER_STREAM_CONSUMER_DURATION=100ms \
          MERGE_SHARDS_DURATION=100ms SPLIT_SHARD_DURATION=100ms UPDATE_SHARD_COUNT_DURATION=100ms \
          setsid node "$NM/kinesis-local/main.js" ) </dev/null >"$log" 2>&1 &
      ;;
    dynalite)
      # Table state changes are instant: KCL polls DescribeTable every 10 s while CREATING.
      setsid node "$NM/dynalite/cli.js" --host 127.0.0.1 --port "$port" \
        --createTableMs 0 --deleteTableMs 0 --updateTableMs 0 </dev/null >"$log" 2>&1 &
      ;;
    kinesalite)
      # Its CLI binds every interface; bind 127.0.0.1 through the API instead.
      ( cd "$TB/emu" && exec setsid node -e "require('kinesalite')({createStreamMs:50,deleteStreamMs:50,updateStreamMs:50,shardLimit:200}).listen($port,'127.0.0.1')" ) \
        </dev/null >"$log" 2>&1 &
      ;;
  esac
  pid=$!
  echo "$pid" >"$dir/$name.pid"
  echo "$port" >"$dir/$name.port"
  local deadline=$((SECONDS + 30))
  until answers_http "$port"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 20 "$log" >&2 || true
      rm -f "$dir/$name.pid" "$dir/$name.port"
      die "$name exited during start-up (log: $log)"
    fi
    if [[ $SECONDS -ge $deadline ]]; then
      tail -n 20 "$log" >&2 || true
      stop_one "$name"
      die "$name did not answer on port $port within 30 s (log: $log)"
    fi
    sleep 0.1
  done
  say "$name running: pid $pid, http://127.0.0.1:$port (log $log)"
}

stop_one() {
  local name=$1 pid i
  if ! pid=$(live_pid "$name"); then
    [[ -f "$dir/$name.pid" ]] && say "$name: not running (removing stale pid file)"
    rm -f "$dir/$name.pid" "$dir/$name.port"
    return 0
  fi
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 20; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  kill -0 "$pid" 2>/dev/null && die "$name (pid $pid) does not stop"
  rm -f "$dir/$name.pid" "$dir/$name.port"
  say "$name stopped (pid $pid)"
}

status_one() {
  local name=$1 pid port
  if pid=$(live_pid "$name"); then
    port=$(cat "$dir/$name.port")
    if answers_http "$port"; then
      echo "$name running pid=$pid endpoint=http://127.0.0.1:$port"
    else
      echo "$name running pid=$pid endpoint=http://127.0.0.1:$port (NOT answering)"
      return 1
    fi
  else
    echo "$name stopped"
    return 1
  fi
}

case "$cmd" in
  start)
    [[ -d "$NM/kinesis-local" && -d "$NM/dynalite" && -d "$NM/kinesalite" ]] \
      || die "emulators not installed in $NM; run scripts/install-testbed.sh"
    command -v node >/dev/null 2>&1 || die "node not found"
    command -v setsid >/dev/null 2>&1 || die "setsid (util-linux) not found"
    mkdir -p "$dir"
    for n in "${names[@]}"; do start_one "$n"; done
    write_endpoints
    say "endpoints: $dir/endpoints.env"
    cat "$dir/endpoints.env"
    ;;
  stop)
    [[ -d "$dir" ]] || exit 0
    for n in "${names[@]}"; do stop_one "$n"; done
    write_endpoints
    ;;
  status)
    # Without names: report the emulators that have a PID file in DIR.
    if [[ $explicit -eq 0 ]]; then
      names=()
      for n in "${ALL[@]}"; do [[ -f "$dir/$n.pid" ]] && names+=("$n"); done
      if [[ ${#names[@]} -eq 0 ]]; then echo "no emulators started in $dir"; exit 3; fi
    fi
    rc=0
    for n in "${names[@]}"; do status_one "$n" || rc=3; done
    exit $rc
    ;;
  *) die "unknown command $cmd (start|stop|status)" ;;
esac
