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
# The same launcher as run-java-daemon.sh, with the 3.1.3 jars.
KCL_VERSION=3.1.3 KCL_VENV=venv-java3 exec "$(dirname "${BASH_SOURCE[0]}")/run-java-daemon.sh" "$@"
