#!/bin/sh
# Prints each argument on its own line (tests/child_supervision.rs).
printf '%s\n' "$@"
