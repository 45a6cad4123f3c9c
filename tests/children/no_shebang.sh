# No #! line on purpose: the supervisor must run this with /bin/sh (tests/child_supervision.rs).
echo "no-shebang ran with: $*"
