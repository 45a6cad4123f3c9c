#!/usr/bin/env bash
# Launcher for the Node ledger processor: puts the test bed's node_modules (aws-kcl 2.3.2) on
# NODE_PATH and execs node, so the child's PID is node's. Arguments go to ledger_processor.js.
#   executableName = <repo>/sample-apps/node/run.sh --ledger /tmp/ledger.jsonl
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
testbed=${MULTILANGD_TESTBED:-"$here/../../.testbed"}
export NODE_PATH="$testbed/emu/node_modules${NODE_PATH:+:$NODE_PATH}"
exec node "$here/ledger_processor.js" "$@"
