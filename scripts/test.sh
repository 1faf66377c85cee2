#!/usr/bin/env bash
# The test command: sets up what is missing, starts the local stack (Kafka, PostgreSQL,
# MariaDB, S3), runs the whole test suite against it, and stops the stack again.
#   scripts/test.sh [pytest args...]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$AIRCONNECT_ROOT"

scripts/setup.sh
# Tests get their own Airflow home, so they never touch the demo's state.
export AIRFLOW_HOME="$AIRCONNECT_STACK_DIR/airflow-test"
mkdir -p "$AIRFLOW_HOME"
.venv/bin/airflow db migrate >"$AIRFLOW_HOME/db-migrate.log" 2>&1 || { tail -20 "$AIRFLOW_HOME/db-migrate.log"; exit 1; }

started_here=0
# (Not `status | grep -q`: with pipefail, grep's early exit makes the pipeline fail by SIGPIPE.)
stack_status=$(scripts/stack.sh status)
if ! grep -q "stopped\|not set up" <<<"$stack_status"; then
  echo "[test] the stack is already running; leaving it running afterwards"
else
  started_here=1
  trap 'scripts/stack.sh stop' EXIT
fi
scripts/stack.sh start

# Lint and type checks first (configured in pyproject.toml): seconds, and they fail the run.
echo "[test] ruff check and mypy"
.venv/bin/ruff check plugins dags tests scripts benchmarks include
.venv/bin/mypy

status=0
.venv/bin/python -m pytest "$@" || status=$?
if [ "$status" = 5 ]; then
  echo "[test] pytest collected no tests"; exit 1
fi
exit "$status"
