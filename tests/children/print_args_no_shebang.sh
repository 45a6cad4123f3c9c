# No #! line on purpose: the supervisor runs this with /bin/sh <path> <args> (ENOEXEC fallback).
# Prints each argument on its own line (tests/child_supervision.rs).
printf '%s\n' "$@"
