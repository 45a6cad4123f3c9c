#!/usr/bin/env bash
# fuzz.sh — run the cargo-fuzz (libFuzzer) targets in fuzz/ for a while each.
#
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#   SECONDS_PER_TARGET  default 600 (the "long" run: 5 targets = 50 min); the test command
#                       (scripts/test-all.sh) runs a 20 s smoke version of every target.
#   TARGET              default: all of properties protocol_line line_reader kpl lease_item
#
# Targets (fuzz/fuzz_targets/*.rs; each checks properties, not only "no panic"):
#   properties      .properties parser: lines named exist; escape/re-parse round trip
#   protocol_line   child output line classification; sequenceNumber/responseFor round trips
#   line_reader     child stdout line splitting vs a reference splitter, over-long lines,
#                   memory bound, random read sizes
#   kpl             KPL deaggregation: raw records, wrapped protobuf bodies, and structured
#                   aggregates that must decode to what was encoded; expand() outcomes
#   lease_item      lease-table item decoder; decode → encode → decode round trip
#
# Corpora: fuzz/seeds/<target>/ (committed, read only) plus fuzz/corpus/<target>/ (git-ignored,
# grows across runs). A crash is saved under fuzz/artifacts/<target>/; reproduce it with
#   cargo +nightly fuzz run <target> fuzz/artifacts/<target>/<file>
# and turn it into a unit test in the main crate before fixing it.
#
# Needs a nightly toolchain and cargo-fuzz (scripts/install-cargo-tools.sh puts it in
# $MULTILANGD_TOOLS/bin, default ~/.cache/multilangd/cargo-tools/bin). Exit status: 0 all targets clean,
# 1 a target failed (crash, assertion, timeout, out of memory), 2 nightly or cargo-fuzz missing.
# Environment: FUZZ_PARALLEL (default: number of CPUs) targets run at a time, one core each;
# FUZZ_NICE (default 10) runs the build and the fuzzers under `nice`; FUZZ_ARGS adds libFuzzer
# flags (e.g. "-only_ascii=1").
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TB=${MULTILANGD_TESTBED:-"$REPO/.testbed"}
TOOLS=${MULTILANGD_TOOLS:-"${XDG_CACHE_HOME:-$HOME/.cache}/multilangd/cargo-tools"}
export PATH="$TOOLS/bin:$PATH"
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
ALL_TARGETS=(properties protocol_line line_reader kpl lease_item)

seconds=${1:-600}
[[ "$seconds" =~ ^[0-9]+$ && "$seconds" -gt 0 ]] || { echo "fuzz.sh: SECONDS_PER_TARGET must be a positive integer" >&2; exit 2; }
shift || true
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=("${ALL_TARGETS[@]}")

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz.sh: no nightly toolchain (rustup toolchain install nightly)" >&2
  exit 2
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: cargo-fuzz not found (scripts/install-cargo-tools.sh installs it into $TOOLS/bin)" >&2
  exit 2
fi

cd "$REPO/fuzz"
started=$SECONDS
echo "fuzz.sh: building the targets with $(cargo +nightly fuzz --version), $(cargo +nightly --version)"
host=$(rustc +nightly -vV | sed -n 's/^host: //p')
set +e
nice -n "${FUZZ_NICE:-10}" cargo +nightly fuzz build 2>&1 | grep -v '^ *Compiling ' >&2
build_rc=${PIPESTATUS[0]}
set -e
[[ $build_rc -eq 0 ]] || { echo "fuzz.sh: cargo +nightly fuzz build failed (exit $build_rc)" >&2; exit 1; }
for t in "${targets[@]}"; do
  [[ -x "target/$host/release/$t" ]] || { echo "fuzz.sh: no target named $t (have: ${ALL_TARGETS[*]})" >&2; exit 2; }
done
build_s=$((SECONDS - started))
echo "fuzz.sh: build took ${build_s} s"

# Targets run side by side, FUZZ_PARALLEL at a time (default: the number of CPUs), each on
# one core: on 2 cores the 5-target smoke run takes 3 rounds instead of 5.
parallel=${FUZZ_PARALLEL:-$(nproc 2>/dev/null || echo 1)}
[[ "$parallel" =~ ^[0-9]+$ && "$parallel" -ge 1 ]] || parallel=1
logdir=$(mktemp -d)
trap 'rm -rf "$logdir"' EXIT
run_one() { # target
  local t=$1 t0=$SECONDS rc
  mkdir -p "corpus/$t"
  set +e
  # shellcheck disable=SC2086 # FUZZ_ARGS is a list of flags
  nice -n "${FUZZ_NICE:-10}" cargo +nightly fuzz run "$t" "corpus/$t" "seeds/$t" -- \
    -max_total_time="$seconds" -timeout=30 -rss_limit_mb=2048 -print_final_stats=1 ${FUZZ_ARGS:-} \
    >"$logdir/$t.log" 2>&1
  rc=$?
  set -e
  echo "$rc $((SECONDS - t0))" >"$logdir/$t.rc"
}
pids=()
for t in "${targets[@]}"; do
  while [[ ${#pids[@]} -ge $parallel ]]; do
    wait "${pids[0]}" || true
    pids=("${pids[@]:1}")
  done
  run_one "$t" &
  pids+=("$!")
done
for p in "${pids[@]}"; do wait "$p" || true; done

failed=()
for t in "${targets[@]}"; do
  log="$logdir/$t.log"
  read -r rc took <"$logdir/$t.rc"
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n1 || true)
  printf 'fuzz.sh: %-14s %4d s  %10s runs  %s  corpus %d files\n' "$t" "$took" "${runs:-?}" \
    "${cov:-cov: ?}" "$(find "corpus/$t" "seeds/$t" -type f | wc -l)"
  if [[ $rc -ne 0 ]]; then
    failed+=("$t")
    echo "fuzz.sh: target $t FAILED (exit $rc); the end of its log:" >&2
    grep -v '^#[0-9]' "$log" | tail -n 40 >&2
    echo "fuzz.sh: reproduce with: (cd fuzz && cargo +nightly fuzz run $t artifacts/$t/<file>)" >&2
  fi
done
echo "fuzz.sh: ${#targets[@]} target(s), ${seconds} s each, $((SECONDS - started)) s in all (build ${build_s} s)"
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "fuzz.sh: FAILED: ${failed[*]}" >&2
  exit 1
fi
