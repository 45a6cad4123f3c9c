#!/usr/bin/env bash
# install-cargo-tools.sh — the cargo subcommands the test command needs, pinned:
#   cargo-fuzz 0.13.2   (scripts/fuzz.sh; running it also needs a nightly toolchain)
#   cargo-deny 0.20.2   (dependency licences/bans/sources, deny.toml)
# Installed with `cargo install --locked` from crates.io into $MULTILANGD_TOOLS (default
# ~/.cache/multilangd/cargo-tools: outside the checkout, so fresh clones on one machine share one
# build of the tools); the scripts that use them put
# $MULTILANGD_TOOLS/bin first on PATH. A stamp ($MULTILANGD_TOOLS/.stamp: the pins and the
# stable cargo version) makes a second run a no-op; a missing or wrong binary is reinstalled.
# Called by scripts/install-testbed.sh; can be run on its own.
#
# Usage: scripts/install-cargo-tools.sh [--force] [--check]
# Cost on a fresh 2-core machine: cargo-fuzz ~2 min, cargo-deny ~6-8 min (compiling), once.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TB=${MULTILANGD_TESTBED:-"$REPO/.testbed"}
TOOLS=${MULTILANGD_TOOLS:-"${XDG_CACHE_HOME:-$HOME/.cache}/multilangd/cargo-tools"}
CARGO_FUZZ_VERSION=0.13.2
CARGO_DENY_VERSION=0.20.2

say() { echo "install-cargo-tools: $*" >&2; }
die() { echo "install-cargo-tools: error: $*" >&2; exit 1; }

force=0
check_only=0
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    --check) check_only=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $arg (see --help)" ;;
  esac
done

command -v cargo >/dev/null 2>&1 || die "cargo is not installed (https://rustup.rs)"
stamp="cargo-fuzz $CARGO_FUZZ_VERSION; cargo-deny $CARGO_DENY_VERSION; $(cargo --version)"

healthy() {
  [[ "$("$TOOLS/bin/cargo-fuzz" --version 2>/dev/null)" == "cargo-fuzz $CARGO_FUZZ_VERSION" ]] \
    && [[ "$("$TOOLS/bin/cargo-deny" --version 2>/dev/null)" == "cargo-deny $CARGO_DENY_VERSION" ]]
}
up_to_date() {
  [[ $force -eq 0 && -f "$TOOLS/.stamp" && "$(cat "$TOOLS/.stamp")" == "$stamp" ]] && healthy
}

# The fuzz targets need a nightly toolchain (libFuzzer instrumentation flags); say so early.
nightly_note() {
  if cargo +nightly --version >/dev/null 2>&1; then
    PATH="$TOOLS/bin:$PATH" cargo +nightly fuzz --version >/dev/null \
      || die "cargo +nightly fuzz --version fails with $TOOLS/bin on PATH"
  else
    say "note: no nightly toolchain (rustup toolchain install nightly); the fuzz smoke step will be skipped"
  fi
}

if [[ $check_only -eq 1 ]]; then
  if up_to_date; then say "cargo tools at $TOOLS are up to date"; exit 0; fi
  say "cargo tools at $TOOLS are missing or out of date; run scripts/install-cargo-tools.sh"
  exit 1
fi

mkdir -p "$TOOLS"
if up_to_date; then
  say "cargo tools at $TOOLS are up to date ($stamp)"
  nightly_note
  exit 0
fi
started=$SECONDS
rm -f "$TOOLS/.stamp"
for pin in "cargo-fuzz $CARGO_FUZZ_VERSION" "cargo-deny $CARGO_DENY_VERSION"; do
  read -r name version <<<"$pin"
  if [[ $force -eq 0 && "$("$TOOLS/bin/$name" --version 2>/dev/null)" == "$name $version" ]]; then
    say "$name $version: already installed"
    continue
  fi
  say "$name $version: cargo install --locked (compiles from crates.io)"
  cargo install --locked --force --root "$TOOLS" "$name" --version "$version" >&2 \
    || die "cargo install $name $version failed (is crates.io reachable?)"
done
healthy || die "the installed tools do not report the pinned versions"
printf '%s\n' "$stamp" >"$TOOLS/.stamp"
nightly_note
say "done in $((SECONDS - started)) s: $TOOLS/bin/{cargo-fuzz,cargo-deny}"
