# Sourced by every airconnect script: one place for the local stack's addresses,
# the project-local Airflow home and the Airflow Connections (as AIRFLOW_CONN_* variables,
# so no manual step is needed). docker-compose.yaml sets the same connection ids.
# shellcheck shell=bash
AIRCONNECT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export AIRCONNECT_ROOT
export AIRCONNECT_STACK_DIR="${AIRCONNECT_STACK_DIR:-$AIRCONNECT_ROOT/.stack}"
export AIRCONNECT_DATA_DIR="${AIRCONNECT_DATA_DIR:-$AIRCONNECT_ROOT/data}"
export AIRCONNECT_CONNECTORS_DIR="${AIRCONNECT_CONNECTORS_DIR:-$AIRCONNECT_ROOT/include/connectors}"

# Ports of the local stack (loopback only).
export AIRCONNECT_KAFKA_PORT="${AIRCONNECT_KAFKA_PORT:-9092}"
export AIRCONNECT_KAFKA_BROKERS="${AIRCONNECT_KAFKA_BROKERS:-1}"
export AIRCONNECT_POSTGRES_PORT="${AIRCONNECT_POSTGRES_PORT:-5432}"
export AIRCONNECT_MARIADB_PORT="${AIRCONNECT_MARIADB_PORT:-3306}"
export AIRCONNECT_S3_PORT="${AIRCONNECT_S3_PORT:-9000}"
export AIRCONNECT_REDIS_PORT="${AIRCONNECT_REDIS_PORT:-6379}"  # Celery's broker (CeleryExecutor only)

# Airflow: SQLite metadata database in a project-local home.
export AIRFLOW_HOME="${AIRFLOW_HOME:-$AIRCONNECT_ROOT/.airflow}"
export AIRFLOW__CORE__DAGS_FOLDER="${AIRFLOW__CORE__DAGS_FOLDER:-$AIRCONNECT_ROOT/dags}"
export AIRFLOW__CORE__PLUGINS_FOLDER="${AIRFLOW__CORE__PLUGINS_FOLDER:-$AIRCONNECT_ROOT/plugins}"
export AIRFLOW__CORE__LOAD_EXAMPLES="${AIRFLOW__CORE__LOAD_EXAMPLES:-False}"
export AIRFLOW__CORE__EXECUTOR="${AIRFLOW__CORE__EXECUTOR:-LocalExecutor}"
export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="${AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION:-True}"
export AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC="${AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC:-1}"
# An idle scheduler loop sleeps this long (default 1 s); a change to the inventory file waits out two of
# them on its way to the EC file (wait -> load -> sink), so near-continuous flows want it short.
export AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME="${AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME:-0.25}"
export AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC="${AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC:-1}"
export AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="${AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL:-5}"

# The API server: UI, REST API and the Execution API that tasks report to.
export AIRCONNECT_API_PORT="${AIRCONNECT_API_PORT:-8080}"
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="${AIRFLOW__CORE__EXECUTION_API_SERVER_URL:-http://127.0.0.1:${AIRCONNECT_API_PORT}/execution/}"
export AIRFLOW__API__BASE_URL="${AIRFLOW__API__BASE_URL:-http://127.0.0.1:${AIRCONNECT_API_PORT}}"
# UI login for the local stack: admin / admin (the password file is written by scripts/setup.sh).
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS:-admin:admin}"
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE="${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE:-$AIRFLOW_HOME/passwords.json}"

# Connections for the local stack.
_kafka_bootstrap="127.0.0.1:${AIRCONNECT_KAFKA_PORT}"
if [ "$AIRCONNECT_KAFKA_BROKERS" = "3" ]; then
  _kafka_bootstrap="127.0.0.1:${AIRCONNECT_KAFKA_PORT},127.0.0.1:$((AIRCONNECT_KAFKA_PORT + 2)),127.0.0.1:$((AIRCONNECT_KAFKA_PORT + 4))"
fi
export AIRCONNECT_KAFKA_BOOTSTRAP="${AIRCONNECT_KAFKA_BOOTSTRAP:-$_kafka_bootstrap}"
# (Plain `if`s: a JSON default inside ${VAR:-...} would be cut at its first '}'.)
if [ -z "${AIRFLOW_CONN_KAFKA_DEFAULT:-}" ]; then
  export AIRFLOW_CONN_KAFKA_DEFAULT="{\"conn_type\": \"kafka\", \"extra\": {\"bootstrap.servers\": \"$AIRCONNECT_KAFKA_BOOTSTRAP\"}}"
fi
export AIRFLOW_CONN_POSTGRES_EC="${AIRFLOW_CONN_POSTGRES_EC:-postgresql://airconnect:airconnect@127.0.0.1:${AIRCONNECT_POSTGRES_PORT}/ec}"
export AIRFLOW_CONN_POSTGRES_AUTOORDER="${AIRFLOW_CONN_POSTGRES_AUTOORDER:-postgresql://airconnect:airconnect@127.0.0.1:${AIRCONNECT_POSTGRES_PORT}/autoorder}"
export AIRFLOW_CONN_MYSQL_POS="${AIRFLOW_CONN_MYSQL_POS:-mysql://airconnect:airconnect@127.0.0.1:${AIRCONNECT_MARIADB_PORT}/pos}"
if [ -z "${AIRFLOW_CONN_AWS_FORECAST:-}" ]; then
  export AIRFLOW_CONN_AWS_FORECAST="{\"conn_type\": \"aws\", \"login\": \"airconnect\", \"password\": \"airconnect-secret\", \"extra\": {\"endpoint_url\": \"http://127.0.0.1:${AIRCONNECT_S3_PORT}\", \"region_name\": \"us-east-1\"}}"
fi
unset _kafka_bootstrap

# The project's virtualenv, on PATH even before scripts/setup.sh has created it (the scripts
# source this file first, then run the set-up, then call airflow and airconnect).
case ":$PATH:" in
  *":$AIRCONNECT_ROOT/.venv/bin:"*) ;;
  *) export PATH="$AIRCONNECT_ROOT/.venv/bin:$PATH" ;;
esac
