#!/usr/bin/env bash
# run-java3-daemon.sh PROPS [MORE-DAEMON-ARGS...] — exec the reference Java KCL MultiLangDaemon 3.1.3.
#
# The current Java line: what amazon_kclpy 3.1.x, aws-kcl 3.x, aws-kclrb 3.x and kcl-net 4.x run.
# Runs `java -cp "<jars>/*" software.amazon.kinesis.multilang.MultiLangDaemon --properties-file PROPS`
# with the jars of kclpy-ext 3.1.3.post4 in $MULTILANGD_TESTBED/venv-java3 (installed by
# scripts/install-testbed.sh). The script execs java, so a backgrounded call's PID is the JVM's.
#
# It needs a DynamoDB that accepts the lease-table GSI on an on-demand table: moto server
# (`$MULTILANGD_TESTBED/venv-moto/bin/moto_server -H 127.0.0.1 -p PORT`), not dynalite. Its
# properties take the SDK v2 credential names (`AwsCredentialsProvider = DefaultCredentialsProvider`),
# and without `retrievalMode = POLLING` it uses enhanced fan-out. See docs/testbed.md.
#
# Environment:
#   AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY   default "x" (dummy credentials for the emulators)
#   AWS_REGION                                  default us-east-1
#   JAVA                                        java binary (default: java on PATH)
#   JAVA_OPTS                                   extra JVM flags, split on spaces (e.g. -Xmx256m)
# Extra arguments after PROPS go to the daemon (e.g. --log-configuration logback.xml).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TB=${MULTILANGD_TESTBED:-"$REPO/.testbed"}

if [[ $# -lt 1 || "$1" == -h || "$1" == --help ]]; then
  sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
  exit 2
fi
props=$1; shift
[[ -f "$props" ]] || { echo "run-java3-daemon: properties file $props not found" >&2; exit 2; }

jars=""
for d in "$TB"/venv-java3/lib/python3*/site-packages/amazon_kclpy/jars; do
  [[ -f "$d/amazon-kinesis-client-multilang-3.1.3.jar" ]] && { jars=$d; break; }
done
[[ -n "$jars" ]] || { echo "run-java3-daemon: KCL 3.1.3 jars not found under $TB/venv-java3; run scripts/install-testbed.sh" >&2; exit 2; }
java=${JAVA:-java}
command -v "$java" >/dev/null 2>&1 || { echo "run-java3-daemon: $java not found (Java 17 needed)" >&2; exit 2; }

export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-x}
export AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-x}
export AWS_REGION=${AWS_REGION:-us-east-1}

# shellcheck disable=SC2086 # JAVA_OPTS is a list of flags
exec "$java" ${JAVA_OPTS:-} -cp "$jars/*" software.amazon.kinesis.multilang.MultiLangDaemon \
  --properties-file "$props" "$@"
