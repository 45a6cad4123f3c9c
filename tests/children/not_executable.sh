#!/bin/sh
# Deliberately committed without the execute bit (tests/child_supervision.rs).
echo "should never run"
