#!/usr/bin/env bash
# package-deb.sh [--binary PATH] [--out DIR] [--fast] — build the Debian package of multilangd with dpkg-deb.
#
# Contents:
#   /usr/bin/multilangd                                       the release binary (stripped)
#   /lib/systemd/system/multilangd.service                    dist/systemd/multilangd.service
#   /usr/share/man/man1/multilangd.1.gz                       manual page (the --help texts)
#   /usr/share/doc/multilangd/README.md, migrating.md, operations.md, metrics.md, configuration.md
#   /usr/share/doc/multilangd/examples/multilangd.properties  properties/sample.properties
#   /usr/share/doc/multilangd/copyright
# The maintainer scripts create the system user `multilangd` (home /var/lib/multilangd) and
# reload systemd; the unit is not enabled (it needs /etc/multilangd/multilangd.properties first).
#
# Without --binary, runs `cargo build --release --locked` first. Writes
# DIR/multilangd_<version>_<arch>.deb (DIR default: target/debian) and prints its path.
# --fast: gzip -1 instead of xz (tests). Needs dpkg-deb (Debian package dpkg) and gzip.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
binary=""
compress=(-Zxz)
out="$REPO/target/debian"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --binary) binary=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --fast) compress=(-Zgzip -z1); shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "package-deb: unknown argument $1" >&2; exit 2 ;;
  esac
done
command -v dpkg-deb >/dev/null || { echo "package-deb: dpkg-deb not found (apt-get install dpkg)" >&2; exit 2; }

if [[ -z "$binary" ]]; then
  (cd "$REPO" && cargo build --release --locked --bin multilangd >&2)
  binary="$REPO/target/release/multilangd"
fi
[[ -x "$binary" ]] || { echo "package-deb: $binary is not an executable" >&2; exit 2; }

version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$REPO/Cargo.toml" | head -1)
arch=$(dpkg --print-architecture)
stage=$(mktemp -d)
chmod 0755 "$stage"
trap 'rm -rf "$stage"' EXIT

install -D -m 0755 "$binary" "$stage/usr/bin/multilangd"
if command -v strip >/dev/null; then strip --strip-unneeded "$stage/usr/bin/multilangd"; fi
install -D -m 0644 "$REPO/dist/systemd/multilangd.service" "$stage/lib/systemd/system/multilangd.service"
doc="$stage/usr/share/doc/multilangd"
install -D -m 0644 "$REPO/README.md" "$doc/README.md"
for f in migrating operations metrics configuration; do
  [[ -f "$REPO/docs/$f.md" ]] && install -D -m 0644 "$REPO/docs/$f.md" "$doc/$f.md"
done
install -D -m 0644 "$REPO/properties/sample.properties" "$doc/examples/multilangd.properties"
cat > "$doc/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: multilangd
License: Apache-2.0

Files: *
License: Apache-2.0
 On Debian systems the full text is in /usr/share/common-licenses/Apache-2.0.
EOF

# Manual page: the --help texts of the daemon and its subcommands, preformatted.
man="$stage/usr/share/man/man1"
mkdir -p "$man"
{
  echo ".TH MULTILANGD 1 \"\" \"multilangd $version\" \"User Commands\""
  echo ".SH NAME"
  echo "multilangd \\- native drop-in replacement for the Amazon KCL MultiLangDaemon"
  echo ".SH SYNOPSIS"
  echo ".B multilangd"
  echo "[OPTIONS] [--properties-file] FILE"
  echo ".br"
  echo ".B multilangd"
  echo "validate|leases|status FILE"
  for sub in "" validate leases status; do
    if [[ -z "$sub" ]]; then echo ".SH DESCRIPTION"; else echo ".SH COMMAND ${sub^^}"; fi
    echo ".nf"
    # shellcheck disable=SC2086
    "$binary" $sub --help | sed -e 's/\\/\\e/g' -e 's/^\./\\\&./'
    echo ".fi"
  done
  echo ".SH FILES"
  echo "/etc/multilangd/multilangd.properties, /lib/systemd/system/multilangd.service"
  echo ".SH SEE ALSO"
  echo "/usr/share/doc/multilangd/README.md, migrating.md, operations.md, metrics.md"
} | gzip -9n > "$man/multilangd.1.gz"
chmod 0644 "$man/multilangd.1.gz"

mkdir -p "$stage/DEBIAN"
installed_size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat > "$stage/DEBIAN/control" <<EOF
Package: multilangd
Version: $version
Architecture: $arch
Maintainer: multilangd maintainers <multilangd@localhost>
Installed-Size: $installed_size
Depends: libc6 (>= 2.31), adduser
Section: net
Priority: optional
Homepage: https://github.com/
Description: native drop-in replacement for the Amazon KCL MultiLangDaemon
 multilangd consumes Amazon Kinesis streams with record processors written in
 Python (amazon_kclpy), Node.js (aws-kcl), Ruby or .NET, reading the same
 .properties file and sharing the same DynamoDB lease table as the Java KCL
 2.x MultiLangDaemon, without a JVM. Includes a systemd unit (Type=notify),
 Prometheus metrics, health endpoints and CloudWatch metrics as the KCL
 publishes them.
EOF
# Maintainer scripts honour DPKG_ROOT (set by `dpkg --root=DIR --force-script-chrootless`):
# then the system user goes into DIR's passwd/group files and the host is left alone.
cat > "$stage/DEBIAN/postinst" <<'EOF'
#!/bin/sh
set -e
root="${DPKG_ROOT:-}"
if [ "$1" = configure ]; then
  if [ -z "$root" ]; then
    if ! getent passwd multilangd >/dev/null; then
      adduser --system --group --home /var/lib/multilangd --no-create-home --quiet multilangd
    fi
  elif ! grep -q '^multilangd:' "$root/etc/passwd" 2>/dev/null; then
    useradd --prefix "$root" --system --user-group --home-dir /var/lib/multilangd \
      --no-create-home --shell /usr/sbin/nologin multilangd
  fi
  mkdir -p "$root/etc/multilangd"
fi
if [ -z "$root" ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null || true
fi
exit 0
EOF
cat > "$stage/DEBIAN/postrm" <<'EOF'
#!/bin/sh
set -e
if [ -z "${DPKG_ROOT:-}" ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null || true
fi
exit 0
EOF
chmod 0755 "$stage/DEBIAN/postinst" "$stage/DEBIAN/postrm"

mkdir -p "$out"
deb="$out/multilangd_${version}_${arch}.deb"
dpkg-deb --root-owner-group "${compress[@]}" --build "$stage" "$deb" >&2
echo "$deb"
