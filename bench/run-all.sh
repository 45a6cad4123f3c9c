#!/usr/bin/env bash
# Runs every benchmark scenario for both daemons (Java MultiLangDaemon 2.5.8 and multilangd),
# back to back on the same emulators, and regenerates BENCHMARKS.md.
#
#   bench/run-all.sh [--build] [--sizes tiny|medium|full] [--daemon java|multilangd|both] [run.py options]
#
# Defaults: --sizes full --daemon both. --build first runs `cargo build --release` (otherwise a
# missing target/release/multilangd is reported as "not available"). Needs the test bed:
# $MULTILANGD_TESTBED (default <repo>/.testbed) with emu/node_modules and venv-java/ (or venv/).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
export MULTILANGD_TESTBED="${MULTILANGD_TESTBED:-$repo/.testbed}"

label="bench/run-all.sh $*"
args=()
for a in "$@"; do
  if [[ "$a" == "--build" ]]; then
    cargo build --release --bin multilangd
  else
    args+=("$a")
  fi
done

py=""
for v in venv-java venv; do
  if [[ -x "$MULTILANGD_TESTBED/$v/bin/python" ]]; then py="$MULTILANGD_TESTBED/$v/bin/python"; break; fi
done
if [[ -z "$py" ]]; then
  echo "run-all.sh: no test bed venv under $MULTILANGD_TESTBED (venv-java/ or venv/)" >&2
  exit 2
fi

echo "[run-all] $(date -Is) nproc=$(nproc) load=$(cut -d' ' -f1-3 /proc/loadavg) testbed=$MULTILANGD_TESTBED"
exec "$py" bench/run.py all --daemon both --sizes full --command-label "${label% }" "${args[@]}"
