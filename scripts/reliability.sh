#!/usr/bin/env bash
# The fault suite at full size (issue 13): runs the scenarios of tests/e2e_faults.rs with
# the sizes below, multilangd and (where it can run the same scenario) the Java 2.5.8
# daemon, collects their figures (JSON lines) and writes RELIABILITY.md from them.
#
#   scripts/reliability.sh              # full sizes (about 14 minutes on 2 cores)
#   scripts/reliability.sh --small      # the test command's sizes (about 3.5 minutes)
#   RENDER_ONLY=FILE scripts/reliability.sh   # only rewrite RELIABILITY.md from FILE
#
# Needs the test bed (scripts/install-testbed.sh; MULTILANGD_TESTBED if elsewhere).
# The figures of the last run are kept in docs/reliability/figures.jsonl.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

size=full
if [ "${1:-}" = "--small" ]; then size=small; fi
mkdir -p docs/reliability
figures=${RENDER_ONLY:-docs/reliability/figures.jsonl}

run() { # TEST [VAR=VALUE...]   (a test of tests/e2e_faults.rs, or BINARY::TEST)
    local test=$1 binary=e2e_faults
    shift
    if [[ $test == *::* ]]; then binary=${test%%::*}; test=${test#*::}; fi
    echo "== $binary $test $*" >&2
    env "$@" MULTILANGD_RELIABILITY_OUT="$PWD/$figures.new" \
        cargo test --quiet --test "$binary" -- --include-ignored --exact --test-threads=1 --nocapture "$test" >&2 \
        || echo "scenario failed: $test" >&2
}

if [ -z "${RENDER_ONLY:-}" ]; then
    rm -f "$figures.new"
    cargo build --quiet --tests
    if [ "$size" = full ]; then
        run full_dynamodb_freeze MULTILANGD_FAULT_OUTAGE_SECS=30
        run full_dynamodb_freeze MULTILANGD_FAULT_OUTAGE_SECS=30 MULTILANGD_FAULT_DAEMON=java
        run outages_through_the_fault_proxy MULTILANGD_FAULT_KINESIS_OUTAGE_SECS=20 MULTILANGD_FAULT_OUTAGE_SECS=30
        run throttling_is_absorbed_with_bounded_calls_and_a_quiet_log MULTILANGD_FAULT_THROTTLE_SECS=30
        run subscribe_to_shard_throttling_is_absorbed MULTILANGD_FAULT_SUBSCRIBE_THROTTLE_SECS=30
        run full_crash_cycles MULTILANGD_FAULT_KILLS=6 MULTILANGD_FAULT_KILL_EVERY_SECS=15
        run full_crash_cycles MULTILANGD_FAULT_KILLS=6 MULTILANGD_FAULT_KILL_EVERY_SECS=15 MULTILANGD_FAULT_DAEMON=java
        run e2e_child_faults::a_faulty_processor_restarts_its_shard_with_backoff_and_the_others_keep_up
    else
        run a_dynamodb_freeze_pauses_delivery_without_duplicates
        run full_dynamodb_freeze MULTILANGD_FAULT_OUTAGE_SECS=7 MULTILANGD_FAULT_DAEMON=java
        run outages_through_the_fault_proxy
        run throttling_is_absorbed_with_bounded_calls_and_a_quiet_log
        run subscribe_to_shard_throttling_is_absorbed
        run crash_cycles_lose_nothing_and_never_move_a_checkpoint_back
        run e2e_child_faults::a_faulty_processor_restarts_its_shard_with_backoff_and_the_others_keep_up
    fi
    mv "$figures.new" "$figures"
fi
python3 scripts/reliability_report.py "$figures" "$size" >RELIABILITY.md
echo "wrote RELIABILITY.md from $figures" >&2
