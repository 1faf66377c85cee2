#!/usr/bin/env bash
# airconnect's benchmarks: starts the local stack if needed, runs each case, prints a table and
# writes benchmarks/results/<run id>.json. Not part of the test suite.
#
#   benchmarks/run.sh                       the full suite at 1,000,000 records/rows per case
#   benchmarks/run.sh --size 100000         a reduced run (a few minutes)
#   benchmarks/run.sh --cases file_source,file_sink --reps 3 --profile file_sink
#
# Cases: file_source file_sink jdbc_pg jdbc_mariadb s3_sink scaling scaling_tasks airflow jdbc_sink_pg jdbc_sink_mariadb cdc_pg cdc_mariadb
# (see README.md).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/env.sh
scripts/stack.sh start
export PYTHONPATH="$AIRCONNECT_ROOT/plugins${PYTHONPATH:+:$PYTHONPATH}"
exec python benchmarks/bench.py "$@"
