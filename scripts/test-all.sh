#!/usr/bin/env bash
# test-all.sh — the project's whole check, as run by CI (.ci/run) and by developers.
#
#   1. scripts/install-testbed.sh          (a no-op taking ~1 s when the test bed is up to date)
#   2. cargo fmt --check
#   3. cargo clippy --all-targets -- -D warnings
#   4. cargo deny check licenses bans sources   (deny.toml; advisories need a network database)
#   5. the sample apps' own unit tests     (python -m unittest, sample-apps/producer)
#   6. cargo test --all-targets            with MULTILANGD_TESTBED set, under a time limit
#   7. fuzz smoke: scripts/fuzz.sh ${MULTILANGD_FUZZ_SECONDS:-20} — every fuzz target for 20 s
#      (about 2 min in all with the build on 2 cores); skipped, with a message, only when no
#      nightly toolchain is installed. The long run is `scripts/fuzz.sh` (600 s per target).
#   8. no process of the test bed may be left running: any emulator, Java daemon, sample
#      processor (command line or working directory inside the test bed) or multilangd binary of
#      this repository that appeared during the run and is still alive fails the run (and is
#      killed, by PID).
#
# Environment: MULTILANGD_TESTBED (default <repo>/.testbed), MULTILANGD_TEST_TIMEOUT (seconds for
# step 6, default 2100), CARGO_TEST_ARGS (extra arguments for cargo test, e.g. "-- --test-threads=1"),
# MULTILANGD_TOOLS (cargo-fuzz/cargo-deny, default ~/.cache/multilangd/cargo-tools),
# MULTILANGD_FUZZ_SECONDS (step 7, per target, default 20).
#
# Why `cargo test` and not nextest: every test already cleans up its processes on drop, the suite
# is small enough for cargo's per-binary parallelism on 2 cores, and cargo test needs nothing
# beyond the Rust toolchain; a global `timeout` guards against a hung test instead of nextest's
# per-test timeouts.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
export MULTILANGD_TESTBED=${MULTILANGD_TESTBED:-"$REPO/.testbed"}
export RUST_BACKTRACE=${RUST_BACKTRACE:-1}
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
TEST_TIMEOUT=${MULTILANGD_TEST_TIMEOUT:-2100}

step() { echo; echo "==> $*"; }

# ---------------------------------------------------------------- leftover-process check
# PIDs (one per line) of live processes that belong to the test bed or to this repo's daemon.
testbed_pids() {
  local tb repo_target p cmd cwd exe
  tb=$(cd "$MULTILANGD_TESTBED" 2>/dev/null && pwd -P) || return 0
  repo_target=$(cd "$REPO" && pwd -P)/target
  for p in /proc/[0-9]*; do
    p=${p#/proc/}
    [[ $p == "$$" || $p == "$BASHPID" ]] && continue
    cmd=$(tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline") || continue
    [[ -n "$cmd" ]] || continue
    cwd=$(readlink "/proc/$p/cwd" 2>/dev/null || true)
    exe=$(readlink "/proc/$p/exe" 2>/dev/null || true)
    if [[ "$cmd" == *"$tb/"* || "$cwd" == "$tb" || "$cwd" == "$tb/"* ]] \
      || [[ "$exe" == "$repo_target/"*/multilangd ]]; then
      echo "$p"
    fi
  done
}

before=$(testbed_pids | sort)
check_leftovers() {
  local rc=$? now leftover p i
  now=$(testbed_pids | sort)
  leftover=$(comm -13 <(echo "$before") <(echo "$now") | sed '/^$/d')
  if [[ -n "$leftover" ]]; then
    echo
    echo "==> FAIL: processes of the test bed were left running:" >&2
    for p in $leftover; do
      echo "  pid $p: $(tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline" | cut -c1-200)" >&2
    done
    for p in $leftover; do kill -TERM "$p" 2>/dev/null || true; done
    for ((i = 0; i < 30; i++)); do
      local alive=0
      for p in $leftover; do kill -0 "$p" 2>/dev/null && alive=1; done
      [[ $alive -eq 0 ]] && break
      sleep 0.1
    done
    for p in $leftover; do kill -KILL "$p" 2>/dev/null || true; done
    [[ $rc -eq 0 ]] && rc=1
  else
    echo "==> no test-bed process left running"
  fi
  if [[ -n "$before" ]]; then
    echo "note: test-bed processes that were already running before this run (not checked): $(tr '\n' ' ' <<<"$before")" >&2
  fi
  exit "$rc"
}
trap check_leftovers EXIT

# ---------------------------------------------------------------- the steps
step "install / check the test bed ($MULTILANGD_TESTBED)"
scripts/install-testbed.sh

step "cargo fmt --check"
cargo fmt --check -- --color=never

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings

step "cargo deny check licenses bans sources"
PATH="${MULTILANGD_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/multilangd/cargo-tools}/bin:$PATH" cargo deny --log-level error check licenses bans sources

step "sample-apps unit tests"
"$MULTILANGD_TESTBED/venv/bin/python" -m unittest discover -s sample-apps/producer -p 'test_*.py'

step "cargo test --all-targets (time limit ${TEST_TIMEOUT} s)"
# shellcheck disable=SC2086 # CARGO_TEST_ARGS is a list of arguments
cargo_log=$(mktemp)
set +e
timeout --signal=TERM --kill-after=30 "$TEST_TIMEOUT" cargo test --all-targets ${CARGO_TEST_ARGS:-} 2>&1 | tee "$cargo_log"
cargo_rc=${PIPESTATUS[0]}
set -e
# One closing line for the whole suite (cargo prints one summary per test binary).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed;/) p += $i; if ($(i+1) ~ /^failed;/) f += $i } }
     END { printf "\ntotal: %d passed, %d failed\n", p, f }' "$cargo_log"
rm -f "$cargo_log"
[[ $cargo_rc -eq 0 ]] || exit "$cargo_rc"

step "fuzz smoke: every target for ${MULTILANGD_FUZZ_SECONDS:-20} s (scripts/fuzz.sh)"
if cargo +nightly --version >/dev/null 2>&1; then
  timeout --signal=TERM --kill-after=30 900 scripts/fuzz.sh "${MULTILANGD_FUZZ_SECONDS:-20}"
else
  echo "SKIPPED: no nightly Rust toolchain, which cargo-fuzz needs (rustup toolchain install nightly)"
fi
