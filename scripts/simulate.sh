#!/usr/bin/env bash
# Fleet simulation (multilangd::scheduler::sim): the real KCL 2.x renewer/taker/audit code
# of every simulated worker over one in-memory lease table, in simulated time. Appends one
# JSON report per run to docs/scaling/results.jsonl and draws docs/scaling/*.svg.
#
#   scripts/simulate.sh                 # the grid below (long: up to hours on 2 cores)
#   scripts/simulate.sh 10:1000 50:5000 # chosen WORKERS:LEASES points
#   PLOT_ONLY=1 scripts/simulate.sh     # redraw from results.jsonl
#
# Each point runs twice: Java's defaults ("java-defaults") and the settings SCALING.md
# recommends ("tuned": maxLeasesForWorker = ceil(1.25 × leases/workers),
# maxLeasesToStealAtOneTime = ceil(leases/workers/10)).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

out=docs/scaling
mkdir -p "$out"
points=("$@")
if [ ${#points[@]} -eq 0 ]; then
    points=(10:1000 25:2500 50:5000 100:10000 200:20000)
fi

if [ -z "${PLOT_ONLY:-}" ]; then
    cargo build --release --features test-support --example fleet_sim
    sim=target/release/examples/fleet_sim
    for point in "${points[@]}"; do
        workers=${point%%:*}
        leases=${point##*:}
        per=$(( (leases + workers - 1) / workers ))
        cap=$(( (per * 5 + 3) / 4 ))
        steal=$(( (per + 9) / 10 ))
        echo "simulating $workers workers over $leases leases" >&2
        "$sim" --workers "$workers" --leases "$leases" --settle-minutes 45 --label java-defaults >>"$out/results.jsonl"
        "$sim" --workers "$workers" --leases "$leases" --settle-minutes 45 --label tuned \
            --max-leases-for-worker "$cap" --steal "$steal" >>"$out/results.jsonl"
    done
fi
cargo run --release --features test-support --example scaling_plots -- "$out/results.jsonl" "$out"
